/*
 * generator.c — the public eft_generator: QEfficient's decode contract on top of the internal
 * decoder (models/decoder.h). It owns the scheduler (a FIFO of waiting sequences, full_batch_size
 * KV slots, one ragged forward pass per step with a decode row for every decoding sequence plus
 * prefill chunks), one sampler and one detokenizer per slot, stop-string and EOS handling, and the
 * model's generation_config.json defaults. A sequence's tokens do not depend on what runs beside
 * it: its slot, sampler and PRNG are its own. Steady-state steps allocate nothing.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api/model_internal.h"
#include "core/core.h"
#include "core/json.h"
#include "core/threadpool.h"
#include "graph/program.h"
#include "models/decoder.h"
#include "runtime/compile.h"
#include "runtime/sampler.h"

#define MAX_EOS 16
#define MAX_LOGPROBS 20
#define MAX_STOPS 16
#define MAX_STOP_LEN 1024

typedef struct gen_seq {
    uint64_t id;
    struct gen_seq *next; /* the waiting queue */
    int32_t *prompt;      /* [n_prompt], owned */
    int n_prompt;
    eft_generate_params gp; /* gp.stop points at stop below */
    char *stop[MAX_STOPS];
    size_t stop_len[MAX_STOPS];
    int slot;          /* -1 while waiting */
    int n_done;        /* prompt tokens already in the KV cache */
    int n_generated;
    int32_t last;      /* the token to feed next, at position n_prompt + n_generated - 1 */
    bool cancel;
    char *pend;        /* text held back: it may be the start of a stop string */
    size_t pend_len, pend_cap;
    double t_submit, t_first;
    eft_gen_stats *stats_out; /* eft_generator_generate's, else NULL */
} gen_seq;

typedef struct gen_slot {
    gen_seq *seq; /* NULL: free */
    eft__sampler *sampler;
    eft_detokenizer *detok;
} gen_slot;

struct eft_generator {
    eft_model *model;
    eft_tokenizer *tok;
    eft__decoder *dec;
    eft__program *prog; /* the compiled program dec's matrices live in, or NULL */
    eft_chat_template *tmpl;
    bool tmpl_tried;
    eft_generator_params p;
    int64_t V;
    int ctx_len, n_slots, max_tokens;
    int32_t eos[MAX_EOS];
    int n_eos;
    eft_generate_params defaults;
    gen_slot *slots;                  /* [n_slots] */
    gen_seq *wait_head, *wait_tail;
    int n_waiting, n_running;
    uint64_t next_id;
    bool in_step;
    eft_status seq_status; /* why the last sequence that ended with EFT_FINISH_ERROR did */
    /* One forward pass: [max_tokens] tokens, [n_slots] logit rows (a sequence asks for at most one
     * row per step: its decode row or the last token of its prompt). */
    int32_t *b_ids, *b_slot, *b_pos, *b_rows;
    gen_seq **b_row_seq, **b_in_batch;
    float *logits; /* [n_slots, V] */
    eft_token_logprob top[MAX_LOGPROBS];
    char errmsg[EFT__ERRMSG_MAX];
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static eft_status fail(eft_generator *g, eft__error *err) {
    if (g) snprintf(g->errmsg, sizeof g->errmsg, "%s", err->msg);
    return eft__set_last_error(err);
}

const char *eft_finish_reason_str(eft_finish_reason r) {
    switch (r) {
    case EFT_FINISH_STOP: return "stop";
    case EFT_FINISH_LENGTH: return "length";
    case EFT_FINISH_CANCELLED: return "cancelled";
    case EFT_FINISH_ERROR: return "error";
    default: return "";
    }
}

eft_generator_params eft_generator_params_default(void) {
    return (eft_generator_params){.n_threads = 1, .ctx_len = 0, .prefill_seq_len = 128, .full_batch_size = 1,
                                  .cache_dir = NULL, .no_cache = false,
                                  .weight_dtype = EFT_DTYPE_COUNT, .kv_dtype = EFT_DTYPE_F32,
                                  .activation_dtype = EFT_DTYPE_F32};
}

static eft_generate_params library_defaults(void) {
    return (eft_generate_params){.max_tokens = 0,
                                 .sampling = {.temperature = 0, .top_k = 0, .top_p = 1, .min_p = 0,
                                              .repetition_penalty = 1, .presence_penalty = 0,
                                              .frequency_penalty = 0, .seed = 0}};
}

eft_generate_params eft_generator_generate_params_default(const eft_generator *g) {
    return g ? g->defaults : library_defaults();
}

/* ---------------------------------------------------------------------------------------------
 * Opening: model, tokenizer, decoder, generation_config.json
 * ------------------------------------------------------------------------------------------- */

static void add_eos(eft_generator *g, int64_t id) {
    if (id < 0 || id > INT32_MAX) return;
    for (int i = 0; i < g->n_eos; i++)
        if (g->eos[i] == id) return;
    if (g->n_eos < MAX_EOS) g->eos[g->n_eos++] = (int32_t)id;
}

/* generation_config.json, read as transformers' GenerationConfig: the sampling knobs count only
 * when do_sample is true (otherwise transformers decodes greedily whatever temperature says), and
 * then an absent top_k means transformers' default of 50. repetition_penalty and max_new_tokens
 * apply either way; eos_token_id (a number or a list) adds to config.json's. A missing file is
 * not an error; a malformed one is. */
static eft_status read_generation_config(eft_generator *g, eft__error *err) {
    if (g->model->is_gguf) return EFT_OK; /* GGUF files carry no generation config */
    char *path = eft__path_join(g->model->path, "generation_config.json"), *text = NULL;
    size_t len = 0;
    if (!path) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    if (!eft__path_exists(path)) {
        eft__free(path);
        return EFT_OK;
    }
    eft_status st = eft__file_read_all(path, 1u << 20, &text, &len, err);
    if (st) {
        eft__free(path);
        return st;
    }
    json_error_t je;
    json_t *j = eft__json_loadb(text, len, 0, &je);
    eft__free(text);
    if (!json_is_object(j)) {
        st = eft__json_oom() ? eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory reading %s", path)
             : j ? eft__fail(err, EFT_ERR_FORMAT, "%s: expected a JSON object, found %s", path, eft__json_kind(j))
                 : eft__fail(err, EFT_ERR_FORMAT, "%s: line %d: %s", path, je.line, je.text);
        json_decref(j);
        eft__free(path);
        return st;
    }
    eft_sampling_params *s = &g->defaults.sampling;
    json_t *v;
    const char *bad = NULL;
#define NUM(key, lo, hi)                                                                                   \
    ((v = json_object_get(j, key)) && json_is_number(v)                                                    \
         ? (json_number_value(v) >= (lo) && json_number_value(v) <= (hi) ? true : (bad = key, false))     \
         : (v && !json_is_null(v) ? (bad = key, false) : false))
    if (json_is_true(json_object_get(j, "do_sample"))) {
        s->temperature = 1;
        s->top_k = 50;
        if (NUM("temperature", 0, 1e6)) s->temperature = (float)json_number_value(v);
        if (NUM("top_k", 0, 1e9)) s->top_k = (int)json_number_value(v);
        if (NUM("top_p", 0, 1)) s->top_p = (float)json_number_value(v);
        if (NUM("min_p", 0, 1)) s->min_p = (float)json_number_value(v);
    }
    if (NUM("repetition_penalty", 1e-6, 1e6)) s->repetition_penalty = (float)json_number_value(v);
    if (NUM("max_new_tokens", 0, 1e9)) g->defaults.max_tokens = (int)json_number_value(v);
#undef NUM
    v = json_object_get(j, "eos_token_id");
    if (json_is_integer(v)) add_eos(g, json_integer_value(v));
    for (size_t i = 0; json_is_array(v) && i < json_array_size(v); i++)
        if (json_is_integer(json_array_get(v, i))) add_eos(g, json_integer_value(json_array_get(v, i)));
    json_decref(j);
    if (bad) {
        st = eft__fail(err, EFT_ERR_FORMAT, "%s: \"%s\" is not a number in its range", path, bad);
        eft__free(path);
        return st;
    }
    eft__free(path);
    return EFT_OK;
}

static bool valid_weight_dtype(eft_dtype t) {
    return t == EFT_DTYPE_COUNT || t == EFT_DTYPE_F32 || t == EFT_DTYPE_F16 || t == EFT_DTYPE_BF16 ||
           t == EFT_DTYPE_Q8_0 || t == EFT_DTYPE_Q4_0 || t == EFT_DTYPE_Q4_1 || eft_weight_dtype_label(t) != NULL;
}

/* "F32" etc. back to the dtype, for the fields of a program header; false when not one of those. */
static bool dtype_named(const char *name, eft_dtype *out) {
    for (int t = 0; name && t < EFT_DTYPE_COUNT; t++)
        if (!strcmp(name, eft_dtype_name((eft_dtype)t))) return *out = (eft_dtype)t, true;
    return false;
}

/* When ref is a compiled program (a file, or a folder holding program.eft), opens it as g->prog
 * and returns the model it names in *model (owned); its options become the plan where the caller
 * left params at their defaults. A ref that is no program leaves *model NULL. The header is
 * untrusted: every value is checked. */
static eft_status open_program(eft_generator *g, const char *ref, eft_generator_params *p, char **model,
                               eft__error *err) {
    *model = NULL;
    char *file = eft__program_resolve(ref);
    if (!file) return EFT_OK;
    eft_status s = eft__program_open(file, &g->prog, err);
    eft__free(file);
    if (s != EFT_OK) return s;
    const char *P = eft__program_path(g->prog);
    const json_t *h = eft__program_header(g->prog), *o = json_object_get(h, "options");
    const char *kind = json_string_value(json_object_get(h, "kind"));
    if (!kind || strcmp(kind, "decoder"))
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "%s: a program of kind '%s'; text generation needs a causal "
                         "LM's (eft compile of a decoder model)", P, kind ? kind : "(none)");
    const char *path = json_string_value(json_object_get(json_object_get(h, "model"), "path"));
    json_t *jc = json_object_get(o, "ctx_len"), *jp = json_object_get(o, "prefill_seq_len"),
           *jb = json_object_get(o, "full_batch_size"), *jn = json_object_get(o, "num_cores");
    eft_dtype kv, act = EFT_DTYPE_F32;
    /* act_dtype came later than the other options: a program without it was compiled for f32. */
    const json_t *ja = json_object_get(o, "act_dtype");
    if (ja && (!dtype_named(json_string_value(ja), &act) || (act != EFT_DTYPE_F32 && act != EFT_DTYPE_I8)))
        return eft__fail(err, EFT_ERR_FORMAT, "%s: options.act_dtype is not F32 or I8", P);
    if (!path || !*path || !json_is_integer(jc) || !json_is_integer(jp) || !json_is_integer(jb) ||
        !json_is_integer(jn) || !dtype_named(json_string_value(json_object_get(o, "kv_dtype")), &kv))
        return eft__fail(err, EFT_ERR_FORMAT, "%s: the header needs model.path and options.ctx_len, "
                         "prefill_seq_len, full_batch_size, num_cores and kv_dtype", P);
    json_int_t c = json_integer_value(jc), pf = json_integer_value(jp), b = json_integer_value(jb),
               n = json_integer_value(jn);
    if (c < 0 || c > (1 << 24) || pf < 1 || pf > 65536 || b < 1 || b > 1024 || n < 1 || n > 1024 ||
        !(kv == EFT_DTYPE_F32 || kv == EFT_DTYPE_F16 || kv == EFT_DTYPE_I8))
        return eft__fail(err, EFT_ERR_FORMAT, "%s: options ctx_len %lld (0..2^24), prefill_seq_len %lld (1..65536), "
                         "full_batch_size %lld (1..1024), num_cores %lld (1..1024), kv_dtype %s (F32, F16, I8)", P,
                         (long long)c, (long long)pf, (long long)b, (long long)n, eft_dtype_name(kv));
    eft_generator_params def = eft_generator_params_default();
    if (p->ctx_len == def.ctx_len) p->ctx_len = (int)c;
    if (p->prefill_seq_len == def.prefill_seq_len) p->prefill_seq_len = (int)pf;
    if (p->full_batch_size == def.full_batch_size) p->full_batch_size = (int)b;
    if (p->n_threads == def.n_threads || p->n_threads == 0) p->n_threads = (int)n;
    if (p->kv_dtype == def.kv_dtype) p->kv_dtype = kv;
    if (p->activation_dtype == def.activation_dtype) p->activation_dtype = act;
    *model = eft__strdup(path);
    return *model ? EFT_OK : eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
}

/* The program cache (eft__program_cached) for a decoder of this model and weight type. */
typedef struct dec_cache {
    eft_generator *g;
    const eft__decoder_params *dp;
} dec_cache;

static eft_status dec_cache_key(void *ctx, char out[17], eft__error *err) {
    dec_cache *c = ctx;
    return eft__decoder_program_key(c->g->model, c->dp->weight_dtype, out, err);
}

static eft_status dec_cache_load(void *ctx, const eft__program *prog, eft__error *err) {
    dec_cache *c = ctx;
    return eft__decoder_load(c->g->model, prog, c->dp, &c->g->dec, err);
}

static eft_status dec_cache_build(void *ctx, eft__error *err) {
    dec_cache *c = ctx;
    return eft__decoder_build(c->g->model, c->dp, &c->g->dec, err);
}

static eft_status dec_cache_save(void *ctx, const char *key, const char *path, eft__error *err) {
    dec_cache *c = ctx;
    char *hdr = eft__decoder_program_header_new(key, &c->g->p);
    if (!hdr) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    eft_status s = eft__decoder_save(c->g->dec, c->g->model, hdr, path, err);
    eft__free(hdr);
    return s;
}

static eft_status build_cached(eft_generator *g, const eft__decoder_params *dp, eft__error *err) {
    if (g->p.no_cache) return eft__decoder_build(g->model, dp, &g->dec, err);
    dec_cache c = {g, dp};
    const eft__program_cache_ops ops = {&c, dec_cache_key, dec_cache_load, dec_cache_build, dec_cache_save};
    return eft__program_cached(g->p.cache_dir, g->model->path, &ops, &g->prog, err);
}

eft_status eft_generator_open(const char *ref, const eft_generator_params *params, eft_generator **out) {
    eft__error err;
    eft__error_clear(&err);
    if (!out || !ref) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_generator_open: NULL argument");
        return eft__set_last_error(&err);
    }
    *out = NULL;
    eft_generator_params p = params ? *params : eft_generator_params_default();
    if (p.n_threads < 0 || p.n_threads > 1024 || p.ctx_len < 0 || p.prefill_seq_len < 1 ||
        p.prefill_seq_len > 65536 || p.full_batch_size < 1 || p.full_batch_size > 1024) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT,
                  "eft_generator_open: n_threads %d (0..1024), ctx_len %d (>= 0), prefill_seq_len %d (1..65536), "
                  "full_batch_size %d (1..1024)",
                  p.n_threads, p.ctx_len, p.prefill_seq_len, p.full_batch_size);
        return eft__set_last_error(&err);
    }
    if (!valid_weight_dtype(p.weight_dtype) ||
        !(p.kv_dtype == EFT_DTYPE_F32 || p.kv_dtype == EFT_DTYPE_F16 || p.kv_dtype == EFT_DTYPE_I8)) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT,
                  "eft_generator_open: weight_dtype %s (keep, F32, F16, BF16, Q8_0, Q4_0, Q4_1) or kv_dtype %s "
                  "(F32, F16, I8) not supported",
                  p.weight_dtype == EFT_DTYPE_COUNT ? "keep" : eft_dtype_name(p.weight_dtype),
                  eft_dtype_name(p.kv_dtype));
        return eft__set_last_error(&err);
    }
    if (p.activation_dtype != EFT_DTYPE_F32 && p.activation_dtype != EFT_DTYPE_I8) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_generator_open: activation_dtype %s not supported (F32, I8)",
                  eft_dtype_name(p.activation_dtype));
        return eft__set_last_error(&err);
    }
    eft_generator *g = eft__calloc(1, sizeof *g);
    if (!g) {
        eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        return eft__set_last_error(&err);
    }
    g->defaults = library_defaults();
    g->next_id = 1;
    char *prog_model = NULL;
    eft_status st = open_program(g, ref, &p, &prog_model, &err);
    if (p.n_threads == 0) p.n_threads = eft__online_cpus();
    g->p = p;
    if (st) goto fail;
    st = eft_model_open(prog_model ? prog_model : ref, NULL, &g->model);
    if (st && prog_model) {
        eft__fail(&err, st, "%s was compiled from %s, which cannot be opened now: %s", eft__program_path(g->prog),
                  prog_model, eft_last_error());
        eft__free(prog_model);
        goto fail;
    }
    eft__free(prog_model);
    if (!st) st = eft_tokenizer_open(g->model->path, &g->tok); /* next to the weights: folder or .gguf */
    if (st) {
        /* eft_model_open / eft_tokenizer_open left their message in eft_last_error(). */
        eft__fail(&err, st, "%s", eft_last_error());
        goto fail;
    }
    eft__decoder_params dp = eft__decoder_params_default();
    dp.n_slots = p.full_batch_size;
    dp.ctx_len = p.ctx_len;
    /* Room for one full prefill chunk beside a decode row of every other slot. */
    dp.max_tokens = p.prefill_seq_len + p.full_batch_size;
    dp.n_threads = p.n_threads;
    dp.weight_dtype = p.weight_dtype;
    dp.kv_dtype = p.kv_dtype;
    /* The decoder's default may already be int8 (the EFT_QGEMM=int8 experiment switch); the
     * parameter only ever asks for it. */
    if (p.activation_dtype == EFT_DTYPE_I8) dp.int8_activations = true;
    st = g->prog ? eft__decoder_load(g->model, g->prog, &dp, &g->dec, &err) : build_cached(g, &dp, &err);
    if (st) goto fail;
    g->V = eft__decoder_vocab_size(g->dec);
    int64_t ctx = eft__decoder_ctx_len(g->dec);
    g->ctx_len = ctx > INT32_MAX ? INT32_MAX : (int)ctx;
    g->n_slots = eft__decoder_slots(g->dec);
    g->max_tokens = eft__decoder_max_tokens(g->dec);
    if (p.profile && !eft__decoder_profile_enable(g->dec, true)) {
        st = eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "out of memory for the profile");
        goto fail;
    }
    if (g->n_slots < 1 || g->max_tokens < 1 || g->V < 1 || g->ctx_len < 2) {
        st = eft__fail(&err, EFT_ERR_INTERNAL, "decoder reports %d slots, %d tokens per call, %lld logits, ctx %d",
                       g->n_slots, g->max_tokens, (long long)g->V, g->ctx_len);
        goto fail;
    }
    for (int i = 0; i < g->model->cfg.n_eos; i++) add_eos(g, g->model->cfg.eos_token_ids[i]);
    if ((st = read_generation_config(g, &err))) goto fail;

    g->slots = eft__calloc((size_t)g->n_slots, sizeof *g->slots);
    g->b_ids = eft__malloc_array((size_t)g->max_tokens, sizeof(int32_t));
    g->b_slot = eft__malloc_array((size_t)g->max_tokens, sizeof(int32_t));
    g->b_pos = eft__malloc_array((size_t)g->max_tokens, sizeof(int32_t));
    g->b_rows = eft__malloc_array((size_t)g->n_slots, sizeof(int32_t));
    g->b_row_seq = eft__malloc_array((size_t)g->n_slots, sizeof(gen_seq *));
    g->b_in_batch = eft__malloc_array((size_t)g->n_slots, sizeof(gen_seq *));
    uint64_t cells;
    if (eft__mul_overflow_u64((uint64_t)g->n_slots, (uint64_t)g->V, &cells) || cells > SIZE_MAX / sizeof(float))
        cells = 0;
    g->logits = cells ? eft__malloc_array((size_t)cells, sizeof(float)) : NULL;
    if (!g->slots || !g->b_ids || !g->b_slot || !g->b_pos || !g->b_rows || !g->b_row_seq || !g->b_in_batch ||
        !g->logits) {
        st = eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "out of memory for %d slots of %lld logits", g->n_slots,
                       (long long)g->V);
        goto fail;
    }
    for (int i = 0; i < g->n_slots; i++) {
        if ((st = eft__sampler_init(g->V, &g->slots[i].sampler, &err))) goto fail;
        if ((st = eft_detokenizer_open(g->tok, true, &g->slots[i].detok))) {
            eft__fail(&err, st, "%s", eft_last_error());
            goto fail;
        }
    }
    *out = g;
    return EFT_OK;

fail:
    eft_generator_close(g);
    return eft__set_last_error(&err);
}

static void seq_free(gen_seq *s) {
    if (!s) return;
    for (int i = 0; i < MAX_STOPS; i++) eft__free(s->stop[i]);
    eft__free(s->prompt);
    eft__free(s->pend);
    eft__free(s);
}

void eft_generator_close(eft_generator *g) {
    if (!g) return;
    for (gen_seq *s = g->wait_head, *n; s; s = n) {
        n = s->next;
        seq_free(s);
    }
    if (g->slots)
        for (int i = 0; i < g->n_slots; i++) {
            seq_free(g->slots[i].seq);
            eft__sampler_free(g->slots[i].sampler);
            eft_detokenizer_close(g->slots[i].detok);
        }
    eft__free(g->slots);
    eft__free(g->b_ids);
    eft__free(g->b_slot);
    eft__free(g->b_pos);
    eft__free(g->b_rows);
    eft__free(g->b_row_seq);
    eft__free(g->b_in_batch);
    eft__free(g->logits);
    eft__decoder_free(g->dec);
    eft__program_close(g->prog); /* after the decoder: it borrows the program's bytes */
    eft_chat_template_close(g->tmpl);
    eft_tokenizer_close(g->tok);
    eft_model_close(g->model);
    eft__free(g);
}

const char *eft_generator_errmsg(const eft_generator *g) { return g ? g->errmsg : ""; }
const eft_tokenizer *eft_generator_tokenizer(const eft_generator *g) { return g ? g->tok : NULL; }
int eft_generator_ctx_len(const eft_generator *g) { return g ? g->ctx_len : 0; }
int eft_generator_slots(const eft_generator *g) { return g ? g->n_slots : 0; }
int eft_generator_threads(const eft_generator *g) { return g ? g->p.n_threads : 0; }
int eft_generator_pending(const eft_generator *g) { return g ? g->n_waiting + g->n_running : 0; }

/* Opened on first use: a model without a template, or with one eft cannot read, still generates.
 * The reason for a NULL stays in eft_generator_errmsg and the log. */
eft_chat_template *eft_generator_chat_template(eft_generator *g) {
    if (!g) return NULL;
    if (!g->tmpl_tried) {
        g->tmpl_tried = true;
        if (eft_chat_template_open_model(g->model->path, &g->tmpl) != EFT_OK) {
            snprintf(g->errmsg, sizeof g->errmsg, "%s", eft_last_error());
            EFT_LOGI("%s: no chat template: %s", g->model->path, g->errmsg);
            g->tmpl = NULL;
        }
    }
    return g->tmpl;
}

/* ---------------------------------------------------------------------------------------------
 * Submitting and cancelling
 * ------------------------------------------------------------------------------------------- */

static eft_status submit(eft_generator *g, const int32_t *prompt, size_t n_prompt, const eft_generate_params *params,
                         gen_seq **out, eft__error *err) {
    if (n_prompt == 0) return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "the prompt is empty: it needs at least one token");
    if (n_prompt >= (size_t)g->ctx_len)
        return eft__fail(err, EFT_ERR_LIMIT,
                         "the prompt has %zu tokens but ctx_len is %d: it must leave room for one generated token",
                         n_prompt, g->ctx_len);
    for (size_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= g->V)
            return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "prompt token %zu is id %d, outside the vocabulary 0..%lld",
                             i, prompt[i], (long long)g->V - 1);
    const eft_generate_params *gp = params;
    eft_status st = eft__sampling_params_check(&gp->sampling, err);
    if (st) return st;
    if (gp->max_tokens < 0 || gp->n_logprobs < 0 || gp->n_logprobs > MAX_LOGPROBS || gp->n_stop < 0 ||
        gp->n_stop > MAX_STOPS || (gp->n_stop && !gp->stop))
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT,
                         "max_tokens %d (>= 0), n_logprobs %d (0..%d), n_stop %d (0..%d, with stop strings)",
                         gp->max_tokens, gp->n_logprobs, MAX_LOGPROBS, gp->n_stop, MAX_STOPS);
    size_t max_stop = 0;
    for (int i = 0; i < gp->n_stop; i++) {
        size_t l = gp->stop[i] ? strlen(gp->stop[i]) : 0;
        if (l == 0 || l > MAX_STOP_LEN)
            return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "stop string %d is %s (1..%d bytes)", i,
                             gp->stop[i] ? "empty" : "NULL", MAX_STOP_LEN);
        if (l > max_stop) max_stop = l;
    }
    gen_seq *s = eft__calloc(1, sizeof *s);
    if (!s) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    s->gp = *gp;
    s->gp.stop = (const char *const *)s->stop;
    s->prompt = eft__malloc_array(n_prompt, sizeof *s->prompt);
    /* Held text is at most a stop string's length plus one token's text; grown if a token is long. */
    s->pend_cap = max_stop + 256;
    s->pend = eft__malloc(s->pend_cap);
    bool ok = s->prompt && s->pend;
    for (int i = 0; ok && i < gp->n_stop; i++) {
        s->stop_len[i] = strlen(gp->stop[i]);
        ok = (s->stop[i] = eft__strdup(gp->stop[i])) != NULL;
    }
    if (!ok) {
        seq_free(s);
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    }
    memcpy(s->prompt, prompt, n_prompt * sizeof *prompt);
    s->n_prompt = (int)n_prompt;
    s->slot = -1;
    s->id = g->next_id++;
    s->t_submit = now_s();
    if (g->wait_tail) g->wait_tail->next = s;
    else g->wait_head = s;
    g->wait_tail = s;
    g->n_waiting++;
    *out = s;
    return EFT_OK;
}

eft_status eft_generator_submit(eft_generator *g, const int32_t *prompt, size_t n_prompt,
                                const eft_generate_params *params, uint64_t *seq) {
    eft__error err;
    eft__error_clear(&err);
    if (!g || (n_prompt && !prompt)) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_generator_submit: NULL argument");
        return fail(g, &err);
    }
    gen_seq *s = NULL;
    eft_status st = submit(g, prompt, n_prompt, params ? params : &g->defaults, &s, &err);
    if (st) return fail(g, &err);
    if (seq) *seq = s->id;
    return EFT_OK;
}

eft_status eft_generator_cancel(eft_generator *g, uint64_t seq) {
    eft__error err;
    eft__error_clear(&err);
    if (!g) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_generator_cancel: NULL generator");
        return eft__set_last_error(&err);
    }
    for (gen_seq *s = g->wait_head; s; s = s->next)
        if (s->id == seq) return s->cancel = true, EFT_OK;
    for (int i = 0; i < g->n_slots; i++)
        if (g->slots[i].seq && g->slots[i].seq->id == seq) return g->slots[i].seq->cancel = true, EFT_OK;
    eft__fail(&err, EFT_ERR_NOT_FOUND, "no queued or running sequence %llu", (unsigned long long)seq);
    return fail(g, &err);
}

/* ---------------------------------------------------------------------------------------------
 * Text: held-back text for stop strings, events, finishing
 * ------------------------------------------------------------------------------------------- */

static bool pend_append(gen_seq *s, const char *t, size_t n) {
    if (s->pend_len + n > s->pend_cap) {
        size_t cap = (s->pend_len + n) * 2;
        char *p = eft__realloc(s->pend, cap);
        if (!p) return false;
        s->pend = p;
        s->pend_cap = cap;
    }
    memcpy(s->pend + s->pend_len, t, n);
    s->pend_len += n;
    return true;
}

/* How much of the held text can go out now. A stop string anywhere in it: *matched, and the
 * text up to the earliest match. Otherwise everything but the longest tail that is the start of
 * some stop string (a stop string begins at a UTF-8 character boundary, so the cut is one too).
 * Every match starts inside the held text, because everything emitted earlier had no such tail. */
static size_t stop_scan(const gen_seq *s, bool *matched) {
    const char *t = s->pend;
    size_t n = s->pend_len, best = n;
    *matched = false;
    for (int i = 0; i < s->gp.n_stop; i++) {
        size_t l = s->stop_len[i];
        for (size_t k = 0; k + l <= n && k < best; k++)
            if (t[k] == s->stop[i][0] && !memcmp(t + k, s->stop[i], l)) {
                best = k;
                *matched = true;
                break;
            }
    }
    if (*matched) return best;
    size_t hold = 0;
    for (int i = 0; i < s->gp.n_stop; i++) {
        size_t l = s->stop_len[i];
        for (size_t h = (l - 1 < n ? l - 1 : n); h > hold; h--)
            if (!memcmp(t + n - h, s->stop[i], h)) {
                hold = h;
                break;
            }
    }
    return n - hold;
}

static void pend_consume(gen_seq *s, size_t n) {
    memmove(s->pend, s->pend + n, s->pend_len - n);
    s->pend_len -= n;
}

static int emit(gen_seq *s, int32_t token, const char *text, size_t len, float logprob, const eft_token_logprob *top,
                int n_top, eft_finish_reason finish) {
    if (!s->gp.callback) return 0;
    eft_gen_event ev = {.seq = s->id, .user = s->gp.user, .token = token, .text = len ? text : "", .text_len = len,
                        .logprob = logprob, .top = n_top ? top : NULL, .n_top = n_top, .finish = finish,
                        .n_prompt_tokens = s->n_prompt, .n_generated = s->n_generated};
    return s->gp.callback(&ev);
}

/* Ends a sequence: flushes the detokenizer and held text (unless a stop string ended it: then
 * nothing after the match goes out), sends the final event, records stats and frees the slot. */
static void finish(eft_generator *g, gen_seq *s, eft_finish_reason why, bool drop_text) {
    gen_slot *sl = s->slot >= 0 ? &g->slots[s->slot] : NULL;
    size_t out = 0;
    if (sl) {
        const char *t = NULL;
        size_t n = 0;
        eft_status st = eft_detokenizer_finish(sl->detok, &t, &n);
        if (!drop_text && (st || (n && !pend_append(s, t, n)))) {
            /* Text would be lost: say so rather than end with a silently shorter text. */
            eft__error err;
            g->seq_status = eft__fail(&err, st ? st : EFT_ERR_OUT_OF_MEMORY, "sequence %llu: %s",
                                      (unsigned long long)s->id, st ? eft_last_error() : "out of memory");
            fail(g, &err);
            why = EFT_FINISH_ERROR;
            drop_text = true;
        }
        if (!drop_text) {
            bool matched;
            out = stop_scan(s, &matched);
            if (matched && why == EFT_FINISH_LENGTH) why = EFT_FINISH_STOP;
            if (!matched) out = s->pend_len; /* nothing more will come to complete a stop string */
        }
    }
    double t_end = now_s();
    if (s->stats_out) {
        eft_gen_stats *st = s->stats_out;
        st->n_prompt_tokens = s->n_prompt;
        st->n_generated = s->n_generated;
        st->finish = why;
        st->total_s = t_end - s->t_submit;
        st->ttft_s = s->n_generated ? s->t_first - s->t_submit : 0;
        st->prefill_tps = st->ttft_s > 0 ? s->n_prompt / st->ttft_s : 0;
        st->decode_tps = s->n_generated > 1 && st->total_s > st->ttft_s
                             ? (s->n_generated - 1) / (st->total_s - st->ttft_s) : 0;
    }
    emit(s, -1, s->pend, out, 0, NULL, 0, why);
    if (sl) {
        sl->seq = NULL;
        g->n_running--;
    }
    seq_free(s);
}

/* A token sampled for s: EOS, text, stop strings, limits, the callback. */
static void on_token(eft_generator *g, gen_seq *s, float *logits) {
    gen_slot *sl = &g->slots[s->slot];
    float lp = 0;
    int n_top = s->gp.n_logprobs;
    int32_t id = eft__sampler_sample(sl->sampler, logits, n_top, g->top, &lp);
    eft__sampler_accept(sl->sampler, id);
    if (s->n_generated++ == 0) s->t_first = now_s();
    if (!s->gp.ignore_eos)
        for (int i = 0; i < g->n_eos; i++)
            if (id == g->eos[i]) {
                /* The EOS token counts as generated but has no event and no text. */
                finish(g, s, EFT_FINISH_STOP, false);
                return;
            }
    const char *t = NULL;
    size_t n = 0;
    eft_status st = eft_detokenizer_push(sl->detok, id, &t, &n);
    if (st || (n && !pend_append(s, t, n))) {
        /* The sequence cannot go on with a hole in its text: it ends with an error. */
        eft__error err;
        g->seq_status = eft__fail(&err, st ? st : EFT_ERR_OUT_OF_MEMORY, "sequence %llu: %s",
                                  (unsigned long long)s->id, st ? eft_last_error() : "out of memory");
        fail(g, &err);
        finish(g, s, EFT_FINISH_ERROR, true);
        return;
    }
    bool matched;
    size_t out = stop_scan(s, &matched);
    if (emit(s, id, s->pend, out, lp, g->top, n_top, EFT_FINISH_NONE)) s->cancel = true;
    if (matched) {
        finish(g, s, EFT_FINISH_STOP, true);
        return;
    }
    pend_consume(s, out);
    if (s->cancel) finish(g, s, EFT_FINISH_CANCELLED, false);
    else if ((s->gp.max_tokens > 0 && s->n_generated >= s->gp.max_tokens) || s->n_prompt + s->n_generated >= g->ctx_len)
        finish(g, s, EFT_FINISH_LENGTH, false);
    else s->last = id;
}

/* ---------------------------------------------------------------------------------------------
 * The scheduler
 * ------------------------------------------------------------------------------------------- */

/* Cancelled sequences end before the batch is built; waiting ones move into free slots in order. */
static eft_status admit(eft_generator *g) {
    for (gen_seq **pp = &g->wait_head, *s; (s = *pp);) {
        if (!s->cancel) {
            pp = &s->next;
            continue;
        }
        *pp = s->next;
        if (g->wait_tail == s) g->wait_tail = NULL;
        g->n_waiting--;
        finish(g, s, EFT_FINISH_CANCELLED, false);
    }
    if (!g->wait_tail)
        for (gen_seq *s = g->wait_head; s; s = s->next) g->wait_tail = s;
    for (int i = 0; i < g->n_slots; i++)
        if (g->slots[i].seq && g->slots[i].seq->cancel) finish(g, g->slots[i].seq, EFT_FINISH_CANCELLED, false);
    for (int i = 0; i < g->n_slots && g->wait_head; i++) {
        gen_slot *sl = &g->slots[i];
        if (sl->seq) continue;
        gen_seq *s = g->wait_head;
        g->wait_head = s->next;
        if (!g->wait_head) g->wait_tail = NULL;
        g->n_waiting--;
        s->next = NULL;
        eft__error err;
        /* Parameters and ids were checked at submit, so this cannot fail on the caller's input. */
        if ((g->seq_status = eft__sampler_reset(sl->sampler, &s->gp.sampling, s->prompt, (size_t)s->n_prompt, &err))) {
            fail(g, &err);
            finish(g, s, EFT_FINISH_ERROR, true);
            continue;
        }
        const char *t;
        size_t n;
        eft_detokenizer_finish(sl->detok, &t, &n); /* a clean start, whatever the last user left */
        s->slot = i;
        sl->seq = s;
        g->n_running++;
    }
    return EFT_OK;
}

eft_status eft_generator_step(eft_generator *g) {
    eft__error err;
    eft__error_clear(&err);
    if (!g) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_generator_step: NULL generator");
        return eft__set_last_error(&err);
    }
    if (g->in_step) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_generator_step called from inside a callback");
        return fail(g, &err);
    }
    g->in_step = true;
    admit(g);

    /* Decode rows first: one token for every sequence whose prompt is in the cache. */
    int n = 0, nr = 0, nb = 0;
    for (int i = 0; i < g->n_slots; i++) {
        gen_seq *s = g->slots[i].seq;
        if (!s || s->n_done < s->n_prompt || n >= g->max_tokens) continue;
        g->b_ids[n] = s->last;
        g->b_slot[n] = i;
        g->b_pos[n] = s->n_prompt + s->n_generated - 1;
        g->b_rows[nr] = n;
        g->b_row_seq[nr++] = s;
        g->b_in_batch[nb++] = s;
        n++;
    }
    /* Then prefill chunks, oldest sequence first, while the pass has room. */
    for (;;) {
        gen_seq *pick = NULL;
        for (int i = 0; i < g->n_slots; i++) {
            gen_seq *s = g->slots[i].seq;
            bool queued = false;
            for (int k = 0; k < nb; k++) queued |= g->b_in_batch[k] == s;
            if (s && s->n_done < s->n_prompt && !queued && (!pick || s->id < pick->id)) pick = s;
        }
        if (!pick || n >= g->max_tokens) break;
        int chunk = pick->n_prompt - pick->n_done;
        if (chunk > g->p.prefill_seq_len) chunk = g->p.prefill_seq_len;
        if (chunk > g->max_tokens - n) chunk = g->max_tokens - n;
        for (int k = 0; k < chunk; k++) {
            g->b_ids[n + k] = pick->prompt[pick->n_done + k];
            g->b_slot[n + k] = pick->slot;
            g->b_pos[n + k] = pick->n_done + k;
        }
        n += chunk;
        pick->n_done += chunk;
        if (pick->n_done == pick->n_prompt) {
            g->b_rows[nr] = n - 1;
            g->b_row_seq[nr++] = pick;
        }
        g->b_in_batch[nb++] = pick;
    }
    if (n == 0) {
        g->in_step = false;
        return EFT_OK;
    }
    eft_status st = eft__decoder_forward(g->dec, g->b_ids, g->b_slot, g->b_pos, n, g->b_rows, nr, g->logits, &err);
    if (st) {
        /* The cache of every sequence in the pass is now unknown: they all end with an error. The
         * message is kept before the callbacks run and published again after them. */
        fail(g, &err);
        g->seq_status = st;
        for (int k = 0; k < nb; k++) finish(g, g->b_in_batch[k], EFT_FINISH_ERROR, true);
        g->in_step = false;
        return fail(g, &err);
    }
    for (int r = 0; r < nr; r++) on_token(g, g->b_row_seq[r], g->logits + (size_t)r * (size_t)g->V);
    g->in_step = false;
    return EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * One prompt, start to end
 * ------------------------------------------------------------------------------------------- */

typedef struct gen_collect {
    char *buf;
    size_t len, cap;
    bool done, oom;
    eft_finish_reason finish;
    eft_gen_callback cb;
    void *user;
} gen_collect;

static int collect(const eft_gen_event *ev) {
    gen_collect *c = ev->user;
    if (c->len + ev->text_len + 1 > c->cap) {
        size_t cap = (c->len + ev->text_len + 1) * 2;
        char *p = eft__realloc(c->buf, cap);
        if (!p) c->oom = true;
        else c->buf = p, c->cap = cap;
    }
    if (!c->oom) {
        memcpy(c->buf + c->len, ev->text, ev->text_len);
        c->len += ev->text_len;
        c->buf[c->len] = 0;
    }
    if (ev->finish != EFT_FINISH_NONE) c->done = true, c->finish = ev->finish;
    int r = 0;
    if (c->cb) {
        eft_gen_event e = *ev;
        e.user = c->user;
        r = c->cb(&e);
    }
    return r || c->oom;
}

eft_status eft_generator_generate(eft_generator *g, const char *text, const eft_generate_params *params,
                                  char **out, eft_gen_stats *stats) {
    eft__error err;
    eft__error_clear(&err);
    if (out) *out = NULL;
    if (!g || !text || !out) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_generator_generate: NULL argument");
        return fail(g, &err);
    }
    if (g->in_step) { /* it would wait forever on a step that cannot run */
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_generator_generate called from inside a callback");
        return fail(g, &err);
    }
    eft_generate_params gp = params ? *params : g->defaults;
    eft_encoding *enc = NULL;
    eft_status st = eft_tokenizer_encode(g->tok, text, strlen(text), NULL, 0, NULL, &enc);
    if (st) {
        eft__fail(&err, st, "%s", eft_last_error());
        return fail(g, &err);
    }
    gen_collect c = {.cb = gp.callback, .user = gp.user};
    c.cap = 256;
    c.buf = eft__malloc(c.cap);
    if (!c.buf) {
        eft_encoding_free(enc);
        eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        return fail(g, &err);
    }
    c.buf[0] = 0;
    gp.callback = collect;
    gp.user = &c;
    eft_gen_stats local;
    gen_seq *s = NULL;
    st = submit(g, eft_encoding_ids(enc), eft_encoding_len(enc), &gp, &s, &err);
    eft_encoding_free(enc);
    if (st) {
        eft__free(c.buf);
        return fail(g, &err);
    }
    s->stats_out = stats ? stats : &local;
    uint64_t id = s->id;
    eft_status step_st = EFT_OK;
    while (!c.done) {
        st = eft_generator_step(g);
        if (st && !step_st) {
            step_st = st;
            snprintf(err.msg, sizeof err.msg, "%s", g->errmsg);
            if (!c.done) eft_generator_cancel(g, id); /* ends at the next step's start, before any forward */
        }
    }
    if (step_st) {
        err.status = step_st;
        eft__free(c.buf);
        return fail(g, &err);
    }
    if (c.finish == EFT_FINISH_ERROR) {
        eft__free(c.buf);
        err.status = g->seq_status ? g->seq_status : EFT_ERR_INTERNAL;
        snprintf(err.msg, sizeof err.msg, "%s", g->errmsg);
        return eft__set_last_error(&err);
    }
    if (c.oom) {
        eft__free(c.buf);
        eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "out of memory collecting the generated text");
        return fail(g, &err);
    }
    *out = c.buf;
    return EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The per-op profile (eft_generator_params.profile)
 * ------------------------------------------------------------------------------------------- */

int eft_generator_profile(const eft_generator *g, eft_op_time *out, int max) {
    if (!g || !g->dec || max < 0 || (max > 0 && !out)) return 0;
    return eft__decoder_profile(g->dec, out, max);
}

void eft_generator_profile_reset(eft_generator *g) {
    /* On (the profile exists): zeroed; off: stays off. */
    if (g && g->dec && eft__decoder_profile(g->dec, NULL, 0) > 0) (void)eft__decoder_profile_enable(g->dec, true);
}

/* ---------------------------------------------------------------------------------------------
 * Scoring a text (perplexity)
 * ------------------------------------------------------------------------------------------- */

eft_status eft_generator_score(eft_generator *g, const int32_t *ids, size_t n, float *logprob, int32_t *top1) {
    eft__error err;
    eft__error_clear(&err);
    if (!g || !ids) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_generator_score: NULL argument");
        return eft__set_last_error(&err);
    }
    if (g->in_step || g->n_waiting + g->n_running > 0) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_generator_score: %d sequences are queued or running; "
                  "scoring needs an idle generator", g->n_waiting + g->n_running);
        return fail(g, &err);
    }
    if (n < 2 || n > (size_t)g->ctx_len) {
        eft__fail(&err, EFT_ERR_LIMIT, "eft_generator_score: %zu tokens; 2 to ctx_len %d", n, g->ctx_len);
        return fail(g, &err);
    }
    /* Every row of a chunk has its logits: [chunk, V] for this call alone (not the hot path). */
    const int chunk = g->max_tokens;
    uint64_t cells;
    float *lg = NULL;
    if (!eft__mul_overflow_u64((uint64_t)chunk, (uint64_t)g->V, &cells) && cells <= SIZE_MAX / sizeof(float))
        lg = eft__malloc_array((size_t)cells, sizeof(float));
    int32_t *sl = eft__malloc_array((size_t)chunk, sizeof(int32_t)), *ps = eft__malloc_array((size_t)chunk, sizeof(int32_t)),
            *rows = eft__malloc_array((size_t)chunk, sizeof(int32_t));
    eft_status st = EFT_OK;
    if (!lg || !sl || !ps || !rows) st = eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "out of memory for %d rows of logits", chunk);
    const int64_t V = g->V;
    for (size_t c0 = 0; st == EFT_OK && c0 + 1 < n; c0 += (size_t)chunk) {
        /* Rows c0 .. c0+cn-1 predict tokens c0+1 .. c0+cn; the last token needs no row. */
        int cn = (int)(n - 1 - c0 < (size_t)chunk ? n - 1 - c0 : (size_t)chunk);
        for (int i = 0; i < cn; i++) sl[i] = 0, ps[i] = (int32_t)(c0 + (size_t)i), rows[i] = i;
        st = eft__decoder_forward(g->dec, ids + c0, sl, ps, cn, rows, cn, lg, &err);
        for (int i = 0; st == EFT_OK && i < cn; i++) {
            const float *x = lg + (int64_t)i * V;
            int32_t next = ids[c0 + (size_t)i + 1], best = 0;
            if (next < 0 || next >= V) {
                st = eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_generator_score: token %zu is %d, outside the "
                               "vocabulary of %lld", c0 + (size_t)i + 1, next, (long long)V);
                break;
            }
            double mx = x[0];
            for (int64_t j = 1; j < V; j++)
                if (x[j] > mx) mx = x[j], best = (int32_t)j;
            double se = 0;
            for (int64_t j = 0; j < V; j++) se += exp((double)x[j] - mx);
            if (logprob) logprob[c0 + (size_t)i] = (float)((double)x[next] - mx - log(se));
            if (top1) top1[c0 + (size_t)i] = best;
        }
    }
    eft__free(lg);
    eft__free(sl);
    eft__free(ps);
    eft__free(rows);
    if (st != EFT_OK) return fail(g, &err);
    return EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * For eft_compile (runtime/compile.h)
 * ------------------------------------------------------------------------------------------- */

const eft_model *eft__generator_model(const eft_generator *g) { return g->model; }

eft_status eft__generator_save_program(const eft_generator *g, const char *header, const char *path,
                                       eft__error *err) {
    return eft__decoder_save(g->dec, g->model, header, path, err);
}
