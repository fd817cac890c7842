/* Block quantizers with llama.cpp's rounding rules:
 *  Q8_0: d = max|x| / 127, q = round-half-away(x / d) (C roundf), d stored
 *        as fp16 (round to nearest even).
 *  Q4_0: m = the element of largest magnitude (its sign kept, first one on
 *        ties), d = m / -8, q = min(15, trunc(x / d + 8.5)), so the extreme
 *        element maps to 0 and values read back as (q - 8) * d.
 * The reciprocal is computed once per block and multiplied, as llama.cpp
 * does, because x * (1/d) and x / d can round differently. */
#include "quant.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "util.h"

static void put_f16(uint8_t *p, float f) {
    uint16_t h = em_f32_to_f16(f);
    memcpy(p, &h, 2);
}

static float get_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return em_f16_to_f32(h);
}

static void quant_q8_0(const float *x, int64_t n, uint8_t *b) {
    for (int64_t i = 0; i < n; i += 32, b += 34) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[i + j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(b, d);
        for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)roundf(x[i + j] * id);
    }
}

static void quant_q4_0(const float *x, int64_t n, uint8_t *b) {
    for (int64_t i = 0; i < n; i += 32, b += 18) {
        float amax = 0, m = 0;
        for (int j = 0; j < 32; j++)
            if (fabsf(x[i + j]) > amax) {
                amax = fabsf(x[i + j]);
                m = x[i + j];
            }
        float d = m / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(b, d);
        for (int j = 0; j < 16; j++) {
            int lo = (int)(int8_t)(x[i + j] * id + 8.5f), hi = (int)(int8_t)(x[i + 16 + j] * id + 8.5f);
            lo = lo < 15 ? lo : 15;
            hi = hi < 15 ? hi : 15;
            b[2 + j] = (uint8_t)(lo | hi << 4);
        }
    }
}

bool em_quantize_row(uint32_t type, const float *src, int64_t n, void *dst) {
    switch (type) {
    case EMBER_TYPE_Q8_0: quant_q8_0(src, n, dst); return true;
    case EMBER_TYPE_Q4_0: quant_q4_0(src, n, dst); return true;
    case EMBER_TYPE_F16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = em_f32_to_f16(src[i]);
        return true;
    case EMBER_TYPE_F32: memcpy(dst, src, (size_t)n * 4); return true;
    default: return false;
    }
}

bool em_dequantize_row(uint32_t type, const void *src, int64_t n, float *dst) {
    const uint8_t *b = src;
    switch (type) {
    case EMBER_TYPE_F32: memcpy(dst, src, (size_t)n * 4); return true;
    case EMBER_TYPE_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = em_f16_to_f32(((const uint16_t *)src)[i]);
        return true;
    case EMBER_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) dst[i] = em_bf16_to_f32(((const uint16_t *)src)[i]);
        return true;
    case EMBER_TYPE_Q8_0:
        for (int64_t i = 0; i < n; i += 32, b += 34) {
            float d = get_f16(b);
            for (int j = 0; j < 32; j++) dst[i + j] = d * (float)(int8_t)b[2 + j];
        }
        return true;
    case EMBER_TYPE_Q4_0:
        for (int64_t i = 0; i < n; i += 32, b += 18) {
            float d = get_f16(b);
            for (int j = 0; j < 16; j++) {
                dst[i + j] = d * (float)((b[2 + j] & 15) - 8);
                dst[i + j + 16] = d * (float)((b[2 + j] >> 4) - 8);
            }
        }
        return true;
    default: return false;
    }
}
