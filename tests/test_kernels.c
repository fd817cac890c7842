/* checkasm-style: every kernel variant the CPU can run, against the C
 * reference, on random inputs of many lengths (tails included). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "backends/cpu/dsp.h"
#include "lib/util.h"

static uint64_t rng = 0x12345;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)(rng >> 40) / 16777216.0f * 2 - 1;
}

/* weights of type ty for n elements */
/* Q8_0/Q4_0 block scales: mostly 0.01-0.05, and every few blocks a
 * negative one, a zero and an fp16 subnormal (kernels that convert the
 * scales themselves must get all three right) */
static float block_scale(int i) {
    switch (i % 11) {
    case 3: return -(0.01f + 0.02f * (frand() + 1));
    case 6: return 0.0f;
    case 9: return 3e-6f * (frand() + 1.5f);
    default: return 0.01f + 0.02f * (frand() + 1);
    }
}

static void fill_weights(uint32_t ty, void *w, int n) {
    uint8_t *b = w;
    if (ty == EMBER_TYPE_F32) for (int i = 0; i < n; i++) ((float *)w)[i] = frand();
    if (ty == EMBER_TYPE_F16) for (int i = 0; i < n; i++) ((uint16_t *)w)[i] = em_f32_to_f16(frand());
    if (ty == EMBER_TYPE_BF16)
        for (int i = 0; i < n; i++) {
            float f = frand();
            uint32_t u;
            memcpy(&u, &f, 4);
            ((uint16_t *)w)[i] = (uint16_t)(u >> 16);
        }
    if (ty == EMBER_TYPE_Q8_0)
        for (int i = 0; i < n / 32; i++, b += 34) {
            uint16_t h = em_f32_to_f16(block_scale(i));
            memcpy(b, &h, 2);
            for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(rand() & 0xff);
        }
    if (ty == EMBER_TYPE_Q4_0)
        for (int i = 0; i < n / 32; i++, b += 18) {
            uint16_t h = em_f32_to_f16(block_scale(i));
            memcpy(b, &h, 2);
            for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(rand() & 0xff);
        }
    /* the other block types: random bytes, then sane fp16 scales where the
     * layout keeps them (every bit pattern of the rest is a valid block) */
    static const struct { uint32_t ty; int elems, bytes, half[2]; float scale; } lay[] = {
        { EMBER_TYPE_Q4_1, 32, 20, { 0, 2 }, 0.02f },  { EMBER_TYPE_Q5_0, 32, 22, { 0, -1 }, 0.02f },
        { EMBER_TYPE_Q5_1, 32, 24, { 0, 2 }, 0.02f },  { EMBER_TYPE_Q4_K, 256, 144, { 0, 2 }, 0.001f },
        { EMBER_TYPE_Q5_K, 256, 176, { 0, 2 }, 0.001f }, { EMBER_TYPE_Q6_K, 256, 210, { 208, -1 }, 0.0005f },
    };
    for (size_t k = 0; k < sizeof lay / sizeof lay[0]; k++) {
        if (lay[k].ty != ty) continue;
        for (int i = 0; i < n / lay[k].elems; i++, b += lay[k].bytes) {
            for (int j = 0; j < lay[k].bytes; j++) b[j] = (uint8_t)(rand() & 0xff);
            for (int h = 0; h < 2; h++) {
                if (lay[k].half[h] < 0) continue;
                uint16_t v = em_f32_to_f16(lay[k].scale * (1.5f + frand()) * (h ? -1.0f : 1.0f));
                memcpy(b + lay[k].half[h], &v, 2);
            }
        }
    }
}

static int block_elems(uint32_t ty) {
    switch (ty) {
    case EMBER_TYPE_F32: case EMBER_TYPE_F16: case EMBER_TYPE_BF16: return 1;
    case EMBER_TYPE_Q4_K: case EMBER_TYPE_Q5_K: case EMBER_TYPE_Q6_K: return 256;
    default: return 32;
    }
}

/* every dispatch level of every architecture; those this CPU lacks are skipped */
static const uint32_t levels[] = { 0, EMBER_CPU_AVX2, EMBER_CPU_AVX2 | EMBER_CPU_AVX512,
                                   EMBER_CPU_AVX2 | EMBER_CPU_AVX512 | EMBER_CPU_AVX512_VNNI,
                                   EMBER_CPU_AVX2 | EMBER_CPU_AVX512 | EMBER_CPU_AVX512_BF16,
                                   EMBER_CPU_NEON, EMBER_CPU_NEON | EMBER_CPU_DOTPROD,
                                   EMBER_CPU_RVV };

static void test_dot_variants(void **state) {
    (void)state;
    em_cpu_dsp ref, simd;
    em_cpu_dsp_init_ref(&ref);
    uint32_t have = em_cpu_detect();
    const uint32_t types[] = { EMBER_TYPE_F32,  EMBER_TYPE_F16,  EMBER_TYPE_BF16, EMBER_TYPE_Q8_0,
                               EMBER_TYPE_Q4_0, EMBER_TYPE_Q4_1, EMBER_TYPE_Q5_0, EMBER_TYPE_Q5_1,
                               EMBER_TYPE_Q4_K, EMBER_TYPE_Q5_K, EMBER_TYPE_Q6_K };
    float *x = malloc(4096 * 4), *w = malloc(4096 * 4), *a = malloc(4096 * 4), *b = malloc(4096 * 4);
    int checked = 0;
    for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
        if ((levels[l] & have) != levels[l]) {
            print_message("level %u not on this CPU: skipped\n", levels[l]);
            continue;
        }
        em_cpu_dsp_init(&simd, levels[l]);
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            uint32_t ty = types[ti];
            int step = block_elems(ty);
            for (int n = step; n <= 1100 + 2 * step; n += step * (n < 70 || step == 256 ? 1 : 37)) {
                fill_weights(ty, w, n);
                for (int i = 0; i < n; i++) x[i] = frand();
                float r = ref.dot[ty](n, w, x), s = simd.dot[ty](n, w, x);
                /* summation order differs: bound relative to sum |w x| */
                simd.to_f32[ty](n, w, a);
                ref.to_f32[ty](n, w, b);
                double mag = 0;
                for (int i = 0; i < n; i++) mag += fabs((double)b[i] * x[i]);
                if (fabs(r - s) > 1e-5 * mag + 1e-6)
                    print_error("level %u type %u n %d: ref %g simd %g\n", levels[l], ty, n, r, s);
                assert_true(fabs(r - s) <= 1e-5 * mag + 1e-6);
                assert_memory_equal(a, b, (size_t)n * 4);
                checked++;
            }
        }
    }
    assert_true(checked > 0);
    free(x); free(w); free(a); free(b);
}

static void test_f16_variants(void **state) {
    (void)state;
    em_cpu_dsp ref, simd;
    em_cpu_dsp_init_ref(&ref);
    uint32_t have = em_cpu_detect();
    float x[300], ya[300], yb[300];
    uint16_t ha[300], hb[300];
    for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
        if ((levels[l] & have) != levels[l]) continue;
        em_cpu_dsp_init(&simd, levels[l]);
        for (int n = 1; n < 300; n += 7) {
            for (int i = 0; i < n; i++) x[i] = frand() * 1000;
            x[0] = 65519.0f; /* rounds to the largest half */
            ref.f32_to_f16(n, x, ha);
            simd.f32_to_f16(n, x, hb);
            assert_memory_equal(ha, hb, (size_t)n * 2);
            for (int i = 0; i < n; i++) ya[i] = yb[i] = frand();
            ref.axpy_f16(n, 0.37f, ha, ya);
            simd.axpy_f16(n, 0.37f, ha, yb);
            for (int i = 0; i < n; i++) assert_true(fabsf(ya[i] - yb[i]) <= 1e-3f * (1 + fabsf(ya[i])));
            ref.axpy(n, -1.5f, x, ya);
            simd.axpy(n, -1.5f, x, yb);
            for (int i = 0; i < n; i++) assert_true(fabsf(ya[i] - yb[i]) <= 1e-3f * (1 + fabsf(ya[i])));
        }
    }
}

/* The GEMM tile kernel (tokens in the lanes) against the reference: row
 * counts around each kernel's row blocks (12, 6, 4, 2, 1), token counts in
 * whole lanes with and without a half tile, strided weights and outputs. */
static void test_gemm_variants(void **state) {
    (void)state;
    em_cpu_dsp ref, simd;
    em_cpu_dsp_init_ref(&ref);
    uint32_t have = em_cpu_detect();
    enum { MAXK = 300, MAXR = 29, MAXT = 64, LDW = MAXK + 3, LDY = MAXT + 16 };
    float *w = malloc(LDW * MAXR * 4), *x = malloc(MAXK * MAXT * 4);
    float *ya = malloc(MAXR * LDY * 4), *yb = malloc(MAXR * LDY * 4);
    int checked = 0;
    for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
        if ((levels[l] & have) != levels[l]) continue;
        em_cpu_dsp_init(&simd, levels[l]);
        for (int K = 1; K <= MAXK; K += 37)
            for (int nr = 1; nr <= MAXR; nr += 2)
                for (int nt = EM_GEMM_LANES; nt <= MAXT; nt += EM_GEMM_LANES) {
                    for (int i = 0; i < LDW * nr; i++) w[i] = frand();
                    for (int i = 0; i < K * nt; i++) x[i] = frand();
                    for (int i = 0; i < MAXR * LDY; i++) ya[i] = yb[i] = frand(); /* accumulates */
                    ref.gemm_f32(K, nr, nt, w, LDW, x, nt, ya, LDY);
                    simd.gemm_f32(K, nr, nt, w, LDW, x, nt, yb, LDY);
                    for (int r = 0; r < MAXR; r++)
                        for (int t = 0; t < LDY; t++) {
                            float a = ya[r * LDY + t], b = yb[r * LDY + t];
                            if (r >= nr || t >= nt) assert_true(a == b); /* untouched */
                            else assert_true(fabsf(a - b) <= 1e-5f * (float)(K + 1));
                        }
                    checked++;
                }
    }
    print_message("%d GEMM shapes checked\n", checked);
    assert_true(checked > 0);
    free(w);
    free(x);
    free(ya);
    free(yb);
}

/* The BF16 tile: the reference against the exact sum (the pair products
 * are exact in float, so a double sum of them is the true value), every
 * level's kernel against the reference, on random BF16 inputs with
 * subnormal-free magnitudes (VDPBF16PS flushes those), odd row counts and
 * K down to one pair. Only levels with a kernel have the slot. */
static void test_gemm_bf16_variants(void **state) {
    (void)state;
    em_cpu_dsp simd;
    uint32_t have = em_cpu_detect();
    enum { MAXK = 600, MAXR = 29, MAXT = 64, LDW = MAXK + 6, LDX = MAXT + 16, LDY = MAXT + 16 };
    uint16_t *w = malloc(LDW * MAXR * 2);
    uint32_t *x = malloc((MAXK / 2) * LDX * 4);
    float *ya = malloc(MAXR * LDY * 4), *yb = malloc(MAXR * LDY * 4), *y0 = malloc(MAXR * LDY * 4);
    int checked = 0, kernels = 0;
    for (int K = 2; K <= MAXK; K += 46) {
        for (int i = 0; i < LDW * MAXR; i++) w[i] = em_f32_to_bf16(frand());
        for (int i = 0; i < (MAXK / 2) * LDX; i++)
            x[i] = (uint32_t)em_f32_to_bf16(frand()) | (uint32_t)em_f32_to_bf16(frand() * 4) << 16;
        for (int i = 0; i < MAXR * LDY; i++) y0[i] = frand();
        for (int nr = 1; nr <= MAXR; nr += 4)
            for (int nt = 16; nt <= MAXT; nt += 16) {
                memcpy(ya, y0, MAXR * LDY * 4);
                em_gemm_bf16_ref(K, nr, nt, w, LDW, x, LDX, ya, LDY);
                for (int r = 0; r < nr; r++)
                    for (int t = 0; t < nt; t++) {
                        double e = y0[r * LDY + t], mag = fabs(e);
                        for (int p = 0; p < K / 2; p++) {
                            uint32_t v = x[p * LDX + t];
                            double a = (double)em_bf16_to_f32(w[r * LDW + 2 * p]) * em_bf16_to_f32((uint16_t)v);
                            double b = (double)em_bf16_to_f32(w[r * LDW + 2 * p + 1]) * em_bf16_to_f32((uint16_t)(v >> 16));
                            e += a + b;
                            mag += fabs(a) + fabs(b);
                        }
                        assert_true(fabs(ya[r * LDY + t] - e) <= 1e-6 * mag * (K + 2));
                    }
                for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
                    if ((levels[l] & have) != levels[l]) continue;
                    em_cpu_dsp_init(&simd, levels[l]);
                    if (!simd.gemm_bf16) continue;
                    memcpy(yb, y0, MAXR * LDY * 4);
                    simd.gemm_bf16(K, nr, nt, w, LDW, x, LDX, yb, LDY);
                    for (int r = 0; r < MAXR; r++)
                        for (int t = 0; t < LDY; t++) {
                            float a = ya[r * LDY + t], b = yb[r * LDY + t];
                            if (r >= nr || t >= nt) assert_true(a == b); /* untouched */
                            else if (!(fabsf(a - b) <= 2e-5f * (float)(K + 2))) {
                                print_error("level %u K %d nr %d nt %d r %d t %d: ref %g simd %g\n",
                                            levels[l], K, nr, nt, r, t, a, b);
                                fail();
                            }
                        }
                    kernels++;
                }
                checked++;
            }
    }
    print_message("%d BF16 GEMM shapes checked, %d kernel runs\n", checked, kernels);
    assert_true(checked > 0);
    if (have & EMBER_CPU_AVX512_BF16) assert_true(kernels > 0);
    free(w);
    free(x);
    free(ya);
    free(yb);
    free(y0);
}

/* Activations of n values quantized by the reference into storage for row t. */
typedef struct qx { int8_t q[1024], lo[1024]; float d[32]; int32_t s[32]; } qx;

/* The integer path: activation quantization bit-exact, the dot products
 * against the reference on random inputs, every K from one block up (odd
 * block counts included). */
static void test_q8x_variants(void **state) {
    (void)state;
    em_cpu_dsp ref, simd;
    em_cpu_dsp_init(&ref, 0);
    uint32_t have = em_cpu_detect();
    enum { MAXK = 1024, MAXR = 11, MAXT = 9 };
    const uint32_t types[] = { EMBER_TYPE_Q8_0, EMBER_TYPE_Q4_0, EMBER_TYPE_Q4_1, EMBER_TYPE_Q5_0,
                               EMBER_TYPE_Q5_1, EMBER_TYPE_Q4_K, EMBER_TYPE_Q5_K, EMBER_TYPE_Q6_K };
    static float x[MAXT][MAXK], wf[MAXK];
    static qx qa[MAXT], qb;
    static uint8_t w[MAXR * 34 * (MAXK / 32)];
    int checked = 0;
    for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
        if ((levels[l] & have) != levels[l]) continue;
        em_cpu_dsp_init(&simd, levels[l]);
        for (int K = 32; K <= MAXK; K += 32 * (K < 160 ? 1 : 9)) {
            int nb = K / 32;
            for (int t = 0; t < MAXT; t++) {
                for (int i = 0; i < K; i++) x[t][i] = frand() * (t == 2 ? 1000.0f : 1.0f);
                if (t == 3) for (int i = 0; i < 32; i++) x[t][i] = 0; /* an all-zero block */
                if (t == 4) x[t][5] = 127.5f, x[t][6] = -127.5f, x[t][7] = 0.5f * 127.5f; /* ties */
                ref.quant_q8x(K, x[t], qa[t].q, qa[t].lo, qa[t].d, qa[t].s);
                simd.quant_q8x(K, x[t], qb.q, qb.lo, qb.d, qb.s);
                assert_memory_equal(qa[t].q, qb.q, (size_t)K);
                assert_memory_equal(qa[t].lo, qb.lo, (size_t)K);
                assert_memory_equal(qa[t].d, qb.d, (size_t)nb * 4);
                assert_memory_equal(qa[t].s, qb.s, (size_t)nb * 4);
            }
            em_q8x_row rows[MAXT];
            for (int t = 0; t < MAXT; t++) rows[t] = (em_q8x_row){ qa[t].q, qa[t].lo, qa[t].d, qa[t].s };
            for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
                uint32_t ty = types[ti];
                if (K % block_elems(ty)) continue;
                size_t stride = ember_type_row_size(ty, K);
                fill_weights(ty, w, K * MAXR);
                for (int t = 0; t < MAXT; t++)
                    for (int r = 0; r < MAXR; r++) {
                        float a = ref.dot_q8x[ty](K, w + r * stride, rows[t]);
                        float b = simd.dot_q8x[ty](K, w + r * stride, rows[t]);
                        /* rounding: relative to sum |w x| */
                        ref.to_f32[ty](K, w + r * stride, wf);
                        double wx = 0;
                        for (int i = 0; i < K; i++) wx += fabs((double)wf[i] * x[t][i]);
                        float tol = 4e-6f * (float)wx + 1e-6f;
                        if (fabsf(a - b) > tol)
                            print_error("level %u type %u K %d: dot ref %g simd %g\n", levels[l], ty, K, a, b);
                        assert_true(fabsf(a - b) <= tol);
                        /* and the integer path is a dot product of these weights,
                         * to a step of the activations' 16 bits per element */
                        double exact = 0, qerr = 0;
                        for (int i = 0; i < K; i++) {
                            exact += (double)wf[i] * x[t][i];
                            qerr += fabs((double)wf[i]) * qa[t].d[i / 32];
                        }
                        if (fabs(a - exact) > qerr + 1e-5 * wx + 1e-6)
                            print_error("level %u type %u K %d: dot %g exact %g\n", levels[l], ty, K, a, exact);
                        assert_true(fabs(a - exact) <= qerr + 1e-5 * wx + 1e-6);
                    }
                checked++;
            }
        }
    }
    print_message("%d integer-path (type, K) cases checked\n", checked);
    assert_true(checked > 0);
}

/* The one-plane dot of the unpacked types under act_type Q8_0 (dot_q8):
 * every level that has one against em_dot_q8_ref on random weights and
 * activations (all-zero blocks, large values and odd block counts), and
 * the reference against the float product of the dequantized weights and
 * the dequantized activations. Required on AVX2 machines. */
static void test_dot_q8_variants(void **state) {
    (void)state;
    em_cpu_dsp ref, simd;
    em_cpu_dsp_init(&ref, 0);
    uint32_t have = em_cpu_detect();
    enum { MAXK = 1024, MAXR = 7, MAXT = 4 };
    const uint32_t types[] = { EMBER_TYPE_Q4_1, EMBER_TYPE_Q5_0, EMBER_TYPE_Q5_1,
                               EMBER_TYPE_Q4_K, EMBER_TYPE_Q5_K, EMBER_TYPE_Q6_K };
    static float x[MAXK], wf[MAXK];
    static int8_t q[MAXK];
    static float d[MAXK / 32];
    static int32_t sx[MAXK / 32];
    static uint8_t w[MAXR * 34 * (MAXK / 32)];
    int checked = 0;
    for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
        if ((levels[l] & have) != levels[l]) continue;
        em_cpu_dsp_init(&simd, levels[l]);
        const int ks[] = { 32, 64, 96, 160, 256, 288, 512, 768, MAXK };
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
            int K = ks[ki];
            for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
                uint32_t ty = types[ti];
                if (K % block_elems(ty) || !simd.dot_q8[ty]) continue;
                size_t stride = ember_type_row_size(ty, K);
                fill_weights(ty, w, K * MAXR);
                for (int t = 0; t < MAXT; t++) {
                    for (int i = 0; i < K; i++) x[i] = frand() * (t == 2 ? 1000.0f : 1.0f);
                    if (t == 3) for (int i = 0; i < 32; i++) x[i] = 0; /* an all-zero block */
                    for (int b = 0; b < K / 32; b++) simd.quant_q8_lanes(x, 0, 1, b, q, d, sx, 1);
                    em_q8x_row row = { q, NULL, d, sx };
                    for (int r = 0; r < MAXR; r++) {
                        float a = em_dot_q8_ref(ty, K, w + r * stride, row);
                        float b = simd.dot_q8[ty](K, w + r * stride, row);
                        ref.to_f32[ty](K, w + r * stride, wf);
                        double wx = 0, exact = 0;
                        for (int i = 0; i < K; i++) {
                            double xq = (double)q[i] * d[i / 32];
                            wx += fabs((double)wf[i] * xq);
                            exact += (double)wf[i] * xq;
                        }
                        float tol = 4e-6f * (float)wx + 1e-6f;
                        if (fabsf(a - b) > tol || fabs(a - exact) > 1e-5 * wx + 1e-6)
                            print_error("level %u type %u K %d: dot_q8 ref %g simd %g exact %g\n",
                                        levels[l], ty, K, a, b, exact);
                        assert_true(fabsf(a - b) <= tol);
                        assert_true(fabs(a - exact) <= 1e-5 * wx + 1e-6);
                    }
                }
                checked++;
            }
        }
    }
    print_message("%d one-plane (type, K) cases checked\n", checked);
    if (have & EMBER_CPU_AVX2) assert_true(checked > 0);
}

/* The 8-bit GEMM (dsp.h): every level's unpack bit-exact against the
 * reference, which must be the dequantized row; every gemm_q8 against
 * em_gemm_q8_ref (integer sums exact, float sums to rounding) on odd row
 * counts, 16- and 32-token tails, strides, untouched elements bit-equal;
 * and the reference against a plain float product of the values. */
static void test_gemm_q8_variants(void **state) {
    (void)state;
    em_cpu_dsp ref, simd;
    em_cpu_dsp_init(&ref, 0);
    uint32_t have = em_cpu_detect();
    enum { MAXB = 9, MAXR = 17, MAXT = 80, LDW = MAXB * 32 + 4, LDB = MAXB + 1, LDX = MAXT };
    enum { LDY = MAXT + 8 };
    static uint8_t raw[MAXR * 34 * MAXB], wa[MAXR * LDW], wb[MAXR * LDW];
    static int8_t xq[MAXB * 8 * LDX * 4];
    static float dwa[MAXR * LDB], dwb[MAXR * LDB], dx[MAXB * LDX], ya[MAXR * LDY], yb[MAXR * LDY];
    static int32_t xs[MAXB * LDX];
    static float wf[MAXB * 32];
    const uint32_t types[] = { EMBER_TYPE_Q8_0, EMBER_TYPE_Q4_0 };
    int checked = 0, kernels = 0;
    for (size_t ti = 0; ti < 2; ti++) {
        uint32_t ty = types[ti];
        size_t bsz = ty == EMBER_TYPE_Q8_0 ? 34 : 18;
        for (int nb = 1; nb <= MAXB; nb += 2) {
            fill_weights(ty, raw, nb * 32 * MAXR);
            int32_t o = 0;
            for (int r = 0; r < MAXR; r++)
                o = ref.unpack_q8[ty](nb, raw + (size_t)r * nb * bsz, wa + r * LDW, dwa + r * LDB);
            assert_int_equal(o, ty == EMBER_TYPE_Q8_0 ? 128 : 8);
            for (int r = 0; r < MAXR; r++) { /* u - o, scaled, is the weight */
                ref.to_f32[ty](nb * 32, raw + (size_t)r * nb * bsz, wf);
                for (int k = 0; k < nb * 32; k++)
                    assert_true(wf[k] == (float)((int)wa[r * LDW + k] - o) * dwa[r * LDB + k / 32]);
            }
            for (int b = 0; b < nb; b++)
                for (int t = 0; t < LDX; t++) {
                    int32_t sum = 0;
                    for (int k = 0; k < 32; k++) {
                        int v = rand() % 255 - 127;
                        xq[((b * 8 + k / 4) * LDX + t) * 4 + k % 4] = (int8_t)v;
                        sum += v;
                    }
                    xs[b * LDX + t] = sum;
                    dx[b * LDX + t] = 0.01f * (frand() + 1.5f);
                }
            /* reference vs float math on the values */
            for (int i = 0; i < MAXR * LDY; i++) ya[i] = frand();
            memcpy(yb, ya, sizeof ya);
            em_gemm_q8_ref(nb, MAXR, 32, wa, LDW, dwa, LDB, o, xq, dx, xs, LDX, ya, LDY);
            for (int r = 0; r < MAXR; r++)
                for (int t = 0; t < 32; t++) {
                    double e = yb[r * LDY + t], mag = fabs(e);
                    for (int k = 0; k < nb * 32; k++) {
                        double xv = xq[((k / 32 * 8 + k % 32 / 4) * LDX + t) * 4 + k % 4] * (double)dx[k / 32 * LDX + t];
                        double wv = ((int)wa[r * LDW + k] - o) * (double)dwa[r * LDB + k / 32];
                        e += xv * wv;
                        mag += fabs(xv * wv);
                    }
                    assert_true(fabs(ya[r * LDY + t] - e) <= 1e-6 * mag + 1e-6);
                }
            for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
                if ((levels[l] & have) != levels[l]) continue;
                em_cpu_dsp_init(&simd, levels[l]);
                if (simd.unpack_q8[ty]) {
                    for (int r = 0; r < MAXR; r++)
                        assert_int_equal(simd.unpack_q8[ty](nb, raw + (size_t)r * nb * bsz, wb + r * LDW,
                                                            dwb + r * LDB), o);
                    for (int r = 0; r < MAXR; r++) {
                        assert_memory_equal(wa + r * LDW, wb + r * LDW, (size_t)nb * 32);
                        assert_memory_equal(dwa + r * LDB, dwb + r * LDB, (size_t)nb * 4);
                    }
                }
                if (simd.quant_q8_lanes) { /* activations: bit-equal, zeros and ties included */
                    enum { QT = 21, QK = MAXB * 32 };
                    static float xf[QT * QK];
                    static int8_t qa[MAXB * 8 * LDX * 4], qb[MAXB * 8 * LDX * 4];
                    static float da[MAXB * LDX], db[MAXB * LDX];
                    static int32_t sa[MAXB * LDX], sb[MAXB * LDX];
                    for (int i = 0; i < QT * QK; i++) xf[i] = frand() * (i % 7 == 0 ? 100.0f : 1.0f);
                    for (int i = 0; i < 32; i++) xf[3 * QK + i] = 0;
                    xf[4 * QK] = 127.0f, xf[4 * QK + 1] = 0.5f, xf[4 * QK + 2] = -1.5f;
                    memset(qa, 0, sizeof qa), memset(qb, 0, sizeof qb);
                    for (int b = 0; b < nb; b++) {
                        ref.quant_q8_lanes(xf, QK, QT, b, qa, da, sa, LDX);
                        simd.quant_q8_lanes(xf, QK, QT, b, qb, db, sb, LDX);
                    }
                    assert_memory_equal(qa, qb, sizeof qa);
                    for (int b = 0; b < nb; b++) {
                        assert_memory_equal(da + b * LDX, db + b * LDX, QT * 4);
                        assert_memory_equal(sa + b * LDX, sb + b * LDX, QT * 4);
                    }
                }
                if (!simd.gemm_q8) continue;
                kernels++;
                for (int nr = 1; nr <= MAXR; nr += 2)
                    for (int nt = 16; nt <= MAXT; nt += 16) {
                        for (int i = 0; i < MAXR * LDY; i++) ya[i] = yb[i] = frand();
                        em_gemm_q8_ref(nb, nr, nt, wa, LDW, dwa, LDB, o, xq, dx, xs, LDX, ya, LDY);
                        simd.gemm_q8(nb, nr, nt, wa, LDW, dwa, LDB, o, xq, dx, xs, LDX, yb, LDY);
                        for (int r = 0; r < MAXR; r++)
                            for (int t = 0; t < LDY; t++) {
                                float a = ya[r * LDY + t], b = yb[r * LDY + t];
                                if (r >= nr || t >= nt) assert_true(a == b); /* untouched */
                                else assert_true(fabsf(a - b) <= 2e-6f * (fabsf(a) + 1.0f) * (float)nb);
                            }
                        checked++;
                    }
            }
        }
    }
    print_message("%d 8-bit GEMM shapes checked (%d kernel variants)\n", checked, kernels);
    if (have & EMBER_CPU_AVX2) assert_true(checked > 0);
}

/* The few-token 8-bit product (dsp.h, gemm_q8_few): its reference gives
 * the bits of gemm_q8's reference on the unpacked rows (so a batch's
 * results do not depend on which path it takes), and every kernel the
 * machine has matches it on 1-15 tokens, row counts around the 16-row
 * groups, strided activations, untouched outputs bit-equal. */
static void test_gemm_q8_few_variants(void **state) {
    (void)state;
    uint32_t have = em_cpu_detect();
    enum { MAXB = 9, MAXR = 35, MAXT = 15, LDQ = MAXB * 32 + 8, LDD = MAXB + 3, LDY = MAXR + 5 };
    enum { LDW = MAXB * 32, LANES = 16 };
    static uint8_t raw[MAXR * 34 * MAXB], wu[MAXR * LDW];
    static int8_t xq[MAXT * LDQ], xl[MAXB * 8 * LANES * 4];
    static float dx[MAXT * LDD], dl[MAXB * LANES], dw[MAXR * MAXB], ya[MAXT * LDY], yb[MAXT * LDY];
    static float yT[MAXR * LANES];
    static int32_t xs[MAXT * LDD], sl[MAXB * LANES];
    static _Alignas(64) char few[EM_Q8_FEW_SCRATCH(MAXB, MAXT)];
    em_cpu_dsp ref;
    em_cpu_dsp_init(&ref, 0);
    const uint32_t types[] = { EMBER_TYPE_Q8_0, EMBER_TYPE_Q4_0 };
    int checked = 0;
    for (size_t ti = 0; ti < 2; ti++) {
        uint32_t ty = types[ti];
        size_t bsz = ty == EMBER_TYPE_Q8_0 ? 34 : 18;
        for (int nb = 1; nb <= MAXB; nb += 4) {
            size_t ldw = (size_t)nb * bsz;
            fill_weights(ty, raw, nb * 32 * MAXR);
            for (int t = 0; t < MAXT; t++)
                for (int b = 0; b < nb; b++) {
                    int32_t sum = 0;
                    for (int k = 0; k < 32; k++) {
                        int v = rand() % 255 - 127;
                        xq[t * LDQ + b * 32 + k] = (int8_t)v;
                        sum += v;
                    }
                    xs[t * LDD + b] = sum;
                    dx[t * LDD + b] = 0.01f * (frand() + 1.5f);
                }
            /* the reference against gemm_q8's: the same bits */
            int32_t o = 0;
            for (int r = 0; r < MAXR; r++)
                o = ref.unpack_q8[ty](nb, raw + (size_t)r * ldw, wu + r * LDW, dw + r * MAXB);
            for (int t = 0; t < LANES; t++)
                for (int b = 0; b < nb; b++) {
                    int tt = t % MAXT;
                    for (int k = 0; k < 32; k++)
                        xl[((b * 8 + k / 4) * LANES + t) * 4 + k % 4] = xq[tt * LDQ + b * 32 + k];
                    dl[b * LANES + t] = dx[tt * LDD + b];
                    sl[b * LANES + t] = xs[tt * LDD + b];
                }
            memset(yT, 0, sizeof yT);
            em_gemm_q8_ref(nb, MAXR, LANES, wu, LDW, dw, MAXB, o, xl, dl, sl, LANES, yT, LANES);
            em_gemm_q8_few_ref(ty, nb, MAXR, MAXT, raw, ldw, xq, LDQ, dx, xs, LDD, ya, LDY);
            for (int r = 0; r < MAXR; r++)
                for (int t = 0; t < MAXT; t++) assert_true(ya[t * LDY + r] == yT[r * LANES + t]);
            for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
                if ((levels[l] & have) != levels[l]) continue;
                em_cpu_dsp simd;
                em_cpu_dsp_init(&simd, levels[l]);
                if (!simd.gemm_q8_few[ty]) continue;
                static const int rows[] = { 1, 7, 16, 17, 33, 35 };
                for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++)
                    for (int nt = 1; nt <= MAXT; nt++) {
                        int nr = rows[ri];
                        for (int i = 0; i < MAXT * LDY; i++) ya[i] = yb[i] = frand();
                        em_gemm_q8_few_ref(ty, nb, nr, nt, raw, ldw, xq, LDQ, dx, xs, LDD, ya, LDY);
                        simd.gemm_q8_few[ty](nb, nr, nt, raw, ldw, xq, LDQ, dx, xs, LDD, yb, LDY, few);
                        for (int t = 0; t < MAXT; t++)
                            for (int r = 0; r < LDY; r++) {
                                float a = ya[t * LDY + r], b = yb[t * LDY + r];
                                if (r >= nr || t >= nt) assert_true(a == b); /* untouched */
                                else assert_true(fabsf(a - b) <= 2e-6f * (fabsf(a) + 1.0f) * (float)nb);
                            }
                        checked++;
                    }
            }
        }
    }
    print_message("%d few-token 8-bit shapes checked\n", checked);
    if (have & EMBER_CPU_AVX2) assert_true(checked > 0);
}

/* Block layouts as llama.cpp defines them: Q8_0 = fp16 scale + 32 int8;
 * Q4_0 = fp16 scale + 16 bytes, element j in the low nibble of byte j and
 * element j+16 in its high nibble, value (nibble - 8) * scale. */
/* The attention chunk (online softmax over GQA heads): several chunks in a
 * row from the initial state, so rescaling by a rising max is exercised;
 * head widths with tails, 1-5 and 8 heads, 1-16 positions per chunk.
 * Variants may sum and exponentiate in another order: a score's rounding
 * grows with D (about 1e-7 of scale * sum |q k|), which moves the
 * weights and the normalised outputs by as much in relative terms. */
static void test_attn_chunk_variants(void **state) {
    (void)state;
    enum { CH = EM_ATTN_CHUNK, MAXD = 600, MAXG = 8, NCH = 3 };
    static float kb[NCH * CH * MAXD], vb[NCH * CH * MAXD], q[MAXG * MAXD];
    static float acc[2][MAXG * MAXD];
    float m[2][MAXG], l[2][MAXG];
    const float *kp[NCH][CH], *vp[NCH][CH];
    uint32_t have = em_cpu_detect();
    em_cpu_dsp ref;
    em_cpu_dsp_init(&ref, 0);
    static const int dims[] = { 8, 16, 24, 64, 72, 128, 576 };
    static const int heads[] = { 1, 2, 3, 4, 5, 8 };
    int checked = 0;
    float worst = 0, worst_ml = 0;
    for (size_t l_ = 0; l_ < sizeof levels / sizeof levels[0]; l_++) {
        if ((levels[l_] & have) != levels[l_]) continue;
        em_cpu_dsp simd;
        em_cpu_dsp_init(&simd, levels[l_]);
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
            for (size_t hi = 0; hi < sizeof heads / sizeof heads[0]; hi++)
                for (int n = 1; n <= CH; n += (n < 3 ? 1 : 6)) {
                    int D = dims[di], Dv = dims[(di + hi) % (sizeof dims / sizeof dims[0])];
                    int G = heads[hi];
                    /* growing scores across chunks: the max rises */
                    for (int c = 0; c < NCH; c++)
                        for (int i = 0; i < CH; i++) {
                            for (int d = 0; d < D; d++)
                                kb[(c * CH + i) * MAXD + d] = frand() * (1 + c);
                            for (int d = 0; d < Dv; d++) vb[(c * CH + i) * MAXD + d] = frand();
                            kp[c][i] = kb + (c * CH + i) * MAXD;
                            vp[c][i] = (c + i) % 5 ? vb + (c * CH + i) * MAXD : kp[c][i];
                        }
                    for (int i = 0; i < G * MAXD; i++) q[i] = frand() * 2;
                    for (int s = 0; s < 2; s++) {
                        for (int g = 0; g < G; g++) m[s][g] = -INFINITY, l[s][g] = 0;
                        memset(acc[s], 0, sizeof acc[s]);
                        for (int c = 0; c < NCH; c++)
                            (s ? simd : ref).attn_chunk(D, Dv, G, q, MAXD, 0.125f, n, kp[c],
                                                        vp[c], m[s], l[s], acc[s], MAXD);
                    }
                    /* |q| <= 2, |k| <= NCH, |v| <= NCH: bound scale * sum |q k| */
                    float tol = 1e-7f * (1 + 0.125f * 2 * NCH * (float)D);
                    for (int g = 0; g < G; g++) {
                        assert_true(fabsf(m[0][g] - m[1][g]) <= tol);
                        worst_ml = fmaxf(worst_ml, fmaxf(fabsf(m[0][g] - m[1][g]), fabsf(l[0][g] - l[1][g]) / l[0][g]) / tol);
                        assert_true(fabsf(l[0][g] - l[1][g]) <= tol * l[0][g]);
                        for (int e = 0; e < MAXD; e++) {
                            float a = acc[0][g * MAXD + e] / l[0][g];
                            float b = acc[1][g * MAXD + e] / l[1][g];
                            if (e >= Dv) { /* past Dv: untouched */
                                assert_true(acc[1][g * MAXD + e] == 0);
                                continue;
                            }
                            if (fabsf(a - b) > tol)
                                print_error("level %u D %d Dv %d G %d n %d: %g vs %g\n",
                                            levels[l_], D, Dv, G, n, a, b);
                            assert_true(fabsf(a - b) <= tol);
                            worst = fmaxf(worst, fabsf(a - b) / tol);
                        }
                    }
                    checked++;
                }
    }
    print_message("%d attention chunks checked, worst errors %.2f (outputs), %.2f (m, l) of the bound\n", checked, worst, worst_ml);
    assert_true(checked > 0);
}

/* SwiGLU against the reference over lengths with tails and gates from
 * -100 (exp overflows in the reference: silu -> -0) to 100. */
static void test_swiglu_variants(void **state) {
    (void)state;
    enum { MAXN = 300 };
    float g[MAXN], u[MAXN], a[MAXN + 1], b[MAXN + 1];
    uint32_t have = em_cpu_detect();
    em_cpu_dsp ref;
    em_cpu_dsp_init(&ref, 0);
    int checked = 0;
    for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
        if ((levels[l] & have) != levels[l]) continue;
        em_cpu_dsp simd;
        em_cpu_dsp_init(&simd, levels[l]);
        for (int n = 1; n <= MAXN; n += (n < 40 ? 1 : 23)) {
            for (int i = 0; i < n; i++) {
                g[i] = frand() * (i % 7 ? 8 : 100);
                u[i] = frand() * 4;
            }
            a[n] = b[n] = 12345.0f; /* past n: untouched */
            ref.swiglu(n, g, u, a);
            simd.swiglu(n, g, u, b);
            for (int i = 0; i < n; i++) {
                if (fabsf(a[i] - b[i]) > 4e-7f * fabsf(a[i]) + 1e-30f)
                    print_error("level %u n %d: swiglu(%g, %g) %g vs %g\n", levels[l], n, g[i],
                                u[i], a[i], b[i]);
                assert_true(fabsf(a[i] - b[i]) <= 4e-7f * fabsf(a[i]) + 1e-30f);
            }
            assert_true(b[n] == 12345.0f);
            checked++;
        }
    }
    assert_true(checked > 0);
}

static void test_quant_layouts(void **state) {
    (void)state;
    em_cpu_dsp ref;
    em_cpu_dsp_init_ref(&ref);
    uint8_t q4[18], q8[34];
    uint16_t half = 0x3800; /* 0.5 */
    memcpy(q4, &half, 2);
    memcpy(q8, &half, 2);
    for (int j = 0; j < 16; j++) q4[2 + j] = (uint8_t)((j & 15) | ((15 - j) << 4));
    for (int j = 0; j < 32; j++) q8[2 + j] = (uint8_t)(int8_t)(j - 16);
    float out[32], ones[32];
    ref.to_f32[EMBER_TYPE_Q4_0](32, q4, out);
    for (int j = 0; j < 16; j++) {
        assert_true(out[j] == 0.5f * (float)(j - 8));
        assert_true(out[j + 16] == 0.5f * (float)(15 - j - 8));
    }
    ref.to_f32[EMBER_TYPE_Q8_0](32, q8, out);
    for (int j = 0; j < 32; j++) assert_true(out[j] == 0.5f * (float)(j - 16));
    for (int j = 0; j < 32; j++) ones[j] = 1.0f;
    assert_true(ref.dot[EMBER_TYPE_Q8_0](32, q8, ones) == 0.5f * -16.0f);
    assert_true(ref.dot[EMBER_TYPE_Q4_0](32, q4, ones) == 0.5f * (-8.0f - 8.0f));
}

/* The software half conversion is exact both ways on every half value. */
static void test_half_roundtrip(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = em_f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        assert_int_equal(em_f32_to_f16(f), h);
    }
    assert_int_equal(em_f32_to_f16(1.0f + 1.0f / 4096), 0x3c00); /* tie to even */
    assert_int_equal(em_f32_to_f16(1e6f), 0x7c00);
    /* BF16: every BF16 value back to itself, ties to even, NaN kept */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = em_bf16_to_f32((uint16_t)h);
        if (!isnan(f)) assert_int_equal(em_f32_to_bf16(f), h);
        else assert_true(isnan(em_bf16_to_f32(em_f32_to_bf16(f))));
    }
    assert_int_equal(em_f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);     /* tie, to even (down) */
    assert_int_equal(em_f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);     /* tie, to even (up) */
    assert_int_equal(em_f32_to_bf16(1.0f + 1.0f / 256 + 1e-6f), 0x3f81); /* past the tie */
    assert_int_equal(em_f32_to_bf16(3.4e38f), 0x7f80);               /* rounds to infinity */
}

/* The mask restricts what the dispatcher picks. */
static void test_mask(void **state) {
    (void)state;
    em_cpu_dsp a, b;
    em_cpu_dsp_init(&a, 0);
    em_cpu_dsp_init_ref(&b);
    assert_ptr_equal(a.dot[EMBER_TYPE_F16], b.dot[EMBER_TYPE_F16]);
    if (em_cpu_detect() & EMBER_CPU_AVX2) {
        em_cpu_dsp_init(&a, EMBER_CPU_AVX2);
        assert_ptr_not_equal(a.dot[EMBER_TYPE_F16], b.dot[EMBER_TYPE_F16]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dot_variants),
        cmocka_unit_test(test_f16_variants),
        cmocka_unit_test(test_gemm_variants),
        cmocka_unit_test(test_gemm_bf16_variants),
        cmocka_unit_test(test_q8x_variants),
        cmocka_unit_test(test_dot_q8_variants),
        cmocka_unit_test(test_gemm_q8_variants),
        cmocka_unit_test(test_gemm_q8_few_variants),
        cmocka_unit_test(test_attn_chunk_variants),
        cmocka_unit_test(test_swiglu_variants),
        cmocka_unit_test(test_quant_layouts),
        cmocka_unit_test(test_half_roundtrip),
        cmocka_unit_test(test_mask),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
