/* Fault injection: every allocation of loading (from a file, mapped or
 * read), context creation, tokenizing and a decode step failed in turn,
 * once and from then on; a failing mmap; short and failing reads. Each
 * fault gives the right error, leaks nothing, and a retry with a working
 * allocator succeeds. Links the static library to reach the I/O hooks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"
#include "lib/model.h"
#include "synth_model.h"

static char path[256];
static void *img;
static size_t img_size;
static long points; /* allocation failure points exercised */

static int setup(void **state) {
    (void)state;
    synth_cfg cfg = { 32, 1, 2, 1, 48, 32, 1, 3 };
    if (synth_llama(&cfg, &img, &img_size)) return -1;
    snprintf(path, sizeof path, "/tmp/ember-faults-%d.gguf", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(img, 1, img_size, f) != img_size) return -1;
    fclose(f);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    unlink(path);
    free(img);
    printf("allocation failure points exercised: %ld\n", points);
    return 0;
}

static ember_model_params with_alloc(counting_alloc *ca) {
    ember_model_params p;
    ember_model_default_params(&p);
    p.allocator = counting_allocator(ca);
    return p;
}

/* Runs op with allocation k failing (once, then from k on) for every k up
 * to what a clean run needs; op returns its status and must clean up. */
typedef int (*op_fn)(counting_alloc *ca);

static void every_failure(op_fn op, int want) {
    counting_alloc clean = { 0 };
    assert_int_equal(op(&clean), EMBER_OK);
    assert_int_equal(clean.live_blocks, 0);
    long total = clean.n_allocs;
    assert_true(total > 0);
    for (int from = 0; from < 2; from++)
        for (long k = 1; k <= total; k++) {
            counting_alloc ca = { .fail_at = k, .fail_from = from };
            int rc = op(&ca);
            if (rc != want) print_error("allocation %ld (from=%d): status %d\n", k, from, rc);
            assert_int_equal(rc, want);
            assert_int_equal(ca.live_blocks, 0);
            points++;
        }
    counting_alloc again = { 0 };
    assert_int_equal(op(&again), EMBER_OK); /* and it works again */
}

static int op_load_file(counting_alloc *ca) {
    ember_model_params p = with_alloc(ca);
    ember_model *m = NULL;
    int rc = ember_model_load_file(path, &p, &m);
    if (!rc) {
        assert_non_null(m);
        ember_model_free(&m);
    } else {
        assert_null(m);
    }
    return rc;
}

static void test_load_file(void **state) {
    (void)state;
    every_failure(op_load_file, EMBER_ERR_NO_MEMORY);
}

/* ---- a failing mmap: the loader reads the file instead ---- */

static void *failing_mmap(void *addr, size_t len, int prot, int flags, int fd, long off) {
    (void)addr; (void)len; (void)prot; (void)flags; (void)fd; (void)off;
    errno = ENOMEM;
    return MAP_FAILED;
}

static long read_limit; /* bytes per read call; 0 = unlimited */
static long read_budget; /* bytes before the file "ends"; -1 = no end */
static int read_errno;   /* nonzero: fail reads with this errno */

static long test_read(int fd, void *buf, size_t n) {
    if (read_errno) {
        errno = read_errno;
        return -1;
    }
    if (read_limit && (long)n > read_limit) n = (size_t)read_limit;
    if (read_budget >= 0) {
        if (read_budget == 0) return 0;
        if ((long)n > read_budget) n = (size_t)read_budget;
        read_budget -= (long)n;
    }
    return (long)read(fd, buf, n);
}

static em_io_hooks saved;

static void use_read_path(long limit, long budget, int err) {
    saved = em_io;
    em_io.mmap_fn = failing_mmap;
    em_io.read_fn = test_read;
    read_limit = limit;
    read_budget = budget;
    read_errno = err;
}

static void restore_io(void) { em_io = saved; }

static void logits_of(ember_model *m, float *out, int n) {
    ember_context_params cp;
    ember_context_default_params(&cp);
    cp.n_ctx = 16;
    cp.n_threads = 1;
    ember_context *c;
    assert_int_equal(ember_context_create(m, &cp, &c), EMBER_OK);
    ember_batch_entry b[3] = { { 1, 0, 0, 0 }, { 70, 1, 0, 0 }, { 90, 2, 0, 1 } };
    assert_int_equal(ember_eval(c, b, 3), EMBER_OK);
    memcpy(out, ember_get_logits(c, 2), (size_t)n * sizeof *out);
    ember_context_free(&c);
}

static void test_mmap_fails_read_instead(void **state) {
    (void)state;
    ember_model *mapped = NULL, *read_in = NULL;
    assert_int_equal(ember_model_load_file(path, NULL, &mapped), EMBER_OK);
    use_read_path(7, -1, 0); /* and reads come back 7 bytes at a time */
    int rc = ember_model_load_file(path, NULL, &read_in);
    restore_io();
    assert_int_equal(rc, EMBER_OK);
    int n = ember_model_n_vocab(mapped);
    float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4);
    logits_of(mapped, a, n);
    logits_of(read_in, b, n);
    assert_memory_equal(a, b, (size_t)n * 4);
    ember_model_free(&mapped);
    ember_model_free(&read_in);
    free(a);
    free(b);
}

static int op_load_read_path(counting_alloc *ca) {
    use_read_path(0, -1, 0);
    int rc = op_load_file(ca);
    restore_io();
    return rc;
}

static void test_read_path_allocation_failures(void **state) {
    (void)state;
    every_failure(op_load_read_path, EMBER_ERR_NO_MEMORY);
}

static void test_short_and_failing_reads(void **state) {
    (void)state;
    counting_alloc ca = { 0 };
    ember_model_params p = with_alloc(&ca);
    ember_model *m = NULL;
    use_read_path(0, (long)img_size / 2, 0); /* the file "ends" half way */
    int rc = ember_model_load_file(path, &p, &m);
    restore_io();
    assert_int_equal(rc, EMBER_ERR_IO);
    assert_non_null(strstr(ember_last_error(), "short read"));
    assert_null(m);
    assert_int_equal(ca.live_blocks, 0);
    use_read_path(0, -1, EIO);
    rc = ember_model_load_file(path, &p, &m);
    restore_io();
    assert_int_equal(rc, EMBER_ERR_IO);
    assert_non_null(strstr(ember_last_error(), path));
    assert_int_equal(ca.live_blocks, 0);
}

/* ---- contexts, tokenizing, decoding ---- */

static ember_model *shared_model;

static int op_context(counting_alloc *ca) {
    ember_context_params cp;
    ember_context_default_params(&cp);
    cp.n_ctx = 32;
    cp.n_batch = 8;
    cp.n_threads = 2;
    cp.allocator = counting_allocator(ca);
    ember_context *c = NULL;
    int rc = ember_context_create(shared_model, &cp, &c);
    if (!rc) ember_context_free(&c);
    assert_null(c);
    return rc;
}

static void test_context_creation(void **state) {
    (void)state;
    assert_int_equal(ember_model_load_memory(img, img_size, NULL, &shared_model), EMBER_OK);
    every_failure(op_context, EMBER_ERR_NO_MEMORY);
    ember_model_free(&shared_model);
}

static void test_tokenize(void **state) {
    (void)state;
    /* the model's allocator serves the tokenizer's scratch */
    counting_alloc model_alloc = { 0 };
    ember_model_params p = with_alloc(&model_alloc);
    assert_int_equal(ember_model_load_memory(img, img_size, &p, &shared_model), EMBER_OK);
    long model_blocks = model_alloc.live_blocks, before = model_alloc.n_allocs;
    int32_t ids0[64];
    size_t n0;
    assert_int_equal(ember_tokenize(shared_model, "Hello there, the world", 22, ids0, 64, &n0, 0),
                     EMBER_OK);
    long total = model_alloc.n_allocs - before;
    assert_true(total > 0);
    for (int from = 0; from < 2; from++)
        for (long k = 1; k <= total; k++) {
            model_alloc.fail_at = model_alloc.n_allocs + k;
            model_alloc.fail_from = from;
            int32_t ids[64];
            size_t n;
            assert_int_equal(ember_tokenize(shared_model, "Hello there, the world", 22, ids, 64,
                                            &n, 0), EMBER_ERR_NO_MEMORY);
            assert_int_equal(model_alloc.live_blocks, model_blocks);
            points++;
        }
    model_alloc.fail_at = 0;
    int32_t ids[64];
    size_t n;
    assert_int_equal(ember_tokenize(shared_model, "Hello", 5, ids, 64, &n, 0), EMBER_OK);
    /* more than INT32_MAX tokens can never be asked for: refused before
     * the text is read (the buffer here is 6 bytes) */
    assert_int_equal(ember_tokenize(shared_model, "Hello", (size_t)INT32_MAX + 2, ids, 64, &n, 0),
                     EMBER_ERR_INVALID_ARGUMENT);
    ember_model_free(&shared_model);
    assert_int_equal(model_alloc.live_blocks, 0);
}

/* A decode step allocates nothing, so every allocation failing from the
 * step on changes nothing. */
static void test_decode_step(void **state) {
    (void)state;
    counting_alloc ca = { 0 };
    ember_model_params p = with_alloc(&ca);
    assert_int_equal(ember_model_load_memory(img, img_size, &p, &shared_model), EMBER_OK);
    ember_context *c;
    ember_context_params cp;
    ember_context_default_params(&cp);
    cp.n_ctx = 16;
    assert_int_equal(ember_context_create(shared_model, &cp, &c), EMBER_OK);
    ca.fail_at = ca.n_allocs + 1;
    ca.fail_from = 1;
    for (int i = 0; i < 8; i++) {
        ember_batch_entry e = { 60 + i, i, 0, 1 };
        assert_int_equal(ember_eval(c, &e, 1), EMBER_OK);
        points++;
    }
    ember_context_free(&c);
    ember_model_free(&shared_model);
    assert_int_equal(ca.live_blocks, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_mmap_fails_read_instead),
        cmocka_unit_test(test_read_path_allocation_failures),
        cmocka_unit_test(test_short_and_failing_reads),
        cmocka_unit_test(test_context_creation),
        cmocka_unit_test(test_tokenize),
        cmocka_unit_test(test_decode_step),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
