/*
 * test_decoder_program.c — causal LMs as compiled programs (eft__decoder_save / _load): a decoder
 * loaded from its program gives bit-for-bit the logits of the decoder it was saved from (same
 * bytes, same kernels), for every weight type, on the fixture models and on the real GGUFs, whose
 * greedy tokens from the program must equal transformers' (the -q4 references in tests/fixtures/ref);
 * and a truncated, corrupt, stale or foreign program is refused with a message that says so.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eft.h"

#include "api/model_internal.h"
#include "formats/safetensors.h"
#include "graph/program.h"
#include "models/decoder.h"
#include "test.h"

#if defined(__SANITIZE_ADDRESS__)
enum { REAL_PROMPTS = 1, REAL_NEW = 8 };
#else
enum { REAL_PROMPTS = 6, REAL_NEW = 32 };
#endif

static int32_t argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

/* An I64 tensor as int32 (owned), or NULL; *n gets its element count. */
static int32_t *ref_ids(eft__safetensors *st, const char *name, int64_t *n) {
    const eft__tensor_view *t = eft__safetensors_find(st, name);
    if (!t || t->dtype != EFT_DTYPE_I64) return NULL;
    int32_t *out = malloc(sizeof(int32_t) * (t->n_elems ? t->n_elems : 1));
    for (uint64_t i = 0; i < t->n_elems; i++) {
        int64_t v;
        memcpy(&v, (const char *)t->data + 8 * i, 8);
        out[i] = (int32_t)v;
    }
    *n = (int64_t)t->n_elems;
    return out;
}

static eft__decoder_params plan(int threads, eft_dtype wd, int64_t ctx) {
    eft__decoder_params p = eft__decoder_params_default();
    p.int8_activations = false;
    p.n_slots = 1;
    p.ctx_len = ctx;
    p.max_tokens = 64;
    p.n_threads = threads;
    p.weight_dtype = wd;
    return p;
}

/* The last logits of ids (prefill in chunks of 64), into last[V]. */
static bool run_prompt(eft__decoder *d, const int32_t *ids, int64_t n, float *last) {
    int32_t sl[64], ps[64], row;
    for (int64_t c0 = 0; c0 < n; c0 += 64) {
        int cn = (int)(n - c0 < 64 ? n - c0 : 64);
        for (int i = 0; i < cn; i++) sl[i] = 0, ps[i] = (int32_t)(c0 + i);
        row = cn - 1;
        bool end = c0 + cn == n;
        eft__error err = {0};
        eft_status s = eft__decoder_forward(d, ids + c0, sl, ps, cn, end ? &row : NULL, end ? 1 : 0,
                                            end ? last : NULL, &err);
        CHECK_MSG(s == EFT_OK, "forward: %s", err.msg);
        if (s != EFT_OK) return false;
    }
    return true;
}

/* Greedy continuation: n_new tokens into toks; the last logits of every step are summed into
 * *sum (a cheap fingerprint of all logits, compared bit for bit between two decoders). */
static void greedy(eft__decoder *d, const int32_t *ids, int64_t n, int n_new, int32_t *toks, double *sum) {
    const int64_t V = eft__decoder_vocab_size(d);
    float *last = malloc(sizeof(float) * (size_t)V);
    *sum = 0;
    if (run_prompt(d, ids, n, last))
        for (int i = 0; i < n_new; i++) {
            for (int64_t j = 0; j < V; j++) *sum += last[j] * (double)(j % 7 + 1);
            toks[i] = argmax(last, V);
            if (i + 1 == n_new) break;
            int32_t sl = 0, ps = (int32_t)(n + i), row = 0;
            eft__error err = {0};
            eft_status s = eft__decoder_forward(d, &toks[i], &sl, &ps, 1, &row, 1, last, &err);
            CHECK_MSG(s == EFT_OK, "decode: %s", err.msg);
            if (s != EFT_OK) break;
        }
    free(last);
}

/* Builds m's decoder with weights wd, saves it at path and loads it back from there; the two
 * decoders (and the open program, which the second borrows) are returned. */
static bool save_load(eft_model *m, eft_dtype wd, int threads, int64_t ctx, const char *path, eft__decoder **built,
                      eft__decoder **loaded, eft__program **pg) {
    eft__decoder_params p = plan(threads, wd, ctx);
    eft__error err = {0};
    *built = *loaded = NULL;
    *pg = NULL;
    CHECK_MSG(eft__decoder_build(m, &p, built, &err) == EFT_OK, "build: %s", err.msg);
    if (!*built) return false;
    CHECK_MSG(eft__decoder_save(*built, m, "{\"test\": true}", path, &err) == EFT_OK, "save: %s", err.msg);
    CHECK_MSG(eft__program_open(path, pg, &err) == EFT_OK, "open: %s", err.msg);
    if (!*pg) return false;
    /* A different plan on load: the program holds matrices only, the cache is planned afresh. */
    p.weight_dtype = EFT_DTYPE_F16; /* ignored: the blobs carry their own types */
    CHECK_MSG(eft__decoder_load(m, *pg, &p, loaded, &err) == EFT_OK, "load: %s", err.msg);
    return *loaded != NULL;
}

static const eft_dtype k_wdtypes[] = {EFT_DTYPE_COUNT, EFT_DTYPE_F32, EFT_DTYPE_F16, EFT_DTYPE_BF16,
                                      EFT_DTYPE_Q8_0,  EFT_DTYPE_Q4_0, EFT_DTYPE_Q4_1};

/* Every fixture architecture, every weight type: the program's logits are the build's. */
static void test_fixtures_roundtrip(void) {
    static const char *models[] = {"llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "gpt2",
                                   "gguf/tiny-llama.gguf"};
    const char *dir = test_tmpdir("decoder_program");
    for (size_t mi = 0; mi < sizeof models / sizeof models[0]; mi++) {
        char rel[256], path[4400];
        snprintf(rel, sizeof rel, "tests/fixtures/%s%s", strchr(models[mi], '/') ? "" : "models/", models[mi]);
        if (!eft__path_exists(test_path(rel))) {
            printf("  skip %s: not present\n", rel);
            continue;
        }
        eft_model *m = NULL;
        CHECK_MSG(eft_model_open(test_path(rel), NULL, &m) == EFT_OK, "%s: %s", rel, eft_last_error());
        if (!m) continue;
        for (size_t w = 0; w < sizeof k_wdtypes / sizeof k_wdtypes[0]; w++) {
            eft_dtype wd = k_wdtypes[w];
            snprintf(path, sizeof path, "%s/%zu-%zu.eft", dir, mi, w);
            eft__decoder *a = NULL, *b = NULL;
            eft__program *pg = NULL;
            if (save_load(m, wd, 2, 64, path, &a, &b, &pg)) {
                int32_t ids[20], ta[12], tb[12];
                int64_t V = eft__decoder_vocab_size(a);
                for (int i = 0; i < 20; i++) ids[i] = (int32_t)(1 + (i * 37) % (V - 1));
                double sa, sb;
                greedy(a, ids, 20, 12, ta, &sa);
                greedy(b, ids, 20, 12, tb, &sb);
                CHECK_MSG(memcmp(ta, tb, sizeof ta) == 0 && sa == sb && isfinite(sa),
                          "%s %s: the loaded program's logits differ from the build's (%.17g vs %.17g)", models[mi],
                          wd == EFT_DTYPE_COUNT ? "keep" : eft_dtype_name(wd), sa, sb);
            }
            eft__decoder_free(b);
            eft__program_close(pg);
            eft__decoder_free(a);
            unlink(path);
        }
        eft_model_close(m);
    }
}

/* Refusals: a program of another kind, from other model files, or with a damaged blob table. */
static void test_refusals(void) {
    const char *dir = test_tmpdir("decoder_program_bad");
    char path[4400];
    snprintf(path, sizeof path, "%s/llama.eft", dir);
    eft_model *m = NULL, *other = NULL;
    CHECK(eft_model_open(test_path("tests/fixtures/models/llama"), NULL, &m) == EFT_OK);
    CHECK(eft_model_open(test_path("tests/fixtures/models/mistral"), NULL, &other) == EFT_OK);
    if (!m || !other) goto out;
    eft__decoder *a = NULL, *b = NULL;
    eft__program *pg = NULL;
    CHECK(save_load(m, EFT_DTYPE_Q8_0, 1, 64, path, &a, &b, &pg));
    eft__decoder_free(b);
    eft__decoder_free(a);
    b = NULL;
    eft__error err = {0};
    eft__decoder_params p = plan(1, EFT_DTYPE_COUNT, 64);
    /* Another model's files: the fingerprint differs. */
    if (pg) {
        CHECK(eft__decoder_load(other, pg, &p, &b, &err) == EFT_ERR_FORMAT && !b);
        CHECK_CONTAINS(err.msg, "changed since");
    }
    eft__program_close(pg);
    pg = NULL;
    /* Truncated: the container refuses it before the decoder sees it. */
    FILE *f = fopen(path, "rb");
    char *bytes = NULL;
    long size = 0;
    if (f && fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0) {
        bytes = malloc((size_t)size);
        if (fread(bytes, 1, (size_t)size, f) != (size_t)size) size = 0;
    }
    if (f) fclose(f);
    CHECK(size > 4096);
    if (size > 4096) {
        CHECK(truncate(path, size / 2) == 0);
        err = (eft__error){0};
        CHECK(eft__program_open(path, &pg, &err) == EFT_ERR_FORMAT && !pg);
        CHECK_CONTAINS(err.msg, "llama.eft");
        /* A blob that names the right tensor but holds the wrong type: rename the kind is not
         * enough, so write a program whose q_proj is a vector. */
        eft__program_writer *w = NULL;
        static float v[8];
        CHECK(eft__program_writer_new(&w, &err) == EFT_OK);
        CHECK(eft__program_writer_add(w, "model.layers.0.self_attn.q_proj.weight", EFT_DTYPE_F32, v, sizeof v, &err) ==
              EFT_OK);
        uint64_t mh;
        CHECK(eft__decoder_model_hash(m, &mh, &err) == EFT_OK);
        char hdr[256];
        snprintf(hdr, sizeof hdr, "{\"kind\": \"decoder\", \"model\": {\"hash\": \"%016llx\"}, \"sgemm_panel_width\": 16}",
                 (unsigned long long)mh);
        CHECK(eft__program_writer_write(w, path, hdr, &err) == EFT_OK);
        eft__program_writer_free(w);
        CHECK(eft__program_open(path, &pg, &err) == EFT_OK);
        if (pg) {
            CHECK(eft__decoder_load(m, pg, &p, &b, &err) == EFT_ERR_FORMAT && !b);
            CHECK_CONTAINS(err.msg, "q_proj.weight' has 32 bytes of F32");
        }
        eft__program_close(pg);
        pg = NULL;
        /* Another kind. */
        CHECK(eft__program_writer_new(&w, &err) == EFT_OK);
        CHECK(eft__program_writer_write(w, path, "{\"kind\": \"encoder\"}", &err) == EFT_OK);
        eft__program_writer_free(w);
        CHECK(eft__program_open(path, &pg, &err) == EFT_OK);
        if (pg) {
            CHECK(eft__decoder_load(m, pg, &p, &b, &err) == EFT_ERR_FORMAT && !b);
            CHECK_CONTAINS(err.msg, "not a decoder");
        }
        eft__program_close(pg);
    }
    free(bytes);
out:
    eft_model_close(other);
    eft_model_close(m);
}

/* The real GGUFs: greedy tokens from the program equal transformers' (F32 weights for both files;
 * weights kept as stored for SmolLM2's Q4_1, which the kernels read as they are), and the
 * program's logits are the build's bit for bit. */
static void check_real(const char *label, const char *model_rel, const char *ref_rel, bool kept_exact) {
    const char *path = test_path(model_rel);
    if (!eft__path_exists(path) || !eft__path_exists(test_path(ref_rel))) {
        printf("  skip %s: %s or its reference not present\n", label, model_rel);
        return;
    }
    int threads = getenv("EFT_TEST_THREADS") ? atoi(getenv("EFT_TEST_THREADS")) : 2;
    eft_model *m = NULL;
    CHECK_MSG(eft_model_open(path, NULL, &m) == EFT_OK, "%s: %s", model_rel, eft_last_error());
    eft__safetensors *ref = NULL;
    eft__error err = {0};
    CHECK_MSG(eft__safetensors_open(test_path(ref_rel), &ref, &err) == EFT_OK, "%s", err.msg);
    const eft_dtype wds[2] = {EFT_DTYPE_F32, EFT_DTYPE_COUNT};
    for (int w = 0; m && ref && w < 2; w++) {
        char file[4400];
        snprintf(file, sizeof file, "%s/%s.eft", test_tmpdir("decoder_program_real"), w ? "keep" : "f32");
        eft__decoder *a = NULL, *b = NULL;
        eft__program *pg = NULL;
        if (save_load(m, wds[w], threads, 512, file, &a, &b, &pg)) {
            int equal = 0, total = 0;
            for (int i = 0; i < REAL_PROMPTS; i++) {
                char key[64];
                int64_t n = 0, ng = 0;
                snprintf(key, sizeof key, "prompt%d.input_ids", i);
                int32_t *ids = ref_ids(ref, key, &n);
                snprintf(key, sizeof key, "prompt%d.greedy", i);
                int32_t *want = ids ? ref_ids(ref, key, &ng) : NULL;
                if (!ids || !want || n > 448) {
                    free(ids);
                    free(want);
                    break;
                }
                if (ng > REAL_NEW) ng = REAL_NEW;
                int32_t ta[REAL_NEW], tb[REAL_NEW];
                double sa, sb;
                greedy(b, ids, n, (int)ng, tb, &sa);
                int same = 0;
                while (same < ng && tb[same] == want[same]) same++;
                if (w == 0 || kept_exact)
                    CHECK_MSG(same == ng, "%s %s prompt%d: greedy from the program differs from transformers' at "
                              "token %d", label, w ? "keep" : "F32", i, same);
                if (i == 0) {
                    greedy(a, ids, n, (int)ng, ta, &sb);
                    CHECK_MSG(memcmp(ta, tb, sizeof(int32_t) * (size_t)ng) == 0 && sa == sb,
                              "%s %s: the program's logits differ from the build's", label, w ? "keep" : "F32");
                }
                equal += same;
                total += (int)ng;
                free(ids);
                free(want);
            }
            printf("  %s, weights %s from a program (%.1f MB): greedy equal to transformers' for %d of %d tokens\n",
                   label, w ? "kept" : "F32", (double)eft__program_size(pg) / 1e6, equal, total);
        }
        eft__decoder_free(b);
        eft__program_close(pg);
        eft__decoder_free(a);
        unlink(file); /* up to a GiB of f32 weights */
    }
    eft__safetensors_close(ref);
    eft_model_close(m);
}

static void test_real_models(void) {
    check_real("SmolLM2-135M Q4_1", "models/SmolLM2-135M-Instruct-Q4_1/SmolLM2-135M-Instruct.Q4_1.gguf",
               "tests/fixtures/ref/smollm2-135m-q4_1.safetensors", true);
    check_real("gemma-3-270m Q4_K_M", "models/gemma-3-270m-Q4_K_M/gemma-3-270m-q4_k_m.gguf",
               "tests/fixtures/ref/gemma-3-270m-q4_k_m.safetensors", false);
}

/* eft_generator_score against transformers: the log-probability of every next token of the
 * reference prompts, from the reference's own logits (log-softmax), within twice the logits'
 * recorded tolerance (a log-softmax moves at most twice as far as its inputs); the top-1 token
 * wherever the reference's margin is over that. Prefill chunks of 8 make the scoring cross chunk
 * boundaries. */
static void test_score_vs_transformers(void) {
    static const char *names[] = {"llama", "qwen2", "gemma2", "gpt2"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char mrel[128], rrel[128];
        snprintf(mrel, sizeof mrel, "tests/fixtures/models/%s", names[k]);
        snprintf(rrel, sizeof rrel, "tests/fixtures/ref/%s.safetensors", names[k]);
        eft__safetensors *ref = NULL;
        eft__error err = {0};
        CHECK_MSG(eft__safetensors_open(test_path(rrel), &ref, &err) == EFT_OK, "%s", err.msg);
        eft_generator_params gp = eft_generator_params_default();
        gp.ctx_len = 128;
        gp.prefill_seq_len = 8;
        gp.weight_dtype = EFT_DTYPE_F32;
        gp.no_cache = true;
        eft_generator *g = NULL;
        CHECK_MSG(eft_generator_open(test_path(mrel), &gp, &g) == EFT_OK, "%s: %s", names[k], eft_last_error());
        double tol = 1e-4, worst = 0;
        const char *t = ref ? eft__safetensors_metadata(ref, "tolerance") : NULL;
        const char *p = t ? strstr(t, "\"logits\":") : NULL;
        if (p) tol = strtod(p + 9, NULL);
        int checked = 0;
        for (int i = 0; g && ref; i++) {
            char key[64];
            int64_t n = 0;
            snprintf(key, sizeof key, "prompt%d.input_ids", i);
            int32_t *ids = ref_ids(ref, key, &n);
            snprintf(key, sizeof key, "prompt%d.logits", i);
            const eft__tensor_view *lv = ids ? eft__safetensors_find(ref, key) : NULL;
            if (!ids || !lv || n < 2 || n > 128 || lv->dtype != EFT_DTYPE_F32 || lv->ndim < 2) {
                free(ids);
                break;
            }
            const int64_t V = lv->shape[lv->ndim - 1];
            const float *rl = lv->data;
            float *lp = malloc(sizeof(float) * (size_t)n);
            int32_t *top = malloc(sizeof(int32_t) * (size_t)n);
            CHECK_MSG(eft_generator_score(g, ids, (size_t)n, lp, top) == EFT_OK, "%s: %s", names[k], eft_last_error());
            for (int64_t r = 0; r + 1 < n; r++) {
                const float *x = rl + r * V;
                double mx = x[0], second = -INFINITY;
                int32_t best = 0;
                for (int64_t j = 1; j < V; j++) {
                    if (x[j] > mx) second = mx, mx = x[j], best = (int32_t)j;
                    else if (x[j] > second) second = x[j];
                }
                double se = 0;
                for (int64_t j = 0; j < V; j++) se += exp((double)x[j] - mx);
                double want = (double)x[ids[r + 1]] - mx - log(se), d = fabs(want - lp[r]);
                worst = d > worst ? d : worst;
                CHECK_MSG(d <= 2 * tol, "%s prompt%d row %lld: log p %.7f, transformers %.7f", names[k], i,
                          (long long)r, lp[r], want);
                if (mx - second > 2 * tol)
                    CHECK_MSG(top[r] == best, "%s prompt%d row %lld: top-1 %d, transformers %d", names[k], i,
                              (long long)r, top[r], best);
                checked++;
            }
            free(lp);
            free(top);
            free(ids);
        }
        CHECK_MSG(checked > 0, "%s: nothing scored", names[k]);
        printf("  %s: %d next-token log-probabilities, max |diff| from transformers %.2g (tolerance %.2g)\n",
               names[k], checked, worst, 2 * tol);
        /* A busy generator refuses to score: the slot it would use may be taken. */
        if (g) {
            int32_t ids[3] = {1, 2, 3};
            uint64_t seq;
            eft_generate_params gen = eft_generator_generate_params_default(g);
            gen.max_tokens = 1;
            CHECK(eft_generator_submit(g, ids, 3, &gen, &seq) == EFT_OK);
            CHECK(eft_generator_score(g, ids, 3, NULL, NULL) == EFT_ERR_INVALID_ARGUMENT);
            while (eft_generator_pending(g) > 0 && eft_generator_step(g) == EFT_OK) {
            }
            CHECK(eft_generator_score(g, ids, 1, NULL, NULL) == EFT_ERR_LIMIT);
            int32_t bad[2] = {1, 1 << 30};
            CHECK(eft_generator_score(g, bad, 2, NULL, NULL) != EFT_OK);
        }
        eft_generator_close(g);
        eft__safetensors_close(ref);
    }
}

int main(void) {
    RUN(test_score_vs_transformers);
    RUN(test_fixtures_roundtrip);
    RUN(test_refusals);
    RUN(test_real_models);
    return test_summary();
}
