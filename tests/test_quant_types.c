/* The block types beyond Q8_0/Q4_0: Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K.
 *  - Layout: random blocks decoded by the library equal the decoders below,
 *    written from llama.cpp's block definitions in their own loop shapes
 *    (so a swapped nibble or bit in the library shows up here).
 *  - Round trips: our quantizers' errors within per-type bounds, and each
 *    finer type better than the coarser one on the same data. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "lib/quant.h"
#include "lib/util.h"

static uint64_t rng = 0xC0FFEE1234567ull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float frand(void) { return (float)(rnd() >> 8) / 16777216.0f * 2 - 1; }

static float h2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return em_f16_to_f32(h);
}

static void put_half(uint8_t *p, float f) {
    uint16_t h = em_f32_to_f16(f);
    memcpy(p, &h, 2);
}

/* ---- decoders from the block definitions ---- */

static void spec_q4_1(const uint8_t *b, float *y) { /* d, m, qs[16] */
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(b[4 + j] & 0x0F) * h2f(b) + h2f(b + 2);
        y[j + 16] = (float)(b[4 + j] >> 4) * h2f(b) + h2f(b + 2);
    }
}

static void spec_q5(const uint8_t *b, float *y, int with_min) { /* d, [m], qh[4], qs[16] */
    const uint8_t *qh = b + (with_min ? 4 : 2), *qs = qh + 4;
    uint32_t h = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
    for (int j = 0; j < 16; j++) {
        int x0 = (qs[j] & 0x0F) | (int)(((h >> j) << 4) & 0x10);
        int x1 = (qs[j] >> 4) | (int)((h >> (j + 12)) & 0x10);
        if (with_min) {
            y[j] = (float)x0 * h2f(b) + h2f(b + 2);
            y[j + 16] = (float)x1 * h2f(b) + h2f(b + 2);
        } else {
            y[j] = (float)(x0 - 16) * h2f(b);
            y[j + 16] = (float)(x1 - 16) * h2f(b);
        }
    }
}

static void spec_scale_min(int j, const uint8_t *q, int *d, int *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

/* Q4_K / Q5_K: d, dmin, scales[12], [qh[32]], qs[128] */
static void spec_q45_k(const uint8_t *b, float *y, int five) {
    float d = h2f(b), dmin = h2f(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *q = b + (five ? 48 : 16);
    int is = 0;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < 256; j += 64) {
        int sc, m;
        spec_scale_min(is + 0, scales, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        spec_scale_min(is + 1, scales, &sc, &m);
        float d2 = d * (float)sc, m2 = dmin * (float)m;
        for (int l = 0; l < 32; ++l)
            *y++ = d1 * (float)((q[l] & 0xF) + (five && (qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; ++l)
            *y++ = d2 * (float)((q[l] >> 4) + (five && (qh[l] & u2) ? 16 : 0)) - m2;
        q += 32;
        is += 2;
        u1 = (uint8_t)(u1 << 2);
        u2 = (uint8_t)(u2 << 2);
    }
}

/* Q6_K: ql[128], qh[64], scales[16], d */
static void spec_q6_k(const uint8_t *b, float *y) {
    float d = h2f(b + 208);
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    for (int n = 0; n < 256; n += 128) {
        for (int l = 0; l < 32; ++l) {
            int is = l / 16;
            int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l + 0] = d * (float)sc[is + 0] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

typedef struct layout {
    uint32_t type;
    const char *name;
    int elems, bytes, half[2];
} layout;

static const layout layouts[] = {
    { EMBER_TYPE_Q4_1, "q4_1", 32, 20, { 0, 2 } },    { EMBER_TYPE_Q5_0, "q5_0", 32, 22, { 0, -1 } },
    { EMBER_TYPE_Q5_1, "q5_1", 32, 24, { 0, 2 } },    { EMBER_TYPE_Q4_K, "q4_K", 256, 144, { 0, 2 } },
    { EMBER_TYPE_Q5_K, "q5_K", 256, 176, { 0, 2 } },  { EMBER_TYPE_Q6_K, "q6_K", 256, 210, { 208, -1 } },
};

static void spec_decode(uint32_t type, const uint8_t *b, float *y) {
    switch (type) {
    case EMBER_TYPE_Q4_1: spec_q4_1(b, y); break;
    case EMBER_TYPE_Q5_0: spec_q5(b, y, 0); break;
    case EMBER_TYPE_Q5_1: spec_q5(b, y, 1); break;
    case EMBER_TYPE_Q4_K: spec_q45_k(b, y, 0); break;
    case EMBER_TYPE_Q5_K: spec_q45_k(b, y, 1); break;
    case EMBER_TYPE_Q6_K: spec_q6_k(b, y); break;
    default: fail();
    }
}

static void test_layouts(void **state) {
    (void)state;
    uint8_t b[256];
    float got[256], want[256];
    for (size_t k = 0; k < sizeof layouts / sizeof layouts[0]; k++) {
        const layout *L = &layouts[k];
        assert_int_equal(ember_type_row_size(L->type, L->elems * 3), (size_t)L->bytes * 3);
        assert_int_equal(ember_type_row_size(L->type, L->elems + 16), 0);
        assert_string_equal(ember_type_name((int)L->type), L->name);
        for (int rep = 0; rep < 200; rep++) {
            for (int j = 0; j < L->bytes; j++) b[j] = (uint8_t)rnd();
            for (int h = 0; h < 2; h++)
                if (L->half[h] >= 0) put_half(b + L->half[h], 0.01f + 0.1f * frand());
            assert_true(em_dequantize_row(L->type, b, L->elems, got));
            spec_decode(L->type, b, want);
            for (int j = 0; j < L->elems; j++) {
                if (fabsf(got[j] - want[j]) > 1e-6f * (1 + fabsf(want[j])))
                    print_error("%s element %d: %g, llama.cpp's definition %g\n", L->name, j, got[j], want[j]);
                assert_true(fabsf(got[j] - want[j]) <= 1e-6f * (1 + fabsf(want[j])));
            }
        }
    }
}

/* Weights like a trained layer's: roughly normal, a few outliers. */
static void weights_like(float *x, int n) {
    for (int i = 0; i < n; i++) {
        float g = 0;
        for (int k = 0; k < 4; k++) g += frand();
        x[i] = g * 0.02f * (rnd() % 211 == 0 ? 8.0f : 1.0f);
    }
}

static double round_trip(uint32_t type, const float *x, int n, float *back) {
    static uint8_t q[65536 * 2];
    size_t need = ember_type_row_size(type, n);
    assert_true(need > 0 && need <= sizeof q);
    assert_int_equal(ember_quantize_row(type, x, n, q, need), EMBER_OK);
    assert_true(em_dequantize_row(type, q, n, back));
    return rel_l2(back, x, (size_t)n);
}

static void test_round_trips(void **state) {
    (void)state;
    enum { N = 65536 };
    static float x[N], back[N];
    weights_like(x, N);
    const uint32_t types[] = { EMBER_TYPE_Q4_0, EMBER_TYPE_Q4_1, EMBER_TYPE_Q5_0, EMBER_TYPE_Q5_1,
                               EMBER_TYPE_Q8_0, EMBER_TYPE_Q4_K, EMBER_TYPE_Q5_K, EMBER_TYPE_Q6_K };
    /* bounds: a uniform quantizer of b bits over a normal block's range
     * gives about 2^-b * 2; a third more allowed */
    const double bound[] = { 0.14, 0.12, 0.07, 0.06, 0.009, 0.11, 0.055, 0.028 };
    double err[8];
    for (int k = 0; k < 8; k++) {
        err[k] = round_trip(types[k], x, N, back);
        print_message("%-5s relative RMS error %.4f (bound %.3f)\n", ember_type_name((int)types[k]),
                      err[k], bound[k]);
        assert_true(err[k] <= bound[k]);
    }
    assert_true(err[1] < err[0]); /* Q4_1 < Q4_0: the min helps */
    assert_true(err[5] < err[1]); /* Q4_K < Q4_1: fitted scales */
    assert_true(err[6] < err[3]); /* Q5_K < Q5_1 */
    assert_true(err[7] < err[6]); /* Q6_K < Q5_K */
    /* per element, Q4_1/Q5_1 within half a step of their block's range
     * plus the fp16 rounding of the scale and min */
    for (int k = 0; k < 2; k++) {
        uint32_t ty = k ? EMBER_TYPE_Q5_1 : EMBER_TYPE_Q4_1;
        int nmax = k ? 31 : 15;
        round_trip(ty, x, N, back);
        for (int b = 0; b < N / 32; b++) {
            float lo = x[b * 32], hi = x[b * 32];
            for (int j = 0; j < 32; j++) {
                lo = fminf(lo, x[b * 32 + j]);
                hi = fmaxf(hi, x[b * 32 + j]);
            }
            double step = (hi - lo) / nmax, slack = (fabs(lo) + nmax * step) * 0x1p-10;
            for (int j = 0; j < 32; j++)
                assert_true(fabs((double)back[b * 32 + j] - x[b * 32 + j]) <= 0.5 * step + slack);
        }
    }
    /* zeros and a constant row come back exactly */
    static float z[512];
    for (int k = 0; k < 8; k++) {
        memset(z, 0, sizeof z);
        round_trip(types[k], z, 512, back);
        for (int i = 0; i < 512; i++) assert_true(back[i] == 0.0f);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layouts),
        cmocka_unit_test(test_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
