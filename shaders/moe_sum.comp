#version 450
// The end of a mixture-of-experts layer (EM_OP_MOE_FFN): each token's
// output row is the sum over its chosen experts of weight * the expert's
// down product (mul_mv.comp's ID pass wrote one row per (token, slot)),
// added in increasing expert id as the CPU backend adds them. One
// workgroup row per token; the host checks NU <= 32.
layout(local_size_x = 256) in;
layout(binding = 0) readonly buffer Db { float d[]; };
layout(binding = 1) readonly buffer Rb { float route[]; };
layout(binding = 3) writeonly buffer Yb { float y[]; };
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint n, ldd, ldr, ldy, nu;
} p;

shared uint order[32];

void main() {
    uint t = gl_WorkGroupID.y, i = gl_GlobalInvocationID.x;
    uint rb = p.o1 + t * p.ldr;
    if (gl_LocalInvocationID.x == 0u) { // slots by expert id (insertion sort of <= 32)
        for (uint j = 0u; j < p.nu; j++) {
            uint k = j;
            for (; k > 0u && route[rb + p.nu + order[k - 1u]] > route[rb + p.nu + j]; k--)
                order[k] = order[k - 1u];
            order[k] = j;
        }
    }
    barrier();
    if (i >= p.n) return;
    float s = 0.0;
    for (uint k = 0u; k < p.nu; k++) {
        uint j = order[k];
        s += route[rb + j] * d[p.o0 + (t * p.nu + j) * p.ldd + i];
    }
    y[p.o3 + t * p.ldy + i] = s;
}
