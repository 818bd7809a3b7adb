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
 *
 * Three planes (f32 activations, kernels.h: quantize_row_q8_x4a_x3) sit at fixed scales 1, 2^-8
 * and 2^-15 of one another, so a block's three integer dots add in int32 with shifts and take one
 * conversion, one FMA and one minimum term, where planes with scales of their own took three of
 * each: ~12 % less time on the SmolLM2 gate matrix (L2-resident, one thread, 51 -> 45 us).
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
        __m256i s32[3];
#pragma GCC unroll 3
        for (int i = 0; i < M; i++) {
            const eft__block_q8_x4a *ab = a + i * lda + b;
            const __m256i a0 = _mm256_loadu_si256((const __m256i *)ab->qs[0]), a1 = _mm256_loadu_si256((const __m256i *)ab->qs[1]);
            const __m256i a2 = _mm256_loadu_si256((const __m256i *)ab->qs[2]), a3 = _mm256_loadu_si256((const __m256i *)ab->qs[3]);
            if (WT == XQ8_0) {
                __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w[0], w[0]), _mm256_sign_epi8(a0, w[0])), ones);
                __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w[1], w[1]), _mm256_sign_epi8(a1, w[1])), ones);
                __m256i p2 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w[2], w[2]), _mm256_sign_epi8(a2, w[2])), ones);
                __m256i p3 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w[3], w[3]), _mm256_sign_epi8(a3, w[3])), ones);
                s32[i] = _mm256_add_epi32(_mm256_add_epi32(p0, p1), _mm256_add_epi32(p2, p3));
            } else {
                __m256i s0 = _mm256_add_epi16(_mm256_maddubs_epi16(w[0], a0), _mm256_maddubs_epi16(w[1], a1));
                __m256i s1 = _mm256_add_epi16(_mm256_maddubs_epi16(w[2], a2), _mm256_maddubs_epi16(w[3], a3));
                s32[i] = _mm256_madd_epi16(_mm256_add_epi16(s0, s1), ones);
            }
            if (!SHARED) {
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32[i]), _mm256_mul_ps(d8, _mm256_set1_ps(ab->d)), acc[i]);
                if (WT != XQ8_0) accm[i] = _mm_fmadd_ps(mv, _mm_set1_ps(ab->ds), accm[i]);
            }
        }
        if (SHARED) {
            /* The planes' integer dots weighted 2^15, 2^7 and 1 add exactly in int32 (a Q4 lane
             * sums 16 products of at most 15 x 127: 30480 2^15 + 30480 (2^7 + 1) < 2^30); Q8_0's
             * first plane (16 x 127 x 127 per lane) would overflow and converts on its own. Plane
             * 1's d carries the 2^-15, its ds the whole block's sum. */
            const eft__block_q8_x4a *ab = a + b;
            const __m256 dd = _mm256_mul_ps(d8, _mm256_set1_ps(ab->d));
            const __m256i lo = _mm256_add_epi32(_mm256_slli_epi32(s32[1], 7), s32[2]);
            if (WT == XQ8_0) {
                acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32[0]), _mm256_mul_ps(dd, _mm256_set1_ps(32768.0f)), acc[0]);
                acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), dd, acc[0]);
            } else {
                acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_slli_epi32(s32[0], 15), lo)), dd, acc[0]);
                accm[0] = _mm_fmadd_ps(mv, _mm_set1_ps(ab->ds), accm[0]);
            }
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
            /* One f32 row as three int8 planes: one pass, the weights decoded once, the planes'
             * integer dots added per block before one conversion (group_rows, SHARED). */
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

/* Four vectors of int32 levels as the interleaved bytes the GEMV reads: each vector's four-byte
 * group broadcast across its half. */
static inline void put_levels(eft__block_q8_x4a *b, const __m256i q[4]) {
    const __m256i p = eft__q8_levels_bytes(q);
    _mm256_storeu_si256((__m256i *)b->qs[0], _mm256_shuffle_epi32(p, 0x00));
    _mm256_storeu_si256((__m256i *)b->qs[1], _mm256_shuffle_epi32(p, 0x55));
    _mm256_storeu_si256((__m256i *)b->qs[2], _mm256_shuffle_epi32(p, 0xaa));
    _mm256_storeu_si256((__m256i *)b->qs[3], _mm256_shuffle_epi32(p, 0xff));
}

/* As qx4.c's scalar quantiser, to the bit: the same scale, the same half-to-even rounding (the
 * default MXCSR). */
static void quantize_row_q8_x4a(eft__block_q8_x4a *out, const float *x, int64_t n) {
    for (int64_t b = 0; b < n / EFT__QK; b++, x += EFT__QK) {
        __m256 v[4];
        __m256i q[4];
        const float d = eft__q8_levels(x, v, q);
        put_levels(&out[b], q);
        out[b].d = d;
        out[b].ds = d * (float)eft__q8_levels_sum(q);
    }
}

/* The scalar version's operations in its order (qx4.c). The empty asm keeps GCC from fusing a
 * product into the subtraction that follows it (an FMA), which the scalar version cannot match. */
static void quantize_row_q8_x4a_x3(eft__block_q8_x4a *out, const float *x, int64_t n, int64_t ld) {
    const __m256i lim = _mm256_set1_epi32(127), nlim = _mm256_set1_epi32(-127);
    for (int64_t b = 0; b < n / EFT__QK; b++, x += EFT__QK) {
        __m256 v[4];
        __m256i q1[4], q2[4], q3[4];
        const float d = eft__q8_levels(x, v, q1), id = d != 0.0f ? 1.0f / d : 0.0f;
        const __m256 vd = _mm256_set1_ps(d), vid = _mm256_set1_ps(id), vd8 = _mm256_set1_ps(d * (1.0f / 256));
        __m256i s = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            __m256 p1 = _mm256_mul_ps(vd, _mm256_cvtepi32_ps(q1[i]));
            __asm__("" : "+x"(p1));
            const __m256 r1 = _mm256_sub_ps(v[i], p1);
            q2[i] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_mul_ps(r1, vid), _mm256_set1_ps(256.0f)));
            q2[i] = _mm256_max_epi32(_mm256_min_epi32(q2[i], lim), nlim);
            __m256 p2 = _mm256_mul_ps(vd8, _mm256_cvtepi32_ps(q2[i]));
            __asm__("" : "+x"(p2));
            const __m256 r2 = _mm256_sub_ps(r1, p2);
            q3[i] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_mul_ps(r2, vid), _mm256_set1_ps(32768.0f)));
            q3[i] = _mm256_max_epi32(_mm256_min_epi32(q3[i], lim), nlim);
            s = _mm256_add_epi32(s, _mm256_add_epi32(_mm256_slli_epi32(q1[i], 15), _mm256_slli_epi32(q2[i], 7)));
            s = _mm256_add_epi32(s, q3[i]);
        }
        put_levels(&out[b], q1);
        put_levels(&out[ld + b], q2);
        put_levels(&out[2 * ld + b], q3);
        out[ld + b].d = out[ld + b].ds = out[2 * ld + b].d = out[2 * ld + b].ds = 0;
        out[b].d = d * (1.0f / 32768);
        out[b].ds = out[b].d * (float)eft__hsum_epi32(s);
    }
}

void eft__kernels_fill_qx4_avx2(eft__kernels *k) {
    k->qx4_gemv = qx4_gemv;
    k->quantize_row_q8_x4a = quantize_row_q8_x4a;
    k->quantize_row_q8_x4a_x3 = quantize_row_q8_x4a_x3;
}
