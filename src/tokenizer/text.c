/*
 * text.c — the tokenizer's text plumbing: aligned strings (eft__nstr), piece lists, UTF-8
 * helpers, the Unicode predicates Hugging Face uses (Rust's char::is_whitespace, BERT
 * punctuation), and PCRE2 regexes whose memory goes through eft's allocation hook.
 */
#include <pthread.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tokenizer.h"

/* ---------------------------------------------------------------------------------------------
 * Aligned strings and pieces
 * ------------------------------------------------------------------------------------------- */

bool eft__nstr_reserve(eft__nstr *n, size_t extra) {
    /* s is allocated even for nothing, so s + offset is never arithmetic on NULL */
    if (n->len + extra <= n->cap && n->s) return true;
    size_t cap = n->cap ? n->cap : 64;
    while (cap < n->len + extra) {
        if (cap > SIZE_MAX / 4) return false;
        cap *= 2;
    }
    char *s = eft__realloc(n->s, cap);
    if (!s) return false;
    n->s = s;
    eft__span *al = eft__realloc(n->al, cap * sizeof *al);
    if (!al) return false;
    n->al = al;
    n->cap = cap;
    return true;
}

bool eft__nstr_push(eft__nstr *n, const char *s, size_t len, eft__span sp) {
    if (!eft__nstr_reserve(n, len)) return false;
    if (!len) return true;
    memcpy(n->s + n->len, s, len);
    for (size_t i = 0; i < len; i++) n->al[n->len + i] = sp;
    n->len += len;
    return true;
}

void eft__nstr_free(eft__nstr *n) {
    eft__free(n->s);
    eft__free(n->al);
    memset(n, 0, sizeof *n);
}

bool eft__pieces_add(eft__pieces *ps, uint32_t off, uint32_t len, int32_t id) {
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 16;
        eft__piece *p = eft__realloc(ps->p, cap * sizeof *p);
        if (!p) return false;
        ps->p = p;
        ps->cap = cap;
    }
    ps->p[ps->n++] = (eft__piece){off, len, id};
    return true;
}

void eft__pieces_free(eft__pieces *ps) {
    eft__nstr_free(&ps->text);
    eft__free(ps->p);
    memset(ps, 0, sizeof *ps);
}

/* ---------------------------------------------------------------------------------------------
 * UTF-8 and Unicode predicates
 * ------------------------------------------------------------------------------------------- */

int eft__utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if (c >= 0xF0) return 4;
    if (c >= 0xE0) return 3;
    if (c >= 0xC0) return 2;
    return 1; /* a stray continuation byte: callers only see valid text */
}

int32_t eft__utf8_decode(const char *s, size_t n, int *len) {
    utf8proc_int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &c);
    if (k <= 0) {
        *len = 1;
        return -1;
    }
    *len = (int)k;
    return c;
}

int eft__utf8_encode(int32_t c, char *out) {
    return (int)utf8proc_encode_char(c, (utf8proc_uint8_t *)out);
}

bool eft__is_whitespace(int32_t c) {
    switch (c) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0:
    case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
        return true;
    default:
        return c >= 0x2000 && c <= 0x200A;
    }
}

bool eft__is_punctuation(int32_t c) {
    if (c < 0x80) return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
                         (c >= 123 && c <= 126);
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE: case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
        return true;
    default:
        return false;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Regexes. Hugging Face compiles its patterns with Oniguruma; the patterns tokenizers ship
 * (GPT-2, Llama 3, Qwen) mean the same in PCRE2 with UTF + UCP.
 * ------------------------------------------------------------------------------------------- */

static void *pcre_alloc(size_t n, void *ud) {
    (void)ud;
    return eft__malloc(n);
}
static void pcre_free(void *p, void *ud) {
    (void)ud;
    eft__free(p);
}

/* One context for the process, created once: the server's loader and request threads reach for it
 * at the same time, and the unguarded check-then-create it replaced raced (LeakSanitizer caught the
 * losing context in the ASan soak test). */
static pcre2_general_context *g_pcre_ctx;
static pthread_once_t g_pcre_once = PTHREAD_ONCE_INIT;
static void pcre_ctx_create(void) { g_pcre_ctx = pcre2_general_context_create(pcre_alloc, pcre_free, NULL); }

pcre2_general_context *eft__pcre2_context(void) {
    pthread_once(&g_pcre_once, pcre_ctx_create);
    return g_pcre_ctx;
}

eft_status eft__regex_compile(eft__regex *re, const char *pattern, size_t len, eft__error *err) {
    int code;
    PCRE2_SIZE at;
    pcre2_compile_context *cc = pcre2_compile_context_create(eft__pcre2_context());
    if (!cc) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory compiling a regex");
    re->code = pcre2_compile((PCRE2_SPTR)pattern, len, PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK,
                             &code, &at, cc);
    pcre2_compile_context_free(cc);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "regex /%.*s/ does not compile at offset %zu: %s",
                         (int)(len > 200 ? 200 : len), pattern, (size_t)at, (const char *)msg);
    }
    /* JIT makes the pre-tokenizer regexes several times faster; without it PCRE2 interprets. */
    (void)pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
    return EFT_OK;
}

void eft__regex_free(eft__regex *re) {
    if (re->code) pcre2_code_free(re->code);
    re->code = NULL;
}

pcre2_match_data *eft__regex_match_data(const eft__regex *re) {
    (void)re;
    return pcre2_match_data_create(4, eft__pcre2_context());
}

bool eft__regex_next(const eft__regex *re, pcre2_match_data *md, const char *s, size_t len,
                     size_t start, size_t *mstart, size_t *mend) {
    /* Empty matches are allowed; the caller advances past them. */
    int rc = pcre2_match(re->code, (PCRE2_SPTR)s, len, start, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc < 0) return false;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *mstart = ov[0];
    *mend = ov[1];
    return true;
}
