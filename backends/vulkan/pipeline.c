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
#include "mul_mv.spv.h"
#include "rms_norm.spv.h"
#include "rope.spv.h"
#include "softmax.spv.h"
#include "unary.spv.h"

/* Weight-type codes the shaders switch on (specialization constant 0). */
enum { TY_F32 = 0, TY_F16 = 1, TY_Q4_0 = 2, TY_Q8_0 = 8 };

/* Each pipeline: its shader and specialization constants 0 (variant) and
 * 1 (a second one: mul_mv's tokens per pass; unused by the others). */
static const struct {
    const uint32_t *code;
    size_t size;
    uint32_t spec[2];
} shader_of[EM_VK_PIPE_COUNT] = {
#define S(arr, v) { arr, sizeof arr, { v, 0 } }
#define S2(arr, v, w) { arr, sizeof arr, { v, w } }
    [EM_VK_MATMUL_F32] = S(em_spv_matmul, TY_F32),
    [EM_VK_MATMUL_F16] = S(em_spv_matmul, TY_F16),
    [EM_VK_MATMUL_Q8_0] = S(em_spv_matmul, TY_Q8_0),
    [EM_VK_MATMUL_Q4_0] = S(em_spv_matmul, TY_Q4_0),
    [EM_VK_GET_ROWS_F32] = S(em_spv_get_rows, TY_F32),
    [EM_VK_GET_ROWS_F16] = S(em_spv_get_rows, TY_F16),
    [EM_VK_GET_ROWS_Q8_0] = S(em_spv_get_rows, TY_Q8_0),
    [EM_VK_GET_ROWS_Q4_0] = S(em_spv_get_rows, TY_Q4_0),
    [EM_VK_RMS_NORM] = S(em_spv_rms_norm, 0),
    [EM_VK_ADD] = S(em_spv_binary, 0),
    [EM_VK_MUL] = S(em_spv_binary, 1),
    [EM_VK_SWIGLU] = S(em_spv_unary, 0),
    [EM_VK_SCALE] = S(em_spv_unary, 1),
    [EM_VK_SIGMOID] = S(em_spv_unary, 2),
    [EM_VK_SOFTMAX] = S(em_spv_softmax, 0),
    [EM_VK_ROPE] = S(em_spv_rope, 0),
    [EM_VK_KV_STORE_F32] = S(em_spv_kv_store, TY_F32),
    [EM_VK_KV_STORE_F16] = S(em_spv_kv_store, TY_F16),
    [EM_VK_KV_STORE_Q8_0] = S(em_spv_kv_store, TY_Q8_0),
    [EM_VK_ATTN_F32] = S(em_spv_attn, TY_F32),
    [EM_VK_ATTN_F16] = S(em_spv_attn, TY_F16),
    [EM_VK_ATTN_Q8_0] = S(em_spv_attn, TY_Q8_0),
    [EM_VK_MUL_MV_F32] = S2(em_spv_mul_mv, TY_F32, 8),
    [EM_VK_MUL_MV_F16] = S2(em_spv_mul_mv, TY_F16, 8),
    [EM_VK_MUL_MV_Q8_0] = S2(em_spv_mul_mv, TY_Q8_0, 8),
    [EM_VK_MUL_MV_Q4_0] = S2(em_spv_mul_mv, TY_Q4_0, 8),
    [EM_VK_MUL_MV1_F32] = S2(em_spv_mul_mv, TY_F32, 1),
    [EM_VK_MUL_MV1_F16] = S2(em_spv_mul_mv, TY_F16, 1),
    [EM_VK_MUL_MV1_Q8_0] = S2(em_spv_mul_mv, TY_Q8_0, 1),
    [EM_VK_MUL_MV1_Q4_0] = S2(em_spv_mul_mv, TY_Q4_0, 1),
#undef S
#undef S2
};

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
    VkShaderModuleCreateInfo mi = { .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                    .codeSize = shader_of[p].size,
                                    .pCode = shader_of[p].code };
    VkShaderModule mod;
    VK_TRY(vkCreateShaderModule(vk->dev, &mi, NULL, &mod), "vkCreateShaderModule");
    VkSpecializationMapEntry e[2] = { { 0, 0, sizeof(uint32_t) },
                                      { 1, sizeof(uint32_t), sizeof(uint32_t) } };
    VkSpecializationInfo si = { 2, e, sizeof shader_of[p].spec, shader_of[p].spec };
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
        bool needs_subgroups = p >= EM_VK_MUL_MV_F32 && p <= EM_VK_MUL_MV1_Q4_0;
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
