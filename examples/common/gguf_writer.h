/* A minimal GGUF writer for examples and tests: builds a file image in a
 * growable buffer. Deliberately permissive (tests use it to write broken
 * files); it does not validate what it writes. */
#ifndef EMBER_GGUF_WRITER_H
#define EMBER_GGUF_WRITER_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw {
    uint8_t *buf;
    size_t len, cap;
    int oom;
} gw;

void gw_bytes(gw *w, const void *p, size_t n);
void gw_u8(gw *w, uint8_t v);
void gw_u32(gw *w, uint32_t v);
void gw_u64(gw *w, uint64_t v);
void gw_f32(gw *w, float v);
void gw_str(gw *w, const char *s);
void gw_pad(gw *w, size_t align);
void gw_header(gw *w, uint32_t version, uint64_t n_tensors, uint64_t n_kv);
void gw_kv_u32(gw *w, const char *key, uint32_t v);
void gw_kv_f32(gw *w, const char *key, float v);
void gw_kv_bool(gw *w, const char *key, int v);
void gw_kv_str(gw *w, const char *key, const char *v);
void gw_kv_arr_str(gw *w, const char *key, const char *const *v, size_t n);
void gw_kv_arr_f32(gw *w, const char *key, const float *v, size_t n);
void gw_kv_arr_i32(gw *w, const char *key, const int32_t *v, size_t n);
void gw_tensor_info(gw *w, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                    uint64_t offset);
void gw_free(gw *w);

/* A 64-byte aligned copy of the image (free with free()). */
void *gw_aligned_copy(const gw *w);

#endif
