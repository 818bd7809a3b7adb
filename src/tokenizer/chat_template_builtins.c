/*
 * chat_template_builtins.c — the built-ins of the chat-template interpreter, each following its
 * jinja2 3.1 / Python 3 counterpart: the filters (trim, tojson as transformers overrides it,
 * selectattr, map, indent, ...), the tests (defined, none, string, mapping, ...), the string, dict
 * and list methods templates call (startswith, split, strip, get, items, ...; the immutable
 * sandbox's refusals included), and the globals (range, namespace, dict, raise_exception,
 * strftime_now). The names here are also the parser's list of what a template may use.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "tokenizer/chat_template_eval.h"

/* ---------------------------------------------------------------------------------------------
 * Filter, test and global tables
 * ------------------------------------------------------------------------------------------- */

static const char *const k_filters[] = {
    "abs", "capitalize", "count", "default", "d", "dictsort", "first", "float", "indent", "int", "items",
    "join", "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr", "replace",
    "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum", "title", "tojson", "trim",
    "unique", "upper", "escape", "e"};

static const char *const k_tests[] = {
    "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "even", "false", "float", "ge", "gt",
    "in", "integer", "iterable", "le", "lower", "lt", "mapping", "ne", "none", "number", "odd", "sameas",
    "sequence", "string", "true", "undefined", "upper", "greaterthan", "lessthan",
    "==", "!=", ">", ">=", "<", "<=" /* jinja2's operator aliases, reachable as selectattr('x', '==', y) */};

_Static_assert(sizeof k_filters / sizeof k_filters[0] == F_COUNT_, "filter table");
_Static_assert(sizeof k_tests / sizeof k_tests[0] == T_COUNT_, "test table");

static const char *const k_globals[] = {"range", "namespace", "dict", "raise_exception", "strftime_now"};

static int find_name(const char *const *names, int count, const char *name, size_t len) {
    for (int i = 0; i < count; i++)
        if (strlen(names[i]) == len && !memcmp(names[i], name, len)) return i;
    return -1;
}

int eft__ct_global_id(const char *name, size_t len) { return find_name(k_globals, G_COUNT_, name, len); }

int eft__ct_filter_id(const char *name, size_t len) { return find_name(k_filters, F_COUNT_, name, len); }
int eft__ct_test_id(const char *name, size_t len) { return find_name(k_tests, T_COUNT_, name, len); }


eft__ct_limits eft__ct_limits_default(void) {
    return (eft__ct_limits){
        .max_output = 16u << 20,
        .max_memory = 256u << 20,
        .max_steps = 1000000,
        .max_depth = 64,
    };
}

/* ---------------------------------------------------------------------------------------------
 * String helpers
 * ------------------------------------------------------------------------------------------- */

static bool in_chars(uint32_t cp, eft__ct_val chars) {
    size_t i = 0;
    while (i < chars.n)
        if (eft__ct_utf8_next(chars.s, chars.n, &i) == cp) return true;
    return false;
}

/* str.strip/lstrip/rstrip: chars NULL means whitespace. */
static eft__ct_val strip(eft__ct_val s, const eft__ct_val *chars, bool left, bool right) {
    size_t b = 0, e = s.n;
    if (left)
        while (b < e) {
            size_t i = b;
            uint32_t cp = eft__ct_utf8_next(s.s, e, &i);
            if (chars ? !in_chars(cp, *chars) : !eft__ct_py_isspace(cp)) break;
            b = i;
        }
    if (right)
        while (e > b) {
            size_t k = e - 1;
            while (k > b && ((unsigned char)s.s[k] & 0xc0) == 0x80) k--;
            size_t i = k;
            uint32_t cp = eft__ct_utf8_next(s.s, e, &i);
            if (chars ? !in_chars(cp, *chars) : !eft__ct_py_isspace(cp)) break;
            e = k;
        }
    return vstr(s.s + b, e - b);
}

typedef enum { CASE_UPPER, CASE_LOWER, CASE_TITLE_WORDS, CASE_CAPITALIZE, CASE_SWAP } case_mode;

static eft__ct_val change_case(eft__ct_ctx *c, eft__ct_val s, case_mode mode) {
    char *out = eft__ct_new(c, s.n * 2 + 8);
    if (!out) return k_undef;
    size_t o = 0, i = 0, cap = s.n * 2 + 8;
    bool prev_cased = false, first = true;
    while (i < s.n) {
        uint32_t cp = eft__ct_utf8_next(s.s, s.n, &i), r = cp;
        bool cased = utf8proc_toupper((utf8proc_int32_t)cp) != (utf8proc_int32_t)cp ||
                     utf8proc_tolower((utf8proc_int32_t)cp) != (utf8proc_int32_t)cp;
        switch (mode) {
        case CASE_UPPER: r = (uint32_t)utf8proc_toupper((utf8proc_int32_t)cp); break;
        case CASE_LOWER: r = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp); break;
        case CASE_TITLE_WORDS:
            r = (uint32_t)(prev_cased ? utf8proc_tolower((utf8proc_int32_t)cp) : utf8proc_totitle((utf8proc_int32_t)cp));
            prev_cased = cased;
            break;
        case CASE_CAPITALIZE:
            r = (uint32_t)(first ? utf8proc_totitle((utf8proc_int32_t)cp) : utf8proc_tolower((utf8proc_int32_t)cp));
            break;
        case CASE_SWAP:
            r = (uint32_t)(utf8proc_toupper((utf8proc_int32_t)cp) != (utf8proc_int32_t)cp ? utf8proc_toupper((utf8proc_int32_t)cp)
                                                                                : utf8proc_tolower((utf8proc_int32_t)cp));
            break;
        }
        first = false;
        if (o + 4 > cap) return eft__ct_rfail(c, EFT_ERR_INTERNAL, "case mapping overflow");
        o += eft__ct_utf8_put(out + o, r);
    }
    return vstr(out, o);
}

/* jinja2's title filter: capitalise each word, words split at whitespace and -({[< */
static eft__ct_val title_filter(eft__ct_ctx *c, eft__ct_val s) {
    char *out = eft__ct_new(c, s.n * 2 + 8);
    if (!out) return k_undef;
    size_t o = 0, i = 0;
    bool word_start = true;
    while (i < s.n) {
        uint32_t cp = eft__ct_utf8_next(s.s, s.n, &i);
        bool sep = eft__ct_py_isspace(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
        uint32_t r = sep ? cp
                         : (uint32_t)(word_start ? utf8proc_toupper((utf8proc_int32_t)cp) : utf8proc_tolower((utf8proc_int32_t)cp));
        word_start = sep;
        o += eft__ct_utf8_put(out + o, r);
    }
    return vstr(out, o);
}

const char *eft__ct_memfind(const char *h, size_t hn, const char *nd, size_t nn) {
    if (nn == 0) return h;
    if (nn > hn) return NULL;
    for (size_t i = 0; i + nn <= hn; i++)
        if (h[i] == nd[0] && !memcmp(h + i, nd, nn)) return h + i;
    return NULL;
}

static const char *memrfind(const char *h, size_t hn, const char *nd, size_t nn) {
    if (nn > hn) return NULL;
    for (size_t i = hn - nn + 1; i-- > 0;)
        if (!memcmp(h + i, nd, nn)) return h + i;
    return NULL;
}

static eft__ct_val replace(eft__ct_ctx *c, eft__ct_val s, eft__ct_val old, eft__ct_val new_, int64_t count) {
    eft__ct_buf b = {.limit = c->lim.max_output};
    size_t i = 0;
    int64_t done = 0;
    if (old.n == 0) {
        /* Python inserts new between every code point (and at both ends). */
        while (count < 0 || done < count) {
            eft__ct_buf_put(&b, new_.s, new_.n);
            done++;
            if (i >= s.n) break;
            size_t st = i;
            eft__ct_utf8_next(s.s, s.n, &i);
            eft__ct_buf_put(&b, s.s + st, i - st);
        }
        eft__ct_buf_put(&b, s.s + i, s.n - i);
    } else {
        const char *p;
        while ((count < 0 || done < count) && (p = eft__ct_memfind(s.s + i, s.n - i, old.s, old.n))) {
            eft__ct_buf_put(&b, s.s + i, (size_t)(p - (s.s + i)));
            eft__ct_buf_put(&b, new_.s, new_.n);
            i = (size_t)(p - s.s) + old.n;
            done++;
        }
        eft__ct_buf_put(&b, s.s + i, s.n - i);
    }
    eft__ct_val r = k_undef;
    if (b.failed) r = b.over_limit ? eft__ct_rfail(c, EFT_ERR_LIMIT, "a string is longer than %zu bytes", c->lim.max_output) : eft__ct_oom(c);
    else r = eft__ct_mkstr(c, b.p ? b.p : "", b.n);
    eft__ct_buf_free(&b);
    return r;
}

/* str.split / str.rsplit with Python's rules (sep None: runs of whitespace, no empty parts). */
static eft__ct_val split(eft__ct_ctx *c, eft__ct_val s, const eft__ct_val *sep, int64_t maxsplit, bool from_right) {
    if (sep && sep->k == CT_NONE) sep = NULL;
    if (sep && sep->k != CT_STR) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "split() separator must be str or None");
    if (sep && sep->n == 0) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "empty separator");
    /* Collect [start, end) pairs left to right, then merge for rsplit's maxsplit. */
    size_t cap = 16, n = 0;
    size_t *parts = eft__malloc(cap * 2 * sizeof *parts);
    if (!parts) return eft__ct_oom(c);
#define ADD(b_, e_) do { if (n == cap) { size_t *np_ = eft__realloc(parts, cap * 4 * sizeof *parts); if (!np_) { eft__free(parts); return eft__ct_oom(c); } parts = np_; cap *= 2; } parts[2 * n] = (b_); parts[2 * n + 1] = (e_); n++; } while (0)
    if (sep) {
        size_t i = 0;
        const char *p;
        while ((p = eft__ct_memfind(s.s + i, s.n - i, sep->s, sep->n))) {
            ADD(i, (size_t)(p - s.s));
            i = (size_t)(p - s.s) + sep->n;
        }
        ADD(i, s.n);
    } else {
        size_t i = 0;
        while (i < s.n) {
            size_t st = i, k = i;
            if (eft__ct_py_isspace(eft__ct_utf8_next(s.s, s.n, &k))) {
                i = k;
                continue;
            }
            size_t e = st;
            while (e < s.n) {
                size_t k2 = e;
                if (eft__ct_py_isspace(eft__ct_utf8_next(s.s, s.n, &k2))) break;
                e = k2;
            }
            ADD(st, e);
            i = e;
        }
    }
#undef ADD
    /* Apply maxsplit: join the parts beyond it back together (the text between them is kept). */
    size_t keep = n;
    if (maxsplit >= 0 && (size_t)maxsplit + 1 < n) keep = (size_t)maxsplit + 1;
    eft__ct_list *l = eft__ct_mklist(c, keep);
    if (!l) {
        eft__free(parts);
        return k_undef;
    }
    bool cut = maxsplit >= 0 && n > (size_t)maxsplit; /* Python keeps the rest verbatim once maxsplit is used up */
    for (size_t k = 0; k < keep; k++) {
        /* The part that absorbs the rest runs to the end (split) or from the start (rsplit). */
        size_t j = from_right ? n - keep + k : k;
        size_t b = parts[2 * j], e = parts[2 * j + 1];
        if (cut && !from_right && k + 1 == keep) e = s.n;
        if (cut && from_right && k == 0) b = 0;
        l->v[k] = vstr(s.s + b, e - b);
    }
    eft__free(parts);
    return vlist(l);
}

static eft__ct_val splitlines(eft__ct_ctx *c, eft__ct_val s, bool keepends) {
    size_t count = 0, i = 0;
    eft__ct_list *l = eft__ct_mklist(c, s.n + 1);
    if (!l) return k_undef;
    size_t start = 0;
    while (i < s.n) {
        size_t at = i;
        uint32_t cp = eft__ct_utf8_next(s.s, s.n, &i);
        bool nl = cp == '\n' || cp == '\r' || cp == 0x0b || cp == 0x0c || (cp >= 0x1c && cp <= 0x1e) || cp == 0x85 ||
                  cp == 0x2028 || cp == 0x2029;
        if (!nl) continue;
        if (cp == '\r' && i < s.n && s.s[i] == '\n') i++;
        l->v[count++] = vstr(s.s + start, (keepends ? i : at) - start);
        start = i;
    }
    if (start < s.n) l->v[count++] = vstr(s.s + start, s.n - start);
    l->n = count;
    return vlist(l);
}

/* ---------------------------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------------------------- */

bool eft__ct_run_test(eft__ct_ctx *c, int id, eft__ct_val v, const eft__ct_args *a) {
    const eft__ct_val *x = arg(a, 0, NULL);
    int cmp;
    switch (id) {
    case T_BOOLEAN: return v.k == CT_BOOL;
    case T_CALLABLE: return v.k == CT_MACRO || v.k == CT_METHOD || v.k == CT_FUNC;
    case T_DEFINED: return v.k != CT_UNDEF;
    case T_UNDEFINED: return v.k == CT_UNDEF;
    case T_NONE: return v.k == CT_NONE;
    case T_TRUE: return v.k == CT_BOOL && v.b;
    case T_FALSE: return v.k == CT_BOOL && !v.b;
    case T_INTEGER: return v.k == CT_INT;
    case T_FLOAT: return v.k == CT_FLOAT;
    case T_NUMBER: return is_num(v);
    case T_STRING: return v.k == CT_STR;
    case T_MAPPING: return v.k == CT_DICT;
    case T_ITERABLE: return v.k == CT_STR || v.k == CT_LIST || v.k == CT_DICT || v.k == CT_UNDEF || v.k == CT_LOOP;
    case T_SEQUENCE: return v.k == CT_STR || (v.k == CT_LIST && !v.l->gen) || v.k == CT_DICT;
    case T_LOWER: case T_UPPER: {
        eft__ct_val s = eft__ct_to_str(c, v);
        bool cased = false;
        size_t i = 0;
        while (i < s.n) {
            utf8proc_int32_t cp = (utf8proc_int32_t)eft__ct_utf8_next(s.s, s.n, &i);
            bool up = utf8proc_tolower(cp) != cp, low = utf8proc_toupper(cp) != cp;
            if (id == T_LOWER ? up : low) return false;
            cased |= up || low;
        }
        return cased;
    }
    case T_EVEN: case T_ODD:
        if (v.k != CT_INT && v.k != CT_BOOL) {
            eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "the '%s' test needs an integer, got %s", k_tests[id], eft__ct_type_name(v));
            return false;
        }
        return (num_i(v) % 2 != 0) == (id == T_ODD);
    case T_DIVISIBLEBY: {
        if (!x) {
            eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "the 'divisibleby' test needs an argument");
            return false;
        }
        eft__ct_val r = eft__ct_binary_op(c, CT_OP_MOD, v, *x);
        return !c->failed && eft__ct_equal(r, vint(0));
    }
    case T_SAMEAS:
        if (!x) break;
        if (v.k != x->k) return false;
        if (v.k == CT_NONE || v.k == CT_UNDEF) return true;
        if (v.k == CT_BOOL) return v.b == x->b;
        if (v.k == CT_INT) return v.i == x->i && v.i >= -5 && v.i <= 256; /* CPython's small-int cache */
        if (v.k == CT_STR) return v.s == x->s && v.n == x->n;
        return v.l == x->l;
    case T_IN: {
        if (!x) break;
        bool r = eft__ct_contains(c, *x, v);
        return !c->failed && r;
    }
    case T_EQ: case T_EQUALTO: case T_NE: case T_LT: case T_LE: case T_GT: case T_GE: case T_GREATERTHAN:
    case T_LESSTHAN: case T_SYM_EQ: case T_SYM_NE: case T_SYM_GT: case T_SYM_GE: case T_SYM_LT: case T_SYM_LE: {
        if (!x) break;
        int op = id == T_EQ || id == T_EQUALTO || id == T_SYM_EQ ? CT_OP_EQ
               : id == T_NE || id == T_SYM_NE ? CT_OP_NE
               : id == T_LT || id == T_LESSTHAN || id == T_SYM_LT ? CT_OP_LT
               : id == T_LE || id == T_SYM_LE ? CT_OP_LE
               : id == T_GT || id == T_GREATERTHAN || id == T_SYM_GT ? CT_OP_GT : CT_OP_GE;
        (void)cmp;
        eft__ct_val r = eft__ct_binary_op(c, op, v, *x);
        return !c->failed && truthy(r);
    }
    }
    eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "the '%s' test needs an argument", k_tests[id]);
    return false;
}

/* ---------------------------------------------------------------------------------------------
 * Filters
 * ------------------------------------------------------------------------------------------- */

eft__ct_val eft__ct_apply_filter(eft__ct_ctx *c, int id, eft__ct_val v, const eft__ct_args *a);

/* jinja2's attribute getter for selectattr/map/sort: "a.b.0" looks up each part in turn. */
static eft__ct_val attr_path(eft__ct_ctx *c, eft__ct_val item, eft__ct_val path) {
    if (path.k == CT_INT) return eft__ct_getitem(c, item, path);
    if (path.k != CT_STR) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "attribute names must be strings");
    size_t i = 0;
    while (i <= path.n) {
        const char *dot = memchr(path.s + i, '.', path.n - i);
        size_t e = dot ? (size_t)(dot - path.s) : path.n;
        eft__ct_val key = vstr(path.s + i, e - i);
        bool digits = e > i;
        for (size_t k = i; k < e; k++) digits &= path.s[k] >= '0' && path.s[k] <= '9';
        if (digits) key = vint(strtoll(path.s + i, NULL, 10));
        item = eft__ct_getitem(c, item, key);
        TRY(c);
        if (!dot) break;
        i = e + 1;
    }
    return item;
}

static int id_of_test_arg(eft__ct_ctx *c, const eft__ct_val *name) {
    if (!name || name->k != CT_STR) {
        eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "a test name (a string) is required");
        return -1;
    }
    int id = eft__ct_test_id(name->s, name->n);
    if (id < 0) eft__ct_rfail(c, EFT_ERR_UNSUPPORTED, "unknown test '%.*s'", (int)name->n, name->s);
    return id;
}

/* select/reject/selectattr/rejectattr */
static eft__ct_val select_items(eft__ct_ctx *c, eft__ct_val v, const eft__ct_args *a, bool by_attr, bool keep_if) {
    /* jinja2 yields nothing for a falsy value (None included) instead of iterating it. */
    if (!truthy(v)) v = k_undef;
    eft__ct_list *items = eft__ct_iter_list(c, v);
    if (!items) return k_undef;
    const eft__ct_val *attr = by_attr ? arg(a, 0, NULL) : NULL;
    if (by_attr && !attr) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "selectattr/rejectattr need an attribute name");
    int first = by_attr ? 1 : 0, tid = -1;
    eft__ct_args targs = {0};
    if (a->npos > first) {
        tid = id_of_test_arg(c, &a->pos[first]);
        TRY(c);
        targs = shift_args(a, first + 1);
    }
    eft__ct_list *out = eft__ct_mklist(c, items->n);
    if (!out) return k_undef;
    out->n = 0;
    out->gen = true;
    for (size_t i = 0; i < items->n; i++) {
        eft__ct_val x = attr ? attr_path(c, items->v[i], *attr) : items->v[i];
        TRY(c);
        bool r = tid >= 0 ? eft__ct_run_test(c, tid, x, &targs) : truthy(x);
        TRY(c);
        if (r == keep_if) out->v[out->n++] = items->v[i];
    }
    return vlist(out);
}

static eft__ct_val fold_case(eft__ct_ctx *c, eft__ct_val v, bool case_sensitive) {
    if (case_sensitive || v.k != CT_STR) return v;
    return change_case(c, v, CASE_LOWER);
}

typedef struct sort_item {
    eft__ct_val key, val;
    size_t idx;
} sort_item;

/* A stable merge sort (Python's sort is stable); *bad is set when two keys do not compare. */
static void merge_sort(sort_item *v, sort_item *tmp, size_t n, bool desc, bool *bad) {
    if (n < 2) return;
    size_t h = n / 2;
    merge_sort(v, tmp, h, desc, bad);
    merge_sort(v + h, tmp, n - h, desc, bad);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        int r = 0;
        if (!eft__ct_compare(v[j].key, v[i].key, &r)) *bad = true;
        if (r == 2) r = 0;
        if (desc ? r > 0 : r < 0) tmp[k++] = v[j++];
        else tmp[k++] = v[i++];
    }
    while (i < h) tmp[k++] = v[i++];
    while (j < n) tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof *v);
}

static eft__ct_val sorted(eft__ct_ctx *c, eft__ct_list *items, const eft__ct_val *attr, bool case_sensitive, bool reverse,
                          bool pairs_by_value, bool pairs) {
    sort_item *si = eft__malloc_array(items->n ? items->n * 2 : 1, sizeof *si);
    if (!si) return eft__ct_oom(c);
    bool bad = false;
    for (size_t i = 0; i < items->n; i++) {
        eft__ct_val k = items->v[i];
        if (pairs) k = k.l->v[pairs_by_value ? 1 : 0];
        else if (attr) k = attr_path(c, k, *attr);
        if (c->failed) {
            eft__free(si);
            return k_undef;
        }
        si[i] = (sort_item){fold_case(c, k, case_sensitive), items->v[i], i};
    }
    merge_sort(si, si + items->n, items->n, reverse, &bad);
    eft__ct_list *out = eft__ct_mklist(c, items->n);
    if (out)
        for (size_t i = 0; i < items->n; i++) out->v[i] = si[i].val;
    eft__free(si);
    if (bad) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "'<' not supported between the items being sorted");
    return out ? vlist(out) : k_undef;
}

static eft__ct_val dict_items(eft__ct_ctx *c, const eft__ct_dict *d) {
    eft__ct_list *l = eft__ct_mklist(c, d->n);
    if (!l) return k_undef;
    for (size_t i = 0; i < d->n; i++) {
        eft__ct_list *p = eft__ct_mklist(c, 2);
        if (!p) return k_undef;
        p->tuple = true;
        p->v[0] = d->keys[i];
        p->v[1] = d->vals[i];
        l->v[i] = vlist(p);
    }
    return vlist(l);
}

static eft__ct_val tojson(eft__ct_ctx *c, eft__ct_val v, const eft__ct_args *a) {
    eft__ct_json_opts o = {.item_sep = ", ", .item_sep_len = 2, .key_sep = ": ", .key_sep_len = 2};
    char spaces[64];
    const eft__ct_val *indent = arg(a, 0, "indent"), *seps = arg(a, 2, "separators");
    const eft__ct_val *ensure_ascii = arg(a, -1, "ensure_ascii");
    o.sort_keys = arg_bool(a, 3, "sort_keys", false);
    if (indent && indent->k != CT_NONE) {
        if (indent->k == CT_INT) {
            int64_t w = indent->i < 0 ? 0 : indent->i > 60 ? 60 : indent->i;
            memset(spaces, ' ', (size_t)w);
            o.indent = spaces;
            o.indent_len = (size_t)w;
        } else if (indent->k == CT_STR) {
            o.indent = indent->s;
            o.indent_len = indent->n;
        } else {
            return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "tojson indent must be an int or a string");
        }
        o.item_sep = ",";
        o.item_sep_len = 1;
    }
    if (seps && seps->k != CT_NONE) {
        if (seps->k != CT_LIST || seps->l->n != 2 || seps->l->v[0].k != CT_STR || seps->l->v[1].k != CT_STR)
            return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "tojson separators must be two strings");
        o.item_sep = seps->l->v[0].s;
        o.item_sep_len = seps->l->v[0].n;
        o.key_sep = seps->l->v[1].s;
        o.key_sep_len = seps->l->v[1].n;
    }
    eft__ct_buf b = {.limit = c->lim.max_output};
    o.ensure_ascii = ensure_ascii && truthy(*ensure_ascii);
    const char *bad = eft__ct_json(&b, v, &o, 0);
    eft__ct_val r = k_undef;
    if (bad) r = eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "Object of type %s is not JSON serializable", bad);
    else if (b.failed) r = b.over_limit ? eft__ct_rfail(c, EFT_ERR_LIMIT, "tojson output is longer than %zu bytes", c->lim.max_output) : eft__ct_oom(c);
    else r = eft__ct_mkstr(c, b.p ? b.p : "", b.n);
    eft__ct_buf_free(&b);
    return r;
}

static eft__ct_val indent_filter(eft__ct_ctx *c, eft__ct_val s, const eft__ct_args *a) {
    const eft__ct_val *w = arg(a, 0, "width");
    bool first = arg_bool(a, 1, "first", false), blank = arg_bool(a, 2, "blank", false);
    eft__ct_val ind = vstr("    ", 4);
    if (w && w->k == CT_STR) ind = *w;
    else if (w && (w->k == CT_INT || w->k == CT_BOOL)) ind = eft__ct_repeat(c, vstr(" ", 1), num_i(*w));
    else if (w) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "indent width must be an int or a string");
    TRY(c);
    /* jinja2 appends a newline before splitting, so that a trailing newline survives. */
    eft__ct_val s2 = eft__ct_binary_op(c, CT_OP_CONCAT, s, vstr("\n", 1));
    TRY(c);
    eft__ct_val lines_v = splitlines(c, s2, false);
    TRY(c);
    eft__ct_list *lines = lines_v.l;
    eft__ct_buf b = {.limit = c->lim.max_output};
    if (first) eft__ct_buf_put(&b, ind.s, ind.n);
    for (size_t i = 0; i < lines->n; i++) {
        if (i) {
            eft__ct_buf_puts(&b, "\n");
            if (blank || lines->v[i].n) eft__ct_buf_put(&b, ind.s, ind.n);
        }
        eft__ct_buf_put(&b, lines->v[i].s, lines->v[i].n);
    }
    eft__ct_val r = b.failed ? (b.over_limit ? eft__ct_rfail(c, EFT_ERR_LIMIT, "indent output too long") : eft__ct_oom(c))
                             : eft__ct_mkstr(c, b.p ? b.p : "", b.n);
    eft__ct_buf_free(&b);
    return r;
}

static eft__ct_val join(eft__ct_ctx *c, eft__ct_val v, const eft__ct_args *a) {
    eft__ct_list *items = eft__ct_iter_list(c, v);
    if (!items) return k_undef;
    const eft__ct_val *sep = arg(a, 0, "d"), *attr = arg(a, 1, "attribute");
    eft__ct_val sv = sep ? eft__ct_to_str(c, *sep) : vstr("", 0);
    eft__ct_buf b = {.limit = c->lim.max_output};
    for (size_t i = 0; i < items->n && !c->failed; i++) {
        if (i) eft__ct_buf_put(&b, sv.s, sv.n);
        eft__ct_val x = attr ? attr_path(c, items->v[i], *attr) : items->v[i];
        eft__ct_val s = eft__ct_to_str(c, x);
        if (!c->failed) eft__ct_buf_put(&b, s.s, s.n);
    }
    eft__ct_val r = k_undef;
    if (!c->failed) {
        if (b.failed) r = b.over_limit ? eft__ct_rfail(c, EFT_ERR_LIMIT, "join output too long") : eft__ct_oom(c);
        else r = eft__ct_mkstr(c, b.p ? b.p : "", b.n);
    }
    eft__ct_buf_free(&b);
    return r;
}

static eft__ct_val to_int(eft__ct_ctx *c, eft__ct_val v, const eft__ct_args *a) {
    const eft__ct_val *d = arg(a, 0, "default"), *base_v = arg(a, 1, "base");
    eft__ct_val dflt = d ? *d : vint(0);
    int base = base_v && base_v->k == CT_INT ? (int)base_v->i : 10;
    if (v.k == CT_INT) return v;
    if (v.k == CT_BOOL) return vint(v.b);
    if (v.k == CT_FLOAT) return isfinite(v.f) && fabs(v.f) < 9.2e18 ? vint((int64_t)v.f) : dflt;
    if (v.k == CT_STR) {
        eft__ct_val t = strip(v, NULL, true, true);
        char buf[64];
        size_t k = 0;
        for (size_t i = 0; i < t.n && k < sizeof buf - 1; i++)
            if (t.s[i] != '_') buf[k++] = t.s[i];
        buf[k] = 0;
        if (k && t.n < sizeof buf) {
            char *end = buf;
            /* Python refuses other bases with ValueError, which jinja2 turns into the default. */
            if (base == 0 || (base >= 2 && base <= 36)) {
                errno = 0;
                long long x = strtoll(buf, &end, base);
                if (*end == 0 && errno == 0) return vint(x);
            }
            if (strpbrk(buf, "xX")) return dflt; /* float() reads no hex */
            double f = strtod(buf, &end);
            if (*end == 0 && isfinite(f) && fabs(f) < 9.2e18) return vint((int64_t)f);
        }
    }
    return dflt;
}

static eft__ct_val to_float(eft__ct_ctx *c, eft__ct_val v, const eft__ct_args *a) {
    const eft__ct_val *d = arg(a, 0, "default");
    if (is_num(v)) return vfloat(num_f(v));
    if (v.k == CT_STR) {
        eft__ct_val t = strip(v, NULL, true, true);
        char buf[64];
        if (t.n && t.n < sizeof buf) {
            memcpy(buf, t.s, t.n);
            buf[t.n] = 0;
            char *end;
            double f = strtod(buf, &end);
            if (*end == 0) return vfloat(f);
        }
    }
    return d ? *d : vfloat(0);
}

static eft__ct_val minmax(eft__ct_ctx *c, eft__ct_val v, const eft__ct_args *a, bool want_max) {
    eft__ct_list *items = eft__ct_iter_list(c, v);
    if (!items) return k_undef;
    bool cs = arg_bool(a, 0, "case_sensitive", false);
    const eft__ct_val *attr = arg(a, 1, "attribute");
    if (!items->n) return eft__ct_undef(c, "No aggregated item, sequence was empty.");
    eft__ct_val best = items->v[0], bk = fold_case(c, attr ? attr_path(c, best, *attr) : best, cs);
    for (size_t i = 1; i < items->n && !c->failed; i++) {
        eft__ct_val k = fold_case(c, attr ? attr_path(c, items->v[i], *attr) : items->v[i], cs);
        int r;
        if (!eft__ct_compare(k, bk, &r)) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "items are not comparable");
        if (want_max ? r > 0 && r != 2 : r < 0) {
            best = items->v[i];
            bk = k;
        }
    }
    return best;
}

eft__ct_val eft__ct_apply_filter(eft__ct_ctx *c, int id, eft__ct_val v, const eft__ct_args *a) {
    switch (id) {
    case F_SAFE: return keep_markup(eft__ct_to_str(c, v), true);
    case F_ESCAPE:
    case F_E: return eft__ct_escape_html(c, eft__ct_to_str(c, v));
    case F_STRING: return eft__ct_to_str(c, v);
    case F_LENGTH:
    case F_COUNT: {
        int64_t n;
        return eft__ct_length_of(c, v, &n) ? vint(n) : k_undef;
    }
    case F_DEFAULT:
    case F_D: {
        const eft__ct_val *d = arg(a, 0, "default_value");
        bool boolean = arg_bool(a, 1, "boolean", false);
        if (v.k == CT_UNDEF || (boolean && !truthy(v))) return d ? *d : vstr("", 0);
        return v;
    }
    case F_TRIM: {
        const eft__ct_val *chars = arg(a, 0, "chars");
        if (chars && chars->k == CT_NONE) chars = NULL;
        eft__ct_val s = eft__ct_to_str(c, v);
        return keep_markup(strip(s, chars, true, true), s.markup);
    }
    case F_UPPER: return keep_markup(change_case(c, eft__ct_to_str(c, v), CASE_UPPER), v.markup);
    case F_LOWER: return keep_markup(change_case(c, eft__ct_to_str(c, v), CASE_LOWER), v.markup);
    case F_CAPITALIZE: return keep_markup(change_case(c, eft__ct_to_str(c, v), CASE_CAPITALIZE), v.markup);
    case F_TITLE: return title_filter(c, eft__ct_to_str(c, v));
    case F_TOJSON: return tojson(c, v, a);
    case F_JOIN: return join(c, v, a);
    case F_FIRST: {
        eft__ct_list *items = eft__ct_iter_list(c, v);
        if (!items) return k_undef;
        return items->n ? items->v[0] : eft__ct_undef(c, "No first item, sequence was empty.");
    }
    case F_LAST: {
        if (v.k == CT_LIST && v.l->gen) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "'generator' object is not reversible");
        eft__ct_list *items = eft__ct_iter_list(c, v);
        if (!items) return k_undef;
        return items->n ? items->v[items->n - 1] : eft__ct_undef(c, "No last item, sequence was empty.");
    }
    case F_LIST: {
        eft__ct_list *items = eft__ct_iter_list(c, v);
        if (!items) return k_undef;
        eft__ct_list *l = eft__ct_mklist(c, items->n);
        if (!l) return k_undef;
        if (items->n) memcpy(l->v, items->v, items->n * sizeof *l->v);
        return vlist(l);
    }
    case F_ITEMS:
        if (v.k == CT_UNDEF) return vlist(eft__ct_mklist(c, 0));
        if (v.k != CT_DICT) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "Can only get item pairs from a mapping.");
        return dict_items(c, v.d);
    case F_DICTSORT: {
        if (v.k != CT_DICT) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "dictsort needs a mapping, got %s", eft__ct_type_name(v));
        eft__ct_val items = dict_items(c, v.d);
        TRY(c);
        const eft__ct_val *by = arg(a, 1, "by");
        bool by_value = by && by->k == CT_STR && by->n == 5 && !memcmp(by->s, "value", 5);
        return sorted(c, items.l, NULL, arg_bool(a, 0, "case_sensitive", false), arg_bool(a, 2, "reverse", false),
                      by_value, true);
    }
    case F_SORT: {
        eft__ct_list *items = eft__ct_iter_list(c, v);
        if (!items) return k_undef;
        return sorted(c, items, arg(a, 2, "attribute"), arg_bool(a, 1, "case_sensitive", false),
                      arg_bool(a, 0, "reverse", false), false, false);
    }
    case F_UNIQUE: {
        eft__ct_list *items = eft__ct_iter_list(c, v);
        if (!items) return k_undef;
        bool cs = arg_bool(a, 0, "case_sensitive", false);
        const eft__ct_val *attr = arg(a, 1, "attribute");
        eft__ct_list *out = eft__ct_mklist(c, items->n), *seen = eft__ct_mklist(c, items->n);
        if (!out || !seen) return k_undef;
        out->n = seen->n = 0;
        out->gen = true;
        for (size_t i = 0; i < items->n; i++) {
            eft__ct_val k = fold_case(c, attr ? attr_path(c, items->v[i], *attr) : items->v[i], cs);
            TRY(c);
            bool dup = false;
            for (size_t j = 0; j < seen->n && !dup; j++) dup = eft__ct_equal(seen->v[j], k);
            if (!dup) {
                seen->v[seen->n++] = k;
                out->v[out->n++] = items->v[i];
            }
        }
        return vlist(out);
    }
    case F_REVERSE: {
        if (v.k == CT_STR) {
            char *p = eft__ct_new(c, v.n + 1);
            if (!p) return k_undef;
            size_t i = 0;
            while (i < v.n) {
                size_t s = i;
                eft__ct_utf8_next(v.s, v.n, &i);
                memcpy(p + v.n - i, v.s + s, i - s);
            }
            return vstr(p, v.n);
        }
        eft__ct_list *items = eft__ct_iter_list(c, v);
        if (!items) return k_undef;
        eft__ct_list *l = eft__ct_mklist(c, items->n);
        if (!l) return k_undef;
        for (size_t i = 0; i < items->n; i++) l->v[i] = items->v[items->n - 1 - i];
        l->gen = true;
        return vlist(l);
    }
    case F_SELECT: return select_items(c, v, a, false, true);
    case F_REJECT: return select_items(c, v, a, false, false);
    case F_SELECTATTR: return select_items(c, v, a, true, true);
    case F_REJECTATTR: return select_items(c, v, a, true, false);
    case F_MAP: {
        eft__ct_list *items = eft__ct_iter_list(c, truthy(v) ? v : k_undef);
        if (!items) return k_undef;
        const eft__ct_val *attr = arg(a, -1, "attribute"), *dflt = arg(a, -1, "default");
        int fid = -1;
        eft__ct_args fargs = {0};
        if (!attr) {
            if (!a->npos || a->pos[0].k != CT_STR) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "map needs a filter name or attribute=");
            fid = eft__ct_filter_id(a->pos[0].s, a->pos[0].n);
            if (fid < 0) return eft__ct_rfail(c, EFT_ERR_UNSUPPORTED, "unknown filter '%.*s'", (int)a->pos[0].n, a->pos[0].s);
            fargs = shift_args(a, 1);
        }
        eft__ct_list *out = eft__ct_mklist(c, items->n);
        if (!out) return k_undef;
        out->gen = true;
        for (size_t i = 0; i < items->n; i++) {
            eft__ct_val x = attr ? attr_path(c, items->v[i], *attr) : eft__ct_apply_filter(c, fid, items->v[i], &fargs);
            TRY(c);
            if (attr && dflt && x.k == CT_UNDEF) x = *dflt;
            out->v[i] = x;
        }
        return vlist(out);
    }
    case F_REPLACE: {
        const eft__ct_val *o = arg(a, 0, "old"), *n = arg(a, 1, "new"), *cnt = arg(a, 2, "count");
        if (!o || !n) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "replace needs two arguments");
        eft__ct_val s = eft__ct_to_str(c, v), os = eft__ct_to_str(c, *o), ns = eft__ct_to_str(c, *n);
        TRY(c);
        return replace(c, s, os, ns, cnt && cnt->k == CT_INT ? cnt->i : -1);
    }
    case F_INDENT: return keep_markup(indent_filter(c, eft__ct_to_str(c, v), a), v.markup);
    case F_INT: return to_int(c, v, a);
    case F_FLOAT: return to_float(c, v, a);
    case F_ABS:
        if (v.k == CT_INT) return v.i == INT64_MIN ? eft__ct_rfail(c, EFT_ERR_UNSUPPORTED, "integer overflow") : vint(v.i < 0 ? -v.i : v.i);
        if (v.k == CT_BOOL) return vint(v.b);
        if (v.k == CT_FLOAT) return vfloat(fabs(v.f));
        return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "bad operand type for abs(): '%s'", eft__ct_type_name(v));
    case F_ROUND: {
        const eft__ct_val *p = arg(a, 0, "precision"), *m = arg(a, 1, "method");
        int64_t prec = p && p->k == CT_INT ? p->i : 0;
        if (!is_num(v)) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "round needs a number");
        double x = num_f(v), scale = pow(10, (double)prec);
        const char *meth = m && m->k == CT_STR ? m->s : "common";
        double r = !strncmp(meth, "ceil", 4) ? ceil(x * scale) / scale
                 : !strncmp(meth, "floor", 5) ? floor(x * scale) / scale : nearbyint(x * scale) / scale;
        return vfloat(r);
    }
    case F_MAX: return minmax(c, v, a, true);
    case F_MIN: return minmax(c, v, a, false);
    case F_SUM: {
        eft__ct_list *items = eft__ct_iter_list(c, v);
        if (!items) return k_undef;
        const eft__ct_val *attr = arg(a, 0, "attribute"), *start = arg(a, 1, "start");
        eft__ct_val acc = start ? *start : vint(0);
        for (size_t i = 0; i < items->n && !c->failed; i++)
            acc = eft__ct_binary_op(c, CT_OP_ADD, acc, attr ? attr_path(c, items->v[i], *attr) : items->v[i]);
        return acc;
    }
    }
    return eft__ct_rfail(c, EFT_ERR_INTERNAL, "filter %d has no implementation", id);
}

/* ---------------------------------------------------------------------------------------------
 * Calls: methods, globals, macros
 * ------------------------------------------------------------------------------------------- */


/* str.format with plain fields only: {}, {0}, {name}, and {{ }} escapes. */
static eft__ct_val str_format(eft__ct_ctx *c, eft__ct_val s, const eft__ct_args *a) {
    eft__ct_buf b = {.limit = c->lim.max_output};
    int auto_idx = 0;
    for (size_t i = 0; i < s.n && !c->failed; i++) {
        char ch = s.s[i];
        if ((ch == '{' || ch == '}') && i + 1 < s.n && s.s[i + 1] == ch) {
            eft__ct_buf_put(&b, &ch, 1);
            i++;
            continue;
        }
        if (ch == '}') {
            eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "Single '}' encountered in format string");
            break;
        }
        if (ch != '{') {
            eft__ct_buf_put(&b, &ch, 1);
            continue;
        }
        const char *close = memchr(s.s + i, '}', s.n - i);
        if (!close) {
            eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "Single '{' encountered in format string");
            break;
        }
        const char *f = s.s + i + 1;
        size_t fl = (size_t)(close - f);
        if (memchr(f, ':', fl) || memchr(f, '!', fl) || memchr(f, '.', fl) || memchr(f, '[', fl)) {
            eft__ct_rfail(c, EFT_ERR_UNSUPPORTED, "str.format() with conversions or format specs is not supported");
            break;
        }
        const eft__ct_val *v = NULL;
        if (fl == 0) {
            v = arg(a, auto_idx++, NULL);
        } else if (f[0] >= '0' && f[0] <= '9') {
            v = arg(a, atoi(f), NULL);
        } else {
            for (int k = 0; k < a->nkw && !v; k++)
                if (strlen(a->kwn[k]) == fl && !memcmp(a->kwn[k], f, fl)) v = &a->kw[k];
        }
        if (!v) {
            eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "str.format(): no argument for field '{%.*s}'", (int)fl, f);
            break;
        }
        eft__ct_val sv = eft__ct_to_str(c, *v);
        if (!c->failed) eft__ct_buf_put(&b, sv.s, sv.n);
        i += fl + 1;
    }
    eft__ct_val r = k_undef;
    if (!c->failed) r = b.failed ? (b.over_limit ? eft__ct_rfail(c, EFT_ERR_LIMIT, "format output too long") : eft__ct_oom(c)) : eft__ct_mkstr(c, b.p ? b.p : "", b.n);
    eft__ct_buf_free(&b);
    return r;
}

static eft__ct_val call_str_method_(eft__ct_ctx *c, eft__ct_val s, const char *m, const eft__ct_args *a);

/* Markup's methods return Markup (and escape their string arguments: replace). */
static eft__ct_val call_str_method(eft__ct_ctx *c, eft__ct_val s, const char *m, const eft__ct_args *a) {
    if (!s.markup) return call_str_method_(c, s, m, a);
    static const char *const keep[] = {"strip", "lstrip", "rstrip", "upper", "lower", "title", "capitalize",
                                       "swapcase", "replace", "split", "rsplit", "splitlines", NULL};
    if (!name_in(m, strlen(m), keep)) return call_str_method_(c, s, m, a);
    eft__ct_args ea = *a;
    if (!strcmp(m, "replace"))
        for (int i = 0; i < ea.npos && i < 2; i++)
            if (ea.pos[i].k == CT_STR) ea.pos[i] = eft__ct_escape_html(c, ea.pos[i]);
    eft__ct_val r = call_str_method_(c, s, m, &ea);
    if (r.k == CT_LIST)
        for (size_t i = 0; i < r.l->n; i++) r.l->v[i] = keep_markup(r.l->v[i], true);
    return keep_markup(r, true);
}

static eft__ct_val call_str_method_(eft__ct_ctx *c, eft__ct_val s, const char *m, const eft__ct_args *a) {
    const eft__ct_val *x = arg(a, 0, NULL), *y = arg(a, 1, NULL);
#define M(name) (!strcmp(m, name))
    if (M("startswith") || M("endswith")) {
        if (!x) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "%s() takes at least 1 argument", m);
        if (a->npos > 1) return eft__ct_rfail(c, EFT_ERR_UNSUPPORTED, "%s() with start/end is not supported", m);
        bool start = M("startswith");
        const eft__ct_val *opts = x;
        size_t nopts = 1;
        if (x->k == CT_LIST && x->l->tuple) {
            opts = x->l->v;
            nopts = x->l->n;
        }
        for (size_t i = 0; i < nopts; i++) {
            if (opts[i].k != CT_STR)
                return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "%s first arg must be str or a tuple of str, not %s", m,
                             eft__ct_type_name(opts[i]));
            const eft__ct_val *p = &opts[i];
            if (p->n <= s.n && !memcmp(start ? s.s : s.s + s.n - p->n, p->s, p->n)) return vbool(true);
        }
        return vbool(false);
    }
    if (M("strip") || M("lstrip") || M("rstrip")) {
        if (x && x->k != CT_NONE && x->k != CT_STR)
            return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "%s arg must be None or str", m);
        return strip(s, x && x->k == CT_STR ? x : NULL, m[0] != 'r', m[0] != 'l');
    }
    if (M("split") || M("rsplit")) {
        const eft__ct_val *sep = arg(a, 0, "sep"), *mx = arg(a, 1, "maxsplit");
        return split(c, s, sep, mx && mx->k == CT_INT ? mx->i : -1, m[0] == 'r');
    }
    if (M("upper")) return change_case(c, s, CASE_UPPER);
    if (M("lower")) return change_case(c, s, CASE_LOWER);
    if (M("title")) return change_case(c, s, CASE_TITLE_WORDS);
    if (M("capitalize")) return change_case(c, s, CASE_CAPITALIZE);
    if (M("swapcase")) return change_case(c, s, CASE_SWAP);
    if (M("replace")) {
        if (!x || !y || x->k != CT_STR || y->k != CT_STR) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "replace() needs two strings");
        const eft__ct_val *cnt = arg(a, 2, "count");
        return replace(c, s, *x, *y, cnt && cnt->k == CT_INT ? cnt->i : -1);
    }
    if (M("find") || M("rfind") || M("index") || M("count")) {
        if (!x || x->k != CT_STR) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "%s() needs a string argument", m);
        if (a->npos > 1) return eft__ct_rfail(c, EFT_ERR_UNSUPPORTED, "%s() with start/end is not supported", m);
        if (M("count")) {
            int64_t k = 0;
            if (x->n == 0) return vint((int64_t)eft__ct_utf8_len(s.s, s.n) + 1);
            for (const char *p = s.s; (p = eft__ct_memfind(p, s.n - (size_t)(p - s.s), x->s, x->n)); p += x->n) k++;
            return vint(k);
        }
        const char *p = m[0] == 'r' ? memrfind(s.s, s.n, x->s, x->n) : eft__ct_memfind(s.s, s.n, x->s, x->n);
        if (!p && M("index")) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "substring not found");
        return vint(p ? (int64_t)eft__ct_utf8_len(s.s, (size_t)(p - s.s)) : -1);
    }
    if (M("join")) {
        if (!x) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "join() takes exactly one argument");
        eft__ct_list *items = eft__ct_iter_list(c, *x);
        if (!items) return k_undef;
        for (size_t i = 0; i < items->n; i++)
            if (items->v[i].k != CT_STR)
                return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "sequence item %zu: expected str instance, %s found", i,
                             eft__ct_type_name(items->v[i]));
        eft__ct_args ja = {.npos = 1, .pos = {s}};
        return join(c, *x, &ja);
    }
    if (M("splitlines")) return splitlines(c, s, arg_bool(a, 0, "keepends", false));
    if (M("isdigit") || M("isspace") || M("isalpha") || M("isalnum") || M("isupper") || M("islower")) {
        if (M("isupper") || M("islower")) return vbool(eft__ct_run_test(c, M("isupper") ? T_UPPER : T_LOWER, s, a));
        if (!s.n) return vbool(false);
        size_t i = 0;
        while (i < s.n) {
            utf8proc_int32_t cp = (utf8proc_int32_t)eft__ct_utf8_next(s.s, s.n, &i);
            utf8proc_category_t cat = utf8proc_category(cp);
            bool digit = cat == UTF8PROC_CATEGORY_ND, alpha = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
            bool ok = M("isdigit") ? digit : M("isspace") ? eft__ct_py_isspace((uint32_t)cp) : M("isalpha") ? alpha : alpha || digit;
            if (!ok) return vbool(false);
        }
        return vbool(true);
    }
    if (M("format")) return str_format(c, s, a);
#undef M
    return eft__ct_rfail(c, EFT_ERR_UNSUPPORTED, "str.%s() is not supported", m);
}

eft__ct_val eft__ct_call_method(eft__ct_ctx *c, const eft__ct_method *mt, const eft__ct_args *a) {
    eft__ct_val self = mt->self;
    const char *m = mt->name;
    if (self.k == CT_STR) return call_str_method(c, self, m, a);
    if (self.k == CT_DICT) {
        if (!strcmp(m, "items")) return dict_items(c, self.d);
        if (!strcmp(m, "keys") || !strcmp(m, "values")) {
            eft__ct_list *l = eft__ct_mklist(c, self.d->n);
            if (!l) return k_undef;
            if (self.d->n) memcpy(l->v, m[0] == 'k' ? self.d->keys : self.d->vals, self.d->n * sizeof *l->v);
            return vlist(l);
        }
        if (!strcmp(m, "get")) {
            const eft__ct_val *k = arg(a, 0, NULL), *d = arg(a, 1, NULL);
            if (!k) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "get expected at least 1 argument, got 0");
            const eft__ct_val *v = eft__ct_dict_get(self.d, *k);
            return v ? *v : d ? *d : (eft__ct_val){.k = CT_NONE};
        }
        if (!strcmp(m, "copy")) {
            eft__ct_dict *d = eft__ct_new(c, sizeof *d);
            if (!d) return k_undef;
            for (size_t i = 0; i < self.d->n; i++)
                if (!eft__ct_dict_set(&c->arena, d, self.d->keys[i], self.d->vals[i])) return eft__ct_oom(c);
            return (eft__ct_val){.k = CT_DICT, .d = d};
        }
    }
    if (self.k == CT_LIST) {
        const eft__ct_val *x = arg(a, 0, NULL);
        if (!strcmp(m, "index") || !strcmp(m, "count")) {
            if (!x) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "%s() takes exactly one argument", m);
            int64_t k = 0;
            for (size_t i = 0; i < self.l->n; i++)
                if (eft__ct_equal(self.l->v[i], *x)) {
                    if (m[0] == 'i') return vint((int64_t)i);
                    k++;
                }
            if (m[0] == 'i') return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "value is not in list");
            return vint(k);
        }
        if (!strcmp(m, "copy")) return eft__ct_concat_lists(c, self.l, self.l, false).l ? vlist(eft__ct_iter_list(c, self)) : k_undef;
    }
    /* The immutable sandbox refuses every method that changes a list or dict. */
    return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "access to attribute '%s' of '%s' object is unsafe.", m,
                 eft__ct_type_name(self));
}

eft__ct_val eft__ct_call_global(eft__ct_ctx *c, int g, const eft__ct_args *a) {
    switch (g) {
    case G_RANGE: {
        int64_t v[3] = {0, 0, 1};
        if (a->nkw) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "range() takes no keyword arguments");
        if (a->npos < 1 || a->npos > 3) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "range expected 1 to 3 arguments, got %d", a->npos);
        for (int i = 0; i < a->npos; i++) {
            if (a->pos[i].k != CT_INT && a->pos[i].k != CT_BOOL)
                return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "'%s' object cannot be interpreted as an integer", eft__ct_type_name(a->pos[i]));
        }
        if (a->npos == 1) v[1] = num_i(a->pos[0]);
        else
            for (int i = 0; i < a->npos; i++) v[i] = num_i(a->pos[i]);
        if (v[2] == 0) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "range() arg 3 must not be zero");
        double count = ceil(((double)v[1] - (double)v[0]) / (double)v[2]);
        if (count < 0) count = 0;
        if (count > (double)c->lim.max_steps) return eft__ct_rfail(c, EFT_ERR_LIMIT, "range() of %.0f items is over the loop limit", count);
        eft__ct_list *l = eft__ct_mklist(c, (size_t)count);
        if (!l) return k_undef;
        for (size_t i = 0; i < l->n; i++) l->v[i] = vint(v[0] + (int64_t)i * v[2]);
        return vlist(l);
    }
    case G_NAMESPACE:
    case G_DICT: {
        eft__ct_dict *d = eft__ct_new(c, sizeof *d);
        if (!d) return k_undef;
        for (int i = 0; i < a->npos; i++) {
            if (a->pos[i].k != CT_DICT && !(g == G_NAMESPACE && a->pos[i].k == CT_NS))
                return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "%s() positional arguments must be mappings", k_globals[g]);
            for (size_t j = 0; j < a->pos[i].d->n; j++)
                if (!eft__ct_dict_set(&c->arena, d, a->pos[i].d->keys[j], a->pos[i].d->vals[j])) return eft__ct_oom(c);
        }
        for (int i = 0; i < a->nkw; i++) {
            if (g == G_NAMESPACE && a->kwn[i][0] == '_')
                return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT,
                             "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '%s'. "
                             "Please rename the attribute.", a->kwn[i]);
            if (!eft__ct_dict_set(&c->arena, d, vstr(a->kwn[i], strlen(a->kwn[i])), a->kw[i])) return eft__ct_oom(c);
        }
        return (eft__ct_val){.k = g == G_NAMESPACE ? CT_NS : CT_DICT, .d = d};
    }
    case G_RAISE: {
        const eft__ct_val *m = arg(a, 0, "message");
        if (!m) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "raise_exception() missing 1 required positional argument: 'message'");
        eft__ct_val s = eft__ct_to_str(c, *m);
        TRY(c);
        /* The template's own message, unchanged: it is meant for the client. */
        eft__fail(c->err, EFT_ERR_INVALID_ARGUMENT, "%.*s", (int)(s.n < EFT__ERRMSG_MAX ? s.n : EFT__ERRMSG_MAX - 1), s.s);
        c->failed = c->raised = true;
        return k_undef;
    }
    case G_STRFTIME: {
        const eft__ct_val *f = arg(a, 0, "format");
        if (!f || f->k != CT_STR) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "strftime_now() needs a format string");
        if (f->n > 256) return eft__ct_rfail(c, EFT_ERR_LIMIT, "strftime_now() format longer than 256 bytes");
        struct tm tmv;
        if (c->now) {
            tmv = *c->now;
        } else {
            time_t t = time(NULL);
            localtime_r(&t, &tmv);
        }
        char fmt[260], out[2048];
        memcpy(fmt, f->s, f->n);
        fmt[f->n] = 0;
        size_t n = f->n ? strftime(out, sizeof out, fmt, &tmv) : 0;
        return eft__ct_mkstr(c, out, n);
    }
    }
    return eft__ct_rfail(c, EFT_ERR_INTERNAL, "unknown global %d", g);
}

