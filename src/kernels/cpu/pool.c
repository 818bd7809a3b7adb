/*
 * pool.c — the ends of an embedding model: token embedding lookup (from f32, f16 or bf16 tables,
 * ids checked against the vocabulary), and sentence-transformers' pooling modes and L2
 * normalisation, with their exact definitions (mask-weighted sums, clamped denominators).
 * Memory-bound loops, so plain C that the compiler vectorises serves every ISA.
 */
#include <math.h>
#include <string.h>

#include "kernels.h"

bool eft__embedding_gather(float *out, int64_t ldo, const void *table, eft_dtype dtype, int64_t vocab, int64_t c,
                           int64_t ld, const int32_t *ids, int64_t t) {
    if (dtype != EFT_DTYPE_F32 && dtype != EFT_DTYPE_F16 && dtype != EFT_DTYPE_BF16) return false;
    for (int64_t i = 0; i < t; i++)
        if (ids[i] < 0 || ids[i] >= vocab) return false;
    for (int64_t i = 0; i < t; i++) {
        float *o = out + i * ldo;
        int64_t off = (int64_t)ids[i] * ld;
        if (dtype == EFT_DTYPE_F32) {
            memcpy(o, (const float *)table + off, sizeof(float) * (size_t)c);
        } else {
            const uint16_t *r = (const uint16_t *)table + off;
            if (dtype == EFT_DTYPE_F16) for (int64_t j = 0; j < c; j++) o[j] = eft__f16_to_f32(r[j]);
            else for (int64_t j = 0; j < c; j++) o[j] = eft__bf16_to_f32(r[j]);
        }
    }
    return true;
}

void eft__pool(float *out, const float *x, int64_t ldx, int64_t t, int64_t c, const uint8_t *mask, eft__pool_mode mode) {
    switch (mode) {
    case EFT__POOLOP_CLS:
        memcpy(out, x, sizeof(float) * (size_t)c);
        return;
    case EFT__POOLOP_LASTTOKEN: {
        int64_t last = -1;
        for (int64_t i = 0; i < t; i++)
            if (!mask || mask[i]) last = i;
        if (last < 0) memset(out, 0, sizeof(float) * (size_t)c);
        else memcpy(out, x + last * ldx, sizeof(float) * (size_t)c);
        return;
    }
    case EFT__POOLOP_MAX: {
        for (int64_t j = 0; j < c; j++) out[j] = -1e9f;
        for (int64_t i = 0; i < t; i++) {
            if (mask && !mask[i]) continue;
            const float *r = x + i * ldx;
            for (int64_t j = 0; j < c; j++) out[j] = r[j] > out[j] ? r[j] : out[j];
        }
        return;
    }
    default: break;
    }
    /* The weighted sums: mean, mean / sqrt(len), and weightedmean with weights 1, 2, ..., T
     * (sentence-transformers' position weights, before masking). */
    memset(out, 0, sizeof(float) * (size_t)c);
    double wsum = 0;
    for (int64_t i = 0; i < t; i++) {
        if (mask && !mask[i]) continue;
        float w = mode == EFT__POOLOP_WEIGHTEDMEAN ? (float)(i + 1) : 1.0f;
        const float *r = x + i * ldx;
        for (int64_t j = 0; j < c; j++) out[j] += w * r[j];
        wsum += w;
    }
    double den = mode == EFT__POOLOP_MEAN_SQRT_LEN ? sqrt(wsum) : wsum;
    float inv = (float)(1.0 / (den > 1e-9 ? den : 1e-9)); /* torch.clamp(min=1e-9) */
    for (int64_t j = 0; j < c; j++) out[j] *= inv;
}

void eft__l2_normalize(float *x, int64_t n) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    double nrm = sqrt(ss);
    float inv = (float)(1.0 / (nrm > 1e-12 ? nrm : 1e-12));
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}
