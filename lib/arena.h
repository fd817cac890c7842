/* The arena behind ember_arena_allocator and ember_memory_plan_get.
 *
 * Blocks are taken from the top of one buffer in order; a freed block is
 * returned when it is the top one, together with the freed blocks below
 * it (so a call that frees its temporaries, in any order, leaves the top
 * where it was). The same arithmetic runs in a sizing mode that places
 * no block in a buffer: each block is a small allocation of the backing
 * allocator holding the block's header (and its bytes, unless it is a
 * bulk block: em_malloc_aligned's KV rows and work buffers, which
 * creation does not touch). ember_memory_plan_get creates a model and a
 * context through a sizing arena and reads its peak: the exact size of a
 * real arena for the same calls. */
#ifndef EMBER_ARENA_H
#define EMBER_ARENA_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

/* Header bytes at the start of a real arena's buffer. */
size_t em_arena_overhead(void);

/* Whether an allocator is a sizing arena's (em_malloc_aligned asks). */
bool em_arena_is_sizing(const em_alloc *a);
/* A bulk block of `size` bytes in a sizing arena: counted in full, backed
 * by `backed` real bytes only. */
void *em_arena_sizing_bulk(const em_alloc *a, size_t size, size_t backed);

typedef struct em_arena em_arena;
/* A sizing arena over the backing allocator; *hooks receives its
 * allocator. */
int em_arena_sizing_create(const em_alloc *backing, em_arena **out, ember_allocator *hooks);
/* Peak bytes a real arena would need (overhead included). */
size_t em_arena_sizing_peak(const em_arena *ar);
size_t em_arena_sizing_top(const em_arena *ar);
void em_arena_sizing_free(em_arena **ar, const em_alloc *backing);

#endif
