/* Device memory bandwidth of a Vulkan device, for ember-bench: copies
 * between two device-local buffers, timed on the host around a submission
 * of several copies, best of 5. Reported as bytes read plus bytes written
 * per second, as a memory copy benchmark reports them. Built only when
 * the Vulkan loader is found. */
#include "vk_bandwidth.h"

#include <string.h>
#include <time.h>
#include <vulkan/vulkan.h>

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
                                  .usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                           VK_BUFFER_USAGE_TRANSFER_DST_BIT };
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

static void close_dev(dev *d) {
    if (d->dev) {
        vkDeviceWaitIdle(d->dev);
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

/* Copies `reps` times back and forth; seconds, or -1. */
static double time_copies(dev *d, VkDeviceSize size, int reps) {
    VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO };
    if (vkResetCommandBuffer(d->cmd, 0) != VK_SUCCESS ||
        vkBeginCommandBuffer(d->cmd, &bi) != VK_SUCCESS)
        return -1;
    VkMemoryBarrier mb = { .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                           .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
                           .dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT };
    for (int i = 0; i < reps; i++) {
        VkBufferCopy c = { 0, 0, size };
        vkCmdCopyBuffer(d->cmd, d->buf[i & 1], d->buf[!(i & 1)], 1, &c);
        vkCmdPipelineBarrier(d->cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT,
                             0, 1, &mb, 0, NULL, 0, NULL);
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
    if (open_dev(&d, device) == 0 && make_buffers(&d, bytes) == 0) {
        time_copies(&d, bytes, 1); /* first touch */
        for (int r = 0; r < 5; r++) {
            double t = time_copies(&d, bytes, 8);
            double gbs = t > 0 ? 2.0 * 8 * (double)bytes / t / 1e9 : 0;
            if (gbs > best) best = gbs;
        }
    }
    close_dev(&d);
    return best;
}
