/* Device copies of a backend's constant leaves (weights, model tables),
 * made once and found by host address. Q8_0 and Q4_0 tensors are written
 * in the device layout of shaders/common.glsl (quants apart from scales,
 * so the shaders read quants with aligned 16-byte loads; GGUF's 34- and
 * 18-byte blocks allow no wide aligned load). Copies go into slabs of up to
 * SLAB bytes (a tensor larger than that gets a slab of its own), so no
 * single allocation approaches the device's allocation limit. */
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

/* Block types written in the device layout: bytes of quants per block. */
static size_t quant_bytes(uint32_t type) {
    return type == EMBER_TYPE_Q8_0 ? 32 : type == EMBER_TYPE_Q4_0 ? 16 : 0;
}

static size_t align16(size_t n) { return (n + 15) / 16 * 16; }

/* t's size on the device, and where its scales start (0: not a block type) */
static size_t device_bytes(const em_tensor *t, size_t *scales) {
    size_t qb = quant_bytes(t->type), n = em_nbytes(t);
    *scales = 0;
    if (!qb) return n;
    size_t blocks = n / (qb + 2);
    *scales = align16(blocks * qb);
    return *scales + blocks * 2;
}

/* Uploads t's blocks in the device layout through a bounded host buffer. */
static int upload_blocks(em_vk *vk, em_vk_buf *slab, size_t off, const em_tensor *t,
                         size_t scales) {
    enum { CHUNK = 1 << 16 }; /* blocks per step */
    size_t qb = quant_bytes(t->type), bb = qb + 2, blocks = em_nbytes(t) / bb;
    uint8_t *tmp = em_malloc(vk->alloc, CHUNK * qb);
    if (!tmp) return em_error(vk->err, EMBER_ERR_NO_MEMORY, "vulkan: no memory to repack weights");
    const uint8_t *src = t->data;
    int rc = EMBER_OK;
    for (size_t b0 = 0; b0 < blocks && !rc; b0 += CHUNK) {
        size_t nb = blocks - b0 < CHUNK ? blocks - b0 : CHUNK;
        for (size_t i = 0; i < nb; i++) memcpy(tmp + i * qb, src + (b0 + i) * bb + 2, qb);
        rc = em_vk_upload(vk, slab, off + b0 * qb, tmp, nb * qb);
        for (size_t i = 0; i < nb && !rc; i++) memcpy(tmp + i * 2, src + (b0 + i) * bb, 2);
        if (!rc) rc = em_vk_upload(vk, slab, off + scales + b0 * 2, tmp, nb * 2);
    }
    em_free(vk->alloc, tmp);
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
    int rc = em_vk_buf_create(vk, size, false, &w->slabs[w->n_slabs]);
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
        size_t scales, bytes = device_bytes(t, &scales);
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
        size_t scales, bytes = device_bytes(t, &scales), off = 0;
        uint32_t slab = 0;
        if ((rc = place(vk, w, bytes, &slab, &off))) break;
        rc = scales ? upload_blocks(vk, &w->slabs[slab], off, t, scales)
                    : em_vk_upload(vk, &w->slabs[slab], off, t->data, bytes);
        if (rc) break;
        uint32_t j = hash_ptr(t->data) & (w->cap - 1);
        while (w->tab[j].host) j = (j + 1) & (w->cap - 1);
        w->tab[j] = (em_vk_wentry){ t->data, bytes, slab, off, scales };
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
