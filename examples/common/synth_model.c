#include "synth_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"
#include "gguf_writer.h"

synth_cfg synth_default(void) {
    synth_cfg c = { 512, 8, 8, 4, 1408, 2048, 1, 42 };
    return c;
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static float rng_uniform(uint64_t *s) { return (float)(rng_next(s) >> 40) / 16777216.0f * 2 - 1; }

static uint16_t to_f16(float f) {
    /* truncating conversion is fine for random weights */
    union { float f; uint32_t u; } v = { f };
    uint32_t sign = (v.u >> 16) & 0x8000, e = (v.u >> 23) & 0xff, m = v.u & 0x7fffff;
    if (e < 113) return (uint16_t)sign;
    return (uint16_t)(sign | ((e - 112) << 10) | (m >> 13));
}

typedef struct tdesc { char name[64]; uint32_t nd; uint64_t ne[2]; uint32_t type; float scale; } tdesc;

/* Vocabulary: <unk> <s> </s>, 256 byte tokens, then printable ASCII and
 * "▁"-prefixed letters as normal pieces. */
static int make_vocab(char ***pieces, float **scores, int32_t **types) {
    int n = 3 + 256 + 95 + 26 + 1;
    char **p = calloc((size_t)n, sizeof *p);
    *scores = calloc((size_t)n, sizeof **scores);
    *types = calloc((size_t)n, sizeof **types);
    if (!p || !*scores || !*types) return -1;
    int k = 0;
    const char *sp[3] = { "<unk>", "<s>", "</s>" };
    for (int i = 0; i < 3; i++, k++) { p[k] = strdup(sp[i]); (*types)[k] = i ? 3 : 2; }
    for (int b = 0; b < 256; k++, b++) {
        p[k] = malloc(8);
        snprintf(p[k], 8, "<0x%02X>", b);
        (*types)[k] = 6;
    }
    for (int c = 32; c < 127; c++, k++) {
        p[k] = malloc(4);
        if (c == ' ') strcpy(p[k], "\xe2\x96\x81");
        else { p[k][0] = (char)c; p[k][1] = 0; }
        (*types)[k] = 1;
        (*scores)[k] = -1.0f;
    }
    for (int c = 'a'; c <= 'z'; c++, k++) {
        p[k] = malloc(8);
        snprintf(p[k], 8, "\xe2\x96\x81%c", c);
        (*types)[k] = 1;
        (*scores)[k] = -0.5f;
    }
    p[k] = strdup("\xe2\x96\x81the");
    (*types)[k++] = 1;
    *pieces = p;
    return n;
}

int synth_llama(const synth_cfg *cfg, void **out, size_t *size) {
    char **pieces;
    float *scores;
    int32_t *types;
    int n_vocab = make_vocab(&pieces, &scores, &types);
    if (n_vocab < 0) return EMBER_ERR_NO_MEMORY;
    int E = cfg->n_embd, hd = E / cfg->n_head, kvd = hd * cfg->n_head_kv;
    int wt = cfg->weight_type == 1 ? 1 : 0;
    size_t max_t = 3 + 9 * (size_t)cfg->n_layer;
    tdesc *t = calloc(max_t, sizeof *t);
    size_t nt = 0;
#define T2(nm, a, b, sc) do { snprintf(t[nt].name, 64, "%s", nm); t[nt].nd = 2; t[nt].ne[0] = a; \
        t[nt].ne[1] = b; t[nt].type = (uint32_t)wt; t[nt].scale = sc; nt++; } while (0)
#define T1(nm, a) do { snprintf(t[nt].name, 64, "%s", nm); t[nt].nd = 1; t[nt].ne[0] = a; \
        t[nt].ne[1] = 1; t[nt].type = 0; t[nt].scale = 0; nt++; } while (0)
    T2("token_embd.weight", E, n_vocab, 1.0f);
    T1("output_norm.weight", E);
    float ws = 1.7f / (float)E, fs = 1.7f / (float)cfg->n_ff;
    for (int l = 0; l < cfg->n_layer; l++) {
        char nm[64];
#define NM(s) (snprintf(nm, sizeof nm, "blk.%d.%s", l, s), nm)
        T1(NM("attn_norm.weight"), E);
        T2(NM("attn_q.weight"), E, E, ws);
        T2(NM("attn_k.weight"), E, kvd, ws);
        T2(NM("attn_v.weight"), E, kvd, ws);
        T2(NM("attn_output.weight"), E, E, ws);
        T1(NM("ffn_norm.weight"), E);
        T2(NM("ffn_gate.weight"), E, cfg->n_ff, ws);
        T2(NM("ffn_up.weight"), E, cfg->n_ff, ws);
        T2(NM("ffn_down.weight"), cfg->n_ff, E, fs);
#undef NM
    }
    gw w = { 0 };
    gw_header(&w, 3, nt, 15);
    gw_kv_str(&w, "general.architecture", "llama");
    gw_kv_str(&w, "general.name", "ember synthetic (random weights)");
    gw_kv_u32(&w, "llama.context_length", (uint32_t)cfg->n_ctx);
    gw_kv_u32(&w, "llama.embedding_length", (uint32_t)E);
    gw_kv_u32(&w, "llama.block_count", (uint32_t)cfg->n_layer);
    gw_kv_u32(&w, "llama.feed_forward_length", (uint32_t)cfg->n_ff);
    gw_kv_u32(&w, "llama.attention.head_count", (uint32_t)cfg->n_head);
    gw_kv_u32(&w, "llama.attention.head_count_kv", (uint32_t)cfg->n_head_kv);
    gw_kv_f32(&w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gw_kv_str(&w, "tokenizer.ggml.model", "llama");
    gw_kv_arr_str(&w, "tokenizer.ggml.tokens", (const char *const *)pieces, (size_t)n_vocab);
    gw_kv_arr_f32(&w, "tokenizer.ggml.scores", scores, (size_t)n_vocab);
    gw_kv_arr_i32(&w, "tokenizer.ggml.token_type", types, (size_t)n_vocab);
    gw_kv_u32(&w, "tokenizer.ggml.bos_token_id", 1);
    gw_kv_u32(&w, "tokenizer.ggml.eos_token_id", 2);
    uint64_t off = 0;
    for (size_t i = 0; i < nt; i++) {
        gw_tensor_info(&w, t[i].name, t[i].nd, t[i].ne, t[i].type, off);
        uint64_t bytes = t[i].ne[0] * t[i].ne[1] * (t[i].type ? 2 : 4);
        off += (bytes + 31) / 32 * 32;
    }
    gw_pad(&w, 32);
    uint64_t rng = cfg->seed * 2654435761u + 1;
    for (size_t i = 0; i < nt; i++) {
        uint64_t n = t[i].ne[0] * t[i].ne[1];
        for (uint64_t j = 0; j < n; j++) {
            float v = t[i].nd == 1 ? 1.0f : rng_uniform(&rng) * t[i].scale * 1.7f;
            if (t[i].type == 1) {
                uint16_t h = to_f16(v);
                gw_bytes(&w, &h, 2);
            } else {
                gw_f32(&w, v);
            }
        }
        gw_pad(&w, 32);
    }
    for (int i = 0; i < n_vocab; i++) free(pieces[i]);
    free(pieces);
    free(scores);
    free(types);
    free(t);
    if (w.oom) { gw_free(&w); return EMBER_ERR_NO_MEMORY; }
    *out = gw_aligned_copy(&w);
    *size = w.len;
    gw_free(&w);
    return *out ? EMBER_OK : EMBER_ERR_NO_MEMORY;
}
