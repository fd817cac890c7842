#ifndef EMBER_EXAMPLES_PEAK_H
#define EMBER_EXAMPLES_PEAK_H

/* The machine's multiply-add peak, measured: the reference for prompt
 * processing, which is bound by arithmetic as decode is by bandwidth.
 * Runs `threads` threads of independent multiply-add chains of the widest
 * instruction the CPU has for the kind asked: int8 = 8-bit dot products
 * (AVX512-VNNI VPDPBUSD, 64 multiply-adds each), else F32 fused
 * multiply-adds (AVX-512 or AVX2+FMA). Returns G multiply-adds per second
 * and names the instruction in *what; 0 where none of these exists or the
 * compiler is not GCC/clang on x86-64 (then *what says "not measured"). */
double peak_gmacs(int threads, int int8, const char **what);

#endif
