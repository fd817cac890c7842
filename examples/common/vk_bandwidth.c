/* Device memory bandwidth of a Vulkan device, for ember-bench: a compute
 * shader (copy.comp, 16-byte loads and stores) copies between two
 * device-local buffers, timed on the host around a submission of several
 * copies, best of 5. Shader copies, not vkCmdCopyBuffer: the driver's
 * transfer copies reached a third of the H100's bandwidth here, and the
 * shaders ember runs read memory the way this one does. Reported as bytes
 * read plus bytes written per second, as a memory copy benchmark reports
 * them. Built only when the Vulkan loader and glslang are found. */
#include "vk_bandwidth.h"

#include <string.h>
#include <time.h>
#include <vulkan/vulkan.h>

#include "copy.spv.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct dev {
    VkInstance inst;
    VkPhysicalDevice phys;
    VkDevice dev;
    VkQueue queue;
    uint32_t family;
    VkBuffer buf[2];
    VkDeviceMemory mem[2];
    VkCommandPool pool;
    VkCommandBuffer cmd;
    VkFence fence;
    VkDescriptorSetLayout set_layout;
    VkPipelineLayout pipe_layout;
    VkPipeline pipe;
    VkDescriptorPool desc_pool;
    VkDescriptorSet set;
} dev;

static int open_dev(dev *d, int index) {
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
                              .apiVersion = VK_API_VERSION_1_1 };
    VkInstanceCreateInfo ci = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
                                .pApplicationInfo = &app };
    if (vkCreateInstance(&ci, NULL, &d->inst) != VK_SUCCESS) return -1;
    VkPhysicalDevice devs[16];
    uint32_t n = 16;
    if (vkEnumeratePhysicalDevices(d->inst, &n, devs) < 0 || index < 0 || (uint32_t)index >= n)
        return -1;
    d->phys = devs[index];
    VkQueueFamilyProperties qf[16];
    uint32_t nq = 16;
    vkGetPhysicalDeviceQueueFamilyProperties(d->phys, &nq, qf);
    d->family = UINT32_MAX;
    for (uint32_t i = 0; i < nq && d->family == UINT32_MAX; i++)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) d->family = i;
    if (d->family == UINT32_MAX) return -1;
    float prio = 1;
    VkDeviceQueueCreateInfo q = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                  .queueFamilyIndex = d->family,
                                  .queueCount = 1,
                                  .pQueuePriorities = &prio };
    VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                               .queueCreateInfoCount = 1,
                               .pQueueCreateInfos = &q };
    if (vkCreateDevice(d->phys, &dci, NULL, &d->dev) != VK_SUCCESS) return -1;
    vkGetDeviceQueue(d->dev, d->family, 0, &d->queue);
    return 0;
}

static int make_buffers(dev *d, VkDeviceSize size) {
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(d->phys, &mp);
    for (int i = 0; i < 2; i++) {
        VkBufferCreateInfo bi = { .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                                  .size = size,
                                  .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT };
        if (vkCreateBuffer(d->dev, &bi, NULL, &d->buf[i]) != VK_SUCCESS) return -1;
        VkMemoryRequirements req;
        vkGetBufferMemoryRequirements(d->dev, d->buf[i], &req);
        uint32_t type = UINT32_MAX;
        for (uint32_t t = 0; t < mp.memoryTypeCount && type == UINT32_MAX; t++)
            if ((req.memoryTypeBits >> t & 1) &&
                (mp.memoryTypes[t].propertyFlags & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT))
                type = t;
        VkMemoryAllocateInfo ai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                                    .allocationSize = req.size,
                                    .memoryTypeIndex = type };
        if (type == UINT32_MAX || vkAllocateMemory(d->dev, &ai, NULL, &d->mem[i]) != VK_SUCCESS ||
            vkBindBufferMemory(d->dev, d->buf[i], d->mem[i], 0) != VK_SUCCESS)
            return -1;
    }
    VkCommandPoolCreateInfo pci = { .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                    .queueFamilyIndex = d->family };
    VkCommandBufferAllocateInfo cai = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                        .commandBufferCount = 1 };
    VkFenceCreateInfo fi = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
    if (vkCreateCommandPool(d->dev, &pci, NULL, &d->pool) != VK_SUCCESS) return -1;
    cai.commandPool = d->pool;
    if (vkAllocateCommandBuffers(d->dev, &cai, &d->cmd) != VK_SUCCESS ||
        vkCreateFence(d->dev, &fi, NULL, &d->fence) != VK_SUCCESS)
        return -1;
    return 0;
}

static int make_pipeline(dev *d, VkDeviceSize size) {
    VkDescriptorSetLayoutBinding b[2] = {
        { 0, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, NULL },
        { 1, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, NULL },
    };
    VkDescriptorSetLayoutCreateInfo dl = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                                           .bindingCount = 2,
                                           .pBindings = b };
    if (vkCreateDescriptorSetLayout(d->dev, &dl, NULL, &d->set_layout) != VK_SUCCESS) return -1;
    VkPipelineLayoutCreateInfo pl = { .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                      .setLayoutCount = 1,
                                      .pSetLayouts = &d->set_layout };
    if (vkCreatePipelineLayout(d->dev, &pl, NULL, &d->pipe_layout) != VK_SUCCESS) return -1;
    VkShaderModuleCreateInfo mi = { .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                    .codeSize = sizeof em_spv_bench_copy,
                                    .pCode = em_spv_bench_copy };
    VkShaderModule mod;
    if (vkCreateShaderModule(d->dev, &mi, NULL, &mod) != VK_SUCCESS) return -1;
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = { .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                   .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                   .module = mod,
                   .pName = "main" },
        .layout = d->pipe_layout,
    };
    VkResult r = vkCreateComputePipelines(d->dev, VK_NULL_HANDLE, 1, &ci, NULL, &d->pipe);
    vkDestroyShaderModule(d->dev, mod, NULL);
    if (r != VK_SUCCESS) return -1;
    VkDescriptorPoolSize ps = { VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 4 };
    VkDescriptorPoolCreateInfo dp = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                      .maxSets = 2,
                                      .poolSizeCount = 1,
                                      .pPoolSizes = &ps };
    if (vkCreateDescriptorPool(d->dev, &dp, NULL, &d->desc_pool) != VK_SUCCESS) return -1;
    VkDescriptorSetAllocateInfo ai = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                       .descriptorPool = d->desc_pool,
                                       .descriptorSetCount = 1,
                                       .pSetLayouts = &d->set_layout };
    if (vkAllocateDescriptorSets(d->dev, &ai, &d->set) != VK_SUCCESS) return -1;
    VkDescriptorBufferInfo bi[2] = { { d->buf[0], 0, size }, { d->buf[1], 0, size } };
    VkWriteDescriptorSet w[2];
    for (int i = 0; i < 2; i++)
        w[i] = (VkWriteDescriptorSet){ .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                       .dstSet = d->set,
                                       .dstBinding = (uint32_t)i,
                                       .descriptorCount = 1,
                                       .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                       .pBufferInfo = &bi[i] };
    vkUpdateDescriptorSets(d->dev, 2, w, 0, NULL);
    return 0;
}

static void close_dev(dev *d) {
    if (d->dev) {
        vkDeviceWaitIdle(d->dev);
        if (d->desc_pool) vkDestroyDescriptorPool(d->dev, d->desc_pool, NULL);
        if (d->pipe) vkDestroyPipeline(d->dev, d->pipe, NULL);
        if (d->pipe_layout) vkDestroyPipelineLayout(d->dev, d->pipe_layout, NULL);
        if (d->set_layout) vkDestroyDescriptorSetLayout(d->dev, d->set_layout, NULL);
        if (d->fence) vkDestroyFence(d->dev, d->fence, NULL);
        if (d->pool) vkDestroyCommandPool(d->dev, d->pool, NULL);
        for (int i = 0; i < 2; i++) {
            if (d->buf[i]) vkDestroyBuffer(d->dev, d->buf[i], NULL);
            if (d->mem[i]) vkFreeMemory(d->dev, d->mem[i], NULL);
        }
        vkDestroyDevice(d->dev, NULL);
    }
    if (d->inst) vkDestroyInstance(d->inst, NULL);
}

/* `reps` shader copies of the whole buffer; seconds, or -1. */
static double time_copies(dev *d, int reps) {
    VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO };
    if (vkResetCommandBuffer(d->cmd, 0) != VK_SUCCESS ||
        vkBeginCommandBuffer(d->cmd, &bi) != VK_SUCCESS)
        return -1;
    VkMemoryBarrier mb = { .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                           .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT,
                           .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT };
    vkCmdBindPipeline(d->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, d->pipe);
    vkCmdBindDescriptorSets(d->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, d->pipe_layout, 0, 1, &d->set,
                            0, NULL);
    for (int i = 0; i < reps; i++) { /* the same direction: a barrier between, as ember's runs */
        vkCmdDispatch(d->cmd, 4096, 1, 1);
        vkCmdPipelineBarrier(d->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                             VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
    }
    if (vkEndCommandBuffer(d->cmd) != VK_SUCCESS || vkResetFences(d->dev, 1, &d->fence) != VK_SUCCESS)
        return -1;
    VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                        .commandBufferCount = 1,
                        .pCommandBuffers = &d->cmd };
    double t0 = now_s();
    if (vkQueueSubmit(d->queue, 1, &si, d->fence) != VK_SUCCESS ||
        vkWaitForFences(d->dev, 1, &d->fence, VK_TRUE, UINT64_MAX) != VK_SUCCESS)
        return -1;
    return now_s() - t0;
}

double vk_copy_bandwidth(int device, size_t bytes) {
    dev d;
    memset(&d, 0, sizeof d);
    double best = 0;
    VkPhysicalDeviceProperties p;
    if (open_dev(&d, device) == 0) {
        vkGetPhysicalDeviceProperties(d.phys, &p);
        if (bytes > p.limits.maxStorageBufferRange) bytes = p.limits.maxStorageBufferRange;
        bytes &= ~(size_t)15;
    }
    if (d.dev && make_buffers(&d, bytes) == 0 && make_pipeline(&d, bytes) == 0) {
        time_copies(&d, 1); /* first touch */
        for (int r = 0; r < 5; r++) {
            double t = time_copies(&d, 8);
            double gbs = t > 0 ? 2.0 * 8 * (double)bytes / t / 1e9 : 0;
            if (gbs > best) best = gbs;
        }
    }
    close_dev(&d);
    return best;
}
