#ifndef EMBER_EXAMPLES_PEAK_H
#define EMBER_EXAMPLES_PEAK_H

/* The machine's multiply-add peak, measured: the reference for prompt
 * processing, which is bound by arithmetic as decode is by bandwidth.
 * Runs `threads` threads of independent multiply-add chains of the widest
 * instruction the CPU has for the kind asked: PEAK_INT8 = 8-bit dot
 * products (AVX512-VNNI VPDPBUSD, 64 multiply-adds each), PEAK_BF16 =
 * BF16 pair products (AVX512-BF16 VDPBF16PS, 32 each), else F32 fused
 * multiply-adds (AVX-512 or AVX2+FMA). Returns G multiply-adds per second
 * and names the instruction in *what; 0 where none of these exists or the
 * compiler is not GCC/clang on x86-64 (then *what says "not measured"). */
enum { PEAK_F32 = 0, PEAK_INT8 = 1, PEAK_BF16 = 2 };
double peak_gmacs(int threads, int kind, const char **what);

#endif
