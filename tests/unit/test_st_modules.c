/*
 * test_st_modules.c — sentence-transformers folders: every pooling key (legacy booleans and v6's
 * pooling_mode string/list), Normalize, the prompt config, sentence_bert_config.json, refused
 * modules (Dense, custom code) and broken JSON, written into scratch folders; the bert fixture
 * written by sentence-transformers 6.2; and all-MiniLM-L6-v2 when the fetch step put it in models/.
 */
#include <sys/stat.h>

#include "formats/st_modules.h"
#include "test.h"

static void write_file(const char *dir, const char *name, const char *text) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    char *slash = strrchr(p, '/');
    *slash = 0;
    mkdir(p, 0755);
    *slash = '/';
    FILE *f = fopen(p, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", p);
        return;
    }
    fputs(text, f);
    fclose(f);
}

static const char *k_modules3 =
    "[{\"idx\": 0, \"name\": \"0\", \"path\": \"\", \"type\": \"sentence_transformers.models.Transformer\"},"
    " {\"idx\": 1, \"name\": \"1\", \"path\": \"1_Pooling\", \"type\": "
    "\"sentence_transformers.sentence_transformer.modules.pooling.Pooling\"},"
    " {\"idx\": 2, \"name\": \"2\", \"path\": \"2_Normalize\", \"type\": "
    "\"sentence_transformers.base.modules.normalize.Normalize\"}]";

static eft_status pool(const char *json, eft__pooling_config *p, eft__error *e) {
    eft__error_clear(e);
    return eft__st_parse_pooling(json, strlen(json), "1_Pooling/config.json", p, e);
}

static void test_pooling_keys(void) {
    eft__pooling_config p;
    eft__error e;
    char buf[128];
    static const struct { const char *key; const char *name; } k[] = {
        {"pooling_mode_cls_token", "cls"},
        {"pooling_mode_mean_tokens", "mean"},
        {"pooling_mode_max_tokens", "max"},
        {"pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"},
        {"pooling_mode_weightedmean_tokens", "weightedmean"},
        {"pooling_mode_lasttoken", "lasttoken"},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        char json[256];
        snprintf(json, sizeof json, "{\"word_embedding_dimension\": 384, \"%s\": true, "
                 "\"include_prompt\": false}", k[i].key);
        CHECK_EQ_INT(pool(json, &p, &e), EFT_OK);
        CHECK_EQ_STR(eft__pooling_names(&p, buf, sizeof buf), k[i].name);
        CHECK_EQ_INT(p.n_modes, 1);
        CHECK_EQ_INT(p.word_embedding_dimension, 384);
        CHECK(!p.include_prompt);
    }
    CHECK_EQ_INT(pool("{\"word_embedding_dimension\": 8, \"pooling_mode_lasttoken\": true}", &p, &e), EFT_OK);
    CHECK(p.lasttoken && !p.mean && !p.cls && !p.max && !p.mean_sqrt_len && !p.weightedmean);
    CHECK(p.include_prompt);
    /* Several legacy keys: sentence-transformers' concatenation order, whatever the key order. */
    CHECK_EQ_INT(pool("{\"pooling_mode_mean_tokens\": true, \"pooling_mode_max_tokens\": true,"
                      " \"pooling_mode_cls_token\": true}", &p, &e), EFT_OK);
    CHECK_EQ_STR(eft__pooling_names(&p, buf, sizeof buf), "cls+max+mean");
    CHECK(p.cls && p.max && p.mean);
    /* All false, or nothing: mean (v6 reads it so). */
    CHECK_EQ_INT(pool("{\"pooling_mode_mean_tokens\": false}", &p, &e), EFT_OK);
    CHECK_EQ_STR(eft__pooling_names(&p, buf, sizeof buf), "mean");
    CHECK_EQ_INT(pool("{}", &p, &e), EFT_OK);
    CHECK(p.mean && p.n_modes == 1);
    /* v6: pooling_mode string or list in the file's order, embedding_dimension; wins over legacy. */
    CHECK_EQ_INT(pool("{\"embedding_dimension\": 64, \"pooling_mode\": \"weightedmean\","
                      " \"pooling_mode_cls_token\": true}", &p, &e), EFT_OK);
    CHECK_EQ_STR(eft__pooling_names(&p, buf, sizeof buf), "weightedmean");
    CHECK_EQ_INT(p.word_embedding_dimension, 64);
    CHECK(!p.cls);
    CHECK_EQ_INT(pool("{\"pooling_mode\": [\"mean\", \"cls\"]}", &p, &e), EFT_OK);
    CHECK_EQ_STR(eft__pooling_names(&p, buf, sizeof buf), "mean+cls");
    CHECK_EQ_INT(p.order[0], EFT__POOL_MEAN);
    /* Refusals. */
    CHECK_EQ_INT(pool("{\"pooling_mode\": \"median\"}", &p, &e), EFT_ERR_UNSUPPORTED);
    CHECK_CONTAINS(e.msg, "pooling_mode 'median'");
    CHECK_CONTAINS(e.msg, "1_Pooling/config.json");
    CHECK_EQ_INT(pool("{\"pooling_mode\": [\"mean\", \"mean\"]}", &p, &e), EFT_ERR_UNSUPPORTED);
    CHECK_CONTAINS(e.msg, "'mean' twice");
    CHECK_EQ_INT(pool("{\"pooling_mode\": [\"mean\", 3]}", &p, &e), EFT_ERR_FORMAT);
    CHECK_CONTAINS(e.msg, "pooling_mode[1]");
    CHECK_EQ_INT(pool("{\"pooling_mode_mean_tokens\": \"yes\"}", &p, &e), EFT_ERR_FORMAT);
    CHECK_CONTAINS(e.msg, "pooling_mode_mean_tokens");
    CHECK_EQ_INT(pool("{\"word_embedding_dimension\": -1}", &p, &e), EFT_ERR_FORMAT);
    CHECK_CONTAINS(e.msg, "word_embedding_dimension' is -1");
    CHECK_EQ_INT(pool("{\"word_embedding_dimension\": 1e9}", &p, &e), EFT_ERR_FORMAT);
    CHECK_CONTAINS(e.msg, "word_embedding_dimension");
    CHECK_EQ_INT(pool("{\"word_embedding_dimension\": 1000000}", &p, &e), EFT_ERR_LIMIT);
    CHECK_CONTAINS(e.msg, "1000000");
    CHECK_EQ_INT(pool("{\"include_prompt\": 0}", &p, &e), EFT_ERR_FORMAT);
    CHECK_CONTAINS(e.msg, "include_prompt");
    CHECK_EQ_INT(pool("{\"pooling_mode_mean_tokens\": true,\n\"x\": }", &p, &e), EFT_ERR_FORMAT);
    CHECK_CONTAINS(e.msg, "line 2");
    CHECK_CONTAINS(e.msg, "column");
    p.n_modes = 0;
    CHECK_EQ_STR(eft__pooling_names(&p, buf, sizeof buf), "none");
}

static void test_folder_full(void) {
    const char *d = test_tmpdir("st_full");
    write_file(d, "modules.json", k_modules3);
    write_file(d, "1_Pooling/config.json", "{\"word_embedding_dimension\": 64, "
               "\"pooling_mode_cls_token\": true, \"pooling_mode_mean_tokens\": false}");
    write_file(d, "2_Normalize/.keep", "");
    write_file(d, "sentence_bert_config.json", "{\"max_seq_length\": 128, \"do_lower_case\": true}");
    write_file(d, "config_sentence_transformers.json",
               "{\"__version__\": {\"sentence_transformers\": \"6.2.0\"}, \"prompts\": {\"query\": "
               "\"query: \", \"passage\": \"passage: \"}, \"default_prompt_name\": \"query\", "
               "\"similarity_fn_name\": \"dot\"}");
    eft__st_config c;
    eft__error e;
    CHECK_EQ_INT(eft__st_config_load(d, &c, &e), EFT_OK);
    CHECK(c.present && c.has_pooling && c.normalize);
    CHECK(c.pooling.cls && !c.pooling.mean);
    CHECK_EQ_INT(c.pooling.word_embedding_dimension, 64);
    CHECK_EQ_INT(c.max_seq_length, 128);
    CHECK(c.do_lower_case);
    CHECK_EQ_INT(c.n_prompts, 2);
    if (c.n_prompts == 2) {
        CHECK_EQ_STR(c.prompts[0].name, "query");
        CHECK_EQ_STR(c.prompts[0].text, "query: ");
        CHECK_EQ_STR(c.prompts[1].name, "passage");
    }
    CHECK_EQ_STR(c.default_prompt_name, "query");
    CHECK_EQ_STR(c.similarity_fn_name, "dot");
    CHECK_EQ_STR(c.transformer_path, "");
    CHECK_EQ_STR(c.pooling_path, "1_Pooling");
    eft__st_config_free(&c);
    eft__st_config_free(NULL);
}

static void test_folder_absent_and_partial(void) {
    const char *d = test_tmpdir("st_none");
    eft__st_config c;
    eft__error e;
    CHECK_EQ_INT(eft__st_config_load(d, &c, &e), EFT_OK);
    CHECK(!c.present && !c.has_pooling && !c.normalize);
    CHECK_EQ_INT(c.max_seq_length, 0);
    CHECK(c.pooling.include_prompt);
    eft__st_config_free(&c);

    /* Transformer + Pooling, no Normalize; pooling config missing is an error naming the path. */
    d = test_tmpdir("st_nopool");
    write_file(d, "modules.json",
               "[{\"idx\": 0, \"name\": \"0\", \"path\": \"\", \"type\": "
               "\"sentence_transformers.models.Transformer\"}, {\"idx\": 1, \"name\": \"1\", \"path\": "
               "\"1_Pooling\", \"type\": \"sentence_transformers.models.Pooling\"}]");
    CHECK_EQ_INT(eft__st_config_load(d, &c, &e), EFT_ERR_NOT_FOUND);
    CHECK_CONTAINS(e.msg, "1_Pooling/config.json");
    write_file(d, "1_Pooling/config.json", "{\"pooling_mode_max_tokens\": true}");
    CHECK_EQ_INT(eft__st_config_load(d, &c, &e), EFT_OK);
    CHECK(c.present && c.has_pooling && !c.normalize && c.pooling.max);
    eft__st_config_free(&c);
}

static void expect_modules_refusal(const char *json, eft_status st, const char *n1, const char *n2) {
    eft__st_config c;
    memset(&c, 0, sizeof c);
    eft__error e;
    eft__error_clear(&e);
    eft_status got = eft__st_parse_modules(json, strlen(json), "modules.json", &c, &e);
    CHECK_MSG(got == st, "expected %s, got %s: %s", eft_status_str(st), eft_status_str(got), e.msg);
    CHECK_CONTAINS(e.msg, n1);
    if (n2) CHECK_CONTAINS(e.msg, n2);
    CHECK_CONTAINS(e.msg, "modules.json");
    eft__st_config_free(&c);
}

static void test_modules_refusals(void) {
    const char *t = "{\"idx\": 0, \"name\": \"0\", \"path\": \"\", \"type\": "
                    "\"sentence_transformers.models.Transformer\"}";
    char json[1024];
    snprintf(json, sizeof json, "[%s, {\"idx\": 1, \"name\": \"1\", \"path\": \"2_Dense\", \"type\": "
             "\"sentence_transformers.models.Dense\"}]", t);
    expect_modules_refusal(json, EFT_ERR_UNSUPPORTED, "sentence_transformers.models.Dense", "2_Dense");
    snprintf(json, sizeof json, "[%s, {\"idx\": 1, \"name\": \"1\", \"path\": \"1_Custom\", \"type\": "
             "\"custom_module.MyPooling\"}]", t);
    expect_modules_refusal(json, EFT_ERR_UNSUPPORTED, "custom_module.MyPooling", "1_Custom");
    snprintf(json, sizeof json, "[%s, {\"idx\": 1, \"name\": \"1\", \"path\": \"../evil\", \"type\": "
             "\"sentence_transformers.models.Pooling\"}]", t);
    expect_modules_refusal(json, EFT_ERR_FORMAT, "'../evil'", "leaves");
    snprintf(json, sizeof json, "[%s, {\"path\": \"2_Normalize\", \"type\": "
             "\"sentence_transformers.models.Normalize\"}, {\"path\": \"1_Pooling\", \"type\": "
             "\"sentence_transformers.models.Pooling\"}]", t);
    expect_modules_refusal(json, EFT_ERR_UNSUPPORTED, "Pooling (path '1_Pooling') comes after Normalize",
                           NULL);
    expect_modules_refusal("[{\"path\": \"1_Pooling\", \"type\": \"sentence_transformers.models.Pooling\"}]",
                           EFT_ERR_UNSUPPORTED, "Transformer", NULL);
    expect_modules_refusal("[{\"path\": 3, \"type\": \"sentence_transformers.models.Transformer\"}]",
                           EFT_ERR_FORMAT, "module 0", "an integer");
    expect_modules_refusal("{\"modules\": []}", EFT_ERR_FORMAT, "list of modules", "an object");
    expect_modules_refusal("[{\"path\": \"\",\n  \"type\": ]", EFT_ERR_FORMAT, "line 2", "column");

    /* Through the folder loader: the error names the file's path. */
    const char *d = test_tmpdir("st_dense");
    snprintf(json, sizeof json, "[%s, {\"idx\": 1, \"name\": \"1\", \"path\": \"2_Dense\", \"type\": "
             "\"sentence_transformers.models.Dense\"}]", t);
    write_file(d, "modules.json", json);
    eft__st_config c;
    eft__error e;
    CHECK_EQ_INT(eft__st_config_load(d, &c, &e), EFT_ERR_UNSUPPORTED);
    CHECK_CONTAINS(e.msg, "st_dense/modules.json");
    CHECK_CONTAINS(e.msg, "Dense");
    CHECK(c.transformer_path == NULL && c.prompts == NULL);
}

static void test_other_files(void) {
    eft__st_config c;
    eft__error e;
    memset(&c, 0, sizeof c);
#define SB(j) eft__st_parse_sbert_config(j, strlen(j), "sentence_bert_config.json", &c, &e)
#define SC(j) eft__st_parse_st_config(j, strlen(j), "config_sentence_transformers.json", &c, &e)
    CHECK_EQ_INT(SB("{\"max_seq_length\": \"256\"}"), EFT_ERR_FORMAT);
    CHECK_CONTAINS(e.msg, "max_seq_length");
    CHECK_CONTAINS(e.msg, "sentence_bert_config.json");
    CHECK_EQ_INT(SB("{\"max_seq_length\": 0}"), EFT_ERR_FORMAT);
    CHECK_CONTAINS(e.msg, "max_seq_length' is 0");
    CHECK_EQ_INT(SB("{\"do_lower_case\": \"no\"}"), EFT_ERR_FORMAT);
    CHECK_CONTAINS(e.msg, "do_lower_case");
    CHECK_EQ_INT(SB("{\"max_seq_length\": null, \"unknown\": [1]}"), EFT_OK);
    CHECK_EQ_INT(SC("{\"prompts\": [\"a\"]}"), EFT_ERR_FORMAT);
    CHECK_CONTAINS(e.msg, "prompts");
    CHECK_EQ_INT(SC("{\"prompts\": {\"q\": 1}}"), EFT_ERR_FORMAT);
    CHECK_CONTAINS(e.msg, "prompts['q']");
    eft__st_config_free(&c);
    CHECK_EQ_INT(SC("{\"prompts\": {\"q\": \"x\"}, \"default_prompt_name\": \"d\"}"), EFT_ERR_FORMAT);
    CHECK_CONTAINS(e.msg, "default_prompt_name 'd'");
    eft__st_config_free(&c);
    CHECK_EQ_INT(SC("{\"similarity_fn_name\": 5}"), EFT_ERR_FORMAT);
    CHECK_CONTAINS(e.msg, "similarity_fn_name");
    eft__st_config_free(&c);
    CHECK_EQ_INT(SC("{\"prompts\": {}, \"default_prompt_name\": null, \"similarity_fn_name\": null}"),
                 EFT_OK);
    CHECK(c.n_prompts == 0 && !c.default_prompt_name && !c.similarity_fn_name);
    eft__st_config_free(&c);
#undef SB
#undef SC
}

static void test_fixture_bert(void) {
    eft__st_config c;
    eft__error e;
    if (eft__st_config_load(test_path("tests/fixtures/models/bert"), &c, &e) != EFT_OK) {
        fprintf(stderr, "  %s\n", e.msg);
        CHECK(0);
        return;
    }
    char buf[64];
    CHECK(c.present && c.has_pooling && c.normalize);
    CHECK_EQ_STR(eft__pooling_names(&c.pooling, buf, sizeof buf), "mean");
    CHECK_EQ_INT(c.pooling.word_embedding_dimension, 64);
    CHECK_EQ_INT(c.max_seq_length, 64);
    CHECK_EQ_INT(c.n_prompts, 2);
    CHECK_EQ_STR(c.similarity_fn_name, "cosine");
    CHECK(c.default_prompt_name == NULL);
    eft__st_config_free(&c);
}

static void test_minilm(void) {
    const char *d = test_path("models/all-MiniLM-L6-v2");
    struct stat sb;
    if (stat(d, &sb) != 0) {
        printf("skip all-MiniLM-L6-v2: %s not present\n", d);
        return;
    }
    eft__st_config c;
    eft__error e;
    CHECK_EQ_INT(eft__st_config_load(d, &c, &e), EFT_OK);
    char buf[64];
    CHECK(c.present && c.has_pooling);
    CHECK_EQ_STR(eft__pooling_names(&c.pooling, buf, sizeof buf), "mean");
    CHECK_EQ_INT(c.pooling.word_embedding_dimension, 384);
    CHECK_EQ_INT(c.max_seq_length, 256);
    CHECK(!c.do_lower_case);
    CHECK(c.normalize); /* its modules.json lists 2_Normalize */
    eft__st_config_free(&c);
}

int main(void) {
    RUN(test_pooling_keys);
    RUN(test_folder_full);
    RUN(test_folder_absent_and_partial);
    RUN(test_modules_refusals);
    RUN(test_other_files);
    RUN(test_fixture_bert);
    RUN(test_minilm);
    return test_summary();
}
