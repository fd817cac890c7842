/* The public API's contract: versions, status codes, argument checks,
 * errors that leave state unchanged, metadata queries, allocator hooks,
 * logging, backends. Uses a small synthetic model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "synth_model.h"

static void *img;
static size_t img_size;
static ember_model *model;

static int setup(void **state) {
    (void)state;
    synth_cfg cfg = { 64, 2, 4, 2, 96, 64, 1, 7 };
    if (synth_llama(&cfg, &img, &img_size)) return -1;
    return ember_model_load_memory(img, img_size, NULL, &model) ? -1 : 0;
}

static int teardown(void **state) {
    (void)state;
    ember_model_free(&model);
    free(img);
    return 0;
}

static ember_context *ctx_with(uint32_t n_ctx, uint32_t n_batch) {
    ember_context_params p;
    ember_context_default_params(&p);
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    ember_context *c = NULL;
    assert_int_equal(ember_context_create(model, &p, &c), EMBER_OK);
    return c;
}

static void test_version_and_status(void **state) {
    (void)state;
    assert_string_equal(ember_version(), EMBER_VERSION_STRING);
    assert_int_equal(ember_version_number(), EMBER_VERSION_NUMBER);
    for (int s = 0; s >= EMBER_ERR_INTERNAL; s--) {
        assert_string_not_equal(ember_status_string(s), "unknown status");
        for (int t = s + 1; t <= 0; t++)
            assert_string_not_equal(ember_status_string(s), ember_status_string(t));
    }
    assert_string_equal(ember_status_string(-999), "unknown status");
    assert_string_equal(ember_type_name(EMBER_TYPE_Q8_0), "q8_0");
    assert_null(ember_type_name(99));
}

static void test_load_misuse(void **state) {
    (void)state;
    ember_model *m = (ember_model *)1;
    assert_int_equal(ember_model_load_file(NULL, NULL, &m), EMBER_ERR_INVALID_ARGUMENT);
    assert_null(m);
    assert_int_equal(ember_model_load_file("/nonexistent/x.gguf", NULL, &m), EMBER_ERR_IO);
    assert_non_null(strstr(ember_last_error(), "/nonexistent/x.gguf"));
    assert_int_equal(ember_model_load_memory(NULL, 10, NULL, &m), EMBER_ERR_INVALID_ARGUMENT);
    assert_int_equal(ember_model_load_memory((char *)img + 1, img_size - 1, NULL, &m),
                     EMBER_ERR_INVALID_ARGUMENT);
    assert_int_equal(ember_model_load_memory(img, img_size, NULL, NULL), EMBER_ERR_INVALID_ARGUMENT);
    ember_model_params p;
    ember_model_default_params(&p);
    p.struct_size = 3;
    assert_int_equal(ember_model_load_memory(img, img_size, &p, &m), EMBER_ERR_INVALID_ARGUMENT);
    ember_model_free(NULL);
    ember_model *null_model = NULL;
    ember_model_free(&null_model);
    /* an unknown architecture is "unsupported", naming it */
    void *copy = malloc(img_size + 64);
    char *al = (char *)(((uintptr_t)copy + 63) & ~(uintptr_t)63);
    memcpy(al, img, img_size);
    char *arch = memmem(al, img_size, "llama", 5);
    memcpy(arch, "llamb", 5);
    assert_int_equal(ember_model_load_memory(al, img_size, NULL, &m), EMBER_ERR_UNSUPPORTED);
    assert_non_null(strstr(ember_last_error(), "llamb"));
    free(copy);
}

static void test_queries(void **state) {
    (void)state;
    assert_string_equal(ember_model_arch(model), "llama");
    assert_int_equal(ember_model_n_layer(model), 2);
    assert_int_equal(ember_model_n_embd(model), 64);
    assert_int_equal(ember_model_n_head(model), 4);
    assert_int_equal(ember_model_n_head_kv(model), 2);
    assert_int_equal(ember_model_n_ctx_train(model), 64);
    assert_true(ember_model_n_params(model) > 64 * 64 * 4);
    assert_true(ember_model_type_bytes(model, EMBER_TYPE_F16) > 0);
    assert_int_equal(ember_model_type_bytes(model, EMBER_TYPE_Q4_0), 0);
    char buf[64];
    size_t need;
    assert_int_equal(ember_model_meta_string(model, "general.architecture", buf, sizeof buf, &need), EMBER_OK);
    assert_string_equal(buf, "llama");
    assert_int_equal(ember_model_meta_string(model, "llama.block_count", buf, sizeof buf, NULL), EMBER_OK);
    assert_string_equal(buf, "2");
    assert_int_equal(ember_model_meta_string(model, "tokenizer.ggml.tokens", buf, 4, &need),
                     EMBER_ERR_BUFFER_TOO_SMALL);
    assert_true(need > 3);
    assert_int_equal(strlen(buf), 3);
    assert_int_equal(ember_model_meta_string(model, "no.such.key", buf, sizeof buf, NULL), EMBER_ERR_NOT_FOUND);
    int64_t iv;
    double fv;
    assert_int_equal(ember_model_meta_int(model, "llama.embedding_length", &iv), EMBER_OK);
    assert_int_equal(iv, 64);
    assert_int_equal(ember_model_meta_float(model, "llama.attention.layer_norm_rms_epsilon", &fv), EMBER_OK);
    assert_true(fabs(fv - 1e-5) < 1e-9);
    assert_int_equal(ember_model_meta_int(model, "general.architecture", &iv), EMBER_ERR_INVALID_ARGUMENT);
    int found = 0;
    for (int32_t i = 0; i < ember_model_meta_count(model); i++)
        found += strcmp(ember_model_meta_key(model, i), "llama.context_length") == 0;
    assert_int_equal(found, 1);
    assert_null(ember_model_meta_key(model, -1));
}

static void test_eval_misuse(void **state) {
    (void)state;
    ember_context *c = ctx_with(32, 8);
    ember_batch_entry b[10];
    for (int i = 0; i < 10; i++) b[i] = (ember_batch_entry){ 5 + i, i, 0, 1 };
    assert_int_equal(ember_eval(NULL, b, 1), EMBER_ERR_INVALID_ARGUMENT);
    assert_int_equal(ember_eval(c, NULL, 1), EMBER_ERR_INVALID_ARGUMENT);
    assert_int_equal(ember_eval(c, b, 0), EMBER_ERR_INVALID_ARGUMENT);
    assert_int_equal(ember_eval(c, b, 9), EMBER_ERR_INVALID_ARGUMENT); /* > n_batch */
    assert_int_equal(ember_eval(c, b, 4), EMBER_OK);
    assert_int_equal(ember_seq_length(c, 0), 4);
    const float *l = ember_get_logits(c, 3);
    assert_non_null(l);
    float keep[8];
    memcpy(keep, l, sizeof keep);
    /* each failure leaves the cache exactly as it was */
    ember_batch_entry bad = { ember_model_n_vocab(model), 4, 0, 1 };
    assert_int_equal(ember_eval(c, &bad, 1), EMBER_ERR_BAD_TOKEN);
    assert_non_null(strstr(ember_context_last_error(c), "token"));
    bad = (ember_batch_entry){ -1, 4, 0, 1 };
    assert_int_equal(ember_eval(c, &bad, 1), EMBER_ERR_BAD_TOKEN);
    bad = (ember_batch_entry){ 5, 32, 0, 1 };
    assert_int_equal(ember_eval(c, &bad, 1), EMBER_ERR_CONTEXT_FULL);
    bad = (ember_batch_entry){ 5, 4, 1, 1 };
    assert_int_equal(ember_eval(c, &bad, 1), EMBER_ERR_INVALID_ARGUMENT); /* seq id >= n_seq_max */
    bad = (ember_batch_entry){ 5, 6, 0, 1 };
    assert_int_equal(ember_eval(c, &bad, 1), EMBER_ERR_INVALID_ARGUMENT); /* skips ahead */
    ember_batch_entry gap[2] = { { 5, 4, 0, 1 }, { 6, 6, 0, 1 } };
    assert_int_equal(ember_eval(c, gap, 2), EMBER_ERR_INVALID_ARGUMENT);
    ember_batch_entry late[2] = { { 5, 4, 0, 1 }, { 999999, 5, 0, 1 } };
    assert_int_equal(ember_eval(c, late, 2), EMBER_ERR_BAD_TOKEN);
    assert_int_equal(ember_seq_length(c, 0), 4);
    /* the next position continues where it was */
    ember_batch_entry next = { 9, 4, 0, 0 };
    assert_int_equal(ember_eval(c, &next, 1), EMBER_OK);
    assert_null(ember_get_logits(c, 0)); /* not asked for */
    assert_null(ember_get_logits(c, 5));
    assert_int_equal(ember_seq_length(c, 0), 5);
    /* rollback to 3 and redo position 3: the same logits as before (up to
     * summation order: a batch of 4 and a single token use other kernels) */
    assert_int_equal(ember_eval(c, &b[3], 1), EMBER_OK);
    for (int i = 0; i < 8; i++) assert_true(fabsf(ember_get_logits(c, 0)[i] - keep[i]) < 1e-4f);
    assert_int_equal(ember_seq_length(c, 0), 4);
    assert_int_equal(ember_seq_clear(c, 3), EMBER_ERR_INVALID_ARGUMENT);
    assert_int_equal(ember_seq_clear(c, -1), EMBER_OK);
    assert_int_equal(ember_seq_length(c, 0), 0);
    assert_true(ember_seq_length(c, 7) < 0);
    ember_context_free(&c);
    assert_null(c);
    ember_context_free(&c);
}

static void test_context_misuse(void **state) {
    (void)state;
    ember_context *c = (ember_context *)1;
    assert_int_equal(ember_context_create(NULL, NULL, &c), EMBER_ERR_INVALID_ARGUMENT);
    assert_null(c);
    ember_context_params p;
    ember_context_default_params(&p);
    p.n_batch = 0;
    assert_int_equal(ember_context_create(model, &p, &c), EMBER_ERR_INVALID_ARGUMENT);
    ember_context_default_params(&p);
    p.kv_type = EMBER_TYPE_Q4_0;
    assert_int_equal(ember_context_create(model, &p, &c), EMBER_ERR_INVALID_ARGUMENT);
    ember_context_default_params(&p);
    p.n_device_layers = 1; /* a layer split needs a device backend */
    assert_int_equal(ember_context_create(model, &p, &c), EMBER_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ember_last_error(), "n_device_layers"));
    p.backend = EMBER_BACKEND_VULKAN;
    p.n_device_layers = -1;
    assert_int_equal(ember_context_create(model, &p, &c), EMBER_ERR_INVALID_ARGUMENT);
    p.n_device_layers = 1;
    p.device_layers_at = 2;
    assert_int_equal(ember_context_create(model, &p, &c), EMBER_ERR_INVALID_ARGUMENT);
    assert_null(c);
    ember_context_default_params(&p);
    p.backend = EMBER_BACKEND_VULKAN;
    if (ember_backend_available(EMBER_BACKEND_VULKAN) == EMBER_OK) {
        /* a device exists: the context runs there (tests/test_vulkan_models.c
         * checks its results) */
        assert_int_equal(ember_context_create(model, &p, &c), EMBER_OK);
        ember_batch_entry e = { 1, 0, 0, 1 };
        assert_int_equal(ember_eval(c, &e, 1), EMBER_OK);
        assert_non_null(ember_get_logits(c, 0));
        ember_context_free(&c);
    } else {
        assert_int_equal(ember_context_create(model, &p, &c), EMBER_ERR_NOT_AVAILABLE);
    }
    assert_null(c);
    p.device = 99;
    assert_true(ember_context_create(model, &p, &c) < 0);
    assert_null(c);
    assert_int_equal(ember_backend_available(EMBER_BACKEND_CPU), EMBER_OK);
    assert_int_equal(ember_backend_available(42), EMBER_ERR_INVALID_ARGUMENT);
}

static ember_context_params small_params(counting_alloc *ca) {
    ember_context_params p;
    ember_context_default_params(&p);
    p.n_ctx = 32;
    p.n_batch = 8;
    p.n_threads = 2;
    p.allocator = counting_allocator(ca);
    return p;
}

/* Every allocation of context creation failed in turn: an error, and no
 * block left behind. */
static void test_context_alloc_failures(void **state) {
    (void)state;
    long total;
    {
        counting_alloc ca = { 0 };
        ember_context_params p = small_params(&ca);
        ember_context *c;
        assert_int_equal(ember_context_create(model, &p, &c), EMBER_OK);
        ember_batch_entry e = { 3, 0, 0, 1 };
        long before = ca.n_allocs;
        assert_int_equal(ember_eval(c, &e, 1), EMBER_OK);
        assert_int_equal(ca.n_allocs, before); /* evaluation allocates nothing */
        total = ca.n_allocs;
        ember_context_free(&c);
        assert_int_equal(ca.live_blocks, 0);
    }
    print_message("context creation: %ld allocation failure points\n", total);
    for (long k = 1; k <= total; k++) {
        counting_alloc ca = { .fail_at = k };
        ember_context_params p = small_params(&ca);
        ember_context *c;
        assert_int_equal(ember_context_create(model, &p, &c), EMBER_ERR_NO_MEMORY);
        assert_null(c);
        assert_int_equal(ca.live_blocks, 0);
    }
}

static int log_calls;
static void on_log(int level, const char *msg, void *user) {
    (void)level;
    (void)msg;
    *(int *)user += 1;
}

static void test_log_callback(void **state) {
    (void)state;
    log_calls = 0;
    ember_set_log_callback(on_log, &log_calls, EMBER_LOG_DEBUG);
    ember_model *m;
    ember_model_load_file("/nonexistent", NULL, &m);
    assert_true(log_calls > 0);
    ember_set_log_callback(NULL, NULL, EMBER_LOG_WARN);
}

/* Forcing the C reference kernels changes rounding only. */
static void test_cpu_mask(void **state) {
    (void)state;
    ember_batch_entry b[4];
    for (int i = 0; i < 4; i++) b[i] = (ember_batch_entry){ 40 + i, i, 0, 1 };
    ember_context *c = ctx_with(32, 8);
    assert_int_equal(ember_eval(c, b, 4), EMBER_OK);
    int nv = ember_model_n_vocab(model);
    float *a = malloc((size_t)nv * 4);
    memcpy(a, ember_get_logits(c, 3), (size_t)nv * 4);
    ember_context_free(&c);
    ember_cpu_set_mask(0);
    c = ctx_with(32, 8);
    assert_int_equal(ember_eval(c, b, 4), EMBER_OK);
    const float *r = ember_get_logits(c, 3);
    for (int i = 0; i < nv; i++) assert_true(fabsf(a[i] - r[i]) < 1e-4f);
    ember_cpu_set_mask(~0u);
    ember_context_free(&c);
    free(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_and_status), cmocka_unit_test(test_load_misuse),
        cmocka_unit_test(test_queries), cmocka_unit_test(test_eval_misuse),
        cmocka_unit_test(test_context_misuse), cmocka_unit_test(test_context_alloc_failures),
        cmocka_unit_test(test_log_callback), cmocka_unit_test(test_cpu_mask),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
