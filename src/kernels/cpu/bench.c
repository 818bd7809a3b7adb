/*
 * bench.c — `eft bench kernels`: measures the machine's own limits (peak FMA rate, STREAM copy
 * and triad bandwidth) and, in the same run, eft's kernels on real model shapes, so every figure
 * is quoted next to its ceiling and its peer. The peer, OpenBLAS sgemm, is loaded with dlopen at
 * run time: the library never links against it, and the bench says so when it is missing.
 * Every measurement repeats for min_seconds and reports the best repetition, which is the least
 * disturbed by other processes; the load average is printed so readers can judge the noise.
 */
#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels.h"

typedef struct bench {
    eft_bench_params p;
    eft_bench_line_fn line;
    void *ud;
    const eft__kernels *kt;
    eft__threadpool *tp;
    int nth;
    double peak_gflops, triad_gbs;
} bench;

static void emit(bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(bench *b, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    b->line(buf, b->ud);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* Runs fn(arg) once to warm up, then repeatedly for min_seconds; returns the best time and, in
 * *median (may be NULL), the median repetition. The best is the machine's capability (the least
 * disturbed repetition); the median is what a caller sees on the machine as it is. On a shared
 * machine they differ by up to 1.5x, which is why a harness that averages over a second reads
 * far below the best (115 against 170 GFLOPS for MiniLM ffn up at two threads): both columns are
 * printed so neither is mistaken for the other. */
static double time_fn(bench *b, void (*fn)(void *), void *arg, double *median) {
    enum { KEEP = 2048 };
    static double times[KEEP];
    fn(arg);
    double best = 1e30, start = now_s(), t;
    int reps = 0;
    do {
        double t0 = now_s();
        fn(arg);
        t = now_s();
        if (t - t0 < best) best = t - t0;
        if (reps < KEEP) times[reps] = t - t0;
        reps++;
    } while (t - start < b->p.min_seconds || reps < 3);
    if (median) {
        int n = reps < KEEP ? reps : KEEP;
        qsort(times, (size_t)n, sizeof times[0], cmp_double);
        *median = times[n / 2];
    }
    return best;
}

static double best_time(bench *b, void (*fn)(void *), void *arg) { return time_fn(b, fn, arg, NULL); }

static void fill_rand(float *x, int64_t n, uint32_t seed) {
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Machine limits
 * ------------------------------------------------------------------------------------------- */

typedef struct probe_ctx {
    const eft__kernels *kt;
    int64_t iters;
    double flops[64];
} probe_ctx;

static void probe_task(void *p, int ith, int nth) {
    probe_ctx *x = p;
    double f = x->kt->fma_probe(x->iters);
    if (ith < 64) x->flops[ith] = f;
}

static void probe_run(void *p) {
    probe_ctx *x = ((void **)p)[0];
    eft__threadpool_run(((void **)p)[1], probe_task, x);
}

static void bench_peak(bench *b) {
    /* Short repetitions (about 1 ms at full speed), best of many: on a shared machine a short
     * run is the likeliest to get whole time slices, and the GEMMs are measured the same way. */
    probe_ctx x = {b->kt, 200000, {0}};
    void *args[2] = {&x, b->tp};
    double t = best_time(b, probe_run, args);
    double flops = 0;
    for (int i = 0; i < b->nth && i < 64; i++) flops += x.flops[i];
    b->peak_gflops = flops / t * 1e-9;
    emit(b, "peak fma (%s, %d threads)            %8.1f GFLOPS  (%.1f per thread)", eft__isa_name(b->kt->isa),
         b->nth, b->peak_gflops, b->peak_gflops / b->nth);
}

typedef struct stream_ctx {
    eft__threadpool *tp;
    float *a, *bb, *c;
    int64_t n;
    int op; /* 0 copy, 1 triad */
} stream_ctx;

static void stream_task(void *p, int ith, int nth) {
    stream_ctx *x = p;
    int64_t s, e;
    eft__split_range(x->n, ith, nth, &s, &e);
    float *a = x->a, *bb = x->bb, *c = x->c;
    if (x->op == 0) memcpy(c + s, a + s, sizeof(float) * (size_t)(e - s));
    else for (int64_t i = s; i < e; i++) a[i] = bb[i] + 3.0f * c[i];
}

static void stream_run(void *p) {
    stream_ctx *x = p;
    eft__threadpool_run(x->tp, stream_task, x);
}

static eft_status bench_stream(bench *b) {
    /* Three arrays well past any last-level cache. */
    int64_t n = b->p.quick ? (int64_t)1 << 21 : (int64_t)1 << 24;
    stream_ctx x = {b->tp, eft__malloc_aligned(sizeof(float) * n), eft__malloc_aligned(sizeof(float) * n),
                    eft__malloc_aligned(sizeof(float) * n), n, 0};
    if (!x.a || !x.bb || !x.c) {
        eft__free_aligned(x.a), eft__free_aligned(x.bb), eft__free_aligned(x.c);
        return EFT_ERR_OUT_OF_MEMORY;
    }
    for (int64_t i = 0; i < n; i++) x.a[i] = 1.0f, x.bb[i] = 2.0f, x.c[i] = 0.5f;
    double tc = best_time(b, stream_run, &x);
    x.op = 1;
    double tt = best_time(b, stream_run, &x);
    double mb = sizeof(float) * (double)n / 1e9;
    b->triad_gbs = 3 * mb / tt;
    emit(b, "stream copy  (%3lld MiB arrays)          %8.1f GB/s", (long long)(n * 4 >> 20), 2 * mb / tc);
    emit(b, "stream triad (%3lld MiB arrays)          %8.1f GB/s", (long long)(n * 4 >> 20), b->triad_gbs);
    eft__free_aligned(x.a), eft__free_aligned(x.bb), eft__free_aligned(x.c);
    return EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * OpenBLAS, found at run time
 * ------------------------------------------------------------------------------------------- */

typedef void (*cblas_sgemm_fn)(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                               const float *bm, int ldb, float beta, float *c, int ldc);
typedef struct blas {
    void *dl;
    cblas_sgemm_fn sgemm;
    void (*set_threads)(int);
    char *(*get_config)(void);
} blas;

static void blas_open(blas *bl, int nth) {
    memset(bl, 0, sizeof *bl);
    static const char *names[] = {"libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0"};
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !bl->dl; i++) bl->dl = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!bl->dl) return;
    *(void **)&bl->sgemm = dlsym(bl->dl, "cblas_sgemm");
    *(void **)&bl->set_threads = dlsym(bl->dl, "openblas_set_num_threads");
    *(void **)&bl->get_config = dlsym(bl->dl, "openblas_get_config");
    if (!bl->sgemm) {
        dlclose(bl->dl);
        bl->dl = NULL;
        return;
    }
    if (bl->set_threads) bl->set_threads(nth);
}

/* ---------------------------------------------------------------------------------------------
 * GEMM
 * ------------------------------------------------------------------------------------------- */

typedef struct shape {
    const char *name;
    int64_t m, n, k;
} shape;

typedef struct gemm_run {
    bench *b;
    blas *bl;
    const float *a, *w;
    float *c;
    const eft__sgemm_packed *pk;
    const eft__block_q8_0 *qw;
    void *qwork;
    int64_t m, n, k;
} gemm_run;

static void run_ours(void *p) {
    gemm_run *r = p;
    eft__sgemm(r->b->kt, r->b->tp, r->c, r->n, r->a, r->k, r->m, r->pk, NULL);
}

static void run_blas(void *p) {
    gemm_run *r = p;
    /* Row-major C = A . W^T: 101 = CblasRowMajor, 111 = NoTrans, 112 = Trans. */
    r->bl->sgemm(101, 111, 112, (int)r->m, (int)r->n, (int)r->k, 1.0f, r->a, (int)r->k, r->w, (int)r->k, 0.0f, r->c,
                 (int)r->n);
}

static void run_q8(void *p) {
    gemm_run *r = p;
    eft__q8_0_gemm(r->b->kt, r->b->tp, r->c, r->n, r->a, r->k, r->m, r->qw, r->n, r->k, NULL, r->qwork);
}

/* The same Q8_0 weights with f32 activations (eft__qgemm_f32): qwork is sized for both. */
static void run_q8f(void *p) {
    gemm_run *r = p;
    eft__qgemm_f32(r->b->kt, r->b->tp, r->c, r->n, r->a, r->k, r->m, EFT_DTYPE_Q8_0, r->qw, r->n, r->k, NULL, r->qwork);
}

static eft_status bench_gemm(bench *b, blas *bl) {
    static const shape full[] = {
        {"MiniLM qkv      T=128", 128, 1152, 384},    {"MiniLM ffn up   T=128", 128, 1536, 384},
        {"MiniLM ffn down T=128", 128, 384, 1536},    {"MiniLM ffn up   T=512", 512, 1536, 384},
        {"SmolLM2 q       T=512", 512, 576, 576},     {"SmolLM2 gate    T=512", 512, 1536, 576},
        {"SmolLM2 down    T=512", 512, 576, 1536},    {"SmolLM2 lm_head T=128", 128, 49152, 576},
        {"1B up           T=512", 512, 8192, 2048},   {"1B down         T=512", 512, 2048, 8192},
        /* The encoder in bulk (eft bench embed --shape 32x128): batch rows one after another. */
        {"MiniLM qkv      32x128", 4096, 1152, 384},  {"MiniLM attn out 32x128", 4096, 384, 384},
        {"MiniLM ffn up   32x128", 4096, 1536, 384},  {"MiniLM ffn down 32x128", 4096, 384, 1536},
    };
    static const shape quick[] = {{"MiniLM ffn up   T=128", 128, 1536, 384}, {"SmolLM2 down    T=64", 64, 576, 1536}};
    const shape *sh = b->p.quick ? quick : full;
    size_t ns = b->p.quick ? sizeof quick / sizeof quick[0] : sizeof full / sizeof full[0];
    emit(b, "%s", "");
    emit(b, "GEMM  C[M,N] = A[M,K] W[N,K]^T, GFLOPS      eft f32  %%peak  (median)  OpenBLAS  (median)  eft/OBLAS  "
            "eft q8_0  q8_0 f32a");
    double ours[16], peer[16], q8[16], q8f[16], ours_med[16], peer_med[16];
    _Static_assert(sizeof full / sizeof full[0] <= 16, "too many GEMM shapes for the result arrays");
    for (int pass = 0; pass < 2; pass++) {
        /* All of ours first, then all of OpenBLAS: its idle threads spin for a while after each
         * call and would steal cycles from our pool if the two alternated. */
        if (pass == 1 && (!bl->dl || b->p.no_peer)) break;
        for (size_t i = 0; i < ns; i++) {
            const shape *s = &sh[i];
            float *a = eft__malloc_aligned(sizeof(float) * s->m * s->k), *w = eft__malloc_aligned(sizeof(float) * s->n * s->k);
            float *c = eft__malloc_aligned(sizeof(float) * s->m * s->n);
            eft__sgemm_packed pk = {0};
            eft_status st = EFT_ERR_OUT_OF_MEMORY;
            if (a && w && c) {
                fill_rand(a, s->m * s->k, 1), fill_rand(w, s->n * s->k, 2);
                st = eft__sgemm_pack(&pk, w, s->n, s->k, s->k, NULL);
            }
            if (st != EFT_OK) {
                eft__free_aligned(a), eft__free_aligned(w), eft__free_aligned(c);
                return st;
            }
            gemm_run r = {b, bl, a, w, c, &pk, NULL, NULL, s->m, s->n, s->k};
            double flops = 2.0 * (double)s->m * (double)s->n * (double)s->k;
            if (pass == 0) {
                double med;
                ours[i] = flops / time_fn(b, run_ours, &r, &med) * 1e-9;
                ours_med[i] = flops / med * 1e-9;
                eft__block_q8_0 *qw = eft__malloc_aligned(sizeof(eft__block_q8_0) * s->n * (s->k / 32));
                size_t w8 = eft__q8_0_gemm_work_size(s->m, s->k);
                size_t wf = eft__qgemm_f32_work_size(s->m, s->k, b->tp ? eft__threadpool_size(b->tp) : 1);
                void *qwork = eft__malloc_aligned(w8 > wf ? w8 : wf);
                q8[i] = q8f[i] = 0;
                if (qw && qwork) {
                    eft__quantize_q8_0(qw, w, s->n, s->k);
                    r.qw = qw, r.qwork = qwork;
                    q8[i] = flops / best_time(b, run_q8, &r) * 1e-9;
                    q8f[i] = flops / best_time(b, run_q8f, &r) * 1e-9;
                }
                eft__free_aligned(qw), eft__free_aligned(qwork);
            } else {
                double med;
                peer[i] = flops / time_fn(b, run_blas, &r, &med) * 1e-9;
                peer_med[i] = flops / med * 1e-9;
            }
            eft__sgemm_packed_free(&pk);
            eft__free_aligned(a), eft__free_aligned(w), eft__free_aligned(c);
        }
    }
    for (size_t i = 0; i < ns; i++) {
        const shape *s = &sh[i];
        char dims[64];
        snprintf(dims, sizeof dims, "%s %lldx%lldx%lld", s->name, (long long)s->m, (long long)s->n, (long long)s->k);
        if (bl->dl && !b->p.no_peer)
            emit(b, "  %-40s %7.1f  %4.0f%%  (%6.1f)  %8.1f  (%6.1f)  %8.2fx  %8.1f  %8.1f", dims, ours[i],
                 100 * ours[i] / b->peak_gflops, ours_med[i], peer[i], peer_med[i], ours[i] / peer[i], q8[i], q8f[i]);
        else emit(b, "  %-40s %7.1f  %4.0f%%  (%6.1f)  %8s  %8s  %9s  %8.1f  %8.1f", dims, ours[i],
                  100 * ours[i] / b->peak_gflops, ours_med[i], "n/a", "", "", q8[i], q8f[i]);
    }
    emit(b, "  (best repetition of each; in brackets the median, what a loaded machine gives; eft/OBLAS is best/best)");
    emit(b, "  (q8_0 f32a: the same Q8_0 weights with f32 activations, eft__qgemm_f32)");
    if (b->p.no_peer) emit(b, "  (OpenBLAS comparison skipped on request)");
    else if (!bl->dl) emit(b, "  (OpenBLAS not found: install libopenblas0 to compare)");
    else if (bl->get_config) emit(b, "  (peer: %s)", bl->get_config());
    return EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * GEMV: bandwidth per weight type (f32, f16, Q8_0, Q4_0, Q4_1; the quantised ones with int8 and with f32
 * activations), over enough copies of the matrix to defeat the caches
 * ------------------------------------------------------------------------------------------- */

typedef struct gemv_run {
    bench *b;
    int copies, type; /* 0 f32, 1 q8_0, 2 q4_0, 3 f16, 4 q8_0 f32 activations, 5 q4_0 f32 activations,
                       * 6 q4_1 (SmolLM2's GGUF type), 7 q4_1 f32 activations, 8 q4_1 f32 activations as
                       * three int8 planes (the exact decode path) */
    eft__sgemm_packed *pk;
    void **qw;
    const float *x;
    float *y;
    void *qwork;
    int64_t n, k;
} gemv_run;

static void run_gemv(void *p) {
    gemv_run *r = p;
    for (int i = 0; i < r->copies; i++) {
        eft_dtype qt = r->type == 1 || r->type == 4 ? EFT_DTYPE_Q8_0 : r->type >= 6 ? EFT_DTYPE_Q4_1 : EFT_DTYPE_Q4_0;
        if (r->type == 0 || r->type == 3) eft__sgemm(r->b->kt, r->b->tp, r->y, r->n, r->x, r->k, 1, &r->pk[i], NULL);
        else if (r->type == 4 || r->type == 5 || r->type == 7) eft__qgemm_f32(r->b->kt, r->b->tp, r->y, r->n, r->x, r->k, 1, qt, r->qw[i], r->n, r->k, NULL, NULL);
        else if (r->type == 8) eft__qx4_gemm_f32(r->b->kt, r->b->tp, r->y, r->n, r->x, r->k, 1, qt, r->qw[i], r->n, r->k, NULL, r->qwork);
        else eft__qx4_gemm(r->b->kt, r->b->tp, r->y, r->n, r->x, r->k, 1, qt, r->qw[i], r->n, r->k, NULL, r->qwork);
    }
}

static eft_status bench_gemv(bench *b) {
    static const shape full[] = {{"SmolLM2 gate", 1, 1536, 576}, {"1B up", 1, 8192, 2048}, {"1B down", 1, 2048, 8192}};
    static const shape quick[] = {{"SmolLM2 gate", 1, 1536, 576}};
    const shape *sh = b->p.quick ? quick : full;
    size_t ns = b->p.quick ? 1 : sizeof full / sizeof full[0];
    double target = b->p.quick ? 16e6 : 256e6; /* bytes of weights cycled through per call */
    emit(b, "%s", "");
    emit(b, "GEMV (1 token, weights cycled through %.0f MB)     GB/s   %%triad   GFLOPS", target / 1e6);
    emit(b, "  (q8_0, q4_0, q4_1: int8 activations on the four-row interleaved weights; f32a: f32 activations;");
    emit(b, "   x3: f32 activations as three int8 planes on the interleaved weights, the exact decode path)");
    for (size_t i = 0; i < ns; i++) {
        const shape *s = &sh[i];
        float *w = eft__malloc(sizeof(float) * s->n * s->k), *x = eft__malloc(sizeof(float) * s->k);
        float *y = eft__malloc(sizeof(float) * s->n);
        /* The int8 rows run eft__qx4_gemm, x3 eft__qx4_gemm_f32 (the larger scratch). */
        void *qwork = eft__malloc(eft__qx4_f32_work_size(1, s->k));
        if (!w || !x || !y || !qwork) {
            eft__free(w), eft__free(x), eft__free(y), eft__free(qwork);
            return EFT_ERR_OUT_OF_MEMORY;
        }
        fill_rand(w, s->n * s->k, 3), fill_rand(x, s->k, 4);
        uint16_t *wh = eft__malloc(sizeof(uint16_t) * s->n * s->k);
        if (!wh) {
            eft__free(w), eft__free(x), eft__free(y), eft__free(qwork);
            return EFT_ERR_OUT_OF_MEMORY;
        }
        for (int64_t e = 0; e < s->n * s->k; e++) wh[e] = eft__f32_to_f16(w[e]);
        static const int order[] = {0, 3, 1, 4, 2, 5, 6, 7, 8};
        for (int oi = 0; oi < 9; oi++) {
            int type = order[oi];
            static const char *names[] = {"f32",  "q8_0",      "q4_0",      "f16",    "q8_0 f32a",
                                          "q4_0 f32a", "q4_1", "q4_1 f32a", "q4_1 x3"};
            bool q8 = type == 1 || type == 4, q41 = type >= 6;
            double bytes = type == 0   ? 4.0 * s->n * s->k
                           : type == 3 ? 2.0 * s->n * s->k
                           : q8        ? (double)sizeof(eft__block_q8_0) * s->n * (s->k / 32)
                           : q41       ? (double)sizeof(eft__block_q4_1) * s->n * (s->k / 32)
                                       : (double)sizeof(eft__block_q4_0) * s->n * (s->k / 32);
            int copies = (int)ceil(target / bytes);
            eft__sgemm_packed *pk = eft__calloc((size_t)copies, sizeof *pk);
            void **qw = eft__calloc((size_t)copies, sizeof *qw);
            bool ok = pk && qw;
            for (int c = 0; ok && c < copies; c++) {
                if (type == 0) ok = eft__sgemm_pack(&pk[c], w, s->n, s->k, s->k, NULL) == EFT_OK;
                else if (type == 3) ok = eft__sgemm_pack_half(&pk[c], EFT_DTYPE_F16, wh, s->n, s->k, s->k, NULL) == EFT_OK;
                else {
                    qw[c] = eft__malloc_aligned((size_t)bytes);
                    ok = qw[c] != NULL;
                    if (ok && q8) eft__quantize_q8_0(qw[c], w, s->n, s->k);
                    if (ok && q41) eft__quantize_q4_1(qw[c], w, s->n, s->k);
                    else if (ok && !q8) eft__quantize_q4_0(qw[c], w, s->n, s->k);
                    /* int8 activations read what the decoder reads: the four-row interleaved copy
                     * (the same bytes when N % 4 == 0). */
                    eft_dtype qt = q8 ? EFT_DTYPE_Q8_0 : q41 ? EFT_DTYPE_Q4_1 : EFT_DTYPE_Q4_0;
                    size_t xs = eft__qx4_size(qt, s->n, s->k);
                    bool interleaved = type == 1 || type == 2 || type == 6 || type == 8;
                    void *x4 = ok && interleaved ? eft__malloc_aligned(xs) : NULL;
                    if (x4) {
                        ok = eft__qx4_pack(x4, qt, qw[c], (size_t)bytes / (size_t)s->n, s->n, s->k);
                        eft__free_aligned(qw[c]);
                        qw[c] = x4;
                    } else if (interleaved) ok = false;
                }
            }
            if (ok) {
                gemv_run r = {b, copies, type, pk, qw, x, y, qwork, s->n, s->k};
                double t = best_time(b, run_gemv, &r) / copies;
                char dims[64];
                snprintf(dims, sizeof dims, "%s %-9s %lldx%lld", s->name, names[type], (long long)s->n,
                         (long long)s->k);
                emit(b, "  %-44s %7.1f  %6.1f%%  %7.1f", dims, bytes / t * 1e-9, 100 * bytes / t * 1e-9 / b->triad_gbs,
                     2.0 * s->n * s->k / t * 1e-9);
            }
            for (int c = 0; c < copies; c++) {
                if (pk) eft__sgemm_packed_free(&pk[c]);
                if (qw) eft__free_aligned(qw[c]);
            }
            eft__free(pk), eft__free(qw);
            if (!ok) {
                eft__free(w), eft__free(wh), eft__free(x), eft__free(y), eft__free(qwork);
                return EFT_ERR_OUT_OF_MEMORY;
            }
        }
        eft__free(w), eft__free(wh), eft__free(x), eft__free(y), eft__free(qwork);
    }
    return EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Attention prefill
 * ------------------------------------------------------------------------------------------- */

typedef struct attn_run {
    bench *b;
    float *out, *q, *k, *v, *work;
    eft__attn_params p;
    int nseq;
} attn_run;

/* One call per sequence over rows packed back to back, as the graph executor runs a batch. */
static void run_attn(void *p) {
    attn_run *r = p;
    const eft__attn_params *a = &r->p;
    for (int s = 0; s < r->nseq; s++)
        eft__attention(r->b->kt, r->b->tp, r->out + s * a->t * a->ldo, r->q + s * a->t * a->ldq,
                       r->k + s * a->t * a->ldk, r->v + s * a->t * a->ldv, a, r->work);
}

static eft_status bench_attention(bench *b) {
    typedef struct cfg {
        const char *name;
        int nh, nkv, hs;
        bool causal;
        int64_t t;
        int nseq;
    } cfg;
    /* The last row is what the MiniLM encoder runs for a batch of 32 x 128: one call per
     * sequence (the executor packs sequences without padding, so there is no key mask). */
    static const cfg full[] = {{"SmolLM2 causal GQA 9/3x64", 9, 3, 64, true, 128, 1},
                               {"SmolLM2 causal GQA 9/3x64", 9, 3, 64, true, 512, 1},
                               {"SmolLM2 causal GQA 9/3x64", 9, 3, 64, true, 2048, 1},
                               {"MiniLM bidirectional 12x32", 12, 12, 32, false, 128, 1},
                               {"MiniLM bidirectional 12x32", 12, 12, 32, false, 512, 1},
                               {"MiniLM bidirectional 12x32", 12, 12, 32, false, 2048, 1},
                               {"MiniLM encoder 32 seqs 12x32", 12, 12, 32, false, 128, 32}};
    static const cfg quick[] = {{"SmolLM2 causal GQA 9/3x64", 9, 3, 64, true, 128, 1},
                                {"MiniLM encoder 32 seqs 12x32", 12, 12, 32, false, 128, 32}};
    const cfg *cf = b->p.quick ? quick : full;
    size_t nc = b->p.quick ? sizeof quick / sizeof quick[0] : sizeof full / sizeof full[0];
    emit(b, "%s", "");
    emit(b, "attention prefill (f32, flash-style)               GFLOPS   %%peak");
    for (size_t i = 0; i < nc; i++) {
        const cfg *c = &cf[i];
        attn_run r = {b, NULL, NULL, NULL, NULL, NULL, {0}, c->nseq};
        eft__attn_params *p = &r.p;
        p->t = p->tk = c->t;
        p->nh = c->nh, p->nkv = c->nkv, p->hs = c->hs;
        p->ldq = p->ldo = (int64_t)c->nh * c->hs;
        p->ldk = p->ldv = (int64_t)c->nkv * c->hs;
        p->scale = 1.0f / sqrtf((float)c->hs);
        p->causal = c->causal;
        int64_t rows = c->t * c->nseq;
        r.q = eft__malloc_aligned(sizeof(float) * rows * p->ldq);
        r.out = eft__malloc_aligned(sizeof(float) * rows * p->ldo);
        r.k = eft__malloc_aligned(sizeof(float) * rows * p->ldk);
        r.v = eft__malloc_aligned(sizeof(float) * rows * p->ldv);
        r.work = eft__malloc_aligned(sizeof(float) * eft__attention_work_floats(p, b->nth));
        eft_status st = EFT_OK;
        if (r.q && r.out && r.k && r.v && r.work) {
            fill_rand(r.q, rows * p->ldq, 5), fill_rand(r.k, rows * p->ldk, 6), fill_rand(r.v, rows * p->ldv, 7);
            /* QK^T and PV, 2 flops per multiply-add, over the visible (query, key) pairs only:
             * a causal row i sees i + 1 keys, so the masked half is not counted as work. */
            double pairs = c->causal ? (double)c->t * (c->t + 1) / 2 : (double)c->t * c->t;
            double gf = 4.0 * c->nh * c->hs * pairs * c->nseq / best_time(b, run_attn, &r) * 1e-9;
            emit(b, "  %-28s T=%-5lld                %8.1f  %5.1f%%", c->name, (long long)c->t, gf, 100 * gf / b->peak_gflops);
        } else {
            st = EFT_ERR_OUT_OF_MEMORY;
        }
        eft__free_aligned(r.q), eft__free_aligned(r.out), eft__free_aligned(r.k), eft__free_aligned(r.v);
        eft__free_aligned(r.work);
        if (st != EFT_OK) return st;
    }
    return EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Entry point
 * ------------------------------------------------------------------------------------------- */

eft_bench_params eft_bench_params_default(void) {
    eft_bench_params p = {0, 0.25, 0, 0};
    return p;
}

static void discard_line(const char *line, void *user_data) {
    (void)line, (void)user_data;
}

eft_status eft_bench_machine(int n_threads, double min_seconds, double *peak_gflops, double *triad_gbs) {
    eft__clear_last_error();
    eft__error err = {0};
    bench b = {0};
    b.p = eft_bench_params_default();
    b.p.min_seconds = min_seconds > 0 ? min_seconds : 0.25;
    b.line = discard_line;
    b.kt = eft__kernels_get();
    b.nth = n_threads > 0 ? n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (b.nth < 1) b.nth = 1;
    if (eft__threadpool_create(b.nth, &b.tp, &err) != EFT_OK) return eft__set_last_error(&err);
    bench_peak(&b);
    eft_status st = bench_stream(&b);
    eft__threadpool_free(b.tp);
    if (st != EFT_OK) {
        eft__fail(&err, st, "eft_bench_machine: out of memory for the STREAM arrays");
        return eft__set_last_error(&err);
    }
    if (peak_gflops) *peak_gflops = b.peak_gflops;
    if (triad_gbs) *triad_gbs = b.triad_gbs;
    return EFT_OK;
}

eft_status eft_bench_kernels(const eft_bench_params *params, eft_bench_line_fn line_fn, void *user_data) {
    eft__clear_last_error();
    eft__error err = {0};
    if (!line_fn) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_bench_kernels: line_fn is NULL");
        return eft__set_last_error(&err);
    }
    bench b = {0};
    b.p = params ? *params : eft_bench_params_default();
    if (b.p.min_seconds <= 0) b.p.min_seconds = b.p.quick ? 0.01 : 0.25;
    b.line = line_fn;
    b.ud = user_data;
    b.kt = eft__kernels_get();
    b.nth = b.p.n_threads > 0 ? b.p.n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (b.nth < 1) b.nth = 1;
    if (eft__threadpool_create(b.nth, &b.tp, &err) != EFT_OK) return eft__set_last_error(&err);

    double load[3] = {0};
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
        fclose(f);
    }
    emit(&b, "eft %s bench kernels — %s, %s kernels, %d threads, load average %.2f %.2f %.2f", eft_version(),
         eft__cpu_features_get()->brand, eft__isa_name(b.kt->isa), b.nth, load[0], load[1], load[2]);
    emit(&b, "%s", "");
    blas bl = {0};
    if (!b.p.no_peer) blas_open(&bl, b.nth);

    bench_peak(&b);
    eft_status st = bench_stream(&b);
    if (st == EFT_OK) st = bench_gemm(&b, &bl);
    if (st == EFT_OK) st = bench_gemv(&b);
    if (st == EFT_OK) st = bench_attention(&b);
    if (bl.dl) dlclose(bl.dl);
    eft__threadpool_free(b.tp);
    if (st != EFT_OK) {
        eft__fail(&err, st, "eft_bench_kernels: out of memory for the benchmark's buffers");
        return eft__set_last_error(&err);
    }
    return EFT_OK;
}
