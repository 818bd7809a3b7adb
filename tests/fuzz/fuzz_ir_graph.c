/*
 * fuzz_ir_graph.c — feeds arbitrary bytes to the graph reader a compiled program's header goes
 * through (eft__ir_from_json), then binds zeroed weights, validates, and — for a graph that
 * passes and is small — packs, plans (state included) and runs it on five one-token sequences,
 * each in its own slot at position 0, with two rows asked for: whatever a program file says, a
 * validated graph must run without reading or writing outside its buffers.
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
    const int n_t = g->n_t;
    for (int i = 0; i < g->n_t && small; i++) {
        eft__ir_tensor *t = &g->t[i];
        if (t->kind != EFT__IR_WEIGHT) continue;
        if (t->nbytes == UINT64_MAX || t->nbytes > (1u << 22) || (total += t->nbytes) > (1u << 24)) small = false;
        else if ((t->owned = eft__calloc(1, t->nbytes ? (size_t)t->nbytes : 1))) t->data = t->owned;
        else small = false;
    }
    /* The GGUF block types' four-row interleaved copies, zeroed too, for the qx4 kernels. */
    void **x4 = small ? eft__calloc((size_t)g->n_t + 1, sizeof *x4) : NULL;
    for (int i = 0; x4 && i < g->n_t && small; i++) {
        eft__ir_tensor *t = &g->t[i];
        bool blocks = t->dtype == EFT_DTYPE_Q8_0 || t->dtype == EFT_DTYPE_Q4_0 || t->dtype == EFT_DTYPE_Q4_1;
        if (t->kind != EFT__IR_WEIGHT || !blocks || t->ndim != 2 || t->shape[1] % 32) continue;
        size_t bytes = eft__qx4_size(t->dtype, t->shape[0], t->shape[1]);
        if (!bytes || (total += bytes) > (1u << 24) || !(x4[i] = eft__calloc(1, bytes))) small = false;
        t->x4 = x4[i];
    }
    small = small && x4;
    if (small && eft__ir_validate(g, &err) == EFT_OK && eft__ir_pack(g, &err) == EFT_OK &&
        eft__ir_plan_state(g, 5, 4, &err) == EFT_OK && g->state_bytes <= (64u << 20) &&
        eft__ir_plan(g, 5, 4, 1, &err) == EFT_OK && g->arena_bytes <= (64u << 20)) {
        void *arena = eft__malloc_aligned((size_t)g->arena_bytes + 64);
        void *state = eft__malloc_aligned((size_t)g->state_bytes + 64);
        /* The bound output's two rows. */
        uint64_t bound_bytes = 64;
        for (int i = 0; i < g->n_t; i++)
            if (g->t[i].bound) bound_bytes = eft__ir_tensor_bytes(&g->t[i], 2);
        void *bound = bound_bytes <= (64u << 20) ? eft__malloc_aligned((size_t)bound_bytes + 64) : NULL;
        if (arena && state && bound) {
            /* Inputs all zero: token 0, position 0, type 0, row 0 are in every table. */
            memset(arena, 0, (size_t)g->arena_bytes + 64);
            memset(state, 0, (size_t)g->state_bytes + 64);
            int32_t off[6] = {0, 1, 2, 3, 4, 5}, slot[5] = {0, 1, 2, 3, 4};
            eft__ir_run r = {.B = 5, .M = 5, .off = off, .slot = slot, .R = 2, .state = state, .bound = bound};
            eft__ir_exec(g, eft__kernels_get(), NULL, arena, &r, 0, g->n_ops);
        }
        eft__free_aligned(arena);
        eft__free_aligned(state);
        eft__free_aligned(bound);
    }
    eft__ir_free(g);
    for (int i = 0; x4 && i < n_t; i++) eft__free(x4[i]);
    eft__free(x4);
    return 0;
}
