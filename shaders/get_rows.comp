#version 450
// y[t][c] = row ids[t] of a table (weight type in constant 0), as F32:
// one workgroup per token, invocations over the row's elements. Block
// types are in the device layout (common.glsl). The binding holds the
// table's rows [lo, hi) (a table larger than one binding is stored and
// looked up in chunks, backends/vulkan/weights.c): tokens whose ids fall
// outside are another dispatch's.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"

layout(local_size_x = 64) in;
layout(constant_id = 0) const uint TYPE = 0;
layout(binding = 0) readonly buffer Wb { uint w[]; };
layout(binding = 0) readonly buffer W4b { uvec4 w4[]; };
layout(binding = 1) readonly buffer Ib { int ids[]; };
layout(binding = 3) writeonly buffer Yb { float y[]; };
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint C, row_bytes, ldy, soff, lo, hi;
} p;
#define WOFF p.o0
#define SOFF p.soff
#include "unpacked.glsl"

void main() {
    uint t = gl_WorkGroupID.x, id = uint(ids[p.o1 + t]);
    if (id < p.lo || id >= p.hi) return; // the whole workgroup
    id -= p.lo;
    if (UNPACKED(TYPE)) { // a block per invocation and step
        uint nbk = p.C / 32u, b0 = id * nbk;
        for (uint bl = gl_LocalInvocationID.x; bl < nbk; bl += 64u) {
            vec2 a, c;
            uint q[8];
            UBLOCK(w, w4, WOFF, WOFF + SOFF, b0 + bl, a, c, q)
            for (uint j = 0u; j < 32u; j++) y[p.o3 + t * p.ldy + 32u * bl + j] = ublock_at(a, c, q, j);
        }
        return;
    }
    uint row = id * p.row_bytes;
    for (uint c = gl_LocalInvocationID.x; c < p.C; c += 64u) {
        float v;
        if (TYPE == TY_F32) {
            v = uintBitsToFloat(w[WOFF + row / 4u + c]);
        } else if (TYPE == TY_F16) {
            v = HALF_AT(row + 2u * c);
        } else { // blocks: row ids[t] starts at block ids[t] * C / 32
            uint b = id * (p.C / 32u) + c / 32u;
            v = SCALE_AT(b) * float(TYPE == TY_Q8_0 ? Q8_AT(b, c % 32u) : Q4_AT(b, c % 32u));
        }
        y[p.o3 + t * p.ldy + c] = v;
    }
}
