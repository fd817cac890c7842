/* CPU op kernels. Each runs thread ith's share of one node; the shares
 * are disjoint rows, so no op needs a lock. Arithmetic is F32 throughout;
 * weights of other types are converted by the dsp table's kernels. */
#include <math.h>
#include <string.h>

#include "cpu.h"
#include "../../lib/quant.h"
#include "../../lib/rope.h"

static void split(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi) {
    int64_t per = (n + nth - 1) / nth;
    *lo = per * ith < n ? per * ith : n;
    *hi = *lo + per < n ? *lo + per : n;
}

static int64_t nrows(const em_tensor *t) { return t->ne[1] * t->ne[2] * t->ne[3]; }

static float *row_f32(const em_tensor *t, int64_t r) {
    return (float *)((char *)t->data + (size_t)r * t->nb[1]);
}

/* src1 broadcasts when it is a single row */
static const float *bcast_row(const em_tensor *b, int64_t r) {
    return nrows(b) == 1 ? (const float *)b->data : row_f32(b, r);
}

static void op_get_rows(em_cpu *c, em_tensor *t, int ith, int nth) {
    const em_tensor *tab = t->src[0];
    const int32_t *ids = t->src[1]->data;
    int64_t lo, hi;
    split(t->ne[1], ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const char *src = (const char *)tab->data + (size_t)ids[r] * tab->nb[1];
        c->dsp.to_f32[tab->type](tab->ne[0], src, row_f32(t, r));
    }
}

static void op_rms_norm(em_cpu *c, em_tensor *t, int ith, int nth) {
    (void)c;
    const em_tensor *x = t->src[0], *w = t->src[1];
    int64_t n = t->ne[0], lo, hi;
    split(nrows(t), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *a = row_f32(x, r);
        float *y = row_f32(t, r);
        double ss = 0;
        for (int64_t i = 0; i < n; i++) ss += (double)a[i] * a[i];
        float scale = (float)(1.0 / sqrt(ss / (double)n + (double)t->fp[0]));
        if (w) {
            const float *g = w->data;
            for (int64_t i = 0; i < n; i++) y[i] = a[i] * scale * g[i];
        } else {
            for (int64_t i = 0; i < n; i++) y[i] = a[i] * scale;
        }
    }
}

/* Thread scratch of the integer path for T rows of K: the two quantized
 * planes, their scales and sums, the row views. */
typedef struct q8x_area {
    int8_t *q, *lo;
    float *d;
    int32_t *s;
    em_q8x_row *rows;
    void *few; /* gemm_q8_few's scratch */
} q8x_area;

#define EM_Q8X_MAX_TOKENS 4 /* the integer path for T < this (see matmul_q8x) */

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static size_t q8x_area_bytes(int64_t K, int64_t T) {
    size_t nb = (size_t)K / 32;
    return 2 * align64((size_t)T * (size_t)K) + 2 * align64((size_t)T * nb * 4) +
           align64((size_t)T * sizeof(em_q8x_row)) + align64(EM_Q8_FEW_SCRATCH(nb, T)) + 64;
}

static q8x_area q8x_carve(void *base, int64_t K, int64_t T) {
    size_t nb = (size_t)K / 32;
    char *p = (char *)(((uintptr_t)base + 63) & ~(uintptr_t)63);
    q8x_area a;
    a.q = (int8_t *)p;
    p += align64((size_t)T * (size_t)K);
    a.lo = (int8_t *)p;
    p += align64((size_t)T * (size_t)K);
    a.d = (float *)p;
    p += align64((size_t)T * nb * 4);
    a.s = (int32_t *)p;
    p += align64((size_t)T * nb * 4);
    a.rows = (em_q8x_row *)p;
    p += align64((size_t)T * sizeof(em_q8x_row));
    a.few = p;
    return a;
}

static bool uses_q8x(const em_cpu *c, const em_tensor *w) {
    return c->dsp.dot_q8x[w->type] != NULL && w->ne[0] % 32 == 0;
}

/* act_type Q8_0 in force for w: 8-bit activations (where the dsp has the
 * int8 GEMM; Q8_0/Q4_0 weights) */
static bool uses_act8(const em_cpu *c, const em_tensor *w) {
    return c->act_q8 && c->dsp.unpack_q8[w->type] != NULL && w->ne[0] % 32 == 0;
}

/* act_type Q8_0 in force for one of the unpacked types (the K-quants):
 * one 8-bit plane through dot_q8 for decode, and batches multiply the
 * same 8-bit activations, dequantized, in the F32 tiles */
static bool uses_dot_q8(const em_cpu *c, const em_tensor *w) {
    return c->act_q8 && c->dsp.dot_q8[w->type] != NULL && w->ne[0] % 32 == 0;
}

/* act_type BF16 in force for w (BF16 weights, a CPU with gemm_bf16) */
static bool uses_bf16(const em_cpu *c, const em_tensor *w) {
    return c->act_bf16 && w->type == EMBER_TYPE_BF16 && w->ne[0] % 2 == 0;
}

/* Block-quantized weights with a few tokens (decode): activations quantized
 * per block of 32 to two 8-bit planes (each thread its own copy: T x K is
 * small next to the weights), then integer dot products, each weight row
 * read once for all tokens.
 *
 * More tokens (prompts, batches) take the GEMM path: activations
 * transposed once into the shared area, then tiles of dequantized rows
 * times all tokens with the F32 GEMM kernel. On the dev VM's core 512-bit
 * FMAs outrun the 16-bit integer dot instructions (docs/performance.md),
 * so the integer path does not pay there. */

static void matmul_q8x(em_cpu *c, const em_tensor *w, const em_tensor *x, float *y, int64_t lo,
                       int64_t hi, int ith) {
    int64_t K = w->ne[0], N = w->ne[1], T = x->ne[1], nb = K / 32;
    q8x_area a = q8x_carve(c->scratch[ith], K, T);
    bool one_plane = uses_dot_q8(c, w), act8 = uses_act8(c, w) || one_plane;
    one_plane = one_plane || (act8 && c->dsp.gemm_q8_few[w->type]);
    for (int64_t t = 0; t < T; t++) {
        const float *xt = (const float *)((const char *)x->data + (size_t)t * x->nb[1]);
        a.rows[t] = (em_q8x_row){ a.q + t * K, a.lo + t * K, a.d + t * nb, a.s + t * nb };
        if (act8) { /* 8-bit activations as the GEMM rounds them: the low plane 0 */
            for (int64_t b = 0; b < nb; b++) /* one lane: the bytes come out in order */
                c->dsp.quant_q8_lanes(xt, 0, 1, b, a.q + t * K, a.d + t * nb, a.s + t * nb, 1);
            if (one_plane) continue; /* below */
            memset(a.lo + t * K, 0, (size_t)K);
            for (int64_t b = 0; b < nb; b++) {
                a.d[t * nb + b] /= 256.0f;
                a.s[t * nb + b] *= 256;
            }
        } else {
            c->dsp.quant_q8x(K, xt, a.q + t * K, a.lo + t * K, a.d + t * nb, a.s + t * nb);
        }
    }
    const char *wb = (const char *)w->data + (size_t)lo * w->nb[1];
    if (act8 && c->dsp.gemm_q8_few[w->type]) { /* one plane: half the products */
        if (hi > lo)
            c->dsp.gemm_q8_few[w->type](nb, hi - lo, T, wb, w->nb[1], a.q, K, a.d, a.s, nb,
                                        y + lo, N, a.few);
        return;
    }
    em_dot_q8x_fn dot = one_plane ? c->dsp.dot_q8[w->type] : c->dsp.dot_q8x[w->type];
    for (int64_t n = lo; n < hi; n++, wb += w->nb[1]) /* each row once, for every token */
        for (int64_t t = 0; t < T; t++) y[t * N + n] = dot(K, wb, a.rows[t]);
}

/* Under act_type Q8_0, batches of EM_Q8X_MAX_TOKENS to 8 tokens (the
 * decode steps of a few sequences) take gemm_q8_few: rows in the vector
 * lanes read as stored, where gemm_q8 would unpack every tile for a
 * half-empty 16-token vector. Measured on llama-1b decode (2 threads):
 * Q4_0 4 sequences 20 -> 40 tok/s, 8: 37.5 -> 57.6; Q8_0 17 -> 27,
 * 33 -> 45. From 9 tokens it needs two passes of gathers and gemm_q8 is
 * faster again (12 sequences: 51 vs 55 tok/s). */
#define EM_Q8_FEW_MAX_TOKENS 9

/* Activations of all tokens, token-major, quantized once into the shared
 * area (threads split the blocks), then each thread's rows. */
static void matmul_q8_few(em_cpu *c, const em_tensor *w, const em_tensor *x, float *y,
                          int64_t lo, int64_t hi, int ith, int nth) {
    int64_t K = w->ne[0], N = w->ne[1], T = x->ne[1], nb = K / 32, cells = T * nb;
    int8_t *q = (int8_t *)c->shared; /* K x 16 floats: room for T < 16 token rows */
    if (ith == 0) c->shared_in = NULL;
    float *d = (float *)(q + align64((size_t)(T * K)));
    int32_t *s = (int32_t *)(d + cells);
    int64_t per = (cells + nth - 1) / nth;
    int64_t i0 = per * ith < cells ? per * ith : cells, i1 = i0 + per < cells ? i0 + per : cells;
    for (int64_t i = i0; i < i1; i++) {
        int64_t t = i / nb, b = i % nb;
        const float *xt = (const float *)((const char *)x->data + (size_t)t * x->nb[1]);
        c->dsp.quant_q8_lanes(xt, 0, 1, b, q + t * K, d + t * nb, s + t * nb, 1);
    }
    em_threadpool_barrier(c->pool);
    if (hi > lo)
        c->dsp.gemm_q8_few[w->type](nb, hi - lo, T, (const char *)w->data + (size_t)lo * w->nb[1],
                                    w->nb[1], q, K, d, s, nb, y + lo, N, c->scratch[ith]);
}

/* Read by all threads before the barrier that follows, so all take the
 * same branch. */
static bool shared_holds(const em_cpu *c, const em_tensor *x, int layout) {
    return c->shared_in == x && c->shared_layout == layout;
}

/* Ends a layout of x in the shared area: the barrier, then thread 0 marks
 * it (no thread reads the mark before the next node's barrier). */
static void shared_now_holds(em_cpu *c, const em_tensor *x, int layout, int ith) {
    em_threadpool_barrier(c->pool);
    if (ith == 0) {
        c->shared_in = x;
        c->shared_layout = layout;
    }
}

/* BF16 weights under act_type BF16: the activations rounded to BF16 as
 * llama.cpp rounds them for BF16 models. One token: each thread rounds
 * its own copy, then the F32 dot (the products exact, as VDPBF16PS's);
 * more: pairs in the shared area, then gemm_bf16 on the stored rows. */
static void matmul_bf16(em_cpu *c, const em_tensor *w, const em_tensor *x, float *y, int64_t lo,
                        int64_t hi, int ith, int nth) {
    int64_t K = w->ne[0], N = w->ne[1], T = x->ne[1];
    if (T == 1) {
        float *xr = c->scratch[ith];
        const float *xs = x->data;
        for (int64_t k = 0; k < K; k++) xr[k] = em_round_bf16(xs[k]);
        for (int64_t n = lo; n < hi; n++)
            y[n] = c->dsp.dot[EMBER_TYPE_BF16](K, (const char *)w->data + (size_t)n * w->nb[1], xr);
        return;
    }
    uint32_t *xT2 = (uint32_t *)c->shared;
    if (!shared_holds(c, x, EM_SHARED_BF16P)) {
        em_cpu_transpose_in_bf16(x->data, (int64_t)(x->nb[1] / sizeof(float)), T, K, xT2, ith, nth);
        shared_now_holds(c, x, EM_SHARED_BF16P, ith);
    }
    em_wrows wr = { w->data, w->type, K, w->nb[1] };
    em_cpu_gemm_bf16_rows(c, &wr, lo, hi, xT2, T, y, N, 1, c->scratch[ith]);
}

static void op_matmul(em_cpu *c, em_tensor *t, int ith, int nth) {
    const em_tensor *w = t->src[0], *x = t->src[1];
    int64_t K = w->ne[0], N = w->ne[1], T = x->ne[1], lo, hi;
    /* split output features in whole tiles, or for a few tokens (the row
     * paths) in units of 16 rows (one cache line of y per token): whole
     * tiles of 48 left two threads up to 12% of a decode matmul apart
     * (256 rows: 144 and 112), and decode waited on the slower one */
    int64_t unit = T < EM_Q8_FEW_MAX_TOKENS ? 16 : EM_MATMUL_TILE;
    int64_t tiles = (N + unit - 1) / unit;
    split(tiles, ith, nth, &lo, &hi);
    lo *= unit;
    hi = hi * unit < N ? hi * unit : N;
    float *y = t->data;
    if (T == 0) return;
    em_wrows wr = { w->data, w->type, K, w->nb[1] };
    /* every thread takes the same branch (it depends on the node only);
     * under act_q8 both branches round activations the same way, so a
     * sequence's results do not depend on the batch size beyond the
     * order of float sums */
    if (uses_act8(c, w) && T >= EM_Q8X_MAX_TOKENS && T < EM_Q8_FEW_MAX_TOKENS &&
        c->dsp.gemm_q8_few[w->type]) {
        matmul_q8_few(c, w, x, y, lo, hi, ith, nth);
        return;
    }
    if (uses_act8(c, w) && T >= EM_Q8X_MAX_TOKENS) {
        em_q8_in in = em_cpu_q8_in(c->shared, T, K);
        if (!shared_holds(c, x, EM_SHARED_Q8)) {
            em_cpu_quantize_in(c, x->data, (int64_t)(x->nb[1] / sizeof(float)), T, K, in, ith,
                               nth);
            shared_now_holds(c, x, EM_SHARED_Q8, ith);
        }
        em_cpu_gemm_q8_rows(c, &wr, lo, hi, in, T, y, N, 1, c->scratch[ith]);
        return;
    }
    if (uses_bf16(c, w)) {
        matmul_bf16(c, w, x, y, lo, hi, ith, nth);
        return;
    }
    if (uses_q8x(c, w) && T < EM_Q8X_MAX_TOKENS) {
        matmul_q8x(c, w, x, y, lo, hi, ith);
        return;
    }
    if (T == 1) {
        em_dot_fn dot = c->dsp.dot[w->type];
        const char *wb = w->data;
        for (int64_t n = lo; n < hi; n++) y[n] = dot(K, wb + (size_t)n * w->nb[1], x->data);
        return;
    }
    float *xT = c->shared;
    int64_t ldx = (int64_t)(x->nb[1] / sizeof(float));
    if (uses_dot_q8(c, w)) { /* the decode's 8-bit activations, dequantized */
        if (!shared_holds(c, x, EM_SHARED_F32T_Q8)) {
            em_cpu_transpose_in_q8(c, x->data, ldx, T, K, xT, ith, nth);
            shared_now_holds(c, x, EM_SHARED_F32T_Q8, ith);
        }
    } else if (!shared_holds(c, x, EM_SHARED_F32T)) {
        em_cpu_transpose_in(x->data, ldx, T, K, xT, ith, nth);
        shared_now_holds(c, x, EM_SHARED_F32T, ith);
    }
    em_cpu_gemm_rows(c, &wr, lo, hi, xT, T, y, N, 1, c->scratch[ith]);
}

static void op_binary(em_cpu *c, em_tensor *t, int ith, int nth) {
    (void)c;
    int64_t n = t->ne[0], lo, hi;
    split(nrows(t), ith, nth, &lo, &hi);
    bool per_row = t->src[1]->ne[0] == 1 && n > 1; /* a scalar per row */
    for (int64_t r = lo; r < hi; r++) {
        const float *a = row_f32(t->src[0], r), *b = bcast_row(t->src[1], r);
        float *y = row_f32(t, r);
        if (per_row)
            for (int64_t i = 0; i < n; i++) y[i] = t->op == EM_OP_ADD ? a[i] + b[0] : a[i] * b[0];
        else if (t->op == EM_OP_ADD)
            for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
        else
            for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i];
    }
}

static void op_swiglu(em_cpu *c, em_tensor *t, int ith, int nth) {
    int64_t n = t->ne[0], lo, hi;
    split(nrows(t), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++)
        c->dsp.swiglu(n, row_f32(t->src[0], r), row_f32(t->src[1], r), row_f32(t, r));
}

static void op_softmax(em_cpu *c, em_tensor *t, int ith, int nth) {
    (void)c;
    int64_t n = t->ne[0], lo, hi;
    split(nrows(t), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *a = row_f32(t->src[0], r);
        float *y = row_f32(t, r), m = -INFINITY;
        for (int64_t i = 0; i < n; i++) m = a[i] > m ? a[i] : m;
        double sum = 0;
        for (int64_t i = 0; i < n; i++) sum += (y[i] = expf(a[i] - m));
        float inv = (float)(1.0 / sum);
        for (int64_t i = 0; i < n; i++) y[i] *= inv;
    }
}

static void op_scale(em_cpu *c, em_tensor *t, int ith, int nth) {
    (void)c;
    int64_t n = t->ne[0], lo, hi;
    split(nrows(t), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *a = row_f32(t->src[0], r);
        float *y = row_f32(t, r);
        for (int64_t i = 0; i < n; i++) y[i] = a[i] * t->fp[0];
    }
}

static void op_sigmoid(em_cpu *c, em_tensor *t, int ith, int nth) {
    (void)c;
    int64_t n = t->ne[0], lo, hi;
    split(nrows(t), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *a = row_f32(t->src[0], r);
        float *y = row_f32(t, r);
        for (int64_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-a[i]));
    }
}

static void op_slice(em_cpu *c, em_tensor *t, int ith, int nth) {
    (void)c;
    int64_t lo, hi;
    split(nrows(t), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++)
        memcpy(row_f32(t, r), row_f32(t->src[0], r) + t->ip[0], (size_t)t->ip[1] * sizeof(float));
}

static void op_concat(em_cpu *c, em_tensor *t, int ith, int nth) {
    (void)c;
    const em_tensor *a = t->src[0], *b = t->src[1];
    int64_t lo, hi;
    split(nrows(t), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        memcpy(row_f32(t, r), row_f32(a, r), (size_t)a->ne[0] * sizeof(float));
        memcpy(row_f32(t, r) + a->ne[0], row_f32(b, r), (size_t)b->ne[0] * sizeof(float));
    }
}

/* One matrix per head (MLA's absorbed projections): y[:,h,t] = W_h x[:,h,t]. */
static void op_head_matmul(em_cpu *c, em_tensor *t, int ith, int nth) {
    const em_tensor *w = t->src[0], *x = t->src[1];
    int64_t K = w->ne[0], N = w->ne[1], H = x->ne[1], T = x->ne[2], lo, hi;
    em_dot_fn dot = c->dsp.dot[w->type];
    split(T * H, ith, nth, &lo, &hi);
    for (int64_t task = lo; task < hi; task++) {
        int64_t tok = task / H, h = task % H;
        const float *xv = (const float *)((const char *)x->data + tok * x->nb[2] + h * x->nb[1]);
        float *y = (float *)((char *)t->data + tok * t->nb[2] + h * t->nb[1]);
        const char *wh = (const char *)w->data + h * w->nb[2];
        for (int64_t n = 0; n < N; n++) y[n] = dot(K, wh + n * w->nb[1], xv);
    }
}

/* Rotary embedding. Mode 0 rotates adjacent pairs (x[2i], x[2i+1]); mode 2
 * rotates halves (x[i], x[i + n_rot/2]). Dimensions past n_rot pass
 * through. Angles pos * inv_freq[i] are taken in double once per token. */
static void op_rope(em_cpu *c, em_tensor *t, int ith, int nth) {
    const em_tensor *x = t->src[0];
    const int32_t *pos = t->src[1]->data;
    const float *inv_freq = t->src[2]->data;
    int64_t D = x->ne[0], H = x->ne[1], T = x->ne[2], lo, hi;
    int n_rot = t->ip[0], half = n_rot / 2;
    float *cs = c->scratch[ith], *sn = cs + half;
    split(T, ith, nth, &lo, &hi);
    for (int64_t tok = lo; tok < hi; tok++) {
        em_rope_cos_sin(pos[tok], inv_freq, half, t->fp[0], cs, sn);
        for (int64_t h = 0; h < H; h++) {
            const float *a = (const float *)((const char *)x->data + tok * x->nb[2] + h * x->nb[1]);
            float *y = (float *)((char *)t->data + tok * t->nb[2] + h * t->nb[1]);
            for (int i = 0; i < half; i++) {
                int i0 = t->ip[1] == 0 ? 2 * i : i, i1 = t->ip[1] == 0 ? 2 * i + 1 : i + half;
                float a0 = a[i0], a1 = a[i1];
                y[i0] = a0 * cs[i] - a1 * sn[i];
                y[i1] = a0 * sn[i] + a1 * cs[i];
            }
            for (int64_t i = n_rot; i < D; i++) y[i] = a[i];
        }
    }
}

static void op_kv_store(em_cpu *c, em_tensor *t, int ith, int nth) {
    em_kv *kv = c->graph->kv;
    const em_tensor *k = t->src[0], *v = t->src[1];
    const int32_t *slots = t->src[2]->data;
    int layer = t->ip[0];
    int64_t lo, hi;
    split(k->ne[1], ith, nth, &lo, &hi);
    for (int64_t tok = lo; tok < hi; tok++) {
        void *kd = em_kv_k(kv, layer, slots[tok]), *vd = em_kv_v(kv, layer, slots[tok]);
        if (kv->type == EMBER_TYPE_F16) {
            c->dsp.f32_to_f16(kv->k_row, row_f32(k, tok), kd);
            if (v) c->dsp.f32_to_f16(kv->v_row, row_f32(v, tok), vd);
        } else if (kv->type == EMBER_TYPE_Q8_0) { /* whole blocks per head: checked at creation */
            em_quantize_row(EMBER_TYPE_Q8_0, row_f32(k, tok), kv->k_row, kd);
            if (v) em_quantize_row(EMBER_TYPE_Q8_0, row_f32(v, tok), kv->v_row, vd);
        } else {
            memcpy(kd, row_f32(k, tok), (size_t)kv->k_row * 4);
            if (v) memcpy(vd, row_f32(v, tok), (size_t)kv->v_row * 4);
        }
    }
}

/* One query row of causal attention: its sequence's cached positions
 * 0..pos, read block by block through the block table. */
typedef struct attn_job {
    const em_kv *kv;
    int layer;
    const float *q;
    const int32_t *table;
    int32_t pos;
    size_t k_off, v_off; /* bytes from a slot's K (V) row to this head's */
    int64_t D, Dv;
    float scale;
} attn_job;

/* The K row of a slot for this head. */
static const void *k_row(const attn_job *j, int64_t slot) {
    return (const char *)em_kv_k(j->kv, j->layer, slot) + j->k_off;
}

/* The V row of a slot for this head. A cache without V rows (MLA) keeps
 * the value as the first Dv elements of the K row. */
static const void *v_row(const attn_job *j, int64_t slot) {
    if (j->kv->v_row == 0) return k_row(j, slot);
    return (const char *)em_kv_v(j->kv, j->layer, slot) + j->v_off;
}

/* The cache slot of position p (block sizes are powers of two). */
static int64_t slot_of(const attn_job *j, int32_t p) {
    int32_t sh = j->kv->block_shift;
    return ((int64_t)j->table[p >> sh] << sh) + (p & (j->kv->block - 1));
}

/* F32 and 8-bit caches: one pass with an online softmax over chunks of
 * EM_ATTN_CHUNK positions (dsp attn_chunk), for the G query heads of one
 * KV head together, so no score matrix is ever materialised and each K
 * and V row is read once per group. 8-bit rows are expanded to F32 in
 * scratch first (kx: the chunk's K rows, vx: its V rows). */
static void attend(const em_cpu *c, const attn_job *j, int64_t G, int64_t ldq, float *scratch,
                   float *out) {
    enum { CH = EM_ATTN_CHUNK };
    int64_t D = j->D, Dv = j->Dv;
    float *m = scratch, *l = m + G, *acc = l + G, *kx = acc + G * Dv, *vx = kx + CH * D;
    const float *kp[CH], *vp[CH];
    uint32_t ty = j->kv->type;
    bool mla = j->kv->v_row == 0; /* V is the head of the K row */
    for (int64_t g = 0; g < G; g++) m[g] = -INFINITY, l[g] = 0;
    memset(acc, 0, (size_t)(G * Dv) * sizeof *acc);
    for (int32_t b0 = 0; b0 <= j->pos; b0 += CH) {
        int n = j->pos + 1 - b0 < CH ? j->pos + 1 - b0 : CH;
        for (int i = 0; i < n; i++) {
            int64_t slot = slot_of(j, b0 + i);
            const void *kr = k_row(j, slot), *vr = v_row(j, slot);
            if (ty == EMBER_TYPE_F32) {
                kp[i] = kr, vp[i] = vr;
                continue;
            }
            c->dsp.to_f32[ty](D, kr, kx + i * D);
            kp[i] = kx + i * D;
            if (mla) {
                vp[i] = kp[i];
            } else {
                c->dsp.to_f32[ty](Dv, vr, vx + i * Dv);
                vp[i] = vx + i * Dv;
            }
        }
        c->dsp.attn_chunk(D, Dv, G, j->q, ldq, j->scale, n, kp, vp, m, l, acc, Dv);
    }
    for (int64_t g = 0; g < G; g++) {
        float inv = 1.0f / l[g];
        for (int64_t e = 0; e < Dv; e++) out[g * Dv + e] = acc[g * Dv + e] * inv;
    }
}

/* F16 cache: the arithmetic of an F16 attention (as llama.cpp computes
 * with its default F16 cache): the query is rounded to F16 for Q.K, the
 * softmax is normalised in F32 and each probability rounded to F16 before
 * it weights V. Normalised probabilities need the global max and sum
 * first, so this takes two passes over K (pass 1: max and sum; pass 2:
 * weights), still block by block and without a score matrix. */
static float score_f16(const em_cpu *c, const attn_job *j, const float *q16, int64_t slot) {
    return c->dsp.dot[EMBER_TYPE_F16](j->D, k_row(j, slot), q16) * j->scale;
}

static void attend_f16(const em_cpu *c, const attn_job *j, float *acc, float *out) {
    float *q16 = acc + 2 * j->Dv; /* the query rounded to F16, kept as F32 */
    uint16_t h[64];
    for (int64_t i0 = 0; i0 < j->D; i0 += 64) {
        int64_t n = j->D - i0 < 64 ? j->D - i0 : 64;
        c->dsp.f32_to_f16(n, j->q + i0, h);
        c->dsp.to_f32[EMBER_TYPE_F16](n, h, q16 + i0);
    }
    float m = -INFINITY;
    double l = 0;
    for (int32_t p = 0; p <= j->pos; p++) {
        float s = score_f16(c, j, q16, slot_of(j, p));
        if (s > m) { l *= exp((double)m - s); m = s; }
        l += exp((double)s - m);
    }
    memset(acc, 0, (size_t)j->Dv * sizeof *acc);
    for (int32_t p = 0; p <= j->pos; p++) {
        int64_t slot = slot_of(j, p);
        float prob = (float)(exp((double)score_f16(c, j, q16, slot) - m) / l);
        prob = em_f16_to_f32(em_f32_to_f16(prob));
        c->dsp.axpy_f16(j->Dv, prob, v_row(j, slot), acc);
    }
    memcpy(out, acc, (size_t)j->Dv * sizeof *out);
}

/* Tasks are (token, KV head) pairs dealt round-robin: later tokens of a
 * prompt attend to more positions, so contiguous ranges would load the
 * last thread most. */
static void op_attn(em_cpu *c, em_tensor *t, int ith, int nth) {
    const em_kv *kv = c->graph->kv;
    const em_tensor *q = t->src[0];
    const int32_t *pos = t->src[1]->data, *seq = t->src[2]->data;
    int64_t D = q->ne[0], H = q->ne[1], T = q->ne[2];
    int64_t Dv = t->ne[0] / H, Hkv = kv->k_row / D, group = H / Hkv;
    int64_t ldq = (int64_t)(q->nb[1] / sizeof(float));
    /* heads split rows into whole blocks (8-bit rows: checked at creation) */
    size_t k_head = kv->k_bytes / (size_t)Hkv, v_head = kv->v_bytes / (size_t)Hkv;
    for (int64_t task = ith; task < T * Hkv; task += nth) {
        int64_t tok = task / Hkv, kvh = task % Hkv, h0 = kvh * group;
        attn_job j = {
            kv, t->ip[0],
            (const float *)((const char *)q->data + tok * q->nb[2] + h0 * q->nb[1]),
            kv->tables + (size_t)seq[tok] * kv->blocks_per_seq, pos[tok],
            (size_t)kvh * k_head, (size_t)kvh * v_head, D, Dv, t->fp[0],
        };
        float *out = row_f32(t, tok) + h0 * Dv;
        if (kv->type != EMBER_TYPE_F16) {
            attend(c, &j, group, ldq, c->scratch[ith], out);
            continue;
        }
        for (int64_t g = 0; g < group; g++, j.q += ldq, out += Dv)
            attend_f16(c, &j, c->scratch[ith], out);
    }
}

/* weight types every CPU kernel level has dot and to_f32 for */
static bool weight_type_ok(uint32_t ty) {
    switch (ty) {
    case EMBER_TYPE_F32: case EMBER_TYPE_F16: case EMBER_TYPE_BF16:
    case EMBER_TYPE_Q8_0: case EMBER_TYPE_Q4_0: case EMBER_TYPE_Q4_1:
    case EMBER_TYPE_Q5_0: case EMBER_TYPE_Q5_1:
    case EMBER_TYPE_Q4_K: case EMBER_TYPE_Q5_K: case EMBER_TYPE_Q6_K:
        return true;
    default:
        return false;
    }
}

bool em_cpu_op_supported(const em_tensor *t) {
    switch (t->op) {
    case EM_OP_GET_ROWS:
    case EM_OP_MATMUL: {
        uint32_t ty = t->src[0]->type;
        return weight_type_ok(ty);
    }
    case EM_OP_HEAD_MATMUL:
    case EM_OP_MOE_FFN: {
        uint32_t ty = t->src[t->op == EM_OP_MOE_FFN ? 2 : 0]->type;
        return weight_type_ok(ty);
    }
    case EM_OP_RMS_NORM: case EM_OP_ADD: case EM_OP_MUL: case EM_OP_ROPE:
    case EM_OP_KV_STORE: case EM_OP_ATTN: case EM_OP_SWIGLU: case EM_OP_SOFTMAX:
    case EM_OP_SCALE: case EM_OP_SLICE: case EM_OP_CONCAT: case EM_OP_SIGMOID:
    case EM_OP_MOE_ROUTE:
        return true;
    default:
        return false;
    }
}

size_t em_cpu_op_scratch(const em_tensor *t, const em_kv *kv) {
    switch (t->op) {
    case EM_OP_MATMUL: {
        int64_t K = t->src[0]->ne[0], T = t->src[1]->ne[1];
        size_t gemm = em_cpu_gemm_scratch(T);
        int64_t Tq = T < EM_Q8X_MAX_TOKENS ? T : EM_Q8X_MAX_TOKENS - 1;
        size_t q8x = (q8x_area_bytes(K, Tq) + 3) / 4;
        /* matmul_q8_few: gemm_q8_few's scratch for its token counts */
        size_t few = T < EM_Q8_FEW_MAX_TOKENS ? (EM_Q8_FEW_SCRATCH(K / 32, T) + 3) / 4 : 0;
        size_t most = gemm > q8x ? gemm : q8x;
        most = most > (size_t)K ? most : (size_t)K; /* matmul_bf16's rounded token */
        return most > few ? most : few;
    }
    case EM_OP_ROPE: return (size_t)t->ip[0];
    case EM_OP_ATTN: { /* the larger of attend's and attend_f16's */
        int64_t D = t->src[0]->ne[0], H = t->src[0]->ne[1], Dv = t->ne[0] / H;
        int64_t G = kv ? H / (kv->k_row / D) : H;
        size_t f32 = (size_t)(G * (2 + Dv) + EM_ATTN_CHUNK * (D + Dv));
        size_t f16 = (size_t)(2 * Dv + D);
        return f32 > f16 ? f32 : f16;
    }
    case EM_OP_MOE_FFN: return em_cpu_moe_ffn_scratch(t);
    default: return 0;
    }
}

size_t em_cpu_op_shared(const em_tensor *t) {
    if (t->op == EM_OP_MATMUL) /* the transposed activations */
        return (size_t)t->src[0]->ne[0] * (size_t)em_cpu_gemm_lanes(t->src[1]->ne[1]);
    return t->op == EM_OP_MOE_FFN ? em_cpu_moe_ffn_shared(t) : 0;
}

typedef void (*op_fn)(em_cpu *c, em_tensor *t, int ith, int nth);

void em_cpu_op_run(em_cpu *c, em_tensor *t, int ith, int nth) {
    static const op_fn table[EM_OP_COUNT] = {
        [EM_OP_GET_ROWS] = op_get_rows, [EM_OP_RMS_NORM] = op_rms_norm,
        [EM_OP_MATMUL] = op_matmul,     [EM_OP_ADD] = op_binary,
        [EM_OP_MUL] = op_binary,        [EM_OP_ROPE] = op_rope,
        [EM_OP_KV_STORE] = op_kv_store, [EM_OP_ATTN] = op_attn,
        [EM_OP_SWIGLU] = op_swiglu,     [EM_OP_SOFTMAX] = op_softmax,
        [EM_OP_SCALE] = op_scale,       [EM_OP_SLICE] = op_slice,
        [EM_OP_CONCAT] = op_concat,     [EM_OP_HEAD_MATMUL] = op_head_matmul,
        [EM_OP_SIGMOID] = op_sigmoid,   [EM_OP_MOE_ROUTE] = em_cpu_moe_route,
        [EM_OP_MOE_FFN] = em_cpu_moe_ffn,
    };
    if (t->op > EM_OP_NONE && t->op < EM_OP_COUNT && table[t->op]) table[t->op](c, t, ith, nth);
}
