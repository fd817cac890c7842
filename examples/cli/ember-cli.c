/* ember-cli: generate text from a GGUF model (or, with no -m, from a
 * built-in synthetic model with random weights).
 *
 *   ember-cli -m MODEL.gguf -p "text" -n N [--temp T --top-k K --top-p P
 *             --min-p P --repeat-penalty R --seed S -t THREADS -c CTX]
 *   ember-cli -m MODEL.gguf --tokens 1,2,3 -n 0 --logits-out logits.f32
 *   ember-cli ... --print-ids   (generated ids on stdout, the rest on stderr)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ember.h"
#include "synth_model.h"

typedef struct opts {
    const char *model, *prompt, *tokens, *logits_out;
    int n_predict, n_threads, n_ctx, print_ids, kv_f16, kv_q8, gpu, device;
    int dev_layers, dev_last;
    ember_sampler_params sp;
} opts;

static void usage(void) {
    fprintf(stderr,
            "usage: ember-cli [-m MODEL.gguf] [-p TEXT | --tokens ID,ID,...] [-n N]\n"
            "                 [--temp T] [--top-k K] [--top-p P] [--min-p P]\n"
            "                 [--repeat-penalty R] [--seed S] [-t THREADS] [-c CTX]\n"
            "                 [--logits-out FILE] [--print-ids] [--kv-f16 | --kv-q8]\n"
            "                 [--vulkan [--device N] [--device-layers N [--last]]]\n"
            "With no -m, a built-in synthetic model with random weights is used.\n"
            "--vulkan runs the model on Vulkan device N (default 0); with --device-layers,\n"
            "only the first N layers (--last: the last N) run there, the rest on the CPU.\n");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int parse_args(int argc, char **argv, opts *o) {
    ember_sampler_default_params(&o->sp);
    o->n_predict = 32;
    o->prompt = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && ++i)
        if (ARG("-m")) o->model = v;
        else if (ARG("-p")) o->prompt = v;
        else if (ARG("-n")) o->n_predict = atoi(v);
        else if (ARG("-t")) o->n_threads = atoi(v);
        else if (ARG("-c")) o->n_ctx = atoi(v);
        else if (ARG("--tokens")) o->tokens = v;
        else if (ARG("--logits-out")) o->logits_out = v;
        else if (ARG("--temp")) o->sp.temperature = strtof(v, NULL);
        else if (ARG("--top-k")) o->sp.top_k = atoi(v);
        else if (ARG("--top-p")) o->sp.top_p = strtof(v, NULL);
        else if (ARG("--min-p")) o->sp.min_p = strtof(v, NULL);
        else if (ARG("--repeat-penalty")) o->sp.repeat_penalty = strtof(v, NULL);
        else if (ARG("--seed")) o->sp.seed = strtoull(v, NULL, 0);
        else if (strcmp(a, "--print-ids") == 0) o->print_ids = 1;
        else if (strcmp(a, "--kv-f16") == 0) o->kv_f16 = 1;
        else if (strcmp(a, "--kv-q8") == 0) o->kv_q8 = 1;
        else if (strcmp(a, "--vulkan") == 0) o->gpu = 1;
        else if (ARG("--device")) o->device = atoi(v);
        else if (ARG("--device-layers")) o->dev_layers = atoi(v);
        else if (strcmp(a, "--last") == 0) o->dev_last = 1;
        else { usage(); return -1; }
#undef ARG
    }
    if (o->n_predict < 0) o->n_predict = 0;
    return 0;
}

static int parse_ids(const char *s, int32_t **ids, size_t *n) {
    size_t cap = 16;
    *ids = malloc(cap * sizeof **ids);
    *n = 0;
    while (*ids && *s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX) return -1;
        if (*n == cap) {
            int32_t *p = realloc(*ids, (cap *= 2) * sizeof **ids);
            if (!p) return -1;
            *ids = p;
        }
        (*ids)[(*n)++] = (int32_t)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return *ids && *n ? 0 : -1;
}

static int load(const opts *o, ember_model **m, void **synth) {
    if (o->model) return ember_model_load_file(o->model, NULL, m);
    size_t size;
    synth_cfg cfg = synth_default();
    fprintf(stderr, "ember-cli: no -m given: using a built-in synthetic model with RANDOM "
                    "weights (%d layers, %d wide); its text is noise. Run a real model with "
                    "-m MODEL.gguf.\n", cfg.n_layer, cfg.n_embd);
    int rc = synth_llama(&cfg, synth, &size);
    return rc ? rc : ember_model_load_memory(*synth, size, NULL, m);
}

static int tokenize_prompt(const opts *o, const ember_model *m, int32_t **ids, size_t *n) {
    if (o->tokens) {
        if (parse_ids(o->tokens, ids, n)) {
            fprintf(stderr, "ember-cli: --tokens wants comma-separated token ids\n");
            return EMBER_ERR_INVALID_ARGUMENT;
        }
        return EMBER_OK;
    }
    const char *text = o->prompt ? o->prompt : "Once upon a time";
    size_t len = strlen(text), need = 0;
    int rc = ember_tokenize(m, text, len, NULL, 0, &need, EMBER_TOKENIZE_ADD_BOS);
    if (rc && rc != EMBER_ERR_BUFFER_TOO_SMALL) return rc;
    *ids = malloc((need ? need : 1) * sizeof **ids);
    if (!*ids) return EMBER_ERR_NO_MEMORY;
    return ember_tokenize(m, text, len, *ids, need, n, EMBER_TOKENIZE_ADD_BOS);
}

/* Evaluates the prompt in batches; keeps logits of every row if asked.
 * *last gets the index, in the last batch, of the prompt's last token. */
static int eval_prompt(ember_context *ctx, const int32_t *ids, size_t n, size_t n_batch,
                       int32_t n_vocab, FILE *logits_out, size_t *last) {
    ember_batch_entry *b = malloc(n_batch * sizeof *b);
    if (!b) return EMBER_ERR_NO_MEMORY;
    int rc = EMBER_OK;
    for (size_t i0 = 0; i0 < n && !rc; i0 += n_batch) {
        size_t nb = n - i0 < n_batch ? n - i0 : n_batch;
        for (size_t j = 0; j < nb; j++)
            b[j] = (ember_batch_entry){ ids[i0 + j], (int32_t)(i0 + j), 0,
                                        logits_out || i0 + j == n - 1 };
        rc = ember_eval(ctx, b, nb);
        *last = nb - 1;
        for (size_t j = 0; j < nb && !rc && logits_out; j++)
            if (fwrite(ember_get_logits(ctx, j), sizeof(float), (size_t)n_vocab, logits_out) !=
                (size_t)n_vocab)
                rc = EMBER_ERR_IO;
    }
    free(b);
    return rc;
}

/* Whole characters only: a character split over tokens waits for its end. */
static void print_piece(ember_detok_stream *st, int32_t tok, FILE *f) {
    char buf[512];
    size_t n;
    if (ember_detok_stream_push(st, tok, buf, sizeof buf, &n) == EMBER_OK) fwrite(buf, 1, n, f);
    fflush(f);
}

static int generate(const opts *o, const ember_model *m, ember_context *ctx, size_t n_prompt,
                    size_t last, int *n_gen) {
    ember_sampler *s;
    ember_detok_stream *st = NULL;
    int rc = ember_sampler_create(&o->sp, ember_model_n_vocab(m), &s);
    if (rc) return rc;
    if ((rc = ember_detok_stream_create(m, 0, &st))) {
        ember_sampler_free(&s);
        return rc;
    }
    FILE *text = o->print_ids ? stderr : stdout;
    const float *logits = ember_get_logits(ctx, last);
    int32_t pos = (int32_t)n_prompt;
    for (*n_gen = 0; *n_gen < o->n_predict && !rc; (*n_gen)++) {
        int32_t tok;
        if ((rc = ember_sampler_sample(s, logits, &tok))) break;
        if (o->print_ids) printf("%s%d", *n_gen ? " " : "", tok);
        if (ember_token_is_eog(m, tok)) { (*n_gen)++; break; }
        print_piece(st, tok, text);
        if (*n_gen + 1 == o->n_predict) { (*n_gen)++; break; }
        ember_batch_entry e = { tok, pos++, 0, 1 };
        if ((rc = ember_eval(ctx, &e, 1)) == EMBER_ERR_CONTEXT_FULL) {
            fprintf(stderr, "\nember-cli: the context is full; stopping (raise -c)\n");
            rc = EMBER_OK;
            (*n_gen)++;
            break;
        }
        if (rc) break;
        logits = ember_get_logits(ctx, 0);
    }
    if (o->print_ids) printf("\n");
    char tail[4];
    size_t nt = 0;
    if (ember_detok_stream_flush(st, tail, sizeof tail, &nt) == EMBER_OK) fwrite(tail, 1, nt, text);
    fprintf(text, "\n");
    ember_detok_stream_free(&st);
    ember_sampler_free(&s);
    return rc;
}

static int fail(int rc, const char *what, ember_context *ctx) {
    fprintf(stderr, "ember-cli: %s: %s: %s\n", what, ember_status_string(rc),
            ctx ? ember_context_last_error(ctx) : ember_last_error());
    return 1;
}

int main(int argc, char **argv) {
    opts o = { 0 };
    if (parse_args(argc, argv, &o)) return 2;
    ember_model *m = NULL;
    void *synth = NULL;
    int rc = load(&o, &m, &synth);
    if (rc) return fail(rc, "load", NULL);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if ((rc = tokenize_prompt(&o, m, &ids, &n_ids))) return fail(rc, "tokenize", NULL);
    ember_context_params cp;
    ember_context_default_params(&cp);
    cp.n_threads = (uint32_t)(o.n_threads > 0 ? o.n_threads : 0);
    cp.n_ctx = (uint32_t)(o.n_ctx > 0 ? o.n_ctx : 0);
    if (!cp.n_ctx && ember_model_n_ctx_train(m) > 4096) cp.n_ctx = 4096;
    if (o.kv_f16) cp.kv_type = EMBER_TYPE_F16;
    if (o.kv_q8) cp.kv_type = EMBER_TYPE_Q8_0;
    if (o.gpu) cp.backend = EMBER_BACKEND_VULKAN, cp.device = o.device;
    cp.n_device_layers = o.dev_layers;
    cp.device_layers_at = o.dev_last ? EMBER_LAYERS_LAST : EMBER_LAYERS_FIRST;
    ember_context *ctx = NULL;
    if ((rc = ember_context_create(m, &cp, &ctx))) return fail(rc, "context", NULL);
    FILE *lf = NULL;
    if (o.logits_out && !(lf = fopen(o.logits_out, "wb"))) {
        fprintf(stderr, "ember-cli: cannot write %s\n", o.logits_out);
        return 1;
    }
    double t0 = now_s();
    size_t last = 0;
    rc = eval_prompt(ctx, ids, n_ids, cp.n_batch, ember_model_n_vocab(m), lf, &last);
    if (lf && fclose(lf) && !rc) rc = EMBER_ERR_IO;
    if (rc) return fail(rc, "prompt", ctx);
    double t1 = now_s();
    int n_gen = 0;
    if (o.n_predict > 0 && (rc = generate(&o, m, ctx, n_ids, last, &n_gen))) return fail(rc, "generate", ctx);
    double t2 = now_s();
    fprintf(stderr, "ember-cli: prompt %zu tokens in %.3f s (%.1f tokens/s), generated %d tokens "
                    "in %.3f s (%.1f tokens/s)\n", n_ids, t1 - t0, (double)n_ids / (t1 - t0),
            n_gen, t2 - t1, n_gen > 1 ? (double)(n_gen - 1) / (t2 - t1) : 0.0);
    ember_context_free(&ctx);
    ember_model_free(&m);
    free(synth);
    free(ids);
    return 0;
}
