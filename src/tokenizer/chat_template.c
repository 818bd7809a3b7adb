/*
 * chat_template.c — the public chat-template API: a template opened from source or from a model
 * (a Hugging Face folder's chat_template.jinja / chat_template.json / tokenizer_config.json, or a
 * GGUF file's tokenizer.chat_template), rendered over JSON messages the way transformers'
 * apply_chat_template renders it: the same variables (messages, tools, documents,
 * add_generation_prompt, the special tokens, extra keyword arguments) and the same message
 * preparation (reasoning fields aliased).
 */
#include <string.h>

#include <jansson.h>

#include "core/json.h"
#include "formats/gguf.h"
#include "formats/model_ref.h"
#include "tokenizer/chat_template.h"

/* Config files larger than this are refused (a tokenizer_config.json is a few kB). */
#define MAX_CONFIG_BYTES (64u << 20)

struct eft_chat_template {
    eft__ct_arena arena; /* the syntax tree and the normalised source */
    eft__ct_node *root;
    json_t *defaults; /* bos_token, eos_token, ... from the model */
    eft__ct_limits limits;
    bool fixed_now;
    struct tm now;
    char errmsg[EFT__ERRMSG_MAX];
};

static eft_status publish(eft_chat_template *t, eft__error *err) {
    if (t) snprintf(t->errmsg, sizeof t->errmsg, "%s", err->msg);
    return eft__set_last_error(err);
}

static eft_status open_source(const char *source, size_t len, json_t *defaults, eft_chat_template **out,
                              eft__error *err) {
    eft_chat_template *t = eft__calloc(1, sizeof *t);
    if (!t) {
        json_decref(defaults);
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "chat template: out of memory");
    }
    t->limits = eft__ct_limits_default();
    t->defaults = defaults;
    eft_status st = eft__ct_parse(source, len, &t->arena, &t->root, err);
    if (st != EFT_OK) {
        eft_chat_template_close(t);
        return st;
    }
    *out = t;
    return EFT_OK;
}

eft_status eft_chat_template_open(const char *source, size_t len, eft_chat_template **out) {
    eft__error err = {0};
    if (out) *out = NULL;
    if (!out || (!source && len))
        return eft__set_last_error(&(eft__error){EFT_ERR_INVALID_ARGUMENT, "eft_chat_template_open: NULL argument"});
    eft_status st = open_source(source ? source : "", len, NULL, out, &err);
    if (st != EFT_OK) return eft__set_last_error(&err);
    eft__clear_last_error();
    return EFT_OK;
}

void eft_chat_template_close(eft_chat_template *t) {
    if (!t) return;
    eft__ct_arena_free(&t->arena);
    json_decref(t->defaults);
    eft__free(t);
}

const char *eft_chat_template_errmsg(const eft_chat_template *t) { return t ? t->errmsg : ""; }

void eft__chat_template_set_now(eft_chat_template *t, const struct tm *now) {
    t->fixed_now = now != NULL;
    if (now) t->now = *now;
}

void eft__chat_template_set_limits(eft_chat_template *t, const eft__ct_limits *limits) { t->limits = *limits; }

/* ---------------------------------------------------------------------------------------------
 * Rendering
 * ------------------------------------------------------------------------------------------- */

/* transformers' _alias_reasoning_fields: a message with reasoning under any of its names gets it
 * as "thinking" (first) and "reasoning_content" too. */
static json_t *alias_reasoning(json_t *msg) {
    static const char *const names[] = {"reasoning_content", "thinking", "reasoning"};
    json_t *r = NULL;
    for (int i = 0; i < 3 && !r; i++) {
        json_t *v = json_object_get(msg, names[i]);
        if (v && !json_is_null(v)) r = v;
    }
    if (!r) return json_incref(msg);
    json_t *m = json_object();
    if (!m) return NULL;
    const char *key;
    size_t klen;
    json_t *v;
    bool ok = json_object_setn(m, "thinking", 8, r) == 0;
    json_object_keylen_foreach(msg, key, klen, v) ok &= json_object_setn(m, key, klen, v) == 0;
    ok &= json_object_setn(m, "reasoning_content", 17, r) == 0;
    if (!ok) {
        json_decref(m);
        return NULL;
    }
    return m;
}

eft_status eft_chat_template_render(eft_chat_template *t, const char *messages_json, const char *options_json,
                                    char **out_text, size_t *out_len) {
    eft__error err = {0};
    if (out_text) *out_text = NULL;
    if (out_len) *out_len = 0;
    if (!t || !messages_json || !out_text) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_chat_template_render: NULL argument");
        return publish(t, &err);
    }
    json_error_t je;
    json_t *msgs = eft__json_loadb(messages_json, strlen(messages_json), JSON_DECODE_ANY, &je);
    json_t *opts = NULL, *vars = NULL, *aliased = NULL;
    eft_status st = EFT_OK;
    if (!msgs) {
        if (eft__json_oom()) {
            st = eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "messages: out of memory parsing them");
            goto done;
        }
        st = eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "messages: invalid JSON at line %d column %d: %s", je.line,
                       je.column, je.text);
        goto done;
    }
    if (json_is_object(msgs) && json_is_array(json_object_get(msgs, "messages"))) {
        /* Accept {"messages": [...]} too, the shape of a chat completion request. */
        json_t *m = json_incref(json_object_get(msgs, "messages"));
        json_decref(msgs);
        msgs = m;
    }
    if (!json_is_array(msgs)) {
        st = eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "messages: expected a JSON array of message objects");
        goto done;
    }
    if (options_json && *options_json) {
        opts = eft__json_loadb(options_json, strlen(options_json), JSON_DECODE_ANY, &je);
        if (!opts && eft__json_oom()) {
            st = eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "options: out of memory parsing them");
            goto done;
        }
        if (!opts) {
            st = eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "options: invalid JSON at line %d column %d: %s", je.line,
                           je.column, je.text);
            goto done;
        }
        if (!json_is_object(opts)) {
            st = eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "options: expected a JSON object");
            goto done;
        }
    }
    aliased = json_array();
    vars = t->defaults ? json_deep_copy(t->defaults) : json_object();
    if (!aliased || !vars) goto oom;
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        if (!json_is_object(m)) {
            st = eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "messages[%zu]: chat messages must be JSON objects", i);
            goto done;
        }
        json_t *a = alias_reasoning(m);
        if (!a || json_array_append_new(aliased, a)) goto oom;
    }
    /* transformers passes these four explicitly (tools and documents default to None), then the
     * special tokens, then the caller's keyword arguments, which win. */
    if (opts) {
        const char *key;
        json_t *v;
        json_object_foreach(opts, key, v) {
            if (!strcmp(key, "messages")) continue;
            if (json_object_set(vars, key, v)) goto oom;
        }
        json_t *tools = json_object_get(opts, "tools");
        if (tools && !json_is_null(tools) && !json_is_array(tools)) {
            st = eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "options: \"tools\" must be an array of tool definitions");
            goto done;
        }
        json_t *docs = json_object_get(opts, "documents");
        for (size_t i = 0; docs && i < json_array_size(docs); i++)
            if (!json_is_object(json_array_get(docs, i))) {
                st = eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "Documents should be a list of dicts with 'title' and 'text' keys!");
                goto done;
            }
    }
    if (json_object_set(vars, "messages", aliased)) goto oom;
    if (!json_object_get(vars, "tools") && json_object_set_new(vars, "tools", json_null())) goto oom;
    if (!json_object_get(vars, "documents") && json_object_set_new(vars, "documents", json_null())) goto oom;
    if (!json_object_get(vars, "add_generation_prompt") && json_object_set_new(vars, "add_generation_prompt", json_false()))
        goto oom;
    {
        eft__ct_render_in in = {
            .root = t->root, .vars = vars, .now = t->fixed_now ? &t->now : NULL, .limits = t->limits};
        bool raised = false;
        st = eft__ct_render(&in, out_text, out_len ? out_len : &(size_t){0}, &raised, &err);
    }
    goto done;
oom:
    st = eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "chat template: out of memory");
done:
    json_decref(msgs);
    json_decref(opts);
    json_decref(vars);
    json_decref(aliased);
    if (st != EFT_OK) return publish(t, &err);
    t->errmsg[0] = 0;
    eft__clear_last_error();
    return EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Opening a model's template
 * ------------------------------------------------------------------------------------------- */

static eft_status read_json(const char *dir, const char *name, json_t **out, eft__error *err) {
    *out = NULL;
    char *path = eft__path_join(dir, name), *text = NULL;
    size_t len = 0;
    if (!path) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    eft_status st = eft__file_read_all(path, MAX_CONFIG_BYTES, &text, &len, err);
    if (st == EFT_OK) {
        json_error_t je;
        *out = eft__json_loadb(text, len, 0, &je);
        if (!*out && eft__json_oom())
            st = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory parsing it", path);
        else if (!*out)
            st = eft__fail(err, EFT_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", path, je.line, je.column,
                           je.text);
    }
    eft__free(text);
    eft__free(path);
    return st;
}

/* A special token in tokenizer_config.json: a string or an AddedToken object {"content": ...}. */
static const char *token_content(json_t *v) {
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v) && json_is_string(json_object_get(v, "content")))
        return json_string_value(json_object_get(v, "content"));
    return NULL;
}

static const char *const k_special[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                        "pad_token", "cls_token", "mask_token"};

static eft_status open_folder(const char *dir, eft_chat_template **out, eft__error *err) {
    json_t *cfg = NULL, *defaults = json_object(), *extra = NULL;
    char *source = NULL;
    size_t len = 0;
    eft_status st = EFT_OK;
    if (!defaults) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    if (eft__path_exists_in(dir, "tokenizer_config.json")) {
        st = read_json(dir, "tokenizer_config.json", &cfg, err);
        if (st != EFT_OK) goto done;
    }
    json_t *stm = NULL;
    if (eft__path_exists_in(dir, "special_tokens_map.json") && read_json(dir, "special_tokens_map.json", &stm, err) != EFT_OK) {
        st = err->status;
        goto done;
    }
    for (size_t i = 0; i < sizeof k_special / sizeof k_special[0]; i++) {
        const char *v = cfg ? token_content(json_object_get(cfg, k_special[i])) : NULL;
        if (!v && stm) v = token_content(json_object_get(stm, k_special[i]));
        if (v && json_object_set_new(defaults, k_special[i], json_string(v))) {
            json_decref(stm);
            st = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
            goto done;
        }
    }
    json_decref(stm);
    /* Newer transformers saves the template beside the config; that file wins. */
    if (eft__path_exists_in(dir, "chat_template.jinja")) {
        char *path = eft__path_join(dir, "chat_template.jinja");
        st = path ? eft__file_read_all(path, MAX_CONFIG_BYTES, &source, &len, err)
                  : eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        eft__free(path);
        if (st != EFT_OK) goto done;
        st = open_source(source, len, defaults, out, err);
        defaults = NULL;
        if (st != EFT_OK) eft__error_prefix(err, "%s/chat_template.jinja", dir);
        goto done;
    }
    json_t *tpl = NULL;
    const char *where = "tokenizer_config.json";
    if (eft__path_exists_in(dir, "chat_template.json")) {
        st = read_json(dir, "chat_template.json", &extra, err);
        if (st != EFT_OK) goto done;
        tpl = json_object_get(extra, "chat_template");
        where = "chat_template.json";
    }
    if (!tpl && cfg) {
        tpl = json_object_get(cfg, "chat_template");
        where = "tokenizer_config.json";
    }
    if (!tpl) {
        st = eft__fail(err, EFT_ERR_NOT_FOUND,
                       "%s: no chat template (looked for chat_template.jinja, chat_template.json and "
                       "\"chat_template\" in tokenizer_config.json)", dir);
        goto done;
    }
    if (json_is_array(tpl)) {
        /* Several named templates: transformers uses "default" unless told otherwise. */
        json_t *found = NULL;
        for (size_t i = 0; i < json_array_size(tpl); i++) {
            json_t *e = json_array_get(tpl, i);
            if (json_is_string(json_object_get(e, "name")) && !strcmp(json_string_value(json_object_get(e, "name")), "default"))
                found = json_object_get(e, "template");
        }
        if (!found) {
            st = eft__fail(err, EFT_ERR_NOT_FOUND, "%s/%s: the chat templates have no one named \"default\"", dir, where);
            goto done;
        }
        tpl = found;
    }
    if (!json_is_string(tpl)) {
        st = eft__fail(err, EFT_ERR_FORMAT, "%s/%s: \"chat_template\" must be a string or a list of {name, template}", dir, where);
        goto done;
    }
    st = open_source(json_string_value(tpl), json_string_length(tpl), defaults, out, err);
    defaults = NULL;
    if (st != EFT_OK) eft__error_prefix(err, "%s/%s", dir, where);
done:
    json_decref(cfg);
    json_decref(extra);
    json_decref(defaults);
    eft__free(source);
    return st;
}

static eft_status open_gguf(const char *path, eft_chat_template **out, eft__error *err) {
    eft__gguf *g = NULL;
    eft_status st = eft__gguf_open(path, &g, err);
    if (st != EFT_OK) return st;
    eft__gguf_str tpl;
    json_t *defaults = NULL;
    if (!eft__gguf_get_str(g, "tokenizer.chat_template", &tpl)) {
        st = eft__fail(err, EFT_ERR_NOT_FOUND, "%s: no tokenizer.chat_template in the GGUF metadata", path);
        goto done;
    }
    defaults = json_object();
    if (!defaults) {
        st = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    static const char *const ids[][2] = {{"tokenizer.ggml.bos_token_id", "bos_token"},
                                         {"tokenizer.ggml.eos_token_id", "eos_token"},
                                         {"tokenizer.ggml.unknown_token_id", "unk_token"},
                                         {"tokenizer.ggml.separator_token_id", "sep_token"},
                                         {"tokenizer.ggml.padding_token_id", "pad_token"}};
    const eft__gguf_kv *tokens = eft__gguf_find(g, "tokenizer.ggml.tokens");
    for (size_t i = 0; tokens && i < sizeof ids / sizeof ids[0]; i++) {
        uint64_t id;
        eft__gguf_str s;
        if (!eft__gguf_get_u64(g, ids[i][0], &id)) continue;
        if (!eft__gguf_arr_str(g, tokens, id, &s)) {
            st = eft__fail(err, EFT_ERR_FORMAT, "%s: %s is %llu but the vocabulary has %llu tokens", path, ids[i][0],
                           (unsigned long long)id, (unsigned long long)eft__gguf_arr_len(tokens));
            goto done;
        }
        if (json_object_set_new(defaults, ids[i][1], json_stringn(s.ptr, (size_t)s.len))) {
            st = eft__fail(err, EFT_ERR_FORMAT, "%s: token %llu is not valid UTF-8", path, (unsigned long long)id);
            goto done;
        }
    }
    st = open_source(tpl.ptr, (size_t)tpl.len, defaults, out, err);
    defaults = NULL;
    if (st != EFT_OK) eft__error_prefix(err, "%s: tokenizer.chat_template", path);
done:
    json_decref(defaults);
    eft__gguf_close(g);
    return st;
}

eft_status eft_chat_template_open_model(const char *path, eft_chat_template **out) {
    eft__error err = {0};
    if (out) *out = NULL;
    if (!path || !out)
        return eft__set_last_error(&(eft__error){EFT_ERR_INVALID_ARGUMENT, "eft_chat_template_open_model: NULL argument"});
    /* The same references eft_model_open takes: a folder, a .gguf, a folder holding one .gguf,
     * or a Hugging Face id in the local cache. */
    char *resolved = NULL;
    eft__model_ref_kind kind;
    eft_status st = eft__model_ref_resolve(path, NULL, NULL, &resolved, &kind, &err);
    if (st == EFT_OK) {
        st = kind == EFT__REF_GGUF ? open_gguf(resolved, out, &err) : open_folder(resolved, out, &err);
        eft__free(resolved);
    }
    if (st != EFT_OK) return eft__set_last_error(&err);
    eft__clear_last_error();
    return EFT_OK;
}
