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

/* y[t * ldy + r] = sum_k w[r * K + k] * x[t * K + k] for r < nr, t < nt:
 * nr F32 weight rows against nt activation rows (a matmul tile). */
typedef void (*em_gemm_fn)(int64_t K, int64_t nr, int64_t nt, const float *w, const float *x,
                           float *y, int64_t ldy);

/* dst[i] = fp16(src[i]), round to nearest even */
typedef void (*em_from_f32_fn)(int64_t n, const float *src, void *dst);

typedef struct em_cpu_dsp {
    em_dot_fn dot[EMBER_TYPE_COUNT];
    em_to_f32_fn to_f32[EMBER_TYPE_COUNT];
    em_from_f32_fn f32_to_f16;
    em_axpy_fn axpy;
    em_gemm_fn gemm_f32;
    /* y[i] += a * (float)x_f16[i] */
    void (*axpy_f16)(int64_t n, float a, const void *x, float *y);
} em_cpu_dsp;

void em_cpu_dsp_init(em_cpu_dsp *c, uint32_t flags);
void em_cpu_dsp_init_ref(em_cpu_dsp *c);
void em_cpu_dsp_init_x86(em_cpu_dsp *c, uint32_t flags);
uint32_t em_cpu_detect(void);
uint32_t em_cpu_mask(void);

#endif
