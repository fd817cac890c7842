/* ember_memory_plan_get: the memory of a model and a context, known before
 * either exists, by creating them through a sizing arena (arena.h): the
 * library's own allocation code runs, in the same order, so the plan is
 * exact for an ember arena, and the bulk blocks (KV rows, work buffers)
 * are counted without being allocated. */
#include <string.h>

#include "arena.h"
#include "kv.h"
#include "model.h"

/* Tokenizes max_text_bytes of text, for the scratch it takes. */
static int plan_tokenize(const ember_model *m, uint64_t max_text_bytes, const em_alloc *backing) {
    if (!max_text_bytes) return EMBER_OK;
    size_t n = (size_t)max_text_bytes;
    char *text = em_malloc(backing, n);
    int32_t *tok = em_malloc(backing, (n + 4) * sizeof *tok);
    int rc = EMBER_ERR_NO_MEMORY;
    if (text && tok) {
        memset(text, ' ', n); /* the longest escaped form (SPM: 3 bytes each) */
        size_t got = 0;
        rc = ember_tokenize(m, text, n, tok, n + 4, &got, EMBER_TOKENIZE_ADD_BOS);
    }
    em_free(backing, text);
    em_free(backing, tok);
    return rc;
}

EMBER_API int ember_memory_plan_get(const void *data, size_t size, const ember_model_params *mp,
                                    const ember_context_params *cp, uint64_t max_text_bytes,
                                    ember_memory_plan *out) {
    if (!out || !data)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "plan: data or out is NULL");
    if (out->struct_size && out->struct_size < offsetof(ember_memory_plan, reserved))
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "plan: struct_size %zu too small",
                        out->struct_size);
    ember_model_params m;
    ember_context_params c;
    int rc;
    if ((rc = em_model_read_params(mp, &m)) || (rc = em_context_read_params(cp, &c))) return rc;
    if (c.backend != EMBER_BACKEND_CPU)
        return em_error(NULL, EMBER_ERR_UNSUPPORTED, "plan: only CPU contexts are planned (a "
                        "device keeps its own memory)");
    em_alloc backing;
    em_alloc_init(&backing, m.allocator.malloc_fn ? &m.allocator : NULL);
    em_arena *ar = NULL;
    ember_allocator hooks;
    rc = em_arena_sizing_create(&backing, &ar, &hooks);
    if (rc) return em_error(NULL, rc, "plan: no memory");
    m.struct_size = sizeof m;
    m.allocator = hooks;
    c.struct_size = sizeof c;
    c.allocator = hooks;
    ember_model *model = NULL;
    ember_context *ctx = NULL;
    ember_memory_plan p = { .struct_size = sizeof p };
    size_t base = em_arena_sizing_top(ar);
    if ((rc = ember_model_load_memory(data, size, &m, &model))) goto done;
    p.model_bytes = em_arena_sizing_top(ar) - base;
    p.weights_bytes = size - model->gguf.data_offset;
    size_t after_model = em_arena_sizing_top(ar);
    if ((rc = ember_context_create(model, &c, &ctx))) goto done;
    p.kv_bytes = em_kv_host_bytes(em_context_kv(ctx));
    p.context_bytes = em_arena_sizing_top(ar) - after_model - p.kv_bytes;
    size_t before_tok = em_arena_sizing_top(ar);
    if ((rc = plan_tokenize(model, max_text_bytes, &backing))) goto done;
    p.tokenize_bytes = em_arena_sizing_peak(ar) - before_tok;
    p.arena_bytes = em_arena_sizing_peak(ar);
done:
    ember_context_free(&ctx);
    ember_model_free(&model);
    em_arena_sizing_free(&ar, &backing);
    if (rc) return rc; /* the message is the failed call's */
    size_t n = out->struct_size && out->struct_size < sizeof p ? out->struct_size : sizeof p;
    memcpy(out, &p, n);
    out->struct_size = n;
    return EMBER_OK;
}
