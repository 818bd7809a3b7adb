/*
 * test_generator.c — eft_generator end to end on the fixture decoders against transformers'
 * greedy tokens (tests/fixtures/ref/<name>.safetensors, prompt{i}.greedy: 32 tokens that EOS does
 * not stop, hence ignore_eos): chunked prefill of 8 and 32 tokens, continuous batching of 4
 * prompts over 3 slots, stop strings, max_tokens, ctx_len, cancellation, seeded sampling, the
 * streamed text against eft_tokenizer_decode, generation_config.json defaults and bad input.
 */
#include "core/core.h"
#include "core/json.h"
#include "formats/safetensors.h"

#include "test.h"

#include <unistd.h>

#define N_PROMPTS 4
#define N_GREEDY 32

typedef struct ref {
    int32_t *prompt[N_PROMPTS], *greedy[N_PROMPTS];
    size_t n_prompt[N_PROMPTS];
    char texts[N_PROMPTS][512];
} ref;

static int32_t *ids_of(eft__safetensors *st, const char *name, size_t *n) {
    const eft__tensor_view *t = eft__safetensors_find(st, name);
    if (!t || t->dtype != EFT_DTYPE_I64) return NULL;
    int32_t *out = malloc(sizeof(int32_t) * (t->n_elems ? t->n_elems : 1));
    for (uint64_t i = 0; i < t->n_elems; i++) {
        int64_t v;
        memcpy(&v, (const char *)t->data + 8 * i, 8);
        out[i] = (int32_t)v;
    }
    *n = t->n_elems;
    return out;
}

static bool ref_load(const char *name, ref *r) {
    memset(r, 0, sizeof *r);
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/ref/%s.safetensors", name);
    eft__safetensors *st = NULL;
    eft__error err = {0};
    if (eft__safetensors_open(test_path(rel), &st, &err) != EFT_OK) {
        CHECK_MSG(0, "%s", err.msg);
        return false;
    }
    bool ok = true;
    for (int i = 0; i < N_PROMPTS; i++) {
        char k[64];
        size_t n = 0;
        snprintf(k, sizeof k, "prompt%d.input_ids", i);
        r->prompt[i] = ids_of(st, k, &r->n_prompt[i]);
        snprintf(k, sizeof k, "prompt%d.greedy", i);
        r->greedy[i] = ids_of(st, k, &n);
        ok = ok && r->prompt[i] && r->greedy[i] && n == N_GREEDY;
    }
    /* metadata "texts": a JSON list of the four prompt strings; parsed the simple way (they have
     * no escapes other than \n and \" and \u sequences we do not need for these tests). */
    const char *j = eft__safetensors_metadata(st, "texts");
    for (int i = 0; j && i < N_PROMPTS; i++) {
        const char *q = strchr(j, '"');
        if (!q) break;
        size_t k = 0;
        for (q++; *q && *q != '"' && k + 1 < sizeof r->texts[i]; q++) {
            if (*q == '\\') {
                q++;
                r->texts[i][k++] = *q == 'n' ? '\n' : *q;
            } else {
                r->texts[i][k++] = *q;
            }
        }
        r->texts[i][k] = 0;
        j = *q ? q + 1 : q;
    }
    eft__safetensors_close(st);
    CHECK_MSG(ok, "%s: missing prompt/greedy tensors", name);
    return ok;
}

static void ref_free(ref *r) {
    for (int i = 0; i < N_PROMPTS; i++) free(r->prompt[i]), free(r->greedy[i]);
}

/* What one sequence produced, gathered by the callback. */
typedef struct out {
    int32_t tokens[512];
    int n_tokens;
    char text[8192];
    size_t text_len;
    eft_finish_reason finish;
    int n_final, n_generated, n_prompt;
    int cancel_after; /* > 0: return non-zero on that token event */
    bool bad_event;
    bool greedy;      /* check that the token is the most likely of ev->top */
    int n_top_seen;   /* token events that carried top log-probabilities */
} out;

static int collect(const eft_gen_event *ev) {
    out *o = ev->user;
    if (o->finish != EFT_FINISH_NONE) o->bad_event = true; /* nothing after the final event */
    if (ev->text_len) {
        if (o->text_len + ev->text_len < sizeof o->text) memcpy(o->text + o->text_len, ev->text, ev->text_len);
        o->text_len += ev->text_len;
        o->text[o->text_len < sizeof o->text ? o->text_len : sizeof o->text - 1] = 0;
    }
    if (ev->finish == EFT_FINISH_NONE) {
        if (ev->token < 0 || o->n_tokens >= 512) o->bad_event = true;
        else o->tokens[o->n_tokens++] = ev->token;
        if (ev->n_generated != o->n_tokens) o->bad_event = true;
        if (ev->n_top > 0) {
            o->n_top_seen++;
            if (!ev->top || !(ev->logprob <= 0)) o->bad_event = true;
            for (int k = 0; ev->top && k < ev->n_top; k++)
                if (!(ev->top[k].logprob <= 0) || (k && ev->top[k].logprob > ev->top[k - 1].logprob)) o->bad_event = true;
            if (ev->top && o->greedy && (ev->top[0].id != ev->token || fabsf(ev->top[0].logprob - ev->logprob) > 1e-6f))
                o->bad_event = true;
        }
    } else {
        if (ev->token != -1) o->bad_event = true;
        o->finish = ev->finish;
        o->n_final++;
        o->n_generated = ev->n_generated;
        o->n_prompt = ev->n_prompt_tokens;
    }
    return o->cancel_after > 0 && o->n_tokens >= o->cancel_after;
}

static eft_generator *open_gen(const char *name, int psl, int fbs, int ctx) {
    char rel[256];
    if (!strcmp(name, "tiny-llama-gguf")) snprintf(rel, sizeof rel, "tests/fixtures/gguf/tiny-llama.gguf");
    else snprintf(rel, sizeof rel, "tests/fixtures/models/%s", name);
    eft_generator_params p = eft_generator_params_default();
    p.prefill_seq_len = psl;
    p.full_batch_size = fbs;
    p.ctx_len = ctx;
    eft_generator *g = NULL;
    eft_status st = eft_generator_open(test_path(rel), &p, &g);
    CHECK_MSG(st == EFT_OK, "%s: %s", name, eft_last_error());
    return g;
}

static eft_generate_params greedy_params(out *o, int max_tokens) {
    eft_generate_params p = eft_generator_generate_params_default(NULL);
    p.max_tokens = max_tokens;
    p.ignore_eos = true;
    p.callback = collect;
    p.user = o;
    return p;
}

static void run_all(eft_generator *g) {
    int guard = 0;
    while (eft_generator_pending(g) > 0 && guard++ < 100000) CHECK(eft_generator_step(g) == EFT_OK);
    CHECK(eft_generator_pending(g) == 0);
}

static int first_diff(const int32_t *a, const int32_t *b, int n) {
    for (int i = 0; i < n; i++)
        if (a[i] != b[i]) return i;
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * Greedy equals transformers, prompt by prompt, for two chunk sizes
 * ------------------------------------------------------------------------------------------- */

static const char *k_models[] = {"llama", "llama-rope3", "mistral", "qwen2",          "qwen3",
                                 "gemma2", "gemma3",      "phi3",    "gpt2", "tiny-llama-gguf"};

static void test_greedy_reference(void) {
    for (size_t m = 0; m < sizeof k_models / sizeof k_models[0]; m++) {
        ref r;
        if (!ref_load(k_models[m], &r)) continue;
        const int psls[2] = {8, 32};
        for (int c = 0; c < 2; c++) {
            eft_generator *g = open_gen(k_models[m], psls[c], 1, 0);
            if (!g) break;
            for (int i = 0; i < N_PROMPTS; i++) {
                out o = {0};
                eft_generate_params p = greedy_params(&o, N_GREEDY);
                CHECK(eft_generator_submit(g, r.prompt[i], r.n_prompt[i], &p, NULL) == EFT_OK);
                run_all(g);
                int d = first_diff(o.tokens, r.greedy[i], N_GREEDY);
                CHECK_MSG(o.n_tokens == N_GREEDY && d < 0,
                          "%s prefill_seq_len %d prompt %d: %d tokens, first difference at %d (%d vs %d)",
                          k_models[m], psls[c], i, o.n_tokens, d, d >= 0 ? o.tokens[d] : 0,
                          d >= 0 ? r.greedy[i][d] : 0);
                CHECK_EQ_INT(o.finish, EFT_FINISH_LENGTH);
                CHECK_EQ_INT(o.n_final, 1);
                CHECK(!o.bad_event);
                CHECK_EQ_INT(o.n_prompt, (int)r.n_prompt[i]);
                /* The streamed text is the decode of the tokens (special tokens skipped). */
                char *dec = NULL;
                CHECK(eft_tokenizer_decode(eft_generator_tokenizer(g), o.tokens, (size_t)o.n_tokens, true, &dec,
                                           NULL) == EFT_OK);
                CHECK_MSG(dec && !strcmp(dec, o.text), "%s prompt %d: streamed \"%s\" vs decoded \"%s\"",
                          k_models[m], i, o.text, dec ? dec : "(null)");
                eft_free(dec);
            }
            eft_generator_close(g);
        }
        ref_free(&r);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Continuous batching: 4 prompts at once over 3 slots give the tokens each gives alone
 * ------------------------------------------------------------------------------------------- */

static void test_continuous_batching(void) {
    const char *names[3] = {"llama", "gemma2", "gpt2"};
    for (int m = 0; m < 3; m++) {
        ref r;
        if (!ref_load(names[m], &r)) continue;
        eft_generator *g = open_gen(names[m], 8, 3, 0);
        if (!g) {
            ref_free(&r);
            continue;
        }
        CHECK_EQ_INT(eft_generator_slots(g), 3);
        static out o[N_PROMPTS];
        memset(o, 0, sizeof o);
        uint64_t ids[N_PROMPTS];
        for (int i = 0; i < N_PROMPTS; i++) {
            /* Different lengths, so sequences leave at different steps and the 4th enters a slot
             * freed mid-flight while the others keep decoding. */
            eft_generate_params p = greedy_params(&o[i], N_GREEDY - 6 * (i % 3));
            p.n_logprobs = i + 1; /* logprobs change nothing, and the chosen token leads them */
            o[i].greedy = true;
            CHECK(eft_generator_submit(g, r.prompt[i], r.n_prompt[i], &p, &ids[i]) == EFT_OK);
        }
        CHECK_EQ_INT(eft_generator_pending(g), 4);
        for (int i = 1; i < N_PROMPTS; i++) CHECK(ids[i] != ids[i - 1]);
        run_all(g);
        /* The same four again, two of them submitted while the first two are mid-decode. */
        static out o2[N_PROMPTS];
        memset(o2, 0, sizeof o2);
        for (int i = 0; i < N_PROMPTS; i++) {
            if (i == 2)
                for (int s = 0; s < 7; s++) CHECK(eft_generator_step(g) == EFT_OK);
            eft_generate_params p = greedy_params(&o2[i], N_GREEDY);
            CHECK(eft_generator_submit(g, r.prompt[i], r.n_prompt[i], &p, NULL) == EFT_OK);
        }
        run_all(g);
        for (int i = 0; i < N_PROMPTS; i++)
            CHECK_MSG(o2[i].n_tokens == N_GREEDY && first_diff(o2[i].tokens, r.greedy[i], N_GREEDY) < 0,
                      "%s late submission %d: first difference at %d", names[m], i,
                      first_diff(o2[i].tokens, r.greedy[i], N_GREEDY));
        for (int i = 0; i < N_PROMPTS; i++) {
            int want = N_GREEDY - 6 * (i % 3);
            int d = first_diff(o[i].tokens, r.greedy[i], want);
            CHECK_MSG(o[i].n_tokens == want && d < 0, "%s batched prompt %d: %d tokens, first difference at %d",
                      names[m], i, o[i].n_tokens, d);
            CHECK_EQ_INT(o[i].finish, EFT_FINISH_LENGTH);
            CHECK(!o[i].bad_event);
            CHECK_EQ_INT(o[i].n_top_seen, want);
        }
        eft_generator_close(g);
        ref_free(&r);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Stop strings, max_tokens, ctx_len, EOS, cancellation
 * ------------------------------------------------------------------------------------------- */

static void test_stop_strings(void) {
    ref r;
    if (!ref_load("llama", &r)) return;
    eft_generator *g = open_gen("llama", 32, 1, 0);
    if (!g) {
        ref_free(&r);
        return;
    }
    for (int i = 0; i < N_PROMPTS; i++) {
        char *full = NULL;
        size_t full_len = 0;
        CHECK(eft_tokenizer_decode(eft_generator_tokenizer(g), r.greedy[i], N_GREEDY, true, &full, &full_len) ==
              EFT_OK);
        if (!full || full_len < 12) {
            eft_free(full);
            continue;
        }
        /* A stop string taken from the middle of the text (it may span tokens): the output is
         * everything before its first occurrence, never the stop string itself. */
        for (size_t at = 3; at + 4 <= full_len; at += full_len / 3) {
            char stop[8] = {0};
            memcpy(stop, full + at, 4);
            if ((stop[0] & 0xC0) == 0x80) continue; /* not a character boundary */
            size_t first = (size_t)(strstr(full, stop) - full);
            out o = {0};
            eft_generate_params p = greedy_params(&o, N_GREEDY);
            const char *stops[2] = {"\x01never", stop};
            p.stop = stops;
            p.n_stop = 2;
            CHECK(eft_generator_submit(g, r.prompt[i], r.n_prompt[i], &p, NULL) == EFT_OK);
            run_all(g);
            CHECK_EQ_INT(o.finish, EFT_FINISH_STOP);
            CHECK_MSG(o.text_len == first && !memcmp(o.text, full, first),
                      "prompt %d stop \"%s\": got \"%s\", want the first %zu bytes of \"%s\"", i, stop, o.text, first,
                      full);
            CHECK(!strstr(o.text, stop));
            CHECK(o.n_tokens < N_GREEDY || first + 4 > full_len - 1);
        }
        /* A stop string that never occurs changes nothing. */
        out o = {0};
        eft_generate_params p = greedy_params(&o, N_GREEDY);
        const char *never[1] = {"\x02\x03 no such text"};
        p.stop = never;
        p.n_stop = 1;
        CHECK(eft_generator_submit(g, r.prompt[i], r.n_prompt[i], &p, NULL) == EFT_OK);
        run_all(g);
        CHECK_EQ_INT(o.finish, EFT_FINISH_LENGTH);
        CHECK_EQ_INT(o.n_tokens, N_GREEDY);
        CHECK_EQ_STR(o.text, full);
        eft_free(full);
    }
    eft_generator_close(g);
    ref_free(&r);
}

static void test_limits(void) {
    ref r;
    if (!ref_load("qwen2", &r)) return;
    int ctx = (int)r.n_prompt[0] + 5;
    eft_generator *g = open_gen("qwen2", 8, 2, ctx);
    if (!g) {
        ref_free(&r);
        return;
    }
    CHECK_EQ_INT(eft_generator_ctx_len(g), ctx);
    /* max_tokens */
    out o = {0};
    eft_generate_params p = greedy_params(&o, 3);
    CHECK(eft_generator_submit(g, r.prompt[0], r.n_prompt[0], &p, NULL) == EFT_OK);
    run_all(g);
    CHECK_EQ_INT(o.n_tokens, 3);
    CHECK_EQ_INT(o.n_generated, 3);
    CHECK_EQ_INT(o.finish, EFT_FINISH_LENGTH);
    CHECK(first_diff(o.tokens, r.greedy[0], 3) < 0);
    /* ctx_len: prompt + generated stop at ctx_len */
    out o2 = {0};
    p = greedy_params(&o2, 0);
    CHECK(eft_generator_submit(g, r.prompt[0], r.n_prompt[0], &p, NULL) == EFT_OK);
    run_all(g);
    CHECK_EQ_INT(o2.n_tokens, 5);
    CHECK_EQ_INT(o2.finish, EFT_FINISH_LENGTH);
    CHECK(first_diff(o2.tokens, r.greedy[0], 5) < 0);
    /* A prompt that leaves no room, an empty prompt, an id out of range, bad parameters. */
    CHECK_EQ_INT(eft_generator_submit(g, r.prompt[3], r.n_prompt[3], &p, NULL), EFT_ERR_LIMIT);
    CHECK_CONTAINS(eft_generator_errmsg(g), "ctx_len");
    CHECK_EQ_INT(eft_generator_submit(g, r.prompt[0], 0, &p, NULL), EFT_ERR_INVALID_ARGUMENT);
    int32_t bad_id[2] = {1, 1 << 30};
    CHECK_EQ_INT(eft_generator_submit(g, bad_id, 2, &p, NULL), EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(eft_generator_errmsg(g), "outside the vocabulary");
    eft_generate_params bad = p;
    bad.sampling.top_p = 2;
    CHECK_EQ_INT(eft_generator_submit(g, r.prompt[0], r.n_prompt[0], &bad, NULL), EFT_ERR_INVALID_ARGUMENT);
    bad = p;
    bad.n_logprobs = 21;
    CHECK_EQ_INT(eft_generator_submit(g, r.prompt[0], r.n_prompt[0], &bad, NULL), EFT_ERR_INVALID_ARGUMENT);
    const char *empty[1] = {""};
    bad = p;
    bad.stop = empty;
    bad.n_stop = 1;
    CHECK_EQ_INT(eft_generator_submit(g, r.prompt[0], r.n_prompt[0], &bad, NULL), EFT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(eft_generator_pending(g), 0);
    CHECK(eft_generator_step(g) == EFT_OK); /* nothing to do */
    eft_generator_close(g);
    ref_free(&r);
}

/* A copy of the llama fixture (symlinks) with generation_config.json text gc. */
static const char *llama_with_config(const char *name, const char *gc) {
    const char *dir = test_tmpdir(name);
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"};
    char a[4096], b[4096];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(a, sizeof a, "tests/fixtures/models/llama/%s", files[i]);
        snprintf(b, sizeof b, "%s/%s", dir, files[i]);
        CHECK(symlink(test_path(a), b) == 0);
    }
    snprintf(b, sizeof b, "%s/generation_config.json", dir);
    FILE *f = fopen(b, "w");
    CHECK(f != NULL);
    if (f) fputs(gc, f), fclose(f);
    return dir;
}

/* The fixtures' greedy lists never reach their EOS id, so the test makes one: a
 * generation_config.json whose eos_token_id list names a token the greedy run produces. The run
 * stops there: finish STOP, the EOS counted in n_generated, no event and no text for it. */
static void test_eos(void) {
    ref r;
    if (!ref_load("llama", &r)) return;
    int32_t x = r.greedy[0][3];
    int at = 0;
    while (r.greedy[0][at] != x) at++;
    char gc[128];
    snprintf(gc, sizeof gc, "{\"eos_token_id\": [2, %d]}", x);
    const char *dir = llama_with_config("generator_eos", gc);
    eft_generator *g = NULL;
    CHECK_MSG(eft_generator_open(dir, NULL, &g) == EFT_OK, "%s", eft_last_error());
    if (g) {
        out o = {0};
        eft_generate_params p = greedy_params(&o, N_GREEDY);
        p.ignore_eos = false;
        CHECK(eft_generator_submit(g, r.prompt[0], r.n_prompt[0], &p, NULL) == EFT_OK);
        run_all(g);
        CHECK_EQ_INT(o.finish, EFT_FINISH_STOP);
        CHECK_EQ_INT(o.n_tokens, at);
        CHECK_EQ_INT(o.n_generated, at + 1);
        CHECK(first_diff(o.tokens, r.greedy[0], at) < 0);
        char *want = NULL;
        CHECK(eft_tokenizer_decode(eft_generator_tokenizer(g), r.greedy[0], (size_t)at, true, &want, NULL) == EFT_OK);
        CHECK_EQ_STR(o.text, want);
        eft_free(want);
        /* ignore_eos runs through it. */
        out o2 = {0};
        p = greedy_params(&o2, N_GREEDY);
        CHECK(eft_generator_submit(g, r.prompt[0], r.n_prompt[0], &p, NULL) == EFT_OK);
        run_all(g);
        CHECK_EQ_INT(o2.n_tokens, N_GREEDY);
        eft_generator_close(g);
    }
    ref_free(&r);
}

static void test_cancel(void) {
    ref r;
    if (!ref_load("llama", &r)) return;
    eft_generator *g = open_gen("llama", 8, 2, 0);
    if (!g) {
        ref_free(&r);
        return;
    }
    /* The callback asks to stop after 3 tokens; a queued sequence is cancelled before it runs; one
     * running is cancelled with eft_generator_cancel between steps. */
    static out a, b, c, d;
    memset(&a, 0, sizeof a), memset(&b, 0, sizeof b), memset(&c, 0, sizeof c), memset(&d, 0, sizeof d);
    a.cancel_after = 3;
    uint64_t ia, ib, ic, id;
    eft_generate_params pa = greedy_params(&a, N_GREEDY), pb = greedy_params(&b, N_GREEDY),
                        pc = greedy_params(&c, N_GREEDY), pd = greedy_params(&d, N_GREEDY);
    CHECK(eft_generator_submit(g, r.prompt[0], r.n_prompt[0], &pa, &ia) == EFT_OK);
    CHECK(eft_generator_submit(g, r.prompt[1], r.n_prompt[1], &pb, &ib) == EFT_OK);
    CHECK(eft_generator_submit(g, r.prompt[2], r.n_prompt[2], &pc, &ic) == EFT_OK);
    CHECK(eft_generator_submit(g, r.prompt[3], r.n_prompt[3], &pd, &id) == EFT_OK);
    CHECK(eft_generator_cancel(g, id) == EFT_OK); /* still queued: 2 slots */
    for (int s = 0; s < 8; s++) CHECK(eft_generator_step(g) == EFT_OK);
    CHECK(b.n_tokens > 0 && b.finish == EFT_FINISH_NONE);
    CHECK(eft_generator_cancel(g, ib) == EFT_OK);
    run_all(g);
    CHECK_EQ_INT(a.finish, EFT_FINISH_CANCELLED);
    CHECK_EQ_INT(a.n_tokens, 3);
    CHECK_EQ_INT(a.n_final, 1);
    CHECK(first_diff(a.tokens, r.greedy[0], 3) < 0);
    CHECK_EQ_INT(b.finish, EFT_FINISH_CANCELLED);
    CHECK(b.n_tokens > 0 && b.n_tokens < N_GREEDY);
    CHECK(first_diff(b.tokens, r.greedy[1], b.n_tokens) < 0);
    CHECK_EQ_INT(c.finish, EFT_FINISH_LENGTH); /* took a's slot and ran to the end */
    CHECK(first_diff(c.tokens, r.greedy[2], N_GREEDY) < 0);
    CHECK_EQ_INT(d.finish, EFT_FINISH_CANCELLED);
    CHECK_EQ_INT(d.n_tokens, 0);
    CHECK_EQ_INT(d.n_final, 1);
    CHECK(!a.bad_event && !b.bad_event && !c.bad_event && !d.bad_event);
    /* Finished or unknown sequences are not found. */
    CHECK_EQ_INT(eft_generator_cancel(g, ia), EFT_ERR_NOT_FOUND);
    CHECK_EQ_INT(eft_generator_cancel(g, 987654), EFT_ERR_NOT_FOUND);
    eft_generator_close(g);
    ref_free(&r);
}

/* ---------------------------------------------------------------------------------------------
 * Sampling through the generator: seeded, and independent of batching
 * ------------------------------------------------------------------------------------------- */

static void sample_run(eft_generator *g, const ref *r, uint64_t seed, bool crowd, out *o) {
    static out others[3];
    memset(o, 0, sizeof *o);
    eft_generate_params p = greedy_params(o, 24);
    p.sampling.temperature = 1.2f;
    p.sampling.top_p = 0.95f;
    p.sampling.top_k = 40;
    p.sampling.repetition_penalty = 1.1f;
    p.sampling.seed = seed;
    p.n_logprobs = 3;
    if (crowd)
        for (int i = 0; i < 3; i++) { /* other sequences, sampled with other seeds, before it */
            memset(&others[i], 0, sizeof others[i]);
            eft_generate_params q = p;
            q.sampling.seed = seed + 100 + (uint64_t)i;
            q.user = &others[i];
            CHECK(eft_generator_submit(g, r->prompt[i + 1], r->n_prompt[i + 1], &q, NULL) == EFT_OK);
        }
    CHECK(eft_generator_submit(g, r->prompt[0], r->n_prompt[0], &p, NULL) == EFT_OK);
    run_all(g);
}

static void test_seeded_sampling(void) {
    ref r;
    if (!ref_load("llama", &r)) return;
    eft_generator *g = open_gen("llama", 8, 2, 0);
    if (!g) {
        ref_free(&r);
        return;
    }
    static out a, b, c, d;
    sample_run(g, &r, 1234, false, &a);
    sample_run(g, &r, 1234, false, &b);
    sample_run(g, &r, 1234, true, &c);
    sample_run(g, &r, 99, false, &d);
    CHECK_EQ_INT(a.n_tokens, 24);
    CHECK(a.n_tokens == b.n_tokens && first_diff(a.tokens, b.tokens, a.n_tokens) < 0);
    CHECK_MSG(a.n_tokens == c.n_tokens && first_diff(a.tokens, c.tokens, a.n_tokens) < 0,
              "the same seed beside other sequences gave other tokens (first difference at %d)",
              first_diff(a.tokens, c.tokens, a.n_tokens));
    CHECK(first_diff(a.tokens, d.tokens, 24) >= 0); /* another seed: other tokens (24 draws at T 1.2) */
    CHECK(first_diff(a.tokens, r.greedy[0], 24) >= 0); /* and not greedy */
    CHECK(!a.bad_event && !c.bad_event && a.n_top_seen == 24);
    eft_generator_close(g);
    ref_free(&r);
}

/* ---------------------------------------------------------------------------------------------
 * eft_generator_generate, generation_config.json, open errors
 * ------------------------------------------------------------------------------------------- */

static void test_generate_text(void) {
    ref r;
    if (!ref_load("llama", &r)) return;
    eft_generator *g = open_gen("llama", 32, 1, 0);
    if (!g) {
        ref_free(&r);
        return;
    }
    for (int i = 0; i < N_PROMPTS; i++) {
        if (!r.texts[i][0]) continue;
        eft_generate_params p = eft_generator_generate_params_default(g);
        p.max_tokens = N_GREEDY;
        p.ignore_eos = true;
        char *text = NULL, *want = NULL;
        eft_gen_stats st;
        memset(&st, 0xff, sizeof st);
        CHECK(eft_generator_generate(g, r.texts[i], &p, &text, &st) == EFT_OK);
        CHECK(eft_tokenizer_decode(eft_generator_tokenizer(g), r.greedy[i], N_GREEDY, true, &want, NULL) == EFT_OK);
        CHECK_MSG(text && want && !strcmp(text, want), "prompt %d: \"%s\" vs \"%s\"", i, text ? text : "",
                  want ? want : "");
        CHECK_EQ_INT(st.n_prompt_tokens, (int)r.n_prompt[i]);
        CHECK_EQ_INT(st.n_generated, N_GREEDY);
        CHECK_EQ_INT(st.finish, EFT_FINISH_LENGTH);
        CHECK(st.ttft_s > 0 && st.total_s >= st.ttft_s && st.decode_tps > 0 && st.prefill_tps > 0);
        eft_free(text);
        eft_free(want);
    }
    char *text = NULL;
    CHECK(eft_generator_generate(g, "x", NULL, NULL, NULL) == EFT_ERR_INVALID_ARGUMENT);
    CHECK(eft_generator_generate(NULL, "x", NULL, &text, NULL) == EFT_ERR_INVALID_ARGUMENT);
    eft_generator_close(g);
    ref_free(&r);
}

static void test_generation_config(void) {
    const char *dir = llama_with_config("generator_gc",
                                        "{\"do_sample\": true, \"temperature\": 0.6, \"top_p\": 0.9, "
                                        "\"repetition_penalty\": 1.05, \"max_new_tokens\": 7}");
    eft_generator *g = NULL;
    CHECK_MSG(eft_generator_open(dir, NULL, &g) == EFT_OK, "%s", eft_last_error());
    if (g) {
        eft_generate_params p = eft_generator_generate_params_default(g);
        CHECK_NEAR(p.sampling.temperature, 0.6, 1e-7);
        CHECK_NEAR(p.sampling.top_p, 0.9, 1e-7);
        CHECK_EQ_INT(p.sampling.top_k, 50); /* transformers' default when do_sample is on */
        CHECK_NEAR(p.sampling.repetition_penalty, 1.05, 1e-7);
        CHECK_EQ_INT(p.max_tokens, 7);
        CHECK_EQ_INT(eft_generator_slots(g), 1);
        /* llama keeps its template in tokenizer_config.json (transformers-4 layout). */
        CHECK(eft_generator_chat_template(g) != NULL);
        eft_generator_close(g);
    }
    /* Sampling knobs without do_sample: transformers decodes greedily, and so do we. */
    dir = llama_with_config("generator_gc2", "{\"temperature\": 0.6, \"top_k\": 5, \"repetition_penalty\": 1.2}");
    g = NULL;
    CHECK(eft_generator_open(dir, NULL, &g) == EFT_OK);
    if (g) {
        eft_generate_params p = eft_generator_generate_params_default(g);
        CHECK(p.sampling.temperature == 0 && p.sampling.top_k == 0);
        CHECK_NEAR(p.sampling.repetition_penalty, 1.2, 1e-7);
        eft_generator_close(g);
    }
    /* Malformed: a clear error naming the file and the key. */
    const char *bad[] = {"{\"do_sample\": true, \"temperature\": \"hot\"}", "{\"top_p\": 0.5, \"repetition_penalty\": -1}",
                         "[1, 2]", "{\"max_new_tokens\": 3"};
    for (int i = 0; i < 4; i++) {
        dir = llama_with_config("generator_gc3", bad[i]);
        g = NULL;
        CHECK_EQ_INT(eft_generator_open(dir, NULL, &g), EFT_ERR_FORMAT);
        CHECK(g == NULL);
        eft_generator_close(g);
        CHECK_CONTAINS(eft_last_error(), "generation_config.json");
    }
    CHECK_CONTAINS(eft_last_error(), "line");
    /* The fixtures' own files: greedy (no do_sample), no limit; qwen2 has chat_template.jinja. */
    g = open_gen("qwen2", 16, 1, 0);
    if (g) {
        eft_generate_params p = eft_generator_generate_params_default(g);
        CHECK(p.sampling.temperature == 0 && p.max_tokens == 0 && p.sampling.repetition_penalty == 1);
        CHECK(eft_generator_chat_template(g) != NULL);
        eft_generator_close(g);
    }
    /* gpt2 has none: NULL, and the reason is kept. */
    g = open_gen("gpt2", 16, 1, 0);
    if (g) {
        CHECK(eft_generator_chat_template(g) == NULL);
        CHECK(strlen(eft_generator_errmsg(g)) > 0);
        eft_generator_close(g);
    }
}

static void test_open_errors(void) {
    eft_generator *g = (eft_generator *)1;
    eft_generator_params p = eft_generator_params_default();
    p.full_batch_size = 0;
    CHECK_EQ_INT(eft_generator_open(test_path("tests/fixtures/models/llama"), &p, &g), EFT_ERR_INVALID_ARGUMENT);
    CHECK(g == NULL);
    CHECK_CONTAINS(eft_last_error(), "full_batch_size");
    p = eft_generator_params_default();
    p.kv_dtype = EFT_DTYPE_Q4_K;
    CHECK_EQ_INT(eft_generator_open(test_path("tests/fixtures/models/llama"), &p, &g), EFT_ERR_INVALID_ARGUMENT);
    /* Activations are f32 or int8, nothing else; int8 opens (int8 weights, so the int8 path runs)
     * and generates. */
    p = eft_generator_params_default();
    p.activation_dtype = EFT_DTYPE_F16;
    CHECK_EQ_INT(eft_generator_open(test_path("tests/fixtures/models/llama"), &p, &g), EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(eft_last_error(), "activation_dtype");
    p = eft_generator_params_default();
    p.activation_dtype = EFT_DTYPE_I8;
    p.weight_dtype = EFT_DTYPE_Q8_0;
    p.ctx_len = 32;
    p.no_cache = true;
    eft_generator *gi = NULL;
    CHECK_EQ_INT(eft_generator_open(test_path("tests/fixtures/models/llama"), &p, &gi), EFT_OK);
    if (gi) {
        eft_generate_params gpp = eft_generator_generate_params_default(gi);
        gpp.max_tokens = 4;
        char *text = NULL;
        CHECK_EQ_INT(eft_generator_generate(gi, "hello", &gpp, &text, NULL), EFT_OK);
        CHECK(text != NULL);
        eft_free(text);
        eft_generator_close(gi);
    }
    /* n_threads: 1 by default, 0 is every online CPU, past 1024 is refused. */
    p = eft_generator_params_default();
    p.ctx_len = 32;
    p.no_cache = true;
    CHECK_EQ_INT(eft_generator_open(test_path("tests/fixtures/models/llama"), &p, &gi), EFT_OK);
    CHECK_EQ_INT(eft_generator_threads(gi), 1);
    eft_generator_close(gi);
    p.n_threads = 0;
    CHECK_EQ_INT(eft_generator_open(test_path("tests/fixtures/models/llama"), &p, &gi), EFT_OK);
    CHECK_EQ_INT(eft_generator_threads(gi), (int)sysconf(_SC_NPROCESSORS_ONLN));
    eft_generator_close(gi);
    /* A program's num_cores is the plan for 0 as for the default. */
    char prog[4300];
    snprintf(prog, sizeof prog, "%s/prog", test_tmpdir("generator_threads"));
    eft_compile_params cp = eft_compile_params_default();
    cp.num_cores = 3;
    cp.ctx_len = 32;
    CHECK_MSG(eft_compile(test_path("tests/fixtures/models/llama"), &cp, prog) == EFT_OK, "%s", eft_last_error());
    CHECK_EQ_INT(eft_generator_open(prog, &p, &gi), EFT_OK);
    CHECK_EQ_INT(eft_generator_threads(gi), 3);
    eft_generator_close(gi);
    /* A program records its activation type as the plan: compiled with int8 activations (on int8
     * weights, where they apply), it scores bit for bit as the model opened with them, and not as
     * with f32 activations; its header says I8. */
    cp.dtype = EFT_DTYPE_Q8_0;
    cp.activation_dtype = EFT_DTYPE_I8;
    CHECK_MSG(eft_compile(test_path("tests/fixtures/models/llama"), &cp, prog) == EFT_OK, "%s", eft_last_error());
    char *info = eft_program_info_json(prog);
    CHECK(info && strstr(info, "\"act_dtype\": \"I8\""));
    eft_free(info);
    int32_t ids[12];
    for (int i = 0; i < 12; i++) ids[i] = 5 + 7 * i;
    float lp[3][12];
    for (int run = 0; run < 3; run++) {
        eft_generator_params q = eft_generator_params_default();
        q.no_cache = true;
        q.ctx_len = 32;
        q.weight_dtype = EFT_DTYPE_Q8_0;
        q.activation_dtype = run == 1 ? EFT_DTYPE_I8 : EFT_DTYPE_F32;
        eft_generator *gr = NULL;
        CHECK_EQ_INT(eft_generator_open(run == 0 ? prog : test_path("tests/fixtures/models/llama"), &q, &gr), EFT_OK);
        CHECK(gr && eft_generator_score(gr, ids, 12, lp[run], NULL) == EFT_OK);
        eft_generator_close(gr);
    }
    CHECK(!memcmp(lp[0], lp[1], sizeof lp[0]));
    CHECK(memcmp(lp[0], lp[2], sizeof lp[0]) != 0);
    p.n_threads = 1025;
    CHECK_EQ_INT(eft_generator_open(test_path("tests/fixtures/models/llama"), &p, &g), EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(eft_last_error(), "n_threads");
    CHECK(eft_generator_open(test_path("tests/fixtures/models/no-such-model"), NULL, &g) != EFT_OK);
    CHECK(g == NULL);
    /* An encoder is not a causal LM. */
    CHECK(eft_generator_open(test_path("tests/fixtures/models/bert"), NULL, &g) != EFT_OK);
    CHECK(g == NULL);
    CHECK(strlen(eft_last_error()) > 0);
    eft_generator_close(NULL);
    CHECK_EQ_STR(eft_finish_reason_str(EFT_FINISH_STOP), "stop");
    CHECK_EQ_STR(eft_finish_reason_str(EFT_FINISH_LENGTH), "length");
    CHECK_EQ_STR(eft_finish_reason_str(EFT_FINISH_NONE), "");
}

/* ---------------------------------------------------------------------------------------------
 * Out of memory: every allocation of an open + generate, failed in turn (sampled evenly), fails
 * cleanly: an error with a message, nothing left open (the sanitizer build checks for leaks).
 * jansson's own allocations are spared, as in test_model.c (jansson 2.14 crashes on them).
 * ------------------------------------------------------------------------------------------- */

static long g_allocs, g_fail_at = -1;
static void *oom_alloc(size_t n, void *ud) {
    (void)ud;
    if (eft__alloc_in_json()) return malloc(n);
    return g_allocs++ == g_fail_at ? NULL : malloc(n);
}
static void *oom_realloc(void *p, size_t n, void *ud) {
    (void)ud;
    if (eft__alloc_in_json()) return realloc(p, n);
    return g_allocs++ == g_fail_at ? NULL : realloc(p, n);
}
static void oom_free(void *p, void *ud) { (void)ud; free(p); }

/* 0: generated; else the status of the call that failed. */
static eft_status open_and_generate(const char *dir, char **text) {
    eft_generator_params gp = eft_generator_params_default();
    gp.prefill_seq_len = 4;
    gp.full_batch_size = 2;
    eft_generator *g = NULL;
    eft_status st = eft_generator_open(dir, &gp, &g);
    if (st) return g == NULL ? st : EFT_ERR_INTERNAL;
    eft_generate_params p = eft_generator_generate_params_default(g);
    p.max_tokens = 6;
    p.ignore_eos = true;
    const char *stops[1] = {"zzz"};
    p.stop = stops;
    p.n_stop = 1;
    st = eft_generator_generate(g, "Hello, world!", &p, text, NULL);
    eft_generator_close(g);
    return st;
}

static void test_out_of_memory(void) {
    const char *dir = test_path("tests/fixtures/models/llama");
    eft_allocator a = {oom_alloc, oom_realloc, oom_free, NULL};
    eft_set_allocator(&a);
    g_fail_at = -1;
    g_allocs = 0;
    char *want = NULL;
    eft_status st = open_and_generate(dir, &want);
    long total = g_allocs;
    CHECK_MSG(st == EFT_OK && want, "%s", eft_last_error());
    long step = total > 1500 ? total / 1500 : 1;
    int bad = 0, failed = 0;
    for (long k = 0; k < total; k += step) {
        g_allocs = 0;
        g_fail_at = k;
        char *text = NULL;
        st = open_and_generate(dir, &text);
        if (st == EFT_OK) {
            /* Only an allocation whose failure changes nothing may be absorbed. */
            if (!text || !want || strcmp(text, want)) {
                bad++;
                fprintf(stderr, "    allocation %ld failed: generated \"%s\" instead of \"%s\"\n", k, text ? text : "(null)",
                        want ? want : "(null)");
            }
        } else {
            failed++;
            if (text || eft_last_error()[0] == 0) {
                bad++;
                fprintf(stderr, "    allocation %ld failed: status %d, message \"%s\"\n", k, st, eft_last_error());
            }
        }
        eft_free(text);
    }
    g_fail_at = -1;
    eft_set_allocator(NULL);
    eft_free(want);
    CHECK_MSG(bad == 0, "%d injected failures did not fail cleanly", bad);
    CHECK(failed > 0);
    printf("     (%ld allocations, %d injected failures refused cleanly)\n", total, failed);
}

/* The per-op profile: every op of the graph in order, each run once per forward pass (a group's
 * time on its first op), the products taking time; a reset zeroes it; off by default. */
static void test_profile(void) {
    eft_generator_params gp = eft_generator_params_default();
    gp.no_cache = true;
    eft_generator *g = NULL;
    CHECK_MSG(eft_generator_open(test_path("tests/fixtures/models/llama"), &gp, &g) == EFT_OK, "%s", eft_last_error());
    if (!g) return;
    CHECK_EQ_INT(eft_generator_profile(g, NULL, 0), 0); /* off */
    eft_generator_close(g);
    gp.profile = true;
    gp.prefill_seq_len = 4;
    g = NULL;
    CHECK_MSG(eft_generator_open(test_path("tests/fixtures/models/llama"), &gp, &g) == EFT_OK, "%s", eft_last_error());
    if (!g) return;
    int n = eft_generator_profile(g, NULL, 0);
    CHECK(n > 10);
    eft_op_time *t = calloc((size_t)n + 1, sizeof *t);
    CHECK(eft_generator_profile(g, t, n) == n);
    for (int i = 0; i < n; i++) CHECK(t[i].op && t[i].name && t[i].calls == 0 && t[i].seconds == 0);
    /* A 10-token prompt in chunks of 4 (3 passes) and 5 tokens (4 more passes). The ops from the
     * gather of the rows asked for on run only where logits are: the last chunk and the 4. */
    out o = {0};
    eft_generate_params p = greedy_params(&o, 5);
    uint64_t seq = 0;
    const int32_t prompt[10] = {5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
    CHECK(eft_generator_submit(g, prompt, 10, &p, &seq) == EFT_OK);
    run_all(g);
    CHECK_EQ_INT(o.n_tokens, 5);
    CHECK(eft_generator_profile(g, t, n) == n);
    double matmul = 0;
    int grouped = 0, passes = 7;
    for (int i = 0; i < n; i++) {
        if (!strcmp(t[i].op, "gather")) passes = 5;
        CHECK_MSG(t[i].calls == (grouped > 0 ? 0 : passes), "op %d (%s %s): %ld calls", i, t[i].op, t[i].name,
                  t[i].calls);
        CHECK(t[i].seconds >= 0 && t[i].group >= 1);
        if (!strcmp(t[i].op, "matmul")) matmul += t[i].seconds;
        grouped = grouped > 0 ? grouped - 1 : t[i].group - 1;
    }
    CHECK(!strcmp(t[0].op, "embed") && !strcmp(t[n - 1].name, "output.logits") && passes == 5);
    CHECK(matmul > 0);
    /* Fewer entries than ops: as many as asked, and the count. */
    t[2].calls = -5;
    CHECK(eft_generator_profile(g, t, 2) == n && t[2].calls == -5);
    eft_generator_profile_reset(g);
    CHECK(eft_generator_profile(g, t, n) == n);
    for (int i = 0; i < n; i++) CHECK(t[i].calls == 0 && t[i].seconds == 0);
    CHECK_EQ_INT(eft_generator_profile(NULL, t, n), 0);
    eft_generator_profile_reset(NULL);
    free(t);
    eft_generator_close(g);
}

int main(void) {
    RUN(test_open_errors);
    RUN(test_greedy_reference);
    RUN(test_continuous_batching);
    RUN(test_stop_strings);
    RUN(test_limits);
    RUN(test_eos);
    RUN(test_cancel);
    RUN(test_seeded_sampling);
    RUN(test_generate_text);
    RUN(test_generation_config);
    RUN(test_out_of_memory);
    RUN(test_profile);
    return test_summary();
}
