/*
 * cmd_serve.c — `eft serve`: reads the command line into an eft_server_config and runs the HTTP
 * server (src/server/) until SIGTERM or SIGINT. Built only when libmicrohttpd is found; without
 * it the command says so instead of failing to link.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#ifdef EFT_HAVE_SERVER
#include "server/server.h"

static const char *k_usage =
    "usage: eft serve --model MODEL [--embedding-model MODEL] [--rerank-model MODEL] [--host H] [--port P]\n"
    "                 [--api-key KEY ...] [--cors] [--num-cores N] [--ctx-len N] [--full-batch-size N]\n"
    "                 [--act-dtype f32|int8]\n"
    "                 [--prefill-seq-len N] [--max-batch-tokens N] [--max-batch N] [--max-body-bytes N]\n"
    "                 [--max-inputs N] [--max-queue N] [--served-model-name NAME] [--shutdown-timeout S]\n"
    "\n"
    "Serves OpenAI- and TEI-compatible routes over HTTP: POST /v1/embeddings /embed /rerank /tokenize\n"
    "/detokenize /v1/completions /v1/chat/completions; GET /v1/models /info /health /metrics.\n"
    "--model is a causal LM (generation) or an encoder (embeddings; a cross-encoder also reranks).\n"
    "Binds 127.0.0.1:8080 by default; --port 0 picks a free port, printed as \"listening on ...\".\n"
    "With --api-key (repeatable) every route but /health and /metrics needs Authorization: Bearer KEY.\n"
    "SIGTERM/SIGINT stop accepting, finish what is in flight and exit 0. --num-cores defaults to every\n"
    "online CPU (for a compiled program: its num_cores).\n";

/* A non-negative integer option in [lo, hi], or -1 with a message. */
static long long int_arg(const char *name, const char *v, long long lo, long long hi) {
    char *end = NULL;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        eft_cli_error("serve", "%s expects an integer from %lld to %lld, not '%s'", name, lo, hi, v);
        return -1;
    }
    return x;
}

int eft_cmd_serve(int argc, char **argv) {
    eft_server_config c = eft_server_config_default();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--cors")) {
            c.cors = 1;
            continue;
        }
        if (!v) return eft_cli_error("serve", "%s needs a value (or is unknown; see eft serve --help)", a);
        i++;
        long long x = 0;
#define INT_OPT(flag, field, lo, hi)                                                                                   \
    else if (!strcmp(a, flag)) {                                                                                       \
        if ((x = int_arg(flag, v, lo, hi)) < 0) return 2;                                                              \
        c.field = x;                                                                                                   \
    }
        if (!strcmp(a, "--model")) c.model = v;
        else if (!strcmp(a, "--embedding-model")) c.embedding_model = v;
        else if (!strcmp(a, "--rerank-model")) c.rerank_model = v;
        else if (!strcmp(a, "--served-model-name")) c.served_name = v;
        else if (!strcmp(a, "--host")) c.host = v;
        else if (!strcmp(a, "--api-key")) {
            if (c.n_api_keys == EFT_SERVER_MAX_API_KEYS)
                return eft_cli_error("serve", "at most %d --api-key options", EFT_SERVER_MAX_API_KEYS);
            if (!*v) return eft_cli_error("serve", "--api-key must not be empty");
            c.api_keys[c.n_api_keys++] = v;
        } else if (!strcmp(a, "--act-dtype")) {
            if (strcmp(v, "f32") && strcmp(v, "int8")) return eft_cli_error("serve", "--act-dtype wants f32 or int8, got '%s'", v);
            c.int8_activations = !strcmp(v, "int8");
        }
        INT_OPT("--port", port, 0, 65535)
        INT_OPT("--num-cores", n_threads, 0, 1024)
        INT_OPT("--ctx-len", ctx_len, 0, 1 << 24)
        INT_OPT("--full-batch-size", full_batch_size, 0, 4096)
        INT_OPT("--prefill-seq-len", prefill_seq_len, 0, 1 << 20)
        INT_OPT("--max-batch-tokens", max_batch_tokens, 1, 1 << 24)
        INT_OPT("--max-batch", max_batch, 1, 4096)
        INT_OPT("--max-body-bytes", max_body_bytes, 1, 1ll << 32)
        INT_OPT("--max-inputs", max_inputs, 1, 1 << 20)
        INT_OPT("--max-queue", max_queue, 1, 1 << 20)
        INT_OPT("--shutdown-timeout", shutdown_timeout_s, 1, 86400)
        else return eft_cli_error("serve", "unknown option '%s' (see eft serve --help)", a);
#undef INT_OPT
    }
    if (!c.model && !c.embedding_model && !c.rerank_model) {
        fputs(k_usage, stderr);
        return 2;
    }
    return eft_server_run(&c);
}

#else

int eft_cmd_serve(int argc, char **argv) {
    (void)argc, (void)argv;
    return eft_cli_error("serve", "this eft was built without libmicrohttpd (install libmicrohttpd-dev and rebuild)");
}

#endif
