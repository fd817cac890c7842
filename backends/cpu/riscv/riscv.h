/* RISC-V kernels: RVV 1.0 in kernels_rvv.c (inline assembly), registered
 * by em_cpu_dsp_init_riscv in init.c where the kernel reports 'V'. */
#ifndef EMBER_CPU_RISCV_H
#define EMBER_CPU_RISCV_H

#include <stdint.h>

#include "../dsp.h"

float em_dot_q8_0_q8x_rvv(int64_t n, const void *w, em_q8x_row x);
float em_dot_q4_0_q8x_rvv(int64_t n, const void *w, em_q8x_row x);

#endif
