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
/* Any type with a block layout we know (F32, F16, BF16, Q8_0, Q4_0,
 * Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K). */
bool em_dequantize_row(uint32_t type, const void *src, int64_t n, float *dst);

/* Every block type in one form, 32 weights at a time:
 * w[j] = a[j / 16] * q[j] + c. The integer dot products are built on it
 * (q times the activations' integers, then the float factors), and it is
 * how the reference kernels read all block types. */
typedef struct em_block32 {
    int8_t q[32];
    float a[2];
    float c;
} em_block32;

/* Unpacks the unit of blocks at p (one block of 32; a K-quant's whole
 * super-block of 8) into out; returns the number of blocks written, 0 for
 * a type that is not block-quantized. */
int em_unpack_blocks(uint32_t type, const uint8_t *p, em_block32 out[8]);

/* K-quants (quant_k.c); n a multiple of 256 */
bool em_quantize_row_k(uint32_t type, const float *src, int64_t n, void *dst);
bool em_dequantize_row_k(uint32_t type, const void *src, int64_t n, float *dst);
void em_unpack_superblock(uint32_t type, const uint8_t *b, em_block32 out[8]);

#endif
