/*
 * strmap.h — an open-addressing hash map from byte strings to 64-bit values. Keys are borrowed:
 * the caller keeps them alive (they usually point into a mapped file or a loaded JSON document).
 * Used for tensor-name lookup and, later, vocabularies.
 */
#ifndef EFT_STRMAP_H
#define EFT_STRMAP_H

#include "core.h"

typedef struct eft__strmap_slot {
    const char *key; /* NULL: empty */
    uint32_t len;
    uint32_t hash;
    uint64_t value;
} eft__strmap_slot;

typedef struct eft__strmap {
    eft__strmap_slot *slots;
    size_t cap; /* a power of two, or 0 */
    size_t count;
} eft__strmap;

uint32_t eft__hash_bytes(const void *data, size_t n);

/* Inserts or replaces; EFT_ERR_OUT_OF_MEMORY when growing fails (the map is unchanged then). */
eft_status eft__strmap_put(eft__strmap *m, const char *key, size_t len, uint64_t value);
/* Makes room for n keys in all, so that putting them rehashes nothing; EFT_ERR_OUT_OF_MEMORY
 * leaves the map unchanged. */
eft_status eft__strmap_reserve(eft__strmap *m, size_t n);
/* True and *value set when key is present. */
bool eft__strmap_get(const eft__strmap *m, const char *key, size_t len, uint64_t *value);
/* Bulk lookups in a map larger than the caches: hash the keys (eft__hash_bytes), prefetch each
 * one's first slot, then look them up with the hash. The misses of a batch then overlap instead
 * of queueing one behind the other, which is what loading a 262k-token vocabulary waits on. */
static inline void eft__strmap_prefetch(const eft__strmap *m, uint32_t hash) {
    if (m->cap) __builtin_prefetch(&m->slots[hash & (m->cap - 1)]);
}
/* eft__strmap_put with hash = eft__hash_bytes(key, len) computed by the caller (who may have
 * prefetched its slot: a put into a map that is sized already does not move the slots). */
eft_status eft__strmap_put_hashed(eft__strmap *m, const char *key, size_t len, uint32_t hash, uint64_t value);
/* eft__strmap_get with hash = eft__hash_bytes(key, len) computed by the caller. */
bool eft__strmap_get_hashed(const eft__strmap *m, const char *key, size_t len, uint32_t hash, uint64_t *value);
void eft__strmap_free(eft__strmap *m);

#endif /* EFT_STRMAP_H */
