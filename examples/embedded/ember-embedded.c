/* A firmware-style program: the model is linked into the binary (meson
 * option embedded_model, a GGUF path read at build time), and everything
 * runs from two static buffers, with no file system access and no heap:
 *
 *   1. ember_memory_plan_get sizes the model and context; its own
 *      metadata-sized scratch comes from a static planning arena;
 *   2. the model and context are made in one static arena of that size;
 *   3. the prompt is tokenized and greedy decoding prints the text.
 *
 *   ember-embedded [PROMPT] [N_TOKENS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"

#ifndef EMBER_EMBEDDED_MODEL
#error "build with -Dembedded_model=PATH (meson option)"
#endif

/* The GGUF image, 64-byte aligned in read-only data (ember reads the
 * weights in place). */
__asm__(".section .rodata\n"
        ".balign 64\n"
        ".globl ember_embedded_model\n"
        "ember_embedded_model:\n"
        ".incbin \"" EMBER_EMBEDDED_MODEL "\"\n"
        ".globl ember_embedded_model_end\n"
        "ember_embedded_model_end:\n"
        ".previous\n");
extern const unsigned char ember_embedded_model[], ember_embedded_model_end[];

#ifndef EMBER_EMBEDDED_ARENA
#define EMBER_EMBEDDED_ARENA (4u << 20)
#endif
static _Alignas(64) unsigned char plan_buf[1u << 20];
static _Alignas(64) unsigned char arena_buf[EMBER_EMBEDDED_ARENA];

#define MAX_PROMPT 256

static int fail(const char *what, int rc) {
    fprintf(stderr, "ember-embedded: %s: %s (%s)\n", what, ember_status_string(rc),
            ember_last_error());
    return 1;
}

static int argmax(const float *l, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[best]) best = i;
    return best;
}

int main(int argc, char **argv) {
    const char *prompt = argc > 1 ? argv[1] : "Once upon a time";
    int n_gen = argc > 2 ? atoi(argv[2]) : 32;
    size_t plen = strlen(prompt);
    if (plen > MAX_PROMPT || n_gen < 1 || n_gen > 256) {
        fprintf(stderr, "usage: %s [PROMPT (<= %d bytes)] [N_TOKENS (1..256)]\n", argv[0],
                MAX_PROMPT);
        return 2;
    }
    const void *img = ember_embedded_model;
    size_t img_size = (size_t)(ember_embedded_model_end - ember_embedded_model);

    ember_model_params mp;
    ember_model_default_params(&mp);
    ember_context_params cp;
    ember_context_default_params(&cp);
    cp.n_ctx = 512;
    cp.n_batch = 64;
    cp.n_threads = 1;

    /* 1. the plan, its scratch from a static arena */
    int rc = ember_arena_allocator(plan_buf, sizeof plan_buf, &mp.allocator);
    ember_memory_plan plan = { .struct_size = sizeof plan };
    if (rc || (rc = ember_memory_plan_get(img, img_size, &mp, &cp, MAX_PROMPT, &plan)))
        return fail("plan", rc);
    printf("model image %zu bytes (weights %llu read in place); arena needed %llu of %u bytes "
           "(model %llu, context %llu, KV %llu, tokenizer %llu)\n",
           img_size, (unsigned long long)plan.weights_bytes,
           (unsigned long long)plan.arena_bytes, EMBER_EMBEDDED_ARENA,
           (unsigned long long)plan.model_bytes, (unsigned long long)plan.context_bytes,
           (unsigned long long)plan.kv_bytes, (unsigned long long)plan.tokenize_bytes);
    if (plan.arena_bytes > sizeof arena_buf) {
        fprintf(stderr, "ember-embedded: the arena is too small; rebuild with a larger "
                        "EMBER_EMBEDDED_ARENA\n");
        return 1;
    }

    /* 2. model and context in one arena of the planned size */
    if ((rc = ember_arena_allocator(arena_buf, (size_t)plan.arena_bytes, &mp.allocator)))
        return fail("arena", rc);
    cp.allocator = mp.allocator;
    ember_model *model = NULL;
    ember_context *ctx = NULL;
    if ((rc = ember_model_load_memory(img, img_size, &mp, &model))) return fail("model", rc);
    if ((rc = ember_context_create(model, &cp, &ctx))) return fail("context", rc);

    /* 3. prompt, then greedy decoding */
    int32_t toks[MAX_PROMPT + 8];
    size_t nt = 0;
    if ((rc = ember_tokenize(model, prompt, plen, toks, MAX_PROMPT + 8, &nt,
                             EMBER_TOKENIZE_ADD_BOS)))
        return fail("tokenize", rc);
    ember_batch_entry batch[MAX_PROMPT + 8];
    for (size_t i = 0; i < nt; i++)
        batch[i] = (ember_batch_entry){ toks[i], (int32_t)i, 0, i + 1 == nt };
    int32_t n_vocab = ember_model_n_vocab(model), pos = (int32_t)nt;
    printf("%s", prompt);
    for (size_t done = 0; done < nt;) { /* the prompt in batches of n_batch */
        size_t n = nt - done < cp.n_batch ? nt - done : cp.n_batch;
        if ((rc = ember_eval(ctx, batch + done, n))) return fail("eval", rc);
        done += n;
    }
    const float *logits = ember_get_logits(ctx, (nt - 1) % cp.n_batch);
    for (int i = 0; i < n_gen && logits; i++) {
        int32_t tok = argmax(logits, n_vocab);
        if (ember_token_is_eog(model, tok)) break;
        char piece[64];
        size_t len = 0;
        if (ember_token_to_piece(model, tok, piece, sizeof piece - 1, &len, 0) == EMBER_OK)
            fwrite(piece, 1, len, stdout);
        ember_batch_entry e = { tok, pos++, 0, 1 };
        if ((rc = ember_eval(ctx, &e, 1))) return fail("eval", rc);
        logits = ember_get_logits(ctx, 0);
    }
    printf("\n");
    size_t used, peak;
    ember_arena_usage(&mp.allocator, &used, &peak);
    printf("arena peak %zu bytes (planned %llu); ember used no file and no heap\n", peak,
           (unsigned long long)plan.arena_bytes);
    ember_context_free(&ctx);
    ember_model_free(&model);
    return 0;
}
