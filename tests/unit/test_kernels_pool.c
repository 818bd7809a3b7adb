/* test_kernels_pool.c — embedding lookup from f32/f16/bf16 tables with bad ids refused, and every
 * sentence-transformers pooling mode on a small hand-computed example with padding. */
#include "kernels/cpu/kernels.h"
#include "test.h"

static void test_gather(void) {
    enum { V = 5, C = 3, LD = 4 };
    float tf[V * LD];
    uint16_t th[V * LD], tb[V * LD];
    for (int i = 0; i < V * LD; i++) tf[i] = (float)i * 0.5f, th[i] = eft__f32_to_f16(tf[i]), tb[i] = eft__f32_to_bf16(tf[i]);
    int32_t ids[3] = {4, 0, 2};
    float out[3 * 6];
    for (int d = 0; d < 3; d++) {
        const void *t = d == 0 ? (const void *)tf : d == 1 ? (const void *)th : (const void *)tb;
        eft_dtype dt = d == 0 ? EFT_DTYPE_F32 : d == 1 ? EFT_DTYPE_F16 : EFT_DTYPE_BF16;
        for (int i = 0; i < 18; i++) out[i] = -7;
        CHECK(eft__embedding_gather(out, 6, t, dt, V, C, LD, ids, 3));
        for (int r = 0; r < 3; r++) {
            for (int j = 0; j < C; j++) CHECK(out[r * 6 + j] == tf[ids[r] * LD + j]); /* halves of small ints are exact */
            for (int j = C; j < 6; j++) CHECK(out[r * 6 + j] == -7);
        }
    }
    int32_t bad[2] = {1, 5}, neg[1] = {-1};
    out[0] = -7;
    CHECK(!eft__embedding_gather(out, 6, tf, EFT_DTYPE_F32, V, C, LD, bad, 2));
    CHECK(out[0] == -7); /* nothing written on refusal */
    CHECK(!eft__embedding_gather(out, 6, tf, EFT_DTYPE_F32, V, C, LD, neg, 1));
    CHECK(!eft__embedding_gather(out, 6, tf, EFT_DTYPE_Q8_0, V, C, LD, ids, 1));
}

static void test_pool_modes(void) {
    /* Four tokens of two channels, the last one padding. */
    float x[4 * 3] = {1, 2, 0, 3, -4, 0, 5, 6, 0, 100, 100, 0};
    uint8_t mask[4] = {1, 1, 1, 0};
    float o[2];
    eft__pool(o, x, 3, 4, 2, mask, EFT__POOLOP_MEAN);
    CHECK_NEAR(o[0], 3.0, 1e-6); CHECK_NEAR(o[1], 4.0 / 3, 1e-6);
    eft__pool(o, x, 3, 4, 2, mask, EFT__POOLOP_CLS);
    CHECK(o[0] == 1 && o[1] == 2);
    eft__pool(o, x, 3, 4, 2, mask, EFT__POOLOP_MAX);
    CHECK(o[0] == 5 && o[1] == 6);
    eft__pool(o, x, 3, 4, 2, mask, EFT__POOLOP_LASTTOKEN);
    CHECK(o[0] == 5 && o[1] == 6);
    eft__pool(o, x, 3, 4, 2, NULL, EFT__POOLOP_LASTTOKEN);
    CHECK(o[0] == 100);
    eft__pool(o, x, 3, 4, 2, mask, EFT__POOLOP_MEAN_SQRT_LEN);
    CHECK_NEAR(o[0], 9 / sqrt(3.0), 1e-5); CHECK_NEAR(o[1], 4 / sqrt(3.0), 1e-5);
    eft__pool(o, x, 3, 4, 2, mask, EFT__POOLOP_WEIGHTEDMEAN);
    CHECK_NEAR(o[0], (1 * 1 + 2 * 3 + 3 * 5) / 6.0, 1e-6); CHECK_NEAR(o[1], (1 * 2 - 2 * 4 + 3 * 6) / 6.0, 1e-6);
    uint8_t none[4] = {0, 0, 0, 0};
    eft__pool(o, x, 3, 4, 2, none, EFT__POOLOP_MEAN);
    CHECK(o[0] == 0 && o[1] == 0);
    float v[3] = {3, 0, 4};
    eft__l2_normalize(v, 3);
    CHECK_NEAR(v[0], 0.6, 1e-7); CHECK_NEAR(v[2], 0.8, 1e-7);
    float z[2] = {0, 0};
    eft__l2_normalize(z, 2);
    CHECK(z[0] == 0 && z[1] == 0);
}

int main(void) {
    RUN(test_gather);
    RUN(test_pool_modes);
    return test_summary();
}
