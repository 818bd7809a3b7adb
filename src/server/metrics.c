/*
 * metrics.c — the server's counters, gauges and histograms, rendered as Prometheus text for
 * GET /metrics: requests by route and status, request latency by route, embedding batch sizes and
 * tokens, tokens in and out, time to first token and per-token latency, queue depths. One mutex
 * guards it all: updates are a handful of additions per request, far below the cost of a request.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "server/srv.h"

double srv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define N_LAT 14
static const double k_lat_bounds[N_LAT] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                           0.25,  0.5,    1,     2.5,  5,     10,   30};
#define N_SIZE 10
static const double k_size_bounds[N_SIZE] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
#define N_TOK 10
static const double k_tok_bounds[N_TOK] = {16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192};

typedef struct hist {
    unsigned long long counts[16]; /* per bucket, the last one is +Inf */
    double sum;
    unsigned long long n;
} hist;

/* Statuses counted one by one; anything else falls into "other" under its class. */
static const int k_statuses[] = {200, 400, 401, 404, 405, 413, 422, 429, 500, 503};
#define N_STATUS (sizeof k_statuses / sizeof *k_statuses)

static struct {
    pthread_mutex_t mu;
    unsigned long long requests[SRV_R_COUNT][N_STATUS + 1];
    hist latency[SRV_R_COUNT];
    hist batch_inputs, batch_tokens, batch_requests, ttft, per_token;
    unsigned long long tokens_in, tokens_out;
    unsigned long long finished[EFT_FINISH_ERROR + 1];
    int embed_depth, gen_depth;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

static const char *k_route_names[SRV_R_COUNT] = {
    [SRV_R_EMBEDDINGS] = "/v1/embeddings", [SRV_R_EMBED] = "/embed",
    [SRV_R_RERANK] = "/rerank",            [SRV_R_TOKENIZE] = "/tokenize",
    [SRV_R_DETOKENIZE] = "/detokenize",    [SRV_R_COMPLETIONS] = "/v1/completions",
    [SRV_R_CHAT] = "/v1/chat/completions", [SRV_R_MODELS] = "/v1/models",
    [SRV_R_INFO] = "/info",                [SRV_R_HEALTH] = "/health",
    [SRV_R_METRICS] = "/metrics",          [SRV_R_OTHER] = "other",
};

const char *srv_route_name(srv_route r) { return (unsigned)r < SRV_R_COUNT ? k_route_names[r] : "other"; }

static void observe(hist *h, const double *bounds, int nb, double v) {
    int i = 0;
    while (i < nb && v > bounds[i]) i++;
    h->counts[i]++;
    h->sum += v;
    h->n++;
}

void srv_metrics_request(srv_route r, int status, double seconds) {
    if ((unsigned)r >= SRV_R_COUNT) r = SRV_R_OTHER;
    size_t k = 0;
    while (k < N_STATUS && k_statuses[k] != status) k++;
    pthread_mutex_lock(&g.mu);
    g.requests[r][k]++;
    observe(&g.latency[r], k_lat_bounds, N_LAT, seconds);
    pthread_mutex_unlock(&g.mu);
}

void srv_metrics_embed_batch(int n_inputs, int n_tokens, int n_requests) {
    pthread_mutex_lock(&g.mu);
    observe(&g.batch_inputs, k_size_bounds, N_SIZE, n_inputs);
    observe(&g.batch_tokens, k_tok_bounds, N_TOK, n_tokens);
    observe(&g.batch_requests, k_size_bounds, N_SIZE, n_requests);
    g.tokens_in += (unsigned long long)(n_tokens > 0 ? n_tokens : 0);
    pthread_mutex_unlock(&g.mu);
}

void srv_metrics_tokens(long in, long out) {
    pthread_mutex_lock(&g.mu);
    g.tokens_in += (unsigned long long)(in > 0 ? in : 0);
    g.tokens_out += (unsigned long long)(out > 0 ? out : 0);
    pthread_mutex_unlock(&g.mu);
}

void srv_metrics_finish(eft_finish_reason r) {
    if ((unsigned)r > EFT_FINISH_ERROR) return;
    pthread_mutex_lock(&g.mu);
    g.finished[r]++;
    pthread_mutex_unlock(&g.mu);
}

void srv_metrics_ttft(double s) {
    pthread_mutex_lock(&g.mu);
    observe(&g.ttft, k_lat_bounds, N_LAT, s);
    pthread_mutex_unlock(&g.mu);
}

void srv_metrics_token_latency(double s) {
    pthread_mutex_lock(&g.mu);
    observe(&g.per_token, k_lat_bounds, N_LAT, s);
    pthread_mutex_unlock(&g.mu);
}

void srv_metrics_queue(int embed_depth, int gen_depth) {
    pthread_mutex_lock(&g.mu);
    if (embed_depth >= 0) g.embed_depth = embed_depth;
    if (gen_depth >= 0) g.gen_depth = gen_depth;
    pthread_mutex_unlock(&g.mu);
}

static void render_hist(srv_buf *b, const char *name, const char *labels, const hist *h, const double *bounds,
                        int nb) {
    const char *sep = *labels ? "," : "";
    unsigned long long cum = 0;
    for (int i = 0; i <= nb; i++) {
        cum += h->counts[i];
        if (i < nb) srv_buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bounds[i], cum);
        else srv_buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, cum);
    }
    char braced[96] = "";
    if (*labels) snprintf(braced, sizeof braced, "{%s}", labels);
    srv_buf_printf(b, "%s_sum%s %.6f\n%s_count%s %llu\n", name, braced, h->sum, name, braced, h->n);
}

void srv_metrics_render(srv_buf *b) {
    pthread_mutex_lock(&g.mu);
    srv_buf_puts(b, "# HELP eft_requests_total HTTP requests answered, by route and status.\n"
                    "# TYPE eft_requests_total counter\n");
    for (int r = 0; r < SRV_R_COUNT; r++)
        for (size_t k = 0; k <= N_STATUS; k++)
            if (g.requests[r][k]) {
                if (k < N_STATUS)
                    srv_buf_printf(b, "eft_requests_total{route=\"%s\",status=\"%d\"} %llu\n", k_route_names[r],
                                   k_statuses[k], g.requests[r][k]);
                else
                    srv_buf_printf(b, "eft_requests_total{route=\"%s\",status=\"other\"} %llu\n", k_route_names[r],
                                   g.requests[r][k]);
            }
    srv_buf_puts(b, "# HELP eft_request_duration_seconds Time from the request's arrival to its answer.\n"
                    "# TYPE eft_request_duration_seconds histogram\n");
    for (int r = 0; r < SRV_R_COUNT; r++) {
        if (!g.latency[r].n) continue;
        char labels[64];
        snprintf(labels, sizeof labels, "route=\"%s\"", k_route_names[r]);
        render_hist(b, "eft_request_duration_seconds", labels, &g.latency[r], k_lat_bounds, N_LAT);
    }
    srv_buf_printf(b,
                   "# HELP eft_queue_depth Requests waiting or running on a worker.\n"
                   "# TYPE eft_queue_depth gauge\n"
                   "eft_queue_depth{worker=\"embed\"} %d\neft_queue_depth{worker=\"generate\"} %d\n",
                   g.embed_depth, g.gen_depth);
    srv_buf_printf(b,
                   "# HELP eft_tokens_total Tokens read (prompts, embedding inputs) and generated.\n"
                   "# TYPE eft_tokens_total counter\n"
                   "eft_tokens_total{direction=\"in\"} %llu\neft_tokens_total{direction=\"out\"} %llu\n",
                   g.tokens_in, g.tokens_out);
    srv_buf_puts(b, "# HELP eft_generations_total Generated sequences by how they ended.\n"
                    "# TYPE eft_generations_total counter\n");
    for (int r = EFT_FINISH_STOP; r <= EFT_FINISH_ERROR; r++)
        srv_buf_printf(b, "eft_generations_total{finish_reason=\"%s\"} %llu\n",
                       eft_finish_reason_str((eft_finish_reason)r), g.finished[r]);
    srv_buf_puts(b, "# HELP eft_embed_batch_inputs Inputs per embedding forward call.\n"
                    "# TYPE eft_embed_batch_inputs histogram\n");
    render_hist(b, "eft_embed_batch_inputs", "", &g.batch_inputs, k_size_bounds, N_SIZE);
    srv_buf_puts(b, "# HELP eft_embed_batch_requests Requests merged into one embedding call.\n"
                    "# TYPE eft_embed_batch_requests histogram\n");
    render_hist(b, "eft_embed_batch_requests", "", &g.batch_requests, k_size_bounds, N_SIZE);
    srv_buf_puts(b, "# HELP eft_embed_batch_tokens Tokens per embedding call.\n"
                    "# TYPE eft_embed_batch_tokens histogram\n");
    render_hist(b, "eft_embed_batch_tokens", "", &g.batch_tokens, k_tok_bounds, N_TOK);
    srv_buf_puts(b, "# HELP eft_time_to_first_token_seconds From submission to the first generated token.\n"
                    "# TYPE eft_time_to_first_token_seconds histogram\n");
    render_hist(b, "eft_time_to_first_token_seconds", "", &g.ttft, k_lat_bounds, N_LAT);
    srv_buf_puts(b, "# HELP eft_time_per_output_token_seconds Between consecutive generated tokens.\n"
                    "# TYPE eft_time_per_output_token_seconds histogram\n");
    render_hist(b, "eft_time_per_output_token_seconds", "", &g.per_token, k_lat_bounds, N_LAT);
    pthread_mutex_unlock(&g.mu);
}
