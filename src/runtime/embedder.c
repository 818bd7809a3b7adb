/*
 * embedder.c — the public eft_embedder: text in, sentence embeddings out. It ties a model's
 * tokenizer to its encoder (models/encoder.c) with the folder's pooling and Normalize, batches
 * inputs in order, and enforces the model's length limit: an input longer than the limit is an
 * error that names both lengths unless the caller asked for truncation (never a silent cut).
 * This is the eager path; compiled programs with several sequence lengths build on it next.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api/model_internal.h"
#include "core/core.h"
#include "core/json.h"
#include "models/encoder.h"

struct eft_embedder {
    eft_model *model;
    eft_tokenizer *tok;
    eft__encoder *enc;
    eft_embedder_params p;
    int64_t dim;     /* D: embedding size */
    int max_tokens;  /* the model's limit, special tokens included */
    int32_t *ids, *types, *lens; /* [max_batch, max_tokens], [max_batch, max_tokens], [max_batch] */
    char errmsg[EFT__ERRMSG_MAX];
};

eft_embedder_params eft_embedder_params_default(void) {
    return (eft_embedder_params){.n_threads = 1, .max_batch = 8, .normalize = false,
                                 .truncate = EFT_TRUNCATE_NONE, .max_tokens = 0};
}

static eft_status fail(eft_embedder *e, eft__error *err) {
    if (e) snprintf(e->errmsg, sizeof e->errmsg, "%s", err->msg);
    return eft__set_last_error(err);
}

/* tokenizer_config.json's model_max_length, or 0 when absent or not a sane integer (transformers
 * writes 1e30 for "no limit"). */
static int64_t tokenizer_max_length(const char *dir) {
    char *path = eft__path_join(dir, "tokenizer_config.json"), *text = NULL;
    size_t len = 0;
    int64_t r = 0;
    if (path && eft__path_exists(path) && eft__file_read_all(path, 16u << 20, &text, &len, NULL) == EFT_OK) {
        json_t *j = eft__json_loadb(text, len, 0, NULL);
        json_t *v = json_object_get(j, "model_max_length");
        if (json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) < (1 << 20))
            r = json_integer_value(v);
        json_decref(j);
    }
    eft__free(text);
    eft__free(path);
    return r;
}

/* The longest input the model takes, as sentence-transformers decides it: max_seq_length from
 * sentence_bert_config.json when given, else min(the position table, the tokenizer's
 * model_max_length) (RoBERTa/MPNet positions start after pad_token_id). */
static int model_limit(const eft_model *m) {
    if (m->st.present && m->st.max_seq_length > 0) return m->st.max_seq_length;
    int64_t p = m->cfg.max_position_embeddings;
    if ((m->cfg.arch == EFT__ARCH_ROBERTA || m->cfg.arch == EFT__ARCH_XLM_ROBERTA || m->cfg.arch == EFT__ARCH_MPNET) &&
        m->cfg.pad_token_id >= 0)
        p -= m->cfg.pad_token_id + 1;
    int64_t t = m->is_gguf ? 0 : tokenizer_max_length(m->path);
    if (t > 0 && t < p) p = t;
    return p > 0 && p < (1 << 20) ? (int)p : 512;
}

eft_status eft_embedder_open(const char *ref, const eft_embedder_params *params, eft_embedder **out) {
    eft__error err;
    eft__error_clear(&err);
    if (!out || !ref) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_embedder_open: NULL argument");
        return eft__set_last_error(&err);
    }
    *out = NULL;
    eft_embedder_params p = params ? *params : eft_embedder_params_default();
    if (p.n_threads < 1 || p.n_threads > 1024 || p.max_batch < 1 || p.max_batch > 4096 || p.max_tokens < 0) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT,
                  "eft_embedder_open: n_threads %d (1..1024), max_batch %d (1..4096), max_tokens %d (>= 0)",
                  p.n_threads, p.max_batch, p.max_tokens);
        return eft__set_last_error(&err);
    }
    eft_embedder *e = eft__calloc(1, sizeof *e);
    if (!e) {
        eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        return eft__set_last_error(&err);
    }
    e->p = p;
    eft_status st = eft_model_open(ref, NULL, &e->model);
    if (st) goto fail_last;
    /* The tokenizer lives next to the weights: the resolved folder or .gguf. */
    st = eft_tokenizer_open(e->model->path, &e->tok);
    if (st) goto fail_last;
    int limit = model_limit(e->model);
    e->max_tokens = p.max_tokens > 0 && p.max_tokens < limit ? p.max_tokens : limit;
    eft__encoder_params ep = eft__encoder_params_default();
    ep.max_batch = p.max_batch;
    ep.max_tokens = e->max_tokens;
    ep.n_threads = p.n_threads;
    st = eft__encoder_build(e->model, &ep, &e->enc, &err);
    if (st) {
        eft_embedder_close(e);
        return eft__set_last_error(&err);
    }
    e->dim = eft__encoder_embed_size(e->enc);
    size_t cells = (size_t)p.max_batch * (size_t)e->max_tokens;
    e->ids = eft__malloc_array(cells, sizeof(int32_t));
    e->types = eft__calloc(cells, sizeof(int32_t));
    e->lens = eft__malloc_array((size_t)p.max_batch, sizeof(int32_t));
    if (!e->ids || !e->types || !e->lens) {
        eft_embedder_close(e);
        eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "out of memory planning %zu tokens", cells);
        return eft__set_last_error(&err);
    }
    *out = e;
    return EFT_OK;

fail_last:
    /* eft_model_open / eft_tokenizer_open left their message in eft_last_error(). */
    snprintf(err.msg, sizeof err.msg, "%s", eft_last_error());
    err.status = st;
    eft_embedder_close(e);
    return eft__set_last_error(&err);
}

void eft_embedder_close(eft_embedder *e) {
    if (!e) return;
    eft__encoder_free(e->enc);
    eft_tokenizer_close(e->tok);
    eft_model_close(e->model);
    eft__free(e->ids);
    eft__free(e->types);
    eft__free(e->lens);
    eft__free(e);
}

int64_t eft_embedder_dim(const eft_embedder *e) { return e ? e->dim : 0; }
int eft_embedder_max_tokens(const eft_embedder *e) { return e ? e->max_tokens : 0; }
const char *eft_embedder_errmsg(const eft_embedder *e) { return e ? e->errmsg : ""; }

/* Tokenizes text i into row r of the batch buffers, truncating only when asked. */
static eft_status tokenize_row(eft_embedder *e, size_t i, const char *text, int r, eft__error *err) {
    eft_encode_params ep = eft_encode_params_default();
    eft_encoding *enc = NULL;
    eft_status st = eft_tokenizer_encode(e->tok, text, strlen(text), NULL, 0, &ep, &enc);
    if (!st && eft_encoding_len(enc) > (size_t)e->max_tokens) {
        size_t n = eft_encoding_len(enc);
        eft_encoding_free(enc);
        enc = NULL;
        if (e->p.truncate == EFT_TRUNCATE_NONE) {
            return eft__fail(err, EFT_ERR_LIMIT,
                             "input %zu has %zu tokens, over the model's limit of %d; ask for truncation "
                             "(left or right) to cut it", i, n, e->max_tokens);
        }
        ep.max_length = (size_t)e->max_tokens;
        ep.truncation_side = e->p.truncate == EFT_TRUNCATE_LEFT_SIDE ? EFT_SIDE_LEFT : EFT_SIDE_RIGHT;
        st = eft_tokenizer_encode(e->tok, text, strlen(text), NULL, 0, &ep, &enc);
    }
    if (st) {
        eft_encoding_free(enc);
        return eft__fail(err, st, "input %zu: %s", i, eft_last_error());
    }
    size_t n = eft_encoding_len(enc);
    const int32_t *ids = eft_encoding_ids(enc), *types = eft_encoding_type_ids(enc);
    memcpy(e->ids + (size_t)r * e->max_tokens, ids, n * sizeof *ids);
    memcpy(e->types + (size_t)r * e->max_tokens, types, n * sizeof *types);
    e->lens[r] = (int32_t)n;
    eft_encoding_free(enc);
    return EFT_OK;
}

/* The text of the folder's prompt called name (config_sentence_transformers.json), or NULL with
 * err set. */
static const char *find_prompt(eft_embedder *e, const char *name, eft__error *err) {
    const eft__st_config *st = &e->model->st;
    for (size_t i = 0; i < st->n_prompts; i++)
        if (!strcmp(st->prompts[i].name, name)) {
            if (st->has_pooling && !st->pooling.include_prompt) {
                /* Pooling would have to skip the prompt's tokens; refuse rather than be wrong. */
                eft__fail(err, EFT_ERR_UNSUPPORTED,
                          "%s: the pooling config sets include_prompt false, which eft does not implement yet",
                          e->model->path);
                return NULL;
            }
            return st->prompts[i].text;
        }
    char names[512] = "";
    size_t k = 0;
    for (size_t i = 0; i < st->n_prompts && k < sizeof names; i++)
        k += (size_t)snprintf(names + k, sizeof names - k, "%s'%s'", i ? ", " : "", st->prompts[i].name);
    eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "%s has no prompt named '%s' (it has: %s)", e->model->path, name,
              st->n_prompts ? names : "none");
    return NULL;
}

eft_status eft_embedder_embed(eft_embedder *e, const char *const *texts, size_t n, float *out) {
    return eft_embedder_embed_prompt(e, NULL, texts, n, out);
}

eft_status eft_embedder_embed_prompt(eft_embedder *e, const char *prompt_name, const char *const *texts, size_t n,
                                     float *out) {
    eft__error err;
    eft__error_clear(&err);
    if (!e || (n && (!texts || !out))) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_embedder_embed: NULL argument");
        return fail(e, &err);
    }
    const char *prompt = NULL;
    if (prompt_name && !(prompt = find_prompt(e, prompt_name, &err))) return fail(e, &err);
    for (size_t b = 0; b < n; b += (size_t)e->p.max_batch) {
        int B = (int)(n - b < (size_t)e->p.max_batch ? n - b : (size_t)e->p.max_batch);
        for (int r = 0; r < B; r++) {
            if (!texts[b + r]) {
                eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "input %zu is NULL", b + r);
                return fail(e, &err);
            }
            eft_status st;
            if (prompt) {
                /* sentence-transformers prepends the prompt to the text before tokenizing. */
                char *joined = eft__asprintf("%s%s", prompt, texts[b + r]);
                st = joined ? tokenize_row(e, b + r, joined, r, &err)
                            : eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
                eft__free(joined);
            } else {
                st = tokenize_row(e, b + r, texts[b + r], r, &err);
            }
            if (st) return fail(e, &err);
        }
        /* Rows are laid out with stride max_tokens; the encoder masks what lies past lens[r]. */
        float *o = out + b * (size_t)e->dim;
        eft_status st = eft__encoder_embed(e->enc, e->ids, e->types, e->lens, B, e->max_tokens, o, &err);
        if (st) return fail(e, &err);
        if (e->p.normalize) {
            for (int r = 0; r < B; r++) {
                float *v = o + (size_t)r * e->dim;
                double s = 0;
                for (int64_t k = 0; k < e->dim; k++) s += (double)v[k] * v[k];
                /* sentence-transformers' Normalize: x / max(||x||, 1e-12). */
                double nrm = s > 1e-24 ? 1.0 / sqrt(s) : 1e12;
                for (int64_t k = 0; k < e->dim; k++) v[k] = (float)(v[k] * nrm);
            }
        }
    }
    return EFT_OK;
}
