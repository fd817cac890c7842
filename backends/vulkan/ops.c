/* Graph nodes as dispatches of the shaders in shaders/: operands located
 * (arena, io or weight slabs), push constants filled, workgroups counted.
 * Row strides are passed in floats; rows past 32768 fold into the next
 * grid dimension. */
#include <string.h>

#include "../../lib/rope.h"
#include "ops.h"
#include "../../lib/moe.h"

/* Per-run data is placed at this alignment in io. */
#define IO_ALIGN 64

bool em_vk_in_arena(const em_vk_graph *vg, const em_tensor *t) {
    const char *p = t->data;
    return p >= vg->shadow && p < vg->shadow + vg->arena_size;
}

static int64_t rows_of(const em_tensor *t) { return t->ne[1] * t->ne[2] * t->ne[3]; }

static bool weight_type_ok(uint32_t ty) { return em_vk_wtype_index(ty) >= 0; }

/* The attention shader keeps a query head and each invocation's share of
 * the output columns in fixed arrays (shaders/attn.comp MAXD). */
#define ATTN_MAX_D 1024

/* Elements per 16-byte load of mul_mv.comp's rows of type ty (whole
 * blocks for the block types). */
static int64_t load_step(uint32_t ty) {
    return ty == EMBER_TYPE_F32 ? 4 : ty == EMBER_TYPE_F16 ? 8 : 32;
}

/* MoE ops (moe_route.comp's array bounds; mul_mv.comp's ID pass: 16-byte
 * loads of whole-block rows, gate and up of one type as its SwiGLU fold
 * reads both with one scale offset; tensors and the per-pair scratch
 * within one binding's range, which n_batch sets for the scratch). */
static bool moe_supported(const em_vk *vk, const em_tensor *t) {
    const em_tensor *x = t->src[0];
    if (t->op == EM_OP_MOE_ROUTE)
        return x->type == EMBER_TYPE_F32 && x->ne[0] <= 512 && t->ip[0] <= 32 && t->ip[2] <= 64 &&
               (!t->src[1] || t->src[1]->type == EMBER_TYPE_F32);
    const em_tensor *gate = t->src[2], *up = t->src[3], *down = t->src[4];
    size_t pairs = (size_t)x->ne[1] * (size_t)t->ip[0]; /* the scratch's rows, bound whole */
    return vk->use_subgroups && x->type == EMBER_TYPE_F32 && t->ip[0] <= 32 &&
           pairs * (size_t)gate->ne[1] * sizeof(float) <= vk->max_range &&
           pairs * (size_t)t->ne[0] * sizeof(float) <= vk->max_range &&
           gate->type == up->type && weight_type_ok(gate->type) && weight_type_ok(down->type) &&
           gate->ne[0] % load_step(gate->type) == 0 && down->ne[0] % load_step(down->type) == 0 &&
           gate->ne[1] % 4 == 0 && x->nb[1] % 16 == 0 &&
           em_nbytes(gate) <= vk->max_range && em_nbytes(down) <= vk->max_range;
}

/* MLA's per-head products (mul_mv.comp's ID pass by head): whole 16-byte
 * loads per row, heads a whole number of rows apart, x's rows contiguous
 * per token. */
static bool head_matmul_supported(const em_vk *vk, const em_tensor *t) {
    const em_tensor *w = t->src[0], *x = t->src[1];
    return vk->use_subgroups && weight_type_ok(w->type) && x->type == EMBER_TYPE_F32 &&
           w->ne[0] % load_step(w->type) == 0 && w->nb[1] == ember_type_row_size(w->type, w->ne[0]) &&
           w->nb[2] % w->nb[1] == 0 && x->nb[1] % 16 == 0 &&
           x->nb[2] == x->nb[1] * (size_t)x->ne[1];
}

bool em_vk_op_supported(const em_vk *vk, const em_tensor *t) {
    switch (t->op) {
    case EM_OP_MOE_ROUTE:
    case EM_OP_MOE_FFN:
        return moe_supported(vk, t);
    case EM_OP_HEAD_MATMUL:
        return head_matmul_supported(vk, t);
    case EM_OP_SLICE:
    case EM_OP_CONCAT:
        return t->src[0]->type == EMBER_TYPE_F32 &&
               (!t->src[1] || t->src[1]->type == EMBER_TYPE_F32);
    case EM_OP_MATMUL:
    case EM_OP_GET_ROWS: {
        uint32_t ty = t->src[0]->type;
        return weight_type_ok(ty) && (ty == EMBER_TYPE_F32 || ty == EMBER_TYPE_F16 ||
                                      t->src[0]->ne[0] % 32 == 0);
    }
    case EM_OP_RMS_NORM: case EM_OP_ADD: case EM_OP_MUL: case EM_OP_SWIGLU:
    case EM_OP_SCALE: case EM_OP_SIGMOID: case EM_OP_SOFTMAX: case EM_OP_ROPE:
    case EM_OP_KV_STORE:
        return t->src[0]->type == EMBER_TYPE_F32;
    case EM_OP_ATTN:
        return t->src[0]->type == EMBER_TYPE_F32 && t->src[0]->ne[0] <= ATTN_MAX_D &&
               t->ne[0] / t->src[0]->ne[1] <= ATTN_MAX_D;
    default:
        return false;
    }
}

size_t em_vk_extent(const em_tensor *t) {
    size_t last = 0;
    for (int i = 1; i < 4; i++) last += (size_t)(t->ne[i] - 1) * t->nb[i];
    return last + t->nb[1];
}

/* Where tensor t is: the arena, io (per-run leaves) or the weight slabs. */
static int ref_of(const em_vk_graph *vg, const em_graph *g, const em_tensor *t, em_vk_ref *r) {
    if (em_vk_in_arena(vg, t)) {
        *r = (em_vk_ref){ vg->arena, (size_t)((const char *)t->data - vg->shadow), em_vk_extent(t), 0 };
        return EMBER_OK;
    }
    if (t->flags & EM_TENSOR_INPUT) {
        *r = (em_vk_ref){ vg->io, vg->io_off[t - g->nodes], em_vk_extent(t), 0 };
        return EMBER_OK;
    }
    if (em_vk_weights_find(vg->weights, t->data, em_nbytes(t), r)) return EMBER_OK;
    return em_error(vg->vk->err, EMBER_ERR_INTERNAL, "vulkan: leaf %d is not on the device",
                    (int)(t - g->nodes));
}

/* Whether weight w is stored in chunks (weights.c): larger than a binding.
 * Only products and row lookups take such a tensor (run_chunks), and
 * none folded into another op. */
static bool chunked(const em_vk_graph *vg, const em_tensor *w) {
    em_vk_ref r;
    size_t rows;
    return w && w->op == EM_OP_NONE && w->data && em_vk_weights_chunk(vg->weights, w, 0, &r, &rows);
}

static size_t align_up(size_t n) { return (n + IO_ALIGN - 1) / IO_ALIGN * IO_ALIGN; }

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

/* RoPE nodes with the same positions and frequencies (a layer's Q and K,
 * every layer) share one table. */
static bool same_rope(const em_tensor *a, const em_tensor *b) {
    return a->src[1]->data == b->src[1]->data && a->src[2]->data == b->src[2]->data &&
           a->ip[0] == b->ip[0] && a->fp[0] == b->fp[0] && a->src[0]->ne[2] == b->src[0]->ne[2];
}

static size_t table_bytes(const em_kv *kv) {
    return (size_t)kv->n_seq * (size_t)kv->blocks_per_seq * sizeof(int32_t);
}

/* Attention splits over positions (attn.comp) for decode-sized batches
 * with an F32 or Q8_0 cache (an F16 cache normalises before rounding,
 * which needs every position in one workgroup): up to 32 workgroups per
 * head, one per 64 positions a sequence can hold. */
#define ATTN_MAX_SPLITS 32
#define ATTN_COUNTS 8192 /* attn.comp COUNTS */
static uint32_t attn_splits(const em_vk_graph *vg, const em_tensor *t) {
    const em_kv *kv = vg->kv;
    if (!kv || t->src[0]->ne[2] > 8 || kv->type == EMBER_TYPE_F16 ||
        t->src[0]->ne[1] * t->src[0]->ne[2] > ATTN_COUNTS)
        return 1;
    int64_t cap = (int64_t)kv->blocks_per_seq << kv->block_shift, s = (cap + 63) / 64;
    if (vg->vk->attn_splits) s = vg->vk->attn_splits;
    return (uint32_t)(s < 1 ? 1 : s > ATTN_MAX_SPLITS ? ATTN_MAX_SPLITS : s);
}

/* attn.comp's split scratch for node t: a count per head and token at
 * a fixed place, words [0, ATTN_COUNTS) (every graph's counts in the
 * same words, which each run leaves at zero), then per head and token S
 * partial results of 4 + Dv (rounded up to 4) floats. */
static size_t attn_part_bytes(const em_vk_graph *vg, const em_tensor *t, uint32_t S) {
    size_t H = (size_t)t->src[0]->ne[1], T = (size_t)t->src[0]->ne[2];
    size_t Dv = (size_t)(t->ne[0] / t->src[0]->ne[1]);
    (void)vg;
    return (ATTN_COUNTS + H * T * S * (4 + (Dv + 3) / 4 * 4)) * sizeof(float);
}

size_t em_vk_attn_part_bytes(const em_vk_graph *vg, const em_graph *g) {
    size_t need = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const em_tensor *t = &g->nodes[i];
        uint32_t S = t->op == EM_OP_ATTN ? attn_splits(vg, t) : 1;
        size_t b = S > 1 ? attn_part_bytes(vg, t, S) : 0;
        need = b > need ? b : need;
    }
    return need;
}

/* Split attention node t's workgroups for this run: per head and token,
 * as many splits as the longest sequence among its tokens fills, by
 * attn.comp's rule (at least 64 positions each), so short contexts
 * launch no idle workgroups. */
static void attn_groups(const em_vk_graph *vg, const em_tensor *t, uint32_t g[3]) {
    uint32_t S = attn_splits(vg, t), most = 1;
    const int32_t *pos = t->src[1]->data;
    for (int64_t k = 0; k < t->src[0]->ne[2]; k++) {
        int64_t n = (int64_t)pos[k] + 1, L = (n + S - 1) / S;
        L = L < 64 ? 64 : L;
        uint32_t busy = (uint32_t)((n + L - 1) / L);
        most = busy > most ? busy : most;
    }
    g[0] = (uint32_t)t->src[0]->ne[1], g[1] = (uint32_t)t->src[0]->ne[2], g[2] = most;
}

size_t em_vk_io_layout(em_vk_graph *vg, const em_graph *g) {
    enum { MAX_TABLES = 8 };
    int32_t tables[MAX_TABLES], n_tables = 0;
    size_t total = 0;
    bool kv_ops = false;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const em_tensor *t = &g->nodes[i];
        vg->io_off[i] = SIZE_MAX;
        kv_ops |= t->op == EM_OP_KV_STORE || t->op == EM_OP_ATTN;
        if (t->op == EM_OP_NONE && (t->flags & EM_TENSOR_INPUT) && t->data) {
            vg->io_off[i] = total;
            total += align_up(em_nbytes(t));
        } else if (t->op == EM_OP_ROPE) {
            for (int32_t k = 0; k < n_tables && vg->io_off[i] == SIZE_MAX; k++)
                if (same_rope(&g->nodes[tables[k]], t)) vg->io_off[i] = vg->io_off[tables[k]];
            if (vg->io_off[i] != SIZE_MAX) continue;
            if (n_tables < MAX_TABLES) tables[n_tables++] = i;
            vg->io_off[i] = total;
            total += align_up(rope_table_bytes(t));
        }
    }
    vg->kv = kv_ops ? g->kv : NULL;
    for (int32_t i = 0; i < g->n_nodes; i++) /* split attentions' workgroup counts */
        if (g->nodes[i].op == EM_OP_ATTN && attn_splits(vg, &g->nodes[i]) > 1) {
            vg->io_off[i] = total;
            total += align_up(3 * sizeof(uint32_t));
        }
    vg->tables_off = total;
    if (vg->kv) total += align_up(table_bytes(vg->kv));
    return total;
}

/* Whether an earlier RoPE node than i shares i's table (em_vk_io_layout
 * gives equal RoPEs one table): it is filled once. Computing it again for
 * every layer's Q and K took ~30 ms of host time per 512-token prompt of
 * llama-3b, a third of the prompt (docs/performance.md, session 19). */
static bool table_filled(const em_vk_graph *vg, const em_graph *g, int32_t i) {
    for (int32_t j = 0; j < i; j++)
        if (g->nodes[j].op == EM_OP_ROPE && vg->io_off[j] == vg->io_off[i]) return true;
    return false;
}

void em_vk_io_fill(em_vk_graph *vg, const em_graph *g) {
    char *io = vg->io->map;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const em_tensor *t = &g->nodes[i];
        if (vg->io_off[i] == SIZE_MAX) continue;
        if (t->op == EM_OP_ROPE) {
            if (!table_filled(vg, g, i)) rope_table(t, (float *)(io + vg->io_off[i]));
        } else if (t->op == EM_OP_ATTN) attn_groups(vg, t, (uint32_t *)(io + vg->io_off[i]));
        else memcpy(io + vg->io_off[i], t->data, em_nbytes(t));
    }
    if (vg->kv) memcpy(io + vg->tables_off, vg->kv->tables, table_bytes(vg->kv));
}

static uint32_t floats(size_t bytes) { return (uint32_t)(bytes / sizeof(float)); }

/* Bindings 4-6 take aligned offsets only: r bound from the aligned
 * offset below its own, *words the rest. */
static em_vk_ref bind4(const em_vk *vk, em_vk_ref r, uint32_t *words) {
    size_t base = r.off / vk->min_align * vk->min_align;
    *words = floats(r.off - base);
    r.bytes += r.off - base;
    r.off = base;
    return r;
}

/* rows split into (x or y, z) below the 32768 the shaders fold at */
static void fold(int64_t rows, uint32_t *lo, uint32_t *hi) {
    *lo = rows < 32768 ? (uint32_t)rows : 32768u;
    *hi = (uint32_t)((rows + 32767) / 32768);
}

/* The KV cache of a layer: its K rows, then its V rows at v_base. */
static em_vk_ref kv_layer(const em_vk_graph *vg, int layer) {
    size_t at = em_kv_layer_offset(vg->kv, layer);
    return (em_vk_ref){ vg->kv_buf, at, em_kv_layer_offset(vg->kv, layer + 1) - at, 0 };
}

static size_t kv_v_base(const em_kv *kv) {
    return (size_t)kv->n_blocks * (size_t)kv->block * kv->k_bytes;
}

static em_vk_pipe by_kv_type(uint32_t ty, em_vk_pipe f32, em_vk_pipe f16, em_vk_pipe q8) {
    return ty == EMBER_TYPE_F16 ? f16 : ty == EMBER_TYPE_Q8_0 ? q8 : f32;
}

/* The RoPE node folded into KV node t (plan_fusion), or NULL. */
static const em_tensor *folded_rope(const em_vk_graph *vg, const em_graph *g, const em_tensor *t);

static int run_kv_store(em_vk_graph *vg, const em_graph *g, const em_tensor *t, em_vk_ref *r,
                        uint32_t *push) {
    const em_kv *kv = vg->kv;
    const em_tensor *k = t->src[0], *v = t->src[1], *rope = folded_rope(vg, g, t);
    uint32_t *q = push + 4;
    int64_t v_row = v ? kv->v_row : 0;
    size_t ldk = k->nb[1];
    if (rope) { /* K un-rotated: the RoPE's input, heads contiguous */
        int rc = ref_of(vg, g, rope->src[0], &r[0]);
        if (rc) return rc;
        ldk = rope->src[0]->nb[2];
        q[8] = 1, q[9] = (uint32_t)rope->src[0]->ne[0], q[10] = (uint32_t)rope->ip[0];
        q[11] = (uint32_t)rope->ip[1], q[12] = floats(vg->io_off[rope - g->nodes]);
    }
    if (!v) r[1] = r[0];
    r[2] = (em_vk_ref){ vg->io, 0, 0, 0 };
    r[3] = kv_layer(vg, t->ip[0]);
    q[0] = (uint32_t)kv->k_row, q[1] = (uint32_t)v_row, q[2] = floats(ldk);
    q[3] = v ? floats(v->nb[1]) : 0, q[4] = (uint32_t)kv->k_bytes, q[5] = (uint32_t)kv->v_bytes;
    q[6] = (uint32_t)kv_v_base(kv), q[7] = floats(vg->io_off[t->src[2] - g->nodes]);
    int64_t per = kv->type == EMBER_TYPE_F32 ? 1 : kv->type == EMBER_TYPE_F16 ? 2 : 32;
    int64_t groups = (kv->k_row + per - 1) / per + (v_row + per - 1) / per; /* invocations */
    em_vk_pipe p = by_kv_type(kv->type, EM_VK_KV_STORE_F32, EM_VK_KV_STORE_F16, EM_VK_KV_STORE_Q8_0);
    return em_vk_dispatch(vg->vk, p, r, push, 17 * 4, (uint32_t)((groups + 63) / 64),
                          (uint32_t)k->ne[1], 1);
}

/* Whether attention t writes its output's 8-bit copy (attn.comp Q8OUT):
 * an 8-bit product reads it (it has a slot), and each head's output is
 * whole blocks of 32. */
static bool attn_rounds(const em_vk_graph *vg, const em_graph *g, const em_tensor *t);
static void quantized_slot(const em_vk_graph *vg, const em_graph *g, const em_tensor *x,
                           em_vk_ref *out, uint32_t *xm);

/* attn.comp's RoPE words: rope, n_rot, mode, the table's offset */
static void q_rope(uint32_t *q, const em_vk_graph *vg, const em_graph *g, const em_tensor *rope) {
    q[18] = 1, q[19] = (uint32_t)rope->ip[0], q[20] = (uint32_t)rope->ip[1];
    q[21] = floats(vg->io_off[rope - g->nodes]);
}

/* Whether attention t runs on tiles of 16 queries (attn_tile.comp): more
 * tokens than decode's 8, an F32 or Q8_0 cache with V rows, heads of up
 * to 128 elements, no 8-bit copy of the output, and a device with room
 * for the shader's shared arrays; EMBER_VULKAN_NO_TILES=1 or
 * EMBER_VULKAN_NO_ATTN_TILES=1 keep attn.comp. */
#define ATTN_TILE_SHARED 30464 /* attn_tile.comp's shared arrays, in bytes */
static bool attn_tiles(const em_vk_graph *vg, const em_tensor *t, bool q8) {
    const em_kv *kv = vg->kv;
    int64_t D = t->src[0]->ne[0], Dv = t->ne[0] / t->src[0]->ne[1];
    return !vg->vk->no_attn_tiles && vg->vk->max_shared >= ATTN_TILE_SHARED && !q8 &&
           t->src[0]->ne[2] > 8 && kv->v_row &&
           (kv->type == EMBER_TYPE_F32 || kv->type == EMBER_TYPE_Q8_0) && D <= 128 && Dv <= 128;
}

static int run_attn(em_vk_graph *vg, const em_graph *g, const em_tensor *t, em_vk_ref *r,
                    uint32_t *push) {
    const em_kv *kv = vg->kv;
    const em_tensor *qt = t->src[0], *rope = folded_rope(vg, g, t);
    int64_t D = qt->ne[0], H = qt->ne[1], T = qt->ne[2], Dv = t->ne[0] / H;
    size_t ldq1 = qt->nb[1], ldq2 = qt->nb[2];
    if (rope) { /* the query un-rotated: the RoPE's input */
        int rc = ref_of(vg, g, rope->src[0], &r[0]);
        if (rc) return rc;
        ldq1 = rope->src[0]->nb[1], ldq2 = rope->src[0]->nb[2];
        q_rope(push + 4, vg, g, rope);
    }
    int64_t Hkv = kv->k_row / D;
    uint32_t *q = push + 4;
    r[1] = kv_layer(vg, t->ip[0]);
    r[2] = (em_vk_ref){ vg->io, 0, 0, 0 };
    q[0] = (uint32_t)D, q[1] = (uint32_t)Dv, q[2] = (uint32_t)(H / Hkv);
    q[3] = floats(ldq1), q[4] = floats(ldq2), q[5] = floats(t->nb[1]);
    q[6] = (uint32_t)kv->k_bytes, q[7] = (uint32_t)kv->v_bytes, q[8] = (uint32_t)kv_v_base(kv);
    q[9] = (uint32_t)(kv->k_bytes / (size_t)Hkv);
    q[10] = kv->v_row ? (uint32_t)(kv->v_bytes / (size_t)Hkv) : 0;
    q[11] = floats(vg->io_off[t->src[1] - g->nodes]), q[12] = floats(vg->io_off[t->src[2] - g->nodes]);
    q[13] = floats(vg->tables_off), q[14] = (uint32_t)kv->blocks_per_seq;
    q[15] = (uint32_t)kv->block_shift, q[16] = kv->v_row == 0;
    memcpy(&q[17], &t->fp[0], 4);
    em_vk_pipe p = by_kv_type(kv->type, EM_VK_ATTN_F32, EM_VK_ATTN_F16, EM_VK_ATTN_Q8_0);
    uint32_t writes = 0;
    bool q8 = attn_rounds(vg, g, t);
    if (q8) { /* the output's 8-bit copy for the output projection too */
        em_vk_ref slot;
        quantized_slot(vg, g, t, &slot, &q[23]);
        r[5] = bind4(vg->vk, slot, &q[22]);
        q[24] = (uint32_t)t->ne[0];
        p = by_kv_type(kv->type, EM_VK_ATTN_F32_Q8, EM_VK_ATTN_F16_Q8, EM_VK_ATTN_Q8_0_Q8);
        writes = 1u << 5;
    }
    if (attn_tiles(vg, t, q8)) { /* a prompt: attn_tile.comp, tokens in word 29 */
        push[29] = (uint32_t)T;
        p = (kv->type == EMBER_TYPE_F32 ? EM_VK_ATTN_TILE_F32 : EM_VK_ATTN_TILE_Q8_0) +
            (Dv > 64 ? 2 : Dv > 32 ? 1 : 0);
        return em_vk_dispatch_w(vg->vk, p, r, push, 30 * 4,
                                (uint32_t[3]){ (uint32_t)H, (uint32_t)((T + 15) / 16), 1 }, 0);
    }
    uint32_t S = attn_splits(vg, t);
    int rc;
    if (S > 1 && vg->attn_part->size >= attn_part_bytes(vg, t, S)) {
        r[4] = (em_vk_ref){ vg->attn_part, 0, attn_part_bytes(vg, t, S), 0 };
        rc = em_vk_dispatch_indirect(vg->vk, p, r, push, 29 * 4,
                                     (uint32_t[3]){ (uint32_t)H, (uint32_t)T, S },
                                     writes | 1u << 4, vg->io, vg->io_off[t - g->nodes]);
    } else {
        rc = em_vk_dispatch_w(vg->vk, p, r, push, 29 * 4, (uint32_t[3]){ (uint32_t)H, (uint32_t)T, 1 },
                              writes);
    }
    if (!rc && q8) vg->xq_done[t - g->nodes] = 1;
    return rc;
}

static uint32_t scales_words(const em_vk_ref *w) { return (uint32_t)(w->scales / 4); }

/* Whether mul_mv.comp runs product t: subgroups, K in whole 16-byte
 * loads, rows of W contiguous and x's rows 16-byte aligned. */
/* What both wide-load shaders need: K a multiple of `step` elements,
 * contiguous weight rows, 16-byte aligned weights and x rows. */
static bool wide_loads_fit(const em_tensor *t, const em_vk_ref *r, int64_t step) {
    const em_tensor *a = t->src[0], *b = t->src[1];
    return a->ne[0] % step == 0 && a->nb[1] == ember_type_row_size(a->type, a->ne[0]) &&
           r[0].off % 16 == 0 && r[1].off % 16 == 0 && b->nb[1] % 16 == 0;
}

static bool mul_mv_fits(const em_vk *vk, const em_tensor *t, const em_vk_ref *r) {
    uint32_t ty = t->src[0]->type;
    return vk->use_subgroups &&
           wide_loads_fit(t, r, ty == EMBER_TYPE_F32 ? 4 : ty == EMBER_TYPE_F16 ? 8 : 32);
}

/* y = W x by mul_mv.comp, with `mode`'s op folded in: r[2] holds the
 * residual (1), the up projection's weights (2) or the RMS norm's weight
 * (3: r[1] and x are the norm's input, `eps` its epsilon); `y` is the
 * tensor written (the add's or the SwiGLU's). */
static int run_mul_mv(em_vk *vk, const em_tensor *t, const em_tensor *y, int mode, em_vk_ref *r,
                      uint32_t *push, const em_tensor *x, float eps) {
    const em_tensor *a = t->src[0], *b = t->src[1];
    int64_t N = a->ne[1], T = b->ne[1];
    const int rows_per_group = 128 / (int)em_vk_mul_mv_tpr(vk->subgroup_size);
    uint32_t *q = push + 4, lo, hi;
    q[0] = (uint32_t)a->ne[0], q[1] = (uint32_t)N, q[2] = scales_words(&r[0]);
    q[3] = floats(x->nb[1]), q[4] = floats(y->nb[1]);
    q[5] = mode == 1 ? floats(y->src[0] == t ? y->src[1]->nb[1] : y->src[0]->nb[1]) : 0;
    q[6] = (uint32_t)T;
    memcpy(&q[7], &eps, 4);
    fold((N + rows_per_group - 1) / rows_per_group, &lo, &hi);
    em_vk_pipe p = EM_VK_MUL_MV + em_vk_mul_mv_variant(em_vk_wtype_index(a->type), T == 1, mode);
    return em_vk_dispatch(vk, p, r, push, 12 * 4, lo, (uint32_t)((T + 7) / 8), hi);
}

/* act_type Q8_0: products mul_mv.comp would run with block-quantized
 * weights take 8-bit activations instead (mul_mvq.comp), the input
 * rounded once by quant_act.comp into xq and shared by its readers (a
 * layer's Q, K and V). Prompts keep F32 tiles (mul_mm.comp). */
#define MV_MAX_TOKENS 8
static bool takes_q8_act(const em_vk_graph *vg, const em_graph *g, const em_tensor *m) {
    const em_vk *vk = vg->vk;
    if (!vk->act_q8 || !vk->use_subgroups || m->op != EM_OP_MATMUL) return false;
    const em_tensor *a = m->src[0], *x = m->src[1];
    if (a->type == EMBER_TYPE_F32 || a->type == EMBER_TYPE_F16 || a->ne[0] % 32 ||
        x->ne[1] > MV_MAX_TOKENS || x->ne[2] != 1 || x->ne[3] != 1 || x->nb[0] != sizeof(float))
        return false;
    em_vk_ref r[2];
    return !ref_of(vg, g, a, &r[0]) && !ref_of(vg, g, x, &r[1]) && mul_mv_fits(vk, m, r);
}

/* xq_off's mark for an input rounded in place (prompts) */
#define XQ_IN_PLACE (SIZE_MAX - 1)
/* xq_done's mark for a folded norm's 8-bit copy, written without 1 / rms */
#define XQ_NORM_UNSCALED 2

/* xq's slot for input x (T rows of K): the quants, T K bytes rounded up to
 * 16, then 8 bytes of meta per block of 32, then (a folded norm's copy,
 * mul_mvq.comp EPI 2) 4 bytes of the block's sum of squares */
static size_t xq_quant_bytes(const em_tensor *x) {
    return ((size_t)x->ne[0] * (size_t)x->ne[1] + 15) / 16 * 16;
}
static size_t xq_slot_bytes(const em_tensor *x) {
    return xq_quant_bytes(x) + (size_t)x->ne[1] * (size_t)(x->ne[0] / 32) * 12;
}

/* act_type Q8_0 for more tokens (prompts): a product of block-quantized
 * weights whose input x gets rounded in place (round_act), the CPU's
 * rounding, before its F32 tiles read it. In place, so only where every
 * reader of x is such a product (a layer's Q, K and V) and x is a
 * computed activation no one else sees; elsewhere x stays as it is. */
static bool rounds_input(const em_vk *vk, const em_tensor *m) {
    const em_tensor *a = m->src[0], *x = m->src[1];
    return vk->act_q8 && m->op == EM_OP_MATMUL && a->type != EMBER_TYPE_F32 &&
           a->type != EMBER_TYPE_F16 && a->ne[0] % 32 == 0 && x->ne[1] > MV_MAX_TOKENS &&
           x != a;
}

static bool rounds_in_place(const em_vk_graph *vg, const em_graph *g, const em_tensor *x,
                            int32_t readers) {
    if (x->op == EM_OP_NONE || x->keep || !em_vk_in_arena(vg, x) || x->nb[0] != sizeof(float) ||
        x->ne[0] % 32 || x->ne[2] != 1 || x->ne[3] != 1 || x->nb[1] % 16 ||
        ((const char *)x->data - vg->shadow) % 16)
        return false;
    int32_t n = 0;
    for (int32_t i = (int32_t)(x - g->nodes) + 1; i < g->n_nodes; i++)
        n += g->nodes[i].op == EM_OP_MATMUL && g->nodes[i].src[1] == x &&
             rounds_input(vg->vk, &g->nodes[i]);
    return n == readers;
}

size_t em_vk_xq_layout(em_vk_graph *vg, const em_graph *g) {
    size_t total = 0;
    char err[EM_ERRMSG_SIZE]; /* ref_of's messages are not wanted here */
    char *saved = vg->vk->err;
    vg->vk->err = err;
    for (int32_t i = 0; i < g->n_nodes; i++) vg->xq_off[i] = SIZE_MAX, vg->uses[i] = 0;
    if (!vg->vk->act_q8) goto done;
    for (int32_t i = 0; i < g->n_nodes; i++)
        for (int s = 0; s < EM_MAX_SRC; s++)
            if (g->nodes[i].src[s]) vg->uses[g->nodes[i].src[s] - g->nodes]++;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const em_tensor *m = &g->nodes[i];
        if (rounds_input(vg->vk, m)) {
            int32_t xi = (int32_t)(m->src[1] - g->nodes);
            if (vg->xq_off[xi] == SIZE_MAX && rounds_in_place(vg, g, m->src[1], vg->uses[xi]))
                vg->xq_off[xi] = XQ_IN_PLACE;
        }
        if (!takes_q8_act(vg, g, m)) continue;
        int32_t xi = (int32_t)(m->src[1] - g->nodes);
        if (vg->xq_off[xi] != SIZE_MAX) continue;
        vg->xq_off[xi] = total;
        total += align_up(xq_slot_bytes(m->src[1]));
    }
done:
    vg->vk->err = saved;
    return total;
}

/* Product m's input rounded in place (rounds_in_place), by its first
 * reader in the run. */
static int round_input(em_vk_graph *vg, const em_graph *g, const em_tensor *m) {
    const em_tensor *x = m->src[1];
    int32_t xi = (int32_t)(x - g->nodes);
    if (vg->xq_off[xi] != XQ_IN_PLACE || vg->xq_done[xi]) return EMBER_OK;
    em_vk_ref r[EM_VK_BINDINGS] = { { 0 } };
    uint32_t push[EM_VK_PUSH_BYTES / 4] = { 0 }, *q = push + 4;
    int rc = ref_of(vg, g, x, &r[0]);
    if (rc) return rc;
    r[3] = r[0];
    q[0] = (uint32_t)x->ne[0], q[1] = floats(x->nb[1]), q[2] = (uint32_t)x->ne[1];
    rc = em_vk_dispatch(vg->vk, EM_VK_ROUND_ACT, r, push, 8 * 4,
                        (uint32_t)((x->ne[0] / 32 + 63) / 64), (uint32_t)x->ne[1], 1);
    vg->xq_done[xi] = !rc;
    return rc;
}

/* x's slot in xq as a binding, and its meta's word offset */
static void quantized_slot(const em_vk_graph *vg, const em_graph *g, const em_tensor *x,
                           em_vk_ref *out, uint32_t *xm) {
    *out = (em_vk_ref){ vg->xq, vg->xq_off[x - g->nodes], xq_slot_bytes(x), 0 };
    *xm = floats(xq_quant_bytes(x));
}

static bool attn_rounds(const em_vk_graph *vg, const em_graph *g, const em_tensor *t) {
    int64_t H = t->src[0]->ne[1], Dv = t->ne[0] / H;
    return vg->xq_off[t - g->nodes] < XQ_IN_PLACE && Dv % 32 == 0 && t->ne[0] == H * Dv &&
           t->nb[0] == sizeof(float) && !vg->vk->no_epi;
}

/* Whether RMS norm t writes its output's 8-bit copy itself (rms_norm.comp
 * Q8): it has a slot (mul_mvq reads it) and rows of whole 16-byte-aligned
 * blocks. */
static bool norm_quantizes(const em_vk_graph *vg, const em_graph *g, const em_tensor *t) {
    const em_tensor *x = t->src[0], *w = t->src[1];
    em_vk_ref rx, rw;
    return vg->xq_off[t - g->nodes] < XQ_IN_PLACE && t->ne[0] % 32 == 0 &&
           x->nb[0] == sizeof(float) && x->nb[1] % 16 == 0 && !ref_of(vg, g, x, &rx) &&
           rx.off % 16 == 0 && (!w || (!ref_of(vg, g, w, &rw) && rw.off % 16 == 0 &&
                                       w->type == EMBER_TYPE_F32));
}

/* Input x's 8-bit copy as a binding (and its meta's word offset), the
 * quant_act dispatch recorded by its first reader in the run (unless x's
 * RMS norm wrote it: norm_quantizes). */
static int quantized_input(em_vk_graph *vg, const em_graph *g, const em_tensor *x, em_vk_ref *out,
                           uint32_t *xm) {
    int32_t xi = (int32_t)(x - g->nodes);
    quantized_slot(vg, g, x, out, xm);
    if (vg->xq_done[xi]) return EMBER_OK;
    em_vk_ref r[EM_VK_BINDINGS] = { { 0 } };
    uint32_t push[EM_VK_PUSH_BYTES / 4] = { 0 }, *q = push + 4;
    int rc = ref_of(vg, g, x, &r[0]);
    if (rc) return rc;
    r[3] = *out;
    q[0] = (uint32_t)x->ne[0], q[1] = floats(x->nb[1]), q[2] = (uint32_t)x->ne[1], q[3] = *xm;
    rc = em_vk_dispatch(vg->vk, EM_VK_QUANT_ACT, r, push, 8 * 4,
                        (uint32_t)((x->ne[0] / 32 + 63) / 64), (uint32_t)x->ne[1], 1);
    vg->xq_done[xi] = !rc;
    return rc;
}

/* The 8-bit rounding folded into a product (mul_mvq.comp EPI): `out` is
 * the node whose 8-bit copy it writes (the SwiGLU itself, or the RMS norm
 * of the add), `norm` that norm (NULL for the SwiGLU), `counts` the words
 * of vg->sync its workgroups count in. */
typedef struct mvq_epi {
    const em_tensor *out, *norm;
    uint32_t counts;
} mvq_epi;

/* Words of vg->sync an epilogue counts in: one per block of 32 rows, per
 * pass of 8 tokens. */
static uint32_t epi_counts(const em_tensor *out) {
    return (uint32_t)(out->ne[0] / 32 * ((out->ne[1] + 7) / 8));
}

/* y = W x by mul_mvq.comp with mul_mv's `mode` (0-2) folded in; r[1] is
 * replaced by x's 8-bit copy (a folded norm's, without 1 / rms: xq_done
 * XQ_NORM_UNSCALED, and the shader scales it); with `epi`, the next op's
 * rounding too. */
static int run_mul_mvq(em_vk_graph *vg, const em_graph *g, const em_tensor *t, const em_tensor *y,
                       int mode, em_vk_ref *r, uint32_t *push, const mvq_epi *epi) {
    em_vk *vk = vg->vk;
    const em_tensor *a = t->src[0], *x = t->src[1];
    int64_t N = a->ne[1], T = x->ne[1];
    uint32_t *q = push + 4, lo, hi, xm;
    int rc = quantized_input(vg, g, x, &r[1], &xm);
    if (rc) return rc;
    int variant = epi ? (epi->norm ? 4 : 3) : mode;
    const int rows_per_group =
        (int)(em_vk_mul_mvq_wgs(vk, T == 1, variant) / em_vk_mul_mv_tpr(vk->subgroup_size));
    q[0] = (uint32_t)a->ne[0], q[1] = (uint32_t)N, q[2] = scales_words(&r[0]);
    q[3] = floats(y->nb[1]);
    q[4] = mode == 1 ? floats(y->src[0] == t ? y->src[1]->nb[1] : y->src[0]->nb[1]) : 0;
    q[5] = (uint32_t)T, q[6] = xm;
    if (vg->xq_done[x - g->nodes] == XQ_NORM_UNSCALED) {
        q[11] = 1;
        memcpy(&q[12], &x->fp[0], 4);
    }
    if (epi) {
        em_vk_ref slot;
        quantized_slot(vg, g, epi->out, &slot, &q[9]);
        r[4] = bind4(vk, (em_vk_ref){ vg->sync, 0, vg->sync->size, 0 }, &q[7]);
        q[7] += epi->counts;
        r[5] = bind4(vk, slot, &q[8]);
        if (epi->norm) {
            rc = ref_of(vg, g, epi->norm->src[1], &r[6]);
            if (rc) return rc;
            r[6] = bind4(vk, r[6], &q[10]);
        }
    }
    fold((N + rows_per_group - 1) / rows_per_group, &lo, &hi);
    em_vk_pipe p = EM_VK_MUL_MVQ + em_vk_mul_mvq_variant(em_vk_wtype_index(a->type), T == 1,
                                                         variant, !vk->use_idot);
    rc = em_vk_dispatch_w(vk, p, r, push, 17 * 4, (uint32_t[3]){ lo, (uint32_t)((T + 7) / 8), hi },
                          epi ? 1u << 4 | 1u << 5 : 0u);
    if (!rc && epi) vg->xq_done[epi->out - g->nodes] = epi->norm ? XQ_NORM_UNSCALED : 1;
    return rc;
}

/* Whether mul_mm.comp's tiles run product t: more tokens than mul_mv.comp
 * takes in one pass, K in whole blocks of 32, contiguous weight rows and
 * 16-byte aligned x rows. */
static bool mul_mm_fits(const em_tensor *t, const em_vk_ref *r) {
    return t->src[1]->ne[1] > MV_MAX_TOKENS && wide_loads_fit(t, r, 32);
}

/* Whether mul_mmc.comp (tensor cores, F16 inputs) takes the tiles: the
 * device has them, and act_type Q8_0 has said 8-bit activations are
 * wanted for block-quantized weights, so F16 ones lose nothing asked for. */
static bool tiles_on_coopmat(const em_vk *vk, const em_tensor *t) {
    uint32_t ty = t->src[0]->type;
    return vk->use_coopmat && vk->act_q8 && ty != EMBER_TYPE_F32 && ty != EMBER_TYPE_F16;
}

static int run_mul_mm(em_vk *vk, const em_tensor *t, em_vk_ref *r, uint32_t *push) {
    const em_tensor *a = t->src[0], *b = t->src[1];
    int64_t N = a->ne[1], T = b->ne[1];
    uint32_t *q = push + 4;
    q[0] = (uint32_t)a->ne[0], q[1] = (uint32_t)N, q[2] = scales_words(&r[0]);
    q[3] = floats(b->nb[1]), q[4] = floats(t->nb[1]), q[5] = (uint32_t)T;
    em_vk_pipe p = tiles_on_coopmat(vk, t) ? EM_VK_MUL_MMC : EM_VK_MUL_MM;
    return em_vk_dispatch(vk, p + em_vk_wtype_index(a->type), r, push, 10 * 4,
                          (uint32_t)((N + 63) / 64),
                          (uint32_t)((T + 63) / 64), 1);
}

/* Matrix products: mul_mm.comp's tiles for many tokens, mul_mv.comp for
 * few (or where tiles do not fit), else matmul.comp (a workgroup per row
 * and token, no subgroup operations). */
static int run_matmul(em_vk_graph *vg, const em_graph *g, const em_tensor *t, em_vk_ref *r,
                      uint32_t *push) {
    em_vk *vk = vg->vk;
    int rc = round_input(vg, g, t);
    if (rc) return rc;
    if (!vk->no_tiles && mul_mm_fits(t, r)) return run_mul_mm(vk, t, r, push);
    if (vg->xq_off[t->src[1] - g->nodes] < XQ_IN_PLACE && takes_q8_act(vg, g, t))
        return run_mul_mvq(vg, g, t, t, 0, r, push, NULL);
    if (mul_mv_fits(vk, t, r)) return run_mul_mv(vk, t, t, 0, r, push, t->src[1], 0.0f);
    const em_tensor *a = t->src[0], *b = t->src[1];
    int64_t K = a->ne[0], N = a->ne[1], T = b->ne[1];
    uint32_t *q = push + 4, lo, hi;
    q[0] = (uint32_t)K, q[1] = (uint32_t)N, q[2] = (uint32_t)a->nb[1];
    q[3] = floats(b->nb[1]), q[4] = floats(t->nb[1]), q[5] = scales_words(&r[0]);
    fold(N, &lo, &hi);
    return em_vk_dispatch(vk, EM_VK_MATMUL + em_vk_wtype_index(a->type), r, push, 10 * 4, lo,
                          (uint32_t)T, hi);
}

/* ---- mixture of experts ---- */

/* 256: the largest minStorageBufferOffsetAlignment Vulkan allows, so the
 * down products' rows can be bound anywhere (binding 4 repeats 0). */
static size_t align256(size_t n) { return (n + 255) / 256 * 256; }

/* MOE_FFN node t's scratch in vg->moe: the SwiGLU rows of its (token,
 * slot) pairs, then their down products; *d_off where the latter start. */
static size_t moe_scratch(const em_tensor *t, size_t *d_off) {
    size_t pairs = (size_t)t->src[0]->ne[1] * (size_t)t->ip[0];
    *d_off = align256(pairs * (size_t)t->src[2]->ne[1] * sizeof(float));
    return *d_off + align256(pairs * (size_t)t->ne[0] * sizeof(float));
}

size_t em_vk_moe_bytes(const em_graph *g) {
    size_t need = 0, d;
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == EM_OP_MOE_FFN) {
            size_t b = moe_scratch(&g->nodes[i], &d);
            need = b > need ? b : need;
        }
    return need;
}

static int run_moe_route(em_vk *vk, const em_tensor *t, em_vk_ref *r, uint32_t *push) {
    const em_tensor *a = t->src[0];
    uint32_t *q = push + 4;
    q[0] = (uint32_t)a->ne[0], q[1] = floats(a->nb[1]), q[2] = floats(t->nb[1]);
    q[3] = (uint32_t)a->ne[1], q[4] = (uint32_t)t->ip[0];
    q[5] = t->ip[1] == EM_GATING_SIGMOID, q[6] = (uint32_t)t->ip[2], q[7] = (uint32_t)t->ip[3];
    q[8] = t->ip[4] != 0, q[9] = t->src[1] != NULL;
    memcpy(&q[10], &t->fp[0], 4);
    uint32_t lo, hi;
    fold(a->ne[1], &lo, &hi); /* a workgroup per token */
    return em_vk_dispatch(vk, EM_VK_MOE_ROUTE, r, push, 15 * 4, lo, hi, 1);
}

/* One of mul_mv.comp's ID passes (its comment): n_mat matrices of w
 * (experts, or heads 1 apart by mstride rows), the route in r[4]. */
typedef struct id_pass {
    int64_t T;       /* tokens */
    int nu;          /* slots per token, or heads */
    int direct;      /* 0 by expert, 1 by pair (decode), 2 by head */
    bool swiglu;     /* with U in r[2] */
    bool x_per_pair; /* x's rows are the pairs' (else the tokens') */
    size_t ldx;      /* x's row stride in bytes */
} id_pass;

static int run_mul_mv_id(em_vk *vk, const em_tensor *w, const id_pass *ip, em_vk_ref *r,
                         uint32_t *push) {
    int64_t K = w->ne[0], N = w->ne[1], n_mat = w->ne[2];
    const int rows_per_group = 128 / (int)em_vk_mul_mv_tpr(vk->subgroup_size);
    uint32_t *q = push + 4, lo, hi, ro = 0;
    if (r[4].buf) r[4] = bind4(vk, r[4], &ro); /* else it repeats binding 0, unread */
    memset(q, 0, 13 * 4);
    q[0] = (uint32_t)K, q[1] = (uint32_t)N, q[2] = scales_words(&r[0]), q[3] = floats(ip->ldx);
    q[4] = (uint32_t)N, q[6] = (uint32_t)ip->T, q[8] = ro, q[9] = (uint32_t)ip->nu;
    q[10] = ip->x_per_pair, q[11] = (uint32_t)ip->direct;
    q[12] = (uint32_t)(w->nb[2] / w->nb[1]);
    fold((N + rows_per_group - 1) / rows_per_group, &lo, &hi);
    em_vk_pipe p = EM_VK_MUL_MV + em_vk_mul_mv_variant(em_vk_wtype_index(w->type),
                                                       ip->direct == 1, ip->swiglu ? 5 : 4);
    uint32_t rows = (uint32_t)(ip->direct == 1 ? ip->T * ip->nu : n_mat);
    return em_vk_dispatch(vk, p, r, push, 17 * 4, lo, rows, hi);
}

/* MLA's per-head products: y[t][h] = W_h x[t][h], a workgroup row per
 * head running its tokens through its rows 8 at a time. */
static int run_head_matmul(em_vk_graph *vg, const em_graph *g, const em_tensor *t, em_vk_ref *r,
                           uint32_t *push) {
    (void)g;
    const em_tensor *w = t->src[0], *x = t->src[1];
    r[4] = (em_vk_ref){ 0 };
    id_pass ip = { .T = x->ne[2], .nu = (int)x->ne[1], .direct = 2, .x_per_pair = true,
                   .ldx = x->nb[1] };
    return run_mul_mv_id(vg->vk, w, &ip, r, push);
}

/* The routed experts of a layer in three dispatches: the gate and up
 * products with their SwiGLU (one row per token and chosen expert), the
 * down products, and each token's weighted sum (moe_sum.comp). */
static int run_moe_ffn(em_vk_graph *vg, const em_graph *g, const em_tensor *t) {
    em_vk *vk = vg->vk;
    const em_tensor *x = t->src[0], *route = t->src[1];
    int64_t T = x->ne[1], F = t->src[2]->ne[1], D = t->ne[0];
    int nu = t->ip[0];
    size_t d_off, bytes = moe_scratch(t, &d_off);
    em_vk_ref rx, rr, ry, rg, ru, rd;
    int rc;
    if ((rc = ref_of(vg, g, x, &rx)) || (rc = ref_of(vg, g, route, &rr)) ||
        (rc = ref_of(vg, g, t, &ry)) || (rc = ref_of(vg, g, t->src[2], &rg)) ||
        (rc = ref_of(vg, g, t->src[3], &ru)) || (rc = ref_of(vg, g, t->src[4], &rd)))
        return rc;
    em_vk_ref h = { vg->moe, 0, d_off, 0 }, d = { vg->moe, d_off, bytes - d_off, 0 };
    uint32_t push[EM_VK_PUSH_BYTES / 4] = { 0 };
    int direct = T * nu <= t->src[2]->ne[2]; /* no more pairs than experts: decode */
    em_vk_ref r1[EM_VK_BINDINGS] = { rg, rx, ru, h, rr };
    id_pass up = { .T = T, .nu = nu, .direct = direct, .swiglu = true, .ldx = x->nb[1] };
    if ((rc = run_mul_mv_id(vk, t->src[2], &up, r1, push))) return rc;
    em_vk_ref r2[EM_VK_BINDINGS] = { rd, h, { 0 }, d, rr };
    id_pass down = { .T = T, .nu = nu, .direct = direct, .x_per_pair = true,
                     .ldx = (size_t)F * sizeof(float) };
    if ((rc = run_mul_mv_id(vk, t->src[4], &down, r2, push))) return rc;
    em_vk_ref r3[EM_VK_BINDINGS] = { d, rr, { 0 }, ry, { 0 } };
    uint32_t *q = push + 4;
    q[0] = (uint32_t)D, q[1] = (uint32_t)D, q[2] = floats(route->nb[1]), q[3] = floats(t->nb[1]);
    q[4] = (uint32_t)nu;
    return em_vk_dispatch(vk, EM_VK_MOE_SUM, r3, push, 9 * 4, (uint32_t)((D + 255) / 256),
                          (uint32_t)T, 1);
}

/* Columns [c, c + n) of each row of src (from column `from`) into t, by
 * unary.comp's copy with the offsets moved. */
static int copy_cols(em_vk *vk, const em_tensor *src, const em_tensor *t, em_vk_ref a,
                     em_vk_ref y, int64_t from, int64_t c, int64_t n) {
    uint32_t push[EM_VK_PUSH_BYTES / 4] = { 0 }, *q = push + 4, lo, hi;
    em_vk_ref r[EM_VK_BINDINGS] = { a, a, { 0 }, y };
    r[0].off += (size_t)from * sizeof(float);
    r[1] = r[0];
    r[3].off += (size_t)c * sizeof(float);
    q[0] = (uint32_t)n, q[1] = floats(src->nb[1]), q[2] = 0, q[3] = floats(t->nb[1]);
    fold(rows_of(t), &lo, &hi);
    return em_vk_dispatch(vk, EM_VK_COPY, r, push, 9 * 4, (uint32_t)((n + 255) / 256), lo, hi);
}

/* A slice (columns of each row) or a concatenation (a's rows, then b's):
 * contiguous rows in, contiguous rows out. */
static int run_copy_cols(em_vk_graph *vg, const em_graph *g, const em_tensor *t, em_vk_ref *r,
                         uint32_t *push) {
    (void)g, (void)push;
    const em_tensor *a = t->src[0], *b = t->src[1];
    if (t->op == EM_OP_SLICE) return copy_cols(vg->vk, a, t, r[0], r[3], t->ip[0], 0, t->ne[0]);
    int rc = copy_cols(vg->vk, a, t, r[0], r[3], 0, 0, a->ne[0]);
    return rc ? rc : copy_cols(vg->vk, b, t, r[1], r[3], 0, a->ne[0], b->ne[0]);
}

/* Rows [lo, hi) of table t->src[0] (bound at r[0]) for the tokens whose
 * ids fall there (get_rows.comp); the others' rows are left alone. */
static int run_get_rows(em_vk *vk, const em_tensor *t, em_vk_ref *r, uint32_t *push, uint32_t lo,
                        uint32_t hi) {
    const em_tensor *a = t->src[0];
    uint32_t *q = push + 4;
    q[0] = (uint32_t)a->ne[0], q[1] = (uint32_t)a->nb[1], q[2] = floats(t->nb[1]);
    q[3] = scales_words(&r[0]), q[4] = lo, q[5] = hi;
    return em_vk_dispatch(vk, EM_VK_GET_ROWS + em_vk_wtype_index(a->type), r, push, 10 * 4,
                          (uint32_t)t->ne[1], 1, 1);
}

/* A product or row lookup of a weight matrix stored in chunks: a dispatch
 * per chunk, each binding its chunk alone. A product's chunk writes its
 * rows' outputs (columns [r0, r0 + rows) of each token's y), by the path
 * the whole would take; a lookup's chunk the tokens whose ids it holds. */
static int run_chunks(em_vk_graph *vg, const em_graph *g, const em_tensor *t, const em_vk_ref *r,
                      const uint32_t *push) {
    const em_tensor *a = t->src[0];
    size_t rows = 0;
    for (size_t r0 = 0; r0 < (size_t)a->ne[1]; r0 += rows) {
        em_vk_ref cr[EM_VK_BINDINGS];
        uint32_t cp[EM_VK_PUSH_BYTES / 4];
        memcpy(cr, r, sizeof cr);
        memcpy(cp, push, sizeof cp);
        if (!em_vk_weights_chunk(vg->weights, a, r0, &cr[0], &rows))
            return em_error(vg->vk->err, EMBER_ERR_INTERNAL, "vulkan: no chunk at row %zu", r0);
        int rc;
        if (t->op == EM_OP_GET_ROWS) {
            rc = run_get_rows(vg->vk, t, cr, cp, (uint32_t)r0, (uint32_t)(r0 + rows));
        } else {
            em_tensor ac = *a, tc = *t;
            ac.ne[1] = (int64_t)rows;
            tc.src[0] = &ac;
            tc.ne[0] = (int64_t)rows;
            cr[3].off += r0 * sizeof(float);
            cr[3].bytes = (size_t)(t->ne[1] - 1) * t->nb[1] + rows * sizeof(float);
            rc = run_matmul(vg, g, &tc, cr, cp);
        }
        if (rc) return rc;
    }
    return EMBER_OK;
}

static int run_node(em_vk_graph *vg, const em_graph *g, const em_tensor *t) {
    em_vk *vk = vg->vk;
    em_vk_ref r[EM_VK_BINDINGS] = { { 0 } };
    uint32_t push[EM_VK_PUSH_BYTES / 4] = { 0 };
    const em_tensor *a = t->src[0], *b = t->src[1];
    if (t->op == EM_OP_MOE_FFN) return run_moe_ffn(vg, g, t);
    int rc = ref_of(vg, g, a, &r[0]);
    if (!rc && b && t->op != EM_OP_ROPE) rc = ref_of(vg, g, b, &r[1]);
    if (!rc && t->op == EM_OP_KV_STORE) rc = ref_of(vg, g, t->src[2], &r[2]);
    if (!rc && t->op != EM_OP_KV_STORE) rc = ref_of(vg, g, t, &r[3]);
    if (rc) return rc;
    uint32_t *q = push + 4, lo, hi;
    int64_t n = t->ne[0], rows = rows_of(t);
    bool by_rows = t->op == EM_OP_MATMUL || t->op == EM_OP_GET_ROWS;
    if (by_rows && chunked(vg, a) && em_nbytes(t) <= vk->max_range)
        return run_chunks(vg, g, t, r, push);
    for (int s = 0; s < EM_MAX_SRC; s++)
        if (chunked(vg, t->src[s]) && !(by_rows && s == 0))
            return em_error(vk->err, EMBER_ERR_UNSUPPORTED, "vulkan: %s: a weight exceeds the "
                            "device's %zu-byte storage buffer range (only weight matrices of "
                            "products and row lookups are split)", em_op_name(t->op),
                            vk->max_range);
    if (em_nbytes(a) > vk->max_range || em_nbytes(t) > vk->max_range)
        return em_error(vk->err, EMBER_ERR_UNSUPPORTED, "vulkan: %s: a tensor exceeds the device's "
                        "%zu-byte storage buffer range (only weight matrices of products and "
                        "row lookups are split)", em_op_name(t->op), vk->max_range);
    switch (t->op) {
    case EM_OP_MATMUL:
        return run_matmul(vg, g, t, r, push);
    case EM_OP_MOE_ROUTE:
        return run_moe_route(vk, t, r, push);
    case EM_OP_HEAD_MATMUL:
        return run_head_matmul(vg, g, t, r, push);
    case EM_OP_SLICE:
    case EM_OP_CONCAT:
        return run_copy_cols(vg, g, t, r, push);
    case EM_OP_GET_ROWS:
        return run_get_rows(vk, t, r, push, 0, UINT32_MAX);
    case EM_OP_RMS_NORM: {
        float eps = t->fp[0];
        q[0] = (uint32_t)n, q[1] = floats(a->nb[1]), q[2] = floats(t->nb[1]), q[3] = b != NULL;
        memcpy(&q[4], &eps, 4);
        fold(rows, &lo, &hi);
        if (norm_quantizes(vg, g, t)) { /* its 8-bit copy for mul_mvq as well */
            quantized_slot(vg, g, t, &r[2], &q[5]);
            rc = em_vk_dispatch_w(vk, EM_VK_RMS_NORM_Q8, r, push, 10 * 4,
                                  (uint32_t[3]){ lo, hi, 1 }, 1u << 2);
            vg->xq_done[t - g->nodes] = !rc;
            return rc;
        }
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
    case EM_OP_KV_STORE:
        return run_kv_store(vg, g, t, r, push);
    case EM_OP_ATTN:
        return run_attn(vg, g, t, r, push);
    case EM_OP_ROPE:
        r[1] = (em_vk_ref){ vg->io, vg->io_off[t - g->nodes], rope_table_bytes(t), 0 };
        q[0] = (uint32_t)a->ne[0], q[1] = (uint32_t)t->ip[0], q[2] = (uint32_t)t->ip[1];
        q[3] = floats(a->nb[1]), q[4] = floats(a->nb[2]), q[5] = floats(t->nb[1]);
        q[6] = floats(t->nb[2]);
        return em_vk_dispatch(vk, EM_VK_ROPE, r, push, 11 * 4, (uint32_t)a->ne[1],
                              (uint32_t)a->ne[2], 1);
    default:
        return em_error(vk->err, EMBER_ERR_UNSUPPORTED, "vulkan: op %s", em_op_name(t->op));
    }
}

/* The block copies the KV cache owes (copy-on-write), every layer's K and
 * V rows of each, in order. */
static int run_kv_copies(em_vk_graph *vg) {
    em_kv *kv = vg->kv;
    size_t kb = (size_t)kv->block * kv->k_bytes, vb = (size_t)kv->block * kv->v_bytes;
    int rc = EMBER_OK;
    for (int32_t i = 0; i < kv->n_pending && !rc; i++) {
        size_t dst = (size_t)kv->pending[i][0], src = (size_t)kv->pending[i][1];
        for (int l = kv->dev_first; l < kv->dev_end && !rc; l++) {
            size_t k0 = em_kv_layer_offset(kv, l), v0 = k0 + kv_v_base(kv);
            rc = em_vk_copy(vg->vk, vg->kv_buf, k0 + src * kb, vg->kv_buf, k0 + dst * kb, kb);
            if (!rc && vb)
                rc = em_vk_copy(vg->vk, vg->kv_buf, v0 + src * vb, vg->kv_buf, v0 + dst * vb, vb);
        }
    }
    return rc;
}

/* Kept nodes' bytes, packed in node order, when they fit in staging. */
static size_t kept_bytes(const em_graph *g) {
    size_t n = 0;
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].keep && g->nodes[i].op != EM_OP_NONE) n += em_nbytes(&g->nodes[i]);
    return n;
}

/* Products folded into their one consumer (mul_mv.comp's MODE), by node:
 * fuse[i] = FUSE_SKIP for a product its consumer runs, FUSE_ADD for an add
 * that runs its product (a residual: W x + r), FUSE_SWIGLU for a SwiGLU
 * that runs both of its products (gate and up of one input). A product
 * folds only when nothing else reads it and mul_mv.comp would run it. */
enum { FUSE_NONE = 0, FUSE_SKIP = -1, FUSE_ADD = 1, FUSE_SWIGLU = 2, FUSE_ROPE = 3, FUSE_NORM = 4,
       FUSE_SWIGLU_Q8 = 5, FUSE_ADD_NORM = 6 };

/* src0 of node t through views (reshapes), and whether each view on the
 * way is read once and not kept */
static const em_tensor *through_views(const em_vk_graph *vg, const em_graph *g,
                                      const em_tensor *t, bool *single) {
    const em_tensor *x = t->src[0];
    *single = true;
    while (x && x->op == EM_OP_NONE && x->src[0]) {
        *single = *single && !x->keep && vg->uses[x - g->nodes] == 1;
        x = x->src[0];
    }
    return x;
}

/* A RoPE folds into the KV op that is its only reader (the query into
 * attention, K into the KV store; kv_store.comp and attn.comp rotate as
 * they read): rope.comp's modes, its input's elements contiguous, and for
 * K its heads too (the store reads K as rows of heads). */
static bool rope_folds(const em_vk_graph *vg, const em_graph *g, const em_tensor *t) {
    bool single;
    const em_tensor *r = through_views(vg, g, t, &single);
    if (!r || r->op != EM_OP_ROPE || r->keep || !single || vg->uses[r - g->nodes] != 1 ||
        (r->ip[1] != 0 && r->ip[1] != 2) || r->src[0]->nb[0] != sizeof(float))
        return false;
    const em_tensor *x = r->src[0];
    return t->op == EM_OP_ATTN ||
           (x->nb[1] == (size_t)x->ne[0] * sizeof(float) && x->ne[3] == 1 &&
            t->src[0]->ne[0] == x->ne[0] * x->ne[1]);
}

static const em_tensor *folded_rope(const em_vk_graph *vg, const em_graph *g, const em_tensor *t) {
    bool single;
    return vg->fuse[t - g->nodes] == FUSE_ROPE ? through_views(vg, g, t, &single) : NULL;
}

static bool same_shape(const em_tensor *a, const em_tensor *b) {
    return memcmp(a->ne, b->ne, sizeof a->ne) == 0 && memcmp(a->nb, b->nb, sizeof a->nb) == 0;
}

/* Whether node m is a product that can be folded: read once, not kept,
 * and run by mul_mv.comp. */
static bool foldable(const em_vk_graph *vg, const em_graph *g, const em_tensor *m) {
    if (m->op != EM_OP_MATMUL || m->keep || vg->uses[m - g->nodes] != 1 || chunked(vg, m->src[0]))
        return false;
    em_vk_ref r[2];
    return !ref_of(vg, g, m->src[0], &r[0]) && !ref_of(vg, g, m->src[1], &r[1]) &&
           mul_mv_fits(vg->vk, m, r) && (vg->vk->no_tiles || !mul_mm_fits(m, r));
}

/* Whether t's output and x's bytes overlap: the folded op would write
 * what it still reads. The core's planner keeps a product's inputs alive
 * through its consumer (lib/graph.c reads_of), so this holds for its
 * plans; checked all the same. */
static bool overlaps(const em_vk_graph *vg, const em_tensor *t, const em_tensor *x) {
    if (!em_vk_in_arena(vg, t) || !em_vk_in_arena(vg, x)) return false;
    const char *a = t->data, *b = x->data;
    return a < b + em_vk_extent(x) && b < a + em_vk_extent(t);
}

/* An RMS norm (weighted, not kept) folds into the products that read it
 * when they are all it has, none is itself folded into an add or a
 * SwiGLU (mul_mv.comp's NORM goes with MODE 0 only: the weight takes
 * binding 2), and mul_mv.comp runs each on the norm's input: Q, K and V
 * (and the output matmul) then sum x^2 themselves and the norm's dispatch
 * and barrier level go. Only with EMBER_VULKAN_NORM_FOLD=1: on the H100
 * each folded product took ~4 us longer (15 against 11 us for llama-3b's
 * Q), three per layer, against 7.6 us for the norm's dispatch, so decode
 * was 2-6% slower (docs/performance.md, session 14). */
static void plan_norm_fold(em_vk_graph *vg, const em_graph *g, int32_t ni) {
    const em_tensor *n = &g->nodes[ni], *x = n->src[0], *w = n->src[1];
    if (!w || n->keep || w->type != EMBER_TYPE_F32 || em_nelements(w) != n->ne[0] ||
        x->nb[0] != sizeof(float) || n->ne[2] != 1 || n->ne[3] != 1)
        return;
    em_vk_ref rx, rw;
    if (ref_of(vg, g, x, &rx) || ref_of(vg, g, w, &rw) || rx.off % 16 || rw.off % 16 ||
        x->nb[1] % 16)
        return;
    int32_t readers = 0;
    for (int32_t i = ni + 1; i < g->n_nodes && readers < vg->uses[ni]; i++) {
        const em_tensor *m = &g->nodes[i];
        bool reads = false;
        for (int s = 0; s < EM_MAX_SRC; s++) reads = reads || m->src[s] == n;
        if (!reads) continue;
        em_vk_ref r[2];
        if (m->op != EM_OP_MATMUL || m->src[1] != n || m->src[0] == n || vg->fuse[i] != FUSE_NONE ||
            chunked(vg, m->src[0]) ||
            ref_of(vg, g, m->src[0], &r[0]) || ref_of(vg, g, n, &r[1]) ||
            !mul_mv_fits(vg->vk, m, r) || (!vg->vk->no_tiles && mul_mm_fits(m, r)))
            return;
        readers++;
    }
    if (readers == 0 || readers != vg->uses[ni]) return;
    for (int32_t i = ni + 1; i < g->n_nodes; i++)
        if (g->nodes[i].op == EM_OP_MATMUL && g->nodes[i].src[1] == n) vg->fuse[i] = FUSE_NORM;
    vg->fuse[ni] = FUSE_SKIP;
}

/* The product that fused node t (FUSE_ADD or FUSE_SWIGLU) runs (for a
 * SwiGLU, the gate's: the up product has the same type and shape). */
static const em_tensor *fused_product(const em_vk_graph *vg, const em_graph *g,
                                      const em_tensor *t) {
    int mode = vg->fuse[t - g->nodes];
    if (mode == FUSE_ADD && vg->fuse[t->src[1] - g->nodes] == FUSE_SKIP) return t->src[1];
    return t->src[0];
}
/* Whether product m runs on mul_mvq.comp (8-bit input; run_fused's test). */
static bool runs_mvq(const em_vk_graph *vg, const em_graph *g, const em_tensor *m) {
    return vg->xq_off[m->src[1] - g->nodes] < XQ_IN_PLACE && takes_q8_act(vg, g, m);
}

/* The RMS norm that reads add t and can be folded into its product
 * (FUSE_ADD_NORM), or NULL: weighted by F32, not kept, wanted only as
 * 8-bit input of products (so its F32 output is never written). */
static const em_tensor *norm_after(const em_vk_graph *vg, const em_graph *g, const em_tensor *t) {
    for (int32_t j = (int32_t)(t - g->nodes) + 1; j < g->n_nodes; j++) {
        const em_tensor *n = &g->nodes[j];
        if (n->op != EM_OP_RMS_NORM || n->src[0] != t) continue;
        const em_tensor *w = n->src[1];
        if (n->keep || !w || w->type != EMBER_TYPE_F32 || em_nelements(w) != n->ne[0] ||
            n->ne[0] % 32 || !norm_quantizes(vg, g, n))
            return NULL;
        int32_t readers = 0;
        /* up to its last reader (uses counts them all): a scan to the
         * graph's end per add took ~60 us of a llama-3b token's host time */
        for (int32_t k = j + 1; k < g->n_nodes && readers < vg->uses[j]; k++) {
            const em_tensor *m = &g->nodes[k];
            bool reads = false;
            for (int s = 0; s < EM_MAX_SRC; s++) reads = reads || m->src[s] == n;
            if (!reads) continue;
            if (m->op != EM_OP_MATMUL || m->src[1] != n || m->src[0] == n ||
                (vg->fuse[k] != FUSE_NONE && vg->fuse[k] != FUSE_SKIP) || !runs_mvq(vg, g, m))
                return NULL;
            readers++;
        }
        return readers > 0 && readers == vg->uses[j] ? n : NULL;
    }
    return NULL;
}

/* 8-bit roundings folded into the products before them (mul_mvq.comp's
 * EPI): a SwiGLU's output for the down projection (FUSE_SWIGLU_Q8), and
 * the RMS norm of a residual add for the next products (FUSE_ADD_NORM,
 * the norm skipped). EMBER_VULKAN_NO_EPI=1 keeps them apart. */
static void plan_epilogues(em_vk_graph *vg, const em_graph *g) {
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const em_tensor *t = &g->nodes[i];
        int mode = vg->fuse[i];
        if ((mode != FUSE_ADD && mode != FUSE_SWIGLU) || !runs_mvq(vg, g, fused_product(vg, g, t)))
            continue;
        if (mode == FUSE_SWIGLU && vg->xq_off[i] < XQ_IN_PLACE && t->ne[0] % 32 == 0 &&
            t->nb[0] == sizeof(float) && t->ne[2] == 1 && t->ne[3] == 1)
            vg->fuse[i] = FUSE_SWIGLU_Q8;
        const em_tensor *n = mode == FUSE_ADD ? norm_after(vg, g, t) : NULL;
        if (n && t->nb[0] == sizeof(float) && t->ne[2] == 1 && t->ne[3] == 1) {
            vg->fuse[i] = FUSE_ADD_NORM;
            vg->fuse[n - g->nodes] = FUSE_SKIP;
        }
    }
}

static void plan_fusion(em_vk_graph *vg, const em_graph *g) {
    for (int32_t i = 0; i < g->n_nodes; i++) vg->uses[i] = g->nodes[i].keep ? 1 : 0, vg->fuse[i] = 0;
    for (int32_t i = 0; i < g->n_nodes; i++)
        for (int s = 0; s < EM_MAX_SRC; s++)
            if (g->nodes[i].src[s]) vg->uses[g->nodes[i].src[s] - g->nodes]++;
    char err[EM_ERRMSG_SIZE]; /* ref_of's messages are not wanted here */
    char *saved = vg->vk->err;
    vg->vk->err = err;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const em_tensor *t = &g->nodes[i], *a = t->src[0], *b = t->src[1];
        if ((t->op == EM_OP_KV_STORE || t->op == EM_OP_ATTN) && !vg->vk->no_rope_fold &&
            rope_folds(vg, g, t)) {
            bool single;
            vg->fuse[through_views(vg, g, t, &single) - g->nodes] = FUSE_SKIP;
            vg->fuse[i] = FUSE_ROPE;
        } else if (t->op == EM_OP_ADD && same_shape(a, t) && same_shape(b, t)) {
            const em_tensor *m = foldable(vg, g, b) ? b : foldable(vg, g, a) ? a : NULL;
            if (m && !overlaps(vg, t, m->src[1]))
                vg->fuse[m - g->nodes] = FUSE_SKIP, vg->fuse[i] = FUSE_ADD;
        } else if (t->op == EM_OP_SWIGLU && foldable(vg, g, a) && foldable(vg, g, b) &&
                   !overlaps(vg, t, a->src[1]) && a->src[1] == b->src[1] &&
                   a->src[0]->type == b->src[0]->type &&
                   memcmp(a->src[0]->ne, b->src[0]->ne, sizeof a->src[0]->ne) == 0 &&
                   same_shape(a, t)) {
            vg->fuse[a - g->nodes] = vg->fuse[b - g->nodes] = FUSE_SKIP;
            vg->fuse[i] = FUSE_SWIGLU;
        }
    }
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == EM_OP_RMS_NORM && vg->vk->norm_fold && !vg->vk->act_q8)
            plan_norm_fold(vg, g, i);
    if (vg->vk->act_q8 && !vg->vk->no_epi) plan_epilogues(vg, g);
    vg->vk->err = saved;
}

/* The norm FUSE_ADD_NORM node t writes (the first skipped norm of t). */
static const em_tensor *folded_norm(const em_vk_graph *vg, const em_graph *g, const em_tensor *t) {
    for (int32_t j = (int32_t)(t - g->nodes) + 1; j < g->n_nodes; j++)
        if (g->nodes[j].op == EM_OP_RMS_NORM && g->nodes[j].src[0] == t &&
            vg->fuse[j] == FUSE_SKIP)
            return &g->nodes[j];
    return NULL;
}

size_t em_vk_sync_bytes(em_vk_graph *vg, const em_graph *g) {
    plan_fusion(vg, g);
    size_t words = 0;
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (vg->fuse[i] == FUSE_SWIGLU_Q8 || vg->fuse[i] == FUSE_ADD_NORM)
            words += epi_counts(&g->nodes[i]);
    return words * sizeof(uint32_t);
}

/* Product t run with its input's RMS norm folded in (FUSE_NORM). */
static int run_norm_product(em_vk_graph *vg, const em_graph *g, const em_tensor *t) {
    em_vk_ref r[EM_VK_BINDINGS] = { { 0 } };
    uint32_t push[EM_VK_PUSH_BYTES / 4] = { 0 };
    const em_tensor *nrm = t->src[1];
    int rc = ref_of(vg, g, t->src[0], &r[0]);
    if (!rc) rc = ref_of(vg, g, nrm->src[0], &r[1]);
    if (!rc) rc = ref_of(vg, g, nrm->src[1], &r[2]);
    if (!rc) rc = ref_of(vg, g, t, &r[3]);
    if (rc) return rc;
    return run_mul_mv(vg->vk, t, t, 3, r, push, nrm->src[0], nrm->fp[0]);
}

/* Node t (an add or a SwiGLU) with its product(s) folded in. */
static int run_fused(em_vk_graph *vg, const em_graph *g, const em_tensor *t) {
    em_vk_ref r[EM_VK_BINDINGS] = { { 0 } };
    uint32_t push[EM_VK_PUSH_BYTES / 4] = { 0 };
    int fuse = vg->fuse[t - g->nodes];
    int mode = fuse == FUSE_SWIGLU_Q8 ? FUSE_SWIGLU : fuse == FUSE_ADD_NORM ? FUSE_ADD : fuse;
    const em_tensor *m = t->src[0], *other = t->src[1];
    if (mode == FUSE_ADD && vg->fuse[t->src[1] - g->nodes] == FUSE_SKIP)
        m = t->src[1], other = t->src[0];
    int rc = round_input(vg, g, m);
    if (!rc) rc = ref_of(vg, g, m->src[0], &r[0]);
    if (!rc) rc = ref_of(vg, g, m->src[1], &r[1]);
    if (!rc) rc = ref_of(vg, g, mode == FUSE_ADD ? other : other->src[0], &r[2]);
    if (!rc) rc = ref_of(vg, g, t, &r[3]);
    if (rc) return rc;
    if (!runs_mvq(vg, g, m)) return run_mul_mv(vg->vk, m, t, mode, r, push, m->src[1], 0.0f);
    if (fuse == mode) return run_mul_mvq(vg, g, m, t, mode, r, push, NULL);
    mvq_epi epi = { t, NULL, (uint32_t)vg->sync_used };
    if (fuse == FUSE_ADD_NORM && !(epi.norm = epi.out = folded_norm(vg, g, t)))
        return em_error(vg->vk->err, EMBER_ERR_INTERNAL, "vulkan: a folded norm went missing");
    vg->sync_used += epi_counts(t);
    if (vg->sync_used * sizeof(uint32_t) > vg->sync->size)
        return em_error(vg->vk->err, EMBER_ERR_INTERNAL, "vulkan: more counts than reserved");
    return run_mul_mvq(vg, g, m, t, mode, r, push, &epi);
}

int em_vk_run(em_vk_graph *vg, const em_graph *g, bool *staged) {
    em_vk *vk = vg->vk;
    uint32_t copies = vg->kv ? (uint32_t)vg->kv->n_pending * 2u *
                                   (uint32_t)(vg->kv->dev_end - vg->kv->dev_first) : 0;
    *staged = kept_bytes(g) <= vk->staging.size;
    int rc = em_vk_begin(vk, (uint32_t)g->n_nodes * 3u + copies); /* quant_act's too */
    if (rc) return rc;
    if (vg->kv) rc = run_kv_copies(vg);
    /* the fusion plan: em_vk_sync_bytes made it for this graph (ops.h) */
    vg->sync_used = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) vg->xq_done[i] = 0;
    for (int32_t i = 0; i < g->n_nodes && !rc; i++) {
        if (g->nodes[i].op == EM_OP_NONE || vg->fuse[i] == FUSE_SKIP) continue;
        const em_tensor *t = &g->nodes[i];
        if (vg->fuse[i] == FUSE_ADD || vg->fuse[i] == FUSE_SWIGLU || vg->fuse[i] == FUSE_SWIGLU_Q8 ||
            vg->fuse[i] == FUSE_ADD_NORM)
            rc = run_fused(vg, g, t);
        else if (vg->fuse[i] == FUSE_NORM) rc = run_norm_product(vg, g, t);
        else rc = run_node(vg, g, t);
    }
    size_t at = 0;
    for (int32_t i = 0; i < g->n_nodes && !rc && *staged; i++) {
        const em_tensor *t = &g->nodes[i];
        if (!t->keep || t->op == EM_OP_NONE) continue;
        rc = em_vk_copy(vk, vg->arena, (size_t)((const char *)t->data - vg->shadow), &vk->staging,
                        at, em_nbytes(t));
        at += em_nbytes(t);
    }
    if (rc) {
        vk->recording = false;
        return rc;
    }
    rc = em_vk_submit(vk);
    if (!rc && vg->kv) vg->kv->n_pending = 0;
    return rc;
}
