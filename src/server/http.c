/*
 * http.c — `eft serve` on libmicrohttpd: one polling thread does all socket I/O, reads bodies
 * (capped), checks API keys, routes, parses requests and writes responses; compute runs on the
 * embedding and generation workers, and a connection waiting for them is suspended and resumed
 * when its job is done (or, streaming, when new SSE bytes are ready). It also owns start-up
 * (models load while /health says 503) and shutdown (SIGTERM/SIGINT: stop accepting, finish what
 * is in flight, exit 0).
 */
#define _GNU_SOURCE /* qsort_r */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "core/json.h"
#include "server/server.h"
#include "server/srv.h"

typedef struct server {
    const eft_server_config *cfg;
    struct MHD_Daemon *d;
    atomic_bool ready, draining;
    eft_embedder *emb, *rer;
    eft_generator *gen;
    const eft_tokenizer *tok; /* for /tokenize: the generator's, else the embedder's */
    eft_chat_template *tmpl;
    pthread_mutex_t tmpl_mu;  /* a template keeps its error message on the handle */
    srv_embed_worker *ew;
    srv_gen_worker *gw;
    const char *gen_name, *emb_name, *rer_name;
    json_t *info;             /* the /info document, built once loaded */
    srv_limits lim;
    pthread_mutex_t mu;       /* in_flight and load state */
    pthread_cond_t cv;
    int in_flight;
    bool load_done, load_failed;
} server;

typedef enum phase { PH_READ = 0, PH_WAIT_EMBED, PH_WAIT_RERANK, PH_WAIT_GEN, PH_DONE } phase;

typedef struct conn_ctx {
    server *s;
    struct MHD_Connection *conn;
    srv_route route;
    double t0;
    int status;
    phase ph;
    srv_buf body;
    bool too_large;
    srv_error pending;        /* an answer decided before the body was read (404, 405, 401) */
    bool has_pending;
    srv_embed_req ereq;
    srv_rerank_req rreq;
    srv_embed_job job;
    srv_gen_job *gjob;
} conn_ctx;

typedef struct stream_ctx {
    server *s;
    srv_gen_job *job;
    struct MHD_Connection *conn;
} stream_ctx;

/* ---------------------------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------------------------- */

static void add_common_headers(server *s, struct MHD_Response *r) {
    if (s->cfg->cors) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
        MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    }
    if (atomic_load(&s->draining)) MHD_add_response_header(r, "Connection", "close");
}

/* Queues data (malloc'ed, taken over) as the answer. */
static enum MHD_Result reply(conn_ctx *c, int status, const char *ctype, char *data, size_t len) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ctype);
    add_common_headers(c->s, r);
    if (status == 405) MHD_add_response_header(r, "Allow", c->route == SRV_R_MODELS || c->route == SRV_R_INFO ||
                                                                   c->route == SRV_R_HEALTH || c->route == SRV_R_METRICS
                                                               ? "GET"
                                                               : "POST");
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result ret = MHD_queue_response(c->conn, (unsigned)status, r);
    MHD_destroy_response(r);
    c->status = status;
    c->ph = PH_DONE;
    return ret;
}

/* TEI's routes answer errors the way text-embeddings-inference does, so that its clients
 * understand them; the others answer in OpenAI's shape. */
static bool tei_route(srv_route r) { return r == SRV_R_EMBED || r == SRV_R_RERANK || r == SRV_R_TOKENIZE; }

static enum MHD_Result reply_error(conn_ctx *c, const srv_error *e) {
    size_t n = 0;
    int status = e->status;
    char *body = tei_route(c->route) ? srv_error_json_tei(e, &status, &n) : srv_error_json(e, &n);
    if (!body) return MHD_NO;
    return reply(c, status, "application/json", body, n);
}

static enum MHD_Result reply_buf(conn_ctx *c, int status, const char *ctype, srv_buf *b) {
    if (b->oom) {
        srv_buf_free(b);
        srv_error e;
        srv_fail(&e, 503, NULL, "out of memory writing the response");
        return reply_error(c, &e);
    }
    if (!b->data) srv_buf_puts(b, "");
    char *data = b->data;
    size_t len = b->len;
    *b = (srv_buf){0};
    return reply(c, status, ctype, data, len);
}

static enum MHD_Result fail(conn_ctx *c, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static enum MHD_Result fail(conn_ctx *c, int status, const char *param, const char *fmt, ...) {
    srv_error e;
    srv_fail(&e, status, param, "%s", "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    return reply_error(c, &e);
}

/* An eft status from a model call as an HTTP answer: the caller's fault is a 4xx. */
static int status_http(eft_status st) {
    switch (st) {
    case EFT_ERR_INVALID_ARGUMENT: return 400;
    case EFT_ERR_UNSUPPORTED: return 400;
    case EFT_ERR_LIMIT: return 422;
    case EFT_ERR_OUT_OF_MEMORY: return 503;
    default: return 500;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Embeddings and reranking
 * ------------------------------------------------------------------------------------------- */

static void job_done(void *user) {
    conn_ctx *c = user;
    MHD_resume_connection(c->conn);
}

static enum MHD_Result start_embed(conn_ctx *c, srv_api api) {
    server *s = c->s;
    if (!s->emb) return fail(c, 400, "model", "this server has no embedding model (start it with --embedding-model)");
    srv_error e;
    bool ok = api == SRV_API_OPENAI ? srv_parse_openai_embeddings(c->body.data, c->body.len, &s->lim, &c->ereq, &e)
                                    : srv_parse_tei_embed(c->body.data, c->body.len, &s->lim, &c->ereq, &e);
    if (!ok) return reply_error(c, &e);
    if (!srv_embed_worker_reserve(s->ew))
        return fail(c, 429, NULL, "the embedding queue is full (%d requests); retry later", s->cfg->max_queue);
    c->job = (srv_embed_job){.req = &c->ereq, .done = job_done, .user = c};
    c->ph = PH_WAIT_EMBED;
    MHD_suspend_connection(c->conn);
    srv_embed_worker_submit(s->ew, &c->job);
    return MHD_YES;
}

static enum MHD_Result finish_embed(conn_ctx *c, srv_api api) {
    server *s = c->s;
    srv_embed_job *j = &c->job;
    if (j->status) return fail(c, status_http(j->status), "input", "%s", j->errmsg);
    srv_buf b = {0};
    size_t n = c->ereq.n;
    int64_t D = j->dim;
    if (api == SRV_API_TEI) {
        srv_buf_puts(&b, "[");
        for (size_t i = 0; i < n; i++) {
            srv_buf_puts(&b, i ? ",[" : "[");
            for (int64_t k = 0; k < D; k++) {
                if (k) srv_buf_puts(&b, ",");
                srv_buf_float(&b, j->out[i * (size_t)D + (size_t)k]);
            }
            srv_buf_puts(&b, "]");
        }
        srv_buf_puts(&b, "]\n");
        return reply_buf(c, 200, "application/json", &b);
    }
    size_t tokens = 0;
    srv_buf_puts(&b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < n; i++) {
        tokens += j->n_tokens[i];
        srv_buf_printf(&b, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i ? "," : "", i);
        const float *v = j->out + i * (size_t)D;
        if (c->ereq.base64) {
            /* OpenAI's base64 is the little-endian float32 bytes. */
            uint8_t *bytes = malloc((size_t)D * 4);
            if (!bytes) {
                b.oom = true;
                break;
            }
            for (int64_t k = 0; k < D; k++) {
                uint32_t u;
                memcpy(&u, &v[k], 4);
                bytes[4 * k] = (uint8_t)u, bytes[4 * k + 1] = (uint8_t)(u >> 8);
                bytes[4 * k + 2] = (uint8_t)(u >> 16), bytes[4 * k + 3] = (uint8_t)(u >> 24);
            }
            srv_buf_puts(&b, "\"");
            srv_buf_base64(&b, bytes, (size_t)D * 4);
            srv_buf_puts(&b, "\"");
            free(bytes);
        } else {
            srv_buf_puts(&b, "[");
            for (int64_t k = 0; k < D; k++) {
                if (k) srv_buf_puts(&b, ",");
                srv_buf_float(&b, v[k]);
            }
            srv_buf_puts(&b, "]");
        }
        srv_buf_puts(&b, "}");
    }
    srv_buf_puts(&b, "],\"model\":");
    const char *m = c->ereq.model ? c->ereq.model : s->emb_name;
    srv_buf_json_str(&b, m, strlen(m));
    srv_buf_printf(&b, ",\"usage\":{\"prompt_tokens\":%zu,\"total_tokens\":%zu}}\n", tokens, tokens);
    return reply_buf(c, 200, "application/json", &b);
}

static enum MHD_Result start_rerank(conn_ctx *c) {
    server *s = c->s;
    if (!s->rer) return fail(c, 400, NULL, "this server has no reranking model (start it with --rerank-model)");
    srv_error e;
    if (!srv_parse_rerank(c->body.data, c->body.len, &s->lim, &c->rreq, &e)) return reply_error(c, &e);
    if (!srv_embed_worker_reserve(s->ew))
        return fail(c, 429, NULL, "the embedding queue is full (%d requests); retry later", s->cfg->max_queue);
    c->job = (srv_embed_job){.is_rerank = true, .rr = &c->rreq, .done = job_done, .user = c};
    c->ph = PH_WAIT_RERANK;
    MHD_suspend_connection(c->conn);
    srv_embed_worker_submit(s->ew, &c->job);
    return MHD_YES;
}

static int by_score_desc(const void *a, const void *b, void *scores) {
    const float *sc = scores;
    float x = sc[*(const size_t *)a], y = sc[*(const size_t *)b];
    if (x != y) return x < y ? 1 : -1;
    return *(const size_t *)a < *(const size_t *)b ? -1 : 1; /* ties keep input order */
}

static enum MHD_Result finish_rerank(conn_ctx *c) {
    srv_embed_job *j = &c->job;
    if (j->status) return fail(c, status_http(j->status), "texts", "%s", j->errmsg);
    size_t n = c->rreq.n;
    size_t *order = malloc(n * sizeof *order);
    if (!order) return fail(c, 503, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        order[i] = i;
        /* TEI: the sigmoid of the logit unless raw_scores. */
        if (!c->rreq.raw_scores) j->out[i] = (float)(1.0 / (1.0 + exp(-(double)j->out[i])));
    }
    qsort_r(order, n, sizeof *order, by_score_desc, j->out);
    srv_buf b = {0};
    srv_buf_puts(&b, "[");
    for (size_t k = 0; k < n; k++) {
        size_t i = order[k];
        srv_buf_printf(&b, "%s{\"index\":%zu,\"score\":", k ? "," : "", i);
        srv_buf_float(&b, j->out[i]);
        if (c->rreq.return_text) {
            srv_buf_puts(&b, ",\"text\":");
            srv_buf_json_str(&b, c->rreq.texts[i], strlen(c->rreq.texts[i]));
        }
        srv_buf_puts(&b, "}");
    }
    srv_buf_puts(&b, "]\n");
    free(order);
    return reply_buf(c, 200, "application/json", &b);
}

/* ---------------------------------------------------------------------------------------------
 * Tokenizer routes (on the polling thread: a tokenizer is read-only and fast)
 * ------------------------------------------------------------------------------------------- */

static int model_max_len(server *s) {
    if (s->gen) return eft_generator_ctx_len(s->gen);
    if (s->emb) return eft_embedder_max_tokens(s->emb);
    return s->rer ? eft_embedder_max_tokens(s->rer) : 0;
}

static enum MHD_Result do_tokenize(conn_ctx *c) {
    server *s = c->s;
    srv_tokenize_req r;
    srv_error e;
    if (!srv_parse_tokenize(c->body.data, c->body.len, &r, &e)) return reply_error(c, &e);
    eft_encode_params ep = eft_encode_params_default();
    ep.add_special_tokens = r.add_special_tokens;
    eft_encoding *enc = NULL;
    eft_status st = eft_tokenizer_encode(s->tok, r.text, strlen(r.text), NULL, 0, &ep, &enc);
    json_decref(r.doc);
    if (st) {
        srv_fail(&e, status_http(st), "inputs", "%s", eft_last_error());
        if (e.status < 500) e.tei_type = "Tokenizer", e.tei_status = 422;
        return reply_error(c, &e);
    }
    size_t n = eft_encoding_len(enc);
    const int32_t *ids = eft_encoding_ids(enc);
    srv_buf b = {0};
    srv_buf_printf(&b, "{\"count\":%zu,\"max_model_len\":%d,\"tokens\":[", n, model_max_len(s));
    for (size_t i = 0; i < n; i++) srv_buf_printf(&b, "%s%d", i ? "," : "", ids[i]);
    srv_buf_puts(&b, "]}\n");
    eft_encoding_free(enc);
    return reply_buf(c, 200, "application/json", &b);
}

static enum MHD_Result do_detokenize(conn_ctx *c) {
    server *s = c->s;
    srv_detokenize_req r;
    srv_error e;
    if (!srv_parse_detokenize(c->body.data, c->body.len, &s->lim, &r, &e)) return reply_error(c, &e);
    char *text = NULL;
    size_t len = 0;
    eft_status st = eft_tokenizer_decode(s->tok, r.ids, r.n, r.skip_special, &text, &len);
    free(r.ids);
    if (st) return fail(c, status_http(st), "tokens", "%s", eft_last_error());
    srv_buf b = {0};
    srv_buf_puts(&b, "{\"prompt\":");
    srv_buf_json_str(&b, text ? text : "", text ? len : 0);
    srv_buf_puts(&b, "}\n");
    eft_free(text);
    return reply_buf(c, 200, "application/json", &b);
}

/* ---------------------------------------------------------------------------------------------
 * Generation
 * ------------------------------------------------------------------------------------------- */

static void wake_conn(srv_gen_job *job, void *user) {
    (void)job;
    MHD_resume_connection(user); /* user is the connection */
}

static void suspend_conn(void *conn) { MHD_suspend_connection(conn); }

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_ctx *sc = cls;
    long n = srv_gen_job_read(sc->job, buf, max, suspend_conn, sc->conn);
    return n < 0 ? MHD_CONTENT_READER_END_OF_STREAM : (ssize_t)n;
}

static void stream_free(void *cls) {
    stream_ctx *sc = cls;
    srv_gen_job_cancel(sc->s->gw, sc->job); /* a no-op when it finished */
    srv_gen_job_unref(sc->job);
    free(sc);
}

static enum MHD_Result start_generate(conn_ctx *c, bool chat) {
    server *s = c->s;
    if (!s->gen) return fail(c, 400, "model", "this server has no generation model (start it with --model)");
    srv_gen_req r;
    srv_error e;
    bool ok = chat ? srv_parse_chat(c->body.data, c->body.len, &r, &e)
                   : srv_parse_completion(c->body.data, c->body.len, &s->lim, &r, &e);
    if (!ok) return reply_error(c, &e);
    const eft_tokenizer *tok = eft_generator_tokenizer(s->gen);
    int32_t *ids = NULL;
    size_t n = 0;
    char *rendered = NULL;
    const char *text = r.prompt;
    enum MHD_Result ret;
    if (chat) {
        if (!s->tmpl) {
            ret = fail(c, 400, "messages", "the model has no chat template; use /v1/completions");
            goto out;
        }
        pthread_mutex_lock(&s->tmpl_mu);
        eft_status st = eft_chat_template_render(s->tmpl, r.messages_json, "{\"add_generation_prompt\":true}",
                                                 &rendered, NULL);
        if (st) {
            srv_fail(&e, st == EFT_ERR_OUT_OF_MEMORY ? 503 : 400, "messages", "%s",
                     eft_chat_template_errmsg(s->tmpl));
            pthread_mutex_unlock(&s->tmpl_mu);
            ret = reply_error(c, &e);
            goto out;
        }
        pthread_mutex_unlock(&s->tmpl_mu);
        text = rendered;
    }
    if (text) {
        /* The template writes the BOS text itself, as transformers' apply_chat_template does. */
        eft_encode_params ep = eft_encode_params_default();
        ep.add_special_tokens = !chat;
        eft_encoding *enc = NULL;
        eft_status st = eft_tokenizer_encode(tok, text, strlen(text), NULL, 0, &ep, &enc);
        if (st) {
            ret = fail(c, status_http(st), chat ? "messages" : "prompt", "%s", eft_last_error());
            goto out;
        }
        n = eft_encoding_len(enc);
        ids = malloc((n ? n : 1) * sizeof *ids);
        if (ids) memcpy(ids, eft_encoding_ids(enc), n * sizeof *ids);
        eft_encoding_free(enc);
        if (!ids) {
            ret = fail(c, 503, NULL, "out of memory");
            goto out;
        }
    } else {
        ids = r.prompt_ids;
        n = r.n_prompt_ids;
        r.prompt_ids = NULL;
    }
    int ctx = eft_generator_ctx_len(s->gen);
    if (n == 0) {
        ret = fail(c, 400, "prompt", "the prompt is empty after tokenization");
        goto out;
    }
    if (n >= (size_t)ctx) {
        ret = fail(c, 400, chat ? "messages" : "prompt",
                   "the prompt has %zu tokens; the context holds %d, with room for at least one generated token", n,
                   ctx);
        goto out;
    }
    if (r.max_tokens > 0 && n + (size_t)r.max_tokens > (size_t)ctx) {
        ret = fail(c, 400, chat ? "max_completion_tokens" : "max_tokens",
                   "max_tokens is %d but the prompt has %zu tokens and the context holds %d (at most %zu more)",
                   r.max_tokens, n, ctx, (size_t)ctx - n);
        goto out;
    }
    eft_generate_params gp = eft_generator_generate_params_default(s->gen);
    gp.max_tokens = r.max_tokens > 0 ? r.max_tokens : 0;
    if (r.has_temperature) gp.sampling.temperature = r.temperature;
    if (r.has_top_p) gp.sampling.top_p = r.top_p;
    gp.sampling.presence_penalty = r.presence_penalty;
    gp.sampling.frequency_penalty = r.frequency_penalty;
    if (r.has_seed) gp.sampling.seed = r.seed;
    else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        gp.sampling.seed = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec;
    }
    gp.n_logprobs = r.logprobs > 0 ? r.logprobs : 0;
    gp.ignore_eos = r.ignore_eos;
    if (!srv_gen_worker_reserve(s->gw)) {
        ret = fail(c, 429, NULL, "the generation queue is full (%d requests); retry later", s->cfg->max_queue);
        goto out;
    }
    if (r.stream) {
        stream_ctx *sc = calloc(1, sizeof *sc);
        srv_gen_job *job = sc ? srv_gen_job_new(&r, ids, n, &gp, r.model ? r.model : s->gen_name, tok, wake_conn,
                                                c->conn)
                              : NULL;
        struct MHD_Response *resp =
            job ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, sc, stream_free) : NULL;
        if (!resp) {
            if (job) srv_gen_job_unref(job); /* frees ids */
            else free(ids);
            ids = NULL;
            free(sc);
            srv_gen_worker_unreserve(s->gw);
            ret = fail(c, 503, NULL, "out of memory");
            goto out;
        }
        ids = NULL;
        sc->s = s, sc->job = job, sc->conn = c->conn;
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        add_common_headers(s, resp);
        srv_gen_worker_submit(s->gw, job);
        ret = MHD_queue_response(c->conn, 200, resp);
        MHD_destroy_response(resp);
        c->status = 200;
        c->ph = PH_DONE;
        goto out;
    }
    c->gjob = srv_gen_job_new(&r, ids, n, &gp, r.model ? r.model : s->gen_name, tok, wake_conn, c->conn);
    if (!c->gjob) {
        srv_gen_worker_unreserve(s->gw);
        ret = fail(c, 503, NULL, "out of memory");
        goto out;
    }
    ids = NULL;
    c->ph = PH_WAIT_GEN;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci) srv_gen_job_watch_client(c->gjob, ci->connect_fd);
    srv_gen_job_set_waiting(c->gjob);
    MHD_suspend_connection(c->conn);
    srv_gen_worker_submit(s->gw, c->gjob);
    ret = MHD_YES;
out:
    free(ids);
    eft_free(rendered);
    srv_gen_req_free(&r);
    return ret;
}

static enum MHD_Result finish_generate(conn_ctx *c) {
    size_t len = 0;
    int status = 500;
    const char *body = srv_gen_job_body(c->gjob, &len, &status);
    char *copy = malloc(len ? len : 1);
    if (!copy) return fail(c, 503, NULL, "out of memory");
    memcpy(copy, body, len);
    return reply(c, status ? status : 500, "application/json", copy, len);
}

/* ---------------------------------------------------------------------------------------------
 * Small GET routes
 * ------------------------------------------------------------------------------------------- */

static enum MHD_Result do_models(conn_ctx *c) {
    server *s = c->s;
    srv_buf b = {0};
    srv_buf_puts(&b, "{\"object\":\"list\",\"data\":[");
    const char *names[3] = {s->gen_name, s->emb_name, s->rer_name};
    int lens[3] = {s->gen ? eft_generator_ctx_len(s->gen) : 0, s->emb ? eft_embedder_max_tokens(s->emb) : 0,
                   s->rer ? eft_embedder_max_tokens(s->rer) : 0};
    bool have[3] = {s->gen != NULL, s->emb != NULL, s->rer != NULL};
    int k = 0;
    for (int i = 0; i < 3; i++) {
        if (!have[i]) continue;
        /* One model may serve embeddings and reranking: list it once. */
        bool dup = false;
        for (int p = 0; p < i; p++) dup |= have[p] && !strcmp(names[p], names[i]);
        if (dup) continue;
        srv_buf_puts(&b, k++ ? ",{\"id\":" : "{\"id\":");
        srv_buf_json_str(&b, names[i], strlen(names[i]));
        srv_buf_printf(&b, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"eft\",\"max_model_len\":%d}", lens[i]);
    }
    srv_buf_puts(&b, "]}\n");
    return reply_buf(c, 200, "application/json", &b);
}

static enum MHD_Result do_info(conn_ctx *c) {
    char *text = json_dumps(c->s->info, JSON_COMPACT);
    if (!text) return fail(c, 503, NULL, "out of memory");
    size_t n = strlen(text);
    char *copy = malloc(n + 2);
    if (copy) memcpy(copy, text, n), copy[n] = '\n', copy[n + 1] = 0;
    eft_free(text);
    if (!copy) return fail(c, 503, NULL, "out of memory");
    return reply(c, 200, "application/json", copy, n + 1);
}

static enum MHD_Result do_metrics(conn_ctx *c) {
    /* While draining the workers may be stopping: the gauges keep their last values. */
    if (atomic_load(&c->s->ready) && !atomic_load(&c->s->draining))
        srv_metrics_queue(srv_embed_worker_depth(c->s->ew), srv_gen_worker_depth(c->s->gw));
    srv_buf b = {0};
    srv_metrics_render(&b);
    return reply_buf(c, 200, "text/plain; version=0.0.4", &b);
}

/* ---------------------------------------------------------------------------------------------
 * Routing, authentication, body reading
 * ------------------------------------------------------------------------------------------- */

typedef struct route_def {
    const char *path;
    srv_route id;
    bool post;
    bool open; /* answered without an API key: load balancers and Prometheus probe these */
} route_def;

static const route_def k_routes[] = {
    {"/v1/embeddings", SRV_R_EMBEDDINGS, true, false},
    {"/embed", SRV_R_EMBED, true, false},
    {"/rerank", SRV_R_RERANK, true, false},
    {"/tokenize", SRV_R_TOKENIZE, true, false},
    {"/detokenize", SRV_R_DETOKENIZE, true, false},
    {"/v1/completions", SRV_R_COMPLETIONS, true, false},
    {"/v1/chat/completions", SRV_R_CHAT, true, false},
    {"/v1/models", SRV_R_MODELS, false, false},
    {"/info", SRV_R_INFO, false, false},
    {"/health", SRV_R_HEALTH, false, true},
    {"/metrics", SRV_R_METRICS, false, true},
};

/* Compares every byte of every key whatever matches, so the time taken says nothing about how
 * much of a key was right. */
static bool key_ok(server *s, const char *given) {
    size_t gl = given ? strlen(given) : 0;
    unsigned ok = 0;
    for (int i = 0; i < s->cfg->n_api_keys; i++) {
        const char *k = s->cfg->api_keys[i];
        size_t kl = strlen(k);
        unsigned char d = (unsigned char)(gl != kl);
        for (size_t p = 0; p < kl; p++) d |= (unsigned char)(k[p] ^ (p < gl ? given[p] : 0));
        ok |= d == 0;
    }
    return ok != 0;
}

static bool authorized(server *s, struct MHD_Connection *conn) {
    if (s->cfg->n_api_keys == 0) return true;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) return false;
    h += 7;
    while (*h == ' ') h++;
    return key_ok(s, h);
}

static enum MHD_Result dispatch(conn_ctx *c) {
    server *s = c->s;
    switch (c->route) {
    case SRV_R_HEALTH:
        if (atomic_load(&s->ready) && !atomic_load(&s->draining)) {
            char *b = strdup("{\"status\":\"ok\"}\n");
            return b ? reply(c, 200, "application/json", b, strlen(b)) : MHD_NO;
        }
        return fail(c, 503, NULL, "%s", atomic_load(&s->draining) ? "shutting down" : "loading the model");
    case SRV_R_METRICS: return do_metrics(c);
    default: break;
    }
    if (!atomic_load(&s->ready)) return fail(c, 503, NULL, "loading the model; retry when /health answers 200");
    if (atomic_load(&s->draining)) return fail(c, 503, NULL, "shutting down");
    switch (c->route) {
    case SRV_R_EMBEDDINGS: return start_embed(c, SRV_API_OPENAI);
    case SRV_R_EMBED: return start_embed(c, SRV_API_TEI);
    case SRV_R_RERANK: return start_rerank(c);
    case SRV_R_TOKENIZE: return do_tokenize(c);
    case SRV_R_DETOKENIZE: return do_detokenize(c);
    case SRV_R_COMPLETIONS: return start_generate(c, false);
    case SRV_R_CHAT: return start_generate(c, true);
    case SRV_R_MODELS: return do_models(c);
    case SRV_R_INFO: return do_info(c);
    default: return fail(c, 404, NULL, "no such route");
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    server *s = cls;
    conn_ctx *c = *con_cls;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c) return MHD_NO;
        c->s = s;
        c->conn = conn;
        c->t0 = srv_now();
        c->route = SRV_R_OTHER;
        *con_cls = c;
        pthread_mutex_lock(&s->mu);
        s->in_flight++;
        pthread_mutex_unlock(&s->mu);
        const route_def *rd = NULL;
        for (size_t i = 0; i < sizeof k_routes / sizeof *k_routes; i++)
            if (!strcmp(url, k_routes[i].path)) rd = &k_routes[i];
        bool is_post = !strcmp(method, "POST"), is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
        if (!rd) {
            srv_fail(&c->pending, 404, NULL, "no route %s %s", method, url);
            c->has_pending = true;
        } else {
            c->route = rd->id;
            if (s->cfg->cors && !strcmp(method, "OPTIONS")) {
                c->has_pending = true;
                c->pending.status = 204;
            } else if (rd->post ? !is_post : !is_get) {
                srv_fail(&c->pending, 405, NULL, "%s takes %s, not %s", rd->path, rd->post ? "POST" : "GET", method);
                c->has_pending = true;
            } else if (!rd->open && !authorized(s, conn)) {
                srv_fail(&c->pending, 401, NULL, "a valid API key is required: Authorization: Bearer KEY");
                c->pending.code = "invalid_api_key";
                c->has_pending = true;
            }
        }
        /* An answer known from the headers alone goes out before any body is read (MHD then
         * closes the connection rather than read a body nobody wants). */
        if (c->has_pending && c->pending.status == 204) return reply(c, 204, "text/plain", calloc(1, 1), 0);
        if (c->has_pending) return reply_error(c, &c->pending);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end = NULL;
            errno = 0;
            unsigned long long v = strtoull(cl, &end, 10);
            if (errno || end == cl || v > s->cfg->max_body_bytes) {
                srv_fail(&c->pending, 413, NULL, "the request body is %s bytes, over the limit of %zu", cl,
                         s->cfg->max_body_bytes);
                return reply_error(c, &c->pending);
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (c->too_large || c->ph == PH_DONE) return MHD_YES; /* read and dropped */
        if (c->body.len + n > c->s->cfg->max_body_bytes) {
            c->too_large = true;
            srv_buf_free(&c->body);
            return MHD_YES;
        }
        srv_buf_put(&c->body, upload_data, n);
        return MHD_YES;
    }
    switch (c->ph) {
    case PH_DONE: return MHD_YES;
    case PH_WAIT_EMBED: return finish_embed(c, c->route == SRV_R_EMBED ? SRV_API_TEI : SRV_API_OPENAI);
    case PH_WAIT_RERANK: return finish_rerank(c);
    case PH_WAIT_GEN: return finish_generate(c);
    case PH_READ: break;
    }
    if (c->too_large)
        return fail(c, 413, NULL, "the request body is over the limit of %zu bytes", s->cfg->max_body_bytes);
    if (c->body.oom) return fail(c, 503, NULL, "out of memory reading the request");
    if (!c->body.data) srv_buf_puts(&c->body, ""); /* parsers get a valid pointer */
    return dispatch(c);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    server *s = cls;
    conn_ctx *c = *con_cls;
    if (!c) return;
    *con_cls = NULL;
    srv_metrics_request(c->route, c->status ? c->status : 499, srv_now() - c->t0);
    srv_buf_free(&c->body);
    srv_embed_req_free(&c->ereq);
    srv_rerank_req_free(&c->rreq);
    srv_embed_job_release(&c->job);
    if (c->gjob) {
        srv_gen_job_cancel(s->gw, c->gjob);
        srv_gen_job_unref(c->gjob);
    }
    free(c);
    pthread_mutex_lock(&s->mu);
    s->in_flight--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---------------------------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------------------------- */

/* The model's description from eft_model_info_json, or NULL. A compiled program stands for the
 * model it was compiled from (the generator and embedder open programs themselves). */
static json_t *model_info(const char *ref) {
    eft_model *m = NULL;
    if (eft_is_program(ref)) {
        char *pi = eft_program_info_json(ref);
        json_t *pj = pi ? eft__json_loadb(pi, strlen(pi), 0, NULL) : NULL;
        eft_free(pi);
        const char *path = json_string_value(json_object_get(json_object_get(json_object_get(pj, "header"), "model"), "path"));
        json_t *j = path ? model_info(path) : NULL;
        json_decref(pj);
        return j;
    }
    if (eft_model_open(ref, NULL, &m)) return NULL;
    char *text = eft_model_info_json(m);
    eft_model_close(m);
    json_t *j = text ? eft__json_loadb(text, strlen(text), 0, NULL) : NULL;
    eft_free(text);
    return j;
}

/* --num-cores, else 0: every online CPU, or a compiled program's num_cores (its plan). */
static int n_threads(const eft_server_config *cfg) { return cfg->n_threads > 0 ? cfg->n_threads : 0; }

static bool open_embedder(const eft_server_config *cfg, const char *ref, eft_embedder **out) {
    eft_embedder_params p = eft_embedder_params_default();
    p.n_threads = n_threads(cfg);
    p.max_batch = cfg->max_batch > 0 ? cfg->max_batch : 32;
    fprintf(stderr, "eft serve: loading %s (embeddings)\n", ref);
    if (eft_embedder_open(ref, &p, out)) {
        fprintf(stderr, "eft serve: %s: %s\n", ref, eft_last_error());
        return false;
    }
    return true;
}

static void add_model_info(json_t *models, const char *name, const char *ref, const char *kind, json_t *extra) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(name));
    json_object_set_new(o, "kind", json_string(kind));
    json_object_set_new(o, "ref", json_string(ref));
    const char *k;
    json_t *v;
    json_object_foreach(extra, k, v) json_object_set(o, k, v);
    json_decref(extra);
    json_t *mi = model_info(ref);
    if (mi) {
        /* The parts a client plans with; the full description is `eft info`. */
        json_object_set(o, "config", json_object_get(mi, "config"));
        json_t *pool = json_object_get(mi, "sentence_transformers");
        if (pool) json_object_set(o, "sentence_transformers", pool);
        json_object_set(o, "tensors", json_object_get(mi, "tensors"));
        json_decref(mi);
    }
    json_array_append_new(models, o);
}

static void *loader_main(void *arg) {
    server *s = arg;
    const eft_server_config *cfg = s->cfg;
    bool ok = true;
    json_t *info = json_object(), *models = json_array();
    /* --model is a generator or an encoder: its config says which. */
    if (cfg->model) {
        json_t *mi = model_info(cfg->model);
        const char *task = json_string_value(json_object_get(json_object_get(mi, "config"), "task"));
        if (!mi) {
            fprintf(stderr, "eft serve: %s: %s\n", cfg->model, eft_last_error());
            ok = false;
        } else if (task && !strcmp(task, "causal_lm")) {
            eft_generator_params gp = eft_generator_params_default();
            gp.n_threads = n_threads(cfg);
            if (cfg->ctx_len > 0) gp.ctx_len = cfg->ctx_len;
            if (cfg->prefill_seq_len > 0) gp.prefill_seq_len = cfg->prefill_seq_len;
            if (cfg->full_batch_size > 0) gp.full_batch_size = cfg->full_batch_size;
            if (cfg->int8_activations) gp.activation_dtype = EFT_DTYPE_I8;
            fprintf(stderr, "eft serve: loading %s (generation)\n", cfg->model);
            if (eft_generator_open(cfg->model, &gp, &s->gen)) {
                fprintf(stderr, "eft serve: %s: %s\n", cfg->model, eft_last_error());
                ok = false;
            } else {
                s->gen_name = cfg->served_name ? cfg->served_name : cfg->model;
                s->tmpl = eft_generator_chat_template(s->gen);
            }
        } else {
            ok = open_embedder(cfg, cfg->model, &s->emb);
            if (ok) s->emb_name = cfg->served_name ? cfg->served_name : cfg->model;
            /* A cross-encoder given as --model serves /rerank too. */
            if (ok && !cfg->rerank_model && eft_embedder_num_labels(s->emb) == 1) {
                s->rer = s->emb;
                s->rer_name = s->emb_name;
            }
        }
        json_decref(mi);
    }
    if (ok && cfg->embedding_model) {
        ok = open_embedder(cfg, cfg->embedding_model, &s->emb);
        s->emb_name = cfg->embedding_model;
    }
    if (ok && cfg->rerank_model) {
        ok = open_embedder(cfg, cfg->rerank_model, &s->rer);
        s->rer_name = cfg->rerank_model;
        if (ok && eft_embedder_num_labels(s->rer) != 1) {
            fprintf(stderr, "eft serve: %s has %lld labels; /rerank needs a cross-encoder with one\n",
                    cfg->rerank_model, (long long)eft_embedder_num_labels(s->rer));
            ok = false;
        }
    }
    if (ok && (s->emb || s->rer)) {
        s->ew = srv_embed_worker_start(s->emb, s->rer, cfg->max_batch_tokens, cfg->max_queue);
        ok = s->ew != NULL;
    }
    if (ok && s->gen) {
        s->gw = srv_gen_worker_start(s->gen, cfg->max_queue);
        ok = s->gw != NULL;
    }
    if (ok) {
        s->tok = s->gen ? eft_generator_tokenizer(s->gen) : s->emb ? eft_embedder_tokenizer(s->emb)
                                                                   : eft_embedder_tokenizer(s->rer);
        s->lim.max_dim = s->emb ? eft_embedder_dim(s->emb) : 0;
        if (s->gen)
            add_model_info(models, s->gen_name, cfg->model, "generation",
                           json_pack("{s:i,s:i,s:b,s:i}", "ctx_len", eft_generator_ctx_len(s->gen), "slots",
                                     eft_generator_slots(s->gen), "chat_template", s->tmpl != NULL, "threads",
                                     eft_generator_threads(s->gen)));
        if (s->emb)
            add_model_info(models, s->emb_name, cfg->embedding_model ? cfg->embedding_model : cfg->model, "embedding",
                           json_pack("{s:I,s:i,s:i}", "dim", (json_int_t)eft_embedder_dim(s->emb), "max_input_length",
                                     eft_embedder_max_tokens(s->emb), "threads", eft_embedder_threads(s->emb)));
        if (s->rer)
            add_model_info(models, s->rer_name, cfg->rerank_model ? cfg->rerank_model : cfg->model, "rerank",
                           json_pack("{s:i,s:i}", "max_input_length", eft_embedder_max_tokens(s->rer), "threads",
                                     eft_embedder_threads(s->rer)));
        json_object_set_new(info, "version", json_string(eft_version()));
        json_object_set_new(info, "models", models);
        models = NULL;
        json_object_set_new(info, "limits",
                            json_pack("{s:I,s:i,s:i,s:i,s:i,s:b,s:b}", "max_body_bytes",
                                      (json_int_t)cfg->max_body_bytes,
                                      "max_inputs", cfg->max_inputs, "max_batch_tokens", cfg->max_batch_tokens,
                                      "max_batch", cfg->max_batch, "max_queue", cfg->max_queue, "auth",
                                      cfg->n_api_keys > 0, "cors", cfg->cors != 0));
        json_object_set_new(info, "open_routes", json_pack("[s,s]", "/health", "/metrics"));
        s->info = info;
        info = NULL;
    }
    json_decref(models);
    json_decref(info);
    pthread_mutex_lock(&s->mu);
    s->load_done = true;
    s->load_failed = !ok;
    pthread_mutex_unlock(&s->mu);
    if (ok) {
        atomic_store(&s->ready, true);
        fprintf(stderr, "eft serve: ready\n");
    } else {
        kill(getpid(), SIGTERM); /* the main thread is waiting for signals: let it shut down */
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Start and stop
 * ------------------------------------------------------------------------------------------- */

eft_server_config eft_server_config_default(void) {
    return (eft_server_config){
        .host = "127.0.0.1",
        .port = 8080,
        .max_batch_tokens = 4096,
        .max_batch = 32,
        .max_body_bytes = 4u << 20,
        .max_inputs = 512,
        .max_queue = 256,
        .shutdown_timeout_s = 30,
    };
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    fputs("eft serve: libmicrohttpd: ", stderr);
    vfprintf(stderr, fmt, ap);
}

int eft_server_run(const eft_server_config *cfg) {
    if (!cfg->model && !cfg->embedding_model && !cfg->rerank_model) {
        fprintf(stderr, "eft serve: no model given (--model, --embedding-model or --rerank-model)\n");
        return 2;
    }
    server srv = {.cfg = cfg};
    server *s = &srv;
    s->lim = (srv_limits){.max_inputs = (size_t)(cfg->max_inputs > 0 ? cfg->max_inputs : 512),
                          .max_input_ids = 1u << 16};
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_init(&s->tmpl_mu, NULL);

    /* Signals are taken by sigwait on this thread only: block them before any thread starts. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_storage ss = {0};
    const char *host = cfg->host ? cfg->host : "127.0.0.1";
    bool v6 = strchr(host, ':') != NULL;
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)cfg->port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) {
            fprintf(stderr, "eft serve: --host %s is not an IPv6 address\n", host);
            return 2;
        }
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)cfg->port);
        if (!strcmp(host, "localhost")) host = "127.0.0.1";
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1) {
            fprintf(stderr, "eft serve: --host %s is not an IPv4 address\n", host);
            return 2;
        }
    }
    unsigned flags = MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    s->d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER,
                            mhd_log, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED,
                            on_completed, s, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)4000, MHD_OPTION_END);
    if (!s->d) {
        fprintf(stderr, "eft serve: cannot listen on %s:%d: %s\n", host, cfg->port, strerror(errno));
        return 1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    int port = di ? di->port : cfg->port;
    fprintf(stderr, v6 ? "listening on http://[%s]:%d\n" : "listening on http://%s:%d\n", host, port);
    fflush(stderr);

    pthread_t loader;
    bool have_loader = pthread_create(&loader, NULL, loader_main, s) == 0;
    if (!have_loader) {
        fprintf(stderr, "eft serve: cannot start the loader thread\n");
        MHD_stop_daemon(s->d);
        return 1;
    }
    int sig = 0;
    sigwait(&set, &sig);
    atomic_store(&s->draining, true);
    pthread_mutex_lock(&s->mu);
    bool failed = s->load_done && s->load_failed;
    pthread_mutex_unlock(&s->mu);
    if (!failed) fprintf(stderr, "eft serve: %s: finishing requests in flight\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    /* Stop accepting; connections already open finish their requests. */
    MHD_socket lfd = MHD_quiesce_daemon(s->d);
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    pthread_join(loader, NULL);
    failed = s->load_failed;

    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += cfg->shutdown_timeout_s > 0 ? cfg->shutdown_timeout_s : 30;
    pthread_mutex_lock(&s->mu);
    while (s->in_flight > 0 && pthread_cond_timedwait(&s->cv, &s->mu, &dl) != ETIMEDOUT) {
    }
    if (s->in_flight > 0) {
        /* Past the deadline: end the generation streams; embedding jobs always finish. */
        fprintf(stderr, "eft serve: %d requests still running after %d s: cancelling them\n", s->in_flight,
                cfg->shutdown_timeout_s);
        pthread_mutex_unlock(&s->mu);
        srv_gen_worker_cancel_all(s->gw);
        pthread_mutex_lock(&s->mu);
        dl.tv_sec += 10;
        while (s->in_flight > 0 && pthread_cond_timedwait(&s->cv, &s->mu, &dl) != ETIMEDOUT) {
        }
    }
    pthread_mutex_unlock(&s->mu);
    srv_embed_worker_stop(s->ew);
    srv_gen_worker_stop(s->gw);
    MHD_stop_daemon(s->d);
    if (s->rer != s->emb) eft_embedder_close(s->rer);
    eft_embedder_close(s->emb);
    eft_generator_close(s->gen);
    json_decref(s->info);
    pthread_mutex_destroy(&s->tmpl_mu);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    if (!failed) fprintf(stderr, "eft serve: stopped\n");
    return failed ? 1 : 0;
}
