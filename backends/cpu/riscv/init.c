/* RISC-V overrides: the vector level only, so far. */
#include "../dsp.h"
#include "riscv.h"

void em_cpu_dsp_init_riscv(em_cpu_dsp *c, uint32_t flags) {
    if (!(flags & EMBER_CPU_RVV)) return;
    c->dot_q8x[EMBER_TYPE_Q8_0] = em_dot_q8_0_q8x_rvv;
    c->dot_q8x[EMBER_TYPE_Q4_0] = em_dot_q4_0_q8x_rvv;
}
