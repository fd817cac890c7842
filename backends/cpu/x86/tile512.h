/* What the AVX-512 GEMM tiles share (kernels_avx512.c's F32 tile,
 * kernels_bf16.c's BF16 tile): the accumulators, MR weight rows x NV
 * vectors of 16 tokens, loaded from and stored to yT, and the walk over a
 * call's rows and tokens. Include only from files built with AVX-512. */
#ifndef EMBER_CPU_X86_TILE512_H
#define EMBER_CPU_X86_TILE512_H

#include <immintrin.h>
#include <stdint.h>

#define EM_TILE_MR 12 /* rows per full tile */

static inline __attribute__((always_inline)) void em_tile_load(int mr, int nv,
                                                               __m512 acc[EM_TILE_MR][2],
                                                               const float *yT, int64_t ldy) {
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) acc[r][v] = _mm512_loadu_ps(yT + r * ldy + 16 * v);
}

static inline __attribute__((always_inline)) void em_tile_store(int mr, int nv,
                                                                __m512 acc[EM_TILE_MR][2],
                                                                float *yT, int64_t ldy) {
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) _mm512_storeu_ps(yT + r * ldy + 16 * v, acc[r][v]);
}

/* Calls TILE(MR, NV, r, t) over nr rows and nt tokens (a multiple of 16):
 * tokens 32 at a time (NV 2) then 16, rows 12 at a time, then 4, then 1.
 * MR and NV are constants at each call, so the tile's loops unroll. */
#define EM_TILE_ROWS(TILE, NV, nr, t)                                                          \
    do {                                                                                       \
        int64_t r_ = 0;                                                                        \
        for (; r_ + EM_TILE_MR <= (nr); r_ += EM_TILE_MR) TILE(EM_TILE_MR, NV, r_, t);         \
        for (; r_ + 4 <= (nr); r_ += 4) TILE(4, NV, r_, t);                                    \
        for (; r_ < (nr); r_++) TILE(1, NV, r_, t);                                            \
    } while (0)
#define EM_TILE_WALK(TILE, nr, nt)                                                             \
    do {                                                                                       \
        int64_t t_ = 0;                                                                        \
        for (; t_ + 32 <= (nt); t_ += 32) EM_TILE_ROWS(TILE, 2, nr, t_);                       \
        for (; t_ < (nt); t_ += 16) EM_TILE_ROWS(TILE, 1, nr, t_);                             \
    } while (0)

#endif
