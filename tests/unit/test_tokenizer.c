/*
 * test_tokenizer.c — the tokenizer API beyond the reference comparison (test_tokenizer_ref.c):
 * refusal of unknown components by name, malformed files, padding and masks, truncation errors,
 * the invalid-UTF-8 policy, streaming decode at UTF-8 boundaries, out-of-memory at every
 * allocation, and concurrent use of one tokenizer from several threads.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>

#include "eft.h"
#include "test.h"

static eft_tokenizer *open_fixture(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/models/%s/tokenizer.json", name);
    eft_tokenizer *t = NULL;
    eft_status st = eft_tokenizer_open(test_path(rel), &t);
    CHECK_MSG(st == EFT_OK, "%s: %s", name, eft_last_error());
    return t;
}

static eft_status open_str(const char *json, eft_tokenizer **t) { return eft_tokenizer_open_json(json, strlen(json), t); }

#define WP_MODEL "\"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\", \"vocab\": {\"[UNK]\": 0, \"a\": 1, \"##b\": 2}}"

static void test_refuses_unknown_components(void) {
    static const struct {
        const char *json, *name;
    } cases[] = {
        {"{\"model\": {\"type\": \"CharLevel\", \"vocab\": {}}}", "CharLevel"},
        {"{" WP_MODEL ", \"normalizer\": {\"type\": \"Fancy\"}}", "Fancy"},
        {"{" WP_MODEL ", \"pre_tokenizer\": {\"type\": \"UnicodeScripts\"}}", "UnicodeScripts"},
        {"{" WP_MODEL ", \"post_processor\": {\"type\": \"Magic\"}}", "Magic"},
        {"{" WP_MODEL ", \"decoder\": {\"type\": \"Morse\"}}", "Morse"},
        {"{" WP_MODEL ", \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, {\"type\": \"Odd\"}]}}", "Odd"},
        {"{" WP_MODEL ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \"x\"}, \"behavior\": \"Sideways\"}}", "Sideways"},
        {"{\"model\": {\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {}, \"merges\": []}}", "dropout"},
        {"{" WP_MODEL ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}}", "regex"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        eft_tokenizer *t = (eft_tokenizer *)1;
        eft_status st = open_str(cases[i].json, &t);
        CHECK_EQ_INT(st, EFT_ERR_UNSUPPORTED);
        CHECK(t == NULL);
        CHECK_CONTAINS(eft_last_error(), cases[i].name);
    }
}

static void test_malformed_files(void) {
    static const struct {
        const char *json, *needle;
    } cases[] = {
        {"{\"model\": ", "invalid JSON"},
        {"[]", "not a JSON object"},
        {"{}", "model"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}", "\"b\" is not in the vocabulary"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -4}, \"merges\": []}}", "id -4"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 99999999999}, \"merges\": []}}", "99999999999"},
        {"{\"model\": {\"type\": \"Unigram\", \"unk_id\": 7, \"vocab\": [[\"a\", -1.0]]}}", "unk_id 7"},
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\"]]}}", "vocab[0]"},
        {"{" WP_MODEL ", \"added_tokens\": [{\"content\": \"x\"}]}", "added_tokens[0]"},
        {"{" WP_MODEL ", \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": "
         "{\"id\": \"[X]\", \"type_id\": 0}}], \"pair\": [], \"special_tokens\": {}}}", "[X]"},
        {"{" WP_MODEL ", \"normalizer\": {\"type\": \"Precompiled\", \"precompiled_charsmap\": \"AAAA\"}}", "Precompiled"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        eft_tokenizer *t = NULL;
        eft_status st = open_str(cases[i].json, &t);
        CHECK_MSG(st != EFT_OK, "case %zu loaded", i);
        CHECK(t == NULL);
        CHECK_CONTAINS(eft_last_error(), cases[i].needle);
    }
    eft_tokenizer *t = NULL;
    CHECK_EQ_INT(eft_tokenizer_open(test_path("tests/fixtures/no-such-dir"), &t), EFT_ERR_NOT_FOUND);
    CHECK_CONTAINS(eft_last_error(), "no-such-dir");
    CHECK_EQ_INT(eft_tokenizer_open(NULL, &t), EFT_ERR_INVALID_ARGUMENT);
    eft_tokenizer_close(NULL);
    eft_encoding_free(NULL);
    eft_detokenizer_close(NULL);
}

static void test_vocab_queries(void) {
    eft_tokenizer *t = open_fixture("bert");
    if (!t) return;
    int32_t cls = eft_tokenizer_token_to_id(t, "[CLS]", 5);
    CHECK(cls >= 0);
    CHECK(eft_tokenizer_is_special(t, cls));
    size_t len;
    const char *s = eft_tokenizer_id_to_token(t, cls, &len);
    CHECK(s && len == 5 && !memcmp(s, "[CLS]", 5));
    CHECK_EQ_INT(eft_tokenizer_vocab_size(t), 440);
    CHECK_EQ_INT(eft_tokenizer_token_to_id(t, "no such token", 13), -1);
    CHECK(eft_tokenizer_id_to_token(t, 1 << 20, &len) == NULL);
    CHECK(eft_tokenizer_id_to_token(t, -1, &len) == NULL);
    eft_tokenizer_close(t);
}

static void test_padding_and_masks(void) {
    eft_tokenizer *t = open_fixture("bert");
    if (!t) return;
    eft_encode_params p = eft_encode_params_default();
    eft_encoding *plain = NULL, *e = NULL;
    CHECK_EQ_INT(eft_tokenizer_encode(t, "hello world", 11, NULL, 0, NULL, &plain), EFT_OK);
    size_t n = eft_encoding_len(plain);
    CHECK(n >= 3);
    p.pad_to_length = n + 3;
    p.pad_id = 0;
    for (int side = 0; side < 2; side++) {
        p.padding_side = side ? EFT_SIDE_LEFT : EFT_SIDE_RIGHT;
        CHECK_EQ_INT(eft_tokenizer_encode(t, "hello world", 11, NULL, 0, &p, &e), EFT_OK);
        CHECK_EQ_INT(eft_encoding_len(e), n + 3);
        size_t pad0 = side ? 0 : n, body0 = side ? 3 : 0;
        for (size_t i = 0; i < 3; i++) {
            CHECK_EQ_INT(eft_encoding_ids(e)[pad0 + i], 0);
            CHECK_EQ_INT(eft_encoding_attention_mask(e)[pad0 + i], 0);
            CHECK_EQ_INT(eft_encoding_sequence_ids(e)[pad0 + i], -1);
        }
        for (size_t i = 0; i < n; i++) {
            CHECK_EQ_INT(eft_encoding_ids(e)[body0 + i], eft_encoding_ids(plain)[i]);
            CHECK_EQ_INT(eft_encoding_attention_mask(e)[body0 + i], 1);
        }
        /* [CLS] and [SEP] are special, have no offsets and no sequence */
        CHECK_EQ_INT(eft_encoding_special_tokens_mask(e)[body0], 1);
        CHECK_EQ_INT(eft_encoding_special_tokens_mask(e)[body0 + 1], 0);
        CHECK_EQ_INT(eft_encoding_sequence_ids(e)[body0 + 1], 0);
        CHECK_EQ_INT(eft_encoding_offsets(e)[2 * body0 + 1], 0);
        eft_encoding_free(e);
    }
    p = eft_encode_params_default();
    p.pad_to_multiple_of = 8;
    CHECK_EQ_INT(eft_tokenizer_encode(t, "hello world", 11, NULL, 0, &p, &e), EFT_OK);
    CHECK_EQ_INT(eft_encoding_len(e) % 8, 0);
    eft_encoding_free(e);
    eft_encoding_free(plain);
    eft_tokenizer_close(t);
}

static void test_truncation_errors(void) {
    eft_tokenizer *t = open_fixture("bert");
    if (!t) return;
    eft_encode_params p = eft_encode_params_default();
    eft_encoding *e = NULL;
    p.max_length = 4;
    p.truncation = EFT_TRUNCATE_ONLY_FIRST;
    CHECK_EQ_INT(eft_tokenizer_encode(t, "a", 1, "a much longer second text here", 30, &p, &e), EFT_ERR_LIMIT);
    CHECK(e == NULL);
    CHECK_CONTAINS(eft_last_error(), "max_length 4");
    p.truncation = EFT_TRUNCATE_ONLY_SECOND;
    CHECK_EQ_INT(eft_tokenizer_encode(t, "a b c d e", 9, NULL, 0, &p, &e), EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(eft_last_error(), "only_second");
    p.truncation = EFT_TRUNCATE_LONGEST_FIRST;
    p.max_length = 2;
    CHECK_EQ_INT(eft_tokenizer_encode(t, "a b c", 5, "d e f", 5, &p, &e), EFT_ERR_LIMIT);
    p.max_length = 6;
    CHECK_EQ_INT(eft_tokenizer_encode(t, "hello world again and again", 27, NULL, 0, &p, &e), EFT_OK);
    CHECK_EQ_INT(eft_encoding_len(e), 6);
    eft_encoding_free(e);
    eft_tokenizer_close(t);
}

/* Policy: each maximal invalid UTF-8 sequence reads as U+FFFD; offsets point at the bad bytes. */
static void test_invalid_utf8(void) {
    eft_tokenizer *t = open_fixture("gpt2");
    if (!t) return;
    eft_encoding *a = NULL, *b = NULL;
    CHECK_EQ_INT(eft_tokenizer_encode(t, "ab\xff\xfe" "cd", 6, NULL, 0, NULL, &a), EFT_OK);
    CHECK_EQ_INT(eft_tokenizer_encode(t, "ab\xef\xbf\xbd\xef\xbf\xbd" "cd", 10, NULL, 0, NULL, &b), EFT_OK);
    CHECK_EQ_INT(eft_encoding_len(a), eft_encoding_len(b));
    for (size_t i = 0; i < eft_encoding_len(a) && i < eft_encoding_len(b); i++)
        CHECK_EQ_INT(eft_encoding_ids(a)[i], eft_encoding_ids(b)[i]);
    /* every offset stays inside the 6 input bytes */
    for (size_t i = 0; i < eft_encoding_len(a); i++) CHECK(eft_encoding_offsets(a)[2 * i + 1] <= 6);
    eft_encoding_free(a);
    eft_encoding_free(b);
    /* embedded NUL bytes are text like any other */
    CHECK_EQ_INT(eft_tokenizer_encode(t, "a\0b", 3, NULL, 0, NULL, &a), EFT_OK);
    CHECK(eft_encoding_len(a) >= 2);
    eft_encoding_free(a);
    eft_tokenizer_close(t);
}

static bool valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
        if (!k || i + k > n) return false;
        for (size_t j = 1; j < k; j++)
            if (((unsigned char)s[i + j] & 0xC0) != 0x80) return false;
        i += k;
    }
    return true;
}

static void check_stream(const char *model, const char *text) {
    eft_tokenizer *t = open_fixture(model);
    if (!t) return;
    eft_encoding *e = NULL;
    CHECK_EQ_INT(eft_tokenizer_encode(t, text, strlen(text), NULL, 0, NULL, &e), EFT_OK);
    char *full = NULL;
    size_t full_len = 0;
    CHECK_EQ_INT(eft_tokenizer_decode(t, eft_encoding_ids(e), eft_encoding_len(e), false, &full, &full_len), EFT_OK);
    eft_detokenizer *d = NULL;
    CHECK_EQ_INT(eft_detokenizer_open(t, false, &d), EFT_OK);
    char acc[4096];
    size_t at = 0;
    int pieces = 0;
    for (size_t i = 0; i <= eft_encoding_len(e); i++) {
        const char *p;
        size_t pl;
        eft_status st = i < eft_encoding_len(e) ? eft_detokenizer_push(d, eft_encoding_ids(e)[i], &p, &pl)
                                                : eft_detokenizer_finish(d, &p, &pl);
        CHECK_EQ_INT(st, EFT_OK);
        CHECK_MSG(valid_utf8(p, pl), "%s: piece %zu is not complete UTF-8", model, i);
        if (pl) pieces++;
        if (at + pl < sizeof acc) memcpy(acc + at, p, pl), at += pl;
    }
    CHECK(pieces > 1);
    CHECK_EQ_INT(at, full_len);
    CHECK(at == full_len && !memcmp(acc, full, at));
    eft_detokenizer_close(d);
    eft_free(full);
    eft_encoding_free(e);
    eft_tokenizer_close(t);
}

static void test_streaming_decode(void) {
    /* emoji split into byte tokens: no piece may end inside a character */
    check_stream("gpt2", "Hi 👨‍👩‍👧‍👦 and 日本語 ok");
    check_stream("llama", "Hi 👨‍👩‍👧‍👦 and 日本語 ok");
    check_stream("xlm-roberta", "Hi there, 日本語 ok");
    check_stream("bert", "Hello, world! It isn't done.");
}

/* ---- out of memory at every allocation ---------------------------------------------------- */

static long g_fail_at, g_count;
static void *fail_alloc(size_t n, void *ud) {
    (void)ud;
    return ++g_count == g_fail_at ? NULL : malloc(n);
}
static void *fail_realloc(void *p, size_t n, void *ud) {
    (void)ud;
    return ++g_count == g_fail_at ? NULL : realloc(p, n);
}
static void fail_free(void *p, void *ud) {
    (void)ud;
    free(p);
}

static void oom_run(const char *json, size_t len) {
    eft_tokenizer *t = NULL;
    if (eft_tokenizer_open_json(json, len, &t)) return;
    const char *text = "Hello wörld, 日本 <s> 👍🏽 12345";
    eft_encoding *e = NULL;
    if (!eft_tokenizer_encode(t, text, strlen(text), "pair", 4, NULL, &e)) {
        char *s = NULL;
        if (!eft_tokenizer_decode(t, eft_encoding_ids(e), eft_encoding_len(e), true, &s, NULL)) eft_free(s);
        eft_detokenizer *d = NULL;
        if (!eft_detokenizer_open(t, false, &d)) {
            const char *p;
            size_t pl;
            for (size_t i = 0; i < eft_encoding_len(e); i++) eft_detokenizer_push(d, eft_encoding_ids(e)[i], &p, &pl);
            eft_detokenizer_finish(d, &p, &pl);
            eft_detokenizer_close(d);
        }
        eft_encoding_free(e);
    }
    eft_tokenizer_close(t);
}

static void test_out_of_memory(void) {
    static const char *models[] = {"bert", "gpt2", "llama", "xlm-roberta", "qwen2"};
    for (size_t m = 0; m < sizeof models / sizeof *models; m++) {
        char rel[256];
        snprintf(rel, sizeof rel, "tests/fixtures/models/%s/tokenizer.json", models[m]);
        FILE *f = fopen(test_path(rel), "rb");
        CHECK(f != NULL);
        if (!f) continue;
        static char buf[1 << 20];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        /* count the allocations of a clean run, then fail each one in turn (sampled) */
        eft_allocator a = {fail_alloc, fail_realloc, fail_free, NULL};
        g_fail_at = -1;
        g_count = 0;
        eft_set_allocator(&a);
        oom_run(buf, len);
        long total = g_count;
        /* jansson itself crashes when an allocation fails inside json_loadb (libjansson 2.14),
         * so failures start after the allocations of parsing the document. */
        g_count = 0;
        json_error_t jerr;
        json_t *doc = json_loadb(buf, len, JSON_ALLOW_NUL, &jerr);
        long parse = g_count;
        json_decref(doc);
        long step = (total - parse) / 400 + 1;
        for (long k = parse + 1; k <= total; k += step) {
            g_fail_at = k;
            g_count = 0;
            oom_run(buf, len);
        }
        eft_set_allocator(NULL);
        CHECK(total > 10);
    }
}

/* ---- one tokenizer, many threads ----------------------------------------------------------- */

typedef struct job {
    const eft_tokenizer *t;
    int ok;
} job;

static const char *TEXTS[] = {"The quick brown fox.", "日本語のテキスト", "emoji 👍🏽 here", "  spaces  ", "x"};

static void *worker(void *arg) {
    job *j = arg;
    j->ok = 1;
    for (int r = 0; r < 200; r++) {
        const char *s = TEXTS[r % 5];
        eft_encoding *e = NULL;
        if (eft_tokenizer_encode(j->t, s, strlen(s), NULL, 0, NULL, &e)) {
            j->ok = 0;
            break;
        }
        char *out = NULL;
        if (eft_tokenizer_decode(j->t, eft_encoding_ids(e), eft_encoding_len(e), true, &out, NULL)) j->ok = 0;
        eft_free(out);
        eft_encoding_free(e);
    }
    return NULL;
}

static void test_threads(void) {
    eft_tokenizer *t = open_fixture("qwen2");
    if (!t) return;
    pthread_t th[4];
    job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i].t = t;
        pthread_create(&th[i], NULL, worker, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].ok);
    }
    eft_tokenizer_close(t);
}

static void test_gguf_errors(void) {
    eft_tokenizer *t = NULL;
    /* a GGUF without a vocabulary */
    eft_status st = eft_tokenizer_open(test_path("tests/fixtures/gguf/quants.gguf"), &t);
    CHECK(st != EFT_OK);
    CHECK(t == NULL);
    CHECK_CONTAINS(eft_last_error(), "tokenizer");
}

int main(void) {
    RUN(test_refuses_unknown_components);
    RUN(test_malformed_files);
    RUN(test_vocab_queries);
    RUN(test_padding_and_masks);
    RUN(test_truncation_errors);
    RUN(test_invalid_utf8);
    RUN(test_streaming_decode);
    RUN(test_out_of_memory);
    RUN(test_threads);
    RUN(test_gguf_errors);
    return test_summary();
}
