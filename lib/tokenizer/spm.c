/* SentencePiece-style BPE (the "llama" tokenizer model in GGUF).
 *
 * The text is split into UTF-8 characters; every adjacent pair whose
 * concatenation is a vocabulary piece is a candidate merge, ranked by the
 * piece's score (ties: leftmost first). The best candidate is merged and
 * new candidates with its neighbours are added, until none is left. A
 * final symbol that is not a piece (a character missing from the
 * vocabulary) is emitted as its bytes' <0xNN> tokens. */
#include "merge_heap.h"
#include "vocab.h"

#include <string.h>

typedef struct sym {
    int32_t prev, next;
    uint32_t start, n; /* span in the text; n == 0 once merged away */
} sym;

static void try_pair(const em_vocab *v, const char *text, const sym *s, em_merge_heap *h, int32_t l,
                     int32_t r) {
    if (l < 0 || r < 0) return;
    uint32_t size = s[l].n + s[r].n;
    int32_t id = em_strmap_get(&v->map, text + s[l].start, size);
    if (id < 0) return;
    em_merge c = { -(double)v->scores[id], l, r, size }; /* best score first */
    em_merge_push(h, c);
}

/* Length of the character at s: what its lead byte says, but ending early
 * at a byte that is not a continuation byte, so that a broken sequence
 * never swallows the valid character after it (for valid UTF-8 this is the
 * lead byte's length, as in llama.cpp). */
static size_t char_len(const unsigned char *s, size_t left) {
    static const uint8_t lens[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
    size_t n = lens[s[0] >> 4];
    if (n > left) n = left;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return i;
    return n;
}

static void emit_symbol(const em_vocab *v, const char *text, const sym *s, int32_t *out,
                        size_t *n_out) {
    int32_t id = em_strmap_get(&v->map, text + s->start, s->n);
    if (id >= 0) {
        out[(*n_out)++] = id;
        return;
    }
    for (uint32_t i = 0; i < s->n; i++) {
        int32_t b = v->byte_token[(unsigned char)text[s->start + i]];
        if (b < 0) b = v->unk;
        if (b >= 0) out[(*n_out)++] = b;
    }
}

/* Merges within text[start, end) only: s and h are the caller's scratch. */
static void encode_span(const em_vocab *v, const char *text, size_t start, size_t end, sym *s,
                        em_merge_heap *h, int32_t *out, size_t *n_out) {
    int32_t n = 0;
    for (size_t off = start; off < end; n++) {
        size_t cl = char_len((const unsigned char *)text + off, end - off);
        s[n].start = (uint32_t)off;
        s[n].n = (uint32_t)cl;
        s[n].prev = n - 1;
        s[n].next = off + cl < end ? n + 1 : -1;
        off += cl;
    }
    h->n = 0;
    for (int32_t i = 1; i < n; i++) try_pair(v, text, s, h, i - 1, i);
    while (h->n) {
        em_merge c = em_merge_pop(h);
        sym *l = &s[c.left], *r = &s[c.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != c.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = c.left;
        try_pair(v, text, s, h, l->prev, c.left);
        try_pair(v, text, s, h, c.left, l->next);
    }
    for (int32_t i = 0; i >= 0; i = s[i].next) emit_symbol(v, text, &s[i], out, n_out);
}

static bool is_word_start(const char *text, size_t i) {
    return i >= 1 && memcmp(text + i, "\xe2\x96\x81", 3) == 0 &&
           !(i >= 3 && memcmp(text + i - 3, "\xe2\x96\x81", 3) == 0);
}

int em_spm_encode(const em_vocab *v, const char *text, size_t len, int32_t *out, size_t *n_out,
                  const em_alloc *a) {
    if (len == 0) return EMBER_OK;
    if (len > INT32_MAX / 4)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "tokenize: text of %zu bytes is too "
                        "long", len);
    sym *s = em_malloc(a, len * sizeof *s);
    em_merge_heap h = { em_malloc(a, 3 * len * sizeof *h.c), 0 };
    if (!s || !h.c) {
        em_free(a, s);
        em_free(a, h.c);
        return em_error(NULL, EMBER_ERR_NO_MEMORY, "tokenize: no memory for %zu bytes", len);
    }
    size_t start = 0;
    if (v->spm_words_apart) /* each word (a U+2581 after another character) alone */
        for (size_t i = 1; i + 3 <= len; i++)
            if (is_word_start(text, i)) {
                encode_span(v, text, start, i, s, &h, out, n_out);
                start = i;
            }
    encode_span(v, text, start, len, s, &h, out, n_out);
    em_free(a, s);
    em_free(a, h.c);
    return EMBER_OK;
}
