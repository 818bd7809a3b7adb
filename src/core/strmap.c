/*
 * strmap.c — linear-probing hash map over borrowed byte-string keys (FNV-1a hashes), kept at most
 * half full.
 */
#include <string.h>

#include "strmap.h"

uint32_t eft__hash_bytes(const void *data, size_t n) {
    const uint8_t *p = data;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

static eft_status rehash(eft__strmap *m, size_t ncap) {
    eft__strmap_slot *ns = eft__calloc(ncap, sizeof *ns);
    if (!ns) return EFT_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < m->cap; i++) {
        eft__strmap_slot *s = &m->slots[i];
        if (!s->key) continue;
        size_t j = s->hash & (ncap - 1);
        while (ns[j].key) j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    eft__free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return EFT_OK;
}

static eft_status grow(eft__strmap *m) { return rehash(m, m->cap ? m->cap * 2 : 16); }

eft_status eft__strmap_reserve(eft__strmap *m, size_t n) {
    if (n > SIZE_MAX / 4 / sizeof(eft__strmap_slot)) return EFT_ERR_OUT_OF_MEMORY;
    size_t cap = m->cap ? m->cap : 16;
    while (cap < 2 * n) cap *= 2; /* at most half full, as put keeps it */
    return cap > m->cap ? rehash(m, cap) : EFT_OK;
}

eft_status eft__strmap_put(eft__strmap *m, const char *key, size_t len, uint64_t value) {
    return eft__strmap_put_hashed(m, key, len, len > UINT32_MAX ? 0 : eft__hash_bytes(key, len), value);
}

eft_status eft__strmap_put_hashed(eft__strmap *m, const char *key, size_t len, uint32_t h, uint64_t value) {
    if (len > UINT32_MAX) return EFT_ERR_LIMIT;
    if ((m->count + 1) * 2 > m->cap) {
        eft_status st = grow(m);
        if (st) return st;
    }
    size_t j = h & (m->cap - 1);
    while (m->slots[j].key) {
        eft__strmap_slot *s = &m->slots[j];
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) {
            s->value = value;
            return EFT_OK;
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->slots[j] = (eft__strmap_slot){key, (uint32_t)len, h, value};
    m->count++;
    return EFT_OK;
}

bool eft__strmap_get(const eft__strmap *m, const char *key, size_t len, uint64_t *value) {
    return m->cap && eft__strmap_get_hashed(m, key, len, eft__hash_bytes(key, len), value);
}

bool eft__strmap_get_hashed(const eft__strmap *m, const char *key, size_t len, uint32_t h, uint64_t *value) {
    if (!m->cap) return false;
    size_t j = h & (m->cap - 1);
    while (m->slots[j].key) {
        const eft__strmap_slot *s = &m->slots[j];
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) {
            if (value) *value = s->value;
            return true;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return false;
}

void eft__strmap_free(eft__strmap *m) {
    eft__free(m->slots);
    memset(m, 0, sizeof *m);
}
