/*
 * model_ref.h — turns what a user typed as a model into a local path: an existing folder, a GGUF
 * file (recognised by its magic bytes, not its name), or a Hugging Face id ("org/name",
 * "org/name/file.gguf") already present in the local Hugging Face cache. eft never downloads;
 * a miss says everything that was tried and how to fetch the model.
 */
#ifndef EFT_FORMATS_MODEL_REF_H
#define EFT_FORMATS_MODEL_REF_H

#include "core/core.h"

typedef enum eft__model_ref_kind { EFT__REF_DIR, EFT__REF_GGUF } eft__model_ref_kind;

/* Resolves ref. cache_dir NULL: $HF_HUB_CACHE, else $HF_HOME/hub, else
 * $HOME/.cache/huggingface/hub. revision NULL: "main"; a 40-hex revision is a commit. A cache
 * snapshot (or folder) without config.json that holds exactly one .gguf file resolves to that
 * file. *out_path is a fresh allocation the caller frees with eft__free. */
eft_status eft__model_ref_resolve(const char *ref, const char *cache_dir, const char *revision,
                                  char **out_path, eft__model_ref_kind *out_kind, eft__error *err);

/* The Hugging Face hub cache folder eft would search (cache_dir when given); fresh allocation,
 * NULL on out of memory. */
char *eft__hf_cache_dir(const char *cache_dir);

/* True when path is a regular file that starts with the GGUF magic "GGUF". */
bool eft__file_is_gguf(const char *path);

#endif /* EFT_FORMATS_MODEL_REF_H */
