/*
 * quant.h — the block layouts of GGUF's quantised types (ggml's Q4_0 ... Q8_K) as C structs, each
 * pinned to its on-disk size, and the scalar reference dequantizer that every fast kernel is held
 * to. The sizes here and the block_bytes of dtype.c's table must agree; test_dequant checks both.
 */
#ifndef EFT_CORE_QUANT_H
#define EFT_CORE_QUANT_H

#include "core.h"

/* Elements per super-block of the K-quants. */
#define EFT__QK_K 256
/* Elements per block of the legacy quants (Q4_0 ... Q8_0). */
#define EFT__QK 32

/* Half-precision scales are stored as raw IEEE binary16 bits (little-endian, as in the file). */
typedef uint16_t eft__half;

/* 4-bit, symmetric: x = d * (q - 8). Low nibbles are elements 0..15, high nibbles 16..31. */
typedef struct eft__block_q4_0 {
    eft__half d;
    uint8_t qs[EFT__QK / 2];
} eft__block_q4_0;
_Static_assert(sizeof(eft__block_q4_0) == 18, "Q4_0 block must be 18 bytes");

/* 4-bit with a minimum: x = d * q + m. */
typedef struct eft__block_q4_1 {
    eft__half d;
    eft__half m;
    uint8_t qs[EFT__QK / 2];
} eft__block_q4_1;
_Static_assert(sizeof(eft__block_q4_1) == 20, "Q4_1 block must be 20 bytes");

/* 5-bit, symmetric: the fifth bit of element j is bit j of the little-endian u32 qh. */
typedef struct eft__block_q5_0 {
    eft__half d;
    uint8_t qh[4];
    uint8_t qs[EFT__QK / 2];
} eft__block_q5_0;
_Static_assert(sizeof(eft__block_q5_0) == 22, "Q5_0 block must be 22 bytes");

typedef struct eft__block_q5_1 {
    eft__half d;
    eft__half m;
    uint8_t qh[4];
    uint8_t qs[EFT__QK / 2];
} eft__block_q5_1;
_Static_assert(sizeof(eft__block_q5_1) == 24, "Q5_1 block must be 24 bytes");

/* 8-bit, symmetric: x = d * q. */
typedef struct eft__block_q8_0 {
    eft__half d;
    int8_t qs[EFT__QK];
} eft__block_q8_0;
_Static_assert(sizeof(eft__block_q8_0) == 34, "Q8_0 block must be 34 bytes");

/* 2-bit K-quant: 16 sub-blocks of 16, each with a 4-bit scale (low nibble) and 4-bit min (high). */
typedef struct eft__block_q2_k {
    uint8_t scales[EFT__QK_K / 16];
    uint8_t qs[EFT__QK_K / 4];
    eft__half d;
    eft__half dmin;
} eft__block_q2_k;
_Static_assert(sizeof(eft__block_q2_k) == 84, "Q2_K block must be 84 bytes");

/* 3-bit K-quant: 2 low bits in qs, the high bit in hmask (set means "no -4"), 16 signed 6-bit
 * scales packed into 12 bytes. */
typedef struct eft__block_q3_k {
    uint8_t hmask[EFT__QK_K / 8];
    uint8_t qs[EFT__QK_K / 4];
    uint8_t scales[12];
    eft__half d;
} eft__block_q3_k;
_Static_assert(sizeof(eft__block_q3_k) == 110, "Q3_K block must be 110 bytes");

/* 4-bit K-quant: 8 sub-blocks of 32 with 6-bit scales and mins packed into 12 bytes. */
typedef struct eft__block_q4_k {
    eft__half d;
    eft__half dmin;
    uint8_t scales[12];
    uint8_t qs[EFT__QK_K / 2];
} eft__block_q4_k;
_Static_assert(sizeof(eft__block_q4_k) == 144, "Q4_K block must be 144 bytes");

/* 5-bit K-quant: Q4_K plus a fifth bit per element in qh. */
typedef struct eft__block_q5_k {
    eft__half d;
    eft__half dmin;
    uint8_t scales[12];
    uint8_t qh[EFT__QK_K / 8];
    uint8_t qs[EFT__QK_K / 2];
} eft__block_q5_k;
_Static_assert(sizeof(eft__block_q5_k) == 176, "Q5_K block must be 176 bytes");

/* 6-bit K-quant: low 4 bits in ql, high 2 bits in qh, 16 signed 8-bit scales. */
typedef struct eft__block_q6_k {
    uint8_t ql[EFT__QK_K / 2];
    uint8_t qh[EFT__QK_K / 4];
    int8_t scales[EFT__QK_K / 16];
    eft__half d;
} eft__block_q6_k;
_Static_assert(sizeof(eft__block_q6_k) == 210, "Q6_K block must be 210 bytes");

/* 8-bit K-quant, used for activations in ggml's dot products: an f32 scale and per-16 sums. */
typedef struct eft__block_q8_k {
    float d;
    int8_t qs[EFT__QK_K];
    int16_t bsums[EFT__QK_K / 16];
} eft__block_q8_k;
_Static_assert(sizeof(eft__block_q8_k) == 292, "Q8_K block must be 292 bytes");

/* Scalar reference: dequantizes n elements (a multiple of the type's block size) of type t at src
 * into dst. Handles F32, F16, BF16 and all the Q types above. src may be unaligned. Returns false
 * for a type it does not handle or n not a multiple of the block size. */
bool eft__dequantize_row(eft_dtype t, const void *src, float *dst, int64_t n);

#endif /* EFT_CORE_QUANT_H */
