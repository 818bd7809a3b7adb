/*
 * hf_config.c — reads a Hugging Face config.json into an eft__model_config. Defaults per
 * model_type follow transformers' configuration classes (v5); rope parameters are read in both
 * the old form (top-level rope_theta + rope_scaling) and v5's rope_parameters, flat or per layer
 * type. Every key that changes the maths is type-checked and range-checked; a value eft does not
 * implement is refused with the key and the value in the message. Keys that only matter for
 * training (dropout, initializer_range, ...) are never read.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/json.h"
#include "formats/hf_config.h"

/* Sanity limits: far above any published model, low enough that products of them cannot
 * overflow in the builders' size computations. */
#define LIM_HIDDEN 65536
#define LIM_LAYERS 1024
#define LIM_VOCAB (4 << 20)
#define LIM_HEADS 1024
#define LIM_HEAD_DIM 8192
#define LIM_INTER (1 << 20)
#define LIM_POSITIONS (1 << 26)
#define LIM_TYPE_VOCAB 1024
#define LIM_LABELS (1 << 20)
#define LIM_FACTORS 8192
#define CONFIG_MAX_BYTES (4u << 20)

/* =============================================================================================
 * Per-architecture facts and transformers' defaults
 * =========================================================================================== */

typedef struct arch_info {
    const char *name;         /* eft's name, and model_type as config.json spells it */
    const char *class_prefix; /* architectures[0] prefix, for old configs without model_type */
    bool encoder, rope;
    int64_t vocab, hidden, layers, heads;
    int64_t kv_heads; /* 0: = heads */
    int64_t head_dim; /* 0: hidden / heads */
    int64_t inter;    /* 0: 4 * hidden (gpt2's n_inner) */
    int64_t max_pos, type_vocab;
    const char *act_key, *act;
    const char *eps_key;
    double eps;
    double theta;
    bool tie;
    int64_t sliding; /* default window (used only under the family's sliding rules) */
    int64_t pad, bos, eos;
} arch_info;

static const arch_info k_archs[EFT__ARCH_COUNT] = {
    [EFT__ARCH_BERT] = {"bert", "Bert", true, false, 30522, 768, 12, 12, 0, 0, 3072, 512, 2,
                        "hidden_act", "gelu", "layer_norm_eps", 1e-12, 0, true, 0, 0, -1, -1},
    [EFT__ARCH_ROBERTA] = {"roberta", "Roberta", true, false, 50265, 768, 12, 12, 0, 0, 3072, 512, 2,
                           "hidden_act", "gelu", "layer_norm_eps", 1e-12, 0, true, 0, 1, 0, 2},
    [EFT__ARCH_XLM_ROBERTA] = {"xlm-roberta", "XLMRoberta", true, false, 30522, 768, 12, 12, 0, 0,
                               3072, 512, 2, "hidden_act", "gelu", "layer_norm_eps", 1e-12, 0, true,
                               0, 1, 0, 2},
    [EFT__ARCH_MPNET] = {"mpnet", "MPNet", true, false, 30527, 768, 12, 12, 0, 0, 3072, 512, 0,
                         "hidden_act", "gelu", "layer_norm_eps", 1e-12, 0, true, 0, 1, 0, 2},
    [EFT__ARCH_LLAMA] = {"llama", "Llama", false, true, 32000, 4096, 32, 32, 0, 0, 11008, 2048, 0,
                         "hidden_act", "silu", "rms_norm_eps", 1e-6, 10000.0, false, 0, -1, 1, 2},
    [EFT__ARCH_MISTRAL] = {"mistral", "Mistral", false, true, 32000, 4096, 32, 32, 8, 0, 14336,
                           4096 * 32, 0, "hidden_act", "silu", "rms_norm_eps", 1e-6, 10000.0, false,
                           4096, -1, 1, 2},
    [EFT__ARCH_QWEN2] = {"qwen2", "Qwen2", false, true, 151936, 4096, 32, 32, 32, 0, 22016, 32768, 0,
                         "hidden_act", "silu", "rms_norm_eps", 1e-6, 10000.0, false, 4096, -1, -1,
                         -1},
    [EFT__ARCH_QWEN3] = {"qwen3", "Qwen3", false, true, 151936, 4096, 32, 32, 32, 128, 22016, 32768,
                         0, "hidden_act", "silu", "rms_norm_eps", 1e-6, 10000.0, false, 4096, -1, -1,
                         -1},
    [EFT__ARCH_GEMMA] = {"gemma", "Gemma", false, true, 256000, 3072, 28, 16, 16, 256, 24576, 8192, 0,
                         "hidden_act", "gelu_pytorch_tanh", "rms_norm_eps", 1e-6, 10000.0, true, 0,
                         0, 2, 1},
    [EFT__ARCH_GEMMA2] = {"gemma2", "Gemma2", false, true, 256000, 2304, 26, 8, 4, 256, 9216, 8192, 0,
                          "hidden_activation", "gelu_pytorch_tanh", "rms_norm_eps", 1e-6, 10000.0,
                          true, 4096, 0, 2, 1},
    [EFT__ARCH_GEMMA3] = {"gemma3_text", "Gemma3", false, true, 262208, 2304, 26, 8, 4, 256, 9216,
                          131072, 0, "hidden_activation", "gelu_pytorch_tanh", "rms_norm_eps", 1e-6,
                          1000000.0, true, 4096, 0, 2, 1},
    [EFT__ARCH_PHI3] = {"phi3", "Phi3", false, true, 32064, 3072, 32, 32, 0, 0, 8192, 4096, 0,
                        "hidden_act", "silu", "rms_norm_eps", 1e-5, 10000.0, false, 0, 32000, 1,
                        32000},
    [EFT__ARCH_GPT2] = {"gpt2", "GPT2", false, false, 50257, 768, 12, 12, 0, 0, 0, 1024, 0,
                        "activation_function", "gelu_new", "layer_norm_epsilon", 1e-5, 0, true, 0,
                        -1, 50256, 50256},
};

/* gemma3's sliding-window layers default to this base (rope_local_base_freq). */
#define GEMMA3_LOCAL_THETA 10000.0

static const char *const k_act_names[EFT__ACT_COUNT] = {"gelu", "gelu_tanh", "silu", "relu",
                                                         "quick_gelu"};
static const char *const k_rope_names[EFT__ROPE_COUNT] = {"default", "linear", "dynamic",
                                                           "llama3",  "yarn",   "longrope"};

const char *eft__arch_name(eft__arch a) {
    if (a <= EFT__ARCH_UNKNOWN || a >= EFT__ARCH_COUNT) return "unknown";
    return a == EFT__ARCH_GEMMA3 ? "gemma3" : k_archs[a].name;
}

const char *eft__act_name(eft__act a) {
    return (unsigned)a < EFT__ACT_COUNT ? k_act_names[a] : "?";
}

const char *eft__task_name(eft__task t) {
    switch (t) {
    case EFT__TASK_BASE: return "base";
    case EFT__TASK_CAUSAL_LM: return "causal_lm";
    case EFT__TASK_SEQ_CLASSIFICATION: return "seq_classification";
    }
    return "?";
}

const char *eft__rope_type_name(eft__rope_type t) {
    return (unsigned)t < EFT__ROPE_COUNT ? k_rope_names[t] : "?";
}

/* transformers' ACT2FN names that eft implements. */
static bool act_from_name(const char *s, eft__act *out) {
    static const struct { const char *name; eft__act act; } k[] = {
        {"gelu", EFT__ACT_GELU},
        {"gelu_python", EFT__ACT_GELU},
        {"gelu_new", EFT__ACT_GELU_TANH},
        {"gelu_pytorch_tanh", EFT__ACT_GELU_TANH},
        {"gelu_fast", EFT__ACT_GELU_TANH},
        {"gelu_python_tanh", EFT__ACT_GELU_TANH},
        {"silu", EFT__ACT_SILU},
        {"swish", EFT__ACT_SILU},
        {"relu", EFT__ACT_RELU},
        {"quick_gelu", EFT__ACT_QUICK_GELU},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        if (strcmp(s, k[i].name) == 0) {
            *out = k[i].act;
            return true;
        }
    }
    return false;
}

/* =============================================================================================
 * Typed access to JSON values, with messages that name the key
 * =========================================================================================== */

typedef struct cfg_ctx {
    const char *label;
    eft__error *err;
} cfg_ctx;


/* The value of key, or NULL when it is absent or null: transformers treats null as "use the
 * default" for every key read here. */
static const json_t *jget(const json_t *obj, const char *key) {
    const json_t *v = obj ? json_object_get(obj, key) : NULL;
    return (v && !json_is_null(v)) ? v : NULL;
}

/* "prefix.key" for messages about nested keys (prefix may be ""). */
static const char *kname(char *buf, size_t n, const char *prefix, const char *key) {
    snprintf(buf, n, "%s%s%s", prefix, prefix[0] ? "." : "", key);
    return buf;
}

/* An integer in [lo, hi]; *out is left alone when the key is absent. Below lo is a malformed
 * file; above hi is over eft's sanity limit. */
static eft_status get_int(cfg_ctx *c, const json_t *obj, const char *prefix, const char *key,
                          int64_t lo, int64_t hi, int64_t *out) {
    const json_t *v = jget(obj, key);
    if (!v) return EFT_OK;
    char kb[160];
    const char *k = kname(kb, sizeof kb, prefix, key);
    if (!json_is_integer(v)) {
        if (json_is_real(v))
            return eft__fail(c->err, EFT_ERR_FORMAT, "%s: key '%s' must be an integer, found %g",
                             c->label, k, json_real_value(v));
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: key '%s' must be an integer, found %s",
                         c->label, k, eft__json_kind(v));
    }
    int64_t x = (int64_t)json_integer_value(v);
    if (x < lo)
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: key '%s' is %lld but must be at least %lld",
                         c->label, k, (long long)x, (long long)lo);
    if (x > hi)
        return eft__fail(c->err, EFT_ERR_LIMIT, "%s: key '%s' is %lld, over eft's limit of %lld",
                         c->label, k, (long long)x, (long long)hi);
    *out = x;
    return EFT_OK;
}

/* A finite number (integer or real) >= lo (strictly > lo when strict). */
static eft_status get_num(cfg_ctx *c, const json_t *obj, const char *prefix, const char *key,
                          double lo, bool strict, double *out) {
    const json_t *v = jget(obj, key);
    if (!v) return EFT_OK;
    char kb[160];
    const char *k = kname(kb, sizeof kb, prefix, key);
    if (!json_is_number(v))
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: key '%s' must be a number, found %s", c->label,
                         k, eft__json_kind(v));
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || (strict && x == lo))
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: key '%s' is %g but must be %s %g", c->label, k,
                         x, strict ? "greater than" : "at least", lo);
    *out = x;
    return EFT_OK;
}

static eft_status get_bool(cfg_ctx *c, const json_t *obj, const char *prefix, const char *key,
                           bool *out) {
    const json_t *v = jget(obj, key);
    if (!v) return EFT_OK;
    if (!json_is_boolean(v)) {
        char kb[160];
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: key '%s' must be true or false, found %s",
                         c->label, kname(kb, sizeof kb, prefix, key), eft__json_kind(v));
    }
    *out = json_is_true(v);
    return EFT_OK;
}

/* A string value, borrowed from the document; *out is left alone when absent. */
static eft_status get_str(cfg_ctx *c, const json_t *obj, const char *prefix, const char *key,
                          const char **out) {
    const json_t *v = jget(obj, key);
    if (!v) return EFT_OK;
    if (!json_is_string(v)) {
        char kb[160];
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: key '%s' must be a string, found %s", c->label,
                         kname(kb, sizeof kb, prefix, key), eft__json_kind(v));
    }
    *out = json_string_value(v);
    return EFT_OK;
}

/* Copies a string value into a fixed buffer; refuses one that does not fit. */
static eft_status copy_str(cfg_ctx *c, const char *key, const char *s, char *dst, size_t cap) {
    size_t n = strlen(s);
    if (n >= cap)
        return eft__fail(c->err, EFT_ERR_LIMIT, "%s: key '%s' is %zu characters long, over eft's "
                         "limit of %zu", c->label, key, n, cap - 1);
    memcpy(dst, s, n + 1);
    return EFT_OK;
}

/* A token id: transformers stores any integer; a negative one means "none" in a few configs. */
static eft_status get_token_id(cfg_ctx *c, const json_t *obj, const char *key, int64_t *out) {
    int64_t v = *out;
    eft_status st = get_int(c, obj, "", key, INT64_MIN, INT32_MAX, &v);
    if (st) return st;
    *out = v < 0 ? -1 : v;
    return EFT_OK;
}

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        eft_status st_ = (expr);                                                                   \
        if (st_ != EFT_OK) return st_;                                                             \
    } while (0)

/* =============================================================================================
 * Rotary embeddings
 * =========================================================================================== */

void eft__rope_init_default(eft__rope *r, double theta) {
    memset(r, 0, sizeof *r);
    r->type = EFT__ROPE_DEFAULT;
    r->theta = theta;
    r->partial_rotary_factor = 1.0;
    r->factor = 1.0;
    r->beta_fast = 32.0;
    r->beta_slow = 1.0;
    r->truncate = true;
    r->attention_factor = 1.0;
}

static void rope_free(eft__rope *r) {
    eft__free(r->short_factor);
    eft__free(r->long_factor);
    r->short_factor = r->long_factor = NULL;
    r->n_short_factor = r->n_long_factor = 0;
}

static eft_status get_factors(cfg_ctx *c, const json_t *d, const char *prefix, const char *key,
                              float **out, size_t *n_out) {
    const json_t *v = jget(d, key);
    if (!v) return EFT_OK;
    char kb[160];
    const char *k = kname(kb, sizeof kb, prefix, key);
    if (!json_is_array(v))
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: key '%s' must be an array of numbers, found %s",
                         c->label, k, eft__json_kind(v));
    size_t n = json_array_size(v);
    if (n > LIM_FACTORS)
        return eft__fail(c->err, EFT_ERR_LIMIT, "%s: key '%s' has %zu entries, over eft's limit of %d",
                         c->label, k, n, LIM_FACTORS);
    float *f = eft__malloc_array(n ? n : 1, sizeof *f);
    if (!f) return eft__fail(c->err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", c->label);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_number(e) || !(json_number_value(e) > 0)) {
            eft__free(f);
            return eft__fail(c->err, EFT_ERR_FORMAT, "%s: key '%s' entry %zu must be a positive "
                             "number, found %s", c->label, k, i, eft__json_kind(e));
        }
        f[i] = (float)json_number_value(e);
    }
    eft__free(*out);
    *out = f;
    *n_out = n;
    return EFT_OK;
}

static double yarn_mscale(double scale, double mscale) {
    return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

/* Reads one rope dict d (rope_parameters, one of its per-layer-type entries, or the old
 * rope_scaling) over the defaults already in r. prefix names d in messages. */
static eft_status parse_rope_dict(cfg_ctx *c, const json_t *d, const char *prefix, eft__rope *r) {
    if (!json_is_object(d))
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: key '%s' must be an object, found %s",
                         c->label, prefix, eft__json_kind(d));
    const char *type = NULL;
    TRY(get_str(c, d, prefix, "rope_type", &type));
    if (!type) TRY(get_str(c, d, prefix, "type", &type)); /* the pre-v4.45 spelling */
    if (type) {
        /* phi3's "su" is longrope's first name. */
        const char *t = strcmp(type, "su") == 0 ? "longrope" : type;
        int found = -1;
        for (int i = 0; i < EFT__ROPE_COUNT; i++)
            if (strcmp(t, k_rope_names[i]) == 0) found = i;
        if (found < 0)
            return eft__fail(c->err, EFT_ERR_UNSUPPORTED, "%s: %s.rope_type '%s' is not supported; "
                             "eft supports default, linear, dynamic, llama3, yarn, longrope",
                             c->label, prefix, type);
        r->type = (eft__rope_type)found;
    }
    TRY(get_num(c, d, prefix, "rope_theta", 0, true, &r->theta));
    TRY(get_num(c, d, prefix, "partial_rotary_factor", 0, true, &r->partial_rotary_factor));
    if (r->partial_rotary_factor > 1)
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: key '%s.partial_rotary_factor' is %g but must "
                         "be at most 1", c->label, prefix, r->partial_rotary_factor);
    double factor = 0;
    TRY(get_num(c, d, prefix, "factor", 0, true, &factor));
    if (factor > 0) r->factor = factor;
    TRY(get_num(c, d, prefix, "low_freq_factor", 0, true, &r->low_freq_factor));
    TRY(get_num(c, d, prefix, "high_freq_factor", 0, true, &r->high_freq_factor));
    TRY(get_int(c, d, prefix, "original_max_position_embeddings", 1, LIM_POSITIONS,
                &r->original_max_position_embeddings));
    TRY(get_num(c, d, prefix, "beta_fast", 0, true, &r->beta_fast));
    TRY(get_num(c, d, prefix, "beta_slow", 0, true, &r->beta_slow));
    TRY(get_num(c, d, prefix, "mscale", 0, false, &r->mscale));
    TRY(get_num(c, d, prefix, "mscale_all_dim", 0, false, &r->mscale_all_dim));
    TRY(get_bool(c, d, prefix, "truncate", &r->truncate));
    double af = 0;
    TRY(get_num(c, d, prefix, "attention_factor", 0, true, &af));
    if (af > 0) r->attention_factor = af;
    TRY(get_factors(c, d, prefix, "short_factor", &r->short_factor, &r->n_short_factor));
    TRY(get_factors(c, d, prefix, "long_factor", &r->long_factor, &r->n_long_factor));
    if (jget(d, "mrope_section"))
        return eft__fail(c->err, EFT_ERR_UNSUPPORTED, "%s: key '%s.mrope_section' (multimodal "
                         "rope) is not supported", c->label, prefix);

    /* Remember what was given, for the checks in rope_finish. */
    if (factor <= 0) r->factor = 0;
    if (af <= 0) r->attention_factor = 0;
    return EFT_OK;
}

/* Fills what transformers derives and checks what each rope type requires. top_orig is a
 * top-level original_max_position_embeddings (phi3 keeps it there; it wins over the dict's). */
static eft_status rope_finish(cfg_ctx *c, const char *where, eft__rope *r, int64_t head_dim,
                              int64_t max_pos, int64_t top_orig) {
    bool has_factor = r->factor > 0, has_af = r->attention_factor > 0;
    if (!has_factor) r->factor = 1.0;
    if (!has_af) r->attention_factor = 1.0;
    if (r->type == EFT__ROPE_LLAMA3 || r->type == EFT__ROPE_YARN || r->type == EFT__ROPE_LONGROPE) {
        if (top_orig > 0) r->original_max_position_embeddings = top_orig;
        else if (r->original_max_position_embeddings <= 0)
            r->original_max_position_embeddings = max_pos;
    }
    const char *tn = k_rope_names[r->type];
    switch (r->type) {
    case EFT__ROPE_DEFAULT: r->factor = 1.0; break;
    case EFT__ROPE_LINEAR:
    case EFT__ROPE_DYNAMIC:
    case EFT__ROPE_LLAMA3:
        if (!has_factor)
            return eft__fail(c->err, EFT_ERR_FORMAT, "%s: rope type '%s' needs '%s.factor', which is "
                             "missing", c->label, tn, where);
        if (r->type == EFT__ROPE_LLAMA3 && (r->low_freq_factor <= 0 || r->high_freq_factor <= 0))
            return eft__fail(c->err, EFT_ERR_FORMAT, "%s: rope type 'llama3' needs '%s.low_freq_factor' "
                             "and '%s.high_freq_factor'", c->label, where, where);
        if (r->type == EFT__ROPE_LLAMA3 && r->high_freq_factor <= r->low_freq_factor)
            return eft__fail(c->err, EFT_ERR_FORMAT, "%s: '%s.high_freq_factor' (%g) must be greater "
                             "than low_freq_factor (%g)", c->label, where, r->high_freq_factor,
                             r->low_freq_factor);
        break;
    case EFT__ROPE_YARN:
        if (!has_factor) r->factor = (double)max_pos / (double)r->original_max_position_embeddings;
        if (!has_af) {
            if (r->mscale > 0 && r->mscale_all_dim > 0)
                r->attention_factor = yarn_mscale(r->factor, r->mscale) /
                                      yarn_mscale(r->factor, r->mscale_all_dim);
            else
                r->attention_factor = yarn_mscale(r->factor, 1.0);
        }
        break;
    case EFT__ROPE_LONGROPE: {
        int64_t rot = (int64_t)((double)head_dim * r->partial_rotary_factor);
        if (!r->short_factor || !r->long_factor)
            return eft__fail(c->err, EFT_ERR_FORMAT, "%s: rope type 'longrope' needs '%s.short_factor' "
                             "and '%s.long_factor'", c->label, where, where);
        if ((int64_t)r->n_short_factor != rot / 2 || (int64_t)r->n_long_factor != rot / 2)
            return eft__fail(c->err, EFT_ERR_FORMAT, "%s: '%s.short_factor' has %zu entries and "
                             "long_factor %zu, but the rotary dimension %lld needs %lld each",
                             c->label, where, r->n_short_factor, r->n_long_factor, (long long)rot,
                             (long long)(rot / 2));
        if (!has_factor) r->factor = (double)max_pos / (double)r->original_max_position_embeddings;
        if (!has_af)
            r->attention_factor = r->factor <= 1.0 ? 1.0 : sqrt(1.0 + log(r->factor) /
                                  log((double)r->original_max_position_embeddings));
        break;
    }
    case EFT__ROPE_COUNT: break;
    }
    if (r->type != EFT__ROPE_LONGROPE) rope_free(r);
    int64_t rot = (int64_t)((double)head_dim * r->partial_rotary_factor);
    if (rot < 2 || rot % 2)
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: head_dim %lld times partial_rotary_factor %g "
                         "gives %lld rotary dimensions, which must be even and at least 2",
                         c->label, (long long)head_dim, r->partial_rotary_factor, (long long)rot);
    return EFT_OK;
}

/* True when the rope dict is keyed by layer type, v5's per-layer form. */
static bool rope_is_nested(const json_t *d) {
    return json_is_object(d) && (json_is_object(json_object_get(d, "full_attention")) ||
                                 json_is_object(json_object_get(d, "sliding_attention")));
}

static eft_status parse_rope(cfg_ctx *c, const json_t *src, eft__model_config *o,
                             double default_theta) {
    /* transformers: rope_scaling (old) wins over rope_parameters when both are set; top-level
     * rope_theta and partial_rotary_factor fill what the dict leaves out. */
    const json_t *d = jget(src, "rope_scaling");
    const char *dname = "rope_scaling";
    if (!d || (json_is_object(d) && json_object_size(d) == 0)) {
        d = jget(src, "rope_parameters");
        dname = "rope_parameters";
    }
    double theta = default_theta, prf = 1.0;
    TRY(get_num(c, src, "", "rope_theta", 0, true, &theta));
    TRY(get_num(c, src, "", "partial_rotary_factor", 0, true, &prf));
    int64_t top_orig = 0;
    TRY(get_int(c, src, "", "original_max_position_embeddings", 1, LIM_POSITIONS, &top_orig));

    o->has_rope = true;
    eft__rope_init_default(&o->rope, theta);
    o->rope.partial_rotary_factor = prf;
    o->rope.factor = o->rope.attention_factor = 0; /* "not given" until a dict says otherwise */
    bool gemma3 = o->arch == EFT__ARCH_GEMMA3;
    if (gemma3) {
        double local = GEMMA3_LOCAL_THETA;
        TRY(get_num(c, src, "", "rope_local_base_freq", 0, true, &local));
        o->has_rope_local = true;
        eft__rope_init_default(&o->rope_local, local);
        o->rope_local.partial_rotary_factor = prf;
        o->rope_local.factor = o->rope_local.attention_factor = 0;
    }
    char where[64];
    if (d && rope_is_nested(d)) {
        const json_t *full = jget(d, "full_attention"), *slide = jget(d, "sliding_attention");
        if (full) {
            snprintf(where, sizeof where, "%s.full_attention", dname);
            TRY(parse_rope_dict(c, full, where, &o->rope));
            TRY(rope_finish(c, where, &o->rope, o->head_dim, o->max_position_embeddings, 0));
        } else {
            TRY(rope_finish(c, dname, &o->rope, o->head_dim, o->max_position_embeddings, 0));
        }
        if (slide) {
            if (!o->has_rope_local) {
                o->has_rope_local = true;
                eft__rope_init_default(&o->rope_local, theta);
                o->rope_local.partial_rotary_factor = prf;
                o->rope_local.factor = o->rope_local.attention_factor = 0;
            }
            snprintf(where, sizeof where, "%s.sliding_attention", dname);
            TRY(parse_rope_dict(c, slide, where, &o->rope_local));
        } else {
            snprintf(where, sizeof where, "%s", dname);
        }
        if (o->has_rope_local)
            TRY(rope_finish(c, where, &o->rope_local, o->head_dim, o->max_position_embeddings, 0));
        return EFT_OK;
    }
    /* One dict for every layer; gemma3's old rope_scaling applies to full attention only. */
    if (d) TRY(parse_rope_dict(c, d, dname, &o->rope));
    if (o->arch == EFT__ARCH_PHI3 && d) {
        /* phi3 reads "yarn" as longrope, as its configuration class does. */
        const char *t = NULL;
        TRY(get_str(c, d, dname, "rope_type", &t));
        if (!t) TRY(get_str(c, d, dname, "type", &t));
        if (t && strcmp(t, "yarn") == 0) o->rope.type = EFT__ROPE_LONGROPE;
    }
    TRY(rope_finish(c, dname, &o->rope, o->head_dim, o->max_position_embeddings, top_orig));
    if (o->has_rope_local)
        TRY(rope_finish(c, dname, &o->rope_local, o->head_dim, o->max_position_embeddings, 0));
    return EFT_OK;
}

/* =============================================================================================
 * Sliding-window layers
 * =========================================================================================== */

static eft_status parse_sliding(cfg_ctx *c, const json_t *src, eft__model_config *o,
                                const arch_info *ai) {
    int64_t n = o->num_hidden_layers;
    o->is_sliding = eft__calloc((size_t)n, sizeof(bool));
    if (!o->is_sliding) return eft__fail(c->err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", c->label);

    int64_t window = ai->sliding;
    bool window_given = json_object_get(src, "sliding_window") != NULL;
    if (window_given && !jget(src, "sliding_window")) window = 0; /* null: no sliding window */
    TRY(get_int(c, src, "", "sliding_window", 1, LIM_POSITIONS, &window));

    switch (o->arch) {
    case EFT__ARCH_MISTRAL:
    case EFT__ARCH_PHI3:
        /* One window for every layer; layer_types is ignored by these classes. */
        for (int64_t i = 0; i < n && window > 0; i++) o->is_sliding[i] = true;
        break;
    case EFT__ARCH_QWEN2:
    case EFT__ARCH_QWEN3: {
        bool use = false;
        int64_t max_window_layers = 28;
        TRY(get_bool(c, src, "", "use_sliding_window", &use));
        TRY(get_int(c, src, "", "max_window_layers", 0, LIM_LAYERS, &max_window_layers));
        if (!use) window = 0;
        for (int64_t i = 0; i < n && window > 0; i++) o->is_sliding[i] = i >= max_window_layers;
        break;
    }
    case EFT__ARCH_GEMMA2:
    case EFT__ARCH_GEMMA3: {
        int64_t pattern = o->arch == EFT__ARCH_GEMMA2 ? 2 : 6;
        TRY(get_int(c, src, "", "sliding_window_pattern", 1, LIM_LAYERS, &pattern));
        for (int64_t i = 0; i < n; i++) o->is_sliding[i] = (i + 1) % pattern != 0;
        break;
    }
    default: window = 0; break;
    }

    const json_t *lt = jget(src, "layer_types");
    bool honours_layer_types = o->arch == EFT__ARCH_QWEN2 || o->arch == EFT__ARCH_QWEN3 ||
                               o->arch == EFT__ARCH_GEMMA2 || o->arch == EFT__ARCH_GEMMA3;
    if (lt && honours_layer_types) {
        if (!json_is_array(lt))
            return eft__fail(c->err, EFT_ERR_FORMAT, "%s: key 'layer_types' must be an array, found %s",
                             c->label, eft__json_kind(lt));
        if ((int64_t)json_array_size(lt) != n)
            return eft__fail(c->err, EFT_ERR_FORMAT, "%s: key 'layer_types' has %zu entries but "
                             "num_hidden_layers is %lld", c->label, json_array_size(lt), (long long)n);
        for (int64_t i = 0; i < n; i++) {
            const json_t *e = json_array_get(lt, (size_t)i);
            const char *s = json_is_string(e) ? json_string_value(e) : NULL;
            if (s && strcmp(s, "sliding_attention") == 0) o->is_sliding[i] = true;
            else if (s && strcmp(s, "full_attention") == 0) o->is_sliding[i] = false;
            else
                return eft__fail(c->err, EFT_ERR_UNSUPPORTED, "%s: layer_types[%lld] is %s%s%s; eft "
                                 "supports 'full_attention' and 'sliding_attention'", c->label,
                                 (long long)i, s ? "'" : "", s ? s : eft__json_kind(e), s ? "'" : "");
        }
    }
    /* Without a window, a "sliding" layer is an ordinary one. */
    if (window <= 0)
        for (int64_t i = 0; i < n; i++) o->is_sliding[i] = false;
    o->sliding_window = window > 0 ? window : 0;
    return EFT_OK;
}

/* =============================================================================================
 * The whole file
 * =========================================================================================== */

eft__arch eft__arch_from_model_type(const char *s) {
    if (strcmp(s, "gemma3") == 0) return EFT__ARCH_GEMMA3; /* the multimodal wrapper */
    for (int a = 1; a < EFT__ARCH_COUNT; a++)
        if (strcmp(s, k_archs[a].name) == 0) return (eft__arch)a;
    return EFT__ARCH_UNKNOWN;
}

static eft__arch arch_from_class(const char *cls) {
    eft__arch best = EFT__ARCH_UNKNOWN;
    size_t best_len = 0;
    for (int a = 1; a < EFT__ARCH_COUNT; a++) {
        size_t n = strlen(k_archs[a].class_prefix);
        if (n > best_len && strncmp(cls, k_archs[a].class_prefix, n) == 0) {
            best = (eft__arch)a;
            best_len = n;
        }
    }
    return best;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static eft_status parse_eos(cfg_ctx *c, const json_t *src, eft__model_config *o) {
    const json_t *v = jget(src, "eos_token_id");
    if (!v) return EFT_OK;
    if (json_is_integer(v)) {
        int64_t id = -1;
        TRY(get_token_id(c, src, "eos_token_id", &id));
        o->n_eos = 0;
        if (id >= 0) o->eos_token_ids[o->n_eos++] = id;
        return EFT_OK;
    }
    if (!json_is_array(v))
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: key 'eos_token_id' must be an integer or a list "
                         "of integers, found %s", c->label, eft__json_kind(v));
    if (json_array_size(v) > EFT__MAX_EOS_IDS)
        return eft__fail(c->err, EFT_ERR_LIMIT, "%s: key 'eos_token_id' lists %zu ids, over eft's "
                         "limit of %d", c->label, json_array_size(v), EFT__MAX_EOS_IDS);
    o->n_eos = 0;
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > INT32_MAX)
            return eft__fail(c->err, EFT_ERR_FORMAT, "%s: eos_token_id[%zu] must be a token id, found "
                             "%s", c->label, i, eft__json_kind(e));
        o->eos_token_ids[o->n_eos++] = json_integer_value(e);
    }
    return EFT_OK;
}

static eft_status parse_root(cfg_ctx *c, const json_t *root, eft__model_config *o) {
    /* Which family: model_type, or for old configs without it the class in architectures. */
    const json_t *archs = jget(root, "architectures");
    const char *cls = NULL;
    if (archs) {
        if (!json_is_array(archs))
            return eft__fail(c->err, EFT_ERR_FORMAT, "%s: key 'architectures' must be a list of "
                             "strings, found %s", c->label, eft__json_kind(archs));
        if (json_array_size(archs) > 0) {
            const json_t *a0 = json_array_get(archs, 0);
            if (!json_is_string(a0))
                return eft__fail(c->err, EFT_ERR_FORMAT, "%s: architectures[0] must be a string, "
                                 "found %s", c->label, eft__json_kind(a0));
            cls = json_string_value(a0);
            TRY(copy_str(c, "architectures[0]", cls, o->architecture, sizeof o->architecture));
        }
    }
    const char *mt = NULL;
    TRY(get_str(c, root, "", "model_type", &mt));
    if (mt) {
        o->arch = eft__arch_from_model_type(mt);
    } else if (cls) {
        o->arch = arch_from_class(cls);
        if (o->arch == EFT__ARCH_UNKNOWN)
            return eft__fail(c->err, EFT_ERR_UNSUPPORTED, "%s: no model_type, and architectures[0] "
                             "'%s' is not a class eft recognises", c->label, cls);
        mt = k_archs[o->arch].name;
    } else {
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: no 'model_type' key, and no 'architectures' "
                         "to tell the model family from", c->label);
    }
    if (o->arch == EFT__ARCH_UNKNOWN) {
        char list[512];
        size_t k = 0;
        for (int a = 1; a < EFT__ARCH_COUNT && k < sizeof list; a++)
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", a > 1 ? ", " : "", k_archs[a].name);
        return eft__fail(c->err, EFT_ERR_UNSUPPORTED, "%s: model_type '%s' is not supported; eft "
                         "supports %s, gemma3", c->label, mt, list);
    }
    TRY(copy_str(c, "model_type", mt, o->model_type, sizeof o->model_type));
    const arch_info *ai = &k_archs[o->arch];

    /* Quantized checkpoints store other tensors than the weights; refuse them by name. */
    const json_t *q = jget(root, "quantization_config");
    if (q) {
        const char *m = json_is_object(q) ? json_string_value(json_object_get(q, "quant_method")) : NULL;
        return eft__fail(c->err, EFT_ERR_UNSUPPORTED, "%s: quantization_config with quant_method "
                         "'%s' is not supported yet (AWQ and GPTQ checkpoints come later); use an "
                         "unquantized checkpoint", c->label, m ? m : "(none)");
    }

    /* gemma3's multimodal wrapper keeps the language model's keys in text_config. */
    const json_t *src = root;
    if (strcmp(mt, "gemma3") == 0) {
        const json_t *tc = jget(root, "text_config");
        if (tc && !json_is_object(tc))
            return eft__fail(c->err, EFT_ERR_FORMAT, "%s: key 'text_config' must be an object, found %s",
                             c->label, eft__json_kind(tc));
        if (tc) src = tc;
    }

    /* Task from the head class. */
    o->is_encoder = ai->encoder;
    o->task = ai->encoder ? EFT__TASK_BASE : EFT__TASK_CAUSAL_LM;
    if (cls) {
        if (ends_with(cls, "ForCausalLM") || ends_with(cls, "LMHeadModel")) o->task = EFT__TASK_CAUSAL_LM;
        else if (ends_with(cls, "ForSequenceClassification")) o->task = EFT__TASK_SEQ_CLASSIFICATION;
        else if (ends_with(cls, "Model")) o->task = EFT__TASK_BASE;
    }

    /* Sizes. gpt2 spells them its own way. */
    bool gpt2 = o->arch == EFT__ARCH_GPT2;
    o->vocab_size = ai->vocab;
    o->hidden_size = ai->hidden;
    o->num_hidden_layers = ai->layers;
    o->num_attention_heads = ai->heads;
    o->max_position_embeddings = ai->max_pos;
    o->type_vocab_size = ai->type_vocab;
    int64_t inter = ai->inter, kv = ai->kv_heads, head_dim = 0;
    TRY(get_int(c, src, "", "vocab_size", 1, LIM_VOCAB, &o->vocab_size));
    TRY(get_int(c, src, "", gpt2 ? "n_embd" : "hidden_size", 1, LIM_HIDDEN, &o->hidden_size));
    TRY(get_int(c, src, "", gpt2 ? "n_layer" : "num_hidden_layers", 1, LIM_LAYERS,
                &o->num_hidden_layers));
    TRY(get_int(c, src, "", gpt2 ? "n_head" : "num_attention_heads", 1, LIM_HEADS,
                &o->num_attention_heads));
    TRY(get_int(c, src, "", gpt2 ? "n_inner" : "intermediate_size", 1, LIM_INTER, &inter));
    TRY(get_int(c, src, "", gpt2 ? "n_positions" : "max_position_embeddings", 1, LIM_POSITIONS,
                &o->max_position_embeddings));
    if (ai->encoder && o->arch != EFT__ARCH_MPNET)
        TRY(get_int(c, src, "", "type_vocab_size", 0, LIM_TYPE_VOCAB, &o->type_vocab_size));
    if (!ai->encoder && !gpt2) {
        TRY(get_int(c, src, "", "num_key_value_heads", 1, LIM_HEADS, &kv));
        TRY(get_int(c, src, "", "head_dim", 1, LIM_HEAD_DIM, &head_dim));
    }
    o->intermediate_size = inter > 0 ? inter : 4 * o->hidden_size;
    o->num_key_value_heads = kv > 0 ? kv : o->num_attention_heads;
    const char *heads_key = gpt2 ? "n_head" : "num_attention_heads";
    if (head_dim == 0) head_dim = ai->head_dim; /* the family's fixed default (qwen3, gemma) */
    if (head_dim == 0) {
        if (o->hidden_size % o->num_attention_heads)
            return eft__fail(c->err, EFT_ERR_FORMAT, "%s: %s %lld is not divisible by %s %lld (and "
                             "there is no head_dim)", c->label, gpt2 ? "n_embd" : "hidden_size",
                             (long long)o->hidden_size, heads_key, (long long)o->num_attention_heads);
        head_dim = o->hidden_size / o->num_attention_heads;
    }
    o->head_dim = head_dim;
    if (o->num_attention_heads % o->num_key_value_heads)
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: num_attention_heads %lld is not a multiple of "
                         "num_key_value_heads %lld", c->label, (long long)o->num_attention_heads,
                         (long long)o->num_key_value_heads);

    /* Activation. gemma (v1) configs say "gelu" but mean the tanh form, as transformers notes. */
    const char *act = ai->act;
    TRY(get_str(c, src, "", ai->act_key, &act));
    if (!act_from_name(act, &o->hidden_act))
        return eft__fail(c->err, EFT_ERR_UNSUPPORTED, "%s: %s '%s' is not supported; eft supports "
                         "gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, silu, swish, relu, quick_gelu",
                         c->label, ai->act_key, act);
    if (o->arch == EFT__ARCH_GEMMA && o->hidden_act == EFT__ACT_GELU) o->hidden_act = EFT__ACT_GELU_TANH;

    /* Normalisation. */
    o->norm = (ai->encoder || gpt2) ? EFT__NORM_LAYERNORM : EFT__NORM_RMSNORM;
    o->norm_add_one = o->arch == EFT__ARCH_GEMMA || o->arch == EFT__ARCH_GEMMA2 ||
                      o->arch == EFT__ARCH_GEMMA3;
    o->norm_eps = ai->eps;
    TRY(get_num(c, src, "", ai->eps_key, 0, true, &o->norm_eps));

    /* Token ids, labels, and descriptive strings. */
    o->pad_token_id = ai->pad;
    o->bos_token_id = ai->bos;
    o->n_eos = 0;
    if (ai->eos >= 0) o->eos_token_ids[o->n_eos++] = ai->eos;
    if (json_is_null(json_object_get(src, "pad_token_id"))) o->pad_token_id = -1;
    if (json_is_null(json_object_get(src, "bos_token_id"))) o->bos_token_id = -1;
    if (json_is_null(json_object_get(src, "eos_token_id"))) o->n_eos = 0;
    TRY(get_token_id(c, src, "pad_token_id", &o->pad_token_id));
    TRY(get_token_id(c, src, "bos_token_id", &o->bos_token_id));
    TRY(parse_eos(c, src, o));

    o->num_labels = 2;
    const json_t *id2label = jget(root, "id2label");
    if (id2label) {
        if (!json_is_object(id2label))
            return eft__fail(c->err, EFT_ERR_FORMAT, "%s: key 'id2label' must be an object, found %s",
                             c->label, eft__json_kind(id2label));
        if (json_object_size(id2label) > LIM_LABELS)
            return eft__fail(c->err, EFT_ERR_LIMIT, "%s: id2label has %zu labels, over eft's limit of %d",
                             c->label, json_object_size(id2label), LIM_LABELS);
        o->num_labels = (int64_t)json_object_size(id2label);
    } else {
        TRY(get_int(c, root, "", "num_labels", 1, LIM_LABELS, &o->num_labels));
    }
    const char *s = NULL;
    TRY(get_str(c, root, "", "problem_type", &s));
    if (s) TRY(copy_str(c, "problem_type", s, o->problem_type, sizeof o->problem_type));
    s = NULL;
    TRY(get_str(c, root, "", "torch_dtype", &s));
    TRY(get_str(c, root, "", "dtype", &s));
    if (!s && src != root) {
        TRY(get_str(c, src, "", "torch_dtype", &s));
        TRY(get_str(c, src, "", "dtype", &s));
    }
    if (s) TRY(copy_str(c, "dtype", s, o->dtype, sizeof o->dtype));

    o->tie_word_embeddings = ai->tie;
    TRY(get_bool(c, root, "", "tie_word_embeddings", &o->tie_word_embeddings));
    if (src != root) TRY(get_bool(c, src, "", "tie_word_embeddings", &o->tie_word_embeddings));

    /* Biases: the BERT family and gpt2 have them everywhere; qwen2 on q, k, v only; the rest
     * follow attention_bias and mlp_bias. */
    if (ai->encoder || gpt2) {
        o->attention_bias = o->qkv_bias = o->o_bias = o->mlp_bias = true;
    } else if (o->arch == EFT__ARCH_QWEN2) {
        o->attention_bias = o->qkv_bias = true;
    } else if (o->arch != EFT__ARCH_MISTRAL && o->arch != EFT__ARCH_PHI3) {
        TRY(get_bool(c, src, "", "attention_bias", &o->attention_bias));
        o->qkv_bias = o->o_bias = o->attention_bias;
        if (o->arch == EFT__ARCH_LLAMA) TRY(get_bool(c, src, "", "mlp_bias", &o->mlp_bias));
    }
    o->qk_norm = o->arch == EFT__ARCH_QWEN3 || o->arch == EFT__ARCH_GEMMA3;

    /* Encoders: only absolute positions are implemented. */
    if (ai->encoder) {
        const char *pet = "absolute";
        TRY(get_str(c, src, "", "position_embedding_type", &pet));
        if (strcmp(pet, "absolute") != 0)
            return eft__fail(c->err, EFT_ERR_UNSUPPORTED, "%s: position_embedding_type '%s' is not "
                             "supported; eft supports 'absolute'", c->label, pet);
        bool is_decoder = false;
        TRY(get_bool(c, src, "", "is_decoder", &is_decoder));
        if (is_decoder)
            return eft__fail(c->err, EFT_ERR_UNSUPPORTED, "%s: is_decoder true (a causal %s) is not "
                             "supported", c->label, mt);
    }
    if (o->arch == EFT__ARCH_MPNET) {
        o->relative_attention_num_buckets = 32;
        TRY(get_int(c, src, "", "relative_attention_num_buckets", 1, 4096,
                    &o->relative_attention_num_buckets));
    }

    /* Gemma's extras. */
    o->embed_scale = 1.0;
    if (o->norm_add_one) o->embed_scale = sqrt((double)o->hidden_size);
    if (o->arch == EFT__ARCH_GEMMA2 || o->arch == EFT__ARCH_GEMMA3) {
        o->query_pre_attn_scalar = 256;
        if (o->arch == EFT__ARCH_GEMMA2) {
            o->attn_logit_softcapping = 50.0;
            o->final_logit_softcapping = 30.0;
        }
        if (json_is_null(json_object_get(src, "attn_logit_softcapping"))) o->attn_logit_softcapping = 0;
        if (json_is_null(json_object_get(src, "final_logit_softcapping"))) o->final_logit_softcapping = 0;
        TRY(get_num(c, src, "", "query_pre_attn_scalar", 0, true, &o->query_pre_attn_scalar));
        TRY(get_num(c, src, "", "attn_logit_softcapping", 0, false, &o->attn_logit_softcapping));
        TRY(get_num(c, src, "", "final_logit_softcapping", 0, false, &o->final_logit_softcapping));
    }
    if (o->norm_add_one)
        TRY(get_bool(c, src, "", "use_bidirectional_attention", &o->use_bidirectional_attention));
    o->attn_scale = 1.0 / sqrt(o->query_pre_attn_scalar > 0 ? o->query_pre_attn_scalar
                                                             : (double)o->head_dim);

    if (gpt2) {
        o->scale_attn_weights = true;
        TRY(get_bool(c, src, "", "scale_attn_weights", &o->scale_attn_weights));
        TRY(get_bool(c, src, "", "scale_attn_by_inverse_layer_idx", &o->scale_attn_by_inverse_layer_idx));
        TRY(get_bool(c, src, "", "reorder_and_upcast_attn", &o->reorder_and_upcast_attn));
        if (!o->scale_attn_weights) o->attn_scale = 1.0;
    }

    /* Positions. */
    if (ai->rope) TRY(parse_rope(c, src, o, ai->theta));
    return parse_sliding(c, src, o, ai);
}

eft_status eft__model_config_parse(const char *json, size_t len, const char *label,
                                   eft__model_config *out, eft__error *err) {
    memset(out, 0, sizeof *out);
    cfg_ctx c = {label ? label : "config.json", err};
    json_error_t je;
    json_t *root = eft__json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (eft__json_oom() || json_error_code(&je) == json_error_out_of_memory || je.text[0] == 0)
            return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory while parsing", c.label);
        return eft__fail(err, EFT_ERR_FORMAT, "%s: invalid JSON at line %d, column %d: %s", c.label,
                         je.line, je.column, je.text);
    }
    eft_status st;
    if (!json_is_object(root))
        st = eft__fail(err, EFT_ERR_FORMAT, "%s: the top level must be an object, found %s", c.label,
                       eft__json_kind(root));
    else
        st = parse_root(&c, root, out);
    json_decref(root);
    if (st != EFT_OK) eft__model_config_free(out);
    return st;
}

eft_status eft__model_config_load(const char *path, eft__model_config *out, eft__error *err) {
    memset(out, 0, sizeof *out);
    char *buf = NULL;
    size_t n = 0;
    eft_status st = eft__file_read_all(path, CONFIG_MAX_BYTES, &buf, &n, err);
    if (st != EFT_OK) return st;
    st = eft__model_config_parse(buf, n, path, out, err);
    eft__free(buf);
    return st;
}

void eft__model_config_free(eft__model_config *c) {
    if (!c) return;
    rope_free(&c->rope);
    rope_free(&c->rope_local);
    eft__free(c->is_sliding);
    memset(c, 0, sizeof *c);
}

const eft__rope *eft__model_config_rope_for_layer(const eft__model_config *c, int64_t layer) {
    if (c->has_rope_local && c->is_sliding && layer >= 0 && layer < c->num_hidden_layers &&
        c->is_sliding[layer])
        return &c->rope_local;
    return &c->rope;
}
