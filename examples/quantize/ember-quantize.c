/* ember-quantize: a GGUF model with F32/F16/BF16 weights -> Q8_0 or Q4_0.
 *
 *   ember-quantize IN.gguf OUT.gguf q8_0|q4_0 [--output-type q8_0|q4_0|f16|f32] [--quiet]
 *
 * Prints, per tensor, its type before and after and the relative error of
 * the stored weights, sqrt(sum (w - w')^2 / sum w^2); then the sizes. The
 * output is a normal GGUF file (llama.cpp reads it). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "ember.h"

typedef struct report { int quiet; double worst; const char *worst_name; int n; } report;

static void on_tensor(void *user, const char *name, uint32_t from, uint32_t to, int64_t n,
                      double rel) {
    report *r = user;
    r->n++;
    if (from != to && rel > r->worst) {
        r->worst = rel;
        r->worst_name = name; /* valid while the model lives */
    }
    if (!r->quiet)
        printf("%-40s %6s -> %-6s %12lld  rel err %.3e\n", name, ember_type_name((int)from),
               ember_type_name((int)to), (long long)n, rel);
}

static int parse_type(const char *s, uint32_t *t) {
    if (strcmp(s, "q8_0") == 0) *t = EMBER_TYPE_Q8_0;
    else if (strcmp(s, "q4_0") == 0) *t = EMBER_TYPE_Q4_0;
    else if (strcmp(s, "f16") == 0) *t = EMBER_TYPE_F16;
    else if (strcmp(s, "f32") == 0) *t = EMBER_TYPE_F32;
    else return 0;
    return 1;
}

static long long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

int main(int argc, char **argv) {
    ember_quantize_params p;
    ember_quantize_default_params(&p);
    report r = { 0, 0, NULL, 0 };
    if (argc < 4 || !parse_type(argv[3], &p.type) ||
        (p.type != EMBER_TYPE_Q8_0 && p.type != EMBER_TYPE_Q4_0)) {
        fprintf(stderr, "usage: ember-quantize IN.gguf OUT.gguf q8_0|q4_0 "
                        "[--output-type q8_0|q4_0|f16|f32] [--quiet]\n");
        return 2;
    }
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--quiet") == 0) {
            r.quiet = 1;
        } else if (strcmp(argv[i], "--output-type") == 0 && i + 1 < argc &&
                   parse_type(argv[i + 1], &p.output_type)) {
            i++;
        } else {
            fprintf(stderr, "ember-quantize: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    p.on_tensor = on_tensor;
    p.user = &r;
    ember_model *m = NULL;
    int rc = ember_model_load_file(argv[1], NULL, &m);
    if (!rc) rc = ember_model_quantize(m, argv[2], &p);
    if (rc) {
        fprintf(stderr, "ember-quantize: %s: %s\n", ember_status_string(rc), ember_last_error());
        ember_model_free(&m);
        return 1;
    }
    printf("%d tensors; %s: %lld bytes -> %s: %lld bytes; largest relative error %.3e (%s)\n",
           r.n, argv[1], file_size(argv[1]), argv[2], file_size(argv[2]), r.worst,
           r.worst_name ? r.worst_name : "-");
    ember_model_free(&m);
    return 0;
}
