/*
 * pretokenizer.c — Hugging Face pre-tokenizers: BertPreTokenizer, ByteLevel (GPT-2's regex and
 * byte-to-unicode map), Metaspace, Split (string or regex, every behaviour, invert), Digits,
 * Punctuation, Whitespace, WhitespaceSplit, CharDelimiterSplit and Sequence. Each turns a list of
 * pieces into a finer list; pieces that are already added tokens pass through untouched.
 */
#define _GNU_SOURCE /* memmem */
#include <jansson.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tokenizer.h"

static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/* HF's Whitespace pattern \w+|[^\w\s]+ with Oniguruma's Unicode \w spelled out: Alphabetic (letters,
 * letter numbers like U+216B, Other_Alphabetic like U+24B6), marks, decimal digits, connector
 * punctuation and Join_Control (ZWNJ, ZWJ). PCRE2's own \w differs (it takes No such as U+00BD). */
static const char WHITESPACE_REGEX[] =
    "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]+|[^\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}\\s]+";

/* ---------------------------------------------------------------------------------------------
 * The byte-level map: printable bytes map to themselves, the others to U+0100 upwards.
 * ------------------------------------------------------------------------------------------- */

static eft__byte_map g_byte_map;
static bool g_byte_map_ready;

const eft__byte_map *eft__byte_level_map(void) {
    if (g_byte_map_ready) return &g_byte_map;
    eft__byte_map m;
    for (int i = 0; i < 324; i++) m.dec[i] = -1;
    int next = 256;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        int cp = printable ? b : next++;
        m.enc_len[b] = (uint8_t)eft__utf8_encode(cp, m.enc[b]);
        m.dec[cp] = (int16_t)b;
    }
    g_byte_map = m; /* idempotent: racing threads write the same bytes */
    g_byte_map_ready = true;
    return &g_byte_map;
}

/* ---------------------------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------------------------- */

static eft_status parse_behavior(const json_t *j, eft__split_behavior def, eft__split_behavior *out,
                                 eft__error *err) {
    const char *b = eft__json_str(j, "behavior", NULL);
    *out = def;
    if (!b) return EFT_OK;
    if (!strcmp(b, "Removed")) *out = EFT__SPLIT_REMOVED;
    else if (!strcmp(b, "Isolated")) *out = EFT__SPLIT_ISOLATED;
    else if (!strcmp(b, "MergedWithPrevious")) *out = EFT__SPLIT_MERGED_PREV;
    else if (!strcmp(b, "MergedWithNext")) *out = EFT__SPLIT_MERGED_NEXT;
    else if (!strcmp(b, "Contiguous")) *out = EFT__SPLIT_CONTIGUOUS;
    else return eft__fail(err, EFT_ERR_UNSUPPORTED, "split behavior \"%s\" is not supported", b);
    return EFT_OK;
}

static eft_status parse_prepend(const json_t *j, eft__prepend_scheme *out, eft__error *err) {
    const char *s = eft__json_str(j, "prepend_scheme", NULL);
    if (!s) {
        /* Files older than tokenizers 0.14 say add_prefix_space instead. */
        *out = eft__json_bool(j, "add_prefix_space", true) ? EFT__PREPEND_ALWAYS : EFT__PREPEND_NEVER;
        return EFT_OK;
    }
    if (!strcmp(s, "always")) *out = EFT__PREPEND_ALWAYS;
    else if (!strcmp(s, "first")) *out = EFT__PREPEND_FIRST;
    else if (!strcmp(s, "never")) *out = EFT__PREPEND_NEVER;
    else return eft__fail(err, EFT_ERR_UNSUPPORTED, "Metaspace prepend_scheme \"%s\" is not supported", s);
    return EFT_OK;
}

static eft_status parse_replacement(const json_t *j, int32_t *out, eft__error *err) {
    size_t len;
    const char *s = eft__json_str(j, "replacement", &len);
    if (!s) s = eft__json_str(j, "delimiter", &len);
    if (!s) {
        *out = 0x2581;
        return EFT_OK;
    }
    int k;
    *out = eft__utf8_decode(s, len, &k);
    if (*out < 0 || (size_t)k != len)
        return eft__fail(err, EFT_ERR_FORMAT, "Metaspace/CharDelimiterSplit: \"%.*s\" must be one character",
                         (int)len, s);
    return EFT_OK;
}

eft_status eft__pretok_init_byte_level(eft__pretok *p, bool add_prefix_space, bool use_regex,
                                       const char *regex, eft__error *err) {
    memset(p, 0, sizeof *p);
    p->kind = EFT__PRE_BYTE_LEVEL;
    p->add_prefix_space = add_prefix_space;
    p->use_regex = use_regex;
    eft__byte_level_map();
    if (!use_regex) return EFT_OK;
    if (!regex) regex = GPT2_REGEX;
    return eft__regex_compile(&p->re, regex, strlen(regex), err);
}

eft_status eft__pretok_load(eft__pretok *p, const json_t *j, eft__error *err) {
    memset(p, 0, sizeof *p);
    const char *type = eft__json_str(j, "type", NULL);
    if (!type) return eft__fail(err, EFT_ERR_FORMAT, "pre_tokenizer: no \"type\"");
    if (!strcmp(type, "BertPreTokenizer")) {
        p->kind = EFT__PRE_BERT;
    } else if (!strcmp(type, "ByteLevel")) {
        return eft__pretok_init_byte_level(p, eft__json_bool(j, "add_prefix_space", true),
                                           eft__json_bool(j, "use_regex", true), NULL, err);
    } else if (!strcmp(type, "Metaspace")) {
        p->kind = EFT__PRE_METASPACE;
        p->split = eft__json_bool(j, "split", true);
        eft_status st = parse_replacement(j, &p->replacement, err);
        return st ? st : parse_prepend(j, &p->prepend, err);
    } else if (!strcmp(type, "Split")) {
        p->kind = EFT__PRE_SPLIT;
        p->invert = eft__json_bool(j, "invert", false);
        eft_status st = parse_behavior(j, EFT__SPLIT_ISOLATED, &p->behavior, err);
        if (st) return st;
        const json_t *pat = json_object_get(j, "pattern");
        size_t len;
        const char *s;
        if ((s = eft__json_str(pat, "String", &len))) {
            if (!len) return eft__fail(err, EFT_ERR_UNSUPPORTED, "Split pre-tokenizer: an empty String pattern");
            if (!(p->pattern = eft__strndup(s, len))) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
            p->pattern_len = len;
            return EFT_OK;
        }
        if ((s = eft__json_str(pat, "Regex", &len))) return eft__regex_compile(&p->re, s, len, err);
        return eft__fail(err, EFT_ERR_FORMAT, "Split pre-tokenizer: \"pattern\" must be {\"String\"} or {\"Regex\"}");
    } else if (!strcmp(type, "Digits")) {
        p->kind = EFT__PRE_DIGITS;
        p->individual_digits = eft__json_bool(j, "individual_digits", false);
    } else if (!strcmp(type, "Punctuation")) {
        p->kind = EFT__PRE_PUNCTUATION;
        return parse_behavior(j, EFT__SPLIT_ISOLATED, &p->behavior, err);
    } else if (!strcmp(type, "Whitespace")) {
        p->kind = EFT__PRE_WHITESPACE;
        return eft__regex_compile(&p->re, WHITESPACE_REGEX, strlen(WHITESPACE_REGEX), err);
    } else if (!strcmp(type, "WhitespaceSplit")) {
        p->kind = EFT__PRE_WHITESPACE_SPLIT;
    } else if (!strcmp(type, "CharDelimiterSplit")) {
        p->kind = EFT__PRE_CHAR_DELIMITER;
        return parse_replacement(j, &p->replacement, err);
    } else if (!strcmp(type, "Sequence")) {
        p->kind = EFT__PRE_SEQUENCE;
        const json_t *a = json_object_get(j, "pretokenizers");
        if (!json_is_array(a)) return eft__fail(err, EFT_ERR_FORMAT, "Sequence pre-tokenizer: no \"pretokenizers\" array");
        p->items = eft__calloc(json_array_size(a) + 1, sizeof *p->items);
        if (!p->items) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        for (size_t i = 0; i < json_array_size(a); i++) {
            p->n_items = i + 1;
            eft_status st = eft__pretok_load(&p->items[i], json_array_get(a, i), err);
            if (st) return st;
        }
    } else {
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "pre-tokenizer \"%s\" is not supported", type);
    }
    return EFT_OK;
}

void eft__pretok_free(eft__pretok *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_items; i++) eft__pretok_free(&p->items[i]);
    eft__free(p->items);
    eft__free(p->pattern);
    eft__regex_free(&p->re);
    memset(p, 0, sizeof *p);
}

/* ---------------------------------------------------------------------------------------------
 * Splitting one piece: find matches, then apply the behaviour exactly as HF's
 * NormalizedString::split does.
 * ------------------------------------------------------------------------------------------- */

typedef struct match {
    uint32_t s, e;
    bool m;
} match;

typedef struct matches {
    match *v;
    size_t n, cap;
} matches;

static bool add_match(matches *ms, uint32_t s, uint32_t e, bool m) {
    if (ms->n == ms->cap) {
        size_t cap = ms->cap ? ms->cap * 2 : 32;
        match *v = eft__realloc(ms->v, cap * sizeof *v);
        if (!v) return false;
        ms->v = v;
        ms->cap = cap;
    }
    ms->v[ms->n++] = (match){s, e, m};
    return true;
}

typedef bool (*char_pred)(int32_t c, const eft__pretok *p);

static bool pred_ws(int32_t c, const eft__pretok *p) { (void)p; return eft__is_whitespace(c); }
static bool pred_punct(int32_t c, const eft__pretok *p) { (void)p; return eft__is_punctuation(c); }
static bool pred_delim(int32_t c, const eft__pretok *p) { return c == p->replacement; }
static bool pred_numeric(int32_t c, const eft__pretok *p) {
    (void)p;
    if (c < 0x80) return c >= '0' && c <= '9';
    utf8proc_category_t cat = utf8proc_category(c);
    return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

/* Every character satisfying pred is a match of its own. */
static bool find_char_matches(const char *s, uint32_t len, char_pred pred, const eft__pretok *p,
                              matches *ms) {
    uint32_t last = 0;
    for (uint32_t i = 0; i < len;) {
        int k;
        int32_t c = eft__utf8_decode(s + i, len - i, &k);
        if (pred(c, p)) {
            if (last < i && !add_match(ms, last, i, false)) return false;
            if (!add_match(ms, i, i + (uint32_t)k, true)) return false;
            last = i + (uint32_t)k;
        }
        i += (uint32_t)k;
    }
    return last >= len || add_match(ms, last, len, false);
}

static bool find_string_matches(const char *s, uint32_t len, const char *pat, size_t plen, matches *ms) {
    uint32_t last = 0, pos = 0;
    while (pos < len) {
        const char *hit = memmem(s + pos, len - pos, pat, plen);
        if (!hit) break;
        uint32_t a = (uint32_t)(hit - s);
        if (last < a && !add_match(ms, last, a, false)) return false;
        if (!add_match(ms, a, a + (uint32_t)plen, true)) return false;
        last = pos = a + (uint32_t)plen;
    }
    return last >= len || add_match(ms, last, len, false);
}

static bool find_regex_matches(const eft__regex *re, pcre2_match_data *md, const char *s, uint32_t len,
                               matches *ms) {
    uint32_t last = 0, pos = 0;
    size_t a, b;
    while (pos <= len && eft__regex_next(re, md, s, len, pos, &a, &b)) {
        if (last < a && !add_match(ms, last, (uint32_t)a, false)) return false;
        if (!add_match(ms, (uint32_t)a, (uint32_t)b, true)) return false;
        last = (uint32_t)b;
        if (b == a) {
            /* An empty match: step over one character so the search moves on. */
            if (b >= len) break;
            pos = (uint32_t)b + (uint32_t)eft__utf8_len((unsigned char)s[b]);
        } else {
            pos = (uint32_t)b;
        }
    }
    return last >= len || add_match(ms, last, len, false);
}

/* Applies behaviour to the matches (in place) and appends the non-empty pieces. */
static bool apply_behavior(matches *ms, eft__split_behavior beh, bool invert, const eft__nstr *src,
                           uint32_t off, eft__pieces *out) {
    if (invert)
        for (size_t i = 0; i < ms->n; i++) ms->v[i].m = !ms->v[i].m;
    size_t n = 0; /* results overwrite ms->v[0..n), m meaning "remove" */
    bool prev = false;
    switch (beh) {
    case EFT__SPLIT_ISOLATED:
        for (size_t i = 0; i < ms->n; i++) ms->v[i].m = false;
        n = ms->n;
        break;
    case EFT__SPLIT_REMOVED:
        n = ms->n;
        break;
    case EFT__SPLIT_MERGED_PREV:
        for (size_t i = 0; i < ms->n; i++) {
            match x = ms->v[i];
            if (x.m && !prev && n > 0) ms->v[n - 1].e = x.e;
            else ms->v[n++] = (match){x.s, x.e, false};
            prev = x.m;
        }
        break;
    case EFT__SPLIT_MERGED_NEXT: {
        /* Walk backwards, then put the result back in order. */
        size_t w = ms->n;
        for (size_t i = ms->n; i-- > 0;) {
            match x = ms->v[i];
            if (x.m && !prev && w < ms->n) ms->v[w].s = x.s;
            else ms->v[--w] = (match){x.s, x.e, false};
            prev = x.m;
        }
        memmove(ms->v, ms->v + w, (ms->n - w) * sizeof *ms->v);
        n = ms->n - w;
        break;
    }
    case EFT__SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < ms->n; i++) {
            match x = ms->v[i];
            if (x.m == prev && n > 0) ms->v[n - 1].e = x.e;
            else ms->v[n++] = (match){x.s, x.e, false};
            prev = x.m;
        }
        break;
    }
    for (size_t i = 0; i < n; i++) {
        match x = ms->v[i];
        if (x.m || x.s == x.e) continue;
        uint32_t at = (uint32_t)out->text.len;
        if (!eft__nstr_reserve(&out->text, x.e - x.s)) return false;
        memcpy(out->text.s + at, src->s + off + x.s, x.e - x.s);
        memcpy(out->text.al + at, src->al + off + x.s, (x.e - x.s) * sizeof(eft__span));
        out->text.len += x.e - x.s;
        if (!eft__pieces_add(out, at, x.e - x.s, -1)) return false;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * One pre-tokenizer over one piece
 * ------------------------------------------------------------------------------------------- */

static bool copy_piece(const eft__nstr *src, const eft__piece *pc, eft__pieces *out) {
    uint32_t at = (uint32_t)out->text.len;
    if (!eft__nstr_reserve(&out->text, pc->len)) return false;
    memcpy(out->text.s + at, src->s + pc->off, pc->len);
    memcpy(out->text.al + at, src->al + pc->off, pc->len * sizeof(eft__span));
    out->text.len += pc->len;
    return eft__pieces_add(out, at, pc->len, pc->id);
}

static bool split_by(const eft__nstr *src, const eft__piece *pc, eft__pieces *out, matches *ms,
                     char_pred pred, const eft__pretok *p, eft__split_behavior beh) {
    ms->n = 0;
    return find_char_matches(src->s + pc->off, pc->len, pred, p, ms) &&
           apply_behavior(ms, beh, false, src, pc->off, out);
}

/* Metaspace: spaces become the replacement, which is prepended as the scheme says, then the
 * piece is split before each replacement character. */
static bool metaspace_piece(const eft__pretok *p, const eft__nstr *src, const eft__piece *pc,
                            eft__pieces *out, matches *ms) {
    eft__nstr t = {0};
    char rep[4];
    int rl = eft__utf8_encode(p->replacement, rep);
    const char *s = src->s + pc->off;
    const eft__span *al = src->al + pc->off;
    bool ok = true;
    bool starts = pc->len >= (uint32_t)rl && memcmp(s, rep, (size_t)rl) == 0;
    bool first_of_input = pc->len > 0 && al[0].start == 0;
    if (pc->len && !starts &&
        (p->prepend == EFT__PREPEND_ALWAYS || (p->prepend == EFT__PREPEND_FIRST && first_of_input))) {
        /* A leading space becomes the replacement below, so it counts as starting with it. */
        if (s[0] != ' ')
            ok = eft__nstr_push(&t, rep, (size_t)rl, (eft__span){al[0].start, al[eft__utf8_len((unsigned char)s[0]) - 1].end});
    }
    for (uint32_t i = 0; i < pc->len && ok; i++) {
        if (s[i] == ' ') ok = eft__nstr_push(&t, rep, (size_t)rl, al[i]);
        else ok = eft__nstr_push(&t, s + i, 1, al[i]);
    }
    if (ok) {
        if (p->split) {
            ms->n = 0;
            ok = find_string_matches(t.s, (uint32_t)t.len, rep, (size_t)rl, ms) &&
                 apply_behavior(ms, EFT__SPLIT_MERGED_NEXT, false, &t, 0, out);
        } else if (t.len) {
            eft__piece whole = {0, (uint32_t)t.len, -1};
            ok = copy_piece(&t, &whole, out);
        }
    }
    eft__nstr_free(&t);
    return ok;
}

/* ByteLevel: optional prefix space, GPT-2's regex, then every byte through the byte map. */
static bool byte_level_piece(const eft__pretok *p, const eft__nstr *src, const eft__piece *pc,
                             eft__pieces *out, matches *ms, pcre2_match_data *md) {
    eft__nstr t = {0};
    eft__pieces mid = {0};
    bool ok = true;
    const char *s = src->s + pc->off;
    const eft__span *al = src->al + pc->off;
    if (p->add_prefix_space && pc->len && s[0] != ' ')
        ok = eft__nstr_push(&t, " ", 1, (eft__span){al[0].start, al[eft__utf8_len((unsigned char)s[0]) - 1].end});
    for (uint32_t i = 0; i < pc->len && ok; i++) ok = eft__nstr_push(&t, s + i, 1, al[i]);
    if (ok && t.len) {
        if (p->use_regex) {
            ms->n = 0;
            ok = find_regex_matches(&p->re, md, t.s, (uint32_t)t.len, ms) &&
                 apply_behavior(ms, EFT__SPLIT_ISOLATED, false, &t, 0, &mid);
        } else {
            eft__piece whole = {0, (uint32_t)t.len, -1};
            ok = copy_piece(&t, &whole, &mid);
        }
    }
    const eft__byte_map *bm = eft__byte_level_map();
    for (size_t i = 0; i < mid.n && ok; i++) {
        uint32_t at = (uint32_t)out->text.len;
        for (uint32_t b = 0; b < mid.p[i].len && ok; b++) {
            uint32_t q = mid.p[i].off + b;
            unsigned char c = (unsigned char)mid.text.s[q];
            ok = eft__nstr_push(&out->text, bm->enc[c], bm->enc_len[c], mid.text.al[q]);
        }
        if (ok) ok = eft__pieces_add(out, at, (uint32_t)out->text.len - at, -1);
    }
    eft__nstr_free(&t);
    eft__pieces_free(&mid);
    return ok;
}

static bool pre_one(const eft__pretok *p, const eft__pieces *in, eft__pieces *out, matches *ms,
                    pcre2_match_data *md) {
    out->text.len = 0;
    out->n = 0;
    if (p->kind == EFT__PRE_SEQUENCE) {
        eft__pieces a = {0}, b = {0};
        const eft__pieces *cur = in;
        bool ok = true;
        for (size_t i = 0; i < p->n_items && ok; i++) {
            eft__pieces *dst = (cur == &a) ? &b : &a;
            ok = pre_one(&p->items[i], cur, dst, ms, md);
            cur = dst;
        }
        for (size_t i = 0; ok && i < cur->n; i++) ok = copy_piece(&cur->text, &cur->p[i], out);
        eft__pieces_free(&a);
        eft__pieces_free(&b);
        return ok;
    }
    for (size_t i = 0; i < in->n; i++) {
        const eft__piece *pc = &in->p[i];
        const eft__nstr *src = &in->text;
        bool ok;
        if (pc->id >= 0) {
            ok = copy_piece(src, pc, out);
        } else {
            switch (p->kind) {
            case EFT__PRE_BERT: {
                eft__pieces tmp = {0};
                ok = split_by(src, pc, &tmp, ms, pred_ws, p, EFT__SPLIT_REMOVED);
                for (size_t k = 0; ok && k < tmp.n; k++)
                    ok = split_by(&tmp.text, &tmp.p[k], out, ms, pred_punct, p, EFT__SPLIT_ISOLATED);
                eft__pieces_free(&tmp);
                break;
            }
            case EFT__PRE_WHITESPACE_SPLIT:
                ok = split_by(src, pc, out, ms, pred_ws, p, EFT__SPLIT_REMOVED);
                break;
            case EFT__PRE_PUNCTUATION:
                ok = split_by(src, pc, out, ms, pred_punct, p, p->behavior);
                break;
            case EFT__PRE_CHAR_DELIMITER:
                ok = split_by(src, pc, out, ms, pred_delim, p, EFT__SPLIT_REMOVED);
                break;
            case EFT__PRE_DIGITS:
                ok = split_by(src, pc, out, ms, pred_numeric, p,
                              p->individual_digits ? EFT__SPLIT_ISOLATED : EFT__SPLIT_CONTIGUOUS);
                break;
            case EFT__PRE_WHITESPACE:
                ms->n = 0;
                ok = find_regex_matches(&p->re, md, src->s + pc->off, pc->len, ms) &&
                     apply_behavior(ms, EFT__SPLIT_REMOVED, true, src, pc->off, out);
                break;
            case EFT__PRE_SPLIT:
                ms->n = 0;
                ok = (p->re.code ? find_regex_matches(&p->re, md, src->s + pc->off, pc->len, ms)
                                 : find_string_matches(src->s + pc->off, pc->len, p->pattern, p->pattern_len, ms)) &&
                     apply_behavior(ms, p->behavior, p->invert, src, pc->off, out);
                break;
            case EFT__PRE_METASPACE:
                ok = metaspace_piece(p, src, pc, out, ms);
                break;
            case EFT__PRE_BYTE_LEVEL:
                ok = byte_level_piece(p, src, pc, out, ms, md);
                break;
            default:
                ok = false;
            }
        }
        if (!ok) return false;
    }
    return true;
}

bool eft__pretokenize(const eft__pretok *p, const eft__pieces *in, eft__pieces *out,
                      pcre2_match_data *md) {
    matches ms = {0};
    bool ok = pre_one(p, in, out, &ms, md);
    eft__free(ms.v);
    return ok;
}
