/*
 * alloc.c — the one place the library allocates heap memory. The hook is replaceable through
 * eft_set_allocator so that applications can account for memory and tests can inject
 * out-of-memory at any allocation. jansson is routed through the same hook (json.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

static void *libc_alloc(size_t n, void *ud) { (void)ud; return malloc(n); }
static void *libc_realloc(void *p, size_t n, void *ud) { (void)ud; return realloc(p, n); }
static void libc_free(void *p, void *ud) { (void)ud; free(p); }

static eft_allocator g_alloc = {libc_alloc, libc_realloc, libc_free, NULL};

void eft_set_allocator(const eft_allocator *a) {
    if (a && a->alloc && a->realloc && a->free) {
        g_alloc = *a;
    } else {
        g_alloc = (eft_allocator){libc_alloc, libc_realloc, libc_free, NULL};
    }
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
