/*
 * qgemm_avx2.c — AVX2 versions of the Q8 activation quantiser and the Q8_0 x Q8 dot product. The
 * dot uses the sign trick: |w| as unsigned bytes times sign(w)*a as signed bytes through
 * vpmaddubsw (pairs fit int16: 2 * 128 * 127 < 32768), then vpmaddwd to int32, one FMA per block.
 * Q4_0 and Q4_1 unpack their nibbles to the same 32-byte form first; Q4_1's unsigned nibbles go
 * straight into vpmaddubsw (2 * 15 * 127 fits too). The f32-activation kernels at the end widen
 * each block to four vectors of floats instead and multiply in f32.
 */
#include <string.h>

#include "kernels.h"
#include "simd_avx2.h"

static void quantize_row_q8_a(eft__block_q8_a *out, const float *x, int64_t n) {
    for (int64_t b = 0; b < n / EFT__QK; b++, x += EFT__QK) {
        __m256 v[4];
        __m256i q[4];
        out[b].d = eft__q8_levels(x, v, q);
        out[b].sum = eft__q8_levels_sum(q);
        _mm256_storeu_si256((__m256i *)out[b].qs, eft__q8_levels_bytes(q));
    }
}

static inline __m256 block_dot(const eft__block_q8_0 *w, const eft__block_q8_a *a) {
    __m256i wq = _mm256_loadu_si256((const __m256i *)w->qs), aq = _mm256_loadu_si256((const __m256i *)a->qs);
    __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(aq, wq));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

static float dot_q8_0_q8_a(const eft__block_q8_0 *w, const eft__block_q8_a *a, int64_t nb) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(w[b].d) * a[b].d), block_dot(w + b, a + b), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(w[b + 1].d) * a[b + 1].d), block_dot(w + b + 1, a + b + 1), acc1);
    }
    if (b < nb) acc0 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(w[b].d) * a[b].d), block_dot(w + b, a + b), acc0);
    return eft__hsum256(_mm256_add_ps(acc0, acc1));
}

/* 16 bytes of nibbles to 32 bytes: low nibbles (elements 0-15) in the lower lane, high nibbles
 * (16-31) in the upper one, matching the activation order. */
static inline __m256i unpack_nibbles(const uint8_t *qs) {
    __m128i v = _mm_loadu_si128((const __m128i *)qs);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
    return _mm256_and_si256(both, _mm256_set1_epi8(15));
}

/* sum (q - 8) a = sum q a - 8 sum a: the unsigned nibbles go straight into vpmaddubsw and the
 * activation block's sum takes the offset (one sum per int32 lane, eight lanes), which saves the
 * sign trick's instructions. */
static float dot_q4_0_q8_a(const eft__block_q4_0 *w, const eft__block_q8_a *a, int64_t nb) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < nb; b++) {
        __m256i p16 = _mm256_maddubs_epi16(unpack_nibbles(w[b].qs), _mm256_loadu_si256((const __m256i *)a[b].qs));
        __m256i p32 = _mm256_sub_epi32(_mm256_madd_epi16(p16, ones), _mm256_set1_epi32(a[b].sum));
        __m256 f = _mm256_cvtepi32_ps(p32);
        __m256 d = _mm256_set1_ps(_cvtsh_ss(w[b].d) * a[b].d);
        if (b & 1) acc1 = _mm256_fmadd_ps(d, f, acc1);
        else acc0 = _mm256_fmadd_ps(d, f, acc0);
    }
    return eft__hsum256(_mm256_add_ps(acc0, acc1));
}

static float dot_q4_1_q8_a(const eft__block_q4_1 *w, const eft__block_q8_a *a, int64_t nb) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    float mins = 0;
    for (int64_t b = 0; b < nb; b++) {
        /* Unsigned nibbles times signed activations: vpmaddubsw takes them as they are. */
        __m256i p16 = _mm256_maddubs_epi16(unpack_nibbles(w[b].qs), _mm256_loadu_si256((const __m256i *)a[b].qs));
        __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
        __m256 d = _mm256_set1_ps(_cvtsh_ss(w[b].d) * a[b].d);
        if (b & 1) acc1 = _mm256_fmadd_ps(d, f, acc1);
        else acc0 = _mm256_fmadd_ps(d, f, acc0);
        mins += _cvtsh_ss(w[b].m) * a[b].d * (float)a[b].sum;
    }
    return eft__hsum256(_mm256_add_ps(acc0, acc1)) + mins;
}

/* ---------------------------------------------------------------------------------------------
 * f32 activations: weights widened in registers
 * ------------------------------------------------------------------------------------------- */

enum { WQ8_0, WQ4_0, WQ4_1 }; /* weight type, a compile-time constant at every call site */

/* Block scales sit at any address in a mapped file (GGUF may align to 1 byte). Q4_1's d and m are
 * adjacent, so one 32-bit load and one conversion widen both. */
static inline __m128 load_halves(const uint8_t *p, const int two) {
    uint32_t h = 0;
    memcpy(&h, p, two ? 4 : 2);
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)h));
}

/* One block of 32 weights as four vectors of eight f32 (elements 0-7, 8-15, 16-23, 24-31). The
 * values are exactly eft__dequantize_row's: d and m are f16 (11 significant bits) and q has at
 * most 8, so d q is exact in f32 and the fused d q + m of Q4_1 rounds once, as the reference's
 * separate multiply and add do; Q4_0's q - 8 is formed as an integer, so d (q - 8) keeps the
 * reference's -0 where d < 0 and q = 8. The quants are widened from memory (simd_avx2.h). */
static inline __attribute__((always_inline)) void decode_block(__m256 w[4], const uint8_t *blk, const int WT) {
    /* Written out rather than as loops over the four vectors: GCC (-O2) kept the loops, and with
     * them q[] and w[] in memory, a store and a reload per vector on the GEMV's hottest path. */
    const __m128 dm = load_halves(blk, WT == WQ4_1);
    const __m256 d = _mm256_broadcastss_ps(dm);
    __m256i q[4];
    if (WT == WQ8_0) eft__widen_i8x32(q, blk + 2);
    else eft__widen_nibbles32(q, blk + (WT == WQ4_0 ? 2 : 4), WT == WQ4_0 ? 8 : 0);
    if (WT != WQ4_1) {
        w[0] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(q[0]));
        w[1] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(q[1]));
        w[2] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(q[2]));
        w[3] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(q[3]));
        return;
    }
    const __m256 mn = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
    w[0] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q[0]), mn);
    w[1] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q[1]), mn);
    w[2] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q[2]), mn);
    w[3] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q[3]), mn);
}

/* Bytes ahead of the block being decoded that the batch GEMV prefetches (rows are contiguous, so
 * this runs into the next rows): with weights from memory, one thread went from 40-42 to 49
 * GFLOPS (SmolLM2 gate, 8 rows). When K is taken in chunks (eft__gemv_chunk_blocks) the next
 * blocks read are the same chunk of the following rows, so it prefetches four rows ahead instead. */
enum { GEMV_PREFETCH = 1024 };
static inline size_t wq_bytes(const int WT) {
    return WT == WQ8_0 ? sizeof(eft__block_q8_0) : WT == WQ4_0 ? sizeof(eft__block_q4_0) : sizeof(eft__block_q4_1);
}

/* M activation rows (1..8) against each weight row: the block is widened once, in registers, and
 * every row takes its FMAs from it, so a decode batch of up to eight sequences streams and decodes
 * each weight once. One row gets four partial sums (one per vector of the block) so consecutive
 * blocks' FMAs do not wait on each other's 4-cycle latency; three or four rows get two each, five
 * to eight one each (eight chains of four FMAs cover the latency by themselves), which with the
 * block's four weight vectors stays within the 16 registers. A K longer than L1 holds for the M
 * rows goes in chunks (simd_avx2.h); the chunks after the first add into c. */
static inline __attribute__((always_inline)) void gemv(float *c, int64_t ldc, const float *a, int64_t lda, const int M,
                                                       const uint8_t *w, size_t row_bytes, int64_t nrows, int64_t nb,
                                                       const float *bias, const int WT) {
    const int NA = M <= 2 ? 4 : M <= 4 ? 2 : 1;
    const size_t bb = wq_bytes(WT);
    const int64_t kcb = eft__gemv_chunk_blocks(M, nb, EFT__QK);
    const size_t pf = kcb < nb ? 4 * row_bytes : GEMV_PREFETCH;
    for (int64_t b0 = 0; b0 < nb; b0 += kcb) {
        const int64_t b1 = nb - b0 < kcb ? nb : b0 + kcb;
        for (int64_t j = 0; j < nrows; j++) {
            const uint8_t *wr = w + (size_t)j * row_bytes;
            __m256 acc[8][4];
#pragma GCC unroll 8
            for (int i = 0; i < M; i++)
#pragma GCC unroll 4
                for (int u = 0; u < NA; u++) acc[i][u] = _mm256_setzero_ps();
            for (int64_t b = b0; b < b1; b++) {
                __m256 wv[4];
                _mm_prefetch((const char *)(wr + (size_t)b * bb) + pf, _MM_HINT_T0);
                decode_block(wv, wr + (size_t)b * bb, WT);
#pragma GCC unroll 8
                for (int i = 0; i < M; i++) {
                    const float *ai = a + i * lda + 32 * b;
#pragma GCC unroll 4
                    for (int e = 0; e < 4; e++)
                        acc[i][e % NA] = _mm256_fmadd_ps(_mm256_loadu_ps(ai + 8 * e), wv[e], acc[i][e % NA]);
                }
            }
            eft__gemv_store(c, ldc, acc, M, NA, j, bias, b0 == 0);
        }
    }
}

/* One or two activation rows: the scale comes out of the block's sum. The quants are widened to
 * f32 integers (vpmovsxbd / vpmovzxbd straight from memory, no shuffles), s = sum_e q_e x_e is
 * summed in f32 and the block adds d s: one multiply by d per block instead of one per vector.
 * Q4_1's minimum contributes m sum_e x_e, the block sum of the activations, taken from the vectors
 * already loaded. With one activation row two weight rows go together and share those loads.
 * Exactness against eft__dequantize_row: d and q are exact in f32 and so is d q; a one-hot row
 * gives d q (+ m, one rounding) as the reference's weight. Other rows differ from "dequantise,
 * then multiply-add" only in where the products round, which the float sums' order already does. */
static inline __attribute__((always_inline)) void block_ints(__m256 q[4], const uint8_t *blk, const int WT) {
    __m256i v[4];
    if (WT == WQ8_0) eft__widen_i8x32(v, blk + 2);
    else eft__widen_nibbles32(v, blk + (WT == WQ4_0 ? 2 : 4), WT == WQ4_0 ? 8 : 0);
    q[0] = _mm256_cvtepi32_ps(v[0]), q[1] = _mm256_cvtepi32_ps(v[1]);
    q[2] = _mm256_cvtepi32_ps(v[2]), q[3] = _mm256_cvtepi32_ps(v[3]);
}

/* R weight rows (1 or 2) times M activation rows (1 or 2; R * M <= 2). */
static inline __attribute__((always_inline)) void gemv_small(float *c, int64_t ldc, const float *a, int64_t lda,
                                                             const int M, const int R, const uint8_t *wr,
                                                             size_t row_bytes, int64_t nb, const float *bias,
                                                             int64_t j, const int WT) {
    const size_t bb = wq_bytes(WT);
    __m256 acc[2][2], accm[2][2];
#pragma GCC unroll 2
    for (int i = 0; i < M; i++)
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) acc[i][r] = accm[i][r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256 x[2][4], sx[2];
#pragma GCC unroll 2
        for (int i = 0; i < M; i++) {
            const float *ai = a + i * lda + 32 * b;
            x[i][0] = _mm256_loadu_ps(ai), x[i][1] = _mm256_loadu_ps(ai + 8);
            x[i][2] = _mm256_loadu_ps(ai + 16), x[i][3] = _mm256_loadu_ps(ai + 24);
            if (WT == WQ4_1) sx[i] = _mm256_add_ps(_mm256_add_ps(x[i][0], x[i][1]), _mm256_add_ps(x[i][2], x[i][3]));
        }
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            const uint8_t *blk = wr + (size_t)r * row_bytes + (size_t)b * bb;
            const __m128 dm = load_halves(blk, WT == WQ4_1);
            const __m256 d = _mm256_broadcastss_ps(dm);
            __m256 q[4];
            block_ints(q, blk, WT);
#pragma GCC unroll 2
            for (int i = 0; i < M; i++) {
                __m256 s = _mm256_mul_ps(q[0], x[i][0]);
                s = _mm256_fmadd_ps(q[1], x[i][1], s);
                s = _mm256_fmadd_ps(q[2], x[i][2], s);
                s = _mm256_fmadd_ps(q[3], x[i][3], s);
                acc[i][r] = _mm256_fmadd_ps(d, s, acc[i][r]);
                if (WT == WQ4_1) accm[i][r] = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(dm)), sx[i], accm[i][r]);
            }
        }
    }
#pragma GCC unroll 2
    for (int i = 0; i < M; i++)
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            __m256 s = WT == WQ4_1 ? _mm256_add_ps(acc[i][r], accm[i][r]) : acc[i][r];
            float v = eft__hsum256(s);
            c[i * ldc + j + r] = bias ? v + bias[j + r] : v;
        }
}

static inline __attribute__((always_inline)) void gemv_12(float *c, int64_t ldc, const float *a, int64_t lda,
                                                          const int M, const uint8_t *w, size_t row_bytes, int64_t nrows,
                                                          int64_t nb, const float *bias, const int WT) {
    /* Two rows of Q4_1: the per-row block sums and minimum FMAs cost more than widening each
     * weight once for both rows saves (callgrind: 3.73M against 3.27M instructions, SmolLM2 gate). */
    if (M == 2 && WT == WQ4_1) {
        gemv(c, ldc, a, lda, 2, w, row_bytes, nrows, nb, bias, WT);
        return;
    }
    int64_t j = 0;
    /* Q8_0 keeps one weight row per pass: two ran at 2.1 GB/s against 5.3-6.0 for one (one thread,
     * CPU time, SmolLM2 gate 1536x576 cycled through 64 copies), though callgrind counted fewer
     * instructions; the cause is not known yet. */
    if (M == 1 && WT != WQ8_0)
        for (; j + 2 <= nrows; j += 2) gemv_small(c, ldc, a, lda, 1, 2, w + (size_t)j * row_bytes, row_bytes, nb, bias, j, WT);
    for (; j < nrows; j++) gemv_small(c, ldc, a, lda, M, 1, w + (size_t)j * row_bytes, row_bytes, nb, bias, j, WT);
}

#define GEMV_M(WT)                                                                                  \
    switch (m) {                                                                                    \
    case 1: gemv_12(c, ldc, a, lda, 1, w, row_bytes, nrows, nb, bias, WT); break;                   \
    case 2: gemv_12(c, ldc, a, lda, 2, w, row_bytes, nrows, nb, bias, WT); break;                   \
    case 3: gemv(c, ldc, a, lda, 3, w, row_bytes, nrows, nb, bias, WT); break;                      \
    case 4: gemv(c, ldc, a, lda, 4, w, row_bytes, nrows, nb, bias, WT); break;                      \
    case 5: gemv(c, ldc, a, lda, 5, w, row_bytes, nrows, nb, bias, WT); break;                      \
    case 6: gemv(c, ldc, a, lda, 6, w, row_bytes, nrows, nb, bias, WT); break;                      \
    case 7: gemv(c, ldc, a, lda, 7, w, row_bytes, nrows, nb, bias, WT); break;                      \
    default: gemv(c, ldc, a, lda, 8, w, row_bytes, nrows, nb, bias, WT); break;                     \
    }

static void qgemv_f32(float *c, int64_t ldc, const float *a, int64_t lda, int m, eft_dtype wtype, const void *wv,
                      size_t row_bytes, int64_t nrows, int64_t k, const float *bias) {
    const uint8_t *w = wv;
    const int64_t nb = k / EFT__QK;
    if (m < 1) return;
    switch (wtype) {
    case EFT_DTYPE_Q8_0: GEMV_M(WQ8_0); break;
    case EFT_DTYPE_Q4_0: GEMV_M(WQ4_0); break;
    case EFT_DTYPE_Q4_1: GEMV_M(WQ4_1); break;
    default: break;
    }
}

/* Per block and half-panel of 8 channels: decode the 8 rows' blocks into a 1 KiB row-major tile
 * (L1, and store-to-load forwarded), then write it out k-major through four 8 x 8 transposes,
 * whole 32-byte aligned stores into the panel. */
static inline __attribute__((always_inline)) void panel(float *wp, const uint8_t *w, size_t row_bytes, int nr,
                                                        int64_t k0, int64_t kc, const int WT) {
    const size_t bb = wq_bytes(WT);
    _Alignas(32) float t[8][EFT__QK];
    for (int64_t kb = 0; kb < kc; kb += EFT__QK) {
        const size_t boff = (size_t)((k0 + kb) / EFT__QK) * bb;
        float *out = wp + kb * EFT__SGEMM_NR;
        for (int h = 0; h < 2; h++) {
            int rows = nr - 8 * h;
            if (rows <= 0) {
                for (int q = 0; q < EFT__QK; q++) _mm256_store_ps(out + q * EFT__SGEMM_NR + 8 * h, _mm256_setzero_ps());
                continue;
            }
            for (int r = 0; r < 8; r++) {
                __m256 v[4];
                if (r < rows) decode_block(v, w + (size_t)(8 * h + r) * row_bytes + boff, WT);
                else v[0] = v[1] = v[2] = v[3] = _mm256_setzero_ps();
                for (int e = 0; e < 4; e++) _mm256_store_ps(t[r] + 8 * e, v[e]);
            }
            for (int e = 0; e < 4; e++) {
                __m256 r8[8];
                for (int r = 0; r < 8; r++) r8[r] = _mm256_load_ps(t[r] + 8 * e);
                eft__transpose8_ps(r8);
                for (int q = 0; q < 8; q++) _mm256_store_ps(out + (8 * e + q) * EFT__SGEMM_NR + 8 * h, r8[q]);
            }
        }
    }
}

static void qpanel_f32(float *wp, eft_dtype wtype, const void *w, size_t row_bytes, int nr, int64_t k0, int64_t kc) {
    switch (wtype) {
    case EFT_DTYPE_Q8_0: panel(wp, w, row_bytes, nr, k0, kc, WQ8_0); break;
    case EFT_DTYPE_Q4_0: panel(wp, w, row_bytes, nr, k0, kc, WQ4_0); break;
    case EFT_DTYPE_Q4_1: panel(wp, w, row_bytes, nr, k0, kc, WQ4_1); break;
    default: break;
    }
}

void eft__kernels_fill_q8_avx2(eft__kernels *k) {
    k->quantize_row_q8_a = quantize_row_q8_a;
    k->dot_q8_0_q8_a = dot_q8_0_q8_a;
    k->dot_q4_0_q8_a = dot_q4_0_q8_a;
    k->dot_q4_1_q8_a = dot_q4_1_q8_a;
    k->qgemv_f32 = qgemv_f32;
    k->qpanel_f32 = qpanel_f32;
}
