#version 450
// Writes one layer's K and V rows of T tokens into their KV-cache slots
// (the slot of each token from the slots input). The cache's rows are F32,
// F16 or Q8_0 (constant 0); each invocation writes one unit: an F32
// element, a pair of F16 elements (one word), or a Q8_0 block of 32
// (d = max|x| / 127, q = round-half-away(x / d), as lib/quant.c). Q8_0
// blocks are 34 bytes, so a block shares words with its neighbours: its
// bytes are written with atomic and/or on the words, which leaves the
// neighbours' bytes alone whichever invocation runs first.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 64) in;
layout(constant_id = 0) const uint TYPE = 0;
layout(binding = 0) readonly buffer Kb { float ks[]; };
layout(binding = 1) readonly buffer Vb { float vs[]; };
layout(binding = 2) readonly buffer Sb { int slots[]; };
layout(binding = 3) buffer Cb { uint w[]; }; // this layer: K rows, then V rows at v_base
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint k_row, v_row, ldk, ldv, k_bytes, v_bytes, v_base;
} p;

#define WOFF p.o3

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
        w[WOFF + dst / 4u + g] = floatBitsToUint(is_k ? ks[src_off + g] : vs[src_off + g]);
    } else if (TYPE == TY_F16) { // rows have an even length (checked by the host)
        uint e = 2u * g;
        vec2 v = is_k ? vec2(ks[src_off + e], ks[src_off + e + 1u])
                      : vec2(vs[src_off + e], vs[src_off + e + 1u]);
        // rounded first, so the packing is exact whatever its rounding
        w[WOFF + (dst + 2u * e) / 4u] = packHalf2x16(vec2(f16_rne(v.x), f16_rne(v.y)));
    } else { // Q8_0, whole blocks
        uint e0 = g * 32u, e1 = min(e0 + 32u, n);
        float amax = 0.0;
        for (uint e = e0; e < e1; e++) amax = max(amax, abs(is_k ? ks[src_off + e] : vs[src_off + e]));
        float d = amax / 127.0, id = d != 0.0 ? 1.0 / d : 0.0;
        uint off = dst + g * 34u, h = packHalf2x16(vec2(f16_rne(d), 0.0));
        put_byte(off, h);
        put_byte(off + 1u, h >> 8);
        for (uint e = e0; e < e1; e++) {
            float x = is_k ? ks[src_off + e] : vs[src_off + e];
            put_byte(off + 2u + (e - e0), uint(int(round_away(x * id))));
        }
    }
}

void main() {
    uint t = gl_WorkGroupID.y;
    const uint per = TYPE == TY_F32 ? 1u : TYPE == TY_F16 ? 2u : 32u; // elements per unit
    uint g = gl_GlobalInvocationID.x, nk = (p.k_row + per - 1u) / per;
    uint nv = (p.v_row + per - 1u) / per;
    if (g >= nk + nv) return;
    uint slot = uint(slots[p.o2 + t]);
    if (g < nk) store_unit(true, p.o0 + t * p.ldk, slot * p.k_bytes, g, p.k_row);
    else store_unit(false, p.o1 + t * p.ldv, p.v_base + slot * p.v_bytes, g - nk, p.v_row);
}
