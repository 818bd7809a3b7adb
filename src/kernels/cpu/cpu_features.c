/*
 * cpu_features.c — what this CPU can run, read once from CPUID and XGETBV. An instruction set
 * counts only when the OS also saves its registers on a context switch (XCR0), otherwise the
 * first AVX instruction would fault even though CPUID lists it.
 */
#include <cpuid.h>
#include <pthread.h>
#include <string.h>

#include "kernels.h"

static eft__cpu_features g_features;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void detect(void) {
    eft__cpu_features *f = &g_features;
    unsigned a, b, c, d;
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf < 1) return;
    __cpuid(1, a, b, c, d);
    bool osxsave = c & (1u << 27), has_avx = c & (1u << 28);
    bool fma = c & (1u << 12), f16c = c & (1u << 29);
    uint64_t xcr0 = osxsave ? read_xcr0() : 0;
    bool ymm_ok = (xcr0 & 0x6) == 0x6;    /* SSE and AVX state */
    bool zmm_ok = (xcr0 & 0xe6) == 0xe6;  /* plus opmask and the upper ZMM halves */
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        bool avx2 = b & (1u << 5);
        f->avx2 = has_avx && ymm_ok && avx2;
        f->fma = has_avx && ymm_ok && fma;
        f->f16c = has_avx && ymm_ok && f16c;
        if (zmm_ok && f->avx2) {
            f->avx512f = b & (1u << 16);
            f->avx512dq = b & (1u << 17);
            f->avx512bw = b & (1u << 30);
            f->avx512vl = b & (1u << 31);
            f->avx512_vnni = c & (1u << 11);
        }
    }
    unsigned ext = __get_cpuid_max(0x80000000u, NULL);
    if (ext >= 0x80000004u) {
        unsigned r[12];
        for (unsigned i = 0; i < 3; i++) __cpuid(0x80000002u + i, r[4 * i], r[4 * i + 1], r[4 * i + 2], r[4 * i + 3]);
        memcpy(f->brand, r, 48);
        f->brand[48] = 0;
        /* Trim the leading spaces some vendors pad the brand string with. */
        char *s = f->brand;
        while (*s == ' ') s++;
        memmove(f->brand, s, strlen(s) + 1);
    }
}

const eft__cpu_features *eft__cpu_features_get(void) {
    pthread_once(&g_once, detect);
    return &g_features;
}

eft__isa eft__isa_best(void) {
    const eft__cpu_features *f = eft__cpu_features_get();
    if (f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq && f->fma && f->f16c) return EFT__ISA_AVX512;
    if (f->avx2 && f->fma && f->f16c) return EFT__ISA_AVX2;
    return EFT__ISA_SCALAR;
}

const char *eft__isa_name(eft__isa isa) {
    switch (isa) {
    case EFT__ISA_SCALAR: return "scalar";
    case EFT__ISA_AVX2: return "avx2";
    case EFT__ISA_AVX512: return "avx512";
    default: return "?";
    }
}
