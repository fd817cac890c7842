#version 450
// Element-wise, row by row (constant 0): 0 swiglu y = silu(a) * b,
// 1 scale y = a * f, 2 sigmoid y = 1 / (1 + exp(-a)), 3 copy y = a (the
// columns of a slice or of one side of a concatenation, by offsets).
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint OP = 0;
layout(binding = 0) readonly buffer Ab { float a[]; };
layout(binding = 1) readonly buffer Bb { float b[]; };
layout(binding = 3) writeonly buffer Yb { float y[]; };
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint n, lda, ldb, ldy;
    float f;
} p;

void main() {
    uint i = gl_GlobalInvocationID.x, r = gl_WorkGroupID.y + gl_WorkGroupID.z * 32768u;
    if (i >= p.n) return;
    float v = a[p.o0 + r * p.lda + i], o;
    if (OP == 0u) o = v / (1.0 + exp(-v)) * b[p.o1 + r * p.ldb + i];
    else if (OP == 1u) o = v * p.f;
    else if (OP == 2u) o = 1.0 / (1.0 + exp(-v));
    else o = v;
    y[p.o3 + r * p.ldy + i] = o;
}
