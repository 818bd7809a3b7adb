/*
 * alloc.c — the one place the library allocates heap memory. The hook is replaceable through
 * eft_set_allocator so that applications can account for memory and tests can inject
 * out-of-memory at any allocation. jansson is routed through the same hook.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core.h"

static void *libc_alloc(size_t n, void *ud) { (void)ud; return malloc(n); }
static void *libc_realloc(void *p, size_t n, void *ud) { (void)ud; return realloc(p, n); }
static void libc_free(void *p, void *ud) { (void)ud; free(p); }

static eft_allocator g_alloc = {libc_alloc, libc_realloc, libc_free, NULL};

/* Allocation failures inside jansson on this thread; see eft__json_loadb. */
static _Thread_local unsigned long tl_json_failures;
static _Thread_local bool tl_json_oom;

static _Thread_local int tl_in_json;

static void *json_alloc_hook(size_t n) {
    tl_in_json++;
    void *p = eft__malloc(n);
    tl_in_json--;
    if (!p) tl_json_failures++;
    return p;
}

bool eft__alloc_in_json(void) { return tl_in_json > 0; }
static void json_free_hook(void *p) { eft__free(p); }

void eft_set_allocator(const eft_allocator *a) {
    if (a && a->alloc && a->realloc && a->free) {
        g_alloc = *a;
    } else {
        g_alloc = (eft_allocator){libc_alloc, libc_realloc, libc_free, NULL};
    }
    json_set_alloc_funcs(json_alloc_hook, json_free_hook);
}

void eft_free(void *ptr) { eft__free(ptr); }

void *eft__malloc(size_t n) {
    /* malloc(0) may return NULL legitimately; ask for one byte so NULL always means failure. */
    return g_alloc.alloc(n ? n : 1, g_alloc.user_data);
}

void *eft__realloc(void *p, size_t n) { return g_alloc.realloc(p, n ? n : 1, g_alloc.user_data); }

void eft__free(void *p) {
    if (p) g_alloc.free(p, g_alloc.user_data);
}

void *eft__malloc_array(size_t count, size_t size) {
    size_t n;
    if (__builtin_mul_overflow(count, size, &n)) return NULL;
    return eft__malloc(n);
}

void *eft__calloc(size_t count, size_t size) {
    size_t n;
    if (__builtin_mul_overflow(count, size, &n)) return NULL;
    void *p = eft__malloc(n);
    if (p) memset(p, 0, n);
    return p;
}

char *eft__strndup(const char *s, size_t n) {
    char *d = eft__malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *eft__strdup(const char *s) { return eft__strndup(s, strlen(s)); }

char *eft__asprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = eft__malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

json_t *eft__json_loadb(const char *buf, size_t len, size_t flags, json_error_t *err) {
    unsigned long before = tl_json_failures;
    json_t *j = json_loadb(buf, len, flags, err);
    tl_json_oom = tl_json_failures != before;
    if (tl_json_oom) {
        json_decref(j);
        if (err) {
            memset(err, 0, sizeof *err);
            err->line = err->column = err->position = -1;
            snprintf(err->text, sizeof err->text, "out of memory");
        }
        return NULL;
    }
    return j;
}

bool eft__json_oom(void) { return tl_json_oom; }

/* Route jansson through the hook from the first moment, before any eft_set_allocator call. */
__attribute__((constructor)) static void alloc_init(void) {
    json_set_alloc_funcs(json_alloc_hook, json_free_hook);
}
