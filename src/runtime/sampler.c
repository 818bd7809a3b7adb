/*
 * sampler.c — chooses each generated token: penalties (transformers' RepetitionPenaltyLogitsProcessor
 * over prompt + generated ids, then OpenAI's presence/frequency over generated ids), then
 * transformers' warpers in the order _get_logits_processor appends them (temperature, top_k, top_p,
 * min_p), then a draw from a per-sequence xoshiro256** PRNG. Everything works in buffers sized for
 * the vocabulary at init: nothing is allocated per token.
 */
#include "runtime/sampler.h"

#include "kernels/cpu/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    float v;    /* a logit or an unnormalised probability */
    int32_t id;
} cand;

struct eft__sampler {
    int64_t V;
    eft_sampling_params p;
    uint64_t rng[4];
    int32_t *count;   /* [V] occurrences among generated ids (presence/frequency) */
    uint8_t *seen;    /* [V] 1: in the prompt or generated (repetition) */
    int32_t *touched; /* [V] the ids with seen set, so a reset and the penalties cost O(touched), not O(V) */
    int64_t n_touched;
    cand *c;          /* [V] candidates of the current draw */
    float *w;         /* [V] exponentials, through the kernels' vectorised exp */
    const eft__kernels *k;
};

/* ---------------------------------------------------------------------------------------------
 * PRNG: xoshiro256** (Blackman and Vigna), its state filled from the seed by splitmix64 as its
 * authors recommend, so nearby seeds still give unrelated streams.
 * ------------------------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

double eft__sampler_uniform(eft__sampler *s) { return (double)(next_u64(s->rng) >> 11) * 0x1.0p-53; }

/* ---------------------------------------------------------------------------------------------
 * Life cycle
 * ------------------------------------------------------------------------------------------- */

eft_status eft__sampler_init(int64_t V, eft__sampler **out, eft__error *err) {
    if (!out) return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "eft__sampler_init: NULL argument");
    *out = NULL;
    if (V < 1 || V > INT32_MAX)
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "sampler: vocabulary of %lld entries (expected 1..%d)",
                         (long long)V, INT32_MAX);
    eft__sampler *s = eft__calloc(1, sizeof *s);
    if (!s) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    s->V = V;
    s->count = eft__calloc((size_t)V, sizeof *s->count);
    s->seen = eft__calloc((size_t)V, sizeof *s->seen);
    s->touched = eft__malloc_array((size_t)V, sizeof *s->touched);
    s->c = eft__malloc_array((size_t)V, sizeof *s->c);
    s->w = eft__malloc_array((size_t)V, sizeof *s->w);
    s->k = eft__kernels_get();
    if (!s->count || !s->seen || !s->touched || !s->c || !s->w) {
        eft__sampler_free(s);
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory for a sampler over %lld tokens", (long long)V);
    }
    eft_sampling_params p = {.temperature = 0, .top_p = 1, .repetition_penalty = 1};
    eft__sampler_reset(s, &p, NULL, 0, NULL);
    *out = s;
    return EFT_OK;
}

void eft__sampler_free(eft__sampler *s) {
    if (!s) return;
    eft__free(s->count);
    eft__free(s->seen);
    eft__free(s->touched);
    eft__free(s->c);
    eft__free(s->w);
    eft__free(s);
}

static void mark_seen(eft__sampler *s, int32_t id) {
    if (!s->seen[id]) {
        s->seen[id] = 1;
        s->touched[s->n_touched++] = id;
    }
}

eft_status eft__sampling_params_check(const eft_sampling_params *p, eft__error *err) {
    if (!p) return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "sampling parameters: NULL");
    if (!(isfinite(p->temperature) && p->temperature >= 0) || p->top_k < 0 ||
        !(p->top_p >= 0 && p->top_p <= 1) || !(p->min_p >= 0 && p->min_p <= 1) ||
        !(isfinite(p->repetition_penalty) && p->repetition_penalty > 0) || !isfinite(p->presence_penalty) ||
        !isfinite(p->frequency_penalty))
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT,
                         "sampling parameters out of range: temperature %g (>= 0), top_k %d (>= 0), top_p %g (0..1), "
                         "min_p %g (0..1), repetition_penalty %g (> 0), presence_penalty %g and frequency_penalty %g "
                         "(finite)",
                         (double)p->temperature, p->top_k, (double)p->top_p, (double)p->min_p,
                         (double)p->repetition_penalty, (double)p->presence_penalty, (double)p->frequency_penalty);
    return EFT_OK;
}

eft_status eft__sampler_reset(eft__sampler *s, const eft_sampling_params *p, const int32_t *prompt, size_t n_prompt,
                              eft__error *err) {
    if (!s || !p || (n_prompt && !prompt)) return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "sampler: NULL argument");
    eft_status st = eft__sampling_params_check(p, err);
    if (st) return st;
    for (size_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= s->V)
            return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "prompt token %zu is id %d, outside the vocabulary 0..%lld",
                             i, prompt[i], (long long)s->V - 1);
    for (int64_t i = 0; i < s->n_touched; i++) {
        s->seen[s->touched[i]] = 0;
        s->count[s->touched[i]] = 0;
    }
    s->n_touched = 0;
    s->p = *p;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    for (size_t i = 0; i < n_prompt; i++) mark_seen(s, prompt[i]);
    return EFT_OK;
}

void eft__sampler_accept(eft__sampler *s, int32_t id) {
    if (!s || id < 0 || id >= s->V) return;
    mark_seen(s, id);
    if (s->count[id] < INT32_MAX) s->count[id]++;
}

/* ---------------------------------------------------------------------------------------------
 * Choosing a token
 * ------------------------------------------------------------------------------------------- */

/* Repetition penalty (transformers: a seen token's logit is divided by the penalty when it is
 * positive, multiplied when negative), then presence/frequency (OpenAI: logit -= count *
 * frequency + [count > 0] * presence, counting generated tokens only). NaN logits become -inf so
 * that no comparison below has to think about them. */
static void apply_penalties(eft__sampler *s, float *logits) {
    for (int64_t i = 0; i < s->V; i++) logits[i] = logits[i] == logits[i] ? logits[i] : -INFINITY; /* vectorises */
    const float rp = s->p.repetition_penalty, pp = s->p.presence_penalty, fp = s->p.frequency_penalty;
    for (int64_t k = 0; k < s->n_touched; k++) {
        int32_t id = s->touched[k];
        float l = logits[id];
        if (rp != 1.0f) l = l < 0 ? l * rp : l / rp;
        if (s->count[id] > 0) l -= (float)s->count[id] * fp + pp;
        logits[id] = l;
    }
}

/* Descending by value, ascending by id on ties: the order top_p walks and top-n reports. */
static int cand_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Moves the k largest values of c[0..n) (1 <= k <= n) to the front, unordered, and returns the
 * k-th largest value (Hoare's selection, expected O(n)). */
static float select_kth(cand *c, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float a = c[lo].v, b = c[lo + (hi - lo) / 2].v, d = c[hi].v;
        float pivot = a > b ? (b > d ? b : (a > d ? d : a)) : (a > d ? a : (b > d ? d : b)); /* median of 3 */
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (c[i].v > pivot) i++;
            while (c[j].v < pivot) j--;
            if (i <= j) {
                cand t = c[i];
                c[i] = c[j];
                c[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else break; /* want lies among values equal to the pivot */
    }
    return c[want].v;
}

/* The n_top largest logits, most likely first and lowest id first on ties, with their
 * log-softmax; lse is the log of the sum of exp(logits). Insertion into a short sorted list:
 * O(V) comparisons for the usual few entries. */
static void top_logprobs(const float *logits, int64_t V, double lse, int n_top, eft_token_logprob *top) {
    int have = 0;
    for (int64_t i = 0; i < V; i++) {
        float v = logits[i];
        if (have == n_top && !(v > top[have - 1].logprob)) continue;
        int j = have < n_top ? have++ : n_top - 1;
        while (j > 0 && v > top[j - 1].logprob) {
            top[j] = top[j - 1];
            j--;
        }
        top[j].id = (int32_t)i;
        top[j].logprob = v;
    }
    for (int j = 0; j < have; j++) top[j].logprob = (float)((double)top[j].logprob - lse);
}

/* Applies temperature, top_k, top_p and min_p to the penalised logits (mx: their maximum, finite):
 * leaves the kept tokens in s->c[0 .. return) with unnormalised probabilities summing to *z. */
static int64_t warp(eft__sampler *s, const float *logits, float mx, double *z_out) {
    const int64_t V = s->V;
    /* expf, not exp: float logits carry no more precision, and it is the cost of every token. */
    const float inv_t = 1.0f / s->p.temperature;
    int64_t n = 0;
    if (s->p.top_k > 0 && s->p.top_k < V) {
        /* TopKLogitsWarper keeps every logit >= the k-th largest, so ties at the edge all stay. */
        for (int64_t i = 0; i < V; i++) s->c[i] = (cand){logits[i], (int32_t)i};
        float kth = select_kth(s->c, V, s->p.top_k);
        for (int64_t i = 0; i < V; i++)
            if (logits[i] >= kth) s->c[n++] = (cand){expf((logits[i] - mx) * inv_t), (int32_t)i};
    } else {
        /* (l - max) / T <= 0, so exp_sub_sum with a zero max gives the probabilities unnormalised. */
        for (int64_t i = 0; i < V; i++) s->w[i] = (logits[i] - mx) * inv_t;
        s->k->exp_sub_sum(s->w, V, 0.0f);
        for (int64_t i = 0; i < V; i++) s->c[n++] = (cand){s->w[i], (int32_t)i};
    }
    double z = 0;
    for (int64_t i = 0; i < n; i++) z += s->c[i].v;

    if (s->p.top_p < 1) {
        /* TopPLogitsWarper removes a token when the ascending cumulative probability up to and
         * including it is <= 1 - top_p; walking in descending order, that keeps a token while the
         * mass before it is < top_p. Only the head needs sorting: when the tokens with p >= t
         * already hold top_p of the mass the cut falls among them, so sort those alone, and the
         * whole list only when they do not. */
        const float t = 1e-4f; /* relative to the maximum, whose p is 1 before normalisation */
        double head = 0;
        int64_t h = 0;
        for (int64_t i = 0; i < n; i++)
            if (s->c[i].v >= t) {
                head += s->c[i].v;
                cand x = s->c[h];
                s->c[h++] = s->c[i];
                s->c[i] = x;
            }
        int64_t m = head >= (double)s->p.top_p * z ? h : n;
        qsort(s->c, (size_t)m, sizeof *s->c, cand_desc);
        double before = 0;
        int64_t kept = 0;
        while (kept < m && (kept == 0 || before < (double)s->p.top_p * z)) before += s->c[kept++].v;
        n = kept;
        z = before;
    }
    if (s->p.min_p > 0) {
        /* MinPLogitsWarper: drop p < min_p * max p; ratios do not depend on normalisation. The
         * maximum survives every earlier rule, so the kept set is never empty. */
        float pmax = 0;
        for (int64_t i = 0; i < n; i++)
            if (s->c[i].v > pmax) pmax = s->c[i].v;
        const float cut = s->p.min_p * pmax;
        int64_t k = 0;
        z = 0;
        for (int64_t i = 0; i < n; i++)
            if (s->c[i].v >= cut) {
                s->c[k++] = s->c[i];
                z += s->c[i].v;
            }
        n = k;
    }
    *z_out = z;
    return n;
}

/* The lowest id holding the maximum: a vectorised max, then a scan for its first occurrence
 * (NaN is gone by now, so equality finds it). */
static int32_t argmax(const eft__sampler *s, const float *x) {
    const float m = s->k->max_f32(x, s->V);
    for (int64_t i = 0; i < s->V; i++)
        if (x[i] == m) return (int32_t)i;
    return 0;
}

int32_t eft__sampler_sample(eft__sampler *s, float *logits, int n_top, eft_token_logprob *top, float *logprob) {
    const int64_t V = s->V;
    apply_penalties(s, logits);
    int32_t id = argmax(s, logits);
    const float mx = logits[id];

    double lse = mx;
    if (logprob || n_top > 0) {
        if (isfinite(mx)) {
            memcpy(s->w, logits, (size_t)V * sizeof *s->w);
            lse = mx + log((double)s->k->exp_sub_sum(s->w, V, mx));
        }
        if (n_top > V) n_top = (int)V;
        if (n_top > 0) top_logprobs(logits, V, lse, n_top, top);
    }
    /* Greedy, and the degenerate row with no finite logit, take the argmax. */
    if (s->p.temperature > 0 && isfinite(mx)) {
        double z;
        int64_t n = warp(s, logits, mx, &z);
        double r = eft__sampler_uniform(s) * z, acc = 0;
        id = s->c[n - 1].id;
        for (int64_t i = 0; i < n; i++) {
            acc += s->c[i].v;
            if (r < acc) {
                id = s->c[i].id;
                break;
            }
        }
    }
    if (logprob) *logprob = (float)((double)logits[id] - lse);
    return id;
}

void eft__sampler_distribution(eft__sampler *s, float *logits, float *probs) {
    const int64_t V = s->V;
    apply_penalties(s, logits);
    int32_t best = argmax(s, logits);
    memset(probs, 0, (size_t)V * sizeof *probs);
    if (!(s->p.temperature > 0 && isfinite(logits[best]))) {
        probs[best] = 1;
        return;
    }
    double z;
    int64_t n = warp(s, logits, logits[best], &z);
    for (int64_t i = 0; i < n; i++) probs[s->c[i].id] = (float)(s->c[i].v / z);
}
