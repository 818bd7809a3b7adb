/*
 * threadpool.c — persistent workers with a generation counter for dispatch and a
 * sense-reversing barrier. Waiting spins for a bounded number of iterations (work usually
 * arrives within microseconds during a forward pass), then sleeps on a condition variable.
 * The sleeper count and the generation/phase are sequentially consistent atomics: a waker bumps
 * the generation first and then reads the sleeper count, a sleeper registers first and then
 * re-reads the generation under the mutex, so no wake-up can be lost.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "threadpool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

enum { SPIN_ITERS = 1 << 14 };

struct eft__threadpool {
    int n;
    pthread_t *threads;

    /* Dispatch: workers run (fn, ctx) when gen moves past the value they last saw. */
    _Atomic uint64_t gen;
    eft__task_fn fn;
    void *ctx;
    _Atomic int n_done; /* workers (not counting the caller) finished with this generation */
    _Atomic bool stop;

    /* Barrier. */
    _Atomic int bar_count;
    _Atomic uint64_t bar_phase;

    /* Sleeping. */
    pthread_mutex_t mu;
    pthread_cond_t cv_work;
    pthread_cond_t cv_bar;
    pthread_cond_t cv_done;
    _Atomic int sleepers_work;
    _Atomic int sleepers_bar;
    _Atomic int sleepers_done;
};

typedef struct worker_arg {
    eft__threadpool *tp;
    int ith;
} worker_arg;

/* Waits until *v != seen: spin first, then sleep on cv counting ourselves in *sleepers. */
static uint64_t wait_change(eft__threadpool *tp, _Atomic uint64_t *v, uint64_t seen, pthread_cond_t *cv,
                            _Atomic int *sleepers) {
    for (int i = 0; i < SPIN_ITERS; i++) {
        uint64_t now = atomic_load_explicit(v, memory_order_acquire);
        if (now != seen) return now;
        /* Yield now and then so an oversubscribed pool (more workers than free cores) still
         * lets the thread we wait for run. */
        if ((i & 255) == 255) sched_yield();
        else cpu_relax();
    }
    pthread_mutex_lock(&tp->mu);
    atomic_fetch_add(sleepers, 1);
    uint64_t now;
    while ((now = atomic_load(v)) == seen) pthread_cond_wait(cv, &tp->mu);
    atomic_fetch_sub(sleepers, 1);
    pthread_mutex_unlock(&tp->mu);
    return now;
}

static void wake(eft__threadpool *tp, pthread_cond_t *cv, _Atomic int *sleepers) {
    if (atomic_load(sleepers) > 0) {
        pthread_mutex_lock(&tp->mu);
        pthread_cond_broadcast(cv);
        pthread_mutex_unlock(&tp->mu);
    }
}

static void *worker_main(void *p) {
    worker_arg *wa = p;
    eft__threadpool *tp = wa->tp;
    int ith = wa->ith;
    eft__free(wa);
    uint64_t seen = 0;
    for (;;) {
        seen = wait_change(tp, &tp->gen, seen, &tp->cv_work, &tp->sleepers_work);
        if (atomic_load(&tp->stop)) break;
        tp->fn(tp->ctx, ith, tp->n);
        if (atomic_fetch_add(&tp->n_done, 1) + 1 == tp->n - 1) wake(tp, &tp->cv_done, &tp->sleepers_done);
    }
    return NULL;
}

eft_status eft__threadpool_create(int n_threads, eft__threadpool **out, eft__error *err) {
    *out = NULL;
    if (n_threads < 1 || n_threads > 1024) {
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "thread count %d is outside 1..1024", n_threads);
    }
    eft__threadpool *tp = eft__calloc(1, sizeof *tp);
    if (!tp) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory creating a thread pool");
    tp->n = n_threads;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->cv_work, NULL);
    pthread_cond_init(&tp->cv_bar, NULL);
    pthread_cond_init(&tp->cv_done, NULL);
    if (n_threads > 1) {
        tp->threads = eft__calloc((size_t)n_threads - 1, sizeof(pthread_t));
        if (!tp->threads) {
            eft__threadpool_free(tp);
            return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory creating a thread pool");
        }
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = eft__malloc(sizeof *wa);
        if (!wa) {
            tp->n = i; /* only the threads started so far need joining */
            eft__threadpool_free(tp);
            return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory starting worker thread %d of %d", i,
                             n_threads);
        }
        int rc;
        {
            wa->tp = tp;
            wa->ith = i;
            rc = pthread_create(&tp->threads[i - 1], NULL, worker_main, wa);
            if (rc != 0) eft__free(wa);
        }
        if (rc != 0) {
            tp->n = i; /* only the threads started so far need joining */
            eft__threadpool_free(tp);
            return eft__fail(err, EFT_ERR_INTERNAL, "could not start worker thread %d of %d", i, n_threads);
        }
    }
    *out = tp;
    return EFT_OK;
}

void eft__threadpool_free(eft__threadpool *tp) {
    if (!tp) return;
    if (tp->threads) {
        atomic_store(&tp->stop, true);
        atomic_fetch_add(&tp->gen, 1);
        pthread_mutex_lock(&tp->mu);
        pthread_cond_broadcast(&tp->cv_work);
        pthread_mutex_unlock(&tp->mu);
        for (int i = 1; i < tp->n; i++) pthread_join(tp->threads[i - 1], NULL);
        eft__free(tp->threads);
    }
    pthread_mutex_destroy(&tp->mu);
    pthread_cond_destroy(&tp->cv_work);
    pthread_cond_destroy(&tp->cv_bar);
    pthread_cond_destroy(&tp->cv_done);
    eft__free(tp);
}

int eft__threadpool_size(const eft__threadpool *tp) { return tp ? tp->n : 1; }

int eft__online_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}

void eft__threadpool_run(eft__threadpool *tp, eft__task_fn fn, void *ctx) {
    if (tp->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    tp->fn = fn;
    tp->ctx = ctx;
    atomic_store(&tp->n_done, 0);
    atomic_fetch_add(&tp->gen, 1); /* publishes fn/ctx (seq_cst) */
    wake(tp, &tp->cv_work, &tp->sleepers_work);
    fn(ctx, 0, tp->n);
    /* Wait for the others: spin, then sleep. */
    for (int i = 0; i < SPIN_ITERS; i++) {
        if (atomic_load_explicit(&tp->n_done, memory_order_acquire) == tp->n - 1) return;
        if ((i & 255) == 255) sched_yield();
        else cpu_relax();
    }
    pthread_mutex_lock(&tp->mu);
    atomic_fetch_add(&tp->sleepers_done, 1);
    while (atomic_load(&tp->n_done) != tp->n - 1) pthread_cond_wait(&tp->cv_done, &tp->mu);
    atomic_fetch_sub(&tp->sleepers_done, 1);
    pthread_mutex_unlock(&tp->mu);
}

void eft__threadpool_barrier(eft__threadpool *tp) {
    if (tp->n == 1) return;
    uint64_t phase = atomic_load(&tp->bar_phase);
    if (atomic_fetch_add(&tp->bar_count, 1) + 1 == tp->n) {
        atomic_store(&tp->bar_count, 0);
        atomic_fetch_add(&tp->bar_phase, 1);
        wake(tp, &tp->cv_bar, &tp->sleepers_bar);
        return;
    }
    wait_change(tp, &tp->bar_phase, phase, &tp->cv_bar, &tp->sleepers_bar);
}
