#version 450
// y[t][n] = sum_k W[n][k] x[t][k] for one weight type (constant 0), for
// few tokens (decode): each subgroup takes one weight row at a time, its
// invocations stride over the row (by elements, or by blocks of 32 for
// quantized types) for up to TB tokens at once, so the row is read once
// per TB tokens, and the sums meet in a subgroup reduction: no shared
// memory, no barriers. A workgroup covers `rpw` rows (the host sets it
// from the device's subgroup size; the loop covers them whatever the
// subgroups turn out to be). Grid: x (and z past 32768) row groups, y
// groups of TB tokens. Needs subgroup arithmetic; devices without it use
// matmul.comp.
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
    uint K, N, row_bytes, ldx, ldy, T, rpw;
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

void main() {
    uint t0 = gl_WorkGroupID.y * TB;
    uint nt = min(TB, p.T - t0);
    uint xb0 = p.o1 + t0 * p.ldx;
    uint lane = gl_SubgroupInvocationID, ns = gl_SubgroupSize;
    uint first = (gl_WorkGroupID.x + gl_WorkGroupID.z * 32768u) * p.rpw;
    uint last = min(first + p.rpw, p.N);
    for (uint n = first + gl_SubgroupID; n < last; n += gl_NumSubgroups) {
        // one sum per token, in registers (TB is a constant: the loops
        // over t unroll and every index is known)
        float acc[TB];
        [[unroll]] for (uint t = 0u; t < TB; t++) acc[t] = 0.0;
        uint row = n * p.row_bytes;
        if (TYPE == TY_F32) {
            for (uint k = lane; k < p.K; k += ns) {
                float wv = uintBitsToFloat(w[WOFF + row / 4u + k]);
                [[unroll]] for (uint t = 0u; t < TB; t++)
                    if (t < nt) acc[t] += wv * x[xb0 + t * p.ldx + k];
            }
        } else if (TYPE == TY_F16) { // K even (the host checks): whole words
            for (uint k2 = lane; k2 < p.K / 2u; k2 += ns) {
                vec2 h = unpackHalf2x16(w[WOFF + row / 4u + k2]);
                [[unroll]] for (uint t = 0u; t < TB; t++) {
                    uint xk = xb0 + t * p.ldx + 2u * k2;
                    if (t < nt) acc[t] += h.x * x[xk] + h.y * x[xk + 1u];
                }
            }
        } else if (TYPE == TY_Q8_0) {
            for (uint b = lane; b < p.K / 32u; b += ns) {
                uint off = row + b * 34u;
                float d = HALF_AT(off);
                uint q[8];
                [[unroll]] for (uint i = 0u; i < 8u; i++) q[i] = word_at(off + 2u + 4u * i);
                [[unroll]] for (uint t = 0u; t < TB; t++) {
                    if (t >= nt) break;
                    uint xk = xb0 + t * p.ldx + b * 32u;
                    float s = 0.0;
                    [[unroll]] for (uint i = 0u; i < 8u; i++) s += dot_s8(q[i], xk + 4u * i);
                    acc[t] += d * s;
                }
            }
        } else if (TYPE == TY_Q4_0) {
            for (uint b = lane; b < p.K / 32u; b += ns) {
                uint off = row + b * 18u;
                float d = HALF_AT(off);
                uint q[4];
                [[unroll]] for (uint i = 0u; i < 4u; i++) q[i] = word_at(off + 2u + 4u * i);
                [[unroll]] for (uint t = 0u; t < TB; t++) {
                    if (t >= nt) break;
                    uint xk = xb0 + t * p.ldx + b * 32u;
                    float s = 0.0;
                    [[unroll]] for (uint i = 0u; i < 4u; i++) s += dot_q4(q[i], xk + 4u * i);
                    acc[t] += d * s;
                }
            }
        }
        [[unroll]] for (uint t = 0u; t < TB; t++) {
            float s = subgroupAdd(acc[t]);
            if (subgroupElect() && t < nt) y[p.o3 + (t0 + t) * p.ldy + n] = s;
        }
    }
}
