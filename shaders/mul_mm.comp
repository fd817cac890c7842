#version 450
// y[t][n] = sum_k W[n][k] x[t][k] for many tokens (prompts): each
// workgroup computes a tile of 64 weight rows x 64 tokens, stepping over K
// 32 at a time (one quantized block per row): the step's weights are
// unpacked to F32 once into shared memory and each of the 256 invocations
// accumulates 4 rows x 4 tokens from there, so a weight is read from
// memory once per 64 tokens instead of once per token (or per 8 in
// mul_mv.comp). Weight type in constant 0, quantized blocks in the device
// layout (common.glsl). Host checks: K a multiple of 32, x rows 16-byte
// aligned. Grid: x tiles of rows, y tiles of tokens.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"

layout(local_size_x = 256) in;
layout(constant_id = 0) const uint TYPE = 0;
layout(binding = 0) readonly buffer Wb { uint w[]; };
layout(binding = 0) readonly buffer W4b { uvec4 w4[]; };
layout(binding = 1) readonly buffer Xb { vec4 x4[]; };
layout(binding = 3) writeonly buffer Yb { float y[]; };
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint K, N, soff, ldx, ldy, T;
} p;
#define WOFF p.o0
#define SOFF p.soff
#include "unpacked.glsl"

const uint BM = 64u, BN = 64u, BK = 32u;
shared float ws[BK][BM + 1u]; // +1: rows written by different invocations hit different banks
shared float xs[BK][BN + 1u];

#include "unpack8.glsl"

void main() {
    uint tid = gl_LocalInvocationID.x;
    uint n0 = gl_WorkGroupID.x * BM, t0 = gl_WorkGroupID.y * BN;
    uint tr = tid / 16u, tc = tid % 16u; // this invocation's 4 rows and 4 tokens
    // loading: invocation tid fills row (or token) tid / 4, elements 8 (tid % 4) ..
    uint lr = tid / 4u, lj = tid % 4u;
    float acc[4][4];
    [[unroll]] for (uint i = 0u; i < 4u; i++)
        [[unroll]] for (uint j = 0u; j < 4u; j++) acc[i][j] = 0.0;
    for (uint b = 0u; b < p.K / BK; b++) {
        float v[8];
        uint n = n0 + lr;
        if (n < p.N) unpack8(n, b, lj, v);
        else v = float[8](0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        [[unroll]] for (uint k = 0u; k < 8u; k++) ws[8u * lj + k][lr] = v[k];
        uint t = t0 + lr;
        vec4 a = vec4(0.0), c = vec4(0.0);
        if (t < p.T) {
            uint i = (p.o1 + t * p.ldx + b * BK + 8u * lj) / 4u;
            a = x4[i], c = x4[i + 1u];
        }
        xs[8u * lj + 0u][lr] = a.x, xs[8u * lj + 1u][lr] = a.y, xs[8u * lj + 2u][lr] = a.z;
        xs[8u * lj + 3u][lr] = a.w, xs[8u * lj + 4u][lr] = c.x, xs[8u * lj + 5u][lr] = c.y;
        xs[8u * lj + 6u][lr] = c.z, xs[8u * lj + 7u][lr] = c.w;
        barrier();
        [[unroll]] for (uint k = 0u; k < BK; k++) {
            float wr[4], xr[4];
            [[unroll]] for (uint i = 0u; i < 4u; i++) wr[i] = ws[k][tr * 4u + i], xr[i] = xs[k][tc * 4u + i];
            [[unroll]] for (uint i = 0u; i < 4u; i++)
                [[unroll]] for (uint j = 0u; j < 4u; j++) acc[i][j] += wr[i] * xr[j];
        }
        barrier();
    }
    [[unroll]] for (uint j = 0u; j < 4u; j++) {
        uint t = t0 + tc * 4u + j;
        if (t >= p.T) continue;
        [[unroll]] for (uint i = 0u; i < 4u; i++) {
            uint n = n0 + tr * 4u + i;
            if (n < p.N) y[p.o3 + t * p.ldy + n] = acc[i][j];
        }
    }
}
