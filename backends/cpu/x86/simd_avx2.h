/* Small AVX2/F16C helpers shared by the x86 kernel files (each compiled
 * with at least -mavx2 -mfma -mf16c). */
#ifndef EMBER_CPU_X86_SIMD_AVX2_H
#define EMBER_CPU_X86_SIMD_AVX2_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int32_t hsum256_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* A block's fp16 scale through F16C (not the portable software path). */
static inline float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* Q4_0's 16 bytes -> 32 values in [0, 15], in element order (element j in
 * the low nibble of byte j, element j + 16 in its high nibble). */
static inline __m256i q4_nibbles(const uint8_t *p) {
    __m128i raw = _mm_loadu_si128((const __m128i *)p);
    __m128i lo = _mm_and_si128(raw, _mm_set1_epi8(15));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(15));
    return _mm256_set_m128i(hi, lo);
}

#endif
