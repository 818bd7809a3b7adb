/*
 * gen_worker.c — the compute thread that owns the eft_generator (which is not thread-safe) and
 * the jobs it serves. HTTP threads hand over jobs and cancellations through a mutex-guarded queue
 * and a condition variable; the thread submits them, steps the generator while anything is
 * pending, and turns each token event into OpenAI-shaped output: SSE chunks appended to the job's
 * buffer for a streaming client (which is woken to flush them), or one JSON body at the end.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "server/srv.h"

typedef struct tok_lp {
    int32_t id;
    float lp;
    int n_top;
    eft_token_logprob top[20];
} tok_lp;

struct srv_gen_job {
    pthread_mutex_t mu;
    int refs;
    /* the request */
    bool chat, stream, include_usage, want_logprobs;
    int32_t *prompt;
    size_t n_prompt;
    eft_generate_params gp;
    char *stops[SRV_MAX_STOP];
    char *model;
    char id[48];
    long long created;
    const eft_tokenizer *tok;
    srv_gen_wake_fn wake;
    void *wake_user;
    /* state, under mu */
    bool waiting;     /* the HTTP side is suspended until the next wake */
    bool cancel_req;  /* the client went away */
    bool cancel_sent; /* worker only */
    int client_fd;    /* non-streaming: the client's socket, watched for a hang-up (-1: none) */
    double t_watched; /* worker only: when client_fd was last looked at */
    bool finished;    /* the HTTP side has its whole answer */
    bool gen_done;    /* the generator has sent its final event (or never had the job): only
                       * then may the worker let go of it */
    bool role_sent;
    uint64_t seq;
    srv_buf sse;      /* pending stream bytes from sse_off */
    size_t sse_off;
    srv_buf text;     /* non-streaming: the whole text */
    tok_lp *lps;
    size_t n_lps, cap_lps;
    size_t text_offset; /* completions logprobs: bytes of text before the current token */
    int n_prompt_tokens, n_generated;
    eft_finish_reason finish;
    double t_submit, t_last;
    srv_buf body;     /* non-streaming: the response */
    int status;
    srv_gen_job *next;
};

struct srv_gen_worker {
    eft_generator *g;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_gen_job *head, *tail; /* submitted, not yet handed to the generator */
    bool poke;                /* a cancellation arrived */
    bool stop, cancel_all;
    int depth, max_queue;
    srv_gen_job **active;     /* worker only: jobs in the generator */
    size_t n_active, cap_active;
};

/* ---------------------------------------------------------------------------------------------
 * Jobs
 * ------------------------------------------------------------------------------------------- */

srv_gen_job *srv_gen_job_new(srv_gen_req *req, int32_t *prompt, size_t n_prompt, const eft_generate_params *gp,
                             const char *model_name, const eft_tokenizer *tok, srv_gen_wake_fn wake, void *user) {
    srv_gen_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_mutex_init(&j->mu, NULL);
    j->refs = 1;
    j->chat = req->chat;
    j->stream = req->stream;
    j->include_usage = req->include_usage;
    j->want_logprobs = req->want_logprobs;
    j->prompt = prompt;
    j->n_prompt = n_prompt;
    j->gp = *gp;
    j->tok = tok;
    j->wake = wake;
    j->wake_user = user;
    j->client_fd = -1;
    j->model = strdup(model_name ? model_name : "");
    bool oom = !j->model;
    for (int i = 0; i < req->n_stop; i++) oom |= !(j->stops[i] = strdup(req->stop[i]));
    j->gp.stop = (const char *const *)j->stops;
    j->gp.n_stop = req->n_stop;
    j->created = (long long)time(NULL);
    static unsigned long long counter;
    unsigned long long k = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    snprintf(j->id, sizeof j->id, "%s-%llx%06llx", req->chat ? "chatcmpl" : "cmpl", (unsigned long long)j->created, k);
    if (oom) {
        j->prompt = NULL; /* the caller still owns it on failure */
        srv_gen_job_unref(j);
        return NULL;
    }
    return j;
}

void srv_gen_job_ref(srv_gen_job *j) {
    pthread_mutex_lock(&j->mu);
    j->refs++;
    pthread_mutex_unlock(&j->mu);
}

void srv_gen_job_unref(srv_gen_job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left) return;
    free(j->prompt);
    for (int i = 0; i < SRV_MAX_STOP; i++) free(j->stops[i]);
    free(j->model);
    free(j->lps);
    srv_buf_free(&j->sse);
    srv_buf_free(&j->text);
    srv_buf_free(&j->body);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

/* Under j->mu: lets the HTTP side run again if it is waiting. */
static void wake_locked(srv_gen_job *j) {
    if (j->waiting && j->wake) {
        j->waiting = false;
        j->wake(j, j->wake_user);
    }
}

long srv_gen_job_read(srv_gen_job *j, char *dst, size_t max, void (*suspend)(void *), void *arg) {
    pthread_mutex_lock(&j->mu);
    long r;
    if (j->sse_off < j->sse.len) {
        size_t n = j->sse.len - j->sse_off;
        if (n > max) n = max;
        memcpy(dst, j->sse.data + j->sse_off, n);
        j->sse_off += n;
        if (j->sse_off == j->sse.len) j->sse_off = j->sse.len = 0;
        r = (long)n;
    } else if (j->finished) {
        r = -1;
    } else {
        /* Suspending under the lock orders it before the worker's resume. */
        suspend(arg);
        j->waiting = true;
        r = 0;
    }
    pthread_mutex_unlock(&j->mu);
    return r;
}

bool srv_gen_job_finished(srv_gen_job *j) {
    pthread_mutex_lock(&j->mu);
    bool f = j->finished;
    pthread_mutex_unlock(&j->mu);
    return f;
}

void srv_gen_job_watch_client(srv_gen_job *j, int fd) {
    pthread_mutex_lock(&j->mu);
    j->client_fd = fd;
    pthread_mutex_unlock(&j->mu);
}

/* A suspended connection is not polled, so nothing else would notice that the client of a plain
 * (non-streaming) completion left: its sequence would run to max_tokens and hold a slot. The
 * socket says so instead: end of file or an error means the client closed it. (A client that
 * half-closes its side while still waiting for the answer is taken for gone; HTTP clients do
 * not do that.) At most every 20 ms per job. */
static bool client_gone(srv_gen_job *j, double now) {
    if (j->stream || j->client_fd < 0 || !j->waiting || j->finished || now - j->t_watched < 0.02) return false;
    j->t_watched = now;
    char c;
    ssize_t n = recv(j->client_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

void srv_gen_job_set_waiting(srv_gen_job *j) {
    pthread_mutex_lock(&j->mu);
    j->waiting = !j->finished;
    pthread_mutex_unlock(&j->mu);
}

const char *srv_gen_job_body(srv_gen_job *j, size_t *len, int *status) {
    *len = j->body.len;
    *status = j->status;
    return j->body.data;
}

/* ---------------------------------------------------------------------------------------------
 * Output in OpenAI's shapes
 * ------------------------------------------------------------------------------------------- */

static void put_token_text(srv_buf *b, const eft_tokenizer *tok, int32_t id) {
    char *s = NULL;
    size_t n = 0;
    if (eft_tokenizer_decode(tok, &id, 1, false, &s, &n) == EFT_OK) srv_buf_json_str(b, s, n);
    else srv_buf_puts(b, "\"\"");
    eft_free(s);
}

static void put_token_bytes(srv_buf *b, const eft_tokenizer *tok, int32_t id) {
    char *s = NULL;
    size_t n = 0;
    srv_buf_puts(b, "[");
    if (eft_tokenizer_decode(tok, &id, 1, false, &s, &n) == EFT_OK)
        for (size_t i = 0; i < n; i++) srv_buf_printf(b, "%s%u", i ? "," : "", (unsigned char)s[i]);
    srv_buf_puts(b, "]");
    eft_free(s);
}

/* The logprobs object for tokens lps[from, to): chat {"content":[...]} or completions' four lists. */
static void put_logprobs(srv_buf *b, const srv_gen_job *j, size_t from, size_t to, size_t text_offset0) {
    if (!j->want_logprobs) {
        srv_buf_puts(b, "null");
        return;
    }
    if (j->chat) {
        srv_buf_puts(b, "{\"content\":[");
        for (size_t i = from; i < to; i++) {
            const tok_lp *t = &j->lps[i];
            srv_buf_puts(b, i > from ? ",{\"token\":" : "{\"token\":");
            put_token_text(b, j->tok, t->id);
            srv_buf_puts(b, ",\"logprob\":");
            srv_buf_float(b, t->lp);
            srv_buf_puts(b, ",\"bytes\":");
            put_token_bytes(b, j->tok, t->id);
            srv_buf_puts(b, ",\"top_logprobs\":[");
            for (int k = 0; k < t->n_top; k++) {
                srv_buf_puts(b, k ? ",{\"token\":" : "{\"token\":");
                put_token_text(b, j->tok, t->top[k].id);
                srv_buf_puts(b, ",\"logprob\":");
                srv_buf_float(b, t->top[k].logprob);
                srv_buf_puts(b, ",\"bytes\":");
                put_token_bytes(b, j->tok, t->top[k].id);
                srv_buf_puts(b, "}");
            }
            srv_buf_puts(b, "]}");
        }
        srv_buf_puts(b, "]}");
        return;
    }
    srv_buf_puts(b, "{\"tokens\":[");
    for (size_t i = from; i < to; i++) {
        if (i > from) srv_buf_puts(b, ",");
        put_token_text(b, j->tok, j->lps[i].id);
    }
    srv_buf_puts(b, "],\"token_logprobs\":[");
    for (size_t i = from; i < to; i++) {
        if (i > from) srv_buf_puts(b, ",");
        srv_buf_float(b, j->lps[i].lp);
    }
    srv_buf_puts(b, "],\"top_logprobs\":[");
    for (size_t i = from; i < to; i++) {
        srv_buf_puts(b, i > from ? ",{" : "{");
        for (int k = 0; k < j->lps[i].n_top; k++) {
            if (k) srv_buf_puts(b, ",");
            put_token_text(b, j->tok, j->lps[i].top[k].id);
            srv_buf_puts(b, ":");
            srv_buf_float(b, j->lps[i].top[k].logprob);
        }
        srv_buf_puts(b, "}");
    }
    /* Offsets are approximate per token when a token's text is held back (UTF-8 or stop strings). */
    srv_buf_printf(b, "],\"text_offset\":[");
    size_t off = text_offset0;
    for (size_t i = from; i < to; i++) {
        srv_buf_printf(b, "%s%zu", i > from ? "," : "", off);
        char *s = NULL;
        size_t n = 0;
        if (eft_tokenizer_decode(j->tok, &j->lps[i].id, 1, false, &s, &n) == EFT_OK) off += n;
        eft_free(s);
    }
    srv_buf_puts(b, "]}");
}

static const char *finish_str(eft_finish_reason f) {
    switch (f) {
    case EFT_FINISH_STOP: return "stop";
    case EFT_FINISH_LENGTH: return "length";
    case EFT_FINISH_CANCELLED: return "cancelled";
    default: return "error";
    }
}

static void put_usage(srv_buf *b, const srv_gen_job *j) {
    srv_buf_printf(b, "{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}", j->n_prompt_tokens,
                   j->n_generated, j->n_prompt_tokens + j->n_generated);
}

static void put_head(srv_buf *b, const srv_gen_job *j, const char *object) {
    srv_buf_printf(b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", j->id, object, j->created);
    srv_buf_json_str(b, j->model, strlen(j->model));
}

/* One SSE chunk with new text (and its tokens' logprobs) or, with finish, the closing chunk. */
static void sse_chunk(srv_gen_job *j, const char *text, size_t len, size_t lp_from, const char *finish) {
    srv_buf *b = &j->sse;
    srv_buf_puts(b, "data: ");
    put_head(b, j, j->chat ? "chat.completion.chunk" : "text_completion");
    srv_buf_puts(b, ",\"choices\":[{\"index\":0,");
    if (j->chat) {
        srv_buf_puts(b, "\"delta\":{");
        if (!j->role_sent) {
            srv_buf_puts(b, "\"role\":\"assistant\"");
            j->role_sent = true;
            if (!finish) srv_buf_puts(b, ",");
        }
        if (!finish) {
            srv_buf_puts(b, "\"content\":");
            srv_buf_json_str(b, text, len);
        }
        srv_buf_puts(b, "}");
    } else {
        srv_buf_puts(b, "\"text\":");
        srv_buf_json_str(b, finish ? "" : text, finish ? 0 : len);
    }
    srv_buf_puts(b, ",\"logprobs\":");
    if (finish || lp_from >= j->n_lps) srv_buf_puts(b, "null");
    else put_logprobs(b, j, lp_from, j->n_lps, j->text_offset);
    srv_buf_puts(b, ",\"finish_reason\":");
    if (finish) srv_buf_printf(b, "\"%s\"", finish);
    else srv_buf_puts(b, "null");
    srv_buf_puts(b, "}]}\n\n");
}

static void sse_error(srv_gen_job *j, int status, const char *msg) {
    srv_error e = {0};
    srv_fail(&e, status, NULL, "%s", msg);
    size_t n = 0;
    char *body = srv_error_json(&e, &n);
    if (body) {
        while (n && body[n - 1] == '\n') n--;
        srv_buf_puts(&j->sse, "data: ");
        srv_buf_put(&j->sse, body, n);
        srv_buf_puts(&j->sse, "\n\n");
    }
    free(body);
}

static void finish_body(srv_gen_job *j, const char *errmsg) {
    if (j->finish == EFT_FINISH_ERROR) {
        srv_error e = {0};
        srv_fail(&e, 500, NULL, "generation failed: %s", errmsg ? errmsg : "unknown error");
        size_t n = 0;
        char *body = srv_error_json(&e, &n);
        if (body) srv_buf_put(&j->body, body, n);
        free(body);
        j->status = 500;
        return;
    }
    srv_buf *b = &j->body;
    put_head(b, j, j->chat ? "chat.completion" : "text_completion");
    srv_buf_puts(b, ",\"choices\":[{\"index\":0,");
    if (j->chat) {
        srv_buf_puts(b, "\"message\":{\"role\":\"assistant\",\"content\":");
        srv_buf_json_str(b, j->text.data ? j->text.data : "", j->text.len);
        srv_buf_puts(b, "}");
    } else {
        srv_buf_puts(b, "\"text\":");
        srv_buf_json_str(b, j->text.data ? j->text.data : "", j->text.len);
    }
    srv_buf_puts(b, ",\"logprobs\":");
    put_logprobs(b, j, 0, j->n_lps, 0);
    srv_buf_printf(b, ",\"finish_reason\":\"%s\"}],\"usage\":", finish_str(j->finish));
    put_usage(b, j);
    srv_buf_puts(b, "}\n");
    j->status = b->oom ? 503 : 200;
}

/* Called on the worker thread by eft_generator_step, once per token and once at the end. */
static int on_event(const eft_gen_event *ev) {
    srv_gen_job *j = ev->user;
    double now = srv_now();
    pthread_mutex_lock(&j->mu);
    if (ev->token >= 0) {
        if (j->n_generated == 0) srv_metrics_ttft(now - j->t_submit);
        else srv_metrics_token_latency(now - j->t_last);
        j->t_last = now;
        j->n_generated++;
    }
    if (j->finished) {
        /* Already answered (a failed step ended it); this is the generator letting go. */
        j->gen_done |= ev->finish != EFT_FINISH_NONE;
        pthread_mutex_unlock(&j->mu);
        return 1;
    }
    size_t lp_from = j->n_lps;
    if (ev->token >= 0 && j->want_logprobs) {
        if (j->n_lps == j->cap_lps) {
            size_t cap = j->cap_lps ? j->cap_lps * 2 : 64;
            tok_lp *p = realloc(j->lps, cap * sizeof *p);
            if (p) j->lps = p, j->cap_lps = cap;
        }
        if (j->n_lps < j->cap_lps) {
            tok_lp *t = &j->lps[j->n_lps++];
            t->id = ev->token;
            t->lp = ev->logprob;
            t->n_top = ev->n_top < 0 ? 0 : ev->n_top > 20 ? 20 : ev->n_top;
            if (t->n_top) memcpy(t->top, ev->top, (size_t)t->n_top * sizeof *t->top);
        }
    }
    if (j->stream) {
        if (ev->text_len || (!j->role_sent && j->chat && ev->finish == EFT_FINISH_NONE))
            sse_chunk(j, ev->text, ev->text_len, lp_from, NULL);
    } else {
        srv_buf_put(&j->text, ev->text, ev->text_len);
    }
    j->text_offset += ev->text_len;
    if (ev->finish != EFT_FINISH_NONE) {
        j->finish = ev->finish;
        j->n_prompt_tokens = ev->n_prompt_tokens;
        j->n_generated = ev->n_generated;
        srv_metrics_tokens(ev->n_prompt_tokens, ev->n_generated);
        srv_metrics_finish(ev->finish);
        if (j->stream) {
            if (ev->finish == EFT_FINISH_ERROR) {
                sse_error(j, 500, "generation failed");
            } else {
                sse_chunk(j, "", 0, j->n_lps, finish_str(ev->finish));
                if (j->include_usage) {
                    srv_buf_puts(&j->sse, "data: ");
                    put_head(&j->sse, j, j->chat ? "chat.completion.chunk" : "text_completion");
                    srv_buf_puts(&j->sse, ",\"choices\":[],\"usage\":");
                    put_usage(&j->sse, j);
                    srv_buf_puts(&j->sse, "}\n\n");
                }
            }
            srv_buf_puts(&j->sse, "data: [DONE]\n\n");
        } else {
            finish_body(j, NULL);
        }
        j->finished = true;
        j->gen_done = true;
    }
    /* A streaming client flushes every token; a plain one waits for the whole body. */
    if (j->stream || j->finished) wake_locked(j);
    int cancel = j->cancel_req;
    pthread_mutex_unlock(&j->mu);
    return cancel;
}

/* A job that never reached the generator (submit refused it). */
static void fail_job(srv_gen_job *j, int status, const char *msg) {
    pthread_mutex_lock(&j->mu);
    j->finish = EFT_FINISH_ERROR;
    if (j->stream) {
        sse_error(j, status, msg);
        srv_buf_puts(&j->sse, "data: [DONE]\n\n");
    } else {
        srv_error e = {0};
        srv_fail(&e, status, NULL, "%s", msg);
        size_t n = 0;
        char *body = srv_error_json(&e, &n);
        if (body) srv_buf_put(&j->body, body, n);
        free(body);
        j->status = status;
    }
    j->finished = true;
    wake_locked(j);
    pthread_mutex_unlock(&j->mu);
}

/* ---------------------------------------------------------------------------------------------
 * The worker thread
 * ------------------------------------------------------------------------------------------- */

static bool gen_done(srv_gen_job *j) {
    pthread_mutex_lock(&j->mu);
    bool d = j->gen_done;
    pthread_mutex_unlock(&j->mu);
    return d;
}

static void drop_finished(srv_gen_worker *w) {
    size_t k = 0;
    int dropped = 0;
    for (size_t i = 0; i < w->n_active; i++) {
        srv_gen_job *j = w->active[i];
        if (gen_done(j)) {
            srv_gen_job_unref(j);
            dropped++;
        } else {
            w->active[k++] = j;
        }
    }
    w->n_active = k;
    if (dropped) {
        pthread_mutex_lock(&w->mu);
        w->depth -= dropped;
        int d = w->depth;
        pthread_mutex_unlock(&w->mu);
        srv_metrics_queue(-1, d);
    }
}

static void *worker_main(void *arg) {
    srv_gen_worker *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->head && !w->poke && !w->cancel_all && w->n_active == 0 && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        srv_gen_job *in = w->head;
        w->head = w->tail = NULL;
        w->poke = false;
        bool cancel_all = w->cancel_all;
        bool stop = w->stop && !in && w->n_active == 0;
        pthread_mutex_unlock(&w->mu);
        if (stop) break;

        while (in) {
            srv_gen_job *j = in;
            in = in->next;
            j->next = NULL;
            if (w->n_active == w->cap_active) {
                size_t cap = w->cap_active ? w->cap_active * 2 : 16;
                srv_gen_job **p = realloc(w->active, cap * sizeof *p);
                if (!p) {
                    fail_job(j, 503, "out of memory");
                    srv_gen_job_unref(j);
                    pthread_mutex_lock(&w->mu);
                    w->depth--;
                    pthread_mutex_unlock(&w->mu);
                    continue;
                }
                w->active = p;
                w->cap_active = cap;
            }
            w->active[w->n_active++] = j;
            j->gp.callback = on_event;
            j->gp.user = j;
            j->t_submit = srv_now();
            uint64_t seq = 0;
            eft_status st = eft_generator_submit(w->g, j->prompt, j->n_prompt, &j->gp, &seq);
            if (st) {
                fail_job(j, st == EFT_ERR_LIMIT || st == EFT_ERR_INVALID_ARGUMENT ? 400 : 500,
                         eft_generator_errmsg(w->g));
                pthread_mutex_lock(&j->mu);
                j->gen_done = true; /* the generator never had it */
                pthread_mutex_unlock(&j->mu);
            } else {
                pthread_mutex_lock(&j->mu);
                j->seq = seq;
                pthread_mutex_unlock(&j->mu);
            }
        }
        double now = srv_now();
        for (size_t i = 0; i < w->n_active; i++) {
            srv_gen_job *j = w->active[i];
            pthread_mutex_lock(&j->mu);
            /* The answer is still resumed and written (to nobody), which lets MHD close the
             * connection; only the generation stops. */
            if (client_gone(j, now)) j->cancel_req = true;
            bool c = (j->cancel_req || cancel_all) && !j->finished && !j->cancel_sent;
            if (c) j->cancel_sent = true;
            uint64_t seq = j->seq;
            pthread_mutex_unlock(&j->mu);
            if (c) eft_generator_cancel(w->g, seq);
        }
        drop_finished(w);
        if (w->n_active > 0) {
            eft_status st = eft_generator_step(w->g);
            if (st) {
                /* Answer every client now and cancel its sequence; the jobs stay referenced until
                 * the generator's final events, which may come in a later step. */
                char msg[256];
                snprintf(msg, sizeof msg, "%s", eft_generator_errmsg(w->g));
                for (size_t i = 0; i < w->n_active; i++)
                    if (!srv_gen_job_finished(w->active[i])) {
                        eft_generator_cancel(w->g, w->active[i]->seq);
                        fail_job(w->active[i], 500, msg);
                    }
                /* A generator that keeps failing must not spin a core. */
                struct timespec ts = {0, 10 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
            drop_finished(w);
        }
    }
    return NULL;
}

srv_gen_worker *srv_gen_worker_start(eft_generator *g, int max_queue) {
    srv_gen_worker *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->g = g;
    w->max_queue = max_queue > 0 ? max_queue : 64;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->thread, NULL, worker_main, w)) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w);
        return NULL;
    }
    return w;
}

bool srv_gen_worker_reserve(srv_gen_worker *w) {
    pthread_mutex_lock(&w->mu);
    bool ok = w->depth < w->max_queue && !w->stop;
    if (ok) w->depth++;
    int d = w->depth;
    pthread_mutex_unlock(&w->mu);
    srv_metrics_queue(-1, d);
    return ok;
}

void srv_gen_worker_unreserve(srv_gen_worker *w) {
    pthread_mutex_lock(&w->mu);
    w->depth--;
    pthread_mutex_unlock(&w->mu);
}

void srv_gen_worker_submit(srv_gen_worker *w, srv_gen_job *job) {
    srv_gen_job_ref(job);
    pthread_mutex_lock(&w->mu);
    job->next = NULL;
    if (w->tail) w->tail->next = job;
    else w->head = job;
    w->tail = job;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void srv_gen_job_cancel(srv_gen_worker *w, srv_gen_job *job) {
    pthread_mutex_lock(&job->mu);
    job->wake = NULL; /* the connection is gone: nothing to resume */
    bool c = !job->finished;
    if (c) job->cancel_req = true;
    pthread_mutex_unlock(&job->mu);
    if (c && w) {
        pthread_mutex_lock(&w->mu);
        w->poke = true;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
}

void srv_gen_worker_cancel_all(srv_gen_worker *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->cancel_all = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int srv_gen_worker_depth(srv_gen_worker *w) {
    if (!w) return 0;
    pthread_mutex_lock(&w->mu);
    int d = w->depth;
    pthread_mutex_unlock(&w->mu);
    return d;
}

void srv_gen_worker_stop(srv_gen_worker *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    free(w->active);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}
