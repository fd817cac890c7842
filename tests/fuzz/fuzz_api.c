/* A sequence of API calls driven by the input: context parameters, then
 * batches (any tokens, positions, sequences), logits reads, sequence
 * clears and samplers with any parameters. Errors are expected; crashes,
 * leaks and sanitizer reports are not. After every failed eval the cache
 * must be as it was. */
#include <math.h>

#include "fuzz.h"
#include "synth_model.h"

static ember_model *model;

static void init(void) {
    synth_cfg cfg = { 32, 1, 2, 1, 32, 32, 1, 2 };
    void *img;
    size_t size;
    if (synth_llama(&cfg, &img, &size) || ember_model_load_memory(img, size, NULL, &model))
        __builtin_trap();
}

static float any_float(fuzz_in *in) {
    static const float specials[] = { 0.0f, -1.0f, 1.0f, 0.5f, 2.0f, 1e-9f, 1e9f, NAN, INFINITY, -INFINITY };
    uint8_t b = fuzz_u8(in);
    return b < 10 ? specials[b] : (float)b / 64.0f;
}

static void do_eval(ember_context *c, fuzz_in *in, int32_t n_vocab, int n_seq) {
    ember_batch_entry b[16];
    size_t n = fuzz_u8(in) % 17;
    for (size_t i = 0; i < n; i++) {
        uint8_t t = fuzz_u8(in);
        b[i].token = t < 250 ? (int32_t)(t * 7 % n_vocab) : (int32_t)fuzz_u32(in);
        b[i].pos = (int32_t)(fuzz_u8(in) % 40) - 2;
        b[i].seq_id = (int32_t)(fuzz_u8(in) % (n_seq + 1));
        b[i].want_logits = fuzz_u8(in) & 1;
    }
    int32_t before[5];
    for (int s = 0; s < n_seq && s < 5; s++) before[s] = ember_seq_length(c, s);
    int rc = ember_eval(c, n ? b : NULL, n);
    if (rc != EMBER_OK)
        for (int s = 0; s < n_seq && s < 5; s++) FUZZ_CHECK(ember_seq_length(c, s) == before[s]);
}

static void do_sample(ember_context *c, fuzz_in *in, int32_t n_vocab) {
    const float *l = ember_get_logits(c, fuzz_u8(in) % 17);
    ember_sampler_params sp;
    ember_sampler_default_params(&sp);
    sp.temperature = any_float(in);
    sp.top_k = (int32_t)(fuzz_u8(in)) - 8;
    sp.top_p = any_float(in);
    sp.min_p = any_float(in);
    sp.repeat_penalty = any_float(in);
    sp.repeat_last_n = fuzz_u8(in) % 70;
    sp.seed = fuzz_u32(in);
    ember_sampler *s = NULL;
    if (ember_sampler_create(&sp, n_vocab, &s) != EMBER_OK) return;
    for (int i = 0; i < 3; i++) ember_sampler_accept(s, (int32_t)(fuzz_u8(in) * 3 % (n_vocab + 5)));
    int32_t tok = -1;
    if (l && ember_sampler_sample(s, l, &tok) == EMBER_OK) FUZZ_CHECK(tok >= 0 && tok < n_vocab);
    ember_sampler_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!model) init();
    fuzz_in in = { data, size };
    ember_context_params cp;
    ember_context_default_params(&cp);
    cp.n_ctx = 1 + fuzz_u8(&in) % 40;
    cp.n_batch = 1 + fuzz_u8(&in) % 16;
    cp.n_seq_max = 1 + fuzz_u8(&in) % 4;
    cp.n_threads = 1 + fuzz_u8(&in) % 2;
    cp.kv_type = fuzz_u8(&in) & 1 ? EMBER_TYPE_F16 : EMBER_TYPE_F32;
    ember_context *c = NULL;
    if (ember_context_create(model, &cp, &c) != EMBER_OK) return 0;
    int32_t n_vocab = ember_model_n_vocab(model);
    for (int step = 0; step < 12 && in.n; step++) {
        switch (fuzz_u8(&in) % 4) {
        case 0: do_eval(c, &in, n_vocab, (int)cp.n_seq_max); break;
        case 1: ember_seq_clear(c, (int32_t)(fuzz_u8(&in) % 6) - 1); break;
        case 2: do_sample(c, &in, n_vocab); break;
        default: ember_get_logits(c, fuzz_u8(&in)); break;
        }
    }
    ember_context_free(&c);
    return 0;
}
