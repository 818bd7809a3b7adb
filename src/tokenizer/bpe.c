/*
 * bpe.c — the BPE model as Hugging Face runs it: a word starts as one symbol per character
 * (byte tokens "<0xXX>" for characters missing from the vocabulary when byte_fallback is on,
 * unknown runs fused when fuse_unk is on), then the lowest-ranked adjacent pair is merged, the
 * leftmost first on ties, until no pair has a merge. A binary heap keeps this O(n log n), so very
 * long words cost no more than they must.
 */
#include <jansson.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

/* ---------------------------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------------------------- */


eft_status eft__bpe_add_merge(eft__model *m, const char *a, size_t alen, const char *b, size_t blen,
                              uint32_t rank, eft__error *err) {
    int32_t ia, ib, inew;
    if (!eft__vocab_get(&m->vocab, a, alen, &ia))
        return eft__fail(err, EFT_ERR_FORMAT, "BPE merge %u: \"%.*s\" is not in the vocabulary", rank,
                         (int)(alen > 100 ? 100 : alen), a);
    if (!eft__vocab_get(&m->vocab, b, blen, &ib))
        return eft__fail(err, EFT_ERR_FORMAT, "BPE merge %u: \"%.*s\" is not in the vocabulary", rank,
                         (int)(blen > 100 ? 100 : blen), b);
    /* The merged token drops the right part's continuation prefix. */
    size_t skip = 0;
    if (m->prefix_len && blen >= m->prefix_len && !memcmp(b, m->prefix, m->prefix_len)) skip = m->prefix_len;
    size_t n = alen + blen - skip;
    char stack[256];
    char *buf = n <= sizeof stack ? stack : eft__malloc(n);
    if (!buf) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    memcpy(buf, a, alen);
    memcpy(buf + alen, b + skip, blen - skip);
    bool found = eft__vocab_get(&m->vocab, buf, n, &inew);
    if (buf != stack) eft__free(buf);
    if (!found)
        return eft__fail(err, EFT_ERR_FORMAT, "BPE merge %u: \"%.*s\" + \"%.*s\" is not in the vocabulary", rank,
                         (int)(alen > 100 ? 100 : alen), a, (int)(blen > 100 ? 100 : blen), b);
    uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib, old;
    /* A repeated merge keeps its first (best) rank. */
    if (eft__u64map_get(&m->merges, key, &old)) return EFT_OK;
    if (!eft__u64map_put(&m->merges, key, (uint64_t)rank << 32 | (uint32_t)inew))
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    return EFT_OK;
}

#define META "\xE2\x96\x81" /* U+2581, SentencePiece's space */

/* Called once the vocabulary and merges are in. Also decides meta_split: SentencePiece-style
 * pipelines without a pre-tokenizer (Llama 2's Prepend + Replace, Gemma's Replace, Metaspace
 * with split false) hand the model the whole text as one word, and a heap over a megabyte of
 * symbols is slow and cache-bound. Every symbol BPE builds is a vocabulary token, so when no
 * token holds a character X directly before "\u2581" (X not "\u2581"), no symbol can cover an X
 * "\u2581" place in the text, and cutting the word there gives exactly the same tokens, in
 * linear time. The few X that some token does put there (Gemma has ">\u2581</") are kept in
 * meta_block and the word is not cut after them; more than 16 of them turns the cut off. */
void eft__bpe_init_bytes(eft__model *m) {
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        if (!eft__vocab_get(&m->vocab, name, 6, &m->byte_ids[b])) m->byte_ids[b] = -1;
    }
    m->meta_split = !m->prefix_len && !m->suffix_len;
    m->n_meta_block = 0;
    for (size_t id = 0; id < m->vocab.n && m->meta_split; id++) {
        if (m->vocab.tok_len[id] == UINT32_MAX) continue;
        const char *s = m->vocab.arena + m->vocab.tok_off[id];
        size_t len = m->vocab.tok_len[id];
        for (size_t i = 1; i + 3 <= len && m->meta_split; i++) {
            if (memcmp(s + i, META, 3)) continue;
            size_t p = i - 1;
            while (p > 0 && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
            int k;
            int32_t c = eft__utf8_decode(s + p, i - p, &k);
            if (c == 0x2581) continue;
            bool known = false;
            for (int b = 0; b < m->n_meta_block; b++) known |= m->meta_block[b] == c;
            if (known) continue;
            if (m->n_meta_block == 16) m->meta_split = false;
            else m->meta_block[m->n_meta_block++] = c;
        }
    }
}

/* The merges the scanner read; messages as on the jansson path (no string here holds a NUL). */
static eft_status load_merges_pre(eft__model *m, const eft__json_pre *pre, eft__error *err) {
    for (size_t i = 0; i < pre->n_merges; i++) {
        const eft__merge_entry *mg = &pre->merges[i];
        const char *a = mg->a, *b = mg->b;
        size_t alen = mg->alen, blen = mg->blen;
        if (!b) {
            const char *sp = memchr(a, ' ', alen);
            if (!sp)
                return eft__fail(err, EFT_ERR_FORMAT, "BPE merge %zu: \"%.*s\" has no space", i,
                                 (int)(alen > 100 ? 100 : alen), a);
            b = sp + 1;
            blen = alen - (size_t)(sp - a) - 1;
            alen = (size_t)(sp - a);
        }
        eft_status st = eft__bpe_add_merge(m, a, alen, b, blen, (uint32_t)i, err);
        if (st) return st;
    }
    return EFT_OK;
}

eft_status eft__bpe_load(eft__model *m, const json_t *j, eft__json_pre *pre, eft__error *err) {
    m->kind = EFT__MODEL_BPE;
    const json_t *dropout = json_object_get(j, "dropout");
    if (dropout && !json_is_null(dropout) && json_number_value(dropout) != 0.0)
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "BPE dropout %g is not supported (it is random by design)",
                         json_number_value(dropout));
    m->fuse_unk = eft__json_bool(j, "fuse_unk", false);
    m->byte_fallback = eft__json_bool(j, "byte_fallback", false);
    m->ignore_merges = eft__json_bool(j, "ignore_merges", false);
    size_t len;
    const char *s = eft__json_str(j, "continuing_subword_prefix", &len);
    if (s && len) {
        if (!(m->prefix = eft__strndup(s, len))) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        m->prefix_len = len;
    }
    s = eft__json_str(j, "end_of_word_suffix", &len);
    if (s && len) {
        if (!(m->suffix = eft__strndup(s, len))) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        m->suffix_len = len;
    }
    eft_status st = eft__vocab_load_object(&m->vocab, json_object_get(j, "vocab"), "BPE", pre, err);
    if (st) return st;
    const char *unk = eft__json_str(j, "unk_token", &len);
    if (unk && !eft__vocab_get(&m->vocab, unk, len, &m->unk_id)) m->unk_id = -1;
    const json_t *merges = json_object_get(j, "merges");
    if (!json_is_array(merges)) return eft__fail(err, EFT_ERR_FORMAT, "BPE model: \"merges\" must be an array");
    if (pre && pre->has_merges) {
        if ((st = load_merges_pre(m, pre, err))) return st;
        eft__bpe_init_bytes(m);
        return EFT_OK;
    }
    for (size_t i = 0; i < json_array_size(merges); i++) {
        const json_t *mg = json_array_get(merges, i);
        const char *a, *b;
        size_t alen, blen;
        if (json_is_string(mg)) {
            /* "a b": the older format, split at the first space */
            a = json_string_value(mg);
            size_t n = json_string_length(mg);
            const char *sp = memchr(a, ' ', n);
            if (!sp) return eft__fail(err, EFT_ERR_FORMAT, "BPE merge %zu: \"%.100s\" has no space", i, a);
            alen = (size_t)(sp - a);
            b = sp + 1;
            blen = n - alen - 1;
        } else if (json_is_array(mg) && json_array_size(mg) == 2 && json_is_string(json_array_get(mg, 0)) &&
                   json_is_string(json_array_get(mg, 1))) {
            a = json_string_value(json_array_get(mg, 0));
            alen = json_string_length(json_array_get(mg, 0));
            b = json_string_value(json_array_get(mg, 1));
            blen = json_string_length(json_array_get(mg, 1));
        } else {
            return eft__fail(err, EFT_ERR_FORMAT, "BPE merge %zu: expected \"a b\" or [\"a\", \"b\"]", i);
        }
        if ((st = eft__bpe_add_merge(m, a, alen, b, blen, (uint32_t)i, err))) return st;
    }
    eft__bpe_init_bytes(m);
    return EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Merging
 * ------------------------------------------------------------------------------------------- */

typedef struct sym {
    int32_t id;
    int32_t prev, next;
    uint32_t start, end; /* bytes of the word */
} sym;

typedef struct cand {
    uint32_t rank, pos;
    int32_t new_id;
} cand;

static bool cand_less(cand a, cand b) { return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos; }

typedef struct heap {
    cand *v;
    size_t n, cap;
} heap;

/* The caller has made room (heap_reserve). */
static bool heap_push(heap *h, cand c) {
    size_t i = h->n++;
    while (i > 0 && cand_less(c, h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = c;
    return true;
}

static cand heap_pop(heap *h) {
    cand top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && cand_less(h->v[c + 1], h->v[c])) c++;
        if (!cand_less(h->v[c], last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

static bool merge_lookup(const eft__model *m, int32_t a, int32_t b, uint32_t *rank, int32_t *new_id) {
    uint64_t v;
    if (!eft__u64map_get(&m->merges, (uint64_t)(uint32_t)a << 32 | (uint32_t)b, &v)) return false;
    *rank = (uint32_t)(v >> 32);
    *new_id = (int32_t)(uint32_t)v;
    return true;
}

typedef struct syms {
    sym *v;
    size_t n, cap;
    bool owned; /* v is on the heap (it starts on the caller's stack) */
} syms;

static bool sym_add(syms *s, int32_t id, uint32_t start, uint32_t end) {
    if (s->n == s->cap) {
        size_t cap = s->cap * 2;
        sym *v = eft__malloc_array(cap, sizeof *v);
        if (!v) return false;
        memcpy(v, s->v, s->n * sizeof *v);
        if (s->owned) eft__free(s->v);
        s->v = v;
        s->cap = cap;
        s->owned = true;
    }
    s->v[s->n] = (sym){id, (int32_t)s->n - 1, (int32_t)s->n + 1, start, end};
    s->n++;
    return true;
}

/* Grows a heap that starts on the stack. */
static bool heap_reserve(heap *h, bool *owned) {
    if (h->n < h->cap) return true;
    cand *v = eft__malloc_array(h->cap * 2, sizeof *v);
    if (!v) return false;
    memcpy(v, h->v, h->n * sizeof *v);
    if (*owned) eft__free(h->v);
    h->v = v;
    h->cap *= 2;
    *owned = true;
    return true;
}

/* BPE over one word (or one cut of it, at byte base of the word). */
static bool bpe_word(const eft__model *m, const char *s, size_t len, uint32_t base, eft__toks *out) {
    sym stack_syms[64];
    cand stack_heap[64];
    syms ss = {stack_syms, 0, 64, false};
    heap h = {stack_heap, 0, 64};
    bool ok = true, heap_owned = false;
    char buf_stack[128];
    /* Initial symbols: one per character; a run of unknown characters is held back in
     * [unk_start, unk_end) so that fuse_unk can make it one symbol. */
    int64_t unk_start = -1, unk_end = -1;
    for (size_t i = 0; i < len && ok;) {
        size_t k = (size_t)eft__utf8_len((unsigned char)s[i]);
        if (i + k > len) k = len - i;
        const char *piece = s + i;
        size_t plen = k;
        char *heapbuf = NULL;
        bool first = i == 0, last = i + k == len;
        if ((m->prefix_len && !first) || (m->suffix_len && last)) {
            size_t need = k + m->prefix_len + m->suffix_len;
            char *b = need <= sizeof buf_stack ? buf_stack : (heapbuf = eft__malloc(need));
            if (!b) {
                ok = false;
                break;
            }
            plen = 0;
            if (m->prefix_len && !first) memcpy(b, m->prefix, m->prefix_len), plen = m->prefix_len;
            memcpy(b + plen, s + i, k);
            plen += k;
            if (m->suffix_len && last) memcpy(b + plen, m->suffix, m->suffix_len), plen += m->suffix_len;
            piece = b;
        }
        int32_t id;
        bool found = eft__vocab_get(&m->vocab, piece, plen, &id);
        eft__free(heapbuf);
        bool bytes = false;
        if (!found && m->byte_fallback) {
            bytes = true;
            for (size_t b = 0; b < k; b++)
                if (m->byte_ids[(unsigned char)s[i + b]] < 0) bytes = false;
        }
        if (found || bytes) {
            if (unk_start >= 0) ok = sym_add(&ss, m->unk_id, (uint32_t)unk_start, (uint32_t)unk_end);
            unk_start = -1;
            if (found) ok = ok && sym_add(&ss, id, (uint32_t)i, (uint32_t)(i + k));
            for (size_t b = 0; bytes && b < k && ok; b++)
                ok = sym_add(&ss, m->byte_ids[(unsigned char)s[i + b]], (uint32_t)(i + b), (uint32_t)(i + b + 1));
        } else if (m->unk_id >= 0) {
            if (unk_start >= 0 && m->fuse_unk) {
                unk_end = (int64_t)(i + k);
            } else {
                if (unk_start >= 0) ok = sym_add(&ss, m->unk_id, (uint32_t)unk_start, (uint32_t)unk_end);
                unk_start = (int64_t)i;
                unk_end = (int64_t)(i + k);
            }
        }
        /* else: without an unknown token the character is dropped, as HF does */
        i += k;
    }
    if (ok && unk_start >= 0) ok = sym_add(&ss, m->unk_id, (uint32_t)unk_start, (uint32_t)unk_end);
    bool syms_owned = ss.owned;
    if (ok && ss.n) ss.v[ss.n - 1].next = -1;
    /* Seed the heap with every adjacent pair that has a merge. */
    for (size_t i = 0; ok && i + 1 < ss.n; i++) {
        uint32_t rank;
        int32_t nid;
        if (!merge_lookup(m, ss.v[i].id, ss.v[i + 1].id, &rank, &nid)) continue;
        ok = heap_reserve(&h, &heap_owned) && heap_push(&h, (cand){rank, (uint32_t)i, nid});
    }
    while (ok && h.n) {
        cand c = heap_pop(&h);
        sym *a = &ss.v[c.pos];
        if (a->start == a->end || a->next < 0) continue; /* merged away, or last */
        sym *b = &ss.v[a->next];
        uint32_t rank;
        int32_t nid;
        if (!merge_lookup(m, a->id, b->id, &rank, &nid) || nid != c.new_id) continue;
        a->id = nid;
        a->end = b->end;
        a->next = b->next;
        b->start = b->end; /* marks b as merged */
        if (b->next >= 0) ss.v[b->next].prev = (int32_t)c.pos;
        /* New candidate pairs on both sides. */
        for (int side = 0; side < 2 && ok; side++) {
            int32_t l = side == 0 ? a->prev : (int32_t)c.pos;
            int32_t r = side == 0 ? (int32_t)c.pos : a->next;
            if (l < 0 || r < 0) continue;
            if (!merge_lookup(m, ss.v[l].id, ss.v[r].id, &rank, &nid)) continue;
            ok = heap_reserve(&h, &heap_owned) && heap_push(&h, (cand){rank, (uint32_t)l, nid});
        }
    }
    for (int32_t i = ss.n ? 0 : -1; ok && i >= 0; i = ss.v[i].next)
        ok = eft__toks_add(out, ss.v[i].id, base + ss.v[i].start, base + ss.v[i].end);
    if (syms_owned) eft__free(ss.v);
    if (heap_owned) eft__free(h.v);
    return ok;
}

/* May the word be cut before the "\u2581" at byte i (i > 0)? See eft__bpe_init_bytes. */
static bool meta_cut(const eft__model *m, const char *s, size_t i) {
    size_t p = i - 1;
    while (p > 0 && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
    int k;
    int32_t c = eft__utf8_decode(s + p, i - p, &k);
    if (c < 0 || c == 0x2581) return false;
    for (int b = 0; b < m->n_meta_block; b++) {
        if (m->meta_block[b] == c) return false;
        /* A blocked '>' may end a "<0xNN>" or "<unk>" symbol: then a character that is not a
         * token of its own (it becomes bytes or unknown) may not be cut after either. */
        int32_t id;
        if (m->meta_block[b] == '>' && !eft__vocab_get(&m->vocab, s + p, i - p, &id)) return false;
    }
    return true;
}

bool eft__bpe_tokenize(const eft__model *m, const char *s, size_t len, eft__toks *out) {
    int32_t whole;
    if (m->ignore_merges && eft__vocab_get(&m->vocab, s, len, &whole))
        return eft__toks_add(out, whole, 0, (uint32_t)len);
    if (!m->meta_split || m->ignore_merges) return bpe_word(m, s, len, 0, out);
    size_t from = 0;
    for (size_t i = 1; i + 3 <= len; i++) {
        if (s[i] != META[0] || memcmp(s + i, META, 3) || !meta_cut(m, s, i)) continue;
        if (!bpe_word(m, s + from, i - from, (uint32_t)from, out)) return false;
        from = i;
    }
    return bpe_word(m, s + from, len - from, (uint32_t)from, out);
}
