/*
 * model_internal.h — the inside of the public eft_model handle, shared by the files of src/api/
 * and, later, by the model builders: the readers it owns and the tensors they hold.
 */
#ifndef EFT_API_MODEL_INTERNAL_H
#define EFT_API_MODEL_INTERNAL_H

#include "core/core.h"
#include "formats/gguf.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "formats/st_modules.h"
#include "formats/tensor.h"

/* What `eft info` says about the tokenizer, read without building it. */
typedef struct eft__model_tokenizer {
    char *file;           /* tokenizer.json, or the .gguf holding the vocabulary; NULL: none */
    char *kind;           /* WordPiece, BPE, Unigram (tokenizer.json); gpt2, llama, bert... (GGUF) */
    int64_t vocab_size;   /* entries of the model's vocabulary, added tokens not counted */
    int64_t added_tokens; /* tokenizer.json's added_tokens */
    int64_t merges;       /* GGUF BPE merges */
    bool byte_fallback;
    bool has_chat_template;
    char *normalizer, *pre_tokenizer, *post_processor, *decoder; /* component types, or NULL */
} eft__model_tokenizer;

struct eft_model {
    char *ref;  /* what the caller passed */
    char *path; /* the folder or .gguf file it resolved to */
    bool is_gguf;
    bool has_cfg, has_st;
    eft__model_config cfg;
    eft__st_config st;
    eft__st_checkpoint *ckpt; /* folder: the safetensors checkpoint */
    eft__gguf *gguf;          /* GGUF: the file */
    eft__model_tokenizer tok;  /* GGUF: at open; tokenizer.json: by eft__model_summarise_tokenizer */
    char *tok_json_path;       /* the folder's tokenizer.json, NULL when it has none */
    char errmsg[EFT__ERRMSG_MAX];
};

/* Fills m->tok from the folder's tokenizer.json the first time it is called (a no-op for GGUF
 * files and folders without one). */
eft_status eft__model_summarise_tokenizer(eft_model *m, eft__error *err);

size_t eft__model_tensor_count(const eft_model *m);
const eft__tensor_view *eft__model_tensor(const eft_model *m, size_t i);
const eft__tensor_view *eft__model_find_tensor(const eft_model *m, const char *name);

#endif /* EFT_API_MODEL_INTERNAL_H */
