/* Pre-tokenizers of the byte-level BPE models: the reference regexes,
 * implemented by hand over codepoints (no regex engine in the core).
 * Each splits a text fragment into pieces that BPE then encodes alone. */
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
