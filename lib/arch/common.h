/* Pieces shared by the architectures: hyperparameters, weight loading and
 * the graph blocks (attention, feed-forward, experts, output head). */
#ifndef EMBER_ARCH_COMMON_H
#define EMBER_ARCH_COMMON_H

#include "../build.h"
#include "../model.h"
#include "../moe.h"

/* Context length, widths, heads, norm epsilon, rope (base, scaling,
 * dimensions); checked for consistency. */
int em_arch_read_hparams(ember_model *m);
/* Expert counts and routing settings; default_norm: whether the chosen
 * weights are renormalised when the file does not say. */
int em_arch_read_moe(ember_model *m, bool default_norm);

/* token_embd (sets n_vocab), output_norm, output (or tied), rope_freqs */
int em_arch_load_embeddings(ember_model *m);
int em_arch_load_attention(ember_model *m, int il);
int em_arch_load_ffn(ember_model *m, int il);     /* dense: ffn_gate/up/down */
int em_arch_load_experts(ember_model *m, int il); /* router, experts, shared */
/* Loads a weight named "blk.<il>.<name>" (see em_model_weight). */
int em_arch_layer_weight(ember_model *m, int il, const char *name, int n_dims,
                         const int64_t *ne, bool required, const em_gguf_tensor **out);

em_tensor *em_arch_attention(const ember_model *m, em_graph *g, const em_build_inputs *in,
                             const em_layer *L, int il, em_tensor *x);
em_tensor *em_arch_ffn(em_graph *g, const em_layer *L, em_tensor *x);
/* Routed experts plus the shared expert (gated by sigmoid(gate_inp_shexp x)
 * when that tensor exists). */
em_tensor *em_arch_experts(const ember_model *m, em_graph *g, const em_layer *L, int il,
                           em_tensor *x);
/* Only the rows whose logits are wanted, final norm, output matrix. */
em_tensor *em_arch_output(const ember_model *m, em_graph *g, const em_build_inputs *in,
                          em_tensor *x);
em_tensor *em_wview_leaf(em_graph *g, const em_wview *v);
/* The llama forward pass (dense or with experts), shared by the
 * architectures whose blocks are llama's. */
em_tensor *em_arch_llama_build(const ember_model *m, em_graph *g, const em_build_inputs *in);
/* Builds the model's rope frequency table (after hparams and rope_freqs). */
int em_arch_rope_table(ember_model *m);
/* Rotary embedding of x [D, heads, T] with the model's table. */
em_tensor *em_arch_rope(const ember_model *m, em_graph *g, em_tensor *x, em_tensor *pos);

#endif
