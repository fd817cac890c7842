/* AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c; only
 * called when the CPU has them (dsp.c). Tails run in scalar code. */
#include <immintrin.h>
#include <string.h>

#include "../../../lib/util.h"
#include "simd_avx2.h"
#include "x86.h"

float em_dot_f32_avx2(int64_t n, const void *w, const float *x) {
    const float *a = w;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(x + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(x + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(x + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(x + i), s0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += a[i] * x[i];
    return s;
}

static inline __m256 load_f16x8(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

float em_dot_f16_avx2(int64_t n, const void *w, const float *x) {
    const uint16_t *a = w;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(load_f16x8(a + i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(load_f16x8(a + i + 8), _mm256_loadu_ps(x + i + 8), s1);
        s2 = _mm256_fmadd_ps(load_f16x8(a + i + 16), _mm256_loadu_ps(x + i + 16), s2);
        s3 = _mm256_fmadd_ps(load_f16x8(a + i + 24), _mm256_loadu_ps(x + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(load_f16x8(a + i), _mm256_loadu_ps(x + i), s0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += em_f16_to_f32(a[i]) * x[i];
    return s;
}

static inline __m256 load_bf16x8(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

float em_dot_bf16_avx2(int64_t n, const void *w, const float *x) {
    const uint16_t *a = w;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(load_bf16x8(a + i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(load_bf16x8(a + i + 8), _mm256_loadu_ps(x + i + 8), s1);
    }
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += em_bf16_to_f32(a[i]) * x[i];
    return s;
}

void em_bf16_to_f32_avx2(int64_t n, const void *src, float *dst) {
    const uint16_t *a = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_bf16x8(a + i));
    for (; i < n; i++) dst[i] = em_bf16_to_f32(a[i]);
}

void em_f16_to_f32_avx2(int64_t n, const void *src, float *dst) {
    const uint16_t *a = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_f16x8(a + i));
    for (; i < n; i++) dst[i] = em_f16_to_f32(a[i]);
}

void em_axpy_avx2(int64_t n, float a, const float *x, float *y) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

void em_f32_to_f16_avx2(int64_t n, const float *src, void *dst) {
    uint16_t *d = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) d[i] = em_f32_to_f16(src[i]);
}

void em_axpy_f16_avx2(int64_t n, float a, const void *x, float *y) {
    const uint16_t *h = x;
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, load_f16x8(h + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * em_f16_to_f32(h[i]);
}

/* The GEMM tile of dsp.h with 8-token lanes: 6 rows x 16 tokens in 12 of
 * the 16 ymm registers (see kernels_avx512.c for the layout's reasons). */
static inline __attribute__((always_inline)) void tile(int mr, int64_t kn, const float *w,
                                                       int64_t ldw, const float *xT, int64_t ldx,
                                                       float *yT, int64_t ldy) {
    __m256 acc[6][2];
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        acc[r][0] = _mm256_loadu_ps(yT + r * ldy);
        acc[r][1] = _mm256_loadu_ps(yT + r * ldy + 8);
    }
    for (int64_t k = 0; k < kn; k++) {
        __m256 a0 = _mm256_loadu_ps(xT + k * ldx), a1 = _mm256_loadu_ps(xT + k * ldx + 8);
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            __m256 b = _mm256_broadcast_ss(w + r * ldw + k);
            acc[r][0] = _mm256_fmadd_ps(a0, b, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(a1, b, acc[r][1]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        _mm256_storeu_ps(yT + r * ldy, acc[r][0]);
        _mm256_storeu_ps(yT + r * ldy + 8, acc[r][1]);
    }
}

void em_gemm_f32_avx2(int64_t kn, int64_t nr, int64_t nt, const float *w, int64_t ldw,
                      const float *xT, int64_t ldx, float *yT, int64_t ldy) {
    for (int64_t t = 0; t < nt; t += 16) {
        int64_t r = 0;
        for (; r + 6 <= nr; r += 6) tile(6, kn, w + r * ldw, ldw, xT + t, ldx, yT + r * ldy + t, ldy);
        for (; r + 2 <= nr; r += 2) tile(2, kn, w + r * ldw, ldw, xT + t, ldx, yT + r * ldy + t, ldy);
        for (; r < nr; r++) tile(1, kn, w + r * ldw, ldw, xT + t, ldx, yT + r * ldy + t, ldy);
    }
}
