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

/* Matmul tile as outer products: 32 weight rows (two vectors) x 6 tokens
 * held in 12 accumulators; per k, 2 loads of packed weights, 6 broadcasts
 * of activations and 12 FMAs, and no horizontal sums. The weights are
 * packed k-major in slices of EM_GEMM_KC so a slice (32 KiB) stays in L1. */
#define EM_GEMM_KC 256
#define EM_GEMM_NR 32
#define EM_GEMM_MR 6

static void micro_6x32(int64_t kn, const float *pack, const float *x, int64_t K, float *y,
                       int64_t ldy, __mmask16 m0, __mmask16 m1) {
    __m512 acc[EM_GEMM_MR][2];
    for (int t = 0; t < EM_GEMM_MR; t++) {
        acc[t][0] = _mm512_maskz_loadu_ps(m0, y + t * ldy);
        acc[t][1] = _mm512_maskz_loadu_ps(m1, y + t * ldy + 16);
    }
    for (int64_t k = 0; k < kn; k++) {
        __m512 w0 = _mm512_load_ps(pack + k * EM_GEMM_NR);
        __m512 w1 = _mm512_load_ps(pack + k * EM_GEMM_NR + 16);
        for (int t = 0; t < EM_GEMM_MR; t++) {
            __m512 b = _mm512_set1_ps(x[t * K + k]);
            acc[t][0] = _mm512_fmadd_ps(w0, b, acc[t][0]);
            acc[t][1] = _mm512_fmadd_ps(w1, b, acc[t][1]);
        }
    }
    for (int t = 0; t < EM_GEMM_MR; t++) {
        _mm512_mask_storeu_ps(y + t * ldy, m0, acc[t][0]);
        _mm512_mask_storeu_ps(y + t * ldy + 16, m1, acc[t][1]);
    }
}

/* The same for fewer than EM_GEMM_MR tokens (the batch's last few). */
static void micro_tail(int64_t kn, int64_t tn, const float *pack, const float *x, int64_t K,
                       float *y, int64_t ldy, __mmask16 m0, __mmask16 m1) {
    for (int64_t t = 0; t < tn; t++) {
        __m512 a0 = _mm512_maskz_loadu_ps(m0, y + t * ldy);
        __m512 a1 = _mm512_maskz_loadu_ps(m1, y + t * ldy + 16);
        for (int64_t k = 0; k < kn; k++) {
            __m512 b = _mm512_set1_ps(x[t * K + k]);
            a0 = _mm512_fmadd_ps(_mm512_load_ps(pack + k * EM_GEMM_NR), b, a0);
            a1 = _mm512_fmadd_ps(_mm512_load_ps(pack + k * EM_GEMM_NR + 16), b, a1);
        }
        _mm512_mask_storeu_ps(y + t * ldy, m0, a0);
        _mm512_mask_storeu_ps(y + t * ldy + 16, m1, a1);
    }
}

static void pack_slice(const float *w, int64_t K, int64_t rn, int64_t kn, float *pack) {
    for (int64_t r = 0; r < EM_GEMM_NR; r++) {
        if (r < rn) {
            const float *src = w + r * K;
            for (int64_t k = 0; k < kn; k++) pack[k * EM_GEMM_NR + r] = src[k];
        } else {
            for (int64_t k = 0; k < kn; k++) pack[k * EM_GEMM_NR + r] = 0;
        }
    }
}

static __mmask16 lane_mask(int64_t n) {
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}

void em_gemm_f32_avx512(int64_t K, int64_t nr, int64_t nt, const float *w, const float *x,
                        float *y, int64_t ldy) {
    float pack[EM_GEMM_KC * EM_GEMM_NR] __attribute__((aligned(64)));
    for (int64_t t = 0; t < nt; t++)
        for (int64_t r = 0; r < nr; r++) y[t * ldy + r] = 0;
    for (int64_t r0 = 0; r0 < nr; r0 += EM_GEMM_NR) {
        int64_t rn = nr - r0 < EM_GEMM_NR ? nr - r0 : EM_GEMM_NR;
        __mmask16 m0 = lane_mask(rn), m1 = lane_mask(rn - 16);
        for (int64_t k0 = 0; k0 < K; k0 += EM_GEMM_KC) {
            int64_t kn = K - k0 < EM_GEMM_KC ? K - k0 : EM_GEMM_KC;
            pack_slice(w + r0 * K + k0, K, rn, kn, pack);
            int64_t t = 0;
            for (; t + EM_GEMM_MR <= nt; t += EM_GEMM_MR)
                micro_6x32(kn, pack, x + t * K + k0, K, y + t * ldy + r0, ldy, m0, m1);
            if (t < nt) micro_tail(kn, nt - t, pack, x + t * K + k0, K, y + t * ldy + r0, ldy, m0, m1);
        }
    }
}
