#include "backend.h"

#include "kv.h"

int em_backend_create(const em_backend_config *cfg, const em_alloc *a, char *err,
                      em_backend **out) {
    *out = NULL;
    switch (cfg->kind) {
    case EMBER_BACKEND_CPU: return em_cpu_backend_create(cfg, a, err, out);
    case EMBER_BACKEND_VULKAN: return em_vulkan_backend_create(cfg, a, err, out);
    default:
        return em_error(err, EMBER_ERR_INVALID_ARGUMENT, "backend: unknown kind %d", cfg->kind);
    }
}

void em_backend_destroy(em_backend **b) {
    if (!b || !*b) return;
    (*b)->fns->destroy(*b);
    *b = NULL;
}

int em_backend_buffer_alloc(em_backend *b, size_t size, em_buffer *out) {
    if (!b || !out || size == 0)
        return em_error(b ? b->err : NULL, EMBER_ERR_INVALID_ARGUMENT,
                        "backend: buffer_alloc needs a backend, an output and a size");
    return b->fns->buffer_alloc(b, size, out);
}

void em_backend_buffer_free(em_backend *b, em_buffer *buf) {
    if (b && buf && buf->impl) b->fns->buffer_free(b, buf);
}

/* Support is checked here, once per context: every graph computed later
 * has the same nodes (the memory plan enforces it), so compute need not
 * check again on every token. */
int em_backend_graph_reserve(em_backend *b, const em_graph *g) {
    if (!b || !g) return EMBER_ERR_INVALID_ARGUMENT;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const em_tensor *t = &g->nodes[i];
        if (t->op != EM_OP_NONE && !b->fns->supports_op(b, t))
            return em_error(b->err, EMBER_ERR_UNSUPPORTED, "backend %s: op %s on type %s is "
                            "not supported", b->fns->name, em_op_name(t->op),
                            t->src[0] ? ember_type_name((int)t->src[0]->type) : "-");
    }
    return b->fns->graph_reserve(b, g);
}

int em_backend_graph_compute(em_backend *b, em_graph *g) {
    if (!b || !g) return EMBER_ERR_INVALID_ARGUMENT;
    return b->fns->graph_compute(b, g);
}

bool em_backend_keeps_kv(const em_backend *b) { return b && b->fns->kv_attach; }

int em_backend_kv_attach(em_backend *b, em_kv *kv) {
    if (!b || !kv) return EMBER_ERR_INVALID_ARGUMENT;
    if (!b->fns->kv_attach) return EMBER_OK; /* host rows: nothing to do */
    if (kv->dev_end <= kv->dev_first)
        return em_error(b->err, EMBER_ERR_INTERNAL, "backend %s: the KV cache was made with "
                        "no device layers", b->fns->name);
    return b->fns->kv_attach(b, kv);
}

EMBER_API int ember_backend_available(int kind) {
    switch (kind) {
    case EMBER_BACKEND_CPU: return EMBER_OK;
    case EMBER_BACKEND_VULKAN: return em_vulkan_available(NULL);
    default:
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "backend: unknown kind %d", kind);
    }
}
