/* GGUF parsing and the tokenizer metadata: any bytes, loaded vocab-only
 * (no architecture needed), then every metadata query. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    void *img = fuzz_aligned_copy(data, size);
    if (!img) return 0;
    ember_model_params p;
    ember_model_default_params(&p);
    p.vocab_only = 1;
    p.max_string_length = 1 << 16; /* keep each run small */
    p.max_array_length = 1 << 16;
    ember_model *m = NULL;
    if (ember_model_load_memory(img, size, &p, &m) == EMBER_OK) {
        char buf[64];
        for (int32_t i = 0; i < ember_model_meta_count(m); i++) {
            const char *k = ember_model_meta_key(m, i);
            FUZZ_CHECK(k != NULL);
            ember_model_meta_string(m, k, buf, sizeof buf, NULL);
            int64_t iv;
            double fv;
            ember_model_meta_int(m, k, &iv);
            ember_model_meta_float(m, k, &fv);
        }
        int32_t ids[64];
        size_t n;
        ember_tokenize(m, "Hello world", 11, ids, 64, &n, EMBER_TOKENIZE_ADD_BOS);
        ember_model_free(&m);
    } else {
        FUZZ_CHECK(m == NULL);
    }
    free(img);
    return 0;
}
