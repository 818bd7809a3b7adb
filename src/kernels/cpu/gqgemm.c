/*
 * gqgemm.c — weights in the group-quantised family of core/quant.h (int4 symmetric, int4 with a
 * per-group minimum, int8; groups of 32, 64 or 128 along K) times f32 activations. Holds the
 * round-to-nearest quantisers, the scalar reference product, the scalar kernels (which widen
 * through eft__dequantize_row itself, so they cannot disagree with it about a single weight) and
 * the thread-pool driver: a streaming GEMV for decode's 1-8 rows and, for more rows, 16-channel
 * panels decoded once per call and fed to the f32 GEMM micro-kernel.
 */
#include <math.h>
#include <string.h>

#include "core/quant.h"
#include "kernels.h"

/* ---------------------------------------------------------------------------------------------
 * Quantisers
 * ------------------------------------------------------------------------------------------- */

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Packs the 4-bit codes q[G] of one block into GGUF's nibble order (quant.h). */
static void pack_nibbles(uint8_t *qs, const uint8_t *q, int group) {
    for (int r = 0; r < group / 32; r++)
        for (int j = 0; j < 16; j++) qs[16 * r + j] = (uint8_t)(q[32 * r + j] | q[32 * r + 16 + j] << 4);
}

/* Squared error of group x[G] coded as q[G] with x ~ d q + m. */
static double sq_err(const float *x, const uint8_t *q, int G, float d, float m) {
    double e = 0;
    for (int i = 0; i < G; i++) {
        double r = (double)x[i] - ((double)d * q[i] + m);
        e += r * r;
    }
    return e;
}

/* Symmetric int4, x ~ d (q - 8). Each element is rounded to the nearest level of a scale, and the
 * scale is the best of a small search: ggml's rule (the extreme maps to -8, all 16 levels used)
 * and the extreme mapped to between -8.5 and -6.5 or +6.5 and +7.5 levels, each candidate then
 * refitted by least squares for its codes. On weights this lowers the squared error by about a
 * fifth against ggml's rule alone, at no cost to the kernels (the same layout, the same decode). */
static void quantize_i4(uint8_t *blk, const float *x, int G) {
    float amax = 0, mx = 0;
    for (int i = 0; i < G; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), mx = x[i];
    uint8_t q[128], qb[128];
    float best_d = mx / -8.0f;
    double best = INFINITY;
    for (int c = -1; c <= 24; c++) {
        /* c = -1: ggml's rule; 0..16: -8.5 .. -6.5; 17..24: +6.5 .. +7.5 (steps of 1/8). */
        float div = c < 0 ? -8.0f : c <= 16 ? -8.5f + 0.125f * (float)c : 6.5f + 0.125f * (float)(c - 17);
        float d = mx / div, id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int i = 0; i < G; i++) q[i] = (uint8_t)clampi((int)nearbyintf(x[i] * id) + 8, 0, 15);
        /* Least-squares scale for these codes. */
        double sxq = 0, sqq = 0;
        for (int i = 0; i < G; i++) sxq += (double)x[i] * (q[i] - 8), sqq += (double)(q[i] - 8) * (q[i] - 8);
        if (sqq > 0) d = (float)(sxq / sqq);
        double e = sq_err(x, q, G, d, -8.0f * d);
        if (e < best) best = e, best_d = d;
    }
    /* The codes for the scale as stored (f16), rounded to nearest. */
    uint16_t hd = eft__f32_to_f16(best_d);
    float d = eft__f16_to_f32(hd), id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < G; i++) qb[i] = (uint8_t)clampi((int)nearbyintf(x[i] * id) + 8, 0, 15);
    memcpy(blk, &hd, 2);
    pack_nibbles(blk + 2, qb, G);
}

/* int4 with a minimum, x ~ d q + m: min/max first, then the range narrowed or widened a little
 * (15 +- 1.5 steps over max - min), each candidate's d and m refitted by least squares for its
 * codes, the best kept; codes are rounded to nearest for the d and m as stored (f16). */
static void quantize_u4(uint8_t *blk, const float *x, int G) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < G; i++) lo = x[i] < lo ? x[i] : lo, hi = x[i] > hi ? x[i] : hi;
    uint8_t q[128];
    float best_d = (hi - lo) / 15.0f, best_m = lo;
    double best = INFINITY;
    for (int c = 0; c <= 24; c++) {
        float steps = c == 0 ? 15.0f : 13.5f + 0.125f * (float)(c - 1);
        float d = (hi - lo) / steps, id = d != 0.0f ? 1.0f / d : 0.0f, m = lo;
        for (int i = 0; i < G; i++) q[i] = (uint8_t)clampi((int)nearbyintf((x[i] - lo) * id), 0, 15);
        double n = G, sq = 0, sqq = 0, sx = 0, sqx = 0;
        for (int i = 0; i < G; i++) sq += q[i], sqq += (double)q[i] * q[i], sx += x[i], sqx += (double)q[i] * x[i];
        double det = n * sqq - sq * sq;
        if (det > 0) {
            d = (float)((n * sqx - sq * sx) / det);
            m = (float)((sqq * sx - sq * sqx) / det);
        }
        double e = sq_err(x, q, G, d, m);
        if (e < best) best = e, best_d = d, best_m = m;
    }
    uint16_t hd = eft__f32_to_f16(best_d), hm = eft__f32_to_f16(best_m);
    float d = eft__f16_to_f32(hd), m = eft__f16_to_f32(hm), id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < G; i++) q[i] = (uint8_t)clampi((int)nearbyintf((x[i] - m) * id), 0, 15);
    memcpy(blk, &hd, 2);
    memcpy(blk + 2, &hm, 2);
    pack_nibbles(blk + 4, q, G);
}

/* int8, x ~ d q, d = max|x| / 127 (or the channel's scale when chan_scale >= 0). */
static void quantize_i8(uint8_t *blk, const float *x, int G, float chan_scale) {
    float d = chan_scale;
    if (d < 0) {
        float amax = 0;
        for (int i = 0; i < G; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
        d = amax / 127.0f;
    }
    uint16_t hd = eft__f32_to_f16(d);
    float ds = eft__f16_to_f32(hd), id = ds != 0.0f ? 1.0f / ds : 0.0f;
    memcpy(blk, &hd, 2);
    for (int i = 0; i < G; i++) blk[2 + i] = (uint8_t)(int8_t)clampi((int)nearbyintf(x[i] * id), -127, 127);
}

static void quantize_block(uint8_t *blk, const float *x, const eft__gq_layout *l, float chan_scale) {
    switch (l->kind) {
    case EFT__GQ_I4: quantize_i4(blk, x, l->group); break;
    case EFT__GQ_U4: quantize_u4(blk, x, l->group); break;
    case EFT__GQ_I8: quantize_i8(blk, x, l->group, chan_scale); break;
    }
}

bool eft__quantize_gq(eft_dtype wtype, void *out, const float *w, int64_t n, int64_t k) {
    eft__gq_layout l;
    if (!eft__gq_layout_of(wtype, &l) || k % l.group != 0) return false;
    uint8_t *o = out;
    for (int64_t r = 0; r < n; r++)
        for (int64_t b = 0; b < k / l.group; b++, o += l.block_bytes) quantize_block(o, w + r * k + b * l.group, &l, -1.0f);
    return true;
}

bool eft__quantize_gq_i8_channel(eft_dtype wtype, void *out, const float *w, int64_t n, int64_t k) {
    eft__gq_layout l;
    if (!eft__gq_layout_of(wtype, &l) || l.kind != EFT__GQ_I8 || k % l.group != 0) return false;
    uint8_t *o = out;
    for (int64_t r = 0; r < n; r++) {
        float amax = 0;
        for (int64_t i = 0; i < k; i++) amax = fabsf(w[r * k + i]) > amax ? fabsf(w[r * k + i]) : amax;
        for (int64_t b = 0; b < k / l.group; b++, o += l.block_bytes)
            quantize_block(o, w + r * k + b * l.group, &l, amax / 127.0f);
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Scalar reference and scalar kernels
 * ------------------------------------------------------------------------------------------- */

bool eft__gqgemm_ref(float *c, int64_t ldc, const float *a, int64_t lda, int64_t m, eft_dtype wtype, const void *w,
                     int64_t n, int64_t k, const float *bias) {
    eft__gq_layout l;
    if (!eft__gq_layout_of(wtype, &l) || k % l.group != 0) return false;
    float *x = eft__malloc_array((size_t)(k > 0 ? k : 1), sizeof(float));
    if (!x) return false;
    const size_t row_bytes = (size_t)(k / l.group) * l.block_bytes;
    for (int64_t j = 0; j < n; j++) {
        eft__dequantize_row(wtype, (const uint8_t *)w + (size_t)j * row_bytes, x, k);
        for (int64_t i = 0; i < m; i++) {
            double s = bias ? bias[j] : 0.0;
            for (int64_t e = 0; e < k; e++) s += (double)a[i * lda + e] * x[e];
            c[i * ldc + j] = (float)s;
        }
    }
    eft__free(x);
    return true;
}

/* Chunk of a row widened at a time: a multiple of every group. */
enum { DQ_CHUNK = 256 };

static void gqgemv_f32(float *c, int64_t ldc, const float *a, int64_t lda, int m, eft_dtype wtype, const void *w,
                       size_t row_bytes, int64_t nrows, int64_t k, const float *bias) {
    eft__gq_layout l;
    if (!eft__gq_layout_of(wtype, &l)) return;
    float x[DQ_CHUNK];
    for (int64_t j = 0; j < nrows; j++) {
        const uint8_t *wr = (const uint8_t *)w + (size_t)j * row_bytes;
        float s[EFT__QGEMV_MAX_M] = {0};
        for (int64_t k0 = 0; k0 < k; k0 += DQ_CHUNK) {
            int64_t kc = k - k0 < DQ_CHUNK ? k - k0 : DQ_CHUNK;
            eft__dequantize_row(wtype, wr + (size_t)(k0 / l.group) * l.block_bytes, x, kc);
            for (int i = 0; i < m; i++)
                for (int64_t e = 0; e < kc; e++) s[i] += a[i * lda + k0 + e] * x[e];
        }
        for (int i = 0; i < m; i++) c[i * ldc + j] = bias ? s[i] + bias[j] : s[i];
    }
}

static void gqpanel_f32(float *wp, eft_dtype wtype, const void *w, size_t row_bytes, int nr, int64_t k0, int64_t kc) {
    eft__gq_layout l;
    if (!eft__gq_layout_of(wtype, &l)) return;
    float x[DQ_CHUNK];
    for (int j = 0; j < EFT__SGEMM_NR; j++)
        for (int64_t e0 = 0; e0 < kc; e0 += DQ_CHUNK) {
            int64_t n = kc - e0 < DQ_CHUNK ? kc - e0 : DQ_CHUNK;
            if (j < nr)
                eft__dequantize_row(wtype, (const uint8_t *)w + (size_t)j * row_bytes + (size_t)((k0 + e0) / l.group) * l.block_bytes,
                                    x, n);
            for (int64_t e = 0; e < n; e++) wp[(e0 + e) * EFT__SGEMM_NR + j] = j < nr ? x[e] : 0.0f;
        }
}

void eft__kernels_fill_gq_scalar(eft__kernels *k) {
    k->gqgemv_f32 = gqgemv_f32;
    k->gqpanel_f32 = gqpanel_f32;
}

/* ---------------------------------------------------------------------------------------------
 * Driver
 * ------------------------------------------------------------------------------------------- */

/* The driver (blocking, threading, packed activations) is eft__qgemm_f32's; only the GEMV and
 * the panel decoding are this family's. */
size_t eft__gqgemm_f32_work_size(int64_t m, int64_t k, int nth) { return eft__qgemm_f32_work_size(m, k, nth); }

bool eft__gqgemm_f32(const eft__kernels *kt, eft__threadpool *tp, float *c, int64_t ldc, const float *a, int64_t lda,
                     int64_t m, eft_dtype wtype, const void *w, int64_t n, int64_t k, const float *bias, void *work) {
    eft__gq_layout l;
    if (!eft__gq_layout_of(wtype, &l) || k % l.group != 0) return false;
    kt = kt ? kt : eft__kernels_get();
    return eft__qf32_drive(kt, tp, c, ldc, a, lda, m, wtype, w, l.block_bytes * (size_t)(k / l.group), n, k, bias, work,
                           kt->gqgemv_f32, kt->gqpanel_f32);
}
