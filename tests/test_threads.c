/* Thread safety: 8 threads with 8 contexts on one shared model, tokenizer
 * calls from every thread, and a thread creating and destroying contexts
 * while the others run. Results must be bit-identical to a single-threaded
 * run; CI runs this under ThreadSanitizer. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "synth_model.h"

enum { N_THREADS = 8, N_PROMPT = 6, N_GEN = 6 };

static ember_model *model;
static void *img;
static int n_vocab;

typedef struct result {
    int32_t ids[N_GEN];
    float *last_logits;
    int32_t tokens[32];
    size_t n_tokens;
    int rc;
} result;

static int argmax(const float *l) {
    int b = 0;
    for (int i = 1; i < n_vocab; i++) if (l[i] > l[b]) b = i;
    return b;
}

static const char *texts[N_THREADS] = {
    "the cat", "a dog ran", "hello world", "once upon", "x y z", "the end", "so it goes", "abc",
};

/* Thread i's work: greedy decode from its own prompt, and tokenizing. */
static void work(int i, int pool_threads, result *r) {
    ember_context_params cp;
    ember_context_default_params(&cp);
    cp.n_ctx = 32;
    cp.n_batch = 8;
    cp.n_threads = (uint32_t)pool_threads;
    ember_context *c = NULL;
    if ((r->rc = ember_context_create(model, &cp, &c))) return;
    ember_batch_entry b[N_PROMPT];
    for (int p = 0; p < N_PROMPT; p++)
        b[p] = (ember_batch_entry){ 3 + (i * 37 + p * 11) % (n_vocab - 3), p, 0, p == N_PROMPT - 1 };
    if ((r->rc = ember_eval(c, b, N_PROMPT))) goto out;
    const float *l = ember_get_logits(c, N_PROMPT - 1);
    for (int g = 0; g < N_GEN; g++) {
        r->ids[g] = argmax(l);
        ember_batch_entry e = { r->ids[g], N_PROMPT + g, 0, 1 };
        if ((r->rc = ember_eval(c, &e, 1))) goto out;
        l = ember_get_logits(c, 0);
    }
    memcpy(r->last_logits, l, (size_t)n_vocab * sizeof *l);
    r->rc = ember_tokenize(model, texts[i], strlen(texts[i]), r->tokens, 32, &r->n_tokens,
                           EMBER_TOKENIZE_ADD_BOS);
out:
    ember_context_free(&c);
}

typedef struct targ { int i; result *r; } targ;

static void *thread_main(void *p) {
    targ *a = p;
    work(a->i, a->i % 2 ? 2 : 1, a->r); /* some contexts run their own pools */
    return NULL;
}

static atomic_int stop_churn;

static void *churn_main(void *p) {
    long *cycles = p;
    while (!atomic_load(&stop_churn)) {
        ember_context_params cp;
        ember_context_default_params(&cp);
        cp.n_ctx = 16;
        cp.n_batch = 4;
        cp.n_threads = 1;
        ember_context *c;
        if (ember_context_create(model, &cp, &c) == EMBER_OK) {
            ember_batch_entry e = { 5, 0, 0, 1 };
            ember_eval(c, &e, 1);
            ember_context_free(&c);
        }
        char buf[64];
        size_t n;
        ember_detokenize(model, (int32_t[]){ 1, 300, 301 }, 3, buf, sizeof buf, &n, 0);
        (*cycles)++;
    }
    return NULL;
}

static void run_eight_threads(void) {
    result serial[N_THREADS], par[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        serial[i].last_logits = malloc((size_t)n_vocab * 4);
        par[i].last_logits = malloc((size_t)n_vocab * 4);
        work(i, i % 2 ? 2 : 1, &serial[i]);
        assert_int_equal(serial[i].rc, EMBER_OK);
    }
    pthread_t th[N_THREADS], churn;
    targ args[N_THREADS];
    long cycles = 0;
    atomic_store(&stop_churn, 0);
    pthread_create(&churn, NULL, churn_main, &cycles);
    for (int i = 0; i < N_THREADS; i++) {
        args[i] = (targ){ i, &par[i] };
        pthread_create(&th[i], NULL, thread_main, &args[i]);
    }
    for (int i = 0; i < N_THREADS; i++) pthread_join(th[i], NULL);
    atomic_store(&stop_churn, 1);
    pthread_join(churn, NULL);
    print_message("churn thread: %ld context create/destroy cycles meanwhile\n", cycles);
    for (int i = 0; i < N_THREADS; i++) {
        assert_int_equal(par[i].rc, EMBER_OK);
        assert_memory_equal(par[i].ids, serial[i].ids, sizeof serial[i].ids);
        assert_memory_equal(par[i].last_logits, serial[i].last_logits, (size_t)n_vocab * 4);
        assert_int_equal(par[i].n_tokens, serial[i].n_tokens);
        assert_memory_equal(par[i].tokens, serial[i].tokens, serial[i].n_tokens * 4);
        free(serial[i].last_logits);
        free(par[i].last_logits);
    }
}

static void test_eight_threads_dense(void **state) {
    (void)state;
    run_eight_threads();
}

/* The same with a MoE model (MLA, routed and shared experts). */
static void test_eight_threads_moe(void **state) {
    (void)state;
    ember_model *dense = model;
    int dense_vocab = n_vocab;
    ember_model *moe = NULL;
    assert_int_equal(ember_model_load_file(testdata_path("models/tiny-deepseek3/model-f16.gguf"),
                                           NULL, &moe), EMBER_OK);
    model = moe;
    n_vocab = ember_model_n_vocab(moe);
    run_eight_threads();
    model = dense;
    n_vocab = dense_vocab;
    ember_model_free(&moe);
}

static int setup(void **state) {
    (void)state;
    synth_cfg cfg = { 64, 2, 4, 2, 96, 64, 1, 11 };
    size_t size;
    if (synth_llama(&cfg, &img, &size)) return -1;
    if (ember_model_load_memory(img, size, NULL, &model)) return -1;
    n_vocab = ember_model_n_vocab(model);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    ember_model_free(&model);
    free(img);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eight_threads_dense),
        cmocka_unit_test(test_eight_threads_moe),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
