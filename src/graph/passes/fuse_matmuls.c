/*
 * fuse_matmuls.c — horizontal fusion: the MATMULs that read one input (attention's Q, K and V
 * projections) become one MATMUL over their weights stacked row-wise, so the input is streamed
 * once and the GEMM sees one wide N instead of three narrow ones. Their old outputs stay in the
 * graph as column views of the fused output, so the ops that read them (attention) are untouched.
 */
#include <stdio.h>
#include <string.h>

#include "graph/ir.h"

bool eft__ir_widen(float *out, const void *data, eft_dtype dtype, uint64_t n) {
    const unsigned char *p = data;
    for (uint64_t i = 0; i < n; i++) {
        if (dtype == EFT_DTYPE_F32) {
            memcpy(&out[i], p + 4 * i, 4);
        } else if (dtype == EFT_DTYPE_F16 || dtype == EFT_DTYPE_BF16) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = dtype == EFT_DTYPE_F16 ? eft__f16_to_f32(h) : eft__bf16_to_f32(h);
        } else {
            return false;
        }
    }
    return true;
}

static bool fusable(const eft__ir_graph *g, const eft__ir_op *op) {
    if (op->kind != EFT__OP_MATMUL || op->act != EFT__IR_ACT_NONE || g->t[op->out].kind != EFT__IR_ACT) return false;
    eft_dtype d = g->t[op->in[1]].dtype;
    return (d == EFT_DTYPE_F32 || d == EFT_DTYPE_F16 || d == EFT_DTYPE_BF16) && !g->t[op->in[1]].packed;
}

static eft_status fuse(eft__ir_graph *g, const int *ops, int n, eft__error *err) {
    eft__ir_op *first = &g->ops[ops[0]];
    const int64_t K = g->t[first->in[1]].shape[1];
    int64_t N = 0;
    for (int i = 0; i < n; i++) N += g->t[g->ops[ops[i]].in[1]].shape[0];
    bool has_bias = first->in[2] >= 0;
    float *w = eft__malloc_array((size_t)(N * K), sizeof(float));
    float *b = has_bias ? eft__malloc_array((size_t)N, sizeof(float)) : NULL;
    if (!w || (has_bias && !b)) {
        eft__free(w);
        eft__free(b);
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory fusing '%s'", g->t[first->in[1]].name);
    }
    int64_t r = 0;
    for (int i = 0; i < n; i++) {
        const eft__ir_op *op = &g->ops[ops[i]];
        const eft__ir_tensor *wt = &g->t[op->in[1]];
        int64_t ni = wt->shape[0];
        eft__ir_widen(w + r * K, wt->data, wt->dtype, (uint64_t)(ni * K));
        if (has_bias) memcpy(b + r, g->t[op->in[2]].data, sizeof(float) * (size_t)ni);
        r += ni;
    }
    char name[EFT__IR_NAME_MAX + 8];
    snprintf(name, sizeof name, "%s|fused", g->t[first->in[1]].name);
    name[EFT__IR_NAME_MAX - 1] = 0;
    int wi = eft__ir_weight(g, name, EFT_DTYPE_F32, 2, N, K, w, err);
    int bi = -1;
    if (wi >= 0) g->t[wi].owned = w;
    else eft__free(w);
    if (has_bias) {
        snprintf(name, sizeof name, "%s|fused", g->t[first->in[2]].name);
        name[EFT__IR_NAME_MAX - 1] = 0;
        bi = wi >= 0 ? eft__ir_weight(g, name, EFT_DTYPE_F32, 1, N, 0, b, err) : -1;
        if (bi >= 0) g->t[bi].owned = b;
        else eft__free(b);
    }
    if (wi < 0 || (has_bias && bi < 0)) return err ? err->status : EFT_ERR_OUT_OF_MEMORY;
    snprintf(name, sizeof name, "%s|fused", g->t[first->out].name);
    name[EFT__IR_NAME_MAX - 1] = 0;
    int oi = eft__ir_tensor_add(g, name, EFT__IR_ACT, EFT_DTYPE_F32, 2, g->t[first->out].shape[0], N, err);
    if (oi < 0) return err->status;
    first = &g->ops[ops[0]]; /* (tensor_add may not move ops, but stay honest) */
    r = 0;
    for (int i = 0; i < n; i++) {
        eft__ir_op *op = &g->ops[ops[i]];
        eft__ir_tensor *o = &g->t[op->out];
        o->view_of = oi;
        o->col0 = r;
        o->ld = N;
        r += g->t[op->in[1]].shape[0];
        if (i) op->kind = EFT__OP_COUNT;
    }
    first->in[1] = wi;
    first->in[2] = bi;
    first->n_in = 3;
    first->out = oi;
    return EFT_OK;
}

eft_status eft__pass_fuse_matmuls(eft__ir_graph *g, eft__error *err) {
    int *group = eft__malloc_array((size_t)g->n_ops + 1, sizeof(int));
    if (!group) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    eft_status s = EFT_OK;
    for (int o = 0; o < g->n_ops && s == EFT_OK; o++) {
        const eft__ir_op *op = &g->ops[o];
        if (!fusable(g, op)) continue;
        int n = 0;
        group[n++] = o;
        for (int p = o + 1; p < g->n_ops; p++) {
            const eft__ir_op *q = &g->ops[p];
            if (fusable(g, q) && q->in[0] == op->in[0] && q->head == op->head &&
                g->t[q->in[1]].shape[1] == g->t[op->in[1]].shape[1] && (q->in[2] >= 0) == (op->in[2] >= 0))
                group[n++] = p;
        }
        if (n > 1) s = fuse(g, group, n, err);
    }
    eft__free(group);
    if (s != EFT_OK) return s;
    eft__ir_compact(g);
    if (g->n_passes < EFT__IR_MAX_PASSES) g->passes[g->n_passes++] = "fuse_matmuls";
    return eft__ir_validate(g, err);
}
