#version 450
// y[t][n] = sum_k W[n][k] x[t][k] for one weight type (constant 0), for
// few tokens (decode): one workgroup per weight row, its 128 invocations
// striding over the row so that neighbours read neighbouring words of the
// weights and of x (coalesced), for up to TB tokens at once (the row is
// read once per TB tokens); sums meet in subgroup reductions, then across
// subgroups in shared memory. A workgroup per row rather than a subgroup:
// a decode step's rows are few (256 for a GQA K projection), and each must
// be split for enough loads to be in flight to use the memory's bandwidth.
// Grid: x (and z past 32768) rows, y groups of TB tokens. Needs subgroup
// arithmetic; devices without it use matmul.comp.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"

layout(local_size_x = 128) in;
layout(constant_id = 0) const uint TYPE = 0;
layout(binding = 0) readonly buffer Wb { uint w[]; };
layout(binding = 1) readonly buffer Xb { float x[]; };
layout(binding = 3) writeonly buffer Yb { float y[]; };
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint K, N, row_bytes, ldx, ldy, T;
} p;

#define WOFF p.o0
layout(constant_id = 1) const uint TB = 8u; // tokens per pass: 8, or 1 for decode

// the 32-bit word of a block's bytes starting at byte `a` (a even): a whole
// word, or the halves of two
uint word_at(uint a) {
    uint i = WOFF + (a >> 2);
    return (a & 2u) == 0u ? w[i] : (w[i] >> 16) | (w[i + 1u] << 16);
}

// x[t][k..k+3] . the 4 signed bytes of q
float dot_s8(uint q, uint xk) {
    int v = int(q);
    return float(bitfieldExtract(v, 0, 8)) * x[xk] + float(bitfieldExtract(v, 8, 8)) * x[xk + 1u] +
           float(bitfieldExtract(v, 16, 8)) * x[xk + 2u] + float(bitfieldExtract(v, 24, 8)) * x[xk + 3u];
}

// x[t][k..k+3] . the low nibbles of q minus 8, and x[t][k+16..k+19] . the high ones
float dot_q4(uint q, uint xk) {
    float s = 0.0;
    for (uint c = 0u; c < 4u; c++) {
        uint v = q >> (8u * c);
        s += float(int(v & 15u) - 8) * x[xk + c] + float(int((v >> 4) & 15u) - 8) * x[xk + c + 16u];
    }
    return s;
}

shared float part[TB][128];

void main() {
    uint t0 = gl_WorkGroupID.y * TB;
    uint nt = min(TB, p.T - t0);
    uint xb0 = p.o1 + t0 * p.ldx;
    uint tid = gl_LocalInvocationID.x;
    uint n = gl_WorkGroupID.x + gl_WorkGroupID.z * 32768u;
    if (n >= p.N) return; // whole workgroup: uniform
    // one sum per token, in registers (TB is a constant: the loops over t
    // unroll and every index is known)
    float acc[TB];
    [[unroll]] for (uint t = 0u; t < TB; t++) acc[t] = 0.0;
    uint row = n * p.row_bytes;
    if (TYPE == TY_F32) {
        for (uint k = tid; k < p.K; k += 128u) {
            float wv = uintBitsToFloat(w[WOFF + row / 4u + k]);
            [[unroll]] for (uint t = 0u; t < TB; t++)
                if (t < nt) acc[t] += wv * x[xb0 + t * p.ldx + k];
        }
    } else if (TYPE == TY_F16) { // K even (the host checks): whole words
        for (uint k2 = tid; k2 < p.K / 2u; k2 += 128u) {
            vec2 h = unpackHalf2x16(w[WOFF + row / 4u + k2]);
            [[unroll]] for (uint t = 0u; t < TB; t++) {
                uint xk = xb0 + t * p.ldx + 2u * k2;
                if (t < nt) acc[t] += h.x * x[xk] + h.y * x[xk + 1u];
            }
        }
    } else if (TYPE == TY_Q8_0) { // u: the row's 4-byte groups of quants
        for (uint u = tid; u < p.K / 4u; u += 128u) {
            uint off = row + (u >> 3) * 34u;
            float d = HALF_AT(off);
            uint q = word_at(off + 2u + 4u * (u & 7u));
            [[unroll]] for (uint t = 0u; t < TB; t++)
                if (t < nt) acc[t] += d * dot_s8(q, xb0 + t * p.ldx + 4u * u);
        }
    } else if (TYPE == TY_Q4_0) { // u: the row's 4-byte groups of nibbles
        for (uint u = tid; u < p.K / 8u; u += 128u) {
            uint off = row + (u >> 2) * 18u;
            float d = HALF_AT(off);
            uint q = word_at(off + 2u + 4u * (u & 3u));
            uint k = (u >> 2) * 32u + 4u * (u & 3u);
            [[unroll]] for (uint t = 0u; t < TB; t++)
                if (t < nt) acc[t] += d * dot_q4(q, xb0 + t * p.ldx + k);
        }
    }
    // subgroups first, then across them in shared memory
    [[unroll]] for (uint t = 0u; t < TB; t++) {
        float s = subgroupAdd(acc[t]);
        if (subgroupElect()) part[t][gl_SubgroupID] = s;
    }
    barrier();
    if (tid < TB && tid < nt) {
        float s = 0.0;
        for (uint i = 0u; i < gl_NumSubgroups; i++) s += part[tid][i];
        y[p.o3 + (t0 + tid) * p.ldy + n] = s;
    }
}
