/* test_ir.c — the graph IR and its passes on a small hand-built graph (one attention block and an
 * MLP): the validator's refusals, each pass's rewrite checked op by op (fold, fuse_matmuls,
 * precision, kernels), the plan's arena (no two live tensors share bytes, smaller than giving
 * every tensor its own), the JSON round trip, and every rewritten graph's outputs against the
 * unrewritten graph run op for op. Then a decoder-shaped graph (the ops models/decoder.c emits:
 * RMSNorm per head, rope, attention over a KV cache kept as retained state, a gated unit, the
 * gather of the rows asked for and softcapped logits into a bound output): the per-row ops
 * against plain loops, and the state's contract — a prompt in one call, in chunks or token by
 * token gives the same logits, and slots do not see each other — for f32, f16 and int8 caches. */
#include <math.h>
#include <string.h>

#include "core/json.h"
#include "core/threadpool.h"
#include "graph/ir.h"
#include "kernels/cpu/kernels.h"
#include "test.h"

enum { C = 64, NH = 2, I = 128, MAXB = 2, MAXT = 8 };
static float W[6][I * C], Bv[6][I], LN[2][C];

static void init_weights(void) {
    uint32_t s = 12345;
    for (int m = 0; m < 6; m++) {
        for (int i = 0; i < I * C; i++) {
            s = s * 1664525u + 1013904223u;
            W[m][i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 0.25f;
        }
        for (int i = 0; i < I; i++) Bv[m][i] = 0.01f * (float)((i * 7 + m) % 13 - 6);
    }
    for (int i = 0; i < C; i++) LN[0][i] = 1.0f + 0.01f * (float)(i % 5), LN[1][i] = 0.02f * (float)(i % 3);
}

static int act(eft__ir_graph *g, const char *n, eft__ir_tkind k, int64_t cols) {
    return eft__ir_tensor_add(g, n, k, EFT_DTYPE_F32, 2, EFT__IR_DIM_M, cols, NULL);
}
static int op(eft__ir_graph *g, eft__ir_opkind k, int out, int a, int b, int c, int d) {
    int in[4] = {a, b, c, d}, n = d >= 0 ? 4 : c >= 0 ? 3 : b >= 0 ? 2 : 1;
    eft__ir_op_add(g, k, in, n, out, NULL);
    return g->n_ops - 1;
}

/* x -> q, k, v (matmul + bias) -> attention -> o (matmul + bias) -> add x -> layernorm -> y;
 * y -> up (matmul + bias) -> gelu -> h. Outputs y and h. */
static eft__ir_graph *build(void) {
    eft__ir_graph *g = eft__ir_new();
    int x = act(g, "x", EFT__IR_INPUT, C);
    const char *nm[4] = {"q", "k", "v", "o"};
    int w[5], b[5], out[4];
    char name[64];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "w%d", i);
        w[i] = eft__ir_weight(g, name, EFT_DTYPE_F32, 2, i == 4 ? I : C, C, W[i], NULL);
        snprintf(name, sizeof name, "b%d", i);
        b[i] = eft__ir_weight(g, name, EFT_DTYPE_F32, 1, i == 4 ? I : C, 0, Bv[i], NULL);
    }
    int ctx = -1;
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.mm", nm[i]);
        int mm = act(g, name, EFT__IR_ACT, C);
        out[i] = act(g, nm[i], EFT__IR_ACT, C);
        op(g, EFT__OP_MATMUL, mm, i == 3 ? ctx : x, w[i], -1, -1);
        op(g, EFT__OP_BIAS, out[i], mm, b[i], -1, -1);
        if (i == 2) {
            ctx = act(g, "ctx", EFT__IR_ACT, C);
            int a = op(g, EFT__OP_ATTENTION, ctx, out[0], out[1], out[2], -1);
            g->ops[a].heads = NH;
            g->ops[a].scale = 0.25f;
        }
    }
    int lw = eft__ir_weight(g, "ln.w", EFT_DTYPE_F32, 1, C, 0, LN[0], NULL);
    int lb = eft__ir_weight(g, "ln.b", EFT_DTYPE_F32, 1, C, 0, LN[1], NULL);
    int sum = act(g, "sum", EFT__IR_ACT, C), y = act(g, "y", EFT__IR_OUTPUT, C);
    op(g, EFT__OP_ADD, sum, out[3], x, -1, -1);
    g->ops[op(g, EFT__OP_LAYERNORM, y, sum, lw, lb, -1)].eps = 1e-5f;
    int upm = act(g, "up.mm", EFT__IR_ACT, I), up = act(g, "up", EFT__IR_ACT, I), h = act(g, "h", EFT__IR_OUTPUT, I);
    op(g, EFT__OP_MATMUL, upm, y, w[4], -1, -1);
    op(g, EFT__OP_BIAS, up, upm, b[4], -1, -1);
    g->ops[op(g, EFT__OP_ACT, h, up, -1, -1, -1)].act = EFT__IR_ACT_GELU;
    return g;
}

static int count(const eft__ir_graph *g, eft__ir_opkind k) {
    int n = 0;
    for (int o = 0; o < g->n_ops; o++) n += g->ops[o].kind == k;
    return n;
}

/* Chooses kernels, packs, plans and runs g on two sequences (5 and 3 tokens); y and h out. */
static void run(eft__ir_graph *g, float *y, float *h) {
    eft__error err = {0};
    if (g->n_passes == 0 || strcmp(g->passes[g->n_passes - 1], "kernels")) CHECK(eft__pass_kernels(g, &err) == EFT_OK);
    CHECK_MSG(eft__ir_pack(g, &err) == EFT_OK, "%s", err.msg);
    CHECK(eft__ir_plan(g, MAXB, MAXT, 1, &err) == EFT_OK);
    void *arena = eft__malloc_aligned((size_t)g->arena_bytes);
    int32_t off[3] = {0, 5, 8};
    eft__ir_run r = {.B = 2, .M = 8, .off = off};
    float *x = eft__ir_at(g, arena, eft__ir_find(g, "x"));
    for (int i = 0; i < 8 * C; i++) x[i] = sinf(0.37f * (float)i);
    eft__ir_exec(g, eft__kernels_get(), NULL, arena, &r, 0, g->n_ops);
    memcpy(y, eft__ir_at(g, arena, eft__ir_find(g, "y")), sizeof(float) * 8 * C);
    memcpy(h, eft__ir_at(g, arena, eft__ir_find(g, "h")), sizeof(float) * 8 * I);
    eft__free_aligned(arena);
}

static double maxdiff(const float *a, const float *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static float Y0[8 * C], H0[8 * I];

static void test_validate(void) {
    eft__error err = {0};
    eft__ir_graph *g = build();
    CHECK_MSG(eft__ir_validate(g, &err) == EFT_OK, "%s", err.msg);
    /* Read before written: the attention moved in front of the products it reads. */
    eft__ir_op tmp = g->ops[0];
    g->ops[0] = g->ops[6];
    g->ops[6] = tmp;
    CHECK(eft__ir_validate(g, &err) == EFT_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "before anything writes it");
    eft__ir_free(g);
    /* A weight of the wrong width. */
    g = build();
    g->t[eft__ir_find(g, "w1")].shape[1] = C / 2;
    g->t[eft__ir_find(g, "w1")].ld = C / 2;
    g->t[eft__ir_find(g, "w1")].nbytes /= 2;
    CHECK(eft__ir_validate(g, &err) == EFT_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "wrong shape");
    eft__ir_free(g);
    /* A view reaching past its base. */
    g = build();
    int v = eft__ir_find(g, "q");
    g->t[v].view_of = eft__ir_find(g, "k");
    g->t[v].col0 = 8;
    g->t[v].ld = C;
    CHECK(eft__ir_validate(g, &err) == EFT_ERR_FORMAT);
    eft__ir_free(g);
}

static void test_fold(void) {
    eft__error err = {0};
    eft__ir_graph *g = build();
    CHECK(count(g, EFT__OP_BIAS) == 5 && count(g, EFT__OP_ACT) == 1 && g->n_ops == 14);
    CHECK_MSG(eft__pass_fold(g, &err) == EFT_OK, "%s", err.msg);
    CHECK(count(g, EFT__OP_BIAS) == 0 && count(g, EFT__OP_ACT) == 0 && count(g, EFT__OP_ADD) == 0 &&
          count(g, EFT__OP_LAYERNORM) == 0 && count(g, EFT__OP_ADD_LN) == 1 && count(g, EFT__OP_MATMUL) == 5);
    CHECK(g->n_ops == 7);
    int last = g->n_ops - 1;
    CHECK(g->ops[last].kind == EFT__OP_MATMUL && g->ops[last].act == EFT__IR_ACT_GELU && g->ops[last].in[2] >= 0 &&
          !strcmp(g->t[g->ops[last].out].name, "h"));
    CHECK(eft__ir_find(g, "up.mm") < 0); /* intermediate tensors are gone */
    float y[8 * C], h[8 * I];
    run(g, y, h);
    CHECK_MSG(maxdiff(y, Y0, 8 * C) < 1e-5 && maxdiff(h, H0, 8 * I) < 1e-5, "fold changed the outputs: %g %g",
              maxdiff(y, Y0, 8 * C), maxdiff(h, H0, 8 * I));
    eft__ir_free(g);
}

static void test_fuse(void) {
    eft__error err = {0};
    eft__ir_graph *g = build();
    CHECK(eft__pass_fold(g, &err) == EFT_OK);
    CHECK_MSG(eft__pass_fuse_matmuls(g, &err) == EFT_OK, "%s", err.msg);
    CHECK(count(g, EFT__OP_MATMUL) == 3 && g->n_ops == 5);
    const eft__ir_op *f = &g->ops[0];
    CHECK(f->kind == EFT__OP_MATMUL && g->t[f->in[1]].shape[0] == 3 * C && g->t[f->in[1]].shape[1] == C &&
          g->t[f->in[2]].shape[0] == 3 * C && g->t[f->out].shape[1] == 3 * C);
    const char *qkv[3] = {"q", "k", "v"};
    for (int i = 0; i < 3; i++) {
        const eft__ir_tensor *t = &g->t[eft__ir_find(g, qkv[i])];
        CHECK(t->view_of == f->out && t->col0 == i * C && t->ld == 3 * C);
    }
    /* The fused weight is the three stacked. */
    const float *fw = g->t[f->in[1]].data;
    CHECK(fw[0] == W[0][0] && fw[C * C] == W[1][0] && fw[2 * C * C + 5] == W[2][5]);
    CHECK(g->n_passes == 2 && !strcmp(g->passes[1], "fuse_matmuls"));
    float y[8 * C], h[8 * I];
    run(g, y, h);
    CHECK_MSG(maxdiff(y, Y0, 8 * C) < 1e-5 && maxdiff(h, H0, 8 * I) < 1e-5, "fusion changed the outputs");
    eft__ir_free(g);
}

static void test_precision_and_kernels(void) {
    /* The group-quantised layouts other than Q8_0/Q4_0 run on the family's kernel. */
    const eft_dtype types[] = {EFT_DTYPE_F16,    EFT_DTYPE_BF16,   EFT_DTYPE_Q8_0,  EFT_DTYPE_Q4_0,
                               EFT_DTYPE_Q4_1,   EFT_DTYPE_I4_G64, EFT_DTYPE_U4_G64, EFT_DTYPE_I8_G64};
    const eft__ir_kernel kern[] = {EFT__K_SGEMM_F16, EFT__K_SGEMM_BF16, EFT__K_QGEMM_Q8_0, EFT__K_QGEMM_Q4_0,
                                   EFT__K_GQGEMM,    EFT__K_GQGEMM,     EFT__K_GQGEMM,     EFT__K_GQGEMM};
    const double tol[] = {2e-2, 1e-1, 3e-2, 3e-1, 3e-1, 3e-1, 3e-1, 3e-2};
    for (int i = 0; i < (int)(sizeof types / sizeof types[0]); i++) {
        eft__error err = {0};
        eft__ir_graph *g = build();
        CHECK(eft__pass_fold(g, &err) == EFT_OK && eft__pass_fuse_matmuls(g, &err) == EFT_OK);
        CHECK_MSG(eft__pass_precision(g, types[i], &err) == EFT_OK, "%s", err.msg);
        CHECK(eft__pass_kernels(g, &err) == EFT_OK);
        for (int o = 0; o < g->n_ops; o++) {
            const eft__ir_op *op = &g->ops[o];
            CHECK(op->kernel != EFT__K_NONE);
            if (op->kind == EFT__OP_MATMUL) CHECK(g->t[op->in[1]].dtype == types[i] && op->kernel == kern[i]);
            if (op->kind == EFT__OP_ATTENTION) CHECK(op->kernel == EFT__K_ATTN_FLASH);
        }
        uint64_t wbytes = g->t[g->ops[0].in[1]].nbytes;
        CHECK(wbytes < (uint64_t)3 * C * C * 4); /* really converted */
        float y[8 * C], h[8 * I];
        run(g, y, h);
        double d = maxdiff(y, Y0, 8 * C);
        CHECK_MSG(d > 0 && d < tol[i], "%s: max |diff| %g", eft_dtype_name(types[i]), d);
        eft__ir_free(g);
    }
    /* Groups of 128 only where K allows; every K here is 64, so U4_G128 becomes U4_G64 and
     * per-channel int8 I8_G64, one scale a row repeated in each block. */
    const eft_dtype big[2] = {EFT_DTYPE_U4_G128, EFT_DTYPE_I8_CH};
    for (int i = 0; i < 2; i++) {
        eft__error err = {0};
        eft__ir_graph *g = build();
        CHECK(eft__pass_fold(g, &err) == EFT_OK && eft__pass_fuse_matmuls(g, &err) == EFT_OK);
        CHECK_MSG(eft__pass_precision(g, big[i], &err) == EFT_OK, "%s", err.msg);
        CHECK(eft__pass_kernels(g, &err) == EFT_OK);
        int n128 = 0;
        for (int o = 0; o < g->n_ops; o++) {
            const eft__ir_op *op = &g->ops[o];
            if (op->kind != EFT__OP_MATMUL) continue;
            const eft__ir_tensor *w = &g->t[op->in[1]];
            if (w->shape[1] % 128 == 0) {
                n128++;
                CHECK(w->dtype == (i ? EFT_DTYPE_I8_G128 : EFT_DTYPE_U4_G128) && op->kernel == EFT__K_GQGEMM);
            } else {
                CHECK(w->dtype == (i ? EFT_DTYPE_I8_G64 : EFT_DTYPE_U4_G64) && op->kernel == EFT__K_GQGEMM);
            }
        }
        CHECK(n128 == 0);
        float y[8 * C], h[8 * I];
        run(g, y, h);
        double d = maxdiff(y, Y0, 8 * C);
        CHECK_MSG(d > 0 && d < (i ? 3e-2 : 3e-1), "%s: max |diff| %g", eft_dtype_name(big[i]), d);
        eft__ir_free(g);
    }
    eft__error err = {0};
    eft__ir_graph *g = build();
    CHECK(eft__pass_precision(g, EFT_DTYPE_Q5_0, &err) == EFT_ERR_UNSUPPORTED);
    eft__ir_free(g);
}

static void test_plan_and_json(void) {
    eft__error err = {0};
    eft__ir_graph *g = build();
    CHECK(eft__pass_fold(g, &err) == EFT_OK && eft__pass_fuse_matmuls(g, &err) == EFT_OK &&
          eft__pass_precision(g, EFT_DTYPE_Q8_0, &err) == EFT_OK && eft__pass_kernels(g, &err) == EFT_OK);
    CHECK(eft__ir_plan(g, MAXB, MAXT, 2, &err) == EFT_OK);
    uint64_t own = 0;
    for (int i = 0; i < g->n_t; i++) {
        const eft__ir_tensor *a = &g->t[i];
        if (a->kind == EFT__IR_WEIGHT || a->view_of >= 0) continue;
        uint64_t sa = eft__ir_tensor_bytes(a, MAXB * MAXT);
        own += sa;
        CHECK(a->offset >= 0 && (uint64_t)a->offset + sa <= g->arena_bytes && a->offset % 64 == 0);
        for (int j = 0; j < i; j++) {
            const eft__ir_tensor *b = &g->t[j];
            if (b->kind == EFT__IR_WEIGHT || b->view_of >= 0) continue;
            uint64_t sb = eft__ir_tensor_bytes(b, MAXB * MAXT);
            bool live = a->first <= b->last && b->first <= a->last;
            bool overlap = (uint64_t)a->offset < b->offset + sb && (uint64_t)b->offset < a->offset + sa;
            CHECK_MSG(!(live && overlap), "'%s' and '%s' share bytes while both live", a->name, b->name);
        }
    }
    uint64_t max_scratch = 0;
    for (int o = 0; o < g->n_ops; o++) {
        /* Quantised products stream up to EFT__QSTREAM_MAX_M rows without scratch. */
        bool needs = g->ops[o].kernel == EFT__K_ATTN_FLASH ||
                     (g->ops[o].kernel == EFT__K_QGEMM_Q8_0 && MAXB * MAXT > EFT__QSTREAM_MAX_M);
        if (needs) CHECK(g->ops[o].scratch_bytes > 0 && g->ops[o].scratch_off >= 0);
        if (g->ops[o].kernel == EFT__K_QGEMM_Q8_0 && !needs) CHECK(g->ops[o].scratch_bytes == 0);
        if ((uint64_t)g->ops[o].scratch_bytes > max_scratch) max_scratch = (uint64_t)g->ops[o].scratch_bytes;
    }
    /* Reuse: no more than one buffer each plus the largest scratch (scratch is live for one op). */
    CHECK_MSG(g->arena_bytes <= own + max_scratch + 64 * 1024, "arena %llu, activations %llu, largest scratch %llu",
              (unsigned long long)g->arena_bytes, (unsigned long long)own, (unsigned long long)max_scratch);
    /* JSON: the same graph back, kernels and views included. */
    json_t *j = eft__ir_to_json(g);
    CHECK(j != NULL);
    eft__ir_graph *h = NULL;
    CHECK_MSG(eft__ir_from_json(j, &h, &err) == EFT_OK, "%s", err.msg);
    if (h) {
        CHECK(h->n_ops == g->n_ops && h->n_t == g->n_t && h->n_passes == 4);
        for (int o = 0; o < g->n_ops && o < h->n_ops; o++)
            CHECK(h->ops[o].kind == g->ops[o].kind && h->ops[o].kernel == g->ops[o].kernel &&
                  h->ops[o].out == g->ops[o].out && h->ops[o].act == g->ops[o].act && h->ops[o].heads == g->ops[o].heads);
        for (int i = 0; i < g->n_t && i < h->n_t; i++) {
            CHECK(!strcmp(h->t[i].name, g->t[i].name) && h->t[i].view_of == g->t[i].view_of &&
                  h->t[i].ld == g->t[i].ld && h->t[i].dtype == g->t[i].dtype);
            if (h->t[i].kind == EFT__IR_WEIGHT) h->t[i].data = g->t[i].data;
        }
        CHECK(eft__ir_validate(h, &err) == EFT_OK);
    }
    eft__ir_free(h);
    /* A kernel that does not fit its op is refused. */
    json_t *ops = json_object_get(j, "ops");
    json_object_set_new(json_array_get(ops, 0), "kernel", json_string("sgemm_f32"));
    CHECK(eft__ir_from_json(j, &h, &err) == EFT_ERR_FORMAT && h == NULL);
    json_decref(j);
    eft__ir_free(g);
}

/* ---------------------------------------------------------------------------------------------
 * A decoder-shaped graph
 * ------------------------------------------------------------------------------------------- */

enum { DV = 16, DNH = 4, DNKV = 2, DHS = 16, DQD = DNH * DHS, DKD = DNKV * DHS, DCTX = 16, DSLOTS = 3, DMAXT = 12 };
static float DEMB[DV * C], DNORM[C], DHN[DHS], DWQ[DQD * C], DWK[DKD * C], DWV[DKD * C], DWO[DV * DQD];

static void init_decoder_weights(void) {
    uint32_t s = 777;
    float *all[] = {DEMB, DWQ, DWK, DWV, DWO};
    size_t n[] = {DV * C, DQD * C, DKD * C, DKD * C, DV * DQD};
    for (int m = 0; m < 5; m++)
        for (size_t i = 0; i < n[m]; i++) {
            s = s * 1664525u + 1013904223u;
            all[m][i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 0.5f;
        }
    for (int i = 0; i < C; i++) DNORM[i] = 0.1f * (float)(i % 7) - 0.2f;
    for (int i = 0; i < DHS; i++) DHN[i] = 0.05f * (float)(i % 5);
}

typedef struct dgraph {
    eft__ir_graph *g;
    eft__rope_table rope;
    void *arena, *state;
    int ids, pos, rows;
} dgraph;

/* ids -> embed (x2) -> rmsnorm (+1) -> q, k, v -> q: rmsnorm per head -> rope q, k ->
 * cache attention -> glu(silu, q_rot, attn) -> gather -> logits (softcap 3, bound). */
/* quant: every product's weights quantised to Q8_0 (the precision pass): q, k and v then run as
 * one group. */
static void dbuild(dgraph *d, eft_dtype kv, bool quant) {
    eft__error err = {0};
    eft__ir_graph *g = d->g = eft__ir_new();
    d->ids = eft__ir_tensor_add(g, "ids", EFT__IR_INPUT, EFT_DTYPE_I32, 1, EFT__IR_DIM_M, 0, NULL);
    d->pos = eft__ir_tensor_add(g, "pos", EFT__IR_INPUT, EFT_DTYPE_I32, 1, EFT__IR_DIM_M, 0, NULL);
    d->rows = eft__ir_tensor_add(g, "rows", EFT__IR_INPUT, EFT_DTYPE_I32, 1, EFT__IR_DIM_R, 0, NULL);
    int emb = eft__ir_weight(g, "emb", EFT_DTYPE_F32, 2, DV, C, DEMB, NULL);
    int nw = eft__ir_weight(g, "norm", EFT_DTYPE_F32, 1, C, 0, DNORM, NULL);
    int hn = eft__ir_weight(g, "head_norm", EFT_DTYPE_F32, 1, DHS, 0, DHN, NULL);
    int wq = eft__ir_weight(g, "wq", EFT_DTYPE_F32, 2, DQD, C, DWQ, NULL);
    int wk = eft__ir_weight(g, "wk", EFT_DTYPE_F32, 2, DKD, C, DWK, NULL);
    int wv = eft__ir_weight(g, "wv", EFT_DTYPE_F32, 2, DKD, C, DWV, NULL);
    int wo = eft__ir_weight(g, "wo", EFT_DTYPE_F32, 2, DV, DQD, DWO, NULL);
    eft__rope_params rp = {.rot_dims = DHS, .base = 10000.0f, .max_pos = DCTX, .ctx_len = DCTX};
    CHECK(eft__rope_table_init(&d->rope, &rp, DCTX, &err) == EFT_OK);
    int tab = eft__ir_weight(g, "rope", EFT_DTYPE_F32, 2, DCTX, 2 * d->rope.half, d->rope.cos_sin, NULL);
    int x = act(g, "x", EFT__IR_ACT, C), h = act(g, "h", EFT__IR_OUTPUT, C);
    int q = act(g, "q", EFT__IR_OUTPUT, DQD), k = act(g, "k", EFT__IR_ACT, DKD), v = act(g, "v", EFT__IR_ACT, DKD);
    int qn = act(g, "qn", EFT__IR_OUTPUT, DQD), qr = act(g, "qr", EFT__IR_OUTPUT, DQD), kr = act(g, "kr", EFT__IR_ACT, DKD);
    int at = act(g, "attn", EFT__IR_OUTPUT, DQD), f = act(g, "f", EFT__IR_OUTPUT, DQD);
    int ks = eft__ir_tensor_add(g, "cache.k", EFT__IR_STATE, kv, 2, DNKV, DHS, NULL);
    int vs = eft__ir_tensor_add(g, "cache.v", EFT__IR_STATE, kv, 2, DNKV, DHS, NULL);
    int fr = eft__ir_tensor_add(g, "f_rows", EFT__IR_OUTPUT, EFT_DTYPE_F32, 2, EFT__IR_DIM_R, DQD, NULL);
    int lg = eft__ir_tensor_add(g, "logits", EFT__IR_OUTPUT, EFT_DTYPE_F32, 2, EFT__IR_DIM_R, DV, NULL);
    g->t[lg].bound = true;
    int in6[6] = {d->ids, d->pos, emb, -1, -1, -1}, o;
    o = eft__ir_op_add(g, EFT__OP_EMBED, in6, 6, x, NULL);
    g->ops[o].scale = 2.0f;
    o = op(g, EFT__OP_RMSNORM, h, x, nw, -1, -1);
    g->ops[o].eps = 1e-6f;
    g->ops[o].norm_add = 1.0f;
    op(g, EFT__OP_MATMUL, q, h, wq, -1, -1);
    op(g, EFT__OP_MATMUL, k, h, wk, -1, -1);
    op(g, EFT__OP_MATMUL, v, h, wv, -1, -1);
    o = op(g, EFT__OP_RMSNORM, qn, q, hn, -1, -1);
    g->ops[o].eps = 1e-6f;
    o = op(g, EFT__OP_ROPE, qr, qn, d->pos, tab, -1);
    g->ops[o].heads = DNH;
    o = op(g, EFT__OP_ROPE, kr, k, d->pos, tab, -1);
    g->ops[o].heads = DNKV;
    int in[6] = {qr, kr, v, d->pos, ks, vs};
    o = eft__ir_op_add(g, EFT__OP_CACHE_ATTENTION, in, 6, at, NULL);
    eft__ir_op *ca = &g->ops[o];
    ca->heads = DNH;
    ca->kv_heads = DNKV;
    ca->scale = 0.25f;
    ca->softcap = 20.0f;
    o = op(g, EFT__OP_GLU, f, qr, at, -1, -1);
    g->ops[o].act = EFT__IR_ACT_SILU;
    op(g, EFT__OP_GATHER, fr, f, d->rows, -1, -1);
    o = op(g, EFT__OP_MATMUL, lg, fr, wo, -1, -1);
    g->ops[o].act = EFT__IR_ACT_SOFTCAP;
    g->ops[o].scale = 3.0f;
    if (quant) CHECK_MSG(eft__pass_precision(g, EFT_DTYPE_Q8_0, &err) == EFT_OK, "%s", err.msg);
    CHECK_MSG(eft__pass_kernels(g, &err) == EFT_OK, "%s", err.msg);
    CHECK_MSG(eft__ir_pack(g, &err) == EFT_OK, "%s", err.msg);
    CHECK_MSG(eft__pass_group_matmuls(g, &err) == EFT_OK, "%s", err.msg);
    CHECK_MSG(eft__ir_plan_state(g, DSLOTS, DCTX, &err) == EFT_OK, "%s", err.msg);
    CHECK_MSG(eft__ir_plan(g, 1, DMAXT, 2, &err) == EFT_OK, "%s", err.msg);
    d->arena = eft__malloc_aligned((size_t)g->arena_bytes);
    d->state = eft__malloc_aligned((size_t)g->state_bytes);
}

static void dfree(dgraph *d) {
    eft__ir_free(d->g);
    eft__rope_table_free(&d->rope);
    eft__free_aligned(d->arena);
    eft__free_aligned(d->state);
}

/* One call: n tokens (slot s[i], position p[i], id id[i]); logits of the rows lr[0 .. nl). */
static void dcall(dgraph *d, eft__threadpool *tp, int n, const int *id, const int *s, const int *p, int nl,
                  const int *lr, float *logits) {
    int32_t *ids = eft__ir_at(d->g, d->arena, d->ids), *pos = eft__ir_at(d->g, d->arena, d->pos);
    int32_t *rows = eft__ir_at(d->g, d->arena, d->rows), off[DMAXT + 1], slot[DMAXT];
    int B = 0;
    for (int i = 0; i < n; i++) {
        ids[i] = id[i];
        pos[i] = p[i];
        if (i == 0 || s[i] != s[i - 1] || p[i] != p[i - 1] + 1) {
            off[B] = i;
            slot[B++] = s[i];
        }
    }
    off[B] = n;
    for (int j = 0; j < nl; j++) rows[j] = lr[j];
    eft__ir_run r = {.B = B, .M = n, .off = off, .slot = slot, .R = nl, .state = d->state, .bound = logits};
    eft__ir_exec(d->g, eft__kernels_get(), tp, d->arena, &r, 0, d->g->n_ops);
}

#define DOUT(d, name) ((const float *)eft__ir_at((d)->g, (d)->arena, eft__ir_find((d)->g, name)))

static void test_decoder_ops(void) {
    eft__threadpool *tp = NULL;
    eft__error err = {0};
    CHECK(eft__threadpool_create(2, &tp, &err) == EFT_OK);
    /* f32, f16 and int8 caches; then an f32 cache with Q8_0 weights (grouped products). */
    const eft_dtype kvs[4] = {EFT_DTYPE_F32, EFT_DTYPE_F16, EFT_DTYPE_I8, EFT_DTYPE_F32};
    /* Slot 0: a prompt of 9 tokens; slot 2: one of 4 (slot 1 unused). */
    const int id0[9] = {3, 1, 4, 1, 5, 9, 2, 6, 5}, id2[4] = {2, 7, 1, 8};
    for (int kv = 0; kv < 4; kv++) {
        const bool quant = kv == 3;
        dgraph a, b, c;
        dbuild(&a, kvs[kv], quant);
        dbuild(&b, kvs[kv], quant);
        dbuild(&c, kvs[kv], quant);
        CHECK(a.g->ops[2].group == (quant ? 3 : 0) && a.g->t[eft__ir_find(a.g, "cache.k")].offset >= 0);
        /* a: both prompts in one call, logits for each one's last token. */
        int n = 0, id[13], s[13], p[13];
        for (int i = 0; i < 9; i++) id[n] = id0[i], s[n] = 0, p[n++] = i;
        for (int i = 0; i < 4; i++) id[n] = id2[i], s[n] = 2, p[n++] = i;
        float la[2 * DV], lb[2 * DV], lc[DV];
        CHECK(n == 13);
        dcall(&a, tp, 12, id, s, p, 0, NULL, NULL); /* 12 rows fit the plan: the last one follows */
        dcall(&a, tp, 1, id + 12, s + 12, p + 12, 1, (int[]){0}, la + DV);
        /* ... and slot 0's last token again at its position after the whole prompt: the state
         * holds position 8, so re-running it gives its logits. */
        dcall(&a, tp, 1, id + 8, s + 8, p + 8, 1, (int[]){0}, la);
        /* The per-row ops against plain loops, on that last call's row. */
        const float *h = DOUT(&a, "h"), *q = DOUT(&a, "q"), *qn = DOUT(&a, "qn"), *qr = DOUT(&a, "qr");
        const float *at = DOUT(&a, "attn"), *f = DOUT(&a, "f"), *fr = DOUT(&a, "f_rows");
        double ss = 0, e = 0;
        for (int i = 0; i < C; i++) ss += 4.0 * DEMB[id0[8] * C + i] * DEMB[id0[8] * C + i];
        for (int i = 0; i < C; i++)
            e = fmax(e, fabs(h[i] - 2.0 * DEMB[id0[8] * C + i] / sqrt(ss / C + 1e-6) * (1.0 + DNORM[i])));
        CHECK_MSG(e < 1e-5, "rmsnorm (+1) differs by %g", e);
        e = 0;
        for (int hh = 0; hh < DNH; hh++) {
            double sh = 0;
            for (int i = 0; i < DHS; i++) sh += (double)q[hh * DHS + i] * q[hh * DHS + i];
            for (int i = 0; i < DHS; i++)
                e = fmax(e, fabs(qn[hh * DHS + i] - q[hh * DHS + i] / sqrt(sh / DHS + 1e-6) * DHN[i]));
        }
        CHECK_MSG(e < 1e-5, "per-head rmsnorm differs by %g", e);
        e = 0;
        for (int hh = 0; hh < DNH; hh++) /* position 8, NEOX pairs (i, i + HS/2) */
            for (int i = 0; i < DHS / 2; i++) {
                double th = 8.0 * pow(10000.0, -2.0 * i / DHS), x0 = qn[hh * DHS + i], x1 = qn[hh * DHS + i + DHS / 2];
                e = fmax(e, fabs(qr[hh * DHS + i] - (x0 * cos(th) - x1 * sin(th))));
                e = fmax(e, fabs(qr[hh * DHS + i + DHS / 2] - (x1 * cos(th) + x0 * sin(th))));
            }
        CHECK_MSG(e < 1e-5, "rope differs by %g", e);
        e = 0;
        for (int i = 0; i < DQD; i++) e = fmax(e, fabs(f[i] - qr[i] / (1.0 + exp(-(double)qr[i])) * at[i]));
        CHECK_MSG(e < 1e-5, "glu differs by %g", e);
        CHECK(!memcmp(fr, f, sizeof(float) * DQD));
        e = 0;
        for (int vv = 0; vv < DV; vv++) {
            double z = 0;
            for (int i = 0; i < DQD; i++) z += (double)fr[i] * DWO[vv * DQD + i];
            e = fmax(e, fabs(la[vv] - 3.0 * tanh(z / 3.0)));
        }
        CHECK_MSG(quant || e < 1e-5, "softcapped logits differ by %g", e);
        /* b: token by token, the two slots interleaved in each call (decode batches). */
        for (int i = 0; i < 9; i++) {
            int bid[2] = {id0[i], i < 4 ? id2[i] : 0}, bs[2] = {0, 2}, bp[2] = {i, i};
            int nb = i < 4 ? 2 : 1;
            dcall(&b, tp, nb, bid, bs, bp, nb, (int[]){0, 1}, lb);
            if (i == 3) memcpy(lc, lb + DV, sizeof lc); /* slot 2's last token */
        }
        double tol = kvs[kv] == EFT_DTYPE_F32 ? 2e-5 : kvs[kv] == EFT_DTYPE_F16 ? 2e-4 : 2e-2;
        CHECK_MSG(maxdiff(la, lb, DV) < tol, "kv %s: slot 0 one call vs token by token: %g",
                  eft_dtype_name(kvs[kv]), maxdiff(la, lb, DV));
        CHECK_MSG(maxdiff(la + DV, lc, DV) < tol, "kv %s: slot 2 one call vs token by token: %g",
                  eft_dtype_name(kvs[kv]), maxdiff(la + DV, lc, DV));
        /* c: slot 2's prompt alone, in chunks of 3 and 1, then slot 0 in chunks of 5 and 4 in
         * slot 1 (another slot of a fresh state): the same logits. */
        dcall(&c, tp, 3, id2, (int[]){2, 2, 2}, (int[]){0, 1, 2}, 0, NULL, NULL);
        dcall(&c, tp, 1, id2 + 3, (int[]){2}, (int[]){3}, 1, (int[]){0}, lc);
        CHECK_MSG(maxdiff(la + DV, lc, DV) < tol, "kv %s: slot 2 alone in chunks: %g", eft_dtype_name(kvs[kv]),
                  maxdiff(la + DV, lc, DV));
        dcall(&c, tp, 5, id0, (int[]){1, 1, 1, 1, 1}, (int[]){0, 1, 2, 3, 4}, 0, NULL, NULL);
        dcall(&c, tp, 4, id0 + 5, (int[]){1, 1, 1, 1}, (int[]){5, 6, 7, 8}, 1, (int[]){3}, lc);
        CHECK_MSG(maxdiff(la, lc, DV) < tol, "kv %s: slot 0's prompt in slot 1, in chunks: %g",
                  eft_dtype_name(kvs[kv]), maxdiff(la, lc, DV));
        dfree(&a);
        dfree(&b);
        dfree(&c);
    }
    eft__threadpool_free(tp);
}

static void test_decoder_graph_json_and_validate(void) {
    eft__error err = {0};
    dgraph d;
    dbuild(&d, EFT_DTYPE_F16, false);
    eft__ir_graph *g = d.g;
    json_t *j = eft__ir_to_json(g);
    eft__ir_graph *h = NULL;
    CHECK_MSG(eft__ir_from_json(j, &h, &err) == EFT_OK, "%s", err.msg);
    if (h) {
        CHECK(h->n_ops == g->n_ops && h->n_t == g->n_t);
        for (int o = 0; o < g->n_ops && o < h->n_ops; o++) {
            const eft__ir_op *a = &g->ops[o], *b = &h->ops[o];
            CHECK_MSG(a->kind == b->kind && a->kernel == b->kernel && a->act == b->act && a->heads == b->heads &&
                      a->kv_heads == b->kv_heads && a->window == b->window && a->softcap == b->softcap &&
                      a->norm_add == b->norm_add && a->rope_layout == b->rope_layout && a->group == b->group &&
                      a->scale == b->scale && a->eps == b->eps, "op %d differs after the round trip", o);
        }
        for (int i = 0; i < g->n_t && i < h->n_t; i++) {
            CHECK(h->t[i].kind == g->t[i].kind && h->t[i].bound == g->t[i].bound && h->t[i].shape[0] == g->t[i].shape[0] &&
                  h->t[i].dtype == g->t[i].dtype);
            if (h->t[i].kind == EFT__IR_WEIGHT) {
                h->t[i].data = g->t[i].data;
                h->t[i].packed = NULL;
                if (g->t[i].packed) {
                    eft__sgemm_packed *pk = eft__calloc(1, sizeof *pk);
                    *pk = *(const eft__sgemm_packed *)g->t[i].packed;
                    pk->borrowed = true;
                    h->t[i].packed = pk;
                }
            }
        }
        CHECK_MSG(eft__ir_validate(h, &err) == EFT_OK, "%s", err.msg);
    }
    eft__ir_free(h);
    json_decref(j);
    /* Refusals, each on the valid graph changed in one place. */
    struct { const char *what, *msg; } cases[] = {
        {"state read by another op", "reads state"},
        {"two bound outputs", "bound"},
        {"a norm weight that does not divide the row", "does not divide"},
        {"kv heads that do not divide the heads", "kv_heads"},
        {"gathered rows that are not an input", "not an input"},
        {"the interleaved kernel without its copy", "interleaved"},
        {"a group of four", "group"},
        {"softcapping without a cap", "cap"},
        {"a group whose next op is not a product of its input", "members"},
        {"a bound output of one row per token", "bound"},
    };
    const int n_cases = (int)(sizeof cases / sizeof cases[0]);
    for (int c = 0; c < n_cases; c++) {
        dgraph e;
        dbuild(&e, EFT_DTYPE_F16, false);
        eft__ir_graph *x = e.g;
        int o_glu = -1, o_ca = -1, o_ga = -1, o_hn = -1, o_lg = -1;
        for (int o = 0; o < x->n_ops; o++) {
            if (x->ops[o].kind == EFT__OP_GLU) o_glu = o;
            if (x->ops[o].kind == EFT__OP_CACHE_ATTENTION) o_ca = o;
            if (x->ops[o].kind == EFT__OP_GATHER) o_ga = o;
            if (x->ops[o].kind == EFT__OP_RMSNORM && x->t[x->ops[o].in[1]].shape[0] == DHS) o_hn = o;
            if (x->ops[o].kind == EFT__OP_MATMUL && x->t[x->ops[o].out].bound) o_lg = o;
        }
        switch (c) {
        case 0: x->ops[o_glu].in[1] = x->ops[o_ca].in[4]; break;
        case 1: x->t[eft__ir_find(x, "f_rows")].bound = true; break;
        case 2: x->t[x->ops[o_hn].in[1]].shape[0] = 24, x->t[x->ops[o_hn].in[1]].nbytes = 96; break;
        case 3: x->ops[o_ca].kv_heads = 3; break;
        case 4: x->ops[o_ga].in[1] = x->ops[o_glu].in[0]; break;
        case 5: {
            /* A Q8_0 matrix under the interleaved kernel, with no interleaved copy. */
            int w = x->ops[o_lg].in[1];
            static uint8_t blocks[DV * (DQD / 32) * 34];
            x->t[w].dtype = EFT_DTYPE_Q8_0;
            x->t[w].data = blocks;
            x->t[w].nbytes = sizeof blocks;
            x->ops[o_lg].kernel = EFT__K_QX4;
            break;
        }
        case 6: x->ops[2].group = 4; break;
        case 7: x->ops[o_lg].scale = 0; break;
        case 8: x->ops[4].group = 2; break; /* v's product, followed by q's per-head norm */
        case 9: x->t[x->ops[o_lg].out].bound = false, x->t[eft__ir_find(x, "f")].bound = true; break;
        }
        CHECK_MSG(eft__ir_validate(x, &err) == EFT_ERR_FORMAT, "%s: accepted", cases[c].what);
        CHECK_CONTAINS(err.msg, cases[c].msg);
        dfree(&e);
    }
    /* State left unplanned is refused by the activation plan. */
    eft__ir_graph *u = eft__ir_new();
    eft__ir_tensor_add(u, "cache", EFT__IR_STATE, EFT_DTYPE_F32, 2, DNKV, DHS, NULL);
    CHECK(eft__ir_plan(u, 1, 4, 1, &err) == EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(err.msg, "eft__ir_plan_state");
    eft__ir_free(u);
    dfree(&d);
}

int main(void) {
    init_weights();
    init_decoder_weights();
    eft__ir_graph *g = build();
    run(g, Y0, H0);
    eft__ir_free(g);
    RUN(test_validate);
    RUN(test_fold);
    RUN(test_fuse);
    RUN(test_precision_and_kernels);
    RUN(test_plan_and_json);
    RUN(test_decoder_ops);
    RUN(test_decoder_graph_json_and_validate);
    return test_summary();
}
