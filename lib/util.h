/* Internal helpers shared by the whole library: allocation through the
 * caller's hooks, error recording, logging, overflow-checked arithmetic,
 * a string hash map and an allocation-free sort. */
#ifndef EMBER_UTIL_H
#define EMBER_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ember.h"

/* ---- allocation ---- */
typedef struct em_alloc {
    ember_allocator hooks; /* resolved: never NULL functions */
} em_alloc;

void em_alloc_init(em_alloc *a, const ember_allocator *user);
void *em_malloc(const em_alloc *a, size_t size);
void *em_calloc(const em_alloc *a, size_t n, size_t size); /* overflow-checked */
void em_free(const em_alloc *a, void *p);
/* Aligned allocation (alignment a power of two <= 4096); free with em_free_aligned. */
void *em_malloc_aligned(const em_alloc *a, size_t size, size_t align);
void em_free_aligned(const em_alloc *a, void *p);

/* ---- errors ---- */
/* Records a formatted message in the thread-local last-error slot and, if
 * slot != NULL, in that object's buffer (EM_ERRMSG_SIZE bytes). Returns
 * `status` so that call sites read `return em_error(...)`. */
#define EM_ERRMSG_SIZE 512
int em_error(char *slot, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void em_clear_error(char *slot);

/* ---- growable params structs ---- */
/* Copies a caller's params struct (which starts with size_t struct_size)
 * over `dst`, already filled with the defaults: only the bytes the caller's
 * version has. Sizes below v1_size (the first released layout, frozen) or
 * absurdly large are refused, naming `what`. src NULL keeps the defaults. */
int em_read_params(void *dst, size_t dst_size, const void *src, size_t v1_size,
                   const char *what);

/* ---- logging ---- */
void em_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Online CPUs (1 where the platform cannot tell): the default thread count. */
int em_online_cpus(void);

/* ---- checked arithmetic: return false on overflow ---- */
static inline bool em_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool em_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
static inline bool em_mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool em_add_size(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
static inline size_t em_align_up(size_t x, size_t a) { return (x + a - 1) & ~(a - 1); }

/* ---- string -> int32 hash map over caller-owned key bytes ---- */
typedef struct em_strmap {
    const char **keys;
    uint32_t *lens;
    int32_t *vals;
    size_t cap; /* power of two */
} em_strmap;

uint64_t em_hash_bytes(const void *p, size_t n);
/* Room for n keys at load factor <= 1/2. */
int em_strmap_init(em_strmap *m, const em_alloc *a, size_t n);
void em_strmap_free(em_strmap *m, const em_alloc *a);
/* Inserts; returns false if the key exists (its value is left as is). */
bool em_strmap_put(em_strmap *m, const char *key, size_t len, int32_t val);
/* Value for key, or -1. */
int32_t em_strmap_get(const em_strmap *m, const char *key, size_t len);

/* ---- sorting without allocation (heap sort of an index array) ---- */
typedef int (*em_cmp_fn)(uint32_t a, uint32_t b, const void *user);
void em_sort_index(uint32_t *idx, size_t n, em_cmp_fn cmp, const void *user);

/* fp16 / bf16 conversion, exact. */
float em_f16_to_f32(uint16_t h);
uint16_t em_f32_to_f16(float f);
static inline float em_bf16_to_f32(uint16_t b) {
    union { uint32_t u; float f; } v = { (uint32_t)b << 16 };
    return v.f;
}
/* Round to nearest even (as VCVTNEPS2BF16 and PyTorch do); NaN stays NaN. */
static inline uint16_t em_f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = { f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1)) >> 16);
}
/* f rounded to the nearest BF16 value, as a float */
static inline float em_round_bf16(float f) { return em_bf16_to_f32(em_f32_to_bf16(f)); }

#endif
