/*
 * qx4_avx2.c — the int8-activation GEMV over four-row interleaved weights (qx4.c, kernels.h).
 *
 * Per block of 32 elements and four weight rows: the four 32-byte quant vectors (Q4: two loads and
 * a nibble split; Q8_0: four loads), and per activation row the four activation vectors with the
 * matching four bytes in every lane (eft__block_q8_x4a stores them so; shuffling them here cost
 * 16-19 % of the int8 GEMV's single-thread time), vpmaddubsw, and one vpmaddwd at the end. The int32
 * lanes then hold row l % 4's partial sum over the block's low (l < 4) or high (l >= 4) sixteen
 * elements, so one conversion and one FMA with the four rows' scales times the activation scale
 * accumulate all four rows. The two halves are added once, at the end of the row.
 *
 * Q4 products are nibble (0..15) times int8 (-127..127): a vpmaddubsw pair is at most 3810 and four
 * vectors' pairs sum to at most 15240, so the int16 sums of all four vectors fit before the single
 * vpmaddwd. Q8_0 uses the sign trick (|w| unsigned, a with w's sign) and widens each vector's pairs
 * to int32 separately: two such pairs can reach 32512 each. Q4_0's offset -8 and Q4_1's minimum add
 * m_w d_a sum(a) per block (m_w = -8 d_w for Q4_0) into a second, 128-bit accumulator.
 */
#include "kernels.h"
#include "simd_avx2.h"

enum { XQ4_0, XQ4_1, XQ8_0 };
enum { PREFETCH = 1024 }; /* bytes ahead of the block being read */

static inline size_t xbytes(const int WT) {
    return WT == XQ4_0 ? sizeof(eft__block_q4_0x4) : WT == XQ4_1 ? sizeof(eft__block_q4_1x4) : sizeof(eft__block_q8_0x4);
}

/* M (1 to 3) activation rows against one group of four weight rows: out[i] holds the four rows'
 * sums for activation row i, or (SHARED) out[0] the sums over all M rows, which are then the
 * planes of one f32 row. */
static inline __attribute__((always_inline)) void group_rows(__m128 *out, const eft__block_q8_x4a *a, int64_t lda,
                                                             const int M, const uint8_t *wg, int64_t nb, const int WT,
                                                             const int SHARED) {
    const size_t bb = xbytes(WT);
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    __m256 acc[3] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    __m128 accm[3] = {_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps()};
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = wg + (size_t)b * bb;
        /* A kilobyte ahead: one core's hardware prefetch alone kept the SmolLM2 layers at 7-8
         * GB/s, this at 8-9.4 (two threads 12-12.7 -> 13.3-14.8, per the layer microbenchmark). */
        _mm_prefetch((const char *)blk + PREFETCH, _MM_HINT_T0);
        if (WT == XQ8_0) _mm_prefetch((const char *)blk + PREFETCH + 64, _MM_HINT_T0);
        const __m128 dv = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)blk));
        const __m256 d8 = _mm256_set_m128(dv, dv);
        __m128 mv = _mm_setzero_ps();
        if (WT == XQ4_1) mv = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(blk + 8)));
        if (WT == XQ4_0) mv = _mm_mul_ps(dv, _mm_set1_ps(-8.0f));
        __m256i w[4];
        if (WT == XQ8_0) {
            for (int v = 0; v < 4; v++) w[v] = _mm256_loadu_si256((const __m256i *)(blk + 8 + 32 * v));
        } else {
            const uint8_t *qs = blk + (WT == XQ4_1 ? 16 : 8);
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)qs), l1 = _mm256_loadu_si256((const __m256i *)(qs + 32));
            w[0] = _mm256_and_si256(l0, m4);
            w[1] = _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4);
            w[2] = _mm256_and_si256(l1, m4);
            w[3] = _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4);
        }
#pragma GCC unroll 3
        for (int i = 0; i < M; i++) {
            const eft__block_q8_x4a *ab = a + i * lda + b;
            const __m256i a0 = _mm256_loadu_si256((const __m256i *)ab->qs[0]), a1 = _mm256_loadu_si256((const __m256i *)ab->qs[1]);
            const __m256i a2 = _mm256_loadu_si256((const __m256i *)ab->qs[2]), a3 = _mm256_loadu_si256((const __m256i *)ab->qs[3]);
            __m256i s32;
            if (WT == XQ8_0) {
                __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w[0], w[0]), _mm256_sign_epi8(a0, w[0])), ones);
                __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w[1], w[1]), _mm256_sign_epi8(a1, w[1])), ones);
                __m256i p2 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w[2], w[2]), _mm256_sign_epi8(a2, w[2])), ones);
                __m256i p3 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w[3], w[3]), _mm256_sign_epi8(a3, w[3])), ones);
                s32 = _mm256_add_epi32(_mm256_add_epi32(p0, p1), _mm256_add_epi32(p2, p3));
            } else {
                __m256i s0 = _mm256_add_epi16(_mm256_maddubs_epi16(w[0], a0), _mm256_maddubs_epi16(w[1], a1));
                __m256i s1 = _mm256_add_epi16(_mm256_maddubs_epi16(w[2], a2), _mm256_maddubs_epi16(w[3], a3));
                s32 = _mm256_madd_epi16(_mm256_add_epi16(s0, s1), ones);
            }
            const int o = SHARED ? 0 : i;
            acc[o] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), _mm256_mul_ps(d8, _mm256_set1_ps(ab->d)), acc[o]);
            if (WT != XQ8_0) accm[o] = _mm_fmadd_ps(mv, _mm_set1_ps(ab->ds), accm[o]);
        }
    }
    const int nout = SHARED ? 1 : M;
#pragma GCC unroll 3
    for (int i = 0; i < nout; i++)
        out[i] = _mm_add_ps(_mm_add_ps(_mm256_castps256_ps128(acc[i]), _mm256_extractf128_ps(acc[i], 1)), accm[i]);
}

/* Rows 0..nr-1 of r (+ bias) into c. */
static inline void store_rows(float *c, __m128 r, int nr, const float *bias) {
    if (bias) r = _mm_add_ps(r, nr == 4 ? _mm_loadu_ps(bias) : _mm_setr_ps(bias[0], nr > 1 ? bias[1] : 0, nr > 2 ? bias[2] : 0, 0));
    if (nr == 4) {
        _mm_storeu_ps(c, r);
        return;
    }
    float t[4];
    _mm_storeu_ps(t, r);
    for (int j = 0; j < nr; j++) c[j] = t[j];
}

static inline __attribute__((always_inline)) void gemv(float *c, int64_t ldc, const eft__block_q8_x4a *a, int64_t lda,
                                                       int m, int planes, const uint8_t *w, int64_t ngroups,
                                                       int64_t nb, int64_t nrows, const float *bias, const int WT) {
    const size_t gb = (size_t)nb * xbytes(WT);
    for (int64_t g = 0; g < ngroups && 4 * g < nrows; g++) {
        const uint8_t *wg = w + (size_t)g * gb;
        int nr = nrows - 4 * g < 4 ? (int)(nrows - 4 * g) : 4;
        const float *bg = bias ? bias + 4 * g : NULL;
        __m128 r[2];
        if (planes == 3) {
            /* One f32 row as three int8 planes: one pass, the weights decoded once, every plane's
             * block product into the same accumulators (they are parts of the same sums). */
            for (int i = 0; i < m; i++) {
                group_rows(r, a + (int64_t)i * 3 * lda, lda, 3, wg, nb, WT, 1);
                store_rows(c + i * ldc + 4 * g, r[0], nr, bg);
            }
            continue;
        }
        int i = 0;
        for (; i + 2 <= m; i += 2) {
            group_rows(r, a + i * lda, lda, 2, wg, nb, WT, 0);
            store_rows(c + i * ldc + 4 * g, r[0], nr, bg);
            store_rows(c + (i + 1) * ldc + 4 * g, r[1], nr, bg);
        }
        if (i < m) {
            group_rows(r, a + i * lda, lda, 1, wg, nb, WT, 0);
            store_rows(c + i * ldc + 4 * g, r[0], nr, bg);
        }
    }
}

static void qx4_gemv(float *c, int64_t ldc, const eft__block_q8_x4a *a, int64_t lda, int m, int planes, eft_dtype wtype,
                     const void *w, int64_t ngroups, int64_t nb, int64_t nrows, const float *bias) {
    if (planes != 1 && planes != 3) return;
    switch (wtype) {
    case EFT_DTYPE_Q4_0: gemv(c, ldc, a, lda, m, planes, w, ngroups, nb, nrows, bias, XQ4_0); break;
    case EFT_DTYPE_Q4_1: gemv(c, ldc, a, lda, m, planes, w, ngroups, nb, nrows, bias, XQ4_1); break;
    case EFT_DTYPE_Q8_0: gemv(c, ldc, a, lda, m, planes, w, ngroups, nb, nrows, bias, XQ8_0); break;
    default: break;
    }
}

/* As qx4.c's scalar quantiser, to the bit: the same scale, the same half-to-even rounding (the
 * default MXCSR), the residual as a separate multiply and subtract. */
static void quantize_row_q8_x4a(eft__block_q8_x4a *out, const float *x, int64_t n, float *resid) {
    for (int64_t b = 0; b < n / EFT__QK; b++, x += EFT__QK) {
        __m256 v[4];
        __m256i q[4];
        const float d = eft__q8_levels(x, v, q);
        if (resid) {
            /* The products stay separate roundings: the empty asm keeps GCC from fusing them into
             * the subtraction (an FMA), which the scalar version, without FMA, cannot match. */
            const __m256 vd = _mm256_set1_ps(d);
            __m256 p0 = _mm256_mul_ps(vd, _mm256_cvtepi32_ps(q[0])), p1 = _mm256_mul_ps(vd, _mm256_cvtepi32_ps(q[1]));
            __m256 p2 = _mm256_mul_ps(vd, _mm256_cvtepi32_ps(q[2])), p3 = _mm256_mul_ps(vd, _mm256_cvtepi32_ps(q[3]));
            __asm__("" : "+x"(p0), "+x"(p1), "+x"(p2), "+x"(p3));
            float *r = resid + b * EFT__QK;
            _mm256_storeu_ps(r, _mm256_sub_ps(v[0], p0));
            _mm256_storeu_ps(r + 8, _mm256_sub_ps(v[1], p1));
            _mm256_storeu_ps(r + 16, _mm256_sub_ps(v[2], p2));
            _mm256_storeu_ps(r + 24, _mm256_sub_ps(v[3], p3));
        }
        /* Each vector's four-byte group broadcast across its half, as the GEMV reads it. */
        const __m256i p = eft__q8_levels_bytes(q);
        _mm256_storeu_si256((__m256i *)out[b].qs[0], _mm256_shuffle_epi32(p, 0x00));
        _mm256_storeu_si256((__m256i *)out[b].qs[1], _mm256_shuffle_epi32(p, 0x55));
        _mm256_storeu_si256((__m256i *)out[b].qs[2], _mm256_shuffle_epi32(p, 0xaa));
        _mm256_storeu_si256((__m256i *)out[b].qs[3], _mm256_shuffle_epi32(p, 0xff));
        out[b].d = d;
        out[b].ds = d * (float)eft__q8_levels_sum(q);
    }
}

void eft__kernels_fill_qx4_avx2(eft__kernels *k) {
    k->qx4_gemv = qx4_gemv;
    k->quantize_row_q8_x4a = quantize_row_q8_x4a;
}
