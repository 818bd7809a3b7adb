/* test_real_encoders.c — real published embedding models against sentence-transformers in bulk
 * (issue 5, "checked against the reference"): for each tests/fixtures/ref/<model>-bulk.safetensors
 * whose model folder the fetch step has put in models/, 240 sentences of mixed lengths (some over
 * max_seq_length, truncated on the right as sentence-transformers does) and 40 queries go through
 * the public embedder API with f32, f16 and int8 (Q8_0 blocks through the precision pass) weights,
 * and MiniLM with int4-g32-asym (Q4_1 blocks with searched scales and minimums).
 * Every embedding must have a cosine of at least 0.99999 (f32) / 0.9999 (f16) / 0.999 (int8) /
 * 0.955 (int4-g32-asym) to
 * the reference, and each query's nearest sentence by eft's own embeddings must be the
 * reference's. Plain I8 (no block scales) is not a type the encoder compiles to: refused cleanly. A model that has not been fetched is skipped with a message.
 * Sanitizer builds are many times slower: there MiniLM runs on a subset (every reference top-1,
 * every text over the length limit, every 8th other text, all queries: the nearest sentence
 * within the subset is then still the reference's top-1, with at least the same margin), MPNet
 * and int8 are left to the release build. */
#include <jansson.h>
#include <math.h>
#include <time.h>
#include <unistd.h>

#include "eft.h"
#include "formats/safetensors.h"
#include "test.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* all-MiniLM-L6-v2 is fetched by default (so this runs in CI); all-mpnet-base-v2 only on request
 * (scripts/fetch_models.py all-mpnet-base-v2). */
static const char *const MODELS[] = {"all-MiniLM-L6-v2", "all-mpnet-base-v2"};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cosine(const float *a, const float *b, int64_t d) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t k = 0; k < d; k++) {
        ab += (double)a[k] * b[k];
        aa += (double)a[k] * a[k];
        bb += (double)b[k] * b[k];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
}

/* A bulk reference: texts, queries, embeddings [N, D], query_embeddings [Q, D], top1 [Q]. */
typedef struct bulk_ref {
    eft__safetensors *st;
    json_t *texts, *queries, *tol;
    const char **tv, **qv; /* [N], [Q] borrowed from texts / queries */
    size_t n, nq;
    int64_t d;
    const float *emb, *qemb; /* [N, D], [Q, D] */
    const int64_t *top1;     /* [Q] */
    int max_seq_length;
    /* The texts embedded: all of them, or (sanitizer builds) a subset: sub[0 .. n_sub) are indices
     * into texts, ascending, and sv[k] = tv[sub[k]]. */
    size_t *sub, n_sub;
    const char **sv;
    json_t *n_tokens;
} bulk_ref;

static void ref_close(bulk_ref *r) {
    free(r->sub);
    free(r->sv);
    json_decref(r->n_tokens);
    free(r->tv);
    free(r->qv);
    json_decref(r->texts);
    json_decref(r->queries);
    json_decref(r->tol);
    eft__safetensors_close(r->st);
    memset(r, 0, sizeof *r);
}

static bool ref_open(const char *name, bulk_ref *r) {
    memset(r, 0, sizeof *r);
    char path[1024];
    snprintf(path, sizeof path, "%s%s-bulk.safetensors", test_path("tests/fixtures/ref/"), name);
    eft__error err;
    CHECK_MSG(eft__safetensors_open(path, &r->st, &err) == EFT_OK, "%s", err.msg);
    if (!r->st) return false;
    const char *kind = eft__safetensors_metadata(r->st, "kind");
    const char *msl = eft__safetensors_metadata(r->st, "max_seq_length");
    r->texts = json_loads(eft__safetensors_metadata(r->st, "texts"), 0, NULL);
    r->queries = json_loads(eft__safetensors_metadata(r->st, "queries"), 0, NULL);
    r->tol = json_loads(eft__safetensors_metadata(r->st, "tolerance"), 0, NULL);
    const eft__tensor_view *e = eft__safetensors_find(r->st, "embeddings");
    const eft__tensor_view *q = eft__safetensors_find(r->st, "query_embeddings");
    const eft__tensor_view *t = eft__safetensors_find(r->st, "top1");
    bool ok = kind && strcmp(kind, "encoder_bulk") == 0 && msl && json_is_array(r->texts) &&
              json_is_array(r->queries) && json_is_object(r->tol) && e && q && t && e->dtype == EFT_DTYPE_F32 &&
              q->dtype == EFT_DTYPE_F32 && t->dtype == EFT_DTYPE_I64 && e->ndim == 2 && q->ndim == 2 &&
              t->ndim == 1;
    CHECK_MSG(ok, "%s: not a bulk encoder reference (kind, texts, queries, tolerance, tensors)", path);
    if (!ok) return false;
    r->n = json_array_size(r->texts);
    r->nq = json_array_size(r->queries);
    r->d = e->shape[1];
    r->max_seq_length = atoi(msl);
    ok = e->shape[0] == (int64_t)r->n && q->shape[0] == (int64_t)r->nq && q->shape[1] == r->d &&
         t->shape[0] == (int64_t)r->nq && r->n >= 200 && r->nq >= 1 && r->max_seq_length > 0;
    CHECK_MSG(ok, "%s: shapes do not match the texts (%zu texts, %zu queries)", path, r->n, r->nq);
    if (!ok) return false;
    r->emb = e->data;
    r->qemb = q->data;
    r->top1 = t->data;
    r->tv = calloc(r->n, sizeof *r->tv);
    r->qv = calloc(r->nq, sizeof *r->qv);
    if (!r->tv || !r->qv) return false;
    for (size_t i = 0; i < r->n; i++) r->tv[i] = json_string_value(json_array_get(r->texts, i));
    for (size_t i = 0; i < r->nq; i++) r->qv[i] = json_string_value(json_array_get(r->queries, i));
    for (size_t i = 0; i < r->nq; i++) {
        CHECK(r->top1[i] >= 0 && (size_t)r->top1[i] < r->n);
        if (r->top1[i] < 0 || (size_t)r->top1[i] >= r->n) return false;
    }
    r->n_tokens = json_loads(eft__safetensors_metadata(r->st, "n_tokens"), 0, NULL);
    CHECK(json_array_size(r->n_tokens) == r->n);
    r->sub = calloc(r->n, sizeof *r->sub);
    r->sv = calloc(r->n, sizeof *r->sv);
    if (!r->sub || !r->sv) return false;
    for (size_t i = 0; i < r->n; i++) {
        bool take = !SANITIZED || i % 8 == 0 ||
                    json_integer_value(json_array_get(r->n_tokens, i)) > r->max_seq_length;
        for (size_t k = 0; k < r->nq && !take; k++) take = (size_t)r->top1[k] == i;
        if (take) r->sv[r->n_sub] = r->tv[i], r->sub[r->n_sub++] = i;
    }
    return true;
}

/* The sentence nearest to query row q of qemb [., D] among emb [N, D], by cosine. */
static size_t nearest(const float *qrow, const float *emb, size_t n, int64_t d) {
    size_t best = 0;
    double best_c = -2;
    for (size_t j = 0; j < n; j++) {
        double c = cosine(qrow, emb + j * (size_t)d, d);
        if (c > best_c) best_c = c, best = j;
    }
    return best;
}

/* One model, one weight dtype: embeddings against the reference and the retrieval check. */
static void check_dtype(const char *name, const bulk_ref *r, eft_dtype dtype, double min_cos) {
    char model[1024];
    snprintf(model, sizeof model, "%s%s", test_path("models/"), name);
    /* Buckets 32, 64, 128, 256 and the model's own limit (256 for MiniLM, 384 for MPNet). */
    int lens[5], nl = 0;
    const int want[4] = {32, 64, 128, 256};
    for (int i = 0; i < 4; i++)
        if (want[i] < r->max_seq_length) lens[nl++] = want[i];
    lens[nl++] = r->max_seq_length;
    eft_embedder_params p = eft_embedder_params_default();
    p.max_batch = 16;
    p.n_threads = 2;
    p.truncate = EFT_TRUNCATE_RIGHT_SIDE;
    p.no_cache = true;
    p.seq_lens = lens;
    p.n_seq_lens = nl;
    p.dtype = dtype;
    double t0 = now_s();
    eft_embedder *e = NULL;
    CHECK_MSG(eft_embedder_open(model, &p, &e) == EFT_OK, "%s %s: %s", name, eft_dtype_name(dtype),
              eft_last_error());
    if (!e) return;
    double t_open = now_s() - t0;
    CHECK_EQ_INT(eft_embedder_dim(e), r->d);
    CHECK_EQ_INT(eft_embedder_max_tokens(e), r->max_seq_length);
    if (eft_embedder_dim(e) != r->d) {
        eft_embedder_close(e);
        return;
    }
    size_t d = (size_t)r->d;
    float *out = calloc(r->n_sub * d, sizeof *out), *qout = calloc(r->nq * d, sizeof *qout);
    CHECK(out && qout);
    t0 = now_s();
    eft_status s1 = out && qout ? eft_embedder_embed(e, r->sv, r->n_sub, out) : EFT_ERR_OUT_OF_MEMORY;
    CHECK_MSG(s1 == EFT_OK, "%s %s: %s", name, eft_dtype_name(dtype), eft_embedder_errmsg(e));
    eft_status s2 = s1 == EFT_OK ? eft_embedder_embed(e, r->qv, r->nq, qout) : s1;
    CHECK_MSG(s2 == EFT_OK, "%s %s queries: %s", name, eft_dtype_name(dtype), eft_embedder_errmsg(e));
    double t_embed = now_s() - t0;
    if (s1 == EFT_OK && s2 == EFT_OK) {
        double lo = 2, sum = 0;
        size_t worst = 0;
        size_t ns = r->n_sub;
        for (size_t i = 0; i < ns + r->nq; i++) {
            const float *got = i < ns ? out + i * d : qout + (i - ns) * d;
            const float *ref = i < ns ? r->emb + r->sub[i] * d : r->qemb + (i - ns) * d;
            double c = cosine(got, ref, r->d);
            sum += c;
            if (c < lo) lo = c, worst = i < ns ? r->sub[i] : r->n + (i - ns);
        }
        size_t agree = 0;
        for (size_t q = 0; q < r->nq; q++) {
            size_t got = r->sub[nearest(qout + q * d, out, ns, r->d)];
            if (got == (size_t)r->top1[q])
                agree++;
            else
                CHECK_MSG(0, "%s %s: query %zu \"%s\": nearest sentence %zu, reference %lld", name,
                          eft_dtype_name(dtype), q, r->qv[q], got, (long long)r->top1[q]);
        }
        printf("  %s %s: %zu texts + %zu queries, cosine min %.9f (1 - min = %.1e, %s %zu) mean %.9f "
               "(need >= %g); top-1 %zu/%zu; open %.2f s, embed %.2f s\n",
               name, eft_dtype_name(dtype), ns, r->nq, lo, 1 - lo, worst < r->n ? "text" : "query",
               worst < r->n ? worst : worst - r->n, sum / (double)(ns + r->nq), min_cos, agree, r->nq, t_open,
               t_embed);
        CHECK_MSG(lo >= min_cos, "%s %s: min cosine %.8f < %g", name, eft_dtype_name(dtype), lo, min_cos);
        CHECK_EQ_INT(agree, r->nq);
    }
    free(out);
    free(qout);
    eft_embedder_close(e);
}

/* Plain int8 without block scales is not something the precision pass makes (Q8_0 is eft's int8):
 * the embedder says so and leaves nothing open. */
static void check_i8_refused(const char *name) {
    char model[1024];
    snprintf(model, sizeof model, "%s%s", test_path("models/"), name);
    eft_embedder_params p = eft_embedder_params_default();
    p.no_cache = true;
    p.dtype = EFT_DTYPE_I8;
    eft_embedder *e = (eft_embedder *)&p; /* must come back NULL */
    eft_status s = eft_embedder_open(model, &p, &e);
    CHECK_MSG(s == EFT_ERR_UNSUPPORTED, "%s I8: status %s, expected EFT_ERR_UNSUPPORTED", name, eft_status_str(s));
    CHECK(e == NULL);
    CHECK_CONTAINS(eft_last_error(), "I8");
    if (s == EFT_OK) eft_embedder_close(e);
}

static void test_real_encoders(void) {
    int ran = 0;
    for (size_t m = 0; m < sizeof MODELS / sizeof MODELS[0]; m++) {
        const char *name = MODELS[m];
        char st[1024];
        snprintf(st, sizeof st, "%s%s/model.safetensors", test_path("models/"), name);
        if (access(st, R_OK) != 0) {
            printf("  skip %s: models/%s not fetched (python3 scripts/fetch_models.py %s)\n", name, name, name);
            continue;
        }
        if (SANITIZED && m > 0) {
            printf("  skip %s: sanitizer build, checked by the release build\n", name);
            continue;
        }
        bulk_ref r;
        if (ref_open(name, &r)) {
            double f32 = json_number_value(json_object_get(r.tol, "cosine_f32"));
            double f16 = json_number_value(json_object_get(r.tol, "cosine_f16"));
            CHECK(f32 >= 0.99999 && f16 >= 0.9999); /* the bars, at least */
            check_dtype(name, &r, EFT_DTYPE_F32, f32);
            check_dtype(name, &r, EFT_DTYPE_F16, f16);
            /* Sanitizer builds skip int8 to stay inside the test timeout: its memory safety is
             * covered there by test_ir, the int8 e2e compile and fuzz_ir_graph. */
            if (!SANITIZED) check_dtype(name, &r, EFT_DTYPE_Q8_0, 0.999);
            /* The best int4 layout (int4-g32-asym: Q4_1 blocks, each group's scale and minimum
             * searched): measured 0.9618 min / 0.978 mean cosine on MiniLM with every query's
             * nearest sentence kept, against 0.940 for plain int4 (Q4_0). The bar leaves 0.007 for
             * float-order differences between ISAs. MPNet (0.9508 min, 0.983 mean, top-1 40/40) is left out:
             * another MPNet pass would push the test towards ctest's timeout on a loaded machine. */
            if (!SANITIZED && m == 0) check_dtype(name, &r, EFT_DTYPE_Q4_1, 0.955);
            check_i8_refused(name);
            ran++;
        }
        ref_close(&r);
    }
    if (!ran) printf("  no real encoder fetched: nothing compared\n");
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress of a long test, as it happens */
    RUN(test_real_encoders);
    return test_summary();
}
