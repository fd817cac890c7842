/* RISC-V vector (RVV 1.0) kernels: the integer dot products of Q8_0 and
 * Q4_0 rows with the quantized activations (dsp.h's em_dot_q8x_fn).
 *
 * Debian's GCC 12 has no RVV intrinsics, so the vector part is inline
 * assembly (GNU as 2.40 assembles RVV 1.0 under `.option arch, +v`); the
 * rest of the library stays rv64gc. Any VLEN >= 128 works: a block of 32
 * is taken as two halves of 16 bytes at e8/m1. Per half, the weights
 * times each activation plane widen to 16 bits (two products per lane,
 * |sum| <= 2 * 128 * 127 fits), and a widening reduction sums each plane
 * into 32 bits, its start value written at 32-bit width (a 16-bit write
 * would leave the top half of the 32-bit start value as it was). */
#include <stdint.h>

#include "../../../lib/quant.h"
#include "riscv.h"

/* The part both kernels share, after the block's weights are in v1 (values
 * 0-15) and v2 (16-31) as signed bytes: the activation planes loaded, the
 * widening products and the two reductions into %[a] (hi) and %[b] (lo). */
#define PLANES_TAIL                                                                              \
    "vle8.v v3, (%[hi])\n"                                                                        \
    "addi t1, %[hi], 16\n vle8.v v4, (t1)\n"                                                      \
    "vle8.v v5, (%[lo])\n"                                                                        \
    "addi t1, %[lo], 16\n vle8.v v6, (t1)\n"                                                      \
    "vwmul.vv v8, v1, v3\n vwmacc.vv v8, v2, v4\n"                                               \
    "vwmul.vv v10, v1, v5\n vwmacc.vv v10, v2, v6\n"                                             \
    "vsetivli zero, 1, e32, m1, ta, ma\n"                                                         \
    "vmv.s.x v12, zero\n vmv.s.x v13, zero\n"                                                    \
    "vsetivli zero, 16, e16, m2, ta, ma\n"                                                        \
    "vwredsum.vs v12, v8, v12\n vwredsum.vs v13, v10, v13\n"                                     \
    "vsetivli zero, 1, e32, m1, ta, ma\n"                                                         \
    "vmv.x.s %[a], v12\n vmv.x.s %[b], v13\n"                                                    \
    ".option pop\n"

/* sums of w * hi and w * lo over 32 values, w given as two halves of 16
 * signed bytes already in memory */
static inline void plane_sums(const int8_t *w, const int8_t *hi, const int8_t *lo, int32_t *sh,
                              int32_t *sl) {
    int32_t a, b;
    __asm__ volatile(".option push\n.option arch, +v\n"
                     "vsetivli zero, 16, e8, m1, ta, ma\n"
                     "vle8.v v1, (%[w])\n"
                     "addi t1, %[w], 16\n vle8.v v2, (t1)\n"
                     PLANES_TAIL
                     : [a] "=r"(a), [b] "=r"(b)
                     : [w] "r"(w), [hi] "r"(hi), [lo] "r"(lo)
                     : "t1", "memory");
    *sh = a;
    *sl = b;
}

/* Q4_0: 16 bytes of nibbles (value j low, j + 16 high), minus 8, unpacked
 * in registers */
static inline void plane_sums_q4(const uint8_t *qs, const int8_t *hi, const int8_t *lo,
                                 int32_t *sh, int32_t *sl) {
    int32_t a, b;
    __asm__ volatile(".option push\n.option arch, +v\n"
                     "vsetivli zero, 16, e8, m1, ta, ma\n"
                     "vle8.v v0, (%[qs])\n"
                     "vand.vi v1, v0, 15\n vsrl.vi v2, v0, 4\n"
                     "vadd.vi v1, v1, -8\n vadd.vi v2, v2, -8\n"
                     PLANES_TAIL
                     : [a] "=r"(a), [b] "=r"(b)
                     : [qs] "r"(qs), [hi] "r"(hi), [lo] "r"(lo)
                     : "t1", "memory");
    *sh = a;
    *sl = b;
}

float em_dot_q8_0_q8x_rvv(int64_t n, const void *w, em_q8x_row x) {
    const uint8_t *b = w;
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++, b += 34) {
        int32_t sh, sl;
        plane_sums((const int8_t *)(b + 2), x.q + i * 32, x.lo + i * 32, &sh, &sl);
        sum += em_load_f16(b) * x.d[i] * (float)(256 * sh + sl);
    }
    return sum;
}

float em_dot_q4_0_q8x_rvv(int64_t n, const void *w, em_q8x_row x) {
    const uint8_t *b = w;
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++, b += 18) {
        int32_t sh, sl;
        plane_sums_q4(b + 2, x.q + i * 32, x.lo + i * 32, &sh, &sl);
        sum += em_load_f16(b) * x.d[i] * (float)(256 * sh + sl);
    }
    return sum;
}
