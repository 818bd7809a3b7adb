/*
 * simd_avx2.h — small AVX2+FMA building blocks shared by the *_avx2.c files: horizontal sums,
 * tail masks, and vector exp/erf/tanh approximations. Include only from files compiled with
 * -mavx2 -mfma -mf16c (the *_avx2.c files).
 */
#ifndef EFT_SIMD_AVX2_H
#define EFT_SIMD_AVX2_H

#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>

static inline float eft__hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float eft__hmax256(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Lane mask for the first r (0..8) lanes, for maskload/maskstore on row tails. */
static inline __m256i eft__tail_mask(int64_t r) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* exp(x), relative error about 2 ulp on [-87, 88]; 0 below, clamped above. Cody-Waite range
 * reduction and Cephes' degree-6 polynomial. */
static inline __m256 eft__exp256(__m256 x) {
    x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-88.3762626647949f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n by building the exponent; n = -127 gives +0, which is what exp of such x rounds to. */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* 2^x for x <= 0, as the softmax's exponents are in base 2: the range reduction is one add of
 * 1.5 * 2^23 (which leaves round(x) in the low mantissa bits), 2^f on [-0.5, 0.5] is the
 * degree-6 Taylor series (relative error 1.6e-7), and 2^n is added to the result's exponent
 * bits instead of multiplied in. About 12 operations against exp256's 17. x is clamped at -126
 * so the result stays a normal float: it is 2^-126 (not 0) far below, and callers that need
 * exact zeros (masked keys) mask them. */
static inline __m256 eft__exp2_256_nonpos(__m256 x) {
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    x = _mm256_max_ps(x, _mm256_set1_ps(-126.0f));
    __m256 t = _mm256_add_ps(x, magic);
    __m256 f = _mm256_sub_ps(x, _mm256_sub_ps(t, magic));
    __m256 p = _mm256_set1_ps(1.5403530393381606e-4f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3333558146428441e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.618129107628477e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.5504108664821576e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.402265069591007e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931471805599453e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    /* t's bits are those of 1.5 * 2^23 plus n, and 1.5 * 2^23 << 23 vanishes mod 2^32. */
    __m256i e = _mm256_slli_epi32(_mm256_castps_si256(t), 23);
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
}

/* tanh(x) = 1 - 2 / (exp(2x) + 1): absolute error about 1e-7, which is what GELU needs. */
static inline __m256 eft__tanh256(__m256 x) {
    __m256 e = eft__exp256(_mm256_add_ps(x, x));
    return _mm256_sub_ps(_mm256_set1_ps(1.0f),
                         _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
}

/* erf(x), Abramowitz & Stegun 7.1.26: absolute error under 1.5e-7 (plus rounding). */
static inline __m256 eft__erf256(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 s = _mm256_and_ps(x, sign);
    __m256 a = _mm256_andnot_ps(sign, x);
    __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(a, _mm256_set1_ps(0.3275911f), _mm256_set1_ps(1.0f)));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    p = _mm256_mul_ps(p, t);
    __m256 e = eft__exp256(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(a, a)));
    __m256 y = _mm256_fnmadd_ps(p, e, _mm256_set1_ps(1.0f));
    return _mm256_or_ps(y, s);
}

/* In-register transpose: r[q] becomes column q of the 8 x 8 block of rows r[0..7]. Used where a
 * kernel writes rows it decoded k-major (panel packing, attention's key pack). */
static inline __attribute__((always_inline)) void eft__transpose8_ps(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20), r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20), r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31), r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31), r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* One block of 32 activations to int8 levels, llama.cpp's way: d = max|x| / 127 and each x / d
 * rounded half to even (cvtps under the default MXCSR, as nearbyintf), returned as four vectors of
 * int32 (elements 0-7, 8-15, 16-23, 24-31) with d. The two int8-activation quantisers share it. */
static inline __attribute__((always_inline)) float eft__q8_levels(const float *x, __m256 v[4], __m256i q[4]) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    v[0] = _mm256_loadu_ps(x), v[1] = _mm256_loadu_ps(x + 8), v[2] = _mm256_loadu_ps(x + 16), v[3] = _mm256_loadu_ps(x + 24);
    __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                              _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
    float d = eft__hmax256(mx) / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    for (int i = 0; i < 4; i++) q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], vid));
    return d;
}

/* The sum of the eight int32 lanes. */
static inline int32_t eft__hsum_epi32(__m256i s) {
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    return _mm_cvtsi128_si32(s4);
}

/* The sum of the 32 levels, and the levels as 32 bytes in element order (the packs interleave
 * 128-bit lanes; the permute undoes it). */
static inline int32_t eft__q8_levels_sum(const __m256i q[4]) {
    return eft__hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
}

static inline __m256i eft__q8_levels_bytes(const __m256i q[4]) {
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* 32 quants of a weight block as four vectors of int32, elements 0-7, 8-15, 16-23, 24-31, widened
 * straight from memory eight bytes at a time (vpmovzxbd / vpmovsxbd with a memory operand).
 * Widening sixteen bytes in a register and splitting its halves took four more shuffles per 32,
 * which share a port with the FMAs: the 8-row f32 GEMV went from 58 to 68 GFLOPS.
 * eft__widen_nibbles32: 16 bytes of 4-bit quants (bytes 0-7 hold elements 0-7 in their low
 * nibbles and 16-23 in their high ones, bytes 8-15 the rest), minus off (8 for the symmetric
 * types: the integers the reference converts). eft__widen_i8x32: 32 int8. */
static inline __attribute__((always_inline)) void eft__widen_nibbles32(__m256i q[4], const uint8_t *qs, const int off) {
    const __m256i v0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)qs));
    const __m256i v1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qs + 8)));
    const __m256i m4 = _mm256_set1_epi32(15);
    q[0] = _mm256_and_si256(v0, m4), q[1] = _mm256_and_si256(v1, m4);
    q[2] = _mm256_srli_epi32(v0, 4), q[3] = _mm256_srli_epi32(v1, 4);
    if (off) {
        /* Written out: GCC (-O2) kept such loops, and with them q[] in memory. */
        const __m256i o = _mm256_set1_epi32(off);
        q[0] = _mm256_sub_epi32(q[0], o), q[1] = _mm256_sub_epi32(q[1], o);
        q[2] = _mm256_sub_epi32(q[2], o), q[3] = _mm256_sub_epi32(q[3], o);
    }
}

static inline __attribute__((always_inline)) void eft__widen_i8x32(__m256i q[4], const uint8_t *qs) {
    q[0] = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)qs));
    q[1] = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(qs + 8)));
    q[2] = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(qs + 16)));
    q[3] = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(qs + 24)));
}

/* The batch GEMVs (qgemm_avx2.c, gqgemm_avx2.c) read every weight row against all of their m
 * activation rows, so the rows' run of K should stay in L1 while the weight rows pass. Past
 * EFT__GEMV_L1_MAX floats (8 rows of SmolLM2's down projection, K = 1536: 48 KiB) they take K in
 * chunks of about EFT__GEMV_L1_CHUNK floats, each chunk over all the weight rows before the next:
 * one thread on that matrix went from 31 to 21 cycles per block, the 8 rows' partial sums adding
 * into c once per chunk. Returns the blocks (of bf floats) per chunk: nb when everything fits. */
enum { EFT__GEMV_L1_MAX = 6144, EFT__GEMV_L1_CHUNK = 4096 };
static inline int64_t eft__gemv_chunk_blocks(int m, int64_t nb, int bf) {
    const int64_t per_block = (int64_t)m * bf;
    if (nb * per_block <= EFT__GEMV_L1_MAX) return nb;
    int64_t fit = EFT__GEMV_L1_CHUNK / per_block, chunks;
    if (fit < 1) fit = 1;
    chunks = (nb + fit - 1) / fit;
    return (nb + chunks - 1) / chunks;
}

/* The batch GEMVs' end of a weight row j: row i's NA partial sums acc[i][0 .. NA) summed into
 * c[i ldc + j], plus bias[j] in the first chunk of K, added to c's partial sum in the others. */
static inline __attribute__((always_inline)) void eft__gemv_store(float *c, int64_t ldc, __m256 acc[][4], const int M,
                                                                  const int NA, int64_t j, const float *bias,
                                                                  bool first) {
#pragma GCC unroll 8
    for (int i = 0; i < M; i++) {
        __m256 s = acc[i][0];
        if (NA >= 2) s = _mm256_add_ps(s, acc[i][1]);
        if (NA == 4) s = _mm256_add_ps(s, _mm256_add_ps(acc[i][2], acc[i][3]));
        float v = eft__hsum256(s);
        if (!first) c[i * ldc + j] += v;
        else c[i * ldc + j] = bias ? v + bias[j] : v;
    }
}

#endif /* EFT_SIMD_AVX2_H */
