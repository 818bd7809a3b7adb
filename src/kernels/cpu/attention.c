/*
 * attention.c — scaled dot-product attention for prefill and decode over f32 keys and values:
 * a flash-style tiled kernel and its scalar reference. The tiled kernel takes BQ queries of one
 * head at a time, walks the visible keys in tiles of BK, and keeps a running max and sum per
 * query row (the online softmax), so memory stays O(BQ x (BK + HS)) whatever the length. Both
 * products (Q K^T and P V) run on the GEMM micro-kernel after packing keys and values into its
 * 16-wide panels once per call; the key panels (a transpose) and the softmax step come from the
 * kernel table, which has vector versions of both and the portable ones below.
 * Work items (head, query tile) are handed out through an atomic counter, so causal tiles of
 * unequal cost still balance across workers.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

/* BK = 256: the softmax's per-row costs (two horizontal reductions, the running max and sum,
 * the rescale of O) are paid once per 256 keys instead of per 64, which cut the kernel's
 * instructions by 9 % at 512 tokens (callgrind); a 48 x 256 score tile (48 KiB) still sits in L2. */
enum { BQ = 48, BK = 256, NR = EFT__SGEMM_NR, MR = EFT__SGEMM_MR };
_Static_assert(BQ % MR == 0 && BK % NR == 0, "tiles must hold whole micro-tiles");

static inline int64_t round16(int64_t x) { return (x + 15) & ~(int64_t)15; }

static inline int64_t eff_kv_len(const eft__attn_params *p) {
    return p->kv_len > 0 && p->kv_len < p->tk ? p->kv_len : p->tk;
}

/* Floats between key/value heads (eft__attn_params.ldkh / ldvh; 0: side by side). */
static inline int64_t k_head(const eft__attn_params *p) { return p->ldkh > 0 ? p->ldkh : p->hs; }
static inline int64_t v_head(const eft__attn_params *p) { return p->ldvh > 0 ? p->ldvh : p->hs; }

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
 * by all workers, then each worker's scratch: S [BQ][BK], O [BQ][HSp], running max and sum, and
 * each row's visible key range (two int32 per row). */
static size_t worker_floats(const eft__attn_params *p) {
    return (size_t)round16(BQ * BK + BQ * round16(p->hs) + 4 * BQ);
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

/* ---------------------------------------------------------------------------------------------
 * Portable inner steps (the scalar table's entries; see kernels.h for the contracts)
 * ------------------------------------------------------------------------------------------- */

static void pack_k16_portable(float *dst, const float *k, int64_t ldk, int n, int64_t hs) {
    for (int r = 0; r < NR; r++) {
        if (r < n)
            for (int64_t d = 0; d < hs; d++) dst[d * NR + r] = k[r * ldk + d];
        else
            for (int64_t d = 0; d < hs; d++) dst[d * NR + r] = 0.0f;
    }
}

static void softmax_portable(float *s, int64_t lds, int nq, int64_t nk, const int32_t *lo, const int32_t *hi,
                             const uint8_t *mask, float scale, float softcap, float *m, float *l, float *o, int64_t ldo,
                             int64_t hsp) {
    const int64_t nkp = round16(nk);
    for (int i = 0; i < nq; i++) {
        float *r = s + i * lds, mx = -INFINITY;
        int64_t a = lo ? lo[i] : 0, b = hi ? hi[i] : nk;
        for (int64_t j = 0; j < nkp; j++) {
            float x = -INFINITY;
            if (j >= a && j < b && (!mask || mask[j])) {
                x = r[j] * scale;
                /* Gemma 2's soft-capping, after the scale as transformers applies it; tanh is
                 * bounded, so the online softmax needs nothing else. */
                if (softcap > 0) x = softcap * tanhf(x * (1.0f / softcap));
                mx = x > mx ? x : mx;
            }
            r[j] = x;
        }
        if (mx == -INFINITY) {
            memset(r, 0, sizeof(float) * (size_t)nkp);
            continue;
        }
        float mnew = mx > m[i] ? mx : m[i], sum = 0;
        for (int64_t j = 0; j < nkp; j++) {
            r[j] = r[j] == -INFINITY ? 0.0f : expf(r[j] - mnew);
            sum += r[j];
        }
        if (m[i] != mnew && m[i] != -INFINITY) {
            /* Rows that saw nothing yet have O = 0 and l = 0: no rescale needed. */
            float corr = expf(m[i] - mnew);
            for (int64_t d = 0; d < hsp; d++) o[i * ldo + d] *= corr;
            l[i] *= corr;
        }
        l[i] += sum;
        m[i] = mnew;
    }
}

/* Element i of a cache row of type t (F32, F16, or I8 unscaled). */
static inline float kv_elem(const void *row, eft_dtype t, int64_t i) {
    switch (t) {
    case EFT_DTYPE_F16: return eft__f16_to_f32(((const uint16_t *)row)[i]);
    case EFT_DTYPE_I8: return (float)((const int8_t *)row)[i];
    default: return ((const float *)row)[i];
    }
}

static inline size_t kv_elem_size(eft_dtype t) { return t == EFT_DTYPE_F16 ? 2 : t == EFT_DTYPE_I8 ? 1 : 4; }

static void dec_qk_portable(float *s, int64_t lds, const float *q, int64_t ldq, int g, const void *k, eft_dtype kt,
                            int64_t ldk, int64_t n, int hs) {
    const size_t es = kv_elem_size(kt);
    for (int r = 0; r < g; r++)
        for (int64_t j = 0; j < n; j++) {
            const void *kj = (const char *)k + (size_t)(j * ldk) * es;
            float acc = 0;
            for (int e = 0; e < hs; e++) acc += q[r * ldq + e] * kv_elem(kj, kt, e);
            s[r * lds + j] = acc;
        }
}

static void dec_pv_portable(float *o, int64_t ldo, const float *p, int64_t ldp, int g, const void *v, eft_dtype vt,
                            int64_t ldv, int64_t n, int hs) {
    const size_t es = kv_elem_size(vt);
    for (int r = 0; r < g; r++)
        for (int64_t j = 0; j < n; j++) {
            float a = p[r * ldp + j];
            if (a == 0.0f) continue;
            const void *vj = (const char *)v + (size_t)(j * ldv) * es;
            for (int e = 0; e < hs; e++) o[r * ldo + e] += a * kv_elem(vj, vt, e);
        }
}

void eft__kernels_fill_attn_scalar(eft__kernels *k) {
    k->attn_pack_k16 = pack_k16_portable;
    k->attn_softmax = softmax_portable;
    k->attn_dec_qk = dec_qk_portable;
    k->attn_dec_pv = dec_pv_portable;
}

/* ---------------------------------------------------------------------------------------------
 * The tiled kernel
 * ------------------------------------------------------------------------------------------- */

/* Packs keys and values 16g .. 16g+15 of key/value head kvh, zero past tk. */
static void pack_group(attn_ctx *x, int kvh, int64_t g) {
    const eft__attn_params *p = x->p;
    const int64_t hs = p->hs, hsp = round16(hs), tkp = round16(p->tk);
    const int n = (int)(p->tk - g * NR < NR ? p->tk - g * NR : NR);
    x->kt->attn_pack_k16(x->kp + ((int64_t)kvh * (tkp / NR) + g) * hs * NR, x->k + g * NR * p->ldk + (int64_t)kvh * k_head(p),
                         p->ldk, n, hs);
    for (int64_t pd = 0; pd < hsp / NR; pd++) {
        float *vdst = x->vp + ((int64_t)kvh * (hsp / NR) + pd) * tkp * NR + g * NR * NR;
        size_t nd = (size_t)(hs - pd * NR < NR ? hs - pd * NR : NR);
        for (int jj = 0; jj < NR; jj++, vdst += NR) {
            if (jj < n) {
                /* A fixed-size copy of whole 16-float rows compiles to vector moves. */
                const float *vr = x->v + (g * NR + jj) * p->ldv + (int64_t)kvh * v_head(p) + pd * NR;
                if (nd == NR) {
                    memcpy(vdst, vr, sizeof(float) * NR);
                    continue;
                }
                memcpy(vdst, vr, sizeof(float) * nd);
                memset(vdst + nd, 0, sizeof(float) * (NR - nd));
            } else {
                memset(vdst, 0, sizeof(float) * NR);
            }
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

static void attn_tile(attn_ctx *x, float *work, int h, int64_t q0) {
    const eft__attn_params *p = x->p;
    const eft__kernels *kt = x->kt;
    const int64_t hs = p->hs, hsp = round16(hs), tkp = round16(p->tk), kvlen = eff_kv_len(p);
    const int kvh = h / (p->nh / p->nkv);
    const int nq = (int)(p->t - q0 < BQ ? p->t - q0 : BQ);
    float *S = work, *O = S + BQ * BK, *mrow = O + BQ * hsp, *lrow = mrow + BQ;
    int32_t *rlo = (int32_t *)(lrow + BQ), *rhi = rlo + BQ; /* visible keys of row i, then of row i in the key tile */
    int64_t alo[BQ], ahi[BQ];
    memset(O, 0, sizeof(float) * (size_t)nq * hsp);

    /* Keys any row of this tile can see: [jlo, jhi), jlo rounded down to a panel boundary. */
    int64_t jlo = INT64_MAX, jhi = 0;
    for (int i = 0; i < nq; i++) {
        mrow[i] = -INFINITY, lrow[i] = 0;
        visible_range(p, kvlen, q0 + i, &alo[i], &ahi[i]);
        if (ahi[i] <= alo[i]) alo[i] = ahi[i] = 0;
        else {
            if (alo[i] < jlo) jlo = alo[i];
            if (ahi[i] > jhi) jhi = ahi[i];
        }
    }
    jlo = jhi > 0 ? jlo / NR * NR : 0;
    const float *qh = x->q + q0 * p->ldq + (int64_t)h * hs;
    /* This tile's query rows and output rows are strided slices of arrays far larger than the
     * caches (the encoder's fused QKV output is 18 MiB for 32 x 128 tokens): ask for all of them
     * now, so their misses overlap instead of stalling the first products one by one. */
    for (int i = 0; i < nq; i++)
        for (int64_t d = 0; d < hs; d += 16) {
            __builtin_prefetch(qh + i * p->ldq + d, 0, 3);
            __builtin_prefetch(x->out + (q0 + i) * p->ldo + (int64_t)h * hs + d, 1, 3);
        }
    const float *kph = x->kp + (int64_t)kvh * (tkp / NR) * hs * NR;
    const float *vph = x->vp + (int64_t)kvh * (hsp / NR) * tkp * NR;
    for (int64_t j0 = jlo; j0 < jhi; j0 += BK) {
        const int64_t nk = jhi - j0 < BK ? jhi - j0 : BK;
        bool whole = true; /* every row sees every key of the tile: the softmax skips its range checks */
        for (int i = 0; i < nq; i++) {
            int64_t a = alo[i] > j0 ? alo[i] - j0 : 0, b = ahi[i] < j0 + nk ? ahi[i] - j0 : nk;
            if (b < a) b = a;
            rlo[i] = (int32_t)a, rhi[i] = (int32_t)b;
            whole = whole && a == 0 && b == nk;
        }
        /* S = Q K^T, each block of MR rows only up to the last 16-key panel any of them sees (the
         * causal diagonal); the softmax never reads a hidden score, so the rest may stay stale. */
        for (int i = 0; i < nq; i += MR) {
            int mr = nq - i < MR ? nq - i : MR;
            int64_t top = 0;
            for (int ii = i; ii < i + mr; ii++) top = rhi[ii] > top ? rhi[ii] : top;
            for (int64_t pk = 0; pk < round16(top) / NR; pk++)
                kt->sgemm_ukernel(S + i * BK + pk * NR, BK, qh + i * p->ldq, p->ldq, kph + (j0 / NR + pk) * hs * NR, hs,
                                  mr, NR, NULL, false);
        }
        kt->attn_softmax(S, BK, nq, nk, whole ? NULL : rlo, whole ? NULL : rhi, p->key_mask ? p->key_mask + j0 : NULL,
                         p->scale, p->softcap, mrow, lrow, O, hsp, hsp);
        /* O += P V over the keys each row block sees (P is 0 past them). */
        for (int i = 0; i < nq; i += MR) {
            int mr = nq - i < MR ? nq - i : MR;
            int64_t top = 0;
            for (int ii = i; ii < i + mr; ii++) top = rhi[ii] > top ? rhi[ii] : top;
            if (!top) continue;
            for (int64_t pd = 0; pd < hsp / NR; pd++)
                kt->sgemm_ukernel(O + i * hsp + pd * NR, hsp, S + i * BK, BK, vph + pd * tkp * NR + j0 * NR, round16(top),
                                  mr, NR, NULL, true);
        }
    }
    for (int i = 0; i < nq; i++) {
        float *o = x->out + (q0 + i) * p->ldo + (int64_t)h * hs;
        memcpy(o, O + i * hsp, sizeof(float) * (size_t)hs);
        kt->scale_f32(o, lrow[i] > 0 ? 1.0f / lrow[i] : 0.0f, hs);
    }
}

/* Asks for the K and V rows of key group g (all heads): packing is a pure stream through memory,
 * and without this each of its loads waits for DRAM in turn. */
static void prefetch_rows(const attn_ctx *x, int64_t g) {
    const eft__attn_params *p = x->p;
    for (int64_t j = g * NR; j < (g + 1) * NR && j < p->tk; j++)
        for (int h = 0; h < p->nkv; h++)
            for (int64_t d = 0; d < p->hs; d += 16) {
                __builtin_prefetch(x->k + j * p->ldk + h * k_head(p) + d, 0, 3);
                __builtin_prefetch(x->v + j * p->ldv + h * v_head(p) + d, 0, 3);
            }
}

static void attn_task(void *arg, int ith, int nth) {
    attn_ctx *x = arg;
    const eft__attn_params *p = x->p;
    int64_t groups = round16(p->tk) / NR, b, e;
    eft__split_range(groups * p->nkv, ith, nth, &b, &e);
    /* Heads vary fastest, so each worker reads whole K and V rows front to back (one stream the
     * hardware prefetcher follows) rather than one head's column of them. */
    for (int64_t it = b; it < e; it++) {
        if (it % p->nkv == 0) prefetch_rows(x, it / p->nkv + 2);
        pack_group(x, (int)(it % p->nkv), it / p->nkv);
    }
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
                const float *kj = k + j * p->ldk + (int64_t)kvh * k_head(p);
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
                    if (s[j] != 0.0) acc += s[j] * v[j * p->ldv + (int64_t)kvh * v_head(p) + e];
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

/* Per worker: its partial results, one (o[hs], max, sum) per query row and head in PS floats, then
 * the scores of one KV head's g queries over the worker's keys. */
static inline int64_t part_stride(const eft__attn_params *p) { return round16(p->hs) + 16; }

size_t eft__attention_decode_work_floats(const eft__attn_params *p) {
    int64_t g = p->nkv > 0 && p->nh >= p->nkv ? p->nh / p->nkv : 1, t = p->t > 0 ? p->t : 1;
    return (size_t)(t * p->nh * part_stride(p) + g * round16(p->tk > 0 ? p->tk : 1));
}

typedef struct dec_ctx {
    const eft__kernels *kt;
    float *out, *work;
    const float *q;
    const eft__kv_view *k, *v;
    const eft__attn_params *p;
} dec_ctx;

/* The keys any row of p can see: past the last row's position (causal) or the cache length none
 * is visible. */
static int64_t visible_keys(const eft__attn_params *p) {
    const int64_t kvlen = eff_kv_len(p);
    int64_t tk = p->tk < kvlen ? p->tk : kvlen;
    if (p->causal && p->q_pos0 + p->t < tk) tk = p->q_pos0 + p->t;
    return tk < 0 ? 0 : tk;
}

/* Query row i's g heads of KV head kvh against keys j0 .. j0+n: the table's attn_dec_qk and
 * attn_dec_pv over the g heads at once, leaving per head (o unnormalised, max, sum) in pg (PS
 * floats apart). s: scratch for g rows of lds >= n scores. An int8 cache's row scales are applied
 * around the kernels: to the scores after qk (s_j = scale_k,j (q . k_j)), and to the probabilities
 * before pv (p_j scale_v,j), as the per-row products would.
 * The g heads share query row i, so they see the same keys: without a key mask those are one
 * range (causal limit, sliding window, cache length), and the products, the scaling and the
 * softmax run over that range alone, with the table's vector loops; a key mask takes the general
 * per-key path. */
static void dec_block(const eft__kernels *kt, const dec_ctx *x, int64_t i, int kvh, int64_t j0, int64_t n, float *pg,
                      float *s, int64_t lds) {
    const eft__attn_params *p = x->p;
    const eft__kv_view *kv = x->k, *vv = x->v;
    const int g = p->nh / p->nkv, hs = p->hs;
    const int64_t kvlen = eff_kv_len(p), PS = part_stride(p);
    for (int r = 0; r < g; r++) {
        memset(pg + r * PS, 0, sizeof(float) * (size_t)hs);
        pg[r * PS + hs] = -INFINITY, pg[r * PS + hs + 1] = 0;
    }
    int64_t lo = 0, hi = n;
    if (!p->key_mask) {
        int64_t vlo, vhi;
        visible_range(p, kvlen, i, &vlo, &vhi);
        lo = vlo > j0 ? vlo - j0 : 0;
        hi = vhi - j0 < n ? vhi - j0 : n;
    }
    if (hi <= lo) return;
    const int64_t nn = hi - lo, jl = j0 + lo;
    const int64_t kh = kv->ld_head > 0 ? kv->ld_head : hs, vh = vv->ld_head > 0 ? vv->ld_head : hs;
    const int64_t ksh = kv->ld_scale_head > 0 ? kv->ld_scale_head : 1, vsh = vv->ld_scale_head > 0 ? vv->ld_scale_head : 1;
    kt->attn_dec_qk(s, lds, x->q + i * p->ldq + (int64_t)kvh * g * hs, hs, g,
                    (const char *)kv->data + (size_t)(jl * kv->ld + kvh * kh) * kv_elem_size(kv->dtype),
                    kv->dtype, kv->ld, nn, hs);
    for (int r = 0; r < g; r++) {
        float *row = s + r * lds, mx = -INFINITY;
        if (!p->key_mask) {
            if (kv->dtype == EFT_DTYPE_I8)
                for (int64_t jj = 0; jj < nn; jj++) row[jj] *= kv->scale[(jl + jj) * kv->ld_scale + kvh * ksh];
            kt->scale_f32(row, p->scale, nn);
            if (p->softcap > 0)
                for (int64_t jj = 0; jj < nn; jj++) row[jj] = p->softcap * tanhf(row[jj] / p->softcap);
            mx = kt->max_f32(row, nn);
        } else {
            for (int64_t jj = 0; jj < nn; jj++) {
                float sc = -INFINITY;
                if (visible(p, kvlen, i, jl + jj)) {
                    sc = row[jj];
                    if (kv->dtype == EFT_DTYPE_I8) sc *= kv->scale[(jl + jj) * kv->ld_scale + kvh * ksh];
                    sc *= p->scale;
                    if (p->softcap > 0) sc = p->softcap * tanhf(sc / p->softcap);
                }
                row[jj] = sc;
                mx = sc > mx ? sc : mx;
            }
        }
        if (mx == -INFINITY) {
            memset(row, 0, sizeof(float) * (size_t)nn); /* nothing visible here: adds nothing */
            continue;
        }
        pg[r * PS + hs] = mx;
        pg[r * PS + hs + 1] = kt->exp_sub_sum(row, nn, mx);
        if (vv->dtype == EFT_DTYPE_I8)
            for (int64_t jj = 0; jj < nn; jj++) row[jj] *= vv->scale[(jl + jj) * vv->ld_scale + kvh * vsh];
    }
    kt->attn_dec_pv(pg, PS, s, lds, g,
                    (const char *)vv->data + (size_t)(jl * vv->ld + kvh * vh) * kv_elem_size(vv->dtype),
                    vv->dtype, vv->ld, nn, hs);
}

/* Flash-decoding. Each worker takes a slice of the keys (whole 16-key blocks) for every query row
 * and head, and per KV head runs dec_block over its g query heads at once; the caller merges the
 * workers' slices. Splitting the keys rather than the heads keeps two workers even with three KV
 * heads (SmolLM2) and reads each key once per KV head instead of once per query head. */
enum { MAX_SPLIT = 64 }; /* workers one cache is split over (merge cost grows with them) */

static void dec_flash_task(void *arg, int ith, int nth) {
    dec_ctx *x = arg;
    if (nth > MAX_SPLIT) nth = MAX_SPLIT;
    if (ith >= nth) return;
    const eft__attn_params *p = x->p;
    const int g = p->nh / p->nkv;
    const int64_t PS = part_stride(p), tk = visible_keys(p);
    int64_t b0, b1;
    eft__split_range((tk + 15) / 16, ith, nth, &b0, &b1);
    const int64_t j0 = b0 * 16, j1 = b1 * 16 < tk ? b1 * 16 : tk, n = j1 > j0 ? j1 - j0 : 0, lds = round16(n > 0 ? n : 1);
    float *part = x->work + (size_t)ith * eft__attention_decode_work_floats(p), *s = part + p->t * p->nh * PS;
    for (int64_t i = 0; i < p->t; i++)
        for (int kvh = 0; kvh < p->nkv; kvh++) dec_block(x->kt, x, i, kvh, j0, n, part + (i * p->nh + (int64_t)kvh * g) * PS, s, lds);
}

/* out[i, h] from nparts partials (o, max, sum) of row i, head h, PS floats apart per head. */
static void dec_merge(float *o, const float *const *parts, int nparts, int hs) {
    if (nparts == 1) {
        /* Its own weight is exp(0) = 1: the same values as the general loop, without it. */
        const float *pt = parts[0];
        if (pt[hs] == -INFINITY) {
            memset(o, 0, sizeof(float) * (size_t)hs);
            return;
        }
        const float inv = 1.0f / pt[hs + 1];
        for (int e = 0; e < hs; e++) o[e] = pt[e] * inv;
        return;
    }
    float mx = -INFINITY, l = 0;
    for (int t = 0; t < nparts; t++) mx = parts[t][hs] > mx ? parts[t][hs] : mx;
    memset(o, 0, sizeof(float) * (size_t)hs);
    if (mx == -INFINITY) return; /* no visible key: zeros, as the prefill kernel does */
    for (int t = 0; t < nparts; t++) {
        const float *pt = parts[t];
        if (pt[hs] == -INFINITY) continue;
        float c = expf(pt[hs] - mx);
        l += c * pt[hs + 1];
        for (int e = 0; e < hs; e++) o[e] += c * pt[e];
    }
    float inv = 1.0f / l;
    for (int e = 0; e < hs; e++) o[e] *= inv;
}

typedef struct dec_batch_ctx {
    const eft__kernels *kt;
    const eft__attn_dec_item *items;
    int n;
    float *work;
    size_t work_floats;
    _Atomic int next; /* the next unit to take */
} dec_batch_ctx;

static void dec_batch_task(void *arg, int ith, int nth) {
    (void)nth;
    dec_batch_ctx *b = arg;
    float *part = b->work + (size_t)ith * b->work_floats;
    for (;;) {
        int u = atomic_fetch_add_explicit(&b->next, 1, memory_order_relaxed);
        int it = 0;
        for (; it < b->n; it++) {
            int units = b->items[it].p.t * b->items[it].p.nkv;
            if (u < units) break;
            u -= units;
        }
        if (it >= b->n) return;
        const eft__attn_dec_item *item = &b->items[it];
        const eft__attn_params *p = &item->p;
        const int g = p->nh / p->nkv, i = u / p->nkv, kvh = u % p->nkv;
        const int64_t PS = part_stride(p), tk = visible_keys(p);
        dec_ctx x = {b->kt, item->out, NULL, item->q, &item->k, &item->v, p};
        dec_block(b->kt, &x, i, kvh, 0, tk, part, part + g * PS, round16(tk > 0 ? tk : 1));
        for (int r = 0; r < g; r++) {
            const float *pr = part + r * PS;
            dec_merge(item->out + i * p->ldo + ((int64_t)kvh * g + r) * p->hs, &pr, 1, p->hs);
        }
    }
}

void eft__attention_decode_batch(const eft__kernels *kt, eft__threadpool *tp, const eft__attn_dec_item *items, int n,
                                 float *work, size_t work_floats) {
    for (int i = 0; i < n; i++)
        if (items[i].p.t <= 0 || items[i].p.nh <= 0 || items[i].p.nkv <= 0 || items[i].p.nh % items[i].p.nkv) return;
    dec_batch_ctx b = {kt ? kt : eft__kernels_get(), items, n, work, work_floats, 0};
    if (tp && eft__threadpool_size(tp) > 1) eft__threadpool_run(tp, dec_batch_task, &b);
    else dec_batch_task(&b, 0, 1);
}

void eft__attention_decode(const eft__kernels *kt, eft__threadpool *tp, float *out, const float *q,
                           const eft__kv_view *k, const eft__kv_view *v, const eft__attn_params *p, float *work) {
    if (p->t <= 0 || p->nh <= 0) return;
    dec_ctx x = {kt ? kt : eft__kernels_get(), out, work, q, k, v, p};
    /* Query heads share KV heads in equal groups (the model configuration is checked so). */
    if (p->nkv <= 0 || p->nh % p->nkv != 0) return;
    /* A short cache is not worth a dispatch: one worker, the caller. */
    int nth = tp && p->tk >= 64 ? eft__threadpool_size(tp) : 1;
    if (nth > 1) eft__threadpool_run(tp, dec_flash_task, &x);
    else dec_flash_task(&x, 0, 1);
    const int64_t PS = part_stride(p), WF = (int64_t)eft__attention_decode_work_floats(p);
    const float *parts[MAX_SPLIT];
    if (nth > MAX_SPLIT) nth = MAX_SPLIT;
    for (int64_t i = 0; i < p->t; i++)
        for (int h = 0; h < p->nh; h++) {
            for (int th = 0; th < nth; th++) parts[th] = work + th * WF + (i * p->nh + h) * PS;
            dec_merge(out + i * p->ldo + (int64_t)h * p->hs, parts, nth, p->hs);
        }
}
