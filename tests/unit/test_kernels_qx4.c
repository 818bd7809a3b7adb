/* test_kernels_qx4.c — the four-row interleaved layout and its int8-activation GEMV (qx4.c,
 * qx4_avx2.c): packing keeps every weight (each row widens to exactly what the GGUF block widens
 * to, padding rows are zero), and every kernel table this CPU runs holds eft__qx4_gemm (1 and 2
 * threads, 1 to 40 activation rows, N not a multiple of four, bias or none, guard columns after
 * every output row) to a double-precision sum over the same int8 activation blocks, and the
 * three-plane f32 product to the f32 product within f32's own rounding. The several-job calls
 * must give the single calls' bits. */
#include <math.h>
#include <stdint.h>

#include "core/quant.h"
#include "core/threadpool.h"
#include "kernels/cpu/kernels.h"
#include "test.h"
#define TEST_RNG_SEED 0x9e3779b97f4a7c15ull
#include "test_rng.h"


static const eft__kernels *g_tables[EFT__ISA_COUNT];
static int g_ntables;

static const eft_dtype k_types[] = {EFT_DTYPE_Q4_0, EFT_DTYPE_Q4_1, EFT_DTYPE_Q8_0};
#define GUARD 12345.0f

static size_t src_row_bytes(eft_dtype t, int64_t k) {
    size_t bb = t == EFT_DTYPE_Q4_0 ? sizeof(eft__block_q4_0) : t == EFT_DTYPE_Q4_1 ? sizeof(eft__block_q4_1)
                                                                                  : sizeof(eft__block_q8_0);
    return bb * (size_t)(k / EFT__QK);
}

/* Random weights through the GGUF quantisers, so scales and quants are what files hold (Q8_0 with
 * -128 in some blocks, which the quantiser itself never writes). */
static uint8_t *make_weights(eft_dtype t, int64_t n, int64_t k) {
    float *w = malloc(sizeof(float) * (size_t)(n * k));
    uint8_t *q = malloc(src_row_bytes(t, k) * (size_t)n);
    for (int64_t i = 0; i < n * k; i++) w[i] = rnd_f(-1, 1) * (i % 7 == 0 ? 3.0f : 1.0f);
    if (t == EFT_DTYPE_Q4_0) eft__quantize_q4_0((eft__block_q4_0 *)q, w, n, k);
    else if (t == EFT_DTYPE_Q4_1) eft__quantize_q4_1((eft__block_q4_1 *)q, w, n, k);
    else {
        eft__quantize_q8_0((eft__block_q8_0 *)q, w, n, k);
        eft__block_q8_0 *b = (eft__block_q8_0 *)q;
        for (int64_t i = 0; i < n * (k / EFT__QK); i += 5) b[i].qs[rnd_i(0, 31)] = -128;
    }
    free(w);
    return q;
}

static void test_pack(void) {
    CHECK(eft__qx4_size(EFT_DTYPE_Q4_0, 5, 64) == 2 * 2 * sizeof(eft__block_q4_0x4));
    CHECK(eft__qx4_size(EFT_DTYPE_Q8_0, 4, 32) == sizeof(eft__block_q8_0x4));
    CHECK(eft__qx4_size(EFT_DTYPE_Q4_1, 4, 48) == 0);
    CHECK(eft__qx4_size(EFT_DTYPE_Q5_0, 4, 64) == 0);
    CHECK(eft__qx4_size(EFT_DTYPE_F32, 4, 64) == 0);
    CHECK(eft__qx4_size(EFT_DTYPE_Q4_1, 0, 64) == 0);
    uint8_t one = 7;
    CHECK(!eft__qx4_pack(&one, EFT_DTYPE_Q4_1, &one, 1, 1, 48) && one == 7);
    for (int it = 0; it < 24; it++) {
        eft_dtype t = k_types[it % 3];
        int64_t n = rnd_i(1, 13), k = EFT__QK * rnd_i(1, 6);
        uint8_t *w = make_weights(t, n, k);
        size_t size = eft__qx4_size(t, n, k), rb = src_row_bytes(t, k);
        uint8_t *x4 = malloc(size + 1);
        x4[size] = 0xa5;
        CHECK(eft__qx4_pack(x4, t, w, rb, n, k));
        CHECK(x4[size] == 0xa5);
        float *ref = malloc(sizeof(float) * (size_t)k), *got = malloc(sizeof(float) * (size_t)k);
        int bad = 0;
        for (int64_t r = 0; r < (n + 3) / 4 * 4; r++) {
            if (r < n) CHECK(eft__dequantize_row(t, w + (size_t)r * rb, ref, k));
            else
                for (int64_t e = 0; e < k; e++) ref[e] = t == EFT_DTYPE_Q4_0 ? -0.0f : 0.0f;
            eft__qx4_dequantize_row(got, t, x4, r, k);
            for (int64_t e = 0; e < k; e++) bad += memcmp(&ref[e], &got[e], sizeof(float)) != 0 && !(ref[e] == 0 && got[e] == 0);
        }
        CHECK_MSG(bad == 0, "type %d n %lld k %lld: %d weights differ", (int)t, (long long)n, (long long)k, bad);
        free(ref);
        free(got);
        free(x4);
        free(w);
    }
}

/* Quant e of an interleaved activation block (kernels.h: vector (e % 16) / 4, lane 0 or 4). */
static int a_quant(const eft__block_q8_x4a *b, int e) { return b->qs[(e & 15) >> 2][(e < 16 ? 0 : 16) + (e & 3)]; }

/* c = a . W^T over the int8 blocks the driver makes from a, in double. */
static void reference(double *c, const eft__block_q8_x4a *qa, int64_t m, eft_dtype t, const uint8_t *w, int64_t n,
                      int64_t k, const float *bias, double *mag) {
    const int64_t nb = k / EFT__QK;
    size_t rb = src_row_bytes(t, k);
    float *row = malloc(sizeof(float) * (size_t)k);
    for (int64_t j = 0; j < n; j++) {
        eft__dequantize_row(t, w + (size_t)j * rb, row, k);
        for (int64_t i = 0; i < m; i++) {
            double s = bias ? bias[j] : 0, s_abs = 0;
            for (int64_t e = 0; e < k; e++) {
                const eft__block_q8_x4a *b = &qa[i * nb + e / EFT__QK];
                double p = (double)row[e] * (double)b->d * (double)a_quant(b, e % EFT__QK);
                s += p;
                s_abs += fabs(p);
            }
            c[i * n + j] = s;
            mag[i * n + j] = s_abs;
        }
    }
    free(row);
}

static void check_shape(eft__threadpool *tp, eft_dtype t, int64_t m, int64_t n, int64_t k) {
    const int64_t nb = k / EFT__QK, ldc = n + 3;
    uint8_t *w = make_weights(t, n, k);
    uint8_t *x4 = malloc(eft__qx4_size(t, n, k));
    CHECK(eft__qx4_pack(x4, t, w, src_row_bytes(t, k), n, k));
    float *a = malloc(sizeof(float) * (size_t)(m * k)), *bias = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < m * k; i++) a[i] = rnd_f(-2, 2);
    for (int64_t j = 0; j < n; j++) bias[j] = rnd_f(-1, 1);
    eft__block_q8_x4a *qa = malloc(sizeof(eft__block_q8_x4a) * (size_t)(m * nb));
    const eft__kernels *scalar = eft__kernels_for(EFT__ISA_SCALAR);
    for (int64_t i = 0; i < m; i++) scalar->quantize_row_q8_x4a(qa + i * nb, a + i * k, k);
    double *ref = malloc(sizeof(double) * (size_t)(m * n)), *mag = malloc(sizeof(double) * (size_t)(m * n));
    float *c = malloc(sizeof(float) * (size_t)(m * ldc));
    void *work = malloc(eft__qx4_work_size(m, k));
    for (int withb = 0; withb < 2; withb++) {
        reference(ref, qa, m, t, w, n, k, withb ? bias : NULL, mag);
        for (int ti = 0; ti < g_ntables; ti++)
            for (int threads = 1; threads <= 2; threads++) {
                for (int64_t i = 0; i < m * ldc; i++) c[i] = GUARD;
                CHECK(eft__qx4_gemm(g_tables[ti], threads == 2 ? tp : NULL, c, ldc, a, k, m, t, x4, n, k,
                                    withb ? bias : NULL, work));
                int bad = 0, guards = 0;
                double worst = 0;
                for (int64_t i = 0; i < m; i++) {
                    for (int64_t j = 0; j < n; j++) {
                        /* f32 sums of exact block products: a few ulps of the magnitude. */
                        double err = fabs((double)c[i * ldc + j] - ref[i * n + j]), tol = 1e-5 * mag[i * n + j] + 1e-6;
                        if (!(err <= tol)) bad++;
                        if (err / (mag[i * n + j] + 1e-30) > worst) worst = err / (mag[i * n + j] + 1e-30);
                    }
                    for (int64_t j = n; j < ldc; j++) guards += c[i * ldc + j] != GUARD;
                }
                CHECK_MSG(bad == 0 && guards == 0, "%s type %d m %lld n %lld k %lld bias %d threads %d: %d wrong "
                          "(worst relative %.3g), %d guards written", eft__isa_name(g_tables[ti]->isa), (int)t,
                          (long long)m, (long long)n, (long long)k, withb, threads, bad, worst, guards);
            }
    }
    free(work);
    free(c);
    free(ref);
    free(mag);
    free(qa);
    free(a);
    free(bias);
    free(x4);
    free(w);
}

static void test_gemm(void) {
    eft__threadpool *tp = NULL;
    CHECK(eft__threadpool_create(2, &tp, NULL) == EFT_OK);
    /* 1-2 rows (decode), odd counts (a single row after the pairs), more than one 16-row chunk,
     * a big M whose activations the workers quantise, N = 1..3 past a multiple of four. */
    static const int64_t fixed[][3] = {{1, 1, 32},   {1, 4, 64},    {1, 7, 576},  {2, 5, 96},   {3, 9, 1536},
                                       {5, 64, 128}, {8, 130, 256}, {17, 6, 64},  {33, 13, 32}, {40, 11, 576},
                                       {600, 5, 64}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        for (int t = 0; t < 3; t++) check_shape(tp, k_types[t], fixed[i][0], fixed[i][1], fixed[i][2]);
    for (int it = 0; it < 18; it++) check_shape(tp, k_types[it % 3], rnd_i(1, 20), rnd_i(1, 40), EFT__QK * rnd_i(1, 24));
    eft__threadpool_free(tp);
}

/* q, k and v in one run give the bits of three separate calls; jobs with n = 0 are skipped. */
static void test_multi(void) {
    eft__threadpool *tp = NULL;
    CHECK(eft__threadpool_create(2, &tp, NULL) == EFT_OK);
    const int64_t k = 192, ns[4] = {45, 0, 15, 15};
    for (int t = 0; t < 3; t++)
        for (int64_t m = 1; m <= 3; m += 2) {
            float *a = malloc(sizeof(float) * (size_t)(m * k));
            for (int64_t i = 0; i < m * k; i++) a[i] = rnd_f(-1, 1);
            uint8_t *w[4], *x4[4];
            float *c1[4], *c2[4];
            eft__qx4_job jobs[4];
            for (int j = 0; j < 4; j++) {
                int64_t n = ns[j] > 0 ? ns[j] : 1;
                w[j] = make_weights(k_types[t], n, k);
                x4[j] = malloc(eft__qx4_size(k_types[t], n, k));
                eft__qx4_pack(x4[j], k_types[t], w[j], src_row_bytes(k_types[t], k), n, k);
                c1[j] = calloc((size_t)(m * n), sizeof(float));
                c2[j] = calloc((size_t)(m * n), sizeof(float));
                jobs[j] = (eft__qx4_job){c2[j], ns[j], k_types[t], x4[j], ns[j], NULL};
            }
            void *work = malloc(eft__qx4_work_size(m, k));
            for (int j = 0; j < 4; j++)
                if (ns[j] > 0) CHECK(eft__qx4_gemm(NULL, tp, c1[j], ns[j], a, k, m, k_types[t], x4[j], ns[j], k, NULL, work));
            CHECK(eft__qx4_gemm_multi(NULL, tp, a, k, m, k, jobs, 4, work));
            for (int j = 0; j < 4; j++) {
                CHECK(memcmp(c1[j], c2[j], sizeof(float) * (size_t)(m * ns[j])) == 0);
                free(w[j]);
                free(x4[j]);
                free(c1[j]);
                free(c2[j]);
            }
            free(work);
            free(a);
        }
    eft__threadpool_free(tp);
}

/* Three int8 planes: the f32 product (dequantised weights times the f32 activations, in double)
 * to about f32's own rounding, for every table, 1 and 2 threads, with bias, on rows of very
 * different magnitudes (a plane's scale follows its block's largest element). */
static void check_f32(eft__threadpool *tp, eft_dtype t, int64_t m, int64_t n, int64_t k) {
    const int64_t ldc = n + 2;
    uint8_t *w = make_weights(t, n, k);
    size_t rb = src_row_bytes(t, k);
    uint8_t *x4 = malloc(eft__qx4_size(t, n, k));
    CHECK(eft__qx4_pack(x4, t, w, rb, n, k));
    float *a = malloc(sizeof(float) * (size_t)(m * k)), *bias = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < m * k; i++) a[i] = rnd_f(-1, 1) * (i % 11 == 0 ? 50.0f : i % 5 == 0 ? 1e-3f : 1.0f);
    for (int64_t j = 0; j < n; j++) bias[j] = rnd_f(-1, 1);
    double *ref = malloc(sizeof(double) * (size_t)(m * n)), *mag = malloc(sizeof(double) * (size_t)(m * n));
    float *row = malloc(sizeof(float) * (size_t)k), *c = malloc(sizeof(float) * (size_t)(m * ldc));
    for (int64_t j = 0; j < n; j++) {
        eft__dequantize_row(t, w + (size_t)j * rb, row, k);
        for (int64_t i = 0; i < m; i++) {
            double sum = bias[j], sa = fabs(bias[j]);
            for (int64_t e = 0; e < k; e++) sum += (double)row[e] * a[i * k + e], sa += fabs((double)row[e] * a[i * k + e]);
            ref[i * n + j] = sum, mag[i * n + j] = sa;
        }
    }
    void *work = malloc(eft__qx4_f32_work_size(m, k));
    for (int ti = 0; ti < g_ntables; ti++)
        for (int threads = 1; threads <= 2; threads++) {
            for (int64_t i = 0; i < m * ldc; i++) c[i] = GUARD;
            CHECK(eft__qx4_gemm_f32(g_tables[ti], threads == 2 ? tp : NULL, c, ldc, a, k, m, t, x4, n, k, bias, work));
            int bad = 0, guards = 0;
            double worst = 0;
            for (int64_t i = 0; i < m; i++) {
                for (int64_t j = 0; j < n; j++) {
                    /* f32 summing k products rounds at about 2^-24 of the magnitude per step. */
                    double err = fabs((double)c[i * ldc + j] - ref[i * n + j]) / mag[i * n + j];
                    if (!(err <= 2e-6)) bad++;
                    if (err > worst) worst = err;
                }
                for (int64_t j = n; j < ldc; j++) guards += c[i * ldc + j] != GUARD;
            }
            CHECK_MSG(bad == 0 && guards == 0, "%s type %d m %lld n %lld k %lld threads %d: %d wrong (worst %.3g of "
                      "the magnitude), %d guards written", eft__isa_name(g_tables[ti]->isa), (int)t, (long long)m,
                      (long long)n, (long long)k, threads, bad, worst, guards);
        }
    free(work);
    free(c);
    free(row);
    free(ref);
    free(mag);
    free(a);
    free(bias);
    free(x4);
    free(w);
}

static void test_f32_planes(void) {
    eft__threadpool *tp = NULL;
    CHECK(eft__threadpool_create(2, &tp, NULL) == EFT_OK);
    /* k over 1024 makes the caller quantise even many rows; 600 rows x 64 the workers. */
    static const int64_t fixed[][3] = {{1, 1, 32}, {1, 7, 576}, {1, 64, 1536}, {2, 5, 96}, {3, 9, 2048}, {600, 5, 64}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        for (int t = 0; t < 3; t++) check_f32(tp, k_types[t], fixed[i][0], fixed[i][1], fixed[i][2]);
    for (int it = 0; it < 9; it++) check_f32(tp, k_types[it % 3], rnd_i(1, 4), rnd_i(1, 40), EFT__QK * rnd_i(1, 40));
    /* Several jobs in one run give the single calls' bits. */
    const int64_t k = 576, ns[2] = {21, 8};
    float a[576], c1[29], c2[29];
    for (int e = 0; e < k; e++) a[e] = rnd_f(-1, 1);
    uint8_t *w[2], *x4[2];
    eft__qx4_job jobs[2];
    void *work = malloc(eft__qx4_f32_work_size(1, k));
    for (int j = 0; j < 2; j++) {
        w[j] = make_weights(EFT_DTYPE_Q4_1, ns[j], k);
        x4[j] = malloc(eft__qx4_size(EFT_DTYPE_Q4_1, ns[j], k));
        eft__qx4_pack(x4[j], EFT_DTYPE_Q4_1, w[j], src_row_bytes(EFT_DTYPE_Q4_1, k), ns[j], k);
        CHECK(eft__qx4_gemm_f32(NULL, tp, c1 + (j ? ns[0] : 0), ns[j], a, k, 1, EFT_DTYPE_Q4_1, x4[j], ns[j], k, NULL, work));
        jobs[j] = (eft__qx4_job){c2 + (j ? ns[0] : 0), ns[j], EFT_DTYPE_Q4_1, x4[j], ns[j], NULL};
    }
    CHECK(eft__qx4_gemm_f32_multi(NULL, tp, a, k, 1, k, jobs, 2, work));
    CHECK(memcmp(c1, c2, sizeof c1) == 0);
    for (int j = 0; j < 2; j++) free(w[j]), free(x4[j]);
    free(work);
    eft__threadpool_free(tp);
}

/* The int8 activations stay close to the f32 product (what --act-dtype int8 trades). */
static void test_close_to_f32(void) {
    const int64_t n = 64, k = 576;
    for (int t = 0; t < 3; t++) {
        uint8_t *w = make_weights(k_types[t], n, k);
        uint8_t *x4 = malloc(eft__qx4_size(k_types[t], n, k));
        eft__qx4_pack(x4, k_types[t], w, src_row_bytes(k_types[t], k), n, k);
        float a[576], c[64], row[576];
        void *work = malloc(eft__qx4_work_size(1, k));
        for (int e = 0; e < k; e++) a[e] = rnd_f(-1, 1);
        CHECK(eft__qx4_gemm(NULL, NULL, c, n, a, k, 1, k_types[t], x4, n, k, NULL, work));
        double num = 0, den = 0;
        for (int64_t j = 0; j < n; j++) {
            eft__dequantize_row(k_types[t], w + (size_t)j * src_row_bytes(k_types[t], k), row, k);
            double s = 0;
            for (int e = 0; e < k; e++) s += (double)row[e] * a[e];
            num += (c[j] - s) * (c[j] - s);
            den += s * s;
        }
        CHECK_MSG(sqrt(num / den) < 0.01, "type %d: relative error %.4f against the f32 product", (int)k_types[t],
                  sqrt(num / den));
        free(work);
        free(x4);
        free(w);
    }
}

/* Every table quantises to the same bits, with the quants where the kernels read them and the
 * int8 quantiser's integers. */
static void test_quantise(void) {
    const int64_t k = 96, nb = k / EFT__QK;
    float x[96];
    for (int e = 0; e < k; e++) x[e] = rnd_f(-3, 3) * (e % 9 == 0 ? 40.0f : 1.0f);
    for (int e = 64; e < 96; e++) x[e] = 0; /* an all-zero block: d = 0 */
    eft__block_q8_x4a q0[3], q1[3];
    eft__block_q8_a plain[3];
    const eft__kernels *sc = eft__kernels_for(EFT__ISA_SCALAR);
    sc->quantize_row_q8_x4a(q0, x, k);
    sc->quantize_row_q8_a(plain, x, k);
    for (int64_t b = 0; b < nb; b++) {
        int bad = 0;
        for (int e = 0; e < EFT__QK; e++) {
            bad += a_quant(&q0[b], e) != plain[b].qs[e];
            /* every copy of a four-byte group is the same */
            for (int l = 1; l < 4; l++) bad += q0[b].qs[(e & 15) >> 2][4 * l + (e < 16 ? 0 : 16) + (e & 3)] != a_quant(&q0[b], e);
        }
        CHECK_MSG(bad == 0 && q0[b].d == plain[b].d && q0[b].ds == plain[b].d * (float)plain[b].sum, "block %lld", (long long)b);
    }
    for (int ti = 0; ti < g_ntables; ti++) {
        g_tables[ti]->quantize_row_q8_x4a(q1, x, k);
        CHECK(memcmp(q0, q1, sizeof q0) == 0);
    }
}

/* Three planes: plane 1 is the int8 quantiser's, the planes rebuild x to within d 2^-16 (d 2^-15
 * where a level is held at 127), plane 1's d and ds are as kernels.h says, and every table writes
 * the same bits. Blocks of random values, of very different sizes, of ties (x / d = n + 1/2 holds
 * the second level at 127), and of zeros. */
static void test_quantise_x3(void) {
    enum { NB = 8, K = NB * EFT__QK, LD = NB + 1 };
    float x[K];
    for (int e = 0; e < K; e++) x[e] = rnd_f(-3, 3) * (e % 9 == 0 ? 40.0f : 1.0f);
    for (int e = 32; e < 64; e++) x[e] *= 1e-6f;
    for (int e = 64; e < 96; e++) x[e] = (float)rnd_i(-126, 126) + 0.5f; /* d = 1: ties */
    x[64] = 127.0f;
    for (int e = 96; e < 128; e++) x[e] = 0;
    for (int e = 128; e < 160; e++) x[e] = rnd_f(-1, 1) * 3e5f;
    const eft__kernels *sc = eft__kernels_for(EFT__ISA_SCALAR);
    eft__block_q8_x4a q0[3 * LD], q1[3 * LD], plain[NB];
    memset(q0, 0x5a, sizeof q0);
    sc->quantize_row_q8_x4a_x3(q0, x, K, LD);
    sc->quantize_row_q8_x4a(plain, x, K);
    int held = 0;
    for (int b = 0; b < NB; b++) {
        const float d = plain[b].d;
        int64_t sum = 0;
        int bad = 0;
        for (int e = 0; e < EFT__QK; e++) {
            int l1 = a_quant(&q0[b], e), l2 = a_quant(&q0[LD + b], e), l3 = a_quant(&q0[2 * LD + b], e);
            bad += l1 != a_quant(&plain[b], e) || l2 < -127 || l3 < -127;
            held += l2 == 127 || l2 == -127 || l3 == 127 || l3 == -127;
            sum += (int64_t)l1 * 32768 + l2 * 128 + l3;
            double back = (double)d * (l1 + l2 / 256.0 + l3 / 32768.0), err = fabs(back - x[b * EFT__QK + e]);
            bool near_tie = fabs(fabs((double)x[b * EFT__QK + e] / d - floor((double)x[b * EFT__QK + e] / d)) - 0.5) < 1.0 / 256;
            if (!(err <= d * (near_tie ? 1.0 / 32768 : 1.0 / 65536) * (1 + 1e-6) + 1e-30)) bad++;
        }
        CHECK_MSG(bad == 0, "block %d: %d levels wrong or too far from x", b, bad);
        CHECK(q0[b].d == d * (1.0f / 32768) && q0[b].ds == q0[b].d * (float)sum);
        CHECK(q0[LD + b].d == 0 && q0[LD + b].ds == 0 && q0[2 * LD + b].d == 0 && q0[2 * LD + b].ds == 0);
    }
    CHECK_MSG(held > 0, "no tie held a level at 127");
    /* The blocks between the planes (LD > NB) are not written. */
    for (int p = 0; p < 3; p++) {
        eft__block_q8_x4a pad;
        memset(&pad, 0x5a, sizeof pad);
        CHECK(memcmp(&q0[p * LD + NB], &pad, sizeof pad) == 0);
    }
    for (int ti = 0; ti < g_ntables; ti++) {
        memset(q1, 0x5a, sizeof q1);
        g_tables[ti]->quantize_row_q8_x4a_x3(q1, x, K, LD);
        CHECK_MSG(memcmp(q0, q1, sizeof q0) == 0, "%s", eft__isa_name(g_tables[ti]->isa));
    }
}

static void test_refusals(void) {
    float a[64] = {0}, c = 1.0f;
    uint8_t w[sizeof(eft__block_q8_0x4)] = {0};
    eft__block_q8_x4a work[2];
    CHECK(!eft__qx4_gemm(NULL, NULL, &c, 1, a, 64, 1, EFT_DTYPE_Q5_0, w, 1, 64, NULL, work));
    CHECK(!eft__qx4_gemm(NULL, NULL, &c, 1, a, 64, 1, EFT_DTYPE_Q8_0, w, 1, 48, NULL, work));
    CHECK(!eft__qx4_gemm(NULL, NULL, &c, 1, a, 64, 1, EFT_DTYPE_Q8_0, w, 1, 32, NULL, NULL));
    CHECK(c == 1.0f);
    CHECK(eft__qx4_gemm(NULL, NULL, &c, 1, a, 64, 0, EFT_DTYPE_Q8_0, w, 1, 32, NULL, NULL));
    CHECK(eft__qx4_gemm(NULL, NULL, &c, 1, a, 64, 1, EFT_DTYPE_Q8_0, w, 1, 32, NULL, work) && c == 0.0f);
    CHECK(eft__qx4_work_size(3, 64) == 6 * sizeof(eft__block_q8_x4a));
}

int main(void) {
    for (int i = 0; i < EFT__ISA_COUNT; i++)
        if (eft__kernels_for((eft__isa)i)) g_tables[g_ntables++] = eft__kernels_for((eft__isa)i);
    RUN(test_pack);
    RUN(test_quantise);
    RUN(test_quantise_x3);
    RUN(test_gemm);
    RUN(test_multi);
    RUN(test_f32_planes);
    RUN(test_close_to_f32);
    RUN(test_refusals);
    return test_summary();
}
