/*
 * ops_avx2.c — AVX2+FMA versions of the row and elementwise kernels of ops_scalar.c. Tails
 * shorter than 8 go through masked loads and stores, so the same vector formula (and the same
 * rounding) covers every element and no row needs padding.
 */
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "simd_avx2.h"

static float dot_f32(const float *x, const float *y, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
    if (i < n) {
        __m256i m = eft__tail_mask(n - i);
        s1 = _mm256_fmadd_ps(_mm256_maskload_ps(x + i, m), _mm256_maskload_ps(y + i, m), s1);
    }
    return eft__hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

static void axpy_f32(float *y, float a, const float *x, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    if (i < n) {
        __m256i m = eft__tail_mask(n - i);
        _mm256_maskstore_ps(y + i, m, _mm256_fmadd_ps(va, _mm256_maskload_ps(x + i, m), _mm256_maskload_ps(y + i, m)));
    }
}

static void scale_f32(float *y, float a, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(va, _mm256_loadu_ps(y + i)));
    if (i < n) {
        __m256i m = eft__tail_mask(n - i);
        _mm256_maskstore_ps(y + i, m, _mm256_mul_ps(va, _mm256_maskload_ps(y + i, m)));
    }
}

static float sum_f32(const float *x, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + i + 8));
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
    if (i < n) s1 = _mm256_add_ps(s1, _mm256_maskload_ps(x + i, eft__tail_mask(n - i)));
    return eft__hsum256(_mm256_add_ps(s0, s1));
}

/* Sum of (x - mu)^2: the two-pass variance, which does not cancel the way E[x^2] - mu^2 does. */
static float sum_sq_dev(const float *x, float mu, int64_t n) {
    __m256 vm = _mm256_set1_ps(mu), s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm), d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm);
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        s1 = _mm256_fmadd_ps(d1, d1, s1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
        s0 = _mm256_fmadd_ps(d, d, s0);
    }
    if (i < n) {
        __m256i m = eft__tail_mask(n - i);
        /* Masked-out lanes load 0; zero their deviation too. */
        __m256 d = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), vm), _mm256_castsi256_ps(m));
        s1 = _mm256_fmadd_ps(d, d, s1);
    }
    return eft__hsum256(_mm256_add_ps(s0, s1));
}

static void layernorm(float *out, const float *x, const float *w, const float *b, int64_t n, float eps) {
    float mu = sum_f32(x, n) / (float)n;
    float rstd = 1.0f / sqrtf(sum_sq_dev(x, mu, n) / (float)n + eps);
    __m256 vm = _mm256_set1_ps(mu), vr = _mm256_set1_ps(rstd), one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 y = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vr);
        __m256 vw = w ? _mm256_loadu_ps(w + i) : one;
        __m256 vb = b ? _mm256_loadu_ps(b + i) : zero;
        _mm256_storeu_ps(out + i, _mm256_fmadd_ps(y, vw, vb));
    }
    if (i < n) {
        __m256i m = eft__tail_mask(n - i);
        __m256 y = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), vm), vr);
        __m256 vw = w ? _mm256_maskload_ps(w + i, m) : one;
        __m256 vb = b ? _mm256_maskload_ps(b + i, m) : zero;
        _mm256_maskstore_ps(out + i, m, _mm256_fmadd_ps(y, vw, vb));
    }
}

static void rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps, float w_offset) {
    float ss = sum_sq_dev(x, 0.0f, n);
    __m256 vr = _mm256_set1_ps(1.0f / sqrtf(ss / (float)n + eps)), off = _mm256_set1_ps(w_offset);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 y = _mm256_mul_ps(_mm256_loadu_ps(x + i), vr);
        if (w) y = _mm256_mul_ps(y, _mm256_add_ps(_mm256_loadu_ps(w + i), off));
        _mm256_storeu_ps(out + i, y);
    }
    if (i < n) {
        __m256i m = eft__tail_mask(n - i);
        __m256 y = _mm256_mul_ps(_mm256_maskload_ps(x + i, m), vr);
        if (w) y = _mm256_mul_ps(y, _mm256_add_ps(_mm256_maskload_ps(w + i, m), off));
        _mm256_maskstore_ps(out + i, m, y);
    }
}

static float max_f32(const float *x, int64_t n) {
    __m256 mx = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(x + i));
    float m = eft__hmax256(mx);
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

static float exp_sub_sum(float *x, int64_t n, float m) {
    __m256 vm = _mm256_set1_ps(m), s = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = eft__exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        s = _mm256_add_ps(s, e);
        _mm256_storeu_ps(x + i, e);
    }
    if (i < n) {
        __m256i msk = eft__tail_mask(n - i);
        __m256 e = eft__exp256(_mm256_sub_ps(_mm256_maskload_ps(x + i, msk), vm));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(msk));
        s = _mm256_add_ps(s, e);
        _mm256_maskstore_ps(x + i, msk, e);
    }
    return eft__hsum256(s);
}

static void softmax(float *x, int64_t n) {
    if (n <= 0) return;
    float m = max_f32(x, n);
    scale_f32(x, 1.0f / exp_sub_sum(x, n, m), n);
}

/* Applies f to every element of x into out, 8 at a time with a masked tail. Masked loads and
 * stores only for the tail: a vmaskmovps store costs about ten times a plain one on Zen 3 (every
 * element-wise kernel here ran three times slower with them in the main loop). */
#define ELEMENTWISE(name, expr)                                                                   \
    static void name(float *out, const float *x, int64_t n) {                                     \
        int64_t i = 0;                                                                            \
        for (; i + 8 <= n; i += 8) {                                                              \
            __m256 v = _mm256_loadu_ps(x + i);                                                    \
            _mm256_storeu_ps(out + i, (expr));                                                    \
        }                                                                                         \
        if (i < n) {                                                                              \
            __m256i m = eft__tail_mask(n - i);                                                    \
            __m256 v = _mm256_maskload_ps(x + i, m);                                              \
            _mm256_maskstore_ps(out + i, m, (expr));                                              \
        }                                                                                         \
    }

ELEMENTWISE(gelu_erf, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v),
                                    _mm256_add_ps(_mm256_set1_ps(1.0f),
                                                  eft__erf256(_mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f))))))

static inline __m256 gelu_tanh_v(__m256 v) {
    __m256 v3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
    __m256 in = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_fmadd_ps(v3, _mm256_set1_ps(0.044715f), v));
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v), _mm256_add_ps(_mm256_set1_ps(1.0f), eft__tanh256(in)));
}
ELEMENTWISE(gelu_tanh, gelu_tanh_v(v))

static inline __m256 silu_v(__m256 v) {
    return _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), eft__exp256(_mm256_sub_ps(_mm256_setzero_ps(), v))));
}
ELEMENTWISE(silu, silu_v(v))

static void swiglu(float *out, const float *gate, const float *up, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_mul_ps(silu_v(_mm256_loadu_ps(gate + i)), _mm256_loadu_ps(up + i)));
    if (i < n) {
        __m256i m = eft__tail_mask(n - i);
        _mm256_maskstore_ps(out + i, m, _mm256_mul_ps(silu_v(_mm256_maskload_ps(gate + i, m)), _mm256_maskload_ps(up + i, m)));
    }
}

static void add(float *out, const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    if (i < n) {
        __m256i m = eft__tail_mask(n - i);
        _mm256_maskstore_ps(out + i, m, _mm256_add_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m)));
    }
}

/* ---------------------------------------------------------------------------------------------
 * Flash attention's inner steps (contracts in kernels.h)
 * ------------------------------------------------------------------------------------------- */

/* The key panel is a transpose (keys become columns); scalar, it cost over a tenth of the
 * encoder's attention at 128 tokens (one strided store per element), so it goes 8 x 8 blocks at
 * a time. */
static void attn_pack_k16(float *dst, const float *k, int64_t ldk, int n, int64_t hs) {
    for (int r0 = 0; r0 < 16; r0 += 8)
        for (int64_t d0 = 0; d0 < hs; d0 += 8) {
            int64_t nd = hs - d0 < 8 ? hs - d0 : 8;
            __m256i m = eft__tail_mask(nd);
            __m256 b[8];
            for (int rr = 0; rr < 8; rr++)
                b[rr] = r0 + rr < n ? _mm256_maskload_ps(k + (r0 + rr) * ldk + d0, m) : _mm256_setzero_ps();
            eft__transpose8_ps(b);
            for (int64_t dd = 0; dd < nd; dd++) _mm256_store_ps(dst + (d0 + dd) * 16 + r0, b[dd]);
        }
}

/* Lanes j .. j+7 of a row that sees keys [a, b) and, with a mask, only those with mask[j] != 0
 * (mask readable up to nk). */
static inline __m256 visible8(int64_t j, int64_t a, int64_t b, const uint8_t *mask, int64_t nk) {
    __m256i jj = _mm256_add_epi32(_mm256_set1_epi32((int)j), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256i ok = _mm256_and_si256(_mm256_cmpgt_epi32(jj, _mm256_set1_epi32((int)a - 1)),
                                  _mm256_cmpgt_epi32(_mm256_set1_epi32((int)b), jj));
    if (mask) {
        uint64_t bytes = 0;
        if (j < nk) memcpy(&bytes, mask + j, (size_t)(nk - j < 8 ? nk - j : 8));
        __m256i mv = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)bytes));
        ok = _mm256_andnot_si256(_mm256_cmpeq_epi32(mv, _mm256_setzero_si256()), ok);
    }
    return _mm256_castsi256_ps(ok);
}

/* One pass finds the row's max, a second writes exp(x - max) and sums it; the scale rides in
 * the exponent's FMA (x scale - max) when there is no soft-capping, so a tile every row sees
 * whole costs two loads, one FMA and the exp per score. */
static void attn_softmax(float *s, int64_t lds, int nq, int64_t nk, const int32_t *lo, const int32_t *hi,
                         const uint8_t *mask, float scale, float softcap, float *m, float *l, float *o, int64_t ldo,
                         int64_t hsp) {
    const int64_t nkp = (nk + 15) & ~(int64_t)15;
    const float log2e = 1.44269504088896341f;
    const __m256 ninf = _mm256_set1_ps(-INFINITY), vscale = _mm256_set1_ps(scale);
    const __m256 vlog2e = _mm256_set1_ps(log2e), vscale2 = _mm256_set1_ps(scale * log2e);
    const bool raw = softcap <= 0 && scale > 0; /* max and exp read the unscaled scores */
    const __m256 vcap = _mm256_set1_ps(softcap), vicap = _mm256_set1_ps(softcap > 0 ? 1.0f / softcap : 0.0f);
    for (int i = 0; i < nq; i++) {
        float *r = s + i * lds;
        const int64_t a = lo ? lo[i] : 0, b = hi ? hi[i] : nk;
        const bool whole = a == 0 && b == nk && nk == nkp && !mask;
        __m256 vmx = ninf;
        if (a >= b) goto zero;
        if (whole && raw) {
            for (int64_t j = 0; j < nkp; j += 8) vmx = _mm256_max_ps(vmx, _mm256_loadu_ps(r + j));
        } else {
            for (int64_t j = 0; j < nkp; j += 8) {
                __m256 x = _mm256_loadu_ps(r + j);
                if (!raw) {
                    x = _mm256_mul_ps(x, vscale);
                    if (softcap > 0) x = _mm256_mul_ps(vcap, eft__tanh256(_mm256_mul_ps(x, vicap)));
                }
                if (!whole) x = _mm256_blendv_ps(ninf, x, visible8(j, a, b, mask, nk));
                _mm256_storeu_ps(r + j, x);
                vmx = _mm256_max_ps(vmx, x);
            }
        }
        float mx = eft__hmax256(vmx);
        if (mx == -INFINITY) goto zero;
        if (raw) mx *= scale; /* scale > 0 keeps the order, and rounding is monotonic */
        const float mnew = mx > m[i] ? mx : m[i];
        /* exp(x - m) = 2^(x log2(e) - m log2(e)), one FMA from the raw or the scaled score. */
        const __m256 vm = _mm256_set1_ps(mnew * log2e);
        __m256 sum = _mm256_setzero_ps();
        for (int64_t j = 0; j < nkp; j += 8) {
            __m256 x = _mm256_loadu_ps(r + j);
            __m256 e = eft__exp2_256_nonpos(_mm256_fmsub_ps(x, raw ? vscale2 : vlog2e, vm));
            if (!whole) e = _mm256_and_ps(e, _mm256_cmp_ps(x, ninf, _CMP_NEQ_OQ));
            sum = _mm256_add_ps(sum, e);
            _mm256_storeu_ps(r + j, e);
        }
        if (m[i] != mnew && m[i] != -INFINITY) {
            /* Rows that saw nothing yet have O = 0 and l = 0: no rescale needed. */
            float corr = expf(m[i] - mnew);
            __m256 vc = _mm256_set1_ps(corr);
            float *oi = o + i * ldo;
            for (int64_t d = 0; d < hsp; d += 8) _mm256_storeu_ps(oi + d, _mm256_mul_ps(vc, _mm256_loadu_ps(oi + d)));
            l[i] *= corr;
        }
        l[i] += eft__hsum256(sum);
        m[i] = mnew;
        continue;
    zero:
        for (int64_t j = 0; j < nkp; j += 8) _mm256_storeu_ps(r + j, _mm256_setzero_ps());
    }
}

/* Twelve independent FMA chains: enough to cover the 4-cycle latency on both FMA pipes. */
static double fma_probe(int64_t iters) {
    __m256 x0 = _mm256_set1_ps(1.0f), x1 = _mm256_set1_ps(1.1f), x2 = _mm256_set1_ps(1.2f), x3 = _mm256_set1_ps(1.3f);
    __m256 x4 = _mm256_set1_ps(1.4f), x5 = _mm256_set1_ps(1.5f), x6 = _mm256_set1_ps(1.6f), x7 = _mm256_set1_ps(1.7f);
    __m256 x8 = _mm256_set1_ps(1.8f), x9 = _mm256_set1_ps(1.9f), xa = _mm256_set1_ps(2.0f), xb = _mm256_set1_ps(2.1f);
    const __m256 m = _mm256_set1_ps(0.9999999f), a = _mm256_set1_ps(1e-7f);
    for (int64_t i = 0; i < iters; i++) {
        x0 = _mm256_fmadd_ps(x0, m, a); x1 = _mm256_fmadd_ps(x1, m, a); x2 = _mm256_fmadd_ps(x2, m, a);
        x3 = _mm256_fmadd_ps(x3, m, a); x4 = _mm256_fmadd_ps(x4, m, a); x5 = _mm256_fmadd_ps(x5, m, a);
        x6 = _mm256_fmadd_ps(x6, m, a); x7 = _mm256_fmadd_ps(x7, m, a); x8 = _mm256_fmadd_ps(x8, m, a);
        x9 = _mm256_fmadd_ps(x9, m, a); xa = _mm256_fmadd_ps(xa, m, a); xb = _mm256_fmadd_ps(xb, m, a);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)),
                             _mm256_add_ps(_mm256_add_ps(x4, x5), _mm256_add_ps(x6, x7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(x8, x9), _mm256_add_ps(xa, xb)));
    volatile float sink = eft__hsum256(s);
    (void)sink;
    return 2.0 * 8 * 12 * (double)iters;
}

void eft__kernels_fill_avx2(eft__kernels *k) {
    k->dot_f32 = dot_f32;
    k->axpy_f32 = axpy_f32;
    k->scale_f32 = scale_f32;
    k->layernorm = layernorm;
    k->rmsnorm = rmsnorm;
    k->softmax = softmax;
    k->exp_sub_sum = exp_sub_sum;
    k->max_f32 = max_f32;
    k->gelu_erf = gelu_erf;
    k->gelu_tanh = gelu_tanh;
    k->silu = silu;
    k->swiglu = swiglu;
    k->add = add;
    k->fma_probe = fma_probe;
    k->attn_pack_k16 = attn_pack_k16;
    k->attn_softmax = attn_softmax;
}
