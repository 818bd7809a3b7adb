/*
 * cmd_bench_embed.c — `eft bench embed MODEL`: sentence-embedding throughput of the whole path
 * (tokenizer, encoder, pooling, Normalize) at fixed shapes B x T, quoted three ways in one run: as
 * sentences/s and tokens/s, as a fraction of the machine's FMA peak measured by the same run, and
 * as a ratio against sentence-transformers on PyTorch and on ONNX Runtime (bench/peer_embed.py,
 * run with a Python that has them) on the very same texts, threads and lengths.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define MAX_SHAPES 8
#define MAX_REPS 4096

typedef struct shape {
    int b, t;
    double ours_sps;                  /* sentences/s, median repetition */
    double torch_sps, ort_sps;        /* peers; 0 when not measured */
    char peer_note[160];
} shape;

static int usage(void) {
    return eft_cli_error("bench", "usage: eft bench embed MODEL [--shape BxT ...] [--threads N] [--seconds S] "
                                  "[--dtype f32|f16|bf16|int8|int4|int4-g128|...] [--peer] [--python PATH]");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Deterministic English-like text of about n_words words, different for each index, with no
 * newline (the peer reads one text per line). Every text is far longer than any bench length, so
 * truncation to T gives exactly T tokens for each. */
static char *make_text(int index, int n_words) {
    static const char *const words[] = {
        "the", "model", "reads", "a", "sentence", "and", "writes", "one", "vector", "that", "keeps", "its",
        "meaning", "close", "to", "similar", "sentences", "while", "different", "topics", "stay", "far",
        "apart", "search", "engines", "compare", "these", "vectors", "with", "cosine", "similarity",
        "which", "is", "fast", "on", "modern", "processors", "because", "matrix", "products", "dominate",
        "every", "layer", "of", "transformer", "encoders", "in", "practice", "weather", "tomorrow",
        "river", "mountain", "library", "quietly", "seventeen", "electric", "garden", "history",
    };
    size_t nw = sizeof words / sizeof words[0];
    size_t cap = (size_t)n_words * 16 + 16, len = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    uint32_t x = 2463534242u + (uint32_t)index * 7919u;
    for (int i = 0; i < n_words; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        const char *w = words[x % nw];
        size_t wl = strlen(w);
        if (len + wl + 3 > cap) break;
        if (i) s[len++] = ' ';
        memcpy(s + len, w, wl);
        len += wl;
        if (x % 11 == 0) s[len++] = ',';
    }
    s[len++] = '.';
    s[len] = '\0';
    return s;
}

/* Floating-point operations of one encoder forward over T tokens (multiply-add = 2): the
 * projections and the MLP per token, and the two attention products per token pair. */
static double encoder_flops(json_t *cfg, int t) {
    double c = (double)json_integer_value(json_object_get(cfg, "hidden_size"));
    double f = (double)json_integer_value(json_object_get(cfg, "intermediate_size"));
    double l = (double)json_integer_value(json_object_get(cfg, "num_hidden_layers"));
    double per_token = 2.0 * (4.0 * c * c + 2.0 * c * f) + 2.0 * 2.0 * (double)t * c;
    return l * per_token * (double)t;
}

static eft_status run_ours(const char *model, shape *sh, int threads, eft_dtype dtype, double seconds, char **texts,
                           double *tokens_out) {
    eft_embedder_params p = eft_embedder_params_default();
    p.n_threads = threads;
    p.dtype = dtype;
    p.max_batch = sh->b;
    p.max_tokens = sh->t;
    p.truncate = EFT_TRUNCATE_RIGHT_SIDE;
    eft_embedder *e = NULL;
    eft_status st = eft_embedder_open(model, &p, &e);
    if (st != EFT_OK) return st;
    if (eft_embedder_max_tokens(e) < sh->t) {
        fprintf(stderr, "eft bench: %s takes at most %d tokens; shape %dx%d skipped\n", model, eft_embedder_max_tokens(e),
                sh->b, sh->t);
        eft_embedder_close(e);
        return EFT_ERR_LIMIT;
    }
    float *out = malloc(sizeof(float) * (size_t)sh->b * (size_t)eft_embedder_dim(e));
    double *reps = malloc(sizeof(double) * MAX_REPS);
    if (!out || !reps) {
        free(out), free(reps), eft_embedder_close(e);
        return EFT_ERR_OUT_OF_MEMORY;
    }
    /* The real token count of the batch, to report tokens/s honestly. */
    double tokens = 0;
    eft_tokenizer *tok = NULL;
    if (eft_tokenizer_open(model, &tok) != EFT_OK) tok = NULL;
    for (int i = 0; i < sh->b && tok; i++) {
        eft_encode_params ep = eft_encode_params_default();
        ep.max_length = (size_t)sh->t;
        eft_encoding *enc = NULL;
        if (eft_tokenizer_encode(tok, texts[i], strlen(texts[i]), NULL, 0, &ep, &enc) == EFT_OK)
            tokens += (double)eft_encoding_len(enc);
        eft_encoding_free(enc);
    }
    eft_tokenizer_close(tok);
    st = eft_embedder_embed(e, (const char *const *)texts, (size_t)sh->b, out); /* warm-up */
    int n = 0;
    double start = eft_cli_now_s();
    while (st == EFT_OK && n < MAX_REPS && (eft_cli_now_s() - start < seconds || n < 3)) {
        double t0 = eft_cli_now_s();
        st = eft_embedder_embed(e, (const char *const *)texts, (size_t)sh->b, out);
        reps[n++] = eft_cli_now_s() - t0;
    }
    if (st == EFT_OK) {
        qsort(reps, (size_t)n, sizeof(double), cmp_double);
        sh->ours_sps = sh->b / reps[n / 2];
        *tokens_out = tokens;
    } else {
        fprintf(stderr, "eft bench: %s\n", eft_embedder_errmsg(e));
    }
    free(out), free(reps);
    eft_embedder_close(e);
    return st;
}

typedef struct peer_ctx {
    shape *shapes;
    int n_shapes;
} peer_ctx;

/* One figure of bench/peer_embed.py: {"peer", "batch", "tokens", "sentences_per_s" | "error"}. */
static void on_peer_line(json_t *j, void *user) {
    peer_ctx *x = user;
    const char *peer = json_string_value(json_object_get(j, "peer"));
    int b = (int)json_integer_value(json_object_get(j, "batch"));
    int t = (int)json_integer_value(json_object_get(j, "tokens"));
    double sps = json_number_value(json_object_get(j, "sentences_per_s"));
    const char *error = json_string_value(json_object_get(j, "error"));
    for (int i = 0; peer && i < x->n_shapes; i++) {
        shape *sh = &x->shapes[i];
        if (sh->b != b || sh->t != t) continue;
        if (error) snprintf(sh->peer_note, sizeof sh->peer_note, "%s: %s", peer, error);
        else if (!strcmp(peer, "torch")) sh->torch_sps = sps;
        else if (!strcmp(peer, "onnxruntime")) sh->ort_sps = sps;
    }
}

static void run_peers(const char *python, const char *model, shape *shapes, int n_shapes, int threads, double seconds,
                      char **texts, int n_texts) {
    char script[4096];
    if (!eft_cli_find_peer_script("peer_embed.py", script, sizeof script)) {
        for (int i = 0; i < n_shapes; i++) snprintf(shapes[i].peer_note, sizeof shapes[i].peer_note, "bench/peer_embed.py not found");
        return;
    }
    char tmpl[] = "/tmp/eft-bench-texts-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0) return;
    FILE *f = fdopen(fd, "w");
    for (int i = 0; i < n_texts; i++) fprintf(f, "%s\n", texts[i]);
    fclose(f);
    char shapes_arg[256] = "";
    for (int i = 0; i < n_shapes; i++) {
        size_t l = strlen(shapes_arg);
        snprintf(shapes_arg + l, sizeof shapes_arg - l, "%s%dx%d", i ? "," : "", shapes[i].b, shapes[i].t);
    }
    char cmd[12288], qpy[1024], qscript[4200], qmodel[4200], qtexts[128];
    if (!eft_cli_shell_quote(qpy, sizeof qpy, python) || !eft_cli_shell_quote(qscript, sizeof qscript, script) ||
        !eft_cli_shell_quote(qmodel, sizeof qmodel, model) || !eft_cli_shell_quote(qtexts, sizeof qtexts, tmpl)) {
        unlink(tmpl);
        return;
    }
    snprintf(cmd, sizeof cmd, "%s %s --model %s --texts %s --shapes %s --threads %d --seconds %g", qpy, qscript, qmodel,
             qtexts, shapes_arg, threads, seconds);
    int rc = eft_cli_run_peer(cmd, on_peer_line, &(peer_ctx){shapes, n_shapes});
    for (int i = 0; rc != 0 && i < n_shapes; i++)
        if (!shapes[i].peer_note[0] && shapes[i].torch_sps <= 0)
            snprintf(shapes[i].peer_note, sizeof shapes[i].peer_note, "the peers did not run (%s exited with %d)", python, rc);
    unlink(tmpl);
}

int eft_cmd_bench_embed(int argc, char **argv) {
    const char *model = NULL, *python = NULL;
    shape shapes[MAX_SHAPES];
    int n_shapes = 0, threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    eft_dtype dtype = EFT_DTYPE_F32; /* the encoder's weights (activations stay f32) */
    const char *dtype_name = "f32";
    double seconds = 3.0;
    bool peer = false;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            int b, t;
            char extra;
            if (sscanf(argv[++i], "%dx%d%c", &b, &t, &extra) != 2 || b < 1 || b > 1024 || t < 1 || t > 8192)
                return eft_cli_error("bench", "--shape wants BxT (batch 1..1024, tokens 1..8192), got '%s'", argv[i]);
            if (n_shapes == MAX_SHAPES) return eft_cli_error("bench", "at most %d shapes", MAX_SHAPES);
            shapes[n_shapes++] = (shape){.b = b, .t = t};
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1024) return eft_cli_error("bench", "--threads wants 1..1024, got '%s'", argv[i]);
            threads = (int)v;
        } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            double v = strtod(argv[++i], &end);
            if (*end || !(v > 0 && v <= 600)) return eft_cli_error("bench", "--seconds wants (0, 600], got '%s'", argv[i]);
            seconds = v;
        } else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            const char *v = argv[++i];
            dtype = eft_weight_dtype_parse(v);
            if (dtype == EFT_DTYPE_COUNT)
                return eft_cli_error("bench", "--dtype wants f32, f16, bf16, int8, int4, int8-g64, int8-g128, "
                                     "int8-channel, int4-g32|g64|g128 or int4-g32|g64|g128-asym, got '%s'", v);
            dtype_name = eft_weight_dtype_label(dtype);
        } else if (!strcmp(argv[i], "--peer")) {
            peer = true;
        } else if (!strcmp(argv[i], "--python") && i + 1 < argc) {
            python = argv[++i];
            peer = true;
        } else if (argv[i][0] == '-' || model) {
            return usage();
        } else {
            model = argv[i];
        }
    }
    if (!model) return usage();
    if (threads < 1) threads = 1;
    if (n_shapes == 0) {
        shapes[n_shapes++] = (shape){.b = 32, .t = 128};
        shapes[n_shapes++] = (shape){.b = 1, .t = 16};
    }
    python = eft_cli_peer_python(python);

    eft_model *m = NULL;
    if (eft_model_open(model, NULL, &m) != EFT_OK) return eft_cli_error("bench", "%s", eft_last_error());
    char *info = eft_model_info_json(m);
    eft_model_close(m);
    json_error_t jerr;
    json_t *root = info ? json_loads(info, 0, &jerr) : NULL;
    eft_free(info);
    json_t *cfg = json_object_get(root, "config");
    if (!json_is_object(cfg)) {
        json_decref(root);
        return eft_cli_error("bench", "%s: no model configuration to count FLOPs from", model);
    }

    int max_b = 0;
    for (int i = 0; i < n_shapes; i++) max_b = shapes[i].b > max_b ? shapes[i].b : max_b;
    char **texts = calloc((size_t)max_b, sizeof *texts);
    for (int i = 0; texts && i < max_b; i++) texts[i] = make_text(i, 600);
    for (int i = 0; texts && i < max_b; i++)
        if (!texts[i]) {
            for (int j = 0; j < max_b; j++) free(texts[j]);
            free(texts);
            texts = NULL;
        }
    if (!texts) {
        json_decref(root);
        return eft_cli_error("bench", "out of memory");
    }

    double peak = 0, triad = 0;
    double load[3];
    eft_cli_loadavg(load);
    if (eft_bench_machine(threads, 0.25, &peak, &triad) != EFT_OK) peak = 0;
    printf("eft %s bench embed — %s, %s weights, %d threads, %.1f s per shape, load average %.2f %.2f %.2f\n",
           eft_version(), model, dtype_name, threads, seconds, load[0], load[1], load[2]);
    printf("machine: peak fma %.1f GFLOPS, stream triad %.1f GB/s (measured now)\n\n", peak, triad);
    fflush(stdout);

    int rc = 0;
    double tokens[MAX_SHAPES] = {0};
    for (int i = 0; i < n_shapes; i++) {
        eft_status st = run_ours(model, &shapes[i], threads, dtype, seconds, texts, &tokens[i]);
        if (st != EFT_OK && st != EFT_ERR_LIMIT) {
            rc = eft_cli_error("bench", "%s", eft_last_error());
            break;
        }
    }
    if (rc == 0 && peer) run_peers(python, model, shapes, n_shapes, threads, seconds, texts, max_b);

    printf("%-10s %12s %12s %8s %12s %8s %12s %8s\n", "shape BxT", "eft sent/s", "eft tok/s", "%peak", "torch sent/s",
           "eft/pt", "onnxrt sent/s", "eft/ort");
    for (int i = 0; rc == 0 && i < n_shapes; i++) {
        shape *s = &shapes[i];
        if (s->ours_sps <= 0) continue;
        char dims[32];
        snprintf(dims, sizeof dims, "%dx%d", s->b, s->t);
        double tok_per_sent = tokens[i] / s->b;
        double gflops = encoder_flops(cfg, (int)lround(tok_per_sent)) * s->ours_sps * 1e-9;
        printf("%-10s %12.1f %12.0f %7.0f%%", dims, s->ours_sps, s->ours_sps * tok_per_sent, peak > 0 ? 100 * gflops / peak : 0);
        if (s->torch_sps > 0) printf(" %12.1f %7.2fx", s->torch_sps, s->ours_sps / s->torch_sps);
        else printf(" %12s %8s", "n/a", "");
        if (s->ort_sps > 0) printf(" %12.1f %7.2fx", s->ort_sps, s->ours_sps / s->ort_sps);
        else printf(" %12s %8s", "n/a", "");
        printf("\n");
        if (s->peer_note[0]) printf("           (%s)\n", s->peer_note);
    }
    if (rc == 0 && !peer) printf("\n(peers not run: add --peer, with a Python that has sentence-transformers, torch and onnxruntime)\n");
    for (int j = 0; j < max_b; j++) free(texts[j]);
    free(texts);
    json_decref(root);
    return rc;
}
