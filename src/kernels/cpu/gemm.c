/*
 * gemm.c — the f32 GEMM driver shared by every ISA: weight packing into 16-channel panels, cache
 * blocking, the split over the thread pool, and the scalar micro-kernel and reference. Only the
 * register-tile micro-kernel differs per ISA (gemm_avx2.c, gemm_avx512.c), so blocking and
 * threading are written and tested once.
 *
 * Blocking (Zen3 sizes: 32 KiB L1d, 512 KiB L2 per core): a kc x 16 slice of one weight panel
 * (12 KiB at kc = 192) stays in L1 while the micro-kernel sweeps it over MC rows of activations,
 * whose MC x kc block (180 KiB, packed into 6-row micro-panels) stays in L2 while every panel of
 * this worker's share passes by. Decode (one micro-tile of rows) reads A in place: there is no
 * reuse to pay for a copy. Measured on the 2-core EPYC against OpenBLAS: reading 6 strided rows
 * in place cost 10-25 % at M = 4096 (A from memory, C round-tripping per k block); packing with
 * the row block outermost brought it to parity.
 */
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "kernels.h"

enum { KC = 192, MC = 240 };
_Static_assert(MC % EFT__SGEMM_MR == 0, "MC must be a multiple of the micro-kernel's rows");

/* ---------------------------------------------------------------------------------------------
 * Packing
 * ------------------------------------------------------------------------------------------- */

static float load_elem(eft_dtype dtype, const void *w, int64_t idx) {
    switch (dtype) {
    case EFT_DTYPE_F16: return eft__f16_to_f32(((const uint16_t *)w)[idx]);
    case EFT_DTYPE_BF16: return eft__bf16_to_f32(((const uint16_t *)w)[idx]);
    default: return ((const float *)w)[idx];
    }
}

static eft_status pack(eft__sgemm_packed *out, eft_dtype dtype, const void *w, int64_t n, int64_t k, int64_t ldw,
                       bool keep_half, eft__error *err) {
    memset(out, 0, sizeof *out);
    if (n < 1 || k < 1 || ldw < k)
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "sgemm_pack: bad shape N=%lld K=%lld ldw=%lld",
                         (long long)n, (long long)k, (long long)ldw);
    if (dtype != EFT_DTYPE_F32 && dtype != EFT_DTYPE_F16 && dtype != EFT_DTYPE_BF16)
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "sgemm_pack: weights of type %s", eft_dtype_name(dtype));
    int64_t np = (n + EFT__SGEMM_NR - 1) / EFT__SGEMM_NR;
    bool half = keep_half && dtype != EFT_DTYPE_F32;
    size_t esz = half ? sizeof(uint16_t) : sizeof(float);
    uint64_t elems, bytes;
    if (eft__mul_overflow_u64((uint64_t)np * EFT__SGEMM_NR, (uint64_t)k, &elems) ||
        eft__mul_overflow_u64(elems, esz, &bytes) || bytes > SIZE_MAX)
        return eft__fail(err, EFT_ERR_LIMIT, "sgemm_pack: N=%lld x K=%lld is too large", (long long)n, (long long)k);
    void *d = eft__malloc_huge((size_t)bytes); /* decode streams it */
    if (!d) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "sgemm_pack: out of memory for %llu bytes", (unsigned long long)bytes);
    for (int64_t p = 0; p < np; p++)
        for (int64_t j = 0; j < EFT__SGEMM_NR; j++) {
            int64_t row = p * EFT__SGEMM_NR + j;
            for (int64_t kk = 0; kk < k; kk++) {
                int64_t at = (p * k + kk) * EFT__SGEMM_NR + j;
                if (half) ((uint16_t *)d)[at] = row < n ? ((const uint16_t *)w)[row * ldw + kk] : 0;
                else ((float *)d)[at] = row < n ? load_elem(dtype, w, row * ldw + kk) : 0.0f;
            }
        }
    out->n = n;
    out->k = k;
    out->npanels = np;
    out->dtype = half ? dtype : EFT_DTYPE_F32;
    out->data = d;
    return EFT_OK;
}

eft_status eft__sgemm_pack_typed(eft__sgemm_packed *out, eft_dtype dtype, const void *w, int64_t n, int64_t k,
                                 int64_t ldw, eft__error *err) {
    return pack(out, dtype, w, n, k, ldw, false, err);
}

eft_status eft__sgemm_pack_half(eft__sgemm_packed *out, eft_dtype dtype, const void *w, int64_t n, int64_t k,
                                int64_t ldw, eft__error *err) {
    return pack(out, dtype, w, n, k, ldw, true, err);
}

eft_status eft__sgemm_pack(eft__sgemm_packed *out, const float *w, int64_t n, int64_t k, int64_t ldw,
                           eft__error *err) {
    return pack(out, EFT_DTYPE_F32, w, n, k, ldw, false, err);
}

void eft__sgemm_packed_free(eft__sgemm_packed *p) {
    if (!p) return;
    if (!p->borrowed) eft__free_aligned(p->data);
    memset(p, 0, sizeof *p);
}

/* ---------------------------------------------------------------------------------------------
 * Driver
 * ------------------------------------------------------------------------------------------- */

/* Packs rows [0, rows) x [0, kc) of A into MR-row micro-panels ap[tile][kc][MR], zeros past rows.
 * k outer and the row inner, so the stores are sequential and the six row reads are short
 * streams the prefetcher follows. */
void eft__sgemm_pack_a(float *restrict ap, const float *restrict a, int64_t lda, int64_t rows, int64_t kc) {
    enum { MR = EFT__SGEMM_MR };
    for (int64_t t = 0; t * MR < rows; t++) {
        float *restrict d = ap + t * kc * MR;
        const float *r[MR];
        int64_t left = rows - t * MR;
        for (int i = 0; i < MR; i++) r[i] = a + (t * MR + (i < left ? i : 0)) * lda;
        if (left >= MR) {
            /* At large M the block comes from memory: 6 x kc floats in 6 strided runs are too
             * short for the hardware prefetcher, so fetch the next tile's rows one tile ahead. */
            int64_t k = 0;
#if defined(__SSE2__)
            /* Four k at a time: two 4 x 4 transposes (rows 0-3, rows 4-5 and two dummies) turn
             * 6 row loads into 4 x (4 + 2) packed floats, half the memory operations of the
             * element-wise copy, which the packing of a 384-wide layer otherwise pays 7-11 % for. */
            for (; k + 4 <= kc; k += 4) {
                if ((k & 15) == 0 && left >= 2 * MR)
                    for (int i = 0; i < MR; i++) __builtin_prefetch(r[i] + MR * lda + k);
                __m128 r0 = _mm_loadu_ps(r[0] + k), r1 = _mm_loadu_ps(r[1] + k), r2 = _mm_loadu_ps(r[2] + k);
                __m128 r3 = _mm_loadu_ps(r[3] + k), r4 = _mm_loadu_ps(r[4] + k), r5 = _mm_loadu_ps(r[5] + k);
                _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
                __m128 lo = _mm_unpacklo_ps(r4, r5), hi = _mm_unpackhi_ps(r4, r5); /* 40 50 41 51 | 42 52 43 53 */
                float *o = d + k * MR;
                _mm_storeu_ps(o, r0), _mm_storel_pi((__m64 *)(o + 4), lo);
                _mm_storeu_ps(o + 6, r1), _mm_storeh_pi((__m64 *)(o + 10), lo);
                _mm_storeu_ps(o + 12, r2), _mm_storel_pi((__m64 *)(o + 16), hi);
                _mm_storeu_ps(o + 18, r3), _mm_storeh_pi((__m64 *)(o + 22), hi);
            }
#endif
            for (; k < kc; k++) {
                if ((k & 15) == 0 && left >= 2 * MR)
                    for (int i = 0; i < MR; i++) __builtin_prefetch(r[i] + MR * lda + k);
                for (int i = 0; i < MR; i++) d[k * MR + i] = r[i][k];
            }
        } else {
            for (int64_t k = 0; k < kc; k++)
                for (int i = 0; i < MR; i++) d[k * MR + i] = i < left ? r[i][k] : 0.0f;
        }
    }
}

/* Reads A in place (six strided rows per tile): the decode path, and the fallback when there is
 * no memory for the packing buffer. */
static void worker_inplace(const eft__kernels *kt, float *c, int64_t ldc, const float *a, int64_t lda,
                           const eft__sgemm_packed *w, const float *bias, int64_t m0, int64_t m1, int64_t p0,
                           int64_t p1, int64_t mc) {
    const int64_t K = w->k, NR = EFT__SGEMM_NR, MR = EFT__SGEMM_MR;
    /* With a single micro-tile of rows (decode) there is no reuse to block for: read each panel
     * once, front to back, which is what the hardware prefetcher streams best. */
    const int64_t kcb = m1 - m0 <= MR ? K : KC;
    for (int64_t k0 = 0; k0 < K; k0 += kcb) {
        int64_t kc = K - k0 < kcb ? K - k0 : kcb;
        bool acc = k0 > 0;
        for (int64_t i0 = m0; i0 < m1; i0 += mc) {
            int64_t i1 = i0 + mc < m1 ? i0 + mc : m1;
            for (int64_t p = p0; p < p1; p++) {
                int64_t off = (p * K + k0) * NR, j = p * NR;
                int nr = (int)(w->n - j < NR ? w->n - j : NR);
                const float *bp = (!acc && bias) ? bias + j : NULL;
                for (int64_t i = i0; i < i1; i += MR) {
                    int mr = (int)(i1 - i < MR ? i1 - i : MR);
                    float *ci = c + i * ldc + j;
                    const float *ai = a + i * lda + k0;
                    if (w->dtype == EFT_DTYPE_F16)
                        kt->sgemm_ukernel_f16(ci, ldc, ai, lda, (const uint16_t *)w->data + off, kc, mr, nr, bp, acc);
                    else if (w->dtype == EFT_DTYPE_BF16)
                        kt->sgemm_ukernel_bf16(ci, ldc, ai, lda, (const uint16_t *)w->data + off, kc, mr, nr, bp, acc);
                    else kt->sgemm_ukernel(ci, ldc, ai, lda, (const float *)w->data + off, kc, mr, nr, bp, acc);
                }
            }
        }
    }
}

void eft__sgemm_worker(const eft__kernels *kt, float *c, int64_t ldc, const float *a, int64_t lda,
                       int64_t m, const eft__sgemm_packed *w, const float *bias, int ith, int nth) {
    if (m <= 0 || w->n <= 0) return;
    const int64_t K = w->k, NR = EFT__SGEMM_NR, MR = EFT__SGEMM_MR;
    /* Split the output channels when there are enough panels for everyone and few rows (each
     * worker then streams only its own part of the weights, the decode case); otherwise split
     * the rows. With a full row block per worker (prefill), rows win: each worker packs only its
     * own activations, and the weights it re-reads come from the shared L3. */
    int64_t p0 = 0, p1 = w->npanels, m0 = 0, m1 = m;
    bool by_rows = m >= MC * nth || (w->npanels < 2 * nth && m >= 2 * MR * nth);
    if (!by_rows) {
        eft__split_range(w->npanels, ith, nth, &p0, &p1);
    } else {
        int64_t mb = (m + MR - 1) / MR, b0, b1;
        eft__split_range(mb, ith, nth, &b0, &b1);
        m0 = b0 * MR;
        m1 = b1 * MR < m ? b1 * MR : m;
    }
    if (p0 >= p1 || m0 >= m1) return;
    /* Even row blocks of at most MC, in whole micro-tiles: 128 rows become 2 x 66 rather than
     * 120 + 8, whose thin tail would stream all the weights again for little work. */
    int64_t nblk = (m1 - m0 + MC - 1) / MC, mc = ((m1 - m0 + nblk - 1) / nblk + MR - 1) / MR * MR;
    /* More than one micro-tile of rows: pack each mc x kc block of A once (BLIS-style micro-panels)
     * and sweep every panel of this worker over it. The buffer is per call: a malloc is noise next
     * to a GEMM of this size, and without it the call reads A in place. */
    float *ap = m1 - m0 > MR ? eft__malloc_aligned((size_t)MC * KC * sizeof(float)) : NULL;
    if (!ap) {
        worker_inplace(kt, c, ldc, a, lda, w, bias, m0, m1, p0, p1, mc);
        return;
    }
    /* Even k blocks (384 = 2 x 192 rather than 256 + 128), row block outer: the mc x n block of
     * C this worker accumulates into stays in L2/L3 across the k blocks instead of going to
     * memory and back once per k block. */
    int64_t nk = (K + KC - 1) / KC, kcb = ((K + nk - 1) / nk + 7) / 8 * 8;
    if (kcb > KC) kcb = KC;
    for (int64_t i0 = m0; i0 < m1; i0 += mc) {
        int64_t i1 = i0 + mc < m1 ? i0 + mc : m1;
        for (int64_t k0 = 0; k0 < K; k0 += kcb) {
            int64_t kc = K - k0 < kcb ? K - k0 : kcb;
            bool acc = k0 > 0;
            eft__sgemm_pack_a(ap, a + i0 * lda + k0, lda, i1 - i0, kc);
            for (int64_t p = p0; p < p1; p++) {
                int64_t off = (p * K + k0) * NR, j = p * NR;
                int nr = (int)(w->n - j < NR ? w->n - j : NR);
                const float *bp = (!acc && bias) ? bias + j : NULL;
                for (int64_t i = i0; i < i1; i += MR) {
                    int mr = (int)(i1 - i < MR ? i1 - i : MR);
                    float *ci = c + i * ldc + j;
                    const float *api = ap + (i - i0) * kc;
                    if (w->dtype == EFT_DTYPE_F16)
                        kt->sgemm_ukernel_pa_f16(ci, ldc, api, (const uint16_t *)w->data + off, kc, mr, nr, bp, acc);
                    else if (w->dtype == EFT_DTYPE_BF16)
                        kt->sgemm_ukernel_pa_bf16(ci, ldc, api, (const uint16_t *)w->data + off, kc, mr, nr, bp, acc);
                    else kt->sgemm_ukernel_pa(ci, ldc, api, (const float *)w->data + off, kc, mr, nr, bp, acc);
                }
            }
        }
    }
    eft__free_aligned(ap);
}

typedef struct sgemm_ctx {
    const eft__kernels *kt;
    float *c;
    int64_t ldc, lda, m;
    const float *a, *bias;
    const eft__sgemm_packed *w;
} sgemm_ctx;

static void sgemm_task(void *p, int ith, int nth) {
    sgemm_ctx *x = p;
    eft__sgemm_worker(x->kt, x->c, x->ldc, x->a, x->lda, x->m, x->w, x->bias, ith, nth);
}

void eft__sgemm(const eft__kernels *kt, eft__threadpool *tp, float *c, int64_t ldc, const float *a,
                int64_t lda, int64_t m, const eft__sgemm_packed *w, const float *bias) {
    sgemm_ctx x = {kt ? kt : eft__kernels_get(), c, ldc, lda, m, a, bias, w};
    if (tp) eft__threadpool_run(tp, sgemm_task, &x);
    else sgemm_task(&x, 0, 1);
}

/* ---------------------------------------------------------------------------------------------
 * Scalar micro-kernel and reference
 * ------------------------------------------------------------------------------------------- */

static void ukernel_scalar(float *c, int64_t ldc, const float *a, int64_t lda, const float *wp, int64_t kc,
                           int mr, int nr, const float *bias, bool accumulate) {
    float acc[EFT__SGEMM_MR][EFT__SGEMM_NR] = {{0}};
    for (int64_t k = 0; k < kc; k++) {
        const float *w = wp + k * EFT__SGEMM_NR;
        for (int i = 0; i < mr; i++) {
            float av = a[i * lda + k];
            for (int j = 0; j < EFT__SGEMM_NR; j++) acc[i][j] += av * w[j];
        }
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float v = acc[i][j];
            if (bias) v += bias[j];
            if (accumulate) v += c[i * ldc + j];
            c[i * ldc + j] = v;
        }
}

/* The 16-bit panels widen one 16 x kc slice into a float panel and reuse the f32 kernel: the
 * scalar level is the yardstick, not the fast path. */
static void ukernel_half_scalar(float *c, int64_t ldc, const float *a, int64_t lda, const uint16_t *wp, int64_t kc,
                                int mr, int nr, const float *bias, bool accumulate, bool bf16) {
    float w[EFT__SGEMM_NR * 64];
    for (int64_t k0 = 0; k0 < kc; k0 += 64) {
        int64_t n = kc - k0 < 64 ? kc - k0 : 64;
        for (int64_t i = 0; i < n * EFT__SGEMM_NR; i++)
            w[i] = bf16 ? eft__bf16_to_f32(wp[k0 * EFT__SGEMM_NR + i]) : eft__f16_to_f32(wp[k0 * EFT__SGEMM_NR + i]);
        ukernel_scalar(c, ldc, a + k0, lda, w, n, mr, nr, k0 == 0 ? bias : NULL, accumulate || k0 > 0);
    }
}

static void ukernel_f16_scalar(float *c, int64_t ldc, const float *a, int64_t lda, const uint16_t *wp, int64_t kc,
                               int mr, int nr, const float *bias, bool accumulate) {
    ukernel_half_scalar(c, ldc, a, lda, wp, kc, mr, nr, bias, accumulate, false);
}

static void ukernel_bf16_scalar(float *c, int64_t ldc, const float *a, int64_t lda, const uint16_t *wp, int64_t kc,
                                int mr, int nr, const float *bias, bool accumulate) {
    ukernel_half_scalar(c, ldc, a, lda, wp, kc, mr, nr, bias, accumulate, true);
}

/* Packed A (ap[kc][MR]): the same sums in the same k order as ukernel_scalar. */
static void ukernel_pa_any_scalar(float *c, int64_t ldc, const float *ap, const void *wp, int64_t kc, int mr, int nr,
                                  const float *bias, bool accumulate, eft_dtype wt) {
    float acc[EFT__SGEMM_MR][EFT__SGEMM_NR] = {{0}};
    for (int64_t k = 0; k < kc; k++)
        for (int i = 0; i < mr; i++) {
            float av = ap[k * EFT__SGEMM_MR + i];
            for (int j = 0; j < EFT__SGEMM_NR; j++) acc[i][j] += av * load_elem(wt, wp, k * EFT__SGEMM_NR + j);
        }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float v = acc[i][j];
            if (bias) v += bias[j];
            if (accumulate) v += c[i * ldc + j];
            c[i * ldc + j] = v;
        }
}

static void ukernel_pa_scalar(float *c, int64_t ldc, const float *ap, const float *wp, int64_t kc, int mr, int nr,
                              const float *bias, bool accumulate) {
    ukernel_pa_any_scalar(c, ldc, ap, wp, kc, mr, nr, bias, accumulate, EFT_DTYPE_F32);
}

static void ukernel_pa_f16_scalar(float *c, int64_t ldc, const float *ap, const uint16_t *wp, int64_t kc, int mr,
                                  int nr, const float *bias, bool accumulate) {
    ukernel_pa_any_scalar(c, ldc, ap, wp, kc, mr, nr, bias, accumulate, EFT_DTYPE_F16);
}

static void ukernel_pa_bf16_scalar(float *c, int64_t ldc, const float *ap, const uint16_t *wp, int64_t kc, int mr,
                                   int nr, const float *bias, bool accumulate) {
    ukernel_pa_any_scalar(c, ldc, ap, wp, kc, mr, nr, bias, accumulate, EFT_DTYPE_BF16);
}

void eft__kernels_fill_gemm_scalar(eft__kernels *k) {
    k->sgemm_ukernel = ukernel_scalar;
    k->sgemm_ukernel_f16 = ukernel_f16_scalar;
    k->sgemm_ukernel_bf16 = ukernel_bf16_scalar;
    k->sgemm_ukernel_pa = ukernel_pa_scalar;
    k->sgemm_ukernel_pa_f16 = ukernel_pa_f16_scalar;
    k->sgemm_ukernel_pa_bf16 = ukernel_pa_bf16_scalar;
}

void eft__sgemm_ref(float *c, int64_t ldc, const float *a, int64_t lda, int64_t m, const float *w,
                    int64_t ldw, int64_t n, int64_t k, const float *bias) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = bias ? bias[j] : 0.0;
            for (int64_t kk = 0; kk < k; kk++) s += (double)a[i * lda + kk] * w[j * ldw + kk];
            c[i * ldc + j] = (float)s;
        }
}
