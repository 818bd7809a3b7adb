/*
 * hf_config.h — a model's configuration as eft uses it: one typed description filled either from
 * a Hugging Face config.json (hf_config.c) or from GGUF metadata (gguf_config.c). Every value is
 * resolved here, with transformers' per-architecture defaults applied, so a model builder never
 * looks at JSON or GGUF keys. Anything that would change the maths and is not understood is
 * refused with a message naming the key and its value, never silently ignored.
 */
#ifndef EFT_FORMATS_HF_CONFIG_H
#define EFT_FORMATS_HF_CONFIG_H

#include "core/core.h"

typedef enum eft__arch {
    EFT__ARCH_UNKNOWN = 0,
    EFT__ARCH_BERT,
    EFT__ARCH_ROBERTA,
    EFT__ARCH_XLM_ROBERTA,
    EFT__ARCH_MPNET,
    EFT__ARCH_LLAMA,
    EFT__ARCH_MISTRAL,
    EFT__ARCH_QWEN2,
    EFT__ARCH_QWEN3,
    EFT__ARCH_GEMMA,
    EFT__ARCH_GEMMA2,
    EFT__ARCH_GEMMA3,
    EFT__ARCH_PHI3,
    EFT__ARCH_GPT2,
    EFT__ARCH_COUNT
} eft__arch;

/* What the checkpoint's head is, from "architectures": *ForCausalLM / *LMHeadModel,
 * *ForSequenceClassification, *Model; anything else gets the family's default (encoders BASE,
 * decoders CAUSAL_LM). */
typedef enum eft__task { EFT__TASK_BASE, EFT__TASK_CAUSAL_LM, EFT__TASK_SEQ_CLASSIFICATION } eft__task;

typedef enum eft__act {
    EFT__ACT_GELU,       /* exact, with erf: "gelu", "gelu_python" */
    EFT__ACT_GELU_TANH,  /* "gelu_new", "gelu_pytorch_tanh", "gelu_fast" */
    EFT__ACT_SILU,       /* "silu", "swish" */
    EFT__ACT_RELU,       /* "relu" */
    EFT__ACT_QUICK_GELU, /* "quick_gelu": x * sigmoid(1.702 x) */
    EFT__ACT_COUNT
} eft__act;

typedef enum eft__norm { EFT__NORM_LAYERNORM, EFT__NORM_RMSNORM } eft__norm;

typedef enum eft__rope_type {
    EFT__ROPE_DEFAULT,
    EFT__ROPE_LINEAR,
    EFT__ROPE_DYNAMIC,
    EFT__ROPE_LLAMA3,
    EFT__ROPE_YARN,
    EFT__ROPE_LONGROPE,
    EFT__ROPE_COUNT
} eft__rope_type;

/* One set of rotary-embedding parameters, as transformers' rope_parameters dict holds them after
 * standardisation: absent values are filled with the defaults transformers uses. */
typedef struct eft__rope {
    eft__rope_type type;
    double theta;                 /* base */
    double partial_rotary_factor; /* fraction of head_dim that rotates (1 = all) */
    double factor;                /* linear, dynamic, llama3, yarn, longrope; 1 for default */
    double low_freq_factor;       /* llama3 */
    double high_freq_factor;      /* llama3 */
    int64_t original_max_position_embeddings; /* llama3, yarn, longrope */
    double beta_fast, beta_slow;  /* yarn: 32 and 1 unless given */
    double mscale, mscale_all_dim;/* yarn: 0 = not given */
    bool truncate;                /* yarn: true unless given */
    /* yarn and longrope: the scale applied to cos/sin, as given or derived from factor the way
     * transformers derives it; 1 for the other types. */
    double attention_factor;
    float *short_factor, *long_factor; /* longrope: owned, rotary_dim / 2 each */
    size_t n_short_factor, n_long_factor;
} eft__rope;

#define EFT__MAX_EOS_IDS 8

typedef struct eft__model_config {
    char model_type[32];    /* as the file spells it ("xlm-roberta", "gemma3_text", ...) */
    eft__arch arch;
    eft__task task;
    char architecture[128]; /* architectures[0], "" when absent */
    bool is_encoder;        /* BERT family: bidirectional, post-norm, token types */

    int64_t vocab_size;
    int64_t hidden_size;
    int64_t num_hidden_layers;
    int64_t num_attention_heads;
    int64_t num_key_value_heads; /* = num_attention_heads unless given */
    int64_t head_dim;            /* explicit, or hidden_size / num_attention_heads */
    int64_t intermediate_size;   /* gpt2: n_inner, default 4 * n_embd */
    int64_t max_position_embeddings;
    int64_t type_vocab_size;     /* encoders; 0 when the family has none (mpnet, decoders) */
    eft__act hidden_act;

    eft__norm norm;
    bool norm_add_one; /* gemma from config.json: RMSNorm scales by (1 + w), not w (GGUF files
                        * store w + 1 already, so this is false for them) */
    double norm_eps;

    bool has_rope;
    eft__rope rope;       /* every layer, or gemma3's full-attention layers */
    bool has_rope_local;
    eft__rope rope_local; /* gemma3's sliding-window layers (rope_local_base_freq) */
    /* GGUF only: llama.cpp stores llama3 and longrope frequency factors as tensors
     * (rope_freqs.weight, rope_factors_long/short.weight) instead of parameters; the builder
     * must read them from there. */
    bool rope_factor_tensors;

    bool tie_word_embeddings;
    int64_t sliding_window; /* 0 = none */
    bool *is_sliding;       /* num_hidden_layers entries, owned; all false without sliding_window */

    bool attention_bias; /* the key as given (or the family's fixed choice) */
    bool qkv_bias;       /* q, k and v projections have a bias (qwen2: only these) */
    bool o_bias;         /* the attention output projection has a bias */
    bool mlp_bias;
    bool qk_norm;        /* RMSNorm on q and k per head (qwen3, gemma3) */
    bool use_bidirectional_attention; /* gemma's embedding variants */

    double attn_logit_softcapping;  /* 0 = none */
    double final_logit_softcapping; /* 0 = none */
    double query_pre_attn_scalar;   /* 0 = not given */
    double attn_scale;              /* the softmax scale: 1/sqrt(query_pre_attn_scalar or head_dim) */
    double embed_scale;             /* gemma: sqrt(hidden_size); 1 otherwise */

    int64_t relative_attention_num_buckets; /* mpnet */

    int64_t pad_token_id; /* -1 = none */
    int64_t bos_token_id; /* -1 = none */
    int64_t eos_token_ids[EFT__MAX_EOS_IDS];
    int n_eos;

    int64_t num_labels; /* from id2label's size, else num_labels, else 2 as transformers */
    char problem_type[48];
    char dtype[16];     /* "dtype" or the older "torch_dtype"; "" when absent */

    /* gpt2 */
    bool scale_attn_weights;
    bool scale_attn_by_inverse_layer_idx;
    bool reorder_and_upcast_attn;
} eft__model_config;

/* Parses a config.json held in memory; label names the file in messages. On failure *out holds
 * nothing that needs freeing. */
eft_status eft__model_config_parse(const char *json, size_t len, const char *label,
                                   eft__model_config *out, eft__error *err);
/* Reads path (at most 4 MB) and parses it. */
eft_status eft__model_config_load(const char *path, eft__model_config *out, eft__error *err);
/* Frees the owned arrays; leaves *c zeroed. NULL is a no-op. */
void eft__model_config_free(eft__model_config *c);

/* The rope parameters layer uses: rope_local for gemma3's sliding layers, else rope. */
const eft__rope *eft__model_config_rope_for_layer(const eft__model_config *c, int64_t layer);

/* The family a model_type names ("gemma3" and "gemma3_text" both give GEMMA3); UNKNOWN if none. */
eft__arch eft__arch_from_model_type(const char *s);
/* Plain rope with base theta, every optional parameter at transformers' default. */
void eft__rope_init_default(eft__rope *r, double theta);

const char *eft__arch_name(eft__arch a);           /* "bert", "xlm-roberta", ...; "unknown" */
const char *eft__act_name(eft__act a);             /* "gelu", "gelu_tanh", ... */
const char *eft__task_name(eft__task t);           /* "base", "causal_lm", "seq_classification" */
const char *eft__rope_type_name(eft__rope_type t); /* "default", "llama3", ... */

/* From GGUF metadata (gguf_config.c). */
struct eft__gguf;
eft_status eft__model_config_from_gguf(const struct eft__gguf *g, const char *label,
                                       eft__model_config *out, eft__error *err);

#endif /* EFT_FORMATS_HF_CONFIG_H */
