/* Runs one CPU kernel CALLS times at a dispatch level, for counting its
 * instructions under qemu-user, where time is not hardware time:
 *
 *   kernel_calls LEVEL KERNEL K CALLS
 *
 * LEVEL is a dispatch mask (0 = the C reference), KERNEL one of q8_0,
 * q4_0, q4_k, q6_k (the integer dot with quantized activations), f16,
 * f32 (dot with F32 activations) or quant (the activations' quantizer).
 * scripts/qemu-kernel-counts.sh runs it with CALLS = 0 and CALLS = N under
 * `qemu -singlestep -d nochain,exec` and reports the difference / N.
 * Prints a checksum so the calls cannot be dropped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backends/cpu/dsp.h"

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s LEVEL KERNEL K CALLS\n", argv[0]);
        return 2;
    }
    uint32_t level = (uint32_t)strtoul(argv[1], NULL, 0);
    const char *kernel = argv[2];
    int64_t K = atoll(argv[3]);
    long calls = atol(argv[4]);
    static const struct { const char *name; uint32_t type; } types[] = {
        { "q8_0", EMBER_TYPE_Q8_0 }, { "q4_0", EMBER_TYPE_Q4_0 }, { "q4_k", EMBER_TYPE_Q4_K },
        { "q6_k", EMBER_TYPE_Q6_K }, { "f16", EMBER_TYPE_F16 },   { "f32", EMBER_TYPE_F32 },
        { "quant", EMBER_TYPE_F32 },
    };
    int ti = -1;
    for (int i = 0; i < (int)(sizeof types / sizeof types[0]); i++)
        if (!strcmp(kernel, types[i].name)) ti = i;
    if (ti < 0 || K <= 0 || K % 256 || calls < 0) {
        fprintf(stderr, "unknown kernel or K not a multiple of 256\n");
        return 2;
    }
    if ((em_cpu_detect() & level) != level) {
        fprintf(stderr, "level %u is not on this CPU\n", level);
        return 3;
    }
    em_cpu_dsp d;
    em_cpu_dsp_init(&d, level);
    uint32_t type = types[ti].type;
    float *x = malloc((size_t)K * 4);
    uint8_t *w = malloc((size_t)K * 4);
    int8_t *hi = malloc((size_t)K), *lo = malloc((size_t)K);
    float *dq = malloc((size_t)K / 32 * 4);
    int32_t *sq = malloc((size_t)K / 32 * 4);
    if (!x || !w || !hi || !lo || !dq || !sq) return 1;
    srand(1);
    for (int64_t i = 0; i < K; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
    if (ember_quantize_row(type, x, K, w, ember_type_row_size(type, K))) return 1;
    d.quant_q8x(K, x, hi, lo, dq, sq);
    em_q8x_row row = { hi, lo, dq, sq };
    double sum = 0;
    for (long c = 0; c < calls; c++) {
        if (!strcmp(kernel, "quant")) {
            d.quant_q8x(K, x, hi, lo, dq, sq);
            sum += sq[c % (K / 32)];
        } else if (type == EMBER_TYPE_F16 || type == EMBER_TYPE_F32) {
            sum += d.dot[type](K, w, x);
        } else {
            sum += d.dot_q8x[type](K, w, row);
        }
    }
    printf("%s level %u K %lld calls %ld: checksum %g\n", kernel, level, (long long)K, calls, sum);
    free(x); free(w); free(hi); free(lo); free(dq); free(sq);
    return 0;
}
