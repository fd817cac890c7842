/* Compute pipelines from the SPIR-V compiled at build time (shaders/,
 * embedded by meson), one per shader and variant: a variant is the
 * shader's specialization constant 0 (weight type, or which binary or
 * unary op), never a copy of the source. Recording is in record.c. */
#include <string.h>

#include "vk.h"

#include "binary.spv.h"
#include "attn.spv.h"
#include "get_rows.spv.h"
#include "kv_store.spv.h"
#include "matmul.spv.h"
#include "mul_mm.spv.h"
#include "mul_mv.spv.h"
#include "rms_norm.spv.h"
#include "rope.spv.h"
#include "softmax.spv.h"
#include "unary.spv.h"

/* Weight-type codes the shaders switch on (specialization constant 0). */
enum { TY_F32 = 0, TY_F16 = 1, TY_Q4_0 = 2, TY_Q8_0 = 8 };

/* Each pipeline: its shader, name and specialization constants 0
 * (variant), 1 (mul_mv's tokens per pass) and 3 (mul_mv's folded op);
 * constant 2 (mul_mv's invocations per row) is the device's (see
 * make_pipeline). mul_mv's 24 variants are filled in by mul_mv_shader. */
typedef struct shader_info {
    const uint32_t *code;
    size_t size;
    const char *name;
    uint32_t spec[4];
} shader_info;

static const shader_info shader_of[EM_VK_MUL_MV] = {
#define S(arr, nm, v) { arr, sizeof arr, nm, { v, 0, 0, 0 } }
    [EM_VK_MATMUL_F32] = S(em_spv_matmul, "matmul_f32", TY_F32),
    [EM_VK_MATMUL_F16] = S(em_spv_matmul, "matmul_f16", TY_F16),
    [EM_VK_MATMUL_Q8_0] = S(em_spv_matmul, "matmul_q8_0", TY_Q8_0),
    [EM_VK_MATMUL_Q4_0] = S(em_spv_matmul, "matmul_q4_0", TY_Q4_0),
    [EM_VK_GET_ROWS_F32] = S(em_spv_get_rows, "get_rows_f32", TY_F32),
    [EM_VK_GET_ROWS_F16] = S(em_spv_get_rows, "get_rows_f16", TY_F16),
    [EM_VK_GET_ROWS_Q8_0] = S(em_spv_get_rows, "get_rows_q8_0", TY_Q8_0),
    [EM_VK_GET_ROWS_Q4_0] = S(em_spv_get_rows, "get_rows_q4_0", TY_Q4_0),
    [EM_VK_RMS_NORM] = S(em_spv_rms_norm, "rms_norm", 0),
    [EM_VK_ADD] = S(em_spv_binary, "add", 0),
    [EM_VK_MUL] = S(em_spv_binary, "mul", 1),
    [EM_VK_SWIGLU] = S(em_spv_unary, "swiglu", 0),
    [EM_VK_SCALE] = S(em_spv_unary, "scale", 1),
    [EM_VK_SIGMOID] = S(em_spv_unary, "sigmoid", 2),
    [EM_VK_SOFTMAX] = S(em_spv_softmax, "softmax", 0),
    [EM_VK_ROPE] = S(em_spv_rope, "rope", 0),
    [EM_VK_KV_STORE_F32] = S(em_spv_kv_store, "kv_store_f32", TY_F32),
    [EM_VK_KV_STORE_F16] = S(em_spv_kv_store, "kv_store_f16", TY_F16),
    [EM_VK_KV_STORE_Q8_0] = S(em_spv_kv_store, "kv_store_q8_0", TY_Q8_0),
    [EM_VK_ATTN_F32] = S(em_spv_attn, "attn_f32", TY_F32),
    [EM_VK_ATTN_F16] = S(em_spv_attn, "attn_f16", TY_F16),
    [EM_VK_ATTN_Q8_0] = S(em_spv_attn, "attn_q8_0", TY_Q8_0),
    [EM_VK_MUL_MM_F32] = S(em_spv_mul_mm, "mul_mm_f32", TY_F32),
    [EM_VK_MUL_MM_F16] = S(em_spv_mul_mm, "mul_mm_f16", TY_F16),
    [EM_VK_MUL_MM_Q8_0] = S(em_spv_mul_mm, "mul_mm_q8_0", TY_Q8_0),
    [EM_VK_MUL_MM_Q4_0] = S(em_spv_mul_mm, "mul_mm_q4_0", TY_Q4_0),
#undef S
};

static const uint32_t mv_types[4] = { TY_F32, TY_F16, TY_Q8_0, TY_Q4_0 };
static const char *const mv_names[24] = {
    "mul_mv8_f32", "mul_mv8_f16", "mul_mv8_q8_0", "mul_mv8_q4_0",
    "mul_mv1_f32", "mul_mv1_f16", "mul_mv1_q8_0", "mul_mv1_q4_0",
    "mul_mv8_add_f32", "mul_mv8_add_f16", "mul_mv8_add_q8_0", "mul_mv8_add_q4_0",
    "mul_mv1_add_f32", "mul_mv1_add_f16", "mul_mv1_add_q8_0", "mul_mv1_add_q4_0",
    "mul_mv8_swiglu_f32", "mul_mv8_swiglu_f16", "mul_mv8_swiglu_q8_0", "mul_mv8_swiglu_q4_0",
    "mul_mv1_swiglu_f32", "mul_mv1_swiglu_f16", "mul_mv1_swiglu_q8_0", "mul_mv1_swiglu_q4_0",
};

static shader_info info_of(int p) {
    if (p < EM_VK_MUL_MV) return shader_of[p];
    int v = p - EM_VK_MUL_MV, type = v % 4, one = (v / 4) % 2, mode = v / 8;
    return (shader_info){ em_spv_mul_mv, sizeof em_spv_mul_mv, mv_names[v],
                          { mv_types[type], one ? 1u : 8u, 0, (uint32_t)mode } };
}

const char *em_vk_pipe_name(int p) {
    return p >= 0 && p < EM_VK_PIPE_COUNT ? info_of(p).name : "copy";
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

static int make_pipeline(em_vk *vk, em_vk_pipe p) {
    shader_info si_ = info_of(p);
    if (p >= EM_VK_MUL_MV) si_.spec[2] = em_vk_mul_mv_tpr(vk->subgroup_size);
    VkShaderModuleCreateInfo mi = { .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                    .codeSize = si_.size,
                                    .pCode = si_.code };
    VkShaderModule mod;
    VK_TRY(vkCreateShaderModule(vk->dev, &mi, NULL, &mod), "vkCreateShaderModule");
    VkSpecializationMapEntry e[4];
    for (uint32_t i = 0; i < 4; i++) e[i] = (VkSpecializationMapEntry){ i, i * 4, 4 };
    VkSpecializationInfo si = { 4, e, sizeof si_.spec, si_.spec };
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = { .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                   .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                   .module = mod,
                   .pName = "main",
                   .pSpecializationInfo = &si },
        .layout = vk->pipe_layout,
    };
    VkResult r = vkCreateComputePipelines(vk->dev, VK_NULL_HANDLE, 1, &ci, NULL, &vk->pipes[p]);
    vkDestroyShaderModule(vk->dev, mod, NULL);
    VK_TRY(r, "vkCreateComputePipelines");
    return EMBER_OK;
}

int em_vk_pipelines_create(em_vk *vk);
void em_vk_pipelines_destroy(em_vk *vk);

int em_vk_pipelines_create(em_vk *vk) {
    int rc = make_layouts(vk);
    for (int p = 0; !rc && p < EM_VK_PIPE_COUNT; p++) {
        bool needs_subgroups = p >= EM_VK_MUL_MV;
        if (!needs_subgroups || vk->subgroup_arith) rc = make_pipeline(vk, (em_vk_pipe)p);
    }
    return rc;
}

void em_vk_pipelines_destroy(em_vk *vk) {
    for (int p = 0; p < EM_VK_PIPE_COUNT; p++)
        if (vk->pipes[p]) vkDestroyPipeline(vk->dev, vk->pipes[p], NULL);
    if (vk->pipe_layout) vkDestroyPipelineLayout(vk->dev, vk->pipe_layout, NULL);
    if (vk->set_layout) vkDestroyDescriptorSetLayout(vk->dev, vk->set_layout, NULL);
}
