/* Compute pipelines from the SPIR-V compiled at build time (shaders/,
 * embedded by meson), one per shader and variant: a variant is the
 * shader's specialization constant 0 (weight type, or which binary or
 * unary op), never a copy of the source. Recording is in record.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk.h"

#include "binary.spv.h"
#include "attn.spv.h"
#include "attn_tile.spv.h"
#include "get_rows.spv.h"
#include "kv_store.spv.h"
#include "matmul.spv.h"
#include "moe_route.spv.h"
#include "moe_sum.spv.h"
#include "mul_mm.spv.h"
#include "mul_mmc.spv.h"
#include "mul_mv.spv.h"
#include "mul_mvq.spv.h"
#include "mul_mvq_e.spv.h"
#include "quant_act.spv.h"
#include "rms_norm.spv.h"
#include "rope.spv.h"
#include "softmax.spv.h"
#include "unary.spv.h"

/* The weight types in em_vk_wtype_index's order, as the codes the
 * shaders switch on (specialization constant 0: GGUF's type numbers, see
 * shaders/common.glsl), and as names. */
static const uint32_t wtypes[EM_VK_WTYPES] = {
    EMBER_TYPE_F32, EMBER_TYPE_F16, EMBER_TYPE_Q8_0, EMBER_TYPE_Q4_0, EMBER_TYPE_Q4_1,
    EMBER_TYPE_Q5_0, EMBER_TYPE_Q5_1, EMBER_TYPE_Q4_K, EMBER_TYPE_Q5_K, EMBER_TYPE_Q6_K,
};
static const char *const wnames[EM_VK_WTYPES] = { "f32",  "f16",  "q8_0", "q4_0", "q4_1",
                                                  "q5_0", "q5_1", "q4_K", "q5_K", "q6_K" };

uint32_t em_vk_mul_mv_tpr(uint32_t subgroup_size) {
    uint32_t tpr = subgroup_size > 32 ? subgroup_size : 32;
    const char *e = getenv("EMBER_VULKAN_MV_TPR");
    unsigned long v = e && *e ? strtoul(e, NULL, 10) : 0;
    if ((v == 32 || v == 64 || v == 128) && v >= subgroup_size && v % subgroup_size == 0)
        tpr = (uint32_t)v;
    return tpr;
}

uint32_t em_vk_mul_mvq_wgs(const em_vk *vk, int one_token, int mode) {
    uint32_t own = 32 * em_vk_mul_mv_tpr(vk->subgroup_size);
    if (one_token && (mode == 3 || mode == 4) && !vk->no_own_blocks && own <= vk->max_wg) return own;
    return 128;
}

int em_vk_wtype_index(uint32_t type) {
    for (int i = 0; i < EM_VK_WTYPES; i++)
        if (wtypes[i] == type) return i;
    return -1;
}

/* Each pipeline: its shader, name and specialization constants 0
 * (variant), 1 (mul_mv's tokens per pass), 3 (mul_mv's folded op), 4
 * (mul_mv's folded norm) and 5 (mul_mv's experts); constant 2 (mul_mv's
 * invocations per row) is the device's (see make_pipeline). */
#define N_SPEC 8
typedef struct shader_info {
    const uint32_t *code;
    size_t size;
    const char *name;
    uint32_t spec[N_SPEC];
} shader_info;

/* the pipelines that are not per weight type */
static const shader_info shader_of[EM_VK_MUL_MM - EM_VK_RMS_NORM] = {
#define S(p, arr, nm, v) [p - EM_VK_RMS_NORM] = { arr, sizeof arr, nm, { v, 0, 0, 0, 0, 0 } }
    S(EM_VK_RMS_NORM, em_spv_rms_norm, "rms_norm", 0),
    S(EM_VK_ADD, em_spv_binary, "add", 0),
    S(EM_VK_MUL, em_spv_binary, "mul", 1),
    S(EM_VK_SWIGLU, em_spv_unary, "swiglu", 0),
    S(EM_VK_SCALE, em_spv_unary, "scale", 1),
    S(EM_VK_SIGMOID, em_spv_unary, "sigmoid", 2),
    S(EM_VK_SOFTMAX, em_spv_softmax, "softmax", 0),
    S(EM_VK_ROPE, em_spv_rope, "rope", 0),
    S(EM_VK_KV_STORE_F32, em_spv_kv_store, "kv_store_f32", EMBER_TYPE_F32),
    S(EM_VK_KV_STORE_F16, em_spv_kv_store, "kv_store_f16", EMBER_TYPE_F16),
    S(EM_VK_KV_STORE_Q8_0, em_spv_kv_store, "kv_store_q8_0", EMBER_TYPE_Q8_0),
    S(EM_VK_ATTN_F32, em_spv_attn, "attn_f32", EMBER_TYPE_F32),
    S(EM_VK_ATTN_F16, em_spv_attn, "attn_f16", EMBER_TYPE_F16),
    S(EM_VK_ATTN_Q8_0, em_spv_attn, "attn_q8_0", EMBER_TYPE_Q8_0),
#define S2(p, arr, nm, v, w) [p - EM_VK_RMS_NORM] = { arr, sizeof arr, nm, { v, w, 0, 0, 0, 0 } }
    S2(EM_VK_ATTN_F32_Q8, em_spv_attn, "attn_f32_q8", EMBER_TYPE_F32, 1),
    S2(EM_VK_ATTN_F16_Q8, em_spv_attn, "attn_f16_q8", EMBER_TYPE_F16, 1),
    S2(EM_VK_ATTN_Q8_0_Q8, em_spv_attn, "attn_q8_0_q8", EMBER_TYPE_Q8_0, 1),
    S2(EM_VK_ATTN_TILE_F32, em_spv_attn_tile, "attn_tile_f32", EMBER_TYPE_F32, 1),
    S2(EM_VK_ATTN_TILE_F32_2, em_spv_attn_tile, "attn_tile_f32", EMBER_TYPE_F32, 2),
    S2(EM_VK_ATTN_TILE_F32_4, em_spv_attn_tile, "attn_tile_f32", EMBER_TYPE_F32, 4),
    S2(EM_VK_ATTN_TILE_Q8_0, em_spv_attn_tile, "attn_tile_q8_0", EMBER_TYPE_Q8_0, 1),
    S2(EM_VK_ATTN_TILE_Q8_0_2, em_spv_attn_tile, "attn_tile_q8_0", EMBER_TYPE_Q8_0, 2),
    S2(EM_VK_ATTN_TILE_Q8_0_4, em_spv_attn_tile, "attn_tile_q8_0", EMBER_TYPE_Q8_0, 4),
#undef S2
    S(EM_VK_MOE_ROUTE, em_spv_moe_route, "moe_route", 0),
    S(EM_VK_MOE_SUM, em_spv_moe_sum, "moe_sum", 0),
    S(EM_VK_COPY, em_spv_unary, "copy", 3),
#undef S
};

/* p's shader; its name into nm (32 bytes) where it is per type */
static shader_info info_of(int p, char *nm) {
    shader_info si = { 0 };
    if (p >= EM_VK_RMS_NORM && p < EM_VK_MUL_MM) return shader_of[p - EM_VK_RMS_NORM];
    if (p < EM_VK_GET_ROWS || (p >= EM_VK_MUL_MM && p < EM_VK_MUL_MV)) {
        int t = p < EM_VK_GET_ROWS ? p - EM_VK_MATMUL : p - EM_VK_MUL_MM;
        bool mm = p >= EM_VK_MUL_MM;
        si = (shader_info){ mm ? em_spv_mul_mm : em_spv_matmul,
                            mm ? sizeof em_spv_mul_mm : sizeof em_spv_matmul, nm,
                            { wtypes[t], 0, 0, 0, 0, 0 } };
        snprintf(nm, 32, "%s_%s", mm ? "mul_mm" : "matmul", wnames[t]);
    } else if (p < EM_VK_RMS_NORM) {
        int t = p - EM_VK_GET_ROWS;
        si = (shader_info){ em_spv_get_rows, sizeof em_spv_get_rows, nm,
                            { wtypes[t], 0, 0, 0, 0, 0 } };
        snprintf(nm, 32, "get_rows_%s", wnames[t]);
    } else if (p == EM_VK_RMS_NORM_Q8) {
        si = (shader_info){ em_spv_rms_norm, sizeof em_spv_rms_norm, "rms_norm_q8", { 1, 0, 0, 0, 0, 0 } };
    } else if (p == EM_VK_QUANT_ACT || p == EM_VK_ROUND_ACT) {
        bool inplace = p == EM_VK_ROUND_ACT;
        si = (shader_info){ em_spv_quant_act, sizeof em_spv_quant_act,
                            inplace ? "round_act" : "quant_act", { inplace, 0, 0, 0, 0, 0 } };
    } else if (p >= EM_VK_MUL_MMC) {
        int t = p - EM_VK_MUL_MMC;
        si = (shader_info){ em_spv_mul_mmc, sizeof em_spv_mul_mmc, nm, { wtypes[t], 0, 0, 0, 0, 0 } };
        snprintf(nm, 32, "mul_mmc_%s", wnames[t]);
    } else if (p >= EM_VK_MUL_MVQ) {
        static const char *const modes[EM_VK_MVQ_MODES] = { "", "_add", "_swiglu", "_swiglu_q8",
                                                            "_add_norm_q8" };
        static const uint32_t fold[EM_VK_MVQ_MODES] = { 0, 1, 2, 2, 1 }, epi[EM_VK_MVQ_MODES] = {
            0, 0, 0, 1, 2 };
        int v = p - EM_VK_MUL_MVQ, t = v % EM_VK_WTYPES, one = (v / EM_VK_WTYPES) % 2,
            mode = (v / (2 * EM_VK_WTYPES)) % EM_VK_MVQ_MODES,
            emulated = v / (2 * EM_VK_MVQ_MODES * EM_VK_WTYPES);
        si = (shader_info){ emulated ? em_spv_mul_mvq_e : em_spv_mul_mvq,
                            emulated ? sizeof em_spv_mul_mvq_e : sizeof em_spv_mul_mvq, nm,
                            { wtypes[t], one ? 1u : 8u, 0, fold[mode], epi[mode], 0 } };
        snprintf(nm, 32, "mul_mvq%d%s_%s%s", one ? 1 : 8, modes[mode], wnames[t],
                 emulated ? "_e" : "");
    } else {
        static const char *const modes[6] = { "", "_add", "_swiglu", "_norm", "_id",
                                              "_id_swiglu" };
        static const uint32_t fold[6] = { 0, 1, 2, 0, 0, 2 };
        int v = p - EM_VK_MUL_MV, t = v % EM_VK_WTYPES, one = (v / EM_VK_WTYPES) % 2,
            mode = v / (2 * EM_VK_WTYPES);
        si = (shader_info){ em_spv_mul_mv, sizeof em_spv_mul_mv, nm,
                            { wtypes[t], one ? 1u : 8u, 0, fold[mode], mode == 3, mode >= 4 } };
        snprintf(nm, 32, "mul_mv%d%s_%s", one ? 1 : 8, modes[mode], wnames[t]);
    }
    return si;
}

const char *em_vk_pipe_name(int p, char buf[32]) {
    if (p < 0 || p >= EM_VK_PIPE_COUNT) return "copy";
    return info_of(p, buf).name;
}

static int make_layouts(em_vk *vk) {
    VkDescriptorSetLayoutBinding b[EM_VK_BINDINGS];
    for (uint32_t i = 0; i < EM_VK_BINDINGS; i++)
        b[i] = (VkDescriptorSetLayoutBinding){ .binding = i,
                                               .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                               .descriptorCount = 1,
                                               .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT };
    VkDescriptorSetLayoutCreateInfo dl = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                                           .bindingCount = EM_VK_BINDINGS,
                                           .pBindings = b };
    VK_TRY(vkCreateDescriptorSetLayout(vk->dev, &dl, NULL, &vk->set_layout),
           "vkCreateDescriptorSetLayout");
    VkPushConstantRange pr = { VK_SHADER_STAGE_COMPUTE_BIT, 0, EM_VK_PUSH_BYTES };
    VkPipelineLayoutCreateInfo pl = { .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                      .setLayoutCount = 1,
                                      .pSetLayouts = &vk->set_layout,
                                      .pushConstantRangeCount = 1,
                                      .pPushConstantRanges = &pr };
    VK_TRY(vkCreatePipelineLayout(vk->dev, &pl, NULL, &vk->pipe_layout), "vkCreatePipelineLayout");
    return EMBER_OK;
}

/* EMBER_VULKAN_PIPELINE_STATS: the driver's statistics of a pipeline
 * (NVIDIA's: registers per invocation, shared memory, ...), which tell a
 * kernel's occupancy; a diagnostic, printed once per pipeline. */
static void print_stats(const em_vk *vk, VkPipeline pipe, const char *name) {
    PFN_vkGetPipelineExecutableStatisticsKHR get = (PFN_vkGetPipelineExecutableStatisticsKHR)
        vkGetDeviceProcAddr(vk->dev, "vkGetPipelineExecutableStatisticsKHR");
    VkPipelineExecutableInfoKHR info = { .sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR,
                                         .pipeline = pipe };
    VkPipelineExecutableStatisticKHR st[24];
    uint32_t n = 24;
    for (uint32_t i = 0; i < n; i++)
        st[i] = (VkPipelineExecutableStatisticKHR){
            .sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR
        };
    if (!get || get(vk->dev, &info, &n, st) < 0) return;
    fprintf(stderr, "ember vulkan: %s:", name);
    for (uint32_t i = 0; i < n; i++) {
        const VkPipelineExecutableStatisticValueKHR *v = &st[i].value;
        switch (st[i].format) {
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR:
            fprintf(stderr, " %s=%u", st[i].name, v->b32);
            break;
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR:
            fprintf(stderr, " %s=%lld", st[i].name, (long long)v->i64);
            break;
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR:
            fprintf(stderr, " %s=%llu", st[i].name, (unsigned long long)v->u64);
            break;
        default: fprintf(stderr, " %s=%g", st[i].name, v->f64); break;
        }
    }
    fprintf(stderr, "\n");
}

static int make_pipeline(em_vk *vk, em_vk_pipe p) {
    char nm[32];
    shader_info si_ = info_of(p, nm);
    if (p >= EM_VK_MUL_MV && p < EM_VK_QUANT_ACT) si_.spec[2] = em_vk_mul_mv_tpr(vk->subgroup_size);
    if (p >= EM_VK_MUL_MVQ && p < EM_VK_QUANT_ACT) {
        int v = p - EM_VK_MUL_MVQ;
        si_.spec[7] = em_vk_mul_mvq_wgs(vk, (v / EM_VK_WTYPES) % 2, (v / (2 * EM_VK_WTYPES)) % EM_VK_MVQ_MODES);
    }
    VkShaderModuleCreateInfo mi = { .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                    .codeSize = si_.size,
                                    .pCode = si_.code };
    VkShaderModule mod;
    VK_TRY(vkCreateShaderModule(vk->dev, &mi, NULL, &mod), "vkCreateShaderModule");
    VkSpecializationMapEntry e[N_SPEC];
    for (uint32_t i = 0; i < N_SPEC; i++) e[i] = (VkSpecializationMapEntry){ i, i * 4, 4 };
    VkSpecializationInfo si = { N_SPEC, e, sizeof si_.spec, si_.spec };
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = { .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                   .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                   .module = mod,
                   .pName = "main",
                   .pSpecializationInfo = &si },
        .layout = vk->pipe_layout,
        .flags = vk->pipe_stats ? VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR : 0,
    };
    VkResult r = vkCreateComputePipelines(vk->dev, VK_NULL_HANDLE, 1, &ci, NULL, &vk->pipes[p]);
    vkDestroyShaderModule(vk->dev, mod, NULL);
    VK_TRY(r, "vkCreateComputePipelines");
    if (vk->pipe_stats) print_stats(vk, vk->pipes[p], si_.name);
    return EMBER_OK;
}

int em_vk_pipelines_create(em_vk *vk);
void em_vk_pipelines_destroy(em_vk *vk);
int em_vk_pipeline_make(em_vk *vk, em_vk_pipe p);

/* The layouts now; the pipelines on first use (em_vk_pipeline_make). */
int em_vk_pipelines_create(em_vk *vk) { return make_layouts(vk); }

int em_vk_pipeline_make(em_vk *vk, em_vk_pipe p) {
    if (p >= EM_VK_MUL_MV && p < EM_VK_QUANT_ACT && !vk->subgroup_arith)
        return em_error(vk->err, EMBER_ERR_INTERNAL, "vulkan: %s needs subgroup arithmetic",
                        em_vk_pipe_name(p, (char[32]){ 0 }));
    if (p >= EM_VK_MUL_MVQ && p < EM_VK_MUL_MVQ + 2 * EM_VK_MVQ_MODES * EM_VK_WTYPES &&
        !vk->has_idot)
        return em_error(vk->err, EMBER_ERR_INTERNAL, "vulkan: %s needs shaderIntegerDotProduct",
                        em_vk_pipe_name(p, (char[32]){ 0 }));
    if (p >= EM_VK_MUL_MMC && !vk->has_coopmat)
        return em_error(vk->err, EMBER_ERR_INTERNAL, "vulkan: %s needs cooperative matrices",
                        em_vk_pipe_name(p, (char[32]){ 0 }));
    return make_pipeline(vk, p);
}

void em_vk_pipelines_destroy(em_vk *vk) {
    for (int p = 0; p < EM_VK_PIPE_COUNT; p++)
        if (vk->pipes[p]) vkDestroyPipeline(vk->dev, vk->pipes[p], NULL);
    if (vk->pipe_layout) vkDestroyPipelineLayout(vk->dev, vk->pipe_layout, NULL);
    if (vk->set_layout) vkDestroyDescriptorSetLayout(vk->dev, vk->set_layout, NULL);
}
