/* Memory read bandwidth, measured: the reference for the benchmarks'
 * decode efficiency (decode reads every weight once per token). */
#include "bandwidth.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct bw_arg { const uint64_t *p; size_t n; uint64_t sum; } bw_arg;

static void *bw_worker(void *arg) {
    bw_arg *a = arg;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= a->n; i += 4) {
        s0 += a->p[i];
        s1 += a->p[i + 1];
        s2 += a->p[i + 2];
        s3 += a->p[i + 3];
    }
    a->sum = s0 + s1 + s2 + s3;
    return NULL;
}

/* Best of 5 reads of a 1 GiB buffer split across threads, in GB/s. */
double read_bandwidth(int threads) {
    size_t bytes = (size_t)1 << 30, n = bytes / 8;
    uint64_t *buf = malloc(bytes);
    if (!buf) return 0;
    for (size_t i = 0; i < n; i++) buf[i] = i;
    double best = 0;
    pthread_t th[64];
    bw_arg args[64];
    if (threads > 64) threads = 64;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now_s();
        for (int t = 0; t < threads; t++) {
            args[t] = (bw_arg){ buf + n / threads * t, n / threads, 0 };
            pthread_create(&th[t], NULL, bw_worker, &args[t]);
        }
        uint64_t sink = 0;
        for (int t = 0; t < threads; t++) {
            pthread_join(th[t], NULL);
            sink += args[t].sum;
        }
        double gbs = (double)bytes / (now_s() - t0) / 1e9;
        if (sink != 1 && gbs > best) best = gbs;
    }
    free(buf);
    return best;
}

