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
int eft_cmd_generate(int argc, char **argv);
int eft_cmd_compile(int argc, char **argv);
int eft_cmd_tokenize(int argc, char **argv);
int eft_cmd_detokenize(int argc, char **argv);
int eft_cmd_template(int argc, char **argv);
int eft_cmd_bench(int argc, char **argv);
int eft_cmd_serve(int argc, char **argv);
int eft_cmd_perplexity(int argc, char **argv);
int eft_cmd_bench_embed(int argc, char **argv);    /* eft bench embed, from eft_cmd_bench */
int eft_cmd_bench_generate(int argc, char **argv); /* eft bench generate, from eft_cmd_bench */
int eft_cmd_bench_serve(int argc, char **argv);    /* eft bench serve, from eft_cmd_bench */
int eft_cmd_bench_tokenize(int argc, char **argv); /* eft bench tokenize, from eft_cmd_bench */

/* bench_common.c: shared by the model-level benchmarks. */
double eft_cli_now_s(void);              /* monotonic seconds */
void eft_cli_loadavg(double load[3]);    /* 1, 5, 15 minutes; -1 when unknown */
/* Finds bench/<name> ($EFT_BENCH_DIR, ./bench, or bench/ near the executable) into buf. */
bool eft_cli_find_peer_script(const char *name, char *buf, size_t n);
/* given, else $EFT_PEER_PYTHON, else tools/ref/.venv/bin/python when present, else python3. */
const char *eft_cli_peer_python(const char *given);
/* s in single quotes for a shell command line; false when out (n bytes) is too small. */
bool eft_cli_shell_quote(char *out, size_t n, const char *s);
/* Runs cmd with popen and calls on_object for every line of its stdout that is a JSON object (other
 * lines go to stderr); returns pclose's status, -1 when it could not start. */
struct json_t;
int eft_cli_run_peer(const char *cmd, void (*on_object)(struct json_t *obj, void *user), void *user);

/* Prints "eft <cmd>: <message>" on stderr; returns 1 for use as an exit status. */
int eft_cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif /* EFT_CLI_H */
