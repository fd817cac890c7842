/* The candidate queue both merge-based tokenizers use: adjacent symbol
 * pairs ordered by a key (lower first; SentencePiece uses -score, BPE the
 * merge rank), ties to the leftmost pair. */
#ifndef EMBER_MERGE_HEAP_H
#define EMBER_MERGE_HEAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct em_merge {
    double key;
    int32_t left, right;
    uint32_t size; /* bytes of the merged symbol, to spot stale entries */
} em_merge;

typedef struct em_merge_heap { em_merge *c; size_t n; } em_merge_heap;

static inline int em_merge_before(const em_merge *a, const em_merge *b) {
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static inline void em_merge_push(em_merge_heap *h, em_merge x) {
    size_t i = h->n++;
    while (i > 0 && em_merge_before(&x, &h->c[(i - 1) / 2])) {
        h->c[i] = h->c[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->c[i] = x;
}

static inline em_merge em_merge_pop(em_merge_heap *h) {
    em_merge top = h->c[0], x = h->c[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        const em_merge *bx = &x;
        if (l < h->n && em_merge_before(&h->c[l], bx)) { best = l; bx = &h->c[l]; }
        if (r < h->n && em_merge_before(&h->c[r], bx)) best = r;
        if (best == i) break;
        h->c[i] = h->c[best];
        i = best;
    }
    if (h->n) h->c[i] = x;
    return top;
}

#endif
