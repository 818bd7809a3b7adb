/*
 * encoder.h — BERT-family encoders (BERT, RoBERTa, XLM-RoBERTa, MPNet) compiled through the graph
 * IR: the builder (encoder_bert.c) emits the graph from an opened model, the passes rewrite it
 * (fold, fuse Q/K/V, weight precision, kernel choice), the plan places all activation memory for
 * (max batch x max tokens) in one arena; a forward pass walks the ops, allocates nothing and gives
 * the last hidden states; and the two heads people run on top of it, sentence-transformers
 * pooling (+ Normalize) and the sequence-classification head of a cross-encoder. Callers pass
 * token ids themselves.
 */
#ifndef EFT_MODELS_ENCODER_H
#define EFT_MODELS_ENCODER_H

#include "core/core.h"

struct eft__kernels; /* kernels/cpu/kernels.h */

/* One call at a time per encoder: the forward passes share its planned buffers and thread pool. */
typedef struct eft__encoder eft__encoder;

typedef struct eft__encoder_params {
    int max_batch;  /* B: rows per forward call */
    int max_tokens; /* T: tokens per row, padding included */
    int n_threads;  /* counts the caller; 1 = no extra threads */
    /* Kernel table to run on; NULL = eft__kernels_get() (the best ISA, or EFT_ISA). */
    const struct eft__kernels *kernels;
    /* Element type of the matrices (the precision pass): EFT_DTYPE_F32 (the default), F16 or BF16
     * (half the bytes, widened in the GEMM micro-kernel; rounded once, at build), Q8_0 (int8 in
     * blocks of 32 with an f16 scale) or Q4_0 (int4), both on the f32-activation quantised GEMM. */
    eft_dtype weight_dtype;
} eft__encoder_params;

/* max_batch 1, max_tokens 512 (capped by the model's positions at build), 1 thread. */
eft__encoder_params eft__encoder_params_default(void);

/* Builds an encoder over the weights of m (which must outlive it). Refuses a model that is not an
 * encoder eft implements, a missing tensor or one of the wrong shape or type (the message names
 * the tensor and both shapes), and a max_tokens the position table cannot hold. On failure *out
 * is NULL. */
eft_status eft__encoder_build(const eft_model *m, const eft__encoder_params *p, eft__encoder **out,
                              eft__error *err);
void eft__encoder_free(eft__encoder *enc); /* NULL is a no-op */

int64_t eft__encoder_hidden_size(const eft__encoder *enc); /* C */
/* D of eft__encoder_embed: C times the number of pooling modes. */
int64_t eft__encoder_embed_size(const eft__encoder *enc);
/* Outputs of eft__encoder_classify per row; 0 when the model has no classification head. */
int64_t eft__encoder_num_labels(const eft__encoder *enc);

/* The transformer: ids [B, T] right-padded, lens [B] valid tokens per row (0..T; tokens at t >= lens[b]
 * are padding and are never looked at), type_ids [B, T] or NULL (all 0). Writes hidden_out
 * [B, T, C] when not NULL, with zeros at padded positions. Padded positions cannot change valid
 * ones: only the valid tokens of each row are computed. Fails (nothing written) on B, T or lens
 * over the planned sizes, and on an id outside the vocabulary or type vocabulary. */
eft_status eft__encoder_forward(eft__encoder *enc, const int32_t *ids, const int32_t *type_ids,
                                const int32_t *lens, int B, int T, float *hidden_out, eft__error *err);

/* forward, then the folder's sentence-transformers pooling (modes concatenated in their order)
 * and Normalize when it has one: out [B, D]. A folder without a Pooling module gets mean pooling
 * and no normalisation, sentence-transformers' default for a plain transformers folder. */
eft_status eft__encoder_embed(eft__encoder *enc, const int32_t *ids, const int32_t *type_ids,
                              const int32_t *lens, int B, int T, float *out, eft__error *err);

/* forward, then the sequence-classification head on each row's first token (BERT: pooler dense +
 * tanh, then classifier; RoBERTa/XLM-R: classifier.dense + tanh, then classifier.out_proj):
 * logits [B, num_labels], raw (no sigmoid or softmax). EFT_ERR_UNSUPPORTED without a head. */
eft_status eft__encoder_classify(eft__encoder *enc, const int32_t *ids, const int32_t *type_ids,
                                 const int32_t *lens, int B, int T, float *logits, eft__error *err);

/* ---------------------------------------------------------------------------------------------
 * Compiled programs (graph/program.h): an encoder's packed matrices and small vectors written
 * once, then used in place from the mapped file by later starts.
 * ------------------------------------------------------------------------------------------- */

struct eft__program;

/* Fingerprint (eft__program_hash_files) of the files an encoder reads from m's folder: config.json,
 * the safetensors files (and their index), modules.json, sentence_bert_config.json and the
 * Pooling module's config. */
eft_status eft__encoder_model_hash(const eft_model *m, uint64_t *out, eft__error *err);

/* Writes enc, built from m, as a program at path (atomically: see eft__program_writer_write).
 * header is a JSON object's text with what the caller wants recorded (compile options, cache key);
 * the encoder adds "kind", "model" (path and hash), "architecture", "config", "weights" and
 * "graph" (the rewritten graph: ir_json.c), and the file gets every weight of the graph but the
 * word embeddings, as the kernels read it (SGEMM panels, Q8_0/Q4_0 blocks, f32 vectors). */
eft_status eft__encoder_save(const eft__encoder *enc, const eft_model *m, const char *header, const char *path,
                             eft__error *err);

/* Builds an encoder over m from the program's graph, whose weights are the program's own bytes,
 * used in place (no pass runs, nothing is converted or packed; the program must stay open as long
 * as the encoder). Only the word embeddings are read from m. p's weight_dtype is ignored (the
 * program says). Refuses a program of another kind, one compiled from different model files (the
 * fingerprints differ), one without a graph (an older eft's), a graph that does not validate, and
 * a missing blob or one of the wrong size (named). Outputs are bit-identical to
 * eft__encoder_build's with the same params. */
eft_status eft__encoder_load(const eft_model *m, const struct eft__program *prog, const eft__encoder_params *p,
                             eft__encoder **out, eft__error *err);

/* Reading the last forward pass (eft__encoder_forward, _embed or _classify) of rows b < its B:
 * row b's last hidden states, [*len, C] contiguous, borrowed until the next call on enc. */
const float *eft__encoder_hidden_row(const eft__encoder *enc, int b, int64_t *len);
/* The folder's pooling of row b of the last forward into out [D], without Normalize (zeros for
 * an empty row): for callers that decide normalisation per request. */
void eft__encoder_pool_row(const eft__encoder *enc, int b, float *out);
/* Whether the folder has a Normalize module (eft__encoder_embed applies it). */
bool eft__encoder_normalizes(const eft__encoder *enc);
/* Replaces the folder's pooling with names, a comma-separated list of modes concatenated in the
 * order given ("mean", "avg" = mean, "cls", "max", "lasttoken", "mean_sqrt_len_tokens",
 * "weightedmean"), keeping its Normalize. The embed size becomes C x the number of modes.
 * Refuses an unknown or repeated name, leaving the pooling as it was. */
eft_status eft__encoder_set_pooling(eft__encoder *enc, const char *names, eft__error *err);

#endif /* EFT_MODELS_ENCODER_H */
