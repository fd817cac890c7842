/* The backend interface. A backend fills an em_backend_fns table; the core
 * calls it only through the em_backend_* wrappers below, which check their
 * arguments first. A backend compiled out keeps its create function, which
 * returns EMBER_ERR_NOT_AVAILABLE. See docs/architecture.md. */
#ifndef EMBER_BACKEND_H
#define EMBER_BACKEND_H

#include "graph.h"

typedef struct em_backend em_backend;
struct em_kv;

typedef struct em_buffer {
    void *base;   /* host-visible address for host backends, else NULL */
    size_t size;
    void *impl;   /* the backend's own handle */
} em_buffer;

typedef struct em_backend_fns {
    const char *name;
    /* Can this backend run node t (op and operand types)? */
    bool (*supports_op)(const em_backend *b, const em_tensor *t);
    /* Device memory for activations and the KV cache. */
    int (*buffer_alloc)(em_backend *b, size_t size, em_buffer *out);
    void (*buffer_free)(em_backend *b, em_buffer *buf);
    /* Host <-> buffer copies (offsets into the buffer). */
    int (*buffer_write)(em_backend *b, em_buffer *buf, size_t off, const void *src, size_t n);
    int (*buffer_read)(em_backend *b, const em_buffer *buf, size_t off, void *dst, size_t n);
    /* Called once per context with the largest graph it will run: take
     * whatever per-graph resources compute needs (scratch, pipelines). */
    int (*graph_reserve)(em_backend *b, const em_graph *g);
    /* Runs every non-leaf node of g in order. Must not allocate. */
    int (*graph_compute)(em_backend *b, em_graph *g);
    /* Optional. A backend that keeps the KV cache's rows in its own memory
     * (a GPU) has this: the context then makes its cache with the layers
     * this backend runs on the device (lib/kv.h) and attaches it once,
     * before the first graph; the backend allocates em_kv_device_bytes(kv)
     * and applies kv->pending copies to those layers.
     * Backends without it read and write the rows in host memory. */
    int (*kv_attach)(em_backend *b, struct em_kv *kv);
    void (*destroy)(em_backend *b);
} em_backend_fns;

struct em_backend {
    const em_backend_fns *fns;
    em_alloc alloc;
    char *err;    /* the owning context's error slot */
    void *impl;
};

typedef struct em_backend_config {
    int kind;         /* ember_backend_kind */
    int device;
    int n_threads;
    uint32_t cpu_mask;
    uint32_t act_type; /* ember_context_params.act_type */
} em_backend_config;

int em_backend_create(const em_backend_config *cfg, const em_alloc *a, char *err,
                      em_backend **out);
void em_backend_destroy(em_backend **b);

int em_backend_buffer_alloc(em_backend *b, size_t size, em_buffer *out);
void em_backend_buffer_free(em_backend *b, em_buffer *buf);
int em_backend_graph_reserve(em_backend *b, const em_graph *g);
int em_backend_graph_compute(em_backend *b, em_graph *g);
/* Whether the backend keeps the KV rows of the layers it runs
 * (kv_attach); otherwise they are in host memory. */
bool em_backend_keeps_kv(const em_backend *b);
int em_backend_kv_attach(em_backend *b, struct em_kv *kv);

/* Each backend's constructor (backends/<name>/). */
int em_cpu_backend_create(const em_backend_config *cfg, const em_alloc *a, char *err,
                          em_backend **out);
int em_vulkan_backend_create(const em_backend_config *cfg, const em_alloc *a, char *err,
                             em_backend **out);
int em_vulkan_available(char *err);
/* The Vulkan device's name ("" when b is not a Vulkan backend). */
const char *em_vulkan_device_name(const em_backend *b);
/* Runs that recorded a command buffer and runs that reused one (0 and 0
 * when b is not Vulkan). */
void em_vulkan_record_stats(const em_backend *b, uint64_t *recorded, uint64_t *reused);
/* The last run's commands (dispatches and copies) and the barriers
 * between them (0 and 0 when b is not Vulkan). */
void em_vulkan_run_stats(const em_backend *b, uint64_t *commands, uint64_t *barriers);
/* The last run's dispatches whose pipeline name starts with `prefix`
 * (which shader a case ran, for tests; 0 when b is not Vulkan). */
uint32_t em_vulkan_dispatches(const em_backend *b, const char *prefix);
/* The CPU levels allowed (ember_cpu_set_mask / EMBER_CPU_MASK). */
uint32_t em_cpu_mask(void);

#endif
