#include "ppl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* -log softmax(logits)[target], in double */
static double nll_of(const float *logits, int n_vocab, int target) {
    double m = logits[0], sum = 0;
    for (int i = 1; i < n_vocab; i++) m = logits[i] > m ? logits[i] : m;
    for (int i = 0; i < n_vocab; i++) sum += exp((double)logits[i] - m);
    return log(sum) + m - logits[target];
}

int ember_ppl_compute(ember_context *ctx, const ember_model *model, const int32_t *ids, size_t n_ids,
                      int n_ctx, ember_ppl_result *out) {
    int n_vocab = ember_model_n_vocab(model), first = n_ctx / 2;
    int32_t bos = ember_token_bos(model);
    ember_batch_entry *batch = malloc(sizeof *batch * (size_t)n_ctx);
    if (!batch) return EMBER_ERR_NO_MEMORY;
    double nll = 0;
    int scored = 0, chunks = (int)(n_ids / (size_t)n_ctx), rc = EMBER_OK;
    for (int c = 0; c < chunks && !rc; c++) {
        const int32_t *tok = ids + (size_t)c * (size_t)n_ctx;
        for (int j = 0; j < n_ctx; j++)
            batch[j] = (ember_batch_entry){ j == 0 && bos >= 0 ? bos : tok[j], j, 0, j >= first };
        rc = ember_seq_clear(ctx, 0);
        if (!rc) rc = ember_eval(ctx, batch, (size_t)n_ctx);
        for (int j = first; j < n_ctx - 1 && !rc; j++) {
            const float *l = ember_get_logits(ctx, (size_t)j);
            if (!l) rc = EMBER_ERR_INVALID_ARGUMENT;
            else nll += nll_of(l, n_vocab, tok[j + 1]), scored++;
        }
    }
    free(batch);
    if (rc) return rc;
    out->n_chunks = chunks;
    out->n_scored = scored;
    out->nll = scored ? nll / scored : 0;
    out->ppl = exp(out->nll);
    return scored ? EMBER_OK : EMBER_ERR_INVALID_ARGUMENT;
}

int ember_ppl_read_ids(const char *path, int32_t **ids, size_t *n) {
    FILE *f = fopen(path, "r");
    if (!f) return EMBER_ERR_IO;
    size_t cap = 4096, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    long x;
    while (v && fscanf(f, "%ld", &x) == 1) {
        if (k == cap) {
            int32_t *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) {
                free(v);
                v = NULL;
                break;
            }
            v = nv;
        }
        v[k++] = (int32_t)x;
    }
    fclose(f);
    if (!v) return EMBER_ERR_NO_MEMORY;
    *ids = v;
    *n = k;
    return EMBER_OK;
}
