/*
 * ir.c — building, compacting and validating graphs of the IR (ir.h). The validator is the one
 * gate every graph passes before it is planned or run, whether a builder made it, a pass rewrote
 * it or a program file described it, so the executor can trust indices, shapes and dtypes.
 */
#include <stdio.h>
#include <string.h>

#include "core/quant.h"
#include "kernels/cpu/kernels.h"

#include "graph/ir.h"

eft__ir_graph *eft__ir_new(void) { return eft__calloc(1, sizeof(eft__ir_graph)); }

void eft__ir_free(eft__ir_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n_t; i++) {
        eft__free(g->t[i].owned);
        if (g->t[i].packed) {
            eft__sgemm_packed_free(g->t[i].packed);
            eft__free(g->t[i].packed);
        }
    }
    eft__free(g->t);
    eft__free(g->ops);
    eft__free(g);
}

int eft__ir_tensor_add(eft__ir_graph *g, const char *name, eft__ir_tkind kind, eft_dtype dtype, int ndim,
                       int64_t d0, int64_t d1, eft__error *err) {
    if (strlen(name) >= EFT__IR_NAME_MAX) {
        eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "graph: tensor name '%.40s...' is too long", name);
        return -1;
    }
    if (g->n_t == g->cap_t) {
        int cap = g->cap_t ? 2 * g->cap_t : 64;
        eft__ir_tensor *t = eft__realloc(g->t, (size_t)cap * sizeof *t);
        if (!t) {
            eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
            return -1;
        }
        g->t = t;
        g->cap_t = cap;
    }
    eft__ir_tensor *t = &g->t[g->n_t];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->kind = kind;
    t->dtype = dtype;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = ndim == 2 ? d1 : 1;
    t->view_of = -1;
    t->ld = ndim == 2 ? d1 : 1;
    t->offset = -1;
    return g->n_t++;
}

int eft__ir_weight(eft__ir_graph *g, const char *name, eft_dtype dtype, int ndim, int64_t d0, int64_t d1,
                   const void *data, eft__error *err) {
    int i = eft__ir_tensor_add(g, name, EFT__IR_WEIGHT, dtype, ndim, d0, d1, err);
    if (i < 0) return -1;
    g->t[i].data = data;
    g->t[i].nbytes = eft__ir_tensor_bytes(&g->t[i], 0);
    return i;
}

int eft__ir_op_add(eft__ir_graph *g, eft__ir_opkind kind, const int *in, int n, int out, eft__error *err) {
    if (n > EFT__IR_MAX_IN + 2) {
        eft__fail(err, EFT_ERR_INTERNAL, "graph: %d inputs to one op", n);
        return -1;
    }
    if (g->n_ops == g->cap_ops) {
        int cap = g->cap_ops ? 2 * g->cap_ops : 64;
        eft__ir_op *o = eft__realloc(g->ops, (size_t)cap * sizeof *o);
        if (!o) {
            eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
            return -1;
        }
        g->ops = o;
        g->cap_ops = cap;
    }
    eft__ir_op *o = &g->ops[g->n_ops];
    memset(o, 0, sizeof *o);
    o->kind = kind;
    for (int i = 0; i < EFT__IR_MAX_IN + 2; i++) o->in[i] = i < n ? in[i] : -1;
    o->n_in = n;
    o->out = out;
    return g->n_ops++;
}

int eft__ir_find(const eft__ir_graph *g, const char *name) {
    for (int i = 0; i < g->n_t; i++)
        if (!strcmp(g->t[i].name, name)) return i;
    return -1;
}

int eft__ir_uses(const eft__ir_graph *g, int t) {
    int n = 0;
    for (int o = 0; o < g->n_ops; o++)
        for (int i = 0; i < g->ops[o].n_in; i++)
            if (g->ops[o].in[i] == t) n++;
    for (int i = 0; i < g->n_t; i++)
        if (g->t[i].view_of == t) n += eft__ir_uses(g, i);
    return n;
}

void eft__ir_compact(eft__ir_graph *g) {
    int n = 0;
    for (int o = 0; o < g->n_ops; o++)
        if (g->ops[o].kind != EFT__OP_COUNT) g->ops[n++] = g->ops[o];
    g->n_ops = n;
    /* Tensors still referenced (by an op, or as the base of a referenced view) stay. */
    bool *keep = eft__calloc((size_t)g->n_t + 1, 1);
    int *map = eft__malloc_array((size_t)g->n_t + 1, sizeof(int));
    if (!keep || !map) { /* compaction is an economy, not a need: skip it */
        eft__free(keep);
        eft__free(map);
        return;
    }
    for (int o = 0; o < g->n_ops; o++) {
        for (int i = 0; i < g->ops[o].n_in; i++)
            if (g->ops[o].in[i] >= 0) keep[g->ops[o].in[i]] = true;
        keep[g->ops[o].out] = true;
    }
    for (int i = 0; i < g->n_t; i++)
        if (g->t[i].kind == EFT__IR_OUTPUT || g->t[i].kind == EFT__IR_INPUT) keep[i] = true;
    for (int i = 0; i < g->n_t; i++)
        if (keep[i] && g->t[i].view_of >= 0) keep[g->t[i].view_of] = true;
    int k = 0;
    for (int i = 0; i < g->n_t; i++) {
        map[i] = keep[i] ? k : -1;
        if (keep[i]) g->t[k++] = g->t[i];
        else {
            eft__free(g->t[i].owned);
            if (g->t[i].packed) {
                eft__sgemm_packed_free(g->t[i].packed);
                eft__free(g->t[i].packed);
            }
        }
    }
    g->n_t = k;
    for (int i = 0; i < k; i++)
        if (g->t[i].view_of >= 0) g->t[i].view_of = map[g->t[i].view_of];
    for (int o = 0; o < g->n_ops; o++) {
        for (int i = 0; i < g->ops[o].n_in; i++)
            if (g->ops[o].in[i] >= 0) g->ops[o].in[i] = map[g->ops[o].in[i]];
        g->ops[o].out = map[g->ops[o].out];
    }
    eft__free(keep);
    eft__free(map);
}

uint64_t eft__ir_tensor_bytes(const eft__ir_tensor *t, int64_t rows) {
    int64_t d0 = t->shape[0] < 0 ? rows : t->shape[0];
    uint64_t n, bytes;
    if (d0 < 0 || eft__mul_overflow_u64((uint64_t)d0, (uint64_t)(t->ndim == 2 ? t->shape[1] : 1), &n) ||
        !eft__dtype_nbytes(t->dtype, n, &bytes))
        return UINT64_MAX;
    return bytes;
}

const char *eft__ir_op_name(eft__ir_opkind k) {
    static const char *const names[EFT__OP_COUNT] = {
        [EFT__OP_EMBED] = "embed",         [EFT__OP_MATMUL] = "matmul", [EFT__OP_BIAS] = "bias",
        [EFT__OP_ACT] = "act",             [EFT__OP_ADD] = "add",       [EFT__OP_LAYERNORM] = "layernorm",
        [EFT__OP_ADD_LN] = "add_layernorm", [EFT__OP_ATTENTION] = "attention", [EFT__OP_FIRST_ROW] = "first_row",
        [EFT__OP_RMSNORM] = "rmsnorm",     [EFT__OP_ROPE] = "rope",     [EFT__OP_GLU] = "glu",
        [EFT__OP_CACHE_ATTENTION] = "cache_attention", [EFT__OP_GATHER] = "gather",
    };
    return (unsigned)k < EFT__OP_COUNT ? names[k] : "?";
}

const char *eft__ir_kernel_name(eft__ir_kernel k) {
    static const char *const names[EFT__K_COUNT] = {
        [EFT__K_NONE] = "none",           [EFT__K_ROWS] = "rows",           [EFT__K_SGEMM_F32] = "sgemm_f32",
        [EFT__K_SGEMM_F16] = "sgemm_f16", [EFT__K_SGEMM_BF16] = "sgemm_bf16", [EFT__K_QGEMM_Q8_0] = "qgemm_q8_0",
        [EFT__K_QGEMM_Q4_0] = "qgemm_q4_0", [EFT__K_GQGEMM] = "gqgemm", [EFT__K_ATTN_FLASH] = "attention_flash",
        [EFT__K_ATTN_RELBIAS] = "attention_relbias", [EFT__K_QX4] = "qx4", [EFT__K_QX4_I8] = "qx4_int8",
        [EFT__K_ATTN_CACHE] = "attention_cache",
    };
    return (unsigned)k < EFT__K_COUNT ? names[k] : "?";
}

const char *eft__ir_act_name(eft__ir_act a) {
    static const char *const names[EFT__IR_ACT_COUNT] = {
        [EFT__IR_ACT_NONE] = "none", [EFT__IR_ACT_GELU] = "gelu", [EFT__IR_ACT_GELU_TANH] = "gelu_tanh",
        [EFT__IR_ACT_SILU] = "silu", [EFT__IR_ACT_RELU] = "relu", [EFT__IR_ACT_QUICK_GELU] = "quick_gelu",
        [EFT__IR_ACT_TANH] = "tanh", [EFT__IR_ACT_SOFTCAP] = "softcap",
    };
    return (unsigned)a < EFT__IR_ACT_COUNT ? names[a] : "?";
}

/* ---------------------------------------------------------------------------------------------
 * Validation
 * ------------------------------------------------------------------------------------------- */

typedef struct vctx {
    const eft__ir_graph *g;
    int op;
    eft__error *err;
} vctx;

static bool bad(vctx *v, const char *what, int t) {
    const eft__ir_op *o = &v->g->ops[v->op];
    eft__fail(v->err, EFT_ERR_FORMAT, "graph: op %d (%s): %s%s%s%s", v->op, eft__ir_op_name(o->kind), what,
              t >= 0 ? " ('" : "", t >= 0 ? v->g->t[t].name : "", t >= 0 ? "')" : "");
    return false;
}

/* Tensor t (an input of the op) has ndim, shape [d0, d1] (0 = any) and, for activations, f32. */
static bool is(vctx *v, int t, int ndim, int64_t d0, int64_t d1) {
    if (t < 0) return bad(v, "a required input is absent", -1);
    const eft__ir_tensor *x = &v->g->t[t];
    if (x->ndim != ndim || (d0 && x->shape[0] != d0) || (ndim == 2 && d1 && x->shape[1] != d1))
        return bad(v, "an input has the wrong shape", t);
    return true;
}

static bool is_f32(vctx *v, int t) { return v->g->t[t].dtype == EFT_DTYPE_F32 || bad(v, "an input is not F32", t); }
static bool is_i32(vctx *v, int t) { return v->g->t[t].dtype == EFT_DTYPE_I32 || bad(v, "an input is not I32", t); }

/* An activation function an op can apply: a known one; softcapping needs its cap. */
static bool act_ok(vctx *v, const eft__ir_op *o) {
    if ((unsigned)o->act >= EFT__IR_ACT_COUNT) return bad(v, "unknown activation", -1);
    if (o->act == EFT__IR_ACT_SOFTCAP && !(o->scale > 0)) return bad(v, "softcapping needs a positive cap (scale)", -1);
    return true;
}

static bool is_state(vctx *v, int t, int64_t d0, int64_t d1) {
    const eft__ir_tensor *x = &v->g->t[t];
    if (x->kind != EFT__IR_STATE) return bad(v, "the cache is not retained state", t);
    if (x->dtype != EFT_DTYPE_F32 && x->dtype != EFT_DTYPE_F16 && x->dtype != EFT_DTYPE_I8)
        return bad(v, "the cache is not F32, F16 or I8", t);
    return is(v, t, 2, d0, d1);
}

static bool check_op(vctx *v) {
    const eft__ir_graph *g = v->g;
    const eft__ir_op *o = &g->ops[v->op];
    const int *in = o->in;
    const eft__ir_tensor *out = &g->t[o->out];
    int64_t R = out->shape[0];
    switch (o->kind) {
    case EFT__OP_EMBED: {
        if (!is(v, in[2], 2, 0, 0)) return false;
        int64_t C = g->t[in[2]].shape[1];
        /* A quantised table is dequantised row by row (a GGUF decoder's token_embd). */
        float probe = 0;
        const uint8_t none = 0;
        eft_dtype wd = g->t[in[2]].dtype;
        bool table_ok = wd != EFT_DTYPE_I32 && wd != EFT_DTYPE_I8 && eft__dequantize_row(wd, &none, &probe, 0);
        if (!table_ok) return bad(v, "the word table's type cannot be read row by row", in[2]);
        if (!(o->scale >= 0) || o->scale > 1e6f) return bad(v, "the embedding scale is out of range", -1);
        return is(v, in[0], 1, EFT__IR_DIM_M, 0) && is_i32(v, in[0]) && is(v, in[1], 1, EFT__IR_DIM_M, 0) &&
               is_i32(v, in[1]) && (in[3] < 0 || (is(v, in[3], 2, 0, C) && is_f32(v, in[3]))) &&
               (in[4] < 0 || (is(v, in[4], 1, EFT__IR_DIM_M, 0) && is_i32(v, in[4]))) &&
               ((in[4] < 0) == (in[5] < 0) || bad(v, "types and their table go together", -1)) &&
               (in[5] < 0 || (is(v, in[5], 2, 0, C) && is_f32(v, in[5]))) &&
               ((R == EFT__IR_DIM_M && out->shape[1] == C) || bad(v, "the output is not [M, C]", o->out));
    }
    case EFT__OP_MATMUL: {
        if (!is(v, in[1], 2, 0, 0)) return false;
        const eft__ir_tensor *w = &g->t[in[1]];
        int64_t N = w->shape[0], K = w->shape[1];
        eft_dtype d = w->dtype;
        if (w->kind != EFT__IR_WEIGHT) return bad(v, "the matrix is not a weight", in[1]);
        eft__gq_layout gl;
        bool gq = eft__gq_layout_of(d, &gl);
        if (d != EFT_DTYPE_F32 && d != EFT_DTYPE_F16 && d != EFT_DTYPE_BF16 && !gq)
            return bad(v, "the matrix is not F32, F16, BF16 or group-quantised (Q8_0, Q4_0, Q4_1, I4_G*, U4_G*, I8_G*)",
                       in[1]);
        if (gq && K % gl.group)
            return bad(v, "a group-quantised matrix needs K a multiple of its group", in[1]);
        if ((o->kernel == EFT__K_QX4 || o->kernel == EFT__K_QX4_I8) &&
            (!w->x4 || (d != EFT_DTYPE_Q8_0 && d != EFT_DTYPE_Q4_0 && d != EFT_DTYPE_Q4_1)))
            return bad(v, "the interleaved kernel needs a Q8_0, Q4_0 or Q4_1 matrix with its interleaved copy", in[1]);
        if (o->group > 3 || o->group < 0 || (o->group > 1 && v->op + o->group > g->n_ops))
            return bad(v, "a MATMUL group of more than three, or past the last op", -1);
        /* The executor runs a group's members as products of this op's input. */
        for (int j = 1; j < o->group; j++) {
            const eft__ir_op *m = &g->ops[v->op + j];
            if (m->kind != EFT__OP_MATMUL || m->in[0] != in[0] || m->group > 1)
                return bad(v, "a MATMUL group's members must be the next MATMULs over the same input", -1);
        }
        if (!act_ok(v, o)) return false;
        return is(v, in[0], 2, R, K) && is_f32(v, in[0]) && (in[2] < 0 || (is(v, in[2], 1, N, 0) && is_f32(v, in[2]))) &&
               ((out->ndim == 2 && out->shape[1] == N) || bad(v, "the output is not [R, N]", o->out));
    }
    case EFT__OP_BIAS:
        return is(v, in[0], 2, R, out->shape[1]) && is_f32(v, in[0]) && is(v, in[1], 1, out->shape[1], 0) && is_f32(v, in[1]);
    case EFT__OP_ACT:
        if (!act_ok(v, o)) return false;
        return is(v, in[0], 2, R, out->shape[1]) && is_f32(v, in[0]);
    case EFT__OP_ADD:
        return is(v, in[0], 2, R, out->shape[1]) && is_f32(v, in[0]) && is(v, in[1], 2, R, out->shape[1]) && is_f32(v, in[1]);
    case EFT__OP_LAYERNORM:
        return is(v, in[0], 2, R, out->shape[1]) && is_f32(v, in[0]) && is(v, in[1], 1, out->shape[1], 0) &&
               is_f32(v, in[1]) && is(v, in[2], 1, out->shape[1], 0) && is_f32(v, in[2]);
    case EFT__OP_ADD_LN:
        return is(v, in[0], 2, R, out->shape[1]) && is_f32(v, in[0]) && is(v, in[1], 2, R, out->shape[1]) &&
               is_f32(v, in[1]) && is(v, in[2], 1, out->shape[1], 0) && is_f32(v, in[2]) &&
               is(v, in[3], 1, out->shape[1], 0) && is_f32(v, in[3]);
    case EFT__OP_ATTENTION: {
        int64_t C = out->shape[1];
        if (R != EFT__IR_DIM_M) return bad(v, "attention rows are not M", o->out);
        if (o->heads < 1 || C % o->heads) return bad(v, "heads do not divide the channels", o->out);
        /* The bucket function divides by log(max_distance / (buckets / 4)): even buckets >= 4 and a
         * distance past the exact range keep it finite. */
        if (in[3] >= 0 && (!is(v, in[3], 2, 0, o->heads) || !is_f32(v, in[3]) || g->t[in[3]].shape[0] != o->rel_buckets ||
                           o->rel_buckets < 4 || o->rel_buckets % 2 || o->rel_max_distance <= o->rel_buckets / 4))
            return bad(v, "the relative-position table does not match the buckets", in[3]);
        return is(v, in[0], 2, R, C) && is_f32(v, in[0]) && is(v, in[1], 2, R, C) && is_f32(v, in[1]) &&
               is(v, in[2], 2, R, C) && is_f32(v, in[2]);
    }
    case EFT__OP_FIRST_ROW:
        return is(v, in[0], 2, EFT__IR_DIM_M, out->shape[1]) && is_f32(v, in[0]) &&
               (R == EFT__IR_DIM_B || bad(v, "the output is not [B, C]", o->out));
    case EFT__OP_RMSNORM: {
        int64_t N = out->shape[1];
        if (!is(v, in[1], 1, 0, 0) || !is_f32(v, in[1])) return false;
        int64_t C = g->t[in[1]].shape[0];
        if (N % C) return bad(v, "the weight's length does not divide the row", in[1]);
        if (!(o->eps > 0) || !(o->norm_add >= -1e6f && o->norm_add <= 1e6f)) return bad(v, "eps or norm_add is out of range", -1);
        return is(v, in[0], 2, R, N) && is_f32(v, in[0]);
    }
    case EFT__OP_ROPE: {
        int64_t N = out->shape[1];
        if (R != EFT__IR_DIM_M) return bad(v, "rope rows are not M", o->out);
        if (o->heads < 1 || N % o->heads || (N / o->heads) % 2) return bad(v, "heads do not divide the row into even heads", o->out);
        if (o->rope_layout != EFT__ROPE_NEOX && o->rope_layout != EFT__ROPE_GPTJ) return bad(v, "unknown rope layout", -1);
        if (!is(v, in[2], 2, 0, 0) || !is_f32(v, in[2])) return false;
        int64_t rot = g->t[in[2]].shape[1];
        if (rot % 2 || rot > N / o->heads) return bad(v, "the table rotates more dimensions than a head has", in[2]);
        return is(v, in[0], 2, R, N) && is_f32(v, in[0]) && is(v, in[1], 1, EFT__IR_DIM_M, 0) && is_i32(v, in[1]);
    }
    case EFT__OP_GLU:
        if (!act_ok(v, o) || o->act == EFT__IR_ACT_NONE || o->act == EFT__IR_ACT_SOFTCAP)
            return bad(v, "a gated unit needs an activation", -1);
        return is(v, in[0], 2, R, out->shape[1]) && is_f32(v, in[0]) && is(v, in[1], 2, R, out->shape[1]) && is_f32(v, in[1]);
    case EFT__OP_CACHE_ATTENTION: {
        int64_t QD = out->shape[1];
        if (R != EFT__IR_DIM_M) return bad(v, "attention rows are not M", o->out);
        if (o->heads < 1 || o->kv_heads < 1 || o->heads % o->kv_heads || QD % o->heads)
            return bad(v, "kv_heads do not divide heads, or heads the channels", o->out);
        int64_t HS = QD / o->heads, KD = HS * o->kv_heads;
        if (o->window < 0 || !(o->softcap >= 0) || !(o->scale > 0) || o->softcap > 1e6f || o->scale > 1e6f)
            return bad(v, "window, softcap or scale is out of range", -1);
        if (!is_state(v, in[4], o->kv_heads, HS) || !is_state(v, in[5], o->kv_heads, HS)) return false;
        if (g->t[in[4]].dtype != g->t[in[5]].dtype || in[4] == in[5]) return bad(v, "the K and V caches differ in type", in[5]);
        return is(v, in[0], 2, R, QD) && is_f32(v, in[0]) && is(v, in[1], 2, R, KD) && is_f32(v, in[1]) &&
               is(v, in[2], 2, R, KD) && is_f32(v, in[2]) && is(v, in[3], 1, EFT__IR_DIM_M, 0) && is_i32(v, in[3]);
    }
    case EFT__OP_GATHER:
        if (g->t[in[1]].kind != EFT__IR_INPUT) return bad(v, "the rows are not an input", in[1]);
        return is(v, in[0], 2, EFT__IR_DIM_M, out->shape[1]) && is_f32(v, in[0]) && is(v, in[1], 1, EFT__IR_DIM_R, 0) &&
               is_i32(v, in[1]) && (R == EFT__IR_DIM_R || bad(v, "the output is not [R, C]", o->out));
    default: return bad(v, "unknown op", -1);
    }
}

/* Input slots that hold weights, per op kind (bit i = input i). */
static const unsigned k_weight_slots[EFT__OP_COUNT] = {
    [EFT__OP_EMBED] = 0x2cu,    /* wte, wpe, wtt */
    [EFT__OP_MATMUL] = 0x6u,    /* w, bias */
    [EFT__OP_BIAS] = 0x2u,      /* bias */
    [EFT__OP_LAYERNORM] = 0x6u, /* w, b */
    [EFT__OP_ADD_LN] = 0xcu,    /* w, b */
    [EFT__OP_ATTENTION] = 0x8u, /* relative-position table */
    [EFT__OP_RMSNORM] = 0x2u,   /* w */
    [EFT__OP_ROPE] = 0x4u,      /* table */
};

eft_status eft__ir_validate(const eft__ir_graph *g, eft__error *err) {
    int n_bound = 0;
    for (int i = 0; i < g->n_t; i++) {
        const eft__ir_tensor *t = &g->t[i];
        bool act = t->kind == EFT__IR_ACT || t->kind == EFT__IR_OUTPUT || t->kind == EFT__IR_INPUT;
        bool shape_ok = (t->ndim == 1 || t->ndim == 2) && t->shape[1] >= 1 && t->shape[1] <= ((int64_t)1 << 32) &&
                        (t->shape[0] >= 1 ? t->shape[0] <= ((int64_t)1 << 32)
                                          : act && (t->shape[0] == EFT__IR_DIM_M || t->shape[0] == EFT__IR_DIM_B ||
                                                    t->shape[0] == EFT__IR_DIM_R));
        if ((unsigned)t->kind > EFT__IR_STATE || !shape_ok || (unsigned)t->dtype >= EFT_DTYPE_COUNT)
            return eft__fail(err, EFT_ERR_FORMAT, "graph: tensor %d ('%s') has a bad kind, shape or dtype", i, t->name);
        if (t->bound && (t->kind != EFT__IR_OUTPUT || t->view_of >= 0 || t->shape[0] != EFT__IR_DIM_R || n_bound++))
            return eft__fail(err, EFT_ERR_FORMAT, "graph: tensor '%s' is bound but not the graph's one bound output", t->name);
        if (t->view_of >= 0) {
            const eft__ir_tensor *b = t->view_of < g->n_t ? &g->t[t->view_of] : NULL;
            if (!b || t->view_of == i || b->view_of >= 0 || t->kind != EFT__IR_ACT || b->kind == EFT__IR_WEIGHT ||
                b->ndim != 2 || t->ndim != 2 || b->shape[0] != t->shape[0] || t->ld != b->shape[1] || t->col0 < 0 ||
                t->col0 + t->shape[1] > b->shape[1] || t->dtype != EFT_DTYPE_F32 || b->dtype != EFT_DTYPE_F32)
                return eft__fail(err, EFT_ERR_FORMAT, "graph: tensor '%s' is not a column view inside its base", t->name);
        } else if (t->view_of != -1 || t->ld != t->shape[1]) {
            return eft__fail(err, EFT_ERR_FORMAT, "graph: tensor '%s' has a bad view or stride", t->name);
        }
        if (t->kind == EFT__IR_WEIGHT && (!t->data && !t->packed))
            return eft__fail(err, EFT_ERR_FORMAT, "graph: weight '%s' has no data", t->name);
        if (t->kind == EFT__IR_WEIGHT && t->data && t->nbytes != eft__ir_tensor_bytes(t, 0))
            return eft__fail(err, EFT_ERR_FORMAT, "graph: weight '%s' has %llu bytes for its shape", t->name,
                             (unsigned long long)t->nbytes);
    }
    /* Written-before-read, written once: walk the ops in order. */
    uint8_t *written = eft__calloc((size_t)g->n_t + 1, 1);
    if (!written) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    eft_status s = EFT_OK;
    for (int o = 0; o < g->n_ops && s == EFT_OK; o++) {
        const eft__ir_op *op = &g->ops[o];
        vctx v = {.g = g, .op = o, .err = err};
        if ((unsigned)op->kind >= EFT__OP_COUNT || op->n_in < 1 || op->n_in > EFT__IR_MAX_IN + 2 || op->out < 0 ||
            op->out >= g->n_t) {
            s = eft__fail(err, EFT_ERR_FORMAT, "graph: op %d has a bad kind, input count or output", o);
            break;
        }
        for (int i = 0; i < EFT__IR_MAX_IN + 2 && s == EFT_OK; i++) {
            int t = op->in[i];
            if (t == -1) continue;
            if (i >= op->n_in || t < -1 || t >= g->n_t) {
                s = eft__fail(err, EFT_ERR_FORMAT, "graph: op %d (%s): input %d is out of range", o,
                              eft__ir_op_name(op->kind), i);
                break;
            }
            int base = g->t[t].view_of >= 0 ? g->t[t].view_of : t;
            bool ready = g->t[base].kind == EFT__IR_WEIGHT || g->t[base].kind == EFT__IR_INPUT ||
                         g->t[base].kind == EFT__IR_STATE || written[base];
            /* State is the cache attention's own: read and written there alone. */
            if (g->t[base].kind == EFT__IR_STATE && (op->kind != EFT__OP_CACHE_ATTENTION || (i != 4 && i != 5)))
                s = eft__fail(err, EFT_ERR_FORMAT, "graph: op %d (%s) reads state '%s'", o, eft__ir_op_name(op->kind),
                              g->t[t].name);
            else if (!ready)
                s = eft__fail(err, EFT_ERR_FORMAT, "graph: op %d (%s) reads '%s' before anything writes it", o,
                              eft__ir_op_name(op->kind), g->t[t].name);
        }
        if (s != EFT_OK) break;
        const eft__ir_tensor *out = &g->t[op->out];
        if ((out->kind != EFT__IR_ACT && out->kind != EFT__IR_OUTPUT) || out->view_of >= 0 || written[op->out] ||
            out->dtype != EFT_DTYPE_F32 || out->ndim != 2) {
            s = eft__fail(err, EFT_ERR_FORMAT, "graph: op %d (%s) writes '%s', which is not a fresh f32 activation", o,
                          eft__ir_op_name(op->kind), out->name);
            break;
        }
        /* Weights where the op reads constants, activations everywhere else: the executor finds
         * the two in different places (tensor data, the arena). A weight that is only panels is
         * read by SGEMM kernels alone. */
        for (int i = 0; i < op->n_in && s == EFT_OK; i++) {
            int t = op->in[i];
            if (t < 0 || (unsigned)op->kind >= EFT__OP_COUNT) continue;
            bool want_w = (k_weight_slots[op->kind] >> i) & 1u, is_w = g->t[t].kind == EFT__IR_WEIGHT;
            bool sgemm = op->kind == EFT__OP_MATMUL && i == 1 &&
                         (op->kernel == EFT__K_SGEMM_F32 || op->kernel == EFT__K_SGEMM_F16 || op->kernel == EFT__K_SGEMM_BF16);
            if (is_w) written[t] |= sgemm ? 2 : 4; /* packing drops the bytes: no other reader may need them */
            if (want_w != is_w || (is_w && !g->t[t].data && !sgemm) || written[t] == 6)
                s = eft__fail(err, EFT_ERR_FORMAT, "graph: op %d (%s): input %d ('%s') should be %s", o,
                              eft__ir_op_name(op->kind), i, g->t[t].name,
                              want_w ? "a weight with data, read by SGEMM alone or not at all" : "an input or activation");
        }
        if (s != EFT_OK) break;
        if (!check_op(&v)) s = err ? err->status : EFT_ERR_FORMAT;
        written[op->out] = 1;
    }
    eft__free(written);
    return s;
}
