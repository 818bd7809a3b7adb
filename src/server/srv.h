/*
 * srv.h — the server's internal seams: a growable byte buffer for responses, the typed requests
 * that request.c makes out of untrusted JSON bodies (pure functions, fuzzed), the metrics
 * registry, and the two compute workers (embeddings, generation) with their job types. Only
 * src/server/ includes it; it talks to the model through the public C API alone.
 */
#ifndef EFT_SRV_H
#define EFT_SRV_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "eft.h"

/* ---------------------------------------------------------------------------------------------
 * Byte buffer (buf.c). Appends never fail silently: after an allocation failure `oom` is set and
 * further appends do nothing, so a writer checks once at the end.
 * ------------------------------------------------------------------------------------------- */

typedef struct srv_buf {
    char *data;
    size_t len, cap;
    bool oom;
} srv_buf;

void srv_buf_free(srv_buf *b);
void srv_buf_put(srv_buf *b, const void *p, size_t n);
void srv_buf_puts(srv_buf *b, const char *s);
void srv_buf_printf(srv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string literal with quotes; invalid UTF-8 is written as U+FFFD so output is valid JSON. */
void srv_buf_json_str(srv_buf *b, const char *s, size_t n);
/* A float with enough digits to read back the same float32 (non-finite values become 0). */
void srv_buf_float(srv_buf *b, float v);
/* Standard base64 of n bytes. */
void srv_buf_base64(srv_buf *b, const uint8_t *p, size_t n);

/* ---------------------------------------------------------------------------------------------
 * Errors, as OpenAI shapes them: {"error": {"message", "type", "param", "code"}}.
 * ------------------------------------------------------------------------------------------- */

typedef struct srv_error {
    int status;        /* HTTP status */
    const char *type;  /* "invalid_request_error", ... (static strings) */
    const char *code;  /* NULL or a short machine-readable code */
    char param[64];    /* the offending field, "" for none */
    char message[512];
    /* On TEI's routes: its error_type and status where they do not follow from status (see
     * srv_error_json_tei); NULL and 0 otherwise. */
    const char *tei_type;
    int tei_status;
} srv_error;

/* Fills err and returns false, so parsers can write `return srv_fail(err, 400, ...)`. */
bool srv_fail(srv_error *err, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* srv_fail(err, 400, ...) for an empty input, which TEI answers as its own kind ("Empty"). */
bool srv_fail_empty(srv_error *err, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The JSON body of an error (caller frees). */
char *srv_error_json(const srv_error *err, size_t *len);
/* The same error as text-embeddings-inference answers it, for its routes (/embed, /rerank,
 * /tokenize): {"error": "...", "error_type": "Validation"} with TEI's status, set in *status. */
char *srv_error_json_tei(const srv_error *err, int *status, size_t *len);
/* The OpenAI error type for a status. */
const char *srv_error_type(int status);

/* ---------------------------------------------------------------------------------------------
 * Requests (request.c): parse and validate a body. On failure they return false with err filled
 * (400 malformed or wrong type, 413 too many inputs, 422 unprocessable values) and own nothing.
 * ------------------------------------------------------------------------------------------- */

typedef struct srv_limits {
    size_t max_inputs;   /* inputs per embedding/rerank request */
    size_t max_input_ids; /* ids per token-id input (also bounds /detokenize) */
    int64_t max_dim;     /* the embedder's D, for "dimensions" (0: unknown, only > 0 checked) */
} srv_limits;

typedef enum srv_api { SRV_API_OPENAI = 0, SRV_API_TEI = 1 } srv_api;

typedef struct srv_embed_req {
    json_t *doc;          /* the parsed body: texts point into it */
    const char **texts;   /* [n] or NULL when the inputs are token ids */
    int32_t **ids;        /* [n] arrays of n_ids[i], or NULL */
    size_t *n_ids;
    size_t n;
    const char *model;    /* as the client named it, or NULL */
    bool base64;          /* OpenAI encoding_format */
    int64_t dimensions;   /* 0: all */
    int normalize;        /* -1 model default, 0, 1 */
    eft_truncate truncate;
    const char *prompt_name;
} srv_embed_req;

bool srv_parse_openai_embeddings(const char *body, size_t len, const srv_limits *lim, srv_embed_req *out,
                                 srv_error *err);
bool srv_parse_tei_embed(const char *body, size_t len, const srv_limits *lim, srv_embed_req *out, srv_error *err);
void srv_embed_req_free(srv_embed_req *r);

typedef struct srv_rerank_req {
    json_t *doc;
    const char *query;
    const char **texts;
    size_t n;
    bool raw_scores, return_text;
    eft_truncate truncate;
} srv_rerank_req;

bool srv_parse_rerank(const char *body, size_t len, const srv_limits *lim, srv_rerank_req *out, srv_error *err);
void srv_rerank_req_free(srv_rerank_req *r);

typedef struct srv_tokenize_req {
    json_t *doc;
    const char *text; /* "inputs" (TEI) or "prompt"/"text" */
    bool add_special_tokens;
} srv_tokenize_req;

bool srv_parse_tokenize(const char *body, size_t len, srv_tokenize_req *out, srv_error *err);

typedef struct srv_detokenize_req {
    int32_t *ids;
    size_t n;
    bool skip_special;
} srv_detokenize_req;

bool srv_parse_detokenize(const char *body, size_t len, const srv_limits *lim, srv_detokenize_req *out,
                          srv_error *err);

#define SRV_MAX_STOP 16

typedef struct srv_gen_req {
    json_t *doc;
    bool chat;
    const char *prompt;       /* completions: the prompt text, or NULL when prompt_ids */
    int32_t *prompt_ids;      /* completions given token ids */
    size_t n_prompt_ids;
    char *messages_json;      /* chat: the messages array, re-serialised for the template */
    const char *model;
    int max_tokens;           /* -1: not given */
    bool has_temperature, has_top_p, has_seed;
    float temperature, top_p;
    float presence_penalty, frequency_penalty;
    uint64_t seed;
    const char *stop[SRV_MAX_STOP];
    int n_stop;
    bool stream, include_usage;
    int logprobs;             /* completions: 0..20 top tokens (-1 none); chat: top_logprobs */
    bool want_logprobs;
    bool echo;
    bool ignore_eos;          /* an extension (vLLM has it too): generate past EOS, for benchmarks */
} srv_gen_req;

bool srv_parse_completion(const char *body, size_t len, const srv_limits *lim, srv_gen_req *out, srv_error *err);
bool srv_parse_chat(const char *body, size_t len, srv_gen_req *out, srv_error *err);
void srv_gen_req_free(srv_gen_req *r);

/* ---------------------------------------------------------------------------------------------
 * Metrics (metrics.c): process-wide, thread-safe, rendered as Prometheus text.
 * ------------------------------------------------------------------------------------------- */

typedef enum srv_route {
    SRV_R_EMBEDDINGS, SRV_R_EMBED, SRV_R_RERANK, SRV_R_TOKENIZE, SRV_R_DETOKENIZE, SRV_R_COMPLETIONS,
    SRV_R_CHAT, SRV_R_MODELS, SRV_R_INFO, SRV_R_HEALTH, SRV_R_METRICS, SRV_R_OTHER, SRV_R_COUNT
} srv_route;

const char *srv_route_name(srv_route r);
void srv_metrics_request(srv_route r, int status, double seconds);
void srv_metrics_embed_batch(int n_inputs, int n_tokens, int n_requests);
void srv_metrics_tokens(long in, long out);
void srv_metrics_ttft(double seconds);
void srv_metrics_finish(eft_finish_reason r);
void srv_metrics_token_latency(double seconds);
void srv_metrics_queue(int embed_depth, int gen_depth); /* current depths (gauges) */
void srv_metrics_render(srv_buf *b);

double srv_now(void); /* monotonic seconds */

/* ---------------------------------------------------------------------------------------------
 * Embedding worker (embed_worker.c): one thread owns the embedders; requests wait in a queue and
 * runs of compatible requests are merged into one eft_embedder_run by token budget.
 * ------------------------------------------------------------------------------------------- */

typedef struct srv_embed_job srv_embed_job;
typedef void (*srv_job_done_fn)(void *user); /* called on the worker thread when a job is finished */

struct srv_embed_job {
    /* in */
    bool is_rerank;
    srv_embed_req *req;     /* embeddings */
    srv_rerank_req *rr;     /* rerank */
    srv_job_done_fn done;
    void *user;
    /* out, valid once done() has been called */
    float *out;             /* [n, dim] or rerank [n] scores */
    int64_t dim;
    size_t *n_tokens;       /* [n] */
    eft_status status;
    char errmsg[512];
    /* the queue */
    srv_embed_job *next;
};

typedef struct srv_embed_worker srv_embed_worker;

srv_embed_worker *srv_embed_worker_start(eft_embedder *embedder, eft_embedder *reranker, int max_batch_tokens,
                                         int max_queue);
/* Takes a place in the queue; false when it is full (the caller answers 429). A reservation is
 * used by exactly one submit, so the caller can suspend its connection in between. */
bool srv_embed_worker_reserve(srv_embed_worker *w);
void srv_embed_worker_submit(srv_embed_worker *w, srv_embed_job *job);
int srv_embed_worker_depth(srv_embed_worker *w);
/* Finishes every queued job, then joins the thread. NULL is a no-op. */
void srv_embed_worker_stop(srv_embed_worker *w);
void srv_embed_job_release(srv_embed_job *job); /* frees the outputs */

/* ---------------------------------------------------------------------------------------------
 * Generation worker (gen_worker.c): one thread owns the eft_generator and steps it; HTTP threads
 * hand it jobs and cancellations through a queue and a condition variable. A job is shared by the
 * worker and the HTTP response, so it is reference counted.
 * ------------------------------------------------------------------------------------------- */

typedef struct srv_gen_job srv_gen_job;
typedef struct srv_gen_worker srv_gen_worker;

/* Called on the worker thread whenever the job has new output (streaming) or has finished. */
typedef void (*srv_gen_wake_fn)(srv_gen_job *job, void *user);

srv_gen_worker *srv_gen_worker_start(eft_generator *g, int max_queue);
void srv_gen_worker_stop(srv_gen_worker *w); /* finishes everything queued, joins; NULL no-op */
int srv_gen_worker_depth(srv_gen_worker *w);

/* Makes a job from a validated request and its prompt ids (taken over). Returns NULL on out of
 * memory. model_name is copied. */
srv_gen_job *srv_gen_job_new(srv_gen_req *req, int32_t *prompt, size_t n_prompt, const eft_generate_params *gp,
                             const char *model_name, const eft_tokenizer *tok, srv_gen_wake_fn wake, void *user);
/* As for embeddings: reserve a place (false: 429), then submit; the worker takes a reference. */
bool srv_gen_worker_reserve(srv_gen_worker *w);
void srv_gen_worker_submit(srv_gen_worker *w, srv_gen_job *job);
void srv_gen_worker_unreserve(srv_gen_worker *w); /* a reservation that will not be used */
/* The HTTP side is about to suspend until the job finishes (non-streaming). */
void srv_gen_job_set_waiting(srv_gen_job *job);
/* Non-streaming: the client's socket, which the worker watches while the connection waits
 * suspended, cancelling the sequence when the client has hung up. */
void srv_gen_job_watch_client(srv_gen_job *job, int fd);
/* Shutdown past its deadline: every sequence is cancelled. */
void srv_gen_worker_cancel_all(srv_gen_worker *w);
/* The client went away: the sequence is cancelled at the next step. */
void srv_gen_job_cancel(srv_gen_worker *w, srv_gen_job *job);
void srv_gen_job_ref(srv_gen_job *job);
void srv_gen_job_unref(srv_gen_job *job);

/* Streaming: copies up to max bytes of pending SSE output into dst. Returns the byte count, 0
 * when nothing is pending yet (and then *waiting is set under the job's lock, so the next wake
 * must resume the reader), or -1 at the end of the stream. */
long srv_gen_job_read(srv_gen_job *job, char *dst, size_t max, void (*suspend)(void *), void *suspend_arg);
/* Non-streaming: once finished, the whole response body (borrowed) and its status. */
bool srv_gen_job_finished(srv_gen_job *job);
const char *srv_gen_job_body(srv_gen_job *job, size_t *len, int *status);

#endif /* EFT_SRV_H */
