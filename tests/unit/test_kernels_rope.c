/* test_kernels_rope.c — rotary embeddings: both layouts against a direct double-precision
 * rotation (partial rotary included), and the frequency and attention-factor rules of every
 * scaling variant against the formulas of Hugging Face's modeling_rope_utils.py. */
#include <math.h>

#include "kernels/cpu/kernels.h"
#include "test.h"

static double frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (double)(*s >> 8) / 16777216.0 * 2 - 1;
}

static void check_layout(eft__rope_layout layout) {
    enum { T = 7, NH = 3, HS = 48, ROT = 32, LD = NH * HS + 5 };
    eft__rope_params p = {.rot_dims = ROT, .base = 10000.0f};
    eft__rope_table tab;
    eft__error err = {0};
    CHECK(eft__rope_table_init(&tab, &p, 4096, &err) == EFT_OK);
    float x[T * LD], orig[T * LD];
    unsigned seed = 7;
    for (int i = 0; i < T * LD; i++) x[i] = orig[i] = (float)frand(&seed);
    int32_t pos[T] = {0, 1, 2, 17, 500, 4000, 4095};
    eft__rope_apply(&tab, layout, x, LD, T, NH, HS, pos);
    for (int r = 0; r < T; r++)
        for (int h = 0; h < NH; h++) {
            const float *o = orig + r * LD + h * HS, *g = x + r * LD + h * HS;
            for (int i = 0; i < ROT / 2; i++) {
                int a = layout == EFT__ROPE_NEOX ? i : 2 * i, b = layout == EFT__ROPE_NEOX ? i + ROT / 2 : 2 * i + 1;
                double ang = pos[r] * pow(10000.0, -2.0 * i / ROT);
                double wa = o[a] * cos(ang) - o[b] * sin(ang), wb = o[b] * cos(ang) + o[a] * sin(ang);
                CHECK_NEAR(g[a], wa, 2e-6);
                CHECK_NEAR(g[b], wb, 2e-6);
            }
            for (int i = ROT; i < HS; i++) CHECK(g[i] == o[i]); /* partial rotary: the rest passes through */
        }
    /* The padding between rows is untouched. */
    for (int r = 0; r < T; r++)
        for (int i = NH * HS; i < LD; i++) CHECK(x[r * LD + i] == orig[r * LD + i]);
    eft__rope_table_free(&tab);
}

static void test_rope_neox(void) { check_layout(EFT__ROPE_NEOX); }
static void test_rope_gptj(void) { check_layout(EFT__ROPE_GPTJ); }

static void test_rope_linear(void) {
    eft__rope_params p = {.rot_dims = 64, .base = 10000.0f, .scaling = EFT__ROPE_SCALING_LINEAR, .factor = 4.0f};
    double inv[32], af;
    eft__rope_inv_freq(&p, inv, &af);
    for (int i = 0; i < 32; i++) CHECK_NEAR(inv[i], pow(10000.0, -2.0 * i / 64) / 4, 1e-15);
    CHECK(af == 1.0);
}

static void test_rope_llama3(void) {
    /* Llama-3.2-1B's configuration. */
    eft__rope_params p = {.rot_dims = 64, .base = 500000.0f, .scaling = EFT__ROPE_SCALING_LLAMA3, .factor = 32.0f,
                          .low_freq_factor = 1.0f, .high_freq_factor = 4.0f, .original_max_pos = 8192};
    double inv[32], af;
    eft__rope_inv_freq(&p, inv, &af);
    int n_hi = 0, n_lo = 0, n_mid = 0;
    for (int i = 0; i < 32; i++) {
        double f = pow(500000.0, -2.0 * i / 64), wl = 2 * M_PI / f;
        if (wl < 8192.0 / 4) {
            CHECK_NEAR(inv[i], f, 1e-15);
            n_hi++;
        }
        else if (wl > 8192.0) {
            CHECK_NEAR(inv[i], f / 32, 1e-15);
            n_lo++;
        }
        else {
            double sm = (8192.0 / wl - 1) / 3;
            CHECK_NEAR(inv[i], (1 - sm) * f / 32 + sm * f, 1e-15);
            CHECK(inv[i] < f && inv[i] > f / 32);
            n_mid++;
        }
        if (i) CHECK(inv[i] < inv[i - 1]); /* still ordered: no band swaps two frequencies */
    }
    CHECK(n_hi > 0 && n_lo > 0 && n_mid > 0);
    CHECK(af == 1.0);
}

static void test_rope_yarn(void) {
    eft__rope_params p = {.rot_dims = 64, .base = 10000.0f, .scaling = EFT__ROPE_SCALING_YARN, .factor = 4.0f,
                          .original_max_pos = 4096, .max_pos = 16384};
    double inv[32], af;
    eft__rope_inv_freq(&p, inv, &af);
    CHECK_NEAR(af, 0.1 * log(4.0) + 1, 1e-12);
    /* Correction range for beta_fast 32, beta_slow 1: dims below low keep their frequency, above
     * high are interpolated by the factor. */
    double low = floor(64 * log(4096 / (32 * 2 * M_PI)) / (2 * log(10000.0)));
    double high = ceil(64 * log(4096 / (1 * 2 * M_PI)) / (2 * log(10000.0)));
    for (int i = 0; i < 32; i++) {
        double f = pow(10000.0, -2.0 * i / 64);
        if (i <= low) CHECK_NEAR(inv[i], f, 1e-15);
        else if (i >= high) CHECK_NEAR(inv[i], f / 4, 1e-15);
        else CHECK(inv[i] < f && inv[i] > f / 4);
    }
    p.mscale = 1.0f, p.mscale_all_dim = 0.707f;
    eft__rope_inv_freq(&p, inv, &af);
    CHECK_NEAR(af, (0.1 * log(4.0) + 1) / (0.1 * 0.707 * log(4.0) + 1), 1e-6);
    /* The table carries the attention factor: each rotated pair's norm grows by it. */
    eft__rope_table tab;
    eft__error err = {0};
    CHECK(eft__rope_table_init(&tab, &p, 100, &err) == EFT_OK);
    float v[64];
    for (int i = 0; i < 64; i++) v[i] = (float)(i % 7) - 3;
    int32_t pos = 99;
    double n0 = 0, n1 = 0;
    for (int i = 0; i < 64; i++) n0 += (double)v[i] * v[i];
    eft__rope_apply(&tab, EFT__ROPE_NEOX, v, 64, 1, 1, 64, &pos);
    for (int i = 0; i < 64; i++) n1 += (double)v[i] * v[i];
    CHECK_NEAR(sqrt(n1 / n0), af, 1e-5);
    eft__rope_table_free(&tab);
}

static void test_rope_longrope(void) {
    float sf[48], lf[48];
    for (int i = 0; i < 48; i++) sf[i] = 1.0f + 0.01f * i, lf[i] = 2.0f + 0.5f * i;
    eft__rope_params p = {.rot_dims = 96, .base = 10000.0f, .scaling = EFT__ROPE_SCALING_LONGROPE, .original_max_pos = 4096,
                          .max_pos = 131072, .ctx_len = 2048, .short_factor = sf, .long_factor = lf};
    double inv[48], af;
    eft__rope_inv_freq(&p, inv, &af);
    CHECK_NEAR(af, sqrt(1 + log(32.0) / log(4096.0)), 1e-12);
    for (int i = 0; i < 48; i++) CHECK_NEAR(inv[i], 1.0 / (sf[i] * pow(10000.0, 2.0 * i / 96)), 1e-12);
    p.ctx_len = 8192;
    eft__rope_inv_freq(&p, inv, &af);
    for (int i = 0; i < 48; i++) CHECK_NEAR(inv[i], 1.0 / (lf[i] * pow(10000.0, 2.0 * i / 96)), 1e-12);
}

static void test_rope_bad_args(void) {
    eft__rope_table tab;
    eft__error err = {0};
    eft__rope_params p = {.rot_dims = 7, .base = 10000.0f};
    CHECK(eft__rope_table_init(&tab, &p, 10, &err) == EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(err.msg, "rot_dims 7");
    CHECK(tab.cos_sin == NULL);
    eft__rope_table_free(&tab);
}

int main(void) {
    RUN(test_rope_neox);
    RUN(test_rope_gptj);
    RUN(test_rope_linear);
    RUN(test_rope_llama3);
    RUN(test_rope_yarn);
    RUN(test_rope_longrope);
    RUN(test_rope_bad_args);
    return test_summary();
}
