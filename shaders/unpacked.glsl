// The block types read through the unpacked form of lib/quant.h: the 32
// weights of a block are w_j = a[j / 16] (q_j - UO) + c[j / 16] with q_j a
// small unsigned integer and UO the type's offset (16 for Q5_0, 32 for
// Q6_K, else 0), the arithmetic of the CPU's dequantization (Q4_1, Q5_0,
// Q5_1 and the K-quants). Device layout (backends/vulkan/weights.c),
// per GGUF block ("unit": 32 weights, or 256 for the K-quants):
//   quants, 16-byte aligned, UQW words per unit:
//     Q4_1, Q5_0, Q5_1: 16 bytes of nibbles (weight j low, j + 16 high)
//     Q4_K: 128 bytes qs (chunk c of 64 weights: byte 32c + l holds
//           weights 64c + l low and 64c + 32 + l high)
//     Q5_K: 32 bytes qh (bit s of byte l: fifth bit of sub-block s's
//           weight l), then qs as Q4_K
//     Q6_K: 128 bytes ql, 64 bytes qh (as GGUF)
//   meta, UMW words per unit, from `soff`:
//     Q4_1: d|m; Q5_0: d, qh; Q5_1: d|m, qh; Q4_K, Q5_K: d|dmin,
//     scales[12]; Q6_K: int8 scales[16], d
// Include after common.glsl; TYPE is the shader's weight type.

const uint UPB = TYPE >= TY_Q4_K ? 8u : 1u; // blocks of 32 per unit
const uint UQW = TYPE == TY_Q4_K ? 32u : TYPE == TY_Q5_K ? 40u : TYPE == TY_Q6_K ? 48u : 4u;
const uint UMW = TYPE == TY_Q4_1 ? 1u : TYPE >= TY_Q4_K ? (TYPE == TY_Q6_K ? 5u : 4u) : 2u;
const float UO = TYPE == TY_Q5_0 ? 16.0 : TYPE == TY_Q6_K ? 32.0 : 0.0;

// bits 0-3 of h, one to each byte's bit 0
uint spread4(uint h) { return (h & 1u) | ((h & 2u) << 7) | ((h & 4u) << 14) | ((h & 8u) << 21); }
uint byte_of(uint v, uint i) { return (v >> (8u * i)) & 0xffu; }

// the 4 bytes of q as floats
vec4 u8x4(uint q) { return vec4((uvec4(q) >> uvec4(0u, 8u, 16u, 24u)) & 0xffu); }

// Block b (counted from the tensor's start) of the weights in BUF (uint
// words; BUF4 its uvec4 view, for the quants), whose quants start at word
// QB (a multiple of 4) and meta at word MB: A, C (vec2) and Q (uint[8],
// weights 4i .. 4i + 3 in Q[i]'s bytes).
#define UBLOCK(BUF, BUF4, QB, MB, b, A, C, Q)                                                \
    {                                                                                         \
        uint u_ = (b) / UPB, s_ = (b) % UPB;                                                  \
        uint qw_ = (QB) + u_ * UQW, mw_ = (MB) + u_ * UMW;                                    \
        if (TYPE == TY_Q4_1 || TYPE == TY_Q5_0 || TYPE == TY_Q5_1) {                          \
            vec2 dm_ = unpackHalf2x16(BUF[mw_]);                                              \
            uvec4 v_ = BUF4[qw_ / 4u];                                                        \
            Q[0] = v_.x & 0x0f0f0f0fu, Q[1] = v_.y & 0x0f0f0f0fu;                             \
            Q[2] = v_.z & 0x0f0f0f0fu, Q[3] = v_.w & 0x0f0f0f0fu;                             \
            Q[4] = (v_.x >> 4u) & 0x0f0f0f0fu, Q[5] = (v_.y >> 4u) & 0x0f0f0f0fu;             \
            Q[6] = (v_.z >> 4u) & 0x0f0f0f0fu, Q[7] = (v_.w >> 4u) & 0x0f0f0f0fu;             \
            if (TYPE != TY_Q4_1) {                                                            \
                uint h_ = BUF[mw_ + 1u];                                                      \
                [[unroll]] for (uint i_ = 0u; i_ < 8u; i_++)                                  \
                    Q[i_] |= spread4((h_ >> (4u * i_)) & 15u) << 4u;                          \
            }                                                                                 \
            A = vec2(dm_.x);                                                                  \
            C = vec2(TYPE == TY_Q5_0 ? 0.0 : dm_.y);                                          \
        } else if (TYPE == TY_Q4_K || TYPE == TY_Q5_K) {                                      \
            uvec4 m_ = BUF4[mw_ / 4u]; /* UMW 4: the unit's meta is one aligned uvec4 */      \
            vec2 dd_ = unpackHalf2x16(m_.x);                                                  \
            uint sc_, mn_;                                                                    \
            if (s_ < 4u) {                                                                    \
                sc_ = byte_of(m_.y, s_) & 63u, mn_ = byte_of(m_.z, s_) & 63u;                 \
            } else {                                                                          \
                uint e_ = byte_of(m_.w, s_ - 4u);                                             \
                sc_ = (e_ & 15u) | ((byte_of(m_.y, s_ - 4u) >> 6u) << 4u);                    \
                mn_ = (e_ >> 4u) | ((byte_of(m_.z, s_ - 4u) >> 6u) << 4u);                    \
            }                                                                                 \
            uint qs_ = (qw_ + (TYPE == TY_Q5_K ? 8u : 0u) + 8u * (s_ / 2u)) / 4u;             \
            uint sh_ = 4u * (s_ & 1u);                                                        \
            uvec4 a_ = BUF4[qs_], b_ = BUF4[qs_ + 1u];                                        \
            Q[0] = a_.x, Q[1] = a_.y, Q[2] = a_.z, Q[3] = a_.w;                               \
            Q[4] = b_.x, Q[5] = b_.y, Q[6] = b_.z, Q[7] = b_.w;                               \
            [[unroll]] for (uint i_ = 0u; i_ < 8u; i_++) Q[i_] = (Q[i_] >> sh_) & 0x0f0f0f0fu; \
            if (TYPE == TY_Q5_K) {                                                            \
                uvec4 h0_ = BUF4[qw_ / 4u], h1_ = BUF4[qw_ / 4u + 1u];                        \
                uint hb_[8] = uint[8](h0_.x, h0_.y, h0_.z, h0_.w, h1_.x, h1_.y, h1_.z, h1_.w);  \
                [[unroll]] for (uint i_ = 0u; i_ < 8u; i_++)                                  \
                    Q[i_] |= ((hb_[i_] >> s_) & 0x01010101u) << 4u;                           \
            }                                                                                 \
            A = vec2(dd_.x * float(sc_));                                                     \
            C = vec2(-(dd_.y * float(mn_)));                                                  \
        } else { /* Q6_K: half h_ of 128, part r_ of 32 */                                    \
            uint h_ = s_ / 4u, r_ = s_ % 4u;                                                  \
            uint ql_ = (qw_ + 16u * h_ + 8u * (r_ & 1u)) / 4u, sh_ = 4u * (r_ >> 1u);         \
            uint qh_ = (qw_ + 32u + 8u * h_) / 4u;                                            \
            uvec4 l0_ = BUF4[ql_], l1_ = BUF4[ql_ + 1u], g0_ = BUF4[qh_], g1_ = BUF4[qh_ + 1u]; \
            uint lo_[8] = uint[8](l0_.x, l0_.y, l0_.z, l0_.w, l1_.x, l1_.y, l1_.z, l1_.w);    \
            uint hi_[8] = uint[8](g0_.x, g0_.y, g0_.z, g0_.w, g1_.x, g1_.y, g1_.z, g1_.w);    \
            [[unroll]] for (uint i_ = 0u; i_ < 8u; i_++)                                      \
                Q[i_] = ((lo_[i_] >> sh_) & 0x0f0f0f0fu) |                                   \
                        (((hi_[i_] >> (2u * r_)) & 0x03030303u) << 4u);                       \
            uint si_ = 8u * h_ + 2u * r_; /* even: both scales in one word */                 \
            uint sw_ = BUF[mw_ + si_ / 4u] >> (8u * (si_ & 3u));                              \
            float d_ = unpackHalf2x16(BUF[mw_ + 4u]).x;                                       \
            A = d_ * vec2(float(s8(sw_ & 0xffu)), float(s8((sw_ >> 8u) & 0xffu)));            \
            C = vec2(0.0);                                                                    \
        }                                                                                     \
    }

// weight j (< 32) of a block given by A, C, Q
float ublock_at(vec2 A, vec2 C, uint Q[8], uint j) {
    float q = float(byte_of(Q[j / 4u], j & 3u)) - UO;
    return j < 16u ? A.x * q + C.x : A.y * q + C.y;
}
