/* Quantization quality on a trained model, against llama.cpp's own
 * numbers: kjv-7m's eval text scored as llama-perplexity -c 256 scores it
 * (examples/common/ppl.c). llama.cpp (../shared/README.md) gives F16
 * 32.7565, Q8_0 32.7613, Q4_0 33.0998, Q4_K_M 32.8857 (its llama-quantize).
 *  - F16: the same perplexity to 2e-3 (the model's arithmetic is right).
 *  - Our tokenizer gives llama.cpp's ids for the eval text.
 *  - Files from ember_model_quantize land at llama.cpp's perplexity or
 *    below, within a margin for the activations' different rounding: Q8_0
 *    (identical weight blocks) within 0.01; Q4_0 and Q4_K_M no worse than
 *    llama.cpp's files plus 0.005. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "ppl.h"

#define KJV "models/kjv-7m/"

static double perplexity_of(const char *path) {
    ember_model *m = NULL;
    assert_int_equal(ember_model_load_file(path, NULL, &m), EMBER_OK);
    ember_context_params cp;
    ember_context_default_params(&cp);
    cp.n_ctx = cp.n_batch = 256;
    ember_context *ctx = NULL;
    assert_int_equal(ember_context_create(m, &cp, &ctx), EMBER_OK);
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(ember_ppl_read_ids(testdata_path(KJV "eval-dev-ids.txt"), &ids, &n), EMBER_OK);
    ember_ppl_result r;
    assert_int_equal(ember_ppl_compute(ctx, m, ids, n, 256, &r), EMBER_OK);
    assert_int_equal(r.n_scored, 19 * 127);
    free(ids);
    ember_context_free(&ctx);
    ember_model_free(&m);
    return r.ppl;
}

static void test_f16(void **state) {
    (void)state;
    double ppl = perplexity_of(testdata_path(KJV "model-f16.gguf"));
    print_message("f16 perplexity %.4f (llama.cpp 32.7565)\n", ppl);
    assert_true(fabs(ppl - 32.7565) <= 2e-3);
}

static void test_tokenizer_ids(void **state) {
    (void)state;
    ember_model *m = NULL;
    assert_int_equal(ember_model_load_file(testdata_path(KJV "model-f16.gguf"), NULL, &m), EMBER_OK);
    size_t len = 0, n_want = 0, n_got = 0;
    char *text = read_file(testdata_path(KJV "eval-dev.txt"), &len);
    int32_t *want = NULL, *got = malloc((len + 2) * sizeof *got);
    assert_int_equal(ember_ppl_read_ids(testdata_path(KJV "eval-dev-ids.txt"), &want, &n_want), EMBER_OK);
    assert_int_equal(ember_tokenize(m, text, len, got, len + 2, &n_got, EMBER_TOKENIZE_ADD_BOS), EMBER_OK);
    assert_int_equal(n_got, n_want);
    assert_memory_equal(got, want, n_want * sizeof *got);
    free(text);
    free(want);
    free(got);
    ember_model_free(&m);
}

static double quantized_perplexity(uint32_t type, uint32_t mix) {
    ember_model *src = NULL;
    assert_int_equal(ember_model_load_file(testdata_path(KJV "model-f16.gguf"), NULL, &src), EMBER_OK);
    char path[] = "/tmp/ember-ppl-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    ember_quantize_params p;
    ember_quantize_default_params(&p);
    p.type = type;
    p.mix = mix;
    assert_int_equal(ember_model_quantize(src, path, &p), EMBER_OK);
    ember_model_free(&src);
    double ppl = perplexity_of(path);
    unlink(path);
    return ppl;
}

static void test_quantized(void **state) {
    (void)state;
    const struct { const char *name; uint32_t type, mix; double llama_cpp, margin; } cases[] = {
        { "q8_0", EMBER_TYPE_Q8_0, 0, 32.7613, 0.01 },
        { "q4_0", EMBER_TYPE_Q4_0, 0, 33.0998, 0.005 },
        { "q4_k_m", EMBER_TYPE_Q4_K, EMBER_QUANTIZE_MIX_M, 32.8857, 0.005 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double ppl = quantized_perplexity(cases[i].type, cases[i].mix);
        print_message("%-6s perplexity %.4f (llama.cpp %.4f)\n", cases[i].name, ppl, cases[i].llama_cpp);
        assert_true(ppl <= cases[i].llama_cpp + cases[i].margin);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16),
        cmocka_unit_test(test_tokenizer_ids),
        cmocka_unit_test(test_quantized),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
