// Shared by the shaders: weight-type codes (specialization constant 0 of
// the matmul and get_rows shaders) and byte access to block-quantized
// weights bound as 32-bit words (no 8- or 16-bit storage features needed,
// so the same SPIR-V runs on lavapipe).
//
// Block-quantized weights are in the device layout the backend writes at
// upload (backends/vulkan/weights.c), not GGUF's interleaved blocks: the
// quants of every block in order (Q8_0: 32 int8 per block; Q4_0: 16 bytes,
// element j in the low nibble of byte j, j + 16 in the high one, value
// nibble - 8), then, `soff` words past the tensor's start, the blocks'
// fp16 scales. Quants of a block are 16-byte aligned, so a shader can read
// them with uvec4 loads. The other block types (unpacked.glsl) follow the
// same plan: each block's quant bytes in a stream, the rest of it (scales,
// mins, high bits) in a meta stream at `soff`.
// (GGUF's type numbers)
#define TY_F32 0u
#define TY_F16 1u
#define TY_Q4_0 2u
#define TY_Q4_1 3u
#define TY_Q5_0 6u
#define TY_Q5_1 7u
#define TY_Q8_0 8u
#define TY_Q4_K 12u
#define TY_Q5_K 13u
#define TY_Q6_K 14u
// The types read through the unpacked form (unpacked.glsl)
#define UNPACKED(ty) ((ty) == TY_Q4_1 || (ty) == TY_Q5_0 || (ty) == TY_Q5_1 || (ty) >= TY_Q4_K)

// Needs `w` (uint words) and the binding's word offset `WOFF` in scope.
#define BYTE_AT(off) ((w[WOFF + ((off) >> 2)] >> (((off) & 3u) * 8u)) & 0xffu)
// off even: both bytes share a word
#define HALF_AT(off) unpackHalf2x16((w[WOFF + ((off) >> 2)] >> (((off) & 2u) * 8u)) & 0xffffu).x
// the scale of block b in the device layout; needs SOFF (words) too
#define SCALE_AT(b) unpackHalf2x16(w[WOFF + SOFF + ((b) >> 1)] >> (((b) & 1u) * 16u)).x
// quant j of block b: Q8_0 as a signed value, Q4_0 minus 8
#define Q8_AT(b, j) s8(BYTE_AT((b) * 32u + (j)))
#define Q4_AT(b, j) (int(((BYTE_AT((b) * 16u + ((j) & 15u))) >> (((j) >> 4) * 4u)) & 15u) - 8)

int s8(uint b) { return int(b << 24) >> 24; }

// x rounded to the nearest F16 value, ties to even, returned as a float:
// the rounding of the CPU backend (F16C) and of llama.cpp. Done by hand
// since packHalf2x16's rounding is the driver's choice. Normal F16 range:
// round the F32 significand to 11 bits; below it, to multiples of 2^-24.
// (Values past 65504 do not occur where it is used: probabilities, and
// activations written to an F16 cache.)
float f16_rne(float x) {
    if (abs(x) < 6.103515625e-05) return roundEven(x * 16777216.0) / 16777216.0;
    uint u = floatBitsToUint(x);
    u += 0xfffu + ((u >> 13) & 1u);
    return uintBitsToFloat(u & ~0x1fffu);
}

// a - r b, r b's rounding error included (Dekker's exact product: no fma,
// whose fusing Vulkan does not promise; `precise` keeps the compiler from
// fusing). a - p is exact for p near a (Sterbenz).
float residual(float a, float r, float b) {
    precise float p = r * b;
    precise float cr = 4097.0 * r, rh = cr - (cr - r), rl = r - rh;
    precise float cb = 4097.0 * b, bh = cb - (cb - b), bl = b - bh;
    precise float e = ((rh * bh - p) + rh * bl + rl * bh) + rl * bl;
    precise float res = (a - p) - e;
    return res;
}

// a / b (both > 0) correctly rounded, as the CPU divides: a driver's
// division need not be (the H100's is approximate), and where a quotient
// picks an 8-bit rounding (the Q8_0 KV cache, 8-bit activations) it must
// be the CPU's. The driver's quotient or a neighbour, whichever leaves the
// smallest remainder.
float div_rn(float a, float b) {
    float r = a / b, best = r, rb = abs(residual(a, r, b));
    for (int k = -1; k <= 1; k += 2) {
        float c = uintBitsToFloat(uint(int(floatBitsToUint(r)) + k));
        float rc = abs(residual(a, c, b));
        if (rc < rb) best = c, rb = rc;
    }
    return best;
}

// One block of 32 values v rounded to 8 bits by act_type Q8_0's rule
// (quant_act.comp): q = roundEven(v 127 / amax), four to a word in qw;
// d = amax / 127 rounded to F16, its float bits in *d_bits; the sums of
// q over the block's halves in *sums (int16 each, low: the first 16).
// The _f32 form leaves d unrounded, for a reader that scales it first
// (mul_mvq.comp's folded norm).
void q8_round_block_f32(vec4 v[8], out uint qw[8], out uint d_bits, out uint sums) {
    float amax = 0.0;
    for (uint i = 0u; i < 8u; i++) {
        vec4 a = abs(v[i]);
        amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
    }
    float ie = amax != 0.0 ? div_rn(127.0, amax) : 0.0;
    int s0 = 0, s1 = 0;
    for (uint i = 0u; i < 8u; i++) {
        vec4 r = roundEven(v[i] * ie);
        ivec4 b = ivec4(r) & 0xff;
        qw[i] = uint(b.x) | (uint(b.y) << 8) | (uint(b.z) << 16) | (uint(b.w) << 24);
        int s = int(r.x + r.y + r.z + r.w);
        if (i < 4u) s0 += s; else s1 += s;
    }
    d_bits = floatBitsToUint(div_rn(amax, 127.0));
    sums = (uint(s0) & 0xffffu) | (uint(s1) << 16);
}

void q8_round_block(vec4 v[8], out uint qw[8], out uint d_bits, out uint sums) {
    q8_round_block_f32(v, qw, d_bits, sums);
    d_bits = floatBitsToUint(f16_rne(uintBitsToFloat(d_bits)));
}
