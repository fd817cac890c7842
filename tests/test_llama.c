/* Llama models against their references: tiny-llama (transformers) and
 * aidreams-260k (llama.cpp). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

enum { TL_VOCAB = 32000 };

static ember_context *new_ctx(const ember_model *m, int kv_type) {
    ember_context_params p;
    ember_context_default_params(&p);
    p.n_ctx = 128;
    p.n_batch = 64;
    p.kv_type = kv_type;
    ember_context *c = NULL;
    int rc = ember_context_create(m, &p, &c);
    if (rc) print_error("%s\n", ember_last_error());
    assert_int_equal(rc, EMBER_OK);
    return c;
}

/* Evaluates ids[from..to) at their positions, copying every row's logits. */
static void eval_rows(ember_context *c, const int32_t *ids, int from, int to, int n_vocab,
                      float *out) {
    ember_batch_entry b[128] = { { 0 } };
    for (int i = from; i < to; i++) b[i - from] = (ember_batch_entry){ ids[i], i, 0, 1 };
    int rc = ember_eval(c, b, (size_t)(to - from));
    if (rc) print_error("%s\n", ember_context_last_error(c));
    assert_int_equal(rc, EMBER_OK);
    for (int i = from; i < to; i++)
        memcpy(out + (size_t)i * n_vocab, ember_get_logits(c, (size_t)(i - from)),
               (size_t)n_vocab * 4);
}

static ember_model *load_model(const char *rel) {
    ember_model *m = NULL;
    int rc = ember_model_load_file(testdata_path(rel), NULL, &m);
    if (rc) print_error("%s\n", ember_last_error());
    assert_int_equal(rc, EMBER_OK);
    return m;
}

static void test_tiny_llama_batch(void **state) {
    (void)state;
    model_ref r;
    load_model_ref("tiny-llama", TL_VOCAB, &r);
    ember_model *m = load_model("models/tiny-llama/model-f16.gguf");
    ember_context *c = new_ctx(m, EMBER_TYPE_F32);
    float *got = malloc((size_t)r.n_seq * TL_VOCAB * 4);
    eval_rows(c, r.seq, 0, r.n_seq, TL_VOCAB, got);
    double d = max_diff(got, r.logits, (size_t)r.n_seq * TL_VOCAB);
    print_message("tiny-llama one batch: max |diff| = %.3g\n", d);
    assert_true(d < 1e-3);

    /* prompt, then one token at a time: the same logits */
    ember_seq_clear(c, 0);
    eval_rows(c, r.seq, 0, r.n_prompt, TL_VOCAB, got);
    for (int i = r.n_prompt; i < r.n_seq; i++) eval_rows(c, r.seq, i, i + 1, TL_VOCAB, got);
    d = max_diff(got, r.logits, (size_t)r.n_seq * TL_VOCAB);
    print_message("tiny-llama incremental: max |diff| = %.3g\n", d);
    assert_true(d < 1e-3);

    /* rollback: re-evaluating from position 5 replaces the cached tail */
    eval_rows(c, r.seq, 5, r.n_seq, TL_VOCAB, got);
    assert_int_equal(ember_seq_length(c, 0), r.n_seq);
    d = max_diff(got, r.logits, (size_t)r.n_seq * TL_VOCAB);
    assert_true(d < 1e-3);
    free(got);
    free(r.logits);
    ember_context_free(&c);
    ember_model_free(&m);
}

static void test_tiny_llama_greedy(void **state) {
    (void)state;
    model_ref r;
    load_model_ref("tiny-llama", TL_VOCAB, &r);
    ember_model *m = load_model("models/tiny-llama/model-f16.gguf");
    ember_context *c = new_ctx(m, EMBER_TYPE_F32);
    int32_t out[64];
    greedy_decode(c, r.prompt, r.n_prompt, r.n_greedy, TL_VOCAB, out);
    assert_memory_equal(out, r.greedy, (size_t)r.n_greedy * 4);
    free(r.logits);
    ember_context_free(&c);
    ember_model_free(&m);
}

/* The 8-bit KV cache needs whole blocks of 32 per head (tests/
 * test_perplexity.c measures it on kjv-7m); tiny-llama's heads are 16
 * wide, so it is refused with a reason rather than silently widened. */
static void test_tiny_llama_kv_8bit_refused(void **state) {
    (void)state;
    ember_model *m = load_model("models/tiny-llama/model-f16.gguf");
    ember_context_params p;
    ember_context_default_params(&p);
    p.kv_type = EMBER_TYPE_Q8_0;
    ember_context *c = (ember_context *)1;
    assert_int_equal(ember_context_create(m, &p, &c), EMBER_ERR_UNSUPPORTED);
    assert_null(c);
    assert_non_null(strstr(ember_last_error(), "multiples of 32"));
    ember_model_free(&m);
}

/* Loading from the caller's memory gives bit-identical logits. */
static void test_memory_equals_file(void **state) {
    (void)state;
    model_ref r;
    load_model_ref("tiny-llama", TL_VOCAB, &r);
    const char *path = testdata_path("models/tiny-llama/model-f16.gguf");
    size_t size;
    void *img = read_file(path, &size);
    ember_model *mf = load_model("models/tiny-llama/model-f16.gguf"), *mm = NULL;
    assert_int_equal(ember_model_load_memory(img, size, NULL, &mm), EMBER_OK);
    ember_context *cf = new_ctx(mf, EMBER_TYPE_F32), *cm = new_ctx(mm, EMBER_TYPE_F32);
    float *a = malloc((size_t)r.n_seq * TL_VOCAB * 4), *b = malloc((size_t)r.n_seq * TL_VOCAB * 4);
    eval_rows(cf, r.seq, 0, r.n_seq, TL_VOCAB, a);
    eval_rows(cm, r.seq, 0, r.n_seq, TL_VOCAB, b);
    assert_memory_equal(a, b, (size_t)r.n_seq * TL_VOCAB * 4);
    ember_context_free(&cf);
    ember_context_free(&cm);
    ember_model_free(&mf);
    ember_model_free(&mm);
    free(img);
    free(a);
    free(b);
    free(r.logits);
}

/* Two sequences interleaved in one batch: each gets the logits it gets
 * alone (its attention reads only its own blocks). */
static void test_two_sequences(void **state) {
    (void)state;
    model_ref r;
    load_model_ref("tiny-llama", TL_VOCAB, &r);
    ember_model *m = load_model("models/tiny-llama/model-f16.gguf");
    int n = r.n_seq;
    int32_t other[128];
    for (int i = 0; i < n; i++) other[i] = r.seq[(i * 7 + 3) % n];
    size_t sz = (size_t)n * TL_VOCAB;
    float *a = malloc(sz * 4), *b = malloc(sz * 4), *both = malloc(2 * sz * 4);
    ember_context *c1 = new_ctx(m, EMBER_TYPE_F32);
    eval_rows(c1, r.seq, 0, n, TL_VOCAB, a);
    ember_seq_clear(c1, 0);
    eval_rows(c1, other, 0, n, TL_VOCAB, b);
    ember_context_free(&c1);
    ember_context_params p;
    ember_context_default_params(&p);
    p.n_ctx = 64;
    p.n_batch = 64;
    p.n_seq_max = 2;
    ember_context *c2;
    assert_int_equal(ember_context_create(m, &p, &c2), EMBER_OK);
    ember_batch_entry e[128];
    for (int i = 0; i < n; i++) {
        e[2 * i] = (ember_batch_entry){ r.seq[i], i, 0, 1 };
        e[2 * i + 1] = (ember_batch_entry){ other[i], i, 1, 1 };
    }
    assert_int_equal(ember_eval(c2, e, (size_t)(2 * n)), EMBER_OK);
    double da = 0, db = 0;
    for (int i = 0; i < n; i++) {
        const float *la = ember_get_logits(c2, (size_t)(2 * i)), *lb = ember_get_logits(c2, (size_t)(2 * i + 1));
        for (int v = 0; v < TL_VOCAB; v++) {
            da = fmax(da, fabs(la[v] - a[(size_t)i * TL_VOCAB + v]));
            db = fmax(db, fabs(lb[v] - b[(size_t)i * TL_VOCAB + v]));
        }
    }
    assert_true(da < 1e-4 && db < 1e-4);
    assert_int_equal(ember_seq_length(c2, 0), n);
    assert_int_equal(ember_seq_length(c2, 1), n);
    /* clearing one sequence leaves the other intact */
    assert_int_equal(ember_seq_clear(c2, 1), EMBER_OK);
    assert_int_equal(ember_seq_length(c2, 0), n);
    ember_context_free(&c2);
    ember_model_free(&m);
    free(a); free(b); free(both); free(r.logits);
}

typedef struct job { const ember_model *m; const model_ref *r; float *out; } job;

static void *thread_main(void *p) {
    job *j = p;
    ember_context_params cp;
    ember_context_default_params(&cp);
    cp.n_ctx = 128;
    cp.n_threads = 1;
    ember_context *c = NULL;
    if (ember_context_create(j->m, &cp, &c)) return NULL;
    for (int i = 0; i < j->r->n_seq; i++) {
        ember_batch_entry e = { j->r->seq[i], i, 0, 1 };
        if (ember_eval(c, &e, 1)) break;
        memcpy(j->out + (size_t)i * TL_VOCAB, ember_get_logits(c, 0), TL_VOCAB * 4);
    }
    ember_context_free(&c);
    return NULL;
}

/* One model, two contexts on two threads at once: the same results as
 * one after the other. */
static void test_two_threads(void **state) {
    (void)state;
    model_ref r;
    load_model_ref("tiny-llama", TL_VOCAB, &r);
    ember_model *m = load_model("models/tiny-llama/model-f16.gguf");
    size_t sz = (size_t)r.n_seq * TL_VOCAB;
    float *serial = calloc(sz, 4), *t1 = calloc(sz, 4), *t2 = calloc(sz, 4);
    job js = { m, &r, serial }, j1 = { m, &r, t1 }, j2 = { m, &r, t2 };
    thread_main(&js);
    pthread_t a, b;
    pthread_create(&a, NULL, thread_main, &j1);
    pthread_create(&b, NULL, thread_main, &j2);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    assert_memory_equal(serial, t1, sz * 4);
    assert_memory_equal(serial, t2, sz * 4);
    assert_true(max_diff(serial, r.logits, sz) < 1e-3);
    free(serial); free(t1); free(t2); free(r.logits);
    ember_model_free(&m);
}

/* aidreams-260k: tokenizer, prompt logits and greedy text vs llama.cpp.
 * llama.cpp ran with its default F16 KV cache, so the logits comparison
 * uses ours; greedy ids and text must match with either cache type. */
static void test_aidreams(void **state) {
    (void)state;
    size_t n;
    char *js = read_file(testdata_path("models/aidreams-260k/reference.json"), &n);
    ember_model *m = load_model("models/aidreams-260k/model-f32.gguf");
    for (int k = 0; k < 2; k++) {
        char text[512], want_text[1024], rel[128];
        int32_t want_prompt[64], want_greedy[64], ids[64];
        assert_true(json_string(js, "prompt_text", k, text, sizeof text) > 0);
        json_string(js, "greedy_text", k, want_text, sizeof want_text);
        int np = json_ints(js, "prompt", k, want_prompt, 64);
        int ng = json_ints(js, "greedy", k, want_greedy, 64);
        size_t nt;
        assert_int_equal(ember_tokenize(m, text, strlen(text), ids, 64, &nt, EMBER_TOKENIZE_ADD_BOS),
                         EMBER_OK);
        assert_int_equal((int)nt, np);
        assert_memory_equal(ids, want_prompt, nt * 4);
        snprintf(rel, sizeof rel, "models/aidreams-260k/prompt%d-logits.f32", k + 1);
        size_t ln;
        float *want = read_file(testdata_path(rel), &ln), got[64 * 512];
        assert_int_equal(ln, (size_t)np * 512 * 4);
        for (int kv = 0; kv < 2; kv++) {
            ember_context *c = new_ctx(m, kv ? EMBER_TYPE_F16 : EMBER_TYPE_F32);
            eval_rows(c, ids, 0, np, 512, got);
            double d = max_diff(got, want, (size_t)np * 512);
            print_message("aidreams '%s' %s cache: max |diff| = %.3g\n", text, kv ? "f16" : "f32", d);
            assert_true(d < (kv ? 1e-3 : 6e-3));
            ember_seq_clear(c, 0);
            int32_t out[64];
            greedy_decode(c, ids, np, ng, 512, out);
            assert_memory_equal(out, want_greedy, (size_t)ng * 4);
            char buf[1024];
            size_t nb;
            assert_int_equal(ember_detokenize(m, out, (size_t)ng, buf, sizeof buf, &nb, 0), EMBER_OK);
            assert_int_equal(nb, strlen(want_text));
            assert_memory_equal(buf, want_text, nb);
            ember_context_free(&c);
        }
        free(want);
    }
    free(js);
    ember_model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_llama_batch), cmocka_unit_test(test_tiny_llama_greedy),
        cmocka_unit_test(test_tiny_llama_kv_8bit_refused),
        cmocka_unit_test(test_memory_equals_file), cmocka_unit_test(test_two_threads),
        cmocka_unit_test(test_aidreams), cmocka_unit_test(test_two_sequences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
