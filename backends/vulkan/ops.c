/* Graph nodes as dispatches of the shaders in shaders/: operands located
 * (arena or leaves buffer), push constants filled, workgroups counted.
 * Row strides are passed in floats; rows past 32768 fold into the next
 * grid dimension. */
#include <string.h>

#include "../../lib/rope.h"
#include "ops.h"

/* Leaves are placed at this alignment (a multiple of every device's
 * minStorageBufferOffsetAlignment in practice; the binding rounds down
 * anyway). */
#define LEAF_ALIGN 256

static bool in_arena(const em_vk_graph *vg, const em_tensor *t) {
    const char *p = t->data;
    return p >= vg->shadow && p < vg->shadow + vg->arena_size;
}

static int64_t rows_of(const em_tensor *t) { return t->ne[1] * t->ne[2] * t->ne[3]; }

static bool weight_type_ok(uint32_t ty) {
    return ty == EMBER_TYPE_F32 || ty == EMBER_TYPE_F16 || ty == EMBER_TYPE_Q8_0 ||
           ty == EMBER_TYPE_Q4_0;
}

bool em_vk_op_supported(const em_tensor *t) {
    switch (t->op) {
    case EM_OP_MATMUL:
    case EM_OP_GET_ROWS: {
        uint32_t ty = t->src[0]->type;
        return weight_type_ok(ty) && (ty == EMBER_TYPE_F32 || ty == EMBER_TYPE_F16 ||
                                      t->src[0]->ne[0] % 32 == 0);
    }
    case EM_OP_RMS_NORM: case EM_OP_ADD: case EM_OP_MUL: case EM_OP_SWIGLU:
    case EM_OP_SCALE: case EM_OP_SIGMOID: case EM_OP_SOFTMAX: case EM_OP_ROPE:
        return t->src[0]->type == EMBER_TYPE_F32;
    default:
        return false;
    }
}

/* The leaf a tensor reads: views of leaves are not made by the builders,
 * so a tensor outside the arena is itself a leaf node. */
static em_vk_ref ref_of(const em_vk_graph *vg, const em_graph *g, const em_tensor *t) {
    if (in_arena(vg, t)) return (em_vk_ref){ vg->arena, (size_t)((const char *)t->data - vg->shadow) };
    return (em_vk_ref){ vg->leaves, vg->leaf[t - g->nodes].off };
}

static size_t align_up(size_t n) { return (n + LEAF_ALIGN - 1) / LEAF_ALIGN * LEAF_ALIGN; }

/* floats of RoPE node t's cos/sin table: [T][n_rot] */
static size_t rope_table_bytes(const em_tensor *t) {
    return (size_t)t->src[0]->ne[2] * (size_t)t->ip[0] * sizeof(float);
}

static void rope_table(const em_tensor *t, float *cs) {
    const int32_t *pos = t->src[1]->data;
    int n_rot = t->ip[0], half = n_rot / 2;
    for (int64_t tok = 0; tok < t->src[0]->ne[2]; tok++)
        em_rope_cos_sin(pos[tok], t->src[2]->data, half, t->fp[0], cs + tok * n_rot,
                        cs + tok * n_rot + half);
}

/* Lays out every leaf (deduplicated by address and size) and RoPE table:
 * returns the total and fills vg->leaf (rope tables at the RoPE node's
 * own index). */
static size_t layout_leaves(em_vk_graph *vg, const em_graph *g) {
    size_t total = 0;
    memset(vg->leaf, 0, (size_t)g->n_nodes * sizeof *vg->leaf);
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const em_tensor *t = &g->nodes[i];
        if (t->op == EM_OP_ROPE) {
            vg->leaf[i] = (em_vk_leaf){ total, true };
            total += align_up(rope_table_bytes(t));
            continue;
        }
        if (t->op != EM_OP_NONE || in_arena(vg, t) || !t->data) continue;
        int32_t same = -1;
        for (int32_t j = 0; j < i && same < 0; j++) {
            const em_tensor *u = &g->nodes[j];
            if (u->op == EM_OP_NONE && vg->leaf[j].placed && u->data == t->data &&
                em_nbytes(u) == em_nbytes(t))
                same = j;
        }
        if (same >= 0) {
            vg->leaf[i] = vg->leaf[same];
            continue;
        }
        vg->leaf[i] = (em_vk_leaf){ total, true };
        total += align_up(em_nbytes(t));
    }
    return total;
}

int em_vk_upload_leaves(em_vk_graph *vg, const em_graph *g) {
    size_t total = layout_leaves(vg, g);
    if (total == 0) return EMBER_OK;
    if (vg->leaves->size < total) {
        em_vk_buf_destroy(vg->vk, vg->leaves);
        int rc = em_vk_buf_create(vg->vk, total, false, vg->leaves);
        if (rc) return rc;
    }
    char *host = em_malloc(vg->alloc, total);
    if (!host) return em_error(vg->vk->err, EMBER_ERR_NO_MEMORY, "vulkan: no memory to stage leaves");
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const em_tensor *t = &g->nodes[i];
        if (t->op == EM_OP_ROPE) rope_table(t, (float *)(host + vg->leaf[i].off));
        else if (t->op == EM_OP_NONE && vg->leaf[i].placed)
            memcpy(host + vg->leaf[i].off, t->data, em_nbytes(t));
    }
    int rc = em_vk_upload(vg->vk, vg->leaves, 0, host, total);
    em_free(vg->alloc, host);
    return rc;
}

static uint32_t floats(size_t bytes) { return (uint32_t)(bytes / sizeof(float)); }

/* rows split into (x or y, z) below the 32768 the shaders fold at */
static void fold(int64_t rows, uint32_t *lo, uint32_t *hi) {
    *lo = rows < 32768 ? (uint32_t)rows : 32768u;
    *hi = (uint32_t)((rows + 32767) / 32768);
}

static int run_node(em_vk_graph *vg, const em_graph *g, const em_tensor *t) {
    em_vk *vk = vg->vk;
    em_vk_ref r[EM_VK_BINDINGS] = { { 0 } };
    uint32_t push[EM_VK_PUSH_BYTES / 4] = { 0 };
    const em_tensor *a = t->src[0], *b = t->src[1];
    r[0] = ref_of(vg, g, a);
    if (b && t->op != EM_OP_ROPE) r[1] = ref_of(vg, g, b);
    r[3] = ref_of(vg, g, t);
    uint32_t *q = push + 4, lo, hi;
    int64_t n = t->ne[0], rows = rows_of(t);
    if (em_nbytes(a) > vk->max_range || em_nbytes(t) > vk->max_range)
        return em_error(vk->err, EMBER_ERR_UNSUPPORTED, "vulkan: %s: a tensor exceeds the device's "
                        "%zu-byte storage buffer range (splitting is not done yet)",
                        em_op_name(t->op), vk->max_range);
    switch (t->op) {
    case EM_OP_MATMUL: {
        static const em_vk_pipe pipe_of[] = { [EMBER_TYPE_F32] = EM_VK_MATMUL_F32,
                                              [EMBER_TYPE_F16] = EM_VK_MATMUL_F16,
                                              [EMBER_TYPE_Q4_0] = EM_VK_MATMUL_Q4_0,
                                              [EMBER_TYPE_Q8_0] = EM_VK_MATMUL_Q8_0 };
        int64_t N = a->ne[1];
        q[0] = (uint32_t)a->ne[0], q[1] = (uint32_t)N, q[2] = (uint32_t)a->nb[1];
        q[3] = floats(b->nb[1]), q[4] = floats(t->nb[1]);
        fold(N, &lo, &hi);
        return em_vk_dispatch(vk, pipe_of[a->type], r, push, 9 * 4, lo, (uint32_t)b->ne[1], hi);
    }
    case EM_OP_GET_ROWS: {
        static const em_vk_pipe pipe_of[] = { [EMBER_TYPE_F32] = EM_VK_GET_ROWS_F32,
                                              [EMBER_TYPE_F16] = EM_VK_GET_ROWS_F16,
                                              [EMBER_TYPE_Q4_0] = EM_VK_GET_ROWS_Q4_0,
                                              [EMBER_TYPE_Q8_0] = EM_VK_GET_ROWS_Q8_0 };
        q[0] = (uint32_t)a->ne[0], q[1] = (uint32_t)a->nb[1], q[2] = floats(t->nb[1]);
        return em_vk_dispatch(vk, pipe_of[a->type], r, push, 7 * 4, (uint32_t)t->ne[1], 1, 1);
    }
    case EM_OP_RMS_NORM: {
        float eps = t->fp[0];
        q[0] = (uint32_t)n, q[1] = floats(a->nb[1]), q[2] = floats(t->nb[1]), q[3] = b != NULL;
        memcpy(&q[4], &eps, 4);
        fold(rows, &lo, &hi);
        return em_vk_dispatch(vk, EM_VK_RMS_NORM, r, push, 9 * 4, lo, hi, 1);
    }
    case EM_OP_ADD:
    case EM_OP_MUL: {
        uint32_t mode = b->ne[0] == 1 && n > 1 ? 2u : rows_of(b) == 1 ? 1u : 0u;
        q[0] = (uint32_t)n, q[1] = floats(a->nb[1]), q[2] = floats(b->nb[1]);
        q[3] = floats(t->nb[1]), q[4] = mode;
        fold(rows, &lo, &hi);
        return em_vk_dispatch(vk, t->op == EM_OP_ADD ? EM_VK_ADD : EM_VK_MUL, r, push, 9 * 4,
                              (uint32_t)((n + 255) / 256), lo, hi);
    }
    case EM_OP_SWIGLU:
    case EM_OP_SCALE:
    case EM_OP_SIGMOID: {
        em_vk_pipe p = t->op == EM_OP_SWIGLU ? EM_VK_SWIGLU : t->op == EM_OP_SCALE ? EM_VK_SCALE
                                                                                  : EM_VK_SIGMOID;
        q[0] = (uint32_t)n, q[1] = floats(a->nb[1]), q[2] = b ? floats(b->nb[1]) : 0;
        q[3] = floats(t->nb[1]);
        memcpy(&q[4], &t->fp[0], 4);
        fold(rows, &lo, &hi);
        return em_vk_dispatch(vk, p, r, push, 9 * 4, (uint32_t)((n + 255) / 256), lo, hi);
    }
    case EM_OP_SOFTMAX:
        q[0] = (uint32_t)n, q[1] = floats(a->nb[1]), q[2] = floats(t->nb[1]);
        fold(rows, &lo, &hi);
        return em_vk_dispatch(vk, EM_VK_SOFTMAX, r, push, 7 * 4, lo, hi, 1);
    case EM_OP_ROPE:
        r[1] = (em_vk_ref){ vg->leaves, vg->leaf[t - g->nodes].off };
        q[0] = (uint32_t)a->ne[0], q[1] = (uint32_t)t->ip[0], q[2] = (uint32_t)t->ip[1];
        q[3] = floats(a->nb[1]), q[4] = floats(a->nb[2]), q[5] = floats(t->nb[1]);
        q[6] = floats(t->nb[2]);
        return em_vk_dispatch(vk, EM_VK_ROPE, r, push, 11 * 4, (uint32_t)a->ne[1],
                              (uint32_t)a->ne[2], 1);
    default:
        return em_error(vk->err, EMBER_ERR_UNSUPPORTED, "vulkan: op %s", em_op_name(t->op));
    }
}

int em_vk_run(em_vk_graph *vg, const em_graph *g) {
    int rc = em_vk_begin(vg->vk, (uint32_t)g->n_nodes);
    if (rc) return rc;
    for (int32_t i = 0; i < g->n_nodes && !rc; i++)
        if (g->nodes[i].op != EM_OP_NONE) rc = run_node(vg, g, &g->nodes[i]);
    int rc2 = em_vk_submit(vg->vk); /* always ends the recording */
    return rc ? rc : rc2;
}
