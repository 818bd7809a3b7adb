/* test_threadpool.c — every worker runs each task exactly once, barriers order phases, the pool
 * survives long idle periods (workers asleep) and many back-to-back runs (workers spinning). */
#include <stdatomic.h>
#include <unistd.h>

#include "core/threadpool.h"
#include "test.h"

typedef struct {
    eft__threadpool *tp;
    _Atomic int calls;
    _Atomic int mask;
    int64_t n;
    int *data;
    long long *partial;
    int phase_errors;
} ctx_t;

static void task_count(void *p, int ith, int nth) {
    ctx_t *c = p;
    atomic_fetch_add(&c->calls, 1);
    atomic_fetch_or(&c->mask, 1 << ith);
    (void)nth;
}

/* Phase 1 writes data, barrier, phase 2 reads what other workers wrote. */
static void task_phases(void *p, int ith, int nth) {
    ctx_t *c = p;
    int64_t b, e;
    eft__split_range(c->n, ith, nth, &b, &e);
    for (int64_t i = b; i < e; i++) c->data[i] = (int)i;
    eft__threadpool_barrier(c->tp);
    long long s = 0;
    for (int64_t i = 0; i < c->n; i++) s += c->data[(i + b) % c->n];
    c->partial[ith] = s;
    eft__threadpool_barrier(c->tp);
    if (ith == 0) {
        for (int t = 0; t < nth; t++)
            if (c->partial[t] != c->n * (c->n - 1) / 2) c->phase_errors++;
    }
}

static void test_runs(int nthreads) {
    eft__threadpool *tp;
    eft__error e;
    CHECK_EQ_INT(eft__threadpool_create(nthreads, &tp, &e), EFT_OK);
    CHECK_EQ_INT(eft__threadpool_size(tp), nthreads);
    ctx_t c = {.tp = tp};
    for (int r = 0; r < 2000; r++) eft__threadpool_run(tp, task_count, &c);
    CHECK_EQ_INT(atomic_load(&c.calls), 2000 * nthreads);
    CHECK_EQ_INT(atomic_load(&c.mask), (1 << nthreads) - 1);
    usleep(50 * 1000); /* let workers fall asleep, then wake them */
    c.n = 10007;
    int data[10007];
    long long partial[16];
    c.data = data;
    c.partial = partial;
    for (int r = 0; r < 200; r++) eft__threadpool_run(tp, task_phases, &c);
    usleep(50 * 1000);
    eft__threadpool_run(tp, task_phases, &c);
    CHECK_EQ_INT(c.phase_errors, 0);
    eft__threadpool_free(tp);
}

static void test_pool_sizes(void) {
    test_runs(1);
    test_runs(2);
    test_runs(4);
    test_runs(7); /* more threads than cores must still be correct */
}

static void test_split(void) {
    int64_t total = 0, prev = 0;
    for (int t = 0; t < 7; t++) {
        int64_t b, e;
        eft__split_range(100, t, 7, &b, &e);
        CHECK_EQ_INT(b, prev);
        total += e - b;
        prev = e;
    }
    CHECK_EQ_INT(total, 100);
}

static void test_bad_args(void) {
    eft__threadpool *tp;
    eft__error e;
    CHECK_EQ_INT(eft__threadpool_create(0, &tp, &e), EFT_ERR_INVALID_ARGUMENT);
    CHECK(tp == NULL);
    eft__threadpool_free(NULL);
}

int main(void) {
    RUN(test_pool_sizes);
    RUN(test_split);
    RUN(test_bad_args);
    return test_summary();
}
