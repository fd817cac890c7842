/* The vocabulary read from tokenizer.ggml.* metadata, and the tokenizer
 * entry points. Piece texts point into the model's file image. */
#ifndef EMBER_VOCAB_H
#define EMBER_VOCAB_H

#include "../gguf.h"
#include "pretok.h"

enum em_vocab_kind { EM_VOCAB_NONE = 0, EM_VOCAB_SPM = 1, EM_VOCAB_BPE = 2, EM_VOCAB_OTHER = 3 };

#define EM_BPE_CP_MAX 0x144 /* codepoints GPT-2's byte table uses */

/* tokenizer.ggml.token_type values */
enum em_token_type {
    EM_TOK_NORMAL = 1, EM_TOK_UNKNOWN = 2, EM_TOK_CONTROL = 3,
    EM_TOK_USER_DEFINED = 4, EM_TOK_UNUSED = 5, EM_TOK_BYTE = 6
};

typedef struct em_vocab {
    int kind;
    char model_name[32]; /* tokenizer.ggml.model */
    int32_t n;
    const char **text;
    uint32_t *len;
    float *scores;
    uint8_t *types;
    em_strmap map;
    int32_t bos, eos, eot, unk;
    bool add_space_prefix;
    /* SentencePiece: no piece holds a U+2581 right after another character,
     * so no merge crosses the start of a word and words encode apart
     * (linear time on long texts, same ids) */
    bool spm_words_apart;
    int32_t byte_token[256]; /* -1 where the vocab has no <0xNN> piece */
    int32_t *specials;       /* control + user-defined ids, longest text first */
    int32_t n_specials;
    /* byte-level BPE */
    char pre_name[64];       /* tokenizer.ggml.pre */
    int pretok;              /* em_pretok, EM_PRE_UNKNOWN if not supported */
    bool ignore_merges;      /* a piece that is a token is taken whole (Llama 3) */
    em_strmap merges;        /* "left right" -> rank */
    struct em_bpe_bytes *bb; /* GPT-2's byte table, BPE vocabs only */
} em_vocab;

typedef struct em_bpe_bytes {
    uint32_t byte_cp[256];
    char byte_utf8[256][2];
    uint8_t byte_utf8_len[256];
    int16_t cp_byte[EM_BPE_CP_MAX];
} em_bpe_bytes;

/* n_vocab: the model's vocabulary size (rows of the embedding); the
 * tokens array, if present, must have this length. */
int em_vocab_load(em_vocab *v, const em_gguf *g, int32_t n_vocab, const em_alloc *a);
void em_vocab_free(em_vocab *v, const em_alloc *a);

/* SentencePiece-style BPE over the escaped text (spaces as U+2581),
 * merging the highest-scoring adjacent pair first. Appends to out[] (room
 * for at least len entries is guaranteed by the caller). */
int em_spm_encode(const em_vocab *v, const char *text, size_t len, int32_t *out, size_t *n_out,
                  const em_alloc *a);

/* Byte-level BPE: the byte table, and encoding (pre-tokenizer, merges). */
void em_bpe_init_bytes(em_bpe_bytes *bb);
int em_bpe_encode(const em_vocab *v, const char *text, size_t len, int32_t *out, size_t *n_out,
                  const em_alloc *a);

#endif
