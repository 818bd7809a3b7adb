/*
 * st_modules.h — what a sentence-transformers folder says about turning token states into one
 * embedding: modules.json (which modules, in which order), the Pooling module's config.json,
 * sentence_bert_config.json (max_seq_length, do_lower_case) and
 * config_sentence_transformers.json (prompts, similarity). Only Transformer, Pooling and
 * Normalize modules are implemented; any other module is refused by type and path, because
 * skipping it would silently change the embeddings.
 */
#ifndef EFT_FORMATS_ST_MODULES_H
#define EFT_FORMATS_ST_MODULES_H

#include "core/core.h"

/* Pooling modes in sentence-transformers' legacy concatenation order. */
typedef enum eft__pooling_mode {
    EFT__POOL_CLS,
    EFT__POOL_MAX,
    EFT__POOL_MEAN,
    EFT__POOL_MEAN_SQRT_LEN,
    EFT__POOL_WEIGHTEDMEAN,
    EFT__POOL_LASTTOKEN,
    EFT__POOL_COUNT
} eft__pooling_mode;

typedef struct eft__pooling_config {
    bool cls, mean, max, mean_sqrt_len, weightedmean, lasttoken;
    bool include_prompt;
    int word_embedding_dimension; /* "embedding_dimension" in v6 files; 0 = not given */
    /* The enabled modes in the order their outputs are concatenated: the legacy order for the
     * pooling_mode_* keys, the file's order for a "pooling_mode" list (v6). */
    eft__pooling_mode order[EFT__POOL_COUNT];
    int n_modes;
} eft__pooling_config;

typedef struct eft__st_prompt {
    char *name;
    char *text;
} eft__st_prompt;

typedef struct eft__st_config {
    bool present; /* modules.json was found */
    bool has_pooling;
    eft__pooling_config pooling;
    bool normalize;     /* a Normalize module */
    int max_seq_length; /* 0 = not given */
    bool do_lower_case;
    eft__st_prompt *prompts;
    size_t n_prompts;
    char *default_prompt_name; /* NULL = none */
    char *similarity_fn_name;  /* NULL = not given (sentence-transformers uses cosine) */
    char *transformer_path;    /* the Transformer module's path ("" = the folder itself) */
    char *pooling_path;        /* the Pooling module's path; NULL when there is none */
} eft__st_config;

/* Reads the sentence-transformers files in dir. Absent files are fine: present = false and the
 * defaults. On failure *out holds nothing that needs freeing. */
eft_status eft__st_config_load(const char *dir, eft__st_config *out, eft__error *err);
void eft__st_config_free(eft__st_config *c); /* NULL is a no-op */

/* modules.json: fills present, normalize, transformer_path; has_pooling is set when a Pooling
 * module is listed (its config is read by eft__st_config_load from pooling_path). */
eft_status eft__st_parse_modules(const char *json, size_t len, const char *label,
                                 eft__st_config *out, eft__error *err);
/* A Pooling module's config.json. */
eft_status eft__st_parse_pooling(const char *json, size_t len, const char *label,
                                 eft__pooling_config *out, eft__error *err);
/* sentence_bert_config.json and config_sentence_transformers.json. */
eft_status eft__st_parse_sbert_config(const char *json, size_t len, const char *label,
                                      eft__st_config *out, eft__error *err);
eft_status eft__st_parse_st_config(const char *json, size_t len, const char *label,
                                   eft__st_config *out, eft__error *err);

/* sentence-transformers' name for one mode ("cls", "mean_sqrt_len_tokens", ...). */
const char *eft__pooling_mode_name(eft__pooling_mode m);
/* "mean", "cls+mean", ... in concatenation order; "none" when nothing is enabled. Returns buf. */
const char *eft__pooling_names(const eft__pooling_config *p, char *buf, size_t n);

#endif /* EFT_FORMATS_ST_MODULES_H */
