/* Mutated models: a full load, and if it loads, a context and a short
 * evaluation. Seeds are complete tiny models, so mutations reach the
 * hyperparameter and weight checks and the forward pass. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    void *img = fuzz_aligned_copy(data, size);
    if (!img) return 0;
    ember_model *m = NULL;
    if (ember_model_load_memory(img, size, NULL, &m) == EMBER_OK) {
        ember_context_params cp;
        ember_context_default_params(&cp);
        cp.n_ctx = 8;
        cp.n_batch = 4;
        cp.n_threads = 1;
        ember_context *c = NULL;
        /* a huge but valid model may not fit: errors are fine here */
        if (ember_model_n_params(m) < (1u << 22) &&
            ember_context_create(m, &cp, &c) == EMBER_OK) {
            ember_batch_entry b[2] = { { 0, 0, 0, 0 }, { 1 % ember_model_n_vocab(m), 1, 0, 1 } };
            if (ember_eval(c, b, 2) == EMBER_OK) FUZZ_CHECK(ember_get_logits(c, 1) != NULL);
            ember_context_free(&c);
        }
        ember_model_free(&m);
    }
    free(img);
    return 0;
}
