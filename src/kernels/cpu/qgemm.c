/*
 * qgemm.c — int8 and int4 weights: GGUF Q8_0 rows (blocks of 32 int8 with an f16 scale) times
 * f32 activations quantised on the fly to int8 blocks with an f32 scale. The product of two int8
 * vectors runs on integer multiply-add instructions, four times denser than f32 FMAs, and the
 * weights stream at one byte per element plus 2/32 for the scale. The 4-bit GGUF blocks (Q4_0,
 * Q4_1) take the same path with their nibbles unpacked in registers. Holds the quantisers, the
 * scalar dots, the thread-pool driver for GEMV (decode, 1-8 rows) and GEMM (prefill).
 * The second half keeps the activations in f32 (eft__qgemm_f32): each weight is widened exactly as
 * the reference dequantizer widens it, so the product is "dequantise, then an f32 GEMM" up to the
 * order of the sums, which is what the reference implementation computes from a GGUF file.
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "core/quant.h"
#include "kernels.h"

void eft__quantize_q8_0(eft__block_q8_0 *out, const float *w, int64_t n, int64_t k) {
    int64_t nb = k / EFT__QK;
    for (int64_t r = 0; r < n; r++)
        for (int64_t b = 0; b < nb; b++) {
            const float *x = w + r * k + b * EFT__QK;
            eft__block_q8_0 *o = &out[r * nb + b];
            float amax = 0;
            for (int i = 0; i < EFT__QK; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
            float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            o->d = eft__f32_to_f16(d);
            for (int i = 0; i < EFT__QK; i++) o->qs[i] = (int8_t)nearbyintf(x[i] * id);
        }
}

bool eft__q8_0_from_int8(eft__block_q8_0 *out, const int8_t *q, const float *s, int64_t n, int64_t k,
                         int64_t group_size) {
    if (k % EFT__QK != 0 || group_size < EFT__QK || group_size % EFT__QK != 0) return false;
    int64_t nb = k / EFT__QK, ng = (k + group_size - 1) / group_size;
    for (int64_t r = 0; r < n; r++)
        for (int64_t b = 0; b < nb; b++) {
            eft__block_q8_0 *o = &out[r * nb + b];
            o->d = eft__f32_to_f16(s[r * ng + b * EFT__QK / group_size]);
            memcpy(o->qs, q + r * k + b * EFT__QK, EFT__QK);
        }
    return true;
}

/* ggml's rounding for Q4_0: the signed extreme maps to -8, so the full 16 levels are used. */
void eft__quantize_q4_0(eft__block_q4_0 *out, const float *w, int64_t n, int64_t k) {
    int64_t nb = k / EFT__QK;
    for (int64_t r = 0; r < n; r++)
        for (int64_t b = 0; b < nb; b++) {
            const float *x = w + r * k + b * EFT__QK;
            float amax = 0, mx = 0;
            for (int i = 0; i < EFT__QK; i++)
                if (fabsf(x[i]) > amax) amax = fabsf(x[i]), mx = x[i];
            float d = mx / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            eft__block_q4_0 *o = &out[r * nb + b];
            o->d = eft__f32_to_f16(d);
            for (int i = 0; i < EFT__QK / 2; i++) {
                int q0 = (int)(x[i] * id + 8.5f), q1 = (int)(x[i + 16] * id + 8.5f);
                q0 = q0 > 15 ? 15 : q0 < 0 ? 0 : q0;
                q1 = q1 > 15 ? 15 : q1 < 0 ? 0 : q1;
                o->qs[i] = (uint8_t)(q0 | (q1 << 4));
            }
        }
}

void eft__quantize_q4_1(eft__block_q4_1 *out, const float *w, int64_t n, int64_t k) {
    int64_t nb = k / EFT__QK;
    for (int64_t r = 0; r < n; r++)
        for (int64_t b = 0; b < nb; b++) {
            const float *x = w + r * k + b * EFT__QK;
            float lo = x[0], hi = x[0];
            for (int i = 1; i < EFT__QK; i++) lo = x[i] < lo ? x[i] : lo, hi = x[i] > hi ? x[i] : hi;
            float d = (hi - lo) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            eft__block_q4_1 *o = &out[r * nb + b];
            o->d = eft__f32_to_f16(d);
            o->m = eft__f32_to_f16(lo);
            for (int i = 0; i < EFT__QK / 2; i++) {
                int q0 = (int)((x[i] - lo) * id + 0.5f), q1 = (int)((x[i + 16] - lo) * id + 0.5f);
                q0 = q0 > 15 ? 15 : q0 < 0 ? 0 : q0;
                q1 = q1 > 15 ? 15 : q1 < 0 ? 0 : q1;
                o->qs[i] = (uint8_t)(q0 | (q1 << 4));
            }
        }
}

/* ---------------------------------------------------------------------------------------------
 * Scalar reference kernels
 * ------------------------------------------------------------------------------------------- */

static void quantize_row_q8_a(eft__block_q8_a *out, const float *x, int64_t n) {
    for (int64_t b = 0; b < n / EFT__QK; b++, x += EFT__QK) {
        float amax = 0;
        for (int i = 0; i < EFT__QK; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int32_t sum = 0;
        for (int i = 0; i < EFT__QK; i++) {
            /* nearbyintf rounds half to even, as the vector conversion does, so every ISA
             * produces the same integers. */
            int v = (int)nearbyintf(x[i] * id);
            out[b].qs[i] = (int8_t)v;
            sum += v;
        }
        out[b].d = d;
        out[b].sum = sum;
    }
}

static float dot_q8_0_q8_a(const eft__block_q8_0 *w, const eft__block_q8_a *a, int64_t nb) {
    float s = 0;
    for (int64_t b = 0; b < nb; b++) {
        int32_t acc = 0;
        for (int i = 0; i < EFT__QK; i++) acc += (int32_t)w[b].qs[i] * a[b].qs[i];
        s += eft__f16_to_f32(w[b].d) * a[b].d * (float)acc;
    }
    return s;
}

static float dot_q4_0_q8_a(const eft__block_q4_0 *w, const eft__block_q8_a *a, int64_t nb) {
    float s = 0;
    for (int64_t b = 0; b < nb; b++) {
        int32_t acc = 0;
        for (int i = 0; i < EFT__QK / 2; i++)
            acc += ((w[b].qs[i] & 15) - 8) * a[b].qs[i] + ((w[b].qs[i] >> 4) - 8) * a[b].qs[i + 16];
        s += eft__f16_to_f32(w[b].d) * a[b].d * (float)acc;
    }
    return s;
}

/* sum_i (d q_i + m) a_d qa_i = d a_d sum q_i qa_i + m a_d sum qa_i: the block sum of the
 * activations carries the minimum's share. */
static float dot_q4_1_q8_a(const eft__block_q4_1 *w, const eft__block_q8_a *a, int64_t nb) {
    float s = 0;
    for (int64_t b = 0; b < nb; b++) {
        int32_t acc = 0;
        for (int i = 0; i < EFT__QK / 2; i++) acc += (w[b].qs[i] & 15) * a[b].qs[i] + (w[b].qs[i] >> 4) * a[b].qs[i + 16];
        s += eft__f16_to_f32(w[b].d) * a[b].d * (float)acc + eft__f16_to_f32(w[b].m) * a[b].d * (float)a[b].sum;
    }
    return s;
}

/* The f32-activation kernels widen the weights with the reference dequantizer itself, a chunk of
 * a row at a time, so the scalar level cannot disagree with it about a single weight. */
enum { DQ_CHUNK = 256 };

static size_t block_bytes(eft_dtype wtype) {
    switch (wtype) {
    case EFT_DTYPE_Q8_0: return sizeof(eft__block_q8_0);
    case EFT_DTYPE_Q4_0: return sizeof(eft__block_q4_0);
    case EFT_DTYPE_Q4_1: return sizeof(eft__block_q4_1);
    default: return 0;
    }
}

static void qgemv_f32(float *c, int64_t ldc, const float *a, int64_t lda, int m, eft_dtype wtype, const void *w,
                      size_t row_bytes, int64_t nrows, int64_t k, const float *bias) {
    const size_t bb = block_bytes(wtype);
    float x[DQ_CHUNK];
    for (int64_t j = 0; j < nrows; j++) {
        const uint8_t *wr = (const uint8_t *)w + (size_t)j * row_bytes;
        float s[EFT__QGEMV_MAX_M] = {0};
        for (int64_t k0 = 0; k0 < k; k0 += DQ_CHUNK) {
            int64_t kc = k - k0 < DQ_CHUNK ? k - k0 : DQ_CHUNK;
            eft__dequantize_row(wtype, wr + (size_t)(k0 / EFT__QK) * bb, x, kc);
            for (int i = 0; i < m; i++)
                for (int64_t e = 0; e < kc; e++) s[i] += a[i * lda + k0 + e] * x[e];
        }
        for (int i = 0; i < m; i++) c[i * ldc + j] = bias ? s[i] + bias[j] : s[i];
    }
}

static void qpanel_f32(float *wp, eft_dtype wtype, const void *w, size_t row_bytes, int nr, int64_t k0, int64_t kc) {
    const size_t bb = block_bytes(wtype);
    float x[DQ_CHUNK];
    for (int j = 0; j < EFT__SGEMM_NR; j++)
        for (int64_t e0 = 0; e0 < kc; e0 += DQ_CHUNK) {
            int64_t n = kc - e0 < DQ_CHUNK ? kc - e0 : DQ_CHUNK;
            if (j < nr) eft__dequantize_row(wtype, (const uint8_t *)w + (size_t)j * row_bytes + (size_t)((k0 + e0) / EFT__QK) * bb, x, n);
            for (int64_t e = 0; e < n; e++) wp[(e0 + e) * EFT__SGEMM_NR + j] = j < nr ? x[e] : 0.0f;
        }
}

void eft__kernels_fill_q8_scalar(eft__kernels *k) {
    k->quantize_row_q8_a = quantize_row_q8_a;
    k->dot_q8_0_q8_a = dot_q8_0_q8_a;
    k->dot_q4_0_q8_a = dot_q4_0_q8_a;
    k->dot_q4_1_q8_a = dot_q4_1_q8_a;
    k->qgemv_f32 = qgemv_f32;
    k->qpanel_f32 = qpanel_f32;
}

/* ---------------------------------------------------------------------------------------------
 * Driver
 * ------------------------------------------------------------------------------------------- */

size_t eft__q8_0_gemm_work_size(int64_t m, int64_t k) {
    return (size_t)m * (size_t)(k / EFT__QK) * sizeof(eft__block_q8_a);
}

typedef struct q8_ctx {
    const eft__kernels *kt;
    eft__threadpool *tp;
    float *c;
    int64_t ldc, lda, m, n, k;
    const float *a, *bias;
    eft_dtype wtype;
    const uint8_t *w;
    size_t row_bytes;
    eft__block_q8_a *qa;
} q8_ctx;

static inline float row_dot(const q8_ctx *x, int64_t j, const eft__block_q8_a *a, int64_t nb) {
    const void *wr = x->w + (size_t)j * x->row_bytes;
    switch (x->wtype) {
    case EFT_DTYPE_Q4_0: return x->kt->dot_q4_0_q8_a(wr, a, nb);
    case EFT_DTYPE_Q4_1: return x->kt->dot_q4_1_q8_a(wr, a, nb);
    default: return x->kt->dot_q8_0_q8_a(wr, a, nb);
    }
}

/* Weight rows per group: the group's rows stay in L1 while every activation row passes. */
enum { ROWS_PER_GROUP = 8 };

static void q8_task(void *p, int ith, int nth) {
    q8_ctx *x = p;
    int64_t nb = x->k / EFT__QK, b, e;
    eft__split_range(x->m, ith, nth, &b, &e);
    for (int64_t i = b; i < e; i++) x->kt->quantize_row_q8_a(x->qa + i * nb, x->a + i * x->lda, x->k);
    if (x->tp) eft__threadpool_barrier(x->tp);
    eft__split_range(x->n, ith, nth, &b, &e);
    for (int64_t j0 = b; j0 < e; j0 += ROWS_PER_GROUP) {
        int64_t j1 = j0 + ROWS_PER_GROUP < e ? j0 + ROWS_PER_GROUP : e;
        for (int64_t i = 0; i < x->m; i++)
            for (int64_t j = j0; j < j1; j++) {
                float v = row_dot(x, j, x->qa + i * nb, nb);
                x->c[i * x->ldc + j] = x->bias ? v + x->bias[j] : v;
            }
    }
}

bool eft__qgemm(const eft__kernels *kt, eft__threadpool *tp, float *c, int64_t ldc, const float *a, int64_t lda,
                int64_t m, eft_dtype wtype, const void *w, int64_t n, int64_t k, const float *bias, void *work) {
    if (k % EFT__QK != 0) return false;
    size_t bb;
    switch (wtype) {
    case EFT_DTYPE_Q8_0: bb = sizeof(eft__block_q8_0); break;
    case EFT_DTYPE_Q4_0: bb = sizeof(eft__block_q4_0); break;
    case EFT_DTYPE_Q4_1: bb = sizeof(eft__block_q4_1); break;
    default: return false;
    }
    if (m <= 0 || n <= 0 || k <= 0) return true;
    q8_ctx x = {kt ? kt : eft__kernels_get(), tp, c, ldc, lda, m, n, k, a, bias, wtype, w, bb * (size_t)(k / EFT__QK), work};
    if (tp && eft__threadpool_size(tp) > 1) eft__threadpool_run(tp, q8_task, &x);
    else {
        x.tp = NULL;
        q8_task(&x, 0, 1);
    }
    return true;
}

void eft__q8_0_gemm(const eft__kernels *kt, eft__threadpool *tp, float *c, int64_t ldc, const float *a,
                    int64_t lda, int64_t m, const eft__block_q8_0 *w, int64_t n, int64_t k,
                    const float *bias, void *work) {
    eft__qgemm(kt, tp, c, ldc, a, lda, m, EFT_DTYPE_Q8_0, w, n, k, bias, work);
}

/* ---------------------------------------------------------------------------------------------
 * f32 activations: the driver
 * ------------------------------------------------------------------------------------------- */

/* KQ: the k-slice of one decoded panel (16 KiB, half of L1d) that the micro-kernel sweeps over the
 * rows; MQ: rows per pass. Every weight is decoded once per pass, so MQ is large: the MQ x KQ
 * block of activations (up to 240 KiB) stays in L2 while this worker's panels go by. */
enum { KQ = 256, MQ = 240 };
_Static_assert(KQ % 128 == 0, "the panel slice must hold whole blocks of every group size (gqgemm.c shares it)");
_Static_assert(MQ % EFT__SGEMM_MR == 0, "MQ must be a multiple of the micro-kernel's rows");

/* Per worker, on its own cache lines: one decoded panel slice, then the pass's MQ x KQ block of
 * activations packed into micro-panels (as eft__sgemm_worker packs them for f32 weights: reading
 * six strided rows in place cost the int8 encoder a third of its speed at 4096 rows). */
#define PANEL_FLOATS ((size_t)KQ * EFT__SGEMM_NR)
#define WORKER_FLOATS (PANEL_FLOATS + (size_t)MQ * KQ)

size_t eft__qgemm_f32_work_size(int64_t m, int64_t k, int nth) {
    (void)k;
    if (m <= EFT__QSTREAM_MAX_M) return 0;
    return (size_t)(nth > 0 ? nth : 1) * WORKER_FLOATS * sizeof(float) + 64;
}

typedef struct qf32_ctx {
    const eft__kernels *kt;
    float *c;
    int64_t ldc, lda, m, n, k;
    const float *a, *bias;
    eft_dtype wtype;
    const uint8_t *w;
    size_t row_bytes;
    float *panels; /* [nth][WORKER_FLOATS], 64-byte aligned */
    eft__qgemv_f32_fn gemv;
    eft__qpanel_f32_fn panel;
    _Atomic int64_t next; /* compute-bound streaming: the next 16-channel group to take */
} qf32_ctx;

/* Bytes of weight rows that one streaming pass holds in L2 while every 8-row chunk of activations
 * goes over them. */
enum { STREAM_BLOCK = 64 * 1024 };

/* Few rows: split the output channels (in whole cache lines of c) and stream each weight row once
 * against all the activation rows. One kernel call takes up to EFT__QGEMV_MAX_M rows; past that
 * (up to EFT__QSTREAM_MAX_M) the worker's rows go by in blocks of about STREAM_BLOCK bytes, each
 * block against every chunk, so the weights still come from memory once. */
static void qf32_gemv_range(const qf32_ctx *x, int64_t j0, int64_t j1) {
    if (j0 >= j1) return;
    int64_t jb = j1 - j0;
    if (x->m > EFT__QGEMV_MAX_M) {
        jb = (int64_t)(STREAM_BLOCK / x->row_bytes) / 16 * 16;
        if (jb < 16) jb = 16;
    }
    for (int64_t jj = j0; jj < j1; jj += jb) {
        int64_t je = jj + jb < j1 ? jj + jb : j1;
        for (int64_t i = 0; i < x->m; i += EFT__QGEMV_MAX_M) {
            int mm = (int)(x->m - i < EFT__QGEMV_MAX_M ? x->m - i : EFT__QGEMV_MAX_M);
            x->gemv(x->c + i * x->ldc + jj, x->ldc, x->a + i * x->lda, x->lda, mm, x->wtype,
                    x->w + (size_t)jj * x->row_bytes, x->row_bytes, je - jj, x->k, x->bias ? x->bias + jj : NULL);
        }
    }
}

/* Up to two rows the product is bound by memory: each worker streams one contiguous share. With
 * more it is bound by compute, and a static split leaves one worker waiting whenever the other is
 * slowed (a shared machine's other tenants, an interrupt): the workers take GEMV_CHUNK groups at a
 * time until none are left. */
enum { GEMV_CHUNK = 4 };

static void qf32_gemv(qf32_ctx *x, int ith, int nth) {
    const int64_t ng = (x->n + 15) / 16;
    if (x->m <= 2 || nth == 1) {
        int64_t g0, g1;
        eft__split_range(ng, ith, nth, &g0, &g1);
        qf32_gemv_range(x, g0 * 16, g1 * 16 < x->n ? g1 * 16 : x->n);
        return;
    }
    for (;;) {
        int64_t g0 = atomic_fetch_add_explicit(&x->next, GEMV_CHUNK, memory_order_relaxed);
        if (g0 >= ng) return;
        int64_t g1 = g0 + GEMV_CHUNK < ng ? g0 + GEMV_CHUNK : ng;
        qf32_gemv_range(x, g0 * 16, g1 * 16 < x->n ? g1 * 16 : x->n);
    }
}

/* Many rows: pack the pass's block of activations, decode a KQ x 16 panel slice, run the packed-A
 * micro-kernel over every row of the pass, move on. The split follows eft__sgemm_worker: rows
 * when there is a full pass for everyone (each worker then decodes every panel once per pass,
 * which costs under 1 % of the pass's flops at MQ rows), else channels. */
static void qf32_panels(const qf32_ctx *x, int ith, int nth) {
    const int64_t NR = EFT__SGEMM_NR, MR = EFT__SGEMM_MR, K = x->k;
    const int64_t np = (x->n + NR - 1) / NR;
    int64_t p0 = 0, p1 = np, m0 = 0, m1 = x->m;
    bool by_rows = x->m >= MQ * nth || (np < 2 * nth && x->m >= 2 * MR * nth);
    if (!by_rows) {
        eft__split_range(np, ith, nth, &p0, &p1);
    } else {
        int64_t mb = (x->m + MR - 1) / MR, b0, b1;
        eft__split_range(mb, ith, nth, &b0, &b1);
        m0 = b0 * MR;
        m1 = b1 * MR < x->m ? b1 * MR : x->m;
    }
    if (p0 >= p1 || m0 >= m1) return;
    float *wp = x->panels + (size_t)ith * WORKER_FLOATS, *ap = wp + PANEL_FLOATS;
    /* Even passes in whole micro-tiles, as in eft__sgemm_worker. */
    int64_t npass = (m1 - m0 + MQ - 1) / MQ, mq = ((m1 - m0 + npass - 1) / npass + MR - 1) / MR * MR;
    for (int64_t i0 = m0; i0 < m1; i0 += mq) {
        int64_t i1 = i0 + mq < m1 ? i0 + mq : m1;
        for (int64_t k0 = 0; k0 < K; k0 += KQ) {
            int64_t kc = K - k0 < KQ ? K - k0 : KQ;
            bool acc = k0 > 0;
            eft__sgemm_pack_a(ap, x->a + i0 * x->lda + k0, x->lda, i1 - i0, kc);
            for (int64_t p = p0; p < p1; p++) {
                int64_t j = p * NR;
                int nr = (int)(x->n - j < NR ? x->n - j : NR);
                x->panel(wp, x->wtype, x->w + (size_t)j * x->row_bytes, x->row_bytes, nr, k0, kc);
                const float *bp = (!acc && x->bias) ? x->bias + j : NULL;
                for (int64_t i = i0; i < i1; i += MR) {
                    int mr = (int)(i1 - i < MR ? i1 - i : MR);
                    x->kt->sgemm_ukernel_pa(x->c + i * x->ldc + j, x->ldc, ap + (i - i0) * kc, wp, kc, mr, nr, bp, acc);
                }
            }
        }
    }
}

static void qf32_task(void *p, int ith, int nth) {
    qf32_ctx *x = p;
    if (x->m <= EFT__QSTREAM_MAX_M) qf32_gemv(x, ith, nth);
    else qf32_panels(x, ith, nth);
}

bool eft__qf32_drive(const eft__kernels *kt, eft__threadpool *tp, float *c, int64_t ldc, const float *a, int64_t lda,
                     int64_t m, eft_dtype wtype, const void *w, size_t row_bytes, int64_t n, int64_t k, const float *bias,
                     void *work, eft__qgemv_f32_fn gemv, eft__qpanel_f32_fn panel) {
    if (m <= 0 || n <= 0 || k <= 0) return true;
    if (m > EFT__QSTREAM_MAX_M && !work) return false;
    /* work need not be aligned: the panels start at its first 64-byte boundary (the work size
     * counts the slack), where the micro-kernel's aligned loads want them. */
    float *panels = work ? (float *)(((uintptr_t)work + 63) & ~(uintptr_t)63) : NULL;
    qf32_ctx x = {kt, c, ldc, lda, m, n, k, a, bias, wtype, w, row_bytes, panels, gemv, panel, 0};
    if (tp && eft__threadpool_size(tp) > 1) eft__threadpool_run(tp, qf32_task, &x);
    else qf32_task(&x, 0, 1);
    return true;
}

bool eft__qgemm_f32(const eft__kernels *kt, eft__threadpool *tp, float *c, int64_t ldc, const float *a, int64_t lda,
                    int64_t m, eft_dtype wtype, const void *w, int64_t n, int64_t k, const float *bias, void *work) {
    size_t bb = block_bytes(wtype);
    if (bb == 0 || k % EFT__QK != 0) return false;
    kt = kt ? kt : eft__kernels_get();
    return eft__qf32_drive(kt, tp, c, ldc, a, lda, m, wtype, w, bb * (size_t)(k / EFT__QK), n, k, bias, work,
                           kt->qgemv_f32, kt->qpanel_f32);
}

/* ---------------------------------------------------------------------------------------------
 * f32 activations: several GEMV products in one pool run
 * ------------------------------------------------------------------------------------------- */

typedef struct qmulti_ctx {
    const eft__kernels *kt;
    const eft__qgemv_job *jobs;
    int njobs;
    int64_t m;
    int64_t groups; /* 16-channel groups of all jobs together */
    _Atomic int64_t next; /* m > 2: the next group to take (as qf32_gemv) */
} qmulti_ctx;

/* Groups g0 .. g1 of the jobs together. */
static void qmulti_range(const qmulti_ctx *x, int64_t g0, int64_t g1) {
    int64_t base = 0;
    for (int t = 0; t < x->njobs && base < g1; t++) {
        const eft__qgemv_job *jb = &x->jobs[t];
        if (jb->n <= 0 || jb->k <= 0) continue; /* nothing to compute, as eft__qgemm_f32 */
        int64_t ng = (jb->n + 15) / 16;
        /* This worker's groups of job t, in the job's own numbering. */
        int64_t a0 = g0 > base ? g0 - base : 0, a1 = g1 - base < ng ? g1 - base : ng;
        base += ng;
        if (a0 >= a1) continue;
        int64_t j0 = a0 * 16, j1 = a1 * 16 < jb->n ? a1 * 16 : jb->n;
        size_t rb = block_bytes(jb->wtype) * (size_t)(jb->k / EFT__QK);
        x->kt->qgemv_f32(jb->c + j0, jb->ldc, jb->a, jb->lda, (int)x->m, jb->wtype, (const uint8_t *)jb->w + (size_t)j0 * rb,
                         rb, j1 - j0, jb->k, jb->bias ? jb->bias + j0 : NULL);
    }
}

static void qmulti_task(void *p, int ith, int nth) {
    qmulti_ctx *x = p;
    if (x->m <= 2 || nth == 1) {
        int64_t g0, g1;
        eft__split_range(x->groups, ith, nth, &g0, &g1);
        qmulti_range(x, g0, g1);
        return;
    }
    for (;;) {
        int64_t g0 = atomic_fetch_add_explicit(&x->next, GEMV_CHUNK, memory_order_relaxed);
        if (g0 >= x->groups) return;
        qmulti_range(x, g0, g0 + GEMV_CHUNK < x->groups ? g0 + GEMV_CHUNK : x->groups);
    }
}

bool eft__qgemm_f32_gemv_multi(const eft__kernels *kt, eft__threadpool *tp, int64_t m, const eft__qgemv_job *jobs,
                               int njobs) {
    if (m < 1 || m > EFT__QGEMV_MAX_M || njobs < 0 || (njobs > 0 && !jobs)) return false;
    int64_t groups = 0;
    for (int t = 0; t < njobs; t++) {
        if (block_bytes(jobs[t].wtype) == 0 || jobs[t].k % EFT__QK != 0 || jobs[t].n < 0 || jobs[t].k < 0) return false;
        if (jobs[t].n > 0 && jobs[t].k > 0) groups += (jobs[t].n + 15) / 16;
    }
    if (groups == 0) return true;
    qmulti_ctx x = {kt ? kt : eft__kernels_get(), jobs, njobs, m, groups, 0};
    if (tp && eft__threadpool_size(tp) > 1) eft__threadpool_run(tp, qmulti_task, &x);
    else qmulti_task(&x, 0, 1);
    return true;
}
