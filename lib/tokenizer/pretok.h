/* Pre-tokenizers of the byte-level BPE models: the reference regexes,
 * implemented by hand over codepoints (no regex engine in the core).
 * Each splits a text fragment into pieces that BPE then encodes alone.
 * Where llama.cpp's regexes approximate Hugging Face's tokenizer.json (the
 * reference the models were trained with), we follow Hugging Face: gpt-4o
 * uses real Lu/Ll classes, falcon runs its Digits step. */
#ifndef EMBER_PRETOK_H
#define EMBER_PRETOK_H

#include <stddef.h>
#include <stdint.h>

enum em_pretok {
    EM_PRE_UNKNOWN = -1,
    EM_PRE_GPT2 = 0,   /* "default", "gpt-2" and the models that use its regex */
    EM_PRE_LLAMA3,     /* "llama-bpe" (Llama 3) */
    EM_PRE_QWEN2,      /* "qwen2": Llama 3's, digits one by one */
    EM_PRE_STARCODER,  /* "starcoder", "refact": digits apart, then GPT-2's */
    EM_PRE_DEEPSEEK_LLM,   /* "deepseek-llm": newlines, cased letters, punctuation, CJK, numbers */
    EM_PRE_DEEPSEEK_CODER, /* "deepseek-coder" */
    EM_PRE_DEEPSEEK3,      /* "deepseek-v3": digits in threes, CJK/kana runs, then its regex */
    EM_PRE_FALCON,         /* "falcon": punctuation runs, GPT-2's, then digit splits on bytes */
    EM_PRE_GPT4O,          /* "gpt-4o": o200k, which tells upper from lower case */
};

/* The pre-tokenizer named by tokenizer.ggml.pre, or EM_PRE_UNKNOWN. */
int em_pretok_from_name(const char *name);
/* The names accepted, comma-separated (for messages and docs). */
const char *em_pretok_names(void);

typedef struct em_piece { uint32_t start, len; } em_piece;

/* Splits text[0..len) into pieces (byte ranges, in order, covering every
 * byte). cps and offs are caller scratch with room for len + 1 entries;
 * pieces for len entries. Returns the number of pieces. */
size_t em_pretok_split(int kind, const char *text, size_t len, uint32_t *cps, uint32_t *offs,
                       em_piece *pieces);

#endif
