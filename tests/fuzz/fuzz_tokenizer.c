/* The SentencePiece tokenizer on arbitrary bytes, with a vocabulary that
 * has every byte token: tokenizing never fails, every id is in range, and
 * detokenizing gives the text back: unless special tokens were parsed
 * (SentencePiece adds a prefix space after each) or the text holds U+2581
 * itself (the symbol SentencePiece uses for spaces), both by design. */
#include "fuzz.h"
#include "synth_model.h"

static ember_model *model;

static void init(void) {
    synth_cfg cfg = { 16, 1, 2, 1, 16, 16, 0, 1 };
    void *img;
    size_t size;
    if (synth_llama(&cfg, &img, &size) || ember_model_load_memory(img, size, NULL, &model))
        __builtin_trap();
    /* img lives as long as the process, as the model needs */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!model) init();
    if (size == 0) return 0;
    uint32_t flags = data[0] & 3;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    size_t cap = 8 * len + 8, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    char *back = malloc(4 * len + 64);
    if (!ids || !back) goto out;
    FUZZ_CHECK(ember_tokenize(model, text, len, ids, cap, &n, flags) == EMBER_OK);
    for (size_t i = 0; i < n; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < ember_model_n_vocab(model));
    size_t nb = 0;
    /* BOS renders as nothing; the prefix space is stripped */
    size_t skip = (flags & EMBER_TOKENIZE_ADD_BOS) ? 1 : 0;
    FUZZ_CHECK(ember_detokenize(model, ids + skip, n - skip, back, 4 * len + 64, &nb,
                                EMBER_DETOKENIZE_STRIP_SPACE | ((flags & 2) ? EMBER_DETOKENIZE_SPECIAL : 0)) == EMBER_OK);
    if (!(flags & EMBER_TOKENIZE_PARSE_SPECIAL) && !memmem(text, len, "\xe2\x96\x81", 3))
        FUZZ_CHECK(nb == len && memcmp(back, text, len) == 0);
out:
    free(ids);
    free(back);
    return 0;
}
