/**
 * Integration test harness: real chatnode processes and a raw client.
 *
 * Nodes run as child processes on 127.0.0.1:0 with a temporary data dir;
 * the ports are learnt from the node's logfmt output (event=listening,
 * event=metrics_listening). The client speaks TLS 1.3, the HTTP/1.1
 * upgrade and RFC 6455 framing by hand, so tests can also send frames a
 * well-behaved client never would.
 *
 * Everything a test creates (nodes, clients, users) is registered with the
 * harness and released by h_teardown, which every test runs as its cmocka
 * teardown, so nothing is left behind even when an assertion fails. The
 * high-level helpers (h_connect, h_register, h_login, h_request...) assert
 * with cmocka themselves; the raw ones return H_* codes.
 *
 * Single-threaded; not for use outside tests.
 */
#ifndef CN_TEST_HARNESS_H
#define CN_TEST_HARNESS_H

#include "common/cn_common.h"
#include "crypto/cn_crypto.h"
#include "proto/cn_proto.h"

#include <openssl/ssl.h>
#include <sys/types.h>

/* cmocka.h needs these first. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

/* Results of the raw functions. */
#define H_OK      0
#define H_TIMEOUT (-1) /* nothing arrived before the deadline */
#define H_CLOSED  (-2) /* a close frame arrived (code in h_client_t.close_code) */
#define H_EOF     (-3) /* the connection ended without a close frame */
#define H_ERR     (-4) /* a local failure or a malformed server frame */

/** Default deadline for a response or a push, in ms. */
#define H_WAIT_MS 10000

/* ----------------------------------------------------------------- nodes */

typedef struct h_node {
    pid_t pid;                         /* 0 when not running */
    int exit_status;                   /* waitpid status of the last run */
    char dir[256];                     /* temporary directory (data, log) */
    char data[300];                    /* DIR/data */
    char log[300];                     /* DIR/node.log: the node's stderr, appended across runs */
    uint16_t port;                     /* client TLS WebSocket port */
    uint16_t metrics;                  /* metrics HTTP port */
    char *extra[32];                   /* extra flags (owned copies), NULL-terminated */
    uint8_t node_id[CN_DEVICE_ID_LEN]; /* learnt from the first Challenge */
} h_node_t;

/**
 * Starts a node with the standard flags plus extra (NULL-terminated list,
 * may be NULL). Waits for event=listening (15 s deadline); asserts.
 * Returns a node owned by the harness.
 */
h_node_t *h_node_start(const char *const *extra);
/** Starts the node again on the same data dir with the same flags; asserts. */
void h_node_restart(h_node_t *n);
/**
 * SIGTERM, then waits up to deadline_ms; SIGKILL after that. Returns the
 * waitpid status (or -1 when the node had to be killed).
 */
int h_node_stop(h_node_t *n, int deadline_ms);
/** Waits up to deadline_ms for the node to exit; its waitpid status or -1. */
int h_node_wait(h_node_t *n, int deadline_ms);
/** SIGKILL and reap. */
void h_node_kill(h_node_t *n);
/** True while the process runs (reaps it when it exited). */
bool h_node_alive(h_node_t *n);
/** Prints the node's log to stderr (for failing tests). */
void h_node_dump_log(const h_node_t *n);
/** Counts log lines of the current and previous runs that contain needle. */
int h_node_log_count(const h_node_t *n, const char *needle);

/* --------------------------------------------------------- plain HTTP */

/**
 * GET path on 127.0.0.1:port (plain HTTP/1.1). Returns the status code
 * (negative on failure); body (NUL-terminated, malloc'd) in *body.
 */
int h_http_get(uint16_t port, const char *path, char **body);
/** The value of a metric line "name value" from /metrics; asserts it exists. */
double h_metric(h_node_t *n, const char *name);

/* ---------------------------------------------------------------- users */

typedef struct h_user {
    char handle[CN_HANDLE_MAX + 1];
    cn_identity_t id;
} h_user_t;

/** A fresh identity with a handle (unique per process when prefix is given). */
h_user_t *h_user_new(const char *prefix);

/* -------------------------------------------------------------- clients */

typedef struct h_client {
    h_node_t *node;
    int fd;
    SSL *ssl;
    cn_buf_t in;  /* decrypted WebSocket bytes not yet parsed */
    cn_buf_t msg; /* fragments of the message being reassembled */
    uint8_t msg_opcode;
    bool closed;         /* a close frame arrived */
    uint16_t close_code; /* its code (1005 when it had none) */
    bool eof;
    bool server_masked; /* protocol violation seen: a masked server frame */
    bool no_pong;       /* do not answer pings (a half-dead client) */
    unsigned pings;     /* pings received from the node */
    /* The Challenge. */
    bool have_challenge;
    uint8_t nonce[CN_NONCE_LEN];
    uint8_t node_id[CN_DEVICE_ID_LEN];
    uint64_t server_time;
    uint32_t expires_in_ms;
    uint8_t exporter[CN_EXPORTER_LEN];
    /* The signed-in user (borrowed), if any. */
    h_user_t *user;
    uint64_t next_rid;
    /* Frames received but not yet taken (pushes collected meanwhile). */
    Chat__ServerFrame **queue;
    size_t nqueue, capqueue;
    /* Frames handed to the test: freed with the client. */
    Chat__ServerFrame **owned;
    size_t nowned, capowned;
} h_client_t;

/** SO_RCVBUF for the client sockets made from now on (0: default; reset by h_teardown). */
void h_set_rcvbuf(int bytes);
/** TCP connect to 127.0.0.1:port; returns the fd (blocking) or asserts. */
int h_tcp_connect(uint16_t port);
/** TCP + TLS 1.3 only (no upgrade); asserts. */
h_client_t *h_connect_tls(h_node_t *n);
/** TCP + TLS 1.3 + WebSocket upgrade, then waits for the Challenge; asserts. */
h_client_t *h_connect(h_node_t *n);
/** Closes the socket at once (no close frame) and frees the client. */
void h_client_free(h_client_t *c);

/** Writes raw bytes over TLS (all of them). H_OK, H_EOF or H_ERR. */
int h_send_raw(h_client_t *c, const void *p, size_t n);
/**
 * Writes one WebSocket frame: fin, opcode, payload; masked with a random
 * key when mask is set (clients must mask).
 */
int h_ws_frame(h_client_t *c, bool fin, uint8_t opcode, const void *p, size_t n, bool mask);
/** Writes a frame header only (announcing len payload bytes, masked). */
int h_ws_header(h_client_t *c, bool fin, uint8_t opcode, uint64_t len);
/** Packs f into one masked binary frame. */
int h_send_frame(h_client_t *c, const Chat__ClientFrame *f);
/**
 * Receives the next ServerFrame (answers pings). *out is owned by the
 * client (freed with it). H_OK, H_TIMEOUT, H_CLOSED, H_EOF or H_ERR.
 */
int h_recv(h_client_t *c, int timeout_ms, Chat__ServerFrame **out);
/** Waits for the close frame (skipping other frames); returns its code or asserts. */
uint16_t h_expect_close(h_client_t *c, int timeout_ms);
/** Waits until the connection ends (close frame or EOF); true if it did. */
bool h_wait_closed(h_client_t *c, int timeout_ms);

/**
 * Sends f (request_id assigned when 0) and waits for its Response,
 * queueing pushes that arrive meanwhile. Asserts a response came.
 * Returns it borrowed from the client.
 */
Chat__Response *h_request(h_client_t *c, Chat__ClientFrame *f);
/**
 * The next push of the given body case (CHAT__SERVER_FRAME__BODY__NOT_SET:
 * any push), from the queue first; other pushes stay queued. NULL on
 * timeout or when the connection ended.
 */
Chat__ServerFrame *h_next_push(h_client_t *c, Chat__ServerFrame__BodyCase want, int timeout_ms);
/** Drops every queued push. */
void h_clear_queue(h_client_t *c);

/* ------------------------------------------------------- auth helpers */

/** Signs the session transcript of c's challenge for user (handle NULL: auth). */
void h_sign_session(h_client_t *c, const h_user_t *u, const char *context, const char *handle,
                    uint8_t sig[CN_SIGNATURE_LEN]);
/** Sends Register for u on c; returns the Response. */
Chat__Response *h_try_register(h_client_t *c, h_user_t *u, const char *handle);
/** Sends Auth for u on c; returns the Response. */
Chat__Response *h_try_auth(h_client_t *c, h_user_t *u);
/** Connects and registers a fresh user; asserts OK. */
h_client_t *h_register(h_node_t *n, const char *prefix);
/** Connects and authenticates an existing user; asserts OK. */
h_client_t *h_login(h_node_t *n, h_user_t *u);

/* ------------------------------------------------------ request helpers */

/** Uploads a signed prekey (key id 1; bad_sig corrupts its signature) and n one-time prekeys. */
Chat__Response *h_upload_prekeys(h_client_t *c, size_t n_otpk, uint32_t first_id, bool bad_sig);
Chat__Response *h_fetch_prekeys(h_client_t *c, const char *handle);

/** One recipient envelope of a Send. */
typedef struct h_env {
    const uint8_t *device; /* 32 bytes */
    const void *ct;
    size_t len;
} h_env_t;

/** Sends a Send and returns its Response. */
Chat__Response *h_send(h_client_t *c, const char *to, const uint8_t msg_id[CN_MESSAGE_ID_LEN],
                       Chat__Kind kind, const h_env_t *envs, size_t n);
/** Sends one envelope to user u's (single) device; returns the Response. */
Chat__Response *h_send1(h_client_t *c, const h_user_t *u, const uint8_t msg_id[CN_MESSAGE_ID_LEN],
                        const void *ct, size_t len);
/** Packs a Send frame without waiting (for pipelining); returns its request id. */
uint64_t h_send_nowait(h_client_t *c, const h_user_t *u, const uint8_t msg_id[CN_MESSAGE_ID_LEN],
                       Chat__Kind kind, const void *ct, size_t len);
/** Waits for the Response to request id rid (pushes are queued). NULL on timeout. */
Chat__Response *h_wait_response(h_client_t *c, uint64_t rid, int timeout_ms);
/** Acks seqs; returns the Response. */
Chat__Response *h_ack(h_client_t *c, const uint64_t *seqs, size_t n);
/** Sends an Ack with silent_ok (answered only on failure); returns its request id. */
uint64_t h_ack_silent(h_client_t *c, const uint64_t *seqs, size_t n);
/** Ping request; returns the Response. */
Chat__Response *h_ping(h_client_t *c);

/** A fresh random message id. */
void h_msg_id(uint8_t out[CN_MESSAGE_ID_LEN]);
/** Fills p with a pattern derived from seed (checkable ciphertext). */
void h_pattern(uint8_t *p, size_t n, uint32_t seed);

/** Asserts the node still serves new clients: two fresh users exchange a message. */
void h_assert_serving(h_node_t *n);

/* -------------------------------------------------------------- fixtures */

/** Group setup: crypto init, TLS certificate. */
int h_group_setup(void **state);
/** Group teardown: removes the certificate. */
int h_group_teardown(void **state);
/** Per-test teardown: frees clients and users, kills nodes, removes dirs. */
int h_teardown(void **state);

/** Monotonic milliseconds. */
uint64_t h_now_ms(void);
/** Sleeps ms milliseconds (for poll loops only). */
void h_sleep_ms(unsigned ms);

#define H_TEST(fn) cmocka_unit_test_teardown(fn, h_teardown)

/** Sends count messages of size bytes to u, 50 in flight, asserting every OK. */
void h_queue_messages(h_client_t *a, const h_user_t *u, int count, size_t size);

#endif /* CN_TEST_HARNESS_H */
