/*
 * attention.c — scaled dot-product attention for prefill and decode over f32 keys and values:
 * a flash-style tiled kernel and its scalar reference. The tiled kernel takes BQ queries of one
 * head at a time, walks the visible keys in tiles of BK, and keeps a running max and sum per
 * query row (the online softmax), so memory stays O(BQ x (BK + HS)) whatever the length. Both
 * products (Q K^T and P V) run on the GEMM micro-kernel after packing the key and value tile
 * into its 16-wide panels; that packing costs ~1 % of the tile's flops at BQ = 48.
 * Work items (head, query tile) are handed out through an atomic counter, so causal tiles of
 * unequal cost still balance across workers.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

enum { BQ = 48, BK = 64, NR = EFT__SGEMM_NR, MR = EFT__SGEMM_MR };
_Static_assert(BQ % MR == 0 && BK % NR == 0, "tiles must hold whole micro-tiles");

static inline int64_t round16(int64_t x) { return (x + 15) & ~(int64_t)15; }

static inline int64_t eff_kv_len(const eft__attn_params *p) {
    return p->kv_len > 0 && p->kv_len < p->tk ? p->kv_len : p->tk;
}

static inline bool visible(const eft__attn_params *p, int64_t kvlen, int64_t i, int64_t j) {
    if (j >= kvlen) return false;
    if (p->key_mask && !p->key_mask[j]) return false;
    int64_t pos = p->q_pos0 + i;
    if (p->causal && j > pos) return false;
    if (p->window > 0 && (pos - j >= p->window || j - pos >= p->window)) return false;
    return true;
}

/* Work layout: K of every key/value head packed into GEMM panels of 16 keys ([NKV][Tk16/16][HS][16]),
 * V packed into panels of 16 head dims ([NKV][HSp/16][Tk16][16]), both once per call and shared
 * by all workers, then each worker's scratch: S [BQ][BK], O [BQ][HSp], running max and sum. */
static size_t worker_floats(const eft__attn_params *p) {
    return (size_t)round16(BQ * BK + BQ * round16(p->hs) + 2 * BQ);
}

static size_t packed_floats(const eft__attn_params *p) {
    return (size_t)p->nkv * (size_t)round16(p->tk) * (size_t)(p->hs + round16(p->hs));
}

size_t eft__attention_work_floats(const eft__attn_params *p, int nth) {
    return packed_floats(p) + (size_t)(nth > 0 ? nth : 1) * worker_floats(p);
}

typedef struct attn_ctx {
    const eft__kernels *kt;
    eft__threadpool *tp;
    float *out;
    const float *q, *k, *v;
    const eft__attn_params *p;
    float *kp, *vp, *scratch;
    _Atomic int64_t next;
    int64_t nqt; /* query tiles per head */
} attn_ctx;

/* Packs keys and values 16g .. 16g+15 of key/value head kvh, zero past tk. */
static void pack_group(attn_ctx *x, int kvh, int64_t g) {
    const eft__attn_params *p = x->p;
    const int64_t hs = p->hs, hsp = round16(hs), tkp = round16(p->tk);
    float *kdst = x->kp + ((int64_t)kvh * (tkp / NR) + g) * hs * NR;
    for (int64_t jj = 0; jj < NR; jj++) {
        int64_t j = g * NR + jj;
        if (j < p->tk) {
            const float *kr = x->k + j * p->ldk + (int64_t)kvh * hs;
            for (int64_t d = 0; d < hs; d++) kdst[d * NR + jj] = kr[d];
        } else {
            for (int64_t d = 0; d < hs; d++) kdst[d * NR + jj] = 0.0f;
        }
    }
    for (int64_t pd = 0; pd < hsp / NR; pd++) {
        float *vdst = x->vp + ((int64_t)kvh * (hsp / NR) + pd) * tkp * NR + g * NR * NR;
        int64_t nd = hs - pd * NR < NR ? hs - pd * NR : NR;
        for (int64_t jj = 0; jj < NR; jj++) {
            int64_t j = g * NR + jj, dd = 0;
            if (j < p->tk) {
                const float *vr = x->v + j * p->ldv + (int64_t)kvh * hs + pd * NR;
                for (; dd < nd; dd++) vdst[jj * NR + dd] = vr[dd];
            }
            for (; dd < NR; dd++) vdst[jj * NR + dd] = 0.0f;
        }
    }
}

/* Keys visible to query row i: [lo, hi), then the optional key mask. */
static inline void visible_range(const eft__attn_params *p, int64_t kvlen, int64_t i, int64_t *lo, int64_t *hi) {
    int64_t pos = p->q_pos0 + i, h = kvlen, l = 0;
    if (p->causal && pos + 1 < h) h = pos + 1;
    if (p->window > 0) {
        if (pos - p->window + 1 > l) l = pos - p->window + 1;
        if (!p->causal && pos + p->window < h) h = pos + p->window;
    }
    *lo = l;
    *hi = h;
}

/* Gemma 2's attention logit soft-capping, cap * tanh(s / cap), applied after the scale as
 * transformers does. tanh is bounded, so the online softmax needs nothing else. */
static void softcap_row(float *s, float cap, int64_t n) {
    const float inv = 1.0f / cap;
    for (int64_t j = 0; j < n; j++) s[j] = cap * tanhf(s[j] * inv);
}

static void attn_tile(attn_ctx *x, float *work, int h, int64_t q0) {
    const eft__attn_params *p = x->p;
    const eft__kernels *kt = x->kt;
    const int64_t hs = p->hs, hsp = round16(hs), tkp = round16(p->tk), kvlen = eff_kv_len(p);
    const int kvh = h / (p->nh / p->nkv);
    const int64_t nq = p->t - q0 < BQ ? p->t - q0 : BQ;
    float *S = work, *O = S + BQ * BK, *mrow = O + BQ * hsp, *lrow = mrow + BQ;
    memset(O, 0, sizeof(float) * BQ * hsp);
    for (int64_t i = 0; i < nq; i++) mrow[i] = -INFINITY, lrow[i] = 0;

    /* Keys any row of this tile can see: [jlo, jhi), jlo rounded down to a panel boundary. */
    int64_t jlo = INT64_MAX, jhi = 0;
    for (int64_t i = 0; i < nq; i += nq - 1 > 0 ? nq - 1 : 1) {
        int64_t lo, hi;
        visible_range(p, kvlen, q0 + i, &lo, &hi);
        if (lo < jlo) jlo = lo;
        if (hi > jhi) jhi = hi;
    }
    jlo = jlo / NR * NR;
    const float *qh = x->q + q0 * p->ldq + (int64_t)h * hs;
    const float *kph = x->kp + (int64_t)kvh * (tkp / NR) * hs * NR;
    const float *vph = x->vp + (int64_t)kvh * (hsp / NR) * tkp * NR;
    for (int64_t j0 = jlo; j0 < jhi; j0 += BK) {
        int64_t nk = jhi - j0 < BK ? jhi - j0 : BK, nkp = round16(nk);
        /* S = Q K^T for the tile. */
        for (int64_t pk = 0; pk < nkp / NR; pk++)
            for (int64_t i = 0; i < nq; i += MR) {
                int mr = (int)(nq - i < MR ? nq - i : MR);
                kt->sgemm_ukernel(S + i * BK + pk * NR, BK, qh + i * p->ldq, p->ldq, kph + (j0 / NR + pk) * hs * NR, hs, mr,
                                  NR, NULL, false);
            }
        /* Scale, mask, online softmax; P overwrites S (zero past nk, so padded keys add 0). */
        for (int64_t i = 0; i < nq; i++) {
            float *s = S + i * BK;
            int64_t lo, hi;
            visible_range(p, kvlen, q0 + i, &lo, &hi);
            lo = lo > j0 ? lo - j0 : 0;
            hi = hi < j0 + nk ? hi - j0 : nk;
            for (int64_t j = nk; j < nkp; j++) s[j] = 0.0f;
            if (lo >= hi) {
                memset(s, 0, sizeof(float) * nk);
                continue;
            }
            for (int64_t j = 0; j < lo; j++) s[j] = -INFINITY;
            for (int64_t j = hi; j < nk; j++) s[j] = -INFINITY;
            kt->scale_f32(s + lo, p->scale, hi - lo);
            if (p->softcap > 0) softcap_row(s + lo, p->softcap, hi - lo);
            if (p->key_mask)
                for (int64_t j = lo; j < hi; j++)
                    if (!p->key_mask[j0 + j]) s[j] = -INFINITY;
            float mx = kt->max_f32(s + lo, hi - lo);
            if (mx == -INFINITY) {
                memset(s, 0, sizeof(float) * nk);
                continue;
            }
            float mnew = mx > mrow[i] ? mx : mrow[i];
            float corr = expf(mrow[i] - mnew); /* exp(-inf) = 0 for the first visible tile */
            lrow[i] = lrow[i] * corr + kt->exp_sub_sum(s, nk, mnew);
            if (corr != 1.0f) kt->scale_f32(O + i * hsp, corr, hsp);
            mrow[i] = mnew;
        }
        /* O += P V. */
        for (int64_t pd = 0; pd < hsp / NR; pd++)
            for (int64_t i = 0; i < nq; i += MR) {
                int mr = (int)(nq - i < MR ? nq - i : MR);
                kt->sgemm_ukernel(O + i * hsp + pd * NR, hsp, S + i * BK, BK, vph + pd * tkp * NR + j0 * NR, nkp, mr, NR, NULL,
                                  true);
            }
    }
    for (int64_t i = 0; i < nq; i++) {
        float *o = x->out + (q0 + i) * p->ldo + (int64_t)h * hs;
        float inv = lrow[i] > 0 ? 1.0f / lrow[i] : 0.0f;
        for (int64_t d = 0; d < hs; d++) o[d] = O[i * hsp + d] * inv;
    }
}

static void attn_task(void *arg, int ith, int nth) {
    attn_ctx *x = arg;
    const eft__attn_params *p = x->p;
    int64_t groups = round16(p->tk) / NR, b, e;
    eft__split_range(groups * p->nkv, ith, nth, &b, &e);
    for (int64_t it = b; it < e; it++) pack_group(x, (int)(it / groups), it % groups);
    if (x->tp) eft__threadpool_barrier(x->tp);
    float *work = x->scratch + (size_t)ith * worker_floats(p);
    int64_t total = x->nqt * p->nh;
    for (;;) {
        int64_t it = atomic_fetch_add_explicit(&x->next, 1, memory_order_relaxed);
        if (it >= total) break;
        /* Heads vary fastest, so concurrent workers share a query tile's key range in cache. */
        attn_tile(x, work, (int)(it % p->nh), (it / p->nh) * BQ);
    }
}

void eft__attention(const eft__kernels *kt, eft__threadpool *tp, float *out, const float *q,
                    const float *k, const float *v, const eft__attn_params *p, float *work) {
    if (p->t <= 0 || p->nh <= 0) return;
    if (p->tk <= 0) {
        for (int64_t i = 0; i < p->t; i++) memset(out + i * p->ldo, 0, sizeof(float) * (size_t)p->nh * p->hs);
        return;
    }
    float *kp = work, *vp = kp + (size_t)p->nkv * round16(p->tk) * p->hs;
    attn_ctx x = {kt ? kt : eft__kernels_get(), tp, out, q, k, v, p, kp, vp, work + packed_floats(p), 0,
                  (p->t + BQ - 1) / BQ};
    if (tp && eft__threadpool_size(tp) > 1) eft__threadpool_run(tp, attn_task, &x);
    else {
        x.tp = NULL;
        attn_task(&x, 0, 1);
    }
}

void eft__attention_ref(float *out, const float *q, const float *k, const float *v,
                        const eft__attn_params *p) {
    int64_t kvlen = eff_kv_len(p);
    double *s = eft__malloc_array((size_t)(p->tk > 0 ? p->tk : 1), sizeof(double));
    if (!s) return;
    for (int64_t i = 0; i < p->t; i++)
        for (int h = 0; h < p->nh; h++) {
            int kvh = h / (p->nh / p->nkv);
            const float *qi = q + i * p->ldq + (int64_t)h * p->hs;
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < p->tk; j++) {
                if (!visible(p, kvlen, i, j)) { s[j] = -INFINITY; continue; }
                const float *kj = k + j * p->ldk + (int64_t)kvh * p->hs;
                double d = 0;
                for (int e = 0; e < p->hs; e++) d += (double)qi[e] * kj[e];
                s[j] = d * p->scale;
                if (p->softcap > 0) s[j] = p->softcap * tanh(s[j] / p->softcap);
                if (s[j] > mx) mx = s[j];
            }
            for (int64_t j = 0; j < p->tk; j++) {
                s[j] = s[j] == -INFINITY ? 0.0 : exp(s[j] - mx);
                sum += s[j];
            }
            float *o = out + i * p->ldo + (int64_t)h * p->hs;
            for (int e = 0; e < p->hs; e++) {
                double acc = 0;
                for (int64_t j = 0; j < p->tk; j++)
                    if (s[j] != 0.0) acc += s[j] * v[j * p->ldv + (int64_t)kvh * p->hs + e];
                o[e] = sum > 0 ? (float)(acc / sum) : 0.0f;
            }
        }
    eft__free(s);
}

/* ---------------------------------------------------------------------------------------------
 * Decode over a typed KV cache
 * ------------------------------------------------------------------------------------------- */

float eft__kv_quantize_i8(int8_t *out, const float *x, int64_t n) {
    float amax = 0;
    for (int64_t i = 0; i < n; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int64_t i = 0; i < n; i++) out[i] = (int8_t)nearbyintf(x[i] * id);
    return d;
}

size_t eft__attention_decode_work_floats(const eft__attn_params *p) {
    return (size_t)round16(p->tk > 0 ? p->tk : 1);
}

static inline float kv_dot(const eft__kernels *kt, const float *q, const eft__kv_view *kv, int64_t j, int kvh, int hs) {
    int64_t off = j * kv->ld + (int64_t)kvh * hs;
    switch (kv->dtype) {
    case EFT_DTYPE_F16: return kt->dot_f32_f16(q, (const uint16_t *)kv->data + off, hs);
    case EFT_DTYPE_I8: return kt->dot_f32_i8(q, (const int8_t *)kv->data + off, hs) * kv->scale[j * kv->ld_scale + kvh];
    default: return kt->dot_f32(q, (const float *)kv->data + off, hs);
    }
}

static inline void kv_axpy(const eft__kernels *kt, float *o, float a, const eft__kv_view *kv, int64_t j, int kvh, int hs) {
    int64_t off = j * kv->ld + (int64_t)kvh * hs;
    switch (kv->dtype) {
    case EFT_DTYPE_F16: kt->axpy_f16(o, a, (const uint16_t *)kv->data + off, hs); break;
    case EFT_DTYPE_I8: kt->axpy_i8(o, a * kv->scale[j * kv->ld_scale + kvh], (const int8_t *)kv->data + off, hs); break;
    default: kt->axpy_f32(o, a, (const float *)kv->data + off, hs); break;
    }
}

typedef struct dec_ctx {
    const eft__kernels *kt;
    float *out, *work;
    const float *q;
    const eft__kv_view *k, *v;
    const eft__attn_params *p;
} dec_ctx;

static void dec_task(void *arg, int ith, int nth) {
    dec_ctx *x = arg;
    const eft__attn_params *p = x->p;
    const eft__kernels *kt = x->kt;
    float *s = x->work + (size_t)ith * eft__attention_decode_work_floats(p);
    int64_t kvlen = eff_kv_len(p), b, e;
    eft__split_range(p->t * p->nh, ith, nth, &b, &e);
    for (int64_t it = b; it < e; it++) {
        int64_t i = it / p->nh;
        int h = (int)(it % p->nh), kvh = h / (p->nh / p->nkv);
        const float *qi = x->q + i * p->ldq + (int64_t)h * p->hs;
        float *o = x->out + i * p->ldo + (int64_t)h * p->hs;
        float mx = -INFINITY;
        for (int64_t j = 0; j < p->tk; j++) {
            s[j] = visible(p, kvlen, i, j) ? kv_dot(kt, qi, x->k, j, kvh, p->hs) * p->scale : -INFINITY;
            if (p->softcap > 0 && s[j] != -INFINITY) s[j] = p->softcap * tanhf(s[j] / p->softcap);
            mx = s[j] > mx ? s[j] : mx;
        }
        memset(o, 0, sizeof(float) * (size_t)p->hs);
        if (mx == -INFINITY) continue; /* no visible key: zeros, as the prefill kernel does */
        float inv = 1.0f / kt->exp_sub_sum(s, p->tk, mx);
        for (int64_t j = 0; j < p->tk; j++)
            if (s[j] != 0.0f) kv_axpy(kt, o, s[j] * inv, x->v, j, kvh, p->hs);
    }
}

void eft__attention_decode(const eft__kernels *kt, eft__threadpool *tp, float *out, const float *q,
                           const eft__kv_view *k, const eft__kv_view *v, const eft__attn_params *p, float *work) {
    if (p->t <= 0 || p->nh <= 0) return;
    dec_ctx x = {kt ? kt : eft__kernels_get(), out, work, q, k, v, p};
    if (tp) eft__threadpool_run(tp, dec_task, &x);
    else dec_task(&x, 0, 1);
}
