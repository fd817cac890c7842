/* Mixture-of-experts models and routing.
 * - tiny-mixtral, tiny-qwen2moe, tiny-deepseek3 against transformers: one
 *   batch, prompt then one token at a time, greedy.
 * - the split-layout copy of tiny-deepseek3 (written at build time by
 *   tests/moe/split_deepseek.py) gives the same logits.
 * - routing against hand-computed cases, and every group configuration
 *   against a brute-force implementation written differently.
 * - batch invariance; routing statistics; the MLA cache size. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "lib/moe.h"
#include "lib/rope.h"

enum { NV = 32000 };

static const char *split_path, *yarn_path;

static ember_model *load(const char *path) {
    ember_model *m = NULL;
    int rc = ember_model_load_file(path, NULL, &m);
    if (rc) print_error("%s\n", ember_last_error());
    assert_int_equal(rc, EMBER_OK);
    return m;
}

static ember_context *ctx_for(const ember_model *m, uint32_t n_seq) {
    ember_context_params p;
    ember_context_default_params(&p);
    p.n_ctx = 64;
    p.n_batch = 64;
    p.n_seq_max = n_seq;
    ember_context *c = NULL;
    assert_int_equal(ember_context_create(m, &p, &c), EMBER_OK);
    return c;
}

static void eval_rows(ember_context *c, const int32_t *ids, int from, int to, int seq, float *out) {
    ember_batch_entry b[128] = { { 0 } };
    for (int i = from; i < to; i++) b[i - from] = (ember_batch_entry){ ids[i], i, seq, 1 };
    int rc = ember_eval(c, b, (size_t)(to - from));
    if (rc) print_error("%s\n", ember_context_last_error(c));
    assert_int_equal(rc, EMBER_OK);
    for (int i = from; i < to; i++)
        memcpy(out + (size_t)i * NV, ember_get_logits(c, (size_t)(i - from)), NV * 4);
}

static int argmax(const float *l) {
    int b = 0;
    for (int i = 1; i < NV; i++) if (l[i] > l[b]) b = i;
    return b;
}

static void check_model(const char *name, const char *path_in) {
    char path[4096]; /* testdata_path's buffer is reused by load_model_ref */
    snprintf(path, sizeof path, "%s", path_in);
    model_ref r;
    load_model_ref(name, NV, &r);
    ember_model *m = load(path);
    ember_context *c = ctx_for(m, 1);
    size_t sz = (size_t)r.n_seq * NV;
    float *got = malloc(sz * 4);
    eval_rows(c, r.seq, 0, r.n_seq, 0, got);
    double d1 = max_diff(got, r.logits, sz);
    ember_seq_clear(c, 0);
    eval_rows(c, r.seq, 0, r.n_prompt, 0, got);
    for (int i = r.n_prompt; i < r.n_seq; i++) eval_rows(c, r.seq, i, i + 1, 0, got);
    double d2 = max_diff(got, r.logits, sz);
    print_message("%s: max |diff| one batch %.3g, incremental %.3g\n", path, d1, d2);
    assert_true(d1 < 1e-3 && d2 < 1e-3);
    /* greedy from the prompt */
    ember_seq_clear(c, 0);
    eval_rows(c, r.prompt, 0, r.n_prompt, 0, got);
    int32_t tok = argmax(got + (size_t)(r.n_prompt - 1) * NV);
    for (int i = 0; i < r.n_greedy; i++) {
        assert_int_equal(tok, r.greedy[i]);
        ember_batch_entry e = { tok, r.n_prompt + i, 0, 1 };
        assert_int_equal(ember_eval(c, &e, 1), EMBER_OK);
        tok = argmax(ember_get_logits(c, 0));
    }
    free(got);
    free(r.logits);
    ember_context_free(&c);
    ember_model_free(&m);
}

static void test_mixtral(void **s) { (void)s; check_model("tiny-mixtral", testdata_path("models/tiny-mixtral/model-f16.gguf")); }
static void test_qwen2moe(void **s) { (void)s; check_model("tiny-qwen2moe", testdata_path("models/tiny-qwen2moe/model-f16.gguf")); }
static void test_deepseek3(void **s) { (void)s; check_model("tiny-deepseek3", testdata_path("models/tiny-deepseek3/model-f16.gguf")); }

static void test_deepseek3_split_layout(void **state) {
    (void)state;
    testdata_path("models/tiny-deepseek3/model-f16.gguf");
    FILE *f = fopen(split_path, "rb");
    if (!f) skip();
    fclose(f);
    check_model("tiny-deepseek3", split_path);
    /* and bit for bit the combined layout's logits */
    model_ref r;
    load_model_ref("tiny-deepseek3", NV, &r);
    ember_model *a = load(testdata_path("models/tiny-deepseek3/model-f16.gguf")), *b = load(split_path);
    ember_context *ca = ctx_for(a, 1), *cb = ctx_for(b, 1);
    size_t sz = (size_t)r.n_seq * NV;
    float *la = malloc(sz * 4), *lb = malloc(sz * 4);
    eval_rows(ca, r.seq, 0, r.n_seq, 0, la);
    eval_rows(cb, r.seq, 0, r.n_seq, 0, lb);
    assert_true(max_diff(la, lb, sz) < 1e-5);
    free(la); free(lb); free(r.logits);
    ember_context_free(&ca); ember_context_free(&cb);
    ember_model_free(&a); ember_model_free(&b);
}

/* A token's logits do not depend on which tokens share its batch. */
static void test_batch_invariance(void **state) {
    (void)state;
    model_ref r;
    load_model_ref("tiny-deepseek3", NV, &r);
    ember_model *m = load(testdata_path("models/tiny-deepseek3/model-f16.gguf"));
    size_t sz = (size_t)r.n_seq * NV;
    float *alone = malloc(sz * 4), *mixed = malloc(sz * 4), *other = malloc(sz * 4);
    ember_context *c = ctx_for(m, 2);
    eval_rows(c, r.seq, 0, r.n_seq, 0, alone);
    ember_seq_clear(c, -1);
    /* the same tokens, each batch shared with another sequence's tokens */
    int32_t rev[128];
    for (int i = 0; i < r.n_seq; i++) rev[i] = r.seq[r.n_seq - 1 - i];
    for (int i0 = 0; i0 < r.n_seq; i0 += 5) {
        int i1 = i0 + 5 < r.n_seq ? i0 + 5 : r.n_seq;
        ember_batch_entry b[10];
        int n = 0;
        for (int i = i0; i < i1; i++) {
            b[n++] = (ember_batch_entry){ rev[i], i, 1, 1 };
            b[n++] = (ember_batch_entry){ r.seq[i], i, 0, 1 };
        }
        assert_int_equal(ember_eval(c, b, (size_t)n), EMBER_OK);
        for (int k = 0; k < n; k += 2) {
            memcpy(other + (size_t)(i0 + k / 2) * NV, ember_get_logits(c, (size_t)k), NV * 4);
            memcpy(mixed + (size_t)(i0 + k / 2) * NV, ember_get_logits(c, (size_t)k + 1), NV * 4);
        }
    }
    double d = max_diff(alone, mixed, sz);
    print_message("batch invariance: max |diff| %.3g\n", d);
    assert_true(d < 1e-5);
    free(alone); free(mixed); free(other); free(r.logits);
    ember_context_free(&c);
    ember_model_free(&m);
}

static void test_stats_and_cache(void **state) {
    (void)state;
    ember_model *m = load(testdata_path("models/tiny-deepseek3/model-f16.gguf"));
    assert_int_equal(ember_model_n_expert(m), 8);
    ember_context *c = ctx_for(m, 1);
    /* MLA: kv_lora 32 + rope 8 floats per layer, 3 layers */
    assert_int_equal(ember_context_kv_bytes_per_token(c), (32 + 8) * 4 * 3);
    ember_batch_entry b[10];
    for (int i = 0; i < 10; i++) b[i] = (ember_batch_entry){ 100 + i, i, 0, i == 9 };
    assert_int_equal(ember_eval(c, b, 10), EMBER_OK);
    uint64_t counts[8], total = 0;
    assert_int_equal(ember_expert_counts(c, 0, counts, 8), EMBER_OK); /* dense layer */
    for (int e = 0; e < 8; e++) assert_int_equal(counts[e], 0);
    for (int layer = 1; layer < 3; layer++) {
        assert_int_equal(ember_expert_counts(c, layer, counts, 8), EMBER_OK);
        total = 0;
        for (int e = 0; e < 8; e++) total += counts[e];
        assert_int_equal(total, 10 * 2); /* every token to 2 experts */
    }
    assert_int_equal(ember_expert_counts(c, 3, counts, 8), EMBER_ERR_INVALID_ARGUMENT);
    assert_int_equal(ember_expert_counts_reset(c), EMBER_OK);
    assert_int_equal(ember_expert_counts(c, 1, counts, 8), EMBER_OK);
    for (int e = 0; e < 8; e++) assert_int_equal(counts[e], 0);
    ember_context_free(&c);
    ember_model_free(&m);
}

/* ---- routing by hand ---- */

static void route(const float *logits, const float *bias, em_route_params p, int32_t *ids,
                  float *w) {
    em_moe_route_token(logits, bias, &p, ids, w);
}

static void test_route_hand_cases(void **state) {
    (void)state;
    int32_t ids[8];
    float w[8];
    /* Mixtral: softmax, top-2, renormalised over the two */
    float l1[4] = { 1, 3, 2, 0 };
    route(l1, NULL, (em_route_params){ 4, 2, EM_GATING_SOFTMAX, 1, 1, 1, 1.0f }, ids, w);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 2);
    assert_true(fabsf(w[0] - expf(3) / (expf(3) + expf(2))) < 1e-6f);
    assert_true(fabsf(w[1] - expf(2) / (expf(3) + expf(2))) < 1e-6f);
    /* Qwen2-MoE: no renormalisation, weights are the full softmax */
    route(l1, NULL, (em_route_params){ 4, 2, EM_GATING_SOFTMAX, 1, 1, 0, 1.0f }, ids, w);
    double z = expf(1) + expf(3) + expf(2) + expf(0);
    assert_true(fabs(w[0] - expf(3) / z) < 1e-6);
    /* ties go to the lower index */
    float l0[4] = { 0, 0, 0, 0 };
    route(l0, NULL, (em_route_params){ 4, 2, EM_GATING_SOFTMAX, 1, 1, 0, 1.0f }, ids, w);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 1);
    assert_true(fabsf(w[0] - 0.25f) < 1e-7f);
    /* sigmoid with negative biases: the bias chooses, never weights */
    float b1[4] = { -1.0f, 0.0f, -2.0f, 0.5f };
    route(l0, b1, (em_route_params){ 4, 2, EM_GATING_SIGMOID, 1, 1, 1, 2.5f }, ids, w);
    assert_int_equal(ids[0], 3);
    assert_int_equal(ids[1], 1);
    assert_true(fabsf(w[0] - 1.25f) < 1e-6f && fabsf(w[1] - 1.25f) < 1e-6f);
    /* V3 groups: the group with the best two beats the group with the best one */
    float l8[8], b8[8] = { 0 };
    float choice[8] = { 0.9f, 0.1f, 0.1f, 0.1f, 0.6f, 0.6f, 0.0f, 0.0f };
    for (int i = 0; i < 8; i++) l8[i] = logf(choice[i] / (1 - choice[i] + 1e-9f) + 1e-9f);
    for (int i = 0; i < 8; i++) if (choice[i] == 0.0f) l8[i] = -30.0f;
    route(l8, b8, (em_route_params){ 8, 2, EM_GATING_SIGMOID, 2, 1, 1, 1.0f }, ids, w);
    assert_int_equal(ids[0], 4);
    assert_int_equal(ids[1], 5);
    /* without the group limit the single best expert wins */
    route(l8, b8, (em_route_params){ 8, 2, EM_GATING_SIGMOID, 1, 1, 1, 1.0f }, ids, w);
    assert_int_equal(ids[0], 0);
    /* as the reference masks: experts of dropped groups count as 0.0, which
     * beats negative (biased) choices of the kept group */
    float l4[4] = { -5, -5, -5, -5 }, b4[4] = { -0.3f, -0.2f, -0.5f, -0.6f };
    route(l4, b4, (em_route_params){ 4, 2, EM_GATING_SIGMOID, 2, 1, 1, 1.0f }, ids, w);
    assert_int_equal(ids[0], 2);
    assert_int_equal(ids[1], 3);
    /* top-k = every expert: all chosen, best first, weights sum to 1 */
    float l5[4] = { 0.5f, -1.0f, 2.0f, 0.0f };
    route(l5, NULL, (em_route_params){ 4, 4, EM_GATING_SOFTMAX, 1, 1, 1, 1.0f }, ids, w);
    assert_int_equal(ids[0], 2); assert_int_equal(ids[1], 0);
    assert_int_equal(ids[2], 3); assert_int_equal(ids[3], 1);
    assert_true(fabsf(w[0] + w[1] + w[2] + w[3] - 1.0f) < 1e-6f);
}

/* Brute force, written independently: enumerate every subset of groups,
 * keep the best-scoring one, then pick experts by sorting all candidates. */
static void brute_route(const float *l, const float *bias, const em_route_params *p, int32_t *ids,
                        float *w) {
    int n = p->n_expert, per = n / p->n_group;
    double prob[64], ch[64], gs[64];
    for (int i = 0; i < n; i++) {
        prob[i] = p->gating == EM_GATING_SIGMOID ? 1.0 / (1.0 + exp(-(double)l[i])) : 0;
    }
    if (p->gating == EM_GATING_SOFTMAX) {
        double mx = l[0], z = 0;
        for (int i = 1; i < n; i++) mx = fmax(mx, l[i]);
        for (int i = 0; i < n; i++) z += exp(l[i] - mx);
        for (int i = 0; i < n; i++) prob[i] = exp(l[i] - mx) / z;
    }
    for (int i = 0; i < n; i++) ch[i] = (float)((float)prob[i] + (bias ? bias[i] : 0.0f));
    for (int g = 0; g < p->n_group; g++) {
        double a = -INFINITY, b = -INFINITY; /* best and second best */
        for (int i = g * per; i < (g + 1) * per; i++) {
            if (ch[i] > a) { b = a; a = ch[i]; } else if (ch[i] > b) b = ch[i];
        }
        gs[g] = p->gating == EM_GATING_SIGMOID ? a + (per > 1 ? b : 0) : a;
    }
    int keep_mask = 0;
    if (p->n_group > 1 && p->n_group_used < p->n_group) {
        for (int k = 0; k < p->n_group_used; k++) { /* greedy by score, ties to lower */
            int best = -1;
            for (int g = 0; g < p->n_group; g++)
                if (!(keep_mask >> g & 1) && (best < 0 || gs[g] > gs[best])) best = g;
            keep_mask |= 1 << best;
        }
        for (int i = 0; i < n; i++) if (!(keep_mask >> (i / per) & 1)) ch[i] = 0.0;
    }
    int order[64];
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = 0; i < n; i++) /* stable selection sort, descending */
        for (int j = i + 1; j < n; j++)
            if (ch[order[j]] > ch[order[i]]) { int t = order[i]; order[i] = order[j]; order[j] = t; }
    for (int i = 0; i < n; i++) /* restore index order among equals */
        for (int j = i + 1; j < n; j++)
            if (ch[order[j]] == ch[order[i]] && order[j] < order[i]) { int t = order[i]; order[i] = order[j]; order[j] = t; }
    double sum = 0;
    for (int k = 0; k < p->n_used; k++) { ids[k] = order[k]; sum += (float)prob[order[k]]; }
    for (int k = 0; k < p->n_used; k++) {
        double v = (float)prob[order[k]];
        if (p->norm) v /= sum + (p->gating == EM_GATING_SIGMOID ? 1e-20 : 0);
        w[k] = (float)(v * p->scale);
    }
}

static void test_route_every_group_configuration(void **state) {
    (void)state;
    uint64_t rng = 99;
    int cases = 0;
    for (int gating = 1; gating <= 2; gating++)
        for (int n_group = 1; n_group <= 8; n_group *= 2)
            for (int used_g = 1; used_g <= n_group; used_g++)
                for (int k = 1; k <= used_g * (16 / n_group) && k <= 16; k += 3)
                    for (int rep = 0; rep < 20; rep++) {
                        float l[16], b[16];
                        for (int i = 0; i < 16; i++) {
                            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                            l[i] = (float)((int)(rng >> 40) % 9 - 4) * 0.5f; /* ties happen */
                            b[i] = (float)((int)(rng >> 20) % 5 - 2) * 0.05f;
                        }
                        em_route_params p = { 16, k, gating, n_group, used_g, rep & 1, 1.5f };
                        int32_t ia[16], ib[16];
                        float wa[16], wb[16];
                        em_moe_route_token(l, gating == 2 ? b : NULL, &p, ia, wa);
                        brute_route(l, gating == 2 ? b : NULL, &p, ib, wb);
                        assert_memory_equal(ia, ib, (size_t)k * 4);
                        for (int j = 0; j < k; j++) assert_true(fabsf(wa[j] - wb[j]) < 1e-5f);
                        cases++;
                    }
    print_message("routing: %d cases against brute force\n", cases);
}

/* YaRN with DeepSeek-V3's settings (64 rope dims, base 10000, factor 40,
 * original context 4096, betas 32/1). By hand: the correction dims are
 * 64 ln(4096 / (32 * 2 pi)) / (2 ln 10000) = 10.47 -> floor 10 and
 * 64 ln(4096 / (2 pi)) / (2 ln 10000) = 22.5 -> ceil 23; pairs below 10 keep
 * their frequency, pairs from 23 on are divided by 40, and in between the
 * blend weight rises linearly: (i - 10) / 13. */
static void test_yarn_table(void **state) {
    (void)state;
    float inv[32];
    em_rope_cfg cfg = { 64, 10000.0, 1.0, NULL, 40.0, 4096.0, 32.0, 1.0 };
    em_rope_inv_freq(&cfg, inv);
    for (int i = 0; i < 32; i++) {
        double orig = pow(10000.0, -2.0 * i / 64), ramp = (i - 10) / 13.0;
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        double want = orig / 40.0 * ramp + orig * (1 - ramp);
        assert_true(fabs(inv[i] - want) <= 1e-6 * want);
    }
    assert_true(fabs(inv[5] - pow(10000.0, -10.0 / 64)) < 1e-7);
    assert_true(fabs(inv[30] - pow(10000.0, -60.0 / 64) / 40) < 1e-9);
    /* linear scaling and rope_freqs factors */
    float ff[4] = { 1, 2, 4, 8 }, lin[4];
    em_rope_cfg c2 = { 8, 10000.0, 0.25, ff, 0, 0, 0, 0 };
    em_rope_inv_freq(&c2, lin);
    for (int i = 0; i < 4; i++)
        assert_true(fabs(lin[i] - pow(10000.0, -2.0 * i / 8) * 0.25 / ff[i]) < 1e-7);
}

/* tiny-deepseek3 with YaRN keys loads, runs and its scaling takes effect. */
static void test_yarn_model(void **state) {
    (void)state;
    testdata_path("models/tiny-deepseek3/model-f16.gguf");
    FILE *f = fopen(yarn_path, "rb");
    if (!f) skip();
    fclose(f);
    ember_model *plain = load(split_path), *yarn = load(yarn_path);
    ember_context *cp = ctx_for(plain, 1), *cy = ctx_for(yarn, 1);
    ember_batch_entry b[20];
    for (int i = 0; i < 20; i++) b[i] = (ember_batch_entry){ 200 + 13 * i, i, 0, i == 19 };
    assert_int_equal(ember_eval(cp, b, 20), EMBER_OK);
    assert_int_equal(ember_eval(cy, b, 20), EMBER_OK);
    const float *lp = ember_get_logits(cp, 19), *ly = ember_get_logits(cy, 19);
    double d = 0;
    for (int v = 0; v < NV; v++) {
        assert_true(isfinite(ly[v]));
        d = fmax(d, fabs(lp[v] - ly[v]));
    }
    assert_true(d > 1e-3); /* the scaling changed the result */
    ember_context_free(&cp);
    ember_context_free(&cy);
    ember_model_free(&plain);
    ember_model_free(&yarn);
}

int main(int argc, char **argv) {
    split_path = argc > 1 ? argv[1] : "";
    yarn_path = argc > 2 ? argv[2] : "";
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_hand_cases),
        cmocka_unit_test(test_route_every_group_configuration),
        cmocka_unit_test(test_mixtral),
        cmocka_unit_test(test_qwen2moe),
        cmocka_unit_test(test_deepseek3),
        cmocka_unit_test(test_deepseek3_split_layout),
        cmocka_unit_test(test_batch_invariance),
        cmocka_unit_test(test_stats_and_cache),
        cmocka_unit_test(test_yarn_table),
        cmocka_unit_test(test_yarn_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
