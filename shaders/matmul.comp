#version 450
// y[t][n] = sum_k W[n][k] x[t][k] for one weight type (constant 0). One
// workgroup per output row and token: 64 invocations split the row (by
// elements, or by blocks of 32 for quantized types, in the device layout
// of common.glsl) and reduce in shared memory. Rows past 32768 fold into
// the z dimension. The portable path: no subgroup operations.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"

layout(local_size_x = 64) in;
layout(constant_id = 0) const uint TYPE = 0;
layout(binding = 0) readonly buffer Wb { uint w[]; };
layout(binding = 0) readonly buffer W4b { uvec4 w4[]; };
layout(binding = 1) readonly buffer Xb { float x[]; };
layout(binding = 3) writeonly buffer Yb { float y[]; };
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint K, N, row_bytes, ldx, ldy, soff;
} p;

shared float part[64];
#define WOFF p.o0
#define SOFF p.soff
#include "unpacked.glsl"

void main() {
    uint n = gl_WorkGroupID.x + gl_WorkGroupID.z * 32768u, t = gl_WorkGroupID.y;
    uint l = gl_LocalInvocationID.x;
    if (n >= p.N) return; // whole workgroup: uniform
    uint row = n * p.row_bytes, xb = p.o1 + t * p.ldx;
    float s = 0.0;
    if (TYPE == TY_F32) {
        for (uint k = l; k < p.K; k += 64u) s += uintBitsToFloat(w[WOFF + row / 4u + k]) * x[xb + k];
    } else if (TYPE == TY_F16) {
        for (uint k = l; k < p.K; k += 64u) s += HALF_AT(row + 2u * k) * x[xb + k];
    } else if (UNPACKED(TYPE)) {
        for (uint b = n * (p.K / 32u) + l; b < (n + 1u) * (p.K / 32u); b += 64u) {
            uint xk = xb + (b - n * (p.K / 32u)) * 32u;
            vec2 a, c;
            uint q[8];
            UBLOCK(w, w4, WOFF, WOFF + SOFF, b, a, c, q)
            for (uint j = 0u; j < 32u; j++) s += ublock_at(a, c, q, j) * x[xk + j];
        }
    } else { // blocks: row n starts at block n * K / 32
        for (uint b = n * (p.K / 32u) + l; b < (n + 1u) * (p.K / 32u); b += 64u) {
            uint xk = xb + (b - n * (p.K / 32u)) * 32u;
            float bs = 0.0;
            for (uint j = 0u; j < 32u; j++)
                bs += float(TYPE == TY_Q8_0 ? Q8_AT(b, j) : Q4_AT(b, j)) * x[xk + j];
            s += SCALE_AT(b) * bs;
        }
    }
    part[l] = s;
    barrier();
    for (uint h = 32u; h > 0u; h >>= 1) {
        if (l < h) part[l] += part[l + h];
        barrier();
    }
    if (l == 0u) y[p.o3 + t * p.ldy + n] = part[0];
}
