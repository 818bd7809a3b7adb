/*
 * test_tokenizer_ref.c — eft's tokenizers against Hugging Face `tokenizers`: for every expectation
 * file in tests/fixtures/tokenizers/ (written by tools/ref/make_tokenizer_fixtures.py) the same
 * text must give the same ids, type ids, offsets and decodes, and streaming decode must add up to
 * the full decode. Tokenizers whose files are absent (models/ not fetched) are skipped, loudly.
 */
#include <dirent.h>
#include <jansson.h>
#include <stdbool.h>

#include "eft.h"
#include "test.h"

static int hexval(int c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

/* Decodes the text of a case into a fresh buffer. */
static char *case_text(const json_t *c, size_t *len) {
    const json_t *t = json_object_get(c, "text");
    if (json_is_string(t)) {
        *len = json_string_length(t);
        char *s = malloc(*len + 1);
        memcpy(s, json_string_value(t), *len + 1);
        return s;
    }
    const char *h = json_string_value(json_object_get(c, "text_hex"));
    size_t n = strlen(h) / 2;
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++) s[i] = (char)(hexval(h[2 * i]) * 16 + hexval(h[2 * i + 1]));
    s[n] = 0;
    *len = n;
    return s;
}

static void show(const char *what, const json_t *c) {
    const json_t *t = json_object_get(c, "text");
    fprintf(stderr, "    %s for text \"%.80s\" (add_special=%d, pair=%s)\n", what,
            json_is_string(t) ? json_string_value(t) : json_string_value(json_object_get(c, "text_hex")),
            json_is_true(json_object_get(c, "add_special_tokens")),
            json_is_string(json_object_get(c, "pair")) ? json_string_value(json_object_get(c, "pair")) : "-");
}

static bool same_ints(const json_t *arr, const int32_t *v, size_t n) {
    if (json_array_size(arr) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_array_get(arr, i)) != v[i]) return false;
    return true;
}

static void print_ids(const char *label, const json_t *arr, const int32_t *v, size_t n) {
    fprintf(stderr, "      %s expected:", label);
    for (size_t i = 0; i < json_array_size(arr) && i < 40; i++)
        fprintf(stderr, " %lld", (long long)json_integer_value(json_array_get(arr, i)));
    fprintf(stderr, "\n      %s got:     ", label);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", v[i]);
    fprintf(stderr, "\n");
}

static int files_checked;

static void check_file(const char *path) {
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    CHECK_MSG(doc != NULL, "%s: %s", path, jerr.text);
    if (!doc) return;
    const char *tokpath = json_string_value(json_object_get(doc, "tokenizer"));
    const char *full = test_path(tokpath);
    FILE *f = fopen(full, "rb");
    if (!f) {
        printf("skip %s: %s is not there\n", path, tokpath);
        json_decref(doc);
        return;
    }
    fclose(f);
    eft_tokenizer *t = NULL;
    eft_status st = eft_tokenizer_open(full, &t);
    CHECK_MSG(st == EFT_OK, "%s: %s", tokpath, eft_last_error());
    if (st) {
        json_decref(doc);
        return;
    }
    files_checked++;
    const json_t *cases = json_object_get(doc, "cases");
    int bad = 0;
    for (size_t i = 0; i < json_array_size(cases); i++) {
        const json_t *c = json_array_get(cases, i);
        size_t len, plen = 0;
        char *text = case_text(c, &len);
        const json_t *pj = json_object_get(c, "pair");
        const char *pair = json_is_string(pj) ? json_string_value(pj) : NULL;
        if (pair) plen = json_string_length(pj);
        eft_encode_params p = eft_encode_params_default();
        p.add_special_tokens = json_is_true(json_object_get(c, "add_special_tokens"));
        const json_t *tr = json_object_get(c, "truncation");
        if (json_is_object(tr)) {
            p.max_length = (size_t)json_integer_value(json_object_get(tr, "max_length"));
            const char *strat = json_string_value(json_object_get(tr, "strategy"));
            p.truncation = !strcmp(strat, "only_first") ? EFT_TRUNCATE_ONLY_FIRST
                           : !strcmp(strat, "only_second") ? EFT_TRUNCATE_ONLY_SECOND
                                                           : EFT_TRUNCATE_LONGEST_FIRST;
            p.truncation_side = !strcmp(json_string_value(json_object_get(tr, "direction")), "left") ? EFT_SIDE_LEFT : EFT_SIDE_RIGHT;
        }
        const json_t *pd = json_object_get(c, "padding");
        if (json_is_object(pd)) {
            p.pad_to_length = (size_t)json_integer_value(json_object_get(pd, "length"));
            p.pad_id = (int32_t)json_integer_value(json_object_get(pd, "pad_id"));
            p.padding_side = !strcmp(json_string_value(json_object_get(pd, "direction")), "left") ? EFT_SIDE_LEFT : EFT_SIDE_RIGHT;
        }
        eft_encoding *e = NULL;
        st = eft_tokenizer_encode(t, text, len, pair, plen, &p, &e);
        if (json_is_true(json_object_get(c, "error"))) {
            /* HF refuses this truncation; so must eft, with a message. */
            CHECK_MSG(st != EFT_OK, "%s: case %zu should fail", tokpath, i);
            CHECK(strlen(eft_last_error()) > 0);
            eft_encoding_free(e);
            free(text);
            continue;
        }
        CHECK_MSG(st == EFT_OK, "%s: encode failed: %s", tokpath, eft_last_error());
        if (st) {
            free(text);
            continue;
        }
        size_t n = eft_encoding_len(e);
        bool ok = true;
        if (!same_ints(json_object_get(c, "ids"), eft_encoding_ids(e), n)) {
            ok = false;
            if (bad < 5) {
                show("ids differ", c);
                print_ids("ids", json_object_get(c, "ids"), eft_encoding_ids(e), n);
            }
        } else if (!same_ints(json_object_get(c, "type_ids"), eft_encoding_type_ids(e), n)) {
            ok = false;
            if (bad < 5) {
                show("type ids differ", c);
                print_ids("type_ids", json_object_get(c, "type_ids"), eft_encoding_type_ids(e), n);
            }
        }
        const json_t *offs = json_object_get(c, "offsets");
        if (ok && json_is_array(offs)) {
            const uint32_t *o = eft_encoding_offsets(e);
            for (size_t k = 0; k < n && ok; k++) {
                const json_t *pr = json_array_get(offs, k);
                if ((uint32_t)json_integer_value(json_array_get(pr, 0)) != o[2 * k] ||
                    (uint32_t)json_integer_value(json_array_get(pr, 1)) != o[2 * k + 1]) {
                    ok = false;
                    if (bad < 5) {
                        show("offsets differ", c);
                        fprintf(stderr, "      token %zu (id %d): expected [%lld, %lld], got [%u, %u]\n", k,
                                eft_encoding_ids(e)[k], (long long)json_integer_value(json_array_get(pr, 0)),
                                (long long)json_integer_value(json_array_get(pr, 1)), o[2 * k], o[2 * k + 1]);
                    }
                }
            }
        }
        /* Decodes, from the expected ids so that a decode check does not hang on an encode bug. */
        const json_t *ids_j = json_object_get(c, "ids");
        size_t nid = json_array_size(ids_j);
        int32_t *ids = malloc((nid + 1) * sizeof *ids);
        for (size_t k = 0; k < nid; k++) ids[k] = (int32_t)json_integer_value(json_array_get(ids_j, k));
        for (int skip = 0; skip < 2 && ok; skip++) {
            const json_t *wj = json_object_get(c, skip ? "decoded_skip" : "decoded");
            const char *want = json_string_value(wj);
            if (!want) continue;
            size_t want_len = json_string_length(wj), got_len = 0;
            char *got = NULL;
            st = eft_tokenizer_decode(t, ids, nid, skip, &got, &got_len);
            if (st || got_len != want_len || memcmp(got, want, want_len)) {
                ok = false;
                if (bad < 5) {
                    show(skip ? "decode (skip special) differs" : "decode differs", c);
                    fprintf(stderr, "      expected \"%s\"\n      got      \"%s\"\n", want, got ? got : "(error)");
                }
            }
            /* Streaming, one id at a time, must add up to the same text. */
            eft_detokenizer *d = NULL;
            if (ok && eft_detokenizer_open(t, skip, &d) == EFT_OK) {
                size_t cap = want_len * 2 + 64, at = 0;
                char *acc = malloc(cap);
                const char *piece;
                size_t pl;
                for (size_t k = 0; k <= nid; k++) {
                    st = k < nid ? eft_detokenizer_push(d, ids[k], &piece, &pl) : eft_detokenizer_finish(d, &piece, &pl);
                    if (st) break;
                    if (at + pl + 1 > cap) acc = realloc(acc, cap = (at + pl) * 2 + 1);
                    memcpy(acc + at, piece, pl);
                    at += pl;
                }
                acc[at] = 0;
                if (at != want_len || memcmp(acc, want, want_len)) {
                    ok = false;
                    if (bad < 5) {
                        show("streaming decode differs", c);
                        fprintf(stderr, "      expected \"%s\"\n      got      \"%s\"\n", want, acc);
                    }
                }
                free(acc);
                eft_detokenizer_close(d);
            }
            eft_free(got);
        }
        free(ids);
        if (!ok) bad++;
        eft_encoding_free(e);
        free(text);
    }
    CHECK_MSG(bad == 0, "%s: %d of %zu cases differ from Hugging Face", path, bad, json_array_size(cases));
    printf("  %-28s %3zu cases, %d differ\n", tokpath, json_array_size(cases), bad);
    eft_tokenizer_close(t);
    json_decref(doc);
}

static void test_reference_files(void) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", test_path("tests/fixtures/tokenizers"));
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "no %s", dir);
    if (!d) return;
    struct dirent *ent;
    char names[128][256];
    int n = 0;
    while ((ent = readdir(d)) && n < 128) {
        size_t l = strlen(ent->d_name);
        if (l > 5 && !strcmp(ent->d_name + l - 5, ".json")) snprintf(names[n++], 256, "%s", ent->d_name);
    }
    closedir(d);
    const char *only = getenv("EFT_TOKENIZER_ONLY");
    for (int i = 0; i < n; i++) {
        if (only && !strstr(names[i], only)) continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        check_file(p);
    }
    CHECK(files_checked > 0);
}

int main(void) {
    RUN(test_reference_files);
    return test_summary();
}
