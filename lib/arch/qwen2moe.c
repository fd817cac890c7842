/* Qwen2-MoE: llama-style blocks with Q/K/V biases and rotary halves
 * (neox), routed experts without renormalisation, and a shared expert
 * scaled per token by sigmoid(ffn_gate_inp_shexp . x). */
#include "common.h"

static em_tensor *qwen2moe_build(const ember_model *m, em_graph *g, const em_build_inputs *in) {
    const em_hparams *hp = &m->hp;
    em_tensor *x = em_get_rows(g, em_weight(g, m->tok_embd), in->tokens);
    for (int il = 0; il < hp->n_layer; il++) {
        const em_layer *L = &m->layers[il];
        em_tensor *h = em_rms_norm(g, x, em_weight(g, L->attn_norm), hp->rms_eps);
        x = em_add(g, x, em_arch_attention(m, g, in, L, il, h));
        h = em_rms_norm(g, x, em_weight(g, L->ffn_norm), hp->rms_eps);
        x = em_add(g, x, em_arch_experts(m, g, L, il, h));
    }
    return em_arch_output(m, g, in, x);
}

static int qwen2moe_load(ember_model *m) {
    int rc;
    if ((rc = em_arch_read_hparams(m)) || (rc = em_arch_read_moe(m, false)) ||
        (rc = em_arch_load_embeddings(m)))
        return rc;
    if (m->hp.n_expert == 0)
        return em_error(NULL, EMBER_ERR_FORMAT, "model: qwen2moe.expert_count is missing or 0");
    m->hp.rope_mode = 2; /* halves */
    if ((rc = em_arch_rope_table(m))) return rc;
    for (int il = 0; il < m->hp.n_layer; il++)
        if ((rc = em_arch_load_attention(m, il)) || (rc = em_arch_load_experts(m, il))) return rc;
    return EMBER_OK;
}

const em_arch em_arch_qwen2moe = { "qwen2moe", qwen2moe_load, qwen2moe_build };
