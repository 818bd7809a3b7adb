/*
 * cmd_generate.c — `eft generate MODEL [options]`: one prompt through eft_generator, the generated
 * text alone on stdout (streamed as it comes with --stream) and the figures on stderr at the end:
 * prompt and generated tokens, time to first token, decode and total tokens per second.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char *k_usage =
    "usage: eft generate MODEL [--prompt TEXT | --prompt-file FILE] [--chat] [--max-tokens N]\n"
    "                    [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--repetition-penalty R]\n"
    "                    [--presence-penalty X] [--frequency-penalty X] [--seed S] [--stop TEXT]...\n"
    "                    [--ignore-eos] [--stream] [--num-cores N] [--ctx-len N] [--prefill-seq-len N]\n"
    "                    [--weight-dtype f32|f16|bf16|int8|int4|int4-g64|...] [--kv-dtype f32|f16|int8]\n"
    "                    [--act-dtype f32|int8] [--no-cache] [--quiet]\n"
    "\n"
    "Generates text from the prompt (stdin when neither --prompt nor --prompt-file is given) and prints\n"
    "it on stdout, followed by a newline; figures go to stderr (--quiet: none). --chat renders the\n"
    "prompt as one user message with the model's chat template. Sampling defaults come from the\n"
    "model's generation_config.json, else greedy; --max-tokens defaults to the model's\n"
    "max_new_tokens, else 256. --temperature 0 is greedy (argmax).\n"
    "\n"
    "MODEL may be a program from `eft compile` (its weights are mapped, not converted; its plan is the\n"
    "default). A model's converted weights are cached in $EFT_CACHE_DIR (else $XDG_CACHE_HOME/eft or\n"
    "~/.cache/eft), so the next start with the same --weight-dtype maps them; --no-cache neither\n"
    "reads nor writes that cache. The cache keeps at most $EFT_CACHE_MAX bytes (default 20G; 0: no\n"
    "bound), removing the least recently used programs first.\n"
    "\n"
    "--num-cores defaults to every online CPU (a program's num_cores for a program).\n"
    "\n"
    "--act-dtype int8 quantises the activations of GGUF Q8_0/Q4_0/Q4_1 matrices to int8 (llama.cpp's\n"
    "way: faster decode, close to but not token-for-token transformers); f32, the default, is exact.\n";

typedef struct run_state {
    bool stream;
    char *text;
    size_t len, cap;
    bool oom;
    double t_first, t_end;
    int n_prompt, n_generated;
    eft_finish_reason finish;
} run_state;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int on_event(const eft_gen_event *ev) {
    run_state *r = ev->user;
    /* An EOS sampled first has no event of its own; the final event comes right after it. */
    if ((ev->token >= 0 || ev->n_generated > 0) && r->t_first == 0) r->t_first = now_s();
    if (ev->text_len) {
        if (r->stream) {
            fwrite(ev->text, 1, ev->text_len, stdout);
            fflush(stdout);
        } else if (!r->oom) {
            if (r->len + ev->text_len + 1 > r->cap) {
                size_t cap = (r->len + ev->text_len + 1) * 2;
                char *p = realloc(r->text, cap);
                if (!p) r->oom = true;
                else r->text = p, r->cap = cap;
            }
            if (!r->oom) {
                memcpy(r->text + r->len, ev->text, ev->text_len);
                r->len += ev->text_len;
            }
        }
    }
    if (ev->finish != EFT_FINISH_NONE) {
        r->t_end = now_s();
        r->finish = ev->finish;
        r->n_prompt = ev->n_prompt_tokens;
        r->n_generated = ev->n_generated;
    }
    return 0;
}

static char *read_stream(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0, k;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    while ((k = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (cap - n < 2) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
        }
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* The prompt as a JSON string literal, for the one user message given to the chat template. */
static char *json_message(const char *text) {
    size_t n = strlen(text), k = 0;
    char *out = malloc(n * 6 + 64);
    if (!out) return NULL;
    k += (size_t)sprintf(out, "[{\"role\":\"user\",\"content\":\"");
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\') out[k++] = '\\', out[k++] = (char)*p;
        else if (*p == '\n') out[k++] = '\\', out[k++] = 'n';
        else if (*p == '\r') out[k++] = '\\', out[k++] = 'r';
        else if (*p == '\t') out[k++] = '\\', out[k++] = 't';
        else if (*p < 0x20) k += (size_t)sprintf(out + k, "\\u%04x", *p);
        else out[k++] = (char)*p;
    }
    strcpy(out + k, "\"}]");
    return out;
}

static bool parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_float(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

static bool parse_seed(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *s == '-' || *end || errno) return false;
    *out = v;
    return true;
}

/* Sampling flags seen on the command line; they override the model's defaults. */
typedef struct overrides {
    bool temperature, top_k, top_p, min_p, rep, presence, frequency, seed, max_tokens;
    eft_sampling_params s;
    int max_tokens_v;
} overrides;

int eft_cmd_generate(int argc, char **argv) {
    const char *C = "generate";
    eft_generator_params gp = eft_generator_params_default();
    gp.n_threads = 0; /* every online CPU, or a program's num_cores */
    overrides o = {0};
    const char *model = NULL, *prompt = NULL, *prompt_file = NULL;
    const char *stops[16];
    int n_stop = 0;
    bool chat = false, stream = false, quiet = false, ignore_eos = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long l = 0;
        double d = 0;
        bool takes = true, ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--chat")) takes = false, chat = true;
        else if (!strcmp(a, "--stream")) takes = false, stream = true;
        else if (!strcmp(a, "--quiet")) takes = false, quiet = true;
        else if (!strcmp(a, "--ignore-eos")) takes = false, ignore_eos = true;
        else if (!strcmp(a, "--no-cache")) takes = false, gp.no_cache = true;
        else if (a[0] == '-' && a[1] && !v) return eft_cli_error(C, "%s needs a value (or is unknown; see --help)", a), 2;
        else if (!strcmp(a, "--prompt")) prompt = v;
        else if (!strcmp(a, "--prompt-file")) prompt_file = v;
        else if (!strcmp(a, "--stop")) {
            if (n_stop == 16 || !*v) return eft_cli_error(C, "--stop: at most 16 non-empty strings"), 2;
            stops[n_stop++] = v;
        } else if (!strcmp(a, "--max-tokens")) {
            ok = parse_long(v, 1, 1 << 30, &l);
            o.max_tokens = true, o.max_tokens_v = (int)l;
        } else if (!strcmp(a, "--temperature")) {
            ok = parse_float(v, 0, 1e6, &d);
            o.temperature = true, o.s.temperature = (float)d;
        } else if (!strcmp(a, "--top-k")) {
            ok = parse_long(v, 0, 1 << 30, &l);
            o.top_k = true, o.s.top_k = (int)l;
        } else if (!strcmp(a, "--top-p")) {
            ok = parse_float(v, 0, 1, &d);
            o.top_p = true, o.s.top_p = (float)d;
        } else if (!strcmp(a, "--min-p")) {
            ok = parse_float(v, 0, 1, &d);
            o.min_p = true, o.s.min_p = (float)d;
        } else if (!strcmp(a, "--repetition-penalty")) {
            ok = parse_float(v, 1e-6, 1e6, &d);
            o.rep = true, o.s.repetition_penalty = (float)d;
        } else if (!strcmp(a, "--presence-penalty")) {
            ok = parse_float(v, -1e6, 1e6, &d);
            o.presence = true, o.s.presence_penalty = (float)d;
        } else if (!strcmp(a, "--frequency-penalty")) {
            ok = parse_float(v, -1e6, 1e6, &d);
            o.frequency = true, o.s.frequency_penalty = (float)d;
        } else if (!strcmp(a, "--seed")) {
            ok = parse_seed(v, &o.s.seed);
            o.seed = true;
        } else if (!strcmp(a, "--num-cores")) {
            ok = parse_long(v, 1, 1024, &l);
            gp.n_threads = (int)l;
        } else if (!strcmp(a, "--ctx-len")) {
            ok = parse_long(v, 2, 1 << 24, &l);
            gp.ctx_len = (int)l;
        } else if (!strcmp(a, "--prefill-seq-len")) {
            ok = parse_long(v, 1, 65536, &l);
            gp.prefill_seq_len = (int)l;
        } else if (!strcmp(a, "--weight-dtype")) {
            /* f32, f16, bf16, int8, int4 and the group-quantised names (int4-g64, ...). */
            gp.weight_dtype = eft_weight_dtype_parse(v);
            ok = gp.weight_dtype != EFT_DTYPE_COUNT;
        } else if (!strcmp(a, "--kv-dtype")) {
            ok = true;
            if (!strcmp(v, "f32")) gp.kv_dtype = EFT_DTYPE_F32;
            else if (!strcmp(v, "f16")) gp.kv_dtype = EFT_DTYPE_F16;
            else if (!strcmp(v, "int8")) gp.kv_dtype = EFT_DTYPE_I8;
            else ok = false;
        } else if (!strcmp(a, "--act-dtype")) {
            ok = true;
            if (!strcmp(v, "f32")) gp.activation_dtype = EFT_DTYPE_F32;
            else if (!strcmp(v, "int8")) gp.activation_dtype = EFT_DTYPE_I8;
            else ok = false;
        } else if (a[0] == '-' && a[1]) {
            return eft_cli_error(C, "unknown option '%s'\n%s", a, k_usage), 2;
        } else {
            takes = false;
            if (model) return eft_cli_error(C, "one MODEL only; put the prompt in --prompt (got '%s')", a), 2;
            model = a;
        }
        if (!ok) return eft_cli_error(C, "%s: bad value '%s' (see --help)", a, v), 2;
        if (takes) i++;
    }
    if (!model) {
        fputs(k_usage, stderr);
        return 2;
    }
    if (prompt && prompt_file) return eft_cli_error(C, "give --prompt or --prompt-file, not both"), 2;

    char *owned = NULL;
    size_t plen = 0;
    if (!prompt) {
        FILE *f = prompt_file ? fopen(prompt_file, "rb") : stdin;
        if (!f) return eft_cli_error(C, "%s: %s", prompt_file, strerror(errno));
        owned = read_stream(f, &plen);
        if (f != stdin) fclose(f);
        if (!owned) return eft_cli_error(C, "out of memory reading the prompt");
        prompt = owned;
    }

    int rc = 0;
    eft_generator *g = NULL;
    char *rendered = NULL, *msgs = NULL;
    eft_encoding *enc = NULL;
    run_state r = {.stream = stream};
    if (eft_generator_open(model, &gp, &g) != EFT_OK) {
        rc = eft_cli_error(C, "%s", eft_last_error());
        goto out;
    }
    eft_encode_params ep = eft_encode_params_default();
    const char *text = prompt;
    if (chat) {
        eft_chat_template *t = eft_generator_chat_template(g);
        if (!t) {
            rc = eft_cli_error(C, "--chat: the model has no usable chat template (%s)", eft_generator_errmsg(g));
            goto out;
        }
        if (!(msgs = json_message(prompt))) {
            rc = eft_cli_error(C, "out of memory");
            goto out;
        }
        if (eft_chat_template_render(t, msgs, "{\"add_generation_prompt\": true}", &rendered, NULL) != EFT_OK) {
            rc = eft_cli_error(C, "chat template: %s", eft_chat_template_errmsg(t));
            goto out;
        }
        text = rendered;
        ep.add_special_tokens = false; /* the template writes BOS itself, as transformers assumes */
    }
    if (eft_tokenizer_encode(eft_generator_tokenizer(g), text, strlen(text), NULL, 0, &ep, &enc) != EFT_OK) {
        rc = eft_cli_error(C, "%s", eft_last_error());
        goto out;
    }
    eft_generate_params p = eft_generator_generate_params_default(g);
    if (o.temperature) p.sampling.temperature = o.s.temperature;
    if (o.top_k) p.sampling.top_k = o.s.top_k;
    if (o.top_p) p.sampling.top_p = o.s.top_p;
    if (o.min_p) p.sampling.min_p = o.s.min_p;
    if (o.rep) p.sampling.repetition_penalty = o.s.repetition_penalty;
    if (o.presence) p.sampling.presence_penalty = o.s.presence_penalty;
    if (o.frequency) p.sampling.frequency_penalty = o.s.frequency_penalty;
    if (o.seed) p.sampling.seed = o.s.seed;
    if (o.max_tokens) p.max_tokens = o.max_tokens_v;
    else if (p.max_tokens == 0) p.max_tokens = 256;
    p.stop = stops;
    p.n_stop = n_stop;
    p.ignore_eos = ignore_eos;
    p.callback = on_event;
    p.user = &r;
    double t0 = now_s();
    if (eft_generator_submit(g, eft_encoding_ids(enc), eft_encoding_len(enc), &p, NULL) != EFT_OK) {
        rc = eft_cli_error(C, "%s", eft_generator_errmsg(g));
        goto out;
    }
    while (eft_generator_pending(g) > 0) {
        if (eft_generator_step(g) != EFT_OK) {
            rc = eft_cli_error(C, "%s", eft_generator_errmsg(g));
            goto out;
        }
    }
    if (r.oom) {
        rc = eft_cli_error(C, "out of memory collecting the text");
        goto out;
    }
    if (!stream && r.len) fwrite(r.text, 1, r.len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    if (!quiet) {
        double ttft = r.t_first > 0 ? r.t_first - t0 : 0, total = r.t_end - t0;
        double decode = r.n_generated > 1 && total > ttft ? (r.n_generated - 1) / (total - ttft) : 0;
        fprintf(stderr,
                "prompt tokens %d, generated tokens %d (finish: %s)\n"
                "time to first token %.1f ms (prefill %.1f tok/s), decode %.2f tok/s, total %.2f tok/s "
                "(prompt + generated over %.3f s, %d threads)\n",
                r.n_prompt, r.n_generated, eft_finish_reason_str(r.finish), ttft * 1e3,
                ttft > 0 ? r.n_prompt / ttft : 0, decode, total > 0 ? (r.n_prompt + r.n_generated) / total : 0, total,
                eft_generator_threads(g));
    }
out:
    eft_encoding_free(enc);
    eft_free(rendered);
    free(msgs);
    free(r.text);
    free(owned);
    eft_generator_close(g);
    return rc;
}
