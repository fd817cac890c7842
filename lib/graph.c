#include "graph.h"

#include "gguf.h"
#include "moe.h"

#include <string.h>

#define EM_ALIGN 64

const char *em_op_name(int op) {
    static const char *names[EM_OP_COUNT] = {
        "none", "get_rows", "rms_norm", "matmul", "add", "mul", "rope",
        "kv_store", "attn", "swiglu", "softmax", "scale", "slice", "concat", "head_matmul",
        "sigmoid", "moe_route", "moe_ffn",
    };
    return op >= 0 && op < EM_OP_COUNT ? names[op] : "?";
}

int em_graph_init(em_graph *g, const em_alloc *a, int32_t cap) {
    memset(g, 0, sizeof *g);
    /* one extra node serves as the scratch target on overflow */
    g->nodes = em_calloc(a, (size_t)cap + 1, sizeof *g->nodes);
    if (!g->nodes) return EMBER_ERR_NO_MEMORY;
    g->cap = cap;
    g->split_layer = g->split_node = -1;
    return EMBER_OK;
}

void em_graph_free(em_graph *g, const em_alloc *a) {
    em_free(a, g->nodes);
    memset(g, 0, sizeof *g);
}

void em_graph_reset(em_graph *g) {
    g->n_nodes = 0;
    g->overflow = false;
    g->split_node = -1;
}

int64_t em_nelements(const em_tensor *t) { return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; }

static size_t type_row_bytes(uint32_t type, int64_t n) {
    switch (type) {
    case EMBER_TYPE_F32: case EM_TYPE_I32: return (size_t)n * 4;
    case EMBER_TYPE_F16: case EMBER_TYPE_BF16: return (size_t)n * 2;
    default: {
        const em_type_info *ti = em_type_info_get(type);
        return ti ? (size_t)(n / ti->block) * ti->size : 0;
    }
    }
}

size_t em_nbytes(const em_tensor *t) { return t->nb[1] * (size_t)(t->ne[1] * t->ne[2] * t->ne[3]); }

static em_tensor *new_tensor(em_graph *g, int op, uint32_t type, int n_dims, const int64_t *ne) {
    em_tensor *t;
    if (g->n_nodes >= g->cap) {
        g->overflow = true;
        t = &g->nodes[g->cap];
    } else {
        t = &g->nodes[g->n_nodes++];
    }
    memset(t, 0, sizeof *t);
    t->op = op;
    t->type = type;
    for (int d = 0; d < 4; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->nb[0] = type == EMBER_TYPE_F32 || type == EM_TYPE_I32 ? 4 : 2;
    t->nb[1] = type_row_bytes(type, t->ne[0]);
    t->nb[2] = t->nb[1] * (size_t)t->ne[1];
    t->nb[3] = t->nb[2] * (size_t)t->ne[2];
    return t;
}

em_tensor *em_leaf(em_graph *g, uint32_t type, int n_dims, const int64_t *ne, const void *data) {
    em_tensor *t = new_tensor(g, EM_OP_NONE, type, n_dims, ne);
    t->data = (void *)data;
    return t;
}

em_tensor *em_input(em_graph *g, uint32_t type, int n_dims, const int64_t *ne, const void *data) {
    em_tensor *t = em_leaf(g, type, n_dims, ne, data);
    t->flags |= EM_TENSOR_INPUT;
    return t;
}

static em_tensor *unary(em_graph *g, int op, em_tensor *a, em_tensor *b) {
    em_tensor *t = new_tensor(g, op, EMBER_TYPE_F32, 4, a->ne);
    t->src[0] = a;
    t->src[1] = b;
    return t;
}

em_tensor *em_get_rows(em_graph *g, em_tensor *table, em_tensor *ids) {
    int64_t ne[2] = { table->ne[0], ids->ne[0] };
    em_tensor *t = new_tensor(g, EM_OP_GET_ROWS, EMBER_TYPE_F32, 2, ne);
    t->src[0] = table;
    t->src[1] = ids;
    return t;
}

em_tensor *em_rms_norm(em_graph *g, em_tensor *x, em_tensor *w, float eps) {
    em_tensor *t = unary(g, EM_OP_RMS_NORM, x, w);
    t->fp[0] = eps;
    return t;
}

em_tensor *em_matmul(em_graph *g, em_tensor *w, em_tensor *x) {
    int64_t ne[2] = { w->ne[1], x->ne[1] };
    if (w->ne[0] != x->ne[0]) g->overflow = true; /* shape bug: report it */
    em_tensor *t = new_tensor(g, EM_OP_MATMUL, EMBER_TYPE_F32, 2, ne);
    t->src[0] = w;
    t->src[1] = x;
    return t;
}

em_tensor *em_add(em_graph *g, em_tensor *a, em_tensor *b) { return unary(g, EM_OP_ADD, a, b); }
em_tensor *em_mul(em_graph *g, em_tensor *a, em_tensor *b) { return unary(g, EM_OP_MUL, a, b); }

em_tensor *em_rope(em_graph *g, em_tensor *x, em_tensor *pos, em_tensor *inv_freq, int n_rot,
                   int mode, float attn_factor) {
    em_tensor *t = unary(g, EM_OP_ROPE, x, pos);
    t->src[2] = inv_freq;
    t->ip[0] = n_rot;
    t->ip[1] = mode;
    t->fp[0] = attn_factor;
    return t;
}

em_tensor *em_kv_store(em_graph *g, em_tensor *k, em_tensor *v, em_tensor *slots, int layer) {
    int64_t ne[1] = { 1 };
    em_tensor *t = new_tensor(g, EM_OP_KV_STORE, EMBER_TYPE_F32, 1, ne);
    t->src[0] = k;
    t->src[1] = v;
    t->src[2] = slots;
    t->ip[0] = layer;
    return t;
}

em_tensor *em_attn(em_graph *g, em_tensor *q, em_tensor *pos, em_tensor *seq, em_tensor *dep,
                   int layer, int64_t dv, float scale) {
    int64_t ne[2] = { dv * q->ne[1], q->ne[2] };
    em_tensor *t = new_tensor(g, EM_OP_ATTN, EMBER_TYPE_F32, 2, ne);
    t->src[0] = q;
    t->src[1] = pos;
    t->src[2] = seq;
    t->src[3] = dep; /* the KV store it reads: an explicit edge, not just node order */
    t->ip[0] = layer;
    t->fp[0] = scale;
    return t;
}

em_tensor *em_swiglu(em_graph *g, em_tensor *gate, em_tensor *up) {
    return unary(g, EM_OP_SWIGLU, gate, up);
}

em_tensor *em_softmax(em_graph *g, em_tensor *x) { return unary(g, EM_OP_SOFTMAX, x, NULL); }

em_tensor *em_scale(em_graph *g, em_tensor *x, float s) {
    em_tensor *t = unary(g, EM_OP_SCALE, x, NULL);
    t->fp[0] = s;
    return t;
}

em_tensor *em_slice(em_graph *g, em_tensor *x, int64_t offset, int64_t width) {
    int64_t ne[4] = { width, x->ne[1], x->ne[2], x->ne[3] };
    if (offset < 0 || offset + width > x->ne[0]) g->overflow = true;
    em_tensor *t = new_tensor(g, EM_OP_SLICE, EMBER_TYPE_F32, 4, ne);
    t->src[0] = x;
    t->ip[0] = (int32_t)offset;
    t->ip[1] = (int32_t)width;
    return t;
}

em_tensor *em_concat(em_graph *g, em_tensor *a, em_tensor *b) {
    int64_t ne[4] = { a->ne[0] + b->ne[0], a->ne[1], a->ne[2], a->ne[3] };
    if (em_nelements(a) / a->ne[0] != em_nelements(b) / b->ne[0]) g->overflow = true;
    em_tensor *t = new_tensor(g, EM_OP_CONCAT, EMBER_TYPE_F32, 4, ne);
    t->src[0] = a;
    t->src[1] = b;
    return t;
}

em_tensor *em_head_matmul(em_graph *g, em_tensor *w, em_tensor *x) {
    int64_t ne[3] = { w->ne[1], x->ne[1], x->ne[2] };
    if (w->ne[0] != x->ne[0] || w->ne[2] != x->ne[1]) g->overflow = true;
    em_tensor *t = new_tensor(g, EM_OP_HEAD_MATMUL, EMBER_TYPE_F32, 3, ne);
    t->src[0] = w;
    t->src[1] = x;
    return t;
}

em_tensor *em_sigmoid(em_graph *g, em_tensor *x) { return unary(g, EM_OP_SIGMOID, x, NULL); }

em_tensor *em_moe_route(em_graph *g, em_tensor *logits, em_tensor *bias,
                        const em_route_params *p) {
    int64_t ne[2] = { 2 * (int64_t)p->n_used, logits->ne[1] };
    em_tensor *t = new_tensor(g, EM_OP_MOE_ROUTE, EMBER_TYPE_F32, 2, ne);
    t->src[0] = logits;
    t->src[1] = bias;
    t->ip[0] = p->n_used;
    t->ip[1] = p->gating;
    t->ip[2] = p->n_group;
    t->ip[3] = p->n_group_used;
    t->ip[4] = p->norm;
    t->fp[0] = p->scale;
    t->keep = 1; /* a device backend copies it back for the routing statistics */
    return t;
}

em_tensor *em_moe_ffn(em_graph *g, em_tensor *x, em_tensor *route, em_tensor *gate,
                      em_tensor *up, em_tensor *down, int n_used, int layer) {
    em_tensor *t = new_tensor(g, EM_OP_MOE_FFN, EMBER_TYPE_F32, 2, x->ne);
    t->src[0] = x;
    t->src[1] = route;
    t->src[2] = gate;
    t->src[3] = up;
    t->src[4] = down;
    t->ip[0] = n_used;
    t->ip[1] = layer;
    return t;
}

em_tensor *em_leaf_strided(em_graph *g, uint32_t type, const int64_t *ne, const size_t *nb,
                           const void *data) {
    em_tensor *t = new_tensor(g, EM_OP_NONE, type, 4, ne);
    for (int d = 0; d < 4; d++) t->nb[d] = nb[d];
    t->data = (void *)data;
    return t;
}

em_tensor *em_reshape(em_graph *g, em_tensor *x, int n_dims, const int64_t *ne) {
    em_tensor *t = new_tensor(g, EM_OP_NONE, x->type, n_dims, ne);
    if (em_nelements(t) != em_nelements(x)) g->overflow = true;
    t->src[0] = x; /* a view: data resolved from src0 after planning */
    t->data = x->data;
    return t;
}

int em_graph_check(const em_graph *g, char *err) {
    if (g->overflow)
        return em_error(err, EMBER_ERR_INTERNAL, "graph: builder exceeded %d nodes or made a "
                        "shape mismatch", g->cap);
    return EMBER_OK;
}

/* ---- planning ---- */

/* The root a view points into. */
static const em_tensor *view_root(const em_tensor *t) {
    while (em_is_view(t)) t = t->src[0];
    return t;
}

typedef struct free_block { size_t off, size; } free_block;

static size_t take_block(free_block *fb, int32_t *n_free, size_t size, size_t *top) {
    int32_t best = -1;
    for (int32_t i = 0; i < *n_free; i++)
        if (fb[i].size >= size && (best < 0 || fb[i].size < fb[best].size)) best = i;
    if (best < 0) {
        size_t off = *top;
        *top += size;
        return off;
    }
    size_t off = fb[best].off;
    fb[best].off += size;
    fb[best].size -= size;
    if (fb[best].size == 0) fb[best] = fb[--*n_free];
    return off;
}

static void give_block(free_block *fb, int32_t *n_free, size_t off, size_t size) {
    /* merge with neighbours to limit fragmentation */
    for (int32_t i = 0; i < *n_free; i++) {
        if (fb[i].off + fb[i].size == off) {
            off = fb[i].off;
            size += fb[i].size;
            fb[i--] = fb[--*n_free];
        } else if (off + size == fb[i].off) {
            size += fb[i].size;
            fb[i--] = fb[--*n_free];
        }
    }
    fb[*n_free].off = off;
    fb[*n_free].size = size;
    (*n_free)++;
}

/* What node t reads, for liveness: its sources and, where t is an add or
 * a SwiGLU, the sources of those of its sources that are products, and
 * where t is a KV store or attention, the input of a RoPE it reads, and
 * where t is a product of an RMS norm, the norm's input and weight. A
 * backend may fold a product into the op that consumes it, a RoPE into
 * the KV op that reads its output, or a norm into the products that read
 * it (the Vulkan backend does all three:
 * backends/vulkan/ops.c), and that op then reads the folded op's inputs
 * while writing its own output, so they must outlive it. Returns the
 * count written to r (at most 3 * EM_MAX_SRC). */
static int reads_of(const em_tensor *t, const em_tensor **r) {
    int n = 0;
    bool folds = t->op == EM_OP_ADD || t->op == EM_OP_SWIGLU;
    bool ropes = t->op == EM_OP_KV_STORE || t->op == EM_OP_ATTN;
    for (int s = 0; s < EM_MAX_SRC; s++) {
        const em_tensor *src = t->src[s];
        if (!src) continue;
        r[n++] = src;
        if (folds && src->op == EM_OP_MATMUL)
            for (int k = 0; k < 2; k++) r[n++] = src->src[k];
        if (ropes && s == 0 && view_root(src)->op == EM_OP_ROPE) r[n++] = view_root(src)->src[0];
        if (t->op == EM_OP_MATMUL && s == 1 && src->op == EM_OP_RMS_NORM)
            for (int k = 0; k < 2; k++)
                if (src->src[k]) r[n++] = src->src[k];
    }
    return n;
}

int em_plan_make(em_plan *p, const em_graph *g, const em_alloc *a) {
    int32_t n = g->n_nodes;
    memset(p, 0, sizeof *p);
    p->offset = em_calloc(a, (size_t)n, sizeof *p->offset);
    p->size = em_calloc(a, (size_t)n, sizeof *p->size);
    int32_t *last = em_calloc(a, (size_t)n, sizeof *last);
    free_block *fb = em_calloc(a, (size_t)n + 1, sizeof *fb);
    if (!p->offset || !p->size || !last || !fb) {
        em_free(a, last);
        em_free(a, fb);
        em_plan_free(p, a);
        return EMBER_ERR_NO_MEMORY;
    }
    p->n_nodes = n;
    for (int32_t i = 0; i < n; i++) last[i] = -1;
    const em_tensor *rd[3 * EM_MAX_SRC];
    for (int32_t i = 0; i < n; i++) {
        const em_tensor *t = &g->nodes[i];
        int n_rd = reads_of(t, rd);
        for (int s = 0; s < n_rd; s++) last[view_root(rd[s]) - g->nodes] = i;
        if (em_is_view(t)) last[view_root(t) - g->nodes] = i;
    }
    int32_t n_free = 0;
    size_t top = 0;
    for (int32_t i = 0; i < n; i++) {
        const em_tensor *t = &g->nodes[i];
        p->offset[i] = SIZE_MAX;
        if (t->op == EM_OP_NONE) continue;
        p->size[i] = em_align_up(em_nbytes(t), EM_ALIGN);
        p->offset[i] = take_block(fb, &n_free, p->size[i], &top);
        /* release what this node reads last */
        int n_rd = reads_of(t, rd);
        for (int s = 0; s < n_rd; s++) {
            const em_tensor *r = view_root(rd[s]);
            int32_t ri = (int32_t)(r - g->nodes);
            if (r->op != EM_OP_NONE && !r->keep && last[ri] == i) {
                give_block(fb, &n_free, p->offset[ri], p->size[ri]);
                last[ri] = -2; /* released */
            }
        }
    }
    p->arena_size = top;
    em_free(a, last);
    em_free(a, fb);
    return EMBER_OK;
}

void em_plan_free(em_plan *p, const em_alloc *a) {
    em_free(a, p->offset);
    em_free(a, p->size);
    memset(p, 0, sizeof *p);
}

int em_plan_apply(const em_plan *p, em_graph *g, void *arena, char *err) {
    if (g->n_nodes != p->n_nodes)
        return em_error(err, EMBER_ERR_INTERNAL, "graph: %d nodes, plan made for %d",
                        g->n_nodes, p->n_nodes);
    for (int32_t i = 0; i < g->n_nodes; i++) {
        em_tensor *t = &g->nodes[i];
        if (t->op == EM_OP_NONE) {
            if (em_is_view(t)) t->data = t->src[0]->data;
            continue;
        }
        if (em_nbytes(t) > p->size[i])
            return em_error(err, EMBER_ERR_INTERNAL, "graph: node %d (%s) needs %zu bytes, "
                            "plan has %zu", i, em_op_name(t->op), em_nbytes(t), p->size[i]);
        t->data = (char *)arena + p->offset[i];
    }
    return EMBER_OK;
}
