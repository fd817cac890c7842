/* AVX-512 VNNI kernels of the integer path (compiled with the AVX-512 flags
 * and -mavx512vnni): the decode dot products. VPDPBUSD multiplies unsigned
 * by signed bytes and sums groups of 4 into int32 lanes in one
 * instruction.
 *
 * There is no integer GEMM for prompts: on the dev VM's core VPDPBUSD and
 * VPDPWSSD issue about 1.8 G/s against 4.4 G/s for 512-bit FMAs, so with
 * 16-bit activations (two byte planes, or VPDPWSSD) the integer path
 * peaks at ~57 G multiply-adds/s against ~70 for F32 FMAs; prompts take
 * the F32 GEMM over dequantized rows (docs/performance.md). */
#include <immintrin.h>
#include <string.h>

#include "../../../lib/util.h"
#include "simd_avx2.h"
#include "x86.h"

/* ---- matrix-vector (decode): two blocks per 512-bit step ----
 *
 * Weights are made unsigned (Q8_0: w + 128 by flipping the sign bit; Q4_0:
 * the nibbles), so no sign trick is needed (AVX-512 has no VPSIGNB): per
 * step, two VPDPBUSD (high plane, shift, low plane), one convert, one FMA
 * with the two blocks' scales. The offset comes out per block through the
 * activation sums: sum(w x) = sum(u x) - o sum(x). The scales of 16
 * blocks are gathered from the strided fp16 fields at once. */

/* sc[k] = fp16 scale of weight block b0 + k times the activation scale,
 * for k < 16 (the caller guarantees 16 blocks exist); returns, as a
 * vector, o * sc[k] * s[k] for the offset. */
static __m512 scales16(const uint8_t *w, int bsz, const float *xd, const int32_t *xs,
                       int64_t b0, float o, float *sc) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                                             12, 13, 14, 15), _mm512_set1_epi32(bsz));
    /* 4-byte gathers at each block start: the low half is the fp16 scale */
    __m512i raw = _mm512_i32gather_epi32(idx, (const void *)(w + (size_t)b0 * bsz), 1);
    __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(raw));
    __m512 v = _mm512_mul_ps(d, _mm512_loadu_ps(xd + b0));
    _mm512_storeu_ps(sc, v);
    return _mm512_mul_ps(_mm512_mul_ps(v, _mm512_set1_ps(o)),
                         _mm512_cvtepi32_ps(_mm512_loadu_si512(xs + b0)));
}

/* [sc[k] x 8, sc[k + 1] x 8] */
static __m512 pair_scale(const float *sc) {
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)sc))));
}

static __m512i dot_pair(__m512i u, em_q8x_row x, int64_t i) {
    __m512i h = _mm512_loadu_si512(x.q + i * 32), l = _mm512_loadu_si512(x.lo + i * 32);
    __m512i acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, h);
    return _mm512_dpbusd_epi32(_mm512_slli_epi32(acc, 8), u, l);
}

static __m512i q8_pair(const uint8_t *b) { /* blocks at b and b + 34, made unsigned */
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b + 2))),
                                   _mm256_loadu_si256((const __m256i *)(b + 36)), 1);
    return _mm512_xor_si512(v, _mm512_set1_epi8(-128));
}

/* blocks at b and b + 18 as [lo nibbles, hi nibbles] of each: the two
 * 16-byte fields each fill two 128-bit lanes, and one variable shift
 * (0 or 4 per lane) and a mask split the nibbles, 5 instructions where
 * unpacking each block in 256 bits took 12 */
static __m512i q4_pair(const uint8_t *b) {
    __m256i two = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(b + 2))),
                                          _mm_loadu_si128((const __m128i *)(b + 20)), 1);
    __m512i v = _mm512_shuffle_i64x2(_mm512_castsi256_si512(two), _mm512_castsi256_si512(two), 0x50);
    const long long s4 = 0x0004000400040004ll;
    const __m512i sh = _mm512_setr_epi64(0, 0, s4, s4, 0, 0, s4, s4);
    return _mm512_and_si512(_mm512_srlv_epi16(v, sh), _mm512_set1_epi8(15));
}

/* Blocks this far ahead are prefetched: the scale gather needs each
 * group's first line at once, and without the hint decode stalled on it
 * (Q8_0 dot on one core: 70% of the read bandwidth without, 90-97% with;
 * Q4_0 45% -> 50%, and 56-61% with the q4_pair above). */
#define EM_PREFETCH_BLOCKS 64

typedef __m512i (*pair_fn)(const uint8_t *b);

static float dot_vnni(int64_t n, const uint8_t *w, em_q8x_row x, int bsz, float o, pair_fn pair,
                      float (*tail)(int64_t n, const void *w, em_q8x_row x)) {
    int64_t nb = n / 32, b0 = 0;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(), corr = _mm512_setzero_ps();
    float sc[16];
    for (; b0 + 16 <= nb; b0 += 16) {
        for (int p = 0; p < 16 * bsz; p += 64)
            _mm_prefetch((const char *)w + (b0 + EM_PREFETCH_BLOCKS) * bsz + p, _MM_HINT_T0);
        corr = _mm512_add_ps(corr, scales16(w, bsz, x.d, x.s, b0, o, sc));
        for (int k = 0; k < 16; k += 4) {
            __m512i p0 = dot_pair(pair(w + (size_t)(b0 + k) * bsz), x, b0 + k);
            __m512i p1 = dot_pair(pair(w + (size_t)(b0 + k + 2) * bsz), x, b0 + k + 2);
            acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), pair_scale(sc + k), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), pair_scale(sc + k + 2), acc1);
        }
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) - _mm512_reduce_add_ps(corr);
    if (b0 < nb) /* fewer than 16 blocks left: the AVX2 kernel (VNNI implies AVX2) */
        sum += tail((nb - b0) * 32, w + (size_t)b0 * bsz, (em_q8x_row){ x.q + b0 * 32, x.lo + b0 * 32,
                                                                        x.d + b0, x.s + b0 });
    return sum;
}

float em_dot_q8_0_q8x_vnni(int64_t n, const void *w, em_q8x_row x) {
    return dot_vnni(n, w, x, 34, 128.0f, q8_pair, em_dot_q8_0_q8x_avx2);
}

float em_dot_q4_0_q8x_vnni(int64_t n, const void *w, em_q8x_row x) {
    return dot_vnni(n, w, x, 18, 8.0f, q4_pair, em_dot_q4_0_q8x_avx2);
}
