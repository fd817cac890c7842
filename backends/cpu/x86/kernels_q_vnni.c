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
#include "x86.h"

static float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return em_f16_to_f32(h);
}

/* sum of w * (256 hi + lo) for block i of x, w signed */
static __m256i dot_hilo(__m256i w, em_q8x_row x, int64_t i) {
    __m256i aw = _mm256_sign_epi8(w, w);
    __m256i h = _mm256_loadu_si256((const __m256i *)(x.q + i * 32));
    __m256i l = _mm256_loadu_si256((const __m256i *)(x.lo + i * 32));
    __m256i acc = _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, _mm256_sign_epi8(h, w));
    return _mm256_dpbusd_epi32(_mm256_slli_epi32(acc, 8), aw, _mm256_sign_epi8(l, w));
}

/* the same with w unsigned (no sign trick) */
static __m256i dot_hilo_u(__m256i u, em_q8x_row x, int64_t i) {
    __m256i h = _mm256_loadu_si256((const __m256i *)(x.q + i * 32));
    __m256i l = _mm256_loadu_si256((const __m256i *)(x.lo + i * 32));
    __m256i acc = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, h);
    return _mm256_dpbusd_epi32(_mm256_slli_epi32(acc, 8), u, l);
}

static float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

float em_dot_q8_0_q8x_vnni(int64_t n, const void *w, em_q8x_row x) {
    const uint8_t *b = w;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++, b += 34) {
        __m256i qw = _mm256_loadu_si256((const __m256i *)(b + 2));
        __m256 f = _mm256_cvtepi32_ps(dot_hilo(qw, x, i));
        acc = _mm256_fmadd_ps(f, _mm256_set1_ps(f16_at(b) * x.d[i]), acc);
    }
    return hsum256(acc);
}

static __m256i q4_nibbles(const uint8_t *p) { /* 16 bytes -> 32 values in [0, 15] */
    __m128i raw = _mm_loadu_si128((const __m128i *)p);
    __m128i lo = _mm_and_si128(raw, _mm_set1_epi8(15));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(15));
    return _mm256_set_m128i(hi, lo);
}

float em_dot_q4_0_q8x_vnni(int64_t n, const void *w, em_q8x_row x) {
    /* nibbles are already unsigned: sum((u - 8) x) = sum(u x) - 8 sum(x) */
    const uint8_t *b = w;
    __m256 acc = _mm256_setzero_ps();
    float corr = 0;
    for (int64_t i = 0; i < n / 32; i++, b += 18) {
        __m256i p = dot_hilo_u(q4_nibbles(b + 2), x, i);
        float sc = f16_at(b) * x.d[i];
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(sc), acc);
        corr += sc * (float)(8 * x.s[i]);
    }
    return hsum256(acc) - corr;
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
    __m128 v = two ? _mm_castpd_ps(_mm_load_sd((const double *)d)) : _mm_load_ss(d);
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
    for (int64_t r0 = 0; r0 < nr; r0 += R) {
        for (int r = 0; r < R; r++) { /* rows past the end repeat the last */
            int64_t row = r0 + r < nr ? r0 + r : nr - 1;
            unpack((const uint8_t *)w + (size_t)row * w_stride, nb, tl.u + r * K, tl.dw + r * nb);
        }
        for (int64_t t0 = 0; t0 < nt; t0 += C) {
            em_q8x_row xs[C];
            for (int c = 0; c < C; c++) xs[c] = x[t0 + c < nt ? t0 + c : nt - 1];
            float out[R][C];
            micro(&tl, K, xs, out);
            for (int c = 0; c < C && t0 + c < nt; c++)
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
