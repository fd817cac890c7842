#include "kv.h"

#include <string.h>

int em_kv_init(em_kv *kv, const em_alloc *a, int32_t n_layer, int64_t k_row, int64_t v_row,
               int32_t n_ctx, int32_t n_seq, uint32_t type) {
    memset(kv, 0, sizeof *kv);
    kv->type = type;
    kv->elt = type == EMBER_TYPE_F16 ? 2 : 4;
    kv->n_layer = n_layer;
    kv->n_ctx = n_ctx;
    kv->n_seq = n_seq;
    kv->k_row = k_row;
    kv->v_row = v_row;
    kv->blocks_per_seq = (n_ctx + EM_KV_BLOCK - 1) / EM_KV_BLOCK;
    kv->n_blocks = kv->blocks_per_seq * n_seq;
    size_t per_layer, total, row = (size_t)(k_row + v_row);
    if (!em_mul_size((size_t)kv->n_blocks * EM_KV_BLOCK, row * sizeof(float), &per_layer) ||
        !em_mul_size(per_layer / 4 * kv->elt, (size_t)n_layer, &total))
        return EMBER_ERR_NO_MEMORY;
    kv->mem = em_malloc_aligned(a, total, 64);
    kv->k = em_calloc(a, (size_t)n_layer, sizeof *kv->k);
    kv->v = em_calloc(a, (size_t)n_layer, sizeof *kv->v);
    kv->tables = em_calloc(a, (size_t)kv->n_blocks, sizeof *kv->tables);
    kv->n_table = em_calloc(a, (size_t)n_seq, sizeof *kv->n_table);
    kv->len = em_calloc(a, (size_t)n_seq, sizeof *kv->len);
    kv->free_list = em_calloc(a, (size_t)kv->n_blocks, sizeof *kv->free_list);
    if (!kv->mem || !kv->k || !kv->v || !kv->tables || !kv->n_table || !kv->len ||
        !kv->free_list) {
        em_kv_free(kv, a);
        return EMBER_ERR_NO_MEMORY;
    }
    char *p = kv->mem;
    size_t ksz = (size_t)kv->n_blocks * EM_KV_BLOCK * (size_t)k_row * kv->elt;
    size_t vsz = (size_t)kv->n_blocks * EM_KV_BLOCK * (size_t)v_row * kv->elt;
    for (int32_t l = 0; l < n_layer; l++) {
        kv->k[l] = p;
        p += ksz;
        kv->v[l] = p;
        p += vsz;
    }
    for (int32_t i = 0; i < kv->n_blocks; i++) kv->tables[i] = -1;
    /* hand out low block numbers first */
    kv->n_free = kv->n_blocks;
    for (int32_t i = 0; i < kv->n_blocks; i++) kv->free_list[i] = kv->n_blocks - 1 - i;
    return EMBER_OK;
}

void em_kv_free(em_kv *kv, const em_alloc *a) {
    em_free_aligned(a, kv->mem);
    em_free(a, kv->k);
    em_free(a, kv->v);
    em_free(a, kv->tables);
    em_free(a, kv->n_table);
    em_free(a, kv->len);
    em_free(a, kv->free_list);
    memset(kv, 0, sizeof *kv);
}

static int32_t blocks_for(int32_t positions) {
    return (positions + EM_KV_BLOCK - 1) / EM_KV_BLOCK;
}

int32_t em_kv_blocks_needed(const em_kv *kv, int32_t s, int32_t to) {
    int32_t want = blocks_for(to);
    return want > kv->n_table[s] ? want - kv->n_table[s] : 0;
}

void em_kv_reserve(em_kv *kv, int32_t s, int32_t from, int32_t to) {
    int32_t *table = kv->tables + (size_t)s * kv->blocks_per_seq;
    int32_t want = blocks_for(to);
    /* blocks wholly past the new end go back to the free list */
    while (kv->n_table[s] > want) {
        int32_t b = table[--kv->n_table[s]];
        table[kv->n_table[s]] = -1;
        kv->free_list[kv->n_free++] = b;
    }
    while (kv->n_table[s] < want) table[kv->n_table[s]++] = kv->free_list[--kv->n_free];
    (void)from;
    kv->len[s] = to;
}

void em_kv_clear(em_kv *kv, int32_t s) {
    if (s < 0) {
        for (int32_t i = 0; i < kv->n_seq; i++) em_kv_reserve(kv, i, 0, 0);
    } else {
        em_kv_reserve(kv, s, 0, 0);
    }
}
