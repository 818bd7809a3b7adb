/*
 * test_model.c — the public model API: every fixture model and every fetched real model opens,
 * describes itself with the expected facts, and every reference-output file has the versioned
 * fixture format; broken references fail cleanly; an injected out-of-memory at every single
 * allocation of an open fails cleanly with nothing leaked (ASan's leak check proves the latter).
 */
#include <dirent.h>
#include <unistd.h>
#include <jansson.h>

#include "core/core.h"
#include "core/json.h"
#include "eft.h"
#include "formats/safetensors.h"
#include "test.h"

static json_t *info_of(const char *ref) {
    eft_model *m = NULL;
    eft_status st = eft_model_open(ref, NULL, &m);
    CHECK_MSG(st == EFT_OK, "%s: %s", ref, eft_last_error());
    if (st) return NULL;
    char *text = eft_model_info_json(m);
    CHECK(text != NULL);
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    CHECK(j != NULL);
    eft_free(text);
    eft_model_close(m);
    return j;
}

static long long jint(json_t *o, const char *path) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *v = o;
    for (char *tok = strtok(buf, "."); tok && v; tok = strtok(NULL, ".")) v = json_object_get(v, tok);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

static const char *jstr(json_t *o, const char *path) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *v = o;
    for (char *tok = strtok(buf, "."); tok && v; tok = strtok(NULL, ".")) v = json_object_get(v, tok);
    return json_is_string(v) ? json_string_value(v) : "";
}

static int g_models_seen;

static void check_fixture(const char *name) {
    char dir[1024], ref[1024];
    snprintf(dir, sizeof dir, "%s", test_path("tests/fixtures/models/"));
    strncat(dir, name, sizeof dir - strlen(dir) - 1);
    json_t *j = info_of(dir);
    if (!j) return;
    g_models_seen++;
    CHECK_MSG(jint(j, "tensors.count") > 0, "%s has no tensors", name);
    CHECK_MSG(jint(j, "config.hidden_size") == 64, "%s: hidden_size %lld", name, jint(j, "config.hidden_size"));
    CHECK_MSG(jint(j, "config.num_hidden_layers") >= 2, "%s: layers", name);
    CHECK_MSG(jint(j, "tokenizer.vocab_size") > 0, "%s: tokenizer", name);
    CHECK_MSG(jint(j, "tensors.dtypes.F32") > 0, "%s: F32 tensors", name);
    json_decref(j);

    /* The reference outputs next to it are in the versioned fixture format. */
    snprintf(ref, sizeof ref, "%s%s.safetensors", test_path("tests/fixtures/ref/"), name);
    eft__safetensors *st = NULL;
    eft__error err;
    CHECK_MSG(eft__safetensors_open(ref, &st, &err) == EFT_OK, "%s", err.msg);
    if (!st) return;
    CHECK_EQ_STR(eft__safetensors_metadata(st, "format"), "eft-fixture");
    CHECK_EQ_STR(eft__safetensors_metadata(st, "version"), "1");
    CHECK_EQ_STR(eft__safetensors_metadata(st, "model"), name);
    CHECK(eft__safetensors_metadata(st, "tolerance") != NULL);
    CHECK(eft__safetensors_metadata(st, "texts") != NULL);
    CHECK(eft__safetensors_count(st) > 0);
    eft__safetensors_close(st);
}

static void test_fixture_models(void) {
    DIR *d = opendir(test_path("tests/fixtures/models"));
    CHECK_MSG(d != NULL, "no tests/fixtures/models");
    if (!d) return;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        check_fixture(e->d_name);
        n++;
    }
    closedir(d);
    CHECK_MSG(n >= 12, "expected the 12+ fixture architectures, found %d", n);
}

static void test_real_models(void) {
    const char *minilm = test_path("models/all-MiniLM-L6-v2");
    json_t *j;
    if (access(minilm, F_OK) == 0 && (j = info_of(minilm))) {
        CHECK_EQ_STR(jstr(j, "config.model_type"), "bert");
        CHECK_EQ_INT(jint(j, "config.hidden_size"), 384);
        CHECK_EQ_INT(jint(j, "config.num_hidden_layers"), 6);
        CHECK_EQ_INT(jint(j, "tensors.dtypes.F32"), 103); /* and one I64 position_ids buffer */
        CHECK_EQ_INT(jint(j, "tensors.count"), 104);
        CHECK_EQ_STR(jstr(j, "tokenizer.kind"), "WordPiece");
        CHECK_EQ_INT(jint(j, "tokenizer.vocab_size"), 30522);
        CHECK_EQ_STR(jstr(j, "sentence_transformers.pooling"), "mean");
        CHECK(json_is_true(json_object_get(json_object_get(j, "sentence_transformers"), "normalize")));
        CHECK_EQ_INT(jint(j, "sentence_transformers.max_seq_length"), 256);
        json_decref(j);
        g_models_seen++;
    } else {
        printf("  skip all-MiniLM-L6-v2 (not fetched)\n");
    }
    const char *smol = test_path("models/SmolLM2-135M-Instruct-Q4_1/SmolLM2-135M-Instruct.Q4_1.gguf");
    if (access(smol, F_OK) == 0 && (j = info_of(smol))) {
        CHECK_EQ_STR(jstr(j, "config.model_type"), "llama");
        CHECK_EQ_INT(jint(j, "config.hidden_size"), 576);
        CHECK_EQ_INT(jint(j, "config.num_hidden_layers"), 30);
        CHECK_EQ_INT(jint(j, "config.num_attention_heads"), 9);
        CHECK_EQ_INT(jint(j, "config.num_key_value_heads"), 3);
        CHECK_EQ_INT(jint(j, "config.vocab_size"), 49152);
        CHECK(jint(j, "tensors.dtypes.Q4_1") > 0);
        CHECK_EQ_STR(jstr(j, "tokenizer.kind"), "gpt2");
        CHECK_EQ_INT(jint(j, "gguf.version"), 3);
        json_decref(j);
        g_models_seen++;
    } else {
        printf("  skip SmolLM2 (not fetched)\n");
    }
    const char *gemma = test_path("models/gemma-3-270m-Q4_K_M/gemma-3-270m-q4_k_m.gguf");
    if (access(gemma, F_OK) == 0 && (j = info_of(gemma))) {
        CHECK_EQ_STR(jstr(j, "config.model_type"), "gemma3");
        CHECK_EQ_INT(jint(j, "config.hidden_size"), 640);
        CHECK_EQ_INT(jint(j, "config.num_hidden_layers"), 18);
        CHECK(jint(j, "tensors.dtypes.Q4_K") > 0);
        CHECK_EQ_STR(jstr(j, "tokenizer.kind"), "llama");
        json_decref(j);
        g_models_seen++;
    } else {
        printf("  skip Gemma 3 (not fetched)\n");
    }
}

static void test_bad_refs(void) {
    eft_model *m = (eft_model *)1;
    CHECK_EQ_INT(eft_model_open("/nonexistent/model", NULL, &m), EFT_ERR_NOT_FOUND);
    CHECK(m == NULL);
    CHECK_CONTAINS(eft_last_error(), "/nonexistent/model");
    CHECK_EQ_INT(eft_model_open("", NULL, &m), EFT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(eft_model_open(NULL, NULL, &m), EFT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(eft_model_open("x", NULL, NULL), EFT_ERR_INVALID_ARGUMENT);
    const char *empty = test_tmpdir("model_empty");
    CHECK_EQ_INT(eft_model_open(empty, NULL, &m), EFT_ERR_NOT_FOUND);
    CHECK_CONTAINS(eft_last_error(), "config.json");
    eft_model_close(NULL);
    CHECK_EQ_STR(eft_model_errmsg(NULL), "");
}

/* Fails the n-th allocation of eft's own; counts all of them. jansson's are passed through: it
 * crashes on a failed allocation inside json_loadb (a bug of jansson 2.14), which is not ours to
 * prove here. */
static long g_allocs, g_fail_at = -1;
static void *oom_alloc(size_t n, void *ud) {
    (void)ud;
    if (eft__alloc_in_json()) return malloc(n);
    return g_allocs++ == g_fail_at ? NULL : malloc(n);
}
static void *oom_realloc(void *p, size_t n, void *ud) {
    (void)ud;
    if (eft__alloc_in_json()) return realloc(p, n);
    return g_allocs++ == g_fail_at ? NULL : realloc(p, n);
}
static void oom_free(void *p, void *ud) { (void)ud; free(p); }

static void oom_sweep(const char *ref) {
    eft_allocator a = {oom_alloc, oom_realloc, oom_free, NULL};
    eft_set_allocator(&a);
    g_fail_at = -1;
    g_allocs = 0;
    eft_model *m = NULL;
    eft_status st = eft_model_open(ref, NULL, &m);
    long total = g_allocs;
    eft_model_close(m);
    CHECK_MSG(st == EFT_OK, "%s: %s", ref, eft_last_error());
    /* Every allocation of a successful open, failed in turn. Large vocabularies make thousands of
     * allocations; sample evenly beyond the first 2000 to keep the test quick. */
    long step = total > 2000 ? total / 2000 : 1;
    int bad = 0;
    for (long k = 0; k < total; k += step) {
        g_allocs = 0;
        g_fail_at = k;
        m = NULL;
        st = eft_model_open(ref, NULL, &m);
        if (st == EFT_OK) {
            /* A failure of an optional allocation (a debug message, a cache) may be absorbed. */
            eft_model_close(m);
        } else if (m != NULL || eft_last_error()[0] == 0) {
            bad++;
        }
    }
    g_fail_at = -1;
    eft_set_allocator(NULL);
    CHECK_MSG(bad == 0, "%s: %d injected failures did not fail cleanly", ref, bad);
    printf("  %s: %ld allocations swept\n", ref, total);
}

static void test_out_of_memory(void) {
    oom_sweep(test_path("tests/fixtures/models/bert"));
    oom_sweep(test_path("tests/fixtures/models/llama"));
    oom_sweep(test_path("tests/fixtures/gguf/tiny-llama.gguf"));
}

int main(void) {
    RUN(test_fixture_models);
    RUN(test_real_models);
    RUN(test_bad_refs);
    RUN(test_out_of_memory);
    printf("models described: %d\n", g_models_seen);
    return test_summary();
}
