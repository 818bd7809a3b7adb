/*
 * dtype.c — the per-type table (names, block geometry) and the scalar float conversions that
 * readers, reference dequantizers and tests share. One table with designated initialisers, so a
 * new type is one line here (ggml's type_traits habit).
 */
#include <math.h>
#include <string.h>

#include "core.h"

static const eft__dtype_traits k_traits[EFT_DTYPE_COUNT] = {
    [EFT_DTYPE_F32] = {"F32", 1, 4, true},
    [EFT_DTYPE_F16] = {"F16", 1, 2, true},
    [EFT_DTYPE_BF16] = {"BF16", 1, 2, true},
    [EFT_DTYPE_F64] = {"F64", 1, 8, true},
    [EFT_DTYPE_F8_E4M3] = {"F8_E4M3", 1, 1, true},
    [EFT_DTYPE_F8_E5M2] = {"F8_E5M2", 1, 1, true},
    [EFT_DTYPE_I64] = {"I64", 1, 8, false},
    [EFT_DTYPE_I32] = {"I32", 1, 4, false},
    [EFT_DTYPE_I16] = {"I16", 1, 2, false},
    [EFT_DTYPE_I8] = {"I8", 1, 1, false},
    [EFT_DTYPE_U64] = {"U64", 1, 8, false},
    [EFT_DTYPE_U32] = {"U32", 1, 4, false},
    [EFT_DTYPE_U16] = {"U16", 1, 2, false},
    [EFT_DTYPE_U8] = {"U8", 1, 1, false},
    [EFT_DTYPE_BOOL] = {"BOOL", 1, 1, false},
    [EFT_DTYPE_Q4_0] = {"Q4_0", 32, 18, false},
    [EFT_DTYPE_Q4_1] = {"Q4_1", 32, 20, false},
    [EFT_DTYPE_Q5_0] = {"Q5_0", 32, 22, false},
    [EFT_DTYPE_Q5_1] = {"Q5_1", 32, 24, false},
    [EFT_DTYPE_Q8_0] = {"Q8_0", 32, 34, false},
    [EFT_DTYPE_Q2_K] = {"Q2_K", 256, 84, false},
    [EFT_DTYPE_Q3_K] = {"Q3_K", 256, 110, false},
    [EFT_DTYPE_Q4_K] = {"Q4_K", 256, 144, false},
    [EFT_DTYPE_Q5_K] = {"Q5_K", 256, 176, false},
    [EFT_DTYPE_Q6_K] = {"Q6_K", 256, 210, false},
    [EFT_DTYPE_Q8_K] = {"Q8_K", 256, 292, false},
    [EFT_DTYPE_I4_G64] = {"I4_G64", 64, 34, false},
    [EFT_DTYPE_I4_G128] = {"I4_G128", 128, 66, false},
    [EFT_DTYPE_U4_G64] = {"U4_G64", 64, 36, false},
    [EFT_DTYPE_U4_G128] = {"U4_G128", 128, 68, false},
    [EFT_DTYPE_I8_G64] = {"I8_G64", 64, 66, false},
    [EFT_DTYPE_I8_G128] = {"I8_G128", 128, 130, false},
    [EFT_DTYPE_I8_CH] = {"I8_CH", 128, 130, false}, /* a request; stored as I8_G128 */
};

const eft__dtype_traits *eft__dtype_traits_of(eft_dtype t) {
    if ((unsigned)t >= EFT_DTYPE_COUNT) return NULL;
    return &k_traits[t];
}

const char *eft_dtype_name(eft_dtype dtype) {
    const eft__dtype_traits *tr = eft__dtype_traits_of(dtype);
    return tr ? tr->name : "?";
}

/* Compile targets by name. The first name of a dtype is its label; "int8-g32" and "int4-g32" are
 * the same layouts as "int8" and "int4" (GGUF's Q8_0 and Q4_0), "int4-g32-asym" is Q4_1. */
static const struct {
    const char *name;
    eft_dtype dtype;
} k_weight_names[] = {
    {"f32", EFT_DTYPE_F32},           {"f16", EFT_DTYPE_F16},
    {"bf16", EFT_DTYPE_BF16},         {"int8", EFT_DTYPE_Q8_0},
    {"int4", EFT_DTYPE_Q4_0},         {"int8-g32", EFT_DTYPE_Q8_0},
    {"int8-g64", EFT_DTYPE_I8_G64},   {"int8-g128", EFT_DTYPE_I8_G128},
    {"int8-channel", EFT_DTYPE_I8_CH}, {"int4-g32", EFT_DTYPE_Q4_0},
    {"int4-g64", EFT_DTYPE_I4_G64},   {"int4-g128", EFT_DTYPE_I4_G128},
    {"int4-g32-asym", EFT_DTYPE_Q4_1}, {"int4-g64-asym", EFT_DTYPE_U4_G64},
    {"int4-g128-asym", EFT_DTYPE_U4_G128},
};

eft_dtype eft_weight_dtype_parse(const char *name) {
    for (size_t i = 0; name && i < sizeof k_weight_names / sizeof k_weight_names[0]; i++)
        if (!strcmp(name, k_weight_names[i].name)) return k_weight_names[i].dtype;
    return EFT_DTYPE_COUNT;
}

const char *eft_weight_dtype_label(eft_dtype dtype) {
    for (size_t i = 0; i < sizeof k_weight_names / sizeof k_weight_names[0]; i++)
        if (k_weight_names[i].dtype == dtype) return k_weight_names[i].name;
    return NULL;
}

bool eft__dtype_nbytes(eft_dtype t, uint64_t n, uint64_t *out) {
    const eft__dtype_traits *tr = eft__dtype_traits_of(t);
    if (!tr || n % tr->block_elems != 0) return false;
    return !eft__mul_overflow_u64(n / tr->block_elems, tr->block_bytes, out);
}

static inline float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint32_t f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

float eft__f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0) {
        /* Zero or subnormal: value = man * 2^-24. */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 31) return bits_to_f32(sign | 0x7f800000u | (man << 13)); /* inf or NaN */
    return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t eft__f32_to_f16(float f) {
    /* Round to nearest even, with subnormals, overflow to infinity and NaN kept quiet. */
    uint32_t x = f32_to_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return sign | (ax > 0x7f800000u ? 0x7e00 : 0x7c00);
    if (ax >= 0x477ff000u) return sign | 0x7c00; /* rounds to >= 65520: infinity */
    if (ax < 0x38800000u) {                      /* below the smallest normal half: subnormal */
        float a = bits_to_f32(ax);
        /* Adding 0.5 shifts the mantissa so that float rounding does round-to-nearest-even. */
        uint32_t r = f32_to_bits(a + 0.5f) - 0x3f000000u;
        return sign | (uint16_t)r;
    }
    uint32_t mant_odd = (ax >> 13) & 1;
    ax += 0xc8000fffu + mant_odd; /* rebias exponent (-112 << 23) and round */
    return sign | (uint16_t)(ax >> 13);
}

float eft__bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

uint16_t eft__f32_to_bf16(float f) {
    uint32_t x = f32_to_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

float eft__f8e4m3_to_f32(uint8_t v) {
    /* E4M3 "fn" (PyTorch float8_e4m3fn): bias 7, no infinities, S.1111.111 is NaN. */
    uint32_t sign = v >> 7, exp = (v >> 3) & 0xf, man = v & 7;
    float r;
    if (exp == 15 && man == 7) return NAN;
    if (exp == 0) r = (float)man * 0x1p-9f;
    else r = ldexpf(1.0f + (float)man / 8.0f, (int)exp - 7);
    return sign ? -r : r;
}

float eft__f8e5m2_to_f32(uint8_t v) {
    /* E5M2: bias 15, IEEE-style infinities and NaNs; it is the top byte of an f16. */
    return eft__f16_to_f32((uint16_t)((uint16_t)v << 8));
}
