/*
 * fuzz_program.c — feeds arbitrary bytes to the compiled-program reader. The first byte picks how:
 * even, the rest is read as it is; odd, the metadata checksum is recomputed first (when the header's
 * sizes allow), so mutations get past it and reach the JSON and blob-table checks. Every blob of a
 * program that opens is looked up by name and touched at its first and last byte, so a blob that
 * strays outside the input is caught by AddressSanitizer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "graph/program.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int fix = data[0] & 1;
    size--;
    /* A copy of exactly size bytes, so reads past the end are reported. */
    uint8_t *d = malloc(size ? size : 1);
    if (!d) return 0;
    memcpy(d, data + 1, size);
    if (fix && size >= 64) {
        uint64_t table_off, n, table_end;
        memcpy(&table_off, d + 40, 8);
        memcpy(&n, d + 48, 8);
        if (n <= EFT__PROGRAM_MAX_BLOBS && table_off <= size && (table_end = table_off + n * 128) <= size &&
            table_end >= 64) {
            uint64_t h = eft__fnv1a64(EFT__FNV1A64_INIT, d, 56);
            h = eft__fnv1a64(h, d + 64, (size_t)(table_end - 64));
            memcpy(d + 56, &h, 8);
        }
    }
    eft__program *p = NULL;
    eft__error err;
    if (eft__program_open_memory(d, size, "fuzz", &p, &err) == EFT_OK) {
        volatile uint8_t sink = 0;
        if (!eft__program_header(p) || !eft__program_header_text(p)) abort();
        for (size_t i = 0; i < eft__program_blob_count(p); i++) {
            const eft__program_blob *b = eft__program_blob_at(p, i);
            if (eft__program_find(p, b->name) != b) abort(); /* names are unique and indexed */
            if (b->data && ((const uint8_t *)b->data - d) % 64) abort(); /* offsets are 64-aligned */
            if (b->size) {
                const uint8_t *q = b->data;
                sink ^= q[0];
                sink ^= q[b->size - 1];
            }
        }
        (void)sink;
    }
    eft__program_close(p);
    free(d);
    return 0;
}
