#include "vocab.h"

#include <stdio.h>
#include <string.h>

static int read_special(const em_gguf *g, const char *key, int32_t n, int32_t *out) {
    *out = -1;
    const em_gguf_kv *kv = em_gguf_find(g, key);
    if (!kv) return EMBER_OK;
    int64_t v;
    int rc = em_gguf_get_i64(kv, &v);
    if (rc) return rc;
    if (v == -1 || v == (int64_t)UINT32_MAX) return EMBER_OK; /* "none" */
    if (v < 0 || v >= n)
        return em_error(NULL, EMBER_ERR_FORMAT, "vocab: %s = %lld is outside the vocabulary "
                        "(%d tokens)", key, (long long)v, n);
    *out = (int32_t)v;
    return EMBER_OK;
}

static int read_bool(const em_gguf *g, const char *key, bool dflt, bool *out) {
    *out = dflt;
    const em_gguf_kv *kv = em_gguf_find(g, key);
    if (!kv) return EMBER_OK;
    if (kv->type != GGUF_BOOL)
        return em_error(NULL, EMBER_ERR_FORMAT, "vocab: %s has type %s, expected bool", key,
                        em_gguf_vtype_name(kv->type));
    *out = kv->data[0] != 0;
    return EMBER_OK;
}

/* A numeric per-token array must match the token count. */
static const em_gguf_kv *token_array(const em_gguf *g, const char *key, int32_t n, int *rc) {
    *rc = EMBER_OK;
    const em_gguf_kv *kv = em_gguf_find(g, key);
    if (!kv) return NULL;
    if (kv->type != GGUF_ARRAY || kv->arr_type == GGUF_STRING) {
        *rc = em_error(NULL, EMBER_ERR_FORMAT, "vocab: %s must be a numeric array", key);
        return NULL;
    }
    if (kv->n != (uint64_t)n) {
        *rc = em_error(NULL, EMBER_ERR_FORMAT, "vocab: %s has %llu entries but there are %d "
                       "tokens", key, (unsigned long long)kv->n, n);
        return NULL;
    }
    return kv;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* "<0xNN>" -> NN, or -1 */
static int byte_piece(const char *s, uint32_t len) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static int index_pieces(em_vocab *v, const em_gguf_kv *kv, const em_alloc *a) {
    v->text = em_calloc(a, (size_t)v->n, sizeof *v->text);
    v->len = em_calloc(a, (size_t)v->n, sizeof *v->len);
    v->scores = em_calloc(a, (size_t)v->n, sizeof *v->scores);
    v->types = em_calloc(a, (size_t)v->n, sizeof *v->types);
    if (!v->text || !v->len || !v->scores || !v->types || em_strmap_init(&v->map, a, (size_t)v->n))
        return em_error(NULL, EMBER_ERR_NO_MEMORY, "vocab: no memory for %d tokens", v->n);
    const uint8_t *p = kv->data; /* strings were bounds-checked by the parser */
    for (int32_t i = 0; i < v->n; i++) {
        uint64_t len;
        memcpy(&len, p, 8);
        v->text[i] = (const char *)p + 8;
        v->len[i] = (uint32_t)len;
        p += 8 + len;
        /* the first of duplicate pieces wins, as in SentencePiece */
        em_strmap_put(&v->map, v->text[i], len, i);
    }
    return EMBER_OK;
}

static int read_token_attrs(em_vocab *v, const em_gguf *g) {
    int rc;
    const em_gguf_kv *sc = token_array(g, "tokenizer.ggml.scores", v->n, &rc);
    if (rc) return rc;
    const em_gguf_kv *ty = token_array(g, "tokenizer.ggml.token_type", v->n, &rc);
    if (rc) return rc;
    if (sc && sc->arr_type != GGUF_F32)
        return em_error(NULL, EMBER_ERR_FORMAT, "vocab: tokenizer.ggml.scores has elements of "
                        "type %s, expected f32", em_gguf_vtype_name(sc->arr_type));
    for (int32_t i = 0; i < v->n; i++) {
        v->scores[i] = sc ? (float)em_gguf_arr_f64(sc, (uint64_t)i) : 0.0f;
        int64_t t = ty ? em_gguf_arr_i64(ty, (uint64_t)i) : EM_TOK_NORMAL;
        if (t < EM_TOK_NORMAL || t > EM_TOK_BYTE) t = EM_TOK_NORMAL;
        v->types[i] = (uint8_t)t;
        if (t == EM_TOK_BYTE && byte_piece(v->text[i], v->len[i]) < 0)
            return em_error(NULL, EMBER_ERR_FORMAT, "vocab: token %d is a byte token but its "
                            "text is not <0xNN>", i);
    }
    return EMBER_OK;
}

static int cmp_special_len(uint32_t a, uint32_t b, const void *user) {
    const em_vocab *v = user;
    const int32_t *ids = v->specials;
    /* longest first; then by id for a stable order */
    if (v->len[ids[a]] != v->len[ids[b]]) return v->len[ids[a]] > v->len[ids[b]] ? -1 : 1;
    return ids[a] < ids[b] ? -1 : ids[a] > ids[b];
}

static int collect_specials(em_vocab *v, const em_alloc *a) {
    int32_t n = 0;
    for (int32_t i = 0; i < v->n; i++)
        if ((v->types[i] == EM_TOK_CONTROL || v->types[i] == EM_TOK_USER_DEFINED) && v->len[i]) n++;
    v->specials = em_calloc(a, (size_t)n + 1, sizeof *v->specials);
    uint32_t *idx = em_calloc(a, (size_t)n + 1, sizeof *idx);
    int32_t *sorted = em_calloc(a, (size_t)n + 1, sizeof *sorted);
    if (!v->specials || !idx || !sorted) {
        em_free(a, idx);
        em_free(a, sorted);
        return em_error(NULL, EMBER_ERR_NO_MEMORY, "vocab: no memory for special tokens");
    }
    n = 0;
    for (int32_t i = 0; i < v->n; i++)
        if ((v->types[i] == EM_TOK_CONTROL || v->types[i] == EM_TOK_USER_DEFINED) && v->len[i]) {
            idx[n] = (uint32_t)n;
            v->specials[n++] = i;
        }
    em_sort_index(idx, (size_t)n, cmp_special_len, v);
    for (int32_t i = 0; i < n; i++) sorted[i] = v->specials[idx[i]];
    memcpy(v->specials, sorted, (size_t)n * sizeof *sorted);
    v->n_specials = n;
    em_free(a, idx);
    em_free(a, sorted);
    return EMBER_OK;
}

/* SentencePiece's normalizer blob: a u32 trie size, the trie, then the
 * replacement strings. Not used yet, but a size beyond the blob would send
 * a reader past it, so it is rejected now. */
static int check_charsmap(const em_gguf *g) {
    const em_gguf_kv *kv = em_gguf_find(g, "tokenizer.ggml.precompiled_charsmap");
    if (!kv) return EMBER_OK;
    if (kv->type != GGUF_ARRAY || (kv->arr_type != GGUF_U8 && kv->arr_type != GGUF_I8))
        return em_error(NULL, EMBER_ERR_FORMAT, "vocab: tokenizer.ggml.precompiled_charsmap "
                        "must be an array of bytes");
    if (kv->n == 0) return EMBER_OK;
    uint32_t trie = 0;
    if (kv->n >= 4) memcpy(&trie, kv->data, 4);
    if (kv->n < 4 || trie > kv->n - 4)
        return em_error(NULL, EMBER_ERR_FORMAT, "vocab: tokenizer.ggml.precompiled_charsmap "
                        "declares a %u-byte trie in a %llu-byte blob", trie,
                        (unsigned long long)kv->n);
    return EMBER_OK;
}

static int read_model_kind(em_vocab *v, const em_gguf *g) {
    const em_gguf_kv *kv = em_gguf_find(g, "tokenizer.ggml.model");
    if (!kv) return EMBER_OK;
    if (kv->type != GGUF_STRING)
        return em_error(NULL, EMBER_ERR_FORMAT, "vocab: tokenizer.ggml.model is not a string");
    size_t n = kv->n < sizeof v->model_name - 1 ? kv->n : sizeof v->model_name - 1;
    memcpy(v->model_name, kv->data, n);
    v->model_name[n] = 0;
    v->kind = strcmp(v->model_name, "llama") == 0  ? EM_VOCAB_SPM
            : strcmp(v->model_name, "gpt2") == 0 ? EM_VOCAB_BPE
                                                 : EM_VOCAB_OTHER;
    return EMBER_OK;
}

/* tokenizer.ggml.pre and tokenizer.ggml.merges of a byte-level BPE vocab. */
static int read_bpe(em_vocab *v, const em_gguf *g, const em_alloc *a) {
    const em_gguf_kv *pre = em_gguf_find(g, "tokenizer.ggml.pre");
    if (pre && pre->type != GGUF_STRING)
        return em_error(NULL, EMBER_ERR_FORMAT, "vocab: tokenizer.ggml.pre is not a string");
    size_t n = pre ? (pre->n < sizeof v->pre_name - 1 ? pre->n : sizeof v->pre_name - 1) : 7;
    memcpy(v->pre_name, pre ? (const char *)pre->data : "default", n);
    v->pre_name[n] = 0;
    v->pretok = em_pretok_from_name(v->pre_name);
    v->ignore_merges = v->pretok == EM_PRE_LLAMA3;
    if (!(v->bb = em_malloc(a, sizeof *v->bb)))
        return em_error(NULL, EMBER_ERR_NO_MEMORY, "vocab: no memory for the byte table");
    em_bpe_init_bytes(v->bb);
    const em_gguf_kv *mg = em_gguf_find(g, "tokenizer.ggml.merges");
    if (!mg)
        return em_error(NULL, EMBER_ERR_FORMAT, "vocab: tokenizer.ggml.merges is missing");
    if (mg->type != GGUF_ARRAY || mg->arr_type != GGUF_STRING || mg->n > (1u << 24))
        return em_error(NULL, EMBER_ERR_FORMAT, "vocab: tokenizer.ggml.merges must be an array "
                        "of at most 16M strings");
    if (em_strmap_init(&v->merges, a, (size_t)mg->n))
        return em_error(NULL, EMBER_ERR_NO_MEMORY, "vocab: no memory for %llu merges",
                        (unsigned long long)mg->n);
    const uint8_t *p = mg->data; /* bounds-checked by the parser */
    for (uint64_t i = 0; i < mg->n; i++) {
        uint64_t len;
        memcpy(&len, p, 8);
        em_strmap_put(&v->merges, (const char *)p + 8, len, (int32_t)i); /* first rank wins */
        p += 8 + len;
    }
    return EMBER_OK;
}

/* A piece with U+2581 (e2 96 81) preceded by a byte that does not end
 * another U+2581. */
static bool any_piece_joins_words(const em_vocab *v) {
    for (int32_t i = 0; i < v->n; i++) {
        const char *t = v->text[i];
        for (uint32_t k = 1; k + 3 <= v->len[i]; k++)
            if (memcmp(t + k, "\xe2\x96\x81", 3) == 0 &&
                !(k >= 3 && memcmp(t + k - 3, "\xe2\x96\x81", 3) == 0))
                return true;
    }
    return false;
}

int em_vocab_load(em_vocab *v, const em_gguf *g, int32_t n_vocab, const em_alloc *a) {
    memset(v, 0, sizeof *v);
    v->bos = v->eos = v->eot = v->unk = -1;
    for (int i = 0; i < 256; i++) v->byte_token[i] = -1;
    const em_gguf_kv *tokens = em_gguf_find(g, "tokenizer.ggml.tokens");
    if (!tokens) return EMBER_OK; /* a model without a tokenizer still evaluates ids */
    if (tokens->type != GGUF_ARRAY || tokens->arr_type != GGUF_STRING)
        return em_error(NULL, EMBER_ERR_FORMAT, "vocab: tokenizer.ggml.tokens must be an array "
                        "of strings");
    if (tokens->n != (uint64_t)n_vocab)
        return em_error(NULL, EMBER_ERR_FORMAT, "vocab: tokenizer.ggml.tokens has %llu entries, "
                        "the embedding has %d rows", (unsigned long long)tokens->n, n_vocab);
    v->n = n_vocab;
    int rc;
    if ((rc = read_model_kind(v, g)) || (rc = check_charsmap(g)) ||
        (rc = index_pieces(v, tokens, a)) ||
        (rc = read_token_attrs(v, g)) || (rc = collect_specials(v, a)) ||
        (rc = read_special(g, "tokenizer.ggml.bos_token_id", v->n, &v->bos)) ||
        (rc = read_special(g, "tokenizer.ggml.eos_token_id", v->n, &v->eos)) ||
        (rc = read_special(g, "tokenizer.ggml.eot_token_id", v->n, &v->eot)) ||
        (rc = read_special(g, "tokenizer.ggml.unknown_token_id", v->n, &v->unk)) ||
        (rc = read_bool(g, "tokenizer.ggml.add_space_prefix", v->kind == EM_VOCAB_SPM,
                        &v->add_space_prefix)) ||
        (v->kind == EM_VOCAB_BPE && (rc = read_bpe(v, g, a)))) {
        em_vocab_free(v, a);
        return rc;
    }
    for (int b = 0; b < 256; b++) {
        char piece[8];
        snprintf(piece, sizeof piece, "<0x%02X>", b);
        v->byte_token[b] = em_strmap_get(&v->map, piece, 6);
    }
    v->spm_words_apart = v->kind == EM_VOCAB_SPM && !any_piece_joins_words(v);
    return EMBER_OK;
}

void em_vocab_free(em_vocab *v, const em_alloc *a) {
    em_free(a, v->text);
    em_free(a, v->len);
    em_free(a, v->scores);
    em_free(a, v->types);
    em_free(a, v->specials);
    em_strmap_free(&v->map, a);
    em_strmap_free(&v->merges, a);
    em_free(a, v->bb);
    memset(v, 0, sizeof *v);
}
