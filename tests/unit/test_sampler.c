/*
 * test_sampler.c — the sampler (src/runtime/sampler.c) against a plain scalar reference written
 * here the way transformers' logits processors compute (full sorts, doubles): penalties' exact
 * values, exact kept sets of top_k / top_p / min_p (ties included), greedy argmax with ties,
 * sampling frequencies against the final softmax over many draws, determinism by seed, logprobs.
 */
#include "runtime/sampler.h"

#include "test.h"

/* ---------------------------------------------------------------------------------------------
 * The reference: transformers' order and rules, written for clarity over speed.
 * ------------------------------------------------------------------------------------------- */

static void ref_penalties(double *l, int V, const eft_sampling_params *p, const int32_t *prompt, int n_prompt,
                          const int32_t *gen, int n_gen) {
    /* Repetition: every distinct id of prompt + generated, once. */
    for (int id = 0; id < V; id++) {
        int seen = 0, count = 0;
        for (int i = 0; i < n_prompt; i++) seen |= prompt[i] == id;
        for (int i = 0; i < n_gen; i++) count += gen[i] == id;
        if (seen || count) l[id] = l[id] < 0 ? l[id] * p->repetition_penalty : l[id] / p->repetition_penalty;
        if (count) l[id] -= count * p->frequency_penalty + p->presence_penalty;
    }
}

static void ref_softmax(const double *x, int V, double *out) {
    double m = -INFINITY, s = 0;
    for (int i = 0; i < V; i++)
        if (x[i] > m) m = x[i];
    for (int i = 0; i < V; i++) s += out[i] = isinf(x[i]) && x[i] < 0 ? 0 : exp(x[i] - m);
    for (int i = 0; i < V; i++) out[i] /= s;
}

static double *g_key;
/* Ascending by value, and for ties the higher id first, so that the descending order has the
 * lower id first (the sampler's convention for ties). */
static int asc(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    if (g_key[x] != g_key[y]) return g_key[x] < g_key[y] ? -1 : 1;
    return y - x;
}

/* Final probabilities after temperature, top_k, top_p, min_p (logits already penalised). */
static void ref_distribution(const double *pen, int V, const eft_sampling_params *p, double *probs) {
    double s[512], q[512];
    int order[512];
    if (p->temperature == 0) {
        int b = 0;
        for (int i = 1; i < V; i++)
            if (pen[i] > pen[b]) b = i;
        for (int i = 0; i < V; i++) probs[i] = i == b;
        return;
    }
    for (int i = 0; i < V; i++) s[i] = pen[i] / p->temperature;
    if (p->top_k > 0 && p->top_k < V) {
        for (int i = 0; i < V; i++) order[i] = i;
        g_key = s;
        qsort(order, (size_t)V, sizeof *order, asc);
        double kth = s[order[V - p->top_k]];
        for (int i = 0; i < V; i++)
            if (s[i] < kth) s[i] = -INFINITY;
    }
    if (p->top_p < 1) {
        ref_softmax(s, V, q);
        for (int i = 0; i < V; i++) order[i] = i;
        g_key = q;
        qsort(order, (size_t)V, sizeof *order, asc);
        double cum = 0;
        for (int k = 0; k < V; k++) {
            cum += q[order[k]];
            if (cum <= 1 - p->top_p && k < V - 1) s[order[k]] = -INFINITY;
        }
    }
    if (p->min_p > 0) {
        ref_softmax(s, V, q);
        double mx = 0;
        for (int i = 0; i < V; i++)
            if (q[i] > mx) mx = q[i];
        for (int i = 0; i < V; i++)
            if (q[i] < p->min_p * mx) s[i] = -INFINITY;
    }
    ref_softmax(s, V, probs);
}

static eft_sampling_params params(float t, int k, float top_p, float min_p) {
    return (eft_sampling_params){.temperature = t, .top_k = k, .top_p = top_p, .min_p = min_p,
                                 .repetition_penalty = 1, .seed = 42};
}

static eft__sampler *make(int V, const eft_sampling_params *p, const int32_t *prompt, int n_prompt) {
    eft__sampler *s = NULL;
    eft__error err;
    CHECK(eft__sampler_init(V, &s, &err) == EFT_OK);
    if (s) CHECK(eft__sampler_reset(s, p, prompt, (size_t)n_prompt, &err) == EFT_OK);
    return s;
}

/* The sampler's final distribution over logits l[V] (float), next to the reference's. */
static void both(eft__sampler *s, const float *l, int V, const eft_sampling_params *p, float *got, double *want) {
    float tmp[512];
    double d[512];
    memcpy(tmp, l, (size_t)V * sizeof *tmp);
    eft__sampler_distribution(s, tmp, got);
    for (int i = 0; i < V; i++) d[i] = l[i];
    ref_distribution(d, V, p, want);
}

/* Kept sets must be identical; probabilities within tol. */
static int same_dist(const float *got, const double *want, int V, double tol) {
    int bad = 0;
    for (int i = 0; i < V; i++) {
        if ((got[i] > 0) != (want[i] > 0)) {
            fprintf(stderr, "    token %d: kept %d by the sampler, %d by the reference\n", i, got[i] > 0, want[i] > 0);
            bad++;
        } else if (fabs(got[i] - want[i]) > tol) {
            fprintf(stderr, "    token %d: p %.8g vs %.8g\n", i, got[i], want[i]);
            bad++;
        }
    }
    return bad == 0;
}

static void kept_set(const float *probs, int V, char *out) {
    int k = 0;
    for (int i = 0; i < V; i++)
        if (probs[i] > 0) k += sprintf(out + k, "%s%d", k ? "," : "", i);
    out[k] = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------------------------- */

static void test_penalties_exact(void) {
    const float l0[6] = {2, -1, 0.5f, -3, 1, 0};
    const int32_t prompt[2] = {0, 1}, gen[3] = {1, 2, 2};
    eft_sampling_params p = params(0, 0, 1, 0);
    p.repetition_penalty = 1.5f;
    p.presence_penalty = 0.3f;
    p.frequency_penalty = 0.2f;
    eft__sampler *s = make(6, &p, prompt, 2);
    if (!s) return;
    for (int i = 0; i < 3; i++) eft__sampler_accept(s, gen[i]);
    float l[6], probs[6];
    memcpy(l, l0, sizeof l);
    eft__sampler_distribution(s, l, probs);
    /* 0: prompt only, positive: 2 / 1.5. 1: prompt + generated once, negative: -1 * 1.5 - 0.2 - 0.3.
     * 2: generated twice: 0.5 / 1.5 - 2 * 0.2 - 0.3. 3..5: untouched. */
    const double want[6] = {2 / 1.5, -1 * 1.5 - 0.2 - 0.3, 0.5 / 1.5 - 0.4 - 0.3, -3, 1, 0};
    for (int i = 0; i < 6; i++) CHECK_NEAR(l[i], want[i], 1e-6);
    double d[6];
    for (int i = 0; i < 6; i++) d[i] = l0[i];
    ref_penalties(d, 6, &p, prompt, 2, gen, 3);
    for (int i = 0; i < 6; i++) CHECK_NEAR(l[i], d[i], 1e-6);
    /* Greedy after penalties: token 0 (2 -> 1.33) still beats token 4 (1). */
    CHECK_EQ_INT(probs[0], 1);
    /* A reset forgets the sequence: the same logits come back unpenalised. */
    eft__error err;
    CHECK(eft__sampler_reset(s, &p, NULL, 0, &err) == EFT_OK);
    memcpy(l, l0, sizeof l);
    eft__sampler_distribution(s, l, probs);
    for (int i = 0; i < 6; i++) CHECK_NEAR(l[i], l0[i], 0);
    /* A penalty of 1 changes nothing, zero logits stay zero under any penalty. */
    p.repetition_penalty = 3;
    p.presence_penalty = p.frequency_penalty = 0;
    const int32_t z[1] = {5};
    CHECK(eft__sampler_reset(s, &p, z, 1, &err) == EFT_OK);
    memcpy(l, l0, sizeof l);
    eft__sampler_distribution(s, l, probs);
    CHECK_NEAR(l[5], 0, 0);
    eft__sampler_free(s);
}

static void test_greedy_ties(void) {
    const float l0[5] = {1, 5, 5, 2, 5};
    eft_sampling_params p = params(0, 0, 1, 0);
    eft__sampler *s = make(5, &p, NULL, 0);
    if (!s) return;
    float l[5];
    memcpy(l, l0, sizeof l);
    CHECK_EQ_INT(eft__sampler_sample(s, l, 0, NULL, NULL), 1);
    /* NaN is never chosen, and a row of -inf still gives an id in range. */
    float nan_row[5] = {NAN, 1, NAN, 3, 2};
    CHECK_EQ_INT(eft__sampler_sample(s, nan_row, 0, NULL, NULL), 3);
    float ninf[5] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int32_t id = eft__sampler_sample(s, ninf, 0, NULL, NULL);
    CHECK(id >= 0 && id < 5);
    /* Greedy ignores top_k / top_p and the PRNG: every call the same. */
    p.top_k = 2;
    p.top_p = 0.5f;
    eft__error err;
    CHECK(eft__sampler_reset(s, &p, NULL, 0, &err) == EFT_OK);
    for (int r = 0; r < 10; r++) {
        memcpy(l, l0, sizeof l);
        CHECK_EQ_INT(eft__sampler_sample(s, l, 0, NULL, NULL), 1);
    }
    eft__sampler_free(s);
}

static void test_top_k_exact(void) {
    const float l[6] = {1, 3, 3, 2, 3, 0};
    float got[6];
    double want[6];
    char set[64];
    struct { int k; const char *kept; } cases[] = {
        {1, "1,2,4"}, /* ties with the k-th largest all stay */
        {2, "1,2,4"}, {3, "1,2,4"}, {4, "1,2,3,4"}, {5, "0,1,2,3,4"}, {6, "0,1,2,3,4,5"}, {99, "0,1,2,3,4,5"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        eft_sampling_params p = params(1, cases[c].k, 1, 0);
        eft__sampler *s = make(6, &p, NULL, 0);
        if (!s) return;
        both(s, l, 6, &p, got, want);
        kept_set(got, 6, set);
        CHECK_EQ_STR(set, cases[c].kept);
        CHECK(same_dist(got, want, 6, 1e-6));
        eft__sampler_free(s);
    }
}

static void test_top_p_exact(void) {
    /* Probabilities 0.5 0.2 0.15 0.1 0.05 at temperature 1, scattered over the ids. */
    const double pr[5] = {0.1, 0.5, 0.05, 0.2, 0.15};
    float l[5];
    for (int i = 0; i < 5; i++) l[i] = (float)log(pr[i]);
    float got[5];
    double want[5];
    char set[64];
    struct { float top_p; const char *kept; } cases[] = {
        {0.4f, "1"},          /* the first token alone already passes */
        {0.6f, "1,3"},        /* mass before 0.2 is 0.5 < 0.6 */
        {0.8f, "1,3,4"},      /* before 0.15: 0.7 < 0.8; before 0.1: 0.85 */
        {0.9f, "0,1,3,4"},    /* before 0.1: 0.85 < 0.9 */
        {0.99f, "0,1,2,3,4"}, /* before 0.05: 0.95 */
        {0.0f, "1"},          /* at least one token */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        eft_sampling_params p = params(1, 0, cases[c].top_p, 0);
        eft__sampler *s = make(5, &p, NULL, 0);
        if (!s) return;
        both(s, l, 5, &p, got, want);
        kept_set(got, 5, set);
        CHECK_EQ_STR(set, cases[c].kept);
        CHECK(same_dist(got, want, 5, 1e-6));
        eft__sampler_free(s);
    }
    /* Ties: four equal tokens and top_p 0.5 keep two of them, the lower ids. */
    const float t[4] = {0, 0, 0, 0};
    eft_sampling_params p = params(1, 0, 0.5f, 0);
    eft__sampler *s = make(4, &p, NULL, 0);
    if (!s) return;
    float tmp[4], pr4[4];
    memcpy(tmp, t, sizeof t);
    eft__sampler_distribution(s, tmp, pr4);
    kept_set(pr4, 4, set);
    CHECK_EQ_STR(set, "0,1");
    eft__sampler_free(s);
}

static void test_min_p_exact(void) {
    const double pr[5] = {0.1, 0.5, 0.05, 0.2, 0.15};
    float l[5];
    for (int i = 0; i < 5; i++) l[i] = (float)log(pr[i]);
    float got[5];
    double want[5];
    char set[64];
    struct { float min_p; const char *kept; } cases[] = {
        {0.25f, "1,3,4"},     /* cut 0.125 */
        {0.5f, "1"},          /* cut 0.25 */
        {0.19f, "0,1,3,4"},   /* cut 0.095 */
        {0.05f, "0,1,2,3,4"}, /* cut 0.025 */
        {1.0f, "1"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        eft_sampling_params p = params(1, 0, 1, cases[c].min_p);
        eft__sampler *s = make(5, &p, NULL, 0);
        if (!s) return;
        both(s, l, 5, &p, got, want);
        kept_set(got, 5, set);
        CHECK_EQ_STR(set, cases[c].kept);
        CHECK(same_dist(got, want, 5, 1e-6));
        eft__sampler_free(s);
    }
}

static uint64_t g_lcg = 12345;
static double rnd(void) { /* deterministic test data, independent of the sampler's PRNG */
    g_lcg = g_lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_lcg >> 11) * 0x1.0p-53;
}

/* Temperature changes top_p and min_p (they come after it) but not top_k's set; the combination
 * of all rules on random rows against the reference. */
static void test_combined_random(void) {
    enum { V = 64 };
    float l[V], got[V];
    double want[V];
    int checked = 0;
    for (int trial = 0; trial < 300; trial++) {
        for (int i = 0; i < V; i++) l[i] = (float)(4 * rnd() - 2);
        eft_sampling_params p = params((float)(0.2 + 2 * rnd()), (int)(rnd() * 40), (float)(0.3 + 0.75 * rnd()),
                                       (float)(rnd() < 0.5 ? 0 : 0.3 * rnd()));
        if (p.top_p > 1) p.top_p = 1;
        eft__sampler *s = make(V, &p, NULL, 0);
        if (!s) return;
        both(s, l, V, &p, got, want);
        CHECK_MSG(same_dist(got, want, V, 2e-5), "trial %d: T %g k %d top_p %g min_p %g", trial, p.temperature,
                  p.top_k, p.top_p, p.min_p);
        checked++;
        eft__sampler_free(s);
    }
    CHECK_EQ_INT(checked, 300);
}

/* A real vocabulary size, where top_p sorts only the head when that is enough. */
static void test_large_vocab(void) {
    enum { V = 50000 };
    float *l = malloc(V * sizeof *l), *tmp = malloc(V * sizeof *l), *got = malloc(V * sizeof *l);
    double *q = malloc(V * sizeof *q);
    int *order = malloc(V * sizeof *order);
    if (!l || !tmp || !got || !q || !order) {
        CHECK(0);
        goto out;
    }
    for (int i = 0; i < V; i++) {
        double u1 = rnd() + 1e-12, u2 = rnd();
        l[i] = (float)(3 * sqrt(-2 * log(u1)) * cos(2 * M_PI * u2)); /* normal, sd 3 */
    }
    const float tops[3] = {0.5f, 0.9f, 0.999999f};
    for (int c = 0; c < 3; c++) {
        eft_sampling_params p = params(1, 0, tops[c], 0);
        eft__sampler *s = make(V, &p, NULL, 0);
        if (!s) goto out;
        memcpy(tmp, l, V * sizeof *l);
        eft__sampler_distribution(s, tmp, got);
        /* Reference kept count: descending order, keep while the mass before < top_p. */
        double m = -INFINITY, z = 0;
        for (int i = 0; i < V; i++)
            if (l[i] > m) m = l[i];
        for (int i = 0; i < V; i++) z += q[i] = exp((double)l[i] - m);
        for (int i = 0; i < V; i++) order[i] = i, q[i] /= z;
        g_key = q;
        qsort(order, V, sizeof *order, asc);
        int want_kept = 0;
        double before = 0;
        for (int k = V - 1; k >= 0 && (want_kept == 0 || before < tops[c]); k--) {
            before += q[order[k]];
            want_kept++;
            CHECK(got[order[k]] > 0);
        }
        int kept = 0;
        for (int i = 0; i < V; i++) kept += got[i] > 0;
        CHECK_MSG(kept == want_kept, "top_p %g: kept %d, reference %d", tops[c], kept, want_kept);
        eft__sampler_free(s);
    }
    /* top_k on the same row keeps exactly the k largest (no ties in random floats). */
    eft_sampling_params p = params(1, 40, 1, 0);
    eft__sampler *s = make(V, &p, NULL, 0);
    if (!s) goto out;
    memcpy(tmp, l, V * sizeof *l);
    eft__sampler_distribution(s, tmp, got);
    int kept = 0;
    for (int i = 0; i < V; i++) kept += got[i] > 0;
    CHECK_EQ_INT(kept, 40);
    for (int k = V - 1; k >= V - 40; k--) CHECK(got[order[k]] > 0);
    eft__sampler_free(s);
out:
    free(l), free(tmp), free(got), free(q), free(order);
}

/* Frequencies over many draws against the final distribution: each within 5 standard deviations
 * of a binomial proportion (about 0.0056 at p = 0.5 with 200000 draws). */
static void test_frequencies(void) {
    enum { V = 8, N = 200000 };
    const float l0[V] = {1.0f, 0.5f, 2.0f, -1.0f, 0.0f, 1.5f, 0.2f, -0.5f};
    eft_sampling_params cases[3] = {params(0.7f, 0, 1, 0), params(1.3f, 5, 0.9f, 0), params(1, 0, 1, 0.2f)};
    for (int c = 0; c < 3; c++) {
        eft__sampler *s = make(V, &cases[c], NULL, 0);
        if (!s) return;
        float l[V], probs[V];
        int counts[V] = {0};
        memcpy(l, l0, sizeof l);
        eft__sampler_distribution(s, l, probs);
        for (int n = 0; n < N; n++) {
            memcpy(l, l0, sizeof l);
            int32_t id = eft__sampler_sample(s, l, 0, NULL, NULL);
            CHECK(id >= 0 && id < V);
            if (id >= 0 && id < V) counts[id]++;
        }
        for (int i = 0; i < V; i++) {
            double f = (double)counts[i] / N, sd = sqrt(probs[i] * (1 - probs[i]) / N);
            CHECK_MSG(fabs(f - probs[i]) <= 5 * sd + 1e-9, "case %d token %d: frequency %.5f, p %.5f", c, i, f,
                      probs[i]);
            if (probs[i] == 0) CHECK_EQ_INT(counts[i], 0);
        }
        eft__sampler_free(s);
    }
}

static void test_seed_determinism(void) {
    enum { V = 100, N = 500 };
    float l0[V];
    for (int i = 0; i < V; i++) l0[i] = (float)(3 * rnd());
    int32_t a[N], b[N], c[N];
    const uint64_t seeds[3] = {7, 7, 8};
    int32_t *outs[3] = {a, b, c};
    for (int k = 0; k < 3; k++) {
        eft_sampling_params p = params(1, 0, 0.95f, 0);
        p.seed = seeds[k];
        p.repetition_penalty = 1.1f;
        eft__sampler *s = make(V, &p, NULL, 0);
        if (!s) return;
        for (int n = 0; n < N; n++) {
            float l[V];
            memcpy(l, l0, sizeof l);
            outs[k][n] = eft__sampler_sample(s, l, 0, NULL, NULL);
            eft__sampler_accept(s, outs[k][n]);
        }
        eft__sampler_free(s);
    }
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
    /* A reset with the same seed replays the stream. */
    eft_sampling_params p = params(1, 0, 1, 0);
    eft__sampler *s = make(V, &p, NULL, 0);
    if (!s) return;
    double u1 = eft__sampler_uniform(s), u2 = eft__sampler_uniform(s);
    eft__error err;
    CHECK(eft__sampler_reset(s, &p, NULL, 0, &err) == EFT_OK);
    CHECK(eft__sampler_uniform(s) == u1);
    CHECK(eft__sampler_uniform(s) == u2);
    CHECK(u1 >= 0 && u1 < 1 && u1 != u2);
    eft__sampler_free(s);
}

static void test_logprobs(void) {
    enum { V = 7 };
    const float l0[V] = {0.3f, 2.0f, -1.0f, 2.0f, 0.7f, 1.1f, -3.0f};
    eft_sampling_params p = params(2.5f, 3, 1, 0); /* temperature must not change logprobs */
    p.repetition_penalty = 2;
    const int32_t prompt[1] = {5}; /* 1.1 -> 0.55: penalties do change them */
    eft__sampler *s = make(V, &p, prompt, 1);
    if (!s) return;
    double d[V], lsm[V];
    for (int i = 0; i < V; i++) d[i] = l0[i];
    ref_penalties(d, V, &p, prompt, 1, NULL, 0);
    double m = -INFINITY, z = 0;
    for (int i = 0; i < V; i++) m = d[i] > m ? d[i] : m;
    for (int i = 0; i < V; i++) z += exp(d[i] - m);
    for (int i = 0; i < V; i++) lsm[i] = d[i] - m - log(z);
    for (int r = 0; r < 20; r++) {
        float l[V], lp = 0;
        eft_token_logprob top[V];
        memcpy(l, l0, sizeof l);
        int32_t id = eft__sampler_sample(s, l, V, top, &lp);
        CHECK(id == 1 || id == 3 || id == 4); /* top_k 3 */
        CHECK_NEAR(lp, lsm[id], 1e-5);
        double sum = 0;
        for (int k = 0; k < V; k++) {
            sum += exp(top[k].logprob);
            CHECK_NEAR(top[k].logprob, lsm[top[k].id], 1e-5);
            if (k) CHECK(top[k].logprob <= top[k - 1].logprob);
        }
        CHECK_NEAR(sum, 1, 1e-5);
        /* Ties: ids 1 and 3 share the top logit; the lower id comes first. */
        CHECK_EQ_INT(top[0].id, 1);
        CHECK_EQ_INT(top[1].id, 3);
        CHECK_EQ_INT(top[2].id, 4);
        CHECK_EQ_INT(top[3].id, 5);
    }
    /* Fewer than V: the same head. */
    float l[V];
    eft_token_logprob top2[2];
    memcpy(l, l0, sizeof l);
    eft__sampler_sample(s, l, 2, top2, NULL);
    CHECK_EQ_INT(top2[0].id, 1);
    CHECK_EQ_INT(top2[1].id, 3);
    eft__sampler_free(s);
}

/* Masked logits (-inf) and NaN get probability 0 on the sampling path, the rest their softmax. */
static void test_masked_logits(void) {
    enum { V = 21 };
    float l0[V], got[V];
    double want[V];
    for (int i = 0; i < V; i++) l0[i] = i % 3 == 1 ? -INFINITY : (float)(0.1 * i);
    l0[5] = NAN;
    eft_sampling_params p = params(0.9f, 0, 1, 0);
    eft__sampler *s = make(V, &p, NULL, 0);
    if (!s) return;
    float tmp[V];
    memcpy(tmp, l0, sizeof tmp);
    eft__sampler_distribution(s, tmp, got);
    double d[V];
    for (int i = 0; i < V; i++) d[i] = isnan(l0[i]) ? -INFINITY : l0[i];
    ref_distribution(d, V, &p, want);
    CHECK(same_dist(got, want, V, 1e-6));
    CHECK(got[1] == 0 && got[5] == 0);
    for (int n = 0; n < 2000; n++) {
        memcpy(tmp, l0, sizeof tmp);
        int32_t id = eft__sampler_sample(s, tmp, 0, NULL, NULL);
        CHECK(id >= 0 && id < V && id % 3 != 1 && id != 5);
    }
    float lp = 0;
    eft_token_logprob top[3];
    memcpy(tmp, l0, sizeof tmp);
    eft__sampler_sample(s, tmp, 3, top, &lp);
    CHECK(isfinite(lp) && lp <= 0);
    CHECK_EQ_INT(top[0].id, 20);
    eft__sampler_free(s);
}

static void test_bad_params(void) {
    eft__sampler *s = NULL;
    eft__error err;
    CHECK(eft__sampler_init(0, &s, &err) == EFT_ERR_INVALID_ARGUMENT);
    CHECK(s == NULL);
    CHECK(eft__sampler_init(10, &s, &err) == EFT_OK);
    if (!s) return;
    eft_sampling_params bad[] = {
        params(-1, 0, 1, 0), params(NAN, 0, 1, 0), params(1, -1, 1, 0), params(1, 0, 1.5f, 0), params(1, 0, -0.1f, 0),
        params(1, 0, 1, 2), params(INFINITY, 0, 1, 0),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(eft__sampler_reset(s, &bad[i], NULL, 0, &err), EFT_ERR_INVALID_ARGUMENT);
        CHECK_CONTAINS(err.msg, "out of range");
    }
    eft_sampling_params p = params(1, 0, 1, 0);
    p.repetition_penalty = 0;
    CHECK_EQ_INT(eft__sampler_reset(s, &p, NULL, 0, &err), EFT_ERR_INVALID_ARGUMENT);
    p.repetition_penalty = 1;
    const int32_t prompt[2] = {3, 10};
    CHECK_EQ_INT(eft__sampler_reset(s, &p, prompt, 2, &err), EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(err.msg, "id 10");
    eft__sampler_free(s);
    eft__sampler_free(NULL);
}

int main(void) {
    RUN(test_penalties_exact);
    RUN(test_greedy_ties);
    RUN(test_top_k_exact);
    RUN(test_top_p_exact);
    RUN(test_min_p_exact);
    RUN(test_combined_random);
    RUN(test_large_vocab);
    RUN(test_frequencies);
    RUN(test_seed_determinism);
    RUN(test_logprobs);
    RUN(test_masked_logits);
    RUN(test_bad_params);
    return test_summary();
}
