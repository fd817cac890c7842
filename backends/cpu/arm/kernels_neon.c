/* NEON kernels (baseline AArch64): F32 and F16 dot products, the F16 to
 * F32 conversion, the activations' 8-bit quantization and the integer
 * dot products of Q8_0, Q4_0, Q4_K and Q6_K rows with widening multiplies
 * (SMULL/SMLAL, then pairwise adds). */
#include <arm_neon.h>

#include "arm.h"

/* widening multiplies (SMULL/SMLAL2: two products per int16 lane, at
 * most 2 * 128 * 127), then pairwise adds into int32 lanes */
static inline int32x4_t half_dot(int8x16_t q, const int8_t *hi, const int8_t *lo) {
    int8x16_t h = vld1q_s8(hi), l = vld1q_s8(lo);
    int16x8_t ph = vmlal_high_s8(vmull_s8(vget_low_s8(q), vget_low_s8(h)), q, h);
    int16x8_t pl = vmlal_high_s8(vmull_s8(vget_low_s8(q), vget_low_s8(l)), q, l);
    return vpadalq_s16(vshlq_n_s32(vpaddlq_s16(ph), 8), pl);
}

#include "unpack_neon.h"

EM_ARM_DEFINE_Q8X_DOT(q8_0, 34, 0, neon)
EM_ARM_DEFINE_Q8X_DOT(q4_0, 18, 0, neon)
EM_ARM_DEFINE_Q8X_DOT(q4_k, 144, ARM_AFFINE, neon)
EM_ARM_DEFINE_Q8X_DOT(q6_k, 210, ARM_SPLIT, neon)

float em_dot_f32_neon(int64_t n, const void *w, const float *x) {
    const float *a = w;
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(x + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(x + i + 4));
        s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), vld1q_f32(x + i + 8));
        s3 = vfmaq_f32(s3, vld1q_f32(a + i + 12), vld1q_f32(x + i + 12));
    }
    for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(x + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; i++) s += a[i] * x[i];
    return s;
}

float em_dot_f16_neon(int64_t n, const void *w, const float *x) {
    const float16_t *a = w;
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        float16x8_t h0 = vld1q_f16(a + i), h1 = vld1q_f16(a + i + 8);
        s0 = vfmaq_f32(s0, vcvt_f32_f16(vget_low_f16(h0)), vld1q_f32(x + i));
        s1 = vfmaq_f32(s1, vcvt_high_f32_f16(h0), vld1q_f32(x + i + 4));
        s2 = vfmaq_f32(s2, vcvt_f32_f16(vget_low_f16(h1)), vld1q_f32(x + i + 8));
        s3 = vfmaq_f32(s3, vcvt_high_f32_f16(h1), vld1q_f32(x + i + 12));
    }
    for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, vcvt_f32_f16(vld1_f16(a + i)), vld1q_f32(x + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; i++) s += (float)a[i] * x[i];
    return s;
}

void em_f16_to_f32_neon(int64_t n, const void *src, float *dst) {
    const float16_t *a = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vld1q_f16(a + i);
        vst1q_f32(dst + i, vcvt_f32_f16(vget_low_f16(h)));
        vst1q_f32(dst + i + 4, vcvt_high_f32_f16(h));
    }
    for (; i < n; i++) dst[i] = (float)a[i];
}

/* The reference's arithmetic lane by lane: u = x / e as x * (1 / e),
 * nearest-even (FRINTN), the low plane from (u - h) * 256 clamped; every
 * step an exact IEEE operation, so the planes equal the reference's. */
void em_quant_q8x_neon(int64_t n, const float *x, int8_t *hi, int8_t *lo, float *d, int32_t *s) {
    const float32x4_t c256 = vdupq_n_f32(256.0f), cmax = vdupq_n_f32(127.0f),
                      cmin = vdupq_n_f32(-127.0f);
    for (int64_t b = 0; b < n / 32; b++) {
        const float *v = x + b * 32;
        float32x4_t xv[8], m = vdupq_n_f32(0);
        for (int j = 0; j < 8; j++) {
            xv[j] = vld1q_f32(v + 4 * j);
            m = vmaxq_f32(m, vabsq_f32(xv[j]));
        }
        float e = vmaxvq_f32(m) / 127.0f, ie = e != 0.0f ? 1.0f / e : 0.0f;
        int32x4_t sum = vdupq_n_s32(0);
        int16x8_t h16[4], l16[4];
        for (int j = 0; j < 8; j++) {
            float32x4_t u = vmulq_n_f32(xv[j], ie), h = vrndnq_f32(u);
            float32x4_t l = vminq_f32(vmaxq_f32(vrndnq_f32(vmulq_f32(vsubq_f32(u, h), c256)), cmin),
                                      cmax);
            int32x4_t hi32 = vcvtq_s32_f32(h), lo32 = vcvtq_s32_f32(l);
            sum = vaddq_s32(sum, vaddq_s32(vshlq_n_s32(hi32, 8), lo32));
            if (j & 1) {
                h16[j / 2] = vcombine_s16(vget_low_s16(h16[j / 2]), vmovn_s32(hi32));
                l16[j / 2] = vcombine_s16(vget_low_s16(l16[j / 2]), vmovn_s32(lo32));
            } else {
                h16[j / 2] = vcombine_s16(vmovn_s32(hi32), vmovn_s32(hi32));
                l16[j / 2] = vcombine_s16(vmovn_s32(lo32), vmovn_s32(lo32));
            }
        }
        for (int j = 0; j < 2; j++) {
            vst1q_s8(hi + b * 32 + 16 * j, vcombine_s8(vmovn_s16(h16[2 * j]), vmovn_s16(h16[2 * j + 1])));
            vst1q_s8(lo + b * 32 + 16 * j, vcombine_s8(vmovn_s16(l16[2 * j]), vmovn_s16(l16[2 * j + 1])));
        }
        d[b] = e / 256.0f;
        s[b] = vaddvq_s32(sum);
    }
}
