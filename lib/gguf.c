#include "gguf.h"

#include <string.h>

static const em_type_info type_table[] = {
    [0] = { "f32", 1, 4, true },      [1] = { "f16", 1, 2, true },
    [2] = { "q4_0", 32, 18, true },   [3] = { "q4_1", 32, 20, true },
    [6] = { "q5_0", 32, 22, true },  [7] = { "q5_1", 32, 24, true },
    [8] = { "q8_0", 32, 34, true },   [9] = { "q8_1", 32, 36, false },
    [10] = { "q2_K", 256, 84, false }, [11] = { "q3_K", 256, 110, false },
    [12] = { "q4_K", 256, 144, true }, [13] = { "q5_K", 256, 176, true },
    [14] = { "q6_K", 256, 210, true }, [15] = { "q8_K", 256, 292, false },
    [24] = { "i8", 1, 1, false },     [25] = { "i16", 1, 2, false },
    [26] = { "i32", 1, 4, false },    [27] = { "i64", 1, 8, false },
    [28] = { "f64", 1, 8, false },    [30] = { "bf16", 1, 2, true },
};

const em_type_info *em_type_info_get(uint32_t type) {
    if (type >= sizeof type_table / sizeof type_table[0] || !type_table[type].name) return NULL;
    return &type_table[type];
}

EMBER_API const char *ember_type_name(int type) {
    const em_type_info *ti = type >= 0 ? em_type_info_get((uint32_t)type) : NULL;
    return ti ? ti->name : NULL;
}

size_t em_gguf_vtype_size(uint32_t t) {
    static const uint8_t sz[GGUF_VTYPE_COUNT] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };
    return t < GGUF_VTYPE_COUNT ? sz[t] : 0;
}

const char *em_gguf_vtype_name(uint32_t t) {
    static const char *names[GGUF_VTYPE_COUNT] = { "u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                                  "bool", "string", "array", "u64", "i64", "f64" };
    return t < GGUF_VTYPE_COUNT ? names[t] : "unknown";
}

/* ---- cursor over the image ---- */

typedef struct cursor {
    const uint8_t *base;
    uint64_t size;
    uint64_t pos;
} cursor;

#define FAIL(...) em_error(NULL, EMBER_ERR_FORMAT, __VA_ARGS__)

static int need(const cursor *c, uint64_t n, const char *what) {
    if (n > c->size - c->pos)
        return FAIL("gguf: %s at byte %llu: needs %llu bytes, file has %llu left", what,
                    (unsigned long long)c->pos, (unsigned long long)n,
                    (unsigned long long)(c->size - c->pos));
    return EMBER_OK;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what) {
    int rc = need(c, 4, what);
    if (rc) return rc;
    memcpy(v, c->base + c->pos, 4);
    c->pos += 4;
    return EMBER_OK;
}

static int rd_u64(cursor *c, uint64_t *v, const char *what) {
    int rc = need(c, 8, what);
    if (rc) return rc;
    memcpy(v, c->base + c->pos, 8);
    c->pos += 8;
    return EMBER_OK;
}

/* A length-prefixed string: returns its bytes in place. */
static int rd_str(cursor *c, const uint8_t **s, uint64_t *len, uint64_t max, const char *what) {
    uint64_t at = c->pos;
    int rc = rd_u64(c, len, what);
    if (rc) return rc;
    if (*len > max)
        return FAIL("gguf: %s at byte %llu: length %llu exceeds the limit %llu", what,
                    (unsigned long long)at, (unsigned long long)*len, (unsigned long long)max);
    if ((rc = need(c, *len, what))) return rc;
    *s = c->base + c->pos;
    c->pos += *len;
    return EMBER_OK;
}

/* ---- metadata ---- */

static int skip_value(cursor *c, uint32_t type, const em_gguf_limits *lim, em_gguf_kv *kv,
                      const char *key) {
    size_t esz = em_gguf_vtype_size(type);
    if (type == GGUF_STRING) {
        const uint8_t *s = NULL;
        int rc = rd_str(c, &s, &kv->n, lim->max_string, key);
        kv->data = s;
        return rc;
    }
    if (type == GGUF_ARRAY) {
        uint64_t at = c->pos;
        int rc = rd_u32(c, &kv->arr_type, key);
        if (rc) return rc;
        if (kv->arr_type == GGUF_ARRAY)
            return FAIL("gguf: key '%s' at byte %llu: nested arrays are not supported", key,
                        (unsigned long long)at);
        if (kv->arr_type >= GGUF_VTYPE_COUNT)
            return FAIL("gguf: key '%s' at byte %llu: unknown array element type %u", key,
                        (unsigned long long)at, kv->arr_type);
        if ((rc = rd_u64(c, &kv->n, key))) return rc;
        if (kv->n > lim->max_array)
            return FAIL("gguf: key '%s' at byte %llu: array length %llu exceeds the limit %llu",
                        key, (unsigned long long)at, (unsigned long long)kv->n,
                        (unsigned long long)lim->max_array);
        kv->data = c->base + c->pos;
        if (kv->arr_type == GGUF_STRING) {
            /* Each string takes at least 8 bytes: reject impossible counts
             * before walking them. */
            if (kv->n > (c->size - c->pos) / 8)
                return FAIL("gguf: key '%s' at byte %llu: %llu strings cannot fit in the %llu "
                            "bytes left", key, (unsigned long long)at, (unsigned long long)kv->n,
                            (unsigned long long)(c->size - c->pos));
            for (uint64_t i = 0; i < kv->n; i++) {
                const uint8_t *s = NULL;
                uint64_t len;
                if ((rc = rd_str(c, &s, &len, lim->max_string, key))) return rc;
            }
            return EMBER_OK;
        }
        uint64_t bytes;
        if (!em_mul_u64(kv->n, em_gguf_vtype_size(kv->arr_type), &bytes))
            return FAIL("gguf: key '%s' at byte %llu: array size overflows", key,
                        (unsigned long long)at);
        if ((rc = need(c, bytes, key))) return rc;
        c->pos += bytes;
        return EMBER_OK;
    }
    if (esz == 0)
        return FAIL("gguf: key '%s' at byte %llu: unknown value type %u", key,
                    (unsigned long long)c->pos - 4, type);
    int rc = need(c, esz, key);
    if (rc) return rc;
    kv->data = c->base + c->pos;
    if (type == GGUF_BOOL && kv->data[0] > 1)
        return FAIL("gguf: key '%s' at byte %llu: bool value %u is not 0 or 1", key,
                    (unsigned long long)c->pos, kv->data[0]);
    c->pos += esz;
    return EMBER_OK;
}

/* Copies a name into the pool as a C string. */
static char *pool_put(char **pool, const uint8_t *s, uint64_t len) {
    char *out = *pool;
    memcpy(out, s, len);
    out[len] = 0;
    *pool += len + 1;
    return out;
}

/* The header is read twice: PASS_WALK checks every bound, length and type
 * and counts the bytes names need, allocating nothing; PASS_FILL then
 * fills tables sized from what the walk proved is in the file. So no
 * count or length taken from the file is trusted for an allocation before
 * the bytes behind it have been seen. */
typedef enum parse_pass { PASS_WALK, PASS_FILL } parse_pass;

typedef struct names {
    char *pool;         /* PASS_FILL: where names go */
    uint64_t need;      /* PASS_WALK: bytes names will take */
    char scratch[128];  /* PASS_WALK: a name, cut, for messages */
} names;

/* A key or name from the file as a C string: copied into the pool when
 * filling, into a message buffer when walking. NUL bytes are rejected. */
static const char *take_name(names *nm, parse_pass pass, const uint8_t *s, uint64_t len) {
    if (memchr(s, 0, len)) return NULL;
    if (pass == PASS_FILL) return pool_put(&nm->pool, s, len);
    nm->need += len + 1;
    size_t n = len < sizeof nm->scratch - 1 ? (size_t)len : sizeof nm->scratch - 1;
    memcpy(nm->scratch, s, n);
    nm->scratch[n] = 0;
    return nm->scratch;
}

static int parse_kv(em_gguf *g, cursor *c, const em_gguf_limits *lim, parse_pass pass,
                    names *nm) {
    for (uint64_t i = 0; i < g->n_kv; i++) {
        em_gguf_kv tmp, *kv = pass == PASS_FILL ? &g->kv[i] : &tmp;
        memset(kv, 0, sizeof *kv);
        uint64_t at = c->pos, len;
        const uint8_t *s = NULL;
        int rc = rd_str(c, &s, &len, lim->max_string, "metadata key");
        if (rc) return rc;
        if (!(kv->key = take_name(nm, pass, s, len)))
            return FAIL("gguf: metadata key at byte %llu contains a NUL byte",
                        (unsigned long long)at);
        if (pass == PASS_FILL && !em_strmap_put(&g->kv_map, kv->key, len, (int32_t)i))
            return FAIL("gguf: duplicate metadata key '%s' at byte %llu", kv->key,
                        (unsigned long long)at);
        if ((rc = rd_u32(c, &kv->type, kv->key))) return rc;
        kv->offset = c->pos;
        if ((rc = skip_value(c, kv->type, lim, kv, kv->key))) return rc;
    }
    return EMBER_OK;
}

/* ---- tensors ---- */

static int tensor_size(em_gguf_tensor *t, uint64_t at) {
    const em_type_info *ti = em_type_info_get(t->type);
    if (!ti)
        return FAIL("gguf: tensor '%s' at byte %llu: unknown tensor type %u", t->name,
                    (unsigned long long)at, t->type);
    uint64_t nel = 1;
    for (uint32_t d = 0; d < EM_MAX_DIMS; d++) {
        uint64_t v;
        if (!em_mul_u64(nel, (uint64_t)t->ne[d], &v) || v > (uint64_t)INT64_MAX)
            return FAIL("gguf: tensor '%s' at byte %llu: element count overflows", t->name,
                        (unsigned long long)at);
        nel = v;
    }
    if (t->ne[0] % ti->block)
        return FAIL("gguf: tensor '%s' at byte %llu: ne[0]=%lld is not a multiple of the %s "
                    "block size %u", t->name, (unsigned long long)at, (long long)t->ne[0],
                    ti->name, ti->block);
    if (!em_mul_u64(nel / ti->block, ti->size, &t->nbytes))
        return FAIL("gguf: tensor '%s' at byte %llu: byte size overflows", t->name,
                    (unsigned long long)at);
    return EMBER_OK;
}

static int parse_tensor_info(em_gguf *g, cursor *c, const em_gguf_limits *lim,
                             parse_pass pass, names *nm) {
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        em_gguf_tensor tmp, *t = pass == PASS_FILL ? &g->tensors[i] : &tmp;
        memset(t, 0, sizeof *t);
        uint64_t at = c->pos, len;
        const uint8_t *s = NULL;
        int rc = rd_str(c, &s, &len, lim->max_string, "tensor name");
        if (rc) return rc;
        if (!(t->name = take_name(nm, pass, s, len)))
            return FAIL("gguf: tensor name at byte %llu contains a NUL byte",
                        (unsigned long long)at);
        if (pass == PASS_FILL && !em_strmap_put(&g->tensor_map, t->name, len, (int32_t)i))
            return FAIL("gguf: duplicate tensor name '%s' at byte %llu", t->name,
                        (unsigned long long)at);
        if ((rc = rd_u32(c, &t->n_dims, t->name))) return rc;
        if (t->n_dims < 1 || t->n_dims > EM_MAX_DIMS)
            return FAIL("gguf: tensor '%s' at byte %llu: n_dims %u is not in 1..4", t->name,
                        (unsigned long long)at, t->n_dims);
        for (uint32_t d = 0; d < EM_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            uint64_t v;
            if ((rc = rd_u64(c, &v, t->name))) return rc;
            if (v > (uint64_t)INT64_MAX)
                return FAIL("gguf: tensor '%s' at byte %llu: dimension %u is %llu", t->name,
                            (unsigned long long)c->pos - 8, d, (unsigned long long)v);
            t->ne[d] = (int64_t)v;
        }
        if ((rc = rd_u32(c, &t->type, t->name))) return rc;
        if ((rc = rd_u64(c, &t->offset, t->name))) return rc;
        if ((rc = tensor_size(t, at))) return rc;
    }
    return EMBER_OK;
}

static int cmp_offset(uint32_t a, uint32_t b, const void *user) {
    const em_gguf_tensor *t = user;
    return t[a].offset < t[b].offset ? -1 : t[a].offset > t[b].offset;
}

/* Offsets must be aligned, inside the data section and not overlap. */
static int check_tensor_layout(em_gguf *g, const em_alloc *a) {
    uint64_t data_size = g->size - g->data_offset;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        em_gguf_tensor *t = &g->tensors[i];
        uint64_t end;
        if (t->offset % g->alignment)
            return FAIL("gguf: tensor '%s': data offset %llu is not a multiple of the "
                        "alignment %llu", t->name, (unsigned long long)t->offset,
                        (unsigned long long)g->alignment);
        if (!em_add_u64(t->offset, t->nbytes, &end) || end > data_size)
            return FAIL("gguf: tensor '%s': data [%llu, +%llu) lies past the end of the data "
                        "section (%llu bytes)", t->name, (unsigned long long)t->offset,
                        (unsigned long long)t->nbytes, (unsigned long long)data_size);
        t->data = g->base + g->data_offset + t->offset;
    }
    if (g->n_tensors < 2) return EMBER_OK;
    uint32_t *idx = em_calloc(a, g->n_tensors, sizeof *idx);
    if (!idx) return em_error(NULL, EMBER_ERR_NO_MEMORY, "gguf: no memory for tensor index");
    for (uint32_t i = 0; i < g->n_tensors; i++) idx[i] = i;
    em_sort_index(idx, g->n_tensors, cmp_offset, g->tensors);
    int rc = EMBER_OK;
    for (uint64_t i = 1; i < g->n_tensors && !rc; i++) {
        const em_gguf_tensor *p = &g->tensors[idx[i - 1]], *t = &g->tensors[idx[i]];
        if (p->offset + p->nbytes > t->offset)
            rc = FAIL("gguf: tensors '%s' and '%s' overlap (offsets %llu and %llu)", p->name,
                      t->name, (unsigned long long)p->offset, (unsigned long long)t->offset);
    }
    em_free(a, idx);
    return rc;
}

static int read_alignment(em_gguf *g) {
    g->alignment = 32;
    const em_gguf_kv *kv = em_gguf_find(g, "general.alignment");
    if (!kv) return EMBER_OK;
    if (kv->type != GGUF_U32)
        return FAIL("gguf: general.alignment at byte %llu has type %s, expected u32",
                    (unsigned long long)kv->offset, em_gguf_vtype_name(kv->type));
    uint32_t v;
    memcpy(&v, kv->data, 4);
    if (v == 0 || (v & (v - 1)) || v > (1u << 24))
        return FAIL("gguf: general.alignment at byte %llu is %u: not a power of two in "
                    "1..16777216", (unsigned long long)kv->offset, v);
    g->alignment = v;
    return EMBER_OK;
}

static int parse_header(em_gguf *g, cursor *c, const em_gguf_limits *lim) {
    int rc;
    if ((rc = need(c, 4, "magic"))) return rc;
    if (memcmp(c->base, "GGUF", 4) != 0)
        return FAIL("gguf: bad magic at byte 0 (not a GGUF file)");
    c->pos = 4;
    if ((rc = rd_u32(c, &g->version, "version"))) return rc;
    if (g->version != 2 && g->version != 3) {
        if (g->version == 1)
            return em_error(NULL, EMBER_ERR_UNSUPPORTED, "gguf: version 1 files are not supported");
        return FAIL("gguf: version at byte 4 is %u (expected 2 or 3%s)", g->version,
                    (g->version & 0xffff) == 0 ? "; big-endian files are not supported" : "");
    }
    if ((rc = rd_u64(c, &g->n_tensors, "tensor count"))) return rc;
    if ((rc = rd_u64(c, &g->n_kv, "metadata count"))) return rc;
    /* Bound counts by what the rest of the file could hold, so that a huge
     * count cannot make us allocate more than the file's size. */
    uint64_t left = c->size - c->pos;
    if (g->n_tensors > lim->max_tensors)
        return FAIL("gguf: tensor count at byte 8 is %llu, above the limit %llu",
                    (unsigned long long)g->n_tensors, (unsigned long long)lim->max_tensors);
    if (g->n_tensors > left / 24)
        return FAIL("gguf: tensor count at byte 8 is %llu: cannot fit in %llu bytes",
                    (unsigned long long)g->n_tensors, (unsigned long long)left);
    if (g->n_kv > left / 13)
        return FAIL("gguf: metadata count at byte 16 is %llu: cannot fit in %llu bytes",
                    (unsigned long long)g->n_kv, (unsigned long long)left);
    return EMBER_OK;
}

static int alloc_tables(em_gguf *g, const em_alloc *a, uint64_t pool_bytes) {
    g->kv = em_calloc(a, g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->tensors = em_calloc(a, g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    g->pool = em_malloc(a, pool_bytes);
    if (!g->kv || !g->tensors || !g->pool) return EMBER_ERR_NO_MEMORY;
    if (em_strmap_init(&g->kv_map, a, g->n_kv)) return EMBER_ERR_NO_MEMORY;
    if (em_strmap_init(&g->tensor_map, a, g->n_tensors)) return EMBER_ERR_NO_MEMORY;
    return EMBER_OK;
}

int em_gguf_parse(em_gguf *g, const void *data, size_t size, const em_gguf_limits *lim,
                  const em_alloc *a) {
    memset(g, 0, sizeof *g);
    g->base = data;
    g->size = size;
    cursor c = { data, size, 0 };
    int rc = parse_header(g, &c, lim);
    if (rc) return rc;
    cursor start = c;
    names nm = { .need = 1 };
    if ((rc = parse_kv(g, &c, lim, PASS_WALK, &nm)) ||
        (rc = parse_tensor_info(g, &c, lim, PASS_WALK, &nm)))
        return rc;
    if (alloc_tables(g, a, nm.need)) {
        em_gguf_free(g, a);
        return em_error(NULL, EMBER_ERR_NO_MEMORY, "gguf: no memory for %llu keys and %llu "
                        "tensors", (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors);
    }
    c = start;
    nm.pool = g->pool;
    rc = parse_kv(g, &c, lim, PASS_FILL, &nm);
    g->info_offset = c.pos;
    if (rc || (rc = read_alignment(g)) || (rc = parse_tensor_info(g, &c, lim, PASS_FILL, &nm))) {
        em_gguf_free(g, a);
        return rc;
    }
    g->data_offset = em_align_up(c.pos, g->alignment);
    if (g->data_offset > size || g->data_offset < c.pos) {
        if (g->n_tensors) {
            rc = FAIL("gguf: data section at byte %llu (aligned to %llu) starts past the end "
                      "of the file (%llu bytes)", (unsigned long long)c.pos,
                      (unsigned long long)g->alignment, (unsigned long long)size);
            em_gguf_free(g, a);
            return rc;
        }
        g->data_offset = size; /* metadata-only file with no padding */
    }
    if ((rc = check_tensor_layout(g, a))) {
        em_gguf_free(g, a);
        return rc;
    }
    return EMBER_OK;
}

void em_gguf_free(em_gguf *g, const em_alloc *a) {
    em_free(a, g->kv);
    em_free(a, g->tensors);
    em_free(a, g->pool);
    em_strmap_free(&g->kv_map, a);
    em_strmap_free(&g->tensor_map, a);
    memset(g, 0, sizeof *g);
}

const em_gguf_kv *em_gguf_find(const em_gguf *g, const char *key) {
    int32_t i = em_strmap_get(&g->kv_map, key, strlen(key));
    return i < 0 ? NULL : &g->kv[i];
}

const em_gguf_tensor *em_gguf_tensor_find(const em_gguf *g, const char *name) {
    int32_t i = em_strmap_get(&g->tensor_map, name, strlen(name));
    return i < 0 ? NULL : &g->tensors[i];
}

/* ---- typed access ---- */

static int64_t scalar_i64(uint32_t type, const uint8_t *p, bool *ok) {
    *ok = true;
    switch (type) {
    case GGUF_U8: case GGUF_BOOL: return p[0];
    case GGUF_I8: return (int8_t)p[0];
    case GGUF_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case GGUF_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case GGUF_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case GGUF_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case GGUF_I64: { int64_t v; memcpy(&v, p, 8); return v; }
    case GGUF_U64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > (uint64_t)INT64_MAX) *ok = false;
        return (int64_t)v;
    }
    default: *ok = false; return 0;
    }
}

static double scalar_f64(uint32_t type, const uint8_t *p, bool *ok) {
    *ok = true;
    if (type == GGUF_F32) { float v; memcpy(&v, p, 4); return v; }
    if (type == GGUF_F64) { double v; memcpy(&v, p, 8); return v; }
    return (double)scalar_i64(type, p, ok);
}

int em_gguf_get_i64(const em_gguf_kv *kv, int64_t *out) {
    bool ok;
    *out = scalar_i64(kv->type, kv->data, &ok);
    if (!ok)
        return em_error(NULL, EMBER_ERR_FORMAT, "gguf: key '%s' at byte %llu has type %s, "
                        "expected an integer", kv->key, (unsigned long long)kv->offset,
                        em_gguf_vtype_name(kv->type));
    return EMBER_OK;
}

int em_gguf_get_f64(const em_gguf_kv *kv, double *out) {
    bool ok;
    *out = scalar_f64(kv->type, kv->data, &ok);
    if (!ok)
        return em_error(NULL, EMBER_ERR_FORMAT, "gguf: key '%s' at byte %llu has type %s, "
                        "expected a number", kv->key, (unsigned long long)kv->offset,
                        em_gguf_vtype_name(kv->type));
    return EMBER_OK;
}

double em_gguf_arr_f64(const em_gguf_kv *kv, uint64_t i) {
    bool ok;
    return scalar_f64(kv->arr_type, kv->data + i * em_gguf_vtype_size(kv->arr_type), &ok);
}

int64_t em_gguf_arr_i64(const em_gguf_kv *kv, uint64_t i) {
    bool ok;
    return scalar_i64(kv->arr_type, kv->data + i * em_gguf_vtype_size(kv->arr_type), &ok);
}
