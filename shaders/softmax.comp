#version 450
// Softmax of each row: one workgroup per row (max, then sum of exp).
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer Ab { float a[]; };
layout(binding = 3) buffer Yb { float y[]; };
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint n, lda, ldy;
} p;

shared float part[64];

void main() {
    uint r = gl_WorkGroupID.x + gl_WorkGroupID.y * 32768u, l = gl_LocalInvocationID.x;
    uint ab = p.o0 + r * p.lda, yb = p.o3 + r * p.ldy;
    float m = -1.0 / 0.0;
    for (uint i = l; i < p.n; i += 64u) m = max(m, a[ab + i]);
    part[l] = m;
    barrier();
    for (uint h = 32u; h > 0u; h >>= 1) {
        if (l < h) part[l] = max(part[l], part[l + h]);
        barrier();
    }
    m = part[0];
    barrier();
    float s = 0.0;
    for (uint i = l; i < p.n; i += 64u) {
        float e = exp(a[ab + i] - m);
        y[yb + i] = e;
        s += e;
    }
    part[l] = s;
    barrier();
    for (uint h = 32u; h > 0u; h >>= 1) {
        if (l < h) part[l] += part[l + h];
        barrier();
    }
    float inv = 1.0 / part[0];
    for (uint i = l; i < p.n; i += 64u) y[yb + i] *= inv;
}
