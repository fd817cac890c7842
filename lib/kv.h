/* The KV cache, paged: K and V rows live in fixed-size blocks of
 * EM_KV_BLOCK positions, and each sequence owns a block table mapping its
 * logical block i (positions i*EM_KV_BLOCK ...) to a physical block. The
 * attention kernel reads only through the table, so blocks need not be
 * contiguous. Blocks come from one free list shared by all sequences. */
#ifndef EMBER_KV_H
#define EMBER_KV_H

#include "util.h"

#define EM_KV_BLOCK 16

typedef struct em_kv {
    int32_t n_layer;
    int32_t n_ctx;          /* positions per sequence */
    int32_t n_seq;
    int32_t n_blocks;       /* physical blocks */
    int32_t blocks_per_seq; /* table width */
    int64_t k_row, v_row;   /* elements per position per layer */
    uint32_t type;          /* EMBER_TYPE_F32 or EMBER_TYPE_F16 */
    size_t elt;             /* bytes per element */
    void **k, **v;          /* per layer: [n_blocks * EM_KV_BLOCK][row] */
    int32_t *tables;        /* [n_seq][blocks_per_seq], -1 = none */
    int32_t *n_table;       /* blocks held per sequence */
    int32_t *len;           /* cached positions per sequence */
    int32_t *free_list;
    int32_t n_free;
    void *mem;              /* one allocation for all layers' K and V */
} em_kv;

int em_kv_init(em_kv *kv, const em_alloc *a, int32_t n_layer, int64_t k_row, int64_t v_row,
               int32_t n_ctx, int32_t n_seq, uint32_t type);

/* Address of the K (or V) row of a cache slot in a layer. */
static inline void *em_kv_k(const em_kv *kv, int layer, int64_t slot) {
    return (char *)kv->k[layer] + (size_t)slot * (size_t)kv->k_row * kv->elt;
}
static inline void *em_kv_v(const em_kv *kv, int layer, int64_t slot) {
    return (char *)kv->v[layer] + (size_t)slot * (size_t)kv->v_row * kv->elt;
}
void em_kv_free(em_kv *kv, const em_alloc *a);

/* Makes room for positions [from, to) of sequence s: drops cached
 * positions >= from, then holds enough blocks for `to`. Callers check all
 * sequences with em_kv_blocks_needed first, so this cannot fail. */
void em_kv_reserve(em_kv *kv, int32_t s, int32_t from, int32_t to);
/* Extra blocks sequence s needs to hold `to` positions after dropping
 * positions >= from. */
int32_t em_kv_blocks_needed(const em_kv *kv, int32_t s, int32_t to);
void em_kv_clear(em_kv *kv, int32_t s);

static inline int64_t em_kv_slot(const em_kv *kv, int32_t s, int32_t pos) {
    return (int64_t)kv->tables[(size_t)s * kv->blocks_per_seq + pos / EM_KV_BLOCK] * EM_KV_BLOCK +
           pos % EM_KV_BLOCK;
}

#endif
