/* The Vulkan device: instance, physical device by index, one compute
 * queue, memory, buffers and host copies through a staging buffer. */
#include <string.h>

#include "vk.h"

/* A status for a failed Vulkan call: memory exhaustion is NO_MEMORY, a
 * lost device BAD_STATE (the backend cannot go on), the rest INTERNAL. */
static int vk_fail(char *err, VkResult r, const char *what) {
    switch (r) {
    case VK_ERROR_OUT_OF_HOST_MEMORY:
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
        return em_error(err, EMBER_ERR_NO_MEMORY, "vulkan: out of memory in %s", what);
    case VK_ERROR_DEVICE_LOST:
        return em_error(err, EMBER_ERR_BAD_STATE, "vulkan: device lost in %s", what);
    default:
        return em_error(err, EMBER_ERR_INTERNAL, "vulkan: %s failed (VkResult %d)", what, (int)r);
    }
}

#define VK_TRY(call, what)                                                                     \
    do {                                                                                       \
        VkResult r_ = (call);                                                                  \
        if (r_ != VK_SUCCESS) return vk_fail(vk->err, r_, what);                               \
    } while (0)

static int make_instance(VkInstance *inst, char *err) {
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
                              .pApplicationName = "ember",
                              .pEngineName = "ember",
                              .apiVersion = VK_API_VERSION_1_1 };
    VkInstanceCreateInfo ci = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
                                .pApplicationInfo = &app };
    VkResult r = vkCreateInstance(&ci, NULL, inst);
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
        return em_error(err, EMBER_ERR_NOT_AVAILABLE, "vulkan: no Vulkan 1.1 driver");
    if (r != VK_SUCCESS) return vk_fail(err, r, "vkCreateInstance");
    return EMBER_OK;
}

int em_vk_count_devices(char *err) {
    VkInstance inst;
    int rc = make_instance(&inst, err);
    if (rc) return rc;
    uint32_t n = 0;
    VkResult r = vkEnumeratePhysicalDevices(inst, &n, NULL);
    vkDestroyInstance(inst, NULL);
    if (r != VK_SUCCESS) return vk_fail(err, r, "vkEnumeratePhysicalDevices");
    return (int)n;
}

static int pick_device(em_vk *vk, int index) {
    uint32_t n = 0;
    VK_TRY(vkEnumeratePhysicalDevices(vk->inst, &n, NULL), "vkEnumeratePhysicalDevices");
    if (n == 0) return em_error(vk->err, EMBER_ERR_NOT_AVAILABLE, "vulkan: no device");
    if (index < 0 || (uint32_t)index >= n)
        return em_error(vk->err, EMBER_ERR_INVALID_ARGUMENT,
                        "vulkan: device %d requested, %u present", index, n);
    VkPhysicalDevice devs[16];
    uint32_t m = n < 16 ? n : 16;
    VkResult r = vkEnumeratePhysicalDevices(vk->inst, &m, devs);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) return vk_fail(vk->err, r, "vkEnumeratePhysicalDevices");
    if ((uint32_t)index >= m)
        return em_error(vk->err, EMBER_ERR_INVALID_ARGUMENT, "vulkan: device %d not listed", index);
    vk->phys = devs[index];
    VkPhysicalDeviceProperties p;
    vkGetPhysicalDeviceProperties(vk->phys, &p);
    memcpy(vk->name, p.deviceName, sizeof vk->name);
    vk->name[sizeof vk->name - 1] = 0;
    vk->min_align = (size_t)p.limits.minStorageBufferOffsetAlignment;
    vk->max_range = (size_t)p.limits.maxStorageBufferRange;
    for (int i = 0; i < 3; i++) vk->max_groups[i] = p.limits.maxComputeWorkGroupCount[i];
    if (p.limits.maxPushConstantsSize < EM_VK_PUSH_BYTES)
        return em_error(vk->err, EMBER_ERR_UNSUPPORTED,
                        "vulkan: %s allows %u bytes of push constants, ember needs %d", vk->name,
                        p.limits.maxPushConstantsSize, EM_VK_PUSH_BYTES);
    vkGetPhysicalDeviceMemoryProperties(vk->phys, &vk->mem_props);
    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(vk->phys, &nq, NULL);
    VkQueueFamilyProperties qf[16];
    nq = nq < 16 ? nq : 16;
    vkGetPhysicalDeviceQueueFamilyProperties(vk->phys, &nq, qf);
    for (uint32_t i = 0; i < nq; i++)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
            vk->queue_family = i;
            return EMBER_OK;
        }
    return em_error(vk->err, EMBER_ERR_UNSUPPORTED, "vulkan: %s has no compute queue", vk->name);
}

static int make_device(em_vk *vk) {
    float prio = 1.0f;
    VkDeviceQueueCreateInfo q = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                  .queueFamilyIndex = vk->queue_family,
                                  .queueCount = 1,
                                  .pQueuePriorities = &prio };
    VkDeviceCreateInfo ci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                              .queueCreateInfoCount = 1,
                              .pQueueCreateInfos = &q };
    VK_TRY(vkCreateDevice(vk->phys, &ci, NULL, &vk->dev), "vkCreateDevice");
    vkGetDeviceQueue(vk->dev, vk->queue_family, 0, &vk->queue);
    VkCommandPoolCreateInfo pci = { .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                    .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                    .queueFamilyIndex = vk->queue_family };
    VK_TRY(vkCreateCommandPool(vk->dev, &pci, NULL, &vk->cmd_pool), "vkCreateCommandPool");
    VkCommandBufferAllocateInfo ai = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                       .commandPool = vk->cmd_pool,
                                       .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                       .commandBufferCount = 1 };
    VK_TRY(vkAllocateCommandBuffers(vk->dev, &ai, &vk->cmd), "vkAllocateCommandBuffers");
    VkFenceCreateInfo fi = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
    VK_TRY(vkCreateFence(vk->dev, &fi, NULL, &vk->fence), "vkCreateFence");
    return EMBER_OK;
}

int em_vk_pipelines_create(em_vk *vk); /* pipeline.c */
void em_vk_pipelines_destroy(em_vk *vk);

int em_vk_open(em_vk *vk, int index, char *err) {
    memset(vk, 0, sizeof *vk);
    vk->err = err;
    int rc = make_instance(&vk->inst, err);
    if (rc) return rc;
    if ((rc = pick_device(vk, index)) || (rc = make_device(vk)) ||
        (rc = em_vk_pipelines_create(vk)) ||
        (rc = em_vk_buf_create(vk, (size_t)16 << 20, true, &vk->staging))) {
        em_vk_close(vk);
        return rc;
    }
    return EMBER_OK;
}

void em_vk_close(em_vk *vk) {
    if (vk->dev) {
        vkDeviceWaitIdle(vk->dev);
        em_vk_buf_destroy(vk, &vk->staging);
        em_vk_pipelines_destroy(vk);
        if (vk->fence) vkDestroyFence(vk->dev, vk->fence, NULL);
        if (vk->cmd_pool) vkDestroyCommandPool(vk->dev, vk->cmd_pool, NULL);
        vkDestroyDevice(vk->dev, NULL);
    }
    if (vk->inst) vkDestroyInstance(vk->inst, NULL);
    char *err = vk->err;
    memset(vk, 0, sizeof *vk);
    vk->err = err;
}

static int find_memory(const em_vk *vk, uint32_t bits, VkMemoryPropertyFlags want,
                       uint32_t *type) {
    for (uint32_t i = 0; i < vk->mem_props.memoryTypeCount; i++)
        if ((bits >> i & 1) && (vk->mem_props.memoryTypes[i].propertyFlags & want) == want) {
            *type = i;
            return EMBER_OK;
        }
    return EMBER_ERR_UNSUPPORTED;
}

int em_vk_buf_create(em_vk *vk, size_t size, bool host_visible, em_vk_buf *b) {
    memset(b, 0, sizeof *b);
    VkBufferCreateInfo ci = { .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                              .size = size,
                              .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                                       VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                       VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                              .sharingMode = VK_SHARING_MODE_EXCLUSIVE };
    VK_TRY(vkCreateBuffer(vk->dev, &ci, NULL, &b->buf), "vkCreateBuffer");
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(vk->dev, b->buf, &req);
    VkMemoryPropertyFlags want = host_visible ? VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                                    VK_MEMORY_PROPERTY_HOST_COHERENT_BIT
                                              : VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
    uint32_t type;
    if (find_memory(vk, req.memoryTypeBits, want, &type)) {
        em_vk_buf_destroy(vk, b);
        return em_error(vk->err, EMBER_ERR_UNSUPPORTED, "vulkan: no %s memory for a buffer",
                        host_visible ? "host-visible" : "device-local");
    }
    VkMemoryAllocateInfo ai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                                .allocationSize = req.size,
                                .memoryTypeIndex = type };
    VkResult r = vkAllocateMemory(vk->dev, &ai, NULL, &b->mem);
    if (r == VK_SUCCESS) r = vkBindBufferMemory(vk->dev, b->buf, b->mem, 0);
    if (r == VK_SUCCESS && host_visible) r = vkMapMemory(vk->dev, b->mem, 0, VK_WHOLE_SIZE, 0, &b->map);
    if (r != VK_SUCCESS) {
        em_vk_buf_destroy(vk, b);
        return vk_fail(vk->err, r, "allocating a buffer");
    }
    b->size = size;
    return EMBER_OK;
}

void em_vk_buf_destroy(em_vk *vk, em_vk_buf *b) {
    if (!vk->dev) return;
    if (b->map) vkUnmapMemory(vk->dev, b->mem);
    if (b->buf) vkDestroyBuffer(vk->dev, b->buf, NULL);
    if (b->mem) vkFreeMemory(vk->dev, b->mem, NULL);
    memset(b, 0, sizeof *b);
}

/* One buffer copy, recorded, submitted and waited for. */
static int copy_now(em_vk *vk, VkBuffer src, size_t soff, VkBuffer dst, size_t doff, size_t n) {
    VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                    .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT };
    VK_TRY(vkResetCommandBuffer(vk->cmd, 0), "vkResetCommandBuffer");
    VK_TRY(vkBeginCommandBuffer(vk->cmd, &bi), "vkBeginCommandBuffer");
    VkBufferCopy c = { soff, doff, n };
    vkCmdCopyBuffer(vk->cmd, src, dst, 1, &c);
    VK_TRY(vkEndCommandBuffer(vk->cmd), "vkEndCommandBuffer");
    VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                        .commandBufferCount = 1,
                        .pCommandBuffers = &vk->cmd };
    VK_TRY(vkResetFences(vk->dev, 1, &vk->fence), "vkResetFences");
    VK_TRY(vkQueueSubmit(vk->queue, 1, &si, vk->fence), "vkQueueSubmit");
    VK_TRY(vkWaitForFences(vk->dev, 1, &vk->fence, VK_TRUE, UINT64_MAX), "vkWaitForFences");
    return EMBER_OK;
}

static int check_range(em_vk *vk, const em_vk_buf *b, size_t off, size_t n, const char *what) {
    if (vk->recording)
        return em_error(vk->err, EMBER_ERR_BAD_STATE, "vulkan: %s while recording", what);
    if (off > b->size || n > b->size - off)
        return em_error(vk->err, EMBER_ERR_INVALID_ARGUMENT,
                        "vulkan: %s of %zu bytes at %zu past a buffer of %zu", what, n, off, b->size);
    return EMBER_OK;
}

int em_vk_upload(em_vk *vk, em_vk_buf *dst, size_t off, const void *src, size_t n) {
    int rc = check_range(vk, dst, off, n, "upload");
    if (rc) return rc;
    if (dst->map) {
        memcpy((char *)dst->map + off, src, n);
        return EMBER_OK;
    }
    for (size_t done = 0; done < n;) {
        size_t k = n - done < vk->staging.size ? n - done : vk->staging.size;
        memcpy(vk->staging.map, (const char *)src + done, k);
        if ((rc = copy_now(vk, vk->staging.buf, 0, dst->buf, off + done, k))) return rc;
        done += k;
    }
    return EMBER_OK;
}

int em_vk_download(em_vk *vk, const em_vk_buf *src, size_t off, void *dst, size_t n) {
    int rc = check_range(vk, src, off, n, "download");
    if (rc) return rc;
    if (src->map) {
        memcpy(dst, (const char *)src->map + off, n);
        return EMBER_OK;
    }
    for (size_t done = 0; done < n;) {
        size_t k = n - done < vk->staging.size ? n - done : vk->staging.size;
        if ((rc = copy_now(vk, src->buf, off + done, vk->staging.buf, 0, k))) return rc;
        memcpy((char *)dst + done, vk->staging.map, k);
        done += k;
    }
    return EMBER_OK;
}
