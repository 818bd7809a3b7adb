/*
 * fuzz_tokenizer_json.c — tokenizer.json loading from arbitrary bytes. Whatever the document, the
 * loader must either refuse it with a message or give a tokenizer that then encodes, decodes and
 * stream-decodes sample texts (and the input itself) without crashing. The document is also
 * loaded without the vocabulary scanner (tokenizer_json.c): both ways must agree on the status,
 * the message, every token and the ids of the sample texts, or the target traps.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "eft.h"
#include "tokenizer/tokenizer.h"

static void exercise(const eft_tokenizer *t, const char *text, size_t len) {
    eft_encode_params p = eft_encode_params_default();
    p.max_length = 64;
    eft_encoding *e = NULL;
    if (eft_tokenizer_encode(t, text, len, "pair text", 9, &p, &e)) return;
    char *out = NULL;
    if (!eft_tokenizer_decode(t, eft_encoding_ids(e), eft_encoding_len(e), false, &out, NULL)) eft_free(out);
    eft_detokenizer *d = NULL;
    if (!eft_detokenizer_open(t, true, &d)) {
        const char *s;
        size_t n;
        for (size_t i = 0; i < eft_encoding_len(e); i++) eft_detokenizer_push(d, eft_encoding_ids(e)[i], &s, &n);
        eft_detokenizer_finish(d, &s, &n);
        eft_detokenizer_close(d);
    }
    /* ids the vocabulary does not have are skipped, never trusted */
    int32_t odd[] = {-1, 0, 1, 2, 3, 255, 1 << 20, INT32_MAX};
    if (!eft_tokenizer_decode(t, odd, 8, false, &out, NULL)) eft_free(out);
    eft_encoding_free(e);
}

static void same_ids(const eft_tokenizer *a, const eft_tokenizer *b, const char *text, size_t len) {
    eft_encoding *ea = NULL, *eb = NULL;
    eft_status sa = eft_tokenizer_encode(a, text, len, NULL, 0, NULL, &ea);
    eft_status sb = eft_tokenizer_encode(b, text, len, NULL, 0, NULL, &eb);
    if (sa != sb) __builtin_trap();
    if (!sa && (eft_encoding_len(ea) != eft_encoding_len(eb) ||
                memcmp(eft_encoding_ids(ea), eft_encoding_ids(eb), eft_encoding_len(ea) * sizeof(int32_t))))
        __builtin_trap();
    eft_encoding_free(ea);
    eft_encoding_free(eb);
}

/* The jansson path must give the same answer as the scanner's. */
static void compare_paths(const eft_tokenizer *t, eft_status st, const char *msg, const uint8_t *data, size_t size) {
    eft_tokenizer *s = NULL;
    eft__tokenizer_json_scan = false;
    eft_status st2 = eft_tokenizer_open_json((const char *)data, size, &s);
    eft__tokenizer_json_scan = true;
    if (st != st2 || (st && strcmp(msg, eft_last_error()))) {
        fprintf(stderr, "scanner: %d %s\njansson: %d %s\n", st, msg, st2, st2 ? eft_last_error() : "");
        __builtin_trap();
    }
    if (st) return;
    size_t n = eft_tokenizer_vocab_size(t);
    if (n != eft_tokenizer_vocab_size(s)) __builtin_trap();
    for (size_t id = 0; id < n; id++) {
        size_t la = 0, lb = 0;
        const char *a = eft_tokenizer_id_to_token(t, (int32_t)id, &la), *b = eft_tokenizer_id_to_token(s, (int32_t)id, &lb);
        if (!a != !b || (a && (la != lb || memcmp(a, b, la)))) __builtin_trap();
        if (a && eft_tokenizer_token_to_id(t, a, la) != eft_tokenizer_token_to_id(s, b, lb)) __builtin_trap();
    }
    same_ids(t, s, "Hello world! It's 3pm.", 22);
    same_ids(t, s, (const char *)data, size > 256 ? 256 : size);
    eft_tokenizer_close(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    eft_tokenizer *t = NULL;
    eft_status st = eft_tokenizer_open_json((const char *)data, size, &t);
    static char msg[1024];
    snprintf(msg, sizeof msg, "%s", st ? eft_last_error() : "");
    compare_paths(t, st, msg, data, size);
    if (st) return 0;
    static const char *texts[] = {"Hello world! It's 3pm.", "  日本語 👍🏽 e\xcc\x81 \xff\xfe tabs\t\n", ""};
    for (int i = 0; i < 3; i++) exercise(t, texts[i], strlen(texts[i]));
    exercise(t, (const char *)data, size > 512 ? 512 : size);
    eft_tokenizer_close(t);
    return 0;
}
