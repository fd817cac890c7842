/* ember-perplexity: perplexity of a text under a model, computed as
 * llama.cpp's llama-perplexity does (see common/ppl.h), so the numbers
 * compare with its.
 *
 *   ember-perplexity -m MODEL.gguf (-f TEXT | --ids IDS.txt) [-c 256] [-t THREADS]
 *
 * --ids takes token ids (whitespace-separated, BOS first) instead of text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"
#include "ppl.h"

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    fclose(f);
    if (s) s[n] = 0, *len = (size_t)n;
    return s;
}

static int tokenize_file(const ember_model *m, const char *path, int32_t **ids, size_t *n) {
    size_t len = 0;
    char *text = read_file(path, &len);
    if (!text) return EMBER_ERR_IO;
    size_t cap = len + 2;
    *ids = malloc(cap * sizeof **ids);
    int rc = *ids ? ember_tokenize(m, text, len, *ids, cap, n, EMBER_TOKENIZE_ADD_BOS) : EMBER_ERR_NO_MEMORY;
    free(text);
    return rc;
}

int main(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *ids_path = NULL;
    int n_ctx = 256, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) goto usage;
        if (strcmp(a, "-m") == 0) model = v;
        else if (strcmp(a, "-f") == 0) text = v;
        else if (strcmp(a, "--ids") == 0) ids_path = v;
        else if (strcmp(a, "-c") == 0) n_ctx = atoi(v);
        else if (strcmp(a, "-t") == 0) threads = atoi(v);
        else goto usage;
        i++;
    }
    if (!model || !!text == !!ids_path || n_ctx < 4) goto usage;
    ember_model *m = NULL;
    ember_context *ctx = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    ember_context_params cp;
    ember_context_default_params(&cp);
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_batch = (uint32_t)n_ctx;
    cp.n_threads = (uint32_t)threads;
    int rc = ember_model_load_file(model, NULL, &m);
    if (!rc) rc = ember_context_create(m, &cp, &ctx);
    if (!rc) rc = ids_path ? ember_ppl_read_ids(ids_path, &ids, &n) : tokenize_file(m, text, &ids, &n);
    ember_ppl_result r;
    if (!rc) rc = ember_ppl_compute(ctx, m, ids, n, n_ctx, &r);
    if (rc) {
        fprintf(stderr, "ember-perplexity: %s: %s\n", ember_status_string(rc),
                ctx && *ember_context_last_error(ctx) ? ember_context_last_error(ctx) : ember_last_error());
    } else {
        printf("%zu tokens, %d chunks of %d, %d predictions scored\n", n, r.n_chunks, n_ctx, r.n_scored);
        printf("perplexity %.4f (mean NLL %.6f)\n", r.ppl, r.nll);
    }
    free(ids);
    ember_context_free(&ctx);
    ember_model_free(&m);
    return rc ? 1 : 0;
usage:
    fprintf(stderr, "usage: ember-perplexity -m MODEL.gguf (-f TEXT | --ids IDS.txt) [-c 256] [-t THREADS]\n");
    return 2;
}
