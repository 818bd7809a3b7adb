/*
 * encoder_bert.c — the BERT family's builder: emits the graph of BERT, RoBERTa, XLM-RoBERTa and
 * MPNet encoders from a checkpoint, one plain op per step of the reference model (separate Q, K
 * and V products, bias adds, the activation, residual adds, LayerNorms), every weight checked by
 * name, shape and type. The passes fuse and fold it; nothing here knows about kernels or plans.
 */
#include <stdio.h>
#include <string.h>

#include "models/encoder_graph.h"

static void shape_str(char *buf, size_t n, const int64_t *shape, int ndim) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

const eft__tensor_view *eft__encoder_want(const eft_model *m, const char *prefix, const char *name, int64_t d0,
                                          int64_t d1, eft__error *err) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    const eft__tensor_view *t = eft__model_find_tensor(m, full);
    int64_t shape[2] = {d0, d1};
    int ndim = d1 < 0 ? 1 : 2;
    char ws[64], gs[160];
    shape_str(ws, sizeof ws, shape, ndim);
    if (!t) {
        eft__fail(err, EFT_ERR_NOT_FOUND, "%s: tensor '%s' %s is missing", m->path, full, ws);
        return NULL;
    }
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        shape_str(gs, sizeof gs, t->shape, t->ndim);
        eft__fail(err, EFT_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", m->path, full, gs, ws);
        return NULL;
    }
    if (t->dtype != EFT_DTYPE_F32 && t->dtype != EFT_DTYPE_F16 && t->dtype != EFT_DTYPE_BF16) {
        eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s; the encoder reads F32, F16 or BF16", m->path,
                  full, eft_dtype_name(t->dtype));
        return NULL;
    }
    return t;
}

typedef struct bld {
    const eft_model *m;
    const char *prefix;
    eft__ir_graph *g;
    eft__error *err;
} bld;

/* A weight tensor over the checkpoint's bytes (matrices: the passes convert and pack them). */
static int matrix(bld *b, const char *name, int64_t n, int64_t k) {
    const eft__tensor_view *t = eft__encoder_want(b->m, b->prefix, name, n, k, b->err);
    if (!t) return -1;
    char full[EFT__IR_NAME_MAX + 64];
    snprintf(full, sizeof full, "%s%s", b->prefix, name);
    return eft__ir_weight(b->g, full, t->dtype, 2, n, k, t->data, b->err);
}

/* A vector [d0] or table [d0, d1] converted to f32, owned by the graph: the executor reads them
 * as aligned f32 whatever the checkpoint stores. */
static int vec(bld *b, const char *name, int64_t d0, int64_t d1) {
    const eft__tensor_view *t = eft__encoder_want(b->m, b->prefix, name, d0, d1, b->err);
    if (!t) return -1;
    float *f = eft__malloc_array((size_t)t->n_elems, sizeof(float));
    if (!f) {
        eft__fail(b->err, EFT_ERR_OUT_OF_MEMORY, "out of memory converting '%s%s'", b->prefix, name);
        return -1;
    }
    eft__ir_widen(f, t->data, t->dtype, t->n_elems);
    char full[EFT__IR_NAME_MAX + 64];
    snprintf(full, sizeof full, "%s%s", b->prefix, name);
    int i = eft__ir_weight(b->g, full, EFT_DTYPE_F32, d1 < 0 ? 1 : 2, d0, d1 < 0 ? 0 : d1, f, b->err);
    if (i < 0) eft__free(f);
    else b->g->t[i].owned = f;
    return i;
}

static int act(bld *b, const char *name, int64_t rows, int64_t cols) {
    return eft__ir_tensor_add(b->g, name, EFT__IR_ACT, EFT_DTYPE_F32, 2, rows, cols, b->err);
}

static int op(bld *b, eft__ir_opkind k, int out, int n, int i0, int i1, int i2, int i3) {
    int in[4] = {i0, i1, i2, i3};
    return eft__ir_op_add(b->g, k, in, n, out, b->err) < 0 ? -1 : out;
}

/* out = x W^T + bias, as the reference computes it: a product, then the bias. */
static int linear(bld *b, const char *out_name, int x, const char *w, int64_t n, int64_t k, int64_t rows) {
    char wn[160], bn[160], mm[EFT__IR_NAME_MAX];
    snprintf(wn, sizeof wn, "%s.weight", w);
    snprintf(bn, sizeof bn, "%s.bias", w);
    snprintf(mm, sizeof mm, "%s.matmul", out_name);
    int W = matrix(b, wn, n, k), B = W >= 0 ? vec(b, bn, n, -1) : -1;
    if (B < 0) return -1;
    int p = act(b, mm, rows, n), o = p >= 0 ? act(b, out_name, rows, n) : -1;
    if (o < 0 || op(b, EFT__OP_MATMUL, p, 2, x, W, -1, -1) < 0) return -1;
    return op(b, EFT__OP_BIAS, o, 2, p, B, -1, -1);
}

/* LayerNorm(a + r) with the weights under name, as an ADD then a LAYERNORM. */
static int add_norm(bld *b, const char *out_name, int a, int r, const char *name, int64_t C, float eps,
                    eft__ir_tkind kind) {
    char wn[160], bn[160], sn[EFT__IR_NAME_MAX];
    snprintf(wn, sizeof wn, "%s.weight", name);
    snprintf(bn, sizeof bn, "%s.bias", name);
    snprintf(sn, sizeof sn, "%s.sum", out_name);
    int w = vec(b, wn, C, -1), bb = w >= 0 ? vec(b, bn, C, -1) : -1;
    if (bb < 0) return -1;
    int s = act(b, sn, EFT__IR_DIM_M, C);
    int o = s >= 0 ? eft__ir_tensor_add(b->g, out_name, kind, EFT_DTYPE_F32, 2, EFT__IR_DIM_M, C, b->err) : -1;
    if (o < 0 || op(b, EFT__OP_ADD, s, 2, a, r, -1, -1) < 0) return -1;
    int k = op(b, EFT__OP_LAYERNORM, o, 3, s, w, bb, -1);
    if (k >= 0) b->g->ops[b->g->n_ops - 1].eps = eps;
    return k;
}

static const eft__ir_act k_act[EFT__ACT_COUNT] = {
    [EFT__ACT_GELU] = EFT__IR_ACT_GELU,       [EFT__ACT_GELU_TANH] = EFT__IR_ACT_GELU_TANH,
    [EFT__ACT_SILU] = EFT__IR_ACT_SILU,       [EFT__ACT_RELU] = EFT__IR_ACT_RELU,
    [EFT__ACT_QUICK_GELU] = EFT__IR_ACT_QUICK_GELU,
};

static int layer(bld *b, const eft__encoder_dims *d, int64_t l, int x, int rel) {
    const bool mp = d->arch == EFT__ARCH_MPNET;
    const int64_t C = d->C, M = EFT__IR_DIM_M;
    static const char *const bert[8] = {"attention.self.query", "attention.self.key", "attention.self.value",
                                        "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
                                        "output.dense", "output.LayerNorm"};
    static const char *const mpnet[8] = {"attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o",
                                         "attention.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"};
    char w[8][128], o[8][EFT__IR_NAME_MAX];
    static const char *const outs[8] = {"q", "k", "v", "attn_out", "attn_norm", "inter", "ffn_out", "out"};
    for (int i = 0; i < 8; i++) {
        snprintf(w[i], sizeof w[i], "encoder.layer.%lld.%s", (long long)l, mp ? mpnet[i] : bert[i]);
        snprintf(o[i], sizeof o[i], "layer.%lld.%s", (long long)l, outs[i]);
    }
    int q = linear(b, o[0], x, w[0], C, C, M), k = q >= 0 ? linear(b, o[1], x, w[1], C, C, M) : -1;
    int v = k >= 0 ? linear(b, o[2], x, w[2], C, C, M) : -1;
    if (v < 0) return -1;
    char cn[EFT__IR_NAME_MAX];
    snprintf(cn, sizeof cn, "layer.%lld.context", (long long)l);
    int ctx = act(b, cn, M, C);
    if (ctx < 0 || op(b, EFT__OP_ATTENTION, ctx, rel >= 0 ? 4 : 3, q, k, v, rel) < 0) return -1;
    eft__ir_op *at = &b->g->ops[b->g->n_ops - 1];
    at->heads = (int)d->NH;
    at->scale = d->scale;
    if (rel >= 0) {
        at->rel_buckets = (int)d->rel_buckets;
        at->rel_max_distance = 128; /* MPNet's relative_position_bucket default */
    }
    int ao = linear(b, o[3], ctx, w[3], C, C, M);
    int x1 = ao >= 0 ? add_norm(b, o[4], x, ao, w[4], C, d->eps, EFT__IR_ACT) : -1;
    int up = x1 >= 0 ? linear(b, o[5], x1, w[5], d->I, C, M) : -1;
    if (up < 0) return -1;
    char an[EFT__IR_NAME_MAX];
    snprintf(an, sizeof an, "%s.act", o[5]);
    int ua = act(b, an, M, d->I);
    if (ua < 0 || op(b, EFT__OP_ACT, ua, 1, up, -1, -1, -1) < 0) return -1;
    b->g->ops[b->g->n_ops - 1].act = k_act[d->act];
    int dn = linear(b, o[6], ua, w[6], C, d->I, M);
    bool last = l == d->L - 1;
    return dn >= 0 ? add_norm(b, last ? EFT__ENC_HIDDEN : o[7], x1, dn, w[7], C, d->eps,
                              last ? EFT__IR_OUTPUT : EFT__IR_ACT)
                   : -1;
}

eft_status eft__encoder_graph_build(const eft_model *m, const char *prefix, const eft__encoder_dims *d,
                                    eft__ir_graph *g, eft__error *err) {
    bld b = {.m = m, .prefix = prefix, .g = g, .err = err};
    const int64_t C = d->C, M = EFT__IR_DIM_M;
    if ((unsigned)d->act >= EFT__ACT_COUNT || k_act[d->act] == EFT__IR_ACT_NONE)
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: config.json: hidden_act is not one eft implements", m->path);
    int ids = eft__ir_tensor_add(g, EFT__ENC_IDS, EFT__IR_INPUT, EFT_DTYPE_I32, 1, M, 0, err);
    int pos = ids >= 0 ? eft__ir_tensor_add(g, EFT__ENC_POS, EFT__IR_INPUT, EFT_DTYPE_I32, 1, M, 0, err) : -1;
    int types = pos >= 0 && d->NT > 0 ? eft__ir_tensor_add(g, EFT__ENC_TYPES, EFT__IR_INPUT, EFT_DTYPE_I32, 1, M, 0, err) : -1;
    if (pos < 0 || (d->NT > 0 && types < 0)) return err->status;
    const eft__tensor_view *wte = eft__encoder_want(m, prefix, "embeddings.word_embeddings.weight", d->V, C, err);
    if (!wte) return err->status;
    char full[EFT__IR_NAME_MAX + 64];
    snprintf(full, sizeof full, "%sembeddings.word_embeddings.weight", prefix);
    int te = eft__ir_weight(g, full, wte->dtype, 2, d->V, C, wte->data, err);
    if (te < 0) return err->status;
    g->t[te].external = true; /* the largest table, gathered in place: a program does not copy it */
    int pe = vec(&b, "embeddings.position_embeddings.weight", d->P, C);
    int tt = pe >= 0 && d->NT > 0 ? vec(&b, "embeddings.token_type_embeddings.weight", d->NT, C) : -1;
    if (pe < 0 || (d->NT > 0 && tt < 0)) return err->status;
    int e0 = act(&b, "embeddings.sum", M, C);
    int in6[6] = {ids, pos, te, pe, types, tt};
    if (e0 < 0 || eft__ir_op_add(g, EFT__OP_EMBED, in6, 6, e0, err) < 0) return err->status;
    int lw = vec(&b, "embeddings.LayerNorm.weight", C, -1), lb = lw >= 0 ? vec(&b, "embeddings.LayerNorm.bias", C, -1) : -1;
    int x = lb >= 0 ? act(&b, "embeddings.out", M, C) : -1;
    if (x < 0 || op(&b, EFT__OP_LAYERNORM, x, 3, e0, lw, lb, -1) < 0) return err->status;
    g->ops[g->n_ops - 1].eps = d->eps;
    int rel = -1;
    if (d->arch == EFT__ARCH_MPNET && (rel = vec(&b, "encoder.relative_attention_bias.weight", d->rel_buckets, d->NH)) < 0)
        return err->status;
    for (int64_t l = 0; l < d->L; l++)
        if ((x = layer(&b, d, l, x, rel)) < 0) return err->status;
    if (d->num_labels > 0) {
        /* BertForSequenceClassification classifies the pooler's output; RoBERTa, XLM-R and MPNet
         * have their own two-layer head (dense + tanh, out_proj) on the first token instead.
         * The head's weights sit outside the base model's prefix. */
        int first_op = g->n_ops;
        bool bert_head = d->arch == EFT__ARCH_BERT;
        char dense[64];
        snprintf(dense, sizeof dense, "%spooler.dense", prefix);
        bld hb = {.m = m, .prefix = "", .g = g, .err = err};
        int f = act(&b, "head.first", EFT__IR_DIM_B, C);
        if (f < 0 || op(&b, EFT__OP_FIRST_ROW, f, 1, x, -1, -1, -1) < 0) return err->status;
        int h = linear(&hb, "head.dense", f, bert_head ? dense : "classifier.dense", C, C, EFT__IR_DIM_B);
        int ht = h >= 0 ? act(&b, "head.dense.tanh", EFT__IR_DIM_B, C) : -1;
        if (ht < 0 || op(&b, EFT__OP_ACT, ht, 1, h, -1, -1, -1) < 0) return err->status;
        g->ops[g->n_ops - 1].act = EFT__IR_ACT_TANH;
        int lg = linear(&hb, "head.out", ht, bert_head ? "classifier" : "classifier.out_proj", d->num_labels, C,
                        EFT__IR_DIM_B);
        if (lg < 0) return err->status;
        g->t[lg].kind = EFT__IR_OUTPUT;
        snprintf(g->t[lg].name, sizeof g->t[lg].name, "%s", EFT__ENC_LOGITS);
        for (int o = first_op; o < g->n_ops; o++) g->ops[o].head = true;
    }
    return eft__ir_validate(g, err);
}
