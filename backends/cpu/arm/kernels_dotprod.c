/* Kernels of the dotprod extension (compiled with
 * -march=armv8.2-a+dotprod, called only where the CPU reports it): the
 * integer dot products of Q8_0, Q4_0, Q4_K and Q6_K rows with SDOT, four
 * byte products per 32-bit lane in one instruction. */
#include <arm_neon.h>

#include "arm.h"

static inline int32_t block_dot(int8x16_t q, const int8_t *hi, const int8_t *lo) {
    const int32x4_t z = vdupq_n_s32(0);
    int32x4_t h = vdotq_s32(z, q, vld1q_s8(hi)), l = vdotq_s32(z, q, vld1q_s8(lo));
    return vaddvq_s32(vaddq_s32(vshlq_n_s32(h, 8), l));
}

#include "unpack_neon.h"

EM_ARM_DEFINE_Q8X_DOT(q8_0, 34, dotprod)
EM_ARM_DEFINE_Q8X_DOT(q4_0, 18, dotprod)
EM_ARM_DEFINE_Q8X_DOT(q4_k, 144, dotprod)
EM_ARM_DEFINE_Q8X_DOT(q6_k, 210, dotprod)
