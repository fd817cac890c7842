/* The Vulkan backend's ops table (lib/backend.h).
 *
 * Memory, in this first stage: the activations arena is a device buffer
 * with a host shadow of the same size; the planner's offsets are the same
 * in both (a node's device offset is its host address minus the shadow's
 * base), so the core needs no change. Leaves (weights and per-evaluation
 * inputs) are copied into a device buffer at every compute, and nodes the
 * graph keeps (logits) are read back into the shadow after it. Not yet:
 * a resident weight cache, the paged KV cache on the device (KV_STORE and
 * ATTN are not supported, so a model context is refused with a message),
 * command buffers reused across evaluations, layer splits with the CPU. */
#include <string.h>

#include "../../lib/backend.h"
#include "ops.h"

typedef struct vk_backend {
    em_vk vk;
    em_vk_buf arena;  /* device */
    char *shadow;     /* host mirror of the arena's offsets */
    size_t arena_size;
    em_vk_buf leaves; /* device copies of the graph's leaves */
    em_vk_leaf *leaf; /* where each leaf went */
    int32_t leaf_cap;
} vk_backend;

static bool vk_supports_op(const em_backend *b, const em_tensor *t) {
    (void)b;
    return em_vk_op_supported(t);
}

static int vk_buffer_alloc(em_backend *b, size_t size, em_buffer *out) {
    vk_backend *v = b->impl;
    if (v->shadow)
        return em_error(b->err, EMBER_ERR_UNSUPPORTED, "vulkan: one arena per context");
    v->shadow = em_malloc_aligned(&b->alloc, size, 64);
    if (!v->shadow) return em_error(b->err, EMBER_ERR_NO_MEMORY, "vulkan: no host memory");
    int rc = em_vk_buf_create(&v->vk, size, false, &v->arena);
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

static int vk_graph_reserve(em_backend *b, const em_graph *g) {
    vk_backend *v = b->impl;
    if (g->n_nodes <= v->leaf_cap) return EMBER_OK;
    em_vk_leaf *l = em_calloc(&b->alloc, (size_t)g->n_nodes, sizeof *l);
    if (!l) return em_error(b->err, EMBER_ERR_NO_MEMORY, "vulkan: no memory for the leaf table");
    em_free(&b->alloc, v->leaf);
    v->leaf = l;
    v->leaf_cap = g->n_nodes;
    return EMBER_OK;
}

static int vk_graph_compute(em_backend *b, em_graph *g) {
    vk_backend *v = b->impl;
    if (!v->shadow) return em_error(b->err, EMBER_ERR_BAD_STATE, "vulkan: no arena");
    int rc = vk_graph_reserve(b, g);
    if (rc) return rc;
    em_vk_graph vg = { &v->vk, v->shadow, v->arena_size, &v->arena, &v->leaves, v->leaf, &b->alloc };
    if ((rc = em_vk_upload_leaves(&vg, g)) || (rc = em_vk_run(&vg, g))) return rc;
    for (int32_t i = 0; i < g->n_nodes; i++) { /* outputs back to the host */
        em_tensor *t = &g->nodes[i];
        if (!t->keep || t->op == EM_OP_NONE) continue;
        size_t off = (size_t)((char *)t->data - v->shadow);
        if ((rc = em_vk_download(&v->vk, &v->arena, off, t->data, em_nbytes(t)))) return rc;
    }
    return EMBER_OK;
}

static void vk_destroy(em_backend *b) {
    vk_backend *v = b->impl;
    em_vk_buf_destroy(&v->vk, &v->leaves);
    em_vk_buf_destroy(&v->vk, &v->arena);
    em_free_aligned(&b->alloc, v->shadow);
    em_free(&b->alloc, v->leaf);
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
    int rc = em_vk_open(&v->vk, cfg->device, err);
    if (rc) {
        em_free(a, b);
        em_free(a, v);
        return rc;
    }
    b->fns = &vk_fns;
    b->alloc = *a;
    b->err = err;
    b->impl = v;
    *out = b;
    return EMBER_OK;
}

/* The device's name, for tests and tools ("" when b is not Vulkan). */
const char *em_vulkan_device_name(const em_backend *b) {
    return b && b->fns == &vk_fns ? ((const vk_backend *)b->impl)->vk.name : "";
}
