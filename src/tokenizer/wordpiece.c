/*
 * wordpiece.c — the vocabulary every model shares (id <-> token text), the small integer hash
 * map BPE merges use, model loading dispatch, and the WordPiece model (BERT's greedy
 * longest-match-first with a "##" continuation prefix), exactly as Hugging Face runs it; also
 * the WordLevel model (a word is a token or the unknown token).
 */
#include <jansson.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

/* Ids above this are refused: a hostile file must not make us allocate per-id tables of GBs. */
#define EFT__MAX_VOCAB_ID (1u << 24)

/* ---------------------------------------------------------------------------------------------
 * Vocabulary
 * ------------------------------------------------------------------------------------------- */

/* Grows the per-id tables to hold id (doubling from 1024). */
static eft_status grow_ids(eft__vocab *v, size_t id, eft__error *err) {
    if (id < v->n) return EFT_OK;
    size_t n = v->n ? v->n : 1024;
    while (n <= id) n *= 2;
    uint32_t *o = eft__realloc(v->tok_off, n * sizeof *o);
    if (!o) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    v->tok_off = o;
    uint32_t *l = eft__realloc(v->tok_len, n * sizeof *l);
    if (!l) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    v->tok_len = l;
    double *sc = eft__realloc(v->scores, n * sizeof *sc);
    if (!sc) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    v->scores = sc;
    for (size_t i = v->n; i < n; i++) {
        v->tok_len[i] = UINT32_MAX;
        v->tok_off[i] = 0;
        v->scores[i] = 0;
    }
    v->n = n;
    return EFT_OK;
}

/* Grows the text arena to hold need bytes in all (doubling from 64 KB). */
static eft_status grow_arena(eft__vocab *v, size_t need, eft__error *err) {
    if (need <= v->arena_cap) return EFT_OK;
    size_t cap = v->arena_cap ? v->arena_cap : 1 << 16;
    while (cap < need) cap *= 2;
    if (cap >= UINT32_MAX) return eft__fail(err, EFT_ERR_LIMIT, "the vocabulary's text is over 4 GB");
    char *a = eft__realloc(v->arena, cap);
    if (!a) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    v->arena = a;
    v->arena_cap = cap;
    v->map.count = 0; /* keys moved: the map is rebuilt by eft__vocab_index */
    return EFT_OK;
}

eft_status eft__vocab_set(eft__vocab *v, int32_t id, const char *s, size_t len, eft__error *err) {
    if (id < 0 || (uint32_t)id >= EFT__MAX_VOCAB_ID)
        return eft__fail(err, EFT_ERR_LIMIT, "token id %d is outside 0..%u", id, EFT__MAX_VOCAB_ID - 1);
    if (len >= UINT32_MAX / 2) return eft__fail(err, EFT_ERR_LIMIT, "a %zu-byte token", len);
    eft_status st = grow_ids(v, (size_t)id, err);
    if (!st) st = grow_arena(v, v->arena_len + len + 1, err);
    if (st) return st;
    memcpy(v->arena + v->arena_len, s, len);
    v->arena[v->arena_len + len] = 0;
    v->tok_off[id] = (uint32_t)v->arena_len;
    v->tok_len[id] = (uint32_t)len;
    v->arena_len += len + 1;
    return EFT_OK;
}

eft_status eft__vocab_reserve(eft__vocab *v, int32_t max_id, size_t bytes, eft__error *err) {
    if (max_id >= 0 && (uint32_t)max_id < EFT__MAX_VOCAB_ID) {
        eft_status st = grow_ids(v, (size_t)max_id, err);
        if (st) return st;
    }
    if (bytes >= UINT32_MAX) return eft__fail(err, EFT_ERR_LIMIT, "the vocabulary's text is over 4 GB");
    return grow_arena(v, v->arena_len + bytes, err);
}

/* Builds the text -> id map over the arena; called once all tokens are in. Where two ids share
 * a text the larger id wins, as when HF builds its map from a list. */
static eft_status vocab_index(eft__vocab *v, eft__error *err) {
    eft__strmap_free(&v->map);
    memset(&v->map, 0, sizeof v->map);
    size_t live = 0;
    for (size_t i = 0; i < v->n; i++) live += v->tok_len[i] != UINT32_MAX;
    /* Sized once: growing step by step rehashes every key several times. */
    if (eft__strmap_reserve(&v->map, live)) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    /* Each key's slot is fetched AHEAD keys before its put: a 262k-token vocabulary's table is
     * 12 MiB, and one miss after another was most of building it. */
    enum { AHEAD = 16 };
    uint32_t ring[AHEAD];
    for (size_t i = 0; i < v->n + AHEAD; i++) {
        size_t j = i - AHEAD; /* put key j, then hash key i into the ring entry j had */
        if (i >= AHEAD && v->tok_len[j] != UINT32_MAX &&
            eft__strmap_put_hashed(&v->map, v->arena + v->tok_off[j], v->tok_len[j], ring[j % AHEAD], j))
            return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        if (i < v->n && v->tok_len[i] != UINT32_MAX) {
            ring[i % AHEAD] = eft__hash_bytes(v->arena + v->tok_off[i], v->tok_len[i]);
            eft__strmap_prefetch(&v->map, ring[i % AHEAD]);
        }
    }
    return EFT_OK;
}

bool eft__vocab_get(const eft__vocab *v, const char *s, size_t len, int32_t *id) {
    uint64_t x;
    if (!eft__strmap_get(&v->map, s, len, &x)) return false;
    *id = (int32_t)x;
    return true;
}

const char *eft__vocab_token(const eft__vocab *v, int32_t id, size_t *len) {
    if (id < 0 || (size_t)id >= v->n || v->tok_len[id] == UINT32_MAX) return NULL;
    if (len) *len = v->tok_len[id];
    return v->arena + v->tok_off[id];
}

void eft__vocab_free(eft__vocab *v) {
    eft__free(v->arena);
    eft__free(v->tok_off);
    eft__free(v->tok_len);
    eft__free(v->scores);
    eft__strmap_free(&v->map);
    memset(v, 0, sizeof *v);
}

/* Loads the entries the scanner read. A repeated key, or two keys with one id, leave fewer
 * texts in the map than entries; jansson's handling of those (the last value of a repeated key
 * wins, in the first one's place) is not reproduced here: the caller declines instead. */
static eft_status vocab_load_pre(eft__vocab *v, eft__json_pre *pre, eft__error *err) {
    eft_status st = eft__vocab_reserve(v, pre->max_id, pre->vocab_bytes, err);
    for (size_t i = 0; !st && i < pre->n_vocab; i++)
        st = eft__vocab_set(v, pre->vocab[i].id, pre->vocab[i].s, pre->vocab[i].len, err);
    if (!st) st = vocab_index(v, err);
    if (!st && v->map.count != pre->n_vocab) {
        pre->declined = true;
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "the vocabulary repeats a token or an id");
    }
    return st;
}

/* Loads a {"token": id, ...} object. */
static eft_status vocab_load_object(eft__vocab *v, const json_t *vocab, const char *model, eft__json_pre *pre,
                                    eft__error *err) {
    if (!json_is_object(vocab)) return eft__fail(err, EFT_ERR_FORMAT, "%s model: \"vocab\" must be an object", model);
    if (pre && pre->has_vocab) return vocab_load_pre(v, pre, err);
    const char *key;
    json_t *val;
    void *iter = json_object_iter((json_t *)vocab);
    while (iter) {
        key = json_object_iter_key(iter);
        val = json_object_iter_value(iter);
        if (!json_is_integer(val))
            return eft__fail(err, EFT_ERR_FORMAT, "%s model: the id of token \"%.100s\" is not an integer", model, key);
        json_int_t id = json_integer_value(val);
        if (id < 0 || id >= EFT__MAX_VOCAB_ID)
            return eft__fail(err, EFT_ERR_LIMIT, "%s model: token \"%.100s\" has id %lld, outside 0..%u", model,
                             key, (long long)id, EFT__MAX_VOCAB_ID - 1);
        eft_status st = eft__vocab_set(v, (int32_t)id, key, json_object_iter_key_len(iter), err);
        if (st) return st;
        iter = json_object_iter_next((json_t *)vocab, iter);
    }
    return vocab_index(v, err);
}

eft_status eft__vocab_index(eft__vocab *v, eft__error *err) { return vocab_index(v, err); }
eft_status eft__vocab_load_object(eft__vocab *v, const json_t *vocab, const char *model, eft__json_pre *pre,
                                  eft__error *err) {
    return vocab_load_object(v, vocab, model, pre, err);
}

/* ---------------------------------------------------------------------------------------------
 * u64 -> u64 map (open addressing, linear probing)
 * ------------------------------------------------------------------------------------------- */

static size_t mix64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k;
}

static bool u64map_rehash(eft__u64map *m, size_t cap) {
    uint64_t *k = eft__malloc_array(cap, sizeof *k), *v = eft__malloc_array(cap, sizeof *v);
    if (!k || !v) {
        eft__free(k);
        eft__free(v);
        return false;
    }
    memset(k, 0xFF, cap * sizeof *k);
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == UINT64_MAX) continue;
        size_t h = mix64(m->keys[i]) & (cap - 1);
        while (k[h] != UINT64_MAX) h = (h + 1) & (cap - 1);
        k[h] = m->keys[i];
        v[h] = m->vals[i];
    }
    eft__free(m->keys);
    eft__free(m->vals);
    m->keys = k;
    m->vals = v;
    m->cap = cap;
    return true;
}

bool eft__u64map_reserve(eft__u64map *m, size_t n) {
    if (n > SIZE_MAX / 4 / sizeof(uint64_t)) return false;
    size_t cap = m->cap ? m->cap : 1024;
    while (cap < 2 * n) cap *= 2; /* at most half full, as put keeps it */
    return cap > m->cap ? u64map_rehash(m, cap) : true;
}

void eft__u64map_prefetch(const eft__u64map *m, uint64_t key) {
    if (!m->cap) return;
    size_t h = mix64(key) & (m->cap - 1);
    __builtin_prefetch(&m->keys[h], 1);
    __builtin_prefetch(&m->vals[h], 1);
}

bool eft__u64map_put(eft__u64map *m, uint64_t key, uint64_t val) {
    if ((m->count + 1) * 2 > m->cap && !u64map_rehash(m, m->cap ? m->cap * 2 : 1024)) return false;
    size_t h = mix64(key) & (m->cap - 1);
    while (m->keys[h] != UINT64_MAX && m->keys[h] != key) h = (h + 1) & (m->cap - 1);
    if (m->keys[h] == UINT64_MAX) m->count++;
    m->keys[h] = key;
    m->vals[h] = val;
    return true;
}

bool eft__u64map_get(const eft__u64map *m, uint64_t key, uint64_t *val) {
    if (!m->cap) return false;
    size_t h = mix64(key) & (m->cap - 1);
    while (m->keys[h] != UINT64_MAX) {
        if (m->keys[h] == key) {
            *val = m->vals[h];
            return true;
        }
        h = (h + 1) & (m->cap - 1);
    }
    return false;
}

void eft__u64map_free(eft__u64map *m) {
    eft__free(m->keys);
    eft__free(m->vals);
    memset(m, 0, sizeof *m);
}

bool eft__toks_add(eft__toks *ts, int32_t id, uint32_t start, uint32_t end) {
    if (ts->n == ts->cap) {
        size_t cap = ts->cap ? ts->cap * 2 : 64;
        eft__tok *t = eft__realloc(ts->t, cap * sizeof *t);
        if (!t) return false;
        ts->t = t;
        ts->cap = cap;
    }
    ts->t[ts->n++] = (eft__tok){id, start, end};
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Model dispatch
 * ------------------------------------------------------------------------------------------- */

/* ---------------------------------------------------------------------------------------------
 * WordLevel: one token per pre-tokenized word, or the unknown token
 * ------------------------------------------------------------------------------------------- */

static eft_status wordlevel_load(eft__model *m, const json_t *j, eft__json_pre *pre, eft__error *err) {
    m->kind = EFT__MODEL_WORD_LEVEL;
    eft_status st = vocab_load_object(&m->vocab, json_object_get(j, "vocab"), "WordLevel", pre, err);
    if (st) return st;
    size_t len;
    const char *unk = eft__json_str(j, "unk_token", &len);
    if (!unk) unk = "<unk>", len = 5;
    if (!eft__vocab_get(&m->vocab, unk, len, &m->unk_id)) m->unk_id = -1;
    return EFT_OK;
}

/* HF fails the whole encode on a word outside a vocabulary without its unknown token; eft drops
 * the word, as it does for WordPiece (the policy for text a vocabulary cannot express). */
static bool wordlevel_tokenize(const eft__model *m, const char *s, size_t len, eft__toks *out) {
    int32_t id;
    if (eft__vocab_get(&m->vocab, s, len, &id)) return eft__toks_add(out, id, 0, (uint32_t)len);
    return m->unk_id < 0 || eft__toks_add(out, m->unk_id, 0, (uint32_t)len);
}

eft_status eft__model_load(eft__model *m, const json_t *j, eft__json_pre *pre, eft__error *err) {
    memset(m, 0, sizeof *m);
    m->unk_id = -1;
    if (!json_is_object(j)) return eft__fail(err, EFT_ERR_FORMAT, "tokenizer.json has no \"model\" object");
    const char *type = eft__json_str(j, "type", NULL);
    /* Files from tokenizers < 0.10 have no "type"; their shape tells the model. */
    if (!type) {
        if (json_object_get(j, "merges")) type = "BPE";
        else if (json_is_array(json_object_get(j, "vocab"))) type = "Unigram";
        else if (json_object_get(j, "continuing_subword_prefix")) type = "WordPiece";
        else return eft__fail(err, EFT_ERR_FORMAT, "tokenizer.json: the model has no \"type\"");
    }
    /* The scanner reads an object "vocab" and an array "merges"; a model that has either in
     * another shape, or a Unigram (whose "vocab" is an array), takes the jansson path. */
    if (pre && !strcmp(type, "Unigram")) pre->declined = true;
    if (pre && pre->declined) return eft__fail(err, EFT_ERR_UNSUPPORTED, "declined");
    if (!strcmp(type, "WordPiece")) return eft__wordpiece_load(m, j, pre, err);
    if (!strcmp(type, "BPE")) return eft__bpe_load(m, j, pre, err);
    if (!strcmp(type, "Unigram")) return eft__unigram_load(m, j, err);
    if (!strcmp(type, "WordLevel")) return wordlevel_load(m, j, pre, err);
    return eft__fail(err, EFT_ERR_UNSUPPORTED, "tokenizer model \"%s\" is not supported", type);
}

void eft__model_free(eft__model *m) {
    eft__vocab_free(&m->vocab);
    eft__free(m->prefix);
    eft__free(m->suffix);
    eft__u64map_free(&m->merges);
    memset(m, 0, sizeof *m);
}

bool eft__model_tokenize(const eft__model *m, const char *s, size_t len, eft__toks *out) {
    switch (m->kind) {
    case EFT__MODEL_WORDPIECE: return eft__wordpiece_tokenize(m, s, len, out);
    case EFT__MODEL_BPE: return eft__bpe_tokenize(m, s, len, out);
    case EFT__MODEL_UNIGRAM: return eft__unigram_tokenize(m, s, len, out);
    case EFT__MODEL_WORD_LEVEL: return wordlevel_tokenize(m, s, len, out);
    }
    return false;
}

/* ---------------------------------------------------------------------------------------------
 * WordPiece
 * ------------------------------------------------------------------------------------------- */

eft_status eft__wordpiece_load(eft__model *m, const json_t *j, eft__json_pre *pre, eft__error *err) {
    m->kind = EFT__MODEL_WORDPIECE;
    size_t len;
    const char *p = eft__json_str(j, "continuing_subword_prefix", &len);
    if (!p) p = "##", len = 2;
    if (!(m->prefix = eft__strndup(p, len))) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    m->prefix_len = len;
    const json_t *mx = json_object_get(j, "max_input_chars_per_word");
    m->max_input_chars = json_is_integer(mx) && json_integer_value(mx) > 0 ? (size_t)json_integer_value(mx) : 100;
    eft_status st = vocab_load_object(&m->vocab, json_object_get(j, "vocab"), "WordPiece", pre, err);
    if (st) return st;
    const char *unk = eft__json_str(j, "unk_token", &len);
    if (!unk) unk = "[UNK]", len = 5;
    if (!eft__vocab_get(&m->vocab, unk, len, &m->unk_id)) m->unk_id = -1;
    return EFT_OK;
}

bool eft__wordpiece_tokenize(const eft__model *m, const char *s, size_t len, eft__toks *out) {
    size_t nchars = 0;
    for (size_t i = 0; i < len; i += (size_t)eft__utf8_len((unsigned char)s[i])) nchars++;
    size_t first = out->n;
    if (nchars <= m->max_input_chars) {
        char stack[512];
        char *buf = stack;
        if (m->prefix_len + len > sizeof stack && !(buf = eft__malloc(m->prefix_len + len))) return false;
        memcpy(buf, m->prefix, m->prefix_len);
        size_t start = 0;
        bool bad = false;
        while (start < len) {
            size_t end = len;
            int32_t id = -1;
            while (start < end) {
                bool found;
                if (start == 0) {
                    found = eft__vocab_get(&m->vocab, s, end, &id);
                } else {
                    memcpy(buf + m->prefix_len, s + start, end - start);
                    found = eft__vocab_get(&m->vocab, buf, m->prefix_len + end - start, &id);
                }
                if (found) break;
                id = -1;
                do end--;
                while (end > start && ((unsigned char)s[end] & 0xC0) == 0x80);
            }
            if (id < 0) {
                bad = true;
                break;
            }
            if (!eft__toks_add(out, id, (uint32_t)start, (uint32_t)end)) {
                if (buf != stack) eft__free(buf);
                return false;
            }
            start = end;
        }
        if (buf != stack) eft__free(buf);
        if (!bad) return true;
    }
    /* Too long, or some part has no token: the whole word is unknown. Without an unknown token
     * (HF errors here) the word is dropped. */
    out->n = first;
    return m->unk_id < 0 || eft__toks_add(out, m->unk_id, 0, (uint32_t)len);
}
