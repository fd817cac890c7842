/* AArch64 kernels: NEON (every AArch64 core) in kernels_neon.c, the
 * dotprod extension (SDOT, Armv8.2+, -march=armv8.2-a+dotprod) in
 * kernels_dotprod.c; registered by em_cpu_dsp_init_arm in init.c. */
#ifndef EMBER_CPU_ARM_H
#define EMBER_CPU_ARM_H

#include <stdint.h>

#include "../dsp.h"

float em_dot_f32_neon(int64_t n, const void *w, const float *x);
float em_dot_f16_neon(int64_t n, const void *w, const float *x);
void em_f16_to_f32_neon(int64_t n, const void *src, float *dst);
void em_quant_q8x_neon(int64_t n, const float *x, int8_t *hi, int8_t *lo, float *d, int32_t *s);

#define EM_ARM_Q8X_TYPES(X) X(q8_0) X(q4_0) X(q4_k) X(q6_k)
#define EM_ARM_DECLARE(T)                                                                     \
    float em_dot_##T##_q8x_neon(int64_t n, const void *w, em_q8x_row x);                       \
    float em_dot_##T##_q8x_dotprod(int64_t n, const void *w, em_q8x_row x);
EM_ARM_Q8X_TYPES(EM_ARM_DECLARE)
#undef EM_ARM_DECLARE

#endif
