/*
 * test_encoder.c — the BERT-family encoder against transformers / sentence-transformers: for every
 * encoder fixture, each case's last hidden state, every pooling mode, the folder's embedding (with
 * and without a prompt), and a right-padded batch (padding must not move valid positions); the
 * cross-encoder's logits; the scalar kernels as well as the best ones; refusals of broken folders
 * with messages that name the tensor; and the real all-MiniLM-L6-v2 when it has been fetched.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "eft.h"
#include "formats/safetensors.h"
#include "kernels/cpu/kernels.h"
#include "models/encoder.h"
#include "test.h"

/* ---------------------------------------------------------------------------------------------
 * Reference files
 * ------------------------------------------------------------------------------------------- */

static eft__safetensors *ref_open(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/ref/%s.safetensors", name);
    eft__safetensors *st = NULL;
    eft__error err = {0};
    eft_status s = eft__safetensors_open(test_path(rel), &st, &err);
    CHECK_MSG(s == EFT_OK, "%s", err.msg);
    return st;
}

/* The tensor as floats (owned), or NULL when absent; *n gets its element count. */
static float *ref_f32(eft__safetensors *st, const char *name, int64_t *n) {
    const eft__tensor_view *t = eft__safetensors_find(st, name);
    if (!t) return NULL;
    float *out = malloc(sizeof(float) * (t->n_elems ? t->n_elems : 1));
    eft__error err = {0};
    if (eft__tensor_to_f32(t, out, t->n_elems, &err) != EFT_OK) {
        CHECK_MSG(0, "%s: %s", name, err.msg);
        free(out);
        return NULL;
    }
    if (n) *n = (int64_t)t->n_elems;
    return out;
}

/* An I64 tensor as int32 (owned), or NULL; shape copied to dims[2] (a 1-D [T] gives dims {1, T}). */
static int32_t *ref_ids(eft__safetensors *st, const char *name, int64_t dims[2]) {
    const eft__tensor_view *t = eft__safetensors_find(st, name);
    if (!t || t->dtype != EFT_DTYPE_I64) return NULL;
    int32_t *out = malloc(sizeof(int32_t) * (t->n_elems ? t->n_elems : 1));
    for (uint64_t i = 0; i < t->n_elems; i++) {
        int64_t v;
        memcpy(&v, (const char *)t->data + 8 * i, 8);
        out[i] = (int32_t)v;
    }
    dims[0] = t->ndim == 2 ? t->shape[0] : 1;
    dims[1] = t->ndim == 2 ? t->shape[1] : t->shape[0];
    return out;
}

/* tolerance metadata {"hidden": 1e-4, ...}: the value for key. */
static double ref_tol(eft__safetensors *st, const char *key) {
    const char *j = eft__safetensors_metadata(st, "tolerance");
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = j ? strstr(j, pat) : NULL;
    CHECK_MSG(p != NULL, "tolerance for %s", key);
    return p ? strtod(p + strlen(pat), NULL) : 0;
}

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; /* NaN sticks */
    }
    return m;
}

static eft_model *open_model(const char *dir) {
    eft_model *m = NULL;
    eft_status s = eft_model_open(dir, NULL, &m);
    CHECK_MSG(s == EFT_OK, "%s: %s", dir, eft_last_error());
    return m;
}

static eft__encoder *build(eft_model *m, int max_b, int max_t, int threads, const eft__kernels *kt) {
    eft__encoder_params p = eft__encoder_params_default();
    p.max_batch = max_b;
    p.max_tokens = max_t;
    p.n_threads = threads;
    p.kernels = kt;
    eft__encoder *enc = NULL;
    eft__error err = {0};
    eft_status s = eft__encoder_build(m, &p, &enc, &err);
    CHECK_MSG(s == EFT_OK, "build: %s", err.msg);
    return enc;
}

/* ---------------------------------------------------------------------------------------------
 * Sentence encoders
 * ------------------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    eft__pool_mode mode;
} POOLS[] = {
    {"cls", EFT__POOLOP_CLS},   {"mean", EFT__POOLOP_MEAN},
    {"max", EFT__POOLOP_MAX},   {"mean_sqrt_len_tokens", EFT__POOLOP_MEAN_SQRT_LEN},
    {"weightedmean", EFT__POOLOP_WEIGHTEDMEAN}, {"lasttoken", EFT__POOLOP_LASTTOKEN},
};

typedef struct errs {
    double hidden, pooled, embedding, batch;
} errs;

/* One model folder against its reference on one kernel table; returns the largest errors seen. */
static errs check_encoder(const char *name, const eft__kernels *kt, int threads) {
    errs e = {0};
    char dir[128];
    snprintf(dir, sizeof dir, "tests/fixtures/models/%s", name);
    eft_model *m = open_model(test_path(dir));
    eft__safetensors *ref = ref_open(name);
    if (!m || !ref) goto out;
    const double tol_h = ref_tol(ref, "hidden"), tol_p = ref_tol(ref, "pooled"), tol_e = ref_tol(ref, "embedding");
    const char *msl = eft__safetensors_metadata(ref, "max_seq_length");
    const int max_seq = msl ? atoi(msl) : 64;
    CHECK_EQ_INT(max_seq, 64);
    eft__encoder *enc = build(m, 6, 64, threads, kt);
    if (!enc) goto out;
    const int64_t C = eft__encoder_hidden_size(enc), D = eft__encoder_embed_size(enc);
    float *hidden = malloc(sizeof(float) * 6 * 64 * C), *emb = malloc(sizeof(float) * 6 * D);
    float pooled[1024];
    int ncases = 0;
    for (int i = 0;; i++, ncases++) {
        char key[96];
        int64_t dims[2];
        snprintf(key, sizeof key, "case%d.input_ids", i);
        int32_t *ids = ref_ids(ref, key, dims);
        if (!ids) break;
        int32_t len = (int32_t)dims[1];
        eft__error err = {0};
        CHECK_MSG(eft__encoder_forward(enc, ids, NULL, &len, 1, len, hidden, &err) == EFT_OK, "%s", err.msg);
        snprintf(key, sizeof key, "case%d.last_hidden_state", i);
        int64_t n = 0;
        float *want = ref_f32(ref, key, &n);
        CHECK_MSG(want && n == len * C, "%s", key);
        if (want && n == len * C) {
            double d = max_abs_diff(hidden, want, n);
            CHECK_MSG(d <= tol_h, "%s %s: max |diff| %g > %g", name, key, d, tol_h);
            if (d > e.hidden || d != d) e.hidden = d;
        }
        free(want);
        for (size_t k = 0; k < sizeof POOLS / sizeof POOLS[0]; k++) {
            snprintf(key, sizeof key, "case%d.pooled.%s", i, POOLS[k].name);
            want = ref_f32(ref, key, &n);
            CHECK_MSG(want && n == C, "%s", key);
            if (!want || n != C) continue;
            eft__pool(pooled, hidden, C, len, C, NULL, POOLS[k].mode);
            double d = max_abs_diff(pooled, want, C);
            CHECK_MSG(d <= tol_p, "%s %s: max |diff| %g > %g", name, key, d, tol_p);
            if (d > e.pooled || d != d) e.pooled = d;
            free(want);
        }
        /* The folder's own pooling and Normalize, without and with the "query: " prompt. */
        for (int q = 0; q < 2; q++) {
            int32_t *qids = ids, qlen = len;
            if (q) {
                snprintf(key, sizeof key, "case%d.query.input_ids", i);
                qids = ref_ids(ref, key, dims);
                if (!qids) continue;
                qlen = (int32_t)dims[1];
                /* The stored ids are the whole tokenisation; sentence-transformers encodes at most
                 * max_seq_length tokens, cutting the text and keeping the closing special token. */
                if (qlen > max_seq) {
                    qids[max_seq - 1] = qids[qlen - 1];
                    qlen = max_seq;
                }
            }
            CHECK_MSG(eft__encoder_embed(enc, qids, NULL, &qlen, 1, qlen, emb, &err) == EFT_OK, "%s", err.msg);
            snprintf(key, sizeof key, q ? "case%d.query.embedding" : "case%d.embedding", i);
            want = ref_f32(ref, key, &n);
            CHECK_MSG(want && n == D, "%s: %lld values, the encoder gives %lld", key, (long long)n, (long long)D);
            if (want && n == D) {
                double d = max_abs_diff(emb, want, D);
                CHECK_MSG(d <= tol_e, "%s %s: max |diff| %g > %g", name, key, d, tol_e);
                if (d > e.embedding || d != d) e.embedding = d;
            }
            free(want);
            if (q) free(qids);
        }
        free(ids);
    }
    CHECK_MSG(ncases >= 5, "%s: %d cases", name, ncases);

    /* The padded batch: valid positions as the reference, and each row's embedding as the single
     * text's (the batch holds the cases in order). */
    int64_t bd[2], md[2], n = 0;
    int32_t *bids = ref_ids(ref, "batch.input_ids", bd), *mask = ref_ids(ref, "batch.attention_mask", md);
    float *want = ref_f32(ref, "batch.last_hidden_state", &n);
    CHECK(bids && mask && want);
    if (bids && mask && want && bd[0] <= 6 && bd[1] <= 64) {
        const int B = (int)bd[0], T = (int)bd[1];
        int32_t lens[6];
        for (int b = 0; b < B; b++) {
            lens[b] = 0;
            for (int t = 0; t < T; t++) lens[b] += mask[b * T + t] != 0;
        }
        eft__error err = {0};
        CHECK_MSG(eft__encoder_forward(enc, bids, NULL, lens, B, T, hidden, &err) == EFT_OK, "%s", err.msg);
        for (int b = 0; b < B; b++) {
            double d = max_abs_diff(hidden + (int64_t)b * T * C, want + (int64_t)b * T * C, lens[b] * C);
            CHECK_MSG(d <= tol_h, "%s batch row %d: max |diff| %g > %g", name, b, d, tol_h);
            if (d > e.batch || d != d) e.batch = d;
            for (int64_t j = lens[b] * C; j < T * C; j++)
                if (hidden[(int64_t)b * T * C + j] != 0) {
                    CHECK_MSG(0, "%s batch row %d: padded output not zero", name, b);
                    break;
                }
        }
        CHECK_MSG(eft__encoder_embed(enc, bids, NULL, lens, B, T, emb, &err) == EFT_OK, "%s", err.msg);
        for (int b = 0; b < B; b++) {
            char key[64];
            snprintf(key, sizeof key, "case%d.embedding", b);
            float *w1 = ref_f32(ref, key, NULL);
            if (!w1) continue;
            double d = max_abs_diff(emb + b * D, w1, D);
            CHECK_MSG(d <= tol_e, "%s batch embedding %d: max |diff| %g > %g", name, b, d, tol_e);
            if (d > e.batch) e.batch = d;
            free(w1);
        }
    }
    free(bids);
    free(mask);
    free(want);
    free(hidden);
    free(emb);
    eft__encoder_free(enc);
out:
    eft__safetensors_close(ref);
    eft_model_close(m);
    return e;
}

static void check_all_isas(const char *name) {
    const eft__kernels *best = eft__kernels_get(), *scalar = eft__kernels_for(EFT__ISA_SCALAR);
    errs e = check_encoder(name, best, 2);
    printf("  %-12s %-7s max |diff| hidden %.2e pooled %.2e embedding %.2e batch %.2e\n", name,
           eft__isa_name(best->isa), e.hidden, e.pooled, e.embedding, e.batch);
    if (scalar && scalar != best) {
        e = check_encoder(name, scalar, 1);
        printf("  %-12s %-7s max |diff| hidden %.2e pooled %.2e embedding %.2e batch %.2e\n", name, "scalar",
               e.hidden, e.pooled, e.embedding, e.batch);
    }
}

static void test_bert(void) { check_all_isas("bert"); }
static void test_roberta(void) { check_all_isas("roberta"); }
static void test_xlm_roberta(void) { check_all_isas("xlm-roberta"); }
static void test_mpnet(void) { check_all_isas("mpnet"); }

/* ---------------------------------------------------------------------------------------------
 * Cross-encoder
 * ------------------------------------------------------------------------------------------- */

static void check_cross_encoder(const eft__kernels *kt, int threads) {
    eft_model *m = open_model(test_path("tests/fixtures/models/bert-cls"));
    eft__safetensors *ref = ref_open("bert-cls");
    eft__encoder *enc = m ? build(m, 4, 64, threads, kt) : NULL;
    if (!enc || !ref) goto out;
    const double tol = ref_tol(ref, "logits");
    CHECK_EQ_INT(eft__encoder_num_labels(enc), 1);
    int32_t bids[4 * 64] = {0}, btys[4 * 64] = {0}, lens[4];
    float want[4], got[4], batch[4];
    double maxd = 0;
    int nc = 0;
    for (int i = 0; i < 4; i++, nc++) {
        char key[64];
        int64_t d1[2], d2[2];
        snprintf(key, sizeof key, "case%d.input_ids", i);
        int32_t *ids = ref_ids(ref, key, d1);
        snprintf(key, sizeof key, "case%d.token_type_ids", i);
        int32_t *tys = ref_ids(ref, key, d2);
        snprintf(key, sizeof key, "case%d.logits", i);
        float *w = ref_f32(ref, key, NULL);
        CHECK(ids && tys && w && d1[1] == d2[1] && d1[1] <= 64);
        if (!ids || !tys || !w || d1[1] > 64) break;
        lens[i] = (int32_t)d1[1];
        memcpy(bids + i * 64, ids, sizeof(int32_t) * (size_t)lens[i]);
        memcpy(btys + i * 64, tys, sizeof(int32_t) * (size_t)lens[i]);
        want[i] = w[0];
        eft__error err = {0};
        CHECK_MSG(eft__encoder_classify(enc, ids, tys, &lens[i], 1, lens[i], &got[i], &err) == EFT_OK, "%s", err.msg);
        double d = fabs(got[i] - want[i]);
        CHECK_MSG(d <= tol, "bert-cls case%d: %g vs %g", i, got[i], want[i]);
        if (d > maxd) maxd = d;
        free(ids);
        free(tys);
        free(w);
    }
    if (nc == 4) {
        /* All four pairs in one padded batch (pad id 0 and type 0 after each row). */
        eft__error err = {0};
        CHECK_MSG(eft__encoder_classify(enc, bids, btys, lens, 4, 64, batch, &err) == EFT_OK, "%s", err.msg);
        for (int i = 0; i < 4; i++) {
            CHECK_MSG(fabs(batch[i] - want[i]) <= tol, "bert-cls batch row %d: %g vs %g", i, batch[i], want[i]);
            if (fabs(batch[i] - want[i]) > maxd) maxd = fabs(batch[i] - want[i]);
        }
        /* Swapping the token types must change the score: the type embeddings are used. */
        int32_t zero[64] = {0};
        float z;
        CHECK(eft__encoder_classify(enc, bids, zero, lens, 1, 64, &z, &err) == EFT_OK);
        CHECK(fabs(z - want[0]) > 1e-6);
    }
    printf("  bert-cls     %-7s max |diff| logits %.2e\n", eft__isa_name(kt->isa), maxd);
out:
    eft__encoder_free(enc);
    eft__safetensors_close(ref);
    eft_model_close(m);
}

static void test_cross_encoder(void) {
    check_cross_encoder(eft__kernels_get(), 2);
    const eft__kernels *scalar = eft__kernels_for(EFT__ISA_SCALAR);
    if (scalar && scalar != eft__kernels_get()) check_cross_encoder(scalar, 1);
}

/* ---------------------------------------------------------------------------------------------
 * 16-bit weights
 * ------------------------------------------------------------------------------------------- */

/* Copies the bert fixture to a scratch folder with every tensor stored as dtype: F16 or BF16, or
 * F32 holding the values rounded through `round` (F16 or BF16) — the same numbers in 32 bits. */
static const char *bert_as(const char *tag, eft_dtype dtype, eft_dtype round) {
    const char *dir = test_tmpdir(tag);
    char cmd[9000], path[4200];
    snprintf(cmd, sizeof cmd, "cp -r '%s'/. '%s'/", test_path("tests/fixtures/models/bert"), dir);
    CHECK(system(cmd) == 0);
    eft__safetensors *src = NULL;
    eft__error err = {0};
    CHECK(eft__safetensors_open(test_path("tests/fixtures/models/bert/model.safetensors"), &src, &err) == EFT_OK);
    if (!src) return dir;
    size_t n = eft__safetensors_count(src), hcap = 1 << 16, hlen = 0;
    char *h = malloc(hcap);
    uint64_t off = 0, total = 0;
    for (size_t i = 0; i < n; i++) total += eft__safetensors_tensor(src, i)->n_elems * 4;
    uint8_t *data = malloc(total ? total : 1);
    hlen += (size_t)snprintf(h + hlen, hcap - hlen, "{");
    for (size_t i = 0; i < n; i++) {
        const eft__tensor_view *t = eft__safetensors_tensor(src, i);
        float *v = malloc(sizeof(float) * t->n_elems);
        CHECK(eft__tensor_to_f32(t, v, t->n_elems, &err) == EFT_OK);
        uint64_t bytes = t->n_elems * (dtype == EFT_DTYPE_F32 ? 4 : 2);
        for (uint64_t j = 0; j < t->n_elems; j++) {
            uint16_t b16 = round == EFT_DTYPE_F16 ? eft__f32_to_f16(v[j]) : eft__f32_to_bf16(v[j]);
            if (dtype == EFT_DTYPE_F32) {
                float r = round == EFT_DTYPE_F16 ? eft__f16_to_f32(b16) : eft__bf16_to_f32(b16);
                memcpy(data + off + 4 * j, &r, 4);
            } else {
                memcpy(data + off + 2 * j, &b16, 2);
            }
        }
        free(v);
        hlen += (size_t)snprintf(h + hlen, hcap - hlen, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "", t->name,
                                 eft_dtype_name(dtype));
        for (int d = 0; d < t->ndim; d++)
            hlen += (size_t)snprintf(h + hlen, hcap - hlen, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        hlen += (size_t)snprintf(h + hlen, hcap - hlen, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                                 (unsigned long long)(off + bytes));
        off += bytes;
    }
    hlen += (size_t)snprintf(h + hlen, hcap - hlen, "}");
    CHECK(hlen < hcap - 8);
    while (hlen % 8) h[hlen++] = ' ';
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        uint64_t hl = hlen;
        CHECK(fwrite(&hl, 8, 1, f) == 1 && fwrite(h, 1, hlen, f) == hlen && fwrite(data, 1, off, f) == off);
        fclose(f);
    }
    free(h);
    free(data);
    eft__safetensors_close(src);
    return dir;
}

/* F16 and BF16 weights run the same f32 arithmetic on the same numbers as F32 weights holding the
 * rounded values (the packing widens them once), so the two agree to the last few bits; and both
 * stay near the f32 model. */
static void test_half_weights(void) {
    const eft_dtype types[2] = {EFT_DTYPE_F16, EFT_DTYPE_BF16};
    eft__safetensors *ref = ref_open("bert");
    if (!ref) return;
    for (int k = 0; k < 2; k++) {
        char tag[2][32];
        snprintf(tag[0], sizeof tag[0], "half-%s", eft_dtype_name(types[k]));
        snprintf(tag[1], sizeof tag[1], "rounded-%s", eft_dtype_name(types[k]));
        char dir16[4096], dir32[4096];
        snprintf(dir16, sizeof dir16, "%s", bert_as(tag[0], types[k], types[k]));
        snprintf(dir32, sizeof dir32, "%s", bert_as(tag[1], EFT_DTYPE_F32, types[k]));
        eft_model *m16 = open_model(dir16), *m32 = open_model(dir32);
        eft__encoder *e16 = m16 ? build(m16, 1, 64, 2, NULL) : NULL, *e32 = m32 ? build(m32, 1, 64, 2, NULL) : NULL;
        if (e16 && e32) {
            float h16[64 * 64], h32[64 * 64];
            double d_same = 0, d_ref = 0;
            for (int i = 0; i < 5; i++) {
                char key[64];
                int64_t dims[2];
                snprintf(key, sizeof key, "case%d.input_ids", i);
                int32_t *ids = ref_ids(ref, key, dims);
                if (!ids) break;
                int32_t len = (int32_t)dims[1];
                eft__error err = {0};
                CHECK(eft__encoder_forward(e16, ids, NULL, &len, 1, len, h16, &err) == EFT_OK);
                CHECK(eft__encoder_forward(e32, ids, NULL, &len, 1, len, h32, &err) == EFT_OK);
                double d = max_abs_diff(h16, h32, len * 64);
                if (d > d_same || d != d) d_same = d;
                snprintf(key, sizeof key, "case%d.last_hidden_state", i);
                float *w = ref_f32(ref, key, NULL);
                if (w) {
                    d = max_abs_diff(h16, w, len * 64);
                    if (d > d_ref || d != d) d_ref = d;
                }
                free(w);
                free(ids);
            }
            CHECK_MSG(d_same <= 1e-5, "%s weights vs their values in F32: %g", eft_dtype_name(types[k]), d_same);
            CHECK_MSG(d_ref <= 0.1, "%s weights vs the f32 model: %g", eft_dtype_name(types[k]), d_ref);
            printf("  bert %-4s weights: max |diff| %.2e vs the same values in F32, %.2e vs the F32 model\n",
                   eft_dtype_name(types[k]), d_same, d_ref);
        }
        eft__encoder_free(e16);
        eft__encoder_free(e32);
        eft_model_close(m16);
        eft_model_close(m32);
    }
    eft__safetensors_close(ref);
}

/* ---------------------------------------------------------------------------------------------
 * Refusals
 * ------------------------------------------------------------------------------------------- */

/* Copies the bert fixture to a scratch folder and replaces `from` by `to` (same length) inside the
 * safetensors header, so offsets stay valid: a renamed tensor or a different shape. */
static const char *broken_bert(const char *tag, const char *from, const char *to) {
    const char *dir = test_tmpdir(tag);
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "cp -r '%s'/. '%s'/", test_path("tests/fixtures/models/bert"), dir);
    CHECK(system(cmd) == 0);
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (!f) return dir;
    uint64_t hlen = 0;
    CHECK(fread(&hlen, 8, 1, f) == 1);
    char *h = calloc(1, hlen + 1);
    CHECK(fread(h, 1, hlen, f) == hlen);
    char *p = strstr(h, from);
    CHECK_MSG(p != NULL, "'%s' not in the header", from);
    CHECK(strlen(from) == strlen(to));
    if (p) {
        memcpy(p, to, strlen(to));
        fseek(f, 8, SEEK_SET);
        CHECK(fwrite(h, 1, hlen, f) == hlen);
    }
    free(h);
    fclose(f);
    return dir;
}

static void expect_refusal(const char *dir, eft_status want, const char *n1, const char *n2, const char *n3) {
    eft_model *m = open_model(dir);
    if (!m) return;
    eft__encoder_params p = eft__encoder_params_default();
    p.max_tokens = 64;
    eft__encoder *enc = (eft__encoder *)1;
    eft__error err = {0};
    eft_status s = eft__encoder_build(m, &p, &enc, &err);
    CHECK_MSG(s == want, "got %s: %s", eft_status_str(s), err.msg);
    CHECK(enc == NULL);
    if (n1) CHECK_CONTAINS(err.msg, n1);
    if (n2) CHECK_CONTAINS(err.msg, n2);
    if (n3) CHECK_CONTAINS(err.msg, n3);
    eft_model_close(m);
}

static void test_refusals(void) {
    /* A tensor missing (renamed in the header). */
    expect_refusal(broken_bert("missing", "\"encoder.layer.1.attention.self.key.weight\"",
                               "\"encoder.layer.1.attention.self.kex.weight\""),
                   EFT_ERR_NOT_FOUND, "'encoder.layer.1.attention.self.key.weight'", "missing", "[64, 64]");
    /* A tensor of the wrong shape (same byte count). */
    expect_refusal(broken_bert("reshaped", "\"shape\":[64,128]", "\"shape\":[128,64]"), EFT_ERR_FORMAT,
                   "'encoder.layer.0.output.dense.weight' has shape [128, 64]", "expected [64, 128]", NULL);

    /* A tensor of a type the encoder does not read (I32 has F32's size, so the file stays valid). */
    expect_refusal(broken_bert("dtype", "\"embeddings.LayerNorm.bias\":{\"dtype\":\"F32\"",
                               "\"embeddings.LayerNorm.bias\":{\"dtype\":\"I32\""),
                   EFT_ERR_UNSUPPORTED, "'embeddings.LayerNorm.bias' has type I32", NULL, NULL);
    /* A Pooling module made for another width. */
    {
        const char *dir = broken_bert("pooldim", "\"shape\":[64,128]", "\"shape\":[64,128]");
        char path[4200];
        snprintf(path, sizeof path, "%s/1_Pooling/config.json", dir);
        FILE *f = fopen(path, "w");
        CHECK(f != NULL);
        if (f) {
            fputs("{\"word_embedding_dimension\": 32, \"pooling_mode_mean_tokens\": true}\n", f);
            fclose(f);
        }
        expect_refusal(dir, EFT_ERR_FORMAT, "expects 32 dimensions", "gives 64", NULL);
    }

    /* Not an encoder. */
    expect_refusal(test_path("tests/fixtures/models/llama"), EFT_ERR_UNSUPPORTED, "llama", NULL, NULL);

    eft_model *m = open_model(test_path("tests/fixtures/models/roberta"));
    if (!m) return;
    /* roberta: 130 positions, counted from pad_id + 1 = 2, so at most 128 tokens. */
    eft__encoder_params p = eft__encoder_params_default();
    p.max_tokens = 129;
    eft__encoder *enc = NULL;
    eft__error err = {0};
    CHECK_EQ_INT(eft__encoder_build(m, &p, &enc, &err), EFT_ERR_LIMIT);
    CHECK_CONTAINS(err.msg, "at most 128 tokens");
    p.max_tokens = 128;
    p.max_batch = 2;
    CHECK_EQ_INT(eft__encoder_build(m, &p, &enc, &err), EFT_OK);
    if (enc) {
        /* Inputs out of range are refused, never read. */
        int32_t ids[4] = {0, 5, 6, 2}, lens[2] = {4, 4}, bad_ids[4] = {0, 99999, 6, 2};
        float out[64 * 4 * 2];
        CHECK_EQ_INT(eft__encoder_forward(enc, bad_ids, NULL, lens, 1, 4, out, &err), EFT_ERR_INVALID_ARGUMENT);
        CHECK_CONTAINS(err.msg, "token id 99999 at [0, 1]");
        int32_t types[4] = {0, 1, 0, 0};
        CHECK_EQ_INT(eft__encoder_forward(enc, ids, types, lens, 1, 4, out, &err), EFT_ERR_INVALID_ARGUMENT);
        CHECK_CONTAINS(err.msg, "token type 1");
        CHECK_EQ_INT(eft__encoder_forward(enc, ids, NULL, lens, 3, 4, out, &err), EFT_ERR_INVALID_ARGUMENT);
        int32_t long_len = 5;
        CHECK_EQ_INT(eft__encoder_forward(enc, ids, NULL, &long_len, 1, 4, out, &err), EFT_ERR_INVALID_ARGUMENT);
        CHECK_EQ_INT(eft__encoder_classify(enc, ids, NULL, lens, 1, 4, out, &err), EFT_ERR_UNSUPPORTED);
        CHECK_EQ_INT(eft__encoder_forward(enc, ids, NULL, lens, 1, 4, out, &err), EFT_OK);
        eft__encoder_free(enc);
    }
    eft__encoder_free(NULL);
    eft_model_close(m);
}

/* Every allocation of a build failing in turn: each failure is a clean EFT_ERR_OUT_OF_MEMORY with
 * nothing left behind (ASan's leak check proves the latter), then a build that succeeds. */
static int g_allocs, g_fail_at = -1;
static void *oom_alloc(size_t n, void *u) {
    (void)u;
    return g_allocs++ == g_fail_at ? NULL : malloc(n);
}
static void *oom_realloc(void *p, size_t n, void *u) {
    (void)u;
    return g_allocs++ == g_fail_at ? NULL : realloc(p, n);
}
static void oom_free(void *p, void *u) {
    (void)u;
    free(p);
}

static void test_out_of_memory(void) {
    const char *names[2] = {"mpnet", "bert-cls"};
    for (int k = 0; k < 2; k++) {
        char dir[128];
        snprintf(dir, sizeof dir, "tests/fixtures/models/%s", names[k]);
        eft_model *m = open_model(test_path(dir));
        if (!m) continue;
        eft_allocator a = {oom_alloc, oom_realloc, oom_free, NULL};
        eft_set_allocator(&a);
        int failures = 0;
        for (g_fail_at = 0;; g_fail_at++) {
            g_allocs = 0;
            eft__encoder_params p = eft__encoder_params_default();
            p.max_batch = 2;
            p.max_tokens = 32;
            p.n_threads = 2;
            eft__encoder *enc = NULL;
            eft__error err = {0};
            eft_status s = eft__encoder_build(m, &p, &enc, &err);
            if (s == EFT_OK) {
                eft__encoder_free(enc);
                break;
            }
            failures++;
            CHECK_MSG(s == EFT_ERR_OUT_OF_MEMORY && enc == NULL, "%s: allocation %d: %s: %s", names[k], g_fail_at,
                      eft_status_str(s), err.msg);
            if (g_fail_at > 10000) break;
        }
        g_fail_at = -1;
        eft_set_allocator(NULL);
        CHECK(failures > 10);
        eft_model_close(m);
    }
}

/* ---------------------------------------------------------------------------------------------
 * A real model: sentence-transformers/all-MiniLM-L6-v2 (when fetched)
 * ------------------------------------------------------------------------------------------- */

static void test_minilm(void) {
    const char *dir = test_path("models/all-MiniLM-L6-v2");
    if (!eft__path_exists_in(dir, "model.safetensors")) {
        printf("  skip: %s is not there (fetch it to run this test)\n", dir);
        return;
    }
    eft_model *m = open_model(dir);
    eft__safetensors *ref = ref_open("all-MiniLM-L6-v2");
    eft__encoder *enc = m ? build(m, 8, 128, 2, NULL) : NULL;
    if (!enc || !ref) goto out;
    const double tol_e = ref_tol(ref, "embedding"), tol_h = ref_tol(ref, "hidden");
    const int64_t C = eft__encoder_hidden_size(enc), D = eft__encoder_embed_size(enc);
    CHECK_EQ_INT(C, 384);
    CHECK_EQ_INT(D, 384);
    int32_t bids[8 * 128] = {0}, lens[8];
    float *want_all = malloc(sizeof(float) * 8 * D), *emb = malloc(sizeof(float) * 8 * D);
    float *hidden = malloc(sizeof(float) * 128 * C);
    double de = 0, dh = 0, db = 0;
    int nc = 0;
    for (int i = 0; i < 8; i++) {
        char key[64];
        int64_t dims[2], n;
        snprintf(key, sizeof key, "case%d.input_ids", i);
        int32_t *ids = ref_ids(ref, key, dims);
        if (!ids) break;
        nc++;
        lens[i] = (int32_t)dims[1];
        CHECK(lens[i] <= 128);
        memcpy(bids + i * 128, ids, sizeof(int32_t) * (size_t)lens[i]);
        eft__error err = {0};
        CHECK_MSG(eft__encoder_embed(enc, ids, NULL, &lens[i], 1, lens[i], emb, &err) == EFT_OK, "%s", err.msg);
        snprintf(key, sizeof key, "case%d.embedding", i);
        float *w = ref_f32(ref, key, &n);
        CHECK(w && n == D);
        if (w && n == D) {
            memcpy(want_all + i * D, w, sizeof(float) * (size_t)D);
            double d = max_abs_diff(emb, w, D);
            CHECK_MSG(d <= tol_e, "MiniLM case%d embedding: max |diff| %g > %g", i, d, tol_e);
            if (d > de) de = d;
        }
        free(w);
        snprintf(key, sizeof key, "case%d.last_hidden_state", i);
        w = ref_f32(ref, key, &n);
        if (w) {
            CHECK(eft__encoder_forward(enc, ids, NULL, &lens[i], 1, lens[i], hidden, &err) == EFT_OK);
            double d = n == lens[i] * C ? max_abs_diff(hidden, w, n) : 1e9;
            CHECK_MSG(d <= tol_h, "MiniLM case%d hidden: max |diff| %g > %g", i, d, tol_h);
            if (d > dh) dh = d;
        }
        free(w);
        free(ids);
    }
    CHECK(nc >= 6);
    eft__error err = {0};
    CHECK_MSG(eft__encoder_embed(enc, bids, NULL, lens, nc, 128, emb, &err) == EFT_OK, "%s", err.msg);
    for (int i = 0; i < nc; i++) {
        double d = max_abs_diff(emb + i * D, want_all + i * D, D);
        CHECK_MSG(d <= tol_e, "MiniLM batch row %d: max |diff| %g > %g", i, d, tol_e);
        if (d > db) db = d;
    }
    printf("  all-MiniLM-L6-v2 max |diff| embedding %.2e (tolerance %.0e), hidden %.2e, batch %.2e\n", de, tol_e,
           dh, db);
    free(want_all);
    free(emb);
    free(hidden);
out:
    eft__encoder_free(enc);
    eft__safetensors_close(ref);
    eft_model_close(m);
}

int main(void) {
    RUN(test_bert);
    RUN(test_roberta);
    RUN(test_xlm_roberta);
    RUN(test_mpnet);
    RUN(test_cross_encoder);
    RUN(test_half_weights);
    RUN(test_refusals);
    RUN(test_out_of_memory);
    RUN(test_minilm);
    return test_summary();
}
