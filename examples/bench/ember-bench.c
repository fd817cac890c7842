/* ember-bench: prompt-processing and decode speed of a model, next to the
 * machine's memory read bandwidth measured in the same run (decode reads
 * every weight once per token, so it is bound by that bandwidth).
 *
 *   ember-bench [-m MODEL.gguf] [-p PROMPT_TOKENS] [-n DECODE_TOKENS] [-t THREADS]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ember.h"
#include "synth_model.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct bw_arg { const uint64_t *p; size_t n; uint64_t sum; } bw_arg;

static void *bw_worker(void *arg) {
    bw_arg *a = arg;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= a->n; i += 4) {
        s0 += a->p[i];
        s1 += a->p[i + 1];
        s2 += a->p[i + 2];
        s3 += a->p[i + 3];
    }
    a->sum = s0 + s1 + s2 + s3;
    return NULL;
}

/* Best of 5 reads of a 1 GiB buffer split across threads, in GB/s. */
static double read_bandwidth(int threads) {
    size_t bytes = (size_t)1 << 30, n = bytes / 8;
    uint64_t *buf = malloc(bytes);
    if (!buf) return 0;
    for (size_t i = 0; i < n; i++) buf[i] = i;
    double best = 0;
    pthread_t th[64];
    bw_arg args[64];
    if (threads > 64) threads = 64;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now_s();
        for (int t = 0; t < threads; t++) {
            args[t] = (bw_arg){ buf + n / threads * t, n / threads, 0 };
            pthread_create(&th[t], NULL, bw_worker, &args[t]);
        }
        uint64_t sink = 0;
        for (int t = 0; t < threads; t++) {
            pthread_join(th[t], NULL);
            sink += args[t].sum;
        }
        double gbs = (double)bytes / (now_s() - t0) / 1e9;
        if (sink != 1 && gbs > best) best = gbs;
    }
    free(buf);
    return best;
}

static int64_t meta_i(const ember_model *m, const char *fmt, int64_t dflt) {
    char key[128];
    int64_t v;
    snprintf(key, sizeof key, fmt, ember_model_arch(m));
    return ember_model_meta_int(m, key, &v) == EMBER_OK ? v : dflt;
}

/* Bytes one decode step reads: all weights, but of the routed experts only
 * expert_used_count of expert_count (each expert has gate, up, down). */
static uint64_t active_bytes(const ember_model *m, uint64_t total) {
    int64_t n_exp = meta_i(m, "%s.expert_count", 0);
    if (n_exp <= 0) return total;
    int64_t used = meta_i(m, "%s.expert_used_count", 0), E = ember_model_n_embd(m);
    int64_t F = meta_i(m, "%s.expert_feed_forward_length", meta_i(m, "%s.feed_forward_length", 0));
    int64_t moe_layers = ember_model_n_layer(m) - meta_i(m, "%s.leading_dense_block_count", 0);
    double bytes_per_weight = (double)total / (double)ember_model_n_params(m);
    double experts = (double)(3 * E * F) * (double)n_exp * (double)moe_layers * bytes_per_weight;
    return (uint64_t)((double)total - experts + experts * (double)used / (double)n_exp);
}

static int run(ember_context *ctx, int32_t n_vocab, int n_prompt, int n_decode, double *pp,
               double *tg) {
    ember_batch_entry *b = malloc((size_t)n_prompt * sizeof *b);
    if (!b) return EMBER_ERR_NO_MEMORY;
    for (int i = 0; i < n_prompt; i++)
        b[i] = (ember_batch_entry){ (int32_t)((i * 7919 + 13) % n_vocab), i, 0, i == n_prompt - 1 };
    double t0 = now_s();
    int rc = ember_eval(ctx, b, (size_t)n_prompt);
    double t1 = now_s();
    for (int i = 0; i < n_decode && !rc; i++) {
        ember_batch_entry e = { (int32_t)((i * 31 + 7) % n_vocab), n_prompt + i, 0, 1 };
        rc = ember_eval(ctx, &e, 1);
    }
    double t2 = now_s();
    *pp = n_prompt / (t1 - t0);
    *tg = n_decode / (t2 - t1);
    free(b);
    return rc;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    int n_prompt = 128, n_decode = 32, threads = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-m")) path = argv[i + 1];
        else if (!strcmp(argv[i], "-p")) n_prompt = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-n")) n_decode = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-t")) threads = atoi(argv[i + 1]);
        else { fprintf(stderr, "usage: ember-bench [-m MODEL] [-p N] [-n N] [-t N]\n"); return 2; }
    }
    if (n_prompt < 1 || n_decode < 1) return 2;
    ember_model *m = NULL;
    void *synth = NULL;
    size_t size;
    int rc;
    if (path) {
        rc = ember_model_load_file(path, NULL, &m);
    } else {
        synth_cfg cfg = synth_default();
        rc = synth_llama(&cfg, &synth, &size);
        if (!rc) rc = ember_model_load_memory(synth, size, NULL, &m);
    }
    if (rc) { fprintf(stderr, "load: %s\n", ember_last_error()); return 1; }
    ember_context_params cp;
    ember_context_default_params(&cp);
    cp.n_ctx = (uint32_t)(n_prompt + n_decode);
    cp.n_batch = (uint32_t)n_prompt;
    cp.n_threads = (uint32_t)threads;
    ember_context *ctx;
    if ((rc = ember_context_create(m, &cp, &ctx))) { fprintf(stderr, "context: %s\n", ember_last_error()); return 1; }
    uint64_t weight_bytes = 0;
    for (int t = 0; t < EMBER_TYPE_COUNT; t++) weight_bytes += ember_model_type_bytes(m, t);
    uint64_t read_bytes = active_bytes(m, weight_bytes);
    double pp, tg;
    if ((rc = run(ctx, ember_model_n_vocab(m), n_prompt, n_decode, &pp, &tg))) {
        fprintf(stderr, "eval: %s\n", ember_context_last_error(ctx));
        return 1;
    }
    int nt = threads > 0 ? threads : 2;
    double bw = read_bandwidth(nt);
    printf("model: %s, %.1f M params, %.1f MiB of weights\n", path ? path : "synthetic",
           ember_model_n_params(m) / 1e6, weight_bytes / 1048576.0);
    printf("prompt  %4d tokens: %8.1f tokens/s\n", n_prompt, pp);
    if (read_bytes != weight_bytes)
        printf("MoE: a token reads %.1f MiB of the %.1f MiB (active experts only)\n",
               read_bytes / 1048576.0, weight_bytes / 1048576.0);
    printf("decode  %4d tokens: %8.2f tokens/s  (%.1f GB/s of weights read)\n", n_decode, tg,
           tg * read_bytes / 1e9);
    printf("memory read bandwidth (%d threads, same run): %.1f GB/s; decode reaches %.0f%%\n", nt,
           bw, bw > 0 ? 100.0 * tg * read_bytes / 1e9 / bw : 0.0);
    printf("KV cache: %llu bytes per token\n",
           (unsigned long long)ember_context_kv_bytes_per_token(ctx));
    ember_context_free(&ctx);
    ember_model_free(&m);
    free(synth);
    return 0;
}
