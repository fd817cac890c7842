/* Contexts: the per-user state (KV cache, activations arena, backend) and
 * evaluation of a batch. Everything is allocated at creation; ember_eval
 * validates the whole batch before it changes anything. */
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "build.h"
#include "kv.h"
#include "model.h"
#include "split.h"

/* One backend's share of the graph: the whole graph, or one part of a
 * layer split (lib/split.h), planned into an arena of its own. */
typedef struct em_stage {
    em_backend *backend; /* owned by the context */
    em_graph *graph;
    em_plan plan;
    em_buffer arena;
    uint32_t n_ops;
} em_stage;

struct ember_context {
    em_alloc alloc;
    const ember_model *model;
    char err[EM_ERRMSG_SIZE];
    uint32_t n_ctx, n_batch, n_threads, n_seq, kv_type, kv_blocks, kv_block;
    em_backend *backend; /* the params' backend */
    em_backend *cpu;     /* a layer split's CPU backend, or NULL */
    em_kv kv;
    em_graph graph;      /* the whole forward graph, as built */
    em_split split;      /* its two parts, when split */
    em_stage stage[2];   /* in order of execution */
    int32_t n_stage;
    em_layer_range device_layers; /* layers on the params' backend */
    int32_t *inputs; /* tokens, pos, seq, slots, out_rows: n_batch each */
    int32_t *row_out; /* batch entry -> logits row, or -1 */
    int32_t *seq_first, *seq_next; /* per sequence, during validation */
    em_tensor *logits;
    size_t n_last;
    uint64_t positions_written; /* batch entries evaluated, ever */
    uint64_t *expert_counts; /* [n_layer][n_expert], MoE models only */
    int32_t backend_kind;
};

em_tensor *em_weight(em_graph *g, const em_gguf_tensor *w) {
    return em_leaf(g, w->type, (int)w->n_dims, w->ne, w->data);
}

EMBER_API void ember_context_default_params(ember_context_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->n_batch = 512;
    p->n_seq_max = 1;
    p->backend = EMBER_BACKEND_CPU;
}

/* The size of the first released version of ember_context_params (up to its last
 * field, kv_type). Frozen: later fields come out of the reserved tail, and
 * callers built against older headers must keep working. */
#define PARAMS_V1_SIZE (offsetof(ember_context_params, kv_type) + sizeof(int32_t))

int em_context_read_params(const ember_context_params *in, ember_context_params *p) {
    ember_context_default_params(p);
    return em_read_params(p, sizeof *p, in, PARAMS_V1_SIZE, "context params");
}

static int resolve_params(ember_context *c, const ember_context_params *p) {
    const em_hparams *hp = &c->model->hp;
    c->n_ctx = p->n_ctx ? p->n_ctx : (uint32_t)hp->n_ctx_train;
    c->n_batch = p->n_batch;
    c->n_seq = p->n_seq_max;
    c->n_threads = p->n_threads;
    if (!c->n_threads) c->n_threads = (uint32_t)em_online_cpus();
    c->kv_type = (uint32_t)p->kv_type;
    c->kv_blocks = p->kv_blocks;
    c->kv_block = p->kv_block_size ? p->kv_block_size : EMBER_KV_BLOCK;
    if (c->kv_block < 4 || c->kv_block > 256 || (c->kv_block & (c->kv_block - 1)))
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "context: kv_block_size %u is not a "
                        "power of two from 4 to 256", p->kv_block_size);
    if (p->act_type != EMBER_TYPE_F32 && p->act_type != EMBER_TYPE_Q8_0 &&
        p->act_type != EMBER_TYPE_BF16)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "context: act_type %d is not "
                        "EMBER_TYPE_F32, EMBER_TYPE_Q8_0 or EMBER_TYPE_BF16", p->act_type);
    if (c->kv_type != EMBER_TYPE_F32 && c->kv_type != EMBER_TYPE_F16 &&
        c->kv_type != EMBER_TYPE_Q8_0)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "context: kv_type %d is not "
                        "EMBER_TYPE_F32, EMBER_TYPE_F16 or EMBER_TYPE_Q8_0", p->kv_type);
    /* 8-bit rows are read per head, so each head's K and V must be whole
     * blocks of 32 (MLA: the cached latent plus RoPE key, and the latent) */
    int64_t hk = hp->kv_v_row ? hp->head_dim : hp->kv_k_row;
    int64_t hv = hp->kv_v_row ? hp->head_dim_v : hp->kv_lora_rank;
    if (c->kv_type == EMBER_TYPE_Q8_0 && (hk % 32 || hv % 32))
        return em_error(NULL, EMBER_ERR_UNSUPPORTED, "context: kv_type Q8_0 needs per-head K and "
                        "V widths that are multiples of 32; this model has %lld and %lld",
                        (long long)hk, (long long)hv);
    if (p->n_device_layers < 0 ||
        (p->device_layers_at != EMBER_LAYERS_FIRST && p->device_layers_at != EMBER_LAYERS_LAST))
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "context: n_device_layers %d is "
                        "negative or device_layers_at %d is not EMBER_LAYERS_FIRST or _LAST",
                        p->n_device_layers, p->device_layers_at);
    if (p->n_device_layers && p->backend == EMBER_BACKEND_CPU)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "context: n_device_layers %d needs a "
                        "device backend; the CPU backend runs every layer", p->n_device_layers);
    if (c->n_ctx > (1u << 24) || c->n_batch < 1 || c->n_batch > 65536 || c->n_seq < 1 ||
        c->n_seq > 4096 || c->n_threads > 512 || c->kv_blocks > (1u << 30))
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "context: n_ctx %u (<= 16M), n_batch %u "
                        "(1..65536), n_seq_max %u (1..4096), n_threads %u (<= 512) or kv_blocks "
                        "%u (<= 2^30) out of range", c->n_ctx, c->n_batch, c->n_seq, c->n_threads,
                        c->kv_blocks);
    return EMBER_OK;
}

static int32_t *input(const ember_context *c, int i) { return c->inputs + (size_t)i * c->n_batch; }

/* Builds the forward graph for a batch of n tokens with n_out outputs. */
static int build_graph(ember_context *c, int64_t n, int64_t n_out) {
    em_graph *g = &c->graph;
    em_graph_reset(g);
    g->kv = &c->kv;
    g->expert_counts = c->expert_counts;
    g->stats_n_expert = c->model->hp.n_expert;
    em_build_inputs in = { .n_tokens = n, .n_outputs = n_out };
    in.tokens = em_input(g, EM_TYPE_I32, 1, &n, input(c, 0));
    in.pos = em_input(g, EM_TYPE_I32, 1, &n, input(c, 1));
    in.seq = em_input(g, EM_TYPE_I32, 1, &n, input(c, 2));
    in.slots = em_input(g, EM_TYPE_I32, 1, &n, input(c, 3));
    in.out_rows = em_input(g, EM_TYPE_I32, 1, &n_out, input(c, 4));
    c->logits = c->model->arch->build(c->model, g, &in);
    return em_graph_check(g, c->err);
}

static void context_destroy(ember_context *c) {
    em_alloc a = c->alloc;
    for (int32_t i = 0; i < c->n_stage; i++) {
        em_backend_buffer_free(c->stage[i].backend, &c->stage[i].arena);
        em_plan_free(&c->stage[i].plan, &a);
    }
    em_backend_destroy(&c->cpu);
    em_backend_destroy(&c->backend);
    em_split_free(&c->split, &a);
    em_graph_free(&c->graph, &a);
    em_kv_free(&c->kv, &a);
    em_free(&a, c->inputs);
    em_free(&a, c->expert_counts);
    em_free(&a, c);
}

/* The stages' graphs for the graph just built: itself, or its two parts
 * (the logits then come from part 1). */
static int split_graph(ember_context *c) {
    if (c->n_stage == 1) return EMBER_OK;
    int rc = em_split_make(&c->split, &c->graph, c->graph.split_node, c->err);
    if (!rc) c->logits = em_split_node(&c->split, &c->graph, c->logits);
    return rc;
}

/* Points every stage's tensors into its arena, part 1's inputs at part
 * 0's outputs. */
static int place_stages(ember_context *c) {
    for (int32_t i = 0; i < c->n_stage; i++) {
        em_stage *st = &c->stage[i];
        if (i == 1) em_split_link(&c->split);
        int rc = em_plan_apply(&st->plan, st->graph, st->arena.base, c->err);
        if (rc) return rc;
    }
    return EMBER_OK;
}

/* Plans memory once, for the largest batch: every later graph has the
 * same nodes with sizes no larger. */
static int plan_memory(ember_context *c) {
    int rc = build_graph(c, c->n_batch, c->n_batch);
    if (rc || (rc = split_graph(c))) return rc;
    for (int32_t i = 0; i < c->n_stage; i++) {
        em_stage *st = &c->stage[i];
        if (em_plan_make(&st->plan, st->graph, &c->alloc))
            return em_error(c->err, EMBER_ERR_NO_MEMORY, "context: no memory for the plan");
        if ((rc = em_backend_buffer_alloc(st->backend, st->plan.arena_size, &st->arena)))
            return rc;
        for (int32_t k = 0; k < st->graph->n_nodes; k++)
            st->n_ops += st->graph->nodes[k].op != EM_OP_NONE;
    }
    if ((rc = place_stages(c))) return rc;
    for (int32_t i = 0; i < c->n_stage; i++)
        if ((rc = em_backend_graph_reserve(c->stage[i].backend, c->stage[i].graph))) return rc;
    return EMBER_OK;
}

/* The layers on the params' backend, and the stages that run the graph:
 * one, or for a split the device's layers and the CPU's in model order. */
static int make_stages(ember_context *c, const ember_context_params *p, em_backend_config cfg) {
    int32_t L = c->model->hp.n_layer, n = p->n_device_layers;
    bool split = p->backend != EMBER_BACKEND_CPU && n > 0 && n < L;
    bool first = p->device_layers_at == EMBER_LAYERS_FIRST;
    c->device_layers = (em_layer_range){ 0, L };
    c->n_stage = 1;
    c->stage[0] = (em_stage){ .backend = c->backend, .graph = &c->graph };
    if (!split) return EMBER_OK;
    c->device_layers = first ? (em_layer_range){ 0, n } : (em_layer_range){ L - n, L };
    c->graph.split_layer = first ? n : L - n;
    cfg.kind = EMBER_BACKEND_CPU;
    int rc = em_backend_create(&cfg, &c->alloc, c->err, &c->cpu);
    if (rc) return rc;
    if (em_split_init(&c->split, &c->alloc, c->graph.cap))
        return em_error(c->err, EMBER_ERR_NO_MEMORY, "context: no memory for the split graph");
    int dev = first ? 0 : 1;
    c->n_stage = 2;
    c->stage[dev] = (em_stage){ .backend = c->backend, .graph = &c->split.part[dev] };
    c->stage[1 - dev] = (em_stage){ .backend = c->cpu, .graph = &c->split.part[1 - dev] };
    return EMBER_OK;
}

static int context_init(ember_context *c, const ember_context_params *p) {
    const em_hparams *hp = &c->model->hp;
    int rc;
    c->backend_kind = p->backend;
    em_backend_config cfg = { p->backend, p->device, (int)c->n_threads, em_cpu_mask(),
                              (uint32_t)p->act_type };
    if ((rc = em_backend_create(&cfg, &c->alloc, c->err, &c->backend))) return rc;
    if (em_graph_init(&c->graph, &c->alloc, 64 * hp->n_layer + 64))
        return em_error(c->err, EMBER_ERR_NO_MEMORY, "context: no memory for the graph");
    if ((rc = make_stages(c, p, cfg))) return rc;
    bool keeps = em_backend_keeps_kv(c->backend);
    if (em_kv_init(&c->kv, &c->alloc, hp->n_layer, hp->kv_k_row, hp->kv_v_row,
                   (int32_t)c->n_ctx, (int32_t)c->n_seq, (int32_t)c->kv_blocks,
                   (int32_t)c->kv_block, c->kv_type,
                   keeps ? c->device_layers : (em_layer_range){ 0, 0 }))
        return em_error(c->err, EMBER_ERR_NO_MEMORY, "context: no memory for a KV cache of %u "
                        "positions x %u sequences (kv_blocks %u)", c->n_ctx, c->n_seq,
                        c->kv_blocks);
    if (keeps && (rc = em_backend_kv_attach(c->backend, &c->kv))) return rc;
    c->inputs = em_calloc(&c->alloc, (size_t)c->n_batch * 6 + 2 * c->n_seq, sizeof(int32_t));
    if (!c->inputs) return em_error(c->err, EMBER_ERR_NO_MEMORY, "context: no memory for inputs");
    c->row_out = input(c, 5);
    c->seq_first = c->inputs + (size_t)c->n_batch * 6;
    c->seq_next = c->seq_first + c->n_seq;
    if (hp->n_expert > 0 &&
        !(c->expert_counts = em_calloc(&c->alloc, (size_t)hp->n_layer * (size_t)hp->n_expert,
                                       sizeof *c->expert_counts)))
        return em_error(c->err, EMBER_ERR_NO_MEMORY, "context: no memory for expert counts");
    return plan_memory(c);
}

EMBER_API int ember_context_create(const ember_model *model, const ember_context_params *params,
                                   ember_context **out) {
    if (!out) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "context: out is NULL");
    *out = NULL;
    if (!model) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "context: model is NULL");
    if (model->vocab_only)
        return em_error(NULL, EMBER_ERR_BAD_STATE, "context: the model was loaded vocab_only");
    ember_context_params p;
    int rc = em_context_read_params(params, &p);
    if (rc) return rc;
    em_alloc a;
    em_alloc_init(&a, p.allocator.malloc_fn ? &p.allocator : &model->alloc.hooks);
    ember_context *c = em_calloc(&a, 1, sizeof *c);
    if (!c) return em_error(NULL, EMBER_ERR_NO_MEMORY, "context: no memory");
    c->alloc = a;
    c->model = model;
    if ((rc = resolve_params(c, &p)) || (rc = context_init(c, &p))) {
        context_destroy(c);
        return rc;
    }
    *out = c;
    return EMBER_OK;
}

EMBER_API void ember_context_free(ember_context **ctx) {
    if (!ctx || !*ctx) return;
    context_destroy(*ctx);
    *ctx = NULL;
}

EMBER_API const char *ember_context_last_error(const ember_context *c) {
    return c ? c->err : "context is NULL";
}

/* ---- evaluation ---- */

static int check_entry(ember_context *c, const ember_batch_entry *e, size_t i) {
    if (e->token < 0 || e->token >= c->model->hp.n_vocab)
        return em_error(c->err, EMBER_ERR_BAD_TOKEN, "eval: entry %zu: token %d is outside the "
                        "vocabulary (%d)", i, e->token, c->model->hp.n_vocab);
    if (e->seq_id < 0 || (uint32_t)e->seq_id >= c->n_seq)
        return em_error(c->err, EMBER_ERR_INVALID_ARGUMENT, "eval: entry %zu: seq_id %d is not "
                        "in 0..%u", i, e->seq_id, c->n_seq - 1);
    if (e->pos < 0)
        return em_error(c->err, EMBER_ERR_INVALID_ARGUMENT, "eval: entry %zu: pos %d is "
                        "negative", i, e->pos);
    if ((uint32_t)e->pos >= c->n_ctx)
        return em_error(c->err, EMBER_ERR_CONTEXT_FULL, "eval: entry %zu: pos %d is beyond the "
                        "context size %u", i, e->pos, c->n_ctx);
    int32_t s = e->seq_id;
    if (c->seq_first[s] < 0) {
        if (e->pos > c->kv.len[s])
            return em_error(c->err, EMBER_ERR_INVALID_ARGUMENT, "eval: entry %zu: pos %d skips "
                            "ahead of sequence %d, which holds %d positions", i, e->pos, s,
                            c->kv.len[s]);
        c->seq_first[s] = e->pos;
    } else if (e->pos != c->seq_next[s]) {
        return em_error(c->err, EMBER_ERR_INVALID_ARGUMENT, "eval: entry %zu: pos %d, expected "
                        "%d (positions of a sequence must be consecutive)", i, e->pos,
                        c->seq_next[s]);
    }
    c->seq_next[s] = e->pos + 1;
    return EMBER_OK;
}

static int validate_batch(ember_context *c, const ember_batch_entry *e, size_t n) {
    for (uint32_t s = 0; s < c->n_seq; s++) c->seq_first[s] = -1;
    for (size_t i = 0; i < n; i++) {
        int rc = check_entry(c, &e[i], i);
        if (rc) return rc;
    }
    /* all-or-nothing: the blocks every sequence's write takes (growth and
     * copies of shared blocks) against the free ones plus those the batch's
     * rollbacks hand back */
    int64_t need = 0, released = 0;
    for (uint32_t s = 0; s < c->n_seq; s++) {
        if (c->seq_first[s] < 0) continue;
        em_kv_need n = em_kv_plan(&c->kv, (int32_t)s, c->seq_first[s], c->seq_next[s]);
        need += n.alloc;
        released += n.released;
    }
    int64_t avail = em_kv_available(&c->kv) + released;
    if (need > avail)
        return em_error(c->err, EMBER_ERR_KV_FULL, "eval: the batch needs %lld KV blocks, %lld "
                        "are free", (long long)need, (long long)avail);
    return EMBER_OK;
}

static int64_t fill_inputs(ember_context *c, const ember_batch_entry *e, size_t n) {
    int32_t *tok = input(c, 0), *pos = input(c, 1), *seq = input(c, 2), *slot = input(c, 3);
    int32_t *out_rows = input(c, 4);
    int64_t n_out = 0;
    for (size_t i = 0; i < n; i++) {
        tok[i] = e[i].token;
        pos[i] = e[i].pos;
        seq[i] = e[i].seq_id;
        slot[i] = (int32_t)em_kv_slot(&c->kv, e[i].seq_id, e[i].pos);
        c->kv.tokens[slot[i]] = e[i].token; /* names the block for prefix reuse */
        c->row_out[i] = e[i].want_logits ? (int32_t)n_out : -1;
        if (e[i].want_logits) out_rows[n_out++] = (int32_t)i;
    }
    return n_out;
}

EMBER_API int ember_eval(ember_context *c, const ember_batch_entry *entries, size_t n) {
    if (!c) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "eval: context is NULL");
    em_clear_error(c->err);
    if (!entries || n == 0 || n > c->n_batch)
        return em_error(c->err, EMBER_ERR_INVALID_ARGUMENT, "eval: %zu entries; need 1..%u and "
                        "a non-NULL array", n, c->n_batch);
    int rc = validate_batch(c, entries, n);
    if (rc) return rc;
    c->n_last = 0;
    /* rollbacks first, so the blocks they free are there for the growth */
    for (uint32_t s = 0; s < c->n_seq; s++)
        if (c->seq_first[s] >= 0) em_kv_truncate(&c->kv, (int32_t)s, c->seq_next[s]);
    for (uint32_t s = 0; s < c->n_seq; s++)
        if (c->seq_first[s] >= 0) em_kv_prepare(&c->kv, (int32_t)s, c->seq_first[s], c->seq_next[s]);
    int64_t n_out = fill_inputs(c, entries, n);
    if ((rc = build_graph(c, (int64_t)n, n_out)) || (rc = split_graph(c)) ||
        (rc = place_stages(c)))
        return rc;
    for (int32_t i = 0; i < c->n_stage; i++)
        if ((rc = em_backend_graph_compute(c->stage[i].backend, c->stage[i].graph))) return rc;
    /* blocks the batch filled become findable by their prefix */
    for (uint32_t s = 0; s < c->n_seq; s++)
        if (c->seq_first[s] >= 0) em_kv_seal(&c->kv, (int32_t)s, c->seq_first[s], c->seq_next[s]);
    c->positions_written += n;
    c->n_last = n;
    return EMBER_OK;
}

EMBER_API const float *ember_get_logits(ember_context *c, size_t i) {
    if (!c) return NULL;
    if (i >= c->n_last || c->row_out[i] < 0) {
        em_error(c->err, EMBER_ERR_INVALID_ARGUMENT, "logits: entry %zu of the last batch (%zu "
                 "entries) did not ask for logits", i, c->n_last);
        return NULL;
    }
    return (const float *)c->logits->data + (size_t)c->row_out[i] * (size_t)c->logits->ne[0];
}

em_kv *em_context_kv(ember_context *c) { return &c->kv; }

/* For tests that look at the backend's counters. */
em_backend *em_context_backend(ember_context *c);
em_backend *em_context_backend(ember_context *c) { return c->backend; }

static int check_seq(ember_context *c, int32_t seq_id) {
    if (seq_id < 0 || (uint32_t)seq_id >= c->n_seq)
        return em_error(c->err, EMBER_ERR_INVALID_ARGUMENT, "seq: id %d is not in 0..%u", seq_id,
                        c->n_seq - 1);
    return EMBER_OK;
}

EMBER_API int32_t ember_seq_length(ember_context *c, int32_t seq_id) {
    if (!c) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "seq: context is NULL");
    int rc = check_seq(c, seq_id);
    return rc ? rc : c->kv.len[seq_id];
}

EMBER_API int ember_seq_clear(ember_context *c, int32_t seq_id) {
    if (!c) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "seq: context is NULL");
    if (seq_id < -1 || seq_id >= (int32_t)c->n_seq)
        return em_error(c->err, EMBER_ERR_INVALID_ARGUMENT, "seq: id %d is not -1 or in 0..%u",
                        seq_id, c->n_seq - 1);
    em_kv_clear(&c->kv, seq_id);
    c->n_last = 0;
    return EMBER_OK;
}

EMBER_API int ember_seq_fork(ember_context *c, int32_t src, int32_t dst) {
    if (!c) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "seq: context is NULL");
    int rc;
    if ((rc = check_seq(c, src)) || (rc = check_seq(c, dst))) return rc;
    em_kv_fork(&c->kv, src, dst);
    c->n_last = 0;
    return EMBER_OK;
}

EMBER_API int ember_seq_truncate(ember_context *c, int32_t seq_id, int32_t n_pos) {
    if (!c) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "seq: context is NULL");
    int rc = check_seq(c, seq_id);
    if (rc) return rc;
    if (n_pos < 0)
        return em_error(c->err, EMBER_ERR_INVALID_ARGUMENT, "seq: n_pos %d is negative", n_pos);
    em_kv_truncate(&c->kv, seq_id, n_pos);
    c->n_last = 0;
    return EMBER_OK;
}

EMBER_API int32_t ember_seq_reuse_prefix(ember_context *c, int32_t seq_id, const int32_t *tokens,
                                         size_t n_tokens) {
    if (!c) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "seq: context is NULL");
    int rc = check_seq(c, seq_id);
    if (rc) return rc;
    if (!tokens && n_tokens)
        return em_error(c->err, EMBER_ERR_INVALID_ARGUMENT, "seq: tokens is NULL");
    int32_t n = n_tokens > c->n_ctx ? (int32_t)c->n_ctx : (int32_t)n_tokens;
    c->n_last = 0;
    return em_kv_reuse(&c->kv, seq_id, tokens, n);
}

EMBER_API int ember_context_placement(const ember_context *c, ember_placement *out) {
    if (!c || !out)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "placement: NULL argument");
    size_t size = out->struct_size;
    if (size < offsetof(ember_placement, reserved) || size > 4096)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "placement: struct_size %zu is not a "
                        "size this library knows", size);
    ember_placement v = { .struct_size = size, .backend = c->backend_kind };
    const char *dev = c->backend_kind == EMBER_BACKEND_VULKAN ? em_vulkan_device_name(c->backend)
                                                                : "CPU";
    snprintf(v.device, sizeof v.device, "%s", dev);
    /* every op runs where its stage was placed: unsupported ones refuse
     * the context at creation, nothing falls back */
    for (int32_t i = 0; i < c->n_stage; i++) {
        const em_stage *st = &c->stage[i];
        v.n_ops += st->n_ops;
        if (st->backend == c->backend) v.n_ops_backend += st->n_ops;
        if (st->backend == c->cpu || c->backend_kind == EMBER_BACKEND_CPU) v.n_ops_cpu += st->n_ops;
    }
    v.first_device_layer = c->device_layers.first;
    v.n_device_layers = c->device_layers.end - c->device_layers.first;
    memcpy(out, &v, size < sizeof v ? size : sizeof v);
    return EMBER_OK;
}

/* The first released ember_kv_info ends at blocks_copied. */
#define KV_INFO_V1_SIZE (offsetof(ember_kv_info, blocks_copied) + sizeof(uint64_t))

EMBER_API int ember_kv_info_get(const ember_context *c, ember_kv_info *info) {
    if (!c || !info) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "kv info: NULL argument");
    size_t size = info->struct_size;
    if (size < KV_INFO_V1_SIZE || size > 4096)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "kv info: struct_size %zu is not a "
                        "size this library knows", size);
    const em_kv *kv = &c->kv;
    ember_kv_info v = { .struct_size = size, .block_positions = (uint32_t)c->kv.block };
    v.blocks_total = (uint32_t)kv->n_blocks;
    v.blocks_free = (uint32_t)em_kv_available(kv);
    v.blocks_cached = (uint32_t)kv->n_cached;
    for (int32_t b = 0; b < kv->n_blocks; b++) {
        v.blocks_used += kv->ref[b] > 0;
        v.blocks_shared += kv->ref[b] > 1;
    }
    v.bytes_per_block = em_kv_block_bytes(kv);
    for (int32_t s = 0; s < kv->n_seq; s++) v.positions_held += (uint64_t)kv->len[s];
    v.blocks_copied = kv->copies;
    v.positions_reused = kv->reused;
    v.positions_written = c->positions_written;
    v.blocks_evicted = kv->evicted;
    memcpy(info, &v, size < sizeof v ? size : sizeof v);
    return EMBER_OK;
}

EMBER_API uint64_t ember_context_kv_bytes_per_token(const ember_context *c) {
    if (!c) return 0;
    return (uint64_t)(c->kv.k_bytes + c->kv.v_bytes) * (uint64_t)c->kv.n_layer;
}

EMBER_API int ember_expert_counts(const ember_context *c, int32_t layer, uint64_t *counts,
                                  size_t n) {
    if (!c || !counts)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "expert counts: NULL argument");
    const em_hparams *hp = &c->model->hp;
    if (layer < 0 || layer >= hp->n_layer)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "expert counts: layer %d is not in "
                        "0..%d", layer, hp->n_layer - 1);
    size_t k = n < (size_t)hp->n_expert ? n : (size_t)hp->n_expert;
    for (size_t i = 0; i < k; i++) counts[i] = c->expert_counts[(size_t)layer * (size_t)hp->n_expert + i];
    for (size_t i = k; i < n; i++) counts[i] = 0;
    return EMBER_OK;
}

EMBER_API int ember_expert_counts_reset(ember_context *c) {
    if (!c) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "expert counts: context is NULL");
    if (c->expert_counts)
        memset(c->expert_counts, 0, (size_t)c->model->hp.n_layer * (size_t)c->model->hp.n_expert *
                                        sizeof *c->expert_counts);
    return EMBER_OK;
}
