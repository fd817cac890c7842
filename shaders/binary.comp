#version 450
// y = a + b (constant 0 = 0) or a * b (1), row by row. b is a row of the
// same length (bmode 0: row r; 1: one row for all) or a scalar per row
// (bmode 2).
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint OP = 0;
layout(binding = 0) readonly buffer Ab { float a[]; };
layout(binding = 1) readonly buffer Bb { float b[]; };
layout(binding = 3) writeonly buffer Yb { float y[]; };
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint n, lda, ldb, ldy, bmode;
} p;

void main() {
    uint i = gl_GlobalInvocationID.x, r = gl_WorkGroupID.y + gl_WorkGroupID.z * 32768u;
    if (i >= p.n) return;
    float va = a[p.o0 + r * p.lda + i];
    float vb = p.bmode == 2u ? b[p.o1 + r * p.ldb] : b[p.o1 + (p.bmode == 1u ? 0u : r * p.ldb) + i];
    y[p.o3 + r * p.ldy + i] = OP == 0u ? va + vb : va * vb;
}
