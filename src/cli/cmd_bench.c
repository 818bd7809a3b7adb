/*
 * cmd_bench.c — `eft bench kernels [--threads N] [--seconds S] [--quick] [--no-peer]`: prints the
 * kernel benchmark of the public eft_bench_kernels() on stdout. `eft bench embed`, `eft bench
 * generate` and `eft bench tokenize` live in cmd_bench_embed.c, cmd_bench_generate.c and
 * cmd_bench_tokenize.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void print_line(const char *line, void *user_data) {
    FILE *f = user_data;
    fprintf(f, "%s\n", line);
    fflush(f);
}

static int usage(void) {
    return eft_cli_error("bench", "usage: eft bench kernels [--threads N] [--seconds S] [--quick] [--no-peer] | eft bench embed|generate|tokenize MODEL [...] | eft bench serve [...]");
}

int eft_cmd_bench(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "embed")) return eft_cmd_bench_embed(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "serve")) return eft_cmd_bench_serve(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "generate")) return eft_cmd_bench_generate(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "tokenize")) return eft_cmd_bench_tokenize(argc - 1, argv + 1);
    if (argc < 2 || strcmp(argv[1], "kernels") != 0) return usage();
    eft_bench_params p = eft_bench_params_default();
    for (int i = 2; i < argc; i++) {
        char *end = NULL;
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1024) return eft_cli_error("bench", "--threads wants 1..1024, got '%s'", argv[i]);
            p.n_threads = (int)v;
        } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            double v = strtod(argv[++i], &end);
            if (*end || !(v > 0 && v <= 60)) return eft_cli_error("bench", "--seconds wants a number in (0, 60], got '%s'", argv[i]);
            p.min_seconds = v;
        } else if (!strcmp(argv[i], "--quick")) {
            p.quick = 1;
        } else if (!strcmp(argv[i], "--no-peer")) {
            p.no_peer = 1;
        } else {
            return usage();
        }
    }
    eft_status st = eft_bench_kernels(&p, print_line, stdout);
    if (st != EFT_OK) return eft_cli_error("bench", "%s", eft_last_error());
    return 0;
}
