/* The CPU kernel table (dav1d's pattern): one slot per kernel and weight
 * type, filled with the C reference first, then overridden level by level
 * for the CPU flags present and allowed by the mask. */
#ifndef EMBER_CPU_DSP_H
#define EMBER_CPU_DSP_H

#include <stdint.h>

#include "ember.h"

/* out = sum_i w[i] * x[i] over n elements; w in the slot's type (for
 * block types n is a multiple of the block size). */
typedef float (*em_dot_fn)(int64_t n, const void *w, const float *x);
/* dst[i] = (float)src[i], i < n. */
typedef void (*em_to_f32_fn)(int64_t n, const void *src, float *dst);
/* y[i] += a * x[i] */
typedef void (*em_axpy_fn)(int64_t n, float a, const float *x, float *y);

/* The matmul tile, with tokens in the vector lanes:
 *   yT[r * ldy + t] += sum_{k < kn} w[r * ldw + k] * xT[k * ldx + t]
 * for r < nr and t < nt, nt a multiple of EM_GEMM_LANES. The weight rows
 * are read as stored (a dequantized row needs no repacking) and broadcast
 * one value at a time; the activations are k-major, transposed once per
 * matmul, which costs O(T K) against the O(N T K) of the products. The
 * sum runs over k in order, so each kernel differs from the reference
 * only by FMA rounding. */
#define EM_GEMM_LANES 16
typedef void (*em_gemm_fn)(int64_t kn, int64_t nr, int64_t nt, const float *w, int64_t ldw,
                           const float *xT, int64_t ldx, float *yT, int64_t ldy);

/* The BF16 tile (act_type BF16, BF16 weights): the F32 tile with k taken
 * in pairs, for VDPBF16PS (two BF16 products per F32 lane per step):
 *   yT[r * ldy + t] += sum over pairs p < kn / 2, in order, of
 *                      w[r][2p] x[t][2p] + w[r][2p + 1] x[t][2p + 1]
 * w: BF16 weight rows as stored, ldw elements apart (no dequantized
 * copy: a pair is one 32-bit broadcast). xT2[p * ldx + t]: token t's pair
 * p, BF16 x[t][2p] in the low half and x[t][2p + 1] in the high half.
 * Each product is exact in F32 (8-bit by 8-bit significands); the
 * reference adds the even one first, kernels in their own order (and
 * VDPBF16PS flushes subnormals). kn even, nt a multiple of 16. */
typedef void (*em_gemm_bf16_fn)(int64_t kn, int64_t nr, int64_t nt, const uint16_t *w,
                                int64_t ldw, const uint32_t *xT2, int64_t ldx, float *yT,
                                int64_t ldy);
/* The C reference of gemm_bf16 (for the kernel checks; like gemm_q8, the
 * dsp table holds gemm_bf16 only where a fast kernel exists, and
 * act_type BF16 changes nothing elsewhere). */
void em_gemm_bf16_ref(int64_t kn, int64_t nr, int64_t nt, const uint16_t *w, int64_t ldw,
                      const uint32_t *xT2, int64_t ldx, float *yT, int64_t ldy);

/* Activations quantized for the integer dot products, as 16-bit values
 * held in two 8-bit planes (the 8-bit VNNI/maddubs products are the fast
 * ones; a single 8-bit plane alone costs ~0.6% error per element, as much
 * as Q8_0 weights themselves, and doubles the logits error of a Q8_0
 * model). Per block of 32: v = x / e with e = max|x| / 127,
 * hi = nearest-even(v), lo = clamp(nearest-even((v - hi) * 256), +-127),
 * so x ~ d * (256 hi + lo) with d = e / 256; s = sum of (256 hi + lo).
 * hi and lo stay in [-127, 127]. One row: hi[K], lo[K], d[K/32], s[K/32]. */
typedef struct em_q8x_row {
    const int8_t *q;  /* hi */
    const int8_t *lo;
    const float *d;
    const int32_t *s;
} em_q8x_row;

/* Quantizes n values (n a multiple of 32). */
typedef void (*em_quant_q8x_fn)(int64_t n, const float *x, int8_t *hi, int8_t *lo, float *d,
                                int32_t *s);
/* out = sum_i w[i] * x[i] with x quantized: block by block, an exact
 * integer dot product (256 w.hi + w.lo) scaled by the two block scales. */
typedef float (*em_dot_q8x_fn)(int64_t n, const void *w, em_q8x_row x);
/* The same dot with one 8-bit plane (act_type Q8_0, llama.cpp's
 * arithmetic): x ~ d q per block of 32, the activations of
 * em_quant_q8_lanes_fn taken one token at a time; x.lo is not read.
 *   out = sum over blocks, in order, of
 *         d (a0 sum_{j<16} w.q x.q + a1 sum_{j>=16} w.q x.q + c s)
 * in the unpacked form below (w = a[j / 16] q + c), the integer sums
 * exact. For the unpacked types only (decode of K-quant files: one plane
 * reads half the activation bytes and does half the products). */
typedef em_dot_q8x_fn em_dot_q8_fn;
/* The block types computed through the unpacked form of lib/quant.h
 * (w = a[j / 16] q + c per 32 weights). Every kernel table fills their
 * slots from this one list: X(suffix, EMBER_TYPE_...). */
#define EM_UNPACKED_TYPES(X)                                                                    \
    X(q4_1, EMBER_TYPE_Q4_1) X(q5_0, EMBER_TYPE_Q5_0) X(q5_1, EMBER_TYPE_Q5_1)                  \
    X(q4_k, EMBER_TYPE_Q4_K) X(q5_k, EMBER_TYPE_Q5_K) X(q6_k, EMBER_TYPE_Q6_K)

/* The 8-bit GEMM of Q8_0/Q4_0 matmuls under act_type Q8_0 (llama.cpp's
 * arithmetic: activations in blocks of 32 signed bytes, scale
 * e = max|x| / 127 rounded to F16, q = nearest-even(x / e)).
 * Weights, unpacked per tile (em_unpack_q8_fn) as unsigned bytes u = w + o
 * (Q8_0: o = 128, the sign bit flipped; Q4_0: o = 8, the raw nibbles):
 * w[r * ldw + k], dw[r * ldb + b] the block's scale.
 * Activations, tokens in lanes: xq[((b * 8 + k4) * ldx + t) * 4 + i] =
 * q[t][32 b + 4 k4 + i], dx[b * ldx + t] the scale, xs[b * ldx + t] the
 * block's sum of q (for the offset: sum w q = sum u q - o xs).
 * yT[r * ldy + t] += sum over nb blocks b of dw * dx * (sum u q - o xs),
 * the integer sums exact. nt a multiple of 16. */
typedef void (*em_gemm_q8_fn)(int64_t nb, int64_t nr, int64_t nt, const uint8_t *w, int64_t ldw,
                              const float *dw, int64_t ldb, int32_t o, const int8_t *xq,
                              const float *dx, const int32_t *xs, int64_t ldx, float *yT,
                              int64_t ldy);
/* Block b (values 32 b .. 32 b + 31) of tokens 0..T-1 of x (row stride
 * ldx) into the activation form above, lanes ldx_q apart. */
typedef void (*em_quant_q8_lanes_fn)(const float *x, int64_t ldx, int64_t T, int64_t b,
                                     int8_t *xq, float *dx, int32_t *xs, int64_t ldq);
/* nb blocks of a weight row into the form above; returns o. */
typedef int32_t (*em_unpack_q8_fn)(int64_t nb, const void *src, uint8_t *w, float *dw);
/* The C reference of gemm_q8 (for the kernel checks; the dsp table holds
 * gemm_q8 only where a fast kernel exists, see ops.c). */
void em_gemm_q8_ref(int64_t nb, int64_t nr, int64_t nt, const uint8_t *w, int64_t ldw,
                    const float *dw, int64_t ldb, int32_t o, const int8_t *xq, const float *dx,
                    const int32_t *xs, int64_t ldx, float *yT, int64_t ldy);

/* The same 8-bit product for a few tokens (decode; ops.c takes it for 1
 * to 8 tokens under act_type Q8_0, the kernels take any count), where
 * unpacking a tile per call would cost as much as the products: weights
 * read as stored, nr rows of Q8_0/Q4_0 blocks ldw bytes apart, turned into the unsigned bytes u = w + o of em_unpack_q8_fn
 * in registers. Activations token-major: xq[t * ldq + k], dx[t * ldd + b],
 * xs[t * ldd + b] (same rounding as above).
 *   y[t * ldy + r] = sum over blocks b, in order, of
 *                    ((float)(sum_k u q - o xs) * dw) * dx
 * starting from 0: the arithmetic of gemm_q8 on a zeroed yT, so a batch
 * gives the same bits through either. */
typedef void (*em_gemm_q8_few_fn)(int64_t nb, int64_t nr, int64_t nt, const void *w, size_t ldw,
                                  const int8_t *xq, int64_t ldq, const float *dx,
                                  const int32_t *xs, int64_t ldd, float *y, int64_t ldy,
                                  void *scratch);
/* The scratch gemm_q8_few may use for nt tokens of nb blocks: 64-byte
 * aligned, this many bytes (the kernels lay each token's activations out
 * there once, instead of once per row). */
#define EM_Q8_FEW_SCRATCH(nb, nt) ((size_t)(nt) * ((size_t)(nb) * 96 + 192) + 256)
void em_gemm_q8_few_ref(uint32_t type, int64_t nb, int64_t nr, int64_t nt, const void *w,
                        size_t ldw, const int8_t *xq, int64_t ldq, const float *dx,
                        const int32_t *xs, int64_t ldd, float *y, int64_t ldy);

/* The C reference of dot_q8 (for the kernel checks). */
float em_dot_q8_ref(uint32_t type, int64_t n, const void *w, em_q8x_row x);

/* One step of causal attention with an online softmax: n <= EM_ATTN_CHUNK
 * cached positions (K rows k[i], V rows v[i], F32) for the G query heads
 * q[g * ldq ...] that share one KV head (GQA), so each K and V row is read
 * once for the whole group. Per head g:
 *   s_i = scale * sum_d q_g[d] k_i[d]                        (i < n)
 *   M = max(m[g], max_i s_i); if M > m[g]: l[g] *= r, acc_g *= r with
 *   r = exp(m[g] - M), m[g] = M
 *   then for each i in order: w = exp(s_i - m[g]), l[g] += w,
 *   acc_g[e] += w v_i[e]                                      (e < Dv)
 * acc_g = acc + g * lda. m starts at -INFINITY, l and acc at 0; the
 * output is acc_g / l[g] after the last chunk. Chunks of a fixed size
 * (not the KV block size) keep results independent of the block size.
 * Kernels may sum the dot products and the exp in another order or with
 * their own exp (within a few ulp). */
#define EM_ATTN_CHUNK 16
typedef void (*em_attn_chunk_fn)(int64_t D, int64_t Dv, int64_t G, const float *q, int64_t ldq,
                                 float scale, int n, const float *const *k,
                                 const float *const *v, float *m, float *l, float *acc,
                                 int64_t lda);

/* y[i] = silu(g[i]) * u[i] = g[i] / (1 + exp(-g[i])) * u[i], i < n (the
 * SwiGLU of every llama-family FFN). Kernels may use their own exp
 * (within a few ulp). */
typedef void (*em_swiglu_fn)(int64_t n, const float *g, const float *u, float *y);

/* dst[i] = fp16(src[i]), round to nearest even */
typedef void (*em_from_f32_fn)(int64_t n, const float *src, void *dst);

typedef struct em_cpu_dsp {
    em_dot_fn dot[EMBER_TYPE_COUNT];
    em_to_f32_fn to_f32[EMBER_TYPE_COUNT];
    em_from_f32_fn f32_to_f16;
    em_axpy_fn axpy;
    em_gemm_fn gemm_f32;
    /* integer path for block-quantized weights (NULL: the type has none) */
    em_quant_q8x_fn quant_q8x;
    em_dot_q8x_fn dot_q8x[EMBER_TYPE_COUNT];
    /* 8-bit GEMM for batches (NULL: batches of these types run in F32) */
    em_gemm_q8_fn gemm_q8;
    em_quant_q8_lanes_fn quant_q8_lanes;
    em_unpack_q8_fn unpack_q8[EMBER_TYPE_COUNT]; /* Q8_0, Q4_0 */
    em_gemm_q8_few_fn gemm_q8_few[EMBER_TYPE_COUNT]; /* Q8_0, Q4_0; NULL: gemm_q8 */
    /* the unpacked types under act_type Q8_0 (NULL: two planes, dot_q8x);
     * like gemm_q8, only where a fast kernel exists */
    em_dot_q8_fn dot_q8[EMBER_TYPE_COUNT];
    /* BF16 weights under act_type BF16 (NULL: no fast kernel; batches
     * then multiply the rounded activations in the F32 tiles) */
    em_gemm_bf16_fn gemm_bf16;
    em_attn_chunk_fn attn_chunk;
    em_swiglu_fn swiglu;
    /* y[i] += a * (float)x_f16[i] */
    void (*axpy_f16)(int64_t n, float a, const void *x, float *y);
} em_cpu_dsp;

void em_cpu_dsp_init(em_cpu_dsp *c, uint32_t flags);
void em_cpu_dsp_init_ref(em_cpu_dsp *c);
void em_cpu_dsp_init_ref_q(em_cpu_dsp *c);
void em_cpu_dsp_init_x86(em_cpu_dsp *c, uint32_t flags);
void em_cpu_dsp_init_arm(em_cpu_dsp *c, uint32_t flags);
void em_cpu_dsp_init_riscv(em_cpu_dsp *c, uint32_t flags);
uint32_t em_cpu_detect(void);
uint32_t em_cpu_mask(void);

#endif
