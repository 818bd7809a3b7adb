/*
 * cmd_perplexity.c — `eft perplexity MODEL --file F [--weight-dtype f32,f16,int8,int4]`: what each
 * weight type costs in precision, next to f32 in the same run. For every type it reports the
 * perplexity of the text (teacher forcing, eft_generator_score), the teacher-forced top-1
 * agreement with f32 (how often the most likely next token is f32's), and the greedy agreement
 * (tokens a greedy continuation of the text's start shares with f32's before the first
 * difference). f32 is always run first: it is the baseline.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define MAX_TYPES 8

static const char *k_usage =
    "usage: eft perplexity MODEL --file TEXT [--weight-dtype f32,f16,bf16,int8,int4,int4-g64,...,keep]\n"
    "                        [--act-dtype f32|int8] [--ctx-len N]\n"
    "                        [--threads N] [--greedy N] [--prompt-tokens N]\n"
    "\n"
    "Perplexity of TEXT (at most --ctx-len tokens, default 512) under each weight type, with its\n"
    "agreement with f32 weights: teacher-forced top-1 (the share of positions whose most likely next\n"
    "token is f32's) and greedy (of --greedy tokens, default 32, continuing the first --prompt-tokens\n"
    "tokens of TEXT, default 32, how many equal f32's before the first difference). f32 runs first as\n"
    "the baseline; for a GGUF it is the file's blocks dequantised to f32. --threads defaults to every\n"
    "online CPU.\n";

typedef struct wtype {
    const char *name;
    eft_dtype dtype;
} wtype;

static const wtype k_types[] = {{"f32", EFT_DTYPE_F32},  {"f16", EFT_DTYPE_F16},  {"bf16", EFT_DTYPE_BF16},
                                {"int8", EFT_DTYPE_Q8_0}, {"int4", EFT_DTYPE_Q4_0}, {"keep", EFT_DTYPE_COUNT}};
static const wtype k_gq_types[] = {{"int8-g64", EFT_DTYPE_I8_G64},       {"int8-g128", EFT_DTYPE_I8_G128},
                                   {"int8-channel", EFT_DTYPE_I8_CH},    {"int4-g64", EFT_DTYPE_I4_G64},
                                   {"int4-g128", EFT_DTYPE_I4_G128},     {"int4-g32-asym", EFT_DTYPE_Q4_1},
                                   {"int4-g64-asym", EFT_DTYPE_U4_G64},  {"int4-g128-asym", EFT_DTYPE_U4_G128}};

typedef struct collected {
    int32_t *toks;
    int n, cap;
} collected;

static int on_event(const eft_gen_event *ev) {
    collected *c = ev->user;
    if (ev->token >= 0 && c->n < c->cap) c->toks[c->n++] = ev->token;
    return 0;
}

typedef struct figures {
    double ppl;
    double top1_agree; /* of positions, vs f32 */
    int greedy_same;   /* tokens before the first difference from f32 */
    int n_greedy;
} figures;

/* --act-dtype: the quantised matrices' activations for every run (f32 exact, or int8). */
static eft_dtype g_act_dtype = EFT_DTYPE_F32;

/* Opens the model with weights w and scores ids; top1[n-1], greedy[n_new] are filled. */
static int run_type(const char *model, const wtype *w, int threads, int ctx, const int32_t *ids, int n,
                    int n_prompt, int n_new, int32_t *top1, int32_t *greedy, double *ppl, int *n_greedy) {
    eft_generator_params gp = eft_generator_params_default();
    gp.n_threads = threads;
    gp.ctx_len = ctx;
    gp.weight_dtype = w->dtype;
    gp.activation_dtype = g_act_dtype;
    gp.no_cache = true; /* one-off runs: no programs of every weight type left in the cache */
    eft_generator *g = NULL;
    if (eft_generator_open(model, &gp, &g) != EFT_OK)
        return eft_cli_error("perplexity", "%s weights: %s", w->name, eft_last_error());
    float *lp = malloc(sizeof(float) * (size_t)n);
    int rc = 0;
    if (!lp) rc = eft_cli_error("perplexity", "out of memory");
    else if (eft_generator_score(g, ids, (size_t)n, lp, top1) != EFT_OK)
        rc = eft_cli_error("perplexity", "%s weights: %s", w->name, eft_last_error());
    if (rc == 0) {
        double nll = 0;
        for (int i = 0; i < n - 1; i++) nll -= lp[i];
        *ppl = exp(nll / (n - 1));
        /* Greedy continuation of the text's first n_prompt tokens, EOS ignored. */
        collected c = {greedy, 0, n_new};
        eft_generate_params p = eft_generator_generate_params_default(g);
        p.sampling = (eft_sampling_params){.temperature = 0, .top_p = 1, .repetition_penalty = 1};
        p.ignore_eos = true;
        p.stop = NULL, p.n_stop = 0;
        p.max_tokens = n_new;
        p.callback = on_event;
        p.user = &c;
        uint64_t seq;
        eft_status st = eft_generator_submit(g, ids, (size_t)n_prompt, &p, &seq);
        while (st == EFT_OK && eft_generator_pending(g) > 0) st = eft_generator_step(g);
        if (st != EFT_OK) rc = eft_cli_error("perplexity", "%s weights: %s", w->name, eft_last_error());
        *n_greedy = c.n;
    }
    free(lp);
    eft_generator_close(g);
    return rc;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t k;
    while (buf && (k = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (n + 1 == cap) {
            char *nb = cap < ((size_t)1 << 28) ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[n] = 0;
    *len = n;
    return buf;
}

int eft_cmd_perplexity(int argc, char **argv) {
    const char *model = NULL, *file = NULL;
    const wtype *types[MAX_TYPES] = {&k_types[0], &k_types[1], &k_types[3], &k_types[4]};
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int n_types = 4, threads = online < 1 ? 1 : online > 1024 ? 1024 : (int)online, ctx = 512, n_new = 32, n_prompt = 32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--file") && v) {
            file = argv[++i];
        } else if ((!strcmp(a, "--threads") || !strcmp(a, "--ctx-len") || !strcmp(a, "--greedy") ||
                    !strcmp(a, "--prompt-tokens")) && v) {
            long x = strtol(argv[++i], &end, 10);
            if (*end || end == v || x < 1 || x > (1 << 20)) return eft_cli_error("perplexity", "%s takes a positive number, not '%s'", a, v);
            if (a[2] == 't') threads = (int)(x > 1024 ? 1024 : x);
            else if (a[2] == 'c') ctx = (int)x;
            else if (a[2] == 'g') n_new = (int)x;
            else n_prompt = (int)x;
        } else if (!strcmp(a, "--act-dtype") && v) {
            i++;
            if (!strcmp(v, "f32")) g_act_dtype = EFT_DTYPE_F32;
            else if (!strcmp(v, "int8")) g_act_dtype = EFT_DTYPE_I8;
            else return eft_cli_error("perplexity", "--act-dtype wants f32 or int8, got '%s'", v);
        } else if (!strcmp(a, "--weight-dtype") && v) {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", argv[++i]);
            n_types = 0;
            for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
                const wtype *w = NULL;
                for (size_t j = 0; j < sizeof k_types / sizeof k_types[0]; j++)
                    if (!strcmp(tok, k_types[j].name)) w = &k_types[j];
                /* The group-quantised names, spelled as eft_weight_dtype_label spells them. */
                eft_dtype gt = eft_weight_dtype_parse(tok);
                for (size_t j = 0; !w && gt != EFT_DTYPE_COUNT && j < sizeof k_gq_types / sizeof k_gq_types[0]; j++)
                    if (k_gq_types[j].dtype == gt) w = &k_gq_types[j];
                if (!w || n_types == MAX_TYPES)
                    return eft_cli_error("perplexity", "--weight-dtype wants f32, f16, bf16, int8, int4, int8-g64, "
                                         "int8-g128, int8-channel, int4-g32|g64|g128[-asym] or keep, got '%s'", tok);
                types[n_types++] = w;
            }
        } else if (a[0] == '-' && a[1]) {
            eft_cli_error("perplexity", "unknown option or missing value: '%s'\n%s", a, k_usage);
            return 2;
        } else if (!model) {
            model = a;
        } else {
            return eft_cli_error("perplexity", "one model at a time ('%s' and '%s')", model, a);
        }
    }
    if (!model || !file) {
        fputs(k_usage, stderr);
        return 2;
    }
    size_t len = 0;
    char *text = read_file(file, &len);
    if (!text) return eft_cli_error("perplexity", "%s: %s", file, strerror(errno));
    /* The text through the model's tokenizer (special tokens as the model adds them). */
    eft_tokenizer *tok = NULL;
    eft_encoding *enc = NULL;
    int rc = 0;
    if (eft_tokenizer_open(model, &tok) != EFT_OK || eft_tokenizer_encode(tok, text, len, NULL, 0, NULL, &enc) != EFT_OK) {
        rc = eft_cli_error("perplexity", "%s", eft_last_error());
        goto out;
    }
    int n = (int)eft_encoding_len(enc);
    if (n > ctx) n = ctx;
    if (n < 2 + 1) {
        rc = eft_cli_error("perplexity", "%s has %d tokens; at least 3 are needed", file, n);
        goto out;
    }
    if (n_prompt > n - 1) n_prompt = n - 1;
    if (n_prompt + n_new > ctx) ctx = n_prompt + n_new + 1;
    const int32_t *ids = eft_encoding_ids(enc);
    int32_t *top_ref = malloc(sizeof(int32_t) * (size_t)n), *top = malloc(sizeof(int32_t) * (size_t)n);
    int32_t *gr_ref = malloc(sizeof(int32_t) * (size_t)n_new), *gr = malloc(sizeof(int32_t) * (size_t)n_new);
    if (!top_ref || !top || !gr_ref || !gr) {
        rc = eft_cli_error("perplexity", "out of memory");
        goto out2;
    }
    printf("eft %s perplexity — %s, %s: %d tokens scored, greedy %d tokens after the first %d, %d threads\n\n",
           eft_version(), model, file, n, n_new, n_prompt, threads);
    printf("%-14s %12s %9s %16s %20s\n", "weights", "perplexity", "vs f32", "top-1 vs f32", "greedy same as f32");
    double ppl_ref = 0;
    int n_ref = 0;
    if ((rc = run_type(model, &k_types[0], threads, ctx, ids, n, n_prompt, n_new, top_ref, gr_ref, &ppl_ref, &n_ref)))
        goto out2;
    for (int t = 0; t < n_types; t++) {
        figures f = {0};
        if (types[t]->dtype == EFT_DTYPE_F32) {
            f.ppl = ppl_ref, f.top1_agree = 1, f.greedy_same = n_ref, f.n_greedy = n_ref;
        } else {
            if (run_type(model, types[t], threads, ctx, ids, n, n_prompt, n_new, top, gr, &f.ppl, &f.n_greedy)) {
                printf("%-14s (failed)\n", types[t]->name);
                rc = 1;
                continue;
            }
            int agree = 0;
            for (int i = 0; i < n - 1; i++) agree += top[i] == top_ref[i];
            f.top1_agree = (double)agree / (n - 1);
            while (f.greedy_same < f.n_greedy && f.greedy_same < n_ref && gr[f.greedy_same] == gr_ref[f.greedy_same])
                f.greedy_same++;
        }
        printf("%-14s %12.3f %+8.2f%% %15.1f%% %13d of %-4d\n", types[t]->name, f.ppl, 100 * (f.ppl / ppl_ref - 1),
               100 * f.top1_agree, f.greedy_same, n_ref);
        fflush(stdout);
    }
out2:
    free(top_ref);
    free(top);
    free(gr_ref);
    free(gr);
out:
    eft_encoding_free(enc);
    eft_tokenizer_close(tok);
    free(text);
    return rc;
}
