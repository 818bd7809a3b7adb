/*
 * model.c — the public eft_model handle: a model as published, opened from a Hugging Face folder,
 * a GGUF file or a Hugging Face id in the local cache. It owns the readers (config, weights,
 * sentence-transformers modules) and describes the model as JSON for `eft info`. Nothing here
 * computes; the engine builds on the same readers.
 */
#include <string.h>

#include <jansson.h>

#include "core/core.h"
#include "core/json.h"
#include "formats/gguf.h"
#include "formats/hf_config.h"
#include "formats/model_ref.h"
#include "formats/safetensors.h"
#include "formats/st_modules.h"
#include "api/model_internal.h"

/* tokenizer.json files of real models reach ~20 MB (Gemma, Llama 3); anything far beyond is not
 * a tokenizer. */
#define TOKENIZER_JSON_MAX (256ull << 20)

eft_model_params eft_model_params_default(void) {
    return (eft_model_params){.hf_cache_dir = NULL, .revision = NULL};
}

static eft_status fail_open(eft_model *m, eft__error *err) {
    eft_model_close(m);
    return eft__set_last_error(err);
}

/* ---------------------------------------------------------------------------------------------
 * Tokenizer summary: which kind of tokenizer the model ships, without building it.
 * ------------------------------------------------------------------------------------------- */

static char *type_of(json_t *o) {
    json_t *t = json_object_get(o, "type");
    return json_is_string(t) ? eft__strdup(json_string_value(t)) : NULL;
}

static eft_status summarise_tokenizer_json(eft_model *m, const char *path, eft__error *err) {
    char *text = NULL;
    size_t len = 0;
    eft_status st = eft__file_read_all(path, TOKENIZER_JSON_MAX, &text, &len, err);
    if (st) return st;
    json_error_t jerr;
    json_t *root = eft__json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    eft__free(text);
    if (!root) {
        if (eft__json_oom()) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory parsing it", path);
        return eft__fail(err, EFT_ERR_FORMAT, "%s: invalid JSON at line %d, column %d: %s", path, jerr.line,
                         jerr.column, jerr.text);
    }
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) {
        json_decref(root);
        return eft__fail(err, EFT_ERR_FORMAT, "%s: no \"model\" object", path);
    }
    eft__model_tokenizer *t = &m->tok;
    t->file = eft__strdup(path);
    t->kind = type_of(model);
    if (!t->kind) {
        /* Old tokenizer.json files omit model.type; the shape tells which model it is. */
        if (json_object_get(model, "merges")) t->kind = eft__strdup("BPE");
        else if (json_is_array(json_object_get(model, "vocab"))) t->kind = eft__strdup("Unigram");
        else if (json_object_get(model, "continuing_subword_prefix")) t->kind = eft__strdup("WordPiece");
    }
    json_t *vocab = json_object_get(model, "vocab");
    t->vocab_size = json_is_object(vocab) ? (int64_t)json_object_size(vocab)
                    : json_is_array(vocab) ? (int64_t)json_array_size(vocab) : 0;
    json_t *added = json_object_get(root, "added_tokens");
    t->added_tokens = json_is_array(added) ? (int64_t)json_array_size(added) : 0;
    t->normalizer = type_of(json_object_get(root, "normalizer"));
    t->pre_tokenizer = type_of(json_object_get(root, "pre_tokenizer"));
    t->post_processor = type_of(json_object_get(root, "post_processor"));
    t->decoder = type_of(json_object_get(root, "decoder"));
    json_t *bf = json_object_get(model, "byte_fallback");
    t->byte_fallback = json_is_true(bf);
    json_decref(root);
    if (!t->file) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    return EFT_OK;
}

static eft_status summarise_gguf_tokenizer(eft_model *m, eft__error *err) {
    eft__gguf_str s;
    eft__model_tokenizer *t = &m->tok;
    if (!eft__gguf_get_str(m->gguf, "tokenizer.ggml.model", &s)) return EFT_OK; /* no vocabulary */
    t->kind = eft__strndup(s.ptr, (size_t)s.len);
    t->file = eft__strdup(m->path);
    const eft__gguf_kv *tokens = eft__gguf_find(m->gguf, "tokenizer.ggml.tokens");
    t->vocab_size = tokens ? (int64_t)eft__gguf_arr_len(tokens) : 0;
    const eft__gguf_kv *merges = eft__gguf_find(m->gguf, "tokenizer.ggml.merges");
    t->merges = merges ? (int64_t)eft__gguf_arr_len(merges) : 0;
    if (eft__gguf_get_str(m->gguf, "tokenizer.ggml.pre", &s)) t->pre_tokenizer = eft__strndup(s.ptr, (size_t)s.len);
    t->has_chat_template = eft__gguf_find(m->gguf, "tokenizer.chat_template") != NULL;
    if (!t->kind || !t->file) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    return EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Opening
 * ------------------------------------------------------------------------------------------- */

static eft_status open_dir(eft_model *m, eft__error *err) {
    char *cfg_path = eft__path_join(m->path, "config.json");
    if (!cfg_path) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    if (!eft__path_exists(cfg_path)) {
        eft__free(cfg_path);
        return eft__fail(err, EFT_ERR_NOT_FOUND,
                         "%s: no config.json: not a Hugging Face model folder (a .gguf file works too)", m->path);
    }
    eft_status st = eft__model_config_load(cfg_path, &m->cfg, err);
    eft__free(cfg_path);
    if (st) return st;
    m->has_cfg = true;

    st = eft__st_config_load(m->path, &m->st, err);
    if (st) return st;
    m->has_st = true;

    st = eft__st_checkpoint_open_dir(m->path, &m->ckpt, err);
    if (st) return st;

    /* tokenizer.json is only located here: parsing it (30+ ms for a 30k vocabulary) is left to
     * whoever needs it, the tokenizer itself or eft_model_info_json's summary. */
    char *tok_path = eft__path_join(m->path, "tokenizer.json");
    if (!tok_path) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    if (eft__path_exists(tok_path)) m->tok_json_path = tok_path;
    else eft__free(tok_path);
    return EFT_OK;
}

eft_status eft__model_summarise_tokenizer(eft_model *m, eft__error *err) {
    if (!m->tok_json_path || m->tok.file) return EFT_OK;
    return summarise_tokenizer_json(m, m->tok_json_path, err);
}

static eft_status open_gguf(eft_model *m, eft__error *err) {
    eft_status st = eft__gguf_open(m->path, &m->gguf, err);
    if (st) return st;
    st = eft__model_config_from_gguf(m->gguf, m->path, &m->cfg, err);
    if (st) return st;
    m->has_cfg = true;
    return summarise_gguf_tokenizer(m, err);
}

eft_status eft_model_open(const char *ref, const eft_model_params *params, eft_model **out) {
    eft__error err;
    eft__error_clear(&err);
    eft__clear_last_error();
    if (!out) return eft__set_last_error(&(eft__error){EFT_ERR_INVALID_ARGUMENT, "eft_model_open: out is NULL"});
    *out = NULL;
    if (!ref || !*ref) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_model_open: empty model reference");
        return eft__set_last_error(&err);
    }
    eft_model_params p = params ? *params : eft_model_params_default();
    eft_model *m = eft__calloc(1, sizeof *m);
    if (!m) {
        eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "out of memory opening %s", ref);
        return eft__set_last_error(&err);
    }
    m->ref = eft__strdup(ref);
    if (!m->ref) {
        eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "out of memory opening %s", ref);
        return fail_open(m, &err);
    }
    eft__model_ref_kind kind;
    eft_status st = eft__model_ref_resolve(ref, p.hf_cache_dir, p.revision, &m->path, &kind, &err);
    if (st) return fail_open(m, &err);
    m->is_gguf = kind == EFT__REF_GGUF;
    st = m->is_gguf ? open_gguf(m, &err) : open_dir(m, &err);
    if (st) return fail_open(m, &err);
    *out = m;
    return EFT_OK;
}

void eft_model_close(eft_model *m) {
    if (!m) return;
    if (m->has_cfg) eft__model_config_free(&m->cfg);
    if (m->has_st) eft__st_config_free(&m->st);
    eft__st_checkpoint_close(m->ckpt);
    eft__gguf_close(m->gguf);
    eft__model_tokenizer *t = &m->tok;
    eft__free(t->file);
    eft__free(t->kind);
    eft__free(t->normalizer);
    eft__free(t->pre_tokenizer);
    eft__free(t->post_processor);
    eft__free(t->decoder);
    eft__free(m->tok_json_path);
    eft__free(m->ref);
    eft__free(m->path);
    eft__free(m);
}

const char *eft_model_errmsg(const eft_model *m) { return m ? m->errmsg : ""; }

/* ---------------------------------------------------------------------------------------------
 * Tensors, whichever file format holds them
 * ------------------------------------------------------------------------------------------- */

size_t eft__model_tensor_count(const eft_model *m) {
    return m->gguf ? eft__gguf_tensor_count(m->gguf) : eft__st_checkpoint_count(m->ckpt);
}

const eft__tensor_view *eft__model_tensor(const eft_model *m, size_t i) {
    return m->gguf ? eft__gguf_tensor(m->gguf, i) : eft__st_checkpoint_tensor(m->ckpt, i);
}

const eft__tensor_view *eft__model_find_tensor(const eft_model *m, const char *name) {
    return m->gguf ? eft__gguf_find_tensor(m->gguf, name) : eft__st_checkpoint_find(m->ckpt, name);
}
