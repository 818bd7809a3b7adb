/*
 * embedder.c — the public eft_embedder: text in, sentence embeddings out. It ties a model's
 * tokenizer to its encoder (models/encoder.c) with the folder's pooling and Normalize, batches
 * inputs in order, and enforces the model's length limit: an input longer than the limit is an
 * error that names both lengths unless the caller asked for truncation (never a silent cut).
 * Inputs are sorted by length into the compiled sequence lengths' buckets and batched; results
 * come back in input order. Per request: normalisation, Matryoshka cuts, caller pooling, token
 * output, and cross-encoder scores.
 */
#include <stdlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api/model_internal.h"
#include "core/core.h"
#include "core/json.h"
#include "core/threadpool.h"
#include "models/encoder.h"
#include "graph/program.h"
#include "runtime/compile.h"

struct eft_embedder {
    eft_model *model;
    eft_tokenizer *tok;
    eft__encoder *enc;
    eft_embedder_params p;
    int64_t dim;     /* D: embedding size */
    int max_tokens;  /* the model's limit, special tokens included */
    int32_t *ids, *types, *lens; /* [max_batch, max_tokens], [max_batch, max_tokens], [max_batch] */
    char errmsg[EFT__ERRMSG_MAX];
    int *seq_lens;    /* [n_seq_lens] ascending compiled lengths; the last is max_tokens */
    int n_seq_lens;
    int model_limit;  /* the model's own limit, for messages */
    int64_t C, num_labels;
    float *pooled;    /* [D]: one row's pooling before the per-request cut and normalisation */
    float *logits;    /* [max_batch, num_labels] */
    /* Per-call scratch, grown as needed (outside the forward pass): every input's tokens back to
     * back, and the inputs sorted by length. */
    int32_t *all_ids, *all_types; /* [cap_tok] */
    size_t cap_tok, n_tok;
    struct slot *slots;           /* [cap_n] */
    size_t cap_n;
    float *cb_out, *padded;       /* pool callback: [pool_dim], [max_tokens, C] */
    uint8_t *mask;                /* [max_tokens] */
    size_t cap_cb;
    eft__program *prog; /* the compiled program enc's weights live in, or NULL (see open_program) */
};

/* One input of a call: where its tokens are in all_ids, how many, and its index in the request. */
typedef struct slot {
    size_t idx, start;
    int32_t len;
} slot;

eft_embedder_params eft_embedder_params_default(void) {
    return (eft_embedder_params){.n_threads = 1, .max_batch = 8, .normalize = false,
                                 .truncate = EFT_TRUNCATE_NONE, .max_tokens = 0, .seq_lens = NULL, .n_seq_lens = 0};
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

/* Copies and checks params' compiled lengths; the longest becomes the limit. e->max_tokens holds
 * the model's limit (or params.max_tokens) on entry. */
static eft_status plan_seq_lens(eft_embedder *e, const eft_embedder_params *p, eft__error *err) {
    int n = p->n_seq_lens;
    if (n < 0 || n > 64 || (n > 0 && !p->seq_lens))
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "eft_embedder_open: %d sequence lengths%s; give 0 to 64",
                         n, n > 0 && !p->seq_lens ? " but seq_lens is NULL" : "");
    e->seq_lens = eft__malloc_array((size_t)(n ? n : 1), sizeof(int));
    if (!e->seq_lens) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    if (n == 0) {
        e->seq_lens[0] = e->max_tokens;
        e->n_seq_lens = 1;
        e->p.seq_lens = NULL;
        return EFT_OK;
    }
    for (int i = 0; i < n; i++) {
        int L = p->seq_lens[i];
        if (L < 1 || L > e->max_tokens)
            return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "eft_embedder_open: sequence length %d is outside "
                             "1..%d, the model's limit%s", L, e->max_tokens,
                             e->max_tokens < e->model_limit ? " as lowered by max_tokens" : "");
        if (i > 0 && L <= p->seq_lens[i - 1])
            return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "eft_embedder_open: sequence lengths must be strictly "
                             "ascending, but %d follows %d", L, p->seq_lens[i - 1]);
        e->seq_lens[i] = L;
    }
    e->n_seq_lens = n;
    e->max_tokens = e->seq_lens[n - 1];
    e->p.seq_lens = e->seq_lens; /* the caller's array may go away after open */
    return EFT_OK;
}

/* When ref is a compiled program (a file or a folder holding program.eft), opens it as e->prog and
 * returns the model folder it names in *model (owned); its options become the plan where the
 * caller left params at their defaults (lens receives the lengths, at most 64). A ref that is no
 * program leaves *model NULL. The header is untrusted: every value is checked. */
static eft_status open_program(eft_embedder *e, const char *ref, eft_embedder_params *p, int *lens, char **model,
                               eft__error *err) {
    *model = NULL;
    char *file = eft__program_resolve(ref);
    if (!file) return EFT_OK;
    eft_status s = eft__program_open(file, &e->prog, err);
    eft__free(file);
    if (s != EFT_OK) return s;
    const char *P = eft__program_path(e->prog);
    const json_t *h = eft__program_header(e->prog), *o = json_object_get(h, "options");
    const char *kind = json_string_value(json_object_get(h, "kind"));
    if (kind && strcmp(kind, "encoder"))
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "%s: a program of kind '%s'; embeddings need an encoder's", P,
                         kind);
    const char *path = json_string_value(json_object_get(json_object_get(h, "model"), "path"));
    json_t *jl = json_object_get(o, "seq_lens"), *jb = json_object_get(o, "batch_size"),
           *jc = json_object_get(o, "num_cores");
    size_t n = json_array_size(jl);
    if (!path || !*path || n < 1 || n > 64 || !json_is_integer(jb) || !json_is_integer(jc))
        return eft__fail(err, EFT_ERR_FORMAT, "%s: the header needs model.path and options.seq_lens (1 to 64), "
                         "options.batch_size and options.num_cores", P);
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(jl, i);
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > (1 << 20))
            return eft__fail(err, EFT_ERR_FORMAT, "%s: options.seq_lens[%zu] is not a length in 1..2^20", P, i);
        lens[i] = (int)json_integer_value(v);
    }
    json_int_t b = json_integer_value(jb), c = json_integer_value(jc);
    if (b < 1 || b > 4096 || c < 1 || c > 1024)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: options.batch_size %lld (1..4096), options.num_cores %lld (1..1024)",
                         P, (long long)b, (long long)c);
    eft_embedder_params def = eft_embedder_params_default();
    if (p->n_seq_lens == 0) {
        p->seq_lens = lens;
        p->n_seq_lens = (int)n;
    }
    if (p->max_batch == def.max_batch) p->max_batch = (int)b;
    if (p->n_threads == def.n_threads || p->n_threads == 0) p->n_threads = (int)c;
    *model = eft__strdup(path);
    return *model ? EFT_OK : eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
}

/* The program cache (eft__program_cached) for an encoder of this model and weight type. */
typedef struct enc_cache {
    eft_embedder *e;
    const eft__encoder_params *ep;
} enc_cache;

static eft_status enc_cache_key(void *ctx, char out[17], eft__error *err) {
    enc_cache *c = ctx;
    return eft__encoder_program_key(c->e->model, c->ep->weight_dtype, out, err);
}

static eft_status enc_cache_load(void *ctx, const eft__program *prog, eft__error *err) {
    enc_cache *c = ctx;
    return eft__encoder_load(c->e->model, prog, c->ep, &c->e->enc, err);
}

static eft_status enc_cache_build(void *ctx, eft__error *err) {
    enc_cache *c = ctx;
    return eft__encoder_build(c->e->model, c->ep, &c->e->enc, err);
}

static eft_status enc_cache_save(void *ctx, const char *key, const char *path, eft__error *err) {
    enc_cache *c = ctx;
    char *hdr = eft__program_header_new(key, c->e->seq_lens, c->e->n_seq_lens, c->ep->max_batch, c->ep->n_threads,
                                        c->ep->weight_dtype);
    if (!hdr) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    eft_status s = eft__encoder_save(c->e->enc, c->e->model, hdr, path, err);
    eft__free(hdr);
    return s;
}

static eft_status build_cached(eft_embedder *e, const eft__encoder_params *ep, eft__error *err) {
    if (e->p.no_cache) return eft__encoder_build(e->model, ep, &e->enc, err);
    enc_cache c = {e, ep};
    const eft__program_cache_ops ops = {&c, enc_cache_key, enc_cache_load, enc_cache_build, enc_cache_save};
    return eft__program_cached(e->p.cache_dir, e->model->path, &ops, &e->prog, err);
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
    if (p.n_threads < 0 || p.n_threads > 1024 || p.max_batch < 1 || p.max_batch > 4096 || p.max_tokens < 0) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT,
                  "eft_embedder_open: n_threads %d (0..1024), max_batch %d (1..4096), max_tokens %d (>= 0)",
                  p.n_threads, p.max_batch, p.max_tokens);
        return eft__set_last_error(&err);
    }
    eft_embedder *e = eft__calloc(1, sizeof *e);
    if (!e) {
        eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        return eft__set_last_error(&err);
    }
    e->p = p;
    int prog_lens[64];
    char *prog_model = NULL;
    eft_status st = open_program(e, ref, &p, prog_lens, &prog_model, &err);
    if (st) {
        eft_embedder_close(e);
        return eft__set_last_error(&err);
    }
    if (p.n_threads == 0) p.n_threads = eft__online_cpus();
    e->p.max_batch = p.max_batch;
    e->p.n_threads = p.n_threads;
    st = eft_model_open(prog_model ? prog_model : ref, NULL, &e->model);
    if (st && prog_model) {
        eft__fail(&err, st, "%s was compiled from %s, which cannot be opened now: %s", eft__program_path(e->prog),
                  prog_model, eft_last_error());
        eft__free(prog_model);
        eft_embedder_close(e);
        return eft__set_last_error(&err);
    }
    eft__free(prog_model);
    if (st) goto fail_last;
    /* The tokenizer lives next to the weights: the resolved folder or .gguf. */
    st = eft_tokenizer_open(e->model->path, &e->tok);
    if (st) goto fail_last;
    int limit = model_limit(e->model);
    e->model_limit = limit;
    e->max_tokens = p.max_tokens > 0 && p.max_tokens < limit ? p.max_tokens : limit;
    st = plan_seq_lens(e, &p, &err);
    if (st) {
        eft_embedder_close(e);
        return eft__set_last_error(&err);
    }
    eft__encoder_params ep = eft__encoder_params_default();
    ep.max_batch = p.max_batch;
    ep.max_tokens = e->max_tokens;
    ep.n_threads = p.n_threads;
    ep.weight_dtype = p.dtype;
    st = e->prog ? eft__encoder_load(e->model, e->prog, &ep, &e->enc, &err) : build_cached(e, &ep, &err);
    if (st) {
        eft_embedder_close(e);
        return eft__set_last_error(&err);
    }
    if (p.pooling) {
        st = eft__encoder_set_pooling(e->enc, p.pooling, &err);
        if (st) {
            eft_embedder_close(e);
            return eft__set_last_error(&err);
        }
    }
    e->dim = eft__encoder_embed_size(e->enc);
    e->C = eft__encoder_hidden_size(e->enc);
    e->num_labels = eft__encoder_num_labels(e->enc);
    e->pooled = eft__malloc_array((size_t)e->dim, sizeof(float));
    e->logits = eft__malloc_array((size_t)p.max_batch * (size_t)(e->num_labels > 0 ? e->num_labels : 1), sizeof(float));
    size_t cells = (size_t)p.max_batch * (size_t)e->max_tokens;
    e->ids = eft__malloc_array(cells, sizeof(int32_t));
    e->types = eft__calloc(cells, sizeof(int32_t));
    e->lens = eft__malloc_array((size_t)p.max_batch, sizeof(int32_t));
    if (!e->ids || !e->types || !e->lens || !e->pooled || !e->logits) {
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
    eft__program_close(e->prog); /* after the encoder: it borrows the program's bytes */
    eft_tokenizer_close(e->tok);
    eft_model_close(e->model);
    eft__free(e->ids);
    eft__free(e->types);
    eft__free(e->lens);
    eft__free(e->seq_lens);
    eft__free(e->pooled);
    eft__free(e->logits);
    eft__free(e->all_ids);
    eft__free(e->all_types);
    eft__free(e->slots);
    eft__free(e->cb_out);
    eft__free(e->padded);
    eft__free(e->mask);
    eft__free(e);
}

int64_t eft_embedder_dim(const eft_embedder *e) { return e ? e->dim : 0; }
int eft_embedder_max_tokens(const eft_embedder *e) { return e ? e->max_tokens : 0; }
int eft_embedder_threads(const eft_embedder *e) { return e ? e->p.n_threads : 0; }
const char *eft_embedder_errmsg(const eft_embedder *e) { return e ? e->errmsg : ""; }

/* Makes room for need more tokens in the call's scratch. */
static eft_status reserve_tokens(eft_embedder *e, size_t need, eft__error *err) {
    if (e->n_tok + need <= e->cap_tok) return EFT_OK;
    size_t cap = e->cap_tok ? e->cap_tok : 4096;
    while (cap < e->n_tok + need) cap *= 2;
    int32_t *ids = eft__realloc(e->all_ids, cap * sizeof(int32_t));
    if (ids) e->all_ids = ids;
    int32_t *types = ids ? eft__realloc(e->all_types, cap * sizeof(int32_t)) : NULL;
    if (types) e->all_types = types;
    if (!ids || !types) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory holding %zu tokens", cap);
    e->cap_tok = cap;
    return EFT_OK;
}

static eft_status reserve_slots(eft_embedder *e, size_t n, eft__error *err) {
    if (n <= e->cap_n) return EFT_OK;
    slot *s = eft__malloc_array(n, sizeof *s);
    if (!s) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory for %zu inputs", n);
    eft__free(e->slots);
    e->slots = s;
    e->cap_n = n;
    return EFT_OK;
}

/* The message for an input over the limit: both lengths, and where the limit comes from. */
static eft_status over_limit(eft_embedder *e, size_t i, size_t n, eft__error *err) {
    char why[160] = "";
    if (e->max_tokens < e->model_limit)
        snprintf(why, sizeof why, " (%s; the model takes %d)",
                 e->p.seq_lens ? "the longest compiled sequence length" : "max_tokens", e->model_limit);
    return eft__fail(err, EFT_ERR_LIMIT, "input %zu has %zu tokens, over the limit of %d%s; ask for truncation "
                     "(left or right) to cut it", i, n, e->max_tokens, why);
}

/* Tokenizes input i (text, and pair for a cross-encoder pair) into slot i of the call's scratch,
 * truncating only when asked (pairs longest first, as transformers' default). */
static eft_status encode_input(eft_embedder *e, size_t i, const char *text, const char *pair, eft_truncate tr,
                               eft__error *err) {
    eft_encode_params ep = eft_encode_params_default();
    eft_encoding *enc = NULL;
    size_t pair_len = pair ? strlen(pair) : 0;
    eft_status st = eft_tokenizer_encode(e->tok, text, strlen(text), pair, pair_len, &ep, &enc);
    if (!st && eft_encoding_len(enc) > (size_t)e->max_tokens) {
        size_t n = eft_encoding_len(enc);
        eft_encoding_free(enc);
        enc = NULL;
        if (tr == EFT_TRUNCATE_NONE) return over_limit(e, i, n, err);
        ep.max_length = (size_t)e->max_tokens;
        ep.truncation = EFT_TRUNCATE_LONGEST_FIRST;
        ep.truncation_side = tr == EFT_TRUNCATE_LEFT_SIDE ? EFT_SIDE_LEFT : EFT_SIDE_RIGHT;
        st = eft_tokenizer_encode(e->tok, text, strlen(text), pair, pair_len, &ep, &enc);
    }
    if (!st) st = reserve_tokens(e, eft_encoding_len(enc), err);
    else eft__fail(err, st, "input %zu: %s", i, eft_last_error());
    if (st) {
        eft_encoding_free(enc);
        return st;
    }
    size_t n = eft_encoding_len(enc);
    memcpy(e->all_ids + e->n_tok, eft_encoding_ids(enc), n * sizeof(int32_t));
    memcpy(e->all_types + e->n_tok, eft_encoding_type_ids(enc), n * sizeof(int32_t));
    e->slots[i] = (slot){.idx = i, .start = e->n_tok, .len = (int32_t)n};
    e->n_tok += n;
    eft_encoding_free(enc);
    return EFT_OK;
}

/* Token ids given by the caller into slot i: checked against the model's vocabulary, cut only
 * when asked. */
static eft_status take_ids(eft_embedder *e, size_t i, const int32_t *ids, size_t n, eft_truncate tr,
                           eft__error *err) {
    if (!ids || n == 0)
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "input %zu is an empty token sequence", i);
    int64_t V = e->model->cfg.vocab_size;
    for (size_t t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= V)
            return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "input %zu: token id %d at position %zu is outside "
                             "the vocabulary (0..%lld)", i, ids[t], t, (long long)V - 1);
    size_t from = 0;
    if (n > (size_t)e->max_tokens) {
        if (tr == EFT_TRUNCATE_NONE) return over_limit(e, i, n, err);
        if (tr == EFT_TRUNCATE_LEFT_SIDE) from = n - (size_t)e->max_tokens;
        n = (size_t)e->max_tokens;
    }
    eft_status st = reserve_tokens(e, n, err);
    if (st) return st;
    memcpy(e->all_ids + e->n_tok, ids + from, n * sizeof(int32_t));
    memset(e->all_types + e->n_tok, 0, n * sizeof(int32_t));
    e->slots[i] = (slot){.idx = i, .start = e->n_tok, .len = (int32_t)n};
    e->n_tok += n;
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
    if (e && n && !texts) {
        eft__error err;
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_embedder_embed: NULL argument");
        return fail(e, &err);
    }
    eft_embed_request r = eft_embed_request_default();
    r.texts = texts;
    r.n = n;
    r.prompt_name = prompt_name;
    r.truncate = e ? e->p.truncate : EFT_TRUNCATE_NONE;
    return eft_embedder_run(e, &r, out);
}

/* ---------------------------------------------------------------------------------------------
 * Per-request runs: inputs, buckets, outputs
 * ------------------------------------------------------------------------------------------- */

const eft_tokenizer *eft_embedder_tokenizer(const eft_embedder *e) { return e ? e->tok : NULL; }
int64_t eft_embedder_num_labels(const eft_embedder *e) { return e ? e->num_labels : 0; }
int64_t eft_embedder_hidden_size(const eft_embedder *e) { return e ? e->C : 0; }

eft_embed_request eft_embed_request_default(void) { return (eft_embed_request){.normalize = -1}; }

/* sentence-transformers' Normalize and normalize_embeddings: x / max(||x||, 1e-12). */
static void normalize_l2(float *v, int64_t d) {
    double s = 0;
    for (int64_t k = 0; k < d; k++) s += (double)v[k] * v[k];
    double inv = s > 1e-24 ? 1.0 / sqrt(s) : 1e12;
    for (int64_t k = 0; k < d; k++) v[k] = (float)(v[k] * inv);
}

/* Checks r's inputs and tokenizes them into e->slots[0 .. r->n), in input order. */
static eft_status prepare_inputs(eft_embedder *e, const eft_embed_request *r, eft__error *err) {
    size_t n = r->n;
    e->n_tok = 0;
    if (n && !r->texts && (!r->ids || !r->n_ids))
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "embedding request: %zu inputs but neither texts nor "
                         "ids with n_ids", n);
    if ((unsigned)r->truncate > EFT_TRUNCATE_LEFT_SIDE)
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "embedding request: truncate %d is not an eft_truncate",
                         (int)r->truncate);
    const char *prompt = NULL;
    if (r->prompt_name) {
        if (!r->texts && n)
            return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "embedding request: prompt_name '%s' with token ids; "
                             "a prompt applies to texts (ids are used as given)", r->prompt_name);
        if (!(prompt = find_prompt(e, r->prompt_name, err))) return err->status;
    }
    eft_status st = reserve_slots(e, n, err);
    if (st) return st;
    for (size_t i = 0; i < n; i++) {
        if (!r->texts) {
            st = take_ids(e, i, r->ids[i], r->n_ids[i], r->truncate, err);
        } else if (!r->texts[i]) {
            st = eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "input %zu is NULL", i);
        } else if (prompt) {
            /* sentence-transformers prepends the prompt to the text before tokenizing. */
            char *joined = eft__asprintf("%s%s", prompt, r->texts[i]);
            st = joined ? encode_input(e, i, joined, NULL, r->truncate, err)
                        : eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
            eft__free(joined);
        } else {
            st = encode_input(e, i, r->texts[i], NULL, r->truncate, err);
        }
        if (st) return st;
    }
    if (r->n_tokens)
        for (size_t i = 0; i < n; i++) r->n_tokens[i] = (size_t)e->slots[i].len;
    return EFT_OK;
}

static int cmp_slot(const void *a, const void *b) {
    const slot *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* What run_batches does with each row of a forward pass. */
typedef struct run_ctx {
    const eft_embed_request *r; /* embeddings: the request; NULL for scores */
    float *out;                 /* [n, dout] embeddings, or [n, num_labels] scores */
    int64_t dout, dfull;        /* kept / produced values per embedding */
    bool normalize;
} run_ctx;

/* One embedding from row b of the last forward (which ran at T tokens per row) into its place. */
static eft_status finish_row(eft_embedder *e, const run_ctx *c, int b, int T, const slot *s, eft__error *err) {
    float *dst = c->out + s->idx * (size_t)c->dout;
    const float *v = e->pooled;
    if (c->r->pool) {
        /* The caller's function sees sentence-transformers' view: hidden states padded to the
         * compiled length with the attention mask beside them. */
        int64_t len, C = e->C;
        const float *h = eft__encoder_hidden_row(e->enc, b, &len);
        memcpy(e->padded, h, sizeof(float) * (size_t)(len * C));
        memset(e->padded + len * C, 0, sizeof(float) * (size_t)((T - len) * C));
        for (int t = 0; t < T; t++) e->mask[t] = t < len;
        int rc = c->r->pool(e->cb_out, e->padded, e->mask, T, C, c->r->pool_user);
        if (rc) return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "input %zu: the pooling function returned %d",
                                 s->idx, rc);
        v = e->cb_out;
    } else {
        eft__encoder_pool_row(e->enc, b, e->pooled);
    }
    memcpy(dst, v, sizeof(float) * (size_t)c->dout);
    if (c->normalize) normalize_l2(dst, c->dout);
    return EFT_OK;
}

/* Sorts the call's n inputs by length and runs them in batches of up to max_batch, each at the
 * smallest compiled length that holds its longest input; outputs land at their input index. */
static eft_status run_batches(eft_embedder *e, size_t n, const run_ctx *c, eft__error *err) {
    if (n == 0) return EFT_OK; /* slots may not exist yet */
    qsort(e->slots, n, sizeof(slot), cmp_slot);
    int bucket = 0;
    for (size_t k = 0; k < n;) {
        /* Lengths only grow along the sorted slots, so the bucket index only moves forward. */
        while (e->seq_lens[bucket] < e->slots[k].len) bucket++;
        int T = e->seq_lens[bucket], B = 0;
        while (k + (size_t)B < n && B < e->p.max_batch && e->slots[k + (size_t)B].len <= T) {
            const slot *s = &e->slots[k + (size_t)B];
            memcpy(e->ids + (size_t)B * (size_t)T, e->all_ids + s->start, sizeof(int32_t) * (size_t)s->len);
            memcpy(e->types + (size_t)B * (size_t)T, e->all_types + s->start, sizeof(int32_t) * (size_t)s->len);
            e->lens[B++] = s->len;
        }
        eft_status st = c->r ? eft__encoder_forward(e->enc, e->ids, e->types, e->lens, B, T, NULL, err)
                             : eft__encoder_classify(e->enc, e->ids, e->types, e->lens, B, T, e->logits, err);
        if (st) return st;
        for (int b = 0; b < B; b++) {
            const slot *s = &e->slots[k + (size_t)b];
            if (!c->r) {
                memcpy(c->out + s->idx * (size_t)e->num_labels, e->logits + (size_t)b * (size_t)e->num_labels,
                       sizeof(float) * (size_t)e->num_labels);
            } else if ((st = finish_row(e, c, b, T, s, err)) != EFT_OK) {
                return st;
            }
        }
        k += (size_t)B;
    }
    return EFT_OK;
}

eft_status eft_embedder_run(eft_embedder *e, const eft_embed_request *r, float *out) {
    eft__error err;
    eft__error_clear(&err);
    if (!e || !r || (r->n && !out)) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_embedder_run: NULL argument");
        return fail(e, &err);
    }
    int64_t dfull = r->pool ? r->pool_dim : e->dim;
    if (r->normalize < -1 || r->normalize > 1)
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "embedding request: normalize %d; -1 (the model's default), "
                  "0 or 1", r->normalize);
    else if (r->pool && (r->pool_dim < 1 || r->pool_dim > (1 << 24)))
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "embedding request: pool_dim %lld with a pooling function; "
                  "1..%d", (long long)r->pool_dim, 1 << 24);
    else if (r->dimensions < 0 || r->dimensions > dfull)
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "embedding request: dimensions %lld, but the embeddings have "
                  "%lld values", (long long)r->dimensions, (long long)dfull);
    if (err.status) return fail(e, &err);
    if (r->pool && (size_t)dfull > e->cap_cb) {
        eft__free(e->cb_out);
        e->cb_out = eft__malloc_array((size_t)dfull, sizeof(float));
        e->cap_cb = e->cb_out ? (size_t)dfull : 0;
        if (!e->padded) e->padded = eft__malloc_array((size_t)e->max_tokens * (size_t)e->C, sizeof(float));
        if (!e->mask) e->mask = eft__malloc_array((size_t)e->max_tokens, 1);
        if (!e->cb_out || !e->padded || !e->mask) {
            eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "out of memory for the pooling function's buffers");
            return fail(e, &err);
        }
    }
    eft_status st = prepare_inputs(e, r, &err);
    if (st) return fail(e, &err);
    run_ctx c = {.r = r, .out = out, .dout = r->dimensions ? r->dimensions : dfull, .dfull = dfull,
                 .normalize = r->normalize < 0 ? eft__encoder_normalizes(e->enc) || e->p.normalize : r->normalize};
    st = run_batches(e, r->n, &c, &err);
    return st ? fail(e, &err) : EFT_OK;
}

eft_status eft_embedder_run_tokens(eft_embedder *e, const eft_embed_request *r, float *out, size_t *n_tokens_out) {
    eft__error err;
    eft__error_clear(&err);
    if (!e || !r || !out || !n_tokens_out) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_embedder_run_tokens: NULL argument");
        return fail(e, &err);
    }
    *n_tokens_out = 0;
    if (r->n != 1 || r->normalize == 1 || r->dimensions || r->pool) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_embedder_run_tokens: one input (got %zu) and no pooling "
                  "options (normalize 1, dimensions, pool are about pooled vectors)", r->n);
        return fail(e, &err);
    }
    eft_status st = prepare_inputs(e, r, &err);
    if (st) return fail(e, &err);
    int32_t len = e->slots[0].len;
    /* One row needs no bucket: the encoder computes only its tokens, written straight to out. */
    if (len > 0 && (st = eft__encoder_forward(e->enc, e->all_ids, e->all_types, &len, 1, len, out, &err)))
        return fail(e, &err);
    *n_tokens_out = (size_t)len;
    return EFT_OK;
}

eft_status eft_embedder_score(eft_embedder *e, const char *query, const char *const *texts, size_t n,
                              eft_truncate truncate, float *scores, size_t *n_tokens) {
    eft__error err;
    eft__error_clear(&err);
    if (!e || !query || (n && (!texts || !scores))) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_embedder_score: NULL argument");
        return fail(e, &err);
    }
    if (e->num_labels <= 0) {
        eft__fail(&err, EFT_ERR_UNSUPPORTED, "%s has no sequence-classification head (its architectures entry is "
                  "not *ForSequenceClassification): it embeds but does not score", e->model->path);
        return fail(e, &err);
    }
    if ((unsigned)truncate > EFT_TRUNCATE_LEFT_SIDE) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_embedder_score: truncate %d is not an eft_truncate",
                  (int)truncate);
        return fail(e, &err);
    }
    e->n_tok = 0;
    eft_status st = reserve_slots(e, n, &err);
    for (size_t i = 0; !st && i < n; i++)
        st = texts[i] ? encode_input(e, i, query, texts[i], truncate, &err)
                      : eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "input %zu is NULL", i);
    if (st) return fail(e, &err);
    if (n_tokens)
        for (size_t i = 0; i < n; i++) n_tokens[i] = (size_t)e->slots[i].len;
    run_ctx c = {.r = NULL, .out = scores};
    st = run_batches(e, n, &c, &err);
    return st ? fail(e, &err) : EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * For eft_compile (runtime/compile.h)
 * ------------------------------------------------------------------------------------------- */

const eft_model *eft__embedder_model(const eft_embedder *e) { return e->model; }

eft_status eft__embedder_save_program(const eft_embedder *e, const char *header, const char *path,
                                      eft__error *err) {
    return eft__encoder_save(e->enc, e->model, header, path, err);
}
