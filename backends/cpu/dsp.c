#include "dsp.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

void em_cpu_dsp_init(em_cpu_dsp *c, uint32_t flags) {
    memset(c, 0, sizeof *c);
    em_cpu_dsp_init_ref(c);
#if defined(EMBER_HAVE_X86_KERNELS)
    em_cpu_dsp_init_x86(c, flags);
#else
    (void)flags;
#endif
}

uint32_t em_cpu_detect(void) {
    uint32_t f = 0;
#if defined(EMBER_HAVE_X86_KERNELS)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return 0;
    uint32_t xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    (void)xhi;
    int ymm = (xlo & 6) == 6, zmm = (xlo & 0xe6) == 0xe6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1,
        avx512vl = (b >> 31) & 1;
    if (ymm && avx2 && fma && f16c) {
        f |= EMBER_CPU_AVX2;
        if (zmm && avx512f && avx512bw && avx512vl) f |= EMBER_CPU_AVX512;
    }
#endif
    return f;
}

static uint32_t cpu_mask = ~0u;
static int mask_from_env_done;

uint32_t em_cpu_mask(void) {
    if (!mask_from_env_done) {
        const char *e = getenv("EMBER_CPU_MASK");
        if (e && *e) cpu_mask = (uint32_t)strtoul(e, NULL, 0);
        mask_from_env_done = 1;
    }
    return cpu_mask;
}

EMBER_API uint32_t ember_cpu_features(void) { return em_cpu_detect(); }

EMBER_API void ember_cpu_set_mask(uint32_t mask) {
    mask_from_env_done = 1;
    cpu_mask = mask;
}
