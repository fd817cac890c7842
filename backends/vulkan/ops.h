/* Internal to the Vulkan backend: where a graph's tensors live on the
 * device, and how its nodes become dispatches.
 *
 * Three kinds of memory:
 *  - the arena: a device buffer with a host shadow of the same size; a
 *    node's device offset is its host address minus the shadow's base, so
 *    the core's planner needs no change;
 *  - constant leaves (weights, model tables): copied once into slabs and
 *    found by host address (weights.c);
 *  - per-run data (EM_TENSOR_INPUT leaves, RoPE cos/sin tables, the KV
 *    block tables): written by the host into one host-visible buffer, `io`,
 *    at offsets that depend only on the graph's shape, so an equal graph
 *    gives equal commands and reuses its command buffer (record.c). */
#ifndef EMBER_VK_OPS_H
#define EMBER_VK_OPS_H

#include "../../lib/graph.h"
#include "../../lib/kv.h"
#include "vk.h"

typedef struct em_vk_wentry {
    const void *host; /* NULL: empty slot */
    size_t bytes;     /* on the device */
    uint32_t slab;
    size_t off;
    size_t scales;    /* block types: the scales' offset from off (device layout) */
    /* a tensor larger than one binding's range is stored as chunks of
     * `chunk_rows` rows, each laid out as a tensor of its own (quants,
     * then scales), `chunk_stride` bytes apart; 0: one piece */
    size_t chunk_rows, chunk_stride;
} em_vk_wentry;

#define EM_VK_MAX_SLABS 64

typedef struct em_vk_weights {
    em_vk_wentry *tab;  /* open addressing by host address */
    uint32_t cap, n;
    em_vk_buf slabs[EM_VK_MAX_SLABS];
    uint32_t n_slabs;
    size_t used;        /* bytes taken in the last slab */
    size_t next_slab;   /* size of the next slab made */
    size_t bytes;       /* total copied */
} em_vk_weights;

/* Where per-run data went in io, by node index (SIZE_MAX: none). */
typedef struct em_vk_graph {
    em_vk *vk;
    char *shadow;        /* host mirror of the arena: node offsets */
    size_t arena_size;
    em_vk_buf *arena;
    em_vk_weights *weights;
    em_vk_buf *io;       /* host-visible, mapped */
    size_t *io_off;      /* n_nodes entries */
    int32_t *uses, *fuse; /* n_nodes entries each: scratch for em_vk_run */
    /* act_type Q8_0: inputs of products that take 8-bit activations, by
     * node: where in xq their rounded copy goes (SIZE_MAX: none), and
     * whether this run has written it yet (quant_act.comp) */
    size_t *xq_off;
    int32_t *xq_done;
    em_vk_buf *xq;
    em_vk_buf *attn_part; /* split attention's partial results and counts
                             (zeroed once; attn.comp resets its counts) */
    em_vk_buf *moe;      /* MoE layers' per-pair rows (em_vk_moe_bytes) */
    em_vk_buf *sync;     /* folded roundings' counts (em_vk_sync_bytes; zeroed
                            once, the shaders leave them zero) */
    size_t sync_used;    /* words of sync this run has given out */
    size_t tables_off;   /* the KV block tables in io */
    em_kv *kv;           /* NULL when the graph has no KV ops */
    em_vk_buf *kv_buf;
} em_vk_graph;

/* The bytes t spans from its first: rows by their strides (a strided
 * view's whole span). */
size_t em_vk_extent(const em_tensor *t);
/* Whether t's data lies in the arena's host shadow (an activation). */
bool em_vk_in_arena(const em_vk_graph *vg, const em_tensor *t);
/* Ops and operand types the shaders cover. */
bool em_vk_op_supported(const em_vk *vk, const em_tensor *t);

/* Copies every constant leaf of g not yet on the device (weights.c). */
int em_vk_weights_add(em_vk_graph *vg, const em_graph *g);
bool em_vk_weights_find(const em_vk_weights *w, const void *host, size_t bytes, em_vk_ref *out);
/* Weight tensor t's rows [r0, r0 + rows of its chunk) as a ref of their own
 * (the chunk holding row r0, which must start one), and the chunk's rows;
 * false when t is not stored in chunks. */
bool em_vk_weights_chunk(const em_vk_weights *w, const em_tensor *t, size_t r0, em_vk_ref *out,
                         size_t *rows);
void em_vk_weights_free(em_vk *vk, em_vk_weights *w);

/* Bytes of io that g's per-run data needs (and their offsets in
 * vg->io_off / tables_off). */
size_t em_vk_io_layout(em_vk_graph *vg, const em_graph *g);
/* Bytes of xq that g's 8-bit activations need (act_type Q8_0; their
 * offsets into vg->xq_off). Call with g's weights on the device. */
size_t em_vk_xq_layout(em_vk_graph *vg, const em_graph *g);
/* Bytes g's MoE layers need in vg->moe (0: none). */
size_t em_vk_moe_bytes(const em_graph *g);
/* Bytes of sync g's folded roundings count in. Plans g's fusion into
 * vg->fuse, which em_vk_run then follows: call it for each run's graph
 * after the io and xq layouts (the backend's prepare does). */
size_t em_vk_sync_bytes(em_vk_graph *vg, const em_graph *g);
/* Bytes the split attention of g needs in attn_part (0: no split). */
size_t em_vk_attn_part_bytes(const em_vk_graph *vg, const em_graph *g);
/* Writes g's per-run data into io (laid out by em_vk_io_layout). */
void em_vk_io_fill(em_vk_graph *vg, const em_graph *g);
/* Records (with em_vk_sync_bytes's plan) the pending KV block copies, one command per node and the
 * copies of kept nodes into the staging buffer (when they fit), submits
 * and waits. *staged: whether the kept nodes are in staging, packed in
 * node order. */
int em_vk_run(em_vk_graph *vg, const em_graph *g, bool *staged);

#endif
