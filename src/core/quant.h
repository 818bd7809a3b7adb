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

/* ---------------------------------------------------------------------------------------------
 * Group-quantised weights: eft's one layout family for weight-only int4 and int8.
 *
 * A weight matrix W[N, K] is N rows of K/G blocks, each block one group of G consecutive
 * elements along K (G = 32, 64 or 128) with its own scale: a row is contiguous and rows are
 * K/G * block_bytes apart, so a kernel streams one row (GEMV) or decodes 16 rows into a panel
 * (GEMM) without any index arithmetic beyond the block. Three kinds:
 *
 *   int4 symmetric   {f16 d; u8 qs[G/2]}          x = d (q - 8),  q in 0..15
 *   int4 asymmetric  {f16 d; f16 m; u8 qs[G/2]}   x = d q + m,    q in 0..15
 *   int8 symmetric   {f16 d; i8 qs[G]}            x = d q
 *
 * Nibble order: each run of 32 elements takes 16 bytes, element i (i < 16) in the low nibble of
 * byte i and element 16 + i in its high nibble. That is GGUF's order, and the one AVX2 likes: one
 * 16-byte load, an AND and a shift give the two halves as 16 bytes each, in element order, ready
 * for vpmovzxbd/vpmovsxbd into floats (no shuffle). A block of G = 64 or 128 is 2 or 4 such runs
 * after one header.
 *
 * The G = 32 members are GGUF's own blocks, bit for bit: Q4_0 (int4 symmetric), Q4_1 (int4
 * asymmetric) and Q8_0 (int8), so a GGUF file's tensors are read as they are. Mapping others in:
 *   - AWQ / GPTQ (qweight int32 [K/8, N] or [N, K/8] of 8 nibbles, qzeros int32 of 8 nibbles,
 *     scales f16 [K/G, N]): per group, d = s and m = -s z (GPTQ's "z + 1" convention adds one to
 *     the stored zero first); the nibbles are reordered to the order above (AWQ interleaves
 *     0,2,4,6,1,3,5,7 within an int32, GPTQ packs them sequentially). m is rounded to f16, a
 *     relative 2^-11 of s z, well under the rounding of q itself; an exact symmetric checkpoint
 *     (z = 8 everywhere) goes to the symmetric kind with no rounding at all.
 *   - int8 per-group scales (G in 32, 64, 128) go in as they are; per-channel int8 (one scale per
 *     row) goes to the largest group that divides K, the scale repeated (exact up to f16).
 *   - Q4_0/Q4_1/Q8_0 tensors of a GGUF file are the G = 32 members; regrouping them to 64 or 128
 *     is not exact, so they stay G = 32.
 * The kernels (kernels/cpu/gqgemm*.c) keep activations in f32 and widen each weight exactly as
 * eft__dequantize_row does.
 * ------------------------------------------------------------------------------------------- */

typedef struct eft__block_i4_g64 {
    eft__half d;
    uint8_t qs[32];
} eft__block_i4_g64;
_Static_assert(sizeof(eft__block_i4_g64) == 34, "I4_G64 block must be 34 bytes");
typedef struct eft__block_i4_g128 {
    eft__half d;
    uint8_t qs[64];
} eft__block_i4_g128;
_Static_assert(sizeof(eft__block_i4_g128) == 66, "I4_G128 block must be 66 bytes");
typedef struct eft__block_u4_g64 {
    eft__half d, m;
    uint8_t qs[32];
} eft__block_u4_g64;
_Static_assert(sizeof(eft__block_u4_g64) == 36, "U4_G64 block must be 36 bytes");
typedef struct eft__block_u4_g128 {
    eft__half d, m;
    uint8_t qs[64];
} eft__block_u4_g128;
_Static_assert(sizeof(eft__block_u4_g128) == 68, "U4_G128 block must be 68 bytes");
typedef struct eft__block_i8_g64 {
    eft__half d;
    int8_t qs[64];
} eft__block_i8_g64;
_Static_assert(sizeof(eft__block_i8_g64) == 66, "I8_G64 block must be 66 bytes");
typedef struct eft__block_i8_g128 {
    eft__half d;
    int8_t qs[128];
} eft__block_i8_g128;
_Static_assert(sizeof(eft__block_i8_g128) == 130, "I8_G128 block must be 130 bytes");

typedef enum eft__gq_kind {
    EFT__GQ_I4 = 0, /* int4 symmetric */
    EFT__GQ_U4,     /* int4 with a minimum */
    EFT__GQ_I8,     /* int8 symmetric */
} eft__gq_kind;

/* One member of the family, as the kernels see it. */
typedef struct eft__gq_layout {
    eft__gq_kind kind;
    int group;          /* G: 32, 64 or 128 */
    int header;         /* bytes before qs: 2 (d) or 4 (d, m) */
    size_t block_bytes; /* header + G/2 or G */
} eft__gq_layout;

/* The layout of t when it is one of the family (Q4_0, Q4_1, Q8_0, I4_G*, U4_G*, I8_G*). */
bool eft__gq_layout_of(eft_dtype t, eft__gq_layout *out);
/* The member of the given kind and group (EFT_DTYPE_COUNT: none). */
eft_dtype eft__gq_dtype(eft__gq_kind kind, int group);
/* What a matrix with k input channels is stored as when want is asked for: a family member (or
 * I8_CH, which is int8 with groups of 128) becomes the member of the same kind with the largest
 * group <= its own that divides k (SmolLM2's 576 channels take groups of 64 where 128 was asked),
 * F32 when not even 32 divides k; any other type is returned as it is. */
eft_dtype eft__gq_fit(eft_dtype want, int64_t k);

/* Scalar reference: dequantizes n elements (a multiple of the type's block size) of type t at src
 * into dst. Handles F32, F16, BF16 and all the Q types above. src may be unaligned. Returns false
 * for a type it does not handle or n not a multiple of the block size. */
bool eft__dequantize_row(eft_dtype t, const void *src, float *dst, int64_t n);

#endif /* EFT_CORE_QUANT_H */
