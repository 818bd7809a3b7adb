/*
 * buf.c — the growable byte buffer the server writes responses into (JSON, base64, SSE frames)
 * and the OpenAI-shaped error bodies. Writing JSON by hand here, rather than through jansson
 * objects, keeps a 1,000-vector embedding response to one buffer and no per-float allocation.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/srv.h"

void srv_buf_free(srv_buf *b) {
    free(b->data);
    *b = (srv_buf){0};
}

static bool grow(srv_buf *b, size_t extra) {
    if (b->oom) return false;
    if (b->len + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2) {
            b->oom = true;
            return false;
        }
        cap *= 2;
    }
    char *d = realloc(b->data, cap);
    if (!d) {
        b->oom = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

void srv_buf_put(srv_buf *b, const void *p, size_t n) {
    if (!grow(b, n)) return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

void srv_buf_puts(srv_buf *b, const char *s) { srv_buf_put(b, s, strlen(s)); }

void srv_buf_printf(srv_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        srv_buf_put(b, tmp, (size_t)n);
        return;
    }
    if (!grow(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t k;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) k = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) k = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) k = 4, min = 0x10000;
    else return 0;
    if (n < k) return 0;
    unsigned cp = c & (0x7F >> k);
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return k;
}

void srv_buf_json_str(srv_buf *b, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    srv_buf_put(b, "\"", 1);
    size_t run = 0; /* bytes copied verbatim in one go */
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t k = c >= 0x20 && c != '"' && c != '\\' ? utf8_len(p + i, n - i) : 0;
        if (k) {
            i += k;
            run += k;
            continue;
        }
        srv_buf_put(b, p + i - run, run);
        run = 0;
        switch (c) {
        case '"': srv_buf_put(b, "\\\"", 2); break;
        case '\\': srv_buf_put(b, "\\\\", 2); break;
        case '\n': srv_buf_put(b, "\\n", 2); break;
        case '\r': srv_buf_put(b, "\\r", 2); break;
        case '\t': srv_buf_put(b, "\\t", 2); break;
        default:
            if (c < 0x20) srv_buf_printf(b, "\\u%04x", c);
            else srv_buf_puts(b, "\xEF\xBF\xBD"); /* an invalid byte: U+FFFD, as the tokenizer reads it */
        }
        i++;
    }
    srv_buf_put(b, p + n - run, run);
    srv_buf_put(b, "\"", 1);
}

void srv_buf_float(srv_buf *b, float v) {
    if (!isfinite(v)) v = 0;
    /* 9 significant digits read back as the same float32. */
    srv_buf_printf(b, "%.9g", (double)v);
}

void srv_buf_base64(srv_buf *b, const uint8_t *p, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (!grow(b, (n + 2) / 3 * 4)) return;
    char *o = b->data + b->len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = tab[v >> 18], *o++ = tab[(v >> 12) & 63], *o++ = tab[(v >> 6) & 63], *o++ = tab[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *o++ = tab[v >> 18], *o++ = tab[(v >> 12) & 63], *o++ = '=', *o++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *o++ = tab[v >> 18], *o++ = tab[(v >> 12) & 63], *o++ = tab[(v >> 6) & 63], *o++ = '=';
    }
    b->len = (size_t)(o - b->data);
    b->data[b->len] = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */

const char *srv_error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 405: return "method_not_allowed";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

static void fail_v(srv_error *err, int status, const char *param, const char *fmt, va_list ap) {
    err->status = status;
    err->type = srv_error_type(status);
    err->code = NULL;
    err->tei_type = NULL;
    err->tei_status = 0;
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    vsnprintf(err->message, sizeof err->message, fmt, ap);
}

bool srv_fail(srv_error *err, int status, const char *param, const char *fmt, ...) {
    if (!err) return false;
    va_list ap;
    va_start(ap, fmt);
    fail_v(err, status, param, fmt, ap);
    va_end(ap);
    return false;
}

bool srv_fail_empty(srv_error *err, const char *param, const char *fmt, ...) {
    if (!err) return false;
    va_list ap;
    va_start(ap, fmt);
    fail_v(err, 400, param, fmt, ap);
    va_end(ap);
    err->tei_type = "Empty";
    return false;
}

char *srv_error_json(const srv_error *err, size_t *len) {
    srv_buf b = {0};
    srv_buf_puts(&b, "{\"error\":{\"message\":");
    srv_buf_json_str(&b, err->message, strlen(err->message));
    srv_buf_puts(&b, ",\"type\":");
    srv_buf_json_str(&b, err->type ? err->type : srv_error_type(err->status),
                     strlen(err->type ? err->type : srv_error_type(err->status)));
    srv_buf_puts(&b, ",\"param\":");
    if (err->param[0]) srv_buf_json_str(&b, err->param, strlen(err->param));
    else srv_buf_puts(&b, "null");
    srv_buf_puts(&b, ",\"code\":");
    if (err->code) srv_buf_json_str(&b, err->code, strlen(err->code));
    else srv_buf_puts(&b, "null");
    srv_buf_puts(&b, "}}\n");
    if (b.oom) {
        srv_buf_free(&b);
        return NULL;
    }
    *len = b.len;
    return b.data;
}

/* TEI's ErrorType names, with the status codes it answers them with: Validation 422,
 * Overloaded 429, Empty 400, Unhealthy 503, Tokenizer 422, Backend for the server's own
 * failures. TEI refuses a body over its limit with 413, so that stays; OpenAI's 400 for a
 * malformed request is a validation error (422) to TEI, as are too many inputs. */
char *srv_error_json_tei(const srv_error *err, int *status, size_t *len) {
    int st = err->status;
    const char *type;
    switch (st) {
    case 401: type = "Unauthorized"; break;
    case 429: type = "Overloaded"; break;
    case 503: type = "Unhealthy"; break;
    case 400: type = "Validation", st = 422; break;
    default: type = st >= 500 ? "Backend" : "Validation"; break;
    }
    if (err->tei_type) {
        type = err->tei_type;
        if (!strcmp(type, "Empty")) st = 400;
    }
    if (err->tei_status) st = err->tei_status;
    srv_buf b = {0};
    srv_buf_puts(&b, "{\"error\":");
    srv_buf_json_str(&b, err->message, strlen(err->message));
    srv_buf_puts(&b, ",\"error_type\":");
    srv_buf_json_str(&b, type, strlen(type));
    srv_buf_puts(&b, "}\n");
    if (b.oom) {
        srv_buf_free(&b);
        return NULL;
    }
    *status = st;
    *len = b.len;
    return b.data;
}
