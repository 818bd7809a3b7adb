/* cmd_tokenize.c — placeholder until the tokenize subcommand lands. */
#include "cli.h"

int eft_cmd_tokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return eft_cli_error("tokenize", "not implemented yet");
}
int eft_cmd_detokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return eft_cli_error("detokenize", "not implemented yet");
}
