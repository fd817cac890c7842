#version 450
// mul_mm.comp's product on the tensor cores (VK_NV_cooperative_matrix:
// glslang 12, the toolchain we build with, has no GL_KHR_cooperative_matrix):
// y[t][n] = sum_k W[n][k] x[t][k] for prompts, each workgroup a tile of 64
// weight rows x 64 tokens, K stepped 32 at a time. A step's weights are
// unpacked (unpack8.glsl) and its x rounded to F16 into shared memory,
// and each of the four subgroups multiplies a 32 x 32 corner as 2 x 2
// 16 x 16 x 16 products with F32 sums. The next step's loads are issued
// before this step's products and (Q8_0, Q4_0) not read until after
// them, so memory and tensor cores overlap. F16
// inputs are the price (act_type Q8_0 only: x is then already on its
// 8-bit grid; a Q8_0 weight d q rounds to F16 at 2^-11). Host checks:
// the device's 16 x 16 x 16 F16/F32 subgroup shape, a subgroup of 32,
// K a multiple of 32, x rows 16-byte aligned.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_NV_cooperative_matrix : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#include "common.glsl"

layout(local_size_x = 128) in;
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
#include "unpack8.glsl"

#define MAT16 fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define ACC fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>

const uint BM = 64u, BN = 64u, BK = 32u;
// shared rows as uvec4 (8 halves each): 4 hold a block's 32 values and
// one pads, 80 bytes a row: 16-byte aligned matrix loads, 8 consecutive
// rows in different banks, and one 16-byte store per 8 values
const uint LDV = 5u;
shared uvec4 ws[BM * LDV]; // weight row r's 8 values 8 j .. at ws[r LDV + j]
shared uvec4 xs[BN * LDV]; // token c's
shared float cs[4u * 256u];   // per subgroup: one 16 x 16 result, token-major

// this invocation's part of a step: rows (tokens) lr and lr + 32,
// elements 8 lj .. 8 lj + 7 of the block. Q8_0's and Q4_0's 8 values are
// two words and the block's scale word, kept raw (wr) and unpacked at the
// store: nothing reads a load before the step's products, so the loads
// overlap them. The other types unpack at the load (wv). Rows and tokens
// past the edges load the last one's (no branch): a row of W only reaches
// its own row of y, a token only its own, and those are not stored.
const bool RAW = TYPE == TY_Q8_0 || TYPE == TY_Q4_0;
uint lr, lj;
uvec3 wr[2];
float wv[2][8];
vec4 xv[2][2];

void load_step(uint n0, uint t0, uint b) {
    [[unroll]] for (uint h = 0u; h < 2u; h++) {
        uint n = min(n0 + lr + 32u * h, p.N - 1u), t = min(t0 + lr + 32u * h, p.T - 1u);
        if (RAW) {
            uint blk = n * (p.K / 32u) + b;
            uint i = TYPE == TY_Q8_0 ? WOFF + blk * 8u + 2u * lj : WOFF + blk * 4u + (lj & 1u) * 2u;
            wr[h] = uvec3(w[i], w[i + 1u], w[WOFF + SOFF + (blk >> 1)]);
        } else {
            unpack8(n, b, lj, wv[h]);
        }
        uint xi = (p.o1 + t * p.ldx + b * BK + 8u * lj) / 4u;
        xv[h][0] = x4[xi], xv[h][1] = x4[xi + 1u];
    }
}

uvec4 halves8(vec4 a, vec4 c) {
    return uvec4(packHalf2x16(a.xy), packHalf2x16(a.zw), packHalf2x16(c.xy), packHalf2x16(c.zw));
}

void store_step(uint n0, uint b) {
    [[unroll]] for (uint h = 0u; h < 2u; h++) {
        float v[8];
        if (RAW) {
            uint blk = min(n0 + lr + 32u * h, p.N - 1u) * (p.K / 32u) + b;
            float d = unpackHalf2x16(wr[h].z >> ((blk & 1u) * 16u)).x;
            uint sh = TYPE == TY_Q4_0 && lj >= 2u ? 4u : 0u;
            [[unroll]] for (uint k = 0u; k < 8u; k++) {
                uint byte = (wr[h][k / 4u] >> (8u * (k & 3u) + sh)) & 0xffu;
                v[k] = d * float(TYPE == TY_Q8_0 ? s8(byte) : int(byte & 15u) - 8);
            }
        } else {
            v = wv[h];
        }
        uint r = (lr + 32u * h) * LDV + lj;
        ws[r] = halves8(vec4(v[0], v[1], v[2], v[3]), vec4(v[4], v[5], v[6], v[7]));
        xs[r] = halves8(xv[h][0], xv[h][1]);
    }
}

void main() {
    uint tid = gl_LocalInvocationID.x, sg = tid / 32u, lane = tid % 32u;
    uint n0 = gl_WorkGroupID.x * BM, t0 = gl_WorkGroupID.y * BN;
    uint sr = 32u * (sg / 2u), sc = 32u * (sg % 2u); // this subgroup's corner
    lr = tid / 4u, lj = tid % 4u;
    ACC acc[2][2];
    [[unroll]] for (uint i = 0u; i < 2u; i++)
        [[unroll]] for (uint j = 0u; j < 2u; j++) acc[i][j] = ACC(0.0);
    uint nb = p.K / BK;
    load_step(n0, t0, 0u);
    for (uint b = 0u; b < nb; b++) {
        store_step(n0, b);
        barrier();
        load_step(n0, t0, min(b + 1u, nb - 1u)); // read at the next store
        [[unroll]] for (uint kk = 0u; kk < BK / 8u; kk += 2u) { // 16 values: 2 uvec4
            MAT16 a[2], x[2];
            [[unroll]] for (uint i = 0u; i < 2u; i++) {
                coopMatLoadNV(a[i], ws, (sr + 16u * i) * LDV + kk, LDV, false);
                // x's tile is token-major: as the K x 16 right operand,
                // column-major
                coopMatLoadNV(x[i], xs, (sc + 16u * i) * LDV + kk, LDV, true);
            }
            [[unroll]] for (uint i = 0u; i < 2u; i++)
                [[unroll]] for (uint j = 0u; j < 2u; j++)
                    acc[i][j] = coopMatMulAddNV(a[i], x[j], acc[i][j]);
        }
        barrier();
    }
    // each result through shared memory, token-major, to y's rows with
    // bounds: the tile's edges may pass N and T
    [[unroll]] for (uint i = 0u; i < 2u; i++)
        [[unroll]] for (uint j = 0u; j < 2u; j++) {
            coopMatStoreNV(acc[i][j], cs, sg * 256u, 16u, true);
            subgroupMemoryBarrierShared();
            subgroupBarrier();
            [[unroll]] for (uint e = lane; e < 256u; e += 32u) {
                uint n = n0 + sr + 16u * i + e % 16u, t = t0 + sc + 16u * j + e / 16u;
                if (n < p.N && t < p.T) y[p.o3 + t * p.ldy + n] = cs[sg * 256u + e];
            }
            subgroupBarrier(); // read before the next result overwrites it
        }
}
