/**
 * libchatcommon: errors, byte slices and buffers, cursors with typed
 * readers, logging and clocks shared by every chatnode library.
 *
 * Thread-safety: every function here is safe to call from any thread on
 * distinct objects; the logger serialises its own output.
 */
#ifndef CN_COMMON_H
#define CN_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* ---------------------------------------------------------------- errors */

#define CN_MUST_USE __attribute__((warn_unused_result))
/* Drops a CN_MUST_USE result on purpose (best effort, counted elsewhere):
 * gcc, unlike clang, warns on a plain (void) cast. */
#define CN_IGNORE(expr) ((void)!(expr))

/**
 * Error codes. Functions return CN_OK (0) or one of these (negative).
 * Classes: try again (CN_EAGAIN), peer fault (CN_EPROTO, CN_ETOOBIG,
 * CN_EINVAL, CN_EAUTH: close or refuse the peer), internal (the rest).
 */
enum cn_err {
    CN_OK = 0,
    CN_EAGAIN = -1,    /* need more input or output space; call again */
    CN_EINVAL = -2,    /* a malformed value from a caller or peer */
    CN_EPROTO = -3,    /* a protocol violation by the peer */
    CN_ETOOBIG = -4,   /* a size above its named limit */
    CN_ENOMEM = -5,    /* allocation failed */
    CN_EIO = -6,       /* the disk or the OS failed */
    CN_ENOTFOUND = -7, /* no such record */
    CN_EEXIST = -8,    /* the record exists already */
    CN_EAUTH = -9,     /* a signature or MAC did not verify */
    CN_ECLOSED = -10,  /* the peer or the object is gone */
    CN_ETIMEDOUT = -11,
    CN_ECONFLICT = -12, /* the request disagrees with stored state */
    CN_ELIMIT = -13,    /* a count or quota limit was reached */
    CN_EVERSION = -14,  /* an unknown record or protocol version */
    CN_EINTERNAL = -15,
};

/** Returns a static, human-readable name for an error code. */
const char *cn_strerror(int err);

/** Propagates a negative result; for functions that own nothing. */
#define CN_TRY(expr)                                                                               \
    do {                                                                                           \
        int cn__rc = (expr);                                                                       \
        if (cn__rc < 0)                                                                            \
            return cn__rc;                                                                         \
    } while (0)

/** Returns code when cond is false; for functions that own nothing. */
#define CN_ENSURE(cond, code)                                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return (code);                                                                         \
    } while (0)

/** Like CN_TRY but jumps to the function's `out:` label with rc set. */
#define CN_TRY_OUT(expr)                                                                           \
    do {                                                                                           \
        rc = (expr);                                                                               \
        if (rc < 0)                                                                                \
            goto out;                                                                              \
    } while (0)

#define CN_ENSURE_OUT(cond, code)                                                                  \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            rc = (code);                                                                           \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

#define CN_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define CN_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define CN_MAX(a, b)    ((a) > (b) ? (a) : (b))

/* ------------------------------------------------------- slices, buffers */

/** A borrowed view of bytes; layout-compatible with uv_buf_t. */
typedef struct cn_slice {
    uint8_t *base;
    size_t len;
} cn_slice_t;

/** Makes a slice borrowing len bytes at p. */
cn_slice_t cn_slice(const void *p, size_t len);

/**
 * An owned, growable byte buffer with a read cursor: bytes [rpos, len) are
 * unread. Initialise with cn_buf_init, release with cn_buf_dispose.
 */
typedef struct cn_buf {
    uint8_t *data;
    size_t len;  /* bytes written */
    size_t rpos; /* bytes consumed by readers */
    size_t cap;
} cn_buf_t;

void cn_buf_init(cn_buf_t *b);
/** Frees the storage; the buffer may be reused after cn_buf_init. */
void cn_buf_dispose(cn_buf_t *b);
/**
 * Makes room for n more bytes: moves the unread bytes to the front when the
 * consumed part is at least as large as they are, else grows.
 */
CN_MUST_USE int cn_buf_reserve(cn_buf_t *b, size_t n);
/** Appends n bytes copied from p. */
CN_MUST_USE int cn_buf_append(cn_buf_t *b, const void *p, size_t n);
CN_MUST_USE int cn_buf_put_u8(cn_buf_t *b, uint8_t v);
CN_MUST_USE int cn_buf_put_u16be(cn_buf_t *b, uint16_t v);
CN_MUST_USE int cn_buf_put_u32be(cn_buf_t *b, uint32_t v);
CN_MUST_USE int cn_buf_put_u64be(cn_buf_t *b, uint64_t v);
/** Appends printf-formatted text (no terminating NUL is counted). */
CN_MUST_USE int cn_buf_printf(cn_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/** Unread bytes as a borrowed slice (valid until the next write). */
cn_slice_t cn_buf_unread(const cn_buf_t *b);
/** Marks n unread bytes consumed; compacts when everything was read. */
void cn_buf_consume(cn_buf_t *b, size_t n);
/** Drops all content, keeps the storage. */
void cn_buf_reset(cn_buf_t *b);

/* ---------------------------------------------------------------- arena */

/**
 * A bump allocator for short-lived allocations that all end together (one
 * decoded request): cn_arena_alloc is a pointer bump in one block that is
 * kept across resets, cn_arena_reset frees everything at once. What does
 * not fit the block gets a malloc'd chunk of its own, freed by the next
 * reset. Under AddressSanitizer the block is poisoned by each reset, so a
 * pointer kept past it still faults. Not thread-safe: one per thread.
 */
#define CN_ARENA_BLOCK (16u * 1024u)

/* Memory a pool or arena holds for reuse is poisoned under AddressSanitizer,
 * so that a pointer kept past its release still faults (no-ops otherwise). */
#if defined(__SANITIZE_ADDRESS__)
#define CN_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CN_ASAN 1
#endif
#endif
#ifdef CN_ASAN
#include <sanitizer/asan_interface.h>
#define CN_POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define CN_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define CN_POISON(p, n)   ((void)(p), (void)(n))
#define CN_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

typedef struct cn_arena {
    uint8_t *block; /* CN_ARENA_BLOCK bytes, allocated on first use */
    size_t used;
    struct cn_arena_chunk *chunks; /* overflow, newest first */
} cn_arena_t;

/** Returns n bytes aligned for any type; NULL on ENOMEM (n == 0: 1 byte). */
void *cn_arena_alloc(cn_arena_t *a, size_t n);
/** Frees every allocation; keeps the block. */
void cn_arena_reset(cn_arena_t *a);
/** Frees everything; the arena may be reused (zeroed) afterwards. */
void cn_arena_dispose(cn_arena_t *a);

/* --------------------------------------------------------------- cursor */

/**
 * A read cursor over borrowed bytes with typed, bounds-checked readers.
 * Every reader returns CN_EAGAIN (and consumes nothing) when too few bytes
 * remain, so a parser never does raw pointer arithmetic.
 */
typedef struct cn_cursor {
    const uint8_t *p;
    size_t len;
    size_t pos;
} cn_cursor_t;

void cn_cursor_init(cn_cursor_t *c, const void *p, size_t len);
size_t cn_cursor_left(const cn_cursor_t *c);
CN_MUST_USE int cn_cursor_u8(cn_cursor_t *c, uint8_t *v);
CN_MUST_USE int cn_cursor_u16be(cn_cursor_t *c, uint16_t *v);
CN_MUST_USE int cn_cursor_u32be(cn_cursor_t *c, uint32_t *v);
CN_MUST_USE int cn_cursor_u64be(cn_cursor_t *c, uint64_t *v);
/** Copies n bytes into out. */
CN_MUST_USE int cn_cursor_copy(cn_cursor_t *c, void *out, size_t n);
/** Borrows n bytes (out points into the cursor's memory). */
CN_MUST_USE int cn_cursor_view(cn_cursor_t *c, size_t n, cn_slice_t *out);

/** Big-endian stores and loads for fixed-width keys. */
void cn_store_u32be(uint8_t *p, uint32_t v);
void cn_store_u64be(uint8_t *p, uint64_t v);
uint32_t cn_load_u32be(const uint8_t *p);
uint64_t cn_load_u64be(const uint8_t *p);

/** Writes 2*n lowercase hex digits and a NUL into out (size >= 2n+1). */
void cn_hex_encode(char *out, const void *in, size_t n);
/** Parses exactly 2*n hex digits from s into out; CN_EINVAL otherwise. */
CN_MUST_USE int cn_hex_decode(void *out, size_t n, const char *s);

/* ---------------------------------------------------------------- clock */

/** Wall-clock milliseconds since the Unix epoch. */
uint64_t cn_now_ms(void);
/**
 * The same, from the kernel's last tick (a few ms old) without reading the
 * clock source: for per-record expiry checks in bulk (compaction filters).
 */
uint64_t cn_now_coarse_ms(void);
/** Monotonic nanoseconds (for durations only). */
uint64_t cn_mono_ns(void);
/**
 * *out = now on clock (CLOCK_REALTIME, CLOCK_MONOTONIC) plus ms: the
 * absolute deadline pthread_cond_timedwait takes.
 */
void cn_deadline(struct timespec *out, clockid_t clock, uint64_t ms);
/**
 * A 16-byte time-ordered id in RFC 9562's UUIDv7 layout: unix_ms (48 bits,
 * big-endian), then 74 bits of rnd (10 bytes), with the version (7) and
 * variant bits set. The ids a client makes sort by creation time, so the
 * node's dedupe index (keyed by message id first) takes each new one near
 * the last instead of at a random place.
 */
void cn_time_ordered_id(uint8_t out[16], uint64_t unix_ms, const uint8_t rnd[10]);

/* -------------------------------------------------------------- threads */

/**
 * Names the calling thread (at most 15 bytes are kept), as top -H, perf
 * and /proc/PID/task/TID/comm show it. The node's names are listed in
 * docs/OPERATIONS.md.
 */
void cn_thread_name(const char *name);

/* -------------------------------------------------------------- logging */

enum cn_log_level { CN_LOG_DEBUG = 0, CN_LOG_INFO, CN_LOG_WARN, CN_LOG_ERROR };

/** Sets the minimum level written (default INFO) and the output (stderr). */
void cn_log_set_level(enum cn_log_level level);
/** Parses "debug|info|warn|error"; CN_EINVAL otherwise. */
CN_MUST_USE int cn_log_parse_level(const char *s, enum cn_log_level *out);

/**
 * Writes one logfmt line: `ts=... level=... event=EVENT <fields>`.
 * fields is a printf format producing further `key=value` pairs; callers
 * never pass key material, ciphertext or tokens.
 */
void cn_log(enum cn_log_level level, const char *event, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));

#define cn_log_debug(ev, ...) cn_log(CN_LOG_DEBUG, ev, __VA_ARGS__)
#define cn_log_info(ev, ...)  cn_log(CN_LOG_INFO, ev, __VA_ARGS__)
#define cn_log_warn(ev, ...)  cn_log(CN_LOG_WARN, ev, __VA_ARGS__)
#define cn_log_error(ev, ...) cn_log(CN_LOG_ERROR, ev, __VA_ARGS__)

#endif /* CN_COMMON_H */
