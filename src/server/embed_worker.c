/*
 * embed_worker.c — the one thread that owns the embedders (an eft_embedder takes one call at a
 * time). Requests from many clients wait in a FIFO; the worker takes the oldest and merges every
 * waiting request with the same options into one eft_embedder_run, up to a token budget, so many
 * small requests share forward passes. When a merged run fails, each request is run alone so an
 * error (an over-long input, say) is answered to the request that caused it and no other.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/srv.h"

struct srv_embed_worker {
    eft_embedder *emb, *rer;
    int budget;    /* estimated tokens per merged run */
    int max_queue; /* reserved + queued + running */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_embed_job *head, *tail;
    int depth;
    bool stop;
};

/* Tokens an input will take, guessed without tokenizing (about 4 bytes a token in English text
 * plus the special tokens): only used to size merged runs, never to check limits. */
static long estimate(const srv_embed_job *j, int max_tokens) {
    long t = 0;
    if (j->is_rerank) {
        for (size_t i = 0; i < j->rr->n; i++) t += 3 + (long)(strlen(j->rr->query) + strlen(j->rr->texts[i])) / 4;
        return t;
    }
    for (size_t i = 0; i < j->req->n; i++) {
        long k = j->req->texts ? 2 + (long)strlen(j->req->texts[i]) / 4 : (long)j->req->n_ids[i];
        t += k < max_tokens ? k : max_tokens;
    }
    return t;
}

static bool same_str(const char *a, const char *b) { return a == b || (a && b && !strcmp(a, b)); }

/* Requests can share one eft_embedder_run when every per-call option is the same. */
static bool compatible(const srv_embed_job *a, const srv_embed_job *b) {
    if (a->is_rerank || b->is_rerank) return false;
    const srv_embed_req *x = a->req, *y = b->req;
    return (x->texts != NULL) == (y->texts != NULL) && same_str(x->prompt_name, y->prompt_name) &&
           x->normalize == y->normalize && x->truncate == y->truncate && x->dimensions == y->dimensions;
}

static void set_error(srv_embed_job *j, eft_status st, const char *msg) {
    j->status = st;
    snprintf(j->errmsg, sizeof j->errmsg, "%s", msg && *msg ? msg : eft_status_str(st));
}

static void run_rerank(srv_embed_worker *w, srv_embed_job *j) {
    size_t n = j->rr->n;
    int64_t L = eft_embedder_num_labels(w->rer);
    if (L < 1) L = 1;
    float *scores = malloc(n * (size_t)L * sizeof *scores);
    j->out = malloc(n * sizeof *j->out);
    j->n_tokens = calloc(n, sizeof *j->n_tokens);
    if (!scores || !j->out || !j->n_tokens) {
        free(scores);
        set_error(j, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        return;
    }
    eft_status st = eft_embedder_score(w->rer, j->rr->query, j->rr->texts, n, j->rr->truncate, scores, j->n_tokens);
    if (st) set_error(j, st, eft_embedder_errmsg(w->rer));
    else
        for (size_t i = 0; i < n; i++) j->out[i] = scores[i * (size_t)L]; /* the first label: a reranker has one */
    free(scores);
    long tok = 0;
    for (size_t i = 0; i < n; i++) tok += (long)j->n_tokens[i];
    if (!st) srv_metrics_embed_batch((int)n, (int)tok, 1);
}

/* Runs jobs[0..k) as one call; on failure with k > 1 each runs alone. */
static void run_embed(srv_embed_worker *w, srv_embed_job **jobs, int k) {
    const srv_embed_req *r0 = jobs[0]->req;
    int64_t D = eft_embedder_dim(w->emb);
    int64_t dout = r0->dimensions ? r0->dimensions : D;
    size_t n = 0;
    for (int i = 0; i < k; i++) n += jobs[i]->req->n;
    const char **texts = r0->texts ? calloc(n, sizeof *texts) : NULL;
    const int32_t **ids = r0->texts ? NULL : calloc(n, sizeof *ids);
    size_t *n_ids = r0->texts ? NULL : calloc(n, sizeof *n_ids);
    size_t *n_tok = calloc(n, sizeof *n_tok);
    float *out = malloc(n * (size_t)dout * sizeof *out);
    eft_status st = EFT_OK;
    if ((r0->texts ? !texts : (!ids || !n_ids)) || !n_tok || !out) {
        st = EFT_ERR_OUT_OF_MEMORY;
    } else {
        size_t o = 0;
        for (int i = 0; i < k; i++) {
            const srv_embed_req *r = jobs[i]->req;
            for (size_t t = 0; t < r->n; t++, o++) {
                if (texts) texts[o] = r->texts[t];
                else ids[o] = r->ids[t], n_ids[o] = r->n_ids[t];
            }
        }
        eft_embed_request er = eft_embed_request_default();
        er.texts = texts;
        er.ids = ids;
        er.n_ids = n_ids;
        er.n = n;
        er.prompt_name = r0->prompt_name;
        er.normalize = r0->normalize;
        er.truncate = r0->truncate;
        er.dimensions = r0->dimensions;
        er.n_tokens = n_tok;
        st = eft_embedder_run(w->emb, &er, out);
    }
    if (st && k > 1) {
        free(texts), free(ids), free(n_ids), free(n_tok), free(out);
        for (int i = 0; i < k; i++) run_embed(w, jobs + i, 1);
        return;
    }
    if (st) {
        set_error(jobs[0], st, st == EFT_ERR_OUT_OF_MEMORY ? "out of memory" : eft_embedder_errmsg(w->emb));
    } else {
        long tok = 0;
        for (size_t i = 0; i < n; i++) tok += (long)n_tok[i];
        srv_metrics_embed_batch((int)n, (int)tok, k);
        size_t o = 0;
        for (int i = 0; i < k; i++) {
            srv_embed_job *j = jobs[i];
            size_t m = j->req->n;
            j->dim = dout;
            j->out = malloc(m * (size_t)dout * sizeof *j->out);
            j->n_tokens = malloc(m * sizeof *j->n_tokens);
            if (!j->out || !j->n_tokens) {
                set_error(j, EFT_ERR_OUT_OF_MEMORY, "out of memory");
            } else {
                memcpy(j->out, out + o * (size_t)dout, m * (size_t)dout * sizeof *out);
                memcpy(j->n_tokens, n_tok + o, m * sizeof *n_tok);
            }
            o += m;
        }
    }
    free(texts), free(ids), free(n_ids), free(n_tok), free(out);
}

#define MAX_MERGE 256

static void *worker_main(void *arg) {
    srv_embed_worker *w = arg;
    int max_tokens = w->emb ? eft_embedder_max_tokens(w->emb) : 512;
    srv_embed_job *batch[MAX_MERGE];
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->head && !w->stop) pthread_cond_wait(&w->cv, &w->mu);
        if (!w->head) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        srv_embed_job *j0 = w->head;
        w->head = j0->next;
        int k = 0;
        batch[k++] = j0;
        long tokens = estimate(j0, max_tokens);
        /* Merge compatible requests from anywhere in the queue while the budget allows; the
         * others keep their order. */
        for (srv_embed_job **pp = &w->head; *pp && k < MAX_MERGE;) {
            srv_embed_job *j = *pp;
            long t = compatible(j0, j) ? estimate(j, max_tokens) : -1;
            if (t >= 0 && tokens + t <= w->budget) {
                *pp = j->next;
                batch[k++] = j;
                tokens += t;
            } else {
                pp = &j->next;
            }
        }
        w->tail = NULL;
        for (srv_embed_job *j = w->head; j; j = j->next) w->tail = j;
        pthread_mutex_unlock(&w->mu);

        if (j0->is_rerank) run_rerank(w, j0);
        else run_embed(w, batch, k);

        pthread_mutex_lock(&w->mu);
        w->depth -= k;
        int depth = w->depth;
        pthread_mutex_unlock(&w->mu);
        srv_metrics_queue(depth, -1);
        for (int i = 0; i < k; i++) batch[i]->done(batch[i]->user);
    }
    return NULL;
}

srv_embed_worker *srv_embed_worker_start(eft_embedder *embedder, eft_embedder *reranker, int max_batch_tokens,
                                         int max_queue) {
    srv_embed_worker *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->emb = embedder;
    w->rer = reranker;
    w->budget = max_batch_tokens > 0 ? max_batch_tokens : 2048;
    w->max_queue = max_queue > 0 ? max_queue : 256;
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

bool srv_embed_worker_reserve(srv_embed_worker *w) {
    pthread_mutex_lock(&w->mu);
    bool ok = w->depth < w->max_queue && !w->stop;
    if (ok) w->depth++;
    int depth = w->depth;
    pthread_mutex_unlock(&w->mu);
    srv_metrics_queue(depth, -1);
    return ok;
}

void srv_embed_worker_submit(srv_embed_worker *w, srv_embed_job *job) {
    job->next = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->tail) w->tail->next = job;
    else w->head = job;
    w->tail = job;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int srv_embed_worker_depth(srv_embed_worker *w) {
    if (!w) return 0;
    pthread_mutex_lock(&w->mu);
    int d = w->depth;
    pthread_mutex_unlock(&w->mu);
    return d;
}

void srv_embed_worker_stop(srv_embed_worker *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

void srv_embed_job_release(srv_embed_job *job) {
    if (!job) return;
    free(job->out);
    free(job->n_tokens);
    job->out = NULL;
    job->n_tokens = NULL;
}
