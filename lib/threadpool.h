/* A fixed pool of worker threads that run one function on every thread
 * (the caller included) and meet at barriers inside it. Workers sleep on a
 * condition variable between runs and spin briefly at barriers, which is
 * what per-op synchronisation of a decode step needs. */
#ifndef EMBER_THREADPOOL_H
#define EMBER_THREADPOOL_H

#include "util.h"

typedef struct em_threadpool em_threadpool;
typedef void (*em_task_fn)(void *arg, int ith, int nth);

int em_threadpool_create(int n_threads, const em_alloc *a, em_threadpool **out);
void em_threadpool_free(em_threadpool **tp, const em_alloc *a);
/* Runs fn(arg, ith, nth) on all nth threads; returns when all are done. */
void em_threadpool_run(em_threadpool *tp, em_task_fn fn, void *arg);
/* Called by every thread inside fn: waits until all have arrived. */
void em_threadpool_barrier(em_threadpool *tp);
int em_threadpool_size(const em_threadpool *tp);

#endif
