/*
 * gqgemm_avx2.c — AVX2 versions of the group-quantised kernels of gqgemm.c: a GEMV that widens
 * every run of 32 weights once, in registers, for all of its 1-8 activation rows, and the panel
 * decoder the GEMM path feeds to the f32 micro-kernel. A block's scale (and minimum) is loaded
 * once for its G/32 runs. The weights come out exactly as eft__dequantize_row's: d and m are f16
 * and q has at most 8 significant bits, so d q is exact in f32 and the fused d q + m rounds once,
 * as the reference's separate multiply and add do.
 */
#include <string.h>

#include "core/quant.h"
#include "kernels.h"
#include "simd_avx2.h"

/* One run of 32 weights (16 bytes of nibbles or 32 int8) as four vectors of eight f32, elements
 * 0-7, 8-15, 16-23, 24-31, the quants widened from memory (simd_avx2.h; I4's q - 8 as integers). */
static inline __attribute__((always_inline)) void decode_run(__m256 w[4], const uint8_t *qs, __m256 d, __m256 m,
                                                             const eft__gq_kind KIND) {
    __m256i q[4];
    if (KIND == EFT__GQ_I8) eft__widen_i8x32(q, qs);
    else eft__widen_nibbles32(q, qs, KIND == EFT__GQ_I4 ? 8 : 0);
    if (KIND != EFT__GQ_U4) {
        w[0] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(q[0]));
        w[1] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(q[1]));
        w[2] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(q[2]));
        w[3] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(q[3]));
        return;
    }
    w[0] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q[0]), m);
    w[1] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q[1]), m);
    w[2] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q[2]), m);
    w[3] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q[3]), m);
}

/* A block's scale and minimum (zero for the symmetric kinds), broadcast. */
static inline __attribute__((always_inline)) void load_dm(__m256 *d, __m256 *m, const uint8_t *blk,
                                                          const eft__gq_kind KIND) {
    uint32_t h = 0;
    memcpy(&h, blk, KIND == EFT__GQ_U4 ? 4 : 2);
    const __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128((int)h));
    *d = _mm256_broadcastss_ps(dm);
    *m = KIND == EFT__GQ_U4 ? _mm256_broadcastss_ps(_mm_movehdup_ps(dm)) : _mm256_setzero_ps();
}

/* M activation rows (1..8) against each weight row. One or two rows keep four partial sums (one
 * per vector of a run) so consecutive runs' FMAs do not wait on each other's latency; three or
 * four keep two; five to eight one each, which with the run's four weight vectors stays within
 * the 16 registers. A K longer than L1 holds for the M rows goes in chunks of whole groups
 * (simd_avx2.h), the chunks after the first adding into c. */
static inline __attribute__((always_inline)) void gemv(float *c, int64_t ldc, const float *a, int64_t lda, const int M,
                                                       const uint8_t *w, size_t row_bytes, int64_t nrows, int64_t nb,
                                                       const float *bias, const eft__gq_kind KIND, const int RUNS) {
    const int NA = M <= 2 ? 4 : M <= 4 ? 2 : 1;
    const int run_bytes = KIND == EFT__GQ_I8 ? 32 : 16;
    const int hdr = KIND == EFT__GQ_U4 ? 4 : 2;
    const size_t bb = (size_t)hdr + (size_t)(RUNS * run_bytes);
    const int64_t kcb = eft__gemv_chunk_blocks(M, nb, 32 * RUNS);
    for (int64_t b0 = 0; b0 < nb; b0 += kcb) {
        const int64_t b1 = nb - b0 < kcb ? nb : b0 + kcb;
        for (int64_t j = 0; j < nrows; j++) {
            const uint8_t *wr = w + (size_t)j * row_bytes;
            __m256 acc[8][4];
#pragma GCC unroll 8
            for (int i = 0; i < M; i++)
#pragma GCC unroll 4
                for (int u = 0; u < NA; u++) acc[i][u] = _mm256_setzero_ps();
            const float *ab = a + b0 * 32 * RUNS;
            for (int64_t b = b0; b < b1; b++) {
                const uint8_t *blk = wr + (size_t)b * bb;
                __m256 d, m;
                load_dm(&d, &m, blk, KIND);
#pragma GCC unroll 4
                for (int r = 0; r < RUNS; r++, ab += 32) {
                    __m256 wv[4];
                    decode_run(wv, blk + hdr + r * run_bytes, d, m, KIND);
#pragma GCC unroll 8
                    for (int i = 0; i < M; i++) {
                        const float *ai = ab + i * lda;
#pragma GCC unroll 4
                        for (int e = 0; e < 4; e++)
                            acc[i][e % NA] = _mm256_fmadd_ps(_mm256_loadu_ps(ai + 8 * e), wv[e], acc[i][e % NA]);
                    }
                }
            }
            eft__gemv_store(c, ldc, acc, M, NA, j, bias, b0 == 0);
        }
    }
}

#define GEMV_M(KIND, RUNS)                                                                          \
    switch (m) {                                                                                    \
    case 1: gemv(c, ldc, a, lda, 1, w, row_bytes, nrows, nb, bias, KIND, RUNS); break;              \
    case 2: gemv(c, ldc, a, lda, 2, w, row_bytes, nrows, nb, bias, KIND, RUNS); break;              \
    case 3: gemv(c, ldc, a, lda, 3, w, row_bytes, nrows, nb, bias, KIND, RUNS); break;              \
    case 4: gemv(c, ldc, a, lda, 4, w, row_bytes, nrows, nb, bias, KIND, RUNS); break;              \
    case 5: gemv(c, ldc, a, lda, 5, w, row_bytes, nrows, nb, bias, KIND, RUNS); break;              \
    case 6: gemv(c, ldc, a, lda, 6, w, row_bytes, nrows, nb, bias, KIND, RUNS); break;              \
    case 7: gemv(c, ldc, a, lda, 7, w, row_bytes, nrows, nb, bias, KIND, RUNS); break;              \
    default: gemv(c, ldc, a, lda, 8, w, row_bytes, nrows, nb, bias, KIND, RUNS); break;             \
    }
/* The group as a constant too, so each block's runs unroll with fixed offsets. */
#define GEMV_G(KIND)                                                                                \
    switch (l.group) {                                                                              \
    case 32: GEMV_M(KIND, 1); break;                                                                \
    case 64: GEMV_M(KIND, 2); break;                                                                \
    default: GEMV_M(KIND, 4); break;                                                                \
    }

static void gqgemv_f32(float *c, int64_t ldc, const float *a, int64_t lda, int m, eft_dtype wtype, const void *wv,
                       size_t row_bytes, int64_t nrows, int64_t k, const float *bias) {
    eft__gq_layout l;
    if (m < 1 || !eft__gq_layout_of(wtype, &l)) return;
    const uint8_t *w = wv;
    const int64_t nb = k / l.group;
    switch (l.kind) {
    case EFT__GQ_I4: GEMV_G(EFT__GQ_I4); break;
    case EFT__GQ_U4: GEMV_G(EFT__GQ_U4); break;
    case EFT__GQ_I8: GEMV_G(EFT__GQ_I8); break;
    }
}

/* Per run of 32 and half-panel of 8 channels: decode the 8 rows' runs into a 1 KiB row-major tile
 * (L1), then write it out k-major through four 8 x 8 transposes, whole aligned stores. */
static inline __attribute__((always_inline)) void panel(float *wp, const uint8_t *w, size_t row_bytes, int nr, int64_t k0,
                                                        int64_t kc, const eft__gq_layout *l, const eft__gq_kind KIND) {
    const int run_bytes = KIND == EFT__GQ_I8 ? 32 : 16;
    _Alignas(32) float t[8][32];
    for (int64_t kb = 0; kb < kc; kb += 32) {
        const int64_t e = k0 + kb;
        const size_t boff = (size_t)(e / l->group) * l->block_bytes;
        const int qoff = l->header + (int)((e % l->group) / 32) * run_bytes;
        float *out = wp + kb * EFT__SGEMM_NR;
        for (int h = 0; h < 2; h++) {
            int rows = nr - 8 * h;
            if (rows <= 0) {
                for (int q = 0; q < 32; q++) _mm256_store_ps(out + q * EFT__SGEMM_NR + 8 * h, _mm256_setzero_ps());
                continue;
            }
            for (int r = 0; r < 8; r++) {
                __m256 v[4];
                if (r < rows) {
                    const uint8_t *blk = w + (size_t)(8 * h + r) * row_bytes + boff;
                    __m256 d, m;
                    load_dm(&d, &m, blk, KIND);
                    decode_run(v, blk + qoff, d, m, KIND);
                } else {
                    v[0] = v[1] = v[2] = v[3] = _mm256_setzero_ps();
                }
                for (int q = 0; q < 4; q++) _mm256_store_ps(t[r] + 8 * q, v[q]);
            }
            for (int q4 = 0; q4 < 4; q4++) {
                __m256 r8[8];
                for (int r = 0; r < 8; r++) r8[r] = _mm256_load_ps(t[r] + 8 * q4);
                eft__transpose8_ps(r8);
                for (int q = 0; q < 8; q++) _mm256_store_ps(out + (8 * q4 + q) * EFT__SGEMM_NR + 8 * h, r8[q]);
            }
        }
    }
}

static void gqpanel_f32(float *wp, eft_dtype wtype, const void *w, size_t row_bytes, int nr, int64_t k0, int64_t kc) {
    eft__gq_layout l;
    if (!eft__gq_layout_of(wtype, &l)) return;
    switch (l.kind) {
    case EFT__GQ_I4: panel(wp, w, row_bytes, nr, k0, kc, &l, EFT__GQ_I4); break;
    case EFT__GQ_U4: panel(wp, w, row_bytes, nr, k0, kc, &l, EFT__GQ_U4); break;
    case EFT__GQ_I8: panel(wp, w, row_bytes, nr, k0, kc, &l, EFT__GQ_I8); break;
    }
}

void eft__kernels_fill_gq_avx2(eft__kernels *k) {
    k->gqgemv_f32 = gqgemv_f32;
    k->gqpanel_f32 = gqpanel_f32;
}
