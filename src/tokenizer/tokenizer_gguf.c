/*
 * tokenizer_gguf.c — a tokenizer from the tokenizer.ggml.* vocabulary of a GGUF file, built the
 * way transformers converts one (integrations/gguf/gguf_tokenizer_mapping.py), so that eft gives
 * the ids a Hugging Face user of the same file gets:
 *   - "gpt2": byte-level BPE from tokens + merges; tokens outside the byte alphabet are spelled
 *     into it; GPT-2's ByteLevel regex, or the split regex tokenizer.ggml.pre names;
 *   - "llama": SentencePiece BPE with byte fallback, Metaspace (prepend "first", no split), merges
 *     from the file or derived from the scores as transformers' generate_merges does;
 *   - "llama" of a Gemma model (gemma, gemma2, gemma3): transformers' GemmaTokenizer: tokens of
 *     spaces respelled with "▁", merges derived in file order (Gemma's scores do not follow its
 *     merge order), Replace(' ', "▁") normalizer, Split(' ', merged_with_previous), a decoder
 *     without the Strip, <unk> as the unknown token;
 *   - "llama" of a Phi-3 model: as llama, but the prefix space comes from a Prepend + Replace
 *     normalizer and there is no pre-tokenizer.
 * Control tokens become special added tokens, user-defined ones plain added tokens, and
 * tokenizer.ggml.add_bos_token / add_eos_token become the post-processor.
 */
#include <jansson.h>
#include <string.h>

#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

#define GGUF_TOKEN_UNKNOWN 2
#define GGUF_TOKEN_CONTROL 3
#define GGUF_TOKEN_USER_DEFINED 4

static const char LLAMA3_SPLIT[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_SPLIT[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char GPT4O_SPLIT[] =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* tokenizer.ggml.pre -> split regex, as transformers' GGUF_PRE_TOKENIZER_SPLITS. */
static const char *pre_split(const char *pre, size_t n) {
    static const struct {
        const char *name;
        const char *re;
    } map[] = {
        {"llama3", LLAMA3_SPLIT}, {"llama-v3", LLAMA3_SPLIT}, {"llama-bpe", LLAMA3_SPLIT},
        {"falcon3", LLAMA3_SPLIT}, {"falcon-h1", LLAMA3_SPLIT}, {"pixtral", LLAMA3_SPLIT},
        {"midm-2.0", LLAMA3_SPLIT}, {"lfm2", LLAMA3_SPLIT}, {"jina-v5-nano", LLAMA3_SPLIT},
        {"dbrx", LLAMA3_SPLIT}, {"smaug-bpe", LLAMA3_SPLIT}, {"qwen2", QWEN2_SPLIT},
        {"deepseek-r1-qwen", QWEN2_SPLIT}, {"kormo", QWEN2_SPLIT}, {"f2llmv2", QWEN2_SPLIT},
        {"megrez", QWEN2_SPLIT}, {"gpt-4o", GPT4O_SPLIT}, {"llama4", GPT4O_SPLIT},
        {"kanana2", GPT4O_SPLIT}, {"talkie", GPT4O_SPLIT}, {"minimax-m2", GPT4O_SPLIT},
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (strlen(map[i].name) == n && !memcmp(map[i].name, pre, n)) return map[i].re;
    return NULL;
}

static bool str_is(eft__gguf_str s, const char *lit) { return s.len == strlen(lit) && !memcmp(s.ptr, lit, s.len); }

/* True when every character of s is in the GPT-2 byte alphabet. */
static bool in_byte_alphabet(const char *s, size_t n) {
    const eft__byte_map *bm = eft__byte_level_map();
    for (size_t i = 0; i < n;) {
        /* Most characters are ASCII: no decoding for them (this runs over every token at load). */
        unsigned char b = (unsigned char)s[i];
        if (b < 0x80) {
            if (bm->dec[b] < 0) return false;
            i++;
            continue;
        }
        int k;
        int32_t c = eft__utf8_decode(s + i, n - i, &k);
        if (c < 0 || c >= 324 || bm->dec[c] < 0) return false;
        i += (size_t)k;
    }
    return true;
}

static eft_status add_token(eft_tokenizer *t, const char *s, size_t n, int32_t id, bool special, eft__error *err) {
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id == id) {
            t->added[i].special |= special;
            return EFT_OK;
        }
    eft__added_token *v = eft__realloc(t->added, (t->n_added + 1) * sizeof *v);
    if (!v) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    t->added = v;
    eft__added_token *a = &v[t->n_added];
    memset(a, 0, sizeof *a);
    if (!(a->content = eft__strndup(s, n))) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    t->n_added++;
    a->len = n;
    a->id = id;
    a->special = special;
    return EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Merges derived from scores (transformers' generate_merges with vocab_scores)
 * ------------------------------------------------------------------------------------------- */

typedef struct gen_merge {
    int32_t l, r, merged;
    double score;
    uint32_t ll, rl; /* lengths in characters */
    uint64_t seq;    /* order of creation, for a stable sort */
} gen_merge;

static int cmp_local(const void *a, const void *b) {
    const gen_merge *x = a, *y = b;
    if (x->l != y->l) return x->l < y->l ? -1 : 1;
    if (x->r != y->r) return x->r < y->r ? -1 : 1;
    return 0;
}

static int cmp_global(const void *a, const void *b) {
    const gen_merge *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->ll != y->ll) return x->ll > y->ll ? -1 : 1;
    if (x->rl != y->rl) return x->rl > y->rl ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* One split point of a token in a batch: the byte offset, the characters left of it, the hashes of
 * both parts and the ids they resolve to (-1: not in the vocabulary). */
typedef struct split_probe {
    uint32_t tok; /* index into the batch */
    uint32_t at, lchars;
    uint32_t hl, hr;
    int32_t l, r;
} split_probe;

enum { MERGE_BATCH = 64 }; /* tokens whose lookups are in flight together */

/* transformers' generate_merges: every token of the vocabulary (each string once, at its first
 * id) is split at each character boundary, and a split whose two parts are both tokens is a
 * merge, ranked by the merged token's score, then the left part's length, the right part's, and
 * the order of creation. That is some 10^6 lookups in a map of 262k strings for Gemma, far larger
 * than the caches, so the lookups go in batches of MERGE_BATCH tokens: hash everything, prefetch,
 * then probe, so the misses overlap. The result is the same as one lookup after another. */
static eft_status derive_merges(eft__model *m, eft__error *err) {
    eft__vocab *v = &m->vocab;
    const eft__strmap *map = &v->map;
    gen_merge *all = NULL;
    split_probe *pr = NULL;
    size_t n = 0, cap = 0, npr = 0, prcap = 0;
    /* Per id: the string whose last occurrence is this id was already split (dict order keeps
     * each string's first occurrence; the map gives its last, which names the string). */
    uint8_t *done = eft__calloc(v->n ? v->n : 1, 1);
    eft_status st = done ? EFT_OK : eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    size_t id = 0;
    while (!st && id < v->n) {
        size_t bid[MERGE_BATCH];
        uint32_t bh[MERGE_BATCH], bchars[MERGE_BATCH];
        int32_t bmerged[MERGE_BATCH];
        int nb = 0;
        /* Phase 0: the next MERGE_BATCH tokens with text; hash and prefetch each whole string. */
        for (; id < v->n && nb < MERGE_BATCH; id++) {
            if (v->tok_len[id] == UINT32_MAX || v->tok_len[id] == 0) continue;
            bid[nb] = id;
            bh[nb] = eft__hash_bytes(v->arena + v->tok_off[id], v->tok_len[id]);
            eft__strmap_prefetch(map, bh[nb]);
            nb++;
        }
        /* Phase 1: the id each string resolves to; strings seen before are dropped. Each kept
         * token's prefixes are hashed in one pass (FNV-1a extends byte by byte). */
        npr = 0;
        for (int t = 0; t < nb && !st; t++) {
            const char *s = v->arena + v->tok_off[bid[t]];
            size_t len = v->tok_len[bid[t]];
            uint64_t x;
            int32_t merged = eft__strmap_get_hashed(map, s, len, bh[t], &x) ? (int32_t)x : (int32_t)bid[t];
            bmerged[t] = merged;
            bchars[t] = 0;
            if (done[merged]) {
                bmerged[t] = -1;
                continue;
            }
            done[merged] = 1;
            uint32_t h = 2166136261u, chars = 0;
            for (size_t i = 0; i < len;) {
                size_t k = (size_t)eft__utf8_len((unsigned char)s[i]);
                if (i > 0) {
                    if (npr == prcap) {
                        size_t nc = prcap ? prcap * 2 : 1024;
                        split_probe *np = eft__realloc(pr, nc * sizeof *np);
                        if (!np) {
                            st = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
                            break;
                        }
                        pr = np, prcap = nc;
                    }
                    pr[npr++] = (split_probe){(uint32_t)t, (uint32_t)i, chars, h, 0, -1, -1};
                    eft__strmap_prefetch(map, h);
                }
                for (size_t j = i; j < i + k && j < len; j++) h = (h ^ (uint8_t)s[j]) * 16777619u;
                chars++;
                i += k;
            }
            bchars[t] = chars;
        }
        /* Phase 2: the left parts; where one is a token, hash and prefetch the right part. */
        for (size_t q = 0; q < npr && !st; q++) {
            split_probe *p = &pr[q];
            const char *s = v->arena + v->tok_off[bid[p->tok]];
            uint64_t x;
            if (!eft__strmap_get_hashed(map, s, p->at, p->hl, &x)) continue;
            p->l = (int32_t)x;
            p->hr = eft__hash_bytes(s + p->at, v->tok_len[bid[p->tok]] - p->at);
            eft__strmap_prefetch(map, p->hr);
        }
        /* Phase 3: the right parts, and the merges in the order the one-by-one loop makes them. */
        size_t q = 0;
        for (int t = 0; t < nb && !st; t++) {
            size_t first = n;
            for (; q < npr && pr[q].tok == (uint32_t)t && !st; q++) {
                split_probe *p = &pr[q];
                if (p->l < 0) continue;
                const char *s = v->arena + v->tok_off[bid[t]];
                size_t len = v->tok_len[bid[t]];
                uint64_t x;
                if (!eft__strmap_get_hashed(map, s + p->at, len - p->at, p->hr, &x)) continue;
                if (n == cap) {
                    cap = cap ? cap * 2 : 4096;
                    gen_merge *nv = eft__realloc(all, cap * sizeof *nv);
                    if (!nv) {
                        st = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
                        break;
                    }
                    all = nv;
                }
                all[n++] = (gen_merge){p->l, (int32_t)x, bmerged[t], v->scores[bmerged[t]], p->lchars,
                                       bchars[t] - p->lchars, 0};
            }
            if (n - first > 1) qsort(all + first, n - first, sizeof *all, cmp_local);
            for (size_t i = first; i < n; i++) all[i].seq = i;
        }
    }
    eft__free(pr);
    eft__free(done);
    if (!st && n) qsort(all, n, sizeof *all, cmp_global);
    if (!st && !eft__u64map_reserve(&m->merges, m->merges.count + n))
        st = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    enum { AHEAD = 16 }; /* inserts whose slots are fetched ahead */
    for (size_t i = 0; !st && i < n; i++) {
        if (i + AHEAD < n) eft__u64map_prefetch(&m->merges, (uint64_t)(uint32_t)all[i + AHEAD].l << 32 | (uint32_t)all[i + AHEAD].r);
        uint64_t key = (uint64_t)(uint32_t)all[i].l << 32 | (uint32_t)all[i].r, old;
        if (eft__u64map_get(&m->merges, key, &old)) continue;
        if (!eft__u64map_put(&m->merges, key, (uint64_t)i << 32 | (uint32_t)all[i].merged))
            st = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    }
    eft__free(all);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Post-processor: bos / eos as add_bos_token and add_eos_token say
 * ------------------------------------------------------------------------------------------- */

static eft_status tpl_push(eft__tpl_item **v, size_t *n, int seq, uint32_t type, int32_t id, eft__error *err) {
    eft__tpl_item *nv = eft__realloc(*v, (*n + 1) * sizeof *nv);
    if (!nv) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    *v = nv;
    eft__tpl_item *it = &nv[(*n)++];
    memset(it, 0, sizeof *it);
    it->seq = seq;
    it->type_id = type;
    if (seq < 0) {
        if (!(it->ids = eft__malloc(sizeof *it->ids))) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        it->ids[0] = id;
        it->n_ids = 1;
    }
    return EFT_OK;
}

static eft_status build_post(eft_tokenizer *t, int32_t bos, int32_t eos, eft__error *err) {
    t->has_post = true;
    eft__post *p = &t->post;
    memset(p, 0, sizeof *p);
    p->kind = EFT__POST_TEMPLATE;
    eft_status st = EFT_OK;
    for (int pair = 0; pair < 2 && !st; pair++) {
        eft__tpl_item **v = pair ? &p->pair : &p->single;
        size_t *n = pair ? &p->n_pair : &p->n_single;
        for (int s = 0; s <= pair && !st; s++) {
            if (bos >= 0) st = tpl_push(v, n, -1, (uint32_t)s, bos, err);
            if (!st) st = tpl_push(v, n, s, (uint32_t)s, 0, err);
            if (!st && eos >= 0) st = tpl_push(v, n, -1, (uint32_t)s, eos, err);
        }
    }
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Gemma and Phi-3: the pipelines transformers' GGUF builders give them
 * ------------------------------------------------------------------------------------------- */

/* Python's str.isspace, which decides which Gemma tokens transformers respells. */
static bool py_space(int32_t c) { return eft__is_whitespace(c) || (c >= 0x1C && c <= 0x1F); }

/* A token made only of whitespace with at least one ' ' in it: transformers stores it as that many
 * "\u2581" (one per character), the spelling GemmaTokenizer looks up. Returns the number of
 * characters, or 0 when the token is kept as it is. */
static size_t gemma_respell_chars(const char *s, size_t n) {
    bool space = false;
    size_t chars = 0;
    for (size_t i = 0; i < n;) {
        int k;
        int32_t c = eft__utf8_decode(s + i, n - i, &k);
        if (c < 0 || !py_space(c)) return 0;
        space |= c == ' ';
        chars++;
        i += (size_t)k;
    }
    return space ? chars : 0;
}

/* Loaders take JSON, so the fixed pipelines are written as the tokenizer.json that would hold them. */
static eft_status load_json_part(const char *text, int which, eft_tokenizer *t, eft__error *err) {
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    if (!j) return eft__fail(err, EFT_ERR_INTERNAL, "built-in pipeline JSON: %s", jerr.text);
    eft_status st = which == 0   ? eft__normalizer_load(&t->normalizer, j, err)
                    : which == 1 ? eft__pretok_load(&t->pretok, j, err)
                                 : eft__tokdec_load(&t->decoder, j, err);
    json_decref(j);
    if (!st) {
        if (which == 0) t->has_normalizer = true;
        else if (which == 1) t->has_pretok = true;
        else t->has_decoder = true;
    }
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------------------------- */

static eft_status load(eft__gguf *g, const char *path, eft_tokenizer *t, eft__error *err) {
    eft__gguf_str model, arch = {"", 0}, pre = {"", 0};
    if (!eft__gguf_get_str(g, "tokenizer.ggml.model", &model))
        return eft__fail(err, EFT_ERR_NOT_FOUND, "%s has no tokenizer (no tokenizer.ggml.model)", path);
    eft__gguf_get_str(g, "general.architecture", &arch);
    eft__gguf_get_str(g, "tokenizer.ggml.pre", &pre);
    bool byte_level = str_is(model, "gpt2");
    if (!byte_level && !str_is(model, "llama"))
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: GGUF tokenizer model \"%.*s\" is not supported (gpt2 and llama are)",
                         path, (int)model.len, model.ptr);
    bool gemma = !byte_level && (str_is(arch, "gemma") || str_is(arch, "gemma2") || str_is(arch, "gemma3"));
    bool phi3 = !byte_level && str_is(arch, "phi3");
    const eft__gguf_kv *tokens = eft__gguf_find(g, "tokenizer.ggml.tokens");
    const eft__gguf_kv *types = eft__gguf_find(g, "tokenizer.ggml.token_type");
    const eft__gguf_kv *scores = eft__gguf_find(g, "tokenizer.ggml.scores");
    const eft__gguf_kv *merges = eft__gguf_find(g, "tokenizer.ggml.merges");
    uint64_t n = tokens ? eft__gguf_arr_len(tokens) : 0;
    if (!n || eft__gguf_arr_type(tokens) != EFT__GGUF_STRING)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: tokenizer.ggml.tokens is missing or not an array of strings", path);
    if (n >= (1u << 24)) return eft__fail(err, EFT_ERR_LIMIT, "%s: %llu tokens", path, (unsigned long long)n);
    if (types && eft__gguf_arr_len(types) != n)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: %llu token types for %llu tokens", path,
                         (unsigned long long)eft__gguf_arr_len(types), (unsigned long long)n);
    if (!byte_level && !gemma && !merges && (!scores || eft__gguf_arr_len(scores) != n))
        return eft__fail(err, EFT_ERR_FORMAT, "%s: tokenizer.ggml.scores must have one score per token", path);
    eft__model *m = &t->model;
    m->kind = EFT__MODEL_BPE;
    m->unk_id = -1;
    m->byte_fallback = !byte_level;
    m->fuse_unk = !byte_level;
    const eft__byte_map *bm = eft__byte_level_map();
    eft_status st;
    for (uint64_t i = 0; i < n; i++) {
        eft__gguf_str s;
        if (!eft__gguf_arr_str(g, tokens, i, &s)) return eft__fail(err, EFT_ERR_FORMAT, "%s: token %llu is unreadable", path, (unsigned long long)i);
        if (byte_level && !in_byte_alphabet(s.ptr, s.len)) {
            /* spelled in plain UTF-8: respell it in the byte alphabet */
            char *b = eft__malloc(s.len * 2 + 1);
            if (!b) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
            size_t w = 0;
            for (uint64_t k = 0; k < s.len; k++) {
                unsigned char c = (unsigned char)s.ptr[k];
                memcpy(b + w, bm->enc[c], bm->enc_len[c]);
                w += bm->enc_len[c];
            }
            st = eft__vocab_set(&m->vocab, (int32_t)i, b, w, err);
            eft__free(b);
        } else if (gemma && gemma_respell_chars(s.ptr, s.len)) {
            size_t chars = gemma_respell_chars(s.ptr, s.len);
            char *b = eft__malloc(chars * 3);
            if (!b) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
            for (size_t k = 0; k < chars; k++) memcpy(b + 3 * k, "\xE2\x96\x81", 3);
            st = eft__vocab_set(&m->vocab, (int32_t)i, b, chars * 3, err);
            eft__free(b);
        } else {
            st = eft__vocab_set(&m->vocab, (int32_t)i, s.ptr, (size_t)s.len, err);
        }
        if (st) return st;
        double sc = 0;
        if (gemma) sc = -(double)i; /* file order is the merge order (see the header) */
        else if (scores) eft__gguf_arr_f64(scores, i, &sc);
        m->vocab.scores[i] = sc;
    }
    if ((st = eft__vocab_index(&m->vocab, err))) return st;
    if (merges) {
        uint64_t nm = eft__gguf_arr_len(merges);
        for (uint64_t i = 0; i < nm; i++) {
            eft__gguf_str s;
            if (!eft__gguf_arr_str(g, merges, i, &s)) return eft__fail(err, EFT_ERR_FORMAT, "%s: merge %llu is unreadable", path, (unsigned long long)i);
            const char *sp = memchr(s.ptr, ' ', s.len);
            if (!sp) return eft__fail(err, EFT_ERR_FORMAT, "%s: merge %llu \"%.*s\" has no space", path, (unsigned long long)i,
                                      (int)(s.len > 100 ? 100 : s.len), s.ptr);
            size_t al = (size_t)(sp - s.ptr);
            /* transformers splits on every space; a merge with more than one is malformed */
            if (memchr(sp + 1, ' ', s.len - al - 1))
                return eft__fail(err, EFT_ERR_FORMAT, "%s: merge %llu has more than one space", path, (unsigned long long)i);
            if ((st = eft__bpe_add_merge(m, s.ptr, al, sp + 1, s.len - al - 1, (uint32_t)i, err))) return st;
        }
    } else if ((st = derive_merges(m, err))) {
        return st;
    }
    eft__bpe_init_bytes(m);
    /* Added tokens: control tokens (special), user-defined ones (not special), and the tokens
     * named by the special ids. */
    for (uint64_t i = 0; types && i < n; i++) {
        int64_t ty;
        if (!eft__gguf_arr_i64(types, i, &ty)) continue;
        size_t len;
        const char *s = eft__vocab_token(&m->vocab, (int32_t)i, &len);
        if (ty == GGUF_TOKEN_CONTROL) {
            eft__gguf_str raw;
            eft__gguf_arr_str(g, tokens, i, &raw);
            if (byte_level && !in_byte_alphabet(raw.ptr, raw.len)) continue; /* a llama.cpp mislabel */
            if ((st = add_token(t, s, len, (int32_t)i, true, err))) return st;
        } else if (ty == GGUF_TOKEN_USER_DEFINED) {
            /* transformers adds one only when its spelling in the file is a vocabulary entry,
             * which a respelled Gemma token is not */
            eft__gguf_str raw;
            eft__gguf_arr_str(g, tokens, i, &raw);
            int32_t other;
            if (gemma && (raw.len != len || memcmp(raw.ptr, s, len)) && !eft__vocab_get(&m->vocab, raw.ptr, raw.len, &other))
                continue;
            if ((st = add_token(t, s, len, (int32_t)i, false, err))) return st;
        }
    }
    static const char *special_keys[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                         "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"};
    int32_t special_ids[4] = {-1, -1, -1, -1};
    for (int k = 0; k < 4; k++) {
        uint64_t id;
        if (!eft__gguf_get_u64(g, special_keys[k], &id) || id >= n) continue;
        special_ids[k] = (int32_t)id;
        size_t len;
        const char *s = eft__vocab_token(&m->vocab, (int32_t)id, &len);
        if ((st = add_token(t, s, len, (int32_t)id, true, err))) return st;
    }
    if (gemma) {
        /* GemmaTokenizer's own special tokens: <unk> is the model's unknown token, <mask> special. */
        int32_t id;
        if (eft__vocab_get(&m->vocab, "<unk>", 5, &id)) m->unk_id = id;
        if (eft__vocab_get(&m->vocab, "<mask>", 6, &id) && (st = add_token(t, "<mask>", 6, id, true, err))) return st;
        if (special_ids[2] >= 0) m->unk_id = special_ids[2];
        if ((st = load_json_part("{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\u2581\"}", 0, t, err)) ||
            (st = load_json_part("{\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"MergedWithPrevious\", \"invert\": false}", 1, t, err)) ||
            (st = load_json_part("{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"\u2581\"}, \"content\": \" \"},"
                                 " {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}]}", 2, t, err)))
            return st;
    }
    /* Pre-tokenizer and decoder. */
    t->has_pretok = true;
    t->has_decoder = true;
    eft__tokdec *d = &t->decoder;
    if (byte_level) {
        const char *split = pre_split(pre.ptr, pre.len);
        if (split) {
            eft__pretok *p = &t->pretok;
            p->kind = EFT__PRE_SEQUENCE;
            p->items = eft__calloc(2, sizeof *p->items);
            if (!p->items) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
            p->n_items = 2;
            p->items[0].kind = EFT__PRE_SPLIT;
            p->items[0].behavior = EFT__SPLIT_ISOLATED;
            if ((st = eft__regex_compile(&p->items[0].re, split, strlen(split), err))) return st;
            if ((st = eft__pretok_init_byte_level(&p->items[1], false, false, NULL, err))) return st;
        } else if ((st = eft__pretok_init_byte_level(&t->pretok, false, true, NULL, err))) {
            return st;
        }
        d->kind = EFT__DEC_BYTE_LEVEL;
    } else if (gemma) {
        /* set above */
    } else {
        if (phi3) {
            t->has_pretok = false;
            if ((st = load_json_part("{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"\u2581\"},"
                                     " {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\u2581\"}]}", 0, t, err)))
                return st;
        }
        t->pretok.kind = EFT__PRE_METASPACE;
        t->pretok.replacement = 0x2581;
        t->pretok.prepend = EFT__PREPEND_FIRST;
        t->pretok.split = false;
        d->kind = EFT__DEC_SEQUENCE;
        d->items = eft__calloc(4, sizeof *d->items);
        if (!d->items) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        d->n_items = 4;
        d->items[0].kind = EFT__DEC_REPLACE;
        d->items[0].pattern = eft__strdup("\xE2\x96\x81");
        d->items[0].pattern_len = 3;
        d->items[0].content = eft__strdup(" ");
        d->items[0].content_len = 1;
        d->items[1].kind = EFT__DEC_BYTE_FALLBACK;
        d->items[2].kind = EFT__DEC_FUSE;
        d->items[3].kind = EFT__DEC_STRIP;
        d->items[3].content = eft__strdup(" ");
        d->items[3].content_len = 1;
        d->items[3].start = 1;
        if (!d->items[0].pattern || !d->items[0].content || !d->items[3].content)
            return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    }
    bool add_bos = !byte_level, add_eos = false; /* transformers' defaults for files that say nothing */
    eft__gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos);
    eft__gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &add_eos);
    if ((st = build_post(t, add_bos ? special_ids[0] : -1, add_eos ? special_ids[1] : -1, err))) return st;
    return eft__tokenizer_finish(t, err);
}

static eft_status load_opened(eft__gguf *g, const char *path, eft_tokenizer **out, eft__error *err);

eft_status eft__tokenizer_load_gguf(const char *path, eft_tokenizer **out, eft__error *err) {
    eft__gguf *g = NULL;
    eft_status st = eft__gguf_open(path, &g, err);
    return st ? st : load_opened(g, path, out, err);
}

eft_status eft__tokenizer_load_gguf_memory(const uint8_t *data, size_t size, const char *label, eft_tokenizer **out,
                                           eft__error *err) {
    eft__gguf *g = NULL;
    eft_status st = eft__gguf_open_memory(data, size, label, &g, err);
    return st ? st : load_opened(g, label, out, err);
}

/* Builds the tokenizer from an open file and closes it. */
static eft_status load_opened(eft__gguf *g, const char *path, eft_tokenizer **out, eft__error *err) {
    eft_status st;
    eft_tokenizer *t = eft__calloc(1, sizeof *t);
    st = t ? load(g, path, t, err) : eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    eft__gguf_close(g);
    if (st) {
        eft_tokenizer_close(t);
        return st;
    }
    *out = t;
    return EFT_OK;
}
