/* Byte-level BPE with every pre-tokenizer on arbitrary bytes. The input's
 * first byte picks the pre-tokenizer and the flags. The vocabulary (built
 * here: the 256 byte characters, a few merges, a control and a
 * user-defined token) covers every byte, so: tokenizing never fails, every
 * id is in range, detokenizing (specials rendered) gives the exact bytes
 * back, and streaming the ids gives the same bytes in whole characters. */
#include "fuzz.h"
#include <stdio.h>

#include "gguf_writer.h"

static const char *const pre_names[] = { "gpt2", "llama-bpe", "qwen2", "starcoder",
                                         "deepseek-llm", "deepseek-coder", "deepseek-v3",
                                         "falcon", "gpt-4o" };
#define N_PRE (sizeof pre_names / sizeof pre_names[0])
static ember_model *models[N_PRE];

/* GPT-2's byte -> character mapping, as UTF-8 */
static void byte_char(int b, char out[3]) {
    int next = 256, cp = 0;
    for (int x = 0; x <= b; x++) {
        int printable = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE;
        cp = printable ? x : next++;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

static const char *const merges[] = { "\xc4\xa0 t", "h e", "\xc4\xa0t he", "i n", "e r",
                                      "\xc4\xa0 a", "1 2", "12 3", "\xc3\x83 \xc2\xa9", "o n",
                                      "\xc4\x8a \xc4\x8a" };
static const char *const merged[] = { "\xc4\xa0t", "he", "\xc4\xa0the", "in", "er",
                                      "\xc4\xa0" "a", "12", "123", "\xc3\x83\xc2\xa9", "on",
                                      "\xc4\x8a\xc4\x8a" };
#define N_MERGES (sizeof merges / sizeof merges[0])

static ember_model *build(const char *pre) {
    enum { N = 256 + N_MERGES + 2 };
    static char chars[256][3];
    const char *tokens[N];
    int32_t types[N];
    for (int b = 0; b < 256; b++) {
        byte_char(b, chars[b]);
        tokens[b] = chars[b];
        types[b] = 1;
    }
    for (size_t i = 0; i < N_MERGES; i++) {
        tokens[256 + i] = merged[i];
        types[256 + i] = 1;
    }
    tokens[N - 2] = "<|endoftext|>";
    types[N - 2] = 3; /* control */
    tokens[N - 1] = "<tool>";
    types[N - 1] = 4; /* user-defined */
    gw w = { 0 };
    gw_header(&w, 3, 0, 7);
    gw_kv_str(&w, "general.architecture", "llama");
    gw_kv_str(&w, "tokenizer.ggml.model", "gpt2");
    gw_kv_str(&w, "tokenizer.ggml.pre", pre);
    gw_kv_arr_str(&w, "tokenizer.ggml.tokens", tokens, N);
    gw_kv_arr_i32(&w, "tokenizer.ggml.token_type", types, N);
    gw_kv_arr_str(&w, "tokenizer.ggml.merges", merges, N_MERGES);
    gw_kv_u32(&w, "tokenizer.ggml.eos_token_id", N - 2);
    gw_pad(&w, 32);
    void *img = gw_aligned_copy(&w);
    size_t size = w.len;
    gw_free(&w);
    ember_model_params p;
    ember_model_default_params(&p);
    p.vocab_only = 1;
    ember_model *m = NULL;
    if (!img || ember_model_load_memory(img, size, &p, &m)) {
        fprintf(stderr, "fuzz_bpe: %s\n", ember_last_error());
        __builtin_trap();
    }
    return m; /* img lives as long as the process, as the model needs */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    size_t k = (data[0] >> 2) % N_PRE;
    if (!models[k]) models[k] = build(pre_names[k]);
    ember_model *m = models[k];
    uint32_t flags = data[0] & 3;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    size_t cap = 8 * len + 8, n = 0, nb = 0, ns = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    char *back = malloc(len + 64), *streamed = malloc(len + 64);
    ember_detok_stream *st = NULL;
    if (!ids || !back || !streamed) goto out;
    FUZZ_CHECK(ember_tokenize(m, text, len, ids, cap, &n, flags) == EMBER_OK);
    for (size_t i = 0; i < n; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < ember_model_n_vocab(m));
    /* no BOS in this vocabulary, so ADD_BOS adds nothing */
    FUZZ_CHECK(ember_detokenize(m, ids, n, back, len + 64, &nb, EMBER_DETOKENIZE_SPECIAL) ==
               EMBER_OK);
    FUZZ_CHECK(nb == len && memcmp(back, text, len) == 0);
    FUZZ_CHECK(ember_detok_stream_create(m, EMBER_DETOKENIZE_SPECIAL, &st) == EMBER_OK);
    for (size_t i = 0; i < n; i++) {
        size_t got = 0;
        FUZZ_CHECK(ember_detok_stream_push(st, ids[i], streamed + ns, len + 64 - ns, &got) ==
                   EMBER_OK);
        ns += got;
    }
    size_t got = 0;
    FUZZ_CHECK(ember_detok_stream_flush(st, streamed + ns, len + 64 - ns, &got) == EMBER_OK);
    ns += got;
    FUZZ_CHECK(ns == len && memcmp(streamed, text, len) == 0);
out:
    ember_detok_stream_free(&st);
    free(ids);
    free(back);
    free(streamed);
    return 0;
}
