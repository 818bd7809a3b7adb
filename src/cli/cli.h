/*
 * cli.h — the eft command-line tool's subcommands. Each subcommand lives in its own file
 * (cmd_<name>.c), talks only to the public C API (include/eft.h), prints results on stdout and
 * errors on stderr, and returns the process exit status.
 */
#ifndef EFT_CLI_H
#define EFT_CLI_H

#include "eft.h"

int eft_cmd_info(int argc, char **argv);
int eft_cmd_embed(int argc, char **argv);
int eft_cmd_tokenize(int argc, char **argv);
int eft_cmd_detokenize(int argc, char **argv);
int eft_cmd_template(int argc, char **argv);
int eft_cmd_bench(int argc, char **argv);
int eft_cmd_bench_embed(int argc, char **argv); /* eft bench embed, from eft_cmd_bench */

/* Prints "eft <cmd>: <message>" on stderr; returns 1 for use as an exit status. */
int eft_cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif /* EFT_CLI_H */
