/* ember_model_quantize: a model's GGUF rewritten with its weight matrices
 * quantized. The metadata entries are copied byte for byte (only
 * general.file_type is replaced), tensors keep their order and names, and
 * the data section is laid out with the source's alignment, so llama.cpp
 * reads the result. Tensors are converted in batches of rows (at most
 * QUANT_BATCH_BYTES of output), the rows of a batch split between
 * threads; each row's result does not depend on the split, so the file is
 * the same for any thread count. Memory: one batch of output rows and two
 * rows of floats per thread. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "threadpool.h"
#include "model.h"
#include "quant.h"

EMBER_API size_t ember_type_row_size(uint32_t type, int64_t n) {
    const em_type_info *ti = em_type_info_get(type);
    if (!ti || n < 0 || n % ti->block) return 0;
    return (size_t)(n / ti->block) * ti->size;
}

EMBER_API int ember_quantize_row(uint32_t type, const float *src, int64_t n, void *dst,
                                 size_t dst_size) {
    size_t need = ember_type_row_size(type, n);
    if (!src || !dst || n <= 0 || need == 0)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "quantize_row: NULL buffer, or %lld "
                        "elements are not whole blocks of type %u", (long long)n, type);
    if (dst_size < need)
        return em_error(NULL, EMBER_ERR_BUFFER_TOO_SMALL, "quantize_row: needs %zu bytes, "
                        "buffer has %zu", need, dst_size);
    if (!em_quantize_row(type, src, n, dst))
        return em_error(NULL, EMBER_ERR_UNSUPPORTED, "quantize_row: no quantizer for type %s",
                        ember_type_name((int)type));
    return EMBER_OK;
}

EMBER_API void ember_quantize_default_params(ember_quantize_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->type = EMBER_TYPE_Q8_0;
}

#define PARAMS_V1_SIZE (offsetof(ember_quantize_params, user) + sizeof(void *))

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static bool is_quant_type(uint32_t t) {
    switch (t) {
    case EMBER_TYPE_Q8_0: case EMBER_TYPE_Q4_0: case EMBER_TYPE_Q4_1: case EMBER_TYPE_Q5_0:
    case EMBER_TYPE_Q5_1: case EMBER_TYPE_Q4_K: case EMBER_TYPE_Q5_K: case EMBER_TYPE_Q6_K:
        return true;
    default:
        return false;
    }
}

/* Float targets: conversion, not quantization (a BF16 copy of an F16 or
 * F32 file for act_type BF16, say) */
static bool is_float_type(uint32_t t) {
    return t == EMBER_TYPE_F32 || t == EMBER_TYPE_F16 || t == EMBER_TYPE_BF16;
}

static bool is_k_type(uint32_t t) {
    return t == EMBER_TYPE_Q4_K || t == EMBER_TYPE_Q5_K || t == EMBER_TYPE_Q6_K;
}

/* The layer a tensor belongs to ("blk.N.*"), -1 for none. */
static int layer_of(const char *name) {
    if (strncmp(name, "blk.", 4) != 0) return -1;
    int n = 0, digits = 0;
    for (const char *p = name + 4; *p >= '0' && *p <= '9' && digits < 6; p++, digits++)
        n = n * 10 + (*p - '0');
    return digits ? n : -1;
}

/* The _M mix's layers that get more bits: the first and last eighth, and
 * every third one between. */
static bool more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* A type whose blocks fit rows of k, starting from t. */
static uint32_t fitting_type(uint32_t t, int64_t k) {
    if (is_float_type(t)) return t;
    if (is_k_type(t) && k % 256 != 0)
        t = t == EMBER_TYPE_Q4_K ? EMBER_TYPE_Q5_0 : t == EMBER_TYPE_Q5_K ? EMBER_TYPE_Q5_1 : EMBER_TYPE_Q8_0;
    return k % 32 == 0 ? t : 0;
}

/* The type a tensor is written in. */
static uint32_t target_type(const em_gguf_tensor *t, const ember_quantize_params *p, int n_layer) {
    bool float_src = is_float_type(t->type);
    /* attn_kv_b (DeepSeek's MLA) is read as F16 and split at load time */
    if (!float_src || t->n_dims < 2 || !ends_with(t->name, ".weight") ||
        strstr(t->name, "ffn_gate_inp") || strstr(t->name, "attn_kv_b"))
        return t->type;
    uint32_t want = p->type;
    if (strcmp(t->name, "output.weight") == 0) {
        want = p->output_type;
    } else if (p->mix == EMBER_QUANTIZE_MIX_M &&
               (strstr(t->name, ".attn_v.") || strstr(t->name, ".ffn_down")) &&
               more_bits(layer_of(t->name), n_layer)) {
        want = EMBER_TYPE_Q6_K;
    }
    uint32_t got = fitting_type(want, t->ne[0]);
    return got ? got : t->type;
}

/* general.file_type, llama.cpp's numbering of the file's main type */
static uint32_t file_type(const ember_quantize_params *p) {
    switch (p->type) {
    case EMBER_TYPE_Q4_0: return 2;
    case EMBER_TYPE_Q4_1: return 3;
    case EMBER_TYPE_Q8_0: return 7;
    case EMBER_TYPE_Q5_0: return 8;
    case EMBER_TYPE_Q5_1: return 9;
    case EMBER_TYPE_Q4_K: return p->mix ? 15 : 14; /* Q4_K_M : Q4_K_S */
    case EMBER_TYPE_Q5_K: return p->mix ? 17 : 16;
    case EMBER_TYPE_F32: return 0;
    case EMBER_TYPE_F16: return 1;
    case EMBER_TYPE_BF16: return 32;
    default: return 18; /* Q6_K */
    }
}

/* ---- writing ---- */

typedef struct writer {
    FILE *f;
    uint64_t pos; /* bytes written so far */
    bool failed;
} writer;

static void put(writer *w, const void *p, size_t n) {
    if (!w->failed && n && fwrite(p, 1, n, w->f) != n) w->failed = true;
    w->pos += n;
}
static void put_u32(writer *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(writer *w, uint64_t v) { put(w, &v, 8); }
static void put_str(writer *w, const char *s) {
    put_u64(w, strlen(s));
    put(w, s, strlen(s));
}
static void pad(writer *w, uint64_t align) {
    static const uint8_t zeros[256];
    uint64_t n = em_align_up(w->pos, align) - w->pos;
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        put(w, zeros, k);
        n -= k;
    }
}

/* Byte span of metadata entry i in the source image. */
static void kv_span(const em_gguf *g, uint64_t i, uint64_t *start, uint64_t *end) {
    const em_gguf_kv *kv = &g->kv[i];
    *start = kv->offset - 4 - strlen(kv->key) - 8;
    if (i + 1 < g->n_kv) {
        const em_gguf_kv *nx = &g->kv[i + 1];
        *end = nx->offset - 4 - strlen(nx->key) - 8;
    } else {
        *end = g->info_offset;
    }
}

static uint64_t n_elements(const em_gguf_tensor *t) {
    return (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
}

#define QUANT_BATCH_BYTES ((size_t)4 << 20)
#define QUANT_BATCH_ROWS 4096

/* One batch of rows of one tensor, converted by every thread of the pool */
typedef struct conv_batch {
    const em_gguf_tensor *t;
    uint32_t to;
    int64_t K, r0, nr;
    size_t in_bytes, out_bytes;
    float *rows;       /* per thread: a row and its round trip, 2 K floats */
    uint8_t *out;      /* nr output rows */
    double *err, *ref; /* per row: sum (w - w')^2 and sum w^2 */
    uint8_t *failed;   /* per thread */
} conv_batch;

static void conv_rows(void *arg, int ith, int nth) {
    conv_batch *b = arg;
    int64_t per = (b->nr + nth - 1) / nth, lo = per * ith, hi = lo + per < b->nr ? lo + per : b->nr;
    float *row = b->rows + (size_t)ith * 2 * (size_t)b->K, *back = row + b->K;
    for (int64_t i = lo; i < hi; i++) {
        const uint8_t *src = b->t->data + (size_t)(b->r0 + i) * b->in_bytes;
        void *out = b->out + (size_t)i * b->out_bytes;
        if (!em_dequantize_row(b->t->type, src, b->K, row) || !em_quantize_row(b->to, row, b->K, out) ||
            !em_dequantize_row(b->to, out, b->K, back)) {
            b->failed[ith] = 1;
            return;
        }
        double err = 0, ref = 0;
        for (int64_t k = 0; k < b->K; k++) {
            double d = (double)row[k] - back[k];
            err += d * d;
            ref += (double)row[k] * row[k];
        }
        b->err[i] = err;
        b->ref[i] = ref;
    }
}

/* The buffers of the conversion, for rows up to kmax and n threads */
typedef struct conv_bufs {
    em_threadpool *pool;
    float *rows;
    uint8_t *out;
    double *err, *ref;
    uint8_t *failed;
} conv_bufs;

/* Converts one tensor, batch by batch; returns the relative error. */
static int write_tensor(writer *w, const em_gguf_tensor *t, uint32_t to, const conv_bufs *cb,
                        double *rel) {
    const em_type_info *from_ti = em_type_info_get(t->type);
    int64_t K = t->ne[0], rows = (int64_t)(n_elements(t) / (uint64_t)K);
    size_t in_bytes = (size_t)(K / from_ti->block) * from_ti->size;
    size_t out_bytes = ember_type_row_size(to, K);
    *rel = 0;
    if (to == t->type) {
        put(w, t->data, (size_t)rows * in_bytes);
        return EMBER_OK;
    }
    int nth = em_threadpool_size(cb->pool);
    int64_t batch = (int64_t)(QUANT_BATCH_BYTES / out_bytes);
    batch = batch < 1 ? 1 : batch > QUANT_BATCH_ROWS ? QUANT_BATCH_ROWS : batch;
    double err = 0, ref = 0;
    for (int64_t r0 = 0; r0 < rows; r0 += batch) {
        conv_batch b = { t, to, K, r0, rows - r0 < batch ? rows - r0 : batch, in_bytes, out_bytes,
                         cb->rows, cb->out, cb->err, cb->ref, cb->failed };
        memset(cb->failed, 0, (size_t)nth);
        em_threadpool_run(cb->pool, conv_rows, &b);
        for (int i = 0; i < nth; i++)
            if (cb->failed[i])
                return em_error(NULL, EMBER_ERR_UNSUPPORTED, "quantize: cannot convert '%s' from "
                                "%s to %s", t->name, ember_type_name((int)t->type),
                                ember_type_name((int)to));
        for (int64_t i = 0; i < b.nr; i++) { /* in row order: the same sum for any split */
            err += cb->err[i];
            ref += cb->ref[i];
        }
        put(w, cb->out, (size_t)b.nr * out_bytes);
    }
    *rel = ref > 0 ? sqrt(err / ref) : 0;
    return EMBER_OK;
}

static int write_model(writer *w, const em_gguf *g, const ember_quantize_params *p,
                       const uint32_t *types, const conv_bufs *cb) {
    const em_gguf_kv *ft = em_gguf_find(g, "general.file_type");
    uint64_t n_kv = g->n_kv + (ft ? 0 : 1);
    put(w, "GGUF", 4);
    put_u32(w, 3);
    put_u64(w, g->n_tensors);
    put_u64(w, n_kv);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        if (&g->kv[i] == ft) continue;
        uint64_t a, b;
        kv_span(g, i, &a, &b);
        put(w, g->base + a, (size_t)(b - a));
    }
    put_str(w, "general.file_type");
    put_u32(w, 4); /* u32 */
    put_u32(w, file_type(p));
    /* tensor infos, with offsets for the new sizes */
    uint64_t off = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const em_gguf_tensor *t = &g->tensors[i];
        put_str(w, t->name);
        put_u32(w, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) put_u64(w, (uint64_t)t->ne[d]);
        put_u32(w, types[i]);
        put_u64(w, off);
        uint64_t rows = n_elements(t) / (uint64_t)t->ne[0];
        off = em_align_up(off + rows * ember_type_row_size(types[i], t->ne[0]), g->alignment);
    }
    pad(w, g->alignment); /* the data section starts aligned, as do its tensors */
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const em_gguf_tensor *t = &g->tensors[i];
        double rel = 0;
        int rc = write_tensor(w, t, types[i], cb, &rel);
        if (rc) return rc;
        pad(w, g->alignment);
        if (p->on_tensor) p->on_tensor(p->user, t->name, t->type, types[i], (int64_t)n_elements(t), rel);
    }
    return w->failed ? em_error(NULL, EMBER_ERR_IO, "quantize: write failed") : EMBER_OK;
}

EMBER_API int ember_model_quantize(const ember_model *m, const char *out_path,
                                   const ember_quantize_params *params) {
    if (!m || !out_path) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "quantize: NULL argument");
    ember_quantize_params p;
    ember_quantize_default_params(&p);
    int rc = em_read_params(&p, sizeof p, params, PARAMS_V1_SIZE, "quantize params");
    if (rc) return rc;
    bool k_mix = is_k_type(p.type) || p.mix;
    if (p.output_type == 0)
        p.output_type = is_float_type(p.type) ? p.type : k_mix ? EMBER_TYPE_Q6_K : EMBER_TYPE_Q8_0;
    if ((!is_quant_type(p.type) && !is_float_type(p.type)) ||
        (!is_quant_type(p.output_type) && !is_float_type(p.output_type)))
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "quantize: type %u / output_type %u "
                        "not supported (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, F32, "
                        "F16, BF16)", p.type, p.output_type);
    if (p.mix > EMBER_QUANTIZE_MIX_M ||
        (p.mix == EMBER_QUANTIZE_MIX_M && p.type != EMBER_TYPE_Q4_K && p.type != EMBER_TYPE_Q5_K))
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "quantize: mix %u needs type Q4_K or "
                        "Q5_K", p.mix);
    const em_gguf *g = &m->gguf;
    const em_alloc *a = &m->alloc;
    uint32_t *types = em_calloc(a, g->n_tensors + 1, sizeof *types);
    int64_t kmax = 32;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].ne[0] > kmax) kmax = g->tensors[i].ne[0];
    int nth = p.n_threads ? (int)(p.n_threads < 256 ? p.n_threads : 256) : em_online_cpus();
    conv_bufs cb = { 0 };
    rc = em_threadpool_create(nth, a, &cb.pool);
    if (rc == EMBER_OK) {
        nth = em_threadpool_size(cb.pool);
        /* a batch: QUANT_BATCH_BYTES, or one row where a row is larger */
        size_t out_max = (size_t)kmax * 4 > QUANT_BATCH_BYTES ? (size_t)kmax * 4 : QUANT_BATCH_BYTES;
        cb.rows = em_calloc(a, (size_t)nth * 2, (size_t)kmax * sizeof(float));
        cb.out = em_malloc(a, out_max);
        cb.err = em_calloc(a, QUANT_BATCH_ROWS, sizeof(double));
        cb.ref = em_calloc(a, QUANT_BATCH_ROWS, sizeof(double));
        cb.failed = em_calloc(a, (size_t)nth, 1);
    }
    bool have = types && cb.pool && cb.rows && cb.out && cb.err && cb.ref && cb.failed;
    FILE *f = have ? fopen(out_path, "wb") : NULL;
    if (!have) {
        rc = em_error(NULL, EMBER_ERR_NO_MEMORY, "quantize: no memory for %d threads' rows of %lld",
                      nth, (long long)kmax);
    } else if (!f) {
        rc = em_error(NULL, EMBER_ERR_IO, "quantize: cannot create '%s'", out_path);
    } else {
        int n_layer = 0;
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            int l = layer_of(g->tensors[i].name);
            n_layer = l + 1 > n_layer ? l + 1 : n_layer;
        }
        for (uint64_t i = 0; i < g->n_tensors; i++) types[i] = target_type(&g->tensors[i], &p, n_layer);
        writer w = { f, 0, false };
        rc = write_model(&w, g, &p, types, &cb);
        if (fclose(f) != 0 && !rc) rc = em_error(NULL, EMBER_ERR_IO, "quantize: closing '%s' failed", out_path);
        if (rc) remove(out_path); /* nothing half-made stays behind */
    }
    em_free(a, types);
    em_free(a, cb.rows);
    em_free(a, cb.out);
    em_free(a, cb.err);
    em_free(a, cb.ref);
    em_free(a, cb.failed);
    em_threadpool_free(&cb.pool, a);
    return rc;
}
