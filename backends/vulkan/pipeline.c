/* Compute pipelines from the SPIR-V compiled at build time (shaders/,
 * embedded by meson), one per shader and variant: a variant is the
 * shader's specialization constant 0 (weight type, or which binary or
 * unary op), never a copy of the source. Then recording: descriptor sets
 * from a pool reset per recording, one dispatch and barrier per op. */
#include <string.h>

#include "vk.h"

#include "binary.spv.h"
#include "get_rows.spv.h"
#include "matmul.spv.h"
#include "rms_norm.spv.h"
#include "rope.spv.h"
#include "softmax.spv.h"
#include "unary.spv.h"

/* Weight-type codes the shaders switch on (specialization constant 0). */
enum { TY_F32 = 0, TY_F16 = 1, TY_Q4_0 = 2, TY_Q8_0 = 8 };

static const struct {
    const uint32_t *code;
    size_t size;
    uint32_t variant;
} shader_of[EM_VK_PIPE_COUNT] = {
#define S(arr, v) { arr, sizeof arr, v }
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
#undef S
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
    VkSpecializationMapEntry e = { 0, 0, sizeof(uint32_t) };
    VkSpecializationInfo si = { 1, &e, sizeof(uint32_t), &shader_of[p].variant };
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
    for (int p = 0; !rc && p < EM_VK_PIPE_COUNT; p++) rc = make_pipeline(vk, (em_vk_pipe)p);
    return rc;
}

void em_vk_pipelines_destroy(em_vk *vk) {
    for (int p = 0; p < EM_VK_PIPE_COUNT; p++)
        if (vk->pipes[p]) vkDestroyPipeline(vk->dev, vk->pipes[p], NULL);
    if (vk->pipe_layout) vkDestroyPipelineLayout(vk->dev, vk->pipe_layout, NULL);
    if (vk->set_layout) vkDestroyDescriptorSetLayout(vk->dev, vk->set_layout, NULL);
}

/* A pool with room for n sets (grown, never shrunk), reset for reuse. */
static int ensure_pool(em_vk *vk, uint32_t n) {
    if (vk->desc_pool && n <= vk->desc_sets) {
        VK_TRY(vkResetDescriptorPool(vk->dev, vk->desc_pool, 0), "vkResetDescriptorPool");
        return EMBER_OK;
    }
    if (vk->desc_pool) vkDestroyDescriptorPool(vk->dev, vk->desc_pool, NULL);
    vk->desc_pool = VK_NULL_HANDLE;
    vk->desc_sets = 0;
    VkDescriptorPoolSize ps = { VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, n * EM_VK_BINDINGS };
    VkDescriptorPoolCreateInfo ci = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                      .maxSets = n,
                                      .poolSizeCount = 1,
                                      .pPoolSizes = &ps };
    VK_TRY(vkCreateDescriptorPool(vk->dev, &ci, NULL, &vk->desc_pool), "vkCreateDescriptorPool");
    vk->desc_sets = n;
    return EMBER_OK;
}

int em_vk_begin(em_vk *vk, uint32_t max_dispatches) {
    if (vk->recording) return em_error(vk->err, EMBER_ERR_BAD_STATE, "vulkan: already recording");
    int rc = ensure_pool(vk, max_dispatches ? max_dispatches : 1);
    if (rc) return rc;
    if ((rc = em_vk_cmd_begin(vk))) return rc;
    vk->recording = true;
    return EMBER_OK;
}

int em_vk_dispatch(em_vk *vk, em_vk_pipe pipe, const em_vk_ref refs[EM_VK_BINDINGS],
                   uint32_t *push, size_t push_bytes, uint32_t gx, uint32_t gy, uint32_t gz) {
    if (!vk->recording) return em_error(vk->err, EMBER_ERR_BAD_STATE, "vulkan: not recording");
    if (gx > vk->max_groups[0] || gy > vk->max_groups[1] || gz > vk->max_groups[2])
        return em_error(vk->err, EMBER_ERR_UNSUPPORTED,
                        "vulkan: %u x %u x %u workgroups exceed the device's limits", gx, gy, gz);
    VkDescriptorSetAllocateInfo ai = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                       .descriptorPool = vk->desc_pool,
                                       .descriptorSetCount = 1,
                                       .pSetLayouts = &vk->set_layout };
    VkDescriptorSet set;
    VK_TRY(vkAllocateDescriptorSets(vk->dev, &ai, &set), "vkAllocateDescriptorSets");
    VkDescriptorBufferInfo bi[EM_VK_BINDINGS];
    VkWriteDescriptorSet w[EM_VK_BINDINGS];
    for (int i = 0; i < EM_VK_BINDINGS; i++) {
        /* unused bindings repeat binding 0: every binding must be valid */
        const em_vk_ref *r = refs[i].buf ? &refs[i] : &refs[0];
        size_t base = r->off / vk->min_align * vk->min_align;
        size_t range = r->buf->size - base < vk->max_range ? r->buf->size - base : vk->max_range;
        bi[i] = (VkDescriptorBufferInfo){ r->buf->buf, base, range };
        push[i] = (uint32_t)((r->off - base) / 4);
        w[i] = (VkWriteDescriptorSet){ .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                       .dstSet = set,
                                       .dstBinding = (uint32_t)i,
                                       .descriptorCount = 1,
                                       .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                       .pBufferInfo = &bi[i] };
    }
    vkUpdateDescriptorSets(vk->dev, EM_VK_BINDINGS, w, 0, NULL);
    vkCmdBindPipeline(vk->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, vk->pipes[pipe]);
    vkCmdBindDescriptorSets(vk->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, vk->pipe_layout, 0, 1, &set,
                            0, NULL);
    vkCmdPushConstants(vk->cmd, vk->pipe_layout, VK_SHADER_STAGE_COMPUTE_BIT, 0,
                       (uint32_t)push_bytes, push);
    vkCmdDispatch(vk->cmd, gx, gy, gz);
    VkMemoryBarrier mb = { .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                           .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT,
                           .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT };
    vkCmdPipelineBarrier(vk->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
    return EMBER_OK;
}

int em_vk_submit(em_vk *vk) {
    if (!vk->recording) return em_error(vk->err, EMBER_ERR_BAD_STATE, "vulkan: not recording");
    vk->recording = false;
    return em_vk_cmd_submit(vk, "submitting the graph");
}
