/*
 * fuzz_st_modules.c — feeds arbitrary bytes to the sentence-transformers parsers. The first
 * byte picks one: modules.json, a Pooling config, sentence_bert_config.json or
 * config_sentence_transformers.json; the rest is the file. Parsed results are walked (pooling
 * names, prompts) and freed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/st_modules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *json = (const char *)data + 1;
    size_t len = size - 1;
    eft__error err;
    eft__st_config c;
    memset(&c, 0, sizeof c);
    eft__pooling_config p;
    char names[128];
    switch (data[0] & 3) {
    case 0:
        if (eft__st_parse_modules(json, len, "fuzz", &c, &err) == EFT_OK && !c.transformer_path) abort();
        break;
    case 1:
        if (eft__st_parse_pooling(json, len, "fuzz", &p, &err) == EFT_OK) {
            if (p.n_modes < 1 || p.n_modes > EFT__POOL_COUNT) abort();
            eft__pooling_names(&p, names, sizeof names);
        }
        break;
    case 2: eft__st_parse_sbert_config(json, len, "fuzz", &c, &err); break;
    case 3:
        if (eft__st_parse_st_config(json, len, "fuzz", &c, &err) == EFT_OK)
            for (size_t i = 0; i < c.n_prompts; i++)
                if (!c.prompts[i].name || !c.prompts[i].text) abort();
        break;
    }
    eft__st_config_free(&c);
    return 0;
}
