/* cmd_template.c — placeholder until the template subcommand lands. */
#include "cli.h"

int eft_cmd_template(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return eft_cli_error("template", "not implemented yet");
}
