/*
 * gemm.c — the f32 GEMM driver shared by every ISA: weight packing into 16-channel panels, cache
 * blocking, the split over the thread pool, and the scalar micro-kernel and reference. Only the
 * register-tile micro-kernel differs per ISA (gemm_avx2.c, gemm_avx512.c), so blocking and
 * threading are written and tested once.
 *
 * Blocking (Zen3 sizes: 32 KiB L1d, 512 KiB L2 per core): a kc x 16 slice of one weight panel
 * (16 KiB at kc = 256) stays in L1 while the micro-kernel sweeps it over MC rows of activations,
 * whose MC x kc block (120 KiB) stays in L2 while every panel of this worker's share passes by.
 * Activations are read in place (no packing): six row pointers with a stride are as cheap as a
 * packed panel once the block sits in L2, and it saves a copy per call.
 */
#include <string.h>

#include "kernels.h"

enum { KC = 256, MC = 120 };
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
    void *d = eft__malloc_aligned((size_t)bytes);
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

void eft__sgemm_worker(const eft__kernels *kt, float *c, int64_t ldc, const float *a, int64_t lda,
                       int64_t m, const eft__sgemm_packed *w, const float *bias, int ith, int nth) {
    if (m <= 0 || w->n <= 0) return;
    const int64_t K = w->k, NR = EFT__SGEMM_NR, MR = EFT__SGEMM_MR;
    /* Split the output channels when there are enough panels for everyone (each worker then
     * streams only its own part of the weights, the decode case); otherwise split the rows. */
    int64_t p0 = 0, p1 = w->npanels, m0 = 0, m1 = m;
    if (w->npanels >= 2 * nth || m < 2 * MR * nth) {
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

void eft__kernels_fill_gemm_scalar(eft__kernels *k) {
    k->sgemm_ukernel = ukernel_scalar;
    k->sgemm_ukernel_f16 = ukernel_f16_scalar;
    k->sgemm_ukernel_bf16 = ukernel_bf16_scalar;
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
