/**
 * chatbench internals: an open-loop load generator for chatnode (and, for
 * the side-by-side run, an MQTT 3.1.1 broker).
 *
 * One process runs one libuv loop on one thread; every object here belongs
 * to that thread. Layers, as in the node: TCP (libuv, bound to a chosen
 * 127.0.0.x source) -> TLS 1.3 over memory BIOs (OpenSSL) -> RFC 6455
 * client framing (masked) -> protobuf (protobuf-c for requests, a small
 * field scanner for the hot Deliver / Response frames).
 *
 * Latency is measured from the *intended* send time of each message (its
 * slot in a fixed-rate schedule), carried in the first bytes of the opaque
 * ciphertext, so a stalled node cannot hide its stall by slowing the
 * generator down (no coordinated omission).
 */
#ifndef CN_BENCH_H
#define CN_BENCH_H

#include "common/cn_common.h"
#include "proto/cn_proto.h"

#include <openssl/ssl.h>
#include <uv.h>

/* ------------------------------------------------------------ histogram */

/* Log-linear buckets (HdrHistogram style): values below 128 are exact,
 * above that each power of two is split in 64 sub-buckets (< 1.6 % error). */
#define BENCH_HIST_SUB     64
#define BENCH_HIST_BUCKETS (BENCH_HIST_SUB * 60)

typedef struct bench_hist {
    uint64_t count;
    uint64_t max;
    uint64_t min;
    double sum;
    uint64_t b[BENCH_HIST_BUCKETS];
} bench_hist_t;

void bench_hist_init(bench_hist_t *h);
/** Records one value (any unit; chatbench uses nanoseconds). */
void bench_hist_add(bench_hist_t *h, uint64_t v);
/** Adds every sample of src to dst. */
void bench_hist_merge(bench_hist_t *dst, const bench_hist_t *src);
/** The value at quantile q in [0, 1] (a bucket's midpoint); 0 when empty. */
uint64_t bench_hist_quantile(const bench_hist_t *h, double q);

/* -------------------------------------------------------------- options */

enum bench_scenario {
    BENCH_RELAY,
    BENCH_FANOUT,
    BENCH_CONNECT,
    BENCH_IDLE,
    BENCH_DRAIN,
    BENCH_PEER_MQTT,
};

typedef struct bench_opts {
    enum bench_scenario scenario;
    const char *scenario_name;
    char host[64]; /* server address (IPv4 literal) */
    char sni[64];  /* TLS server name / verified host */
    uint16_t port;
    const char *ca;       /* CA file; NULL with insecure */
    bool insecure;        /* do not verify the certificate */
    bool json;            /* one JSON object on stdout */
    unsigned pairs;       /* relay, peer-mqtt */
    double rate;          /* messages (or handshakes) per second, all processes */
    unsigned size;        /* ciphertext / payload bytes */
    double duration;      /* seconds of load */
    double warmup;        /* seconds at the start left out of the histogram */
    unsigned members;     /* fanout: devices in the group, the sender's included */
    bool pairwise;        /* fanout: G-1 one-to-one Sends instead of one group Send */
    unsigned rounds;      /* fanout */
    double interval_ms;   /* fanout: between rounds */
    unsigned connections; /* idle */
    unsigned queued;      /* drain */
    int node_pid;         /* idle: whose VmRSS to read */
    unsigned sources;     /* 127.0.0.1 .. 127.0.0.<sources> */
    unsigned procs;       /* worker processes */
    unsigned tick_us;     /* schedule timer period */
    unsigned ack_batch;   /* receivers ack this many seqs at once */
    bool ack_replies;     /* receivers' Acks ask for an AckOk (else silent_ok) */
    unsigned concurrency; /* setup: handshakes in flight */
    double hold;          /* idle: seconds to hold before measuring */
    unsigned qos;         /* peer-mqtt: 0 or 1 */
    double drain_timeout; /* seconds to wait for stragglers */
} bench_opts_t;

/* ----------------------------------------------------------- connection */

typedef struct bench_conn bench_conn_t;

/** A server frame scanned without allocation (borrows the message bytes). */
typedef struct bench_frame {
    Chat__ServerFrame__BodyCase type;
    uint64_t request_id; /* Response */
    uint32_t status;     /* Response */
    uint64_t seq;        /* Deliver, MailboxDrained (last_seq) */
    cn_slice_t ciphertext;
    cn_slice_t message; /* the whole ServerFrame */
} bench_frame_t;

typedef struct bench_conn_cbs {
    /** The WebSocket is open and the Challenge read (raw mode: TLS is up). */
    void (*on_ready)(bench_conn_t *c);
    /** A server frame other than the first Challenge. */
    void (*on_frame)(bench_conn_t *c, const bench_frame_t *f);
    /** Raw mode: stream bytes arrived in *in; consume what was parsed. */
    void (*on_raw)(bench_conn_t *c, cn_buf_t *in);
    /** The connection is gone (err 0: closed by us); c is freed after. */
    void (*on_close)(bench_conn_t *c, int err);
} bench_conn_cbs_t;

struct bench_conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    SSL *ssl;
    BIO *net_in;  /* bytes from the socket for OpenSSL */
    BIO *net_out; /* bytes OpenSSL wants sent */
    int state;
    bool raw;
    bool closing;
    bool dirty;
    bench_conn_t *next_dirty;
    cn_buf_t in;  /* decrypted, not yet parsed */
    cn_buf_t out; /* plaintext waiting for the next flush */
    cn_buf_t msg; /* a fragmented WebSocket message being reassembled */
    char accept[32];
    uint64_t next_rid;
    uint8_t nonce[CN_NONCE_LEN];
    uint8_t node_id[CN_DEVICE_ID_LEN];
    uint8_t exporter[CN_EXPORTER_LEN];
    uint64_t server_time;
    uint64_t t_start; /* ns, when the connect began */
    const bench_conn_cbs_t *cb;
    void *ud;
};

/**
 * Starts a connection from 127.0.0.<source> to the server; returns owned
 * (freed by the library after cb->on_close), NULL when the socket could not
 * be made (fd limit).
 */
bench_conn_t *bench_conn_new(const bench_conn_cbs_t *cb, void *ud, unsigned source, bool raw);
/** Closes (reset: RST instead of FIN, no TIME_WAIT); on_close follows. */
void bench_conn_close(bench_conn_t *c, bool reset);
/** Appends a masked binary WebSocket message holding f; assigns request_id if 0. */
uint64_t bench_conn_send_pb(bench_conn_t *c, Chat__ClientFrame *f);
/** Appends raw plaintext bytes (raw mode). */
void bench_conn_send_raw(bench_conn_t *c, const void *p, size_t n);
/** Encrypts and writes everything pending on every connection. */
void bench_flush_all(void);
/** Open connections right now. */
unsigned bench_conn_count(void);

/* ---------------------------------------------------------------- users */

typedef struct bench_user {
    uint8_t seed[32];
    uint8_t pk[CN_DEVICE_ID_LEN];
    char handle[CN_HANDLE_MAX + 1];
    bench_conn_t *conn;
    uint64_t auth_rid;
    bool authed;
    bool failed;
    uint32_t index;  /* scenario's own */
    uint64_t expect; /* scenario's own */
} bench_user_t;

/** Fills n users with fresh keys and handles "<prefix><proc>x<i>-<run>". */
void bench_users_make(bench_user_t *u, size_t n, const char *prefix);

/** Frees the process's signing key (bench_send_auth); before exit. */
void bench_users_cleanup(void);

enum bench_open_mode { BENCH_REGISTER, BENCH_AUTH };

/**
 * Connects every user and registers or authenticates it, at most
 * opts.concurrency handshakes at a time; runs the loop until all are done.
 * Frames after authentication go to on_frame. With close_after each
 * connection is closed once authenticated. Returns the number that failed.
 */
unsigned bench_users_open(bench_user_t *u, size_t n, enum bench_open_mode mode, bool close_after,
                          void (*on_frame)(bench_user_t *u, const bench_frame_t *f));
/** Signs and sends Auth or Register on c (its Challenge was read). */
uint64_t bench_send_auth(bench_conn_t *c, const bench_user_t *u, enum bench_open_mode mode);

/* ----------------------------------------------------------------- wire */

/** Scans one ServerFrame; false when it is not valid protobuf. */
bool bench_frame_scan(const uint8_t *p, size_t n, bench_frame_t *f);
/** Unpacks a Challenge (rare: protobuf-c); false when it is not one. */
bool bench_challenge_read(bench_conn_t *c, const uint8_t *p, size_t n);
/** Sends Send{to, one envelope for dev} carrying ct; returns request_id. */
/** A message id made as the reference client makes it (time-ordered, RFC 9562 layout). */
void bench_message_id(uint8_t out[CN_MESSAGE_ID_LEN]);
uint64_t bench_send_message(bench_conn_t *c, const uint8_t message_id[CN_MESSAGE_ID_LEN], char *to,
                            uint8_t *dev, uint8_t *ct, size_t n);
/** Sends Send{group_id, sender_key_ciphertext = ct} (no envelopes); returns request_id. */
uint64_t bench_send_group(bench_conn_t *c, const uint8_t message_id[CN_MESSAGE_ID_LEN],
                          const uint8_t group_id[CN_GROUP_ID_LEN], uint8_t *ct, size_t n);
/** Sends GroupCreate{group_id, members = handles[0..n) as MEMBER}; returns request_id. */
uint64_t bench_send_group_create(bench_conn_t *c, const uint8_t group_id[CN_GROUP_ID_LEN],
                                 char *const *handles, size_t n);
/** Sends Ack{seqs}. */
void bench_send_ack(bench_conn_t *c, uint64_t *seqs, size_t n);

/** Payload layout (first 20 bytes of every ciphertext / MQTT payload). */
#define BENCH_PAYLOAD_MIN 20
void bench_payload_fill(uint8_t *p, size_t n, uint64_t intended_ns, uint64_t msg, uint32_t tag);
bool bench_payload_read(const uint8_t *p, size_t n, uint64_t *intended_ns, uint64_t *msg,
                        uint32_t *tag);

/* ------------------------------------------------------------ the bench */

/** What one process measured; merged across processes by the parent. */
typedef struct bench_result {
    uint64_t sent;       /* messages / handshakes attempted */
    uint64_t sent_ok;    /* acknowledged by the server */
    uint64_t errors;     /* non-OK answers, failed handshakes */
    uint64_t delivered;  /* unique deliveries */
    uint64_t duplicates; /* deliveries seen twice */
    uint64_t late_ticks; /* schedule slots sent > 1 ms late (generator saturated) */
    double elapsed_s;    /* the time delivered is divided by: bench_delivery_span_s */
    double send_s;       /* the load phase */
    double extra[8];     /* scenario-specific, see bench_extra_names */
    bench_hist_t hist;   /* latency, ns */
    bench_hist_t hist2;  /* scenario-specific second histogram, ns */
} bench_result_t;

typedef struct bench {
    bench_opts_t o;
    uv_loop_t *loop;
    SSL_CTX *ctx;
    unsigned proc;   /* this worker's index */
    unsigned nprocs; /* workers */
    int up_fd;       /* worker -> parent (-1 in a single process) */
    int down_fd;     /* parent -> worker */
    char run_id[8];  /* random, shared by the workers of one run */
    bench_result_t r;
    const char *fatal;
} bench_t;

extern bench_t g_bench;

/** Monotonic nanoseconds. */
uint64_t bench_now_ns(void);
/**
 * The time an open-loop run's deliveries are counted over (delivered_per_s
 * is delivered / this): the longer of the send schedule (schedule_ns, the
 * offered count at the offered rate) and the span from the first delivery
 * to the last. A node that keeps up delivers at the offered rate whatever
 * its (constant) latency; one that falls behind spreads its deliveries
 * over more than the schedule, and the rate is what it delivered. Never
 * more than the offered rate. Without deliveries: now_ns - t0.
 */
double bench_delivery_span_s(uint64_t t0, uint64_t schedule_ns, uint64_t first_delivery,
                             uint64_t last_delivery, uint64_t now_ns);
/** Runs the loop until *flag is set or deadline_ns (0: none) passes. */
void bench_run_until(const bool *flag, uint64_t deadline_ns);
/** The share of total for this worker (total split as evenly as possible). */
unsigned bench_share(unsigned total);
/**
 * A rendezvous of all workers: each calls it, the parent runs hook (may be
 * NULL) once every worker has arrived, then all continue. In a single
 * process hook runs at once.
 */
void bench_barrier(int step);

/** A periodic high-resolution tick (timerfd) calling fn until stopped. */
void bench_tick_start(unsigned period_us, void (*fn)(void));
void bench_tick_stop(void);

/** Scenario entry points; each fills g_bench.r. Return 0 or -1 (fatal set). */
int bench_relay(void);
int bench_fanout(void);
int bench_connect(void);
int bench_idle(void);
int bench_drain(void);
int bench_peer_mqtt(void);

/** Names of r.extra[] for the scenario (NULL-terminated); summed unless *_max. */
const char *const *bench_extra_names(enum bench_scenario s);
/** Parent-side work at barrier `step` (idle: reads the node's RSS). */
void bench_barrier_hook(int step);
/** Reads VmRSS of pid in KiB; 0 when unavailable. */
uint64_t bench_rss_kib(int pid);

#endif
