/*
 * fuzz_http_request.c — the server's request parsers (src/server/request.c) on arbitrary bodies.
 * Byte 0 picks the route (/v1/embeddings, /embed, /rerank, /tokenize, /detokenize, completions,
 * chat); the rest is the body. A parse that succeeds must hold the invariants the workers rely on
 * (inputs within the caps, no NULL text, ids in range); one that fails must name a 4xx or 503
 * status with a message, and its error bodies (OpenAI's and TEI's shape) must be valid JSON. Then everything is freed, and
 * the body goes through the response writer's string escaping, which must give valid JSON.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "server/srv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_error(const srv_error *e) {
    if (!((e->status >= 400 && e->status < 500) || e->status == 503) || !e->message[0]) abort();
    size_t n = 0;
    char *body = srv_error_json(e, &n);
    if (!body) return; /* out of memory */
    json_t *j = json_loadb(body, n, 0, NULL);
    if (!j || !json_is_string(json_object_get(json_object_get(j, "error"), "message"))) abort();
    json_decref(j);
    free(body);
    /* TEI's shape of the same error: a 4xx or 503 too, and valid JSON. */
    int status = 0;
    if (!(body = srv_error_json_tei(e, &status, &n))) return;
    if (!((status >= 400 && status < 500) || status == 503)) abort();
    j = json_loadb(body, n, 0, NULL);
    if (!j || !json_is_string(json_object_get(j, "error")) || !json_is_string(json_object_get(j, "error_type"))) abort();
    json_decref(j);
    free(body);
}

static void check_embed(const srv_embed_req *r, const srv_limits *lim) {
    if (r->n == 0 || (!r->texts && !r->ids)) abort();
    if (r->n > 1 && r->n > lim->max_inputs) abort();
    for (size_t i = 0; i < r->n; i++) {
        if (r->texts && !r->texts[i]) abort();
        if (r->ids) {
            if (r->n_ids[i] == 0 || r->n_ids[i] > lim->max_input_ids) abort();
            for (size_t k = 0; k < r->n_ids[i]; k++)
                if (r->ids[i][k] < 0) abort();
        }
    }
    if (r->dimensions < 0 || (lim->max_dim && r->dimensions > lim->max_dim)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    srv_limits lim = {.max_inputs = 8, .max_input_ids = 64, .max_dim = 32};
    srv_error e = {0};
    switch (data[0] % 7) {
    case 0:
    case 1: {
        srv_embed_req r;
        bool ok = data[0] % 7 == 0 ? srv_parse_openai_embeddings(body, len, &lim, &r, &e)
                                   : srv_parse_tei_embed(body, len, &lim, &r, &e);
        if (ok) check_embed(&r, &lim), srv_embed_req_free(&r);
        else check_error(&e);
        break;
    }
    case 2: {
        srv_rerank_req r;
        if (srv_parse_rerank(body, len, &lim, &r, &e)) {
            if (!r.query || r.n == 0 || r.n > lim.max_inputs) abort();
            for (size_t i = 0; i < r.n; i++)
                if (!r.texts[i]) abort();
            srv_rerank_req_free(&r);
        } else {
            check_error(&e);
        }
        break;
    }
    case 3: {
        srv_tokenize_req r;
        if (srv_parse_tokenize(body, len, &r, &e)) {
            if (!r.text) abort();
            json_decref(r.doc);
        } else {
            check_error(&e);
        }
        break;
    }
    case 4: {
        srv_detokenize_req r;
        if (srv_parse_detokenize(body, len, &lim, &r, &e)) {
            if (r.n > lim.max_input_ids || (r.n && !r.ids)) abort();
            free(r.ids);
        } else {
            check_error(&e);
        }
        break;
    }
    case 5:
    case 6: {
        srv_gen_req r;
        bool ok = data[0] % 7 == 5 ? srv_parse_completion(body, len, &lim, &r, &e) : srv_parse_chat(body, len, &r, &e);
        if (ok) {
            if (r.chat ? !r.messages_json : (!r.prompt && !r.prompt_ids)) abort();
            if (r.n_stop < 0 || r.n_stop > SRV_MAX_STOP) abort();
            for (int i = 0; i < r.n_stop; i++)
                if (!r.stop[i] || !r.stop[i][0]) abort();
            if (r.logprobs > 20) abort();
            srv_gen_req_free(&r);
        } else {
            check_error(&e);
        }
        break;
    }
    }
    /* The JSON writer on the body itself: any bytes become one valid JSON string (invalid UTF-8
     * as U+FFFD), which reads back to the same length or longer. */
    srv_buf b = {0};
    srv_buf_json_str(&b, body, len);
    if (!b.oom) {
        json_t *j = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (!json_is_string(j) || json_string_length(j) < len) abort();
        json_decref(j);
    }
    srv_buf_free(&b);
    return 0;
}
