/* test_safetensors.c — the safetensors reader and checkpoint folders: files written here from C
 * with every dtype, scalars, empty tensors, metadata and padding, read back view by view; every
 * kind of malformed header, each checked for its status and for a message that names the file,
 * tensor and numbers; sharded checkpoints with their failure modes; out-of-memory at every
 * allocation; eft__tensor_to_f32 on every dtype; and the real models when they are present. */
#include <fcntl.h>
#include <unistd.h>

#include <jansson.h>

#include "core/core.h"
#include "core/json.h"
#include "formats/safetensors.h"
#include "test.h"

/* ---------------------------------------------------------------------------------------------
 * Writing files
 * ------------------------------------------------------------------------------------------- */

static char g_dir[4096];

/* dir/name in a rotating static buffer. */
static const char *tmp_path(const char *dir, const char *name) {
    static char buf[4][4200];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", dir, name);
    return b;
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) fprintf(stderr, "cannot write %s\n", path);
    if (f) fclose(f);
}

/* A safetensors file: u64 header length, header (padded with `pad` spaces), then data. */
static void write_st(const char *path, const char *header, size_t pad, const void *data, size_t n) {
    size_t hl = strlen(header) + pad;
    uint8_t *buf = calloc(1, 8 + hl + n + 1);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, strlen(header));
    memset(buf + 8 + strlen(header), ' ', pad);
    if (n) memcpy(buf + 8 + hl, data, n);
    write_bytes(path, buf, 8 + hl + n);
    free(buf);
}

/* Builds a header and its data section tensor by tensor, in the order added. */
typedef struct builder {
    char hdr[16384];
    size_t hl;
    uint8_t data[8192];
    size_t dl;
} builder;

static void b_init(builder *b, const char *metadata_json) {
    b->dl = 0;
    b->hl = (size_t)snprintf(b->hdr, sizeof b->hdr, "{");
    if (metadata_json) b->hl += (size_t)snprintf(b->hdr + b->hl, sizeof b->hdr - b->hl, "\"__metadata__\":%s", metadata_json);
}

static void b_add(builder *b, const char *name, const char *dtype, const char *shape, const void *bytes, size_t n) {
    b->hl += (size_t)snprintf(b->hdr + b->hl, sizeof b->hdr - b->hl,
                              "%s\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                              b->hl > 1 ? "," : "", name, dtype, shape, b->dl, b->dl + n);
    if (n) memcpy(b->data + b->dl, bytes, n);
    b->dl += n;
}

/* Pads the header so the data section starts on an 8-byte boundary, as the Python writer does. */
static const char *b_write(builder *b, const char *name) {
    snprintf(b->hdr + b->hl, sizeof b->hdr - b->hl, "}");
    size_t pad = (8 - (strlen(b->hdr) % 8)) % 8;
    const char *p = tmp_path(g_dir, name);
    write_st(p, b->hdr, pad, b->data, b->dl);
    return p;
}

/* ---------------------------------------------------------------------------------------------
 * Valid files
 * ------------------------------------------------------------------------------------------- */

/* Every dtype with hand-picked values, odd-sized I8 first so that later tensors are unaligned. */
static const char *write_all_dtypes(const char *name) {
    static builder b;
    b_init(&b, "{\"format\":\"pt\",\"note\":\"hello\"}");
    int8_t i8[3] = {-128, 127, 5};
    b_add(&b, "i8", "I8", "[3]", i8, sizeof i8);
    double f64[2] = {1.5, -2.25};
    b_add(&b, "f64", "F64", "[2]", f64, sizeof f64);
    float f32[6] = {1, 2, 3, 4, 5, 6.5f};
    b_add(&b, "f32", "F32", "[2,3]", f32, sizeof f32);
    uint16_t f16[3] = {0x3c00, 0xc000, 0x3800}; /* 1, -2, 0.5 */
    b_add(&b, "f16", "F16", "[3]", f16, sizeof f16);
    uint16_t bf16[2] = {0x3f80, 0xc040}; /* 1, -3 */
    b_add(&b, "bf16", "BF16", "[1,2]", bf16, sizeof bf16);
    int64_t i64[2] = {-5, (int64_t)1 << 40};
    b_add(&b, "i64", "I64", "[2]", i64, sizeof i64);
    int32_t i32[2] = {-7, 100000};
    b_add(&b, "i32", "I32", "[2]", i32, sizeof i32);
    int16_t i16[2] = {-300, 300};
    b_add(&b, "i16", "I16", "[2]", i16, sizeof i16);
    uint8_t u8[2] = {0, 255};
    b_add(&b, "u8", "U8", "[2]", u8, sizeof u8);
    uint8_t bools[3] = {0, 1, 2};
    b_add(&b, "bool", "BOOL", "[3]", bools, sizeof bools);
    uint8_t e4m3[4] = {0x38, 0xc0, 0x01, 0x7e}; /* 1, -2, 2^-9, 448 */
    b_add(&b, "e4m3", "F8_E4M3", "[4]", e4m3, sizeof e4m3);
    uint8_t e5m2[3] = {0x3c, 0xc0, 0x7c}; /* 1, -2, inf */
    b_add(&b, "e5m2", "F8_E5M2", "[3]", e5m2, sizeof e5m2);
    uint16_t u16[1] = {65535};
    b_add(&b, "u16", "U16", "[1]", u16, sizeof u16);
    uint32_t u32[1] = {4000000000u};
    b_add(&b, "u32", "U32", "[1]", u32, sizeof u32);
    uint64_t u64[1] = {(uint64_t)1 << 50};
    b_add(&b, "u64", "U64", "[1]", u64, sizeof u64);
    float scalar = 3.5f;
    b_add(&b, "scalar", "F32", "[]", &scalar, sizeof scalar);
    b_add(&b, "empty", "F32", "[0,4]", NULL, 0);
    return b_write(&b, name);
}

/* Converts a view to float (in a static buffer) and checks the values. */
static void check_values(const eft__tensor_view *v, const float *want, size_t n) {
    static float got[64];
    eft__error err;
    CHECK(v != NULL);
    if (!v) return;
    CHECK_EQ_INT(v->n_elems, n);
    CHECK_EQ_INT(eft__tensor_to_f32(v, got, n, &err), EFT_OK);
    for (size_t i = 0; i < n; i++) {
        if (isinf(want[i])) CHECK_MSG(isinf(got[i]) && (got[i] > 0) == (want[i] > 0), "%s[%zu]", v->name, i);
        else CHECK_MSG(got[i] == want[i], "%s[%zu]: %g != %g", v->name, i, got[i], want[i]);
    }
}

static void test_all_dtypes(void) {
    const char *path = write_all_dtypes("all.safetensors");
    eft__safetensors *st = NULL;
    eft__error err;
    eft__error_clear(&err);
    CHECK_EQ_INT(eft__safetensors_open(path, &st, &err), EFT_OK);
    if (!st) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    CHECK_EQ_INT(eft__safetensors_count(st), 17);
    /* File order is data order: i8 first; "empty" (at the very end, 0 bytes) last. */
    CHECK_EQ_STR(eft__safetensors_tensor(st, 0)->name, "i8");
    CHECK_EQ_STR(eft__safetensors_tensor(st, 16)->name, "empty");
    CHECK(eft__safetensors_tensor(st, 17) == NULL);
    for (size_t i = 0; i < eft__safetensors_count(st); i++) {
        const eft__tensor_view *v = eft__safetensors_tensor(st, i);
        CHECK(eft__safetensors_find(st, v->name) == v);
        CHECK_EQ_INT(v->file_index, 0);
    }
    CHECK(eft__safetensors_find(st, "nope") == NULL);
    CHECK(eft__safetensors_find(st, "__metadata__") == NULL);

    const eft__tensor_view *v = eft__safetensors_find(st, "f32");
    CHECK_EQ_INT(v->dtype, EFT_DTYPE_F32);
    CHECK_EQ_INT(v->ndim, 2);
    CHECK_EQ_INT(v->shape[0], 2);
    CHECK_EQ_INT(v->shape[1], 3);
    CHECK_EQ_INT(v->nbytes, 24);
    float x;
    memcpy(&x, (const uint8_t *)v->data + 20, 4);
    CHECK(x == 6.5f);
    CHECK_EQ_INT(eft__safetensors_find(st, "bf16")->dtype, EFT_DTYPE_BF16);
    CHECK_EQ_INT(eft__safetensors_find(st, "e4m3")->dtype, EFT_DTYPE_F8_E4M3);
    CHECK_EQ_INT(eft__safetensors_find(st, "e5m2")->dtype, EFT_DTYPE_F8_E5M2);
    CHECK_EQ_INT(eft__safetensors_find(st, "bool")->dtype, EFT_DTYPE_BOOL);
    CHECK_EQ_INT(eft__safetensors_find(st, "u64")->dtype, EFT_DTYPE_U64);

    const eft__tensor_view *s = eft__safetensors_find(st, "scalar");
    CHECK_EQ_INT(s->ndim, 0);
    CHECK_EQ_INT(s->n_elems, 1);
    CHECK_EQ_INT(s->nbytes, 4);
    const eft__tensor_view *e = eft__safetensors_find(st, "empty");
    CHECK_EQ_INT(e->ndim, 2);
    CHECK_EQ_INT(e->shape[0], 0);
    CHECK_EQ_INT(e->shape[1], 4);
    CHECK_EQ_INT(e->n_elems, 0);
    CHECK_EQ_INT(e->nbytes, 0);
    CHECK(e->data == NULL);

    /* eft__tensor_to_f32 on every dtype, against hand-computed values. */
    check_values(eft__safetensors_find(st, "i8"), (float[]){-128, 127, 5}, 3);
    check_values(eft__safetensors_find(st, "f64"), (float[]){1.5f, -2.25f}, 2);
    check_values(v, (float[]){1, 2, 3, 4, 5, 6.5f}, 6);
    check_values(eft__safetensors_find(st, "f16"), (float[]){1, -2, 0.5f}, 3);
    check_values(eft__safetensors_find(st, "bf16"), (float[]){1, -3}, 2);
    check_values(eft__safetensors_find(st, "i64"), (float[]){-5, 1099511627776.0f}, 2);
    check_values(eft__safetensors_find(st, "i32"), (float[]){-7, 100000}, 2);
    check_values(eft__safetensors_find(st, "i16"), (float[]){-300, 300}, 2);
    check_values(eft__safetensors_find(st, "u8"), (float[]){0, 255}, 2);
    check_values(eft__safetensors_find(st, "bool"), (float[]){0, 1, 1}, 3);
    check_values(eft__safetensors_find(st, "e4m3"), (float[]){1, -2, 0x1p-9f, 448}, 4);
    check_values(eft__safetensors_find(st, "e5m2"), (float[]){1, -2, INFINITY}, 3);
    check_values(eft__safetensors_find(st, "u16"), (float[]){65535}, 1);
    check_values(eft__safetensors_find(st, "u32"), (float[]){4000000000.0f}, 1);
    check_values(eft__safetensors_find(st, "u64"), (float[]){1125899906842624.0f}, 1);
    check_values(s, (float[]){3.5f}, 1);
    CHECK_EQ_INT(eft__tensor_to_f32(e, NULL, 0, &err), EFT_OK);

    /* Metadata in header order. */
    CHECK_EQ_INT(eft__safetensors_metadata_count(st), 2);
    CHECK_EQ_STR(eft__safetensors_metadata(st, "format"), "pt");
    CHECK_EQ_STR(eft__safetensors_metadata(st, "note"), "hello");
    CHECK(eft__safetensors_metadata(st, "missing") == NULL);
    CHECK_EQ_STR(eft__safetensors_metadata_key(st, 0), "format");
    CHECK_EQ_STR(eft__safetensors_metadata_value(st, 1), "hello");
    CHECK(eft__safetensors_metadata_key(st, 2) == NULL);
    eft__safetensors_close(st);
    eft__safetensors_close(NULL);
}

static void test_to_f32_errors(void) {
    float out[4];
    eft__error err;
    uint8_t bytes[36] = {0};
    eft__tensor_view v = {.name = "w", .dtype = EFT_DTYPE_F32, .ndim = 1, .shape = {2}, .n_elems = 2,
                          .data = bytes, .nbytes = 8};
    CHECK_EQ_INT(eft__tensor_to_f32(&v, out, 3, &err), EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(err.msg, "'w' has 2 elements but the output holds 3");
    v.nbytes = 4; /* a hand-made view that claims more elements than its bytes hold */
    CHECK_EQ_INT(eft__tensor_to_f32(&v, out, 2, &err), EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(err.msg, "do not fit its 4 bytes");
    eft__tensor_view q = {.name = "q", .dtype = EFT_DTYPE_Q4_0, .ndim = 1, .shape = {32}, .n_elems = 32,
                          .data = bytes, .nbytes = 18};
    CHECK_EQ_INT(eft__tensor_to_f32(&q, out, 32, &err), EFT_ERR_UNSUPPORTED);
    CHECK_CONTAINS(err.msg, "Q4_0");
}

/* Header padded with many spaces; a gap between tensors; trailing bytes after the last one. */
static void test_padding_and_gaps(void) {
    const char *hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}";
    float data[5] = {1, 0, 0, 2, 9};
    const char *path = tmp_path(g_dir, "gaps.safetensors");
    write_st(path, hdr, 37, data, sizeof data);
    eft__safetensors *st = NULL;
    eft__error err;
    CHECK_EQ_INT(eft__safetensors_open(path, &st, &err), EFT_OK);
    if (!st) return;
    CHECK_EQ_INT(eft__safetensors_count(st), 2);
    CHECK_EQ_INT(eft__safetensors_metadata_count(st), 0);
    float x;
    memcpy(&x, eft__safetensors_find(st, "b")->data, 4);
    CHECK(x == 2);
    eft__safetensors_close(st);

    /* An empty header object: no tensors at all is a valid (if useless) file. */
    write_st(path, "{}", 6, NULL, 0);
    CHECK_EQ_INT(eft__safetensors_open(path, &st, &err), EFT_OK);
    if (st) CHECK_EQ_INT(eft__safetensors_count(st), 0);
    eft__safetensors_close(st);

    /* Zero-size tensors may sit anywhere, even inside another tensor's bytes. */
    hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
          "\"z\":{\"dtype\":\"F16\",\"shape\":[3,0],\"data_offsets\":[4,4]}}";
    write_st(path, hdr, 0, data, 8);
    CHECK_EQ_INT(eft__safetensors_open(path, &st, &err), EFT_OK);
    if (st) CHECK_EQ_INT(eft__safetensors_find(st, "z")->nbytes, 0);
    eft__safetensors_close(st);
}

static void test_open_memory(void) {
    uint8_t buf[8 + 64 + 4];
    const char *hdr = "{\"x\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,4]}}";
    size_t hl = strlen(hdr);
    memset(buf, 0, sizeof buf);
    buf[0] = (uint8_t)hl;
    memcpy(buf + 8, hdr, hl);
    int32_t val = -42;
    memcpy(buf + 8 + hl, &val, 4);
    eft__safetensors *st = NULL;
    eft__error err;
    CHECK_EQ_INT(eft__safetensors_open_memory(buf, 8 + hl + 4, "mem", &st, &err), EFT_OK);
    if (st) {
        const eft__tensor_view *v = eft__safetensors_find(st, "x");
        CHECK(v && v->data == buf + 8 + hl);
        eft__safetensors_close(st);
    }
    CHECK_EQ_INT(eft__safetensors_open_memory(buf, 8 + hl + 3, "mem", &st, &err), EFT_ERR_FORMAT);
    CHECK(st == NULL);
    CHECK_CONTAINS(err.msg, "mem: tensor 'x' ends at byte");
    CHECK_EQ_INT(eft__safetensors_open_memory(NULL, 0, "nothing", &st, &err), EFT_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "nothing: file has 0 bytes");
}

/* ---------------------------------------------------------------------------------------------
 * Malformed files
 * ------------------------------------------------------------------------------------------- */

/* Writes header + data as bad.safetensors, opens it, and checks the status and that the message
 * names the file and contains each needle. */
static void expect_bad_at(int line, const char *header, const void *data, size_t n, eft_status want,
                          const char *needle1, const char *needle2) {
    const char *path = tmp_path(g_dir, "bad.safetensors");
    write_st(path, header, 0, data, n);
    eft__safetensors *st = (eft__safetensors *)1;
    eft__error err;
    eft__error_clear(&err);
    eft_status got = eft__safetensors_open(path, &st, &err);
    CHECK_MSG(got == want, "line %d: status %s, expected %s (%s)", line, eft_status_str(got),
              eft_status_str(want), err.msg);
    CHECK_MSG(st == NULL, "line %d: a failed open must leave nothing to close", line);
    CHECK_MSG(strstr(err.msg, "bad.safetensors: ") != NULL, "line %d: file not named in \"%s\"", line, err.msg);
    if (needle1) CHECK_MSG(strstr(err.msg, needle1) != NULL, "line %d: \"%s\" not in \"%s\"", line, needle1, err.msg);
    if (needle2) CHECK_MSG(strstr(err.msg, needle2) != NULL, "line %d: \"%s\" not in \"%s\"", line, needle2, err.msg);
    if (got == EFT_OK) eft__safetensors_close(st);
}
#define EXPECT_BAD(...) expect_bad_at(__LINE__, __VA_ARGS__)

/* One tensor "w" whose entry is the given JSON text. */
static const char *one(const char *entry) {
    static char buf[1024];
    snprintf(buf, sizeof buf, "{\"w\":%s}", entry);
    return buf;
}

static void test_bad_framing(void) {
    const char *path = tmp_path(g_dir, "bad.safetensors");
    eft__safetensors *st = NULL;
    eft__error err;

    write_bytes(path, "\x05\0\0\0\0", 5);
    CHECK_EQ_INT(eft__safetensors_open(path, &st, &err), EFT_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "bad.safetensors: file has 5 bytes, too short for the 8-byte header length");

    uint8_t b[20] = {0xe8, 0x03}; /* header length 1000 */
    write_bytes(path, b, sizeof b);
    CHECK_EQ_INT(eft__safetensors_open(path, &st, &err), EFT_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "header length 1000 is larger than the 12 bytes that follow it");

    uint8_t huge[8] = {0, 0, 0, 0, 0, 0, 0, 0x80}; /* 2^63 */
    write_bytes(path, huge, 8);
    CHECK_EQ_INT(eft__safetensors_open(path, &st, &err), EFT_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "header length 9223372036854775808");

    /* Over the 100 MB limit, in a sparse file that really is that long. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    uint64_t hl = EFT__ST_MAX_HEADER + 1;
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(hl >> (8 * i));
    CHECK(fd >= 0 && write(fd, le, 8) == 8 && ftruncate(fd, (off_t)(hl + 16)) == 0);
    if (fd >= 0) close(fd);
    CHECK_EQ_INT(eft__safetensors_open(path, &st, &err), EFT_ERR_LIMIT);
    CHECK_CONTAINS(err.msg, "header length 100000001 is over the limit of 100000000 bytes");
    unlink(path);

    CHECK_EQ_INT(eft__safetensors_open(tmp_path(g_dir, "absent.safetensors"), &st, &err), EFT_ERR_NOT_FOUND);
    CHECK_CONTAINS(err.msg, "absent.safetensors");
    CHECK(st == NULL);

    EXPECT_BAD("", NULL, 0, EFT_ERR_FORMAT, "not valid JSON", NULL);
    EXPECT_BAD("{\"w\": ", NULL, 0, EFT_ERR_FORMAT, "not valid JSON", "line 1, column");
    EXPECT_BAD("{\"a\":1}\n}", NULL, 0, EFT_ERR_FORMAT, "not valid JSON", "line 2");
    EXPECT_BAD("{\"a\":\"\xff\"}", NULL, 0, EFT_ERR_FORMAT, "not valid JSON", NULL);
    EXPECT_BAD("[1, 2]", NULL, 0, EFT_ERR_FORMAT, "header is an array, expected a JSON object", NULL);
    EXPECT_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
               "\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4,8]}}",
               "\0\0\0\0\0\0\0\0", 8, EFT_ERR_FORMAT, "duplicate object key", NULL);
}

static void test_bad_entries(void) {
    static const uint8_t z[64];
    EXPECT_BAD(one("5"), z, 0, EFT_ERR_FORMAT, "tensor 'w': entry is an integer, expected an object", NULL);
    EXPECT_BAD(one("{\"shape\":[1],\"data_offsets\":[0,4]}"), z, 4, EFT_ERR_FORMAT,
               "tensor 'w' has no \"dtype\"", NULL);
    EXPECT_BAD(one("{\"dtype\":\"F32\",\"data_offsets\":[0,4]}"), z, 4, EFT_ERR_FORMAT,
               "tensor 'w' has no \"shape\"", NULL);
    EXPECT_BAD(one("{\"dtype\":\"F32\",\"shape\":[1]}"), z, 4, EFT_ERR_FORMAT,
               "tensor 'w' has no \"data_offsets\"", NULL);
    EXPECT_BAD(one("{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}"), z, 4, EFT_ERR_FORMAT,
               "tensor 'w': \"dtype\" is an integer, expected a string", NULL);
    EXPECT_BAD(one("{\"dtype\":\"F4\",\"shape\":[1],\"data_offsets\":[0,4]}"), z, 4, EFT_ERR_UNSUPPORTED,
               "tensor 'w' has unknown dtype 'F4'", NULL);
    EXPECT_BAD(one("{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}"), z, 4, EFT_ERR_FORMAT,
               "tensor 'w': \"shape\" is a string, expected an array", NULL);
    EXPECT_BAD(one("{\"dtype\":\"F32\",\"shape\":[2,-3],\"data_offsets\":[0,4]}"), z, 4, EFT_ERR_FORMAT,
               "tensor 'w': shape dimension 1 is -3, expected a non-negative integer", NULL);
    EXPECT_BAD(one("{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,4]}"), z, 4, EFT_ERR_FORMAT,
               "shape dimension 0 is a real number", NULL);
    EXPECT_BAD(one("{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,4]}"), z, 4, EFT_ERR_FORMAT,
               "shape dimension 0 is a string", NULL);
    EXPECT_BAD(one("{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}"), z, 4,
               EFT_ERR_LIMIT, "tensor 'w' has rank 9, over the limit of 8 dimensions", NULL);
    EXPECT_BAD(one("{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}"), z, 4,
               EFT_ERR_FORMAT, "shape [4294967296, 4294967296] has more than 2^64 elements", NULL);
    EXPECT_BAD(one("{\"dtype\":\"F32\",\"shape\":[4611686018427387904,2],\"data_offsets\":[0,4]}"), z, 4,
               EFT_ERR_FORMAT, "9223372036854775808 elements of F32", "more than 2^64 bytes");
    EXPECT_BAD(one("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{}}"), z, 4, EFT_ERR_FORMAT,
               "\"data_offsets\" is an object, expected [begin, end]", NULL);
    EXPECT_BAD(one("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}"), z, 4, EFT_ERR_FORMAT,
               "\"data_offsets\" is an array of the wrong length", NULL);
    EXPECT_BAD(one("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-1,3]}"), z, 4, EFT_ERR_FORMAT,
               "data_offsets begin is an integer, expected a non-negative integer", NULL);
    EXPECT_BAD(one("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}"), z, 4, EFT_ERR_FORMAT,
               "data_offsets end is a real number", NULL);
    EXPECT_BAD(one("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}"), z, 8, EFT_ERR_FORMAT,
               "tensor 'w': data_offsets begin 8 is after end 4", NULL);
    EXPECT_BAD(one("{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}"), z, 24, EFT_ERR_FORMAT,
               "tensor 'w': data_offsets [0, 20] hold 20 bytes but shape [2, 3] of F32 needs 24 bytes", NULL);
    EXPECT_BAD(one("{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,0]}"), z, 4, EFT_ERR_FORMAT,
               "hold 0 bytes but shape [] of I32 needs 4 bytes", NULL);
}

static void test_bad_layout(void) {
    static const uint8_t z[64];
    /* The data section holds 8 bytes; the tensor wants bytes 4..20 of it. */
    const char *h = one("{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[4,20]}");
    uint64_t hl = strlen(h);
    char want[200];
    snprintf(want, sizeof want, "tensor 'w' ends at byte %llu but the file has %llu bytes",
             (unsigned long long)(8 + hl + 20), (unsigned long long)(8 + hl + 8));
    EXPECT_BAD(h, z, 8, EFT_ERR_FORMAT, want, NULL);

    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               z, 12, EFT_ERR_FORMAT, "tensors 'a' (bytes 0..8) and 'b' (bytes 4..12)", "overlap");
    /* Overlap is found after sorting, so header order does not matter, nor does containment. */
    EXPECT_BAD("{\"inner\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[20,22]},"
               "\"mid\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[30,32]},"
               "\"outer\":{\"dtype\":\"U8\",\"shape\":[24],\"data_offsets\":[16,40]}}",
               z, 40, EFT_ERR_FORMAT, "'outer' (bytes 16..40) and 'inner' (bytes 20..22)", "overlap");
    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
               z, 4, EFT_ERR_FORMAT, "'a' (bytes 0..4) and 'b' (bytes 0..4)", "overlap");

    /* A very long name is cut in the message so that the numbers after it survive. */
    char longh[1200], longname[1001];
    memset(longname, 'x', 1000);
    longname[1000] = 0;
    snprintf(longh, sizeof longh, "{\"%s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", longname);
    snprintf(want, sizeof want, "xxx...' ends at byte %zu but the file has %zu bytes", 8 + strlen(longh) + 4,
             8 + strlen(longh) + 2);
    EXPECT_BAD(longh, z, 2, EFT_ERR_FORMAT, want, NULL);

    EXPECT_BAD("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", z, 4, EFT_ERR_FORMAT,
               "a tensor has an empty name", NULL);
    EXPECT_BAD("{\"__metadata__\":{\"format\":\"pt\",\"step\":1000}}", NULL, 0, EFT_ERR_FORMAT,
               "\"__metadata__\" key 'step' is an integer, expected a string", NULL);
    EXPECT_BAD("{\"__metadata__\":[\"pt\"]}", NULL, 0, EFT_ERR_FORMAT,
               "\"__metadata__\" is an array, expected an object of strings", NULL);
}



/* ---------------------------------------------------------------------------------------------
 * Checkpoint folders
 * ------------------------------------------------------------------------------------------- */

static const char *make_dir(const char *name) {
    static char buf[4][4200];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", g_dir, name);
    char cmd[8500];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", b, b);
    if (system(cmd) != 0) fprintf(stderr, "cannot create %s\n", b);
    return b;
}

/* A shard with tensors named by the arguments (NULL-terminated), each an F32 [2] of {k, k+0.5}. */
static void write_shard(const char *dir, const char *file, double k, ...) {
    builder b;
    b_init(&b, "{\"format\":\"pt\"}");
    va_list ap;
    va_start(ap, k);
    const char *name;
    while ((name = va_arg(ap, const char *))) {
        float v[2] = {(float)k, (float)k + 0.5f};
        b_add(&b, name, "F32", "[2]", v, sizeof v);
        k += 1;
    }
    va_end(ap);
    snprintf(b.hdr + b.hl, sizeof b.hdr - b.hl, "}");
    write_st(tmp_path(dir, file), b.hdr, 0, b.data, b.dl);
}

static void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

#define SH1 "model-00001-of-00002.safetensors"
#define SH2 "model-00002-of-00002.safetensors"

static void write_sharded(const char *dir) {
    write_shard(dir, SH2, 10, "c", "d", NULL);
    write_shard(dir, SH1, 0, "a", "b", "extra", NULL); /* "extra" is not in the index: tolerated */
    write_text(tmp_path(dir, "model.safetensors.index.json"),
               "{\"metadata\":{\"total_size\":40},\"weight_map\":{\"c\":\"" SH2 "\",\"a\":\"" SH1
               "\",\"b\":\"" SH1 "\",\"d\":\"" SH2 "\"}}");
}

static void test_checkpoint_sharded(void) {
    const char *dir = make_dir("sharded");
    write_sharded(dir);
    eft__st_checkpoint *c = NULL;
    eft__error err;
    CHECK_EQ_INT(eft__st_checkpoint_open_dir(dir, &c, &err), EFT_OK);
    if (!c) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    CHECK_EQ_INT(eft__st_checkpoint_file_count(c), 2);
    CHECK_CONTAINS(eft__st_checkpoint_file_path(c, 0), SH1);
    CHECK_CONTAINS(eft__st_checkpoint_file_path(c, 1), SH2);
    CHECK(eft__st_checkpoint_file_path(c, 2) == NULL);
    CHECK_EQ_INT(eft__st_checkpoint_count(c), 5);
    CHECK_EQ_INT(eft__st_checkpoint_total_bytes(c), 40);
    const eft__tensor_view *d = eft__st_checkpoint_find(c, "d");
    CHECK(d && d->file_index == 1);
    if (d) check_values(d, (float[]){11, 11.5f}, 2);
    const eft__tensor_view *a = eft__st_checkpoint_find(c, "a");
    CHECK(a && a->file_index == 0);
    if (a) check_values(a, (float[]){0, 0.5f}, 2);
    CHECK(eft__st_checkpoint_find(c, "extra") != NULL);
    CHECK(eft__st_checkpoint_find(c, "zzz") == NULL);
    for (size_t i = 0; i < eft__st_checkpoint_count(c); i++) {
        const eft__tensor_view *v = eft__st_checkpoint_tensor(c, i);
        CHECK(eft__st_checkpoint_find(c, v->name) == v);
    }
    CHECK(eft__st_checkpoint_tensor(c, 5) == NULL);
    eft__st_checkpoint_close(c);
    eft__st_checkpoint_close(NULL);
}

static void expect_bad_dir_at(int line, const char *dir, eft_status want, const char *n1, const char *n2) {
    eft__st_checkpoint *c = (eft__st_checkpoint *)1;
    eft__error err;
    eft__error_clear(&err);
    eft_status got = eft__st_checkpoint_open_dir(dir, &c, &err);
    CHECK_MSG(got == want, "line %d: status %s, expected %s (%s)", line, eft_status_str(got),
              eft_status_str(want), err.msg);
    CHECK_MSG(c == NULL, "line %d: a failed open must leave nothing to close", line);
    if (n1) CHECK_MSG(strstr(err.msg, n1) != NULL, "line %d: \"%s\" not in \"%s\"", line, n1, err.msg);
    if (n2) CHECK_MSG(strstr(err.msg, n2) != NULL, "line %d: \"%s\" not in \"%s\"", line, n2, err.msg);
    if (got == EFT_OK) eft__st_checkpoint_close(c);
}
#define EXPECT_BAD_DIR(...) expect_bad_dir_at(__LINE__, __VA_ARGS__)

static void test_checkpoint_bad(void) {
    const char *dir = make_dir("missing_shard");
    write_shard(dir, SH1, 0, "a", NULL);
    write_text(tmp_path(dir, "model.safetensors.index.json"),
               "{\"weight_map\":{\"a\":\"" SH1 "\",\"b\":\"" SH2 "\"}}");
    EXPECT_BAD_DIR(dir, EFT_ERR_NOT_FOUND, "model.safetensors.index.json: lists shard '" SH2 "'",
                   "does not exist");

    dir = make_dir("absent_tensor");
    write_shard(dir, SH1, 0, "a", NULL);
    write_shard(dir, SH2, 0, "c", NULL);
    write_text(tmp_path(dir, "model.safetensors.index.json"),
               "{\"weight_map\":{\"a\":\"" SH1 "\",\"b\":\"" SH2 "\",\"c\":\"" SH2 "\"}}");
    EXPECT_BAD_DIR(dir, EFT_ERR_FORMAT, "lists tensor 'b' in shard '" SH2 "' but that shard has no such tensor",
                   NULL);

    dir = make_dir("twice");
    write_shard(dir, SH1, 0, "a", "b", NULL);
    write_shard(dir, SH2, 0, "b", NULL);
    write_text(tmp_path(dir, "model.safetensors.index.json"),
               "{\"weight_map\":{\"a\":\"" SH1 "\",\"b\":\"" SH2 "\"}}");
    EXPECT_BAD_DIR(dir, EFT_ERR_FORMAT, "tensor 'b' is in two shards, '" SH1 "' and '" SH2 "'", NULL);

    dir = make_dir("traversal");
    write_shard(dir, SH1, 0, "a", NULL);
    write_text(tmp_path(dir, "model.safetensors.index.json"),
               "{\"weight_map\":{\"a\":\"" SH1 "\",\"b\":\"../../etc/x.safetensors\"}}");
    EXPECT_BAD_DIR(dir, EFT_ERR_FORMAT, "tensor 'b' is mapped to shard '../../etc/x.safetensors'",
                   "not a plain file name");
    write_text(tmp_path(dir, "model.safetensors.index.json"), "{\"weight_map\":{\"a\":\"..\"}}");
    EXPECT_BAD_DIR(dir, EFT_ERR_FORMAT, "shard '..'", "not a plain file name");
    write_text(tmp_path(dir, "model.safetensors.index.json"), "{\"weight_map\":{\"a\":\"/abs.safetensors\"}}");
    EXPECT_BAD_DIR(dir, EFT_ERR_FORMAT, "shard '/abs.safetensors'", NULL);
    write_text(tmp_path(dir, "model.safetensors.index.json"), "{\"weight_map\":{\"a\":7}}");
    EXPECT_BAD_DIR(dir, EFT_ERR_FORMAT, "\"weight_map\" entry for tensor 'a' is an integer", NULL);
    write_text(tmp_path(dir, "model.safetensors.index.json"), "{\"metadata\":{}}");
    EXPECT_BAD_DIR(dir, EFT_ERR_FORMAT, "index.json: \"weight_map\" is missing", NULL);
    write_text(tmp_path(dir, "model.safetensors.index.json"), "{\"weight_map\":{}}");
    EXPECT_BAD_DIR(dir, EFT_ERR_FORMAT, "\"weight_map\" is empty", NULL);
    write_text(tmp_path(dir, "model.safetensors.index.json"), "{\"weight_map\":{\"a\":1,\"a\":2}}");
    EXPECT_BAD_DIR(dir, EFT_ERR_FORMAT, "index.json: not valid JSON: duplicate object key", NULL);

    /* A broken shard's own error comes through, naming the shard. */
    dir = make_dir("bad_shard");
    write_bytes(tmp_path(dir, SH1), "\1\0", 2);
    write_text(tmp_path(dir, "model.safetensors.index.json"), "{\"weight_map\":{\"a\":\"" SH1 "\"}}");
    EXPECT_BAD_DIR(dir, EFT_ERR_FORMAT, SH1 ": file has 2 bytes", NULL);

    EXPECT_BAD_DIR(make_dir("empty"), EFT_ERR_NOT_FOUND, "no model.safetensors.index.json", NULL);
    EXPECT_BAD_DIR(tmp_path(g_dir, "no_such_dir"), EFT_ERR_NOT_FOUND, "no_such_dir: not a folder", NULL);
    dir = make_dir("two_no_index");
    write_shard(dir, SH1, 0, "a", NULL);
    write_shard(dir, SH2, 0, "b", NULL);
    EXPECT_BAD_DIR(dir, EFT_ERR_FORMAT, "2 *.safetensors files ('" SH1 "', '" SH2 "')", "no model.safetensors.index.json");
}

static void test_checkpoint_single(void) {
    eft__st_checkpoint *c = NULL;
    eft__error err;
    const char *dir = make_dir("single");
    write_shard(dir, "model.safetensors", 1, "w", NULL);
    write_shard(dir, "other.safetensors", 1, "v", NULL); /* model.safetensors wins over the rest */
    CHECK_EQ_INT(eft__st_checkpoint_open_dir(dir, &c, &err), EFT_OK);
    if (c) {
        CHECK_EQ_INT(eft__st_checkpoint_file_count(c), 1);
        CHECK_CONTAINS(eft__st_checkpoint_file_path(c, 0), "/model.safetensors");
        CHECK(eft__st_checkpoint_find(c, "w") != NULL);
        CHECK_EQ_INT(eft__st_checkpoint_total_bytes(c), 8);
        eft__st_checkpoint_close(c);
    }
    dir = make_dir("fallback");
    write_shard(dir, "pytorch_weights.safetensors", 1, "v", NULL);
    CHECK_EQ_INT(eft__st_checkpoint_open_dir(dir, &c, &err), EFT_OK);
    if (c) {
        CHECK_CONTAINS(eft__st_checkpoint_file_path(c, 0), "pytorch_weights.safetensors");
        CHECK_EQ_INT(eft__st_checkpoint_find(c, "v")->file_index, 0);
        eft__st_checkpoint_close(c);
    }
}


/* Every allocation of eft's own during an open, failed one at a time: each failure must be
 * reported as out-of-memory, not crash, and leave nothing behind (AddressSanitizer's leak check
 * proves the last part). jansson's allocations are passed through: jansson 2.14 crashes on a
 * failed allocation inside json_loadb, which is its bug to fix, not ours to prove (core/json.h). */
static int g_allocs, g_fail_at = -1;
static void *fail_alloc(size_t n, void *ud) {
    if (eft__alloc_in_json()) return malloc(n);
    return g_allocs++ == g_fail_at ? NULL : malloc(n);
}
static void *fail_realloc(void *p, size_t n, void *ud) {
    if (eft__alloc_in_json()) return realloc(p, n);
    return g_allocs++ == g_fail_at ? NULL : realloc(p, n);
}
static void fail_free(void *p, void *ud) { free(p); }

/* Opens path (a file or a folder) and closes it again; returns the status and whether a handle
 * was left after a failure. */
static eft_status open_close(const char *path, bool folder, bool *leftover, eft__error *err) {
    eft_status s;
    if (folder) {
        eft__st_checkpoint *c = NULL;
        s = eft__st_checkpoint_open_dir(path, &c, err);
        *leftover = s != EFT_OK && c != NULL;
        eft__st_checkpoint_close(c);
    } else {
        eft__safetensors *st = NULL;
        s = eft__safetensors_open(path, &st, err);
        *leftover = s != EFT_OK && st != NULL;
        eft__safetensors_close(st);
    }
    return s;
}

static void check_oom(const char *path, bool folder) {
    eft_allocator a = {fail_alloc, fail_realloc, fail_free, NULL};
    eft__error err;
    bool leftover;
    eft_set_allocator(&a);
    g_fail_at = -1;
    g_allocs = 0;
    CHECK_EQ_INT(open_close(path, folder, &leftover, &err), EFT_OK);
    int own = g_allocs;
    for (g_fail_at = 0; g_fail_at < own; g_fail_at++) {
        g_allocs = 0;
        eft_status s = open_close(path, folder, &leftover, &err);
        CHECK_MSG(s == EFT_ERR_OUT_OF_MEMORY, "%s: failing allocation %d of %d gave %s: %s", path,
                  g_fail_at, own, eft_status_str(s), err.msg);
        CHECK(!leftover);
    }
    g_fail_at = -1;
    eft_set_allocator(NULL);
    CHECK_MSG(own > 5, "%d allocations", own);
}

static void test_out_of_memory(void) {
    check_oom(write_all_dtypes("oom.safetensors"), false);
    const char *dir = make_dir("oom_sharded");
    write_sharded(dir);
    check_oom(dir, true);
}

/* ---------------------------------------------------------------------------------------------
 * Real models, when present
 * ------------------------------------------------------------------------------------------- */

static void test_real_bert_fixture(void) {
    const char *path = test_path("tests/fixtures/models/bert/model.safetensors");
    if (access(path, R_OK) != 0) {
        printf("skip test_real_bert_fixture: %s is absent\n", path);
        return;
    }
    eft__safetensors *st = NULL;
    eft__error err;
    CHECK_EQ_INT(eft__safetensors_open(path, &st, &err), EFT_OK);
    if (!st) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    CHECK(eft__safetensors_count(st) > 0);
    size_t n_f32 = 0;
    for (size_t i = 0; i < eft__safetensors_count(st); i++)
        n_f32 += eft__safetensors_tensor(st, i)->dtype == EFT_DTYPE_F32;
    CHECK(n_f32 > 0);
    eft__safetensors_close(st);
}

static void test_real_minilm(void) {
    const char *dir = test_path("models/all-MiniLM-L6-v2");
    char file[4200];
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    if (access(file, R_OK) != 0) {
        printf("skip test_real_minilm: %s is absent\n", file);
        return;
    }
    eft__st_checkpoint *c = NULL;
    eft__error err;
    CHECK_EQ_INT(eft__st_checkpoint_open_dir(dir, &c, &err), EFT_OK);
    if (!c) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    const eft__tensor_view *v = eft__st_checkpoint_find(c, "embeddings.word_embeddings.weight");
    CHECK(v != NULL);
    if (v) {
        CHECK_EQ_INT(v->ndim, 2);
        CHECK_EQ_INT(v->shape[0], 30522);
        CHECK_EQ_INT(v->shape[1], 384);
        CHECK_EQ_INT(v->dtype, EFT_DTYPE_F32);
        CHECK_EQ_INT(v->nbytes, 30522ull * 384 * 4);
    }
    /* Every tensor converts, and the weights hold finite numbers. */
    const eft__tensor_view *ln = eft__st_checkpoint_find(c, "embeddings.LayerNorm.weight");
    CHECK(ln != NULL);
    if (ln && ln->n_elems == 384) {
        float w[384];
        CHECK_EQ_INT(eft__tensor_to_f32(ln, w, 384, &err), EFT_OK);
        for (int i = 0; i < 384; i++) CHECK_MSG(isfinite(w[i]), "LayerNorm.weight[%d] = %g", i, w[i]);
    }
    CHECK(eft__st_checkpoint_total_bytes(c) < 90868376ull);
    CHECK(eft__st_checkpoint_count(c) > 50);
    eft__st_checkpoint_close(c);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "%s", test_tmpdir("safetensors"));
    RUN(test_all_dtypes);
    RUN(test_to_f32_errors);
    RUN(test_padding_and_gaps);
    RUN(test_open_memory);
    RUN(test_bad_framing);
    RUN(test_bad_entries);
    RUN(test_bad_layout);
    RUN(test_checkpoint_sharded);
    RUN(test_checkpoint_bad);
    RUN(test_checkpoint_single);
    RUN(test_out_of_memory);
    RUN(test_real_bert_fixture);
    RUN(test_real_minilm);
    return test_summary();
}
