/*
 * compile.h — what the public compile functions (compile.c) and the embedder's program cache
 * (embedder.c) share: the cache key of an encoder program and the header that records how it
 * was compiled.
 */
#ifndef EFT_RUNTIME_COMPILE_H
#define EFT_RUNTIME_COMPILE_H

#include "api/model_internal.h"
#include "core/core.h"

/* The cache key of m's encoder packed as dtype: 16 hex digits of FNV-1a 64 over the program
 * format version, eft's version, the kernels' ISA, the GEMM panel width, the kind, m's file
 * fingerprint and dtype. Those
 * are exactly what the stored bytes depend on; batch size, threads and sequence lengths are not
 * (the plan is made at load, MPNet's position table is stored unexpanded), so one cached program
 * serves every plan. out: 17 bytes. */
eft_status eft__encoder_program_key(const eft_model *m, eft_dtype dtype, char *out, eft__error *err);

/* The header a program records about its compile: {"key", "isa", "created_unix", "options":
 * {"seq_lens", "batch_size", "num_cores", "dtype"}}. Caller frees; NULL on out of memory. */
char *eft__program_header_new(const char *key, const int *seq_lens, int n_seq_lens, int batch_size,
                              int num_cores, eft_dtype dtype);

/* The cache key of m's decoder with weights as weight_dtype (EFT_DTYPE_COUNT: kept): the same
 * ingredients as an encoder's, kind decoder. The plan (slots, ctx_len, chunk, KV type, threads)
 * is not part of it: it is made at load. out: 17 bytes. */
eft_status eft__decoder_program_key(const eft_model *m, eft_dtype weight_dtype, char *out, eft__error *err);
/* The header of a decoder program: {"key", "isa", "created_unix", "options": {"ctx_len",
 * "prefill_seq_len", "full_batch_size", "num_cores", "weight_dtype", "kv_dtype"}}. Caller frees;
 * NULL on out of memory. */
char *eft__decoder_program_header_new(const char *key, const eft_generator_params *p);
/* generator.c: the generator's model, and its decoder written as a program at path. */
const eft_model *eft__generator_model(const eft_generator *g);
eft_status eft__generator_save_program(const eft_generator *g, const char *header, const char *path,
                                       eft__error *err);

/* embedder.c: the embedder's model, and its encoder written as a program at path. */
const eft_model *eft__embedder_model(const eft_embedder *e);
eft_status eft__embedder_save_program(const eft_embedder *e, const char *header, const char *path,
                                      eft__error *err);

#endif /* EFT_RUNTIME_COMPILE_H */
