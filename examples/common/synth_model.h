/* Synthetic llama models with seeded random weights and a byte-level
 * SentencePiece vocabulary: used by ember-cli when no model is given, by
 * ember-bench, and by tests that need a model of a given shape. */
#ifndef EMBER_SYNTH_MODEL_H
#define EMBER_SYNTH_MODEL_H

#include <stddef.h>
#include <stdint.h>

typedef struct synth_cfg {
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
    int weight_type; /* 0 f32, 1 f16 */
    uint64_t seed;
} synth_cfg;

/* The default shape of ember-cli's built-in model. */
synth_cfg synth_default(void);

/* Writes a complete GGUF image; *out is 64-byte aligned (free()). */
int synth_llama(const synth_cfg *cfg, void **out, size_t *size);

#endif
