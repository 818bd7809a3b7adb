/*
 * dispatch.c — builds one kernel table per instruction-set level, once, and hands out the one
 * this process uses. Each level starts as a copy of the level below and overrides what it has
 * its own version of, so a missing fast kernel silently falls back to a tested slower one.
 * EFT_ISA=scalar|avx2|avx512 picks a lower level (for tests and for measuring the gain).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kernels.h"

static eft__kernels g_tables[EFT__ISA_COUNT];
static bool g_available[EFT__ISA_COUNT];
static const eft__kernels *g_active;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void build(void) {
    eft__kernels *k = &g_tables[EFT__ISA_SCALAR];
    eft__kernels_fill_scalar(k);
    eft__kernels_fill_gemm_scalar(k);
    eft__kernels_fill_q8_scalar(k);
    eft__kernels_fill_attn_scalar(k);
    eft__kernels_fill_gq_scalar(k);
    eft__kernels_fill_qx4_scalar(k);
    k->isa = EFT__ISA_SCALAR;
    g_available[EFT__ISA_SCALAR] = true;

    eft__isa best = eft__isa_best();
    if (best >= EFT__ISA_AVX2) {
        k = &g_tables[EFT__ISA_AVX2];
        *k = g_tables[EFT__ISA_SCALAR];
        eft__kernels_fill_avx2(k);
        eft__kernels_fill_gemm_avx2(k);
        eft__kernels_fill_q8_avx2(k);
        eft__kernels_fill_gq_avx2(k);
        eft__kernels_fill_qx4_avx2(k);
        eft__kernels_fill_attn_dec_avx2(k);
        k->isa = EFT__ISA_AVX2;
        g_available[EFT__ISA_AVX2] = true;
    }
    if (best >= EFT__ISA_AVX512) {
        k = &g_tables[EFT__ISA_AVX512];
        *k = g_tables[EFT__ISA_AVX2];
        eft__kernels_fill_avx512(k);
        eft__kernels_fill_gemm_avx512(k);
        k->isa = EFT__ISA_AVX512;
        g_available[EFT__ISA_AVX512] = true;
    }

    eft__isa pick = best;
    const char *env = getenv("EFT_ISA");
    if (env && *env) {
        eft__isa want = EFT__ISA_COUNT;
        for (int i = 0; i < EFT__ISA_COUNT; i++)
            if (!strcmp(env, eft__isa_name((eft__isa)i))) want = (eft__isa)i;
        if (want == EFT__ISA_COUNT) EFT_LOGW("EFT_ISA=%s is not one of scalar, avx2, avx512; using %s", env, eft__isa_name(best));
        else if (!g_available[want]) EFT_LOGW("EFT_ISA=%s: this CPU cannot run it; using %s", env, eft__isa_name(best));
        else pick = want;
    }
    g_active = &g_tables[pick];
    EFT_LOGI("cpu kernels: %s (%s)", eft__isa_name(pick), eft__cpu_features_get()->brand);
}

const eft__kernels *eft__kernels_get(void) {
    pthread_once(&g_once, build);
    return g_active;
}

const eft__kernels *eft__kernels_for(eft__isa isa) {
    pthread_once(&g_once, build);
    if ((unsigned)isa >= EFT__ISA_COUNT || !g_available[isa]) return NULL;
    return &g_tables[isa];
}

void *eft__malloc_aligned(size_t n) {
    /* Over-allocate and keep the original pointer just below the aligned one, so the allocator
     * hook (which only knows malloc/free) still sees every allocation. */
    if (n > SIZE_MAX - 64 - sizeof(void *)) return NULL;
    uint8_t *raw = eft__malloc(n + 64 + sizeof(void *));
    if (!raw) return NULL;
    uintptr_t p = ((uintptr_t)raw + sizeof(void *) + 63) & ~(uintptr_t)63;
    ((void **)p)[-1] = raw;
    return (void *)p;
}

void *eft__malloc_huge(size_t n) {
    enum { HUGE = 2 << 20 };
    if (n < HUGE) return eft__malloc_aligned(n);
    if (n > SIZE_MAX - HUGE - sizeof(void *)) return NULL;
    uint8_t *raw = eft__malloc(n + HUGE + sizeof(void *));
    if (!raw) return NULL;
    uintptr_t p = ((uintptr_t)raw + sizeof(void *) + HUGE - 1) & ~(uintptr_t)(HUGE - 1);
    ((void **)p)[-1] = raw;
#ifdef MADV_HUGEPAGE
    (void)madvise((void *)p, n & ~(size_t)(HUGE - 1), MADV_HUGEPAGE); /* advice: p is usable either way */
#endif
    return (void *)p;
}

void eft__free_aligned(void *p) {
    if (p) eft__free(((void **)p)[-1]);
}
