/*
 * decoder.h — causal LMs (Llama, Mistral, Qwen2, Qwen3, Gemma 2, Gemma 3 text, Phi-3, GPT-2, and
 * SmolLM2 as Llama) from a Hugging Face folder or a GGUF file. The builder checks every weight and
 * packs it once into a kernel's layout (quantised GGUF blocks stay quantised), then emits the
 * forward pass as a graph (graph/ir.h) whose retained state is the KV cache, QEfficient's
 * [slots, kv_heads, ctx_len, head_dim] per layer for K and for V. One forward call takes a ragged
 * batch of tokens from any slots at explicit positions (QEfficient's contract), so the same call
 * serves chunked prefill, decode and continuous batching, and logits are computed only for the
 * rows asked for.
 */
#ifndef EFT_MODELS_DECODER_H
#define EFT_MODELS_DECODER_H

#include "core/core.h"

struct eft__kernels; /* kernels/cpu/kernels.h */
struct eft__program; /* graph/program.h */

/* One call at a time per decoder: the forward passes share its planned buffers and thread pool. */
typedef struct eft__decoder eft__decoder;

typedef struct eft__decoder_params {
    int n_slots;        /* KV cache slots (full_batch_size) */
    int64_t ctx_len;    /* positions per slot; 0: min(max_position_embeddings, 4096) */
    int max_tokens;     /* tokens per forward call, all slots together (prefill chunk + decode rows) */
    int n_threads;      /* counts the caller; 1 = no extra threads */
    eft_dtype weight_dtype; /* as eft_generator_params.weight_dtype; EFT_DTYPE_COUNT = keep */
    eft_dtype kv_dtype;     /* EFT_DTYPE_F32, F16 or I8 */
    /* Kernel table to run on; NULL = eft__kernels_get() (the best ISA, or EFT_ISA). */
    const struct eft__kernels *kernels;
    /* Quantised weights (Q8_0/Q4_0/Q4_1 kept as blocks) multiply activations quantised to int8
     * blocks (eft__qgemm) instead of f32 activations (eft__qgemm_f32, the default, which matches
     * "dequantise, then multiply in f32" as Hugging Face transformers does). For comparison. */
    bool int8_activations;
} eft__decoder_params;

/* 1 slot, ctx_len 0 (the model's, capped at 4096), 128 tokens per call, 1 thread, weights kept,
 * f32 cache, f32 activations (int8 when the environment has EFT_QGEMM=int8, so the benchmarks
 * can compare the two without a flag of their own). */
eft__decoder_params eft__decoder_params_default(void);

/* Builds a decoder over the weights of m (which must outlive it). Refuses a model that is not a
 * causal LM eft implements, a missing tensor or one of the wrong shape or type (the message names
 * the tensor and both shapes), and a ctx_len over what the positions allow (GPT-2's learned
 * table). On failure *out is NULL. */
eft_status eft__decoder_build(const eft_model *m, const eft__decoder_params *p, eft__decoder **out,
                              eft__error *err);
void eft__decoder_free(eft__decoder *d); /* NULL is a no-op */

/* Compiled programs. A fingerprint of m's files (the .gguf, or config.json and the safetensors
 * files of a folder): what a program records and a load checks. */
eft_status eft__decoder_model_hash(const eft_model *m, uint64_t *out, eft__error *err);
/* Writes d's matrices (packed or quantised, as its kernels read them) and vectors, as built from
 * m, as a program at path (atomically: see eft__program_writer_write). header is a JSON object's
 * text with what the caller wants recorded (options, cache key); model, architecture, config and
 * plan are added. */
eft_status eft__decoder_save(const eft__decoder *d, const eft_model *m, const char *header, const char *path,
                             eft__error *err);
/* Builds a decoder over m whose matrices are the program's own bytes, used in place (prog must
 * outlive it): no conversion or packing. p plans the cache and buffers as for a build; its
 * weight_dtype is ignored. Refuses a program of another kind, one made from model files that
 * changed since (fingerprint), another GEMM panel width, and any blob of the wrong type or size. */
eft_status eft__decoder_load(const eft_model *m, const struct eft__program *prog, const eft__decoder_params *p,
                             eft__decoder **out, eft__error *err);

int64_t eft__decoder_vocab_size(const eft__decoder *d); /* V: logits per row */
int64_t eft__decoder_ctx_len(const eft__decoder *d);
int eft__decoder_slots(const eft__decoder *d);
int eft__decoder_max_tokens(const eft__decoder *d);

/* Per-op timing of the forward passes (eft_generator_params.profile). enable starts it (or, when
 * already on, clears it; false stops it and drops the figures); false when out of memory. profile
 * fills up to max entries, one per op of the graph in order, and returns the number of ops (0
 * while off); the names live as long as d. */
bool eft__decoder_profile_enable(eft__decoder *d, bool on);
int eft__decoder_profile(const eft__decoder *d, eft_op_time *out, int max);

/* One forward pass over n tokens (n <= max_tokens): token i is ids[i] of slot slot[i] at position
 * pos[i] (0 .. ctx_len-1), or padding when pos[i] is -1 (skipped entirely). The tokens of one slot
 * are consecutive with increasing positions; the pass writes each token's K and V at its slot and
 * position, and each token attends to its slot's cache at positions 0 .. pos[i] (with the model's
 * sliding window where it has one), so positions below a slot's first token in this call must have
 * been written by earlier calls. logits[n_logits, V] receives the final logits (softcapping
 * applied) of the tokens logit_rows[0 .. n_logits) (zeros for a padding row). Fails, changing
 * nothing, on an id outside the vocabulary, a slot or position out of range, n over max_tokens, a
 * slot's positions not increasing, or a slot's tokens not consecutive. */
eft_status eft__decoder_forward(eft__decoder *d, const int32_t *ids, const int32_t *slot, const int32_t *pos,
                                int n, const int32_t *logit_rows, int n_logits, float *logits, eft__error *err);

#endif /* EFT_MODELS_DECODER_H */
