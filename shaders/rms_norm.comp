#version 450
// y = x / sqrt(mean(x^2) + eps) (* w when has_w): one workgroup per row,
// 512 invocations, each holding up to NR of the row's elements in
// registers between the sum and the scaling (a decode step has a single
// row: the whole GPU waits on this workgroup, so its loads must all be in
// flight at once rather than one strided loop's worth).
#extension GL_EXT_control_flow_attributes : require
layout(local_size_x = 512) in;
layout(binding = 0) readonly buffer Xb { float x[]; };
layout(binding = 1) readonly buffer Gb { float g[]; };
layout(binding = 3) writeonly buffer Yb { float y[]; };
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint n, ldx, ldy, has_w;
    float eps;
} p;

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
}
