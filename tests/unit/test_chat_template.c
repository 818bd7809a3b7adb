/*
 * test_chat_template.c — the chat-template interpreter against Python's jinja2 as transformers
 * configures it. Expected outputs come from tools/ref/render_chat_templates.py: one case per
 * Jinja2 feature (tests/fixtures/chat/features) and the real templates of Llama 3.1/3.2, Mistral
 * v0.3/Nemo, Qwen2.5/3, Gemma 2/3, Phi-3/3.5, SmolLM2/3 and a plain ChatML template over a set of
 * conversations (tests/fixtures/chat/<model>); every output must be byte-identical, and every
 * raise_exception message identical. Then load errors, hostile-template limits and model folders.
 */
#include <dirent.h>
#include <jansson.h>
#include <time.h>

#include "test.h"
#include "tokenizer/chat_template.h"

static struct tm fixed_now(void) {
    /* The reference pins strftime_now to 2026-07-26 12:34:56 (a Sunday). */
    struct tm tm = {0};
    tm.tm_year = 2026 - 1900;
    tm.tm_mon = 6;
    tm.tm_mday = 26;
    tm.tm_hour = 12;
    tm.tm_min = 34;
    tm.tm_sec = 56;
    tm.tm_wday = 0;
    tm.tm_yday = 206;
    return tm;
}

static json_t *load_json(const char *rel) {
    json_error_t je;
    json_t *j = json_load_file(test_path(rel), 0, &je);
    if (!j) fprintf(stderr, "  cannot read %s: %s\n", rel, je.text);
    return j;
}

/* Renders one fixture case with t and compares; returns true when it matches. */
static bool run_case(eft_chat_template *t, const char *where, json_t *c) {
    const char *name = json_string_value(json_object_get(c, "name"));
    char *msgs = json_dumps(json_object_get(c, "messages"), JSON_COMPACT | JSON_ENCODE_ANY);
    char *opts = json_dumps(json_object_get(c, "options"), JSON_COMPACT);
    char *out = NULL;
    size_t len = 0;
    eft_status st = eft_chat_template_render(t, msgs, opts, &out, &len);
    bool ok = true;
    json_t *expected = json_object_get(c, "expected"), *error = json_object_get(c, "error");
    if (expected) {
        const char *e = json_string_value(expected);
        size_t elen = json_string_length(expected);
        if (st != EFT_OK) {
            fprintf(stderr, "  %s/%s: expected output, got error: %s\n", where, name, eft_chat_template_errmsg(t));
            ok = false;
        } else if (len != elen || memcmp(out, e, len) != 0) {
            size_t k = 0;
            while (k < len && k < elen && out[k] == e[k]) k++;
            fprintf(stderr, "  %s/%s: output differs at byte %zu\n    expected: \"%.*s\"\n    got:      \"%.*s\"\n", where,
                    name, k, (int)(elen - k > 80 ? 80 : elen - k), e + k, (int)(len - k > 80 ? 80 : len - k), out + k);
            ok = false;
        }
    } else if (error) {
        const char *type = json_string_value(json_object_get(error, "type"));
        const char *msg = json_string_value(json_object_get(error, "message"));
        if (st == EFT_OK) {
            fprintf(stderr, "  %s/%s: expected %s (%s), got output \"%.80s\"\n", where, name, type, msg, out);
            ok = false;
        } else if (!strcmp(type, "TemplateError") && strcmp(eft_chat_template_errmsg(t), msg) != 0) {
            /* raise_exception: the client sees the template's own message. */
            fprintf(stderr, "  %s/%s: raise_exception message \"%s\", expected \"%s\"\n", where, name,
                    eft_chat_template_errmsg(t), msg);
            ok = false;
        } else if (strcmp(type, "TemplateError") != 0 && st != EFT_ERR_INVALID_ARGUMENT) {
            fprintf(stderr, "  %s/%s: status %s for %s\n", where, name, eft_status_str(st), type);
            ok = false;
        }
    }
    eft_free(out);
    free(msgs);
    free(opts);
    return ok;
}

static void test_features(void) {
    json_t *doc = load_json("tests/fixtures/chat/features/cases.json");
    CHECK(doc != NULL);
    if (!doc) return;
    struct tm now = fixed_now();
    size_t i, passed = 0, total = 0;
    json_t *c;
    json_array_foreach(json_object_get(doc, "cases"), i, c) {
        const char *src = json_string_value(json_object_get(c, "template"));
        eft_chat_template *t = NULL;
        total++;
        if (eft_chat_template_open(src, strlen(src), &t) != EFT_OK) {
            fprintf(stderr, "  features/%s: load failed: %s\n", json_string_value(json_object_get(c, "name")),
                    eft_last_error());
            t_fail_in_test++;
            continue;
        }
        eft__chat_template_set_now(t, &now);
        if (run_case(t, "features", c)) passed++;
        else t_fail_in_test++;
        eft_chat_template_close(t);
    }
    printf("     features: %zu/%zu cases byte-identical\n", passed, total);
    CHECK(total >= 100);
    json_decref(doc);
}

static void test_load_errors(void) {
    json_t *doc = load_json("tests/fixtures/chat/features/cases.json");
    if (!doc) {
        CHECK(doc != NULL);
        return;
    }
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(doc, "load_errors"), i, c) {
        const char *src = json_string_value(json_object_get(c, "template"));
        const char *needle = json_string_value(json_object_get(c, "contains"));
        eft_chat_template *t = (eft_chat_template *)1;
        eft_status st = eft_chat_template_open(src, strlen(src), &t);
        CHECK(st != EFT_OK);
        CHECK(t == NULL);
        CHECK_CONTAINS(eft_last_error(), needle);
        CHECK_CONTAINS(eft_last_error(), "line 1");
        if (st == EFT_OK) eft_chat_template_close(t);
    }
    json_decref(doc);

    /* The line named is the construct's line. */
    eft_chat_template *t = NULL;
    const char *src = "line one\n{% if x %}\n\n{{ y | nosuchfilter }}\n{% endif %}";
    CHECK(eft_chat_template_open(src, strlen(src), &t) == EFT_ERR_UNSUPPORTED);
    CHECK_CONTAINS(eft_last_error(), "line 4");
    CHECK_CONTAINS(eft_last_error(), "unknown filter 'nosuchfilter'");
    src = "{% for m in messages %}\n{{ m is frobbed }}";
    CHECK(eft_chat_template_open(src, strlen(src), &t) != EFT_OK);
    CHECK_CONTAINS(eft_last_error(), "unknown test 'frobbed'");
    src = "{% call m() %}x{% endcall %}";
    CHECK(eft_chat_template_open(src, strlen(src), &t) == EFT_ERR_UNSUPPORTED);
    CHECK_CONTAINS(eft_last_error(), "'call' tag is not supported");
    src = "\xff\xfe";
    CHECK(eft_chat_template_open(src, 2, &t) == EFT_ERR_FORMAT);
    CHECK_CONTAINS(eft_last_error(), "UTF-8");
    CHECK(eft_chat_template_open(NULL, 0, NULL) == EFT_ERR_INVALID_ARGUMENT);
}

static void check_model_dir(const char *model) {
    char rel[512];
    snprintf(rel, sizeof rel, "tests/fixtures/chat/%s/cases.json", model);
    json_t *doc = load_json(rel);
    if (!doc) {
        t_fail_in_test++;
        return;
    }
    snprintf(rel, sizeof rel, "tests/fixtures/chat/%s", model);
    eft_chat_template *t = NULL;
    if (eft_chat_template_open_model(test_path(rel), &t) != EFT_OK) {
        fprintf(stderr, "  %s: open failed: %s\n", model, eft_last_error());
        t_fail_in_test++;
        json_decref(doc);
        return;
    }
    struct tm now = fixed_now();
    eft__chat_template_set_now(t, &now);
    size_t i, passed = 0, total = 0;
    json_t *c;
    json_array_foreach(json_object_get(doc, "cases"), i, c) {
        total++;
        if (run_case(t, model, c)) passed++;
        else t_fail_in_test++;
    }
    printf("     %-13s %zu/%zu cases byte-identical\n", model, passed, total);
    eft_chat_template_close(t);
    json_decref(doc);
}

static void test_real_templates(void) {
    static const char *const models[] = {"llama-3.1", "llama-3.2", "mistral-v0.3", "mistral-nemo", "qwen2.5",
                                         "qwen3", "gemma-2", "gemma-3", "phi-3", "phi-3.5", "smollm2", "smollm3",
                                         "chatml"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) check_model_dir(models[i]);
}

static eft_chat_template *open_str(const char *src) {
    eft_chat_template *t = NULL;
    if (eft_chat_template_open(src, strlen(src), &t) != EFT_OK) fprintf(stderr, "  open: %s\n", eft_last_error());
    return t;
}

static void test_limits(void) {
    eft__ct_limits lim = eft__ct_limits_default();
    lim.max_output = 1000;
    lim.max_steps = 500;
    lim.max_depth = 10;
    lim.max_memory = 1 << 20;
    char *out = NULL;
    struct {
        const char *src, *needle;
    } hostile[] = {
        {"{% for i in range(100) %}{% for j in range(100) %}x{% endfor %}{% endfor %}", "loop"},
        {"{% for i in range(1000000000) %}{% endfor %}", "range"},
        {"{{ 'x' * 100000 }}", "size limit"},
        {"{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nested"},
        {"{% set ns = namespace(s='ab') %}{% for i in range(400) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "bytes"},
        {"{% for i in range(400) %}{{ 'abc' }}{% endfor %}", "longer than 1000 bytes"},
    };
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        eft_chat_template *t = open_str(hostile[i].src);
        CHECK(t != NULL);
        if (!t) continue;
        eft__chat_template_set_limits(t, &lim);
        CHECK(eft_chat_template_render(t, "[]", NULL, &out, NULL) == EFT_ERR_LIMIT);
        CHECK(out == NULL);
        CHECK_CONTAINS(eft_chat_template_errmsg(t), hostile[i].needle);
        eft_chat_template_close(t);
    }
    /* Deep nesting in the source is a load error, not a stack overflow. */
    size_t n = 5000;
    char *deep = malloc(2 * n + 16);
    strcpy(deep, "{{ ");
    for (size_t i = 0; i < n; i++) strcat(deep + i + 2, "(");
    for (size_t i = 0; i < n; i++) deep[3 + n + i] = ')';
    strcpy(deep + 3 + 2 * n, " }}");
    eft_chat_template *t = NULL;
    CHECK(eft_chat_template_open(deep, strlen(deep), &t) != EFT_OK);
    CHECK_CONTAINS(eft_last_error(), "deep");
    memset(deep, 0, 2 * n + 16);
    for (size_t i = 0; i < 300; i++) strcat(deep, "{% if x %}");
    CHECK(eft_chat_template_open(deep, strlen(deep), &t) != EFT_OK);
    free(deep);
    /* Deeply nested JSON input is refused cleanly too. */
    t = open_str("{{ messages }}");
    char *msgs = malloc(2 * 1000 + 3);
    size_t k = 0;
    msgs[k++] = '[';
    for (int i = 0; i < 999; i++) msgs[k++] = '[';
    for (int i = 0; i < 1000; i++) msgs[k++] = ']';
    msgs[k] = 0;
    CHECK(eft_chat_template_render(t, msgs, NULL, &out, NULL) != EFT_OK);
    free(msgs);
    eft_chat_template_close(t);
}

static void test_api(void) {
    eft_chat_template *t = open_str("{{ bos_token }}{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}"
                                    "{% if add_generation_prompt %}>{% endif %}{{ extra | default('') }}");
    CHECK(t != NULL);
    if (!t) return;
    char *out = NULL;
    size_t len = 0;
    const char *msgs = "[{\"role\":\"user\",\"content\":\"h\\u00e9\"}]";
    CHECK(eft_chat_template_render(t, msgs, NULL, &out, &len) == EFT_OK);
    CHECK_EQ_STR(out, "[user:h\xc3\xa9]");
    CHECK(len == strlen("[user:h\xc3\xa9]"));
    eft_free(out);
    CHECK(eft_chat_template_render(t, msgs, "{\"add_generation_prompt\":true,\"bos_token\":\"<s>\",\"extra\":\"!\"}",
                                   &out, NULL) == EFT_OK);
    CHECK_EQ_STR(out, "<s>[user:h\xc3\xa9]>!");
    eft_free(out);
    /* A chat completion request body works as the messages document. */
    CHECK(eft_chat_template_render(t, "{\"model\":\"x\",\"messages\":[{\"role\":\"a\",\"content\":\"b\"}]}", NULL, &out,
                                   NULL) == EFT_OK);
    CHECK_EQ_STR(out, "[a:b]");
    eft_free(out);
    /* Bad input is a clear error and leaves nothing to free. */
    CHECK(eft_chat_template_render(t, "[{", NULL, &out, NULL) == EFT_ERR_INVALID_ARGUMENT);
    CHECK(out == NULL);
    CHECK_CONTAINS(eft_chat_template_errmsg(t), "messages: invalid JSON");
    CHECK(eft_chat_template_render(t, "[1]", NULL, &out, NULL) == EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(eft_chat_template_errmsg(t), "messages[0]");
    CHECK(eft_chat_template_render(t, "[]", "[1]", &out, NULL) == EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(eft_chat_template_errmsg(t), "options");
    CHECK(eft_chat_template_render(t, "[]", "{\"tools\": 3}", &out, NULL) == EFT_ERR_INVALID_ARGUMENT);
    CHECK(eft_chat_template_render(t, "[]", NULL, &out, NULL) == EFT_OK);
    CHECK_EQ_STR(out, "");
    CHECK_EQ_STR(eft_chat_template_errmsg(t), "");
    eft_free(out);
    eft_chat_template_close(t);
    eft_chat_template_close(NULL);

    /* Undefined behaves like jinja2's default Undefined. */
    t = open_str("[{{ nope }}][{{ nope is defined }}][{{ messages[5] }}][{{ {}.x }}]");
    CHECK(eft_chat_template_render(t, "[]", NULL, &out, NULL) == EFT_OK);
    CHECK_EQ_STR(out, "[][False][][]");
    eft_free(out);
    eft_chat_template_close(t);
    t = open_str("{{ nope.x }}");
    CHECK(eft_chat_template_render(t, "[]", NULL, &out, NULL) == EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(eft_chat_template_errmsg(t), "'nope' is undefined");
    eft_chat_template_close(t);
}

static void write_file(const char *dir, const char *name, const char *text) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void test_model_folders(void) {
    const char *dir = test_tmpdir("chat_template_models");
    char *out = NULL;
    eft_chat_template *t = NULL;
    /* No template anywhere. */
    CHECK(eft_chat_template_open_model(dir, &t) == EFT_ERR_NOT_FOUND);
    CHECK_CONTAINS(eft_last_error(), "no chat template");
    /* tokenizer_config.json with a list of named templates and AddedToken-style special tokens. */
    write_file(dir, "tokenizer_config.json",
               "{\"bos_token\": {\"content\": \"<B>\", \"lstrip\": false}, \"eos_token\": \"<E>\","
               " \"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"},"
               " {\"name\": \"default\", \"template\": \"{{ bos_token }}D{{ eos_token }}\"}]}");
    CHECK(eft_chat_template_open_model(dir, &t) == EFT_OK);
    CHECK(eft_chat_template_render(t, "[]", NULL, &out, NULL) == EFT_OK);
    CHECK_EQ_STR(out, "<B>D<E>");
    eft_free(out);
    /* The caller's options win over the model's special tokens. */
    CHECK(eft_chat_template_render(t, "[]", "{\"bos_token\": \"\"}", &out, NULL) == EFT_OK);
    CHECK_EQ_STR(out, "D<E>");
    eft_free(out);
    eft_chat_template_close(t);
    /* chat_template.json beats tokenizer_config.json; chat_template.jinja beats both. */
    write_file(dir, "chat_template.json", "{\"chat_template\": \"J{{ eos_token }}\"}");
    CHECK(eft_chat_template_open_model(dir, &t) == EFT_OK);
    CHECK(eft_chat_template_render(t, "[]", NULL, &out, NULL) == EFT_OK);
    CHECK_EQ_STR(out, "J<E>");
    eft_free(out);
    eft_chat_template_close(t);
    write_file(dir, "chat_template.jinja", "K{{ bos_token }}\n");
    CHECK(eft_chat_template_open_model(dir, &t) == EFT_OK);
    CHECK(eft_chat_template_render(t, "[]", NULL, &out, NULL) == EFT_OK);
    CHECK_EQ_STR(out, "K<B>");
    eft_free(out);
    eft_chat_template_close(t);
    /* A broken template names the file. */
    write_file(dir, "chat_template.jinja", "{% if %}");
    CHECK(eft_chat_template_open_model(dir, &t) == EFT_ERR_FORMAT);
    CHECK_CONTAINS(eft_last_error(), "chat_template.jinja");
    CHECK(eft_chat_template_open_model("/nonexistent/model", &t) == EFT_ERR_NOT_FOUND);
    CHECK(t == NULL);
}

/* Models other fixtures provide: a Hugging Face folder and a GGUF file with a chat template.
 * Expected strings are from transformers' AutoTokenizer.apply_chat_template on those fixtures. */
static void test_fixture_models(void) {
    static const struct {
        const char *rel, *expected;
    } models[] = {
        {"tests/fixtures/models/llama", "<s>[INST] Hi \xc3\xa9 [/INST] Yo</s>[INST] Again [/INST]"},
        {"tests/fixtures/models/gemma3", "<bos><start_of_turn>user\nHi \xc3\xa9<end_of_turn>\n<start_of_turn>model\nYo"
                                         "<end_of_turn>\n<start_of_turn>user\nAgain<end_of_turn>\n<start_of_turn>model\n"},
        /* The GGUF conversion of the llama fixture: token strings come from tokenizer.ggml.tokens. */
        {"tests/fixtures/gguf/tiny-llama.gguf", "<s>[INST] Hi \xc3\xa9 [/INST] Yo</s>[INST] Again [/INST]"},
    };
    const char *msgs = "[{\"role\":\"user\",\"content\":\" Hi \u00e9 \"},{\"role\":\"assistant\",\"content\":\"Yo\"},"
                       "{\"role\":\"user\",\"content\":\"Again\"}]";
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        const char *path = test_path(models[i].rel);
        FILE *f = fopen(path, "rb");
        if (!f && !strstr(path, ".gguf")) {
            /* A folder: fopen fails on some systems; check the config instead. */
            char cfg[4200];
            snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", path);
            f = fopen(cfg, "rb");
        }
        if (!f) {
            printf("     (skipped %s: not present)\n", models[i].rel);
            continue;
        }
        fclose(f);
        eft_chat_template *t = NULL;
        char *out = NULL;
        CHECK(eft_chat_template_open_model(path, &t) == EFT_OK);
        if (!t) {
            fprintf(stderr, "  %s: %s\n", models[i].rel, eft_last_error());
            continue;
        }
        CHECK(eft_chat_template_render(t, msgs, "{\"add_generation_prompt\": true}", &out, NULL) == EFT_OK);
        CHECK_EQ_STR(out, models[i].expected);
        eft_free(out);
        eft_chat_template_close(t);
    }
}

/* Out of memory at every allocation in turn: each open and render fails cleanly or succeeds,
 * and nothing leaks (the sanitizer build checks that). */
static long oom_countdown = -1;
static void *oom_alloc(size_t n, void *u) {
    (void)u;
    if (oom_countdown == 0) return NULL;
    if (oom_countdown > 0) oom_countdown--;
    return malloc(n);
}
static void *oom_realloc(void *p, size_t n, void *u) {
    (void)u;
    if (oom_countdown == 0) return NULL;
    if (oom_countdown > 0) oom_countdown--;
    return realloc(p, n);
}
static void oom_free(void *p, void *u) {
    (void)u;
    free(p);
}

static void test_out_of_memory(void) {
    char *src = NULL;
    FILE *f = fopen(test_path("tests/fixtures/chat/qwen3/chat_template.jinja"), "rb");
    CHECK(f != NULL);
    if (!f) return;
    src = calloc(1, 1 << 16);
    size_t n = fread(src, 1, (1 << 16) - 1, f);
    fclose(f);
    const char *msgs = "[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":\"u\"},"
                       "{\"role\":\"assistant\",\"content\":\"<think>r</think>a\",\"tool_calls\":[{\"function\":"
                       "{\"name\":\"f\",\"arguments\":{\"x\":1}}}]},{\"role\":\"tool\",\"content\":\"t\"}]";
    const char *opts = "{\"add_generation_prompt\":true,\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}";
    eft_allocator a = {oom_alloc, oom_realloc, oom_free, NULL};
    eft_set_allocator(&a);
    int ok_runs = 0, oom_runs = 0;
    for (long k = 0; k < 400; k++) {
        oom_countdown = k;
        eft_chat_template *t = NULL;
        char *out = NULL;
        eft_status st = eft_chat_template_open(src, n, &t);
        if (st == EFT_OK) st = eft_chat_template_render(t, msgs, opts, &out, NULL);
        if (st == EFT_OK) ok_runs++;
        else if (st == EFT_ERR_OUT_OF_MEMORY) oom_runs++;
        else if (st != EFT_ERR_INVALID_ARGUMENT) {
            /* jansson reports its own allocation failures as a parse error. */
            fprintf(stderr, "  countdown %ld: %s: %s\n", k, eft_status_str(st), eft_last_error());
            t_fail_in_test++;
        }
        oom_countdown = -1;
        eft_free(out);
        eft_chat_template_close(t);
    }
    eft_set_allocator(NULL);
    CHECK(ok_runs > 0);
    CHECK(oom_runs > 0);
    free(src);
}

int main(void) {
    RUN(test_features);
    RUN(test_load_errors);
    RUN(test_real_templates);
    RUN(test_limits);
    RUN(test_api);
    RUN(test_model_folders);
    RUN(test_fixture_models);
    RUN(test_out_of_memory);
    return test_summary();
}
