/* Device copies of a backend's constant leaves (weights, model tables),
 * made once and found by host address. Block-quantized tensors are
 * written in the device layout of shaders/common.glsl (quants apart from
 * scales, so the shaders read quants with aligned 16-byte loads; GGUF's
 * 18- to 210-byte blocks allow no wide aligned load). Copies go into slabs of up to
 * SLAB bytes (a tensor larger than that gets a slab of its own), so no
 * single allocation approaches the device's allocation limit. A matrix
 * larger than the device's storage buffer range (lavapipe: 128 MiB) is
 * stored in chunks of whole rows that each fit one binding, each chunk in
 * the layout of a tensor of its own: its products and row lookups run a
 * dispatch per chunk (ops.c). */
#include <string.h>

#include "ops.h"

#define SLAB ((size_t)512 << 20)
#define ALIGN 256

static uint32_t hash_ptr(const void *p) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (uint32_t)x;
}

static em_vk_wentry *find(const em_vk_weights *w, const void *host) {
    if (!w->cap) return NULL;
    for (uint32_t i = hash_ptr(host) & (w->cap - 1);; i = (i + 1) & (w->cap - 1)) {
        em_vk_wentry *e = &w->tab[i];
        if (!e->host) return NULL;
        if (e->host == host) return e;
    }
}

bool em_vk_weights_find(const em_vk_weights *w, const void *host, size_t bytes, em_vk_ref *out) {
    const em_vk_wentry *e = find(w, host);
    if (!e || e->bytes < bytes) return false;
    *out = (em_vk_ref){ &w->slabs[e->slab], e->off, e->bytes, e->scales };
    return true;
}

/* The device layout of a block type (shaders/common.glsl): per GGUF block
 * (unit), `qlen` bytes of quants from `qoff` go to the quants stream (a
 * multiple of 16 bytes, so every unit's quants stay 16-byte aligned), and
 * the rest -- scales, mins, high bits -- to the meta stream, `mstride`
 * bytes per unit, rearranged by pack_meta so that every field the shaders
 * read as a word is word-aligned. */
typedef struct dev_layout {
    size_t unit;    /* GGUF bytes per block */
    size_t qoff, qlen;
    size_t mstride; /* meta bytes per block on the device */
} dev_layout;

static bool layout_of(uint32_t type, dev_layout *l) {
    switch (type) {
    case EMBER_TYPE_Q8_0: *l = (dev_layout){ 34, 2, 32, 2 }; return true;
    case EMBER_TYPE_Q4_0: *l = (dev_layout){ 18, 2, 16, 2 }; return true;
    case EMBER_TYPE_Q4_1: *l = (dev_layout){ 20, 4, 16, 4 }; return true;
    case EMBER_TYPE_Q5_0: *l = (dev_layout){ 22, 6, 16, 8 }; return true;
    case EMBER_TYPE_Q5_1: *l = (dev_layout){ 24, 8, 16, 8 }; return true;
    case EMBER_TYPE_Q4_K: *l = (dev_layout){ 144, 16, 128, 16 }; return true;
    case EMBER_TYPE_Q5_K: *l = (dev_layout){ 176, 16, 160, 16 }; return true;
    case EMBER_TYPE_Q6_K: *l = (dev_layout){ 210, 0, 192, 20 }; return true;
    default: return false;
    }
}

/* A block's meta bytes in their device order: Q5_0's d, 2 bytes of zeros,
 * qh (word 1); Q6_K's scales[16] then d and 2 zeros; the others' header
 * bytes as stored (Q8_0/Q4_0 d, Q4_1 d m, Q5_1 d m qh, Q4_K/Q5_K d dmin
 * scales[12]). */
static void pack_meta(uint32_t type, const dev_layout *l, const uint8_t *b, uint8_t *m) {
    memset(m, 0, l->mstride);
    if (type == EMBER_TYPE_Q5_0) {
        memcpy(m, b, 2);
        memcpy(m + 4, b + 2, 4);
    } else if (type == EMBER_TYPE_Q6_K) {
        memcpy(m, b + 192, 18);
    } else {
        memcpy(m, b, l->unit - l->qlen);
    }
}

static size_t align16(size_t n) { return (n + 15) / 16 * 16; }

/* t's size on the device, and where its meta stream starts (0: not a
 * block type) */
/* A leaf is copied over its whole span (em_vk_extent): a strided view
 * (MLA's v_b, every head's rows of a larger tensor) keeps its rows in
 * their places, so a shader steps from head to head by rows. */
static size_t device_bytes(const em_tensor *t, size_t *scales) {
    dev_layout l;
    size_t n = em_vk_extent(t);
    *scales = 0;
    if (!layout_of(t->type, &l)) return n;
    size_t blocks = n / l.unit;
    *scales = align16(blocks * l.qlen);
    return *scales + blocks * l.mstride;
}

/* Whether t is stored in chunks on this device, and their rows and stride:
 * a matrix (2D, contiguous rows) whose device copy exceeds the binding
 * range less the offset alignment, cut into the most rows (a multiple of
 * 32) that fit it. */
static bool chunk_plan(const em_vk *vk, const em_tensor *t, size_t *rows, size_t *stride) {
    size_t scales, bytes = device_bytes(t, &scales), lim = vk->max_range - ALIGN;
    if (bytes <= lim || t->ne[2] != 1 || t->ne[3] != 1 || em_vk_extent(t) != em_nbytes(t))
        return false;
    em_tensor one = *t; /* a chunk: the same rows, fewer of them */
    size_t r = 0;
    for (size_t k = 32; k <= (size_t)t->ne[1]; k += 32) {
        one.ne[1] = (int64_t)k;
        if (device_bytes(&one, &scales) > lim) break;
        r = k;
    }
    if (r == 0) return false; /* not even 32 rows fit: left whole (and refused) */
    one.ne[1] = (int64_t)r;
    *rows = r;
    *stride = (device_bytes(&one, &scales) + ALIGN - 1) / ALIGN * ALIGN;
    return true;
}

/* t's rows [r0, r0 + n) as a tensor of their own (host data and shape) */
static em_tensor rows_of_tensor(const em_tensor *t, size_t r0, size_t n) {
    em_tensor c = *t;
    c.data = (char *)t->data + r0 * t->nb[1];
    c.ne[1] = (int64_t)n;
    return c;
}

bool em_vk_weights_chunk(const em_vk_weights *w, const em_tensor *t, size_t r0, em_vk_ref *out,
                         size_t *rows) {
    const em_vk_wentry *e = find(w, t->data);
    if (!e || !e->chunk_rows || r0 % e->chunk_rows || r0 >= (size_t)t->ne[1]) return false;
    size_t n = (size_t)t->ne[1] - r0 < e->chunk_rows ? (size_t)t->ne[1] - r0 : e->chunk_rows;
    em_tensor c = rows_of_tensor(t, r0, n);
    size_t scales, bytes = device_bytes(&c, &scales);
    *out = (em_vk_ref){ &w->slabs[e->slab], e->off + r0 / e->chunk_rows * e->chunk_stride, bytes,
                        scales };
    *rows = n;
    return true;
}

/* Uploads t's blocks in the device layout through a bounded host buffer. */
static int upload_blocks(em_vk *vk, em_vk_buf *slab, size_t off, const em_tensor *t,
                         size_t scales) {
    enum { CHUNK = 1 << 14 }; /* blocks per step */
    dev_layout l;
    if (!layout_of(t->type, &l))
        return em_error(vk->err, EMBER_ERR_INTERNAL, "vulkan: type %u has no device layout", t->type);
    size_t blocks = em_vk_extent(t) / l.unit;
    uint8_t *tmp = em_malloc(vk->alloc, CHUNK * l.qlen); /* mstride <= qlen for each type */
    if (!tmp) return em_error(vk->err, EMBER_ERR_NO_MEMORY, "vulkan: no memory to repack weights");
    const uint8_t *src = t->data;
    int rc = EMBER_OK;
    for (size_t b0 = 0; b0 < blocks && !rc; b0 += CHUNK) {
        size_t nb = blocks - b0 < CHUNK ? blocks - b0 : CHUNK;
        for (size_t i = 0; i < nb; i++) memcpy(tmp + i * l.qlen, src + (b0 + i) * l.unit + l.qoff, l.qlen);
        rc = em_vk_upload(vk, slab, off + b0 * l.qlen, tmp, nb * l.qlen);
        for (size_t i = 0; i < nb && !rc; i++)
            pack_meta(t->type, &l, src + (b0 + i) * l.unit, tmp + i * l.mstride);
        if (!rc) rc = em_vk_upload(vk, slab, off + scales + b0 * l.mstride, tmp, nb * l.mstride);
    }
    em_free(vk->alloc, tmp);
    return rc;
}

/* Uploads t in chunks of `rows` rows, `stride` bytes apart (chunk_plan). */
static int upload_chunks(em_vk *vk, em_vk_buf *slab, size_t off, const em_tensor *t, size_t rows,
                         size_t stride) {
    int rc = EMBER_OK;
    for (size_t r0 = 0; r0 < (size_t)t->ne[1] && !rc; r0 += rows) {
        size_t n = (size_t)t->ne[1] - r0 < rows ? (size_t)t->ne[1] - r0 : rows, scales;
        em_tensor c = rows_of_tensor(t, r0, n);
        size_t bytes = device_bytes(&c, &scales), at = off + r0 / rows * stride;
        rc = scales ? upload_blocks(vk, slab, at, &c, scales) : em_vk_upload(vk, slab, at, c.data, bytes);
    }
    return rc;
}

static int grow_table(em_vk *vk, em_vk_weights *w, uint32_t want) {
    if (want * 2 <= w->cap) return EMBER_OK;
    uint32_t cap = w->cap ? w->cap : 64;
    while (cap < want * 2) cap *= 2;
    em_vk_wentry *t = em_calloc(vk->alloc, cap, sizeof *t);
    if (!t) return em_error(vk->err, EMBER_ERR_NO_MEMORY, "vulkan: no memory for the weight table");
    em_vk_wentry *old = w->tab;
    uint32_t old_cap = w->cap;
    w->tab = t, w->cap = cap;
    for (uint32_t i = 0; i < old_cap; i++) {
        if (!old[i].host) continue;
        uint32_t j = hash_ptr(old[i].host) & (cap - 1);
        while (t[j].host) j = (j + 1) & (cap - 1);
        t[j] = old[i];
    }
    em_free(vk->alloc, old);
    return EMBER_OK;
}

static size_t align_up(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

/* Room for `bytes` in the last slab, or a new slab. */
static int place(em_vk *vk, em_vk_weights *w, size_t bytes, uint32_t *slab, size_t *off) {
    if (w->n_slabs && w->used + bytes <= w->slabs[w->n_slabs - 1].size) {
        *slab = w->n_slabs - 1;
        *off = w->used;
        w->used = align_up(w->used + bytes);
        return EMBER_OK;
    }
    if (w->n_slabs == EM_VK_MAX_SLABS)
        return em_error(vk->err, EMBER_ERR_NO_MEMORY, "vulkan: more than %d weight slabs",
                        EM_VK_MAX_SLABS);
    /* whole ALIGN units: shaders read block types by 32-bit words, and a
     * tensor's last word may hold its final two bytes only */
    size_t size = align_up(bytes) > w->next_slab ? align_up(bytes) : w->next_slab;
    int rc = em_vk_buf_create(vk, size, EM_VK_MEM_DEVICE, &w->slabs[w->n_slabs]);
    if (rc) return rc;
    *slab = w->n_slabs++;
    *off = 0;
    w->used = align_up(bytes);
    return EMBER_OK;
}

/* A leaf this cache serves: constant, outside the arena, with data. */
static bool is_constant(const em_vk_graph *vg, const em_tensor *t) {
    return t->op == EM_OP_NONE && t->data && !(t->flags & EM_TENSOR_INPUT) &&
           !em_vk_in_arena(vg, t);
}

int em_vk_weights_add(em_vk_graph *vg, const em_graph *g) {
    em_vk *vk = vg->vk;
    em_vk_weights *w = vg->weights;
    size_t missing = 0;
    uint32_t n_new = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const em_tensor *t = &g->nodes[i];
        if (!is_constant(vg, t)) continue;
        const em_vk_wentry *e = find(w, t->data);
        size_t scales, bytes = device_bytes(t, &scales), crows, cstride;
        if (chunk_plan(vk, t, &crows, &cstride))
            bytes = ((size_t)t->ne[1] + crows - 1) / crows * cstride;
        if (e && e->bytes >= bytes) continue;
        if (e)
            return em_error(vk->err, EMBER_ERR_INTERNAL, "vulkan: a constant leaf grew (%zu -> "
                            "%zu bytes)", e->bytes, bytes);
        missing += align_up(bytes);
        n_new++;
    }
    if (!n_new) return EMBER_OK;
    /* one slab for everything new when it fits a slab, so a model's
     * weights do not straddle a half-used one */
    w->next_slab = missing < SLAB ? missing : SLAB;
    int rc = grow_table(vk, w, w->n + n_new);
    for (int32_t i = 0; i < g->n_nodes && !rc; i++) {
        const em_tensor *t = &g->nodes[i];
        if (!is_constant(vg, t) || find(w, t->data)) continue;
        size_t scales, bytes = device_bytes(t, &scales), off = 0, crows = 0, cstride = 0;
        bool chunked = chunk_plan(vk, t, &crows, &cstride);
        if (chunked) bytes = ((size_t)t->ne[1] + crows - 1) / crows * cstride;
        uint32_t slab = 0;
        if ((rc = place(vk, w, bytes, &slab, &off))) break;
        if (chunked) {
            rc = upload_chunks(vk, &w->slabs[slab], off, t, crows, cstride);
            scales = 0;
        } else {
            rc = scales ? upload_blocks(vk, &w->slabs[slab], off, t, scales)
                        : em_vk_upload(vk, &w->slabs[slab], off, t->data, bytes);
        }
        if (rc) break;
        uint32_t j = hash_ptr(t->data) & (w->cap - 1);
        while (w->tab[j].host) j = (j + 1) & (w->cap - 1);
        w->tab[j] = (em_vk_wentry){ t->data, bytes, slab, off, scales, crows, cstride };
        w->n++;
        w->bytes += bytes;
    }
    return rc;
}

void em_vk_weights_free(em_vk *vk, em_vk_weights *w) {
    for (uint32_t i = 0; i < w->n_slabs; i++) em_vk_buf_destroy(vk, &w->slabs[i]);
    em_free(vk->alloc, w->tab);
    memset(w, 0, sizeof *w);
}
