/* The Vulkan backend's ops table (lib/backend.h).
 *
 * Memory (backends/vulkan/ops.h): the activations arena is a device buffer
 * with a host shadow, constant leaves are copied once into weight slabs,
 * per-run data goes through a host-visible io buffer, and the KV cache's
 * rows live in a device buffer of their own (kv_attach). A compute writes
 * io, runs the graph as one submission (the KV cache's pending block
 * copies first, the kept nodes copied to staging last) and copies the kept
 * nodes into the shadow, where the core reads them. Command buffers are
 * reused for graphs of equal shape (record.c). Not yet: layer splits with
 * the CPU; weights shared between contexts of one model. */
#include <string.h>

#include "../../lib/backend.h"
#include "ops.h"

typedef struct vk_backend {
    em_vk vk;
    em_vk_buf arena;  /* device */
    char *shadow;     /* host mirror of the arena's offsets */
    size_t arena_size;
    em_vk_weights weights;
    em_vk_buf io;     /* host-visible: per-run data */
    size_t *io_off;   /* per node */
    int32_t *scratch; /* 3 per node: em_vk_graph's uses, fuse and xq_done */
    size_t *xq_off;   /* per node */
    em_vk_buf xq;     /* device: 8-bit activations (act_type Q8_0) */
    em_vk_buf attn_part; /* device: split attention's scratch */
    em_vk_buf moe;       /* device: MoE layers' per-pair rows */
    em_vk_buf sync;      /* device: folded roundings' counts */
    int32_t io_cap;   /* entries of io_off */
    em_kv *kv;        /* attached cache, or NULL */
    em_vk_buf kv_buf;
} vk_backend;

static bool vk_supports_op(const em_backend *b, const em_tensor *t) {
    return em_vk_op_supported(&((const vk_backend *)b->impl)->vk, t);
}

static int vk_buffer_alloc(em_backend *b, size_t size, em_buffer *out) {
    vk_backend *v = b->impl;
    if (v->shadow)
        return em_error(b->err, EMBER_ERR_UNSUPPORTED, "vulkan: one arena per context");
    v->shadow = em_malloc_aligned(&b->alloc, size, 64);
    if (!v->shadow) return em_error(b->err, EMBER_ERR_NO_MEMORY, "vulkan: no host memory");
    int rc = em_vk_buf_create(&v->vk, size, EM_VK_MEM_DEVICE, &v->arena);
    if (rc) {
        em_free_aligned(&b->alloc, v->shadow);
        v->shadow = NULL;
        return rc;
    }
    v->arena_size = size;
    *out = (em_buffer){ v->shadow, size, &v->arena };
    return EMBER_OK;
}

static void vk_buffer_free(em_backend *b, em_buffer *buf) {
    vk_backend *v = b->impl;
    em_vk_cache_clear(&v->vk);
    em_vk_buf_destroy(&v->vk, &v->arena);
    em_free_aligned(&b->alloc, v->shadow);
    v->shadow = NULL;
    v->arena_size = 0;
    buf->impl = NULL;
}

static int vk_buffer_write(em_backend *b, em_buffer *buf, size_t off, const void *src, size_t n) {
    vk_backend *v = b->impl;
    memcpy((char *)buf->base + off, src, n);
    return em_vk_upload(&v->vk, &v->arena, off, src, n);
}

static int vk_buffer_read(em_backend *b, const em_buffer *buf, size_t off, void *dst, size_t n) {
    vk_backend *v = b->impl;
    (void)buf;
    return em_vk_download(&v->vk, &v->arena, off, dst, n);
}

static em_vk_graph graph_view(vk_backend *v, const em_graph *g) {
    return (em_vk_graph){ .vk = &v->vk, .shadow = v->shadow, .arena_size = v->arena_size,
                          .arena = &v->arena, .weights = &v->weights, .io = &v->io,
                          .io_off = v->io_off, .uses = v->scratch,
                          .fuse = v->scratch ? v->scratch + v->io_cap : NULL, .kv = g->kv,
                          .kv_buf = &v->kv_buf, .xq_off = v->xq_off,
                          .xq_done = v->scratch ? v->scratch + 2 * (size_t)v->io_cap : NULL,
                          .xq = &v->xq, .attn_part = &v->attn_part,
                          .moe = &v->moe, .sync = &v->sync };
}

/* A buffer of counts the shaders leave at zero after each run (the split
 * attention's scratch, the folded roundings' counts), made `need` bytes
 * and zeroed. On failure there is none and the evaluation fails with the
 * status (out of memory, say); a later one tries again. */
static int zeroed_grow(em_backend *b, em_vk_buf *buf, size_t need) {
    vk_backend *v = b->impl;
    em_vk_cache_clear(&v->vk);
    em_vk_buf_destroy(&v->vk, buf);
    void *zeros = em_calloc(&b->alloc, 1, need);
    if (!zeros) return em_error(b->err, EMBER_ERR_NO_MEMORY, "vulkan: no host memory");
    int rc = em_vk_buf_create(&v->vk, need, EM_VK_MEM_DEVICE, buf);
    if (!rc) rc = em_vk_upload(&v->vk, buf, 0, zeros, need);
    em_free(&b->alloc, zeros);
    if (rc) em_vk_buf_destroy(&v->vk, buf);
    return rc;
}

/* Room for g's per-node table and per-run data (laid out in vg), and its
 * constant leaves on the device; for a graph no larger than the reserved
 * one, only the layout and a look-up per leaf. A bigger io buffer replaces
 * the old one, so recorded command buffers (which name it) are forgotten. */
static int prepare(em_backend *b, const em_graph *g, em_vk_graph *vg) {
    vk_backend *v = b->impl;
    if (g->n_nodes > v->io_cap) {
        size_t *o = em_calloc(&b->alloc, (size_t)g->n_nodes, sizeof *o);
        size_t *xo = em_calloc(&b->alloc, (size_t)g->n_nodes, sizeof *xo);
        int32_t *sc = em_calloc(&b->alloc, 3 * (size_t)g->n_nodes, sizeof *sc);
        if (!o || !xo || !sc) {
            em_free(&b->alloc, o);
            em_free(&b->alloc, xo);
            em_free(&b->alloc, sc);
            return em_error(b->err, EMBER_ERR_NO_MEMORY, "vulkan: no memory for the node tables");
        }
        em_free(&b->alloc, v->io_off);
        em_free(&b->alloc, v->xq_off);
        em_free(&b->alloc, v->scratch);
        v->io_off = o;
        v->xq_off = xo;
        v->scratch = sc;
        v->io_cap = g->n_nodes;
    }
    *vg = graph_view(v, g);
    size_t need = em_vk_io_layout(vg, g);
    if (need > v->io.size) {
        em_vk_cache_clear(&v->vk);
        em_vk_buf_destroy(&v->vk, &v->io);
        int rc = em_vk_buf_create(&v->vk, need < 4096 ? 4096 : need, EM_VK_MEM_UPLOAD, &v->io);
        if (rc) return rc;
    }
    int rc = em_vk_weights_add(vg, g);
    if (rc) return rc;
    need = em_vk_xq_layout(vg, g);
    if (need > v->xq.size) {
        em_vk_cache_clear(&v->vk);
        em_vk_buf_destroy(&v->vk, &v->xq);
        if ((rc = em_vk_buf_create(&v->vk, need, EM_VK_MEM_DEVICE, &v->xq))) return rc;
    }
    need = em_vk_moe_bytes(g);
    if (need > v->moe.size) {
        em_vk_cache_clear(&v->vk);
        em_vk_buf_destroy(&v->vk, &v->moe);
        if ((rc = em_vk_buf_create(&v->vk, need, EM_VK_MEM_DEVICE, &v->moe))) return rc;
    }
    need = em_vk_sync_bytes(vg, g);
    if (need > v->sync.size && (rc = zeroed_grow(b, &v->sync, need))) return rc;
    need = em_vk_attn_part_bytes(vg, g);
    if (need > v->attn_part.size) return zeroed_grow(b, &v->attn_part, need);
    return EMBER_OK;
}

static int vk_graph_reserve(em_backend *b, const em_graph *g) {
    em_vk_graph vg;
    return prepare(b, g, &vg);
}

/* The routing statistics (ember_expert_counts): each MoE layer's chosen
 * experts, from its route, which the graph keeps (so it is on the host). */
static void count_experts(const em_graph *g) {
    for (int32_t i = 0; g->expert_counts && i < g->n_nodes; i++) {
        const em_tensor *t = &g->nodes[i];
        if (t->op != EM_OP_MOE_FFN || !t->src[1]->keep) continue;
        const em_tensor *route = t->src[1];
        int64_t nu = t->ip[0];
        uint64_t *counts = g->expert_counts + (size_t)t->ip[1] * (size_t)g->stats_n_expert;
        for (int64_t k = 0; k < route->ne[1]; k++) {
            const float *ids = (const float *)((const char *)route->data + k * route->nb[1]) + nu;
            for (int64_t j = 0; j < nu; j++)
                if (ids[j] >= 0 && ids[j] < (float)g->stats_n_expert) counts[(size_t)ids[j]]++;
        }
    }
}

static int vk_graph_compute(em_backend *b, em_graph *g) {
    vk_backend *v = b->impl;
    if (!v->shadow) return em_error(b->err, EMBER_ERR_BAD_STATE, "vulkan: no arena");
    if (g->kv && ((em_kv *)g->kv != v->kv || !v->kv_buf.buf))
        return em_error(b->err, EMBER_ERR_BAD_STATE, "vulkan: the graph's KV cache is not the "
                        "one attached");
    if (v->kv && v->kv->pending_lost)
        return em_error(b->err, EMBER_ERR_BAD_STATE, "vulkan: KV block copies were lost after "
                        "failed evaluations; clear every sequence (ember_seq_clear(ctx, -1))");
    em_vk_graph vg;
    int rc = prepare(b, g, &vg);
    if (rc) return rc;
    em_vk_io_fill(&vg, g);
    bool staged;
    if ((rc = em_vk_run(&vg, g, &staged))) return rc;
    size_t at = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) { /* outputs back to the host */
        em_tensor *t = &g->nodes[i];
        if (!t->keep || t->op == EM_OP_NONE) continue;
        size_t n = em_nbytes(t);
        if (staged) memcpy(t->data, (char *)v->vk.staging.map + at, n);
        else if ((rc = em_vk_download(&v->vk, &v->arena, (size_t)((char *)t->data - v->shadow),
                                      t->data, n)))
            return rc;
        at += n;
    }
    count_experts(g);
    return EMBER_OK;
}

/* The cache's rows in one device buffer. Each layer (K then V rows) is
 * bound as one range, so it must fit the device's storage-buffer range;
 * F16 rows are written as whole 32-bit words, so they have even lengths. */
static int vk_kv_attach(em_backend *b, em_kv *kv) {
    vk_backend *v = b->impl;
    size_t layer = em_kv_layer_bytes(kv);
    if (layer > v->vk.max_range)
        return em_error(b->err, EMBER_ERR_UNSUPPORTED, "vulkan: one layer of the KV cache takes "
                        "%zu bytes, more than the device binds at once (%zu); use fewer "
                        "positions or sequences", layer, v->vk.max_range);
    if (kv->type == EMBER_TYPE_F16 && (kv->k_row % 2 || kv->v_row % 2))
        return em_error(b->err, EMBER_ERR_UNSUPPORTED, "vulkan: an F16 KV cache needs rows of "
                        "even length");
    size_t bytes = em_kv_device_bytes(kv);
    int rc = em_vk_buf_create(&v->vk, bytes ? bytes : 4, EM_VK_MEM_DEVICE, &v->kv_buf);
    if (rc) return rc;
    v->kv = kv;
    return EMBER_OK;
}

static void vk_destroy(em_backend *b) {
    vk_backend *v = b->impl;
    em_vk_weights_free(&v->vk, &v->weights);
    em_vk_buf_destroy(&v->vk, &v->io);
    em_vk_buf_destroy(&v->vk, &v->kv_buf);
    em_vk_buf_destroy(&v->vk, &v->xq);
    em_vk_buf_destroy(&v->vk, &v->attn_part);
    em_vk_buf_destroy(&v->vk, &v->sync);
    em_vk_buf_destroy(&v->vk, &v->moe);
    em_vk_buf_destroy(&v->vk, &v->arena);
    em_free_aligned(&b->alloc, v->shadow);
    em_free(&b->alloc, v->io_off);
    em_free(&b->alloc, v->xq_off);
    em_free(&b->alloc, v->scratch);
    em_vk_close(&v->vk);
    em_alloc a = b->alloc;
    em_free(&a, v);
    em_free(&a, b);
}

static const em_backend_fns vk_fns = {
    .name = "vulkan",
    .supports_op = vk_supports_op,
    .buffer_alloc = vk_buffer_alloc,
    .buffer_free = vk_buffer_free,
    .buffer_write = vk_buffer_write,
    .buffer_read = vk_buffer_read,
    .graph_reserve = vk_graph_reserve,
    .graph_compute = vk_graph_compute,
    .kv_attach = vk_kv_attach,
    .destroy = vk_destroy,
};

/* Any failure to find a device is "not available" (ember.h), with the
 * cause kept in the message. */
int em_vulkan_available(char *err) {
    int n = em_vk_count_devices(err);
    if (n < 0) return EMBER_ERR_NOT_AVAILABLE;
    if (n == 0) return em_error(err, EMBER_ERR_NOT_AVAILABLE, "vulkan: no device");
    return EMBER_OK;
}

int em_vulkan_backend_create(const em_backend_config *cfg, const em_alloc *a, char *err,
                             em_backend **out) {
    *out = NULL;
    em_backend *b = em_calloc(a, 1, sizeof *b);
    vk_backend *v = em_calloc(a, 1, sizeof *v);
    if (!b || !v) {
        em_free(a, b);
        em_free(a, v);
        return em_error(err, EMBER_ERR_NO_MEMORY, "vulkan: no memory for the backend");
    }
    b->fns = &vk_fns;
    b->alloc = *a;
    b->err = err;
    b->impl = v;
    int rc = em_vk_open(&v->vk, cfg->device, &b->alloc, err);
    if (rc) {
        em_free(a, b);
        em_free(a, v);
        return rc;
    }
    v->vk.act_q8 = cfg->act_type == EMBER_TYPE_Q8_0;
    *out = b;
    return EMBER_OK;
}

/* The device's name, for tests and tools ("" when b is not Vulkan). */
const char *em_vulkan_device_name(const em_backend *b) {
    return b && b->fns == &vk_fns ? ((const vk_backend *)b->impl)->vk.name : "";
}

/* Runs recorded afresh and runs that reused a command buffer, for tests. */
void em_vulkan_record_stats(const em_backend *b, uint64_t *recorded, uint64_t *reused) {
    const vk_backend *v = b && b->fns == &vk_fns ? b->impl : NULL;
    *recorded = v ? v->vk.recorded : 0;
    *reused = v ? v->vk.reused : 0;
}

void em_vulkan_run_stats(const em_backend *b, uint64_t *commands, uint64_t *barriers) {
    const vk_backend *v = b && b->fns == &vk_fns ? b->impl : NULL;
    *commands = v ? v->vk.commands : 0;
    *barriers = v ? v->vk.barriers : 0;
}

uint32_t em_vulkan_dispatches(const em_backend *b, const char *prefix) {
    const vk_backend *v = b && b->fns == &vk_fns ? b->impl : NULL;
    uint32_t n = 0;
    char nm[32];
    for (uint32_t i = 0; v && i < v->vk.n_rec; i++) {
        const em_vk_rec *r = &v->vk.rec[i];
        n += !r->copy && !strncmp(em_vk_pipe_name((int)r->pipe, nm), prefix, strlen(prefix));
    }
    return n;
}
