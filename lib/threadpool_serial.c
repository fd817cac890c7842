/* The thread pool of builds without threads (-Dthreads=disabled, the
 * minimal firmware build): one "thread", the caller's, so a run is a call
 * and a barrier is nothing. Contexts then compute on one core whatever
 * n_threads asks for. */
#include "threadpool.h"

struct em_threadpool {
    int n;
};

int em_threadpool_create(int n_threads, const em_alloc *a, em_threadpool **out) {
    (void)n_threads;
    *out = em_calloc(a, 1, sizeof **out);
    if (!*out) return EMBER_ERR_NO_MEMORY;
    (*out)->n = 1;
    return EMBER_OK;
}

void em_threadpool_free(em_threadpool **tp, const em_alloc *a) {
    if (!tp || !*tp) return;
    em_free(a, *tp);
    *tp = NULL;
}

void em_threadpool_run(em_threadpool *tp, em_task_fn fn, void *arg) {
    (void)tp;
    fn(arg, 0, 1);
}

void em_threadpool_barrier(em_threadpool *tp) { (void)tp; }

int em_threadpool_size(const em_threadpool *tp) { return tp->n; }
