/* The CPU backend's ops table. Buffers are host memory from the
 * context's allocator; the graph runs on the thread pool, every thread
 * taking its share of a node, then meeting the others at a barrier. */
#include <string.h>

#include "cpu.h"

static bool cpu_supports_op(const em_backend *b, const em_tensor *t) {
    (void)b;
    return em_cpu_op_supported(t);
}

static int cpu_buffer_alloc(em_backend *b, size_t size, em_buffer *out) {
    void *p = em_malloc_aligned(&b->alloc, size, 64);
    if (!p) return em_error(b->err, EMBER_ERR_NO_MEMORY, "cpu: cannot allocate %zu bytes", size);
    out->base = out->impl = p;
    out->size = size;
    return EMBER_OK;
}

static void cpu_buffer_free(em_backend *b, em_buffer *buf) {
    em_free_aligned(&b->alloc, buf->impl);
    memset(buf, 0, sizeof *buf);
}

static int cpu_buffer_write(em_backend *b, em_buffer *buf, size_t off, const void *src, size_t n) {
    (void)b;
    memcpy((char *)buf->base + off, src, n);
    return EMBER_OK;
}

static int cpu_buffer_read(em_backend *b, const em_buffer *buf, size_t off, void *dst, size_t n) {
    (void)b;
    memcpy(dst, (const char *)buf->base + off, n);
    return EMBER_OK;
}

static void free_scratch(em_backend *b, em_cpu *c) {
    em_free_aligned(&b->alloc, c->shared);
    c->shared = NULL;
    c->shared_floats = 0;
    if (!c->scratch) return;
    for (int i = 0; i < em_threadpool_size(c->pool); i++) em_free_aligned(&b->alloc, c->scratch[i]);
    em_free(&b->alloc, c->scratch);
    c->scratch = NULL;
    c->scratch_floats = 0;
}

/* Per-thread scratch sized for the largest node; done before the first
 * compute of a graph shape, never during it. */
static int ensure_scratch(em_backend *b, em_cpu *c, const em_graph *g) {
    size_t need = 64, shared = 64;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        size_t s = em_cpu_op_scratch(&g->nodes[i], g->kv), sh = em_cpu_op_shared(&g->nodes[i]);
        need = s > need ? s : need;
        shared = sh > shared ? sh : shared;
    }
    if (need <= c->scratch_floats && shared <= c->shared_floats) return EMBER_OK;
    free_scratch(b, c);
    c->shared = em_malloc_aligned(&b->alloc, shared * sizeof(float), 64);
    if (!c->shared) return em_error(b->err, EMBER_ERR_NO_MEMORY, "cpu: no memory for scratch");
    c->shared_floats = shared;
    int n = em_threadpool_size(c->pool);
    c->scratch = em_calloc(&b->alloc, (size_t)n, sizeof *c->scratch);
    if (!c->scratch) return em_error(b->err, EMBER_ERR_NO_MEMORY, "cpu: no memory for scratch");
    for (int i = 0; i < n; i++) {
        c->scratch[i] = em_malloc_aligned(&b->alloc, need * sizeof(float), 64);
        if (!c->scratch[i]) {
            free_scratch(b, c);
            return em_error(b->err, EMBER_ERR_NO_MEMORY, "cpu: no memory for scratch");
        }
    }
    c->scratch_floats = need;
    return EMBER_OK;
}

static void run_graph_task(void *arg, int ith, int nth) {
    em_cpu *c = arg;
    em_graph *g = c->graph;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        em_tensor *t = &g->nodes[i];
        if (t->op == EM_OP_NONE) continue;
        em_cpu_op_run(c, t, ith, nth);
        em_threadpool_barrier(c->pool);
    }
}

static int cpu_graph_reserve(em_backend *b, const em_graph *g) {
    return ensure_scratch(b, b->impl, g);
}

static int cpu_graph_compute(em_backend *b, em_graph *g) {
    em_cpu *c = b->impl;
    int rc = ensure_scratch(b, c, g); /* no-op after graph_reserve */
    if (rc) return rc;
    c->graph = g;
    c->shared_in = NULL;
    em_threadpool_run(c->pool, run_graph_task, c);
    c->graph = NULL;
    return EMBER_OK;
}

static void cpu_destroy(em_backend *b) {
    em_cpu *c = b->impl;
    free_scratch(b, c);
    em_threadpool_free(&c->pool, &b->alloc);
    em_alloc a = b->alloc;
    em_free(&a, c);
    em_free(&a, b);
}

static const em_backend_fns cpu_fns = {
    .name = "cpu",
    .supports_op = cpu_supports_op,
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free = cpu_buffer_free,
    .buffer_write = cpu_buffer_write,
    .buffer_read = cpu_buffer_read,
    .graph_reserve = cpu_graph_reserve,
    .graph_compute = cpu_graph_compute,
    .destroy = cpu_destroy,
};

int em_cpu_backend_create(const em_backend_config *cfg, const em_alloc *a, char *err,
                          em_backend **out) {
    em_backend *b = em_calloc(a, 1, sizeof *b);
    em_cpu *c = em_calloc(a, 1, sizeof *c);
    if (!b || !c) {
        em_free(a, b);
        em_free(a, c);
        return em_error(err, EMBER_ERR_NO_MEMORY, "cpu: no memory for the backend");
    }
    b->fns = &cpu_fns;
    b->alloc = *a;
    b->err = err;
    b->impl = c;
    em_cpu_dsp_init(&c->dsp, em_cpu_detect() & cfg->cpu_mask);
    c->act_q8 = cfg->act_type == EMBER_TYPE_Q8_0 && c->dsp.gemm_q8;
    c->act_bf16 = cfg->act_type == EMBER_TYPE_BF16 && c->dsp.gemm_bf16;
    if (em_threadpool_create(cfg->n_threads, a, &c->pool)) {
        em_free(a, c);
        em_free(a, b);
        return em_error(err, EMBER_ERR_NO_MEMORY, "cpu: cannot start %d threads", cfg->n_threads);
    }
    *out = b;
    return EMBER_OK;
}
