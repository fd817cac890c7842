// Shared by the shaders: weight-type codes (specialization constant 0 of
// the matmul and get_rows shaders) and byte access to block-quantized
// weights bound as 32-bit words (no 8- or 16-bit storage features needed,
// so the same SPIR-V runs on lavapipe). Block layouts as GGUF defines
// them: Q8_0 = fp16 scale + 32 int8 (34 bytes); Q4_0 = fp16 scale + 16
// bytes, element j in the low nibble of byte j, j + 16 in the high one,
// value (nibble - 8) * scale.
#define TY_F32 0u
#define TY_F16 1u
#define TY_Q4_0 2u
#define TY_Q8_0 8u

// Needs `w` (uint words) and the binding's word offset `WOFF` in scope.
#define BYTE_AT(off) ((w[WOFF + ((off) >> 2)] >> (((off) & 3u) * 8u)) & 0xffu)
// off even: both bytes share a word
#define HALF_AT(off) unpackHalf2x16((w[WOFF + ((off) >> 2)] >> (((off) & 2u) * 8u)) & 0xffffu).x

int s8(uint b) { return int(b << 24) >> 24; }
