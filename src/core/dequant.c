/*
 * dequant.c — the scalar reference dequantizers: one function per block type that expands one
 * block into floats, written for clarity rather than speed. Fast kernels are tested against these,
 * and these are tested against the gguf Python package's dequantization of real files.
 * Each block is first copied into an aligned local struct, because file data may sit at any
 * address (GGUF allows an alignment of 1).
 */
#include <string.h>

#include "quant.h"

static inline float h2f(eft__half h) { return eft__f16_to_f32(h); }

/* ---------------------------------------------------------------------------------------------
 * Legacy quants: blocks of 32
 * ------------------------------------------------------------------------------------------- */

static void dq_q4_0(float *y, const eft__block_q4_0 *b) {
    float d = h2f(b->d);
    for (int j = 0; j < EFT__QK / 2; j++) {
        y[j] = d * (float)((b->qs[j] & 0x0f) - 8);
        y[j + EFT__QK / 2] = d * (float)((b->qs[j] >> 4) - 8);
    }
}

static void dq_q4_1(float *y, const eft__block_q4_1 *b) {
    float d = h2f(b->d), m = h2f(b->m);
    for (int j = 0; j < EFT__QK / 2; j++) {
        y[j] = d * (float)(b->qs[j] & 0x0f) + m;
        y[j + EFT__QK / 2] = d * (float)(b->qs[j] >> 4) + m;
    }
}

/* The fifth bits of a Q5 block: bit j of the little-endian u32 belongs to element j. */
static inline uint32_t q5_high_bits(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

static void dq_q5_0(float *y, const eft__block_q5_0 *b) {
    float d = h2f(b->d);
    uint32_t qh = q5_high_bits(b->qh);
    for (int j = 0; j < EFT__QK / 2; j++) {
        int lo = (b->qs[j] & 0x0f) | (int)((qh >> j) & 1) << 4;
        int hi = (b->qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
        y[j] = d * (float)(lo - 16);
        y[j + EFT__QK / 2] = d * (float)(hi - 16);
    }
}

static void dq_q5_1(float *y, const eft__block_q5_1 *b) {
    float d = h2f(b->d), m = h2f(b->m);
    uint32_t qh = q5_high_bits(b->qh);
    for (int j = 0; j < EFT__QK / 2; j++) {
        int lo = (b->qs[j] & 0x0f) | (int)((qh >> j) & 1) << 4;
        int hi = (b->qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
        y[j] = d * (float)lo + m;
        y[j + EFT__QK / 2] = d * (float)hi + m;
    }
}

static void dq_q8_0(float *y, const eft__block_q8_0 *b) {
    float d = h2f(b->d);
    for (int j = 0; j < EFT__QK; j++) y[j] = d * (float)b->qs[j];
}

/* ---------------------------------------------------------------------------------------------
 * K-quants: super-blocks of 256
 * ------------------------------------------------------------------------------------------- */

/* Q2_K: the 64 bytes of qs hold two halves of 128 elements; within a half, bit pair k (shift 2k)
 * of byte l is element 32k + l. Each run of 16 elements has its own scale/min byte. */
static void dq_q2_k(float *y, const eft__block_q2_k *b) {
    float d = h2f(b->d), dmin = h2f(b->dmin);
    for (int half = 0; half < 2; half++) {
        const uint8_t *q = b->qs + 32 * half;
        for (int k = 0; k < 4; k++) {
            for (int l = 0; l < 32; l++) {
                uint8_t sc = b->scales[8 * half + 2 * k + l / 16];
                float dl = d * (float)(sc & 0x0f), ml = dmin * (float)(sc >> 4);
                *y++ = dl * (float)((q[l] >> (2 * k)) & 3) - ml;
            }
        }
    }
}

/* Q3_K's 16 scales are 6 bits each: the low 4 in nibbles of bytes 0..7 (scale i < 8 in the low
 * nibble of byte i, scale i >= 8 in the high nibble of byte i-8), the high 2 in bytes 8..11
 * (scale i at bits 2*(i/4) of byte 8 + i%4). They are stored with a bias of 32. */
static int q3_k_scale(const uint8_t s[12], int i) {
    int lo = i < 8 ? (s[i] & 0x0f) : (s[i - 8] >> 4);
    int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    return (lo | hi << 4) - 32;
}

/* Q3_K: the two low bits are laid out like Q2_K; the third bit of element 32k + l of half h is
 * bit (4h + k) of hmask[l], and a clear bit subtracts 4. */
static void dq_q3_k(float *y, const eft__block_q3_k *b) {
    float d = h2f(b->d);
    for (int half = 0; half < 2; half++) {
        const uint8_t *q = b->qs + 32 * half;
        for (int k = 0; k < 4; k++) {
            int bit = 4 * half + k;
            for (int l = 0; l < 32; l++) {
                float dl = d * (float)q3_k_scale(b->scales, 8 * half + 2 * k + l / 16);
                int v = ((q[l] >> (2 * k)) & 3) - ((b->hmask[l] >> bit) & 1 ? 0 : 4);
                *y++ = dl * (float)v;
            }
        }
    }
}

/* Q4_K/Q5_K pack 8 scales and 8 mins of 6 bits into 12 bytes: for j < 4 they are the low 6 bits
 * of bytes j and j+4; for j >= 4 the low 4 bits come from the nibbles of byte j+4 and the high 2
 * from the top bits of bytes j-4 (scale) and j (min). */
static void k4_scale_min(const uint8_t s[12], int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | (s[j - 4] >> 6) << 4;
        *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

/* Q4_K: each 32 bytes of qs hold 64 elements: low nibbles first (sub-block 2i), then high nibbles
 * (sub-block 2i+1). */
static void dq_q4_k(float *y, const eft__block_q4_k *b) {
    float d = h2f(b->d), dmin = h2f(b->dmin);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        k4_scale_min(b->scales, j, &sc, &m);
        float dl = d * (float)sc, ml = dmin * (float)m;
        const uint8_t *q = b->qs + 32 * (j / 2);
        int shift = 4 * (j % 2);
        for (int l = 0; l < 32; l++) *y++ = dl * (float)((q[l] >> shift) & 0x0f) - ml;
    }
}

/* Q5_K: as Q4_K, with the fifth bit of element l of sub-block j in bit j of qh[l]. */
static void dq_q5_k(float *y, const eft__block_q5_k *b) {
    float d = h2f(b->d), dmin = h2f(b->dmin);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        k4_scale_min(b->scales, j, &sc, &m);
        float dl = d * (float)sc, ml = dmin * (float)m;
        const uint8_t *q = b->qs + 32 * (j / 2);
        int shift = 4 * (j % 2);
        for (int l = 0; l < 32; l++) {
            int v = ((q[l] >> shift) & 0x0f) | ((b->qh[l] >> j) & 1) << 4;
            *y++ = dl * (float)v - ml;
        }
    }
}

/* Q6_K: per half of 128 elements, ql has 64 bytes and qh 32. Element 32k + l of a half takes its
 * low nibble from ql[l + 32*(k%2)] (low nibble for k < 2, high for k >= 2) and its top two bits
 * from bits 2k of qh[l]; values are biased by 32 and each run of 16 has a signed scale. */
static void dq_q6_k(float *y, const eft__block_q6_k *b) {
    float d = h2f(b->d);
    for (int half = 0; half < 2; half++) {
        const uint8_t *ql = b->ql + 64 * half, *qh = b->qh + 32 * half;
        for (int k = 0; k < 4; k++) {
            for (int l = 0; l < 32; l++) {
                int lo = (ql[l + 32 * (k % 2)] >> (4 * (k / 2))) & 0x0f;
                int v = (lo | ((qh[l] >> (2 * k)) & 3) << 4) - 32;
                float dl = d * (float)b->scales[8 * half + 2 * k + l / 16];
                *y++ = dl * (float)v;
            }
        }
    }
}

static void dq_q8_k(float *y, const eft__block_q8_k *b) {
    for (int j = 0; j < EFT__QK_K; j++) y[j] = b->d * (float)b->qs[j];
}

/* ---------------------------------------------------------------------------------------------
 * The group-quantised family (quant.h): one decoder for every member, G/32 runs per block.
 * ------------------------------------------------------------------------------------------- */

bool eft__gq_layout_of(eft_dtype t, eft__gq_layout *out) {
    eft__gq_layout l;
    switch (t) {
    case EFT_DTYPE_Q4_0: l = (eft__gq_layout){EFT__GQ_I4, 32, 2, 0}; break;
    case EFT_DTYPE_I4_G64: l = (eft__gq_layout){EFT__GQ_I4, 64, 2, 0}; break;
    case EFT_DTYPE_I4_G128: l = (eft__gq_layout){EFT__GQ_I4, 128, 2, 0}; break;
    case EFT_DTYPE_Q4_1: l = (eft__gq_layout){EFT__GQ_U4, 32, 4, 0}; break;
    case EFT_DTYPE_U4_G64: l = (eft__gq_layout){EFT__GQ_U4, 64, 4, 0}; break;
    case EFT_DTYPE_U4_G128: l = (eft__gq_layout){EFT__GQ_U4, 128, 4, 0}; break;
    case EFT_DTYPE_Q8_0: l = (eft__gq_layout){EFT__GQ_I8, 32, 2, 0}; break;
    case EFT_DTYPE_I8_G64: l = (eft__gq_layout){EFT__GQ_I8, 64, 2, 0}; break;
    case EFT_DTYPE_I8_G128: l = (eft__gq_layout){EFT__GQ_I8, 128, 2, 0}; break;
    default: return false;
    }
    l.block_bytes = (size_t)l.header + (size_t)(l.kind == EFT__GQ_I8 ? l.group : l.group / 2);
    if (out) *out = l;
    return true;
}

eft_dtype eft__gq_dtype(eft__gq_kind kind, int group) {
    static const eft_dtype k[3][3] = {
        [EFT__GQ_I4] = {EFT_DTYPE_Q4_0, EFT_DTYPE_I4_G64, EFT_DTYPE_I4_G128},
        [EFT__GQ_U4] = {EFT_DTYPE_Q4_1, EFT_DTYPE_U4_G64, EFT_DTYPE_U4_G128},
        [EFT__GQ_I8] = {EFT_DTYPE_Q8_0, EFT_DTYPE_I8_G64, EFT_DTYPE_I8_G128},
    };
    int gi = group == 32 ? 0 : group == 64 ? 1 : group == 128 ? 2 : -1;
    if ((unsigned)kind > EFT__GQ_I8 || gi < 0) return EFT_DTYPE_COUNT;
    return k[kind][gi];
}

eft_dtype eft__gq_fit(eft_dtype want, int64_t k) {
    eft__gq_layout l;
    if (want == EFT_DTYPE_I8_CH) want = EFT_DTYPE_I8_G128;
    if (!eft__gq_layout_of(want, &l)) return want;
    for (int g = l.group; g >= 32; g /= 2)
        if (k % g == 0) return eft__gq_dtype(l.kind, g);
    return EFT_DTYPE_F32;
}

/* One block of any member; the arithmetic is dq_q4_0's, dq_q4_1's and dq_q8_0's, so the G = 32
 * members decode here exactly as there. */
static void dq_gq(float *y, const uint8_t *blk, const eft__gq_layout *l) {
    uint16_t hd, hm = 0;
    memcpy(&hd, blk, 2);
    if (l->kind == EFT__GQ_U4) memcpy(&hm, blk + 2, 2);
    const float d = h2f(hd), m = h2f(hm);
    const uint8_t *qs = blk + l->header;
    for (int r = 0; r < l->group / 32; r++, y += 32) {
        if (l->kind == EFT__GQ_I8) {
            for (int j = 0; j < 32; j++) y[j] = d * (float)(int8_t)qs[32 * r + j];
            continue;
        }
        const uint8_t *q = qs + 16 * r;
        for (int j = 0; j < 16; j++) {
            if (l->kind == EFT__GQ_I4) {
                y[j] = d * (float)((q[j] & 0x0f) - 8);
                y[j + 16] = d * (float)((q[j] >> 4) - 8);
            } else {
                y[j] = d * (float)(q[j] & 0x0f) + m;
                y[j + 16] = d * (float)(q[j] >> 4) + m;
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Row entry point
 * ------------------------------------------------------------------------------------------- */

/* Copies each block to an aligned local, then expands it. */
#define DQ_BLOCKS(type, fn, qk)                                                                    \
    do {                                                                                           \
        type blk;                                                                                  \
        for (int64_t i = 0; i < n / (qk); i++) {                                                   \
            memcpy(&blk, s + (size_t)i * sizeof blk, sizeof blk);                                  \
            fn(dst + i * (qk), &blk);                                                              \
        }                                                                                          \
    } while (0)

bool eft__dequantize_row(eft_dtype t, const void *src, float *dst, int64_t n) {
    const eft__dtype_traits *tr = eft__dtype_traits_of(t);
    if (!tr || n < 0 || n % tr->block_elems != 0) return false;
    const uint8_t *s = src;
    switch (t) {
    case EFT_DTYPE_F32: memcpy(dst, s, (size_t)n * sizeof(float)); return true;
    case EFT_DTYPE_F16:
    case EFT_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = t == EFT_DTYPE_F16 ? eft__f16_to_f32(h) : eft__bf16_to_f32(h);
        }
        return true;
    case EFT_DTYPE_Q4_0: DQ_BLOCKS(eft__block_q4_0, dq_q4_0, EFT__QK); return true;
    case EFT_DTYPE_Q4_1: DQ_BLOCKS(eft__block_q4_1, dq_q4_1, EFT__QK); return true;
    case EFT_DTYPE_Q5_0: DQ_BLOCKS(eft__block_q5_0, dq_q5_0, EFT__QK); return true;
    case EFT_DTYPE_Q5_1: DQ_BLOCKS(eft__block_q5_1, dq_q5_1, EFT__QK); return true;
    case EFT_DTYPE_Q8_0: DQ_BLOCKS(eft__block_q8_0, dq_q8_0, EFT__QK); return true;
    case EFT_DTYPE_Q2_K: DQ_BLOCKS(eft__block_q2_k, dq_q2_k, EFT__QK_K); return true;
    case EFT_DTYPE_Q3_K: DQ_BLOCKS(eft__block_q3_k, dq_q3_k, EFT__QK_K); return true;
    case EFT_DTYPE_Q4_K: DQ_BLOCKS(eft__block_q4_k, dq_q4_k, EFT__QK_K); return true;
    case EFT_DTYPE_Q5_K: DQ_BLOCKS(eft__block_q5_k, dq_q5_k, EFT__QK_K); return true;
    case EFT_DTYPE_Q6_K: DQ_BLOCKS(eft__block_q6_k, dq_q6_k, EFT__QK_K); return true;
    case EFT_DTYPE_Q8_K: DQ_BLOCKS(eft__block_q8_k, dq_q8_k, EFT__QK_K); return true;
    case EFT_DTYPE_I4_G64:
    case EFT_DTYPE_I4_G128:
    case EFT_DTYPE_U4_G64:
    case EFT_DTYPE_U4_G128:
    case EFT_DTYPE_I8_G64:
    case EFT_DTYPE_I8_G128: {
        eft__gq_layout l;
        eft__gq_layout_of(t, &l);
        for (int64_t i = 0; i < n / l.group; i++) dq_gq(dst + i * l.group, s + (size_t)i * l.block_bytes, &l);
        return true;
    }
    default: return false;
    }
}
