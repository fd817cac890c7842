#include "dsp.h"

#if !defined(EMBER_NO_THREADS)
#include <pthread.h>
#endif
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if (defined(EMBER_HAVE_ARM_KERNELS) || defined(EMBER_HAVE_RISCV_KERNELS)) && defined(__linux__)
#include <sys/auxv.h>
#endif

void em_cpu_dsp_init(em_cpu_dsp *c, uint32_t flags) {
    memset(c, 0, sizeof *c);
    em_cpu_dsp_init_ref(c);
    em_cpu_dsp_init_ref_q(c);
#if defined(EMBER_HAVE_X86_KERNELS)
    em_cpu_dsp_init_x86(c, flags);
#elif defined(EMBER_HAVE_ARM_KERNELS)
    em_cpu_dsp_init_arm(c, flags);
#elif defined(EMBER_HAVE_RISCV_KERNELS)
    em_cpu_dsp_init_riscv(c, flags);
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
        if (zmm && avx512f && avx512bw && avx512vl) {
            f |= EMBER_CPU_AVX512;
            if ((c >> 11) & 1) f |= EMBER_CPU_AVX512_VNNI; /* leaf 7 ECX bit 11 */
            if (__get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 5) & 1))
                f |= EMBER_CPU_AVX512_BF16; /* leaf 7 subleaf 1 EAX bit 5 */
        }
    }
#elif defined(EMBER_HAVE_ARM_KERNELS)
#if defined(__linux__)
    unsigned long hw = getauxval(AT_HWCAP);
    if (hw & (1ul << 1)) f |= EMBER_CPU_NEON;     /* HWCAP_ASIMD */
    if (hw & (1ul << 20)) f |= EMBER_CPU_DOTPROD; /* HWCAP_ASIMDDP */
#else
    f |= EMBER_CPU_NEON; /* part of every AArch64 core; dotprod unknown */
#endif
#elif defined(EMBER_HAVE_RISCV_KERNELS)
#if defined(__linux__)
    if (getauxval(AT_HWCAP) & (1ul << ('V' - 'A'))) f |= EMBER_CPU_RVV; /* the 'V' bit */
#endif
#endif
    return f;
}

/* The mask starts from EMBER_CPU_MASK, read once; contexts may be created
 * on many threads, so reads are atomic. */
static _Atomic uint32_t cpu_mask = ~0u;
#if defined(EMBER_NO_THREADS)
/* one thread: a flag is a once */
typedef int pthread_once_t;
#define PTHREAD_ONCE_INIT 0
static void pthread_once(pthread_once_t *once, void (*fn)(void)) {
    if (!*once) {
        *once = 1;
        fn();
    }
}
#endif
static pthread_once_t mask_once = PTHREAD_ONCE_INIT;

static void mask_from_env(void) {
    const char *e = getenv("EMBER_CPU_MASK");
    if (e && *e) atomic_store(&cpu_mask, (uint32_t)strtoul(e, NULL, 0));
}

uint32_t em_cpu_mask(void) {
    pthread_once(&mask_once, mask_from_env);
    return atomic_load(&cpu_mask);
}

EMBER_API uint32_t ember_cpu_features(void) { return em_cpu_detect(); }

EMBER_API void ember_cpu_set_mask(uint32_t mask) {
    pthread_once(&mask_once, mask_from_env);
    atomic_store(&cpu_mask, mask);
}
