/*
 * cmd_compile.c — `eft compile MODEL [--seq-len 32,128,512] [--batch-size 8] [--num-cores 2]
 * [--dtype f32|f16|bf16|int8|int4] -o DIR`: an encoder or a causal LM compiled into DIR/program.eft
 * (eft_compile), which `eft embed DIR` / `eft generate DIR` then run without checking or packing
 * anything, and `eft info DIR` describes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

static const char *k_usage =
    "usage: eft compile MODEL [--seq-len 32,128,512] [--batch-size N] [--num-cores N] [--dtype f32|f16|bf16|int8|int4|int4-g128|...] -o DIR\n"
    "       eft compile LM [--ctx-len N] [--prefill-seq-len N] [--full-batch-size N] [--num-cores N]\n"
    "                      [--weight-dtype f32|f16|bf16|int8|int4] [--kv-dtype f32|f16|int8]\n"
    "                      [--act-dtype f32|int8] -o DIR\n"
    "\n"
    "Compiles an encoder (BERT, RoBERTa, XLM-RoBERTa, MPNet folder) for the given sequence lengths,\n"
    "batch size and threads, with its weights packed for the kernels (f16 halves their size), into\n"
    "DIR/program.eft. The program names MODEL's folder (absolute path) and a fingerprint of its files:\n"
    "`eft embed DIR` reads the tokenizer and pooling from there and refuses a folder that changed.\n"
    "Defaults: the model's length limit, batch 8, 1 thread, f32.\n"
    "\n"
    "A causal LM (a Hugging Face folder or a .gguf) is compiled the same way: its weights converted to\n"
    "--weight-dtype (default: as the file stores them where a kernel reads that) and packed, with the\n"
    "plan (context, prefill chunk, KV slots, threads, KV and activation types) recorded for\n"
    "`eft generate DIR` and `eft serve --model DIR`, whose own flags still override it.\n";

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

int eft_cmd_compile(int argc, char **argv) {
    eft_compile_params p = eft_compile_params_default();
    const char *model = NULL, *out = NULL;
    int lens[64];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_usage, stdout);
            return 0;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v) {
            out = argv[++i];
        } else if (!strcmp(a, "--seq-len") && v) {
            int n = parse_lens(argv[++i], lens, 64);
            if (n < 1) return eft_cli_error("compile", "--seq-len takes up to 64 lengths like 32,128,512, not '%s'", v);
            p.seq_lens = lens;
            p.n_seq_lens = n;
        } else if ((!strcmp(a, "--batch-size") || !strcmp(a, "--num-cores")) && v) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || end == v || n < 1 || n > 4096) return eft_cli_error("compile", "%s takes a number from 1 to 4096", a);
            if (a[2] == 'b') p.batch_size = (int)n;
            else p.num_cores = (int)n;
        } else if ((!strcmp(a, "--ctx-len") || !strcmp(a, "--prefill-seq-len") || !strcmp(a, "--full-batch-size")) && v) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            long hi = a[2] == 'c' ? (1L << 24) : a[2] == 'p' ? 65536 : 1024;
            if (*end || end == v || n < 1 || n > hi) return eft_cli_error("compile", "%s takes a number from 1 to %ld", a, hi);
            if (a[2] == 'c') p.ctx_len = (int)n;
            else if (a[2] == 'p') p.prefill_seq_len = (int)n;
            else p.full_batch_size = (int)n;
        } else if (!strcmp(a, "--weight-dtype") && v) {
            ++i;
            p.dtype = eft_weight_dtype_parse(v);
            if (p.dtype == EFT_DTYPE_COUNT && strcmp(v, "keep"))
                return eft_cli_error("compile", "--weight-dtype takes f32, f16, bf16, int8, int4, int8-g64, int8-g128, "
                                     "int8-channel, int4-g32|g64|g128, int4-g32|g64|g128-asym or keep, not '%s'", v);
        } else if (!strcmp(a, "--kv-dtype") && v) {
            ++i;
            if (!strcmp(v, "f32")) p.kv_dtype = EFT_DTYPE_F32;
            else if (!strcmp(v, "f16")) p.kv_dtype = EFT_DTYPE_F16;
            else if (!strcmp(v, "int8")) p.kv_dtype = EFT_DTYPE_I8;
            else return eft_cli_error("compile", "--kv-dtype takes f32, f16 or int8, not '%s'", v);
        } else if (!strcmp(a, "--act-dtype") && v) {
            ++i;
            if (!strcmp(v, "f32")) p.activation_dtype = EFT_DTYPE_F32;
            else if (!strcmp(v, "int8")) p.activation_dtype = EFT_DTYPE_I8;
            else return eft_cli_error("compile", "--act-dtype takes f32 or int8, not '%s'", v);
        } else if (!strcmp(a, "--dtype") && v) {
            ++i;
            p.dtype = eft_weight_dtype_parse(v);
            if (p.dtype == EFT_DTYPE_COUNT)
                return eft_cli_error("compile", "--dtype takes f32, f16, bf16, int8, int4, int8-g64, int8-g128, "
                                     "int8-channel, int4-g32|g64|g128 or int4-g32|g64|g128-asym, not '%s'", v);
        } else if (a[0] == '-' && a[1]) {
            eft_cli_error("compile", "unknown option or missing value: '%s'\n%s", a, k_usage);
            return 2;
        } else if (!model) {
            model = a;
        } else {
            return eft_cli_error("compile", "one model at a time ('%s' and '%s')", model, a);
        }
    }
    if (!model || !out) {
        fputs(k_usage, stderr);
        return 2;
    }
    if (eft_compile(model, &p, out) != EFT_OK) return eft_cli_error("compile", "%s", eft_last_error());
    /* One line for scripts: where it went and how big it is (read back, so it is checked too). */
    char *info = eft_program_info_json(out);
    json_t *j = info ? json_loads(info, 0, NULL) : NULL;
    eft_free(info);
    if (!j) return eft_cli_error("compile", "%s", eft_last_error());
    printf("compiled %s -> %s (%lld bytes)\n", model, json_string_value(json_object_get(j, "file")),
           (long long)json_integer_value(json_object_get(j, "size")));
    json_decref(j);
    return 0;
}
