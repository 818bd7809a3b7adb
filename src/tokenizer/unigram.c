/*
 * unigram.c — the Unigram model (SentencePiece's, as Hugging Face runs it): the most probable
 * segmentation by Viterbi over the vocabulary's log-probabilities. A character no piece covers
 * becomes the unknown token with score min - 10, consecutive unknowns fuse into one, and with
 * byte_fallback an unknown run is spelled as "<0xXX>" byte tokens instead.
 */
#include <jansson.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

#define UNK_PENALTY 10.0


eft_status eft__unigram_load(eft__model *m, const json_t *j, eft__error *err) {
    m->kind = EFT__MODEL_UNIGRAM;
    m->fuse_unk = true;
    m->byte_fallback = eft__json_bool(j, "byte_fallback", false);
    const json_t *vocab = json_object_get(j, "vocab");
    if (!json_is_array(vocab)) return eft__fail(err, EFT_ERR_FORMAT, "Unigram model: \"vocab\" must be an array");
    size_t n = json_array_size(vocab);
    if (n == 0) return eft__fail(err, EFT_ERR_FORMAT, "Unigram model: the vocabulary is empty");
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(vocab, i);
        const json_t *tok = json_array_get(e, 0), *score = json_array_get(e, 1);
        if (!json_is_string(tok) || !json_is_number(score))
            return eft__fail(err, EFT_ERR_FORMAT, "Unigram model: vocab[%zu] is not [\"piece\", score]", i);
        eft_status st = eft__vocab_set(&m->vocab, (int32_t)i, json_string_value(tok), json_string_length(tok), err);
        if (st) return st;
        m->vocab.scores[i] = json_number_value(score);
    }
    const json_t *unk = json_object_get(j, "unk_id");
    m->unk_id = -1;
    if (json_is_integer(unk)) {
        json_int_t u = json_integer_value(unk);
        if (u < 0 || (size_t)u >= n)
            return eft__fail(err, EFT_ERR_FORMAT, "Unigram model: unk_id %lld is outside the %zu-piece vocabulary",
                             (long long)u, n);
        m->unk_id = (int32_t)u;
    }
    eft_status st = eft__vocab_index(&m->vocab, err);
    if (st) return st;
    eft__unigram_finish(m);
    return EFT_OK;
}

void eft__unigram_finish(eft__model *m) {
    m->min_score = 0;
    m->max_token_len = 0;
    bool first = true;
    for (size_t i = 0; i < m->vocab.n; i++) {
        if (m->vocab.tok_len[i] == UINT32_MAX) continue;
        if (first || m->vocab.scores[i] < m->min_score) m->min_score = m->vocab.scores[i];
        first = false;
        if (m->vocab.tok_len[i] > m->max_token_len) m->max_token_len = m->vocab.tok_len[i];
    }
    eft__bpe_init_bytes(m);
}

typedef struct node {
    double score;
    int32_t id;
    int32_t start; /* -1: not reached */
} node;

bool eft__unigram_tokenize(const eft__model *m, const char *s, size_t len, eft__toks *out) {
    if (len == 0) return true;
    node stack[256];
    node *best = len + 1 <= 256 ? stack : eft__malloc_array(len + 1, sizeof *best);
    if (!best) return false;
    for (size_t i = 0; i <= len; i++) best[i] = (node){0, -1, -1};
    best[0].start = 0;
    double unk_score = m->min_score - UNK_PENALTY;
    for (size_t at = 0; at < len;) {
        size_t clen = (size_t)eft__utf8_len((unsigned char)s[at]);
        if (at + clen > len) clen = len - at;
        if (best[at].start < 0) { /* unreachable positions never happen: every char is covered */
            at += clen;
            continue;
        }
        double base = best[at].score;
        bool single = false;
        /* Every vocabulary piece starting here, shortest first (HF's trie order). */
        size_t limit = len - at < m->max_token_len ? len - at : m->max_token_len;
        for (size_t l = clen; l <= limit;) {
            int32_t id;
            if (eft__vocab_get(&m->vocab, s + at, l, &id)) {
                double cand = base + m->vocab.scores[id];
                node *t = &best[at + l];
                if (t->start < 0 || cand > t->score) *t = (node){cand, id, (int32_t)at};
                if (l == clen) single = true;
            }
            if (at + l >= len) break;
            l += (size_t)eft__utf8_len((unsigned char)s[at + l]);
        }
        if (!single) {
            node *t = &best[at + clen];
            double cand = base + unk_score;
            if (t->start < 0 || cand > t->score) *t = (node){cand, m->unk_id, (int32_t)at};
        }
        at += clen;
    }
    /* Walk back from the end, then reverse; runs of unknowns fuse. */
    size_t first = out->n;
    bool ok = true;
    size_t end = len;
    while (end > 0 && ok) {
        node *nd = &best[end];
        size_t start = (size_t)nd->start;
        if (nd->id == m->unk_id && out->n > first && out->t[out->n - 1].id == m->unk_id &&
            out->t[out->n - 1].start == end) {
            out->t[out->n - 1].start = (uint32_t)start; /* fuse with the unknown after it */
        } else {
            ok = eft__toks_add(out, nd->id, (uint32_t)start, (uint32_t)end);
        }
        end = start;
    }
    if (best != stack) eft__free(best);
    if (!ok) return false;
    for (size_t i = first, j = out->n - 1; i < j; i++, j--) {
        eft__tok t = out->t[i];
        out->t[i] = out->t[j];
        out->t[j] = t;
    }
    /* Unknown runs: byte tokens with byte_fallback; dropped without an unknown id. */
    if (m->byte_fallback || m->unk_id < 0) {
        eft__toks tmp = {0};
        for (size_t i = first; i < out->n && ok; i++) {
            eft__tok t = out->t[i];
            if (t.id != m->unk_id || t.id < 0) {
                if (t.id >= 0) ok = eft__toks_add(&tmp, t.id, t.start, t.end);
                continue;
            }
            bool all = m->byte_fallback;
            for (uint32_t b = t.start; b < t.end; b++)
                if (m->byte_ids[(unsigned char)s[b]] < 0) all = false;
            if (!all) {
                ok = eft__toks_add(&tmp, t.id, t.start, t.end);
                continue;
            }
            for (uint32_t b = t.start; b < t.end && ok; b++)
                ok = eft__toks_add(&tmp, m->byte_ids[(unsigned char)s[b]], t.start, t.end);
        }
        if (ok) {
            out->n = first;
            for (size_t i = 0; i < tmp.n && ok; i++) ok = eft__toks_add(out, tmp.t[i].id, tmp.t[i].start, tmp.t[i].end);
        }
        eft__free(tmp.t);
    }
    return ok;
}
