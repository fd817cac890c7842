/* Internal to the Vulkan backend: the device, its buffers and compute
 * dispatches. Every failure returns an ember status with a message in the
 * caller's error slot; nothing aborts.
 *
 * One shape for every pipeline: four storage buffers (bindings 0-3) and a
 * push-constant block whose first four words are the bindings' offsets in
 * 32-bit words past the bound (aligned-down) offset, so a tensor anywhere
 * in a buffer can be bound while the bound offset meets the device's
 * minStorageBufferOffsetAlignment. */
#ifndef EMBER_VK_H
#define EMBER_VK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vulkan/vulkan.h>

#include "../../lib/util.h"

/* Weight types the product and get_rows shaders take, in this order:
 * F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K. A family's
 * pipeline for a type is its first plus the type's index. */
#define EM_VK_WTYPES 10
/* The index of ember type `type` in that list, -1 where it has none. */
int em_vk_wtype_index(uint32_t type);

/* The compute shaders (shaders/NAME.comp), one pipeline per variant.
 * Pipelines are made on first use (device.c, em_vk_pipeline): a model
 * needs the variants of its weight types only, and making the ~90 others
 * cost seconds per device on lavapipe. */
/* mul_mvq's folds (em_vk_mul_mvq_variant) */
#define EM_VK_MVQ_MODES 5
typedef enum em_vk_pipe {
    EM_VK_MATMUL = 0, /* + weight type index */
    EM_VK_GET_ROWS = EM_VK_MATMUL + EM_VK_WTYPES,
    EM_VK_RMS_NORM = EM_VK_GET_ROWS + EM_VK_WTYPES,
    EM_VK_ADD, EM_VK_MUL, EM_VK_SWIGLU, EM_VK_SCALE, EM_VK_SIGMOID, EM_VK_SOFTMAX, EM_VK_ROPE,
    EM_VK_KV_STORE_F32, EM_VK_KV_STORE_F16, EM_VK_KV_STORE_Q8_0,
    EM_VK_ATTN_F32, EM_VK_ATTN_F16, EM_VK_ATTN_Q8_0,
    /* ... writing the output's 8-bit copy too (attn.comp Q8OUT) */
    EM_VK_ATTN_F32_Q8, EM_VK_ATTN_F16_Q8, EM_VK_ATTN_Q8_0_Q8,
    /* prompts: tiles of 16 queries (attn_tile.comp), F32 and Q8_0 caches,
     * each for heads of Dv up to 32, 64 and 128 (its NQ 1, 2, 4) */
    EM_VK_ATTN_TILE_F32, EM_VK_ATTN_TILE_F32_2, EM_VK_ATTN_TILE_F32_4,
    EM_VK_ATTN_TILE_Q8_0, EM_VK_ATTN_TILE_Q8_0_2, EM_VK_ATTN_TILE_Q8_0_4,
    EM_VK_MOE_ROUTE, EM_VK_MOE_SUM, EM_VK_COPY,
    EM_VK_MUL_MM, /* tiles, + weight type index */
    /* mul_mv, only where compute shaders have subgroup arithmetic:
     * EM_VK_MUL_MV + em_vk_mul_mv_variant(...) */
    EM_VK_MUL_MV = EM_VK_MUL_MM + EM_VK_WTYPES,
    /* mul_mvq (8-bit activations, block types):
     * EM_VK_MUL_MVQ + em_vk_mul_mvq_variant(...) */
    EM_VK_MUL_MVQ = EM_VK_MUL_MV + 12 * EM_VK_WTYPES,
    EM_VK_QUANT_ACT = EM_VK_MUL_MVQ + 4 * EM_VK_MVQ_MODES * EM_VK_WTYPES,
    EM_VK_ROUND_ACT, /* quant_act in place */
    EM_VK_RMS_NORM_Q8, /* rms_norm writing an 8-bit copy too */
    EM_VK_MUL_MMC, /* tiles on cooperative matrices, + weight type index */
    EM_VK_PIPE_COUNT = EM_VK_MUL_MMC + EM_VK_WTYPES
} em_vk_pipe;

/* mul_mv's variants: weight type index, one token or eight per pass, and
 * the op folded in (0 none, 1 a residual add, 2 a SwiGLU of two
 * products, 3 the RMS norm of the input; shaders/mul_mv.comp), or the
 * experts' products (4 plain, 5 with the SwiGLU: mul_mv.comp's ID). */
static inline int em_vk_mul_mv_variant(int type_index, int one_token, int mode) {
    return (mode * 2 + one_token) * EM_VK_WTYPES + type_index;
}
/* mul_mvq's variants: mul_mv's modes 0-2, 3 a SwiGLU whose output it
 * rounds to 8 bits, 4 a residual add whose RMS norm it writes rounded to
 * 8 bits (shaders/mul_mvq.comp EPI), and whether the SPIR-V is the one
 * without the integer dot product instruction (emulated). */
static inline int em_vk_mul_mvq_variant(int type_index, int one_token, int mode, int emulated) {
    return ((emulated * EM_VK_MVQ_MODES + mode) * 2 + one_token) * EM_VK_WTYPES + type_index;
}
/* mul_mv's invocations per weight row: a multiple of the subgroup size
 * (its reduction adds whole subgroups), at least 32 so a row's 16-byte
 * loads cover 512 contiguous bytes; 128 / this rows per workgroup.
 * EMBER_VULKAN_MV_TPR (32, 64 or 128, a multiple of the subgroup size)
 * overrides it, for measurements. */
uint32_t em_vk_mul_mv_tpr(uint32_t subgroup_size);
/* mul_mvq's invocations per workgroup for a variant (em_vk_mul_mvq_variant's
 * one_token and mode): 32 rows' worth for the one-token roundings (modes 3
 * and 4), which then round whole blocks in the workgroup (mul_mvq.comp
 * OWN), where the device allows it and EMBER_VULKAN_NO_OWN_BLOCKS is not
 * set; 128 otherwise. */
struct em_vk;
uint32_t em_vk_mul_mvq_wgs(const struct em_vk *vk, int one_token, int mode);
/* A pipeline's name, for the profile. */
const char *em_vk_pipe_name(int pipe, char buf[32]);

/* Bindings 0-3 as above; bindings 4-6 (the attention's split scratch and
 * 8-bit output; mul_mvq's counts, 8-bit output and norm weight) are bound
 * at aligned offsets and have no offset word (the push constants' first
 * four words stay the offsets of 0-3 in every shader): an op passes the
 * rest of such an offset in words of its own. Unused bindings repeat
 * binding 0's aligned base. */
#define EM_VK_BINDINGS 7
#define EM_VK_OFFSET_WORDS 4
#define EM_VK_PUSH_BYTES 128

typedef struct em_vk_buf {
    VkBuffer buf;
    VkDeviceMemory mem;
    size_t size;
    void *map; /* host address when the memory is host-visible, else NULL */
} em_vk_buf;

/* What contexts on one device share (device.c): the device, its queue and
 * the pipelines, made once per device index and released with the last
 * user; and the instance, made once per process and kept (the H100's
 * driver here refused instances after ~30 had been made and destroyed).
 * Creating a device costs far more than a context should. */
typedef struct em_vk_shared em_vk_shared;

/* One recorded command: a dispatch (pipeline, bindings, push constants,
 * workgroups) or a buffer copy. A graph's run is a list of these; the list
 * is compared with the lists of recent runs, and an equal one reuses that
 * run's command buffer and descriptor sets (record.c). Zeroed before it is
 * filled, so equal commands compare equal byte for byte. */
typedef struct em_vk_rec {
    uint32_t copy;      /* 1: copy `range[0]` bytes buf[0]+base[0] -> buf[1]+base[1] */
    uint32_t writes;    /* bit i: binding i is written (a dispatch: 3, and 2 or 4
                           where em_vk_dispatch_w says so); the rest are read */
    uint32_t pipe;
    uint32_t groups[3];
    uint32_t push_bytes;
    VkBuffer buf[EM_VK_BINDINGS];
    VkDeviceSize base[EM_VK_BINDINGS], range[EM_VK_BINDINGS];
    /* the bytes each binding touches, [lo, hi) in its buffer: bindings 0-2
     * (a copy's source) are read, binding 3 (a copy's destination) is
     * written; a barrier goes before a command only where these overlap
     * an earlier command's since the last barrier */
    VkDeviceSize lo[EM_VK_BINDINGS], hi[EM_VK_BINDINGS];
    uint32_t push[EM_VK_PUSH_BYTES / 4];
    /* an indirect dispatch: its workgroup counts at ind_off in ind_buf
     * (written by the host before each submission; `groups` holds the
     * most it may ask for) */
    VkBuffer ind_buf;
    VkDeviceSize ind_off;
} em_vk_rec;

/* A recorded command buffer kept for reuse. */
#define EM_VK_CACHED 4
typedef struct em_vk_cached {
    VkCommandBuffer cmd;
    VkDescriptorPool pool;
    uint32_t pool_sets;
    em_vk_rec *list;
    uint32_t n, cap;
    uint64_t used;      /* tick of its last use; 0: empty */
    uint64_t barriers;   /* recorded between its commands */
    VkQueryPool queries; /* profiling: a timestamp after each command */
    uint32_t n_queries;
    uint32_t *level_at;  /* profiling by levels: the command each barrier
                            level starts at, n_levels + 1 entries */
    uint32_t n_levels;
} em_vk_cached;

/* EMBER_VULKAN_PROFILE=1: GPU time per pipeline, summed over runs and
 * printed to stderr when the backend is freed (a diagnostic; every
 * command then gets a full barrier so that the times add up).
 * EMBER_VULKAN_PROFILE=levels: no barrier added; a timestamp at each
 * barrier the run needs anyway, and the time of each level (the commands
 * between two barriers, which may overlap) summed by the level's list of
 * pipelines: what a run really spends where, concurrency included. */
#define EM_VK_LEVEL_KINDS 64
typedef struct em_vk_level_kind {
    char name[96];      /* its pipelines' names, joined by '+' */
    double ns;
    uint64_t count;
} em_vk_level_kind;

typedef struct em_vk_profile {
    bool on;
    bool levels;        /* EMBER_VULKAN_PROFILE=levels */
    em_vk_level_kind kinds[EM_VK_LEVEL_KINDS];
    uint32_t n_kinds;
    float ns_per_tick;  /* the device's timestampPeriod */
    double ns[EM_VK_PIPE_COUNT + 1]; /* the last slot: copies */
    uint64_t calls[EM_VK_PIPE_COUNT + 1];
    double run_ns;      /* first to last timestamp, summed over runs */
    uint64_t runs;
} em_vk_profile;

typedef struct em_vk {
    em_vk_shared *shared;
    const em_alloc *alloc; /* for the command lists */
    VkInstance inst;
    VkPhysicalDevice phys;
    VkDevice dev;
    VkQueue queue; /* submissions go through em_vk_cmd_submit (a lock) */
    uint32_t queue_family;
    VkPhysicalDeviceMemoryProperties mem_props;
    size_t min_align;     /* minStorageBufferOffsetAlignment */
    size_t max_range;     /* maxStorageBufferRange */
    uint32_t max_groups[3];
    uint32_t subgroup_size;
    bool subgroup_arith;  /* compute shaders have subgroup arithmetic */
    bool use_subgroups;   /* ... and EMBER_VULKAN_NO_SUBGROUPS is not set (tests
                             run the portable shaders on any device with it) */
    bool no_rope_fold;    /* EMBER_VULKAN_NO_ROPE_FOLD: RoPE as its own dispatch
                             (for tests and measurements) */
    bool norm_fold;       /* EMBER_VULKAN_NORM_FOLD=1: RMS norms folded into the
                             products that read them (off by default: on the
                             H100 it cost more than it saved, see ops.c) */
    bool has_idot;        /* shaderIntegerDotProduct enabled on the device */
    bool use_idot;        /* ... and EMBER_VULKAN_NO_IDOT is not set (tests run
                             mul_mvq's emulated dot products with it) */
    bool has_coopmat;     /* VK_NV_cooperative_matrix (16 x 16 x 16 F16 -> F32)
                             and shaderFloat16 enabled on the device */
    bool use_coopmat;     /* ... and EMBER_VULKAN_NO_COOPMAT is not set: prompts'
                             products with act_type Q8_0 run mul_mmc.comp */
    bool act_q8;          /* act_type Q8_0: few-token products of block-quantized
                             weights take 8-bit activations (mul_mvq.comp) */
    uint32_t attn_splits; /* EMBER_VULKAN_ATTN_SPLITS: decode attention's
                             workgroups per head (1: unsplit; 0: by the cache's
                             length), for tests and measurements */
    bool no_epi;          /* EMBER_VULKAN_NO_EPI: 8-bit roundings and norms as
                             dispatches of their own, not folded into the
                             products before them (tests, measurements) */
    const char *skip;     /* EMBER_VULKAN_SKIP=a,b: dispatches of pipelines whose
                             names start so are not recorded. Wrong results:
                             for measuring what a kind of dispatch costs in a
                             real run (the profile's timestamps add their own
                             waits), never for use */
    bool no_barriers;     /* EMBER_VULKAN_NO_BARRIERS: none between levels (the
                             last, before the host reads, stays). Wrong
                             results: measures what the barriers cost, the
                             most any way of removing them could win */
    bool no_tiles;        /* EMBER_VULKAN_NO_TILES: prompts through mul_mv too
                             (for tests and measurements) */
    bool pipe_stats;      /* EMBER_VULKAN_PIPELINE_STATS: each pipeline's
                             compiler statistics (registers, shared memory)
                             to stderr as it is made, where the driver has
                             VK_KHR_pipeline_executable_properties */
    uint32_t max_shared;  /* maxComputeSharedMemorySize (Vulkan promises 16 KB) */
    uint32_t max_wg;      /* invocations per workgroup: the smaller of
                             maxComputeWorkGroupInvocations and
                             maxComputeWorkGroupSize[0] */
    uint64_t spin_ns;     /* poll a submission's fence this long before
                             waiting in the driver: 3 ms (none on a CPU
                             device), or EMBER_VULKAN_SPIN_US (0: never) */
    bool no_own_blocks;   /* EMBER_VULKAN_NO_OWN_BLOCKS: mul_mvq's one-token
                             roundings by counts, not in one workgroup */
    bool no_attn_tiles;   /* EMBER_VULKAN_NO_ATTN_TILES (or NO_TILES): prompt
                             attention through attn.comp, not attn_tile.comp */
    char name[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE];
    VkCommandPool cmd_pool;
    VkCommandBuffer cmd;
    VkFence fence;
    VkDescriptorSetLayout set_layout; /* shared */
    VkPipelineLayout pipe_layout;     /* shared */
    VkPipeline pipes[EM_VK_PIPE_COUNT]; /* shared */
    em_vk_buf staging;    /* host-visible, for uploads and downloads */
    bool recording;
    em_vk_rec *rec;       /* the run being built */
    uint32_t n_rec, rec_cap;
    em_vk_cached cache[EM_VK_CACHED];
    uint64_t tick;
    uint64_t recorded, reused; /* runs recorded afresh / resubmitted */
    uint64_t barriers, commands; /* in the last run submitted */
    em_vk_profile prof;
    char *err;
} em_vk;

/* The status for a failed Vulkan call, with a message: memory exhaustion
 * is EMBER_ERR_NO_MEMORY, a lost device EMBER_ERR_BAD_STATE (the backend
 * cannot go on), the rest EMBER_ERR_INTERNAL. */
int em_vk_fail(char *err, VkResult r, const char *what);
#define VK_TRY(call, what)                                                                     \
    do {                                                                                       \
        VkResult r_ = (call);                                                                  \
        if (r_ != VK_SUCCESS) return em_vk_fail(vk->err, r_, what);                            \
    } while (0)

/* Opens device `index` of the instance's physical devices and builds the
 * pipelines; `a` (kept) allocates the command lists. On failure everything made is released. */
int em_vk_open(em_vk *vk, int index, const em_alloc *a, char *err);
void em_vk_close(em_vk *vk);
/* The number of Vulkan devices, or a status < 0 with a message. */
int em_vk_count_devices(char *err);

/* Where a buffer lives. Shaders' reads of host memory cross PCIe (over a
 * microsecond each on the H100, and attention's position -> block table
 * -> row reads depend on each other), and the host's reads of
 * write-combined memory are uncached. */
typedef enum em_vk_mem {
    EM_VK_MEM_DEVICE,   /* device-local, not mapped */
    EM_VK_MEM_UPLOAD,   /* mapped, written by the host and read by shaders:
                           device-local where the device maps it (a
                           resizable BAR), else host memory */
    EM_VK_MEM_READBACK, /* mapped, read by the host: host-cached memory where
                           offered */
} em_vk_mem;
int em_vk_buf_create(em_vk *vk, size_t size, em_vk_mem where, em_vk_buf *b);
void em_vk_buf_destroy(em_vk *vk, em_vk_buf *b);
/* Host <-> device copies through the staging buffer; each waits until
 * done. Not while recording. */
int em_vk_upload(em_vk *vk, em_vk_buf *dst, size_t off, const void *src, size_t n);
int em_vk_download(em_vk *vk, const em_vk_buf *src, size_t off, void *dst, size_t n);

/* A tensor's place: buffer and byte offset (a multiple of 4), and the
 * bytes it spans from there (0: to the buffer's end), for the barriers.
 * For block-quantized weights in the device layout (shaders/common.glsl),
 * `scales` is the byte offset of their scales from `off`. */
typedef struct em_vk_ref {
    const em_vk_buf *buf;
    size_t off;
    size_t bytes;
    size_t scales;
} em_vk_ref;

/* A run: begin, then dispatches and copies, then submit-and-wait, which
 * records a command buffer or reuses one recorded for an equal list
 * (record.c). A command reads bindings 0-2 and writes binding 3; a barrier
 * is recorded before it only when those bytes overlap bytes written (or,
 * for its write, read) by a command since the last barrier, so independent
 * commands (a layer's Q, K and V products) run together. `push` holds the
 * op's own constants after the four offset words (the caller leaves
 * room). */
int em_vk_begin(em_vk *vk, uint32_t max_commands);
/* Makes pipeline p on first use (once per device; device.c). */
int em_vk_pipeline(em_vk *vk, em_vk_pipe p);
int em_vk_dispatch(em_vk *vk, em_vk_pipe pipe, const em_vk_ref refs[EM_VK_BINDINGS],
                   uint32_t *push, size_t push_bytes, uint32_t gx, uint32_t gy, uint32_t gz);
/* The same for a shader that writes more bindings than 3 (`writes`, bit
 * i for binding i: the RMS norm's 8-bit copy at 2, the attention's split
 * scratch at 4), so barriers order every write. */
int em_vk_dispatch_w(em_vk *vk, em_vk_pipe pipe, const em_vk_ref refs[EM_VK_BINDINGS],
                     uint32_t *push, size_t push_bytes, const uint32_t groups[3], uint32_t writes);
/* The same with the workgroup counts read at submission from `args` at
 * byte `off` (3 uint32, written by the host before each run; a run's
 * commands are reused for graphs of equal shape, whose counts may differ:
 * the attention's splits follow the positions). `most`: the largest
 * counts the host will write. */
int em_vk_dispatch_indirect(em_vk *vk, em_vk_pipe pipe, const em_vk_ref refs[EM_VK_BINDINGS],
                            uint32_t *push, size_t push_bytes, const uint32_t most[3],
                            uint32_t writes, const em_vk_buf *args, size_t off);
int em_vk_copy(em_vk *vk, const em_vk_buf *src, size_t soff, const em_vk_buf *dst, size_t doff,
               size_t n);
int em_vk_submit(em_vk *vk);
/* Forgets every recorded command buffer: call when a buffer they use is
 * destroyed (its handle could come back for a new one). */
void em_vk_cache_clear(em_vk *vk);
void em_vk_record_free(em_vk *vk);
/* Prints the profile (EMBER_VULKAN_PROFILE) to stderr, if on. */
void em_vk_profile_print(const em_vk *vk);
/* vk's command buffer reset and begun for one submission; ended,
 * submitted under the device's queue lock and waited for. */
int em_vk_cmd_begin(em_vk *vk);
int em_vk_cmd_submit(em_vk *vk, const char *what);
/* A primary command buffer from vk's pool. */
int em_vk_cmd_alloc(em_vk *vk, VkCommandBuffer *cmd);
/* An ended command buffer submitted under the queue lock and waited for. */
int em_vk_submit_wait(em_vk *vk, VkCommandBuffer cmd, const char *what);

#endif
