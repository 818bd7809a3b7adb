/*
 * st_modules.c — reads a sentence-transformers folder: modules.json, the Pooling module's
 * config.json, sentence_bert_config.json and config_sentence_transformers.json. Module types are
 * recognised in every spelling sentence-transformers has written (v2-v5's
 * "sentence_transformers.models.Pooling", v6's "sentence_transformers.sentence_transformer.
 * modules.pooling.Pooling", ...) by their class name under the sentence_transformers package.
 * A module eft does not implement is refused, since skipping it would change the embeddings.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "core/json.h"
#include "formats/st_modules.h"

#define ST_FILE_MAX_BYTES (4u << 20)
#define ST_MAX_MODULES 64
#define ST_MAX_PROMPTS 4096
#define ST_MAX_DIM 65536
#define ST_MAX_SEQ (1 << 24)

static const char *const k_mode_names[EFT__POOL_COUNT] = {
    "cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"};
/* The legacy boolean keys, in the same (concatenation) order. */
static const char *const k_mode_keys[EFT__POOL_COUNT] = {
    "pooling_mode_cls_token",           "pooling_mode_max_tokens",
    "pooling_mode_mean_tokens",         "pooling_mode_mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"};

const char *eft__pooling_mode_name(eft__pooling_mode m) {
    return (unsigned)m < EFT__POOL_COUNT ? k_mode_names[m] : "?";
}

static bool *mode_flag(eft__pooling_config *p, eft__pooling_mode m) {
    switch (m) {
    case EFT__POOL_CLS: return &p->cls;
    case EFT__POOL_MAX: return &p->max;
    case EFT__POOL_MEAN: return &p->mean;
    case EFT__POOL_MEAN_SQRT_LEN: return &p->mean_sqrt_len;
    case EFT__POOL_WEIGHTEDMEAN: return &p->weightedmean;
    case EFT__POOL_LASTTOKEN: return &p->lasttoken;
    case EFT__POOL_COUNT: break;
    }
    return NULL;
}

const char *eft__pooling_names(const eft__pooling_config *p, char *buf, size_t n) {
    if (!n) return buf;
    buf[0] = 0;
    size_t k = 0;
    for (int i = 0; i < p->n_modes && i < EFT__POOL_COUNT && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%s", i ? "+" : "", eft__pooling_mode_name(p->order[i]));
    if (p->n_modes == 0) snprintf(buf, n, "none");
    return buf;
}

/* =============================================================================================
 * JSON helpers
 * =========================================================================================== */


static eft_status load_json(const char *json, size_t len, const char *label, json_t **out,
                            eft__error *err) {
    json_error_t je;
    *out = eft__json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (*out) return EFT_OK;
    if (eft__json_oom() || json_error_code(&je) == json_error_out_of_memory || je.text[0] == 0)
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory while parsing", label);
    return eft__fail(err, EFT_ERR_FORMAT, "%s: invalid JSON at line %d, column %d: %s", label, je.line,
                     je.column, je.text);
}

/* The value of key, or NULL when absent or null (null means "the default" in these files). */
static const json_t *jget(const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj, key);
    return (v && !json_is_null(v)) ? v : NULL;
}

static eft_status get_bool(const json_t *obj, const char *key, const char *label, bool *out,
                           eft__error *err) {
    const json_t *v = jget(obj, key);
    if (!v) return EFT_OK;
    if (!json_is_boolean(v))
        return eft__fail(err, EFT_ERR_FORMAT, "%s: key '%s' must be true or false, found %s", label, key,
                         eft__json_kind(v));
    *out = json_is_true(v);
    return EFT_OK;
}

static eft_status get_int(const json_t *obj, const char *key, const char *label, int lo, int hi,
                          int *out, eft__error *err) {
    const json_t *v = jget(obj, key);
    if (!v) return EFT_OK;
    if (!json_is_integer(v))
        return eft__fail(err, EFT_ERR_FORMAT, "%s: key '%s' must be an integer, found %s", label, key,
                         eft__json_kind(v));
    json_int_t x = json_integer_value(v);
    if (x < lo)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: key '%s' is %lld but must be at least %d", label, key,
                         (long long)x, lo);
    if (x > hi)
        return eft__fail(err, EFT_ERR_LIMIT, "%s: key '%s' is %lld, over eft's limit of %d", label, key,
                         (long long)x, hi);
    *out = (int)x;
    return EFT_OK;
}

/* A fresh copy of a string value (NULL stays NULL when absent). */
static eft_status get_strdup(const json_t *obj, const char *key, const char *label, char **out,
                             eft__error *err) {
    const json_t *v = jget(obj, key);
    if (!v) return EFT_OK;
    if (!json_is_string(v))
        return eft__fail(err, EFT_ERR_FORMAT, "%s: key '%s' must be a string, found %s", label, key,
                         eft__json_kind(v));
    char *s = eft__strdup(json_string_value(v));
    if (!s) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    eft__free(*out);
    *out = s;
    return EFT_OK;
}

/* =============================================================================================
 * modules.json
 * =========================================================================================== */

typedef enum module_kind { MOD_TRANSFORMER, MOD_POOLING, MOD_NORMALIZE, MOD_OTHER } module_kind;

/* The class a "type" names, when it lies in the sentence_transformers package. */
static module_kind module_kind_of(const char *type) {
    static const char prefix[] = "sentence_transformers.";
    if (strncmp(type, prefix, sizeof prefix - 1) != 0) return MOD_OTHER;
    const char *cls = strrchr(type, '.') + 1;
    if (strcmp(cls, "Transformer") == 0) return MOD_TRANSFORMER;
    if (strcmp(cls, "Pooling") == 0) return MOD_POOLING;
    if (strcmp(cls, "Normalize") == 0) return MOD_NORMALIZE;
    return MOD_OTHER;
}

/* A module path must stay inside the model folder. */
static bool path_is_safe(const char *p) {
    if (p[0] == '/') return false;
    for (const char *s = p; *s;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 2 && s[0] == '.' && s[1] == '.') return false;
        if (!e) break;
        s = e + 1;
    }
    return true;
}

eft_status eft__st_parse_modules(const char *json, size_t len, const char *label,
                                 eft__st_config *out, eft__error *err) {
    json_t *root;
    eft_status st = load_json(json, len, label, &root, err);
    if (st) return st;
    int seen_transformer = -1, seen_pooling = -1, seen_normalize = -1;
    char *tpath = NULL, *ppath = NULL;
    if (!json_is_array(root)) {
        st = eft__fail(err, EFT_ERR_FORMAT, "%s: the top level must be a list of modules, found %s",
                       label, eft__json_kind(root));
        goto done;
    }
    size_t n = json_array_size(root);
    if (n > ST_MAX_MODULES) {
        st = eft__fail(err, EFT_ERR_LIMIT, "%s: %zu modules, over eft's limit of %d", label, n,
                       ST_MAX_MODULES);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(root, i);
        if (!json_is_object(m)) {
            st = eft__fail(err, EFT_ERR_FORMAT, "%s: module %zu must be an object, found %s", label, i,
                           eft__json_kind(m));
            goto done;
        }
        const json_t *jt = json_object_get(m, "type"), *jp = json_object_get(m, "path");
        if (!json_is_string(jt) || !json_is_string(jp)) {
            st = eft__fail(err, EFT_ERR_FORMAT, "%s: module %zu needs string 'type' and 'path' keys, "
                           "found %s and %s", label, i, jt ? eft__json_kind(jt) : "nothing",
                           jp ? eft__json_kind(jp) : "nothing");
            goto done;
        }
        const char *type = json_string_value(jt), *path = json_string_value(jp);
        if (!path_is_safe(path)) {
            st = eft__fail(err, EFT_ERR_FORMAT, "%s: module %zu (%s) has path '%s', which leaves the "
                           "model folder", label, i, type, path);
            goto done;
        }
        module_kind k = module_kind_of(type);
        int *seen = k == MOD_TRANSFORMER ? &seen_transformer
                    : k == MOD_POOLING   ? &seen_pooling
                    : k == MOD_NORMALIZE ? &seen_normalize
                                         : NULL;
        if (!seen) {
            st = eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: module type '%s' (path '%s') is not supported; "
                           "eft implements Transformer, Pooling and Normalize modules", label, type,
                           path);
            goto done;
        }
        if (*seen >= 0) {
            st = eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: a second %s module (path '%s'); eft "
                           "implements one of each", label, type, path);
            goto done;
        }
        *seen = (int)i;
        if (k == MOD_TRANSFORMER && i != 0) {
            st = eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: the Transformer module (path '%s') is module "
                           "%zu; eft needs it first", label, path, i);
            goto done;
        }
        if (k == MOD_POOLING && seen_normalize >= 0) {
            st = eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: Pooling (path '%s') comes after Normalize; "
                           "eft normalises the pooled embedding only", label, path);
            goto done;
        }
        char **dst = k == MOD_TRANSFORMER ? &tpath : k == MOD_POOLING ? &ppath : NULL;
        if (dst) {
            *dst = eft__strdup(path);
            if (!*dst) {
                st = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
                goto done;
            }
        }
    }
    if (seen_transformer < 0) {
        st = eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: no Transformer module; eft needs one first", label);
        goto done;
    }
    out->present = true;
    out->has_pooling = seen_pooling >= 0;
    out->normalize = seen_normalize >= 0;
    eft__free(out->transformer_path);
    eft__free(out->pooling_path);
    out->transformer_path = tpath;
    out->pooling_path = ppath;
    tpath = ppath = NULL;
done:
    eft__free(tpath);
    eft__free(ppath);
    json_decref(root);
    return st;
}

/* =============================================================================================
 * Pooling config
 * =========================================================================================== */

static eft_status add_mode(eft__pooling_config *p, const char *name, const char *label,
                           eft__error *err) {
    for (int m = 0; m < EFT__POOL_COUNT; m++) {
        if (strcmp(name, k_mode_names[m]) != 0) continue;
        bool *f = mode_flag(p, (eft__pooling_mode)m);
        if (*f)
            return eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: pooling_mode lists '%s' twice", label, name);
        *f = true;
        p->order[p->n_modes++] = (eft__pooling_mode)m;
        return EFT_OK;
    }
    return eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: pooling_mode '%s' is not supported; the modes are "
                     "cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken", label, name);
}

static eft_status parse_pooling_obj(const json_t *root, const char *label, eft__pooling_config *p,
                                    eft__error *err) {
    if (!json_is_object(root))
        return eft__fail(err, EFT_ERR_FORMAT, "%s: the top level must be an object, found %s", label,
                         eft__json_kind(root));
    eft_status st;
    if ((st = get_int(root, "word_embedding_dimension", label, 1, ST_MAX_DIM,
                      &p->word_embedding_dimension, err)))
        return st;
    if ((st = get_int(root, "embedding_dimension", label, 1, ST_MAX_DIM, &p->word_embedding_dimension,
                      err)))
        return st;
    if ((st = get_bool(root, "include_prompt", label, &p->include_prompt, err))) return st;

    /* The legacy boolean keys are type-checked even when v6's pooling_mode overrides them. */
    bool legacy[EFT__POOL_COUNT] = {0};
    for (int m = 0; m < EFT__POOL_COUNT; m++)
        if ((st = get_bool(root, k_mode_keys[m], label, &legacy[m], err))) return st;
    const json_t *pm = jget(root, "pooling_mode");
    if (pm) {
        if (json_is_string(pm)) return add_mode(p, json_string_value(pm), label, err);
        if (!json_is_array(pm) || json_array_size(pm) == 0)
            return eft__fail(err, EFT_ERR_FORMAT, "%s: key 'pooling_mode' must be a mode name or a "
                             "non-empty list of them, found %s", label, eft__json_kind(pm));
        if (json_array_size(pm) > EFT__POOL_COUNT)
            return eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: pooling_mode lists %zu modes; there are "
                             "only %d, each at most once", label, json_array_size(pm), EFT__POOL_COUNT);
        for (size_t i = 0; i < json_array_size(pm); i++) {
            const json_t *e = json_array_get(pm, i);
            if (!json_is_string(e))
                return eft__fail(err, EFT_ERR_FORMAT, "%s: pooling_mode[%zu] must be a string, found %s",
                                 label, i, eft__json_kind(e));
            if ((st = add_mode(p, json_string_value(e), label, err))) return st;
        }
        return EFT_OK;
    }
    for (int m = 0; m < EFT__POOL_COUNT; m++) {
        if (!legacy[m]) continue;
        *mode_flag(p, (eft__pooling_mode)m) = true;
        p->order[p->n_modes++] = (eft__pooling_mode)m;
    }
    /* No mode at all means mean, as sentence-transformers (v6) reads such a file. */
    if (p->n_modes == 0) {
        p->mean = true;
        p->order[p->n_modes++] = EFT__POOL_MEAN;
    }
    return EFT_OK;
}

eft_status eft__st_parse_pooling(const char *json, size_t len, const char *label,
                                 eft__pooling_config *out, eft__error *err) {
    memset(out, 0, sizeof *out);
    out->include_prompt = true;
    json_t *root;
    eft_status st = load_json(json, len, label, &root, err);
    if (st) return st;
    eft__pooling_config p = *out;
    st = parse_pooling_obj(root, label, &p, err);
    json_decref(root);
    if (st == EFT_OK) *out = p;
    return st;
}

/* =============================================================================================
 * sentence_bert_config.json and config_sentence_transformers.json
 * =========================================================================================== */

eft_status eft__st_parse_sbert_config(const char *json, size_t len, const char *label,
                                      eft__st_config *out, eft__error *err) {
    json_t *root;
    eft_status st = load_json(json, len, label, &root, err);
    if (st) return st;
    if (!json_is_object(root))
        st = eft__fail(err, EFT_ERR_FORMAT, "%s: the top level must be an object, found %s", label,
                       eft__json_kind(root));
    if (!st) st = get_int(root, "max_seq_length", label, 1, ST_MAX_SEQ, &out->max_seq_length, err);
    if (!st) st = get_bool(root, "do_lower_case", label, &out->do_lower_case, err);
    json_decref(root);
    return st;
}

static void free_prompts(eft__st_config *c) {
    for (size_t i = 0; i < c->n_prompts; i++) {
        eft__free(c->prompts[i].name);
        eft__free(c->prompts[i].text);
    }
    eft__free(c->prompts);
    c->prompts = NULL;
    c->n_prompts = 0;
}

static eft_status parse_prompts(const json_t *pr, const char *label, eft__st_config *out,
                                eft__error *err) {
    if (!json_is_object(pr))
        return eft__fail(err, EFT_ERR_FORMAT, "%s: key 'prompts' must be an object of name: text, "
                         "found %s", label, eft__json_kind(pr));
    size_t n = json_object_size(pr);
    if (n > ST_MAX_PROMPTS)
        return eft__fail(err, EFT_ERR_LIMIT, "%s: %zu prompts, over eft's limit of %d", label, n,
                         ST_MAX_PROMPTS);
    free_prompts(out);
    if (n == 0) return EFT_OK;
    out->prompts = eft__calloc(n, sizeof *out->prompts);
    if (!out->prompts) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    const char *name;
    const json_t *v;
    json_object_foreach((json_t *)pr, name, v) {
        if (!json_is_string(v))
            return eft__fail(err, EFT_ERR_FORMAT, "%s: prompts['%s'] must be a string, found %s", label,
                             name, eft__json_kind(v));
        eft__st_prompt *p = &out->prompts[out->n_prompts++];
        p->name = eft__strdup(name);
        p->text = eft__strdup(json_string_value(v));
        if (!p->name || !p->text) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    }
    return EFT_OK;
}

eft_status eft__st_parse_st_config(const char *json, size_t len, const char *label,
                                   eft__st_config *out, eft__error *err) {
    json_t *root;
    eft_status st = load_json(json, len, label, &root, err);
    if (st) return st;
    if (!json_is_object(root))
        st = eft__fail(err, EFT_ERR_FORMAT, "%s: the top level must be an object, found %s", label,
                       eft__json_kind(root));
    const json_t *pr = st ? NULL : jget(root, "prompts");
    if (!st && pr) st = parse_prompts(pr, label, out, err);
    if (!st) st = get_strdup(root, "default_prompt_name", label, &out->default_prompt_name, err);
    if (!st) st = get_strdup(root, "similarity_fn_name", label, &out->similarity_fn_name, err);
    if (!st && out->default_prompt_name) {
        bool found = false;
        for (size_t i = 0; i < out->n_prompts; i++)
            if (strcmp(out->prompts[i].name, out->default_prompt_name) == 0) found = true;
        if (!found)
            st = eft__fail(err, EFT_ERR_FORMAT, "%s: default_prompt_name '%s' is not one of the prompts",
                           label, out->default_prompt_name);
    }
    json_decref(root);
    return st;
}

/* =============================================================================================
 * The folder
 * =========================================================================================== */

typedef eft_status (*parse_fn)(const char *json, size_t len, const char *label, void *out,
                               eft__error *err);

/* Reads dir/name (dir/sub/name when sub is not empty) and hands it to parse; a missing file is
 * not an error (*found = false). */
static eft_status read_and_parse(const char *dir, const char *sub, const char *name,
                                 parse_fn parse, void *out, bool *found, eft__error *err) {
    if (found) *found = false;
    char *base = sub && sub[0] ? eft__path_join(dir, sub) : eft__strdup(dir);
    char *path = base ? eft__path_join(base, name) : NULL;
    eft__free(base);
    if (!path) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    if (!eft__path_exists(path)) {
        eft__free(path);
        return EFT_OK;
    }
    char *buf = NULL;
    size_t n = 0;
    eft_status st = eft__file_read_all(path, ST_FILE_MAX_BYTES, &buf, &n, err);
    if (!st) st = parse(buf, n, path, out, err);
    if (!st && found) *found = true;
    eft__free(buf);
    eft__free(path);
    return st;
}

static eft_status parse_modules_v(const char *j, size_t n, const char *l, void *o, eft__error *e) {
    return eft__st_parse_modules(j, n, l, o, e);
}
static eft_status parse_pooling_v(const char *j, size_t n, const char *l, void *o, eft__error *e) {
    return eft__st_parse_pooling(j, n, l, o, e);
}
static eft_status parse_sbert_v(const char *j, size_t n, const char *l, void *o, eft__error *e) {
    return eft__st_parse_sbert_config(j, n, l, o, e);
}
static eft_status parse_stcfg_v(const char *j, size_t n, const char *l, void *o, eft__error *e) {
    return eft__st_parse_st_config(j, n, l, o, e);
}

eft_status eft__st_config_load(const char *dir, eft__st_config *out, eft__error *err) {
    memset(out, 0, sizeof *out);
    out->pooling.include_prompt = true;
    bool found = false;
    eft_status st = read_and_parse(dir, NULL, "modules.json", parse_modules_v, out, &found, err);
    if (!st && out->has_pooling) {
        st = read_and_parse(dir, out->pooling_path, "config.json", parse_pooling_v, &out->pooling,
                            &found, err);
        if (!st && !found)
            st = eft__fail(err, EFT_ERR_NOT_FOUND, "%s: modules.json lists a Pooling module at '%s' "
                           "but %s/config.json is missing", dir, out->pooling_path, out->pooling_path);
    }
    /* sentence_bert_config.json sits with the Transformer module (the folder itself, usually). */
    if (!st) st = read_and_parse(dir, out->transformer_path, "sentence_bert_config.json",
                                 parse_sbert_v, out, NULL, err);
    if (!st) st = read_and_parse(dir, NULL, "config_sentence_transformers.json", parse_stcfg_v, out,
                                 NULL, err);
    if (!st && !out->transformer_path) {
        out->transformer_path = eft__strdup("");
        if (!out->transformer_path) st = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    }
    if (st) eft__st_config_free(out);
    return st;
}

void eft__st_config_free(eft__st_config *c) {
    if (!c) return;
    free_prompts(c);
    eft__free(c->default_prompt_name);
    eft__free(c->similarity_fn_name);
    eft__free(c->transformer_path);
    eft__free(c->pooling_path);
    memset(c, 0, sizeof *c);
}
