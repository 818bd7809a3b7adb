/*
 * ir_json.c — a graph as JSON, for a compiled program's header: tensors (name, kind, dtype,
 * shape, view), ops (kind, inputs, output, attributes, kernel), the passes applied and the plan.
 * Reading treats the text as untrusted: every field is type- and range-checked here, and the
 * caller runs eft__ir_validate once the weights are bound, before anything plans or runs it.
 */
#include <string.h>

#include "core/json.h"
#include "core/quant.h"

#include "graph/ir.h"

static const char *const k_kinds[] = {"weight", "input", "act", "output", "state"};
static const char *const k_passes[] = {"fold", "fuse_matmuls", "precision", "kernels", "group_matmuls"};
#define N_KINDS 5
#define N_PASSES 5

json_t *eft__ir_to_json(const eft__ir_graph *g) {
    json_t *j = json_object(), *ts = json_array(), *os = json_array(), *ps = json_array();
    int fail = !j || !ts || !os || !ps;
    for (int i = 0; !fail && i < g->n_t; i++) {
        const eft__ir_tensor *t = &g->t[i];
        json_t *shape = t->ndim == 2 ? json_pack("[I, I]", (json_int_t)t->shape[0], (json_int_t)t->shape[1])
                                     : json_pack("[I]", (json_int_t)t->shape[0]);
        json_t *o = json_pack("{s:s, s:s, s:s, s:o}", "name", t->name, "kind", k_kinds[t->kind], "dtype",
                              eft_dtype_name(t->dtype), "shape", shape);
        fail |= !o;
        if (o && t->view_of >= 0)
            fail |= json_object_set_new(o, "view", json_pack("[i, I]", t->view_of, (json_int_t)t->col0));
        if (o && t->external) fail |= json_object_set_new(o, "external", json_true());
        if (o && t->bound) fail |= json_object_set_new(o, "bound", json_true());
        fail |= json_array_append_new(ts, o);
    }
    for (int i = 0; !fail && i < g->n_ops; i++) {
        const eft__ir_op *op = &g->ops[i];
        json_t *in = json_array();
        for (int k = 0; in && k < op->n_in; k++) fail |= json_array_append_new(in, json_integer(op->in[k]));
        json_t *o = json_pack("{s:s, s:o, s:i, s:s}", "op", eft__ir_op_name(op->kind), "in", in, "out", op->out,
                              "kernel", eft__ir_kernel_name(op->kernel));
        fail |= !o;
        if (o && op->act) fail |= json_object_set_new(o, "act", json_string(eft__ir_act_name(op->act)));
        if (o && (op->kind == EFT__OP_LAYERNORM || op->kind == EFT__OP_ADD_LN))
            fail |= json_object_set_new(o, "eps", json_real(op->eps));
        if (o && op->kind == EFT__OP_ATTENTION) {
            fail |= json_object_set_new(o, "scale", json_real(op->scale));
            fail |= json_object_set_new(o, "heads", json_integer(op->heads));
            if (op->in[3] >= 0) {
                fail |= json_object_set_new(o, "rel_buckets", json_integer(op->rel_buckets));
                fail |= json_object_set_new(o, "rel_max_distance", json_integer(op->rel_max_distance));
            }
        }
        if (o && op->kind == EFT__OP_CACHE_ATTENTION) {
            fail |= json_object_set_new(o, "scale", json_real(op->scale));
            fail |= json_object_set_new(o, "heads", json_integer(op->heads));
            fail |= json_object_set_new(o, "kv_heads", json_integer(op->kv_heads));
            if (op->window) fail |= json_object_set_new(o, "window", json_integer(op->window));
            if (op->softcap) fail |= json_object_set_new(o, "softcap", json_real(op->softcap));
        }
        if (o && op->kind == EFT__OP_RMSNORM) {
            fail |= json_object_set_new(o, "eps", json_real(op->eps));
            if (op->norm_add) fail |= json_object_set_new(o, "norm_add", json_real(op->norm_add));
        }
        if (o && op->kind == EFT__OP_ROPE) {
            fail |= json_object_set_new(o, "heads", json_integer(op->heads));
            fail |= json_object_set_new(o, "rope_layout", json_integer(op->rope_layout));
        }
        /* The embedding scale, and the cap of a softcapping activation. */
        if (o && (op->kind == EFT__OP_EMBED || op->act == EFT__IR_ACT_SOFTCAP) && op->scale)
            fail |= json_object_set_new(o, "scale", json_real(op->scale));
        if (o && op->group > 1) fail |= json_object_set_new(o, "group", json_integer(op->group));
        if (o && op->head) fail |= json_object_set_new(o, "head", json_true());
        fail |= json_array_append_new(os, o);
    }
    for (int i = 0; !fail && i < g->n_passes; i++) fail |= json_array_append_new(ps, json_string(g->passes[i]));
    json_t *plan = json_pack("{s:i, s:i, s:i, s:I}", "max_batch", g->max_batch, "max_tokens", g->max_tokens,
                             "threads", g->n_threads, "arena_bytes", (json_int_t)g->arena_bytes);
    fail |= !plan;
    if (plan && g->state_bytes) {
        fail |= json_object_set_new(plan, "state_slots", json_integer(g->state_slots));
        fail |= json_object_set_new(plan, "state_ctx", json_integer(g->state_ctx));
        fail |= json_object_set_new(plan, "state_bytes", json_integer((json_int_t)g->state_bytes));
    }
    fail |= json_object_set_new(j, "tensors", ts);
    fail |= json_object_set_new(j, "ops", os);
    fail |= json_object_set_new(j, "passes", ps);
    fail |= json_object_set_new(j, "plan", plan);
    if (fail) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static int lookup(const char *s, const char *(*name)(int), int n) {
    for (int i = 0; s && i < n; i++)
        if (!strcmp(s, name(i))) return i;
    return -1;
}
static const char *kind_name(int i) { return k_kinds[i]; }
static const char *op_name(int i) { return eft__ir_op_name((eft__ir_opkind)i); }
static const char *kernel_name(int i) { return eft__ir_kernel_name((eft__ir_kernel)i); }
static const char *act_name(int i) { return eft__ir_act_name((eft__ir_act)i); }
static const char *dtype_name(int i) { return eft_dtype_name((eft_dtype)i); }
static const char *pass_name(int i) { return k_passes[i]; }

/* An integer field in [lo, hi], or def when absent. */
static bool int_field(const json_t *o, const char *key, int64_t lo, int64_t hi, int64_t def, int64_t *out) {
    const json_t *v = json_object_get(o, key);
    if (!v) {
        *out = def;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) return false;
    *out = json_integer_value(v);
    return true;
}

static bool real_field(const json_t *o, const char *key, float *out) {
    const json_t *v = json_object_get(o, key);
    if (!v) return true;
    if (!json_is_number(v)) return false;
    double d = json_number_value(v);
    if (!(d > -1e30 && d < 1e30)) return false;
    *out = (float)d;
    return true;
}

eft_status eft__ir_from_json(const json_t *j, eft__ir_graph **out, eft__error *err) {
    *out = NULL;
    const json_t *ts = json_object_get(j, "tensors"), *os = json_object_get(j, "ops"), *ps = json_object_get(j, "passes");
    if (!json_is_array(ts) || !json_is_array(os) || !json_is_array(ps) || json_array_size(ts) > (1u << 20) ||
        json_array_size(os) > (1u << 20))
        return eft__fail(err, EFT_ERR_FORMAT, "graph: 'tensors', 'ops' and 'passes' must be arrays");
    eft__ir_graph *g = eft__ir_new();
    if (!g) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    eft_status s = EFT_OK;
    const int nt = (int)json_array_size(ts);
    for (int i = 0; i < nt && s == EFT_OK; i++) {
        const json_t *t = json_array_get(ts, i), *sh = json_object_get(t, "shape"), *view = json_object_get(t, "view");
        const char *name = json_string_value(json_object_get(t, "name"));
        int kind = lookup(json_string_value(json_object_get(t, "kind")), kind_name, N_KINDS);
        int dt = lookup(json_string_value(json_object_get(t, "dtype")), dtype_name, EFT_DTYPE_COUNT);
        size_t nd = json_array_size(sh);
        bool ok = name && kind >= 0 && dt >= 0 && (nd == 1 || nd == 2);
        int64_t d[2] = {1, 1};
        for (size_t k = 0; ok && k < nd; k++) {
            const json_t *v = json_array_get(sh, k);
            ok = json_is_integer(v) && json_integer_value(v) >= EFT__IR_DIM_R && json_integer_value(v) <= ((int64_t)1 << 32);
            if (ok) d[k] = json_integer_value(v);
        }
        if (!ok) {
            s = eft__fail(err, EFT_ERR_FORMAT, "graph: tensor %d: needs a name, a kind (weight, input, act, output, state), "
                          "a dtype and a shape of 1 or 2 sizes", i);
            break;
        }
        int ti = eft__ir_tensor_add(g, name, (eft__ir_tkind)kind, (eft_dtype)dt, (int)nd, d[0], d[1], err);
        if (ti < 0) {
            s = err ? err->status : EFT_ERR_FORMAT;
            break;
        }
        if (view) {
            const json_t *b = json_array_get(view, 0), *c = json_array_get(view, 1);
            if (json_array_size(view) != 2 || !json_is_integer(b) || !json_is_integer(c) || json_integer_value(b) < 0 ||
                json_integer_value(b) >= nt || json_integer_value(c) < 0 || json_integer_value(c) > ((int64_t)1 << 32)) {
                s = eft__fail(err, EFT_ERR_FORMAT, "graph: tensor '%s': 'view' must be [base tensor, first column]", name);
                break;
            }
            g->t[ti].view_of = (int)json_integer_value(b);
            g->t[ti].col0 = json_integer_value(c);
        }
        g->t[ti].external = json_is_true(json_object_get(t, "external"));
        g->t[ti].bound = json_is_true(json_object_get(t, "bound"));
        if (kind == EFT__IR_WEIGHT) g->t[ti].nbytes = eft__ir_tensor_bytes(&g->t[ti], 0);
    }
    /* A view's stride is its base's width, once every base is known. */
    for (int i = 0; s == EFT_OK && i < g->n_t; i++)
        if (g->t[i].view_of >= 0) g->t[i].ld = g->t[g->t[i].view_of].shape[1];
    const int no = (int)json_array_size(os);
    for (int i = 0; i < no && s == EFT_OK; i++) {
        const json_t *o = json_array_get(os, i), *in = json_object_get(o, "in");
        int kind = lookup(json_string_value(json_object_get(o, "op")), op_name, EFT__OP_COUNT);
        int kernel = lookup(json_string_value(json_object_get(o, "kernel")), kernel_name, EFT__K_COUNT);
        const json_t *act = json_object_get(o, "act");
        int a = act ? lookup(json_string_value(act), act_name, EFT__IR_ACT_COUNT) : 0;
        size_t n = json_array_size(in);
        int ins[EFT__IR_MAX_IN + 2];
        int64_t outi, heads, rb, rmd, kvh, win, layout, group;
        bool ok = kind >= 0 && kernel >= 0 && a >= 0 && n >= 1 && n <= EFT__IR_MAX_IN + 2 &&
                  int_field(o, "out", 0, nt - 1, -1, &outi) && outi >= 0 && int_field(o, "heads", 0, 1 << 16, 0, &heads) &&
                  int_field(o, "rel_buckets", 0, 1 << 16, 0, &rb) && int_field(o, "rel_max_distance", 0, 1 << 20, 0, &rmd) &&
                  int_field(o, "kv_heads", 0, 1 << 16, 0, &kvh) && int_field(o, "window", 0, (int64_t)1 << 32, 0, &win) &&
                  int_field(o, "rope_layout", 0, 1, 0, &layout) && int_field(o, "group", 0, 3, 0, &group);
        for (size_t k = 0; ok && k < n; k++) {
            const json_t *v = json_array_get(in, k);
            ok = json_is_integer(v) && json_integer_value(v) >= -1 && json_integer_value(v) < nt;
            if (ok) ins[k] = (int)json_integer_value(v);
        }
        int oi = ok ? eft__ir_op_add(g, (eft__ir_opkind)kind, ins, (int)n, (int)outi, err) : -1;
        if (oi < 0 && ok) {
            s = err ? err->status : EFT_ERR_OUT_OF_MEMORY;
            break;
        }
        eft__ir_op *op = oi >= 0 ? &g->ops[oi] : NULL;
        if (op) {
            op->kernel = (eft__ir_kernel)kernel;
            op->act = (eft__ir_act)a;
            op->heads = (int)heads;
            op->rel_buckets = (int)rb;
            op->rel_max_distance = (int)rmd;
            op->head = json_is_true(json_object_get(o, "head"));
            op->kv_heads = (int)kvh;
            op->window = win;
            op->rope_layout = (int)layout;
            op->group = (int)group;
            ok = real_field(o, "eps", &op->eps) && real_field(o, "scale", &op->scale) &&
                 real_field(o, "softcap", &op->softcap) && real_field(o, "norm_add", &op->norm_add);
        }
        if (!ok) s = eft__fail(err, EFT_ERR_FORMAT, "graph: op %d: needs a known 'op' and 'kernel', 'in' (1 to %d "
                               "tensor indices), 'out' and attributes in range", i, EFT__IR_MAX_IN + 2);
    }
    for (size_t i = 0; s == EFT_OK && i < json_array_size(ps); i++) {
        int p = lookup(json_string_value(json_array_get(ps, i)), pass_name, N_PASSES);
        if (p < 0 || g->n_passes == EFT__IR_MAX_PASSES) s = eft__fail(err, EFT_ERR_FORMAT, "graph: unknown pass %zu", i);
        else g->passes[g->n_passes++] = k_passes[p];
    }
    /* Kernels must fit their ops, or the executor would run, say, a Q8_0 kernel on f32 panels. */
    for (int i = 0; s == EFT_OK && i < g->n_ops; i++) {
        const eft__ir_op *op = &g->ops[i];
        eft__ir_kernel k = op->kernel;
        bool mm = k == EFT__K_SGEMM_F32 || k == EFT__K_SGEMM_F16 || k == EFT__K_SGEMM_BF16 || k == EFT__K_QGEMM_Q8_0 ||
                  k == EFT__K_QGEMM_Q4_0 || k == EFT__K_GQGEMM || k == EFT__K_QX4 || k == EFT__K_QX4_I8;
        bool fits = op->kind == EFT__OP_MATMUL ? mm
                  : op->kind == EFT__OP_ATTENTION ? k == (op->n_in > 3 && op->in[3] >= 0 ? EFT__K_ATTN_RELBIAS : EFT__K_ATTN_FLASH)
                  : op->kind == EFT__OP_CACHE_ATTENTION ? k == EFT__K_ATTN_CACHE
                                                  : k == EFT__K_ROWS;
        if (op->kind == EFT__OP_MATMUL && fits && op->in[1] >= 0) {
            static const eft_dtype want[EFT__K_COUNT] = {
                [EFT__K_SGEMM_F32] = EFT_DTYPE_F32,   [EFT__K_SGEMM_F16] = EFT_DTYPE_F16,
                [EFT__K_SGEMM_BF16] = EFT_DTYPE_BF16, [EFT__K_QGEMM_Q8_0] = EFT_DTYPE_Q8_0,
                [EFT__K_QGEMM_Q4_0] = EFT_DTYPE_Q4_0,
            };
            /* The group-quantised kernel takes any member of the family, the interleaved ones the
             * GGUF block types (eft__ir_validate checks their copy). */
            eft_dtype wd = g->t[op->in[1]].dtype;
            fits = k == EFT__K_GQGEMM ? eft__gq_layout_of(wd, NULL)
                 : k == EFT__K_QX4 || k == EFT__K_QX4_I8 ? wd == EFT_DTYPE_Q8_0 || wd == EFT_DTYPE_Q4_0 || wd == EFT_DTYPE_Q4_1
                 : wd == want[k];
        }
        if (!fits)
            s = eft__fail(err, EFT_ERR_FORMAT, "graph: op %d (%s) cannot run kernel %s", i, eft__ir_op_name(op->kind),
                          eft__ir_kernel_name(k));
    }
    if (s != EFT_OK) {
        eft__ir_free(g);
        return s;
    }
    *out = g;
    return EFT_OK;
}
