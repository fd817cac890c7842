/* The arena allocator (arena.h): ember_arena_allocator's real arenas in a
 * caller's buffer, and the sizing arenas of ember_memory_plan_get. */
#include "arena.h"

#include <stdint.h>
#include <string.h>

#define ARENA_MAGIC 0x616e7261656d6265ull /* "embearna" */
#define ALIGN 16

typedef struct blk {
    size_t off;  /* offset of this header in the (real or imagined) buffer */
    size_t size; /* payload bytes, a multiple of ALIGN */
    struct blk *prev;
    size_t freed;
} blk; /* 32 bytes: payloads stay 16-aligned */

struct em_arena {
    uint64_t magic;
    int sizing;
    unsigned char *base; /* real: the first block's address */
    size_t cap, top, peak;
    blk *last;
    em_alloc backing; /* sizing: where headers (and non-bulk bytes) live */
    unsigned char pad[8];
};

size_t em_arena_overhead(void) { return (sizeof(em_arena) + ALIGN - 1) & ~(size_t)(ALIGN - 1); }

static bool round_size(size_t size, size_t *out) {
    if (size > SIZE_MAX - sizeof(blk) - ALIGN) return false;
    *out = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    return true;
}

/* Takes a block of `size` payload bytes; backed: real bytes behind it in
 * sizing mode. */
static void *take(em_arena *ar, size_t size, size_t backed) {
    size_t sz;
    if (!round_size(size ? size : 1, &sz)) return NULL;
    size_t need = sizeof(blk) + sz;
    if (!ar->sizing && need > ar->cap - ar->top) return NULL;
    blk *b;
    if (ar->sizing) {
        b = em_malloc(&ar->backing, sizeof(blk) + backed);
        if (!b) return NULL;
    } else {
        b = (blk *)(ar->base + ar->top);
    }
    b->off = ar->top;
    b->size = sz;
    b->prev = ar->last;
    b->freed = 0;
    ar->last = b;
    ar->top += need;
    if (ar->top > ar->peak) ar->peak = ar->top;
    return b + 1;
}

/* Pops freed blocks off the top. */
static void give(em_arena *ar, void *p) {
    if (!p) return;
    blk *b = (blk *)p - 1;
    b->freed = 1;
    while (ar->last && ar->last->freed) {
        blk *t = ar->last;
        ar->top = t->off;
        ar->last = t->prev;
        if (ar->sizing) em_free(&ar->backing, t);
    }
}

static void *arena_malloc(size_t size, void *user) { return take(user, size, size); }

static void arena_free(void *p, void *user) { give(user, p); }

static void *arena_realloc(void *p, size_t size, void *user) {
    em_arena *ar = user;
    if (!p) return take(ar, size, size);
    blk *b = (blk *)p - 1;
    size_t sz;
    if (!round_size(size ? size : 1, &sz)) return NULL;
    if (sz <= b->size) return p;
    if (b == ar->last && (ar->sizing || sz - b->size <= ar->cap - ar->top)) { /* grow in place */
        if (ar->sizing) { /* the same arithmetic; the backing block moves */
            blk *nb = ar->backing.hooks.realloc_fn(b, sizeof(blk) + sz, ar->backing.hooks.user);
            if (!nb) return NULL;
            ar->last = b = nb;
        }
        ar->top += sz - b->size;
        b->size = sz;
        if (ar->top > ar->peak) ar->peak = ar->top;
        return b + 1;
    }
    void *q = take(ar, size, size);
    if (!q) return NULL;
    memcpy(q, p, b->size < size ? b->size : size);
    give(ar, p);
    return q;
}

bool em_arena_is_sizing(const em_alloc *a) {
    return a->hooks.malloc_fn == arena_malloc && ((em_arena *)a->hooks.user)->sizing;
}

void *em_arena_sizing_bulk(const em_alloc *a, size_t size, size_t backed) {
    return take(a->hooks.user, size, backed);
}

static void hooks_of(em_arena *ar, ember_allocator *out) {
    out->malloc_fn = arena_malloc;
    out->realloc_fn = arena_realloc;
    out->free_fn = arena_free;
    out->user = ar;
}

int em_arena_sizing_create(const em_alloc *backing, em_arena **out, ember_allocator *hooks) {
    em_arena *ar = em_calloc(backing, 1, sizeof *ar);
    if (!ar) return EMBER_ERR_NO_MEMORY;
    ar->magic = ARENA_MAGIC;
    ar->sizing = 1;
    ar->backing = *backing;
    ar->top = ar->peak = em_arena_overhead();
    hooks_of(ar, hooks);
    *out = ar;
    return EMBER_OK;
}

size_t em_arena_sizing_peak(const em_arena *ar) { return ar->peak; }
size_t em_arena_sizing_top(const em_arena *ar) { return ar->top; }

void em_arena_sizing_free(em_arena **ar, const em_alloc *backing) {
    if (!ar || !*ar) return;
    em_free(backing, *ar);
    *ar = NULL;
}

/* ---- public ---- */

EMBER_API int ember_arena_allocator(void *buf, size_t size, ember_allocator *out) {
    if (!out) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "arena: out is NULL");
    memset(out, 0, sizeof *out);
    if (!buf || ((uintptr_t)buf & (ALIGN - 1)))
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "arena: the buffer must be non-NULL "
                        "and %d-byte aligned", ALIGN);
    if (size < em_arena_overhead())
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "arena: %zu bytes is less than its "
                        "%zu-byte header", size, em_arena_overhead());
    em_arena *ar = buf;
    memset(ar, 0, sizeof *ar);
    ar->magic = ARENA_MAGIC;
    ar->base = buf;
    ar->cap = size;
    ar->top = ar->peak = em_arena_overhead();
    hooks_of(ar, out);
    return EMBER_OK;
}

EMBER_API int ember_arena_usage(const ember_allocator *a, size_t *used, size_t *peak) {
    if (!a || a->malloc_fn != arena_malloc || !a->user ||
        ((const em_arena *)a->user)->magic != ARENA_MAGIC)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "arena: not an ember arena allocator");
    const em_arena *ar = a->user;
    if (used) *used = ar->top;
    if (peak) *peak = ar->peak;
    return EMBER_OK;
}
