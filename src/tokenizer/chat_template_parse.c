/*
 * chat_template_parse.c — the lexer and parser of eft's Jinja2 subset. It reproduces jinja2's
 * lexer as transformers configures it (trim_blocks, lstrip_blocks, "-"/"+" whitespace control,
 * newlines normalised and one trailing newline dropped) and builds the syntax tree of
 * chat_template.h. Everything is checked here, at load: an unknown filter, test or tag, or a
 * Jinja2 feature eft does not implement, is an error that names the construct and its line.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/chat_template.h"

/* ---------------------------------------------------------------------------------------------
 * Arena
 * ------------------------------------------------------------------------------------------- */

struct eft__ct_chunk {
    eft__ct_chunk *next;
    size_t size, used;
    max_align_t data[];
};

void *eft__ct_alloc(eft__ct_arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    if (a->limit && (n > a->limit || a->used > a->limit - n)) return NULL;
    eft__ct_chunk *c = a->head;
    if (!c || c->size - c->used < n) {
        size_t size = n > 65536 ? n : 65536;
        c = eft__malloc(sizeof *c + size);
        if (!c) return NULL;
        c->size = size;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    a->used += n;
    memset(p, 0, n);
    return p;
}

void eft__ct_arena_free(eft__ct_arena *a) {
    eft__ct_chunk *c = a->head;
    while (c) {
        eft__ct_chunk *next = c->next;
        eft__free(c);
        c = next;
    }
    a->head = NULL;
    a->used = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Lexer
 * ------------------------------------------------------------------------------------------- */

typedef enum tok_type {
    TK_EOF,
    TK_DATA,
    TK_VAR_BEGIN,
    TK_VAR_END,
    TK_BLOCK_BEGIN,
    TK_BLOCK_END,
    TK_NAME,
    TK_STRING,
    TK_INT,
    TK_FLOAT,
    TK_OP,
} tok_type;

typedef struct token {
    tok_type type;
    int line;
    const char *p; /* DATA, NAME, OP: the text; STRING: decoded bytes */
    size_t n;
    int64_t i;
    double f;
} token;

typedef struct parser {
    eft__ct_arena *arena;
    eft__error *err;
    const char *src; /* normalised source */
    size_t len;
    token *toks;
    size_t ntoks, cap;
    size_t pos;
    int depth;      /* expression and block nesting, against runaway recursion */
    int loop_depth; /* for break/continue */
    bool failed;
} parser;

#define MAX_NESTING 200

static bool fail_at(parser *p, eft_status st, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static bool fail_at(parser *p, eft_status st, int line, const char *fmt, ...) {
    if (p->failed) return false;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    eft__fail(p->err, st, "chat template line %d: %s", line, msg);
    p->failed = true;
    return false;
}

static bool oom(parser *p) {
    if (p->failed) return false;
    eft__fail(p->err, EFT_ERR_OUT_OF_MEMORY, "chat template: out of memory while parsing");
    p->failed = true;
    return false;
}

static bool push_tok(parser *p, tok_type type, int line, const char *s, size_t n) {
    if (p->ntoks == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        token *t = eft__realloc(p->toks, cap * sizeof *t);
        if (!t) return oom(p);
        p->toks = t;
        p->cap = cap;
    }
    token *t = &p->toks[p->ntoks++];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->line = line;
    t->p = s;
    t->n = n;
    return true;
}

/* Python's str.isspace() for the code point at s (len bytes left); returns its byte length or 0. */
static size_t py_space_at(const char *s, size_t len) {
    unsigned char c = (unsigned char)s[0];
    if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
    if (c < 0x80) return 0;
    if (len >= 2 && c == 0xc2 && ((unsigned char)s[1] == 0x85 || (unsigned char)s[1] == 0xa0)) return 2;
    if (len >= 3) {
        unsigned char c1 = (unsigned char)s[1], c2 = (unsigned char)s[2];
        if (c == 0xe1 && c1 == 0x9a && c2 == 0x80) return 3;                  /* U+1680 */
        if (c == 0xe2 && c1 == 0x80 && (c2 <= 0x8a || c2 == 0xa8 || c2 == 0xa9 || c2 == 0xaf))
            return 3;                                                          /* U+2000..200A, 2028, 2029, 202F */
        if (c == 0xe2 && c1 == 0x81 && c2 == 0x9f) return 3;                  /* U+205F */
        if (c == 0xe3 && c1 == 0x80 && c2 == 0x80) return 3;                  /* U+3000 */
    }
    return 0;
}

/* Length of s after Python's rstrip(). */
static size_t py_rstrip_len(const char *s, size_t n) {
    while (n > 0) {
        /* Step back one code point. */
        size_t k = n - 1;
        while (k > 0 && ((unsigned char)s[k] & 0xc0) == 0x80) k--;
        if (!py_space_at(s + k, n - k) || py_space_at(s + k, n - k) != n - k) break;
        n = k;
    }
    return n;
}

/* Bytes of leading Python whitespace in s. */
static size_t py_lspace_len(const char *s, size_t n) {
    size_t i = 0, k;
    while (i < n && (k = py_space_at(s + i, n - i)) > 0) i += k;
    return i;
}

static int count_newlines(const char *s, size_t n) {
    int c = 0;
    for (size_t i = 0; i < n; i++) c += s[i] == '\n';
    return c;
}

static bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

static void put_utf8(char *out, size_t *o, uint32_t cp) {
    if (cp < 0x80) {
        out[(*o)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*o)++] = (char)(0xc0 | (cp >> 6));
        out[(*o)++] = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        out[(*o)++] = (char)(0xe0 | (cp >> 12));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[(*o)++] = (char)(0x80 | (cp & 0x3f));
    } else {
        out[(*o)++] = (char)(0xf0 | (cp >> 18));
        out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[(*o)++] = (char)(0x80 | (cp & 0x3f));
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes a string literal body with Python's unicode-escape rules, as jinja2 does. */
static bool decode_string(parser *p, token *t, const char *s, size_t n) {
    char *out = eft__ct_alloc(p->arena, n + 1);
    if (!out) return oom(p);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) {
            out[o++] = s[i];
            continue;
        }
        char e = s[++i];
        switch (e) {
        case '\n': break; /* line continuation */
        case '\\': out[o++] = '\\'; break;
        case '\'': out[o++] = '\''; break;
        case '"': out[o++] = '"'; break;
        case 'a': out[o++] = '\a'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'v': out[o++] = '\v'; break;
        case 'x': case 'u': case 'U': {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int k = 0; k < digits; k++) {
                int h = i + 1 + k < n ? hexval(s[i + 1 + k]) : -1;
                if (h < 0) return fail_at(p, EFT_ERR_FORMAT, t->line, "truncated \\%c escape in a string", e);
                cp = cp * 16 + (uint32_t)h;
            }
            i += digits;
            if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return fail_at(p, EFT_ERR_UNSUPPORTED, t->line, "string escape \\%c names no valid character", e);
            put_utf8(out, &o, cp);
            break;
        }
        case 'N':
            return fail_at(p, EFT_ERR_UNSUPPORTED, t->line, "\\N{...} escapes in strings are not supported");
        default:
            if (e >= '0' && e <= '7') {
                uint32_t cp = (uint32_t)(e - '0');
                for (int k = 0; k < 2 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7'; k++)
                    cp = cp * 8 + (uint32_t)(s[++i] - '0');
                put_utf8(out, &o, cp);
            } else {
                out[o++] = '\\';
                out[o++] = e;
            }
        }
    }
    t->p = out;
    t->n = o;
    return true;
}

static const char *const k_ops[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]",
                                    "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"};

/* Lexes the inside of a {{ }} or {% %} tag starting at *pos; stops after its end marker. */
static bool lex_tag(parser *p, size_t *pos, int *line, bool block) {
    const char *s = p->src;
    size_t n = p->len, i = *pos;
    char stack[MAX_NESTING];
    int nstack = 0;
    int start_line = *line;
    for (;;) {
        if (i >= n)
            return fail_at(p, EFT_ERR_FORMAT, start_line, "unexpected end of template, expected '%s'",
                           block ? "%}" : "}}");
        char c = s[i];
        /* The end marker counts only where brackets are balanced, as in jinja2. */
        if (nstack == 0) {
            char e = block ? '%' : '}';
            bool minus = c == '-' && i + 2 < n && s[i + 1] == e && s[i + 2] == '}';
            bool plus = block && c == '+' && i + 2 < n && s[i + 1] == e && s[i + 2] == '}';
            if (minus || plus || (c == e && i + 1 < n && s[i + 1] == '}')) {
                if (!push_tok(p, block ? TK_BLOCK_END : TK_VAR_END, *line, s + i, 0)) return false;
                i += (minus || plus) ? 3 : 2;
                if (minus) {
                    size_t k = py_lspace_len(s + i, n - i);
                    *line += count_newlines(s + i, k);
                    i += k;
                } else if (block && !plus && i < n && s[i] == '\n') {
                    (*line)++;
                    i++; /* trim_blocks */
                }
                *pos = i;
                return true;
            }
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            if (c == '\n') (*line)++;
            i++;
            continue;
        }
        if (is_name_start(c)) {
            size_t j = i;
            while (j < n && is_name_char(s[j])) j++;
            if (!push_tok(p, TK_NAME, *line, s + i, j - i)) return false;
            i = j;
            continue;
        }
        if (is_digit(c)) {
            size_t j = i;
            while (j < n && (is_digit(s[j]) || s[j] == '_')) j++;
            bool isfloat = false;
            if (j + 1 < n && s[j] == '.' && is_digit(s[j + 1])) {
                isfloat = true;
                j++;
                while (j < n && (is_digit(s[j]) || s[j] == '_')) j++;
            }
            if (j < n && (s[j] == 'e' || s[j] == 'E')) {
                size_t k = j + 1;
                if (k < n && (s[k] == '+' || s[k] == '-')) k++;
                if (k < n && is_digit(s[k])) {
                    isfloat = true;
                    j = k;
                    while (j < n && is_digit(s[j])) j++;
                }
            }
            char buf[64];
            size_t b = 0;
            for (size_t k = i; k < j && b < sizeof buf - 1; k++)
                if (s[k] != '_') buf[b++] = s[k];
            buf[b] = 0;
            if (j - i >= sizeof buf - 1) return fail_at(p, EFT_ERR_UNSUPPORTED, *line, "number literal too long");
            if (!push_tok(p, isfloat ? TK_FLOAT : TK_INT, *line, s + i, j - i)) return false;
            token *t = &p->toks[p->ntoks - 1];
            if (isfloat) {
                t->f = strtod(buf, NULL);
            } else {
                char *end;
                errno = 0;
                t->i = strtoll(buf, &end, 10);
                if (errno) return fail_at(p, EFT_ERR_UNSUPPORTED, *line, "integer literal %s is out of range", buf);
            }
            i = j;
            continue;
        }
        if (c == '\'' || c == '"') {
            size_t j = i + 1;
            while (j < n && s[j] != c) j += s[j] == '\\' ? 2 : 1;
            if (j >= n) return fail_at(p, EFT_ERR_FORMAT, *line, "unterminated string");
            if (!push_tok(p, TK_STRING, *line, NULL, 0)) return false;
            if (!decode_string(p, &p->toks[p->ntoks - 1], s + i + 1, j - i - 1)) return false;
            *line += count_newlines(s + i, j - i);
            i = j + 1;
            continue;
        }
        size_t k;
        for (k = 0; k < sizeof k_ops / sizeof k_ops[0]; k++) {
            size_t ol = strlen(k_ops[k]);
            if (i + ol <= n && !memcmp(s + i, k_ops[k], ol)) break;
        }
        if (k == sizeof k_ops / sizeof k_ops[0]) {
            unsigned char uc = (unsigned char)c;
            if (uc >= 0x20 && uc < 0x7f)
                return fail_at(p, EFT_ERR_FORMAT, *line, "unexpected character '%c' inside a tag", c);
            return fail_at(p, EFT_ERR_FORMAT, *line, "unexpected character (byte 0x%02x) inside a tag", uc);
        }
        const char *op = k_ops[k];
        size_t ol = strlen(op);
        if (op[0] == '(' || op[0] == '[' || op[0] == '{') {
            if (nstack == MAX_NESTING) return fail_at(p, EFT_ERR_LIMIT, *line, "brackets nested too deeply");
            stack[nstack++] = op[0] == '(' ? ')' : op[0] == '[' ? ']' : '}';
        } else if (op[0] == ')' || op[0] == ']' || op[0] == '}') {
            if (nstack == 0) return fail_at(p, EFT_ERR_FORMAT, *line, "unexpected '%c'", op[0]);
            if (stack[nstack - 1] != op[0])
                return fail_at(p, EFT_ERR_FORMAT, *line, "unexpected '%c', expected '%c'", op[0], stack[nstack - 1]);
            nstack--;
        }
        if (!push_tok(p, TK_OP, *line, s + i, ol)) return false;
        i += ol;
    }
}

static size_t skip_ws(const char *s, size_t n, size_t i) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\f' || s[i] == '\v')) i++;
    return i;
}

/* After "{%" or "{%-" at pos: when this is "raw %}" (or "raw -%}"), the offset just past it;
 * else 0. */
static size_t raw_begin_end(const char *s, size_t n, size_t pos) {
    size_t k = skip_ws(s, n, pos);
    if (!(k + 3 <= n && !memcmp(s + k, "raw", 3))) return 0;
    k = skip_ws(s, n, k + 3);
    if (k + 3 <= n && !memcmp(s + k, "-%}", 3)) return k + 3 + py_lspace_len(s + k + 3, n - k - 3);
    if (k + 2 <= n && !memcmp(s + k, "%}", 2)) return k + 2;
    return 0;
}

/* {% raw %}...{% endraw %}: the text in between is output as is (with the usual whitespace
 * control around the endraw tag). */
static bool lex_raw(parser *p, size_t *pos, size_t body, int *line) {
    const char *s = p->src;
    size_t n = p->len, i = body;
    int start_line = *line;
    *line += count_newlines(s + *pos, body - *pos);
    for (;; i++) {
        if (i + 1 >= n) return fail_at(p, EFT_ERR_FORMAT, start_line, "missing end of raw directive");
        if (s[i] != '{' || s[i + 1] != '%') continue;
        size_t k = i + 2;
        char sign = k < n && (s[k] == '-' || s[k] == '+') ? s[k] : 0;
        if (sign) k++;
        k = skip_ws(s, n, k);
        if (!(k + 6 <= n && !memcmp(s + k, "endraw", 6))) continue;
        k = skip_ws(s, n, k + 6);
        size_t end;
        bool minus = false, plus = false;
        if (k + 3 <= n && !memcmp(s + k, "-%}", 3)) end = k + 3, minus = true;
        else if (k + 3 <= n && !memcmp(s + k, "+%}", 3)) end = k + 3, plus = true;
        else if (k + 2 <= n && !memcmp(s + k, "%}", 2)) end = k + 2;
        else continue;
        size_t text_len = i - body;
        if (sign == '-') {
            text_len = py_rstrip_len(s + body, text_len);
        } else if (sign != '+') {
            size_t l = text_len;
            while (l > 0 && s[body + l - 1] != '\n') l--;
            if (l > 0) {
                size_t m = l;
                while (m < text_len && py_space_at(s + body + m, text_len - m)) m += py_space_at(s + body + m, text_len - m);
                if (m == text_len && m > l) text_len = l;
            }
        }
        if (text_len && !push_tok(p, TK_DATA, *line, s + body, text_len)) return false;
        *line += count_newlines(s + body, end - body);
        if (minus) {
            size_t w = py_lspace_len(s + end, n - end);
            *line += count_newlines(s + end, w);
            end += w;
        } else if (!plus && end < n && s[end] == '\n') {
            (*line)++;
            end++;
        }
        *pos = end;
        return true;
    }
}

static bool lex(parser *p) {
    const char *s = p->src;
    size_t n = p->len, pos = 0;
    int line = 1;
    bool line_starting = true;
    while (pos < n) {
        /* Find the next tag opener. */
        size_t t = pos;
        while (t + 1 < n && !(s[t] == '{' && (s[t + 1] == '{' || s[t + 1] == '%' || s[t + 1] == '#'))) t++;
        if (t + 1 >= n) {
            if (!push_tok(p, TK_DATA, line, s + pos, n - pos)) return false;
            break;
        }
        char kind = s[t + 1];
        char sign = t + 2 < n && (s[t + 2] == '-' || s[t + 2] == '+') ? s[t + 2] : 0;
        size_t text_len = t - pos;
        if (sign == '-') {
            text_len = py_rstrip_len(s + pos, text_len);
        } else if (sign != '+' && kind != '{') {
            /* lstrip_blocks: drop the indentation in front of a block or comment tag that starts
             * its line. */
            size_t l = text_len;
            while (l > 0 && s[pos + l - 1] != '\n') l--;
            if (l > 0 || line_starting) {
                size_t k = l;
                while (k < text_len && py_space_at(s + pos + k, text_len - k)) k += py_space_at(s + pos + k, text_len - k);
                if (k == text_len && k > l) text_len = l;
            }
        }
        if (text_len && !push_tok(p, TK_DATA, line, s + pos, text_len)) return false;
        line += count_newlines(s + pos, t - pos);
        pos = t + 2 + (sign ? 1 : 0);
        if (kind == '#') {
            /* A comment ends at the first "#}". */
            size_t e = pos;
            while (e + 1 < n && !(s[e] == '#' && s[e + 1] == '}')) e++;
            if (e + 1 >= n) return fail_at(p, EFT_ERR_FORMAT, line, "missing end of comment tag");
            bool minus = e > pos && s[e - 1] == '-', plus = e > pos && s[e - 1] == '+';
            line += count_newlines(s + pos, e - pos);
            pos = e + 2;
            if (minus) {
                size_t k = py_lspace_len(s + pos, n - pos);
                line += count_newlines(s + pos, k);
                pos += k;
            } else if (!plus && pos < n && s[pos] == '\n') {
                line++;
                pos++;
            }
            line_starting = s[pos - 1] == '\n';
            continue;
        }
        if (kind == '%') {
            size_t k = raw_begin_end(s, n, pos);
            if (k) {
                if (!lex_raw(p, &pos, k, &line)) return false;
                line_starting = s[pos - 1] == '\n';
                continue;
            }
        }
        if (!push_tok(p, kind == '%' ? TK_BLOCK_BEGIN : TK_VAR_BEGIN, line, s + t, 0)) return false;
        if (!lex_tag(p, &pos, &line, kind == '%')) return false;
        line_starting = s[pos - 1] == '\n';
    }
    return push_tok(p, TK_EOF, line, s + n, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Parser helpers
 * ------------------------------------------------------------------------------------------- */

static token *cur(parser *p) { return &p->toks[p->pos]; }
static token *peek(parser *p, size_t k) {
    return p->pos + k < p->ntoks ? &p->toks[p->pos + k] : &p->toks[p->ntoks - 1];
}
static bool tok_is(const token *t, tok_type type, const char *text) {
    if (t->type != type) return false;
    return !text || (t->n == strlen(text) && !memcmp(t->p, text, t->n));
}
static bool is_op(parser *p, const char *op) { return tok_is(cur(p), TK_OP, op); }
static bool is_name(parser *p, const char *name) { return tok_is(cur(p), TK_NAME, name); }

static const char *describe(const token *t, char *buf, size_t size) {
    switch (t->type) {
    case TK_EOF: return "end of template";
    case TK_DATA: return "template text";
    case TK_VAR_BEGIN: return "'{{'";
    case TK_VAR_END: return "'}}'";
    case TK_BLOCK_BEGIN: return "'{%'";
    case TK_BLOCK_END: return "'%}'";
    case TK_STRING: return "a string";
    case TK_INT: case TK_FLOAT: return "a number";
    default: snprintf(buf, size, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->p); return buf;
    }
}

static bool expect(parser *p, tok_type type, const char *text, const char *what) {
    if (tok_is(cur(p), type, text)) {
        p->pos++;
        return true;
    }
    char buf[64];
    return fail_at(p, EFT_ERR_FORMAT, cur(p)->line, "expected %s, found %s", what, describe(cur(p), buf, sizeof buf));
}

static eft__ct_node *node(parser *p, eft__ct_node_kind kind, int line) {
    eft__ct_node *n = eft__ct_alloc(p->arena, sizeof *n);
    if (!n) {
        oom(p);
        return NULL;
    }
    n->kind = kind;
    n->line = line;
    return n;
}

/* A growable list of child nodes (and keyword names), copied into the arena when done. */
typedef struct nodevec {
    eft__ct_node **v;
    const char **kw;
    int n, cap;
    bool any_kw;
} nodevec;

static bool vec_push(parser *p, nodevec *v, eft__ct_node *x, const char *kw) {
    if (v->n == v->cap) {
        int cap = v->cap ? v->cap * 2 : 4;
        eft__ct_node **nv = eft__ct_alloc(p->arena, (size_t)cap * sizeof *nv);
        const char **nk = eft__ct_alloc(p->arena, (size_t)cap * sizeof *nk);
        if (!nv || !nk) return oom(p);
        if (v->n) {
            memcpy(nv, v->v, (size_t)v->n * sizeof *nv);
            memcpy(nk, v->kw, (size_t)v->n * sizeof *nk);
        }
        v->v = nv;
        v->kw = nk;
        v->cap = cap;
    }
    v->v[v->n] = x;
    v->kw[v->n] = kw;
    v->n++;
    if (kw) v->any_kw = true;
    return true;
}

static void vec_to_node(nodevec *v, eft__ct_node *n) {
    n->args = v->v;
    n->nargs = v->n;
    n->kwnames = v->any_kw ? v->kw : NULL;
}

static const char *name_dup(parser *p, const token *t) {
    char *s = eft__ct_alloc(p->arena, t->n + 1);
    if (!s) {
        oom(p);
        return NULL;
    }
    memcpy(s, t->p, t->n);
    return s;
}

/* ---------------------------------------------------------------------------------------------
 * Expressions
 * ------------------------------------------------------------------------------------------- */

static eft__ct_node *parse_expr(parser *p);
static eft__ct_node *parse_or(parser *p);
static eft__ct_node *parse_unary(parser *p, bool with_filter);
static eft__ct_node *parse_tuple(parser *p, bool with_condexpr);

static bool enter(parser *p) {
    if (++p->depth > MAX_NESTING)
        return fail_at(p, EFT_ERR_LIMIT, cur(p)->line, "expressions or blocks nested more than %d deep", MAX_NESTING);
    return true;
}

static bool parse_call_args(parser *p, nodevec *v) {
    /* The "(" is current. */
    p->pos++;
    while (!is_op(p, ")")) {
        if (v->n && !expect(p, TK_OP, ",", "',' or ')'")) return false;
        if (is_op(p, ")")) break;
        if (is_op(p, "*") || is_op(p, "**"))
            return fail_at(p, EFT_ERR_UNSUPPORTED, cur(p)->line, "*args and **kwargs in calls are not supported");
        const char *kw = NULL;
        if (cur(p)->type == TK_NAME && tok_is(peek(p, 1), TK_OP, "=")) {
            kw = name_dup(p, cur(p));
            p->pos += 2;
        } else if (v->any_kw) {
            return fail_at(p, EFT_ERR_FORMAT, cur(p)->line, "positional argument after a keyword argument");
        }
        eft__ct_node *a = parse_expr(p);
        if (!a || !vec_push(p, v, a, kw)) return false;
    }
    p->pos++;
    return true;
}

static eft__ct_node *parse_primary(parser *p) {
    token *t = cur(p);
    eft__ct_node *n;
    char buf[64];
    switch (t->type) {
    case TK_NAME:
        p->pos++;
        if (tok_is(t, TK_NAME, "true") || tok_is(t, TK_NAME, "True") || tok_is(t, TK_NAME, "false") ||
            tok_is(t, TK_NAME, "False")) {
            if (!(n = node(p, CT_N_CONST, t->line))) return NULL;
            n->val.k = CT_BOOL;
            n->val.b = t->p[0] == 't' || t->p[0] == 'T';
            return n;
        }
        if (tok_is(t, TK_NAME, "none") || tok_is(t, TK_NAME, "None")) {
            if (!(n = node(p, CT_N_CONST, t->line))) return NULL;
            n->val.k = CT_NONE;
            return n;
        }
        if (!(n = node(p, CT_N_NAME, t->line))) return NULL;
        n->str = name_dup(p, t);
        n->len = t->n;
        return n->str ? n : NULL;
    case TK_STRING: {
        /* Adjacent string literals concatenate. */
        size_t total = 0, k = 0;
        while (peek(p, k)->type == TK_STRING) total += peek(p, k++)->n;
        char *s = eft__ct_alloc(p->arena, total + 1);
        if (!s || !(n = node(p, CT_N_CONST, t->line))) {
            oom(p);
            return NULL;
        }
        size_t o = 0;
        while (cur(p)->type == TK_STRING) {
            memcpy(s + o, cur(p)->p, cur(p)->n);
            o += cur(p)->n;
            p->pos++;
        }
        n->val.k = CT_STR;
        n->val.s = s;
        n->val.n = total;
        return n;
    }
    case TK_INT:
    case TK_FLOAT:
        p->pos++;
        if (!(n = node(p, CT_N_CONST, t->line))) return NULL;
        if (t->type == TK_INT) {
            n->val.k = CT_INT;
            n->val.i = t->i;
        } else {
            n->val.k = CT_FLOAT;
            n->val.f = t->f;
        }
        return n;
    case TK_OP:
        if (tok_is(t, TK_OP, "(")) {
            p->pos++;
            if (is_op(p, ")")) {
                p->pos++;
                if (!(n = node(p, CT_N_TUPLE, t->line))) return NULL;
                return n;
            }
            n = parse_tuple(p, true);
            if (!n || !expect(p, TK_OP, ")", "')'")) return NULL;
            return n;
        }
        if (tok_is(t, TK_OP, "[") || tok_is(t, TK_OP, "{")) {
            bool dict = t->p[0] == '{';
            const char *close = dict ? "}" : "]";
            p->pos++;
            nodevec v = {0};
            while (!is_op(p, close)) {
                if (v.n && !expect(p, TK_OP, ",", dict ? "',' or '}'" : "',' or ']'")) return NULL;
                if (is_op(p, close)) break;
                eft__ct_node *x = parse_expr(p);
                if (!x || !vec_push(p, &v, x, NULL)) return NULL;
                if (dict) {
                    if (!expect(p, TK_OP, ":", "':' in a dict literal")) return NULL;
                    if (!(x = parse_expr(p)) || !vec_push(p, &v, x, NULL)) return NULL;
                }
            }
            p->pos++;
            if (!(n = node(p, dict ? CT_N_DICT : CT_N_LIST, t->line))) return NULL;
            vec_to_node(&v, n);
            return n;
        }
        break;
    default:
        break;
    }
    fail_at(p, EFT_ERR_FORMAT, t->line, "expected an expression, found %s", describe(t, buf, sizeof buf));
    return NULL;
}

static eft__ct_node *parse_subscript(parser *p, eft__ct_node *obj) {
    /* "[" is current. */
    int line = cur(p)->line;
    p->pos++;
    eft__ct_node *parts[3] = {NULL, NULL, NULL};
    int k = 0;
    bool slice = false;
    for (;;) {
        if (is_op(p, ":")) {
            slice = true;
            if (++k > 2) {
                fail_at(p, EFT_ERR_FORMAT, line, "too many ':' in a slice");
                return NULL;
            }
            p->pos++;
            continue;
        }
        if (is_op(p, "]")) break;
        if (parts[k]) {
            fail_at(p, EFT_ERR_UNSUPPORTED, line, "tuple subscripts are not supported");
            return NULL;
        }
        if (!(parts[k] = parse_expr(p))) return NULL;
        if (is_op(p, ",")) {
            fail_at(p, EFT_ERR_UNSUPPORTED, line, "tuple subscripts are not supported");
            return NULL;
        }
    }
    p->pos++;
    eft__ct_node *n;
    if (!slice) {
        if (!parts[0]) {
            fail_at(p, EFT_ERR_FORMAT, line, "empty subscript");
            return NULL;
        }
        if (!(n = node(p, CT_N_GETITEM, line))) return NULL;
        n->a = obj;
        n->b = parts[0];
        return n;
    }
    if (!(n = node(p, CT_N_SLICE, line))) return NULL;
    n->a = obj;
    n->args = eft__ct_alloc(p->arena, 3 * sizeof *n->args);
    if (!n->args) {
        oom(p);
        return NULL;
    }
    for (int i = 0; i < 3; i++) n->args[i] = parts[i];
    n->nargs = 3;
    return n;
}

static eft__ct_node *parse_postfix(parser *p, eft__ct_node *n) {
    while (n) {
        int line = cur(p)->line;
        if (is_op(p, ".")) {
            p->pos++;
            token *t = cur(p);
            if (t->type == TK_NAME) {
                eft__ct_node *g = node(p, CT_N_GETATTR, line);
                if (!g) return NULL;
                g->a = n;
                g->str = name_dup(p, t);
                g->len = t->n;
                p->pos++;
                n = g;
            } else if (t->type == TK_INT) {
                eft__ct_node *g = node(p, CT_N_GETITEM, line), *c = node(p, CT_N_CONST, line);
                if (!g || !c) return NULL;
                c->val.k = CT_INT;
                c->val.i = t->i;
                g->a = n;
                g->b = c;
                p->pos++;
                n = g;
            } else {
                char buf[64];
                fail_at(p, EFT_ERR_FORMAT, line, "expected an attribute name after '.', found %s",
                        describe(t, buf, sizeof buf));
                return NULL;
            }
        } else if (is_op(p, "[")) {
            n = parse_subscript(p, n);
        } else if (is_op(p, "(")) {
            eft__ct_node *c = node(p, CT_N_CALL, line);
            if (!c) return NULL;
            nodevec v = {0};
            if (!parse_call_args(p, &v)) return NULL;
            c->a = n;
            vec_to_node(&v, c);
            n = c;
        } else {
            break;
        }
    }
    return n;
}

static eft__ct_node *parse_filter(parser *p, eft__ct_node *operand) {
    /* "|" was consumed. */
    token *t = cur(p);
    if (t->type != TK_NAME) {
        char buf[64];
        fail_at(p, EFT_ERR_FORMAT, t->line, "expected a filter name after '|', found %s", describe(t, buf, sizeof buf));
        return NULL;
    }
    p->pos++;
    if (is_op(p, ".")) {
        fail_at(p, EFT_ERR_UNSUPPORTED, t->line, "unknown filter '%.*s.%.*s'", (int)t->n, t->p,
                (int)peek(p, 1)->n, peek(p, 1)->p);
        return NULL;
    }
    int id = eft__ct_filter_id(t->p, t->n);
    if (id < 0) {
        fail_at(p, EFT_ERR_UNSUPPORTED, t->line, "unknown filter '%.*s'", (int)t->n, t->p);
        return NULL;
    }
    eft__ct_node *f = node(p, CT_N_FILTER, t->line);
    if (!f) return NULL;
    f->a = operand;
    f->id = id;
    f->str = name_dup(p, t);
    if (is_op(p, "(")) {
        nodevec v = {0};
        if (!parse_call_args(p, &v)) return NULL;
        vec_to_node(&v, f);
    }
    return f;
}

static eft__ct_node *parse_test(parser *p, eft__ct_node *operand) {
    /* "is" was consumed. */
    int line = cur(p)->line;
    bool negated = false;
    if (is_name(p, "not")) {
        negated = true;
        p->pos++;
    }
    token *t = cur(p);
    if (t->type != TK_NAME) {
        char buf[64];
        fail_at(p, EFT_ERR_FORMAT, line, "expected a test name after 'is', found %s", describe(t, buf, sizeof buf));
        return NULL;
    }
    p->pos++;
    int id = eft__ct_test_id(t->p, t->n);
    if (id < 0) {
        fail_at(p, EFT_ERR_UNSUPPORTED, t->line, "unknown test '%.*s'", (int)t->n, t->p);
        return NULL;
    }
    eft__ct_node *n = node(p, CT_N_TEST, line);
    if (!n) return NULL;
    n->a = operand;
    n->id = id;
    n->op = negated;
    n->str = name_dup(p, t);
    token *c = cur(p);
    if (is_op(p, "(")) {
        nodevec v = {0};
        if (!parse_call_args(p, &v)) return NULL;
        vec_to_node(&v, n);
    } else if ((c->type == TK_NAME || c->type == TK_STRING || c->type == TK_INT || c->type == TK_FLOAT ||
                tok_is(c, TK_OP, "[") || tok_is(c, TK_OP, "{")) &&
               !tok_is(c, TK_NAME, "else") && !tok_is(c, TK_NAME, "or") && !tok_is(c, TK_NAME, "and")) {
        /* One argument without parentheses: "is divisibleby 3", "is sameas none". */
        if (tok_is(c, TK_NAME, "is")) {
            fail_at(p, EFT_ERR_FORMAT, c->line, "you cannot chain multiple tests with 'is'");
            return NULL;
        }
        eft__ct_node *a = parse_postfix(p, parse_primary(p));
        if (!a) return NULL;
        nodevec v = {0};
        if (!vec_push(p, &v, a, NULL)) return NULL;
        vec_to_node(&v, n);
    }
    return n;
}

static eft__ct_node *parse_filter_expr(parser *p, eft__ct_node *n) {
    while (n) {
        if (is_op(p, "|")) {
            p->pos++;
            n = parse_filter(p, n);
        } else if (is_name(p, "is")) {
            p->pos++;
            n = parse_test(p, n);
        } else if (is_op(p, "(")) {
            n = parse_postfix(p, n);
        } else {
            break;
        }
    }
    return n;
}

static eft__ct_node *parse_unary(parser *p, bool with_filter) {
    if (!enter(p)) return NULL;
    int line = cur(p)->line;
    eft__ct_node *n;
    if (is_op(p, "-") || is_op(p, "+")) {
        char op = cur(p)->p[0];
        p->pos++;
        eft__ct_node *a = parse_unary(p, false);
        if (!a || !(n = node(p, CT_N_UNARY, line))) return NULL;
        n->op = op;
        n->a = a;
    } else {
        n = parse_primary(p);
    }
    n = parse_postfix(p, n);
    if (with_filter) n = parse_filter_expr(p, n);
    p->depth--;
    return n;
}

static eft__ct_node *binary(parser *p, int op, int line, eft__ct_node *a, eft__ct_node *b) {
    if (!a || !b) return NULL;
    eft__ct_node *n = node(p, CT_N_BINARY, line);
    if (!n) return NULL;
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static eft__ct_node *parse_pow(parser *p) {
    eft__ct_node *n = parse_unary(p, true);
    while (n && is_op(p, "**")) {
        int line = cur(p)->line;
        p->pos++;
        n = binary(p, CT_OP_POW, line, n, parse_unary(p, true));
    }
    return n;
}

static eft__ct_node *parse_math2(parser *p) {
    eft__ct_node *n = parse_pow(p);
    for (;;) {
        if (!n) return NULL;
        int op = is_op(p, "*") ? CT_OP_MUL : is_op(p, "/") ? CT_OP_DIV : is_op(p, "//") ? CT_OP_FLOORDIV
               : is_op(p, "%") ? CT_OP_MOD : 0;
        if (!op) return n;
        int line = cur(p)->line;
        p->pos++;
        n = binary(p, op, line, n, parse_pow(p));
    }
}

static eft__ct_node *parse_concat(parser *p) {
    eft__ct_node *n = parse_math2(p);
    while (n && is_op(p, "~")) {
        int line = cur(p)->line;
        p->pos++;
        n = binary(p, CT_OP_CONCAT, line, n, parse_math2(p));
    }
    return n;
}

static eft__ct_node *parse_math1(parser *p) {
    eft__ct_node *n = parse_concat(p);
    for (;;) {
        if (!n) return NULL;
        int op = is_op(p, "+") ? CT_OP_ADD : is_op(p, "-") ? CT_OP_SUB : 0;
        if (!op) return n;
        int line = cur(p)->line;
        p->pos++;
        n = binary(p, op, line, n, parse_concat(p));
    }
}

static eft__ct_node *parse_compare(parser *p) {
    eft__ct_node *n = parse_math1(p), *prev = n, *result = n;
    for (;;) {
        if (!n) return NULL;
        int line = cur(p)->line, op = 0;
        if (is_op(p, "==")) op = CT_OP_EQ;
        else if (is_op(p, "!=")) op = CT_OP_NE;
        else if (is_op(p, "<")) op = CT_OP_LT;
        else if (is_op(p, "<=")) op = CT_OP_LE;
        else if (is_op(p, ">")) op = CT_OP_GT;
        else if (is_op(p, ">=")) op = CT_OP_GE;
        else if (is_name(p, "in")) op = CT_OP_IN;
        else if (is_name(p, "not") && tok_is(peek(p, 1), TK_NAME, "in")) op = CT_OP_NOTIN;
        if (!op) return result;
        p->pos += op == CT_OP_NOTIN ? 2 : 1;
        eft__ct_node *rhs = parse_math1(p);
        eft__ct_node *cmp = binary(p, op, line, prev, rhs);
        if (!cmp) return NULL;
        /* a < b < c means a < b and b < c, as in Python. */
        if (result == prev) {
            result = cmp;
        } else {
            eft__ct_node *and_ = node(p, CT_N_AND, line);
            if (!and_) return NULL;
            and_->a = result;
            and_->b = cmp;
            result = and_;
        }
        prev = rhs;
    }
}

static eft__ct_node *parse_not(parser *p) {
    if (is_name(p, "not")) {
        int line = cur(p)->line;
        p->pos++;
        if (!enter(p)) return NULL;
        eft__ct_node *a = parse_not(p), *n;
        p->depth--;
        if (!a || !(n = node(p, CT_N_UNARY, line))) return NULL;
        n->op = 'n';
        n->a = a;
        return n;
    }
    return parse_compare(p);
}

static eft__ct_node *parse_and(parser *p) {
    eft__ct_node *n = parse_not(p);
    while (n && is_name(p, "and")) {
        eft__ct_node *x = node(p, CT_N_AND, cur(p)->line);
        p->pos++;
        if (!x) return NULL;
        x->a = n;
        if (!(x->b = parse_not(p))) return NULL;
        n = x;
    }
    return n;
}

static eft__ct_node *parse_or(parser *p) {
    eft__ct_node *n = parse_and(p);
    while (n && is_name(p, "or")) {
        eft__ct_node *x = node(p, CT_N_OR, cur(p)->line);
        p->pos++;
        if (!x) return NULL;
        x->a = n;
        if (!(x->b = parse_and(p))) return NULL;
        n = x;
    }
    return n;
}

static eft__ct_node *parse_condexpr(parser *p) {
    eft__ct_node *n = parse_or(p);
    while (n && is_name(p, "if")) {
        eft__ct_node *c = node(p, CT_N_COND, cur(p)->line);
        p->pos++;
        if (!c) return NULL;
        c->a = n;
        if (!(c->b = parse_or(p))) return NULL;
        if (is_name(p, "else")) {
            p->pos++;
            if (!(c->c = parse_condexpr(p))) return NULL;
        }
        n = c;
    }
    return n;
}

static eft__ct_node *parse_expr(parser *p) {
    if (!enter(p)) return NULL;
    eft__ct_node *n = parse_condexpr(p);
    p->depth--;
    return n;
}

/* An expression, or several separated by commas (a tuple). */
static eft__ct_node *parse_tuple(parser *p, bool with_condexpr) {
    int line = cur(p)->line;
    eft__ct_node *first = with_condexpr ? parse_expr(p) : parse_or(p);
    if (!first || !is_op(p, ",")) return first;
    nodevec v = {0};
    if (!vec_push(p, &v, first, NULL)) return NULL;
    while (is_op(p, ",")) {
        p->pos++;
        token *t = cur(p);
        if (t->type == TK_VAR_END || t->type == TK_BLOCK_END || tok_is(t, TK_OP, ")") || tok_is(t, TK_NAME, "in"))
            break;
        eft__ct_node *x = with_condexpr ? parse_expr(p) : parse_or(p);
        if (!x || !vec_push(p, &v, x, NULL)) return NULL;
    }
    eft__ct_node *n = node(p, CT_N_TUPLE, line);
    if (!n) return NULL;
    vec_to_node(&v, n);
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * Statements
 * ------------------------------------------------------------------------------------------- */

static eft__ct_node *parse_body(parser *p, const char *const *ends, const char *tag, int tag_line);

static bool block_end(parser *p) { return expect(p, TK_BLOCK_END, NULL, "'%}'"); }

/* Targets of for/set: one name or several separated by commas. */
static bool parse_targets(parser *p, eft__ct_node *n) {
    nodevec v = {0};
    bool paren = is_op(p, "(");
    if (paren) p->pos++;
    do {
        if (v.n) p->pos++;
        token *t = cur(p);
        if (t->type != TK_NAME) {
            char buf[64];
            return fail_at(p, EFT_ERR_FORMAT, t->line, "expected a variable name, found %s", describe(t, buf, sizeof buf));
        }
        eft__ct_node *x = node(p, CT_N_NAME, t->line);
        if (!x || !(x->str = name_dup(p, t))) return false;
        x->len = t->n;
        p->pos++;
        if (!vec_push(p, &v, x, NULL)) return false;
    } while (is_op(p, ","));
    if (paren && !expect(p, TK_OP, ")", "')'")) return false;
    vec_to_node(&v, n);
    return true;
}

static eft__ct_node *parse_if(parser *p, int line) {
    eft__ct_node *n = node(p, CT_N_IF, line);
    if (!n || !(n->a = parse_tuple(p, false)) || !block_end(p)) return NULL;
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    if (!(n->b = parse_body(p, ends, "if", line))) return NULL;
    token *t = cur(p);
    p->pos++;
    if (tok_is(t, TK_NAME, "elif")) {
        if (!(n->c = parse_if(p, t->line))) return NULL;
        return n;
    }
    if (tok_is(t, TK_NAME, "else")) {
        static const char *const ends2[] = {"endif", NULL};
        if (!block_end(p) || !(n->c = parse_body(p, ends2, "if", line))) return NULL;
        p->pos++;
    }
    return block_end(p) ? n : NULL;
}

static eft__ct_node *parse_for(parser *p, int line) {
    eft__ct_node *n = node(p, CT_N_FOR, line);
    if (!n || !parse_targets(p, n) || !expect(p, TK_NAME, "in", "'in' in a for loop")) return NULL;
    if (!(n->a = parse_tuple(p, false))) return NULL;
    if (is_name(p, "if")) {
        p->pos++;
        if (!(n->d = parse_expr(p))) return NULL;
    }
    if (is_name(p, "recursive")) {
        fail_at(p, EFT_ERR_UNSUPPORTED, line, "recursive for loops are not supported");
        return NULL;
    }
    if (!block_end(p)) return NULL;
    static const char *const ends[] = {"else", "endfor", NULL};
    p->loop_depth++;
    n->b = parse_body(p, ends, "for", line);
    p->loop_depth--;
    if (!n->b) return NULL;
    if (is_name(p, "else")) {
        p->pos++;
        static const char *const ends2[] = {"endfor", NULL};
        /* break/continue in a for's else belong to an outer loop. */
        if (!block_end(p) || !(n->c = parse_body(p, ends2, "for", line))) return NULL;
    }
    p->pos++;
    return block_end(p) ? n : NULL;
}

static eft__ct_node *parse_set(parser *p, int line) {
    token *t = cur(p);
    if (t->type == TK_NAME && tok_is(peek(p, 1), TK_OP, ".") && peek(p, 2)->type == TK_NAME) {
        /* set ns.attr = value */
        eft__ct_node *n = node(p, CT_N_SET, line), *r = node(p, CT_N_NSREF, line);
        if (!n || !r) return NULL;
        r->str = name_dup(p, t);
        r->str2 = name_dup(p, peek(p, 2));
        p->pos += 3;
        n->a = r;
        if (!expect(p, TK_OP, "=", "'=' after a set target") || !(n->b = parse_tuple(p, true))) return NULL;
        return block_end(p) ? n : NULL;
    }
    eft__ct_node *n = node(p, CT_N_SET, line);
    if (!n || !parse_targets(p, n)) return NULL;
    if (is_op(p, "=")) {
        p->pos++;
        if (!(n->b = parse_tuple(p, true))) return NULL;
        return block_end(p) ? n : NULL;
    }
    if (n->nargs != 1) {
        fail_at(p, EFT_ERR_FORMAT, line, "a block set takes exactly one variable name");
        return NULL;
    }
    if (is_op(p, "|")) {
        fail_at(p, EFT_ERR_UNSUPPORTED, line, "filters on a block set are not supported");
        return NULL;
    }
    if (!block_end(p)) return NULL;
    n->kind = CT_N_SETBLOCK;
    n->str = n->args[0]->str;
    static const char *const ends[] = {"endset", NULL};
    if (!(n->b = parse_body(p, ends, "set", line))) return NULL;
    p->pos++;
    return block_end(p) ? n : NULL;
}

static eft__ct_node *parse_macro(parser *p, int line) {
    token *t = cur(p);
    if (t->type != TK_NAME) {
        fail_at(p, EFT_ERR_FORMAT, line, "expected a macro name");
        return NULL;
    }
    eft__ct_node *n = node(p, CT_N_MACRO, line);
    if (!n || !(n->str = name_dup(p, t))) return NULL;
    p->pos++;
    if (!is_op(p, "(")) {
        fail_at(p, EFT_ERR_FORMAT, line, "expected '(' after the macro name");
        return NULL;
    }
    p->pos++;
    nodevec v = {0};
    while (!is_op(p, ")")) {
        if (v.n && !expect(p, TK_OP, ",", "',' or ')'")) return NULL;
        if (is_op(p, ")")) break;
        token *a = cur(p);
        if (a->type != TK_NAME) {
            fail_at(p, EFT_ERR_FORMAT, a->line, "expected a parameter name in macro '%s'", n->str);
            return NULL;
        }
        eft__ct_node *x = node(p, CT_N_NAME, a->line);
        if (!x || !(x->str = name_dup(p, a))) return NULL;
        x->len = a->n;
        p->pos++;
        if (is_op(p, "=")) {
            p->pos++;
            if (!(x->a = parse_expr(p))) return NULL;
        } else if (v.n && v.v[v.n - 1]->a) {
            fail_at(p, EFT_ERR_FORMAT, a->line, "parameter without a default follows one with a default");
            return NULL;
        }
        if (!vec_push(p, &v, x, NULL)) return NULL;
    }
    p->pos++;
    vec_to_node(&v, n);
    if (!block_end(p)) return NULL;
    static const char *const ends[] = {"endmacro", NULL};
    int saved = p->loop_depth;
    p->loop_depth = 0;
    n->b = parse_body(p, ends, "macro", line);
    p->loop_depth = saved;
    if (!n->b) return NULL;
    p->pos++;
    if (cur(p)->type == TK_NAME) p->pos++; /* {% endmacro name %} */
    return block_end(p) ? n : NULL;
}

static eft__ct_node *parse_filter_block(parser *p, int line) {
    eft__ct_node *n = node(p, CT_N_FILTERBLOCK, line);
    if (!n || !(n->a = parse_filter(p, NULL))) return NULL;
    if (is_op(p, "|")) {
        fail_at(p, EFT_ERR_UNSUPPORTED, line, "chained filters on a filter block are not supported");
        return NULL;
    }
    if (!block_end(p)) return NULL;
    static const char *const ends[] = {"endfilter", NULL};
    if (!(n->b = parse_body(p, ends, "filter", line))) return NULL;
    p->pos++;
    return block_end(p) ? n : NULL;
}

static eft__ct_node *parse_statement(parser *p) {
    token *t = cur(p);
    int line = t->line;
    if (t->type != TK_NAME) {
        fail_at(p, EFT_ERR_FORMAT, line, "expected a tag name after '{%%'");
        return NULL;
    }
    p->pos++;
    if (tok_is(t, TK_NAME, "if")) return parse_if(p, line);
    if (tok_is(t, TK_NAME, "for")) return parse_for(p, line);
    if (tok_is(t, TK_NAME, "set")) return parse_set(p, line);
    if (tok_is(t, TK_NAME, "macro")) return parse_macro(p, line);
    if (tok_is(t, TK_NAME, "filter")) return parse_filter_block(p, line);
    if (tok_is(t, TK_NAME, "break") || tok_is(t, TK_NAME, "continue")) {
        if (!p->loop_depth) {
            fail_at(p, EFT_ERR_FORMAT, line, "'%.*s' outside of a for loop", (int)t->n, t->p);
            return NULL;
        }
        eft__ct_node *n = node(p, t->p[0] == 'b' ? CT_N_BREAK : CT_N_CONTINUE, line);
        return n && block_end(p) ? n : NULL;
    }
    if (tok_is(t, TK_NAME, "generation")) {
        /* transformers' AssistantTracker: renders its body unchanged. */
        static const char *const ends[] = {"endgeneration", NULL};
        if (!block_end(p)) return NULL;
        eft__ct_node *n = parse_body(p, ends, "generation", line);
        if (!n) return NULL;
        p->pos++;
        return block_end(p) ? n : NULL;
    }
    static const char *const known_unsupported[] = {"include", "import", "from", "extends", "block", "call",
                                                    "with", "do", "autoescape", "trans", NULL};
    for (int i = 0; known_unsupported[i]; i++)
        if (tok_is(t, TK_NAME, known_unsupported[i])) {
            fail_at(p, EFT_ERR_UNSUPPORTED, line, "the '%s' tag is not supported", known_unsupported[i]);
            return NULL;
        }
    fail_at(p, EFT_ERR_UNSUPPORTED, line, "unknown tag '%.*s'", (int)t->n, t->p);
    return NULL;
}

/* Parses statements until "{% <one of ends>" (left current, on the end name) or, with ends NULL,
 * the end of the template. */
static eft__ct_node *parse_body(parser *p, const char *const *ends, const char *tag, int tag_line) {
    if (!enter(p)) return NULL;
    eft__ct_node *blk = node(p, CT_N_BLOCK, cur(p)->line);
    if (!blk) return NULL;
    nodevec v = {0};
    for (;;) {
        token *t = cur(p);
        eft__ct_node *n = NULL;
        if (t->type == TK_EOF) {
            if (ends) {
                fail_at(p, EFT_ERR_FORMAT, tag_line, "'%s' tag is never closed (expected '{%% %s %%}')", tag,
                        ends[0] && !ends[1] ? ends[0] : "end" );
                return NULL;
            }
            break;
        }
        if (t->type == TK_DATA) {
            if (!(n = node(p, CT_N_TEXT, t->line))) return NULL;
            n->str = t->p;
            n->len = t->n;
            p->pos++;
        } else if (t->type == TK_VAR_BEGIN) {
            p->pos++;
            if (!(n = node(p, CT_N_OUTPUT, t->line)) || !(n->a = parse_tuple(p, true))) return NULL;
            if (!expect(p, TK_VAR_END, NULL, "'}}'")) return NULL;
        } else if (t->type == TK_BLOCK_BEGIN) {
            token *name = peek(p, 1);
            if (ends && name->type == TK_NAME)
                for (int i = 0; ends[i]; i++)
                    if (tok_is(name, TK_NAME, ends[i])) {
                        p->pos++;
                        vec_to_node(&v, blk);
                        p->depth--;
                        return blk;
                    }
            if (name->type == TK_NAME && name->n > 3 && !memcmp(name->p, "end", 3)) {
                fail_at(p, EFT_ERR_FORMAT, name->line, "unexpected '%.*s'%s%s%s", (int)name->n, name->p,
                        ends ? " inside '" : "", ends ? tag : "", ends ? "'" : "");
                return NULL;
            }
            if ((tok_is(name, TK_NAME, "else") || tok_is(name, TK_NAME, "elif"))) {
                fail_at(p, EFT_ERR_FORMAT, name->line, "unexpected '%.*s'", (int)name->n, name->p);
                return NULL;
            }
            p->pos++;
            if (!(n = parse_statement(p))) return NULL;
        } else {
            char buf[64];
            fail_at(p, EFT_ERR_FORMAT, t->line, "unexpected %s", describe(t, buf, sizeof buf));
            return NULL;
        }
        if (!vec_push(p, &v, n, NULL)) return NULL;
    }
    vec_to_node(&v, blk);
    p->depth--;
    return blk;
}

/* Checks UTF-8 (jinja2 works on Python str, so a template is text). */
static bool valid_utf8(const char *s, size_t n, size_t *bad) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (!k || i + k > n || (k == 2 && c < 0xc2)) goto fail;
        uint32_t cp = k == 1 ? c : k == 2 ? c & 0x1f : k == 3 ? c & 0x0f : c & 0x07;
        for (size_t j = 1; j < k; j++) {
            if (((unsigned char)s[i + j] & 0xc0) != 0x80) goto fail;
            cp = cp << 6 | ((unsigned char)s[i + j] & 0x3f);
        }
        if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
            goto fail;
        i += k;
    }
    return true;
fail:
    *bad = i;
    return false;
}

eft_status eft__ct_parse(const char *src, size_t len, eft__ct_arena *arena, eft__ct_node **root,
                         eft__error *err) {
    *root = NULL;
    size_t bad;
    if (!valid_utf8(src, len, &bad))
        return eft__fail(err, EFT_ERR_FORMAT, "chat template: invalid UTF-8 at byte %zu", bad);
    /* Newlines: \r\n and \r become \n, and one trailing newline is dropped (jinja2's
     * keep_trailing_newline=False). */
    char *norm = eft__ct_alloc(arena, len + 1);
    if (!norm) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "chat template: out of memory");
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            norm[o++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            norm[o++] = src[i];
        }
    }
    if (o && norm[o - 1] == '\n') o--;
    parser p = {.arena = arena, .err = err, .src = norm, .len = o};
    eft_status st = EFT_OK;
    if (!lex(&p)) {
        st = err ? err->status : EFT_ERR_FORMAT;
        goto done;
    }
    eft__ct_node *r = parse_body(&p, NULL, NULL, 0);
    if (!r) {
        st = err && err->status ? err->status : EFT_ERR_FORMAT;
        goto done;
    }
    *root = r;
done:
    eft__free(p.toks);
    return st;
}
