/*
 * ember — an embeddable LLM inference library with a stable C ABI.
 *
 * Conventions used by every function in this header:
 *  - Functions that can fail return `int`: EMBER_OK (0) or a negative
 *    ember_status code. The numbers never change meaning.
 *  - On failure a message naming what was wrong is recorded:
 *      * for a context, in ember_context_last_error(ctx);
 *      * always, in the calling thread's ember_last_error().
 *    Models are shared and immutable, so they carry no error slot of their
 *    own; use ember_last_error() after a failed model call.
 *  - Handles are opaque. ember_*_free(&h) releases h and sets h to NULL;
 *    passing a pointer to NULL is a no-op.
 *  - Params structs are filled by ember_*_default_params() and may grow in
 *    later versions: they start with `struct_size` (set by the default
 *    function) and end with reserved bytes. Always start from the defaults.
 *  - Threads: a model is immutable after loading and may be used by any
 *    number of threads and contexts at once. A context (and a sampler) must
 *    be used by one thread at a time. Functions that are not tied to an
 *    object are thread-safe unless stated otherwise.
 *  - Library code never aborts the host process on bad input.
 */
#ifndef EMBER_H
#define EMBER_H

#include <stddef.h>
#include <stdint.h>

#include "ember_version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(EMBER_BUILDING_DLL)
#define EMBER_API __declspec(dllexport)
#elif defined(_WIN32) && !defined(EMBER_STATIC)
#define EMBER_API __declspec(dllimport)
#elif defined(__GNUC__)
#define EMBER_API __attribute__((visibility("default")))
#else
#define EMBER_API
#endif

/* ------------------------------------------------------------------ */
/* Version                                                            */
/* ------------------------------------------------------------------ */

/* The version string of the library actually linked ("MAJOR.MINOR.PATCH"),
 * which may differ from EMBER_VERSION_STRING the caller compiled against.
 * Static storage; thread-safe. */
EMBER_API const char *ember_version(void);

/* EMBER_VERSION_NUMBER of the library actually linked. Thread-safe. */
EMBER_API uint32_t ember_version_number(void);

/* ------------------------------------------------------------------ */
/* Status codes (stable numbers: never renumbered, never reused)      */
/* ------------------------------------------------------------------ */

typedef enum ember_status {
    EMBER_OK = 0,
    EMBER_ERR_INVALID_ARGUMENT = -1, /* NULL handle, out-of-range value   */
    EMBER_ERR_NO_MEMORY = -2,        /* an allocation failed              */
    EMBER_ERR_IO = -3,               /* open/read/mmap failed             */
    EMBER_ERR_FORMAT = -4,           /* malformed or inconsistent file    */
    EMBER_ERR_UNSUPPORTED = -5,      /* valid, but not implemented        */
    EMBER_ERR_NOT_AVAILABLE = -6,    /* backend/feature compiled out      */
    EMBER_ERR_CONTEXT_FULL = -7,     /* position >= n_ctx                 */
    EMBER_ERR_KV_FULL = -8,          /* no free KV blocks for the batch   */
    EMBER_ERR_BAD_TOKEN = -9,        /* token id outside the vocabulary   */
    EMBER_ERR_BUFFER_TOO_SMALL = -10,/* caller's output buffer too small  */
    EMBER_ERR_NOT_FOUND = -11,       /* metadata key / tensor not present */
    EMBER_ERR_BAD_STATE = -12,       /* call not valid in this state      */
    EMBER_ERR_INTERNAL = -13         /* a bug in ember: please report     */
} ember_status;

/* A short static English description of a status code ("format error").
 * Unknown codes give "unknown status". Thread-safe. */
EMBER_API const char *ember_status_string(int status);

/* The message of the last failed ember call made by the calling thread
 * (thread-local storage; "" if none). Valid until the thread's next failing
 * call. Thread-safe. */
EMBER_API const char *ember_last_error(void);

/* ------------------------------------------------------------------ */
/* Logging and memory                                                 */
/* ------------------------------------------------------------------ */

typedef enum ember_log_level {
    EMBER_LOG_ERROR = 0,
    EMBER_LOG_WARN = 1,
    EMBER_LOG_INFO = 2,
    EMBER_LOG_DEBUG = 3
} ember_log_level;

typedef void (*ember_log_fn)(int level, const char *message, void *user);

/* Installs a process-wide log callback (NULL restores the default, which
 * prints warnings and errors to stderr) and the most verbose level passed to
 * it. Call it before other threads use ember: it is not synchronised with
 * concurrent logging. `user` is passed back unchanged. */
EMBER_API void ember_set_log_callback(ember_log_fn fn, void *user, int max_level);

/* Allocator hooks. Every allocation ember makes for an object goes through
 * the hooks given in that object's params (threads' stacks, created by the
 * OS, excepted). All three functions must be set, or all NULL for libc.
 * They may be called from any thread that uses the object, so they must be
 * thread-safe if the object is shared. */
typedef struct ember_allocator {
    void *(*malloc_fn)(size_t size, void *user);
    void *(*realloc_fn)(void *ptr, size_t size, void *user);
    void (*free_fn)(void *ptr, void *user);
    void *user;
} ember_allocator;

/* ------------------------------------------------------------------ */
/* Tensor types (GGUF numbering)                                      */
/* ------------------------------------------------------------------ */

typedef enum ember_type {
    EMBER_TYPE_F32 = 0,
    EMBER_TYPE_F16 = 1,
    EMBER_TYPE_Q4_0 = 2,
    EMBER_TYPE_Q4_1 = 3,
    EMBER_TYPE_Q5_0 = 6,
    EMBER_TYPE_Q5_1 = 7,
    EMBER_TYPE_Q8_0 = 8,
    EMBER_TYPE_Q4_K = 12,
    EMBER_TYPE_Q5_K = 13,
    EMBER_TYPE_Q6_K = 14,
    EMBER_TYPE_BF16 = 30,
    EMBER_TYPE_COUNT = 40 /* size of arrays indexed by ember_type */
} ember_type;

/* Name of a tensor type ("f16", "q8_0", ...), or NULL if unknown. */
EMBER_API const char *ember_type_name(int type);

/* ------------------------------------------------------------------ */
/* Models                                                             */
/* ------------------------------------------------------------------ */

typedef struct ember_model ember_model;

typedef struct ember_model_params {
    size_t struct_size;        /* sizeof(ember_model_params)             */
    ember_allocator allocator; /* default: all NULL = libc               */
    /* Caps applied while parsing untrusted files (0 = the default). */
    uint64_t max_string_length; /* default 16 MiB                        */
    uint64_t max_array_length;  /* default 1<<26 elements                */
    uint64_t max_tensor_count;  /* default 1<<16                         */
    /* Nonzero: read metadata and the tokenizer only (no weights, any
     * architecture); such a model tokenizes but cannot make contexts. */
    int32_t vocab_only;
    uint8_t reserved[60];
} ember_model_params;

/* Fills *params with the defaults. Thread-safe. */
EMBER_API void ember_model_default_params(ember_model_params *params);

/* Loads a GGUF file through mmap; the mapping lives as long as the model.
 * `params` may be NULL for the defaults. On success *out owns a new model
 * (free it with ember_model_free); on failure *out is NULL and nothing is
 * left allocated. Thread-safe. */
EMBER_API int ember_model_load_file(const char *path,
                                    const ember_model_params *params,
                                    ember_model **out);

/* Loads a model from a GGUF image in the caller's memory without copying
 * the weights (a firmware image may hold it in flash). The caller keeps
 * `data` valid and unchanged until ember_model_free. `data` must be aligned
 * to at least 32 bytes. Thread-safe. */
EMBER_API int ember_model_load_memory(const void *data, size_t size,
                                      const ember_model_params *params,
                                      ember_model **out);

/* Frees a model and sets *model to NULL. Every context made from it must
 * have been freed first. */
EMBER_API void ember_model_free(ember_model **model);

/* Model queries. All are thread-safe; strings are owned by the model. */
EMBER_API const char *ember_model_arch(const ember_model *model);
EMBER_API int32_t ember_model_n_vocab(const ember_model *model);
EMBER_API int32_t ember_model_n_ctx_train(const ember_model *model);
EMBER_API int32_t ember_model_n_layer(const ember_model *model);
EMBER_API int32_t ember_model_n_embd(const ember_model *model);
EMBER_API int32_t ember_model_n_head(const ember_model *model);
EMBER_API int32_t ember_model_n_head_kv(const ember_model *model);
EMBER_API uint64_t ember_model_n_params(const ember_model *model);
/* Routed experts per MoE layer; 0 for dense models. */
EMBER_API int32_t ember_model_n_expert(const ember_model *model);

/* Bytes of tensor data of type `type` (an ember_type); 0 for none. */
EMBER_API uint64_t ember_model_type_bytes(const ember_model *model, int type);

/* Metadata. Keys are the GGUF keys ("llama.context_length"). */
EMBER_API int32_t ember_model_meta_count(const ember_model *model);
/* Key of entry i (0 <= i < count), or NULL. */
EMBER_API const char *ember_model_meta_key(const ember_model *model, int32_t i);
/* Writes the value of `key` as text (numbers in decimal, strings as is,
 * arrays as "[n x type]" with their first elements) into buf, always
 * NUL-terminated. *needed (may be NULL) gets the full length without the
 * NUL; EMBER_ERR_BUFFER_TOO_SMALL if it was cut. EMBER_ERR_NOT_FOUND if no
 * such key. */
EMBER_API int ember_model_meta_string(const ember_model *model, const char *key,
                                      char *buf, size_t buf_size, size_t *needed);
/* Integer (any integer or bool type) and float (f32/f64) values;
 * EMBER_ERR_INVALID_ARGUMENT if the key holds another type. */
EMBER_API int ember_model_meta_int(const ember_model *model, const char *key, int64_t *out);
EMBER_API int ember_model_meta_float(const ember_model *model, const char *key, double *out);

/* ------------------------------------------------------------------ */
/* Backends                                                           */
/* ------------------------------------------------------------------ */

typedef enum ember_backend_kind {
    EMBER_BACKEND_CPU = 0,
    EMBER_BACKEND_VULKAN = 1
} ember_backend_kind;

/* EMBER_OK if the backend is compiled in and has a usable device,
 * EMBER_ERR_NOT_AVAILABLE otherwise (with the reason in ember_last_error). */
EMBER_API int ember_backend_available(int kind);

/* CPU feature levels used by the kernel dispatcher. */
#define EMBER_CPU_AVX2 (1u << 0)   /* AVX2 + FMA + F16C */
#define EMBER_CPU_AVX512 (1u << 1) /* AVX-512 F/BW/VL    */
#define EMBER_CPU_AVX512_VNNI (1u << 2) /* + int8 dot products (VPDPBUSD) */
#define EMBER_CPU_AVX512_BF16 (1u << 3) /* + BF16 dot products (VDPBF16PS) */
#define EMBER_CPU_NEON (1u << 8)    /* AArch64 Advanced SIMD           */
#define EMBER_CPU_DOTPROD (1u << 9) /* + int8 dot products (SDOT)       */
#define EMBER_CPU_RVV (1u << 16)    /* RISC-V vector extension 1.0      */

/* Flags the CPU has. */
EMBER_API uint32_t ember_cpu_features(void);
/* Restricts the kernels chosen for contexts created afterwards to the
 * levels in `mask` (ANDed with what the CPU has); ~0u allows all. The
 * EMBER_CPU_MASK environment variable (a number) sets the initial mask.
 * Call before creating contexts; not synchronised with context creation. */
EMBER_API void ember_cpu_set_mask(uint32_t mask);

/* ------------------------------------------------------------------ */
/* Contexts and evaluation                                            */
/* ------------------------------------------------------------------ */

typedef struct ember_context ember_context;

typedef struct ember_context_params {
    size_t struct_size;        /* sizeof(ember_context_params)            */
    uint32_t n_ctx;            /* KV positions per sequence; 0 = model's training length */
    uint32_t n_batch;          /* most entries per ember_eval call; default 512 */
    uint32_t n_threads;        /* 0 = one per online CPU                  */
    uint32_t n_seq_max;        /* distinct sequence ids; default 1        */
    int32_t backend;           /* ember_backend_kind; default CPU         */
    int32_t device;            /* device index within the backend; 0      */
    ember_allocator allocator; /* default: all NULL = libc                */
    /* Element type of the KV cache: EMBER_TYPE_F32 (default; exact F32
     * attention), EMBER_TYPE_F16 (half the memory; attention then uses
     * F16 products as llama.cpp's default F16 cache does, so its outputs
     * reproduce llama.cpp's to ~1e-5) or EMBER_TYPE_Q8_0 (8-bit rows in
     * GGUF Q8_0 blocks, 34 bytes per 32 values, 27% of F32; products in
     * F32; kjv-7m's perplexity moves by +0.004 in 32.76). Q8_0 needs each
     * head's K and V widths to be multiples of 32, else creation fails
     * with EMBER_ERR_UNSUPPORTED. */
    int32_t kv_type;
    /* KV budget in blocks of kv_block_size positions, shared by all
     * sequences (0 = enough for every sequence to reach n_ctx). Memory is
     * n_blocks * ember_kv_info.bytes_per_block, allocated at creation. */
    uint32_t kv_blocks;
    /* Activations of matmuls with block-quantized weights: EMBER_TYPE_F32
     * (default: F32 products, or 16-bit integer ones, errors ~1e-5 of the
     * weights' own) or EMBER_TYPE_Q8_0 (llama.cpp's arithmetic: blocks of
     * 32 bytes with an F16 scale; on x86 CPUs with AVX2 (or AVX512-VNNI)
     * Q8_0/Q4_0 prompts then run 1.2-2x faster, and decode of every block
     * type (K-quants included; MoE experts excepted, they keep F32
     * activations) reads one 8-bit plane; logits error about
     * doubles on tiny models, kjv-7m's perplexity is unchanged to 0.01).
     * Elsewhere EMBER_TYPE_Q8_0 changes nothing on the CPU; on Vulkan it
     * means the same rounding, and on devices with cooperative matrices
     * prompts' products then take F16 inputs on them (docs/api.md).
     * EMBER_TYPE_BF16 (0.3.0):
     * matmuls with BF16 weights round their activations to BF16, as
     * llama.cpp does for BF16 models, and prompts run two BF16 products
     * per F32 lane (VDPBF16PS, about 2x the F32 rate); on x86 CPUs with
     * AVX512-BF16 only, elsewhere it changes nothing. MoE experts keep
     * F32 activations. */
    int32_t act_type;
    /* Positions per KV block: a power of two from 4 to 256 (0 = default,
     * EMBER_KV_BLOCK). Smaller blocks waste less of each sequence's last,
     * partly filled block and let prefix reuse match at finer steps; larger
     * ones mean shorter block tables. Results do not depend on it. */
    uint32_t kv_block_size;
    /* Layer split (0.3.0), for a model larger than the device's memory:
     * with a backend other than the CPU, the device runs n_device_layers
     * of the model's layers and the CPU backend (n_threads threads) the
     * others, each layer's KV rows kept where it runs. 0 (default) or
     * n_layer or more: the whole model on the device. device_layers_at
     * says which: EMBER_LAYERS_FIRST (default), the token embedding and
     * the first n_device_layers layers on the device, the rest and the
     * output on the CPU; EMBER_LAYERS_LAST, the first layers on the CPU,
     * the last n_device_layers and the output on the device (as
     * llama.cpp's -ngl). One activation row per token crosses between
     * them per evaluation. Must be 0 with the CPU backend. */
    int32_t n_device_layers;
    int32_t device_layers_at;
    uint8_t reserved[40];
} ember_context_params;

/* ember_context_params.device_layers_at */
#define EMBER_LAYERS_FIRST 0
#define EMBER_LAYERS_LAST 1

EMBER_API void ember_context_default_params(ember_context_params *params);

/* Creates a context (KV cache, work buffers, thread pool) for `model`.
 * All memory is allocated here; evaluation allocates nothing. The model
 * must outlive the context. Thread-safe with respect to other contexts. */
EMBER_API int ember_context_create(const ember_model *model,
                                   const ember_context_params *params,
                                   ember_context **out);
EMBER_API void ember_context_free(ember_context **ctx);

/* Message of the last failed call on this context ("" if none). Owned by
 * the context; valid until its next call. */
EMBER_API const char *ember_context_last_error(const ember_context *ctx);

/* One entry of a batch: token `token` at position `pos` of sequence
 * `seq_id`; `want_logits` nonzero asks for the logits after this token. */
typedef struct ember_batch_entry {
    int32_t token;
    int32_t pos;
    int32_t seq_id;
    int32_t want_logits;
} ember_batch_entry;

/* Evaluates n entries (1 <= n <= n_batch). For each sequence, the batch's
 * positions must be consecutive, in order, and start at or before the
 * sequence's current length: starting earlier drops the cached positions
 * from there on (rollback). On any error nothing in the context changed.
 * Errors: EMBER_ERR_BAD_TOKEN, EMBER_ERR_CONTEXT_FULL (pos >= n_ctx),
 * EMBER_ERR_KV_FULL, EMBER_ERR_INVALID_ARGUMENT. */
EMBER_API int ember_eval(ember_context *ctx, const ember_batch_entry *entries, size_t n);

/* Logits (n_vocab floats) after entry `i` of the last ember_eval, or NULL
 * if that entry did not ask for them. Owned by the context; valid until its
 * next ember_eval or free. */
EMBER_API const float *ember_get_logits(ember_context *ctx, size_t i);

/* Bytes of KV cache one position of one sequence takes, all layers
 * together (MLA models cache the compressed latent, so this is far below
 * n_layer * n_head * (k + v) * element size). */
EMBER_API uint64_t ember_context_kv_bytes_per_token(const ember_context *ctx);

/* Where a context's ops run, so tools can show that none fell back to the
 * CPU. Ops are the nodes of the graph of a full batch. */
typedef struct ember_placement {
    size_t struct_size;     /* sizeof(ember_placement), set by the caller */
    int32_t backend;        /* the context's ember_backend_kind          */
    char device[128];       /* its device's name ("CPU" for the CPU)      */
    uint32_t n_ops;         /* ops per evaluation of a full batch         */
    uint32_t n_ops_backend; /* of those, ops that run on `backend`        */
    uint32_t n_ops_cpu;     /* of those, ops that run on the CPU backend  */
    /* (0.3.0) Layers on `backend`: [first_device_layer,
     * first_device_layer + n_device_layers); the others run on the CPU
     * (ember_context_params.n_device_layers). */
    int32_t first_device_layer;
    int32_t n_device_layers;
    uint8_t reserved[56];
} ember_placement;

/* Fills `out` (up to out->struct_size bytes). Thread-safe with respect to
 * other calls that do not change the context. */
EMBER_API int ember_context_placement(const ember_context *ctx, ember_placement *out);

/* Routing statistics for MoE models: how many tokens were routed to each
 * expert of `layer` since the context was created or the counts reset.
 * Writes min(n, n_expert) counts; dense layers give zeros. Hosts use it to
 * place and cache hot experts. */
EMBER_API int ember_expert_counts(const ember_context *ctx, int32_t layer, uint64_t *counts,
                                  size_t n);
EMBER_API int ember_expert_counts_reset(ember_context *ctx);

/* ---- sequences and the paged KV cache ----
 * Sequence ids are 0..n_seq_max-1; an id with no cached positions is an
 * empty sequence, and its first ember_eval creates it. The cache is paged:
 * positions live in blocks of kv_block_size (EMBER_KV_BLOCK by default),
 * taken from one pool shared by all sequences, so memory follows the
 * tokens actually held. None of these calls is thread-safe with respect to
 * the same context. */
#define EMBER_KV_BLOCK 16

/* Number of cached positions of sequence seq_id, or a negative status. */
EMBER_API int32_t ember_seq_length(ember_context *ctx, int32_t seq_id);
/* Drops the cached positions of a sequence (seq_id) or of all (-1),
 * returning blocks no other sequence holds to the pool. */
EMBER_API int ember_seq_clear(ember_context *ctx, int32_t seq_id);
/* Sequence dst becomes a copy of src (dst's own positions are dropped
 * first). Copy-on-write: both share src's blocks until one of them writes
 * into a shared block, which then gets its own copy; so a fork costs no
 * blocks, and a later write may need one per shared block it touches
 * (counted by ember_eval's EMBER_ERR_KV_FULL check). */
EMBER_API int ember_seq_fork(ember_context *ctx, int32_t src, int32_t dst);
/* Keeps positions 0..n_pos-1 of seq_id and drops the rest (rollback, e.g.
 * of rejected speculative tokens); n_pos >= the length changes nothing. */
EMBER_API int ember_seq_truncate(ember_context *ctx, int32_t seq_id, int32_t n_pos);

/* Prefix reuse. Every block a sequence fills is named by its tokens and
 * the name of the block before it, and stays findable after the sequence
 * is cleared: blocks no sequence holds are kept "cached" and only evicted,
 * least recently released first, when a write needs room (they count as
 * free). This call drops seq_id's positions, then attaches the longest run
 * of whole cached or held blocks equal to tokens[0..n_tokens), keeping at
 * most n_tokens-1 positions: the last token must still be evaluated for
 * its logits. Returns the positions now held (0 when nothing matched) or a
 * negative status; the caller evaluates tokens from that position on.
 * Attaching takes no free block; the blocks are shared, so a later write
 * into one is copy-on-write like after a fork (evaluating the last token
 * of a prompt that matched to a block boundary may copy one block). The cache
 * must have been filled by this context (same model, same kv_type).
 * Blocks are found by a 64-bit name and their 16 tokens compared, so a
 * false match needs a 64-bit collision between two different prefixes. */
EMBER_API int32_t ember_seq_reuse_prefix(ember_context *ctx, int32_t seq_id,
                                         const int32_t *tokens, size_t n_tokens);

/* The state of a context's KV pool. */
typedef struct ember_kv_info {
    size_t struct_size;        /* set by the caller: sizeof(ember_kv_info) */
    uint32_t block_positions;  /* the context's kv_block_size */
    uint32_t blocks_total;     /* the budget */
    uint32_t blocks_free;      /* a write can take: unused plus cached */
    uint32_t blocks_used;      /* held by at least one sequence */
    uint32_t blocks_shared;    /* held by more than one (fork, prefix reuse) */
    uint32_t blocks_cached;    /* held by none, kept for prefix reuse */
    uint64_t bytes_per_block;  /* all layers, K and V */
    uint64_t positions_held;   /* sum of the sequences' lengths */
    uint64_t blocks_copied;    /* copy-on-write copies since creation */
    uint64_t positions_reused; /* attached by ember_seq_reuse_prefix, ever */
    uint64_t positions_written; /* batch entries ember_eval computed, ever */
    uint64_t blocks_evicted;   /* cached blocks taken for new data, ever */
    uint8_t reserved[40];
} ember_kv_info;
/* Fills *info (info->struct_size must be set; smaller, older structs get
 * their prefix). */
EMBER_API int ember_kv_info_get(const ember_context *ctx, ember_kv_info *info);

/* ------------------------------------------------------------------ */
/* Memory plans and arenas (firmware: no allocation after init)       */
/* ------------------------------------------------------------------ */

/* Host memory a model and one CPU context will take. */
typedef struct ember_memory_plan {
    size_t struct_size;      /* sizeof(ember_memory_plan); set by the call */
    uint64_t weights_bytes;  /* tensor data, read in place from the image:
                                not allocated                          */
    uint64_t model_bytes;    /* the model's allocations (metadata,
                                vocabulary, layer tables)              */
    uint64_t context_bytes;  /* the context's, KV rows excluded (work
                                buffers, graph, block tables)          */
    uint64_t kv_bytes;       /* the KV cache rows                      */
    uint64_t tokenize_bytes; /* scratch for tokenizing max_text_bytes
                                of the worst text (all spaces)          */
    uint64_t arena_bytes;    /* an ember arena that holds all of it,
                                header included: exactly the peak of
                                creation and evaluation; with
                                tokenization, enough for any text of
                                max_text_bytes                          */
    uint8_t reserved[64];
} ember_memory_plan;

/* Plans the memory of ember_model_load_memory(data, size, model_params)
 * and ember_context_create(model, context_params) (NULL params: the
 * defaults; a CPU context), then of tokenizing up to max_text_bytes bytes
 * at once (0: none). Nothing of that size is allocated: the library's
 * creation code runs against a counting arena, so the numbers are exact,
 * and KV rows and work buffers are counted, not allocated. It does
 * allocate the metadata-sized part (model_bytes and the small context
 * tables) for the duration of the call, from model_params' allocator.
 * Set out->struct_size (or 0 for this version's size). Thread-safe. */
EMBER_API int ember_memory_plan_get(const void *data, size_t size,
                                    const ember_model_params *model_params,
                                    const ember_context_params *context_params,
                                    uint64_t max_text_bytes, ember_memory_plan *out);

/* Makes *out an allocator that takes all its memory from buf (size bytes,
 * 16-byte aligned), for ember_model_params.allocator and
 * ember_context_params.allocator: with plan.arena_bytes bytes, the
 * planned model and context fit, and evaluation allocates nothing, so a
 * firmware image needs no heap. Blocks are taken in order; freed ones
 * return when they are on top. An exhausted arena makes the call that
 * needed memory fail with EMBER_ERR_NO_MEMORY, leaving nothing made. The
 * arena's state lives at the start of buf; the caller owns buf, which must
 * outlive every object made from it. Not thread-safe: one thread creates,
 * tokenizes and frees at a time (evaluation does not allocate). */
EMBER_API int ember_arena_allocator(void *buf, size_t size, ember_allocator *out);
/* Bytes of an arena in use now and at most so far (header included). */
EMBER_API int ember_arena_usage(const ember_allocator *arena, size_t *used, size_t *peak);

/* ------------------------------------------------------------------ */
/* Tokenizer (thread-safe: reads only the model)                      */
/* ------------------------------------------------------------------ */

#define EMBER_TOKENIZE_ADD_BOS (1u << 0)       /* prepend BOS              */
#define EMBER_TOKENIZE_PARSE_SPECIAL (1u << 1) /* match control tokens' text */

/* Text -> token ids. Writes up to `max_tokens` ids to `tokens` and the
 * total count to *n_tokens; EMBER_ERR_BUFFER_TOO_SMALL if more were needed
 * (call again with *n_tokens). EMBER_ERR_UNSUPPORTED for tokenizer models
 * not implemented yet. Uses the model's allocator for scratch memory. */
EMBER_API int ember_tokenize(const ember_model *model, const char *text, size_t text_len,
                             int32_t *tokens, size_t max_tokens, size_t *n_tokens,
                             uint32_t flags);

#define EMBER_DETOKENIZE_SPECIAL (1u << 0)     /* render control tokens     */
#define EMBER_DETOKENIZE_STRIP_SPACE (1u << 1) /* drop the leading space the
                                                  tokenizer's prefix added */

/* The text of one token's piece (byte tokens give their byte, "▁" becomes
 * a space). Same buffer protocol as ember_model_meta_string but without a
 * terminating NUL: *n_bytes gets the length. */
EMBER_API int ember_token_to_piece(const ember_model *model, int32_t token, char *buf,
                                   size_t buf_size, size_t *n_bytes, uint32_t flags);

/* Token ids -> text (the pieces concatenated), not NUL-terminated. */
EMBER_API int ember_detokenize(const ember_model *model, const int32_t *tokens, size_t n_tokens,
                               char *buf, size_t buf_size, size_t *n_bytes, uint32_t flags);

/* Streaming detokenization: the text of tokens as they are generated,
 * released only in whole UTF-8 characters. A character split across tokens
 * (byte-fallback pieces, byte-level BPE) is held back until its last byte
 * arrives, so a streamed piece never ends in half a character; the
 * concatenation of everything pushed and flushed equals ember_detokenize of
 * the same tokens with the same flags. Bytes that can never form a valid
 * character are passed through as they are, not held.
 *
 * A stream belongs to one thread at a time; many streams may share a model
 * (which must outlive them). Created with the model's allocator. */
typedef struct ember_detok_stream ember_detok_stream;

/* flags: EMBER_DETOKENIZE_* (STRIP_SPACE applies to the stream's first
 * piece). */
EMBER_API int ember_detok_stream_create(const ember_model *model, uint32_t flags,
                                        ember_detok_stream **out);
/* Appends token's piece and writes the text now complete to buf (no NUL),
 * its length to *n_bytes (0 while a character is incomplete).
 * EMBER_ERR_BUFFER_TOO_SMALL: nothing is consumed and *n_bytes is a size
 * that suffices; EMBER_ERR_BAD_TOKEN leaves the stream as it was. */
EMBER_API int ember_detok_stream_push(ember_detok_stream *stream, int32_t token, char *buf,
                                      size_t buf_size, size_t *n_bytes);
/* Ends the text: writes the bytes still held (an incomplete character at
 * the very end, at most 3 bytes) and resets the stream for a new text. */
EMBER_API int ember_detok_stream_flush(ember_detok_stream *stream, char *buf, size_t buf_size,
                                       size_t *n_bytes);
/* Frees a stream and sets *stream to NULL; NULL and *stream == NULL are no-ops. */
EMBER_API void ember_detok_stream_free(ember_detok_stream **stream);

EMBER_API int32_t ember_token_bos(const ember_model *model); /* -1 if none */
EMBER_API int32_t ember_token_eos(const ember_model *model); /* -1 if none */
/* Nonzero for end-of-generation tokens (EOS, EOT). */
EMBER_API int ember_token_is_eog(const ember_model *model, int32_t token);

/* ------------------------------------------------------------------ */
/* Quantization (thread-safe: no shared state)                        */
/* ------------------------------------------------------------------ */

/* Bytes that n elements of `type` take; 0 for an unknown type or an n that
 * is not whole blocks. */
EMBER_API size_t ember_type_row_size(uint32_t type, int64_t n);

/* Quantizes n floats into `type`: EMBER_TYPE_Q8_0 and EMBER_TYPE_Q4_0 with
 * llama.cpp's rounding rules, so the blocks equal llama.cpp's for the same
 * input; Q4_1, Q5_0, Q5_1 with the same rules for their layouts; Q4_K,
 * Q5_K, Q6_K with our own fitted scales (blocks in llama.cpp's layout);
 * F16, F32. dst_size must be at least ember_type_row_size(type, n). */
EMBER_API int ember_quantize_row(uint32_t type, const float *src, int64_t n, void *dst,
                                 size_t dst_size);

/* Called once per tensor written: its type before and after, and the
 * relative error of the stored weights, sqrt(sum (w - w')^2 / sum w^2)
 * (0 for tensors copied unchanged). */
typedef void (*ember_quantize_tensor_fn)(void *user, const char *name, uint32_t from_type,
                                         uint32_t to_type, int64_t n_elements, double rel_error);

/* Mixes of types, as llama.cpp's "_M" files: with type Q4_K or Q5_K, the
 * tensors most sensitive to quantization get Q6_K — output.weight, and
 * attn_v.weight and ffn_down.weight in the first and last eighth of the
 * layers and every third layer between. */
#define EMBER_QUANTIZE_MIX_NONE 0
#define EMBER_QUANTIZE_MIX_M 1

typedef struct ember_quantize_params {
    size_t struct_size;   /* sizeof(ember_quantize_params) */
    /* Type of the weight matrices: EMBER_TYPE_Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
     * Q4_K, Q5_K or Q6_K, or a float type (F32, F16, BF16; rounded to
     * nearest even: a conversion, 0.3.0). Norms, biases and the MoE router stay as they
     * are; a tensor whose rows are not whole blocks of the type falls back
     * to a type with smaller blocks (Q4_K -> Q5_0, Q5_K -> Q5_1,
     * Q6_K -> Q8_0) or, failing that, stays as it is. */
    uint32_t type;
    /* Type of output.weight, the matrix most sensitive to quantization;
     * 0 chooses Q6_K for K-quant types and for the _M mix, the type
     * itself for float types, else Q8_0. */
    uint32_t output_type;
    ember_quantize_tensor_fn on_tensor; /* optional progress / report */
    void *user;
    uint32_t mix;         /* EMBER_QUANTIZE_MIX_* (0.3.0; was reserved, so 0) */
    /* Threads converting rows; 0 = one per online CPU. The file written
     * is the same for every count. (0.3.0; was reserved, so 0.) */
    uint32_t n_threads;
    uint8_t reserved[56];
} ember_quantize_params;

EMBER_API void ember_quantize_default_params(ember_quantize_params *params);

/* Writes a GGUF file at out_path: the model's metadata (general.file_type
 * updated) and its tensors, F32/F16/BF16 weight matrices quantized to
 * params->type. Readable by llama.cpp. On error the output file is
 * removed. The model is only read (it may be used by other threads). */
EMBER_API int ember_model_quantize(const ember_model *model, const char *out_path,
                                   const ember_quantize_params *params);

/* ------------------------------------------------------------------ */
/* Chat templates                                                     */
/* ------------------------------------------------------------------ */

/* One message of a conversation; role is "system", "user" or "assistant". */
typedef struct ember_chat_message {
    const char *role;
    const char *content;
} ember_chat_message;

#define EMBER_CHAT_ADD_ASSISTANT (1u << 0) /* end with the assistant's turn opener */

/* Formats messages as the model expects. The template is recognised from
 * the model's tokenizer.chat_template by its shape and formatted by ember
 * in C; the template text is never executed. `template_name` (NULL: use the
 * model's) names a format instead: "chatml", "llama2", "llama3", "mistral",
 * "phi3", "gemma", "deepseek2", "deepseek3". BOS is not included (the
 * tokenizer adds it). Writes a NUL-terminated string to buf; *needed (may
 * be NULL) gets its length; EMBER_ERR_BUFFER_TOO_SMALL if cut;
 * EMBER_ERR_UNSUPPORTED for a template it does not recognise. Thread-safe. */
EMBER_API int ember_chat_apply(const ember_model *model, const char *template_name,
                               const ember_chat_message *messages, size_t n_messages,
                               uint32_t flags, char *buf, size_t buf_size, size_t *needed);

/* ------------------------------------------------------------------ */
/* Sampling                                                           */
/* ------------------------------------------------------------------ */

typedef struct ember_sampler ember_sampler;

typedef struct ember_sampler_params {
    size_t struct_size;     /* sizeof(ember_sampler_params)                 */
    float temperature;      /* 0.8; <= 0 means greedy (argmax)             */
    int32_t top_k;          /* 40; <= 0 disables                           */
    float top_p;            /* 0.95; >= 1 disables                         */
    float min_p;            /* 0.05; <= 0 disables                         */
    float repeat_penalty;   /* 1.0 (off); >1 penalises recent tokens       */
    int32_t repeat_last_n;  /* 64: how many accepted tokens it looks at    */
    uint64_t seed;          /* 0x5eed; same seed + inputs = same tokens    */
    ember_allocator allocator;
    uint8_t reserved[64];
} ember_sampler_params;

EMBER_API void ember_sampler_default_params(ember_sampler_params *params);

/* A sampler for logits of n_vocab entries. Order of the chain: repetition
 * penalty, top-k, temperature, softmax, top-p, min-p, draw. */
EMBER_API int ember_sampler_create(const ember_sampler_params *params, int32_t n_vocab,
                                   ember_sampler **out);
EMBER_API void ember_sampler_free(ember_sampler **sampler);

/* Picks a token from n_vocab logits (not modified) into *token and records
 * it in the repetition history. One thread at a time per sampler. */
EMBER_API int ember_sampler_sample(ember_sampler *sampler, const float *logits, int32_t *token);
/* Records a token (e.g. the prompt's) in the repetition history. */
EMBER_API int ember_sampler_accept(ember_sampler *sampler, int32_t token);
/* Clears the history and reseeds the generator. */
EMBER_API int ember_sampler_reset(ember_sampler *sampler, uint64_t seed);

#ifdef __cplusplus
}
#endif

#endif /* EMBER_H */
