/*
 * server.h — what the CLI needs to run `eft serve`: the server's configuration with its defaults,
 * and one call that serves until SIGTERM/SIGINT. Everything behind it (HTTP on libmicrohttpd,
 * request parsing, the embedding and generation workers, metrics) is in src/server/srv.h.
 */
#ifndef EFT_SERVER_H
#define EFT_SERVER_H

#include <stddef.h>

#include "eft.h"

#define EFT_SERVER_MAX_API_KEYS 16

typedef struct eft_server_config {
    const char *model;           /* a causal LM (generation) or an encoder (embeddings, rerank) */
    const char *embedding_model; /* an encoder for /v1/embeddings and /embed; NULL: none */
    const char *rerank_model;    /* a cross-encoder for /rerank; NULL: none */
    const char *served_name;     /* the "model" name clients see; NULL: the model argument */
    const char *host;            /* default 127.0.0.1 */
    int port;                    /* 0: a free port, printed on stderr */
    const char *api_keys[EFT_SERVER_MAX_API_KEYS];
    int n_api_keys;
    int cors;                    /* nonzero: Access-Control-Allow-Origin: * and preflight answers */
    int n_threads;               /* compute threads per model; 0: every online CPU */
    int ctx_len, full_batch_size, prefill_seq_len; /* generation, 0: the library's defaults */
    int int8_activations;        /* nonzero: eft_generator_params.activation_dtype = I8 */
    int max_batch_tokens;        /* embedding tokens merged into one run (estimated) */
    int max_batch;               /* inputs per forward pass of an embedder */
    size_t max_body_bytes;       /* 413 above */
    int max_inputs;              /* inputs per embedding/rerank request, 413 above */
    int max_queue;               /* requests waiting or running per worker, 429 above */
    int shutdown_timeout_s;      /* on SIGTERM: how long in-flight requests may take to finish */
} eft_server_config;

eft_server_config eft_server_config_default(void);

/* Binds, loads the models (answering /health with 503 meanwhile), serves until SIGTERM or
 * SIGINT, finishes what is in flight and returns 0; non-zero when it could not start. Progress
 * and errors go to stderr. */
int eft_server_run(const eft_server_config *cfg);

#endif /* EFT_SERVER_H */
