/*
 * model_info.c — eft_model_info_json: everything the readers learned about a model, as one JSON
 * document (architecture, sizes, files, tensors by dtype, tokenizer, pooling, GGUF metadata).
 * `eft info` prints it; the server's /info will reuse it.
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "api/model_internal.h"
#include "core/core.h"

/* json_object_set_new that tolerates a NULL value (out of memory is caught at the end by
 * checking the document could be serialised). */
static void set(json_t *o, const char *k, json_t *v) {
    if (v) json_object_set_new(o, k, v);
}
static void set_str(json_t *o, const char *k, const char *s) {
    if (s) set(o, k, json_string(s));
}

static json_t *str_n(const char *p, uint64_t n) { return json_stringn(p, (size_t)n); }

static json_t *config_json(const eft__model_config *c);

static json_t *tensors_json(const eft_model *m) {
    json_t *t = json_object();
    json_t *dtypes = json_object();
    size_t n = eft__model_tensor_count(m);
    uint64_t params = 0, bytes = 0;
    int64_t per_type[EFT_DTYPE_COUNT] = {0};
    for (size_t i = 0; i < n; i++) {
        const eft__tensor_view *v = eft__model_tensor(m, i);
        params += v->n_elems;
        bytes += v->nbytes;
        if ((unsigned)v->dtype < EFT_DTYPE_COUNT) per_type[v->dtype]++;
    }
    for (int d = 0; d < EFT_DTYPE_COUNT; d++)
        if (per_type[d]) set(dtypes, eft_dtype_name((eft_dtype)d), json_integer(per_type[d]));
    set(t, "count", json_integer((json_int_t)n));
    set(t, "parameters", json_integer((json_int_t)params));
    set(t, "bytes", json_integer((json_int_t)bytes));
    set(t, "dtypes", dtypes);
    return t;
}

static json_t *tokenizer_json(const eft__model_tokenizer *tk) {
    if (!tk->file) return NULL;
    json_t *t = json_object();
    set_str(t, "file", tk->file);
    set_str(t, "kind", tk->kind);
    set(t, "vocab_size", json_integer(tk->vocab_size));
    if (tk->added_tokens) set(t, "added_tokens", json_integer(tk->added_tokens));
    if (tk->merges) set(t, "merges", json_integer(tk->merges));
    if (tk->byte_fallback) set(t, "byte_fallback", json_true());
    set_str(t, "normalizer", tk->normalizer);
    set_str(t, "pre_tokenizer", tk->pre_tokenizer);
    set_str(t, "post_processor", tk->post_processor);
    set_str(t, "decoder", tk->decoder);
    if (tk->has_chat_template) set(t, "chat_template", json_true());
    return t;
}

static json_t *st_json(const eft__st_config *s) {
    if (!s->present) return NULL;
    json_t *o = json_object();
    if (s->has_pooling) {
        char names[128];
        set_str(o, "pooling", eft__pooling_names(&s->pooling, names, sizeof names));
        if (s->pooling.word_embedding_dimension)
            set(o, "embedding_dimension", json_integer(s->pooling.word_embedding_dimension));
        if (!s->pooling.include_prompt) set(o, "include_prompt", json_false());
    }
    set(o, "normalize", json_boolean(s->normalize));
    if (s->max_seq_length) set(o, "max_seq_length", json_integer(s->max_seq_length));
    if (s->do_lower_case) set(o, "do_lower_case", json_true());
    if (s->n_prompts) {
        json_t *p = json_object();
        for (size_t i = 0; i < s->n_prompts; i++) set_str(p, s->prompts[i].name, s->prompts[i].text);
        set(o, "prompts", p);
    }
    set_str(o, "default_prompt_name", s->default_prompt_name);
    set_str(o, "similarity_fn_name", s->similarity_fn_name);
    return o;
}

static json_t *gguf_json(const eft__gguf *g) {
    json_t *o = json_object();
    set(o, "version", json_integer(eft__gguf_version(g)));
    set(o, "metadata_keys", json_integer((json_int_t)eft__gguf_kv_count(g)));
    static const char *keys[] = {"general.name", "general.architecture", "general.basename", "general.size_label",
                                 "general.quantization_version", "general.file_type", "general.license"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const eft__gguf_kv *kv = eft__gguf_find(g, keys[i]);
        if (!kv) continue;
        if (kv->type == EFT__GGUF_STRING) set(o, keys[i], str_n(kv->v.s.ptr, kv->v.s.len));
        else {
            uint64_t u;
            if (eft__gguf_get_u64(g, keys[i], &u)) set(o, keys[i], json_integer((json_int_t)u));
        }
    }
    return o;
}

char *eft_model_info_json(eft_model *m) {
    if (!m) return NULL;
    eft__error terr;
    eft__error_clear(&terr);
    if (eft__model_summarise_tokenizer(m, &terr) != EFT_OK) {
        snprintf(m->errmsg, sizeof m->errmsg, "%s", terr.msg);
        eft__set_last_error(&terr);
        return NULL;
    }
    json_t *root = json_object();
    if (!root) return NULL;
    set_str(root, "ref", m->ref);
    set_str(root, "path", m->path);
    set_str(root, "format", m->is_gguf ? "gguf" : "huggingface");
    json_t *files = json_array();
    if (m->gguf) {
        json_array_append_new(files, json_string(m->path));
    } else if (m->ckpt) {
        size_t nf = eft__st_checkpoint_file_count(m->ckpt);
        for (size_t i = 0; i < nf; i++) json_array_append_new(files, json_string(eft__st_checkpoint_file_path(m->ckpt, i)));
        if (m->tok.file) json_array_append_new(files, json_string(m->tok.file));
    }
    set(root, "files", files);
    if (m->has_cfg) set(root, "config", config_json(&m->cfg));
    set(root, "tensors", tensors_json(m));
    set(root, "tokenizer", tokenizer_json(&m->tok));
    if (m->has_st) set(root, "sentence_transformers", st_json(&m->st));
    if (m->gguf) set(root, "gguf", gguf_json(m->gguf));
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text) {
        eft__error err;
        eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "out of memory describing %s", m->path);
        snprintf(m->errmsg, sizeof m->errmsg, "%s", err.msg);
        eft__set_last_error(&err);
        return NULL;
    }
    /* json_dumps allocated through eft's hook, so the caller's eft_free releases it. */
    return text;
}

/* ---------------------------------------------------------------------------------------------
 * The typed configuration
 * ------------------------------------------------------------------------------------------- */

static json_t *rope_json(const eft__rope *r) {
    json_t *o = json_object();
    set_str(o, "type", eft__rope_type_name(r->type));
    set(o, "theta", json_real(r->theta));
    if (r->partial_rotary_factor != 1.0) set(o, "partial_rotary_factor", json_real(r->partial_rotary_factor));
    if (r->type != EFT__ROPE_DEFAULT) set(o, "factor", json_real(r->factor));
    if (r->original_max_position_embeddings)
        set(o, "original_max_position_embeddings", json_integer(r->original_max_position_embeddings));
    if (r->type == EFT__ROPE_LLAMA3) {
        set(o, "low_freq_factor", json_real(r->low_freq_factor));
        set(o, "high_freq_factor", json_real(r->high_freq_factor));
    }
    if (r->type == EFT__ROPE_YARN || r->type == EFT__ROPE_LONGROPE)
        set(o, "attention_factor", json_real(r->attention_factor));
    return o;
}

static json_t *config_json(const eft__model_config *c) {
    json_t *o = json_object();
    set_str(o, "model_type", c->model_type);
    set_str(o, "family", eft__arch_name(c->arch));
    if (c->architecture[0]) set_str(o, "architecture", c->architecture);
    set_str(o, "task", eft__task_name(c->task));
    set(o, "vocab_size", json_integer(c->vocab_size));
    set(o, "hidden_size", json_integer(c->hidden_size));
    set(o, "num_hidden_layers", json_integer(c->num_hidden_layers));
    set(o, "num_attention_heads", json_integer(c->num_attention_heads));
    set(o, "num_key_value_heads", json_integer(c->num_key_value_heads));
    set(o, "head_dim", json_integer(c->head_dim));
    set(o, "intermediate_size", json_integer(c->intermediate_size));
    set(o, "max_position_embeddings", json_integer(c->max_position_embeddings));
    if (c->type_vocab_size) set(o, "type_vocab_size", json_integer(c->type_vocab_size));
    set_str(o, "activation", eft__act_name(c->hidden_act));
    set_str(o, "norm", c->norm == EFT__NORM_RMSNORM ? (c->norm_add_one ? "rmsnorm(1+w)" : "rmsnorm") : "layernorm");
    set(o, "norm_eps", json_real(c->norm_eps));
    if (c->has_rope) set(o, "rope", rope_json(&c->rope));
    if (c->has_rope_local) set(o, "rope_local", rope_json(&c->rope_local));
    if (c->sliding_window) {
        set(o, "sliding_window", json_integer(c->sliding_window));
        int64_t n = 0;
        for (int64_t i = 0; c->is_sliding && i < c->num_hidden_layers; i++) n += c->is_sliding[i];
        set(o, "sliding_layers", json_integer(n));
    }
    set(o, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
    if (c->qkv_bias) set(o, "qkv_bias", json_true());
    if (c->mlp_bias) set(o, "mlp_bias", json_true());
    if (c->qk_norm) set(o, "qk_norm", json_true());
    if (c->attn_logit_softcapping) set(o, "attn_logit_softcapping", json_real(c->attn_logit_softcapping));
    if (c->final_logit_softcapping) set(o, "final_logit_softcapping", json_real(c->final_logit_softcapping));
    if (c->embed_scale != 1.0) set(o, "embed_scale", json_real(c->embed_scale));
    if (c->relative_attention_num_buckets)
        set(o, "relative_attention_num_buckets", json_integer(c->relative_attention_num_buckets));
    if (c->task == EFT__TASK_SEQ_CLASSIFICATION) set(o, "num_labels", json_integer(c->num_labels));
    if (c->pad_token_id >= 0) set(o, "pad_token_id", json_integer(c->pad_token_id));
    if (c->bos_token_id >= 0) set(o, "bos_token_id", json_integer(c->bos_token_id));
    if (c->n_eos) {
        json_t *e = json_array();
        for (int i = 0; i < c->n_eos; i++) json_array_append_new(e, json_integer(c->eos_token_ids[i]));
        set(o, "eos_token_ids", e);
    }
    if (c->dtype[0]) set_str(o, "dtype", c->dtype);
    return o;
}
