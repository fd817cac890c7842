/* Multiply-add peak (peak.h): twelve independent accumulator chains per
 * thread, enough to cover the instructions' latency, so the loop runs at
 * the issue rate. The accumulators start different and pass through an
 * empty asm so the compiler can neither merge nor drop them. */
#include "peak.h"

#include <pthread.h>
#include <stddef.h>
#include <time.h>

#define PEAK_ITERS 20000000L /* x 12 instructions per thread */

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define HIDE12(a)                                                                                  \
    __asm__ volatile("" : "+v"(a[0]), "+v"(a[1]), "+v"(a[2]), "+v"(a[3]), "+v"(a[4]), "+v"(a[5]), \
                     "+v"(a[6]), "+v"(a[7]), "+v"(a[8]), "+v"(a[9]), "+v"(a[10]), "+v"(a[11]))

/* A thread's runner: twelve chains of `op`, started apart, hidden from
 * the optimiser before and after the loop. */
#define CHAIN_RUNNER(name, isa, V, set1, xv, yv, op, first)                                    \
    __attribute__((target(isa))) static void *name(void *out) {                               \
        V a[12], x = set1(xv), y = set1(yv);                                                   \
        for (int j = 0; j < 12; j++) a[j] = set1(j);                                           \
        HIDE12(a);                                                                             \
        for (long i = 0; i < PEAK_ITERS; i++)                                                  \
            for (int j = 0; j < 12; j++) a[j] = op(a[j], x, y);                                \
        HIDE12(a);                                                                             \
        double s = 0;                                                                          \
        for (int j = 0; j < 12; j++) s += (double)first(a[j]);                                 \
        *(int *)out = (int)s;                                                                  \
        return NULL;                                                                           \
    }

CHAIN_RUNNER(run_vnni, "avx512f,avx512bw,avx512vnni", __m512i, _mm512_set1_epi32, 0x01020304,
             0x01010101, _mm512_dpbusd_epi32, _mm512_cvtsi512_si32)
CHAIN_RUNNER(run_fma512, "avx512f", __m512, _mm512_set1_ps, 0.999f, 0.001f, _mm512_fmadd_ps,
             _mm512_cvtss_f32)
CHAIN_RUNNER(run_fma256, "avx2,fma", __m256, _mm256_set1_ps, 0.999f, 0.001f, _mm256_fmadd_ps,
             _mm256_cvtss_f32)

/* VDPBF16PS's accumulators are F32 and its sources BF16 pairs: its own
 * runner, the same shape as CHAIN_RUNNER's */
__attribute__((target("avx512f,avx512bf16"))) static void *run_bf16(void *out) {
    __m512 a[12];
    __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f7f3f7f), y = (__m512bh)_mm512_set1_epi32(0x3a833a83);
    for (int j = 0; j < 12; j++) a[j] = _mm512_set1_ps((float)j);
    HIDE12(a);
    for (long i = 0; i < PEAK_ITERS; i++)
        for (int j = 0; j < 12; j++) a[j] = _mm512_dpbf16_ps(a[j], x, y);
    HIDE12(a);
    double s = 0;
    for (int j = 0; j < 12; j++) s += (double)_mm512_cvtss_f32(a[j]);
    *(int *)out = (int)s;
    return NULL;
}

static double timed(void *(*fn)(void *), int threads) {
    pthread_t th[64];
    int out[64], n = threads < 1 ? 1 : threads > 64 ? 64 : threads, started = 0;
    double t0 = now_s();
    for (int i = 0; i < n; i++) started += pthread_create(&th[i], NULL, fn, &out[i]) == 0;
    if (started < n) n = started;
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    double t = now_s() - t0;
    return t > 0 ? (double)n * (double)PEAK_ITERS * 12.0 / t : 0;
}

double peak_gmacs(int threads, int kind, const char **what) {
    __builtin_cpu_init();
    if (kind == PEAK_BF16 && __builtin_cpu_supports("avx512bf16")) {
        *what = "bf16 VDPBF16PS zmm";
        return timed(run_bf16, threads) * 32 / 1e9;
    }
    if (kind == PEAK_INT8 && __builtin_cpu_supports("avx512vnni")) {
        *what = "int8 VPDPBUSD zmm";
        return timed(run_vnni, threads) * 64 / 1e9;
    }
    if (__builtin_cpu_supports("avx512f")) {
        *what = "f32 FMA zmm";
        return timed(run_fma512, threads) * 16 / 1e9;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        *what = "f32 FMA ymm";
        return timed(run_fma256, threads) * 8 / 1e9;
    }
    *what = "not measured";
    return 0;
}
#else
double peak_gmacs(int threads, int kind, const char **what) {
    (void)threads;
    (void)kind;
    *what = "not measured";
    return 0;
}
#endif
