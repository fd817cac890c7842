/* AVX-512 VNNI kernels of the integer path (compiled with the AVX-512 flags
 * and -mavx512vnni): the decode dot products. VPDPBUSD multiplies unsigned
 * by signed bytes and sums groups of 4 into int32 lanes in one
 * instruction.
 *
 * And the 8-bit GEMM of batches (dsp.h): on the dev VM's core VPDPBUSD
 * issues about 1.8 G/s, 64 multiply-adds each, against 4.4 G/s 512-bit
 * FMAs of 16: with 8-bit activations it outruns the F32 GEMM ~1.8x (with
 * 16-bit ones, two byte planes, it would not: docs/performance.md). */
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
                       int64_t b0, float o, __m512 *sc) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                                             12, 13, 14, 15), _mm512_set1_epi32(bsz));
    /* 4-byte gathers at each block start: the low half is the fp16 scale */
    __m512i raw = _mm512_i32gather_epi32(idx, (const void *)(w + (size_t)b0 * bsz), 1);
    __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(raw));
    __m512 v = _mm512_mul_ps(d, _mm512_loadu_ps(xd + b0));
    *sc = v;
    return _mm512_mul_ps(_mm512_mul_ps(v, _mm512_set1_ps(o)),
                         _mm512_cvtepi32_ps(_mm512_loadu_si512(xs + b0)));
}

/* [sc[k] x 8, sc[k + 1] x 8] from the scales in a register (reloading
 * 8 bytes of the 64 just stored cost a store-forwarding stall) */
static inline __m512 pair_scale(__m512 sc, int k) {
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    return _mm512_permutexvar_ps(_mm512_add_epi32(idx, _mm512_set1_epi32(k)), sc);
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

/* blocks at b and b + 18 as [lo nibbles, hi nibbles] of each: the two
 * 16-byte fields each fill two 128-bit lanes, and one variable shift
 * (0 or 4 per lane) and a mask split the nibbles, 5 instructions where
 * unpacking each block in 256 bits took 12 */
static __m512i q4_pair(const uint8_t *b) {
    __m256i two = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(b + 2))),
                                          _mm_loadu_si128((const __m128i *)(b + 20)), 1);
    __m512i v = _mm512_shuffle_i64x2(_mm512_castsi256_si512(two), _mm512_castsi256_si512(two), 0x50);
    /* a dword shift (one uop; the word shift VPSRLVW is three on
     * Cascade Lake and was the kernel's bottleneck): the bits a byte gets
     * from its neighbour are masked off */
    const __m512i sh = _mm512_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4, 0, 0, 0, 0, 4, 4, 4, 4);
    return _mm512_and_si512(_mm512_srlv_epi32(v, sh), _mm512_set1_epi8(15));
}

/* Blocks this far ahead are prefetched: the scale gather needs each
 * group's first line at once, and without the hint decode stalled on it
 * (Q8_0 dot on one core: 70% of the read bandwidth without, 90-97% with;
 * Q4_0 45% -> 50%, and 56-61% with the q4_pair above). */
#define EM_PREFETCH_BLOCKS 64

typedef __m512i (*pair_fn)(const uint8_t *b);

static float dot_vnni(int64_t n, const uint8_t *w, em_q8x_row x, int bsz, float o, pair_fn pair,
                      float (*tail)(int64_t n, const void *w, em_q8x_row x)) {
    int64_t nb = n / 32, b0 = 0;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(), corr = _mm512_setzero_ps();
    __m512 sc;
    for (; b0 + 16 <= nb; b0 += 16) {
        for (int p = 0; p < 16 * bsz; p += 64)
            _mm_prefetch((const char *)w + (b0 + EM_PREFETCH_BLOCKS) * bsz + p, _MM_HINT_T0);
        corr = _mm512_add_ps(corr, scales16(w, bsz, x.d, x.s, b0, o, &sc));
        for (int k = 0; k < 16; k += 4) {
            __m512i p0 = dot_pair(pair(w + (size_t)(b0 + k) * bsz), x, b0 + k);
            __m512i p1 = dot_pair(pair(w + (size_t)(b0 + k + 2) * bsz), x, b0 + k + 2);
            acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), pair_scale(sc, k), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), pair_scale(sc, k + 2), acc1);
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

/* ---- the 8-bit GEMM: 6 rows x 32 tokens (or 16) per register tile ----
 *
 * Per block of 32 and row: 8 VPDPBUSD per 16 tokens (the row's 4 unsigned
 * weight bytes broadcast, 4 signed activation bytes of a token per int32
 * lane), then the offset (o times the token's block sum, once per block
 * for all rows) subtracted, one convert and the two scales in float. */

#define Q8_ROWS 6

static inline __m512i bcast4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* nv token vectors (1 or 2) of nr rows, nr <= Q8_ROWS */
static inline void q8_tile(int64_t nb, int nr, int nv, const uint8_t *w, int64_t ldw,
                           const float *dw, int64_t ldb, int32_t o, const int8_t *xq,
                           const float *dx, const int32_t *xs, int64_t ldx, float *yT,
                           int64_t ldy) {
    __m512 f[Q8_ROWS][2];
    const __m512i ov = _mm512_set1_epi32(o);
    for (int r = 0; r < nr; r++) {
        f[r][0] = _mm512_loadu_ps(yT + r * ldy);
        f[r][1] = nv > 1 ? _mm512_loadu_ps(yT + r * ldy + 16) : f[r][0];
    }
    for (int64_t b = 0; b < nb; b++) {
        __m512i a[Q8_ROWS][2];
        for (int r = 0; r < nr; r++) a[r][0] = a[r][1] = _mm512_setzero_si512();
        const int8_t *xb = xq + (size_t)(b * 8) * (size_t)ldx * 4;
        for (int k4 = 0; k4 < 8; k4++) {
            __m512i x0 = _mm512_loadu_si512(xb + (size_t)k4 * (size_t)ldx * 4);
            __m512i x1 = nv > 1 ? _mm512_loadu_si512(xb + (size_t)k4 * (size_t)ldx * 4 + 64) : x0;
            for (int r = 0; r < nr; r++) {
                __m512i wv = bcast4(w + r * ldw + b * 32 + k4 * 4);
                a[r][0] = _mm512_dpbusd_epi32(a[r][0], wv, x0);
                if (nv > 1) a[r][1] = _mm512_dpbusd_epi32(a[r][1], wv, x1);
            }
        }
        __m512 d0 = _mm512_loadu_ps(dx + b * ldx), d1 = nv > 1 ? _mm512_loadu_ps(dx + b * ldx + 16) : d0;
        __m512i c0 = _mm512_mullo_epi32(_mm512_loadu_si512(xs + b * ldx), ov);
        __m512i c1 = nv > 1 ? _mm512_mullo_epi32(_mm512_loadu_si512(xs + b * ldx + 16), ov) : c0;
        for (int r = 0; r < nr; r++) {
            __m512 s = _mm512_set1_ps(dw[r * ldb + b]);
            f[r][0] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(a[r][0], c0)), s),
                                      d0, f[r][0]);
            if (nv > 1)
                f[r][1] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(a[r][1], c1)), s),
                                          d1, f[r][1]);
        }
    }
    for (int r = 0; r < nr; r++)
        for (int v = 0; v < nv; v++) _mm512_storeu_ps(yT + r * ldy + 16 * v, f[r][v]);
}

void em_gemm_q8_vnni(int64_t nb, int64_t nr, int64_t nt, const uint8_t *w, int64_t ldw,
                     const float *dw, int64_t ldb, int32_t o, const int8_t *xq, const float *dx,
                     const int32_t *xs, int64_t ldx, float *yT, int64_t ldy) {
    for (int64_t t0 = 0; t0 < nt; t0 += 32) {
        int nv = nt - t0 >= 32 ? 2 : 1;
        for (int64_t r0 = 0; r0 < nr; r0 += Q8_ROWS) {
            int rows = nr - r0 < Q8_ROWS ? (int)(nr - r0) : Q8_ROWS;
            const uint8_t *wr = w + r0 * ldw;
            const float *dwr = dw + r0 * ldb;
            float *y = yT + r0 * ldy + t0;
            const int8_t *x = xq + t0 * 4;
            /* constant row counts, so the tile stays in registers */
            if (rows == Q8_ROWS && nv == 2)
                q8_tile(nb, Q8_ROWS, 2, wr, ldw, dwr, ldb, o, x, dx + t0, xs + t0, ldx, y, ldy);
            else if (rows == Q8_ROWS)
                q8_tile(nb, Q8_ROWS, 1, wr, ldw, dwr, ldb, o, x, dx + t0, xs + t0, ldx, y, ldy);
            else
                for (int r = 0; r < rows; r++)
                    q8_tile(nb, 1, nv, wr + r * ldw, ldw, dwr + r * ldb, ldb, o, x, dx + t0,
                            xs + t0, ldx, y + r * ldy, ldy);
        }
    }
}

/* ---- the 8-bit product of a few tokens: rows in the lanes ----
 *
 * 16 weight rows per vector, gathered 4 bytes per row straight from the
 * stored blocks (a Q4_0 gather holds the elements 4a..4a+3 in its low
 * nibbles and 16+4a.. in its high ones; Q8_0's bytes get their sign bit
 * flipped), and up to 8 tokens whose 4 activation bytes each VPDPBUSD
 * broadcasts from memory. Per block and token the offset starts the
 * integer sum, then one convert, the row scales and the token's scale,
 * the same operations in the same order as q8_tile. */

#define FEW_T 8

static inline __m512i row_gather(__mmask16 m, __m512i idx, const uint8_t *p) {
    return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, (const void *)p, 1);
}

static inline void few_tile(int64_t nb, int nt, int q4, __mmask16 m, __m512i idx,
                            const uint8_t *w, const int8_t *xq, int64_t ldq, const float *dx,
                            const int32_t *xs, int64_t ldd, float *y, int64_t ldy) {
    const int bsz = q4 ? 18 : 34;
    const int32_t o = q4 ? 8 : 128;
    const __m512i low = _mm512_set1_epi8(15), flip = _mm512_set1_epi8(-128);
    __m512 f[FEW_T];
    for (int t = 0; t < nt; t++) f[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *base = w + (size_t)b * (size_t)bsz;
        const int8_t *xb = xq + b * 32;
        __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(row_gather(m, idx, base)));
        __m512i a[FEW_T];
        for (int t = 0; t < nt; t++) a[t] = _mm512_set1_epi32(-o * xs[t * ldd + b]);
        if (q4) {
            for (int k = 0; k < 4; k++) {
                __m512i g = row_gather(m, idx, base + 2 + 4 * k);
                __m512i lo = _mm512_and_si512(g, low);
                __m512i hi = _mm512_and_si512(_mm512_srli_epi32(g, 4), low);
                for (int t = 0; t < nt; t++) {
                    a[t] = _mm512_dpbusd_epi32(a[t], lo, bcast4((const uint8_t *)xb + t * ldq + 4 * k));
                    a[t] = _mm512_dpbusd_epi32(a[t], hi, bcast4((const uint8_t *)xb + t * ldq + 16 + 4 * k));
                }
            }
        } else {
            for (int k = 0; k < 8; k++) {
                __m512i g = _mm512_xor_si512(row_gather(m, idx, base + 2 + 4 * k), flip);
                for (int t = 0; t < nt; t++)
                    a[t] = _mm512_dpbusd_epi32(a[t], g, bcast4((const uint8_t *)xb + t * ldq + 4 * k));
            }
        }
        for (int t = 0; t < nt; t++)
            f[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a[t]), dw),
                                   _mm512_set1_ps(dx[t * ldd + b]), f[t]);
    }
    for (int t = 0; t < nt; t++) _mm512_mask_storeu_ps(y + t * ldy, m, f[t]);
}

/* One to three tokens (decode): each row read as stored, one token at a
 * time (the row's bytes stay in L1 for the next token), one activation
 * plane. Rows in lanes (few_tile) would gather every 4 bytes; at one token
 * that lost to a row dot by 12 to 20 tokens/s (docs/performance.md,
 * session 6).
 *
 * Each token's activations are first laid out in the scratch for the
 * rows' loop (O(K), against O(N K) for the rows), so that the loop spends
 * no instruction on them:
 * - the offset: each block's VPDPBUSD starts from -o sum(x) in one lane,
 *   which gives sum(u x) - o sum(x) exactly;
 * - Q4_0: four blocks per vector, their low nibbles against the first
 *   16 activations of each block (xa) and the high ones against the last
 *   16 (xb), so splitting nibbles takes one shift and two ANDs per four
 *   blocks;
 * - the weight scales are read as the dword at each block's start and
 *   turned into floats with integer operations: the fp16 bits moved into
 *   F32 position times 2^112 (folded into the activation scale, dxp)
 *   is the same value, subnormals included (dx <= 65504, the fp16
 *   maximum, so dx 2^112 stays finite). A gather of 16 scales at once
 *   cost more than the rest of the loop here.
 * llama-1b decode, 2 threads: Q4_0 18.4 -> 28.6-29.1 tokens/s (64% ->
 * 96-98% of the read bandwidth); Q8_0 17.7 -> 18.6-18.8. */
#define FEW_ROWDOT_TOKENS 4
#define F16_REBIAS 5.192296858534828e33f /* 2^112 */

/* The laid-out activations of one token, in the caller's scratch
 * (EM_Q8_FEW_SCRATCH: 32 + 32 + 32 bytes per block) */
typedef struct rowdot_x {
    int8_t *x;    /* Q8_0: as is; Q4_0: per 4 blocks, xa then xb */
    int32_t *off; /* per lane: -o sum(x) in a block's first lane, else 0 */
    float *dxp;   /* per lane: the block's activation scale times 2^112 */
} rowdot_x;

static rowdot_x rowdot_carve(void *scratch, int64_t nb) {
    char *p = (char *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    size_t part = ((size_t)nb * 32 + 63) & ~(size_t)63; /* three parts, aligned */
    rowdot_x r;
    r.x = (int8_t *)p;
    r.off = (int32_t *)(p + part);
    r.dxp = (float *)(p + 2 * part);
    return r;
}

/* Q8_0: 8 lanes per block; Q4_0: 4 lanes per block */
static void rowdot_prepare(int q4, int64_t cn, const int8_t *x, const float *dx, const int32_t *xs,
                           const rowdot_x *p) {
    int lanes = q4 ? 4 : 8, o = q4 ? 8 : 128;
    memset(p->off, 0, (size_t)cn * (size_t)lanes * sizeof *p->off);
    for (int64_t b = 0; b < cn; b++) {
        p->off[b * lanes] = -o * xs[b];
        for (int l = 0; l < lanes; l++) p->dxp[b * lanes + l] = dx[b] * F16_REBIAS;
    }
    if (!q4) {
        memcpy(p->x, x, (size_t)cn * 32);
        return;
    }
    for (int64_t g = 0; g < cn / 4; g++)
        for (int j = 0; j < 4; j++) {
            memcpy(p->x + g * 128 + j * 16, x + (g * 4 + j) * 32, 16);
            memcpy(p->x + g * 128 + 64 + j * 16, x + (g * 4 + j) * 32 + 16, 16);
        }
}

/* The fp16 scale in the low half of each dword, as F32 / 2^112 */
static inline __m512 f16_low_rebiased(__m512i d) {
    __m512i t = _mm512_srai_epi32(_mm512_slli_epi32(d, 16), 3);
    return _mm512_castsi512_ps(_mm512_and_si512(t, _mm512_set1_epi32((int32_t)0x8fffe000)));
}

static inline int32_t load32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Q4_0: the products of blocks b..b+3 (at b) times their scales */
static inline __m512 quad_q4(const uint8_t *b, const int32_t *off, const int8_t *x,
                             const float *dxp) {
    const __m512i low = _mm512_set1_epi8(15);
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(b + 2)));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(b + 20)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(b + 38)), 2);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(b + 56)), 3);
    __m512i i = _mm512_dpbusd_epi32(_mm512_load_si512(off), _mm512_and_si512(v, low),
                                    _mm512_load_si512(x));
    i = _mm512_dpbusd_epi32(i, _mm512_and_si512(_mm512_srli_epi32(v, 4), low),
                            _mm512_load_si512(x + 64));
    __m512i d = _mm512_set1_epi32(load32(b));
    d = _mm512_mask_set1_epi32(d, 0x00f0, load32(b + 18));
    d = _mm512_mask_set1_epi32(d, 0x0f00, load32(b + 36));
    d = _mm512_mask_set1_epi32(d, 0xf000, load32(b + 54));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(i),
                         _mm512_mul_ps(f16_low_rebiased(d), _mm512_load_ps(dxp)));
}

/* Q4_0, blocks [0, cn), cn a multiple of 4 */
static float rowdot_q4(int64_t cn, const uint8_t *w, const rowdot_x *p) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t g = 0, ng = cn / 4;
    for (; g + 2 <= ng; g += 2) {
        const uint8_t *b = w + g * 72;
        _mm_prefetch((const char *)b + EM_PREFETCH_BLOCKS * 18, _MM_HINT_T0);
        _mm_prefetch((const char *)b + EM_PREFETCH_BLOCKS * 18 + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)b + EM_PREFETCH_BLOCKS * 18 + 128, _MM_HINT_T0);
        acc0 = _mm512_add_ps(acc0, quad_q4(b, p->off + g * 16, p->x + g * 128, p->dxp + g * 16));
        acc1 = _mm512_add_ps(acc1, quad_q4(b + 72, p->off + g * 16 + 16, p->x + g * 128 + 128,
                                           p->dxp + g * 16 + 16));
    }
    if (g < ng)
        acc0 = _mm512_add_ps(acc0, quad_q4(w + g * 72, p->off + g * 16, p->x + g * 128, p->dxp + g * 16));
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

/* Q8_0, blocks [0, cn), cn even: two blocks per vector */
static float rowdot_q8(int64_t cn, const uint8_t *w, const rowdot_x *p) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int64_t g = 0; g < cn / 2; g++) {
        const uint8_t *b = w + g * 68;
        _mm_prefetch((const char *)b + EM_PREFETCH_BLOCKS * 34, _MM_HINT_T0);
        _mm_prefetch((const char *)b + EM_PREFETCH_BLOCKS * 34 + 64, _MM_HINT_T0);
        __m512i u = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b + 2)));
        u = _mm512_xor_si512(_mm512_inserti64x4(u, _mm256_loadu_si256((const __m256i *)(b + 36)), 1),
                             _mm512_set1_epi8(-128));
        __m512i i = _mm512_dpbusd_epi32(_mm512_load_si512(p->off + g * 16), u,
                                        _mm512_load_si512(p->x + g * 64));
        __m512i d = _mm512_set1_epi32(load32(b));
        d = _mm512_mask_set1_epi32(d, 0xff00, load32(b + 34));
        __m512 s = _mm512_mul_ps(f16_low_rebiased(d), _mm512_load_ps(p->dxp + g * 16));
        if (g & 1) acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), s, acc1);
        else acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), s, acc0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

/* y[t * ldy + r] for nt < FEW_ROWDOT_TOKENS tokens: per token, the
 * activations laid out in the scratch, then every row in one pass; the
 * last blocks that do not fill a vector in C */
static void few_rowdot(int q4, int64_t nb, int64_t nr, int64_t nt, const uint8_t *w, size_t ldw,
                       const int8_t *xq, int64_t ldq, const float *dx, const int32_t *xs,
                       int64_t ldd, float *y, int64_t ldy, void *scratch) {
    rowdot_x p = rowdot_carve(scratch, nb);
    int bsz = q4 ? 18 : 34;
    int64_t nv = nb & ~(int64_t)(q4 ? 3 : 1); /* blocks in whole vectors */
    for (int64_t t = 0; t < nt; t++) {
        const int8_t *x = xq + t * ldq;
        const float *d = dx + t * ldd;
        const int32_t *s = xs + t * ldd;
        rowdot_prepare(q4, nv, x, d, s, &p);
        for (int64_t r = 0; r < nr; r++) {
            const uint8_t *row = w + (size_t)r * ldw;
            y[t * ldy + r] = q4 ? rowdot_q4(nv, row, &p) : rowdot_q8(nv, row, &p);
        }
        for (int64_t b = nv; b < nb; b++)
            for (int64_t r = 0; r < nr; r++) {
                uint8_t u[32];
                float dw;
                const uint8_t *blk = w + (size_t)r * ldw + (size_t)b * bsz;
                int32_t ob = q4 ? em_unpack_q4_0_avx2(1, blk, u, &dw) : em_unpack_q8_0_avx2(1, blk, u, &dw);
                int32_t is = 0;
                for (int k = 0; k < 32; k++) is += (int32_t)u[k] * x[b * 32 + k];
                y[t * ldy + r] += (float)(is - ob * s[b]) * dw * d[b];
            }
    }
}

static void gemm_q8_few(int q4, int64_t nb, int64_t nr, int64_t nt, const void *w, size_t ldw,
                        const int8_t *xq, int64_t ldq, const float *dx, const int32_t *xs,
                        int64_t ldd, float *y, int64_t ldy, void *scratch) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                                             12, 13, 14, 15),
                                           _mm512_set1_epi32((int32_t)ldw));
    if (nt < FEW_ROWDOT_TOKENS) {
        few_rowdot(q4, nb, nr, nt, w, ldw, xq, ldq, dx, xs, ldd, y, ldy, scratch);
        return;
    }
    for (int64_t r0 = 0; r0 < nr; r0 += 16) {
        __mmask16 m = nr - r0 >= 16 ? 0xffff : (__mmask16)((1u << (nr - r0)) - 1);
        const uint8_t *wr = (const uint8_t *)w + (size_t)r0 * ldw;
        for (int64_t t0 = 0; t0 < nt; t0 += FEW_T) {
            int n = nt - t0 < FEW_T ? (int)(nt - t0) : FEW_T;
            const int8_t *x = xq + t0 * ldq;
            const float *d = dx + t0 * ldd;
            const int32_t *s = xs + t0 * ldd;
            float *yt = y + t0 * ldy + r0;
            /* a constant token count, so the tile stays in registers */
            switch (n) {
#define FEW_CASE(N) case N: few_tile(nb, N, q4, m, idx, wr, x, ldq, d, s, ldd, yt, ldy); break;
            FEW_CASE(1) FEW_CASE(2) FEW_CASE(3) FEW_CASE(4)
            FEW_CASE(5) FEW_CASE(6) FEW_CASE(7) FEW_CASE(8)
#undef FEW_CASE
            }
        }
    }
}

void em_gemm_q8_few_q8_0_vnni(int64_t nb, int64_t nr, int64_t nt, const void *w, size_t ldw,
                              const int8_t *xq, int64_t ldq, const float *dx, const int32_t *xs,
                              int64_t ldd, float *y, int64_t ldy, void *scratch) {
    gemm_q8_few(0, nb, nr, nt, w, ldw, xq, ldq, dx, xs, ldd, y, ldy, scratch);
}

void em_gemm_q8_few_q4_0_vnni(int64_t nb, int64_t nr, int64_t nt, const void *w, size_t ldw,
                              const int8_t *xq, int64_t ldq, const float *dx, const int32_t *xs,
                              int64_t ldd, float *y, int64_t ldy, void *scratch) {
    gemm_q8_few(1, nb, nr, nt, w, ldw, xq, ldq, dx, xs, ldd, y, ldy, scratch);
}

/* Activations into lanes (dsp.h): per token, the block's 32 values in
 * two vectors; the same operations as the reference (|x| max, 127 / max,
 * product rounded to nearest even by the conversion), so bit-equal. */
void em_quant_q8_lanes_vnni(const float *x, int64_t ldx, int64_t T, int64_t b, int8_t *xq,
                            float *dx, int32_t *xs, int64_t ldq) {
    for (int64_t t = 0; t < T; t++) {
        const float *v = x + t * ldx + b * 32;
        __m512 a = _mm512_loadu_ps(v), c = _mm512_loadu_ps(v + 16);
        __m512 m = _mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(c));
        float amax = _mm512_reduce_max_ps(m);
        float ie = amax != 0.0f ? 127.0f / amax : 0.0f;
        __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, _mm512_set1_ps(ie)));
        __m512i qc = _mm512_cvtps_epi32(_mm512_mul_ps(c, _mm512_set1_ps(ie)));
        int32_t q[8];
        _mm_storeu_si128((__m128i *)q, _mm512_cvtepi32_epi8(qa));
        _mm_storeu_si128((__m128i *)(q + 4), _mm512_cvtepi32_epi8(qc));
        for (int k4 = 0; k4 < 8; k4++) memcpy(xq + ((b * 8 + k4) * ldq + t) * 4, q + k4, 4);
        xs[b * ldq + t] = _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qc));
        dx[b * ldq + t] = _cvtsh_ss(_cvtss_sh(amax / 127.0f, 0));
    }
}

/* ---- the one-plane dot of Q6_K (act_type Q8_0, dsp.h dot_q8) ----
 *
 * Two blocks per 512-bit step, as above: the step's weights made into
 * unsigned bytes [block j | block j + 1] matching 64 contiguous activation
 * bytes, VPDPBUSD into zero, converted and multiplied by a per-lane factor
 * picked (VPERMPS) from the super-block's factors. One thread, weights in
 * L2, Zen 5: 36 GB/s of weights against 25 for the AVX2 loop. The same
 * shape for Q4_K (each 32-byte chunk broadcast, its upper half shifted to
 * the high nibbles) ran 22-23 GB/s against AVX2's 25, so Q4_K and Q5_K
 * keep the AVX2 loops (kernels_qk_avx2.c). */

/* Q6_K: blocks 4h and 4h + 1 are the low nibbles of the 64 ql bytes at
 * 64h with qh (32 bytes at 128 + 32h) bits 0-1 and 2-3; blocks 4h + 2 and
 * 4h + 3 the high nibbles with bits 4-5 and 6-7. The unsigned 6-bit q
 * times x, minus 32 times x (a second VPDPBUSD), in lanes of four: lanes
 * 0-3 half 0 of the first block, 4-7 its half 1, and so on, each meeting
 * the factor d * its half's signed scale * its block's activation scale. */
float em_dot_q6_k_q8_vnni(int64_t n, const void *w, em_q8x_row x) {
    const uint8_t *b = w;
    const __m512i low4 = _mm512_set1_epi8(15), three = _mm512_set1_epi8(3), off = _mm512_set1_epi8(32);
    /* per 16-bit lane: the lower 256 bits shift by 0, the upper by 2 */
    const __m512i two_up = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    /* lane L of a step of blocks 2p, 2p + 1 takes half 4p + L / 4 */
    const __m512i quarter = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 32; i += 8, b += 210) {
        /* g[j] = d * scale[j] * the activation scale of block j / 2 */
        __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 192))));
        __m512 dx = _mm512_permutexvar_ps(_mm512_srli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
                                                                               10, 11, 12, 13, 14, 15), 1),
                                          _mm512_castps256_ps512(_mm256_loadu_ps(x.d + i)));
        __m512 g = _mm512_mul_ps(_mm512_mul_ps(sc, dx), _mm512_set1_ps(f16_at(b + 208)));
        for (int h = 0; h < 2; h++) {
            __m512i ql = _mm512_loadu_si512(b + 64 * h);
            __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h)));
            for (int p = 0; p < 2; p++) { /* blocks 4h + 2p, 4h + 2p + 1 */
                __m512i nib = _mm512_and_si512(p ? _mm512_srli_epi16(ql, 4) : ql, low4);
                __m512i cnt = _mm512_add_epi16(two_up, _mm512_set1_epi16((short)(4 * p)));
                __m512i top = _mm512_and_si512(_mm512_srlv_epi16(qh, cnt), three);
                __m512i q = _mm512_or_si512(nib, _mm512_slli_epi16(top, 4));
                __m512i xq = _mm512_loadu_si512(x.q + (i + 4 * h + 2 * p) * 32);
                __m512i s = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q, xq),
                                             _mm512_dpbusd_epi32(_mm512_setzero_si512(), off, xq));
                __m512i pick = _mm512_add_epi32(quarter, _mm512_set1_epi32(4 * (2 * h + p)));
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_permutexvar_ps(pick, g), acc);
            }
        }
    }
    return _mm512_reduce_add_ps(acc);
}
