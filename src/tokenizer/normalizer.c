/*
 * normalizer.c — Hugging Face normalizers: BertNormalizer, NFC/NFD/NFKC/NFKD, Lowercase,
 * StripAccents, Replace, Prepend, Strip, Precompiled (SentencePiece's charsmap) and Sequence.
 * Each one rewrites an aligned string character by character, so every output byte still knows
 * which original bytes it came from. Unicode data comes from utf8proc.
 */
#define _GNU_SOURCE /* memmem */
#include <jansson.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tokenizer.h"

/* ---------------------------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------------------------- */

static int b64_val(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decodes standard base64 (padding optional) into a fresh buffer. */
static bool b64_decode(const char *s, size_t n, uint8_t **out, size_t *out_len) {
    uint8_t *b = eft__malloc(n / 4 * 3 + 3);
    if (!b) return false;
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=') break;
        int v = b64_val((unsigned char)s[i]);
        if (v < 0) {
            eft__free(b);
            *out = NULL;
            return true; /* caller reports the format error */
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            b[k++] = (uint8_t)(acc >> bits);
        }
    }
    *out = b;
    *out_len = k;
    return true;
}

static eft_status load_precompiled(eft__normalizer *n, const json_t *j, eft__error *err) {
    size_t len;
    const char *s = eft__json_str(j, "precompiled_charsmap", &len);
    if (!s || len == 0) return EFT_OK; /* an empty charsmap normalizes nothing */
    uint8_t *raw;
    size_t raw_len;
    if (!b64_decode(s, len, &raw, &raw_len)) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    if (!raw) return eft__fail(err, EFT_ERR_FORMAT, "Precompiled: precompiled_charsmap is not base64");
    uint32_t trie_bytes = 0;
    if (raw_len >= 4) trie_bytes = raw[0] | raw[1] << 8 | raw[2] << 16 | (uint32_t)raw[3] << 24;
    if (raw_len < 4 || trie_bytes % 4 || trie_bytes > raw_len - 4 || trie_bytes == 0) {
        eft__free(raw);
        return eft__fail(err, EFT_ERR_FORMAT,
                         "Precompiled: the charsmap declares a %u-byte trie but has %zu bytes",
                         trie_bytes, raw_len);
    }
    n->trie_units = trie_bytes / 4;
    n->trie = eft__malloc_array(n->trie_units, 4);
    n->pc_strings_len = raw_len - 4 - trie_bytes;
    n->pc_strings = eft__malloc(n->pc_strings_len + 1);
    if (!n->trie || !n->pc_strings) {
        eft__free(raw);
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (size_t i = 0; i < n->trie_units; i++) {
        const uint8_t *p = raw + 4 + 4 * i;
        n->trie[i] = p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
    }
    memcpy(n->pc_strings, raw + 4 + trie_bytes, n->pc_strings_len);
    n->pc_strings[n->pc_strings_len] = 0; /* a final terminator, so lookups always stop */
    eft__free(raw);
    return EFT_OK;
}

static eft_status load_pattern(const json_t *j, const char *what, char **pat, size_t *pat_len,
                               eft__regex *re, eft__error *err) {
    const json_t *p = json_object_get(j, "pattern");
    size_t len;
    const char *s;
    if ((s = eft__json_str(p, "String", &len))) {
        if (len == 0) return eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: an empty String pattern", what);
        *pat = eft__strndup(s, len);
        *pat_len = len;
        return *pat ? EFT_OK : eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    }
    if ((s = eft__json_str(p, "Regex", &len))) return eft__regex_compile(re, s, len, err);
    return eft__fail(err, EFT_ERR_FORMAT, "%s: \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}",
                     what);
}

eft_status eft__normalizer_load(eft__normalizer *n, const json_t *j, eft__error *err) {
    memset(n, 0, sizeof *n);
    const char *type = eft__json_str(j, "type", NULL);
    if (!type) return eft__fail(err, EFT_ERR_FORMAT, "normalizer: no \"type\"");
    if (!strcmp(type, "BertNormalizer")) {
        n->kind = EFT__NORM_BERT;
        n->clean_text = eft__json_bool(j, "clean_text", true);
        n->chinese_chars = eft__json_bool(j, "handle_chinese_chars", true);
        n->lowercase = eft__json_bool(j, "lowercase", true);
        n->strip_accents = eft__json_bool(j, "strip_accents", n->lowercase);
    } else if (!strcmp(type, "NFC")) {
        n->kind = EFT__NORM_NFC;
    } else if (!strcmp(type, "NFD")) {
        n->kind = EFT__NORM_NFD;
    } else if (!strcmp(type, "NFKC")) {
        n->kind = EFT__NORM_NFKC;
    } else if (!strcmp(type, "NFKD")) {
        n->kind = EFT__NORM_NFKD;
    } else if (!strcmp(type, "Lowercase")) {
        n->kind = EFT__NORM_LOWERCASE;
    } else if (!strcmp(type, "StripAccents")) {
        n->kind = EFT__NORM_STRIP_ACCENTS;
    } else if (!strcmp(type, "Strip")) {
        n->kind = EFT__NORM_STRIP;
        n->left = eft__json_bool(j, "strip_left", true);
        n->right = eft__json_bool(j, "strip_right", true);
    } else if (!strcmp(type, "Prepend")) {
        n->kind = EFT__NORM_PREPEND;
        const char *s = eft__json_str(j, "prepend", &n->content_len);
        if (!s) return eft__fail(err, EFT_ERR_FORMAT, "Prepend normalizer: no \"prepend\" string");
        if (!(n->content = eft__strndup(s, n->content_len)))
            return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    } else if (!strcmp(type, "Replace")) {
        n->kind = EFT__NORM_REPLACE;
        const char *s = eft__json_str(j, "content", &n->content_len);
        if (!s) return eft__fail(err, EFT_ERR_FORMAT, "Replace normalizer: no \"content\" string");
        if (!(n->content = eft__strndup(s, n->content_len)))
            return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        return load_pattern(j, "Replace normalizer", &n->pattern, &n->pattern_len, &n->re, err);
    } else if (!strcmp(type, "Precompiled")) {
        n->kind = EFT__NORM_PRECOMPILED;
        return load_precompiled(n, j, err);
    } else if (!strcmp(type, "Sequence")) {
        n->kind = EFT__NORM_SEQUENCE;
        const json_t *a = json_object_get(j, "normalizers");
        if (!json_is_array(a)) return eft__fail(err, EFT_ERR_FORMAT, "Sequence normalizer: no \"normalizers\" array");
        n->items = eft__calloc(json_array_size(a) + 1, sizeof *n->items);
        if (!n->items) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        for (size_t i = 0; i < json_array_size(a); i++) {
            n->n_items = i + 1;
            eft_status st = eft__normalizer_load(&n->items[i], json_array_get(a, i), err);
            if (st) return st;
        }
    } else {
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "normalizer \"%s\" is not supported", type);
    }
    return EFT_OK;
}

void eft__normalizer_free(eft__normalizer *n) {
    if (!n) return;
    for (size_t i = 0; i < n->n_items; i++) eft__normalizer_free(&n->items[i]);
    eft__free(n->items);
    eft__free(n->pattern);
    eft__free(n->content);
    eft__regex_free(&n->re);
    eft__free(n->trie);
    eft__free(n->pc_strings);
    memset(n, 0, sizeof *n);
}

/* ---------------------------------------------------------------------------------------------
 * Character-level helpers
 * ------------------------------------------------------------------------------------------- */

/* The span of the character at in->s[i..i+k). */
static eft__span char_span(const eft__nstr *in, size_t i, int k) {
    return (eft__span){in->al[i].start, in->al[i + (size_t)k - 1].end};
}

static bool push_cp(eft__nstr *out, int32_t c, eft__span sp) {
    char b[4];
    int k = eft__utf8_encode(c, b);
    return eft__nstr_push(out, b, (size_t)k, sp);
}

/* BERT's control characters: categories Cc, Cf, Cn, Co (and Cs), except \t \n \r. */
static bool bert_is_control(int32_t c) {
    if (c == '\t' || c == '\n' || c == '\r') return false;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_CO: case UTF8PROC_CATEGORY_CS:
        return true;
    default:
        return false;
    }
}

static bool is_chinese(int32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Rust's char::to_lowercase, which utf8proc gives one code point at a time except for U+0130. */
static bool push_lower(eft__nstr *out, int32_t c, eft__span sp) {
    if (c < 0x80) {
        char b = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        return eft__nstr_push(out, &b, 1, sp);
    }
    if (c == 0x130) return push_cp(out, 'i', sp) && push_cp(out, 0x307, sp);
    return push_cp(out, utf8proc_tolower(c), sp);
}

/* ---------------------------------------------------------------------------------------------
 * Unicode normalization forms. Text is normalized one grapheme cluster at a time, which keeps
 * each output character aligned to the cluster it came from; composition never crosses a
 * cluster boundary in practice (Hangul syllables and combining sequences stay inside one).
 * ------------------------------------------------------------------------------------------- */

static bool normalize_form(eft__norm_kind kind, const eft__nstr *in, eft__nstr *out) {
    utf8proc_option_t opt = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
    if (kind == EFT__NORM_NFKC || kind == EFT__NORM_NFKD) opt |= UTF8PROC_COMPAT;
    bool compose = kind == EFT__NORM_NFC || kind == EFT__NORM_NFKC;
    utf8proc_int32_t stack[64], *buf = stack;
    size_t buf_cap = 64;
    bool ok = true;
    size_t i = 0;
    while (i < in->len && ok) {
        unsigned char c0 = (unsigned char)in->s[i];
        /* ASCII not followed by a combining character is its own cluster and is invariant. */
        if (c0 < 0x80 && (i + 1 >= in->len || (unsigned char)in->s[i + 1] < 0x80)) {
            ok = eft__nstr_push(out, in->s + i, 1, in->al[i]);
            i++;
            continue;
        }
        /* Find the cluster [i, j). */
        utf8proc_int32_t state = 0;
        int k;
        int32_t prev = eft__utf8_decode(in->s + i, in->len - i, &k);
        size_t j = i + (size_t)k, nchars = 1;
        while (j < in->len) {
            int32_t c = eft__utf8_decode(in->s + j, in->len - j, &k);
            if (utf8proc_grapheme_break_stateful(prev, c, &state)) break;
            prev = c;
            j += (size_t)k;
            nchars++;
        }
        /* Decompose every character of the cluster into buf. */
        size_t n = 0;
        for (size_t p = i; p < j;) {
            int32_t c = eft__utf8_decode(in->s + p, j - p, &k);
            p += (size_t)k;
            for (;;) {
                int last_boundclass = 0;
                utf8proc_ssize_t r = utf8proc_decompose_char(c, buf + n, (utf8proc_ssize_t)(buf_cap - n),
                                                             opt, &last_boundclass);
                if (r < 0) {
                    ok = false;
                    break;
                }
                if ((size_t)r <= buf_cap - n) {
                    n += (size_t)r;
                    break;
                }
                size_t cap = buf_cap * 2 + (size_t)r;
                utf8proc_int32_t *nb = eft__malloc_array(cap, sizeof *nb);
                if (!nb) {
                    ok = false;
                    break;
                }
                memcpy(nb, buf, n * sizeof *nb);
                if (buf != stack) eft__free(buf);
                buf = nb;
                buf_cap = cap;
            }
            if (!ok) break;
        }
        if (!ok) break;
        utf8proc_ssize_t m = utf8proc_normalize_utf32(buf, (utf8proc_ssize_t)n,
                                                      opt | (compose ? UTF8PROC_COMPOSE : 0));
        if (m < 0) {
            ok = false;
            break;
        }
        eft__span whole = char_span(in, i, (int)(j - i));
        if (nchars == 1) {
            for (utf8proc_ssize_t q = 0; q < m && ok; q++) ok = push_cp(out, buf[q], whole);
        } else if ((size_t)m <= nchars) {
            /* As many characters or fewer (composition): output character q keeps the alignment
             * of input character q, so a composed character aligns with its starter and the
             * marks it absorbed vanish, as in HF. */
            size_t p = i;
            for (utf8proc_ssize_t q = 0; q < m && ok; q++) {
                eft__utf8_decode(in->s + p, j - p, &k);
                ok = push_cp(out, buf[q], char_span(in, p, k));
                p += (size_t)k;
            }
        } else {
            for (utf8proc_ssize_t q = 0; q < m && ok; q++) ok = push_cp(out, buf[q], whole);
        }
        i = j;
    }
    if (buf != stack) eft__free(buf);
    return ok;
}

/* ---------------------------------------------------------------------------------------------
 * BertNormalizer, Lowercase, StripAccents, Strip, Prepend, Replace
 * ------------------------------------------------------------------------------------------- */

static bool bert_normalize(const eft__normalizer *n, const eft__nstr *in, eft__nstr *out) {
    eft__nstr tmp = {0}, tmp2 = {0};
    bool ok = true;
    /* clean_text and Chinese characters in one pass */
    for (size_t i = 0; i < in->len && ok;) {
        int k;
        int32_t c = eft__utf8_decode(in->s + i, in->len - i, &k);
        eft__span sp = char_span(in, i, k);
        if (n->clean_text && (c == 0 || c == 0xFFFD || bert_is_control(c))) {
            /* dropped */
        } else if (n->clean_text && (c == '\t' || c == '\n' || c == '\r' || eft__is_whitespace(c))) {
            ok = eft__nstr_push(&tmp, " ", 1, sp);
        } else if (n->chinese_chars && is_chinese(c)) {
            ok = eft__nstr_push(&tmp, " ", 1, sp) && eft__nstr_push(&tmp, in->s + i, (size_t)k, sp) &&
                 eft__nstr_push(&tmp, " ", 1, sp);
        } else {
            ok = eft__nstr_push(&tmp, in->s + i, (size_t)k, sp);
        }
        i += (size_t)k;
    }
    const eft__nstr *cur = &tmp;
    if (ok && n->strip_accents) {
        eft__nstr d = {0};
        ok = normalize_form(EFT__NORM_NFD, cur, &d);
        for (size_t i = 0; i < d.len && ok;) {
            int k;
            int32_t c = eft__utf8_decode(d.s + i, d.len - i, &k);
            if (c < 0x80 || utf8proc_category(c) != UTF8PROC_CATEGORY_MN)
                ok = eft__nstr_push(&tmp2, d.s + i, (size_t)k, char_span(&d, i, k));
            i += (size_t)k;
        }
        eft__nstr_free(&d);
        cur = &tmp2;
    }
    if (ok && n->lowercase) {
        for (size_t i = 0; i < cur->len && ok;) {
            int k;
            int32_t c = eft__utf8_decode(cur->s + i, cur->len - i, &k);
            ok = push_lower(out, c, char_span(cur, i, k));
            i += (size_t)k;
        }
    } else if (ok) {
        for (size_t i = 0; i < cur->len && ok; i++) ok = eft__nstr_push(out, cur->s + i, 1, cur->al[i]);
    }
    eft__nstr_free(&tmp);
    eft__nstr_free(&tmp2);
    return ok;
}

static bool replace_normalize(const eft__normalizer *n, const eft__nstr *in, eft__nstr *out) {
    bool ok = true;
    size_t pos = 0;
    pcre2_match_data *md = NULL;
    if (n->re.code && !(md = eft__regex_match_data(&n->re))) return false;
    while (pos <= in->len && ok) {
        size_t ms, me;
        bool found;
        if (md) {
            found = eft__regex_next(&n->re, md, in->s, in->len, pos, &ms, &me);
        } else {
            const char *hit = NULL;
            if (in->len - pos >= n->pattern_len)
                hit = memmem(in->s + pos, in->len - pos, n->pattern, n->pattern_len);
            found = hit != NULL;
            if (found) {
                ms = (size_t)(hit - in->s);
                me = ms + n->pattern_len;
            }
        }
        if (!found || ms == me) {
            /* No more matches (an empty regex match replaces nothing, as in HF). */
            if (found && ms == me && ms < in->len) {
                size_t step = (size_t)eft__utf8_len((unsigned char)in->s[ms]);
                for (size_t i = pos; i < ms + step && ok; i++) ok = eft__nstr_push(out, in->s + i, 1, in->al[i]);
                pos = ms + step;
                continue;
            }
            for (size_t i = pos; i < in->len && ok; i++) ok = eft__nstr_push(out, in->s + i, 1, in->al[i]);
            break;
        }
        for (size_t i = pos; i < ms && ok; i++) ok = eft__nstr_push(out, in->s + i, 1, in->al[i]);
        /* HF aligns the replacement with the last character of the match. */
        if (ok) {
            size_t lc = me - 1;
            while (lc > ms && ((unsigned char)in->s[lc] & 0xC0) == 0x80) lc--;
            ok = eft__nstr_push(out, n->content, n->content_len, (eft__span){in->al[lc].start, in->al[me - 1].end});
        }
        pos = me;
    }
    if (md) pcre2_match_data_free(md);
    return ok;
}

/* ---------------------------------------------------------------------------------------------
 * Precompiled: SentencePiece's normalization rules, a darts-clone double-array trie mapping byte
 * strings to offsets of replacement strings. As in HF, a grapheme shorter than 6 bytes is looked
 * up whole first, then each of its characters.
 * ------------------------------------------------------------------------------------------- */

/* The value of the shortest key that is a prefix of s[0..n), or -1. */
static int64_t trie_first_prefix(const eft__normalizer *nz, const char *s, size_t n) {
    const uint32_t *u = nz->trie;
    size_t nu = nz->trie_units;
    uint32_t unit = u[0];
    size_t pos = (unit >> 10) << ((unit & (1u << 9)) >> 6);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        pos ^= c;
        if (pos >= nu) return -1;
        unit = u[pos];
        if ((unit & (0x80000000u | 0xFFu)) != c) return -1;
        pos ^= (unit >> 10) << ((unit & (1u << 9)) >> 6);
        if (pos >= nu) return -1;
        if ((unit >> 8) & 1) return (int64_t)(u[pos] & 0x7FFFFFFFu);
    }
    return -1;
}

/* Pushes the replacement for in->s[a..b) if the trie has one. Like HF's transformations, output
 * character q aligns with input character q, and extra output characters with the last input
 * character (characters beyond the output's length just vanish). */
static bool pc_transform(const eft__normalizer *nz, const eft__nstr *in, size_t a, size_t b, eft__nstr *out,
                         bool *done) {
    *done = false;
    int64_t v = trie_first_prefix(nz, in->s + a, b - a);
    if (v < 0 || (size_t)v >= nz->pc_strings_len) return true;
    const char *r = nz->pc_strings + v;
    size_t rl = strlen(r), p = a;
    *done = true;
    eft__span last = char_span(in, a, eft__utf8_len((unsigned char)in->s[a]));
    for (size_t q = 0; q < rl;) {
        size_t k = (size_t)eft__utf8_len((unsigned char)r[q]);
        if (q + k > rl) k = rl - q;
        if (p < b) {
            int ik = eft__utf8_len((unsigned char)in->s[p]);
            last = char_span(in, p, ik);
            p += (size_t)ik;
        }
        if (!eft__nstr_push(out, r + q, k, last)) return false;
        q += k;
    }
    return true;
}

static bool precompiled_normalize(const eft__normalizer *nz, const eft__nstr *in, eft__nstr *out) {
    if (!nz->trie) {
        for (size_t i = 0; i < in->len; i++)
            if (!eft__nstr_push(out, in->s + i, 1, in->al[i])) return false;
        return true;
    }
    bool ok = true;
    size_t i = 0;
    while (i < in->len && ok) {
        utf8proc_int32_t state = 0;
        int k;
        int32_t prev = eft__utf8_decode(in->s + i, in->len - i, &k);
        size_t j = i + (size_t)k;
        while (j < in->len) {
            int32_t c = eft__utf8_decode(in->s + j, in->len - j, &k);
            if (utf8proc_grapheme_break_stateful(prev, c, &state)) break;
            prev = c;
            j += (size_t)k;
        }
        bool done = false;
        if (j - i < 6) ok = pc_transform(nz, in, i, j, out, &done);
        for (size_t p = i; ok && !done && p < j;) {
            k = eft__utf8_len((unsigned char)in->s[p]);
            bool d2;
            ok = pc_transform(nz, in, p, p + (size_t)k, out, &d2);
            if (ok && !d2) ok = eft__nstr_push(out, in->s + p, (size_t)k, char_span(in, p, k));
            p += (size_t)k;
        }
        i = j;
    }
    return ok;
}

/* ---------------------------------------------------------------------------------------------
 * Dispatch
 * ------------------------------------------------------------------------------------------- */

bool eft__normalize(const eft__normalizer *n, const eft__nstr *in, eft__nstr *out) {
    out->len = 0;
    switch (n->kind) {
    case EFT__NORM_BERT:
        return bert_normalize(n, in, out);
    case EFT__NORM_NFC: case EFT__NORM_NFD: case EFT__NORM_NFKC: case EFT__NORM_NFKD:
        return normalize_form(n->kind, in, out);
    case EFT__NORM_LOWERCASE:
        for (size_t i = 0; i < in->len;) {
            int k;
            int32_t c = eft__utf8_decode(in->s + i, in->len - i, &k);
            if (!push_lower(out, c, char_span(in, i, k))) return false;
            i += (size_t)k;
        }
        return true;
    case EFT__NORM_STRIP_ACCENTS:
        for (size_t i = 0; i < in->len;) {
            int k;
            int32_t c = eft__utf8_decode(in->s + i, in->len - i, &k);
            utf8proc_category_t cat = c < 0x80 ? UTF8PROC_CATEGORY_LL : utf8proc_category(c);
            if (cat != UTF8PROC_CATEGORY_MN && cat != UTF8PROC_CATEGORY_MC && cat != UTF8PROC_CATEGORY_ME &&
                !eft__nstr_push(out, in->s + i, (size_t)k, char_span(in, i, k)))
                return false;
            i += (size_t)k;
        }
        return true;
    case EFT__NORM_STRIP: {
        size_t a = 0, b = in->len;
        while (n->left && a < b) {
            int k;
            int32_t c = eft__utf8_decode(in->s + a, b - a, &k);
            if (!eft__is_whitespace(c)) break;
            a += (size_t)k;
        }
        while (n->right && b > a) {
            size_t p = b - 1;
            while (p > a && ((unsigned char)in->s[p] & 0xC0) == 0x80) p--;
            int k;
            int32_t c = eft__utf8_decode(in->s + p, b - p, &k);
            if (!eft__is_whitespace(c)) break;
            b = p;
        }
        for (size_t i = a; i < b; i++)
            if (!eft__nstr_push(out, in->s + i, 1, in->al[i])) return false;
        return true;
    }
    case EFT__NORM_PREPEND:
        if (in->len && !eft__nstr_push(out, n->content, n->content_len,
                                       char_span(in, 0, eft__utf8_len((unsigned char)in->s[0]))))
            return false;
        for (size_t i = 0; i < in->len; i++)
            if (!eft__nstr_push(out, in->s + i, 1, in->al[i])) return false;
        return true;
    case EFT__NORM_REPLACE:
        return replace_normalize(n, in, out);
    case EFT__NORM_PRECOMPILED:
        return precompiled_normalize(n, in, out);
    case EFT__NORM_SEQUENCE: {
        eft__nstr a = {0}, b = {0};
        const eft__nstr *cur = in;
        bool ok = true;
        for (size_t i = 0; i < n->n_items && ok; i++) {
            eft__nstr *dst = (cur == &a) ? &b : &a;
            ok = eft__normalize(&n->items[i], cur, dst);
            cur = dst;
        }
        if (ok) {
            if (cur == in) {
                for (size_t i = 0; i < in->len && ok; i++) ok = eft__nstr_push(out, in->s + i, 1, in->al[i]);
            } else {
                eft__nstr *c = (eft__nstr *)cur;
                eft__nstr_free(out);
                *out = *c;
                memset(c, 0, sizeof *c);
            }
        }
        eft__nstr_free(&a);
        eft__nstr_free(&b);
        return ok;
    }
    }
    return false;
}
