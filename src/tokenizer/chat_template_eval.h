/*
 * chat_template_eval.h — what the evaluator (chat_template_eval.c: variables, expressions,
 * statements, operators) and the built-ins (chat_template_builtins.c: filters, tests, string and
 * dict methods, global functions) share: the evaluation state, small value constructors, call
 * arguments, and the functions each side calls on the other.
 */
#ifndef EFT_TOKENIZER_CHAT_TEMPLATE_EVAL_H
#define EFT_TOKENIZER_CHAT_TEMPLATE_EVAL_H

#include <string.h>

#include "tokenizer/chat_template_internal.h"

enum {
    F_ABS, F_CAPITALIZE, F_COUNT, F_DEFAULT, F_D, F_DICTSORT, F_FIRST, F_FLOAT, F_INDENT, F_INT, F_ITEMS,
    F_JOIN, F_LAST, F_LENGTH, F_LIST, F_LOWER, F_MAP, F_MAX, F_MIN, F_REJECT, F_REJECTATTR, F_REPLACE,
    F_REVERSE, F_ROUND, F_SAFE, F_SELECT, F_SELECTATTR, F_SORT, F_STRING, F_SUM, F_TITLE, F_TOJSON, F_TRIM,
    F_UNIQUE, F_UPPER, F_ESCAPE, F_E, F_COUNT_
};

enum {
    T_BOOLEAN, T_CALLABLE, T_DEFINED, T_DIVISIBLEBY, T_EQ, T_EQUALTO, T_EVEN, T_FALSE, T_FLOAT, T_GE, T_GT,
    T_IN, T_INTEGER, T_ITERABLE, T_LE, T_LOWER, T_LT, T_MAPPING, T_NE, T_NONE, T_NUMBER, T_ODD, T_SAMEAS,
    T_SEQUENCE, T_STRING, T_TRUE, T_UNDEFINED, T_UPPER, T_GREATERTHAN, T_LESSTHAN,
    T_SYM_EQ, T_SYM_NE, T_SYM_GT, T_SYM_GE, T_SYM_LT, T_SYM_LE, T_COUNT_
};

enum { G_RANGE, G_NAMESPACE, G_DICT, G_RAISE, G_STRFTIME, G_COUNT_ };

typedef struct eft__ct_frame {
    struct eft__ct_frame *parent;
    eft__ct_dict vars;
} eft__ct_frame;

struct eft__ct_macro {
    const eft__ct_node *def;
    eft__ct_frame *closure;
};

struct eft__ct_method {
    eft__ct_val self;
    const char *name;
};

struct eft__ct_loop {
    const eft__ct_list *items;
    size_t idx;
};

typedef struct eft__ct_ctx {
    eft__ct_arena arena;
    eft__error *err;
    bool failed, raised;
    eft__ct_buf *out;
    eft__ct_frame *root;
    const eft__ct_dict *vars; /* the render's variables */
    const struct tm *now;
    eft__ct_limits lim;
    uint64_t steps;
    int depth;
    int line;
    eft__ct_frame *f; /* the variables in scope for the expression being evaluated */
} eft__ct_ctx;

static const eft__ct_val k_undef = {.k = CT_UNDEF};

#define TRY(c) do { if ((c)->failed) return k_undef; } while (0)

#define MAX_ARGS 16

typedef struct eft__ct_args {
    int npos, nkw;
    eft__ct_val pos[MAX_ARGS];
    const char *kwn[MAX_ARGS];
    eft__ct_val kw[MAX_ARGS];
} eft__ct_args;

static inline eft__ct_val vbool(bool b) { return (eft__ct_val){.k = CT_BOOL, .b = b}; }

static inline eft__ct_val vint(int64_t i) { return (eft__ct_val){.k = CT_INT, .i = i}; }

static inline eft__ct_val vfloat(double f) { return (eft__ct_val){.k = CT_FLOAT, .f = f}; }

static inline eft__ct_val vstr(const char *s, size_t n) { return (eft__ct_val){.k = CT_STR, .s = s, .n = n}; }

static inline eft__ct_val vlist(eft__ct_list *l) { return (eft__ct_val){.k = CT_LIST, .l = l}; }

static inline eft__ct_val keep_markup(eft__ct_val r, bool markup) {
    if (r.k == CT_STR) r.markup = markup;
    return r;
}

static inline bool truthy(eft__ct_val v) {
    switch (v.k) {
    case CT_UNDEF: case CT_NONE: return false;
    case CT_BOOL: return v.b;
    case CT_INT: return v.i != 0;
    case CT_FLOAT: return v.f != 0;
    case CT_STR: return v.n > 0;
    case CT_LIST: return v.l->gen || v.l->n > 0;
    case CT_DICT: return v.d->n > 0;
    default: return true;
    }
}

static inline bool is_num(eft__ct_val v) { return v.k == CT_INT || v.k == CT_FLOAT || v.k == CT_BOOL; }

static inline double num_f(eft__ct_val v) { return v.k == CT_FLOAT ? v.f : v.k == CT_INT ? (double)v.i : v.k == CT_BOOL ? (double)v.b : 0; }

static inline int64_t num_i(eft__ct_val v) { return v.k == CT_INT ? v.i : v.k == CT_BOOL ? (int64_t)v.b : 0; }

static inline bool name_in(const char *name, size_t len, const char *const *names) {
    for (int i = 0; names[i]; i++)
        if (strlen(names[i]) == len && !memcmp(names[i], name, len)) return true;
    return false;
}

static inline const eft__ct_val *arg(const eft__ct_args *a, int idx, const char *name) {
    if (idx >= 0 && idx < a->npos) return &a->pos[idx];
    if (name)
        for (int i = 0; i < a->nkw; i++)
            if (!strcmp(a->kwn[i], name)) return &a->kw[i];
    return NULL;
}

static inline bool arg_bool(const eft__ct_args *a, int idx, const char *name, bool dflt) {
    const eft__ct_val *v = arg(a, idx, name);
    return v ? truthy(*v) : dflt;
}

static inline eft__ct_args shift_args(const eft__ct_args *a, int k) {
    eft__ct_args b = *a;
    b.npos = a->npos > k ? a->npos - k : 0;
    for (int i = 0; i < b.npos; i++) b.pos[i] = a->pos[i + k];
    return b;
}


/* Evaluator side (chat_template_eval.c). */
eft__ct_val eft__ct_rfail(eft__ct_ctx *c, eft_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
eft__ct_val eft__ct_oom(eft__ct_ctx *c);
void *eft__ct_new(eft__ct_ctx *c, size_t n); /* zeroed, from the render's arena; NULL after reporting */
eft__ct_val eft__ct_mkstr(eft__ct_ctx *c, const char *s, size_t n);
eft__ct_list *eft__ct_mklist(eft__ct_ctx *c, size_t n);
eft__ct_val eft__ct_undef(eft__ct_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
eft__ct_val eft__ct_escape_html(eft__ct_ctx *c, eft__ct_val s);
eft__ct_val eft__ct_to_str(eft__ct_ctx *c, eft__ct_val v);
eft__ct_list *eft__ct_iter_list(eft__ct_ctx *c, eft__ct_val v);
bool eft__ct_length_of(eft__ct_ctx *c, eft__ct_val v, int64_t *out);
eft__ct_val eft__ct_getitem(eft__ct_ctx *c, eft__ct_val obj, eft__ct_val key);
eft__ct_val eft__ct_binary_op(eft__ct_ctx *c, int op, eft__ct_val a, eft__ct_val b);
bool eft__ct_contains(eft__ct_ctx *c, eft__ct_val hay, eft__ct_val needle);
eft__ct_val eft__ct_repeat(eft__ct_ctx *c, eft__ct_val s, int64_t times);
eft__ct_val eft__ct_concat_lists(eft__ct_ctx *c, const eft__ct_list *a, const eft__ct_list *b, bool tuple);

/* Built-ins side (chat_template_builtins.c). */
int eft__ct_global_id(const char *name, size_t len); /* -1 when not a global function */
eft__ct_val eft__ct_apply_filter(eft__ct_ctx *c, int id, eft__ct_val v, const eft__ct_args *a);
bool eft__ct_run_test(eft__ct_ctx *c, int id, eft__ct_val v, const eft__ct_args *a);
eft__ct_val eft__ct_call_method(eft__ct_ctx *c, const eft__ct_method *mt, const eft__ct_args *a);
eft__ct_val eft__ct_call_global(eft__ct_ctx *c, int g, const eft__ct_args *a);
const char *eft__ct_memfind(const char *h, size_t hn, const char *nd, size_t nn);

#endif /* EFT_TOKENIZER_CHAT_TEMPLATE_EVAL_H */
