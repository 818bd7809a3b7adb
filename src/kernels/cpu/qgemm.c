/*
 * qgemm.c — int8 and int4 weights: GGUF Q8_0 rows (blocks of 32 int8 with an f16 scale) times
 * f32 activations quantised on the fly to int8 blocks with an f32 scale. The product of two int8
 * vectors runs on integer multiply-add instructions, four times denser than f32 FMAs, and the
 * weights stream at one byte per element plus 2/32 for the scale. The 4-bit GGUF blocks (Q4_0,
 * Q4_1) take the same path with their nibbles unpacked in registers. Holds the quantisers, the
 * scalar dots, the thread-pool driver for GEMV (decode, 1-8 rows) and GEMM (prefill).
 */
#include <math.h>
#include <string.h>

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

void eft__kernels_fill_q8_scalar(eft__kernels *k) {
    k->quantize_row_q8_a = quantize_row_q8_a;
    k->dot_q8_0_q8_a = dot_q8_0_q8_a;
    k->dot_q4_0_q8_a = dot_q4_0_q8_a;
    k->dot_q4_1_q8_a = dot_q4_1_q8_a;
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
