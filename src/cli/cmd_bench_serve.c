/*
 * cmd_bench_serve.c — `eft bench serve`: starts `eft serve` as a child process on a free loopback
 * port and drives it with a small load generator of its own (keep-alive HTTP/1.1 clients, one
 * thread each), so the figures need nothing but eft. Embeddings: requests/s, sentences/s and
 * p50/p99 latency at 1, 16 and 64 concurrent clients, next to the offline embedder's throughput
 * on the same sentence measured in the same run before the server starts. Generation: aggregate
 * tokens/s of N concurrent greedy completions against one alone.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

#define MAX_CLIENTS 256
#define MAX_LEVELS 8

static const char k_sentence[] = "The quick brown fox jumps over the lazy dog while the children watch from the "
                                 "garden and the rain begins to fall on the old stone bridge.";

static int usage(void) {
    return eft_cli_error("bench", "usage: eft bench serve [--model LLM] [--embedding-model MODEL] [--clients 1,16,64] "
                                  "[--streams 8] [--max-tokens 64] [--seconds S] [--num-cores N]");
}

/* ---------------------------------------------------------------------------------------------
 * A minimal HTTP/1.1 client: one keep-alive connection, Content-Length bodies (what eft serve
 * sends for non-streamed answers).
 * ------------------------------------------------------------------------------------------- */

typedef struct conn {
    int fd;
    int port;
    char buf[1 << 16];
    size_t len;
} conn;

static bool conn_open(conn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) return false;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(c->fd);
        c->fd = -1;
        return false;
    }
    c->len = 0;
    return true;
}

static void conn_close(conn *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

/* Sends one request and reads the answer: the status, and the body into body (NUL-terminated,
 * cut at cap - 1). Reconnects once when the server closed a kept-alive connection. */
static int http_call(conn *c, const char *method, const char *path, const char *body, char *out, size_t cap) {
    for (int attempt = 0; attempt < 2; attempt++) {
        if (c->fd < 0 && !conn_open(c)) return -1;
        char head[512];
        size_t blen = body ? strlen(body) : 0;
        int hl = snprintf(head, sizeof head,
                          "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                          method, path, blen);
        if (send(c->fd, head, (size_t)hl, MSG_NOSIGNAL) != hl || (blen && send(c->fd, body, blen, MSG_NOSIGNAL) != (ssize_t)blen)) {
            conn_close(c);
            continue;
        }
        c->len = 0;
        char *hdr_end = NULL;
        while (!hdr_end) {
            ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len, 0);
            if (r <= 0) break;
            c->len += (size_t)r;
            c->buf[c->len] = '\0';
            hdr_end = strstr(c->buf, "\r\n\r\n");
            if (!hdr_end && c->len >= sizeof c->buf - 1) break;
        }
        if (!hdr_end) {
            conn_close(c);
            continue;
        }
        int status = 0;
        if (sscanf(c->buf, "HTTP/1.%*d %d", &status) != 1) {
            conn_close(c);
            return -1;
        }
        size_t clen = 0;
        for (char *p = c->buf; p && p < hdr_end; p = strstr(p, "\r\n")) {
            p += (p[0] == '\r') ? 2 : 0;
            if (!strncasecmp(p, "Content-Length:", 15)) clen = strtoul(p + 15, NULL, 10);
        }
        size_t have = c->len - (size_t)(hdr_end + 4 - c->buf);
        size_t k = 0;
        const char *src = hdr_end + 4;
        for (size_t i = 0; i < have && k + 1 < cap; i++) out[k++] = src[i];
        while (have < clen) {
            char tmp[8192];
            ssize_t r = recv(c->fd, tmp, sizeof tmp, 0);
            if (r <= 0) break;
            for (ssize_t i = 0; i < r && k + 1 < cap; i++) out[k++] = tmp[i];
            have += (size_t)r;
        }
        out[k] = '\0';
        if (have < clen) conn_close(c);
        return status;
    }
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * Load
 * ------------------------------------------------------------------------------------------- */

typedef struct client {
    pthread_t th;
    int port;
    const char *path, *body;
    double until;
    int max_requests;    /* 0: until the deadline */
    long n, errors;
    long tokens;         /* generation: completion tokens */
    double *lat;
    long lat_cap;
} client;

static void *client_run(void *arg) {
    client *cl = arg;
    conn *c = malloc(sizeof *c);
    char *out = malloc(1 << 20);
    if (!c || !out) {
        free(c), free(out);
        cl->errors++;
        return NULL;
    }
    c->fd = -1;
    c->port = cl->port;
    while (eft_cli_now_s() < cl->until && (cl->max_requests == 0 || cl->n + cl->errors < cl->max_requests)) {
        double t0 = eft_cli_now_s();
        int st = http_call(c, "POST", cl->path, cl->body, out, 1 << 20);
        double t = eft_cli_now_s() - t0;
        if (st != 200) {
            cl->errors++;
            if (st < 0) break;
            continue;
        }
        if (cl->n < cl->lat_cap) cl->lat[cl->n] = t;
        cl->n++;
        json_error_t jerr;
        json_t *j = json_loads(out, 0, &jerr);
        json_t *u = json_object_get(json_object_get(j, "usage"), "completion_tokens");
        if (json_is_integer(u)) cl->tokens += (long)json_integer_value(u);
        json_decref(j);
    }
    conn_close(c);
    free(c), free(out);
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct load_result {
    double rps, p50, p99, tokens_per_s;
    long errors;
} load_result;

static load_result run_load(int port, const char *path, const char *body, int n_clients, double seconds, int max_requests) {
    load_result r = {0};
    client *cl = calloc((size_t)n_clients, sizeof *cl);
    if (!cl) return r;
    double start = eft_cli_now_s();
    for (int i = 0; i < n_clients; i++) {
        cl[i] = (client){.port = port, .path = path, .body = body, .until = start + seconds, .max_requests = max_requests,
                         .lat_cap = 100000};
        cl[i].lat = malloc(sizeof(double) * (size_t)cl[i].lat_cap);
        if (!cl[i].lat || pthread_create(&cl[i].th, NULL, client_run, &cl[i]) != 0) {
            n_clients = i;
            free(cl[i].lat);
            break;
        }
    }
    long total = 0, tokens = 0;
    for (int i = 0; i < n_clients; i++) pthread_join(cl[i].th, NULL);
    double elapsed = eft_cli_now_s() - start;
    for (int i = 0; i < n_clients; i++) total += cl[i].n < cl[i].lat_cap ? cl[i].n : cl[i].lat_cap;
    double *all = malloc(sizeof(double) * (size_t)(total > 0 ? total : 1));
    long k = 0, n = 0;
    for (int i = 0; i < n_clients; i++) {
        for (long j = 0; all && j < cl[i].n && j < cl[i].lat_cap; j++) all[k++] = cl[i].lat[j];
        n += cl[i].n;
        tokens += cl[i].tokens;
        r.errors += cl[i].errors;
        free(cl[i].lat);
    }
    if (all && k > 0) {
        qsort(all, (size_t)k, sizeof(double), cmp_double);
        r.p50 = all[k / 2];
        r.p99 = all[(k * 99) / 100 < k ? (k * 99) / 100 : k - 1];
    }
    r.rps = n / elapsed;
    r.tokens_per_s = tokens / elapsed;
    free(all);
    free(cl);
    return r;
}

/* ---------------------------------------------------------------------------------------------
 * The server as a child process
 * ------------------------------------------------------------------------------------------- */

static void *drain(void *arg) {
    FILE *f = arg;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
    }
    fclose(f);
    return NULL;
}

/* Runs `eft serve args...` (this same binary) and reads its stderr until it says which port it
 * listens on; *port 0 when it never does. */
static pid_t start_server(char **args, int *port) {
    int pipefd[2];
    if (pipe(pipefd) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        close(pipefd[1]);
        execv("/proc/self/exe", args);
        _exit(127);
    }
    close(pipefd[1]);
    FILE *f = fdopen(pipefd[0], "r");
    char line[1024];
    *port = 0;
    while (f && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "listening on http://127.0.0.1:");
        if (p) {
            *port = atoi(p + strlen("listening on http://127.0.0.1:"));
            break;
        }
        fputs(line, stderr);
    }
    /* The rest of the server's stderr is drained by a detached thread so it never blocks. */
    pthread_t th;
    if (f && pthread_create(&th, NULL, drain, f) == 0) pthread_detach(th);
    else if (f) fclose(f);
    return pid;
}

static bool wait_ready(int port, double timeout) {
    conn c = {.fd = -1, .port = port};
    char out[256];
    double until = eft_cli_now_s() + timeout;
    while (eft_cli_now_s() < until) {
        int st = http_call(&c, "GET", "/health", NULL, out, sizeof out);
        conn_close(&c);
        if (st == 200) return true;
        usleep(100000);
    }
    return false;
}

static void stop_server(pid_t pid) {
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
}

/* ---------------------------------------------------------------------------------------------
 * The command
 * ------------------------------------------------------------------------------------------- */

static double offline_sentences_per_s(const char *model, int threads, int batch, double seconds) {
    eft_embedder_params p = eft_embedder_params_default();
    p.n_threads = threads;
    p.max_batch = batch;
    p.truncate = EFT_TRUNCATE_RIGHT_SIDE; /* as the requests ask: tiny test models take few tokens */
    eft_embedder *e = NULL;
    if (eft_embedder_open(model, &p, &e) != EFT_OK) return 0;
    const char **texts = malloc(sizeof(char *) * (size_t)batch);
    float *out = malloc(sizeof(float) * (size_t)batch * (size_t)eft_embedder_dim(e));
    double best = 0;
    if (texts && out) {
        for (int i = 0; i < batch; i++) texts[i] = k_sentence;
        eft_embedder_embed(e, texts, (size_t)batch, out); /* warm-up */
        double start = eft_cli_now_s();
        long n = 0;
        while (eft_cli_now_s() - start < seconds) {
            if (eft_embedder_embed(e, texts, (size_t)batch, out) != EFT_OK) break;
            n += batch;
        }
        best = n / (eft_cli_now_s() - start);
    }
    free(texts), free(out);
    eft_embedder_close(e);
    return best;
}

static bool parse_levels(const char *s, int *out, int *n) {
    *n = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        char *end;
        long v = strtol(t, &end, 10);
        if (*end || v < 1 || v > MAX_CLIENTS || *n == MAX_LEVELS) return false;
        out[(*n)++] = (int)v;
    }
    return *n > 0;
}

int eft_cmd_bench_serve(int argc, char **argv) {
    const char *llm = NULL, *emb = NULL;
    int levels[MAX_LEVELS] = {1, 16, 64}, n_levels = 3, streams = 8, max_tokens = 64;
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    double seconds = 5.0;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(argv[i], "--model") && v) llm = argv[++i];
        else if (!strcmp(argv[i], "--embedding-model") && v) emb = argv[++i];
        else if (!strcmp(argv[i], "--clients") && v) {
            if (!parse_levels(argv[++i], levels, &n_levels)) return eft_cli_error("bench", "--clients wants counts 1..%d like 1,16,64", MAX_CLIENTS);
        } else if ((!strcmp(argv[i], "--streams") || !strcmp(argv[i], "--max-tokens") || !strcmp(argv[i], "--num-cores")) && v) {
            long x = strtol(argv[++i], &end, 10);
            if (*end || x < 1 || x > 4096) return eft_cli_error("bench", "%s wants 1..4096, got '%s'", argv[i - 1], argv[i]);
            if (!strcmp(argv[i - 1], "--streams")) streams = (int)x;
            else if (!strcmp(argv[i - 1], "--max-tokens")) max_tokens = (int)x;
            else threads = (int)x;
        } else if (!strcmp(argv[i], "--seconds") && v) {
            double x = strtod(argv[++i], &end);
            if (*end || !(x > 0 && x <= 600)) return eft_cli_error("bench", "--seconds wants (0, 600], got '%s'", argv[i]);
            seconds = x;
        } else return usage();
    }
    if (!llm && !emb) return usage();
    if (streams > MAX_CLIENTS) streams = MAX_CLIENTS;
    double load[3];
    eft_cli_loadavg(load);
    printf("eft %s bench serve — %d threads, %.1f s per level, load average %.2f %.2f %.2f\n\n", eft_version(), threads,
           seconds, load[0], load[1], load[2]);

    double offline = 0;
    if (emb) {
        offline = offline_sentences_per_s(emb, threads, 32, seconds);
        printf("offline embedder (same sentence, batch 32, in-process): %.1f sentences/s\n", offline);
    }
    fflush(stdout);

    char nthreads[16], nstreams[16], ctx[16];
    snprintf(nthreads, sizeof nthreads, "%d", threads);
    snprintf(nstreams, sizeof nstreams, "%d", streams);
    snprintf(ctx, sizeof ctx, "%d", max_tokens + 128);
    char *args[20];
    int a = 0;
    args[a++] = "eft", args[a++] = "serve", args[a++] = "--port", args[a++] = "0", args[a++] = "--num-cores", args[a++] = nthreads;
    args[a++] = "--model", args[a++] = (char *)(llm ? llm : emb);
    if (llm && emb) args[a++] = "--embedding-model", args[a++] = (char *)emb;
    if (llm) args[a++] = "--full-batch-size", args[a++] = nstreams, args[a++] = "--ctx-len", args[a++] = ctx;
    args[a++] = "--max-queue", args[a++] = "4096";
    args[a] = NULL;
    int port = 0;
    pid_t pid = start_server(args, &port);
    if (pid <= 0 || port <= 0 || !wait_ready(port, 600)) {
        stop_server(pid);
        return eft_cli_error("bench", "the server did not start (see its messages above)");
    }

    if (emb) {
        char body[512];
        snprintf(body, sizeof body, "{\"input\": \"%s\", \"truncate\": true}", k_sentence);
        printf("\nPOST /v1/embeddings, one sentence per request\n");
        printf("%8s %10s %12s %10s %10s %8s %8s\n", "clients", "req/s", "sentences/s", "p50 ms", "p99 ms", "errors", "/offline");
        for (int l = 0; l < n_levels; l++) {
            load_result r = run_load(port, "/v1/embeddings", body, levels[l], seconds, 0);
            printf("%8d %10.1f %12.1f %10.2f %10.2f %8ld %7.0f%%\n", levels[l], r.rps, r.rps, r.p50 * 1e3, r.p99 * 1e3,
                   r.errors, offline > 0 ? 100 * r.rps / offline : 0);
            fflush(stdout);
        }
    }
    if (llm) {
        char body[512];
        snprintf(body, sizeof body,
                 "{\"prompt\": \"Once upon a time, in a small village by the sea,\", \"max_tokens\": %d, "
                 "\"temperature\": 0, \"ignore_eos\": true}",
                 max_tokens);
        printf("\nPOST /v1/completions, greedy, %d tokens each\n", max_tokens);
        load_result one = run_load(port, "/v1/completions", body, 1, 1e9, 2);
        load_result many = run_load(port, "/v1/completions", body, streams, 1e9, 2);
        printf("  1 stream : %8.1f tokens/s\n", one.tokens_per_s);
        printf("%3d streams: %8.1f tokens/s aggregate (%.2fx one stream)%s\n", streams, many.tokens_per_s,
               one.tokens_per_s > 0 ? many.tokens_per_s / one.tokens_per_s : 0, many.errors ? "  (errors)" : "");
    }
    stop_server(pid);
    return 0;
}
