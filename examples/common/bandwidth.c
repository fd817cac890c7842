/* Memory read bandwidth, measured: the reference for the benchmarks'
 * decode efficiency (decode reads every weight once per token). */
#include "bandwidth.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define BW_MAX_THREADS 64
/* independent sums, so that the loop is bound by loads, not by one add
 * chain, and compilers vectorize it at any SIMD width */
#define BW_LANES 16

struct bw_probe {
    uint64_t *buf;
    size_t n;
    int threads;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct bw_arg { const uint64_t *p; size_t n; uint64_t sum; } bw_arg;

static void *bw_worker(void *arg) {
    bw_arg *a = arg;
    uint64_t s[BW_LANES] = { 0 };
    for (size_t i = 0; i + BW_LANES <= a->n; i += BW_LANES)
        for (int k = 0; k < BW_LANES; k++) s[k] += a->p[i + k];
    uint64_t sum = 0;
    for (int k = 0; k < BW_LANES; k++) sum += s[k];
    a->sum = sum;
    return NULL;
}

bw_probe *bw_probe_new(int threads) {
    bw_probe *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    size_t bytes = (size_t)1 << 30;
    p->n = bytes / sizeof *p->buf;
    p->threads = threads < 1 ? 1 : threads > BW_MAX_THREADS ? BW_MAX_THREADS : threads;
    if (!(p->buf = malloc(bytes))) {
        free(p);
        return NULL;
    }
    for (size_t i = 0; i < p->n; i++) p->buf[i] = i;
    return p;
}

double bw_probe_read(bw_probe *p, int reps) {
    if (!p) return 0;
    pthread_t th[BW_MAX_THREADS];
    bw_arg args[BW_MAX_THREADS];
    size_t share = p->n / (size_t)p->threads;
    double best = 0;
    for (int rep = 0; rep < reps; rep++) {
        double t0 = now_s();
        int started = 0;
        for (int t = 0; t < p->threads; t++) {
            args[t] = (bw_arg){ p->buf + share * (size_t)t, share, 0 };
            if (pthread_create(&th[t], NULL, bw_worker, &args[t])) break;
            started++;
        }
        uint64_t sink = 0;
        for (int t = 0; t < started; t++) {
            pthread_join(th[t], NULL);
            sink += args[t].sum;
        }
        double gbs = (double)(share * (size_t)started * sizeof *p->buf) / (now_s() - t0) / 1e9;
        /* the sink keeps the reads from being optimized away */
        if (sink != 1 && gbs > best) best = gbs;
    }
    return best;
}

void bw_probe_free(bw_probe *p) {
    if (!p) return;
    free(p->buf);
    free(p);
}

double read_bandwidth(int threads) {
    bw_probe *p = bw_probe_new(threads);
    double bw = bw_probe_read(p, 5);
    bw_probe_free(p);
    return bw;
}
