/* The Vulkan device: instance, physical device by index, one compute
 * queue, memory, buffers and host copies through a staging buffer. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vk.h"

struct em_vk_shared {
    int refs;
    VkDevice dev;
    VkPhysicalDevice phys;
    VkQueue queue;
    uint32_t queue_family;
    bool has_idot, has_coopmat;
    VkDescriptorSetLayout set_layout;
    VkPipelineLayout pipe_layout;
    VkPipeline pipes[EM_VK_PIPE_COUNT];
    pthread_mutex_t queue_lock;
};

#define MAX_DEVICES 16
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static VkInstance instance;
static em_vk_shared devices[MAX_DEVICES];

int em_vk_fail(char *err, VkResult r, const char *what) {
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

static int make_instance_locked(VkInstance *inst, char *err) {
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
                              .pApplicationName = "ember",
                              .pEngineName = "ember",
                              .apiVersion = VK_API_VERSION_1_1 };
    VkInstanceCreateInfo ci = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
                                .pApplicationInfo = &app };
    VkResult r = vkCreateInstance(&ci, NULL, inst);
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
        return em_error(err, EMBER_ERR_NOT_AVAILABLE, "vulkan: no Vulkan 1.1 driver");
    if (r != VK_SUCCESS) return em_vk_fail(err, r, "vkCreateInstance");
    return EMBER_OK;
}

/* The process's instance, made by its first user (call under lock) and
 * kept until the process ends: on the H100 here, the driver refused new
 * instances after about 30 had been created and destroyed. */
static int instance_acquire(char *err) {
    if (instance == VK_NULL_HANDLE) {
        int rc = make_instance_locked(&instance, err);
        if (rc) return rc;
    }
    return EMBER_OK;
}

int em_vk_count_devices(char *err) {
    pthread_mutex_lock(&lock);
    int rc = instance_acquire(err);
    uint32_t n = 0;
    VkResult r = VK_SUCCESS;
    if (!rc) r = vkEnumeratePhysicalDevices(instance, &n, NULL);
    pthread_mutex_unlock(&lock);
    if (rc) return rc;
    if (r != VK_SUCCESS) return em_vk_fail(err, r, "vkEnumeratePhysicalDevices");
    return (int)n;
}

/* A diagnostic switch: set, non-empty and not "0" (docs/api.md lists them) */
static bool env_flag(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0");
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
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) return em_vk_fail(vk->err, r, "vkEnumeratePhysicalDevices");
    if ((uint32_t)index >= m)
        return em_error(vk->err, EMBER_ERR_INVALID_ARGUMENT, "vulkan: device %d not listed", index);
    vk->phys = devs[index];
    VkPhysicalDeviceSubgroupProperties sg = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES };
    VkPhysicalDeviceProperties2 p2 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                       .pNext = &sg };
    vkGetPhysicalDeviceProperties2(vk->phys, &p2);
    VkPhysicalDeviceProperties p = p2.properties;
    vk->subgroup_size = sg.subgroupSize;
    vk->subgroup_arith = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                         (sg.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) &&
                         sg.subgroupSize >= 1 && sg.subgroupSize <= 128 &&
                         !(sg.subgroupSize & (sg.subgroupSize - 1));
    vk->use_subgroups = vk->subgroup_arith && !env_flag("EMBER_VULKAN_NO_SUBGROUPS");
    vk->no_rope_fold = env_flag("EMBER_VULKAN_NO_ROPE_FOLD");
    vk->norm_fold = env_flag("EMBER_VULKAN_NORM_FOLD");
    vk->no_epi = env_flag("EMBER_VULKAN_NO_EPI");
    vk->no_tiles = env_flag("EMBER_VULKAN_NO_TILES");
    vk->no_attn_tiles = vk->no_tiles || env_flag("EMBER_VULKAN_NO_ATTN_TILES");
    vk->no_barriers = env_flag("EMBER_VULKAN_NO_BARRIERS");
    vk->skip = getenv("EMBER_VULKAN_SKIP");
    if (vk->skip && !*vk->skip) vk->skip = NULL;
    memcpy(vk->name, p.deviceName, sizeof vk->name);
    vk->name[sizeof vk->name - 1] = 0;
    vk->min_align = (size_t)p.limits.minStorageBufferOffsetAlignment;
    vk->max_range = (size_t)p.limits.maxStorageBufferRange;
    vk->max_shared = p.limits.maxComputeSharedMemorySize;
    vk->max_wg = p.limits.maxComputeWorkGroupInvocations < p.limits.maxComputeWorkGroupSize[0]
                     ? p.limits.maxComputeWorkGroupInvocations
                     : p.limits.maxComputeWorkGroupSize[0];
    vk->no_own_blocks = env_flag("EMBER_VULKAN_NO_OWN_BLOCKS");
    const char *spin = getenv("EMBER_VULKAN_SPIN_US");
    /* 3 ms: a decode step's wait; longer ones (prompts) then sleep. Not on
     * a device that computes on the host's CPUs (lavapipe): the poll
     * would take a core from it. */
    uint64_t spin_us = p.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU ? 0u : 3000u;
    vk->spin_ns = (spin && *spin ? (uint64_t)strtoull(spin, NULL, 10) : spin_us) * 1000u;
    const char *range = getenv("EMBER_VULKAN_MAX_RANGE"); /* tests: a smaller range */
    size_t lower = range && *range ? (size_t)strtoull(range, NULL, 10) : 0;
    if (lower >= 4096 && lower < vk->max_range) vk->max_range = lower;
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
            const char *prof = getenv("EMBER_VULKAN_PROFILE");
            vk->prof.on = prof && *prof && strcmp(prof, "0") && qf[i].timestampValidBits >= 32;
            vk->prof.levels = vk->prof.on && strcmp(prof, "levels") == 0;
            vk->prof.ns_per_tick = p.limits.timestampPeriod;
            return EMBER_OK;
        }
    return em_error(vk->err, EMBER_ERR_UNSUPPORTED, "vulkan: %s has no compute queue", vk->name);
}

/* Whether the physical device offers extension `name`. */
static bool has_extension(VkPhysicalDevice phys, const char *name) {
    uint32_t n = 0;
    if (vkEnumerateDeviceExtensionProperties(phys, NULL, &n, NULL) != VK_SUCCESS || n == 0)
        return false;
    VkExtensionProperties *e = calloc(n, sizeof *e);
    bool found = false;
    if (e && vkEnumerateDeviceExtensionProperties(phys, NULL, &n, e) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++) found = !strcmp(e[i].extensionName, name);
    free(e);
    return found;
}

/* Whether the device multiplies 16 x 16 x 16 F16 subgroup matrices into
 * F32 ones (VK_NV_cooperative_matrix's property list), the one shape
 * mul_mmc.comp is written for. */
static bool has_coopmat_shape(const em_vk *vk) {
    PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV get =
        (PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV)vkGetInstanceProcAddr(
            vk->inst, "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV");
    uint32_t n = 0;
    if (!get || get(vk->phys, &n, NULL) != VK_SUCCESS || n == 0) return false;
    VkCooperativeMatrixPropertiesNV *cp = calloc(n, sizeof *cp);
    bool found = false;
    if (!cp) return false;
    for (uint32_t i = 0; i < n; i++) cp[i].sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV;
    if (get(vk->phys, &n, cp) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = cp[i].MSize == 16 && cp[i].NSize == 16 && cp[i].KSize == 16 &&
                    cp[i].AType == VK_COMPONENT_TYPE_FLOAT16_NV &&
                    cp[i].BType == VK_COMPONENT_TYPE_FLOAT16_NV &&
                    cp[i].CType == VK_COMPONENT_TYPE_FLOAT32_NV &&
                    cp[i].DType == VK_COMPONENT_TYPE_FLOAT32_NV &&
                    cp[i].scope == VK_SCOPE_SUBGROUP_NV;
    free(cp);
    return found;
}

/* The device, with the optional features the shaders use enabled where
 * offered: VK_KHR_shader_integer_dot_product (mul_mvq.comp's dot
 * products; vk->has_idot) and VK_NV_cooperative_matrix with F16
 * arithmetic (mul_mmc.comp's prompt tiles; vk->has_coopmat, which also
 * needs the 16 x 16 x 16 shape and subgroups of 32). */
static int make_device(em_vk *vk) {
    float prio = 1.0f;
    VkDeviceQueueCreateInfo q = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                  .queueFamilyIndex = vk->queue_family,
                                  .queueCount = 1,
                                  .pQueuePriorities = &prio };
    VkPhysicalDeviceShaderIntegerDotProductFeaturesKHR idot = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES_KHR
    };
    VkPhysicalDeviceCooperativeMatrixFeaturesNV cm = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV
    };
    VkPhysicalDeviceShaderFloat16Int8FeaturesKHR f16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES_KHR
    };
    VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR pe = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR
    };
    const char *ext[4];
    uint32_t n_ext = 0;
    void *chain = NULL;
    if (env_flag("EMBER_VULKAN_PIPELINE_STATS") &&
        has_extension(vk->phys, VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME)) {
        VkPhysicalDeviceFeatures2 f2 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                         .pNext = &pe };
        vkGetPhysicalDeviceFeatures2(vk->phys, &f2);
        vk->pipe_stats = pe.pipelineExecutableInfo == VK_TRUE;
        if (vk->pipe_stats) {
            ext[n_ext++] = VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME;
            pe.pNext = chain, chain = &pe;
        }
    }
    if (has_extension(vk->phys, VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME)) {
        VkPhysicalDeviceFeatures2 f2 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                         .pNext = &idot };
        vkGetPhysicalDeviceFeatures2(vk->phys, &f2);
    }
    vk->has_idot = idot.shaderIntegerDotProduct == VK_TRUE;
    if (vk->has_idot) {
        ext[n_ext++] = VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME;
        idot.pNext = chain, chain = &idot;
    }
    if (vk->subgroup_size == 32 &&
        has_extension(vk->phys, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME) &&
        has_extension(vk->phys, VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME)) {
        cm.pNext = &f16;
        VkPhysicalDeviceFeatures2 f2 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                         .pNext = &cm };
        vkGetPhysicalDeviceFeatures2(vk->phys, &f2);
        vk->has_coopmat = cm.cooperativeMatrix == VK_TRUE && f16.shaderFloat16 == VK_TRUE &&
                          has_coopmat_shape(vk);
    }
    if (vk->has_coopmat) {
        /* only the features the shaders use */
        cm.cooperativeMatrixRobustBufferAccess = VK_FALSE;
        f16.shaderInt8 = VK_FALSE;
        ext[n_ext++] = VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME;
        ext[n_ext++] = VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME;
        f16.pNext = chain, cm.pNext = &f16, chain = &cm;
    }
    VkDeviceCreateInfo ci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                              .pNext = chain,
                              .queueCreateInfoCount = 1,
                              .pQueueCreateInfos = &q,
                              .enabledExtensionCount = n_ext,
                              .ppEnabledExtensionNames = ext };
    VK_TRY(vkCreateDevice(vk->phys, &ci, NULL, &vk->dev), "vkCreateDevice");
    vkGetDeviceQueue(vk->dev, vk->queue_family, 0, &vk->queue);
    return EMBER_OK;
}

int em_vk_pipelines_create(em_vk *vk); /* pipeline.c */
void em_vk_pipelines_destroy(em_vk *vk);
int em_vk_pipeline_make(em_vk *vk, em_vk_pipe p);

int em_vk_pipeline(em_vk *vk, em_vk_pipe p) {
    if (vk->pipes[p]) return EMBER_OK;
    /* users of one device may record on several threads */
    pthread_mutex_lock(&lock);
    em_vk_shared *sh = vk->shared;
    int rc = EMBER_OK;
    if (sh->pipes[p]) {
        vk->pipes[p] = sh->pipes[p];
    } else {
        rc = em_vk_pipeline_make(vk, p);
        if (!rc) sh->pipes[p] = vk->pipes[p];
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

/* The shared pieces into vk, and back. */
static void adopt(em_vk *vk, const em_vk_shared *sh) {
    vk->dev = sh->dev, vk->phys = sh->phys, vk->queue = sh->queue;
    vk->queue_family = sh->queue_family, vk->has_idot = sh->has_idot;
    vk->has_coopmat = sh->has_coopmat;
    vk->set_layout = sh->set_layout, vk->pipe_layout = sh->pipe_layout;
    memcpy(vk->pipes, sh->pipes, sizeof vk->pipes);
}

static void keep(em_vk_shared *sh, const em_vk *vk) {
    sh->dev = vk->dev, sh->phys = vk->phys, sh->queue = vk->queue;
    sh->queue_family = vk->queue_family, sh->has_idot = vk->has_idot;
    sh->has_coopmat = vk->has_coopmat;
    sh->set_layout = vk->set_layout, sh->pipe_layout = vk->pipe_layout;
    memcpy(sh->pipes, vk->pipes, sizeof sh->pipes);
}

/* Device `index` made (first user) or taken (others). Under lock. */
static int device_acquire(em_vk *vk, int index) {
    if (index >= 0 && index < MAX_DEVICES && devices[index].refs > 0) {
        int rc = pick_device(vk, index); /* limits and name into this vk */
        if (rc) return rc;
        devices[index].refs++;
        vk->shared = &devices[index];
        adopt(vk, vk->shared);
        return EMBER_OK;
    }
    int rc = pick_device(vk, index);
    if (!rc && index >= MAX_DEVICES)
        rc = em_error(vk->err, EMBER_ERR_UNSUPPORTED, "vulkan: device index %d >= %d", index,
                      MAX_DEVICES);
    if (!rc) rc = make_device(vk);
    if (!rc) rc = em_vk_pipelines_create(vk);
    if (rc) {
        em_vk_pipelines_destroy(vk);
        if (vk->dev) vkDestroyDevice(vk->dev, NULL);
        vk->dev = VK_NULL_HANDLE;
        return rc;
    }
    em_vk_shared *sh = &devices[index];
    keep(sh, vk);
    if (pthread_mutex_init(&sh->queue_lock, NULL)) {
        em_vk_pipelines_destroy(vk);
        vkDestroyDevice(vk->dev, NULL);
        vk->dev = VK_NULL_HANDLE;
        memset(sh, 0, sizeof *sh);
        return em_error(vk->err, EMBER_ERR_NO_MEMORY, "vulkan: cannot make a lock");
    }
    sh->refs = 1;
    vk->shared = sh;
    return EMBER_OK;
}

static void device_release(em_vk *vk) {
    em_vk_shared *sh = vk->shared;
    if (--sh->refs > 0) return;
    vkDeviceWaitIdle(sh->dev);
    memcpy(vk->pipes, sh->pipes, sizeof vk->pipes); /* others may have made some */
    em_vk_pipelines_destroy(vk);
    vkDestroyDevice(sh->dev, NULL);
    pthread_mutex_destroy(&sh->queue_lock);
    memset(sh, 0, sizeof *sh);
}

int em_vk_cmd_alloc(em_vk *vk, VkCommandBuffer *cmd) {
    VkCommandBufferAllocateInfo ai = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                       .commandPool = vk->cmd_pool,
                                       .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                       .commandBufferCount = 1 };
    VK_TRY(vkAllocateCommandBuffers(vk->dev, &ai, cmd), "vkAllocateCommandBuffers");
    return EMBER_OK;
}

/* Per user: a command pool and buffer, a fence, the staging buffer. */
static int make_user(em_vk *vk) {
    VkCommandPoolCreateInfo pci = { .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                    .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                    .queueFamilyIndex = vk->queue_family };
    VK_TRY(vkCreateCommandPool(vk->dev, &pci, NULL, &vk->cmd_pool), "vkCreateCommandPool");
    int rc = em_vk_cmd_alloc(vk, &vk->cmd);
    if (rc) return rc;
    VkFenceCreateInfo fi = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
    VK_TRY(vkCreateFence(vk->dev, &fi, NULL, &vk->fence), "vkCreateFence");
    return em_vk_buf_create(vk, (size_t)16 << 20, EM_VK_MEM_READBACK, &vk->staging);
}

static void free_user(em_vk *vk) {
    if (!vk->dev) return; /* every submission was waited for: nothing runs */
    em_vk_buf_destroy(vk, &vk->staging);
    em_vk_record_free(vk);
    if (vk->fence) vkDestroyFence(vk->dev, vk->fence, NULL);
    if (vk->cmd_pool) vkDestroyCommandPool(vk->dev, vk->cmd_pool, NULL);
    vk->fence = VK_NULL_HANDLE, vk->cmd_pool = VK_NULL_HANDLE;
}

int em_vk_open(em_vk *vk, int index, const em_alloc *a, char *err) {
    memset(vk, 0, sizeof *vk);
    vk->err = err;
    vk->alloc = a;
    pthread_mutex_lock(&lock);
    int rc = instance_acquire(err);
    if (!rc) {
        vk->inst = instance;
        rc = device_acquire(vk, index);
    }
    pthread_mutex_unlock(&lock);
    if (rc) {
        memset(vk, 0, sizeof *vk);
        vk->err = err;
        vk->alloc = a;
        return rc;
    }
    const char *splits = getenv("EMBER_VULKAN_ATTN_SPLITS");
    vk->attn_splits = splits && *splits ? (uint32_t)strtoul(splits, NULL, 10) : 0;
    vk->use_idot = vk->has_idot && !env_flag("EMBER_VULKAN_NO_IDOT");
    vk->use_coopmat = vk->has_coopmat && !env_flag("EMBER_VULKAN_NO_COOPMAT");
    if ((rc = make_user(vk))) em_vk_close(vk);
    return rc;
}

void em_vk_close(em_vk *vk) {
    char *err = vk->err;
    const em_alloc *a = vk->alloc;
    if (vk->shared) {
        em_vk_profile_print(vk);
        free_user(vk);
        pthread_mutex_lock(&lock);
        device_release(vk);
        pthread_mutex_unlock(&lock);
    }
    memset(vk, 0, sizeof *vk);
    vk->err = err;
    vk->alloc = a;
}

int em_vk_cmd_begin(em_vk *vk) {
    VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                    .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT };
    VK_TRY(vkResetCommandBuffer(vk->cmd, 0), "vkResetCommandBuffer");
    VK_TRY(vkBeginCommandBuffer(vk->cmd, &bi), "vkBeginCommandBuffer");
    return EMBER_OK;
}

int em_vk_cmd_submit(em_vk *vk, const char *what) {
    VK_TRY(vkEndCommandBuffer(vk->cmd), "vkEndCommandBuffer");
    return em_vk_submit_wait(vk, vk->cmd, what);
}

int em_vk_submit_wait(em_vk *vk, VkCommandBuffer cmd, const char *what) {
    VK_TRY(vkResetFences(vk->dev, 1, &vk->fence), "vkResetFences");
    VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                        .commandBufferCount = 1,
                        .pCommandBuffers = &cmd };
    pthread_mutex_lock(&vk->shared->queue_lock);
    VkResult r = vkQueueSubmit(vk->queue, 1, &si, vk->fence);
    pthread_mutex_unlock(&vk->shared->queue_lock);
    if (r != VK_SUCCESS) return em_vk_fail(vk->err, r, what);
    if (vk->spin_ns) {
        /* poll a while before sleeping in the driver: the driver's wake-up
         * took ~0.1 ms of each H100 decode step (llama-3b Q8_0 388 -> 406
         * tokens/s, docs/performance.md session 22), at the price of one
         * host thread busy for up to spin_ns per wait */
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (;;) {
            r = vkGetFenceStatus(vk->dev, vk->fence);
            if (r != VK_NOT_READY) break;
            clock_gettime(CLOCK_MONOTONIC, &b);
            if ((uint64_t)(b.tv_sec - a.tv_sec) * 1000000000u + (uint64_t)b.tv_nsec -
                    (uint64_t)a.tv_nsec > vk->spin_ns)
                break;
        }
        if (r == VK_SUCCESS) return EMBER_OK;
        if (r != VK_NOT_READY) return em_vk_fail(vk->err, r, what);
    }
    VK_TRY(vkWaitForFences(vk->dev, 1, &vk->fence, VK_TRUE, UINT64_MAX), what);
    return EMBER_OK;
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

/* The memory properties to try for `where`, best first; a zero ends it. */
static void memory_wanted(em_vk_mem where, VkMemoryPropertyFlags want[3]) {
    const VkMemoryPropertyFlags host = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                       VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    want[1] = want[2] = 0;
    if (where == EM_VK_MEM_DEVICE) {
        want[0] = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
    } else if (where == EM_VK_MEM_UPLOAD) {
        want[0] = host | VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
        want[1] = host;
    } else {
        want[0] = host | VK_MEMORY_PROPERTY_HOST_CACHED_BIT;
        want[1] = host;
    }
}

/* b's memory of a type `want` names; VK_ERROR_* where none is or its heap
 * is full (the caller tries the next). */
static VkResult alloc_bound(em_vk *vk, em_vk_buf *b, const VkMemoryRequirements *req,
                            VkMemoryPropertyFlags want) {
    uint32_t type;
    if (find_memory(vk, req->memoryTypeBits, want, &type)) return VK_ERROR_FORMAT_NOT_SUPPORTED;
    VkMemoryAllocateInfo ai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                                .allocationSize = req->size,
                                .memoryTypeIndex = type };
    VkResult r = vkAllocateMemory(vk->dev, &ai, NULL, &b->mem);
    if (r != VK_SUCCESS) {
        b->mem = VK_NULL_HANDLE;
        return r;
    }
    r = vkBindBufferMemory(vk->dev, b->buf, b->mem, 0);
    if (r == VK_SUCCESS && (want & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT))
        r = vkMapMemory(vk->dev, b->mem, 0, VK_WHOLE_SIZE, 0, &b->map);
    if (r != VK_SUCCESS) {
        b->map = NULL;
        vkFreeMemory(vk->dev, b->mem, NULL);
        b->mem = VK_NULL_HANDLE;
    }
    return r;
}

int em_vk_buf_create(em_vk *vk, size_t size, em_vk_mem where, em_vk_buf *b) {
    memset(b, 0, sizeof *b);
    VkBufferCreateInfo ci = { .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                              .size = size,
                              .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                                       VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                       VK_BUFFER_USAGE_TRANSFER_DST_BIT |
                                       VK_BUFFER_USAGE_INDIRECT_BUFFER_BIT,
                              .sharingMode = VK_SHARING_MODE_EXCLUSIVE };
    VK_TRY(vkCreateBuffer(vk->dev, &ci, NULL, &b->buf), "vkCreateBuffer");
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(vk->dev, b->buf, &req);
    VkMemoryPropertyFlags want[3];
    memory_wanted(where, want);
    VkResult r = VK_ERROR_FORMAT_NOT_SUPPORTED, first = VK_SUCCESS;
    for (int i = 0; i < 3 && want[i] && r != VK_SUCCESS; i++) {
        r = alloc_bound(vk, b, &req, want[i]);
        if (r != VK_ERROR_FORMAT_NOT_SUPPORTED && first == VK_SUCCESS) first = r;
    }
    if (r != VK_SUCCESS) {
        em_vk_buf_destroy(vk, b);
        if (first == VK_SUCCESS)
            return em_error(vk->err, EMBER_ERR_UNSUPPORTED, "vulkan: no %s memory for a buffer",
                            where == EM_VK_MEM_DEVICE ? "device-local" : "host-visible");
        return em_vk_fail(vk->err, first, "allocating a buffer");
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
    int rc = em_vk_cmd_begin(vk);
    if (rc) return rc;
    VkBufferCopy c = { soff, doff, n };
    vkCmdCopyBuffer(vk->cmd, src, dst, 1, &c);
    return em_vk_cmd_submit(vk, "submitting a copy");
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
