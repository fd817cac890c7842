#version 450
// y[t][n] = sum_k W[n][k] x[t][k] for few tokens (decode and small
// batches), one weight type (constant 0). Each row is read by TPR
// invocations (constant 2; a multiple of the subgroup size) taking 16
// bytes of weights at a time, so a subgroup reads whole cache lines of
// the row and many loads are in flight; 128 / TPR rows per workgroup. Up
// to TB tokens (constant 1) per pass share each weight load. Quantized
// weights are in the device layout (common.glsl): quants apart from the
// scales, so 16-byte loads are aligned.
//
// MODE (constant 3) folds the op that follows the product into it, saving
// a dispatch and a barrier per use (backends/vulkan/ops.c finds them):
//   0: y = W x;  1: y = W x + r (binding 2, a residual);
//   2: y = silu(W x) * (U x) with U at binding 2 (a SwiGLU's gate and up).
// Host checks: K a multiple of 4 (F32), 8 (F16) or 32 (blocks); x rows
// 16-byte aligned. The unpacked types (unpacked.glsl) take a block of 32
// per invocation and step instead of a 16-byte load.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"

layout(local_size_x = 128) in;
layout(constant_id = 0) const uint TYPE = 0;
layout(constant_id = 1) const uint TB = 8u;
layout(constant_id = 2) const uint TPR = 32u;
layout(constant_id = 3) const uint MODE = 0u;
// NORM = 1 (with MODE 0): x is an RMS norm's input and binding 2 its
// weight g; the product is W (x g) scaled by 1 / sqrt(mean(x^2) + eps),
// each workgroup summing x^2 itself, so the norm needs no dispatch of its
// own (backends/vulkan/ops.c plan_fusion).
layout(constant_id = 4) const uint NORM = 0u;
// ID = 1: a mixture of experts' products (EM_OP_MOE_FFN). Binding 0 (and
// U at binding 2 for MODE 2) holds E experts' matrices of N rows, one
// after another; binding 4 the route, per token 2 NU floats (the chosen
// experts' weights, then their ids). Workgroup row y is expert e: it
// collects the (token, slot) pairs routed to e, CHUNK pairs of the T NU
// at a time, and computes y[pair] = W_e x[row] for TB of them per pass,
// so each expert's rows are read once per TB pairs routed to it. x's row
// is the pair's token (XPAIR 0: the gate and up products) or the pair
// itself (XPAIR 1: the down product reads the SwiGLU's rows). With few
// pairs (DIRECT 1: decode) workgroup row y is pair y instead, and reads
// its expert's rows alone: no workgroup of an idle expert, no search.
// DIRECT 2 is a product per head (EM_OP_HEAD_MATMUL, MLA): no route;
// "expert" e is head e of NU heads, its pairs the tokens' rows t NU + e,
// and its matrix starts MSTRIDE rows after head e - 1's.
layout(constant_id = 5) const uint ID = 0u;
const uint RPW = 128u / TPR;
const uint CHUNK = 1024u;

layout(binding = 0) readonly buffer Wb { uint w[]; };
layout(binding = 0) readonly buffer W4b { uvec4 w4[]; };
layout(binding = 1) readonly buffer Xb { vec4 x4[]; };
layout(binding = 2) readonly buffer Rb { float r[]; };
layout(binding = 2) readonly buffer Ub { uint u[]; };
layout(binding = 2) readonly buffer U4b { uvec4 u4[]; };
layout(binding = 2) readonly buffer G4b { vec4 g4[]; };
layout(binding = 3) writeonly buffer Yb { float y[]; };
layout(binding = 4) readonly buffer RTb { float route[]; };
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint K, N, soff, ldx, ldy, ldr, T; // soff: the scales' word offset; ld*: floats
    float eps;                         // NORM's
    uint ro, nu, xpair, direct;        // ID's: route word offset, slots per token, XPAIR, DIRECT
    uint mstride;                      // ID's: rows from one matrix to the next
} p;
#include "unpacked.glsl"

// the 4 signed bytes of q as floats
vec4 s8x4(uint q) { return vec4(ivec4(uvec4(q) << uvec4(24u, 16u, 8u, 0u)) >> 24); }
// nibbles of q: the low ones (shift 0) or the high ones (shift 4), minus 8
vec4 q4x4(uint q, uint sh) { return vec4((uvec4(q) >> (uvec4(0u, 8u, 16u, 24u) + sh)) & 15u) - 8.0; }

// this pass's x: word offset (in vec4s) and row stride, tokens in it;
// ID: each token's row (in vec4s) and the pass's first pair in `pairs`
uint xb, ldx4, nt, xrow[TB], k0;
#define XR(t) (ID == 1u ? xrow[t] : xb + (t) * ldx4)
#define X4(t, c) (NORM == 1u ? x4[XR(t) + (c)] * g4[p.o2 / 4u + (c)] : x4[XR(t) + (c)])

// acc[t] += the products of one 16-byte load q at load index c of the
// row (its element offset depends on the type) and its block scale d
void acc_load(uvec4 q, float d, uint c, inout float acc[TB]) {
    if (TYPE == TY_F32) {
        vec4 wv = uintBitsToFloat(q);
        [[unroll]] for (uint t = 0u; t < TB; t++)
            if (t < nt) acc[t] += dot(wv, X4(t, c));
    } else if (TYPE == TY_F16) {
        vec4 lo = vec4(unpackHalf2x16(q.x), unpackHalf2x16(q.y));
        vec4 hi = vec4(unpackHalf2x16(q.z), unpackHalf2x16(q.w));
        [[unroll]] for (uint t = 0u; t < TB; t++)
            if (t < nt) acc[t] += dot(lo, X4(t, 2u * c)) + dot(hi, X4(t, 2u * c + 1u));
    } else if (TYPE == TY_Q8_0) { // c: half blocks of 16 quants
        vec4 q0 = s8x4(q.x), q1 = s8x4(q.y), q2 = s8x4(q.z), q3 = s8x4(q.w);
        [[unroll]] for (uint t = 0u; t < TB; t++)
            if (t < nt)
                acc[t] += d * (dot(q0, X4(t, 4u * c)) + dot(q1, X4(t, 4u * c + 1u)) +
                               dot(q2, X4(t, 4u * c + 2u)) + dot(q3, X4(t, 4u * c + 3u)));
    } else { // Q4_0; c: blocks of 32
        vec4 l0 = q4x4(q.x, 0u), l1 = q4x4(q.y, 0u), l2 = q4x4(q.z, 0u), l3 = q4x4(q.w, 0u);
        vec4 h0 = q4x4(q.x, 4u), h1 = q4x4(q.y, 4u), h2 = q4x4(q.z, 4u), h3 = q4x4(q.w, 4u);
        uint k = 8u * c;
        [[unroll]] for (uint t = 0u; t < TB; t++)
            if (t < nt)
                acc[t] += d * (dot(l0, X4(t, k)) + dot(l1, X4(t, k + 1u)) + dot(l2, X4(t, k + 2u)) +
                               dot(l3, X4(t, k + 3u)) + dot(h0, X4(t, k + 4u)) +
                               dot(h1, X4(t, k + 5u)) + dot(h2, X4(t, k + 6u)) +
                               dot(h3, X4(t, k + 7u)));
    }
}

// 16-byte loads per row, and loads per block scale
const uint LOADS_PER_4K = TYPE == TY_F32 ? 4u : TYPE == TY_F16 ? 2u : TYPE == TY_Q8_0 ? 1u : 0u;
uint loads_per_row() { return TYPE == TY_Q4_0 ? p.K / 32u : p.K * LOADS_PER_4K / 16u; }
const uint LOADS_PER_BLOCK = TYPE == TY_Q8_0 ? 2u : 1u;

// acc[t] += row n of the weights whose uvec4 and uint views are BUF4 and
// BUF (word offset BOFF), two loads per invocation in flight per step
#define ROW_DOT(BUF4, BUF, BOFF, ACC)                                                       \
    {                                                                                        \
        uint lim = loads_per_row(), base = (BOFF) / 4u + wn * lim;                          \
        uint b0 = wn * (lim / LOADS_PER_BLOCK), sw = (BOFF) + p.soff;                       \
        for (uint c0 = l; c0 < lim; c0 += 2u * TPR) {                                        \
            uint c1 = c0 + TPR;                                                              \
            bool two = c1 < lim;                                                             \
            uvec4 q0 = BUF4[base + c0], q1 = two ? BUF4[base + c1] : uvec4(0u);              \
            float d0 = 1.0, d1 = 1.0;                                                        \
            if (TYPE == TY_Q8_0 || TYPE == TY_Q4_0) {                                        \
                uint e0 = b0 + c0 / LOADS_PER_BLOCK, e1 = b0 + c1 / LOADS_PER_BLOCK;         \
                d0 = unpackHalf2x16(BUF[sw + e0 / 2u] >> (16u * (e0 & 1u))).x;               \
                if (two) d1 = unpackHalf2x16(BUF[sw + e1 / 2u] >> (16u * (e1 & 1u))).x;      \
            }                                                                                \
            acc_load(q0, d0, c0, ACC);                                                       \
            if (two) acc_load(q1, d1, c1, ACC);                                              \
        }                                                                                    \
    }

// The same for the unpacked types (unpacked.glsl): a block of 32 per
// invocation and step, decoded once for all tokens of the pass.
#define ROW_DOT_U(BUF, BUF4, BOFF, ACC)                                                           \
    {                                                                                        \
        uint nbk = p.K / 32u;                                                                \
        for (uint bl = l; bl < nbk; bl += TPR) {                                             \
            vec2 a, c;                                                                       \
            uint q[8];                                                                       \
            UBLOCK(BUF, BUF4, BOFF, (BOFF) + p.soff, wn * nbk + bl, a, c, q)                \
            vec4 q0 = u8x4(q[0]), q1 = u8x4(q[1]), q2 = u8x4(q[2]), q3 = u8x4(q[3]);         \
            vec4 q4 = u8x4(q[4]), q5 = u8x4(q[5]), q6 = u8x4(q[6]), q7 = u8x4(q[7]);         \
            [[unroll]] for (uint t = 0u; t < TB; t++)                                        \
                if (t < nt) {                                                                \
                    uint k = 8u * bl;                                                        \
                    vec4 x0 = X4(t, k), x1 = X4(t, k + 1u), x2 = X4(t, k + 2u),              \
                         x3 = X4(t, k + 3u), x4_ = X4(t, k + 4u), x5 = X4(t, k + 5u),        \
                         x6 = X4(t, k + 6u), x7 = X4(t, k + 7u);                             \
                    float lo = dot(q0, x0) + dot(q1, x1) + dot(q2, x2) + dot(q3, x3);        \
                    float hi = dot(q4, x4_) + dot(q5, x5) + dot(q6, x6) + dot(q7, x7);       \
                    vec4 one = vec4(1.0);                                                    \
                    float slo = dot(x0 + x1 + x2 + x3, one), shi = dot(x4_ + x5 + x6 + x7, one); \
                    ACC[t] += a.x * lo + (c.x - UO * a.x) * slo + a.y * hi + (c.y - UO * a.y) * shi; \
                }                                                                            \
        }                                                                                    \
    }

shared float part[2][TB][128]; // per subgroup: the sums of W x (and U x)

// NORM: 1 / sqrt(mean(x_t^2) + eps) for the pass's tokens, summed by the
// whole workgroup (part[0] holds the subgroups' shares, then is free again)
void norm_scales(uint tid, out float sc[TB]) {
    [[unroll]] for (uint t = 0u; t < TB; t++) {
        float ss = 0.0;
        if (t < nt) {
            // the first 4096 elements in one unrolled batch: all their loads
            // in flight at once (a strided loop took a trip to memory per
            // step and made the fold cost more than the norm's dispatch)
            [[unroll]] for (uint j = 0u; j < 8u; j++) {
                uint c = tid + 128u * j;
                vec4 v = c < p.K / 4u ? x4[xb + t * ldx4 + c] : vec4(0.0);
                ss += dot(v, v);
            }
            for (uint c = tid + 1024u; c < p.K / 4u; c += 128u) {
                vec4 v = x4[xb + t * ldx4 + c];
                ss += dot(v, v);
            }
        }
        ss = subgroupAdd(ss);
        if (subgroupElect()) part[0][t][gl_SubgroupID] = ss;
    }
    barrier();
    [[unroll]] for (uint t = 0u; t < TB; t++) {
        float ss = 0.0;
        for (uint i = 0u; i < gl_NumSubgroups; i++) ss += part[0][t][i];
        sc[t] = 1.0 / sqrt(ss / float(p.K) + p.eps);
    }
    barrier();
}

shared uint pairs[ID == 1u ? CHUNK : 1u];
shared uint n_pairs;

// Row n of y (weight row wn) for the pass's nt tokens: the products, the
// folded op, and the write of y's row t0 + l (ID: of pair pairs[k0 + l]).
void pass(uint n, uint wn, uint tid, uint l, uint rr, uint t0) {
    float acc[TB], acc2[TB], nsc[TB];
    [[unroll]] for (uint t = 0u; t < TB; t++) acc[t] = 0.0, acc2[t] = 0.0, nsc[t] = 1.0;
    if (NORM == 1u) norm_scales(tid, nsc);
    if (n < p.N && UNPACKED(TYPE)) { // not returning: every invocation reaches the barrier
        ROW_DOT_U(w, w4, p.o0, acc)
        if (MODE == 2u) { ROW_DOT_U(u, u4, p.o2, acc2) }
    } else if (n < p.N) {
        ROW_DOT(w4, w, p.o0, acc)
        if (MODE == 2u) { ROW_DOT(u4, u, p.o2, acc2) }
    }
    // subgroups, then the subgroups of a row (TPR / subgroup size of them)
    [[unroll]] for (uint t = 0u; t < TB; t++) {
        float s = subgroupAdd(acc[t]);
        float s2 = MODE == 2u ? subgroupAdd(acc2[t]) : 0.0;
        if (subgroupElect()) part[0][t][gl_SubgroupID] = s, part[1][t][gl_SubgroupID] = s2;
    }
    barrier();
    uint spr = TPR / gl_SubgroupSize, first = rr * spr;
    if (n < p.N && l < nt) {
        float s = 0.0, s2 = 0.0;
        for (uint i = 0u; i < spr; i++) s += part[0][l][first + i], s2 += part[1][l][first + i];
        uint t = ID == 1u ? pairs[k0 + l] : t0 + l;
        if (NORM == 1u) s *= nsc[l];
        if (MODE == 1u) s += r[p.o2 + t * p.ldr + n];
        if (MODE == 2u) s = s / (1.0 + exp(-s)) * s2;
        y[p.o3 + t * p.ldy + n] = s;
    }
    if (ID == 1u) barrier(); // part is read before the next pass writes it
}

void main() {
    uint tid = gl_LocalInvocationID.x, l = tid % TPR, rr = tid / TPR;
    uint wg = gl_WorkGroupID.x + gl_WorkGroupID.z * 32768u;
    uint n = wg * RPW + rr;
    ldx4 = p.ldx / 4u;
    if (ID == 0u) {
        uint t0 = gl_WorkGroupID.y * TB;
        nt = min(TB, p.T - t0);
        xb = p.o1 / 4u + t0 * ldx4;
        pass(n, n, tid, l, rr, t0);
        return;
    }
    if (p.direct == 1u) {
        uint pr = gl_WorkGroupID.y, tok = pr / p.nu;
        uint e = uint(route[p.ro + tok * 2u * p.nu + p.nu + pr % p.nu]);
        if (tid == 0u) pairs[0] = pr;
        barrier();
        k0 = 0u, nt = 1u;
        [[unroll]] for (uint t = 0u; t < TB; t++)
            xrow[t] = p.o1 / 4u + (p.xpair == 1u ? pr : tok) * ldx4;
        pass(n, n + e * p.mstride, tid, l, rr, 0u);
        return;
    }
    uint e = gl_WorkGroupID.y, np = p.direct == 2u ? p.T : p.T * p.nu;
    for (uint c0 = 0u; c0 < np; c0 += CHUNK) {
        if (tid == 0u) n_pairs = p.direct == 2u ? min(CHUNK, np - c0) : 0u;
        barrier();
        for (uint i = tid; i < CHUNK && c0 + i < np; i += 128u) {
            uint pr = c0 + i, tok = pr / p.nu;
            if (p.direct == 2u) pairs[i] = pr * p.nu + e; // token c0 + i's row of head e
            else if (uint(route[p.ro + tok * 2u * p.nu + p.nu + pr % p.nu]) == e)
                pairs[atomicAdd(n_pairs, 1u)] = pr;
        }
        barrier();
        uint cnt = n_pairs;
        for (k0 = 0u; k0 < cnt; k0 += TB) {
            nt = min(TB, cnt - k0);
            [[unroll]] for (uint t = 0u; t < TB; t++) {
                uint pr = pairs[k0 + min(t, nt - 1u)];
                xrow[t] = p.o1 / 4u + (p.xpair == 1u ? pr : pr / p.nu) * ldx4;
            }
            pass(n, n + e * p.mstride, tid, l, rr, 0u);
        }
        barrier(); // pairs and n_pairs are read before the next chunk
    }
}
