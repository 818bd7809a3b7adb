/*
 * test_program.c — compiled programs: the file format round trip; every corruption (truncation at
 * each sixteenth, every flipped metadata byte, offsets out of range, wrong magic or version,
 * broken table entries) refused cleanly with a message naming the place; encoders loaded from a
 * program bit-identical to freshly built ones (BERT, RoBERTa, XLM-R, MPNet, the cross-encoder;
 * f32 and f16); refusal of a program whose model changed or lacks a blob; and the embedder's
 * program cache (hit, miss, key changes, corrupt or unwritable cache) and program paths. Every
 * test works in its own folder under the build tree; EFT_CACHE_DIR points there too, so nothing
 * is written to the user's cache.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "api/model_internal.h"
#include "core/core.h"
#include "eft.h"
#include "graph/program.h"
#include "kernels/cpu/kernels.h"
#include "models/encoder.h"
#include "runtime/compile.h"
#include "test.h"

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

static uint8_t *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f != NULL, "cannot write %s", path);
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

/* Files in dir whose name ends with suffix. */
static int count_files(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name), s = strlen(suffix);
        if (l >= s && !strcmp(e->d_name + l - s, suffix)) n++;
    }
    closedir(d);
    return n;
}

static uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* Recomputes the metadata checksum after a deliberate edit, so the check under test is reached. */
static void fix_checksum(uint8_t *d) {
    uint64_t table_end = rd64(d + 40) + rd64(d + 48) * 128;
    uint64_t h = eft__fnv1a64(EFT__FNV1A64_INIT, d, 56);
    wr64(d + 56, eft__fnv1a64(h, d + 64, (size_t)(table_end - 64)));
}

/* Expects the bytes to be refused with status want and a message containing needle. */
static void expect_bad(const uint8_t *d, size_t n, eft_status want, const char *needle, const char *what) {
    eft__program *p = NULL;
    eft__error err = {0};
    eft_status s = eft__program_open_memory(d, n, "bad.eft", &p, &err);
    CHECK_MSG(s == want && p == NULL, "%s: status %d (want %d), msg '%s'", what, (int)s, (int)want, err.msg);
    if (needle) CHECK_CONTAINS(err.msg, needle);
    CHECK_CONTAINS(err.msg, "bad.eft");
    eft__program_close(p);
}

static const char *k_header = "{\"kind\": \"test\", \"n\": 3}";

/* Writes a small program with four blobs (one empty) to path; returns the expected float data. */
static void write_sample(const char *path, float *f32, uint16_t *f16, int8_t *i8) {
    for (int i = 0; i < 100; i++) f32[i] = (float)i * 0.5f - 3.0f;
    for (int i = 0; i < 33; i++) f16[i] = (uint16_t)(i * 977);
    for (int i = 0; i < 7; i++) i8[i] = (int8_t)(i - 3);
    eft__program_writer *w = NULL;
    eft__error err = {0};
    CHECK(eft__program_writer_new(&w, &err) == EFT_OK);
    CHECK(eft__program_writer_add(w, "layer.0.weight", EFT_DTYPE_F32, f32, 100 * sizeof(float), &err) == EFT_OK);
    CHECK(eft__program_writer_add(w, "half", EFT_DTYPE_F16, f16, 33 * sizeof(uint16_t), &err) == EFT_OK);
    CHECK(eft__program_writer_add(w, "bytes", EFT_DTYPE_I8, i8, 7, &err) == EFT_OK);
    CHECK(eft__program_writer_add(w, "empty", EFT_DTYPE_F32, NULL, 0, &err) == EFT_OK);
    eft_status s = eft__program_writer_write(w, path, k_header, &err);
    CHECK_MSG(s == EFT_OK, "%s", err.msg);
    eft__program_writer_free(w);
}

/* ---------------------------------------------------------------------------------------------
 * The format
 * ------------------------------------------------------------------------------------------- */

static void test_roundtrip(void) {
    const char *dir = test_tmpdir("program_roundtrip");
    char path[4200];
    snprintf(path, sizeof path, "%s/p.eft", dir);
    float f32[100];
    uint16_t f16[33];
    int8_t i8[7];
    write_sample(path, f32, f16, i8);
    CHECK_EQ_INT(count_files(dir, ".eft"), 1);
    CHECK_MSG(count_files(dir, "") == 3, "a temporary file was left behind in %s", dir); /* ., .., p.eft */
    CHECK(eft__program_is_program(path));
    char *res = eft__program_resolve(dir);
    CHECK(res == NULL); /* the folder holds p.eft, not program.eft */
    eft__free(res);

    eft__program *p = NULL;
    eft__error err = {0};
    eft_status s = eft__program_open(path, &p, &err);
    CHECK_MSG(s == EFT_OK, "%s", err.msg);
    if (!p) return;
    CHECK_EQ_STR(eft__program_header_text(p), k_header);
    CHECK_EQ_INT(json_integer_value(json_object_get((json_t *)eft__program_header(p), "n")), 3);
    CHECK_EQ_INT(eft__program_blob_count(p), 4);
    const eft__program_blob *b = eft__program_find(p, "layer.0.weight");
    CHECK(b && b->dtype == EFT_DTYPE_F32 && b->size == sizeof f32 && !memcmp(b->data, f32, sizeof f32));
    CHECK(b && (uintptr_t)b->data % 64 == 0);
    b = eft__program_find(p, "half");
    CHECK(b && b->dtype == EFT_DTYPE_F16 && b->size == sizeof f16 && !memcmp(b->data, f16, sizeof f16));
    CHECK(b && (uintptr_t)b->data % 64 == 0);
    b = eft__program_find(p, "bytes");
    CHECK(b && b->dtype == EFT_DTYPE_I8 && b->size == 7 && !memcmp(b->data, i8, 7));
    b = eft__program_find(p, "empty");
    CHECK(b && b->size == 0 && b->data == NULL);
    CHECK(eft__program_find(p, "nope") == NULL);
    CHECK_EQ_STR(eft__program_blob_at(p, 1)->name, "half");
    CHECK(eft__program_blob_at(p, 4) == NULL);
    eft__program_close(p);

    /* Writing again replaces the file in one step. */
    write_sample(path, f32, f16, i8);
    CHECK_EQ_INT(count_files(dir, ""), 3);

    /* The writer's own refusals. */
    eft__program_writer *w = NULL;
    CHECK(eft__program_writer_new(&w, &err) == EFT_OK);
    CHECK(eft__program_writer_add(w, "a", EFT_DTYPE_F32, f32, 4, &err) == EFT_OK);
    CHECK(eft__program_writer_add(w, "a", EFT_DTYPE_F32, f32, 4, &err) == EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(err.msg, "twice");
    CHECK(eft__program_writer_add(w, "", EFT_DTYPE_F32, f32, 4, &err) == EFT_ERR_INVALID_ARGUMENT);
    char longname[200];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    CHECK(eft__program_writer_add(w, longname, EFT_DTYPE_F32, f32, 4, &err) == EFT_ERR_INVALID_ARGUMENT);
    CHECK(eft__program_writer_add(w, "odd", EFT_DTYPE_F32, f32, 3, &err) == EFT_ERR_INVALID_ARGUMENT);
    /* Many blobs: the name map survives the table growing. */
    for (int i = 0; i < 300; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "blob.%d", i);
        CHECK(eft__program_writer_add(w, nm, EFT_DTYPE_F32, f32 + (i % 50), 8, &err) == EFT_OK);
    }
    CHECK(eft__program_writer_add(w, "blob.7", EFT_DTYPE_F32, f32, 4, &err) == EFT_ERR_INVALID_ARGUMENT);
    snprintf(path, sizeof path, "%s/many.eft", dir);
    CHECK(eft__program_writer_write(w, path, "{}", &err) == EFT_OK);
    /* A folder that does not exist: an error naming the temporary file, nothing left behind. */
    char bad[4300];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.eft", dir);
    CHECK(eft__program_writer_write(w, bad, "{}", &err) == EFT_ERR_IO);
    CHECK_CONTAINS(err.msg, "no/such/dir");
    eft__program_writer_free(w);
    p = NULL;
    CHECK(eft__program_open(path, &p, &err) == EFT_OK);
    if (p) {
        CHECK_EQ_INT(eft__program_blob_count(p), 301);
        const eft__program_blob *b7 = eft__program_find(p, "blob.7");
        CHECK(b7 && !memcmp(b7->data, f32 + 7, 8));
    }
    eft__program_close(p);
}

static void test_corruption(void) {
    const char *dir = test_tmpdir("program_corrupt");
    char path[4200];
    snprintf(path, sizeof path, "%s/p.eft", dir);
    float f32[100];
    uint16_t f16[33];
    int8_t i8[7];
    write_sample(path, f32, f16, i8);
    size_t n = 0;
    uint8_t *orig = read_file(path, &n);
    CHECK(orig && n > 512);
    if (!orig) return;
    uint8_t *d = malloc(n);

    /* Truncation at every sixteenth (and one byte short), from memory and from a file. */
    for (int k = 0; k < 16; k++) {
        size_t cut = n * (size_t)k / 16;
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu of %zu", cut, n);
        expect_bad(orig, cut, EFT_ERR_FORMAT, NULL, what);
        char tp[4300];
        snprintf(tp, sizeof tp, "%s/cut.eft", dir);
        write_file(tp, orig, cut);
        eft__program *p = NULL;
        eft__error err = {0};
        CHECK_MSG(eft__program_open(tp, &p, &err) != EFT_OK && !p, "%s from a file", what);
        CHECK_CONTAINS(err.msg, "cut.eft");
    }
    expect_bad(orig, n - 1, EFT_ERR_FORMAT, "truncated", "one byte short");

    /* Every byte of the header, JSON and table flipped, one at a time. */
    uint64_t table_end = rd64(orig + 40) + rd64(orig + 48) * 128;
    int accepted = 0;
    for (uint64_t i = 0; i < table_end; i++) {
        memcpy(d, orig, n);
        d[i] ^= 0x5a;
        eft__program *p = NULL;
        eft__error err = {0};
        if (eft__program_open_memory(d, n, "bad.eft", &p, &err) == EFT_OK) accepted++;
        else if (!strstr(err.msg, "bad.eft")) CHECK_MSG(0, "byte %llu: message without the file: %s", (unsigned long long)i, err.msg);
        eft__program_close(p);
    }
    CHECK_MSG(accepted == 0, "%d of %llu flipped metadata bytes were accepted", accepted, (unsigned long long)table_end);

    /* Named refusals. */
    memcpy(d, orig, n);
    d[0] = 'X';
    expect_bad(d, n, EFT_ERR_FORMAT, "not an eft program", "magic");
    memcpy(d, orig, n);
    d[8] = 1; /* a program from before encoders carried their graph: refused, not misread */
    expect_bad(d, n, EFT_ERR_UNSUPPORTED, "version 1", "version");
    memcpy(d, orig, n);
    wr64(d + 56, rd64(d + 56) ^ 1);
    expect_bad(d, n, EFT_ERR_FORMAT, "checksum", "checksum");
    memcpy(d, orig, n);
    wr64(d + 48, 1u << 30); /* refused before the checksum is looked at */
    expect_bad(d, n, EFT_ERR_FORMAT, "blobs", "blob count");
    memcpy(d, orig, n);
    wr64(d + 32, UINT64_MAX - 10);
    expect_bad(d, n, EFT_ERR_FORMAT, "JSON header", "JSON size overflow");

    /* Table entries: offsets out of range, misaligned, into the table, overflowing; bad types,
     * sizes, names. The first entry starts at the table offset. */
    const uint64_t t0 = rd64(orig + 40);
    struct {
        uint64_t at; /* byte within the entry */
        int width;   /* 8: u64, 4: u32, 1: byte */
        uint64_t value;
        const char *needle;
    } cases[] = {
        {96, 8, n, "layer.0.weight"},                  /* past the end */
        {96, 8, (uint64_t)-64, "layer.0.weight"},      /* offset + size overflows */
        {96, 8, 0, "after the table"},                 /* points at the header */
        {96, 8, t0 + 128 * 4 + 64 + 8, "64-aligned"},  /* misaligned */
        {104, 8, (uint64_t)-4, "layer.0.weight"},      /* huge size */
        {104, 8, 401, "whole number"},                 /* not a whole number of f32 */
        {112, 4, 999, "element type 999"},
        {0, 1, 0, "empty"},
        {0, 96, 'a', "not NUL-terminated"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        memcpy(d, orig, n);
        uint8_t *e = d + t0 + cases[c].at;
        if (cases[c].width == 8) wr64(e, cases[c].value);
        else if (cases[c].width == 4) {
            uint32_t v = (uint32_t)cases[c].value;
            memcpy(e, &v, 4);
        } else memset(e, (int)cases[c].value, (size_t)cases[c].width);
        fix_checksum(d);
        char what[64];
        snprintf(what, sizeof what, "table case %zu", c);
        expect_bad(d, n, EFT_ERR_FORMAT, cases[c].needle, what);
    }
    /* Two entries with one name. */
    memcpy(d, orig, n);
    memcpy(d + t0 + 128, "layer.0.weight", 15);
    fix_checksum(d);
    expect_bad(d, n, EFT_ERR_FORMAT, "twice", "duplicate name");
    /* JSON that is not an object, and JSON that does not parse (checksums fixed). */
    memcpy(d, orig, n);
    memset(d + 64, ' ', strlen(k_header));
    memcpy(d + 64, "[1,2,3]", 7);
    fix_checksum(d);
    expect_bad(d, n, EFT_ERR_FORMAT, "expected an object", "JSON array");
    memcpy(d, orig, n);
    d[64] = 'x';
    fix_checksum(d);
    expect_bad(d, n, EFT_ERR_FORMAT, "JSON header", "bad JSON");
    /* Appended bytes. */
    uint8_t *longer = malloc(n + 64);
    memcpy(longer, orig, n);
    memset(longer + n, 0, 64);
    expect_bad(longer, n + 64, EFT_ERR_FORMAT, "appended", "appended");
    free(longer);
    expect_bad(NULL, 0, EFT_ERR_FORMAT, "too short", "empty");

    /* Not a program at all: the resolver and the magic check say no. */
    CHECK(!eft__program_is_program(test_path("tests/fixtures/models/bert/config.json")));
    CHECK(!eft__program_is_program(test_path("tests/fixtures/models/bert")));
    CHECK(!eft_is_program(test_path("tests/fixtures/models/bert")));
    CHECK(eft_program_info_json(test_path("tests/fixtures/models/bert")) == NULL);
    CHECK_CONTAINS(eft_last_error(), "not an eft program");
    free(d);
    free(orig);
}

/* ---------------------------------------------------------------------------------------------
 * Encoders from programs
 * ------------------------------------------------------------------------------------------- */

static eft_model *open_model(const char *dir) {
    eft_model *m = NULL;
    eft_status s = eft_model_open(dir, NULL, &m);
    CHECK_MSG(s == EFT_OK, "%s: %s", dir, eft_last_error());
    return m;
}

static eft__encoder *build_enc(eft_model *m, int B, int T, int threads, eft_dtype wd) {
    eft__encoder_params p = eft__encoder_params_default();
    p.max_batch = B;
    p.max_tokens = T;
    p.n_threads = threads;
    p.weight_dtype = wd;
    eft__encoder *enc = NULL;
    eft__error err = {0};
    CHECK_MSG(eft__encoder_build(m, &p, &enc, &err) == EFT_OK, "build: %s", err.msg);
    return enc;
}

/* Runs forward / embed / classify on a fixed ragged batch; returns bytes written to out. */
static size_t run_all(eft__encoder *enc, int64_t vocab, float *out) {
    enum { B = 3, T = 12 };
    int32_t ids[B * T], types[B * T], lens[B] = {12, 5, 9};
    for (int i = 0; i < B * T; i++) {
        ids[i] = (int32_t)((i * 37 + 11) % vocab);
        types[i] = 0;
    }
    ids[0] = ids[T] = ids[2 * T] = 2 % (int32_t)vocab;
    eft__error err = {0};
    int64_t C = eft__encoder_hidden_size(enc), D = eft__encoder_embed_size(enc), NL = eft__encoder_num_labels(enc);
    float *o = out;
    CHECK_MSG(eft__encoder_forward(enc, ids, types, lens, B, T, o, &err) == EFT_OK, "%s", err.msg);
    o += B * T * C;
    CHECK_MSG(eft__encoder_embed(enc, ids, types, lens, B, T, o, &err) == EFT_OK, "%s", err.msg);
    o += B * D;
    if (NL > 0) {
        CHECK_MSG(eft__encoder_classify(enc, ids, types, lens, B, T, o, &err) == EFT_OK, "%s", err.msg);
        o += B * NL;
    }
    return (size_t)(o - out) * sizeof(float);
}

/* Builds name's encoder, saves it, loads it back from the program: every output bit-identical,
 * with 1 and 2 threads, in f32 and f16. */
static void check_identical(const char *name, eft_dtype wd) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/models/%s", name);
    eft_model *m = open_model(test_path(rel));
    if (!m) return;
    char path[4300];
    snprintf(path, sizeof path, "%s/%s-%s.eft", test_tmpdir("program_enc"), name, eft_dtype_name(wd));
    eft__encoder *built = build_enc(m, 3, 16, 1, wd);
    eft__error err = {0};
    eft_status s = built ? eft__encoder_save(built, m, "{\"note\": \"test\"}", path, &err) : EFT_ERR_INTERNAL;
    CHECK_MSG(s == EFT_OK, "%s: save: %s", name, err.msg);
    eft__program *pg = NULL;
    s = eft__program_open(path, &pg, &err);
    CHECK_MSG(s == EFT_OK, "%s: open: %s", name, err.msg);
    const json_t *h = pg ? eft__program_header(pg) : NULL;
    CHECK_EQ_STR(json_string_value(json_object_get(h, "kind")), "encoder");
    CHECK_EQ_STR(json_string_value(json_object_get(h, "note")), "test");
    CHECK_EQ_STR(json_string_value(json_object_get(h, "weights")), wd == EFT_DTYPE_F16 ? "f16" : "f32");
    size_t cap = 1 << 20;
    float *a = calloc(cap, 1), *b = calloc(cap, 1);
    for (int threads = 1; pg && threads <= 2; threads++) {
        eft__encoder_params p = eft__encoder_params_default();
        p.max_batch = 3;
        p.max_tokens = 16;
        p.n_threads = threads;
        eft__encoder *loaded = NULL;
        s = eft__encoder_load(m, pg, &p, &loaded, &err);
        CHECK_MSG(s == EFT_OK, "%s: load: %s", name, err.msg);
        eft__encoder *ref = threads == 1 ? built : build_enc(m, 3, 16, threads, wd);
        if (loaded && ref) {
            memset(a, 0, cap);
            memset(b, 0, cap);
            size_t na = run_all(ref, m->cfg.vocab_size, a), nb = run_all(loaded, m->cfg.vocab_size, b);
            CHECK(na == nb && na > 0);
            CHECK_MSG(!memcmp(a, b, na), "%s (%s, %d threads): loaded encoder differs from the built one", name,
                      eft_dtype_name(wd), threads);
            if (!strcmp(name, "bert-cls")) CHECK(eft__encoder_num_labels(loaded) > 0);
        }
        /* A loaded encoder saves again to an equivalent program. */
        if (loaded && threads == 1) {
            char again[4400];
            snprintf(again, sizeof again, "%s.again", path);
            CHECK(eft__encoder_save(loaded, m, NULL, again, &err) == EFT_OK);
            eft__program *p2 = NULL;
            CHECK(eft__program_open(again, &p2, &err) == EFT_OK);
            if (p2) {
                CHECK_EQ_INT(eft__program_blob_count(p2), eft__program_blob_count(pg));
                for (size_t i = 0; i < eft__program_blob_count(pg); i++) {
                    const eft__program_blob *x = eft__program_blob_at(pg, i), *y = eft__program_find(p2, x->name);
                    CHECK(y && y->size == x->size && (!x->size || !memcmp(x->data, y->data, x->size)));
                }
            }
            eft__program_close(p2);
        }
        eft__encoder_free(loaded);
        if (ref != built) eft__encoder_free(ref);
    }
    /* A different plan from the same program (MPNet's position table is stored unexpanded). */
    if (pg) {
        eft__encoder_params p = eft__encoder_params_default();
        p.max_batch = 4;
        p.max_tokens = 24;
        eft__encoder *loaded = NULL, *ref = build_enc(m, 4, 24, 1, wd);
        CHECK(eft__encoder_load(m, pg, &p, &loaded, &err) == EFT_OK);
        if (loaded && ref) {
            size_t na = run_all(ref, m->cfg.vocab_size, a), nb = run_all(loaded, m->cfg.vocab_size, b);
            CHECK_MSG(na == nb && !memcmp(a, b, na), "%s: another plan differs", name);
        }
        eft__encoder_free(loaded);
        eft__encoder_free(ref);
    }
    free(a);
    free(b);
    eft__encoder_free(built);
    eft__program_close(pg);
    eft_model_close(m);
}

static void test_identical_f32(void) {
    const char *names[] = {"bert", "roberta", "xlm-roberta", "mpnet", "bert-cls"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) check_identical(names[i], EFT_DTYPE_F32);
}

static void test_identical_f16(void) {
    check_identical("bert", EFT_DTYPE_F16);
    check_identical("mpnet", EFT_DTYPE_F16);
    /* f16 panels are half the size and close to f32. */
    eft_model *m = open_model(test_path("tests/fixtures/models/bert"));
    if (!m) return;
    eft__encoder *e32 = build_enc(m, 3, 16, 1, EFT_DTYPE_F32), *e16 = build_enc(m, 3, 16, 1, EFT_DTYPE_F16);
    float *a = calloc(1 << 18, 4), *b = calloc(1 << 18, 4);
    if (e32 && e16) {
        size_t na = run_all(e32, m->cfg.vocab_size, a), nb = run_all(e16, m->cfg.vocab_size, b);
        CHECK(na == nb);
        double worst = 0;
        for (size_t i = 0; i < na / 4; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
        CHECK_MSG(worst < 2e-2 && worst > 0, "f16 vs f32 max |diff| %g", worst);
    }
    eft__encoder_params p = eft__encoder_params_default();
    p.weight_dtype = EFT_DTYPE_Q5_0; /* no precision pass makes it */
    eft__encoder *bad = NULL;
    eft__error err = {0};
    CHECK(eft__encoder_build(m, &p, &bad, &err) == EFT_ERR_UNSUPPORTED && !bad);
    free(a);
    free(b);
    eft__encoder_free(e32);
    eft__encoder_free(e16);
    eft_model_close(m);
}

/* A copy of a fixture model in a scratch folder (so its files can be changed). */
static const char *copy_model(const char *name, const char *tag) {
    static char dst[4200];
    snprintf(dst, sizeof dst, "%s/%s", test_tmpdir(tag), name);
    char cmd[8600];
    snprintf(cmd, sizeof cmd, "cp -r '%s/tests/fixtures/models/%s' '%s'", EFT_SOURCE_DIR, name, dst);
    CHECK(system(cmd) == 0);
    return dst;
}

/* pg's blobs under another header (h, consumed) at path + suffix, opened; NULL on failure. */
static eft__program *rewrite_header(const eft__program *pg, const char *path, const char *suffix, json_t *h) {
    eft__error err = {0};
    char *text = json_dumps(h, 0);
    json_decref(h);
    eft__program_writer *w = NULL;
    CHECK(text && eft__program_writer_new(&w, &err) == EFT_OK);
    for (size_t i = 0; w && i < eft__program_blob_count(pg); i++) {
        const eft__program_blob *b = eft__program_blob_at(pg, i);
        CHECK(eft__program_writer_add(w, b->name, b->dtype, b->data, b->size, &err) == EFT_OK);
    }
    char out[4400];
    snprintf(out, sizeof out, "%s%s", path, suffix);
    CHECK(w && text && eft__program_writer_write(w, out, text, &err) == EFT_OK);
    eft_free(text); /* jansson allocates through eft's hook */
    eft__program_writer_free(w);
    eft__program *np = NULL;
    CHECK_MSG(eft__program_open(out, &np, &err) == EFT_OK, "%s", err.msg);
    return np;
}

/* eft__encoder_load of p for 16 tokens, the encoder freed: its status, or EFT_ERR_INTERNAL for no
 * program or for a refusal that still returned an encoder. */
static eft_status load_16(const eft_model *m, const eft__program *p, eft__error *err) {
    if (!p) return EFT_ERR_INTERNAL;
    eft__encoder *le = NULL;
    eft__encoder_params lp = eft__encoder_params_default();
    lp.max_tokens = 16;
    eft_status s = eft__encoder_load(m, p, &lp, &le, err);
    if (s != EFT_OK && le) s = EFT_ERR_INTERNAL; /* refused, yet an encoder came back */
    eft__encoder_free(le);
    return s;
}

static void test_load_refusals(void) {
    const char *dir = copy_model("bert", "program_refuse");
    char model[4300], path[4300];
    snprintf(model, sizeof model, "%s", dir);
    snprintf(path, sizeof path, "%s.eft", dir);
    eft_model *m = open_model(model);
    if (!m) return;
    eft__encoder *e = build_enc(m, 2, 16, 1, EFT_DTYPE_F32);
    eft__error err = {0};
    CHECK(e && eft__encoder_save(e, m, NULL, path, &err) == EFT_OK);
    eft__encoder_free(e);
    eft__program *pg = NULL;
    CHECK(eft__program_open(path, &pg, &err) == EFT_OK);
    if (!pg) {
        eft_model_close(m);
        return;
    }

    /* A program missing one blob, and one with a blob of the wrong size: named refusals. */
    const eft__program_blob *victim = eft__program_blob_at(pg, 3);
    for (int mode = 0; mode < 2; mode++) {
        eft__program_writer *w = NULL;
        CHECK(eft__program_writer_new(&w, &err) == EFT_OK);
        for (size_t i = 0; i < eft__program_blob_count(pg); i++) {
            const eft__program_blob *b = eft__program_blob_at(pg, i);
            if (b == victim && mode == 0) continue;
            uint64_t size = b == victim ? b->size - 4 : b->size;
            CHECK(eft__program_writer_add(w, b->name, b->dtype, b->data, size, &err) == EFT_OK);
        }
        char bad[4400];
        snprintf(bad, sizeof bad, "%s.bad%d", path, mode);
        CHECK(eft__program_writer_write(w, bad, eft__program_header_text(pg), &err) == EFT_OK);
        eft__program_writer_free(w);
        eft__program *bp = NULL;
        CHECK(eft__program_open(bad, &bp, &err) == EFT_OK);
        eft_status s = load_16(m, bp, &err);
        CHECK_MSG(s == EFT_ERR_FORMAT, "mode %d: %d %s", mode, (int)s, err.msg);
        CHECK_CONTAINS(err.msg, victim->name);
        CHECK_CONTAINS(err.msg, mode == 0 ? "missing" : "bytes");
        eft__program_close(bp);
    }

    /* A program packed for another panel width (same bytes, another layout): refused. */
    {
        json_t *h = json_loads(eft__program_header_text(pg), 0, NULL);
        json_object_set_new(h, "sgemm_panel_width", json_integer(2 * EFT__SGEMM_NR));
        eft__program *wp = rewrite_header(pg, path, ".wide", h);
        CHECK(load_16(m, wp, &err) == EFT_ERR_FORMAT);
        CHECK_CONTAINS(err.msg, "panels of 32");
        eft__program_close(wp);
    }

    /* A graph whose embedding has no position table (an optional input since decoders, which
     * have none): refused by the encoder's check of its tables, not read as tensor -1. */
    {
        json_t *h = json_loads(eft__program_header_text(pg), 0, NULL);
        json_t *in = json_object_get(json_array_get(json_object_get(json_object_get(h, "graph"), "ops"), 0), "in");
        CHECK(json_array_size(in) == 6);
        json_array_set_new(in, 3, json_integer(-1));
        eft__program *np = rewrite_header(pg, path, ".nopos", h);
        CHECK(load_16(m, np, &err) == EFT_ERR_FORMAT);
        CHECK_CONTAINS(err.msg, "must embed");
        eft__program_close(np);
    }

    /* A program of another kind. */
    {
        eft__program_writer *w = NULL;
        CHECK(eft__program_writer_new(&w, &err) == EFT_OK);
        char other[4400];
        snprintf(other, sizeof other, "%s.other", path);
        CHECK(eft__program_writer_write(w, other, "{\"kind\": \"decoder\"}", &err) == EFT_OK);
        eft__program_writer_free(w);
        eft__program *op = NULL;
        eft__encoder *le = NULL;
        CHECK(eft__program_open(other, &op, &err) == EFT_OK);
        CHECK(op && eft__encoder_load(m, op, NULL, &le, &err) == EFT_ERR_FORMAT && !le);
        CHECK_CONTAINS(err.msg, "decoder");
        eft__program_close(op);
    }

    /* The model's files change after compiling: refused, naming both fingerprints. */
    char cfg[4400];
    snprintf(cfg, sizeof cfg, "%s/config.json", model);
    size_t n = 0;
    uint8_t *text = read_file(cfg, &n);
    write_file(cfg, text, n); /* same bytes, new mtime */
    struct timespec ts[2] = {{0, UTIME_OMIT}, {1234567890, 0}};
    utimensat(AT_FDCWD, cfg, ts, 0);
    free(text);
    eft_model *m2 = open_model(model);
    eft__encoder *le = NULL;
    CHECK(m2 && eft__encoder_load(m2, pg, NULL, &le, &err) == EFT_ERR_FORMAT && !le);
    CHECK_CONTAINS(err.msg, "changed since");
    eft_model_close(m2);
    eft__program_close(pg);
    eft_model_close(m);
}

/* ---------------------------------------------------------------------------------------------
 * The embedder's cache and program paths
 * ------------------------------------------------------------------------------------------- */

static const char *const k_texts[] = {"hello world", "programs", "x"};

static float *embed_with(const char *ref, eft_embedder_params *p, int64_t *dim) {
    eft_embedder *e = NULL;
    eft_status s = eft_embedder_open(ref, p, &e);
    CHECK_MSG(s == EFT_OK, "%s: %s", ref, eft_last_error());
    if (!e) return NULL;
    *dim = eft_embedder_dim(e);
    float *out = calloc((size_t)(3 * *dim), sizeof(float));
    CHECK_MSG(eft_embedder_embed(e, k_texts, 3, out) == EFT_OK, "%s", eft_embedder_errmsg(e));
    eft_embedder_close(e);
    return out;
}

static void test_cache(void) {
    char cache[4200];
    snprintf(cache, sizeof cache, "%s", test_tmpdir("program_cache"));
    setenv("EFT_CACHE_DIR", cache, 1);
    const char *model = copy_model("bert", "program_cache_model");
    char mdir[4200];
    snprintf(mdir, sizeof mdir, "%s", model);

    eft_embedder_params p = eft_embedder_params_default();
    p.no_cache = true;
    int64_t d0 = 0, d1 = 0, d2 = 0;
    float *fresh = embed_with(mdir, &p, &d0);
    CHECK_EQ_INT(count_files(cache, ".eft"), 0); /* no_cache writes nothing */

    p = eft_embedder_params_default();
    float *miss = embed_with(mdir, &p, &d1); /* compiles and writes */
    CHECK_EQ_INT(count_files(cache, ".eft"), 1);
    float *hit = embed_with(mdir, &p, &d2); /* loads */
    CHECK_EQ_INT(count_files(cache, ".eft"), 1);
    CHECK(fresh && miss && hit && d0 == d1 && d1 == d2);
    if (fresh && miss && hit) {
        CHECK(!memcmp(fresh, miss, sizeof(float) * 3 * (size_t)d0));
        CHECK_MSG(!memcmp(fresh, hit, sizeof(float) * 3 * (size_t)d0), "the cached program gives other embeddings");
    }
    free(miss);
    free(hit);

    /* The key: threads, batch and lengths share a program; dtype, the model's files, eft's
     * version and the ISA (all hashed into it) do not. */
    eft_model *m = open_model(mdir);
    char k32[17], k16[17], kb[17];
    eft__error err = {0};
    CHECK(m && eft__encoder_program_key(m, EFT_DTYPE_F32, k32, &err) == EFT_OK);
    CHECK(m && eft__encoder_program_key(m, EFT_DTYPE_F16, k16, &err) == EFT_OK);
    CHECK(strcmp(k32, k16) != 0);
    p = eft_embedder_params_default();
    p.n_threads = 2;
    p.max_batch = 3;
    p.max_tokens = 32;
    float *other = embed_with(mdir, &p, &d1);
    CHECK_EQ_INT(count_files(cache, ".eft"), 1);
    for (int64_t i = 0; other && fresh && i < 3 * d0; i++) CHECK_NEAR(other[i], fresh[i], 1e-6);
    free(other);
    p = eft_embedder_params_default();
    p.dtype = EFT_DTYPE_F16;
    float *half = embed_with(mdir, &p, &d1);
    CHECK_EQ_INT(count_files(cache, ".eft"), 2);
    float *half2 = embed_with(mdir, &p, &d1);
    CHECK(half && half2 && !memcmp(half, half2, sizeof(float) * 3 * (size_t)d0));
    CHECK_EQ_INT(count_files(cache, ".eft"), 2);
    free(half);
    free(half2);

    /* The model's weights are rewritten: a new key, a new program. */
    char st[4400];
    snprintf(st, sizeof st, "%s/model.safetensors", mdir);
    size_t n = 0;
    uint8_t *w = read_file(st, &n);
    write_file(st, w, n);
    struct timespec ts[2] = {{0, UTIME_OMIT}, {1000000000, 0}};
    utimensat(AT_FDCWD, st, ts, 0);
    free(w);
    eft_model *m2 = open_model(mdir);
    CHECK(m2 && eft__encoder_program_key(m2, EFT_DTYPE_F32, kb, &err) == EFT_OK && strcmp(kb, k32) != 0);
    eft_model_close(m2);
    p = eft_embedder_params_default();
    float *again = embed_with(mdir, &p, &d1);
    CHECK_EQ_INT(count_files(cache, ".eft"), 3);
    CHECK(again && fresh && !memcmp(again, fresh, sizeof(float) * 3 * (size_t)d0));
    free(again);

    /* A corrupt cached program is a miss: compiled again, rewritten, the answer unchanged. */
    char cpath[4400];
    snprintf(cpath, sizeof cpath, "%s/%s-%s.eft", cache, eft__path_basename(mdir), kb);
    CHECK(eft__program_is_program(cpath));
    if (truncate(cpath, 1000) != 0) CHECK_MSG(0, "cannot truncate %s", cpath);
    float *fixed = embed_with(mdir, &p, &d1);
    CHECK(fixed && fresh && !memcmp(fixed, fresh, sizeof(float) * 3 * (size_t)d0));
    free(fixed);
    eft__program *pg = NULL;
    CHECK_MSG(eft__program_open(cpath, &pg, &err) == EFT_OK, "the corrupt program was not rewritten: %s", err.msg);
    eft__program_close(pg);

    /* A cache that cannot be written: a warning, and the embedder still works. */
    char notdir[4400];
    snprintf(notdir, sizeof notdir, "%s/model.safetensors/sub", mdir); /* under a file */
    p = eft_embedder_params_default();
    p.cache_dir = notdir;
    float *nowrite = embed_with(mdir, &p, &d1);
    CHECK(nowrite && fresh && !memcmp(nowrite, fresh, sizeof(float) * 3 * (size_t)d0));
    free(nowrite);
    eft_model_close(m);
    free(fresh);
}

static void test_compile_and_open_program(void) {
    const char *out = test_tmpdir("program_compile");
    char dir[4300];
    snprintf(dir, sizeof dir, "%s/prog", out);
    const char *names[] = {"bert", "mpnet", "bert-cls"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tests/fixtures/models/%s", names[k]);
        const char *model = test_path(rel);
        int lens[2] = {8, 32};
        eft_compile_params cp = eft_compile_params_default();
        cp.seq_lens = lens;
        cp.n_seq_lens = 2;
        cp.batch_size = 2;
        cp.num_cores = 2;
        eft_status s = eft_compile(model, &cp, dir);
        CHECK_MSG(s == EFT_OK, "%s: %s", names[k], eft_last_error());
        CHECK(eft_is_program(dir));
        char *info = eft_program_info_json(dir);
        CHECK_MSG(info != NULL, "%s", eft_last_error());
        json_t *j = info ? json_loads(info, 0, NULL) : NULL;
        json_t *h = json_object_get(j, "header"), *o = json_object_get(h, "options");
        CHECK_EQ_INT(json_integer_value(json_array_get(json_object_get(o, "seq_lens"), 1)), 32);
        CHECK_EQ_INT(json_integer_value(json_object_get(o, "batch_size")), 2);
        CHECK_EQ_INT(json_integer_value(json_object_get(o, "num_cores")), 2);
        CHECK(json_integer_value(json_object_get(j, "blob_bytes")) > 0);
        CHECK(strlen(json_string_value(json_object_get(h, "key")) ? json_string_value(json_object_get(h, "key")) : "") == 16);
        json_decref(j);
        eft_free(info);

        /* The program gives exactly what the model gives with the same plan. */
        eft_embedder_params p = eft_embedder_params_default();
        p.no_cache = true;
        p.seq_lens = lens;
        p.n_seq_lens = 2;
        p.max_batch = 2;
        p.n_threads = 2;
        int64_t d0 = 0, d1 = 0;
        float *a = embed_with(model, &p, &d0);
        p = eft_embedder_params_default();
        float *b = embed_with(dir, &p, &d1);
        CHECK(a && b && d0 == d1);
        if (a && b) CHECK_MSG(!memcmp(a, b, sizeof(float) * 3 * (size_t)d0), "%s: program vs model", names[k]);
        free(a);
        free(b);
        eft_embedder *e = NULL;
        CHECK(eft_embedder_open(dir, NULL, &e) == EFT_OK);
        CHECK_EQ_INT(eft_embedder_max_tokens(e), 32);
        CHECK_EQ_INT(eft_embedder_threads(e), 2); /* the program's num_cores */
        eft_embedder_close(e);
        /* n_threads 0 takes a program's num_cores too; for a model it is every online CPU. */
        p = eft_embedder_params_default();
        p.n_threads = 0;
        CHECK(eft_embedder_open(dir, &p, &e) == EFT_OK);
        CHECK_EQ_INT(eft_embedder_threads(e), 2);
        eft_embedder_close(e);
        p.no_cache = true;
        CHECK(eft_embedder_open(model, &p, &e) == EFT_OK);
        CHECK_EQ_INT(eft_embedder_threads(e), (int)sysconf(_SC_NPROCESSORS_ONLN));
        eft_embedder_close(e);
    }
    /* Bad options are refused before anything is written. */
    int bad_lens[2] = {32, 8};
    eft_compile_params cp = eft_compile_params_default();
    cp.seq_lens = bad_lens;
    cp.n_seq_lens = 2;
    char dir2[4400];
    snprintf(dir2, sizeof dir2, "%s/prog2", out);
    CHECK(eft_compile(test_path("tests/fixtures/models/bert"), &cp, dir2) != EFT_OK);
    CHECK_CONTAINS(eft_last_error(), "ascending");
    CHECK(!eft__path_exists(dir2));
    cp = eft_compile_params_default();
    cp.dtype = EFT_DTYPE_Q5_0;
    CHECK(eft_compile(test_path("tests/fixtures/models/bert"), &cp, dir2) == EFT_ERR_UNSUPPORTED);
    /* A causal LM compiles to a decoder program, which the embedder refuses by its kind. */
    CHECK(eft_compile(test_path("tests/fixtures/models/llama"), NULL, dir2) == EFT_OK);
    eft_embedder *de = NULL;
    CHECK(eft_embedder_open(dir2, NULL, &de) == EFT_ERR_INVALID_ARGUMENT && !de);
    CHECK_CONTAINS(eft_last_error(), "kind 'decoder'");
    /* A corrupt program path is an error, not a model. */
    char pf[4400];
    snprintf(pf, sizeof pf, "%s/program.eft", dir);
    if (truncate(pf, 4096) != 0) CHECK_MSG(0, "cannot truncate %s", pf);
    eft_embedder *e = NULL;
    CHECK(eft_embedder_open(dir, NULL, &e) == EFT_ERR_FORMAT && !e);
    CHECK_CONTAINS(eft_last_error(), "program.eft");
}

static void touch_at(const char *path, time_t when) {
    struct timespec ts[2] = {{when, 0}, {when, 0}};
    CHECK(utimensat(AT_FDCWD, path, ts, 0) == 0);
}

static bool exists_in(const char *dir, const char *name) {
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* The cache's bound: least recently used entries go first, only entries and dead writers'
 * temporary files are ever removed, a hit counts as a use, and EFT_CACHE_MAX is read as a size. */
static void test_cache_prune(void) {
    char dir[4200], path[4400];
    snprintf(dir, sizeof dir, "%s", test_tmpdir("program_cache_prune"));
    static const char *const names[] = {"old-0123456789abcdef.eft", "mid-0123456789abcdee.eft",
                                        "new-00000000000000aa.eft", "notes.txt", "x-0123456789ABCDEF.eft",
                                        "old-0123456789abcdef.eft.tmp.77.0", "new-00000000000000aa.eft.tmp.78.0"};
    static const time_t ages[] = {1000000000, 1000000100, 1000000200, 900000000, 900000000, 1000000000, 0};
    uint8_t buf[1000] = {0};
    for (int i = 0; i < 7; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        write_file(path, buf, i == 3 ? sizeof buf : 1000);
        if (ages[i]) touch_at(path, ages[i]);
    }
    /* 4000 bytes of entries (the upper-case one is not an entry) under a bound of 2500: the
     * oldest goes; the newest is kept even when it is the oldest by mtime. */
    snprintf(path, sizeof path, "%s/%s", dir, names[1]);
    eft__program_cache_prune(dir, path, 2500);
    CHECK(!exists_in(dir, names[0]));
    CHECK(exists_in(dir, names[1]) && exists_in(dir, names[2]));
    CHECK_MSG(exists_in(dir, names[3]) && exists_in(dir, names[4]), "a file that is no cache entry was removed");
    CHECK_MSG(!exists_in(dir, names[5]), "a day-old temporary file was kept");
    CHECK_MSG(exists_in(dir, names[6]), "a live writer's temporary file was removed");
    eft__program_cache_prune(dir, path, 1000); /* keep wins over the bound */
    CHECK(exists_in(dir, names[1]) && !exists_in(dir, names[2]));
    eft__program_cache_prune(dir, NULL, 0); /* 0: no bound */
    CHECK(exists_in(dir, names[1]));

    setenv("EFT_CACHE_MAX", "500M", 1);
    CHECK(eft__program_cache_limit() == (uint64_t)500 << 20);
    setenv("EFT_CACHE_MAX", "1.5G", 1);
    CHECK(eft__program_cache_limit() == (uint64_t)3 << 29);
    setenv("EFT_CACHE_MAX", "12345", 1);
    CHECK(eft__program_cache_limit() == 12345);
    setenv("EFT_CACHE_MAX", "0", 1);
    CHECK(eft__program_cache_limit() == 0);
    setenv("EFT_CACHE_MAX", "lots", 1);
    CHECK(eft__program_cache_limit() == EFT__PROGRAM_CACHE_DEFAULT_MAX);
    setenv("EFT_CACHE_MAX", "-3G", 1);
    CHECK(eft__program_cache_limit() == EFT__PROGRAM_CACHE_DEFAULT_MAX);
    unsetenv("EFT_CACHE_MAX");
    CHECK(eft__program_cache_limit() == EFT__PROGRAM_CACHE_DEFAULT_MAX);

    /* Through the embedder: a hit refreshes its entry, and a write under a small bound removes
     * the least recently used other entry. */
    char cache[4200];
    snprintf(cache, sizeof cache, "%s", test_tmpdir("program_cache_lru"));
    setenv("EFT_CACHE_DIR", cache, 1);
    const char *model = copy_model("bert", "program_cache_lru_model");
    char mdir[4200];
    snprintf(mdir, sizeof mdir, "%s", model);
    eft_embedder_params p = eft_embedder_params_default();
    int64_t d = 0;
    free(embed_with(mdir, &p, &d)); /* f32 entry */
    p.dtype = EFT_DTYPE_F16;
    free(embed_with(mdir, &p, &d)); /* f16 entry */
    CHECK_EQ_INT(count_files(cache, ".eft"), 2);
    eft_model *m = open_model(mdir);
    char k32[17], k16[17];
    eft__error err = {0};
    CHECK(m && eft__encoder_program_key(m, EFT_DTYPE_F32, k32, &err) == EFT_OK);
    CHECK(m && eft__encoder_program_key(m, EFT_DTYPE_F16, k16, &err) == EFT_OK);
    eft_model_close(m);
    char p32[4400], p16[4400];
    snprintf(p32, sizeof p32, "%s/%s-%s.eft", cache, eft__path_basename(mdir), k32);
    snprintf(p16, sizeof p16, "%s/%s-%s.eft", cache, eft__path_basename(mdir), k16);
    touch_at(p32, 1000000000);
    touch_at(p16, 1000000100);
    p.dtype = EFT_DTYPE_F32;
    free(embed_with(mdir, &p, &d)); /* a hit: f32 becomes the most recently used */
    struct stat st;
    CHECK(stat(p32, &st) == 0 && st.st_mtim.tv_sec > 1000000100);
    setenv("EFT_CACHE_MAX", "1", 1); /* one byte: every write leaves only itself */
    p.dtype = EFT_DTYPE_BF16;
    free(embed_with(mdir, &p, &d));
    CHECK_EQ_INT(count_files(cache, ".eft"), 1);
    CHECK(access(p32, F_OK) != 0 && access(p16, F_OK) != 0);
    unsetenv("EFT_CACHE_MAX");
}

int main(void) {
    /* Nothing here may touch the user's cache. */
    char cache[4200];
    snprintf(cache, sizeof cache, "%s", test_tmpdir("program_cache_default"));
    setenv("EFT_CACHE_DIR", cache, 1);
    RUN(test_roundtrip);
    RUN(test_corruption);
    RUN(test_identical_f32);
    RUN(test_identical_f16);
    RUN(test_load_refusals);
    RUN(test_cache);
    RUN(test_cache_prune);
    RUN(test_compile_and_open_program);
    return test_summary();
}
