/* Qwen2-MoE: llama's blocks (so llama's forward pass) with Q/K/V biases
 * and rotary halves (neox), routed experts without renormalisation, and a
 * shared expert scaled per token by sigmoid(ffn_gate_inp_shexp . x). */
#include "common.h"

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

const em_arch em_arch_qwen2moe = { "qwen2moe", qwen2moe_load, em_arch_llama_build };
