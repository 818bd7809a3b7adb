/*
 * cmd_info.c — `eft info MODEL [--json]`: what a model is, as read from its files. The library
 * describes the model as JSON (eft_model_info_json); this file prints it as is (--json) or as a
 * short human-readable summary. A compiled program (eft compile) is described from its header
 * and blob table (eft_program_info_json).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

static const char *str_of(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Prints "  label: value" for a scalar member, skipping absent ones. */
static void print_member(const char *label, json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return;
    if (json_is_string(v)) printf("  %-24s %s\n", label, json_string_value(v));
    else if (json_is_integer(v)) printf("  %-24s %lld\n", label, (long long)json_integer_value(v));
    else if (json_is_real(v)) printf("  %-24s %g\n", label, json_real_value(v));
    else if (json_is_boolean(v)) printf("  %-24s %s\n", label, json_is_true(v) ? "yes" : "no");
}

/* Prints every member of a section; nested objects as "outer.inner", arrays inline. */
static void print_section(const char *title, json_t *o, const char *prefix) {
    if (!json_is_object(o)) return;
    if (title) printf("%s\n", title);
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        char label[96];
        snprintf(label, sizeof label, "%s%s", prefix, k);
        if (json_is_object(v)) {
            char sub[96];
            snprintf(sub, sizeof sub, "%s.", label);
            print_section(NULL, v, sub);
        } else if (json_is_array(v)) {
            char *a = json_dumps(v, JSON_COMPACT);
            printf("  %-24s %s\n", label, a ? a : "");
            eft_free(a); /* jansson allocates through eft's hook */
        } else {
            print_member(label, o, k);
        }
    }
}

static void print_human(json_t *info) {
    printf("model %s\n", str_of(info, "path") ? str_of(info, "path") : "?");
    print_member("format", info, "format");
    json_t *files = json_object_get(info, "files");
    size_t i;
    json_t *v;
    json_array_foreach(files, i, v) printf("  %-24s %s\n", i == 0 ? "files" : "", json_string_value(v));
    print_section("architecture", json_object_get(info, "config"), "");
    print_section("tensors", json_object_get(info, "tensors"), "");
    print_section("tokenizer", json_object_get(info, "tokenizer"), "");
    print_section("sentence-transformers", json_object_get(info, "sentence_transformers"), "");
    print_section("gguf", json_object_get(info, "gguf"), "");
}

/* The shape of tensor t of the graph's tensor list, "M" / "B" / "R" for the run's rows. */
static void shape_of(const json_t *tensors, json_int_t t, char *buf, size_t n) {
    const json_t *sh = json_object_get(json_array_get(tensors, (size_t)t), "shape");
    size_t k = (size_t)snprintf(buf, n, "[");
    for (size_t i = 0; i < json_array_size(sh) && k < n; i++) {
        json_int_t d = json_integer_value(json_array_get(sh, i));
        if (d == -1) k += (size_t)snprintf(buf + k, n - k, "%sM", i ? ", " : "");
        else if (d == -2) k += (size_t)snprintf(buf + k, n - k, "%sB", i ? ", " : "");
        else if (d == -3) k += (size_t)snprintf(buf + k, n - k, "%sR", i ? ", " : "");
        else k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)d);
    }
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* What the graph compiled to: the passes applied, the plan and every op with its kernel. */
static void print_graph(const json_t *g, json_int_t weight_bytes) {
    if (!json_is_object(g)) return;
    const json_t *ts = json_object_get(g, "tensors"), *ops = json_object_get(g, "ops"), *plan = json_object_get(g, "plan");
    printf("graph\n  %-24s", "passes");
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(g, "passes"), i, v) printf("%s%s", i ? ", " : "", json_string_value(v));
    printf("\n  %-24s %lld bytes for %lld x %lld tokens\n", "plan (activations)",
           (long long)json_integer_value(json_object_get(plan, "arena_bytes")),
           (long long)json_integer_value(json_object_get(plan, "max_batch")),
           (long long)json_integer_value(json_object_get(plan, "max_tokens")));
    if (json_object_get(plan, "state_bytes"))
        printf("  %-24s %lld bytes for %lld slots x %lld positions\n", "plan (KV cache)",
               (long long)json_integer_value(json_object_get(plan, "state_bytes")),
               (long long)json_integer_value(json_object_get(plan, "state_slots")),
               (long long)json_integer_value(json_object_get(plan, "state_ctx")));
    printf("  %-24s %lld\n", "weight bytes", (long long)weight_bytes);
    printf("ops (%zu)\n", json_array_size(ops));
    json_array_foreach(ops, i, v) {
        json_int_t out = json_integer_value(json_object_get(v, "out"));
        const char *name = json_string_value(json_object_get(json_array_get(ts, (size_t)out), "name"));
        const char *act = json_string_value(json_object_get(v, "act"));
        char shape[64];
        shape_of(ts, out, shape, sizeof shape);
        json_int_t group = json_integer_value(json_object_get(v, "group"));
        printf("  %3zu %-15s %-17s %-34s %-12s%s%s%s%s\n", i, json_string_value(json_object_get(v, "op")),
               json_string_value(json_object_get(v, "kernel")), name ? name : "?", shape, act ? " +" : "",
               act ? act : "", json_is_true(json_object_get(v, "head")) ? " (head)" : "",
               group > 1 ? (group == 2 ? " (one dispatch with the next)" : " (one dispatch with the next two)") : "");
    }
}

/* A compiled program: what was compiled, from what, with which options, and its blobs. */
static int info_program(const char *ref, bool as_json) {
    char *text = eft_program_info_json(ref);
    if (!text) return eft_cli_error("info", "%s", eft_last_error());
    if (as_json) {
        fputs(text, stdout);
        fputc('\n', stdout);
        eft_free(text);
        return 0;
    }
    json_error_t jerr;
    json_t *info = json_loads(text, 0, &jerr);
    eft_free(text);
    if (!info) return eft_cli_error("info", "internal error: bad JSON from the library: %s", jerr.text);
    json_t *h = json_object_get(info, "header"), *blobs = json_object_get(info, "blobs");
    printf("program %s\n", str_of(info, "file") ? str_of(info, "file") : "?");
    print_member("size (bytes)", info, "size");
    print_member("kind", h, "kind");
    print_member("architecture", h, "architecture");
    print_member("weights", h, "weights");
    print_member("eft version", h, "eft_version");
    print_member("isa", h, "isa");
    print_member("cache key", h, "key");
    print_member("created (unix time)", h, "created_unix");
    print_section("model", json_object_get(h, "model"), "");
    print_section("options", json_object_get(h, "options"), "");
    print_section("config", json_object_get(h, "config"), "");
    print_graph(json_object_get(h, "graph"), json_integer_value(json_object_get(info, "blob_bytes")));
    if (json_object_get(h, "plan")) print_section("plan", json_object_get(h, "plan"), "");
    printf("blobs (%zu, %lld bytes)\n", json_array_size(blobs),
           (long long)json_integer_value(json_object_get(info, "blob_bytes")));
    size_t i;
    json_t *b;
    json_array_foreach(blobs, i, b)
        printf("  %-56s %-5s %12lld\n", str_of(b, "name") ? str_of(b, "name") : "?",
               str_of(b, "dtype") ? str_of(b, "dtype") : "?", (long long)json_integer_value(json_object_get(b, "bytes")));
    json_decref(info);
    return 0;
}

int eft_cmd_info(int argc, char **argv) {
    const char *ref = NULL;
    bool as_json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) as_json = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: eft info MODEL [--json]\n\nMODEL is a Hugging Face folder, a .gguf file, or a Hugging Face id\n"
                   "(org/name) present in the local Hugging Face cache; or a compiled program (a file or a folder\n"
                   "written by eft compile), checked and described with its blobs.\n");
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) return eft_cli_error("info", "unknown option '%s'", argv[i]);
        else if (ref) return eft_cli_error("info", "one model at a time ('%s' and '%s')", ref, argv[i]);
        else ref = argv[i];
    }
    if (!ref) return eft_cli_error("info", "usage: eft info MODEL [--json]");
    if (eft_is_program(ref)) return info_program(ref, as_json);

    eft_model *m = NULL;
    eft_status st = eft_model_open(ref, NULL, &m);
    if (st != EFT_OK) return eft_cli_error("info", "%s", eft_last_error());
    char *text = eft_model_info_json(m);
    if (!text) {
        eft_model_close(m);
        return eft_cli_error("info", "%s", eft_last_error());
    }
    int rc = 0;
    if (as_json) {
        fputs(text, stdout);
        fputc('\n', stdout);
    } else {
        json_error_t jerr;
        json_t *info = json_loads(text, 0, &jerr);
        if (!info) rc = eft_cli_error("info", "internal error: bad JSON from the library: %s", jerr.text);
        else print_human(info);
        json_decref(info);
    }
    eft_free(text);
    eft_model_close(m);
    return rc;
}
