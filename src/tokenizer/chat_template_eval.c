/*
 * chat_template_eval.c — runs a parsed chat template the way Python's jinja2 does inside
 * transformers' ImmutableSandboxedEnvironment: scoping (a for body and a macro have their own
 * variables; namespaces carry values out), jinja2's default Undefined (prints as nothing, fails
 * when used further), the filters, tests, string/dict methods and globals that real chat
 * templates use, raise_exception and strftime_now. Limits on output size, memory, loop steps and
 * macro depth turn hostile templates into clear errors.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <utf8proc.h>

#include "tokenizer/chat_template_eval.h"

/* ---------------------------------------------------------------------------------------------
 * Evaluation state
 * ------------------------------------------------------------------------------------------- */



eft__ct_val eft__ct_rfail(eft__ct_ctx *c, eft_status st, const char *fmt, ...) {
    if (c->failed) return k_undef;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    eft__fail(c->err, st, "chat template line %d: %s", c->line, msg);
    c->failed = true;
    return k_undef;
}

eft__ct_val eft__ct_oom(eft__ct_ctx *c) {
    if (c->arena.limit && c->arena.used + 65536 >= c->arena.limit)
        return eft__ct_rfail(c, EFT_ERR_LIMIT, "the template needs more than %zu bytes of memory", c->lim.max_memory);
    return eft__ct_rfail(c, EFT_ERR_OUT_OF_MEMORY, "out of memory");
}


void *eft__ct_new(eft__ct_ctx *c, size_t n) {
    void *p = eft__ct_alloc(&c->arena, n);
    if (!p) eft__ct_oom(c);
    return p;
}


eft__ct_val eft__ct_mkstr(eft__ct_ctx *c, const char *s, size_t n) {
    char *p = eft__ct_new(c, n + 1);
    if (!p) return k_undef;
    if (n) memcpy(p, s, n);
    return vstr(p, n);
}

eft__ct_list *eft__ct_mklist(eft__ct_ctx *c, size_t n) {
    eft__ct_list *l = eft__ct_new(c, sizeof *l);
    if (!l) return NULL;
    if (n && !(l->v = eft__ct_alloc(&c->arena, n * sizeof *l->v))) {
        eft__ct_oom(c);
        return NULL;
    }
    l->n = n;
    return l;
}



/* markupsafe.escape of a plain string: & < > " ' become entities; Markup stays as it is. */
eft__ct_val eft__ct_escape_html(eft__ct_ctx *c, eft__ct_val s) {
    if (s.markup) return s;
    size_t extra = 0;
    for (size_t i = 0; i < s.n; i++) {
        char ch = s.s[i];
        extra += ch == '&' ? 4 : ch == '<' || ch == '>' ? 3 : ch == '"' || ch == '\'' ? 4 : 0;
    }
    char *p = eft__ct_new(c, s.n + extra + 1);
    if (!p) return s;
    size_t o = 0;
    for (size_t i = 0; i < s.n; i++) {
        const char *e = NULL;
        switch (s.s[i]) {
        case '&': e = "&amp;"; break;
        case '<': e = "&lt;"; break;
        case '>': e = "&gt;"; break;
        case '"': e = "&#34;"; break;
        case '\'': e = "&#39;"; break;
        }
        if (e) {
            memcpy(p + o, e, strlen(e));
            o += strlen(e);
        } else {
            p[o++] = s.s[i];
        }
    }
    eft__ct_val r = vstr(p, o);
    r.markup = true;
    return r;
}

/* "'x' is undefined", kept on the Undefined for the error when it is used. */
eft__ct_val eft__ct_undef(eft__ct_ctx *c, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof msg) n = sizeof msg - 1;
    eft__ct_val s = eft__ct_mkstr(c, msg, (size_t)n);
    eft__ct_val u = k_undef;
    u.s = s.s;
    u.n = s.n;
    return u;
}

static eft__ct_val undef_error(eft__ct_ctx *c, eft__ct_val u) {
    if (u.s) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "%.*s", (int)u.n, u.s);
    return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "a value is undefined");
}


/* str(v) as a string value (no copy for strings). */
eft__ct_val eft__ct_to_str(eft__ct_ctx *c, eft__ct_val v) {
    if (v.k == CT_STR) return v;
    if (v.k == CT_UNDEF) return vstr("", 0);
    if (v.k == CT_LIST && v.l->gen) return vstr("<generator object>", 18);
    eft__ct_buf b = {.limit = c->lim.max_output};
    eft__ct_str(&b, v);
    if (b.failed) {
        eft__ct_buf_free(&b);
        return b.over_limit ? eft__ct_rfail(c, EFT_ERR_LIMIT, "a value is longer than %zu bytes", c->lim.max_output) : eft__ct_oom(c);
    }
    eft__ct_val s = eft__ct_mkstr(c, b.p ? b.p : "", b.n);
    eft__ct_buf_free(&b);
    return s;
}

static bool emit(eft__ct_ctx *c, const char *s, size_t n) {
    if (eft__ct_buf_put(c->out, s, n)) return true;
    if (c->out->over_limit) eft__ct_rfail(c, EFT_ERR_LIMIT, "the rendered text is longer than %zu bytes", c->lim.max_output);
    else eft__ct_oom(c);
    return false;
}

static bool step(eft__ct_ctx *c) {
    if (++c->steps > c->lim.max_steps) {
        eft__ct_rfail(c, EFT_ERR_LIMIT, "the template ran more than %llu loop iterations and macro calls",
              (unsigned long long)c->lim.max_steps);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Variables
 * ------------------------------------------------------------------------------------------- */

static eft__ct_val lookup_in(eft__ct_ctx *c, eft__ct_frame *f, const char *name, size_t len) {
    for (; f; f = f->parent) {
        const eft__ct_val *v = eft__ct_dict_get_str(&f->vars, name, len);
        if (v) return *v;
    }
    const eft__ct_val *v = eft__ct_dict_get_str(c->vars, name, len);
    if (v) return *v;
    int g = eft__ct_global_id(name, len);
    if (g >= 0) return (eft__ct_val){.k = CT_FUNC, .i = g};
    return eft__ct_undef(c, "'%.*s' is undefined", (int)len, name);
}

static bool set_var(eft__ct_ctx *c, eft__ct_frame *f, const char *name, eft__ct_val v) {
    if (!eft__ct_dict_set(&c->arena, &f->vars, vstr(name, strlen(name)), v)) {
        eft__ct_oom(c);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Sequences
 * ------------------------------------------------------------------------------------------- */

/* The items "for x in v" visits, as a list. */
eft__ct_list *eft__ct_iter_list(eft__ct_ctx *c, eft__ct_val v) {
    static eft__ct_list empty;
    switch (v.k) {
    case CT_UNDEF: return &empty;
    case CT_LIST: return v.l;
    case CT_DICT: {
        eft__ct_list *l = eft__ct_mklist(c, v.d->n);
        if (l && v.d->n) memcpy(l->v, v.d->keys, v.d->n * sizeof *l->v);
        return l;
    }
    case CT_STR: {
        eft__ct_list *l = eft__ct_mklist(c, eft__ct_utf8_len(v.s, v.n));
        if (!l) return NULL;
        size_t i = 0, k = 0;
        while (i < v.n) {
            size_t s = i;
            eft__ct_utf8_next(v.s, v.n, &i);
            l->v[k++] = vstr(v.s + s, i - s);
        }
        return l;
    }
    default:
        eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "'%s' object is not iterable", eft__ct_type_name(v));
        return NULL;
    }
}

/* len(v); false (with an error) when v has none. */
bool eft__ct_length_of(eft__ct_ctx *c, eft__ct_val v, int64_t *out) {
    switch (v.k) {
    case CT_UNDEF: *out = 0; return true;
    case CT_STR: *out = (int64_t)eft__ct_utf8_len(v.s, v.n); return true;
    case CT_LIST:
        if (v.l->gen) break;
        *out = (int64_t)v.l->n;
        return true;
    case CT_DICT: *out = (int64_t)v.d->n; return true;
    default: break;
    }
    eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "object of type '%s' has no len()", v.k == CT_LIST ? "generator" : eft__ct_type_name(v));
    return false;
}

/* Byte offsets of each code point of s, plus one past the end. */
static size_t *cp_offsets(eft__ct_ctx *c, eft__ct_val s, size_t *count) {
    size_t n = eft__ct_utf8_len(s.s, s.n);
    size_t *off = eft__ct_new(c, (n + 1) * sizeof *off);
    if (!off) return NULL;
    size_t i = 0, k = 0;
    while (i < s.n) {
        off[k++] = i;
        eft__ct_utf8_next(s.s, s.n, &i);
    }
    off[n] = s.n;
    *count = n;
    return off;
}

eft__ct_val eft__ct_getitem(eft__ct_ctx *c, eft__ct_val obj, eft__ct_val key);
static eft__ct_val getattr_(eft__ct_ctx *c, eft__ct_val obj, const char *name, size_t len);

static eft__ct_val index_seq(eft__ct_ctx *c, eft__ct_val obj, int64_t i) {
    if (obj.k == CT_LIST) {
        if (obj.l->gen) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "'generator' object is not subscriptable");
        int64_t n = (int64_t)obj.l->n;
        if (i < 0) i += n;
        if (i < 0 || i >= n) return eft__ct_undef(c, "%s object has no element %lld", eft__ct_type_name(obj), (long long)i);
        return obj.l->v[i];
    }
    size_t n;
    size_t *off = cp_offsets(c, obj, &n);
    if (!off) return k_undef;
    if (i < 0) i += (int64_t)n;
    if (i < 0 || i >= (int64_t)n) return eft__ct_undef(c, "str object has no element %lld", (long long)i);
    return vstr(obj.s + off[i], off[i + 1] - off[i]);
}

eft__ct_val eft__ct_getitem(eft__ct_ctx *c, eft__ct_val obj, eft__ct_val key) {
    switch (obj.k) {
    case CT_UNDEF: return undef_error(c, obj);
    case CT_DICT: {
        const eft__ct_val *v = eft__ct_dict_get(obj.d, key);
        if (v) return *v;
        if (key.k == CT_STR) return getattr_(c, obj, key.s, key.n);
        return eft__ct_undef(c, "dict object has no element");
    }
    case CT_LIST:
    case CT_STR:
        if (key.k == CT_INT || key.k == CT_BOOL) {
            eft__ct_val r = index_seq(c, obj, key.k == CT_INT ? key.i : key.b);
            return obj.k == CT_STR ? keep_markup(r, obj.markup) : r;
        }
        if (key.k == CT_STR) return getattr_(c, obj, key.s, key.n);
        return eft__ct_undef(c, "%s object has no element", eft__ct_type_name(obj));
    case CT_NS:
    case CT_LOOP:
        if (key.k == CT_STR) return getattr_(c, obj, key.s, key.n);
        return eft__ct_undef(c, "%s object has no element", eft__ct_type_name(obj));
    default:
        return eft__ct_undef(c, "%s object has no element", eft__ct_type_name(obj));
    }
}


static const char *const k_str_methods[] = {"startswith", "endswith", "strip", "lstrip", "rstrip", "split",
    "rsplit", "upper", "lower", "title", "capitalize", "replace", "find", "rfind", "index", "count", "join",
    "splitlines", "isdigit", "isspace", "isalpha", "isalnum", "isupper", "islower", "format", "swapcase", NULL};
static const char *const k_dict_methods[] = {"items", "keys", "values", "get", "copy", "pop", "popitem",
    "setdefault", "update", "clear", NULL};
static const char *const k_list_methods[] = {"index", "count", "copy", "append", "extend", "insert", "pop",
    "remove", "reverse", "sort", "clear", NULL};

static eft__ct_val method(eft__ct_ctx *c, eft__ct_val self, const char *name, size_t len) {
    eft__ct_method *m = eft__ct_new(c, sizeof *m);
    char *nm = eft__ct_new(c, len + 1);
    if (!m || !nm) return k_undef;
    memcpy(nm, name, len);
    m->self = self;
    m->name = nm;
    return (eft__ct_val){.k = CT_METHOD, .meth = m};
}

static eft__ct_val loop_attr(eft__ct_ctx *c, const eft__ct_loop *lp, const char *name, size_t len) {
    size_t n = lp->items->n, i = lp->idx;
#define IS(s) (len == strlen(s) && !memcmp(name, s, len))
    if (IS("index")) return vint((int64_t)i + 1);
    if (IS("index0")) return vint((int64_t)i);
    if (IS("revindex")) return vint((int64_t)(n - i));
    if (IS("revindex0")) return vint((int64_t)(n - i - 1));
    if (IS("first")) return vbool(i == 0);
    if (IS("last")) return vbool(i + 1 == n);
    if (IS("length")) return vint((int64_t)n);
    if (IS("depth")) return vint(1);
    if (IS("depth0")) return vint(0);
    if (IS("previtem")) return i > 0 ? lp->items->v[i - 1] : eft__ct_undef(c, "there is no previous item");
    if (IS("nextitem")) return i + 1 < n ? lp->items->v[i + 1] : eft__ct_undef(c, "there is no next item");
#undef IS
    return eft__ct_rfail(c, EFT_ERR_UNSUPPORTED, "loop.%.*s is not supported", (int)len, name);
}

static eft__ct_val getattr_(eft__ct_ctx *c, eft__ct_val obj, const char *name, size_t len) {
    switch (obj.k) {
    case CT_UNDEF: return undef_error(c, obj);
    case CT_DICT: {
        if (name_in(name, len, k_dict_methods)) return method(c, obj, name, len);
        const eft__ct_val *v = eft__ct_dict_get_str(obj.d, name, len);
        if (v) return *v;
        return eft__ct_undef(c, "'dict object' has no attribute '%.*s'", (int)len, name);
    }
    case CT_NS: {
        const eft__ct_val *v = eft__ct_dict_get_str(obj.d, name, len);
        if (v) return *v;
        return eft__ct_undef(c, "'Namespace object' has no attribute '%.*s'", (int)len, name);
    }
    case CT_STR:
        if (name_in(name, len, k_str_methods)) return method(c, obj, name, len);
        break;
    case CT_LIST:
        if (name_in(name, len, k_list_methods)) return method(c, obj, name, len);
        break;
    case CT_LOOP: return loop_attr(c, obj.loop, name, len);
    default: break;
    }
    return eft__ct_undef(c, "'%s object' has no attribute '%.*s'", eft__ct_type_name(obj), (int)len, name);
}

/* ---------------------------------------------------------------------------------------------
 * Arguments of calls, filters and tests
 * ------------------------------------------------------------------------------------------- */


static eft__ct_val eval(eft__ct_ctx *c, const eft__ct_node *n);

static bool eval_args(eft__ct_ctx *c, const eft__ct_node *n, int skip, eft__ct_args *a) {
    memset(a, 0, sizeof *a);
    for (int i = skip; i < n->nargs; i++) {
        eft__ct_val v = eval(c, n->args[i]);
        if (c->failed) return false;
        if (n->kwnames && n->kwnames[i]) {
            if (a->nkw == MAX_ARGS) break;
            a->kwn[a->nkw] = n->kwnames[i];
            a->kw[a->nkw++] = v;
        } else {
            if (a->npos == MAX_ARGS) break;
            a->pos[a->npos++] = v;
        }
    }
    if (n->nargs - skip > MAX_ARGS) {
        eft__ct_rfail(c, EFT_ERR_UNSUPPORTED, "more than %d arguments in one call", MAX_ARGS);
        return false;
    }
    return true;
}

/* Argument number idx (positional, counted after the operand) or keyword name; NULL if absent. */


/* Skips the positional arguments already used (for select/map style calls). */

/* ---------------------------------------------------------------------------------------------
 * Operators
 * ------------------------------------------------------------------------------------------- */


eft__ct_val eft__ct_concat_lists(eft__ct_ctx *c, const eft__ct_list *a, const eft__ct_list *b, bool tuple) {
    eft__ct_list *l = eft__ct_mklist(c, a->n + b->n);
    if (!l) return k_undef;
    if (a->n) memcpy(l->v, a->v, a->n * sizeof *l->v);
    if (b->n) memcpy(l->v + a->n, b->v, b->n * sizeof *l->v);
    l->tuple = tuple;
    return vlist(l);
}

eft__ct_val eft__ct_repeat(eft__ct_ctx *c, eft__ct_val s, int64_t times) {
    if (times <= 0) return s.k == CT_STR ? vstr("", 0) : vlist(eft__ct_mklist(c, 0));
    size_t unit = s.k == CT_STR ? s.n : s.l->n * sizeof(eft__ct_val);
    if (unit && (uint64_t)times > (uint64_t)c->lim.max_output / unit)
        return eft__ct_rfail(c, EFT_ERR_LIMIT, "repeating a %s %lld times is over the size limit", eft__ct_type_name(s), (long long)times);
    if (s.k == CT_STR) {
        char *p = eft__ct_new(c, s.n * (size_t)times + 1);
        if (!p) return k_undef;
        for (int64_t i = 0; i < times; i++) memcpy(p + (size_t)i * s.n, s.s, s.n);
        return vstr(p, s.n * (size_t)times);
    }
    eft__ct_list *l = eft__ct_mklist(c, s.l->n * (size_t)times);
    if (!l) return k_undef;
    for (int64_t i = 0; i < times && s.l->n; i++) memcpy(l->v + (size_t)i * s.l->n, s.l->v, s.l->n * sizeof *l->v);
    l->tuple = s.l->tuple;
    return vlist(l);
}

static const char *const k_opnames[] = {"", "+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", "<=", ">",
                                        ">=", "in", "not in"};

static eft__ct_val type_error(eft__ct_ctx *c, int op, eft__ct_val a, eft__ct_val b) {
    if (a.k == CT_UNDEF) return undef_error(c, a);
    if (b.k == CT_UNDEF) return undef_error(c, b);
    return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "unsupported operand types for %s: '%s' and '%s'", k_opnames[op],
                 eft__ct_type_name(a), eft__ct_type_name(b));
}

bool eft__ct_contains(eft__ct_ctx *c, eft__ct_val hay, eft__ct_val needle) {
    switch (hay.k) {
    case CT_STR:
        if (needle.k != CT_STR) {
            eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "'in <string>' requires string as left operand, not %s", eft__ct_type_name(needle));
            return false;
        }
        return eft__ct_memfind(hay.s, hay.n, needle.s, needle.n) != NULL;
    case CT_LIST:
        for (size_t i = 0; i < hay.l->n; i++)
            if (eft__ct_equal(hay.l->v[i], needle)) return true;
        return false;
    case CT_DICT: return eft__ct_dict_get(hay.d, needle) != NULL;
    case CT_UNDEF: return false;
    default:
        eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "argument of type '%s' is not iterable", eft__ct_type_name(hay));
        return false;
    }
}

eft__ct_val eft__ct_binary_op(eft__ct_ctx *c, int op, eft__ct_val a, eft__ct_val b) {
    int cmp;
    switch (op) {
    case CT_OP_EQ: return vbool(eft__ct_equal(a, b));
    case CT_OP_NE: return vbool(!eft__ct_equal(a, b));
    case CT_OP_LT: case CT_OP_LE: case CT_OP_GT: case CT_OP_GE:
        if (!eft__ct_compare(a, b, &cmp)) {
            if (a.k == CT_UNDEF || b.k == CT_UNDEF) return type_error(c, op, a, b);
            return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "'%s' not supported between instances of '%s' and '%s'",
                         k_opnames[op], eft__ct_type_name(a), eft__ct_type_name(b));
        }
        if (cmp == 2) return vbool(false);
        return vbool(op == CT_OP_LT ? cmp < 0 : op == CT_OP_LE ? cmp <= 0 : op == CT_OP_GT ? cmp > 0 : cmp >= 0);
    case CT_OP_IN: case CT_OP_NOTIN: {
        bool r = eft__ct_contains(c, b, a);
        TRY(c);
        return vbool(op == CT_OP_IN ? r : !r);
    }
    case CT_OP_CONCAT: {
        eft__ct_val x = eft__ct_to_str(c, a), y = eft__ct_to_str(c, b);
        TRY(c);
        if (x.n + y.n > c->lim.max_output) return eft__ct_rfail(c, EFT_ERR_LIMIT, "a string is longer than %zu bytes", c->lim.max_output);
        char *p = eft__ct_new(c, x.n + y.n + 1);
        if (!p) return k_undef;
        memcpy(p, x.s, x.n);
        memcpy(p + x.n, y.s, y.n);
        return vstr(p, x.n + y.n);
    }
    default: break;
    }
    if (is_num(a) && is_num(b)) {
        bool fl = a.k == CT_FLOAT || b.k == CT_FLOAT;
        int64_t x = num_i(a), y = num_i(b), r;
        double fx = num_f(a), fy = num_f(b);
        switch (op) {
        case CT_OP_ADD:
            if (fl) return vfloat(fx + fy);
            if (__builtin_add_overflow(x, y, &r)) break;
            return vint(r);
        case CT_OP_SUB:
            if (fl) return vfloat(fx - fy);
            if (__builtin_sub_overflow(x, y, &r)) break;
            return vint(r);
        case CT_OP_MUL:
            if (fl) return vfloat(fx * fy);
            if (__builtin_mul_overflow(x, y, &r)) break;
            return vint(r);
        case CT_OP_DIV:
            if (fy == 0) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "division by zero");
            return vfloat(fx / fy);
        case CT_OP_FLOORDIV:
        case CT_OP_MOD:
            if (fl ? fy == 0 : y == 0)
                return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, op == CT_OP_MOD ? "modulo by zero" : "division by zero");
            if (fl) {
                double m = fmod(fx, fy);
                if (m != 0 && ((m < 0) != (fy < 0))) m += fy;
                return op == CT_OP_MOD ? vfloat(m) : vfloat(floor((fx - m) / fy + 0.5));
            }
            if (x == INT64_MIN && y == -1) break;
            {
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) {
                    q--;
                    m += y;
                }
                return vint(op == CT_OP_MOD ? m : q);
            }
        case CT_OP_POW:
            if (!fl && y >= 0) {
                int64_t acc = 1, base = x;
                for (int64_t e = y; e > 0; e >>= 1) {
                    if (e & 1 && __builtin_mul_overflow(acc, base, &acc)) goto overflow;
                    if (e > 1 && __builtin_mul_overflow(base, base, &base)) goto overflow;
                }
                return vint(acc);
            }
            return vfloat(pow(fx, fy));
        }
    overflow:
        return eft__ct_rfail(c, EFT_ERR_UNSUPPORTED, "integer overflow in %s (eft's integers are 64-bit)", k_opnames[op]);
    }
    if (op == CT_OP_ADD) {
        if (a.k == CT_STR && b.k == CT_STR && (a.markup || b.markup)) {
            /* Markup + str escapes the str (and str + Markup too, through Markup.__radd__). */
            eft__ct_val r = eft__ct_binary_op(c, CT_OP_CONCAT, eft__ct_escape_html(c, a), eft__ct_escape_html(c, b));
            return keep_markup(r, true);
        }
        if (a.k == CT_STR && b.k == CT_STR) return eft__ct_binary_op(c, CT_OP_CONCAT, a, b);
        if (a.k == CT_LIST && b.k == CT_LIST && a.l->tuple == b.l->tuple && !a.l->gen && !b.l->gen)
            return eft__ct_concat_lists(c, a.l, b.l, a.l->tuple);
    }
    if (op == CT_OP_MUL) {
        if ((a.k == CT_STR || a.k == CT_LIST) && (b.k == CT_INT || b.k == CT_BOOL)) return keep_markup(eft__ct_repeat(c, a, num_i(b)), a.markup);
        if ((b.k == CT_STR || b.k == CT_LIST) && (a.k == CT_INT || a.k == CT_BOOL)) return keep_markup(eft__ct_repeat(c, b, num_i(a)), b.markup);
    }
    if (op == CT_OP_MOD && a.k == CT_STR)
        return eft__ct_rfail(c, EFT_ERR_UNSUPPORTED, "printf-style string formatting ('%%' on a string) is not supported");
    return type_error(c, op, a, b);
}

static bool exec_block(eft__ct_ctx *c, const eft__ct_node *n, eft__ct_frame *f, int *flow);

static eft__ct_val call_macro(eft__ct_ctx *c, const eft__ct_macro *m, const eft__ct_args *a) {
    const eft__ct_node *def = m->def;
    if (c->depth >= c->lim.max_depth)
        return eft__ct_rfail(c, EFT_ERR_LIMIT, "macro calls nested more than %d deep (in '%s')", c->lim.max_depth, def->str);
    if (!step(c)) return k_undef;
    if (a->npos > def->nargs)
        return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "macro '%s' takes not more than %d argument(s)", def->str, def->nargs);
    eft__ct_frame *f = eft__ct_new(c, sizeof *f);
    if (!f) return k_undef;
    f->parent = m->closure;
    for (int i = 0; i < a->nkw; i++) {
        bool known = false;
        for (int j = 0; j < def->nargs; j++) known |= !strcmp(def->args[j]->str, a->kwn[i]);
        if (!known) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "macro '%s' takes no keyword argument '%s'", def->str, a->kwn[i]);
    }
    int saved_line = c->line;
    for (int j = 0; j < def->nargs; j++) {
        const eft__ct_node *p = def->args[j];
        const eft__ct_val *v = j < a->npos ? &a->pos[j] : arg(a, -1, p->str);
        eft__ct_val val;
        if (v) {
            val = *v;
        } else if (p->a) {
            c->depth++;
            val = eval(c, p->a);
            c->depth--;
            TRY(c);
        } else {
            val = eft__ct_undef(c, "parameter '%s' was not provided", p->str);
        }
        if (!set_var(c, f, p->str, val)) return k_undef;
    }
    eft__ct_buf buf = {.limit = c->lim.max_output};
    eft__ct_buf *saved = c->out;
    c->out = &buf;
    c->depth++;
    int flow = 0;
    exec_block(c, def->b, f, &flow);
    c->depth--;
    c->out = saved;
    c->line = saved_line;
    eft__ct_val r = c->failed ? k_undef : eft__ct_mkstr(c, buf.p ? buf.p : "", buf.n);
    eft__ct_buf_free(&buf);
    return r;
}

static eft__ct_val call(eft__ct_ctx *c, eft__ct_val fn, const eft__ct_args *a) {
    switch (fn.k) {
    case CT_MACRO: return call_macro(c, fn.m, a);
    case CT_METHOD: return eft__ct_call_method(c, fn.meth, a);
    case CT_FUNC: return eft__ct_call_global(c, (int)fn.i, a);
    case CT_UNDEF: return undef_error(c, fn);
    default: return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "'%s' object is not callable", eft__ct_type_name(fn));
    }
}

/* ---------------------------------------------------------------------------------------------
 * Expressions
 * ------------------------------------------------------------------------------------------- */

static eft__ct_val slice(eft__ct_ctx *c, eft__ct_val obj, const eft__ct_node *n) {
    int64_t parts[3];
    bool given[3];
    for (int i = 0; i < 3; i++) {
        given[i] = false;
        if (!n->args[i]) continue;
        eft__ct_val v = eval(c, n->args[i]);
        TRY(c);
        if (v.k == CT_NONE) continue;
        if (v.k != CT_INT && v.k != CT_BOOL)
            return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "slice indices must be integers or None");
        parts[i] = num_i(v);
        given[i] = true;
    }
    if (obj.k == CT_UNDEF) return undef_error(c, obj);
    if (obj.k != CT_STR && !(obj.k == CT_LIST && !obj.l->gen))
        return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "'%s' object is not subscriptable", eft__ct_type_name(obj));
    int64_t step_ = given[2] ? parts[2] : 1;
    if (step_ == 0) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "slice step cannot be zero");
    size_t len = 0, *off = NULL;
    if (obj.k == CT_STR) {
        if (!(off = cp_offsets(c, obj, &len))) return k_undef;
    } else {
        len = obj.l->n;
    }
    int64_t L = (int64_t)len, start, stop;
    /* Python's slice.indices(). */
    if (step_ > 0) {
        start = given[0] ? parts[0] : 0;
        stop = given[1] ? parts[1] : L;
        if (start < 0) start = start + L < 0 ? 0 : start + L;
        if (start > L) start = L;
        if (stop < 0) stop = stop + L < 0 ? 0 : stop + L;
        if (stop > L) stop = L;
    } else {
        start = given[0] ? parts[0] : L - 1;
        stop = given[1] ? parts[1] : -1 - L;
        if (start < 0) start = start + L < 0 ? -1 : start + L;
        if (start >= L) start = L - 1;
        if (stop < 0) stop = stop + L < 0 ? -1 : stop + L;
        if (stop >= L) stop = L - 1;
    }
    size_t count = 0;
    for (int64_t i = start; step_ > 0 ? i < stop : i > stop; i += step_) count++;
    if (obj.k == CT_STR) {
        if (step_ == 1) return vstr(obj.s + (count ? off[start] : 0), count ? off[start + (int64_t)count] - off[start] : 0);
        char *p = eft__ct_new(c, obj.n + 1);
        if (!p) return k_undef;
        size_t o = 0;
        for (int64_t i = start; step_ > 0 ? i < stop : i > stop; i += step_) {
            memcpy(p + o, obj.s + off[i], off[i + 1] - off[i]);
            o += off[i + 1] - off[i];
        }
        return vstr(p, o);
    }
    eft__ct_list *l = eft__ct_mklist(c, count);
    if (!l) return k_undef;
    l->tuple = obj.l->tuple;
    size_t k = 0;
    for (int64_t i = start; step_ > 0 ? i < stop : i > stop; i += step_) l->v[k++] = obj.l->v[i];
    return vlist(l);
}

static eft__ct_val eval(eft__ct_ctx *c, const eft__ct_node *n) {
    TRY(c);
    c->line = n->line;
    switch (n->kind) {
    case CT_N_CONST: return n->val;
    case CT_N_NAME: return lookup_in(c, c->f, n->str, n->len);
    case CT_N_LIST:
    case CT_N_TUPLE: {
        eft__ct_list *l = eft__ct_mklist(c, (size_t)n->nargs);
        if (!l) return k_undef;
        l->tuple = n->kind == CT_N_TUPLE;
        for (int i = 0; i < n->nargs; i++) {
            l->v[i] = eval(c, n->args[i]);
            TRY(c);
        }
        return vlist(l);
    }
    case CT_N_DICT: {
        eft__ct_dict *d = eft__ct_new(c, sizeof *d);
        if (!d) return k_undef;
        for (int i = 0; i + 1 < n->nargs; i += 2) {
            eft__ct_val k = eval(c, n->args[i]), v = eval(c, n->args[i + 1]);
            TRY(c);
            if (k.k == CT_LIST && !k.l->tuple) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "unhashable type: 'list'");
            if (k.k == CT_DICT || k.k == CT_NS) return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "unhashable type: 'dict'");
            if (!eft__ct_dict_set(&c->arena, d, k, v)) return eft__ct_oom(c);
        }
        return (eft__ct_val){.k = CT_DICT, .d = d};
    }
    case CT_N_GETATTR: {
        eft__ct_val o = eval(c, n->a);
        TRY(c);
        c->line = n->line;
        return getattr_(c, o, n->str, n->len);
    }
    case CT_N_GETITEM: {
        eft__ct_val o = eval(c, n->a), k = eval(c, n->b);
        TRY(c);
        c->line = n->line;
        return eft__ct_getitem(c, o, k);
    }
    case CT_N_SLICE: {
        eft__ct_val o = eval(c, n->a);
        TRY(c);
        eft__ct_val r = slice(c, o, n);
        return o.k == CT_STR ? keep_markup(r, o.markup) : r;
    }
    case CT_N_CALL: {
        eft__ct_val fn = eval(c, n->a);
        eft__ct_args a;
        TRY(c);
        if (!eval_args(c, n, 0, &a)) return k_undef;
        c->line = n->line;
        return call(c, fn, &a);
    }
    case CT_N_FILTER: {
        eft__ct_val v = eval(c, n->a);
        eft__ct_args a;
        TRY(c);
        if (!eval_args(c, n, 0, &a)) return k_undef;
        c->line = n->line;
        return eft__ct_apply_filter(c, n->id, v, &a);
    }
    case CT_N_TEST: {
        eft__ct_val v = eval(c, n->a);
        eft__ct_args a;
        TRY(c);
        if (!eval_args(c, n, 0, &a)) return k_undef;
        c->line = n->line;
        bool r = eft__ct_run_test(c, n->id, v, &a);
        TRY(c);
        return vbool(n->op ? !r : r);
    }
    case CT_N_UNARY: {
        eft__ct_val v = eval(c, n->a);
        TRY(c);
        if (n->op == 'n') return vbool(!truthy(v));
        if (v.k == CT_INT || v.k == CT_BOOL) {
            int64_t x = num_i(v);
            if (n->op == '+') return vint(x);
            if (x == INT64_MIN) return eft__ct_rfail(c, EFT_ERR_UNSUPPORTED, "integer overflow");
            return vint(-x);
        }
        if (v.k == CT_FLOAT) return vfloat(n->op == '-' ? -v.f : v.f);
        if (v.k == CT_UNDEF) return undef_error(c, v);
        return eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "bad operand type for unary %c: '%s'", n->op, eft__ct_type_name(v));
    }
    case CT_N_BINARY: {
        eft__ct_val a = eval(c, n->a), b = eval(c, n->b);
        TRY(c);
        c->line = n->line;
        return eft__ct_binary_op(c, n->op, a, b);
    }
    case CT_N_AND: {
        eft__ct_val a = eval(c, n->a);
        TRY(c);
        return truthy(a) ? eval(c, n->b) : a;
    }
    case CT_N_OR: {
        eft__ct_val a = eval(c, n->a);
        TRY(c);
        return truthy(a) ? a : eval(c, n->b);
    }
    case CT_N_COND: {
        eft__ct_val cond = eval(c, n->b);
        TRY(c);
        if (truthy(cond)) return eval(c, n->a);
        return n->c ? eval(c, n->c) : eft__ct_undef(c, "the inline if-expression on line %d evaluated to false and no else section was defined.", n->line);
    }
    default: return eft__ct_rfail(c, EFT_ERR_INTERNAL, "node kind %d is not an expression", n->kind);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Statements. flow: 0 normal, 1 break, 2 continue.
 * ------------------------------------------------------------------------------------------- */

static bool exec_node(eft__ct_ctx *c, const eft__ct_node *n, eft__ct_frame *f, int *flow);

static bool exec_block(eft__ct_ctx *c, const eft__ct_node *n, eft__ct_frame *f, int *flow) {
    for (int i = 0; i < n->nargs; i++) {
        if (!exec_node(c, n->args[i], f, flow)) return false;
        if (*flow) return true;
    }
    return true;
}

static bool assign(eft__ct_ctx *c, eft__ct_frame *f, const eft__ct_node *targets, eft__ct_val v) {
    if (targets->nargs == 1) return set_var(c, f, targets->args[0]->str, v);
    eft__ct_list *items = eft__ct_iter_list(c, v);
    if (!items) return false;
    if ((int)items->n != targets->nargs) {
        eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "cannot unpack %zu values into %d variables", items->n, targets->nargs);
        return false;
    }
    for (int i = 0; i < targets->nargs; i++)
        if (!set_var(c, f, targets->args[i]->str, items->v[i])) return false;
    return true;
}

static bool exec_for(eft__ct_ctx *c, const eft__ct_node *n, eft__ct_frame *f, int *flow) {
    eft__ct_frame *saved = c->f;
    c->f = f;
    eft__ct_val it = eval(c, n->a);
    c->f = saved;
    if (c->failed) return false;
    eft__ct_list *items = eft__ct_iter_list(c, it);
    if (!items) return false;
    if (n->d) {
        /* {% for x in xs if cond %}: loop.length and friends count the kept items only. */
        eft__ct_list *kept = eft__ct_mklist(c, items->n);
        if (!kept) return false;
        kept->n = 0;
        for (size_t i = 0; i < items->n; i++) {
            if (!step(c)) return false;
            eft__ct_frame *tf = eft__ct_new(c, sizeof *tf);
            if (!tf) return false;
            tf->parent = f;
            if (!assign(c, tf, n, items->v[i])) return false;
            c->f = tf;
            eft__ct_val keep = eval(c, n->d);
            c->f = saved;
            if (c->failed) return false;
            if (truthy(keep)) kept->v[kept->n++] = items->v[i];
        }
        items = kept;
    }
    eft__ct_loop *lp = eft__ct_new(c, sizeof *lp);
    if (!lp) return false;
    lp->items = items;
    for (size_t i = 0; i < items->n; i++) {
        if (!step(c)) return false;
        /* Each iteration gets fresh variables: a set in the body does not reach the next one. */
        eft__ct_frame *bf = eft__ct_new(c, sizeof *bf);
        if (!bf) return false;
        bf->parent = f;
        lp->idx = i;
        if (!set_var(c, bf, "loop", (eft__ct_val){.k = CT_LOOP, .loop = lp})) return false;
        if (!assign(c, bf, n, items->v[i])) return false;
        int fl = 0;
        if (!exec_block(c, n->b, bf, &fl)) return false;
        if (fl == 1) break;
    }
    (void)flow;
    if (!items->n && n->c) {
        int fl = 0;
        return exec_block(c, n->c, f, &fl) && (*flow = fl, true);
    }
    return true;
}

static bool exec_node(eft__ct_ctx *c, const eft__ct_node *n, eft__ct_frame *f, int *flow) {
    if (c->failed) return false;
    c->line = n->line;
    eft__ct_frame *saved = c->f;
    c->f = f;
    bool ok = true;
    switch (n->kind) {
    case CT_N_BLOCK: ok = exec_block(c, n, f, flow); break;
    case CT_N_TEXT: ok = emit(c, n->str, n->len); break;
    case CT_N_OUTPUT: {
        eft__ct_val v = eval(c, n->a);
        if (c->failed) break;
        v = eft__ct_to_str(c, v);
        if (c->failed) break;
        ok = emit(c, v.s, v.n);
        break;
    }
    case CT_N_IF: {
        eft__ct_val cond = eval(c, n->a);
        if (c->failed) break;
        if (truthy(cond)) ok = exec_block(c, n->b, f, flow);
        else if (n->c) ok = n->c->kind == CT_N_IF ? exec_node(c, n->c, f, flow) : exec_block(c, n->c, f, flow);
        break;
    }
    case CT_N_FOR: ok = exec_for(c, n, f, flow); break;
    case CT_N_SET: {
        eft__ct_val v = eval(c, n->b);
        if (c->failed) break;
        if (n->a) {
            eft__ct_val ns = lookup_in(c, f, n->a->str, strlen(n->a->str));
            if (ns.k != CT_NS) {
                eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT, "cannot assign attribute on non-namespace object");
                break;
            }
            if (n->a->str2[0] == '_') {
                eft__ct_rfail(c, EFT_ERR_INVALID_ARGUMENT,
                      "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '%s'. "
                      "Please rename the attribute.", n->a->str2);
                break;
            }
            if (!eft__ct_dict_set(&c->arena, ns.d, vstr(n->a->str2, strlen(n->a->str2)), v)) eft__ct_oom(c);
        } else {
            assign(c, f, n, v);
        }
        break;
    }
    case CT_N_SETBLOCK:
    case CT_N_FILTERBLOCK: {
        eft__ct_buf buf = {.limit = c->lim.max_output};
        eft__ct_buf *out = c->out;
        c->out = &buf;
        int fl = 0;
        exec_block(c, n->b, f, &fl);
        c->out = out;
        eft__ct_val s = c->failed ? k_undef : eft__ct_mkstr(c, buf.p ? buf.p : "", buf.n);
        eft__ct_buf_free(&buf);
        if (c->failed) break;
        if (n->kind == CT_N_SETBLOCK) {
            set_var(c, f, n->str, s);
        } else {
            eft__ct_args a;
            c->f = f;
            if (!eval_args(c, n->a, 0, &a)) break;
            eft__ct_val r = eft__ct_apply_filter(c, n->a->id, s, &a);
            if (c->failed) break;
            r = eft__ct_to_str(c, r);
            if (!c->failed) emit(c, r.s, r.n);
        }
        break;
    }
    case CT_N_MACRO: {
        eft__ct_macro *m = eft__ct_new(c, sizeof *m);
        if (!m) break;
        m->def = n;
        m->closure = f;
        set_var(c, f, n->str, (eft__ct_val){.k = CT_MACRO, .m = m});
        break;
    }
    case CT_N_BREAK: *flow = 1; break;
    case CT_N_CONTINUE: *flow = 2; break;
    default: eft__ct_rfail(c, EFT_ERR_INTERNAL, "node kind %d is not a statement", n->kind);
    }
    c->f = saved;
    return ok && !c->failed;
}

/* ---------------------------------------------------------------------------------------------
 * JSON input and the render entry point
 * ------------------------------------------------------------------------------------------- */

static eft__ct_val from_json(eft__ct_ctx *c, const json_t *j, int depth) {
    if (depth > 200) return eft__ct_rfail(c, EFT_ERR_LIMIT, "input JSON nested more than 200 deep");
    switch (json_typeof(j)) {
    case JSON_NULL: return (eft__ct_val){.k = CT_NONE};
    case JSON_TRUE: return vbool(true);
    case JSON_FALSE: return vbool(false);
    case JSON_INTEGER: return vint((int64_t)json_integer_value(j));
    case JSON_REAL: return vfloat(json_real_value(j));
    case JSON_STRING: return vstr(json_string_value(j), json_string_length(j));
    case JSON_ARRAY: {
        eft__ct_list *l = eft__ct_mklist(c, json_array_size(j));
        if (!l) return k_undef;
        for (size_t i = 0; i < l->n; i++) {
            l->v[i] = from_json(c, json_array_get(j, i), depth + 1);
            TRY(c);
        }
        return vlist(l);
    }
    case JSON_OBJECT: {
        eft__ct_dict *d = eft__ct_new(c, sizeof *d);
        if (!d) return k_undef;
        const char *key;
        size_t klen;
        json_t *v;
        json_object_keylen_foreach((json_t *)j, key, klen, v) {
            eft__ct_val x = from_json(c, v, depth + 1);
            TRY(c);
            /* Object keys are unique, so append without searching. */
            if (d->n == d->cap) {
                size_t cap = d->cap ? d->cap * 2 : 4;
                eft__ct_val *nk = eft__ct_new(c, cap * sizeof *nk), *nv = eft__ct_new(c, cap * sizeof *nv);
                if (!nk || !nv) return k_undef;
                if (d->n) {
                    memcpy(nk, d->keys, d->n * sizeof *nk);
                    memcpy(nv, d->vals, d->n * sizeof *nv);
                }
                d->keys = nk;
                d->vals = nv;
                d->cap = cap;
            }
            d->keys[d->n] = vstr(key, klen);
            d->vals[d->n] = x;
            d->n++;
        }
        return (eft__ct_val){.k = CT_DICT, .d = d};
    }
    }
    return k_undef;
}

eft_status eft__ct_render(const eft__ct_render_in *in, char **out, size_t *out_len, bool *raised,
                          eft__error *err) {
    *out = NULL;
    *out_len = 0;
    *raised = false;
    eft__ct_ctx c = {.err = err, .now = in->now, .lim = in->limits};
    c.arena.limit = in->limits.max_memory;
    eft__ct_buf buf = {.limit = in->limits.max_output};
    c.out = &buf;
    eft__ct_frame *root = eft__ct_alloc(&c.arena, sizeof *root);
    eft__ct_val vars = root ? from_json(&c, in->vars, 0) : eft__ct_oom(&c);
    eft_status st = EFT_OK;
    if (!c.failed && vars.k != CT_DICT) eft__ct_rfail(&c, EFT_ERR_INVALID_ARGUMENT, "template variables must be a JSON object");
    if (!c.failed) {
        c.root = root;
        c.vars = vars.d;
        int flow = 0;
        exec_block(&c, in->root, root, &flow);
    }
    if (c.failed) {
        st = err ? err->status : EFT_ERR_INVALID_ARGUMENT;
        if (st == EFT_OK) st = EFT_ERR_INTERNAL;
        *raised = c.raised;
        eft__ct_buf_free(&buf);
    } else if (buf.failed) {
        st = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "chat template: out of memory");
        eft__ct_buf_free(&buf);
    } else {
        if (!buf.p && !(buf.p = eft__malloc(1))) {
            st = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "chat template: out of memory");
        } else {
            if (!buf.n) buf.p[0] = 0;
            *out = buf.p;
            *out_len = buf.n;
        }
    }
    eft__ct_arena_free(&c.arena);
    return st;
}
