#version 450
// mul_mm.comp's product on the tensor cores (VK_NV_cooperative_matrix:
// glslang 12, the toolchain we build with, has no GL_KHR_cooperative_matrix):
// y[t][n] = sum_k W[n][k] x[t][k] for prompts, each workgroup a tile of 64
// weight rows x 64 tokens, K stepped 32 at a time. A step's weights are
// unpacked (unpack8.glsl) and its x rounded to F16 into shared memory,
// and each of the four subgroups multiplies a 32 x 32 corner as 2 x 2
// 16 x 16 x 16 products with F32 sums. The next step's loads are issued
// before this step's products, so memory and tensor cores overlap. F16
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
// row stride in halves: 80 bytes keeps the matrix loads 16-byte aligned
// and puts 8 consecutive rows in different banks
const uint LD = BK + 8u;
shared float16_t ws[BM * LD]; // weight row r, element k at r LD + k
shared float16_t xs[BN * LD]; // token c, element k at c LD + k
shared float cs[4u * 256u];   // per subgroup: one 16 x 16 result, token-major

// this invocation's part of a step: rows (tokens) lr and lr + 32,
// elements 8 lj .. 8 lj + 7 of the block
uint lr, lj;
float wv[2][8];
vec4 xv[2][2];

void load_step(uint n0, uint t0, uint b) {
    [[unroll]] for (uint h = 0u; h < 2u; h++) {
        uint n = n0 + lr + 32u * h, t = t0 + lr + 32u * h;
        if (n < p.N) unpack8(n, b, lj, wv[h]);
        else wv[h] = float[8](0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        xv[h][0] = vec4(0.0), xv[h][1] = vec4(0.0);
        if (t < p.T) {
            uint i = (p.o1 + t * p.ldx + b * BK + 8u * lj) / 4u;
            xv[h][0] = x4[i], xv[h][1] = x4[i + 1u];
        }
    }
}

void store_step() {
    [[unroll]] for (uint h = 0u; h < 2u; h++) {
        uint r = (lr + 32u * h) * LD + 8u * lj;
        [[unroll]] for (uint k = 0u; k < 8u; k++) ws[r + k] = float16_t(wv[h][k]);
        [[unroll]] for (uint k = 0u; k < 4u; k++) {
            xs[r + k] = float16_t(xv[h][0][k]);
            xs[r + 4u + k] = float16_t(xv[h][1][k]);
        }
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
        store_step();
        barrier();
        if (b + 1u < nb) load_step(n0, t0, b + 1u);
        [[unroll]] for (uint kk = 0u; kk < BK; kk += 16u) {
            MAT16 a[2], x[2];
            [[unroll]] for (uint i = 0u; i < 2u; i++) {
                coopMatLoadNV(a[i], ws, (sr + 16u * i) * LD + kk, LD, false);
                // x's tile is token-major: as the K x 16 right operand,
                // column-major
                coopMatLoadNV(x[i], xs, (sc + 16u * i) * LD + kk, LD, true);
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
