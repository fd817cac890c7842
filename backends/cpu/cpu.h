/* Internal to the CPU backend: what op kernels see. */
#ifndef EMBER_CPU_H
#define EMBER_CPU_H

#include "../../lib/backend.h"
#include "../../lib/kv.h"
#include "dsp.h"
#include "threadpool.h"

typedef struct em_cpu {
    em_cpu_dsp dsp;
    em_threadpool *pool;
    float **scratch;       /* per thread */
    size_t scratch_floats; /* per thread */
    float *shared;         /* one area all threads of an op work in */
    size_t shared_floats;
    em_graph *graph;       /* the graph being run */
} em_cpu;

/* Rows of a matmul tile converted to f32 at once when the batch has
 * several tokens, so each weight row is read once per batch. */
#define EM_MATMUL_TILE 64

/* Scratch floats per thread that node t needs. */
size_t em_cpu_op_scratch(const em_tensor *t, const em_kv *kv);
/* Floats of the shared area that node t needs. */
size_t em_cpu_op_shared(const em_tensor *t);
bool em_cpu_op_supported(const em_tensor *t);

/* MoE kernels (ops_moe.c). */
void em_cpu_moe_route(em_cpu *c, em_tensor *t, int ith, int nth);
void em_cpu_moe_ffn(em_cpu *c, em_tensor *t, int ith, int nth);
size_t em_cpu_moe_ffn_shared(const em_tensor *t);
size_t em_cpu_moe_ffn_scratch(const em_tensor *t);
/* Runs thread ith's share of node t. */
void em_cpu_op_run(em_cpu *c, em_tensor *t, int ith, int nth);

#endif
