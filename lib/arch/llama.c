/* The llama architecture (Llama 1/2/3, TinyLlama, Mistral without sliding
 * window, llama2.c models) and its mixture-of-experts form (Mixtral):
 * pre-norm decoder blocks with RMSNorm, rotary attention with grouped KV
 * heads, and a SwiGLU feed-forward network or routed SwiGLU experts. */
#include "common.h"

em_tensor *em_arch_llama_build(const ember_model *m, em_graph *g, const em_build_inputs *in) {
    const em_hparams *hp = &m->hp;
    em_tensor *x = em_get_rows(g, em_weight(g, m->tok_embd), in->tokens);
    for (int il = 0; il < hp->n_layer; il++) {
        em_graph_layer(g, il);
        const em_layer *L = &m->layers[il];
        em_tensor *h = em_rms_norm(g, x, em_weight(g, L->attn_norm), hp->rms_eps);
        x = em_add(g, x, em_arch_attention(m, g, in, L, il, h));
        h = em_rms_norm(g, x, em_weight(g, L->ffn_norm), hp->rms_eps);
        x = em_add(g, x, hp->n_expert ? em_arch_experts(m, g, L, il, h) : em_arch_ffn(g, L, h));
    }
    return em_arch_output(m, g, in, x);
}

static int llama_load(ember_model *m) {
    int rc;
    /* Mixtral renormalises the chosen experts' softmax weights */
    if ((rc = em_arch_read_hparams(m)) || (rc = em_arch_read_moe(m, true)) ||
        (rc = em_arch_load_embeddings(m)))
        return rc;
    m->hp.rope_mode = 0; /* adjacent pairs: the converter permuted Q/K */
    if ((rc = em_arch_rope_table(m))) return rc;
    for (int il = 0; il < m->hp.n_layer; il++) {
        if ((rc = em_arch_load_attention(m, il))) return rc;
        rc = m->hp.n_expert ? em_arch_load_experts(m, il) : em_arch_load_ffn(m, il);
        if (rc) return rc;
    }
    return EMBER_OK;
}

const em_arch em_arch_llama = { "llama", llama_load, em_arch_llama_build };
