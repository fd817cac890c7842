/* The compute graph: tensors created in topological order by an
 * architecture's builder, then planned (offsets in one arena) and run by a
 * backend. A graph holds no allocation of its own after creation: the node
 * pool is sized once per context, and the plan made at context creation for
 * the largest batch is reused for every evaluation (all sizes shrink with
 * the batch, the topology does not change). */
#ifndef EMBER_GRAPH_H
#define EMBER_GRAPH_H

#include "util.h"

#define EM_MAX_SRC 5

typedef enum em_op {
    EM_OP_NONE = 0,  /* leaf: a weight or an input; data set by the builder  */
    EM_OP_GET_ROWS,  /* src0 table [C,R] (any type), src1 ids i32 [T] -> [C,T] f32 */
    EM_OP_RMS_NORM,  /* src0 x [C,T], src1 weight [C] (optional); f[0] = eps */
    EM_OP_MATMUL,    /* src0 W [K,N] (any type), src1 x [K,T] f32 -> [N,T]   */
    EM_OP_ADD,       /* src0 + src1, same shape (src1 may be one row: broadcast) */
    EM_OP_MUL,       /* src0 * src1, same broadcast rule; also src1 [1,rows]: a
                        scalar per row                                        */
    EM_OP_ROPE,      /* src0 x [D,H,T], src1 pos i32 [T], src2 inverse frequencies
                        [n_rot/2] (lib/rope.c); i[0] n_rot, i[1] mode (0 adjacent
                        pairs, 2 halves); f[0] multiplies cos and sin       */
    EM_OP_KV_STORE,  /* src0 K [Dk*Hkv,T], src1 V, src2 slots i32 [T]; i[0] layer;
                        writes into the KV cache, output is a 1-element token */
    EM_OP_ATTN,      /* src0 Q [D,H,T], src1 pos i32 [T], src2 seq i32 [T], src3 the
                        kv_store node it depends on; i[0] layer,
                        f[0] scale; causal attention over the paged KV cache,
                        GQA by H / Hkv; -> [Dv*H, T]                        */
    EM_OP_SWIGLU,    /* silu(src0) * src1                                  */
    EM_OP_SOFTMAX,   /* rows of src0                                       */
    EM_OP_SCALE,     /* src0 * f[0]                                        */
    EM_OP_SLICE,     /* src0 [C,...] -> columns [i[0], i[0]+i[1]) of each row, contiguous */
    EM_OP_CONCAT,    /* rows of src0 then rows of src1 (same row count)     */
    EM_OP_HEAD_MATMUL, /* src0 W [K,N,H] (one matrix per head, strides kept),
                        src1 x [K,H,T] -> [N,H,T]                            */
    EM_OP_SIGMOID,   /* 1 / (1 + exp(-src0))                                */
    EM_OP_MOE_ROUTE, /* src0 router logits [n_expert,T], src1 selection bias (opt.);
                        i[0] n_used, i[1] gating, i[2] groups, i[3] groups used,
                        i[4] normalise; f[0] scale -> [2*n_used, T]: the weights,
                        then the expert ids (as floats, exact below 2^24)     */
    EM_OP_MOE_FFN,   /* src0 x [E,T], src1 route, src2/3/4 gate/up/down experts
                        [E,F,n]/[E,F,n]/[F,E,n]; i[0] n_used, i[1] layer:
                        sum over chosen experts of weight * down(silu(gate x) * up x),
                        tokens grouped by expert so each expert is read once  */
    EM_OP_COUNT
} em_op;

const char *em_op_name(int op);

typedef struct em_tensor {
    int32_t op;
    uint32_t type;          /* ember_type; intermediates are f32, ids i32 (type 26) */
    int64_t ne[4];
    size_t nb[4];           /* byte strides */
    void *data;
    struct em_tensor *src[EM_MAX_SRC];
    int32_t ip[8];
    float fp[4];
    int32_t keep;           /* output: never reused by the planner          */
    uint32_t flags;         /* EM_TENSOR_INPUT                              */
    const char *name;
} em_tensor;

#define EM_TYPE_I32 26

/* A leaf whose bytes change between evaluations (tokens, positions). Every
 * other leaf (weights, tables of the model) must keep its address and
 * bytes for the life of the backend that ran it: a GPU backend copies such
 * leaves to the device once and reuses the copy. */
#define EM_TENSOR_INPUT 1u

typedef struct em_graph {
    em_tensor *nodes;
    int32_t n_nodes;
    int32_t cap;
    void *kv;       /* the KV cache the KV ops act on (struct em_kv) */
    uint64_t *expert_counts; /* [layer][n_expert] routing statistics, or NULL */
    int32_t stats_n_expert;
    bool overflow;  /* a builder asked for more nodes than cap       */
    /* Layer split (lib/split.h): the context sets split_layer (-1: none);
     * the builder's em_graph_layer calls record in split_node the first
     * node of that layer (-1 until then). */
    int32_t split_layer, split_node;
} em_graph;

int em_graph_init(em_graph *g, const em_alloc *a, int32_t cap);
void em_graph_free(em_graph *g, const em_alloc *a);
void em_graph_reset(em_graph *g);

/* Builders. They never fail: on overflow they return a scratch tensor and
 * set g->overflow, which em_graph_check() reports. */
em_tensor *em_leaf(em_graph *g, uint32_t type, int n_dims, const int64_t *ne, const void *data);
/* A leaf flagged EM_TENSOR_INPUT. */
em_tensor *em_input(em_graph *g, uint32_t type, int n_dims, const int64_t *ne, const void *data);
em_tensor *em_get_rows(em_graph *g, em_tensor *table, em_tensor *ids);
em_tensor *em_rms_norm(em_graph *g, em_tensor *x, em_tensor *w, float eps);
em_tensor *em_matmul(em_graph *g, em_tensor *w, em_tensor *x);
em_tensor *em_add(em_graph *g, em_tensor *a, em_tensor *b);
em_tensor *em_mul(em_graph *g, em_tensor *a, em_tensor *b);
em_tensor *em_rope(em_graph *g, em_tensor *x, em_tensor *pos, em_tensor *inv_freq, int n_rot,
                   int mode, float attn_factor);
em_tensor *em_kv_store(em_graph *g, em_tensor *k, em_tensor *v, em_tensor *slots, int layer);
em_tensor *em_attn(em_graph *g, em_tensor *q, em_tensor *pos, em_tensor *seq, em_tensor *dep,
                   int layer, int64_t dv, float scale);
em_tensor *em_swiglu(em_graph *g, em_tensor *gate, em_tensor *up);
em_tensor *em_softmax(em_graph *g, em_tensor *x);
em_tensor *em_scale(em_graph *g, em_tensor *x, float s);
em_tensor *em_slice(em_graph *g, em_tensor *x, int64_t offset, int64_t width);
em_tensor *em_concat(em_graph *g, em_tensor *a, em_tensor *b);
em_tensor *em_head_matmul(em_graph *g, em_tensor *w, em_tensor *x);
em_tensor *em_sigmoid(em_graph *g, em_tensor *x);
struct em_route_params;
em_tensor *em_moe_route(em_graph *g, em_tensor *logits, em_tensor *bias,
                        const struct em_route_params *p);
em_tensor *em_moe_ffn(em_graph *g, em_tensor *x, em_tensor *route, em_tensor *gate,
                      em_tensor *up, em_tensor *down, int n_used, int layer);
/* A leaf with explicit shape and byte strides (a weight view). */
em_tensor *em_leaf_strided(em_graph *g, uint32_t type, const int64_t *ne, const size_t *nb,
                           const void *data);
/* Reinterprets a contiguous tensor with a new shape (no copy, no node cost
 * at run time). */
em_tensor *em_reshape(em_graph *g, em_tensor *x, int n_dims, const int64_t *ne);

/* A builder calls this as it starts layer il's nodes, so a context can
 * split the graph between backends at a layer boundary. */
static inline void em_graph_layer(em_graph *g, int il) {
    if (il == g->split_layer) g->split_node = g->n_nodes;
}

int em_graph_check(const em_graph *g, char *err);

int64_t em_nelements(const em_tensor *t);
size_t em_nbytes(const em_tensor *t);
static inline bool em_is_view(const em_tensor *t) { return t->op == EM_OP_NONE && t->src[0]; }

/* Memory plan: offsets of every non-leaf node in one arena, reusing memory
 * of tensors whose last reader has run. */
typedef struct em_plan {
    int32_t n_nodes;
    size_t *offset; /* per node; SIZE_MAX for leaves and views */
    size_t *size;
    size_t arena_size;
} em_plan;

int em_plan_make(em_plan *p, const em_graph *g, const em_alloc *a);
void em_plan_free(em_plan *p, const em_alloc *a);
/* Points every planned node of g into `arena` using plan p (made for a
 * graph of the same topology and sizes at least as large). */
int em_plan_apply(const em_plan *p, em_graph *g, void *arena, char *err);

#endif
