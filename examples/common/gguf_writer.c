#include "gguf_writer.h"

#include <stdlib.h>
#include <string.h>

void gw_bytes(gw *w, const void *p, size_t n) {
    if (w->oom) return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n) cap *= 2;
        uint8_t *b = realloc(w->buf, cap);
        if (!b) { w->oom = 1; return; }
        w->buf = b;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

void gw_u8(gw *w, uint8_t v) { gw_bytes(w, &v, 1); }
void gw_u32(gw *w, uint32_t v) { gw_bytes(w, &v, 4); }
void gw_u64(gw *w, uint64_t v) { gw_bytes(w, &v, 8); }
void gw_f32(gw *w, float v) { gw_bytes(w, &v, 4); }

void gw_str(gw *w, const char *s) {
    size_t n = strlen(s);
    gw_u64(w, n);
    gw_bytes(w, s, n);
}

void gw_pad(gw *w, size_t align) {
    while (w->len % align) gw_u8(w, 0);
}

void gw_header(gw *w, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    gw_bytes(w, "GGUF", 4);
    gw_u32(w, version);
    gw_u64(w, n_tensors);
    gw_u64(w, n_kv);
}

void gw_kv_u32(gw *w, const char *key, uint32_t v) { gw_str(w, key); gw_u32(w, 4); gw_u32(w, v); }
void gw_kv_f32(gw *w, const char *key, float v) { gw_str(w, key); gw_u32(w, 6); gw_f32(w, v); }
void gw_kv_bool(gw *w, const char *key, int v) { gw_str(w, key); gw_u32(w, 7); gw_u8(w, (uint8_t)v); }
void gw_kv_str(gw *w, const char *key, const char *v) { gw_str(w, key); gw_u32(w, 8); gw_str(w, v); }

void gw_kv_arr_str(gw *w, const char *key, const char *const *v, size_t n) {
    gw_str(w, key);
    gw_u32(w, 9);
    gw_u32(w, 8);
    gw_u64(w, n);
    for (size_t i = 0; i < n; i++) gw_str(w, v[i]);
}

void gw_kv_arr_f32(gw *w, const char *key, const float *v, size_t n) {
    gw_str(w, key);
    gw_u32(w, 9);
    gw_u32(w, 6);
    gw_u64(w, n);
    gw_bytes(w, v, n * 4);
}

void gw_kv_arr_i32(gw *w, const char *key, const int32_t *v, size_t n) {
    gw_str(w, key);
    gw_u32(w, 9);
    gw_u32(w, 5);
    gw_u64(w, n);
    gw_bytes(w, v, n * 4);
}

void gw_tensor_info(gw *w, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                    uint64_t offset) {
    gw_str(w, name);
    gw_u32(w, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) gw_u64(w, ne[i]);
    gw_u32(w, type);
    gw_u64(w, offset);
}

void gw_free(gw *w) {
    free(w->buf);
    memset(w, 0, sizeof *w);
}

void *gw_aligned_copy(const gw *w) {
    void *p = NULL;
    if (posix_memalign(&p, 64, w->len ? w->len : 1)) return NULL;
    memcpy(p, w->buf, w->len);
    return p;
}
