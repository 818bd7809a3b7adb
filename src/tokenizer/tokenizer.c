/*
 * tokenizer.c — the public tokenizer: loading tokenizer.json (every component checked, unknown
 * ones refused by name), the encode pipeline (added tokens, normalizer, pre-tokenizer, model,
 * truncation, post-processor, padding) and decoding, all following Hugging Face `tokenizers`
 * 0.23 step by step. The tokenizer is immutable after loading; per-call state lives on the stack
 * or in the call's own allocations.
 */
#include <jansson.h>
#include <string.h>
#include <utf8proc.h>

#include "core/json.h"
#include "formats/model_ref.h"
#include "tokenizer/tokenizer.h"

/* tokenizer.json files are at most tens of MB (Gemma 3's is 33 MB). */
#define EFT__TOKENIZER_JSON_MAX (512ull << 20)

struct eft_encoding {
    size_t n;
    int32_t *ids, *type_ids;
    uint8_t *attn, *special;
    int8_t *seq;
    uint32_t *offsets;
};

/* ---------------------------------------------------------------------------------------------
 * JSON helpers shared by the loaders
 * ------------------------------------------------------------------------------------------- */

const char *eft__json_str(const json_t *j, const char *key, size_t *len) {
    const json_t *v = json_is_object(j) ? json_object_get(j, key) : NULL;
    if (!json_is_string(v)) return NULL;
    if (len) *len = json_string_length(v);
    return json_string_value(v);
}

bool eft__json_bool(const json_t *j, const char *key, bool def) {
    const json_t *v = json_is_object(j) ? json_object_get(j, key) : NULL;
    return json_is_boolean(v) ? json_is_true(v) : def;
}

/* ---------------------------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------------------------- */

void eft__tokenizer_free_parts(eft_tokenizer *t) {
    eft__model_free(&t->model);
    if (t->has_normalizer) eft__normalizer_free(&t->normalizer);
    if (t->has_pretok) eft__pretok_free(&t->pretok);
    if (t->has_post) eft__post_free(&t->post);
    if (t->has_decoder) eft__tokdec_free(&t->decoder);
    for (size_t i = 0; i < t->n_added; i++) {
        eft__free(t->added[i].content);
        eft__free(t->added[i].norm);
    }
    eft__free(t->added);
    for (int b = 0; b < 256; b++) {
        eft__free(t->added_by_byte[b]);
        eft__free(t->norm_by_byte[b]);
    }
}

void eft_tokenizer_close(eft_tokenizer *t) {
    if (!t) return;
    eft__tokenizer_free_parts(t);
    eft__free(t);
}

static int cmp_len_desc(const eft_tokenizer *t, bool norm, uint32_t a, uint32_t b) {
    size_t la = norm ? t->added[a].norm_len : t->added[a].len, lb = norm ? t->added[b].norm_len : t->added[b].len;
    if (la != lb) return la > lb ? -1 : 1;
    return a < b ? -1 : a > b;
}

/* Index added tokens by first byte, longest first, for leftmost-longest matching. */
static eft_status index_added(eft_tokenizer *t, bool norm, eft__error *err) {
    uint32_t **by = norm ? t->norm_by_byte : t->added_by_byte;
    uint32_t *cnt = norm ? t->norm_by_byte_n : t->added_by_byte_n;
    for (size_t i = 0; i < t->n_added; i++) {
        const eft__added_token *a = &t->added[i];
        if (a->normalized != norm) continue;
        const char *s = norm ? a->norm : a->content;
        size_t len = norm ? a->norm_len : a->len;
        if (!len) continue;
        unsigned char b = (unsigned char)s[0];
        uint32_t *v = eft__realloc(by[b], (cnt[b] + 1) * sizeof *v);
        if (!v) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        by[b] = v;
        /* insertion sort: lists are short */
        size_t k = cnt[b]++;
        while (k > 0 && cmp_len_desc(t, norm, (uint32_t)i, v[k - 1]) < 0) {
            v[k] = v[k - 1];
            k--;
        }
        v[k] = (uint32_t)i;
    }
    return EFT_OK;
}

eft_status eft__tokenizer_finish(eft_tokenizer *t, eft__error *err) {
    t->max_id = -1;
    for (size_t i = 0; i < t->model.vocab.n; i++)
        if (t->model.vocab.tok_len[i] != UINT32_MAX) t->max_id = (int32_t)i;
    for (size_t i = 0; i < t->n_added; i++) {
        eft__added_token *a = &t->added[i];
        if (a->id > t->max_id) t->max_id = a->id;
        if (!a->normalized) continue;
        /* Normalized tokens are matched in normalized text, so their content is normalized too. */
        if (t->has_normalizer) {
            eft__nstr in = {0}, out = {0};
            bool ok = eft__nstr_push(&in, a->content, a->len, (eft__span){0, 0}) &&
                      eft__normalize(&t->normalizer, &in, &out);
            eft__nstr_free(&in);
            if (!ok) {
                eft__nstr_free(&out);
                return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
            }
            a->norm = eft__strndup(out.s ? out.s : "", out.len);
            a->norm_len = out.len;
            eft__nstr_free(&out);
        } else {
            a->norm = eft__strndup(a->content, a->len);
            a->norm_len = a->len;
        }
        if (!a->norm) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    }
    eft_status st = index_added(t, false, err);
    return st ? st : index_added(t, true, err);
}

static eft_status load_added(eft_tokenizer *t, const json_t *arr, eft__error *err) {
    if (!arr || json_is_null(arr)) return EFT_OK;
    if (!json_is_array(arr)) return eft__fail(err, EFT_ERR_FORMAT, "\"added_tokens\" must be an array");
    size_t n = json_array_size(arr);
    t->added = eft__calloc(n + 1, sizeof *t->added);
    if (!t->added) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(arr, i);
        size_t len;
        const char *content = eft__json_str(e, "content", &len);
        const json_t *id = json_object_get(e, "id");
        if (!content || !json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= (1 << 24))
            return eft__fail(err, EFT_ERR_FORMAT, "added_tokens[%zu]: needs \"content\" and an \"id\" in 0..2^24", i);
        eft__added_token *a = &t->added[t->n_added++];
        if (!(a->content = eft__strndup(content, len))) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        a->len = len;
        a->id = (int32_t)json_integer_value(id);
        a->special = eft__json_bool(e, "special", false);
        a->normalized = eft__json_bool(e, "normalized", !a->special);
        a->lstrip = eft__json_bool(e, "lstrip", false);
        a->rstrip = eft__json_bool(e, "rstrip", false);
        a->single_word = eft__json_bool(e, "single_word", false);
    }
    return EFT_OK;
}

static eft_status load_json_doc(eft_tokenizer *t, const json_t *doc, eft__json_pre *pre, eft__error *err) {
    if (!json_is_object(doc)) return eft__fail(err, EFT_ERR_FORMAT, "the document is not a JSON object");
    eft_status st = eft__model_load(&t->model, json_object_get(doc, "model"), pre, err);
    if (st) return st;
    const json_t *c;
    if ((c = json_object_get(doc, "normalizer")) && !json_is_null(c)) {
        t->has_normalizer = true;
        if ((st = eft__normalizer_load(&t->normalizer, c, err))) return st;
    }
    if ((c = json_object_get(doc, "pre_tokenizer")) && !json_is_null(c)) {
        t->has_pretok = true;
        if ((st = eft__pretok_load(&t->pretok, c, err))) return st;
    }
    if ((c = json_object_get(doc, "post_processor")) && !json_is_null(c)) {
        t->has_post = true;
        if ((st = eft__post_load(&t->post, c, err))) return st;
    }
    if ((c = json_object_get(doc, "decoder")) && !json_is_null(c)) {
        t->has_decoder = true;
        if ((st = eft__tokdec_load(&t->decoder, c, err))) return st;
    }
    if ((st = load_added(t, json_object_get(doc, "added_tokens"), err))) return st;
    return eft__tokenizer_finish(t, err);
}

/* Loads a tokenizer from a parsed document; pre as for eft__model_load. */
static eft_status load_doc(const json_t *doc, eft__json_pre *pre, const char *label, eft_tokenizer **out,
                           eft__error *err) {
    eft_tokenizer *t = eft__calloc(1, sizeof *t);
    eft_status st = t ? load_json_doc(t, doc, pre, err) : eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    if (st) {
        eft_tokenizer_close(t);
        return pre && pre->declined ? st : eft__error_prefix(err, "%s", label);
    }
    *out = t;
    return EFT_OK;
}

static eft_status parse(const char *json, size_t len, const char *label, json_t **doc, eft__error *err) {
    json_error_t jerr;
    *doc = eft__json_loadb(json, len, JSON_ALLOW_NUL, &jerr);
    if (*doc) return EFT_OK;
    if (eft__json_oom()) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory parsing JSON", label);
    return eft__fail(err, EFT_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", label, jerr.line, jerr.column,
                     jerr.text);
}

/* The vocabulary and merges are most of a tokenizer.json: the scanner of tokenizer_json.c reads
 * them and jansson only the rest. Where the scanner declines (invalid JSON, a shape it does not
 * take on), the whole document goes through jansson, so that answers stay exactly as they were. */
bool eft__tokenizer_json_scan = true;

static eft_status open_json(const char *json, size_t len, const char *label, eft_tokenizer **out, eft__error *err) {
    eft__json_pre pre;
    json_t *doc = NULL;
    eft_status st;
    if (eft__tokenizer_json_scan) {
        if ((st = eft__json_pre_scan(json, len, &pre, err))) return eft__error_prefix(err, "%s", label);
        if (!pre.declined) {
            /* jansson refusing the rest is refused again below, with positions in the original. */
            if (!parse(pre.doc, pre.doc_len, label, &doc, err)) {
                st = load_doc(doc, &pre, label, out, err);
                json_decref(doc);
                if (!pre.declined) {
                    eft__json_pre_free(&pre);
                    return st;
                }
            } else if (eft__json_oom()) {
                eft__json_pre_free(&pre);
                return EFT_ERR_OUT_OF_MEMORY;
            }
            eft__error_clear(err);
        }
        eft__json_pre_free(&pre);
    }
    if ((st = parse(json, len, label, &doc, err))) return st;
    st = load_doc(doc, NULL, label, out, err);
    json_decref(doc);
    return st;
}

eft_status eft_tokenizer_open_json(const char *json, size_t len, eft_tokenizer **out) {
    eft__error err = {0};
    if (out) *out = NULL;
    if (!out || (!json && len)) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_tokenizer_open_json: NULL argument");
        return eft__set_last_error(&err);
    }
    eft_status st = open_json(json ? json : "", len, "tokenizer.json", out, &err);
    if (st) return eft__set_last_error(&err);
    eft__clear_last_error();
    return EFT_OK;
}

/* tokenizer_config.json is not read: transformers 5 builds the same pipeline from tokenizer.json
 * alone for a generic tokenizer (its add_bos_token / add_eos_token do not change the ids; the
 * hf-* expectation files check this against AutoTokenizer). */

eft_status eft_tokenizer_open(const char *path, eft_tokenizer **out) {
    eft__error err = {0};
    if (out) *out = NULL;
    if (!path || !out) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_tokenizer_open: NULL argument");
        return eft__set_last_error(&err);
    }
    /* A tokenizer.json named directly; otherwise the references eft_model_open takes (a folder, a
     * .gguf, a folder holding one .gguf, a Hugging Face id in the local cache). */
    eft_status st;
    char *resolved = NULL;
    eft__model_ref_kind kind = EFT__REF_DIR;
    if (eft__path_exists(path) && !eft__path_is_dir(path) && !eft__file_is_gguf(path)) {
        resolved = eft__strdup(path);
        st = resolved ? EFT_OK : eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    } else {
        st = eft__model_ref_resolve(path, NULL, NULL, &resolved, &kind, &err);
        if (!st && kind == EFT__REF_DIR) {
            char *file = eft__path_join(resolved, "tokenizer.json");
            eft__free(resolved);
            resolved = file;
            if (!file) st = eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        }
    }
    if (!st && kind == EFT__REF_GGUF) {
        st = eft__tokenizer_load_gguf(resolved, out, &err);
    } else if (!st) {
        char *buf = NULL;
        size_t len = 0;
        st = eft__file_read_all(resolved, EFT__TOKENIZER_JSON_MAX, &buf, &len, &err);
        if (!st) st = open_json(buf, len, resolved, out, &err);
        eft__free(buf);
    }
    eft__free(resolved);
    if (st) return eft__set_last_error(&err);
    eft__clear_last_error();
    return EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Input text: invalid UTF-8 becomes U+FFFD (maximal subparts), each byte aligned to itself.
 * ------------------------------------------------------------------------------------------- */

/* Length of the maximal invalid subpart at s (>= 1), per Unicode's "best practice". */
static size_t invalid_len(const unsigned char *s, size_t n) {
    unsigned char b0 = s[0];
    int need = b0 >= 0xF0 && b0 <= 0xF4 ? 4 : b0 >= 0xE0 && b0 <= 0xEF ? 3 : b0 >= 0xC2 && b0 <= 0xDF ? 2 : 1;
    size_t j = 1;
    for (int q = 1; q < need && j < n; q++, j++) {
        unsigned char lo = 0x80, hi = 0xBF;
        if (q == 1) {
            if (b0 == 0xE0) lo = 0xA0;
            else if (b0 == 0xED) hi = 0x9F;
            else if (b0 == 0xF0) lo = 0x90;
            else if (b0 == 0xF4) hi = 0x8F;
        }
        if (s[j] < lo || s[j] > hi) break;
    }
    return j;
}

static bool load_input(const char *text, size_t len, eft__nstr *out) {
    if (!eft__nstr_reserve(out, len + 16)) return false;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x80) {
            /* each invalid byte grows to 3, so the reservation above is not always enough */
            if (out->len == out->cap && !eft__nstr_reserve(out, 1)) return false;
            out->s[out->len] = (char)c;
            out->al[out->len++] = (eft__span){(uint32_t)i, (uint32_t)i + 1};
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &cp);
        if (k > 0) {
            if (!eft__nstr_push(out, text + i, (size_t)k, (eft__span){(uint32_t)i, (uint32_t)(i + (size_t)k)})) return false;
            i += (size_t)k;
        } else {
            size_t bad = invalid_len((const unsigned char *)text + i, len - i);
            if (!eft__nstr_push(out, "\xEF\xBF\xBD", 3, (eft__span){(uint32_t)i, (uint32_t)(i + bad)})) return false;
            i += bad;
        }
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Added tokens: found in the text the way HF's AddedVocabulary does (leftmost-longest, with the
 * single_word, lstrip and rstrip rules); those not normalized in the raw text, the others in
 * the normalized text.
 * ------------------------------------------------------------------------------------------- */

static bool is_word_char(int32_t c) {
    if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        return c == 0x200C || c == 0x200D;
    }
}

static int32_t last_char(const char *s, size_t end, size_t floor) {
    if (end <= floor) return -1;
    size_t p = end - 1;
    while (p > floor && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
    int k;
    return eft__utf8_decode(s + p, end - p, &k);
}

/* Splits text[0..len) of src into pieces appended to out: matched added tokens (id >= 0) and
 * the text between them (id -1). */
static bool split_added(const eft_tokenizer *t, bool norm, const eft__nstr *src, eft__pieces *out) {
    uint32_t *const *by = norm ? t->norm_by_byte : t->added_by_byte;
    const uint32_t *cnt = norm ? t->norm_by_byte_n : t->added_by_byte_n;
    const char *s = src->s;
    size_t len = src->len, last = 0, pos = 0;
    while (pos < len) {
        unsigned char b = (unsigned char)s[pos];
        const eft__added_token *hit = NULL;
        for (uint32_t k = 0; k < cnt[b]; k++) {
            const eft__added_token *a = &t->added[by[b][k]];
            const char *c = norm ? a->norm : a->content;
            size_t cl = norm ? a->norm_len : a->len;
            if (cl <= len - pos && !memcmp(s + pos, c, cl)) {
                hit = a;
                break;
            }
        }
        if (!hit) {
            pos++;
            continue;
        }
        size_t start = pos, stop = pos + (norm ? hit->norm_len : hit->len);
        if (hit->single_word) {
            int k;
            int32_t before = last_char(s, start, 0);
            int32_t after = stop < len ? eft__utf8_decode(s + stop, len - stop, &k) : -1;
            if ((before >= 0 && is_word_char(before)) || (after >= 0 && is_word_char(after))) {
                pos = stop;
                continue;
            }
        }
        if (hit->lstrip) {
            size_t ns = start;
            for (;;) {
                int32_t c = last_char(s, ns, 0);
                if (c < 0 || !eft__is_whitespace(c)) break;
                while (ns > 0 && ((unsigned char)s[ns - 1] & 0xC0) == 0x80) ns--;
                ns--;
            }
            start = ns > last ? ns : last;
        }
        if (hit->rstrip) {
            while (stop < len) {
                int k;
                int32_t c = eft__utf8_decode(s + stop, len - stop, &k);
                if (!eft__is_whitespace(c)) break;
                stop += (size_t)k;
            }
        }
        if (last < start) {
            if (!eft__pieces_add(out, (uint32_t)last, (uint32_t)(start - last), -1)) return false;
        }
        if (!eft__pieces_add(out, (uint32_t)start, (uint32_t)(stop - start), hit->id)) return false;
        last = pos = stop;
    }
    if (last < len && !eft__pieces_add(out, (uint32_t)last, (uint32_t)(len - last), -1)) return false;
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Encoding one sequence
 * ------------------------------------------------------------------------------------------- */

/* Tokens of one sequence before post-processing; offsets are into the sequence's bytes. */
typedef struct seq_out {
    int32_t *ids;
    uint32_t *offs;  /* 2 per token */
    uint8_t *added;  /* 1: an added token matched in the text */
    size_t n, cap;
} seq_out;

static bool seq_add(seq_out *o, int32_t id, uint32_t a, uint32_t b, bool added) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        int32_t *ids = eft__realloc(o->ids, cap * sizeof *ids);
        if (!ids) return false;
        o->ids = ids;
        uint32_t *offs = eft__realloc(o->offs, cap * 2 * sizeof *offs);
        if (!offs) return false;
        o->offs = offs;
        uint8_t *ad = eft__realloc(o->added, cap);
        if (!ad) return false;
        o->added = ad;
        o->cap = cap;
    }
    o->added[o->n] = added;
    o->ids[o->n] = id;
    o->offs[2 * o->n] = a;
    o->offs[2 * o->n + 1] = b > a ? b : a;
    o->n++;
    return true;
}

static void seq_free(seq_out *o) {
    eft__free(o->ids);
    eft__free(o->offs);
    eft__free(o->added);
    memset(o, 0, sizeof *o);
}

/* Moves the pieces of src[off..off+len) (with their alignments) into dst as one piece. */
static bool copy_range(eft__pieces *dst, const eft__nstr *src, uint32_t off, uint32_t len, int32_t id) {
    uint32_t at = (uint32_t)dst->text.len;
    if (!eft__nstr_reserve(&dst->text, len)) return false;
    memcpy(dst->text.s + at, src->s + off, len);
    memcpy(dst->text.al + at, src->al + off, len * sizeof(eft__span));
    dst->text.len += len;
    return eft__pieces_add(dst, at, len, id);
}

/* ---------------------------------------------------------------------------------------------
 * A cache of the model's tokens per word, for one encode call
 *
 * A model's output depends only on the bytes of the piece, and long texts repeat their words, so
 * within one call a word is tokenized once (HF's BPE keeps a cache too). It lives for one call
 * only, so a tokenizer shared by many threads stays read-only. Short words only; the arenas are
 * capped, after which nothing more is stored. A failed allocation only turns the cache off.
 * ------------------------------------------------------------------------------------------- */

#define WC_MIN_PIECES 64    /* fewer pieces: no cache */
#define WC_MAX_WORD 48      /* bytes */
#define WC_MAX_SLOTS 8192
#define WC_MAX_TOKS (1u << 18)

typedef struct wc_slot {
    uint32_t hash, key_off, key_len, tok_off, tok_n;
} wc_slot;

typedef struct word_cache {
    wc_slot *slot; /* NULL: off */
    size_t mask;
    char *keys;
    size_t keys_len, keys_cap;
    eft__tok *toks;
    size_t toks_len, toks_cap;
} word_cache;

static void wc_init(word_cache *c, size_t n_pieces) {
    memset(c, 0, sizeof *c);
    if (n_pieces < WC_MIN_PIECES) return;
    size_t n = 256;
    while (n < n_pieces && n < WC_MAX_SLOTS) n *= 2;
    if (!(c->slot = eft__calloc(n, sizeof *c->slot))) return;
    c->mask = n - 1;
}

static void wc_free(word_cache *c) {
    eft__free(c->slot);
    eft__free(c->keys);
    eft__free(c->toks);
    memset(c, 0, sizeof *c);
}

/* The cached tokens of word s, or NULL. */
static const wc_slot *wc_get(const word_cache *c, const char *s, size_t n, uint32_t *hash) {
    if (!c->slot || n > WC_MAX_WORD) return NULL;
    uint32_t h = eft__hash_bytes(s, n) | 1; /* 0 marks an empty slot */
    *hash = h;
    const wc_slot *e = &c->slot[h & c->mask];
    if (e->hash == h && e->key_len == n && !memcmp(c->keys + e->key_off, s, n)) return e;
    return NULL;
}

static void wc_put(word_cache *c, uint32_t hash, const char *s, size_t n, const eft__toks *toks) {
    if (!c->slot || n > WC_MAX_WORD || c->toks_len + toks->n > WC_MAX_TOKS) return;
    if (c->keys_len + n > c->keys_cap) {
        size_t cap = c->keys_cap ? c->keys_cap * 2 : 4096;
        while (cap < c->keys_len + n) cap *= 2;
        char *v = eft__realloc(c->keys, cap);
        if (!v) return;
        c->keys = v;
        c->keys_cap = cap;
    }
    if (c->toks_len + toks->n > c->toks_cap) {
        size_t cap = c->toks_cap ? c->toks_cap * 2 : 1024;
        while (cap < c->toks_len + toks->n) cap *= 2;
        eft__tok *v = eft__realloc(c->toks, cap * sizeof *v);
        if (!v) return;
        c->toks = v;
        c->toks_cap = cap;
    }
    wc_slot *e = &c->slot[hash & c->mask];
    *e = (wc_slot){hash, (uint32_t)c->keys_len, (uint32_t)n, (uint32_t)c->toks_len, (uint32_t)toks->n};
    memcpy(c->keys + c->keys_len, s, n);
    c->keys_len += n;
    if (toks->n) memcpy(c->toks + c->toks_len, toks->t, toks->n * sizeof *toks->t); /* a word may give none */
    c->toks_len += toks->n;
}

static bool encode_seq(const eft_tokenizer *t, const char *text, size_t len, pcre2_match_data *md, seq_out *o) {
    eft__nstr input = {0}, normed = {0};
    eft__pieces raw = {0}, pre = {0}, post = {0};
    eft__toks toks = {0};
    bool ok = load_input(text, len, &input);
    /* 1. added tokens that are matched before normalization */
    if (ok) ok = split_added(t, false, &input, &raw);
    raw.text = input; /* the pieces index into input */
    memset(&input, 0, sizeof input);
    /* 2. normalize the rest, piece by piece, and match normalized added tokens */
    for (size_t i = 0; ok && i < raw.n; i++) {
        eft__piece pc = raw.p[i];
        if (pc.id >= 0) {
            ok = copy_range(&pre, &raw.text, pc.off, pc.len, pc.id);
            continue;
        }
        eft__nstr seg = {raw.text.s + pc.off, raw.text.al + pc.off, pc.len, pc.len};
        const eft__nstr *cur = &seg;
        if (t->has_normalizer) {
            ok = eft__normalize(&t->normalizer, &seg, &normed);
            cur = &normed;
        }
        if (!ok) break;
        eft__pieces parts = {0};
        ok = split_added(t, true, cur, &parts);
        for (size_t k = 0; ok && k < parts.n; k++)
            ok = copy_range(&pre, cur, parts.p[k].off, parts.p[k].len, parts.p[k].id);
        eft__free(parts.p);
    }
    /* 3. pre-tokenize */
    const eft__pieces *final = &pre;
    if (ok && t->has_pretok) {
        ok = eft__pretokenize(&t->pretok, &pre, &post, md);
        final = &post;
    }
    /* 4. the model */
    word_cache wc;
    wc_init(&wc, ok ? final->n : 0);
    for (size_t i = 0; ok && i < final->n; i++) {
        eft__piece pc = final->p[i];
        const eft__span *al = final->text.al ? final->text.al + pc.off : NULL; /* NULL only for empty text */
        if (pc.id >= 0) {
            ok = seq_add(o, pc.id, pc.len ? al[0].start : 0, pc.len ? al[pc.len - 1].end : 0, true);
            continue;
        }
        if (!pc.len) continue;
        const char *word = final->text.s + pc.off;
        uint32_t hash = 0;
        const wc_slot *hit = wc_get(&wc, word, pc.len, &hash);
        const eft__tok *tv;
        size_t tn;
        if (hit) {
            tv = hit->tok_n ? wc.toks + hit->tok_off : NULL; /* a cached empty result has no array */
            tn = hit->tok_n;
        } else {
            toks.n = 0;
            ok = eft__model_tokenize(&t->model, word, pc.len, &toks);
            if (ok) wc_put(&wc, hash, word, pc.len, &toks);
            tv = toks.t;
            tn = toks.n;
        }
        for (size_t k = 0; ok && k < tn; k++) {
            eft__tok tk = tv[k];
            uint32_t a = tk.start < pc.len ? al[tk.start].start : 0;
            uint32_t b = tk.end > 0 && tk.end <= pc.len ? al[tk.end - 1].end : a;
            ok = seq_add(o, tk.id, a, b, false);
        }
    }
    wc_free(&wc);
    eft__nstr_free(&input);
    eft__nstr_free(&normed);
    eft__pieces_free(&raw);
    eft__pieces_free(&pre);
    eft__pieces_free(&post);
    eft__free(toks.t);
    return ok;
}

/* Moves a byte offset in text by k characters (forward or back), within [lo, hi]. */
static uint32_t step_chars(const char *text, size_t len, uint32_t at, size_t k, bool forward, uint32_t lo, uint32_t hi) {
    while (k-- > 0) {
        if (forward) {
            if (at >= hi) return hi;
            at += at < len ? (uint32_t)eft__utf8_len((unsigned char)text[at]) : 1;
            if (at > hi) at = hi;
        } else {
            if (at <= lo) return lo;
            at--;
            while (at > lo && ((unsigned char)text[at] & 0xC0) == 0x80) at--;
        }
    }
    return at;
}

/* ByteLevel's trim_offsets: leading and trailing spaces ("Ġ") of a token leave its offsets. HF
 * counts them in characters of the original text, so the offsets move by characters too. */
static void trim_offsets(const eft_tokenizer *t, seq_out *o, const char *text, size_t tlen, bool add_prefix_space) {
    for (size_t i = 0; i < o->n; i++) {
        size_t len;
        const char *s = eft_tokenizer_id_to_token(t, o->ids[i], &len);
        /* HF trims the token's text as matched, which for an added token includes the spaces
         * lstrip/rstrip took. */
        if (o->added[i]) {
            s = text + o->offs[2 * i];
            len = o->offs[2 * i + 1] - o->offs[2 * i];
        }
        if (!s) continue;
        size_t lead = 0, trail = 0, p = 0;
        while (p < len) {
            int k;
            int32_t c = eft__utf8_decode(s + p, len - p, &k);
            if (c != 0x120 && !eft__is_whitespace(c)) break;
            lead++;
            p += (size_t)k;
        }
        size_t q = len;
        while (q > 0) {
            size_t r = q - 1;
            while (r > 0 && ((unsigned char)s[r] & 0xC0) == 0x80) r--;
            int k;
            int32_t c = eft__utf8_decode(s + r, q - r, &k);
            if (c != 0x120 && !eft__is_whitespace(c)) break;
            trail++;
            q = r;
        }
        uint32_t *a = &o->offs[2 * i], *b = &o->offs[2 * i + 1];
        if (lead) {
            bool first = i == 0 || *a == 0;
            if (first && add_prefix_space && lead == 1) lead = 0;
            *a = step_chars(text, tlen, *a, lead, true, *a, *b);
        }
        if (trail) *b = step_chars(text, tlen, *b, trail, false, *a, *b);
    }
}

static void apply_trims(const eft_tokenizer *t, const eft__post *p, seq_out *o, const char *text, size_t len) {
    if (p->kind == EFT__POST_SEQUENCE) {
        for (size_t i = 0; i < p->n_items; i++) apply_trims(t, &p->items[i], o, text, len);
    } else if (p->trim_offsets) {
        trim_offsets(t, o, text, len, p->add_prefix_space);
    }
}

static const eft__post *find_template(const eft__post *p) {
    if (p->kind == EFT__POST_TEMPLATE) return p;
    for (size_t i = 0; p->kind == EFT__POST_SEQUENCE && i < p->n_items; i++)
        if (p->items[i].kind == EFT__POST_TEMPLATE) return &p->items[i];
    return NULL;
}

static void truncate_seq(seq_out *o, size_t n, eft_side side) {
    if (o->n <= n) return;
    if (side == EFT_SIDE_LEFT) {
        size_t drop = o->n - n;
        memmove(o->ids, o->ids + drop, n * sizeof *o->ids);
        memmove(o->offs, o->offs + 2 * drop, 2 * n * sizeof *o->offs);
        memmove(o->added, o->added + drop, n);
    }
    o->n = n;
}

/* HF's truncate_encodings (tokenizers 0.23), on the sequences before special tokens. */
static eft_status truncate(seq_out *a, seq_out *b, size_t added, const eft_encode_params *p, eft__error *err) {
    size_t total = a->n + (b ? b->n : 0) + added;
    if (!p->max_length || total <= p->max_length) return EFT_OK;
    size_t to_remove = total - p->max_length;
    if (p->truncation == EFT_TRUNCATE_LONGEST_FIRST && b) {
        if (p->max_length < added)
            return eft__fail(err, EFT_ERR_LIMIT, "max_length %zu is shorter than the %zu special tokens", p->max_length, added);
        size_t max = p->max_length - added;
        size_t n1 = a->n, n2 = b->n;
        bool swap = n1 > n2;
        if (swap) {
            size_t x = n1;
            n1 = n2;
            n2 = x;
        }
        if (n1 > max) n2 = n1;
        else n2 = n1 > max - n1 ? n1 : max - n1;
        if (n1 + n2 > max) {
            n1 = max / 2;
            n2 = n1 + max % 2;
        }
        if (swap) {
            size_t x = n1;
            n1 = n2;
            n2 = x;
        }
        truncate_seq(a, n1, p->truncation_side);
        truncate_seq(b, n2, p->truncation_side);
        return EFT_OK;
    }
    seq_out *target = a;
    if (p->truncation == EFT_TRUNCATE_ONLY_SECOND) {
        if (!b) return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "truncation only_second needs a pair");
        target = b;
    }
    /* HF keeps at least one token: removing all of them is its SequenceTooShort error too. */
    if (target->n <= to_remove)
        return eft__fail(err, EFT_ERR_LIMIT,
                         "cannot truncate to max_length %zu: the %s sequence has %zu tokens and %zu must go",
                         p->max_length, target == a ? "first" : "second", target->n, to_remove);
    truncate_seq(target, target->n - to_remove, p->truncation_side);
    return EFT_OK;
}

eft_encode_params eft_encode_params_default(void) {
    eft_encode_params p;
    memset(&p, 0, sizeof p);
    p.add_special_tokens = true;
    return p;
}

static bool enc_alloc(eft_encoding *e, size_t n) {
    size_t c = n ? n : 1;
    e->ids = eft__malloc_array(c, sizeof *e->ids);
    e->type_ids = eft__malloc_array(c, sizeof *e->type_ids);
    e->attn = eft__malloc(c);
    e->special = eft__malloc(c);
    e->seq = eft__malloc(c);
    e->offsets = eft__malloc_array(c, 2 * sizeof *e->offsets);
    return e->ids && e->type_ids && e->attn && e->special && e->seq && e->offsets;
}

void eft_encoding_free(eft_encoding *e) {
    if (!e) return;
    eft__free(e->ids);
    eft__free(e->type_ids);
    eft__free(e->attn);
    eft__free(e->special);
    eft__free(e->seq);
    eft__free(e->offsets);
    eft__free(e);
}

static void enc_put(eft_encoding *e, size_t i, int32_t id, int32_t type, uint8_t attn, uint8_t special, int8_t seq,
                    uint32_t a, uint32_t b) {
    e->ids[i] = id;
    e->type_ids[i] = type;
    e->attn[i] = attn;
    e->special[i] = special;
    e->seq[i] = seq;
    e->offsets[2 * i] = a;
    e->offsets[2 * i + 1] = b;
}

static eft_status encode(const eft_tokenizer *t, const char *text, size_t len, const char *pair, size_t pair_len,
                         const eft_encode_params *p, eft_encoding **out, eft__error *err) {
    if (len > UINT32_MAX / 2 || pair_len > UINT32_MAX / 2)
        return eft__fail(err, EFT_ERR_LIMIT, "a text of %zu bytes is over the 2 GB limit", len > pair_len ? len : pair_len);
    pcre2_match_data *md = pcre2_match_data_create(8, eft__pcre2_context());
    if (!md) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    seq_out sa = {0}, sb = {0};
    eft_encoding *e = NULL;
    eft_status st = EFT_OK;
    bool ok = encode_seq(t, text, len, md, &sa) && (!pair || encode_seq(t, pair, pair_len, md, &sb));
    pcre2_match_data_free(md);
    if (!ok) {
        st = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory while tokenizing");
        goto done;
    }
    const eft__post *tpl = t->has_post ? find_template(&t->post) : NULL;
    size_t added = p->add_special_tokens && t->has_post ? eft__post_added(&t->post, pair != NULL) : 0;
    if ((st = truncate(&sa, pair ? &sb : NULL, added, p, err))) goto done;
    if (t->has_post) {
        apply_trims(t, &t->post, &sa, text, len);
        if (pair) apply_trims(t, &t->post, &sb, pair, pair_len);
    }
    size_t n = sa.n + sb.n + added, padded = n;
    if (p->pad_to_length > padded) padded = p->pad_to_length;
    if (p->pad_to_multiple_of > 0 && padded % p->pad_to_multiple_of)
        padded += p->pad_to_multiple_of - padded % p->pad_to_multiple_of;
    e = eft__calloc(1, sizeof *e);
    if (!e || !enc_alloc(e, padded)) {
        st = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    size_t w = p->padding_side == EFT_SIDE_LEFT ? padded - n : 0;
    size_t pad_at = p->padding_side == EFT_SIDE_LEFT ? 0 : n;
    for (size_t i = 0; i < padded - n; i++)
        enc_put(e, pad_at + i, p->pad_id, p->pad_type_id, 0, 1, -1, 0, 0);
    const seq_out *seqs[2] = {&sa, &sb};
    if (tpl) {
        const eft__tpl_item *items = pair ? tpl->pair : tpl->single;
        size_t ni = pair ? tpl->n_pair : tpl->n_single;
        for (size_t k = 0; k < ni; k++) {
            const eft__tpl_item *it = &items[k];
            if (it->seq >= 0) {
                const seq_out *s = seqs[it->seq];
                if (it->seq == 1 && !pair) continue;
                for (size_t i = 0; i < s->n; i++)
                    enc_put(e, w++, s->ids[i], (int32_t)it->type_id, 1, 0, (int8_t)it->seq, s->offs[2 * i],
                            s->offs[2 * i + 1]);
            } else if (p->add_special_tokens) {
                for (size_t i = 0; i < it->n_ids; i++) enc_put(e, w++, it->ids[i], (int32_t)it->type_id, 1, 1, -1, 0, 0);
            }
        }
    } else {
        /* HF encodes the second text with type id 1 and, without a template, keeps it. */
        for (int q = 0; q < (pair ? 2 : 1); q++)
            for (size_t i = 0; i < seqs[q]->n; i++)
                enc_put(e, w++, seqs[q]->ids[i], q, 1, 0, (int8_t)q, seqs[q]->offs[2 * i], seqs[q]->offs[2 * i + 1]);
    }
    e->n = padded;
    *out = e;
    e = NULL;
done:
    eft_encoding_free(e);
    seq_free(&sa);
    seq_free(&sb);
    return st;
}

eft_status eft_tokenizer_encode(const eft_tokenizer *t, const char *text, size_t len, const char *pair,
                                size_t pair_len, const eft_encode_params *params, eft_encoding **out) {
    eft__error err = {0};
    if (out) *out = NULL;
    if (!t || !out || (!text && len) || (!pair && pair_len)) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_tokenizer_encode: NULL argument");
        return eft__set_last_error(&err);
    }
    eft_encode_params def = eft_encode_params_default();
    eft_status st = encode(t, text ? text : "", len, pair ? pair : (pair_len ? NULL : pair), pair_len,
                           params ? params : &def, out, &err);
    if (st) return eft__set_last_error(&err);
    return EFT_OK;
}

size_t eft_encoding_len(const eft_encoding *e) { return e ? e->n : 0; }
const int32_t *eft_encoding_ids(const eft_encoding *e) { return e ? e->ids : NULL; }
const int32_t *eft_encoding_type_ids(const eft_encoding *e) { return e ? e->type_ids : NULL; }
const uint8_t *eft_encoding_attention_mask(const eft_encoding *e) { return e ? e->attn : NULL; }
const uint8_t *eft_encoding_special_tokens_mask(const eft_encoding *e) { return e ? e->special : NULL; }
const int8_t *eft_encoding_sequence_ids(const eft_encoding *e) { return e ? e->seq : NULL; }
const uint32_t *eft_encoding_offsets(const eft_encoding *e) { return e ? e->offsets : NULL; }

/* ---------------------------------------------------------------------------------------------
 * Vocabulary queries
 * ------------------------------------------------------------------------------------------- */

static const eft__added_token *added_by_id(const eft_tokenizer *t, int32_t id) {
    /* Later entries win, as in HF's map. Lists are short (hundreds at most). */
    for (size_t i = t->n_added; i-- > 0;)
        if (t->added[i].id == id) return &t->added[i];
    return NULL;
}

size_t eft_tokenizer_vocab_size(const eft_tokenizer *t) { return t ? (size_t)(t->max_id + 1) : 0; }

int32_t eft_tokenizer_token_to_id(const eft_tokenizer *t, const char *token, size_t len) {
    if (!t || !token) return -1;
    for (size_t i = t->n_added; i-- > 0;)
        if (t->added[i].len == len && !memcmp(t->added[i].content, token, len)) return t->added[i].id;
    int32_t id;
    return eft__vocab_get(&t->model.vocab, token, len, &id) ? id : -1;
}

const char *eft_tokenizer_id_to_token(const eft_tokenizer *t, int32_t id, size_t *len) {
    if (!t) return NULL;
    const eft__added_token *a = added_by_id(t, id);
    if (a) {
        /* HF answers with the normalized text for a normalized added token. */
        if (len) *len = a->normalized ? a->norm_len : a->len;
        return a->normalized ? a->norm : a->content;
    }
    return eft__vocab_token(&t->model.vocab, id, len);
}

bool eft_tokenizer_is_special(const eft_tokenizer *t, int32_t id) {
    const eft__added_token *a = t ? added_by_id(t, id) : NULL;
    return a && a->special;
}

/* ---------------------------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------------------------- */

static eft_status decode(const eft_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **out,
                         size_t *out_len, eft__error *err) {
    eft__strlist l = {0};
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        const eft__added_token *a = added_by_id(t, ids[i]);
        if (a && skip_special && a->special) continue;
        size_t len;
        const char *s = eft_tokenizer_id_to_token(t, ids[i], &len);
        if (!s) continue;
        ok = eft__strlist_add(&l, s, len);
    }
    char *r = NULL;
    size_t rl = 0;
    if (ok && t->has_decoder) ok = eft__decode_chain(&t->decoder, &l);
    if (ok) {
        /* Without a decoder HF joins tokens with spaces. */
        size_t sep = t->has_decoder ? 0 : 1;
        r = eft__malloc(l.len + l.n * sep + 1);
        ok = r != NULL;
        for (size_t i = 0; ok && i < l.n; i++) {
            if (sep && i) r[rl++] = ' ';
            if (l.slen[i]) memcpy(r + rl, l.buf + l.off[i], l.slen[i]);
            rl += l.slen[i];
        }
        if (ok) r[rl] = 0;
    }
    eft__strlist_free(&l);
    if (!ok) {
        eft__free(r);
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory while decoding");
    }
    *out = r;
    if (out_len) *out_len = rl;
    return EFT_OK;
}

eft_status eft_tokenizer_decode(const eft_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **out,
                                size_t *out_len) {
    eft__error err = {0};
    if (out) *out = NULL;
    if (!t || !out || (!ids && n)) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_tokenizer_decode: NULL argument");
        return eft__set_last_error(&err);
    }
    eft_status st = decode(t, ids, n, skip_special, out, out_len, &err);
    return st ? eft__set_last_error(&err) : EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Incremental decoding. Following HF's DecodeStream: decode the window ids[prefix..] and the
 * already-emitted part ids[prefix..read]; the new text is the difference, released only when the
 * window's text does not end in U+FFFD (a UTF-8 sequence still incomplete). Decoders only treat
 * the first token of a list specially, and both decodes share that first token, so the pieces
 * add up to the full decode.
 * ------------------------------------------------------------------------------------------- */

struct eft_detokenizer {
    const eft_tokenizer *t;
    bool skip_special;
    int32_t *ids;
    size_t n, cap;
    size_t prefix, read; /* window start; end of what has been emitted */
    char *text;          /* the last piece returned */
};

eft_status eft_detokenizer_open(const eft_tokenizer *t, bool skip_special, eft_detokenizer **out) {
    eft__error err = {0};
    if (out) *out = NULL;
    if (!t || !out) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_detokenizer_open: NULL argument");
        return eft__set_last_error(&err);
    }
    eft_detokenizer *d = eft__calloc(1, sizeof *d);
    if (!d) {
        eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        return eft__set_last_error(&err);
    }
    d->t = t;
    d->skip_special = skip_special;
    *out = d;
    return EFT_OK;
}

void eft_detokenizer_close(eft_detokenizer *d) {
    if (!d) return;
    eft__free(d->ids);
    eft__free(d->text);
    eft__free(d);
}

static bool has_byte_fallback(const eft__tokdec *d, bool present) {
    if (!present) return false;
    if (d->kind == EFT__DEC_BYTE_FALLBACK) return true;
    for (size_t i = 0; d->kind == EFT__DEC_SEQUENCE && i < d->n_items; i++)
        if (has_byte_fallback(&d->items[i], true)) return true;
    return false;
}

static bool ends_incomplete(const char *s, size_t n) {
    return n >= 3 && !memcmp(s + n - 3, "\xEF\xBF\xBD", 3);
}

static eft_status detok_step(eft_detokenizer *d, bool final, const char **text, size_t *len) {
    eft__error err = {0};
    char *all = NULL, *prev = NULL;
    size_t all_len = 0, prev_len = 0;
    eft__free(d->text);
    d->text = NULL;
    *text = "";
    *len = 0;
    /* ByteFallback groups a whole run of byte tokens: a byte that is valid UTF-8 alone turns into
     * U+FFFD when the next one makes the run invalid, so a run is held until it ends. */
    if (!final && d->n && has_byte_fallback(&d->t->decoder, d->t->has_decoder)) {
        size_t bl;
        const char *b = eft_tokenizer_id_to_token(d->t, d->ids[d->n - 1], &bl);
        if (b && bl == 6 && !memcmp(b, "<0x", 3) && b[5] == '>') return EFT_OK;
    }
    eft_status st = decode(d->t, d->ids + d->prefix, d->n - d->prefix, d->skip_special, &all, &all_len, &err);
    if (!st) st = decode(d->t, d->ids + d->prefix, d->read - d->prefix, d->skip_special, &prev, &prev_len, &err);
    if (st) {
        eft__free(all);
        eft__free(prev);
        return eft__set_last_error(&err);
    }
    /* prev is a prefix of all for every decoder eft has: adding tokens never rewrites text
     * that was complete. */
    if (all_len > prev_len && (final || !ends_incomplete(all, all_len))) {
        memmove(all, all + prev_len, all_len - prev_len);
        all[all_len - prev_len] = 0;
        d->text = all;
        *text = all;
        *len = all_len - prev_len;
        all = NULL;
        d->prefix = d->read;
        d->read = d->n;
    }
    eft__free(all);
    eft__free(prev);
    return EFT_OK;
}

eft_status eft_detokenizer_push(eft_detokenizer *d, int32_t id, const char **text, size_t *len) {
    eft__error err = {0};
    if (!d || !text || !len) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_detokenizer_push: NULL argument");
        return eft__set_last_error(&err);
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        int32_t *v = eft__realloc(d->ids, cap * sizeof *v);
        if (!v) {
            eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
            return eft__set_last_error(&err);
        }
        d->ids = v;
        d->cap = cap;
    }
    d->ids[d->n++] = id;
    return detok_step(d, false, text, len);
}

eft_status eft_detokenizer_finish(eft_detokenizer *d, const char **text, size_t *len) {
    eft__error err = {0};
    if (!d || !text || !len) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_detokenizer_finish: NULL argument");
        return eft__set_last_error(&err);
    }
    *text = "";
    *len = 0;
    eft_status st = d->n > d->read ? detok_step(d, true, text, len) : EFT_OK;
    d->n = d->prefix = d->read = 0;
    return st;
}
