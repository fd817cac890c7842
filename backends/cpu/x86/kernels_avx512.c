/* AVX-512 F kernels (compiled with -mavx512f -mavx512bw -mavx512vl -mfma
 * -mf16c). Tails use masked loads so no scalar loop is needed. */
#include <immintrin.h>
#include <math.h>

#include "tile512.h"
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
    __m512 acc[EM_TILE_MR][2];
    em_tile_load(mr, nv, acc, yT, ldy);
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
    em_tile_store(mr, nv, acc, yT, ldy);
}

void em_gemm_f32_avx512(int64_t kn, int64_t nr, int64_t nt, const float *w, int64_t ldw,
                        const float *xT, int64_t ldx, float *yT, int64_t ldy) {
#define F32_TILE(MR, NV, r, t) tile(MR, NV, kn, w + (r) * ldw, ldw, xT + (t), ldx, yT + (r) * ldy + (t), ldy)
    EM_TILE_WALK(F32_TILE, nr, nt);
#undef F32_TILE
}

/* e^x for x <= ~88 (attention only needs x <= 0): x = n ln2 + r with
 * |r| <= ln2 / 2, e^r by its Taylor series to r^6 (truncation below
 * 1.2e-7 relative), then scaled by 2^n with VSCALEFPS, which also flushes
 * very negative x (and -inf, clamped first) to 0. */
static inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

static inline __mmask16 tail_mask(int64_t left) {
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

/* Sixteen vectors to one: lane i = the sum of a[i]'s lanes. Pairs are
 * interleaved and added inside 128-bit lanes, then across them. */
static inline __m512 sum16(const __m512 a[16]) {
    __m512 b[8], c[4], d[2];
    for (int i = 0; i < 8; i++)
        b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                             _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    /* b[i]: per 128-bit lane (a0 lanes 0+2, a1 0+2, a0 1+3, a1 1+3) */
    for (int i = 0; i < 4; i++)
        c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0xee));
    /* c[i]: per 128-bit lane the partial sums of a[4i .. 4i+3] */
    for (int i = 0; i < 2; i++)
        d[i] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0xdd));
    return _mm512_add_ps(_mm512_shuffle_f32x4(d[0], d[1], 0x88),
                         _mm512_shuffle_f32x4(d[0], d[1], 0xdd));
}

/* The scores of one head against the chunk's 16 K rows (rows past n
 * repeat row 0 and are masked to -inf): 16 accumulators over D, then one
 * transposing reduction. */
static inline __m512 scores16(int64_t D, const float *q, const float *const *k, int n,
                              float scale) {
    __m512 a[16];
    for (int i = 0; i < 16; i++) a[i] = _mm512_setzero_ps();
    for (int64_t d = 0; d < D; d += 16) {
        __mmask16 m = tail_mask(D - d);
        __m512 qv = _mm512_maskz_loadu_ps(m, q + d);
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            a[i] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, k[i] + d), qv, a[i]);
    }
    __m512 s = _mm512_mul_ps(sum16(a), _mm512_set1_ps(scale));
    return _mm512_mask_blend_ps(tail_mask(n), _mm512_set1_ps(-INFINITY), s);
}

/* acc_g = acc_g * r[g] + sum_i w[g][i] v_i for NG heads and 64 values
 * from e: 4 * NG accumulators, each V load feeding NG FMAs. */
static inline __attribute__((always_inline)) void wsum(int ng, int64_t Dv, int64_t e, int n,
                                                       const float *const *v,
                                                       const float (*w)[16], const float *r,
                                                       float *acc, int64_t lda) {
    __mmask16 mk[4];
    __m512 a[4][4];
    for (int j = 0; j < 4; j++) mk[j] = e + 16 * j < Dv ? tail_mask(Dv - e - 16 * j) : 0;
#pragma GCC unroll 4
    for (int g = 0; g < ng; g++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            a[g][j] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk[j], acc + g * lda + e + 16 * j),
                                    _mm512_set1_ps(r[g]));
    for (int i = 0; i < n; i++) {
        __m512 x[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) x[j] = _mm512_maskz_loadu_ps(mk[j], v[i] + e + 16 * j);
#pragma GCC unroll 4
        for (int g = 0; g < ng; g++) {
            __m512 b = _mm512_set1_ps(w[g][i]);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) a[g][j] = _mm512_fmadd_ps(x[j], b, a[g][j]);
        }
    }
#pragma GCC unroll 4
    for (int g = 0; g < ng; g++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) _mm512_mask_storeu_ps(acc + g * lda + e + 16 * j, mk[j], a[g][j]);
}

void em_attn_chunk_avx512(int64_t D, int64_t Dv, int64_t G, const float *q, int64_t ldq,
                          float scale, int n, const float *const *k, const float *const *v,
                          float *m, float *l, float *acc, int64_t lda) {
    const float *kp[16];
    float w[4][16], r[4];
    for (int i = 0; i < 16; i++) kp[i] = k[i < n ? i : 0];
    for (int64_t g0 = 0; g0 < G; g0 += 4) {
        int ng = G - g0 < 4 ? (int)(G - g0) : 4;
        for (int g = 0; g < ng; g++) {
            __m512 s = scores16(D, q + (g0 + g) * ldq, kp, n, scale);
            float bm = _mm512_reduce_max_ps(s), *mg = m + g0 + g, *lg = l + g0 + g;
            r[g] = 1.0f;
            if (bm > *mg) {
                r[g] = _mm512_cvtss_f32(exp512(_mm512_set1_ps(*mg - bm)));
                *lg *= r[g];
                *mg = bm;
            }
            __m512 p = _mm512_maskz_mov_ps(tail_mask(n), exp512(_mm512_sub_ps(s, _mm512_set1_ps(*mg))));
            *lg += _mm512_reduce_add_ps(p);
            _mm512_storeu_ps(w[g], p);
        }
        float *a = acc + g0 * lda;
        for (int64_t e = 0; e < Dv; e += 64) switch (ng) {
            case 4: wsum(4, Dv, e, n, v, w, r, a, lda); break;
            case 3: wsum(3, Dv, e, n, v, w, r, a, lda); break;
            case 2: wsum(2, Dv, e, n, v, w, r, a, lda); break;
            default: wsum(1, Dv, e, n, v, w, r, a, lda); break;
            }
    }
}

void em_swiglu_avx512(int64_t n, const float *g, const float *u, float *y) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 x = _mm512_maskz_loadu_ps(m, g + i);
        __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), x));
        __m512 s = _mm512_div_ps(x, _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, u + i)));
    }
}
