/*
 * attn_dec_avx2.c — AVX2 versions of decode attention's two inner loops (kernels.h: attn_dec_qk,
 * attn_dec_pv), for the g query heads that share one KV head.
 *
 * qk: eight keys at a time, one accumulator vector per key, the head dimension in steps of eight;
 * the eight accumulators then reduce to one vector of eight scores with three rounds of vhaddps
 * and a cross-lane add, instead of a horizontal sum per score. The eight key rows (2 KiB at head
 * size 64) stay in L1 while the g queries pass over them.
 * pv: the output rows stay in registers (two vectors per query for g <= 4, else one) while every
 * value row is read once and multiplied by each query's probability.
 * Head sizes that are not a multiple of eight finish the last elements in scalar code.
 * Cache rows of f16 (vcvtph2ps) and int8 (sign-extended, converted) are widened eight elements at a
 * time as they are loaded; the arithmetic is the f32 kernels'.
 */
#include "kernels.h"
#include "simd_avx2.h"

enum { KF32, KF16, KI8 };

/* Eight elements of a cache row from element e, widened to f32. */
static inline __attribute__((always_inline)) __m256 load8(const void *row, int64_t e, const int T) {
    if (T == KF16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + e)));
    if (T == KI8) return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)((const int8_t *)row + e))));
    return _mm256_loadu_ps((const float *)row + e);
}

static inline float elem(const void *row, int64_t e, const int T) {
    if (T == KF16) return eft__f16_to_f32(((const uint16_t *)row)[e]);
    if (T == KI8) return (float)((const int8_t *)row)[e];
    return ((const float *)row)[e];
}

/* Row j of a cache of element type T, ld elements apart. */
static inline const void *row_at(const void *base, int64_t j, int64_t ld, const int T) {
    return (const char *)base + (size_t)(j * ld) * (T == KF16 ? 2 : T == KI8 ? 1 : 4);
}

/* Rows ahead that the first pass over a block's keys (qk's first query, pv's first columns)
 * prefetches, whole rows at a time. pv reads a row's 64-byte lines in separate column passes, so
 * from memory its first pass missed on every row; with this, 8 sequences x 30 layers x 128 f32
 * keys went from 6.4 to 5.5 ms per step (median of six alternating rounds, 5 favour it). */
enum { PF_ROWS = 16 };

static inline __attribute__((always_inline)) void prefetch_rows(const void *row, int nrows, int64_t ld, int hs, const int T) {
    const size_t es = T == KF16 ? 2 : T == KI8 ? 1 : 4, rb = (size_t)hs * es;
    for (int u = 0; u < nrows; u++) {
        const char *p = (const char *)row + (size_t)u * (size_t)ld * es;
        for (size_t off = 0; off < rb; off += 64) __builtin_prefetch(p + off);
    }
}

static inline float dot_tail(const float *q, const void *k, int e0, int hs, const int T) {
    float acc = 0;
    for (int e = e0; e < hs; e++) acc += q[e] * elem(k, e, T);
    return acc;
}

/* Queries r < g against keys j .. j + 7 into s[r * lds + j ..]. */
static inline __attribute__((always_inline)) void qk_block8(float *s, int64_t lds, const float *q, int64_t ldq, int g,
                                                            const void *k, int64_t ldk, int64_t j, int hs, const int T) {
    const int hv = hs & ~7;
    const void *k0 = row_at(k, j, ldk, T), *k1 = row_at(k, j + 1, ldk, T), *k2 = row_at(k, j + 2, ldk, T);
    const void *k3 = row_at(k, j + 3, ldk, T), *k4 = row_at(k, j + 4, ldk, T), *k5 = row_at(k, j + 5, ldk, T);
    const void *k6 = row_at(k, j + 6, ldk, T), *k7 = row_at(k, j + 7, ldk, T);
    for (int r = 0; r < g; r++) {
        const float *qr = q + r * ldq;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        __m256 a4 = _mm256_setzero_ps(), a5 = _mm256_setzero_ps(), a6 = _mm256_setzero_ps(), a7 = _mm256_setzero_ps();
        for (int e = 0; e < hv; e += 8) {
            const __m256 qv = _mm256_loadu_ps(qr + e);
            a0 = _mm256_fmadd_ps(qv, load8(k0, e, T), a0);
            a1 = _mm256_fmadd_ps(qv, load8(k1, e, T), a1);
            a2 = _mm256_fmadd_ps(qv, load8(k2, e, T), a2);
            a3 = _mm256_fmadd_ps(qv, load8(k3, e, T), a3);
            a4 = _mm256_fmadd_ps(qv, load8(k4, e, T), a4);
            a5 = _mm256_fmadd_ps(qv, load8(k5, e, T), a5);
            a6 = _mm256_fmadd_ps(qv, load8(k6, e, T), a6);
            a7 = _mm256_fmadd_ps(qv, load8(k7, e, T), a7);
        }
        /* hadd pairs: lanes [a0 a0 a1 a1 | a0 a0 a1 a1] ...; after two rounds each 128-bit half
         * holds partial sums of keys 0-3 (u0) or 4-7 (u1); the halves then add across. */
        __m256 t0 = _mm256_hadd_ps(a0, a1), t1 = _mm256_hadd_ps(a2, a3);
        __m256 t2 = _mm256_hadd_ps(a4, a5), t3 = _mm256_hadd_ps(a6, a7);
        __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
        __m256 sum = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
        if (hv < hs) {
            _Alignas(32) float t[8];
            _mm256_store_ps(t, sum);
            for (int u = 0; u < 8; u++) t[u] += dot_tail(qr, row_at(k, j + u, ldk, T), hv, hs, T);
            sum = _mm256_load_ps(t);
        }
        _mm256_storeu_ps(s + r * lds + j, sum);
    }
}

/* Eight keys at a time, every query over them before the next eight: the block's rows (2 KiB at
 * head size 64) stay in L1 for the g queries. (The loops used to run the other way round, query
 * by query over all the keys, which re-read a unit's keys from L2 once per query head.) */
static inline __attribute__((always_inline)) void qk(float *s, int64_t lds, const float *q, int64_t ldq, int g,
                                                     const void *k, int64_t ldk, int64_t n, int hs, const int T) {
    const int hv = hs & ~7;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        if (j + PF_ROWS + 8 <= n) prefetch_rows(row_at(k, j + PF_ROWS, ldk, T), 8, ldk, hs, T);
        qk_block8(s, lds, q, ldq, g, k, ldk, j, hs, T);
    }
    for (; j < n; j++) {
        const void *kj = row_at(k, j, ldk, T);
        for (int r = 0; r < g; r++) {
            const float *qr = q + r * ldq;
            __m256 a = _mm256_setzero_ps();
            for (int e = 0; e < hv; e += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(qr + e), load8(kj, e, T), a);
            s[r * lds + j] = eft__hsum256(a) + dot_tail(qr, kj, hv, hs, T);
        }
    }
}

static void attn_dec_qk(float *s, int64_t lds, const float *q, int64_t ldq, int g, const void *k, eft_dtype kt,
                        int64_t ldk, int64_t n, int hs) {
    switch (kt) {
    case EFT_DTYPE_F16: qk(s, lds, q, ldq, g, k, ldk, n, hs, KF16); break;
    case EFT_DTYPE_I8: qk(s, lds, q, ldq, g, k, ldk, n, hs, KI8); break;
    default: qk(s, lds, q, ldq, g, k, ldk, n, hs, KF32); break;
    }
}

/* G queries (1..8 at a time) over output columns [e0, e0 + 8 CV) of every value row. */
static inline __attribute__((always_inline)) void pv_cols(float *o, int64_t ldo, const float *p, int64_t ldp, const int G,
                                                          const void *v, int64_t ldv, int64_t n, int e0, const int CV,
                                                          int hs, const int T) {
    __m256 acc[8][2];
#pragma GCC unroll 8
    for (int r = 0; r < G; r++)
#pragma GCC unroll 2
        for (int c = 0; c < CV; c++) acc[r][c] = _mm256_loadu_ps(o + r * ldo + e0 + 8 * c);
    for (int64_t j = 0; j < n; j++) {
        const void *vj = row_at(v, j, ldv, T);
        if (e0 == 0 && j + PF_ROWS < n) prefetch_rows(row_at(v, j + PF_ROWS, ldv, T), 1, ldv, hs, T);
        __m256 vv[2];
#pragma GCC unroll 2
        for (int c = 0; c < CV; c++) vv[c] = load8(vj, e0 + 8 * c, T);
#pragma GCC unroll 8
        for (int r = 0; r < G; r++) {
            const __m256 a = _mm256_broadcast_ss(p + r * ldp + j);
#pragma GCC unroll 2
            for (int c = 0; c < CV; c++) acc[r][c] = _mm256_fmadd_ps(a, vv[c], acc[r][c]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < G; r++)
#pragma GCC unroll 2
        for (int c = 0; c < CV; c++) _mm256_storeu_ps(o + r * ldo + e0 + 8 * c, acc[r][c]);
}

#define PV_G(G)                                                                                                    \
    do {                                                                                                           \
        int e = 0;                                                                                                 \
        if ((G) <= 4)                                                                                              \
            for (; e + 16 <= hv; e += 16) pv_cols(o, ldo, p, ldp, (G), v, ldv, n, e, 2, hs, T);                    \
        for (; e < hv; e += 8) pv_cols(o, ldo, p, ldp, (G), v, ldv, n, e, 1, hs, T);                               \
    } while (0)

static inline __attribute__((always_inline)) void pv(float *o, int64_t ldo, const float *p, int64_t ldp, int g,
                                                     const void *v, int64_t ldv, int64_t n, int hs, const int T) {
    const int hv = hs & ~7;
    for (int r0 = 0; r0 < g; r0 += 8, o += 8 * ldo, p += 8 * ldp) {
        switch (g - r0 < 8 ? g - r0 : 8) {
        case 1: PV_G(1); break;
        case 2: PV_G(2); break;
        case 3: PV_G(3); break;
        case 4: PV_G(4); break;
        case 5: PV_G(5); break;
        case 6: PV_G(6); break;
        case 7: PV_G(7); break;
        default: PV_G(8); break;
        }
        /* (Without the test GCC kept the loops over rows and keys for an empty range: a quarter
         * of pv's instructions at head size 64.) */
        if (hv < hs)
            for (int r = 0; r < (g - r0 < 8 ? g - r0 : 8); r++)
                for (int64_t j = 0; j < n; j++)
                    for (int e = hv; e < hs; e++) o[r * ldo + e] += p[r * ldp + j] * elem(row_at(v, j, ldv, T), e, T);
    }
}

static void attn_dec_pv(float *o, int64_t ldo, const float *p, int64_t ldp, int g, const void *v, eft_dtype vt,
                        int64_t ldv, int64_t n, int hs) {
    switch (vt) {
    case EFT_DTYPE_F16: pv(o, ldo, p, ldp, g, v, ldv, n, hs, KF16); break;
    case EFT_DTYPE_I8: pv(o, ldo, p, ldp, g, v, ldv, n, hs, KI8); break;
    default: pv(o, ldo, p, ldp, g, v, ldv, n, hs, KF32); break;
    }
}

void eft__kernels_fill_attn_dec_avx2(eft__kernels *k) {
    k->attn_dec_qk = attn_dec_qk;
    k->attn_dec_pv = attn_dec_pv;
}
