/* A loaded model: the parsed GGUF, hyperparameters, the weights bound by
 * name, and the vocabulary. Immutable after loading. */
#ifndef EMBER_MODEL_H
#define EMBER_MODEL_H

#include "gguf.h"
#include "tokenizer/vocab.h"

typedef struct em_hparams {
    int32_t n_vocab;
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t n_ff;
    int32_t head_dim;   /* key/query width per head */
    int32_t head_dim_v; /* value width per head */
    int32_t n_rot;      /* rotated dimensions per head */
    int32_t rope_mode;  /* 0 adjacent pairs, 2 halves (neox) */
    float rms_eps;
    float rope_base;
    float rope_freq_scale;
    /* YaRN (yarn_factor > 0) */
    float yarn_factor, yarn_orig_ctx, yarn_log_mul, yarn_beta_fast, yarn_beta_slow;
    float rope_attn_factor; /* multiplies cos and sin */
    /* KV cache row sizes (elements per position per layer), set by the arch */
    int64_t kv_k_row, kv_v_row;
    /* mixture of experts (n_expert == 0: dense) */
    int32_t n_expert, n_expert_used, n_ff_exp, n_ff_shexp, n_layer_dense_lead;
    int32_t gating, n_group, n_group_used, expert_norm;
    float expert_scale;
    /* MLA (deepseek2) */
    int32_t q_lora_rank, kv_lora_rank, head_nope;
    float kq_scale;
} em_hparams;

/* A weight seen through explicit strides (a slice of a file tensor), or a
 * derived matrix the loader made. */
typedef struct em_wview {
    uint32_t type;
    int64_t ne[4];
    size_t nb[4];
    const void *data;
} em_wview;

typedef struct em_layer {
    const em_gguf_tensor *attn_norm, *wq, *wk, *wv, *wo;
    const em_gguf_tensor *bq, *bk, *bv; /* optional biases */
    const em_gguf_tensor *ffn_norm, *ffn_gate, *ffn_up, *ffn_down;
    /* mixture of experts */
    const em_gguf_tensor *gate_inp, *gate_exps, *up_exps, *down_exps, *exp_probs_b;
    const em_gguf_tensor *gate_inp_shexp, *gate_shexp, *up_shexp, *down_shexp;
    /* MLA */
    const em_gguf_tensor *q_a, *q_a_norm, *q_b, *kv_a_mqa, *kv_a_norm;
    em_wview k_b, v_b; /* per-head absorption matrices */
    void *k_b_owned;   /* k_b transposed from attn_kv_b, owned by the model */
} em_layer;

struct em_graph;
struct em_tensor;
struct em_build_inputs;

typedef struct em_arch {
    const char *name;
    int (*load)(struct ember_model *m);
    /* Adds the forward pass to g; returns the logits tensor. */
    struct em_tensor *(*build)(const struct ember_model *m, struct em_graph *g,
                               const struct em_build_inputs *in);
} em_arch;

/* Who owns a model's file image: a mapping, a buffer the loader read the
 * file into, or nobody (the caller's memory). */
typedef struct em_image_owner {
    void *map;      /* munmap on release */
    size_t map_size;
    void *buffer;   /* em_free_aligned on release */
} em_image_owner;

void em_image_release(em_image_owner *o, const em_alloc *a);

struct ember_model {
    em_alloc alloc;
    em_image_owner image;
    em_gguf gguf;
    char arch_name[64];
    const em_arch *arch; /* NULL for vocab-only models */
    bool vocab_only;
    em_hparams hp;
    em_vocab vocab;
    const em_gguf_tensor *tok_embd, *output_norm, *output, *rope_freqs;
    em_layer *layers;
    uint64_t n_params;
    uint64_t type_bytes[EMBER_TYPE_COUNT];
    float *rope_inv_freq; /* [n_rot / 2], built at load */
};

/* Metadata helpers used by architectures: "%s" in key is the arch name. */
int em_model_get_i32(const struct ember_model *m, const char *key_fmt, bool required,
                     int32_t *out);
int em_model_get_f32(const struct ember_model *m, const char *key_fmt, bool required,
                     float *out);
/* Binds a weight by name and checks its shape (trailing dims of ne that
 * are 0 are not checked). Optional weights may be absent (*out = NULL). */
int em_model_weight(const struct ember_model *m, const char *name, int n_dims,
                    const int64_t *ne, bool required, const em_gguf_tensor **out);

extern const em_arch em_arch_llama, em_arch_qwen2moe, em_arch_deepseek2;

/* Loads a model from an image; on success the model takes `owner` (may be
 * NULL: the image stays the caller's). On failure nothing is taken. */
int em_model_load_image(const void *data, size_t size, const ember_model_params *params,
                        const em_image_owner *owner, struct ember_model **out);

/* The allocator the params select (for buffers made before the model). */
void em_model_params_alloc(const ember_model_params *params, em_alloc *a);

/* File I/O used by ember_model_load_file; tests replace these to inject
 * failures (a failing mmap, short reads). */
typedef struct em_io_hooks {
    void *(*mmap_fn)(void *addr, size_t len, int prot, int flags, int fd, long off);
    long (*read_fn)(int fd, void *buf, size_t n);
} em_io_hooks;
extern em_io_hooks em_io;

/* A caller's params over the defaults, checked (growable structs: the
 * bytes its version has); shared by the loaders, context creation and the
 * memory plan. */
int em_model_read_params(const ember_model_params *in, ember_model_params *p);
int em_context_read_params(const ember_context_params *in, ember_context_params *p);

#endif
