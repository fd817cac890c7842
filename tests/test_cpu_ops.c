/* The CPU backend's matmul takes different paths by token count (dsp.h,
 * backends/cpu/ops.c): one token through row dot products (dot_q8x, or
 * dot_q8 / gemm_q8_few under act_type Q8_0, the F32 dot of the rounded
 * token under act_type BF16), a few tokens through gemm_q8_few, more
 * through the F32, 8-bit or BF16 tiles. A token must get the same result
 * whichever path its batch takes, up to the order of float sums (and,
 * with act_type F32, the 16-bit integer activations of the row path):
 * here each token of a batch is multiplied alone and compared with its
 * row of the batch's product, for every weight type, every activation
 * type and batch sizes that reach each path. The bound is relative to
 * sum_k |w_k x_k|, so a kernel that drops or repeats a block, or scales
 * one wrongly, fails it; the rounding steps of 8-bit activations do not
 * enter (both paths round the same activations the same way). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "lib/backend.h"
#include "lib/graph.h"
#include "lib/quant.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)(rng >> 40) / 16777216.0f * 2 - 1;
}

static em_alloc alloc;
static char err[512];

/* y = w x on the CPU backend (2 threads) with act_type act: w [K, N] of
 * type ty from raw rows, x [K, T]; y [N, T] into out. */
static void cpu_matmul(uint32_t ty, const void *w, int64_t K, int64_t N, const float *x,
                       int64_t T, int32_t act, float *out) {
    em_backend_config cfg = { EMBER_BACKEND_CPU, 0, 2, em_cpu_mask(), (uint32_t)act };
    em_backend *b = NULL;
    assert_int_equal(em_backend_create(&cfg, &alloc, err, &b), EMBER_OK);
    em_graph g;
    assert_int_equal(em_graph_init(&g, &alloc, 16), EMBER_OK);
    em_tensor *wt = em_leaf(&g, ty, 2, (int64_t[]){ K, N }, (void *)w);
    em_tensor *xt = em_leaf(&g, EMBER_TYPE_F32, 2, (int64_t[]){ K, T }, (void *)x);
    em_tensor *y = em_matmul(&g, wt, xt);
    y->keep = 1;
    em_plan p;
    em_buffer buf = { 0 };
    assert_int_equal(em_plan_make(&p, &g, &alloc), EMBER_OK);
    assert_int_equal(em_backend_buffer_alloc(b, p.arena_size, &buf), EMBER_OK);
    assert_int_equal(em_plan_apply(&p, &g, buf.base, err), EMBER_OK);
    assert_int_equal(em_backend_graph_reserve(b, &g), EMBER_OK);
    assert_int_equal(em_backend_graph_compute(b, &g), EMBER_OK);
    for (int64_t t = 0; t < T; t++)
        memcpy(out + t * N, (char *)y->data + t * y->nb[1], (size_t)N * sizeof(float));
    em_backend_buffer_free(b, &buf);
    em_plan_free(&p, &alloc);
    em_graph_free(&g, &alloc);
    em_backend_destroy(&b);
}

static void test_matmul_token_counts(void **state) {
    (void)state;
    static const uint32_t types[] = { EMBER_TYPE_Q8_0, EMBER_TYPE_Q4_0, EMBER_TYPE_Q4_1,
                                      EMBER_TYPE_Q5_0, EMBER_TYPE_Q5_1, EMBER_TYPE_Q4_K,
                                      EMBER_TYPE_Q5_K, EMBER_TYPE_Q6_K, EMBER_TYPE_BF16,
                                      EMBER_TYPE_F16 };
    static const int32_t acts[] = { EMBER_TYPE_F32, EMBER_TYPE_Q8_0, EMBER_TYPE_BF16 };
    /* 2 and 3: the row path; 5: gemm_q8_few; 24: the tiles (and a
     * partial vector of lanes) */
    static const int64_t batches[] = { 2, 5, 24 };
    /* K: one and three K-quant units; N: a tile and a tail of rows */
    static const int64_t shapes[][2] = { { 256, 53 }, { 768, 61 } };
    int checked = 0;
    for (size_t s = 0; s < 2; s++) {
        int64_t K = shapes[s][0], N = shapes[s][1], TM = 24;
        float *x = malloc(sizeof(float) * (size_t)(K * TM)), *row = malloc(sizeof(float) * (size_t)K);
        float *wf = malloc(sizeof(float) * (size_t)(K * N));
        float *yb = malloc(sizeof(float) * (size_t)(N * TM)), *y1 = malloc(sizeof(float) * (size_t)N);
        for (int64_t i = 0; i < K * TM; i++) x[i] = frand() * (i % 61 == 0 ? 8.0f : 1.0f);
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            uint32_t ty = types[ti];
            size_t rb = ember_type_row_size(ty, K);
            uint8_t *w = malloc(rb * (size_t)N);
            for (int64_t r = 0; r < N; r++) {
                for (int64_t i = 0; i < K; i++) row[i] = frand();
                assert_true(em_quantize_row(ty, row, K, w + rb * (size_t)r));
                assert_true(em_dequantize_row(ty, w + rb * (size_t)r, K, wf + r * K));
            }
            for (size_t ai = 0; ai < 3; ai++)
                for (size_t bi = 0; bi < 3; bi++) {
                    int64_t T = batches[bi];
                    cpu_matmul(ty, w, K, N, x, T, acts[ai], yb);
                    double worst = 0;
                    for (int64_t t = 0; t < T; t++) {
                        cpu_matmul(ty, w, K, N, x + t * K, 1, acts[ai], y1);
                        for (int64_t n = 0; n < N; n++) {
                            double mag = 0;
                            for (int64_t k = 0; k < K; k++) mag += fabs((double)wf[n * K + k] * x[t * K + k]);
                            double e = fabs((double)y1[n] - yb[t * N + n]) / mag;
                            worst = e > worst ? e : worst;
                        }
                    }
                    /* sums in another order: ~1e-7 of the magnitude; the
                     * two-plane row path's 16-bit activations: ~1e-5 */
                    if (worst > 5e-5)
                        print_error("%s K %lld act %s T %lld: worst %.2e of sum |w x|\n",
                                    ember_type_name((int)ty), (long long)K,
                                    ember_type_name(acts[ai]), (long long)T, worst);
                    assert_true(worst <= 5e-5);
                    checked++;
                }
            free(w);
        }
        free(x);
        free(row);
        free(wf);
        free(yb);
        free(y1);
    }
    print_message("%d (type, K, act, batch) cases: each token alone = its row of the batch\n",
                  checked);
}

int main(void) {
    em_alloc_init(&alloc, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_token_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
