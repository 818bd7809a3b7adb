/*
 * kernels.c — kernel choice: records on every op the kernel the executor runs for it, from the
 * op and its weight's type, so a program says (and `eft info` shows) what each op will run and
 * the executor never guesses.
 */
#include "core/quant.h"
#include "graph/ir.h"

eft_status eft__pass_kernels(eft__ir_graph *g, eft__error *err) {
    for (int o = 0; o < g->n_ops; o++) {
        eft__ir_op *op = &g->ops[o];
        switch (op->kind) {
        case EFT__OP_MATMUL:
            if (op->kernel != EFT__K_NONE) break; /* a builder's choice, for weights it prepared */
            switch (g->t[op->in[1]].dtype) {
            case EFT_DTYPE_F32: op->kernel = EFT__K_SGEMM_F32; break;
            case EFT_DTYPE_F16: op->kernel = EFT__K_SGEMM_F16; break;
            case EFT_DTYPE_BF16: op->kernel = EFT__K_SGEMM_BF16; break;
            case EFT_DTYPE_Q8_0: op->kernel = EFT__K_QGEMM_Q8_0; break;
            case EFT_DTYPE_Q4_0: op->kernel = EFT__K_QGEMM_Q4_0; break;
            default:
                if (eft__gq_layout_of(g->t[op->in[1]].dtype, NULL)) {
                    op->kernel = EFT__K_GQGEMM;
                    break;
                }
                return eft__fail(err, EFT_ERR_UNSUPPORTED, "kernel choice: no kernel multiplies by a %s matrix ('%s')",
                                 eft_dtype_name(g->t[op->in[1]].dtype), g->t[op->in[1]].name);
            }
            break;
        case EFT__OP_ATTENTION: op->kernel = op->in[3] >= 0 ? EFT__K_ATTN_RELBIAS : EFT__K_ATTN_FLASH; break;
        case EFT__OP_CACHE_ATTENTION: op->kernel = EFT__K_ATTN_CACHE; break;
        default: op->kernel = EFT__K_ROWS; break;
        }
    }
    if (g->n_passes < EFT__IR_MAX_PASSES) g->passes[g->n_passes++] = "kernels";
    return eft__ir_validate(g, err);
}

/* Kernels whose drivers take several products of the same rows in one pool run. */
static bool multi_kernel(eft__ir_kernel k) {
    return k == EFT__K_QX4 || k == EFT__K_QX4_I8 || k == EFT__K_GQGEMM || k == EFT__K_QGEMM_Q8_0 || k == EFT__K_QGEMM_Q4_0;
}

eft_status eft__pass_group_matmuls(eft__ir_graph *g, eft__error *err) {
    for (int o = 0; o < g->n_ops;) {
        eft__ir_op *op = &g->ops[o];
        int n = 1;
        if (op->kind == EFT__OP_MATMUL && multi_kernel(op->kernel))
            while (n < 3 && o + n < g->n_ops && g->ops[o + n].kind == EFT__OP_MATMUL &&
                   multi_kernel(g->ops[o + n].kernel) && g->ops[o + n].in[0] == op->in[0])
                n++;
        op->group = n > 1 ? n : 0;
        for (int i = 1; i < n; i++) g->ops[o + i].group = 0;
        o += n;
    }
    if (g->n_passes < EFT__IR_MAX_PASSES) g->passes[g->n_passes++] = "group_matmuls";
    return eft__ir_validate(g, err);
}
