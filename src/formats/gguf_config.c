/*
 * gguf_config.c — fills an eft__model_config from GGUF metadata (general.architecture and the
 * "<arch>.*" keys llama.cpp writes), so a model builder sees the same description whether the
 * model came as a Hugging Face folder or as one GGUF file. What the metadata does not say is
 * taken from the tensors (biases, tied embeddings, token types) or from llama.cpp's own fixed
 * choices for the architecture, which are noted where they are used.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "formats/gguf.h"
#include "formats/hf_config.h"

#define G_LIM_HIDDEN 65536
#define G_LIM_LAYERS 1024
#define G_LIM_VOCAB (4 << 20)
#define G_LIM_HEADS 1024
#define G_LIM_HEAD_DIM 8192
#define G_LIM_INTER (1 << 20)
#define G_LIM_POSITIONS (1 << 26)

typedef struct gctx {
    const eft__gguf *g;
    const char *label;
    const char *arch; /* general.architecture, NUL-terminated copy */
    eft__error *err;
} gctx;

/* "<arch>.<suffix>" */
static const char *akey(const gctx *c, char *buf, size_t n, const char *suffix) {
    snprintf(buf, n, "%s.%s", c->arch, suffix);
    return buf;
}

/* An unsigned integer key in [lo, hi]. Absent: *out untouched, unless required. A key of another
 * type (an array, say: per-layer values) is refused by name. */
static eft_status gint(gctx *c, const char *key, int64_t lo, int64_t hi, bool required,
                       int64_t *out) {
    const eft__gguf_kv *kv = eft__gguf_find(c->g, key);
    if (!kv) {
        if (required)
            return eft__fail(c->err, EFT_ERR_FORMAT, "%s: GGUF metadata has no '%s'", c->label, key);
        return EFT_OK;
    }
    int64_t v;
    if (!eft__gguf_get_i64(c->g, key, &v)) {
        if (kv->type == EFT__GGUF_ARRAY)
            return eft__fail(c->err, EFT_ERR_UNSUPPORTED, "%s: GGUF key '%s' is an array (per-layer "
                             "values), which eft does not support", c->label, key);
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: GGUF key '%s' must be an integer, found %s",
                         c->label, key, eft__gguf_type_name(kv->type));
    }
    if (v < lo)
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: GGUF key '%s' is %lld but must be at least %lld",
                         c->label, key, (long long)v, (long long)lo);
    if (v > hi)
        return eft__fail(c->err, EFT_ERR_LIMIT, "%s: GGUF key '%s' is %lld, over eft's limit of %lld",
                         c->label, key, (long long)v, (long long)hi);
    *out = v;
    return EFT_OK;
}

/* A finite number > 0 (>= 0 when allow_zero). */
static eft_status gnum(gctx *c, const char *key, bool allow_zero, double *out) {
    const eft__gguf_kv *kv = eft__gguf_find(c->g, key);
    if (!kv) return EFT_OK;
    double v;
    if (!eft__gguf_get_f64(c->g, key, &v))
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: GGUF key '%s' must be a number, found %s",
                         c->label, key, eft__gguf_type_name(kv->type));
    if (!isfinite(v) || v < 0 || (!allow_zero && v == 0))
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: GGUF key '%s' is %g but must be %s 0", c->label,
                         key, v, allow_zero ? "at least" : "greater than");
    *out = v;
    return EFT_OK;
}

/* A token id; absent or out of range for an int32 means none. */
static void gtoken(gctx *c, const char *key, int64_t *out) {
    int64_t v;
    if (eft__gguf_get_i64(c->g, key, &v)) *out = (v >= 0 && v <= INT32_MAX) ? v : -1;
}

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        eft_status st_ = (expr);                                                                   \
        if (st_ != EFT_OK) return st_;                                                             \
    } while (0)

static bool has_tensor(const gctx *c, const char *name) {
    return eft__gguf_find_tensor(c->g, name) != NULL;
}

/* llama.cpp's rope scaling keys. */
static eft_status parse_rope(gctx *c, eft__model_config *o, double default_theta) {
    char k[160];
    o->has_rope = true;
    eft__rope *r = &o->rope;
    eft__rope_init_default(r, default_theta);
    TRY(gnum(c, akey(c, k, sizeof k, "rope.freq_base"), false, &r->theta));
    int64_t dims = 0;
    TRY(gint(c, akey(c, k, sizeof k, "rope.dimension_count"), 2, o->head_dim, false, &dims));
    if (dims > 0) {
        if (dims % 2)
            return eft__fail(c->err, EFT_ERR_FORMAT, "%s: GGUF key '%s' is %lld but must be even",
                             c->label, k, (long long)dims);
        r->partial_rotary_factor = (double)dims / (double)o->head_dim;
    }
    eft__gguf_str s = {0};
    double factor = 0;
    if (eft__gguf_get_str(c->g, akey(c, k, sizeof k, "rope.scaling.type"), &s)) {
        static const struct { const char *name; eft__rope_type t; } map[] = {
            {"none", EFT__ROPE_DEFAULT}, {"linear", EFT__ROPE_LINEAR},
            {"yarn", EFT__ROPE_YARN},    {"longrope", EFT__ROPE_LONGROPE}};
        int found = -1;
        for (int i = 0; i < 4; i++)
            if (s.len == strlen(map[i].name) && memcmp(s.ptr, map[i].name, s.len) == 0) found = i;
        if (found < 0)
            return eft__fail(c->err, EFT_ERR_UNSUPPORTED, "%s: GGUF key '%s' is '%.*s'; eft supports "
                             "none, linear, yarn, longrope", c->label, k, (int)(s.len > 64 ? 64 : s.len),
                             s.ptr);
        r->type = map[found].t;
    } else if (eft__gguf_find(c->g, k)) {
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: GGUF key '%s' must be a string", c->label, k);
    }
    TRY(gnum(c, akey(c, k, sizeof k, "rope.scaling.factor"), true, &factor));
    double scale_linear = 0;
    TRY(gnum(c, akey(c, k, sizeof k, "rope.scale_linear"), true, &scale_linear));
    if (scale_linear > 0 && factor == 0) {
        /* The older spelling of linear scaling. */
        factor = scale_linear;
        if (r->type == EFT__ROPE_DEFAULT && factor != 1.0) r->type = EFT__ROPE_LINEAR;
    }
    if (r->type != EFT__ROPE_DEFAULT) {
        r->factor = factor > 0 ? factor : 1.0;
        r->original_max_position_embeddings = o->max_position_embeddings;
        TRY(gint(c, akey(c, k, sizeof k, "rope.scaling.original_context_length"), 1, G_LIM_POSITIONS,
                 false, &r->original_max_position_embeddings));
        TRY(gnum(c, akey(c, k, sizeof k, "rope.scaling.attn_factor"), false, &r->attention_factor));
        TRY(gnum(c, akey(c, k, sizeof k, "rope.scaling.yarn_beta_fast"), false, &r->beta_fast));
        TRY(gnum(c, akey(c, k, sizeof k, "rope.scaling.yarn_beta_slow"), false, &r->beta_slow));
        if (r->type == EFT__ROPE_YARN && !eft__gguf_find(c->g, akey(c, k, sizeof k,
                                                                    "rope.scaling.attn_factor")))
            r->attention_factor = r->factor <= 1 ? 1.0 : 0.1 * log(r->factor) + 1.0;
    }
    o->rope_factor_tensors = has_tensor(c, "rope_freqs.weight") ||
                             has_tensor(c, "rope_factors_long.weight") ||
                             has_tensor(c, "rope_factors_short.weight");
    if (r->type == EFT__ROPE_LONGROPE && !o->rope_factor_tensors)
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: rope scaling 'longrope' but no "
                         "rope_factors_long.weight / rope_factors_short.weight tensors", c->label);
    int64_t rot = (int64_t)((double)o->head_dim * r->partial_rotary_factor);
    if (rot < 2 || rot % 2)
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: %lld rotary dimensions (head_dim %lld); must be "
                         "even and at least 2", c->label, (long long)rot, (long long)o->head_dim);
    return EFT_OK;
}

static eft_status parse_sliding(gctx *c, eft__model_config *o) {
    char k[160];
    int64_t n = o->num_hidden_layers;
    o->is_sliding = eft__calloc((size_t)n, sizeof(bool));
    if (!o->is_sliding) return eft__fail(c->err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", c->label);
    int64_t window = 0;
    TRY(gint(c, akey(c, k, sizeof k, "attention.sliding_window"), 1, G_LIM_POSITIONS, false, &window));
    if (window <= 0) return EFT_OK;
    /* llama.cpp's fixed patterns: gemma2 alternates starting with a sliding layer, gemma3 has five
     * sliding layers then one global; phi3 and others slide everywhere. */
    int64_t pattern = o->arch == EFT__ARCH_GEMMA2 ? 2 : o->arch == EFT__ARCH_GEMMA3 ? 6 : 1;
    const eft__gguf_kv *pk = eft__gguf_find(c->g, akey(c, k, sizeof k, "attention.sliding_window_pattern"));
    if (pk && pk->type == EFT__GGUF_ARRAY) {
        if ((int64_t)eft__gguf_arr_len(pk) != n)
            return eft__fail(c->err, EFT_ERR_FORMAT, "%s: GGUF key '%s' has %llu entries but the model "
                             "has %lld layers", c->label, k, (unsigned long long)eft__gguf_arr_len(pk),
                             (long long)n);
        for (int64_t i = 0; i < n; i++) {
            int64_t v = 0;
            if (!eft__gguf_arr_i64(pk, (uint64_t)i, &v))
                return eft__fail(c->err, EFT_ERR_FORMAT, "%s: GGUF key '%s' entry %lld is not a bool",
                                 c->label, k, (long long)i);
            o->is_sliding[i] = v != 0;
        }
    } else {
        TRY(gint(c, k, 1, G_LIM_LAYERS, false, &pattern));
        for (int64_t i = 0; i < n; i++) o->is_sliding[i] = pattern == 1 || (i + 1) % pattern != 0;
    }
    o->sliding_window = window;
    return EFT_OK;
}

static eft_status from_gguf(gctx *c, eft__model_config *o) {
    char k[160];
    eft__gguf_str s;
    if (!eft__gguf_get_str(c->g, "general.architecture", &s))
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: GGUF metadata has no string "
                         "'general.architecture'", c->label);
    if (s.len == 0 || s.len >= sizeof o->model_type || memchr(s.ptr, 0, s.len))
        return eft__fail(c->err, EFT_ERR_UNSUPPORTED, "%s: general.architecture '%.*s' is not "
                         "supported", c->label, (int)(s.len > 64 ? 64 : s.len), s.ptr);
    memcpy(o->model_type, s.ptr, s.len);
    o->model_type[s.len] = 0;
    c->arch = o->model_type;
    o->arch = eft__arch_from_model_type(o->model_type);
    if (o->arch == EFT__ARCH_UNKNOWN || o->arch == EFT__ARCH_ROBERTA ||
        o->arch == EFT__ARCH_XLM_ROBERTA || o->arch == EFT__ARCH_MPNET)
        return eft__fail(c->err, EFT_ERR_UNSUPPORTED, "%s: general.architecture '%s' is not supported; "
                         "eft reads GGUF files of bert, llama, mistral, qwen2, qwen3, gemma, gemma2, "
                         "gemma3, phi3, gpt2", c->label, o->model_type);
    bool bert = o->arch == EFT__ARCH_BERT, gpt2 = o->arch == EFT__ARCH_GPT2;
    bool gemma = o->arch == EFT__ARCH_GEMMA || o->arch == EFT__ARCH_GEMMA2 || o->arch == EFT__ARCH_GEMMA3;
    o->is_encoder = bert;
    o->task = bert ? EFT__TASK_BASE : EFT__TASK_CAUSAL_LM;

    TRY(gint(c, akey(c, k, sizeof k, "embedding_length"), 1, G_LIM_HIDDEN, true, &o->hidden_size));
    TRY(gint(c, akey(c, k, sizeof k, "block_count"), 1, G_LIM_LAYERS, true, &o->num_hidden_layers));
    TRY(gint(c, akey(c, k, sizeof k, "attention.head_count"), 1, G_LIM_HEADS, true,
             &o->num_attention_heads));
    o->num_key_value_heads = o->num_attention_heads;
    TRY(gint(c, akey(c, k, sizeof k, "attention.head_count_kv"), 1, G_LIM_HEADS, false,
             &o->num_key_value_heads));
    o->intermediate_size = 4 * o->hidden_size;
    TRY(gint(c, akey(c, k, sizeof k, "feed_forward_length"), 1, G_LIM_INTER, !gpt2,
             &o->intermediate_size));
    o->max_position_embeddings = 2048;
    TRY(gint(c, akey(c, k, sizeof k, "context_length"), 1, G_LIM_POSITIONS, true,
             &o->max_position_embeddings));
    int64_t head_dim = 0;
    TRY(gint(c, akey(c, k, sizeof k, "attention.key_length"), 1, G_LIM_HEAD_DIM, false, &head_dim));
    if (head_dim == 0) {
        if (o->hidden_size % o->num_attention_heads)
            return eft__fail(c->err, EFT_ERR_FORMAT, "%s: embedding_length %lld is not divisible by "
                             "head_count %lld (and there is no attention.key_length)", c->label,
                             (long long)o->hidden_size, (long long)o->num_attention_heads);
        head_dim = o->hidden_size / o->num_attention_heads;
    }
    o->head_dim = head_dim;
    if (o->num_attention_heads % o->num_key_value_heads)
        return eft__fail(c->err, EFT_ERR_FORMAT, "%s: head_count %lld is not a multiple of "
                         "head_count_kv %lld", c->label, (long long)o->num_attention_heads,
                         (long long)o->num_key_value_heads);

    /* Vocabulary: the tokenizer's token list, else <arch>.vocab_size. */
    const eft__gguf_kv *tokens = eft__gguf_find(c->g, "tokenizer.ggml.tokens");
    if (tokens && eft__gguf_arr_len(tokens) > 0) {
        if (eft__gguf_arr_len(tokens) > G_LIM_VOCAB)
            return eft__fail(c->err, EFT_ERR_LIMIT, "%s: tokenizer.ggml.tokens has %llu entries, over "
                             "eft's limit of %d", c->label,
                             (unsigned long long)eft__gguf_arr_len(tokens), G_LIM_VOCAB);
        o->vocab_size = (int64_t)eft__gguf_arr_len(tokens);
    } else {
        TRY(gint(c, akey(c, k, sizeof k, "vocab_size"), 1, G_LIM_VOCAB, true, &o->vocab_size));
    }

    o->hidden_act = bert ? EFT__ACT_GELU : (gemma || gpt2) ? EFT__ACT_GELU_TANH : EFT__ACT_SILU;
    o->norm = (bert || gpt2) ? EFT__NORM_LAYERNORM : EFT__NORM_RMSNORM;
    /* convert_hf_to_gguf.py adds 1 to gemma's norm weights, so w is used as stored. */
    o->norm_add_one = false;
    o->norm_eps = (bert || gpt2) ? 1e-12 : 1e-6;
    TRY(gnum(c, akey(c, k, sizeof k, (bert || gpt2) ? "attention.layer_norm_epsilon"
                                                    : "attention.layer_norm_rms_epsilon"),
             false, &o->norm_eps));
    if (bert) {
        const eft__tensor_view *tt = eft__gguf_find_tensor(c->g, "token_types.weight");
        o->type_vocab_size = tt && tt->ndim == 2 ? tt->shape[0] : 0;
        bool causal = false;
        if (eft__gguf_get_bool(c->g, akey(c, k, sizeof k, "attention.causal"), &causal) && causal)
            return eft__fail(c->err, EFT_ERR_UNSUPPORTED, "%s: GGUF key '%s' is true; eft's bert is "
                             "bidirectional", c->label, k);
        /* llama.cpp's pooling type 4 (rank) marks a reranker with a classification head. */
        int64_t pooling = 0;
        TRY(gint(c, akey(c, k, sizeof k, "pooling_type"), 0, 16, false, &pooling));
        const eft__tensor_view *cls = eft__gguf_find_tensor(c->g, "cls.output.weight");
        if (pooling == 4 || cls) {
            o->task = EFT__TASK_SEQ_CLASSIFICATION;
            o->num_labels = cls && cls->ndim >= 1 ? cls->shape[0] : 1;
        }
    }
    if (!o->num_labels) o->num_labels = 2;

    /* Biases are in the tensors rather than in the metadata. */
    o->qkv_bias = has_tensor(c, "blk.0.attn_q.bias") || has_tensor(c, "blk.0.attn_qkv.bias");
    o->o_bias = has_tensor(c, "blk.0.attn_output.bias");
    o->mlp_bias = has_tensor(c, "blk.0.ffn_up.bias") || has_tensor(c, "blk.0.ffn_down.bias");
    o->attention_bias = o->qkv_bias && o->o_bias;
    o->qk_norm = has_tensor(c, "blk.0.attn_q_norm.weight");
    o->tie_word_embeddings = !has_tensor(c, "output.weight");

    o->pad_token_id = o->bos_token_id = -1;
    gtoken(c, "tokenizer.ggml.padding_token_id", &o->pad_token_id);
    gtoken(c, "tokenizer.ggml.bos_token_id", &o->bos_token_id);
    int64_t eos = -1, eot = -1;
    gtoken(c, "tokenizer.ggml.eos_token_id", &eos);
    gtoken(c, "tokenizer.ggml.eot_token_id", &eot);
    if (eos >= 0) o->eos_token_ids[o->n_eos++] = eos;
    if (eot >= 0 && eot != eos) o->eos_token_ids[o->n_eos++] = eot;

    o->embed_scale = gemma ? sqrt((double)o->hidden_size) : 1.0;
    if (o->arch == EFT__ARCH_GEMMA2 || o->arch == EFT__ARCH_GEMMA3) {
        /* llama.cpp: 1/sqrt(head_dim), except the 27B models (46 and 62 layers), which scale by
         * hidden/heads as their query_pre_attn_scalar says. */
        bool big = (o->arch == EFT__ARCH_GEMMA2 && o->num_hidden_layers == 46) ||
                   (o->arch == EFT__ARCH_GEMMA3 && o->num_hidden_layers == 62);
        o->query_pre_attn_scalar = big ? (double)(o->hidden_size / o->num_attention_heads)
                                       : (double)o->head_dim;
        TRY(gnum(c, akey(c, k, sizeof k, "attn_logit_softcapping"), true, &o->attn_logit_softcapping));
        TRY(gnum(c, akey(c, k, sizeof k, "final_logit_softcapping"), true, &o->final_logit_softcapping));
    }
    o->attn_scale = 1.0 / sqrt(o->query_pre_attn_scalar > 0 ? o->query_pre_attn_scalar
                                                             : (double)o->head_dim);
    if (gpt2) o->scale_attn_weights = true;

    if (!bert && !gpt2) {
        TRY(parse_rope(c, o, o->arch == EFT__ARCH_GEMMA3 ? 1000000.0 : 10000.0));
        if (o->arch == EFT__ARCH_GEMMA3) {
            /* llama.cpp gives gemma3's sliding layers a fixed base of 10000. */
            o->has_rope_local = true;
            eft__rope_init_default(&o->rope_local, 10000.0);
            o->rope_local.partial_rotary_factor = o->rope.partial_rotary_factor;
        }
    }
    return parse_sliding(c, o);
}

eft_status eft__model_config_from_gguf(const struct eft__gguf *g, const char *label,
                                       eft__model_config *out, eft__error *err) {
    memset(out, 0, sizeof *out);
    gctx c = {g, label ? label : "model.gguf", "", err};
    eft_status st = from_gguf(&c, out);
    if (st != EFT_OK) eft__model_config_free(out);
    return st;
}
