/*
 * json.h — what every JSON reader of eft shares on top of jansson (json.c).
 */
#ifndef EFT_CORE_JSON_H
#define EFT_CORE_JSON_H

#include <stdbool.h>

#include <jansson.h>

/* Parses like json_loadb, but refuses a document parsed while an allocation failed: jansson drops
 * characters silently when it cannot grow a string, so such a document may be corrupt. Then it
 * returns NULL with err->text "out of memory" and eft__json_oom() is true. */
json_t *eft__json_loadb(const char *buf, size_t len, size_t flags, json_error_t *err);
/* True when the last eft__json_loadb on this thread failed for lack of memory. */
bool eft__json_oom(void);
/* True while the allocator is being called on jansson's behalf. jansson 2.14 crashes when an
 * allocation fails inside json_loadb (a write through a stale pointer), so out-of-memory tests
 * inject failures only into eft's own allocations; see tests/unit/test_model.c. */
bool eft__alloc_in_json(void);
/* "an object", "a string", ... for messages that say what was found instead. */
const char *eft__json_kind(const json_t *j);

#endif /* EFT_CORE_JSON_H */
