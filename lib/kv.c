#include "kv.h"

#include "gguf.h"

#include <string.h>

static int32_t blocks_for(const em_kv *kv, int32_t positions) {
    return (positions + kv->block - 1) / kv->block;
}

int em_kv_init(em_kv *kv, const em_alloc *a, int32_t n_layer, int64_t k_row, int64_t v_row,
               int32_t n_ctx, int32_t n_seq, int32_t n_blocks, int32_t block, uint32_t type,
               em_layer_range device) {
    memset(kv, 0, sizeof *kv);
    kv->dev_first = device.first;
    kv->dev_end = device.end;
    kv->block = block;
    while ((1 << kv->block_shift) < block) kv->block_shift++;
    kv->type = type;
    const em_type_info *ti = em_type_info_get(type); /* F32, F16 or Q8_0 (the caller checks) */
    kv->k_bytes = (size_t)(k_row / ti->block) * ti->size;
    kv->v_bytes = (size_t)(v_row / ti->block) * ti->size;
    kv->n_layer = n_layer;
    kv->n_ctx = n_ctx;
    kv->n_seq = n_seq;
    kv->k_row = k_row;
    kv->v_row = v_row;
    kv->blocks_per_seq = blocks_for(kv, n_ctx);
    int64_t all = (int64_t)kv->blocks_per_seq * n_seq;
    if (n_blocks <= 0) {
        if (all > INT32_MAX) return EMBER_ERR_NO_MEMORY;
        n_blocks = (int32_t)all;
    }
    kv->n_blocks = n_blocks;
    size_t per_layer, total;
    int32_t n_dev = device.end - device.first;
    if (!em_mul_size((size_t)kv->n_blocks * kv->block, kv->k_bytes + kv->v_bytes, &per_layer) ||
        !em_mul_size(per_layer, (size_t)n_layer, &total))
        return EMBER_ERR_NO_MEMORY;
    bool host = n_dev < n_layer, dev = n_dev > 0;
    if (host) {
        size_t bytes = em_kv_host_bytes(kv); /* <= total: no overflow */
        kv->mem = em_malloc_aligned(a, bytes ? bytes : 64, 64);
        kv->k = em_calloc(a, (size_t)n_layer, sizeof *kv->k);
        kv->v = em_calloc(a, (size_t)n_layer, sizeof *kv->v);
    }
    if (dev) kv->pending = em_calloc(a, (size_t)kv->n_blocks, sizeof *kv->pending);
    kv->tables = em_calloc(a, (size_t)all, sizeof *kv->tables);
    kv->n_table = em_calloc(a, (size_t)n_seq, sizeof *kv->n_table);
    kv->len = em_calloc(a, (size_t)n_seq, sizeof *kv->len);
    kv->ref = em_calloc(a, (size_t)kv->n_blocks, sizeof *kv->ref);
    kv->free_list = em_calloc(a, (size_t)kv->n_blocks, sizeof *kv->free_list);
    uint32_t n_bucket = 1;
    while (n_bucket < (uint32_t)kv->n_blocks && n_bucket < (1u << 30)) n_bucket <<= 1;
    kv->bucket_mask = n_bucket - 1;
    kv->tokens = em_calloc(a, (size_t)kv->n_blocks * kv->block, sizeof *kv->tokens);
    kv->hash = em_calloc(a, (size_t)kv->n_blocks, sizeof *kv->hash);
    kv->sealed = em_calloc(a, (size_t)kv->n_blocks, sizeof *kv->sealed);
    kv->bucket = em_calloc(a, n_bucket, sizeof *kv->bucket);
    kv->chain = em_calloc(a, (size_t)kv->n_blocks, sizeof *kv->chain);
    kv->lru_prev = em_calloc(a, (size_t)kv->n_blocks, sizeof *kv->lru_prev);
    kv->lru_next = em_calloc(a, (size_t)kv->n_blocks, sizeof *kv->lru_next);
    if ((host && (!kv->mem || !kv->k || !kv->v)) || (dev && !kv->pending) || !kv->tables ||
        !kv->n_table || !kv->len || !kv->ref ||
        !kv->free_list || !kv->tokens || !kv->hash || !kv->sealed || !kv->bucket || !kv->chain ||
        !kv->lru_prev || !kv->lru_next) {
        em_kv_free(kv, a);
        return EMBER_ERR_NO_MEMORY;
    }
    size_t ksz = (size_t)kv->n_blocks * kv->block * kv->k_bytes;
    for (int32_t l = 0, at = 0; host && l < n_layer; l++) { /* host layers in order */
        if (em_kv_on_device(kv, l)) continue;
        kv->k[l] = (char *)kv->mem + (size_t)at++ * per_layer;
        kv->v[l] = (char *)kv->k[l] + ksz;
    }
    for (int64_t i = 0; i < all; i++) kv->tables[i] = -1;
    for (uint32_t i = 0; i < n_bucket; i++) kv->bucket[i] = -1;
    kv->lru_head = kv->lru_tail = -1;
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
    em_free(a, kv->ref);
    em_free(a, kv->free_list);
    em_free(a, kv->tokens);
    em_free(a, kv->hash);
    em_free(a, kv->sealed);
    em_free(a, kv->bucket);
    em_free(a, kv->chain);
    em_free(a, kv->lru_prev);
    em_free(a, kv->lru_next);
    em_free(a, kv->pending);
    memset(kv, 0, sizeof *kv);
}

size_t em_kv_layer_bytes(const em_kv *kv) {
    return (size_t)kv->n_blocks * (size_t)kv->block * (kv->k_bytes + kv->v_bytes);
}

size_t em_kv_layer_offset(const em_kv *kv, int layer) {
    return (size_t)(layer - kv->dev_first) * em_kv_layer_bytes(kv);
}

size_t em_kv_device_bytes(const em_kv *kv) {
    return (size_t)(kv->dev_end - kv->dev_first) * em_kv_layer_bytes(kv);
}

size_t em_kv_host_bytes(const em_kv *kv) {
    return (size_t)(kv->n_layer - (kv->dev_end - kv->dev_first)) * em_kv_layer_bytes(kv);
}

size_t em_kv_block_bytes(const em_kv *kv) {
    return (size_t)kv->block * (kv->k_bytes + kv->v_bytes) * (size_t)kv->n_layer;
}

static int32_t *table_of(const em_kv *kv, int32_t s) {
    return kv->tables + (size_t)s * kv->blocks_per_seq;
}

/* ---- the prefix index and the LRU list of cached blocks ---- */

static void lru_remove(em_kv *kv, int32_t b) {
    int32_t p = kv->lru_prev[b], n = kv->lru_next[b];
    if (p >= 0) kv->lru_next[p] = n; else kv->lru_head = n;
    if (n >= 0) kv->lru_prev[n] = p; else kv->lru_tail = p;
    kv->n_cached--;
}

static void lru_append(em_kv *kv, int32_t b) {
    kv->lru_prev[b] = kv->lru_tail;
    kv->lru_next[b] = -1;
    if (kv->lru_tail >= 0) kv->lru_next[kv->lru_tail] = b; else kv->lru_head = b;
    kv->lru_tail = b;
    kv->n_cached++;
}

static void index_insert(em_kv *kv, int32_t b, uint64_t h) {
    uint32_t k = (uint32_t)h & kv->bucket_mask;
    kv->hash[b] = h;
    kv->sealed[b] = 1;
    kv->chain[b] = kv->bucket[k];
    kv->bucket[k] = b;
}

/* Unseals block b: it is about to be written or reused for other data. */
static void unseal(em_kv *kv, int32_t b) {
    if (!kv->sealed[b]) return;
    int32_t *p = &kv->bucket[(uint32_t)kv->hash[b] & kv->bucket_mask];
    while (*p != b) p = &kv->chain[*p];
    *p = kv->chain[b];
    kv->sealed[b] = 0;
}

uint64_t em_kv_hash_block(uint64_t parent, const int32_t *tokens, int32_t n) {
    uint64_t h = parent;
    for (int32_t i = 0; i < n; i++) {
        h ^= (uint32_t)tokens[i];
        h *= 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
    }
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    return h ^ (h >> 32);
}

/* ---- taking and dropping blocks ---- */

static int32_t take_block(em_kv *kv) {
    int32_t b;
    if (kv->n_free > 0) {
        b = kv->free_list[--kv->n_free];
    } else { /* the plan counted cached blocks as available: evict one */
        b = kv->lru_head;
        lru_remove(kv, b);
        unseal(kv, b);
        kv->evicted++;
    }
    kv->ref[b] = 1;
    return b;
}

static void drop_block(em_kv *kv, int32_t b) {
    if (--kv->ref[b] > 0) return;
    if (kv->sealed[b]) lru_append(kv, b); /* kept for reuse until evicted */
    else kv->free_list[kv->n_free++] = b;
}

static void copy_block(em_kv *kv, int32_t dst, int32_t src) {
    memcpy(kv->tokens + (size_t)dst * kv->block, kv->tokens + (size_t)src * kv->block,
           kv->block * sizeof *kv->tokens);
    kv->copies++;
    if (kv->dev_end > kv->dev_first) { /* the backend copies the device layers' rows */
        if (kv->n_pending < kv->n_blocks) {
            kv->pending[kv->n_pending][0] = dst;
            kv->pending[kv->n_pending++][1] = src;
        } else {
            kv->pending_lost = true;
        }
    }
    size_t kb = (size_t)kv->block * kv->k_bytes;
    size_t vb = (size_t)kv->block * kv->v_bytes;
    for (int32_t l = 0; l < kv->n_layer; l++) {
        if (em_kv_on_device(kv, l)) continue;
        memcpy((char *)kv->k[l] + (size_t)dst * kb, (char *)kv->k[l] + (size_t)src * kb, kb);
        memcpy((char *)kv->v[l] + (size_t)dst * vb, (char *)kv->v[l] + (size_t)src * vb, vb);
    }
}

em_kv_need em_kv_plan(const em_kv *kv, int32_t s, int32_t from, int32_t to) {
    const int32_t *table = table_of(kv, s);
    int32_t want = blocks_for(kv, to), have = kv->n_table[s];
    em_kv_need n = { want > have ? want - have : 0, 0 };
    for (int32_t i = want; i < have; i++) n.released += kv->ref[table[i]] == 1;
    int32_t end = want < have ? want : have;
    for (int32_t i = from / kv->block; i < end; i++) n.alloc += kv->ref[table[i]] > 1;
    return n;
}

void em_kv_truncate(em_kv *kv, int32_t s, int32_t n) {
    int32_t *table = table_of(kv, s);
    int32_t want = blocks_for(kv, n);
    while (kv->n_table[s] > want) {
        int32_t i = --kv->n_table[s];
        drop_block(kv, table[i]);
        table[i] = -1;
    }
    if (kv->len[s] > n) kv->len[s] = n;
}

void em_kv_prepare(em_kv *kv, int32_t s, int32_t from, int32_t to) {
    int32_t *table = table_of(kv, s);
    em_kv_truncate(kv, s, to);
    /* copy-on-write: this sequence is about to write these blocks; one it
     * holds alone is written in place, and leaves the index first */
    for (int32_t i = from / kv->block; i < kv->n_table[s]; i++) {
        if (kv->ref[table[i]] == 1) {
            unseal(kv, table[i]);
            continue;
        }
        int32_t b = take_block(kv);
        copy_block(kv, b, table[i]);
        drop_block(kv, table[i]);
        table[i] = b;
    }
    int32_t want = blocks_for(kv, to);
    while (kv->n_table[s] < want) table[kv->n_table[s]++] = take_block(kv);
    kv->len[s] = to;
}

void em_kv_fork(em_kv *kv, int32_t src, int32_t dst) {
    if (src == dst) return;
    em_kv_truncate(kv, dst, 0);
    const int32_t *from = table_of(kv, src);
    int32_t *to = table_of(kv, dst);
    for (int32_t i = 0; i < kv->n_table[src]; i++) {
        to[i] = from[i];
        kv->ref[from[i]]++;
    }
    kv->n_table[dst] = kv->n_table[src];
    kv->len[dst] = kv->len[src];
}

void em_kv_clear(em_kv *kv, int32_t s) {
    if (s < 0) {
        for (int32_t i = 0; i < kv->n_seq; i++) em_kv_truncate(kv, i, 0);
        /* every copied block is dropped with its holder, and none was sealed
         * while copies were lost (the backend refused to run) */
        kv->n_pending = 0;
        kv->pending_lost = false;
    } else {
        em_kv_truncate(kv, s, 0);
    }
}

void em_kv_seal(em_kv *kv, int32_t s, int32_t from, int32_t to) {
    const int32_t *table = table_of(kv, s);
    /* the blocks whose last position lies in [from, to) */
    for (int32_t i = from / kv->block; i < to / kv->block; i++) {
        int32_t b = table[i];
        uint64_t parent = EM_KV_HASH_ROOT;
        if (i > 0) {
            int32_t pb = table[i - 1];
            if (!kv->sealed[pb]) return; /* cannot happen: positions are written in order */
            parent = kv->hash[pb];
        }
        if (kv->sealed[b]) continue;
        index_insert(kv, b, em_kv_hash_block(parent, kv->tokens + (size_t)b * kv->block, kv->block));
    }
}

/* A sealed block named h holding `tokens`, or -1. */
static int32_t index_find(const em_kv *kv, uint64_t h, const int32_t *tokens) {
    for (int32_t b = kv->bucket[(uint32_t)h & kv->bucket_mask]; b >= 0; b = kv->chain[b])
        if (kv->hash[b] == h &&
            !memcmp(kv->tokens + (size_t)b * kv->block, tokens, kv->block * sizeof *tokens))
            return b;
    return -1;
}

int32_t em_kv_reuse(em_kv *kv, int32_t s, const int32_t *tokens, int32_t n) {
    em_kv_truncate(kv, s, 0);
    int32_t *table = table_of(kv, s);
    int32_t max_blocks = n > 0 ? n / kv->block : 0;
    if (max_blocks > kv->blocks_per_seq) max_blocks = kv->blocks_per_seq;
    uint64_t h = EM_KV_HASH_ROOT;
    int32_t i = 0;
    for (; i < max_blocks; i++) {
        const int32_t *t = tokens + (size_t)i * kv->block;
        h = em_kv_hash_block(h, t, kv->block);
        int32_t b = index_find(kv, h, t);
        if (b < 0) break;
        if (kv->ref[b]++ == 0) lru_remove(kv, b);
        table[i] = b;
    }
    kv->n_table[s] = i;
    /* position n-1 stays to be evaluated; writing it into a block matched
     * whole is copy-on-write (or in place, when no one else holds it) */
    kv->len[s] = i == 0 ? 0 : i * kv->block < n ? i * kv->block : n - 1;
    kv->reused += (uint64_t)kv->len[s];
    return kv->len[s];
}
