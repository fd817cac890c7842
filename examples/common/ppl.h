/* Perplexity the way llama.cpp's llama-perplexity computes it, so numbers
 * compare: the token ids are cut into chunks of n_ctx, the first id of
 * each chunk replaced by BOS, and each chunk scored on its predictions
 * from position n_ctx / 2 to n_ctx - 2 (the second half, where every
 * prediction has at least n_ctx / 2 tokens of context). Shared by
 * ember-perplexity and the tests. */
#ifndef EMBER_EXAMPLES_PPL_H
#define EMBER_EXAMPLES_PPL_H

#include <stddef.h>
#include <stdint.h>

#include "ember.h"

typedef struct ember_ppl_result {
    double ppl;
    double nll;      /* mean negative log-likelihood */
    int n_scored;    /* predictions scored */
    int n_chunks;
} ember_ppl_result;

/* ctx must have n_ctx >= n_ctx and n_batch >= n_ctx; uses sequence 0. */
int ember_ppl_compute(ember_context *ctx, const ember_model *model, const int32_t *ids, size_t n_ids,
                      int n_ctx, ember_ppl_result *out);

/* Reads whitespace-separated ids from a file; *ids is malloc'd. */
int ember_ppl_read_ids(const char *path, int32_t **ids, size_t *n);

#endif
