/* Memory plans and arenas: aidreams-260k planned, then run inside one
 * arena of exactly the planned size (greedy ids equal llama.cpp's), and
 * refused cleanly with one byte less; the plan's parts against the
 * context's own numbers; arena misuse. */
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define MODEL "models/aidreams-260k/model-f32.gguf"

static void *image_of(const char *rel, size_t *size) {
    size_t n;
    void *f = read_file(testdata_path(rel), &n); /* skips without testdata */
    void *img = aligned_alloc(64, (n + 63) & ~(size_t)63);
    assert_non_null(img);
    memcpy(img, f, n);
    free(f);
    *size = n;
    return img;
}

static ember_context_params ctx_params(void) {
    ember_context_params p;
    ember_context_default_params(&p);
    p.n_ctx = 128;
    p.n_batch = 32;
    p.n_threads = 1;
    return p;
}

typedef struct run {
    int rc;                 /* first failure, EMBER_OK if none */
    int32_t out[64];
    size_t peak, used_after;
} run;

/* Loads, creates, tokenizes `text` (or takes `prompt` when text is NULL)
 * and decodes greedily from an arena of `size` bytes, then frees
 * everything. */
static run run_in_arena(const void *img, size_t n, size_t size, const char *text,
                        const int32_t *prompt, int np, int ng) {
    run r = { 0 };
    void *buf = aligned_alloc(64, (size + 63) & ~(size_t)63);
    assert_non_null(buf);
    ember_model_params mp;
    ember_model_default_params(&mp);
    assert_int_equal(ember_arena_allocator(buf, size, &mp.allocator), EMBER_OK);
    size_t start;
    assert_int_equal(ember_arena_usage(&mp.allocator, &start, NULL), EMBER_OK);
    ember_context_params cp = ctx_params();
    cp.allocator = mp.allocator;
    ember_model *m = NULL;
    ember_context *c = NULL;
    int32_t ids[64];
    size_t nt = 0;
    if ((r.rc = ember_model_load_memory(img, n, &mp, &m))) goto done;
    if ((r.rc = ember_context_create(m, &cp, &c))) goto done;
    if (!text) {
        memcpy(ids, prompt, (size_t)np * sizeof *ids);
        nt = (size_t)np;
    } else if ((r.rc = ember_tokenize(m, text, strlen(text), ids, 64, &nt,
                                      EMBER_TOKENIZE_ADD_BOS))) {
        goto done;
    }
    greedy_decode(c, ids, (int)nt, ng, ember_model_n_vocab(m), r.out);
done:
    if (r.rc) assert_int_equal(r.rc, EMBER_ERR_NO_MEMORY);
    ember_context_free(&c);
    ember_model_free(&m);
    assert_int_equal(ember_arena_usage(&mp.allocator, &r.used_after, &r.peak), EMBER_OK);
    assert_int_equal(r.used_after, start); /* nothing left behind, even on failure */
    free(buf);
    return r;
}

static void test_plan_and_arena(void **state) {
    (void)state;
    size_t n, jn;
    void *img = image_of(MODEL, &n);
    char *js = read_file(testdata_path("models/aidreams-260k/reference.json"), &jn);
    char text[512];
    int32_t want[64], prompt[64];
    assert_true(json_string(js, "prompt_text", 0, text, sizeof text) > 0);
    int ng = json_ints(js, "greedy", 0, want, 64), np = json_ints(js, "prompt", 0, prompt, 64);
    assert_true(ng > 0 && np > 0);

    ember_context_params cp = ctx_params();
    ember_memory_plan plan = { .struct_size = sizeof plan };
    assert_int_equal(ember_memory_plan_get(img, n, NULL, &cp, strlen(text), &plan), EMBER_OK);
    print_message("aidreams-260k plan: weights %llu (in place), model %llu, context %llu, kv %llu, "
                  "tokenize %llu, arena %llu bytes\n",
                  (unsigned long long)plan.weights_bytes, (unsigned long long)plan.model_bytes,
                  (unsigned long long)plan.context_bytes, (unsigned long long)plan.kv_bytes,
                  (unsigned long long)plan.tokenize_bytes, (unsigned long long)plan.arena_bytes);
    assert_true(plan.weights_bytes > 900000 && plan.weights_bytes < n);
    assert_true(plan.model_bytes > 0 && plan.context_bytes > 0 && plan.tokenize_bytes > 0);
    assert_true(plan.arena_bytes >= plan.model_bytes + plan.context_bytes + plan.kv_bytes);

    /* the KV part against the context's own report */
    ember_model *m = NULL;
    assert_int_equal(ember_model_load_memory(img, n, NULL, &m), EMBER_OK);
    ember_context *c = NULL;
    assert_int_equal(ember_context_create(m, &cp, &c), EMBER_OK);
    ember_kv_info ki = { .struct_size = sizeof ki };
    assert_int_equal(ember_kv_info_get(c, &ki), EMBER_OK);
    assert_int_equal(plan.kv_bytes, (uint64_t)ki.blocks_total * ki.bytes_per_block);
    ember_context_free(&c);
    ember_model_free(&m);

    /* model, context and decoding (llama.cpp's prompt ids): the plan is
     * exact, the run's peak is it, and one byte less fails cleanly */
    ember_memory_plan p0 = { 0 };
    assert_int_equal(ember_memory_plan_get(img, n, NULL, &cp, 0, &p0), EMBER_OK);
    assert_int_equal(p0.tokenize_bytes, 0);
    assert_int_equal(p0.kv_bytes, plan.kv_bytes);
    run r = run_in_arena(img, n, (size_t)p0.arena_bytes, NULL, prompt, np, ng);
    assert_int_equal(r.rc, EMBER_OK);
    assert_memory_equal(r.out, want, (size_t)ng * 4);
    assert_int_equal(r.peak, (size_t)p0.arena_bytes);
    r = run_in_arena(img, n, (size_t)p0.arena_bytes - 1, NULL, prompt, np, ng);
    assert_int_equal(r.rc, EMBER_ERR_NO_MEMORY);
    /* with tokenization of up to strlen(text) bytes planned (for the worst
     * text of that length): the prompt tokenizes and decodes inside it */
    assert_true(plan.arena_bytes > p0.arena_bytes);
    r = run_in_arena(img, n, (size_t)plan.arena_bytes, text, NULL, 0, ng);
    assert_int_equal(r.rc, EMBER_OK);
    assert_memory_equal(r.out, want, (size_t)ng * 4);
    assert_true(r.peak <= (size_t)plan.arena_bytes);
    free(js);
    free(img);
}

static void test_arena_misuse(void **state) {
    (void)state;
    ember_allocator a;
    static _Alignas(64) unsigned char buf[4096];
    assert_int_equal(ember_arena_allocator(NULL, 4096, &a), EMBER_ERR_INVALID_ARGUMENT);
    assert_int_equal(ember_arena_allocator(buf + 1, 4000, &a), EMBER_ERR_INVALID_ARGUMENT);
    assert_int_equal(ember_arena_allocator(buf, 8, &a), EMBER_ERR_INVALID_ARGUMENT);
    assert_int_equal(ember_arena_allocator(buf, sizeof buf, NULL), EMBER_ERR_INVALID_ARGUMENT);
    ember_allocator libc = { 0 };
    assert_int_equal(ember_arena_usage(&libc, NULL, NULL), EMBER_ERR_INVALID_ARGUMENT);
    assert_int_equal(ember_arena_allocator(buf, sizeof buf, &a), EMBER_OK);
    size_t used0, used, peak;
    ember_arena_usage(&a, &used0, NULL);
    /* freed out of order: the top comes back once all are free */
    void *p = a.malloc_fn(100, a.user), *q = a.malloc_fn(200, a.user), *s = a.malloc_fn(300, a.user);
    assert_true(p && q && s);
    assert_int_equal(((uintptr_t)p | (uintptr_t)q | (uintptr_t)s) & 15, 0);
    a.free_fn(p, a.user);
    a.free_fn(s, a.user);
    ember_arena_usage(&a, &used, NULL);
    assert_true(used > used0); /* q still holds the middle */
    q = a.realloc_fn(q, 1000, a.user); /* the top block grows in place */
    assert_non_null(q);
    a.free_fn(q, a.user);
    ember_arena_usage(&a, &used, &peak);
    assert_int_equal(used, used0);
    assert_true(peak > used0 + 1000);
    assert_null(a.malloc_fn(sizeof buf, a.user)); /* too big: NULL, not a crash */
    /* a plan of a bad image fails with the loader's error */
    unsigned char junk[64] = "GGUF";
    ember_memory_plan plan = { 0 };
    assert_int_not_equal(ember_memory_plan_get(junk, sizeof junk, NULL, NULL, 0, &plan), EMBER_OK);
    assert_int_equal(ember_memory_plan_get(NULL, 0, NULL, NULL, 0, &plan),
                     EMBER_ERR_INVALID_ARGUMENT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena_misuse),
        cmocka_unit_test(test_plan_and_arena),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
