/*
 * cmd_template.c — `eft template`: renders a model's chat template over a conversation and prints
 * the prompt exactly as it would be tokenized, with nothing added (no trailing newline), so that
 * its output can be compared byte for byte with transformers' apply_chat_template(tokenize=False).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: eft template MODEL --messages FILE.json [--add-generation-prompt] [--tools FILE.json]\n"
            "                          [--options FILE.json] [--set KEY=VALUE]...\n"
            "       eft template --template FILE.jinja --messages FILE.json [...]\n\n"
            "MODEL is a model folder (chat_template.jinja, chat_template.json or tokenizer_config.json)\n"
            "or a .gguf file. FILE.json is a JSON array of messages (or a chat request with \"messages\");\n"
            "'-' reads standard input. --options passes a JSON object of template variables\n"
            "(bos_token, enable_thinking, documents, ...); --set KEY=VALUE sets one variable to a\n"
            "string, or to true/false/a number when VALUE is one. The prompt is printed as is.\n");
}

/* Reads a whole file ("-": stdin) into a NUL-terminated malloc'd buffer. */
static char *slurp(const char *path) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n - 1, f);
        n += k;
        if (k == 0) break;
    }
    if (buf) buf[n] = 0;
    if (f != stdin) fclose(f);
    return buf;
}

static int load_json_file(const char *path, const char *what, json_t **out) {
    char *text = slurp(path);
    if (!text) return eft_cli_error("template", "cannot read %s file '%s'", what, path);
    json_error_t je;
    *out = json_loads(text, JSON_DECODE_ANY, &je);
    free(text);
    if (!*out)
        return eft_cli_error("template", "%s: invalid JSON at line %d column %d: %s", path, je.line, je.column, je.text);
    return 0;
}

int eft_cmd_template(int argc, char **argv) {
    const char *model = NULL, *template_file = NULL, *messages_file = NULL;
    json_t *options = json_object();
    int rc = 1;
    char *messages = NULL, *opts = NULL, *out = NULL;
    eft_chat_template *t = NULL;
    if (!options) return eft_cli_error("template", "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            rc = 0;
            goto done;
        } else if (!strcmp(a, "--messages") && has_value) {
            messages_file = argv[++i];
        } else if (!strcmp(a, "--template") && has_value) {
            template_file = argv[++i];
        } else if (!strcmp(a, "--add-generation-prompt")) {
            json_object_set_new(options, "add_generation_prompt", json_true());
        } else if ((!strcmp(a, "--tools") || !strcmp(a, "--documents")) && has_value) {
            json_t *v = NULL;
            if (load_json_file(argv[++i], a + 2, &v)) goto done;
            json_object_set_new(options, a + 2, v);
        } else if (!strcmp(a, "--options") && has_value) {
            json_t *v = NULL;
            if (load_json_file(argv[++i], "options", &v)) goto done;
            if (!json_is_object(v)) {
                json_decref(v);
                eft_cli_error("template", "%s: expected a JSON object of template variables", argv[i]);
                goto done;
            }
            json_object_update(options, v);
            json_decref(v);
        } else if (!strcmp(a, "--set") && has_value) {
            const char *kv = argv[++i], *eq = strchr(kv, '=');
            if (!eq || eq == kv) {
                eft_cli_error("template", "--set expects KEY=VALUE, got '%s'", kv);
                goto done;
            }
            json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
            if (!v || json_is_object(v) || json_is_array(v)) {
                json_decref(v);
                v = json_string(eq + 1);
            }
            char key[256];
            snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
            json_object_set_new(options, key, v);
        } else if (a[0] == '-' && a[1]) {
            eft_cli_error("template", "unknown or incomplete option '%s'", a);
            usage(stderr);
            rc = 2;
            goto done;
        } else if (!model) {
            model = a;
        } else {
            eft_cli_error("template", "unexpected argument '%s'", a);
            rc = 2;
            goto done;
        }
    }
    if ((!model && !template_file) || (model && template_file) || !messages_file) {
        usage(stderr);
        rc = 2;
        goto done;
    }
    if (template_file) {
        char *src = slurp(template_file);
        if (!src) {
            eft_cli_error("template", "cannot read template file '%s'", template_file);
            goto done;
        }
        eft_status st = eft_chat_template_open(src, strlen(src), &t);
        free(src);
        if (st != EFT_OK) {
            eft_cli_error("template", "%s: %s", template_file, eft_last_error());
            goto done;
        }
    } else if (eft_chat_template_open_model(model, &t) != EFT_OK) {
        eft_cli_error("template", "%s", eft_last_error());
        goto done;
    }
    messages = slurp(messages_file);
    if (!messages) {
        eft_cli_error("template", "cannot read messages file '%s'", messages_file);
        goto done;
    }
    opts = json_dumps(options, JSON_COMPACT);
    size_t len = 0;
    if (!opts || eft_chat_template_render(t, messages, opts, &out, &len) != EFT_OK) {
        eft_cli_error("template", "%s", opts ? eft_chat_template_errmsg(t) : "out of memory");
        goto done;
    }
    rc = fwrite(out, 1, len, stdout) == len && fflush(stdout) == 0 ? 0 : 1;
done:
    eft_free(out);
    free(opts);
    free(messages);
    eft_chat_template_close(t);
    json_decref(options);
    return rc;
}
