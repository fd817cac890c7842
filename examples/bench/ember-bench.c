/* ember-bench: prompt-processing and decode speed of a model, next to the
 * machine's memory read bandwidth measured in the same run (decode reads
 * every weight once per token, so it is bound by that bandwidth).
 *
 *   ember-bench [-m MODEL.gguf] [-p 128,512] [-n 64] [-d 0] [-t 2] [-r 5]
 *               [-act f32|q8_0|bf16] [-o text|json]
 *
 * Each test (pp<N>: one batch of N prompt tokens; tg<N>: N tokens decoded
 * one by one) runs -r times on a cleared cache; it reports the median and
 * the spread; with -d N decoding starts after N cached positions (an
 * untimed prompt), as llama-bench's -d. Decode efficiency = tokens/s x bytes read per token / the
 * read bandwidth. On the CPU the bandwidth is measured at the start and
 * again before each decode repetition and after the last, and the
 * efficiency is taken against the best of those: shared machines'
 * bandwidth moves by up to 2x over seconds, and a single early figure
 * made decodes read as >100%. Prompts are bound by arithmetic instead,
 * so the same run
 * also measures the multiply-add peak of the instruction the prompt path
 * uses (8-bit dot products with -act q8_0, F32 FMAs otherwise) and
 * reports compute efficiency = tokens/s x multiply-adds per token / that
 * peak (multiply-adds per token: the matmul weights a token meets; the
 * attention's share is left out, small at these lengths). -act q8_0
 * quantizes the activations of block-quantized matmuls to 8 bits (the
 * context parameter act_type). With -o json: one object per line and test.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ember.h"
#include "bandwidth.h"
#include "peak.h"
#include "vk_bandwidth.h"
#include "synth_model.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
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

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* -d: decode tests start after this many cached positions (a prompt,
 * untimed, fed in batches of `depth_batch`) */
static int depth, depth_batch = 1;

/* One repetition: n tokens as one prompt batch, or decoded one by one
 * (after `depth` cached positions). */
static int run_once(ember_context *ctx, int32_t n_vocab, int n, int decode, double *tps) {
    int at = decode ? depth : 0; /* the first timed position */
    ember_batch_entry *b = malloc((size_t)(n + at) * sizeof *b);
    if (!b) return EMBER_ERR_NO_MEMORY;
    for (int i = 0; i < n + at; i++)
        b[i] = (ember_batch_entry){ (int32_t)((i * 7919 + 13) % n_vocab), i, 0,
                                    i >= at && (decode || i == n - 1) };
    int rc = ember_seq_clear(ctx, -1);
    for (int i = 0; i < at && !rc; i += depth_batch)
        rc = ember_eval(ctx, b + i, (size_t)(at - i < depth_batch ? at - i : depth_batch));
    b += at;
    double t0 = now_s();
    if (decode)
        for (int i = 0; i < n && !rc; i++) rc = ember_eval(ctx, &b[i], 1);
    else if (!rc)
        rc = ember_eval(ctx, b, (size_t)n);
    *tps = n / (now_s() - t0);
    free(b - at);
    return rc;
}

typedef struct result {
    double med, min, max;
    /* CPU decode only: the read bandwidth measured right before each
     * repetition and after the last (median, min, max) */
    double bw_med, bw_min, bw_max;
} result;

static void summarize(double *v, int n, double *med, double *min, double *max) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    *min = v[0];
    *max = v[n - 1];
    *med = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* With a probe, the bandwidth is measured again right before each
 * repetition: a shared machine's bandwidth moves between seconds, and one
 * figure from the start of the run can make a decode look faster than
 * memory. */
static int run_test(ember_context *ctx, int32_t n_vocab, int n, int decode, int reps,
                    bw_probe *probe, result *r) {
    double v[64], bw[65];
    if (reps > 64) reps = 64;
    for (int i = 0; i < reps; i++) {
        bw[i] = probe ? bw_probe_read(probe, 3) : 0;
        int rc = run_once(ctx, n_vocab, n, decode, &v[i]);
        if (rc) return rc;
    }
    bw[reps] = probe ? bw_probe_read(probe, 3) : 0; /* and after the last */
    summarize(bw, reps + 1, &r->bw_med, &r->bw_min, &r->bw_max);
    summarize(v, reps, &r->med, &r->min, &r->max);
    return EMBER_OK;
}

/* The weight type holding the most bytes ("q8_0" for a Q8_0 file). */
static const char *main_type(const ember_model *m) {
    int best = 0;
    for (int t = 1; t < EMBER_TYPE_COUNT; t++)
        if (ember_model_type_bytes(m, t) > ember_model_type_bytes(m, best)) best = t;
    return ember_type_name(best);
}

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    while (*s && n < max) {
        char *e;
        long v = strtol(s, &e, 10);
        if (e == s || v < 1 || v > 65536) return 0;
        out[n++] = (int)v;
        s = *e == ',' ? e + 1 : e;
        if (*e && *e != ',') return 0;
    }
    return n;
}

static int usage(void) {
    fprintf(stderr, "usage: ember-bench [-m MODEL] [-p 128,512] [-n 64] [-d DEPTH] [-t THREADS] [-r 5] "
                    "[-act f32|q8_0|bf16] [-b cpu|vulkan] [-dev N] [-dl N] [-dlat first|last] "
                    "[-o text|json]\n"
                    "  -b vulkan: runs on Vulkan device N (default 0); the bandwidth is then the "
                    "device's\n  memory copy bandwidth (bytes read + written per second), "
                    "measured in the same run\n"
                    "  -dl N: only N layers on the device (the first, or with -dlat last the "
                    "last), the rest on the CPU\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    int prompts[16] = { 128 }, n_prompts = 1, n_decode = 64, threads = 0, reps = 5, json = 0;
    int act = EMBER_TYPE_F32, backend = EMBER_BACKEND_CPU, device = 0;
    int dev_layers = 0, dev_at = EMBER_LAYERS_FIRST;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-m")) path = argv[i + 1];
        else if (!strcmp(argv[i], "-p")) { if (!(n_prompts = parse_list(argv[i + 1], prompts, 16))) return usage(); }
        else if (!strcmp(argv[i], "-n")) n_decode = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-t")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-r")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-o")) json = !strcmp(argv[i + 1], "json");
        else if (!strcmp(argv[i], "-act") && !strcmp(argv[i + 1], "q8_0")) act = EMBER_TYPE_Q8_0;
        else if (!strcmp(argv[i], "-act") && !strcmp(argv[i + 1], "bf16")) act = EMBER_TYPE_BF16;
        else if (!strcmp(argv[i], "-act") && !strcmp(argv[i + 1], "f32")) act = EMBER_TYPE_F32;
        else if (!strcmp(argv[i], "-b") && !strcmp(argv[i + 1], "cpu")) backend = EMBER_BACKEND_CPU;
        else if (!strcmp(argv[i], "-b") && !strcmp(argv[i + 1], "vulkan")) backend = EMBER_BACKEND_VULKAN;
        else if (!strcmp(argv[i], "-dev")) device = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-dl")) dev_layers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-dlat") && !strcmp(argv[i + 1], "first")) dev_at = EMBER_LAYERS_FIRST;
        else if (!strcmp(argv[i], "-dlat") && !strcmp(argv[i + 1], "last")) dev_at = EMBER_LAYERS_LAST;
        else if (!strcmp(argv[i], "-d")) depth = atoi(argv[i + 1]);
        else return usage();
    }
    if (n_decode < 0 || depth < 0 || depth > 65536 || reps < 1 || reps > 64 || (argc % 2) == 0)
        return usage();
    int max_p = 1;
    for (int i = 0; i < n_prompts; i++) max_p = prompts[i] > max_p ? prompts[i] : max_p;
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
    cp.n_ctx = (uint32_t)(max_p > n_decode + depth ? max_p : n_decode + depth);
    cp.n_batch = (uint32_t)max_p;
    depth_batch = max_p;
    cp.n_threads = (uint32_t)threads;
    cp.act_type = act;
    cp.backend = backend;
    cp.device = device;
    cp.n_device_layers = dev_layers;
    cp.device_layers_at = dev_at;
    ember_context *ctx;
    bw_probe *probe = NULL;
    if ((rc = ember_context_create(m, &cp, &ctx))) { fprintf(stderr, "context: %s\n", ember_last_error()); return 1; }
    uint64_t weight_bytes = 0;
    for (int t = 0; t < EMBER_TYPE_COUNT; t++) weight_bytes += ember_model_type_bytes(m, t);
    uint64_t read_bytes = active_bytes(m, weight_bytes);
    int nt = threads > 0 ? threads : 2;
    const char *name = path ? (strrchr(path, '/') ? strrchr(path, '/') + 1 : path) : "synthetic";
    /* warm-up: the first touch of mapped weights is not compute */
    double warm;
    if ((rc = run_once(ctx, ember_model_n_vocab(m), 1, 1, &warm))) goto fail;
    int gpu = backend != EMBER_BACKEND_CPU;
    ember_placement pl = { .struct_size = sizeof pl };
    if ((rc = ember_context_placement(ctx, &pl))) goto fail;
    if (!gpu && !(probe = bw_probe_new(nt))) {
        fprintf(stderr, "bandwidth probe: out of memory\n");
        rc = EMBER_ERR_NO_MEMORY;
        goto fail;
    }
    double bw = gpu ? vk_copy_bandwidth(device, (size_t)1 << 30) : bw_probe_read(probe, 5);
    /* the 8-bit peak applies where the prompt path runs 8-bit products;
     * no GPU peak is measured yet */
    const char *ty = main_type(m), *peak_what = "none";
    int kind = act == EMBER_TYPE_Q8_0 && (!strcmp(ty, "q8_0") || !strcmp(ty, "q4_0")) ? PEAK_INT8
             : act == EMBER_TYPE_BF16 && !strcmp(ty, "bf16")                      ? PEAK_BF16
                                                                                   : PEAK_F32;
    double peak = gpu ? 0 : peak_gmacs(nt, kind, &peak_what);
    /* multiply-adds per token: every weight but the embedding table's
     * (a lookup), of the active experts only */
    double macs = ((double)ember_model_n_params(m) -
                   (double)ember_model_n_vocab(m) * (double)ember_model_n_embd(m)) *
                  (double)read_bytes / (double)weight_bytes;
    if (!json) {
        printf("model: %s (%s), %.1f M params, %.1f MiB of weights\n", name, main_type(m),
               ember_model_n_params(m) / 1e6, weight_bytes / 1048576.0);
        if (read_bytes != weight_bytes)
            printf("MoE: a token reads %.1f MiB of the %.1f MiB (active experts only)\n",
                   read_bytes / 1048576.0, weight_bytes / 1048576.0);
        printf("ops: %u per evaluation; %u on %s (%s), %u on the CPU backend\n", pl.n_ops,
               pl.n_ops_backend, gpu ? "vulkan" : "cpu", pl.device, pl.n_ops_cpu);
        if (gpu && pl.n_device_layers < ember_model_n_layer(m))
            printf("layers on the device: %d from layer %d, the others on the CPU\n",
                   pl.n_device_layers, pl.first_device_layer);
        else if (gpu)
            printf("layers on the device: all %d\n", pl.n_device_layers);
        if (gpu) {
            printf("device memory copy bandwidth (read + write, same run): %.1f GB/s\n", bw);
        } else {
            printf("memory read bandwidth (%d threads, same run): %.1f GB/s\n", nt, bw);
            printf("multiply-add peak (%d threads, %s, same run): %.1f G/s; %.2f G per token\n",
                   nt, peak_what, peak, macs / 1e9);
        }
    }
    for (int k = 0; k <= n_prompts; k++) {
        int decode = k == n_prompts, n = decode ? n_decode : prompts[k];
        if (n < 1) continue;
        result r;
        if ((rc = run_test(ctx, ember_model_n_vocab(m), n, decode, reps,
                           decode ? probe : NULL, &r)))
            goto fail;
        /* against the best bandwidth seen in the run, so that a dip in the
         * machine's bandwidth never makes the decode look better */
        double test_bw = decode && probe && r.bw_max > bw ? r.bw_max : bw;
        double eff = decode && test_bw > 0 ? r.med * (double)read_bytes / 1e9 / test_bw : 0;
        double ceff = !decode && peak > 0 ? r.med * macs / 1e9 / peak : 0;
        char test[32];
        if (decode && depth) snprintf(test, sizeof test, "tg%d@d%d", n, depth);
        else snprintf(test, sizeof test, "%s%d", decode ? "tg" : "pp", n);
        if (json) {
            printf("{\"model\": \"%s\", \"type\": \"%s\", \"test\": \"%s\", \"threads\": %d, "
                   "\"tokens_per_s\": %.3f, \"tokens_per_s_min\": %.3f, \"tokens_per_s_max\": %.3f, "
                   "\"bandwidth_gbs\": %.2f, \"act\": \"%s\", \"peak_gmacs\": %.1f, "
                   "\"peak_kind\": \"%s\", \"backend\": \"%s\", \"device\": \"%s\", "
                   "\"ops\": %u, \"ops_on_backend\": %u, \"ops_on_cpu\": %u, "
                   "\"device_layers\": %d, \"compute_efficiency\": ", name, ty, test, nt,
                   r.med, r.min, r.max, test_bw, act == EMBER_TYPE_Q8_0 ? "q8_0" : act == EMBER_TYPE_BF16 ? "bf16" : "f32", peak, peak_what,
                   gpu ? "vulkan" : "cpu", pl.device, pl.n_ops, pl.n_ops_backend, pl.n_ops_cpu,
                   gpu ? pl.n_device_layers : 0);
            if (decode || peak <= 0) printf("null, ");
            else printf("%.3f, ", ceff);
            if (decode) printf("\"efficiency\": %.3f}\n", eff);
            else printf("\"efficiency\": null}\n");
        } else {
            printf("%-6s %8.2f tokens/s (min %.2f, max %.2f over %d runs)", test, r.med, r.min,
                   r.max, reps);
            if (decode && probe)
                printf("  %.1f GB/s of weights = %.0f%% of the bandwidth\n"
                       "       (the best seen in this run, %.1f GB/s; measured around each "
                       "repetition: median %.1f, %.1f-%.1f)",
                       r.med * read_bytes / 1e9, 100 * eff, test_bw, r.bw_med, r.bw_min,
                       r.bw_max);
            else if (decode)
                printf("  %.1f GB/s of weights = %.0f%% of the bandwidth", r.med * read_bytes / 1e9,
                       100 * eff);
            else if (peak > 0)
                printf("  %.0f G multiply-adds/s = %.0f%% of the peak", r.med * macs / 1e9,
                       100 * ceff);
            printf("\n");
        }
    }
    if (!json)
        printf("KV cache: %llu bytes per token\n",
               (unsigned long long)ember_context_kv_bytes_per_token(ctx));
    bw_probe_free(probe);
    ember_context_free(&ctx);
    ember_model_free(&m);
    free(synth);
    return 0;
fail:
    fprintf(stderr, "eval: %s\n", ember_context_last_error(ctx));
    bw_probe_free(probe);
    ember_context_free(&ctx);
    ember_model_free(&m);
    free(synth);
    return 1;
}
