/*
 * json.c — eft's side of jansson: its allocations go through eft's hook, documents parsed while
 * an allocation failed are refused (jansson silently drops characters when it cannot grow a
 * string), and small helpers every JSON reader shares.
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "core.h"
#include "json.h"

/* Allocation failures inside jansson on this thread, and whether we are inside one of its calls. */
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

static void json_free_hook(void *p) { eft__free(p); }

/* Route jansson through the hook from the first moment, before any other call. The hook reads the
 * current allocator on every call, so eft_set_allocator needs no second registration. */
__attribute__((constructor)) static void json_init(void) { json_set_alloc_funcs(json_alloc_hook, json_free_hook); }

bool eft__alloc_in_json(void) { return tl_in_json > 0; }

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

const char *eft__json_kind(const json_t *j) {
    if (!j) return "nothing";
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "?";
}
