/*
 * ops_scalar.c — the scalar reference of every row and elementwise kernel: norms, softmax,
 * activations, and dot/axpy/scale. These are plain C over libm, compiled for baseline x86-64: they
 * are both the fallback on old CPUs and the yardstick the tests hold the SIMD versions to.
 * Statistics accumulate in double so the yardstick is sharper than what it measures.
 */
#include <math.h>

#include "kernels.h"

static float dot_f32(const float *x, const float *y, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * y[i];
    return (float)s;
}

static void axpy_f32(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void scale_f32(float *y, float a, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] *= a;
}

static void layernorm(float *out, const float *x, const float *w, const float *b, int64_t n, float eps) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; i++) mean += x[i];
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++) var += ((double)x[i] - mean) * ((double)x[i] - mean);
    var /= (double)n;
    float rstd = (float)(1.0 / sqrt(var + eps));
    for (int64_t i = 0; i < n; i++) {
        float y = (x[i] - (float)mean) * rstd;
        if (w) y *= w[i];
        if (b) y += b[i];
        out[i] = y;
    }
}

static void rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps, float w_offset) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * r * (w ? w[i] + w_offset : 1.0f);
}

static void softmax(float *x, int64_t n) {
    if (n <= 0) return;
    float mx = x[0];
    for (int64_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        s += x[i];
    }
    float inv = (float)(1.0 / s);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

static float max_f32(const float *x, int64_t n) {
    float m = x[0];
    for (int64_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

static float exp_sub_sum(float *x, int64_t n, float mx) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        s += x[i];
    }
    return (float)s;
}

static void gelu_erf(float *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

static void gelu_tanh(float *out, const float *x, int64_t n) {
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        out[i] = 0.5f * v * (1.0f + tanhf(c * (v + 0.044715f * v * v * v)));
    }
}

static void silu(float *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = x[i] / (1.0f + expf(-x[i]));
}

static void swiglu(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

static void add(float *out, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* Eight independent multiply-add chains: the compiler keeps them in SSE registers. Baseline x86-64
 * has no FMA, so this measures mul+add, which is what scalar code gets. */
static double fma_probe(int64_t iters) {
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const float m = 0.999999f, a = 1e-7f;
    for (int64_t i = 0; i < iters; i++)
        for (int j = 0; j < 8; j++) x[j] = x[j] * m + a;
    volatile float sink = x[0] + x[7];
    (void)sink;
    return 2.0 * 8 * (double)iters;
}

void eft__kernels_fill_scalar(eft__kernels *k) {
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
}
