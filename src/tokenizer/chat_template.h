/*
 * chat_template.h — the internals of eft's Jinja2 interpreter for chat templates: the arena that
 * owns a template's syntax tree (and, separately, everything one render creates), the syntax
 * tree the parser builds, and the entry points shared by chat_template_parse.c (lexer and parser,
 * which check every tag, filter and test name at load) and chat_template_eval.c (the evaluator,
 * which follows Python's jinja2 as transformers configures it: trim_blocks, lstrip_blocks,
 * loopcontrols, an immutable sandbox, transformers' tojson, raise_exception and strftime_now).
 */
#ifndef EFT_TOKENIZER_CHAT_TEMPLATE_H
#define EFT_TOKENIZER_CHAT_TEMPLATE_H

#include <time.h>

#include "core/core.h"

/* ---------------------------------------------------------------------------------------------
 * Arena: many small allocations freed together. Allocation counts against a cap so that a
 * hostile template that builds huge strings or lists fails with a clear error instead of
 * exhausting memory.
 * ------------------------------------------------------------------------------------------- */

typedef struct eft__ct_chunk eft__ct_chunk;

typedef struct eft__ct_arena {
    eft__ct_chunk *head;
    size_t used;  /* bytes handed out, for the cap */
    size_t limit; /* 0: no cap */
} eft__ct_arena;

/* NULL when out of memory or over the cap; memory is zeroed. */
void *eft__ct_alloc(eft__ct_arena *a, size_t n);
void eft__ct_arena_free(eft__ct_arena *a);

/* ---------------------------------------------------------------------------------------------
 * Syntax tree
 * ------------------------------------------------------------------------------------------- */

typedef enum eft__ct_node_kind {
    /* statements */
    CT_N_BLOCK,    /* args: statements in order */
    CT_N_TEXT,     /* str, len: literal output */
    CT_N_OUTPUT,   /* a: expression to print */
    CT_N_IF,       /* a: condition, b: body, c: else part (a block or another IF for elif) */
    CT_N_FOR,      /* args: target names (1 or more), a: iterable, b: body, c: else, d: filter */
    CT_N_SET,      /* args: target names (1 or more) or a: NSREF target, b: value */
    CT_N_SETBLOCK, /* str: name, b: body rendered into the variable */
    CT_N_MACRO,    /* str: name, args: parameter NAME nodes (a: default or NULL), b: body */
    CT_N_BREAK,
    CT_N_CONTINUE,
    CT_N_FILTERBLOCK, /* b: body, a: FILTER node whose a is NULL (applied to the body's output) */
    /* expressions */
    CT_N_CONST,   /* val: none, bool, int, float or string constant */
    CT_N_NAME,    /* str: variable name */
    CT_N_NSREF,   /* str: namespace variable, str2: attribute (only as a set target) */
    CT_N_LIST,    /* args: items */
    CT_N_TUPLE,   /* args: items */
    CT_N_DICT,    /* args: key, value, key, value, ... */
    CT_N_GETATTR, /* a: object, str: attribute */
    CT_N_GETITEM, /* a: object, b: index */
    CT_N_SLICE,   /* a: object, args[0..2]: start, stop, step (each may be NULL) */
    CT_N_CALL,    /* a: callee, args (kwnames[i] non-NULL for keyword arguments) */
    CT_N_FILTER,  /* a: operand, str: filter name, id: filter id, args/kwnames */
    CT_N_TEST,    /* a: operand, str: test name, id: test id, args; op = 1 for "is not" */
    CT_N_UNARY,   /* op: '-', '+' or 'n' (not), a: operand */
    CT_N_BINARY,  /* op: see eft__ct_binop, a, b */
    CT_N_AND,     /* a, b */
    CT_N_OR,      /* a, b */
    CT_N_COND,    /* a: value if true, b: condition, c: else value (NULL: undefined) */
} eft__ct_node_kind;

typedef enum eft__ct_binop {
    CT_OP_ADD = 1, CT_OP_SUB, CT_OP_MUL, CT_OP_DIV, CT_OP_FLOORDIV, CT_OP_MOD, CT_OP_POW,
    CT_OP_CONCAT, CT_OP_EQ, CT_OP_NE, CT_OP_LT, CT_OP_LE, CT_OP_GT, CT_OP_GE, CT_OP_IN, CT_OP_NOTIN,
} eft__ct_binop;

/* ---------------------------------------------------------------------------------------------
 * Values. Passed by value; strings, lists and dicts point into an arena and are never mutated
 * once built (the sandbox forbids list.append and friends), except namespaces.
 * ------------------------------------------------------------------------------------------- */

typedef enum eft__ct_kind {
    CT_UNDEF = 0, /* s/n: the name that was looked up, for messages (may be NULL) */
    CT_NONE,
    CT_BOOL,
    CT_INT,
    CT_FLOAT,
    CT_STR,    /* s/n: UTF-8 bytes */
    CT_LIST,   /* l */
    CT_DICT,   /* d */
    CT_NS,     /* d: a namespace object (mutable through set ns.x) */
    CT_MACRO,  /* m */
    CT_METHOD, /* meth: a bound method of a string, dict or list */
    CT_FUNC,   /* i: a global function (range, namespace, ...) */
    CT_LOOP,   /* loop: the loop variable of a for */
} eft__ct_kind;

typedef struct eft__ct_list eft__ct_list;
typedef struct eft__ct_dict eft__ct_dict;
typedef struct eft__ct_macro eft__ct_macro;
typedef struct eft__ct_method eft__ct_method;
typedef struct eft__ct_loop eft__ct_loop;

typedef struct eft__ct_val {
    eft__ct_kind k;
    /* A string that is markupsafe.Markup in jinja2 (from |safe or |escape): adding a plain string
     * to it HTML-escapes the plain one, and its string methods keep it Markup. */
    bool markup;
    size_t n; /* string length in bytes */
    union {
        bool b;
        int64_t i;
        double f;
        const char *s;
        eft__ct_list *l;
        eft__ct_dict *d;
        eft__ct_macro *m;
        eft__ct_method *meth;
        eft__ct_loop *loop;
    };
} eft__ct_val;

struct eft__ct_list {
    size_t n;
    eft__ct_val *v;
    bool tuple; /* printed as (a, b) */
    bool gen;   /* what jinja2 returns as a generator (map, select, ...): always true, no len() */
};

struct eft__ct_dict {
    size_t n, cap;
    eft__ct_val *keys;
    eft__ct_val *vals;
};

typedef struct eft__ct_node eft__ct_node;
struct eft__ct_node {
    eft__ct_node_kind kind;
    int line;
    int op; /* operator, or 1 for "is not" */
    int id; /* filter or test id */
    eft__ct_node *a, *b, *c, *d;
    eft__ct_node **args;
    const char **kwnames; /* NULL, or one entry per arg (NULL: positional) */
    int nargs;
    const char *str, *str2;
    size_t len;
    eft__ct_val val;
};

/* ---------------------------------------------------------------------------------------------
 * Parser (chat_template_parse.c) and evaluator (chat_template_eval.c)
 * ------------------------------------------------------------------------------------------- */

/* Filters and tests the evaluator implements; the parser refuses any other name. */
int eft__ct_filter_id(const char *name, size_t len); /* -1 when unknown */
int eft__ct_test_id(const char *name, size_t len);   /* -1 when unknown */

/* Parses src (UTF-8, len bytes) into a tree allocated in arena. EFT_ERR_FORMAT for syntax
 * errors, EFT_ERR_UNSUPPORTED for Jinja2 features eft lacks; the message names the construct
 * and the line. */
eft_status eft__ct_parse(const char *src, size_t len, eft__ct_arena *arena, eft__ct_node **root,
                         eft__error *err);

typedef struct eft__ct_limits {
    size_t max_output;     /* bytes of rendered text */
    size_t max_memory;     /* bytes of values one render may create */
    uint64_t max_steps;    /* loop iterations and macro calls, all together */
    int max_depth;         /* nested macro calls */
} eft__ct_limits;

eft__ct_limits eft__ct_limits_default(void);

/* Variables a render sees, as one JSON object (messages, tools, add_generation_prompt, ...). */
typedef struct eft__ct_render_in {
    const eft__ct_node *root;
    const void *vars;      /* json_t object */
    const struct tm *now;  /* NULL: the local time (strftime_now) */
    eft__ct_limits limits;
} eft__ct_render_in;

/* Renders; on success *out (NUL-terminated, eft__malloc'd) and *out_len. When the template calls
 * raise_exception, *raised is set and err holds exactly the template's message. */
eft_status eft__ct_render(const eft__ct_render_in *in, char **out, size_t *out_len, bool *raised,
                          eft__error *err);

/* Internal test hooks on the public handle: a fixed clock for strftime_now, smaller limits. */
struct eft_chat_template;
void eft__chat_template_set_now(struct eft_chat_template *t, const struct tm *now);
void eft__chat_template_set_limits(struct eft_chat_template *t, const eft__ct_limits *limits);

#endif /* EFT_TOKENIZER_CHAT_TEMPLATE_H */
