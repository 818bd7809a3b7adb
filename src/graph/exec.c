/*
 * exec.c — planning, packing and running a graph. The plan places every input, activation and
 * kernel scratch of a (max batch x max tokens) run in one arena, reusing bytes between tensors
 * whose lives do not overlap; packing turns SGEMM weights into the micro-kernel's panels once;
 * the executor walks the op list, calling the kernels on the thread pool, and allocates nothing.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "kernels/cpu/kernels.h"

#include "graph/ir.h"

#define ALIGN 64u

/* ---------------------------------------------------------------------------------------------
 * Plan
 * ------------------------------------------------------------------------------------------- */

typedef struct item {
    uint64_t size;
    int first, last;
    int64_t *offset;
} item;

static int by_size_desc(const void *a, const void *b) {
    const item *x = a, *y = b;
    return x->size < y->size ? 1 : x->size > y->size ? -1 : x->first - y->first;
}

static uint64_t round_up(uint64_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

/* Kernel scratch bytes of op for rows (M) tokens, max_tokens per sequence, nth workers. */
static uint64_t scratch_of(const eft__ir_graph *g, const eft__ir_op *op, int64_t rows, int max_tokens, int nth) {
    if (op->kernel == EFT__K_QGEMM_Q8_0 || op->kernel == EFT__K_QGEMM_Q4_0)
        return eft__qgemm_f32_work_size(rows, g->t[op->in[1]].shape[1], nth);
    if (op->kernel == EFT__K_GQGEMM) return eft__gqgemm_f32_work_size(rows, g->t[op->in[1]].shape[1], nth);
    if (op->kernel == EFT__K_ATTN_FLASH) {
        const eft__ir_tensor *q = &g->t[op->in[0]], *k = &g->t[op->in[1]], *v = &g->t[op->in[2]];
        int64_t C = g->t[op->out].shape[1];
        eft__attn_params ap = {.t = max_tokens, .tk = max_tokens, .nh = op->heads, .nkv = op->heads,
                               .hs = (int)(C / op->heads), .ldq = q->ld, .ldk = k->ld, .ldv = v->ld, .ldo = C};
        return sizeof(float) * eft__attention_work_floats(&ap, nth);
    }
    if (op->kernel == EFT__K_ATTN_RELBIAS) /* score rows per worker + the bias of every offset j - i */
        return sizeof(float) * ((uint64_t)nth * (uint64_t)max_tokens + (uint64_t)op->heads * (2u * (uint64_t)max_tokens));
    return 0;
}

eft_status eft__ir_plan(eft__ir_graph *g, int max_batch, int max_tokens, int n_threads, eft__error *err) {
    const int64_t M = (int64_t)max_batch * max_tokens;
    const int nth = n_threads > 0 ? n_threads : 1;
    item *items = eft__calloc((size_t)(g->n_t + g->n_ops) + 1, sizeof *items);
    if (!items) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < g->n_t; i++) {
        g->t[i].first = g->n_ops;
        g->t[i].last = -1;
        g->t[i].offset = -1;
    }
    for (int o = 0; o < g->n_ops; o++) {
        const eft__ir_op *op = &g->ops[o];
        for (int i = 0; i < op->n_in; i++) {
            int t = op->in[i];
            if (t < 0) continue;
            if (g->t[t].view_of >= 0) t = g->t[t].view_of;
            if (g->t[t].last < o) g->t[t].last = o;
        }
        eft__ir_tensor *out = &g->t[op->out];
        if (out->first > o) out->first = o;
        if (out->last < o) out->last = o;
    }
    int n = 0;
    for (int i = 0; i < g->n_t; i++) {
        eft__ir_tensor *t = &g->t[i];
        if (t->kind == EFT__IR_WEIGHT || t->view_of >= 0) continue;
        if (t->kind == EFT__IR_INPUT) t->first = 0;
        if (t->kind == EFT__IR_INPUT || t->kind == EFT__IR_OUTPUT) t->last = g->n_ops;
        if (t->first > t->last) continue; /* nothing reads or writes it */
        uint64_t bytes = eft__ir_tensor_bytes(t, t->shape[0] == EFT__IR_DIM_B ? max_batch : M);
        if (bytes == UINT64_MAX) {
            eft__free(items);
            return eft__fail(err, EFT_ERR_LIMIT, "plan: '%s' is too large for %d x %d tokens", t->name, max_batch,
                             max_tokens);
        }
        items[n++] = (item){.size = round_up(bytes), .first = t->first, .last = t->last, .offset = &t->offset};
    }
    for (int o = 0; o < g->n_ops; o++) {
        eft__ir_op *op = &g->ops[o];
        op->scratch_bytes = scratch_of(g, op, M, max_tokens, nth);
        op->scratch_off = -1;
        if (op->scratch_bytes)
            items[n++] = (item){.size = round_up(op->scratch_bytes), .first = o, .last = o, .offset = &op->scratch_off};
    }
    /* Largest first, each at the lowest offset clear of every placed item it overlaps in time:
     * the usual greedy that lands close to the peak of live bytes. */
    qsort(items, (size_t)n, sizeof *items, by_size_desc);
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        uint64_t at = 0;
        for (bool moved = true; moved;) {
            moved = false;
            for (int j = 0; j < i; j++) {
                const item *p = &items[j];
                bool live = p->first <= items[i].last && items[i].first <= p->last;
                uint64_t po = (uint64_t)*p->offset;
                if (live && po < at + items[i].size && at < po + p->size) {
                    at = po + p->size;
                    moved = true;
                }
            }
        }
        *items[i].offset = (int64_t)at;
        if (at + items[i].size > total) total = at + items[i].size;
    }
    eft__free(items);
    g->arena_bytes = total;
    g->max_batch = max_batch;
    g->max_tokens = max_tokens;
    g->n_threads = nth;
    return EFT_OK;
}

eft_status eft__ir_pack(eft__ir_graph *g, eft__error *err) {
    for (int o = 0; o < g->n_ops; o++) {
        const eft__ir_op *op = &g->ops[o];
        if (op->kernel != EFT__K_SGEMM_F32 && op->kernel != EFT__K_SGEMM_F16 && op->kernel != EFT__K_SGEMM_BF16)
            continue;
        eft__ir_tensor *w = &g->t[op->in[1]];
        if (w->packed) continue;
        eft__sgemm_packed *p = eft__calloc(1, sizeof *p);
        if (!p) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        const int64_t N = w->shape[0], K = w->shape[1];
        eft_status s = EFT_OK;
        if (w->dtype == EFT_DTYPE_F32) {
            s = eft__sgemm_pack_typed(p, w->dtype, w->data, N, K, K, err);
        } else {
            s = eft__sgemm_pack_half(p, w->dtype, w->data, N, K, K, err);
        }
        if (s != EFT_OK) {
            eft__free(p);
            return eft__error_prefix(err, "packing '%s'", w->name);
        }
        w->packed = p;
        /* The panels are the weight now: the unpacked bytes (a pass's, or the checkpoint's view)
         * are no longer read. */
        eft__free(w->owned);
        w->owned = NULL;
        w->data = NULL;
    }
    return EFT_OK;
}

/* Bytes of a packed weight's panels (what a program stores for it). */
uint64_t eft__ir_packed_bytes(const eft__ir_tensor *w) {
    const eft__sgemm_packed *p = w->packed;
    return (uint64_t)p->npanels * EFT__SGEMM_NR * (uint64_t)p->k * (p->dtype == EFT_DTYPE_F32 ? 4 : 2);
}

/* ---------------------------------------------------------------------------------------------
 * Run
 * ------------------------------------------------------------------------------------------- */

typedef struct xctx {
    const eft__ir_graph *g;
    const eft__ir_op *op;
    const eft__kernels *kt;
    void *arena;
    const eft__ir_run *run;
    int64_t rows;
    /* Attention with a relative-position table: the sequence being computed. */
    const float *q, *k, *v;
    float *o;
    int64_t len, span;
    const float *bias;  /* [heads][span], index j - i + len - 1 */
    float *scores;      /* [nth][max_tokens] */
} xctx;

#define AT(x, t) ((float *)eft__ir_at((x)->g, (x)->arena, (t)))

static void act_rows(const eft__kernels *kt, eft__ir_act act, float *out, const float *x, int64_t n) {
    switch (act) {
    case EFT__IR_ACT_GELU: kt->gelu_erf(out, x, n); break;
    case EFT__IR_ACT_GELU_TANH: kt->gelu_tanh(out, x, n); break;
    case EFT__IR_ACT_SILU: kt->silu(out, x, n); break;
    case EFT__IR_ACT_RELU:
        for (int64_t i = 0; i < n; i++) out[i] = x[i] > 0 ? x[i] : 0;
        break;
    case EFT__IR_ACT_QUICK_GELU:
        for (int64_t i = 0; i < n; i++) out[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
        break;
    case EFT__IR_ACT_TANH:
        for (int64_t i = 0; i < n; i++) out[i] = tanhf(x[i]);
        break;
    default:
        if (out != x) memmove(out, x, sizeof(float) * (size_t)n);
        break;
    }
}

/* Row-wise ops (and a MATMUL's activation), each worker a share of the rows. */
static void rows_task(void *arg, int ith, int nth) {
    const xctx *x = arg;
    const eft__ir_op *op = x->op;
    const eft__kernels *kt = x->kt;
    const int64_t N = x->g->t[op->out].shape[1];
    int64_t r0, r1;
    eft__split_range(x->rows, ith, nth, &r0, &r1);
    if (r0 >= r1) return;
    float *out = AT(x, op->out);
    switch (op->kind) {
    case EFT__OP_MATMUL: act_rows(kt, op->act, out + r0 * N, out + r0 * N, (r1 - r0) * N); break;
    case EFT__OP_ACT: act_rows(kt, op->act, out + r0 * N, AT(x, op->in[0]) + r0 * N, (r1 - r0) * N); break;
    case EFT__OP_ADD: kt->add(out + r0 * N, AT(x, op->in[0]) + r0 * N, AT(x, op->in[1]) + r0 * N, (r1 - r0) * N); break;
    case EFT__OP_BIAS: {
        const float *a = AT(x, op->in[0]), *b = x->g->t[op->in[1]].data;
        for (int64_t r = r0; r < r1; r++) kt->add(out + r * N, a + r * N, b, N);
        break;
    }
    case EFT__OP_LAYERNORM: {
        const float *a = AT(x, op->in[0]), *w = x->g->t[op->in[1]].data, *b = x->g->t[op->in[2]].data;
        for (int64_t r = r0; r < r1; r++) kt->layernorm(out + r * N, a + r * N, w, b, N, op->eps);
        break;
    }
    case EFT__OP_ADD_LN: {
        const float *a = AT(x, op->in[0]), *c = AT(x, op->in[1]);
        const float *w = x->g->t[op->in[2]].data, *b = x->g->t[op->in[3]].data;
        for (int64_t r = r0; r < r1; r++) {
            kt->add(out + r * N, a + r * N, c + r * N, N);
            kt->layernorm(out + r * N, out + r * N, w, b, N, op->eps);
        }
        break;
    }
    default: break;
    }
}

static void run_rows(const xctx *x, eft__threadpool *tp) {
    if (tp) eft__threadpool_run(tp, rows_task, (void *)x);
    else rows_task((void *)x, 0, 1);
}

/* MPNet's bucket of a relative position j - i (transformers' relative_position_bucket,
 * bidirectional), computed in float as torch does so boundary cases agree. */
static int64_t rel_bucket(int64_t rel, int64_t num_buckets, int64_t max_distance) {
    int64_t n = -rel, ret = 0;
    num_buckets /= 2;
    if (n < 0) ret += num_buckets;
    n = n < 0 ? -n : n;
    int64_t max_exact = num_buckets / 2;
    if (n < max_exact) return ret + n;
    float v = logf((float)n / (float)max_exact) / (float)log((double)max_distance / (double)max_exact) *
              (float)(num_buckets - max_exact);
    int64_t large = max_exact + (int64_t)v;
    if (large > num_buckets - 1) large = num_buckets - 1;
    return ret + large;
}

/* softmax(q k^T scale + bias[h][j - i]) v for one sequence, one (head, query) pair per work item:
 * the flash kernel takes no additive bias, so this is the plain form. */
static void relbias_task(void *arg, int ith, int nth) {
    const xctx *x = arg;
    const eft__kernels *kt = x->kt;
    const eft__ir_op *op = x->op;
    const int64_t C = x->g->t[op->out].shape[1], HS = C / op->heads, len = x->len;
    const int64_t ldq = x->g->t[op->in[0]].ld, ldk = x->g->t[op->in[1]].ld, ldv = x->g->t[op->in[2]].ld;
    float *s = x->scores + (int64_t)ith * x->g->max_tokens;
    int64_t w0, w1;
    eft__split_range(op->heads * len, ith, nth, &w0, &w1);
    for (int64_t w = w0; w < w1; w++) {
        int64_t h = w / len, i = w % len;
        const float *q = x->q + i * ldq + h * HS;
        const float *bias = x->bias + h * x->span + (len - 1) - i;
        for (int64_t j = 0; j < len; j++) s[j] = kt->dot_f32(q, x->k + j * ldk + h * HS, HS) * op->scale + bias[j];
        kt->softmax(s, len);
        float *o = x->o + i * C + h * HS;
        memset(o, 0, sizeof(float) * (size_t)HS);
        for (int64_t j = 0; j < len; j++) kt->axpy_f32(o, s[j], x->v + j * ldv + h * HS, HS);
    }
}

static void attention(xctx *x, eft__threadpool *tp) {
    const eft__ir_graph *g = x->g;
    const eft__ir_op *op = x->op;
    const eft__ir_run *run = x->run;
    const eft__ir_tensor *tq = &g->t[op->in[0]], *tk = &g->t[op->in[1]], *tv = &g->t[op->in[2]];
    const int64_t C = g->t[op->out].shape[1];
    float *q = AT(x, op->in[0]), *k = AT(x, op->in[1]), *v = AT(x, op->in[2]), *o = AT(x, op->out);
    float *work = (float *)((char *)x->arena + op->scratch_off);
    if (op->kernel == EFT__K_ATTN_RELBIAS) {
        int64_t maxlen = 0;
        for (int b = 0; b < run->B; b++)
            if (run->off[b + 1] - run->off[b] > maxlen) maxlen = run->off[b + 1] - run->off[b];
        /* The bias of every offset j - i, -(maxlen - 1) .. maxlen - 1, for each head; a sequence
         * of len reads its middle 2 len - 1 entries. */
        const float *tab = g->t[op->in[3]].data; /* [buckets, heads] */
        float *bias = work + (int64_t)g->n_threads * g->max_tokens;
        int64_t span = 2 * maxlen - 1;
        for (int64_t d = 0; d < span; d++) {
            int64_t bucket = rel_bucket(d - (maxlen - 1), op->rel_buckets, op->rel_max_distance);
            for (int64_t h = 0; h < op->heads; h++) bias[h * span + d] = tab[bucket * op->heads + h];
        }
        x->scores = work;
        x->span = span;
        for (int b = 0; b < run->B; b++) {
            int64_t r0 = run->off[b], len = run->off[b + 1] - r0;
            if (!len) continue;
            x->q = q + r0 * tq->ld;
            x->k = k + r0 * tk->ld;
            x->v = v + r0 * tv->ld;
            x->o = o + r0 * C;
            x->len = len;
            x->bias = bias + (maxlen - len);
            if (tp) eft__threadpool_run(tp, relbias_task, x);
            else relbias_task(x, 0, 1);
        }
        return;
    }
    for (int b = 0; b < run->B; b++) {
        int64_t r0 = run->off[b], len = run->off[b + 1] - r0;
        if (!len) continue;
        eft__attn_params ap = {.t = len, .tk = len, .nh = op->heads, .nkv = op->heads, .hs = (int)(C / op->heads),
                               .ldq = tq->ld, .ldk = tk->ld, .ldv = tv->ld, .ldo = C, .scale = op->scale};
        eft__attention(x->kt, tp, o + r0 * C, q + r0 * tq->ld, k + r0 * tk->ld, v + r0 * tv->ld, &ap, work);
    }
}

static void embed(const xctx *x) {
    const eft__ir_graph *g = x->g;
    const eft__ir_op *op = x->op;
    const eft__ir_tensor *wte = &g->t[op->in[2]];
    const int64_t C = wte->shape[1], M = x->run->M;
    float *out = AT(x, op->out);
    const int32_t *ids = eft__ir_at(g, x->arena, op->in[0]), *pos = eft__ir_at(g, x->arena, op->in[1]);
    const int32_t *types = op->in[4] >= 0 ? eft__ir_at(g, x->arena, op->in[4]) : NULL;
    const float *wpe = g->t[op->in[3]].data, *wtt = op->in[5] >= 0 ? g->t[op->in[5]].data : NULL;
    /* The caller checked every id against the vocabulary, so the gather cannot refuse. */
    (void)eft__embedding_gather(out, C, wte->data, wte->dtype, wte->shape[0], C, C, ids, M);
    for (int64_t r = 0; r < M; r++) {
        x->kt->add(out + r * C, out + r * C, wpe + (int64_t)pos[r] * C, C);
        if (wtt) x->kt->add(out + r * C, out + r * C, wtt + (int64_t)types[r] * C, C);
    }
}

void eft__ir_exec(const eft__ir_graph *g, const eft__kernels *kt, eft__threadpool *tp, void *arena,
                  const eft__ir_run *run, int op0, int op1) {
    for (int o = op0; o < op1; o++) {
        const eft__ir_op *op = &g->ops[o];
        const eft__ir_tensor *out = &g->t[op->out];
        xctx x = {.g = g, .op = op, .kt = kt, .arena = arena, .run = run,
                  .rows = out->shape[0] == EFT__IR_DIM_B ? run->B : out->shape[0] == EFT__IR_DIM_M ? run->M : out->shape[0]};
        if (x.rows == 0) continue;
        switch (op->kind) {
        case EFT__OP_EMBED: embed(&x); break;
        case EFT__OP_MATMUL: {
            const eft__ir_tensor *in = &g->t[op->in[0]], *w = &g->t[op->in[1]];
            const float *bias = op->in[2] >= 0 ? g->t[op->in[2]].data : NULL;
            float *c = AT(&x, op->out);
            if (op->kernel == EFT__K_QGEMM_Q8_0 || op->kernel == EFT__K_QGEMM_Q4_0)
                (void)eft__qgemm_f32(kt, tp, c, w->shape[0], AT(&x, op->in[0]), in->ld, x.rows, w->dtype, w->data,
                                     w->shape[0], w->shape[1], bias, (char *)arena + op->scratch_off);
            else if (op->kernel == EFT__K_GQGEMM)
                (void)eft__gqgemm_f32(kt, tp, c, w->shape[0], AT(&x, op->in[0]), in->ld, x.rows, w->dtype, w->data,
                                      w->shape[0], w->shape[1], bias, (char *)arena + op->scratch_off);
            else
                eft__sgemm(kt, tp, c, w->shape[0], AT(&x, op->in[0]), in->ld, x.rows, w->packed, bias);
            if (op->act != EFT__IR_ACT_NONE) run_rows(&x, tp);
            break;
        }
        case EFT__OP_ATTENTION: attention(&x, tp); break;
        case EFT__OP_FIRST_ROW: {
            const int64_t C = out->shape[1];
            const float *in = AT(&x, op->in[0]);
            float *o2 = AT(&x, op->out);
            for (int b = 0; b < run->B; b++) memcpy(o2 + b * C, in + (int64_t)run->off[b] * C, sizeof(float) * (size_t)C);
            break;
        }
        default: run_rows(&x, tp); break;
        }
    }
}
