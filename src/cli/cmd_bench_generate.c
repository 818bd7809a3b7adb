/*
 * cmd_bench_generate.c — `eft bench generate MODEL`: prefill tokens/s and decode tokens/s at
 * several batch sizes, per weight type, through the public generator (scheduler, sampler and
 * detokenizer included). Decode is quoted against the machine's bandwidth ceiling measured in the
 * same run (triad GB/s over the bytes of weights one step reads) and, with --peer, against
 * transformers on PyTorch on the same model and threads (bench/peer_generate.py). --rounds N
 * repeats the whole measurement (the peer, then every weight type), quotes each figure's median
 * over the rounds and each ratio to the peer as the median of the rounds' own ratios: on a shared
 * machine whose speed drifts from minute to minute, a ratio of two figures measured seconds apart
 * is the one that means something.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define MAX_DTYPES 6
#define MAX_BATCHES 8
#define MAX_ROUNDS 20

/* --act-dtype: the quantised matrices' activations for every run (f32 exact, or int8). */
static eft_dtype g_act_dtype = EFT_DTYPE_F32;
/* --kv-dtype: the KV cache's element type for every run (the peer's stays float32). */
static eft_dtype g_kv_dtype = EFT_DTYPE_F32;
/* --median: decode tokens/s from the median step time instead of tokens over the whole time. */
static bool g_median = false;
/* --profile: after each decode measurement, where the steps' time went (eft_generator_profile). */
static bool g_profile = false;

static int usage(void) {
    return eft_cli_error("bench", "usage: eft bench generate MODEL [--threads N] [--seconds S] [--prefill 512] "
                                  "[--decode 1,8] [--context 128] [--weight-dtype keep,f32,f16,bf16,int8,int4] [--act-dtype f32|int8] "
                                  "[--kv-dtype f32|f16|int8] [--median] [--profile] [--rounds N] [--peer] [--python PATH]");
}

typedef struct wtype {
    const char *name;
    eft_dtype dtype;
    double bytes_per_weight; /* 0: what the file stores */
} wtype;

static const wtype k_wtypes[] = {
    {"keep", EFT_DTYPE_COUNT, 0},      {"f32", EFT_DTYPE_F32, 4.0},         {"f16", EFT_DTYPE_F16, 2.0},
    {"bf16", EFT_DTYPE_BF16, 2.0},     {"int8", EFT_DTYPE_Q8_0, 34.0 / 32}, {"int4", EFT_DTYPE_Q4_0, 18.0 / 32},
};

static const wtype *find_wtype(const char *s) {
    for (size_t i = 0; i < sizeof k_wtypes / sizeof k_wtypes[0]; i++)
        if (!strcmp(s, k_wtypes[i].name)) return &k_wtypes[i];
    return NULL;
}

/* Counts tokens as the callbacks see them. */
typedef struct counter {
    long tokens;
    long first_tokens; /* sequences that produced their first token */
} counter;

static int on_event(const eft_gen_event *ev) {
    counter *c = ev->user;
    if (ev->token >= 0) {
        c->tokens++;
        if (ev->n_generated == 1) c->first_tokens++;
    }
    return 0;
}

static void fill_prompt(int32_t *ids, int n, int vocab, uint32_t seed) {
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        /* Skip the lowest ids, where the special tokens usually are. */
        ids[i] = 256 + (int32_t)((seed >> 8) % (uint32_t)(vocab > 512 ? vocab - 256 : 1));
        if (ids[i] >= vocab) ids[i] = vocab - 1;
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct result {
    double prefill_tps;
    double decode_tps[MAX_BATCHES];
} result;

/* "l12.gate" -> "gate": the layer prefix off, so the layers' ops add up by role. */
static const char *role_of(const char *name) {
    if (name[0] == 'l' && name[1] >= '0' && name[1] <= '9') {
        const char *p = name + 1;
        while (*p >= '0' && *p <= '9') p++;
        if (*p == '.') return p + 1;
    }
    return name;
}

typedef struct prof_row {
    char key[96];
    double s;
    long calls;
} prof_row;

static int cmp_prof(const void *a, const void *b) {
    double x = ((const prof_row *)a)->s, y = ((const prof_row *)b)->s;
    return x > y ? -1 : x < y;
}

/* The decode profile of `steps` steps, by operation and role (layers added up), largest first. */
static void print_profile(eft_generator *g, const char *wname, int b, int steps, double step_s) {
    int n = eft_generator_profile(g, NULL, 0);
    eft_op_time *ops = n > 0 ? malloc(sizeof *ops * (size_t)n) : NULL;
    prof_row *rows = n > 0 ? calloc((size_t)n, sizeof *rows) : NULL;
    if (!ops || !rows || steps < 1) {
        free(ops);
        free(rows);
        return;
    }
    n = eft_generator_profile(g, ops, n);
    int nr = 0;
    double total = 0;
    for (int i = 0; i < n; i++) {
        if (ops[i].calls == 0) continue; /* not run, or timed with its group's first op */
        char key[96];
        int len = snprintf(key, sizeof key, "%-16s %s", ops[i].op, role_of(ops[i].name));
        /* A group's time is on its first op: name the others with it. */
        for (int k = 1; k < ops[i].group && i + k < n && len > 0 && len < (int)sizeof key; k++)
            len += snprintf(key + len, sizeof key - (size_t)len, "+%s", role_of(ops[i + k].name));
        int r = 0;
        while (r < nr && strcmp(rows[r].key, key)) r++;
        if (r == nr) snprintf(rows[nr++].key, sizeof rows[0].key, "%s", key);
        rows[r].s += ops[i].seconds;
        rows[r].calls += ops[i].calls;
        total += ops[i].seconds;
    }
    qsort(rows, (size_t)nr, sizeof *rows, cmp_prof);
    printf("profile: %s, decode b=%d, %d steps of %.2f ms; the graph %.2f ms a step, the rest (sampling, "
           "scheduling) %.2f ms\n",
           wname, b, steps, 1e3 * step_s, 1e3 * total / steps, 1e3 * (step_s - total / steps));
    for (int r = 0; r < nr; r++)
        if (rows[r].s / total >= 0.002)
            printf("  %-40s %8.3f ms/step %5.1f %%  %4ld calls/step\n", rows[r].key, 1e3 * rows[r].s / steps,
                   100 * rows[r].s / total, rows[r].calls / steps);
    fflush(stdout);
    free(ops);
    free(rows);
}

static eft_status run_dtype(const char *model, const wtype *w, int threads, double seconds, int prefill,
                            const int *batches, int n_batches, int context, result *r) {
    int max_b = 1;
    for (int i = 0; i < n_batches; i++) max_b = batches[i] > max_b ? batches[i] : max_b;
    eft_generator_params gp = eft_generator_params_default();
    gp.n_threads = threads;
    gp.full_batch_size = max_b;
    gp.ctx_len = (prefill > context ? prefill : context) + 4096 / 16;
    gp.prefill_seq_len = prefill < 128 ? prefill : 128;
    gp.weight_dtype = w->dtype;
    gp.activation_dtype = g_act_dtype;
    gp.kv_dtype = g_kv_dtype;
    gp.profile = g_profile;
    gp.no_cache = true; /* throughput only: no program of every weight type written to the cache */
    eft_generator *g = NULL;
    eft_status st = eft_generator_open(model, &gp, &g);
    if (st != EFT_OK) return st;
    int vocab = (int)eft_tokenizer_vocab_size(eft_generator_tokenizer(g));
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(prefill > context ? prefill : context));
    if (!ids) {
        eft_generator_close(g);
        return EFT_ERR_OUT_OF_MEMORY;
    }
    counter c = {0};
    eft_generate_params p = eft_generator_generate_params_default(g);
    p.sampling = (eft_sampling_params){.temperature = 0, .top_p = 1, .repetition_penalty = 1};
    p.ignore_eos = true;
    p.stop = NULL, p.n_stop = 0;
    p.callback = on_event;
    p.user = &c;

    /* Prefill: the time to the first token of one prompt, best of the repetitions. */
    double best = 1e30, start = eft_cli_now_s();
    for (int rep = 0; st == EFT_OK && (rep < 2 || eft_cli_now_s() - start < seconds); rep++) {
        fill_prompt(ids, prefill, vocab, 17u + (uint32_t)rep);
        p.max_tokens = 1;
        uint64_t seq;
        double t0 = eft_cli_now_s();
        st = eft_generator_submit(g, ids, (size_t)prefill, &p, &seq);
        while (st == EFT_OK && eft_generator_pending(g) > 0) st = eft_generator_step(g);
        double t = eft_cli_now_s() - t0;
        if (rep > 0 && t < best) best = t; /* repetition 0 warms up */
    }
    if (st == EFT_OK) r->prefill_tps = prefill / best;

    /* Decode: b sequences with `context` prompt tokens each; after every one has its first
     * token, time pure decode steps. */
    for (int bi = 0; st == EFT_OK && bi < n_batches; bi++) {
        int b = batches[bi];
        uint64_t seqs[MAX_BATCHES * 64];
        p.max_tokens = 1 << 20;
        c.first_tokens = 0;
        for (int s = 0; st == EFT_OK && s < b; s++) {
            fill_prompt(ids, context, vocab, 1000u + (uint32_t)s);
            st = eft_generator_submit(g, ids, (size_t)context, &p, &seqs[s]);
        }
        while (st == EFT_OK && c.first_tokens < b) st = eft_generator_step(g);
        long tok0 = c.tokens;
        double t0 = eft_cli_now_s();
        int steps = 0, max_steps = gp.ctx_len - context - 2;
        eft_generator_profile_reset(g);
        double *step_s = g_median ? malloc(sizeof(double) * (size_t)(max_steps > 0 ? max_steps : 1)) : NULL;
        if (g_median && !step_s) st = EFT_ERR_OUT_OF_MEMORY;
        while (st == EFT_OK && (steps < 4 || eft_cli_now_s() - t0 < seconds / 2) && steps < max_steps) {
            double ts = eft_cli_now_s();
            st = eft_generator_step(g);
            if (step_s) step_s[steps] = eft_cli_now_s() - ts;
            steps++;
        }
        double t = eft_cli_now_s() - t0;
        if (st == EFT_OK) r->decode_tps[bi] = (double)(c.tokens - tok0) / t;
        if (st == EFT_OK && step_s && steps > 0) {
            /* Every step of this loop decodes one token of each of the b sequences. */
            qsort(step_s, (size_t)steps, sizeof(double), cmp_double);
            double mid = steps % 2 ? step_s[steps / 2] : 0.5 * (step_s[steps / 2 - 1] + step_s[steps / 2]);
            r->decode_tps[bi] = mid > 0 ? (double)(c.tokens - tok0) / steps / mid : 0;
        }
        free(step_s);
        if (st == EFT_OK && g_profile) print_profile(g, w->name, b, steps, t / (steps > 0 ? steps : 1));
        for (int s = 0; s < b; s++) eft_generator_cancel(g, seqs[s]);
        while (st == EFT_OK && eft_generator_pending(g) > 0) st = eft_generator_step(g);
    }
    if (st != EFT_OK) fprintf(stderr, "eft bench: %s\n", eft_generator_errmsg(g));
    free(ids);
    eft_generator_close(g);
    return st;
}

/* The peer's figures, by what and batch. */
typedef struct peer_figs {
    double prefill_tps;
    double decode_tps[MAX_BATCHES];
    char note[256];
} peer_figs;

typedef struct peer_ctx {
    peer_figs *pf;
    const int *batches;
    int n_batches;
} peer_ctx;

/* One figure of bench/peer_generate.py: {"what": "prefill" | "decode", "batch", "tokens_per_s"}
 * or {"error"}. */
static void on_peer_line(json_t *j, void *user) {
    peer_ctx *x = user;
    const char *what = json_string_value(json_object_get(j, "what"));
    const char *error = json_string_value(json_object_get(j, "error"));
    int b = (int)json_integer_value(json_object_get(j, "batch"));
    double tps = json_number_value(json_object_get(j, "tokens_per_s"));
    if (error) snprintf(x->pf->note, sizeof x->pf->note, "torch: %s", error);
    else if (what && !strcmp(what, "prefill")) x->pf->prefill_tps = tps;
    else if (what && !strcmp(what, "decode"))
        for (int i = 0; i < x->n_batches; i++)
            if (x->batches[i] == b) x->pf->decode_tps[i] = tps;
}

static void run_peer(const char *python, const char *model, int threads, double seconds, int prefill, const int *batches,
                     int n_batches, int context, peer_figs *pf) {
    char script[4096], cmd[12288], dec[128] = "", qpy[1024], qscript[4200], qmodel[4200];
    if (!eft_cli_find_peer_script("peer_generate.py", script, sizeof script)) {
        snprintf(pf->note, sizeof pf->note, "bench/peer_generate.py not found");
        return;
    }
    if (!eft_cli_shell_quote(qpy, sizeof qpy, python) || !eft_cli_shell_quote(qscript, sizeof qscript, script) ||
        !eft_cli_shell_quote(qmodel, sizeof qmodel, model))
        return;
    for (int i = 0; i < n_batches; i++) {
        size_t l = strlen(dec);
        snprintf(dec + l, sizeof dec - l, "%s%d", i ? "," : "", batches[i]);
    }
    snprintf(cmd, sizeof cmd, "TQDM_DISABLE=1 %s %s --model %s --threads %d --seconds %g --prefill %d --decode %s --context %d",
             qpy, qscript, qmodel, threads, seconds, prefill, dec, context);
    int rc = eft_cli_run_peer(cmd, on_peer_line, &(peer_ctx){pf, batches, n_batches});
    if (rc != 0 && !pf->note[0]) snprintf(pf->note, sizeof pf->note, "the peer did not run (%s exited with %d)", python, rc);
}

/* The median of v[0 .. n) (sorted in place); 0 for none. */
static double median_of(double *v, int n) {
    if (n <= 0) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static bool parse_list(const char *s, int *out, int max, int *n, int lo, int hi) {
    *n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < lo || v > hi || *n == max) return false;
        out[(*n)++] = (int)v;
        if (*end == ',') end++;
        else if (*end) return false;
        s = end;
    }
    return *n > 0;
}

int eft_cmd_bench_generate(int argc, char **argv) {
    const char *model = NULL, *python = NULL;
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), prefill = 512, context = 128;
    int batches[MAX_BATCHES] = {1, 8}, n_batches = 2;
    const wtype *dtypes[MAX_DTYPES] = {&k_wtypes[0]};
    int n_dtypes = 1;
    double seconds = 3.0;
    int rounds = 1;
    bool peer = false;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1024) return eft_cli_error("bench", "--threads wants 1..1024, got '%s'", argv[i]);
            threads = (int)v;
        } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            double v = strtod(argv[++i], &end);
            if (*end || !(v > 0 && v <= 600)) return eft_cli_error("bench", "--seconds wants (0, 600], got '%s'", argv[i]);
            seconds = v;
        } else if (!strcmp(argv[i], "--prefill") && i + 1 < argc) {
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 32768) return eft_cli_error("bench", "--prefill wants 1..32768, got '%s'", argv[i]);
            prefill = (int)v;
        } else if (!strcmp(argv[i], "--context") && i + 1 < argc) {
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 32768) return eft_cli_error("bench", "--context wants 1..32768, got '%s'", argv[i]);
            context = (int)v;
        } else if (!strcmp(argv[i], "--decode") && i + 1 < argc) {
            if (!parse_list(argv[++i], batches, MAX_BATCHES, &n_batches, 1, 64))
                return eft_cli_error("bench", "--decode wants batch sizes 1..64 separated by commas, got '%s'", argv[i]);
        } else if (!strcmp(argv[i], "--weight-dtype") && i + 1 < argc) {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", argv[++i]);
            n_dtypes = 0;
            for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
                const wtype *w = find_wtype(tok);
                if (!w || n_dtypes == MAX_DTYPES)
                    return eft_cli_error("bench", "--weight-dtype wants keep, f32, f16, bf16, int8 or int4, got '%s'", tok);
                dtypes[n_dtypes++] = w;
            }
        } else if (!strcmp(argv[i], "--act-dtype") && i + 1 < argc) {
            const char *v = argv[++i];
            if (!strcmp(v, "f32")) g_act_dtype = EFT_DTYPE_F32;
            else if (!strcmp(v, "int8")) g_act_dtype = EFT_DTYPE_I8;
            else return eft_cli_error("bench", "--act-dtype wants f32 or int8, got '%s'", v);
        } else if (!strcmp(argv[i], "--kv-dtype") && i + 1 < argc) {
            const char *v = argv[++i];
            if (!strcmp(v, "f32")) g_kv_dtype = EFT_DTYPE_F32;
            else if (!strcmp(v, "f16")) g_kv_dtype = EFT_DTYPE_F16;
            else if (!strcmp(v, "int8")) g_kv_dtype = EFT_DTYPE_I8;
            else return eft_cli_error("bench", "--kv-dtype wants f32, f16 or int8, got '%s'", v);
        } else if (!strcmp(argv[i], "--median")) {
            g_median = true;
        } else if (!strcmp(argv[i], "--profile")) {
            g_profile = true;
        } else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > MAX_ROUNDS)
                return eft_cli_error("bench", "--rounds wants 1..%d, got '%s'", MAX_ROUNDS, argv[i]);
            rounds = (int)v;
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
    if (!model || n_dtypes == 0) return usage();
    python = eft_cli_peer_python(python);

    /* Weights read per decode step: every parameter except the embedding table (gathered, not
     * read whole) — unless the output projection is tied to it, in which case it is read once. */
    eft_model *m = NULL;
    if (eft_model_open(model, NULL, &m) != EFT_OK) return eft_cli_error("bench", "%s", eft_last_error());
    char *info = eft_model_info_json(m);
    eft_model_close(m);
    json_error_t jerr;
    json_t *root = info ? json_loads(info, 0, &jerr) : NULL;
    eft_free(info);
    json_t *cfg = json_object_get(root, "config"), *tens = json_object_get(root, "tensors");
    double params = (double)json_integer_value(json_object_get(tens, "parameters"));
    double stored_bytes = (double)json_integer_value(json_object_get(tens, "bytes"));
    double c = (double)json_integer_value(json_object_get(cfg, "hidden_size"));
    double v = (double)json_integer_value(json_object_get(cfg, "vocab_size"));
    bool tied = json_is_true(json_object_get(cfg, "tie_word_embeddings"));
    double read_params = tied ? params : params - c * v;
    json_decref(root);

    double peak = 0, triad = 0;
    double load[3];
    eft_cli_loadavg(load);
    if (eft_bench_machine(threads, 0.25, &peak, &triad) != EFT_OK) triad = 0;
    printf("eft %s bench generate — %s, %d threads, prefill %d tokens, decode with %d cached tokens, load average "
           "%.2f %.2f %.2f\n",
           eft_version(), model, threads, prefill, context, load[0], load[1], load[2]);
    printf("machine: peak fma %.1f GFLOPS, stream triad %.1f GB/s (measured now); %.0fM parameters\n", peak, triad,
           params / 1e6);
    printf("activations %s, KV cache %s\n", g_act_dtype == EFT_DTYPE_I8 ? "int8" : "f32 (exact)",
           g_kv_dtype == EFT_DTYPE_F16 ? "f16" : g_kv_dtype == EFT_DTYPE_I8 ? "int8" : "f32");
    printf("%s\n\n", g_median ? "decode tok/s: tokens per step over the median step time (--median; the peer's are means)"
                              : "decode tok/s: tokens over the whole decode time");
    fflush(stdout);

    /* Round by round: the peer, then every weight type; the figures of round r side by side. */
    static peer_figs pf[MAX_ROUNDS];
    static result res[MAX_DTYPES][MAX_ROUNDS];
    static bool failed[MAX_DTYPES];
    memset(pf, 0, sizeof pf);
    memset(res, 0, sizeof res);
    memset(failed, 0, sizeof failed);
    int rc = 0;
    for (int r = 0; r < rounds; r++) {
        if (peer) run_peer(python, model, threads, seconds, prefill, batches, n_batches, context, &pf[r]);
        for (int d = 0; d < n_dtypes; d++) {
            if (failed[d]) continue;
            eft_status st = run_dtype(model, dtypes[d], threads, seconds, prefill, batches, n_batches, context, &res[d][r]);
            if (st != EFT_OK) {
                printf("%-7s (failed: %s)\n", dtypes[d]->name, eft_last_error());
                failed[d] = true;
                rc = 1;
            }
        }
        if (rounds > 1) {
            fprintf(stderr, "eft bench: round %d of %d done\n", r + 1, rounds);
            fflush(stderr);
        }
    }

    if (rounds > 1) printf("medians of %d rounds\n", rounds);
    printf("%-7s %14s", "weights", "prefill tok/s");
    for (int i = 0; i < n_batches; i++) printf("   decode b=%-2d tok/s %%ceil", batches[i]);
    printf("\n");
    double fig[MAX_ROUNDS];
    for (int d = 0; d < n_dtypes; d++) {
        if (failed[d]) continue;
        /* Ceiling at batch 1: one full read of the weights per step. */
        double bytes = dtypes[d]->bytes_per_weight > 0 ? read_params * dtypes[d]->bytes_per_weight
                                                       : stored_bytes * (read_params / (params > 0 ? params : 1));
        double ceil_tps = bytes > 0 ? triad * 1e9 / bytes : 0;
        for (int r = 0; r < rounds; r++) fig[r] = res[d][r].prefill_tps;
        printf("%-7s %14.1f", dtypes[d]->name, median_of(fig, rounds));
        for (int i = 0; i < n_batches; i++) {
            for (int r = 0; r < rounds; r++) fig[r] = res[d][r].decode_tps[i];
            double tps = median_of(fig, rounds);
            printf("   %16.1f %4.0f%%", tps, ceil_tps > 0 ? 100 * tps / (ceil_tps * batches[i]) : 0);
        }
        printf("\n");
    }
    if (peer) {
        for (int r = 0; r < rounds; r++) fig[r] = pf[r].prefill_tps;
        printf("%-7s %14.1f", "torch", median_of(fig, rounds));
        for (int i = 0; i < n_batches; i++) {
            for (int r = 0; r < rounds; r++) fig[r] = pf[r].decode_tps[i];
            printf("   %16.1f %5s", median_of(fig, rounds), "");
        }
        printf("   (transformers, float32)\n");
        for (int r = 0; r < rounds; r++)
            if (pf[r].note[0]) {
                printf("        (%s)\n", pf[r].note);
                break;
            }
        /* Each round's own ratio, then their median and range. */
        printf("\nx torch%s\n%-7s %24s", rounds > 1 ? ": the median of the rounds' own ratios (min-max)" : "", "weights",
               "prefill");
        for (int i = 0; i < n_batches; i++) {
            char h[32];
            snprintf(h, sizeof h, "decode b=%d", batches[i]);
            printf("   %24s", h);
        }
        printf("\n");
        for (int d = 0; d < n_dtypes; d++) {
            if (failed[d]) continue;
            printf("%-7s", dtypes[d]->name);
            for (int i = -1; i < n_batches; i++) {
                int n = 0;
                for (int r = 0; r < rounds; r++) {
                    double e = i < 0 ? res[d][r].prefill_tps : res[d][r].decode_tps[i];
                    double t = i < 0 ? pf[r].prefill_tps : pf[r].decode_tps[i];
                    if (e > 0 && t > 0) fig[n++] = e / t;
                }
                char cell[64] = "-";
                if (n > 0) {
                    double lo = fig[0], hi = fig[0];
                    for (int k = 1; k < n; k++) {
                        if (fig[k] < lo) lo = fig[k];
                        if (fig[k] > hi) hi = fig[k];
                    }
                    if (rounds > 1) snprintf(cell, sizeof cell, "%.2fx (%.2f-%.2f)", median_of(fig, n), lo, hi);
                    else snprintf(cell, sizeof cell, "%.2fx", fig[0]);
                }
                if (i < 0) printf(" %24s", cell);
                else printf("   %24s", cell);
            }
            printf("\n");
        }
    } else {
        printf("\n(peer not run: add --peer, with a Python that has torch and transformers)\n");
    }
    printf("\n%%ceil: decode tokens/s over batch x (triad bandwidth / bytes of weights one step reads), the\n"
           "memory-bound ceiling (KV cache reads and compute not counted, so 100%% is out of reach).\n");
    return rc;
}
