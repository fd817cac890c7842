/* GGUF v2/v3 reader. Parses a file image already in memory (mmap or the
 * caller's buffer) without copying tensor data or string values: entries
 * point into the image. Everything read is validated against the image's
 * size before use; a malformed file gives EMBER_ERR_FORMAT with a message
 * naming the field and its byte offset, and nothing stays allocated. */
#ifndef EMBER_GGUF_H
#define EMBER_GGUF_H

#include "util.h"

enum em_gguf_vtype {
    GGUF_U8 = 0, GGUF_I8 = 1, GGUF_U16 = 2, GGUF_I16 = 3, GGUF_U32 = 4, GGUF_I32 = 5,
    GGUF_F32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_U64 = 10,
    GGUF_I64 = 11, GGUF_F64 = 12, GGUF_VTYPE_COUNT = 13
};

typedef struct em_gguf_kv {
    const char *key;      /* NUL-terminated copy, owned by the em_gguf */
    uint32_t type;        /* em_gguf_vtype */
    uint32_t arr_type;    /* element type when type == GGUF_ARRAY */
    uint64_t n;           /* array length, or string length */
    const uint8_t *data;  /* value bytes in the image (string: its bytes) */
    uint64_t offset;      /* byte offset of the value in the file */
} em_gguf_kv;

#define EM_MAX_DIMS 4

typedef struct em_gguf_tensor {
    const char *name;     /* NUL-terminated copy */
    uint32_t n_dims;
    uint32_t type;        /* ember_type / GGUF tensor type */
    int64_t ne[EM_MAX_DIMS]; /* unused dims are 1 */
    uint64_t offset;      /* relative to the data section */
    uint64_t nbytes;
    const uint8_t *data;
} em_gguf_tensor;

typedef struct em_gguf_limits {
    uint64_t max_string;
    uint64_t max_array;
    uint64_t max_tensors;
} em_gguf_limits;

typedef struct em_gguf {
    const uint8_t *base;
    size_t size;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;
    uint64_t info_offset; /* where the tensor infos start (the metadata's end) */
    uint64_t n_kv;
    em_gguf_kv *kv;
    uint64_t n_tensors;
    em_gguf_tensor *tensors;
    char *pool; /* keys and names, NUL-terminated */
    em_strmap kv_map;
    em_strmap tensor_map;
} em_gguf;

/* Type table. block = elements per block, size = bytes per block. */
typedef struct em_type_info {
    const char *name;
    uint32_t block;
    uint32_t size;
    bool supported; /* this build can compute with it */
} em_type_info;
const em_type_info *em_type_info_get(uint32_t type); /* NULL if unknown */

int em_gguf_parse(em_gguf *g, const void *data, size_t size, const em_gguf_limits *lim,
                  const em_alloc *a);
void em_gguf_free(em_gguf *g, const em_alloc *a);

const em_gguf_kv *em_gguf_find(const em_gguf *g, const char *key);
const em_gguf_tensor *em_gguf_tensor_find(const em_gguf *g, const char *name);

/* Typed reads of a kv; they fail with a message naming the key on a type
 * mismatch. Integer reads accept any integer type whose value fits. */
int em_gguf_get_i64(const em_gguf_kv *kv, int64_t *out);
int em_gguf_get_f64(const em_gguf_kv *kv, double *out);
/* Element i of a numeric array as double / int64 (bounds are the caller's). */
double em_gguf_arr_f64(const em_gguf_kv *kv, uint64_t i);
int64_t em_gguf_arr_i64(const em_gguf_kv *kv, uint64_t i);
size_t em_gguf_vtype_size(uint32_t t); /* 0 for string/array/unknown */
const char *em_gguf_vtype_name(uint32_t t);

#endif
