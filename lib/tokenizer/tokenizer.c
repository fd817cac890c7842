/* Public tokenizer calls: special-token partitioning, then the model's
 * tokenizer on each plain-text fragment; and detokenization. */
#include <string.h>

#include "../model.h"
#include "unicode.h"

typedef struct frag { size_t start, len; int32_t id; /* -1: raw text */ } frag;

static const char *find_bytes(const char *h, size_t hn, const char *n, size_t nn) {
    if (nn == 0 || nn > hn) return NULL;
    const char *end = h + (hn - nn) + 1; /* last possible start + 1 */
    for (const char *p = h; p < end; p++) {
        /* memchr skips to the first byte fast (specials mostly start with a
         * byte rare in text, like '<') */
        p = memchr(p, n[0], (size_t)(end - p));
        if (!p) return NULL;
        if (memcmp(p, n, nn) == 0) return p;
    }
    return NULL;
}

/* Splits raw fragments at every occurrence of each special token, longest
 * tokens first. Control tokens count only with PARSE_SPECIAL; user-defined
 * ones always (they are part of the text's vocabulary). */
static size_t partition(const em_vocab *v, const char *text, size_t len, bool parse_special,
                        frag *a, frag *b) {
    size_t n = 1;
    a[0] = (frag){ 0, len, -1 };
    for (int32_t s = 0; s < v->n_specials; s++) {
        int32_t id = v->specials[s];
        if (v->types[id] == EM_TOK_CONTROL && !parse_special) continue;
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            frag f = a[i];
            if (f.id >= 0) { b[m++] = f; continue; }
            const char *p;
            while ((p = find_bytes(text + f.start, f.len, v->text[id], v->len[id]))) {
                size_t pre = (size_t)(p - (text + f.start));
                if (pre) b[m++] = (frag){ f.start, pre, -1 };
                b[m++] = (frag){ f.start + pre, v->len[id], id };
                f.start += pre + v->len[id];
                f.len -= pre + v->len[id];
            }
            if (f.len) b[m++] = f;
        }
        memcpy(a, b, m * sizeof *a);
        n = m;
    }
    return n;
}

/* ' ' -> U+2581, with the optional leading space. */
static size_t escape_spaces(const char *s, size_t n, bool prefix, char *out) {
    size_t o = 0;
    if (prefix) { memcpy(out, "\xe2\x96\x81", 3); o = 3; }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') { memcpy(out + o, "\xe2\x96\x81", 3); o += 3; }
        else out[o++] = s[i];
    }
    return o;
}

static int check_tokenizer(const ember_model *m) {
    const em_vocab *v = &m->vocab;
    if (v->kind == EM_VOCAB_NONE)
        return em_error(NULL, EMBER_ERR_UNSUPPORTED, "tokenize: the model has no tokenizer");
    if (v->kind != EM_VOCAB_SPM && v->kind != EM_VOCAB_BPE)
        return em_error(NULL, EMBER_ERR_UNSUPPORTED, "tokenize: tokenizer model '%s' is not "
                        "implemented yet", v->model_name);
    if (v->kind == EM_VOCAB_BPE && v->pretok == EM_PRE_UNKNOWN)
        return em_error(NULL, EMBER_ERR_UNSUPPORTED, "tokenize: pre-tokenizer '%s' "
                        "(tokenizer.ggml.pre) is not supported yet; supported: %s", v->pre_name,
                        em_pretok_names());
    return EMBER_OK;
}

static int encode(const ember_model *m, const char *text, size_t len, uint32_t flags,
                  int32_t *tmp, size_t *n, frag *fa, frag *fb, char *esc) {
    const em_vocab *v = &m->vocab;
    if ((flags & EMBER_TOKENIZE_ADD_BOS) && v->bos >= 0) tmp[(*n)++] = v->bos;
    size_t nf = len ? partition(v, text, len, flags & EMBER_TOKENIZE_PARSE_SPECIAL, fa, fb) : 0;
    bool prev_special = true;
    for (size_t i = 0; i < nf; i++) {
        if (fa[i].id >= 0) {
            tmp[(*n)++] = fa[i].id;
            prev_special = true;
            continue;
        }
        int rc;
        if (v->kind == EM_VOCAB_BPE) {
            rc = em_bpe_encode(v, text + fa[i].start, fa[i].len, tmp, n, &m->alloc);
        } else {
            size_t el = escape_spaces(text + fa[i].start, fa[i].len,
                                      v->add_space_prefix && prev_special, esc);
            rc = em_spm_encode(v, esc, el, tmp, n, &m->alloc);
        }
        if (rc) return rc;
        prev_special = false;
    }
    return EMBER_OK;
}

EMBER_API int ember_tokenize(const ember_model *m, const char *text, size_t len, int32_t *tokens,
                             size_t max_tokens, size_t *n_tokens, uint32_t flags) {
    if (!m || (!text && len) || !n_tokens || (!tokens && max_tokens))
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "tokenize: NULL model, text, output "
                        "or count");
    *n_tokens = 0;
    int rc = check_tokenizer(m);
    if (rc) return rc;
    if (len > (size_t)INT32_MAX / 8)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "tokenize: text of %zu bytes exceeds "
                        "the limit of %d", len, INT32_MAX / 8);
    const em_alloc *a = &m->alloc;
    /* A raw fragment escapes to <= 3 bytes per byte plus a 3-byte prefix and
     * yields at most one token per escaped byte; fragments and specials are
     * at least one byte each. So tokens <= 3*len + 3*len + len + BOS. */
    size_t cap = 3 * len + 8;
    frag *fa = em_malloc(a, (2 * len + 2) * sizeof *fa);
    frag *fb = em_malloc(a, (2 * len + 2) * sizeof *fb);
    char *esc = em_malloc(a, cap);
    int32_t *tmp = em_malloc(a, (7 * len + 8) * sizeof *tmp);
    size_t n = 0;
    if (!fa || !fb || !esc || !tmp)
        rc = em_error(NULL, EMBER_ERR_NO_MEMORY, "tokenize: no memory for %zu bytes", len);
    else
        rc = encode(m, text, len, flags, tmp, &n, fa, fb, esc);
    if (!rc) {
        memcpy(tokens, tmp, (n < max_tokens ? n : max_tokens) * sizeof *tmp);
        *n_tokens = n;
        if (n > max_tokens)
            rc = em_error(NULL, EMBER_ERR_BUFFER_TOO_SMALL, "tokenize: %zu tokens, room for %zu",
                          n, max_tokens);
    }
    em_free(a, fa);
    em_free(a, fb);
    em_free(a, esc);
    em_free(a, tmp);
    return rc;
}

/* Writes piece bytes (unescaped) through a bounded cursor. */
typedef struct out { char *p; size_t cap, len; } out;

static void put(out *o, const char *s, size_t n) {
    if (o->len < o->cap) memcpy(o->p + o->len, s, n < o->cap - o->len ? n : o->cap - o->len);
    o->len += n;
}

static void put_piece(const em_vocab *v, int32_t id, uint32_t flags, bool first, out *o) {
    const char *s = v->text[id];
    size_t n = v->len[id];
    switch (v->types[id]) {
    case EM_TOK_BYTE: {
        char c = 0;
        for (int i = 3; i < 5; i++) {
            char h = s[i];
            c = (char)(c * 16 + (h <= '9' ? h - '0' : (h | 32) - 'a' + 10));
        }
        put(o, &c, 1);
        return;
    }
    case EM_TOK_CONTROL:
        if (flags & EMBER_DETOKENIZE_SPECIAL) put(o, s, n);
        return;
    case EM_TOK_UNUSED: return;
    case EM_TOK_UNKNOWN: put(o, "\xe2\x96\x85", 3); return;
    case EM_TOK_USER_DEFINED: put(o, s, n); return;
    default: break;
    }
    if (v->kind == EM_VOCAB_BPE) { /* mapped characters back to bytes */
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            size_t cl = em_utf8_decode((const unsigned char *)s + i, n - i, &cp);
            if (cp < EM_BPE_CP_MAX && v->bb->cp_byte[cp] >= 0) {
                char b = (char)v->bb->cp_byte[cp];
                put(o, &b, 1);
            } else {
                put(o, s + i, cl);
            }
            i += cl;
        }
        return;
    }
    size_t i = 0;
    if (first && (flags & EMBER_DETOKENIZE_STRIP_SPACE) && n >= 3 &&
        memcmp(s, "\xe2\x96\x81", 3) == 0)
        i = 3;
    for (; i < n; i++) {
        if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
            put(o, " ", 1);
            i += 2;
        } else {
            put(o, s + i, 1);
        }
    }
}

static int check_ids(const ember_model *m, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->vocab.n)
            return em_error(NULL, EMBER_ERR_BAD_TOKEN, "detokenize: token %d at index %zu is "
                            "outside the vocabulary (%d)", ids[i], i, m->vocab.n);
    return EMBER_OK;
}

EMBER_API int ember_detokenize(const ember_model *m, const int32_t *tokens, size_t n_tokens,
                               char *buf, size_t buf_size, size_t *n_bytes, uint32_t flags) {
    if (!m || (!tokens && n_tokens) || (!buf && buf_size) || !n_bytes)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "detokenize: NULL argument");
    *n_bytes = 0;
    int rc = check_tokenizer(m);
    if (rc || (rc = check_ids(m, tokens, n_tokens))) return rc;
    out o = { buf, buf_size, 0 };
    for (size_t i = 0; i < n_tokens; i++) put_piece(&m->vocab, tokens[i], flags, i == 0, &o);
    *n_bytes = o.len;
    if (o.len > buf_size)
        return em_error(NULL, EMBER_ERR_BUFFER_TOO_SMALL, "detokenize: needs %zu bytes, buffer "
                        "has %zu", o.len, buf_size);
    return EMBER_OK;
}

EMBER_API int ember_token_to_piece(const ember_model *m, int32_t token, char *buf,
                                   size_t buf_size, size_t *n_bytes, uint32_t flags) {
    return ember_detokenize(m, &token, 1, buf, buf_size, n_bytes,
                            flags & ~(uint32_t)EMBER_DETOKENIZE_STRIP_SPACE);
}

struct ember_detok_stream {
    const ember_model *model;
    uint32_t flags;
    bool started;      /* a piece was pushed: STRIP_SPACE no longer applies */
    unsigned char held[4];
    size_t n_held;     /* bytes of an incomplete character, <= 3 */
};

/* Length of the prefix of s that ends in whole characters: a trailing lead
 * byte with fewer continuation bytes than it announces is cut off (it may
 * complete with the next piece). Anything else, invalid bytes included,
 * belongs to the prefix. */
static size_t complete_prefix(const unsigned char *s, size_t n) {
    size_t j = n;
    while (j > 0 && n - j < 3 && (s[j - 1] & 0xC0) == 0x80) j--;
    if (j == 0) return n;
    unsigned c = s[j - 1];
    size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    return need && n - (j - 1) < need ? j - 1 : n;
}

EMBER_API int ember_detok_stream_create(const ember_model *m, uint32_t flags,
                                        ember_detok_stream **out) {
    if (!m || !out) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "detok_stream_create: NULL argument");
    *out = NULL;
    int rc = check_tokenizer(m);
    if (rc) return rc;
    ember_detok_stream *s = em_malloc(&m->alloc, sizeof *s);
    if (!s) return em_error(NULL, EMBER_ERR_NO_MEMORY, "detok_stream_create: out of memory");
    *s = (ember_detok_stream){ .model = m, .flags = flags };
    *out = s;
    return EMBER_OK;
}

EMBER_API int ember_detok_stream_push(ember_detok_stream *s, int32_t token, char *buf,
                                      size_t buf_size, size_t *n_bytes) {
    if (!s || (!buf && buf_size) || !n_bytes)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "detok_stream_push: NULL argument");
    *n_bytes = 0;
    int rc = check_ids(s->model, &token, 1);
    if (rc) return rc;
    /* one pass: held bytes, then the piece; past buf_size the cursor only
     * counts, and the stream is left untouched */
    out o = { buf, buf_size, 0 };
    put(&o, (const char *)s->held, s->n_held);
    put_piece(&s->model->vocab, token, s->flags, !s->started, &o);
    size_t total = o.len;
    if (total > buf_size) {
        *n_bytes = total;
        return em_error(NULL, EMBER_ERR_BUFFER_TOO_SMALL, "detok_stream_push: needs %zu bytes, "
                        "buffer has %zu", total, buf_size);
    }
    s->started = true;
    size_t k = complete_prefix((const unsigned char *)buf, total);
    s->n_held = total - k;
    memcpy(s->held, buf + k, s->n_held);
    *n_bytes = k;
    return EMBER_OK;
}

EMBER_API int ember_detok_stream_flush(ember_detok_stream *s, char *buf, size_t buf_size,
                                       size_t *n_bytes) {
    if (!s || (!buf && buf_size) || !n_bytes)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "detok_stream_flush: NULL argument");
    *n_bytes = s->n_held;
    if (s->n_held > buf_size)
        return em_error(NULL, EMBER_ERR_BUFFER_TOO_SMALL, "detok_stream_flush: needs %zu bytes",
                        s->n_held);
    if (s->n_held) memcpy(buf, s->held, s->n_held);
    s->n_held = 0;
    s->started = false;
    return EMBER_OK;
}

EMBER_API void ember_detok_stream_free(ember_detok_stream **s) {
    if (!s || !*s) return;
    em_free(&(*s)->model->alloc, *s);
    *s = NULL;
}

EMBER_API int32_t ember_token_bos(const ember_model *m) { return m ? m->vocab.bos : -1; }
EMBER_API int32_t ember_token_eos(const ember_model *m) { return m ? m->vocab.eos : -1; }

EMBER_API int ember_token_is_eog(const ember_model *m, int32_t token) {
    return m && token >= 0 && (token == m->vocab.eos || token == m->vocab.eot);
}
