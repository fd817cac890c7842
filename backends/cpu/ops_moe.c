/* MoE kernels: routing (per token, lib/moe.c) and the grouped expert FFN.
 *
 * The expert FFN groups the batch's tokens by expert, then for each expert
 * with tokens runs gate and up together over its tokens (one pass over
 * those two matrices), then down, adding each token's weighted result into
 * its output row. So every active expert's weights are read once per
 * batch, whatever the batch size. All threads work on one expert at a
 * time, splitting its rows, and meet at barriers between the steps. */
#include <math.h>
#include <string.h>

#include "../../lib/moe.h"
#include "cpu.h"

void em_cpu_moe_route(em_cpu *c, em_tensor *t, int ith, int nth) {
    (void)c;
    const em_tensor *lg = t->src[0], *bias = t->src[1];
    em_route_params p = { (int32_t)lg->ne[0], t->ip[0], t->ip[1], t->ip[2], t->ip[3], t->ip[4],
                          t->fp[0] };
    int64_t T = lg->ne[1];
    int64_t per = (T + nth - 1) / nth, lo = per * ith, hi = lo + per < T ? lo + per : T;
    for (int64_t tok = lo; tok < hi; tok++) {
        const float *l = (const float *)((const char *)lg->data + tok * lg->nb[1]);
        float *out = (float *)((char *)t->data + tok * t->nb[1]);
        int32_t ids[EM_MOE_MAX_EXPERTS];
        em_moe_route_token(l, bias ? bias->data : NULL, &p, ids, out);
        for (int32_t j = 0; j < p.n_used; j++) out[p.n_used + j] = (float)ids[j];
    }
}

/* Layout of the shared area: counts[n_expert], then per expert a list of
 * (token, weight) with room for every token, then per-expert work rows:
 * gathered inputs (later the down outputs) [T][E], gate and up
 * activations [T][F] each. With the GEMM (enough tokens for the expert)
 * the inputs and the gate/up activations are held transposed instead,
 * [E][tp] and [F][tp], tp = tokens rounded up to whole GEMM lanes: the
 * GEMM writes gate/up in the layout the down matmul reads. */
typedef struct moe_area {
    int32_t *count;
    int32_t *tok;  /* [n_expert][T] */
    float *w;      /* [n_expert][T] */
    float *xs;     /* [T][E] */
    float *gs;     /* [T][F] */
    float *us;     /* [T][F] */
} moe_area;

static moe_area area(float *base, int64_t n_expert, int64_t T, int64_t E, int64_t F) {
    moe_area a;
    a.count = (int32_t *)base;
    a.tok = a.count + n_expert;
    a.w = (float *)(a.tok + n_expert * T);
    a.xs = a.w + n_expert * T;
    int64_t tp = em_cpu_gemm_lanes(T);
    a.gs = a.xs + tp * E;
    a.us = a.gs + tp * F;
    return a;
}

size_t em_cpu_moe_ffn_shared(const em_tensor *t) {
    int64_t E = t->src[0]->ne[0], T = t->src[0]->ne[1], tp = em_cpu_gemm_lanes(T);
    int64_t F = t->src[2]->ne[1], n_expert = t->src[2]->ne[2];
    return (size_t)(n_expert + 2 * n_expert * T + tp * E + 2 * tp * F);
}

size_t em_cpu_moe_ffn_scratch(const em_tensor *t) {
    return em_cpu_gemm_scratch(t->src[0]->ne[1]);
}

static void group_by_expert(const em_tensor *t, moe_area *a, int64_t n_expert, int64_t T,
                            uint64_t *stats) {
    const em_tensor *route = t->src[1];
    int32_t k = t->ip[0];
    memset(a->count, 0, (size_t)n_expert * sizeof *a->count);
    for (int64_t tok = 0; tok < T; tok++) {
        const float *r = (const float *)((const char *)route->data + tok * route->nb[1]);
        for (int32_t j = 0; j < k; j++) {
            int32_t e = (int32_t)r[k + j];
            int32_t n = a->count[e]++;
            a->tok[e * T + n] = (int32_t)tok;
            a->w[e * T + n] = r[j];
        }
    }
    if (stats)
        for (int64_t e = 0; e < n_expert; e++) stats[e] += (uint64_t)a->count[e];
}

/* Fewer tokens than this for an expert: dot products in the weight's type
 * (row-major vectors); more: the GEMM (transposed vectors). */
#define EM_MOE_GEMM_MIN 3

/* Where vector v's element k lives in one of the expert's work arrays. */
typedef struct layout {
    int64_t sv, sk;
} layout;

static layout work_layout(int64_t n, int64_t len) {
    return n < EM_MOE_GEMM_MIN ? (layout){ len, 1 } : (layout){ 1, em_cpu_gemm_lanes(n) };
}

/* Rows [lo, hi) of one expert's matrix times its n vectors (laid out as
 * `in`): out element (v, row) at out[v * o.sv + row * o.sk]. Each row is
 * read once, whatever n. */
static void rows_times(em_cpu *c, const em_tensor *m, const char *mat, int64_t lo, int64_t hi,
                       const float *vecs, int64_t n, float *out, layout o, float *scratch) {
    int64_t K = m->ne[0];
    if (n < EM_MOE_GEMM_MIN) {
        em_dot_fn dot = c->dsp.dot[m->type];
        for (int64_t r = lo; r < hi; r++)
            for (int64_t v = 0; v < n; v++)
                out[v * o.sv + r * o.sk] = dot(K, mat + r * m->nb[1], vecs + v * K);
        return;
    }
    em_wrows w = { mat, m->type, K, m->nb[1] };
    em_cpu_gemm_rows(c, &w, lo, hi, vecs, n, out, o.sv, o.sk, scratch);
}

static void split_rows(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi) {
    int64_t per = (n + nth - 1) / nth;
    *lo = per * ith < n ? per * ith : n;
    *hi = *lo + per < n ? *lo + per : n;
}

static void run_expert(em_cpu *c, const em_tensor *t, const moe_area *a, int64_t e, int ith,
                       int nth) {
    const em_tensor *x = t->src[0], *gate = t->src[2], *up = t->src[3], *down = t->src[4];
    int64_t E = x->ne[0], T = x->ne[1], F = gate->ne[1], n = a->count[e], lo, hi;
    const int32_t *toks = a->tok + e * T;
    const float *ws = a->w + e * T;
    float *scratch = c->scratch[ith];
    layout lx = work_layout(n, E), lg = work_layout(n, F);
    /* gather the inputs; transposed, the padding lanes are zero */
    int64_t nv = n < EM_MOE_GEMM_MIN ? n : em_cpu_gemm_lanes(n);
    split_rows(nv, ith, nth, &lo, &hi);
    for (int64_t v = lo; v < hi; v++) {
        const float *src = (const float *)((const char *)x->data + (v < n ? toks[v] : 0) * x->nb[1]);
        for (int64_t k = 0; k < E; k++) a->xs[v * lx.sv + k * lx.sk] = v < n ? src[k] : 0;
    }
    em_threadpool_barrier(c->pool);
    /* gate and up over the same rows, then silu(gate) * up */
    split_rows(F, ith, nth, &lo, &hi);
    rows_times(c, gate, (const char *)gate->data + e * gate->nb[2], lo, hi, a->xs, n, a->gs, lg, scratch);
    rows_times(c, up, (const char *)up->data + e * up->nb[2], lo, hi, a->xs, n, a->us, lg, scratch);
    for (int64_t v = 0; v < nv; v++) /* padding lanes: zero, as the GEMM expects */
        for (int64_t r = lo; r < hi; r++) {
            float *g = a->gs + v * lg.sv + r * lg.sk;
            *g = v < n ? *g / (1.0f + expf(-*g)) * a->us[v * lg.sv + r * lg.sk] : 0.0f;
        }
    em_threadpool_barrier(c->pool);
    /* down into xs, row-major (the inputs are no longer needed), then each
     * token's weighted share into its output row; threads own disjoint
     * columns */
    split_rows(E, ith, nth, &lo, &hi);
    rows_times(c, down, (const char *)down->data + e * down->nb[2], lo, hi, a->gs, n, a->xs,
               (layout){ E, 1 }, scratch);
    for (int64_t v = 0; v < n; v++) {
        float *y = (float *)((char *)t->data + toks[v] * t->nb[1]);
        const float *d = a->xs + v * E;
        for (int64_t r = lo; r < hi; r++) y[r] += ws[v] * d[r];
    }
    em_threadpool_barrier(c->pool);
}

void em_cpu_moe_ffn(em_cpu *c, em_tensor *t, int ith, int nth) {
    const em_tensor *x = t->src[0], *gate = t->src[2];
    int64_t E = x->ne[0], T = x->ne[1], F = gate->ne[1], n_expert = gate->ne[2], lo, hi;
    moe_area a = area(c->shared, n_expert, T, E, F);
    if (ith == 0) {
        c->shared_in = NULL; /* the area is the experts' now */
        uint64_t *stats = c->graph->expert_counts && c->graph->stats_n_expert == n_expert
                              ? c->graph->expert_counts + (size_t)t->ip[1] * (size_t)n_expert
                              : NULL;
        group_by_expert(t, &a, n_expert, T, stats);
    }
    split_rows(T, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) memset((char *)t->data + r * t->nb[1], 0, (size_t)E * 4);
    em_threadpool_barrier(c->pool);
    for (int64_t e = 0; e < n_expert; e++)
        if (a.count[e]) run_expert(c, t, &a, e, ith, nth);
}
