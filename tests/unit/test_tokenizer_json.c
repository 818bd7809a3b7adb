/*
 * test_tokenizer_json.c — the tokenizer.json scanner (src/tokenizer/tokenizer_json.c) against
 * the jansson path it shortens: every fixture and real tokenizer, and documents written to hit
 * each of its cases (escapes, surrogate pairs, both merge forms, keys spelled with escapes,
 * repeated keys and ids, odd ids, invalid JSON and UTF-8 inside the vocabulary), must load to the
 * same tokenizer or fail with the same status and message both ways.
 */
#include <stdbool.h>

#include "eft.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

static eft_status open_with(bool scan, const char *json, size_t len, eft_tokenizer **t, char *msg, size_t cap) {
    eft__tokenizer_json_scan = scan;
    eft_status st = eft_tokenizer_open_json(json, len, t);
    eft__tokenizer_json_scan = true;
    snprintf(msg, cap, "%s", st ? eft_last_error() : "");
    return st;
}

static void same_encoding(const eft_tokenizer *a, const eft_tokenizer *b, const char *text, const char *label) {
    eft_encoding *ea = NULL, *eb = NULL;
    eft_status sa = eft_tokenizer_encode(a, text, strlen(text), NULL, 0, NULL, &ea);
    eft_status sb = eft_tokenizer_encode(b, text, strlen(text), NULL, 0, NULL, &eb);
    CHECK_MSG(sa == sb, "%s: encode status %d vs %d", label, sa, sb);
    if (!sa && !sb) {
        size_t n = eft_encoding_len(ea);
        CHECK_MSG(n == eft_encoding_len(eb), "%s: %zu vs %zu tokens for \"%s\"", label, n, eft_encoding_len(eb), text);
        if (n == eft_encoding_len(eb)) {
            CHECK_MSG(!memcmp(eft_encoding_ids(ea), eft_encoding_ids(eb), n * sizeof(int32_t)), "%s: ids differ for \"%s\"",
                      label, text);
            CHECK(!memcmp(eft_encoding_offsets(ea), eft_encoding_offsets(eb), 2 * n * sizeof(uint32_t)));
        }
    }
    eft_encoding_free(ea);
    eft_encoding_free(eb);
}

/* Loads json both ways and checks that the two agree; returns the status. */
static eft_status check_same(const char *label, const char *json, size_t len) {
    eft_tokenizer *a = NULL, *b = NULL;
    char ma[1024], mb[1024];
    eft_status sa = open_with(true, json, len, &a, ma, sizeof ma);
    eft_status sb = open_with(false, json, len, &b, mb, sizeof mb);
    CHECK_MSG(sa == sb, "%s: status %d with the scanner, %d without", label, sa, sb);
    CHECK_MSG(!strcmp(ma, mb), "%s: \"%s\" with the scanner, \"%s\" without", label, ma, mb);
    if (a && b) {
        size_t n = eft_tokenizer_vocab_size(a);
        CHECK_MSG(n == eft_tokenizer_vocab_size(b), "%s: vocab %zu vs %zu", label, n, eft_tokenizer_vocab_size(b));
        size_t bad = 0;
        for (size_t id = 0; id < n; id++) {
            size_t la = 0, lb = 0;
            const char *ta = eft_tokenizer_id_to_token(a, (int32_t)id, &la);
            const char *tb = eft_tokenizer_id_to_token(b, (int32_t)id, &lb);
            bool same = (!ta && !tb) || (ta && tb && la == lb && !memcmp(ta, tb, la));
            if (same && ta) same = eft_tokenizer_token_to_id(a, ta, la) == eft_tokenizer_token_to_id(b, tb, lb);
            bad += !same;
        }
        CHECK_MSG(bad == 0, "%s: %zu ids differ", label, bad);
        static const char *texts[] = {"Hello world! It's 3pm.", "ab abc cab bca", "naïve café 日本語 👍🏽 😀\n\tx",
                                      "unaffable tokenization", ""};
        for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) same_encoding(a, b, texts[i], label);
    }
    eft_tokenizer_close(a);
    eft_tokenizer_close(b);
    return sa;
}

static eft_status check_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return EFT_ERR_NOT_FOUND;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    CHECK(buf && fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    eft_status st = check_same(path, buf, (size_t)n);
    free(buf);
    return st;
}

static void test_fixtures_and_real_tokenizers(void) {
    static const char *fixtures[] = {"bert", "bert-cls", "gemma2", "gemma3", "gpt2", "llama", "llama-rope3", "mistral",
                                     "mpnet", "phi3", "qwen2", "qwen3", "roberta", "xlm-roberta"};
    char rel[256];
    for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) {
        snprintf(rel, sizeof rel, "tests/fixtures/models/%s/tokenizer.json", fixtures[i]);
        CHECK_EQ_INT(check_file(test_path(rel)), EFT_OK);
    }
    /* The real models, where this checkout has them. */
    static const char *real[] = {"all-MiniLM-L6-v2", "all-mpnet-base-v2", "bench-llama-1b"};
    for (size_t i = 0; i < sizeof real / sizeof *real; i++) {
        snprintf(rel, sizeof rel, "models/%s/tokenizer.json", real[i]);
        eft_status st = check_file(test_path(rel));
        CHECK(st == EFT_OK || st == EFT_ERR_NOT_FOUND);
    }
}

#define WP(vocab) "{\"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\", \"vocab\": " vocab "}}"
#define BPE(vocab, merges) "{\"model\": {\"type\": \"BPE\", \"vocab\": " vocab ", \"merges\": " merges "}}"
#define BPE_VOCAB "{\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, \"abc\": 4, \"ca\": 5, \"\\u00e9\": 6, \"a\\u00e9\": 7}"

static void test_documents(void) {
    static const struct {
        const char *label, *json;
        eft_status st;
    } cases[] = {
        {"plain", WP("{\"[UNK]\": 0, \"a\": 1, \"##b\": 2}"), EFT_OK},
        {"escapes", WP("{\"[UNK]\": 0, \"\\n\": 1, \"\\u00e9\": 2, \"\\/\\\\\\\"\": 3, \"\\ud83d\\ude00\": 4, \"\\t\\b\\f\\r\": 5}"),
         EFT_OK},
        {"raw UTF-8", WP("{\"[UNK]\": 0, \"日本\": 1, \"##語\": 2, \"👍\": 3}"), EFT_OK},
        {"white space", "\r\n\t {\"model\"\n:\t{ \"type\" : \"WordPiece\" , \"vocab\" :{ \"[UNK]\" : 0 ,\"a\"\t:1 } } }\n ",
         EFT_OK},
        {"empty vocab", WP("{}"), EFT_OK},
        {"model key with an escape", "{\"mod\\u0065l\": {\"type\": \"WordPiece\", \"v\\u006fcab\": {\"[UNK]\": 0, \"a\": 1}}}",
         EFT_OK},
        {"merges as strings", BPE(BPE_VOCAB, "[\"a b\", \"ab c\", \"c a\", \"a \\u00e9\"]"), EFT_OK},
        {"merges as pairs", BPE(BPE_VOCAB, "[[\"a\", \"b\"], [\"ab\", \"c\"], [ \"c\" , \"a\" ], [\"a\", \"\\u00e9\"]]"), EFT_OK},
        {"merges before vocab", "{\"model\": {\"type\": \"BPE\", \"merges\": [\"a b\"], \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}}}",
         EFT_OK},
        {"empty merges", BPE(BPE_VOCAB, "[]"), EFT_OK},
        /* Shapes the scanner declines: the jansson path decides. */
        {"repeated key", WP("{\"[UNK]\": 0, \"a\": 1, \"a\": 2}"), EFT_OK},
        {"shared id", WP("{\"[UNK]\": 0, \"a\": 1, \"b\": 1}"), EFT_OK},
        {"repeated model",
         "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"x\": 0}}, \"model\": {\"type\": \"WordPiece\", \"vocab\": "
         "{\"[UNK]\": 0, \"y\": 1}}}",
         EFT_OK},
        {"repeated vocab", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"x\": 0}, \"vocab\": {\"[UNK]\": 0}}}", EFT_OK},
        {"NUL in a key", WP("{\"[UNK]\": 0, \"a\\u0000b\": 1}"), EFT_ERR_FORMAT},
        {"NUL in a merge", BPE(BPE_VOCAB, "[\"a\\u0000 b\"]"), EFT_ERR_FORMAT},
        {"real id", WP("{\"[UNK]\": 0, \"a\": 1.0}"), EFT_ERR_FORMAT},
        {"exponent id", WP("{\"[UNK]\": 0, \"a\": 1e2}"), EFT_ERR_FORMAT},
        {"negative id", WP("{\"[UNK]\": 0, \"a\": -1}"), EFT_ERR_LIMIT},
        {"huge id", WP("{\"[UNK]\": 0, \"a\": 123456789012}"), EFT_ERR_LIMIT},
        {"id 2^24", WP("{\"[UNK]\": 0, \"a\": 16777216}"), EFT_ERR_LIMIT},
        {"id 2^24-1", WP("{\"[UNK]\": 0, \"a\": 16777215}"), EFT_OK},
        {"string id", WP("{\"[UNK]\": 0, \"a\": \"1\"}"), EFT_ERR_FORMAT},
        {"merge of three", BPE(BPE_VOCAB, "[[\"a\", \"b\", \"c\"]]"), EFT_ERR_FORMAT},
        {"merge without a space", BPE(BPE_VOCAB, "[\"ab\"]"), EFT_ERR_FORMAT},
        {"merge outside the vocab", BPE(BPE_VOCAB, "[\"b c\"]"), EFT_ERR_FORMAT},
        {"merges an object", BPE(BPE_VOCAB, "{}"), EFT_ERR_FORMAT},
        {"vocab an array", WP("[]"), EFT_ERR_FORMAT},
        {"unigram", "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1.5], [\"b\", -2]]}}", EFT_OK},
        /* Invalid JSON, inside the vocabulary and around it: refused with jansson's message. */
        {"leading zero", WP("{\"[UNK]\": 0, \"a\": 01}"), EFT_ERR_FORMAT},
        {"trailing comma", WP("{\"[UNK]\": 0, \"a\": 1,}"), EFT_ERR_FORMAT},
        {"missing colon", WP("{\"[UNK]\" 0}"), EFT_ERR_FORMAT},
        {"unquoted key", WP("{[UNK]: 0}"), EFT_ERR_FORMAT},
        {"bad escape", WP("{\"[UNK]\": 0, \"\\x41\": 1}"), EFT_ERR_FORMAT},
        {"short \\u", WP("{\"[UNK]\": 0, \"\\u12\": 1}"), EFT_ERR_FORMAT},
        {"lone high surrogate", WP("{\"[UNK]\": 0, \"\\ud83d\": 1}"), EFT_ERR_FORMAT},
        {"lone low surrogate", WP("{\"[UNK]\": 0, \"\\ude00\": 1}"), EFT_ERR_FORMAT},
        {"control byte", WP("{\"[UNK]\": 0, \"a\tb\": 1}"), EFT_ERR_FORMAT},
        {"overlong UTF-8", WP("{\"[UNK]\": 0, \"\xc0\x80\": 1}"), EFT_ERR_FORMAT},
        {"UTF-8 surrogate", WP("{\"[UNK]\": 0, \"\xed\xa0\x80\": 1}"), EFT_ERR_FORMAT},
        {"UTF-8 over U+10FFFF", WP("{\"[UNK]\": 0, \"\xf4\x90\x80\x80\": 1}"), EFT_ERR_FORMAT},
        {"truncated UTF-8", WP("{\"[UNK]\": 0, \"\xe6\x97\": 1}"), EFT_ERR_FORMAT},
        {"stray continuation byte", WP("{\"[UNK]\": 0, \"\x80\": 1}"), EFT_ERR_FORMAT},
        {"truncated", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0, \"a\": 1", EFT_ERR_FORMAT},
        {"trailing garbage", WP("{\"[UNK]\": 0}") "x", EFT_ERR_FORMAT},
        {"two documents", WP("{\"[UNK]\": 0}") " {}", EFT_ERR_FORMAT},
        {"bad literal after", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0}}, \"x\": tru}", EFT_ERR_FORMAT},
        {"bad number after", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0}}, \"x\": 1.}", EFT_ERR_FORMAT},
        {"huge number after", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0}}, \"x\": 99999999999999999999999}",
         EFT_ERR_FORMAT},
        {"bad merge string", BPE(BPE_VOCAB, "[\"a\\qb\"]"), EFT_ERR_FORMAT},
        {"unclosed merges", BPE(BPE_VOCAB, "[\"a b\""), EFT_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        eft_status st = check_same(cases[i].label, cases[i].json, strlen(cases[i].json));
        CHECK_MSG(st == cases[i].st, "%s: status %d, expected %d", cases[i].label, st, cases[i].st);
    }
    /* A NUL byte in the document itself. */
    static const char nul[] = WP("{\"[UNK]\": 0, \"a\0\": 1}");
    CHECK_EQ_INT(check_same("raw NUL", nul, sizeof nul - 1), EFT_ERR_FORMAT);
}

/* The scanner itself: which documents it takes on, and what it reads from them. */
static void test_scanner(void) {
    eft__json_pre pre;
    const char *j = BPE("{\"a\": 0, \"\\u00e9\\n\": 16777215, \"\\ud83d\\ude00\": 7}", "[\"a b\", [\"\\/\", \"c\"]]");
    CHECK_EQ_INT(eft__json_pre_scan(j, strlen(j), &pre, NULL), EFT_OK);
    CHECK(!pre.declined && pre.has_vocab && pre.has_merges);
    CHECK_EQ_INT((int)pre.n_vocab, 3);
    CHECK_EQ_INT((int)pre.n_merges, 2);
    CHECK_EQ_INT(pre.max_id, 16777215);
    if (pre.n_vocab == 3 && pre.n_merges == 2) {
        CHECK(pre.vocab[0].len == 1 && !memcmp(pre.vocab[0].s, "a", 1) && pre.vocab[0].id == 0);
        CHECK(pre.vocab[1].len == 3 && !memcmp(pre.vocab[1].s, "\xc3\xa9\n", 3) && pre.vocab[1].id == 16777215);
        CHECK(pre.vocab[2].len == 4 && !memcmp(pre.vocab[2].s, "\xf0\x9f\x98\x80", 4) && pre.vocab[2].id == 7);
        CHECK(pre.merges[0].alen == 3 && !memcmp(pre.merges[0].a, "a b", 3) && !pre.merges[0].b);
        CHECK(pre.merges[1].alen == 1 && pre.merges[1].a[0] == '/' && pre.merges[1].blen == 1 && pre.merges[1].b[0] == 'c');
    }
    /* What jansson is left with. */
    static const char rest[] = "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}";
    CHECK(pre.doc_len == sizeof rest - 1 && !memcmp(pre.doc, rest, sizeof rest - 1));
    eft__json_pre_free(&pre);

    static const struct {
        const char *json;
        bool declined;
    } cases[] = {
        {WP("{\"a\": 1}"), false},
        {WP("{}"), false},
        {"{\"model\": {\"merges\": []}}", false},
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1]]}}", true}, /* nothing to take */
        {WP("{\"a\": 1.5}"), true},
        {WP("{\"a\": -1}"), true},
        {WP("{\"a\": 16777216}"), true},
        {WP("{\"a\\u0000\": 1}"), true},
        {BPE("{}", "[1]"), true},
        {BPE("{}", "[[\"a\"]]"), true},
        {"{\"model\": {\"vocab\": {}, \"vocab\": {}}}", true},
        {"{\"model\": {\"vocab\": {}}, \"model\": 1}", true},
        {"[" WP("{}") "]", true},
        {WP("{\"a\": 1,}"), true},
        {WP("{\"a\": 1}") " x", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CHECK_EQ_INT(eft__json_pre_scan(cases[i].json, strlen(cases[i].json), &pre, NULL), EFT_OK);
        CHECK_MSG(pre.declined == cases[i].declined, "%s: declined %d", cases[i].json, pre.declined);
        eft__json_pre_free(&pre);
    }
    /* Real files are taken on, but for a Unigram's array vocabulary. */
    static const char *files[] = {"bert", "gpt2", "llama", "qwen2", "gemma3"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "tests/fixtures/models/%s/tokenizer.json", files[i]);
        FILE *f = fopen(test_path(rel), "rb");
        CHECK(f != NULL);
        if (!f) continue;
        char *buf = malloc(64 << 20);
        size_t n = fread(buf, 1, 64 << 20, f);
        fclose(f);
        CHECK_EQ_INT(eft__json_pre_scan(buf, n, &pre, NULL), EFT_OK);
        CHECK_MSG(!pre.declined && pre.n_vocab > 0, "%s declined", files[i]);
        eft__json_pre_free(&pre);
        free(buf);
    }
}

/* Deep nesting outside the vocabulary: the scanner stops at jansson's depth and leaves it to it. */
static void test_deep_nesting(void) {
    size_t depth = 5000;
    const char *head = "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0}}, \"x\": ";
    size_t n = strlen(head) + 2 * depth + 2;
    char *json = malloc(n + 1);
    strcpy(json, head);
    char *p = json + strlen(head);
    for (size_t i = 0; i < depth; i++) *p++ = '[';
    for (size_t i = 0; i < depth; i++) *p++ = ']';
    *p++ = '}';
    *p = 0;
    CHECK_EQ_INT(check_same("deep", json, strlen(json)), EFT_ERR_FORMAT);
    free(json);
}

int main(void) {
    RUN(test_fixtures_and_real_tokenizers);
    RUN(test_documents);
    RUN(test_scanner);
    RUN(test_deep_nesting);
    return test_summary();
}
