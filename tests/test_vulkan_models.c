/* Whole models on the Vulkan backend against the references (transformers
 * and llama.cpp logits, greedy ids) and against the CPU backend on what
 * the references do not cover (several sequences, forks, 8-bit KV rows,
 * quantized weights). Skipped, with a message, where no Vulkan device (or
 * no Vulkan in the build) exists; on CI that device is lavapipe. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "lib/backend.h"

struct ember_context;
em_backend *em_context_backend(struct ember_context *c);

static bool have_vulkan(void) {
    static int state = -1;
    if (state < 0) {
        state = ember_backend_available(EMBER_BACKEND_VULKAN) == EMBER_OK;
        if (!state)
            print_message("no Vulkan device (%s): Vulkan model tests skipped\n", ember_last_error());
    }
    return state;
}

static ember_model *load(const char *rel) {
    ember_model *m = NULL;
    int rc = ember_model_load_file(testdata_path(rel), NULL, &m);
    if (rc) print_error("%s\n", ember_last_error());
    assert_int_equal(rc, EMBER_OK);
    return m;
}

typedef struct ctx_opts {
    int backend, kv_type, n_seq;
    int n_dev, at; /* layer split: n_device_layers, device_layers_at */
} ctx_opts;

static int ctx_act = EMBER_TYPE_F32; /* the contexts' act_type */

static ember_context *new_ctx(const ember_model *m, ctx_opts o) {
    ember_context_params p;
    ember_context_default_params(&p);
    p.n_ctx = 128;
    p.n_batch = 64;
    p.n_threads = 2;
    p.kv_type = o.kv_type;
    p.n_seq_max = o.n_seq ? (uint32_t)o.n_seq : 1;
    p.backend = o.backend;
    p.act_type = ctx_act;
    p.n_device_layers = o.n_dev;
    p.device_layers_at = o.at;
    ember_context *c = NULL;
    int rc = ember_context_create(m, &p, &c);
    if (rc) print_error("%s\n", ember_last_error());
    assert_int_equal(rc, EMBER_OK);
    return c;
}

/* kjv-7m quantized to `type` (with quantize mix `mix`) in a temporary
 * file, and loaded; kjv_free releases both. */
typedef struct kjv_model {
    ember_model *m;
    char *path;
} kjv_model;

static kjv_model kjv_load(int type, int mix) {
    ember_quantize_params qp;
    ember_quantize_default_params(&qp);
    qp.type = (uint32_t)type;
    qp.mix = (uint32_t)mix;
    kjv_model k = { NULL, quantize_to_temp_file(testdata_path("models/kjv-7m/model-f16.gguf"), &qp) };
    assert_int_equal(ember_model_load_file(k.path, NULL, &k.m), EMBER_OK);
    return k;
}

static void kjv_free(kjv_model *k) {
    ember_model_free(&k->m);
    remove(k->path);
    free(k->path);
}

/* ids[from..to) of sequence s at their positions; every row's logits
 * copied to out + row * n_vocab. */
static void eval_rows(ember_context *c, int s, const int32_t *ids, int from, int to, int n_vocab,
                      float *out) {
    ember_batch_entry b[128] = { { 0 } };
    for (int i = from; i < to; i++) b[i - from] = (ember_batch_entry){ ids[i], i, s, 1 };
    int rc = ember_eval(c, b, (size_t)(to - from));
    if (rc) print_error("%s\n", ember_context_last_error(c));
    assert_int_equal(rc, EMBER_OK);
    for (int i = from; i < to; i++)
        memcpy(out + (size_t)i * n_vocab, ember_get_logits(c, (size_t)(i - from)),
               (size_t)n_vocab * 4);
}

/* The bound: fp32 accumulation on the GPU, 2e-3 of the reference. */
#define REF_TOL 2e-3

static void test_tiny_llama(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    enum { V = 32000 };
    model_ref r;
    load_model_ref("tiny-llama", V, &r);
    ember_model *m = load("models/tiny-llama/model-f16.gguf");
    ember_context *c = new_ctx(m, (ctx_opts){ .backend = EMBER_BACKEND_VULKAN,
                                              .kv_type = EMBER_TYPE_F32, .n_seq = 1 });
    float *got = malloc((size_t)r.n_seq * V * 4);
    eval_rows(c, 0, r.seq, 0, r.n_seq, V, got);
    double d = max_diff(got, r.logits, (size_t)r.n_seq * V);
    print_message("tiny-llama on vulkan, one batch: max |diff| = %.3g\n", d);
    assert_true(d < REF_TOL);

    ember_seq_clear(c, 0); /* prompt, then one token at a time */
    eval_rows(c, 0, r.seq, 0, r.n_prompt, V, got);
    for (int i = r.n_prompt; i < r.n_seq; i++) eval_rows(c, 0, r.seq, i, i + 1, V, got);
    d = max_diff(got, r.logits, (size_t)r.n_seq * V);
    print_message("tiny-llama on vulkan, incremental: max |diff| = %.3g\n", d);
    assert_true(d < REF_TOL);

    eval_rows(c, 0, r.seq, 5, r.n_seq, V, got); /* rollback over cached positions */
    d = max_diff(got, r.logits, (size_t)r.n_seq * V);
    assert_true(d < REF_TOL);

    /* the decode steps above had equal shapes: their command buffer was
     * recorded once and resubmitted */
    uint64_t recorded, reused;
    em_vulkan_record_stats(em_context_backend(c), &recorded, &reused);
    print_message("command buffers: %llu recorded, %llu reused\n", (unsigned long long)recorded,
                  (unsigned long long)reused);
    assert_true(reused >= (uint64_t)(r.n_seq - r.n_prompt - 2));

    /* a decode step's commands: each layer's attention output and FFN
     * down product fold into their residual adds and the gate and up
     * products into the SwiGLU (4 fewer dispatches per layer where the
     * device has subgroups); barriers only between dependent commands */
    eval_rows(c, 0, r.seq, r.n_seq - 1, r.n_seq, V, got); /* one token */
    uint64_t commands, barriers;
    em_vulkan_run_stats(em_context_backend(c), &commands, &barriers);
    ember_placement pl = { .struct_size = sizeof pl };
    assert_int_equal(ember_context_placement(c, &pl), EMBER_OK);
    int64_t n_layer = 0;
    assert_int_equal(ember_model_meta_int(m, "llama.block_count", &n_layer), EMBER_OK);
    print_message("last run: %u ops, %llu commands, %llu barriers\n", pl.n_ops,
                  (unsigned long long)commands, (unsigned long long)barriers);
    assert_true(barriers < commands);
    if (!getenv("EMBER_VULKAN_NO_SUBGROUPS"))
        assert_true(commands <= pl.n_ops - 4u * (uint32_t)n_layer + 1u); /* + the logits' copy */

    ember_seq_clear(c, 0);
    int32_t out[64];
    greedy_decode(c, r.prompt, r.n_prompt, r.n_greedy, V, out);
    assert_memory_equal(out, r.greedy, (size_t)r.n_greedy * 4);
    free(got);
    free(r.logits);
    ember_context_free(&c);
    ember_model_free(&m);
}

/* aidreams-260k against llama.cpp: logits with both cache types (llama.cpp
 * ran with an F16 cache, so F32 gets the CPU test's looser bound), greedy
 * ids equal. */
static void test_aidreams(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    size_t n;
    char *js = read_file(testdata_path("models/aidreams-260k/reference.json"), &n);
    ember_model *m = load("models/aidreams-260k/model-f32.gguf");
    for (int k = 0; k < 2; k++) {
        char text[512], rel[128];
        int32_t ids[64], want_greedy[64];
        assert_true(json_string(js, "prompt_text", k, text, sizeof text) > 0);
        int ng = json_ints(js, "greedy", k, want_greedy, 64);
        size_t np;
        assert_int_equal(ember_tokenize(m, text, strlen(text), ids, 64, &np, EMBER_TOKENIZE_ADD_BOS),
                         EMBER_OK);
        snprintf(rel, sizeof rel, "models/aidreams-260k/prompt%d-logits.f32", k + 1);
        size_t ln;
        float *want = read_file(testdata_path(rel), &ln), got[64 * 512];
        assert_int_equal(ln, np * 512 * 4);
        for (int kv = 0; kv < 2; kv++) {
            int type = kv ? EMBER_TYPE_F16 : EMBER_TYPE_F32;
            ember_context *c = new_ctx(m, (ctx_opts){ .backend = EMBER_BACKEND_VULKAN,
                                                      .kv_type = type, .n_seq = 1 });
            eval_rows(c, 0, ids, 0, (int)np, 512, got);
            double d = max_diff(got, want, np * 512);
            print_message("aidreams '%s' on vulkan, %s cache: max |diff| = %.3g\n", text,
                          kv ? "f16" : "f32", d);
            assert_true(d < (kv ? REF_TOL : 6e-3));
            ember_seq_clear(c, 0);
            int32_t out[64];
            greedy_decode(c, ids, (int)np, ng, 512, out);
            assert_memory_equal(out, want_greedy, (size_t)ng * 4);
            ember_context_free(&c);
        }
        free(want);
    }
    free(js);
    ember_model_free(&m);
}

/* kjv-7m's first 64 eval tokens against transformers. */
static void test_kjv(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    enum { V = 4096, N = 64 };
    size_t n;
    char *js = read_file(testdata_path("models/kjv-7m/reference.json"), &n);
    int32_t ids[N];
    assert_int_equal(json_ints(js, "chunk", 0, ids, N), N);
    float *want = read_file(testdata_path("models/kjv-7m/chunk-logits.f32"), &n);
    assert_int_equal(n, (size_t)N * V * 4);
    ember_model *m = load("models/kjv-7m/model-f16.gguf");
    ember_context *c = new_ctx(m, (ctx_opts){ .backend = EMBER_BACKEND_VULKAN,
                                              .kv_type = EMBER_TYPE_F32, .n_seq = 1 });
    float *got = malloc((size_t)N * V * 4);
    eval_rows(c, 0, ids, 0, N, V, got);
    double d = max_diff(got, want, (size_t)N * V);
    print_message("kjv-7m on vulkan: max |diff| = %.3g\n", d);
    assert_true(d < REF_TOL);
    free(got);
    free(want);
    free(js);
    ember_context_free(&c);
    ember_model_free(&m);
}

/* The same calls on both backends: 4 sequences prefilled in one batch,
 * sequence 0 forked into 1 and 3 (shared blocks, copied on write on the
 * device), then decode steps of all four together, one rolled back. */
static void script(ember_context *c, const int32_t *ids, int V, float *out, size_t *n_out) {
    enum { P = 16 }; /* 4 x 16 = n_batch */
    ember_batch_entry b[4 * P];
    int nb = 0;
    for (int s = 0; s < 4; s++)
        for (int i = 0; i < P; i++) b[nb++] = (ember_batch_entry){ ids[(i * (s + 1)) % 60], i, s, i == P - 1 };
    assert_int_equal(ember_eval(c, b, (size_t)nb), EMBER_OK);
    *n_out = 0;
    for (int s = 0; s < 4; s++)
        memcpy(out + (*n_out)++ * V, ember_get_logits(c, (size_t)(s * P + P - 1)), (size_t)V * 4);
    assert_int_equal(ember_seq_fork(c, 0, 1), EMBER_OK);
    assert_int_equal(ember_seq_fork(c, 0, 3), EMBER_OK);
    assert_int_equal(ember_seq_truncate(c, 3, 13), EMBER_OK); /* writes into a shared block */
    for (int step = 0; step < 6; step++) {
        ember_batch_entry d[4];
        for (int s = 0; s < 4; s++) {
            int32_t len = ember_seq_length(c, s);
            d[s] = (ember_batch_entry){ ids[(step * 7 + s * 3) % 64], len, s, 1 };
        }
        int rc = ember_eval(c, d, 4);
        if (rc) print_error("%s\n", ember_context_last_error(c));
        assert_int_equal(rc, EMBER_OK);
        for (int s = 0; s < 4; s++) memcpy(out + (*n_out)++ * V, ember_get_logits(c, (size_t)s), (size_t)V * 4);
    }
    /* sequence 2 alone past 64 positions, one token at a time: the same
     * commands each step, while the GPU's decode attention goes from one
     * workgroup per head to two (attn.comp's split, counted per run) */
    for (int32_t len = ember_seq_length(c, 2); len < 70; len++) {
        ember_batch_entry d = { ids[(len * 5) % 64], len, 2, 1 };
        assert_int_equal(ember_eval(c, &d, 1), EMBER_OK);
        if (len >= 60) memcpy(out + (*n_out)++ * V, ember_get_logits(c, 0), (size_t)V * 4);
    }
    ember_kv_info info = { .struct_size = sizeof info };
    assert_int_equal(ember_kv_info_get(c, &info), EMBER_OK);
    assert_true(info.blocks_copied >= 1); /* sequence 3 wrote into a shared block */
}

/* script() on the CPU and on `gpu` (a Vulkan context, maybe split). */
static void against_cpu(const char *rel, ctx_opts gpu, double tol) {
    enum { V = 4096 };
    size_t n;
    char *js = read_file(testdata_path("models/kjv-7m/reference.json"), &n);
    int32_t ids[64];
    assert_int_equal(json_ints(js, "chunk", 0, ids, 64), 64);
    ember_model *m = load(rel);
    float *got[2];
    size_t n_out[2];
    gpu.n_seq = 4;
    for (int k = 0; k < 2; k++) {
        ctx_opts cpu = { .backend = EMBER_BACKEND_CPU, .kv_type = gpu.kv_type, .n_seq = 4 };
        ember_context *c = new_ctx(m, k ? gpu : cpu);
        got[k] = malloc((size_t)40 * V * 4);
        script(c, ids, V, got[k], &n_out[k]);
        ember_context_free(&c);
    }
    assert_int_equal(n_out[0], n_out[1]);
    double d = max_diff(got[1], got[0], n_out[0] * V);
    print_message("%s, %s cache, 4 sequences with forks: vulkan (n_device_layers %d, %s) vs cpu "
                  "max |diff| = %.3g\n", rel, ember_type_name(gpu.kv_type), gpu.n_dev,
                  gpu.at ? "last" : "first", d);
    assert_true(d < tol);
    free(got[0]);
    free(got[1]);
    free(js);
    ember_model_free(&m);
}

static void test_sequences_vs_cpu(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    const int vk = EMBER_BACKEND_VULKAN;
    const char *kjv = "models/kjv-7m/model-f16.gguf";
    against_cpu(kjv, (ctx_opts){ .backend = vk, .kv_type = EMBER_TYPE_F32 }, 1e-3);
    /* 8-bit and F16 rows: both backends round the same values, but a value
     * that differs in its last bits can round to the neighbouring level,
     * hence the wider bounds */
    against_cpu(kjv, (ctx_opts){ .backend = vk, .kv_type = EMBER_TYPE_Q8_0 }, 5e-3);
    against_cpu(kjv, (ctx_opts){ .backend = vk, .kv_type = EMBER_TYPE_F16 }, 2e-3);
}

/* Quantized weights (written by ember's quantizer; every block type the
 * GPU reads, Q4_K as the _M mix, so with Q6_K too): the GPU's dot
 * products against the CPU's, with F32 activations on both: a prompt of
 * 48 tokens (tiles), then 16 decode steps (mul_mv). */
static void test_quantized_vs_cpu(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    static const struct { int type, mix; } types[] = {
        { EMBER_TYPE_Q8_0, 0 }, { EMBER_TYPE_Q4_0, 0 }, { EMBER_TYPE_Q4_1, 0 },
        { EMBER_TYPE_Q5_0, 0 }, { EMBER_TYPE_Q5_1, 0 }, { EMBER_TYPE_Q4_K, EMBER_QUANTIZE_MIX_M },
        { EMBER_TYPE_Q5_K, 0 },
    };
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        kjv_model km = kjv_load(types[k].type, types[k].mix);
        ember_model *m = km.m;
        size_t n;
        char *js = read_file(testdata_path("models/kjv-7m/reference.json"), &n);
        int32_t ids[64];
        assert_int_equal(json_ints(js, "chunk", 0, ids, 64), 64);
        float *got[2];
        for (int b = 0; b < 2; b++) {
            ctx_opts o = { .backend = b ? EMBER_BACKEND_VULKAN : EMBER_BACKEND_CPU,
                           .kv_type = EMBER_TYPE_F32, .n_seq = 1 };
            ember_context *c = new_ctx(m, o);
            got[b] = malloc((size_t)64 * 4096 * 4);
            eval_rows(c, 0, ids, 0, 48, 4096, got[b]);
            for (int i = 48; i < 64; i++) eval_rows(c, 0, ids, i, i + 1, 4096, got[b]);
            ember_context_free(&c);
        }
        double d = max_diff(got[1], got[0], (size_t)64 * 4096);
        print_message("kjv-7m %s%s weights: vulkan vs cpu max |diff| = %.3g\n",
                      ember_type_name(types[k].type), types[k].mix ? " (_M mix)" : "", d);
        assert_true(d < 1e-3);
        free(got[0]);
        free(got[1]);
        free(js);
        kjv_free(&km);
    }
}

static double rms_diff(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(s / (double)n);
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) best = v[i] > v[best] ? i : best;
    return best;
}

/* act_type Q8_0: decode steps' products take 8-bit activations on both
 * backends (mul_mvq.comp on the GPU), rounded by the same rule, so the
 * logits agree as closely as with F32 activations. Token by token from
 * the start (prompts keep F32 tiles on the GPU, see docs/api.md), with
 * and without the device's dot product instruction. */
static void test_act_q8_vs_cpu(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    const char *mask = getenv("EMBER_CPU_MASK");
    if (!(ember_cpu_features() & (mask && *mask ? (uint32_t)strtoul(mask, NULL, 0) : ~0u) &
          EMBER_CPU_AVX2)) {
        print_message("the CPU backend does not round activations here: skipped\n");
        skip();
    }
    static const struct { int type, mix; } types[] = {
        { EMBER_TYPE_Q8_0, 0 }, { EMBER_TYPE_Q4_0, 0 }, { EMBER_TYPE_Q4_K, EMBER_QUANTIZE_MIX_M },
    };
    enum { N = 24, V = 4096 };
    size_t n;
    char *js = read_file(testdata_path("models/kjv-7m/reference.json"), &n);
    int32_t ids[64];
    assert_int_equal(json_ints(js, "chunk", 0, ids, 64), 64);
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        kjv_model km = kjv_load(types[k].type, types[k].mix);
        ember_model *m = km.m;
        float *got[4];
        /* cpu with F32 and Q8_0 activations, vulkan Q8_0 with and without idot */
        for (int b = 0; b < 4; b++) {
            if (b == 3) setenv("EMBER_VULKAN_NO_IDOT", "1", 1);
            ctx_act = b ? EMBER_TYPE_Q8_0 : EMBER_TYPE_F32;
            ctx_opts o = { .backend = b >= 2 ? EMBER_BACKEND_VULKAN : EMBER_BACKEND_CPU,
                           .kv_type = EMBER_TYPE_F32, .n_seq = 1 };
            ember_context *c = new_ctx(m, o);
            ctx_act = EMBER_TYPE_F32;
            unsetenv("EMBER_VULKAN_NO_IDOT");
            got[b] = malloc((size_t)N * V * 4);
            for (int i = 0; i < N; i++) eval_rows(c, 0, ids, i, i + 1, V, got[b]);
            ember_context_free(&c);
        }
        size_t nv = (size_t)N * V;
        double rounding = rms_diff(got[1], got[0], nv), d = rms_diff(got[2], got[1], nv),
               de = rms_diff(got[3], got[1], nv);
        int same = 0, exact[2] = { 0, 0 };
        for (int i = 0; i < N; i++) {
            const float *cpu = got[1] + (size_t)i * V;
            same += argmax(got[2] + (size_t)i * V, V) == argmax(cpu, V);
            for (int e = 0; e < 2; e++) exact[e] += max_diff(got[2 + e] + (size_t)i * V, cpu, V) < 1e-4;
        }
        print_message("kjv-7m %s%s, act q8: vulkan vs cpu rms diff %.3g (emulated dot %.3g); the "
                      "rounding itself moves the cpu's logits by %.3g rms (max %.3g); tokens within "
                      "1e-4 of the cpu's %d/%d (emulated %d); greedy equal %d/%d\n",
                      ember_type_name(types[k].type), types[k].mix ? " (_M mix)" : "", d, de,
                      rounding, max_diff(got[1], got[0], nv), exact[0], N, exact[1], same, N);
        /* Steps round every activation as the CPU does, so their logits
         * agree to float order, until a value lands within a last bit of
         * a rounding boundary on one side: one 8-bit value flips (~1e-2 in
         * the logits) and the KV cache carries it on to later steps. So:
         * the first steps agree, and the whole stays closer to the CPU's
         * 8-bit run than the rounding's own effect (docs/api.md). */
        assert_true(max_diff(got[1], got[0], nv) > 1e-2); /* the rounding is felt */
        assert_true(exact[0] >= 1 && exact[1] >= 1);
        assert_true(d < rounding && de < rounding);
        assert_true(same >= N - 2);
        for (int b = 0; b < 4; b++) free(got[b]);
        kjv_free(&km);
    }
    free(js);
}

/* act_type Q8_0 prompts: x is rounded to its 8-bit grid in place on both
 * backends; the GPU's tiles then multiply in F32 (mul_mm.comp) or, on a
 * device with cooperative matrices, in F16 on them (mul_mmc.comp). Any
 * difference in float order flips a few 8-bit roundings (a value within a
 * last bit of a boundary), and each flip moves the logits as much as a
 * rounding does, so the GPU's run is not measured against the CPU's 8-bit
 * one but against exact (F32) activations: it may be no more than 1.5
 * times as far from them as the CPU's 8-bit run is (independent
 * roundings of equal size give ~1; a wrong product far more), with the
 * same greedy tokens as the CPU's 8-bit run but at most two. */
static void test_act_q8_prompt(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    const char *mask = getenv("EMBER_CPU_MASK");
    if (!(ember_cpu_features() & (mask && *mask ? (uint32_t)strtoul(mask, NULL, 0) : ~0u) &
          EMBER_CPU_AVX2)) {
        print_message("the CPU backend does not round activations here: skipped\n");
        skip();
    }
    static const int types[] = { EMBER_TYPE_Q8_0, EMBER_TYPE_Q4_K };
    enum { N = 64, V = 4096 };
    size_t n;
    char *js = read_file(testdata_path("models/kjv-7m/reference.json"), &n);
    int32_t ids[N];
    assert_int_equal(json_ints(js, "chunk", 0, ids, N), N);
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        kjv_model km = kjv_load(types[k], 0);
        ember_model *m = km.m;
        float *got[3]; /* cpu F32, cpu Q8_0, vulkan Q8_0 activations */
        for (int b = 0; b < 3; b++) {
            ctx_act = b ? EMBER_TYPE_Q8_0 : EMBER_TYPE_F32;
            ctx_opts o = { .backend = b == 2 ? EMBER_BACKEND_VULKAN : EMBER_BACKEND_CPU,
                           .kv_type = EMBER_TYPE_F32, .n_seq = 1 };
            ember_context *c = new_ctx(m, o);
            ctx_act = EMBER_TYPE_F32;
            got[b] = malloc((size_t)N * V * 4);
            eval_rows(c, 0, ids, 0, N, V, got[b]);
            ember_context_free(&c);
        }
        size_t nv = (size_t)N * V;
        double rounding = rms_diff(got[1], got[0], nv), d = rms_diff(got[2], got[1], nv),
               e = rms_diff(got[2], got[0], nv);
        int same = 0;
        for (int i = 0; i < N; i++)
            same += argmax(got[2] + (size_t)i * V, V) == argmax(got[1] + (size_t)i * V, V);
        print_message("kjv-7m %s, act q8 prompt of %d: from F32 activations, the cpu's 8-bit run "
                      "%.3g rms, vulkan's %.3g (%.3g from the cpu's); greedy equal %d/%d\n",
                      ember_type_name(types[k]), N, rounding, e, d, same, N);
        assert_true(rounding > 0);
        assert_true(e < 1.5 * rounding);
        assert_true(same >= N - 2);
        for (int b = 0; b < 3; b++) free(got[b]);
        kjv_free(&km);
    }
    free(js);
}

/* Context c against a model's references: the logits of the whole
 * sequence in one batch and one token at a time (prompt, then decode)
 * within REF_TOL, then greedy ids from the prompt equal. */
static void against_ref(ember_context *c, const model_ref *r, int V, const char *what) {
    float *got = malloc((size_t)r->n_seq * V * 4);
    eval_rows(c, 0, r->seq, 0, r->n_seq, V, got);
    double d = max_diff(got, r->logits, (size_t)r->n_seq * V);
    ember_seq_clear(c, 0);
    eval_rows(c, 0, r->seq, 0, r->n_prompt, V, got);
    for (int i = r->n_prompt; i < r->n_seq; i++) eval_rows(c, 0, r->seq, i, i + 1, V, got);
    double d1 = max_diff(got, r->logits, (size_t)r->n_seq * V);
    print_message("%s on vulkan: max |diff| = %.3g (batch), %.3g (incremental)\n", what, d, d1);
    assert_true(d < REF_TOL && d1 < REF_TOL);
    ember_seq_clear(c, 0);
    int32_t out[64];
    greedy_decode(c, r->prompt, r->n_prompt, r->n_greedy, V, out);
    assert_memory_equal(out, r->greedy, (size_t)r->n_greedy * 4);
    free(got);
}

/* Layer split: tiny-llama (2 layers) with one layer on the GPU, first or
 * last, the other on the CPU: transformers' logits in one batch and one
 * token at a time, greedy ids equal; the placement names each side. */
static void split_tiny_llama(int at) {
    enum { V = 32000 };
    model_ref r;
    load_model_ref("tiny-llama", V, &r);
    ember_model *m = load("models/tiny-llama/model-f16.gguf");
    ember_context *c = new_ctx(m, (ctx_opts){ .backend = EMBER_BACKEND_VULKAN,
                                              .kv_type = EMBER_TYPE_F32, .n_dev = 1, .at = at });
    char what[64];
    snprintf(what, sizeof what, "tiny-llama, layer %d", at == EMBER_LAYERS_FIRST ? 0 : 1);
    against_ref(c, &r, V, what);

    ember_placement pl = { .struct_size = sizeof pl }, whole = pl;
    assert_int_equal(ember_context_placement(c, &pl), EMBER_OK);
    ember_context *w = new_ctx(m, (ctx_opts){ .backend = EMBER_BACKEND_VULKAN,
                                              .kv_type = EMBER_TYPE_F32, .n_seq = 1 });
    assert_int_equal(ember_context_placement(w, &whole), EMBER_OK);
    print_message("placement: %u ops, %u on vulkan, %u on the cpu; device layers %d+%d\n",
                  pl.n_ops, pl.n_ops_backend, pl.n_ops_cpu, pl.first_device_layer,
                  pl.n_device_layers);
    assert_int_equal(pl.n_ops, whole.n_ops);
    assert_int_equal(pl.n_ops_backend + pl.n_ops_cpu, pl.n_ops);
    assert_true(pl.n_ops_backend > 0 && pl.n_ops_cpu > 0);
    assert_int_equal(pl.n_device_layers, 1);
    assert_int_equal(pl.first_device_layer, at == EMBER_LAYERS_FIRST ? 0 : 1);
    assert_int_equal(whole.n_ops_backend, whole.n_ops);
    assert_int_equal(whole.n_device_layers, 2);
    free(r.logits);
    ember_context_free(&w);
    ember_context_free(&c);
    ember_model_free(&m);
}

/* Every host allocation of a split context's creation failed in turn: an
 * error, no context and no block left behind. */
static void split_alloc_failures(void) {
    ember_model *m = load("models/tiny-llama/model-f16.gguf");
    long total = 0;
    for (long k = 0; k == 0 || k <= total; k++) {
        counting_alloc ca = { .fail_at = k };
        ember_context_params p;
        ember_context_default_params(&p);
        p.n_ctx = 32;
        p.n_batch = 8;
        p.n_threads = 2;
        p.backend = EMBER_BACKEND_VULKAN;
        p.n_device_layers = 1;
        p.allocator = counting_allocator(&ca);
        ember_context *c = NULL;
        int rc = ember_context_create(m, &p, &c);
        if (k == 0) {
            assert_int_equal(rc, EMBER_OK);
            total = ca.n_allocs;
            ember_context_free(&c);
        } else {
            assert_int_equal(rc, EMBER_ERR_NO_MEMORY);
            assert_null(c);
        }
        assert_int_equal(ca.live_blocks, 0);
    }
    print_message("split context creation: %ld allocation failure points\n", total);
    ember_model_free(&m);
}

/* kjv-7m (6 layers) split at several places, with forks, copy-on-write
 * (device layers' copies queued for the GPU, host layers' done at once),
 * rollback and decode past 64 positions: against the CPU alone. */
/* Weight matrices larger than a binding's range (lavapipe's is 128 MiB, a
 * 7B model's F16 embedding 250 MiB): stored and run in chunks of rows
 * (backends/vulkan/weights.c, ops.c run_chunks). EMBER_VULKAN_MAX_RANGE
 * lowers the range: at 512 KiB kjv-7m's embedding and output (2 MiB in
 * F16) take 2-5 chunks; at 300000 bytes its F16 FFN matrices are cut too,
 * so their products run unfused (a chunked weight folds into nothing). A
 * 16-token prompt (the tiles) and 8 decode steps must give the unchunked
 * run's logits bit for bit, with more dispatches (a row lookup and a
 * product per chunk). F16, Q8_0 and Q4_K (the _M mix, Q6_K output)
 * weights; act_type Q8_0 too (the 8-bit products). */
static void test_big_tensors(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    static const struct { int type, mix, act; } cases[] = {
        { EMBER_TYPE_F16, 0, EMBER_TYPE_F32 },
        { EMBER_TYPE_Q8_0, 0, EMBER_TYPE_F32 },
        { EMBER_TYPE_Q8_0, 0, EMBER_TYPE_Q8_0 },
        { EMBER_TYPE_Q4_K, EMBER_QUANTIZE_MIX_M, EMBER_TYPE_Q8_0 },
    };
    static const char *const ranges[3] = { NULL, "524288", "300000" };
    enum { P = 16, N = 24, V = 4096 };
    size_t n;
    char *js = read_file(testdata_path("models/kjv-7m/reference.json"), &n);
    int32_t ids[64];
    assert_int_equal(json_ints(js, "chunk", 0, ids, 64), 64);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        kjv_model km = kjv_load(cases[k].type, cases[k].mix);
        ember_model *m = km.m;
        float *got[3];
        uint32_t lookups[3];
        uint64_t commands[3], barriers;
        for (int b = 0; b < 3; b++) {
            if (ranges[b]) setenv("EMBER_VULKAN_MAX_RANGE", ranges[b], 1);
            ctx_act = cases[k].act;
            ctx_opts o = { .backend = EMBER_BACKEND_VULKAN, .kv_type = EMBER_TYPE_F32, .n_seq = 1 };
            ember_context *c = new_ctx(m, o);
            ctx_act = EMBER_TYPE_F32;
            unsetenv("EMBER_VULKAN_MAX_RANGE");
            got[b] = malloc((size_t)N * V * 4);
            eval_rows(c, 0, ids, 0, P, V, got[b]);
            for (int i = P; i < N; i++) eval_rows(c, 0, ids, i, i + 1, V, got[b]);
            lookups[b] = em_vulkan_dispatches(em_context_backend(c), "get_rows");
            em_vulkan_run_stats(em_context_backend(c), &commands[b], &barriers);
            ember_context_free(&c);
        }
        for (int b = 1; b < 3; b++) {
            print_message("kjv-7m %s%s, act %s, range %s bytes: a decode step's row lookups "
                          "%u -> %u, commands %llu -> %llu; logits equal: %s\n",
                          ember_type_name(cases[k].type), cases[k].mix ? " (_M mix)" : "",
                          ember_type_name(cases[k].act), ranges[b], lookups[0], lookups[b],
                          (unsigned long long)commands[0], (unsigned long long)commands[b],
                          memcmp(got[0], got[b], (size_t)N * V * 4) ? "no" : "yes");
            assert_true(lookups[b] > lookups[0] && commands[b] > commands[0]);
            assert_memory_equal(got[0], got[b], (size_t)N * V * 4);
        }
        for (int b = 0; b < 3; b++) free(got[b]);
        kjv_free(&km);
    }
    free(js);
}

static void test_layer_split(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    split_tiny_llama(EMBER_LAYERS_FIRST);
    split_tiny_llama(EMBER_LAYERS_LAST);
    split_alloc_failures();
    const int vk = EMBER_BACKEND_VULKAN;
    const char *kjv = "models/kjv-7m/model-f16.gguf";
    against_cpu(kjv, (ctx_opts){ .backend = vk, .n_dev = 2, .at = EMBER_LAYERS_FIRST }, 1e-3);
    against_cpu(kjv, (ctx_opts){ .backend = vk, .n_dev = 5, .at = EMBER_LAYERS_LAST }, 1e-3);
    against_cpu(kjv, (ctx_opts){ .backend = vk, .kv_type = EMBER_TYPE_Q8_0, .n_dev = 3,
                                 .at = EMBER_LAYERS_LAST }, 5e-3);
}

/* The routing statistics after one batch of ids[0..n) on a context of
 * `backend`, layers 0 to 2, n_expert each. */
static void expert_counts_of(const ember_model *m, int backend, const int32_t *ids, int n,
                             int n_expert, uint64_t *counts) {
    ember_context *c = new_ctx(m, (ctx_opts){ .backend = backend, .kv_type = EMBER_TYPE_F32 });
    float *tmp = malloc((size_t)n * 32000 * 4);
    eval_rows(c, 0, ids, 0, n, 32000, tmp);
    for (int l = 0; l < 3 && l < ember_model_n_layer(m); l++)
        assert_int_equal(ember_expert_counts(c, l, counts + l * n_expert, (size_t)n_expert),
                         EMBER_OK);
    free(tmp);
    ember_context_free(&c);
}

/* Mixture-of-experts models on the GPU (routing, each expert's products
 * for the tokens routed to it, shared experts; DeepSeek's MLA and group
 * limits): transformers' logits in one batch and one token at a time,
 * greedy ids equal, and the routing statistics equal the CPU's. */
static void moe_on_gpu(const char *name) {
    enum { V = 32000 };
    model_ref r;
    load_model_ref(name, V, &r);
    char rel[128];
    snprintf(rel, sizeof rel, "models/%s/model-f16.gguf", name);
    ember_model *m = load(rel);
    ember_context *c = new_ctx(m, (ctx_opts){ .backend = EMBER_BACKEND_VULKAN,
                                              .kv_type = EMBER_TYPE_F32 });
    ember_placement pl = { .struct_size = sizeof pl };
    assert_int_equal(ember_context_placement(c, &pl), EMBER_OK);
    assert_int_equal(pl.n_ops_backend, pl.n_ops);
    against_ref(c, &r, V, name);
    ember_context_free(&c);
    int n_expert = ember_model_n_expert(m);
    assert_true(n_expert > 0 && n_expert <= 64);
    uint64_t cpu[3 * 64] = { 0 }, gpu[3 * 64] = { 0 }, total = 0;
    expert_counts_of(m, EMBER_BACKEND_CPU, r.seq, r.n_seq, n_expert, cpu);
    expert_counts_of(m, EMBER_BACKEND_VULKAN, r.seq, r.n_seq, n_expert, gpu);
    for (int i = 0; i < 3 * n_expert; i++) total += gpu[i];
    assert_true(total > 0);
    assert_memory_equal(gpu, cpu, sizeof gpu);
    free(r.logits);
    ember_model_free(&m);
}

static void test_moe_models(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    moe_on_gpu("tiny-mixtral");
    moe_on_gpu("tiny-qwen2moe");
    moe_on_gpu("tiny-deepseek3");
}

/* Models whose weights the GPU does not read (BF16) are refused at
 * context creation, naming the op and type; nothing is left behind. */
static void test_unsupported_refused(void **state) {
    (void)state;
    if (!have_vulkan()) skip();
    kjv_model km = kjv_load(EMBER_TYPE_BF16, 0);
    ember_model *m = km.m;
    ember_context_params p;
    ember_context_default_params(&p);
    p.backend = EMBER_BACKEND_VULKAN;
    p.n_ctx = 64;
    ember_context *c = (ember_context *)1;
    assert_int_equal(ember_context_create(m, &p, &c), EMBER_ERR_UNSUPPORTED);
    assert_null(c);
    print_message("kjv-7m bf16 on vulkan: %s\n", ember_last_error());
    assert_non_null(strstr(ember_last_error(), "bf16"));
    kjv_free(&km);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_llama),       cmocka_unit_test(test_aidreams),
        cmocka_unit_test(test_kjv),              cmocka_unit_test(test_sequences_vs_cpu),
        cmocka_unit_test(test_quantized_vs_cpu), cmocka_unit_test(test_act_q8_vs_cpu),
        cmocka_unit_test(test_act_q8_prompt),    cmocka_unit_test(test_big_tensors),
        cmocka_unit_test(test_layer_split),      cmocka_unit_test(test_moe_models),
        cmocka_unit_test(test_unsupported_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
