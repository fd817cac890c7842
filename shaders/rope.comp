#version 450
// RoPE of x [D, H, T] with each token's cos and sin taken from a table
// the host fills per evaluation (cs[t][i], sn[t][i] = cs[t][half + i]),
// computed in double precision as the CPU backend does, since float sin
// and cos of large angles lose digits on GPUs. mode 0 rotates adjacent
// pairs (2i, 2i+1), mode 2 halves (i, i + half); columns past n_rot are
// copied. One workgroup per head and token.
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer Xb { float x[]; };
layout(binding = 1) readonly buffer Cb { float cs[]; };
layout(binding = 3) writeonly buffer Yb { float y[]; };
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint D, n_rot, mode, ldx1, ldx2, ldy1, ldy2;
} p;

void main() {
    uint h = gl_WorkGroupID.x, t = gl_WorkGroupID.y, half_ = p.n_rot / 2u;
    uint xb = p.o0 + t * p.ldx2 + h * p.ldx1, yb = p.o3 + t * p.ldy2 + h * p.ldy1;
    uint cb = p.o1 + t * p.n_rot;
    for (uint i = gl_LocalInvocationID.x; i < half_; i += 64u) {
        uint i0 = p.mode == 0u ? 2u * i : i, i1 = p.mode == 0u ? 2u * i + 1u : i + half_;
        float a0 = x[xb + i0], a1 = x[xb + i1], c = cs[cb + i], s = cs[cb + half_ + i];
        y[yb + i0] = a0 * c - a1 * s;
        y[yb + i1] = a0 * s + a1 * c;
    }
    for (uint i = p.n_rot + gl_LocalInvocationID.x; i < p.D; i += 64u) y[yb + i] = x[xb + i];
}
