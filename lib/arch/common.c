#include "common.h"

#include "../rope.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- hyperparameters ---- */

/* YaRN settings; the attention-logit factor (yarn_log_mul) is applied by
 * the architectures that use it (deepseek2). */
static int read_yarn(ember_model *m, float factor) {
    em_hparams *hp = &m->hp;
    int rc;
    hp->yarn_orig_ctx = 0;
    hp->yarn_beta_fast = 32.0f;
    hp->yarn_beta_slow = 1.0f;
    int32_t orig = 0;
    if ((rc = em_model_get_i32(m, "%s.rope.scaling.original_context_length", false, &orig)) ||
        (rc = em_model_get_f32(m, "%s.rope.scaling.yarn_log_multiplier", false, &hp->yarn_log_mul)) ||
        (rc = em_model_get_f32(m, "%s.rope.scaling.yarn_beta_fast", false, &hp->yarn_beta_fast)) ||
        (rc = em_model_get_f32(m, "%s.rope.scaling.yarn_beta_slow", false, &hp->yarn_beta_slow)))
        return rc;
    if (!(factor >= 1 && factor < 1e6f) || orig < 0 || !(hp->yarn_beta_fast > 0) ||
        !(hp->yarn_beta_slow > 0) || !(hp->yarn_log_mul >= 0 && hp->yarn_log_mul < 10))
        return em_error(NULL, EMBER_ERR_FORMAT, "model: YaRN rope scaling: factor %g, original "
                        "context %d, betas %g/%g or log multiplier %g out of range",
                        (double)factor, orig, (double)hp->yarn_beta_fast,
                        (double)hp->yarn_beta_slow, (double)hp->yarn_log_mul);
    hp->yarn_factor = factor;
    hp->yarn_orig_ctx = (float)(orig ? orig : hp->n_ctx_train);
    /* cos and sin are scaled by 1 + 0.1 ln(factor), as the reference does */
    hp->rope_attn_factor = (float)(1.0 + 0.1 * log(factor));
    return EMBER_OK;
}

static int read_rope_scaling(ember_model *m) {
    em_hparams *hp = &m->hp;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch_name);
    const em_gguf_kv *kv = em_gguf_find(&m->gguf, key);
    float factor = 0;
    hp->rope_attn_factor = 1.0f;
    int rc = em_model_get_f32(m, "%s.rope.scaling.factor", false, &factor);
    if (rc) return rc;
    if (kv) {
        if (kv->type != GGUF_STRING)
            return em_error(NULL, EMBER_ERR_FORMAT, "model: %s is not a string", key);
        bool none = kv->n == 4 && memcmp(kv->data, "none", 4) == 0;
        bool linear = kv->n == 6 && memcmp(kv->data, "linear", 6) == 0;
        bool yarn = kv->n == 4 && memcmp(kv->data, "yarn", 4) == 0;
        if (yarn) {
            hp->rope_freq_scale = 1.0f;
            return read_yarn(m, factor);
        }
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

int em_arch_read_hparams(ember_model *m) {
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
    hp->kv_k_row = (int64_t)hp->n_head_kv * hp->head_dim;
    hp->kv_v_row = (int64_t)hp->n_head_kv * hp->head_dim_v;
    return check_hparams(m);
}

static int read_bool_key(const ember_model *m, const char *fmt, int32_t *out) {
    char key[128];
    snprintf(key, sizeof key, fmt, m->arch_name);
    const em_gguf_kv *kv = em_gguf_find(&m->gguf, key);
    if (!kv) return EMBER_OK;
    if (kv->type != GGUF_BOOL)
        return em_error(NULL, EMBER_ERR_FORMAT, "model: %s is not a bool", key);
    *out = kv->data[0];
    return EMBER_OK;
}

int em_arch_read_moe(ember_model *m, bool default_norm) {
    em_hparams *hp = &m->hp;
    const char *a = m->arch_name;
    int rc;
    hp->n_ff_exp = hp->n_ff;
    hp->gating = EM_GATING_SOFTMAX;
    hp->n_group = 1;
    hp->n_group_used = -1;
    hp->expert_norm = default_norm;
    hp->expert_scale = 1.0f;
    if ((rc = em_model_get_i32(m, "%s.expert_count", false, &hp->n_expert)) ||
        (rc = em_model_get_i32(m, "%s.expert_used_count", false, &hp->n_expert_used)) ||
        (rc = em_model_get_i32(m, "%s.expert_feed_forward_length", false, &hp->n_ff_exp)) ||
        (rc = em_model_get_i32(m, "%s.expert_shared_feed_forward_length", false, &hp->n_ff_shexp)) ||
        (rc = em_model_get_i32(m, "%s.leading_dense_block_count", false, &hp->n_layer_dense_lead)) ||
        (rc = em_model_get_i32(m, "%s.expert_gating_func", false, &hp->gating)) ||
        (rc = em_model_get_i32(m, "%s.expert_group_count", false, &hp->n_group)) ||
        (rc = em_model_get_i32(m, "%s.expert_group_used_count", false, &hp->n_group_used)) ||
        (rc = em_model_get_f32(m, "%s.expert_weights_scale", false, &hp->expert_scale)) ||
        (rc = read_bool_key(m, "%s.expert_weights_norm", &hp->expert_norm)))
        return rc;
    if (hp->n_expert < 0 || hp->n_expert_used < 0 || hp->n_expert_used > hp->n_expert)
        return em_error(NULL, EMBER_ERR_FORMAT, "model: %s.expert_used_count = %d exceeds "
                        "%s.expert_count = %d", a, hp->n_expert_used, a, hp->n_expert);
    if (hp->n_expert == 0) return EMBER_OK;
    if (hp->n_group_used == -1) hp->n_group_used = hp->n_group;
    if (hp->n_expert > EM_MOE_MAX_EXPERTS || hp->n_expert_used < 1 || hp->n_ff_exp < 1 ||
        hp->n_ff_exp > (1 << 20) || hp->n_ff_shexp < 0 || hp->n_ff_shexp > (1 << 20))
        return em_error(NULL, EMBER_ERR_FORMAT, "model: %s.expert_count %d (1..%d), "
                        "expert_used_count %d or expert feed-forward lengths out of range", a,
                        hp->n_expert, EM_MOE_MAX_EXPERTS, hp->n_expert_used);
    if (hp->gating != EM_GATING_SOFTMAX && hp->gating != EM_GATING_SIGMOID)
        return em_error(NULL, EMBER_ERR_UNSUPPORTED, "model: %s.expert_gating_func = %d is not "
                        "softmax (1) or sigmoid (2)", a, hp->gating);
    if (hp->n_group < 1 || hp->n_expert % hp->n_group || hp->n_group_used < 1 ||
        hp->n_group_used > hp->n_group ||
        hp->n_expert_used > hp->n_group_used * (hp->n_expert / hp->n_group))
        return em_error(NULL, EMBER_ERR_FORMAT, "model: %s.expert_group_count %d / "
                        "expert_group_used_count %d do not fit %d experts, %d used", a,
                        hp->n_group, hp->n_group_used, hp->n_expert, hp->n_expert_used);
    if (hp->n_layer_dense_lead < 0 || hp->n_layer_dense_lead > hp->n_layer ||
        !(hp->expert_scale > 0 && hp->expert_scale < 1e6f))
        return em_error(NULL, EMBER_ERR_FORMAT, "model: %s.leading_dense_block_count %d or "
                        "expert_weights_scale %g out of range", a, hp->n_layer_dense_lead,
                        (double)hp->expert_scale);
    return EMBER_OK;
}

/* ---- weights ---- */

int em_arch_layer_weight(ember_model *m, int il, const char *name, int n_dims,
                         const int64_t *ne, bool required, const em_gguf_tensor **out) {
    char full[96];
    snprintf(full, sizeof full, "blk.%d.%s", il, name);
    return em_model_weight(m, full, n_dims, ne, required, out);
}

int em_arch_rope_table(ember_model *m) {
    const em_hparams *hp = &m->hp;
    int32_t half = hp->n_rot / 2 > 0 ? hp->n_rot / 2 : 1;
    m->rope_inv_freq = em_calloc(&m->alloc, (size_t)half, sizeof *m->rope_inv_freq);
    if (!m->rope_inv_freq) return em_error(NULL, EMBER_ERR_NO_MEMORY, "model: no memory for rope");
    em_rope_cfg cfg = { hp->n_rot, hp->rope_base, hp->rope_freq_scale,
                        m->rope_freqs ? (const float *)m->rope_freqs->data : NULL,
                        hp->yarn_factor, hp->yarn_orig_ctx, hp->yarn_beta_fast, hp->yarn_beta_slow };
    if (hp->n_rot > 0) em_rope_inv_freq(&cfg, m->rope_inv_freq);
    return EMBER_OK;
}

em_tensor *em_arch_rope(const ember_model *m, em_graph *g, em_tensor *x, em_tensor *pos) {
    const em_hparams *hp = &m->hp;
    int64_t half = hp->n_rot / 2;
    return em_rope(g, x, pos, em_leaf(g, EMBER_TYPE_F32, 1, &half, m->rope_inv_freq), hp->n_rot,
                   hp->rope_mode, hp->rope_attn_factor);
}

int em_arch_load_embeddings(ember_model *m) {
    em_hparams *hp = &m->hp;
    int rc;
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
    return EMBER_OK;
}

typedef struct wspec {
    const char *name;
    int nd;
    int64_t ne[3];
    bool req;
    const em_gguf_tensor **dst;
} wspec;

static int load_specs(ember_model *m, int il, const wspec *w, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int rc = em_arch_layer_weight(m, il, w[i].name, w[i].nd, w[i].ne, w[i].req, w[i].dst);
        if (rc) return rc;
    }
    return EMBER_OK;
}

int em_arch_load_attention(ember_model *m, int il) {
    const em_hparams *hp = &m->hp;
    em_layer *L = &m->layers[il];
    int64_t E = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim;
    int64_t kd = (int64_t)hp->n_head_kv * hp->head_dim, vd = (int64_t)hp->n_head_kv * hp->head_dim_v;
    int64_t od = (int64_t)hp->n_head * hp->head_dim_v;
    wspec w[] = {
        { "attn_norm.weight", 1, { E }, true, &L->attn_norm },
        { "attn_q.weight", 2, { E, qd }, true, &L->wq },
        { "attn_k.weight", 2, { E, kd }, true, &L->wk },
        { "attn_v.weight", 2, { E, vd }, true, &L->wv },
        { "attn_output.weight", 2, { od, E }, true, &L->wo },
        { "attn_q.bias", 1, { qd }, false, &L->bq },
        { "attn_k.bias", 1, { kd }, false, &L->bk },
        { "attn_v.bias", 1, { vd }, false, &L->bv },
    };
    return load_specs(m, il, w, sizeof w / sizeof w[0]);
}

int em_arch_load_ffn(ember_model *m, int il) {
    const em_hparams *hp = &m->hp;
    em_layer *L = &m->layers[il];
    int64_t E = hp->n_embd;
    wspec w[] = {
        { "ffn_norm.weight", 1, { E }, true, &L->ffn_norm },
        { "ffn_gate.weight", 2, { E, hp->n_ff }, true, &L->ffn_gate },
        { "ffn_up.weight", 2, { E, hp->n_ff }, true, &L->ffn_up },
        { "ffn_down.weight", 2, { hp->n_ff, E }, true, &L->ffn_down },
    };
    return load_specs(m, il, w, sizeof w / sizeof w[0]);
}

int em_arch_load_experts(ember_model *m, int il) {
    const em_hparams *hp = &m->hp;
    em_layer *L = &m->layers[il];
    int64_t E = hp->n_embd, F = hp->n_ff_exp, n = hp->n_expert;
    /* the shared expert: its own length, or n_shared experts' worth */
    int32_t n_shared = 0;
    int rc = em_model_get_i32(m, "%s.expert_shared_count", false, &n_shared);
    if (rc) return rc;
    int64_t S = hp->n_ff_shexp ? hp->n_ff_shexp : (int64_t)n_shared * F;
    wspec w[] = {
        { "ffn_norm.weight", 1, { E }, true, &L->ffn_norm },
        { "ffn_gate_inp.weight", 2, { E, n }, true, &L->gate_inp },
        { "ffn_gate_exps.weight", 3, { E, F, n }, true, &L->gate_exps },
        { "ffn_up_exps.weight", 3, { E, F, n }, true, &L->up_exps },
        { "ffn_down_exps.weight", 3, { F, E, n }, true, &L->down_exps },
        { "exp_probs_b.bias", 1, { n }, false, &L->exp_probs_b },
        { "ffn_gate_inp_shexp.weight", 2, { E, 1 }, false, &L->gate_inp_shexp },
        { "ffn_gate_shexp.weight", 2, { E, S }, S > 0, &L->gate_shexp },
        { "ffn_up_shexp.weight", 2, { E, S }, S > 0, &L->up_shexp },
        { "ffn_down_shexp.weight", 2, { S, E }, S > 0, &L->down_shexp },
    };
    if ((rc = load_specs(m, il, w, sizeof w / sizeof w[0]))) return rc;
    if (L->gate_inp->type != EMBER_TYPE_F32 && L->gate_inp->type != EMBER_TYPE_F16)
        return em_error(NULL, EMBER_ERR_UNSUPPORTED, "model: blk.%d.ffn_gate_inp.weight must be "
                        "f32 or f16 (routing is computed exactly)", il);
    return EMBER_OK;
}

/* ---- graph blocks ---- */

em_tensor *em_wview_leaf(em_graph *g, const em_wview *v) {
    return em_leaf_strided(g, v->type, v->ne, v->nb, v->data);
}

em_tensor *em_arch_attention(const ember_model *m, em_graph *g, const em_build_inputs *in,
                             const em_layer *L, int il, em_tensor *x) {
    const em_hparams *hp = &m->hp;
    int64_t T = in->n_tokens, D = hp->head_dim;
    em_tensor *q = em_matmul(g, em_weight(g, L->wq), x);
    em_tensor *k = em_matmul(g, em_weight(g, L->wk), x);
    em_tensor *v = em_matmul(g, em_weight(g, L->wv), x);
    if (L->bq) q = em_add(g, q, em_weight(g, L->bq));
    if (L->bk) k = em_add(g, k, em_weight(g, L->bk));
    if (L->bv) v = em_add(g, v, em_weight(g, L->bv));

    q = em_arch_rope(m, g, em_reshape(g, q, 3, (int64_t[]){ D, hp->n_head, T }), in->pos);
    k = em_arch_rope(m, g, em_reshape(g, k, 3, (int64_t[]){ D, hp->n_head_kv, T }), in->pos);

    em_tensor *stored = em_kv_store(g, em_reshape(g, k, 2, (int64_t[]){ D * hp->n_head_kv, T }),
                                    v, in->slots, il);
    em_tensor *att = em_attn(g, q, in->pos, in->seq, stored, il, hp->head_dim_v,
                             1.0f / sqrtf((float)D));
    return em_matmul(g, em_weight(g, L->wo), att);
}

static em_tensor *swiglu_ffn(em_graph *g, const em_gguf_tensor *gate, const em_gguf_tensor *up,
                             const em_gguf_tensor *down, em_tensor *x) {
    em_tensor *gt = em_matmul(g, em_weight(g, gate), x);
    em_tensor *ut = em_matmul(g, em_weight(g, up), x);
    return em_matmul(g, em_weight(g, down), em_swiglu(g, gt, ut));
}

em_tensor *em_arch_ffn(em_graph *g, const em_layer *L, em_tensor *x) {
    return swiglu_ffn(g, L->ffn_gate, L->ffn_up, L->ffn_down, x);
}

em_tensor *em_arch_experts(const ember_model *m, em_graph *g, const em_layer *L, int il,
                           em_tensor *x) {
    const em_hparams *hp = &m->hp;
    em_route_params rp = { hp->n_expert, hp->n_expert_used, hp->gating, hp->n_group,
                           hp->n_group_used, hp->expert_norm, hp->expert_scale };
    em_tensor *logits = em_matmul(g, em_weight(g, L->gate_inp), x);
    em_tensor *route = em_moe_route(g, logits, L->exp_probs_b ? em_weight(g, L->exp_probs_b) : NULL,
                                    &rp);
    em_tensor *y = em_moe_ffn(g, x, route, em_weight(g, L->gate_exps), em_weight(g, L->up_exps),
                              em_weight(g, L->down_exps), hp->n_expert_used, il);
    if (!L->gate_shexp) return y;
    em_tensor *shared = swiglu_ffn(g, L->gate_shexp, L->up_shexp, L->down_shexp, x);
    if (L->gate_inp_shexp) /* Qwen2-MoE: sigmoid(gate_inp_shexp . x) scales it per token */
        shared = em_mul(g, shared, em_sigmoid(g, em_matmul(g, em_weight(g, L->gate_inp_shexp), x)));
    return em_add(g, y, shared);
}

em_tensor *em_arch_output(const ember_model *m, em_graph *g, const em_build_inputs *in,
                          em_tensor *x) {
    x = em_get_rows(g, x, in->out_rows); /* only the rows whose logits are wanted */
    x = em_rms_norm(g, x, em_weight(g, m->output_norm), m->hp.rms_eps);
    em_tensor *logits = em_matmul(g, em_weight(g, m->output ? m->output : m->tok_embd), x);
    logits->keep = 1;
    return logits;
}
