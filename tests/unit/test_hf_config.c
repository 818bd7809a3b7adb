/*
 * test_hf_config.c — config.json → eft__model_config: the fixture configs written by
 * transformers 5.23 (tools/ref), hand-written configs for the old and new rope formats, eos
 * lists, llama3 and longrope scaling, every refusal (checked by status and by the key and value
 * in the message), the real all-MiniLM-L6-v2 when the fetch step has put it in models/, and the
 * GGUF metadata path over the tiny llama fixture and the fetched GGUF models.
 */
#include "formats/gguf.h"
#include "formats/hf_config.h"
#include "test.h"

static eft_status parse(const char *json, eft__model_config *c, eft__error *e) {
    eft__error_clear(e);
    return eft__model_config_parse(json, strlen(json), "test.json", c, e);
}

static eft_status load_fixture(const char *name, eft__model_config *c, eft__error *e) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/models/%s/config.json", name);
    eft__error_clear(e);
    eft_status st = eft__model_config_load(test_path(rel), c, e);
    if (st) fprintf(stderr, "  %s: %s\n", name, e->msg);
    return st;
}

/* Expects a refusal with status st whose message names needle (and, when given, needle2). */
static void refuse(const char *json, eft_status st, const char *needle, const char *needle2) {
    eft__model_config c;
    eft__error e;
    eft_status got = parse(json, &c, &e);
    CHECK_MSG(got == st, "expected %s, got %s for %s (%s)", eft_status_str(st), eft_status_str(got),
              json, e.msg);
    CHECK_CONTAINS(e.msg, needle);
    if (needle2) CHECK_CONTAINS(e.msg, needle2);
    CHECK_CONTAINS(e.msg, "test.json");
    CHECK(c.is_sliding == NULL && c.rope.short_factor == NULL);
}

/* ---- fixtures ------------------------------------------------------------------------------ */

static void test_fixture_encoders(void) {
    static const struct {
        const char *dir;
        eft__arch arch;
        int64_t vocab, type_vocab, pad;
        double eps;
    } k[] = {
        {"bert", EFT__ARCH_BERT, 440, 2, 0, 1e-12},
        {"roberta", EFT__ARCH_ROBERTA, 401, 1, 1, 1e-5},
        {"xlm-roberta", EFT__ARCH_XLM_ROBERTA, 393, 1, 1, 1e-5},
        {"mpnet", EFT__ARCH_MPNET, 441, 0, 1, 1e-5},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        eft__model_config c;
        eft__error e;
        if (load_fixture(k[i].dir, &c, &e) != EFT_OK) {
            CHECK(0);
            continue;
        }
        CHECK_EQ_INT(c.arch, k[i].arch);
        CHECK(c.is_encoder);
        CHECK_EQ_INT(c.task, EFT__TASK_BASE);
        CHECK_EQ_INT(c.vocab_size, k[i].vocab);
        CHECK_EQ_INT(c.hidden_size, 64);
        CHECK_EQ_INT(c.num_attention_heads, 4);
        CHECK_EQ_INT(c.num_key_value_heads, 4);
        CHECK_EQ_INT(c.head_dim, 16);
        CHECK_EQ_INT(c.num_hidden_layers, 2);
        CHECK_EQ_INT(c.intermediate_size, 128);
        CHECK_EQ_INT(c.type_vocab_size, k[i].type_vocab);
        CHECK_EQ_INT(c.pad_token_id, k[i].pad);
        CHECK_EQ_INT(c.hidden_act, EFT__ACT_GELU);
        CHECK_EQ_INT(c.norm, EFT__NORM_LAYERNORM);
        CHECK_NEAR(c.norm_eps, k[i].eps, 1e-18);
        CHECK(!c.has_rope);
        CHECK(c.qkv_bias && c.o_bias && c.mlp_bias);
        if (k[i].arch == EFT__ARCH_MPNET) CHECK_EQ_INT(c.relative_attention_num_buckets, 32);
        if (k[i].arch == EFT__ARCH_BERT) CHECK_EQ_INT(c.max_position_embeddings, 128);
        else CHECK_EQ_INT(c.max_position_embeddings, 130);
        eft__model_config_free(&c);
    }
    eft__model_config c;
    eft__error e;
    if (load_fixture("bert-cls", &c, &e) == EFT_OK) {
        CHECK_EQ_INT(c.task, EFT__TASK_SEQ_CLASSIFICATION);
        CHECK_EQ_INT(c.num_labels, 1);
        CHECK_EQ_STR(c.architecture, "BertForSequenceClassification");
        eft__model_config_free(&c);
    } else {
        CHECK(0);
    }
}

static void test_fixture_llama(void) {
    eft__model_config c;
    eft__error e;
    if (load_fixture("llama", &c, &e)) {
        CHECK(0);
        return;
    }
    CHECK_EQ_INT(c.arch, EFT__ARCH_LLAMA);
    CHECK_EQ_STR(c.model_type, "llama");
    CHECK_EQ_INT(c.task, EFT__TASK_CAUSAL_LM);
    CHECK_EQ_INT(c.vocab_size, 495);
    CHECK_EQ_INT(c.num_key_value_heads, 2);
    CHECK_EQ_INT(c.head_dim, 16);
    CHECK_EQ_INT(c.max_position_embeddings, 256);
    CHECK_EQ_INT(c.hidden_act, EFT__ACT_SILU);
    CHECK_EQ_INT(c.norm, EFT__NORM_RMSNORM);
    CHECK(!c.norm_add_one);
    CHECK(c.has_rope);
    CHECK_EQ_INT(c.rope.type, EFT__ROPE_DEFAULT);
    CHECK_NEAR(c.rope.theta, 10000.0, 0);
    CHECK(!c.tie_word_embeddings);
    CHECK_EQ_INT(c.n_eos, 1);
    CHECK_EQ_INT(c.eos_token_ids[0], 2);
    CHECK_EQ_INT(c.sliding_window, 0);
    CHECK(c.is_sliding && !c.is_sliding[0] && !c.is_sliding[1]);
    CHECK(!c.qkv_bias && !c.o_bias && !c.mlp_bias);
    CHECK_NEAR(c.attn_scale, 0.25, 1e-12);
    eft__model_config_free(&c);

    if (load_fixture("llama-rope3", &c, &e)) {
        CHECK(0);
        return;
    }
    CHECK_EQ_INT(c.rope.type, EFT__ROPE_LLAMA3);
    CHECK_NEAR(c.rope.theta, 500000.0, 0);
    CHECK_NEAR(c.rope.factor, 8.0, 0);
    CHECK_NEAR(c.rope.low_freq_factor, 1.0, 0);
    CHECK_NEAR(c.rope.high_freq_factor, 4.0, 0);
    CHECK_EQ_INT(c.rope.original_max_position_embeddings, 64);
    eft__model_config_free(&c);
}

static void test_fixture_decoders(void) {
    eft__model_config c;
    eft__error e;
    if (load_fixture("mistral", &c, &e) == EFT_OK) {
        CHECK_EQ_INT(c.arch, EFT__ARCH_MISTRAL);
        CHECK_EQ_INT(c.sliding_window, 24);
        CHECK(c.is_sliding[0] && c.is_sliding[1]); /* mistral: every layer */
        eft__model_config_free(&c);
    } else CHECK(0);

    if (load_fixture("qwen2", &c, &e) == EFT_OK) {
        CHECK_EQ_INT(c.arch, EFT__ARCH_QWEN2);
        CHECK_NEAR(c.rope.theta, 1000000.0, 0);
        CHECK(c.qkv_bias && !c.o_bias && !c.mlp_bias);
        CHECK(c.tie_word_embeddings);
        CHECK_EQ_INT(c.sliding_window, 0);
        CHECK(!c.is_sliding[0] && !c.is_sliding[1]);
        CHECK_EQ_INT(c.eos_token_ids[0], 402);
        CHECK_EQ_INT(c.vocab_size, 403);
        eft__model_config_free(&c);
    } else CHECK(0);

    if (load_fixture("qwen3", &c, &e) == EFT_OK) {
        CHECK_EQ_INT(c.arch, EFT__ARCH_QWEN3);
        CHECK_EQ_INT(c.head_dim, 16);
        CHECK(c.qk_norm);
        CHECK(!c.qkv_bias && !c.tie_word_embeddings);
        eft__model_config_free(&c);
    } else CHECK(0);

    if (load_fixture("gemma2", &c, &e) == EFT_OK) {
        CHECK_EQ_INT(c.arch, EFT__ARCH_GEMMA2);
        CHECK_EQ_INT(c.hidden_act, EFT__ACT_GELU_TANH);
        CHECK(c.norm_add_one);
        CHECK_NEAR(c.embed_scale, 8.0, 1e-12);
        CHECK_EQ_INT(c.sliding_window, 16);
        CHECK(c.is_sliding[0] && !c.is_sliding[1]);
        CHECK_EQ_INT(c.head_dim, 16);
        CHECK_EQ_INT(c.vocab_size, 498);
        CHECK(c.query_pre_attn_scalar > 0);
        CHECK_NEAR(c.attn_scale, 1.0 / sqrt(c.query_pre_attn_scalar), 1e-12);
        eft__model_config_free(&c);
    } else CHECK(0);

    if (load_fixture("gemma3", &c, &e) == EFT_OK) {
        CHECK_EQ_INT(c.arch, EFT__ARCH_GEMMA3);
        CHECK_EQ_STR(c.model_type, "gemma3_text");
        CHECK_EQ_INT(c.sliding_window, 16);
        CHECK(c.is_sliding[0] && !c.is_sliding[1]);
        CHECK(c.qk_norm && c.norm_add_one);
        CHECK_NEAR(c.query_pre_attn_scalar, 16, 0);
        CHECK_NEAR(c.attn_logit_softcapping, 0, 0);
        /* Old form: rope_theta and rope_scaling for full attention, rope_local_base_freq. */
        CHECK(c.has_rope_local);
        CHECK_EQ_INT(c.rope.type, EFT__ROPE_LINEAR);
        CHECK_NEAR(c.rope.factor, 8.0, 0);
        CHECK_NEAR(c.rope.theta, 1000000.0, 0);
        CHECK_EQ_INT(c.rope_local.type, EFT__ROPE_DEFAULT);
        CHECK_NEAR(c.rope_local.theta, 10000.0, 0);
        CHECK(eft__model_config_rope_for_layer(&c, 0) == &c.rope_local);
        CHECK(eft__model_config_rope_for_layer(&c, 1) == &c.rope);
        eft__model_config_free(&c);
    } else CHECK(0);

    if (load_fixture("phi3", &c, &e) == EFT_OK) {
        CHECK_EQ_INT(c.arch, EFT__ARCH_PHI3);
        CHECK_EQ_INT(c.head_dim, 16);
        CHECK_EQ_INT(c.sliding_window, 0);
        CHECK_NEAR(c.rope.partial_rotary_factor, 1.0, 0);
        CHECK_EQ_INT(c.eos_token_ids[0], 495);
        CHECK_NEAR(c.norm_eps, 1e-5, 1e-12);
        eft__model_config_free(&c);
    } else CHECK(0);

    if (load_fixture("gpt2", &c, &e) == EFT_OK) {
        CHECK_EQ_INT(c.arch, EFT__ARCH_GPT2);
        CHECK_EQ_INT(c.task, EFT__TASK_CAUSAL_LM);
        CHECK_EQ_INT(c.hidden_size, 64);
        CHECK_EQ_INT(c.num_attention_heads, 4);
        CHECK_EQ_INT(c.num_hidden_layers, 2);
        CHECK_EQ_INT(c.intermediate_size, 128);
        CHECK_EQ_INT(c.max_position_embeddings, 256);
        CHECK_EQ_INT(c.hidden_act, EFT__ACT_GELU_TANH);
        CHECK_EQ_INT(c.norm, EFT__NORM_LAYERNORM);
        CHECK_NEAR(c.norm_eps, 1e-5, 1e-12);
        CHECK(!c.has_rope && c.scale_attn_weights && c.tie_word_embeddings);
        CHECK_EQ_INT(c.eos_token_ids[0], 400);
        eft__model_config_free(&c);
    } else CHECK(0);
}

/* ---- hand-written configs ------------------------------------------------------------------ */

static void test_defaults_and_names(void) {
    eft__model_config c;
    eft__error e;
    /* Everything absent: transformers' defaults. */
    CHECK_EQ_INT(parse("{\"model_type\": \"mistral\"}", &c, &e), EFT_OK);
    CHECK_EQ_INT(c.hidden_size, 4096);
    CHECK_EQ_INT(c.num_key_value_heads, 8);
    CHECK_EQ_INT(c.head_dim, 128);
    CHECK_EQ_INT(c.max_position_embeddings, 131072);
    CHECK_EQ_INT(c.sliding_window, 4096);
    CHECK_EQ_INT(c.bos_token_id, 1);
    eft__model_config_free(&c);
    CHECK_EQ_INT(parse("{\"model_type\": \"qwen3\", \"hidden_size\": 100, \"num_attention_heads\": 3,"
                       " \"num_key_value_heads\": 1}", &c, &e), EFT_OK);
    CHECK_EQ_INT(c.head_dim, 128); /* qwen3's fixed default: no divisibility needed */
    eft__model_config_free(&c);
    /* gemma v1 "gelu" means the tanh form. */
    CHECK_EQ_INT(parse("{\"model_type\": \"gemma\", \"hidden_act\": \"gelu\"}", &c, &e), EFT_OK);
    CHECK_EQ_INT(c.hidden_act, EFT__ACT_GELU_TANH);
    CHECK_NEAR(c.embed_scale, sqrt(3072.0), 1e-9);
    eft__model_config_free(&c);
    /* No model_type: the class name decides. */
    CHECK_EQ_INT(parse("{\"architectures\": [\"XLMRobertaForSequenceClassification\"],"
                       " \"id2label\": {\"0\": \"a\", \"1\": \"b\", \"2\": \"c\"}}", &c, &e), EFT_OK);
    CHECK_EQ_INT(c.arch, EFT__ARCH_XLM_ROBERTA);
    CHECK_EQ_INT(c.task, EFT__TASK_SEQ_CLASSIFICATION);
    CHECK_EQ_INT(c.num_labels, 3);
    eft__model_config_free(&c);
    /* Ignored keys, nulls, dtype strings, qwen2 sliding layers. */
    CHECK_EQ_INT(parse("{\"model_type\": \"qwen2\", \"num_hidden_layers\": 4, \"hidden_dropout\": \"x\","
                       " \"use_sliding_window\": true, \"sliding_window\": 32, \"max_window_layers\": 2,"
                       " \"torch_dtype\": \"bfloat16\", \"pad_token_id\": null, \"problem_type\": "
                       "\"regression\"}", &c, &e), EFT_OK);
    CHECK(!c.is_sliding[0] && !c.is_sliding[1] && c.is_sliding[2] && c.is_sliding[3]);
    CHECK_EQ_STR(c.dtype, "bfloat16");
    CHECK_EQ_STR(c.problem_type, "regression");
    CHECK_EQ_INT(c.pad_token_id, -1);
    eft__model_config_free(&c);
    CHECK_EQ_STR(eft__arch_name(EFT__ARCH_XLM_ROBERTA), "xlm-roberta");
    CHECK_EQ_STR(eft__arch_name(EFT__ARCH_GEMMA3), "gemma3");
    CHECK_EQ_STR(eft__arch_name((eft__arch)99), "unknown");
    CHECK_EQ_STR(eft__act_name(EFT__ACT_GELU_TANH), "gelu_tanh");
    CHECK_EQ_STR(eft__task_name(EFT__TASK_CAUSAL_LM), "causal_lm");
    CHECK_EQ_STR(eft__rope_type_name(EFT__ROPE_LONGROPE), "longrope");
    eft__model_config_free(NULL);
}

static void test_rope_formats(void) {
    eft__model_config c;
    eft__error e;
    /* Old: top-level rope_theta + rope_scaling with "type". */
    CHECK_EQ_INT(parse("{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_attention_heads\": 4,"
                       " \"rope_theta\": 5e5, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2}}",
                       &c, &e), EFT_OK);
    CHECK_EQ_INT(c.rope.type, EFT__ROPE_LINEAR);
    CHECK_NEAR(c.rope.theta, 5e5, 0);
    CHECK_NEAR(c.rope.factor, 2, 0);
    eft__model_config_free(&c);
    /* New: rope_parameters carries theta and type. */
    CHECK_EQ_INT(parse("{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_attention_heads\": 4,"
                       " \"max_position_embeddings\": 4096, \"rope_parameters\": {\"rope_type\": "
                       "\"yarn\", \"rope_theta\": 1e6, \"factor\": 4, \"original_max_position_embeddings\":"
                       " 1024}}", &c, &e), EFT_OK);
    CHECK_EQ_INT(c.rope.type, EFT__ROPE_YARN);
    CHECK_NEAR(c.rope.theta, 1e6, 0);
    CHECK_NEAR(c.rope.beta_fast, 32, 0);
    CHECK_NEAR(c.rope.beta_slow, 1, 0);
    CHECK_NEAR(c.rope.attention_factor, 0.1 * log(4.0) + 1.0, 1e-12);
    CHECK_EQ_INT(c.rope.original_max_position_embeddings, 1024);
    eft__model_config_free(&c);
    /* gemma3's per-layer-type form keeps both thetas. */
    CHECK_EQ_INT(parse("{\"model_type\": \"gemma3_text\", \"num_hidden_layers\": 6, \"layer_types\": "
                       "[\"sliding_attention\",\"sliding_attention\",\"sliding_attention\","
                       "\"sliding_attention\",\"sliding_attention\",\"full_attention\"],"
                       " \"rope_parameters\": {\"full_attention\": {\"rope_type\": \"linear\", "
                       "\"factor\": 8, \"rope_theta\": 1e6}, \"sliding_attention\": {\"rope_type\": "
                       "\"default\", \"rope_theta\": 1e4}}}", &c, &e), EFT_OK);
    CHECK_NEAR(c.rope.theta, 1e6, 0);
    CHECK_EQ_INT(c.rope.type, EFT__ROPE_LINEAR);
    CHECK_NEAR(c.rope_local.theta, 1e4, 0);
    CHECK_EQ_INT(c.rope_local.type, EFT__ROPE_DEFAULT);
    CHECK(c.is_sliding[4] && !c.is_sliding[5]);
    CHECK(eft__model_config_rope_for_layer(&c, 5) == &c.rope);
    eft__model_config_free(&c);
    /* Longrope (phi3 spells it "su" in old files); arrays of rotary_dim/2 = 4 entries. */
    CHECK_EQ_INT(parse("{\"model_type\": \"phi3\", \"hidden_size\": 32, \"num_attention_heads\": 4,"
                       " \"max_position_embeddings\": 8192, \"original_max_position_embeddings\": 2048,"
                       " \"rope_scaling\": {\"type\": \"su\", \"short_factor\": [1,1,1.5,2],"
                       " \"long_factor\": [2,3,4,5.5]}}", &c, &e), EFT_OK);
    CHECK_EQ_INT(c.rope.type, EFT__ROPE_LONGROPE);
    CHECK_EQ_INT(c.rope.n_short_factor, 4);
    CHECK_NEAR(c.rope.long_factor[3], 5.5, 1e-6);
    CHECK_NEAR(c.rope.factor, 4.0, 0);
    CHECK_NEAR(c.rope.attention_factor, sqrt(1 + log(4.0) / log(2048.0)), 1e-12);
    CHECK_EQ_INT(c.rope.original_max_position_embeddings, 2048);
    eft__model_config_free(&c);
    /* partial rotary factor at top level. */
    CHECK_EQ_INT(parse("{\"model_type\": \"phi3\", \"hidden_size\": 64, \"num_attention_heads\": 4,"
                       " \"partial_rotary_factor\": 0.5}", &c, &e), EFT_OK);
    CHECK_NEAR(c.rope.partial_rotary_factor, 0.5, 0);
    eft__model_config_free(&c);
}

static void test_eos(void) {
    eft__model_config c;
    eft__error e;
    CHECK_EQ_INT(parse("{\"model_type\": \"llama\", \"eos_token_id\": [128001, 128008, 128009]}", &c, &e),
                 EFT_OK);
    CHECK_EQ_INT(c.n_eos, 3);
    CHECK_EQ_INT(c.eos_token_ids[2], 128009);
    eft__model_config_free(&c);
    CHECK_EQ_INT(parse("{\"model_type\": \"llama\", \"eos_token_id\": null}", &c, &e), EFT_OK);
    CHECK_EQ_INT(c.n_eos, 0);
    eft__model_config_free(&c);
    refuse("{\"model_type\": \"llama\", \"eos_token_id\": [1,2,3,4,5,6,7,8,9]}", EFT_ERR_LIMIT,
           "eos_token_id", "9 ids");
    refuse("{\"model_type\": \"llama\", \"eos_token_id\": \"2\"}", EFT_ERR_FORMAT, "eos_token_id",
           "a string");
}

static void test_refusals(void) {
    refuse("{\"model_type\": \"t5\"}", EFT_ERR_UNSUPPORTED, "model_type 't5'", "bert, roberta");
    refuse("{\"model_type\": \"bert\", \"hidden_act\": \"mish\"}", EFT_ERR_UNSUPPORTED, "hidden_act",
           "'mish'");
    refuse("{\"model_type\": \"gemma2\", \"hidden_activation\": \"tanh\"}", EFT_ERR_UNSUPPORTED,
           "hidden_activation", "'tanh'");
    refuse("{\"model_type\": \"bert\", \"position_embedding_type\": \"relative_key\"}",
           EFT_ERR_UNSUPPORTED, "position_embedding_type", "relative_key");
    refuse("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"foo\"}}", EFT_ERR_UNSUPPORTED,
           "rope_type", "'foo'");
    refuse("{\"model_type\": \"llama\", \"quantization_config\": {\"quant_method\": \"awq\"}}",
           EFT_ERR_UNSUPPORTED, "quantization_config", "'awq'");
    refuse("{\"model_type\": \"llama\", \"hidden_size\": \"64\"}", EFT_ERR_FORMAT, "'hidden_size'",
           "a string");
    refuse("{\"model_type\": \"llama\", \"hidden_size\": 64.5}", EFT_ERR_FORMAT, "'hidden_size'", "64.5");
    refuse("{\"model_type\": \"llama\", \"num_hidden_layers\": -2}", EFT_ERR_FORMAT, "num_hidden_layers",
           "-2");
    refuse("{\"model_type\": \"llama\", \"vocab_size\": 0}", EFT_ERR_FORMAT, "vocab_size", "0");
    refuse("{\"model_type\": \"llama\", \"hidden_size\": 100, \"num_attention_heads\": 3}",
           EFT_ERR_FORMAT, "hidden_size 100", "num_attention_heads 3");
    refuse("{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_attention_heads\": 4, "
           "\"num_key_value_heads\": 3}", EFT_ERR_FORMAT, "num_key_value_heads 3", "num_attention_heads 4");
    refuse("{\"model_type\": \"gpt2\", \"n_embd\": 100, \"n_head\": 3}", EFT_ERR_FORMAT, "n_embd 100",
           "n_head 3");
    refuse("{\"model_type\": \"llama\", \"hidden_size\": 131072}", EFT_ERR_LIMIT, "hidden_size", "131072");
    refuse("{\"model_type\": \"llama\", \"num_hidden_layers\": 5000}", EFT_ERR_LIMIT, "num_hidden_layers",
           "1024");
    refuse("{\"model_type\": \"llama\", \"vocab_size\": 99999999}", EFT_ERR_LIMIT, "vocab_size",
           "99999999");
    refuse("{\"model_type\": \"llama\", \"rms_norm_eps\": -1}", EFT_ERR_FORMAT, "rms_norm_eps", "-1");
    refuse("{\"model_type\": \"llama\", \"tie_word_embeddings\": 1}", EFT_ERR_FORMAT,
           "tie_word_embeddings", "an integer");
    refuse("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8}}",
           EFT_ERR_FORMAT, "low_freq_factor", "llama3");
    refuse("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"linear\"}}", EFT_ERR_FORMAT,
           "rope_scaling.factor", "linear");
    refuse("{\"model_type\": \"phi3\", \"hidden_size\": 32, \"num_attention_heads\": 4, \"rope_scaling\":"
           " {\"type\": \"longrope\", \"short_factor\": [1,1], \"long_factor\": [1,1]}}", EFT_ERR_FORMAT,
           "short_factor", "needs 4");
    refuse("{\"model_type\": \"qwen2\", \"num_hidden_layers\": 2, \"layer_types\": [\"full_attention\","
           " \"chunked_attention\"]}", EFT_ERR_UNSUPPORTED, "layer_types[1]", "chunked_attention");
    refuse("{\"model_type\": \"gemma2\", \"num_hidden_layers\": 2, \"layer_types\": [\"full_attention\"]}",
           EFT_ERR_FORMAT, "layer_types", "1 entries");
    refuse("{\"model_type\": \"bert\", \"is_decoder\": true}", EFT_ERR_UNSUPPORTED, "is_decoder", "bert");
    refuse("{\"model_type\": 7}", EFT_ERR_FORMAT, "model_type", "an integer");
    refuse("{\"hidden_size\": 64}", EFT_ERR_FORMAT, "model_type", "architectures");
    refuse("[1, 2]", EFT_ERR_FORMAT, "top level", "an array");
    refuse("{\"model_type\": \"bert\",\n \"hidden_size\": 64,,}", EFT_ERR_FORMAT, "line 2", "column");
    refuse("{\"model_type\": \"bert\", \"model_type\": \"bert\"}", EFT_ERR_FORMAT, "duplicate", NULL);
}

static void test_load_errors(void) {
    eft__model_config c;
    eft__error e;
    CHECK_EQ_INT(eft__model_config_load("/nonexistent/config.json", &c, &e), EFT_ERR_NOT_FOUND);
    CHECK_CONTAINS(e.msg, "/nonexistent/config.json");
}

/* ---- real model ---------------------------------------------------------------------------- */

static void test_minilm(void) {
    const char *p = test_path("models/all-MiniLM-L6-v2/config.json");
    FILE *f = fopen(p, "rb");
    if (!f) {
        printf("skip all-MiniLM-L6-v2: %s not present\n", p);
        return;
    }
    fclose(f);
    eft__model_config c;
    eft__error e;
    CHECK_EQ_INT(eft__model_config_load(p, &c, &e), EFT_OK);
    CHECK_EQ_INT(c.arch, EFT__ARCH_BERT);
    CHECK_EQ_INT(c.hidden_size, 384);
    CHECK_EQ_INT(c.num_hidden_layers, 6);
    CHECK_EQ_INT(c.num_attention_heads, 12);
    CHECK_EQ_INT(c.head_dim, 32);
    CHECK_EQ_INT(c.intermediate_size, 1536);
    CHECK_EQ_INT(c.vocab_size, 30522);
    eft__model_config_free(&c);
}

/* ---- GGUF metadata ------------------------------------------------------------------------- */

static bool open_gguf_config(const char *path, eft__gguf **g, eft__model_config *c) {
    eft__error e;
    if (eft__gguf_open(path, g, &e) != EFT_OK) {
        fprintf(stderr, "  %s\n", e.msg);
        return false;
    }
    if (eft__model_config_from_gguf(*g, path, c, &e) != EFT_OK) {
        fprintf(stderr, "  %s\n", e.msg);
        eft__gguf_close(*g);
        return false;
    }
    return true;
}

static void test_gguf_tiny_llama(void) {
    eft__gguf *g;
    eft__model_config c;
    if (!open_gguf_config(test_path("tests/fixtures/gguf/tiny-llama.gguf"), &g, &c)) {
        CHECK(0);
        return;
    }
    CHECK_EQ_INT(c.arch, EFT__ARCH_LLAMA);
    CHECK_EQ_INT(c.task, EFT__TASK_CAUSAL_LM);
    CHECK_EQ_INT(c.hidden_size, 64);
    CHECK_EQ_INT(c.num_hidden_layers, 2);
    CHECK_EQ_INT(c.num_attention_heads, 4);
    CHECK_EQ_INT(c.num_key_value_heads, 2);
    CHECK_EQ_INT(c.head_dim, 16);
    CHECK_EQ_INT(c.intermediate_size, 128);
    CHECK_EQ_INT(c.max_position_embeddings, 256);
    CHECK_EQ_INT(c.vocab_size, 495);
    CHECK_NEAR(c.rope.theta, 10000.0, 0);
    CHECK_NEAR(c.rope.partial_rotary_factor, 1.0, 0);
    CHECK_NEAR(c.norm_eps, 1e-5, 1e-10);
    CHECK(!c.tie_word_embeddings); /* it has output.weight */
    CHECK_EQ_INT(c.bos_token_id, 1);
    CHECK_EQ_INT(c.eos_token_ids[0], 2);
    CHECK(c.is_sliding && !c.is_sliding[1]);
    eft__model_config_free(&c);
    eft__gguf_close(g);
}

static void test_gguf_real(void) {
    eft__gguf *g;
    eft__model_config c;
    const char *p = test_path("models/gemma-3-270m-Q4_K_M/gemma-3-270m-q4_k_m.gguf");
    FILE *f = fopen(p, "rb");
    if (!f) {
        printf("skip gemma-3-270m: not present\n");
    } else {
        fclose(f);
        if (open_gguf_config(p, &g, &c)) {
            CHECK_EQ_INT(c.arch, EFT__ARCH_GEMMA3);
            CHECK_EQ_INT(c.hidden_size, 640);
            CHECK_EQ_INT(c.num_hidden_layers, 18);
            CHECK_EQ_INT(c.num_key_value_heads, 1);
            CHECK_EQ_INT(c.head_dim, 256);
            CHECK_EQ_INT(c.vocab_size, 262144);
            CHECK_EQ_INT(c.sliding_window, 512);
            CHECK(c.is_sliding[0] && !c.is_sliding[5] && c.is_sliding[6]);
            CHECK_NEAR(c.rope.theta, 1e6, 0);
            CHECK_NEAR(c.rope_local.theta, 1e4, 0);
            CHECK(c.tie_word_embeddings && c.qk_norm && !c.norm_add_one);
            CHECK_NEAR(c.embed_scale, sqrt(640.0), 1e-9);
            eft__model_config_free(&c);
            eft__gguf_close(g);
        } else CHECK(0);
    }
    p = test_path("models/SmolLM2-135M-Instruct-Q4_1/SmolLM2-135M-Instruct.Q4_1.gguf");
    f = fopen(p, "rb");
    if (!f) {
        printf("skip SmolLM2-135M: not present\n");
        return;
    }
    fclose(f);
    if (open_gguf_config(p, &g, &c)) {
        CHECK_EQ_INT(c.arch, EFT__ARCH_LLAMA);
        CHECK_EQ_INT(c.hidden_size, 576);
        CHECK_EQ_INT(c.num_hidden_layers, 30);
        CHECK_EQ_INT(c.num_attention_heads, 9);
        CHECK_EQ_INT(c.num_key_value_heads, 3);
        CHECK_EQ_INT(c.head_dim, 64);
        CHECK_EQ_INT(c.vocab_size, 49152);
        CHECK_NEAR(c.rope.theta, 100000.0, 0);
        CHECK(c.tie_word_embeddings);
        eft__model_config_free(&c);
        eft__gguf_close(g);
    } else CHECK(0);
}

int main(void) {
    RUN(test_fixture_encoders);
    RUN(test_fixture_llama);
    RUN(test_fixture_decoders);
    RUN(test_defaults_and_names);
    RUN(test_rope_formats);
    RUN(test_eos);
    RUN(test_refusals);
    RUN(test_load_errors);
    RUN(test_minilm);
    RUN(test_gguf_tiny_llama);
    RUN(test_gguf_real);
    return test_summary();
}
