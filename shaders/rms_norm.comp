#version 450
// y = x / sqrt(mean(x^2) + eps) (* w when has_w): one workgroup per row,
// 512 invocations, each holding up to NR of the row's elements in
// registers between the sum and the scaling (a decode step has a single
// row: the whole GPU waits on this workgroup, so its loads must all be in
// flight at once rather than one strided loop's worth).
//
// Q8 (constant 0) = 1 also writes y rounded to 8 bits for mul_mvq.comp
// into binding 2 (quant_act.comp's layout and rounding, meta at word
// `xm`; n a multiple of 32, x rows 16-byte aligned): the products that
// read a norm (a layer's Q, K and V; gate and up) then need no quant_act
// dispatch and barrier of their own. Each invocation recomputes its
// blocks' values from x and g, the same products in the same order as y.
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 512) in;
layout(constant_id = 0) const uint Q8 = 0u;
layout(binding = 0) readonly buffer Xb { float x[]; };
layout(binding = 0) readonly buffer X4b { vec4 x4[]; };
layout(binding = 1) readonly buffer Gb { float g[]; };
layout(binding = 1) readonly buffer G4b { vec4 g4[]; };
layout(binding = 2) writeonly buffer Qb { uint q[]; };
layout(binding = 2) writeonly buffer Q4b { uvec4 q4[]; };
layout(binding = 3) writeonly buffer Yb { float y[]; };
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint n, ldx, ldy, has_w;
    float eps;
    uint xm;
} p;

uint pack4(vec4 r) {
    ivec4 i = ivec4(r) & 0xff;
    return uint(i.x) | (uint(i.y) << 8) | (uint(i.z) << 16) | (uint(i.w) << 24);
}

// row r's block b of y into binding 2 (quant_act.comp's rule)
void quantize_block(uint r, uint b, float scale) {
    vec4 v[8];
    float amax = 0.0;
    [[unroll]] for (uint i = 0u; i < 8u; i++) {
        uint c = b * 8u + i;
        v[i] = x4[(p.o0 + r * p.ldx) / 4u + c] * scale;
        if (p.has_w != 0u) v[i] *= g4[p.o1 / 4u + c];
        vec4 a = abs(v[i]);
        amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
    }
    float ie = amax != 0.0 ? div_rn(127.0, amax) : 0.0;
    uint w[8];
    int s0 = 0, s1 = 0;
    [[unroll]] for (uint i = 0u; i < 8u; i++) {
        vec4 rv = roundEven(v[i] * ie);
        w[i] = pack4(rv);
        int s = int(rv.x + rv.y + rv.z + rv.w);
        if (i < 4u) s0 += s; else s1 += s;
    }
    uint qb = (p.o2 + r * (p.n / 4u)) / 4u + b * 2u;
    q4[qb] = uvec4(w[0], w[1], w[2], w[3]);
    q4[qb + 1u] = uvec4(w[4], w[5], w[6], w[7]);
    uint m = p.o2 + p.xm + (r * (p.n / 32u) + b) * 2u;
    q[m] = floatBitsToUint(f16_rne(div_rn(amax, 127.0)));
    q[m + 1u] = (uint(s0) & 0xffffu) | (uint(s1) << 16);
}

const uint NR = 8u;
shared float part[512];

void main() {
    uint r = gl_WorkGroupID.x + gl_WorkGroupID.y * 32768u, l = gl_LocalInvocationID.x;
    uint xb = p.o0 + r * p.ldx, yb = p.o3 + r * p.ldy;
    float xv[NR], s = 0.0;
    [[unroll]] for (uint j = 0u; j < NR; j++) {
        uint i = l + 512u * j;
        xv[j] = i < p.n ? x[xb + i] : 0.0;
        s += xv[j] * xv[j];
    }
    for (uint i = l + 512u * NR; i < p.n; i += 512u) s += x[xb + i] * x[xb + i];
    part[l] = s;
    barrier();
    for (uint h = 256u; h > 0u; h >>= 1) {
        if (l < h) part[l] += part[l + h];
        barrier();
    }
    float scale = 1.0 / sqrt(part[0] / float(p.n) + p.eps);
    [[unroll]] for (uint j = 0u; j < NR; j++) {
        uint i = l + 512u * j;
        if (i < p.n) y[yb + i] = p.has_w != 0u ? xv[j] * scale * g[p.o1 + i] : xv[j] * scale;
    }
    for (uint i = l + 512u * NR; i < p.n; i += 512u)
        y[yb + i] = p.has_w != 0u ? x[xb + i] * scale * g[p.o1 + i] : x[xb + i] * scale;
    if (Q8 == 1u)
        for (uint b = l; b < p.n / 32u; b += 512u) quantize_block(r, b, scale);
}
