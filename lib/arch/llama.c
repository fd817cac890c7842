/* The llama architecture (Llama 1/2/3, TinyLlama, Mistral without sliding
 * window, llama2.c models): pre-norm decoder blocks with RMSNorm, rotary
 * attention with grouped KV heads, and a SwiGLU feed-forward network. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../build.h"
#include "../model.h"

static em_tensor *attention(const ember_model *m, em_graph *g, const em_build_inputs *in,
                            const em_llama_layer *L, int il, em_tensor *x) {
    const em_hparams *hp = &m->hp;
    int64_t T = in->n_tokens, D = hp->head_dim;
    em_tensor *q = em_matmul(g, em_weight(g, L->wq), x);
    em_tensor *k = em_matmul(g, em_weight(g, L->wk), x);
    em_tensor *v = em_matmul(g, em_weight(g, L->wv), x);
    if (L->bq) q = em_add(g, q, em_weight(g, L->bq));
    if (L->bk) k = em_add(g, k, em_weight(g, L->bk));
    if (L->bv) v = em_add(g, v, em_weight(g, L->bv));

    em_tensor *ff = m->rope_freqs ? em_weight(g, m->rope_freqs) : NULL;
    q = em_rope(g, em_reshape(g, q, 3, (int64_t[]){ D, hp->n_head, T }), in->pos, ff,
                hp->n_rot, hp->rope_mode, hp->rope_base, hp->rope_freq_scale);
    k = em_rope(g, em_reshape(g, k, 3, (int64_t[]){ D, hp->n_head_kv, T }), in->pos, ff,
                hp->n_rot, hp->rope_mode, hp->rope_base, hp->rope_freq_scale);

    em_tensor *stored = em_kv_store(g, em_reshape(g, k, 2, (int64_t[]){ D * hp->n_head_kv, T }),
                                    v, in->slots, il);
    em_tensor *att = em_attn(g, q, in->pos, in->seq, stored, il, hp->head_dim_v,
                             1.0f / sqrtf((float)D));
    return em_matmul(g, em_weight(g, L->wo), att);
}

static em_tensor *feed_forward(em_graph *g, const em_llama_layer *L, em_tensor *x) {
    em_tensor *gate = em_matmul(g, em_weight(g, L->ffn_gate), x);
    em_tensor *up = em_matmul(g, em_weight(g, L->ffn_up), x);
    return em_matmul(g, em_weight(g, L->ffn_down), em_swiglu(g, gate, up));
}

static em_tensor *llama_build(const ember_model *m, em_graph *g, const em_build_inputs *in) {
    const em_hparams *hp = &m->hp;
    em_tensor *x = em_get_rows(g, em_weight(g, m->tok_embd), in->tokens);
    for (int il = 0; il < hp->n_layer; il++) {
        const em_llama_layer *L = &m->layers[il];
        em_tensor *h = em_rms_norm(g, x, em_weight(g, L->attn_norm), hp->rms_eps);
        x = em_add(g, x, attention(m, g, in, L, il, h));
        h = em_rms_norm(g, x, em_weight(g, L->ffn_norm), hp->rms_eps);
        x = em_add(g, x, feed_forward(g, L, h));
    }
    x = em_get_rows(g, x, in->out_rows); /* only the rows whose logits are wanted */
    x = em_rms_norm(g, x, em_weight(g, m->output_norm), hp->rms_eps);
    em_tensor *logits = em_matmul(g, em_weight(g, m->output ? m->output : m->tok_embd), x);
    logits->keep = 1;
    return logits;
}

/* ---- loading ---- */

static int read_rope_scaling(ember_model *m) {
    em_hparams *hp = &m->hp;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch_name);
    const em_gguf_kv *kv = em_gguf_find(&m->gguf, key);
    float factor = 0;
    int rc = em_model_get_f32(m, "%s.rope.scaling.factor", false, &factor);
    if (rc) return rc;
    if (kv) {
        if (kv->type != GGUF_STRING)
            return em_error(NULL, EMBER_ERR_FORMAT, "model: %s is not a string", key);
        bool none = kv->n == 4 && memcmp(kv->data, "none", 4) == 0;
        bool linear = kv->n == 6 && memcmp(kv->data, "linear", 6) == 0;
        if (!none && !linear)
            return em_error(NULL, EMBER_ERR_UNSUPPORTED, "model: rope scaling '%.*s' is not "
                            "supported yet", (int)(kv->n < 32 ? kv->n : 32), kv->data);
        if (none) factor = 0;
    }
    float linear_old = 0;
    if ((rc = em_model_get_f32(m, "%s.rope.scale_linear", false, &linear_old))) return rc;
    if (!factor && linear_old) factor = linear_old;
    if (factor < 0 || (factor > 0 && !(factor < 1e6f)))
        return em_error(NULL, EMBER_ERR_FORMAT, "model: rope scaling factor %g is invalid",
                        (double)factor);
    hp->rope_freq_scale = factor > 0 ? 1.0f / factor : 1.0f;
    return EMBER_OK;
}

static int read_hparams(ember_model *m) {
    em_hparams *hp = &m->hp;
    int rc;
    hp->n_head_kv = -1;
    hp->head_dim = hp->head_dim_v = hp->n_rot = -1;
    hp->rms_eps = 1e-5f;
    hp->rope_base = 10000.0f;
    if ((rc = em_model_get_i32(m, "%s.context_length", true, &hp->n_ctx_train)) ||
        (rc = em_model_get_i32(m, "%s.embedding_length", true, &hp->n_embd)) ||
        (rc = em_model_get_i32(m, "%s.block_count", true, &hp->n_layer)) ||
        (rc = em_model_get_i32(m, "%s.feed_forward_length", true, &hp->n_ff)) ||
        (rc = em_model_get_i32(m, "%s.attention.head_count", true, &hp->n_head)) ||
        (rc = em_model_get_i32(m, "%s.attention.head_count_kv", false, &hp->n_head_kv)) ||
        (rc = em_model_get_i32(m, "%s.attention.key_length", false, &hp->head_dim)) ||
        (rc = em_model_get_i32(m, "%s.attention.value_length", false, &hp->head_dim_v)) ||
        (rc = em_model_get_i32(m, "%s.rope.dimension_count", false, &hp->n_rot)) ||
        (rc = em_model_get_f32(m, "%s.attention.layer_norm_rms_epsilon", false, &hp->rms_eps)) ||
        (rc = em_model_get_f32(m, "%s.rope.freq_base", false, &hp->rope_base)) ||
        (rc = read_rope_scaling(m)))
        return rc;
    if (hp->n_head <= 0 || hp->n_head > 4096)
        return em_error(NULL, EMBER_ERR_FORMAT, "model: %s.attention.head_count = %d is not in "
                        "1..4096", m->arch_name, hp->n_head);
    if (hp->n_head_kv == -1) hp->n_head_kv = hp->n_head;
    if (hp->head_dim == -1) hp->head_dim = hp->n_embd / hp->n_head;
    if (hp->head_dim_v == -1) hp->head_dim_v = hp->head_dim;
    if (hp->n_rot == -1) hp->n_rot = hp->head_dim;
    hp->rope_mode = 0; /* llama files: adjacent pairs (the converter permuted Q/K) */
    return EMBER_OK;
}

/* Expert counts: contradictions are format errors; experts themselves
 * (Mixtral-style llama files) come with the MoE change. */
static int check_experts(const ember_model *m) {
    int32_t n_expert = 0, n_used = 0;
    int rc;
    if ((rc = em_model_get_i32(m, "%s.expert_count", false, &n_expert)) ||
        (rc = em_model_get_i32(m, "%s.expert_used_count", false, &n_used)))
        return rc;
    if (n_expert < 0 || n_used < 0 || n_used > n_expert)
        return em_error(NULL, EMBER_ERR_FORMAT, "model: %s.expert_used_count = %d exceeds "
                        "%s.expert_count = %d", m->arch_name, n_used, m->arch_name, n_expert);
    if (n_expert > 0)
        return em_error(NULL, EMBER_ERR_UNSUPPORTED, "model: %s.expert_count = %d: mixture-of-"
                        "experts models are not supported yet", m->arch_name, n_expert);
    return EMBER_OK;
}

static int check_hparams(const ember_model *m) {
    const em_hparams *hp = &m->hp;
    const char *a = m->arch_name;
#define RANGE(v, lo, hi, key)                                                                 \
    if ((v) < (lo) || (v) > (hi))                                                             \
        return em_error(NULL, EMBER_ERR_FORMAT, "model: %s.%s = %d is not in %d..%d", a, key, \
                        (int)(v), (int)(lo), (int)(hi));
    RANGE(hp->n_ctx_train, 1, 1 << 24, "context_length");
    RANGE(hp->n_embd, 1, 1 << 17, "embedding_length");
    RANGE(hp->n_layer, 1, 4096, "block_count");
    RANGE(hp->n_ff, 1, 1 << 20, "feed_forward_length");
    RANGE(hp->n_head_kv, 1, hp->n_head, "attention.head_count_kv");
    RANGE(hp->head_dim, 1, 1024, "attention.key_length");
    RANGE(hp->head_dim_v, 1, 1024, "attention.value_length");
    RANGE(hp->n_rot, 0, hp->head_dim, "rope.dimension_count");
#undef RANGE
    if (hp->n_head % hp->n_head_kv)
        return em_error(NULL, EMBER_ERR_FORMAT, "model: head_count %d is not a multiple of "
                        "head_count_kv %d", hp->n_head, hp->n_head_kv);
    if (hp->n_rot % 2)
        return em_error(NULL, EMBER_ERR_FORMAT, "model: rope.dimension_count %d is odd",
                        hp->n_rot);
    if (!(hp->rms_eps > 0 && hp->rms_eps < 1) || !(hp->rope_base > 0 && hp->rope_base < 1e12f))
        return em_error(NULL, EMBER_ERR_FORMAT, "model: rms epsilon %g or rope base %g is "
                        "invalid", (double)hp->rms_eps, (double)hp->rope_base);
    return EMBER_OK;
}

static int load_layer(ember_model *m, int il) {
    const em_hparams *hp = &m->hp;
    em_llama_layer *L = &m->layers[il];
    int64_t E = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim;
    int64_t kd = (int64_t)hp->n_head_kv * hp->head_dim, vd = (int64_t)hp->n_head_kv * hp->head_dim_v;
    int64_t od = (int64_t)hp->n_head * hp->head_dim_v;
    struct { const char *name; int nd; int64_t ne[2]; bool req; const em_gguf_tensor **dst; } w[] = {
        { "attn_norm.weight", 1, { E }, true, &L->attn_norm },
        { "attn_q.weight", 2, { E, qd }, true, &L->wq },
        { "attn_k.weight", 2, { E, kd }, true, &L->wk },
        { "attn_v.weight", 2, { E, vd }, true, &L->wv },
        { "attn_output.weight", 2, { od, E }, true, &L->wo },
        { "attn_q.bias", 1, { qd }, false, &L->bq },
        { "attn_k.bias", 1, { kd }, false, &L->bk },
        { "attn_v.bias", 1, { vd }, false, &L->bv },
        { "ffn_norm.weight", 1, { E }, true, &L->ffn_norm },
        { "ffn_gate.weight", 2, { E, hp->n_ff }, true, &L->ffn_gate },
        { "ffn_up.weight", 2, { E, hp->n_ff }, true, &L->ffn_up },
        { "ffn_down.weight", 2, { hp->n_ff, E }, true, &L->ffn_down },
    };
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "blk.%d.%s", il, w[i].name);
        int rc = em_model_weight(m, name, w[i].nd, w[i].ne, w[i].req, w[i].dst);
        if (rc) return rc;
    }
    return EMBER_OK;
}

static int llama_load(ember_model *m) {
    int rc;
    if ((rc = read_hparams(m)) || (rc = check_hparams(m)) || (rc = check_experts(m))) return rc;
    em_hparams *hp = &m->hp;
    if ((rc = em_model_weight(m, "token_embd.weight", 2, (int64_t[]){ hp->n_embd, 0 }, true,
                              &m->tok_embd)))
        return rc;
    if (m->tok_embd->ne[1] < 1 || m->tok_embd->ne[1] > (1 << 24))
        return em_error(NULL, EMBER_ERR_FORMAT, "model: token_embd.weight has %lld rows: the "
                        "vocabulary must have 1..16M tokens", (long long)m->tok_embd->ne[1]);
    hp->n_vocab = (int32_t)m->tok_embd->ne[1];
    if ((rc = em_model_weight(m, "output_norm.weight", 1, (int64_t[]){ hp->n_embd }, true,
                              &m->output_norm)) ||
        (rc = em_model_weight(m, "output.weight", 2, (int64_t[]){ hp->n_embd, hp->n_vocab },
                              false, &m->output)) ||
        (rc = em_model_weight(m, "rope_freqs.weight", 1, (int64_t[]){ hp->n_rot / 2 }, false,
                              &m->rope_freqs)))
        return rc;
    m->layers = em_calloc(&m->alloc, (size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return em_error(NULL, EMBER_ERR_NO_MEMORY, "model: no memory for layers");
    for (int il = 0; il < hp->n_layer; il++)
        if ((rc = load_layer(m, il))) return rc;
    return EMBER_OK;
}

const em_arch em_arch_llama = { "llama", llama_load, llama_build };
