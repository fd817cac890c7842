/* Helpers shared by the tests. */
#ifndef EMBER_TEST_COMMON_H
#define EMBER_TEST_COMMON_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* GCC 12 for aarch64 dies (internal compiler error in
 * vect_transform_reduction) vectorizing the tests' fmax reductions. */
#if defined(__aarch64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC optimize("no-tree-loop-vectorize")
#endif

#include "ember.h"

/* ../shared/testdata (or $EMBER_TESTDATA); NULL when absent. */
const char *testdata_dir(void);
/* testdata path joined with rel; skips the test (cmocka skip) if the data
 * folder or the file is absent. Returns a static buffer. */
const char *testdata_path(const char *rel);
/* Whole file, 64-byte aligned, NUL-terminated past the end (free()). */
void *read_file(const char *path, size_t *size);

/* Integers of the nth (0-based) array named key in a JSON text; returns the
 * count (or -1). Strings likewise, with \" \\ \n \uXXXX unescaped. */
int json_ints(const char *json, const char *key, int nth, int32_t *out, int max);
int json_string(const char *json, const char *key, int nth, char *out, size_t max);

/* A transformers reference (models/NAME/reference.json and
 * sequence-logits.f32 [n_seq, n_vocab]); skips when absent. */
typedef struct model_ref {
    int32_t prompt[64], greedy[64], seq[128];
    int n_prompt, n_greedy, n_seq;
    float *logits; /* free() */
} model_ref;

void load_model_ref(const char *model, int n_vocab, model_ref *r);

/* The index of the largest of l[0..n) (the first on ties). */
int argmax_f32(const float *l, int n);
/* Greedy decoding of sequence 0 from positions 0: the prompt in one batch,
 * then n tokens one at a time; their ids in out. Fails the test on any
 * error (printing the context's message). */
void greedy_decode(ember_context *c, const int32_t *prompt, int n_prompt, int n, int n_vocab,
                   int32_t *out);

/* max_i |a[i] - b[i]| */
double max_diff(const float *a, const float *b, size_t n);
/* ||got - ref|| / ||ref|| (L2) */
double rel_l2(const float *got, const float *ref, size_t n);

/* An allocator that counts live blocks and bytes and can fail the Nth
 * allocation (fail_at = N, 1-based; 0 = never). */
typedef struct counting_alloc {
    long live_blocks;
    long long live_bytes;
    long n_allocs;
    long fail_at;
    int fail_from;   /* nonzero: fail allocation fail_at and every later one */
    size_t largest;
} counting_alloc;

ember_allocator counting_allocator(counting_alloc *c);

/* The model at src_path quantized with p into a new temporary file;
 * returns its path (free(); the caller unlinks it). Fails the test if
 * anything fails. */
char *quantize_to_temp_file(const char *src_path, const ember_quantize_params *p);

#endif
