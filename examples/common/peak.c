/* Multiply-add peak (peak.h): twelve independent accumulator chains per
 * thread, enough to cover the instructions' latency, so the loop runs at
 * the issue rate. The accumulators start different and pass through an
 * empty asm so the compiler can neither merge nor drop them. */
#include "peak.h"

#include <pthread.h>
#include <stddef.h>
#include <time.h>

#define PEAK_ITERS 20000000L /* x 12 instructions per thread */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>

#define HIDE12(a)                                                                                  \
    __asm__ volatile("" : "+v"(a[0]), "+v"(a[1]), "+v"(a[2]), "+v"(a[3]), "+v"(a[4]), "+v"(a[5]), \
                     "+v"(a[6]), "+v"(a[7]), "+v"(a[8]), "+v"(a[9]), "+v"(a[10]), "+v"(a[11]))

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void *run_vnni(void *out) {
    __m512i a[12], x = _mm512_set1_epi32(0x01020304), y = _mm512_set1_epi32(0x01010101);
    for (int j = 0; j < 12; j++) a[j] = _mm512_set1_epi32(j);
    HIDE12(a);
    for (long i = 0; i < PEAK_ITERS; i++)
        for (int j = 0; j < 12; j++) a[j] = _mm512_dpbusd_epi32(a[j], x, y);
    HIDE12(a);
    int s = 0;
    for (int j = 0; j < 12; j++) s += _mm512_cvtsi512_si32(a[j]);
    *(int *)out = s;
    return NULL;
}

__attribute__((target("avx512f"))) static void *run_fma512(void *out) {
    __m512 a[12], x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(0.001f);
    for (int j = 0; j < 12; j++) a[j] = _mm512_set1_ps((float)j);
    HIDE12(a);
    for (long i = 0; i < PEAK_ITERS; i++)
        for (int j = 0; j < 12; j++) a[j] = _mm512_fmadd_ps(a[j], x, y);
    HIDE12(a);
    float s = 0;
    for (int j = 0; j < 12; j++) s += _mm512_cvtss_f32(a[j]);
    *(int *)out = (int)s;
    return NULL;
}

__attribute__((target("avx2,fma"))) static void *run_fma256(void *out) {
    __m256 a[12], x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(0.001f);
    for (int j = 0; j < 12; j++) a[j] = _mm256_set1_ps((float)j);
    HIDE12(a);
    for (long i = 0; i < PEAK_ITERS; i++)
        for (int j = 0; j < 12; j++) a[j] = _mm256_fmadd_ps(a[j], x, y);
    HIDE12(a);
    float s = 0;
    for (int j = 0; j < 12; j++) s += _mm256_cvtss_f32(a[j]);
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

double peak_gmacs(int threads, int int8, const char **what) {
    __builtin_cpu_init();
    if (int8 && __builtin_cpu_supports("avx512vnni")) {
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
double peak_gmacs(int threads, int int8, const char **what) {
    (void)threads;
    (void)int8;
    *what = "not measured";
    return 0;
}
#endif
