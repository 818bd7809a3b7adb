/* cmd_bench.c — placeholder until the bench subcommand lands. */
#include "cli.h"

int eft_cmd_bench(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return eft_cli_error("bench", "not implemented yet");
}
