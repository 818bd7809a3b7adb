/*
 * chat_template_internal.h — helpers shared by the evaluator (chat_template_eval.c) and the value
 * functions (chat_template_value.c): an output buffer with a size cap, Python's str()/repr() of
 * values, equality and ordering, dict access, UTF-8 code points, and json.dumps.
 */
#ifndef EFT_TOKENIZER_CHAT_TEMPLATE_INTERNAL_H
#define EFT_TOKENIZER_CHAT_TEMPLATE_INTERNAL_H

#include "tokenizer/chat_template.h"

/* A growable NUL-terminated buffer; once a put fails (out of memory or over limit) every later
 * put is ignored and failed stays set. */
typedef struct eft__ct_buf {
    char *p;
    size_t n, cap;
    size_t limit; /* 0: none */
    bool failed, over_limit;
} eft__ct_buf;

bool eft__ct_buf_put(eft__ct_buf *b, const char *s, size_t n);
bool eft__ct_buf_puts(eft__ct_buf *b, const char *s);
void eft__ct_buf_free(eft__ct_buf *b);

uint32_t eft__ct_utf8_next(const char *s, size_t n, size_t *i);
size_t eft__ct_utf8_put(char *out, uint32_t cp); /* writes 1..4 bytes */
size_t eft__ct_utf8_len(const char *s, size_t n); /* code points */
bool eft__ct_py_isspace(uint32_t cp);

void eft__ct_float_repr(double f, char *out, size_t size);
void eft__ct_str(eft__ct_buf *b, eft__ct_val v);  /* Python str(); Undefined prints nothing */
void eft__ct_repr(eft__ct_buf *b, eft__ct_val v); /* Python repr() */
const char *eft__ct_type_name(eft__ct_val v);     /* "str", "dict", "NoneType", ... */

bool eft__ct_equal(eft__ct_val a, eft__ct_val b);
bool eft__ct_compare(eft__ct_val a, eft__ct_val b, int *out);

const eft__ct_val *eft__ct_dict_get(const eft__ct_dict *d, eft__ct_val key);
const eft__ct_val *eft__ct_dict_get_str(const eft__ct_dict *d, const char *key, size_t len);
bool eft__ct_dict_set(eft__ct_arena *a, eft__ct_dict *d, eft__ct_val key, eft__ct_val val);

typedef struct eft__ct_json_opts {
    const char *indent; /* NULL: one line */
    size_t indent_len;
    const char *item_sep, *key_sep;
    size_t item_sep_len, key_sep_len;
    bool sort_keys;
    bool ensure_ascii; /* non-ASCII as \uXXXX escapes (surrogate pairs above U+FFFF) */
} eft__ct_json_opts;

/* NULL on success, else what JSON cannot hold (a type name). */
const char *eft__ct_json(eft__ct_buf *b, eft__ct_val v, const eft__ct_json_opts *o, int level);

#endif /* EFT_TOKENIZER_CHAT_TEMPLATE_INTERNAL_H */
