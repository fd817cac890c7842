#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

struct em_threadpool {
    int n;
    pthread_t *threads;
    struct worker_arg *args; /* workers keep pointers into it */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int generation;      /* bumped for each run, under mu */
    int stop;
    em_task_fn fn;
    void *arg;
    atomic_int running;  /* workers still in fn */
    atomic_int bar_count;
    atomic_int bar_gen;
};

typedef struct worker_arg { em_threadpool *tp; int ith; } worker_arg;


static void spin_pause(int *spins) {
    if (++*spins < 2000) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__) || (defined(__arm__) && __ARM_ARCH >= 7)
        /* the spin-loop hint; qemu-user also needs it to let other threads
         * run their atomics (without it a barrier never ends there) */
        __asm__ volatile("yield" ::: "memory");
#elif defined(__riscv)
        __asm__ volatile("nop" ::: "memory");
#endif
    } else {
        sched_yield();
    }
}

static void *worker_main(void *p) {
    em_threadpool *tp = ((worker_arg *)p)->tp;
    int ith = ((worker_arg *)p)->ith;
    int seen = 0;
    for (;;) {
        pthread_mutex_lock(&tp->mu);
        while (tp->generation == seen && !tp->stop) pthread_cond_wait(&tp->cv, &tp->mu);
        if (tp->stop) {
            pthread_mutex_unlock(&tp->mu);
            return NULL;
        }
        seen = tp->generation;
        em_task_fn fn = tp->fn;
        void *arg = tp->arg;
        pthread_mutex_unlock(&tp->mu);
        fn(arg, ith, tp->n);
        atomic_fetch_sub_explicit(&tp->running, 1, memory_order_release);
    }
}

int em_threadpool_create(int n_threads, const em_alloc *a, em_threadpool **out) {
    *out = NULL;
    if (n_threads < 1) n_threads = 1;
    em_threadpool *tp = em_calloc(a, 1, sizeof *tp);
    worker_arg *args = em_calloc(a, (size_t)n_threads, sizeof *args);
    if (tp) tp->threads = em_calloc(a, (size_t)n_threads, sizeof *tp->threads);
    if (!tp || !args || !tp->threads) {
        if (tp) em_free(a, tp->threads);
        em_free(a, tp);
        em_free(a, args);
        return EMBER_ERR_NO_MEMORY;
    }
    tp->n = n_threads;
    tp->args = args;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->cv, NULL);
    int started = 1; /* slot 0 is the caller's thread */
    for (int i = 1; i < n_threads; i++) {
        args[i].tp = tp;
        args[i].ith = i;
        if (pthread_create(&tp->threads[i], NULL, worker_main, &args[i]) != 0) break;
        started++;
    }
    if (started != n_threads) {
        tp->n = started;
        em_threadpool_free(&tp, a);
        return EMBER_ERR_NO_MEMORY;
    }
    *out = tp;
    return EMBER_OK;
}

void em_threadpool_free(em_threadpool **ptp, const em_alloc *a) {
    em_threadpool *tp = ptp ? *ptp : NULL;
    if (!tp) return;
    pthread_mutex_lock(&tp->mu);
    tp->stop = 1;
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 1; i < tp->n; i++) pthread_join(tp->threads[i], NULL);
    pthread_mutex_destroy(&tp->mu);
    pthread_cond_destroy(&tp->cv);
    em_free(a, tp->args);
    em_free(a, tp->threads);
    em_free(a, tp);
    *ptp = NULL;
}

void em_threadpool_run(em_threadpool *tp, em_task_fn fn, void *arg) {
    if (tp->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    atomic_store(&tp->running, tp->n - 1);
    pthread_mutex_lock(&tp->mu);
    tp->fn = fn;
    tp->arg = arg;
    tp->generation++;
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    fn(arg, 0, tp->n);
    int spins = 0;
    while (atomic_load_explicit(&tp->running, memory_order_acquire) > 0) spin_pause(&spins);
}

void em_threadpool_barrier(em_threadpool *tp) {
    if (tp->n == 1) return;
    int gen = atomic_load_explicit(&tp->bar_gen, memory_order_acquire);
    if (atomic_fetch_add_explicit(&tp->bar_count, 1, memory_order_acq_rel) == tp->n - 1) {
        atomic_store_explicit(&tp->bar_count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&tp->bar_gen, 1, memory_order_release);
        return;
    }
    int spins = 0;
    while (atomic_load_explicit(&tp->bar_gen, memory_order_acquire) == gen) spin_pause(&spins);
}

int em_threadpool_size(const em_threadpool *tp) { return tp->n; }
