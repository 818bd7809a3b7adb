/*
 * decoder.c — causal LMs (Llama, Mistral, Qwen2/3, Gemma 2/3, Phi-3, GPT-2) over a Hugging Face
 * folder or a GGUF file: weights checked and converted once at build (quantised GGUF blocks kept
 * and multiplied by f32 activations, K-quants repacked into the block types the kernels read),
 * then the forward pass emitted as a graph (graph/ir.h) over those weights, with the KV cache as
 * its retained state, planned once (arena and cache) and run by the graph executor on a ragged
 * batch of (slot, position) tokens: nothing is allocated per call, and logits are computed only
 * for the rows asked for.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/kernels.h"

#include "api/model_internal.h"
#include "core/json.h"
#include "formats/safetensors.h"
#include "graph/ir.h"
#include "graph/program.h"

#include "models/decoder.h"

/* ---------------------------------------------------------------------------------------------
 * The decoder
 * ------------------------------------------------------------------------------------------- */

/* One Linear y = x W^T + b, W [N, K], in whichever form its kernel reads. */
typedef struct lin {
    int64_t n, k;
    eft_dtype qt;          /* EFT_DTYPE_COUNT: packed for eft__sgemm; else Q8_0/Q4_0/Q4_1 rows in q */
    eft__sgemm_packed p;
    const void *q;         /* [N][K/32] blocks: borrowed from the file mapping, or q_owned */
    void *q_owned;
    void *x4;              /* q's rows four-row interleaved (eft__qx4_pack) for decode, or NULL: part of
                            * the decoder's x4 (interleave_all) */
    float *b;              /* [N] or NULL */
} lin;

typedef struct dec_layer {
    lin qkv[3];   /* q, k, v (n_qkv = 3), or one fused [QD + 2 KD, C] (n_qkv = 1) */
    int n_qkv;
    lin o;        /* [C, QD] */
    lin gu[2];    /* gate, up (n_gu = 2), one fused [2I, C] (n_gu = 1), or GPT-2's up alone */
    int n_gu;
    lin down;     /* [C, I] */
    float *attn_norm_w, *attn_norm_b;   /* [C]: before attention */
    float *post_attn_w;                 /* [C]: Gemma's norm of the attention output, or NULL */
    float *ffn_norm_w, *ffn_norm_b;     /* [C]: before the MLP */
    float *post_ffn_w;                  /* [C]: Gemma's norm of the MLP output, or NULL */
    float *q_norm, *k_norm;             /* [HS]: per-head RMSNorm (qwen3, gemma3), or NULL */
    const eft__rope_table *rope;        /* NULL for GPT-2 */
    int64_t window;                     /* sliding window of this layer, 0 = full */
    float scale;
} dec_layer;

struct eft__decoder {
    eft__arch arch;
    int64_t C, NH, NKV, HS, QD, KD, QW, I, L, V, P; /* QD = NH HS, KD = NKV HS, QW = QD + 2 KD */
    float eps, norm_off, embed_scale, final_softcap, attn_softcap;
    eft__norm norm;
    eft__act act;
    bool gated;          /* act(gate) * up; GPT-2 has act(up) */
    eft__rope_layout rope_layout;

    const eft__tensor_view *wte; /* [V, C], read in place: plain rows gathered, quantised rows dequantised */
    uint64_t wte_row_bytes;
    float *wpe;                  /* GPT-2: [P, C] */
    dec_layer *layers;
    float *out_norm_w, *out_norm_b; /* [C] */
    lin head;                    /* [V, C] */
    eft__rope_table rope_global, rope_local;
    bool has_rope_local;

    /* The graph (graph/ir.h) the forward pass runs: its weights are the matrices and vectors
     * above, its retained state the KV cache, planned for slots x ctx positions and max_tokens
     * rows per call. */
    int slots;
    int64_t ctx;
    eft_dtype kv_dtype;
    int maxT, nth;
    const eft__kernels *kt;
    eft__threadpool *tp;
    bool int8_act; /* quantised weights through eft__qx4_gemm (int8 activations) */
    eft__ir_graph *g;
    void *arena;   /* g->arena_bytes */
    void *state;   /* g->state_bytes: the KV cache */
    void *x4;      /* every lin's interleaved copy (interleave_all) */
    double *prof_s;   /* [g->n_ops] or NULL: the profile (eft__decoder_profile_enable) */
    int64_t *prof_n;
    int t_ids, t_pos, t_rows; /* the graph's inputs */
    int32_t *a_slot;  /* [maxT] slot of each active row */
    int32_t *row_of;  /* [maxT] input index -> active row, -1 for padding */
    int32_t *off, *gslot; /* [maxT + 1], [maxT]: the call's groups (one slot's consecutive positions) */

    /* Compiled programs: every matrix and vector the build made, by blob name, for
     * eft__decoder_save; and, for a decoder loaded from a program, that program, whose packed and
     * quantised matrices are then used in place (vectors are copied: they are small). */
    struct dec_rec *recs;
    int n_recs, cap_recs;
    const eft__program *prog;
};

typedef struct dec_rec {
    char name[EFT__PROGRAM_NAME_MAX];
    eft_dtype dtype;
    const void *data;
    uint64_t size;
} dec_rec;

/* The blob name of an output projection tied to the embedding table (no tensor of its own). */
#define TIED_HEAD "output|tied"

eft__decoder_params eft__decoder_params_default(void) {
    const char *q = getenv("EFT_QGEMM");
    eft__decoder_params p = {.n_slots = 1, .ctx_len = 0, .max_tokens = 128, .n_threads = 1,
                             .weight_dtype = EFT_DTYPE_COUNT, .kv_dtype = EFT_DTYPE_F32, .kernels = NULL,
                             .int8_activations = q && !strcmp(q, "int8")};
    return p;
}

int64_t eft__decoder_vocab_size(const eft__decoder *d) { return d->V; }
int64_t eft__decoder_ctx_len(const eft__decoder *d) { return d->ctx; }
int eft__decoder_slots(const eft__decoder *d) { return d->slots; }
int eft__decoder_max_tokens(const eft__decoder *d) { return d->maxT; }

bool eft__decoder_profile_enable(eft__decoder *d, bool on) {
    if (!on || !d->prof_s) {
        eft__free(d->prof_s);
        eft__free(d->prof_n);
        d->prof_s = NULL, d->prof_n = NULL;
        if (!on) return true;
        d->prof_s = eft__calloc((size_t)d->g->n_ops, sizeof *d->prof_s);
        d->prof_n = eft__calloc((size_t)d->g->n_ops, sizeof *d->prof_n);
        if (!d->prof_s || !d->prof_n) {
            eft__decoder_profile_enable(d, false);
            return false;
        }
        return true;
    }
    memset(d->prof_s, 0, sizeof *d->prof_s * (size_t)d->g->n_ops);
    memset(d->prof_n, 0, sizeof *d->prof_n * (size_t)d->g->n_ops);
    return true;
}

int eft__decoder_profile(const eft__decoder *d, eft_op_time *out, int max) {
    if (!d->prof_s) return 0;
    const eft__ir_graph *g = d->g;
    for (int o = 0; o < g->n_ops && o < max; o++) {
        const eft__ir_op *op = &g->ops[o];
        out[o] = (eft_op_time){eft__ir_op_name(op->kind), g->t[op->out].name, d->prof_s[o], (long)d->prof_n[o],
                               op->kind == EFT__OP_MATMUL && op->group > 1 ? op->group : 1};
    }
    return g->n_ops;
}

/* ---------------------------------------------------------------------------------------------
 * Build: finding, checking and converting weights
 * ------------------------------------------------------------------------------------------- */

typedef struct builder {
    const eft_model *m;
    eft_dtype want;  /* the caller's weight_dtype */
    eft__error *err;
    eft__decoder *d; /* records what is made; its prog, when set, is where matrices come from */
} builder;

static void shape_str(char *buf, size_t n, const int64_t *shape, int ndim) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static bool is_plain(eft_dtype t) { return t == EFT_DTYPE_F32 || t == EFT_DTYPE_F16 || t == EFT_DTYPE_BF16; }
static bool is_kernel_q(eft_dtype t) { return t == EFT_DTYPE_Q8_0 || t == EFT_DTYPE_Q4_0 || t == EFT_DTYPE_Q4_1; }
/* The rest of the group-quantised family (core/quant.h: I4_G*, U4_G*, I8_G*), and the per-channel
 * int8 request, which eft__gqgemm_f32 runs; only ever made from f32 here, never read from a file. */
static bool is_gq_only(eft_dtype t) {
    return t == EFT_DTYPE_I8_CH || (eft__gq_layout_of(t, NULL) && !is_kernel_q(t));
}
static bool is_block_q(eft_dtype t) {
    return t >= EFT_DTYPE_Q4_0 && t <= EFT_DTYPE_Q8_K;
}

/* The tensor name, shaped [d0] (d1 < 0) or [d0, d1]; NULL and a message when missing or wrong.
 * optional: a missing tensor is no error (NULL with err untouched). */
static const eft__tensor_view *want(builder *b, const char *name, int64_t d0, int64_t d1, bool optional) {
    const eft__tensor_view *t = eft__model_find_tensor(b->m, name);
    int64_t shape[2] = {d0, d1};
    int ndim = d1 < 0 ? 1 : 2;
    char ws[64], gs[160];
    shape_str(ws, sizeof ws, shape, ndim);
    if (!t) {
        if (!optional) eft__fail(b->err, EFT_ERR_NOT_FOUND, "%s: tensor '%s' %s is missing", b->m->path, name, ws);
        return NULL;
    }
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        shape_str(gs, sizeof gs, t->shape, t->ndim);
        eft__fail(b->err, EFT_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", b->m->path, name, gs, ws);
        return NULL;
    }
    if (!is_plain(t->dtype) && !is_block_q(t->dtype)) {
        eft__fail(b->err, EFT_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s; the decoder reads F32, F16, BF16 "
                  "and GGUF block types", b->m->path, name, eft_dtype_name(t->dtype));
        return NULL;
    }
    uint64_t need;
    if (!eft__dtype_nbytes(t->dtype, t->n_elems, &need) || need > t->nbytes) {
        eft__fail(b->err, EFT_ERR_FORMAT, "%s: tensor '%s' of type %s holds %llu bytes, too few for %s", b->m->path,
                  name, eft_dtype_name(t->dtype), (unsigned long long)t->nbytes, ws);
        return NULL;
    }
    return t;
}

/* All of t as owned f32 (plain types converted, block types dequantised). */
static float *view_f32(builder *b, const eft__tensor_view *t) {
    float *out = eft__malloc_array((size_t)t->n_elems, sizeof(float));
    if (!out) {
        eft__fail(b->err, EFT_ERR_OUT_OF_MEMORY, "out of memory converting '%s'", t->name);
        return NULL;
    }
    if (is_plain(t->dtype)) {
        if (eft__tensor_to_f32(t, out, t->n_elems, b->err) == EFT_OK) return out;
    } else if (eft__dequantize_row(t->dtype, t->data, out, (int64_t)t->n_elems)) {
        return out;
    } else {
        eft__fail(b->err, EFT_ERR_UNSUPPORTED, "%s: cannot dequantize '%s' of type %s", b->m->path, t->name,
                  eft_dtype_name(t->dtype));
    }
    eft__free(out);
    return NULL;
}

/* A small vector (norm weight, bias) as owned f32; NULL for a missing optional one. */
static float *prog_vec(builder *b, const char *name, int64_t n, bool optional, bool *ok);
static bool record(builder *b, const char *name, eft_dtype dtype, const void *data, uint64_t size);

static float *want_vec(builder *b, const char *name, int64_t n, bool optional, bool *ok) {
    if (b->d->prog) return prog_vec(b, name, n, optional, ok);
    const eft__tensor_view *t = want(b, name, n, -1, optional);
    if (!t) {
        if (!optional || b->err->status != EFT_OK) *ok = false;
        return NULL;
    }
    float *v = view_f32(b, t);
    if (!v || !record(b, name, EFT_DTYPE_F32, v, (uint64_t)n * sizeof(float))) *ok = false;
    return v;
}

/* Q4_K super-block -> 8 Q4_1 blocks: each sub-block of 32 has x = d sc q - dmin m, which is Q4_1's
 * x = d' q + m' with d' = d sc and m' = -dmin m rounded to f16 (2^-11 relative), and nibbles
 * re-ordered from Q4_K's (sub-blocks 2j and 2j+1 share bytes, low and high) to Q4_1's (elements
 * 0-15 low, 16-31 high). */
static void q4k_to_q4_1(eft__block_q4_1 *out, const eft__block_q4_k *in) {
    const float d = eft__f16_to_f32(in->d), dmin = eft__f16_to_f32(in->dmin);
    const uint8_t *s = in->scales;
    for (int j = 0; j < 8; j++) {
        int sc, mn;
        if (j < 4) {
            sc = s[j] & 63;
            mn = s[j + 4] & 63;
        } else {
            sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
            mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
        const uint8_t *q = in->qs + 32 * (j / 2);
        int shift = (j % 2) * 4;
        eft__block_q4_1 *o = &out[j];
        o->d = eft__f32_to_f16(d * (float)sc);
        o->m = eft__f32_to_f16(-dmin * (float)mn);
        for (int i = 0; i < 16; i++) {
            uint8_t lo = (q[i] >> shift) & 0xF, hi = (q[i + 16] >> shift) & 0xF;
            o->qs[i] = (uint8_t)(lo | (hi << 4));
        }
    }
}

/* Q5_0 -> Q8_0 exactly: x = d (q - 16) with q < 32 is d times an int8. The 5-bit values are read
 * back from the reference dequantizer, so the bit layout lives in one place. */
static void q5_0_to_q8_0(eft__block_q8_0 *out, const eft__block_q5_0 *in) {
    float x[EFT__QK];
    eft__dequantize_row(EFT_DTYPE_Q5_0, in, x, EFT__QK);
    float d = eft__f16_to_f32(in->d);
    out->d = in->d;
    for (int i = 0; i < EFT__QK; i++) out->qs[i] = (int8_t)(d != 0.0f ? lrintf(x[i] / d) : 0);
}

static bool lin_alloc_q(builder *b, lin *l, eft_dtype qt, const char *name) {
    uint64_t bytes;
    if (!eft__dtype_nbytes(qt, (uint64_t)(l->n * l->k), &bytes) || !(l->q_owned = eft__malloc_huge(bytes))) {
        eft__fail(b->err, EFT_ERR_OUT_OF_MEMORY, "out of memory converting '%s'", name);
        return false;
    }
    l->q = l->q_owned;
    l->qt = qt;
    return true;
}

/* Packs f32 w[N, K] for the wanted type (F32 also for COUNT; F16/BF16 kept 16-bit; Q types
 * quantised). */
static bool lin_from_f32(builder *b, lin *l, const float *w, eft_dtype want, const char *name) {
    const int64_t n = l->n, k = l->k;
    if (is_gq_only(want)) {
        /* Groups shrink to ones that divide K (eft__gq_fit); per-channel int8 keeps one scale a row. */
        eft_dtype to = eft__gq_fit(want, k);
        if (to == EFT_DTYPE_F32)
            return eft__fail(b->err, EFT_ERR_UNSUPPORTED, "%s: '%s' has %lld input channels, not a multiple of 32, "
                             "so it cannot be quantised to %s", b->m->path, name, (long long)k, eft_dtype_name(want)),
                   false;
        if (!lin_alloc_q(b, l, to, name)) return false;
        if (want == EFT_DTYPE_I8_CH) eft__quantize_gq_i8_channel(to, l->q_owned, w, n, k);
        else eft__quantize_gq(to, l->q_owned, w, n, k);
        return true;
    }
    if (is_kernel_q(want)) {
        if (k % EFT__QK != 0)
            return eft__fail(b->err, EFT_ERR_UNSUPPORTED, "%s: '%s' has %lld input channels, not a multiple of 32, "
                             "so it cannot be quantised to %s", b->m->path, name, (long long)k, eft_dtype_name(want)),
                   false;
        if (!lin_alloc_q(b, l, want, name)) return false;
        if (want == EFT_DTYPE_Q8_0) eft__quantize_q8_0(l->q_owned, w, n, k);
        else if (want == EFT_DTYPE_Q4_0) eft__quantize_q4_0(l->q_owned, w, n, k);
        else eft__quantize_q4_1(l->q_owned, w, n, k);
        return true;
    }
    l->qt = EFT_DTYPE_COUNT;
    eft_status s;
    if (want == EFT_DTYPE_F16 || want == EFT_DTYPE_BF16) {
        uint16_t *h = eft__malloc_array((size_t)(n * k), sizeof(uint16_t));
        if (!h) return eft__fail(b->err, EFT_ERR_OUT_OF_MEMORY, "out of memory converting '%s'", name), false;
        for (int64_t i = 0; i < n * k; i++) h[i] = want == EFT_DTYPE_F16 ? eft__f32_to_f16(w[i]) : eft__f32_to_bf16(w[i]);
        s = eft__sgemm_pack_half(&l->p, want, h, n, k, k, b->err);
        eft__free(h);
    } else {
        s = eft__sgemm_pack(&l->p, w, n, k, k, b->err);
    }
    if (s != EFT_OK) eft__error_prefix(b->err, "packing '%s'", name);
    return s == EFT_OK;
}

/* Converts the tensor t, holding W [N, K] (or W^T [K, N] when transposed, GPT-2's Conv1D), to the
 * kernels' form: quantised GGUF rows stay as they are when the caller keeps the weights. */
static bool lin_from_view(builder *b, lin *l, const eft__tensor_view *t, int64_t n, int64_t k, bool transposed) {
    l->n = n;
    l->k = k;
    eft_dtype want = b->want, src = t->dtype;
    if (!transposed && (want == EFT_DTYPE_COUNT || want == src) && is_kernel_q(src)) {
        if (k % EFT__QK != 0)
            return eft__fail(b->err, EFT_ERR_FORMAT, "%s: '%s' is %s with %lld input channels", b->m->path, t->name,
                             eft_dtype_name(src), (long long)k), false;
        l->qt = src;
        l->q = t->data;
        return true;
    }
    if (!transposed && want == EFT_DTYPE_COUNT && is_plain(src)) {
        l->qt = EFT_DTYPE_COUNT;
        eft_status s = src == EFT_DTYPE_F32 ? eft__sgemm_pack_typed(&l->p, src, t->data, n, k, k, b->err)
                                            : eft__sgemm_pack_half(&l->p, src, t->data, n, k, k, b->err);
        if (s != EFT_OK) eft__error_prefix(b->err, "packing '%s'", t->name);
        return s == EFT_OK;
    }
    if (!transposed && want == EFT_DTYPE_COUNT && src == EFT_DTYPE_Q4_K) {
        if (!lin_alloc_q(b, l, EFT_DTYPE_Q4_1, t->name)) return false;
        const eft__block_q4_k *in = t->data;
        for (uint64_t i = 0; i < t->n_elems / EFT__QK_K; i++) q4k_to_q4_1((eft__block_q4_1 *)l->q_owned + 8 * i, &in[i]);
        return true;
    }
    if (!transposed && want == EFT_DTYPE_COUNT && src == EFT_DTYPE_Q5_0) {
        if (!lin_alloc_q(b, l, EFT_DTYPE_Q8_0, t->name)) return false;
        const eft__block_q5_0 *in = t->data;
        for (uint64_t i = 0; i < t->n_elems / EFT__QK; i++) q5_0_to_q8_0((eft__block_q8_0 *)l->q_owned + i, &in[i]);
        return true;
    }
    /* Everything else goes through f32 once: other K-quants become Q8_0 (dequantise, requantise:
     * well inside int8's error for 5- and 6-bit values), plain weights take the wanted type. */
    float *w = view_f32(b, t);
    if (!w) return false;
    if (transposed) {
        float *wt = eft__malloc_array((size_t)(n * k), sizeof(float));
        if (!wt) {
            eft__free(w);
            return eft__fail(b->err, EFT_ERR_OUT_OF_MEMORY, "out of memory transposing '%s'", t->name), false;
        }
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < n; j++) wt[j * k + i] = w[i * n + j];
        eft__free(w);
        w = wt;
    }
    if (want == EFT_DTYPE_COUNT) want = is_block_q(src) ? EFT_DTYPE_Q8_0 : EFT_DTYPE_F32;
    if ((is_kernel_q(want) || is_gq_only(want)) && k % EFT__QK != 0 && is_plain(src)) want = EFT_DTYPE_F32; /* cannot block it */
    bool ok = lin_from_f32(b, l, w, want, t->name);
    eft__free(w);
    return ok;
}

/* ---------------------------------------------------------------------------------------------
 * Build: matrices and vectors as a program holds them
 * ------------------------------------------------------------------------------------------- */

/* Notes a matrix or vector the build made, under its blob name, for eft__decoder_save. */
static bool record(builder *b, const char *name, eft_dtype dtype, const void *data, uint64_t size) {
    eft__decoder *d = b->d;
    if (strlen(name) >= EFT__PROGRAM_NAME_MAX)
        return eft__fail(b->err, EFT_ERR_UNSUPPORTED, "%s: tensor name '%s' is over %d bytes", b->m->path, name,
                         EFT__PROGRAM_NAME_MAX - 1), false;
    if (d->n_recs == d->cap_recs) {
        int cap = d->cap_recs ? 2 * d->cap_recs : 64;
        dec_rec *r = eft__realloc(d->recs, (size_t)cap * sizeof *r);
        if (!r) return eft__fail(b->err, EFT_ERR_OUT_OF_MEMORY, "out of memory"), false;
        d->recs = r;
        d->cap_recs = cap;
    }
    dec_rec *r = &d->recs[d->n_recs++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->dtype = dtype;
    r->data = data;
    r->size = size;
    return true;
}

/* Bytes of a lin as its kernel reads them: quantised rows, or sgemm panels [npanels][K][16]. */
static bool lin_bytes(const lin *l, eft_dtype *dtype, const void **data, uint64_t *size) {
    if (l->qt != EFT_DTYPE_COUNT) {
        *dtype = l->qt;
        *data = l->q;
        return eft__dtype_nbytes(l->qt, (uint64_t)l->n * (uint64_t)l->k, size);
    }
    *dtype = l->p.dtype;
    *data = l->p.data;
    uint64_t es = l->p.dtype == EFT_DTYPE_F32 ? 4 : 2;
    return !eft__mul_overflow_u64((uint64_t)l->p.npanels * EFT__SGEMM_NR, (uint64_t)l->p.k, size) &&
           !eft__mul_overflow_u64(*size, es, size);
}

static bool record_lin(builder *b, const char *name, const lin *l) {
    eft_dtype dt;
    const void *data;
    uint64_t size;
    if (!lin_bytes(l, &dt, &data, &size))
        return eft__fail(b->err, EFT_ERR_LIMIT, "%s: '%s' is too large to record", b->m->path, name), false;
    return record(b, name, dt, data, size);
}

/* The program's blob name, checked against what the model's config asks of it. */
static const eft__program_blob *prog_find(builder *b, const char *name, bool optional) {
    const eft__program *pg = b->d->prog;
    const eft__program_blob *bl = eft__program_find(pg, name);
    if (!bl && !optional) eft__fail(b->err, EFT_ERR_FORMAT, "%s: blob '%s' is missing", eft__program_path(pg), name);
    return bl;
}

/* A vector [n] from the program, copied (a few KiB; decoder_free owns every vector). */
static float *prog_vec(builder *b, const char *name, int64_t n, bool optional, bool *ok) {
    const eft__program_blob *bl = prog_find(b, name, optional);
    if (!bl) {
        if (!optional) *ok = false;
        return NULL;
    }
    if (bl->dtype != EFT_DTYPE_F32 || n < 1 || bl->size != (uint64_t)n * sizeof(float)) {
        *ok = false;
        eft__fail(b->err, EFT_ERR_FORMAT, "%s: blob '%s' has %llu bytes of %s, expected %lld F32",
                  eft__program_path(b->d->prog), name, (unsigned long long)bl->size, eft_dtype_name(bl->dtype),
                  (long long)n);
        return NULL;
    }
    float *v = eft__malloc_array((size_t)n, sizeof(float));
    if (!v) {
        *ok = false;
        eft__fail(b->err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    memcpy(v, bl->data, (size_t)bl->size);
    if (!record(b, name, EFT_DTYPE_F32, v, bl->size)) {
        *ok = false;
        eft__free(v);
        return NULL;
    }
    return v;
}

/* A matrix W [n, k] from the program, in place: quantised rows (Q8_0, Q4_0, Q4_1) or sgemm
 * panels (F32, F16, BF16), whichever the blob holds; its size must be exactly that. */
static bool prog_lin(builder *b, lin *l, const char *name, int64_t n, int64_t k) {
    const eft__program_blob *bl = prog_find(b, name, false);
    if (!bl) return false;
    l->n = n;
    l->k = k;
    uint64_t want_bytes = 0;
    bool ok;
    eft__gq_layout gl;
    if (is_kernel_q(bl->dtype) || (is_gq_only(bl->dtype) && eft__gq_layout_of(bl->dtype, &gl))) {
        ok = k % (is_kernel_q(bl->dtype) ? EFT__QK : gl.group) == 0 &&
             eft__dtype_nbytes(bl->dtype, (uint64_t)n * (uint64_t)k, &want_bytes);
        l->qt = bl->dtype;
        l->q = bl->data;
    } else if (is_plain(bl->dtype)) {
        int64_t np = (n + EFT__SGEMM_NR - 1) / EFT__SGEMM_NR;
        l->qt = EFT_DTYPE_COUNT;
        l->p = (eft__sgemm_packed){.n = n, .k = k, .npanels = np, .dtype = bl->dtype, .data = (void *)bl->data,
                                   .borrowed = true};
        ok = lin_bytes(l, &(eft_dtype){0}, &(const void *){NULL}, &want_bytes);
    } else {
        ok = false;
    }
    if (!ok || bl->size != want_bytes || !bl->data) {
        memset(l, 0, sizeof *l);
        return eft__fail(b->err, EFT_ERR_FORMAT, "%s: blob '%s' has %llu bytes of %s; a [%lld, %lld] matrix of that "
                         "type needs %llu", eft__program_path(b->d->prog), name, (unsigned long long)bl->size,
                         eft_dtype_name(bl->dtype), (long long)n, (long long)k, (unsigned long long)want_bytes),
               false;
    }
    return record(b, name, bl->dtype, bl->data, bl->size);
}

/* The matrix name [n, k] (stored [k, n] when transposed): from the program when loading one,
 * else converted from the model's tensor; recorded either way. */
static bool want_lin(builder *b, lin *l, const char *name, int64_t n, int64_t k, bool transposed) {
    if (b->d->prog) return prog_lin(b, l, name, n, k);
    const eft__tensor_view *t = transposed ? want(b, name, k, n, false) : want(b, name, n, k, false);
    return t && lin_from_view(b, l, t, n, k, transposed) && record_lin(b, name, l);
}

static void lin_free(lin *l) {
    eft__sgemm_packed_free(&l->p);
    eft__free_aligned(l->q_owned);
    eft__free(l->b);
    memset(l, 0, sizeof *l);
}

/* The names of one layer's tensors in the file's convention. */
typedef struct names {
    char q[160], k[160], v[160], qkv[160], o[160], gate[160], up[160], gate_up[160], down[160];
    char q_b[160], k_b[160], v_b[160], qkv_b[160], o_b[160], up_b[160], down_b[160];
    char attn_norm[160], attn_norm_b[160], post_attn[160], ffn_norm[160], ffn_norm_b[160], post_ffn[160];
    char q_norm[160], k_norm[160];
} names;

static void layer_names(const eft_model *m, eft__arch arch, int64_t l, names *n) {
    long long i = (long long)l;
#define NM(field, ...) snprintf(n->field, sizeof n->field, __VA_ARGS__)
    if (m->is_gguf) {
        NM(q, "blk.%lld.attn_q.weight", i); NM(k, "blk.%lld.attn_k.weight", i); NM(v, "blk.%lld.attn_v.weight", i);
        NM(qkv, "blk.%lld.attn_qkv.weight", i); NM(o, "blk.%lld.attn_output.weight", i);
        NM(gate, "blk.%lld.ffn_gate.weight", i); NM(up, "blk.%lld.ffn_up.weight", i);
        NM(gate_up, "blk.%lld.ffn_up.weight", i); NM(down, "blk.%lld.ffn_down.weight", i);
        NM(q_b, "blk.%lld.attn_q.bias", i); NM(k_b, "blk.%lld.attn_k.bias", i); NM(v_b, "blk.%lld.attn_v.bias", i);
        NM(qkv_b, "blk.%lld.attn_qkv.bias", i); NM(o_b, "blk.%lld.attn_output.bias", i);
        NM(up_b, "blk.%lld.ffn_up.bias", i); NM(down_b, "blk.%lld.ffn_down.bias", i);
        NM(attn_norm, "blk.%lld.attn_norm.weight", i); NM(attn_norm_b, "blk.%lld.attn_norm.bias", i);
        NM(post_attn, "blk.%lld.post_attention_norm.weight", i);
        NM(ffn_norm, "blk.%lld.ffn_norm.weight", i); NM(ffn_norm_b, "blk.%lld.ffn_norm.bias", i);
        NM(post_ffn, "blk.%lld.post_ffw_norm.weight", i);
        NM(q_norm, "blk.%lld.attn_q_norm.weight", i); NM(k_norm, "blk.%lld.attn_k_norm.weight", i);
    } else if (arch == EFT__ARCH_GPT2) {
        NM(qkv, "transformer.h.%lld.attn.c_attn.weight", i); NM(qkv_b, "transformer.h.%lld.attn.c_attn.bias", i);
        NM(o, "transformer.h.%lld.attn.c_proj.weight", i); NM(o_b, "transformer.h.%lld.attn.c_proj.bias", i);
        NM(up, "transformer.h.%lld.mlp.c_fc.weight", i); NM(up_b, "transformer.h.%lld.mlp.c_fc.bias", i);
        NM(down, "transformer.h.%lld.mlp.c_proj.weight", i); NM(down_b, "transformer.h.%lld.mlp.c_proj.bias", i);
        NM(attn_norm, "transformer.h.%lld.ln_1.weight", i); NM(attn_norm_b, "transformer.h.%lld.ln_1.bias", i);
        NM(ffn_norm, "transformer.h.%lld.ln_2.weight", i); NM(ffn_norm_b, "transformer.h.%lld.ln_2.bias", i);
    } else {
        const char *p = "model.layers";
        bool gemma = arch == EFT__ARCH_GEMMA2 || arch == EFT__ARCH_GEMMA3;
        NM(q, "%s.%lld.self_attn.q_proj.weight", p, i); NM(k, "%s.%lld.self_attn.k_proj.weight", p, i);
        NM(v, "%s.%lld.self_attn.v_proj.weight", p, i); NM(qkv, "%s.%lld.self_attn.qkv_proj.weight", p, i);
        NM(o, "%s.%lld.self_attn.o_proj.weight", p, i);
        NM(gate, "%s.%lld.mlp.gate_proj.weight", p, i); NM(up, "%s.%lld.mlp.up_proj.weight", p, i);
        NM(gate_up, "%s.%lld.mlp.gate_up_proj.weight", p, i); NM(down, "%s.%lld.mlp.down_proj.weight", p, i);
        NM(q_b, "%s.%lld.self_attn.q_proj.bias", p, i); NM(k_b, "%s.%lld.self_attn.k_proj.bias", p, i);
        NM(v_b, "%s.%lld.self_attn.v_proj.bias", p, i); NM(qkv_b, "%s.%lld.self_attn.qkv_proj.bias", p, i);
        NM(o_b, "%s.%lld.self_attn.o_proj.bias", p, i);
        NM(up_b, "%s.%lld.mlp.up_proj.bias", p, i); NM(down_b, "%s.%lld.mlp.down_proj.bias", p, i);
        NM(attn_norm, "%s.%lld.input_layernorm.weight", p, i); NM(attn_norm_b, "%s.%lld.input_layernorm.bias", p, i);
        NM(post_attn, "%s.%lld.post_attention_layernorm.weight", p, i);
        /* Gemma's post_attention_layernorm normalises the attention output; the others' is the
         * norm before the MLP. */
        NM(ffn_norm, gemma ? "%s.%lld.pre_feedforward_layernorm.weight" : "%s.%lld.post_attention_layernorm.weight", p, i);
        NM(ffn_norm_b, "%s.%lld.post_attention_layernorm.bias", p, i);
        NM(post_ffn, "%s.%lld.post_feedforward_layernorm.weight", p, i);
        NM(q_norm, "%s.%lld.self_attn.q_norm.weight", p, i); NM(k_norm, "%s.%lld.self_attn.k_norm.weight", p, i);
    }
#undef NM
}

static bool load_layer(builder *b, eft__decoder *d, int64_t l, dec_layer *ly) {
    const eft__model_config *c = &b->m->cfg;
    const int64_t C = d->C, QD = d->QD, KD = d->KD, I = d->I, HS = d->HS;
    names n;
    layer_names(b->m, d->arch, l, &n);
    bool gpt2 = d->arch == EFT__ARCH_GPT2, gemma = d->arch == EFT__ARCH_GEMMA2 || d->arch == EFT__ARCH_GEMMA3;
    bool ok = true;
    /* Attention projections: separate q, k, v, or one fused tensor (Phi-3, GPT-2, GGUF attn_qkv). */
    if (gpt2 || eft__model_find_tensor(b->m, n.qkv)) {
        ly->n_qkv = 1;
        ok = want_lin(b, &ly->qkv[0], n.qkv, d->QW, C, gpt2 && !b->m->is_gguf);
        if (ok && (c->qkv_bias || gpt2)) ly->qkv[0].b = want_vec(b, n.qkv_b, d->QW, false, &ok);
    } else {
        ly->n_qkv = 3;
        ok = want_lin(b, &ly->qkv[0], n.q, QD, C, false) && want_lin(b, &ly->qkv[1], n.k, KD, C, false) &&
             want_lin(b, &ly->qkv[2], n.v, KD, C, false);
        if (ok && c->qkv_bias) {
            ly->qkv[0].b = want_vec(b, n.q_b, QD, false, &ok);
            if (ok) ly->qkv[1].b = want_vec(b, n.k_b, KD, false, &ok);
            if (ok) ly->qkv[2].b = want_vec(b, n.v_b, KD, false, &ok);
        }
    }
    if (!ok) return false;
    if (!want_lin(b, &ly->o, n.o, C, QD, gpt2 && !b->m->is_gguf)) return false;
    if (c->o_bias || gpt2) ly->o.b = want_vec(b, n.o_b, C, false, &ok);
    if (!ok) return false;
    /* MLP. */
    if (gpt2) {
        ly->n_gu = 1;
        ok = want_lin(b, &ly->gu[0], n.up, I, C, !b->m->is_gguf);
        if (ok) ly->gu[0].b = want_vec(b, n.up_b, I, false, &ok);
    } else if (!b->m->is_gguf && eft__model_find_tensor(b->m, n.gate_up)) {
        ly->n_gu = 1;
        ok = want_lin(b, &ly->gu[0], n.gate_up, 2 * I, C, false);
    } else if (b->m->is_gguf && !eft__model_find_tensor(b->m, n.gate)) {
        ly->n_gu = 1; /* llama.cpp's phi3: gate and up fused in ffn_up */
        ok = want_lin(b, &ly->gu[0], n.gate_up, 2 * I, C, false);
    } else {
        ly->n_gu = 2;
        ok = want_lin(b, &ly->gu[0], n.gate, I, C, false) && want_lin(b, &ly->gu[1], n.up, I, C, false);
        if (ok && c->mlp_bias) ly->gu[1].b = want_vec(b, n.up_b, I, false, &ok);
    }
    if (!ok || !want_lin(b, &ly->down, n.down, C, I, gpt2 && !b->m->is_gguf)) return false;
    if (c->mlp_bias || gpt2) ly->down.b = want_vec(b, n.down_b, C, false, &ok);
    if (!ok) return false;
    /* Norms. */
    bool ln = d->norm == EFT__NORM_LAYERNORM;
    ly->attn_norm_w = want_vec(b, n.attn_norm, C, false, &ok);
    if (ok && ln) ly->attn_norm_b = want_vec(b, n.attn_norm_b, C, false, &ok);
    if (ok) ly->ffn_norm_w = want_vec(b, n.ffn_norm, C, false, &ok);
    if (ok && ln) ly->ffn_norm_b = want_vec(b, n.ffn_norm_b, C, false, &ok);
    if (ok && gemma) ly->post_attn_w = want_vec(b, n.post_attn, C, false, &ok);
    if (ok && gemma) ly->post_ffn_w = want_vec(b, n.post_ffn, C, false, &ok);
    if (ok && c->qk_norm) ly->q_norm = want_vec(b, n.q_norm, HS, false, &ok);
    if (ok && c->qk_norm) ly->k_norm = want_vec(b, n.k_norm, HS, false, &ok);
    if (!ok) return false;
    bool sliding = c->sliding_window > 0 && c->is_sliding && c->is_sliding[l];
    ly->window = sliding ? c->sliding_window : 0;
    ly->rope = gpt2 ? NULL : (d->has_rope_local && sliding) ? &d->rope_local : &d->rope_global;
    ly->scale = (float)(c->attn_scale > 0 ? c->attn_scale : 1.0 / sqrt((double)HS));
    if (gpt2 && c->scale_attn_by_inverse_layer_idx) ly->scale /= (float)(l + 1);
    return true;
}

static eft_status rope_init(eft__decoder *d, eft__rope_table *t, const eft__rope *r, const eft__model_config *c,
                            eft__error *err) {
    eft__rope_params p = {0};
    p.rot_dims = (int)((double)d->HS * (r->partial_rotary_factor > 0 ? r->partial_rotary_factor : 1.0));
    p.rot_dims &= ~1;
    p.base = (float)r->theta;
    p.factor = (float)r->factor;
    p.original_max_pos = r->original_max_position_embeddings;
    p.max_pos = c->max_position_embeddings;
    p.ctx_len = d->ctx;
    p.low_freq_factor = (float)r->low_freq_factor;
    p.high_freq_factor = (float)r->high_freq_factor;
    p.beta_fast = (float)r->beta_fast;
    p.beta_slow = (float)r->beta_slow;
    p.mscale = (float)r->mscale;
    p.mscale_all_dim = (float)r->mscale_all_dim;
    p.attention_factor = r->type == EFT__ROPE_YARN || r->type == EFT__ROPE_LONGROPE ? (float)r->attention_factor : 0;
    p.short_factor = r->short_factor;
    p.long_factor = r->long_factor;
    switch (r->type) {
    case EFT__ROPE_DEFAULT: p.scaling = EFT__ROPE_SCALING_NONE; break;
    case EFT__ROPE_LINEAR: p.scaling = EFT__ROPE_SCALING_LINEAR; break;
    case EFT__ROPE_LLAMA3: p.scaling = EFT__ROPE_SCALING_LLAMA3; break;
    case EFT__ROPE_YARN: p.scaling = EFT__ROPE_SCALING_YARN; break;
    case EFT__ROPE_LONGROPE: p.scaling = EFT__ROPE_SCALING_LONGROPE; break;
    case EFT__ROPE_DYNAMIC:
        /* Dynamic NTK only changes the frequencies past max_position_embeddings. */
        if (d->ctx > c->max_position_embeddings)
            return eft__fail(err, EFT_ERR_UNSUPPORTED, "rope_type dynamic with ctx_len %lld over "
                             "max_position_embeddings %lld is not supported", (long long)d->ctx,
                             (long long)c->max_position_embeddings);
        p.scaling = EFT__ROPE_SCALING_NONE;
        break;
    default: return eft__fail(err, EFT_ERR_UNSUPPORTED, "rope type %d is not supported", (int)r->type);
    }
    if (r->type == EFT__ROPE_LONGROPE && (!r->short_factor || (int64_t)r->n_short_factor < p.rot_dims / 2))
        return eft__fail(err, EFT_ERR_FORMAT, "longrope: short_factor has %zu entries, %d needed", r->n_short_factor,
                         p.rot_dims / 2);
    return eft__rope_table_init(t, &p, d->ctx, err);
}

static void *alloc_buf(size_t count, size_t size, bool *ok) {
    size_t n;
    if (__builtin_mul_overflow(count, size, &n)) {
        *ok = false;
        return NULL;
    }
    void *p = eft__malloc_aligned(n ? n : 64);
    if (!p) *ok = false;
    return p;
}

static eft_status graph_build(eft__decoder *d, const eft_model *m, eft__error *err);

/* The graph and its plan: the arena for max_tokens rows, and the KV cache. */
static eft_status plan(eft__decoder *d, const eft_model *m, const eft__decoder_params *p, eft__error *err) {
    const int64_t T = p->max_tokens;
    d->maxT = p->max_tokens;
    eft_status s = graph_build(d, m, err);
    if (s == EFT_OK) s = eft__ir_plan_state(d->g, d->slots, d->ctx, err);
    if (s == EFT_OK) s = eft__ir_plan(d->g, 1, d->maxT, d->nth, err);
    if (s != EFT_OK) return s;
    /* Not in huge pages, though each step streams it (eft__malloc_huge took eight sequences'
     * attention from 3.5-4.3 to 3.1-3.6 ms of a 26 ms step): a 2 MiB page spans several heads'
     * rows, so the whole cache would become resident once each slot had been used, where 4 KiB
     * pages hold only the positions written (`eft serve`'s default 4096 positions: 188 MB). */
    bool ok = (d->state = eft__malloc_aligned((size_t)d->g->state_bytes)) != NULL;
    if (!ok)
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory for the KV cache: %d slots x %lld layers x %lld "
                         "positions x %lld values x 2 (%llu bytes)", d->slots, (long long)d->L, (long long)d->ctx,
                         (long long)d->KD, (unsigned long long)d->g->state_bytes);
    d->arena = alloc_buf((size_t)d->g->arena_bytes, 1, &ok);
    d->a_slot = alloc_buf((size_t)T, sizeof(int32_t), &ok);
    d->row_of = alloc_buf((size_t)T, sizeof(int32_t), &ok);
    d->off = alloc_buf((size_t)T + 1, sizeof(int32_t), &ok);
    d->gslot = alloc_buf((size_t)T, sizeof(int32_t), &ok);
    if (!ok) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory planning activations for %d tokens", p->max_tokens);
    return EFT_OK;
}

void eft__decoder_free(eft__decoder *d) {
    if (!d) return;
    if (d->layers) {
        for (int64_t l = 0; l < d->L; l++) {
            dec_layer *ly = &d->layers[l];
            for (int i = 0; i < 3; i++) lin_free(&ly->qkv[i]);
            lin_free(&ly->o);
            lin_free(&ly->gu[0]);
            lin_free(&ly->gu[1]);
            lin_free(&ly->down);
            float *v[] = {ly->attn_norm_w, ly->attn_norm_b, ly->post_attn_w, ly->ffn_norm_w, ly->ffn_norm_b,
                          ly->post_ffn_w, ly->q_norm, ly->k_norm};
            for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) eft__free(v[i]);
        }
        eft__free(d->layers);
    }
    lin_free(&d->head);
    eft__free(d->wpe);
    eft__free(d->out_norm_w);
    eft__free(d->out_norm_b);
    eft__rope_table_free(&d->rope_global);
    eft__rope_table_free(&d->rope_local);
    eft__threadpool_free(d->tp);
    eft__ir_free(d->g);
    eft__free(d->prof_s);
    eft__free(d->prof_n);
    void *bufs[] = {d->arena, d->state, d->x4, d->a_slot, d->row_of, d->off, d->gslot};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) eft__free_aligned(bufs[i]);
    eft__free(d->recs);
    eft__free(d);
}

/* Every GGUF-layout matrix (Q4_0, Q4_1, Q8_0) gets a four-row interleaved copy (kernels.h) for the
 * integer kernels: with int8 activations every product reads it; with f32 activations one-token
 * steps do (the three-plane product, eft__qx4_gemm_f32: SmolLM2 decode 52-59 -> 73-78 tok/s,
 * Gemma-3-270M 36 -> 44-47, greedy still equal to transformers'), while batches and prefill keep
 * the f32 kernels on the file layout. So the quantised weights are held twice: the file layout
 * mapped (clean pages the kernel may drop) or owned, and the copy. Others keep their kernels.
 * The copies are made on the decoder's pool, each worker packing its share of every matrix's row
 * groups: a pass over all the weights at open (SmolLM2 97 MB in about 0.1 s). */
typedef struct pack_ctx {
    lin **lins;
    int n;
} pack_ctx;

static void pack_task(void *p, int ith, int nth) {
    const pack_ctx *x = p;
    for (int i = 0; i < x->n; i++) {
        const lin *l = x->lins[i];
        uint64_t row_bytes = 0;
        eft__dtype_nbytes(l->qt, (uint64_t)l->k, &row_bytes);
        int64_t g0, g1, ng = (l->n + 3) / 4;
        eft__split_range(ng, ith, nth, &g0, &g1);
        int64_t r0 = 4 * g0, r1 = 4 * g1 < l->n ? 4 * g1 : l->n;
        if (r0 >= r1) continue;
        /* A run of whole groups is the interleaved form of its rows, at that group's offset. */
        eft__qx4_pack((uint8_t *)l->x4 + (size_t)g0 * eft__qx4_size(l->qt, 4, l->k), l->qt,
                      (const uint8_t *)l->q + (size_t)r0 * (size_t)row_bytes, (size_t)row_bytes, r1 - r0, l->k);
    }
}

static eft_status interleave_all(eft__decoder *d, eft__error *err) {
    int cap = (int)(d->L * 8 + 1), n = 0;
    lin **lins = eft__calloc((size_t)cap, sizeof *lins);
    if (!lins) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory interleaving the quantised weights for decode");
    lins[n++] = &d->head;
    for (int64_t l = 0; l < d->L; l++) {
        dec_layer *ly = &d->layers[l];
        for (int i = 0; i < ly->n_qkv; i++) lins[n++] = &ly->qkv[i];
        for (int i = 0; i < ly->n_gu; i++) lins[n++] = &ly->gu[i];
        lins[n++] = &ly->o;
        lins[n++] = &ly->down;
    }
    /* One allocation for all the copies, in huge pages (eft__malloc_huge): a one-token step streams
     * all of it, and with 4 KiB pages SmolLM2 Q4_1's layer products took 4.2 ms a token, with
     * huge pages 3.5 ms, the head 1.6 -> 1.3 ms (decode harness, five alternating rounds). */
    int k = 0;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        lin *l = lins[i];
        uint64_t row_bytes = 0;
        size_t size = is_kernel_q(l->qt) && !l->x4 ? eft__qx4_size(l->qt, l->n, l->k) : 0;
        if (size == 0 || !eft__dtype_nbytes(l->qt, (uint64_t)l->k, &row_bytes)) continue;
        bool seen = false; /* a matrix listed twice gets one copy */
        for (int j = 0; j < k && !seen; j++) seen = lins[j] == l;
        if (seen) continue;
        total += (size + 63) & ~(size_t)63;
        lins[k++] = l;
    }
    bool ok = k == 0 || (d->x4 = eft__malloc_huge(total)) != NULL;
    size_t off = 0;
    for (int i = 0; ok && i < k; i++) {
        lins[i]->x4 = (uint8_t *)d->x4 + off;
        off += (eft__qx4_size(lins[i]->qt, lins[i]->n, lins[i]->k) + 63) & ~(size_t)63;
    }
    if (ok) {
        pack_ctx x = {lins, k};
        if (d->tp) eft__threadpool_run(d->tp, pack_task, &x);
        else pack_task(&x, 0, 1);
    }
    eft__free(lins);
    return ok ? EFT_OK : eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory interleaving the quantised weights for decode");
}

static eft_status build(eft__decoder *d, const eft_model *m, const eft__decoder_params *p, eft__error *err) {
    const eft__model_config *c = &m->cfg;
    eft__arch a = c->arch;
    bool supported = a == EFT__ARCH_LLAMA || a == EFT__ARCH_MISTRAL || a == EFT__ARCH_QWEN2 || a == EFT__ARCH_QWEN3 ||
                     a == EFT__ARCH_GEMMA2 || a == EFT__ARCH_GEMMA3 || a == EFT__ARCH_PHI3 || a == EFT__ARCH_GPT2;
    if (!m->has_cfg || c->is_encoder || !supported)
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: model_type '%s' is not a causal LM eft implements (llama, "
                         "mistral, qwen2, qwen3, gemma2, gemma3, phi3, gpt2)", m->path, m->has_cfg ? c->model_type : "?");
    if (m->is_gguf && (a == EFT__ARCH_PHI3 || a == EFT__ARCH_GPT2))
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: GGUF files of %s are not supported yet (use the Hugging Face "
                         "folder)", m->path, c->model_type);
    if (c->use_bidirectional_attention)
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: use_bidirectional_attention is set; this is not a causal LM",
                         m->path);
    if (c->rope_factor_tensors)
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: rope frequency-factor tensors (rope_freqs.weight) are not "
                         "supported yet", m->path);
    if (p->n_slots < 1 || p->n_slots > 4096 || p->max_tokens < 1 || p->max_tokens > (1 << 20) || p->ctx_len < 0 ||
        p->n_threads > 1024)
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "decoder plan: n_slots %d (1..4096), max_tokens %d "
                         "(1..2^20), ctx_len %lld (>= 0), n_threads %d", p->n_slots, p->max_tokens,
                         (long long)p->ctx_len, p->n_threads);
    if (p->kv_dtype != EFT_DTYPE_F32 && p->kv_dtype != EFT_DTYPE_F16 && p->kv_dtype != EFT_DTYPE_I8)
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "decoder plan: kv_dtype %s; the cache holds F32, F16 or I8",
                         eft_dtype_name(p->kv_dtype));
    eft_dtype wd = p->weight_dtype;
    if (wd != EFT_DTYPE_COUNT && !is_plain(wd) && !is_kernel_q(wd) && !is_gq_only(wd))
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "decoder plan: weight_dtype %s; choose F32, F16, BF16, Q8_0, "
                         "Q4_0, Q4_1, a group-quantised layout (I4_G64 ... I8_CH) or keep", eft_dtype_name(wd));
    d->arch = a;
    d->C = c->hidden_size;
    d->NH = c->num_attention_heads;
    d->NKV = c->num_key_value_heads;
    d->HS = c->head_dim;
    d->L = c->num_hidden_layers;
    d->I = c->intermediate_size;
    d->V = c->vocab_size;
    d->P = c->max_position_embeddings;
    if (d->C <= 0 || d->NH <= 0 || d->NKV <= 0 || d->NH % d->NKV || d->HS <= 0 || d->L <= 0 || d->I <= 0 ||
        d->V <= 0 || d->V > INT32_MAX || d->P <= 0)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: hidden %lld, heads %lld/%lld, head_dim %lld, layers %lld, "
                         "intermediate %lld, vocab %lld do not make a decoder", m->path, (long long)d->C,
                         (long long)d->NH, (long long)d->NKV, (long long)d->HS, (long long)d->L, (long long)d->I,
                         (long long)d->V);
    d->QD = d->NH * d->HS;
    d->KD = d->NKV * d->HS;
    d->QW = d->QD + 2 * d->KD;
    d->eps = (float)c->norm_eps;
    d->norm = c->norm;
    d->norm_off = c->norm_add_one ? 1.0f : 0.0f;
    d->act = c->hidden_act;
    d->gated = a != EFT__ARCH_GPT2;
    d->embed_scale = (float)(c->embed_scale > 0 ? c->embed_scale : 1.0);
    d->final_softcap = (float)c->final_logit_softcapping;
    d->attn_softcap = (float)c->attn_logit_softcapping;
    /* llama.cpp's converter permutes the rows of attn_q/attn_k of llama-family models so that its
     * interleaved ("normal") rope gives Hugging Face's rotate_half result: on those weights the
     * GPT-J pairing is the same rotation. */
    d->rope_layout = m->is_gguf && (a == EFT__ARCH_LLAMA || a == EFT__ARCH_MISTRAL) ? EFT__ROPE_GPTJ : EFT__ROPE_NEOX;
    if (d->act != EFT__ACT_SILU && d->act != EFT__ACT_GELU_TANH && d->act != EFT__ACT_GELU)
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: activation %s is not supported by the decoder", m->path,
                         eft__act_name(d->act));
    d->slots = p->n_slots;
    d->kv_dtype = p->kv_dtype;
    int64_t cap = d->P < 4096 ? d->P : 4096;
    d->ctx = p->ctx_len > 0 ? p->ctx_len : cap;
    if (d->ctx > ((int64_t)1 << 24) || (a == EFT__ARCH_GPT2 && d->ctx > d->P))
        return eft__fail(err, EFT_ERR_LIMIT, "%s: ctx_len %lld is over what the positions allow (%lld)", m->path,
                         (long long)d->ctx, (long long)(a == EFT__ARCH_GPT2 ? d->P : ((int64_t)1 << 24)));
    if (a != EFT__ARCH_GPT2) {
        if (!c->has_rope) return eft__fail(err, EFT_ERR_FORMAT, "%s: the model has no rope parameters", m->path);
        eft_status s = rope_init(d, &d->rope_global, &c->rope, c, err);
        if (s == EFT_OK && c->has_rope_local) {
            s = rope_init(d, &d->rope_local, &c->rope_local, c, err);
            d->has_rope_local = true;
        }
        if (s != EFT_OK) return eft__error_prefix(err, "%s", m->path);
    }

    builder b = {.m = m, .want = wd, .err = err, .d = d};
    bool gg = m->is_gguf, gpt2 = a == EFT__ARCH_GPT2, ok = true;
    const char *emb = gg ? "token_embd.weight" : gpt2 ? "transformer.wte.weight" : "model.embed_tokens.weight";
    if (!(d->wte = want(&b, emb, d->V, d->C, false))) return err->status;
    if (!eft__dtype_nbytes(d->wte->dtype, (uint64_t)d->C, &d->wte_row_bytes))
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: '%s' is %s, whose blocks do not divide its rows of %lld", m->path,
                         emb, eft_dtype_name(d->wte->dtype), (long long)d->C);
    if (gpt2) {
        const eft__tensor_view *t = want(&b, "transformer.wpe.weight", d->P, d->C, false);
        if (!t || !(d->wpe = view_f32(&b, t))) return err->status;
    }
    d->layers = eft__calloc((size_t)d->L, sizeof(dec_layer));
    if (!d->layers) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    for (int64_t l = 0; l < d->L; l++)
        if (!load_layer(&b, d, l, &d->layers[l])) return err->status;
    const char *on = gg ? "output_norm.weight" : gpt2 ? "transformer.ln_f.weight" : "model.norm.weight";
    d->out_norm_w = want_vec(&b, on, d->C, false, &ok);
    if (ok && d->norm == EFT__NORM_LAYERNORM)
        d->out_norm_b = want_vec(&b, gg ? "output_norm.bias" : "transformer.ln_f.bias", d->C, false, &ok);
    if (!ok) return err->status;
    const char *hn = gg ? "output.weight" : "lm_head.weight";
    const eft__tensor_view *ht = eft__model_find_tensor(m, hn);
    if (ht || !c->tie_word_embeddings) {
        if (!want_lin(&b, &d->head, hn, d->V, d->C, false)) return err->status;
    } else if (d->prog ? !prog_lin(&b, &d->head, TIED_HEAD, d->V, d->C)
                       : !lin_from_view(&b, &d->head, d->wte, d->V, d->C, false) || !record_lin(&b, TIED_HEAD, &d->head)) {
        return eft__error_prefix(err, "tied output embeddings");
    }
    d->kt = p->kernels ? p->kernels : eft__kernels_get();
    d->int8_act = p->int8_activations;
    /* The pool first (the interleaving runs on it), the graph once every matrix has its final form. */
    d->nth = p->n_threads > 0 ? p->n_threads : 1;
    eft_status s = d->nth > 1 ? eft__threadpool_create(d->nth, &d->tp, err) : EFT_OK;
    if (s == EFT_OK) s = interleave_all(d, err);
    if (s == EFT_OK) s = plan(d, m, p, err);
    return s;
}

eft_status eft__decoder_build(const eft_model *m, const eft__decoder_params *p, eft__decoder **out, eft__error *err) {
    *out = NULL;
    eft__error local;
    if (!err) err = &local;
    eft__error_clear(err);
    eft__decoder_params def = eft__decoder_params_default();
    if (!p) p = &def;
    if (!m) return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "decoder: no model");
    eft__decoder *d = eft__calloc(1, sizeof *d);
    if (!d) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    eft_status s = build(d, m, p, err);
    if (s != EFT_OK) {
        eft__decoder_free(d);
        return s;
    }
    *out = d;
    return EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Compiled programs
 * ------------------------------------------------------------------------------------------- */

eft_status eft__decoder_model_hash(const eft_model *m, uint64_t *out, eft__error *err) {
    if (m->is_gguf) {
        const char *one = m->path;
        return eft__program_hash_files(&one, 1, out, err);
    }
    if (!m->ckpt) return eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: no safetensors checkpoint to fingerprint", m->path);
    static const char *const fixed[] = {"config.json", "model.safetensors.index.json"};
    size_t nf = eft__st_checkpoint_file_count(m->ckpt), n = 0;
    char **paths = eft__calloc(nf + 2, sizeof *paths);
    bool ok = paths != NULL;
    for (size_t i = 0; ok && i < 2; i++) ok = (paths[n++] = eft__path_join(m->path, fixed[i])) != NULL;
    for (size_t i = 0; ok && i < nf; i++) ok = (paths[n++] = eft__strdup(eft__st_checkpoint_file_path(m->ckpt, i))) != NULL;
    eft_status s = ok ? eft__program_hash_files((const char *const *)paths, n, out, err)
                      : eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    for (size_t i = 0; paths && i < n; i++) eft__free(paths[i]);
    eft__free(paths);
    return s;
}

eft_status eft__decoder_save(const eft__decoder *d, const eft_model *m, const char *header, const char *path,
                             eft__error *err) {
    uint64_t mh;
    eft_status s = eft__decoder_model_hash(m, &mh, err);
    if (s != EFT_OK) return s;
    json_t *h = header ? eft__json_loadb(header, strlen(header), 0, NULL) : json_object();
    if (!json_is_object(h)) {
        json_decref(h);
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "eft__decoder_save: the header is not a JSON object");
    }
    /* The absolute path, so a program found by path can reopen its model from anywhere. */
    char *abs = realpath(m->path, NULL);
    char hash[24];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)mh);
    json_t *model = json_pack("{s:s, s:s, s:s, s:b}", "path", abs ? abs : m->path, "hash", hash, "model_type",
                              m->cfg.model_type, "gguf", (int)m->is_gguf);
    free(abs); /* realpath allocates with malloc */
    json_t *cfg = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "hidden_size", (json_int_t)d->C,
                            "num_hidden_layers", (json_int_t)d->L, "num_attention_heads", (json_int_t)d->NH,
                            "num_key_value_heads", (json_int_t)d->NKV, "head_dim", (json_int_t)d->HS,
                            "intermediate_size", (json_int_t)d->I, "vocab_size", (json_int_t)d->V);
    /* The plan the program was made with (the cache and KV dtype are planned again at load: only
     * the matrices are stored). */
    json_t *plan = json_pack("{s:I, s:i, s:i, s:s}", "ctx_len", (json_int_t)d->ctx, "slots", d->slots,
                             "max_tokens", d->maxT, "kv_dtype", eft_dtype_name(d->kv_dtype));
    int fail = !model || !cfg || !plan;
    fail |= json_object_set_new(h, "format", json_string("eft-program"));
    fail |= json_object_set_new(h, "kind", json_string("decoder"));
    fail |= json_object_set_new(h, "eft_version", json_string(eft_version()));
    fail |= json_object_set_new(h, "model", model);
    fail |= json_object_set_new(h, "architecture", json_string(eft__arch_name(d->arch)));
    fail |= json_object_set_new(h, "config", cfg);
    fail |= json_object_set_new(h, "plan", plan);
    fail |= json_object_set_new(h, "sgemm_panel_width", json_integer(EFT__SGEMM_NR));
    /* The graph the program runs, for `eft info`: a load builds the same graph again over the
     * stored matrices (emitting it converts nothing), planned for the load's slots and ctx. */
    json_t *graph = eft__ir_to_json(d->g);
    fail |= !graph || json_object_set_new(h, "graph", graph);
    char *text = fail ? NULL : json_dumps(h, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(h);
    if (!text) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory writing the program header");
    eft__program_writer *w = NULL;
    s = eft__program_writer_new(&w, err);
    for (int i = 0; s == EFT_OK && i < d->n_recs; i++)
        s = eft__program_writer_add(w, d->recs[i].name, d->recs[i].dtype, d->recs[i].data, d->recs[i].size, err);
    if (s == EFT_OK) s = eft__program_writer_write(w, path, text, err);
    eft__program_writer_free(w);
    eft__free(text);
    return s;
}

eft_status eft__decoder_load(const eft_model *m, const eft__program *prog, const eft__decoder_params *p,
                             eft__decoder **out, eft__error *err) {
    *out = NULL;
    eft__error local;
    if (!err) err = &local;
    eft__error_clear(err);
    if (!m || !prog) return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "eft__decoder_load: NULL argument");
    const char *P = eft__program_path(prog);
    const json_t *h = eft__program_header(prog);
    const char *kind = json_string_value(json_object_get(h, "kind"));
    if (!kind || strcmp(kind, "decoder"))
        return eft__fail(err, EFT_ERR_FORMAT, "%s: a program of kind '%s', not a decoder", P, kind ? kind : "(none)");
    const char *want = json_string_value(json_object_get(json_object_get(h, "model"), "hash"));
    uint64_t mh;
    eft_status s = eft__decoder_model_hash(m, &mh, err);
    if (s != EFT_OK) return s;
    char have[24];
    snprintf(have, sizeof have, "%016llx", (unsigned long long)mh);
    if (!want || strcmp(want, have))
        return eft__fail(err, EFT_ERR_FORMAT, "%s was compiled from model files with fingerprint %s, but %s now has "
                         "%s (changed since): compile it again", P, want ? want : "(none)", m->path, have);
    json_t *nr = json_object_get(h, "sgemm_panel_width");
    if (!json_is_integer(nr) || json_integer_value(nr) != EFT__SGEMM_NR)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: packed for GEMM panels of %lld channels; this eft packs %d: compile "
                         "it again", P, json_is_integer(nr) ? (long long)json_integer_value(nr) : -1LL, EFT__SGEMM_NR);
    eft__decoder_params pp = p ? *p : eft__decoder_params_default();
    pp.weight_dtype = EFT_DTYPE_COUNT; /* the blobs carry their own types */
    eft__decoder *d = eft__calloc(1, sizeof *d);
    if (!d) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    d->prog = prog;
    s = build(d, m, &pp, err);
    if (s != EFT_OK) {
        eft__decoder_free(d);
        return s;
    }
    *out = d;
    return EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Forward
 * ------------------------------------------------------------------------------------------- */

/* The graph of one forward pass, over the matrices and vectors the build made (borrowed: the
 * decoder owns them) and the KV cache as retained state, one STATE tensor per layer for K and
 * for V. Every op of a layer:
 *   h = norm(x); q, k, v = h Wq, h Wk, h Wv (one group, or one fused product viewed in three);
 *   q, k = rmsnorm per head (Qwen3, Gemma 3); q, k = rope(q, k); a = cache_attention(q, k, v);
 *   o = a Wo (then Gemma's norm); x = x + o; h = norm(x); g, u = h Wg, h Wu (or one fused);
 *   f = act(g) u (GPT-2: act(h Wu)); y = f Wd (then Gemma's norm); x = x + y
 * and after the last layer, only for the rows asked for: logits = norm(x[rows]) Wout, softcapped
 * where the model says, written straight into the caller's array (the bound output). */
typedef struct gb {
    eft__decoder *d;
    eft__ir_graph *g;
    eft__error *err;
    bool ok;
} gb;

static int g_act(gb *b, const char *name, int64_t rows, int64_t cols) {
    if (!b->ok) return -1;
    int t = eft__ir_tensor_add(b->g, name, EFT__IR_ACT, EFT_DTYPE_F32, 2, rows, cols, b->err);
    b->ok = t >= 0;
    return t;
}

static int g_vec(gb *b, const char *name, const float *v, int64_t n) {
    if (!b->ok || !v) return -1;
    int t = eft__ir_weight(b->g, name, EFT_DTYPE_F32, 1, n, 0, v, b->err);
    b->ok = t >= 0;
    return t;
}

static int g_op(gb *b, eft__ir_opkind kind, int out, int n, const int *in) {
    if (!b->ok) return -1;
    int o = eft__ir_op_add(b->g, kind, in, n, out, b->err);
    b->ok = o >= 0;
    return o;
}

/* The weight tensor of l, its kernel chosen for the form the build gave it. */
static int g_lin(gb *b, const char *name, const lin *l, eft__ir_kernel *kernel) {
    if (!b->ok) return -1;
    eft__ir_graph *g = b->g;
    int t;
    if (l->qt == EFT_DTYPE_COUNT) {
        t = eft__ir_tensor_add(g, name, EFT__IR_WEIGHT, l->p.dtype, 2, l->n, l->k, b->err);
        eft__sgemm_packed *pk = t >= 0 ? eft__calloc(1, sizeof *pk) : NULL;
        if (t >= 0 && !pk) eft__fail(b->err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        if (!pk) return b->ok = false, -1;
        *pk = l->p;
        pk->borrowed = true;
        g->t[t].packed = pk;
        *kernel = l->p.dtype == EFT_DTYPE_F32 ? EFT__K_SGEMM_F32 : l->p.dtype == EFT_DTYPE_F16 ? EFT__K_SGEMM_F16
                                                                                               : EFT__K_SGEMM_BF16;
    } else {
        t = eft__ir_weight(g, name, l->qt, 2, l->n, l->k, l->q, b->err);
        if (t < 0) return b->ok = false, -1;
        g->t[t].x4 = l->x4;
        *kernel = is_gq_only(l->qt) ? EFT__K_GQGEMM : b->d->int8_act ? EFT__K_QX4_I8 : EFT__K_QX4;
    }
    return t;
}

/* out = x l^T (+ bias), then act; out is made [M, N] unless given (>= 0). */
static int g_matmul(gb *b, int x, const lin *l, const char *wname, const char *bname, const char *oname, int out,
                    eft__ir_act act) {
    eft__ir_kernel k = EFT__K_NONE;
    int w = g_lin(b, wname, l, &k), bias = l->b ? g_vec(b, bname, l->b, l->n) : -1;
    if (out < 0) out = g_act(b, oname, EFT__IR_DIM_M, l->n);
    int o = g_op(b, EFT__OP_MATMUL, out, 3, (int[]){x, w, bias});
    if (o >= 0) {
        b->g->ops[o].kernel = k;
        b->g->ops[o].act = act;
    }
    return out;
}

/* Column views [M, n] at col0 of base (a fused product's parts). */
static int g_view(gb *b, const char *name, int base, int64_t col0, int64_t n) {
    int t = g_act(b, name, EFT__IR_DIM_M, n);
    if (t >= 0) {
        b->g->t[t].view_of = base;
        b->g->t[t].col0 = col0;
        b->g->t[t].ld = b->g->t[base].shape[1];
    }
    return t;
}

/* The model's norm of x's rows (RMSNorm, or LayerNorm with a bias); a weight shorter than the
 * row (Qwen3's and Gemma 3's q and k norms, [HS]) normalises each head. */
static int g_norm(gb *b, int x, int64_t rows, int64_t n, int64_t wlen, const char *oname, const char *wname,
                  const float *w, const char *bname, const float *bias) {
    eft__decoder *d = b->d;
    int out = g_act(b, oname, rows, n), wt = g_vec(b, wname, w, wlen);
    int o;
    if (d->norm == EFT__NORM_RMSNORM || !bias) {
        o = g_op(b, EFT__OP_RMSNORM, out, 2, (int[]){x, wt});
        if (o >= 0) b->g->ops[o].norm_add = d->norm_off;
    } else {
        o = g_op(b, EFT__OP_LAYERNORM, out, 3, (int[]){x, wt, g_vec(b, bname, bias, n)});
    }
    if (o >= 0) b->g->ops[o].eps = d->eps;
    return out;
}

static eft__ir_act ir_act(eft__act a) {
    return a == EFT__ACT_GELU_TANH ? EFT__IR_ACT_GELU_TANH : a == EFT__ACT_GELU ? EFT__IR_ACT_GELU : EFT__IR_ACT_SILU;
}

static int g_layer(gb *b, const eft_model *m, int64_t l, int x, int pos) {
    eft__decoder *d = b->d;
    const dec_layer *ly = &d->layers[l];
    const int64_t C = d->C, QD = d->QD, KD = d->KD, I = d->I, HS = d->HS, M = EFT__IR_DIM_M;
    names n;
    layer_names(m, d->arch, l, &n);
    char nm[EFT__IR_NAME_MAX];
#define NAME(...) (snprintf(nm, sizeof nm, __VA_ARGS__), nm)
    const long long L = (long long)l;
    int h = g_norm(b, x, M, C, C, NAME("l%lld.attn_in", L), n.attn_norm, ly->attn_norm_w, n.attn_norm_b, ly->attn_norm_b);
    int q, k, v;
    if (ly->n_qkv == 1) {
        int qkv = g_matmul(b, h, &ly->qkv[0], n.qkv, n.qkv_b, NAME("l%lld.qkv", L), -1, EFT__IR_ACT_NONE);
        q = g_view(b, NAME("l%lld.q", L), qkv, 0, QD);
        k = g_view(b, NAME("l%lld.k", L), qkv, QD, KD);
        v = g_view(b, NAME("l%lld.v", L), qkv, QD + KD, KD);
    } else {
        q = g_matmul(b, h, &ly->qkv[0], n.q, n.q_b, NAME("l%lld.q", L), -1, EFT__IR_ACT_NONE);
        k = g_matmul(b, h, &ly->qkv[1], n.k, n.k_b, NAME("l%lld.k", L), -1, EFT__IR_ACT_NONE);
        v = g_matmul(b, h, &ly->qkv[2], n.v, n.v_b, NAME("l%lld.v", L), -1, EFT__IR_ACT_NONE);
    }
    if (ly->q_norm) {
        q = g_norm(b, q, M, QD, HS, NAME("l%lld.q_normed", L), n.q_norm, ly->q_norm, NULL, NULL);
        k = g_norm(b, k, M, KD, HS, NAME("l%lld.k_normed", L), n.k_norm, ly->k_norm, NULL, NULL);
    }
    if (ly->rope) {
        const char *tab_name = ly->rope == &d->rope_local ? "rope.local" : "rope.global";
        int tab = eft__ir_find(b->g, tab_name);
        if (tab < 0 && b->ok) {
            tab = eft__ir_weight(b->g, tab_name, EFT_DTYPE_F32, 2, ly->rope->n_pos, 2 * (int64_t)ly->rope->half,
                                 ly->rope->cos_sin, b->err);
            b->ok = tab >= 0;
        }
        int qr = g_act(b, NAME("l%lld.q_rot", L), M, QD), kr = g_act(b, NAME("l%lld.k_rot", L), M, KD);
        int o1 = g_op(b, EFT__OP_ROPE, qr, 3, (int[]){q, pos, tab}), o2 = g_op(b, EFT__OP_ROPE, kr, 3, (int[]){k, pos, tab});
        if (o1 >= 0 && o2 >= 0) {
            b->g->ops[o1].heads = (int)d->NH;
            b->g->ops[o2].heads = (int)d->NKV;
            b->g->ops[o1].rope_layout = b->g->ops[o2].rope_layout = (int)d->rope_layout;
        }
        q = qr;
        k = kr;
    }
    int ks = -1, vs = -1;
    if (b->ok) {
        ks = eft__ir_tensor_add(b->g, NAME("cache.%lld.k", L), EFT__IR_STATE, d->kv_dtype, 2, d->NKV, HS, b->err);
        vs = ks < 0 ? -1 : eft__ir_tensor_add(b->g, NAME("cache.%lld.v", L), EFT__IR_STATE, d->kv_dtype, 2, d->NKV, HS, b->err);
        b->ok = vs >= 0;
    }
    int att = g_act(b, NAME("l%lld.attn", L), M, QD);
    int ao = g_op(b, EFT__OP_CACHE_ATTENTION, att, 6, (int[]){q, k, v, pos, ks, vs});
    if (ao >= 0) {
        eft__ir_op *op = &b->g->ops[ao];
        op->heads = (int)d->NH;
        op->kv_heads = (int)d->NKV;
        op->scale = ly->scale;
        op->window = ly->window;
        op->softcap = d->attn_softcap;
    }
    int o = g_matmul(b, att, &ly->o, n.o, n.o_b, NAME("l%lld.attn_out", L), -1, EFT__IR_ACT_NONE);
    if (ly->post_attn_w) o = g_norm(b, o, M, C, C, NAME("l%lld.attn_out_normed", L), n.post_attn, ly->post_attn_w, NULL, NULL);
    int x1 = g_act(b, NAME("l%lld.resid_attn", L), M, C);
    g_op(b, EFT__OP_ADD, x1, 2, (int[]){x, o});
    h = g_norm(b, x1, M, C, C, NAME("l%lld.ffn_in", L), n.ffn_norm, ly->ffn_norm_w, n.ffn_norm_b, ly->ffn_norm_b);
    int f;
    if (!d->gated) {
        f = g_matmul(b, h, &ly->gu[0], n.up, n.up_b, NAME("l%lld.ffn_act", L), -1, ir_act(d->act));
    } else {
        int gt, up;
        if (ly->n_gu == 1) {
            int gu = g_matmul(b, h, &ly->gu[0], n.gate_up, "", NAME("l%lld.gate_up", L), -1, EFT__IR_ACT_NONE);
            gt = g_view(b, NAME("l%lld.gate", L), gu, 0, I);
            up = g_view(b, NAME("l%lld.up", L), gu, I, I);
        } else {
            gt = g_matmul(b, h, &ly->gu[0], n.gate, "", NAME("l%lld.gate", L), -1, EFT__IR_ACT_NONE);
            up = g_matmul(b, h, &ly->gu[1], n.up, n.up_b, NAME("l%lld.up", L), -1, EFT__IR_ACT_NONE);
        }
        f = g_act(b, NAME("l%lld.ffn_act", L), M, I);
        int go = g_op(b, EFT__OP_GLU, f, 2, (int[]){gt, up});
        if (go >= 0) b->g->ops[go].act = ir_act(d->act);
    }
    int y = g_matmul(b, f, &ly->down, n.down, n.down_b, NAME("l%lld.ffn_out", L), -1, EFT__IR_ACT_NONE);
    if (ly->post_ffn_w) y = g_norm(b, y, M, C, C, NAME("l%lld.ffn_out_normed", L), n.post_ffn, ly->post_ffn_w, NULL, NULL);
    int x2 = g_act(b, NAME("l%lld.resid_ffn", L), M, C);
    g_op(b, EFT__OP_ADD, x2, 2, (int[]){x1, y});
#undef NAME
    return x2;
}

static eft_status graph_build(eft__decoder *d, const eft_model *m, eft__error *err) {
    eft__ir_graph *g = d->g = eft__ir_new();
    if (!g) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    gb b = {.d = d, .g = g, .err = err, .ok = true};
    const int64_t C = d->C;
    d->t_ids = eft__ir_tensor_add(g, "input.ids", EFT__IR_INPUT, EFT_DTYPE_I32, 1, EFT__IR_DIM_M, 0, err);
    d->t_pos = eft__ir_tensor_add(g, "input.positions", EFT__IR_INPUT, EFT_DTYPE_I32, 1, EFT__IR_DIM_M, 0, err);
    d->t_rows = eft__ir_tensor_add(g, "input.logit_rows", EFT__IR_INPUT, EFT_DTYPE_I32, 1, EFT__IR_DIM_R, 0, err);
    b.ok = d->t_ids >= 0 && d->t_pos >= 0 && d->t_rows >= 0;
    /* The word table is read in place from the model, as the file has it. */
    int wte = -1;
    if (b.ok) {
        wte = eft__ir_weight(g, d->wte->name, d->wte->dtype, 2, d->V, C, d->wte->data, err);
        b.ok = wte >= 0;
        if (b.ok) g->t[wte].external = true;
    }
    int wpe = -1;
    if (d->wpe && b.ok) {
        wpe = eft__ir_weight(g, "transformer.wpe.weight", EFT_DTYPE_F32, 2, d->P, C, d->wpe, err);
        b.ok = wpe >= 0;
    }
    int x = g_act(&b, "embed", EFT__IR_DIM_M, C);
    int eo = g_op(&b, EFT__OP_EMBED, x, 6, (int[]){d->t_ids, d->t_pos, wte, wpe, -1, -1});
    if (eo >= 0) g->ops[eo].scale = d->embed_scale;
    for (int64_t l = 0; l < d->L && b.ok; l++) x = g_layer(&b, m, l, x, d->t_pos);
    int rows = g_act(&b, "final.rows", EFT__IR_DIM_R, C);
    g_op(&b, EFT__OP_GATHER, rows, 2, (int[]){x, d->t_rows});
    bool gg = m->is_gguf, gpt2 = d->arch == EFT__ARCH_GPT2;
    int h = g_norm(&b, rows, EFT__IR_DIM_R, C, C, "final.norm", gg ? "output_norm.weight" : gpt2 ? "transformer.ln_f.weight"
                   : "model.norm.weight", d->out_norm_w, gg ? "output_norm.bias" : "transformer.ln_f.bias", d->out_norm_b);
    const char *hn = eft__model_find_tensor(m, gg ? "output.weight" : "lm_head.weight") ? (gg ? "output.weight" : "lm_head.weight")
                                                                                       : TIED_HEAD;
    int logits = -1;
    if (b.ok) {
        logits = eft__ir_tensor_add(g, "output.logits", EFT__IR_OUTPUT, EFT_DTYPE_F32, 2, EFT__IR_DIM_R, d->V, err);
        b.ok = logits >= 0;
        if (b.ok) g->t[logits].bound = true;
    }
    g_matmul(&b, h, &d->head, hn, "", "output.logits", logits, d->final_softcap > 0 ? EFT__IR_ACT_SOFTCAP : EFT__IR_ACT_NONE);
    if (b.ok && d->final_softcap > 0) g->ops[g->n_ops - 1].scale = d->final_softcap;
    if (!b.ok) return err->status != EFT_OK ? err->status : eft__fail(err, EFT_ERR_INTERNAL, "decoder graph: build failed");
    eft_status s = eft__pass_kernels(g, err);
    if (s == EFT_OK) s = eft__pass_group_matmuls(g, err);
    return s != EFT_OK ? eft__error_prefix(err, "decoder graph") : EFT_OK;
}

/* Checks the whole call before anything changes; writes the active rows' ids and positions into
 * the graph's inputs and records their slots. */
static eft_status check_inputs(eft__decoder *d, const int32_t *ids, const int32_t *slot, const int32_t *pos, int n,
                               const int32_t *logit_rows, int n_logits, const float *logits, int64_t *m_out,
                               eft__error *err) {
    if (n < 0 || n > d->maxT)
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "decoder: %d tokens in one call; the plan holds 0..%d "
                         "(max_tokens)", n, d->maxT);
    if (n > 0 && (!ids || !slot || !pos))
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "decoder: ids, slot and pos must be given");
    if (n_logits < 0 || n_logits > n || (n_logits > 0 && (!logit_rows || !logits)))
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "decoder: %d logit rows of %d tokens (and logit_rows and "
                         "logits must be given)", n_logits, n);
    int32_t *a_ids = eft__ir_at(d->g, d->arena, d->t_ids), *a_pos = eft__ir_at(d->g, d->arena, d->t_pos);
    int64_t m = 0;
    int32_t prev_slot = -1, prev_pos = -1;
    for (int i = 0; i < n; i++) {
        d->row_of[i] = -1;
        if (pos[i] == -1) continue;
        if (pos[i] < 0 || pos[i] >= d->ctx)
            return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "decoder: token %d has position %d, outside 0..%lld "
                             "(ctx_len %lld; -1 is padding)", i, pos[i], (long long)d->ctx - 1, (long long)d->ctx);
        if (slot[i] < 0 || slot[i] >= d->slots)
            return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "decoder: token %d is in slot %d, outside 0..%d", i,
                             slot[i], d->slots - 1);
        if (ids[i] < 0 || ids[i] >= d->V)
            return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "decoder: token %d has id %d, outside the vocabulary "
                             "of %lld", i, ids[i], (long long)d->V);
        if (slot[i] == prev_slot && pos[i] <= prev_pos)
            return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "decoder: token %d of slot %d is at position %d after "
                             "position %d; a slot's positions must increase", i, slot[i], pos[i], prev_pos);
        if (slot[i] != prev_slot)
            for (int64_t r = 0; r < m; r++)
                if (d->a_slot[r] == slot[i])
                    return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "decoder: token %d of slot %d is not next to "
                                     "the slot's other tokens; a slot's tokens must be consecutive", i, slot[i]);
        a_ids[m] = ids[i];
        a_pos[m] = pos[i];
        d->a_slot[m] = slot[i];
        d->row_of[i] = (int32_t)m++;
        prev_slot = slot[i];
        prev_pos = pos[i];
    }
    for (int j = 0; j < n_logits; j++)
        if (logit_rows[j] < 0 || logit_rows[j] >= n)
            return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "decoder: logit row %d is %d, outside 0..%d", j,
                             logit_rows[j], n - 1);
    *m_out = m;
    return EFT_OK;
}

eft_status eft__decoder_forward(eft__decoder *d, const int32_t *ids, const int32_t *slot, const int32_t *pos, int n,
                                const int32_t *logit_rows, int n_logits, float *logits, eft__error *err) {
    eft__error local;
    if (!err) err = &local;
    int64_t m = 0;
    eft_status s = check_inputs(d, ids, slot, pos, n, logit_rows, n_logits, logits, &m, err);
    if (s != EFT_OK) return s;
    /* Groups: runs of one slot's consecutive positions. */
    const int32_t *a_pos = eft__ir_at(d->g, d->arena, d->t_pos);
    int B = 0;
    for (int64_t r0 = 0; r0 < m;) {
        int64_t t = 1;
        while (r0 + t < m && d->a_slot[r0 + t] == d->a_slot[r0] && a_pos[r0 + t] == a_pos[r0] + t) t++;
        d->off[B] = (int32_t)r0;
        d->gslot[B++] = d->a_slot[r0];
        r0 += t;
    }
    d->off[B] = (int32_t)m;
    /* The rows asked for that are not padding, in order: the head computes them packed at the
     * start of logits, and they move to their places after. */
    int32_t *rows = eft__ir_at(d->g, d->arena, d->t_rows);
    int64_t k = 0;
    for (int j = 0; j < n_logits; j++)
        if (d->row_of[logit_rows[j]] >= 0) rows[k++] = d->row_of[logit_rows[j]];
    if (m > 0) {
        eft__ir_run run = {.B = B, .M = m, .off = d->off, .slot = d->gslot, .R = k, .state = d->state, .bound = logits,
                           .prof_s = d->prof_s, .prof_n = d->prof_n};
        eft__ir_exec(d->g, d->kt, d->tp, d->arena, &run, 0, d->g->n_ops);
    }
    if (k < n_logits) {
        const size_t V = (size_t)d->V;
        for (int j = n_logits - 1; j >= 0; j--) {
            float *row = logits + (size_t)j * V;
            if (d->row_of[logit_rows[j]] < 0) {
                memset(row, 0, sizeof(float) * V);
                continue;
            }
            k--;
            if (k != j) memmove(row, logits + (size_t)k * V, sizeof(float) * V);
        }
    }
    return EFT_OK;
}
