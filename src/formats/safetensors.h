/*
 * safetensors.h — the safetensors reader: one file (mapped, its JSON header validated, every
 * tensor a bounds-checked view into the mapping), and a checkpoint that may be sharded across
 * several files with a model.safetensors.index.json. Also the plain-dtype to float conversion that
 * readers and tests use to look at stored values.
 */
#ifndef EFT_FORMATS_SAFETENSORS_H
#define EFT_FORMATS_SAFETENSORS_H

#include "formats/tensor.h"

/* Headers larger than this are refused (the reference implementation's limit too). */
#define EFT__ST_MAX_HEADER (100u * 1000u * 1000u)

/* ---------------------------------------------------------------------------------------------
 * One file
 * ------------------------------------------------------------------------------------------- */

typedef struct eft__safetensors eft__safetensors;

/* Maps path read-only and validates it completely; on failure *out is NULL and err names the file,
 * the tensor or key, and the numbers. */
eft_status eft__safetensors_open(const char *path, eft__safetensors **out, eft__error *err);
/* Validates a buffer the caller keeps alive for the life of the handle (fuzzing, tests); label
 * names it in messages. */
eft_status eft__safetensors_open_memory(const uint8_t *data, uint64_t size, const char *label,
                                        eft__safetensors **out, eft__error *err);
void eft__safetensors_close(eft__safetensors *st); /* NULL is a no-op */

/* Tensors in file order (sorted by data offset); views are borrowed until close. */
size_t eft__safetensors_count(const eft__safetensors *st);
const eft__tensor_view *eft__safetensors_tensor(const eft__safetensors *st, size_t i);
const eft__tensor_view *eft__safetensors_find(const eft__safetensors *st, const char *name);

/* The optional "__metadata__" object, in header order; strings borrowed until close. */
const char *eft__safetensors_metadata(const eft__safetensors *st, const char *key);
size_t eft__safetensors_metadata_count(const eft__safetensors *st);
const char *eft__safetensors_metadata_key(const eft__safetensors *st, size_t i);
const char *eft__safetensors_metadata_value(const eft__safetensors *st, size_t i);

/* ---------------------------------------------------------------------------------------------
 * A checkpoint folder: model.safetensors.index.json with its shards, else model.safetensors, else
 * the only *.safetensors file in the folder.
 * ------------------------------------------------------------------------------------------- */

typedef struct eft__st_checkpoint eft__st_checkpoint;

eft_status eft__st_checkpoint_open_dir(const char *dir, eft__st_checkpoint **out, eft__error *err);
void eft__st_checkpoint_close(eft__st_checkpoint *c); /* NULL is a no-op */
/* All tensors of all shards, shard by shard; a view's file_index is its shard's index. */
size_t eft__st_checkpoint_count(const eft__st_checkpoint *c);
const eft__tensor_view *eft__st_checkpoint_tensor(const eft__st_checkpoint *c, size_t i);
const eft__tensor_view *eft__st_checkpoint_find(const eft__st_checkpoint *c, const char *name);
size_t eft__st_checkpoint_file_count(const eft__st_checkpoint *c);
const char *eft__st_checkpoint_file_path(const eft__st_checkpoint *c, size_t i);
uint64_t eft__st_checkpoint_total_bytes(const eft__st_checkpoint *c); /* sum of tensor bytes */

/* ---------------------------------------------------------------------------------------------
 * Conversion (tensor.c)
 * ------------------------------------------------------------------------------------------- */

/* Converts all n elements of a plain view (floating, integer or BOOL) to float; out[n].
 * EFT_ERR_UNSUPPORTED for block-quantised types, EFT_ERR_INVALID_ARGUMENT if n != t->n_elems.
 * Works on unaligned data. */
eft_status eft__tensor_to_f32(const eft__tensor_view *t, float *out, uint64_t n, eft__error *err);

#endif /* EFT_FORMATS_SAFETENSORS_H */
