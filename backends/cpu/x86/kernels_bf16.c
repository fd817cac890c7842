/* AVX512-BF16 kernels (compiled with the AVX-512 flags plus -mavx512bf16).
 * VDPBF16PS multiplies 32 BF16 pairs into 16 F32 lanes: twice the
 * products of an F32 FMA per instruction, at the same rate on Zen 4/5
 * (measured on the Zen 5 VM: 500 against 250 GFLOP/s on one core). */
#include <immintrin.h>
#include <string.h>

#include "tile512.h"
#include "x86.h"

/* The F32 tile of kernels_avx512.c with k in pairs: MR weight rows x NV
 * vectors of 16 tokens, one 32-bit broadcast of a row's pair per row and
 * step, read straight from the stored BF16 row. */
static inline __attribute__((always_inline)) void tile(int mr, int nv, int64_t np,
                                                       const uint16_t *w, int64_t ldw,
                                                       const uint32_t *xT2, int64_t ldx,
                                                       float *yT, int64_t ldy) {
    __m512 acc[EM_TILE_MR][2];
    em_tile_load(mr, nv, acc, yT, ldy);
    for (int64_t p = 0; p < np; p++) {
        __m512bh a[2];
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++)
            a[v] = (__m512bh)_mm512_loadu_si512((const void *)(xT2 + p * ldx + 16 * v));
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            uint32_t pair;
            memcpy(&pair, w + r * ldw + 2 * p, sizeof pair);
            __m512bh b = (__m512bh)_mm512_set1_epi32((int)pair);
#pragma GCC unroll 2
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a[v], b);
        }
    }
    em_tile_store(mr, nv, acc, yT, ldy);
}

void em_gemm_bf16_avx512bf16(int64_t kn, int64_t nr, int64_t nt, const uint16_t *w, int64_t ldw,
                             const uint32_t *xT2, int64_t ldx, float *yT, int64_t ldy) {
    int64_t np = kn / 2;
#define BF16_TILE(MR, NV, r, t)                                                                \
    tile(MR, NV, np, w + (r) * ldw, ldw, xT2 + (t), ldx, yT + (r) * ldy + (t), ldy)
    EM_TILE_WALK(BF16_TILE, nr, nt);
#undef BF16_TILE
}
