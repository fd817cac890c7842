/* ember-tokenize: text on stdin -> token ids on stdout (space-separated,
 * one line), or with --decode ids on stdin -> text.
 *
 *   ember-tokenize -m MODEL.gguf [--no-bos] [--specials] [--decode] [--stats]
 *
 * Only the tokenizer is loaded (vocab_only), so any architecture works.
 * --stats prints bytes, tokens and encode speed on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ember.h"

static char *read_all(FILE *f, size_t *n) {
    size_t cap = 1 << 16;
    char *buf = malloc(cap);
    *n = 0;
    size_t got;
    while (buf && (got = fread(buf + *n, 1, cap - *n, f)) > 0) {
        *n += got;
        if (*n == cap) {
            char *p = realloc(buf, cap *= 2);
            if (!p) { free(buf); return NULL; }
            buf = p;
        }
    }
    return buf;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int encode(const ember_model *m, const char *text, size_t len, uint32_t flags, int stats) {
    size_t cap = len + 16, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    double t0 = now_s();
    int rc = ember_tokenize(m, text, len, ids, cap, &n, flags);
    if (rc == EMBER_ERR_BUFFER_TOO_SMALL) {
        free(ids);
        ids = malloc(n * sizeof *ids);
        cap = n;
        rc = ember_tokenize(m, text, len, ids, cap, &n, flags);
    }
    double dt = now_s() - t0;
    if (rc) {
        fprintf(stderr, "ember-tokenize: %s\n", ember_last_error());
        free(ids);
        return 1;
    }
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
    if (stats)
        fprintf(stderr, "ember-tokenize: %zu bytes -> %zu tokens in %.3f s (%.2f MB/s)\n", len, n,
                dt, dt > 0 ? len / dt / 1e6 : 0.0);
    free(ids);
    return 0;
}

static int decode(const ember_model *m, char *text) {
    size_t cap = 1024, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    for (char *p = strtok(text, " \t\r\n,"); p && ids; p = strtok(NULL, " \t\r\n,")) {
        if (n == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
        if (ids) ids[n++] = (int32_t)strtol(p, NULL, 10);
    }
    size_t need = 0;
    int rc = ember_detokenize(m, ids, n, NULL, 0, &need, 0);
    char *out = malloc(need + 1);
    if (rc == EMBER_ERR_BUFFER_TOO_SMALL || rc == EMBER_OK)
        rc = ember_detokenize(m, ids, n, out, need + 1, &need, 0);
    if (rc) fprintf(stderr, "ember-tokenize: %s\n", ember_last_error());
    else fwrite(out, 1, need, stdout);
    free(out);
    free(ids);
    return rc ? 1 : 0;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    uint32_t flags = EMBER_TOKENIZE_ADD_BOS;
    int dec = 0, stats = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--no-bos")) flags &= ~(uint32_t)EMBER_TOKENIZE_ADD_BOS;
        else if (!strcmp(argv[i], "--specials")) flags |= EMBER_TOKENIZE_PARSE_SPECIAL;
        else if (!strcmp(argv[i], "--decode")) dec = 1;
        else if (!strcmp(argv[i], "--stats")) stats = 1;
        else {
            fprintf(stderr, "usage: ember-tokenize -m MODEL.gguf [--no-bos] [--specials] "
                            "[--decode] [--stats] < input\n");
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "ember-tokenize: -m MODEL.gguf is required\n");
        return 2;
    }
    ember_model_params p;
    ember_model_default_params(&p);
    p.vocab_only = 1;
    ember_model *m = NULL;
    if (ember_model_load_file(path, &p, &m)) {
        fprintf(stderr, "ember-tokenize: %s\n", ember_last_error());
        return 1;
    }
    size_t len;
    char *text = read_all(stdin, &len);
    if (!text) return 1;
    int rc;
    if (dec) {
        char *z = realloc(text, len + 1);
        if (!z) return 1;
        text = z;
        text[len] = 0;
        rc = decode(m, text);
    } else {
        rc = encode(m, text, len, flags, stats);
    }
    free(text);
    ember_model_free(&m);
    return rc;
}
