/*
 * cmd_embed.c — `eft embed MODEL [options] [TEXT...]`: sentence embeddings as JSON, one vector per
 * input, in input order. Texts come from the arguments, or one per line from stdin.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *k_usage =
    "usage: eft embed MODEL [--prompt-name NAME] [--normalize] [--truncate left|right] [--threads N] [--batch N]\n"
    "                 [TEXT...]\n"
    "\n"
    "Prints a JSON array with one embedding per TEXT (or per line of stdin when no TEXT is given),\n"
    "pooled and normalised as the model folder says (sentence-transformers' 1_Pooling and Normalize).\n"
    "An input over the model's length limit is an error unless --truncate is given.\n"
    "--prompt-name puts the model's named prompt (config_sentence_transformers.json) before each text.\n";

/* Reads stdin into lines (without their newline); returns the count, -1 on out of memory. */
static long read_lines(char ***out, char **buf_out) {
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf) return -1;
    size_t r;
    while ((r = fread(buf + len, 1, cap - len - 1, stdin)) > 0) {
        len += r;
        if (cap - len < 2) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return -1;
            }
            buf = nb;
        }
    }
    buf[len] = 0;
    long n = 0;
    for (size_t i = 0; i < len; i++) n += buf[i] == '\n';
    if (len && buf[len - 1] != '\n') n++;
    char **lines = calloc((size_t)n + 1, sizeof *lines);
    if (!lines) {
        free(buf);
        return -1;
    }
    long k = 0;
    for (char *p = buf; k < n; k++) {
        lines[k] = p;
        char *nl = strchr(p, '\n');
        if (!nl) break;
        *nl = 0;
        if (nl > p && nl[-1] == '\r') nl[-1] = 0;
        p = nl + 1;
    }
    *out = lines;
    *buf_out = buf;
    return n;
}

int eft_cmd_embed(int argc, char **argv) {
    eft_embedder_params p = eft_embedder_params_default();
    const char *model = NULL, *prompt_name = NULL;
    char **texts = NULL, *stdin_buf = NULL;
    long n = 0;
    int rc = 0;
    texts = calloc((size_t)argc, sizeof *texts);
    if (!texts) return eft_cli_error("embed", "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_usage, stdout);
            free(texts);
            return 0;
        } else if (!strcmp(a, "--prompt-name") && has) {
            prompt_name = argv[++i];
        } else if (!strcmp(a, "--normalize")) {
            p.normalize = true;
        } else if (!strcmp(a, "--truncate") && has) {
            const char *v = argv[++i];
            if (!strcmp(v, "right")) p.truncate = EFT_TRUNCATE_RIGHT_SIDE;
            else if (!strcmp(v, "left")) p.truncate = EFT_TRUNCATE_LEFT_SIDE;
            else rc = eft_cli_error("embed", "--truncate takes left or right, not '%s'", v);
        } else if ((!strcmp(a, "--threads") || !strcmp(a, "--batch")) && has) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 4096) rc = eft_cli_error("embed", "%s takes a number from 1 to 4096", a);
            else if (a[2] == 't') p.n_threads = (int)v;
            else p.max_batch = (int)v;
        } else if (!strcmp(a, "--")) {
            while (++i < argc) texts[n++] = argv[i];
        } else if (a[0] == '-' && a[1]) {
            rc = eft_cli_error("embed", "unknown option '%s'\n%s", a, k_usage);
            rc = 2;
        } else if (!model) {
            model = a;
        } else {
            texts[n++] = argv[i];
        }
        if (rc) break;
    }
    if (!rc && !model) {
        fputs(k_usage, stderr);
        rc = 2;
    }
    if (!rc && n == 0) {
        free(texts);
        texts = NULL;
        n = read_lines(&texts, &stdin_buf);
        if (n < 0) rc = eft_cli_error("embed", "out of memory reading stdin");
    }
    eft_embedder *e = NULL;
    float *out = NULL;
    if (!rc && eft_embedder_open(model, &p, &e) != EFT_OK) rc = eft_cli_error("embed", "%s", eft_last_error());
    if (!rc) {
        int64_t d = eft_embedder_dim(e);
        out = malloc((size_t)(n ? n : 1) * (size_t)d * sizeof *out);
        if (!out) rc = eft_cli_error("embed", "out of memory");
        else if (eft_embedder_embed_prompt(e, prompt_name, (const char *const *)texts, (size_t)n, out) != EFT_OK)
            rc = eft_cli_error("embed", "%s", eft_embedder_errmsg(e));
        else {
            /* %.9g round-trips a float exactly. */
            fputc('[', stdout);
            for (long i = 0; i < n; i++) {
                fputs(i ? ",\n [" : "[", stdout);
                for (int64_t k = 0; k < d; k++) printf(k ? ", %.9g" : "%.9g", out[(size_t)i * d + k]);
                fputc(']', stdout);
            }
            fputs("]\n", stdout);
        }
    }
    free(out);
    eft_embedder_close(e);
    free(texts);
    free(stdin_buf);
    return rc;
}
