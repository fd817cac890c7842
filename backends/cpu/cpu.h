/* Internal to the CPU backend: what op kernels see. */
#ifndef EMBER_CPU_H
#define EMBER_CPU_H

#include "../../lib/backend.h"
#include "../../lib/kv.h"
#include "dsp.h"
#include "../../lib/threadpool.h"

typedef struct em_cpu {
    em_cpu_dsp dsp;
    em_threadpool *pool;
    float **scratch;       /* per thread */
    size_t scratch_floats; /* per thread */
    float *shared;         /* one area all threads of an op work in */
    size_t shared_floats;
    em_graph *graph;       /* the graph being run */
    bool act_q8;           /* 8-bit activations for batches (gemm_q8) */
    bool act_bf16;         /* BF16 activations for BF16 weights (gemm_bf16) */
    /* The node whose activations the shared area holds, laid out for the
     * matmuls (shared_layout: 8-bit lanes of em_cpu_quantize_in, or the
     * f32 transpose of em_cpu_transpose_in or _q8), or NULL. Q, K and V (and
     * gate and up) multiply the same input: the matmuls after the first
     * reuse its layout. A graph node's data is written once per run, so
     * the pointer names the data for the rest of the run. Set by thread 0
     * after the barrier that ends the layout, cleared at the start of a
     * run and by every other user of the shared area; nodes are separated
     * by barriers. */
    const em_tensor *shared_in;
    int shared_layout;
} em_cpu;

enum { EM_SHARED_Q8 = 1, EM_SHARED_F32T = 2, EM_SHARED_F32T_Q8 = 3, EM_SHARED_BF16P = 4 };

/* Rows of a matmul tile converted to f32 at once when the batch has
 * several tokens, so each weight row is read once per batch; a multiple
 * of the GEMM kernels' row blocks (12 for AVX-512, 6 for AVX2). */
#define EM_MATMUL_TILE 48

/* A hint to bring a line into L2 ahead of use (no-op elsewhere). */
#if defined(__GNUC__) || defined(__clang__)
#define em_prefetch_l2(p) __builtin_prefetch((p), 0, 2)
#else
#define em_prefetch_l2(p) ((void)(p))
#endif

/* The batched matmul path (matmul.c). A weight matrix's rows: */
typedef struct em_wrows {
    const char *data;
    uint32_t type;
    int64_t K;  /* columns */
    size_t nb1; /* bytes from row to row */
} em_wrows;
/* Tokens rounded up to whole GEMM lanes: the transposed activations are
 * [K][em_cpu_gemm_lanes(T)], padded with zeros. */
int64_t em_cpu_gemm_lanes(int64_t T);
/* Floats of per-thread scratch em_cpu_gemm_rows needs for T tokens. */
size_t em_cpu_gemm_scratch(int64_t T);
/* Thread ith's share (by columns) of xT[k * tp + t] = x[t * ldx + k]; all
 * threads must run it and meet at a barrier before xT is read. */
void em_cpu_transpose_in(const float *x, int64_t ldx, int64_t T, int64_t K, float *xT, int ith,
                         int nth);
/* The same, of x rounded as act_type Q8_0 rounds it (quant_q8_lanes, then
 * q * d, exact in float), split by blocks of 32: a batch of K-quant
 * matmuls then rounds its activations by the rule its decode steps use
 * (dot_q8), as Q8_0/Q4_0 batches do through gemm_q8. */
void em_cpu_transpose_in_q8(const em_cpu *c, const float *x, int64_t ldx, int64_t T,
                            int64_t K, float *xT, int ith, int nth);
/* Rows [lo, hi) of w times the T transposed activations:
 * y[t * st + r * sr] = sum_k w[r][k] x[t][k]. */
void em_cpu_gemm_rows(const em_cpu *c, const em_wrows *w, int64_t lo, int64_t hi, const float *xT,
                      int64_t T, float *y, int64_t st, int64_t sr, float *scratch);

/* The BF16 path (act_type BF16, BF16 weights, where the dsp has
 * gemm_bf16): x rounded to BF16 and transposed into pairs,
 * xT2[p * tp + t] = (x[t][2p], x[t][2p + 1]) (the layout of dsp.h), by
 * thread ith's share of the pairs; a barrier before it is read. K even. */
void em_cpu_transpose_in_bf16(const float *x, int64_t ldx, int64_t T, int64_t K, uint32_t *xT2,
                              int ith, int nth);
/* Rows [lo, hi) of BF16 w times those activations, read as stored (no
 * dequantized tile); scratch as em_cpu_gemm_rows. */
void em_cpu_gemm_bf16_rows(const em_cpu *c, const em_wrows *w, int64_t lo, int64_t hi,
                           const uint32_t *xT2, int64_t T, float *y, int64_t st, int64_t sr,
                           float *scratch);

/* The 8-bit path of batched Q8_0/Q4_0 matmuls where the dsp has gemm_q8:
 * activations quantized once into the shared area (tokens in lanes, see
 * dsp.h), then tiles of unpacked int8 rows against every token. Same
 * scratch as em_cpu_gemm_rows; the shared area holds K * ld bytes and
 * 8 per block and ld (ld <= 2 lanes), less than the F32 path's
 * transposed activations (4 K lanes bytes). */
typedef struct em_q8_in {
    int8_t *xq;
    float *dx;
    int32_t *xs;
    int64_t tp; /* lanes */
    /* lanes apart (tp + 16): at a power-of-two stride a block's eight
     * rows of 16 tokens fell into two L1 sets and were evicted within the
     * tile (Zen 3, 512 tokens: the AVX2 tile 86 -> 95 G products/s) */
    int64_t ld;
} em_q8_in;
em_q8_in em_cpu_q8_in(void *shared, int64_t T, int64_t K);
/* Thread ith's share (by blocks); a barrier before the area is read. */
void em_cpu_quantize_in(const em_cpu *c, const float *x, int64_t ldx, int64_t T, int64_t K,
                        em_q8_in in, int ith, int nth);
void em_cpu_gemm_q8_rows(const em_cpu *c, const em_wrows *w, int64_t lo, int64_t hi, em_q8_in in,
                         int64_t T, float *y, int64_t st, int64_t sr, float *scratch);

/* Scratch floats per thread that node t needs. */
size_t em_cpu_op_scratch(const em_tensor *t, const em_kv *kv);
/* Floats of the shared area that node t needs. */
size_t em_cpu_op_shared(const em_tensor *t);
bool em_cpu_op_supported(const em_tensor *t);

/* MoE kernels (ops_moe.c). */
void em_cpu_moe_route(em_cpu *c, em_tensor *t, int ith, int nth);
void em_cpu_moe_ffn(em_cpu *c, em_tensor *t, int ith, int nth);
size_t em_cpu_moe_ffn_shared(const em_tensor *t);
size_t em_cpu_moe_ffn_scratch(const em_tensor *t);
/* Runs thread ith's share of node t. */
void em_cpu_op_run(em_cpu *c, em_tensor *t, int ith, int nth);

#endif
