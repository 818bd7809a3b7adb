/*
 * encoder.c — the BERT family of encoders (BERT, RoBERTa, XLM-RoBERTa, MPNet): weights checked and
 * packed once at build, activations planned once for (max batch x max tokens), and a forward pass
 * that allocates nothing. Rows of a batch are computed ragged (only each row's valid tokens, back
 * to back), so padding costs nothing and cannot leak into valid positions. On top: pooling as
 * sentence-transformers defines it, and the sequence-classification head of a cross-encoder.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/cpu/kernels.h"

#include "api/model_internal.h"
#include "core/json.h"
#include "graph/program.h"

#include "models/encoder.h"

/* ---------------------------------------------------------------------------------------------
 * The encoder
 * ------------------------------------------------------------------------------------------- */

typedef struct enc_layer {
    eft__sgemm_packed qkv;  /* [3C, C]: query, key and value fused into one product */
    eft__sgemm_packed o;    /* [C, C] */
    eft__sgemm_packed up;   /* [I, C] */
    eft__sgemm_packed down; /* [C, I] */
    float *qkv_b;           /* [3C] */
    float *o_b, *ln1_w, *ln1_b; /* [C] each */
    float *up_b;            /* [I] */
    float *down_b, *ln2_w, *ln2_b; /* [C] each */
} enc_layer;

struct eft__encoder {
    eft__arch arch;
    int64_t C, NH, HS, I, L; /* channels, heads, head size, intermediate, layers */
    int64_t V, P, NT;        /* vocabulary, position rows, token types (0: none) */
    float eps, scale;
    eft__act act;
    int64_t pad_id;          /* RoBERTa-style positions count from pad_id + 1 */
    bool pos_from_pad;

    const eft__tensor_view *wte; /* [V, C], read in place (f32, f16 or bf16) */
    float *wpe;                  /* [P, C] */
    float *wtt;                  /* [NT, C] or NULL */
    float *emb_ln_w, *emb_ln_b;  /* [C] */
    enc_layer *layers;           /* [L] */

    /* MPNet: relative-position bias, depending only on j - i: [NH][2 maxT - 1], index j - i + maxT - 1. */
    float *rel_bias;

    /* Sequence classification: first token -> dense [C, C] + tanh -> out [NL, C]. */
    bool has_head;
    eft__sgemm_packed head_dense, head_out;
    float *head_dense_b; /* [C] */
    float *head_out_b;   /* [NL] */
    int64_t num_labels;

    /* Pooling (kernel modes in concatenation order) and Normalize. */
    eft__pool_mode modes[EFT__POOL_COUNT]; /* st_modules.h's count: at most every mode once */
    int n_modes;
    bool normalize;

    /* The plan: everything a forward pass touches, sized for maxB x maxT tokens. */
    int maxB, maxT, nth;
    const eft__kernels *kt;
    eft__threadpool *tp;
    float *x;      /* [maxB maxT, C]: the residual stream, rows ragged */
    float *qkv;    /* [maxB maxT, 3C] */
    float *ctx;    /* [maxB maxT, C]: attention output */
    float *tmp;    /* [maxB maxT, C]: projection outputs before the residual */
    float *inter;  /* [maxB maxT, I] */
    float *attn_work; /* eft__attention scratch, or MPNet's score rows [nth][maxT] */
    int32_t *pos;  /* [maxB maxT] position ids */
    int32_t *off;  /* [maxB + 1] first ragged row of each batch row */
    float *head_in, *head_h; /* [maxB, C] */
    int64_t M;     /* rows of the last forward */

    /* Compiled programs: every matrix and vector the build made, by tensor name, for
     * eft__encoder_save; and, for an encoder loaded from a program, that program: then all of
     * them are its bytes, borrowed, and free leaves them. */
    struct enc_rec *recs;
    int n_recs, cap_recs;
    const eft__program *prog;
    eft_dtype wdtype;  /* packed matrices: F32 or F16 */
    float *rel_tab;    /* MPNet: relative_attention_bias [buckets, NH] as the model has it */
};

typedef struct enc_rec {
    char name[EFT__PROGRAM_NAME_MAX];
    eft_dtype dtype;
    const void *data;
    uint64_t size; /* bytes */
} enc_rec;

eft__encoder_params eft__encoder_params_default(void) {
    eft__encoder_params p = {.max_batch = 1, .max_tokens = 512, .n_threads = 1, .kernels = NULL};
    return p;
}

int64_t eft__encoder_hidden_size(const eft__encoder *enc) { return enc->C; }
int64_t eft__encoder_embed_size(const eft__encoder *enc) { return enc->C * enc->n_modes; }
int64_t eft__encoder_num_labels(const eft__encoder *enc) { return enc->has_head ? enc->num_labels : 0; }

/* ---------------------------------------------------------------------------------------------
 * Build: finding, checking and converting the weights
 * ------------------------------------------------------------------------------------------- */

typedef struct builder {
    const eft_model *m;
    const char *prefix; /* "" or "bert." etc. for a model with a head */
    eft__error *err;
    eft__encoder *e;    /* records what is made; its prog, when set, is where weights come from */
} builder;

/* Notes a matrix or vector the build made under prefix+name (suffix appended), for saving. */
static bool record(builder *b, const char *name, const char *suffix, eft_dtype dtype, const void *data,
                   uint64_t size) {
    eft__encoder *e = b->e;
    if (e->n_recs == e->cap_recs) {
        int cap = e->cap_recs ? 2 * e->cap_recs : 64;
        enc_rec *r = eft__realloc(e->recs, (size_t)cap * sizeof *r);
        if (!r) {
            eft__fail(b->err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
            return false;
        }
        e->recs = r;
        e->cap_recs = cap;
    }
    enc_rec *r = &e->recs[e->n_recs++];
    snprintf(r->name, sizeof r->name, "%s%s%s", b->prefix, name, suffix);
    r->dtype = dtype;
    r->data = data;
    r->size = size;
    return true;
}

/* The program's blob prefix+name+suffix, which must hold `elems` elements of dtype (any of F32,
 * F16, BF16 when dtype is F16: a packed matrix) — borrowed from the mapping. */
static const eft__program_blob *prog_blob(builder *b, const char *name, const char *suffix, eft_dtype dtype,
                                          uint64_t elems) {
    char full[EFT__PROGRAM_NAME_MAX + 8];
    snprintf(full, sizeof full, "%s%s%s", b->prefix, name, suffix);
    const eft__program *pg = b->e->prog;
    const eft__program_blob *bl = eft__program_find(pg, full);
    if (!bl) {
        eft__fail(b->err, EFT_ERR_FORMAT, "%s: blob '%s' is missing", eft__program_path(pg), full);
        return NULL;
    }
    bool packed = dtype != EFT_DTYPE_F32;
    bool type_ok = packed ? bl->dtype == EFT_DTYPE_F32 || bl->dtype == EFT_DTYPE_F16 || bl->dtype == EFT_DTYPE_BF16
                          : bl->dtype == EFT_DTYPE_F32;
    uint64_t want_bytes;
    bool size_ok = !eft__mul_overflow_u64(elems, bl->dtype == EFT_DTYPE_F32 ? 4 : 2, &want_bytes) &&
                   bl->size == want_bytes && bl->data;
    if (!type_ok || !size_ok) {
        eft__fail(b->err, EFT_ERR_FORMAT, "%s: blob '%s' has %llu bytes of %s, expected %llu elements of %s",
                  eft__program_path(pg), full, (unsigned long long)bl->size, eft_dtype_name(bl->dtype),
                  (unsigned long long)elems, packed ? "F32, F16 or BF16" : "F32");
        return NULL;
    }
    /* Recorded too, so a loaded encoder can be saved again. */
    return record(b, name, suffix, bl->dtype, bl->data, bl->size) ? bl : NULL;
}

/* Elements of a [d0] (d1 < 0) or [d0, d1] table; UINT64_MAX when absurd. */
static uint64_t elems_of(int64_t d0, int64_t d1) {
    uint64_t n;
    if (d0 < 0 || eft__mul_overflow_u64((uint64_t)d0, (uint64_t)(d1 < 0 ? 1 : d1), &n)) return UINT64_MAX;
    return n;
}

/* A packed matrix [n, k] taken from the program, in place. */
static bool prog_linear(builder *b, eft__sgemm_packed *out, const char *name, const char *suffix, int64_t n,
                        int64_t k) {
    if (n < 1 || k < 1 || n > ((int64_t)1 << 40) || k > ((int64_t)1 << 40)) {
        eft__fail(b->err, EFT_ERR_FORMAT, "%s: config.json asks for a [%lld, %lld] matrix '%s%s%s'", b->m->path,
                  (long long)n, (long long)k, b->prefix, name, suffix);
        return false;
    }
    int64_t np = (n + EFT__SGEMM_NR - 1) / EFT__SGEMM_NR;
    const eft__program_blob *bl = prog_blob(b, name, suffix, EFT_DTYPE_F16, elems_of(np * EFT__SGEMM_NR, k));
    if (!bl) return false;
    *out = (eft__sgemm_packed){.n = n, .k = k, .npanels = np, .dtype = bl->dtype, .data = (void *)bl->data,
                               .borrowed = true};
    b->e->wdtype = bl->dtype;
    return true;
}

/* Packs w[n, k] f32 as the encoder's weight type. */
static eft_status pack_as(builder *b, eft__sgemm_packed *out, const float *w, int64_t n, int64_t k) {
    if (b->e->wdtype != EFT_DTYPE_F16) return eft__sgemm_pack(out, w, n, k, k, b->err);
    uint16_t *h = eft__malloc_array((size_t)(n * k), sizeof(uint16_t));
    if (!h) return eft__fail(b->err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    for (int64_t i = 0; i < n * k; i++) h[i] = eft__f32_to_f16(w[i]);
    eft_status s = eft__sgemm_pack_half(out, EFT_DTYPE_F16, h, n, k, k, b->err);
    eft__free(h);
    return s;
}

static bool record_linear(builder *b, const char *name, const char *suffix, const eft__sgemm_packed *pk) {
    uint64_t bytes = (uint64_t)pk->npanels * EFT__SGEMM_NR * (uint64_t)pk->k * (pk->dtype == EFT_DTYPE_F32 ? 4 : 2);
    return record(b, name, suffix, pk->dtype, pk->data, bytes);
}

static void shape_str(char *buf, size_t n, const int64_t *shape, int ndim) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* The tensor prefix+name, which must be a float type of shape [d0] (d1 < 0) or [d0, d1]. */
static const eft__tensor_view *want(builder *b, const char *name, int64_t d0, int64_t d1) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", b->prefix, name);
    const eft__tensor_view *t = eft__model_find_tensor(b->m, full);
    int64_t shape[2] = {d0, d1};
    int ndim = d1 < 0 ? 1 : 2;
    char ws[64], gs[160];
    shape_str(ws, sizeof ws, shape, ndim);
    if (!t) {
        eft__fail(b->err, EFT_ERR_NOT_FOUND, "%s: tensor '%s' %s is missing", b->m->path, full, ws);
        return NULL;
    }
    bool ok = t->ndim == ndim && t->shape[0] == d0 && (ndim == 1 || t->shape[1] == d1);
    if (!ok) {
        shape_str(gs, sizeof gs, t->shape, t->ndim);
        eft__fail(b->err, EFT_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", b->m->path, full, gs, ws);
        return NULL;
    }
    if (t->dtype != EFT_DTYPE_F32 && t->dtype != EFT_DTYPE_F16 && t->dtype != EFT_DTYPE_BF16) {
        eft__fail(b->err, EFT_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s; the encoder reads F32, F16 or BF16",
                  b->m->path, full, eft_dtype_name(t->dtype));
        return NULL;
    }
    return t;
}

/* A vector or small table converted to owned f32. */
static float *want_f32(builder *b, const char *name, int64_t d0, int64_t d1) {
    if (b->e->prog) {
        const eft__program_blob *bl = prog_blob(b, name, "", EFT_DTYPE_F32, elems_of(d0, d1));
        return bl ? (float *)bl->data : NULL;
    }
    const eft__tensor_view *t = want(b, name, d0, d1);
    if (!t) return NULL;
    float *out = eft__malloc_array((size_t)t->n_elems, sizeof(float));
    if (!out) {
        eft__fail(b->err, EFT_ERR_OUT_OF_MEMORY, "out of memory converting '%s%s'", b->prefix, name);
        return NULL;
    }
    if (eft__tensor_to_f32(t, out, t->n_elems, b->err) != EFT_OK ||
        !record(b, name, "", EFT_DTYPE_F32, out, t->n_elems * sizeof(float))) {
        eft__free(out);
        return NULL;
    }
    return out;
}

static bool want_linear(builder *b, eft__sgemm_packed *out, const char *name, int64_t n, int64_t k) {
    if (b->e->prog) return prog_linear(b, out, name, "", n, k);
    const eft__tensor_view *t = want(b, name, n, k);
    if (!t) return false;
    eft_status s;
    if (b->e->wdtype != EFT_DTYPE_F16) {
        s = eft__sgemm_pack_typed(out, t->dtype, t->data, n, k, k, b->err);
    } else if (t->dtype == EFT_DTYPE_F16) {
        s = eft__sgemm_pack_half(out, EFT_DTYPE_F16, t->data, n, k, k, b->err);
    } else {
        float *w = eft__malloc_array((size_t)(n * k), sizeof(float));
        s = w ? eft__tensor_to_f32(t, w, (uint64_t)(n * k), b->err) : eft__fail(b->err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        if (s == EFT_OK) s = pack_as(b, out, w, n, k);
        eft__free(w);
    }
    if (s != EFT_OK) {
        eft__error_prefix(b->err, "packing '%s%s'", b->prefix, name);
        return false;
    }
    return record_linear(b, name, "", out);
}

/* Q, K and V stacked into one [3C, C] matrix (and [3C] bias), then packed: one GEMM instead of three. */
static bool want_qkv(builder *b, enc_layer *ly, const char *const names[3], const char *const bnames[3], int64_t C) {
    /* Saved under the query's names with "|qkv": the fused [3C, C] matrix and [3C] bias. */
    if (b->e->prog) {
        const eft__program_blob *bl = prog_blob(b, bnames[0], "|qkv", EFT_DTYPE_F32, elems_of(3 * C, -1));
        ly->qkv_b = bl ? (float *)bl->data : NULL;
        return bl && prog_linear(b, &ly->qkv, names[0], "|qkv", 3 * C, C);
    }
    float *w = eft__malloc_array((size_t)(3 * C * C), sizeof(float));
    ly->qkv_b = eft__malloc_array((size_t)(3 * C), sizeof(float));
    bool ok = w && ly->qkv_b;
    if (!ok) eft__fail(b->err, EFT_ERR_OUT_OF_MEMORY, "out of memory fusing '%s%s'", b->prefix, names[0]);
    for (int i = 0; ok && i < 3; i++) {
        const eft__tensor_view *t = want(b, names[i], C, C);
        const eft__tensor_view *tb = t ? want(b, bnames[i], C, -1) : NULL;
        ok = tb && eft__tensor_to_f32(t, w + i * C * C, (uint64_t)(C * C), b->err) == EFT_OK &&
             eft__tensor_to_f32(tb, ly->qkv_b + i * C, (uint64_t)C, b->err) == EFT_OK;
    }
    ok = ok && pack_as(b, &ly->qkv, w, 3 * C, C) == EFT_OK && record_linear(b, names[0], "|qkv", &ly->qkv) &&
         record(b, bnames[0], "|qkv", EFT_DTYPE_F32, ly->qkv_b, (uint64_t)(3 * C) * sizeof(float));
    eft__free(w);
    return ok;
}

static bool load_layer(builder *b, eft__encoder *e, int64_t l, enc_layer *ly) {
    char n[12][160];
    const char *base = "encoder.layer";
    const int64_t C = e->C, I = e->I;
    if (e->arch == EFT__ARCH_MPNET) {
        const char *fmt[8] = {"attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o",
                              "attention.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"};
        for (int i = 0; i < 8; i++) snprintf(n[i], sizeof n[i], "%s.%lld.%s", base, (long long)l, fmt[i]);
    } else {
        const char *fmt[8] = {"attention.self.query", "attention.self.key", "attention.self.value",
                              "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
                              "output.dense", "output.LayerNorm"};
        for (int i = 0; i < 8; i++) snprintf(n[i], sizeof n[i], "%s.%lld.%s", base, (long long)l, fmt[i]);
    }
    char w[8][176], bb[8][176];
    for (int i = 0; i < 8; i++) {
        snprintf(w[i], sizeof w[i], "%s.weight", n[i]);
        snprintf(bb[i], sizeof bb[i], "%s.bias", n[i]);
    }
    const char *qn[3] = {w[0], w[1], w[2]}, *qb[3] = {bb[0], bb[1], bb[2]};
    return want_qkv(b, ly, qn, qb, C) && want_linear(b, &ly->o, w[3], C, C) &&
           (ly->o_b = want_f32(b, bb[3], C, -1)) && (ly->ln1_w = want_f32(b, w[4], C, -1)) &&
           (ly->ln1_b = want_f32(b, bb[4], C, -1)) && want_linear(b, &ly->up, w[5], I, C) &&
           (ly->up_b = want_f32(b, bb[5], I, -1)) && want_linear(b, &ly->down, w[6], C, I) &&
           (ly->down_b = want_f32(b, bb[6], C, -1)) && (ly->ln2_w = want_f32(b, w[7], C, -1)) &&
           (ly->ln2_b = want_f32(b, bb[7], C, -1));
}

/* MPNet's bucket of a relative position j - i (transformers' relative_position_bucket, bidirectional,
 * 32 buckets, max_distance 128), computed in float as torch does so boundary cases agree. */
static int64_t mpnet_bucket(int64_t rel, int64_t num_buckets, int64_t max_distance) {
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

static eft_status load_pooling(eft__encoder *e, const eft_model *m, eft__error *err) {
    /* Kernel pooling mode of each sentence-transformers mode. */
    static const eft__pool_mode map[EFT__POOL_COUNT] = {
        [EFT__POOL_CLS] = EFT__POOLOP_CLS,
        [EFT__POOL_MAX] = EFT__POOLOP_MAX,
        [EFT__POOL_MEAN] = EFT__POOLOP_MEAN,
        [EFT__POOL_MEAN_SQRT_LEN] = EFT__POOLOP_MEAN_SQRT_LEN,
        [EFT__POOL_WEIGHTEDMEAN] = EFT__POOLOP_WEIGHTEDMEAN,
        [EFT__POOL_LASTTOKEN] = EFT__POOLOP_LASTTOKEN,
    };
    e->n_modes = 0;
    int dim = m->has_st && m->st.has_pooling ? m->st.pooling.word_embedding_dimension : 0;
    if (dim > 0 && dim != e->C)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: %s/config.json: the Pooling module expects %d dimensions, "
                         "the transformer gives %lld", m->path, m->st.pooling_path ? m->st.pooling_path : "pooling",
                         dim, (long long)e->C);
    if (m->has_st && m->st.has_pooling && m->st.pooling.n_modes > 0) {
        for (int i = 0; i < m->st.pooling.n_modes && i < EFT__POOL_COUNT; i++)
            e->modes[e->n_modes++] = map[m->st.pooling.order[i]];
        e->normalize = m->st.normalize;
    } else {
        e->modes[e->n_modes++] = EFT__POOLOP_MEAN;
        e->normalize = m->has_st && m->st.normalize;
    }
    return EFT_OK;
}

static eft_status plan(eft__encoder *e, const eft__encoder_params *p, eft__error *err) {
    const int64_t rows = (int64_t)p->max_batch * p->max_tokens, C = e->C;
    e->maxB = p->max_batch;
    e->maxT = p->max_tokens;
    e->nth = p->n_threads > 0 ? p->n_threads : 1;
    if (e->nth > 1) {
        eft_status s = eft__threadpool_create(e->nth, &e->tp, err);
        if (s != EFT_OK) return s;
    }
    size_t attn_floats;
    if (e->arch == EFT__ARCH_MPNET) {
        attn_floats = (size_t)e->nth * (size_t)p->max_tokens;
    } else {
        eft__attn_params ap = {.t = p->max_tokens, .tk = p->max_tokens, .nh = (int)e->NH, .nkv = (int)e->NH,
                               .hs = (int)e->HS, .ldq = 3 * C, .ldk = 3 * C, .ldv = 3 * C, .ldo = C};
        attn_floats = eft__attention_work_floats(&ap, e->nth);
    }
    e->x = eft__malloc_aligned(sizeof(float) * (size_t)(rows * C));
    e->qkv = eft__malloc_aligned(sizeof(float) * (size_t)(rows * 3 * C));
    e->ctx = eft__malloc_aligned(sizeof(float) * (size_t)(rows * C));
    e->tmp = eft__malloc_aligned(sizeof(float) * (size_t)(rows * C));
    e->inter = eft__malloc_aligned(sizeof(float) * (size_t)(rows * e->I));
    e->attn_work = eft__malloc_aligned(sizeof(float) * attn_floats);
    e->pos = eft__malloc_array((size_t)rows, sizeof(int32_t));
    e->off = eft__malloc_array((size_t)p->max_batch + 1, sizeof(int32_t));
    e->head_in = eft__malloc_aligned(sizeof(float) * (size_t)(p->max_batch * C));
    e->head_h = eft__malloc_aligned(sizeof(float) * (size_t)(p->max_batch * C));
    if (!e->x || !e->qkv || !e->ctx || !e->tmp || !e->inter || !e->attn_work || !e->pos || !e->off ||
        !e->head_in || !e->head_h)
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory planning activations for %d x %d tokens",
                         p->max_batch, p->max_tokens);
    return EFT_OK;
}

/* Clears the pointers into a program's mapping so that free leaves them alone. */
static void forget_borrowed(eft__encoder *e) {
    for (int64_t l = 0; e->layers && l < e->L; l++) {
        enc_layer *ly = &e->layers[l];
        ly->qkv_b = ly->o_b = ly->ln1_w = ly->ln1_b = ly->up_b = ly->down_b = ly->ln2_w = ly->ln2_b = NULL;
    }
    e->head_dense_b = e->head_out_b = e->wpe = e->wtt = e->emb_ln_w = e->emb_ln_b = e->rel_tab = NULL;
}

void eft__encoder_free(eft__encoder *e) {
    if (!e) return;
    if (e->prog) forget_borrowed(e);
    eft__free(e->recs);
    eft__free(e->rel_tab);
    if (e->layers) {
        for (int64_t l = 0; l < e->L; l++) {
            enc_layer *ly = &e->layers[l];
            eft__sgemm_packed_free(&ly->qkv);
            eft__sgemm_packed_free(&ly->o);
            eft__sgemm_packed_free(&ly->up);
            eft__sgemm_packed_free(&ly->down);
            eft__free(ly->qkv_b);
            eft__free(ly->o_b);
            eft__free(ly->ln1_w);
            eft__free(ly->ln1_b);
            eft__free(ly->up_b);
            eft__free(ly->down_b);
            eft__free(ly->ln2_w);
            eft__free(ly->ln2_b);
        }
        eft__free(e->layers);
    }
    eft__sgemm_packed_free(&e->head_dense);
    eft__sgemm_packed_free(&e->head_out);
    eft__free(e->head_dense_b);
    eft__free(e->head_out_b);
    eft__free(e->wpe);
    eft__free(e->wtt);
    eft__free(e->emb_ln_w);
    eft__free(e->emb_ln_b);
    eft__free(e->rel_bias);
    eft__threadpool_free(e->tp);
    eft__free_aligned(e->x);
    eft__free_aligned(e->qkv);
    eft__free_aligned(e->ctx);
    eft__free_aligned(e->tmp);
    eft__free_aligned(e->inter);
    eft__free_aligned(e->attn_work);
    eft__free(e->pos);
    eft__free(e->off);
    eft__free_aligned(e->head_in);
    eft__free_aligned(e->head_h);
    eft__free(e);
}

/* Family prefix of the base model inside a checkpoint with a head (BertForSequenceClassification
 * stores "bert.embeddings...", XLMRobertaFor... "roberta.embeddings..."). */
static const char *family_prefix(eft__arch a) {
    switch (a) {
    case EFT__ARCH_BERT: return "bert.";
    case EFT__ARCH_ROBERTA:
    case EFT__ARCH_XLM_ROBERTA: return "roberta.";
    case EFT__ARCH_MPNET: return "mpnet.";
    default: return "";
    }
}

static eft_status build(eft__encoder *e, const eft_model *m, const eft__encoder_params *p, eft__error *err) {
    const eft__model_config *c = &m->cfg;
    if (!m->has_cfg || !c->is_encoder ||
        (c->arch != EFT__ARCH_BERT && c->arch != EFT__ARCH_ROBERTA && c->arch != EFT__ARCH_XLM_ROBERTA &&
         c->arch != EFT__ARCH_MPNET))
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: model_type '%s' is not an encoder eft implements "
                         "(bert, roberta, xlm-roberta, mpnet)", m->path, m->has_cfg ? c->model_type : "?");
    if (m->is_gguf || !m->ckpt)
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: encoders are read from safetensors folders only", m->path);
    if (p->max_batch < 1 || p->max_tokens < 1 || p->max_batch > (1 << 20) || p->max_tokens > (1 << 20))
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "encoder plan: max_batch %d and max_tokens %d must be "
                         "in [1, 2^20]", p->max_batch, p->max_tokens);
    if (p->weight_dtype != EFT_DTYPE_F32 && p->weight_dtype != EFT_DTYPE_F16)
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "encoder: weights packed as %s; F32 and F16 are implemented",
                         eft_dtype_name(p->weight_dtype));
    e->wdtype = p->weight_dtype;
    e->arch = c->arch;
    e->C = c->hidden_size;
    e->NH = c->num_attention_heads;
    e->L = c->num_hidden_layers;
    e->I = c->intermediate_size;
    e->V = c->vocab_size;
    e->P = c->max_position_embeddings;
    e->NT = c->arch == EFT__ARCH_MPNET ? 0 : c->type_vocab_size;
    e->eps = (float)c->norm_eps;
    e->act = c->hidden_act;
    e->pad_id = c->pad_token_id;
    e->pos_from_pad = c->arch != EFT__ARCH_BERT;
    if (e->C <= 0 || e->NH <= 0 || e->C % e->NH != 0 || e->L <= 0 || e->I <= 0 || e->V <= 0 || e->P <= 0)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: config.json: hidden_size %lld, heads %lld, layers %lld, "
                         "intermediate %lld, vocab %lld, positions %lld do not make an encoder", m->path,
                         (long long)e->C, (long long)e->NH, (long long)e->L, (long long)e->I, (long long)e->V,
                         (long long)e->P);
    e->HS = e->C / e->NH;
    e->scale = c->attn_scale > 0 ? (float)c->attn_scale : 1.0f / sqrtf((float)e->HS);
    if (e->pos_from_pad && e->pad_id < 0)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: config.json: %s positions count from pad_token_id + 1, "
                         "but pad_token_id is not set", m->path, c->model_type);
    /* The largest position a row of max_tokens reaches must have a row in the table. */
    int64_t last_pos = (int64_t)p->max_tokens - 1 + (e->pos_from_pad ? e->pad_id + 1 : 0);
    if (last_pos >= e->P)
        return eft__fail(err, EFT_ERR_LIMIT, "%s: max_tokens %d needs position %lld, but the model has %lld "
                         "position embeddings (at most %lld tokens)", m->path, p->max_tokens,
                         (long long)last_pos, (long long)e->P,
                         (long long)(e->P - (e->pos_from_pad ? e->pad_id + 1 : 0)));

    builder b = {.m = m, .prefix = "", .err = err, .e = e};
    if (!eft__model_find_tensor(m, "embeddings.word_embeddings.weight")) {
        char probe[96];
        snprintf(probe, sizeof probe, "%sembeddings.word_embeddings.weight", family_prefix(e->arch));
        if (eft__model_find_tensor(m, probe)) b.prefix = family_prefix(e->arch);
    }
    if (!(e->wte = want(&b, "embeddings.word_embeddings.weight", e->V, e->C)) ||
        !(e->wpe = want_f32(&b, "embeddings.position_embeddings.weight", e->P, e->C)) ||
        (e->NT > 0 && !(e->wtt = want_f32(&b, "embeddings.token_type_embeddings.weight", e->NT, e->C))) ||
        !(e->emb_ln_w = want_f32(&b, "embeddings.LayerNorm.weight", e->C, -1)) ||
        !(e->emb_ln_b = want_f32(&b, "embeddings.LayerNorm.bias", e->C, -1)))
        return err->status;
    e->layers = eft__calloc((size_t)e->L, sizeof(enc_layer));
    if (!e->layers) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    for (int64_t l = 0; l < e->L; l++)
        if (!load_layer(&b, e, l, &e->layers[l])) return err->status;

    if (e->arch == EFT__ARCH_MPNET) {
        int64_t nb = c->relative_attention_num_buckets > 0 ? c->relative_attention_num_buckets : 32;
        float *tab = want_f32(&b, "encoder.relative_attention_bias.weight", nb, e->NH); /* [buckets, NH] */
        if (!tab) return err->status;
        e->rel_tab = tab; /* kept: a program stores the table, not this plan's expansion of it */
        int64_t span = 2 * (int64_t)p->max_tokens - 1;
        e->rel_bias = eft__malloc_array((size_t)(e->NH * span), sizeof(float));
        if (!e->rel_bias) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        for (int64_t d = 0; d < span; d++) {
            int64_t bucket = mpnet_bucket(d - (p->max_tokens - 1), nb, 128);
            for (int64_t h = 0; h < e->NH; h++) e->rel_bias[h * span + d] = tab[bucket * e->NH + h];
        }
    }

    if (c->task == EFT__TASK_SEQ_CLASSIFICATION) {
        e->num_labels = c->num_labels;
        if (e->num_labels < 1 || e->num_labels > (1 << 16))
            return eft__fail(err, EFT_ERR_FORMAT, "%s: num_labels %lld", m->path, (long long)e->num_labels);
        builder hb = {.m = m, .prefix = "", .err = err, .e = e};
        /* BertForSequenceClassification classifies the pooler's output; RoBERTa, XLM-R and MPNet
         * have their own two-layer head (dense + tanh, out_proj) on the first token instead. */
        bool bert_head = e->arch == EFT__ARCH_BERT;
        char dense[64];
        snprintf(dense, sizeof dense, "%spooler.dense", b.prefix);
        const char *dn = bert_head ? dense : "classifier.dense";
        const char *on = bert_head ? "classifier" : "classifier.out_proj";
        char nm[4][96];
        snprintf(nm[0], sizeof nm[0], "%s.weight", dn);
        snprintf(nm[1], sizeof nm[1], "%s.bias", dn);
        snprintf(nm[2], sizeof nm[2], "%s.weight", on);
        snprintf(nm[3], sizeof nm[3], "%s.bias", on);
        if (!want_linear(&hb, &e->head_dense, nm[0], e->C, e->C) || !(e->head_dense_b = want_f32(&hb, nm[1], e->C, -1)) ||
            !want_linear(&hb, &e->head_out, nm[2], e->num_labels, e->C) ||
            !(e->head_out_b = want_f32(&hb, nm[3], e->num_labels, -1)))
            return err->status;
        e->has_head = true;
    }
    eft_status s = load_pooling(e, m, err);
    if (s != EFT_OK) return s;
    e->kt = p->kernels ? p->kernels : eft__kernels_get();
    return plan(e, p, err);
}

eft_status eft__encoder_build(const eft_model *m, const eft__encoder_params *p, eft__encoder **out, eft__error *err) {
    *out = NULL;
    eft__error local; /* the helpers report through err->status, so there always is one */
    if (!err) err = &local;
    eft__error_clear(err);
    eft__encoder_params def = eft__encoder_params_default();
    if (!p) p = &def;
    eft__encoder *e = eft__calloc(1, sizeof *e);
    if (!e) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    eft_status s = build(e, m, p, err);
    if (s != EFT_OK) {
        eft__encoder_free(e);
        return s;
    }
    *out = e;
    return EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Forward
 * ------------------------------------------------------------------------------------------- */

/* Row-wise work spread over the pool: the residual add + LayerNorm, or the activation. */
typedef enum { ROWS_ADD_LN, ROWS_ACT } rows_op;

typedef struct rows_ctx {
    const eft__encoder *e;
    rows_op op;
    int64_t m;
    float *x;             /* ADD_LN: [M, C] in/out; ACT: [M, I] in/out */
    const float *a;       /* ADD_LN: [M, C] added to x before the norm */
    const float *w, *b;   /* [C] */
} rows_ctx;

static void act_row(const eft__encoder *e, float *x, int64_t n) {
    const eft__kernels *kt = e->kt;
    switch (e->act) {
    case EFT__ACT_GELU: kt->gelu_erf(x, x, n); break;
    case EFT__ACT_GELU_TANH: kt->gelu_tanh(x, x, n); break;
    case EFT__ACT_SILU: kt->silu(x, x, n); break;
    case EFT__ACT_RELU:
        for (int64_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : 0;
        break;
    case EFT__ACT_QUICK_GELU:
        for (int64_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
        break;
    default: break;
    }
}

static void rows_task(void *arg, int ith, int nth) {
    rows_ctx *r = arg;
    const eft__encoder *e = r->e;
    int64_t b0, b1;
    eft__split_range(r->m, ith, nth, &b0, &b1);
    if (r->op == ROWS_ACT) {
        /* Whole rows are contiguous, so one call covers the share. */
        act_row(e, r->x + b0 * e->I, (b1 - b0) * e->I);
        return;
    }
    for (int64_t i = b0; i < b1; i++) {
        float *x = r->x + i * e->C;
        if (r->a) e->kt->add(x, x, r->a + i * e->C, e->C);
        e->kt->layernorm(x, x, r->w, r->b, e->C, e->eps);
    }
}

static void run_rows(eft__encoder *e, rows_ctx *r) {
    if (e->tp) eft__threadpool_run(e->tp, rows_task, r);
    else rows_task(r, 0, 1);
}

/* MPNet attention for one sequence: softmax(q k^T scale + bias[h][j - i]) v, one (head, query)
 * pair per work item. The flash kernel has no additive bias, so this is the plain form. */
typedef struct mpnet_attn_ctx {
    const eft__encoder *e;
    const float *qkv; /* [len, 3C] */
    float *out;       /* [len, C] */
    int64_t len;
} mpnet_attn_ctx;

static void mpnet_attn_task(void *arg, int ith, int nth) {
    mpnet_attn_ctx *a = arg;
    const eft__encoder *e = a->e;
    const eft__kernels *kt = e->kt;
    const int64_t C = e->C, HS = e->HS, len = a->len, span = 2 * (int64_t)e->maxT - 1;
    float *s = e->attn_work + (int64_t)ith * e->maxT; /* [len] scores */
    int64_t w0, w1;
    eft__split_range(e->NH * len, ith, nth, &w0, &w1);
    for (int64_t w = w0; w < w1; w++) {
        int64_t h = w / len, i = w % len;
        const float *q = a->qkv + i * 3 * C + h * HS;
        const float *bias = e->rel_bias + h * span + (e->maxT - 1) - i;
        for (int64_t j = 0; j < len; j++)
            s[j] = kt->dot_f32(q, a->qkv + j * 3 * C + C + h * HS, HS) * e->scale + bias[j];
        kt->softmax(s, len);
        float *o = a->out + i * C + h * HS;
        memset(o, 0, sizeof(float) * (size_t)HS);
        for (int64_t j = 0; j < len; j++) kt->axpy_f32(o, s[j], a->qkv + j * 3 * C + 2 * C + h * HS, HS);
    }
}

static void attention(eft__encoder *e, int B) {
    const int64_t C = e->C;
    for (int b = 0; b < B; b++) {
        int64_t r0 = e->off[b], len = e->off[b + 1] - r0;
        if (len == 0) continue;
        const float *q = e->qkv + r0 * 3 * C;
        float *o = e->ctx + r0 * C;
        if (e->arch == EFT__ARCH_MPNET) {
            mpnet_attn_ctx a = {.e = e, .qkv = q, .out = o, .len = len};
            if (e->tp) eft__threadpool_run(e->tp, mpnet_attn_task, &a);
            else mpnet_attn_task(&a, 0, 1);
            continue;
        }
        eft__attn_params ap = {.t = len, .tk = len, .nh = (int)e->NH, .nkv = (int)e->NH, .hs = (int)e->HS,
                               .ldq = 3 * C, .ldk = 3 * C, .ldv = 3 * C, .ldo = C, .q_pos0 = 0,
                               .scale = e->scale, .causal = false, .window = 0, .kv_len = 0, .key_mask = NULL};
        eft__attention(e->kt, e->tp, o, q, q + C, q + 2 * C, &ap, e->attn_work);
    }
}

/* Checks the inputs and lays out the ragged rows, positions and embeddings in e->x. */
static eft_status embed_tokens(eft__encoder *e, const int32_t *ids, const int32_t *type_ids, const int32_t *lens,
                               int B, int T, eft__error *err) {
    if (!ids || !lens || B < 1 || T < 1 || B > e->maxB || T > e->maxT)
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "encoder input: batch %d x %d tokens; the plan holds "
                         "1..%d x 1..%d and ids and lens must be given", B, T, e->maxB, e->maxT);
    const int64_t C = e->C;
    e->off[0] = 0;
    for (int b = 0; b < B; b++) {
        if (lens[b] < 0 || lens[b] > T)
            return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "encoder input: row %d has length %d, outside 0..%d",
                             b, lens[b], T);
        e->off[b + 1] = e->off[b] + lens[b];
        for (int t = 0; t < lens[b]; t++) {
            int32_t id = ids[(int64_t)b * T + t];
            if (id < 0 || id >= e->V)
                return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "encoder input: token id %d at [%d, %d] is "
                                 "outside the vocabulary of %lld", id, b, t, (long long)e->V);
            int32_t ty = type_ids ? type_ids[(int64_t)b * T + t] : 0;
            if (ty < 0 || ty >= (e->NT > 0 ? e->NT : 1))
                return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "encoder input: token type %d at [%d, %d] is "
                                 "outside 0..%lld", ty, b, t, (long long)(e->NT > 0 ? e->NT - 1 : 0));
        }
    }
    e->M = e->off[B];
    for (int b = 0; b < B; b++) {
        const int32_t *row = ids + (int64_t)b * T;
        int64_t r0 = e->off[b], len = lens[b], seen = 0;
        /* transformers' create_position_ids_from_input_ids: a non-pad token's position is pad + (its
         * rank among non-pad tokens); pad tokens sit at pad. BERT counts 0, 1, 2, ... */
        for (int64_t t = 0; t < len; t++) {
            if (!e->pos_from_pad) e->pos[r0 + t] = (int32_t)t;
            else if (row[t] == e->pad_id) e->pos[r0 + t] = (int32_t)e->pad_id;
            else e->pos[r0 + t] = (int32_t)(e->pad_id + ++seen);
        }
        if (len && !eft__embedding_gather(e->x + r0 * C, C, e->wte->data, e->wte->dtype, e->V, C, C, row, len))
            return eft__fail(err, EFT_ERR_INTERNAL, "embedding gather refused checked ids");
        for (int64_t t = 0; t < len; t++) {
            float *x = e->x + (r0 + t) * C;
            e->kt->add(x, x, e->wpe + (int64_t)e->pos[r0 + t] * C, C);
            if (e->wtt) e->kt->add(x, x, e->wtt + (int64_t)(type_ids ? type_ids[(int64_t)b * T + t] : 0) * C, C);
        }
    }
    rows_ctx r = {.e = e, .op = ROWS_ADD_LN, .m = e->M, .x = e->x, .a = NULL, .w = e->emb_ln_w, .b = e->emb_ln_b};
    run_rows(e, &r);
    return EFT_OK;
}

eft_status eft__encoder_forward(eft__encoder *e, const int32_t *ids, const int32_t *type_ids, const int32_t *lens,
                                int B, int T, float *hidden_out, eft__error *err) {
    eft_status s = embed_tokens(e, ids, type_ids, lens, B, T, err);
    if (s != EFT_OK) return s;
    const int64_t M = e->M, C = e->C;
    if (M > 0) {
        for (int64_t l = 0; l < e->L; l++) {
            const enc_layer *ly = &e->layers[l];
            eft__sgemm(e->kt, e->tp, e->qkv, 3 * C, e->x, C, M, &ly->qkv, ly->qkv_b);
            attention(e, B);
            eft__sgemm(e->kt, e->tp, e->tmp, C, e->ctx, C, M, &ly->o, ly->o_b);
            rows_ctx r1 = {.e = e, .op = ROWS_ADD_LN, .m = M, .x = e->x, .a = e->tmp, .w = ly->ln1_w, .b = ly->ln1_b};
            run_rows(e, &r1);
            eft__sgemm(e->kt, e->tp, e->inter, e->I, e->x, C, M, &ly->up, ly->up_b);
            rows_ctx ra = {.e = e, .op = ROWS_ACT, .m = M, .x = e->inter};
            run_rows(e, &ra);
            eft__sgemm(e->kt, e->tp, e->tmp, C, e->inter, e->I, M, &ly->down, ly->down_b);
            rows_ctx r2 = {.e = e, .op = ROWS_ADD_LN, .m = M, .x = e->x, .a = e->tmp, .w = ly->ln2_w, .b = ly->ln2_b};
            run_rows(e, &r2);
        }
    }
    if (hidden_out) {
        for (int b = 0; b < B; b++) {
            float *o = hidden_out + (int64_t)b * T * C;
            int64_t len = lens[b];
            if (len) memcpy(o, e->x + (int64_t)e->off[b] * C, sizeof(float) * (size_t)(len * C));
            memset(o + len * C, 0, sizeof(float) * (size_t)((T - len) * C));
        }
    }
    return EFT_OK;
}

eft_status eft__encoder_embed(eft__encoder *e, const int32_t *ids, const int32_t *type_ids, const int32_t *lens,
                              int B, int T, float *out, eft__error *err) {
    eft_status s = eft__encoder_forward(e, ids, type_ids, lens, B, T, NULL, err);
    if (s != EFT_OK) return s;
    const int64_t C = e->C, D = C * e->n_modes;
    for (int b = 0; b < B; b++) {
        float *o = out + (int64_t)b * D;
        int64_t len = e->off[b + 1] - e->off[b];
        if (len == 0) {
            /* Nothing to pool (a caller's empty row; real inputs carry special tokens). */
            memset(o, 0, sizeof(float) * (size_t)D);
            continue;
        }
        for (int k = 0; k < e->n_modes; k++)
            eft__pool(o + k * C, e->x + (int64_t)e->off[b] * C, C, len, C, NULL, e->modes[k]);
        if (e->normalize) eft__l2_normalize(o, D);
    }
    return EFT_OK;
}

eft_status eft__encoder_classify(eft__encoder *e, const int32_t *ids, const int32_t *type_ids, const int32_t *lens,
                                 int B, int T, float *logits, eft__error *err) {
    if (!e->has_head)
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "this model has no sequence-classification head "
                         "(its architectures entry is not *ForSequenceClassification)");
    for (int b = 0; lens && b < B; b++)
        if (lens[b] < 1)
            return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "encoder input: row %d is empty; classification "
                             "reads its first token", b);
    eft_status s = eft__encoder_forward(e, ids, type_ids, lens, B, T, NULL, err);
    if (s != EFT_OK) return s;
    const int64_t C = e->C;
    for (int b = 0; b < B; b++) memcpy(e->head_in + b * C, e->x + (int64_t)e->off[b] * C, sizeof(float) * (size_t)C);
    eft__sgemm(e->kt, e->tp, e->head_h, C, e->head_in, C, B, &e->head_dense, e->head_dense_b);
    for (int64_t i = 0; i < B * C; i++) e->head_h[i] = tanhf(e->head_h[i]);
    eft__sgemm(e->kt, e->tp, logits, e->num_labels, e->head_h, C, B, &e->head_out, e->head_out_b);
    return EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Compiled programs
 * ------------------------------------------------------------------------------------------- */

eft_status eft__encoder_model_hash(const eft_model *m, uint64_t *out, eft__error *err) {
    if (m->is_gguf || !m->ckpt)
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: encoders are read from safetensors folders only", m->path);
    static const char *const fixed[] = {"config.json", "model.safetensors.index.json", "modules.json",
                                        "sentence_bert_config.json"};
    size_t nf = eft__st_checkpoint_file_count(m->ckpt), n = 0;
    char **paths = eft__calloc(nf + 5, sizeof *paths);
    bool ok = paths != NULL;
    for (size_t i = 0; ok && i < 4; i++) ok = (paths[n++] = eft__path_join(m->path, fixed[i])) != NULL;
    for (size_t i = 0; ok && i < nf; i++) ok = (paths[n++] = eft__strdup(eft__st_checkpoint_file_path(m->ckpt, i))) != NULL;
    if (ok && m->has_st && m->st.pooling_path)
        ok = (paths[n++] = eft__asprintf("%s/%s/config.json", m->path, m->st.pooling_path)) != NULL;
    eft_status s = ok ? eft__program_hash_files((const char *const *)paths, n, out, err)
                      : eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    for (size_t i = 0; paths && i < n; i++) eft__free(paths[i]);
    eft__free(paths);
    return s;
}

eft_status eft__encoder_save(const eft__encoder *e, const eft_model *m, const char *header, const char *path,
                             eft__error *err) {
    uint64_t mh;
    eft_status s = eft__encoder_model_hash(m, &mh, err);
    if (s != EFT_OK) return s;
    json_error_t je;
    json_t *h = header ? eft__json_loadb(header, strlen(header), 0, &je) : json_object();
    if (!json_is_object(h)) {
        json_decref(h);
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "eft__encoder_save: the header is not a JSON object");
    }
    /* The absolute folder, so a program found by path can reopen its model from anywhere. */
    char *abs = realpath(m->path, NULL);
    char hash[24];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)mh);
    json_t *model = json_pack("{s:s, s:s, s:s}", "path", abs ? abs : m->path, "hash", hash, "model_type",
                              m->cfg.model_type);
    free(abs); /* realpath allocates with malloc */
    json_t *cfg = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b}", "hidden_size", (json_int_t)e->C,
                            "num_hidden_layers", (json_int_t)e->L, "num_attention_heads", (json_int_t)e->NH,
                            "intermediate_size", (json_int_t)e->I, "vocab_size", (json_int_t)e->V,
                            "max_position_embeddings", (json_int_t)e->P, "type_vocab_size", (json_int_t)e->NT,
                            "num_labels", (json_int_t)(e->has_head ? e->num_labels : 0), "normalize",
                            (int)e->normalize, "classification_head", (int)e->has_head);
    int fail = !model || !cfg;
    fail |= json_object_set_new(h, "format", json_string("eft-program"));
    fail |= json_object_set_new(h, "kind", json_string("encoder"));
    fail |= json_object_set_new(h, "eft_version", json_string(eft_version()));
    fail |= json_object_set_new(h, "model", model);
    fail |= json_object_set_new(h, "architecture", json_string(eft__arch_name(e->arch)));
    fail |= json_object_set_new(h, "config", cfg);
    fail |= json_object_set_new(h, "weights", json_string(e->wdtype == EFT_DTYPE_F16 ? "f16" : "f32"));
    /* The panel width: the one layout fact a blob's size does not always reveal (N = 384 fills
     * 24 panels of 16 or 12 of 32 with the same bytes). */
    fail |= json_object_set_new(h, "sgemm_panel_width", json_integer(EFT__SGEMM_NR));
    char *text = fail ? NULL : json_dumps(h, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(h);
    if (!text) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory writing the program header");
    eft__program_writer *w = NULL;
    s = eft__program_writer_new(&w, err);
    for (int i = 0; s == EFT_OK && i < e->n_recs; i++)
        s = eft__program_writer_add(w, e->recs[i].name, e->recs[i].dtype, e->recs[i].data, e->recs[i].size, err);
    if (s == EFT_OK) s = eft__program_writer_write(w, path, text, err);
    eft__program_writer_free(w);
    eft__free(text);
    return s;
}

eft_status eft__encoder_load(const eft_model *m, const eft__program *prog, const eft__encoder_params *p,
                             eft__encoder **out, eft__error *err) {
    *out = NULL;
    eft__error local;
    if (!err) err = &local;
    eft__error_clear(err);
    const json_t *h = eft__program_header(prog);
    const char *kind = json_string_value(json_object_get(h, "kind"));
    if (!kind || strcmp(kind, "encoder"))
        return eft__fail(err, EFT_ERR_FORMAT, "%s: a program of kind '%s', not an encoder", eft__program_path(prog),
                         kind ? kind : "(none)");
    const char *want = json_string_value(json_object_get(json_object_get(h, "model"), "hash"));
    uint64_t mh;
    eft_status s = eft__encoder_model_hash(m, &mh, err);
    if (s != EFT_OK) return s;
    char have[24];
    snprintf(have, sizeof have, "%016llx", (unsigned long long)mh);
    if (!want || strcmp(want, have))
        return eft__fail(err, EFT_ERR_FORMAT, "%s was compiled from model files with fingerprint %s, but %s now has "
                         "%s (changed since): compile it again", eft__program_path(prog), want ? want : "(none)",
                         m->path, have);
    json_t *nr = json_object_get(h, "sgemm_panel_width");
    if (!json_is_integer(nr) || json_integer_value(nr) != EFT__SGEMM_NR)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: packed for GEMM panels of %lld channels; this eft packs %d: compile "
                         "it again", eft__program_path(prog), json_is_integer(nr) ? (long long)json_integer_value(nr) : -1LL,
                         EFT__SGEMM_NR);
    eft__encoder_params def = eft__encoder_params_default(), pp = p ? *p : def;
    pp.weight_dtype = EFT_DTYPE_F32; /* the blobs carry their own type */
    eft__encoder *e = eft__calloc(1, sizeof *e);
    if (!e) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    e->prog = prog;
    s = build(e, m, &pp, err);
    if (s != EFT_OK) {
        eft__encoder_free(e);
        return s;
    }
    *out = e;
    return EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Reading the last forward pass (for callers that pool or post-process themselves)
 * ------------------------------------------------------------------------------------------- */

const float *eft__encoder_hidden_row(const eft__encoder *e, int b, int64_t *len) {
    *len = e->off[b + 1] - e->off[b];
    return e->x + (int64_t)e->off[b] * e->C;
}

void eft__encoder_pool_row(const eft__encoder *e, int b, float *out) {
    const int64_t C = e->C, len = e->off[b + 1] - e->off[b];
    if (len == 0) {
        memset(out, 0, sizeof(float) * (size_t)(C * e->n_modes));
        return;
    }
    for (int k = 0; k < e->n_modes; k++)
        eft__pool(out + k * C, e->x + (int64_t)e->off[b] * C, C, len, C, NULL, e->modes[k]);
}

bool eft__encoder_normalizes(const eft__encoder *e) { return e->normalize; }

eft_status eft__encoder_set_pooling(eft__encoder *e, const char *names, eft__error *err) {
    /* QEfficient's names ("avg" is its mean) and sentence-transformers' ("mean_sqrt_len_tokens"). */
    static const struct {
        const char *name;
        eft__pool_mode mode;
    } k_names[] = {
        {"mean", EFT__POOLOP_MEAN},           {"avg", EFT__POOLOP_MEAN},
        {"cls", EFT__POOLOP_CLS},             {"max", EFT__POOLOP_MAX},
        {"lasttoken", EFT__POOLOP_LASTTOKEN}, {"mean_sqrt_len_tokens", EFT__POOLOP_MEAN_SQRT_LEN},
        {"weightedmean", EFT__POOLOP_WEIGHTEDMEAN},
    };
    eft__pool_mode modes[EFT__POOL_COUNT];
    int n = 0;
    const char *p = names ? names : "";
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0) return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "pooling '%s': an empty mode name", names ? names : "");
        size_t i = 0;
        while (i < sizeof k_names / sizeof k_names[0] && (strlen(k_names[i].name) != len || strncmp(k_names[i].name, p, len)))
            i++;
        if (i == sizeof k_names / sizeof k_names[0])
            return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "pooling '%.*s' is not one of mean, avg, cls, max, lasttoken, "
                             "mean_sqrt_len_tokens, weightedmean", (int)(len > 64 ? 64 : len), p);
        for (int k = 0; k < n; k++)
            if (modes[k] == k_names[i].mode)
                return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "pooling '%s': mode '%.*s' given twice", names, (int)len, p);
        if (n == EFT__POOL_COUNT) return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "pooling '%s': too many modes", names);
        modes[n++] = k_names[i].mode;
        if (!end) break;
        p = end + 1;
    }
    memcpy(e->modes, modes, sizeof(modes[0]) * (size_t)n);
    e->n_modes = n;
    return EFT_OK;
}
