/* bench-dnnl: oneDNN's matmul on the products of a llama-1b prompt, to
 * decide by measurement whether ember's prompt path should hand its GEMMs
 * to oneDNN (docs/performance.md, "oneDNN").
 *
 *   bench-dnnl [-p 128,512] [-r 5]
 *
 * Threads: oneDNN (Debian's build) runs on OpenMP, so OMP_NUM_THREADS sets
 * them, process-wide. Per shape (tokens T, rows N, K) it times
 *   f32:  y[T,N] = x[T,K] w[K,N] in F32 (what ember's prompt path computes
 *         from dequantized tiles);
 *   u8s8: x as unsigned bytes, w as signed bytes, one F32 scale per output
 *         column (int8 with per-row weight scales: oneDNN 2.6 has no
 *         per-32-block scales, so a GGUF Q8_0/Q4_0 file could only go
 *         through it requantized, which changes the model);
 * and prints G multiply-adds per second (median of -r runs) next to the
 * machine's multiply-add peak measured in the same run. Weights are in the
 * layout oneDNN picks (reordered once, outside the timing), so this is its
 * best case. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <oneapi/dnnl/dnnl.h>

#include "peak.h"

#define CHECK(call)                                                                      \
    do {                                                                                 \
        dnnl_status_t s_ = (call);                                                       \
        if (s_ != dnnl_success) {                                                        \
            fprintf(stderr, "bench-dnnl: %s failed (%d)\n", #call, (int)s_);             \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct shape { const char *what; long n, k; } shape;

/* llama-1b's products per layer: Q and O (2048 x 2048), K and V (256 x
 * 2048), gate and up (5632 x 2048), down (2048 x 5632) */
static const shape shapes[] = {
    { "q/o  2048x2048", 2048, 2048 }, { "k/v   256x2048", 256, 2048 },
    { "gate 5632x2048", 5632, 2048 }, { "down 2048x5632", 2048, 5632 },
};

/* n elements: bytes below 64 (int8), or small floats (not random bit
 * patterns, which could be NaN or subnormal) */
static void fill(void *p, size_t n, int int8) {
    for (size_t i = 0; i < n; i++)
        if (int8) ((unsigned char *)p)[i] = (unsigned char)(rand() & 0x3f);
        else ((float *)p)[i] = (float)(rand() % 100) / 100.0f;
}

/* One matmul, timed; returns G multiply-adds per second (median) */
static double run(dnnl_engine_t eng, dnnl_stream_t st, long T, long N, long K, int int8, int reps) {
    dnnl_dims_t sd = { T, K }, wd = { K, N }, dd = { T, N };
    dnnl_memory_desc_t src_md, w_md, w_any, dst_md;
    CHECK(dnnl_memory_desc_init_by_tag(&src_md, 2, sd, int8 ? dnnl_u8 : dnnl_f32, dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&w_md, 2, wd, int8 ? dnnl_s8 : dnnl_f32, dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&w_any, 2, wd, int8 ? dnnl_s8 : dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&dst_md, 2, dd, dnnl_f32, dnnl_ab));
    dnnl_matmul_desc_t md;
    CHECK(dnnl_matmul_desc_init(&md, &src_md, &w_any, NULL, &dst_md));
    dnnl_primitive_attr_t attr;
    CHECK(dnnl_primitive_attr_create(&attr));
    float *scales = malloc((size_t)N * sizeof *scales);
    for (long i = 0; i < N; i++) scales[i] = 0.01f;
    if (int8) CHECK(dnnl_primitive_attr_set_output_scales(attr, N, 1 << 1, scales));
    dnnl_primitive_desc_t pd;
    CHECK(dnnl_primitive_desc_create(&pd, &md, attr, eng, NULL));
    const dnnl_memory_desc_t *w_best = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    size_t es = int8 ? 1 : 4;
    void *src = malloc((size_t)(T * K) * es), *w = malloc((size_t)(K * N) * es);
    float *dst = malloc((size_t)(T * N) * sizeof *dst);
    fill(src, (size_t)(T * K), int8);
    fill(w, (size_t)(K * N), int8);
    dnnl_memory_t src_m, w_plain, w_m, dst_m;
    CHECK(dnnl_memory_create(&src_m, &src_md, eng, src));
    CHECK(dnnl_memory_create(&w_plain, &w_md, eng, w));
    CHECK(dnnl_memory_create(&w_m, w_best, eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&dst_m, &dst_md, eng, dst));
    /* the weights into oneDNN's layout, once */
    dnnl_primitive_desc_t rpd;
    CHECK(dnnl_reorder_primitive_desc_create(&rpd, &w_md, eng, w_best, eng, NULL));
    dnnl_primitive_t reorder;
    CHECK(dnnl_primitive_create(&reorder, rpd));
    dnnl_exec_arg_t rargs[2] = { { DNNL_ARG_FROM, w_plain }, { DNNL_ARG_TO, w_m } };
    CHECK(dnnl_primitive_execute(reorder, st, 2, rargs));
    CHECK(dnnl_stream_wait(st));
    dnnl_primitive_t mm;
    CHECK(dnnl_primitive_create(&mm, pd));
    dnnl_exec_arg_t args[3] = { { DNNL_ARG_SRC, src_m }, { DNNL_ARG_WEIGHTS, w_m },
                                { DNNL_ARG_DST, dst_m } };
    double times[64];
    if (reps > 64) reps = 64;
    for (int r = -1; r < reps; r++) { /* one warm-up run */
        double t0 = now();
        CHECK(dnnl_primitive_execute(mm, st, 3, args));
        CHECK(dnnl_stream_wait(st));
        if (r >= 0) times[r] = now() - t0;
    }
    qsort(times, (size_t)reps, sizeof times[0], cmp_double);
    double g = (double)T * (double)N * (double)K / times[reps / 2] / 1e9;
    dnnl_primitive_destroy(mm);
    dnnl_primitive_destroy(reorder);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    dnnl_memory_destroy(src_m);
    dnnl_memory_destroy(w_plain);
    dnnl_memory_destroy(w_m);
    dnnl_memory_destroy(dst_m);
    free(scales);
    free(src);
    free(w);
    free(dst);
    return g;
}

int main(int argc, char **argv) {
    long tokens[8] = { 128, 512 };
    int nt = 2, reps = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) {
            nt = 0;
            for (char *s = argv[++i]; *s && nt < 8;) {
                tokens[nt++] = strtol(s, &s, 10);
                if (*s == ',') s++;
                else break;
            }
        } else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: bench-dnnl [-p 128,512] [-r 5]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    const dnnl_version_t *v = dnnl_version();
    const char *env = getenv("OMP_NUM_THREADS");
    int threads = env ? atoi(env) : 0;
    const char *what8, *what32;
    double p8 = peak_gmacs(threads > 0 ? threads : 1, PEAK_INT8, &what8);
    double p32 = peak_gmacs(threads > 0 ? threads : 1, PEAK_F32, &what32);
    printf("oneDNN %d.%d.%d (%s), OMP_NUM_THREADS=%s\n", v->major, v->minor, v->patch,
           v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "other runtime", env ? env : "(unset)");
    printf("multiply-add peak, same run, %d thread(s): int8 %.1f G/s (%s), F32 %.1f G/s (%s)\n",
           threads > 0 ? threads : 1, p8, what8, p32, what32);
    dnnl_engine_t eng;
    dnnl_stream_t st;
    CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&st, eng, dnnl_stream_default_flags));
    for (int ti = 0; ti < nt; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const shape *s = &shapes[si];
            double f = run(eng, st, tokens[ti], s->n, s->k, 0, reps);
            double q = run(eng, st, tokens[ti], s->n, s->k, 1, reps);
            printf("T %4ld  %s  f32 %6.1f G/s (%3.0f%% of F32 peak)  u8s8 %6.1f G/s (%3.0f%% of int8 peak)\n",
                   tokens[ti], s->what, f, p32 > 0 ? 100 * f / p32 : 0, q, p8 > 0 ? 100 * q / p8 : 0);
        }
    dnnl_stream_destroy(st);
    dnnl_engine_destroy(eng);
    return 0;
}
