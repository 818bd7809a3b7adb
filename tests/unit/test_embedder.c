/* test_embedder.c — the public embedding API: fixture embeddings equal sentence-transformers'
 * (tolerance from the reference file), batches of any size give the same vectors as one at a time,
 * the length limit is enforced (error or truncation, never a silent cut), bad arguments fail
 * cleanly, and an injected out-of-memory at every allocation of eft's own during open fails
 * cleanly with nothing leaked. The per-request API (eft_embedder_run: ids, normalisation,
 * Matryoshka dimensions, token counts, caller pooling, token output), compiled sequence lengths
 * (bucketing keeps vectors and input order; over-limit errors name both lengths) and cross-encoder
 * scores (eft_embedder_score against transformers' logits) are checked here too. */
#include <jansson.h>
#include <math.h>

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

/* ---------------------------------------------------------------------------------------------
 * The per-request API against the references
 * ------------------------------------------------------------------------------------------- */

/* A reference file with its texts and tolerances. */
typedef struct ref {
    eft__safetensors *st;
    json_t *texts, *tol;
    size_t n;
    const char *tv[16];
} ref;

static bool ref_open(ref *r, const char *name) {
    memset(r, 0, sizeof *r);
    char path[1024];
    snprintf(path, sizeof path, "%s%s.safetensors", test_path("tests/fixtures/ref/"), name);
    eft__error err;
    CHECK_MSG(eft__safetensors_open(path, &r->st, &err) == EFT_OK, "%s", err.msg);
    if (!r->st) return false;
    r->texts = json_loads(eft__safetensors_metadata(r->st, "texts"), 0, NULL);
    r->tol = json_loads(eft__safetensors_metadata(r->st, "tolerance"), 0, NULL);
    r->n = json_array_size(r->texts);
    for (size_t i = 0; i < r->n && i < 16; i++) r->tv[i] = json_string_value(json_array_get(r->texts, i));
    CHECK(r->n > 0 && r->n <= 16);
    return r->n > 0 && r->n <= 16;
}

static void ref_close(ref *r) {
    json_decref(r->texts);
    json_decref(r->tol);
    eft__safetensors_close(r->st);
}

static double ref_tol(const ref *r, const char *kind) {
    double t = json_number_value(json_object_get(r->tol, kind));
    CHECK_MSG(t > 0, "no tolerance '%s' in the reference", kind);
    return t > 0 ? t : 1e-4;
}

/* A float tensor of the reference ("case0.embedding"), or NULL; *n its element count. */
static const float *ref_f32(const ref *r, const char *key, size_t *n) {
    const eft__tensor_view *v = eft__safetensors_find(r->st, key);
    if (!v || v->dtype != EFT_DTYPE_F32) return NULL;
    if (n) *n = (size_t)v->n_elems;
    return v->data;
}

/* An I64 tensor as int32 ids in out (at most cap); returns the count, 0 when absent. */
static size_t ref_ids(const ref *r, const char *key, int32_t *out, size_t cap) {
    const eft__tensor_view *v = eft__safetensors_find(r->st, key);
    if (!v || v->dtype != EFT_DTYPE_I64 || v->n_elems > cap) return 0;
    /* The reference files have no alignment padding: read each value with memcpy. */
    for (uint64_t i = 0; i < v->n_elems; i++) {
        int64_t x;
        memcpy(&x, (const char *)v->data + i * 8, 8);
        out[i] = (int32_t)x;
    }
    return (size_t)v->n_elems;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= w)) w = d; /* NaN counts as worst */
    }
    return w;
}

static void l2(float *v, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)v[i] * v[i];
    for (size_t i = 0; i < n; i++) v[i] = (float)(v[i] / (s > 1e-24 ? sqrt(s) : 1e-12));
}

static eft_embedder *open_fx(const char *name, int max_batch, const int *lens, int n_lens) {
    char model[1024];
    snprintf(model, sizeof model, "%s%s", test_path("tests/fixtures/models/"), name);
    eft_embedder_params p = eft_embedder_params_default();
    p.max_batch = max_batch;
    p.n_threads = 2;
    p.seq_lens = lens;
    p.n_seq_lens = n_lens;
    p.no_cache = true;
    eft_embedder *e = NULL;
    CHECK_MSG(eft_embedder_open(model, &p, &e) == EFT_OK, "%s: %s", name, eft_last_error());
    return e;
}

/* run() on texts and on the reference's own ids: both equal case{i}.embedding, n_tokens equal
 * the ids' length, with and without several compiled lengths. */
static void check_run(const char *name, const int *lens, int n_lens) {
    ref r;
    if (!ref_open(&r, name)) return;
    eft_embedder *e = open_fx(name, 2, lens, n_lens);
    if (!e) {
        ref_close(&r);
        return;
    }
    const double tol = ref_tol(&r, "embedding");
    const int64_t D = eft_embedder_dim(e);
    float *out = calloc(r.n * (size_t)D, sizeof *out), *out_ids = calloc(r.n * (size_t)D, sizeof *out);
    size_t ntok[16] = {0}, ntok_ids[16] = {0}, n_ids[16];
    int32_t ids_buf[16][128];
    const int32_t *ids[16];
    char key[64];
    for (size_t i = 0; i < r.n; i++) {
        snprintf(key, sizeof key, "case%zu.input_ids", i);
        n_ids[i] = ref_ids(&r, key, ids_buf[i], 128);
        ids[i] = ids_buf[i];
        CHECK_MSG(n_ids[i] > 0, "%s: no %s", name, key);
    }
    eft_embed_request q = eft_embed_request_default();
    q.texts = r.tv;
    q.n = r.n;
    q.n_tokens = ntok;
    CHECK_MSG(eft_embedder_run(e, &q, out) == EFT_OK, "%s: %s", name, eft_embedder_errmsg(e));
    q.texts = NULL;
    q.ids = ids;
    q.n_ids = n_ids;
    q.n_tokens = ntok_ids;
    CHECK_MSG(eft_embedder_run(e, &q, out_ids) == EFT_OK, "%s ids: %s", name, eft_embedder_errmsg(e));
    double worst = 0;
    for (size_t i = 0; i < r.n; i++) {
        snprintf(key, sizeof key, "case%zu.embedding", i);
        size_t nw = 0;
        const float *want = ref_f32(&r, key, &nw);
        CHECK_MSG(want && nw == (size_t)D, "%s: %s", name, key);
        if (!want || nw != (size_t)D) continue;
        double d = max_diff(out + i * (size_t)D, want, (size_t)D);
        if (d > worst) worst = d;
        CHECK_EQ_INT(ntok[i], n_ids[i]);
        CHECK_EQ_INT(ntok_ids[i], n_ids[i]);
        /* The same ids whether the tokenizer made them or the caller gave them. */
        CHECK_MSG(max_diff(out + i * (size_t)D, out_ids + i * (size_t)D, (size_t)D) == 0,
                  "%s case %zu: ids input differs from text input", name, i);
    }
    CHECK_MSG(worst <= tol, "%s (%d lengths): max abs error %g over %g", name, n_lens, worst, tol);
    free(out);
    free(out_ids);
    eft_embedder_close(e);
    ref_close(&r);
}

static void test_run_vs_reference(void) {
    const char *names[] = {"bert", "roberta", "xlm-roberta", "mpnet"};
    static const int lens[] = {4, 8, 16, 32, 64};
    for (int i = 0; i < 4; i++) {
        check_run(names[i], NULL, 0);
        check_run(names[i], lens, 5);
    }
}

/* normalize 0 / 1 / -1 and dimensions against the references: bert has mean pooling + Normalize
 * (so normalize 0 is case{i}.pooled.mean), roberta has cls and no Normalize. */
static void test_normalize_and_dimensions(void) {
    ref rb, rr;
    if (!ref_open(&rb, "bert") || !ref_open(&rr, "roberta")) return;
    eft_embedder *eb = open_fx("bert", 8, NULL, 0), *er = open_fx("roberta", 8, NULL, 0);
    if (!eb || !er) goto done;
    const double tol = ref_tol(&rb, "embedding");
    const size_t D = (size_t)eft_embedder_dim(eb), n = rb.n;
    CHECK_EQ_INT(D, 64);
    float out[16 * 64], want[64];
    char key[64];
    eft_embed_request q = eft_embed_request_default();
    q.texts = rb.tv;
    q.n = n;
    q.normalize = 0; /* bert without its Normalize module: the plain mean */
    CHECK_EQ_INT(eft_embedder_run(eb, &q, out), EFT_OK);
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "case%zu.pooled.mean", i);
        const float *w = ref_f32(&rb, key, NULL);
        CHECK_MSG(w && max_diff(out + i * D, w, D) <= tol, "bert normalize 0, case %zu", i);
    }
    q.normalize = -1;
    q.dimensions = 16; /* the cut of the unit vector, normalised again */
    CHECK_EQ_INT(eft_embedder_run(eb, &q, out), EFT_OK);
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "case%zu.embedding", i);
        const float *w = ref_f32(&rb, key, NULL);
        if (!w) continue;
        memcpy(want, w, 16 * sizeof *want);
        l2(want, 16);
        CHECK_MSG(max_diff(out + i * 16, want, 16) <= tol, "bert dimensions 16, case %zu", i);
    }
    q.dimensions = 65;
    CHECK_EQ_INT(eft_embedder_run(eb, &q, out), EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(eft_embedder_errmsg(eb), "dimensions 65");
    q.dimensions = -1;
    CHECK_EQ_INT(eft_embedder_run(eb, &q, out), EFT_ERR_INVALID_ARGUMENT);

    /* roberta: no Normalize, so -1 is the raw cls vector, 1 normalises it, and a cut stays raw. */
    eft_embed_request qr = eft_embed_request_default();
    qr.texts = rr.tv;
    qr.n = rr.n;
    qr.normalize = 1;
    CHECK_EQ_INT(eft_embedder_run(er, &qr, out), EFT_OK);
    for (size_t i = 0; i < rr.n; i++) {
        snprintf(key, sizeof key, "case%zu.pooled.cls", i);
        const float *w = ref_f32(&rr, key, NULL);
        if (!w) continue;
        memcpy(want, w, sizeof want);
        l2(want, 64);
        CHECK_MSG(max_diff(out + i * D, want, D) <= tol, "roberta normalize 1, case %zu", i);
        double s = 0;
        for (size_t k = 0; k < D; k++) s += (double)out[i * D + k] * out[i * D + k];
        CHECK_NEAR(s, 1.0, 1e-5);
    }
    qr.normalize = -1;
    qr.dimensions = 10;
    CHECK_EQ_INT(eft_embedder_run(er, &qr, out), EFT_OK);
    for (size_t i = 0; i < rr.n; i++) {
        snprintf(key, sizeof key, "case%zu.embedding", i);
        const float *w = ref_f32(&rr, key, NULL);
        CHECK_MSG(w && max_diff(out + i * 10, w, 10) <= tol, "roberta dimensions 10, case %zu", i);
    }
    qr.normalize = 2;
    CHECK_EQ_INT(eft_embedder_run(er, &qr, out), EFT_ERR_INVALID_ARGUMENT);
done:
    eft_embedder_close(eb);
    eft_embedder_close(er);
    ref_close(&rb);
    ref_close(&rr);
}

/* Many inputs of mixed lengths in a scrambled order, through five compiled lengths and small
 * batches: the vectors equal those of one input at a time at the single full length, each in its
 * input's place. */
static void test_buckets_keep_order(void) {
    static const int lens[] = {6, 12, 24, 64};
    eft_embedder *one = open_fx("bert", 1, NULL, 0), *many = open_fx("bert", 3, lens, 4);
    if (!one || !many) goto done;
    enum { N = 23 };
    static char texts[N][512];
    const char *tv[N];
    for (int i = 0; i < N; i++) {
        /* Lengths 1..~55 words, deliberately not sorted. */
        int words = (i * 7919) % 23 * 2 + 1;
        texts[i][0] = 0;
        for (int w = 0; w < words; w++) strcat(texts[i], w % 3 ? "hello " : "world ");
        tv[i] = texts[i];
    }
    const size_t D = (size_t)eft_embedder_dim(one);
    float *a = calloc(N * D, sizeof *a), *b = calloc(N * D, sizeof *b);
    size_t ta[N], tb[N];
    eft_embed_request q = eft_embed_request_default();
    q.texts = tv;
    q.n = N;
    q.truncate = EFT_TRUNCATE_RIGHT_SIDE; /* the longest ones are cut at 64 either way */
    q.n_tokens = ta;
    for (int i = 0; i < N; i++) {
        q.texts = tv + i;
        q.n = 1;
        q.n_tokens = ta + i;
        CHECK_MSG(eft_embedder_run(one, &q, a + (size_t)i * D) == EFT_OK, "%s", eft_embedder_errmsg(one));
    }
    q.texts = tv;
    q.n = N;
    q.n_tokens = tb;
    CHECK_MSG(eft_embedder_run(many, &q, b) == EFT_OK, "%s", eft_embedder_errmsg(many));
    int distinct_lens = 0;
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(ta[i], tb[i]);
        distinct_lens += i == 0 || ta[i] != ta[i - 1];
        CHECK_MSG(max_diff(a + (size_t)i * D, b + (size_t)i * D, D) <= 1e-6, "input %d: bucketed %g from single", i,
                  max_diff(a + (size_t)i * D, b + (size_t)i * D, D));
    }
    CHECK(distinct_lens > 10);
    CHECK(ta[0] != ta[1]);
    free(a);
    free(b);
done:
    eft_embedder_close(one);
    eft_embedder_close(many);
}

static void test_seq_len_limits(void) {
    static const int lens[] = {16, 32};
    eft_embedder *e = open_fx("bert", 4, lens, 2);
    if (!e) return;
    CHECK_EQ_INT(eft_embedder_max_tokens(e), 32);
    static char long_text[2048];
    for (int i = 0; i < 100; i++) memcpy(long_text + i * 5, "word ", 5);
    const char *tv[3] = {"short", "two words", long_text};
    float out[3 * 64];
    size_t nt[3];
    eft_embed_request q = eft_embed_request_default();
    q.texts = tv;
    q.n = 3;
    q.n_tokens = nt;
    CHECK_EQ_INT(eft_embedder_run(e, &q, out), EFT_ERR_LIMIT);
    CHECK_CONTAINS(eft_embedder_errmsg(e), "input 2 has 202 tokens"); /* "word" is two WordPieces here */
    CHECK_CONTAINS(eft_embedder_errmsg(e), "limit of 32");
    CHECK_CONTAINS(eft_embedder_errmsg(e), "model takes 64");
    q.truncate = EFT_TRUNCATE_LEFT_SIDE;
    CHECK_EQ_INT(eft_embedder_run(e, &q, out), EFT_OK);
    CHECK_EQ_INT(nt[2], 32);
    CHECK(nt[0] > 2 && nt[0] < 16);
    /* Ids over the limit: the same contract. */
    int32_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = 5 + i;
    const int32_t *idp[1] = {ids};
    size_t nid[1] = {40};
    eft_embed_request qi = eft_embed_request_default();
    qi.ids = idp;
    qi.n_ids = nid;
    qi.n = 1;
    CHECK_EQ_INT(eft_embedder_run(e, &qi, out), EFT_ERR_LIMIT);
    CHECK_CONTAINS(eft_embedder_errmsg(e), "input 0 has 40 tokens, over the limit of 32");
    qi.truncate = EFT_TRUNCATE_RIGHT_SIDE;
    qi.n_tokens = nt;
    CHECK_EQ_INT(eft_embedder_run(e, &qi, out), EFT_OK);
    CHECK_EQ_INT(nt[0], 32);
    /* Ids are cut as given: the right cut is the first 32, the left cut the last 32. */
    float cut[64];
    nid[0] = 32;
    qi.truncate = EFT_TRUNCATE_NONE;
    CHECK_EQ_INT(eft_embedder_run(e, &qi, cut), EFT_OK);
    CHECK(max_diff(out, cut, 64) == 0);
    nid[0] = 40;
    qi.truncate = EFT_TRUNCATE_LEFT_SIDE;
    CHECK_EQ_INT(eft_embedder_run(e, &qi, out), EFT_OK);
    idp[0] = ids + 8;
    nid[0] = 32;
    qi.truncate = EFT_TRUNCATE_NONE;
    CHECK_EQ_INT(eft_embedder_run(e, &qi, cut), EFT_OK);
    CHECK(max_diff(out, cut, 64) == 0);
    eft_embedder_close(e);

    /* Lists that cannot be planned. */
    const char *bert = test_path("tests/fixtures/models/bert");
    eft_embedder_params p = eft_embedder_params_default();
    p.no_cache = true;
    static const int unsorted[] = {32, 16}, zero[] = {0, 16}, over[] = {16, 128}, dup[] = {16, 16};
    const int *bad[] = {unsorted, zero, over, dup};
    const char *says[] = {"16 follows 32", "length 0", "length 128 is outside 1..64", "16 follows 16"};
    for (int i = 0; i < 4; i++) {
        p.seq_lens = bad[i];
        p.n_seq_lens = 2;
        e = NULL;
        CHECK_EQ_INT(eft_embedder_open(bert, &p, &e), EFT_ERR_INVALID_ARGUMENT);
        CHECK(e == NULL);
        CHECK_CONTAINS(eft_last_error(), says[i]);
    }
    p.seq_lens = NULL;
    p.n_seq_lens = 2;
    CHECK_EQ_INT(eft_embedder_open(bert, &p, &e), EFT_ERR_INVALID_ARGUMENT);
    p.seq_lens = lens;
    p.n_seq_lens = 65;
    CHECK_EQ_INT(eft_embedder_open(bert, &p, &e), EFT_ERR_INVALID_ARGUMENT);
    p.n_seq_lens = -1;
    CHECK_EQ_INT(eft_embedder_open(bert, &p, &e), EFT_ERR_INVALID_ARGUMENT);
}

static void test_run_bad_arguments(void) {
    eft_embedder *e = open_fx("bert", 4, NULL, 0);
    if (!e) return;
    float out[2 * 64];
    const char *tv[2] = {"a", NULL};
    eft_embed_request q = eft_embed_request_default();
    CHECK_EQ_INT(q.normalize, -1);
    CHECK_EQ_INT(eft_embedder_run(e, &q, NULL), EFT_OK); /* n = 0: nothing to do */
    CHECK_EQ_INT(eft_embedder_run(e, NULL, out), EFT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(eft_embedder_run(NULL, &q, out), EFT_ERR_INVALID_ARGUMENT);
    q.n = 1;
    CHECK_EQ_INT(eft_embedder_run(e, &q, out), EFT_ERR_INVALID_ARGUMENT); /* neither texts nor ids */
    q.texts = tv;
    CHECK_EQ_INT(eft_embedder_run(e, &q, NULL), EFT_ERR_INVALID_ARGUMENT);
    q.n = 2;
    CHECK_EQ_INT(eft_embedder_run(e, &q, out), EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(eft_embedder_errmsg(e), "input 1 is NULL");
    q.n = 1;
    q.truncate = (eft_truncate)7;
    CHECK_EQ_INT(eft_embedder_run(e, &q, out), EFT_ERR_INVALID_ARGUMENT);
    q.truncate = EFT_TRUNCATE_NONE;
    q.prompt_name = "nope";
    CHECK_EQ_INT(eft_embedder_run(e, &q, out), EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(eft_embedder_errmsg(e), "'query'");
    q.prompt_name = "query";
    CHECK_EQ_INT(eft_embedder_run(e, &q, out), EFT_OK);
    /* Ids: empty, outside the vocabulary, with a prompt. */
    int32_t good[3] = {2, 10, 3}, badid[2] = {2, 100000};
    const int32_t *idp[1] = {good};
    size_t nid[1] = {0};
    eft_embed_request qi = eft_embed_request_default();
    qi.ids = idp;
    qi.n_ids = nid;
    qi.n = 1;
    CHECK_EQ_INT(eft_embedder_run(e, &qi, out), EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(eft_embedder_errmsg(e), "empty token sequence");
    nid[0] = 3;
    CHECK_EQ_INT(eft_embedder_run(e, &qi, out), EFT_OK);
    qi.prompt_name = "query";
    CHECK_EQ_INT(eft_embedder_run(e, &qi, out), EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(eft_embedder_errmsg(e), "prompt_name");
    qi.prompt_name = NULL;
    idp[0] = badid;
    nid[0] = 2;
    CHECK_EQ_INT(eft_embedder_run(e, &qi, out), EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(eft_embedder_errmsg(e), "token id 100000 at position 1");
    qi.n_ids = NULL;
    CHECK_EQ_INT(eft_embedder_run(e, &qi, out), EFT_ERR_INVALID_ARGUMENT);
    CHECK(eft_embedder_tokenizer(e) != NULL);
    CHECK(eft_embedder_tokenizer(NULL) == NULL);
    CHECK_EQ_INT(eft_embedder_num_labels(e), 0);
    CHECK_EQ_INT(eft_embedder_hidden_size(e), 64);
    float score;
    const char *doc[1] = {"x"};
    CHECK_EQ_INT(eft_embedder_score(e, "q", doc, 1, EFT_TRUNCATE_NONE, &score, NULL), EFT_ERR_UNSUPPORTED);
    CHECK_CONTAINS(eft_embedder_errmsg(e), "no sequence-classification head");
    eft_embedder_close(e);
}

/* Cross-encoder scores for the reference's (query, passage) pairs: each pair alone (its own
 * query) and all four through the buckets, with the reference's lengths. */
static void test_score(void) {
    ref r;
    if (!ref_open(&r, "bert-cls")) return;
    eft_embedder *e = open_fx("bert-cls", 3, (const int[]){16, 32, 64}, 3);
    if (!e) {
        ref_close(&r);
        return;
    }
    CHECK_EQ_INT(eft_embedder_num_labels(e), 1);
    const double tol = ref_tol(&r, "logits");
    char key[64];
    double worst = 0;
    int compared = 0;
    for (size_t i = 0; i < r.n; i++) {
        json_t *pair = json_array_get(r.texts, i);
        const char *qtext = json_string_value(json_array_get(pair, 0)), *doc = json_string_value(json_array_get(pair, 1));
        float s = NAN;
        size_t nt = 0;
        CHECK_MSG(eft_embedder_score(e, qtext, &doc, 1, EFT_TRUNCATE_NONE, &s, &nt) == EFT_OK, "%s",
                  eft_embedder_errmsg(e));
        snprintf(key, sizeof key, "case%zu.logits", i);
        const float *w = ref_f32(&r, key, NULL);
        snprintf(key, sizeof key, "case%zu.input_ids", i);
        int32_t ids[256];
        CHECK_EQ_INT(nt, ref_ids(&r, key, ids, 256));
        if (!w) continue;
        compared++;
        double d = fabs((double)s - w[0]);
        if (!(d <= worst)) worst = d;
    }
    CHECK_EQ_INT(compared, 4);
    CHECK_MSG(worst <= tol, "bert-cls: max abs error %g over %g", worst, tol);
    /* One query against several passages in one call: each score in its place. */
    json_t *p0 = json_array_get(r.texts, 0);
    const char *q0 = json_string_value(json_array_get(p0, 0));
    const char *docs[3] = {"The weather today is sunny with a light breeze from the west.",
                           json_string_value(json_array_get(p0, 1)), "x"};
    float s3[3], s1;
    CHECK_EQ_INT(eft_embedder_score(e, q0, docs, 3, EFT_TRUNCATE_NONE, s3, NULL), EFT_OK);
    CHECK_NEAR(s3[1], ref_f32(&r, "case0.logits", NULL)[0], tol);
    CHECK_EQ_INT(eft_embedder_score(e, q0, docs + 2, 1, EFT_TRUNCATE_NONE, &s1, NULL), EFT_OK);
    CHECK_NEAR(s3[2], s1, 1e-6);
    /* Over the limit: an error naming both lengths, or longest-first truncation when asked. */
    static char long_doc[2048];
    for (int i = 0; i < 100; i++) memcpy(long_doc + i * 5, "word ", 5);
    const char *ld[1] = {long_doc};
    size_t nt;
    CHECK_EQ_INT(eft_embedder_score(e, q0, ld, 1, EFT_TRUNCATE_NONE, &s1, &nt), EFT_ERR_LIMIT);
    CHECK_CONTAINS(eft_embedder_errmsg(e), "over the limit of 64");
    CHECK_EQ_INT(eft_embedder_score(e, q0, ld, 1, EFT_TRUNCATE_RIGHT_SIDE, &s1, &nt), EFT_OK);
    CHECK_EQ_INT(nt, 64);
    CHECK(isfinite(s1));
    CHECK_EQ_INT(eft_embedder_score(e, NULL, ld, 1, EFT_TRUNCATE_NONE, &s1, NULL), EFT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(eft_embedder_score(e, q0, NULL, 1, EFT_TRUNCATE_NONE, &s1, NULL), EFT_ERR_INVALID_ARGUMENT);
    const char *nul[1] = {NULL};
    CHECK_EQ_INT(eft_embedder_score(e, q0, nul, 1, EFT_TRUNCATE_NONE, &s1, NULL), EFT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(eft_embedder_score(e, q0, ld, 1, (eft_truncate)9, &s1, NULL), EFT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(eft_embedder_score(e, q0, ld, 0, EFT_TRUNCATE_NONE, NULL, NULL), EFT_OK);
    eft_embedder_close(e);
    ref_close(&r);
}

/* A caller's pooling function: the mean over the mask, and checks of what it is handed. */
typedef struct pool_seen {
    int calls, bad;
} pool_seen;

static int mean_pool(float *out, const float *hidden, const uint8_t *mask, int64_t T, int64_t C, void *user) {
    pool_seen *s = user;
    s->calls++;
    int64_t n = 0;
    for (int64_t c = 0; c < C; c++) out[c] = 0;
    for (int64_t t = 0; t < T; t++) {
        if (!mask[t]) {
            for (int64_t c = 0; c < C; c++) s->bad += hidden[t * C + c] != 0; /* padding is zeros */
            continue;
        }
        if (t != n) s->bad++; /* the input's tokens come first */
        n++;
        for (int64_t c = 0; c < C; c++) out[c] += hidden[t * C + c];
    }
    /* Each input runs at the smallest compiled length (8, 16, 64) that holds it. */
    if (T != (n <= 8 ? 8 : n <= 16 ? 16 : 64)) s->bad++;
    for (int64_t c = 0; c < C; c++) out[c] /= (float)(n ? n : 1);
    out[C] = (float)n; /* one extra value: pool_dim need not be C */
    return 0;
}

static int refuse_pool(float *out, const float *hidden, const uint8_t *mask, int64_t T, int64_t C, void *user) {
    (void)out, (void)hidden, (void)mask, (void)T, (void)C, (void)user;
    return 42;
}

static void test_pool_function_and_tokens(void) {
    ref r;
    if (!ref_open(&r, "bert")) return;
    eft_embedder *e = open_fx("bert", 2, (const int[]){8, 16, 64}, 3);
    if (!e) {
        ref_close(&r);
        return;
    }
    const double tol = ref_tol(&r, "embedding"), htol = ref_tol(&r, "hidden");
    char key[64];
    float out[16 * 65];
    size_t nt[16];
    pool_seen seen = {0, 0};
    eft_embed_request q = eft_embed_request_default();
    q.texts = r.tv;
    q.n = r.n;
    q.pool = mean_pool;
    q.pool_dim = 65;
    q.pool_user = &seen;
    q.normalize = 0;
    q.n_tokens = nt;
    CHECK_MSG(eft_embedder_run(e, &q, out) == EFT_OK, "%s", eft_embedder_errmsg(e));
    CHECK_EQ_INT(seen.calls, r.n);
    CHECK_EQ_INT(seen.bad, 0);
    for (size_t i = 0; i < r.n; i++) {
        snprintf(key, sizeof key, "case%zu.pooled.mean", i);
        const float *w = ref_f32(&r, key, NULL);
        CHECK_MSG(w && max_diff(out + i * 65, w, 64) <= tol, "pool function, case %zu", i);
        CHECK_EQ_INT(out[i * 65 + 64], nt[i]);
    }
    /* The cut and normalisation apply after the caller's pooling: 64 values normalised equal
     * the model's own mean + Normalize. */
    q.dimensions = 64;
    q.normalize = 1;
    CHECK_EQ_INT(eft_embedder_run(e, &q, out), EFT_OK);
    for (size_t i = 0; i < r.n; i++) {
        snprintf(key, sizeof key, "case%zu.embedding", i);
        const float *w = ref_f32(&r, key, NULL);
        CHECK_MSG(w && max_diff(out + i * 64, w, 64) <= tol, "pool function normalised, case %zu", i);
    }
    q.pool = refuse_pool;
    CHECK_EQ_INT(eft_embedder_run(e, &q, out), EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(eft_embedder_errmsg(e), "pooling function returned 42");
    q.pool_dim = 0;
    CHECK_EQ_INT(eft_embedder_run(e, &q, out), EFT_ERR_INVALID_ARGUMENT);

    /* Token-level output against the transformer's last hidden state. */
    float *h = calloc((size_t)eft_embedder_max_tokens(e) * (size_t)eft_embedder_hidden_size(e), sizeof *h);
    for (size_t i = 0; i < r.n; i++) {
        eft_embed_request t = eft_embed_request_default();
        t.texts = r.tv + i;
        t.n = 1;
        size_t T = 0;
        CHECK_MSG(eft_embedder_run_tokens(e, &t, h, &T) == EFT_OK, "%s", eft_embedder_errmsg(e));
        snprintf(key, sizeof key, "case%zu.last_hidden_state", i);
        size_t nw = 0;
        const float *w = ref_f32(&r, key, &nw);
        CHECK_MSG(w && nw == T * 64, "case %zu: %zu tokens, reference %zu values", i, T, nw);
        if (w && nw == T * 64) CHECK_MSG(max_diff(h, w, nw) <= htol, "token output, case %zu", i);
    }
    eft_embed_request t = eft_embed_request_default();
    size_t T;
    t.texts = r.tv;
    t.n = 2;
    CHECK_EQ_INT(eft_embedder_run_tokens(e, &t, h, &T), EFT_ERR_INVALID_ARGUMENT);
    t.n = 1;
    t.dimensions = 8;
    CHECK_EQ_INT(eft_embedder_run_tokens(e, &t, h, &T), EFT_ERR_INVALID_ARGUMENT);
    t.dimensions = 0;
    CHECK_EQ_INT(eft_embedder_run_tokens(e, &t, NULL, &T), EFT_ERR_INVALID_ARGUMENT);
    free(h);
    eft_embedder_close(e);
    ref_close(&r);
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

/* params.pooling replaces the folder's pooling: bert's folder says mean + Normalize, so "cls"
 * gives the normalised pooled.cls of sentence-transformers and "max,mean" both, concatenated and
 * normalised together; unknown names are refused at open. */
static void test_pooling_override(void) {
    ref r;
    if (!ref_open(&r, "bert")) return;
    char model[1024];
    snprintf(model, sizeof model, "%sbert", test_path("tests/fixtures/models/"));
    double tol = ref_tol(&r, "pooled");
    const char *sets[] = {"cls", "avg", "max,mean", "weightedmean,lasttoken,mean_sqrt_len_tokens"};
    for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++) {
        eft_embedder_params p = eft_embedder_params_default();
        p.no_cache = true;
        p.pooling = sets[s];
        eft_embedder *e = NULL;
        CHECK_MSG(eft_embedder_open(model, &p, &e) == EFT_OK, "%s: %s", sets[s], eft_last_error());
        if (!e) continue;
        int64_t C = eft_embedder_hidden_size(e), D = eft_embedder_dim(e);
        for (size_t i = 0; i < r.n; i++) {
            float want[64 * 6], got[64 * 6];
            int64_t k = 0;
            char names[128];
            snprintf(names, sizeof names, "%s", sets[s]);
            for (char *tok = strtok(names, ","); tok; tok = strtok(NULL, ",")) {
                char key[96];
                snprintf(key, sizeof key, "case%zu.pooled.%s", i, strcmp(tok, "avg") ? tok : "mean");
                size_t n = 0;
                const float *v = ref_f32(&r, key, &n);
                CHECK_MSG(v && (int64_t)n == C, "%s", key);
                if (!v || (int64_t)n != C) break;
                memcpy(want + k, v, sizeof(float) * (size_t)C);
                k += C;
            }
            CHECK_EQ_INT(k, D);
            if (k != D) break;
            l2(want, (size_t)D);
            CHECK_EQ_INT(eft_embedder_embed(e, &r.tv[i], 1, got), EFT_OK);
            CHECK_MSG(max_diff(got, want, (size_t)D) <= tol, "%s case %zu: %g", sets[s], i, max_diff(got, want, (size_t)D));
        }
        eft_embedder_close(e);
    }
    const char *bad[] = {"", "sum", "mean,mean", "mean,"};
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        eft_embedder_params p = eft_embedder_params_default();
        p.no_cache = true;
        p.pooling = bad[b];
        eft_embedder *e = NULL;
        CHECK_MSG(eft_embedder_open(model, &p, &e) == EFT_ERR_INVALID_ARGUMENT && !e, "'%s' accepted", bad[b]);
        CHECK(strstr(eft_last_error(), "pooling") != NULL);
    }
    ref_close(&r);
}

int main(void) {
    setenv("EFT_CACHE_DIR", test_tmpdir("embedder_cache"), 1); /* compiled programs: never the user's cache */
    RUN(test_fixtures);
    RUN(test_limits);
    RUN(test_run_vs_reference);
    RUN(test_normalize_and_dimensions);
    RUN(test_buckets_keep_order);
    RUN(test_seq_len_limits);
    RUN(test_run_bad_arguments);
    RUN(test_score);
    RUN(test_pool_function_and_tokens);
    RUN(test_pooling_override);
    RUN(test_out_of_memory);
    return test_summary();
}
