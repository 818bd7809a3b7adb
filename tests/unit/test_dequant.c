/*
 * test_dequant.c — the scalar reference dequantizers: block sizes agree with the dtype table,
 * hand-made blocks give exact values worked out by hand, and every type in
 * tests/fixtures/gguf/quants.gguf matches the gguf Python package's dequantization stored in
 * tests/fixtures/ref/gguf_quants.safetensors (tolerances recorded in that file's metadata).
 */
#include <ctype.h>
#include <jansson.h>

#include "core/quant.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "test.h"

static void test_block_sizes(void) {
    static const struct {
        eft_dtype t;
        size_t size;
        uint32_t elems;
    } k[] = {
        {EFT_DTYPE_Q4_0, sizeof(eft__block_q4_0), EFT__QK},   {EFT_DTYPE_Q4_1, sizeof(eft__block_q4_1), EFT__QK},
        {EFT_DTYPE_Q5_0, sizeof(eft__block_q5_0), EFT__QK},   {EFT_DTYPE_Q5_1, sizeof(eft__block_q5_1), EFT__QK},
        {EFT_DTYPE_Q8_0, sizeof(eft__block_q8_0), EFT__QK},   {EFT_DTYPE_Q2_K, sizeof(eft__block_q2_k), EFT__QK_K},
        {EFT_DTYPE_Q3_K, sizeof(eft__block_q3_k), EFT__QK_K}, {EFT_DTYPE_Q4_K, sizeof(eft__block_q4_k), EFT__QK_K},
        {EFT_DTYPE_Q5_K, sizeof(eft__block_q5_k), EFT__QK_K}, {EFT_DTYPE_Q6_K, sizeof(eft__block_q6_k), EFT__QK_K},
        {EFT_DTYPE_Q8_K, sizeof(eft__block_q8_k), EFT__QK_K},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        const eft__dtype_traits *tr = eft__dtype_traits_of(k[i].t);
        CHECK_EQ_INT(tr->block_bytes, k[i].size);
        CHECK_EQ_INT(tr->block_elems, k[i].elems);
    }
}

static void test_refuses(void) {
    float y[512];
    uint8_t src[1024] = {0};
    CHECK(!eft__dequantize_row(EFT_DTYPE_Q4_0, src, y, 33));   /* not whole blocks */
    CHECK(!eft__dequantize_row(EFT_DTYPE_Q6_K, src, y, 128));  /* half a super-block */
    CHECK(!eft__dequantize_row(EFT_DTYPE_I32, src, y, 4));     /* not a float or quant type */
    CHECK(!eft__dequantize_row(EFT_DTYPE_COUNT, src, y, 4));
    CHECK(!eft__dequantize_row(EFT_DTYPE_F32, src, y, -1));
    CHECK(eft__dequantize_row(EFT_DTYPE_Q4_0, src, y, 0));     /* nothing to do is fine */
}

static void test_plain(void) {
    /* f16: 1.0, -2.0, 65504, smallest subnormal; bf16: 1.0, -0.5; f32 from unaligned bytes. */
    uint16_t h[4] = {0x3c00, 0xc000, 0x7bff, 0x0001}, b[2] = {0x3f80, 0xbf00};
    float y[4];
    CHECK(eft__dequantize_row(EFT_DTYPE_F16, h, y, 4));
    CHECK(y[0] == 1.0f && y[1] == -2.0f && y[2] == 65504.0f && y[3] == 0x1p-24f);
    CHECK(eft__dequantize_row(EFT_DTYPE_BF16, b, y, 2));
    CHECK(y[0] == 1.0f && y[1] == -0.5f);
    uint8_t raw[1 + 8];
    float f[2] = {3.5f, -7.0f};
    memcpy(raw + 1, f, 8);
    CHECK(eft__dequantize_row(EFT_DTYPE_F32, raw + 1, y, 2));
    CHECK(y[0] == 3.5f && y[1] == -7.0f);
}

static void test_q8_0(void) {
    /* d = 0.5, qs = i - 16: element i is (i - 16) / 2. Two blocks, the second with d = -2. */
    eft__block_q8_0 blk[2];
    blk[0].d = 0x3800;
    blk[1].d = 0xc000;
    for (int i = 0; i < 32; i++) blk[0].qs[i] = (int8_t)(i - 16), blk[1].qs[i] = (int8_t)(i == 0 ? -128 : 127);
    float y[64];
    CHECK(eft__dequantize_row(EFT_DTYPE_Q8_0, blk, y, 64));
    for (int i = 0; i < 32; i++) CHECK_NEAR(y[i], (i - 16) * 0.5, 0);
    CHECK_NEAR(y[32], 256.0, 0);
    CHECK_NEAR(y[63], -254.0, 0);
}

static void test_q4_0_q4_1(void) {
    /* Low nibble j is element j, high nibble element j + 16: qs[j] = j | (15 - j) << 4. */
    eft__block_q4_0 a = {.d = 0x4000}; /* 2.0 */
    eft__block_q4_1 b = {.d = 0x3400, .m = 0xbc00}; /* 0.25, -1.0 */
    for (int j = 0; j < 16; j++) a.qs[j] = b.qs[j] = (uint8_t)(j | (15 - j) << 4);
    float y[32];
    CHECK(eft__dequantize_row(EFT_DTYPE_Q4_0, &a, y, 32));
    for (int j = 0; j < 16; j++) {
        CHECK_NEAR(y[j], (j - 8) * 2.0, 0);
        CHECK_NEAR(y[j + 16], (15 - j - 8) * 2.0, 0);
    }
    CHECK(eft__dequantize_row(EFT_DTYPE_Q4_1, &b, y, 32));
    for (int j = 0; j < 16; j++) {
        CHECK_NEAR(y[j], j * 0.25 - 1.0, 0);
        CHECK_NEAR(y[j + 16], (15 - j) * 0.25 - 1.0, 0);
    }
}

static void test_q5(void) {
    /* All nibbles 0; the fifth bit set for elements 0 and 17 (bits 0 and 17 of qh): Q5_0 gives
     * (16 - 16) * d there and -16 * d elsewhere; Q5_1 gives 16 * d + m there and m elsewhere. */
    eft__block_q5_0 a = {.d = 0x3c00, .qh = {0x01, 0x00, 0x02, 0x00}};
    eft__block_q5_1 b = {.d = 0x3800, .m = 0x3c00, .qh = {0x01, 0x00, 0x02, 0x00}};
    a.qs[3] = 0xf0; /* element 19 (high nibble of byte 3) = 15 */
    float y[32];
    CHECK(eft__dequantize_row(EFT_DTYPE_Q5_0, &a, y, 32));
    CHECK_NEAR(y[0], 0, 0);
    CHECK_NEAR(y[1], -16, 0);
    CHECK_NEAR(y[17], 0, 0);
    CHECK_NEAR(y[16], -16, 0);
    CHECK_NEAR(y[19], -1, 0);
    CHECK(eft__dequantize_row(EFT_DTYPE_Q5_1, &b, y, 32));
    CHECK_NEAR(y[0], 9.0, 0);
    CHECK_NEAR(y[17], 9.0, 0);
    CHECK_NEAR(y[5], 1.0, 0);
}

static void test_k_quants_by_hand(void) {
    float y[256];
    /* Q4_K: d = dmin = 1. Sub-block 0: scale 3 (low 6 bits of byte 0), min 2 (byte 4); sub-block
     * 4: scale = (byte 8 & 15) | (byte 0 >> 6) << 4 = 1 | 16 = 17, min = (byte 8 >> 4) | (byte 4 >> 6) << 4 = 7. */
    eft__block_q4_k k4 = {.d = 0x3c00, .dmin = 0x3c00};
    k4.scales[0] = 0x43;
    k4.scales[4] = 0x02;
    k4.scales[8] = 0x71;
    k4.qs[0] = 0x05;  /* element 0 = 5 */
    k4.qs[64] = 0x0a; /* element 128 = 10 */
    CHECK(eft__dequantize_row(EFT_DTYPE_Q4_K, &k4, y, 256));
    CHECK_NEAR(y[0], 3 * 5 - 2, 0);
    CHECK_NEAR(y[1], -2, 0);
    CHECK_NEAR(y[32], 0, 0); /* sub-block 1: scale 0, min 0 */
    CHECK_NEAR(y[128], 17 * 10 - 7, 0);
    CHECK_NEAR(y[129], -7, 0);

    /* Q3_K: d = 1; scale i = (low nibble | 2 high bits << 4) - 32. Bytes 8..11 = 0xaa give every
     * scale high bits 2, so scale 0 = (1 | 32) - 32 = 1 and the rest are 0. Element 0: low bits 3,
     * hmask bit set -> 3; element 1: low bits 0, hmask bit clear -> -4. */
    eft__block_q3_k k3 = {.d = 0x3c00};
    k3.scales[0] = 0x01;
    memset(k3.scales + 8, 0xaa, 4);
    k3.qs[0] = 0x03;
    k3.hmask[0] = 0x01;
    CHECK(eft__dequantize_row(EFT_DTYPE_Q3_K, &k3, y, 256));
    CHECK_NEAR(y[0], 3, 0);
    CHECK_NEAR(y[1], -4, 0);
    CHECK_NEAR(y[16], 0, 0);

    /* Q6_K: d = 0.5, scale 0 = 2, scale 2 = -1; element 0 = (ql low 15 | qh bits 3 << 4) - 32 = 31,
     * element 32 = ql[32] low | (qh[0] >> 2 & 3) << 4, with qh[0] = 0x03: 0 - 32. */
    eft__block_q6_k k6 = {.d = 0x3800};
    k6.scales[0] = 2;
    k6.scales[2] = -1;
    k6.ql[0] = 0x0f;
    k6.qh[0] = 0x03;
    CHECK(eft__dequantize_row(EFT_DTYPE_Q6_K, &k6, y, 256));
    CHECK_NEAR(y[0], 0.5 * 2 * 31, 0);
    CHECK_NEAR(y[32], 0.5 * -1 * -32, 0);

    /* Q2_K: d = 1, dmin = 0.5; scale byte 0 = 0x23 (scale 3, min 2): element 0 = 3*2 - 1. */
    eft__block_q2_k k2 = {.d = 0x3c00, .dmin = 0x3800};
    k2.scales[0] = 0x23;
    k2.qs[0] = 0x02;
    CHECK(eft__dequantize_row(EFT_DTYPE_Q2_K, &k2, y, 256));
    CHECK_NEAR(y[0], 5, 0);
    CHECK_NEAR(y[1], -1, 0);

    /* Q8_K: f32 scale. */
    eft__block_q8_k k8 = {.d = 0.25f};
    k8.qs[255] = -100;
    CHECK(eft__dequantize_row(EFT_DTYPE_Q8_K, &k8, y, 256));
    CHECK_NEAR(y[255], -25, 0);
    CHECK_NEAR(y[0], 0, 0);
}

/* Tolerance for `name` from the fixture's "tolerance" metadata (a JSON object), or -1. */
static double fixture_tolerance(const eft__safetensors *st, const char *name) {
    const char *js = eft__safetensors_metadata(st, "tolerance");
    json_t *doc = js ? json_loads(js, 0, NULL) : NULL;
    json_t *v = doc ? json_object_get(doc, name) : NULL;
    double tol = json_is_number(v) ? json_number_value(v) : -1;
    json_decref(doc);
    return tol;
}

static void test_fixture_quants(void) {
    const char *gp = test_path("tests/fixtures/gguf/quants.gguf");
    const char *rp = test_path("tests/fixtures/ref/gguf_quants.safetensors");
    eft__gguf *g = NULL;
    eft__safetensors *st = NULL;
    eft__error err = {0};
    eft_status s1 = eft__gguf_open(gp, &g, &err);
    CHECK_MSG(s1 == EFT_OK, "%s", err.msg);
    eft_status s2 = eft__safetensors_open(rp, &st, &err);
    CHECK_MSG(s2 == EFT_OK, "%s", err.msg);
    if (s1 || s2) goto done;
    static const char *const names[] = {"f32",  "f16",  "bf16", "q8_0", "q4_0", "q4_1", "q5_0",
                                        "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"};
    CHECK_EQ_INT(eft__gguf_tensor_count(g), 13);
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        const eft__tensor_view *q = eft__gguf_find_tensor(g, names[k]);
        const eft__tensor_view *r = eft__safetensors_find(st, names[k]);
        CHECK_MSG(q && r, "tensor %s missing", names[k]);
        if (!q || !r) continue;
        char upper[8] = {0};
        for (int i = 0; names[k][i] && i < 7; i++) upper[i] = (char)toupper((unsigned char)names[k][i]);
        CHECK_EQ_STR(eft_dtype_name(q->dtype), upper);
        CHECK_EQ_INT(r->dtype, EFT_DTYPE_F32);
        CHECK_EQ_INT(q->ndim, 2);
        CHECK_EQ_INT(q->shape[0], 4);
        CHECK_EQ_INT(q->shape[1], 512);
        CHECK_EQ_INT(q->n_elems, r->n_elems);
        double tol = fixture_tolerance(st, names[k]);
        CHECK_MSG(tol >= 0, "no tolerance recorded for %s", names[k]);
        /* Row by row, as the kernels will use it. */
        float *y = malloc(sizeof(float) * q->n_elems), *ref = malloc(sizeof(float) * r->n_elems);
        uint64_t row_bytes = q->nbytes / 4;
        for (int row = 0; row < 4; row++) {
            CHECK(eft__dequantize_row(q->dtype, (const uint8_t *)q->data + row * row_bytes, y + row * 512, 512));
        }
        CHECK(eft__tensor_to_f32(r, ref, r->n_elems, &err) == EFT_OK);
        double maxd = 0;
        for (uint64_t i = 0; i < q->n_elems; i++) maxd = fmax(maxd, fabs((double)y[i] - ref[i]));
        CHECK_MSG(maxd <= tol, "%s: max |diff| %g over tolerance %g", names[k], maxd, tol);
        free(y);
        free(ref);
    }
done:
    eft__gguf_close(g);
    eft__safetensors_close(st);
}

int main(void) {
    RUN(test_block_sizes);
    RUN(test_refuses);
    RUN(test_plain);
    RUN(test_q8_0);
    RUN(test_q4_0_q4_1);
    RUN(test_q5);
    RUN(test_k_quants_by_hand);
    RUN(test_fixture_quants);
    return test_summary();
}
