/* AVX2 kernels of the integer path (compiled with -mavx2 -mfma -mf16c):
 * activation quantization bit-identical to the reference, and Q8_0/Q4_0
 * dot products with the sign trick (|w| times x with w's sign, unsigned by
 * signed byte products summed in pairs, which cannot saturate because both
 * activation planes stay in [-127, 127]). */
#include <immintrin.h>
#include <string.h>

#include "../../../lib/util.h"
#include "simd_avx2.h"
#include "x86.h"

/* 32 int32 in four vectors -> 32 int8 (values already in [-127, 127]) */
static void store_i8(int8_t *q, __m256i i0, __m256i i1, __m256i i2, __m256i i3) {
    /* packs work within 128-bit lanes: restore the order afterwards */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, p);
}

/* hi and lo of 8 values u (see dsp.h); returns 256 hi + lo */
static __m256i split8(__m256 u, __m256i *hi, __m256i *lo) {
    /* a macro, not a const variable: the mode must be an immediate at -O0 too */
#define NEAREST (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
    __m256 h = _mm256_round_ps(u, NEAREST);
    __m256 l = _mm256_round_ps(_mm256_mul_ps(_mm256_sub_ps(u, h), _mm256_set1_ps(256.0f)), NEAREST);
#undef NEAREST
    l = _mm256_min_ps(_mm256_max_ps(l, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
    *hi = _mm256_cvtps_epi32(h);
    *lo = _mm256_cvtps_epi32(l);
    return _mm256_add_epi32(_mm256_slli_epi32(*hi, 8), *lo);
}

void em_quant_q8x_avx2(int64_t n, const float *x, int8_t *q, int8_t *lo, float *d, int32_t *s) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / 32; b++) {
        const float *v = x + b * 32;
        __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8);
        __m256 v2 = _mm256_loadu_ps(v + 16), v3 = _mm256_loadu_ps(v + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float e = amax / 127.0f, ie = e != 0.0f ? 1.0f / e : 0.0f;
        __m256 vie = _mm256_set1_ps(ie);
        __m256i h[4], l[4], sum = _mm256_setzero_si256();
        const __m256 vs[4] = { v0, v1, v2, v3 };
        for (int k = 0; k < 4; k++)
            sum = _mm256_add_epi32(sum, split8(_mm256_mul_ps(vs[k], vie), &h[k], &l[k]));
        s[b] = hsum256_epi32(sum);
        store_i8(q + b * 32, h[0], h[1], h[2], h[3]);
        store_i8(lo + b * 32, l[0], l[1], l[2], l[3]);
        d[b] = e / 256.0f;
    }
}

/* sum of w * x over 32 signed bytes, as 8 int32 lanes */
static __m256i dot32(__m256i aw, __m256i w, __m256i x) {
    __m256i p16 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* sum of w * (256 hi + lo) for block i of x */
static __m256i dot_hilo(__m256i w, em_q8x_row x, int64_t i) {
    __m256i aw = _mm256_sign_epi8(w, w);
    __m256i h = dot32(aw, w, _mm256_loadu_si256((const __m256i *)(x.q + i * 32)));
    __m256i l = dot32(aw, w, _mm256_loadu_si256((const __m256i *)(x.lo + i * 32)));
    return _mm256_add_epi32(_mm256_slli_epi32(h, 8), l);
}

static __m256i q4_bytes(const uint8_t *p) { /* 16 bytes -> 32 values in [-8, 7] */
    return _mm256_sub_epi8(q4_nibbles(p), _mm256_set1_epi8(8));
}

static __m256i q8_bytes(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* Scales of blocks [b0, b0 + n): weight fp16 times activation scale, in a
 * small array first, so the vector loop broadcasts them from memory. */
static void block_scales(const uint8_t *w, size_t bsz, const float *xd, int64_t b0, int64_t n,
                         float *sc) {
    for (int64_t k = 0; k < n; k++) sc[k] = f16_at(w + (size_t)(b0 + k) * bsz) * xd[b0 + k];
}

/* Both types: blocks of bsz bytes, an fp16 scale, then the values that
 * `load` turns into 32 signed bytes. Two accumulators hide the FMA latency. */
static inline float dot_blocks(int64_t n, const uint8_t *b, em_q8x_row x, size_t bsz,
                               __m256i (*load)(const uint8_t *p)) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float sc[16];
    for (int64_t b0 = 0; b0 < n / 32; b0 += 16) {
        int64_t nb = n / 32 - b0 < 16 ? n / 32 - b0 : 16;
        block_scales(b, bsz, x.d, b0, nb, sc);
        for (int64_t k = 0; k < nb; k++) {
            int64_t i = b0 + k;
            __m256 f = _mm256_cvtepi32_ps(dot_hilo(load(b + (size_t)i * bsz + 2), x, i));
            if (k & 1) acc1 = _mm256_fmadd_ps(f, _mm256_broadcast_ss(sc + k), acc1);
            else acc0 = _mm256_fmadd_ps(f, _mm256_broadcast_ss(sc + k), acc0);
        }
    }
    return hsum256(_mm256_add_ps(acc0, acc1));
}

float em_dot_q8_0_q8x_avx2(int64_t n, const void *w, em_q8x_row x) {
    return dot_blocks(n, w, x, 34, q8_bytes);
}

float em_dot_q4_0_q8x_avx2(int64_t n, const void *w, em_q8x_row x) {
    return dot_blocks(n, w, x, 18, q4_bytes);
}

/* Dequantization to F32 (prompt tiles are converted once per batch, then
 * multiplied by the F32 GEMM). */
void em_q8_0_to_f32_avx2(int64_t n, const void *src, float *dst) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n; i += 32, b += 34) {
        __m256 d = _mm256_set1_ps(f16_at(b));
        for (int k = 0; k < 4; k++) {
            __m128i q = _mm_loadl_epi64((const __m128i *)(b + 2 + 8 * k));
            _mm256_storeu_ps(dst + i + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
        }
    }
}

void em_q4_0_to_f32_avx2(int64_t n, const void *src, float *dst) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n; i += 32, b += 18) {
        __m256 d = _mm256_set1_ps(f16_at(b));
        __m256i v = q4_bytes(b + 2); /* 32 values in [-8, 7], in order */
        __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
        const __m128i parts[4] = { lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8) };
        for (int k = 0; k < 4; k++)
            _mm256_storeu_ps(dst + i + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[k]))));
    }
}
