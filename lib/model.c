#include "model.h"

#include <stdio.h>
#include <string.h>


static const em_arch *const arches[] = { &em_arch_llama, &em_arch_qwen2moe, &em_arch_deepseek2 };

EMBER_API void ember_model_default_params(ember_model_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->max_string_length = 16u << 20;
    p->max_array_length = 1u << 26;
    p->max_tensor_count = 1u << 16;
}

/* Reads only the fields the caller's (possibly older, smaller) struct has. */
/* The size of the first released version of ember_model_params (up to its last
 * field, vocab_only). Frozen: later fields come out of the reserved tail, and
 * callers built against older headers must keep working. */
#define PARAMS_V1_SIZE (offsetof(ember_model_params, vocab_only) + sizeof(int32_t))

int em_model_read_params(const ember_model_params *in, ember_model_params *p) {
    ember_model_default_params(p);
    int rc = em_read_params(p, sizeof *p, in, PARAMS_V1_SIZE, "model params");
    if (rc) return rc;
    if (!p->max_string_length) p->max_string_length = 16u << 20;
    if (!p->max_array_length) p->max_array_length = 1u << 26;
    if (!p->max_tensor_count) p->max_tensor_count = 1u << 16;
    return EMBER_OK;
}

/* ---- metadata helpers ---- */

static const em_gguf_kv *find_fmt(const ember_model *m, const char *key_fmt, char *key,
                                  size_t key_size) {
    snprintf(key, key_size, key_fmt, m->arch_name);
    return em_gguf_find(&m->gguf, key);
}

int em_model_get_i32(const ember_model *m, const char *key_fmt, bool required, int32_t *out) {
    char key[160];
    const em_gguf_kv *kv = find_fmt(m, key_fmt, key, sizeof key);
    if (!kv) {
        if (!required) return EMBER_OK;
        return em_error(NULL, EMBER_ERR_FORMAT, "model: required key '%s' is missing", key);
    }
    int64_t v;
    int rc = em_gguf_get_i64(kv, &v);
    if (rc) return rc;
    if (v < INT32_MIN || v > INT32_MAX)
        return em_error(NULL, EMBER_ERR_FORMAT, "model: key '%s' = %lld is out of range", key,
                        (long long)v);
    *out = (int32_t)v;
    return EMBER_OK;
}

int em_model_get_f32(const ember_model *m, const char *key_fmt, bool required, float *out) {
    char key[160];
    const em_gguf_kv *kv = find_fmt(m, key_fmt, key, sizeof key);
    if (!kv) {
        if (!required) return EMBER_OK;
        return em_error(NULL, EMBER_ERR_FORMAT, "model: required key '%s' is missing", key);
    }
    double v;
    int rc = em_gguf_get_f64(kv, &v);
    if (rc) return rc;
    *out = (float)v;
    return EMBER_OK;
}

int em_model_weight(const ember_model *m, const char *name, int n_dims, const int64_t *ne,
                    bool required, const em_gguf_tensor **out) {
    const em_gguf_tensor *t = em_gguf_tensor_find(&m->gguf, name);
    *out = NULL;
    if (!t) {
        if (!required) return EMBER_OK;
        return em_error(NULL, EMBER_ERR_FORMAT, "model: tensor '%s' is missing", name);
    }
    const em_type_info *ti = em_type_info_get(t->type);
    if (!ti->supported)
        return em_error(NULL, EMBER_ERR_UNSUPPORTED, "model: tensor '%s' has type %s, which "
                        "this build cannot compute with", name, ti->name);
    for (int d = 0; d < EM_MAX_DIMS; d++) {
        int64_t want = d < n_dims ? ne[d] : 1;
        if (want && t->ne[d] != want)
            return em_error(NULL, EMBER_ERR_FORMAT, "model: tensor '%s' has ne[%d]=%lld, the "
                            "hyperparameters say %lld", name, d, (long long)t->ne[d],
                            (long long)want);
    }
    if (n_dims == 1 && t->type != EMBER_TYPE_F32)
        return em_error(NULL, EMBER_ERR_UNSUPPORTED, "model: vector '%s' has type %s; only f32 "
                        "is supported for norms and biases", name, ti->name);
    size_t align = t->type == EMBER_TYPE_F32 ? 4 : 2;
    if ((uintptr_t)t->data % align)
        return em_error(NULL, EMBER_ERR_UNSUPPORTED, "model: tensor '%s' data is not %zu-byte "
                        "aligned in memory", name, align);
    *out = t;
    return EMBER_OK;
}

/* ---- loading ---- */

void em_model_params_alloc(const ember_model_params *params, em_alloc *a) {
    ember_model_params p;
    if (em_model_read_params(params, &p)) ember_model_default_params(&p);
    em_alloc_init(a, &p.allocator);
}

static void model_destroy(ember_model *m) {
    em_alloc a = m->alloc;
    em_vocab_free(&m->vocab, &a);
    for (int32_t i = 0; m->layers && i < m->hp.n_layer; i++) em_free(&a, m->layers[i].k_b_owned);
    em_free(&a, m->layers);
    em_free(&a, m->rope_inv_freq);
    em_gguf_free(&m->gguf, &a);
    em_image_release(&m->image, &a);
    em_free(&a, m);
}

static int bind_arch(ember_model *m) {
    const em_gguf_kv *kv = em_gguf_find(&m->gguf, "general.architecture");
    if (!kv)
        return em_error(NULL, EMBER_ERR_FORMAT, "model: key 'general.architecture' is missing");
    if (kv->type != GGUF_STRING)
        return em_error(NULL, EMBER_ERR_FORMAT, "model: 'general.architecture' has type %s, "
                        "expected string", em_gguf_vtype_name(kv->type));
    if (kv->n == 0 || kv->n >= sizeof m->arch_name || memchr(kv->data, 0, kv->n))
        return em_error(NULL, EMBER_ERR_FORMAT, "model: 'general.architecture' is empty, too "
                        "long or holds a NUL byte");
    memcpy(m->arch_name, kv->data, kv->n);
    m->arch_name[kv->n] = 0;
    for (size_t i = 0; i < sizeof arches / sizeof arches[0]; i++)
        if (strcmp(arches[i]->name, m->arch_name) == 0) m->arch = arches[i];
    if (!m->arch && !m->vocab_only)
        return em_error(NULL, EMBER_ERR_UNSUPPORTED, "model: architecture '%s' is not supported",
                        m->arch_name);
    return EMBER_OK;
}

/* vocab_only: the vocabulary size is the tokens array's length. */
static int vocab_size_from_tokens(ember_model *m) {
    const em_gguf_kv *kv = em_gguf_find(&m->gguf, "tokenizer.ggml.tokens");
    if (!kv || kv->type != GGUF_ARRAY || kv->arr_type != GGUF_STRING || kv->n > (1u << 24))
        return em_error(NULL, EMBER_ERR_FORMAT, "model: vocab_only needs tokenizer.ggml.tokens, "
                        "an array of at most 16M strings");
    m->hp.n_vocab = (int32_t)kv->n;
    return EMBER_OK;
}

static void count_params(ember_model *m) {
    for (uint64_t i = 0; i < m->gguf.n_tensors; i++) {
        const em_gguf_tensor *t = &m->gguf.tensors[i];
        m->n_params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        if (t->type < EMBER_TYPE_COUNT) m->type_bytes[t->type] += t->nbytes;
    }
}

int em_model_load_image(const void *data, size_t size, const ember_model_params *in,
                        const em_image_owner *owner, ember_model **out) {
    ember_model_params p;
    int rc = em_model_read_params(in, &p);
    if (rc) return rc;
    em_alloc a;
    em_alloc_init(&a, &p.allocator);
    ember_model *m = em_calloc(&a, 1, sizeof *m);
    if (!m) return em_error(NULL, EMBER_ERR_NO_MEMORY, "model: no memory for the model");
    m->alloc = a;
    em_gguf_limits lim = { p.max_string_length, p.max_array_length, p.max_tensor_count };
    m->vocab_only = p.vocab_only != 0;
    if ((rc = em_gguf_parse(&m->gguf, data, size, &lim, &a)) || (rc = bind_arch(m)) ||
        (rc = m->vocab_only ? vocab_size_from_tokens(m) : m->arch->load(m)) ||
        (rc = em_vocab_load(&m->vocab, &m->gguf, m->hp.n_vocab, &a))) {
        model_destroy(m); /* the image stays the caller's on failure */
        return rc;
    }
    if (owner) m->image = *owner;
    count_params(m);
    *out = m;
    return EMBER_OK;
}

EMBER_API int ember_model_load_memory(const void *data, size_t size,
                                      const ember_model_params *params, ember_model **out) {
    if (!out) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "model: out is NULL");
    *out = NULL;
    if (!data || size == 0)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "model: data is NULL or empty");
    if ((uintptr_t)data % 32)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "model: data must be 32-byte aligned");
    return em_model_load_image(data, size, params, NULL, out);
}

EMBER_API void ember_model_free(ember_model **model) {
    if (!model || !*model) return;
    model_destroy(*model);
    *model = NULL;
}

/* ---- queries ---- */

EMBER_API const char *ember_model_arch(const ember_model *m) { return m ? m->arch_name : NULL; }
EMBER_API int32_t ember_model_n_vocab(const ember_model *m) { return m ? m->hp.n_vocab : 0; }
EMBER_API int32_t ember_model_n_ctx_train(const ember_model *m) { return m ? m->hp.n_ctx_train : 0; }
EMBER_API int32_t ember_model_n_layer(const ember_model *m) { return m ? m->hp.n_layer : 0; }
EMBER_API int32_t ember_model_n_embd(const ember_model *m) { return m ? m->hp.n_embd : 0; }
EMBER_API int32_t ember_model_n_head(const ember_model *m) { return m ? m->hp.n_head : 0; }
EMBER_API int32_t ember_model_n_head_kv(const ember_model *m) { return m ? m->hp.n_head_kv : 0; }
EMBER_API int32_t ember_model_n_expert(const ember_model *m) { return m ? m->hp.n_expert : 0; }
EMBER_API uint64_t ember_model_n_params(const ember_model *m) { return m ? m->n_params : 0; }

EMBER_API uint64_t ember_model_type_bytes(const ember_model *m, int type) {
    if (!m || type < 0 || type >= EMBER_TYPE_COUNT) return 0;
    return m->type_bytes[type];
}

EMBER_API int32_t ember_model_meta_count(const ember_model *m) {
    return m ? (int32_t)m->gguf.n_kv : 0;
}

EMBER_API const char *ember_model_meta_key(const ember_model *m, int32_t i) {
    if (!m || i < 0 || (uint64_t)i >= m->gguf.n_kv) return NULL;
    return m->gguf.kv[i].key;
}

static const em_gguf_kv *meta_lookup(const ember_model *m, const char *key, int *rc) {
    *rc = EMBER_OK;
    if (!m || !key) {
        *rc = em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "meta: model or key is NULL");
        return NULL;
    }
    const em_gguf_kv *kv = em_gguf_find(&m->gguf, key);
    if (!kv) *rc = em_error(NULL, EMBER_ERR_NOT_FOUND, "meta: no key '%s'", key);
    return kv;
}

/* Appends text to buf as far as it fits; counts the full length. */
typedef struct sbuf { char *p; size_t cap, len; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->len < b->cap) {
        size_t room = b->cap - b->len;
        memcpy(b->p + b->len, s, n < room ? n : room);
    }
    b->len += n;
}

static void sb_scalar(sbuf *b, uint32_t type, const uint8_t *p) {
    char tmp[64];
    int n;
    em_gguf_kv kv = { .type = type, .data = p };
    if (type == GGUF_F32 || type == GGUF_F64) {
        double v;
        em_gguf_get_f64(&kv, &v);
        n = snprintf(tmp, sizeof tmp, "%.9g", v);
    } else if (type == GGUF_U64) {
        uint64_t v;
        memcpy(&v, p, 8);
        n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    } else if (type == GGUF_BOOL) {
        n = snprintf(tmp, sizeof tmp, "%s", p[0] ? "true" : "false");
    } else {
        int64_t v;
        em_gguf_get_i64(&kv, &v);
        n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    }
    sb_put(b, tmp, (size_t)n);
}

EMBER_API int ember_model_meta_string(const ember_model *m, const char *key, char *buf,
                                      size_t buf_size, size_t *needed) {
    int rc;
    const em_gguf_kv *kv = meta_lookup(m, key, &rc);
    if (!kv) return rc;
    if (!buf && buf_size)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "meta: buf is NULL");
    sbuf b = { buf, buf_size ? buf_size - 1 : 0, 0 };
    if (kv->type == GGUF_STRING) {
        sb_put(&b, (const char *)kv->data, kv->n);
    } else if (kv->type == GGUF_ARRAY) {
        char tmp[64];
        int n = snprintf(tmp, sizeof tmp, "[%llu x %s]", (unsigned long long)kv->n,
                         em_gguf_vtype_name(kv->arr_type));
        sb_put(&b, tmp, (size_t)n);
        if (kv->arr_type != GGUF_STRING)
            for (uint64_t i = 0; i < kv->n && i < 8; i++) {
                sb_put(&b, " ", 1);
                sb_scalar(&b, kv->arr_type, kv->data + i * em_gguf_vtype_size(kv->arr_type));
            }
    } else {
        sb_scalar(&b, kv->type, kv->data);
    }
    if (buf_size) buf[b.len < b.cap ? b.len : b.cap] = 0;
    if (needed) *needed = b.len;
    if (b.len > b.cap)
        return em_error(NULL, EMBER_ERR_BUFFER_TOO_SMALL, "meta: value of '%s' needs %zu bytes",
                        key, b.len + 1);
    return EMBER_OK;
}

EMBER_API int ember_model_meta_int(const ember_model *m, const char *key, int64_t *out) {
    int rc;
    const em_gguf_kv *kv = meta_lookup(m, key, &rc);
    if (!kv) return rc;
    if (!out) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "meta: out is NULL");
    if (kv->type == GGUF_F32 || kv->type == GGUF_F64 || kv->type == GGUF_STRING ||
        kv->type == GGUF_ARRAY || em_gguf_get_i64(kv, out))
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "meta: '%s' has type %s, not an "
                        "integer", key, em_gguf_vtype_name(kv->type));
    return EMBER_OK;
}

EMBER_API int ember_model_meta_float(const ember_model *m, const char *key, double *out) {
    int rc;
    const em_gguf_kv *kv = meta_lookup(m, key, &rc);
    if (!kv) return rc;
    if (!out) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "meta: out is NULL");
    if (kv->type != GGUF_F32 && kv->type != GGUF_F64)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "meta: '%s' has type %s, not a float",
                        key, em_gguf_vtype_name(kv->type));
    return em_gguf_get_f64(kv, out);
}
