/* ember-quantize: a GGUF model with F32/F16/BF16 weights -> a quantized one.
 *
 *   ember-quantize IN.gguf OUT.gguf TYPE [--output-type TYPE] [-t THREADS] [--quiet]
 *
 * TYPE: q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k, or the mixes q4_k_m and
 * q5_k_m (Q6_K for the sensitive tensors, as llama.cpp's files of those
 * names), or a float type, f16 bf16 f32 (converted, rounded to nearest
 * even; output.weight too unless --output-type says otherwise). -t: threads converting rows (default: one per online CPU); the
 * output is the same for any count.
 *
 * Prints, per tensor, its type before and after and the relative error of
 * the stored weights, sqrt(sum (w - w')^2 / sum w^2); then the sizes. The
 * output is a normal GGUF file (llama.cpp reads it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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

static const struct { const char *name; uint32_t type, mix; } types[] = {
    { "q8_0", EMBER_TYPE_Q8_0, 0 }, { "q4_0", EMBER_TYPE_Q4_0, 0 }, { "q4_1", EMBER_TYPE_Q4_1, 0 },
    { "q5_0", EMBER_TYPE_Q5_0, 0 }, { "q5_1", EMBER_TYPE_Q5_1, 0 }, { "q4_k", EMBER_TYPE_Q4_K, 0 },
    { "q5_k", EMBER_TYPE_Q5_K, 0 }, { "q6_k", EMBER_TYPE_Q6_K, 0 },
    { "q4_k_m", EMBER_TYPE_Q4_K, EMBER_QUANTIZE_MIX_M }, { "q5_k_m", EMBER_TYPE_Q5_K, EMBER_QUANTIZE_MIX_M },
    { "f16", EMBER_TYPE_F16, 0 }, { "f32", EMBER_TYPE_F32, 0 }, { "bf16", EMBER_TYPE_BF16, 0 },
};

/* mix: NULL where no mix may be named */
static int parse_type(const char *s, uint32_t *t, uint32_t *mix) {
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (strcasecmp(s, types[i].name) != 0) continue;
        if (types[i].mix && !mix) return 0;
        *t = types[i].type;
        if (mix) *mix = types[i].mix;
        return 1;
    }
    return 0;
}

static long long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

int main(int argc, char **argv) {
    ember_quantize_params p;
    ember_quantize_default_params(&p);
    report r = { 0, 0, NULL, 0 };
    if (argc < 4 || !parse_type(argv[3], &p.type, &p.mix)) {
        fprintf(stderr, "usage: ember-quantize IN.gguf OUT.gguf "
                        "q8_0|q4_0|q4_1|q5_0|q5_1|q4_k|q5_k|q6_k|q4_k_m|q5_k_m|f16|bf16|f32 "
                        "[--output-type TYPE] [-t THREADS] [--quiet]\n");
        return 2;
    }
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--quiet") == 0) {
            r.quiet = 1;
        } else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc && atoi(argv[i + 1]) > 0) {
            p.n_threads = (uint32_t)atoi(argv[++i]);
        } else if (strcmp(argv[i], "--output-type") == 0 && i + 1 < argc &&
                   parse_type(argv[i + 1], &p.output_type, NULL)) {
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
