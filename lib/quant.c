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

#include "gguf.h"
#include "util.h"

/* The element of largest magnitude, its sign kept (the first on ties):
 * Q4_0's and Q5_0's scale is it over minus half their levels. */
static float signed_extreme(const float *x) {
    float amax = 0, m = 0;
    for (int j = 0; j < 32; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            m = x[j];
        }
    return m;
}

static void quant_q8_0(const float *x, int64_t n, uint8_t *b) {
    for (int64_t i = 0; i < n; i += 32, b += 34) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[i + j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        em_store_f16(b, d);
        for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)roundf(x[i + j] * id);
    }
}

static void quant_q4_0(const float *x, int64_t n, uint8_t *b) {
    for (int64_t i = 0; i < n; i += 32, b += 18) {
        float d = signed_extreme(x + i) / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        em_store_f16(b, d);
        for (int j = 0; j < 16; j++) {
            int lo = (int)(int8_t)(x[i + j] * id + 8.5f), hi = (int)(int8_t)(x[i + 16 + j] * id + 8.5f);
            lo = lo < 15 ? lo : 15;
            hi = hi < 15 ? hi : 15;
            b[2 + j] = (uint8_t)(lo | hi << 4);
        }
    }
}

/* Q4_1 / Q5_1: x ~ d q + m with m the block minimum, d = (max - min) /
 * nmax, q = min(nmax, trunc((x - m) / d + 0.5)). */
static void fit_affine(const float *x, int nmax, float *d, float *m, float *id) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < 32; j++) {
        lo = fminf(lo, x[j]);
        hi = fmaxf(hi, x[j]);
    }
    *d = (hi - lo) / (float)nmax;
    *m = lo;
    *id = *d != 0.0f ? 1.0f / *d : 0.0f;
}

static int affine_q(float x, float m, float id, int nmax) {
    int q = (int)((x - m) * id + 0.5f);
    return q < 0 ? 0 : q > nmax ? nmax : q;
}

static void quant_q4_1(const float *x, int64_t n, uint8_t *b) {
    for (int64_t i = 0; i < n; i += 32, b += 20) {
        float d, m, id;
        fit_affine(x + i, 15, &d, &m, &id);
        em_store_f16(b, d);
        em_store_f16(b + 2, m);
        for (int j = 0; j < 16; j++)
            b[4 + j] = (uint8_t)(affine_q(x[i + j], m, id, 15) | affine_q(x[i + 16 + j], m, id, 15) << 4);
    }
}

/* Five-bit blocks keep the low nibbles as Q4 does and the fifth bits of the
 * 32 elements in a little-endian u32 (bit j for element j). */
static void put_q5(uint8_t *qh, uint8_t *qs, const int *q) {
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 15) | (q[j + 16] & 15) << 4);
        h |= (uint32_t)(q[j] >> 4 & 1) << j | (uint32_t)(q[j + 16] >> 4 & 1) << (j + 16);
    }
    memcpy(qh, &h, 4);
}

static void get_q5(const uint8_t *qh, const uint8_t *qs, int *q) {
    uint32_t h;
    memcpy(&h, qh, 4);
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 15) | (int)(h >> j & 1) << 4;
        q[j + 16] = (qs[j] >> 4) | (int)(h >> (j + 16) & 1) << 4;
    }
}

/* Q5_0: as Q4_0 with 32 levels: d = m / -16, q = min(31, trunc(x / d + 16.5)). */
static void quant_q5_0(const float *x, int64_t n, uint8_t *b) {
    for (int64_t i = 0; i < n; i += 32, b += 22) {
        float d = signed_extreme(x + i) / -16.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int q[32];
        for (int j = 0; j < 32; j++) {
            int v = (int)(int8_t)(x[i + j] * id + 16.5f);
            q[j] = v < 31 ? v : 31;
        }
        em_store_f16(b, d);
        put_q5(b + 2, b + 6, q);
    }
}

static void quant_q5_1(const float *x, int64_t n, uint8_t *b) {
    for (int64_t i = 0; i < n; i += 32, b += 24) {
        float d, m, id;
        fit_affine(x + i, 31, &d, &m, &id);
        int q[32];
        for (int j = 0; j < 32; j++) q[j] = affine_q(x[i + j], m, id, 31);
        em_store_f16(b, d);
        em_store_f16(b + 2, m);
        put_q5(b + 4, b + 8, q);
    }
}

bool em_quantize_row(uint32_t type, const float *src, int64_t n, void *dst) {
    switch (type) {
    case EMBER_TYPE_Q8_0: quant_q8_0(src, n, dst); return true;
    case EMBER_TYPE_Q4_0: quant_q4_0(src, n, dst); return true;
    case EMBER_TYPE_Q4_1: quant_q4_1(src, n, dst); return true;
    case EMBER_TYPE_Q5_0: quant_q5_0(src, n, dst); return true;
    case EMBER_TYPE_Q5_1: quant_q5_1(src, n, dst); return true;
    case EMBER_TYPE_Q4_K: case EMBER_TYPE_Q5_K: case EMBER_TYPE_Q6_K:
        return em_quantize_row_k(type, src, n, dst);
    case EMBER_TYPE_F16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = em_f32_to_f16(src[i]);
        return true;
    case EMBER_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = em_f32_to_bf16(src[i]);
        return true;
    case EMBER_TYPE_F32: memcpy(dst, src, (size_t)n * 4); return true;
    default: return false;
    }
}

/* The other block types are defined by their unpacked form (em_block32):
 * w = a[j / 16] q + c, which is llama.cpp's arithmetic for each of them. */
static void dequantize_unpacked(uint32_t type, const uint8_t *b, int64_t n, float *dst) {
    em_block32 u[8];
    for (int64_t i = 0; i < n; b += em_unit_bytes(type)) {
        int nb = em_unpack_blocks(type, b, u);
        for (int k = 0; k < nb; k++, i += 32)
            for (int j = 0; j < 32; j++) dst[i + j] = u[k].a[j / 16] * (float)u[k].q[j] + u[k].c;
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
            float d = em_load_f16(b);
            for (int j = 0; j < 32; j++) dst[i + j] = d * (float)(int8_t)b[2 + j];
        }
        return true;
    case EMBER_TYPE_Q4_0:
        for (int64_t i = 0; i < n; i += 32, b += 18) {
            float d = em_load_f16(b);
            for (int j = 0; j < 16; j++) {
                dst[i + j] = d * (float)((b[2 + j] & 15) - 8);
                dst[i + j + 16] = d * (float)((b[2 + j] >> 4) - 8);
            }
        }
        return true;
    case EMBER_TYPE_Q4_1: case EMBER_TYPE_Q5_0: case EMBER_TYPE_Q5_1:
    case EMBER_TYPE_Q4_K: case EMBER_TYPE_Q5_K: case EMBER_TYPE_Q6_K:
        dequantize_unpacked(type, b, n, dst);
        return true;
    default: return false;
    }
}

int em_unpack_blocks(uint32_t type, const uint8_t *b, em_block32 out[8]) {
    int q[32];
    switch (type) {
    case EMBER_TYPE_Q8_0:
        for (int j = 0; j < 32; j++) out->q[j] = (int8_t)b[2 + j];
        out->a[0] = out->a[1] = em_load_f16(b);
        out->c = 0;
        return 1;
    case EMBER_TYPE_Q4_0:
    case EMBER_TYPE_Q4_1: {
        bool offset = type == EMBER_TYPE_Q4_1;
        const uint8_t *qs = b + (offset ? 4 : 2);
        for (int j = 0; j < 16; j++) {
            out->q[j] = (int8_t)((qs[j] & 15) - (offset ? 0 : 8));
            out->q[j + 16] = (int8_t)((qs[j] >> 4) - (offset ? 0 : 8));
        }
        out->a[0] = out->a[1] = em_load_f16(b);
        out->c = offset ? em_load_f16(b + 2) : 0.0f;
        return 1;
    }
    case EMBER_TYPE_Q5_0:
    case EMBER_TYPE_Q5_1: {
        bool offset = type == EMBER_TYPE_Q5_1;
        get_q5(b + (offset ? 4 : 2), b + (offset ? 8 : 6), q);
        for (int j = 0; j < 32; j++) out->q[j] = (int8_t)(q[j] - (offset ? 0 : 16));
        out->a[0] = out->a[1] = em_load_f16(b);
        out->c = offset ? em_load_f16(b + 2) : 0.0f;
        return 1;
    }
    case EMBER_TYPE_Q4_K: case EMBER_TYPE_Q5_K: case EMBER_TYPE_Q6_K:
        em_unpack_superblock(type, b, out);
        return 8;
    default: return 0;
    }
}

size_t em_unit_bytes(uint32_t type) {
    const em_type_info *ti = em_type_info_get(type);
    return ti ? ti->size : 0;
}
