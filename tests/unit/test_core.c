/* test_core.c — status names, errors, the allocation hook (with injected failures), logging,
 * dtype geometry and the scalar float conversions against known bit patterns. */
#include "core/core.h"
#include "core/strmap.h"
#include "test.h"

static void test_status_names(void) {
    CHECK_EQ_STR(eft_status_str(EFT_OK), "EFT_OK");
    CHECK_EQ_STR(eft_status_str(EFT_ERR_FORMAT), "EFT_ERR_FORMAT");
    CHECK_EQ_STR(eft_status_str((eft_status)-999), "EFT_ERR_UNKNOWN");
    CHECK_EQ_STR(eft_version(), EFT_VERSION_STRING);
}

static void test_error_values(void) {
    eft__error e;
    eft__error_clear(&e);
    CHECK_EQ_INT(eft__fail(&e, EFT_ERR_FORMAT, "tensor '%s' ends at %d", "w", 12), EFT_ERR_FORMAT);
    CHECK_EQ_STR(e.msg, "tensor 'w' ends at 12");
    eft__error_prefix(&e, "%s", "model.safetensors");
    CHECK_EQ_STR(e.msg, "model.safetensors: tensor 'w' ends at 12");
    eft__set_last_error(&e);
    CHECK_EQ_STR(eft_last_error(), "model.safetensors: tensor 'w' ends at 12");
    CHECK_EQ_INT(eft__fail(NULL, EFT_ERR_IO, "x"), EFT_ERR_IO); /* NULL error is allowed */
}

/* An allocator that fails the n-th allocation, to prove callers handle out-of-memory. */
static int g_allocs, g_fail_at = -1;
static void *fail_alloc(size_t n, void *ud) {
    (void)ud;
    if (g_allocs++ == g_fail_at) return NULL;
    return malloc(n);
}
static void *fail_realloc(void *p, size_t n, void *ud) {
    (void)ud;
    if (g_allocs++ == g_fail_at) return NULL;
    return realloc(p, n);
}
static void fail_free(void *p, void *ud) { (void)ud; free(p); }

static void test_alloc_hook(void) {
    eft_allocator a = {fail_alloc, fail_realloc, fail_free, NULL};
    eft_set_allocator(&a);
    g_allocs = 0;
    g_fail_at = 0;
    CHECK(eft__strdup("hello") == NULL);
    CHECK_EQ_INT(g_allocs, 1);
    g_fail_at = -1;
    char *s = eft__strdup("hello");
    CHECK_EQ_STR(s, "hello");
    eft_free(s);
    CHECK(eft__malloc_array(SIZE_MAX / 2, 4) == NULL); /* overflow is refused, not wrapped */
    CHECK(eft__calloc(SIZE_MAX / 2, 4) == NULL);
    /* The map must report out-of-memory and stay usable. */
    eft__strmap m = {0};
    g_allocs = 0;
    g_fail_at = 0;
    CHECK_EQ_INT(eft__strmap_put(&m, "a", 1, 1), EFT_ERR_OUT_OF_MEMORY);
    g_fail_at = -1;
    CHECK_EQ_INT(eft__strmap_put(&m, "a", 1, 1), EFT_OK);
    eft__strmap_free(&m);
    eft_set_allocator(NULL);
}

static void test_strmap(void) {
    eft__strmap m = {0};
    char keys[1000][16];
    for (int i = 0; i < 1000; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        CHECK_EQ_INT(eft__strmap_put(&m, keys[i], strlen(keys[i]), (uint64_t)i * 3), EFT_OK);
    }
    CHECK_EQ_INT(m.count, 1000);
    for (int i = 0; i < 1000; i++) {
        uint64_t v = 0;
        CHECK(eft__strmap_get(&m, keys[i], strlen(keys[i]), &v));
        CHECK_EQ_INT(v, i * 3);
    }
    CHECK(!eft__strmap_get(&m, "k1000", 5, NULL));
    CHECK_EQ_INT(eft__strmap_put(&m, "k1", 2, 7), EFT_OK); /* replace */
    uint64_t v = 0;
    CHECK(eft__strmap_get(&m, "k1", 2, &v));
    CHECK_EQ_INT(v, 7);
    CHECK_EQ_INT(m.count, 1000);
    eft__strmap_free(&m);
}

static int g_logged;
static char g_last_log[256];
static void log_cb(eft_log_level level, const char *msg, void *ud) {
    (void)level;
    (void)ud;
    g_logged++;
    snprintf(g_last_log, sizeof g_last_log, "%s", msg);
}

static void test_logging(void) {
    eft_log_set_callback(log_cb, NULL);
    eft_log_set_level(EFT_LOG_INFO);
    EFT_LOGI("hello %d", 42);
    EFT_LOGD("hidden");
    CHECK_EQ_INT(g_logged, 1);
    CHECK_EQ_STR(g_last_log, "hello 42");
    eft_log_set_level(EFT_LOG_WARN);
    eft_log_set_callback(NULL, NULL);
}

static void test_dtypes(void) {
    uint64_t n;
    CHECK(eft__dtype_nbytes(EFT_DTYPE_F32, 10, &n) && n == 40);
    CHECK(eft__dtype_nbytes(EFT_DTYPE_Q8_0, 64, &n) && n == 68);
    CHECK(eft__dtype_nbytes(EFT_DTYPE_Q4_K, 512, &n) && n == 288);
    CHECK(!eft__dtype_nbytes(EFT_DTYPE_Q4_0, 33, &n)); /* not whole blocks */
    CHECK(!eft__dtype_nbytes(EFT_DTYPE_F64, UINT64_MAX / 4, &n)); /* overflow */
    CHECK_EQ_STR(eft_dtype_name(EFT_DTYPE_BF16), "BF16");
    CHECK_EQ_STR(eft_dtype_name(EFT_DTYPE_COUNT), "?");
    for (int t = 0; t < EFT_DTYPE_COUNT; t++) CHECK(eft__dtype_traits_of((eft_dtype)t)->name != NULL);
}

static void test_float_conversions(void) {
    CHECK(eft__f16_to_f32(0x3c00) == 1.0f);
    CHECK(eft__f16_to_f32(0xc000) == -2.0f);
    CHECK(eft__f16_to_f32(0x7bff) == 65504.0f);
    CHECK(eft__f16_to_f32(0x0001) == 0x1p-24f); /* smallest subnormal */
    CHECK(isinf(eft__f16_to_f32(0x7c00)));
    CHECK(isnan(eft__f16_to_f32(0x7e00)));
    /* Every finite half survives a round trip through f32. */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00) continue;
        if (eft__f32_to_f16(eft__f16_to_f32((uint16_t)h)) != h) bad++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(eft__f32_to_f16(1.0f + 0x1p-11f), 0x3c00); /* tie rounds to even */
    CHECK_EQ_INT(eft__f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
    CHECK_EQ_INT(eft__f32_to_f16(70000.0f), 0x7c00);
    CHECK(eft__bf16_to_f32(0x3f80) == 1.0f);
    CHECK_EQ_INT(eft__f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ_INT(eft__f32_to_bf16(1.00390625f), 0x3f80); /* 1 + 2^-8: tie to even */
    CHECK(eft__f8e4m3_to_f32(0x38) == 1.0f);
    CHECK(eft__f8e4m3_to_f32(0x7e) == 448.0f);
    CHECK(eft__f8e4m3_to_f32(0x01) == 0x1p-9f);
    CHECK(isnan(eft__f8e4m3_to_f32(0x7f)));
    CHECK(eft__f8e5m2_to_f32(0x3c) == 1.0f);
    CHECK(eft__f8e5m2_to_f32(0x7b) == 57344.0f);
    CHECK(isinf(eft__f8e5m2_to_f32(0x7c)));
}

static void test_files(void) {
    eft__error e;
    eft__mapped_file f;
    CHECK_EQ_INT(eft__file_map(&f, "/nonexistent/x.safetensors", &e), EFT_ERR_NOT_FOUND);
    CHECK_CONTAINS(e.msg, "/nonexistent/x.safetensors");
    const char *dir = test_tmpdir("core_files");
    char *p = eft__path_join(dir, "a.txt");
    FILE *fp = fopen(p, "wb");
    fputs("hello", fp);
    fclose(fp);
    CHECK_EQ_INT(eft__file_map(&f, p, &e), EFT_OK);
    CHECK_EQ_INT(f.size, 5);
    CHECK(memcmp(f.data, "hello", 5) == 0);
    eft__file_unmap(&f);
    char *buf;
    size_t len;
    CHECK_EQ_INT(eft__file_read_all(p, 100, &buf, &len, &e), EFT_OK);
    CHECK_EQ_STR(buf, "hello");
    eft__free(buf);
    CHECK_EQ_INT(eft__file_read_all(p, 4, &buf, &len, &e), EFT_ERR_LIMIT);
    CHECK_EQ_INT(eft__file_map(&f, dir, &e), EFT_ERR_IO); /* a directory is not a file */
    CHECK_EQ_STR(eft__path_basename("a/b/c.json"), "c.json");
    eft__free(p);
}

int main(void) {
    RUN(test_status_names);
    RUN(test_error_values);
    RUN(test_alloc_hook);
    RUN(test_strmap);
    RUN(test_logging);
    RUN(test_dtypes);
    RUN(test_float_conversions);
    RUN(test_files);
    return test_summary();
}
