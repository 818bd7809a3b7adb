/*
 * ir.h — the graph IR: a list of ops over named tensors (weights, inputs, activations, outputs,
 * retained state) with static shapes, except for one symbolic row dimension: M, the ragged token
 * count of a run (every valid token of every sequence, back to back, M <= maxB maxT), B, the
 * sequences of a run (B <= maxB), or R, the rows a run asks logits for (R <= M). A builder per
 * architecture family (models/) emits it, passes (passes/) rewrite it, eft__ir_plan places every
 * activation in one arena for (maxB, maxT), eft__ir_plan_state places the retained state (a
 * decoder's KV cache) for (slots, ctx), and eft__ir_exec walks the op list on a thread pool,
 * allocating nothing. A graph also reads and writes itself as JSON, so a compiled program
 * carries it and a load runs no pass.
 */
#ifndef EFT_GRAPH_IR_H
#define EFT_GRAPH_IR_H

#include "core/core.h"

struct eft__kernels;
struct eft__threadpool;
struct json_t;

#define EFT__IR_NAME_MAX 96 /* = EFT__PROGRAM_NAME_MAX: weights are saved as blobs by name */
#define EFT__IR_MAX_IN 4
#define EFT__IR_DIM_M (-1) /* shape[0] of a tensor with one row per token of the run */
#define EFT__IR_DIM_B (-2) /* shape[0] of a tensor with one row per sequence of the run */
#define EFT__IR_DIM_R (-3) /* shape[0] of a tensor with one row per row the run asks logits for */

typedef enum eft__ir_tkind {
    EFT__IR_WEIGHT, /* constant data: borrowed from the checkpoint or a program, or owned (a pass made it) */
    EFT__IR_INPUT,  /* written by the caller before a run (token ids, positions, types) */
    EFT__IR_ACT,    /* written and read by ops, placed in the arena */
    EFT__IR_OUTPUT, /* an activation that stays readable after the run */
    /* Retained state: kept from run to run outside the arena, read and written in place by the
     * op that owns it (CACHE_ATTENTION). Shape [NKV, HS]: what one token leaves for one slot.
     * The plan (eft__ir_plan_state) gives it slots x ctx such rows, head-major,
     * [slot][NKV][ctx][HS] (QEfficient's [slots, kv_heads, ctx_len, head_dim]: one head's keys
     * are one stream for decode attention), of dtype F32, F16 or I8; an I8 state is followed by
     * its f32 scales, one per row of HS, [slot][NKV][ctx]. */
    EFT__IR_STATE,
} eft__ir_tkind;

typedef struct eft__ir_tensor {
    char name[EFT__IR_NAME_MAX];
    eft__ir_tkind kind;
    eft_dtype dtype;
    int ndim;         /* 1 or 2 */
    int64_t shape[2]; /* shape[0] may be EFT__IR_DIM_M or _B for inputs and activations */
    /* A column view of another activation (fused QKV's q, k and v): no storage of its own;
     * rows are ld elements apart in view_of's storage, starting at column col0. */
    int view_of;      /* tensor index or -1 */
    int64_t col0, ld; /* ld: row stride in elements (shape[1] when not a view) */
    /* Weights. */
    const void *data;
    void *owned;      /* freed with the graph */
    uint64_t nbytes;
    void *packed;     /* eft__sgemm_packed, made by eft__ir_pack for the SGEMM kernels */
    bool external;    /* read from the model at load, not saved in a program (word embeddings) */
    /* Q8_0/Q4_0/Q4_1 weights under kernel QX4 or QX4_I8: the rows four-row interleaved
     * (eft__qx4_pack), besides data. Borrowed: whoever bound data owns it. */
    const void *x4;
    /* An output whose storage each run supplies (eft__ir_run.bound) instead of the arena: a
     * decoder's logits, written straight into the caller's array. At most one per graph, with
     * one row per row asked for (EFT__IR_DIM_R). */
    bool bound;
    /* The plan. */
    int64_t offset;   /* bytes into the arena; -1 when not placed */
    int first, last;  /* ops that write it first and read it last */
} eft__ir_tensor;

typedef enum eft__ir_opkind {
    EFT__OP_EMBED,     /* in: ids [M] I32, pos [M] I32, wte [V, C], wpe [P, C], (types [M] I32, wtt [NT, C]) -> [M, C] */
    EFT__OP_MATMUL,    /* in: x [R, K], w [N, K], (bias [N]) -> [R, N] = x w^T (+ bias), then act */
    EFT__OP_BIAS,      /* in: x [R, N], bias [N] -> [R, N] */
    EFT__OP_ACT,       /* in: x [R, N] -> act(x) */
    EFT__OP_ADD,       /* in: a [R, N], b [R, N] -> a + b */
    EFT__OP_LAYERNORM, /* in: x [R, C], w [C], b [C] -> LayerNorm(x) */
    EFT__OP_ADD_LN,    /* in: a [R, C], r [R, C], w [C], b [C] -> LayerNorm(a + r) */
    EFT__OP_ATTENTION, /* in: q, k, v [M, NH HS] (views allowed), (rel [buckets, NH]) -> [M, NH HS], per sequence */
    EFT__OP_FIRST_ROW, /* in: x [M, C] -> [B, C]: each sequence's first token */
    /* Decoders. */
    EFT__OP_RMSNORM,   /* in: x [R, N], w [C] -> x / rms(x) * (w + norm_add), over each run of C
                        * columns (C = N, or the head size for per-head norms); eps */
    EFT__OP_ROPE,      /* in: x [M, heads HS], pos [M] I32, table [n_pos, rot] -> x rotated at its
                        * positions; table: cos, sin pairs (eft__rope_table); rope_layout */
    EFT__OP_GLU,       /* in: gate [R, N], up [R, N] -> act(gate) * up */
    EFT__OP_CACHE_ATTENTION, /* in: q [M, NH HS], k, v [M, NKV HS], pos [M] I32, kstate, vstate
                        * [NKV, HS] -> [M, NH HS]: writes each token's k and v into its slot's
                        * state at its position, then attends, causally (and within window), to
                        * the slot's positions 0 .. pos. A run's groups (eft__ir_run: B, off,
                        * slot) are each one slot's consecutive positions. heads, kv_heads,
                        * scale, window, softcap */
    EFT__OP_GATHER,    /* in: x [M, C], rows [R] I32 -> [R, C]: x's rows rows[0 .. R) */
    EFT__OP_COUNT
} eft__ir_opkind;

/* Activations the IR knows; EFT__IR_ACT_NONE for a plain product. */
typedef enum eft__ir_act {
    EFT__IR_ACT_NONE,
    EFT__IR_ACT_GELU,
    EFT__IR_ACT_GELU_TANH,
    EFT__IR_ACT_SILU,
    EFT__IR_ACT_RELU,
    EFT__IR_ACT_QUICK_GELU,
    EFT__IR_ACT_TANH,
    EFT__IR_ACT_SOFTCAP, /* cap tanh(x / cap), cap = the op's scale (Gemma's logits) */
    EFT__IR_ACT_COUNT
} eft__ir_act;

/* Kernels an op can be given (passes/kernels.c chooses). */
typedef enum eft__ir_kernel {
    EFT__K_NONE,
    EFT__K_ROWS,          /* row-wise ops spread over the pool */
    EFT__K_SGEMM_F32,     /* eft__sgemm on f32 panels */
    EFT__K_SGEMM_F16,     /* eft__sgemm on f16 panels, widened in the micro-kernel */
    EFT__K_SGEMM_BF16,
    EFT__K_QGEMM_Q8_0,    /* eft__qgemm_f32: int8 blocks, f32 activations */
    EFT__K_QGEMM_Q4_0,
    EFT__K_ATTN_FLASH,    /* eft__attention */
    EFT__K_ATTN_RELBIAS,  /* plain softmax(q k^T s + bias[j - i]) v (MPNet) */
    EFT__K_GQGEMM,        /* eft__gqgemm_f32: the group-quantised family (core/quant.h), f32 activations */
    /* Q8_0/Q4_0/Q4_1 with their four-row interleaved copy (tensor x4), f32 activations: one row
     * through the three-plane exact product (eft__qx4_gemm_f32), a decode batch through the
     * batch GEMV, more rows through eft__qgemm_f32 on the file layout. */
    EFT__K_QX4,
    EFT__K_QX4_I8,        /* the same weights, activations quantised to int8 (eft__qx4_gemm) */
    EFT__K_ATTN_CACHE,    /* CACHE_ATTENTION: eft__attention_decode(_batch) for groups of up to
                           * four tokens, the flash kernel over the cache for longer ones */
    EFT__K_COUNT
} eft__ir_kernel;

typedef struct eft__ir_op {
    eft__ir_opkind kind;
    int in[EFT__IR_MAX_IN + 2]; /* tensor indices, -1 = absent (optional inputs) */
    int n_in;
    int out;
    eft__ir_act act;     /* MATMUL, ACT */
    float eps;           /* LAYERNORM, ADD_LN */
    float scale;         /* ATTENTION */
    int heads;           /* ATTENTION: NH */
    int rel_buckets, rel_max_distance; /* ATTENTION with a relative-position table */
    int kv_heads;        /* CACHE_ATTENTION: NKV (heads % kv_heads == 0) */
    int64_t window;      /* CACHE_ATTENTION: sliding window, 0 = none */
    float softcap;       /* CACHE_ATTENTION: cap tanh(score / cap) before the softmax, 0 = none */
    float norm_add;      /* RMSNORM: added to the weight (Gemma's 1 + w) */
    int rope_layout;     /* ROPE: eft__rope_layout */
    /* MATMUL: this op and the next group - 1 (MATMULs over the same input, set by
     * eft__pass_group_matmuls) run as one dispatch; 0 or 1 = alone. */
    int group;
    eft__ir_kernel kernel;
    bool head;           /* part of the classification head: runs only for classify */
    uint64_t scratch_bytes; /* the plan: the kernel's scratch, live during this op only */
    int64_t scratch_off;
} eft__ir_op;

#define EFT__IR_MAX_PASSES 8

typedef struct eft__ir_graph {
    eft__ir_tensor *t;
    int n_t, cap_t;
    eft__ir_op *ops;
    int n_ops, cap_ops;
    const char *passes[EFT__IR_MAX_PASSES]; /* names of the passes applied, in order (static strings) */
    int n_passes;
    /* The plan (eft__ir_plan). */
    int max_batch, max_tokens, n_threads;
    uint64_t arena_bytes;
    /* The state plan (eft__ir_plan_state): each STATE tensor's offset is into a buffer of
     * state_bytes that the caller keeps from run to run. */
    int state_slots;
    int64_t state_ctx;
    uint64_t state_bytes;
} eft__ir_graph;

eft__ir_graph *eft__ir_new(void);
void eft__ir_free(eft__ir_graph *g); /* NULL is a no-op; frees owned weights and packed panels */

/* Adds a tensor (ndim 1: shape[1] ignored); returns its index, or -1 out of memory (err says). */
int eft__ir_tensor_add(eft__ir_graph *g, const char *name, eft__ir_tkind kind, eft_dtype dtype, int ndim,
                       int64_t d0, int64_t d1, eft__error *err);
/* A weight over borrowed bytes. */
int eft__ir_weight(eft__ir_graph *g, const char *name, eft_dtype dtype, int ndim, int64_t d0, int64_t d1,
                   const void *data, eft__error *err);
/* Appends an op over the given inputs (n <= EFT__IR_MAX_IN + 2, -1 for an absent optional one);
 * returns its index or -1. */
int eft__ir_op_add(eft__ir_graph *g, eft__ir_opkind kind, const int *in, int n, int out, eft__error *err);
int eft__ir_find(const eft__ir_graph *g, const char *name); /* -1: none */
/* Ops that read tensor t. */
int eft__ir_uses(const eft__ir_graph *g, int t);
/* Removes ops marked dead (kind == EFT__OP_COUNT) and tensors no op touches any more. */
void eft__ir_compact(eft__ir_graph *g);

/* Checks the graph: indices in range, every input written before it is read, every activation
 * written once, inputs and weights never written, each op's shapes and dtypes as its kind needs,
 * views inside their base. EFT_ERR_FORMAT naming the op and tensor. Passes keep a graph valid;
 * a graph read from a program is validated before anything runs it. */
eft_status eft__ir_validate(const eft__ir_graph *g, eft__error *err);

/* Bytes of a tensor's storage for r rows (symbolic dims) — weights: their nbytes. */
uint64_t eft__ir_tensor_bytes(const eft__ir_tensor *t, int64_t rows);
/* Widens n elements of F32, F16 or BF16 weight bytes (any alignment: checkpoint views) into out;
 * false for another dtype. */
bool eft__ir_widen(float *out, const void *data, eft_dtype dtype, uint64_t n);
const char *eft__ir_op_name(eft__ir_opkind k);
const char *eft__ir_kernel_name(eft__ir_kernel k);
const char *eft__ir_act_name(eft__ir_act a);

/* ---------------------------------------------------------------------------------------------
 * Passes (passes/): each rewrites g in place, keeps it valid and notes its name in g->passes.
 * ------------------------------------------------------------------------------------------- */

/* MATMUL + BIAS -> MATMUL with bias; MATMUL + ACT -> MATMUL with act; ADD + LAYERNORM -> ADD_LN,
 * wherever the first op's output has no other reader. */
eft_status eft__pass_fold(eft__ir_graph *g, eft__error *err);
/* MATMULs that read the same input, with no activation and all or none with a bias (attention's
 * Q, K and V): one MATMUL over the stacked [sum N, K] weight (f32), whose output the old outputs
 * become column views of. */
eft_status eft__pass_fuse_matmuls(eft__ir_graph *g, eft__error *err);
/* Every MATMUL weight converted to dtype: F32, F16, BF16 (rounded to nearest even), Q8_0 or Q4_0
 * (blocks of 32, eft__quantize_q8_0 / _q4_0), or another member of the group-quantised family
 * (Q4_1, I4_G*, U4_G*, I8_G*: eft__quantize_gq), or I8_CH (int8 per output channel, stored as
 * the int8 member with the largest group dividing K). A matrix whose K is not a multiple of the
 * group takes the largest group of the same kind that divides K (eft__gq_fit), and stays in F32
 * when not even 32 does (the executor has no block kernel for it). */
eft_status eft__pass_precision(eft__ir_graph *g, eft_dtype dtype, eft__error *err);
/* Records the kernel each op runs (a MATMUL already given one, by a builder that prepared its
 * weights for it, keeps it). */
eft_status eft__pass_kernels(eft__ir_graph *g, eft__error *err);
/* Runs of consecutive MATMULs over the same input whose kernels have a multi-product driver
 * (QX4, QX4_I8, GQGEMM, QGEMM_*), up to three (attention's q, k, v; gate and up), marked to run
 * as one dispatch (op.group). After eft__pass_kernels. */
eft_status eft__pass_group_matmuls(eft__ir_graph *g, eft__error *err);

/* ---------------------------------------------------------------------------------------------
 * Plan, pack and run (exec.c)
 * ------------------------------------------------------------------------------------------- */

/* Places every input and activation (and each op's scratch) in one arena for max_batch x
 * max_tokens rows with n_threads workers: a tensor lives from the op that writes it to the last
 * op that reads it (outputs and inputs: the whole run), and tensors whose lives do not overlap
 * share bytes. Sets g->arena_bytes and each tensor's offset. */
eft_status eft__ir_plan(eft__ir_graph *g, int max_batch, int max_tokens, int n_threads, eft__error *err);
/* Places the STATE tensors for slots x ctx positions in one state buffer (g->state_bytes, each
 * tensor's offset into it); before eft__ir_plan, whose attention scratch depends on ctx. */
eft_status eft__ir_plan_state(eft__ir_graph *g, int slots, int64_t ctx, eft__error *err);
/* Bytes of one STATE tensor's storage for the planned slots and ctx. */
uint64_t eft__ir_state_bytes(const eft__ir_graph *g, const eft__ir_tensor *t);
/* Packs every MATMUL weight whose kernel is an SGEMM into the kernel's panels, dropping the
 * unpacked bytes. (A loaded program's weights are panels already: the loader borrows them.) */
eft_status eft__ir_pack(eft__ir_graph *g, eft__error *err);

/* Bytes of a packed weight's panels (what a program stores for it). */
uint64_t eft__ir_packed_bytes(const eft__ir_tensor *w);

/* One run's ragged layout: B sequences, sequence b on rows off[b] .. off[b + 1] of the M rows.
 * A decoder's run: B groups, each one slot's consecutive positions, group b in slot slot[b]. */
typedef struct eft__ir_run {
    int B;
    int64_t M;
    const int32_t *off; /* [B + 1] */
    const int32_t *slot; /* [B]: graphs with state */
    int64_t R;          /* rows of EFT__IR_DIM_R tensors */
    void *state;        /* the state buffer (g->state_bytes, 64-byte aligned) */
    void *bound;        /* the storage of the bound output, R rows */
    /* Optional profile, per op index (g->n_ops each): the run adds each op's wall time and one
     * count; a group of MATMULs run as one dispatch counts on its first op. */
    double *prof_s;
    int64_t *prof_n;
} eft__ir_run;

/* Runs ops [op0, op1) over arena (g->arena_bytes, 64-byte aligned). Inputs must be in place. */
void eft__ir_exec(const eft__ir_graph *g, const struct eft__kernels *kt, struct eft__threadpool *tp, void *arena,
                  const eft__ir_run *run, int op0, int op1);
/* Where tensor t lives in arena. */
static inline void *eft__ir_at(const eft__ir_graph *g, void *arena, int t) {
    const eft__ir_tensor *x = &g->t[t];
    if (x->view_of >= 0) return (char *)arena + g->t[x->view_of].offset + x->col0 * 4;
    return (char *)arena + x->offset;
}

/* ---------------------------------------------------------------------------------------------
 * Serialisation (ir_json.c)
 * ------------------------------------------------------------------------------------------- */

/* {"tensors": [...], "ops": [...], "passes": [...], "plan": {...}}: weights by name, without
 * their bytes (a program stores those as blobs). NULL out of memory. */
struct json_t *eft__ir_to_json(const eft__ir_graph *g);
/* The graph j describes, validated; weights have no data yet (the caller binds them). */
eft_status eft__ir_from_json(const struct json_t *j, eft__ir_graph **out, eft__error *err);

#endif /* EFT_GRAPH_IR_H */
