/*
 * fuzz_tokenizer_encode.c — encoding arbitrary bytes with fixed real tokenizers (the fixture
 * models: WordPiece, byte-level BPE, SentencePiece BPE with byte fallback, Unigram). Byte 0
 * picks the tokenizer, byte 1 the options; the rest is the text (split at the first 0xFF 0xFF
 * into a pair). Besides not crashing, streaming decode must add up to the full decode.
 */
#define _GNU_SOURCE /* memmem */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eft.h"

static const char *MODELS[] = {"bert", "gpt2", "llama", "xlm-roberta", "qwen2", "gemma3", "roberta", "mistral"};
#define N_MODELS (sizeof MODELS / sizeof *MODELS)
static eft_tokenizer *g_tok[N_MODELS];

static eft_tokenizer *get(size_t i) {
    if (!g_tok[i]) {
        char path[4096];
        snprintf(path, sizeof path, "%s/tests/fixtures/models/%s/tokenizer.json", EFT_SOURCE_DIR, MODELS[i]);
        if (eft_tokenizer_open(path, &g_tok[i])) {
            fprintf(stderr, "cannot open %s: %s\n", path, eft_last_error());
            abort();
        }
    }
    return g_tok[i];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    eft_tokenizer *t = get(data[0] % N_MODELS);
    uint8_t opt = data[1];
    const char *text = (const char *)data + 2;
    size_t len = size - 2;
    const char *pair = NULL;
    size_t pair_len = 0;
    const uint8_t *sep = memmem(text, len, "\xff\xff", 2);
    if (sep && (opt & 1)) {
        pair = (const char *)sep + 2;
        pair_len = len - (size_t)(pair - text);
        len = (size_t)((const char *)sep - text);
    }
    eft_encode_params p = eft_encode_params_default();
    p.add_special_tokens = opt & 2;
    if (opt & 4) p.max_length = (opt >> 4) + 1;
    p.truncation = (eft_truncation_strategy)((opt >> 3) % 3);
    if (opt & 128) p.pad_to_multiple_of = 8;
    eft_encoding *e = NULL;
    if (eft_tokenizer_encode(t, text, len, pair, pair_len, &p, &e)) return 0;
    const int32_t *ids = eft_encoding_ids(e);
    size_t n = eft_encoding_len(e);
    bool skip = opt & 64;
    char *full = NULL;
    size_t full_len = 0;
    if (eft_tokenizer_decode(t, ids, n, skip, &full, &full_len)) abort();
    eft_detokenizer *d = NULL;
    if (eft_detokenizer_open(t, skip, &d)) abort();
    char *acc = malloc(full_len + 1);
    size_t at = 0;
    for (size_t i = 0; i <= n; i++) {
        const char *s;
        size_t sl;
        if ((i < n ? eft_detokenizer_push(d, ids[i], &s, &sl) : eft_detokenizer_finish(d, &s, &sl))) abort();
        if (at + sl > full_len) {
            fprintf(stderr, "streaming decode longer than the full decode\n");
            abort();
        }
        memcpy(acc + at, s, sl);
        at += sl;
    }
    if (at != full_len || memcmp(acc, full, at)) {
        fprintf(stderr, "streaming decode differs from the full decode\n");
        abort();
    }
    free(acc);
    eft_detokenizer_close(d);
    eft_free(full);
    eft_encoding_free(e);
    return 0;
}
