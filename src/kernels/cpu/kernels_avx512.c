/*
 * kernels_avx512.c — AVX-512 overrides. UNTESTED on hardware: the development machines are AVX2
 * only, so this file is compiled (keeping it honest against the compiler) but only chosen when
 * the CPU has AVX-512 F/BW/VL/DQ, and the kernel tests then hold it to the scalar reference
 * like every other level. For now it overrides just the f32 GEMM micro-kernel (one ZMM holds a
 * whole 16-wide panel row); everything else is inherited from the AVX2 table.
 */
#include <immintrin.h>

#include "kernels.h"

static inline __attribute__((always_inline)) void tile(float *c, int64_t ldc, const float *a, int64_t lda,
                                                       const float *wp, int64_t kc, const int MR, int nr,
                                                       const float *bias, bool accumulate) {
    __m512 acc[EFT__SGEMM_MR];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m512 w = _mm512_load_ps(wp + 16 * k);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[i * lda + k]), w, acc[i]);
    }
    __mmask16 m = (__mmask16)((1u << nr) - 1u);
    __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias) : _mm512_setzero_ps();
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        __m512 v = _mm512_add_ps(acc[i], b);
        if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, c + i * ldc));
        _mm512_mask_storeu_ps(c + i * ldc, m, v);
    }
}

static void ukernel_avx512(float *c, int64_t ldc, const float *a, int64_t lda, const float *wp, int64_t kc, int mr,
                           int nr, const float *bias, bool accumulate) {
    switch (mr) {
    case 6: tile(c, ldc, a, lda, wp, kc, 6, nr, bias, accumulate); break;
    case 5: tile(c, ldc, a, lda, wp, kc, 5, nr, bias, accumulate); break;
    case 4: tile(c, ldc, a, lda, wp, kc, 4, nr, bias, accumulate); break;
    case 3: tile(c, ldc, a, lda, wp, kc, 3, nr, bias, accumulate); break;
    case 2: tile(c, ldc, a, lda, wp, kc, 2, nr, bias, accumulate); break;
    default: tile(c, ldc, a, lda, wp, kc, 1, nr, bias, accumulate); break;
    }
}

void eft__kernels_fill_avx512(eft__kernels *k) { (void)k; }
void eft__kernels_fill_gemm_avx512(eft__kernels *k) { k->sgemm_ukernel = ukernel_avx512; }
