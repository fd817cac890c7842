/* DeepSeek-V2/V3 (and R1): multi-head latent attention (MLA) and
 * mixture-of-experts blocks after `leading_dense_block_count` dense ones.
 *
 * MLA compresses K and V into a kv_lora-wide latent per token. The cache
 * keeps only that latent (after attn_kv_a_norm) and the shared rope key,
 * kv_lora + rope floats per token instead of n_head * (nope + rope + v).
 * Attention runs in the absorbed form: the per-head key projection k_b is
 * folded into the query (q_lat = k_b^T q_nope), so scores are taken
 * directly against the latent, and the value projection v_b is applied
 * after attention (v = v_b o_lat). Each cached token then costs O(kv_lora)
 * per head, and the attention itself is plain multi-query attention over
 * rows [latent | rope key] whose value is the latent. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common.h"

static em_tensor *mla_attention(const ember_model *m, em_graph *g, const em_build_inputs *in,
                                const em_layer *L, int il, em_tensor *x) {
    const em_hparams *hp = &m->hp;
    int64_t T = in->n_tokens, H = hp->n_head, nope = hp->head_nope, rope = hp->n_rot;
    int64_t kvl = hp->kv_lora_rank;

    /* queries, per head [nope | rope] */
    em_tensor *q = L->q_a
        ? em_matmul(g, em_weight(g, L->q_b),
                    em_rms_norm(g, em_matmul(g, em_weight(g, L->q_a), x),
                                em_weight(g, L->q_a_norm), hp->rms_eps))
        : em_matmul(g, em_weight(g, L->wq), x);
    q = em_reshape(g, q, 3, (int64_t[]){ nope + rope, H, T });
    em_tensor *q_nope = em_slice(g, q, 0, nope);
    em_tensor *q_rope = em_arch_rope(m, g, em_slice(g, q, nope, rope), in->pos);

    /* the compressed key/value: latent and one rope key shared by all heads */
    em_tensor *kv = em_matmul(g, em_weight(g, L->kv_a_mqa), x);
    em_tensor *latent = em_rms_norm(g, em_slice(g, kv, 0, kvl), em_weight(g, L->kv_a_norm),
                                    hp->rms_eps);
    em_tensor *k_rope = em_arch_rope(m, g, em_reshape(g, em_slice(g, kv, kvl, rope), 3,
                                                      (int64_t[]){ rope, 1, T }), in->pos);
    em_tensor *row = em_concat(g, latent, em_reshape(g, k_rope, 2, (int64_t[]){ rope, T }));
    em_tensor *stored = em_kv_store(g, row, NULL, in->slots, il);

    /* absorbed attention: q_lat = k_b^T q_nope; scores against [latent | rope key] */
    em_tensor *q_lat = em_head_matmul(g, em_wview_leaf(g, &L->k_b), q_nope);
    em_tensor *att = em_attn(g, em_concat(g, q_lat, q_rope), in->pos, in->seq, stored, il, kvl,
                             hp->kq_scale);
    em_tensor *o = em_head_matmul(g, em_wview_leaf(g, &L->v_b),
                                  em_reshape(g, att, 3, (int64_t[]){ kvl, H, T }));
    return em_matmul(g, em_weight(g, L->wo),
                     em_reshape(g, o, 2, (int64_t[]){ hp->head_dim_v * H, T }));
}

static em_tensor *deepseek2_build(const ember_model *m, em_graph *g, const em_build_inputs *in) {
    const em_hparams *hp = &m->hp;
    em_tensor *x = em_get_rows(g, em_weight(g, m->tok_embd), in->tokens);
    for (int il = 0; il < hp->n_layer; il++) {
        em_graph_layer(g, il);
        const em_layer *L = &m->layers[il];
        em_tensor *h = em_rms_norm(g, x, em_weight(g, L->attn_norm), hp->rms_eps);
        x = em_add(g, x, mla_attention(m, g, in, L, il, h));
        h = em_rms_norm(g, x, em_weight(g, L->ffn_norm), hp->rms_eps);
        bool dense = il < hp->n_layer_dense_lead;
        x = em_add(g, x, dense ? em_arch_ffn(g, L, h) : em_arch_experts(m, g, L, il, h));
    }
    return em_arch_output(m, g, in, x);
}

/* ---- loading ---- */

static int read_mla(ember_model *m) {
    em_hparams *hp = &m->hp;
    int32_t k_mla = 0, v_mla = 0;
    int rc;
    if ((rc = em_model_get_i32(m, "%s.attention.q_lora_rank", false, &hp->q_lora_rank)) ||
        (rc = em_model_get_i32(m, "%s.attention.kv_lora_rank", true, &hp->kv_lora_rank)) ||
        (rc = em_model_get_i32(m, "%s.attention.key_length_mla", false, &k_mla)) ||
        (rc = em_model_get_i32(m, "%s.attention.value_length_mla", false, &v_mla)))
        return rc;
    /* newer files describe the absorbed layout in key/value_length and the
     * per-head sizes in the _mla keys */
    if (k_mla) hp->head_dim = k_mla;
    if (v_mla) hp->head_dim_v = v_mla;
    hp->head_nope = hp->head_dim - hp->n_rot;
    if (hp->kv_lora_rank < 1 || hp->kv_lora_rank > 8192 || hp->q_lora_rank < 0 ||
        hp->q_lora_rank > 65536 || hp->head_nope < 1 || hp->n_rot < 2 || hp->head_dim_v < 1)
        return em_error(NULL, EMBER_ERR_FORMAT, "model: MLA sizes kv_lora_rank %d, q_lora_rank "
                        "%d, key_length %d, rope %d, value_length %d are inconsistent",
                        hp->kv_lora_rank, hp->q_lora_rank, hp->head_dim, hp->n_rot,
                        hp->head_dim_v);
    hp->kv_k_row = hp->kv_lora_rank + hp->n_rot;
    hp->kv_v_row = 0; /* the latent is the value */
    hp->rope_mode = 0; /* adjacent pairs (the reference's interleaved rope) */
    /* With YaRN, DeepSeek scales the attention logits by mscale^2, mscale =
     * 1 + yarn_log_mul ln(factor), and leaves cos and sin unscaled (its
     * mscale and mscale_all_dim cancel there). */
    double mscale = hp->yarn_factor > 0 ? 1.0 + hp->yarn_log_mul * log(hp->yarn_factor) : 1.0;
    hp->kq_scale = (float)(mscale * mscale / sqrt((double)(hp->head_nope + hp->n_rot)));
    hp->rope_attn_factor = 1.0f;
    return EMBER_OK;
}

static size_t row_bytes(uint32_t type, int64_t n) {
    const em_type_info *ti = em_type_info_get(type);
    return (size_t)(n / ti->block) * ti->size;
}

/* From a combined attn_kv_b [kv_lora, H*(nope+v)]: v_b is a strided view
 * of its value rows; k_b, which must be transposed, is made once here. */
static int split_kv_b(ember_model *m, em_layer *L, const em_gguf_tensor *kv_b) {
    const em_hparams *hp = &m->hp;
    int64_t H = hp->n_head, nope = hp->head_nope, v = hp->head_dim_v, kvl = hp->kv_lora_rank;
    size_t rb = row_bytes(kv_b->type, kvl), per_head = (size_t)(nope + v) * rb;
    L->v_b = (em_wview){ kv_b->type, { kvl, v, H, 1 }, { 0, rb, per_head, per_head * (size_t)H },
                         kv_b->data + (size_t)nope * rb };
    L->v_b.nb[0] = rb / (size_t)kvl;
    float *kb = em_malloc(&m->alloc, (size_t)(H * kvl * nope) * sizeof *kb);
    float *row = em_malloc(&m->alloc, (size_t)kvl * sizeof *row);
    if (!kb || !row) {
        em_free(&m->alloc, kb);
        em_free(&m->alloc, row);
        return em_error(NULL, EMBER_ERR_NO_MEMORY, "model: no memory for MLA k_b");
    }
    const em_type_info *ti = em_type_info_get(kv_b->type);
    for (int64_t h = 0; h < H; h++)
        for (int64_t d = 0; d < nope; d++) {
            const uint8_t *src = kv_b->data + (size_t)h * per_head + (size_t)d * rb;
            /* rows are F32/F16/BF16 or blocks: convert through a float row */
            for (int64_t c = 0; c < kvl; c++) {
                if (kv_b->type == EMBER_TYPE_F32) row[c] = ((const float *)src)[c];
                else if (kv_b->type == EMBER_TYPE_F16) row[c] = em_f16_to_f32(((const uint16_t *)src)[c]);
                else if (kv_b->type == EMBER_TYPE_BF16) row[c] = em_bf16_to_f32(((const uint16_t *)src)[c]);
                else row[c] = 0;
            }
            if (kv_b->type != EMBER_TYPE_F32 && kv_b->type != EMBER_TYPE_F16 &&
                kv_b->type != EMBER_TYPE_BF16) {
                em_free(&m->alloc, kb);
                em_free(&m->alloc, row);
                return em_error(NULL, EMBER_ERR_UNSUPPORTED, "model: attn_kv_b of type %s: "
                                "store it split (attn_k_b/attn_v_b) or as f16", ti->name);
            }
            for (int64_t c = 0; c < kvl; c++) kb[(h * kvl + c) * nope + d] = row[c];
        }
    em_free(&m->alloc, row);
    L->k_b_owned = kb;
    L->k_b = (em_wview){ EMBER_TYPE_F32, { nope, kvl, H, 1 },
                         { 4, (size_t)nope * 4, (size_t)(nope * kvl) * 4, (size_t)(nope * kvl * H) * 4 },
                         kb };
    return EMBER_OK;
}

static em_wview whole(const em_gguf_tensor *t) {
    size_t rb = row_bytes(t->type, t->ne[0]);
    return (em_wview){ t->type, { t->ne[0], t->ne[1], t->ne[2], 1 },
                       { rb / (size_t)t->ne[0], rb, rb * (size_t)t->ne[1],
                         rb * (size_t)(t->ne[1] * t->ne[2]) }, t->data };
}

static int load_mla_layer(ember_model *m, int il) {
    const em_hparams *hp = &m->hp;
    em_layer *L = &m->layers[il];
    int64_t E = hp->n_embd, H = hp->n_head, nope = hp->head_nope, rope = hp->n_rot;
    int64_t kvl = hp->kv_lora_rank, v = hp->head_dim_v, ql = hp->q_lora_rank;
    const em_gguf_tensor *kv_b = NULL, *k_b = NULL, *v_b = NULL;
    int rc;
#define W(name, nd, req, dst, ...) \
    if ((rc = em_arch_layer_weight(m, il, name, nd, (int64_t[]){ __VA_ARGS__ }, req, dst))) return rc
    W("attn_norm.weight", 1, true, &L->attn_norm, E);
    if (ql) {
        W("attn_q_a.weight", 2, true, &L->q_a, E, ql);
        W("attn_q_a_norm.weight", 1, true, &L->q_a_norm, ql);
        W("attn_q_b.weight", 2, true, &L->q_b, ql, H * (nope + rope));
    } else {
        W("attn_q.weight", 2, true, &L->wq, E, H * (nope + rope));
    }
    W("attn_kv_a_mqa.weight", 2, true, &L->kv_a_mqa, E, kvl + rope);
    W("attn_kv_a_norm.weight", 1, true, &L->kv_a_norm, kvl);
    W("attn_output.weight", 2, true, &L->wo, H * v, E);
    W("attn_k_b.weight", 3, false, &k_b, nope, kvl, H);
    W("attn_v_b.weight", 3, false, &v_b, kvl, v, H);
    if (!k_b || !v_b) W("attn_kv_b.weight", 2, true, &kv_b, kvl, H * (nope + v));
#undef W
    if (kv_b) return split_kv_b(m, L, kv_b);
    L->k_b = whole(k_b);
    L->v_b = whole(v_b);
    return EMBER_OK;
}

static int deepseek2_load(ember_model *m) {
    int rc;
    if ((rc = em_arch_read_hparams(m)) || (rc = read_mla(m)) || (rc = em_arch_read_moe(m, false)) ||
        (rc = em_arch_load_embeddings(m)))
        return rc;
    for (int il = 0; il < m->hp.n_layer; il++) {
        if ((rc = load_mla_layer(m, il))) return rc;
        bool dense = il < m->hp.n_layer_dense_lead || m->hp.n_expert == 0;
        if ((rc = dense ? em_arch_load_ffn(m, il) : em_arch_load_experts(m, il))) return rc;
    }
    return em_arch_rope_table(m);
}

const em_arch em_arch_deepseek2 = { "deepseek2", deepseek2_load, deepseek2_build };
