/*
 * cmd_tokenize.c — `eft tokenize` and `eft detokenize`: text to token ids and back with a model's
 * tokenizer (a folder with tokenizer.json, a tokenizer.json file, or a .gguf). Both read stdin
 * when no text or ids are given on the command line. Output is JSON for ids, raw text for text.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    for (;;) {
        if (n == cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) {
                free(buf);
                return NULL;
            }
            buf = b;
        }
        size_t k = fread(buf + n, 1, cap - n, stdin);
        if (k == 0) break;
        n += k;
    }
    *len = n;
    return buf;
}

/* Writes s as a JSON string (escaping quotes, backslashes and control characters). */
static void put_json_string(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void usage_tokenize(void) {
    fprintf(stderr,
            "usage: eft tokenize MODEL [--pair TEXT] [--no-special] [--max-length N] [--details] [TEXT]\n"
            "  MODEL         a folder with tokenizer.json, a tokenizer.json file, or a .gguf file\n"
            "  --pair TEXT   a second text (a pair, as cross-encoders take)\n"
            "  --no-special  do not add the model's special tokens ([CLS], <s>, ...)\n"
            "  --max-length  truncate to N tokens (longest first)\n"
            "  --details     print tokens, type ids and byte offsets too\n"
            "Prints the ids as a JSON array. Reads the text from stdin when TEXT is not given.\n");
}

int eft_cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *pair = NULL;
    bool details = false;
    eft_encode_params p = eft_encode_params_default();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--pair") && i + 1 < argc) pair = argv[++i];
        else if (!strcmp(argv[i], "--no-special")) p.add_special_tokens = false;
        else if (!strcmp(argv[i], "--details")) details = true;
        else if (!strcmp(argv[i], "--max-length") && i + 1 < argc) p.max_length = (size_t)strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage_tokenize();
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1] == '-' && !text && model) {
            return eft_cli_error("tokenize", "unknown option %s (try --help)", argv[i]);
        } else if (!model) model = argv[i];
        else if (!text) text = argv[i];
        else return eft_cli_error("tokenize", "one TEXT only; quote it (try --help)");
    }
    if (!model) {
        usage_tokenize();
        return 2;
    }
    char *owned = NULL;
    size_t len;
    if (text) {
        len = strlen(text);
    } else {
        if (!(owned = read_stdin(&len))) return eft_cli_error("tokenize", "out of memory reading stdin");
        text = owned;
    }
    eft_tokenizer *t = NULL;
    if (eft_tokenizer_open(model, &t)) {
        free(owned);
        return eft_cli_error("tokenize", "%s", eft_last_error());
    }
    eft_encoding *e = NULL;
    eft_status st = eft_tokenizer_encode(t, text, len, pair, pair ? strlen(pair) : 0, &p, &e);
    if (st) {
        int rc = eft_cli_error("tokenize", "%s", eft_last_error());
        eft_tokenizer_close(t);
        free(owned);
        return rc;
    }
    size_t n = eft_encoding_len(e);
    const int32_t *ids = eft_encoding_ids(e);
    if (!details) {
        putchar('[');
        for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
        puts("]");
    } else {
        const int32_t *types = eft_encoding_type_ids(e);
        const uint32_t *offs = eft_encoding_offsets(e);
        puts("[");
        for (size_t i = 0; i < n; i++) {
            size_t tl = 0;
            const char *tok = eft_tokenizer_id_to_token(t, ids[i], &tl);
            printf("  {\"id\": %d, \"token\": ", ids[i]);
            put_json_string(tok ? tok : "", tok ? tl : 0);
            printf(", \"type_id\": %d, \"offsets\": [%u, %u]}%s\n", types[i], offs[2 * i], offs[2 * i + 1],
                   i + 1 < n ? "," : "");
        }
        puts("]");
    }
    eft_encoding_free(e);
    eft_tokenizer_close(t);
    free(owned);
    return 0;
}

int eft_cmd_detokenize(int argc, char **argv) {
    const char *model = NULL;
    bool skip = false;
    size_t cap = 64, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    char *owned = NULL;
    if (!ids) return eft_cli_error("detokenize", "out of memory");
    int rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        if (!strcmp(argv[i], "--skip-special")) {
            skip = true;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fprintf(stderr, "usage: eft detokenize MODEL [--skip-special] [ID...]\n"
                            "Prints the text of the ids; reads ids (spaces, commas or a JSON array) from stdin "
                            "when none are given.\n");
            free(ids);
            return 0;
        } else if (!model) {
            model = argv[i];
        } else {
            char *end;
            long v = strtol(argv[i], &end, 10);
            if (*end || end == argv[i] || v < 0 || v > INT32_MAX) {
                rc = eft_cli_error("detokenize", "\"%s\" is not a token id", argv[i]);
                break;
            }
            if (n == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
            ids[n++] = (int32_t)v;
        }
    }
    if (!rc && !model) {
        fprintf(stderr, "usage: eft detokenize MODEL [--skip-special] [ID...]\n");
        rc = 2;
    }
    if (!rc && n == 0) {
        /* ids from stdin: any non-digit separates them, so "[1, 2]" and "1 2" both work */
        size_t len = 0;
        if (!(owned = read_stdin(&len))) rc = eft_cli_error("detokenize", "out of memory reading stdin");
        for (size_t i = 0; !rc && i < len;) {
            if (owned[i] >= '0' && owned[i] <= '9') {
                long long v = 0;
                while (i < len && owned[i] >= '0' && owned[i] <= '9' && v <= INT32_MAX) v = v * 10 + (owned[i++] - '0');
                if (v > INT32_MAX) {
                    rc = eft_cli_error("detokenize", "a token id on stdin is too large");
                    break;
                }
                if (n == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
                ids[n++] = (int32_t)v;
            } else if (owned[i] == '-') {
                rc = eft_cli_error("detokenize", "negative token id on stdin");
            } else {
                i++;
            }
        }
    }
    eft_tokenizer *t = NULL;
    if (!rc && eft_tokenizer_open(model, &t)) rc = eft_cli_error("detokenize", "%s", eft_last_error());
    if (!rc) {
        char *text = NULL;
        size_t tl = 0;
        if (eft_tokenizer_decode(t, ids, n, skip, &text, &tl)) {
            rc = eft_cli_error("detokenize", "%s", eft_last_error());
        } else {
            fwrite(text, 1, tl, stdout);
            putchar('\n');
            eft_free(text);
        }
    }
    eft_tokenizer_close(t);
    free(ids);
    free(owned);
    return rc;
}
