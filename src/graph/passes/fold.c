/*
 * fold.c — folds an op into the one before it when nothing else reads the first op's output:
 * a bias add and an activation into the MATMUL that feeds them (the GEMM adds the bias as it
 * stores, and the activation runs on the same rows right after), a residual add into the
 * LayerNorm that follows it. Fewer ops and fewer activations for the plan to place.
 */
#include "graph/ir.h"

/* The only op that reads tensor t, or -1 (none, several, or t is an output or a view's base). */
static int sole_reader(const eft__ir_graph *g, int t) {
    if (g->t[t].kind != EFT__IR_ACT) return -1;
    int found = -1;
    for (int o = 0; o < g->n_ops; o++) {
        const eft__ir_op *op = &g->ops[o];
        if (op->kind == EFT__OP_COUNT) continue;
        for (int i = 0; i < op->n_in; i++)
            if (op->in[i] == t) {
                if (found >= 0) return -1;
                found = o;
            }
    }
    for (int i = 0; i < g->n_t; i++)
        if (g->t[i].view_of == t) return -1;
    return found;
}

eft_status eft__pass_fold(eft__ir_graph *g, eft__error *err) {
    for (int o = 0; o < g->n_ops; o++) {
        eft__ir_op *op = &g->ops[o];
        for (;;) {
            if (op->kind != EFT__OP_MATMUL && op->kind != EFT__OP_ADD) break;
            int r = sole_reader(g, op->out);
            if (r < 0) break;
            eft__ir_op *nx = &g->ops[r];
            if (op->kind == EFT__OP_MATMUL && nx->kind == EFT__OP_BIAS && nx->in[0] == op->out && op->in[2] < 0 &&
                op->act == EFT__IR_ACT_NONE) {
                op->in[2] = nx->in[1];
                op->n_in = 3;
            } else if (op->kind == EFT__OP_MATMUL && nx->kind == EFT__OP_ACT && op->act == EFT__IR_ACT_NONE) {
                op->act = nx->act;
            } else if (op->kind == EFT__OP_ADD && nx->kind == EFT__OP_LAYERNORM && nx->in[0] == op->out) {
                op->kind = EFT__OP_ADD_LN;
                op->in[2] = nx->in[1];
                op->in[3] = nx->in[2];
                op->n_in = 4;
                op->eps = nx->eps;
            } else {
                break;
            }
            /* The folded op's reader moves up to this op's place: everything it reads besides
             * op's output is a weight, so it is ready here too. */
            op->out = nx->out;
            op->head = op->head && nx->head;
            nx->kind = EFT__OP_COUNT;
        }
    }
    eft__ir_compact(g);
    if (g->n_passes < EFT__IR_MAX_PASSES) g->passes[g->n_passes++] = "fold";
    return eft__ir_validate(g, err);
}
