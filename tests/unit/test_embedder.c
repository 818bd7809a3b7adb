/* test_embedder.c — the public embedding API: fixture embeddings equal sentence-transformers'
 * (tolerance from the reference file), batches of any size give the same vectors as one at a time,
 * the length limit is enforced (error or truncation, never a silent cut), bad arguments fail
 * cleanly, and an injected out-of-memory at every allocation of eft's own during open fails
 * cleanly with nothing leaked. */
#include <jansson.h>

#include "core/core.h"
#include "core/json.h"
#include "eft.h"
#include "formats/safetensors.h"
#include "test.h"

/* prompt: NULL compares case{i}.embedding, "query" compares case{i}.query.embedding (the texts with
 * the folder's "query" prompt, truncated on the right as sentence-transformers does). */
static void check_against_ref(const char *name, int max_batch, const char *prompt) {
    char model[1024], ref[1024];
    snprintf(model, sizeof model, "%s", test_path("tests/fixtures/models/"));
    strncat(model, name, sizeof model - strlen(model) - 1);
    snprintf(ref, sizeof ref, "%s%s.safetensors", test_path("tests/fixtures/ref/"), name);
    eft__safetensors *st = NULL;
    eft__error err;
    CHECK_MSG(eft__safetensors_open(ref, &st, &err) == EFT_OK, "%s", err.msg);
    if (!st) return;
    json_t *texts = json_loads(eft__safetensors_metadata(st, "texts"), 0, NULL);
    json_t *tol_j = json_loads(eft__safetensors_metadata(st, "tolerance"), 0, NULL);
    double tol = json_number_value(json_object_get(tol_j, "embedding"));
    CHECK(json_is_array(texts) && tol > 0);
    eft_embedder_params p = eft_embedder_params_default();
    p.max_batch = max_batch;
    p.n_threads = 2;
    if (prompt) p.truncate = EFT_TRUNCATE_RIGHT_SIDE;
    eft_embedder *e = NULL;
    CHECK_MSG(eft_embedder_open(model, &p, &e) == EFT_OK, "%s: %s", name, eft_last_error());
    size_t n = json_array_size(texts);
    const char *tv[16];
    for (size_t i = 0; i < n && i < 16; i++) tv[i] = json_string_value(json_array_get(texts, i));
    int64_t d = e ? eft_embedder_dim(e) : 0;
    float *out = calloc(n * (size_t)d + 1, sizeof *out);
    int compared = 0;
    if (e && eft_embedder_embed_prompt(e, prompt, tv, n, out) == EFT_OK) {
        double worst = 0;
        for (size_t i = 0; i < n; i++) {
            char key[64];
            snprintf(key, sizeof key, "case%zu.%sembedding", i, prompt ? "query." : "");
            const eft__tensor_view *v = eft__safetensors_find(st, key);
            if (!v) continue;
            compared++;
            CHECK_EQ_INT(v->n_elems, d);
            const float *want = v->data;
            for (int64_t k = 0; k < d && k < (int64_t)v->n_elems; k++) {
                double diff = fabs((double)out[i * (size_t)d + (size_t)k] - want[k]);
                if (diff > worst) worst = diff;
            }
        }
        CHECK_MSG(worst <= tol, "%s batch %d: max abs error %g over %g", name, max_batch, worst, tol);
        CHECK_MSG(compared >= 4, "%s: only %d reference embeddings found", name, compared);
    } else {
        CHECK_MSG(0, "%s: %s", name, e ? eft_embedder_errmsg(e) : "no embedder");
    }
    free(out);
    eft_embedder_close(e);
    json_decref(texts);
    json_decref(tol_j);
    eft__safetensors_close(st);
}

static void test_fixtures(void) {
    const char *names[] = {"bert", "roberta", "xlm-roberta", "mpnet"};
    for (int i = 0; i < 4; i++) {
        check_against_ref(names[i], 1, NULL);
        check_against_ref(names[i], 3, NULL);
        check_against_ref(names[i], 8, NULL);
        check_against_ref(names[i], 8, "query");
    }
}

static void test_limits(void) {
    eft_embedder *e = NULL;
    const char *bert = test_path("tests/fixtures/models/bert");
    CHECK_EQ_INT(eft_embedder_open(bert, NULL, &e), EFT_OK);
    if (!e) return;
    CHECK_EQ_INT(eft_embedder_max_tokens(e), 64); /* its sentence_bert_config.json */
    static char long_text[4096];
    for (int i = 0; i < 400; i++) memcpy(long_text + i * 5, "word ", 5);
    const char *tv[2] = {"short", long_text};
    float *out = calloc(2 * (size_t)eft_embedder_dim(e), sizeof *out);
    CHECK_EQ_INT(eft_embedder_embed(e, tv, 2, out), EFT_ERR_LIMIT);
    CHECK_CONTAINS(eft_embedder_errmsg(e), "input 1 has");
    CHECK_CONTAINS(eft_embedder_errmsg(e), "limit of 64");
    CHECK_EQ_INT(eft_embedder_embed(e, tv, 0, NULL), EFT_OK);
    CHECK_EQ_INT(eft_embedder_embed_prompt(e, "nope", tv, 1, out), EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(eft_embedder_errmsg(e), "'query'");
    CHECK_EQ_INT(eft_embedder_embed(e, NULL, 2, out), EFT_ERR_INVALID_ARGUMENT);
    const char *with_null[1] = {NULL};
    CHECK_EQ_INT(eft_embedder_embed(e, with_null, 1, out), EFT_ERR_INVALID_ARGUMENT);
    eft_embedder_close(e);
    eft_embedder_params p = eft_embedder_params_default();
    p.truncate = EFT_TRUNCATE_RIGHT_SIDE;
    CHECK_EQ_INT(eft_embedder_open(bert, &p, &e), EFT_OK);
    if (e) CHECK_EQ_INT(eft_embedder_embed(e, tv, 2, out), EFT_OK);
    eft_embedder_close(e);
    free(out);
    CHECK_EQ_INT(eft_embedder_open(test_path("tests/fixtures/models/llama"), NULL, &e), EFT_ERR_UNSUPPORTED);
    CHECK(e == NULL);
    CHECK_EQ_INT(eft_embedder_open("/nonexistent", NULL, &e), EFT_ERR_NOT_FOUND);
    p.max_batch = 0;
    CHECK_EQ_INT(eft_embedder_open(bert, &p, &e), EFT_ERR_INVALID_ARGUMENT);
    eft_embedder_close(NULL);
}

static long g_allocs, g_fail_at = -1;
static void *oom_alloc(size_t n, void *ud) {
    if (eft__alloc_in_json()) return malloc(n);
    return g_allocs++ == g_fail_at ? NULL : malloc(n);
}
static void *oom_realloc(void *p, size_t n, void *ud) {
    if (eft__alloc_in_json()) return realloc(p, n);
    return g_allocs++ == g_fail_at ? NULL : realloc(p, n);
}
static void oom_free(void *p, void *ud) { free(p); }

static void test_out_of_memory(void) {
    const char *bert = test_path("tests/fixtures/models/bert");
    eft_allocator a = {oom_alloc, oom_realloc, oom_free, NULL};
    eft_set_allocator(&a);
    g_allocs = 0;
    eft_embedder *e = NULL;
    CHECK_EQ_INT(eft_embedder_open(bert, NULL, &e), EFT_OK);
    eft_embedder_close(e);
    long total = g_allocs, step = total > 1500 ? total / 1500 : 1;
    int bad = 0;
    for (long k = 0; k < total; k += step) {
        g_allocs = 0;
        g_fail_at = k;
        e = NULL;
        eft_status st = eft_embedder_open(bert, NULL, &e);
        if (st == EFT_OK) eft_embedder_close(e);
        else if (e != NULL || eft_last_error()[0] == 0) bad++;
    }
    g_fail_at = -1;
    eft_set_allocator(NULL);
    CHECK_MSG(bad == 0, "%d injected failures did not fail cleanly", bad);
    printf("  %ld allocations swept\n", total);
}

int main(void) {
    RUN(test_fixtures);
    RUN(test_limits);
    RUN(test_out_of_memory);
    return test_summary();
}
