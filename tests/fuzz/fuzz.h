/* Shared by the fuzz targets. Each target defines LLVMFuzzerTestOneInput;
 * built with -Dfuzzing=true it links libFuzzer, otherwise replay_main.c
 * runs it over files (seed corpora and regressions) as a normal test. */
#ifndef EMBER_FUZZ_H
#define EMBER_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A 64-byte aligned copy (ember_model_load_memory needs alignment). */
static inline void *fuzz_aligned_copy(const uint8_t *data, size_t size) {
    void *p = NULL;
    if (posix_memalign(&p, 64, size ? size : 1)) return NULL;
    if (size) memcpy(p, data, size);
    return p;
}

/* A property the library broke: crash so the fuzzer keeps the input. */
#define FUZZ_CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

/* Reads little pieces of the input as parameters. */
typedef struct fuzz_in { const uint8_t *p; size_t n; } fuzz_in;

static inline uint32_t fuzz_u32(fuzz_in *in) {
    uint32_t v = 0;
    for (int i = 0; i < 4 && in->n; i++, in->p++, in->n--) v = v << 8 | *in->p;
    return v;
}

static inline uint8_t fuzz_u8(fuzz_in *in) {
    if (!in->n) return 0;
    in->n--;
    return *in->p++;
}

#endif
