/*
 * fuzz_tokenizer_json.c — tokenizer.json loading from arbitrary bytes. Whatever the document, the
 * loader must either refuse it with a message or give a tokenizer that then encodes, decodes and
 * stream-decodes sample texts (and the input itself) without crashing.
 */
#include <stdint.h>
#include <string.h>

#include "eft.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    eft_tokenizer *t = NULL;
    if (eft_tokenizer_open_json((const char *)data, size, &t)) return 0;
    static const char *texts[] = {"Hello world! It's 3pm.", "  日本語 👍🏽 e\xcc\x81 \xff\xfe tabs\t\n", ""};
    for (int i = 0; i < 3; i++) exercise(t, texts[i], strlen(texts[i]));
    exercise(t, (const char *)data, size > 512 ? 512 : size);
    eft_tokenizer_close(t);
    return 0;
}
