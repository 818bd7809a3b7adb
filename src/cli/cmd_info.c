/* cmd_info.c — `eft info MODEL [--json]`: what a model is, as read from its files. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int eft_cmd_info(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return eft_cli_error("info", "not implemented yet");
}
