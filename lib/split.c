#include "split.h"

#include <string.h>

int em_split_init(em_split *s, const em_alloc *a, int32_t cap) {
    memset(s, 0, sizeof *s);
    if (em_graph_init(&s->part[0], a, cap) || em_graph_init(&s->part[1], a, cap) ||
        !(s->map = em_calloc(a, (size_t)cap, sizeof *s->map)) ||
        !(s->import = em_calloc(a, (size_t)cap, sizeof *s->import)) ||
        !(s->source = em_calloc(a, (size_t)cap, sizeof *s->source))) {
        em_split_free(s, a);
        return EMBER_ERR_NO_MEMORY;
    }
    return EMBER_OK;
}

void em_split_free(em_split *s, const em_alloc *a) {
    em_graph_free(&s->part[0], a);
    em_graph_free(&s->part[1], a);
    em_free(a, s->map);
    em_free(a, s->import);
    em_free(a, s->source);
    memset(s, 0, sizeof *s);
}

/* The tensor a view reads (itself when it is not a view). */
static em_tensor *view_root(em_tensor *t) {
    while (em_is_view(t)) t = t->src[0];
    return t;
}

static void start_part(em_graph *p, const em_graph *g) {
    em_graph_reset(p);
    p->kv = g->kv;
    p->expert_counts = g->expert_counts;
    p->stats_n_expert = g->stats_n_expert;
}

/* Part 1's leaf for part-0 tensor j of g: a copy of a constant or input
 * leaf as it is, or an input leaf that em_split_link points at the
 * computed tensor. */
static int32_t import(em_split *s, const em_graph *g, int32_t j) {
    if (s->map[j] >= 0) return s->map[j];
    em_graph *p = &s->part[1];
    const em_tensor *u = &g->nodes[j];
    const em_tensor *root = view_root((em_tensor *)u);
    em_tensor *t = &p->nodes[p->n_nodes];
    *t = *u;
    t->op = EM_OP_NONE;
    memset(t->src, 0, sizeof t->src);
    t->keep = 0;
    if (root->op == EM_OP_NONE) {
        t->flags = root->flags; /* a weight stays constant, an input stays per-run */
        t->data = root->data;
    } else {
        t->flags = EM_TENSOR_INPUT;
        t->data = NULL;
        s->import[s->n_import] = p->n_nodes;
        s->source[s->n_import++] = j;
    }
    return s->map[j] = p->n_nodes++;
}

int em_split_make(em_split *s, em_graph *g, int32_t at, char *err) {
    if (at <= 0 || at >= g->n_nodes || g->n_nodes > s->part[0].cap)
        return em_error(err, EMBER_ERR_INTERNAL, "split: node %d of %d is no place to split",
                        at, g->n_nodes);
    s->at = at;
    s->n_import = 0;
    /* what part 1 computes from part 0 must outlive part 0's run */
    for (int32_t i = at; i < g->n_nodes; i++)
        for (int k = 0; k < EM_MAX_SRC; k++) {
            em_tensor *src = g->nodes[i].src[k];
            if (!src || src - g->nodes >= at) continue;
            src = view_root(src);
            if (src->op != EM_OP_NONE) src->keep = 1;
        }
    em_graph *p0 = &s->part[0], *p1 = &s->part[1];
    start_part(p0, g);
    start_part(p1, g);
    memcpy(p0->nodes, g->nodes, (size_t)at * sizeof *g->nodes);
    p0->n_nodes = at;
    for (int32_t i = 0; i < at; i++)
        for (int k = 0; k < EM_MAX_SRC; k++) {
            const em_tensor *src = g->nodes[i].src[k];
            if (src) p0->nodes[i].src[k] = p0->nodes + (src - g->nodes);
        }
    for (int32_t i = 0; i < g->n_nodes; i++) s->map[i] = -1;
    for (int32_t i = at; i < g->n_nodes; i++) {
        int32_t from[EM_MAX_SRC];
        for (int k = 0; k < EM_MAX_SRC; k++) {
            const em_tensor *src = g->nodes[i].src[k];
            int32_t j = src ? (int32_t)(src - g->nodes) : -1;
            from[k] = j < 0 ? -1 : j < at ? import(s, g, j) : s->map[j];
        }
        em_tensor *t = &p1->nodes[p1->n_nodes];
        *t = g->nodes[i];
        for (int k = 0; k < EM_MAX_SRC; k++) t->src[k] = from[k] < 0 ? NULL : p1->nodes + from[k];
        s->map[i] = p1->n_nodes++;
    }
    return EMBER_OK;
}

void em_split_link(em_split *s) {
    for (int32_t i = 0; i < s->n_import; i++)
        s->part[1].nodes[s->import[i]].data = s->part[0].nodes[s->source[i]].data;
}

em_tensor *em_split_node(em_split *s, const em_graph *g, const em_tensor *t) {
    int32_t i = (int32_t)(t - g->nodes);
    return i < s->at ? &s->part[0].nodes[i] : &s->part[1].nodes[s->map[i]];
}
