#version 450
// y[t][n] = sum_k W[n][k] x[t][k] with x rounded to 8 bits (act_type
// Q8_0; quant_act.comp wrote it at binding 1) and integer dot products of
// four int8 pairs: mul_mv.comp's work for block-quantized weights (same
// constants, rows per workgroup, MODE folds and reduction), with a
// quarter of its loads of x and none of its per-weight float arithmetic.
// Each invocation takes one block of 32 weights per step:
//   Q8_0: sum_j w_j x_j = dw dx sum q_j xq_j;
//   Q4_0: dw dx (sum q_j xq_j - 8 sum xq_j), the nibbles dotted unsigned;
//   unpacked types (unpacked.glsl), per half h of 16:
//         dx (a_h sum q_j xq_j + (c_h - UO a_h) sum xq_j).
// EPI (constant 4) folds the next op's 8-bit rounding into the product,
// done by its last workgroups (an atomic count at binding 4, word `co`,
// left at zero for the next run; y is coherent so they read what the
// others wrote):
//   1 (with MODE 2): y rounded to 8 bits (quant_act.comp's layout and
//     rule) into binding 5 at word `qo`, meta at `qo + qm`: each block of
//     32 rows by the last of its workgroups (a count per block), so the
//     SwiGLU's output needs no quant_act dispatch;
//   2 (with MODE 1): y is the residual stream and its RMS norm (weight at
//     binding 6 word `go`) is wanted only rounded to 8 bits: the same per
//     block, of y * g, with no 1 / rms and the block's d left in F32, and
//     each block's sum of y^2 after the meta (word qo + qm + 2 T N/32 +
//     t N/32 + b). The norm needs no dispatch of its own and no workgroup
//     waits for all the others: its readers apply 1 / rms (XN below).
//     N a multiple of 32 for both.
// Each fold takes a barrier level away. A tail that waited for the
// product's last workgroup, to sum the squares before rounding, cost
// about what the norm's own dispatch did on the H100 (docs/performance.md,
// sessions 17 and 21).
// XN (push word): x is such a norm's 8-bit copy. Each subgroup first adds
// the blocks' sums of squares (all subgroups in the same order, so every
// workgroup gets the same scale), then takes each block's d as
// f16(d * 1 / sqrt(ss / K + xeps)): the scale the norm's own rounding
// would have stored. The quants of y g and of y g / rms are the same but
// where a value lies within float rounding of a tie, so the products agree
// with the norm's dispatch to float order (tests/test_vulkan_ops.c).
// IDOT (a build define, not a constant: the instruction needs a device
// capability): 1 uses SPV_KHR_integer_dot_product's OpSDot, written
// through GL_EXT_spirv_intrinsics (this glslang has no GLSL built-in for
// it); 0 does the same sums with shifts and multiplies, for devices
// without VK_KHR_shader_integer_dot_product.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_EXT_control_flow_attributes : require
#if IDOT
#extension GL_EXT_spirv_intrinsics : require
#endif
#include "common.glsl"

layout(local_size_x = 128, local_size_x_id = 7) in; // WGS, 128 unless specialized
layout(constant_id = 0) const uint TYPE = 0;
layout(constant_id = 1) const uint TB = 8u;
layout(constant_id = 2) const uint TPR = 32u;
layout(constant_id = 3) const uint MODE = 0u;
layout(constant_id = 4) const uint EPI = 0u;
const uint WGS = gl_WorkGroupSize.x;
const uint RPW = WGS / TPR; // rows per workgroup
// OWN: a workgroup holds whole blocks of 32 rows (WGS 32 TPR: the one-token
// EPI variants) and rounds them itself from shared memory, with no count,
// fence or second read of y: on the H100 llama-3b Q8_0 decode ~339 -> ~360
// tokens/s with the io buffer's move to device memory, which alone measured
// even (docs/performance.md, session 22), though the products' 1024
// invocations per workgroup fill only N / 32 SMs. Else the counts below.
// Two or more rows per invocation (x loaded once for them) lost 3-33%.
const bool OWN = RPW % 32u == 0u;

layout(binding = 0) readonly buffer Wb { uint w[]; };
layout(binding = 0) readonly buffer W4b { uvec4 w4[]; };
layout(binding = 1) readonly buffer Xb { uint xw[]; };
layout(binding = 1) readonly buffer X4b { uvec4 xw4[]; };
layout(binding = 2) readonly buffer Rb { float r[]; };
layout(binding = 2) readonly buffer Ub { uint u[]; };
layout(binding = 2) readonly buffer U4b { uvec4 u4[]; };
layout(binding = 3) coherent buffer Yb { float y[]; };
layout(binding = 4) coherent buffer Cb { uint cnt[]; };
layout(binding = 5) writeonly buffer Qb { uint qo[]; };
layout(binding = 6) readonly buffer Gb { float g[]; };
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint K, N, soff, ldy, ldr, T, xm; // xm: the x meta's word offset from o1
    uint co, qo, qm, go; // EPI: words in bindings 4, 5 (quants; meta at qo + qm), 6
    uint xn; // x is a norm's unscaled 8-bit copy (EPI 2 above), its eps:
    float xeps;
} p;
#include "unpacked.glsl"

#if IDOT
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018],
                  id = 4450) // OpSDot; capabilities DotProduct, DotProductInput4x8BitPacked
int sdot_packed(uint a, uint b, spirv_literal int format); // format 0: PackedVectorFormat4x8Bit
int dot4(uint a, uint b) { return sdot_packed(a, b, 0); }
#else
int dot4(uint a, uint b) {
    ivec4 x = ivec4(uvec4(a) << uvec4(24u, 16u, 8u, 0u)) >> 24;
    ivec4 y = ivec4(uvec4(b) << uvec4(24u, 16u, 8u, 0u)) >> 24;
    return x.x * y.x + x.y * y.y + x.z * y.z + x.w * y.w;
}
#endif
int dot16(uvec4 a, uvec4 b) { return dot4(a.x, b.x) + dot4(a.y, b.y) + dot4(a.z, b.z) + dot4(a.w, b.w); }

uint xq4, nbk, nt, t0; // this pass: x quants (uvec4 index of token t0), blocks per row, tokens
float xs[TB];          // XN: each token's 1 / rms

// token t's block b of x: the two uvec4 of quants and (d, half sums)
#define XQ(t, b, X0, X1) X0 = xw4[xq4 + (t) * (p.K / 16u) + 2u * (b)], X1 = xw4[xq4 + (t) * (p.K / 16u) + 2u * (b) + 1u]
vec3 xmeta(uint t, uint b) {
    uint m = p.o1 + p.xm + ((t0 + t) * nbk + b) * 2u;
    uint s = xw[m + 1u];
    float d = uintBitsToFloat(xw[m]);
    if (p.xn != 0u) d = f16_rne(d * xs[t]);
    return vec3(d, float(int(s << 16) >> 16), float(int(s) >> 16));
}

// acc[t] += row n's block b of the weights in BUF/BUF4 (word offset BOFF)
// times each token's block b of x
#define BLOCK_DOT(BUF, BUF4, BOFF, b, ACC)                                                    \
    {                                                                                         \
        if (TYPE == TY_Q8_0 || TYPE == TY_Q4_0) {                                             \
            uint e = n * nbk + (b);                                                           \
            float dw = unpackHalf2x16(BUF[(BOFF) + p.soff + e / 2u] >> (16u * (e & 1u))).x;  \
            uvec4 q0, q1;                                                                     \
            if (TYPE == TY_Q8_0) {                                                            \
                q0 = BUF4[(BOFF) / 4u + 2u * e], q1 = BUF4[(BOFF) / 4u + 2u * e + 1u];        \
            } else {                                                                          \
                uvec4 v = BUF4[(BOFF) / 4u + e];                                              \
                q0 = v & 0x0f0f0f0fu, q1 = (v >> 4u) & 0x0f0f0f0fu;                           \
            }                                                                                 \
            [[unroll]] for (uint t = 0u; t < TB; t++)                                         \
                if (t < nt) {                                                                 \
                    uvec4 x0, x1;                                                             \
                    XQ(t, b, x0, x1);                                                         \
                    vec3 m = xmeta(t, b);                                                     \
                    int s = dot16(q0, x0) + dot16(q1, x1);                                    \
                    float o = TYPE == TY_Q4_0 ? 8.0 * (m.y + m.z) : 0.0;                      \
                    ACC[t] += dw * m.x * (float(s) - o);                                      \
                }                                                                             \
        } else {                                                                              \
            vec2 a, c;                                                                        \
            uint q[8];                                                                        \
            UBLOCK(BUF, BUF4, BOFF, (BOFF) + p.soff, n * nbk + (b), a, c, q)                 \
            uvec4 q0 = uvec4(q[0], q[1], q[2], q[3]), q1 = uvec4(q[4], q[5], q[6], q[7]);     \
            [[unroll]] for (uint t = 0u; t < TB; t++)                                         \
                if (t < nt) {                                                                 \
                    uvec4 x0, x1;                                                             \
                    XQ(t, b, x0, x1);                                                         \
                    vec3 m = xmeta(t, b);                                                     \
                    float lo = float(dot16(q0, x0)), hi = float(dot16(q1, x1));               \
                    ACC[t] += m.x * (a.x * lo + (c.x - UO * a.x) * m.y +                      \
                                     a.y * hi + (c.y - UO * a.y) * m.z);                      \
                }                                                                             \
        }                                                                                     \
    }

#define ROW_DOT(BUF, BUF4, BOFF, ACC)                                                         \
    for (uint b = l; b < nbk; b += TPR) BLOCK_DOT(BUF, BUF4, BOFF, b, ACC)

shared float part[2][TB][WGS]; // per subgroup: the sums of W x (and U x)
shared float ys[OWN ? TB * RPW : 1u]; // OWN: the workgroup's y, by token
shared bool last_group;

uint n, l, r0; // r0: the workgroup's first row

// token t's block b of y (times g for EPI 2) rounded to 8 bits into
// binding 5 (quant_act.comp's layout); EPI 2 its sum of squares too
void round_block(uint t, uint b) {
    vec4 v[8], gv[8];
    uint yb = p.o3 + t * p.ldy + b * 32u, gb = p.go + b * 32u;
    uint sb = (t - t0) * RPW + b * 32u - r0; // OWN: the block in ys
    [[unroll]] for (uint i = 0u; i < 8u; i++) { // every load issued before the first use
        if (OWN)
            v[i] = vec4(ys[sb + 4u * i], ys[sb + 4u * i + 1u], ys[sb + 4u * i + 2u], ys[sb + 4u * i + 3u]);
        else
            v[i] = vec4(y[yb + 4u * i], y[yb + 4u * i + 1u], y[yb + 4u * i + 2u], y[yb + 4u * i + 3u]);
        if (EPI == 2u)
            gv[i] = vec4(g[gb + 4u * i], g[gb + 4u * i + 1u], g[gb + 4u * i + 2u], g[gb + 4u * i + 3u]);
    }
    uint nb = p.N / 32u;
    if (EPI == 2u) {
        float ss = 0.0;
        [[unroll]] for (uint i = 0u; i < 8u; i++) ss += dot(v[i], v[i]);
        qo[p.qo + p.qm + 2u * p.T * nb + t * nb + b] = floatBitsToUint(ss);
        [[unroll]] for (uint i = 0u; i < 8u; i++) v[i] = v[i] * gv[i];
    }
    uint w[8], d, sums;
    if (EPI == 2u) q8_round_block_f32(v, w, d, sums);
    else q8_round_block(v, w, d, sums);
    uint qb = p.qo + t * (p.N / 4u) + b * 8u;
    [[unroll]] for (uint i = 0u; i < 8u; i++) qo[qb + i] = w[i];
    uint m = p.qo + p.qm + (t * nb + b) * 2u;
    qo[m] = d;
    qo[m + 1u] = sums;
}

// EPI 1 and 2: the block of 32 rows this workgroup's rows lie in, by the
// last of its workgroups to finish, one invocation per token; OWN: this
// workgroup's blocks, one invocation per block and token
void epilogue_blocks(uint tid, uint wg) {
    if (OWN) {
        barrier(); // ys written
        for (uint j = tid; j < RPW / 32u * nt; j += WGS) {
            uint b = r0 / 32u + j % (RPW / 32u);
            if (b * 32u < p.N) round_block(t0 + j / (RPW / 32u), b);
        }
        return;
    }
    uint b = wg * RPW / 32u, c = p.co + gl_WorkGroupID.y * (p.N / 32u) + b;
    if (wg * RPW >= p.N) return; // a workgroup of the grid's excess (fold)
    if (tid == 0u) {
        last_group = atomicAdd(cnt[c], RPW) + RPW == 32u;
        if (last_group) cnt[c] = 0u;
    }
    barrier();
    if (!last_group) return;
    memoryBarrierBuffer();
    if (tid < nt) round_block(t0 + tid, b);
}

void main() {
    uint tid = gl_LocalInvocationID.x, rr = tid / TPR;
    l = tid % TPR;
    uint wg = gl_WorkGroupID.x + gl_WorkGroupID.z * 32768u;
    r0 = wg * RPW;
    n = r0 + rr;
    t0 = gl_WorkGroupID.y * TB;
    nt = min(TB, p.T - t0);
    nbk = p.K / 32u;
    xq4 = (p.o1 + t0 * (p.K / 4u)) / 4u;
    float acc[TB], acc2[TB];
    [[unroll]] for (uint t = 0u; t < TB; t++) acc[t] = 0.0, acc2[t] = 0.0, xs[t] = 1.0;
    if (p.xn != 0u)
        [[unroll]] for (uint t = 0u; t < TB; t++) {
            float ss = 0.0;
            if (t < nt)
                for (uint b = gl_SubgroupInvocationID; b < nbk; b += gl_SubgroupSize)
                    ss += uintBitsToFloat(xw[p.o1 + p.xm + 2u * p.T * nbk + (t0 + t) * nbk + b]);
            xs[t] = 1.0 / sqrt(subgroupAdd(ss) / float(p.K) + p.xeps);
        }
    if (n < p.N) { // not returning: every invocation reaches the barrier
        ROW_DOT(w, w4, p.o0, acc)
        if (MODE == 2u) { ROW_DOT(u, u4, p.o2, acc2) }
    }
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
        uint t = t0 + l;
        if (MODE == 1u) s += r[p.o2 + t * p.ldr + n];
        if (MODE == 2u) s = s / (1.0 + exp(-s)) * s2;
        y[p.o3 + t * p.ldy + n] = s;
        if (OWN && EPI != 0u) ys[l * RPW + rr] = s;
    }
    if (EPI == 0u) return;
    if (!OWN) {
        memoryBarrierBuffer();
        barrier();
    }
    epilogue_blocks(tid, wg);
}
