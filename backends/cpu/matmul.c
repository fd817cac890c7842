/* The batched matmul path (see cpu.h): activations transposed once, then
 * each thread walks its weight rows in tiles of EM_MATMUL_TILE rows and
 * EM_GEMM_KC columns, dequantizing a tile into scratch (L2-sized) and
 * running the dsp GEMM on it against every token. */
#include <math.h>
#include <string.h>

#include "../../lib/gguf.h"
#include "cpu.h"

/* Columns per dequantized tile: a multiple of every block size (32, 256),
 * and 48 rows x 256 floats = 48 KiB stays in L2 next to the activations. */
#define EM_GEMM_KC 256

int64_t em_cpu_gemm_lanes(int64_t T) {
    return (T + EM_GEMM_LANES - 1) / EM_GEMM_LANES * EM_GEMM_LANES;
}

/* The row stride of a tile's results yT: the lanes plus 16 floats, so
 * that the rows of yT do not fall a power of two apart -- store_tile
 * reads a column of them per token, and at 128 or 512 tokens those
 * lines shared one or two L1 sets. */
static int64_t tile_ld(int64_t T) {
    return em_cpu_gemm_lanes(T) + 16;
}

size_t em_cpu_gemm_scratch(int64_t T) {
    return (size_t)EM_MATMUL_TILE * ((size_t)EM_GEMM_KC + (size_t)tile_ld(T)) + 16;
}

/* A tile's results, [row][lane] with row stride ld, into
 * y[t * st + r * sr], 16 tokens at a time: each row of yT is read one
 * cache line at a time. (Token by token, with rows of yT 2 KiB apart at
 * 512 tokens, the reads of a column thrashed one or two L1 sets; this
 * order measured faster than token-by-token with the padded stride.) */
static void store_tile(const float *yT, int64_t ld, int64_t nr, int64_t T, float *y, int64_t st,
                       int64_t sr) {
    for (int64_t t0 = 0; t0 < T; t0 += 16) {
        int64_t t1 = t0 + 16 < T ? t0 + 16 : T;
        for (int64_t r = 0; r < nr; r++)
            for (int64_t t = t0; t < t1; t++) y[t * st + r * sr] = yT[r * ld + t];
    }
}

/* In blocks of 16 columns of x: the 16 rows of xT a block writes (one
 * cache line per 16 tokens each) stay in L1 while t runs, where writing a
 * whole row range per token touched a new line per element. */
void em_cpu_transpose_in(const float *x, int64_t ldx, int64_t T, int64_t K, float *xT, int ith,
                         int nth) {
    int64_t tp = em_cpu_gemm_lanes(T), per = (K + nth - 1) / nth;
    int64_t lo = per * ith < K ? per * ith : K, hi = lo + per < K ? lo + per : K;
    for (int64_t k0 = lo; k0 < hi; k0 += 16) {
        int64_t k1 = k0 + 16 < hi ? k0 + 16 : hi;
        for (int64_t t = 0; t < T; t++)
            for (int64_t k = k0; k < k1; k++) xT[k * tp + t] = x[t * ldx + k];
        for (int64_t k = k0; k < k1; k++)
            for (int64_t t = T; t < tp; t++) xT[k * tp + t] = 0;
    }
}

void em_cpu_transpose_in_q8(const em_cpu *c, const float *x, int64_t ldx, int64_t T, int64_t K,
                            float *xT, int ith, int nth) {
    enum { CHUNK = 16 }; /* blocks quantized per call, on the stack */
    int8_t q[CHUNK * 32];
    float d[CHUNK];
    int32_t s[CHUNK];
    int64_t tp = em_cpu_gemm_lanes(T), nb = K / 32, per = (nb + nth - 1) / nth;
    int64_t lo = per * ith < nb ? per * ith : nb, hi = lo + per < nb ? lo + per : nb;
    for (int64_t b0 = lo; b0 < hi; b0 += CHUNK) {
        int64_t n = hi - b0 < CHUNK ? hi - b0 : CHUNK;
        for (int64_t t = 0; t < T; t++) {
            const float *xt = x + t * ldx + b0 * 32; /* block indices from b0 */
            for (int64_t b = 0; b < n; b++) c->dsp.quant_q8_lanes(xt, 0, 1, b, q, d, s, 1);
            for (int64_t k = 0; k < n * 32; k++) xT[(b0 * 32 + k) * tp + t] = (float)q[k] * d[k / 32];
        }
        for (int64_t k = b0 * 32; k < (b0 + n) * 32; k++)
            for (int64_t t = T; t < tp; t++) xT[k * tp + t] = 0;
    }
}

/* Hints into L2 row r's bytes of the tile after (r0, k0) -- the next
 * columns of the same rows, or the first columns of the next rows -- so
 * that they arrive while this tile is multiplied (the weights stream from
 * memory once per matmul; unhinted, the dequantizing loads waited on it). */
static void hint_next_tile(const em_wrows *w, const char *rows, int64_t r0, int64_t hi,
                           int64_t k0, int64_t r) {
    const em_type_info *ti = em_type_info_get(w->type);
    size_t bytes = (size_t)(EM_GEMM_KC / ti->block) * ti->size;
    const char *next;
    if (k0 + EM_GEMM_KC < w->K) {
        next = rows + (size_t)((k0 + EM_GEMM_KC) / ti->block) * ti->size;
    } else {
        if (r0 + EM_MATMUL_TILE + r >= hi) return;
        next = rows + (size_t)EM_MATMUL_TILE * w->nb1;
    }
    next += (size_t)r * w->nb1;
    for (size_t i = 0; i < bytes; i += 64) em_prefetch_l2(next + i);
}

void em_cpu_gemm_rows(const em_cpu *c, const em_wrows *w, int64_t lo, int64_t hi, const float *xT,
                      int64_t T, float *y, int64_t st, int64_t sr, float *scratch) {
    int64_t K = w->K, tp = em_cpu_gemm_lanes(T), ly = tile_ld(T);
    const em_type_info *ti = em_type_info_get(w->type);
    float *tile = scratch, *yT = scratch + (size_t)EM_MATMUL_TILE * EM_GEMM_KC;
    for (int64_t r0 = lo; r0 < hi; r0 += EM_MATMUL_TILE) {
        int64_t nr = hi - r0 < EM_MATMUL_TILE ? hi - r0 : EM_MATMUL_TILE;
        const char *rows = w->data + (size_t)r0 * w->nb1;
        memset(yT, 0, (size_t)(nr * ly) * sizeof *yT);
        for (int64_t k0 = 0; k0 < K; k0 += EM_GEMM_KC) {
            int64_t kn = K - k0 < EM_GEMM_KC ? K - k0 : EM_GEMM_KC;
            const float *wp = tile;
            int64_t ldw = EM_GEMM_KC;
            if (w->type == EMBER_TYPE_F32) {
                wp = (const float *)rows + k0;
                ldw = (int64_t)(w->nb1 / sizeof(float));
            } else {
                size_t off = (size_t)(k0 / ti->block) * ti->size;
                for (int64_t r = 0; r < nr; r++) {
                    c->dsp.to_f32[w->type](kn, rows + (size_t)r * w->nb1 + off, tile + r * EM_GEMM_KC);
                    hint_next_tile(w, rows, r0, hi, k0, r);
                }
            }
            c->dsp.gemm_f32(kn, nr, tp, wp, ldw, xT + k0 * tp, tp, yT, ly);
        }
        store_tile(yT, ly, nr, T, y + r0 * sr, st, sr);
    }
}

/* ---- the BF16 path (dsp.h, gemm_bf16) ---- */

static uint32_t bf16_pair(const float *x) {
    return (uint32_t)em_f32_to_bf16(x[0]) | (uint32_t)em_f32_to_bf16(x[1]) << 16;
}

/* In blocks of 16 pairs, as em_cpu_transpose_in. */
void em_cpu_transpose_in_bf16(const float *x, int64_t ldx, int64_t T, int64_t K, uint32_t *xT2,
                              int ith, int nth) {
    int64_t tp = em_cpu_gemm_lanes(T), np = K / 2, per = (np + nth - 1) / nth;
    int64_t lo = per * ith < np ? per * ith : np, hi = lo + per < np ? lo + per : np;
    for (int64_t p0 = lo; p0 < hi; p0 += 16) {
        int64_t p1 = p0 + 16 < hi ? p0 + 16 : hi;
        for (int64_t t = 0; t < T; t++)
            for (int64_t p = p0; p < p1; p++) xT2[p * tp + t] = bf16_pair(x + t * ldx + 2 * p);
        for (int64_t p = p0; p < p1; p++)
            for (int64_t t = T; t < tp; t++) xT2[p * tp + t] = 0;
    }
}

void em_cpu_gemm_bf16_rows(const em_cpu *c, const em_wrows *w, int64_t lo, int64_t hi,
                           const uint32_t *xT2, int64_t T, float *y, int64_t st, int64_t sr,
                           float *scratch) {
    int64_t K = w->K, tp = em_cpu_gemm_lanes(T), ly = tile_ld(T);
    int64_t ldw = (int64_t)(w->nb1 / sizeof(uint16_t));
    float *yT = scratch;
    for (int64_t r0 = lo; r0 < hi; r0 += EM_MATMUL_TILE) {
        int64_t nr = hi - r0 < EM_MATMUL_TILE ? hi - r0 : EM_MATMUL_TILE;
        const char *rows = w->data + (size_t)r0 * w->nb1;
        memset(yT, 0, (size_t)(nr * ly) * sizeof *yT);
        for (int64_t k0 = 0; k0 < K; k0 += EM_GEMM_KC) {
            int64_t kn = K - k0 < EM_GEMM_KC ? K - k0 : EM_GEMM_KC;
            for (int64_t r = 0; r < nr; r++) hint_next_tile(w, rows, r0, hi, k0, r);
            c->dsp.gemm_bf16(kn, nr, tp, (const uint16_t *)rows + k0, ldw, xT2 + (k0 / 2) * tp, tp,
                             yT, ly);
        }
        store_tile(yT, ly, nr, T, y + r0 * sr, st, sr);
    }
}

/* ---- the 8-bit path (dsp.h, gemm_q8) ---- */

em_q8_in em_cpu_q8_in(void *shared, int64_t T, int64_t K) {
    int64_t tp = em_cpu_gemm_lanes(T), ld = tp + 16, cells = (K / 32) * ld;
    em_q8_in in = { shared, NULL, NULL, tp, ld };
    in.dx = (float *)((int8_t *)shared + (size_t)K * (size_t)ld);
    in.xs = (int32_t *)(in.dx + cells);
    return in;
}

void em_cpu_quantize_in(const em_cpu *c, const float *x, int64_t ldx, int64_t T, int64_t K,
                        em_q8_in in, int ith, int nth) {
    int64_t nb = K / 32, per = (nb + nth - 1) / nth;
    int64_t lo = per * ith < nb ? per * ith : nb, hi = lo + per < nb ? lo + per : nb;
    for (int64_t b = lo; b < hi; b++) {
        c->dsp.quant_q8_lanes(x, ldx, T, b, in.xq, in.dx, in.xs, in.ld);
        for (int64_t t = T; t < in.tp; t++) { /* padding lanes: zeros */
            for (int k4 = 0; k4 < 8; k4++) memset(in.xq + ((b * 8 + k4) * in.ld + t) * 4, 0, 4);
            in.dx[b * in.ld + t] = 0;
            in.xs[b * in.ld + t] = 0;
        }
    }
}

void em_cpu_gemm_q8_rows(const em_cpu *c, const em_wrows *w, int64_t lo, int64_t hi, em_q8_in in,
                         int64_t T, float *y, int64_t st, int64_t sr, float *scratch) {
    int64_t K = w->K, tp = in.tp, kb = EM_GEMM_KC / 32, ly = tile_ld(T);
    const em_type_info *ti = em_type_info_get(w->type);
    /* the scratch of the F32 path, carved: yT, then the unpacked tile */
    float *yT = scratch, *dw = yT + (size_t)EM_MATMUL_TILE * (size_t)ly;
    uint8_t *tw = (uint8_t *)(dw + (size_t)EM_MATMUL_TILE * (size_t)kb);
    em_unpack_q8_fn unpack = c->dsp.unpack_q8[w->type];
    for (int64_t r0 = lo; r0 < hi; r0 += EM_MATMUL_TILE) {
        int64_t nr = hi - r0 < EM_MATMUL_TILE ? hi - r0 : EM_MATMUL_TILE;
        const char *rows = w->data + (size_t)r0 * w->nb1;
        memset(yT, 0, (size_t)(nr * ly) * sizeof *yT);
        for (int64_t k0 = 0; k0 < K; k0 += EM_GEMM_KC) {
            int64_t nb = (K - k0 < EM_GEMM_KC ? K - k0 : EM_GEMM_KC) / 32, b0 = k0 / 32;
            int32_t o = 0;
            for (int64_t r = 0; r < nr; r++) {
                o = unpack(nb, rows + (size_t)r * w->nb1 + (size_t)b0 * ti->size,
                           tw + r * EM_GEMM_KC, dw + r * kb);
                hint_next_tile(w, rows, r0, hi, k0, r);
            }
            c->dsp.gemm_q8(nb, nr, tp, tw, EM_GEMM_KC, dw, kb, o,
                           in.xq + (size_t)(b0 * 8) * (size_t)in.ld * 4, in.dx + b0 * in.ld,
                           in.xs + b0 * in.ld, in.ld, yT, ly);
        }
        store_tile(yT, ly, nr, T, y + r0 * sr, st, sr);
    }
}
