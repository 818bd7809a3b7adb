/*
 * request.c — turns untrusted request bodies into typed requests: JSON syntax, UTF-8 (jansson
 * refuses invalid UTF-8 and NUL inside strings), field types, ranges and per-request caps, each
 * failure an OpenAI-shaped error with the field named. Pure functions with no server state, so
 * the fuzz target (tests/fuzz/fuzz_http_request.c) can run them on anything.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/json.h"
#include "server/srv.h"

/* ---------------------------------------------------------------------------------------------
 * Field helpers: a JSON null counts as absent, as OpenAI's own server treats it.
 * ------------------------------------------------------------------------------------------- */

static json_t *parse_object(const char *body, size_t len, srv_error *err) {
    if (len == 0) {
        srv_fail(err, 400, NULL, "the request body is empty; expected a JSON object");
        return NULL;
    }
    json_error_t je;
    json_t *doc = eft__json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        if (eft__json_oom()) srv_fail(err, 503, NULL, "out of memory reading the request");
        else srv_fail(err, 400, NULL, "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(doc)) {
        srv_fail(err, 400, NULL, "the request body must be a JSON object, not %s", eft__json_kind(doc));
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static json_t *field(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

static bool get_bool(json_t *o, const char *key, bool *out, srv_error *err) {
    json_t *v = field(o, key);
    if (!v) return true;
    if (!json_is_boolean(v)) return srv_fail(err, 400, key, "'%s' must be a boolean, not %s", key, eft__json_kind(v));
    *out = json_is_true(v);
    return true;
}

static bool get_int(json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out, bool *given, srv_error *err) {
    json_t *v = field(o, key);
    if (given) *given = v != NULL;
    if (!v) return true;
    if (!json_is_integer(v)) return srv_fail(err, 400, key, "'%s' must be an integer, not %s", key, eft__json_kind(v));
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return srv_fail(err, 400, key, "'%s' is %lld; expected %lld to %lld", key, (long long)x, (long long)lo,
                        (long long)hi);
    *out = x;
    return true;
}

static bool get_num(json_t *o, const char *key, double lo, double hi, float *out, bool *given, srv_error *err) {
    json_t *v = field(o, key);
    if (given) *given = v != NULL;
    if (!v) return true;
    if (!json_is_number(v)) return srv_fail(err, 400, key, "'%s' must be a number, not %s", key, eft__json_kind(v));
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return srv_fail(err, 400, key, "'%s' is %g; expected %g to %g", key, x, lo, hi);
    *out = (float)x;
    return true;
}

static bool get_str(json_t *o, const char *key, const char **out, srv_error *err) {
    json_t *v = field(o, key);
    if (!v) return true;
    if (!json_is_string(v)) return srv_fail(err, 400, key, "'%s' must be a string, not %s", key, eft__json_kind(v));
    *out = json_string_value(v);
    return true;
}

/* A token id sequence: an array of integers in [0, 2^31). */
static bool id_array(json_t *a, const char *param, size_t max, int32_t **out, size_t *n_out, srv_error *err) {
    size_t n = json_array_size(a);
    if (n == 0) return srv_fail_empty(err, param, "'%s' has an empty token list", param);
    if (n > max) return srv_fail(err, 413, param, "'%s' has %zu tokens, over the limit of %zu", param, n, max);
    int32_t *ids = malloc(n * sizeof *ids);
    if (!ids) return srv_fail(err, 503, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX) {
            free(ids);
            return srv_fail(err, 400, param, "'%s': token %zu must be a non-negative integer id, not %s", param, i,
                            json_is_integer(v) ? "a negative or huge integer" : eft__json_kind(v));
        }
        ids[i] = (int32_t)json_integer_value(v);
    }
    *out = ids;
    *n_out = n;
    return true;
}

/* "Right"/"Left" in any case (TEI writes them capitalised, clients often do not). */
static bool get_direction(json_t *o, eft_truncate *out, srv_error *err) {
    const char *d = NULL;
    if (!get_str(o, "truncation_direction", &d, err)) return false;
    if (!d) return true;
    if (!strcasecmp(d, "right")) *out = EFT_TRUNCATE_RIGHT_SIDE;
    else if (!strcasecmp(d, "left")) *out = EFT_TRUNCATE_LEFT_SIDE;
    else return srv_fail(err, 422, "truncation_direction", "'truncation_direction' must be \"Left\" or \"Right\"");
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Embeddings
 * ------------------------------------------------------------------------------------------- */

void srv_embed_req_free(srv_embed_req *r) {
    if (!r) return;
    if (r->ids)
        for (size_t i = 0; i < r->n; i++) free(r->ids[i]);
    free(r->ids);
    free(r->n_ids);
    free(r->texts);
    json_decref(r->doc);
    *r = (srv_embed_req){0};
}

/* Reads `input`/`inputs`: a string, a list of strings, a list of ids, or a list of id lists. */
static bool read_inputs(json_t *v, const char *param, bool allow_ids, const srv_limits *lim, srv_embed_req *r,
                        srv_error *err) {
    if (!v) return srv_fail(err, 400, param, "'%s' is required", param);
    if (json_is_string(v)) {
        r->texts = malloc(sizeof *r->texts);
        if (!r->texts) return srv_fail(err, 503, NULL, "out of memory");
        r->texts[0] = json_string_value(v);
        r->n = 1;
        return true;
    }
    if (!json_is_array(v))
        return srv_fail(err, 400, param, "'%s' must be a string or a list%s, not %s", param,
                        allow_ids ? " of strings or token ids" : " of strings", eft__json_kind(v));
    size_t n = json_array_size(v);
    if (n == 0) return srv_fail_empty(err, param, "'%s' is an empty list", param);
    json_t *first = json_array_get(v, 0);
    if (allow_ids && json_is_integer(first)) {
        r->ids = calloc(1, sizeof *r->ids);
        r->n_ids = calloc(1, sizeof *r->n_ids);
        if (!r->ids || !r->n_ids) return srv_fail(err, 503, NULL, "out of memory");
        r->n = 1;
        return id_array(v, param, lim->max_input_ids, &r->ids[0], &r->n_ids[0], err);
    }
    if (n > lim->max_inputs) {
        srv_fail(err, 413, param, "'%s' has %zu inputs, over the limit of %zu per request", param, n, lim->max_inputs);
        err->tei_status = 422; /* TEI: a batch over max_client_batch_size is a validation error */
        return false;
    }
    if (allow_ids && json_is_array(first)) {
        r->ids = calloc(n, sizeof *r->ids);
        r->n_ids = calloc(n, sizeof *r->n_ids);
        if (!r->ids || !r->n_ids) return srv_fail(err, 503, NULL, "out of memory");
        r->n = n;
        for (size_t i = 0; i < n; i++) {
            json_t *a = json_array_get(v, i);
            if (!json_is_array(a))
                return srv_fail(err, 400, param, "'%s'[%zu] must be a list of token ids like the others, not %s",
                                param, i, eft__json_kind(a));
            if (!id_array(a, param, lim->max_input_ids, &r->ids[i], &r->n_ids[i], err)) return false;
        }
        return true;
    }
    r->texts = calloc(n, sizeof *r->texts);
    if (!r->texts) return srv_fail(err, 503, NULL, "out of memory");
    r->n = n;
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(v, i);
        if (!json_is_string(s))
            return srv_fail(err, 400, param, "'%s'[%zu] must be a string%s, not %s", param, i,
                            allow_ids ? " (or every element a token id list)" : "", eft__json_kind(s));
        r->texts[i] = json_string_value(s);
    }
    return true;
}

static bool read_dimensions(json_t *doc, const srv_limits *lim, srv_embed_req *r, srv_error *err) {
    int64_t d = 0;
    bool given = false;
    if (!get_int(doc, "dimensions", 1, INT32_MAX, &d, &given, err)) return false;
    if (given && lim->max_dim > 0 && d > lim->max_dim)
        return srv_fail(err, 400, "dimensions", "'dimensions' is %lld but the model's embeddings have %lld",
                        (long long)d, (long long)lim->max_dim);
    r->dimensions = d;
    return true;
}

bool srv_parse_openai_embeddings(const char *body, size_t len, const srv_limits *lim, srv_embed_req *out,
                                 srv_error *err) {
    *out = (srv_embed_req){.normalize = -1};
    srv_embed_req *r = out;
    if (!(r->doc = parse_object(body, len, err))) return false;
    const char *fmt = NULL;
    bool truncate = false;
    if (!read_inputs(field(r->doc, "input"), "input", true, lim, r, err) || !get_str(r->doc, "model", &r->model, err) ||
        !get_str(r->doc, "encoding_format", &fmt, err) || !read_dimensions(r->doc, lim, r, err) ||
        !get_str(r->doc, "prompt_name", &r->prompt_name, err) || !get_bool(r->doc, "truncate", &truncate, err))
        goto fail;
    if (fmt && strcmp(fmt, "float") && strcmp(fmt, "base64")) {
        srv_fail(err, 400, "encoding_format", "'encoding_format' must be \"float\" or \"base64\", not \"%s\"", fmt);
        goto fail;
    }
    r->base64 = fmt && !strcmp(fmt, "base64");
    /* An extension beside OpenAI's fields: truncate (right side) instead of refusing long inputs. */
    r->truncate = truncate ? EFT_TRUNCATE_RIGHT_SIDE : EFT_TRUNCATE_NONE;
    if (truncate && !get_direction(r->doc, &r->truncate, err)) goto fail;
    return true;
fail:
    srv_embed_req_free(r);
    return false;
}

bool srv_parse_tei_embed(const char *body, size_t len, const srv_limits *lim, srv_embed_req *out, srv_error *err) {
    *out = (srv_embed_req){.normalize = 1};
    srv_embed_req *r = out;
    if (!(r->doc = parse_object(body, len, err))) return false;
    bool normalize = true, truncate = false;
    eft_truncate dir = EFT_TRUNCATE_RIGHT_SIDE;
    if (!read_inputs(field(r->doc, "inputs"), "inputs", true, lim, r, err) ||
        !get_bool(r->doc, "normalize", &normalize, err) || !get_bool(r->doc, "truncate", &truncate, err) ||
        !get_direction(r->doc, &dir, err) || !read_dimensions(r->doc, lim, r, err) ||
        !get_str(r->doc, "prompt_name", &r->prompt_name, err))
        goto fail;
    /* TEI normalises unless told not to. */
    r->normalize = normalize ? 1 : 0;
    r->truncate = truncate ? dir : EFT_TRUNCATE_NONE;
    return true;
fail:
    srv_embed_req_free(r);
    return false;
}

/* ---------------------------------------------------------------------------------------------
 * Rerank, tokenize, detokenize
 * ------------------------------------------------------------------------------------------- */

void srv_rerank_req_free(srv_rerank_req *r) {
    if (!r) return;
    free(r->texts);
    json_decref(r->doc);
    *r = (srv_rerank_req){0};
}

bool srv_parse_rerank(const char *body, size_t len, const srv_limits *lim, srv_rerank_req *out, srv_error *err) {
    *out = (srv_rerank_req){0};
    srv_rerank_req *r = out;
    if (!(r->doc = parse_object(body, len, err))) return false;
    bool truncate = false;
    eft_truncate dir = EFT_TRUNCATE_RIGHT_SIDE;
    json_t *texts = field(r->doc, "texts");
    if (!get_str(r->doc, "query", &r->query, err) || !get_bool(r->doc, "raw_scores", &r->raw_scores, err) ||
        !get_bool(r->doc, "return_text", &r->return_text, err) || !get_bool(r->doc, "truncate", &truncate, err) ||
        !get_direction(r->doc, &dir, err))
        goto fail;
    if (!r->query) {
        srv_fail(err, 400, "query", "'query' is required");
        goto fail;
    }
    if (!texts) {
        srv_fail(err, 400, "texts", "'texts' is required");
        goto fail;
    }
    if (!json_is_array(texts)) {
        srv_fail(err, 400, "texts", "'texts' must be a list of strings, not %s", eft__json_kind(texts));
        goto fail;
    }
    r->n = json_array_size(texts);
    if (r->n == 0) {
        srv_fail_empty(err, "texts", "'texts' is an empty list");
        goto fail;
    }
    if (r->n > lim->max_inputs) {
        srv_fail(err, 413, "texts", "'texts' has %zu inputs, over the limit of %zu per request", r->n,
                 lim->max_inputs);
        err->tei_status = 422;
        goto fail;
    }
    if (!(r->texts = calloc(r->n, sizeof *r->texts))) {
        srv_fail(err, 503, NULL, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < r->n; i++) {
        json_t *s = json_array_get(texts, i);
        if (!json_is_string(s)) {
            srv_fail(err, 400, "texts", "'texts'[%zu] must be a string, not %s", i, eft__json_kind(s));
            goto fail;
        }
        r->texts[i] = json_string_value(s);
    }
    r->truncate = truncate ? dir : EFT_TRUNCATE_NONE;
    return true;
fail:
    srv_rerank_req_free(r);
    return false;
}

bool srv_parse_tokenize(const char *body, size_t len, srv_tokenize_req *out, srv_error *err) {
    *out = (srv_tokenize_req){.add_special_tokens = true};
    if (!(out->doc = parse_object(body, len, err))) return false;
    /* TEI calls it "inputs", vLLM "prompt"; both are read. */
    if (!get_str(out->doc, "inputs", &out->text, err) ||
        (!out->text && !get_str(out->doc, "prompt", &out->text, err)) ||
        !get_bool(out->doc, "add_special_tokens", &out->add_special_tokens, err))
        goto fail;
    if (!out->text) {
        srv_fail(err, 400, "inputs", "'inputs' (or 'prompt') is required");
        goto fail;
    }
    return true;
fail:
    json_decref(out->doc);
    out->doc = NULL;
    return false;
}

bool srv_parse_detokenize(const char *body, size_t len, const srv_limits *lim, srv_detokenize_req *out,
                          srv_error *err) {
    *out = (srv_detokenize_req){.skip_special = true};
    json_t *doc = parse_object(body, len, err);
    if (!doc) return false;
    const char *key = field(doc, "tokens") ? "tokens" : "ids";
    json_t *a = field(doc, key);
    bool ok = get_bool(doc, "skip_special_tokens", &out->skip_special, err);
    if (ok && !a) ok = srv_fail(err, 400, "tokens", "'tokens' is required");
    else if (ok && !json_is_array(a))
        ok = srv_fail(err, 400, key, "'%s' must be a list of token ids, not %s", key, eft__json_kind(a));
    else if (ok && json_array_size(a) == 0) out->n = 0; /* nothing decodes to "" */
    else if (ok) ok = id_array(a, key, lim->max_input_ids, &out->ids, &out->n, err);
    json_decref(doc);
    return ok;
}

/* ---------------------------------------------------------------------------------------------
 * Generation
 * ------------------------------------------------------------------------------------------- */

void srv_gen_req_free(srv_gen_req *r) {
    if (!r) return;
    free(r->prompt_ids);
    eft_free(r->messages_json); /* json_dumps allocates through eft's hook */
    json_decref(r->doc);
    *r = (srv_gen_req){0};
}

/* The fields completions and chat share. */
static bool read_sampling(json_t *doc, srv_gen_req *r, srv_error *err) {
    int64_t n = 1, seed = 0;
    bool seed_given = false;
    if (!get_int(doc, "n", 1, 128, &n, NULL, err)) return false;
    if (n != 1) return srv_fail(err, 400, "n", "'n' must be 1: eft returns one choice per request");
    if (!get_num(doc, "temperature", 0, 2, &r->temperature, &r->has_temperature, err) ||
        !get_num(doc, "top_p", 0, 1, &r->top_p, &r->has_top_p, err) ||
        !get_num(doc, "presence_penalty", -2, 2, &r->presence_penalty, NULL, err) ||
        !get_num(doc, "frequency_penalty", -2, 2, &r->frequency_penalty, NULL, err) ||
        !get_int(doc, "seed", INT64_MIN, INT64_MAX, &seed, &seed_given, err) ||
        !get_bool(doc, "stream", &r->stream, err) || !get_str(doc, "model", &r->model, err) ||
        !get_bool(doc, "ignore_eos", &r->ignore_eos, err))
        return false;
    if (r->has_top_p && r->top_p <= 0) return srv_fail(err, 400, "top_p", "'top_p' must be greater than 0");
    r->has_seed = seed_given;
    r->seed = (uint64_t)seed;
    json_t *so = field(doc, "stream_options");
    if (so) {
        if (!json_is_object(so))
            return srv_fail(err, 400, "stream_options", "'stream_options' must be an object, not %s",
                            eft__json_kind(so));
        if (!get_bool(so, "include_usage", &r->include_usage, err)) return false;
    }
    json_t *stop = field(doc, "stop");
    if (json_is_string(stop)) {
        if (json_string_length(stop) > 0) r->stop[r->n_stop++] = json_string_value(stop);
    } else if (json_is_array(stop)) {
        if (json_array_size(stop) > SRV_MAX_STOP)
            return srv_fail(err, 400, "stop", "'stop' has %zu strings; at most %d", json_array_size(stop),
                            SRV_MAX_STOP);
        for (size_t i = 0; i < json_array_size(stop); i++) {
            json_t *s = json_array_get(stop, i);
            if (!json_is_string(s))
                return srv_fail(err, 400, "stop", "'stop'[%zu] must be a string, not %s", i, eft__json_kind(s));
            if (json_string_length(s) > 0) r->stop[r->n_stop++] = json_string_value(s);
        }
    } else if (stop) {
        return srv_fail(err, 400, "stop", "'stop' must be a string or a list of strings, not %s", eft__json_kind(stop));
    }
    return true;
}

bool srv_parse_completion(const char *body, size_t len, const srv_limits *lim, srv_gen_req *out, srv_error *err) {
    *out = (srv_gen_req){.max_tokens = -1, .logprobs = -1};
    srv_gen_req *r = out;
    if (!(r->doc = parse_object(body, len, err))) return false;
    int64_t mt = 16, lp = -1;
    bool mt_given = false;
    if (!read_sampling(r->doc, r, err) || !get_int(r->doc, "max_tokens", 1, INT32_MAX, &mt, &mt_given, err) ||
        !get_int(r->doc, "logprobs", 0, 20, &lp, NULL, err) || !get_bool(r->doc, "echo", &r->echo, err))
        goto fail;
    if (r->echo) {
        srv_fail(err, 400, "echo", "'echo' is not supported");
        goto fail;
    }
    /* OpenAI's completions default is 16 tokens. */
    r->max_tokens = (int)mt;
    r->logprobs = (int)lp;
    r->want_logprobs = lp >= 0;
    json_t *p = field(r->doc, "prompt");
    if (!p) {
        srv_fail(err, 400, "prompt", "'prompt' is required");
        goto fail;
    }
    /* A one-element list is the same prompt; several prompts would mean several choices. */
    if (json_is_array(p) && json_array_size(p) == 1 &&
        (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0))))
        p = json_array_get(p, 0);
    if (json_is_string(p)) {
        r->prompt = json_string_value(p);
    } else if (json_is_array(p) && json_array_size(p) > 0 && json_is_integer(json_array_get(p, 0))) {
        if (!id_array(p, "prompt", lim->max_input_ids, &r->prompt_ids, &r->n_prompt_ids, err)) goto fail;
    } else if (json_is_array(p) && json_array_size(p) == 0) {
        srv_fail(err, 400, "prompt", "'prompt' is an empty list");
        goto fail;
    } else if (json_is_array(p)) {
        srv_fail(err, 400, "prompt", "'prompt' must be one string or one list of token ids: eft returns one choice");
        goto fail;
    } else {
        srv_fail(err, 400, "prompt", "'prompt' must be a string or a list of token ids, not %s", eft__json_kind(p));
        goto fail;
    }
    return true;
fail:
    srv_gen_req_free(r);
    return false;
}

bool srv_parse_chat(const char *body, size_t len, srv_gen_req *out, srv_error *err) {
    *out = (srv_gen_req){.max_tokens = -1, .logprobs = -1, .chat = true};
    srv_gen_req *r = out;
    if (!(r->doc = parse_object(body, len, err))) return false;
    int64_t mt = -1, top = 0;
    bool mt_given = false, mct_given = false, top_given = false;
    if (!read_sampling(r->doc, r, err) || !get_int(r->doc, "max_tokens", 1, INT32_MAX, &mt, &mt_given, err) ||
        !get_int(r->doc, "max_completion_tokens", 1, INT32_MAX, &mt, &mct_given, err) ||
        !get_bool(r->doc, "logprobs", &r->want_logprobs, err) ||
        !get_int(r->doc, "top_logprobs", 0, 20, &top, &top_given, err))
        goto fail;
    if (top_given && !r->want_logprobs) {
        srv_fail(err, 400, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
        goto fail;
    }
    r->max_tokens = (int)mt;
    r->logprobs = r->want_logprobs ? (int)top : -1;
    json_t *m = field(r->doc, "messages");
    if (!m) {
        srv_fail(err, 400, "messages", "'messages' is required");
        goto fail;
    }
    if (!json_is_array(m) || json_array_size(m) == 0) {
        srv_fail(err, 400, "messages", "'messages' must be a non-empty list of messages, not %s",
                 json_is_array(m) ? "an empty list" : eft__json_kind(m));
        goto fail;
    }
    for (size_t i = 0; i < json_array_size(m); i++) {
        json_t *msg = json_array_get(m, i);
        json_t *role = json_is_object(msg) ? json_object_get(msg, "role") : NULL;
        if (!json_is_string(role)) {
            srv_fail(err, 400, "messages", "'messages'[%zu] must be an object with a string 'role'", i);
            goto fail;
        }
        json_t *content = json_object_get(msg, "content");
        if (content && !json_is_string(content) && !json_is_array(content) && !json_is_null(content)) {
            srv_fail(err, 400, "messages", "'messages'[%zu].content must be a string or a list of parts, not %s", i,
                     eft__json_kind(content));
            goto fail;
        }
    }
    r->messages_json = json_dumps(m, JSON_COMPACT);
    if (!r->messages_json) {
        srv_fail(err, 503, NULL, "out of memory");
        goto fail;
    }
    return true;
fail:
    srv_gen_req_free(r);
    return false;
}
