/* test_kernels.c — holds every kernel table this CPU can run (scalar, AVX2, AVX-512) to the scalar
 * reference: row and elementwise kernels, the packed f32 GEMM on random odd shapes with and
 * without threads, the quantised-weight paths (int8 and f32 activations), and flash attention
 * with every mask. Tolerances are stated next to each check and scale with the reduction length
 * where one is involved. Guard elements past every output catch tails written out of bounds. */
#include <math.h>
#include <stdint.h>

#include "core/quant.h"
#include "core/threadpool.h"
#include "kernels/cpu/kernels.h"
#include "test.h"
#define TEST_RNG_SEED 0x9e3779b97f4a7c15ull
#include "test_rng.h"

static void fill(float *x, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) x[i] = rnd_f(lo, hi);
}

static const eft__kernels *g_tables[EFT__ISA_COUNT];
static int g_ntables;

#define GUARD 12345.0f

/* ---------------------------------------------------------------------------------------------
 * Dispatch
 * ------------------------------------------------------------------------------------------- */

static void test_dispatch(void) {
    const eft__kernels *active = eft__kernels_get();
    CHECK(active != NULL);
    CHECK(eft__kernels_for(EFT__ISA_SCALAR) != NULL);
    CHECK(eft__kernels_for(EFT__ISA_COUNT) == NULL);
    printf("     cpu: %s, best isa %s, active %s\n", eft__cpu_features_get()->brand, eft__isa_name(eft__isa_best()),
           eft__isa_name(active->isa));
    for (int i = 0; i < g_ntables; i++) {
        const eft__kernels *k = g_tables[i];
        /* Every entry filled: the struct is all pointers after the isa field. */
        const void *const *fp = (const void *const *)((const char *)k + offsetof(eft__kernels, sgemm_ukernel));
        size_t nfp = (sizeof *k - offsetof(eft__kernels, sgemm_ukernel)) / sizeof(void *);
        for (size_t j = 0; j < nfp; j++) CHECK_MSG(fp[j] != NULL, "%s entry %zu is NULL", eft__isa_name(k->isa), j);
    }
}

/* Aligned allocations: 64 bytes, and 2 MiB for eft__malloc_huge's streamed buffers from 2 MiB up;
 * every byte writable (ASan checks the bounds), a zero-byte request still a pointer, an
 * impossible size refused. */
static void test_malloc_huge(void) {
    static const size_t sizes[] = {0, 1, 4096, (2u << 20) - 1, 2u << 20, (3u << 20) + 17};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint8_t *p = eft__malloc_huge(sizes[i]), *q = eft__malloc_aligned(sizes[i]);
        CHECK(p != NULL && q != NULL);
        if (!p || !q) continue;
        uintptr_t align = sizes[i] >= (2u << 20) ? (2u << 20) : 64;
        CHECK_MSG((uintptr_t)p % align == 0, "size %zu: %p is not %zu-aligned", sizes[i], (void *)p, (size_t)align);
        CHECK((uintptr_t)q % 64 == 0);
        memset(p, 0xa5, sizes[i]);
        memset(q, 0x5a, sizes[i]);
        CHECK(sizes[i] == 0 || (p[sizes[i] - 1] == 0xa5 && q[0] == 0x5a));
        eft__free_aligned(p);
        eft__free_aligned(q);
    }
    CHECK(eft__malloc_huge(SIZE_MAX - 8) == NULL);
    eft__free_aligned(NULL);
}

/* ---------------------------------------------------------------------------------------------
 * Row and elementwise kernels
 * ------------------------------------------------------------------------------------------- */

static const int64_t k_lens[] = {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 384, 577, 1000, 1537};
#define NLENS (int)(sizeof k_lens / sizeof k_lens[0])

/* |got - want| <= abs + rel * |want| on n elements, and the guard after them intact. */
static int cmp(const char *what, const eft__kernels *k, int64_t n, const float *got, const float *want, double abs_tol,
               double rel_tol) {
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= abs_tol + rel_tol * fabs(want[i]))) {
            if (!bad) fprintf(stderr, "  %s [%s] n=%lld i=%lld: %.9g vs %.9g\n", what, eft__isa_name(k->isa), (long long)n,
                              (long long)i, got[i], want[i]);
            bad++;
        }
    }
    if (got[n] != GUARD) {
        fprintf(stderr, "  %s [%s] n=%lld wrote past the end\n", what, eft__isa_name(k->isa), (long long)n);
        bad++;
    }
    CHECK(bad == 0);
    return bad;
}

static void test_row_kernels(void) {
    const eft__kernels *ref = eft__kernels_for(EFT__ISA_SCALAR);
    int64_t cap = 1600;
    float *x = eft__malloc(sizeof(float) * (cap + 2)), *y = eft__malloc(sizeof(float) * (cap + 2));
    float *w = eft__malloc(sizeof(float) * (cap + 2)), *b = eft__malloc(sizeof(float) * (cap + 2));
    float *got = eft__malloc(sizeof(float) * (cap + 2)), *want = eft__malloc(sizeof(float) * (cap + 2));
    for (int t = 0; t < g_ntables; t++) {
        const eft__kernels *k = g_tables[t];
        for (int li = 0; li < NLENS; li++) {
            int64_t n = k_lens[li];
            /* Offset by one float so vector loads are unaligned. */
            float *xu = x + 1, *yu = y + 1;
            fill(xu, n, -6, 6);
            fill(yu, n, -3, 3);
            fill(w, n, -2, 2);
            fill(b, n, -1, 1);
#define RESET() (got[n] = want[n] = GUARD)
            /* Norms: relative 1e-5 (a few float roundings of a value near 1), plus 1e-6 absolute. */
            RESET(); k->layernorm(got, xu, w, b, n, 1e-5f); ref->layernorm(want, xu, w, b, n, 1e-5f);
            cmp("layernorm", k, n, got, want, 1e-5, 1e-5);
            RESET(); k->layernorm(got, xu, NULL, NULL, n, 1e-12f); ref->layernorm(want, xu, NULL, NULL, n, 1e-12f);
            cmp("layernorm/no affine", k, n, got, want, 1e-5, 1e-5);
            RESET(); k->rmsnorm(got, xu, w, n, 1e-6f, 0.0f); ref->rmsnorm(want, xu, w, n, 1e-6f, 0.0f);
            cmp("rmsnorm", k, n, got, want, 1e-6, 1e-5);
            RESET(); k->rmsnorm(got, xu, w, n, 1e-6f, 1.0f); ref->rmsnorm(want, xu, w, n, 1e-6f, 1.0f);
            cmp("rmsnorm/gemma", k, n, got, want, 1e-6, 1e-5);
            /* Activations: vector exp/erf/tanh approximations, absolute 2e-6 scaled by |x|. */
            RESET(); k->gelu_erf(got, xu, n); ref->gelu_erf(want, xu, n);
            cmp("gelu_erf", k, n, got, want, 6e-6 * 6, 1e-6);
            RESET(); k->gelu_tanh(got, xu, n); ref->gelu_tanh(want, xu, n);
            cmp("gelu_tanh", k, n, got, want, 2e-6 * 6, 1e-6);
            RESET(); k->silu(got, xu, n); ref->silu(want, xu, n);
            cmp("silu", k, n, got, want, 2e-6, 1e-5);
            RESET(); k->swiglu(got, xu, yu, n); ref->swiglu(want, xu, yu, n);
            cmp("swiglu", k, n, got, want, 2e-6 * 3, 1e-5);
            RESET(); k->add(got, xu, yu, n); ref->add(want, xu, yu, n);
            cmp("add", k, n, got, want, 0, 0);
            /* In place (out == x) must work for the elementwise kernels. */
            for (int64_t i = 0; i < n; i++) got[i] = xu[i];
            RESET(); k->silu(got, got, n); ref->silu(want, xu, n);
            cmp("silu/in place", k, n, got, want, 2e-6, 1e-5);
            /* Softmax: probabilities, relative 1e-5. */
            for (int64_t i = 0; i < n; i++) got[i] = want[i] = xu[i] * 4;
            RESET(); k->softmax(got, n); ref->softmax(want, n);
            cmp("softmax", k, n, got, want, 1e-7, 1e-5);
            double s = 0;
            for (int64_t i = 0; i < n; i++) s += got[i];
            CHECK_NEAR(s, 1.0, 1e-5);
            /* dot: error bound grows with n; axpy and scale are one rounding per element. */
            double sa = 0;
            for (int64_t i = 0; i < n; i++) sa += fabs((double)xu[i] * yu[i]);
            CHECK_NEAR(k->dot_f32(xu, yu, n), ref->dot_f32(xu, yu, n), 1.2e-7 * (double)n * sa + 1e-6);
            for (int64_t i = 0; i < n; i++) got[i] = want[i] = yu[i];
            RESET(); k->axpy_f32(got, 0.75f, xu, n); ref->axpy_f32(want, 0.75f, xu, n);
            cmp("axpy", k, n, got, want, 1e-6, 1e-6);
            RESET(); k->scale_f32(got, -1.5f, n); ref->scale_f32(want, -1.5f, n);
            cmp("scale", k, n, got, want, 1e-6, 1e-6);
            CHECK(k->max_f32(xu, n) == ref->max_f32(xu, n));
            for (int64_t i = 0; i < n; i++) got[i] = want[i] = -fabsf(xu[i]);
            got[n / 2] = want[n / 2] = -INFINITY; /* masked scores must give exactly 0 */
            RESET();
            float sg = k->exp_sub_sum(got, n, 0.0f), sw = ref->exp_sub_sum(want, n, 0.0f);
            cmp("exp_sub_sum", k, n, got, want, 1e-7, 1e-6);
            CHECK(got[n / 2] == 0.0f);
            CHECK_NEAR(sg, sw, 1e-5 * sw);
        }
    }
    /* Special values of the activations: large magnitudes must not overflow to NaN. */
    for (int t = 0; t < g_ntables; t++) {
        const eft__kernels *k = g_tables[t];
        float in[8] = {-100, -30, -10, 0, 10, 30, 100, 1e-8f}, o[8];
        k->gelu_erf(o, in, 8);
        CHECK(o[0] == 0 && fabsf(o[6] - 100) < 1e-4f && o[3] == 0);
        k->gelu_tanh(o, in, 8);
        CHECK(fabsf(o[0]) < 1e-30f && fabsf(o[6] - 100) < 1e-4f);
        k->silu(o, in, 8);
        CHECK(fabsf(o[0]) < 1e-30f && fabsf(o[6] - 100) < 1e-4f && !isnan(o[0]));
    }
    eft__free(x); eft__free(y); eft__free(w); eft__free(b); eft__free(got); eft__free(want);
}

/* ---------------------------------------------------------------------------------------------
 * f32 GEMM
 * ------------------------------------------------------------------------------------------- */

/* One product of the given shape, every table, threads 1 and 3; returns failures. */
static void check_sgemm(eft__threadpool **pools, int npools, int64_t m, int64_t n, int64_t k, bool with_bias) {
    int64_t lda = k + rnd_i(0, 3), ldw = k + rnd_i(0, 2), ldc = n + rnd_i(0, 5);
    float *a = eft__malloc(sizeof(float) * (m * lda + 1)), *w = eft__malloc(sizeof(float) * n * ldw);
    float *bias = eft__malloc(sizeof(float) * n), *c = eft__malloc(sizeof(float) * (m * ldc + 1));
    float *r = eft__malloc(sizeof(float) * m * ldc);
    fill(a, m * lda + 1, -1, 1);
    fill(w, n * ldw, -1, 1);
    fill(bias, n, -1, 1);
    eft__sgemm_ref(r, ldc, a, lda, m, w, ldw, n, k, with_bias ? bias : NULL);
    eft__sgemm_packed pk;
    eft__error err = {0};
    CHECK(eft__sgemm_pack(&pk, w, n, k, ldw, &err) == EFT_OK);
    for (int t = 0; t < g_ntables; t++)
        for (int pi = 0; pi < npools; pi++) {
            for (int64_t i = 0; i < m * ldc + 1; i++) c[i] = GUARD;
            eft__sgemm(g_tables[t], pools[pi], c, ldc, a + 1 /* unaligned */, lda, m, &pk, with_bias ? bias : NULL);
            /* The reference used a (not a + 1): recompute for the shifted input once per shape. */
            int bad = 0;
            for (int64_t i = 0; i < m && bad < 3; i++)
                for (int64_t j = 0; j < ldc && bad < 3; j++) {
                    float got = c[i * ldc + j];
                    if (j >= n) {
                        if (got != GUARD) bad++, fprintf(stderr, "  sgemm wrote padding column %lld\n", (long long)j);
                        continue;
                    }
                    double s = with_bias ? bias[j] : 0, sabs = with_bias ? fabs(bias[j]) : 0;
                    for (int64_t kk = 0; kk < k; kk++) {
                        double p = (double)a[1 + i * lda + kk] * w[j * ldw + kk];
                        s += p;
                        sabs += fabs(p);
                    }
                    /* Float summation error bound: about K * eps * sum |a w|. */
                    double tol = 1.2e-7 * (double)(k + 2) * sabs + 1e-6;
                    if (!(fabs(got - s) <= tol)) {
                        bad++;
                        fprintf(stderr, "  sgemm [%s, %d thr] M=%lld N=%lld K=%lld c[%lld,%lld] = %.8g, want %.8g\n",
                                eft__isa_name(g_tables[t]->isa), eft__threadpool_size(pools[pi]), (long long)m,
                                (long long)n, (long long)k, (long long)i, (long long)j, got, s);
                    }
                }
            CHECK(c[m * ldc] == GUARD);
            CHECK(bad == 0);
        }
    (void)r;
    eft__sgemm_packed_free(&pk);
    eft__free(a); eft__free(w); eft__free(bias); eft__free(c); eft__free(r);
}

static void test_sgemm(void) {
    eft__threadpool *pools[3] = {NULL, NULL, NULL};
    eft__error err = {0};
    CHECK(eft__threadpool_create(1, &pools[0], &err) == EFT_OK);
    CHECK(eft__threadpool_create(2, &pools[1], &err) == EFT_OK);
    CHECK(eft__threadpool_create(3, &pools[2], &err) == EFT_OK);
    /* The packed-A path's edges: several row blocks split by rows (M >= 240 x threads), a row
     * tail in the last micro-panel, uneven k blocks (385 = 3 x 129 - 2), and M = 7..8 (two
     * micro-tiles, split by panels). */
    static const int64_t fixed[][3] = {{1, 1, 1},     {6, 16, 8},    {7, 17, 9},    {1, 384, 384},
                                       {12, 48, 257},  {5, 15, 513},  {130, 33, 70}, {3, 200, 300},
                                       {250, 20, 31},  {64, 64, 64},  {500, 40, 400}, {757, 33, 385},
                                       {8, 300, 200},  {241, 17, 193}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        check_sgemm(pools, 3, fixed[i][0], fixed[i][1], fixed[i][2], i % 2 == 0);
    for (int it = 0; it < 30; it++) check_sgemm(pools, 3, rnd_i(1, 300), rnd_i(1, 300), rnd_i(1, 300), it % 3 != 0);
    for (int i = 0; i < 3; i++) eft__threadpool_free(pools[i]);
}

/* Without memory for the packing buffer the GEMM reads A in place: same results, no error. */
static void *no_alloc(size_t n, void *ud) { (void)n, (void)ud; return NULL; }
static void *no_realloc(void *p, size_t n, void *ud) { (void)p, (void)n, (void)ud; return NULL; }
static void plain_free(void *p, void *ud) { (void)ud; free(p); }

static void test_sgemm_no_memory(void) {
    int64_t m = 300, n = 40, k = 300;
    float *a = eft__malloc(sizeof(float) * m * k), *w = eft__malloc(sizeof(float) * n * k);
    float *c = eft__malloc(sizeof(float) * m * n), *r = eft__malloc(sizeof(float) * m * n);
    fill(a, m * k, -1, 1);
    fill(w, n * k, -1, 1);
    eft__sgemm_ref(r, n, a, k, m, w, k, n, k, NULL);
    eft__error err = {0};
    eft__sgemm_packed pk;
    CHECK(eft__sgemm_pack(&pk, w, n, k, k, &err) == EFT_OK);
    eft_allocator failing = {no_alloc, no_realloc, plain_free, NULL};
    for (int t = 0; t < g_ntables; t++) {
        eft_set_allocator(&failing);
        eft__sgemm(g_tables[t], NULL, c, n, a, k, m, &pk, NULL);
        eft_set_allocator(NULL);
        int bad = 0;
        for (int64_t i = 0; i < m * n; i++)
            if (!(fabsf(c[i] - r[i]) <= 1e-4f * (1.0f + fabsf(r[i]))) && bad++ < 3)
                fprintf(stderr, "  sgemm without memory [%s]: c[%lld] = %g, want %g\n", eft__isa_name(g_tables[t]->isa),
                        (long long)i, c[i], r[i]);
        CHECK(bad == 0);
    }
    eft__sgemm_packed_free(&pk);
    eft__free(a), eft__free(w), eft__free(c), eft__free(r);
}

static void test_sgemm_pack_typed(void) {
    int64_t n = 19, k = 23;
    uint16_t h[19 * 23], bf[19 * 23];
    float f[19 * 23];
    for (int i = 0; i < n * k; i++) {
        f[i] = rnd_f(-2, 2);
        h[i] = eft__f32_to_f16(f[i]);
        bf[i] = eft__f32_to_bf16(f[i]);
    }
    eft__sgemm_packed p16, pb;
    eft__error err = {0};
    CHECK(eft__sgemm_pack_typed(&p16, EFT_DTYPE_F16, h, n, k, k, &err) == EFT_OK);
    CHECK(eft__sgemm_pack_typed(&pb, EFT_DTYPE_BF16, bf, n, k, k, &err) == EFT_OK);
    CHECK(p16.npanels == 2);
    for (int64_t j = 0; j < 32; j++)
        for (int64_t kk = 0; kk < k; kk++) {
            float v16 = ((float *)p16.data)[(j / 16) * k * 16 + kk * 16 + j % 16];
            float vb = ((float *)pb.data)[(j / 16) * k * 16 + kk * 16 + j % 16];
            CHECK(v16 == (j < n ? eft__f16_to_f32(h[j * k + kk]) : 0.0f));
            CHECK(vb == (j < n ? eft__bf16_to_f32(bf[j * k + kk]) : 0.0f));
        }
    eft__sgemm_packed_free(&p16);
    eft__sgemm_packed_free(&pb);
    CHECK(pb.data == NULL);
    CHECK(eft__sgemm_pack_typed(&pb, EFT_DTYPE_Q4_0, bf, n, k, k, &err) == EFT_ERR_UNSUPPORTED);
    CHECK_CONTAINS(err.msg, "Q4_0");
    CHECK(eft__sgemm_pack(&pb, f, 0, k, k, &err) == EFT_ERR_INVALID_ARGUMENT);
    CHECK(pb.data == NULL);
}

/* f16 and bf16 panels kept 16-bit: every table against the double-precision product of the
 * widened weights, so the tolerance is the f32 one. */
static void test_sgemm_half(void) {
    eft__threadpool *tp = NULL;
    eft__error err = {0};
    CHECK(eft__threadpool_create(2, &tp, &err) == EFT_OK);
    for (int it = 0; it < 16; it++) {
        eft_dtype dt = it % 2 ? EFT_DTYPE_BF16 : EFT_DTYPE_F16;
        int64_t m = it == 0 ? 1 : it == 2 || it == 3 ? 500 : rnd_i(1, 80), n = rnd_i(1, 150), k = it == 1 ? 600 : rnd_i(1, 300), ldw = k + rnd_i(0, 2);
        float *a = eft__malloc(sizeof(float) * m * k), *wf = eft__malloc(sizeof(float) * n * k);
        float *bias = eft__malloc(sizeof(float) * n), *c = eft__malloc(sizeof(float) * (m * n + 1)), *r = eft__malloc(sizeof(float) * m * n);
        uint16_t *wh = eft__malloc(sizeof(uint16_t) * n * ldw);
        fill(a, m * k, -1, 1);
        fill(bias, n, -1, 1);
        for (int64_t j = 0; j < n; j++)
            for (int64_t kk = 0; kk < k; kk++) {
                float v = rnd_f(-1, 1);
                wh[j * ldw + kk] = dt == EFT_DTYPE_F16 ? eft__f32_to_f16(v) : eft__f32_to_bf16(v);
                wf[j * k + kk] = dt == EFT_DTYPE_F16 ? eft__f16_to_f32(wh[j * ldw + kk]) : eft__bf16_to_f32(wh[j * ldw + kk]);
            }
        eft__sgemm_ref(r, n, a, k, m, wf, k, n, k, bias);
        eft__sgemm_packed pk;
        CHECK(eft__sgemm_pack_half(&pk, dt, wh, n, k, ldw, &err) == EFT_OK);
        CHECK(pk.dtype == dt);
        for (int t = 0; t < g_ntables; t++) {
            c[m * n] = GUARD;
            eft__sgemm(g_tables[t], it % 3 ? tp : NULL, c, n, a, k, m, &pk, bias);
            CHECK(c[m * n] == GUARD);
            int bad = 0;
            for (int64_t i = 0; i < m * n; i++)
                if (!(fabsf(c[i] - r[i]) <= 1.2e-7f * (float)(k + 2) * (float)k + 1e-5f) && bad++ < 3)
                    fprintf(stderr, "  sgemm %s [%s] M=%lld N=%lld K=%lld: c[%lld]=%g want %g\n", eft_dtype_name(dt),
                            eft__isa_name(g_tables[t]->isa), (long long)m, (long long)n, (long long)k, (long long)i, c[i], r[i]);
            CHECK(bad == 0);
        }
        eft__sgemm_packed_free(&pk);
        eft__free(a); eft__free(wf); eft__free(bias); eft__free(c); eft__free(r); eft__free(wh);
    }
    eft__threadpool_free(tp);
}

/* ---------------------------------------------------------------------------------------------
 * Q8_0
 * ------------------------------------------------------------------------------------------- */

static void test_q8_quantize_and_dot(void) {
    const eft__kernels *ref = eft__kernels_for(EFT__ISA_SCALAR);
    enum { NB = 37 };
    float x[NB * 32], w[NB * 32];
    fill(x, NB * 32, -3, 3);
    fill(w, NB * 32, -1, 1);
    for (int i = 0; i < 32; i++) x[32 + i] = 0; /* an all-zero block: scale 0, no division by 0 */
    x[100] = 0.5f * (3.0f / 127.0f);           /* near a rounding tie */
    eft__block_q8_a qa_ref[NB], qa[NB];
    eft__block_q8_0 qw[NB];
    eft__quantize_q8_0(qw, w, 1, NB * 32);
    float back[NB * 32];
    CHECK(eft__dequantize_row(EFT_DTYPE_Q8_0, qw, back, NB * 32));
    for (int i = 0; i < NB * 32; i++) {
        float d = eft__f16_to_f32(qw[i / 32].d);
        CHECK(fabsf(back[i] - w[i]) <= 0.5f * d + 1e-3f * fabsf(w[i]) + 1e-7f); /* half a step, f16 scale */
    }
    ref->quantize_row_q8_a(qa_ref, x, NB * 32);
    CHECK(qa_ref[1].d == 0.0f && qa_ref[1].sum == 0);
    for (int t = 0; t < g_ntables; t++) {
        const eft__kernels *k = g_tables[t];
        k->quantize_row_q8_a(qa, x, NB * 32);
        /* Same integers and scales on every ISA: the quantiser is exact, not approximate. */
        for (int b = 0; b < NB; b++) {
            CHECK(qa[b].d == qa_ref[b].d);
            CHECK(qa[b].sum == qa_ref[b].sum);
            CHECK(memcmp(qa[b].qs, qa_ref[b].qs, 32) == 0);
        }
        for (int nb = 1; nb <= NB; nb++) {
            double sabs = 0;
            for (int b = 0; b < nb; b++) sabs += fabs(eft__f16_to_f32(qw[b].d) * qa_ref[b].d) * 127 * 127 * 32;
            /* Integer block sums are exact; only the nb float terms round. */
            CHECK_NEAR(k->dot_q8_0_q8_a(qw, qa_ref, nb), ref->dot_q8_0_q8_a(qw, qa_ref, nb), 2.4e-7 * nb * sabs / 10);
        }
    }
}

static void test_q8_from_int8(void) {
    enum { N = 5, K = 256 };
    int8_t q[N * K];
    for (int i = 0; i < N * K; i++) q[i] = (int8_t)rnd_i(-127, 127);
    static const int64_t groups[] = {32, 64, 128, K};
    for (size_t g = 0; g < 4; g++) {
        int64_t gs = groups[g], ng = K / gs;
        float s[N * K / 32];
        for (int i = 0; i < N * ng; i++) s[i] = rnd_f(1e-3f, 2e-2f);
        eft__block_q8_0 out[N * K / 32];
        CHECK(eft__q8_0_from_int8(out, q, s, N, K, gs));
        float row[K];
        for (int r = 0; r < N; r++) {
            CHECK(eft__dequantize_row(EFT_DTYPE_Q8_0, out + r * (K / 32), row, K));
            /* Exact up to the scale's rounding to f16: 2^-11 relative. */
            for (int kk = 0; kk < K; kk++) CHECK_NEAR(row[kk], q[r * K + kk] * s[r * ng + kk / gs], 5e-4 * fabsf(q[r * K + kk] * s[r * ng + kk / gs]) + 1e-9);
        }
    }
    eft__block_q8_0 out[1];
    CHECK(!eft__q8_0_from_int8(out, q, NULL, 1, 32, 48));
}

static void test_q4_quantize_and_dot(void) {
    const eft__kernels *ref = eft__kernels_for(EFT__ISA_SCALAR);
    enum { NB = 29 };
    float w[NB * 32], x[NB * 32], back[NB * 32];
    fill(w, NB * 32, -1, 1);
    fill(x, NB * 32, -3, 3);
    for (int i = 0; i < 32; i++) w[64 + i] = 0.25f; /* a constant block: Q4_1's range is 0 */
    eft__block_q4_0 q40[NB];
    eft__block_q4_1 q41[NB];
    eft__quantize_q4_0(q40, w, 1, NB * 32);
    eft__quantize_q4_1(q41, w, 1, NB * 32);
    CHECK(eft__dequantize_row(EFT_DTYPE_Q4_0, q40, back, NB * 32));
    for (int i = 0; i < NB * 32; i++) CHECK(fabsf(back[i] - w[i]) <= fabsf(eft__f16_to_f32(q40[i / 32].d)) * 1.01f + 1e-6f);
    CHECK(eft__dequantize_row(EFT_DTYPE_Q4_1, q41, back, NB * 32));
    for (int i = 0; i < NB * 32; i++) CHECK(fabsf(back[i] - w[i]) <= eft__f16_to_f32(q41[i / 32].d) * 0.51f + 2e-3f);
    eft__block_q8_a qa[NB];
    ref->quantize_row_q8_a(qa, x, NB * 32);
    for (int t = 0; t < g_ntables; t++) {
        const eft__kernels *k = g_tables[t];
        for (int nb = 1; nb <= NB; nb += 3) {
            /* Integer block sums are exact; the tolerance covers nb float terms. */
            double r0 = ref->dot_q4_0_q8_a(q40, qa, nb), r1 = ref->dot_q4_1_q8_a(q41, qa, nb);
            CHECK_NEAR(k->dot_q4_0_q8_a(q40, qa, nb), r0, 1e-5 * nb * (1 + fabs(r0)));
            CHECK_NEAR(k->dot_q4_1_q8_a(q41, qa, nb), r1, 1e-5 * nb * (1 + fabs(r1)));
        }
    }
}

static void test_q8_gemm(void) {
    eft__threadpool *tp = NULL;
    eft__error err = {0};
    CHECK(eft__threadpool_create(2, &tp, &err) == EFT_OK);
    static const int64_t shapes[][3] = {{1, 1, 32}, {1, 37, 64}, {3, 50, 96}, {8, 129, 384}, {17, 33, 32}, {1, 576, 576}};
    static const eft_dtype wtypes[] = {EFT_DTYPE_Q8_0, EFT_DTYPE_Q4_0, EFT_DTYPE_Q4_1};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0] * 3; si++) {
        eft_dtype wt = wtypes[si % 3];
        int64_t m = shapes[si / 3][0], n = shapes[si / 3][1], k = shapes[si / 3][2], nb = k / 32;
        float *a = eft__malloc(sizeof(float) * m * k), *w = eft__malloc(sizeof(float) * n * k), *bias = eft__malloc(sizeof(float) * n);
        float *wd = eft__malloc(sizeof(float) * n * k), *c = eft__malloc(sizeof(float) * (m * n + 1));
        eft__block_q8_0 *qw = eft__malloc(sizeof(eft__block_q8_0) * n * nb);
        void *work = eft__malloc(eft__q8_0_gemm_work_size(m, k));
        fill(a, m * k, -2, 2);
        fill(w, n * k, -0.5f, 0.5f);
        fill(bias, n, -1, 1);
        size_t rb = wt == EFT_DTYPE_Q8_0 ? sizeof(eft__block_q8_0) : wt == EFT_DTYPE_Q4_0 ? sizeof(eft__block_q4_0) : sizeof(eft__block_q4_1);
        if (wt == EFT_DTYPE_Q8_0) eft__quantize_q8_0(qw, w, n, k);
        else if (wt == EFT_DTYPE_Q4_0) eft__quantize_q4_0((eft__block_q4_0 *)qw, w, n, k);
        else eft__quantize_q4_1((eft__block_q4_1 *)qw, w, n, k);
        for (int64_t j = 0; j < n; j++) eft__dequantize_row(wt, (const uint8_t *)qw + j * nb * rb, wd + j * k, k);
        for (int t = 0; t < g_ntables; t++)
            for (int thr = 0; thr < 2; thr++) {
                c[m * n] = GUARD;
                if (wt == EFT_DTYPE_Q8_0) eft__q8_0_gemm(g_tables[t], thr ? tp : NULL, c, n, a, k, m, qw, n, k, bias, work);
                else CHECK(eft__qgemm(g_tables[t], thr ? tp : NULL, c, n, a, k, m, wt, qw, n, k, bias, work));
                CHECK(c[m * n] == GUARD);
                int bad = 0;
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < n; j++) {
                        /* Against f32 activations times the dequantised weights: the activation
                         * rounding is at most half a step (amax/127/2) per element. */
                        double s = bias[j], tol = 1e-5;
                        for (int64_t b = 0; b < nb; b++) {
                            float amax = 0, wabs = 0;
                            for (int e = 0; e < 32; e++) {
                                int64_t kk = b * 32 + e;
                                s += (double)a[i * k + kk] * wd[j * k + kk];
                                amax = fmaxf(amax, fabsf(a[i * k + kk]));
                                wabs += fabsf(wd[j * k + kk]);
                            }
                            tol += (amax / 127.0 / 2) * wabs * 1.01 + 1e-6 * wabs * amax;
                        }
                        if (!(fabs(c[i * n + j] - s) <= tol) && bad++ < 3)
                            fprintf(stderr, "  qgemm %s [%s] M=%lld N=%lld K=%lld c[%lld,%lld]=%g want %g tol %g\n",
                                    eft_dtype_name(wt), eft__isa_name(g_tables[t]->isa), (long long)m, (long long)n, (long long)k, (long long)i,
                                    (long long)j, c[i * n + j], s, tol);
                    }
                CHECK(bad == 0);
            }
        eft__free(a); eft__free(w); eft__free(bias); eft__free(wd); eft__free(c); eft__free(qw); eft__free(work);
    }
    float c1;
    CHECK(!eft__qgemm(NULL, NULL, &c1, 1, &c1, 1, 1, EFT_DTYPE_Q5_0, NULL, 1, 32, NULL, NULL));
    CHECK(!eft__qgemm(NULL, NULL, &c1, 1, &c1, 1, 1, EFT_DTYPE_Q8_0, NULL, 1, 33, NULL, NULL));
    eft__threadpool_free(tp);
}

/* ---------------------------------------------------------------------------------------------
 * Quantised weights, f32 activations
 * ------------------------------------------------------------------------------------------- */

static size_t q_block_bytes(eft_dtype wt) {
    return wt == EFT_DTYPE_Q8_0 ? sizeof(eft__block_q8_0) : wt == EFT_DTYPE_Q4_0 ? sizeof(eft__block_q4_0) : sizeof(eft__block_q4_1);
}

/* n rows of k/32 raw blocks: random quants and random finite f16 scales over a wide range
 * (subnormal f16 included, and Q4_1 minimums of either sign), so the exactness checks see scales
 * a quantiser would never write as well as ordinary ones. */
static void fill_raw_blocks(uint8_t *w, eft_dtype wt, int64_t n, int64_t k) {
    size_t bb = q_block_bytes(wt), nbytes = bb * (size_t)(n * (k / 32));
    for (size_t i = 0; i < nbytes; i++) w[i] = (uint8_t)rnd_u32();
    for (size_t b = 0; b < nbytes / bb; b++) {
        uint8_t *blk = w + b * bb;
        float d = rnd_f(-1, 1) * powf(2.0f, (float)rnd_i(-26, 2));
        uint16_t h = eft__f32_to_f16(d);
        memcpy(blk, &h, 2);
        if (wt == EFT_DTYPE_Q4_1) {
            h = eft__f32_to_f16(rnd_f(-2, 2) * powf(2.0f, (float)rnd_i(-20, 0)));
            memcpy(blk + 2, &h, 2);
        }
    }
}

/* The decoded weights must be eft__dequantize_row's to the bit: the panel kernel's output
 * directly, and the GEMV's through one-hot activation rows (a sum with a single non-zero term is
 * that term exactly). Weights start at an odd address, as they may in a GGUF mapping. */
static void test_qgemm_f32_exact(void) {
    static const eft_dtype wtypes[] = {EFT_DTYPE_Q8_0, EFT_DTYPE_Q4_0, EFT_DTYPE_Q4_1};
    for (int it = 0; it < 24; it++) {
        eft_dtype wt = wtypes[it % 3];
        /* Every fourth K is long enough that the batch GEMV takes it in chunks (simd_avx2.h). */
        int64_t n = rnd_i(1, 16), k = 32 * (it % 4 == 3 ? rnd_i(25, 96) : rnd_i(1, 24)), nb = k / 32;
        size_t bb = q_block_bytes(wt), rb = bb * (size_t)nb;
        uint8_t *buf = eft__malloc(rb * (size_t)n + 1), *w = buf + 1;
        float *wd = eft__malloc(sizeof(float) * n * k), *a = eft__malloc(sizeof(float) * EFT__QGEMV_MAX_M * k);
        float *wp = eft__malloc_aligned(sizeof(float) * 16 * k), *c = eft__malloc(sizeof(float) * EFT__QGEMV_MAX_M * n);
        fill_raw_blocks(w, wt, n, k);
        for (int64_t j = 0; j < n; j++) CHECK(eft__dequantize_row(wt, w + j * rb, wd + j * k, k));
        for (int t = 0; t < g_ntables; t++) {
            const eft__kernels *kt = g_tables[t];
            /* A slice that starts past the first block when there is more than one. */
            int64_t k0 = nb > 1 ? 32 * rnd_i(0, (int)nb - 1) : 0, kc = k - k0;
            for (int64_t i = 0; i < 16 * kc; i++) wp[i] = GUARD;
            kt->qpanel_f32(wp, wt, w, rb, (int)n, k0, kc);
            int bad = 0;
            for (int64_t e = 0; e < kc; e++)
                for (int64_t j = 0; j < 16; j++) {
                    float want = j < n ? wd[j * k + k0 + e] : 0.0f, got = wp[e * 16 + j];
                    if (memcmp(&got, &want, sizeof got) != 0 && bad++ < 3)
                        fprintf(stderr, "  qpanel_f32 %s [%s] n=%lld k=%lld k0=%lld: wp[%lld][%lld] = %.9g, want %.9g\n",
                                eft_dtype_name(wt), eft__isa_name(kt->isa), (long long)n, (long long)k, (long long)k0,
                                (long long)e, (long long)j, got, want);
                }
            CHECK(bad == 0);
            for (int rep = 0; rep < 8; rep++) {
                int m = rep < 2 ? EFT__QGEMV_MAX_M - rep : rnd_i(1, EFT__QGEMV_MAX_M);
                int64_t hot[EFT__QGEMV_MAX_M];
                memset(a, 0, sizeof(float) * EFT__QGEMV_MAX_M * k);
                for (int i = 0; i < m; i++) a[i * k + (hot[i] = rnd_i(0, (int)k - 1))] = 1.0f;
                kt->qgemv_f32(c, n, a, k, m, wt, w, rb, n, k, NULL);
                bad = 0;
                for (int i = 0; i < m; i++)
                    for (int64_t j = 0; j < n; j++) {
                        float want = wd[j * k + hot[i]], got = c[i * n + j];
                        /* -0 + +0 sums to +0: compare values, not bits, for zeros. */
                        if (!(got == want) && bad++ < 3)
                            fprintf(stderr, "  qgemv_f32 %s [%s] k=%lld: row %lld at %lld = %.9g, want %.9g\n",
                                    eft_dtype_name(wt), eft__isa_name(kt->isa), (long long)k, (long long)j,
                                    (long long)hot[i], got, want);
                    }
                CHECK(bad == 0);
            }
        }
        eft__free(buf); eft__free(wd); eft__free(a); eft__free_aligned(wp); eft__free(c);
    }
}

/* One shape against the reference: eft__dequantize_row, then a product accumulated in double.
 * Every table, 1 and 2 threads, with and without bias; odd row strides, activations and weights
 * at unaligned addresses, and guards in c's padding columns and after its last row. */
static void check_qgemm_f32(eft__threadpool *tp, eft_dtype wt, int64_t m, int64_t n, int64_t k) {
    int64_t nb = k / 32, lda = k + rnd_i(0, 3), ldc = n + rnd_i(0, 5);
    size_t bb = q_block_bytes(wt), rb = bb * (size_t)nb;
    float *abuf = eft__malloc(sizeof(float) * (m * lda + 1)), *a = abuf + 1;
    float *w = eft__malloc(sizeof(float) * n * k), *wd = eft__malloc(sizeof(float) * n * k);
    float *bias = eft__malloc(sizeof(float) * n), *c = eft__malloc(sizeof(float) * (m * ldc + 1));
    double *ref = eft__malloc(sizeof(double) * m * n), *sabs = eft__malloc(sizeof(double) * m * n);
    uint8_t *qbuf = eft__malloc(rb * (size_t)n + 3), *q = qbuf + 3;
    size_t ws = eft__qgemm_f32_work_size(m, k, 2);
    uint8_t *work = eft__malloc(ws + 4);
    fill(abuf, m * lda + 1, -2, 2);
    fill(w, n * k, -0.5f, 0.5f);
    fill(bias, n, -1, 1);
    /* Quantise into an aligned scratch (the quantisers write whole structs), then move it to the
     * odd address the kernels must cope with. */
    void *qa = eft__malloc(rb * (size_t)n);
    if (wt == EFT_DTYPE_Q8_0) eft__quantize_q8_0(qa, w, n, k);
    else if (wt == EFT_DTYPE_Q4_0) eft__quantize_q4_0(qa, w, n, k);
    else eft__quantize_q4_1(qa, w, n, k);
    memcpy(q, qa, rb * (size_t)n);
    eft__free(qa);
    for (int64_t j = 0; j < n; j++) eft__dequantize_row(wt, q + j * rb, wd + j * k, k);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0, sa = 0;
            for (int64_t kk = 0; kk < k; kk++) {
                double p = (double)a[i * lda + kk] * wd[j * k + kk];
                s += p;
                sa += fabs(p);
            }
            ref[i * n + j] = s;
            sabs[i * n + j] = sa;
        }
    for (int t = 0; t < g_ntables; t++)
        for (int thr = 0; thr < 2; thr++)
            for (int wb = 0; wb < 2; wb++) {
                for (int64_t i = 0; i < m * ldc + 1; i++) c[i] = GUARD;
                CHECK(eft__qgemm_f32(g_tables[t], thr ? tp : NULL, c, ldc, a, lda, m, wt, q, n, k, wb ? bias : NULL,
                                     work + 4 /* unaligned: the driver aligns its panels itself */));
                int bad = 0;
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < ldc; j++) {
                        float got = c[i * ldc + j];
                        if (j >= n) {
                            if (got != GUARD && bad++ < 3) fprintf(stderr, "  qgemm_f32 wrote padding column %lld\n", (long long)j);
                            continue;
                        }
                        double want = ref[i * n + j] + (wb ? bias[j] : 0.0);
                        /* Float sums in another order than the double reference: 1e-5 of the sum of
                         * magnitudes, about 170 float roundings, far below the one weight's share
                         * (1/K of it) that a decoding mistake would cost, and below the int8 path's
                         * error by orders of magnitude. */
                        double tol = 1e-5 * (sabs[i * n + j] + (wb ? fabs(bias[j]) : 0.0)) + 1e-7;
                        if (!(fabs(got - want) <= tol) && bad++ < 3)
                            fprintf(stderr, "  qgemm_f32 %s [%s, %d thr%s] M=%lld N=%lld K=%lld c[%lld,%lld] = %.9g, want %.9g (tol %.3g)\n",
                                    eft_dtype_name(wt), eft__isa_name(g_tables[t]->isa), thr ? 2 : 1, wb ? ", bias" : "",
                                    (long long)m, (long long)n, (long long)k, (long long)i, (long long)j, got, want, tol);
                    }
                CHECK(c[m * ldc] == GUARD);
                CHECK(bad == 0);
            }
    eft__free(abuf); eft__free(w); eft__free(wd); eft__free(bias); eft__free(c); eft__free(ref); eft__free(sabs);
    eft__free(qbuf); eft__free(work);
}

static void test_qgemm_f32(void) {
    eft__threadpool *tp = NULL;
    eft__error err = {0};
    CHECK(eft__threadpool_create(2, &tp, &err) == EFT_OK);
    static const eft_dtype wtypes[] = {EFT_DTYPE_Q8_0, EFT_DTYPE_Q4_0, EFT_DTYPE_Q4_1};
    /* Fixed edges: one channel, one block, the GEMV/panel boundary, a partial last panel, a row
     * count splitting into uneven micro-tiles, K over one panel slice. */
    static const int64_t fixed[][3] = {{1, 1, 32},   {4, 17, 64},   {5, 17, 64},   {8, 17, 64}, {9, 33, 288},
                                       {70, 15, 96}, {17, 49, 544}, {2, 1, 4096}, {1, 301, 576}, {7, 35, 608},
                                       /* 9-16 rows stream in blocks of weight rows: several blocks */
                                       {13, 100, 4096}, {16, 45, 2048}, {12, 7, 32}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        for (int t = 0; t < 3; t++) check_qgemm_f32(tp, wtypes[t], fixed[i][0], fixed[i][1], fixed[i][2]);
    /* Random shapes: M in 1..17 (decode up to the streaming path's 16 rows, and just past it) or 17..70
     * (prefill), odd N, K in 32..4096, with M N K capped so the double reference stays quick under
     * the sanitizers. */
    for (int it = 0; it < 36; it++) {
        int64_t m = it % 2 ? rnd_i(1, EFT__QSTREAM_MAX_M + 1) : rnd_i(17, 70);
        int64_t k = 32 * (int64_t)rnd_i(1, 128);
        int64_t nmax = 3000000 / (m * k);
        if (nmax < 1) nmax = 1;
        if (nmax > 300) nmax = 300;
        int64_t n = rnd_i(1, (int)nmax) | 1;
        check_qgemm_f32(tp, wtypes[it % 3], m, n, k);
    }
    /* Refusals, never a crash: a type it does not read, K not whole blocks, no panel scratch. */
    float c1 = 0, a1[64] = {0};
    eft__block_q8_0 q1[2] = {{0}};
    CHECK(!eft__qgemm_f32(NULL, NULL, &c1, 1, a1, 64, 1, EFT_DTYPE_Q5_0, q1, 1, 64, NULL, NULL));
    CHECK(!eft__qgemm_f32(NULL, NULL, &c1, 1, a1, 33, 1, EFT_DTYPE_Q8_0, q1, 1, 33, NULL, NULL));
    CHECK(!eft__qgemm_f32(NULL, NULL, &c1, 1, a1, 1, EFT__QSTREAM_MAX_M + 1, EFT_DTYPE_Q8_0, q1, 1, 32, NULL, NULL));
    CHECK(eft__qgemm_f32(NULL, NULL, &c1, 1, a1, 64, 0, EFT_DTYPE_Q8_0, q1, 1, 64, NULL, NULL));
    CHECK(eft__qgemm_f32(NULL, NULL, &c1, 1, a1, 64, 1, EFT_DTYPE_Q8_0, q1, 1, 64, NULL, NULL) && c1 == 0.0f);
    CHECK(eft__qgemm_f32_work_size(EFT__QSTREAM_MAX_M, 4096, 8) == 0);
    eft__threadpool_free(tp);
}

/* Several products in one pool run: each job's outputs are eft__qgemm_f32's to the bit (the same
 * row kernel on the same rows, only the channel split differs), which the test above holds to the
 * reference; odd channel counts that split across jobs and threads, a job with no channels, and
 * guards between and after the jobs' columns. */
static void test_qgemm_f32_gemv_multi(void) {
    eft__threadpool *tp = NULL;
    eft__error err = {0};
    CHECK(eft__threadpool_create(2, &tp, &err) == EFT_OK);
    static const eft_dtype wtypes[] = {EFT_DTYPE_Q8_0, EFT_DTYPE_Q4_0, EFT_DTYPE_Q4_1};
    for (int it = 0; it < 24; it++) {
        int64_t m = 1 + it % EFT__QGEMV_MAX_M, k = 32 * rnd_i(1, 20), lda = k + rnd_i(0, 3);
        int nj = 1 + it % 3;
        int64_t n[3], off[3], ldc = 0;
        for (int t = 0; t < nj; t++) {
            n[t] = it == 5 && t == 1 ? 0 : rnd_i(1, 70);
            off[t] = ldc;
            ldc += n[t] + 1; /* a guard column after each job */
        }
        float *a = eft__malloc(sizeof(float) * m * lda), *c = eft__malloc(sizeof(float) * m * ldc);
        float *want = eft__malloc(sizeof(float) * m * ldc), *bias = eft__malloc(sizeof(float) * 70);
        uint8_t *w[3];
        eft__qgemv_job jobs[3];
        fill(a, m * lda, -2, 2);
        fill(bias, 70, -1, 1);
        for (int t = 0; t < nj; t++) {
            eft_dtype wt = wtypes[(it + t) % 3];
            w[t] = eft__malloc(q_block_bytes(wt) * (size_t)(n[t] * (k / 32)) + 1);
            fill_raw_blocks(w[t], wt, n[t], k);
            jobs[t] = (eft__qgemv_job){c + off[t], ldc, a, lda, wt, w[t], n[t], k, t == 1 ? bias : NULL};
        }
        for (int tb = 0; tb < g_ntables; tb++)
            for (int thr = 0; thr < 2; thr++) {
                for (int64_t i = 0; i < m * ldc; i++) c[i] = want[i] = GUARD;
                for (int t = 0; t < nj; t++)
                    CHECK(eft__qgemm_f32(g_tables[tb], NULL, want + off[t], ldc, a, lda, m, jobs[t].wtype, w[t], n[t], k,
                                         jobs[t].bias, NULL));
                CHECK(eft__qgemm_f32_gemv_multi(g_tables[tb], thr ? tp : NULL, m, jobs, nj));
                int bad = 0;
                for (int64_t i = 0; i < m * ldc; i++)
                    if (memcmp(&c[i], &want[i], sizeof(float)) != 0 && bad++ < 3)
                        fprintf(stderr, "  qgemm_f32_gemv_multi [%s, %d thr] M=%lld K=%lld jobs=%d: c[%lld] = %.9g, want %.9g\n",
                                eft__isa_name(g_tables[tb]->isa), thr ? 2 : 1, (long long)m, (long long)k, nj,
                                (long long)i, c[i], want[i]);
                CHECK(bad == 0);
            }
        for (int t = 0; t < nj; t++) eft__free(w[t]);
        eft__free(a); eft__free(c); eft__free(want); eft__free(bias);
    }
    /* Refusals, computing nothing: too many rows, a type it does not read, K not whole blocks. */
    float c1 = GUARD, a1[64] = {0};
    eft__block_q8_0 q1[2] = {{0}};
    eft__qgemv_job j = {&c1, 1, a1, 64, EFT_DTYPE_Q8_0, q1, 1, 64, NULL};
    CHECK(!eft__qgemm_f32_gemv_multi(NULL, tp, EFT__QGEMV_MAX_M + 1, &j, 1));
    CHECK(!eft__qgemm_f32_gemv_multi(NULL, tp, 0, &j, 1));
    j.wtype = EFT_DTYPE_Q5_0;
    CHECK(!eft__qgemm_f32_gemv_multi(NULL, tp, 1, &j, 1));
    j.wtype = EFT_DTYPE_Q8_0, j.k = 33;
    CHECK(!eft__qgemm_f32_gemv_multi(NULL, tp, 1, &j, 1));
    CHECK(c1 == GUARD);
    CHECK(eft__qgemm_f32_gemv_multi(NULL, tp, 1, NULL, 0));
    eft__threadpool_free(tp);
}

/* ---------------------------------------------------------------------------------------------
 * Attention
 * ------------------------------------------------------------------------------------------- */

static void check_attention(eft__threadpool *tp, eft__attn_params p, bool with_mask) {
    int64_t qw = (int64_t)p.nh * p.hs, kw = (int64_t)p.nkv * p.hs;
    p.ldq = qw + 3;
    p.ldk = kw + 1;
    p.ldv = kw + 2;
    p.ldo = qw + 5;
    p.scale = 1.0f / sqrtf((float)p.hs);
    float *q = eft__malloc(sizeof(float) * p.t * p.ldq), *k = eft__malloc(sizeof(float) * p.tk * p.ldk);
    float *v = eft__malloc(sizeof(float) * p.tk * p.ldv), *o = eft__malloc(sizeof(float) * p.t * p.ldo);
    float *r = eft__malloc(sizeof(float) * p.t * p.ldo);
    uint8_t *mask = eft__malloc((size_t)p.tk);
    fill(q, p.t * p.ldq, -2, 2);
    fill(k, p.tk * p.ldk, -2, 2);
    fill(v, p.tk * p.ldv, -1, 1);
    for (int64_t j = 0; j < p.tk; j++) mask[j] = (rnd_u32() % 5) != 0;
    p.key_mask = with_mask ? mask : NULL;
    for (int64_t i = 0; i < p.t * p.ldo; i++) r[i] = o[i] = GUARD;
    eft__attention_ref(r, q, k, v, &p);
    int nth = eft__threadpool_size(tp);
    float *work = eft__malloc_aligned(sizeof(float) * eft__attention_work_floats(&p, nth));
    /* The same keys and values laid out head by head ([nkv][tk + 2][hs], as the decoder's cache). */
    const int64_t cap = p.tk + 2;
    float *kh = eft__malloc(sizeof(float) * p.nkv * cap * p.hs), *vh = eft__malloc(sizeof(float) * p.nkv * cap * p.hs);
    for (int h = 0; h < p.nkv; h++)
        for (int64_t j = 0; j < p.tk; j++) {
            memcpy(kh + (h * cap + j) * p.hs, k + j * p.ldk + h * p.hs, sizeof(float) * p.hs);
            memcpy(vh + (h * cap + j) * p.hs, v + j * p.ldv + h * p.hs, sizeof(float) * p.hs);
        }
    eft__attn_params ph = p;
    ph.ldk = ph.ldv = p.hs;
    ph.ldkh = ph.ldvh = cap * p.hs;
    for (int t = 0; t < 2 * g_ntables; t++) {
        const bool by_head = t >= g_ntables;
        if (by_head) eft__attention(g_tables[t - g_ntables], tp, o, q, kh, vh, &ph, work);
        else eft__attention(g_tables[t], tp, o, q, k, v, &p, work);
        int bad = 0;
        for (int64_t i = 0; i < p.t * p.ldo; i++) {
            /* Outputs are convex combinations of values in [-1, 1]: 2e-5 absolute covers the
             * float dot products (HS <= 128 terms of size <= 4) and the exp approximation. */
            if (!(fabsf(o[i] - r[i]) <= 2e-5f) && bad++ < 3)
                fprintf(stderr, "  attention [%s%s] t=%lld tk=%lld nh=%d nkv=%d hs=%d causal=%d win=%lld kvlen=%lld "
                        "mask=%d: out[%lld]=%g want %g\n", eft__isa_name(g_tables[t % g_ntables]->isa),
                        by_head ? ", by head" : "", (long long)p.t, (long long)p.tk, p.nh, p.nkv, p.hs, p.causal,
                        (long long)p.window, (long long)p.kv_len, with_mask, (long long)i, o[i], r[i]);
        }
        CHECK(bad == 0);
    }
    eft__free_aligned(work);
    eft__free(kh); eft__free(vh);
    eft__free(q); eft__free(k); eft__free(v); eft__free(o); eft__free(r); eft__free(mask);
}

static void test_attention(void) {
    eft__threadpool *tp = NULL;
    eft__error err = {0};
    CHECK(eft__threadpool_create(2, &tp, &err) == EFT_OK);
    eft__attn_params base = {0};
    /* Causal prefill, MHA, head size 64, lengths around the tile sizes. */
    static const int64_t lens[] = {1, 5, 47, 48, 49, 64, 65, 130};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        eft__attn_params p = base;
        p.t = p.tk = lens[i];
        p.nh = 2, p.nkv = 2, p.hs = 64, p.causal = true;
        check_attention(i % 2 ? tp : NULL, p, false);
    }
    /* Random: GQA, odd head sizes, bidirectional, windows, padding, masks, chunked prefill and
     * decode (t < tk with q_pos0 = tk - t). */
    for (int it = 0; it < 40; it++) {
        eft__attn_params p = base;
        int nkv = rnd_i(1, 3);
        p.nkv = nkv;
        p.nh = nkv * rnd_i(1, 3);
        static const int hss[] = {1, 7, 16, 17, 32, 64, 80, 96, 128};
        p.hs = hss[rnd_i(0, 8)];
        p.tk = rnd_i(1, 200);
        p.t = rnd_i(0, 3) == 0 ? 1 : rnd_i(1, (int)p.tk);
        p.causal = rnd_i(0, 2) != 0;
        p.q_pos0 = p.causal ? p.tk - p.t : rnd_i(0, (int)p.tk - 1);
        p.window = rnd_i(0, 2) == 0 ? rnd_i(1, 40) : 0;
        p.kv_len = rnd_i(0, 2) == 0 ? rnd_i(1, (int)p.tk) : 0;
        check_attention(it % 2 ? tp : NULL, p, rnd_i(0, 2) == 0);
    }
    /* Rows longer than one key tile (256 keys), so the online softmax rescales what it has summed
     * when a later tile raises the max; the encoder's whole tiles (every row sees every key, no
     * mask), odd lengths, head sizes 80 and 96, windows, padding, masks and GQA, each on one
     * thread and on two. */
    static const struct {
        int64_t t, tk;
        int nh, nkv, hs;
        bool causal;
        int64_t window, kv_len;
        bool mask;
        float softcap;
    } big[] = {
        {128, 128, 12, 12, 32, false, 0, 0, false, 0},  {512, 512, 2, 2, 32, false, 0, 0, false, 0},
        {300, 300, 3, 1, 64, true, 0, 0, false, 0},     {517, 517, 2, 2, 32, false, 0, 0, true, 0},
        {333, 600, 4, 2, 80, true, 0, 0, false, 0},     {257, 257, 2, 1, 96, false, 100, 0, true, 0},
        {401, 401, 2, 2, 96, true, 300, 0, false, 0},   {290, 290, 3, 3, 80, false, 0, 200, false, 0},
        {3, 700, 2, 1, 64, true, 0, 0, true, 0},        {450, 450, 2, 1, 16, true, 0, 0, false, 5.0f},
        {100, 520, 2, 2, 7, false, 0, 270, true, 0},
    };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++)
        for (int threads = 0; threads < 2; threads++) {
            eft__attn_params p = base;
            p.t = big[i].t, p.tk = big[i].tk, p.nh = big[i].nh, p.nkv = big[i].nkv, p.hs = big[i].hs;
            p.causal = big[i].causal, p.window = big[i].window, p.kv_len = big[i].kv_len, p.softcap = big[i].softcap;
            p.q_pos0 = p.causal ? p.tk - p.t : 0;
            check_attention(threads ? tp : NULL, p, big[i].mask);
        }
    /* Gemma 2's logit soft-capping: scores (|q.k| scale up to ~15 here) are bent by a cap of 5,
     * so a kernel that skipped or misplaced the cap (before the scale) is far off. */
    for (int it = 0; it < 12; it++) {
        eft__attn_params p = base;
        p.nkv = rnd_i(1, 2);
        p.nh = p.nkv * rnd_i(1, 3);
        p.hs = it % 2 ? 16 : 64;
        p.tk = rnd_i(1, 150);
        p.t = it % 3 == 0 ? 1 : rnd_i(1, (int)p.tk);
        p.causal = true;
        p.q_pos0 = p.tk - p.t;
        p.window = it % 4 == 1 ? rnd_i(1, 40) : 0;
        p.softcap = 5.0f;
        check_attention(it % 2 ? tp : NULL, p, false);
    }
    eft__threadpool_free(tp);
}

/* Decode over f32, f16 and int8 caches, against the reference run on the cache's own
 * (rounded) values, so the tolerance only covers the kernel's arithmetic. */
static void test_attention_decode(void) {
    eft__threadpool *tp = NULL;
    eft__error err = {0};
    CHECK(eft__threadpool_create(2, &tp, &err) == EFT_OK);
    static const eft_dtype types[] = {EFT_DTYPE_F32, EFT_DTYPE_F16, EFT_DTYPE_I8};
    /* Every cache type runs the flash-decoding path (keys split over the workers, per-KV-head
     * kernels for GQA groups of up to 8, merged partials; int8 row scales around the kernels).
     * Caches past 64 keys split, up to 1100 keys to cover many 16-key blocks per worker. */
    for (int it = 0; it < 48; it++) {
        eft__attn_params p = {0};
        p.nkv = rnd_i(1, 3);
        p.nh = p.nkv * rnd_i(1, it % 6 == 0 ? 8 : 4);
        static const int hss[] = {1, 7, 32, 64, 80, 128};
        p.hs = hss[rnd_i(0, 5)];
        p.tk = rnd_i(1, it % 4 == 1 ? 1100 : 300);
        p.t = rnd_i(1, 4) < (int)p.tk ? rnd_i(1, 4) : 1;
        p.causal = true;
        p.q_pos0 = p.tk - p.t;
        p.window = rnd_i(0, 3) == 0 ? rnd_i(1, 64) : 0;
        p.kv_len = rnd_i(0, 3) == 0 ? rnd_i(1, (int)p.tk) : 0;
        p.ldq = p.ldo = (int64_t)p.nh * p.hs + 1;
        int64_t kw = (int64_t)p.nkv * p.hs;
        p.ldk = p.ldv = kw;
        p.scale = 1.0f / sqrtf((float)p.hs);
        p.softcap = it % 4 == 3 ? 5.0f : 0.0f; /* Gemma 2's soft-capping in decode too */
        /* Some cases mask keys (the per-key path; without a mask the kernels take one range). */
        uint8_t *km = eft__malloc((size_t)p.tk);
        for (int64_t j = 0; j < p.tk; j++) km[j] = (rnd_u32() % 5) != 0;
        if (it % 5 == 2) p.key_mask = km;
        eft_dtype dt = types[it % 3];
        float *q = eft__malloc(sizeof(float) * p.t * p.ldq), *kf = eft__malloc(sizeof(float) * p.tk * kw);
        float *vf = eft__malloc(sizeof(float) * p.tk * kw), *o = eft__malloc(sizeof(float) * p.t * p.ldo);
        float *r = eft__malloc(sizeof(float) * p.t * p.ldo);
        /* Every other pair of cases lays the cache out head by head, [nkv][cap][hs] with room past
         * tk, as the decoder does; the rest with the heads side by side in each row. */
        const bool by_head = (it / 3) % 2 == 1;
        const int64_t cap = p.tk + 5;
        void *kc = eft__malloc(sizeof(float) * cap * kw), *vc = eft__malloc(sizeof(float) * cap * kw);
        float *ks = eft__malloc(sizeof(float) * cap * p.nkv), *vs = eft__malloc(sizeof(float) * cap * p.nkv);
        fill(q, p.t * p.ldq, -2, 2);
        fill(kf, p.tk * kw, -2, 2);
        fill(vf, p.tk * kw, -1, 1);
        /* Store into the cache type, then replace kf/vf by what the cache holds. */
        for (int64_t j = 0; j < p.tk; j++)
            for (int h = 0; h < p.nkv; h++) {
                const int64_t off = j * kw + (int64_t)h * p.hs;
                const int64_t doff = by_head ? (h * cap + j) * p.hs : off, soff = by_head ? h * cap + j : j * p.nkv + h;
                for (int pass = 0; pass < 2; pass++) {
                    float *src = pass ? vf : kf;
                    void *dst = pass ? vc : kc;
                    float *sc = pass ? vs : ks;
                    if (dt == EFT_DTYPE_F32) memcpy((float *)dst + doff, src + off, sizeof(float) * p.hs);
                    else if (dt == EFT_DTYPE_F16)
                        for (int e = 0; e < p.hs; e++) {
                            ((uint16_t *)dst)[doff + e] = eft__f32_to_f16(src[off + e]);
                            src[off + e] = eft__f16_to_f32(((uint16_t *)dst)[doff + e]);
                        }
                    else {
                        float d = eft__kv_quantize_i8((int8_t *)dst + doff, src + off, p.hs);
                        sc[soff] = d;
                        for (int e = 0; e < p.hs; e++) src[off + e] = d * ((int8_t *)dst)[doff + e];
                    }
                }
            }
        eft__kv_view kv = {dt, kc, kw, ks, p.nkv, 0, 0}, vv = {dt, vc, kw, vs, p.nkv, 0, 0};
        if (by_head) {
            kv = (eft__kv_view){dt, kc, p.hs, ks, 1, cap * p.hs, cap};
            vv = (eft__kv_view){dt, vc, p.hs, vs, 1, cap * p.hs, cap};
        }
        eft__attention_ref(r, q, kf, vf, &p);
        float *work = eft__malloc(sizeof(float) * eft__attention_decode_work_floats(&p) * 2);
        for (int t = 0; t < g_ntables; t++) {
            for (int64_t i = 0; i < p.t * p.ldo; i++) o[i] = GUARD;
            eft__attention_decode(g_tables[t], it % 2 ? tp : NULL, o, q, &kv, &vv, &p, work);
            int bad = 0;
            for (int64_t i = 0; i < p.t; i++) {
                CHECK(o[i * p.ldo + p.ldo - 1] == GUARD);
                for (int64_t e = 0; e < (int64_t)p.nh * p.hs; e++) {
                    float g = o[i * p.ldo + e], w = r[i * p.ldo + e];
                    if (!(fabsf(g - w) <= 2e-5f) && bad++ < 3)
                        fprintf(stderr, "  decode [%s, %s] t=%lld tk=%lld nh=%d nkv=%d hs=%d: out[%lld,%lld]=%g want %g\n",
                                eft__isa_name(g_tables[t]->isa), eft_dtype_name(dt), (long long)p.t, (long long)p.tk, p.nh,
                                p.nkv, p.hs, (long long)i, (long long)e, g, w);
                }
            }
            CHECK(bad == 0);
        }
        /* The batched form: this sequence twice (the second time with a shorter cache, its own
         * reference), plus a copy, in one run; each output as the reference. */
        {
            eft__attn_params p2 = p;
            p2.tk = p.tk > p.t ? p.t + (p.tk - p.t) / 2 : p.tk;
            p2.q_pos0 = p2.tk - p2.t;
            if (p2.kv_len > p2.tk) p2.kv_len = p2.tk;
            float *r2 = eft__malloc(sizeof(float) * p.t * p.ldo), *ob = eft__malloc(sizeof(float) * 3 * p.t * p.ldo);
            eft__attention_ref(r2, q, kf, vf, &p2);
            eft__attn_dec_item items[3] = {{ob, q, kv, vv, p}, {ob + p.t * p.ldo, q, kv, vv, p2},
                                           {ob + 2 * p.t * p.ldo, q, kv, vv, p}};
            for (int t = 0; t < g_ntables; t++) {
                for (int64_t i = 0; i < 3 * p.t * p.ldo; i++) ob[i] = GUARD;
                eft__attention_decode_batch(g_tables[t], it % 2 ? tp : NULL, items, 3, work,
                                            eft__attention_decode_work_floats(&p));
                int bad = 0;
                for (int b = 0; b < 3; b++)
                    for (int64_t i = 0; i < p.t; i++) {
                        const float *got = items[b].out + i * p.ldo, *want = (b == 1 ? r2 : r) + i * p.ldo;
                        CHECK(got[p.ldo - 1] == GUARD);
                        for (int64_t e = 0; e < (int64_t)p.nh * p.hs; e++)
                            if (!(fabsf(got[e] - want[e]) <= 2e-5f) && bad++ < 3)
                                fprintf(stderr, "  decode batch [%s, %s] item %d tk=%lld: out[%lld,%lld]=%g want %g\n",
                                        eft__isa_name(g_tables[t]->isa), eft_dtype_name(dt), b,
                                        (long long)items[b].p.tk, (long long)i, (long long)e, got[e], want[e]);
                    }
                CHECK(bad == 0);
            }
            eft__free(r2);
            eft__free(ob);
        }
        eft__free(work);
        eft__free(q); eft__free(kf); eft__free(vf); eft__free(o); eft__free(r);
        eft__free(kc); eft__free(vc); eft__free(ks); eft__free(vs); eft__free(km);
    }
    eft__threadpool_free(tp);
}

int main(void) {
    for (int i = 0; i < EFT__ISA_COUNT; i++)
        if (eft__kernels_for((eft__isa)i)) g_tables[g_ntables++] = eft__kernels_for((eft__isa)i);
    RUN(test_dispatch);
    RUN(test_malloc_huge);
    RUN(test_row_kernels);
    RUN(test_sgemm);
    RUN(test_sgemm_no_memory);
    RUN(test_sgemm_pack_typed);
    RUN(test_sgemm_half);
    RUN(test_q8_quantize_and_dot);
    RUN(test_q8_from_int8);
    RUN(test_q4_quantize_and_dot);
    RUN(test_q8_gemm);
    RUN(test_qgemm_f32_exact);
    RUN(test_qgemm_f32);
    RUN(test_qgemm_f32_gemv_multi);
    RUN(test_attention);
    RUN(test_attention_decode);
    return test_summary();
}
