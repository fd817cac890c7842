/* K-quants (llama.cpp's layouts): super-blocks of 256 weights with an fp16
 * scale, sub-blocks with their own small integer scales.
 *  Q4_K (144 bytes): d, dmin (fp16), 12 bytes of 6-bit scales and mins for
 *        8 sub-blocks of 32, then 128 bytes of nibbles: for chunk c of 64
 *        weights, byte 32c + l holds weight 64c + l (low) and 64c + 32 + l
 *        (high). w = d sc q - dmin m, q in [0, 15].
 *  Q5_K (176 bytes): as Q4_K with a fifth bit per weight: 32 bytes qh after
 *        the scales, bit 2c of qh[l] for weight 64c + l, bit 2c + 1 for
 *        weight 64c + 32 + l. q in [0, 31].
 *  Q6_K (210 bytes): ql[128], qh[64], int8 scales[16] (one per 16 weights),
 *        d (fp16) last. Per half h of 128 weights, l < 32: ql[64h + l] holds
 *        weights 128h + l (low) and 128h + 64 + l (high), ql[64h + 32 + l]
 *        weights 128h + 32 + l and 128h + 96 + l; qh[32h + l] holds their
 *        top two bits in that order (bits 0-1, 2-3, 4-5, 6-7).
 *        w = d sc (q - 32), q in [0, 63].
 * Our quantizers are our own: per sub-block a weighted least-squares fit
 * over a range of candidate scales, then the sub-block scales quantized
 * against the super-block's, then the weights rounded again with the
 * scales actually stored. */
#include <math.h>
#include <string.h>

#include "quant.h"
#include "util.h"

#define QK 256

static void scale_min_put(uint8_t *s, const int *sc, const int *m) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        s[j + 4] = (uint8_t)(m[j] | (m[j + 4] >> 4) << 6);
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | (m[j + 4] & 15) << 4);
    }
}

/* Q4_K/Q5_K value of weight i (0..255) of a super-block */
static int q45_value(uint32_t type, const uint8_t *b, int i) {
    int c = i / 64, l = i % 32, high = (i % 64) >= 32;
    const uint8_t *qs = b + (type == EMBER_TYPE_Q4_K ? 16 : 48);
    int q = high ? qs[32 * c + l] >> 4 : qs[32 * c + l] & 15;
    if (type == EMBER_TYPE_Q5_K) q |= (b[16 + l] >> (2 * c + high) & 1) << 4;
    return q;
}

static int q6_value(const uint8_t *b, int i) {
    int h = i / 128, r = i % 128, l = r % 32, part = r / 32; /* part 0..3 */
    const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
    int lowbits = part & 1 ? ql[32 + l] : ql[l];
    lowbits = part >= 2 ? lowbits >> 4 : lowbits & 15;
    return lowbits | (qh[l] >> (2 * part) & 3) << 4;
}

void em_unpack_superblock(uint32_t type, const uint8_t *b, em_block32 out[8]) {
    if (type == EMBER_TYPE_Q6_K) {
        float d = em_load_f16(b + 208);
        const int8_t *sc = (const int8_t *)(b + 192);
        for (int k = 0; k < 8; k++) {
            for (int j = 0; j < 32; j++) out[k].q[j] = (int8_t)(q6_value(b, 32 * k + j) - 32);
            out[k].a[0] = d * (float)sc[2 * k];
            out[k].a[1] = d * (float)sc[2 * k + 1];
            out[k].c = 0;
        }
        return;
    }
    float d = em_load_f16(b), dmin = em_load_f16(b + 2);
    for (int k = 0; k < 8; k++) {
        int sc, m;
        em_k_scale_min(b + 4, k, &sc, &m);
        for (int j = 0; j < 32; j++) out[k].q[j] = (int8_t)q45_value(type, b, 32 * k + j);
        out[k].a[0] = out[k].a[1] = d * (float)sc;
        out[k].c = -(dmin * (float)m);
    }
}

/* ---- quantizers ---- */

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Round to nearest even for |v| < 2^22 without a libm call (baseline
 * x86-64 has no rounding instruction, and these loops are the quantizer's
 * whole cost): adding 1.5 * 2^23 leaves the integer part in the mantissa. */
static inline float round_small(float v) {
    const float magic = 12582912.0f;
    return (v + magic) - magic;
}

/* comparisons, not fminf/fmaxf: those are libm calls where NaN rules apply */
static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

/* x ~ s L + m over n weights with L in [0, nmax] and m <= 0, weights w:
 * tries candidate scales around (max - min) / nmax, solves the weighted
 * least squares for (s, m) given each rounding, keeps the fit with the
 * least weighted squared error (from the sums, one pass per candidate). */
static void fit_affine_ls(const float *x, const float *w, int n, int nmax, float *s_out,
                          float *m_out) {
    float lo = 0, hi = x[0], sw = 0, sx = 0, sxx = 0;
    for (int i = 0; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
        sw += w[i];
        sx += w[i] * x[i];
        sxx += w[i] * x[i] * x[i];
    }
    *s_out = 0;
    *m_out = lo;
    if (hi <= lo) return;
    float best = INFINITY;
    for (int step = -10; step <= 10; step++) {
        float iscale = ((float)nmax + 0.1f * (float)step) / (hi - lo);
        float sl = 0, sll = 0, slx = 0;
        for (int i = 0; i < n; i++) {
            float L = clampf(round_small(iscale * (x[i] - lo)), 0.0f, (float)nmax);
            sl += w[i] * L;
            sll += w[i] * L * L;
            slx += w[i] * L * x[i];
        }
        float det = sw * sll - sl * sl, s, m;
        if (det <= 0) continue;
        s = (sw * slx - sl * sx) / det;
        m = (sll * sx - sl * slx) / det;
        if (m > 0) { /* the stored min is subtracted, so it cannot be positive */
            m = 0;
            s = slx / sll;
        }
        if (s <= 0) continue;
        /* the error with the weights rounded again for the fitted s, m */
        float err = 0, is = 1.0f / s;
        for (int i = 0; i < n; i++) {
            float L = clampf(round_small((x[i] - m) * is), 0.0f, (float)nmax), e = s * L + m - x[i];
            err += w[i] * e * e;
        }
        if (err < best) {
            best = err;
            *s_out = s;
            *m_out = m;
        }
    }
}

/* x ~ s L over n weights with L in [-nmax, nmax - 1]: candidate scales
 * around the extreme's, least squares for s per rounding, best kept
 * (error from the sums: sxx - slx^2 / sll). */
static float fit_symmetric_ls(const float *x, const float *w, int n, int nmax) {
    float amax = 0, ext = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            ext = x[i];
        }
    if (amax == 0) return 0;
    float best = -1, best_s = ext / (float)-nmax;
    for (int step = -10; step <= 10; step++) {
        float iscale = -((float)nmax + 0.1f * (float)step) / ext;
        float slx = 0, sll = 0;
        for (int i = 0; i < n; i++) {
            float L = clampf(round_small(iscale * x[i]), (float)-nmax, (float)(nmax - 1));
            slx += w[i] * L * x[i];
            sll += w[i] * L * L;
        }
        /* the error falls as slx^2 / sll grows */
        if (sll > 0 && slx * slx / sll > best) {
            best = slx * slx / sll;
            best_s = slx / sll;
        }
    }
    return best_s;
}

/* Importance of each weight: larger magnitudes matter more, but no weight
 * counts for nothing (the mean square keeps small ones in). */
static void importance(const float *x, float *w) {
    double ss = 0;
    for (int i = 0; i < QK; i++) ss += (double)x[i] * x[i];
    float mean = (float)(ss / QK);
    for (int i = 0; i < QK; i++) w[i] = mean + x[i] * x[i];
}

static void quant_q45k(uint32_t type, const float *x, uint8_t *b) {
    int nmax = type == EMBER_TYPE_Q4_K ? 15 : 31;
    float w[QK], s[8], m[8], smax = 0, mmax = 0;
    importance(x, w);
    for (int k = 0; k < 8; k++) {
        fit_affine_ls(x + 32 * k, w + 32 * k, 32, nmax, &s[k], &m[k]);
        smax = fmaxf(smax, s[k]);
        mmax = fmaxf(mmax, -m[k]);
    }
    em_store_f16(b, smax / 63.0f);
    em_store_f16(b + 2, mmax / 63.0f);
    float d = em_load_f16(b), dmin = em_load_f16(b + 2);
    int sc[8], mn[8];
    for (int k = 0; k < 8; k++) {
        sc[k] = d > 0 ? clampi((int)lrintf(s[k] / d), 0, 63) : 0;
        mn[k] = dmin > 0 ? clampi((int)lrintf(-m[k] / dmin), 0, 63) : 0;
    }
    scale_min_put(b + 4, sc, mn);
    uint8_t *qh = b + 16, *qs = b + (type == EMBER_TYPE_Q4_K ? 16 : 48);
    if (type == EMBER_TYPE_Q5_K) memset(qh, 0, 32);
    memset(qs, 0, 128);
    for (int i = 0; i < QK; i++) {
        int k = i / 32, c = i / 64, l = i % 32, high = (i % 64) >= 32;
        float step = d * (float)sc[k], off = dmin * (float)mn[k];
        int L = step > 0 ? clampi((int)lrintf((x[i] + off) / step), 0, nmax) : 0;
        qs[32 * c + l] |= (uint8_t)((L & 15) << (4 * high));
        if (type == EMBER_TYPE_Q5_K) qh[l] |= (uint8_t)((L >> 4) << (2 * c + high));
    }
}

static void quant_q6k(const float *x, uint8_t *b) {
    float w[QK], s[16], smax = 0, sext = 0;
    importance(x, w);
    for (int k = 0; k < 16; k++) {
        s[k] = fit_symmetric_ls(x + 16 * k, w + 16 * k, 16, 32);
        if (fabsf(s[k]) > smax) {
            smax = fabsf(s[k]);
            sext = s[k];
        }
    }
    /* the extreme scale maps to -128, so its sign carries no waste */
    em_store_f16(b + 208, sext / -128.0f);
    float d = em_load_f16(b + 208);
    int8_t *sc = (int8_t *)(b + 192);
    for (int k = 0; k < 16; k++) sc[k] = (int8_t)(d != 0 ? clampi((int)lrintf(s[k] / d), -128, 127) : 0);
    memset(b, 0, 192);
    for (int i = 0; i < QK; i++) {
        float step = d * (float)sc[i / 16];
        int L = step != 0 ? clampi((int)lrintf(x[i] / step), -32, 31) + 32 : 32;
        int h = i / 128, r = i % 128, l = r % 32, part = r / 32;
        uint8_t *ql = b + 64 * h + (part & 1 ? 32 : 0), *qh = b + 128 + 32 * h;
        ql[l] |= (uint8_t)((L & 15) << (part >= 2 ? 4 : 0));
        qh[l] |= (uint8_t)((L >> 4) << (2 * part));
    }
}

bool em_quantize_row_k(uint32_t type, const float *src, int64_t n, void *dst) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < n; i += QK, b += em_unit_bytes(type)) {
        if (type == EMBER_TYPE_Q6_K) quant_q6k(src + i, b);
        else quant_q45k(type, src + i, b);
    }
    return true;
}
