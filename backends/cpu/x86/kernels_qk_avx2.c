/* AVX2 kernels for Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K (compiled with
 * -mavx2 -mfma -mf16c). Each type has one unpacker that turns a unit of
 * blocks (one block of 32, or a K-quant's super-block of 8) into the
 * unpacked form of lib/quant.h: 32 signed bytes per block and the float
 * factors w = a[j / 16] q + c. Two shared loops use it: the integer-path
 * dot product (decode) and the dequantization to F32 (prompt tiles).
 *
 * The dot keeps each block's integer sums in 32-bit lanes, four lanes per
 * 16 weights, and applies the scales in float: 256 hi + lo times a 6- or
 * 8-bit sub-block scale, summed over a super-block, would not fit 32 bits. */
#include <immintrin.h>
#include <string.h>

#include "../../../lib/quant.h"
#include "simd_avx2.h"
#include "x86.h"

typedef struct unit {
    __m256i q[8];
    float a0[8], a1[8], c[8];
} unit;

/* 32 bits -> 32 bytes, 0x10 where the bit is set (bit j for byte j) */
static inline __m256i bits_to_16s(uint32_t bits) {
    __m256i v = _mm256_set1_epi32((int)bits);
    const __m256i pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2,
                                          2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i mask = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    v = _mm256_and_si256(_mm256_shuffle_epi8(v, pick), mask);
    return _mm256_and_si256(_mm256_cmpeq_epi8(v, mask), _mm256_set1_epi8(0x10));
}

static inline int unpack_q4_1(const uint8_t *b, unit *u) {
    u->q[0] = q4_nibbles(b + 4);
    u->a0[0] = u->a1[0] = f16_at(b);
    u->c[0] = f16_at(b + 2);
    return 1;
}

static inline __m256i q5_values(const uint8_t *qh, const uint8_t *qs) {
    uint32_t h;
    memcpy(&h, qh, 4);
    return _mm256_or_si256(q4_nibbles(qs), bits_to_16s(h));
}

static inline int unpack_q5_0(const uint8_t *b, unit *u) {
    u->q[0] = _mm256_sub_epi8(q5_values(b + 2, b + 6), _mm256_set1_epi8(16));
    u->a0[0] = u->a1[0] = f16_at(b);
    u->c[0] = 0;
    return 1;
}

static inline int unpack_q5_1(const uint8_t *b, unit *u) {
    u->q[0] = q5_values(b + 4, b + 8);
    u->a0[0] = u->a1[0] = f16_at(b);
    u->c[0] = f16_at(b + 2);
    return 1;
}

/* the 6-bit scales and mins of Q4_K/Q5_K as float factors */
static inline void k_scales(const uint8_t *b, unit *u) {
    float d = f16_at(b), dmin = f16_at(b + 2);
    const uint8_t *s = b + 4;
    for (int j = 0; j < 8; j++) {
        int sc, m;
        em_k_scale_min(s, j, &sc, &m);
        u->a0[j] = u->a1[j] = d * (float)sc;
        u->c[j] = -(dmin * (float)m);
    }
}

static inline int unpack_q4_k(const uint8_t *b, unit *u) {
    k_scales(b, u);
    const __m256i low4 = _mm256_set1_epi8(15);
    for (int c = 0; c < 4; c++) {
        __m256i raw = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * c));
        u->q[2 * c] = _mm256_and_si256(raw, low4);
        u->q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
    }
    return 8;
}

static inline int unpack_q5_k(const uint8_t *b, unit *u) {
    k_scales(b, u);
    const __m256i low4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
    __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 16));
    for (int c = 0; c < 4; c++) {
        __m256i raw = _mm256_loadu_si256((const __m256i *)(b + 48 + 32 * c));
        /* bit 2c of each qh byte for the low half, 2c + 1 for the high */
        __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one);
        __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one);
        u->q[2 * c] = _mm256_or_si256(_mm256_and_si256(raw, low4), _mm256_slli_epi16(h0, 4));
        u->q[2 * c + 1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), low4),
                                          _mm256_slli_epi16(h1, 4));
    }
    return 8;
}

static inline int unpack_q6_k(const uint8_t *b, unit *u) {
    float d = f16_at(b + 208);
    const int8_t *sc = (const int8_t *)(b + 192);
    const __m256i low4 = _mm256_set1_epi8(15), three = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
    for (int h = 0; h < 2; h++) {
        __m256i ql0 = _mm256_loadu_si256((const __m256i *)(b + 64 * h));
        __m256i ql1 = _mm256_loadu_si256((const __m256i *)(b + 64 * h + 32));
        __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h));
        const __m256i nib[4] = { _mm256_and_si256(ql0, low4), _mm256_and_si256(ql1, low4),
                                 _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                                 _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4) };
        for (int part = 0; part < 4; part++) {
            __m256i top = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * part), three);
            u->q[4 * h + part] = _mm256_sub_epi8(_mm256_or_si256(nib[part], _mm256_slli_epi16(top, 4)), off);
        }
    }
    for (int k = 0; k < 8; k++) {
        u->a0[k] = d * (float)sc[2 * k];
        u->a1[k] = d * (float)sc[2 * k + 1];
        u->c[k] = 0;
    }
    return 8;
}

/* sum over 32 weights of q * (256 hi + lo), as float lanes: lanes 0-3 the
 * first 16 weights, lanes 4-7 the other 16. |256 hi + lo| * |q| * 16 stays
 * below 2^24 for every type, so the planes combine exactly in int32.
 * Unsigned q (Q4_1, Q5_1, Q4_K, Q5_K) multiply directly as VPMADDUBSW's
 * unsigned operand; signed q take the sign trick. */
static inline __m256 block_sums(__m256i q, const int8_t *hi, const int8_t *lo, int unsigned_q) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i xh = _mm256_loadu_si256((const __m256i *)hi), xl = _mm256_loadu_si256((const __m256i *)lo);
    __m256i uq = q;
    if (!unsigned_q) {
        uq = _mm256_sign_epi8(q, q);
        xh = _mm256_sign_epi8(xh, q);
        xl = _mm256_sign_epi8(xl, q);
    }
    __m256i h = _mm256_madd_epi16(_mm256_maddubs_epi16(uq, xh), ones);
    __m256i l = _mm256_madd_epi16(_mm256_maddubs_epi16(uq, xl), ones);
    return _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_slli_epi32(h, 8), l));
}

/* sum over 32 weights of q * x.q, one plane (act_type Q8_0), lanes as in
 * block_sums. A VPMADDUBSW pair is at most 2 * 32 * 127, exact in int16. */
static inline __m256 block_sums_q8(__m256i q, const int8_t *xq, int unsigned_q) {
    __m256i x = _mm256_loadu_si256((const __m256i *)xq), uq = q;
    if (!unsigned_q) {
        uq = _mm256_sign_epi8(q, q);
        x = _mm256_sign_epi8(x, q);
    }
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(uq, x), _mm256_set1_epi16(1)));
}

/* flags of each type's kernels: AFFINE, its q are unsigned and it has a
 * min c (Q4_1, Q5_1, Q4_K, Q5_K; the others have c = 0); SPLIT_SCALES, its
 * two halves of 16 have their own scales (Q6_K) */
#define AFFINE 1
#define SPLIT_SCALES 2
#define DEFINE_KERNELS(T, unit_bytes, flags)                                                   \
    /* the integer-path dot in the unpacked form: two activation planes     \
       (dot_q8x), or one (dot_q8, act_type Q8_0) */                          \
    static inline float dot_##T##_units(int64_t n, const void *w, em_q8x_row x, int one_plane) { \
        const uint8_t *b = w;                                                                  \
        __m256 acc = _mm256_setzero_ps();                                                      \
        float cterm = 0;                                                                       \
        unit u;                                                                                \
        for (int64_t i = 0; i < n / 32; b += (unit_bytes)) {                                   \
            int nb = unpack_##T(b, &u);                                                        \
            for (int k = 0; k < nb; k++, i++) {                                                \
                __m256 s = one_plane                                                           \
                               ? block_sums_q8(u.q[k], x.q + i * 32, (flags) & AFFINE)         \
                               : block_sums(u.q[k], x.q + i * 32, x.lo + i * 32, (flags) & AFFINE); \
                __m256 f = (flags) & SPLIT_SCALES                                              \
                               ? _mm256_setr_m128(_mm_set1_ps(u.a0[k] * x.d[i]),               \
                                                  _mm_set1_ps(u.a1[k] * x.d[i]))               \
                               : _mm256_set1_ps(u.a0[k] * x.d[i]);                             \
                acc = _mm256_fmadd_ps(s, f, acc);                                              \
                if ((flags) & AFFINE) cterm += u.c[k] * x.d[i] * (float)x.s[i];                \
            }                                                                                  \
        }                                                                                      \
        return hsum256(acc) + cterm;                                                           \
    }                                                                                          \
    float em_dot_##T##_q8x_avx2(int64_t n, const void *w, em_q8x_row x) {                      \
        return dot_##T##_units(n, w, x, 0);                                                    \
    }                                                                                          \
    /* the F32-activation dot (MoE experts, the LM head): weights                                  \
       converted in registers, a[j / 16] and c applied per block */                                \
    float em_dot_##T##_avx2(int64_t n, const void *w, const float *x) {                            \
        const uint8_t *b = w;                                                                      \
        __m256 acc = _mm256_setzero_ps(), accc = _mm256_setzero_ps();                              \
        unit u;                                                                                    \
        for (int64_t i = 0; i < n; b += (unit_bytes)) {                                            \
            int nb = unpack_##T(b, &u);                                                            \
            for (int k = 0; k < nb; k++, i += 32) {                                                \
                __m128i lo = _mm256_castsi256_si128(u.q[k]);                                       \
                __m128i hi = _mm256_extracti128_si256(u.q[k], 1);                                  \
                const __m128i part[4] = { lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8) };  \
                __m256 xs = _mm256_setzero_ps();                                                   \
                for (int p = 0; p < 4; p++) {                                                      \
                    __m256 xv = _mm256_loadu_ps(x + i + 8 * p);                                    \
                    __m256 v = _mm256_mul_ps(_mm256_set1_ps(p < 2 ? u.a0[k] : u.a1[k]),            \
                                             _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(part[p])));   \
                    acc = _mm256_fmadd_ps(v, xv, acc);                                             \
                    xs = _mm256_add_ps(xs, xv);                                                    \
                }                                                                                  \
                accc = _mm256_fmadd_ps(_mm256_set1_ps(u.c[k]), xs, accc);                          \
            }                                                                                      \
        }                                                                                          \
        return hsum256(_mm256_add_ps(acc, accc));                                                  \
    }                                                                                              \
    void em_##T##_to_f32_avx2(int64_t n, const void *src, float *dst) {                        \
        const uint8_t *b = src;                                                                \
        unit u;                                                                                \
        for (int64_t i = 0; i < n; b += (unit_bytes)) {                                        \
            int nb = unpack_##T(b, &u);                                                        \
            for (int k = 0; k < nb; k++, i += 32) {                                            \
                __m128i lo = _mm256_castsi256_si128(u.q[k]), hi = _mm256_extracti128_si256(u.q[k], 1); \
                const __m128i part[4] = { lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8) }; \
                __m256 c = _mm256_set1_ps(u.c[k]);                                             \
                for (int p = 0; p < 4; p++) {                                                  \
                    __m256 a = _mm256_set1_ps(p < 2 ? u.a0[k] : u.a1[k]);                     \
                    __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(part[p]));              \
                    _mm256_storeu_ps(dst + i + 8 * p, _mm256_add_ps(_mm256_mul_ps(a, v), c));  \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }

/* Eight blocks' int32 lanes to one vector of their eight totals (lane k
 * block k): pairwise sums within 128-bit halves, then the halves. */
static inline __m256i sum8_blocks(const __m256i s[8]) {
    __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(s[4], s[5]), _mm256_hadd_epi32(s[6], s[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20),
                            _mm256_permute2x128_si256(a, b, 0x31));
}

/* Q4_K and Q5_K, one plane, a super-block at a time: the 6-bit scales
 * and mins unpacked as bytes with 32-bit masks (the layout of
 * em_k_scale_min); each block's products summed to int32 lanes, the eight
 * block totals gathered into one vector (VPHADDD), then scaled as floats:
 * a total is at most 32 * 31 * 127 and a scale 63, so the product is
 * exact. The mins' term is one vector FMA per super-block. The
 * unpacked-form loop spent most of its time converting scales one block
 * at a time. Q5_K: the fifth bits of block 2c and 2c + 1 are bits 2c and
 * 2c + 1 of the 32 qh bytes. */
static inline float dot_q45_k_q8(int64_t n, const void *w, em_q8x_row x, int five) {
    const uint8_t *b = w;
    const size_t unit = five ? 176 : 144, qs = five ? 48 : 16;
    const __m256i low4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps(), cacc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i += 8, b += unit) {
        uint32_t u0, u1, u2;
        memcpy(&u0, b + 4, 4);
        memcpy(&u1, b + 8, 4);
        memcpy(&u2, b + 12, 4);
        uint32_t sc_lo = u0 & 0x3f3f3f3fu, m_lo = u1 & 0x3f3f3f3fu;
        uint32_t sc_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u);
        uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u);
        __m256i sc = _mm256_cvtepu8_epi32(_mm_setr_epi32((int)sc_lo, (int)sc_hi, 0, 0));
        __m256i mn = _mm256_cvtepu8_epi32(_mm_setr_epi32((int)m_lo, (int)m_hi, 0, 0));
        __m256i sums[8];
        for (int c = 0; c < 4; c++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(b + qs + 32 * c));
            __m256i q0 = _mm256_and_si256(raw, low4);
            __m256i q1 = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
            if (five) {
                __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 16));
                __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one);
                __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one);
                q0 = _mm256_or_si256(q0, _mm256_slli_epi16(h0, 4));
                q1 = _mm256_or_si256(q1, _mm256_slli_epi16(h1, 4));
            }
            const int8_t *xq = x.q + (i + 2 * c) * 32;
            __m256i p0 = _mm256_maddubs_epi16(q0, _mm256_loadu_si256((const __m256i *)xq));
            __m256i p1 = _mm256_maddubs_epi16(q1, _mm256_loadu_si256((const __m256i *)(xq + 32)));
            sums[2 * c] = _mm256_madd_epi16(p0, ones);
            sums[2 * c + 1] = _mm256_madd_epi16(p1, ones);
        }
        __m256 dx = _mm256_loadu_ps(x.d + i);
        __m256 tot = _mm256_mul_ps(_mm256_cvtepi32_ps(sum8_blocks(sums)), _mm256_cvtepi32_ps(sc));
        acc = _mm256_fmadd_ps(_mm256_mul_ps(tot, dx), _mm256_set1_ps(f16_at(b)), acc);
        __m256 xs = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(x.s + i)));
        __m256 mterm = _mm256_mul_ps(_mm256_cvtepi32_ps(mn), _mm256_mul_ps(dx, xs));
        cacc = _mm256_fmadd_ps(mterm, _mm256_set1_ps(f16_at(b + 2)), cacc);
    }
    return hsum256(_mm256_sub_ps(acc, cacc));
}

/* Q6_K, one plane, the same shape: unsigned 6-bit q times x minus 32
 * times x (two VPMADDUBSW, pairs at most 2 * 63 * 127, exact in int16,
 * their difference too), summed to int32 lanes per block. Four blocks'
 * lanes reduce by two VPHADDD rounds to [first halves | second halves],
 * so each half block's total meets its own signed 8-bit scale in one
 * float multiply per four blocks (totals at most 16 * 32 * 127, times
 * 128: exact). */
static float dot_q6_k_q8(int64_t n, const void *w, em_q8x_row x) {
    const uint8_t *b = w;
    const __m256i low4 = _mm256_set1_epi8(15), three = _mm256_set1_epi8(3);
    const __m256i off = _mm256_set1_epi8(32), ones = _mm256_set1_epi16(1);
    /* scales [0 2 4 6 1 3 5 7 | 8 10 12 14 9 11 13 15]: half 0 of blocks
     * 0-3, half 1 of blocks 0-3, then blocks 4-7 */
    const __m128i order = _mm_setr_epi8(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i += 8, b += 210) {
        __m128i sc = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(b + 192)), order);
        __m256 sc03 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc));
        __m256 sc47 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8)));
        __m256i sums[8];
        for (int h = 0; h < 2; h++) {
            __m256i ql0 = _mm256_loadu_si256((const __m256i *)(b + 64 * h));
            __m256i ql1 = _mm256_loadu_si256((const __m256i *)(b + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h));
            const __m256i nib[4] = { _mm256_and_si256(ql0, low4), _mm256_and_si256(ql1, low4),
                                     _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                                     _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4) };
            for (int part = 0; part < 4; part++) {
                int k = 4 * h + part;
                __m256i top = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * part), three);
                __m256i q = _mm256_or_si256(nib[part], _mm256_slli_epi16(top, 4));
                __m256i xq = _mm256_loadu_si256((const __m256i *)(x.q + (i + k) * 32));
                __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q, xq), _mm256_maddubs_epi16(off, xq));
                sums[k] = _mm256_madd_epi16(p, ones);
            }
        }
        /* [half 0 of blocks 0-3 | half 1 of blocks 0-3], then blocks 4-7 */
        __m256i t03 = _mm256_hadd_epi32(_mm256_hadd_epi32(sums[0], sums[1]),
                                        _mm256_hadd_epi32(sums[2], sums[3]));
        __m256i t47 = _mm256_hadd_epi32(_mm256_hadd_epi32(sums[4], sums[5]),
                                        _mm256_hadd_epi32(sums[6], sums[7]));
        __m256 dx03 = _mm256_broadcast_ps((const __m128 *)(x.d + i));
        __m256 dx47 = _mm256_broadcast_ps((const __m128 *)(x.d + i + 4));
        __m256 f = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(t03), sc03), dx03);
        f = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(t47), sc47), dx47, f);
        acc = _mm256_fmadd_ps(f, _mm256_set1_ps(f16_at(b + 208)), acc);
    }
    return hsum256(acc);
}

DEFINE_KERNELS(q4_1, 20, AFFINE)
DEFINE_KERNELS(q5_0, 22, 0)
DEFINE_KERNELS(q5_1, 24, AFFINE)
DEFINE_KERNELS(q4_k, 144, AFFINE)
DEFINE_KERNELS(q5_k, 176, AFFINE)
DEFINE_KERNELS(q6_k, 210, SPLIT_SCALES)

/* the one-plane dots: the K-quants their own loops, the others the
 * unpacked form */
float em_dot_q4_k_q8_avx2(int64_t n, const void *w, em_q8x_row x) {
    return dot_q45_k_q8(n, w, x, 0);
}
float em_dot_q5_k_q8_avx2(int64_t n, const void *w, em_q8x_row x) {
    return dot_q45_k_q8(n, w, x, 1);
}
float em_dot_q6_k_q8_avx2(int64_t n, const void *w, em_q8x_row x) {
    return dot_q6_k_q8(n, w, x);
}
#define FORWARD_Q8(T)                                                                          \
    float em_dot_##T##_q8_avx2(int64_t n, const void *w, em_q8x_row x) {                       \
        return dot_##T##_units(n, w, x, 1);                                                    \
    }
FORWARD_Q8(q4_1)
FORWARD_Q8(q5_0)
FORWARD_Q8(q5_1)
