/*
 * decoder.c — Hugging Face decoders: ByteLevel, WordPiece, Metaspace, ByteFallback, Fuse, Strip,
 * Replace, BPEDecoder, CTC and Sequence. Each rewrites a list of token strings the way HF's
 * decode_chain does, so a Sequence composes exactly as in HF; the final list is concatenated.
 * Invalid UTF-8 produced by byte tokens becomes U+FFFD, as Rust's from_utf8_lossy does.
 */
#define _GNU_SOURCE /* memmem */
#include <jansson.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tokenizer.h"

bool eft__strlist_add(eft__strlist *l, const char *s, size_t len) {
    /* buf is allocated even for empty strings, so buf + off is never arithmetic on NULL */
    if (l->len + len > l->cap || !l->buf) {
        size_t cap = l->cap ? l->cap : 256;
        while (cap < l->len + len) cap *= 2;
        char *b = eft__realloc(l->buf, cap);
        if (!b) return false;
        l->buf = b;
        l->cap = cap;
    }
    if (l->n == l->ncap) {
        size_t cap = l->ncap ? l->ncap * 2 : 32;
        size_t *o = eft__realloc(l->off, cap * sizeof *o);
        if (!o) return false;
        l->off = o;
        size_t *n = eft__realloc(l->slen, cap * sizeof *n);
        if (!n) return false;
        l->slen = n;
        l->ncap = cap;
    }
    if (len) memcpy(l->buf + l->len, s, len);
    l->off[l->n] = l->len;
    l->slen[l->n] = len;
    l->n++;
    l->len += len;
    return true;
}

void eft__strlist_free(eft__strlist *l) {
    eft__free(l->buf);
    eft__free(l->off);
    eft__free(l->slen);
    memset(l, 0, sizeof *l);
}

/* ---------------------------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------------------------- */

static eft_status dup_str(const json_t *j, const char *key, const char *def, char **out, size_t *len,
                          eft__error *err) {
    const char *s = eft__json_str(j, key, len);
    if (!s) {
        s = def;
        *len = strlen(def);
    }
    if (!(*out = eft__strndup(s, *len))) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    return EFT_OK;
}

eft_status eft__tokdec_load(eft__tokdec *d, const json_t *j, eft__error *err) {
    memset(d, 0, sizeof *d);
    const char *type = eft__json_str(j, "type", NULL);
    if (!type) return eft__fail(err, EFT_ERR_FORMAT, "decoder: no \"type\"");
    eft_status st;
    if (!strcmp(type, "ByteLevel")) {
        d->kind = EFT__DEC_BYTE_LEVEL;
        eft__byte_level_map();
    } else if (!strcmp(type, "WordPiece")) {
        d->kind = EFT__DEC_WORDPIECE;
        d->cleanup = eft__json_bool(j, "cleanup", true);
        return dup_str(j, "prefix", "##", &d->prefix, &d->prefix_len, err);
    } else if (!strcmp(type, "CTC")) {
        d->kind = EFT__DEC_CTC;
        d->cleanup = eft__json_bool(j, "cleanup", true);
        if ((st = dup_str(j, "pad_token", "<pad>", &d->content, &d->content_len, err))) return st;
        return dup_str(j, "word_delimiter_token", "|", &d->pattern, &d->pattern_len, err);
    } else if (!strcmp(type, "BPEDecoder")) {
        d->kind = EFT__DEC_BPE;
        return dup_str(j, "suffix", "</w>", &d->prefix, &d->prefix_len, err);
    } else if (!strcmp(type, "Metaspace")) {
        d->kind = EFT__DEC_METASPACE;
        size_t len;
        const char *r = eft__json_str(j, "replacement", &len);
        int k = 0;
        d->replacement = r ? eft__utf8_decode(r, len, &k) : 0x2581;
        if (d->replacement < 0 || (r && (size_t)k != len))
            return eft__fail(err, EFT_ERR_FORMAT, "Metaspace decoder: the replacement must be one character");
        const char *ps = eft__json_str(j, "prepend_scheme", NULL);
        if (!ps) d->prepend = eft__json_bool(j, "add_prefix_space", true) ? EFT__PREPEND_ALWAYS : EFT__PREPEND_NEVER;
        else if (!strcmp(ps, "always")) d->prepend = EFT__PREPEND_ALWAYS;
        else if (!strcmp(ps, "first")) d->prepend = EFT__PREPEND_FIRST;
        else if (!strcmp(ps, "never")) d->prepend = EFT__PREPEND_NEVER;
        else return eft__fail(err, EFT_ERR_UNSUPPORTED, "Metaspace decoder: prepend_scheme \"%s\" is not supported", ps);
    } else if (!strcmp(type, "ByteFallback")) {
        d->kind = EFT__DEC_BYTE_FALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        d->kind = EFT__DEC_FUSE;
    } else if (!strcmp(type, "Strip")) {
        d->kind = EFT__DEC_STRIP;
        if ((st = dup_str(j, "content", " ", &d->content, &d->content_len, err))) return st;
        int k;
        if (eft__utf8_decode(d->content, d->content_len, &k) < 0 || (size_t)k != d->content_len)
            return eft__fail(err, EFT_ERR_FORMAT, "Strip decoder: \"content\" must be one character");
        const json_t *a = json_object_get(j, "start"), *b = json_object_get(j, "stop");
        d->start = json_is_integer(a) && json_integer_value(a) > 0 ? (size_t)json_integer_value(a) : 0;
        d->stop = json_is_integer(b) && json_integer_value(b) > 0 ? (size_t)json_integer_value(b) : 0;
    } else if (!strcmp(type, "Replace")) {
        d->kind = EFT__DEC_REPLACE;
        if ((st = dup_str(j, "content", "", &d->content, &d->content_len, err))) return st;
        const json_t *p = json_object_get(j, "pattern");
        size_t len;
        const char *s;
        if ((s = eft__json_str(p, "String", &len))) {
            if (!len) return eft__fail(err, EFT_ERR_UNSUPPORTED, "Replace decoder: an empty String pattern");
            if (!(d->pattern = eft__strndup(s, len))) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
            d->pattern_len = len;
            return EFT_OK;
        }
        if ((s = eft__json_str(p, "Regex", &len))) return eft__regex_compile(&d->re, s, len, err);
        return eft__fail(err, EFT_ERR_FORMAT, "Replace decoder: \"pattern\" must be {\"String\"} or {\"Regex\"}");
    } else if (!strcmp(type, "Sequence")) {
        d->kind = EFT__DEC_SEQUENCE;
        const json_t *a = json_object_get(j, "decoders");
        if (!json_is_array(a)) return eft__fail(err, EFT_ERR_FORMAT, "Sequence decoder: no \"decoders\" array");
        d->items = eft__calloc(json_array_size(a) + 1, sizeof *d->items);
        if (!d->items) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        for (size_t i = 0; i < json_array_size(a); i++) {
            d->n_items = i + 1;
            if ((st = eft__tokdec_load(&d->items[i], json_array_get(a, i), err))) return st;
        }
    } else {
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "decoder \"%s\" is not supported", type);
    }
    return EFT_OK;
}

void eft__tokdec_free(eft__tokdec *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n_items; i++) eft__tokdec_free(&d->items[i]);
    eft__free(d->items);
    eft__free(d->prefix);
    eft__free(d->content);
    eft__free(d->pattern);
    eft__regex_free(&d->re);
    memset(d, 0, sizeof *d);
}

/* ---------------------------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------------------------- */

/* Appends bytes with every maximal invalid UTF-8 subsequence replaced by U+FFFD. */
static bool push_lossy(eft__strlist *l, const char *s, size_t n) {
    /* One new (empty) string at the end, then grown in place. */
    if (!eft__strlist_add(l, NULL, 0)) return false;
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
        const char *p = s + i;
        size_t plen;
        if (k > 0) {
            plen = (size_t)k;
            i += (size_t)k;
        } else {
            /* Skip the maximal prefix of a valid sequence (WHATWG / Rust semantics). */
            size_t j = i + 1;
            unsigned char b0 = (unsigned char)s[i];
            int need = b0 >= 0xF0 && b0 <= 0xF4 ? 4 : b0 >= 0xE0 ? 3 : b0 >= 0xC2 && b0 < 0xE0 ? 2 : 1;
            for (int q = 1; q < need && j < n; q++, j++) {
                unsigned char b = (unsigned char)s[j];
                unsigned char lo = 0x80, hi = 0xBF;
                if (q == 1) {
                    if (b0 == 0xE0) lo = 0xA0;
                    else if (b0 == 0xED) hi = 0x9F;
                    else if (b0 == 0xF0) lo = 0x90;
                    else if (b0 == 0xF4) hi = 0x8F;
                }
                if (b < lo || b > hi) break;
            }
            i = j;
            p = "\xEF\xBF\xBD";
            plen = 3;
        }
        if (l->len + plen > l->cap) {
            size_t cap = l->cap * 2 + plen;
            char *b = eft__realloc(l->buf, cap);
            if (!b) return false;
            l->buf = b;
            l->cap = cap;
        }
        memcpy(l->buf + l->len, p, plen);
        l->len += plen;
        l->slen[l->n - 1] += plen;
    }
    return true;
}

static bool bytes_are_utf8(const uint8_t *b, size_t n) {
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(b + i, (utf8proc_ssize_t)(n - i), &c);
        if (k <= 0) return false;
        i += (size_t)k;
    }
    return true;
}

static bool starts_with(const char *s, size_t n, const char *p, size_t pn) {
    return n >= pn && !memcmp(s, p, pn);
}

/* Appends s with every pat replaced by rep, as one entry of l (an empty pat replaces nothing). */
static bool replace_lit(eft__strlist *l, const char *s, size_t n, const char *pat, size_t pl, const char *rep,
                        size_t rl) {
    eft__strlist one = {0};
    bool ok = true;
    size_t pos = 0;
    while (ok && pos < n && pl) {
        const char *h = n - pos >= pl ? memmem(s + pos, n - pos, pat, pl) : NULL;
        if (!h) break;
        ok = eft__strlist_add(&one, s + pos, (size_t)(h - s) - pos) && eft__strlist_add(&one, rep, rl);
        pos = (size_t)(h - s) + pl;
    }
    ok = ok && eft__strlist_add(&one, s + pos, n - pos) && eft__strlist_add(l, one.buf ? one.buf : "", one.len);
    eft__strlist_free(&one);
    return ok;
}

/* WordPiece's per-token cleanup, in HF's order. */
static bool wp_cleanup(eft__strlist *l, const char *s, size_t n) {
    static const char *from[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " do not", " 's", " 've", " 're"};
    static const char *to[] = {".", "?", "!", ",", "'", "n't", "'m", " don't", "'s", "'ve", "'re"};
    char *a = eft__strndup(s, n);
    if (!a) return false;
    size_t alen = n;
    for (size_t r = 0; r < sizeof from / sizeof *from; r++) {
        size_t fl = strlen(from[r]), tl = strlen(to[r]);
        char *hit = memmem(a, alen, from[r], fl);
        if (!hit) continue;
        /* the output never grows: every replacement is shorter */
        size_t w = 0, i = 0;
        while (i < alen) {
            if (i + fl <= alen && !memcmp(a + i, from[r], fl)) {
                memcpy(a + w, to[r], tl);
                w += tl;
                i += fl;
            } else {
                a[w++] = a[i++];
            }
        }
        alen = w;
    }
    bool ok = eft__strlist_add(l, a, alen);
    eft__free(a);
    return ok;
}

static bool decode_one(const eft__tokdec *d, const eft__strlist *in, eft__strlist *out) {
    bool ok = true;
    switch (d->kind) {
    case EFT__DEC_SEQUENCE:
        return false; /* handled by the caller */
    case EFT__DEC_BYTE_LEVEL: {
        const eft__byte_map *bm = eft__byte_level_map();
        char *bytes = eft__malloc(in->len + 1);
        if (!bytes) return false;
        size_t nb = 0;
        for (size_t t = 0; t < in->n; t++) {
            const char *s = in->buf + in->off[t];
            size_t n = in->slen[t], mark = nb;
            bool all = true;
            for (size_t i = 0; i < n;) {
                int k;
                int32_t c = eft__utf8_decode(s + i, n - i, &k);
                if (c < 0 || c >= 324 || bm->dec[c] < 0) {
                    all = false;
                    break;
                }
                bytes[nb++] = (char)bm->dec[c];
                i += (size_t)k;
            }
            if (!all) {
                /* a token outside the byte alphabet passes through as it is */
                nb = mark;
                memcpy(bytes + nb, s, n);
                nb += n;
            }
        }
        ok = push_lossy(out, bytes, nb);
        eft__free(bytes);
        return ok;
    }
    case EFT__DEC_WORDPIECE:
        for (size_t t = 0; t < in->n && ok; t++) {
            const char *s = in->buf + in->off[t];
            size_t n = in->slen[t];
            char *tmp = eft__malloc(n + 1);
            if (!tmp) return false;
            size_t tl;
            if (t > 0 && starts_with(s, n, d->prefix, d->prefix_len)) {
                tl = n - d->prefix_len;
                memcpy(tmp, s + d->prefix_len, tl);
            } else if (t > 0) {
                tmp[0] = ' ';
                memcpy(tmp + 1, s, n);
                tl = n + 1;
            } else {
                memcpy(tmp, s, n);
                tl = n;
            }
            ok = d->cleanup ? wp_cleanup(out, tmp, tl) : eft__strlist_add(out, tmp, tl);
            eft__free(tmp);
        }
        return ok;
    case EFT__DEC_BPE:
        for (size_t t = 0; t < in->n && ok; t++) {
            const char *s = in->buf + in->off[t];
            size_t n = in->slen[t];
            /* every suffix becomes a space, except in the last token where it goes */
            size_t w = 0;
            char *tmp = eft__malloc(n + 1);
            if (!tmp) return false;
            for (size_t i = 0; i < n;) {
                if (starts_with(s + i, n - i, d->prefix, d->prefix_len)) {
                    if (t + 1 < in->n) tmp[w++] = ' ';
                    i += d->prefix_len;
                } else {
                    tmp[w++] = s[i++];
                }
            }
            ok = eft__strlist_add(out, tmp, w);
            eft__free(tmp);
        }
        return ok;
    case EFT__DEC_METASPACE: {
        char rep[4];
        int rl = eft__utf8_encode(d->replacement, rep);
        for (size_t t = 0; t < in->n && ok; t++) {
            const char *s = in->buf + in->off[t];
            size_t n = in->slen[t], w = 0;
            char *tmp = eft__malloc(n + 1);
            if (!tmp) return false;
            for (size_t i = 0; i < n;) {
                if (starts_with(s + i, n - i, rep, (size_t)rl)) {
                    /* HF drops every replacement of the first token when a prefix was added */
                    if (!(t == 0 && d->prepend != EFT__PREPEND_NEVER)) tmp[w++] = ' ';
                    i += (size_t)rl;
                } else {
                    tmp[w++] = s[i++];
                }
            }
            ok = eft__strlist_add(out, tmp, w);
            eft__free(tmp);
        }
        return ok;
    }
    case EFT__DEC_BYTE_FALLBACK: {
        uint8_t *pend = eft__malloc(in->n + 1);
        if (!pend) return false;
        size_t np = 0;
        for (size_t t = 0; t <= in->n && ok; t++) {
            const char *s = t < in->n ? in->buf + in->off[t] : NULL;
            size_t n = t < in->n ? in->slen[t] : 0;
            int byte = -1;
            if (s && n == 6 && starts_with(s, n, "<0x", 3) && s[5] == '>') {
                int hi = (int)(strchr("0123456789ABCDEF", s[3]) ? strchr("0123456789ABCDEF", s[3]) - "0123456789ABCDEF" : -1);
                int lo = (int)(strchr("0123456789ABCDEF", s[4]) ? strchr("0123456789ABCDEF", s[4]) - "0123456789ABCDEF" : -1);
                if (s[3] && s[4] && hi >= 0 && lo >= 0) byte = hi * 16 + lo;
            }
            if (byte >= 0) {
                pend[np++] = (uint8_t)byte;
                continue;
            }
            if (np) {
                if (bytes_are_utf8(pend, np)) ok = eft__strlist_add(out, (const char *)pend, np);
                else
                    for (size_t q = 0; q < np && ok; q++) ok = eft__strlist_add(out, "\xEF\xBF\xBD", 3);
                np = 0;
            }
            if (s && ok) ok = eft__strlist_add(out, s, n);
        }
        eft__free(pend);
        return ok;
    }
    case EFT__DEC_FUSE:
        return eft__strlist_add(out, in->buf, in->len);
    case EFT__DEC_STRIP:
        for (size_t t = 0; t < in->n && ok; t++) {
            const char *s = in->buf + in->off[t];
            size_t n = in->slen[t], a = 0, b = n;
            for (size_t k = 0; k < d->start && starts_with(s + a, b - a, d->content, d->content_len); k++)
                a += d->content_len;
            for (size_t k = 0; k < d->stop && b - a >= d->content_len &&
                               !memcmp(s + b - d->content_len, d->content, d->content_len); k++)
                b -= d->content_len;
            ok = eft__strlist_add(out, s + a, b - a);
        }
        return ok;
    case EFT__DEC_CTC:
        /* HF's CTC: drop a token equal to the one before it, remove the pad token from each,
         * then (cleanup) WordPiece's cleanup and the word delimiter as a space; empty results
         * are dropped. */
        for (size_t t = 0; t < in->n && ok; t++) {
            const char *s = in->buf + in->off[t];
            size_t n = in->slen[t];
            if (t > 0 && in->slen[t - 1] == n && !memcmp(in->buf + in->off[t - 1], s, n)) continue;
            eft__strlist a = {0}, b = {0}, c = {0};
            ok = replace_lit(&a, s, n, d->content, d->content_len, "", 0);
            if (ok && d->cleanup)
                ok = wp_cleanup(&b, a.buf ? a.buf : "", a.len) &&
                     replace_lit(&c, b.buf ? b.buf : "", b.len, d->pattern, d->pattern_len, " ", 1);
            const eft__strlist *r = d->cleanup ? &c : &a;
            if (ok && r->len) ok = eft__strlist_add(out, r->buf, r->len);
            eft__strlist_free(&a);
            eft__strlist_free(&b);
            eft__strlist_free(&c);
        }
        return ok;
    case EFT__DEC_REPLACE: {
        pcre2_match_data *md = NULL;
        if (d->re.code && !(md = eft__regex_match_data(&d->re))) return false;
        for (size_t t = 0; t < in->n && ok; t++) {
            const char *s = in->buf + in->off[t];
            size_t n = in->slen[t], pos = 0;
            eft__strlist one = {0};
            while (ok && pos <= n) {
                size_t ms = n, me = n;
                bool found;
                if (md) {
                    found = eft__regex_next(&d->re, md, s, n, pos, &ms, &me) && me > ms;
                } else {
                    const char *h = n - pos >= d->pattern_len ? memmem(s + pos, n - pos, d->pattern, d->pattern_len) : NULL;
                    found = h != NULL;
                    if (found) ms = (size_t)(h - s), me = ms + d->pattern_len;
                }
                if (!found) ms = me = n;
                ok = eft__strlist_add(&one, s + pos, ms - pos) && (!found || eft__strlist_add(&one, d->content, d->content_len));
                if (!found) break;
                pos = me;
            }
            ok = ok && eft__strlist_add(out, one.buf ? one.buf : "", one.len);
            eft__strlist_free(&one);
        }
        if (md) pcre2_match_data_free(md);
        return ok;
    }
    }
    return false;
}

bool eft__decode_chain(const eft__tokdec *d, eft__strlist *l) {
    if (d->kind == EFT__DEC_SEQUENCE) {
        for (size_t i = 0; i < d->n_items; i++)
            if (!eft__decode_chain(&d->items[i], l)) return false;
        return true;
    }
    eft__strlist out = {0};
    if (!decode_one(d, l, &out)) {
        eft__strlist_free(&out);
        return false;
    }
    eft__strlist_free(l);
    *l = out;
    return true;
}
