/*
 * fuzz_safetensors.c — feeds arbitrary bytes to the safetensors reader. Every view of a file that
 * opens is touched at its first and last byte, so a view that strays outside the input is caught
 * by AddressSanitizer; small tensors are also converted to float.
 */
#include <stdint.h>
#include <stdlib.h>

#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    eft__safetensors *st = NULL;
    eft__error err;
    if (eft__safetensors_open_memory(data, size, "fuzz", &st, &err) != EFT_OK) return 0;
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < eft__safetensors_count(st); i++) {
        const eft__tensor_view *v = eft__safetensors_tensor(st, i);
        if (eft__safetensors_find(st, v->name) != v) abort(); /* the index must agree with the list */
        if (v->nbytes) {
            const uint8_t *p = v->data;
            sink ^= p[0];
            sink ^= p[v->nbytes - 1];
        }
        if (v->n_elems < 4096) {
            float *f = malloc((size_t)v->n_elems * sizeof(float) + 1);
            if (f && eft__tensor_to_f32(v, f, v->n_elems, &err) != EFT_OK) abort(); /* plain types only */
            free(f);
        }
    }
    for (size_t i = 0; i < eft__safetensors_metadata_count(st); i++) {
        const char *k = eft__safetensors_metadata_key(st, i);
        if (eft__safetensors_metadata(st, k) == NULL) abort();
        sink ^= (uint8_t)eft__safetensors_metadata_value(st, i)[0];
    }
    (void)sink;
    eft__safetensors_close(st);
    return 0;
}
