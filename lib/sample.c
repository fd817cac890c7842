/* Sampling: repetition penalty, top-k, temperature, softmax, top-p, min-p,
 * then a draw from a seeded generator (splitmix64), so that the same seed
 * and logits always give the same token. */
#include <math.h>
#include <string.h>

#include "util.h"

typedef struct cand { float v; int32_t id; } cand;

struct ember_sampler {
    em_alloc alloc;
    ember_sampler_params p;
    int32_t n_vocab;
    uint64_t rng;
    int32_t *hist;      /* ring of the last repeat_last_n tokens */
    int32_t hist_n, hist_pos;
    uint8_t *penalised; /* per token, while applying the penalty */
    cand *c;
};

EMBER_API void ember_sampler_default_params(ember_sampler_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->seed = 0x5eed;
}

static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform(uint64_t *s) { return (double)(next_u64(s) >> 11) * 0x1.0p-53; }

/* The size of the first released version of ember_sampler_params (up to its last
 * field, allocator). Frozen: later fields come out of the reserved tail, and
 * callers built against older headers must keep working. */
#define PARAMS_V1_SIZE (offsetof(ember_sampler_params, allocator) + sizeof(ember_allocator))

EMBER_API int ember_sampler_create(const ember_sampler_params *params, int32_t n_vocab,
                                   ember_sampler **out) {
    if (!out) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "sampler: out is NULL");
    *out = NULL;
    ember_sampler_params p;
    ember_sampler_default_params(&p);
    int rc = em_read_params(&p, sizeof p, params, PARAMS_V1_SIZE, "sampler params");
    if (rc) return rc;
    if (n_vocab <= 0 || p.repeat_last_n < 0 || p.repeat_last_n > (1 << 20) ||
        !(p.repeat_penalty > 0) || isnan(p.temperature) || isnan(p.top_p) || isnan(p.min_p))
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "sampler: n_vocab %d, repeat_last_n %d "
                        "or repeat_penalty %g out of range, or a NaN parameter", n_vocab,
                        p.repeat_last_n, (double)p.repeat_penalty);
    em_alloc a;
    em_alloc_init(&a, &p.allocator);
    ember_sampler *s = em_calloc(&a, 1, sizeof *s);
    if (!s) return em_error(NULL, EMBER_ERR_NO_MEMORY, "sampler: no memory");
    s->alloc = a;
    s->p = p;
    s->n_vocab = n_vocab;
    s->rng = p.seed;
    s->hist = em_calloc(&a, (size_t)p.repeat_last_n + 1, sizeof *s->hist);
    s->penalised = em_calloc(&a, (size_t)n_vocab, 1);
    s->c = em_calloc(&a, (size_t)n_vocab, sizeof *s->c);
    if (!s->hist || !s->penalised || !s->c) {
        ember_sampler_free(&s);
        return em_error(NULL, EMBER_ERR_NO_MEMORY, "sampler: no memory for %d tokens", n_vocab);
    }
    *out = s;
    return EMBER_OK;
}

EMBER_API void ember_sampler_free(ember_sampler **sp) {
    if (!sp || !*sp) return;
    ember_sampler *s = *sp;
    em_alloc a = s->alloc;
    em_free(&a, s->hist);
    em_free(&a, s->penalised);
    em_free(&a, s->c);
    em_free(&a, s);
    *sp = NULL;
}

EMBER_API int ember_sampler_reset(ember_sampler *s, uint64_t seed) {
    if (!s) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "sampler: NULL");
    s->rng = seed;
    s->hist_n = s->hist_pos = 0;
    return EMBER_OK;
}

EMBER_API int ember_sampler_accept(ember_sampler *s, int32_t token) {
    if (!s) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "sampler: NULL");
    if (token < 0 || token >= s->n_vocab)
        return em_error(NULL, EMBER_ERR_BAD_TOKEN, "sampler: token %d is outside the vocabulary "
                        "(%d)", token, s->n_vocab);
    if (s->p.repeat_last_n == 0) return EMBER_OK;
    s->hist[s->hist_pos] = token;
    s->hist_pos = (s->hist_pos + 1) % s->p.repeat_last_n;
    if (s->hist_n < s->p.repeat_last_n) s->hist_n++;
    return EMBER_OK;
}

/* CTRL-style: positive logits divided by the penalty, negative multiplied,
 * once per distinct recent token. */
static void apply_penalty(ember_sampler *s) {
    if (s->p.repeat_penalty == 1.0f) return;
    for (int32_t i = 0; i < s->hist_n; i++) {
        int32_t t = s->hist[i];
        if (s->penalised[t]) continue;
        s->penalised[t] = 1;
        float *v = &s->c[t].v;
        *v = *v > 0 ? *v / s->p.repeat_penalty : *v * s->p.repeat_penalty;
    }
    for (int32_t i = 0; i < s->hist_n; i++) s->penalised[s->hist[i]] = 0;
}

/* larger value first; equal values: smaller id first */
static bool before(const cand *a, const cand *b) {
    return a->v > b->v || (a->v == b->v && a->id < b->id);
}

/* Moves the k best candidates to the front, sorted, with a heap of the
 * k best seen so far (worst at the root): O(n log k). */
static void top_k_sorted(cand *c, int32_t n, int32_t k) {
    for (int32_t i = 0; i < n; i++) {
        cand x = c[i];
        int32_t pos;
        if (i < k) {
            pos = i;
            while (pos > 0 && before(&c[(pos - 1) / 2], &x)) {
                c[pos] = c[(pos - 1) / 2];
                pos = (pos - 1) / 2;
            }
            c[pos] = x;
            continue;
        }
        if (!before(&x, &c[0])) continue;
        pos = 0; /* replace the worst and sift down */
        for (;;) {
            int32_t l = 2 * pos + 1, r = l + 1, w = pos;
            const cand *wx = &x;
            if (l < k && before(wx, &c[l])) { w = l; wx = &c[l]; }
            if (r < k && before(wx, &c[r])) w = r;
            if (w == pos) break;
            c[pos] = c[w];
            pos = w;
        }
        c[pos] = x;
    }
    /* heap sort the k: repeatedly move the worst to the end */
    for (int32_t end = k - 1; end > 0; end--) {
        cand x = c[end];
        c[end] = c[0];
        int32_t pos = 0;
        for (;;) {
            int32_t l = 2 * pos + 1, r = l + 1, w = pos;
            const cand *wx = &x;
            if (l < end && before(wx, &c[l])) { w = l; wx = &c[l]; }
            if (r < end && before(wx, &c[r])) w = r;
            if (w == pos) break;
            c[pos] = c[w];
            pos = w;
        }
        c[pos] = x;
    }
    /* now ascending by "worst first" reversed: c[0] is best */
}

EMBER_API int ember_sampler_sample(ember_sampler *s, const float *logits, int32_t *token) {
    if (!s || !logits || !token)
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "sampler: NULL argument");
    int32_t n = s->n_vocab;
    for (int32_t i = 0; i < n; i++) s->c[i] = (cand){ logits[i], i };
    apply_penalty(s);
    const ember_sampler_params *p = &s->p;
    if (p->temperature <= 0) {
        int32_t best = 0;
        for (int32_t i = 1; i < n; i++) if (s->c[i].v > s->c[best].v) best = i;
        *token = best;
        return ember_sampler_accept(s, best);
    }
    int32_t k = p->top_k > 0 && p->top_k < n ? p->top_k : n;
    top_k_sorted(s->c, n, k);
    double sum = 0, maxv = s->c[0].v / p->temperature;
    for (int32_t i = 0; i < k; i++) {
        s->c[i].v = (float)exp(s->c[i].v / p->temperature - maxv);
        sum += s->c[i].v;
    }
    /* top-p: the smallest prefix whose mass reaches top_p */
    int32_t keep = k;
    if (p->top_p < 1.0f) {
        double cum = 0;
        for (int32_t i = 0; i < k; i++) {
            cum += s->c[i].v / sum;
            if (cum >= p->top_p) { keep = i + 1; break; }
        }
    }
    /* min-p: drop tokens below min_p times the best one's probability */
    if (p->min_p > 0) {
        int32_t m = 1;
        while (m < keep && s->c[m].v >= p->min_p * s->c[0].v) m++;
        keep = m;
    }
    double total = 0;
    for (int32_t i = 0; i < keep; i++) total += s->c[i].v;
    double r = uniform(&s->rng) * total, acc = 0;
    int32_t pick = s->c[keep - 1].id;
    for (int32_t i = 0; i < keep; i++) {
        acc += s->c[i].v;
        if (r < acc) { pick = s->c[i].id; break; }
    }
    *token = pick;
    return ember_sampler_accept(s, pick);
}
