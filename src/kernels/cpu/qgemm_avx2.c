/*
 * qgemm_avx2.c — AVX2 versions of the Q8 activation quantiser and the Q8_0 x Q8 dot product. The
 * dot uses the sign trick: |w| as unsigned bytes times sign(w)*a as signed bytes through
 * vpmaddubsw (pairs fit int16: 2 * 128 * 127 < 32768), then vpmaddwd to int32, one FMA per block.
 * Q4_0 and Q4_1 unpack their nibbles to the same 32-byte form first; Q4_1's unsigned nibbles go
 * straight into vpmaddubsw (2 * 15 * 127 fits too).
 */
#include "kernels.h"
#include "simd_avx2.h"

static void quantize_row_q8_a(eft__block_q8_a *out, const float *x, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / EFT__QK; b++, x += EFT__QK) {
        __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
        __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                  _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        float amax = eft__hmax256(mx);
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        /* cvtps rounds to nearest even under the default MXCSR, like nearbyintf. */
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        /* Pack 32 int32 to 32 int8; the packs interleave 128-bit lanes, the permute undoes it. */
        __m256i p01 = _mm256_packs_epi32(i0, i1), p23 = _mm256_packs_epi32(i2, i3);
        __m256i p = _mm256_packs_epi16(p01, p23);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)out[b].qs, p);
        out[b].d = d;
        out[b].sum = _mm_cvtsi128_si32(s4);
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

void eft__kernels_fill_q8_avx2(eft__kernels *k) {
    k->quantize_row_q8_a = quantize_row_q8_a;
    k->dot_q8_0_q8_a = dot_q8_0_q8_a;
    k->dot_q4_0_q8_a = dot_q4_0_q8_a;
    k->dot_q4_1_q8_a = dot_q4_1_q8_a;
}
