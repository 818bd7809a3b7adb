/* test_kernels_gq.c — the group-quantised weight family (core/quant.h, kernels/cpu/gqgemm*.c):
 * block sizes agree with the dtype table; the G = 32 members are GGUF's Q4_0/Q4_1/Q8_0 bit for
 * bit; the quantisers' round-trip error stays within half a step; and every kernel table this CPU
 * runs holds eft__gqgemm_f32 (GEMV and panel paths, 1 and 2 threads, odd N, bias or none) to the
 * scalar reference eft__gqgemm_ref, with guard columns after every output row. */
#include <math.h>
#include <stdint.h>

#include "core/quant.h"
#include "core/threadpool.h"
#include "kernels/cpu/kernels.h"
#include "test.h"
#define TEST_RNG_SEED 0x2545f4914f6cdd1dull
#include "test_rng.h"


static const eft_dtype k_family[] = {EFT_DTYPE_Q4_0,    EFT_DTYPE_I4_G64, EFT_DTYPE_I4_G128,
                                     EFT_DTYPE_Q4_1,    EFT_DTYPE_U4_G64, EFT_DTYPE_U4_G128,
                                     EFT_DTYPE_Q8_0,    EFT_DTYPE_I8_G64, EFT_DTYPE_I8_G128};
#define NFAM (int)(sizeof k_family / sizeof k_family[0])

#define GUARD 12345.0f

static void test_layouts(void) {
    static const struct {
        eft_dtype t;
        size_t size;
        int group;
    } k[] = {{EFT_DTYPE_I4_G64, sizeof(eft__block_i4_g64), 64},   {EFT_DTYPE_I4_G128, sizeof(eft__block_i4_g128), 128},
             {EFT_DTYPE_U4_G64, sizeof(eft__block_u4_g64), 64},   {EFT_DTYPE_U4_G128, sizeof(eft__block_u4_g128), 128},
             {EFT_DTYPE_I8_G64, sizeof(eft__block_i8_g64), 64},   {EFT_DTYPE_I8_G128, sizeof(eft__block_i8_g128), 128},
             {EFT_DTYPE_Q4_0, sizeof(eft__block_q4_0), 32},       {EFT_DTYPE_Q4_1, sizeof(eft__block_q4_1), 32},
             {EFT_DTYPE_Q8_0, sizeof(eft__block_q8_0), 32}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        const eft__dtype_traits *tr = eft__dtype_traits_of(k[i].t);
        eft__gq_layout l;
        CHECK(tr != NULL);
        CHECK(eft__gq_layout_of(k[i].t, &l));
        CHECK_EQ_INT(tr->block_bytes, k[i].size);
        CHECK_EQ_INT(tr->block_elems, k[i].group);
        CHECK_EQ_INT(l.block_bytes, k[i].size);
        CHECK_EQ_INT(l.group, k[i].group);
        CHECK(eft__gq_dtype(l.kind, l.group) == k[i].t);
    }
    CHECK(!eft__gq_layout_of(EFT_DTYPE_Q4_K, NULL));
    CHECK(!eft__gq_layout_of(EFT_DTYPE_F32, NULL));
    CHECK(eft__gq_dtype(EFT__GQ_I4, 16) == EFT_DTYPE_COUNT);
    CHECK_EQ_STR(eft_dtype_name(EFT_DTYPE_U4_G128), "U4_G128");
    /* Groups shrink to divide K; F32 below 32; other types pass through. */
    CHECK(eft__gq_fit(EFT_DTYPE_U4_G128, 576) == EFT_DTYPE_U4_G64);
    CHECK(eft__gq_fit(EFT_DTYPE_I4_G128, 1536) == EFT_DTYPE_I4_G128);
    CHECK(eft__gq_fit(EFT_DTYPE_I4_G64, 96) == EFT_DTYPE_Q4_0);
    CHECK(eft__gq_fit(EFT_DTYPE_I8_CH, 384) == EFT_DTYPE_I8_G128);
    CHECK(eft__gq_fit(EFT_DTYPE_I8_CH, 320) == EFT_DTYPE_I8_G64);
    CHECK(eft__gq_fit(EFT_DTYPE_Q8_0, 48) == EFT_DTYPE_F32);
    CHECK(eft__gq_fit(EFT_DTYPE_F16, 48) == EFT_DTYPE_F16);
}

/* The G = 32 members are GGUF's blocks: the family decoder reads Q4_0/Q4_1/Q8_0 as their own
 * decoders do, and a G = 64 or 128 block holds the same nibbles as two or four GGUF blocks sharing
 * one header. */
static void test_gguf_members(void) {
    float x1[128], x2[128];
    /* An I4_G64 block whose two halves share a scale decodes as two Q4_0 blocks with that scale. */
    eft__block_i4_g64 g64;
    eft__block_q4_0 two[2];
    g64.d = eft__f32_to_f16(0.125f);
    for (int i = 0; i < 32; i++) g64.qs[i] = (uint8_t)rnd_u32();
    for (int h = 0; h < 2; h++) {
        two[h].d = g64.d;
        memcpy(two[h].qs, g64.qs + 16 * h, 16);
    }
    CHECK(eft__dequantize_row(EFT_DTYPE_I4_G64, &g64, x1, 64));
    CHECK(eft__dequantize_row(EFT_DTYPE_Q4_0, two, x2, 64));
    CHECK(memcmp(x1, x2, 64 * sizeof(float)) == 0);

    eft__block_u4_g128 u128;
    eft__block_q4_1 four[4];
    u128.d = eft__f32_to_f16(0.03f);
    u128.m = eft__f32_to_f16(-0.2f);
    for (int i = 0; i < 64; i++) u128.qs[i] = (uint8_t)rnd_u32();
    for (int h = 0; h < 4; h++) {
        four[h].d = u128.d;
        four[h].m = u128.m;
        memcpy(four[h].qs, u128.qs + 16 * h, 16);
    }
    CHECK(eft__dequantize_row(EFT_DTYPE_U4_G128, &u128, x1, 128));
    CHECK(eft__dequantize_row(EFT_DTYPE_Q4_1, four, x2, 128));
    CHECK(memcmp(x1, x2, 128 * sizeof(float)) == 0);
}

/* The plain rules the int4 search starts from, for comparison: ggml's Q4_0 rule (symmetric) and
 * min/max (with a minimum), codes rounded for the f16 scale as stored. Returns the squared error. */
static double plain_sse(const float *x, int G, eft__gq_kind kind) {
    double e = 0;
    if (kind == EFT__GQ_I4) {
        float amax = 0, mx = 0;
        for (int i = 0; i < G; i++)
            if (fabsf(x[i]) > amax) amax = fabsf(x[i]), mx = x[i];
        float d = eft__f16_to_f32(eft__f32_to_f16(mx / -8.0f)), id = d != 0 ? 1 / d : 0;
        for (int i = 0; i < G; i++) {
            int q = (int)nearbyintf(x[i] * id) + 8;
            q = q < 0 ? 0 : q > 15 ? 15 : q;
            e += ((double)x[i] - d * (q - 8)) * ((double)x[i] - d * (q - 8));
        }
    } else {
        float lo = x[0], hi = x[0];
        for (int i = 1; i < G; i++) lo = x[i] < lo ? x[i] : lo, hi = x[i] > hi ? x[i] : hi;
        float d = eft__f16_to_f32(eft__f32_to_f16((hi - lo) / 15)), m = eft__f16_to_f32(eft__f32_to_f16(lo));
        float id = d != 0 ? 1 / d : 0;
        for (int i = 0; i < G; i++) {
            int q = (int)nearbyintf((x[i] - m) * id);
            q = q < 0 ? 0 : q > 15 ? 15 : q;
            e += ((double)x[i] - (d * q + m)) * ((double)x[i] - (d * q + m));
        }
    }
    return e;
}

/* Round trip: every weight is at the nearest level of its group's stored scale (and minimum)
 * unless it lies beyond the end levels; int8 is within half a step of max|x| / 127; the int4
 * search's squared error is no more than the plain rule's. */
static void test_quantize_roundtrip(void) {
    enum { N = 5, K = 384 };
    float *w = malloc(sizeof(float) * N * K), *x = malloc(sizeof(float) * N * K);
    uint8_t *q = malloc(N * K * 2);
    for (int i = 0; i < N * K; i++) w[i] = rnd_f(-0.5f, 1.5f) * (i % 7 == 0 ? 3.0f : 1.0f);
    for (int f = 0; f < NFAM; f++) {
        eft__gq_layout l;
        eft__gq_layout_of(k_family[f], &l);
        CHECK(eft__quantize_gq(k_family[f], q, w, N, K));
        CHECK(eft__dequantize_row(k_family[f], q, x, N * K));
        double sse = 0, sse_plain = 0;
        int bad = 0;
        for (int g = 0; g < N * K / l.group; g++) {
            const float *wg = w + g * l.group, *xg = x + g * l.group;
            const uint8_t *blk = q + (size_t)g * l.block_bytes;
            eft__half hd, hm = 0;
            memcpy(&hd, blk, 2);
            if (l.kind == EFT__GQ_U4) memcpy(&hm, blk + 2, 2);
            double d = fabs(eft__f16_to_f32(hd)), m = eft__f16_to_f32(hm);
            double lo_level = l.kind == EFT__GQ_I4 ? -8 * d : l.kind == EFT__GQ_U4 ? m : -127 * d;
            double hi_level = l.kind == EFT__GQ_I4 ? 7 * d : l.kind == EFT__GQ_U4 ? m + 15 * d : 127 * d;
            if (l.kind == EFT__GQ_I4 && eft__f16_to_f32(hd) < 0) lo_level = -7 * d, hi_level = 8 * d;
            float amax = 0;
            for (int i = 0; i < l.group; i++) amax = fabsf(wg[i]) > amax ? fabsf(wg[i]) : amax;
            for (int i = 0; i < l.group; i++) {
                double e = fabs((double)xg[i] - wg[i]);
                sse += e * e;
                bool outside = wg[i] < lo_level || wg[i] > hi_level;
                if (!outside && e > d * 0.5 * (1 + 1e-3) + 1e-6 && bad++ < 3)
                    CHECK_MSG(0, "%s group %d elem %d: %g -> %g (step %g)", eft_dtype_name(k_family[f]), g, i, wg[i], xg[i], d);
                if (l.kind == EFT__GQ_I8 && e > amax / 127.0 * 0.5 * 1.01)
                    CHECK_MSG(bad++ > 3, "%s group %d elem %d: %g -> %g", eft_dtype_name(k_family[f]), g, i, wg[i], xg[i]);
            }
            if (l.kind != EFT__GQ_I8) sse_plain += plain_sse(wg, l.group, l.kind);
        }
        if (l.kind != EFT__GQ_I8) {
            printf("     %-8s squared error %.4g, plain rule %.4g (%.2fx)\n", eft_dtype_name(k_family[f]), sse, sse_plain,
                   sse / sse_plain);
            CHECK(sse <= sse_plain * 1.001);
        }
    }
    CHECK(!eft__quantize_gq(EFT_DTYPE_I4_G128, q, w, N, 64));
    CHECK(!eft__quantize_gq(EFT_DTYPE_Q5_0, q, w, N, K));

    /* Per-channel int8: one scale for the whole row, repeated in every block. */
    CHECK(eft__quantize_gq_i8_channel(EFT_DTYPE_I8_G128, q, w, N, K));
    CHECK(!eft__quantize_gq_i8_channel(EFT_DTYPE_I4_G128, q, w, N, K));
    for (int r = 0; r < N; r++) {
        float amax = 0;
        for (int i = 0; i < K; i++) amax = fabsf(w[r * K + i]) > amax ? fabsf(w[r * K + i]) : amax;
        for (int b = 0; b < K / 128; b++) {
            eft__half d;
            memcpy(&d, q + (size_t)(r * K / 128 + b) * sizeof(eft__block_i8_g128), 2);
            CHECK(d == eft__f32_to_f16(amax / 127.0f));
        }
    }
    CHECK(eft__dequantize_row(EFT_DTYPE_I8_G128, q, x, N * K));
    for (int i = 0; i < N * K; i++) CHECK_NEAR(x[i], w[i], 3.0 * 0.5 / 127 * 1.01 + 1e-2);
    free(w), free(x), free(q);
}

static const eft__kernels *g_tables[EFT__ISA_COUNT];
static int g_ntables;

/* eft__gqgemm_f32 against the reference for one type and shape, every table, 1 and 2 threads,
 * with and without bias. Tolerance: 1e-5 of sum |a w| (float sums in another order than the
 * reference's double ones). */
static void check_shape(eft__threadpool *tp, eft_dtype wt, int64_t m, int64_t n, int64_t k) {
    const int64_t lda = k + 3, ldc = n + 2;
    float *a = malloc(sizeof(float) * (size_t)(m * lda)), *bias = malloc(sizeof(float) * (size_t)n);
    float *w = malloc(sizeof(float) * (size_t)(n * k)), *wd = malloc(sizeof(float) * (size_t)(n * k));
    float *c = malloc(sizeof(float) * (size_t)(m * ldc)), *want = malloc(sizeof(float) * (size_t)(m * ldc));
    uint64_t qbytes = 0;
    eft__dtype_nbytes(wt, (uint64_t)(n * k), &qbytes);
    uint8_t *q = malloc(qbytes);
    size_t ws = eft__gqgemm_f32_work_size(m, k, 2);
    uint8_t *work = ws ? malloc(ws + 1) : NULL;
    for (int64_t i = 0; i < m * lda; i++) a[i] = rnd_f(-1, 1);
    for (int64_t i = 0; i < n * k; i++) w[i] = rnd_f(-0.3f, 0.5f);
    for (int64_t i = 0; i < n; i++) bias[i] = rnd_f(-1, 1);
    CHECK(eft__quantize_gq(wt, q, w, n, k));
    CHECK(eft__dequantize_row(wt, q, wd, n * k));
    for (int wb = 0; wb < 2; wb++) {
        CHECK(eft__gqgemm_ref(want, ldc, a, lda, m, wt, q, n, k, wb ? bias : NULL));
        for (int t = 0; t < g_ntables; t++)
            for (int thr = 0; thr < 2; thr++) {
                for (int64_t i = 0; i < m * ldc; i++) c[i] = GUARD;
                /* An odd work pointer: the driver aligns the panels itself. */
                CHECK(eft__gqgemm_f32(g_tables[t], thr ? tp : NULL, c, ldc, a, lda, m, wt, q, n, k, wb ? bias : NULL,
                                      work ? work + 1 : NULL));
                int bad = 0;
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < ldc; j++) {
                        float got = c[i * ldc + j];
                        if (j >= n) {
                            if (got != GUARD && bad++ < 3) fprintf(stderr, "  gqgemm wrote padding column %lld\n", (long long)j);
                            continue;
                        }
                        double mag = wb ? fabs(bias[j]) : 0;
                        for (int64_t e = 0; e < k; e++) mag += fabs((double)a[i * lda + e] * wd[j * k + e]);
                        double tol = 1e-5 * mag + 1e-6;
                        if (!(fabs(got - want[i * ldc + j]) <= tol) && bad++ < 3)
                            fprintf(stderr, "  gqgemm %s [%s, %d thr%s] M=%lld N=%lld K=%lld c[%lld,%lld] = %.9g, want %.9g\n",
                                    eft_dtype_name(wt), eft__isa_name(g_tables[t]->isa), thr ? 2 : 1, wb ? ", bias" : "",
                                    (long long)m, (long long)n, (long long)k, (long long)i, (long long)j, got,
                                    want[i * ldc + j]);
                    }
                CHECK(bad == 0);
            }
    }
    free(a), free(bias), free(w), free(wd), free(c), free(want), free(q), free(work);
}

static void test_gqgemm(void) {
    eft__threadpool *tp = NULL;
    CHECK(eft__threadpool_create(2, &tp, NULL) == EFT_OK);
    /* Both paths (M <= 16 streams, in blocks of weight rows past 8; M > 16 panels), the panel path's K
     * slices (K > 256), odd N. */
    static const int64_t fixed[][3] = {{1, 1, 128},  {1, 17, 384}, {2, 33, 256},   {3, 5, 640},  {5, 16, 128},
                                       {8, 31, 512}, {9, 7, 128},  {13, 40, 384},  {50, 19, 896}, {7, 3, 1152},
                                       {17, 9, 256}, {30, 21, 640}, {16, 70, 4096}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        for (int f = 0; f < NFAM; f++) check_shape(tp, k_family[f], fixed[i][0], fixed[i][1], fixed[i][2]);
    for (int it = 0; it < 30; it++) {
        eft_dtype wt = k_family[it % NFAM];
        eft__gq_layout l;
        eft__gq_layout_of(wt, &l);
        check_shape(tp, wt, rnd_i(1, 30), rnd_i(1, 70), (int64_t)l.group * rnd_i(1, 1024 / l.group));
    }
    eft__threadpool_free(tp);
}

static void test_refusals(void) {
    float a[256] = {0}, c = 1.0f;
    uint8_t q[sizeof(eft__block_i4_g128) * 2] = {0};
    /* Not a member, K not a multiple of G, panel path without work: refused, nothing written. */
    CHECK(!eft__gqgemm_f32(NULL, NULL, &c, 1, a, 256, 1, EFT_DTYPE_Q5_0, q, 1, 64, NULL, NULL));
    CHECK(!eft__gqgemm_f32(NULL, NULL, &c, 1, a, 256, 1, EFT_DTYPE_I4_G128, q, 1, 192, NULL, NULL));
    CHECK(!eft__gqgemm_f32(NULL, NULL, &c, 1, a, 1, EFT__QSTREAM_MAX_M + 1, EFT_DTYPE_I4_G128, q, 1, 128, NULL, NULL));
    CHECK(!eft__gqgemm_ref(&c, 1, a, 256, 1, EFT_DTYPE_F32, q, 1, 128, NULL));
    CHECK(c == 1.0f);
    CHECK(eft__gqgemm_f32(NULL, NULL, &c, 1, a, 256, 0, EFT_DTYPE_I4_G128, q, 1, 128, NULL, NULL));
    CHECK(eft__gqgemm_f32(NULL, NULL, &c, 1, a, 256, 1, EFT_DTYPE_I4_G128, q, 1, 256, NULL, NULL) && c == 0.0f);
    CHECK(eft__gqgemm_f32_work_size(EFT__QSTREAM_MAX_M, 4096, 8) == 0);
}

int main(void) {
    for (int i = 0; i < EFT__ISA_COUNT; i++)
        if (eft__kernels_for((eft__isa)i)) g_tables[g_ntables++] = eft__kernels_for((eft__isa)i);
    RUN(test_layouts);
    RUN(test_gguf_members);
    RUN(test_quantize_roundtrip);
    RUN(test_gqgemm);
    RUN(test_refusals);
    return test_summary();
}
