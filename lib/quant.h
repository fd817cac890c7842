/* Weight quantization: the block formats' definitions (llama.cpp's layouts
 * and rounding rules, so our blocks equal its blocks for the same input),
 * used by ember_quantize_row, ember_model_quantize and the reference
 * dequantization kernels. */
#ifndef EMBER_QUANT_H
#define EMBER_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util.h"

/* An fp16 scale inside a block (blocks are byte-aligned, hence memcpy). */
static inline float em_load_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return em_f16_to_f32(h);
}

static inline void em_store_f16(uint8_t *p, float f) {
    uint16_t h = em_f32_to_f16(f);
    memcpy(p, &h, 2);
}

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
/* Bytes of the unit em_unpack_blocks reads (a block, or a super-block). */
size_t em_unit_bytes(uint32_t type);

/* The 6-bit scale and min of sub-block j (of 8) of a Q4_K/Q5_K super-block,
 * from its 12 packed bytes: sub-blocks 0-3 in the low 6 bits of bytes j and
 * j + 4; sub-blocks 4-7 in the nibbles of byte j + 4 with their top two
 * bits in the top bits of bytes j - 4 and j. */
static inline void em_k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
        *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

/* K-quants (quant_k.c); n a multiple of 256 */
bool em_quantize_row_k(uint32_t type, const float *src, int64_t n, void *dst);
void em_unpack_superblock(uint32_t type, const uint8_t *b, em_block32 out[8]);

#endif
