/* The pre-tokenizers: each reference regex (or Hugging Face pre-tokenizer
 * step) is a hand-written matcher over codepoints, and a pre-tokenizer is
 * a pipeline of them applied as "isolated" splits: within every piece of
 * the previous stage, each match becomes a piece and so does each run of
 * text between matches. This is how both Hugging Face's Sequence of Split
 * steps and llama.cpp's list of regexes behave. */
#include "pretok.h"

#include <string.h>

#include "unicode.h"

/* A fragment's codepoints; every matcher sees only the piece it splits, so
 * lookaheads and $ stop at the piece's end as in the reference. */
typedef struct frag { const uint32_t *cp; size_t n; } frag;

/* A matcher: the end of a match that starts at i, or a value <= i when none
 * does. It
 * may raise *next (preset to i + 1) past positions that cannot match
 * either, which keeps long runs linear. */
typedef size_t (*match_fn)(const frag *f, size_t i, size_t *next);

static uint32_t fl(const frag *f, size_t i) { return i < f->n ? em_unicode_flags(f->cp[i]) : 0; }
static int has(const frag *f, size_t i, uint32_t bits) { return (fl(f, i) & bits) != 0; }
static int is_l(const frag *f, size_t i) { return has(f, i, EM_U_LETTER); }
static int is_n(const frag *f, size_t i) { return has(f, i, EM_U_NUMBER); }
static int is_ws(const frag *f, size_t i) { return has(f, i, EM_U_WHITESPACE); }
static int is_ps(const frag *f, size_t i) { return has(f, i, EM_U_PUNCT | EM_U_SYMBOL); }
static int is_lm(const frag *f, size_t i) { return has(f, i, EM_U_LETTER | EM_U_MARK); }
static int is_crlf(const frag *f, size_t i) { return i < f->n && (f->cp[i] == '\r' || f->cp[i] == '\n'); }
/* [^\s\p{L}\p{N}] */
static int is_other(const frag *f, size_t i) {
    return i < f->n && !(fl(f, i) & (EM_U_LETTER | EM_U_NUMBER | EM_U_WHITESPACE));
}
/* [^\r\n\p{L}\p{N}] */
static int is_prefix(const frag *f, size_t i) {
    return i < f->n && !is_crlf(f, i) && !(fl(f, i) & (EM_U_LETTER | EM_U_NUMBER));
}
static int is_ascii_alpha(const frag *f, size_t i) {
    return i < f->n && ((f->cp[i] | 32) >= 'a' && (f->cp[i] | 32) <= 'z');
}
/* ASCII punctuation and symbols: !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~ */
static int is_ascii_punct(const frag *f, size_t i) {
    uint32_t c = i < f->n ? f->cp[i] : 0;
    return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') ||
           (c >= '{' && c <= '~');
}

typedef int (*class_fn)(const frag *f, size_t i);

static size_t run(const frag *f, size_t i, class_fn x) {
    while (x(f, i)) i++;
    return i;
}

static uint32_t lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's 't 're 've 'm 'll 'd; ci: case-insensitive */
static size_t contraction(const frag *f, size_t i, int ci) {
    if (i >= f->n || f->cp[i] != '\'' || i + 1 >= f->n) return 0;
    uint32_t a = ci ? lower(f->cp[i + 1]) : f->cp[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 >= f->n) return 0;
    uint32_t b = ci ? lower(f->cp[i + 2]) : f->cp[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    return 0;
}

/* " ?X+" */
static size_t space_then_run(const frag *f, size_t i, class_fn x) {
    size_t j = i;
    if (f->cp[j] == ' ' && x(f, j + 1)) j++;
    return x(f, j) ? run(f, j, x) : 0;
}

/* "\s?X+" (any whitespace, not only a space) */
static size_t ws_then_run(const frag *f, size_t i, class_fn x) {
    size_t j = i;
    if (is_ws(f, j) && x(f, j + 1)) j++;
    return x(f, j) ? run(f, j, x) : 0;
}

/* \s+(?!\S) | \s+ : a whitespace run, less its last character when a
 * non-space follows (that one goes with the next piece) */
static size_t whitespace(const frag *f, size_t i) {
    size_t j = run(f, i, is_ws);
    if (j == i) return 0;
    if (j < f->n && j - i >= 2) return j - 1;
    return j;
}

/* \s*[\r\n]+ : up to the whitespace run's last CR or LF */
static size_t ws_to_newline(const frag *f, size_t i) {
    size_t last = 0;
    for (size_t j = i; is_ws(f, j); j++)
        if (is_crlf(f, j)) last = j + 1;
    return last;
}

/* ---- GPT-2 family ---- */

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t m_gpt2(const frag *f, size_t i, size_t *next) {
    (void)next;
    size_t e;
    if ((e = contraction(f, i, 0)) || (e = space_then_run(f, i, is_l)) ||
        (e = space_then_run(f, i, is_n)) || (e = space_then_run(f, i, is_other)))
        return e;
    return whitespace(f, i);
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}
 * | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t llama3_like(const frag *f, size_t i, size_t max_digits) {
    size_t e, j;
    if ((e = contraction(f, i, 1))) return e;
    j = i;
    if (is_prefix(f, j) && is_l(f, j + 1)) j++;
    if (is_l(f, j)) return run(f, j, is_l);
    if (is_n(f, i)) {
        for (j = i; j < i + max_digits && is_n(f, j);) j++;
        return j;
    }
    if ((e = space_then_run(f, i, is_other))) return run(f, e, is_crlf);
    if ((e = ws_to_newline(f, i))) return e;
    return whitespace(f, i);
}
static size_t m_llama3(const frag *f, size_t i, size_t *next) { (void)next; return llama3_like(f, i, 3); }
static size_t m_qwen2(const frag *f, size_t i, size_t *next) { (void)next; return llama3_like(f, i, 1); }

/* ---- single-class steps ---- */

static size_t m_digit(const frag *f, size_t i, size_t *next) { (void)next; return is_n(f, i) ? i + 1 : 0; }
static size_t m_digits(const frag *f, size_t i, size_t *next) { (void)next; return run(f, i, is_n); }
static size_t m_digits3(const frag *f, size_t i, size_t *next) {
    (void)next;
    size_t j = i;
    while (j < i + 3 && is_n(f, j)) j++;
    return j;
}
static size_t m_newline(const frag *f, size_t i, size_t *next) { (void)next; return is_crlf(f, i) ? i + 1 : 0; }

/* \s+$ */
static size_t m_trailing_ws(const frag *f, size_t i, size_t *next) {
    size_t j = run(f, i, is_ws);
    if (j == f->n && j > i) return j;
    if (j > i) *next = j; /* no later start inside this run reaches the end either */
    return 0;
}

typedef struct cp_range { uint32_t first, last; } cp_range;

/* r: sorted, disjoint ranges (binary search: the letter table has 87) */
static int in_ranges(uint32_t c, const cp_range *r, size_t n) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c > r[mid].last) lo = mid + 1;
        else if (c < r[mid].first) hi = mid;
        else return 1;
    }
    return 0;
}

/* The cased letters (Lu, Ll, Lt) DeepSeek LLM's regex lists explicitly. */
static const cp_range dsl_letters[] = {
    { 0x41, 0x5A }, { 0x61, 0x7A }, { 0xB5, 0xB5 }, { 0xC0, 0xD6 }, { 0xD8, 0xF6 },
    { 0xF8, 0x1BA }, { 0x1BC, 0x1BF }, { 0x1C4, 0x293 }, { 0x295, 0x2AF }, { 0x370, 0x373 },
    { 0x376, 0x377 }, { 0x37B, 0x37D }, { 0x37F, 0x37F }, { 0x386, 0x386 }, { 0x388, 0x38A },
    { 0x38C, 0x38C }, { 0x38E, 0x3A1 }, { 0x3A3, 0x3F5 }, { 0x3F7, 0x481 }, { 0x48A, 0x52F },
    { 0x531, 0x556 }, { 0x10A0, 0x10C5 }, { 0x13A0, 0x13F5 }, { 0x13F8, 0x13FD },
    { 0x1C90, 0x1CBA }, { 0x1CBD, 0x1CBF }, { 0x1D00, 0x1D2B }, { 0x1D6B, 0x1D77 },
    { 0x1D79, 0x1D9A }, { 0x1E00, 0x1F15 }, { 0x1F18, 0x1F1D }, { 0x1F20, 0x1F45 },
    { 0x1F48, 0x1F4D }, { 0x1F50, 0x1F57 }, { 0x1F59, 0x1F59 }, { 0x1F5B, 0x1F5B },
    { 0x1F5D, 0x1F5D }, { 0x1F5F, 0x1F7D }, { 0x1F80, 0x1FB4 }, { 0x1FB6, 0x1FBC },
    { 0x1FBE, 0x1FBE }, { 0x1FC2, 0x1FC4 }, { 0x1FC6, 0x1FCC }, { 0x1FD0, 0x1FD3 },
    { 0x1FD6, 0x1FDB }, { 0x1FE0, 0x1FEC }, { 0x1FF2, 0x1FF4 }, { 0x1FF6, 0x1FFC },
    { 0x2102, 0x2102 }, { 0x2107, 0x2107 }, { 0x210A, 0x2113 }, { 0x2115, 0x2115 },
    { 0x2119, 0x211D }, { 0x2124, 0x2124 }, { 0x2126, 0x2126 }, { 0x2128, 0x2128 },
    { 0x212A, 0x212D }, { 0x212F, 0x2134 }, { 0x2139, 0x2139 }, { 0x213C, 0x213F },
    { 0x2145, 0x2149 }, { 0x214E, 0x214E }, { 0x2183, 0x2184 }, { 0x2C00, 0x2C7B },
    { 0x2C7E, 0x2CE4 }, { 0x2CEB, 0x2CEE }, { 0x2CF2, 0x2CF3 }, { 0xA640, 0xA66D },
    { 0xA680, 0xA69B }, { 0xA722, 0xA76F }, { 0xA771, 0xA787 }, { 0xA78B, 0xA78E },
    { 0xAB70, 0xABBF }, { 0xFB00, 0xFB06 }, { 0xFB13, 0xFB17 }, { 0xFF21, 0xFF3A },
    { 0xFF41, 0xFF5A }, { 0x10400, 0x1044F }, { 0x104B0, 0x104D3 }, { 0x104D8, 0x104FB },
    { 0x10C80, 0x10CB2 }, { 0x10CC0, 0x10CF2 }, { 0x118A0, 0x118DF }, { 0x1E900, 0x1E943 },
};
/* [!-/:-~！-／：-～‘-‟　-。], sorted */
static const cp_range dsl_punct[] = {
    { 0x21, 0x2F }, { 0x3A, 0x7E }, { 0x2018, 0x201F }, { 0x3000, 0x3002 },
    { 0xFF01, 0xFF0F }, { 0xFF1A, 0xFF5E },
};
/* [一-龥ࠀ-一가-퟿]: U+0800..U+4E00 and the CJK ideographs after it (merged),
 * and Hangul */
static const cp_range ds_cjk[] = { { 0x0800, 0x9FA5 }, { 0xAC00, 0xD7FF } };
/* [一-龥぀-ゟ゠-ヿ]: hiragana, katakana, CJK ideographs (sorted) */
static const cp_range ds3_cjk[] = { { 0x3040, 0x309F }, { 0x30A0, 0x30FF }, { 0x4E00, 0x9FA5 } };

#define IN(table) (i < f->n && in_ranges(f->cp[i], table, sizeof table / sizeof table[0]))
static int is_dsl_letter(const frag *f, size_t i) { return IN(dsl_letters); }
static int is_dsl_punct(const frag *f, size_t i) { return IN(dsl_punct); }
static int is_ds_cjk(const frag *f, size_t i) { return IN(ds_cjk); }
static int is_ds3_cjk(const frag *f, size_t i) { return IN(ds3_cjk); }
#undef IN
static int is_p(const frag *f, size_t i) { return has(f, i, EM_U_PUNCT); }

/* ---- DeepSeek ---- */

static size_t m_dsl_letters(const frag *f, size_t i, size_t *next) { (void)next; return ws_then_run(f, i, is_dsl_letter); }
static size_t m_dsl_punct(const frag *f, size_t i, size_t *next) { (void)next; return ws_then_run(f, i, is_dsl_punct); }
static size_t m_ds_cjk(const frag *f, size_t i, size_t *next) { (void)next; return run(f, i, is_ds_cjk); }
static size_t m_ds3_cjk(const frag *f, size_t i, size_t *next) { (void)next; return run(f, i, is_ds3_cjk); }
static size_t m_ws_letters(const frag *f, size_t i, size_t *next) { (void)next; return ws_then_run(f, i, is_l); }
static size_t m_ws_punct(const frag *f, size_t i, size_t *next) { (void)next; return ws_then_run(f, i, is_p); }

/* [^\r\n\p{L}\p{P}\p{S}] */
static int is_ds3_prefix(const frag *f, size_t i) {
    return i < f->n && !is_crlf(f, i) && !(fl(f, i) & (EM_U_LETTER | EM_U_PUNCT | EM_U_SYMBOL));
}

/* [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
 * | ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t m_ds3(const frag *f, size_t i, size_t *next) {
    (void)next;
    size_t e;
    if (is_ascii_punct(f, i) && is_ascii_alpha(f, i + 1)) return run(f, i + 1, is_ascii_alpha);
    if (is_ds3_prefix(f, i) && is_lm(f, i + 1)) return run(f, i + 1, is_lm);
    if (is_lm(f, i)) return run(f, i, is_lm);
    if ((e = space_then_run(f, i, is_ps))) return run(f, e, is_crlf);
    if ((e = ws_to_newline(f, i))) return e;
    return whitespace(f, i);
}

/* ---- GPT-4o (o200k) ---- */

/* [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] and [\p{Ll}\p{Lm}\p{Lo}\p{M}] */
static int is_upperish(const frag *f, size_t i) {
    uint32_t x = fl(f, i);
    return ((x & EM_U_LETTER) && !(x & EM_U_LOWER)) || (x & EM_U_MARK);
}
static int is_lowerish(const frag *f, size_t i) {
    uint32_t x = fl(f, i);
    return ((x & EM_U_LETTER) && !(x & EM_U_UPPER)) || (x & EM_U_MARK);
}

static size_t with_contraction(const frag *f, size_t e) {
    size_t c = contraction(f, e, 1);
    return c ? c : e;
}

/* U*W+ from j: the greedy U* gives back characters until W+ can start */
static size_t upper_star_lower_plus(const frag *f, size_t j) {
    size_t p = run(f, j, is_upperish);
    for (size_t m = p + 1; m-- > j;)
        if (is_lowerish(f, m)) return with_contraction(f, run(f, m, is_lowerish));
    return 0;
}

static size_t upper_plus_lower_star(const frag *f, size_t j) {
    if (!is_upperish(f, j)) return 0;
    return with_contraction(f, run(f, run(f, j, is_upperish), is_lowerish));
}

/* [^\r\n\p{L}\p{N}]?U*W+(?i:'s|..)?|[^\r\n\p{L}\p{N}]?U+W*(?i:'s|..)?|\p{N}{1,3}
 * | ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t m_gpt4o(const frag *f, size_t i, size_t *next) {
    size_t e;
    int pre = is_prefix(f, i);
    if ((pre && (e = upper_star_lower_plus(f, i + 1))) || (e = upper_star_lower_plus(f, i))) return e;
    if ((pre && (e = upper_plus_lower_star(f, i + 1))) || (e = upper_plus_lower_star(f, i))) return e;
    if (is_n(f, i)) return m_digits3(f, i, next);
    if ((e = space_then_run(f, i, is_other))) {
        while (is_crlf(f, e) || (e < f->n && f->cp[e] == '/')) e++;
        return e;
    }
    if ((e = ws_to_newline(f, i))) return e;
    return whitespace(f, i);
}

/* ---- Falcon ---- */

/* Hugging Face's Punctuation step: Unicode P plus ASCII $ + < = > ^ ` | ~ */
static int is_falcon_punct(const frag *f, size_t i) {
    if (i >= f->n) return 0;
    uint32_t c = f->cp[i];
    return is_p(f, i) || c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' ||
           c == '`' || c == '|' || c == '~';
}
static size_t m_falcon_punct(const frag *f, size_t i, size_t *next) { (void)next; return run(f, i, is_falcon_punct); }

/* ---- the table ---- */

#define MAX_STAGES 6
typedef struct pretok_def {
    int kind;
    match_fn stages[MAX_STAGES]; /* NULL-terminated */
} pretok_def;

static const pretok_def defs[] = {
    { EM_PRE_GPT2, { m_gpt2 } },
    { EM_PRE_LLAMA3, { m_llama3 } },
    { EM_PRE_QWEN2, { m_qwen2 } },
    { EM_PRE_STARCODER, { m_digit, m_gpt2 } },
    { EM_PRE_DEEPSEEK_LLM,
      { m_newline, m_dsl_letters, m_dsl_punct, m_trailing_ws, m_ds_cjk, m_digits } },
    { EM_PRE_DEEPSEEK_CODER, { m_newline, m_ws_letters, m_ws_punct, m_ds_cjk, m_digit } },
    { EM_PRE_DEEPSEEK3, { m_digits3, m_ds3_cjk, m_ds3 } },
    { EM_PRE_FALCON, { m_falcon_punct, m_gpt2 } }, /* + the byte steps below */
    { EM_PRE_GPT4O, { m_gpt4o } },
};

static const struct { const char *name; int kind; } names[] = {
    { "default", EM_PRE_GPT2 },      { "gpt-2", EM_PRE_GPT2 },
    { "gpt2", EM_PRE_GPT2 },         { "mpt", EM_PRE_GPT2 },
    { "llama-bpe", EM_PRE_LLAMA3 },  { "llama3", EM_PRE_LLAMA3 },
    { "qwen2", EM_PRE_QWEN2 },       { "starcoder", EM_PRE_STARCODER },
    { "refact", EM_PRE_STARCODER },  { "deepseek-llm", EM_PRE_DEEPSEEK_LLM },
    { "deepseek-coder", EM_PRE_DEEPSEEK_CODER }, { "deepseek-v3", EM_PRE_DEEPSEEK3 },
    { "falcon", EM_PRE_FALCON },     { "gpt-4o", EM_PRE_GPT4O },
};

int em_pretok_from_name(const char *name) {
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(names[i].name, name) == 0) return names[i].kind;
    return EM_PRE_UNKNOWN;
}

const char *em_pretok_names(void) {
    return "default, gpt-2, gpt2, mpt, llama-bpe, llama3, qwen2, starcoder, refact, "
           "deepseek-llm, deepseek-coder, deepseek-v3, falcon, gpt-4o";
}

/* ---- the driver ---- */

typedef struct split_ctx {
    const uint32_t *cps, *offs;
    const unsigned char *text;
    const match_fn *stages;
    int byte_steps;
    em_piece *out;
    size_t np;
} split_ctx;

static void push(split_ctx *c, size_t start, size_t end) {
    c->out[c->np].start = (uint32_t)start;
    c->out[c->np].len = (uint32_t)(end - start);
    c->np++;
}

static int ascii_digit(unsigned char b) { return b >= '0' && b <= '9'; }

/* [0-9][0-9][0-9], isolated, over bytes */
static void split_three_digits(split_ctx *c, size_t s, size_t e) {
    size_t gap = s;
    for (size_t i = s; i + 3 <= e;) {
        if (ascii_digit(c->text[i]) && ascii_digit(c->text[i + 1]) && ascii_digit(c->text[i + 2])) {
            if (gap < i) push(c, gap, i);
            push(c, i, i + 3);
            i = gap = i + 3;
        } else {
            i++;
        }
    }
    if (gap < e) push(c, gap, e);
}

/* Falcon runs Digits and its [0-9]{3} split after the byte-to-character
 * mapping, so they see mapped bytes: besides ASCII digits, the bytes that
 * map to the numeric characters ² ³ ¹ ¼ ½ ¾ count as digits. */
static int falcon_numeric(unsigned char b) {
    return ascii_digit(b) || b == 0xB2 || b == 0xB3 || b == 0xB9 || (b >= 0xBC && b <= 0xBE);
}

static void emit(split_ctx *c, size_t a, size_t b) {
    size_t s = c->offs[a], e = c->offs[b];
    if (!c->byte_steps) {
        push(c, s, e);
        return;
    }
    for (size_t i = s; i < e;) { /* Digits, contiguous: numeric and other runs alternate */
        int num = falcon_numeric(c->text[i]);
        size_t j = i;
        while (j < e && falcon_numeric(c->text[j]) == num) j++;
        split_three_digits(c, i, j);
        i = j;
    }
}

/* Splits codepoints [a, b) with stage k and hands each part to stage k+1. */
static void split_stage(split_ctx *c, int k, size_t a, size_t b) {
    match_fn m = k < MAX_STAGES ? c->stages[k] : NULL;
    if (!m) {
        emit(c, a, b);
        return;
    }
    frag f = { c->cps + a, b - a };
    size_t gap = 0;
    for (size_t i = 0; i < f.n;) {
        size_t next = i + 1;
        size_t e = m(&f, i, &next);
        if (e <= i) { /* matchers built on run() give i for no match */
            i = next;
            continue;
        }
        if (gap < i) split_stage(c, k + 1, a + gap, a + i);
        split_stage(c, k + 1, a + i, a + e);
        i = gap = e;
    }
    if (gap < f.n) split_stage(c, k + 1, a + gap, b);
}

size_t em_pretok_split(int kind, const char *text, size_t len, uint32_t *cps, uint32_t *offs,
                       em_piece *pieces) {
    size_t n = 0;
    for (size_t o = 0; o < len; n++) {
        offs[n] = (uint32_t)o;
        o += em_utf8_decode((const unsigned char *)text + o, len - o, &cps[n]);
    }
    offs[n] = (uint32_t)len;
    const pretok_def *d = &defs[0];
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++)
        if (defs[i].kind == kind) d = &defs[i];
    split_ctx c = { cps, offs, (const unsigned char *)text, d->stages, kind == EM_PRE_FALCON,
                    pieces, 0 };
    split_stage(&c, 0, 0, n);
    return c.np;
}
