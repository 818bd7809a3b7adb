/*
 * qx4.c — the four-row interleaved decode layout of Q4_0, Q4_1 and Q8_0 weights (kernels.h
 * describes it), the scalar reference of its int8-activation GEMV, and the thread-pool driver.
 *
 * Why a second layout: decode reads every weight once per token, so it is bound by memory, but the
 * GGUF row layout makes the int8 kernel pay per row and block for a horizontal reduction and a
 * scalar scale (about 15 instructions per 32 weights, compute-bound near 8 GB/s on two cores).
 * Interleaving four rows lets one vpmaddubsw serve four rows and one multiply scale them, about a
 * quarter of the work per weight. The decoder repacks every Q4_0/Q4_1/Q8_0 matrix into this form at
 * open: int8 activations always read it, f32 activations at one-token steps (as three int8 planes,
 * eft__qx4_gemm_f32); batches and prefill with f32 activations keep reading the file layout.
 */
#include <math.h>
#include <string.h>

#include "core/quant.h"
#include "kernels.h"

static size_t x4_block_bytes(eft_dtype t) {
    switch (t) {
    case EFT_DTYPE_Q4_0: return sizeof(eft__block_q4_0x4);
    case EFT_DTYPE_Q4_1: return sizeof(eft__block_q4_1x4);
    case EFT_DTYPE_Q8_0: return sizeof(eft__block_q8_0x4);
    default: return 0;
    }
}

static size_t src_block_bytes(eft_dtype t) {
    switch (t) {
    case EFT_DTYPE_Q4_0: return sizeof(eft__block_q4_0);
    case EFT_DTYPE_Q4_1: return sizeof(eft__block_q4_1);
    case EFT_DTYPE_Q8_0: return sizeof(eft__block_q8_0);
    default: return 0;
    }
}

size_t eft__qx4_size(eft_dtype wtype, int64_t n, int64_t k) {
    size_t bb = x4_block_bytes(wtype);
    if (bb == 0 || n <= 0 || k <= 0 || k % EFT__QK != 0) return 0;
    return (size_t)((n + 3) / 4) * (size_t)(k / EFT__QK) * bb;
}

/* Byte position, within its 32-byte vector v, of element e (0..31) of row r (0..3). */
static inline int x4_pos(int r, int e, int *v) {
    int t = e & 3, l = e < 16 ? r : r + 4;
    *v = (e & 15) >> 2;
    return 4 * l + t;
}

/* Row r's 32 quants of one block as bytes in element order (Q8_0 as they are; the 4-bit types'
 * nibbles split with word operations: low nibbles are elements 0-15, high ones 16-31). */
static void row_quants(uint8_t q[EFT__QK], eft_dtype t, const uint8_t *blk) {
    if (t == EFT_DTYPE_Q8_0) {
        memcpy(q, ((const eft__block_q8_0 *)blk)->qs, EFT__QK);
        return;
    }
    const uint8_t *qs = t == EFT_DTYPE_Q4_0 ? ((const eft__block_q4_0 *)blk)->qs : ((const eft__block_q4_1 *)blk)->qs;
    const uint64_t lo = 0x0f0f0f0f0f0f0f0full;
    for (int h = 0; h < 2; h++) {
        uint64_t v;
        memcpy(&v, qs + 8 * h, 8);
        uint64_t a = v & lo, b = (v >> 4) & lo;
        memcpy(q + 8 * h, &a, 8);
        memcpy(q + 16 + 8 * h, &b, 8);
    }
}

/* The layout is a 4 x 8 transpose of 4-byte words: word l of vector v is word v (l < 4) or 4 + v
 * (l >= 4) of row l % 4's quants, so packing moves words (eft__qx4_pack runs at load time, over the
 * whole model: SmolLM2's 97 MB). The 4-bit vectors' bytes are below 16, so v0 | v1 << 4 on 64-bit
 * words puts vector 1 in the high nibbles without carries between bytes. */
bool eft__qx4_pack(void *out, eft_dtype wtype, const void *w, size_t row_bytes, int64_t n, int64_t k) {
    size_t total = eft__qx4_size(wtype, n, k);
    if (total == 0) return false;
    const size_t bb = x4_block_bytes(wtype), sb = src_block_bytes(wtype);
    const int64_t nb = k / EFT__QK, ng = (n + 3) / 4;
    for (int64_t g = 0; g < ng; g++)
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *o = (uint8_t *)out + ((size_t)g * (size_t)nb + (size_t)b) * bb;
            uint8_t q[4][EFT__QK], vec[4][32];
            memset(o, 0, bb < 16 ? bb : 16); /* scales (and minima) of padding rows */
            for (int r = 0; r < 4; r++) {
                if (4 * g + r >= n) {
                    memset(q[r], 0, EFT__QK);
                    continue;
                }
                const uint8_t *blk = (const uint8_t *)w + (size_t)(4 * g + r) * row_bytes + (size_t)b * sb;
                row_quants(q[r], wtype, blk);
                memcpy(o + 2 * r, blk, 2); /* d: the first field of every source block */
                if (wtype == EFT_DTYPE_Q4_1) memcpy(o + 8 + 2 * r, blk + 2, 2);
            }
            for (int v = 0; v < 4; v++)
                for (int l = 0; l < 8; l++) memcpy(vec[v] + 4 * l, q[l % 4] + 4 * (l < 4 ? v : 4 + v), 4);
            uint8_t *qs = o + (wtype == EFT_DTYPE_Q4_1 ? 16 : 8);
            if (wtype == EFT_DTYPE_Q8_0) {
                memcpy(qs, vec, sizeof vec);
                continue;
            }
            for (int h = 0; h < 2; h++)
                for (int x = 0; x < 32; x += 8) {
                    uint64_t a, c;
                    memcpy(&a, vec[2 * h] + x, 8);
                    memcpy(&c, vec[2 * h + 1] + x, 8);
                    a |= c << 4;
                    memcpy(qs + 32 * h + x, &a, 8);
                }
        }
    return true;
}

/* Quant e of row r (0..3) of one interleaved block. */
static inline int x4_quant(eft_dtype wtype, const uint8_t *blk, int r, int e) {
    int v, p = x4_pos(r, e, &v);
    if (wtype == EFT_DTYPE_Q8_0) return ((const eft__block_q8_0x4 *)blk)->qs[32 * v + p];
    const uint8_t *qs = wtype == EFT_DTYPE_Q4_1 ? ((const eft__block_q4_1x4 *)blk)->qs : ((const eft__block_q4_0x4 *)blk)->qs;
    return (qs[32 * (v >> 1) + p] >> (4 * (v & 1))) & 15;
}

void eft__qx4_dequantize_row(float *out, eft_dtype wtype, const void *x4, int64_t r, int64_t k) {
    const size_t bb = x4_block_bytes(wtype);
    const int64_t nb = k / EFT__QK, g = r / 4;
    const int rr = (int)(r % 4);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = (const uint8_t *)x4 + ((size_t)g * (size_t)nb + (size_t)b) * bb;
        const eft__half *dh = (const eft__half *)blk; /* d[4] leads every form */
        float d = eft__f16_to_f32(dh[rr]);
        float m = wtype == EFT_DTYPE_Q4_1 ? eft__f16_to_f32(((const eft__block_q4_1x4 *)blk)->m[rr]) : 0.0f;
        for (int e = 0; e < EFT__QK; e++) {
            int q = x4_quant(wtype, blk, rr, e);
            /* The source dequantizer's arithmetic: d (q - 8), d q + m, d q. */
            out[b * EFT__QK + e] = wtype == EFT_DTYPE_Q4_0 ? d * (float)(q - 8)
                                   : wtype == EFT_DTYPE_Q4_1 ? d * (float)q + m
                                                             : d * (float)q;
        }
    }
}

/* Quant e (0..31) of an interleaved activation block: vector (e % 16) / 4, lane 0 (e < 16) or 4. */
static inline int a_quant(const eft__block_q8_x4a *b, int e) { return b->qs[(e & 15) >> 2][(e < 16 ? 0 : 16) + (e & 3)]; }

/* Block quants q[0..31] into the interleaved places the kernels read. */
static void put_quants(eft__block_q8_x4a *b, const int8_t q[EFT__QK]) {
    for (int v = 0; v < 4; v++)
        for (int l = 0; l < 8; l++) memcpy(&b->qs[v][4 * l], q + (l < 4 ? 0 : 16) + 4 * v, 4);
}

static void quantize_row_q8_x4a(eft__block_q8_x4a *out, const float *x, int64_t n) {
    for (int64_t b = 0; b < n / EFT__QK; b++, x += EFT__QK) {
        float amax = 0;
        for (int i = 0; i < EFT__QK; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int32_t sum = 0;
        int8_t q[EFT__QK];
        for (int i = 0; i < EFT__QK; i++) {
            /* Half to even, as the vector conversion rounds: every ISA makes the same integers. */
            int v = (int)nearbyintf(x[i] * id);
            q[i] = (int8_t)v;
            sum += v;
        }
        put_quants(&out[b], q);
        out[b].d = d;
        out[b].ds = d * (float)sum;
    }
}

/* v rounded half to even and held to [-127, 127], as the AVX2 version's conversion and clamp give
 * it: there NaN and |v| >= 2^31 convert to INT_MIN, so they are -127 here too. */
static inline int level127(float v) {
    if (!(fabsf(v) < 2147483648.0f)) return -127;
    int q = (int)nearbyintf(v);
    return q > 127 ? 127 : q < -127 ? -127 : q;
}

/* The AVX2 version does the same operations in the same order: products and differences rounded
 * separately (this file is built without -mfma, so nothing fuses), the scales' powers of two exact. */
static void quantize_row_q8_x4a_x3(eft__block_q8_x4a *out, const float *x, int64_t n, int64_t ld) {
    for (int64_t b = 0; b < n / EFT__QK; b++, x += EFT__QK) {
        float amax = 0;
        for (int i = 0; i < EFT__QK; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f, d8 = d * (1.0f / 256);
        int32_t sum = 0;
        int8_t q[3][EFT__QK];
        for (int i = 0; i < EFT__QK; i++) {
            int q1 = (int)nearbyintf(x[i] * id);
            float r1 = x[i] - d * (float)q1;
            int q2 = level127((r1 * id) * 256.0f);
            float r2 = r1 - d8 * (float)q2;
            int q3 = level127((r2 * id) * 32768.0f);
            q[0][i] = (int8_t)q1, q[1][i] = (int8_t)q2, q[2][i] = (int8_t)q3;
            sum += q1 * 32768 + q2 * 128 + q3;
        }
        for (int p = 0; p < 3; p++) {
            put_quants(&out[p * ld + b], q[p]);
            out[p * ld + b].d = out[p * ld + b].ds = 0;
        }
        out[b].d = d * (1.0f / 32768);
        out[b].ds = out[b].d * (float)sum;
    }
}

/* The scalar reference: per block, the exact integer dot of each row with the activation quants
 * (three planes: with q1 2^15 + q2 2^7 + q3), then d_w d_a s, plus Q4_1's m_w d_a sum_a (Q4_0:
 * -8 d_w d_a sum_a), summed in f32 over blocks. */
static void qx4_gemv(float *c, int64_t ldc, const eft__block_q8_x4a *a, int64_t lda, int m, int planes, eft_dtype wtype,
                     const void *w, int64_t ngroups, int64_t nb, int64_t nrows, const float *bias) {
    const size_t bb = x4_block_bytes(wtype);
    if (bb == 0 || (planes != 1 && planes != 3)) return;
    for (int64_t g = 0; g < ngroups; g++)
        for (int i = 0; i < m; i++) {
            float acc[4] = {0, 0, 0, 0};
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = (const uint8_t *)w + ((size_t)g * (size_t)nb + (size_t)b) * bb;
                const eft__block_q8_x4a *ab = &a[(int64_t)i * planes * lda + b];
                const eft__half *dh = (const eft__half *)blk;
                for (int r = 0; r < 4; r++) {
                    int64_t s = 0;
                    for (int e = 0; e < EFT__QK; e++) {
                        int aq = a_quant(ab, e);
                        if (planes == 3) aq = aq * 32768 + a_quant(ab + lda, e) * 128 + a_quant(ab + 2 * lda, e);
                        s += (int64_t)x4_quant(wtype, blk, r, e) * aq;
                    }
                    float d = eft__f16_to_f32(dh[r]);
                    acc[r] += d * ab->d * (float)s;
                    if (wtype == EFT_DTYPE_Q4_1) acc[r] += eft__f16_to_f32(((const eft__block_q4_1x4 *)blk)->m[r]) * ab->ds;
                    else if (wtype == EFT_DTYPE_Q4_0) acc[r] += -8.0f * d * ab->ds;
                }
            }
            for (int r = 0; r < 4; r++) {
                int64_t j = 4 * g + r;
                if (j < nrows) c[i * ldc + j] = bias ? acc[r] + bias[j] : acc[r];
            }
        }
}

void eft__kernels_fill_qx4_scalar(eft__kernels *k) {
    k->qx4_gemv = qx4_gemv;
    k->quantize_row_q8_x4a = quantize_row_q8_x4a;
    k->quantize_row_q8_x4a_x3 = quantize_row_q8_x4a_x3;
}

/* ---------------------------------------------------------------------------------------------
 * Driver
 * ------------------------------------------------------------------------------------------- */

size_t eft__qx4_work_size(int64_t m, int64_t k) {
    return (size_t)(m > 0 ? m : 0) * (size_t)(k / EFT__QK) * sizeof(eft__block_q8_x4a);
}

enum { F32_PLANES = 3 };

size_t eft__qx4_f32_work_size(int64_t m, int64_t k) {
    return F32_PLANES * eft__qx4_work_size(m, k);
}

/* Activation rows per kernel call: their quantised blocks (m x k/32 x 136 bytes) stay in L2 while
 * the worker's weight groups pass, and each group's rows stay in L1 while the rows pass. */
enum { ROWS_PER_CALL = 16 };
/* Up to this many activation floats are quantised by the caller before the run (a few hundred
 * nanoseconds); more are split over the workers, which then meet at a barrier. */
enum { QUANTISE_IN_CALLER = 16384 };

typedef struct qx4_ctx {
    const eft__kernels *kt;
    eft__threadpool *tp;
    const float *a;
    int64_t lda, m, k;
    const eft__qx4_job *jobs;
    int njobs;
    int64_t groups; /* all jobs' row groups together */
    eft__block_q8_x4a *qa;
    bool quantise;  /* the workers quantise a (else the caller did) */
    int planes;     /* 1: int8 activations; 3: f32 activations as three int8 planes */
} qx4_ctx;

/* Row i of a as planes int8 rows (plane-major within the row). */
static void quantise_rows(const qx4_ctx *x, int64_t r0, int64_t r1) {
    const int64_t nb = x->k / EFT__QK;
    for (int64_t i = r0; i < r1; i++) {
        eft__block_q8_x4a *q = x->qa + i * x->planes * nb;
        if (x->planes == 3) x->kt->quantize_row_q8_x4a_x3(q, x->a + i * x->lda, x->k, nb);
        else x->kt->quantize_row_q8_x4a(q, x->a + i * x->lda, x->k);
    }
}

static void qx4_task(void *p, int ith, int nth) {
    const qx4_ctx *x = p;
    const int64_t nb = x->k / EFT__QK;
    int64_t g0, g1;
    if (x->quantise) {
        eft__split_range(x->m, ith, nth, &g0, &g1);
        quantise_rows(x, g0, g1);
        if (x->tp) eft__threadpool_barrier(x->tp);
    }
    eft__split_range(x->groups, ith, nth, &g0, &g1);
    for (int64_t i0 = 0; i0 < x->m; i0 += ROWS_PER_CALL) {
        int mc = (int)(x->m - i0 < ROWS_PER_CALL ? x->m - i0 : ROWS_PER_CALL);
        int64_t base = 0;
        for (int t = 0; t < x->njobs && base < g1; t++) {
            const eft__qx4_job *jb = &x->jobs[t];
            int64_t ng = (jb->n + 3) / 4;
            int64_t a0 = g0 > base ? g0 - base : 0, a1 = g1 - base < ng ? g1 - base : ng;
            base += ng;
            if (a0 >= a1) continue;
            size_t off = (size_t)a0 * (size_t)nb * x4_block_bytes(jb->wtype);
            x->kt->qx4_gemv(jb->c + i0 * jb->ldc + 4 * a0, jb->ldc, x->qa + i0 * x->planes * nb, nb, mc, x->planes, jb->wtype,
                            (const uint8_t *)jb->w + off, a1 - a0, nb, jb->n - 4 * a0, jb->bias ? jb->bias + 4 * a0 : NULL);
        }
    }
}

static bool drive(const eft__kernels *kt, eft__threadpool *tp, const float *a, int64_t lda, int64_t m, int64_t k,
                  const eft__qx4_job *jobs, int njobs, void *work, int planes) {
    if (k <= 0 || k % EFT__QK != 0 || njobs < 0) return false;
    int64_t groups = 0;
    for (int t = 0; t < njobs; t++) {
        if (x4_block_bytes(jobs[t].wtype) == 0) return false;
        if (jobs[t].n > 0) groups += (jobs[t].n + 3) / 4;
    }
    if (m <= 0 || groups == 0) return true;
    if (!work) return false;
    bool pool = tp && eft__threadpool_size(tp) > 1;
    qx4_ctx x = {kt ? kt : eft__kernels_get(), pool ? tp : NULL, a, lda, m, k, jobs, njobs, groups, work, false, planes};
    if (pool && m * k > QUANTISE_IN_CALLER) x.quantise = true;
    else quantise_rows(&x, 0, m);
    if (pool) eft__threadpool_run(tp, qx4_task, &x);
    else qx4_task(&x, 0, 1);
    return true;
}

bool eft__qx4_gemm_multi(const eft__kernels *kt, eft__threadpool *tp, const float *a, int64_t lda, int64_t m,
                         int64_t k, const eft__qx4_job *jobs, int njobs, void *work) {
    return drive(kt, tp, a, lda, m, k, jobs, njobs, work, 1);
}

bool eft__qx4_gemm_f32_multi(const eft__kernels *kt, eft__threadpool *tp, const float *a, int64_t lda, int64_t m,
                             int64_t k, const eft__qx4_job *jobs, int njobs, void *work) {
    return drive(kt, tp, a, lda, m, k, jobs, njobs, work, F32_PLANES);
}

bool eft__qx4_gemm_f32(const eft__kernels *kt, eft__threadpool *tp, float *c, int64_t ldc, const float *a,
                       int64_t lda, int64_t m, eft_dtype wtype, const void *w, int64_t n, int64_t k,
                       const float *bias, void *work) {
    eft__qx4_job job = {c, ldc, wtype, w, n, bias};
    return drive(kt, tp, a, lda, m, k, &job, 1, work, F32_PLANES);
}

bool eft__qx4_gemm(const eft__kernels *kt, eft__threadpool *tp, float *c, int64_t ldc, const float *a, int64_t lda,
                   int64_t m, eft_dtype wtype, const void *w, int64_t n, int64_t k, const float *bias, void *work) {
    eft__qx4_job job = {c, ldc, wtype, w, n, bias};
    return eft__qx4_gemm_multi(kt, tp, a, lda, m, k, &job, 1, work);
}
