/* Plain C reference kernels: the definition of every CPU kernel's result.
 * SIMD variants are checked against these (tests/test_kernels.c). */
#include <math.h>
#include <string.h>

#include "../../../lib/quant.h"
#include "../../../lib/util.h"
#include "../dsp.h"

static float dot_f32(int64_t n, const void *w, const float *x) {
    const float *a = w;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * x[i];
    return s;
}

static float dot_f16(int64_t n, const void *w, const float *x) {
    const uint16_t *a = w;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += em_f16_to_f32(a[i]) * x[i];
    return s;
}

static float dot_bf16(int64_t n, const void *w, const float *x) {
    const uint16_t *a = w;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += em_bf16_to_f32(a[i]) * x[i];
    return s;
}

/* Q8_0: blocks of 32 int8 with an fp16 scale first (34 bytes). */
static float dot_q8_0(int64_t n, const void *w, const float *x) {
    const uint8_t *b = w;
    float s = 0;
    for (int64_t i = 0; i < n; i += 32, b += 34) {
        uint16_t h;
        memcpy(&h, b, 2);
        const int8_t *q = (const int8_t *)(b + 2);
        float bs = 0;
        for (int j = 0; j < 32; j++) bs += (float)q[j] * x[i + j];
        s += em_f16_to_f32(h) * bs;
    }
    return s;
}

/* Q4_0: fp16 scale, then 16 bytes: element j in the low nibble of byte j,
 * element j+16 in the high nibble; value = (nibble - 8) * scale. */
static float dot_q4_0(int64_t n, const void *w, const float *x) {
    const uint8_t *b = w;
    float s = 0;
    for (int64_t i = 0; i < n; i += 32, b += 18) {
        uint16_t h;
        memcpy(&h, b, 2);
        float bs = 0;
        for (int j = 0; j < 16; j++) {
            bs += (float)((b[2 + j] & 15) - 8) * x[i + j];
            bs += (float)((b[2 + j] >> 4) - 8) * x[i + j + 16];
        }
        s += em_f16_to_f32(h) * bs;
    }
    return s;
}

/* The other block types through their unpacked form (lib/quant.h):
 * per block of 32, a[j / 16] q[j] + c. */
static float dot_unpacked(uint32_t type, int64_t n, const void *w, const float *x) {
    const uint8_t *b = w;
    size_t unit = em_unit_bytes(type);
    em_block32 u[8];
    float s = 0;
    for (int64_t i = 0; i < n; b += unit) {
        int nb = em_unpack_blocks(type, b, u);
        for (int k = 0; k < nb; k++, i += 32) {
            float s0 = 0, s1 = 0, sx = 0;
            for (int j = 0; j < 16; j++) {
                s0 += (float)u[k].q[j] * x[i + j];
                s1 += (float)u[k].q[j + 16] * x[i + j + 16];
            }
            for (int j = 0; j < 32; j++) sx += x[i + j];
            s += u[k].a[0] * s0 + u[k].a[1] * s1 + u[k].c * sx;
        }
    }
    return s;
}

#define DOT_UNPACKED(T, type)                                                \
    static float dot_##T(int64_t n, const void *w, const float *x) {        \
        return dot_unpacked(type, n, w, x);                                  \
    }
EM_UNPACKED_TYPES(DOT_UNPACKED)

/* Dequantization is the block formats' definition, kept in lib/quant.c
 * (the quantizer and ember_model_quantize use the same code). */
#define TO_F32(T, type)                                                      \
    static void T##_to_f32(int64_t n, const void *src, float *dst) {         \
        em_dequantize_row(type, src, n, dst);                                \
    }
TO_F32(f32, EMBER_TYPE_F32)
TO_F32(f16, EMBER_TYPE_F16)
TO_F32(bf16, EMBER_TYPE_BF16)
TO_F32(q8_0, EMBER_TYPE_Q8_0)
TO_F32(q4_0, EMBER_TYPE_Q4_0)
EM_UNPACKED_TYPES(TO_F32)

static void axpy(int64_t n, float a, const float *x, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void f32_to_f16(int64_t n, const float *src, void *dst) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = em_f32_to_f16(src[i]);
}

static void axpy_f16(int64_t n, float a, const void *x, float *y) {
    const uint16_t *h = x;
    for (int64_t i = 0; i < n; i++) y[i] += a * em_f16_to_f32(h[i]);
}

static void gemm_f32(int64_t kn, int64_t nr, int64_t nt, const float *w, int64_t ldw,
                     const float *xT, int64_t ldx, float *yT, int64_t ldy) {
    for (int64_t r = 0; r < nr; r++)
        for (int64_t t = 0; t < nt; t++) {
            float s = yT[r * ldy + t];
            for (int64_t k = 0; k < kn; k++) s += w[r * ldw + k] * xT[k * ldx + t];
            yT[r * ldy + t] = s;
        }
}

void em_gemm_bf16_ref(int64_t kn, int64_t nr, int64_t nt, const uint16_t *w, int64_t ldw,
                      const uint32_t *xT2, int64_t ldx, float *yT, int64_t ldy) {
    for (int64_t r = 0; r < nr; r++)
        for (int64_t t = 0; t < nt; t++) {
            float s = yT[r * ldy + t];
            for (int64_t p = 0; p < kn / 2; p++) {
                uint32_t x = xT2[p * ldx + t];
                s += em_bf16_to_f32(w[r * ldw + 2 * p]) * em_bf16_to_f32((uint16_t)x);
                s += em_bf16_to_f32(w[r * ldw + 2 * p + 1]) * em_bf16_to_f32((uint16_t)(x >> 16));
            }
            yT[r * ldy + t] = s;
        }
}

static void attn_chunk(int64_t D, int64_t Dv, int64_t G, const float *q, int64_t ldq,
                       float scale, int n, const float *const *k, const float *const *v,
                       float *m, float *l, float *acc, int64_t lda) {
    for (int64_t g = 0; g < G; g++) {
        float s[EM_ATTN_CHUNK], bm = -INFINITY, *a = acc + g * lda;
        for (int i = 0; i < n; i++) {
            s[i] = dot_f32(D, k[i], q + g * ldq) * scale;
            bm = s[i] > bm ? s[i] : bm;
        }
        if (bm > m[g]) {
            float r = expf(m[g] - bm);
            l[g] *= r;
            for (int64_t e = 0; e < Dv; e++) a[e] *= r;
            m[g] = bm;
        }
        for (int i = 0; i < n; i++) {
            float w = expf(s[i] - m[g]);
            l[g] += w;
            axpy(Dv, w, v[i], a);
        }
    }
}

static void swiglu(int64_t n, const float *g, const float *u, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void em_cpu_dsp_init_ref(em_cpu_dsp *c) {
    c->attn_chunk = attn_chunk;
    c->swiglu = swiglu;
    c->gemm_f32 = gemm_f32;
    c->f32_to_f16 = f32_to_f16;
    c->axpy_f16 = axpy_f16;
    c->dot[EMBER_TYPE_F32] = dot_f32;
    c->dot[EMBER_TYPE_F16] = dot_f16;
    c->dot[EMBER_TYPE_BF16] = dot_bf16;
    c->dot[EMBER_TYPE_Q8_0] = dot_q8_0;
    c->dot[EMBER_TYPE_Q4_0] = dot_q4_0;
    c->to_f32[EMBER_TYPE_F32] = f32_to_f32;
    c->to_f32[EMBER_TYPE_F16] = f16_to_f32;
    c->to_f32[EMBER_TYPE_BF16] = bf16_to_f32;
    c->to_f32[EMBER_TYPE_Q8_0] = q8_0_to_f32;
    c->to_f32[EMBER_TYPE_Q4_0] = q4_0_to_f32;
#define SET_UNPACKED(T, type)                                                \
    c->dot[type] = dot_##T;                                                  \
    c->to_f32[type] = T##_to_f32;
    EM_UNPACKED_TYPES(SET_UNPACKED)
#undef SET_UNPACKED
    c->axpy = axpy;
}
