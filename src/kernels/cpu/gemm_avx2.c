/*
 * gemm_avx2.c — the AVX2+FMA f32 GEMM micro-kernel: a 6 x 16 register tile (12 accumulators,
 * two weight vectors and one broadcast: 15 of the 16 YMM registers), 12 FMAs per 8 loads, which
 * keeps both FMA pipes of a Zen3 or Skylake core busy. f16 and bf16 panels are widened in
 * registers (vcvtph2ps; bf16 by a 16-bit shift). Blocking and threading live in gemm.c.
 */
#include "kernels.h"
#include "simd_avx2.h"

/* MR is a compile-time constant at every call site, so the row loops unroll and acc lives in
 * registers. */
enum { W_F32, W_F16, W_BF16 };

/* Eight weights of panel row k, half h, widened to f32. WT is a compile-time constant. */
static inline __attribute__((always_inline)) __m256 load_w(const void *wp, int64_t k, int h, const int WT) {
    if (WT == W_F32) return _mm256_load_ps((const float *)wp + 16 * k + 8 * h);
    __m128i v = _mm_load_si128((const __m128i *)((const uint16_t *)wp + 16 * k + 8 * h));
    if (WT == W_F16) return _mm256_cvtph_ps(v);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16)); /* bf16: the top half of an f32 */
}

/* The tile's epilogue, shared by both tile forms: bias added, C added when accumulating, rows
 * 0..MR-1 stored (masked to nr columns at a panel's tail). MR is a compile-time constant at every
 * call site, so acc stays in registers once inlined. */
static inline __attribute__((always_inline)) void store_tile(float *c, int64_t ldc, __m256 acc[][2], const int MR,
                                                             int nr, const float *bias, bool accumulate) {
    if (nr == 16) {
        __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
        if (bias) b0 = _mm256_loadu_ps(bias), b1 = _mm256_loadu_ps(bias + 8);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            float *ci = c + i * ldc;
            __m256 v0 = _mm256_add_ps(acc[i][0], b0), v1 = _mm256_add_ps(acc[i][1], b1);
            if (accumulate) v0 = _mm256_add_ps(v0, _mm256_loadu_ps(ci)), v1 = _mm256_add_ps(v1, _mm256_loadu_ps(ci + 8));
            _mm256_storeu_ps(ci, v0);
            _mm256_storeu_ps(ci + 8, v1);
        }
    } else {
        __m256i m0 = eft__tail_mask(nr < 8 ? nr : 8), m1 = eft__tail_mask(nr > 8 ? nr - 8 : 0);
        __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
        if (bias) b0 = _mm256_maskload_ps(bias, m0), b1 = _mm256_maskload_ps(bias + 8, m1);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            float *ci = c + i * ldc;
            __m256 v0 = _mm256_add_ps(acc[i][0], b0), v1 = _mm256_add_ps(acc[i][1], b1);
            if (accumulate)
                v0 = _mm256_add_ps(v0, _mm256_maskload_ps(ci, m0)), v1 = _mm256_add_ps(v1, _mm256_maskload_ps(ci + 8, m1));
            _mm256_maskstore_ps(ci, m0, v0);
            _mm256_maskstore_ps(ci + 8, m1, v1);
        }
    }
}

static inline __attribute__((always_inline)) void tile(float *c, int64_t ldc, const float *a, int64_t lda,
                                                       const void *wp, int64_t kc, const int MR, int nr,
                                                       const float *bias, bool accumulate, const int WT) {
    __m256 acc[EFT__SGEMM_MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m256 w0 = load_w(wp, k, 0, WT), w1 = load_w(wp, k, 1, WT);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            __m256 av = _mm256_broadcast_ss(a + i * lda + k);
            acc[i][0] = _mm256_fmadd_ps(av, w0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(av, w1, acc[i][1]);
        }
    }
    store_tile(c, ldc, acc, MR, nr, bias, accumulate);
}

/* One row (decode): a 1 x 16 tile has only two accumulators, and each FMA would wait 4 cycles on
 * the previous one. Four partial sums over k mod 4 keep eight FMAs in flight, so the kernel is
 * limited by bandwidth rather than latency. */
static inline __attribute__((always_inline)) void tile1(float *c, const float *a, const void *wp, int64_t kc, int nr,
                                                        const float *bias, bool accumulate, const int WT) {
    __m256 s[4][2];
    for (int u = 0; u < 4; u++) s[u][0] = s[u][1] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
#pragma GCC unroll 4
        for (int u = 0; u < 4; u++) {
            __m256 av = _mm256_broadcast_ss(a + k + u);
            s[u][0] = _mm256_fmadd_ps(av, load_w(wp, k + u, 0, WT), s[u][0]);
            s[u][1] = _mm256_fmadd_ps(av, load_w(wp, k + u, 1, WT), s[u][1]);
        }
    }
    for (; k < kc; k++) {
        __m256 av = _mm256_broadcast_ss(a + k);
        s[0][0] = _mm256_fmadd_ps(av, load_w(wp, k, 0, WT), s[0][0]);
        s[0][1] = _mm256_fmadd_ps(av, load_w(wp, k, 1, WT), s[0][1]);
    }
    __m256 v0 = _mm256_add_ps(_mm256_add_ps(s[0][0], s[1][0]), _mm256_add_ps(s[2][0], s[3][0]));
    __m256 v1 = _mm256_add_ps(_mm256_add_ps(s[0][1], s[1][1]), _mm256_add_ps(s[2][1], s[3][1]));
    __m256i m0 = eft__tail_mask(nr < 8 ? nr : 8), m1 = eft__tail_mask(nr > 8 ? nr - 8 : 0);
    if (bias) v0 = _mm256_add_ps(v0, _mm256_maskload_ps(bias, m0)), v1 = _mm256_add_ps(v1, _mm256_maskload_ps(bias + 8, m1));
    if (accumulate) v0 = _mm256_add_ps(v0, _mm256_maskload_ps(c, m0)), v1 = _mm256_add_ps(v1, _mm256_maskload_ps(c + 8, m1));
    _mm256_maskstore_ps(c, m0, v0);
    _mm256_maskstore_ps(c + 8, m1, v1);
}

/* Packed A (ap[kc][6]): one sequential stream of broadcasts with no per-row address arithmetic.
 * MRT (1..6, a compile-time constant per instance) rows are computed, so a row tail (M = 8 is a
 * 6-row and a 2-row tile) costs no padding work. The C
 * rows are prefetched first: at large M they come from L3 or memory, and a load that misses at
 * the end of the tile would stall the pipeline. */
static inline __attribute__((always_inline)) void tile_pa(float *c, int64_t ldc, const float *ap, const void *wp,
                                                          int64_t kc, const int MRT, int nr, const float *bias,
                                                          bool accumulate, const int WT) {
    enum { MR = EFT__SGEMM_MR };
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < MRT; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int i = 0; i < MRT; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + 15), _MM_HINT_T0);
    }
    /* One k per iteration: GCC keeps the twelve accumulators in registers for this form, while
     * an unrolled body made it spill and shuffle registers. */
    const float *apk = ap;
    for (int64_t k = 0; k < kc; k++, apk += MR) {
        __m256 w0 = load_w(wp, k, 0, WT), w1 = load_w(wp, k, 1, WT);
#pragma GCC unroll 6
        for (int i = 0; i < MRT; i++) {
            __m256 av = _mm256_broadcast_ss(apk + i);
            acc[i][0] = _mm256_fmadd_ps(av, w0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(av, w1, acc[i][1]);
        }
    }
    store_tile(c, ldc, acc, MRT, nr, bias, accumulate);
}

#define UKERNEL_PA(name, WPT, WT)                                                                   \
    static void name(float *c, int64_t ldc, const float *ap, const WPT *wp, int64_t kc, int mr, int nr,         \
                     const float *bias, bool accumulate) {                                                  \
        switch (mr) {                                                                                       \
        case 6: tile_pa(c, ldc, ap, wp, kc, 6, nr, bias, accumulate, WT); break;                            \
        case 5: tile_pa(c, ldc, ap, wp, kc, 5, nr, bias, accumulate, WT); break;                            \
        case 4: tile_pa(c, ldc, ap, wp, kc, 4, nr, bias, accumulate, WT); break;                            \
        case 3: tile_pa(c, ldc, ap, wp, kc, 3, nr, bias, accumulate, WT); break;                            \
        case 2: tile_pa(c, ldc, ap, wp, kc, 2, nr, bias, accumulate, WT); break;                            \
        default: tile_pa(c, ldc, ap, wp, kc, 1, nr, bias, accumulate, WT); break;                           \
        }                                                                                                   \
    }

UKERNEL_PA(ukernel_pa_avx2, float, W_F32)
UKERNEL_PA(ukernel_pa_f16_avx2, uint16_t, W_F16)
UKERNEL_PA(ukernel_pa_bf16_avx2, uint16_t, W_BF16)

#define UKERNEL(name, WPT, WT)                                                                      \
    static void name(float *c, int64_t ldc, const float *a, int64_t lda, const WPT *wp, int64_t kc, int mr, int nr, \
                     const float *bias, bool accumulate) {                                          \
        switch (mr) {                                                                               \
        case 6: tile(c, ldc, a, lda, wp, kc, 6, nr, bias, accumulate, WT); break;                   \
        case 5: tile(c, ldc, a, lda, wp, kc, 5, nr, bias, accumulate, WT); break;                   \
        case 4: tile(c, ldc, a, lda, wp, kc, 4, nr, bias, accumulate, WT); break;                   \
        case 3: tile(c, ldc, a, lda, wp, kc, 3, nr, bias, accumulate, WT); break;                   \
        case 2: tile(c, ldc, a, lda, wp, kc, 2, nr, bias, accumulate, WT); break;                   \
        default: tile1(c, a, wp, kc, nr, bias, accumulate, WT); break;                              \
        }                                                                                           \
    }

UKERNEL(ukernel_avx2, float, W_F32)
UKERNEL(ukernel_f16_avx2, uint16_t, W_F16)
UKERNEL(ukernel_bf16_avx2, uint16_t, W_BF16)

void eft__kernels_fill_gemm_avx2(eft__kernels *k) {
    k->sgemm_ukernel = ukernel_avx2;
    k->sgemm_ukernel_f16 = ukernel_f16_avx2;
    k->sgemm_ukernel_bf16 = ukernel_bf16_avx2;
    k->sgemm_ukernel_pa = ukernel_pa_avx2;
    k->sgemm_ukernel_pa_f16 = ukernel_pa_f16_avx2;
    k->sgemm_ukernel_pa_bf16 = ukernel_pa_bf16_avx2;
}
