/* AVX2 kernels of the 8-bit path (dsp.h: gemm_q8, gemm_q8_few, the
 * activations into lanes, the weight unpacking), for CPUs without
 * AVX512-VNNI (Zen 2/3, most Intel client cores). Compiled with -mavx2
 * -mfma -mf16c.
 *
 * The product instruction is VPMADDUBSW: unsigned bytes times signed
 * bytes, adjacent pairs summed into int16 with saturation. Both uses here
 * are exact:
 * - Q4_0: u in [0, 15] and |q| <= 127, so a pair is at most 3810 and
 *   eight steps of a block (32 elements) sum to at most 30480 in int16;
 * - Q8_0: the sign trick (|w| against q with w's sign) on the signed
 *   weights w = u - 128, so a pair is at most 2 * 128 * 127 = 32512.
 * Either way the block's integer sum is sum(u q) - o sum(q) exactly, as
 * the reference computes it. */
#include <immintrin.h>
#include <string.h>

#include "../../../lib/util.h"
#include "simd_avx2.h"
#include "x86.h"

/* ---- unpacking and activations (the forms of dsp.h) ---- */

int32_t em_unpack_q8_0_avx2(int64_t nb, const void *src, uint8_t *w, float *dw) {
    const uint8_t *p = src;
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int64_t b = 0; b < nb; b++, p += 34) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(p + 2));
        _mm256_storeu_si256((__m256i *)(w + b * 32), _mm256_xor_si256(q, flip));
        dw[b] = f16_at(p);
    }
    return 128;
}

int32_t em_unpack_q4_0_avx2(int64_t nb, const void *src, uint8_t *w, float *dw) {
    const uint8_t *p = src;
    for (int64_t b = 0; b < nb; b++, p += 18) {
        _mm256_storeu_si256((__m256i *)(w + b * 32), q4_nibbles(p + 2));
        dw[b] = f16_at(p);
    }
    return 8;
}

/* Activations into lanes: the reference's operations (|x| max, 127 / max,
 * the product rounded to nearest even by the conversion), so bit-equal. */
void em_quant_q8_lanes_avx2(const float *x, int64_t ldx, int64_t T, int64_t b, int8_t *xq,
                            float *dx, int32_t *xs, int64_t ldq) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t t = 0; t < T; t++) {
        const float *v = x + t * ldx + b * 32;
        __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8);
        __m256 v2 = _mm256_loadu_ps(v + 16), v3 = _mm256_loadu_ps(v + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        __m256 ie = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, ie));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, ie));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, ie));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, ie));
        /* packs work within 128-bit lanes: restore the order afterwards */
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        int32_t q[8];
        _mm256_storeu_si256((__m256i *)q, p);
        for (int k4 = 0; k4 < 8; k4++) memcpy(xq + ((b * 8 + k4) * ldq + t) * 4, q + k4, 4);
        xs[b * ldq + t] = hsum256_epi32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
        dx[b * ldq + t] = _cvtsh_ss(_cvtss_sh(amax / 127.0f, 0));
    }
}

/* ---- the GEMM of batches: 4 rows x 16 tokens per register tile ----
 *
 * Per block, step k4 and row: the row's 4 weight bytes broadcast against
 * 4 activation bytes of each of 8 tokens per vector. Q4_0 sums a block's
 * eight steps in int16 (one VPMADDUBSW and one add per 32 products) and
 * widens once per block; Q8_0 widens every step. The float results of a
 * block go straight to yT (in L1), which leaves the 16 registers to the
 * integer tile. */

#define Q8A_ROWS 4

/* GCC unrolls the eight steps fully by itself and then spills the tile
 * (Q4_0 tile alone, one thread: 55-62 G products/s unrolled, 79-86 by
 * two) */
#if defined(__GNUC__) && !defined(__clang__)
#define EM_UNROLL2 _Pragma("GCC unroll 2")
#else
#define EM_UNROLL2
#endif

static inline __m256i bcast4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* yT[r][v] += (float)(acc[r][v] - o xs) * dw[r] * dx, for one block */
static inline void block_out(int nr, __m256i acc[Q8A_ROWS][2], __m256i c0, __m256i c1,
                             const float *dw, int64_t ldb, const float *dx, float *yT,
                             int64_t ldy) {
    __m256 d0 = _mm256_loadu_ps(dx), d1 = _mm256_loadu_ps(dx + 8);
    for (int r = 0; r < nr; r++) {
        __m256 s = _mm256_set1_ps(dw[r * ldb]);
        float *y = yT + r * ldy;
        __m256 f0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[r][0], c0)), s);
        __m256 f1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[r][1], c1)), s);
        _mm256_storeu_ps(y, _mm256_fmadd_ps(f0, d0, _mm256_loadu_ps(y)));
        _mm256_storeu_ps(y + 8, _mm256_fmadd_ps(f1, d1, _mm256_loadu_ps(y + 8)));
    }
}

/* nr <= Q8A_ROWS rows of unsigned nibbles (o = 8) against 16 tokens */
static inline void tile_q4(int64_t nb, int nr, const uint8_t *w, int64_t ldw, const float *dw,
                           int64_t ldb, const int8_t *xq, const float *dx, const int32_t *xs,
                           int64_t ldx, float *yT, int64_t ldy) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < nb; b++) {
        __m256i acc[Q8A_ROWS][2];
        for (int r = 0; r < nr; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
        const int8_t *xb = xq + (size_t)(b * 8) * (size_t)ldx * 4;
        EM_UNROLL2
        for (int k4 = 0; k4 < 8; k4++) {
            const int8_t *xk = xb + (size_t)k4 * (size_t)ldx * 4;
            __m256i x0 = _mm256_loadu_si256((const __m256i *)xk);
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(xk + 32));
            for (int r = 0; r < nr; r++) {
                __m256i wv = bcast4(w + r * ldw + b * 32 + k4 * 4);
                acc[r][0] = _mm256_add_epi16(acc[r][0], _mm256_maddubs_epi16(wv, x0));
                acc[r][1] = _mm256_add_epi16(acc[r][1], _mm256_maddubs_epi16(wv, x1));
            }
        }
        for (int r = 0; r < nr; r++) {
            acc[r][0] = _mm256_madd_epi16(acc[r][0], ones);
            acc[r][1] = _mm256_madd_epi16(acc[r][1], ones);
        }
        __m256i c0 = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(xs + b * ldx)), 3);
        __m256i c1 = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(xs + b * ldx + 8)), 3);
        block_out(nr, acc, c0, c1, dw + b, ldb, dx + b * ldx, yT, ldy);
    }
}

/* nr <= Q8A_ROWS rows of u = w + 128 against 16 tokens: w back, the sign
 * trick, and the sum is sum(w q) with no offset left */
static inline void tile_q8(int64_t nb, int nr, const uint8_t *w, int64_t ldw, const float *dw,
                           int64_t ldb, const int8_t *xq, const float *dx, int64_t ldx, float *yT,
                           int64_t ldy) {
    const __m256i ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8((char)0x80);
    const __m256i zero = _mm256_setzero_si256();
    for (int64_t b = 0; b < nb; b++) {
        __m256i acc[Q8A_ROWS][2];
        for (int r = 0; r < nr; r++) acc[r][0] = acc[r][1] = zero;
        const int8_t *xb = xq + (size_t)(b * 8) * (size_t)ldx * 4;
        EM_UNROLL2
        for (int k4 = 0; k4 < 8; k4++) {
            const int8_t *xk = xb + (size_t)k4 * (size_t)ldx * 4;
            __m256i x0 = _mm256_loadu_si256((const __m256i *)xk);
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(xk + 32));
            for (int r = 0; r < nr; r++) {
                __m256i ws = _mm256_xor_si256(bcast4(w + r * ldw + b * 32 + k4 * 4), flip);
                __m256i aw = _mm256_abs_epi8(ws);
                __m256i p0 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(x0, ws));
                __m256i p1 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(x1, ws));
                acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(p0, ones));
                acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(p1, ones));
            }
        }
        block_out(nr, acc, zero, zero, dw + b, ldb, dx + b * ldx, yT, ldy);
    }
}

static void tile(int64_t nb, int nr, int32_t o, const uint8_t *w, int64_t ldw, const float *dw,
                 int64_t ldb, const int8_t *xq, const float *dx, const int32_t *xs, int64_t ldx,
                 float *yT, int64_t ldy) {
    /* constant row counts, so the tile stays in registers */
    if (o == 8) {
        switch (nr) {
#define Q4_CASE(N) case N: tile_q4(nb, N, w, ldw, dw, ldb, xq, dx, xs, ldx, yT, ldy); break;
        Q4_CASE(1) Q4_CASE(2) Q4_CASE(3) Q4_CASE(4)
#undef Q4_CASE
        }
    } else {
        switch (nr) {
#define Q8_CASE(N) case N: tile_q8(nb, N, w, ldw, dw, ldb, xq, dx, ldx, yT, ldy); break;
        Q8_CASE(1) Q8_CASE(2) Q8_CASE(3) Q8_CASE(4)
#undef Q8_CASE
        }
    }
}

void em_gemm_q8_avx2(int64_t nb, int64_t nr, int64_t nt, const uint8_t *w, int64_t ldw,
                     const float *dw, int64_t ldb, int32_t o, const int8_t *xq, const float *dx,
                     const int32_t *xs, int64_t ldx, float *yT, int64_t ldy) {
    /* 16 tokens at a time over all rows: their activations (nb x 512
     * bytes) stay in L1 while the rows' tile streams by */
    for (int64_t t0 = 0; t0 < nt; t0 += 16)
        for (int64_t r0 = 0; r0 < nr; r0 += Q8A_ROWS) {
            int rows = nr - r0 < Q8A_ROWS ? (int)(nr - r0) : Q8A_ROWS;
            tile(nb, rows, o, w + r0 * ldw, ldw, dw + r0 * ldb, ldb, xq + t0 * 4, dx + t0,
                 xs + t0, ldx, yT + r0 * ldy + t0, ldy);
        }
}

/* ---- the product of a few tokens (decode): one row at a time ----
 *
 * Rows read as stored; for each row, every token in turn (the row's
 * bytes stay in L1 after the first). Each token's activations are laid
 * out once in the scratch (O(K) per token, against O(N K) for the rows):
 * - Q4_0, per pair of blocks: the first 16 activations of both blocks,
 *   then the last 16 of both (the low and high nibbles of a 16-byte
 *   field pair with them, so one shift and two ANDs split two blocks),
 *   the offset -8 sum(q) in each block's first lane, and the activation
 *   scale per lane;
 * - both types: the activation scale times 2^112, so the weight scale can
 *   be read as the dword at each block's start and moved into F32
 *   position with integer operations (exact, subnormals included; dx <=
 *   65504, so the product stays finite). */
#define F16_REBIAS 5.192296858534828e33f /* 2^112 */

/* Bytes per token of the laid-out activations, 32-byte aligned parts */
static size_t few_token_bytes(int64_t nb) {
    return ((size_t)nb * 32 + 63) / 64 * 64 + 2 * (((size_t)nb * 16 + 63) / 64 * 64);
}

typedef struct few_x {
    int8_t *x;    /* Q4_0: per pair, xa then xb (64 bytes) */
    int32_t *off; /* Q4_0: per pair, 8 lanes */
    float *dxp;   /* Q4_0: per pair, 8 lanes; Q8_0: per block */
} few_x;

static few_x few_carve(char *p, int64_t nb) {
    few_x f;
    f.x = (int8_t *)p;
    f.off = (int32_t *)(p + ((size_t)nb * 32 + 63) / 64 * 64);
    f.dxp = (float *)((char *)f.off + ((size_t)nb * 16 + 63) / 64 * 64);
    return f;
}

static void few_prepare(int q4, int64_t nb, const int8_t *x, const float *dx, const int32_t *xs,
                        const few_x *f) {
    if (!q4) {
        for (int64_t b = 0; b < nb; b++) f->dxp[b] = dx[b] * F16_REBIAS;
        return;
    }
    for (int64_t g = 0; g < nb / 2; g++)
        for (int j = 0; j < 2; j++) {
            int64_t b = 2 * g + j;
            memcpy(f->x + g * 64 + j * 16, x + b * 32, 16);
            memcpy(f->x + g * 64 + 32 + j * 16, x + b * 32 + 16, 16);
            for (int l = 0; l < 4; l++) {
                f->off[g * 8 + j * 4 + l] = l ? 0 : -8 * xs[b];
                f->dxp[g * 8 + j * 4 + l] = dx[b] * F16_REBIAS;
            }
        }
}

/* The fp16 scale in the low half of each dword, as F32 / 2^112 */
static inline __m256 f16_low_rebiased(__m256i d) {
    __m256i t = _mm256_srai_epi32(_mm256_slli_epi32(d, 16), 3);
    return _mm256_castsi256_ps(_mm256_and_si256(t, _mm256_set1_epi32((int32_t)0x8fffe000)));
}

static inline int32_t load32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Q4_0: blocks at b and b + 18 times their scales, per lane */
static inline __m256 pair_q4(const uint8_t *b, const int32_t *off, const int8_t *x,
                             const float *dxp) {
    const __m256i low = _mm256_set1_epi8(15);
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(b + 2))),
                                        _mm_loadu_si128((const __m128i *)(b + 20)), 1);
    __m256i p = _mm256_add_epi16(
        _mm256_maddubs_epi16(_mm256_and_si256(v, low), _mm256_loadu_si256((const __m256i *)x)),
        _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), low),
                             _mm256_loadu_si256((const __m256i *)(x + 32))));
    __m256i i = _mm256_add_epi32(_mm256_madd_epi16(p, _mm256_set1_epi16(1)),
                                 _mm256_loadu_si256((const __m256i *)off));
    __m256i d = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi32(load32(b))),
                                        _mm_set1_epi32(load32(b + 18)), 1);
    return _mm256_mul_ps(_mm256_cvtepi32_ps(i),
                         _mm256_mul_ps(f16_low_rebiased(d), _mm256_loadu_ps(dxp)));
}

#define FEW_PREFETCH 1152 /* bytes ahead: 64 Q4_0 blocks */

static float row_q4(int64_t np, const uint8_t *w, const few_x *f) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t g = 0;
    for (; g + 2 <= np; g += 2) {
        const uint8_t *b = w + g * 36;
        _mm_prefetch((const char *)b + FEW_PREFETCH, _MM_HINT_T0);
        _mm_prefetch((const char *)b + FEW_PREFETCH + 64, _MM_HINT_T0);
        acc0 = _mm256_add_ps(acc0, pair_q4(b, f->off + g * 8, f->x + g * 64, f->dxp + g * 8));
        acc1 = _mm256_add_ps(acc1, pair_q4(b + 36, f->off + g * 8 + 8, f->x + g * 64 + 64,
                                           f->dxp + g * 8 + 8));
    }
    if (g < np) acc0 = _mm256_add_ps(acc0, pair_q4(w + g * 36, f->off + g * 8, f->x + g * 64, f->dxp + g * 8));
    return hsum256(_mm256_add_ps(acc0, acc1));
}

/* Q8_0: one block, sum(w q) as 8 int32 lanes times the two scales */
static inline __m256 block_q8(const uint8_t *b, const int8_t *x, const float *dxp) {
    __m256i ws = _mm256_loadu_si256((const __m256i *)(b + 2));
    __m256i xv = _mm256_loadu_si256((const __m256i *)x);
    __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(ws), _mm256_sign_epi8(xv, ws));
    __m256i i = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
    __m256 s = _mm256_mul_ps(f16_low_rebiased(_mm256_set1_epi32(load32(b))), _mm256_broadcast_ss(dxp));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(i), s);
}

static float row_q8(int64_t nb, const uint8_t *w, const int8_t *x, const few_x *f) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const uint8_t *p = w + b * 34;
        _mm_prefetch((const char *)p + FEW_PREFETCH * 2, _MM_HINT_T0);
        _mm_prefetch((const char *)p + FEW_PREFETCH * 2 + 64, _MM_HINT_T0);
        acc0 = _mm256_add_ps(acc0, block_q8(p, x + b * 32, f->dxp + b));
        acc1 = _mm256_add_ps(acc1, block_q8(p + 34, x + b * 32 + 32, f->dxp + b + 1));
    }
    if (b < nb) acc0 = _mm256_add_ps(acc0, block_q8(w + b * 34, x + b * 32, f->dxp + b));
    return hsum256(_mm256_add_ps(acc0, acc1));
}

static void gemm_q8_few(int q4, int64_t nb, int64_t nr, int64_t nt, const uint8_t *w, size_t ldw,
                        const int8_t *xq, int64_t ldq, const float *dx, const int32_t *xs,
                        int64_t ldd, float *y, int64_t ldy, void *scratch) {
    char *base = (char *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    size_t per = few_token_bytes(nb);
    int64_t np = nb / 2; /* Q4_0 pairs; an odd last block in C below */
    for (int64_t t = 0; t < nt; t++) {
        few_x f = few_carve(base + (size_t)t * per, nb);
        few_prepare(q4, nb, xq + t * ldq, dx + t * ldd, xs + t * ldd, &f);
    }
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = w + (size_t)r * ldw;
        for (int64_t t = 0; t < nt; t++) {
            few_x f = few_carve(base + (size_t)t * per, nb);
            const int8_t *x = xq + t * ldq;
            float v;
            if (!q4) {
                v = row_q8(nb, row, x, &f);
            } else {
                v = row_q4(np, row, &f);
                if (nb & 1) {
                    int64_t b = nb - 1;
                    const uint8_t *blk = row + (size_t)b * 18;
                    int32_t is = 0;
                    for (int k = 0; k < 16; k++)
                        is += (blk[2 + k] & 15) * x[b * 32 + k] + (blk[2 + k] >> 4) * x[b * 32 + 16 + k];
                    v += (float)(is - 8 * xs[t * ldd + b]) * f16_at(blk) * dx[t * ldd + b];
                }
            }
            y[t * ldy + r] = v;
        }
    }
}

void em_gemm_q8_few_q8_0_avx2(int64_t nb, int64_t nr, int64_t nt, const void *w, size_t ldw,
                              const int8_t *xq, int64_t ldq, const float *dx, const int32_t *xs,
                              int64_t ldd, float *y, int64_t ldy, void *scratch) {
    gemm_q8_few(0, nb, nr, nt, w, ldw, xq, ldq, dx, xs, ldd, y, ldy, scratch);
}

void em_gemm_q8_few_q4_0_avx2(int64_t nb, int64_t nr, int64_t nt, const void *w, size_t ldw,
                              const int8_t *xq, int64_t ldq, const float *dx, const int32_t *xs,
                              int64_t ldd, float *y, int64_t ldy, void *scratch) {
    gemm_q8_few(1, nb, nr, nt, w, ldw, xq, ldq, dx, xs, ldd, y, ldy, scratch);
}
