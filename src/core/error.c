/*
 * error.c — status names, error values with messages, and the per-thread last error that
 * eft_last_error() returns. Messages say what was expected, what was found, and where.
 */
#include <stdio.h>
#include <string.h>

#include "core.h"

const char *eft_version(void) { return EFT_VERSION_STRING; }

const char *eft_status_str(eft_status status) {
    switch (status) {
    case EFT_OK: return "EFT_OK";
    case EFT_ERR_INVALID_ARGUMENT: return "EFT_ERR_INVALID_ARGUMENT";
    case EFT_ERR_OUT_OF_MEMORY: return "EFT_ERR_OUT_OF_MEMORY";
    case EFT_ERR_IO: return "EFT_ERR_IO";
    case EFT_ERR_NOT_FOUND: return "EFT_ERR_NOT_FOUND";
    case EFT_ERR_FORMAT: return "EFT_ERR_FORMAT";
    case EFT_ERR_UNSUPPORTED: return "EFT_ERR_UNSUPPORTED";
    case EFT_ERR_LIMIT: return "EFT_ERR_LIMIT";
    case EFT_ERR_INTERNAL: return "EFT_ERR_INTERNAL";
    }
    return "EFT_ERR_UNKNOWN";
}

static _Thread_local char tl_last_error[EFT__ERRMSG_MAX];

const char *eft_last_error(void) { return tl_last_error; }

eft_status eft__set_last_error(const eft__error *err) {
    if (!err) return EFT_OK;
    snprintf(tl_last_error, sizeof tl_last_error, "%s", err->msg);
    return err->status;
}

void eft__clear_last_error(void) { tl_last_error[0] = 0; }

eft_status eft__fail(eft__error *err, eft_status status, const char *fmt, ...) {
    if (err) {
        err->status = status;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return status;
}

eft_status eft__error_prefix(eft__error *err, const char *fmt, ...) {
    if (!err) return EFT_ERR_INTERNAL;
    char prefix[512], old[EFT__ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
    return err->status;
}

void eft__error_clear(eft__error *err) {
    if (err) {
        err->status = EFT_OK;
        err->msg[0] = 0;
    }
}
