/*
 * fuzz_tokenizer_gguf.c — the GGUF vocabulary reader (tokenizer_gguf.c) on hostile vocabularies.
 * Random bytes almost never make a GGUF file with a tokenizer in it, so the input describes one
 * and the harness writes the file in memory:
 *   byte 0: bits 0-1 the kind (llama, llama as Gemma 3, llama as Phi-3, gpt2), bit 2 merges
 *           present, bit 3 scores present, bit 4 add_bos_token, bit 5 add_eos_token, bits 6-7
 *           which of bos/eos/unknown/padding ids are set;
 *   byte 1: seed of the token types (normal, unknown, control, user-defined, unused, byte);
 *   then the tokens, separated by 0x00, up to a 0x00 0x00, after which comes a text to encode.
 * The merges, when present, are every split of a token into two tokens. Whatever loads
 * must encode the text and a few fixed ones, and decode back (full and streamed, which must
 * agree) without straying outside any buffer.
 */
#define _GNU_SOURCE /* memmem */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eft.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { T_U32 = 4, T_I32 = 5, T_F32 = 6, T_BOOL = 7, T_STRING = 8, T_ARRAY = 9 };
enum { MAX_TOKENS = 4096 };

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} buf;

static void put(buf *b, const void *x, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2 + 256;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, x, n);
    b->n += n;
}
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(buf *b, const void *s, size_t n) {
    put_u64(b, n);
    put(b, s, n);
}
static void key(buf *b, const char *k, uint32_t type) {
    put_str(b, k, strlen(k));
    put_u32(b, type);
}

static uint32_t hash(const uint8_t *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
    return h;
}

/* Is s[0, n) one of the tokens (set: open addressing over token indices)? */
static bool has(const uint32_t *set, size_t cap, const uint8_t *const *tok, const size_t *tlen, const uint8_t *s,
                size_t n) {
    for (size_t h = hash(s, n) & (cap - 1); set[h] != UINT32_MAX; h = (h + 1) & (cap - 1))
        if (tlen[set[h]] == n && !memcmp(tok[set[h]], s, n)) return true;
    return false;
}

static void roundtrip(eft_tokenizer *t, const char *text, size_t len, bool special) {
    eft_encode_params p = eft_encode_params_default();
    p.add_special_tokens = special;
    eft_encoding *e = NULL;
    if (eft_tokenizer_encode(t, text, len, NULL, 0, &p, &e)) return;
    const int32_t *ids = eft_encoding_ids(e);
    size_t n = eft_encoding_len(e);
    char *full = NULL;
    size_t full_len = 0;
    if (eft_tokenizer_decode(t, ids, n, false, &full, &full_len)) abort();
    eft_detokenizer *d = NULL;
    if (eft_detokenizer_open(t, false, &d)) abort();
    size_t at = 0;
    for (size_t i = 0; i <= n; i++) {
        const char *s;
        size_t sl;
        if ((i < n ? eft_detokenizer_push(d, ids[i], &s, &sl) : eft_detokenizer_finish(d, &s, &sl))) abort();
        if (at + sl > full_len || memcmp(full + at, s, sl)) {
            fprintf(stderr, "streaming decode differs from the full decode\n");
            abort();
        }
        at += sl;
    }
    if (at != full_len) abort();
    eft_detokenizer_close(d);
    eft_free(full);
    eft_encoding_free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    uint8_t flags = data[0], tseed = data[1];
    const uint8_t *body = data + 2, *end = data + size;
    const uint8_t *stop = memmem(body, (size_t)(end - body), "\0\0", 2);
    const uint8_t *text = stop ? stop + 2 : end;
    const uint8_t *tok_end = stop ? stop : end;
    /* Token boundaries. */
    const uint8_t *tok[MAX_TOKENS];
    size_t tlen[MAX_TOKENS], n = 0;
    for (const uint8_t *p = body; p <= tok_end && n < MAX_TOKENS;) {
        const uint8_t *z = memchr(p, 0, (size_t)(tok_end - p));
        if (!z) z = tok_end;
        tok[n] = p, tlen[n] = (size_t)(z - p), n++;
        p = z + 1;
    }
    int kind = flags & 3;
    bool merges = flags & 4, scores = flags & 8;
    static const char *const archs[] = {"llama", "gemma3", "phi3", "gpt2"};

    buf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, 0); /* tensors */
    uint64_t nkv = 5 + (uint64_t)merges + (uint64_t)scores + 2 + 2;
    put_u64(&b, nkv);
    key(&b, "general.architecture", T_STRING);
    put_str(&b, archs[kind], strlen(archs[kind]));
    key(&b, "tokenizer.ggml.model", T_STRING);
    put_str(&b, kind == 3 ? "gpt2" : "llama", kind == 3 ? 4 : 5);
    key(&b, "tokenizer.ggml.pre", T_STRING);
    put_str(&b, (flags & 16) ? "llama-bpe" : "default", (flags & 16) ? 9 : 7);
    key(&b, "tokenizer.ggml.tokens", T_ARRAY);
    put_u32(&b, T_STRING);
    put_u64(&b, n);
    for (size_t i = 0; i < n; i++) put_str(&b, tok[i], tlen[i]);
    key(&b, "tokenizer.ggml.token_type", T_ARRAY);
    put_u32(&b, T_I32);
    put_u64(&b, n);
    for (size_t i = 0; i < n; i++) {
        uint32_t x = (uint32_t)(i * 2654435761u) ^ tseed;
        int32_t ty = (x & 7) < 4 ? 1 : (int32_t)(x % 6) + 1; /* mostly normal */
        put(&b, &ty, 4);
    }
    if (scores) {
        key(&b, "tokenizer.ggml.scores", T_ARRAY);
        put_u32(&b, T_F32);
        put_u64(&b, n);
        for (size_t i = 0; i < n; i++) {
            float s = -(float)((i * 40503u + tseed) % 997) / 7.0f;
            put(&b, &s, 4);
        }
    }
    if (merges) {
        /* Every split of a token into two tokens, in token order (a loader refuses a merge whose
         * parts are not tokens, so pairs drawn at random would only test that refusal); bit 7 of
         * the type seed adds one such bad merge at the end. */
        static uint32_t set[4 * MAX_TOKENS];
        const size_t cap = 4 * MAX_TOKENS;
        memset(set, 0xff, sizeof set);
        for (size_t i = 0; i < n; i++) {
            size_t h = hash(tok[i], tlen[i]) & (cap - 1);
            while (set[h] != UINT32_MAX) h = (h + 1) & (cap - 1);
            set[h] = (uint32_t)i;
        }
        size_t nm = 0;
        key(&b, "tokenizer.ggml.merges", T_ARRAY);
        put_u32(&b, T_STRING);
        size_t count_at = b.n;
        put_u64(&b, 0);
        for (size_t k = 0; k < n && nm < 4 * MAX_TOKENS; k++)
            for (size_t at = 1; at < tlen[k]; at++)
                if (has(set, cap, tok, tlen, tok[k], at) && has(set, cap, tok, tlen, tok[k] + at, tlen[k] - at)) {
                    put_u64(&b, tlen[k] + 1);
                    put(&b, tok[k], at);
                    put(&b, " ", 1);
                    put(&b, tok[k] + at, tlen[k] - at);
                    nm++;
                }
        if (tseed & 128) {
            put_str(&b, "\x01 \x02", 3);
            nm++;
        }
        if (!b.oom) memcpy(b.p + count_at, &(uint64_t){nm}, 8);
    }
    key(&b, "tokenizer.ggml.add_bos_token", T_BOOL);
    put(&b, &(uint8_t){(flags >> 4) & 1}, 1);
    key(&b, "tokenizer.ggml.add_eos_token", T_BOOL);
    put(&b, &(uint8_t){(flags >> 5) & 1}, 1);
    /* Two special ids, possibly out of range. */
    key(&b, (flags & 64) ? "tokenizer.ggml.bos_token_id" : "tokenizer.ggml.unknown_token_id", T_U32);
    put_u32(&b, (uint32_t)(tseed % (n + 2)));
    key(&b, (flags & 128) ? "tokenizer.ggml.eos_token_id" : "tokenizer.ggml.padding_token_id", T_U32);
    put_u32(&b, (uint32_t)((tseed * 7u + 1) % (n + 2)));
    if (b.oom) {
        free(b.p);
        return 0;
    }

    eft_tokenizer *t = NULL;
    eft__error err;
    if (eft__tokenizer_load_gguf_memory(b.p, b.n, "fuzz.gguf", &t, &err) == EFT_OK) {
        roundtrip(t, (const char *)text, (size_t)(end - text), flags & 1);
        static const char *const fixed[] = {"Hello, world!", "  two  spaces\tand\nlines ", "naïve café 東京 🙂",
                                            "\xff\xfe invalid \xc3"};
        for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) roundtrip(t, fixed[i], strlen(fixed[i]), i & 1);
        /* Every id decodes (or is refused) without reading outside the vocabulary. */
        for (int32_t id = -1; id <= (int32_t)n; id++) {
            char *s = NULL;
            size_t sl = 0;
            if (eft_tokenizer_decode(t, &id, 1, false, &s, &sl) == EFT_OK) eft_free(s);
        }
        eft_tokenizer_close(t);
    } else if (t) {
        abort(); /* a failed load leaves nothing behind */
    }
#ifdef FUZZ_VERBOSE
    fprintf(stderr, "%s: %zu tokens: %s\n", archs[kind], n, t ? "loaded" : err.msg);
#endif
    free(b.p);
    return 0;
}
