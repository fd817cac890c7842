#version 450
// Activations rounded to 8 bits as act_type Q8_0 rounds them on the CPU
// (backends/cpu/ref/kernels_q.c quant_q8_lanes): per block of 32 values,
// q = roundEven(v * 127 / amax) and d = amax / 127 rounded to F16. One
// invocation per block and token. Written for mul_mvq.comp to read
// (binding 3, the slot's layout):
//   quants: token t's K int8 at word t * K / 4 (16-byte aligned rows);
//   meta, from word `xm`: per token and block, two words: d (float bits)
//   and the sums of q over the block's halves (int16 each, low: j < 16).
// INPLACE (constant 0) = 1 instead writes q d over x itself (binding 3 is
// x): prompts' products then multiply the rounded values in their F32
// tiles (mul_mm.comp), as the CPU's batches do.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
layout(local_size_x = 64) in;
layout(constant_id = 0) const uint INPLACE = 0u;
layout(binding = 0) readonly buffer Xb { vec4 x4[]; };
layout(binding = 3) writeonly buffer Ob { vec4 o4[]; };
layout(binding = 3) writeonly buffer Qb { uint q[]; };
layout(binding = 3) writeonly buffer Q4b { uvec4 q4[]; };
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint K, ldx, T, xm; // ldx in floats (a multiple of 4)
} p;

// the 4 values of v (already scaled) rounded and packed as int8 bytes
uint pack4(vec4 v) {
    ivec4 i = ivec4(roundEven(v)) & 0xff;
    return uint(i.x) | (uint(i.y) << 8) | (uint(i.z) << 16) | (uint(i.w) << 24);
}

void main() {
    uint b = gl_GlobalInvocationID.x, t = gl_GlobalInvocationID.y, nb = p.K / 32u;
    if (b >= nb || t >= p.T) return;
    vec4 v[8];
    float amax = 0.0;
    [[unroll]] for (uint i = 0u; i < 8u; i++) {
        v[i] = x4[(p.o0 + t * p.ldx) / 4u + b * 8u + i];
        vec4 a = abs(v[i]);
        amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
    }
    float ie = amax != 0.0 ? div_rn(127.0, amax) : 0.0, d = f16_rne(div_rn(amax, 127.0));
    if (INPLACE == 1u) {
        [[unroll]] for (uint i = 0u; i < 8u; i++)
            o4[(p.o3 + t * p.ldx) / 4u + b * 8u + i] = roundEven(v[i] * ie) * d;
        return;
    }
    uint w[8];
    int s0 = 0, s1 = 0;
    [[unroll]] for (uint i = 0u; i < 8u; i++) {
        vec4 r = roundEven(v[i] * ie);
        w[i] = pack4(r);
        int s = int(r.x + r.y + r.z + r.w);
        if (i < 4u) s0 += s; else s1 += s;
    }
    uint qb = (p.o3 + t * (p.K / 4u)) / 4u + b * 2u;
    q4[qb] = uvec4(w[0], w[1], w[2], w[3]);
    q4[qb + 1u] = uvec4(w[4], w[5], w[6], w[7]);
    uint m = p.o3 + p.xm + (t * nb + b) * 2u;
    q[m] = floatBitsToUint(d);
    q[m + 1u] = (uint(s0) & 0xffffu) | (uint(s1) << 16);
}
