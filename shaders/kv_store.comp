#version 450
// Writes one layer's K and V rows of T tokens into their KV-cache slots
// (the slot of each token from the slots input). The cache's rows are F32,
// F16 or Q8_0 (constant 0); each invocation writes one unit: an F32
// element, a pair of F16 elements (one word), or a Q8_0 block of 32
// (d = max|x| / 127, q = round-half-away(x / d), as lib/quant.c). Q8_0
// blocks are 34 bytes, so a block shares words with its neighbours: its
// bytes are written with atomic and/or on the words, which leaves the
// neighbours' bytes alone whichever invocation runs first.
//
// rope = 1 folds the K rows' RoPE in (backends/vulkan/ops.c plan_fusion):
// K is read un-rotated, heads of D elements, and each element rotated as
// it is read, with the cos/sin table of rope.comp; the
// RoPE node's dispatch and a barrier level go away.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 64) in;
layout(constant_id = 0) const uint TYPE = 0;
layout(binding = 0) readonly buffer Kb { float ks[]; };
layout(binding = 1) readonly buffer Vb { float vs[]; };
layout(binding = 2) readonly buffer Sb { int slots[]; }; // the io buffer, from 0
layout(binding = 2) readonly buffer Sfb { float csf[]; };
layout(binding = 3) buffer Cb { uint w[]; }; // this layer: K rows, then V rows at v_base
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint k_row, v_row, ldk, ldv, k_bytes, v_bytes, v_base;
    uint slots_off, rope, D, n_rot, mode, cs_off; // cs_off: this layer's table, in floats
} p;

#define WOFF p.o3

uint tok; // this invocation's token

// element e of the K row at src, rotated when RoPE is folded in
float kval(uint src, uint e) {
    if (p.rope == 0u) return ks[src + e];
    uint d = e % p.D, hb = e - d, half_ = p.n_rot / 2u;
    if (d >= p.n_rot) return ks[src + e];
    uint i = p.mode == 0u ? d / 2u : d % half_;
    uint i0 = hb + (p.mode == 0u ? 2u * i : i), i1 = i0 + (p.mode == 0u ? 1u : half_);
    bool second = p.mode == 0u ? (d & 1u) == 1u : d >= half_;
    float a0 = ks[src + i0], a1 = ks[src + i1];
    uint cb = p.cs_off + tok * p.n_rot;
    float c = csf[cb + i], s = csf[cb + half_ + i];
    return second ? a0 * s + a1 * c : a0 * c - a1 * s;
}

void put_byte(uint off, uint b) {
    uint i = WOFF + (off >> 2), sh = (off & 3u) * 8u;
    atomicAnd(w[i], ~(0xffu << sh));
    atomicOr(w[i], (b & 0xffu) << sh);
}

// round half away from zero, exactly (C roundf)
float round_away(float v) {
    float r = trunc(v);
    return abs(v - r) >= 0.5 ? r + sign(v) : r;
}

// unit g of a source row (floats from src_off) into a cache row at byte
// offset dst; n elements in the row
void store_unit(bool is_k, uint src_off, uint dst, uint g, uint n) {
    if (TYPE == TY_F32) {
        w[WOFF + dst / 4u + g] = floatBitsToUint(is_k ? kval(src_off, g) : vs[src_off + g]);
    } else if (TYPE == TY_F16) { // rows have an even length (checked by the host)
        uint e = 2u * g;
        vec2 v = is_k ? vec2(kval(src_off, e), kval(src_off, e + 1u))
                      : vec2(vs[src_off + e], vs[src_off + e + 1u]);
        // rounded first, so the packing is exact whatever its rounding
        w[WOFF + (dst + 2u * e) / 4u] = packHalf2x16(vec2(f16_rne(v.x), f16_rne(v.y)));
    } else { // Q8_0, whole blocks
        uint e0 = g * 32u, e1 = min(e0 + 32u, n);
        float amax = 0.0;
        for (uint e = e0; e < e1; e++) amax = max(amax, abs(is_k ? kval(src_off, e) : vs[src_off + e]));
        float d = div_rn(amax, 127.0), id = d != 0.0 ? div_rn(1.0, d) : 0.0;
        uint off = dst + g * 34u, h = packHalf2x16(vec2(f16_rne(d), 0.0));
        put_byte(off, h);
        put_byte(off + 1u, h >> 8);
        for (uint e = e0; e < e1; e++) {
            float x = is_k ? kval(src_off, e) : vs[src_off + e];
            put_byte(off + 2u + (e - e0), uint(int(round_away(x * id))));
        }
    }
}

void main() {
    uint t = gl_WorkGroupID.y;
    tok = t;
    const uint per = TYPE == TY_F32 ? 1u : TYPE == TY_F16 ? 2u : 32u; // elements per unit
    uint g = gl_GlobalInvocationID.x, nk = (p.k_row + per - 1u) / per;
    uint nv = (p.v_row + per - 1u) / per;
    if (g >= nk + nv) return;
    uint slot = uint(slots[p.o2 + p.slots_off + t]);
    if (g < nk) store_unit(true, p.o0 + t * p.ldk, slot * p.k_bytes, g, p.k_row);
    else store_unit(false, p.o1 + t * p.ldv, p.v_base + slot * p.v_bytes, g - nk, p.v_row);
}
