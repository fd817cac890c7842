/* AVX-512 VNNI kernels of the integer path (compiled with the AVX-512 flags
 * and -mavx512vnni). VPDPBUSD multiplies unsigned by signed bytes and sums
 * groups of 4 into int32 lanes in one instruction.
 *
 * The GEMM for many tokens works on tiles of 4 weight rows x 4 tokens, two
 * 32-blocks per 512-bit step. The weight rows are first unpacked once per
 * tile row into unsigned bytes u = w + o (Q8_0: o = 128, Q4_0: the nibble
 * itself, o = 8) and float scales, so the inner step per (row, token) pair
 * is: VPDPBUSD against the high plane, shift by 8, VPDPBUSD against the
 * low plane, convert, multiply the two scales, FMA. The offset comes out
 * afterwards: sum(w x) = sum(u x) - o * sum(x), and the activations carry
 * sum(x) per block. */
#include <immintrin.h>
#include <string.h>

#include "../../../lib/util.h"
#include "simd_avx2.h"
#include "x86.h"

/* ---- matrix-vector (decode): two blocks per 512-bit step ----
 *
 * Weights are made unsigned (Q8_0: w + 128 by flipping the sign bit; Q4_0:
 * the nibbles), so no sign trick is needed (AVX-512 has no VPSIGNB): per
 * step, two VPDPBUSD (high plane, shift, low plane), one convert, one FMA
 * with the two blocks' scales. The offset comes out per block through the
 * activation sums: sum(w x) = sum(u x) - o sum(x). The scales of 16
 * blocks are gathered from the strided fp16 fields at once. */

/* sc[k] = fp16 scale of weight block b0 + k times the activation scale,
 * for k < 16 (the caller guarantees 16 blocks exist); returns, as a
 * vector, o * sc[k] * s[k] for the offset. */
static __m512 scales16(const uint8_t *w, int bsz, const float *xd, const int32_t *xs,
                       int64_t b0, float o, float *sc) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                                             12, 13, 14, 15), _mm512_set1_epi32(bsz));
    /* 4-byte gathers at each block start: the low half is the fp16 scale */
    __m512i raw = _mm512_i32gather_epi32(idx, (const void *)(w + (size_t)b0 * bsz), 1);
    __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(raw));
    __m512 v = _mm512_mul_ps(d, _mm512_loadu_ps(xd + b0));
    _mm512_storeu_ps(sc, v);
    return _mm512_mul_ps(_mm512_mul_ps(v, _mm512_set1_ps(o)),
                         _mm512_cvtepi32_ps(_mm512_loadu_si512(xs + b0)));
}

/* [sc[k] x 8, sc[k + 1] x 8] */
static __m512 pair_scale(const float *sc) {
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)sc))));
}

static __m512i dot_pair(__m512i u, em_q8x_row x, int64_t i) {
    __m512i h = _mm512_loadu_si512(x.q + i * 32), l = _mm512_loadu_si512(x.lo + i * 32);
    __m512i acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, h);
    return _mm512_dpbusd_epi32(_mm512_slli_epi32(acc, 8), u, l);
}

static __m512i q8_pair(const uint8_t *b) { /* blocks at b and b + 34, made unsigned */
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b + 2))),
                                   _mm256_loadu_si256((const __m256i *)(b + 36)), 1);
    return _mm512_xor_si512(v, _mm512_set1_epi8(-128));
}

static __m512i q4_pair(const uint8_t *b) { /* blocks at b and b + 18 */
    return _mm512_inserti64x4(_mm512_castsi256_si512(q4_nibbles(b + 2)), q4_nibbles(b + 20), 1);
}

typedef __m512i (*pair_fn)(const uint8_t *b);

static float dot_vnni(int64_t n, const uint8_t *w, em_q8x_row x, int bsz, float o, pair_fn pair,
                      float (*tail)(int64_t n, const void *w, em_q8x_row x)) {
    int64_t nb = n / 32, b0 = 0;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(), corr = _mm512_setzero_ps();
    float sc[16];
    for (; b0 + 16 <= nb; b0 += 16) {
        corr = _mm512_add_ps(corr, scales16(w, bsz, x.d, x.s, b0, o, sc));
        for (int k = 0; k < 16; k += 4) {
            __m512i p0 = dot_pair(pair(w + (size_t)(b0 + k) * bsz), x, b0 + k);
            __m512i p1 = dot_pair(pair(w + (size_t)(b0 + k + 2) * bsz), x, b0 + k + 2);
            acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), pair_scale(sc + k), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), pair_scale(sc + k + 2), acc1);
        }
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) - _mm512_reduce_add_ps(corr);
    if (b0 < nb) /* fewer than 16 blocks left: the AVX2 kernel (VNNI implies AVX2) */
        sum += tail((nb - b0) * 32, w + (size_t)b0 * bsz, (em_q8x_row){ x.q + b0 * 32, x.lo + b0 * 32,
                                                                        x.d + b0, x.s + b0 });
    return sum;
}

float em_dot_q8_0_q8x_vnni(int64_t n, const void *w, em_q8x_row x) {
    return dot_vnni(n, w, x, 34, 128.0f, q8_pair, em_dot_q8_0_q8x_avx2);
}

float em_dot_q4_0_q8x_vnni(int64_t n, const void *w, em_q8x_row x) {
    return dot_vnni(n, w, x, 18, 8.0f, q4_pair, em_dot_q4_0_q8x_avx2);
}

/* ---- GEMM ---- */

#define R EM_GEMM_Q8X_ROWS /* 4 */
#define C 4

typedef struct tile {
    uint8_t *u;   /* [R][K] unsigned bytes */
    float *dw;    /* [R][nb] weight scales */
    int offset;
} tile;

static void unpack_q8_0(const uint8_t *row, int64_t nb, uint8_t *u, float *dw) {
    for (int64_t b = 0; b < nb; b++, row += 34) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(row + 2));
        _mm256_storeu_si256((__m256i *)(u + b * 32), _mm256_xor_si256(q, _mm256_set1_epi8(-128)));
        dw[b] = f16_at(row);
    }
}

static void unpack_q4_0(const uint8_t *row, int64_t nb, uint8_t *u, float *dw) {
    for (int64_t b = 0; b < nb; b++, row += 18) {
        _mm256_storeu_si256((__m256i *)(u + b * 32), q4_nibbles(row + 2));
        dw[b] = f16_at(row);
    }
}

/* [d[b] x 8, d[b + 1] x 8]; one block only when `two` is 0 */
static __m512 expand2(const float *d, int two) {
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    __m128 v = two ? _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)d)) : _mm_load_ss(d);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v));
}

/* 4 rows x 4 tokens over all K; xs[c] may repeat a token (tails) */
static void micro(const tile *tl, int64_t K, const em_q8x_row *xs, float out[R][C]) {
    int64_t nb = K / 32;
    __m512 acc[R][C];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b += 2) {
        int two = b + 1 < nb;
        __mmask64 m = two ? ~(__mmask64)0 : (__mmask64)0xffffffffu;
        __m512i wv[R];
        __m512 ws[R];
        for (int r = 0; r < R; r++) {
            wv[r] = _mm512_maskz_loadu_epi8(m, tl->u + r * K + b * 32);
            ws[r] = expand2(tl->dw + r * nb + b, two);
        }
        for (int c = 0; c < C; c++) {
            __m512i xh = _mm512_maskz_loadu_epi8(m, xs[c].q + b * 32);
            __m512i xl = _mm512_maskz_loadu_epi8(m, xs[c].lo + b * 32);
            __m512 xd = expand2(xs[c].d + b, two);
            for (int r = 0; r < R; r++) {
                __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv[r], xh);
                p = _mm512_dpbusd_epi32(_mm512_slli_epi32(p, 8), wv[r], xl);
                acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(ws[r], xd),
                                            acc[r][c]);
            }
        }
    }
    /* the offset: o * sum_b dw[b] * d_x[b] * s_x[b] */
    for (int c = 0; c < C; c++) {
        __m512 corr[R];
        for (int r = 0; r < R; r++) corr[r] = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; b += 16) {
            __mmask16 m = nb - b >= 16 ? 0xffff : (__mmask16)((1u << (nb - b)) - 1);
            __m512 e = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, xs[c].d + b),
                                     _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(m, xs[c].s + b)));
            for (int r = 0; r < R; r++)
                corr[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, tl->dw + r * nb + b), e, corr[r]);
        }
        for (int r = 0; r < R; r++)
            out[r][c] = _mm512_reduce_add_ps(acc[r][c]) -
                        (float)tl->offset * _mm512_reduce_add_ps(corr[r]);
    }
}

typedef void (*unpack_fn)(const uint8_t *row, int64_t nb, uint8_t *u, float *dw);

static void gemm(int64_t K, int64_t nr, int64_t nt, const void *w, size_t w_stride,
                 const em_q8x_row *x, float *y, int64_t ldy, void *scratch, unpack_fn unpack,
                 int offset) {
    int64_t nb = K / 32;
    tile tl = { scratch, (float *)((uint8_t *)scratch + R * K), offset };
    /* tokens in blocks whose activations (2 planes x TB x K bytes) stay in
     * L2 while every row group of the range passes over them; a row group
     * is unpacked again per token block, which costs O(K) against
     * O(TB x K) of arithmetic */
    const int64_t TB = 64;
    for (int64_t tb = 0; tb < nt; tb += TB)
    for (int64_t r0 = 0; r0 < nr; r0 += R) {
        for (int r = 0; r < R; r++) { /* rows past the end repeat the last */
            int64_t row = r0 + r < nr ? r0 + r : nr - 1;
            unpack((const uint8_t *)w + (size_t)row * w_stride, nb, tl.u + r * K, tl.dw + r * nb);
        }
        for (int64_t t0 = tb; t0 < nt && t0 < tb + TB; t0 += C) {
            em_q8x_row xs[C];
            int64_t tend = nt < tb + TB ? nt : tb + TB;
            for (int c = 0; c < C; c++) xs[c] = x[t0 + c < tend ? t0 + c : tend - 1];
            float out[R][C];
            micro(&tl, K, xs, out);
            for (int c = 0; c < C && t0 + c < tend; c++)
                for (int r = 0; r < R && r0 + r < nr; r++) y[(t0 + c) * ldy + r0 + r] = out[r][c];
        }
    }
}

void em_gemm_q8_0_q8x_vnni(int64_t K, int64_t nr, int64_t nt, const void *w, size_t w_stride,
                           const em_q8x_row *x, float *y, int64_t ldy, void *scratch) {
    gemm(K, nr, nt, w, w_stride, x, y, ldy, scratch, unpack_q8_0, 128);
}

void em_gemm_q4_0_q8x_vnni(int64_t K, int64_t nr, int64_t nt, const void *w, size_t w_stride,
                           const em_q8x_row *x, float *y, int64_t ldy, void *scratch) {
    gemm(K, nr, nt, w, w_stride, x, y, ldy, scratch, unpack_q4_0, 8);
}
