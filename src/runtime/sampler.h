/*
 * sampler.h — the per-sequence sampler of the generator: logits of one row in, one token id out.
 * It owns the sequence's penalty state (prompt and generated ids), a seeded PRNG, and work buffers
 * sized for the vocabulary at init, so choosing a token never allocates. The rules and their order
 * are transformers' (_get_logits_processor): penalties, then temperature, top_k, top_p, min_p.
 */
#ifndef EFT_RUNTIME_SAMPLER_H
#define EFT_RUNTIME_SAMPLER_H

#include "core/core.h"

typedef struct eft__sampler eft__sampler;

/* A sampler for a vocabulary of V logits (V >= 1). On failure *out is NULL. */
eft_status eft__sampler_init(int64_t V, eft__sampler **out, eft__error *err);
void eft__sampler_free(eft__sampler *s); /* NULL is a no-op */

/* Checks sampling parameters without a sampler (what eft__sampler_reset refuses). */
eft_status eft__sampling_params_check(const eft_sampling_params *p, eft__error *err);

/* Starts a new sequence: checks p (temperature >= 0, top_k >= 0, top_p in [0, 1], min_p in [0, 1],
 * repetition_penalty > 0, every value finite), seeds the PRNG from p->seed, forgets the previous
 * sequence and records the prompt ids for the repetition penalty (ids outside 0..V-1 are refused). */
eft_status eft__sampler_reset(eft__sampler *s, const eft_sampling_params *p, const int32_t *prompt, size_t n_prompt,
                              eft__error *err);

/* Records a generated token: it counts for all three penalties from the next call on. */
void eft__sampler_accept(eft__sampler *s, int32_t id);

/* Chooses the next token from logits[V] (overwritten: penalties are applied in place). logprob
 * (may be NULL) receives the chosen token's log-probability and top[0 .. n_top) (n_top 0..V) the
 * n_top most likely tokens, most likely first, lowest id first on ties; both from the log-softmax
 * of the penalised logits, before temperature and truncation. Greedy (temperature 0) is the
 * argmax, lowest id on ties. Does not accept the token: call eft__sampler_accept. */
int32_t eft__sampler_sample(eft__sampler *s, float *logits, int n_top, eft_token_logprob *top, float *logprob);

/* What eft__sampler_sample draws from, for tests: probs[V] receives the normalised probability of
 * every token after penalties, temperature and truncation (0 for dropped tokens; one-hot on the
 * argmax when greedy). logits[V] is overwritten as by eft__sampler_sample; the PRNG is untouched. */
void eft__sampler_distribution(eft__sampler *s, float *logits, float *probs);

/* The PRNG alone (xoshiro256** seeded through splitmix64), for tests: a double in [0, 1). */
double eft__sampler_uniform(eft__sampler *s);

#endif /* EFT_RUNTIME_SAMPLER_H */
