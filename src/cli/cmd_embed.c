/*
 * cmd_embed.c — `eft embed MODEL|PROGRAM [options] [TEXT...]`: sentence embeddings, one vector per
 * input, in input order, as JSON lines on stdout or a NumPy .npy file. Texts come from the
 * arguments, a file (--file, one per line) or stdin; every option maps onto one field of the
 * public embedder API (eft_embedder_params, eft_embed_request), nothing is decided here.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *k_usage =
    "usage: eft embed MODEL|PROGRAM [--pooling MODE[,MODE]] [--prompt-name NAME] [--normalize | --no-normalize]\n"
    "                 [--dimensions N]\n"
    "                 [--truncate left|right] [--seq-len 32,128,512] [--threads N] [--batch N]\n"
    "                 [--dtype f32|f16|bf16|int8|int4|int4-g128|...] [--token-embeddings] [--no-cache]\n"
    "                 [--npy FILE] [--file F] [TEXT...]\n"
    "\n"
    "Embeds each TEXT (else each line of --file F, else each line of stdin), pooled and normalised\n"
    "as the model folder says (sentence-transformers' 1_Pooling and Normalize), and prints one JSON\n"
    "array per line, in input order; --npy FILE writes a float32 [n, D] NumPy array instead.\n"
    "  --pooling MODE   mean (avg), cls, max, lasttoken, mean_sqrt_len_tokens, weightedmean instead of\n"
    "                   the folder's; several separated by commas are concatenated\n"
    "  --normalize / --no-normalize  L2-normalise / do not, whatever the folder says\n"
    "  --dimensions N   keep the first N values (Matryoshka), normalised again when normalising\n"
    "  --truncate       cut inputs over the limit on that side; without it they are an error\n"
    "  --seq-len L,...  compiled sequence lengths (ascending); the longest is the limit\n"
    "  --threads N      default: every online CPU (a program's num_cores for a program)\n"
    "  --prompt-name    put the model's named prompt (config_sentence_transformers.json) first\n"
    "  --dtype D        weights of a model folder: f32 (default), f16, bf16, int8, int4, int8-g64,\n"
    "                   int8-g128, int8-channel, int4-g32|g64|g128, int4-g32|g64|g128-asym\n"
    "  --token-embeddings  no pooling: each input's last hidden states, one JSON array of T token\n"
    "                   vectors per line (sentence-transformers' output_value=\"token_embeddings\");\n"
    "                   with --npy, one input only ([T, C])\n";

/* Reads a whole stream into lines (without their newline, a trailing '\r' dropped); returns the
 * count, -1 on out of memory. *buf_out owns the text the lines point into. */
static long read_lines(FILE *f, char ***out, char **buf_out) {
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf) return -1;
    size_t r;
    while ((r = fread(buf + len, 1, cap - len - 1, f)) > 0) {
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

/* "32,128,512" -> lens (at most cap); returns the count, -1 when malformed. */
static int parse_lens(const char *s, int *lens, int cap) {
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > (1 << 20) || n == cap || (*end && *end != ',')) return -1;
        lens[n++] = (int)v;
        s = *end ? end + 1 : end;
        if (*end && !*s) return -1; /* a trailing comma */
    }
    return n;
}

/* NumPy's .npy format version 1.0: magic, a Python-literal header padded with spaces to a
 * multiple of 64 bytes (what numpy itself writes), then the float32 data little-endian. */
static int write_npy(const char *path, const float *x, size_t n, int64_t d) {
    FILE *f = fopen(path, "wb");
    if (!f) return eft_cli_error("embed", "cannot create %s", path);
    char hdr[256];
    int h = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %lld), }", n,
                     (long long)d);
    int total = 10 + h + 1;
    int pad = (64 - total % 64) % 64;
    memset(hdr + h, ' ', (size_t)pad);
    hdr[h + pad] = '\n';
    int hlen = h + pad + 1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    bool ok = fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, (size_t)hlen, f) == (size_t)hlen;
    for (size_t i = 0; ok && i < n * (size_t)d; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                              (unsigned char)(u >> 24)};
        ok = fwrite(b, 1, 4, f) == 4;
    }
    if (fclose(f) != 0) ok = false;
    return ok ? 0 : eft_cli_error("embed", "writing %s failed", path);
}

int eft_cmd_embed(int argc, char **argv) {
    eft_embedder_params p = eft_embedder_params_default();
    p.n_threads = 0; /* every online CPU, or a program's num_cores */
    eft_embed_request q = eft_embed_request_default();
    const char *model = NULL, *file = NULL, *npy = NULL;
    bool tokens = false;
    char **texts = NULL, *text_buf = NULL;
    int lens[64];
    long n = 0;
    int rc = 0;
    texts = calloc((size_t)argc, sizeof *texts);
    if (!texts) return eft_cli_error("embed", "out of memory");
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_usage, stdout);
            free(texts);
            return 0;
        } else if (!strcmp(a, "--prompt-name") && v) {
            q.prompt_name = argv[++i];
        } else if (!strcmp(a, "--pooling") && v) {
            p.pooling = argv[++i];
        } else if (!strcmp(a, "--normalize")) {
            q.normalize = 1;
        } else if (!strcmp(a, "--no-normalize")) {
            q.normalize = 0;
        } else if (!strcmp(a, "--dtype") && v) {
            ++i;
            p.dtype = eft_weight_dtype_parse(v);
            if (p.dtype == EFT_DTYPE_COUNT)
                rc = eft_cli_error("embed", "--dtype takes f32, f16, bf16, int8, int4, int8-g64, int8-g128, "
                                     "int8-channel, int4-g32|g64|g128 or int4-g32|g64|g128-asym, not '%s'", v);
        } else if (!strcmp(a, "--no-cache")) {
            p.no_cache = true;
        } else if (!strcmp(a, "--token-embeddings")) {
            tokens = true;
        } else if (!strcmp(a, "--truncate") && v) {
            i++;
            if (!strcmp(v, "right")) q.truncate = EFT_TRUNCATE_RIGHT_SIDE;
            else if (!strcmp(v, "left")) q.truncate = EFT_TRUNCATE_LEFT_SIDE;
            else rc = eft_cli_error("embed", "--truncate takes left or right, not '%s'", v);
        } else if (!strcmp(a, "--seq-len") && v) {
            i++;
            int k = parse_lens(v, lens, 64);
            if (k < 1) rc = eft_cli_error("embed", "--seq-len takes up to 64 lengths like 32,128,512, not '%s'", v);
            p.seq_lens = lens;
            p.n_seq_lens = k;
        } else if ((!strcmp(a, "--threads") || !strcmp(a, "--batch") || !strcmp(a, "--dimensions")) && v) {
            char *end;
            long x = strtol(argv[++i], &end, 10);
            if (*end || !*v || x < 1 || x > (1L << 24))
                rc = eft_cli_error("embed", "%s takes a positive number, not '%s'", a, v);
            else if (a[2] == 'd') q.dimensions = x;
            else if (x > 4096) rc = eft_cli_error("embed", "%s takes a number from 1 to 4096", a);
            else if (a[2] == 't') p.n_threads = (int)x;
            else p.max_batch = (int)x;
        } else if (!strcmp(a, "--file") && v) {
            file = argv[++i];
        } else if (!strcmp(a, "--npy") && v) {
            npy = argv[++i];
        } else if (!strcmp(a, "--")) {
            while (++i < argc) texts[n++] = argv[i];
        } else if (a[0] == '-' && a[1]) {
            eft_cli_error("embed", "unknown option or missing value: '%s'\n%s", a, k_usage);
            rc = 2;
        } else if (!model) {
            model = a;
        } else {
            texts[n++] = argv[i];
        }
    }
    if (!rc && !model) {
        fputs(k_usage, stderr);
        rc = 2;
    }
    if (!rc && n > 0 && file) rc = eft_cli_error("embed", "give TEXT arguments or --file, not both");
    if (!rc && n == 0) {
        /* No TEXT: one per line of --file, else of stdin. */
        FILE *f = file ? fopen(file, "rb") : stdin;
        free(texts);
        texts = NULL;
        if (!f) {
            rc = eft_cli_error("embed", "cannot open %s", file);
        } else {
            n = read_lines(f, &texts, &text_buf);
            if (file) fclose(f);
            if (n < 0) rc = eft_cli_error("embed", "out of memory reading %s", file ? file : "stdin");
        }
    }
    if (!rc && tokens && npy && n != 1)
        rc = eft_cli_error("embed", "--token-embeddings with --npy takes one input (inputs have different lengths); "
                                    "%ld given", n);
    if (!rc && tokens && (q.dimensions || q.normalize == 1 || p.pooling))
        rc = eft_cli_error("embed", "--token-embeddings is the output before pooling: --pooling, --normalize and "
                                    "--dimensions do not apply to it");
    eft_embedder *e = NULL;
    float *out = NULL;
    if (!rc && eft_embedder_open(model, &p, &e) != EFT_OK) rc = eft_cli_error("embed", "%s", eft_last_error());
    if (!rc && tokens) {
        /* One input at a time: each answer is [T, C] with its own T. */
        int64_t c = eft_embedder_hidden_size(e);
        out = malloc((size_t)eft_embedder_max_tokens(e) * (size_t)c * sizeof *out);
        if (!out) rc = eft_cli_error("embed", "out of memory");
        for (long i = 0; !rc && i < n; i++) {
            eft_embed_request r = q;
            r.texts = (const char *const *)&texts[i];
            r.n = 1;
            r.normalize = 0;
            size_t t = 0;
            if (eft_embedder_run_tokens(e, &r, out, &t) != EFT_OK) {
                rc = eft_cli_error("embed", "input %ld: %s", i, eft_embedder_errmsg(e));
            } else if (npy) {
                rc = write_npy(npy, out, t, c);
            } else {
                fputc('[', stdout);
                for (size_t j = 0; j < t; j++) {
                    fputs(j ? ", [" : "[", stdout);
                    for (int64_t k = 0; k < c; k++) printf(k ? ", %.9g" : "%.9g", out[j * (size_t)c + (size_t)k]);
                    fputc(']', stdout);
                }
                fputs("]\n", stdout);
            }
        }
        if (!rc && !npy && fflush(stdout) != 0) rc = eft_cli_error("embed", "writing stdout failed");
    } else if (!rc) {
        int64_t d = q.dimensions ? q.dimensions : eft_embedder_dim(e);
        out = malloc((size_t)(n ? n : 1) * (size_t)d * sizeof *out);
        q.texts = (const char *const *)texts;
        q.n = (size_t)n;
        if (!out) rc = eft_cli_error("embed", "out of memory");
        else if (eft_embedder_run(e, &q, out) != EFT_OK) rc = eft_cli_error("embed", "%s", eft_embedder_errmsg(e));
        else if (npy) rc = write_npy(npy, out, (size_t)n, d);
        else {
            /* One JSON array per line; %.9g round-trips a float exactly. */
            for (long i = 0; i < n; i++) {
                fputc('[', stdout);
                for (int64_t k = 0; k < d; k++) printf(k ? ", %.9g" : "%.9g", out[(size_t)i * (size_t)d + (size_t)k]);
                fputs("]\n", stdout);
            }
            if (fflush(stdout) != 0) rc = eft_cli_error("embed", "writing stdout failed");
        }
    }
    free(out);
    eft_embedder_close(e);
    free(texts);
    free(text_buf);
    return rc;
}
