/* What a context hands an architecture's graph builder. */
#ifndef EMBER_BUILD_H
#define EMBER_BUILD_H

#include "graph.h"

typedef struct em_build_inputs {
    int64_t n_tokens;
    int64_t n_outputs;
    em_tensor *tokens;   /* i32 [T] */
    em_tensor *pos;      /* i32 [T] */
    em_tensor *seq;      /* i32 [T] */
    em_tensor *slots;    /* i32 [T]: KV cache slot of each token */
    em_tensor *out_rows; /* i32 [n_outputs]: rows whose logits are wanted */
} em_build_inputs;

/* A leaf for a model weight. */
struct em_gguf_tensor;
em_tensor *em_weight(em_graph *g, const struct em_gguf_tensor *w);

#endif
