/*
 * encoder_graph.h — the BERT-family builder (encoder_bert.c): the graph of a BERT, RoBERTa,
 * XLM-RoBERTa or MPNet encoder (and its classification head) over a checkpoint's weights, as
 * the checkpoint has them, before any pass. encoder.c compiles and runs it.
 */
#ifndef EFT_MODELS_ENCODER_GRAPH_H
#define EFT_MODELS_ENCODER_GRAPH_H

#include "api/model_internal.h"
#include "graph/ir.h"

/* What the builder needs from config.json, checked by encoder.c. */
typedef struct eft__encoder_dims {
    eft__arch arch;
    int64_t C, NH, I, L, V, P, NT; /* channels, heads, intermediate, layers, vocab, positions, types (0: none) */
    float eps, scale;
    eft__act act;
    int64_t num_labels;            /* > 0: a sequence-classification head */
    int64_t rel_buckets;           /* MPNet */
} eft__encoder_dims;

/* Names of the graph's inputs and outputs. */
#define EFT__ENC_IDS "input.ids"       /* [M] I32: every valid token, sequences back to back */
#define EFT__ENC_POS "input.positions" /* [M] I32 */
#define EFT__ENC_TYPES "input.types"   /* [M] I32, when the model has token types */
#define EFT__ENC_HIDDEN "output.hidden" /* [M, C] last hidden states */
#define EFT__ENC_LOGITS "output.logits" /* [B, num_labels] */

/* Builds the graph into g. prefix: "" or the family's ("bert.") for a checkpoint with a head.
 * Vectors and small tables are converted to f32 (owned by g); matrices and the word embeddings
 * are borrowed views of m's weights. A missing tensor, or one of the wrong shape or type, is an
 * error naming it and both shapes. */
eft_status eft__encoder_graph_build(const eft_model *m, const char *prefix, const eft__encoder_dims *d,
                                    eft__ir_graph *g, eft__error *err);

/* The checkpoint tensor prefix+name, which must be a float type of shape [d0] (d1 < 0) or
 * [d0, d1]; NULL with err set otherwise. */
const eft__tensor_view *eft__encoder_want(const eft_model *m, const char *prefix, const char *name, int64_t d0,
                                          int64_t d1, eft__error *err);

#endif /* EFT_MODELS_ENCODER_GRAPH_H */
