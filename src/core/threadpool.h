/*
 * threadpool.h — a persistent pool of worker threads for the kernels. The caller's thread is
 * worker 0 and takes part in every run; workers spin briefly waiting for work, then sleep on a
 * condition variable, so an idle pool costs no CPU. Inside a run, eft__threadpool_barrier
 * synchronises all workers (spin, then sleep) without any lock on the fast path.
 */
#ifndef EFT_THREADPOOL_H
#define EFT_THREADPOOL_H

#include "core.h"

typedef struct eft__threadpool eft__threadpool;

/* The work of one run: called once on every worker, ith in [0, nth). */
typedef void (*eft__task_fn)(void *ctx, int ith, int nth);

/* The CPUs online now (sysconf), 1..1024: what a thread count of 0 (every CPU) resolves to. */
int eft__online_cpus(void);

/* n_threads counts the caller: 1 means no extra threads. */
eft_status eft__threadpool_create(int n_threads, eft__threadpool **out, eft__error *err);
void eft__threadpool_free(eft__threadpool *tp);
int eft__threadpool_size(const eft__threadpool *tp);

/* Runs fn on all workers and returns when every one has finished. Not reentrant: one run at a
 * time per pool (the compiled program owns its pool). */
void eft__threadpool_run(eft__threadpool *tp, eft__task_fn fn, void *ctx);

/* Called by every worker of the current run; returns when all have arrived. */
void eft__threadpool_barrier(eft__threadpool *tp);

/* The [begin, end) share of n items for worker ith of nth, in contiguous chunks. */
static inline void eft__split_range(int64_t n, int ith, int nth, int64_t *begin, int64_t *end) {
    int64_t per = n / nth, rem = n % nth;
    *begin = ith * per + (ith < rem ? ith : rem);
    *end = *begin + per + (ith < rem ? 1 : 0);
}

#endif /* EFT_THREADPOOL_H */
