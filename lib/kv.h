/* The KV cache, paged: K and V rows live in fixed-size blocks of
 * `block` positions (a context parameter, EMBER_KV_BLOCK by default), and
 * each sequence owns a block table mapping its logical block i (positions
 * i*block ...) to a physical block. The
 * attention kernel reads only through the table, so blocks need not be
 * contiguous. Blocks come from one free list shared by all sequences.
 *
 * Blocks are reference-counted: a fork makes the child's table point at
 * the parent's blocks (copy-on-write), and a write into a block that more
 * than one table holds first copies it to a fresh block. A block returns
 * to the free list when its last holder drops it.
 *
 * Changing the cache is two-phase so a batch is all-or-nothing:
 * em_kv_plan counts what a write would need, the caller checks the total
 * against em_kv_available, and only then em_kv_prepare changes tables.
 *
 * Prefix index: once a block is full, em_kv_seal names it by a hash of its
 * tokens chained with the hash of the block before it (so equal names mean
 * equal whole prefixes, not just equal windows of one block) and enters it in
 * an index. A sealed block is never written again while sealed: a write
 * into it unseals it first (or copies it, when shared). A sealed block
 * that no sequence holds is not freed but kept "cached" on an LRU list;
 * em_kv_reuse attaches cached or held blocks to a new sequence whose
 * tokens start the same way, and take_block evicts the least recently
 * released cached block when the free list is empty. Every sealed block is
 * in the index, duplicates included, so a prefix stays findable as long
 * as any block holding it does. */
#ifndef EMBER_KV_H
#define EMBER_KV_H

#include "util.h"

typedef struct em_kv {
    int32_t n_layer;
    int32_t n_ctx;          /* positions per sequence */
    int32_t n_seq;
    int32_t n_blocks;       /* physical blocks */
    int32_t blocks_per_seq; /* table width */
    int32_t block;          /* positions per block: a power of two */
    int32_t block_shift;    /* log2(block) */
    int64_t k_row, v_row;   /* elements per position per layer */
    uint32_t type;          /* EMBER_TYPE_F32, F16 or Q8_0 */
    size_t k_bytes, v_bytes; /* bytes of one position's K (V) row */
    void **k, **v;          /* per layer: [n_blocks * block][row] */
    int32_t *tables;        /* [n_seq][blocks_per_seq], -1 = none */
    int32_t *n_table;       /* blocks held per sequence */
    int32_t *len;           /* cached positions per sequence */
    int32_t *ref;           /* per block: tables holding it (0 = free) */
    int32_t *free_list;
    int32_t n_free;
    uint64_t copies;        /* blocks copied on write, ever */
    void *mem;              /* one allocation for all layers' K and V */
    /* prefix index */
    int32_t *tokens;        /* per slot: the token whose K/V the slot holds */
    uint64_t *hash;         /* per block: chained hash, valid when sealed */
    uint8_t *sealed;        /* per block: full, hashed and in the index */
    int32_t *bucket;        /* [bucket_mask + 1]: first sealed block, -1 */
    int32_t *chain;         /* per block: next sealed block in its bucket */
    uint32_t bucket_mask;
    int32_t *lru_prev, *lru_next; /* cached (sealed, unreferenced) blocks */
    int32_t lru_head, lru_tail;   /* head: released longest ago */
    int32_t n_cached;
    uint64_t reused;        /* positions attached by em_kv_reuse, ever */
    uint64_t evicted;       /* cached blocks taken for new data, ever */
    /* layers [dev_first, dev_end) live on a device (em_layer_range);
     * block copies the backend still owes for them */
    int32_t dev_first, dev_end;
    int32_t (*pending)[2];  /* [n_blocks] (dst, src), in order */
    int32_t n_pending;
    bool pending_lost;      /* more copies than fit: the rows are unknown */
} em_kv;

/* Where the rows live, per layer. Host layers: in kv->mem, addressed by
 * em_kv_k/v. Device layers (a range, so a model split between a GPU and
 * the CPU keeps each layer's rows where its layer runs): a backend keeps
 * them (em_kv_device_bytes of them, laid out as em_kv_layer_offset says);
 * their k and v are NULL, and a block copy (copy-on-write) is queued in
 * kv->pending for the backend to apply, in order, before it next reads or
 * writes the cache (host layers copy at once). The queue holds n_blocks
 * copies, which one batch never exceeds (each copy takes a distinct fresh
 * block); should failed evaluations pile up more, pending_lost is set and
 * the backend refuses to run until the whole cache is cleared
 * (em_kv_clear(kv, -1)). */
typedef struct em_layer_range {
    int32_t first, end; /* layers [first, end); first == end: none */
} em_layer_range;

/* n_blocks 0: enough for every sequence to reach n_ctx. block: positions
 * per block, a power of two (the caller checks). For Q8_0 the caller has
 * checked that rows split into whole blocks per head. `device`: the layers
 * whose rows a backend keeps (within 0..n_layer; the caller checks). */
int em_kv_init(em_kv *kv, const em_alloc *a, int32_t n_layer, int64_t k_row, int64_t v_row,
               int32_t n_ctx, int32_t n_seq, int32_t n_blocks, int32_t block, uint32_t type,
               em_layer_range device);
void em_kv_free(em_kv *kv, const em_alloc *a);
/* Bytes of one block, all layers, K and V. */
size_t em_kv_block_bytes(const em_kv *kv);
/* Bytes of one layer's rows (K then V), of the host layers' rows and of
 * the device layers' rows. */
size_t em_kv_layer_bytes(const em_kv *kv);
size_t em_kv_host_bytes(const em_kv *kv);
size_t em_kv_device_bytes(const em_kv *kv);
/* Where device layer l's K rows start in the device's rows (its V rows
 * follow the K rows: em_kv_layer_offset + n_blocks * block * k_bytes);
 * l from dev_first to dev_end (the end of the last). */
size_t em_kv_layer_offset(const em_kv *kv, int layer);
static inline bool em_kv_on_device(const em_kv *kv, int layer) {
    return layer >= kv->dev_first && layer < kv->dev_end;
}

/* Address of the K (or V) row of a cache slot in a layer. */
static inline void *em_kv_k(const em_kv *kv, int layer, int64_t slot) {
    return (char *)kv->k[layer] + (size_t)slot * kv->k_bytes;
}
static inline void *em_kv_v(const em_kv *kv, int layer, int64_t slot) {
    return (char *)kv->v[layer] + (size_t)slot * kv->v_bytes;
}

/* What writing positions [from, to) of sequence s (dropping its positions
 * >= to) would take: `alloc` fresh blocks (growth plus copies of shared
 * blocks in the written range, counted as if no other write of the same
 * batch had copied them first, so the count is an upper bound) and
 * `released` blocks it would hand back to the free list. */
typedef struct em_kv_need {
    int32_t alloc, released;
} em_kv_need;
em_kv_need em_kv_plan(const em_kv *kv, int32_t s, int32_t from, int32_t to);

/* Blocks a write can take: free ones plus cached ones (evicted on
 * demand). */
static inline int32_t em_kv_available(const em_kv *kv) { return kv->n_free + kv->n_cached; }

/* Makes sequence s ready to write positions [from, to): drops positions
 * >= to, copies shared blocks in the written range, adds blocks. The
 * caller has checked em_kv_plan's totals against n_free, so it cannot
 * fail. */
void em_kv_prepare(em_kv *kv, int32_t s, int32_t from, int32_t to);
/* Keeps positions < n of sequence s (n >= its length: no change). */
void em_kv_truncate(em_kv *kv, int32_t s, int32_t n);
/* Sequence dst becomes a copy of src sharing all its blocks (dst's own
 * blocks are dropped first). Needs no free block. */
void em_kv_fork(em_kv *kv, int32_t src, int32_t dst);
/* Drops every position of sequence s, or of all sequences for s < 0. */
void em_kv_clear(em_kv *kv, int32_t s);

/* The chained name of a block holding tokens[0..n) (n = the block size)
 * after a block named `parent` (EM_KV_HASH_ROOT for a sequence's first
 * block). */
#define EM_KV_HASH_ROOT 0x243f6a8885a308d3ull
uint64_t em_kv_hash_block(uint64_t parent, const int32_t *tokens, int32_t n);
/* After positions [from, to) of sequence s were written (their tokens in
 * kv->tokens): seals every block of s that the write filled up. */
void em_kv_seal(em_kv *kv, int32_t s, int32_t from, int32_t to);
/* Drops sequence s's positions, then attaches the longest run of sealed
 * blocks whose chained names and tokens match tokens[0..n), and sets the
 * length short of position n-1 so the caller still evaluates the last
 * token (its logits are the point). Needs no free block. Returns the new
 * length. A 64-bit name collision between
 * different prefixes whose last blocks hold equal tokens would attach a wrong
 * block; the chance is about (sealed blocks)^2 / 2^64. */
int32_t em_kv_reuse(em_kv *kv, int32_t s, const int32_t *tokens, int32_t n);

static inline int64_t em_kv_slot(const em_kv *kv, int32_t s, int32_t pos) {
    return (int64_t)kv->tables[(size_t)s * kv->blocks_per_seq + pos / kv->block] * kv->block +
           pos % kv->block;
}

/* The cache of a context (context.c), for tests that check its state
 * byte for byte. */
struct ember_context;
em_kv *em_context_kv(struct ember_context *c);

#endif
