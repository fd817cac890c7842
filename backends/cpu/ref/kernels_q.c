/* Reference kernels of the integer path for block-quantized weights:
 * activations quantized to 8-bit blocks of 32, then per block an exact
 * integer dot product times the weight and activation scales. The SIMD
 * variants (x86/kernels_q_*.c) must agree with these; the integer parts
 * exactly, the float sums to rounding. */
#include <math.h>
#include <string.h>

#include "../../../lib/util.h"
#include "../../../lib/quant.h"
#include "../dsp.h"

static void quant_q8x(int64_t n, const float *x, int8_t *hi, int8_t *lo, float *d, int32_t *s) {
    for (int64_t b = 0; b < n / 32; b++) {
        const float *v = x + b * 32;
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(v[j]));
        float e = amax / 127.0f, ie = e != 0.0f ? 1.0f / e : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < 32; j++) {
            float u = v[j] * ie, h = nearbyintf(u); /* nearest even, as SIMD rounds */
            float l = fminf(fmaxf(nearbyintf((u - h) * 256.0f), -127.0f), 127.0f);
            hi[b * 32 + j] = (int8_t)h;
            lo[b * 32 + j] = (int8_t)l;
            sum += 256 * (int32_t)h + (int32_t)l;
        }
        d[b] = e / 256.0f;
        s[b] = sum;
    }
}

/* sum of w * (256 hi + lo) over a block */
static int32_t block_dot(const int8_t *w, const int8_t *hi, const int8_t *lo) {
    int32_t a = 0, b = 0;
    for (int j = 0; j < 32; j++) {
        a += w[j] * hi[j];
        b += w[j] * lo[j];
    }
    return a * 256 + b;
}

/* Q8_0: fp16 scale, 32 int8 */
static float dot_q8_0(int64_t n, const void *w, em_q8x_row x) {
    const uint8_t *b = w;
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++, b += 34) {
        int32_t acc = block_dot((const int8_t *)(b + 2), x.q + i * 32, x.lo + i * 32);
        sum += em_load_f16(b) * x.d[i] * (float)acc;
    }
    return sum;
}

/* Q4_0: fp16 scale, 16 bytes of nibbles (element j low, j + 16 high), value
 * nibble - 8 */
static float dot_q4_0(int64_t n, const void *w, em_q8x_row x) {
    const uint8_t *b = w;
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++, b += 18) {
        int8_t qw[32];
        for (int j = 0; j < 16; j++) {
            qw[j] = (int8_t)((b[2 + j] & 15) - 8);
            qw[j + 16] = (int8_t)((b[2 + j] >> 4) - 8);
        }
        int32_t acc = block_dot(qw, x.q + i * 32, x.lo + i * 32);
        sum += em_load_f16(b) * x.d[i] * (float)acc;
    }
    return sum;
}

/* The other block types through their unpacked form: per block of 32,
 * a[0] times the integer dot of its first 16 weights, a[1] of the other
 * 16, plus c times the activations' integer sum, all times the block's
 * activation scale. The activations' integers are 256 hi + lo with two
 * planes (dot_q8x), hi alone with one (dot_q8, x.lo not read). The
 * integer parts in 64 bits (the SIMD kernels keep them in 32-bit lanes
 * and apply the scales in float). */
static float dot_unpacked(uint32_t type, int64_t n, const void *w, em_q8x_row x, bool one_plane) {
    const uint8_t *b = w;
    size_t unit = em_unit_bytes(type);
    em_block32 u[8];
    float sum = 0;
    for (int64_t i = 0; i < n / 32; b += unit) {
        int nb = em_unpack_blocks(type, b, u);
        for (int k = 0; k < nb; k++, i++) {
            int64_t part[2] = { 0, 0 };
            for (int j = 0; j < 32; j++) {
                int32_t xv = one_plane ? x.q[i * 32 + j] : 256 * x.q[i * 32 + j] + x.lo[i * 32 + j];
                part[j / 16] += (int64_t)u[k].q[j] * xv;
            }
            sum += x.d[i] * (u[k].a[0] * (float)part[0] + u[k].a[1] * (float)part[1] +
                             u[k].c * (float)x.s[i]);
        }
    }
    return sum;
}

float em_dot_q8_ref(uint32_t type, int64_t n, const void *w, em_q8x_row x) {
    return dot_unpacked(type, n, w, x, true);
}

#define DOT_UNPACKED(T, type)                                                \
    static float dot_##T(int64_t n, const void *w, em_q8x_row x) {           \
        return dot_unpacked(type, n, w, x, false);                           \
    }
EM_UNPACKED_TYPES(DOT_UNPACKED)

/* ---- the 8-bit GEMM (dsp.h) ---- */

void em_gemm_q8_ref(int64_t nb, int64_t nr, int64_t nt, const uint8_t *w, int64_t ldw,
                    const float *dw, int64_t ldb, int32_t o, const int8_t *xq, const float *dx,
                    const int32_t *xs, int64_t ldx, float *yT, int64_t ldy) {
    for (int64_t r = 0; r < nr; r++)
        for (int64_t t = 0; t < nt; t++) {
            float acc = yT[r * ldy + t];
            for (int64_t b = 0; b < nb; b++) {
                int32_t sum = 0;
                for (int k = 0; k < 32; k++)
                    sum += (int32_t)w[r * ldw + b * 32 + k] * xq[((b * 8 + k / 4) * ldx + t) * 4 + k % 4];
                acc += (float)(sum - o * xs[b * ldx + t]) * dw[r * ldb + b] * dx[b * ldx + t];
            }
            yT[r * ldy + t] = acc;
        }
}

/* Nearest, ties to even, for |v| < 2^22, without a libm call: adding and
 * removing 1.5 * 2^23 rounds in the FPU's default mode (C11 without
 * fast-math keeps both operations). */
static inline int round_even(float v) {
    return (int)((v + 12582912.0f) - 12582912.0f);
}

static void quant_q8_lanes(const float *x, int64_t ldx, int64_t T, int64_t b, int8_t *xq,
                           float *dx, int32_t *xs, int64_t ldq) {
    for (int64_t t = 0; t < T; t++) {
        const float *v = x + t * ldx + b * 32;
        float amax = 0;
        for (int j = 0; j < 32; j++) {
            float a = v[j] < 0 ? -v[j] : v[j];
            amax = a > amax ? a : amax;
        }
        float ie = amax != 0.0f ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < 32; j++) {
            int q = round_even(v[j] * ie);
            xq[((b * 8 + j / 4) * ldq + t) * 4 + j % 4] = (int8_t)q;
            sum += q;
        }
        dx[b * ldq + t] = em_f16_to_f32(em_f32_to_f16(amax / 127.0f));
        xs[b * ldq + t] = sum;
    }
}

static int32_t unpack_q8_0(int64_t nb, const void *src, uint8_t *w, float *dw) {
    const uint8_t *p = src;
    for (int64_t b = 0; b < nb; b++, p += 34) {
        for (int k = 0; k < 32; k++) w[b * 32 + k] = (uint8_t)(p[2 + k] ^ 0x80);
        dw[b] = em_load_f16(p);
    }
    return 128;
}

static int32_t unpack_q4_0(int64_t nb, const void *src, uint8_t *w, float *dw) {
    const uint8_t *p = src;
    for (int64_t b = 0; b < nb; b++, p += 18) {
        for (int k = 0; k < 16; k++) {
            w[b * 32 + k] = p[2 + k] & 15;
            w[b * 32 + k + 16] = p[2 + k] >> 4;
        }
        dw[b] = em_load_f16(p);
    }
    return 8;
}

void em_gemm_q8_few_ref(uint32_t type, int64_t nb, int64_t nr, int64_t nt, const void *w,
                        size_t ldw, const int8_t *xq, int64_t ldq, const float *dx,
                        const int32_t *xs, int64_t ldd, float *y, int64_t ldy) {
    em_unpack_q8_fn unpack = type == EMBER_TYPE_Q8_0 ? unpack_q8_0 : unpack_q4_0;
    uint8_t u[32];
    float dw;
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * ldw;
        for (int64_t t = 0; t < nt; t++) {
            float acc = 0;
            for (int64_t b = 0; b < nb; b++) {
                int32_t o = unpack(1, row + (size_t)b * (type == EMBER_TYPE_Q8_0 ? 34 : 18), u, &dw);
                int32_t sum = 0;
                for (int k = 0; k < 32; k++) sum += (int32_t)u[k] * xq[t * ldq + b * 32 + k];
                acc += (float)(sum - o * xs[t * ldd + b]) * dw * dx[t * ldd + b];
            }
            y[t * ldy + r] = acc;
        }
    }
}

void em_cpu_dsp_init_ref_q(em_cpu_dsp *c) {
    c->quant_q8_lanes = quant_q8_lanes;
    c->unpack_q8[EMBER_TYPE_Q8_0] = unpack_q8_0;
    c->unpack_q8[EMBER_TYPE_Q4_0] = unpack_q4_0;
    c->quant_q8x = quant_q8x;
    c->dot_q8x[EMBER_TYPE_Q8_0] = dot_q8_0;
    c->dot_q8x[EMBER_TYPE_Q4_0] = dot_q4_0;
#define SET_UNPACKED(T, type) c->dot_q8x[type] = dot_##T;
    EM_UNPACKED_TYPES(SET_UNPACKED)
#undef SET_UNPACKED
}
