#include "util.h"

#include "arena.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

/* ---- allocation ---- */

static void *libc_malloc(size_t size, void *user) { (void)user; return malloc(size); }
static void *libc_realloc(void *p, size_t size, void *user) { (void)user; return realloc(p, size); }
static void libc_free(void *p, void *user) { (void)user; free(p); }

void em_alloc_init(em_alloc *a, const ember_allocator *user) {
    if (user && user->malloc_fn && user->realloc_fn && user->free_fn) {
        a->hooks = *user;
    } else {
        a->hooks.malloc_fn = libc_malloc;
        a->hooks.realloc_fn = libc_realloc;
        a->hooks.free_fn = libc_free;
        a->hooks.user = NULL;
    }
}

void *em_malloc(const em_alloc *a, size_t size) {
    return a->hooks.malloc_fn(size ? size : 1, a->hooks.user);
}

void *em_calloc(const em_alloc *a, size_t n, size_t size) {
    size_t total;
    if (!em_mul_size(n, size, &total)) return NULL;
    void *p = em_malloc(a, total);
    if (p) memset(p, 0, total);
    return p;
}

void em_free(const em_alloc *a, void *p) {
    if (p) a->hooks.free_fn(p, a->hooks.user);
}

/* The raw pointer is stored just before the aligned block. */
void *em_malloc_aligned(const em_alloc *a, size_t size, size_t align) {
    size_t total;
    if (!em_add_size(size, align + sizeof(void *), &total)) return NULL;
    /* aligned blocks are the bulk ones (KV rows, work buffers): a memory
     * plan counts them without backing them (arena.h) */
    unsigned char *raw = em_arena_is_sizing(a) ? em_arena_sizing_bulk(a, total, align + sizeof(void *))
                                               : em_malloc(a, total);
    if (!raw) return NULL;
    uintptr_t p = ((uintptr_t)raw + sizeof(void *) + align - 1) & ~(uintptr_t)(align - 1);
    ((void **)p)[-1] = raw;
    return (void *)p;
}

void em_free_aligned(const em_alloc *a, void *p) {
    if (p) em_free(a, ((void **)p)[-1]);
}

/* ---- errors ---- */

static _Thread_local char tls_error[EM_ERRMSG_SIZE];

int em_error(char *slot, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_error, sizeof tls_error, fmt, ap);
    va_end(ap);
    if (slot) memcpy(slot, tls_error, EM_ERRMSG_SIZE);
    em_log(EMBER_LOG_DEBUG, "%s: %s", ember_status_string(status), tls_error);
    return status;
}

void em_clear_error(char *slot) {
    if (slot) slot[0] = 0;
}

EMBER_API const char *ember_last_error(void) { return tls_error; }

EMBER_API const char *ember_status_string(int status) {
    switch (status) {
    case EMBER_OK: return "ok";
    case EMBER_ERR_INVALID_ARGUMENT: return "invalid argument";
    case EMBER_ERR_NO_MEMORY: return "out of memory";
    case EMBER_ERR_IO: return "I/O error";
    case EMBER_ERR_FORMAT: return "format error";
    case EMBER_ERR_UNSUPPORTED: return "unsupported";
    case EMBER_ERR_NOT_AVAILABLE: return "not available";
    case EMBER_ERR_CONTEXT_FULL: return "context full";
    case EMBER_ERR_KV_FULL: return "KV cache full";
    case EMBER_ERR_BAD_TOKEN: return "bad token";
    case EMBER_ERR_BUFFER_TOO_SMALL: return "buffer too small";
    case EMBER_ERR_NOT_FOUND: return "not found";
    case EMBER_ERR_BAD_STATE: return "bad state";
    case EMBER_ERR_INTERNAL: return "internal error";
    default: return "unknown status";
    }
}

/* ---- params ---- */

int em_read_params(void *dst, size_t dst_size, const void *src, size_t v1_size,
                   const char *what) {
    if (!src) return EMBER_OK;
    size_t size;
    memcpy(&size, src, sizeof size);
    if (size < v1_size || size > 4096)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "%s: struct_size %zu is not a size "
                        "this library knows; start from the default params", what, size);
    memcpy(dst, src, size < dst_size ? size : dst_size);
    return EMBER_OK;
}

/* ---- logging ---- */

static ember_log_fn log_fn;
static void *log_user;
static int log_level = EMBER_LOG_WARN;

EMBER_API void ember_set_log_callback(ember_log_fn fn, void *user, int max_level) {
    log_fn = fn;
    log_user = user;
    log_level = max_level;
}

void em_log(int level, const char *fmt, ...) {
    if (level > log_level) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (log_fn) log_fn(level, buf, log_user);
    else fprintf(stderr, "ember: %s\n", buf);
}

/* ---- version ---- */

EMBER_API const char *ember_version(void) { return EMBER_VERSION_STRING; }
EMBER_API uint32_t ember_version_number(void) { return EMBER_VERSION_NUMBER; }

/* ---- hash map ---- */

uint64_t em_hash_bytes(const void *p, size_t n) {
    /* FNV-1a, then a final mix so that the low bits used for the index
     * depend on every byte. */
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

int em_strmap_init(em_strmap *m, const em_alloc *a, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) {
        if (cap > SIZE_MAX / 4) return EMBER_ERR_NO_MEMORY;
        cap *= 2;
    }
    memset(m, 0, sizeof *m);
    m->keys = em_calloc(a, cap, sizeof *m->keys);
    m->lens = em_calloc(a, cap, sizeof *m->lens);
    m->vals = em_calloc(a, cap, sizeof *m->vals);
    if (!m->keys || !m->lens || !m->vals) {
        em_strmap_free(m, a);
        return EMBER_ERR_NO_MEMORY;
    }
    m->cap = cap;
    return EMBER_OK;
}

void em_strmap_free(em_strmap *m, const em_alloc *a) {
    em_free(a, m->keys);
    em_free(a, m->lens);
    em_free(a, m->vals);
    memset(m, 0, sizeof *m);
}

static size_t strmap_slot(const em_strmap *m, const char *key, size_t len) {
    size_t i = (size_t)em_hash_bytes(key, len) & (m->cap - 1);
    while (m->keys[i] && !(m->lens[i] == len && memcmp(m->keys[i], key, len) == 0))
        i = (i + 1) & (m->cap - 1);
    return i;
}

bool em_strmap_put(em_strmap *m, const char *key, size_t len, int32_t val) {
    if (!key) key = ""; /* a non-NULL marker for the empty key */
    size_t i = strmap_slot(m, key, len);
    if (m->keys[i]) return false;
    m->keys[i] = key;
    m->lens[i] = (uint32_t)len;
    m->vals[i] = val;
    return true;
}

int32_t em_strmap_get(const em_strmap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    if (!key) key = "";
    size_t i = strmap_slot(m, key, len);
    return m->keys[i] ? m->vals[i] : -1;
}

/* ---- heap sort ---- */

static void sift_down(uint32_t *idx, size_t root, size_t n, em_cmp_fn cmp, const void *user) {
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n) return;
        if (child + 1 < n && cmp(idx[child], idx[child + 1], user) < 0) child++;
        if (cmp(idx[root], idx[child], user) >= 0) return;
        uint32_t t = idx[root];
        idx[root] = idx[child];
        idx[child] = t;
        root = child;
    }
}

void em_sort_index(uint32_t *idx, size_t n, em_cmp_fn cmp, const void *user) {
    if (n < 2) return;
    for (size_t i = n / 2; i-- > 0;) sift_down(idx, i, n, cmp, user);
    for (size_t end = n - 1; end > 0; end--) {
        uint32_t t = idx[0];
        idx[0] = idx[end];
        idx[end] = t;
        sift_down(idx, 0, end, cmp, user);
    }
}

/* ---- half floats ---- */

float em_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    union { uint32_t u; float f; } v;
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24 */
        float f = (float)man * 5.9604644775390625e-8f;
        return sign ? -f : f;
    } else if (exp == 31) {
        v.u = sign | 0x7f800000u | (man << 13);
    } else {
        v.u = sign | ((exp + 112) << 23) | (man << 13);
    }
    return v.f;
}

uint16_t em_f32_to_f16(float f) {
    union { float f; uint32_t u; } v = { f };
    uint32_t sign = (v.u >> 16) & 0x8000;
    uint32_t a = v.u & 0x7fffffff;
    if (a >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (a > 0x7f800000u ? 0x200 : 0));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to inf */
    if (a < 0x38800000u) {
        /* subnormal half: round(|f| * 2^24) to nearest even */
        float m = fabsf(f) * 16777216.0f;
        return (uint16_t)(sign | (uint32_t)lrintf(m));
    }
    uint32_t r = a + 0xfff + ((a >> 13) & 1); /* round to nearest even */
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

int em_online_cpus(void) {
#if defined(_SC_NPROCESSORS_ONLN)
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n < 1024 ? n : 1024) : 1;
#else
    return 1;
#endif
}
