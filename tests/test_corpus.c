/* The malformed-file corpus (tests/corpus/make_corpus.py, generated at
 * build time): every file is rejected with its expected status and a
 * message containing the expected text, leaves nothing allocated, and never
 * makes an allocation larger than the file before it was validated. The
 * unmutated base model must load, or the corpus would prove nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static const char *corpus_dir;

static void *load(const char *name, size_t *size) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", corpus_dir, name);
    void *p = read_file(path, size);
    if (!p) fail_msg("cannot read %s", path);
    return p;
}

static int try_load(const void *img, size_t size, counting_alloc *ca, ember_model **m) {
    ember_model_params p;
    ember_model_default_params(&p);
    p.allocator = counting_allocator(ca);
    /* an empty image is the caller's mistake, not the file's */
    return ember_model_load_memory(size ? img : "", size ? size : 1, &p, m);
}

static void test_base_is_valid(void **state) {
    (void)state;
    size_t size;
    void *img = load("valid.model", &size);
    counting_alloc ca = { 0 };
    ember_model *m = NULL;
    int rc = try_load(img, size, &ca, &m);
    if (rc) print_error("%s\n", ember_last_error());
    assert_int_equal(rc, EMBER_OK);
    ember_model_free(&m);
    assert_int_equal(ca.live_blocks, 0);
    free(img);
}

static void test_every_file(void **state) {
    (void)state;
    size_t msize;
    char *manifest = load("manifest.tsv", &msize);
    int n = 0, failed = 0;
    for (char *line = strtok(manifest, "\n"); line; line = strtok(NULL, "\n")) {
        char *name = line, *st = strchr(name, '\t');
        assert_non_null(st);
        *st++ = 0;
        char *needle = strchr(st, '\t');
        assert_non_null(needle);
        *needle++ = 0;
        int want = atoi(st);
        size_t size;
        void *img = load(name, &size);
        counting_alloc ca = { 0 };
        ember_model *m = NULL;
        /* empty files go through the same path as a 1-byte image */
        void *buf = img;
        if (size == 0) {
            buf = aligned_alloc(64, 64);
            memset(buf, 0, 64);
            size = 1;
        }
        int rc = try_load(buf, size, &ca, &m);
        const char *msg = ember_last_error();
        int ok = rc == want && strstr(msg, needle) && !m && ca.live_blocks == 0 &&
                 ca.largest <= size + 4096;
        if (!ok) {
            failed++;
            print_error("%s: status %d (want %d), '%s' (want '%s'), live %ld, largest %zu\n",
                        name, rc, want, msg, needle, ca.live_blocks, ca.largest);
        }
        if (m) ember_model_free(&m);
        if (buf != img) free(buf);
        free(img);
        n++;
    }
    print_message("%d malformed files checked\n", n);
    assert_true(n >= 120);
    assert_int_equal(failed, 0);
    free(manifest);
}

int main(int argc, char **argv) {
    corpus_dir = argc > 1 ? argv[1] : getenv("EMBER_CORPUS");
    if (!corpus_dir) {
        fprintf(stderr, "usage: test_corpus CORPUS_DIR\n");
        return 2;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base_is_valid),
        cmocka_unit_test(test_every_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
