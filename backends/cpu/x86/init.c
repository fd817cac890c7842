/* x86 overrides, level by level: return at the first level the CPU (or
 * the mask) does not have. */
#include "../dsp.h"
#include "x86.h"

void em_cpu_dsp_init_x86(em_cpu_dsp *c, uint32_t flags) {
    if (!(flags & EMBER_CPU_AVX2)) return;
    c->dot[EMBER_TYPE_F32] = em_dot_f32_avx2;
    c->dot[EMBER_TYPE_F16] = em_dot_f16_avx2;
    c->dot[EMBER_TYPE_BF16] = em_dot_bf16_avx2;
    c->to_f32[EMBER_TYPE_F16] = em_f16_to_f32_avx2;
    c->to_f32[EMBER_TYPE_BF16] = em_bf16_to_f32_avx2;
    c->axpy = em_axpy_avx2;
    c->gemm_f32 = em_gemm_f32_avx2;
    c->f32_to_f16 = em_f32_to_f16_avx2;
    c->axpy_f16 = em_axpy_f16_avx2;
    c->attn_chunk = em_attn_chunk_avx2;
    c->swiglu = em_swiglu_avx2;
    c->quant_q8x = em_quant_q8x_avx2;
    c->to_f32[EMBER_TYPE_Q8_0] = em_q8_0_to_f32_avx2;
    c->to_f32[EMBER_TYPE_Q4_0] = em_q4_0_to_f32_avx2;
    c->dot_q8x[EMBER_TYPE_Q8_0] = em_dot_q8_0_q8x_avx2;
    c->dot_q8x[EMBER_TYPE_Q4_0] = em_dot_q4_0_q8x_avx2;
#define SET_QK(T, TYPE)                                                                     \
    c->dot_q8x[TYPE] = em_dot_##T##_q8x_avx2;                                                \
    c->dot_q8[TYPE] = em_dot_##T##_q8_avx2;                                                  \
    c->dot[TYPE] = em_dot_##T##_avx2;                                                        \
    c->to_f32[TYPE] = em_##T##_to_f32_avx2;
    EM_UNPACKED_TYPES(SET_QK)
#undef SET_QK
    c->gemm_q8 = em_gemm_q8_avx2;
    c->quant_q8_lanes = em_quant_q8_lanes_avx2;
    c->unpack_q8[EMBER_TYPE_Q8_0] = em_unpack_q8_0_avx2;
    c->unpack_q8[EMBER_TYPE_Q4_0] = em_unpack_q4_0_avx2;
    c->gemm_q8_few[EMBER_TYPE_Q8_0] = em_gemm_q8_few_q8_0_avx2;
    c->gemm_q8_few[EMBER_TYPE_Q4_0] = em_gemm_q8_few_q4_0_avx2;
    if (!(flags & EMBER_CPU_AVX512)) return;
    c->dot[EMBER_TYPE_F32] = em_dot_f32_avx512;
    c->dot[EMBER_TYPE_F16] = em_dot_f16_avx512;
    c->gemm_f32 = em_gemm_f32_avx512;
    c->attn_chunk = em_attn_chunk_avx512;
    c->swiglu = em_swiglu_avx512;
#if defined(EMBER_HAVE_X86_BF16)
    /* beside VNNI, not above it: Ice Lake has VNNI alone, Cooper Lake and
     * Zen 4 both */
    if (flags & EMBER_CPU_AVX512_BF16) c->gemm_bf16 = em_gemm_bf16_avx512bf16;
#endif
    if (!(flags & EMBER_CPU_AVX512_VNNI)) return;
    c->dot_q8x[EMBER_TYPE_Q8_0] = em_dot_q8_0_q8x_vnni;
    c->dot_q8x[EMBER_TYPE_Q4_0] = em_dot_q4_0_q8x_vnni;
    c->gemm_q8 = em_gemm_q8_vnni;
    c->quant_q8_lanes = em_quant_q8_lanes_vnni;
    c->gemm_q8_few[EMBER_TYPE_Q8_0] = em_gemm_q8_few_q8_0_vnni;
    c->gemm_q8_few[EMBER_TYPE_Q4_0] = em_gemm_q8_few_q4_0_vnni;
    c->dot_q8[EMBER_TYPE_Q6_K] = em_dot_q6_k_q8_vnni;
}
