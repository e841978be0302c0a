/*
 * What chatbench measures with, free of I/O: the log-linear latency
 * histogram (the HdrHistogram layout with 64 sub-buckets per power of
 * two), the payload stamp, and the span delivered_per_s is counted over.
 * The loop and tick utilities are in loop.c.
 */
#include "tests/bench/bench.h"

#include <string.h>

/* ------------------------------------------------------------ histogram */

static unsigned bucket_of(uint64_t v)
{
    if (v < 2 * BENCH_HIST_SUB)
        return (unsigned)v;
    unsigned k = 63u - (unsigned)__builtin_clzll(v); /* k >= 7 */
    unsigned shift = k - 6;
    unsigned idx = shift * BENCH_HIST_SUB + (unsigned)(v >> shift);
    return idx < BENCH_HIST_BUCKETS ? idx : BENCH_HIST_BUCKETS - 1;
}

/* The middle of bucket idx (the inverse of bucket_of). */
static uint64_t value_of(unsigned idx)
{
    if (idx < 2 * BENCH_HIST_SUB)
        return idx;
    unsigned shift = idx / BENCH_HIST_SUB - 1;
    uint64_t m = idx % BENCH_HIST_SUB + BENCH_HIST_SUB;
    return (m << shift) + ((1ull << shift) >> 1);
}

void bench_hist_init(bench_hist_t *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void bench_hist_add(bench_hist_t *h, uint64_t v)
{
    h->b[bucket_of(v)]++;
    h->count++;
    h->sum += (double)v;
    if (v > h->max)
        h->max = v;
    if (v < h->min)
        h->min = v;
}

void bench_hist_merge(bench_hist_t *dst, const bench_hist_t *src)
{
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->count += src->count;
    dst->sum += src->sum;
    dst->max = CN_MAX(dst->max, src->max);
    dst->min = CN_MIN(dst->min, src->min);
}

uint64_t bench_hist_quantile(const bench_hist_t *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)h->count + 0.5);
    if (want < 1)
        want = 1;
    if (want >= h->count)
        return h->max;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want)
            return CN_MIN(value_of(i), h->max);
    }
    return h->max;
}

/* -------------------------------------------------------------- payload */

/* intended send time (u64be ns) ‖ message number (u64be) ‖ tag (u32be) ‖
 * filler. The node never looks inside: for it this is ciphertext. */
void bench_payload_fill(uint8_t *p, size_t n, uint64_t intended_ns, uint64_t msg, uint32_t tag)
{
    cn_store_u64be(p, intended_ns);
    cn_store_u64be(p + 8, msg);
    cn_store_u32be(p + 16, tag);
    for (size_t i = BENCH_PAYLOAD_MIN; i < n; i++)
        p[i] = (uint8_t)(i * 131u + msg);
}

bool bench_payload_read(const uint8_t *p, size_t n, uint64_t *intended_ns, uint64_t *msg,
                        uint32_t *tag)
{
    if (n < BENCH_PAYLOAD_MIN)
        return false;
    *intended_ns = cn_load_u64be(p);
    *msg = cn_load_u64be(p + 8);
    *tag = cn_load_u32be(p + 16);
    return true;
}

/* ----------------------------------------------------------------- span */

double bench_delivery_span_s(uint64_t t0, uint64_t schedule_ns, uint64_t first_delivery,
                             uint64_t last_delivery, uint64_t now_ns)
{
    if (first_delivery == 0 || last_delivery < first_delivery)
        return (double)(now_ns - t0) / 1e9;
    uint64_t span = last_delivery - first_delivery;
    return (double)(span > schedule_ns ? span : schedule_ns) / 1e9;
}
