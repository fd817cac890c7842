/* The batched matmul path (see cpu.h): activations transposed once, then
 * each thread walks its weight rows in tiles of EM_MATMUL_TILE rows and
 * EM_GEMM_KC columns, dequantizing a tile into scratch (L2-sized) and
 * running the dsp GEMM on it against every token. */
#include <string.h>

#include "../../lib/gguf.h"
#include "cpu.h"

/* Columns per dequantized tile: a multiple of every block size (32, 256),
 * and 48 rows x 256 floats = 48 KiB stays in L2 next to the activations. */
#define EM_GEMM_KC 256

int64_t em_cpu_gemm_lanes(int64_t T) {
    return (T + EM_GEMM_LANES - 1) / EM_GEMM_LANES * EM_GEMM_LANES;
}

size_t em_cpu_gemm_scratch(int64_t T) {
    return (size_t)EM_MATMUL_TILE * ((size_t)EM_GEMM_KC + (size_t)em_cpu_gemm_lanes(T)) + 16;
}

void em_cpu_transpose_in(const float *x, int64_t ldx, int64_t T, int64_t K, float *xT, int ith,
                         int nth) {
    int64_t tp = em_cpu_gemm_lanes(T), per = (K + nth - 1) / nth;
    int64_t lo = per * ith < K ? per * ith : K, hi = lo + per < K ? lo + per : K;
    for (int64_t t = 0; t < tp; t++) {
        if (t < T)
            for (int64_t k = lo; k < hi; k++) xT[k * tp + t] = x[t * ldx + k];
        else
            for (int64_t k = lo; k < hi; k++) xT[k * tp + t] = 0;
    }
}

void em_cpu_gemm_rows(const em_cpu *c, const em_wrows *w, int64_t lo, int64_t hi, const float *xT,
                      int64_t T, float *y, int64_t st, int64_t sr, float *scratch) {
    int64_t K = w->K, tp = em_cpu_gemm_lanes(T);
    const em_type_info *ti = em_type_info_get(w->type);
    float *tile = scratch, *yT = scratch + (size_t)EM_MATMUL_TILE * EM_GEMM_KC;
    for (int64_t r0 = lo; r0 < hi; r0 += EM_MATMUL_TILE) {
        int64_t nr = hi - r0 < EM_MATMUL_TILE ? hi - r0 : EM_MATMUL_TILE;
        const char *rows = w->data + (size_t)r0 * w->nb1;
        memset(yT, 0, (size_t)(nr * tp) * sizeof *yT);
        for (int64_t k0 = 0; k0 < K; k0 += EM_GEMM_KC) {
            int64_t kn = K - k0 < EM_GEMM_KC ? K - k0 : EM_GEMM_KC;
            const float *wp = tile;
            int64_t ldw = EM_GEMM_KC;
            if (w->type == EMBER_TYPE_F32) {
                wp = (const float *)rows + k0;
                ldw = (int64_t)(w->nb1 / sizeof(float));
            } else {
                size_t off = (size_t)(k0 / ti->block) * ti->size;
                for (int64_t r = 0; r < nr; r++)
                    c->dsp.to_f32[w->type](kn, rows + (size_t)r * w->nb1 + off, tile + r * EM_GEMM_KC);
            }
            c->dsp.gemm_f32(kn, nr, tp, wp, ldw, xT + k0 * tp, tp, yT, tp);
        }
        for (int64_t r = 0; r < nr; r++)
            for (int64_t t = 0; t < T; t++) y[t * st + (r0 + r) * sr] = yT[r * tp + t];
    }
}
