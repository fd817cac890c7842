#ifndef EMBER_CPU_X86_H
#define EMBER_CPU_X86_H

#include <stdint.h>

float em_dot_f32_avx2(int64_t n, const void *w, const float *x);
float em_dot_f16_avx2(int64_t n, const void *w, const float *x);
float em_dot_bf16_avx2(int64_t n, const void *w, const float *x);
void em_bf16_to_f32_avx2(int64_t n, const void *src, float *dst);
void em_f16_to_f32_avx2(int64_t n, const void *src, float *dst);
void em_axpy_avx2(int64_t n, float a, const float *x, float *y);
void em_f32_to_f16_avx2(int64_t n, const float *src, void *dst);
void em_axpy_f16_avx2(int64_t n, float a, const void *x, float *y);
float em_dot_f32_avx512(int64_t n, const void *w, const float *x);
float em_dot_f16_avx512(int64_t n, const void *w, const float *x);
void em_attn_chunk_avx2(int64_t D, int64_t Dv, int64_t G, const float *q, int64_t ldq,
                        float scale, int n, const float *const *k, const float *const *v,
                        float *m, float *l, float *acc, int64_t lda);
void em_swiglu_avx2(int64_t n, const float *g, const float *u, float *y);
void em_swiglu_avx512(int64_t n, const float *g, const float *u, float *y);
void em_attn_chunk_avx512(int64_t D, int64_t Dv, int64_t G, const float *q, int64_t ldq,
                          float scale, int n, const float *const *k, const float *const *v,
                          float *m, float *l, float *acc, int64_t lda);

void em_gemm_f32_avx2(int64_t kn, int64_t nr, int64_t nt, const float *w, int64_t ldw,
                      const float *xT, int64_t ldx, float *yT, int64_t ldy);
void em_gemm_f32_avx512(int64_t kn, int64_t nr, int64_t nt, const float *w, int64_t ldw,
                        const float *xT, int64_t ldx, float *yT, int64_t ldy);

void em_gemm_bf16_avx512bf16(int64_t kn, int64_t nr, int64_t nt, const uint16_t *w, int64_t ldw,
                             const uint32_t *xT2, int64_t ldx, float *yT, int64_t ldy);

/* integer path (kernels_q_avx2.c, kernels_q_vnni.c) */
#include "../dsp.h"
void em_quant_q8x_avx2(int64_t n, const float *x, int8_t *hi, int8_t *lo, float *d, int32_t *s);
void em_q8_0_to_f32_avx2(int64_t n, const void *src, float *dst);
void em_q4_0_to_f32_avx2(int64_t n, const void *src, float *dst);
float em_dot_q8_0_q8x_avx2(int64_t n, const void *w, em_q8x_row x);
float em_dot_q4_0_q8x_avx2(int64_t n, const void *w, em_q8x_row x);
#define EM_QK_AVX2(T, type)                                                                \
    float em_dot_##T##_q8x_avx2(int64_t n, const void *w, em_q8x_row x);                     \
    float em_dot_##T##_q8_avx2(int64_t n, const void *w, em_q8x_row x);                      \
    float em_dot_##T##_avx2(int64_t n, const void *w, const float *x);                        \
    void em_##T##_to_f32_avx2(int64_t n, const void *src, float *dst);
EM_UNPACKED_TYPES(EM_QK_AVX2)
float em_dot_q8_0_q8x_vnni(int64_t n, const void *w, em_q8x_row x);
float em_dot_q6_k_q8_vnni(int64_t n, const void *w, em_q8x_row x);
float em_dot_q4_0_q8x_vnni(int64_t n, const void *w, em_q8x_row x);
void em_gemm_q8_vnni(int64_t nb, int64_t nr, int64_t nt, const uint8_t *w, int64_t ldw,
                     const float *dw, int64_t ldb, int32_t o, const int8_t *xq, const float *dx,
                     const int32_t *xs, int64_t ldx, float *yT, int64_t ldy);
void em_quant_q8_lanes_vnni(const float *x, int64_t ldx, int64_t T, int64_t b, int8_t *xq,
                            float *dx, int32_t *xs, int64_t ldq);
void em_gemm_q8_few_q8_0_vnni(int64_t nb, int64_t nr, int64_t nt, const void *w, size_t ldw,
                              const int8_t *xq, int64_t ldq, const float *dx, const int32_t *xs,
                              int64_t ldd, float *y, int64_t ldy, void *scratch);
void em_gemm_q8_few_q4_0_vnni(int64_t nb, int64_t nr, int64_t nt, const void *w, size_t ldw,
                              const int8_t *xq, int64_t ldq, const float *dx, const int32_t *xs,
                              int64_t ldd, float *y, int64_t ldy, void *scratch);
/* the 8-bit path without VNNI (kernels_q8_avx2.c) */
int32_t em_unpack_q8_0_avx2(int64_t nb, const void *src, uint8_t *w, float *dw);
int32_t em_unpack_q4_0_avx2(int64_t nb, const void *src, uint8_t *w, float *dw);
void em_quant_q8_lanes_avx2(const float *x, int64_t ldx, int64_t T, int64_t b, int8_t *xq,
                            float *dx, int32_t *xs, int64_t ldq);
void em_gemm_q8_avx2(int64_t nb, int64_t nr, int64_t nt, const uint8_t *w, int64_t ldw,
                     const float *dw, int64_t ldb, int32_t o, const int8_t *xq, const float *dx,
                     const int32_t *xs, int64_t ldx, float *yT, int64_t ldy);
void em_gemm_q8_few_q8_0_avx2(int64_t nb, int64_t nr, int64_t nt, const void *w, size_t ldw,
                              const int8_t *xq, int64_t ldq, const float *dx, const int32_t *xs,
                              int64_t ldd, float *y, int64_t ldy, void *scratch);
void em_gemm_q8_few_q4_0_avx2(int64_t nb, int64_t nr, int64_t nt, const void *w, size_t ldw,
                              const int8_t *xq, int64_t ldq, const float *dx, const int32_t *xs,
                              int64_t ldd, float *y, int64_t ldy, void *scratch);

#endif
