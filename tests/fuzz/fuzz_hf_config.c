/*
 * fuzz_hf_config.c — feeds arbitrary bytes to the config.json parser. A config that parses is
 * checked for the invariants builders rely on (sizes in range, heads divisible, per-layer flags
 * and longrope arrays allocated to their stated lengths) and then freed.
 */
#include <stdint.h>
#include <stdlib.h>

#include "formats/hf_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    eft__model_config c;
    eft__error err;
    if (eft__model_config_parse((const char *)data, size, "fuzz", &c, &err) != EFT_OK) {
        if (c.is_sliding || c.rope.short_factor || c.rope.long_factor) abort(); /* nothing left */
        return 0;
    }
    if (c.hidden_size <= 0 || c.num_hidden_layers <= 0 || c.num_attention_heads <= 0 ||
        c.num_key_value_heads <= 0 || c.head_dim <= 0 || c.vocab_size <= 0)
        abort();
    if (c.num_attention_heads % c.num_key_value_heads) abort();
    if (!c.is_sliding) abort();
    volatile bool sink = false;
    for (int64_t i = 0; i < c.num_hidden_layers; i++) sink ^= c.is_sliding[i];
    for (size_t i = 0; i < c.rope.n_short_factor; i++) sink ^= c.rope.short_factor[i] > 1;
    for (size_t i = 0; i < c.rope.n_long_factor; i++) sink ^= c.rope.long_factor[i] > 1;
    for (int64_t i = 0; i < c.num_hidden_layers; i++) sink ^= eft__model_config_rope_for_layer(&c, i)->theta > 0;
    (void)sink;
    eft__model_config_free(&c);
    return 0;
}
