/*
 * tokenizer_json.c — reads the two large parts of a tokenizer.json, the model's "vocab" object
 * and its "merges" array (30k to 250k entries), with a dedicated scanner instead of a jansson
 * tree: building and freeing that tree was two thirds of the start time of a compiled program.
 *
 * The scanner validates the whole document strictly (RFC 8259 grammar, UTF-8, escapes and
 * surrogate pairs), keeps the entries of those two values as borrowed spans, and hands the rest
 * of the document, with {} and [] in their place, to jansson and the usual component loaders.
 * Whatever it does not take on — invalid JSON, a repeated "model", "vocab" or "merges" key, an
 * escaped NUL, an id that is not a small non-negative integer, a merge of another shape, a
 * repeated vocabulary key — makes it decline, and the caller loads the original document the
 * old way; so results and error messages are those of the jansson path whatever the input.
 */
#include <string.h>

#include "tokenizer/tokenizer.h"

/* jansson's own nesting limit; deeper documents are left to it (it refuses them). */
#define MAX_DEPTH 2048

typedef struct scanner {
    const unsigned char *p, *end;
    int depth;
    bool nul; /* the last string scanned had a \u0000 */
    bool oom;
    eft__json_pre *pre;
    const unsigned char *doc;
    size_t doc_len;
} scanner;

/* Bytes a string may hold as they are: printable ASCII but the quote and the backslash. */
static bool plain[256];

__attribute__((constructor)) static void init_plain(void) {
    for (int c = 0x20; c < 0x80; c++) plain[c] = c != '"' && c != '\\';
}

static void skip_ws(scanner *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) s->p++;
}

/* Skips white space, then c when it is next. */
static bool eat(scanner *s, unsigned char c) {
    skip_ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return true;
    }
    return false;
}

static int hex4(const unsigned char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int c = p[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Length of the well-formed UTF-8 sequence at p (n bytes available), 0 when there is none:
 * no overlong forms, no surrogates, nothing above U+10FFFF (what jansson accepts). */
static int utf8_seq(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    if (c >= 0xC2 && c <= 0xDF) return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return n >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return n >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80 ? 4 : 0;
    }
    return 0;
}

/* Validates the string whose opening quote is at s->p and steps past it. [*b, *e) is its raw
 * text; *esc tells whether it has escapes, s->nul whether one of them is \u0000. */
static bool scan_string(scanner *s, const unsigned char **b, const unsigned char **e, bool *esc) {
    const unsigned char *p = s->p + 1, *end = s->end;
    *b = p;
    *esc = false;
    s->nul = false;
    for (;;) {
        while (p < end && plain[*p]) p++;
        if (p >= end) return false;
        unsigned c = *p;
        if (c == '"') break;
        if (c == '\\') {
            *esc = true;
            if (end - p < 2) return false;
            c = p[1];
            if (c != 'u') {
                if (c != '"' && c != '\\' && c != '/' && c != 'b' && c != 'f' && c != 'n' && c != 'r' && c != 't')
                    return false;
                p += 2;
                continue;
            }
            if (end - p < 6) return false;
            int u = hex4(p + 2);
            if (u < 0) return false;
            p += 6;
            if (u >= 0xD800 && u <= 0xDBFF) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u') return false;
                int lo = hex4(p + 2);
                if (lo < 0xDC00 || lo > 0xDFFF) return false;
                p += 6;
            } else if (u >= 0xDC00 && u <= 0xDFFF) {
                return false;
            } else if (u == 0) {
                s->nul = true;
            }
            continue;
        }
        if (c < 0x20) return false;
        int n = utf8_seq(p, (size_t)(end - p));
        if (!n) return false;
        p += n;
    }
    *e = p;
    s->p = p + 1;
    return true;
}

/* Decodes a string scan_string accepted into out (room for e - b bytes: decoding never grows a
 * string); returns the decoded length. */
static size_t decode_string(const unsigned char *b, const unsigned char *e, char *out) {
    size_t n = 0;
    while (b < e) {
        if (*b != '\\') {
            out[n++] = (char)*b++;
            continue;
        }
        unsigned c = b[1];
        b += 2;
        switch (c) {
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u': {
            int32_t u = hex4(b);
            b += 4;
            if (u >= 0xD800 && u <= 0xDBFF) {
                u = 0x10000 + ((u - 0xD800) << 10) + (hex4(b + 2) - 0xDC00);
                b += 6;
            }
            n += (size_t)eft__utf8_encode(u, out + n);
            break;
        }
        default: out[n++] = (char)c; break; /* " \ / */
        }
    }
    return n;
}

/* The text of a string scan_string accepted: borrowed from the document when it has no escapes,
 * else decoded into pre->strings. NULL when out of memory. */
static const char *string_text(scanner *s, const unsigned char *b, const unsigned char *e, bool esc, uint32_t *len) {
    if (!esc) {
        *len = (uint32_t)(e - b);
        return (const char *)b;
    }
    eft__json_pre *pre = s->pre;
    if (!pre->strings) {
        /* Sized to the document once, so that pointers into it stay valid. */
        if (!(pre->strings = eft__malloc(s->doc_len))) {
            s->oom = true;
            return NULL;
        }
    }
    char *out = pre->strings + pre->strings_len;
    size_t n = decode_string(b, e, out);
    pre->strings_len += n;
    *len = (uint32_t)n;
    return out;
}

/* True when the key [b, e) spells name once decoded. */
static bool key_is(const unsigned char *b, const unsigned char *e, bool esc, const char *name) {
    size_t n = strlen(name);
    if (!esc) return (size_t)(e - b) == n && !memcmp(b, name, n);
    char tmp[96];
    if ((size_t)(e - b) > sizeof tmp) return false; /* too long to spell a short name */
    return decode_string(b, e, tmp) == n && !memcmp(tmp, name, n);
}

static bool scan_value(scanner *s);

static bool scan_word(scanner *s, const char *w, size_t n) {
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n)) return false;
    s->p += n;
    return true;
}

static bool is_digit(const scanner *s, const unsigned char *p) { return p < s->end && *p >= '0' && *p <= '9'; }

static bool scan_number(scanner *s) {
    const unsigned char *p = s->p;
    if (p < s->end && *p == '-') p++;
    if (!is_digit(s, p)) return false;
    if (*p == '0') p++;
    else while (is_digit(s, p)) p++;
    if (p < s->end && *p == '.') {
        if (!is_digit(s, ++p)) return false;
        while (is_digit(s, p)) p++;
    }
    if (p < s->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < s->end && (*p == '+' || *p == '-')) p++;
        if (!is_digit(s, p)) return false;
        while (is_digit(s, p)) p++;
    }
    s->p = p;
    return true;
}

/* An object whose opening brace is at s->p. For the model object (model true) "vocab" and
 * "merges" are read into s->pre instead of being only validated. */
static bool scan_object(scanner *s, int level);

static bool scan_array(scanner *s) {
    if (++s->depth > MAX_DEPTH) return false;
    s->p++;
    if (!eat(s, ']')) {
        do {
            if (!scan_value(s)) return false;
        } while (eat(s, ','));
        if (!eat(s, ']')) return false;
    }
    s->depth--;
    return true;
}

static bool scan_value(scanner *s) {
    skip_ws(s);
    if (s->p >= s->end) return false;
    const unsigned char *b, *e;
    bool esc;
    switch (*s->p) {
    case '{': return scan_object(s, 2);
    case '[': return scan_array(s);
    case '"': return scan_string(s, &b, &e, &esc);
    case 't': return scan_word(s, "true", 4);
    case 'f': return scan_word(s, "false", 5);
    case 'n': return scan_word(s, "null", 4);
    default: return scan_number(s);
    }
}

/* {"token": id, ...} with ids in 0..2^24-1, at s->p. */
static bool read_vocab(scanner *s) {
    eft__json_pre *pre = s->pre;
    s->p++;
    pre->has_vocab = true;
    if (eat(s, '}')) return true;
    do {
        const unsigned char *b, *e;
        bool esc;
        skip_ws(s);
        if (s->p >= s->end || *s->p != '"' || !scan_string(s, &b, &e, &esc) || s->nul) return false;
        if (!eat(s, ':')) return false;
        skip_ws(s);
        /* A small non-negative integer; anything else (a real, a huge or negative number) is left
         * to the loader's messages on the jansson path. */
        const unsigned char *p = s->p;
        if (!is_digit(s, p)) return false;
        uint32_t id = 0;
        if (*p == '0') {
            p++;
        } else {
            int digits = 0;
            while (is_digit(s, p)) {
                if (++digits > 8) return false;
                id = id * 10 + (uint32_t)(*p++ - '0');
            }
        }
        if (id >= (1u << 24) || (p < s->end && (*p == '.' || *p == 'e' || *p == 'E' || (*p >= '0' && *p <= '9'))))
            return false;
        s->p = p;
        if (pre->n_vocab == pre->vocab_cap) {
            size_t cap = pre->vocab_cap ? pre->vocab_cap * 2 : 4096;
            eft__vocab_entry *v = eft__realloc(pre->vocab, cap * sizeof *v);
            if (!v) {
                s->oom = true;
                return false;
            }
            pre->vocab = v;
            pre->vocab_cap = cap;
        }
        uint32_t len;
        const char *text = string_text(s, b, e, esc, &len);
        if (!text) return false;
        pre->vocab[pre->n_vocab++] = (eft__vocab_entry){text, len, (int32_t)id};
        if ((int32_t)id > pre->max_id) pre->max_id = (int32_t)id;
        pre->vocab_bytes += len + 1;
    } while (eat(s, ','));
    return eat(s, '}');
}

/* A string of a merge, NUL-free, at s->p after white space. */
static const char *merge_part(scanner *s, uint32_t *len) {
    const unsigned char *b, *e;
    bool esc;
    skip_ws(s);
    if (s->p >= s->end || *s->p != '"' || !scan_string(s, &b, &e, &esc) || s->nul) return NULL;
    return string_text(s, b, e, esc, len);
}

/* ["a b", ...] or [["a", "b"], ...], at s->p. */
static bool read_merges(scanner *s) {
    eft__json_pre *pre = s->pre;
    s->p++;
    pre->has_merges = true;
    if (eat(s, ']')) return true;
    do {
        eft__merge_entry m = {0};
        skip_ws(s);
        if (s->p < s->end && *s->p == '[') {
            s->p++;
            if (!(m.a = merge_part(s, &m.alen)) || !eat(s, ',') || !(m.b = merge_part(s, &m.blen)) || !eat(s, ']'))
                return false;
        } else if (!(m.a = merge_part(s, &m.alen))) {
            return false;
        }
        if (pre->n_merges == pre->merges_cap) {
            size_t cap = pre->merges_cap ? pre->merges_cap * 2 : 4096;
            eft__merge_entry *v = eft__realloc(pre->merges, cap * sizeof *v);
            if (!v) {
                s->oom = true;
                return false;
            }
            pre->merges = v;
            pre->merges_cap = cap;
        }
        pre->merges[pre->n_merges++] = m;
    } while (eat(s, ','));
    return eat(s, ']');
}

/* level 0: the document, 1: its "model", 2: anything else. */
static bool scan_object(scanner *s, int level) {
    if (++s->depth > MAX_DEPTH) return false;
    s->p++;
    bool seen_model = false, seen_vocab = false, seen_merges = false;
    if (!eat(s, '}')) {
        do {
            const unsigned char *b, *e;
            bool esc;
            skip_ws(s);
            if (s->p >= s->end || *s->p != '"' || !scan_string(s, &b, &e, &esc)) return false;
            if (!eat(s, ':')) return false;
            skip_ws(s);
            bool ok;
            if (level == 0 && key_is(b, e, esc, "model")) {
                /* jansson keeps the last of repeated keys; rather than follow, decline. */
                if (seen_model) return false;
                seen_model = true;
                ok = s->p < s->end && *s->p == '{' ? scan_object(s, 1) : scan_value(s);
            } else if (level == 1 && key_is(b, e, esc, "vocab")) {
                if (seen_vocab) return false;
                seen_vocab = true;
                /* A Unigram vocabulary is an array of [piece, score]: left to jansson. */
                if (s->p < s->end && *s->p == '{') {
                    s->pre->vocab_span[0] = (size_t)(s->p - s->doc);
                    ok = read_vocab(s);
                    s->pre->vocab_span[1] = (size_t)(s->p - s->doc);
                } else {
                    ok = scan_value(s);
                }
            } else if (level == 1 && key_is(b, e, esc, "merges")) {
                if (seen_merges) return false;
                seen_merges = true;
                if (s->p < s->end && *s->p == '[') {
                    s->pre->merges_span[0] = (size_t)(s->p - s->doc);
                    ok = read_merges(s);
                    s->pre->merges_span[1] = (size_t)(s->p - s->doc);
                } else {
                    ok = scan_value(s);
                }
            } else {
                ok = scan_value(s);
            }
            if (!ok) return false;
        } while (eat(s, ','));
        if (!eat(s, '}')) return false;
    }
    s->depth--;
    return true;
}

void eft__json_pre_free(eft__json_pre *pre) {
    eft__free(pre->vocab);
    eft__free(pre->merges);
    eft__free(pre->strings);
    eft__free(pre->doc);
    memset(pre, 0, sizeof *pre);
}

/* Appends [from, to) of src and then rep. */
static size_t splice(char *out, size_t at, const char *src, size_t from, size_t to, const char *rep) {
    memcpy(out + at, src + from, to - from);
    at += to - from;
    size_t n = strlen(rep);
    memcpy(out + at, rep, n);
    return at + n;
}

eft_status eft__json_pre_scan(const char *json, size_t len, eft__json_pre *pre, eft__error *err) {
    memset(pre, 0, sizeof *pre);
    pre->max_id = -1;
    scanner s = {(const unsigned char *)json, (const unsigned char *)json + len, 0, false, false, pre,
                 (const unsigned char *)json, len};
    skip_ws(&s);
    bool ok = s.p < s.end && *s.p == '{' && scan_object(&s, 0);
    if (ok) {
        skip_ws(&s);
        ok = s.p == s.end;
    }
    if (s.oom) {
        eft__json_pre_free(pre);
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory reading tokenizer.json");
    }
    if (!ok || (!pre->has_vocab && !pre->has_merges)) {
        eft__json_pre_free(pre);
        pre->declined = true;
        return EFT_OK;
    }
    /* The rest of the document for jansson: the two values become {} and []. */
    if (!(pre->doc = eft__malloc(len + 4))) {
        eft__json_pre_free(pre);
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory reading tokenizer.json");
    }
    struct cut {
        size_t b, e;
        const char *rep;
    } cut[2];
    int n = 0;
    if (pre->has_vocab) cut[n++] = (struct cut){pre->vocab_span[0], pre->vocab_span[1], "{}"};
    if (pre->has_merges) cut[n++] = (struct cut){pre->merges_span[0], pre->merges_span[1], "[]"};
    if (n == 2 && cut[1].b < cut[0].b) {
        struct cut t = cut[0];
        cut[0] = cut[1];
        cut[1] = t;
    }
    size_t at = 0, from = 0;
    for (int i = 0; i < n; i++) {
        at = splice(pre->doc, at, json, from, cut[i].b, cut[i].rep);
        from = cut[i].e;
    }
    at = splice(pre->doc, at, json, from, len, "");
    pre->doc_len = at;
    return EFT_OK;
}
