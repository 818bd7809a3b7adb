/*
 * cmd_bench_tokenize.c — `eft bench tokenize MODEL`: eft's encode throughput (MB/s, tokens/s) on one
 * text of 1 KB, 100 KB and 1 MB (one thread; the 1 MB / 100 KB time ratio shows whether encoding is
 * linear in the input) and on a batch of many short texts spread over N threads, next to Hugging
 * Face `tokenizers` on the same text in the same run when --peer asks for it (bench/peer_tokenizers.py).
 *
 * The text is generated deterministically (English prose, source code, numbers, and one line in
 * ten from other scripts and emoji), or read with --file. Each figure is the median repetition
 * within --seconds, the way the peer measures itself; the first line prints the load average,
 * because figures taken on a loaded machine only compare with figures taken in the same run.
 */
#define _GNU_SOURCE
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static const size_t SIZES[3] = {1024, 100 * 1024, 1024 * 1024};
#define BATCH_TEXT_BYTES 200 /* a short text of the batch, cut at a character boundary */

static int usage(void) {
    return eft_cli_error("bench", "usage: eft bench tokenize MODEL [--file TEXT] [--threads N] [--seconds S] "
                                  "[--peer] [--python PATH]");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---------------------------------------------------------------------------------------------
 * Text
 * ------------------------------------------------------------------------------------------- */

static const char *const WORDS[] = {
    "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on",
    "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they",
    "you", "were", "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when",
    "will", "would", "who", "so", "no", "model", "tokenizer", "inference", "transformer", "attention",
    "embedding", "generation", "throughput", "latency", "government", "international", "development",
    "understanding", "characteristics", "responsibility", "Wednesday", "London", "Einstein", "GPU",
    "it's", "don't", "they're", "we'll", "I've", "naïve", "café", "résumé", "coöperate", "straße",
};
static const char *const CODE[] = {
    "def forward(self, x, mask=None):\n    return self.proj(torch.softmax(x @ self.w.T, dim=-1))\n",
    "for (size_t i = 0; i < n; i++) { out[i] = a[i] * b[i] + c; }  // fused multiply-add\n",
    "if (status != EFT_OK) {\n\treturn eft__fail(err, EFT_ERR_FORMAT, \"bad header at %zu\", off);\n}\n",
    "const result = await fetch(`/v1/embeddings?model=${name}`, {method: 'POST', body});\n",
    "SELECT id, name, COUNT(*) AS n FROM users WHERE created_at > '2026-01-01' GROUP BY 1, 2;\n",
    "<div class=\"row\"><a href=\"https://example.com/path?q=1&lang=en\">link</a></div>\n",
};
static const char *const OTHER[] = {
    "東京は日本の首都であり、世界最大級の都市圏を形成している。",
    "人工智能正在改变我们的生活方式和工作方式。",
    "한국어 텍스트는 음절 단위로 모아 씁니다.",
    "اللغة العربية تكتب من اليمين إلى اليسار.",
    "हिंदी भारत की सबसे अधिक बोली जाने वाली भाषा है।",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Emoji 😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ and more 🎉🎉🎉",
    "Ångström, Œuvre, façade, ﬁnance, Ⅻ, ½, ＡＢＣ — «quotes» and “smart” ones…",
};

static uint64_t rng_next(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

/* Appends s to buf (cap bytes, len used), stopping at cap. */
static void put(char *buf, size_t cap, size_t *len, const char *s) {
    size_t n = strlen(s);
    if (n > cap - *len) n = cap - *len;
    memcpy(buf + *len, s, n);
    *len += n;
}

/* n bytes of deterministic mixed text (UTF-8, cut back to a character boundary). */
static char *make_text(size_t n, size_t *out_len) {
    char *buf = malloc(n + 1);
    if (!buf) return NULL;
    uint64_t s = 0x5eed;
    size_t len = 0;
    char word[64];
    while (len < n) {
        uint64_t kind = rng_next(&s) % 20;
        if (kind < 2) {
            put(buf, n, &len, CODE[rng_next(&s) % (sizeof CODE / sizeof *CODE)]);
        } else if (kind < 4) {
            put(buf, n, &len, OTHER[rng_next(&s) % (sizeof OTHER / sizeof *OTHER)]);
            put(buf, n, &len, "\n");
        } else {
            int words = 8 + (int)(rng_next(&s) % 20);
            for (int w = 0; w < words && len < n; w++) {
                const char *x = WORDS[rng_next(&s) % (sizeof WORDS / sizeof *WORDS)];
                uint64_t r = rng_next(&s) % 40;
                if (r == 0) snprintf(word, sizeof word, "%llu", (unsigned long long)(rng_next(&s) % 100000));
                else if (r == 1) snprintf(word, sizeof word, "%.2f", (double)(rng_next(&s) % 10000) / 100.0);
                else if (w == 0) snprintf(word, sizeof word, "%c%s", x[0] >= 'a' && x[0] <= 'z' ? x[0] - 32 : x[0], x + 1);
                else snprintf(word, sizeof word, "%s", x);
                if (w) put(buf, n, &len, rng_next(&s) % 12 == 0 ? ", " : " ");
                put(buf, n, &len, word);
            }
            put(buf, n, &len, rng_next(&s) % 4 ? ". " : ".\n\n");
        }
    }
    /* put() may have cut the last character: drop an incomplete one */
    size_t cut = len;
    while (cut > 0 && ((unsigned char)buf[cut - 1] & 0xC0) == 0x80) cut--;
    if (cut > 0 && (unsigned char)buf[cut - 1] >= 0xC0) {
        unsigned char lead = (unsigned char)buf[cut - 1];
        size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
        if (len - (cut - 1) < need) len = cut - 1;
    }
    buf[len] = 0;
    *out_len = len;
    return buf;
}

/* The first n bytes of the file, repeated when the file is shorter, cut to a character boundary. */
static char *file_text(const char *path, size_t n, size_t *out_len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(n + 1);
    size_t len = 0;
    while (buf && len < n) {
        size_t got = fread(buf + len, 1, n - len, f);
        if (got == 0) {
            if (len == 0) break;
            rewind(f);
        }
        len += got;
    }
    fclose(f);
    if (!buf || len == 0) {
        free(buf);
        return NULL;
    }
    while (len > 0 && ((unsigned char)buf[len - 1] & 0xC0) == 0x80) len--;
    if (len > 0 && (unsigned char)buf[len - 1] >= 0xC0) len--;
    buf[len] = 0;
    *out_len = len;
    return buf;
}

/* ---------------------------------------------------------------------------------------------
 * Measurements
 * ------------------------------------------------------------------------------------------- */

/* Encodes one text; the number of tokens, or -1 with eft_last_error() set. */
static long encode_count(const eft_tokenizer *t, const char *s, size_t n) {
    eft_encoding *e = NULL;
    if (eft_tokenizer_encode(t, s, n, NULL, 0, NULL, &e) != EFT_OK) return -1;
    long k = (long)eft_encoding_len(e);
    eft_encoding_free(e);
    return k;
}

typedef struct batch {
    const eft_tokenizer *t;
    const char *text;
    const size_t *off; /* n + 1 offsets into text */
    size_t n;
    int threads;
    long tokens; /* filled by the workers */
    int failed;
    pthread_mutex_t mu;
} batch;

typedef struct worker {
    batch *b;
    int index;
} worker;

static void *batch_worker(void *arg) {
    worker *w = arg;
    batch *b = w->b;
    long tokens = 0;
    int failed = 0;
    /* A static share each: the texts are alike in size, and no counter is shared in the hot loop. */
    for (size_t i = (size_t)w->index; i < b->n; i += (size_t)b->threads) {
        long k = encode_count(b->t, b->text + b->off[i], b->off[i + 1] - b->off[i]);
        if (k < 0) failed = 1;
        else tokens += k;
    }
    pthread_mutex_lock(&b->mu);
    b->tokens += tokens;
    b->failed |= failed;
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* One pass over the batch with b->threads threads; seconds, or -1 on failure. */
static double batch_run(batch *b) {
    pthread_t th[256];
    worker ws[256];
    b->tokens = 0;
    b->failed = 0;
    double t0 = eft_cli_now_s();
    int started = 0;
    for (int i = 0; i < b->threads; i++) {
        ws[i] = (worker){b, i};
        if (i == 0) continue;
        if (pthread_create(&th[i], NULL, batch_worker, &ws[i]) != 0) break;
        started = i;
    }
    if (started != b->threads - 1) {
        for (int i = 1; i <= started; i++) pthread_join(th[i], NULL);
        return -1;
    }
    batch_worker(&ws[0]);
    for (int i = 1; i < b->threads; i++) pthread_join(th[i], NULL);
    double dt = eft_cli_now_s() - t0;
    return b->failed ? -1 : dt;
}

/* Median time of fn-like repetitions: single text when b is NULL. */
static double median_time(const eft_tokenizer *t, const char *s, size_t n, batch *b, double seconds, long *tokens) {
    double reps[4096];
    int nr = 0;
    double start = eft_cli_now_s();
    long k = b ? (batch_run(b) < 0 ? -1 : b->tokens) : encode_count(t, s, n); /* warm-up */
    if (k < 0) return -1;
    *tokens = k;
    while ((eft_cli_now_s() - start < seconds || nr < 3) && nr < 4096) {
        double t0 = eft_cli_now_s();
        if (b) {
            if (batch_run(b) < 0) return -1;
        } else if (encode_count(t, s, n) < 0) {
            return -1;
        }
        reps[nr++] = eft_cli_now_s() - t0;
    }
    qsort(reps, (size_t)nr, sizeof *reps, cmp_double);
    return reps[nr / 2];
}

/* ---------------------------------------------------------------------------------------------
 * The peer
 * ------------------------------------------------------------------------------------------- */

typedef struct peer_result {
    double single_s[3];
    long single_tokens[3];
    double batch_s[2]; /* [0]: 1 thread, [1]: N threads */
    long batch_tokens;
    char note[256];
} peer_result;

/* One figure of bench/peer_tokenizers.py: {"case": "single" | "batch", "size" | "threads",
 * "seconds", "tokens"} or {"error"}. */
static void on_peer_line(json_t *j, void *user) {
    peer_result *r = user;
    const char *kind = json_string_value(json_object_get(j, "case"));
    const char *error = json_string_value(json_object_get(j, "error"));
    double sec = json_number_value(json_object_get(j, "seconds"));
    long tok = (long)json_integer_value(json_object_get(j, "tokens"));
    if (error) {
        snprintf(r->note, sizeof r->note, "%s", error);
    } else if (kind && !strcmp(kind, "single")) {
        size_t bytes = (size_t)json_integer_value(json_object_get(j, "size"));
        for (int i = 0; i < 3; i++)
            if (bytes == SIZES[i]) {
                r->single_s[i] = sec;
                r->single_tokens[i] = tok;
            }
    } else if (kind && !strcmp(kind, "batch")) {
        int th = (int)json_integer_value(json_object_get(j, "threads"));
        r->batch_s[th == 1 ? 0 : 1] = sec;
        r->batch_tokens = tok;
    }
}

/* Runs the peer over the same 1 MB text (written to a temporary file); fills r, or r->note. */
static void run_peer(const char *python, const char *model, const char *text, size_t len, int threads, double seconds,
                     peer_result *r) {
    char script[4096];
    if (!eft_cli_find_peer_script("peer_tokenizers.py", script, sizeof script)) {
        snprintf(r->note, sizeof r->note, "bench/peer_tokenizers.py not found");
        return;
    }
    char tmpl[] = "/tmp/eft-bench-tokenize-XXXXXX";
    int fd = mkstemp(tmpl);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f || fwrite(text, 1, len, f) != len) {
        snprintf(r->note, sizeof r->note, "cannot write the text for the peer");
        if (f) fclose(f);
        else if (fd >= 0) close(fd);
        unlink(tmpl);
        return;
    }
    fclose(f);
    char cmd[12800], qpy[1024], qscript[4200], qmodel[4200], qtext[128];
    if (!eft_cli_shell_quote(qpy, sizeof qpy, python) || !eft_cli_shell_quote(qscript, sizeof qscript, script) ||
        !eft_cli_shell_quote(qmodel, sizeof qmodel, model) || !eft_cli_shell_quote(qtext, sizeof qtext, tmpl)) {
        snprintf(r->note, sizeof r->note, "a path is too long; not running the peer");
        unlink(tmpl);
        return;
    }
    snprintf(cmd, sizeof cmd, "%s %s --tokenizer %s --text %s --sizes %zu,%zu,%zu --batch-bytes %d --threads %d --seconds %g",
             qpy, qscript, qmodel, qtext, SIZES[0], SIZES[1], SIZES[2], BATCH_TEXT_BYTES, threads, seconds);
    int rc = eft_cli_run_peer(cmd, on_peer_line, r);
    if (rc < 0) {
        snprintf(r->note, sizeof r->note, "cannot run %s", python);
        unlink(tmpl);
        return;
    }
    if (rc != 0 && !r->note[0]) {
        if (WIFEXITED(rc) && WEXITSTATUS(rc) == 127) snprintf(r->note, sizeof r->note, "%s could not be run", python);
        else snprintf(r->note, sizeof r->note, "the peer script failed (status %d)", WIFEXITED(rc) ? WEXITSTATUS(rc) : rc);
    }
    unlink(tmpl);
}

/* ---------------------------------------------------------------------------------------------
 * The command
 * ------------------------------------------------------------------------------------------- */

static void print_ratio(double eft_s, double peer_s) {
    if (peer_s > 0 && eft_s > 0) printf("  %6.2fx", peer_s / eft_s);
    else printf("  %7s", "-");
}

int eft_cmd_bench_tokenize(int argc, char **argv) {
    const char *model = NULL, *python = NULL, *file = NULL;
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    double seconds = 1.0;
    bool peer = false;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 256) return eft_cli_error("bench", "--threads wants 1..256, got '%s'", argv[i]);
            threads = (int)v;
        } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            double v = strtod(argv[++i], &end);
            if (*end || !(v > 0 && v <= 600)) return eft_cli_error("bench", "--seconds wants (0, 600], got '%s'", argv[i]);
            seconds = v;
        } else if (!strcmp(argv[i], "--file") && i + 1 < argc) {
            file = argv[++i];
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
    python = eft_cli_peer_python(python);

    size_t len = 0;
    char *text = file ? file_text(file, SIZES[2], &len) : make_text(SIZES[2], &len);
    if (!text) return eft_cli_error("bench", file ? "cannot read text from %s" : "out of memory", file);
    eft_tokenizer *t = NULL;
    double t_open = eft_cli_now_s();
    if (eft_tokenizer_open(model, &t) != EFT_OK) {
        free(text);
        return eft_cli_error("bench", "%s", eft_last_error());
    }
    t_open = eft_cli_now_s() - t_open;

    /* The batch: the 1 MB text cut into ~BATCH_TEXT_BYTES-byte texts at character boundaries. */
    size_t nb = len / BATCH_TEXT_BYTES + 2;
    size_t *off = malloc((nb + 1) * sizeof *off);
    if (!off) {
        eft_tokenizer_close(t);
        free(text);
        return eft_cli_error("bench", "out of memory");
    }
    size_t n_texts = 0;
    off[0] = 0;
    for (size_t at = 0; at < len;) {
        size_t end = at + BATCH_TEXT_BYTES < len ? at + BATCH_TEXT_BYTES : len;
        while (end < len && ((unsigned char)text[end] & 0xC0) == 0x80) end++;
        off[++n_texts] = end;
        at = end;
    }

    double load[3];
    eft_cli_loadavg(load);
    printf("eft %s bench tokenize — %s (opened in %.3f s), %s text, %.1f s per figure, load average %.2f %.2f %.2f "
           "on %ld cores\n",
           eft_version(), model, t_open, file ? file : "generated", seconds, load[0], load[1], load[2],
           sysconf(_SC_NPROCESSORS_ONLN));

    peer_result pr;
    memset(&pr, 0, sizeof pr);
    if (peer) run_peer(python, model, text, len, threads, seconds, &pr);

    double single[3] = {0};
    long single_tok[3] = {0};
    int rc = 0;
    printf("\n%-26s %10s %10s %10s %12s %10s %12s %8s\n", "one text, 1 thread", "bytes", "tokens", "ms", "MB/s", "Mtok/s",
           "HF MB/s", "eft/HF");
    for (int i = 0; i < 3; i++) {
        size_t n = SIZES[i] < len ? SIZES[i] : len;
        while (n < len && n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80) n--;
        single[i] = median_time(t, text, n, NULL, seconds, &single_tok[i]);
        if (single[i] < 0) {
            rc = eft_cli_error("bench", "encode failed: %s", eft_last_error());
            break;
        }
        char label[32];
        snprintf(label, sizeof label, "%zu KB", SIZES[i] / 1024);
        printf("%-26s %10zu %10ld %10.3f %12.2f %10.3f", label, n, single_tok[i], single[i] * 1e3, (double)n / single[i] / 1e6,
               (double)single_tok[i] / single[i] / 1e6);
        if (pr.single_s[i] > 0) printf(" %12.2f", (double)n / pr.single_s[i] / 1e6);
        else printf(" %12s", "-");
        print_ratio(single[i], pr.single_s[i]);
        if (pr.single_s[i] > 0 && pr.single_tokens[i] != single_tok[i])
            printf("  (HF counts %ld tokens: different ids!)", pr.single_tokens[i]);
        printf("\n");
    }
    if (!rc)
        printf("linear time: 1 MB / 100 KB = %.2f (10.24 is linear)\n", single[2] / single[1]);
    if (!rc && pr.single_s[1] > 0 && pr.single_s[2] > 0)
        printf("             HF tokenizers: %.2f\n", pr.single_s[2] / pr.single_s[1]);

    if (!rc) {
        printf("\n%-26s %10s %10s %10s %12s %10s %12s %8s\n", "batch of short texts", "texts", "tokens", "ms", "MB/s",
               "Mtok/s", "HF MB/s", "eft/HF");
        int ths[2] = {1, threads};
        for (int k = 0; k < (threads > 1 ? 2 : 1); k++) {
            batch b = {.t = t, .text = text, .off = off, .n = n_texts, .threads = ths[k]};
            pthread_mutex_init(&b.mu, NULL);
            long tok = 0;
            double s = median_time(t, NULL, 0, &b, seconds, &tok);
            pthread_mutex_destroy(&b.mu);
            if (s < 0) {
                rc = eft_cli_error("bench", "encode failed: %s", eft_last_error());
                break;
            }
            char label[48];
            snprintf(label, sizeof label, "%d thread%s, ~%d B each", ths[k], ths[k] > 1 ? "s" : "", BATCH_TEXT_BYTES);
            printf("%-26s %10zu %10ld %10.3f %12.2f %10.3f", label, n_texts, tok, s * 1e3, (double)len / s / 1e6,
                   (double)tok / s / 1e6);
            double ps = pr.batch_s[k];
            if (ps > 0) printf(" %12.2f", (double)len / ps / 1e6);
            else printf(" %12s", "-");
            print_ratio(s, ps);
            if (ps > 0 && pr.batch_tokens && pr.batch_tokens != tok) printf("  (HF counts %ld tokens: different ids!)", pr.batch_tokens);
            printf("\n");
        }
    }
    if (peer && pr.note[0]) printf("\nHF tokenizers: %s\n", pr.note);
    else if (peer) printf("\nHF tokenizers: the Python package's Tokenizer.encode (one text) and encode_batch "
                          "(RAYON_NUM_THREADS = the thread count) on the same text\n");
    free(off);
    free(text);
    eft_tokenizer_close(t);
    return rc;
}
