// unpack8: 8 consecutive weights of a row as F32, for the tiled
// products (mul_mm.comp, mul_mmc.comp). Include after unpacked.glsl,
// with w / w4 (binding 0), p.K, WOFF and SOFF defined.

// 8 consecutive elements [8 j, 8 j + 8) of row n's block b (b counted
// from the row's start) as F32
void unpack8(uint n, uint b, uint j, out float v[8]) {
    uint kb = p.K / 32u, blk = n * kb + b;
    if (TYPE == TY_F32) {
        uint i = (WOFF + n * p.K + b * 32u + 8u * j) / 4u;
        vec4 a = uintBitsToFloat(w4[i]), c = uintBitsToFloat(w4[i + 1u]);
        v = float[8](a.x, a.y, a.z, a.w, c.x, c.y, c.z, c.w);
    } else if (TYPE == TY_F16) {
        uvec4 q = w4[(WOFF + (n * p.K + b * 32u + 8u * j) / 2u) / 4u];
        vec2 a = unpackHalf2x16(q.x), c = unpackHalf2x16(q.y), e = unpackHalf2x16(q.z),
             f = unpackHalf2x16(q.w);
        v = float[8](a.x, a.y, c.x, c.y, e.x, e.y, f.x, f.y);
    } else if (TYPE == TY_Q8_0) {
        float d = SCALE_AT(blk);
        uint i = WOFF + blk * 8u + 2u * j;
        [[unroll]] for (uint k = 0u; k < 8u; k++) v[k] = d * float(s8((w[i + k / 4u] >> (8u * (k & 3u))) & 0xffu));
    } else if (UNPACKED(TYPE)) {
        vec2 a, c;
        uint q[8];
        UBLOCK(w, w4, WOFF, WOFF + SOFF, blk, a, c, q)
        [[unroll]] for (uint k = 0u; k < 8u; k++) v[k] = ublock_at(a, c, q, 8u * j + k);
    } else { // Q4_0: elements 8 j .. 8 j + 7 are nibbles of bytes (8 j) & 15 ..
        float d = SCALE_AT(blk);
        uint i = WOFF + blk * 4u + (j & 1u) * 2u, sh = j >= 2u ? 4u : 0u;
        [[unroll]] for (uint k = 0u; k < 8u; k++)
            v[k] = d * float(int((w[i + k / 4u] >> (8u * (k & 3u) + sh)) & 15u) - 8);
    }
}
