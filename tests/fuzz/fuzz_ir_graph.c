/*
 * fuzz_ir_graph.c — feeds arbitrary bytes to the graph reader a compiled program's header goes
 * through (eft__ir_from_json), then binds zeroed weights, validates, and — for a graph that
 * passes and is small — packs, plans and runs it on two short sequences: whatever a program
 * file says, a validated graph must run without reading or writing outside its buffers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "graph/ir.h"
#include "kernels/cpu/kernels.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_error_t je;
    json_t *j = eft__json_loadb((const char *)data, size, 0, &je);
    if (!j) return 0;
    eft__ir_graph *g = NULL;
    eft__error err;
    if (eft__ir_from_json(j, &g, &err) != EFT_OK) {
        json_decref(j);
        return 0;
    }
    json_decref(j);
    uint64_t total = 0;
    bool small = true;
    for (int i = 0; i < g->n_t && small; i++) {
        eft__ir_tensor *t = &g->t[i];
        if (t->kind != EFT__IR_WEIGHT) continue;
        if (t->nbytes == UINT64_MAX || t->nbytes > (1u << 22) || (total += t->nbytes) > (1u << 24)) small = false;
        else if ((t->owned = eft__calloc(1, t->nbytes ? (size_t)t->nbytes : 1))) t->data = t->owned;
        else small = false;
    }
    if (small && eft__ir_validate(g, &err) == EFT_OK && eft__ir_pack(g, &err) == EFT_OK &&
        eft__ir_plan(g, 2, 4, 1, &err) == EFT_OK && g->arena_bytes <= (64u << 20)) {
        void *arena = eft__malloc_aligned((size_t)g->arena_bytes + 64);
        if (arena) {
            /* Inputs all zero: token 0, position 0, type 0 are in every table. */
            memset(arena, 0, (size_t)g->arena_bytes + 64);
            int32_t off[3] = {0, 3, 5};
            eft__ir_run r = {.B = 2, .M = 5, .off = off};
            eft__ir_exec(g, eft__kernels_get(), NULL, arena, &r, 0, g->n_ops);
            eft__free_aligned(arena);
        }
    }
    eft__ir_free(g);
    return 0;
}
