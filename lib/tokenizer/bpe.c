/* Byte-level BPE (the "gpt2" tokenizer model in GGUF).
 *
 * Each byte of a pre-tokenized piece is first mapped to a printable
 * character (GPT-2's byte-to-unicode table), so the vocabulary and the
 * merges are plain strings. Adjacent symbols are merged by the rank of the
 * pair in tokenizer.ggml.merges, lowest rank first (ties: leftmost), until
 * no ranked pair is left; the symbols are then looked up in the vocabulary. */
#include <string.h>

#include "merge_heap.h"
#include "vocab.h"

/* GPT-2's table: printable Latin-1 bytes map to themselves, the others to
 * U+0100 upwards in byte order. */
void em_bpe_init_bytes(em_bpe_bytes *v) {
    int next = 256;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        uint32_t cp = printable ? (uint32_t)b : (uint32_t)next++;
        v->byte_cp[b] = cp;
        if (cp < 0x80) {
            v->byte_utf8[b][0] = (char)cp;
            v->byte_utf8_len[b] = 1;
        } else {
            v->byte_utf8[b][0] = (char)(0xC0 | cp >> 6);
            v->byte_utf8[b][1] = (char)(0x80 | (cp & 0x3F));
            v->byte_utf8_len[b] = 2;
        }
    }
    for (int i = 0; i < EM_BPE_CP_MAX; i++) v->cp_byte[i] = -1;
    for (int b = 0; b < 256; b++) v->cp_byte[v->byte_cp[b]] = (int16_t)b;
}

typedef struct sym { int32_t prev, next; uint32_t start, n; } sym;

typedef struct work {
    char *mapped; /* the piece's bytes as mapped characters */
    sym *s;
    em_merge_heap h;
    char *key;    /* "left right" for merge lookups */
} work;

static void try_pair(const em_vocab *v, work *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const sym *a = &w->s[l], *b = &w->s[r];
    memcpy(w->key, w->mapped + a->start, a->n);
    w->key[a->n] = ' ';
    memcpy(w->key + a->n + 1, w->mapped + b->start, b->n);
    int32_t rank = em_strmap_get(&v->merges, w->key, a->n + 1 + b->n);
    if (rank < 0) return;
    em_merge_push(&w->h, (em_merge){ (double)rank, l, r, a->n + b->n });
}

static void emit(const em_vocab *v, const char *s, size_t n, int32_t *out, size_t *n_out) {
    int32_t id = em_strmap_get(&v->map, s, n);
    if (id >= 0) {
        out[(*n_out)++] = id;
        return;
    }
    /* not in the vocabulary: its characters one by one */
    for (size_t i = 0; i < n;) {
        size_t cl = ((unsigned char)s[i] & 0xE0) == 0xC0 ? 2 : 1;
        if (i + cl > n) cl = 1;
        id = em_strmap_get(&v->map, s + i, cl);
        if (id < 0) id = v->unk;
        if (id >= 0) out[(*n_out)++] = id;
        i += cl;
    }
}

/* One pre-tokenized piece of n bytes. */
static void encode_piece(const em_vocab *v, const unsigned char *bytes, size_t n, work *w,
                         int32_t *out, size_t *n_out) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const em_bpe_bytes *bb = v->bb;
        w->s[i] = (sym){ (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1, (uint32_t)m,
                         bb->byte_utf8_len[bytes[i]] };
        memcpy(w->mapped + m, bb->byte_utf8[bytes[i]], bb->byte_utf8_len[bytes[i]]);
        m += bb->byte_utf8_len[bytes[i]];
    }
    if (v->ignore_merges && em_strmap_get(&v->map, w->mapped, m) >= 0) {
        emit(v, w->mapped, m, out, n_out);
        return;
    }
    w->h.n = 0;
    for (int32_t i = 1; i < (int32_t)n; i++) try_pair(v, w, i - 1, i);
    while (w->h.n) {
        em_merge c = em_merge_pop(&w->h);
        sym *l = &w->s[c.left], *r = &w->s[c.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != c.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->s[r->next].prev = c.left;
        try_pair(v, w, l->prev, c.left);
        try_pair(v, w, c.left, l->next);
    }
    for (int32_t i = 0; i >= 0; i = w->s[i].next)
        emit(v, w->mapped + w->s[i].start, w->s[i].n, out, n_out);
}

int em_bpe_encode(const em_vocab *v, const char *text, size_t len, int32_t *out, size_t *n_out,
                  const em_alloc *a) {
    if (len == 0) return EMBER_OK;
    work w = { 0 };
    uint32_t *cps = em_malloc(a, (len + 1) * sizeof *cps);
    uint32_t *offs = em_malloc(a, (len + 1) * sizeof *offs);
    em_piece *pieces = em_malloc(a, len * sizeof *pieces);
    w.mapped = em_malloc(a, 2 * len);
    w.s = em_malloc(a, len * sizeof *w.s);
    w.h.c = em_malloc(a, 3 * len * sizeof *w.h.c);
    w.key = em_malloc(a, 2 * len + 1);
    int rc = EMBER_OK;
    if (!cps || !offs || !pieces || !w.mapped || !w.s || !w.h.c || !w.key) {
        rc = em_error(NULL, EMBER_ERR_NO_MEMORY, "tokenize: no memory for %zu bytes", len);
    } else {
        size_t np = em_pretok_split(v->pretok, text, len, cps, offs, pieces);
        for (size_t i = 0; i < np; i++)
            encode_piece(v, (const unsigned char *)text + pieces[i].start, pieces[i].len, &w,
                         out, n_out);
    }
    em_free(a, cps);
    em_free(a, offs);
    em_free(a, pieces);
    em_free(a, w.mapped);
    em_free(a, w.s);
    em_free(a, w.h.c);
    em_free(a, w.key);
    return rc;
}
