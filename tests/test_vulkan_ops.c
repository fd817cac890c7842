/* Every op the Vulkan backend supports against the CPU backend (the
 * reference), test-backend-ops style: one small graph per case, random
 * inputs, odd shapes and tails, run on both; the outputs must agree within
 * a bound relative to the sizes involved. Skipped, with a message, where
 * no Vulkan device (or no Vulkan in the build) exists; on CI that device
 * is lavapipe. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "lib/backend.h"
#include "lib/moe.h"
#include "lib/graph.h"
#include "lib/kv.h"
#include "lib/quant.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)(rng >> 40) / 16777216.0f * 2 - 1;
}

static em_alloc alloc;
static char err[512];

/* A case: leaves and one op node built into g; out is the node checked. */
typedef struct run_out {
    float *y;
    size_t n;
    uint64_t commands, barriers; /* Vulkan: the run's recorded commands */
    uint32_t coopmat;            /* ... and its dispatches of mul_mmc.comp */
} run_out;

/* The Vulkan runs' act_type (the CPU's stays F32: test_act_q8 gives it
 * activations already rounded) */
static int vk_act = EMBER_TYPE_F32;
static int cpu_act = EMBER_TYPE_F32; /* the CPU runs' */

/* Runs g on a backend of `kind` and copies out's values. */
static int run_on(int kind, em_graph *g, em_tensor *out, run_out *r) {
    em_backend_config cfg = { kind, 0, 2, em_cpu_mask(),
                              (uint32_t)(kind == EMBER_BACKEND_VULKAN ? vk_act : cpu_act) };
    em_backend *b = NULL;
    int rc = em_backend_create(&cfg, &alloc, err, &b);
    if (rc) return rc;
    em_plan p;
    em_buffer buf = { 0 };
    out->keep = 1;
    if (!(rc = em_plan_make(&p, g, &alloc))) {
        if (!(rc = em_backend_buffer_alloc(b, p.arena_size, &buf)) &&
            !(rc = em_plan_apply(&p, g, buf.base, err)) && !(rc = em_backend_graph_reserve(b, g)) &&
            !(rc = em_backend_graph_compute(b, g))) {
            em_vulkan_run_stats(b, &r->commands, &r->barriers);
            r->coopmat = em_vulkan_dispatches(b, "mul_mmc");
            r->n = (size_t)em_nelements(out);
            r->y = malloc(r->n * sizeof(float));
            for (int64_t row = 0; row < out->ne[1] * out->ne[2]; row++)
                memcpy(r->y + row * out->ne[0], (char *)out->data + row * out->nb[1],
                       (size_t)out->ne[0] * sizeof(float));
        }
        em_backend_buffer_free(b, &buf);
        em_plan_free(&p, &alloc);
    }
    em_backend_destroy(&b);
    return rc;
}

static bool have_vulkan(void) {
    static int state = -1;
    if (state < 0) {
        state = em_vulkan_available(err) == EMBER_OK;
        if (!state) print_message("no Vulkan device (%s): Vulkan op tests skipped\n", err);
    }
    return state;
}

/* Runs on both backends; |vk - cpu| <= tol * (1 + |cpu|) elementwise.
 * The Vulkan run's command counts go to *stats when given. */
static void compare_stats(em_graph *g, em_tensor *out, double tol, const char *what,
                          run_out *stats) {
    run_out c = { 0 }, v = { 0 };
    assert_int_equal(run_on(EMBER_BACKEND_CPU, g, out, &c), EMBER_OK);
    int rc = run_on(EMBER_BACKEND_VULKAN, g, out, &v);
    if (rc) print_error("%s: %s\n", what, err);
    assert_int_equal(rc, EMBER_OK);
    assert_int_equal(c.n, v.n);
    double worst = 0;
    for (size_t i = 0; i < c.n; i++) {
        double d = fabs((double)c.y[i] - v.y[i]) / (1 + fabs((double)c.y[i]));
        if (!(d <= tol)) {
            print_error("%s: element %zu: cpu %.9g vulkan %.9g\n", what, i, c.y[i], v.y[i]);
            fail();
        }
        worst = d > worst ? d : worst;
    }
    print_message("%-40s %6zu values, worst %.2e (bound %.0e)\n", what, c.n, worst, tol);
    free(c.y);
    free(v.y);
    if (stats) *stats = v;
}

static void compare(em_graph *g, em_tensor *out, double tol, const char *what) {
    compare_stats(g, out, tol, what, NULL);
}

static em_tensor *rand_f32(em_graph *g, float **keep, int64_t ne0, int64_t ne1, int64_t ne2,
                           float amp) {
    size_t n = (size_t)(ne0 * ne1 * ne2);
    float *d = malloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = frand() * amp;
    *keep = d;
    return em_leaf(g, EMBER_TYPE_F32, 3, (int64_t[]){ ne0, ne1, ne2 }, d);
}

/* a [k, n] weight of type ty from random values */
static em_tensor *rand_weight(em_graph *g, void **keep, uint32_t ty, int64_t k, int64_t n) {
    size_t rb = ember_type_row_size(ty, k);
    uint8_t *d = malloc(rb * (size_t)n);
    float *row = malloc((size_t)k * sizeof *row);
    for (int64_t r = 0; r < n; r++) {
        for (int64_t i = 0; i < k; i++) row[i] = frand();
        if (ty == EMBER_TYPE_F32) memcpy(d + rb * (size_t)r, row, rb);
        else assert_true(em_quantize_row(ty, row, k, d + rb * (size_t)r));
    }
    free(row);
    *keep = d;
    return em_leaf(g, ty, 2, (int64_t[]){ k, n }, d);
}

static void new_graph(em_graph *g) { assert_int_equal(em_graph_init(g, &alloc, 64), EMBER_OK); }

/* Which product shaders the next Vulkan backend uses: 0 all (mul_mm
 * tiles past 8 tokens, mul_mv below), 1 mul_mv for every product, 2 the
 * portable matmul.comp for every product. */
static void set_paths(int mode) {
    if (mode >= 1) setenv("EMBER_VULKAN_NO_TILES", "1", 1);
    else unsetenv("EMBER_VULKAN_NO_TILES");
    if (mode == 2) setenv("EMBER_VULKAN_NO_SUBGROUPS", "1", 1);
    else unsetenv("EMBER_VULKAN_NO_SUBGROUPS");
}

static const uint32_t wtypes[] = { EMBER_TYPE_F32,  EMBER_TYPE_F16,  EMBER_TYPE_Q8_0,
                                   EMBER_TYPE_Q4_0, EMBER_TYPE_Q4_1, EMBER_TYPE_Q5_0,
                                   EMBER_TYPE_Q5_1, EMBER_TYPE_Q4_K, EMBER_TYPE_Q5_K,
                                   EMBER_TYPE_Q6_K };
#define N_WTYPES (sizeof wtypes / sizeof wtypes[0])

/* Whether rows of k elements are whole blocks of type ty. */
static bool fits_blocks(uint32_t ty, int64_t k) { return ember_type_row_size(ty, k) != 0; }

/* The bound per sqrt(K) of a product's error against the CPU. The CPU is
 * the reference, and its own error is what the bound must allow: F32
 * products; block types at fewer than 4 tokens through its 16-bit integer
 * activations (~4e-5), ~1.5e-4 for the unpacked types (Q4_1 ... Q6_K)
 * whose offsets multiply the activations' sum; past that, F32 tiles
 * (errors ~2e-6). A wrong decode of a block is off by ~1e-1. */
static double product_tol(uint32_t ty, int64_t T) {
    if (ty == EMBER_TYPE_F32 || ty == EMBER_TYPE_F16) return 1e-5;
    if (ty == EMBER_TYPE_Q8_0 || ty == EMBER_TYPE_Q4_0 || T >= 4) return 4e-5;
    return 1.5e-4;
}

static void test_matmul(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    /* T 1 and 5 (one pass of mul_mv), 9 and 17 (passes of 8 and a tail);
     * odd N (the last workgroup's rows), odd K for F32 */
    static const int64_t shapes[][3] = { { 64, 1, 1 }, { 96, 7, 3 }, { 256, 33, 5 }, { 37, 5, 2 },
                                         { 160, 19, 9 }, { 64, 130, 17 }, { 38, 3, 1 },
                                         { 1024, 5, 2 }, { 4096, 3, 1 }, { 96, 70, 65 },
                                         { 256, 130, 130 } };
    enum { NS = sizeof shapes / sizeof shapes[0] };
    static const char *const mode_names[] = { "", " (mul_mv)", " (portable)" };
    /* mul_mm tiles past 8 tokens and mul_mv below; mul_mv for all; then
     * matmul.comp for all */
    for (int mode = 0; mode < 3; mode++)
    for (size_t ti = 0; ti < N_WTYPES; ti++)
        for (size_t s = 0; s < NS; s++) {
            set_paths(mode);
            int64_t K = shapes[s][0], N = shapes[s][1], T = shapes[s][2];
            if (!fits_blocks(wtypes[ti], K)) continue;
            em_graph g;
            new_graph(&g);
            void *w;
            float *x;
            em_tensor *wt = rand_weight(&g, &w, wtypes[ti], K, N);
            em_tensor *xt = rand_f32(&g, &x, K, T, 1, 1);
            em_tensor *y = em_matmul(&g, wt, em_reshape(&g, xt, 2, (int64_t[]){ K, T }));
            char what[80];
            snprintf(what, sizeof what, "matmul %s K %lld N %lld T %lld%s",
                     ember_type_name((int)wtypes[ti]), (long long)K, (long long)N, (long long)T,
                     mode_names[mode]);
            compare(&g, y, product_tol(wtypes[ti], T) * sqrt((double)K), what);
            em_graph_free(&g, &alloc);
            free(w);
            free(x);
        }
    set_paths(0);
}

/* A product folded into its consumer (backends/vulkan/ops.c): W x + r,
 * and silu(Wg x) * (Wu x), against the CPU's separate ops; with subgroups
 * each runs as one dispatch (plus the copy of the output), without them
 * as separate products. */
static void test_fused(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    static const int64_t shapes[][3] = { { 64, 33, 1 }, { 256, 130, 3 }, { 96, 7, 9 } };
    for (int portable = 0; portable < 2; portable++)
    for (size_t ti = 0; ti < N_WTYPES; ti++)
        for (size_t s = 0; s < 3; s++)
            for (int swiglu = 0; swiglu < 2; swiglu++) {
                if (portable) setenv("EMBER_VULKAN_NO_SUBGROUPS", "1", 1);
                else unsetenv("EMBER_VULKAN_NO_SUBGROUPS");
                int64_t K = shapes[s][0], N = shapes[s][1], T = shapes[s][2];
                if (!fits_blocks(wtypes[ti], K)) continue;
                em_graph g;
                new_graph(&g);
                void *w1, *w2;
                float *x, *r;
                em_tensor *wa = rand_weight(&g, &w1, wtypes[ti], K, N);
                em_tensor *wb = rand_weight(&g, &w2, wtypes[ti], K, N);
                em_tensor *xt = em_reshape(&g, rand_f32(&g, &x, K, T, 1, 1), 2, (int64_t[]){ K, T });
                em_tensor *rt = em_reshape(&g, rand_f32(&g, &r, N, T, 1, 4), 2, (int64_t[]){ N, T });
                em_tensor *y = swiglu ? em_swiglu(&g, em_matmul(&g, wa, xt), em_matmul(&g, wb, xt))
                                      : em_add(&g, rt, em_matmul(&g, wa, xt));
                char what[80];
                snprintf(what, sizeof what, "%s %s K %lld N %lld T %lld%s",
                         swiglu ? "swiglu(Wg x, Wu x)" : "r + W x",
                         ember_type_name((int)wtypes[ti]), (long long)K, (long long)N,
                         (long long)T, portable ? " (portable)" : "");
                run_out st;
                compare_stats(&g, y, product_tol(wtypes[ti], T) * sqrt((double)K) * (swiglu ? 4 : 1),
                              what, &st);
                /* past 8 tokens the tiles run the products, unfolded */
                uint64_t dispatches = portable || T > 8 ? (swiglu ? 3 : 2) : 1;
                assert_int_equal(st.commands, dispatches + 1);
                em_graph_free(&g, &alloc);
                free(w1), free(w2), free(x), free(r);
            }
    unsetenv("EMBER_VULKAN_NO_SUBGROUPS");
}

/* x rounded in place as act_type Q8_0 rounds activations (quant_act.comp,
 * the CPU's quant_q8_lanes): per block of 32, q = nearest-even of
 * v * 127 / amax, times d = amax / 127 rounded to F16. */
static void round_q8(float *x, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++) {
        float *v = x + b * 32, amax = 0;
        for (int j = 0; j < 32; j++) amax = fabsf(v[j]) > amax ? fabsf(v[j]) : amax;
        float ie = amax != 0 ? 127.0f / amax : 0;
        float d = em_f16_to_f32(em_f32_to_f16(amax / 127.0f));
        for (int j = 0; j < 32; j++) v[j] = nearbyintf(v[j] * ie) * d; /* ties to even */
    }
}

/* y = W x, W x + r or swiglu(Wg x, Wu x) from the given data */
static em_tensor *act_case(em_graph *g, uint32_t ty, int64_t K, int64_t N, int64_t T, int op,
                           void *w1, void *w2, float *x, float *r) {
    em_tensor *wa = em_leaf(g, ty, 2, (int64_t[]){ K, N }, w1);
    em_tensor *wb = em_leaf(g, ty, 2, (int64_t[]){ K, N }, w2);
    /* x computed (scaled by 1), as activations are: prompts round it in place */
    em_tensor *xt = em_scale(g, em_leaf(g, EMBER_TYPE_F32, 2, (int64_t[]){ K, T }, x), 1.0f);
    em_tensor *rt = em_leaf(g, EMBER_TYPE_F32, 2, (int64_t[]){ N, T }, r);
    return op == 0 ? em_matmul(g, wa, xt)
         : op == 1 ? em_add(g, rt, em_matmul(g, wa, xt))
                   : em_swiglu(g, em_matmul(g, wa, xt), em_matmul(g, wb, xt));
}

/* act_type Q8_0 on Vulkan: few-token products of block-quantized weights
 * round x to 8 bits once (quant_act.comp) and take integer dot products
 * (mul_mvq.comp), folds included; with the device's dot product
 * instruction and with the emulated one (EMBER_VULKAN_NO_IDOT). Past 8
 * tokens x is rounded in place (round_act) for the F32 tiles (the
 * tensor cores' F16 ones are test_coopmat's). The reference is the CPU's
 * F32 product of x rounded by the same rule, so the bound is the F32
 * one: what is left is summation order and the rare value a division's
 * last bit rounds the other way. */
static void test_act_q8(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    setenv("EMBER_VULKAN_NO_COOPMAT", "1", 1);
    static const int64_t shapes[][3] = { { 64, 33, 1 }, { 256, 130, 3 }, { 96, 7, 8 },
                                         { 512, 70, 5 }, { 4096, 3, 1 }, { 96, 70, 9 },
                                         { 256, 130, 67 } };
    static const char *const ops[] = { "W x", "r + W x", "swiglu(Wg x, Wu x)" };
    vk_act = EMBER_TYPE_Q8_0;
    for (int emulated = 0; emulated < 2; emulated++)
    for (size_t ti = 2; ti < N_WTYPES; ti++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int op = 0; op < 3; op++) {
                if (emulated) setenv("EMBER_VULKAN_NO_IDOT", "1", 1);
                else unsetenv("EMBER_VULKAN_NO_IDOT");
                uint32_t ty = wtypes[ti];
                int64_t K = shapes[s][0], N = shapes[s][1], T = shapes[s][2];
                if (!fits_blocks(ty, K) || (emulated && T > 8)) continue;
                em_graph g;
                new_graph(&g);
                void *w1, *w2;
                float *x, *r;
                rand_weight(&g, &w1, ty, K, N);
                rand_weight(&g, &w2, ty, K, N);
                rand_f32(&g, &x, K, T, 1, 1);
                rand_f32(&g, &r, N, T, 1, 4);
                em_graph_free(&g, &alloc);
                float *xr = malloc((size_t)(K * T) * sizeof *xr);
                memcpy(xr, x, (size_t)(K * T) * sizeof *xr);
                round_q8(xr, K * T);
                run_out c = { 0 }, v = { 0 };
                new_graph(&g);
                em_tensor *y = act_case(&g, ty, K, N, T, op, w1, w2, xr, r);
                assert_int_equal(run_on(EMBER_BACKEND_CPU, &g, y, &c), EMBER_OK);
                em_graph_free(&g, &alloc);
                new_graph(&g);
                y = act_case(&g, ty, K, N, T, op, w1, w2, x, r);
                int rc = run_on(EMBER_BACKEND_VULKAN, &g, y, &v);
                if (rc) print_error("%s\n", err);
                assert_int_equal(rc, EMBER_OK);
                em_graph_free(&g, &alloc);
                double tol = 1e-5 * sqrt((double)K) * (op == 2 ? 4 : 1), worst = 0;
                for (size_t i = 0; i < c.n; i++) {
                    double d = fabs((double)c.y[i] - v.y[i]) / (1 + fabs((double)c.y[i]));
                    if (!(d <= tol)) {
                        print_error("%s %s: element %zu: cpu %.9g vulkan %.9g\n", ops[op],
                                    ember_type_name((int)ty), i, c.y[i], v.y[i]);
                        fail();
                    }
                    worst = d > worst ? d : worst;
                }
                print_message("act q8 %-18s %-4s K %4lld N %3lld T %lld%s: worst %.2e (bound %.0e)\n",
                              ops[op], ember_type_name((int)ty), (long long)K, (long long)N,
                              (long long)T, emulated ? " (emulated dot)" : "", worst, tol);
                /* the scale, quant_act and the one mul_mvq dispatch; past 8
                 * tokens the scale, round_act, the tiles' product(s) and the
                 * add or SwiGLU; then the output's copy */
                assert_int_equal(v.commands, T <= 8 ? 4 : op == 0 ? 4 : op == 1 ? 5 : 6);
                free(c.y), free(v.y), free(w1), free(w2), free(x), free(xr), free(r);
            }
    unsetenv("EMBER_VULKAN_NO_IDOT");
    unsetenv("EMBER_VULKAN_NO_COOPMAT");
    vk_act = EMBER_TYPE_F32;
}

/* act_type Q8_0 prompts on a device with cooperative matrices: the tiles
 * run on them (mul_mmc.comp) with F16 inputs, every block type, tails of
 * rows and tokens included. x is on its 8-bit grid (exact in F16 up to
 * the scale's rounding) and a weight rounds to F16 at 2^-11, so each
 * term is off by at most ~3 2^-11 of |w x|: the bound is that times
 * sum |w x| (the CPU's dequantized weights), against an F32 reference
 * of the same rounded x. Devices without them run mul_mm.comp and meet
 * the bound easily; a wrong tile, layout or tail misses it by far. */
static void test_coopmat(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    static const int64_t shapes[][3] = { { 64, 33, 9 },   { 256, 130, 70 }, { 512, 64, 64 },
                                         { 96, 200, 130 }, { 1024, 70, 17 } };
    vk_act = EMBER_TYPE_Q8_0;
    uint32_t used = 0, cases = 0;
    for (size_t ti = 2; ti < N_WTYPES; ti++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            uint32_t ty = wtypes[ti];
            int64_t K = shapes[s][0], N = shapes[s][1], T = shapes[s][2];
            if (!fits_blocks(ty, K)) continue;
            em_graph g;
            new_graph(&g);
            void *w;
            float *x;
            rand_weight(&g, &w, ty, K, N);
            rand_f32(&g, &x, K, T, 1, 1);
            em_graph_free(&g, &alloc);
            round_q8(x, K * T);
            float *wd = malloc((size_t)(K * N) * sizeof *wd);
            size_t rb = ember_type_row_size(ty, K);
            for (int64_t n = 0; n < N; n++)
                assert_true(em_dequantize_row(ty, (uint8_t *)w + rb * (size_t)n, K, wd + n * K));
            float *r = calloc((size_t)(N * T), sizeof *r); /* act_case's unused residual */
            run_out c = { 0 }, v = { 0 };
            new_graph(&g);
            em_tensor *y = act_case(&g, ty, K, N, T, 0, w, w, x, r);
            assert_int_equal(run_on(EMBER_BACKEND_CPU, &g, y, &c), EMBER_OK);
            int rc = run_on(EMBER_BACKEND_VULKAN, &g, y, &v);
            if (rc) print_error("%s\n", err);
            assert_int_equal(rc, EMBER_OK);
            em_graph_free(&g, &alloc);
            double worst = 0;
            for (int64_t t = 0; t < T; t++)
                for (int64_t n = 0; n < N; n++) {
                    double mag = 0;
                    for (int64_t k = 0; k < K; k++) mag += fabs((double)wd[n * K + k] * x[t * K + k]);
                    size_t i = (size_t)(t * N + n);
                    double d = fabs((double)c.y[i] - v.y[i]) / (mag + 1e-30);
                    if (!(d <= 1.5e-3)) {
                        print_error("%s K %lld N %lld T %lld: y[%lld][%lld] cpu %.9g vulkan "
                                    "%.9g (sum |w x| %.3g)\n", ember_type_name((int)ty),
                                    (long long)K, (long long)N, (long long)T, (long long)t,
                                    (long long)n, c.y[i], v.y[i], mag);
                        fail();
                    }
                    worst = d > worst ? d : worst;
                }
            used += v.coopmat, cases++;
            print_message("coopmat %-4s K %4lld N %3lld T %3lld: %s, worst %.2e of sum |w x|\n",
                          ember_type_name((int)ty), (long long)K, (long long)N, (long long)T,
                          v.coopmat ? "mul_mmc" : "mul_mm", worst);
            free(c.y), free(v.y), free(w), free(x), free(wd), free(r);
        }
    vk_act = EMBER_TYPE_F32;
    /* where the device has them, every case ran on them, once */
    if (used) assert_int_equal(used, cases);
}

/* An RMS norm whose readers are all 8-bit products writes their 8-bit
 * copy itself (rms_norm.comp Q8): no quant_act dispatch. The reference is
 * the CPU backend with act_type Q8_0 (the same rounding; where the CPU has
 * no 8-bit path it does not round, and the case is skipped). */
static void test_norm_q8(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    if (!(ember_cpu_features() & em_cpu_mask() & EMBER_CPU_AVX2)) {
        print_message("the CPU backend does not round activations here: skipped\n");
        skip();
    }
    static const int64_t shapes[][3] = { { 64, 33, 1 }, { 2048, 130, 3 }, { 96, 7, 8 },
                                         { 4096, 70, 1 } };
    vk_act = EMBER_TYPE_Q8_0;
    for (size_t ti = 2; ti < N_WTYPES; ti += 3)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            uint32_t ty = wtypes[ti];
            int64_t K = shapes[s][0], N = shapes[s][1], T = shapes[s][2];
            if (!fits_blocks(ty, K)) continue;
            em_graph g;
            new_graph(&g);
            void *w[3];
            float *x, *nw;
            em_tensor *xt = em_reshape(&g, rand_f32(&g, &x, K, T, 1, 3), 2, (int64_t[]){ K, T });
            em_tensor *nwt = em_reshape(&g, rand_f32(&g, &nw, K, 1, 1, 1), 1, (int64_t[]){ K });
            em_tensor *h = em_rms_norm(&g, xt, nwt, 1e-5f), *y[3];
            for (int i = 0; i < 3; i++) {
                y[i] = em_matmul(&g, rand_weight(&g, &w[i], ty, K, N + i), h);
                y[i]->keep = 1;
            }
            char what[80];
            snprintf(what, sizeof what, "rms_norm -> 3 products %s K %lld T %lld, act q8",
                     ember_type_name((int)ty), (long long)K, (long long)T);
            run_out c = { 0 }, v = { 0 };
            cpu_act = EMBER_TYPE_Q8_0; /* the CPU with 8-bit activations: the reference */
            assert_int_equal(run_on(EMBER_BACKEND_CPU, &g, y[2], &c), EMBER_OK);
            cpu_act = EMBER_TYPE_F32;
            int rc = run_on(EMBER_BACKEND_VULKAN, &g, y[2], &v);
            if (rc) print_error("%s\n", err);
            assert_int_equal(rc, EMBER_OK);
            double tol = 1e-5 * sqrt((double)K), worst = 0;
            for (size_t i = 0; i < c.n; i++) {
                double d = fabs((double)c.y[i] - v.y[i]) / (1 + fabs((double)c.y[i]));
                worst = d > worst ? d : worst;
            }
            print_message("%-48s worst %.2e (bound %.0e)\n", what, worst, tol);
            assert_true(worst <= tol);
            /* the norm (with the 8-bit copy), 3 products, 3 copies; a
             * barrier after the norm (its write at binding 2 is tracked)
             * and one before the copies */
            assert_int_equal(v.commands, 7);
            assert_int_equal(v.barriers, 2);
            free(c.y), free(v.y), free(x), free(nw);
            for (int i = 0; i < 3; i++) free(w[i]);
            em_graph_free(&g, &alloc);
        }
    vk_act = EMBER_TYPE_F32;
}

/* h = r + W x for a layer's residual add (W Q8_0, K -> N, T tokens; x
 * scaled once so it is computed, not a leaf), and the RMS norm's weight;
 * the host arrays in *x, *r, *nw, *w (the caller frees them). */
static em_tensor *residual_add(em_graph *g, int64_t K, int64_t N, int64_t T, float **x, float **r,
                               float **nw, void **w, em_tensor **nwt) {
    em_tensor *xt = em_scale(g, rand_f32(g, x, K, T, 1, 1), 1.0f);
    xt = em_reshape(g, xt, 2, (int64_t[]){ K, T });
    em_tensor *rt = em_reshape(g, rand_f32(g, r, N, T, 1, 2), 2, (int64_t[]){ N, T });
    *nwt = em_reshape(g, rand_f32(g, nw, N, 1, 1, 3), 1, (int64_t[]){ N });
    return em_add(g, rt, em_matmul(g, rand_weight(g, w, EMBER_TYPE_Q8_0, K, N), xt));
}

/* 8-bit roundings folded into the products before them (mul_mvq.comp
 * EPI): a residual add's RMS norm, rounded, written by the add's product
 * (the norm skipped), and a SwiGLU's output rounded by the SwiGLU's
 * products, for a layer's shape: h = r + W x; y = swiglu(Wg n(h), Wu
 * n(h)); z = Wd y. Each fold must give what the same graph gives with
 * EMBER_VULKAN_NO_EPI=1 (the dispatches apart) to float order; the norm
 * kept (its F32 output wanted) must not be folded. The CPU backend with
 * act_type Q8_0 checks the whole loosely: where a value lands on a
 * rounding boundary of an 8-bit copy on one side only (the norm's sum of
 * squares is added in another order), the flip moves every output of its
 * token by ~1e-2. */
static void test_epilogues(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    if (!(ember_cpu_features() & em_cpu_mask() & EMBER_CPU_AVX2)) {
        print_message("the CPU backend does not round activations here: skipped\n");
        skip();
    }
    static const int64_t shapes[][4] = { { 64, 64, 96, 1 }, { 256, 128, 160, 3 },
                                         { 96, 2048, 64, 8 }, { 128, 96, 4096, 2 },
                                         { 160, 320, 224, 1 } };
    /* folded, by counts: one token's roundings made by the last of each
     * block's workgroups, not by a workgroup holding the whole block */
    static const char *const vars[] = { "apart", "folded", "norm kept", "by counts" };
    vk_act = EMBER_TYPE_Q8_0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        float *apart = NULL;
        for (int var = 0; var < 4; var++) {
            int64_t K = shapes[s][0], N = shapes[s][1], F = shapes[s][2], T = shapes[s][3];
            rng = 0x9e3779b97f4a7c15ull + s; /* the same values for the three */
            em_graph g;
            new_graph(&g);
            void *w[4];
            float *x, *r, *nw;
            em_tensor *nwt, *h = residual_add(&g, K, N, T, &x, &r, &nw, &w[0], &nwt);
            em_tensor *n = em_rms_norm(&g, h, nwt, 1e-5f);
            n->keep = var == 2;
            em_tensor *y = em_swiglu(&g, em_matmul(&g, rand_weight(&g, &w[1], EMBER_TYPE_Q4_0, N, F), n),
                                     em_matmul(&g, rand_weight(&g, &w[2], EMBER_TYPE_Q4_0, N, F), n));
            em_tensor *z = em_matmul(&g, rand_weight(&g, &w[3], EMBER_TYPE_Q8_0, F, 40), y);
            if (var == 0) setenv("EMBER_VULKAN_NO_EPI", "1", 1);
            if (var == 3) setenv("EMBER_VULKAN_NO_OWN_BLOCKS", "1", 1);
            run_out c = { 0 }, v = { 0 };
            cpu_act = EMBER_TYPE_Q8_0;
            assert_int_equal(run_on(EMBER_BACKEND_CPU, &g, z, &c), EMBER_OK);
            cpu_act = EMBER_TYPE_F32;
            int rc = run_on(EMBER_BACKEND_VULKAN, &g, z, &v);
            unsetenv("EMBER_VULKAN_NO_EPI");
            unsetenv("EMBER_VULKAN_NO_OWN_BLOCKS");
            if (rc) print_error("%s\n", err);
            assert_int_equal(rc, EMBER_OK);
            double tol = 1e-5 * sqrt((double)F) * 4, worst = 0, cpu = 0;
            for (size_t i = 0; i < c.n; i++) {
                double d = fabs((double)c.y[i] - v.y[i]) / (1 + fabs((double)c.y[i]));
                cpu += d * d;
                if (apart) {
                    d = fabs((double)apart[i] - v.y[i]) / (1 + fabs((double)apart[i]));
                    worst = d > worst ? d : worst;
                }
            }
            cpu = sqrt(cpu / (double)c.n);
            print_message("add -> norm -> swiglu -> product K %lld N %lld F %lld T %lld, %-9s: "
                          "%llu commands, against apart worst %.2e (bound %.0e), against the "
                          "cpu rms %.2e\n", (long long)K, (long long)N, (long long)F,
                          (long long)T, vars[var], (unsigned long long)v.commands, worst, tol, cpu);
            assert_true(worst <= tol && cpu < 3e-2);
            /* the scale, quant_act of x, the three products (the SwiGLU's
             * two as one) and the copy out; apart, the norm (writing its
             * 8-bit copy) and quant_act of the SwiGLU's output; the norm
             * kept, its dispatch and its copy out, the SwiGLU's fold kept */
            assert_int_equal(v.commands, var == 1 || var == 3 ? 6 : 8);
            if (var == 0) apart = v.y, v.y = NULL;
            free(c.y), free(v.y), free(x), free(r), free(nw);
            for (int i = 0; i < 4; i++) free(w[i]);
            em_graph_free(&g, &alloc);
        }
        free(apart);
    }
    vk_act = EMBER_TYPE_F32;
}

/* A residual add's RMS norm folded into the add's product (mul_mvq.comp
 * EPI 2): its 8-bit copy is written per block without 1 / rms, and the
 * products that read it apply 1 / rms from the blocks' sums of squares
 * before rounding each block's scale to 16 bits. The products after it
 * must agree with the norm's own dispatch (EMBER_VULKAN_NO_EPI=1) to
 * float order: scales rounded after the 1 / rms would differ by ~2^-11
 * per block (a first version did; worst 4e-3 here). */
static void test_norm_deferred(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    static const int64_t shapes[][4] = { { 64, 64, 96, 1 }, { 256, 128, 160, 3 },
                                         { 96, 2048, 64, 8 }, { 128, 96, 40, 2 } };
    vk_act = EMBER_TYPE_Q8_0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        float *out[2] = { NULL, NULL };
        size_t n = 0;
        uint64_t cmds[2] = { 0, 0 };
        for (int var = 0; var < 2; var++) {
            int64_t K = shapes[s][0], N = shapes[s][1], F = shapes[s][2], T = shapes[s][3];
            rng = 0x51ed2701f00dull + s;
            em_graph g;
            new_graph(&g);
            void *w[2];
            float *x, *r, *nw;
            em_tensor *nwt, *h = residual_add(&g, K, N, T, &x, &r, &nw, &w[0], &nwt);
            em_tensor *z = em_matmul(&g, rand_weight(&g, &w[1], EMBER_TYPE_Q8_0, N, F),
                                     em_rms_norm(&g, h, nwt, 1e-5f));
            if (var == 0) setenv("EMBER_VULKAN_NO_EPI", "1", 1);
            run_out v = { 0 };
            int rc = run_on(EMBER_BACKEND_VULKAN, &g, z, &v);
            unsetenv("EMBER_VULKAN_NO_EPI");
            if (rc) print_error("%s\n", err);
            assert_int_equal(rc, EMBER_OK);
            out[var] = v.y, n = v.n, cmds[var] = v.commands;
            free(x), free(r), free(nw), free(w[0]), free(w[1]);
            em_graph_free(&g, &alloc);
        }
        double worst = 0, tol = 1e-5 * sqrt((double)shapes[s][1]) * 4;
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)out[0][i] - out[1][i]) / (1 + fabs((double)out[0][i]));
            worst = d > worst ? d : worst;
        }
        print_message("add -> norm -> product K %lld N %lld F %lld T %lld: folded (%llu commands) "
                      "against apart (%llu) worst %.2e (bound %.0e)\n", (long long)shapes[s][0],
                      (long long)shapes[s][1], (long long)shapes[s][2], (long long)shapes[s][3],
                      (unsigned long long)cmds[1], (unsigned long long)cmds[0], worst, tol);
        assert_true(cmds[1] < cmds[0]); /* the norm's dispatch is gone */
        assert_true(worst <= tol);
        free(out[0]), free(out[1]);
    }
    vk_act = EMBER_TYPE_F32;
}

/* Barriers only between dependent commands: three products of one input
 * (a layer's Q, K and V) run without one between them, and their outputs'
 * copies to the host wait behind one. */
static void test_barriers(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    em_graph g;
    new_graph(&g);
    void *w[3];
    float *x;
    em_tensor *xt = em_reshape(&g, rand_f32(&g, &x, 64, 2, 1, 1), 2, (int64_t[]){ 64, 2 });
    em_tensor *y[3];
    for (int i = 0; i < 3; i++) {
        y[i] = em_matmul(&g, rand_weight(&g, &w[i], EMBER_TYPE_Q8_0, 64, 40 + i), xt);
        y[i]->keep = 1;
    }
    run_out st;
    compare_stats(&g, y[2], 4e-5 * 8, "three independent products", &st);
    assert_int_equal(st.commands, 6); /* 3 dispatches, 3 copies */
    assert_int_equal(st.barriers, 1);
    /* a chain: each product reads the one before */
    em_graph_free(&g, &alloc);
    free(x);
    new_graph(&g);
    void *wc[3];
    em_tensor *h = em_reshape(&g, rand_f32(&g, &x, 64, 2, 1, 1), 2, (int64_t[]){ 64, 2 });
    for (int i = 0; i < 3; i++) h = em_matmul(&g, rand_weight(&g, &wc[i], EMBER_TYPE_F32, 64, 64), h);
    compare_stats(&g, h, 1e-5 * 8 * 3, "three chained products", &st);
    assert_int_equal(st.commands, 4);
    assert_int_equal(st.barriers, 3);
    em_graph_free(&g, &alloc);
    for (int i = 0; i < 3; i++) free(w[i]), free(wc[i]);
    free(x);
}

static void test_get_rows(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    for (size_t ti = 0; ti < N_WTYPES; ti++) {
        em_graph g;
        new_graph(&g);
        void *w;
        static int32_t ids[] = { 3, 0, 9, 3, 5 };
        int64_t C = fits_blocks(wtypes[ti], 96) ? 96 : 512; /* K-quants: two units per row */
        em_tensor *tab = rand_weight(&g, &w, wtypes[ti], C, 10);
        em_tensor *it = em_leaf(&g, EM_TYPE_I32, 1, (int64_t[]){ 5 }, ids);
        em_tensor *y = em_get_rows(&g, tab, it);
        char what[80];
        snprintf(what, sizeof what, "get_rows %s", ember_type_name((int)wtypes[ti]));
        compare(&g, y, 0, what);
        em_graph_free(&g, &alloc);
        free(w);
    }
}

static void test_rms_norm(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    static const int64_t ns[] = { 1, 33, 200, 2048, 5000 };
    for (size_t i = 0; i < 4; i++)
        for (int with_w = 0; with_w < 2; with_w++) {
            em_graph g;
            new_graph(&g);
            float *x, *w;
            em_tensor *xt = rand_f32(&g, &x, ns[i], 3, 1, 4);
            em_tensor *wt = rand_f32(&g, &w, ns[i], 1, 1, 2);
            em_tensor *y = em_rms_norm(&g, em_reshape(&g, xt, 2, (int64_t[]){ ns[i], 3 }),
                                       with_w ? em_reshape(&g, wt, 1, (int64_t[]){ ns[i] }) : NULL,
                                       1e-5f);
            char what[80];
            snprintf(what, sizeof what, "rms_norm n %lld%s", (long long)ns[i], with_w ? " weighted" : "");
            compare(&g, y, 1e-5, what);
            em_graph_free(&g, &alloc);
            free(x);
            free(w);
        }
}

/* add and mul: b as a full tensor, one broadcast row, a scalar per row */
static void test_binary(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    for (int op = 0; op < 2; op++)
        for (int mode = 0; mode < 3; mode++) {
            em_graph g;
            new_graph(&g);
            float *a, *b;
            int64_t n = 300, rows = 7;
            em_tensor *at = rand_f32(&g, &a, n, rows, 1, 3);
            em_tensor *bt = mode == 0 ? rand_f32(&g, &b, n, rows, 1, 3)
                          : mode == 1 ? rand_f32(&g, &b, n, 1, 1, 3)
                                      : rand_f32(&g, &b, 1, rows, 1, 3);
            em_tensor *a2 = em_reshape(&g, at, 2, (int64_t[]){ n, rows });
            em_tensor *b2 = em_reshape(&g, bt, 2, (int64_t[]){ bt->ne[0], bt->ne[1] });
            em_tensor *y = op ? em_mul(&g, a2, b2) : em_add(&g, a2, b2);
            char what[80];
            snprintf(what, sizeof what, "%s, b %s", op ? "mul" : "add",
                     mode == 0 ? "full" : mode == 1 ? "one row" : "a scalar per row");
            compare(&g, y, 0, what);
            em_graph_free(&g, &alloc);
            free(a);
            free(b);
        }
}

/* swiglu, scale, sigmoid, softmax (exp: a few ulp apart) */
static void test_unary(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    for (int op = 0; op < 4; op++) {
        em_graph g;
        new_graph(&g);
        float *a, *b;
        int64_t n = 1000, rows = 5;
        em_tensor *at = em_reshape(&g, rand_f32(&g, &a, n, rows, 1, 12), 2, (int64_t[]){ n, rows });
        em_tensor *bt = em_reshape(&g, rand_f32(&g, &b, n, rows, 1, 2), 2, (int64_t[]){ n, rows });
        static const char *names[] = { "swiglu", "scale", "sigmoid", "softmax" };
        em_tensor *y = op == 0 ? em_swiglu(&g, at, bt)
                     : op == 1 ? em_scale(&g, at, 0.37f)
                     : op == 2 ? em_sigmoid(&g, at)
                               : em_softmax(&g, at);
        compare(&g, y, 2e-6, names[op]);
        em_graph_free(&g, &alloc);
        free(a);
        free(b);
    }
}

/* both pairings, partial rotation, positions up to 40000 (large angles:
 * the table is made on the host in double precision) */
static void test_rope(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    for (int mode = 0; mode <= 2; mode += 2) {
        em_graph g;
        new_graph(&g);
        float *x, inv[24];
        static int32_t pos[] = { 0, 1, 17, 40000 };
        int64_t D = 64, H = 3, T = 4;
        int n_rot = 48;
        for (int i = 0; i < n_rot / 2; i++) inv[i] = powf(10000.0f, -2.0f * (float)i / (float)n_rot);
        em_tensor *xt = rand_f32(&g, &x, D, H, T, 2);
        em_tensor *pt = em_leaf(&g, EM_TYPE_I32, 1, (int64_t[]){ T }, pos);
        em_tensor *ft = em_leaf(&g, EMBER_TYPE_F32, 1, (int64_t[]){ n_rot / 2 }, inv);
        em_tensor *y = em_rope(&g, xt, pt, ft, n_rot, mode, 0.9f);
        compare(&g, y, 1e-6, mode ? "rope halves" : "rope adjacent pairs");
        em_graph_free(&g, &alloc);
        free(x);
    }
}

/* Device selection errors come back as statuses. */

/* The KV ops: one batch holding every position of two sequences (5 and 37
 * tokens: partial chunks, several KV blocks of 16), stored with kv_store
 * into a paged cache of the given type, then causal attention over it,
 * four query heads on two KV heads (GQA). Each backend gets its own cache,
 * prepared identically, so both have the same block tables. */
enum { ATT_T = 42 };
static int run_attn_on(int kind, uint32_t kv_type, int64_t D, int rope_mode, const float *q,
                       const float *k, const float *v, float *out) {
    em_backend_config cfg = { kind, 0, 2, em_cpu_mask(), EMBER_TYPE_F32 };
    em_backend *b = NULL;
    int rc = em_backend_create(&cfg, &alloc, err, &b);
    if (rc) return rc;
    em_kv kv;
    const int64_t H = 4, Hkv = 2;
    assert_int_equal(em_kv_init(&kv, &alloc, 1, D * Hkv, D * Hkv, 64, 2, 0, 16, kv_type,
                                (em_layer_range){ 0, em_backend_keeps_kv(b) }), EMBER_OK);
    static int32_t pos[ATT_T], seq[ATT_T], slots[ATT_T];
    em_kv_prepare(&kv, 0, 0, 5);
    em_kv_prepare(&kv, 1, 0, 37);
    for (int t = 0; t < ATT_T; t++) {
        seq[t] = t < 5 ? 0 : 1;
        pos[t] = t < 5 ? t : t - 5;
        slots[t] = (int32_t)em_kv_slot(&kv, seq[t], pos[t]);
    }
    rc = em_backend_kv_attach(b, &kv);
    em_graph g;
    new_graph(&g);
    g.kv = &kv;
    em_tensor *qt = em_leaf(&g, EMBER_TYPE_F32, 3, (int64_t[]){ D, H, ATT_T }, q);
    em_tensor *kt = em_leaf(&g, EMBER_TYPE_F32, 2, (int64_t[]){ D * Hkv, ATT_T }, k);
    em_tensor *vt = em_leaf(&g, EMBER_TYPE_F32, 2, (int64_t[]){ D * Hkv, ATT_T }, v);
    em_tensor *st = em_input(&g, EM_TYPE_I32, 1, (int64_t[]){ ATT_T }, slots);
    em_tensor *pt = em_input(&g, EM_TYPE_I32, 1, (int64_t[]){ ATT_T }, pos);
    static float inv[64];
    int n_rot = (int)(D - D / 4) & ~1; /* a partial rotation: the rest is copied */
    if (rope_mode >= 0) { /* RoPE on Q and K, which Vulkan folds into attention and the store */
        for (int i = 0; i < n_rot / 2; i++) inv[i] = powf(10000.0f, -2.0f * (float)i / (float)n_rot);
        em_tensor *ft = em_leaf(&g, EMBER_TYPE_F32, 1, (int64_t[]){ n_rot / 2 }, inv);
        qt = em_rope(&g, qt, pt, ft, n_rot, rope_mode, 1.0f);
        em_tensor *k3 = em_reshape(&g, kt, 3, (int64_t[]){ D, Hkv, ATT_T });
        kt = em_reshape(&g, em_rope(&g, k3, pt, ft, n_rot, rope_mode, 1.0f), 2,
                        (int64_t[]){ D * Hkv, ATT_T });
    }
    em_tensor *sq = em_input(&g, EM_TYPE_I32, 1, (int64_t[]){ ATT_T }, seq);
    em_tensor *stored = em_kv_store(&g, kt, vt, st, 0);
    em_tensor *y = em_attn(&g, qt, pt, sq, stored, 0, D, 1.0f / sqrtf((float)D));
    y->keep = 1;
    em_plan p;
    em_buffer buf = { 0 };
    if (!rc && !(rc = em_plan_make(&p, &g, &alloc))) {
        if (!(rc = em_backend_buffer_alloc(b, p.arena_size, &buf)) &&
            !(rc = em_plan_apply(&p, &g, buf.base, err)) && !(rc = em_backend_graph_reserve(b, &g)) &&
            !(rc = em_backend_graph_compute(b, &g))) {
            for (int64_t t = 0; t < ATT_T; t++)
                memcpy(out + t * D * H, (char *)y->data + t * y->nb[1], (size_t)(D * H) * 4);
            uint64_t commands = 0, barriers = 0;
            em_vulkan_run_stats(b, &commands, &barriers);
            const char *nf = getenv("EMBER_VULKAN_NO_ROPE_FOLD");
            /* the store, the attention and the copy out: both RoPEs folded */
            if (kind == EMBER_BACKEND_VULKAN && rope_mode >= 0 && !(nf && *nf))
                assert_int_equal(commands, 3);
            /* a prompt of F32 or Q8_0 rows, heads up to 128: query tiles */
            const char *nt = getenv("EMBER_VULKAN_NO_TILES"), *na = getenv("EMBER_VULKAN_NO_ATTN_TILES");
            bool tiles = kv_type != EMBER_TYPE_F16 && D <= 128 && !(nt && *nt) && !(na && *na);
            if (kind == EMBER_BACKEND_VULKAN)
                assert_int_equal(em_vulkan_dispatches(b, "attn_tile"), tiles ? 1 : 0);
        }
        em_backend_buffer_free(b, &buf);
        em_plan_free(&p, &alloc);
    }
    em_graph_free(&g, &alloc);
    em_backend_destroy(&b);
    em_kv_free(&kv, &alloc);
    return rc;
}

/* Bounds: F32 and Q8_0 caches hold the same values on both backends, so
 * only the order of float sums differs; with an F16 cache both round the
 * query and each probability to F16, and a last-bit difference before a
 * rounding moves a value by a whole F16 step (seen up to 9e-5). */
static void test_attention(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    /* rope: -1 none, else RoPE's mode (0 adjacent pairs, 2 halves) on Q and K */
    const struct { uint32_t type; int64_t D; double tol; int rope; } cases[] = {
        { EMBER_TYPE_F32, 64, 1e-5, -1 }, { EMBER_TYPE_F32, 36, 1e-5, -1 },
        { EMBER_TYPE_F32, 34, 1e-5, -1 }, { EMBER_TYPE_F32, 100, 1e-5, 0 },
        { EMBER_TYPE_F16, 64, 5e-4, -1 }, { EMBER_TYPE_F16, 36, 5e-4, -1 },
        { EMBER_TYPE_Q8_0, 64, 1e-4, -1 }, { EMBER_TYPE_F32, 160, 1e-5, -1 },
        { EMBER_TYPE_F32, 64, 1e-5, 0 },  { EMBER_TYPE_F32, 36, 1e-5, 2 },
        { EMBER_TYPE_F16, 64, 5e-4, 2 },  { EMBER_TYPE_Q8_0, 64, 1e-4, 0 },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t D = cases[c].D, n = D * 4 * ATT_T, nkv = D * 2 * ATT_T;
        float *q = malloc(sizeof(float) * (size_t)n), *k = malloc(sizeof(float) * (size_t)nkv);
        float *v = malloc(sizeof(float) * (size_t)nkv);
        float *yc = malloc(sizeof(float) * (size_t)n), *yv = malloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++) q[i] = frand();
        for (int64_t i = 0; i < nkv; i++) k[i] = frand(), v[i] = frand();
        assert_int_equal(run_attn_on(EMBER_BACKEND_CPU, cases[c].type, D, cases[c].rope, q, k, v, yc),
                         EMBER_OK);
        /* query tiles (attn_tile.comp) where they apply, then attn.comp */
        for (int apart = 0; apart < 2; apart++) {
            if (apart) setenv("EMBER_VULKAN_NO_TILES", "1", 1);
            int rc = run_attn_on(EMBER_BACKEND_VULKAN, cases[c].type, D, cases[c].rope, q, k, v, yv);
            unsetenv("EMBER_VULKAN_NO_TILES");
            if (rc) print_error("attention: %s\n", err);
            assert_int_equal(rc, EMBER_OK);
            double worst = 0;
            for (int64_t i = 0; i < n; i++) {
                double d = fabs((double)yc[i] - yv[i]) / (1 + fabs((double)yc[i]));
                worst = d > worst ? d : worst;
            }
            print_message("%skv_store + attention%s, %s cache, D %lld: %lld values, worst %.2e "
                          "(bound %.0e)\n", cases[c].rope < 0 ? "" : cases[c].rope ? "rope halves + "
                          : "rope pairs + ", apart ? " (no tiles)" : "",
                          ember_type_name((int)cases[c].type), (long long)D, (long long)n, worst,
                          cases[c].tol);
            assert_true(worst <= cases[c].tol);
        }
        free(q), free(k), free(v), free(yc), free(yv);
    }
}

/* When set, attention's output goes through this Q8_0 [D * 4, DEC_N]
 * product (the output projection) and `out` gets the product's rows, the
 * backend's activations rounded to 8 bits (dec_act). */
enum { DEC_N = 24 };
static em_tensor *(*dec_proj)(em_graph *g);
static uint32_t dec_act = EMBER_TYPE_F32;

/* One graph of T tokens (sequence seq[t] at position pos[t]): their K
 * and V stored, their queries attended; out gets the attention (when
 * given). The arena is made for the graph and freed after. */
static int attn_step(em_backend *b, em_kv *kv, int64_t D, int T, const int32_t *pos,
                     const int32_t *seq, const float *q, const float *k, const float *v,
                     float *out) {
    const int64_t H = 4, Hkv = 2;
    static int32_t slots[512];
    for (int t = 0; t < T; t++) slots[t] = (int32_t)em_kv_slot(kv, seq[t], pos[t]);
    em_graph g;
    new_graph(&g);
    g.kv = kv;
    em_tensor *qt = em_leaf(&g, EMBER_TYPE_F32, 3, (int64_t[]){ D, H, T }, (void *)q);
    em_tensor *kt = em_leaf(&g, EMBER_TYPE_F32, 2, (int64_t[]){ D * Hkv, T }, (void *)k);
    em_tensor *vt = em_leaf(&g, EMBER_TYPE_F32, 2, (int64_t[]){ D * Hkv, T }, (void *)v);
    em_tensor *st = em_input(&g, EM_TYPE_I32, 1, (int64_t[]){ T }, slots);
    em_tensor *pt = em_input(&g, EM_TYPE_I32, 1, (int64_t[]){ T }, (void *)pos);
    em_tensor *sq = em_input(&g, EM_TYPE_I32, 1, (int64_t[]){ T }, (void *)seq);
    em_tensor *stored = em_kv_store(&g, kt, vt, st, 0);
    em_tensor *y = em_attn(&g, qt, pt, sq, stored, 0, D, 1.0f / sqrtf((float)D));
    int64_t row = D * H;
    if (dec_proj) y = em_matmul(&g, dec_proj(&g), y), row = DEC_N;
    y->keep = 1;
    em_plan p;
    em_buffer buf = { 0 };
    int rc = em_plan_make(&p, &g, &alloc);
    if (!rc) {
        if (!(rc = em_backend_buffer_alloc(b, p.arena_size, &buf)) &&
            !(rc = em_plan_apply(&p, &g, buf.base, err)) && !(rc = em_backend_graph_reserve(b, &g)) &&
            !(rc = em_backend_graph_compute(b, &g)) && out)
            for (int t = 0; t < T; t++)
                memcpy(out + t * row, (char *)y->data + t * y->nb[1], (size_t)row * 4);
        em_backend_buffer_free(b, &buf);
        em_plan_free(&p, &alloc);
    }
    em_graph_free(&g, &alloc);
    return rc;
}

/* Decode after long prompts: two sequences (300 and 45 positions) are
 * stored by one prompt graph, then one token each is attended, then one
 * more of the first sequence alone, which on
 * Vulkan splits each head's positions over workgroups (attn.comp) for F32
 * and Q8_0 caches, short splits and empty ones included; the F16 cache
 * stays whole. Against the CPU's same two steps. */
enum { DEC_P0 = 300, DEC_P1 = 45, DEC_T = DEC_P0 + DEC_P1 };
static float *dec_prompt_out; /* when set, the prompt step's attention */
static int run_decode_on(int kind, uint32_t kv_type, int64_t D, const float *q, const float *k,
                         const float *v, float *out) {
    em_backend_config cfg = { kind, 0, 2, em_cpu_mask(), dec_act };
    em_backend *b = NULL;
    int rc = em_backend_create(&cfg, &alloc, err, &b);
    if (rc) return rc;
    em_kv kv;
    assert_int_equal(em_kv_init(&kv, &alloc, 1, D * 2, D * 2, 512, 2, 0, 16, kv_type,
                                (em_layer_range){ 0, em_backend_keeps_kv(b) }), EMBER_OK);
    static int32_t pos[DEC_T], seq[DEC_T];
    em_kv_prepare(&kv, 0, 0, DEC_P0);
    em_kv_prepare(&kv, 1, 0, DEC_P1);
    for (int t = 0; t < DEC_T; t++) {
        seq[t] = t < DEC_P0 ? 0 : 1;
        pos[t] = t < DEC_P0 ? t : t - DEC_P0;
    }
    rc = em_backend_kv_attach(b, &kv);
    if (!rc) rc = attn_step(b, &kv, D, DEC_T, pos, seq, q, k, v, dec_prompt_out);
    int32_t dpos[2] = { DEC_P0, DEC_P1 }, dseq[2] = { 0, 1 };
    em_kv_prepare(&kv, 0, DEC_P0, DEC_P0 + 1);
    em_kv_prepare(&kv, 1, DEC_P1, DEC_P1 + 1);
    size_t nq = (size_t)(D * 4 * DEC_T), nk = (size_t)(D * 2 * DEC_T);
    if (!rc) rc = attn_step(b, &kv, D, 2, dpos, dseq, q + nq, k + nk, v + nk, out);
    /* then the first sequence alone, one position on: another shape on
     * the same scratch (whose counts must be where this one looks) */
    dpos[0]++;
    em_kv_prepare(&kv, 0, DEC_P0 + 1, DEC_P0 + 2);
    if (!rc) rc = attn_step(b, &kv, D, 1, dpos, dseq, q + nq + 8 * D, k + nk + 4 * D, v + nk + 4 * D,
                            out + (dec_proj ? 2 * DEC_N : 8 * D));
    em_kv_free(&kv, &alloc);
    em_backend_destroy(&b);
    return rc;
}

static void test_attention_decode(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    const struct { uint32_t type; int64_t D; double tol; } cases[] = {
        { EMBER_TYPE_F32, 64, 1e-5 }, { EMBER_TYPE_F32, 36, 1e-5 }, { EMBER_TYPE_F32, 16, 1e-5 },
        { EMBER_TYPE_Q8_0, 64, 1e-4 }, { EMBER_TYPE_F16, 64, 5e-4 },
        /* rows read 128 elements a step (attn.comp), then 32 */
        { EMBER_TYPE_F32, 128, 1e-5 }, { EMBER_TYPE_F32, 160, 1e-5 },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t D = cases[c].D, nq = D * 4 * (DEC_T + 4), nkv = D * 2 * (DEC_T + 4);
        float *q = malloc(sizeof(float) * (size_t)nq), *k = malloc(sizeof(float) * (size_t)nkv);
        float *v = malloc(sizeof(float) * (size_t)nkv);
        float yc[4 * 4 * 160], yv[4 * 4 * 160];
        for (int64_t i = 0; i < nq; i++) q[i] = frand();
        for (int64_t i = 0; i < nkv; i++) k[i] = frand(), v[i] = frand();
        /* the prompt's attention too (query tiles on Vulkan: 10 chunks of
         * 32 positions for the longer sequence, two sequences in a tile) */
        size_t np = (size_t)(D * 4 * DEC_T);
        float *pc = malloc(sizeof(float) * np), *pv = malloc(sizeof(float) * np);
        dec_prompt_out = pc;
        assert_int_equal(run_decode_on(EMBER_BACKEND_CPU, cases[c].type, D, q, k, v, yc), EMBER_OK);
        dec_prompt_out = pv;
        int rc = run_decode_on(EMBER_BACKEND_VULKAN, cases[c].type, D, q, k, v, yv);
        dec_prompt_out = NULL;
        if (rc) print_error("attention decode: %s\n", err);
        assert_int_equal(rc, EMBER_OK);
        double pworst = 0;
        for (size_t i = 0; i < np; i++) {
            double d = fabs((double)pc[i] - pv[i]) / (1 + fabs((double)pc[i]));
            pworst = d > pworst ? d : pworst;
        }
        print_message("prompt attention of %d and %d positions, %s cache, D %lld: worst %.2e "
                      "(bound %.0e)\n", DEC_P0, DEC_P1, ember_type_name((int)cases[c].type),
                      (long long)D, pworst, cases[c].tol);
        assert_true(pworst <= cases[c].tol);
        free(pc), free(pv);
        double worst = 0;
        for (int64_t i = 0; i < 3 * 4 * D; i++) {
            double d = fabs((double)yc[i] - yv[i]) / (1 + fabs((double)yc[i]));
            worst = d > worst ? d : worst;
        }
        print_message("decode attention after %d and %d positions, %s cache, D %lld: worst %.2e "
                      "(bound %.0e)\n", DEC_P0, DEC_P1, ember_type_name((int)cases[c].type),
                      (long long)D, worst, cases[c].tol);
        assert_true(worst <= cases[c].tol);
        free(q), free(k), free(v);
    }
}

static void *proj_w;
static int64_t proj_k;
static em_tensor *proj_leaf(em_graph *g) {
    return em_leaf(g, EMBER_TYPE_Q8_0, 2, (int64_t[]){ proj_k, DEC_N }, proj_w);
}

/* Attention's output rounded to 8 bits by the attention itself (attn.comp
 * Q8OUT) for the output projection, split (300 positions) and whole (45),
 * each cache type: the same values as quant_act's rounding
 * (EMBER_VULKAN_NO_EPI=1), exactly; heads of 48 (not whole blocks) keep
 * quant_act. */
static void test_attention_q8_out(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    const struct { uint32_t type; int64_t D; } cases[] = {
        { EMBER_TYPE_F32, 64 }, { EMBER_TYPE_F16, 64 }, { EMBER_TYPE_Q8_0, 64 }, { EMBER_TYPE_F32, 48 },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t D = cases[c].D, nq = D * 4 * (DEC_T + 4), nkv = D * 2 * (DEC_T + 4);
        float *q = malloc(sizeof(float) * (size_t)nq), *k = malloc(sizeof(float) * (size_t)nkv);
        float *v = malloc(sizeof(float) * (size_t)nkv);
        float y[2][3 * DEC_N];
        for (int64_t i = 0; i < nq; i++) q[i] = frand();
        for (int64_t i = 0; i < nkv; i++) k[i] = frand(), v[i] = frand();
        em_graph g;
        new_graph(&g);
        proj_k = D * 4;
        rand_weight(&g, &proj_w, EMBER_TYPE_Q8_0, proj_k, DEC_N);
        em_graph_free(&g, &alloc);
        dec_proj = proj_leaf;
        dec_act = EMBER_TYPE_Q8_0;
        for (int apart = 0; apart < 2; apart++) {
            if (apart) setenv("EMBER_VULKAN_NO_EPI", "1", 1);
            int rc = run_decode_on(EMBER_BACKEND_VULKAN, cases[c].type, D, q, k, v, y[apart]);
            unsetenv("EMBER_VULKAN_NO_EPI");
            if (rc) print_error("attention decode: %s\n", err);
            assert_int_equal(rc, EMBER_OK);
        }
        dec_proj = NULL;
        dec_act = EMBER_TYPE_F32;
        double worst = 0, mag = 0;
        for (int i = 0; i < 3 * DEC_N; i++) {
            worst = fmax(worst, fabs((double)y[0][i] - y[1][i]));
            mag = fmax(mag, fabs((double)y[1][i]));
        }
        print_message("decode attention -> 8-bit product, %s cache, D %lld: folded vs apart %.2e "
                      "(outputs up to %.2g)\n", ember_type_name((int)cases[c].type), (long long)D,
                      worst, mag);
        assert_true(worst == 0 && mag > 0);
        free(q), free(k), free(v), free(proj_w);
    }
}

/* An RMS norm read only by a product runs inside it (mul_mv.comp NORM,
 * opt-in: EMBER_VULKAN_NORM_FOLD=1): y = W rms_norm(x) g against the
 * CPU's two ops, for decode-sized batches; one dispatch plus the copy
 * out. */
static void test_norm_fold(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    setenv("EMBER_VULKAN_NORM_FOLD", "1", 1);
    static const uint32_t types[] = { EMBER_TYPE_F16, EMBER_TYPE_Q8_0, EMBER_TYPE_Q4_K };
    static const int64_t tokens[] = { 1, 3, 8 };
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t k = 0; k < 3; k++) {
            int64_t K = 512, N = 67, T = tokens[k];
            em_graph g;
            new_graph(&g);
            void *w;
            float *x, *gw;
            em_tensor *wt = rand_weight(&g, &w, types[ti], K, N);
            em_tensor *xt = em_reshape(&g, rand_f32(&g, &x, K, T, 1, 3), 2, (int64_t[]){ K, T });
            em_tensor *gt = em_reshape(&g, rand_f32(&g, &gw, K, 1, 1, 1), 1, (int64_t[]){ K });
            em_tensor *y = em_matmul(&g, wt, em_rms_norm(&g, xt, gt, 1e-5f));
            char what[80];
            snprintf(what, sizeof what, "W rms_norm(x) %s T %lld", ember_type_name((int)types[ti]),
                     (long long)T);
            run_out st;
            compare_stats(&g, y, product_tol(types[ti], T) * sqrt((double)K), what, &st);
            const char *ns = getenv("EMBER_VULKAN_NO_SUBGROUPS"); /* no mul_mv */
            if (!(ns && *ns)) assert_int_equal(st.commands, 2);
            em_graph_free(&g, &alloc);
            free(w), free(x), free(gw);
        }
    unsetenv("EMBER_VULKAN_NORM_FOLD");
}

/* MoE routing against the CPU on random logits: Mixtral's softmax top-2,
 * Qwen-MoE's top-4 of 60 without renormalising, DeepSeek-V3's sigmoid
 * with a selection bias, group limits and a scale. Ids must be equal. */
static void test_moe_route(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    static const em_route_params ps[] = {
        { 8, 2, EM_GATING_SOFTMAX, 1, 1, 1, 1.0f },
        { 60, 4, EM_GATING_SOFTMAX, 1, 1, 0, 1.0f },
        { 64, 6, EM_GATING_SIGMOID, 8, 3, 1, 2.5f },
        { 256, 8, EM_GATING_SIGMOID, 8, 4, 1, 2.5f },
    };
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++)
        for (int64_t T = 1; T <= 73; T += 36) {
            bool ties = T == 73; /* logits and biases on a coarse grid: ties to the lower index */
            em_graph g;
            new_graph(&g);
            float *lg, *bias = NULL;
            em_tensor *l = em_reshape(&g, rand_f32(&g, &lg, ps[k].n_expert, T, 1, 3), 2,
                                      (int64_t[]){ ps[k].n_expert, T });
            em_tensor *b = ps[k].gating == EM_GATING_SIGMOID
                               ? em_reshape(&g, rand_f32(&g, &bias, ps[k].n_expert, 1, 1, 0.2f), 1,
                                            (int64_t[]){ ps[k].n_expert })
                               : NULL;
            for (int64_t i = 0; ties && i < ps[k].n_expert * T; i++) lg[i] = floorf(lg[i]);
            for (int64_t i = 0; ties && bias && i < ps[k].n_expert; i++) bias[i] = 0;
            em_tensor *r = em_moe_route(&g, l, b, &ps[k]);
            char what[80];
            snprintf(what, sizeof what, "moe_route %d of %d, %s%s, T %lld%s", ps[k].n_used,
                     ps[k].n_expert, ps[k].gating == EM_GATING_SIGMOID ? "sigmoid" : "softmax",
                     ps[k].n_group > 1 ? ", groups" : "", (long long)T, ties ? " (ties)" : "");
            compare(&g, r, 1e-6, what);
            em_graph_free(&g, &alloc);
            free(lg);
            free(bias);
        }
}

/* [k, n, e] experts of type ty */
static em_tensor *rand_experts(em_graph *g, void **keep, uint32_t ty, int64_t k, int64_t n,
                               int64_t e) {
    em_tensor *flat = rand_weight(g, keep, ty, k, n * e);
    return em_leaf(g, ty, 3, (int64_t[]){ k, n, e }, flat->data);
}

/* The experts' products against the CPU, given a route (random weights,
 * distinct random experts per token): every weight type, one token,
 * a few, and a prompt whose 1200 (token, slot) pairs pass mul_mv.comp's
 * chunk of 1024. */
static void test_moe_ffn(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    static const int64_t shapes[][4] = { /* D, F, experts, used */
                                         { 64, 96, 8, 2 }, { 256, 256, 6, 4 } };
    static const int64_t tokens[] = { 1, 5, 300 };
    for (size_t ti = 0; ti < N_WTYPES; ti++)
        for (size_t s = 0; s < 2; s++)
            for (size_t tk = 0; tk < 3; tk++) {
                int64_t D = shapes[s][0], F = shapes[s][1], E = shapes[s][2], nu = shapes[s][3];
                int64_t T = tokens[tk];
                if (!fits_blocks(wtypes[ti], D) || !fits_blocks(wtypes[ti], F)) continue;
                em_graph g;
                new_graph(&g);
                void *wg, *wu, *wd;
                float *x, *rt = malloc((size_t)(2 * nu * T) * sizeof *rt);
                for (int64_t t = 0; t < T; t++)
                    for (int64_t j = 0; j < nu; j++) {
                        rt[t * 2 * nu + j] = 0.5f + 0.5f * frand();
                        int64_t e;
                        bool dup;
                        do { /* distinct experts per token */
                            e = (int64_t)((frand() + 1) * 0.5f * (float)E) % E;
                            dup = false;
                            for (int64_t q = 0; q < j; q++) dup |= rt[t * 2 * nu + nu + q] == (float)e;
                        } while (dup);
                        rt[t * 2 * nu + nu + j] = (float)e;
                    }
                em_tensor *xt = em_reshape(&g, rand_f32(&g, &x, D, T, 1, 1), 2, (int64_t[]){ D, T });
                em_tensor *route = em_input(&g, EMBER_TYPE_F32, 2, (int64_t[]){ 2 * nu, T }, rt);
                em_tensor *gate = rand_experts(&g, &wg, wtypes[ti], D, F, E);
                em_tensor *up = rand_experts(&g, &wu, wtypes[ti], D, F, E);
                em_tensor *down = rand_experts(&g, &wd, wtypes[ti], F, D, E);
                em_tensor *y = em_moe_ffn(&g, xt, route, gate, up, down, (int)nu, 0);
                char what[80];
                snprintf(what, sizeof what, "moe_ffn %s D %lld F %lld %lld of %lld, T %lld",
                         ember_type_name((int)wtypes[ti]), (long long)D, (long long)F,
                         (long long)nu, (long long)E, (long long)T);
                compare(&g, y, product_tol(wtypes[ti], T) * sqrt((double)F) * 8, what);
                em_graph_free(&g, &alloc);
                free(wg), free(wu), free(wd), free(x), free(rt);
            }
}

/* MLA's pieces: slices and concatenations of rows (odd widths), and the
 * per-head products, with heads contiguous or every head's rows a strided
 * view of a larger tensor (a combined attn_kv_b's value rows). */
static void test_mla_ops(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    for (int64_t T = 1; T <= 300; T += 299) {
        em_graph g;
        new_graph(&g);
        float *a, *b;
        em_tensor *at = em_reshape(&g, rand_f32(&g, &a, 37, 5, T, 1), 3, (int64_t[]){ 37, 5, T });
        em_tensor *bt = em_reshape(&g, rand_f32(&g, &b, 11, 5 * T, 1, 1), 2,
                                   (int64_t[]){ 11, 5 * T });
        em_tensor *sl = em_slice(&g, at, 13, 19);
        em_tensor *cat = em_concat(&g, em_reshape(&g, sl, 2, (int64_t[]){ 19, 5 * T }), bt);
        char what[80];
        snprintf(what, sizeof what, "concat(slice 13+19 of 37, 11), T %lld", (long long)T);
        compare(&g, cat, 0, what);
        em_graph_free(&g, &alloc);
        free(a), free(b);
    }
    static const uint32_t types[] = { EMBER_TYPE_F32, EMBER_TYPE_F16, EMBER_TYPE_Q8_0,
                                      EMBER_TYPE_Q4_0 };
    enum { K = 64, N = 24, H = 5, EXTRA = 7 }; /* EXTRA rows between heads in the view */
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (int strided = 0; strided < 2; strided++)
            for (int64_t T = 1; T <= 300; T += 299) {
                em_graph g;
                new_graph(&g);
                void *wd;
                float *x;
                int64_t per = strided ? N + EXTRA : N;
                em_tensor *flat = rand_weight(&g, &wd, types[ti], K, per * H);
                size_t rb = flat->nb[1];
                em_tensor *w = em_leaf_strided(&g, types[ti], (int64_t[]){ K, N, H, 1 },
                                               (size_t[]){ rb / K, rb, rb * per, rb * per * H },
                                               (char *)wd + (strided ? EXTRA * rb : 0));
                if (strided) w->ne[2] = H - 1; /* the view ends inside the tensor */
                int64_t heads = w->ne[2];
                em_tensor *xt = em_reshape(&g, rand_f32(&g, &x, K, heads, T, 1), 3,
                                           (int64_t[]){ K, heads, T });
                em_tensor *y = em_head_matmul(&g, w, xt);
                char what[80];
                snprintf(what, sizeof what, "head_matmul %s%s, %lld heads, T %lld",
                         ember_type_name((int)types[ti]), strided ? " (view)" : "",
                         (long long)heads, (long long)T);
                compare(&g, y, product_tol(types[ti], T) * sqrt((double)K), what);
                em_graph_free(&g, &alloc);
                free(wd), free(x);
            }
}

static void test_bad_device(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    em_backend_config cfg = { EMBER_BACKEND_VULKAN, 1000, 1, 0, EMBER_TYPE_F32 };
    em_backend *b = (em_backend *)&cfg;
    assert_int_equal(em_backend_create(&cfg, &alloc, err, &b), EMBER_ERR_INVALID_ARGUMENT);
    assert_null(b);
    assert_non_null(strstr(err, "device 1000"));
}

/* Many backends, several alive at once: they share one device (drivers
 * cap how many devices a process may create: the H100's refused after
 * about 30). */
static void test_many_backends(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    em_backend_config cfg = { EMBER_BACKEND_VULKAN, 0, 1, 0, EMBER_TYPE_F32 };
    em_backend *live[4] = { NULL };
    for (int i = 0; i < 100; i++) {
        em_backend_destroy(&live[i % 4]);
        int rc = em_backend_create(&cfg, &alloc, err, &live[i % 4]);
        if (rc) print_error("backend %d: %s\n", i, err);
        assert_int_equal(rc, EMBER_OK);
        em_buffer buf;
        assert_int_equal(em_backend_buffer_alloc(live[i % 4], 4096, &buf), EMBER_OK);
        em_backend_buffer_free(live[i % 4], &buf);
    }
    for (int i = 0; i < 4; i++) em_backend_destroy(&live[i]);
}

int main(void) {
    em_alloc_init(&alloc, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fused),   cmocka_unit_test(test_act_q8),
        cmocka_unit_test(test_coopmat),
        cmocka_unit_test(test_norm_q8),
        cmocka_unit_test(test_epilogues),
        cmocka_unit_test(test_norm_deferred),
        cmocka_unit_test(test_barriers),
        cmocka_unit_test(test_matmul),  cmocka_unit_test(test_get_rows),
        cmocka_unit_test(test_rms_norm), cmocka_unit_test(test_binary),
        cmocka_unit_test(test_unary),   cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention), cmocka_unit_test(test_attention_decode),
        cmocka_unit_test(test_attention_q8_out),
        cmocka_unit_test(test_norm_fold), cmocka_unit_test(test_moe_route),
        cmocka_unit_test(test_moe_ffn), cmocka_unit_test(test_mla_ops),
        cmocka_unit_test(test_bad_device), cmocka_unit_test(test_many_backends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
