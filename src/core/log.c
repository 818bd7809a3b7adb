/*
 * log.c — leveled logging to stderr or to an application callback. The level starts from the
 * EFT_LOG environment variable (error, warn, info, debug) and defaults to warn.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core.h"

static _Atomic int g_level = -1; /* -1: not read from the environment yet */
static eft_log_callback g_cb;
static void *g_cb_ud;

static int level_from_env(void) {
    const char *e = getenv("EFT_LOG");
    if (!e) return EFT_LOG_WARN;
    if (!strcasecmp(e, "error")) return EFT_LOG_ERROR;
    if (!strcasecmp(e, "warn") || !strcasecmp(e, "warning")) return EFT_LOG_WARN;
    if (!strcasecmp(e, "info")) return EFT_LOG_INFO;
    if (!strcasecmp(e, "debug")) return EFT_LOG_DEBUG;
    return EFT_LOG_WARN;
}

static int current_level(void) {
    int l = atomic_load(&g_level);
    if (l < 0) {
        l = level_from_env();
        atomic_store(&g_level, l);
    }
    return l;
}

void eft_log_set_level(eft_log_level level) { atomic_store(&g_level, (int)level); }
eft_log_level eft_log_get_level(void) { return (eft_log_level)current_level(); }

void eft_log_set_callback(eft_log_callback cb, void *user_data) {
    g_cb = cb;
    g_cb_ud = user_data;
}

bool eft__log_enabled(eft_log_level level) { return (int)level <= current_level(); }

void eft__log(eft_log_level level, const char *fmt, ...) {
    if (!eft__log_enabled(level)) return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (g_cb) {
        g_cb(level, buf, g_cb_ud);
        return;
    }
    static const char *names[] = {"error", "warn", "info", "debug"};
    fprintf(stderr, "eft %s: %s\n", names[level & 3], buf);
}
