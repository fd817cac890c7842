#include "pretok.h"

#include <string.h>

#include "unicode.h"

static const struct { const char *name; int kind; } names[] = {
    { "default", EM_PRE_GPT2 },     { "gpt-2", EM_PRE_GPT2 },      { "gpt2", EM_PRE_GPT2 },
    { "llama-bpe", EM_PRE_LLAMA3 }, { "llama3", EM_PRE_LLAMA3 },   { "qwen2", EM_PRE_QWEN2 },
    { "starcoder", EM_PRE_STARCODER }, { "refact", EM_PRE_STARCODER },
};

int em_pretok_from_name(const char *name) {
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(names[i].name, name) == 0) return names[i].kind;
    return EM_PRE_UNKNOWN;
}

const char *em_pretok_names(void) {
    return "default, gpt-2, gpt2, llama-bpe, llama3, qwen2, starcoder, refact";
}

/* A fragment's codepoints and their classes. */
typedef struct frag { const uint32_t *cp; size_t n; } frag;

static uint32_t fl(const frag *f, size_t i) { return em_unicode_flags(f->cp[i]); }
static int is_l(const frag *f, size_t i) { return i < f->n && (fl(f, i) & EM_U_LETTER); }
static int is_n(const frag *f, size_t i) { return i < f->n && (fl(f, i) & EM_U_NUMBER); }
static int is_ws(const frag *f, size_t i) { return i < f->n && (fl(f, i) & EM_U_WHITESPACE); }
static int is_crlf(const frag *f, size_t i) { return i < f->n && (f->cp[i] == '\r' || f->cp[i] == '\n'); }
/* [^\s\p{L}\p{N}] */
static int is_other(const frag *f, size_t i) {
    return i < f->n && !(fl(f, i) & (EM_U_LETTER | EM_U_NUMBER | EM_U_WHITESPACE));
}

static uint32_t lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's 't 're 've 'm 'll 'd; ci: case-insensitive (Llama 3) */
static size_t contraction(const frag *f, size_t i, int ci) {
    if (f->cp[i] != '\'' || i + 1 >= f->n) return 0;
    uint32_t a = ci ? lower(f->cp[i + 1]) : f->cp[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 >= f->n) return 0;
    uint32_t b = ci ? lower(f->cp[i + 2]) : f->cp[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    return 0;
}

typedef int (*class_fn)(const frag *f, size_t i);

/* " ?X+" */
static size_t space_then_run(const frag *f, size_t i, class_fn x) {
    size_t j = i;
    if (f->cp[j] == ' ' && x(f, j + 1)) j++;
    if (!x(f, j)) return 0;
    while (x(f, j)) j++;
    return j;
}

/* \s+(?!\S) | \s+ : a whitespace run, less its last character when a
 * non-space follows (that one goes with the next piece) */
static size_t whitespace(const frag *f, size_t i) {
    size_t j = i;
    while (is_ws(f, j)) j++;
    if (j == i) return 0;
    if (j < f->n && j - i >= 2) return j - 1;
    return j;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t next_gpt2(const frag *f, size_t i) {
    size_t e;
    if ((e = contraction(f, i, 0)) || (e = space_then_run(f, i, is_l)) ||
        (e = space_then_run(f, i, is_n)) || (e = space_then_run(f, i, is_other)) ||
        (e = whitespace(f, i)))
        return e;
    return i + 1;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}
 * | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t next_llama3(const frag *f, size_t i, size_t max_digits) {
    size_t e, j;
    if ((e = contraction(f, i, 1))) return e;
    j = i;
    if (!is_l(f, j) && !is_crlf(f, j) && !is_n(f, j) && is_l(f, j + 1)) j++;
    if (is_l(f, j)) {
        while (is_l(f, j)) j++;
        return j;
    }
    if (is_n(f, i)) {
        for (j = i; j < i + max_digits && is_n(f, j);) j++;
        return j;
    }
    j = i;
    if (f->cp[j] == ' ' && is_other(f, j + 1)) j++;
    if (is_other(f, j)) {
        while (is_other(f, j)) j++;
        while (is_crlf(f, j)) j++;
        return j;
    }
    if (is_ws(f, i)) { /* \s*[\r\n]+ : up to the run's last CR or LF */
        size_t end = i, last = 0;
        while (is_ws(f, end)) {
            if (is_crlf(f, end)) last = end + 1;
            end++;
        }
        if (last) return last;
    }
    if ((e = whitespace(f, i))) return e;
    return i + 1;
}

static size_t split_frag(int kind, const frag *f, size_t base, em_piece *out, size_t np,
                         const uint32_t *offs) {
    for (size_t i = 0; i < f->n;) {
        size_t e = kind == EM_PRE_LLAMA3 ? next_llama3(f, i, 3)
                 : kind == EM_PRE_QWEN2 ? next_llama3(f, i, 1)
                 : next_gpt2(f, i);
        out[np].start = offs[base + i];
        out[np].len = offs[base + e] - offs[base + i];
        np++;
        i = e;
    }
    return np;
}

size_t em_pretok_split(int kind, const char *text, size_t len, uint32_t *cps, uint32_t *offs,
                       em_piece *pieces) {
    size_t n = 0;
    for (size_t o = 0; o < len; n++) {
        offs[n] = (uint32_t)o;
        o += em_utf8_decode((const unsigned char *)text + o, len - o, &cps[n]);
    }
    offs[n] = (uint32_t)len;
    size_t np = 0;
    if (kind != EM_PRE_STARCODER) {
        frag f = { cps, n };
        return split_frag(kind, &f, 0, pieces, np, offs);
    }
    /* \p{N} first: each digit its own piece; GPT-2's regex on what is between */
    for (size_t i = 0; i < n;) {
        if (em_unicode_flags(cps[i]) & EM_U_NUMBER) {
            pieces[np].start = offs[i];
            pieces[np].len = offs[i + 1] - offs[i];
            np++;
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && !(em_unicode_flags(cps[j]) & EM_U_NUMBER)) j++;
        frag f = { cps + i, j - i };
        np = split_frag(EM_PRE_GPT2, &f, i, pieces, np, offs);
        i = j;
    }
    return np;
}
