/*
 * bench_common.c — what the model-level benchmarks (eft bench embed / generate / tokenize) share:
 * a monotonic clock, the load average they print so readers can judge the noise, where the Python
 * peer scripts (bench/peer_*.py) and the Python to run them are found, a quoted shell command line,
 * and the loop that runs a peer and hands each JSON line it prints to the bench.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

double eft_cli_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void eft_cli_loadavg(double load[3]) {
    load[0] = load[1] = load[2] = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return;
    if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = load[1] = load[2] = -1;
    fclose(f);
}

bool eft_cli_find_peer_script(const char *name, char *buf, size_t n) {
    /* $EFT_BENCH_DIR first, then bench/ under the current directory (the source tree), then
     * bench/ next to or above the executable (build/eft of a source tree). */
    const char *dir = getenv("EFT_BENCH_DIR");
    if (dir && snprintf(buf, n, "%s/%s", dir, name) < (int)n && access(buf, R_OK) == 0) return true;
    if (snprintf(buf, n, "bench/%s", name) < (int)n && access(buf, R_OK) == 0) return true;
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return false;
    exe[len] = '\0';
    for (int up = 0; up < 3; up++) {
        char *slash = strrchr(exe, '/');
        if (!slash) return false;
        *slash = '\0';
        if (snprintf(buf, n, "%s/bench/%s", exe, name) < (int)n && access(buf, R_OK) == 0) return true;
    }
    return false;
}

const char *eft_cli_peer_python(const char *given) {
    if (given) return given;
    const char *env = getenv("EFT_PEER_PYTHON");
    if (env && *env) return env;
    return access("tools/ref/.venv/bin/python", X_OK) == 0 ? "tools/ref/.venv/bin/python" : "python3";
}

bool eft_cli_shell_quote(char *out, size_t n, const char *s) {
    /* Single quotes keep everything literal; a quote inside closes, escapes and reopens. */
    size_t k = 0;
    if (k + 1 >= n) return false;
    out[k++] = '\'';
    for (const char *p = s; *p; p++) {
        const char *piece = *p == '\'' ? "'\\''" : NULL;
        size_t pl = piece ? 4 : 1;
        if (k + pl + 2 >= n) return false;
        if (piece) memcpy(out + k, piece, pl);
        else out[k] = *p;
        k += pl;
    }
    out[k++] = '\'';
    out[k] = '\0';
    return true;
}

int eft_cli_run_peer(const char *cmd, void (*on_object)(struct json_t *obj, void *user), void *user) {
    fprintf(stderr, "eft bench: running the peer: %s\n", cmd);
    FILE *pp = popen(cmd, "r");
    if (!pp) return -1;
    char line[4096];
    while (fgets(line, sizeof line, pp)) {
        json_error_t jerr;
        json_t *j = json_loads(line, 0, &jerr);
        /* Anything that is not one JSON object per line is the peer talking: pass it on. */
        if (json_is_object(j)) on_object(j, user);
        else fputs(line, stderr);
        json_decref(j);
    }
    int rc = pclose(pp);
    if (rc != 0) fprintf(stderr, "eft bench: the peer exited with status %d\n", rc);
    return rc;
}
