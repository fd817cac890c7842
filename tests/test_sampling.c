/* Sampling: greedy is the argmax, seeds reproduce, each filter keeps what
 * it should, draws follow the softmax. */
#include <math.h>
#include <string.h>

#include "common.h"

enum { NV = 50 };

static ember_sampler *make(float temp, int top_k, float top_p, float min_p, float rep, uint64_t seed) {
    ember_sampler_params p;
    ember_sampler_default_params(&p);
    p.temperature = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.repeat_penalty = rep;
    p.seed = seed;
    ember_sampler *s = NULL;
    assert_int_equal(ember_sampler_create(&p, NV, &s), EMBER_OK);
    return s;
}

static void logits_ramp(float *l) {
    for (int i = 0; i < NV; i++) l[i] = (float)((i * 17) % NV) * 0.1f; /* max at id with i*17%50==49 */
}

static int argmax(const float *l) {
    int b = 0;
    for (int i = 1; i < NV; i++) if (l[i] > l[b]) b = i;
    return b;
}

static void test_greedy(void **state) {
    (void)state;
    float l[NV];
    logits_ramp(l);
    ember_sampler *s = make(0, 40, 0.9f, 0.05f, 1.0f, 1);
    int32_t t;
    assert_int_equal(ember_sampler_sample(s, l, &t), EMBER_OK);
    assert_int_equal(t, argmax(l));
    ember_sampler_free(&s);
    assert_null(s);
    /* top_k 1 at any temperature is the argmax too */
    s = make(1.5f, 1, 1.0f, 0, 1.0f, 7);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(ember_sampler_sample(s, l, &t), EMBER_OK);
        assert_int_equal(t, argmax(l));
    }
    ember_sampler_free(&s);
}

static void test_seed_reproducible(void **state) {
    (void)state;
    float l[NV];
    logits_ramp(l);
    int32_t a[64], b[64], c[64];
    ember_sampler *s1 = make(1.0f, 0, 1.0f, 0, 1.0f, 99), *s2 = make(1.0f, 0, 1.0f, 0, 1.0f, 99);
    ember_sampler *s3 = make(1.0f, 0, 1.0f, 0, 1.0f, 100);
    for (int i = 0; i < 64; i++) {
        ember_sampler_sample(s1, l, &a[i]);
        ember_sampler_sample(s2, l, &b[i]);
        ember_sampler_sample(s3, l, &c[i]);
    }
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    ember_sampler_reset(s1, 99);
    ember_sampler_sample(s1, l, &b[0]);
    assert_int_equal(a[0], b[0]);
    ember_sampler_free(&s1);
    ember_sampler_free(&s2);
    ember_sampler_free(&s3);
}

/* Frequencies at T=1 with no filter follow softmax(logits). */
static void test_distribution(void **state) {
    (void)state;
    float l[NV] = { 0 };
    l[3] = 2.0f; l[7] = 1.0f; l[9] = 0.5f;
    double z = 0;
    for (int i = 0; i < NV; i++) z += exp(l[i]);
    ember_sampler *s = make(1.0f, 0, 1.0f, 0, 1.0f, 5);
    int counts[NV] = { 0 }, n = 20000;
    for (int i = 0; i < n; i++) {
        int32_t t;
        ember_sampler_sample(s, l, &t);
        counts[t]++;
    }
    for (int i = 0; i < NV; i++) {
        double p = exp(l[i]) / z, sd = sqrt(p * (1 - p) / n);
        assert_true(fabs((double)counts[i] / n - p) < 5 * sd + 1e-3);
    }
    ember_sampler_free(&s);
}

static void test_filters(void **state) {
    (void)state;
    float l[NV];
    for (int i = 0; i < NV; i++) l[i] = -10.0f;
    l[1] = 3.0f; l[2] = 2.9f; l[3] = 2.8f; l[4] = 0.0f;
    int32_t t;
    /* top-k 3: only 1, 2, 3 */
    ember_sampler *s = make(5.0f, 3, 1.0f, 0, 1.0f, 1);
    for (int i = 0; i < 300; i++) { ember_sampler_sample(s, l, &t); assert_true(t >= 1 && t <= 3); }
    ember_sampler_free(&s);
    /* top-p 0.5: the first two make more than half of the mass of 1..3 */
    s = make(1.0f, 0, 0.5f, 0, 1.0f, 1);
    int seen2 = 0;
    for (int i = 0; i < 300; i++) { ember_sampler_sample(s, l, &t); assert_true(t == 1 || t == 2); seen2 |= t == 2; }
    assert_true(seen2);
    ember_sampler_free(&s);
    /* min-p 0.5: p(4)/p(1) = e^-3 < 0.5 so 4 never appears; 2 and 3 do */
    s = make(1.0f, 0, 1.0f, 0.5f, 1.0f, 1);
    int seen3 = 0;
    for (int i = 0; i < 500; i++) { ember_sampler_sample(s, l, &t); assert_true(t >= 1 && t <= 3); seen3 |= t == 3; }
    assert_true(seen3);
    ember_sampler_free(&s);
}

static void test_repetition_penalty(void **state) {
    (void)state;
    float l[NV];
    for (int i = 0; i < NV; i++) l[i] = 0;
    l[5] = 2.0f; l[6] = 1.5f;
    ember_sampler *s = make(0, 0, 1.0f, 0, 2.0f, 1);
    int32_t t;
    ember_sampler_sample(s, l, &t);
    assert_int_equal(t, 5);
    /* 5 is now penalised: 2.0 / 2 = 1.0 < 1.5 */
    ember_sampler_sample(s, l, &t);
    assert_int_equal(t, 6);
    ember_sampler_free(&s);
}

static void test_misuse(void **state) {
    (void)state;
    ember_sampler *s = NULL;
    assert_int_equal(ember_sampler_create(NULL, 0, &s), EMBER_ERR_INVALID_ARGUMENT);
    assert_null(s);
    s = make(0, 0, 1, 0, 1, 1);
    int32_t t;
    assert_int_equal(ember_sampler_sample(s, NULL, &t), EMBER_ERR_INVALID_ARGUMENT);
    assert_int_equal(ember_sampler_accept(s, NV), EMBER_ERR_BAD_TOKEN);
    ember_sampler_free(&s);
    ember_sampler_free(&s); /* NULL is fine */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy), cmocka_unit_test(test_seed_reproducible),
        cmocka_unit_test(test_distribution), cmocka_unit_test(test_filters),
        cmocka_unit_test(test_repetition_penalty), cmocka_unit_test(test_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
