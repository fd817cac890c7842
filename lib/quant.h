/* Weight quantization: the block formats' definitions (llama.cpp's layouts
 * and rounding rules, so our blocks equal its blocks for the same input),
 * used by ember_quantize_row, ember_model_quantize and the reference
 * dequantization kernels. */
#ifndef EMBER_QUANT_H
#define EMBER_QUANT_H

#include <stdbool.h>
#include <stdint.h>

/* n a multiple of the type's block size; returns false for types without a
 * quantizer. */
bool em_quantize_row(uint32_t type, const float *src, int64_t n, void *dst);
/* Any type with a block layout we know (F32, F16, BF16, Q8_0, Q4_0). */
bool em_dequantize_row(uint32_t type, const void *src, int64_t n, float *dst);

#endif
