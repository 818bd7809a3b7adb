/*
 * exec.c — planning, packing and running a graph. The plan places every input, activation and
 * kernel scratch of a (max batch x max tokens) run in one arena, reusing bytes between tensors
 * whose lives do not overlap; packing turns SGEMM weights into the micro-kernel's panels once;
 * the executor walks the op list, calling the kernels on the thread pool, and allocates nothing.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/quant.h"
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

/* CACHE_ATTENTION's scratch for rows tokens: the attention kernels' work (flash over the whole
 * context, or every worker's decode share), the decode items of one step, and for a half or int8
 * cache the f32 copies of one slot's keys and values the flash kernel reads. Offsets into it in
 * parts: [0] items, [1] kf, [2] vf, [3] work floats. */
static uint64_t cache_attn_scratch(const eft__ir_graph *g, const eft__ir_op *op, int64_t rows, int nth, uint64_t *parts) {
    const eft__ir_tensor *ks = &g->t[op->in[4]];
    const int64_t KD = ks->shape[0] * ks->shape[1], ctx = g->state_ctx > 0 ? g->state_ctx : 1;
    eft__attn_params ap = {.t = rows, .tk = ctx, .nh = op->heads, .nkv = op->kv_heads, .hs = (int)ks->shape[1]};
    size_t flash = eft__attention_work_floats(&ap, nth), dec = (size_t)nth * eft__attention_decode_work_floats(&ap);
    uint64_t items = round_up((uint64_t)rows * sizeof(eft__attn_dec_item));
    uint64_t kf = ks->dtype == EFT_DTYPE_F32 ? 0 : round_up((uint64_t)ctx * (uint64_t)KD * sizeof(float));
    if (parts) {
        parts[0] = 0;
        parts[1] = items;
        parts[2] = items + kf;
        parts[3] = items + 2 * kf;
    }
    return items + 2 * kf + sizeof(float) * (uint64_t)(flash > dec ? flash : dec);
}

/* Kernel scratch bytes of op for rows (M) tokens, max_tokens per sequence, nth workers. */
static uint64_t scratch_of(const eft__ir_graph *g, const eft__ir_op *op, int64_t rows, int max_tokens, int nth) {
    if (op->kernel == EFT__K_QGEMM_Q8_0 || op->kernel == EFT__K_QGEMM_Q4_0)
        return eft__qgemm_f32_work_size(rows, g->t[op->in[1]].shape[1], nth);
    if (op->kernel == EFT__K_GQGEMM) return eft__gqgemm_f32_work_size(rows, g->t[op->in[1]].shape[1], nth);
    if (op->kernel == EFT__K_QX4 || op->kernel == EFT__K_QX4_I8) {
        /* One row, a decode batch or panels (f32 activations); int8 activations on either layout. */
        const int64_t K = g->t[op->in[1]].shape[1];
        size_t a = eft__qgemm_f32_work_size(rows, K, nth), b = eft__qx4_f32_work_size(rows, K);
        size_t c = eft__qx4_work_size(rows, K), d = eft__q8_0_gemm_work_size(rows, K);
        size_t m = a > b ? a : b;
        m = m > c ? m : c;
        return m > d ? m : d;
    }
    if (op->kernel == EFT__K_ATTN_CACHE) return cache_attn_scratch(g, op, rows, nth, NULL);
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
    for (int i = 0; i < g->n_t; i++)
        if (g->t[i].kind == EFT__IR_STATE && g->state_ctx < 1)
            return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "plan: the graph keeps state ('%s'); plan it first "
                             "(eft__ir_plan_state)", g->t[i].name);
    item *items = eft__calloc((size_t)(g->n_t + g->n_ops) + 1, sizeof *items);
    if (!items) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < g->n_t; i++) {
        g->t[i].first = g->n_ops;
        g->t[i].last = -1;
        if (g->t[i].kind != EFT__IR_STATE) g->t[i].offset = -1; /* state: eft__ir_plan_state's */
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
    /* A group's products are all written when its first op runs. */
    for (int o = 0; o < g->n_ops; o++) {
        const eft__ir_op *op = &g->ops[o];
        if (op->kind != EFT__OP_MATMUL || op->group < 2) continue;
        for (int j = 1; j < op->group && o + j < g->n_ops; j++) {
            eft__ir_tensor *out = &g->t[g->ops[o + j].out];
            if (out->first > o) out->first = o;
        }
    }
    int n = 0;
    for (int i = 0; i < g->n_t; i++) {
        eft__ir_tensor *t = &g->t[i];
        if (t->kind == EFT__IR_WEIGHT || t->kind == EFT__IR_STATE || t->bound || t->view_of >= 0) continue;
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

uint64_t eft__ir_state_bytes(const eft__ir_graph *g, const eft__ir_tensor *t) {
    uint64_t rows = (uint64_t)g->state_slots * (uint64_t)g->state_ctx * (uint64_t)t->shape[0];
    uint64_t bytes = rows * (uint64_t)t->shape[1] * (t->dtype == EFT_DTYPE_F32 ? 4u : t->dtype == EFT_DTYPE_F16 ? 2u : 1u);
    if (t->dtype == EFT_DTYPE_I8) bytes = round_up(bytes) + rows * sizeof(float);
    return round_up(bytes);
}

eft_status eft__ir_plan_state(eft__ir_graph *g, int slots, int64_t ctx, eft__error *err) {
    if (slots < 1 || slots > 4096 || ctx < 1 || ctx > ((int64_t)1 << 24))
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "plan: %d slots of %lld positions (1..4096 of 1..2^24)", slots,
                         (long long)ctx);
    g->state_slots = slots;
    g->state_ctx = ctx;
    uint64_t total = 0;
    for (int i = 0; i < g->n_t; i++) {
        eft__ir_tensor *t = &g->t[i];
        if (t->kind != EFT__IR_STATE) continue;
        /* Shapes are validated to 2^32 each: the product of four such can still overflow. */
        uint64_t rows, elems;
        if (eft__mul_overflow_u64((uint64_t)slots * (uint64_t)ctx, (uint64_t)t->shape[0], &rows) ||
            eft__mul_overflow_u64(rows, (uint64_t)t->shape[1], &elems) || elems > ((uint64_t)1 << 44))
            return eft__fail(err, EFT_ERR_LIMIT, "plan: state '%s' of %d slots x %lld positions is too large", t->name,
                             slots, (long long)ctx);
        t->offset = (int64_t)total;
        total += eft__ir_state_bytes(g, t);
    }
    g->state_bytes = total;
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

/* Where tensor t lives during run: the arena, or the run's storage for the bound output. */
static inline void *at(const xctx *x, int t) {
    return x->g->t[t].bound ? x->run->bound : eft__ir_at(x->g, x->arena, t);
}
#define AT(x, i) ((float *)at((x), (i)))
#define LD(x, i) ((x)->g->t[(i)].ld)

static void act_rows(const eft__kernels *kt, eft__ir_act act, float scale, float *out, const float *x, int64_t n) {
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
    case EFT__IR_ACT_SOFTCAP: {
        const float inv = 1.0f / scale;
        for (int64_t i = 0; i < n; i++) out[i] = scale * tanhf(x[i] * inv);
        break;
    }
    default:
        if (out != x) memmove(out, x, sizeof(float) * (size_t)n);
        break;
    }
}

/* Row-wise ops (and a MATMUL's activation), each worker a share of the rows. Inputs may be
 * column views (ld their base's width); outputs never are. */
static void rows_task(void *arg, int ith, int nth) {
    const xctx *x = arg;
    const eft__ir_op *op = x->op;
    const eft__kernels *kt = x->kt;
    const int64_t N = x->g->t[op->out].shape[1];
    int64_t r0, r1;
    eft__split_range(x->rows, ith, nth, &r0, &r1);
    if (r0 >= r1) return;
    float *out = AT(x, op->out);
    const int a0 = op->in[0];
    switch (op->kind) {
    case EFT__OP_MATMUL: act_rows(kt, op->act, op->scale, out + r0 * N, out + r0 * N, (r1 - r0) * N); break;
    case EFT__OP_ACT: act_rows(kt, op->act, op->scale, out + r0 * N, AT(x, a0) + r0 * N, (r1 - r0) * N); break;
    case EFT__OP_ADD: kt->add(out + r0 * N, AT(x, a0) + r0 * N, AT(x, op->in[1]) + r0 * N, (r1 - r0) * N); break;
    case EFT__OP_BIAS: {
        const float *a = AT(x, a0), *b = x->g->t[op->in[1]].data;
        for (int64_t r = r0; r < r1; r++) kt->add(out + r * N, a + r * N, b, N);
        break;
    }
    case EFT__OP_LAYERNORM: {
        const float *a = AT(x, a0), *w = x->g->t[op->in[1]].data, *b = x->g->t[op->in[2]].data;
        for (int64_t r = r0; r < r1; r++) kt->layernorm(out + r * N, a + r * LD(x, a0), w, b, N, op->eps);
        break;
    }
    case EFT__OP_ADD_LN: {
        const float *a = AT(x, a0), *c = AT(x, op->in[1]);
        const float *w = x->g->t[op->in[2]].data, *b = x->g->t[op->in[3]].data;
        for (int64_t r = r0; r < r1; r++) {
            kt->add(out + r * N, a + r * N, c + r * N, N);
            kt->layernorm(out + r * N, out + r * N, w, b, N, op->eps);
        }
        break;
    }
    case EFT__OP_RMSNORM: {
        const float *a = AT(x, a0), *w = x->g->t[op->in[1]].data;
        const int64_t C = x->g->t[op->in[1]].shape[0], ld = LD(x, a0);
        for (int64_t r = r0; r < r1; r++)
            for (int64_t c = 0; c < N; c += C) kt->rmsnorm(out + r * N + c, a + r * ld + c, w, C, op->eps, op->norm_add);
        break;
    }
    case EFT__OP_ROPE: {
        const eft__ir_tensor *tab = &x->g->t[op->in[2]];
        const eft__rope_table rt = {.n_pos = tab->shape[0], .half = (int)(tab->shape[1] / 2), .cos_sin = (float *)tab->data};
        const float *a = AT(x, a0);
        const int64_t ld = LD(x, a0);
        const int32_t *pos = at(x, op->in[1]);
        /* A position past the table (only a hostile program's graph: a decoder checks its
         * positions against the context its table covers) leaves its row unrotated. */
        for (int64_t r = r0; r < r1; r++) {
            memcpy(out + r * N, a + r * ld, sizeof(float) * (size_t)N);
            if (pos[r] >= 0 && pos[r] < rt.n_pos)
                eft__rope_apply(&rt, (eft__rope_layout)op->rope_layout, out + r * N, N, 1, op->heads,
                                (int)(N / op->heads), pos + r);
        }
        break;
    }
    case EFT__OP_GLU: {
        const float *gt = AT(x, a0), *up = AT(x, op->in[1]);
        const int64_t ldg = LD(x, a0), ldu = LD(x, op->in[1]);
        for (int64_t r = r0; r < r1; r++) {
            if (op->act == EFT__IR_ACT_SILU) {
                kt->swiglu(out + r * N, gt + r * ldg, up + r * ldu, N);
            } else {
                float *y = out + r * N;
                const float *u = up + r * ldu;
                act_rows(kt, op->act, op->scale, y, gt + r * ldg, N);
                for (int64_t e = 0; e < N; e++) y[e] *= u[e];
            }
        }
        break;
    }
    case EFT__OP_GATHER: {
        const float *a = AT(x, a0);
        const int32_t *rows = at(x, op->in[1]);
        for (int64_t r = r0; r < r1; r++) memcpy(out + r * N, a + (int64_t)rows[r] * LD(x, a0), sizeof(float) * (size_t)N);
        break;
    }
    default: break;
    }
}

/* Row-wise work is spread over the pool only when there is enough of it to pay for a dispatch
 * and join (a few microseconds): a decode step's norms and sums (a few thousand floats) stay on
 * the caller; activations (tens of nanoseconds a float) go from four rows on (30 us per SmolLM2
 * layer at eight rows on one thread) or from one long row (Gemma's softcapped logits); prefill
 * and encoder batches always. */
enum { ROWS_POOL_MIN_FLOATS = 16384, ACT_POOL_MIN_ROWS = 4, ACT_POOL_MIN_FLOATS = 65536 };

static void run_rows(const xctx *x, eft__threadpool *tp) {
    const int64_t N = x->g->t[x->op->out].shape[1];
    bool heavy = x->op->kind == EFT__OP_GLU || x->op->kind == EFT__OP_ACT || x->op->kind == EFT__OP_MATMUL;
    bool pool = tp && (heavy ? x->rows >= ACT_POOL_MIN_ROWS || x->rows * N >= ACT_POOL_MIN_FLOATS
                             : x->rows * N >= ROWS_POOL_MIN_FLOATS);
    if (pool) eft__threadpool_run(tp, rows_task, (void *)x);
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

/* ---------------------------------------------------------------------------------------------
 * Attention over retained state (decoders' KV cache)
 * ------------------------------------------------------------------------------------------- */

/* One slot's cache of one state tensor: the first row (head 0, position 0) of the slot, and for
 * int8 the slot's first scale. Head h's position p is row h ctx + p from there. */
typedef struct kv_slot {
    char *rows;
    float *scale;
} kv_slot;

static kv_slot kv_at(const xctx *x, int t, int64_t slot) {
    const eft__ir_graph *g = x->g;
    const eft__ir_tensor *s = &g->t[t];
    const size_t es = s->dtype == EFT_DTYPE_F32 ? 4 : s->dtype == EFT_DTYPE_F16 ? 2 : 1;
    const uint64_t per_slot = (uint64_t)s->shape[0] * (uint64_t)g->state_ctx; /* rows of HS */
    char *base = (char *)x->run->state + s->offset;
    kv_slot r = {base + slot * per_slot * s->shape[1] * es, NULL};
    if (s->dtype == EFT_DTYPE_I8)
        r.scale = (float *)(base + round_up((uint64_t)g->state_slots * per_slot * (uint64_t)s->shape[1])) + slot * per_slot;
    return r;
}

/* Writes the m rows' k and v (rotated, normed) into their slots at their positions. */
static void cache_write(const xctx *x) {
    const eft__ir_graph *g = x->g;
    const eft__ir_op *op = x->op;
    const eft__ir_run *run = x->run;
    const eft__ir_tensor *ts = &g->t[op->in[4]];
    const int64_t HS = ts->shape[1], NKV = ts->shape[0], ctx = g->state_ctx;
    const float *k0 = AT(x, op->in[1]), *v0 = AT(x, op->in[2]);
    const int64_t ldk = LD(x, op->in[1]), ldv = LD(x, op->in[2]);
    const int32_t *pos = at(x, op->in[3]);
    for (int b = 0; b < run->B; b++) {
        kv_slot K = kv_at(x, op->in[4], run->slot[b]), V = kv_at(x, op->in[5], run->slot[b]);
        for (int64_t r = run->off[b]; r < run->off[b + 1]; r++) {
            const float *k = k0 + r * ldk, *v = v0 + r * ldv;
            for (int64_t h = 0; h < NKV; h++, k += HS, v += HS) {
                const size_t row = (size_t)(h * ctx + pos[r]), at_e = row * (size_t)HS;
                switch (ts->dtype) {
                case EFT_DTYPE_F16: {
                    uint16_t *kc = (uint16_t *)K.rows + at_e, *vc = (uint16_t *)V.rows + at_e;
                    for (int64_t e = 0; e < HS; e++) kc[e] = eft__f32_to_f16(k[e]), vc[e] = eft__f32_to_f16(v[e]);
                    break;
                }
                case EFT_DTYPE_I8:
                    K.scale[row] = eft__kv_quantize_i8((int8_t *)K.rows + at_e, k, HS);
                    V.scale[row] = eft__kv_quantize_i8((int8_t *)V.rows + at_e, v, HS);
                    break;
                default:
                    memcpy((float *)K.rows + at_e, k, sizeof(float) * (size_t)HS);
                    memcpy((float *)V.rows + at_e, v, sizeof(float) * (size_t)HS);
                    break;
                }
            }
        }
    }
}

/* A half or int8 slot's positions 0 .. tk widened into kf/vf, [tk][KD] with the heads side by
 * side, for the flash kernel. */
static void cache_widen(const xctx *x, int64_t slot, int64_t tk, float *kf, float *vf) {
    const eft__ir_tensor *ts = &x->g->t[x->op->in[4]];
    const int64_t HS = ts->shape[1], NKV = ts->shape[0], KD = NKV * HS, ctx = x->g->state_ctx;
    kv_slot K = kv_at(x, x->op->in[4], slot), V = kv_at(x, x->op->in[5], slot);
    for (int64_t h = 0; h < NKV; h++)
        for (int64_t j = 0; j < tk; j++) {
            const size_t row = (size_t)(h * ctx + j), at_e = row * (size_t)HS;
            float *ko = kf + j * KD + h * HS, *vo = vf + j * KD + h * HS;
            if (ts->dtype == EFT_DTYPE_F16) {
                const uint16_t *kc = (const uint16_t *)K.rows + at_e, *vc = (const uint16_t *)V.rows + at_e;
                for (int64_t e = 0; e < HS; e++) ko[e] = eft__f16_to_f32(kc[e]), vo[e] = eft__f16_to_f32(vc[e]);
            } else {
                const int8_t *kc = (const int8_t *)K.rows + at_e, *vc = (const int8_t *)V.rows + at_e;
                const float sk = K.scale[row], sv = V.scale[row];
                for (int64_t e = 0; e < HS; e++) ko[e] = sk * kc[e], vo[e] = sv * vc[e];
            }
        }
}

/* Groups of up to this many tokens (a slot's decode step, or a few speculative tokens) attend
 * with the cache-reading kernel; longer ones (prefill chunks) with the flash kernel. */
enum { DECODE_ROWS = 4 };

static void cache_attention(const xctx *x, eft__threadpool *tp) {
    const eft__ir_graph *g = x->g;
    const eft__ir_op *op = x->op;
    const eft__ir_run *run = x->run;
    const eft__ir_tensor *ts = &g->t[op->in[4]];
    const int64_t HS = ts->shape[1], QD = g->t[op->out].shape[1], KD = ts->shape[0] * HS, ctx = g->state_ctx;
    const int64_t ldq = LD(x, op->in[0]);
    const float *q = AT(x, op->in[0]);
    float *o = AT(x, op->out);
    const int32_t *pos = at(x, op->in[3]);
    uint64_t parts[4];
    (void)cache_attn_scratch(g, op, g->max_tokens * (int64_t)g->max_batch, g->n_threads, parts);
    char *scratch = (char *)x->arena + op->scratch_off;
    eft__attn_dec_item *items = (eft__attn_dec_item *)(scratch + parts[0]);
    float *kf = (float *)(scratch + parts[1]), *vf = (float *)(scratch + parts[2]), *work = (float *)(scratch + parts[3]);
    eft__attn_params base = {.nh = op->heads, .nkv = op->kv_heads, .hs = (int)HS, .ldq = ldq, .ldk = KD, .ldv = KD,
                             .ldo = QD, .scale = op->scale, .causal = true, .window = op->window, .softcap = op->softcap};
    const eft__attn_params dec_size = {.t = g->max_tokens * (int64_t)g->max_batch, .tk = ctx, .nh = op->heads,
                                       .nkv = op->kv_heads, .hs = (int)HS};
    const size_t dec_wf = eft__attention_decode_work_floats(&dec_size);
    cache_write(x);
    /* Prefill groups one at a time; decode groups together: one alone splits its cache over the
     * workers (eft__attention_decode), several go in one batched run. */
    int nd = 0;
    for (int b = 0; b < run->B; b++) {
        const int64_t r0 = run->off[b], t = run->off[b + 1] - r0;
        if (t <= 0) continue;
        const int64_t pos0 = pos[r0];
        eft__attn_params ap = base;
        ap.t = t;
        ap.tk = pos0 + t;
        ap.q_pos0 = pos0;
        kv_slot K = kv_at(x, op->in[4], run->slot[b]), V = kv_at(x, op->in[5], run->slot[b]);
        if (t <= DECODE_ROWS) {
            items[nd++] = (eft__attn_dec_item){
                .out = o + r0 * QD, .q = q + r0 * ldq,
                .k = {ts->dtype, K.rows, HS, K.scale, 1, ctx * HS, ctx},
                .v = {ts->dtype, V.rows, HS, V.scale, 1, ctx * HS, ctx}, .p = ap};
        } else if (ts->dtype == EFT_DTYPE_F32) {
            /* Straight from the cache, head by head. */
            ap.ldk = ap.ldv = HS;
            ap.ldkh = ap.ldvh = ctx * HS;
            eft__attention(x->kt, tp, o + r0 * QD, q + r0 * ldq, (const float *)K.rows, (const float *)V.rows, &ap, work);
        } else {
            cache_widen(x, run->slot[b], ap.tk, kf, vf);
            eft__attention(x->kt, tp, o + r0 * QD, q + r0 * ldq, kf, vf, &ap, work);
        }
    }
    if (nd == 1) eft__attention_decode(x->kt, tp, items[0].out, items[0].q, &items[0].k, &items[0].v, &items[0].p, work);
    else if (nd > 1) eft__attention_decode_batch(x->kt, tp, items, nd, work, dec_wf);
}

/* ---------------------------------------------------------------------------------------------
 * Products
 * ------------------------------------------------------------------------------------------- */

/* c[rows, N] (ldc) = a[rows, K] (lda) w^T (+ bias) with the op's kernel. */
static void matmul(const xctx *x, eft__threadpool *tp, const eft__ir_op *op, float *c, int64_t ldc) {
    const eft__ir_graph *g = x->g;
    const eft__ir_tensor *w = &g->t[op->in[1]];
    const float *a = AT(x, op->in[0]), *bias = op->in[2] >= 0 ? g->t[op->in[2]].data : NULL;
    const int64_t lda = LD(x, op->in[0]), m = x->rows, N = w->shape[0], K = w->shape[1];
    void *work = op->scratch_bytes ? (char *)x->arena + op->scratch_off : NULL;
    const eft__kernels *kt = x->kt;
    switch (op->kernel) {
    case EFT__K_QGEMM_Q8_0:
    case EFT__K_QGEMM_Q4_0: (void)eft__qgemm_f32(kt, tp, c, ldc, a, lda, m, w->dtype, w->data, N, K, bias, work); break;
    case EFT__K_GQGEMM: (void)eft__gqgemm_f32(kt, tp, c, ldc, a, lda, m, w->dtype, w->data, N, K, bias, work); break;
    case EFT__K_QX4_I8: (void)eft__qx4_gemm(kt, tp, c, ldc, a, lda, m, w->dtype, w->x4, N, K, bias, work); break;
    case EFT__K_QX4:
        if (m == 1) (void)eft__qx4_gemm_f32(kt, tp, c, ldc, a, lda, m, w->dtype, w->x4, N, K, bias, work);
        else (void)eft__qgemm_f32(kt, tp, c, ldc, a, lda, m, w->dtype, w->data, N, K, bias, work);
        break;
    default: eft__sgemm(kt, tp, c, ldc, a, lda, m, w->packed, bias); break;
    }
}

/* A group of MATMULs over the same rows (eft__pass_group_matmuls) in one pool run where a
 * multi-product driver takes them: the interleaved kernels (int8 activations, or one f32 row),
 * or the batch GEMV for a decode-sized batch with f32 activations; false to run them one by one. */
static bool matmul_group(const xctx *x, eft__threadpool *tp, const eft__ir_op *ops, int n) {
    const eft__ir_graph *g = x->g;
    const float *a = AT(x, ops[0].in[0]);
    const int64_t lda = LD(x, ops[0].in[0]), m = x->rows, K = g->t[ops[0].in[1]].shape[1];
    void *work = ops[0].scratch_bytes ? (char *)x->arena + ops[0].scratch_off : NULL;
    bool x4 = ops[0].kernel == EFT__K_QX4_I8 || (ops[0].kernel == EFT__K_QX4 && m == 1);
    for (int i = 1; i < n; i++) x4 = x4 && ops[i].kernel == ops[0].kernel;
    if (x4) {
        eft__qx4_job jobs[3];
        for (int i = 0; i < n; i++) {
            const eft__ir_tensor *w = &g->t[ops[i].in[1]];
            jobs[i] = (eft__qx4_job){AT(x, ops[i].out), w->shape[0], w->dtype, w->x4, w->shape[0],
                                     ops[i].in[2] >= 0 ? g->t[ops[i].in[2]].data : NULL};
        }
        if (ops[0].kernel == EFT__K_QX4_I8 ? eft__qx4_gemm_multi(x->kt, tp, a, lda, m, K, jobs, n, work)
                                           : eft__qx4_gemm_f32_multi(x->kt, tp, a, lda, m, K, jobs, n, work))
            return true;
    }
    bool gemv = m <= EFT__QGEMV_MAX_M;
    for (int i = 0; i < n; i++)
        gemv = gemv && (ops[i].kernel == EFT__K_QX4 || ops[i].kernel == EFT__K_GQGEMM ||
                        ops[i].kernel == EFT__K_QGEMM_Q8_0 || ops[i].kernel == EFT__K_QGEMM_Q4_0);
    if (gemv) {
        eft__qgemv_job jobs[3];
        for (int i = 0; i < n; i++) {
            const eft__ir_tensor *w = &g->t[ops[i].in[1]];
            jobs[i] = (eft__qgemv_job){AT(x, ops[i].out), w->shape[0], a, lda, w->dtype, w->data, w->shape[0], K,
                                       ops[i].in[2] >= 0 ? g->t[ops[i].in[2]].data : NULL};
        }
        if (eft__qgemm_f32_gemv_multi(x->kt, tp, m, jobs, n)) return true;
    }
    return false;
}

static void embed(const xctx *x) {
    const eft__ir_graph *g = x->g;
    const eft__ir_op *op = x->op;
    const eft__ir_tensor *wte = &g->t[op->in[2]];
    const int64_t C = wte->shape[1], M = x->run->M;
    float *out = AT(x, op->out);
    const int32_t *ids = at(x, op->in[0]), *pos = at(x, op->in[1]);
    const int32_t *types = op->in[4] >= 0 ? at(x, op->in[4]) : NULL;
    const float *wpe = op->in[3] >= 0 ? g->t[op->in[3]].data : NULL, *wtt = op->in[5] >= 0 ? g->t[op->in[5]].data : NULL;
    /* The caller checked every id against the vocabulary, so the gather cannot refuse. */
    if (wte->dtype == EFT_DTYPE_F32 || wte->dtype == EFT_DTYPE_F16 || wte->dtype == EFT_DTYPE_BF16) {
        (void)eft__embedding_gather(out, C, wte->data, wte->dtype, wte->shape[0], C, C, ids, M);
    } else {
        uint64_t row_bytes = 0;
        (void)eft__dtype_nbytes(wte->dtype, (uint64_t)C, &row_bytes);
        for (int64_t r = 0; r < M; r++)
            (void)eft__dequantize_row(wte->dtype, (const uint8_t *)wte->data + (uint64_t)ids[r] * row_bytes, out + r * C, C);
    }
    if (op->scale != 0 && op->scale != 1) x->kt->scale_f32(out, op->scale, M * C);
    for (int64_t r = 0; r < M && (wpe || wtt); r++) {
        if (wpe) x->kt->add(out + r * C, out + r * C, wpe + (int64_t)pos[r] * C, C);
        if (wtt) x->kt->add(out + r * C, out + r * C, wtt + (int64_t)types[r] * C, C);
    }
}

static int64_t rows_of(const eft__ir_run *run, int64_t d0) {
    return d0 == EFT__IR_DIM_B ? run->B : d0 == EFT__IR_DIM_M ? run->M : d0 == EFT__IR_DIM_R ? run->R : d0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void eft__ir_exec(const eft__ir_graph *g, const eft__kernels *kt, eft__threadpool *tp, void *arena,
                  const eft__ir_run *run, int op0, int op1) {
    for (int o = op0; o < op1; o++) {
        const int o_first = o;
        const double t0 = run->prof_s ? now_s() : 0;
        const eft__ir_op *op = &g->ops[o];
        const eft__ir_tensor *out = &g->t[op->out];
        xctx x = {.g = g, .op = op, .kt = kt, .arena = arena, .run = run, .rows = rows_of(run, out->shape[0])};
        if (x.rows == 0) continue;
        switch (op->kind) {
        case EFT__OP_EMBED: embed(&x); break;
        case EFT__OP_MATMUL: {
            /* A group runs as one dispatch when the kernels allow, else op by op; either way
             * each member's activation follows. */
            const int n = op->group > 1 && o + op->group <= op1 ? op->group : 1;
            bool done = n > 1 && matmul_group(&x, tp, op, n);
            for (int i = 0; i < n; i++) {
                xctx xi = x;
                xi.op = &g->ops[o + i];
                if (!done) matmul(&xi, tp, xi.op, AT(&xi, xi.op->out), g->t[xi.op->out].shape[1]);
                if (xi.op->act != EFT__IR_ACT_NONE) run_rows(&xi, tp);
            }
            o += n - 1;
            break;
        }
        case EFT__OP_ATTENTION: attention(&x, tp); break;
        case EFT__OP_CACHE_ATTENTION: cache_attention(&x, tp); break;
        case EFT__OP_FIRST_ROW: {
            const int64_t C = out->shape[1];
            const float *in = AT(&x, op->in[0]);
            float *o2 = AT(&x, op->out);
            for (int b = 0; b < run->B; b++) memcpy(o2 + b * C, in + (int64_t)run->off[b] * C, sizeof(float) * (size_t)C);
            break;
        }
        default: run_rows(&x, tp); break;
        }
        if (run->prof_s) {
            run->prof_s[o_first] += now_s() - t0;
            run->prof_n[o_first]++;
        }
    }
}
