#version 450
// y = x / sqrt(mean(x^2) + eps) (* w when has_w): one workgroup per row.
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer Xb { float x[]; };
layout(binding = 1) readonly buffer Gb { float g[]; };
layout(binding = 3) writeonly buffer Yb { float y[]; };
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint n, ldx, ldy, has_w;
    float eps;
} p;

shared float part[64];

void main() {
    uint r = gl_WorkGroupID.x + gl_WorkGroupID.y * 32768u, l = gl_LocalInvocationID.x;
    uint xb = p.o0 + r * p.ldx, yb = p.o3 + r * p.ldy;
    float s = 0.0;
    for (uint i = l; i < p.n; i += 64u) s += x[xb + i] * x[xb + i];
    part[l] = s;
    barrier();
    for (uint h = 32u; h > 0u; h >>= 1) {
        if (l < h) part[l] += part[l + h];
        barrier();
    }
    float scale = 1.0 / sqrt(part[0] / float(p.n) + p.eps);
    for (uint i = l; i < p.n; i += 64u)
        y[yb + i] = p.has_w != 0u ? x[xb + i] * scale * g[p.o1 + i] : x[xb + i] * scale;
}
