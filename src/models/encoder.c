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
};

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
} builder;

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
    const eft__tensor_view *t = want(b, name, d0, d1);
    if (!t) return NULL;
    float *out = eft__malloc_array((size_t)t->n_elems, sizeof(float));
    if (!out) {
        eft__fail(b->err, EFT_ERR_OUT_OF_MEMORY, "out of memory converting '%s%s'", b->prefix, name);
        return NULL;
    }
    if (eft__tensor_to_f32(t, out, t->n_elems, b->err) != EFT_OK) {
        eft__free(out);
        return NULL;
    }
    return out;
}

static bool want_linear(builder *b, eft__sgemm_packed *out, const char *name, int64_t n, int64_t k) {
    const eft__tensor_view *t = want(b, name, n, k);
    if (!t) return false;
    if (eft__sgemm_pack_typed(out, t->dtype, t->data, n, k, k, b->err) != EFT_OK) {
        eft__error_prefix(b->err, "packing '%s%s'", b->prefix, name);
        return false;
    }
    return true;
}

/* Q, K and V stacked into one [3C, C] matrix (and [3C] bias), then packed: one GEMM instead of three. */
static bool want_qkv(builder *b, enc_layer *ly, const char *const names[3], const char *const bnames[3], int64_t C) {
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
    ok = ok && eft__sgemm_pack(&ly->qkv, w, 3 * C, C, C, b->err) == EFT_OK;
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

void eft__encoder_free(eft__encoder *e) {
    if (!e) return;
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

    builder b = {.m = m, .prefix = "", .err = err};
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
        int64_t span = 2 * (int64_t)p->max_tokens - 1;
        e->rel_bias = eft__malloc_array((size_t)(e->NH * span), sizeof(float));
        if (!e->rel_bias) {
            eft__free(tab);
            return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        }
        for (int64_t d = 0; d < span; d++) {
            int64_t bucket = mpnet_bucket(d - (p->max_tokens - 1), nb, 128);
            for (int64_t h = 0; h < e->NH; h++) e->rel_bias[h * span + d] = tab[bucket * e->NH + h];
        }
        eft__free(tab);
    }

    if (c->task == EFT__TASK_SEQ_CLASSIFICATION) {
        e->num_labels = c->num_labels;
        if (e->num_labels < 1 || e->num_labels > (1 << 16))
            return eft__fail(err, EFT_ERR_FORMAT, "%s: num_labels %lld", m->path, (long long)e->num_labels);
        builder hb = {.m = m, .prefix = "", .err = err};
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
