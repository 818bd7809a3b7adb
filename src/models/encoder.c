/*
 * encoder.c — the BERT family of encoders (BERT, RoBERTa, XLM-RoBERTa, MPNet) compiled and run
 * through the graph IR: the builder (encoder_bert.c) emits the graph from the checkpoint, the
 * passes fold bias, activation and residual adds, fuse Q/K/V and convert the weights to the
 * precision asked for, the plan places every activation for (max batch x max tokens) in one
 * arena, and a forward pass walks the ops, allocating nothing. Rows of a batch are computed
 * ragged (only each row's valid tokens, back to back), so padding costs nothing and cannot leak
 * into valid positions. On top: pooling as sentence-transformers defines it, and the
 * sequence-classification head of a cross-encoder. Programs store the rewritten graph and its
 * packed weights; loading one binds the weights in place and runs no pass.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/cpu/kernels.h"

#include "api/model_internal.h"
#include "core/json.h"
#include "graph/ir.h"
#include "graph/program.h"

#include "models/encoder.h"
#include "models/encoder_graph.h"

struct eft__encoder {
    eft__encoder_dims d;
    int64_t HS;
    int64_t pad_id;          /* RoBERTa-style positions count from pad_id + 1 */
    bool pos_from_pad;
    bool has_head;

    /* Pooling (kernel modes in concatenation order) and Normalize. */
    eft__pool_mode modes[EFT__POOL_COUNT]; /* st_modules.h's count: at most every mode once */
    int n_modes;
    bool normalize;

    /* The compiled graph and its plan. */
    eft__ir_graph *g;
    int t_ids, t_pos, t_types, t_hidden, t_logits;
    int n_body;    /* ops before the classification head's */
    int maxB, maxT, nth;
    const eft__kernels *kt;
    eft__threadpool *tp;
    void *arena;   /* g->arena_bytes */
    int32_t *off;  /* [maxB + 1] first ragged row of each batch row */
    int64_t M;     /* rows of the last forward */
    const eft__program *prog; /* a loaded encoder's weights are its bytes */
    eft_dtype wdtype;
};

eft__encoder_params eft__encoder_params_default(void) {
    eft__encoder_params p = {.max_batch = 1, .max_tokens = 512, .n_threads = 1, .kernels = NULL};
    return p;
}

int64_t eft__encoder_hidden_size(const eft__encoder *enc) { return enc->d.C; }
int64_t eft__encoder_embed_size(const eft__encoder *enc) { return enc->d.C * enc->n_modes; }
int64_t eft__encoder_num_labels(const eft__encoder *enc) { return enc->has_head ? enc->d.num_labels : 0; }

static const float *hidden(const eft__encoder *e) { return eft__ir_at(e->g, e->arena, e->t_hidden); }

/* ---------------------------------------------------------------------------------------------
 * Build: configuration, graph, passes, plan
 * ------------------------------------------------------------------------------------------- */

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
    if (dim > 0 && dim != e->d.C)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: %s/config.json: the Pooling module expects %d dimensions, "
                         "the transformer gives %lld", m->path, m->st.pooling_path ? m->st.pooling_path : "pooling",
                         dim, (long long)e->d.C);
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

/* The dimensions and checks config.json gives, shared by build and load. */
static eft_status configure(eft__encoder *e, const eft_model *m, const eft__encoder_params *p, const char **prefix,
                            eft__error *err) {
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
    eft__encoder_dims *d = &e->d;
    d->arch = c->arch;
    d->C = c->hidden_size;
    d->NH = c->num_attention_heads;
    d->L = c->num_hidden_layers;
    d->I = c->intermediate_size;
    d->V = c->vocab_size;
    d->P = c->max_position_embeddings;
    d->NT = c->arch == EFT__ARCH_MPNET ? 0 : c->type_vocab_size;
    d->eps = (float)c->norm_eps;
    d->act = c->hidden_act;
    d->rel_buckets = c->relative_attention_num_buckets > 0 ? c->relative_attention_num_buckets : 32;
    e->pad_id = c->pad_token_id;
    e->pos_from_pad = c->arch != EFT__ARCH_BERT;
    if (d->C <= 0 || d->NH <= 0 || d->C % d->NH != 0 || d->L <= 0 || d->I <= 0 || d->V <= 0 || d->P <= 0)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: config.json: hidden_size %lld, heads %lld, layers %lld, "
                         "intermediate %lld, vocab %lld, positions %lld do not make an encoder", m->path,
                         (long long)d->C, (long long)d->NH, (long long)d->L, (long long)d->I, (long long)d->V,
                         (long long)d->P);
    e->HS = d->C / d->NH;
    d->scale = c->attn_scale > 0 ? (float)c->attn_scale : 1.0f / sqrtf((float)e->HS);
    if (e->pos_from_pad && e->pad_id < 0)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: config.json: %s positions count from pad_token_id + 1, "
                         "but pad_token_id is not set", m->path, c->model_type);
    /* The largest position a row of max_tokens reaches must have a row in the table. */
    int64_t last_pos = (int64_t)p->max_tokens - 1 + (e->pos_from_pad ? e->pad_id + 1 : 0);
    if (last_pos >= d->P)
        return eft__fail(err, EFT_ERR_LIMIT, "%s: max_tokens %d needs position %lld, but the model has %lld "
                         "position embeddings (at most %lld tokens)", m->path, p->max_tokens,
                         (long long)last_pos, (long long)d->P,
                         (long long)(d->P - (e->pos_from_pad ? e->pad_id + 1 : 0)));
    *prefix = "";
    if (!eft__model_find_tensor(m, "embeddings.word_embeddings.weight")) {
        char probe[96];
        snprintf(probe, sizeof probe, "%sembeddings.word_embeddings.weight", family_prefix(d->arch));
        if (eft__model_find_tensor(m, probe)) *prefix = family_prefix(d->arch);
    }
    if (c->task == EFT__TASK_SEQ_CLASSIFICATION) {
        d->num_labels = c->num_labels;
        if (d->num_labels < 1 || d->num_labels > (1 << 16))
            return eft__fail(err, EFT_ERR_FORMAT, "%s: num_labels %lld", m->path, (long long)d->num_labels);
        e->has_head = true;
    }
    e->kt = p->kernels ? p->kernels : eft__kernels_get();
    return load_pooling(e, m, err);
}

/* Finds the graph's named tensors, plans the arena and makes the thread pool. */
static eft_status plan(eft__encoder *e, const eft__encoder_params *p, eft__error *err) {
    eft__ir_graph *g = e->g;
    e->t_ids = eft__ir_find(g, EFT__ENC_IDS);
    e->t_pos = eft__ir_find(g, EFT__ENC_POS);
    e->t_types = eft__ir_find(g, EFT__ENC_TYPES);
    e->t_hidden = eft__ir_find(g, EFT__ENC_HIDDEN);
    e->t_logits = eft__ir_find(g, EFT__ENC_LOGITS);
    bool ok = e->t_ids >= 0 && e->t_pos >= 0 && e->t_hidden >= 0 && (e->d.NT > 0) == (e->t_types >= 0) &&
              g->t[e->t_hidden].kind == EFT__IR_OUTPUT && g->t[e->t_hidden].shape[0] == EFT__IR_DIM_M &&
              g->t[e->t_hidden].shape[1] == e->d.C &&
              (!e->has_head || (e->t_logits >= 0 && g->t[e->t_logits].kind == EFT__IR_OUTPUT &&
                                g->t[e->t_logits].shape[0] == EFT__IR_DIM_B &&
                                g->t[e->t_logits].shape[1] == e->d.num_labels));
    if (!ok)
        return eft__fail(err, EFT_ERR_FORMAT, "encoder graph: the inputs and outputs (%s, %s, %s, %s) are not what "
                         "this model needs", EFT__ENC_IDS, EFT__ENC_POS, EFT__ENC_HIDDEN, EFT__ENC_LOGITS);
    /* The tables the embedding reads must be the sizes the input checks assume (a program's
     * graph is untrusted): ids < V, positions < P, types < NT. */
    const eft__ir_op *em = g->n_ops > 0 && g->ops[0].kind == EFT__OP_EMBED ? &g->ops[0] : NULL;
    if (!em || em->in[0] != e->t_ids || em->in[1] != e->t_pos || em->in[4] != e->t_types || em->in[3] < 0 ||
        g->t[em->in[2]].shape[0] != e->d.V || g->t[em->in[3]].shape[0] != e->d.P ||
        (e->d.NT > 0 && g->t[em->in[5]].shape[0] != e->d.NT))
        return eft__fail(err, EFT_ERR_FORMAT, "encoder graph: the first op must embed %s and %s with tables of %lld "
                         "tokens, %lld positions and %lld types", EFT__ENC_IDS, EFT__ENC_POS, (long long)e->d.V,
                         (long long)e->d.P, (long long)e->d.NT);
    e->n_body = g->n_ops;
    for (int o = 0; o < g->n_ops; o++)
        if (g->ops[o].head) {
            e->n_body = o;
            break;
        }
    for (int o = e->n_body; o < g->n_ops; o++)
        if (!g->ops[o].head) return eft__fail(err, EFT_ERR_FORMAT, "encoder graph: head ops are not last");
    if (e->has_head ? e->n_body == g->n_ops : e->n_body != g->n_ops)
        return eft__fail(err, EFT_ERR_FORMAT, "encoder graph: a classification head %s", e->has_head ? "is missing" : "without the model having one");
    e->maxB = p->max_batch;
    e->maxT = p->max_tokens;
    e->nth = p->n_threads > 0 ? p->n_threads : 1;
    eft_status s = eft__ir_plan(g, e->maxB, e->maxT, e->nth, err);
    if (s != EFT_OK) return s;
    if (e->nth > 1 && (s = eft__threadpool_create(e->nth, &e->tp, err)) != EFT_OK) return s;
    e->arena = eft__malloc_aligned((size_t)g->arena_bytes);
    e->off = eft__malloc_array((size_t)p->max_batch + 1, sizeof(int32_t));
    if (!e->arena || !e->off)
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory planning %llu bytes of activations for %d x %d "
                         "tokens", (unsigned long long)g->arena_bytes, p->max_batch, p->max_tokens);
    return EFT_OK;
}

void eft__encoder_free(eft__encoder *e) {
    if (!e) return;
    eft__ir_free(e->g);
    eft__threadpool_free(e->tp);
    eft__free_aligned(e->arena);
    eft__free(e->off);
    eft__free(e);
}

eft_status eft__encoder_build(const eft_model *m, const eft__encoder_params *p, eft__encoder **out, eft__error *err) {
    *out = NULL;
    eft__error local; /* the helpers report through err->status, so there always is one */
    if (!err) err = &local;
    eft__error_clear(err);
    eft__encoder_params def = eft__encoder_params_default();
    if (!p) p = &def;
    eft_dtype wd = p->weight_dtype;
    if (!eft_weight_dtype_label(wd))
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "encoder: weights as %s; F32, F16, BF16 and the group-quantised "
                         "int8/int4 layouts (int8, int4, int8-g64, int4-g128-asym, ...) are implemented",
                         eft_dtype_name(wd));
    eft__encoder *e = eft__calloc(1, sizeof *e);
    if (!e) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    e->wdtype = wd;
    const char *prefix;
    eft_status s = configure(e, m, p, &prefix, err);
    if (s == EFT_OK && !(e->g = eft__ir_new())) s = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    if (s == EFT_OK) s = eft__encoder_graph_build(m, prefix, &e->d, e->g, err);
    if (s == EFT_OK) s = eft__pass_fold(e->g, err);
    if (s == EFT_OK) s = eft__pass_fuse_matmuls(e->g, err);
    if (s == EFT_OK) s = eft__pass_precision(e->g, wd, err);
    if (s == EFT_OK) s = eft__pass_kernels(e->g, err);
    if (s == EFT_OK) s = eft__ir_pack(e->g, err);
    if (s == EFT_OK) s = plan(e, p, err);
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

/* Checks the inputs and lays out the ragged rows' ids, positions and types in the arena. */
static eft_status embed_inputs(eft__encoder *e, const int32_t *ids, const int32_t *type_ids, const int32_t *lens,
                               int B, int T, eft__error *err) {
    if (!ids || !lens || B < 1 || T < 1 || B > e->maxB || T > e->maxT)
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "encoder input: batch %d x %d tokens; the plan holds "
                         "1..%d x 1..%d and ids and lens must be given", B, T, e->maxB, e->maxT);
    const int64_t NT = e->d.NT;
    e->off[0] = 0;
    for (int b = 0; b < B; b++) {
        if (lens[b] < 0 || lens[b] > T)
            return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "encoder input: row %d has length %d, outside 0..%d",
                             b, lens[b], T);
        e->off[b + 1] = e->off[b] + lens[b];
        for (int t = 0; t < lens[b]; t++) {
            int32_t id = ids[(int64_t)b * T + t];
            if (id < 0 || id >= e->d.V)
                return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "encoder input: token id %d at [%d, %d] is "
                                 "outside the vocabulary of %lld", id, b, t, (long long)e->d.V);
            int32_t ty = type_ids ? type_ids[(int64_t)b * T + t] : 0;
            if (ty < 0 || ty >= (NT > 0 ? NT : 1))
                return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "encoder input: token type %d at [%d, %d] is "
                                 "outside 0..%lld", ty, b, t, (long long)(NT > 0 ? NT - 1 : 0));
        }
    }
    e->M = e->off[B];
    int32_t *rid = eft__ir_at(e->g, e->arena, e->t_ids), *pos = eft__ir_at(e->g, e->arena, e->t_pos);
    int32_t *typ = e->t_types >= 0 ? eft__ir_at(e->g, e->arena, e->t_types) : NULL;
    for (int b = 0; b < B; b++) {
        const int32_t *row = ids + (int64_t)b * T;
        int64_t r0 = e->off[b], len = lens[b], seen = 0;
        memcpy(rid + r0, row, sizeof(int32_t) * (size_t)len);
        if (typ) {
            if (type_ids) memcpy(typ + r0, type_ids + (int64_t)b * T, sizeof(int32_t) * (size_t)len);
            else memset(typ + r0, 0, sizeof(int32_t) * (size_t)len);
        }
        /* transformers' create_position_ids_from_input_ids: a non-pad token's position is pad + (its
         * rank among non-pad tokens); pad tokens sit at pad. BERT counts 0, 1, 2, ... */
        for (int64_t t = 0; t < len; t++) {
            if (!e->pos_from_pad) pos[r0 + t] = (int32_t)t;
            else if (row[t] == e->pad_id) pos[r0 + t] = (int32_t)e->pad_id;
            else pos[r0 + t] = (int32_t)(e->pad_id + ++seen);
        }
    }
    return EFT_OK;
}

eft_status eft__encoder_forward(eft__encoder *e, const int32_t *ids, const int32_t *type_ids, const int32_t *lens,
                                int B, int T, float *hidden_out, eft__error *err) {
    eft_status s = embed_inputs(e, ids, type_ids, lens, B, T, err);
    if (s != EFT_OK) return s;
    const int64_t C = e->d.C;
    eft__ir_run run = {.B = B, .M = e->M, .off = e->off};
    if (e->M > 0) eft__ir_exec(e->g, e->kt, e->tp, e->arena, &run, 0, e->n_body);
    if (hidden_out) {
        const float *x = hidden(e);
        for (int b = 0; b < B; b++) {
            float *o = hidden_out + (int64_t)b * T * C;
            int64_t len = lens[b];
            if (len) memcpy(o, x + (int64_t)e->off[b] * C, sizeof(float) * (size_t)(len * C));
            memset(o + len * C, 0, sizeof(float) * (size_t)((T - len) * C));
        }
    }
    return EFT_OK;
}

eft_status eft__encoder_embed(eft__encoder *e, const int32_t *ids, const int32_t *type_ids, const int32_t *lens,
                              int B, int T, float *out, eft__error *err) {
    eft_status s = eft__encoder_forward(e, ids, type_ids, lens, B, T, NULL, err);
    if (s != EFT_OK) return s;
    const int64_t D = e->d.C * e->n_modes;
    for (int b = 0; b < B; b++) {
        float *o = out + (int64_t)b * D;
        eft__encoder_pool_row(e, b, o);
        /* An empty row (a caller's; real inputs carry special tokens) stays zeros. */
        if (e->normalize && e->off[b + 1] > e->off[b]) eft__l2_normalize(o, D);
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
    eft__ir_run run = {.B = B, .M = e->M, .off = e->off};
    eft__ir_exec(e->g, e->kt, e->tp, e->arena, &run, e->n_body, e->g->n_ops);
    memcpy(logits, eft__ir_at(e->g, e->arena, e->t_logits), sizeof(float) * (size_t)(B * e->d.num_labels));
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

static const char *weights_name(eft_dtype d) {
    const char *n = eft_weight_dtype_label(d);
    return n ? n : "f32";
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
    const eft__encoder_dims *d = &e->d;
    json_t *cfg = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b}", "hidden_size", (json_int_t)d->C,
                            "num_hidden_layers", (json_int_t)d->L, "num_attention_heads", (json_int_t)d->NH,
                            "intermediate_size", (json_int_t)d->I, "vocab_size", (json_int_t)d->V,
                            "max_position_embeddings", (json_int_t)d->P, "type_vocab_size", (json_int_t)d->NT,
                            "num_labels", (json_int_t)(e->has_head ? d->num_labels : 0), "normalize",
                            (int)e->normalize, "classification_head", (int)e->has_head);
    json_t *graph = eft__ir_to_json(e->g);
    int fail = !model || !cfg || !graph;
    fail |= json_object_set_new(h, "format", json_string("eft-program"));
    fail |= json_object_set_new(h, "kind", json_string("encoder"));
    fail |= json_object_set_new(h, "eft_version", json_string(eft_version()));
    fail |= json_object_set_new(h, "model", model);
    fail |= json_object_set_new(h, "architecture", json_string(eft__arch_name(d->arch)));
    fail |= json_object_set_new(h, "config", cfg);
    fail |= json_object_set_new(h, "weights", json_string(weights_name(e->wdtype)));
    /* The panel width: the one layout fact a blob's size does not always reveal (N = 384 fills
     * 24 panels of 16 or 12 of 32 with the same bytes). */
    fail |= json_object_set_new(h, "sgemm_panel_width", json_integer(EFT__SGEMM_NR));
    fail |= json_object_set_new(h, "graph", graph);
    char *text = fail ? NULL : json_dumps(h, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(h);
    if (!text) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory writing the program header");
    eft__program_writer *w = NULL;
    s = eft__program_writer_new(&w, err);
    /* Every weight the program needs, as the kernels read it: SGEMM matrices as their panels,
     * block-quantised ones as their blocks, vectors as f32. The word embeddings stay in the model. */
    for (int i = 0; s == EFT_OK && i < e->g->n_t; i++) {
        const eft__ir_tensor *t = &e->g->t[i];
        if (t->kind != EFT__IR_WEIGHT || t->external) continue;
        const eft__sgemm_packed *pk = t->packed;
        s = pk ? eft__program_writer_add(w, t->name, pk->dtype, pk->data, eft__ir_packed_bytes(t), err)
               : eft__program_writer_add(w, t->name, t->dtype, t->data, t->nbytes, err);
    }
    if (s == EFT_OK) s = eft__program_writer_write(w, path, text, err);
    eft__program_writer_free(w);
    eft__free(text);
    return s;
}

/* Points every weight of e->g at the program's blobs (SGEMM matrices as borrowed panels) and the
 * word embeddings at the model's tensor, checking each name, type and size. */
static eft_status bind_weights(eft__encoder *e, const eft_model *m, const eft__program *prog, eft__error *err) {
    eft__ir_graph *g = e->g;
    const char *P = eft__program_path(prog);
    for (int i = 0; i < g->n_t; i++) {
        eft__ir_tensor *t = &g->t[i];
        if (t->kind != EFT__IR_WEIGHT) continue;
        if (t->external) {
            const eft__tensor_view *v = eft__encoder_want(m, "", t->name, t->shape[0], t->ndim == 2 ? t->shape[1] : -1, err);
            if (!v) return err->status;
            if (v->dtype != t->dtype)
                return eft__fail(err, EFT_ERR_FORMAT, "%s: '%s' was %s when compiled and is %s now: compile it again",
                                 P, t->name, eft_dtype_name(t->dtype), eft_dtype_name(v->dtype));
            t->data = v->data;
            continue;
        }
        bool panels = false;
        for (int o = 0; o < g->n_ops; o++) {
            const eft__ir_op *op = &g->ops[o];
            if (op->kind == EFT__OP_MATMUL && op->in[1] == i &&
                (op->kernel == EFT__K_SGEMM_F32 || op->kernel == EFT__K_SGEMM_F16 || op->kernel == EFT__K_SGEMM_BF16))
                panels = true;
        }
        const eft__program_blob *bl = eft__program_find(prog, t->name);
        if (!bl) return eft__fail(err, EFT_ERR_FORMAT, "%s: blob '%s' is missing", P, t->name);
        uint64_t want = t->nbytes;
        int64_t np = (t->shape[0] + EFT__SGEMM_NR - 1) / EFT__SGEMM_NR;
        if (panels && !eft__dtype_nbytes(t->dtype, (uint64_t)np * EFT__SGEMM_NR * (uint64_t)t->shape[1], &want))
            want = UINT64_MAX;
        if (bl->dtype != t->dtype || bl->size != want || !bl->data)
            return eft__fail(err, EFT_ERR_FORMAT, "%s: blob '%s' has %llu bytes of %s, expected %llu bytes of %s%s", P,
                             t->name, (unsigned long long)bl->size, eft_dtype_name(bl->dtype),
                             (unsigned long long)want, eft_dtype_name(t->dtype), panels ? " panels" : "");
        if (panels) {
            eft__sgemm_packed *pk = eft__calloc(1, sizeof *pk);
            if (!pk) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
            *pk = (eft__sgemm_packed){.n = t->shape[0], .k = t->shape[1], .npanels = np, .dtype = t->dtype,
                                      .data = (void *)bl->data, .borrowed = true};
            t->packed = pk;
        } else {
            t->data = bl->data;
        }
    }
    return eft__ir_validate(g, err);
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
    const json_t *graph = json_object_get(h, "graph");
    if (!json_is_object(graph))
        return eft__fail(err, EFT_ERR_FORMAT, "%s has no graph (compiled by an older eft): compile it again",
                         eft__program_path(prog));
    eft__encoder_params def = eft__encoder_params_default(), pp = p ? *p : def;
    eft__encoder *e = eft__calloc(1, sizeof *e);
    if (!e) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    e->prog = prog;
    const char *wn = json_string_value(json_object_get(h, "weights"));
    e->wdtype = eft_weight_dtype_parse(wn);
    if (e->wdtype == EFT_DTYPE_COUNT) e->wdtype = EFT_DTYPE_F32;
    const char *prefix;
    s = configure(e, m, &pp, &prefix, err);
    if (s == EFT_OK) s = eft__ir_from_json(graph, &e->g, err);
    if (s == EFT_OK) s = bind_weights(e, m, prog, err);
    if (s == EFT_OK) s = plan(e, &pp, err);
    if (s != EFT_OK) {
        eft__error_prefix(err, "%s", eft__program_path(prog));
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
    return hidden(e) + (int64_t)e->off[b] * e->d.C;
}

void eft__encoder_pool_row(const eft__encoder *e, int b, float *out) {
    const int64_t C = e->d.C, len = e->off[b + 1] - e->off[b];
    if (len == 0) {
        memset(out, 0, sizeof(float) * (size_t)(C * e->n_modes));
        return;
    }
    for (int k = 0; k < e->n_modes; k++)
        eft__pool(out + k * C, hidden(e) + (int64_t)e->off[b] * C, C, len, C, NULL, e->modes[k]);
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
