/*
 * chat_template_value.c — the value side of the chat-template interpreter: Python's str() and
 * repr() of values (True, None, [1, 'a'], {'k': 2}, floats printed shortest-round-trip), Python
 * equality and ordering, UTF-8 code-point helpers, and json.dumps exactly as transformers' tojson
 * calls it (ensure_ascii=False, indent, separators, sort_keys). Everything here is pure: no
 * template state, just values and an output buffer.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "tokenizer/chat_template_internal.h"

/* ---------------------------------------------------------------------------------------------
 * Growable byte buffer
 * ------------------------------------------------------------------------------------------- */

bool eft__ct_buf_put(eft__ct_buf *b, const char *s, size_t n) {
    if (b->failed) return false;
    if (b->limit && (n > b->limit || b->n > b->limit - n)) {
        b->failed = b->over_limit = true;
        return false;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = eft__realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return false;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}

bool eft__ct_buf_puts(eft__ct_buf *b, const char *s) { return eft__ct_buf_put(b, s, strlen(s)); }

void eft__ct_buf_free(eft__ct_buf *b) {
    eft__free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* ---------------------------------------------------------------------------------------------
 * UTF-8
 * ------------------------------------------------------------------------------------------- */

/* Decodes the code point at s[*i] (valid UTF-8 is assumed: templates are checked at load and
 * JSON input by jansson) and advances *i. */
uint32_t eft__ct_utf8_next(const char *s, size_t n, size_t *i) {
    unsigned char c = (unsigned char)s[*i];
    size_t k = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
    if (*i + k > n) k = n - *i;
    uint32_t cp = k == 1 ? c : k == 2 ? c & 0x1f : k == 3 ? c & 0x0f : c & 0x07;
    for (size_t j = 1; j < k; j++) cp = cp << 6 | ((unsigned char)s[*i + j] & 0x3f);
    *i += k;
    return cp;
}

size_t eft__ct_utf8_put(char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

size_t eft__ct_utf8_len(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

bool eft__ct_py_isspace(uint32_t cp) {
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x1f) || cp == 0x85 || cp == 0xa0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
           cp == 0x205f || cp == 0x3000;
}

/* ---------------------------------------------------------------------------------------------
 * Python's repr() of a float: the shortest digits that read back to the same double, printed
 * positionally for exponents in [-5, 16) and in scientific notation otherwise.
 * ------------------------------------------------------------------------------------------- */

void eft__ct_float_repr(double f, char *out, size_t size) {
    if (isnan(f)) {
        snprintf(out, size, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(out, size, f < 0 ? "-inf" : "inf");
        return;
    }
    if (f == 0) {
        snprintf(out, size, signbit(f) ? "-0.0" : "0.0");
        return;
    }
    char buf[64];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, f);
        if (strtod(buf, NULL) == f) break;
    }
    /* buf is [-]d.ddde[+-]xx; collect the digits and the exponent. */
    char digits[32];
    int nd = 0, exp10 = 0;
    bool neg = buf[0] == '-';
    const char *q = buf + neg;
    for (; *q && *q != 'e'; q++)
        if (*q != '.') digits[nd++] = *q;
    exp10 = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    char *o = out;
    size_t left = size;
#define EMIT(...) do { int w_ = snprintf(o, left, __VA_ARGS__); if (w_ < 0 || (size_t)w_ >= left) return; o += w_; left -= (size_t)w_; } while (0)
    if (neg) EMIT("-");
    if (exp10 < -4 || exp10 >= 16) {
        EMIT("%c", digits[0]);
        if (nd > 1) EMIT(".%s", digits + 1);
        EMIT("e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    } else if (exp10 < 0) {
        EMIT("0.");
        for (int i = 0; i < -exp10 - 1; i++) EMIT("0");
        EMIT("%s", digits);
    } else {
        for (int i = 0; i <= exp10; i++) EMIT("%c", i < nd ? digits[i] : '0');
        EMIT(".");
        if (nd > exp10 + 1) EMIT("%s", digits + exp10 + 1);
        else EMIT("0");
    }
#undef EMIT
}

/* ---------------------------------------------------------------------------------------------
 * str() and repr()
 * ------------------------------------------------------------------------------------------- */

static bool py_printable(uint32_t cp) {
    if (cp == ' ') return true;
    if (cp < 0x20 || cp == 0x7f) return false;
    if (cp < 0x7f) return true;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS: case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
        return false;
    default:
        return true;
    }
}

static void repr_str(eft__ct_buf *b, const char *s, size_t n) {
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    eft__ct_buf_put(b, &q, 1);
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        uint32_t cp = eft__ct_utf8_next(s, n, &i);
        char esc[16];
        if (cp == (uint32_t)q || cp == '\\') {
            esc[0] = '\\';
            esc[1] = (char)cp;
            eft__ct_buf_put(b, esc, 2);
        } else if (cp == '\n') {
            eft__ct_buf_puts(b, "\\n");
        } else if (cp == '\r') {
            eft__ct_buf_puts(b, "\\r");
        } else if (cp == '\t') {
            eft__ct_buf_puts(b, "\\t");
        } else if (!py_printable(cp)) {
            if (cp < 0x100) snprintf(esc, sizeof esc, "\\x%02x", cp);
            else if (cp < 0x10000) snprintf(esc, sizeof esc, "\\u%04x", cp);
            else snprintf(esc, sizeof esc, "\\U%08x", cp);
            eft__ct_buf_puts(b, esc);
        } else {
            eft__ct_buf_put(b, s + start, i - start);
        }
    }
    eft__ct_buf_put(b, &q, 1);
}

static void to_text(eft__ct_buf *b, eft__ct_val v, bool repr, int depth);

static void seq_text(eft__ct_buf *b, const eft__ct_list *l, int depth) {
    eft__ct_buf_puts(b, l->tuple ? "(" : "[");
    for (size_t i = 0; i < l->n; i++) {
        if (i) eft__ct_buf_puts(b, ", ");
        to_text(b, l->v[i], true, depth + 1);
    }
    if (l->tuple && l->n == 1) eft__ct_buf_puts(b, ",");
    eft__ct_buf_puts(b, l->tuple ? ")" : "]");
}

static void dict_text(eft__ct_buf *b, const eft__ct_dict *d, int depth) {
    eft__ct_buf_puts(b, "{");
    for (size_t i = 0; i < d->n; i++) {
        if (i) eft__ct_buf_puts(b, ", ");
        to_text(b, d->keys[i], true, depth + 1);
        eft__ct_buf_puts(b, ": ");
        to_text(b, d->vals[i], true, depth + 1);
    }
    eft__ct_buf_puts(b, "}");
}

static void to_text(eft__ct_buf *b, eft__ct_val v, bool repr, int depth) {
    char num[64];
    if (depth > 200) {
        /* Python prints a recursive structure as [...]; values here cannot be recursive, but
         * deep nesting from JSON input is cut off rather than overflowing the stack. */
        eft__ct_buf_puts(b, "...");
        return;
    }
    switch (v.k) {
    case CT_UNDEF: if (repr) eft__ct_buf_puts(b, "Undefined"); return;
    case CT_NONE: eft__ct_buf_puts(b, "None"); return;
    case CT_BOOL: eft__ct_buf_puts(b, v.b ? "True" : "False"); return;
    case CT_INT: snprintf(num, sizeof num, "%lld", (long long)v.i); eft__ct_buf_puts(b, num); return;
    case CT_FLOAT: eft__ct_float_repr(v.f, num, sizeof num); eft__ct_buf_puts(b, num); return;
    case CT_STR:
        if (repr) repr_str(b, v.s, v.n);
        else eft__ct_buf_put(b, v.s, v.n);
        return;
    case CT_LIST: seq_text(b, v.l, depth); return;
    case CT_DICT: dict_text(b, v.d, depth); return;
    case CT_NS:
        eft__ct_buf_puts(b, "<Namespace ");
        dict_text(b, v.d, depth);
        eft__ct_buf_puts(b, ">");
        return;
    case CT_MACRO: eft__ct_buf_puts(b, "<Macro>"); return;
    case CT_METHOD: eft__ct_buf_puts(b, "<built-in method>"); return;
    case CT_FUNC: eft__ct_buf_puts(b, "<function>"); return;
    case CT_LOOP: eft__ct_buf_puts(b, "<LoopContext>"); return;
    }
}

void eft__ct_str(eft__ct_buf *b, eft__ct_val v) { to_text(b, v, false, 0); }
void eft__ct_repr(eft__ct_buf *b, eft__ct_val v) { to_text(b, v, true, 0); }

const char *eft__ct_type_name(eft__ct_val v) {
    switch (v.k) {
    case CT_UNDEF: return "Undefined";
    case CT_NONE: return "NoneType";
    case CT_BOOL: return "bool";
    case CT_INT: return "int";
    case CT_FLOAT: return "float";
    case CT_STR: return "str";
    case CT_LIST: return v.l->tuple ? "tuple" : "list";
    case CT_DICT: return "dict";
    case CT_NS: return "Namespace";
    case CT_MACRO: return "Macro";
    case CT_METHOD: return "builtin_function_or_method";
    case CT_FUNC: return "function";
    case CT_LOOP: return "LoopContext";
    }
    return "object";
}

/* ---------------------------------------------------------------------------------------------
 * Equality and ordering, as Python defines them for these types
 * ------------------------------------------------------------------------------------------- */

static bool is_num(eft__ct_val v) { return v.k == CT_INT || v.k == CT_FLOAT || v.k == CT_BOOL; }
static double num_f(eft__ct_val v) { return v.k == CT_FLOAT ? v.f : v.k == CT_INT ? (double)v.i : v.k == CT_BOOL ? (double)v.b : 0; }
static int64_t num_i(eft__ct_val v) { return v.k == CT_INT ? v.i : v.k == CT_BOOL ? (int64_t)v.b : 0; }

bool eft__ct_equal(eft__ct_val a, eft__ct_val b) {
    if (is_num(a) && is_num(b)) {
        if (a.k != CT_FLOAT && b.k != CT_FLOAT) return num_i(a) == num_i(b);
        return num_f(a) == num_f(b);
    }
    if (a.k != b.k) return false;
    switch (a.k) {
    case CT_UNDEF: case CT_NONE: return true;
    case CT_STR: return a.n == b.n && !memcmp(a.s, b.s, a.n);
    case CT_LIST:
        if (a.l->tuple != b.l->tuple || a.l->n != b.l->n) return false;
        for (size_t i = 0; i < a.l->n; i++)
            if (!eft__ct_equal(a.l->v[i], b.l->v[i])) return false;
        return true;
    case CT_DICT:
        if (a.d->n != b.d->n) return false;
        for (size_t i = 0; i < a.d->n; i++) {
            const eft__ct_val *o = eft__ct_dict_get(b.d, a.d->keys[i]);
            if (!o || !eft__ct_equal(a.d->vals[i], *o)) return false;
        }
        return true;
    default: return a.d == b.d;
    }
}

/* Python's a < b etc.: *out = -1, 0, 1; false when the types do not compare. */
bool eft__ct_compare(eft__ct_val a, eft__ct_val b, int *out) {
    if (is_num(a) && is_num(b)) {
        if (a.k != CT_FLOAT && b.k != CT_FLOAT) {
            int64_t x = num_i(a), y = num_i(b);
            *out = x < y ? -1 : x > y;
        } else {
            double x = num_f(a), y = num_f(b);
            if (isnan(x) || isnan(y)) *out = 2; /* every comparison false */
            else *out = x < y ? -1 : x > y;
        }
        return true;
    }
    if (a.k == CT_STR && b.k == CT_STR) {
        /* Byte order of UTF-8 is code-point order. */
        size_t m = a.n < b.n ? a.n : b.n;
        int c = memcmp(a.s, b.s, m);
        *out = c ? (c < 0 ? -1 : 1) : (a.n < b.n ? -1 : a.n > b.n);
        return true;
    }
    if (a.k == CT_LIST && b.k == CT_LIST && a.l->tuple == b.l->tuple) {
        size_t m = a.l->n < b.l->n ? a.l->n : b.l->n;
        for (size_t i = 0; i < m; i++) {
            if (eft__ct_equal(a.l->v[i], b.l->v[i])) continue;
            return eft__ct_compare(a.l->v[i], b.l->v[i], out);
        }
        *out = a.l->n < b.l->n ? -1 : a.l->n > b.l->n;
        return true;
    }
    return false;
}

const eft__ct_val *eft__ct_dict_get(const eft__ct_dict *d, eft__ct_val key) {
    for (size_t i = 0; i < d->n; i++)
        if (eft__ct_equal(d->keys[i], key) && (d->keys[i].k == CT_STR) == (key.k == CT_STR)) return &d->vals[i];
    return NULL;
}

const eft__ct_val *eft__ct_dict_get_str(const eft__ct_dict *d, const char *key, size_t len) {
    for (size_t i = 0; i < d->n; i++)
        if (d->keys[i].k == CT_STR && d->keys[i].n == len && !memcmp(d->keys[i].s, key, len)) return &d->vals[i];
    return NULL;
}

bool eft__ct_dict_set(eft__ct_arena *a, eft__ct_dict *d, eft__ct_val key, eft__ct_val val) {
    for (size_t i = 0; i < d->n; i++)
        if (eft__ct_equal(d->keys[i], key) && (d->keys[i].k == CT_STR) == (key.k == CT_STR)) {
            d->vals[i] = val;
            return true;
        }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        eft__ct_val *k = eft__ct_alloc(a, cap * sizeof *k), *v = eft__ct_alloc(a, cap * sizeof *v);
        if (!k || !v) return false;
        if (d->n) {
            memcpy(k, d->keys, d->n * sizeof *k);
            memcpy(v, d->vals, d->n * sizeof *v);
        }
        d->keys = k;
        d->vals = v;
        d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n] = val;
    d->n++;
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * json.dumps(x, ensure_ascii=False, indent=..., separators=..., sort_keys=...)
 * ------------------------------------------------------------------------------------------- */

static void json_str(eft__ct_buf *b, const char *s, size_t n, bool ascii) {
    eft__ct_buf_puts(b, "\"");
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char tmp[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(tmp, sizeof tmp, "\\u%04x", c);
                esc = tmp;
            } else if (c >= 0x80 && ascii) {
                eft__ct_buf_put(b, s + run, i - run);
                size_t k = i;
                uint32_t cp = eft__ct_utf8_next(s, n, &k);
                if (cp >= 0x10000) {
                    snprintf(tmp, sizeof tmp, "\\u%04x", 0xd800 + ((cp - 0x10000) >> 10));
                    eft__ct_buf_puts(b, tmp);
                    cp = 0xdc00 + ((cp - 0x10000) & 0x3ff);
                }
                snprintf(tmp, sizeof tmp, "\\u%04x", cp);
                eft__ct_buf_puts(b, tmp);
                i = k - 1;
                run = k;
                continue;
            }
        }
        if (esc) {
            eft__ct_buf_put(b, s + run, i - run);
            eft__ct_buf_puts(b, esc);
            run = i + 1;
        }
    }
    eft__ct_buf_put(b, s + run, n - run);
    eft__ct_buf_puts(b, "\"");
}

static void json_newline(eft__ct_buf *b, const eft__ct_json_opts *o, int level) {
    eft__ct_buf_puts(b, "\n");
    for (int i = 0; i < level; i++) eft__ct_buf_put(b, o->indent, o->indent_len);
}

static int key_order(const void *x, const void *y) {
    const eft__ct_val *a = *(const eft__ct_val *const *)x, *b = *(const eft__ct_val *const *)y;
    int c = 0;
    eft__ct_compare(a[0], b[0], &c);
    return c;
}

/* Appends the JSON text of v; on a value JSON cannot hold, returns its type name. */
const char *eft__ct_json(eft__ct_buf *b, eft__ct_val v, const eft__ct_json_opts *o, int level) {
    char num[64];
    if (level > 200) return "nesting deeper than 200";
    switch (v.k) {
    case CT_NONE: eft__ct_buf_puts(b, "null"); return NULL;
    case CT_BOOL: eft__ct_buf_puts(b, v.b ? "true" : "false"); return NULL;
    case CT_INT: snprintf(num, sizeof num, "%lld", (long long)v.i); eft__ct_buf_puts(b, num); return NULL;
    case CT_FLOAT:
        if (isnan(v.f)) eft__ct_buf_puts(b, "NaN");
        else if (isinf(v.f)) eft__ct_buf_puts(b, v.f < 0 ? "-Infinity" : "Infinity");
        else {
            eft__ct_float_repr(v.f, num, sizeof num);
            eft__ct_buf_puts(b, num);
        }
        return NULL;
    case CT_STR: json_str(b, v.s, v.n, o->ensure_ascii); return NULL;
    case CT_LIST: {
        if (v.l->gen) return "generator";
        if (!v.l->n) {
            eft__ct_buf_puts(b, "[]");
            return NULL;
        }
        eft__ct_buf_puts(b, "[");
        for (size_t i = 0; i < v.l->n; i++) {
            if (i) eft__ct_buf_put(b, o->item_sep, o->item_sep_len);
            if (o->indent) json_newline(b, o, level + 1);
            const char *bad = eft__ct_json(b, v.l->v[i], o, level + 1);
            if (bad) return bad;
        }
        if (o->indent) json_newline(b, o, level);
        eft__ct_buf_puts(b, "]");
        return NULL;
    }
    case CT_DICT: {
        if (!v.d->n) {
            eft__ct_buf_puts(b, "{}");
            return NULL;
        }
        /* Pairs in insertion order, or sorted by key. */
        const eft__ct_val **order = eft__malloc_array(v.d->n, sizeof *order);
        eft__ct_val *pairs = eft__malloc_array(v.d->n, 2 * sizeof *pairs);
        if (!order || !pairs) {
            eft__free(order);
            eft__free(pairs);
            b->failed = true;
            return NULL;
        }
        const char *bad = NULL;
        for (size_t i = 0; i < v.d->n; i++) {
            eft__ct_val k = v.d->keys[i];
            if (k.k != CT_STR && k.k != CT_INT && k.k != CT_FLOAT && k.k != CT_BOOL && k.k != CT_NONE) {
                bad = "keys must be str, int, float, bool or None";
                goto out;
            }
            pairs[2 * i] = k;
            pairs[2 * i + 1] = v.d->vals[i];
            order[i] = &pairs[2 * i];
        }
        if (o->sort_keys) qsort(order, v.d->n, sizeof *order, key_order);
        eft__ct_buf_puts(b, "{");
        for (size_t i = 0; i < v.d->n && !bad; i++) {
            if (i) eft__ct_buf_put(b, o->item_sep, o->item_sep_len);
            if (o->indent) json_newline(b, o, level + 1);
            eft__ct_val k = order[i][0];
            if (k.k == CT_STR) {
                json_str(b, k.s, k.n, o->ensure_ascii);
            } else {
                /* json.dumps turns other keys into strings: 1 -> "1", True -> "true". */
                eft__ct_buf kb = {0};
                eft__ct_json(&kb, k, o, level + 1);
                eft__ct_buf_puts(b, "\"");
                if (kb.p) eft__ct_buf_put(b, kb.p, kb.n);
                eft__ct_buf_puts(b, "\"");
                eft__ct_buf_free(&kb);
            }
            eft__ct_buf_put(b, o->key_sep, o->key_sep_len);
            bad = eft__ct_json(b, order[i][1], o, level + 1);
        }
        if (!bad) {
            if (o->indent) json_newline(b, o, level);
            eft__ct_buf_puts(b, "}");
        }
    out:
        eft__free(order);
        eft__free(pairs);
        return bad;
    }
    default:
        return eft__ct_type_name(v);
    }
}
