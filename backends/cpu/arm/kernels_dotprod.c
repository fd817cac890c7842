/* Kernels of the dotprod extension (compiled with
 * -march=armv8.2-a+dotprod, called only where the CPU reports it): the
 * integer dot products of Q8_0, Q4_0, Q4_K and Q6_K rows with SDOT, four
 * byte products per 32-bit lane in one instruction. */
#include <arm_neon.h>

#include "arm.h"

/* 256 (q . hi) + q . lo per lane: the high plane's sums shifted, then
 * the low plane's products added onto them by the second SDOT */
static inline int32x4_t half_dot(int8x16_t q, const int8_t *hi, const int8_t *lo) {
    int32x4_t h = vdotq_s32(vdupq_n_s32(0), q, vld1q_s8(hi));
    return vdotq_s32(vshlq_n_s32(h, 8), q, vld1q_s8(lo));
}

#include "unpack_neon.h"

EM_ARM_DEFINE_Q8X_DOT(q8_0, 34, 0, dotprod)
EM_ARM_DEFINE_Q8X_DOT(q4_0, 18, 0, dotprod)
EM_ARM_DEFINE_Q8X_DOT(q4_k, 144, ARM_AFFINE, dotprod)
EM_ARM_DEFINE_Q8X_DOT(q6_k, 210, ARM_SPLIT, dotprod)
