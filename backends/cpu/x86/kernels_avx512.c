/* AVX-512 F kernels (compiled with -mavx512f -mavx512bw -mavx512vl -mfma
 * -mf16c). Tails use masked loads so no scalar loop is needed. */
#include <immintrin.h>

#include "x86.h"

float em_dot_f32_avx512(int64_t n, const void *w, const float *x) {
    const float *a = w;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(x + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(x + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, x + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

float em_dot_f16_avx512(int64_t n, const void *w, const float *x) {
    const uint16_t *a = w;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 w0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(a + i)));
        __m512 w1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(a + i + 16)));
        s0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + i), s0);
        s1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 w0 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, a + i));
        s0 = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, x + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/* The GEMM tile as outer products, tokens in the lanes: MR weight rows x
 * NV vectors of 16 tokens held in MR * NV accumulators. Per k: NV loads of
 * activations, MR broadcasts of weights, MR * NV FMAs, no horizontal sums
 * and no packing of the weights. 12 x 32 (24 accumulators) measured best
 * on the dev VM's Skylake-class core: about 50-58 GMAC/s of its 70 peak,
 * where the row-packed 6 x 32 layout it replaces reached 28 (mostly the
 * cost of packing dequantized rows k-major). MR and NV are constants at
 * every call, so the loops unroll and the arrays live in registers. */
static inline __attribute__((always_inline)) void tile(int mr, int nv, int64_t kn, const float *w,
                                                       int64_t ldw, const float *xT, int64_t ldx,
                                                       float *yT, int64_t ldy) {
    __m512 acc[12][2];
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) acc[r][v] = _mm512_loadu_ps(yT + r * ldy + 16 * v);
    for (int64_t k = 0; k < kn; k++) {
        __m512 a[2];
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) a[v] = _mm512_loadu_ps(xT + k * ldx + 16 * v);
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            __m512 b = _mm512_set1_ps(w[r * ldw + k]);
#pragma GCC unroll 2
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_fmadd_ps(a[v], b, acc[r][v]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) _mm512_storeu_ps(yT + r * ldy + 16 * v, acc[r][v]);
}

#define ROWS_LOOP(NV)                                                                          \
    do {                                                                                       \
        int64_t r = 0;                                                                         \
        for (; r + 12 <= nr; r += 12)                                                          \
            tile(12, NV, kn, w + r * ldw, ldw, xT + t, ldx, yT + r * ldy + t, ldy);            \
        for (; r + 4 <= nr; r += 4)                                                            \
            tile(4, NV, kn, w + r * ldw, ldw, xT + t, ldx, yT + r * ldy + t, ldy);             \
        for (; r < nr; r++) tile(1, NV, kn, w + r * ldw, ldw, xT + t, ldx, yT + r * ldy + t, ldy); \
    } while (0)

void em_gemm_f32_avx512(int64_t kn, int64_t nr, int64_t nt, const float *w, int64_t ldw,
                        const float *xT, int64_t ldx, float *yT, int64_t ldy) {
    int64_t t = 0;
    for (; t + 32 <= nt; t += 32) ROWS_LOOP(2);
    for (; t < nt; t += 16) ROWS_LOOP(1);
}
