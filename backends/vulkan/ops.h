/* Internal to the Vulkan backend: how graph nodes become dispatches. */
#ifndef EMBER_VK_OPS_H
#define EMBER_VK_OPS_H

#include "../../lib/graph.h"
#include "vk.h"

/* Where a leaf's bytes went in the leaves buffer (by node index). */
typedef struct em_vk_leaf {
    size_t off;
    bool placed;
} em_vk_leaf;

/* One compute's view of the backend's memory. */
typedef struct em_vk_graph {
    em_vk *vk;
    char *shadow;        /* host mirror of the arena: node offsets */
    size_t arena_size;
    em_vk_buf *arena;
    em_vk_buf *leaves;   /* (re)made by em_vk_upload_leaves */
    em_vk_leaf *leaf;    /* n_nodes entries */
    const em_alloc *alloc;
} em_vk_graph;

/* Ops and operand types the shaders cover. */
bool em_vk_op_supported(const em_tensor *t);
/* Copies every leaf the graph's nodes read (and each RoPE node's cos/sin
 * table, computed on the host in double precision) to the device. */
int em_vk_upload_leaves(em_vk_graph *vg, const em_graph *g);
/* Records one dispatch per node, submits and waits. */
int em_vk_run(em_vk_graph *vg, const em_graph *g);

#endif
