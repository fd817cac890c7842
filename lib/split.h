/* Splitting a graph between two backends (a device and the CPU) at a layer
 * boundary: the context builds the whole forward graph as usual, then
 * copies its nodes before the boundary into part 0 and the rest into part
 * 1, each a complete graph that one backend plans and runs on its own
 * arena. What part 1 reads of part 0 (the residual stream, normally one
 * tensor) becomes an input leaf of part 1 pointing at part 0's output,
 * which part 0 keeps (so a device copies it back to host memory) and part
 * 1 reads like any other per-run input (a device uploads it each run).
 * Constant leaves (weights) part 1 shares with part 0 are copied as they
 * are, so each backend sees only the weights of its own layers.
 *
 * The copy costs a few hundred node copies per evaluation, small against
 * any layer's work; in return neither backend needs to know about the
 * other. */
#ifndef EMBER_SPLIT_H
#define EMBER_SPLIT_H

#include "graph.h"

typedef struct em_split {
    em_graph part[2];
    int32_t *map;    /* [cap]: full-graph node -> its part-1 index, or -1 */
    int32_t *import; /* [cap]: part-1 leaves linked to part 0 (node indices) */
    int32_t *source; /* [cap]: each one's full-graph producer */
    int32_t n_import;
    int32_t at;      /* first node of part 1 in the full graph */
} em_split;

/* Room for graphs of up to cap nodes (the full graph's capacity). */
int em_split_init(em_split *s, const em_alloc *a, int32_t cap);
void em_split_free(em_split *s, const em_alloc *a);

/* Copies g's nodes [0, at) into part 0 and [at, n) into part 1, with every
 * source pointer moved into its part. Marks the part-0 tensors part 1
 * reads as kept, in g and in part 0. Fails (EMBER_ERR_INTERNAL) only if
 * `at` is out of range. The parts keep g's KV cache and expert counts. */
int em_split_make(em_split *s, em_graph *g, int32_t at, char *err);

/* After part 0's plan is applied (its tensors have addresses), before part
 * 1's: points part 1's input leaves at the part-0 tensors they stand for. */
void em_split_link(em_split *s);

/* The copy of full-graph node t in the part that holds it. */
em_tensor *em_split_node(em_split *s, const em_graph *g, const em_tensor *t);

#endif
