/* AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c; only
 * called when the CPU has them (dsp.c). Tails run in scalar code. */
#include <immintrin.h>
#include <math.h>
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

/* Attention chunk (dsp.h: em_attn_chunk_fn), AVX2: eight positions per
 * transposing reduction, 16 values of V per pass; tails through masked
 * loads and stores. */

/* lanes [0, left) set, as the mask vector maskload/maskstore take */
static inline __m256i lanes8(int64_t left) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int32_t k = left > 8 ? 8 : left < 0 ? 0 : (int32_t)left;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), idx);
}

/* e^x as in the AVX-512 kernel; 2^n is built in the exponent field, so x
 * is clamped to [-87, 88] (e^-87 ~ 1.6e-38 instead of 0: below any weight
 * that matters next to the chunk's max, which weighs 1; e^88 ~ 1.7e38
 * instead of inf: silu of x <= -88 is then -5e-37 instead of -0). */
static inline __m256 exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* eight vectors to one: lane i = the sum of a[i]'s lanes */
static inline __m256 sum8(const __m256 a[8]) {
    __m256 b0 = _mm256_hadd_ps(a[0], a[1]), b1 = _mm256_hadd_ps(a[2], a[3]);
    __m256 b2 = _mm256_hadd_ps(a[4], a[5]), b3 = _mm256_hadd_ps(a[6], a[7]);
    __m256 c0 = _mm256_hadd_ps(b0, b1), c1 = _mm256_hadd_ps(b2, b3);
    return _mm256_add_ps(_mm256_permute2f128_ps(c0, c1, 0x20), _mm256_permute2f128_ps(c0, c1, 0x31));
}

/* scores of one head against 8 K rows (all valid pointers) */
static inline __m256 scores8(int64_t D, const float *q, const float *const *k, float scale) {
    __m256 a[8];
    for (int i = 0; i < 8; i++) a[i] = _mm256_setzero_ps();
    for (int64_t d = 0; d < D; d += 8) {
        __m256i m = lanes8(D - d);
        __m256 qv = _mm256_maskload_ps(q + d, m);
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) a[i] = _mm256_fmadd_ps(_mm256_maskload_ps(k[i] + d, m), qv, a[i]);
    }
    return _mm256_mul_ps(sum8(a), _mm256_set1_ps(scale));
}

static inline __attribute__((always_inline)) void wsum8(int ng, int64_t Dv, int64_t e, int n,
                                                        const float *const *v,
                                                        const float (*w)[16], const float *r,
                                                        float *acc, int64_t lda) {
    __m256i mk[2] = { lanes8(Dv - e), lanes8(Dv - e - 8) };
    __m256 a[4][2];
#pragma GCC unroll 4
    for (int g = 0; g < ng; g++)
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++)
            a[g][j] = _mm256_mul_ps(_mm256_maskload_ps(acc + g * lda + e + 8 * j, mk[j]),
                                    _mm256_set1_ps(r[g]));
    for (int i = 0; i < n; i++) {
        __m256 x0 = _mm256_maskload_ps(v[i] + e, mk[0]), x1 = _mm256_maskload_ps(v[i] + e + 8, mk[1]);
#pragma GCC unroll 4
        for (int g = 0; g < ng; g++) {
            __m256 b = _mm256_set1_ps(w[g][i]);
            a[g][0] = _mm256_fmadd_ps(x0, b, a[g][0]);
            a[g][1] = _mm256_fmadd_ps(x1, b, a[g][1]);
        }
    }
#pragma GCC unroll 4
    for (int g = 0; g < ng; g++)
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++) _mm256_maskstore_ps(acc + g * lda + e + 8 * j, mk[j], a[g][j]);
}

void em_attn_chunk_avx2(int64_t D, int64_t Dv, int64_t G, const float *q, int64_t ldq,
                        float scale, int n, const float *const *k, const float *const *v,
                        float *m, float *l, float *acc, int64_t lda) {
    const float *kp[16];
    float w[4][16], r[4];
    for (int i = 0; i < 16; i++) kp[i] = k[i < n ? i : 0];
    for (int64_t g0 = 0; g0 < G; g0 += 4) {
        int ng = G - g0 < 4 ? (int)(G - g0) : 4;
        for (int g = 0; g < ng; g++) {
            const float *qg = q + (g0 + g) * ldq;
            __m256 s[2], ninf = _mm256_set1_ps(-INFINITY);
            for (int h = 0; h < 2; h++) {
                s[h] = h * 8 < n ? scores8(D, qg, kp + 8 * h, scale) : ninf;
                s[h] = _mm256_blendv_ps(ninf, s[h], _mm256_castsi256_ps(lanes8(n - 8 * h)));
            }
            __m256 mx = _mm256_max_ps(s[0], s[1]);
            __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
            m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
            float bm = _mm_cvtss_f32(m4), *mg = m + g0 + g, *lg = l + g0 + g;
            r[g] = 1.0f;
            if (bm > *mg) {
                r[g] = _mm256_cvtss_f32(exp256(_mm256_set1_ps(*mg - bm)));
                *lg *= r[g];
                *mg = bm;
            }
            __m256 sum = _mm256_setzero_ps();
            for (int h = 0; h < 2; h++) {
                __m256 p = exp256(_mm256_sub_ps(s[h], _mm256_set1_ps(*mg)));
                p = _mm256_and_ps(p, _mm256_castsi256_ps(lanes8(n - 8 * h)));
                sum = _mm256_add_ps(sum, p);
                _mm256_storeu_ps(w[g] + 8 * h, p);
            }
            *lg += hsum256(sum);
        }
        float *a = acc + g0 * lda;
        for (int64_t e = 0; e < Dv; e += 16) switch (ng) {
            case 4: wsum8(4, Dv, e, n, v, w, r, a, lda); break;
            case 3: wsum8(3, Dv, e, n, v, w, r, a, lda); break;
            case 2: wsum8(2, Dv, e, n, v, w, r, a, lda); break;
            default: wsum8(1, Dv, e, n, v, w, r, a, lda); break;
            }
    }
}

void em_swiglu_avx2(int64_t n, const float *g, const float *u, float *y) {
    const __m256 one = _mm256_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 8) {
        __m256i m = lanes8(n - i);
        __m256 x = _mm256_maskload_ps(g + i, m);
        __m256 s = _mm256_div_ps(x, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), x))));
        _mm256_maskstore_ps(y + i, m, _mm256_mul_ps(s, _mm256_maskload_ps(u + i, m)));
    }
}
