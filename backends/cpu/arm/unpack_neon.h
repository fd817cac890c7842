/* Weight blocks to signed bytes in NEON registers, shared by the NEON and
 * dotprod kernels (static inline: each file compiles it with its own
 * flags). The integer dot of 16 weights and the activations' two planes
 * is the only part that differs between them (half_dot, defined by the
 * including file before this header: per lane, 256 sum(q hi) + sum(q lo)
 * over its share of the 16).
 *
 * A unit is one block of 32 (Q8_0, Q4_0) or a K-quant super-block of 8:
 * per block 32 values q (two int8x16), the scales of its halves (a0 for
 * values 0-15, a1 for 16-31) and an offset c: w = a q + c. */
#ifndef EMBER_CPU_ARM_UNPACK_NEON_H
#define EMBER_CPU_ARM_UNPACK_NEON_H

#include <arm_neon.h>
#include <string.h>

#include "../../../lib/quant.h"

/* F16 to F32 by the FP unit (em_load_f16 is portable C) */
static inline float f16_at(const uint8_t *p) {
    float16_t h;
    memcpy(&h, p, 2);
    return (float)h;
}

typedef struct arm_unit {
    int8x16_t q[8][2];
    float a0[8], a1[8], c[8];
} arm_unit;

static inline int unpack_q8_0(const uint8_t *b, arm_unit *u) {
    u->q[0][0] = vld1q_s8((const int8_t *)(b + 2));
    u->q[0][1] = vld1q_s8((const int8_t *)(b + 18));
    u->a0[0] = u->a1[0] = f16_at(b);
    u->c[0] = 0;
    return 1;
}

/* element j in the low nibble of byte j, j + 16 in the high one; minus 8 */
static inline int unpack_q4_0(const uint8_t *b, arm_unit *u) {
    uint8x16_t raw = vld1q_u8(b + 2);
    const int8x16_t eight = vdupq_n_s8(8);
    u->q[0][0] = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(15))), eight);
    u->q[0][1] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), eight);
    u->a0[0] = u->a1[0] = f16_at(b);
    u->c[0] = 0;
    return 1;
}

/* Q4_K: d, dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles
 * (32 bytes per pair of blocks: low nibbles block 2c, high ones 2c + 1) */
static inline int unpack_q4_k(const uint8_t *b, arm_unit *u) {
    float d = f16_at(b), dmin = f16_at(b + 2);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        em_k_scale_min(b + 4, j, &sc, &m);
        u->a0[j] = u->a1[j] = d * (float)sc;
        u->c[j] = -(dmin * (float)m);
    }
    const uint8x16_t low4 = vdupq_n_u8(15);
    for (int c = 0; c < 4; c++)
        for (int h = 0; h < 2; h++) {
            uint8x16_t raw = vld1q_u8(b + 16 + 32 * c + 16 * h);
            u->q[2 * c][h] = vreinterpretq_s8_u8(vandq_u8(raw, low4));
            u->q[2 * c + 1][h] = vreinterpretq_s8_u8(vshrq_n_u8(raw, 4));
        }
    return 8;
}

/* Q6_K: 128 bytes of low nibbles, 64 of 2-bit tops, 16 int8 scales (one
 * per 16 values), d last; q = (nibble | top << 4) - 32. Per half h of
 * 128 values, block 4h + p takes nibbles of ql bytes [64h + 32 (p & 1),
 * +32) (low nibbles for p < 2, high for p >= 2) and bits 2p of qh bytes
 * [128 + 32h, +32). */
static inline int unpack_q6_k(const uint8_t *b, arm_unit *u) {
    float d = f16_at(b + 208);
    const int8_t *sc = (const int8_t *)(b + 192);
    const uint8x16_t low4 = vdupq_n_u8(15), three = vdupq_n_u8(3);
    const int8x16_t off = vdupq_n_s8(32);
    for (int h = 0; h < 2; h++)
        for (int s = 0; s < 2; s++) { /* 16-byte halves of each 32-byte run */
            uint8x16_t ql0 = vld1q_u8(b + 64 * h + 16 * s);
            uint8x16_t ql1 = vld1q_u8(b + 64 * h + 32 + 16 * s);
            uint8x16_t qh = vld1q_u8(b + 128 + 32 * h + 16 * s);
            const uint8x16_t nib[4] = { vandq_u8(ql0, low4), vandq_u8(ql1, low4),
                                        vshrq_n_u8(ql0, 4), vshrq_n_u8(ql1, 4) };
            const uint8x16_t top[4] = { vandq_u8(qh, three), vandq_u8(vshrq_n_u8(qh, 2), three),
                                        vandq_u8(vshrq_n_u8(qh, 4), three), vshrq_n_u8(qh, 6) };
            for (int p = 0; p < 4; p++)
                u->q[4 * h + p][s] = vsubq_s8(
                    vreinterpretq_s8_u8(vorrq_u8(nib[p], vshlq_n_u8(top[p], 4))), off);
        }
    for (int k = 0; k < 8; k++) {
        u->a0[k] = d * (float)sc[2 * k];
        u->a1[k] = d * (float)sc[2 * k + 1];
        u->c[k] = 0;
    }
    return 8;
}

/* The dot of a row with quantized activations: per half block the
 * integer sums, exact in 32-bit lanes (|q| <= 128, |256 hi + lo| < 2^15,
 * 16 values: < 2^26 per half), converted and scaled in float lanes; the
 * offsets c (AFFINE types) times the activations' block sums apart.
 * SPLIT: the halves have their own scales (Q6_K). */
#define ARM_AFFINE 1
#define ARM_SPLIT 2
#define EM_ARM_DEFINE_Q8X_DOT(T, unit_bytes, flags, suffix)                                    \
    float em_dot_##T##_q8x_##suffix(int64_t n, const void *w, em_q8x_row x) {                  \
        const uint8_t *b = w;                                                                  \
        float32x4_t acc = vdupq_n_f32(0);                                                      \
        float cterm = 0;                                                                       \
        arm_unit u;                                                                            \
        for (int64_t i = 0; i < n / 32; b += (unit_bytes)) {                                   \
            int nb = unpack_##T(b, &u);                                                        \
            for (int k = 0; k < nb; k++, i++) {                                                \
                int32x4_t p0 = half_dot(u.q[k][0], x.q + i * 32, x.lo + i * 32);               \
                int32x4_t p1 = half_dot(u.q[k][1], x.q + i * 32 + 16, x.lo + i * 32 + 16);     \
                float xd = x.d[i];                                                             \
                if ((flags) & ARM_SPLIT) {                                                     \
                    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p0), u.a0[k] * xd);                   \
                    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p1), u.a1[k] * xd);                   \
                } else {                                                                       \
                    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(vaddq_s32(p0, p1)), u.a0[k] * xd);    \
                }                                                                              \
                if ((flags) & ARM_AFFINE) cterm += u.c[k] * xd * (float)x.s[i];                \
            }                                                                                  \
        }                                                                                      \
        return vaddvq_f32(acc) + cterm;                                                        \
    }

#endif
