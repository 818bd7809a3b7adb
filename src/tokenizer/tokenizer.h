/*
 * tokenizer.h — the internals of eft's tokenizer: one pipeline (added tokens, normalizer,
 * pre-tokenizer, model, post-processor, decoder) that reproduces Hugging Face `tokenizers`
 * id for id, loaded from tokenizer.json or from a GGUF vocabulary. Components are tagged unions
 * built once at load and read-only afterwards, so one tokenizer serves any number of threads.
 *
 * Text travels through the pipeline as an eft__nstr: UTF-8 bytes plus, for every byte, the span of
 * original input bytes it came from, which is how offsets survive normalization and pre-tokenizing.
 */
#ifndef EFT_TOKENIZER_TOKENIZER_H
#define EFT_TOKENIZER_TOKENIZER_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/core.h"
#include "core/strmap.h"

struct json_t;

/* ---------------------------------------------------------------------------------------------
 * Text with alignments
 * ------------------------------------------------------------------------------------------- */

typedef struct eft__span {
    uint32_t start, end; /* original bytes [start, end) */
} eft__span;

typedef struct eft__nstr {
    char *s;
    eft__span *al; /* al[i]: where byte s[i] came from */
    size_t len, cap;
} eft__nstr;

bool eft__nstr_reserve(eft__nstr *n, size_t extra);
/* Appends bytes that all came from span sp. */
bool eft__nstr_push(eft__nstr *n, const char *s, size_t len, eft__span sp);
void eft__nstr_free(eft__nstr *n);

/* One piece of pre-tokenized text: bytes [off, off+len) of the pieces' text. id >= 0 marks an
 * added token that was matched already and is not tokenized further. */
typedef struct eft__piece {
    uint32_t off, len;
    int32_t id;
} eft__piece;

typedef struct eft__pieces {
    eft__nstr text;
    eft__piece *p;
    size_t n, cap;
} eft__pieces;

bool eft__pieces_add(eft__pieces *ps, uint32_t off, uint32_t len, int32_t id);
void eft__pieces_free(eft__pieces *ps);

/* UTF-8 helpers over text known to be valid. */
int eft__utf8_len(unsigned char c);                         /* length from the lead byte */
int32_t eft__utf8_decode(const char *s, size_t n, int *len); /* -1 on invalid */
int eft__utf8_encode(int32_t c, char *out);                  /* 1..4 bytes */
/* Rust's char::is_whitespace (the Unicode White_Space property). */
bool eft__is_whitespace(int32_t c);
/* HF's BERT punctuation: ASCII punctuation or a Unicode P* category. */
bool eft__is_punctuation(int32_t c);

/* A compiled regex; PCRE2 with UTF and UCP, JIT when available. */
typedef struct eft__regex {
    pcre2_code *code;
} eft__regex;
eft_status eft__regex_compile(eft__regex *re, const char *pattern, size_t len, eft__error *err);
void eft__regex_free(eft__regex *re);
/* Finds the next match at or after start; false when none. md must come from
 * eft__regex_match_data. */
bool eft__regex_next(const eft__regex *re, pcre2_match_data *md, const char *s, size_t len,
                     size_t start, size_t *mstart, size_t *mend);
pcre2_match_data *eft__regex_match_data(const eft__regex *re);
pcre2_general_context *eft__pcre2_context(void);

/* ---------------------------------------------------------------------------------------------
 * Normalizers (normalizer.c)
 * ------------------------------------------------------------------------------------------- */

typedef enum eft__norm_kind {
    EFT__NORM_BERT,
    EFT__NORM_NFC,
    EFT__NORM_NFD,
    EFT__NORM_NFKC,
    EFT__NORM_NFKD,
    EFT__NORM_LOWERCASE,
    EFT__NORM_STRIP_ACCENTS,
    EFT__NORM_REPLACE,
    EFT__NORM_PREPEND,
    EFT__NORM_STRIP,
    EFT__NORM_PRECOMPILED,
    EFT__NORM_SEQUENCE,
} eft__norm_kind;

typedef struct eft__normalizer {
    eft__norm_kind kind;
    bool clean_text, chinese_chars, strip_accents, lowercase; /* BERT */
    bool left, right;                                           /* STRIP */
    char *pattern, *content; /* REPLACE (pattern literal unless re.code), PREPEND (content) */
    size_t pattern_len, content_len;
    eft__regex re;
    uint32_t *trie; /* PRECOMPILED: darts-clone double array */
    size_t trie_units;
    char *pc_strings; /* PRECOMPILED: NUL-separated replacement strings */
    size_t pc_strings_len;
    struct eft__normalizer *items; /* SEQUENCE */
    size_t n_items;
} eft__normalizer;

eft_status eft__normalizer_load(eft__normalizer *n, const struct json_t *j, eft__error *err);
void eft__normalizer_free(eft__normalizer *n);
/* Normalizes in into out (cleared first); in is left unchanged. False when out of memory. */
bool eft__normalize(const eft__normalizer *n, const eft__nstr *in, eft__nstr *out);

/* ---------------------------------------------------------------------------------------------
 * Pre-tokenizers (pretokenizer.c)
 * ------------------------------------------------------------------------------------------- */

typedef enum eft__split_behavior {
    EFT__SPLIT_REMOVED,
    EFT__SPLIT_ISOLATED,
    EFT__SPLIT_MERGED_PREV,
    EFT__SPLIT_MERGED_NEXT,
    EFT__SPLIT_CONTIGUOUS,
} eft__split_behavior;

typedef enum eft__pretok_kind {
    EFT__PRE_BERT,
    EFT__PRE_BYTE_LEVEL,
    EFT__PRE_METASPACE,
    EFT__PRE_SPLIT,
    EFT__PRE_DIGITS,
    EFT__PRE_PUNCTUATION,
    EFT__PRE_WHITESPACE,
    EFT__PRE_WHITESPACE_SPLIT,
    EFT__PRE_CHAR_DELIMITER,
    EFT__PRE_SEQUENCE,
} eft__pretok_kind;

typedef enum eft__prepend_scheme {
    EFT__PREPEND_ALWAYS,
    EFT__PREPEND_FIRST,
    EFT__PREPEND_NEVER,
} eft__prepend_scheme;

typedef struct eft__pretok {
    eft__pretok_kind kind;
    eft__split_behavior behavior;
    bool invert, add_prefix_space, use_regex, split, individual_digits, trim_offsets;
    eft__prepend_scheme prepend;
    int32_t replacement; /* METASPACE, CHAR_DELIMITER: the code point */
    char *pattern;       /* SPLIT with a String pattern */
    size_t pattern_len;
    eft__regex re; /* SPLIT with a Regex pattern, BYTE_LEVEL use_regex, WHITESPACE */
    struct eft__pretok *items;
    size_t n_items;
} eft__pretok;

eft_status eft__pretok_load(eft__pretok *p, const struct json_t *j, eft__error *err);
eft_status eft__pretok_init_byte_level(eft__pretok *p, bool add_prefix_space, bool use_regex,
                                       const char *regex, eft__error *err);
void eft__pretok_free(eft__pretok *p);
/* Splits and rewrites the pieces of in into out (cleared first). False when out of memory. */
bool eft__pretokenize(const eft__pretok *p, const eft__pieces *in, eft__pieces *out,
                      pcre2_match_data *md);

/* The GPT-2 byte <-> unicode table ("Ġ" for a space); encodes 256 bytes as UTF-8 strings. */
typedef struct eft__byte_map {
    char enc[256][3];
    uint8_t enc_len[256];
    int16_t dec[324]; /* code point -> byte, -1 when unmapped */
} eft__byte_map;
const eft__byte_map *eft__byte_level_map(void);

/* ---------------------------------------------------------------------------------------------
 * Models (wordpiece.c, bpe.c, unigram.c)
 * ------------------------------------------------------------------------------------------- */

typedef enum eft__model_kind {
    EFT__MODEL_WORDPIECE,
    EFT__MODEL_BPE,
    EFT__MODEL_UNIGRAM,
    EFT__MODEL_WORD_LEVEL,
} eft__model_kind;

typedef struct eft__u64map {
    uint64_t *keys; /* UINT64_MAX: empty */
    uint64_t *vals;
    size_t cap, count;
} eft__u64map;
bool eft__u64map_put(eft__u64map *m, uint64_t key, uint64_t val);
bool eft__u64map_get(const eft__u64map *m, uint64_t key, uint64_t *val);
/* Makes room for n keys in all (false: out of memory, the map unchanged). */
bool eft__u64map_reserve(eft__u64map *m, size_t n);
/* Fetches key's first slot into the cache ahead of a put or get, for bulk inserts into a map
 * larger than the caches. */
void eft__u64map_prefetch(const eft__u64map *m, uint64_t key);
void eft__u64map_free(eft__u64map *m);

/* The model's "vocab" object and "merges" array of a tokenizer.json, read by the dedicated
 * scanner of tokenizer_json.c rather than jansson (they are most of the document). Strings are
 * borrowed from the document, or from strings when they had escapes; none holds a NUL. */
typedef struct eft__vocab_entry {
    const char *s;
    uint32_t len;
    int32_t id; /* 0..2^24-1 */
} eft__vocab_entry;

typedef struct eft__merge_entry {
    const char *a, *b; /* b NULL: the "a b" form, a is the whole string */
    uint32_t alen, blen;
} eft__merge_entry;

typedef struct eft__json_pre {
    bool declined; /* load the original document with jansson instead */
    bool has_vocab, has_merges;
    eft__vocab_entry *vocab;
    size_t n_vocab, vocab_cap, vocab_bytes;
    int32_t max_id;
    eft__merge_entry *merges;
    size_t n_merges, merges_cap;
    size_t vocab_span[2], merges_span[2]; /* byte ranges of the two values in the document */
    char *strings;                        /* decoded strings that had escapes */
    size_t strings_len;
    char *doc; /* the document with the two values replaced by {} and [] */
    size_t doc_len;
} eft__json_pre;

/* Scans json: EFT_OK with pre->declined set when the fast path does not apply (see
 * tokenizer_json.c), else with pre filled; EFT_ERR_OUT_OF_MEMORY. */
eft_status eft__json_pre_scan(const char *json, size_t len, eft__json_pre *pre, eft__error *err);
void eft__json_pre_free(eft__json_pre *pre);
/* Whether tokenizer.json loading uses the scanner (true unless a test compares both paths). */
extern bool eft__tokenizer_json_scan;

/* The vocabulary shared by every model: id -> token text, text -> id. Token strings live in one
 * arena so that the JSON document can be released after loading. */
typedef struct eft__vocab {
    char *arena;
    size_t arena_len, arena_cap;
    uint32_t *tok_off, *tok_len; /* per id; tok_len UINT32_MAX: no token with this id */
    double *scores;              /* UNIGRAM and GGUF llama: per id */
    size_t n;                    /* ids 0..n-1 */
    eft__strmap map;
} eft__vocab;

eft_status eft__vocab_set(eft__vocab *v, int32_t id, const char *s, size_t len, eft__error *err);
/* Sizes the tables for ids up to max_id and bytes of token text (each token's NUL included), so
 * that loading a known vocabulary does not grow them step by step. */
eft_status eft__vocab_reserve(eft__vocab *v, int32_t max_id, size_t bytes, eft__error *err);
/* Builds the text -> id map; after the last eft__vocab_set, before any eft__vocab_get. */
eft_status eft__vocab_index(eft__vocab *v, eft__error *err);
/* Loads {"token": id, ...} and indexes it. */
eft_status eft__vocab_load_object(eft__vocab *v, const struct json_t *vocab, const char *model,
                                  eft__json_pre *pre, eft__error *err);
bool eft__vocab_get(const eft__vocab *v, const char *s, size_t len, int32_t *id);
const char *eft__vocab_token(const eft__vocab *v, int32_t id, size_t *len);
void eft__vocab_free(eft__vocab *v);


typedef struct eft__model {
    eft__model_kind kind;
    eft__vocab vocab;
    int32_t unk_id; /* -1: none */
    /* WordPiece */
    char *prefix; /* continuing_subword_prefix (also BPE) */
    size_t prefix_len;
    size_t max_input_chars;
    /* BPE */
    char *suffix; /* end_of_word_suffix */
    size_t suffix_len;
    eft__u64map merges; /* (left id << 32 | right id) -> (rank << 32 | new id) */
    bool fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_ids[256]; /* byte_fallback: id of "<0xXX>", -1 if absent */
    /* BPE: a word may be cut before each "\u2581" that follows a character other than those in
     * meta_block, because no token spans such a place (see eft__bpe_init_bytes). */
    bool meta_split;
    uint8_t n_meta_block;
    int32_t meta_block[16];
    /* Unigram */
    double min_score;
    size_t max_token_len; /* bytes */
} eft__model;

/* Tokens a model produced for one piece: id and byte range within the piece. */
typedef struct eft__tok {
    int32_t id;
    uint32_t start, end;
} eft__tok;

typedef struct eft__toks {
    eft__tok *t;
    size_t n, cap;
} eft__toks;
bool eft__toks_add(eft__toks *ts, int32_t id, uint32_t start, uint32_t end);

/* pre (may be NULL): the vocab and merges read by the scanner; the loaders take them instead of
 * j's, and set pre->declined when the jansson path must decide after all. */
eft_status eft__model_load(eft__model *m, const struct json_t *j, eft__json_pre *pre, eft__error *err);
void eft__model_free(eft__model *m);
bool eft__model_tokenize(const eft__model *m, const char *s, size_t len, eft__toks *out);

eft_status eft__wordpiece_load(eft__model *m, const struct json_t *j, eft__json_pre *pre, eft__error *err);
bool eft__wordpiece_tokenize(const eft__model *m, const char *s, size_t len, eft__toks *out);
eft_status eft__bpe_load(eft__model *m, const struct json_t *j, eft__json_pre *pre, eft__error *err);
/* Adds merge "a b" (rank = its position); used by the JSON and GGUF loaders. */
eft_status eft__bpe_add_merge(eft__model *m, const char *a, size_t alen, const char *b,
                              size_t blen, uint32_t rank, eft__error *err);
void eft__bpe_init_bytes(eft__model *m);
bool eft__bpe_tokenize(const eft__model *m, const char *s, size_t len, eft__toks *out);
eft_status eft__unigram_load(eft__model *m, const struct json_t *j, eft__error *err);
void eft__unigram_finish(eft__model *m);
bool eft__unigram_tokenize(const eft__model *m, const char *s, size_t len, eft__toks *out);

/* ---------------------------------------------------------------------------------------------
 * Post-processors (postprocess.c)
 * ------------------------------------------------------------------------------------------- */

typedef enum eft__post_kind {
    EFT__POST_TEMPLATE, /* BertProcessing and RobertaProcessing are loaded as templates */
    EFT__POST_BYTE_LEVEL,
    EFT__POST_SEQUENCE,
} eft__post_kind;

/* One template element: a sequence (seq 0 = A, 1 = B) or special token ids. */
typedef struct eft__tpl_item {
    int seq; /* 0, 1, or -1 for special tokens */
    uint32_t type_id;
    int32_t *ids;
    size_t n_ids;
} eft__tpl_item;

typedef struct eft__post {
    eft__post_kind kind;
    eft__tpl_item *single, *pair;
    size_t n_single, n_pair;
    bool trim_offsets, add_prefix_space; /* BYTE_LEVEL, Roberta */
    struct eft__post *items;
    size_t n_items;
} eft__post;

eft_status eft__post_load(eft__post *p, const struct json_t *j, eft__error *err);
void eft__post_free(eft__post *p);
/* Special tokens the processor adds to one sequence (pair = false) or a pair. */
size_t eft__post_added(const eft__post *p, bool pair);

/* ---------------------------------------------------------------------------------------------
 * Decoders (decoder.c)
 * ------------------------------------------------------------------------------------------- */

typedef enum eft__dec_kind {
    EFT__DEC_BYTE_LEVEL,
    EFT__DEC_WORDPIECE,
    EFT__DEC_METASPACE,
    EFT__DEC_BYTE_FALLBACK,
    EFT__DEC_FUSE,
    EFT__DEC_STRIP,
    EFT__DEC_REPLACE,
    EFT__DEC_BPE,
    EFT__DEC_CTC,
    EFT__DEC_SEQUENCE,
} eft__dec_kind;

typedef struct eft__tokdec {
    eft__dec_kind kind;
    char *prefix; /* WORDPIECE prefix, BPE suffix */
    size_t prefix_len;
    bool cleanup;
    int32_t replacement;          /* METASPACE */
    eft__prepend_scheme prepend;  /* METASPACE */
    char *content, *pattern;      /* STRIP content (one char), REPLACE; CTC pad token, word delimiter */
    size_t content_len, pattern_len;
    size_t start, stop; /* STRIP */
    eft__regex re;      /* REPLACE with a Regex pattern */
    struct eft__tokdec *items;
    size_t n_items;
} eft__tokdec;

/* A list of strings in one buffer, the currency of decoders. */
typedef struct eft__strlist {
    char *buf;
    size_t len, cap;
    size_t *off, *slen;
    size_t n, ncap;
} eft__strlist;
bool eft__strlist_add(eft__strlist *l, const char *s, size_t len);
void eft__strlist_free(eft__strlist *l);

eft_status eft__tokdec_load(eft__tokdec *d, const struct json_t *j, eft__error *err);
void eft__tokdec_free(eft__tokdec *d);
/* Runs the decoder over the tokens in *l, replacing it. False when out of memory. */
bool eft__decode_chain(const eft__tokdec *d, eft__strlist *l);

/* ---------------------------------------------------------------------------------------------
 * The tokenizer (tokenizer.c, tokenizer_gguf.c)
 * ------------------------------------------------------------------------------------------- */

typedef struct eft__added_token {
    char *content;
    size_t len;
    char *norm; /* content after the normalizer (normalized tokens only) */
    size_t norm_len;
    int32_t id;
    bool special, normalized, lstrip, rstrip, single_word;
} eft__added_token;

struct eft_tokenizer {
    eft__model model;
    bool has_normalizer, has_pretok, has_post, has_decoder;
    eft__normalizer normalizer;
    eft__pretok pretok;
    eft__post post;
    eft__tokdec decoder;
    eft__added_token *added;
    size_t n_added;
    int32_t max_id; /* largest id of the model or an added token */
    /* Lookup of added tokens by first byte: indices into added, longest first. */
    uint32_t *added_by_byte[256];
    uint32_t added_by_byte_n[256];
    uint32_t *norm_by_byte[256];
    uint32_t norm_by_byte_n[256];
};

/* Finishes a tokenizer whose model and components are set: indexes the added tokens. */
eft_status eft__tokenizer_finish(eft_tokenizer *t, eft__error *err);
void eft__tokenizer_free_parts(eft_tokenizer *t);
eft_status eft__tokenizer_load_gguf(const char *path, eft_tokenizer **out, eft__error *err);
/* The same from a GGUF image in memory (kept alive by the caller during the call only); label
 * names it in messages. The fuzz target's way in. */
eft_status eft__tokenizer_load_gguf_memory(const uint8_t *data, size_t size, const char *label, eft_tokenizer **out,
                                           eft__error *err);

/* A JSON accessor used by every loader: the string member key, or NULL. */
const char *eft__json_str(const struct json_t *j, const char *key, size_t *len);
/* A boolean member, def when absent or null. */
bool eft__json_bool(const struct json_t *j, const char *key, bool def);

#endif /* EFT_TOKENIZER_TOKENIZER_H */
