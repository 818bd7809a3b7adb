/*
 * test_gguf.c — the GGUF reader: files written here byte by byte (valid ones of every value type,
 * and one malformed file per check the reader makes, each with its status and message), the
 * tests/fixtures/gguf/metadata.gguf fixture against its metadata.json (written by the gguf Python
 * package), and the SmolLM2 GGUF when the lead has fetched it (values read with gguf.GGUFReader).
 */
#include <dirent.h>
#include <jansson.h>

#include "core/quant.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "test.h"

/* ---------------------------------------------------------------------------------------------
 * A tiny GGUF writer
 * ------------------------------------------------------------------------------------------- */

typedef struct wb {
    uint8_t *p;
    size_t n, cap;
} wb;

static void put(wb *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void u8_(wb *b, uint8_t v) { put(b, &v, 1); }
static void u16_(wb *b, uint16_t v) { put(b, &v, 2); }
static void u32_(wb *b, uint32_t v) { put(b, &v, 4); }
static void u64_(wb *b, uint64_t v) { put(b, &v, 8); }
static void f32_(wb *b, float v) { put(b, &v, 4); }
static void f64_(wb *b, double v) { put(b, &v, 8); }
static void strn_(wb *b, const char *s, size_t n) {
    u64_(b, n);
    put(b, s, n);
}
static void str_(wb *b, const char *s) { strn_(b, s, strlen(s)); }
static void zeros(wb *b, size_t n) {
    for (size_t i = 0; i < n; i++) u8_(b, 0);
}
static void pad_to(wb *b, size_t align) {
    while (b->n % align) u8_(b, 0);
}
static void header(wb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    put(b, "GGUF", 4);
    u32_(b, version);
    u64_(b, n_tensors);
    u64_(b, n_kv);
}
static void kv_(wb *b, const char *key, eft__gguf_type t) {
    str_(b, key);
    u32_(b, t);
}
static void tinfo(wb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off) {
    str_(b, name);
    u32_(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) u64_(b, ne[i]);
    u32_(b, type);
    u64_(b, off);
}
/* A file with one tensor and its data (data_bytes of zeros after padding to 32). */
static void one_tensor(wb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off,
                       size_t data_bytes) {
    header(b, 3, 1, 0);
    tinfo(b, name, n_dims, ne, type, off);
    pad_to(b, 32);
    zeros(b, data_bytes);
}

/* Opens b, expects status `want` and a message naming the file and containing n1 (and n2). */
#define EXPECT_FAIL(b, want, n1, n2)                                                               \
    do {                                                                                           \
        eft__gguf *t_g = (eft__gguf *)&t_g;                                                       \
        eft__error t_err = {0};                                                                    \
        eft_status t_st = eft__gguf_open_memory((b)->p, (b)->n, "t.gguf", &t_g, &t_err);         \
        CHECK_EQ_INT(t_st, want);                                                                  \
        CHECK(t_g == NULL);                                                                        \
        CHECK_CONTAINS(t_err.msg, "t.gguf: ");                                                     \
        CHECK_CONTAINS(t_err.msg, n1);                                                             \
        if (n2) CHECK_CONTAINS(t_err.msg, (const char *)(n2));                                    \
        if (t_st == EFT_OK) eft__gguf_close(t_g);                                                  \
        free((b)->p);                                                                              \
        *(b) = (wb){0};                                                                            \
    } while (0)

static bool str_eq(eft__gguf_str s, const char *c) { return s.len == strlen(c) && memcmp(s.ptr, c, s.len) == 0; }

/* ---------------------------------------------------------------------------------------------
 * A valid file with every value type
 * ------------------------------------------------------------------------------------------- */

#define RICH_KVS 19
static void write_rich(wb *b) {
    header(b, 3, 4, RICH_KVS);
    kv_(b, "general.architecture", EFT__GGUF_STRING), str_(b, "llama");
    kv_(b, "u8", EFT__GGUF_UINT8), u8_(b, 200);
    kv_(b, "i8", EFT__GGUF_INT8), u8_(b, (uint8_t)-5);
    kv_(b, "u16", EFT__GGUF_UINT16), u16_(b, 60000);
    kv_(b, "i16", EFT__GGUF_INT16), u16_(b, (uint16_t)-300);
    kv_(b, "u32", EFT__GGUF_UINT32), u32_(b, 4000000000u);
    kv_(b, "i32", EFT__GGUF_INT32), u32_(b, (uint32_t)-2000000000);
    kv_(b, "u64", EFT__GGUF_UINT64), u64_(b, (1ull << 63) + 5);
    kv_(b, "i64", EFT__GGUF_INT64), u64_(b, (uint64_t)-(1ll << 40));
    kv_(b, "f32", EFT__GGUF_FLOAT32), f32_(b, 0.1f);
    kv_(b, "f64", EFT__GGUF_FLOAT64), f64_(b, 2.5);
    kv_(b, "yes", EFT__GGUF_BOOL), u8_(b, 1);
    kv_(b, "empty", EFT__GGUF_STRING), str_(b, "");
    kv_(b, "a.str", EFT__GGUF_ARRAY), u32_(b, EFT__GGUF_STRING), u64_(b, 3), str_(b, "a"), str_(b, ""),
        str_(b, "h\xc3\xa9llo");
    kv_(b, "a.i32", EFT__GGUF_ARRAY), u32_(b, EFT__GGUF_INT32), u64_(b, 3), u32_(b, (uint32_t)-1), u32_(b, 2),
        u32_(b, 3);
    kv_(b, "a.f32", EFT__GGUF_ARRAY), u32_(b, EFT__GGUF_FLOAT32), u64_(b, 2), f32_(b, 0.5f), f32_(b, -1.25f);
    /* [[1, 2], []] of INT32 arrays, and [["x", "yz"]] of string arrays */
    kv_(b, "a.nested", EFT__GGUF_ARRAY), u32_(b, EFT__GGUF_ARRAY), u64_(b, 2);
    u32_(b, EFT__GGUF_INT32), u64_(b, 2), u32_(b, 1), u32_(b, 2);
    u32_(b, EFT__GGUF_INT32), u64_(b, 0);
    kv_(b, "a.nested_str", EFT__GGUF_ARRAY), u32_(b, EFT__GGUF_ARRAY), u64_(b, 1);
    u32_(b, EFT__GGUF_STRING), u64_(b, 2), str_(b, "x"), str_(b, "yz");
    kv_(b, "a.empty", EFT__GGUF_ARRAY), u32_(b, EFT__GGUF_UINT64), u64_(b, 0);

    tinfo(b, "w.f32", 2, (uint64_t[]){3, 2}, 0, 0);          /* 24 bytes */
    tinfo(b, "w.q8", 2, (uint64_t[]){32, 2}, 8, 32);         /* 68 bytes */
    tinfo(b, "w.f16", 1, (uint64_t[]){4}, 1, 128);           /* 8 bytes */
    tinfo(b, "w.empty", 3, (uint64_t[]){0, 5, 1}, 0, 128);   /* 0 bytes, where w.f16 starts */
    pad_to(b, 32);
    size_t base = b->n;
    for (int i = 0; i < 6; i++) f32_(b, (float)i);
    pad_to(b, 32);
    for (int blk = 0; blk < 2; blk++) {
        u16_(b, 0x3800); /* d = 0.5 */
        for (int i = 0; i < 32; i++) u8_(b, (uint8_t)(int8_t)(i - 16 + blk));
    }
    zeros(b, base + 128 - b->n);
    u16_(b, 0x3c00), u16_(b, 0xc000), u16_(b, 0x3800), u16_(b, 0x0000);
}

static void check_rich(const eft__gguf *g, const uint8_t *file) {
    CHECK_EQ_INT(eft__gguf_version(g), 3);
    CHECK_EQ_INT(eft__gguf_kv_count(g), RICH_KVS);
    CHECK_EQ_INT(eft__gguf_alignment(g), 32);
    CHECK(str_eq(eft__gguf_kv_at(g, 0)->key, "general.architecture"));
    CHECK(eft__gguf_kv_at(g, RICH_KVS) == NULL);
    eft__gguf_str s;
    CHECK(eft__gguf_get_str(g, "general.architecture", &s) && str_eq(s, "llama"));
    CHECK(eft__gguf_get_str(g, "empty", &s) && s.len == 0);
    CHECK(!eft__gguf_get_str(g, "u8", &s));
    CHECK(eft__gguf_find(g, "missing") == NULL);

    uint64_t u;
    int64_t i;
    double f;
    bool yes;
    CHECK(eft__gguf_get_u64(g, "u8", &u) && u == 200);
    CHECK(eft__gguf_get_i64(g, "u8", &i) && i == 200);
    CHECK(eft__gguf_get_i64(g, "i8", &i) && i == -5);
    CHECK(!eft__gguf_get_u64(g, "i8", &u)); /* negative: out of range for u64 */
    CHECK(eft__gguf_get_u64(g, "u16", &u) && u == 60000);
    CHECK(eft__gguf_get_i64(g, "i16", &i) && i == -300);
    CHECK(eft__gguf_get_u64(g, "u32", &u) && u == 4000000000u);
    CHECK(eft__gguf_get_i64(g, "i32", &i) && i == -2000000000);
    CHECK(eft__gguf_get_u64(g, "u64", &u) && u == (1ull << 63) + 5);
    CHECK(!eft__gguf_get_i64(g, "u64", &i)); /* above INT64_MAX */
    CHECK(eft__gguf_get_i64(g, "i64", &i) && i == -(1ll << 40));
    CHECK(eft__gguf_get_f64(g, "f32", &f) && f == (double)0.1f);
    CHECK(eft__gguf_get_f64(g, "f64", &f) && f == 2.5);
    CHECK(eft__gguf_get_f64(g, "i16", &f) && f == -300.0);
    CHECK(!eft__gguf_get_u64(g, "f64", &u));
    CHECK(!eft__gguf_get_f64(g, "general.architecture", &f));
    CHECK(eft__gguf_get_bool(g, "yes", &yes) && yes);
    CHECK(!eft__gguf_get_bool(g, "u8", &yes));
    CHECK(!eft__gguf_get_u64(g, "yes", &u));
    CHECK_EQ_STR(eft__gguf_type_name(eft__gguf_find(g, "u16")->type), "UINT16");
    CHECK_EQ_STR(eft__gguf_type_name((eft__gguf_type)13), "?");

    const eft__gguf_kv *as = eft__gguf_find(g, "a.str");
    CHECK_EQ_INT(eft__gguf_arr_len(as), 3);
    CHECK_EQ_INT(eft__gguf_arr_type(as), EFT__GGUF_STRING);
    CHECK(eft__gguf_arr_str(g, as, 0, &s) && str_eq(s, "a"));
    CHECK(eft__gguf_arr_str(g, as, 1, &s) && s.len == 0);
    CHECK(eft__gguf_arr_str(g, as, 2, &s) && str_eq(s, "h\xc3\xa9llo"));
    CHECK(!eft__gguf_arr_str(g, as, 3, &s));
    CHECK(!eft__gguf_arr_i64(as, 0, &i));
    CHECK_EQ_INT(eft__gguf_arr_len(eft__gguf_find(g, "u8")), 0);

    const eft__gguf_kv *ai = eft__gguf_find(g, "a.i32");
    CHECK(eft__gguf_arr_i64(ai, 0, &i) && i == -1);
    CHECK(eft__gguf_arr_i64(ai, 2, &i) && i == 3);
    CHECK(eft__gguf_arr_f64(ai, 1, &f) && f == 2.0);
    CHECK(!eft__gguf_arr_i64(ai, 3, &i));
    CHECK(!eft__gguf_arr_str(g, ai, 0, &s));
    const eft__gguf_kv *af = eft__gguf_find(g, "a.f32");
    CHECK(eft__gguf_arr_f64(af, 1, &f) && f == -1.25);
    CHECK(!eft__gguf_arr_i64(af, 0, &i));

    const eft__gguf_kv *an = eft__gguf_find(g, "a.nested");
    eft__gguf_kv sub;
    CHECK_EQ_INT(eft__gguf_arr_len(an), 2);
    CHECK_EQ_INT(eft__gguf_arr_type(an), EFT__GGUF_ARRAY);
    CHECK(eft__gguf_arr_sub(an, 0, &sub));
    CHECK_EQ_INT(eft__gguf_arr_len(&sub), 2);
    CHECK(eft__gguf_arr_i64(&sub, 1, &i) && i == 2);
    CHECK(eft__gguf_arr_sub(an, 1, &sub) && eft__gguf_arr_len(&sub) == 0);
    CHECK(!eft__gguf_arr_sub(an, 2, &sub));
    CHECK(!eft__gguf_arr_sub(ai, 0, &sub));
    CHECK(eft__gguf_arr_sub(eft__gguf_find(g, "a.nested_str"), 0, &sub));
    CHECK(eft__gguf_arr_str(g, &sub, 1, &s) && str_eq(s, "yz"));
    CHECK_EQ_INT(eft__gguf_arr_len(eft__gguf_find(g, "a.empty")), 0);
    CHECK_EQ_INT(eft__gguf_arr_type(eft__gguf_find(g, "a.empty")), EFT__GGUF_UINT64);

    CHECK_EQ_INT(eft__gguf_tensor_count(g), 4);
    uint64_t doff = eft__gguf_data_offset(g);
    CHECK_EQ_INT(doff % 32, 0);
    const eft__tensor_view *t = eft__gguf_tensor(g, 0);
    CHECK_EQ_STR(t->name, "w.f32");
    CHECK_EQ_INT(t->dtype, EFT_DTYPE_F32);
    CHECK_EQ_INT(t->ndim, 2);
    CHECK_EQ_INT(t->shape[0], 2); /* outermost first: ne [3, 2] -> shape [2, 3] */
    CHECK_EQ_INT(t->shape[1], 3);
    CHECK_EQ_INT(t->n_elems, 6);
    CHECK_EQ_INT(t->nbytes, 24);
    CHECK(t->data == file + doff);
    CHECK(eft__gguf_find_tensor(g, "w.f32") == t);
    float y[64];
    CHECK(eft__dequantize_row(t->dtype, t->data, y, 6) && y[5] == 5.0f);
    t = eft__gguf_find_tensor(g, "w.q8");
    CHECK(t && t->dtype == EFT_DTYPE_Q8_0 && t->nbytes == 68 && t->data == file + doff + 32);
    CHECK(t && eft__dequantize_row(t->dtype, t->data, y, 64));
    CHECK(y[0] == -8.0f && y[31] == 7.5f && y[32] == -7.5f && y[63] == 8.0f);
    t = eft__gguf_find_tensor(g, "w.f16");
    CHECK(t && t->ndim == 1 && t->shape[0] == 4 && eft__dequantize_row(t->dtype, t->data, y, 4));
    CHECK(y[0] == 1.0f && y[1] == -2.0f && y[2] == 0.5f && y[3] == 0.0f);
    t = eft__gguf_find_tensor(g, "w.empty");
    CHECK(t && t->ndim == 3 && t->shape[0] == 1 && t->shape[1] == 5 && t->shape[2] == 0);
    CHECK(t && t->n_elems == 0 && t->nbytes == 0 && t->data == NULL);
    CHECK(eft__gguf_find_tensor(g, "w") == NULL);
    CHECK(eft__gguf_tensor(g, 4) == NULL);
}

static void test_rich_memory(void) {
    wb b = {0};
    write_rich(&b);
    eft__gguf *g = NULL;
    eft__error err = {0};
    eft_status st = eft__gguf_open_memory(b.p, b.n, "rich.gguf", &g, &err);
    CHECK_MSG(st == EFT_OK, "%s", err.msg);
    if (!st) check_rich(g, b.p);
    eft__gguf_close(g);
    eft__gguf_close(NULL);
    free(b.p);
}

static void test_rich_file(void) {
    wb b = {0};
    write_rich(&b);
    char path[4200];
    snprintf(path, sizeof path, "%s/rich.gguf", test_tmpdir("gguf"));
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(b.p, 1, b.n, f) == b.n);
    if (f) fclose(f);
    eft__gguf *g = NULL;
    eft__error err = {0};
    eft_status st = eft__gguf_open(path, &g, &err);
    CHECK_MSG(st == EFT_OK, "%s", err.msg);
    if (!st) {
        /* Same checks against the mapping: the data pointers are into it, not into b. */
        const eft__tensor_view *t = eft__gguf_tensor(g, 0);
        CHECK(memcmp(t->data, b.p + eft__gguf_data_offset(g), 24) == 0);
        CHECK_EQ_INT(eft__gguf_kv_count(g), RICH_KVS);
    }
    eft__gguf_close(g);
    free(b.p);

    g = (eft__gguf *)&g;
    snprintf(path, sizeof path, "%s/missing.gguf", test_tmpdir("gguf"));
    CHECK_EQ_INT(eft__gguf_open(path, &g, &err), EFT_ERR_NOT_FOUND);
    CHECK(g == NULL);
    CHECK_CONTAINS(err.msg, "missing.gguf");
}

static void test_every_truncation(void) {
    /* Every proper prefix of a valid file is refused as malformed, and says where. */
    wb b = {0};
    write_rich(&b);
    int bad = 0;
    for (size_t n = 0; n < b.n; n++) {
        eft__gguf *g = NULL;
        eft__error err = {0};
        eft_status st = eft__gguf_open_memory(n ? b.p : NULL, n, "t.gguf", &g, &err);
        bool named = strstr(err.msg, "t.gguf: ") &&
                     (strstr(err.msg, "truncated") || strstr(err.msg, "beyond the end") ||
                      strstr(err.msg, "cannot fit") || strstr(err.msg, "not a GGUF file") ||
                      strstr(err.msg, "but the file has"));
        if (st != EFT_ERR_FORMAT || g || !named) {
            if (bad++ < 5) fprintf(stderr, "  prefix %zu: status %d: %s\n", n, st, err.msg);
        }
        eft__gguf_close(g);
    }
    CHECK_EQ_INT(bad, 0);
    free(b.p);
}

/* ---------------------------------------------------------------------------------------------
 * Header and metadata errors
 * ------------------------------------------------------------------------------------------- */

static void test_bad_header(void) {
    wb b = {0};
    put(&b, "GG", 2);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "not a GGUF file: it has only 2 bytes", NULL);
    put(&b, "GGML", 4), u32_(&b, 3), u64_(&b, 0), u64_(&b, 0);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "not a GGUF file", "47 47 4d 4c");
    header(&b, 1, 0, 0);
    EXPECT_FAIL(&b, EFT_ERR_UNSUPPORTED, "GGUF version 1 is not supported", NULL);
    header(&b, 4, 0, 0);
    EXPECT_FAIL(&b, EFT_ERR_UNSUPPORTED, "GGUF version 4 is not supported", NULL);
    header(&b, 0x03000000u, 0, 0);
    EXPECT_FAIL(&b, EFT_ERR_UNSUPPORTED, "byte-swapped (big-endian)", "0x03000000");
    put(&b, "GGUF", 4), u32_(&b, 3), u64_(&b, 0);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "truncated: the kv_count of the header needs 8 bytes at offset 16", NULL);

    /* Version 2 and an empty file (no kvs, no tensors) are fine. */
    header(&b, 2, 0, 0);
    eft__gguf *g = NULL;
    eft__error err = {0};
    CHECK_EQ_INT(eft__gguf_open_memory(b.p, b.n, "t.gguf", &g, &err), EFT_OK);
    CHECK(g && eft__gguf_version(g) == 2 && eft__gguf_kv_count(g) == 0 && eft__gguf_tensor_count(g) == 0);
    eft__gguf_close(g);
    free(b.p);
}

static void test_absurd_counts(void) {
    wb b = {0};
    header(&b, 3, 0, 1ull << 40);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "kv_count 1099511627776 cannot fit in the 0 bytes", NULL);
    header(&b, 3, UINT64_MAX, 0);
    zeros(&b, 100);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "tensor_count 18446744073709551615 cannot fit in the 100 bytes", NULL);
    header(&b, 3, 0, 1);
    kv_(&b, "tokens", EFT__GGUF_ARRAY), u32_(&b, EFT__GGUF_STRING), u64_(&b, 1000000);
    zeros(&b, 64);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "key 'tokens': array of 1000000 STRING elements cannot fit in the 64 bytes",
                NULL);
    header(&b, 3, 0, 1);
    kv_(&b, "big", EFT__GGUF_ARRAY), u32_(&b, EFT__GGUF_UINT64), u64_(&b, 1ull << 61);
    zeros(&b, 16);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "key 'big': array of 2305843009213693952 UINT64 elements cannot fit", NULL);
}

static void test_bad_strings(void) {
    wb b = {0};
    header(&b, 3, 0, 1);
    u64_(&b, 1000), put(&b, "abcdefghijklm", 13);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "the key of key/value #0 (at offset 24) has length 1000, beyond the end",
                "(13 bytes remain)");
    header(&b, 3, 0, 1);
    kv_(&b, "general.name", EFT__GGUF_STRING), u64_(&b, UINT64_MAX), put(&b, "x", 1);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "string value of key 'general.name'", "length 18446744073709551615, beyond the end");
    header(&b, 3, 0, 1);
    kv_(&b, "tokenizer.ggml.tokens", EFT__GGUF_ARRAY), u32_(&b, EFT__GGUF_STRING), u64_(&b, 2);
    str_(&b, "ok"), u64_(&b, 50), put(&b, "short", 5);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "string 1 of the array in key 'tokenizer.ggml.tokens' has length 50", NULL);
    header(&b, 3, 0, 1);
    kv_(&b, "llama.block_count", EFT__GGUF_UINT32), u16_(&b, 7);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "truncated: the value of key 'llama.block_count' needs 4 bytes", NULL);
}

static void test_bad_kvs(void) {
    wb b = {0};
    header(&b, 3, 0, 2);
    kv_(&b, "k", EFT__GGUF_UINT8), u8_(&b, 1);
    kv_(&b, "k", EFT__GGUF_STRING), str_(&b, "again");
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "duplicate key 'k' (key/values #0 and #1)", NULL);
    header(&b, 3, 0, 1);
    kv_(&b, "odd", (eft__gguf_type)13), u64_(&b, 0);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "key 'odd' has unknown value type 13", NULL);
    header(&b, 3, 0, 1);
    kv_(&b, "odd.arr", EFT__GGUF_ARRAY), u32_(&b, 99), u64_(&b, 0);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "key 'odd.arr' is an array of unknown element type 99", NULL);

    /* general.alignment: must be a UINT32 power of two. */
    header(&b, 3, 0, 1);
    kv_(&b, "general.alignment", EFT__GGUF_UINT32), u32_(&b, 48);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "general.alignment must be a UINT32 power of two, found UINT32 48", NULL);
    header(&b, 3, 0, 1);
    kv_(&b, "general.alignment", EFT__GGUF_UINT32), u32_(&b, 0);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "general.alignment must be a UINT32 power of two, found UINT32 0", NULL);
    header(&b, 3, 0, 1);
    kv_(&b, "general.alignment", EFT__GGUF_UINT64), u64_(&b, 64);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "general.alignment must be a UINT32 power of two, found UINT64 64", NULL);
    header(&b, 3, 0, 1);
    kv_(&b, "general.alignment", EFT__GGUF_STRING), str_(&b, "32");
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "found STRING", NULL);
}

/* An array nested `depth` levels (the innermost an empty INT32 array) under key "deep". */
static void write_nested(wb *b, int depth) {
    header(b, 3, 0, 1);
    kv_(b, "deep", EFT__GGUF_ARRAY);
    for (int d = 1; d < depth; d++) u32_(b, EFT__GGUF_ARRAY), u64_(b, 1);
    u32_(b, EFT__GGUF_INT32), u64_(b, 0);
}

static void test_nesting(void) {
    wb b = {0};
    write_nested(&b, EFT__GGUF_MAX_DEPTH);
    eft__gguf *g = NULL;
    eft__error err = {0};
    CHECK_EQ_INT(eft__gguf_open_memory(b.p, b.n, "t.gguf", &g, &err), EFT_OK);
    if (g) {
        eft__gguf_kv kv = *eft__gguf_find(g, "deep"), sub;
        int levels = 1;
        while (eft__gguf_arr_sub(&kv, 0, &sub)) kv = sub, levels++;
        CHECK_EQ_INT(levels, EFT__GGUF_MAX_DEPTH);
        CHECK_EQ_INT(eft__gguf_arr_type(&kv), EFT__GGUF_INT32);
    }
    eft__gguf_close(g);
    free(b.p);
    b = (wb){0};
    write_nested(&b, EFT__GGUF_MAX_DEPTH + 1);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "key 'deep' has arrays nested deeper than 8 levels", NULL);
}

/* ---------------------------------------------------------------------------------------------
 * Tensor errors
 * ------------------------------------------------------------------------------------------- */

static void test_bad_tensor_shapes(void) {
    wb b = {0};
    one_tensor(&b, "blk.0.w", 0, NULL, 0, 0, 32);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "tensor 'blk.0.w' has 0 dimensions; GGUF allows 1 to 4", NULL);
    one_tensor(&b, "blk.0.w", 5, (uint64_t[]){1, 1, 1, 1, 1}, 0, 0, 32);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "tensor 'blk.0.w' has 5 dimensions", NULL);
    one_tensor(&b, "huge", 3, (uint64_t[]){1ull << 32, 1ull << 32, 1ull << 32}, 0, 0, 32);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "tensor 'huge' has too many elements: ne [4294967296, 4294967296, 4294967296]",
                NULL);
    one_tensor(&b, "neg", 1, (uint64_t[]){1ull << 63}, 0, 0, 32);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "tensor 'neg' has too many elements: ne [9223372036854775808]", NULL);
    one_tensor(&b, "bytes", 2, (uint64_t[]){1ull << 31, 1ull << 31}, 0, 0, 32);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "tensor 'bytes': 4611686018427387904 elements of type F32 overflow", NULL);
    one_tensor(&b, "q", 2, (uint64_t[]){33, 2}, 2, 0, 64);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "tensor 'q' of type Q4_0 has rows of 33 elements, not a multiple of the block size 32",
                NULL);
    one_tensor(&b, "k", 1, (uint64_t[]){128}, 12, 0, 160);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "tensor 'k' of type Q4_K has rows of 128 elements, not a multiple of the block size 256",
                NULL);
}

static void test_bad_tensor_types(void) {
    wb b = {0};
    one_tensor(&b, "a", 1, (uint64_t[]){32}, 9, 0, 64);
    EXPECT_FAIL(&b, EFT_ERR_UNSUPPORTED, "tensor 'a' has type Q8_1 (ggml type 9), which eft does not support", NULL);
    one_tensor(&b, "b", 1, (uint64_t[]){256}, 16, 0, 128);
    EXPECT_FAIL(&b, EFT_ERR_UNSUPPORTED, "tensor 'b' has type IQ2_XXS (ggml type 16)", NULL);
    one_tensor(&b, "c", 1, (uint64_t[]){256}, 35, 0, 128);
    EXPECT_FAIL(&b, EFT_ERR_UNSUPPORTED, "tensor 'c' has type TQ2_0", NULL);
    one_tensor(&b, "d", 1, (uint64_t[]){32}, 4, 0, 64);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "tensor 'd' has unknown ggml type id 4", NULL);
    one_tensor(&b, "e", 1, (uint64_t[]){32}, 1000, 0, 64);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "tensor 'e' has unknown ggml type id 1000", NULL);
    header(&b, 3, 1, 0);
    strn_(&b, "nul\0name", 8), u32_(&b, 1), u64_(&b, 1), u32_(&b, 0), u64_(&b, 0);
    pad_to(&b, 32), zeros(&b, 4);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "the name of tensor info #0 contains a NUL byte", NULL);

    /* Plain types GGUF stores: I8/I16/I32/I64/F64/BF16 map to eft's. */
    static const struct {
        uint32_t id;
        eft_dtype dt;
    } ok[] = {{24, EFT_DTYPE_I8}, {25, EFT_DTYPE_I16}, {26, EFT_DTYPE_I32}, {27, EFT_DTYPE_I64},
              {28, EFT_DTYPE_F64}, {30, EFT_DTYPE_BF16}, {15, EFT_DTYPE_Q8_K}, {13, EFT_DTYPE_Q5_K}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        one_tensor(&b, "t", 1, (uint64_t[]){256}, ok[i].id, 0, 2048);
        eft__gguf *g = NULL;
        eft__error err = {0};
        CHECK_EQ_INT(eft__gguf_open_memory(b.p, b.n, "t.gguf", &g, &err), EFT_OK);
        CHECK(g && eft__gguf_tensor(g, 0)->dtype == ok[i].dt);
        eft__gguf_close(g);
        free(b.p);
        b = (wb){0};
    }
}

static void test_bad_tensor_placement(void) {
    wb b = {0};
    one_tensor(&b, "w", 1, (uint64_t[]){8}, 0, 4, 64);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "tensor 'w' has data offset 4, not a multiple of the alignment 32", NULL);

    /* Header 24 + name 8+1 + n_dims 4 + ne 8 + type 4 + offset 8 = 57, padded to 64; 16 floats
     * at offset 32 end at 64 + 32 + 64 = 160, but only 64 + 80 bytes are there. */
    one_tensor(&b, "w", 1, (uint64_t[]){16}, 0, 32, 80);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "tensor 'w' (64 bytes at data offset 32) ends at byte 160 but the file has 144 bytes",
                NULL);
    one_tensor(&b, "w", 1, (uint64_t[]){16}, 0, UINT64_MAX - 31, 80);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "tensor 'w' (64 bytes at data offset 18446744073709551584) ends beyond 2^64", NULL);

    /* A file that ends right after the tensor infos, without the padding, with a tensor in it. */
    header(&b, 3, 1, 0);
    tinfo(&b, "w", 1, (uint64_t[]){1}, 0, 0);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "tensor 'w' (4 bytes at data offset 0) ends at byte 68 but the file has 57 bytes",
                NULL);

    /* Overlap: [0, 64) and [32, 96). */
    header(&b, 3, 2, 0);
    tinfo(&b, "first", 1, (uint64_t[]){16}, 0, 0);
    tinfo(&b, "second", 1, (uint64_t[]){16}, 0, 32);
    pad_to(&b, 32), zeros(&b, 96);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "tensors 'first' (data bytes 0 to 64) and 'second' (data bytes 32 to 96) overlap",
                NULL);
    /* Out of order but disjoint is fine; the same start twice is not. */
    header(&b, 3, 2, 0);
    tinfo(&b, "later", 1, (uint64_t[]){8}, 0, 32);
    tinfo(&b, "earlier", 1, (uint64_t[]){8}, 0, 0);
    pad_to(&b, 32), zeros(&b, 64);
    eft__gguf *g = NULL;
    eft__error err = {0};
    CHECK_EQ_INT(eft__gguf_open_memory(b.p, b.n, "t.gguf", &g, &err), EFT_OK);
    CHECK(g && strcmp(eft__gguf_tensor(g, 0)->name, "later") == 0);
    eft__gguf_close(g);
    free(b.p);
    b = (wb){0};
    header(&b, 3, 2, 0);
    tinfo(&b, "x", 1, (uint64_t[]){8}, 0, 0);
    tinfo(&b, "y", 1, (uint64_t[]){1}, 0, 0);
    pad_to(&b, 32), zeros(&b, 64);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "overlap", "'y' (data bytes 0 to 4)");

    header(&b, 3, 2, 0);
    tinfo(&b, "same", 1, (uint64_t[]){8}, 0, 0);
    tinfo(&b, "same", 1, (uint64_t[]){8}, 0, 32);
    pad_to(&b, 32), zeros(&b, 64);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "duplicate tensor name 'same' (tensor infos #0 and #1)", NULL);
}

static void test_alignment_honoured(void) {
    /* general.alignment = 1: no padding, tensors at any byte. */
    wb b = {0};
    header(&b, 3, 2, 1);
    kv_(&b, "general.alignment", EFT__GGUF_UINT32), u32_(&b, 1);
    tinfo(&b, "a", 1, (uint64_t[]){3}, 1, 0);
    tinfo(&b, "b", 1, (uint64_t[]){32}, 8, 6);
    size_t start = b.n;
    u16_(&b, 0x3c00), u16_(&b, 0x4000), u16_(&b, 0x4200);
    u16_(&b, 0x3400); /* the Q8_0 block at data byte 6, not 4-aligned: d = 0.25 */
    for (int i = 0; i < 32; i++) u8_(&b, (uint8_t)i);
    eft__gguf *g = NULL;
    eft__error err = {0};
    CHECK_EQ_INT(eft__gguf_open_memory(b.p, b.n, "t.gguf", &g, &err), EFT_OK);
    if (g) {
        CHECK_EQ_INT(eft__gguf_alignment(g), 1);
        CHECK_EQ_INT(eft__gguf_data_offset(g), start);
        float y[32];
        const eft__tensor_view *t = eft__gguf_find_tensor(g, "b");
        CHECK(t->data == b.p + start + 6);
        CHECK(eft__dequantize_row(t->dtype, t->data, y, 32) && y[31] == 7.75f);
    }
    eft__gguf_close(g);
    free(b.p);

    /* general.alignment = 64: the data section and offsets follow it. */
    b = (wb){0};
    header(&b, 3, 1, 1);
    kv_(&b, "general.alignment", EFT__GGUF_UINT32), u32_(&b, 64);
    tinfo(&b, "a", 1, (uint64_t[]){4}, 0, 32);
    pad_to(&b, 64), zeros(&b, 64);
    EXPECT_FAIL(&b, EFT_ERR_FORMAT, "tensor 'a' has data offset 32, not a multiple of the alignment 64", NULL);
}

static void test_large_string_array(void) {
    /* 200,000 strings: parsing is one pass and element i is found without walking. */
    enum { N = 200000 };
    wb b = {0};
    header(&b, 3, 0, 1);
    kv_(&b, "tokenizer.ggml.tokens", EFT__GGUF_ARRAY), u32_(&b, EFT__GGUF_STRING), u64_(&b, N);
    char s[32];
    for (int i = 0; i < N; i++) {
        snprintf(s, sizeof s, "tok%d", i);
        str_(&b, s);
    }
    eft__gguf *g = NULL;
    eft__error err = {0};
    CHECK_EQ_INT(eft__gguf_open_memory(b.p, b.n, "t.gguf", &g, &err), EFT_OK);
    if (g) {
        const eft__gguf_kv *kv = eft__gguf_find(g, "tokenizer.ggml.tokens");
        CHECK_EQ_INT(eft__gguf_arr_len(kv), N);
        eft__gguf_str v;
        int bad = 0;
        for (int i = N - 1; i >= 0; i -= 7) {
            snprintf(s, sizeof s, "tok%d", i);
            if (!eft__gguf_arr_str(g, kv, (uint64_t)i, &v) || !str_eq(v, s)) bad++;
        }
        CHECK_EQ_INT(bad, 0);
    }
    eft__gguf_close(g);
    free(b.p);
}

/* ---------------------------------------------------------------------------------------------
 * Fixtures written by the gguf Python package
 * ------------------------------------------------------------------------------------------- */

static const char *const k_type_names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                           "bool", "string", "array", "uint64", "int64", "float64"};

/* Compares one scalar (or array element, as a kv) with its JSON value. Integers go through
 * jansson as doubles (it has no unsigned 64-bit integers), so the extremes are also checked exactly
 * by test_metadata_fixture. */
static bool json_matches(const eft__gguf_kv *kv, const json_t *v) {
    switch (kv->type) {
    case EFT__GGUF_BOOL: return json_is_boolean(v) && json_is_true(v) == kv->v.b;
    case EFT__GGUF_STRING:
        return json_is_string(v) && json_string_length(v) == kv->v.s.len &&
               memcmp(json_string_value(v), kv->v.s.ptr, kv->v.s.len) == 0;
    case EFT__GGUF_FLOAT32:
    case EFT__GGUF_FLOAT64: return json_is_number(v) && json_number_value(v) == kv->v.f;
    case EFT__GGUF_UINT8: case EFT__GGUF_UINT16: case EFT__GGUF_UINT32: case EFT__GGUF_UINT64:
        return json_is_number(v) && json_number_value(v) == (double)kv->v.u;
    case EFT__GGUF_INT8: case EFT__GGUF_INT16: case EFT__GGUF_INT32: case EFT__GGUF_INT64:
        return json_is_number(v) && json_number_value(v) == (double)kv->v.i;
    default: return false;
    }
}

/* Element i of a non-nested array as a kv (so json_matches applies). */
static bool arr_elem_kv(const eft__gguf *g, const eft__gguf_kv *arr, uint64_t i, eft__gguf_kv *e) {
    memset(e, 0, sizeof *e);
    e->type = eft__gguf_arr_type(arr);
    int64_t iv;
    switch (e->type) {
    case EFT__GGUF_STRING: return eft__gguf_arr_str(g, arr, i, &e->v.s);
    case EFT__GGUF_FLOAT32: case EFT__GGUF_FLOAT64: return eft__gguf_arr_f64(arr, i, &e->v.f);
    case EFT__GGUF_BOOL:
        if (!eft__gguf_arr_i64(arr, i, &iv)) return false;
        e->v.b = iv != 0;
        return true;
    case EFT__GGUF_UINT64: /* may exceed INT64_MAX: read the raw element */
        if (i >= eft__gguf_arr_len(arr)) return false;
        memcpy(&e->v.u, arr->v.arr.data + 8 * i, 8);
        return true;
    default:
        if (!eft__gguf_arr_i64(arr, i, &iv)) return false;
        e->v.i = iv;
        if (e->type == EFT__GGUF_UINT8 || e->type == EFT__GGUF_UINT16 || e->type == EFT__GGUF_UINT32) e->v.u = (uint64_t)iv;
        return true;
    }
}

static void test_metadata_fixture(void) {
    const char *gp = test_path("tests/fixtures/gguf/metadata.gguf"), *jp = test_path("tests/fixtures/gguf/metadata.json");
    json_error_t jerr;
    json_t *doc = json_load_file(jp, JSON_DECODE_INT_AS_REAL, &jerr);
    CHECK_MSG(doc != NULL, "%s: %s", jp, jerr.text);
    eft__gguf *g = NULL;
    eft__error err = {0};
    eft_status st = eft__gguf_open(gp, &g, &err);
    CHECK_MSG(st == EFT_OK, "%s", err.msg);
    if (!doc || st) goto done;

    CHECK_EQ_INT(eft__gguf_version(g), json_number_value(json_object_get(doc, "gguf_version")));
    CHECK_EQ_INT(eft__gguf_alignment(g), json_number_value(json_object_get(doc, "alignment")));
    CHECK_EQ_INT(eft__gguf_data_offset(g) % eft__gguf_alignment(g), 0);
    json_t *kvs = json_object_get(doc, "kv");
    CHECK_EQ_INT(eft__gguf_kv_count(g), json_array_size(kvs));
    for (size_t i = 0; i < json_array_size(kvs) && i < eft__gguf_kv_count(g); i++) {
        json_t *e = json_array_get(kvs, i), *v = json_object_get(e, "value");
        const char *key = json_string_value(json_object_get(e, "key"));
        const eft__gguf_kv *kv = eft__gguf_kv_at(g, i);
        CHECK_MSG(str_eq(kv->key, key), "kv #%zu is not %s", i, key);
        CHECK_MSG(eft__gguf_find(g, key) == kv, "%s not found by hash", key);
        CHECK_EQ_STR(k_type_names[kv->type], json_string_value(json_object_get(e, "type")));
        if (kv->type != EFT__GGUF_ARRAY) {
            CHECK_MSG(json_matches(kv, v), "%s: value differs", key);
            continue;
        }
        CHECK_EQ_STR(k_type_names[eft__gguf_arr_type(kv)], json_string_value(json_object_get(e, "element_type")));
        CHECK_EQ_INT(eft__gguf_arr_len(kv), json_array_size(v));
        for (size_t j = 0; j < json_array_size(v) && j < eft__gguf_arr_len(kv); j++) {
            eft__gguf_kv el;
            CHECK_MSG(arr_elem_kv(g, kv, j, &el) && json_matches(&el, json_array_get(v, j)), "%s[%zu] differs", key, j);
        }
    }
    /* The values jansson cannot hold exactly. */
    uint64_t u;
    int64_t i64;
    int64_t el;
    CHECK(eft__gguf_get_u64(g, "test.u64", &u) && u == 18000000000000000000ull);
    CHECK(eft__gguf_get_i64(g, "test.i64", &i64) && i64 == -9000000000000000000ll);
    const eft__gguf_kv *ai = eft__gguf_find(g, "test.arr_i64");
    CHECK(eft__gguf_arr_i64(ai, 0, &el) && el == INT64_MIN);
    CHECK(eft__gguf_arr_i64(ai, 1, &el) && el == INT64_MAX);
    const eft__gguf_kv *au = eft__gguf_find(g, "test.arr_u64");
    CHECK(!eft__gguf_arr_i64(au, 1, &el)); /* UINT64_MAX does not fit an int64 */

    /* Tensors: names, shapes and values. */
    json_t *ts = json_object_get(doc, "tensors");
    CHECK_EQ_INT(eft__gguf_tensor_count(g), json_array_size(ts));
    for (size_t i = 0; i < json_array_size(ts); i++) {
        json_t *e = json_array_get(ts, i);
        const char *name = json_string_value(json_object_get(e, "name"));
        const eft__tensor_view *t = eft__gguf_find_tensor(g, name);
        CHECK_MSG(t != NULL, "tensor %s missing", name);
        if (!t) continue;
        CHECK_EQ_STR(eft_dtype_name(t->dtype), json_string_value(json_object_get(e, "type")));
        json_t *shape = json_object_get(e, "shape"), *vals = json_object_get(e, "values");
        CHECK_EQ_INT(t->ndim, json_array_size(shape));
        for (int d = 0; d < t->ndim; d++) CHECK_EQ_INT(t->shape[d], json_number_value(json_array_get(shape, d)));
        CHECK_EQ_INT(t->n_elems, json_array_size(vals));
        for (uint64_t k = 0; k < t->n_elems && k < json_array_size(vals); k++) {
            double want = json_number_value(json_array_get(vals, k)), got;
            if (t->dtype == EFT_DTYPE_I32) {
                int32_t x;
                memcpy(&x, (const uint8_t *)t->data + 4 * k, 4);
                got = x;
            } else {
                float y[1];
                const uint8_t *p = (const uint8_t *)t->data + k * eft__dtype_traits_of(t->dtype)->block_bytes;
                CHECK(eft__dequantize_row(t->dtype, p, y, 1));
                got = y[0];
            }
            CHECK_MSG(got == want, "%s[%llu]: %g != %g", name, (unsigned long long)k, got, want);
        }
    }
done:
    json_decref(doc);
    eft__gguf_close(g);
}

static void test_tiny_llama_fixture(void) {
    /* Every tensor of tiny-llama.gguf has the type its generator recorded (tensor_types in the
     * reference file's metadata), and the counts gguf.GGUFReader reports. */
    eft__gguf *g = NULL;
    eft__safetensors *ref = NULL;
    eft__error err = {0};
    eft_status s1 = eft__gguf_open(test_path("tests/fixtures/gguf/tiny-llama.gguf"), &g, &err);
    CHECK_MSG(s1 == EFT_OK, "%s", err.msg);
    eft_status s2 = eft__safetensors_open(test_path("tests/fixtures/ref/tiny-llama-gguf.safetensors"), &ref, &err);
    CHECK_MSG(s2 == EFT_OK, "%s", err.msg);
    const char *js = s2 ? NULL : eft__safetensors_metadata(ref, "tensor_types");
    json_t *types = js ? json_loads(js, 0, NULL) : NULL;
    CHECK(types != NULL);
    if (s1 || !types) goto done;
    CHECK_EQ_INT(eft__gguf_tensor_count(g), json_object_size(types));
    CHECK_EQ_INT(eft__gguf_tensor_count(g), 21);
    CHECK_EQ_INT(eft__gguf_kv_count(g), 25);
    CHECK_EQ_INT(eft__gguf_data_offset(g), 12608);
    const char *name;
    json_t *v;
    json_object_foreach(types, name, v) {
        const eft__tensor_view *t = eft__gguf_find_tensor(g, name);
        CHECK_MSG(t && strcmp(eft_dtype_name(t->dtype), json_string_value(v)) == 0, "tensor %s", name);
    }
    const eft__tensor_view *t = eft__gguf_find_tensor(g, "token_embd.weight");
    CHECK(t && t->ndim == 2 && t->shape[0] == 495 && t->shape[1] == 64);
    const eft__gguf_kv *tok = eft__gguf_find(g, "tokenizer.ggml.tokens");
    eft__gguf_str s;
    CHECK_EQ_INT(eft__gguf_arr_len(tok), 495);
    CHECK(eft__gguf_arr_str(g, tok, 4, &s) && str_eq(s, "<0x01>"));
    CHECK_EQ_INT(eft__gguf_arr_type(eft__gguf_find(g, "tokenizer.ggml.scores")), EFT__GGUF_FLOAT32);
done:
    json_decref(types);
    eft__safetensors_close(ref);
    eft__gguf_close(g);
}

/* The first *.gguf in the model folder, or NULL. */
static const char *find_model_gguf(void) {
    static char path[4300];
    const char *dir = test_path("models/SmolLM2-135M-Instruct-Q4_1");
    DIR *d = opendir(dir);
    if (!d) return NULL;
    struct dirent *e;
    const char *found = NULL;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 5 && strcmp(e->d_name + n - 5, ".gguf") == 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            found = path;
            break;
        }
    }
    closedir(d);
    return found;
}

static void test_smollm2(void) {
    const char *path = find_model_gguf();
    if (!path) {
        printf("     (skipped: no .gguf under models/SmolLM2-135M-Instruct-Q4_1)\n");
        return;
    }
    /* Expected values read with gguf.GGUFReader from SmolLM2-135M-Instruct.Q4_1.gguf. */
    eft__gguf *g = NULL;
    eft__error err = {0};
    eft_status st = eft__gguf_open(path, &g, &err);
    CHECK_MSG(st == EFT_OK, "%s", err.msg);
    if (st) return;
    eft__gguf_str s;
    uint64_t u;
    double f;
    bool b;
    CHECK_EQ_INT(eft__gguf_version(g), 3);
    CHECK_EQ_INT(eft__gguf_kv_count(g), 33);
    CHECK(eft__gguf_get_str(g, "general.architecture", &s) && str_eq(s, "llama"));
    CHECK(eft__gguf_get_u64(g, "llama.block_count", &u) && u == 30);
    CHECK(eft__gguf_get_f64(g, "llama.rope.freq_base", &f) && f == 100000.0);
    CHECK(eft__gguf_get_f64(g, "llama.attention.layer_norm_rms_epsilon", &f) && f == (double)1e-5f);
    CHECK(eft__gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b) && !b);
    const eft__gguf_kv *tok = eft__gguf_find(g, "tokenizer.ggml.tokens");
    CHECK_EQ_INT(eft__gguf_arr_len(tok), 49152);
    CHECK(eft__gguf_arr_str(g, tok, 0, &s) && str_eq(s, "<|endoftext|>"));
    CHECK(eft__gguf_arr_str(g, tok, 2, &s) && str_eq(s, "<|im_end|>"));
    CHECK(eft__gguf_arr_str(g, tok, 1000, &s) && str_eq(s, "()"));
    CHECK(eft__gguf_arr_str(g, tok, 49151, &s) && str_eq(s, "ectable"));
    const eft__gguf_kv *merges = eft__gguf_find(g, "tokenizer.ggml.merges");
    CHECK_EQ_INT(eft__gguf_arr_len(merges), 48900);
    CHECK(eft__gguf_arr_str(g, merges, 48899, &s) && str_eq(s, "ect able"));
    int64_t tt;
    CHECK(eft__gguf_arr_i64(eft__gguf_find(g, "tokenizer.ggml.token_type"), 0, &tt) && tt == 3);

    CHECK_EQ_INT(eft__gguf_tensor_count(g), 272);
    CHECK_EQ_INT(eft__gguf_data_offset(g), 1785664);
    const eft__tensor_view *t = eft__gguf_tensor(g, 0);
    CHECK_EQ_STR(t->name, "token_embd.weight");
    CHECK(t->dtype == EFT_DTYPE_Q8_0 && t->ndim == 2 && t->shape[0] == 49152 && t->shape[1] == 576);
    CHECK_EQ_INT(t->nbytes, 30081024);
    t = eft__gguf_find_tensor(g, "blk.0.attn_q.weight");
    CHECK(t && t->dtype == EFT_DTYPE_Q4_1 && t->nbytes == 207360);
    float y[576];
    if (t) {
        CHECK(eft__dequantize_row(t->dtype, t->data, y, 576));
        CHECK(y[0] == -0.0963134765625f && y[1] == 0.1573486328125f && y[3] == -0.73046875f);
    }
    t = eft__gguf_find_tensor(g, "output_norm.weight");
    CHECK(t && t->dtype == EFT_DTYPE_F32 && t->ndim == 1 && t->shape[0] == 576);
    if (t) CHECK(eft__dequantize_row(t->dtype, t->data, y, 3) && y[0] == 1.7578125f && y[2] == 1.78125f);
    eft__gguf_close(g);
}

int main(void) {
    RUN(test_rich_memory);
    RUN(test_rich_file);
    RUN(test_every_truncation);
    RUN(test_bad_header);
    RUN(test_absurd_counts);
    RUN(test_bad_strings);
    RUN(test_bad_kvs);
    RUN(test_nesting);
    RUN(test_bad_tensor_shapes);
    RUN(test_bad_tensor_types);
    RUN(test_bad_tensor_placement);
    RUN(test_alignment_honoured);
    RUN(test_large_string_array);
    RUN(test_metadata_fixture);
    RUN(test_tiny_llama_fixture);
    RUN(test_smollm2);
    return test_summary();
}
