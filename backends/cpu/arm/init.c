/* AArch64 overrides, level by level (NEON, then dotprod): return at the
 * first level the CPU (or the mask) does not have. */
#include "../dsp.h"
#include "arm.h"

void em_cpu_dsp_init_arm(em_cpu_dsp *c, uint32_t flags) {
    if (!(flags & EMBER_CPU_NEON)) return;
    c->dot[EMBER_TYPE_F32] = em_dot_f32_neon;
    c->dot[EMBER_TYPE_F16] = em_dot_f16_neon;
    c->to_f32[EMBER_TYPE_F16] = em_f16_to_f32_neon;
    c->quant_q8x = em_quant_q8x_neon;
#define SET(t, T) c->dot_q8x[EMBER_TYPE_##T] = em_dot_##t##_q8x_neon;
    SET(q8_0, Q8_0) SET(q4_0, Q4_0) SET(q4_k, Q4_K) SET(q6_k, Q6_K)
#undef SET
    if (!(flags & EMBER_CPU_DOTPROD)) return;
#define SET(t, T) c->dot_q8x[EMBER_TYPE_##T] = em_dot_##t##_q8x_dotprod;
    SET(q8_0, Q8_0) SET(q4_0, Q4_0) SET(q4_k, Q4_K) SET(q6_k, Q6_K)
#undef SET
}
