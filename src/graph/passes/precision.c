/*
 * precision.c — weight precision: every MATMUL weight converted once, at compile time, to the
 * type asked for. F16 and BF16 halve the bytes the GEMM streams (the micro-kernel widens them);
 * Q8_0 (int8, one f16 scale per 32 weights) and Q4_0 (int4) quarter or eighth them and run on
 * eft__qgemm_f32, which widens each weight exactly and multiplies in f32, so the only error is
 * the rounding of the weights themselves. The rest of the group-quantised family (int4 with groups
 * of 64 or 128, symmetric or with a minimum; int8 with groups of 64 or 128, or one scale per output
 * channel) runs the same way on eft__gqgemm_f32. Activations, norms and biases stay f32.
 */
#include <string.h>

#include "kernels/cpu/kernels.h"

#include "graph/ir.h"

static eft_status convert(eft__ir_graph *g, int ti, eft_dtype to, eft__error *err) {
    eft__ir_tensor *t = &g->t[ti];
    const int64_t N = t->shape[0], K = t->shape[1];
    if (t->dtype == to) return EFT_OK;
    /* Groups that do not divide K shrink to ones that do (per-channel int8 is stored with the
     * largest); F32 when not even 32 divides it (there is no block kernel for that). */
    const bool per_channel = to == EFT_DTYPE_I8_CH;
    to = eft__gq_fit(to, K);
    if (t->dtype == to) return EFT_OK;
    uint64_t n = (uint64_t)N * (uint64_t)K, bytes;
    if (!eft__dtype_nbytes(to, n, &bytes)) return eft__fail(err, EFT_ERR_INTERNAL, "precision: '%s' size", t->name);
    float *w = t->dtype == EFT_DTYPE_F32 && t->owned ? t->owned : eft__malloc_array((size_t)n, sizeof(float));
    void *out = to == EFT_DTYPE_F32 ? (void *)w : eft__malloc_array((size_t)bytes, 1);
    if (!w || !out) {
        if (w != t->owned) eft__free(w);
        if (out != w) eft__free(out);
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory converting '%s' to %s", t->name, eft_dtype_name(to));
    }
    if (w != t->owned && !eft__ir_widen(w, t->data, t->dtype, n)) {
        eft__free(w);
        if (out != w) eft__free(out);
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "precision: '%s' is %s", t->name, eft_dtype_name(t->dtype));
    }
    switch (to) {
    case EFT_DTYPE_F16:
    case EFT_DTYPE_BF16: {
        uint16_t *h = out;
        for (uint64_t i = 0; i < n; i++) h[i] = to == EFT_DTYPE_F16 ? eft__f32_to_f16(w[i]) : eft__f32_to_bf16(w[i]);
        break;
    }
    case EFT_DTYPE_Q8_0:
        if (per_channel) eft__quantize_gq_i8_channel(to, out, w, N, K);
        else eft__quantize_q8_0(out, w, N, K);
        break;
    case EFT_DTYPE_Q4_0: eft__quantize_q4_0(out, w, N, K); break;
    default:
        if (to == EFT_DTYPE_F32) break;
        if (per_channel) eft__quantize_gq_i8_channel(to, out, w, N, K);
        else if (to != EFT_DTYPE_F32) eft__quantize_gq(to, out, w, N, K);
        break;
    }
    if (out != w && w != t->owned) eft__free(w);
    if (t->owned != out) eft__free(t->owned);
    t->owned = out;
    t->data = out;
    t->dtype = to;
    t->nbytes = bytes;
    return EFT_OK;
}

eft_status eft__pass_precision(eft__ir_graph *g, eft_dtype dtype, eft__error *err) {
    if (dtype != EFT_DTYPE_F32 && dtype != EFT_DTYPE_F16 && dtype != EFT_DTYPE_BF16 && dtype != EFT_DTYPE_I8_CH &&
        !eft__gq_layout_of(dtype, NULL))
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "weights as %s: f32, f16, bf16 and the group-quantised int8/int4 "
                         "layouts are implemented", eft_dtype_name(dtype));
    for (int o = 0; o < g->n_ops; o++) {
        if (g->ops[o].kind != EFT__OP_MATMUL) continue;
        eft_status s = convert(g, g->ops[o].in[1], dtype, err);
        if (s != EFT_OK) return s;
    }
    if (g->n_passes < EFT__IR_MAX_PASSES) g->passes[g->n_passes++] = "precision";
    return eft__ir_validate(g, err);
}
