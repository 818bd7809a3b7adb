/*
 * main.c — the eft command-line tool: dispatches to one subcommand per file.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subcommand;

static const subcommand k_commands[] = {
    {"info", eft_cmd_info, "describe a model (folder, .gguf or Hugging Face id): eft info MODEL [--json]"},
    {"compile", eft_cmd_compile, "compile an encoder or a causal LM: eft compile MODEL [--seq-len 32,128] [--weight-dtype int8] -o DIR"},
    {"embed", eft_cmd_embed, "sentence embeddings as JSON: eft embed MODEL [--truncate left|right] [TEXT...]"},
    {"generate", eft_cmd_generate, "generate text from a prompt: eft generate MODEL --prompt TEXT [--chat] [--stream] (--help)"},
    {"perplexity", eft_cmd_perplexity, "perplexity and agreement with f32 per weight type: eft perplexity MODEL --file TEXT"},
    {"tokenize", eft_cmd_tokenize, "text to token ids: eft tokenize MODEL [--pair TEXT] [--no-special] [TEXT]"},
    {"detokenize", eft_cmd_detokenize, "token ids to text: eft detokenize MODEL [ID...]"},
    {"template", eft_cmd_template, "render a chat template: eft template MODEL --messages FILE.json"},
    {"serve", eft_cmd_serve, "OpenAI/TEI-compatible HTTP server: eft serve --model MODEL [--port P] (--help)"},
    {"bench", eft_cmd_bench, "measure kernels against the machine and peers: eft bench kernels"},
};

int eft_cli_error(const char *cmd, const char *fmt, ...) {
    fprintf(stderr, "eft %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

static void usage(FILE *f) {
    fprintf(f, "eft %s — efficient transformers\n\nusage: eft COMMAND [ARGS]\n\ncommands:\n", eft_version());
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        fprintf(f, "  %-12s %s\n", k_commands[i].name, k_commands[i].summary);
    fprintf(f, "  %-12s %s\n", "version", "print the version");
    fprintf(f, "\nSet EFT_LOG=info or EFT_LOG=debug for more detail on stderr.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("eft %s\n", eft_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++) {
        if (!strcmp(argv[1], k_commands[i].name)) return k_commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "eft: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
