/*
 * kernels.h — the CPU kernels' internal interface: the instruction sets we detect, one table of
 * function pointers per instruction set (chosen once from CPUID, overridable with EFT_ISA for
 * tests and benchmarks), and the drivers built on that table: packed f32 GEMM, Q8_0 GEMV/GEMM,
 * flash-style attention. Every entry of the table has a scalar reference (EFT__ISA_SCALAR) that
 * the tests hold the fast versions to.
 *
 * Shape letters: B batch, T tokens, C channels, NH heads, NKV key/value heads, HS head size,
 * V vocab; for matrix products M rows of activations, N output channels, K input channels.
 */
#ifndef EFT_KERNELS_CPU_H
#define EFT_KERNELS_CPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "core/quant.h"
#include "core/threadpool.h"

/* ---------------------------------------------------------------------------------------------
 * CPU features (cpu_features.c)
 * ------------------------------------------------------------------------------------------- */

typedef enum eft__isa {
    EFT__ISA_SCALAR = 0, /* baseline x86-64 (SSE2), what every other level is tested against */
    EFT__ISA_AVX2,       /* AVX2 + FMA + F16C */
    EFT__ISA_AVX512,     /* AVX-512 F/BW/VL/DQ on top of AVX2 */
    EFT__ISA_COUNT
} eft__isa;

typedef struct eft__cpu_features {
    bool avx2, fma, f16c;      /* each only when the OS saves the YMM state (XCR0) */
    bool avx512f, avx512bw, avx512vl, avx512dq; /* only when the OS saves the ZMM state */
    bool avx512_vnni;
    char brand[49];
} eft__cpu_features;

/* Detected once, cached; never NULL. */
const eft__cpu_features *eft__cpu_features_get(void);
/* The best level this CPU runs. */
eft__isa eft__isa_best(void);
/* "scalar", "avx2", "avx512". */
const char *eft__isa_name(eft__isa isa);

/* ---------------------------------------------------------------------------------------------
 * The kernel table (dispatch.c). Entries take the output first. Row kernels work on one row of
 * n elements; callers parallelise over rows.
 * ------------------------------------------------------------------------------------------- */

/* Register tile of the f32 GEMM micro-kernel: MR rows of activations by NR output channels. All
 * ISA levels share NR = 16 so one packed weight layout serves all of them. */
#define EFT__SGEMM_MR 6
#define EFT__SGEMM_NR 16

/* C[mr, nr] (ldc) = A[mr, kc] (lda) . Wp[kc, 16] (one packed panel, k-major, 16 floats per k)
 * then: + bias[0..nr) when bias != NULL, and += C (existing contents) when accumulate.
 * 1 <= mr <= MR, 1 <= nr <= NR; the panel is zero-padded past nr, so nr only limits the store. */
typedef void (*eft__sgemm_ukernel_fn)(float *c, int64_t ldc, const float *a, int64_t lda,
                                      const float *wp, int64_t kc, int mr, int nr,
                                      const float *bias, bool accumulate);
/* The same with a panel of 16-bit weights (f16 or bf16 bits), widened in registers: half the
 * bytes of f32 for the memory-bound decode, the same f32 arithmetic. */
typedef void (*eft__sgemm_ukernel_h_fn)(float *c, int64_t ldc, const float *a, int64_t lda,
                                        const uint16_t *wp, int64_t kc, int mr, int nr,
                                        const float *bias, bool accumulate);

/* The same tile with A packed (eft__sgemm's large-M path): ap[kc][MR], MR rows interleaved per
 * k and zero-padded past mr, so the kernel reads one sequential stream instead of mr strided
 * rows. Only the first mr rows of C are written. */
typedef void (*eft__sgemm_ukernel_pa_fn)(float *c, int64_t ldc, const float *ap, const float *wp, int64_t kc,
                                         int mr, int nr, const float *bias, bool accumulate);
typedef void (*eft__sgemm_ukernel_pa_h_fn)(float *c, int64_t ldc, const float *ap, const uint16_t *wp, int64_t kc,
                                           int mr, int nr, const float *bias, bool accumulate);

/* Activations for the Q8_0 kernels: blocks of 32 int8 with an f32 scale and the block sum (the
 * sum lets int4-with-zero-point and asymmetric kernels fold the zero point in later). */
typedef struct eft__block_q8_a {
    float d;
    int32_t sum;
    int8_t qs[EFT__QK];
} eft__block_q8_a;
_Static_assert(sizeof(eft__block_q8_a) == 40, "activation Q8 block must be 40 bytes");

/* Activations for the four-row interleaved kernels (qx4.c): the block's 32 quants, rounded as in
 * eft__block_q8_a, stored four times over as the kernel reads them: vector v holds quants 4v..4v+3
 * in each 32-bit lane of its low half and 16+4v..16+4v+3 in each lane of its high half (a vpshufd
 * of the plain block), so the GEMV loads what it would otherwise shuffle once per weight group.
 * ds = d times the quants' sum (Q4_0's offset and Q4_1's minimum). */
typedef struct eft__block_q8_x4a {
    float d, ds;
    int8_t qs[4][32];
} eft__block_q8_x4a;
_Static_assert(sizeof(eft__block_q8_x4a) == 136, "interleaved activation block must be 136 bytes");

typedef struct eft__kernels {
    eft__isa isa;

    /* f32 GEMM micro-kernels (see above): f32, f16 and bf16 weight panels. */
    eft__sgemm_ukernel_fn sgemm_ukernel;
    eft__sgemm_ukernel_h_fn sgemm_ukernel_f16;
    eft__sgemm_ukernel_h_fn sgemm_ukernel_bf16;
    /* The packed-A versions of the three (see eft__sgemm_ukernel_pa_fn). */
    eft__sgemm_ukernel_pa_fn sgemm_ukernel_pa;
    eft__sgemm_ukernel_pa_h_fn sgemm_ukernel_pa_f16;
    eft__sgemm_ukernel_pa_h_fn sgemm_ukernel_pa_bf16;

    /* Returns x[n] . y[n]. */
    float (*dot_f32)(const float *x, const float *y, int64_t n);
    /* y[n] += a * x[n] */
    void (*axpy_f32)(float *y, float a, const float *x, int64_t n);
    /* y[n] *= a */
    void (*scale_f32)(float *y, float a, int64_t n);

    /* Row normalisations: out[C] = (x - mean) / sqrt(var + eps) * w + b (w, b may be NULL). */
    void (*layernorm)(float *out, const float *x, const float *w, const float *b, int64_t n, float eps);
    /* out[C] = x / sqrt(mean(x^2) + eps) * (w + w_offset); w_offset is 1 for Gemma, else 0. */
    void (*rmsnorm)(float *out, const float *x, const float *w, int64_t n, float eps, float w_offset);
    /* In place, numerically stable: x[n] = exp(x - max) / sum. */
    void (*softmax)(float *x, int64_t n);
    /* Returns max(x[n]) (n >= 1). */
    float (*max_f32)(const float *x, int64_t n);
    /* The inner step of softmax: x[n] = exp(x - max) in place; returns the sum. x - max <= 0. */
    float (*exp_sub_sum)(float *x, int64_t n, float max);

    /* Elementwise activations; out may equal x. */
    void (*gelu_erf)(float *out, const float *x, int64_t n);
    void (*gelu_tanh)(float *out, const float *x, int64_t n);
    void (*silu)(float *out, const float *x, int64_t n);
    /* out[n] = silu(gate[n]) * up[n] */
    void (*swiglu)(float *out, const float *gate, const float *up, int64_t n);
    /* out[n] = a[n] + b[n] */
    void (*add)(float *out, const float *a, const float *b, int64_t n);

    /* Quantises one row of n (a multiple of 32) f32 activations into n/32 blocks. */
    void (*quantize_row_q8_a)(eft__block_q8_a *out, const float *x, int64_t n);
    /* Dot product of one quantised weight row (Q8_0, Q4_0 or Q4_1 blocks, GGUF layouts) with one
     * quantised activation row of nb blocks. */
    float (*dot_q8_0_q8_a)(const eft__block_q8_0 *w, const eft__block_q8_a *a, int64_t nb);
    float (*dot_q4_0_q8_a)(const eft__block_q4_0 *w, const eft__block_q8_a *a, int64_t nb);
    float (*dot_q4_1_q8_a)(const eft__block_q4_1 *w, const eft__block_q8_a *a, int64_t nb);

    /* f32 activations times quantised weights (Q8_0, Q4_0 or Q4_1 rows of k/32 blocks, row_bytes
     * apart, any alignment), each weight widened exactly as eft__dequantize_row widens it.
     * qgemv_f32: c[i * ldc + j] = a[i * lda ..] . dequant(w_j) (+ bias[j]) for i < m (1..8,
     * EFT__QGEMV_MAX_M) and j < nrows, every weight row decoded once for all m activation rows.
     * qpanel_f32: the sgemm panel wp[kc][16] (64-byte aligned, as the micro-kernel reads it) of
     * rows 0..nr-1 (1..16), elements k0 .. k0+kc (both multiples of 32), zeros past nr. */
    void (*qgemv_f32)(float *c, int64_t ldc, const float *a, int64_t lda, int m, eft_dtype wtype, const void *w,
                      size_t row_bytes, int64_t nrows, int64_t k, const float *bias);
    void (*qpanel_f32)(float *wp, eft_dtype wtype, const void *w, size_t row_bytes, int nr, int64_t k0, int64_t kc);

    /* Peak-rate probe for the benchmark: runs iters iterations of independent FMA chains and
     * returns the floating-point operations performed. */
    double (*fma_probe)(int64_t iters);

    /* Flash attention's inner steps; the scalar table's are the portable versions in
     * attention.c, which the fast ones are tested against through eft__attention.
     * attn_pack_k16: one GEMM panel of keys, dst[d * 16 + r] = k[r * ldk + d] for r < n (1..16)
     * and d < hs, zeros for rows n..15; dst is 32-byte aligned.
     * attn_softmax: the online-softmax step for nq query rows of one tile of nk (1..lds) keys.
     * s[nq][lds] holds raw scores q.k; row i sees keys [lo[i], hi[i]) of the tile (lo, hi NULL:
     * all nk) that also have mask[j] != 0 (mask NULL: all). Each visible score becomes
     * x = s * scale, then softcap * tanh(x / softcap) when softcap > 0; m[i] (running max of x,
     * -inf at first) and l[i] (running sum) are updated, row i of o[nq][ldo] (hsp floats) is
     * multiplied by exp(m_old - m_new) when the max grows, and s row i is overwritten with
     * exp(x - m_new), 0 for hidden keys and for columns nk .. round16(nk) - 1, so P V may read
     * whole 16-key panels. A row with no visible key in the tile gets zeros and keeps m, l. */
    void (*attn_pack_k16)(float *dst, const float *k, int64_t ldk, int n, int64_t hs);
    void (*attn_softmax)(float *s, int64_t lds, int nq, int64_t nk, const int32_t *lo, const int32_t *hi,
                         const uint8_t *mask, float scale, float softcap, float *m, float *l, float *o, int64_t ldo,
                         int64_t hsp);
    /* The group-quantised family (core/quant.h: Q4_0, Q4_1, Q8_0, I4_G*, U4_G*, I8_G*), f32
     * activations, each weight widened exactly as eft__dequantize_row widens it. The same contracts
     * as qgemv_f32 and qpanel_f32, with k, k0 and kc multiples of the type's group G. */
    void (*gqgemv_f32)(float *c, int64_t ldc, const float *a, int64_t lda, int m, eft_dtype wtype, const void *w,
                       size_t row_bytes, int64_t nrows, int64_t k, const float *bias);
    void (*gqpanel_f32)(float *wp, eft_dtype wtype, const void *w, size_t row_bytes, int nr, int64_t k0, int64_t kc);
    /* Four-row interleaved weights (qx4.c) times int8 activations: for each of ngroups groups of
     * four rows and each of the m output rows, c[i * ldc + 4 g + r] (+ bias), written for rows
     * 4 g + r < nrows only. wtype is the source type: Q4_0, Q4_1 or Q8_0.
     * planes 1: activation row i is a + i * lda (nb blocks); the sum over blocks of the integer dot
     * scaled by both blocks' scales.
     * planes 3: activation row i is three planes at a + 3 i lda, + lda, + 2 lda, written by
     * quantize_row_q8_x4a_x3; per block the integer dot with q1 2^15 + q2 2^7 + q3, scaled by the
     * weights' scale and plane 1's d (which already carries the 2^-15). */
    void (*qx4_gemv)(float *c, int64_t ldc, const eft__block_q8_x4a *a, int64_t lda, int m, int planes, eft_dtype wtype,
                     const void *w, int64_t ngroups, int64_t nb, int64_t nrows, const float *bias);
    /* Quantises one row of n (a multiple of 32) activations into n/32 eft__block_q8_x4a. */
    void (*quantize_row_q8_x4a)(eft__block_q8_x4a *out, const float *x, int64_t n);
    /* The same row to f32 precision as three planes of n/32 blocks, plane p at out + p ld: per block
     * of largest |x| = 127 d, x = d (q1 + 2^-8 q2 + 2^-15 q3) to within d 2^-16 (d 2^-15 where a
     * level that would round to +-128 is held at +-127, which is rare). q1 is quantize_row_q8_x4a's;
     * q2 and q3 quantise what the planes before them left, at fixed scales 2^-8 and 2^-15 of plane
     * 1's, so the kernel can add the three integer dots before one conversion. Plane 1 holds
     * 2^-15 d as its d and 2^-15 d sum(q1 2^15 + q2 2^7 + q3) as its ds; planes 2 and 3 hold 0 in
     * both. Bit-identical on every table. */
    void (*quantize_row_q8_x4a_x3)(eft__block_q8_x4a *out, const float *x, int64_t n, int64_t ld);
    /* Decode attention's inner loops for one KV head and the g query heads that share it
     * (eft__attention_decode): each key and value row is read once for all g queries. Cache rows
     * hold hs elements of type kt / vt: EFT_DTYPE_F32, F16, or I8 (the int8 values themselves; the
     * caller applies the rows' scales). ldk / ldv count elements.
     * attn_dec_qk: s[r * lds + j] = q_r . k_j for r < g, j < n, q_r = q + r * ldq, k_j = k + j * ldk.
     * attn_dec_pv: o[r * ldo + e] += sum_{j < n} p[r * ldp + j] v_j[e], v_j = v + j * ldv, for r < g,
     * e < hs. */
    void (*attn_dec_qk)(float *s, int64_t lds, const float *q, int64_t ldq, int g, const void *k, eft_dtype kt,
                        int64_t ldk, int64_t n, int hs);
    void (*attn_dec_pv)(float *o, int64_t ldo, const float *p, int64_t ldp, int g, const void *v, eft_dtype vt,
                        int64_t ldv, int64_t n, int hs);
} eft__kernels;

/* The table for the best ISA of this CPU, or for EFT_ISA=scalar|avx2|avx512 when that is set and
 * supported. Chosen once; never NULL. */
const eft__kernels *eft__kernels_get(void);
/* The table of one level, or NULL when this CPU (or this build) cannot run it. */
const eft__kernels *eft__kernels_for(eft__isa isa);

/* Per-ISA fillers: each sets the entries it implements and leaves the others as they are, so a
 * level inherits everything it does not override from the level below. */
void eft__kernels_fill_scalar(eft__kernels *k);
void eft__kernels_fill_avx2(eft__kernels *k);
void eft__kernels_fill_avx512(eft__kernels *k);
void eft__kernels_fill_gemm_scalar(eft__kernels *k);
void eft__kernels_fill_gemm_avx2(eft__kernels *k);
void eft__kernels_fill_gemm_avx512(eft__kernels *k);
void eft__kernels_fill_q8_scalar(eft__kernels *k);
void eft__kernels_fill_q8_avx2(eft__kernels *k);
void eft__kernels_fill_attn_scalar(eft__kernels *k);
void eft__kernels_fill_gq_scalar(eft__kernels *k);
void eft__kernels_fill_gq_avx2(eft__kernels *k);
void eft__kernels_fill_qx4_scalar(eft__kernels *k);
void eft__kernels_fill_qx4_avx2(eft__kernels *k);
void eft__kernels_fill_attn_dec_avx2(eft__kernels *k);

/* ---------------------------------------------------------------------------------------------
 * Packed f32 GEMM (gemm.c): C[M, N] = A[M, K] . W[N, K]^T (+ bias[N]), i.e. PyTorch's Linear
 * y = x W^T + b. W is packed once (at compile time) into panels of 16 output channels:
 * panel p holds W[16p .. 16p+15][0 .. K) k-major, 16 floats per k, zero-padded past N.
 * ------------------------------------------------------------------------------------------- */

typedef struct eft__sgemm_packed {
    int64_t n, k;     /* logical N and K */
    int64_t npanels;  /* ceil(N / 16) */
    eft_dtype dtype;  /* element type of data: F32, F16 or BF16 */
    void *data;       /* [npanels][K][16], 64-byte aligned, owned unless borrowed */
    bool borrowed;    /* data lives in someone else's memory (a mapped program): free leaves it */
} eft__sgemm_packed;

/* Packs w[N, K] (row stride ldw >= K). */
eft_status eft__sgemm_pack(eft__sgemm_packed *out, const float *w, int64_t n, int64_t k, int64_t ldw,
                           eft__error *err);
/* Packs from f16 or bf16 (dtype EFT_DTYPE_F16/BF16/F32) rows: the weights are widened once, at
 * pack time, so the hot loop stays f32. */
eft_status eft__sgemm_pack_typed(eft__sgemm_packed *out, eft_dtype dtype, const void *w, int64_t n,
                                 int64_t k, int64_t ldw, eft__error *err);
/* Packs keeping 16-bit weights 16-bit (dtype F16 or BF16 in and out; F32 is the same as
 * eft__sgemm_pack): the micro-kernel widens them, so decode reads half the bytes. */
eft_status eft__sgemm_pack_half(eft__sgemm_packed *out, eft_dtype dtype, const void *w, int64_t n, int64_t k,
                                int64_t ldw, eft__error *err);
void eft__sgemm_packed_free(eft__sgemm_packed *p);

/* c[M, N] (ldc) = a[M, K] (lda) . W^T + bias (bias[N] may be NULL). Runs on tp (NULL = the
 * calling thread alone) with the given kernel table (NULL = eft__kernels_get()). */
void eft__sgemm(const eft__kernels *kt, eft__threadpool *tp, float *c, int64_t ldc, const float *a,
                int64_t lda, int64_t m, const eft__sgemm_packed *w, const float *bias);
/* The same product for one worker's share, for callers already inside a threadpool run. */
void eft__sgemm_worker(const eft__kernels *kt, float *c, int64_t ldc, const float *a, int64_t lda,
                       int64_t m, const eft__sgemm_packed *w, const float *bias, int ith, int nth);

/* Packs rows [0, rows) x [0, kc) of a (row stride lda) into the micro-panels the packed-A
 * micro-kernels read: ap[ceil(rows / MR)][kc][MR], rows past the end zero. */
void eft__sgemm_pack_a(float *ap, const float *a, int64_t lda, int64_t rows, int64_t kc);

/* Scalar reference on unpacked weights, accumulating in double: what the tests compare with. */
void eft__sgemm_ref(float *c, int64_t ldc, const float *a, int64_t lda, int64_t m, const float *w,
                    int64_t ldw, int64_t n, int64_t k, const float *bias);

/* ---------------------------------------------------------------------------------------------
 * Q8_0 weights (qgemm.c): rows of K/32 GGUF Q8_0 blocks, read as they are (a GGUF Q8_0 tensor is
 * already in this layout, so no repacking), activations quantised on the fly to eft__block_q8_a.
 * Per-channel or per-group (32, 64, 128, ...) int8 scales map onto it exactly up to the scale's
 * rounding to f16 (2^-11 relative, well inside int8's own error).
 * ------------------------------------------------------------------------------------------- */

/* Quantises w[N, K] (K % 32 == 0) to Q8_0, round to nearest, scale = max|x| / 127. */
void eft__quantize_q8_0(eft__block_q8_0 *out, const float *w, int64_t n, int64_t k);
/* Converts int8 weights q[N, K] with scales s (one per group of group_size along K; group_size a
 * multiple of 32, or K for per-channel) to Q8_0. */
bool eft__q8_0_from_int8(eft__block_q8_0 *out, const int8_t *q, const float *s, int64_t n, int64_t k,
                         int64_t group_size);

/* 4-bit weights in GGUF's Q4_0 (symmetric, x = d (q - 8)) and Q4_1 (x = d q + m) blocks of 32,
 * read as they are. AWQ/GPTQ groups (scale s, zero point z, x = s (q - z)) map onto Q4_1 with
 * d = s, m = -s z repeated over each group's 32-blocks; the nibble order must be repacked to
 * GGUF's (elements 0-15 in the low nibbles, 16-31 in the high ones). */
void eft__quantize_q4_0(eft__block_q4_0 *out, const float *w, int64_t n, int64_t k);
void eft__quantize_q4_1(eft__block_q4_1 *out, const float *w, int64_t n, int64_t k);

/* Any of the quantised weight types: c[M, N] = a[M, K] . dequant(W[N, K])^T + bias, with W of
 * type wtype (EFT_DTYPE_Q8_0, Q4_0 or Q4_1). Returns false for another type or K % 32 != 0. */
bool eft__qgemm(const eft__kernels *kt, eft__threadpool *tp, float *c, int64_t ldc, const float *a, int64_t lda,
                int64_t m, eft_dtype wtype, const void *w, int64_t n, int64_t k, const float *bias, void *work);

/* The same product with the activations kept in f32: each weight is widened to f32 exactly as
 * eft__dequantize_row widens it and multiplied in f32, so the result is "dequantise, then an f32
 * GEMM" up to the order of the float sums (what Hugging Face transformers computes from a GGUF).
 * Few rows (decode) stream each weight row once through FMAs against all of them; more rows
 * decode 16-channel panels into work and run the f32 GEMM micro-kernel over every row, so each
 * weight is decoded once per call. Returns false for another type, K % 32 != 0, or no work when
 * the panel path needs it. work: eft__qgemm_f32_work_size bytes for nth workers (the thread
 * pool's size, 1 without one). */
bool eft__qgemm_f32(const eft__kernels *kt, eft__threadpool *tp, float *c, int64_t ldc, const float *a, int64_t lda,
                    int64_t m, eft_dtype wtype, const void *w, int64_t n, int64_t k, const float *bias, void *work);
size_t eft__qgemm_f32_work_size(int64_t m, int64_t k, int nth);
/* The f32-activation driver eft__qgemm_f32 and eft__gqgemm_f32 share: the GEMV path for up to
 * EFT__QSTREAM_MAX_M rows (gemv over whole 16-channel groups per worker), else packed activations
 * and panels decoded by panel for the packed-A micro-kernel. row_bytes: one weight row's blocks;
 * work: eft__qgemm_f32_work_size bytes. False only when m > EFT__QSTREAM_MAX_M and work is NULL. */
typedef void (*eft__qgemv_f32_fn)(float *c, int64_t ldc, const float *a, int64_t lda, int m, eft_dtype wtype,
                                  const void *w, size_t row_bytes, int64_t nrows, int64_t k, const float *bias);
typedef void (*eft__qpanel_f32_fn)(float *wp, eft_dtype wtype, const void *w, size_t row_bytes, int nr, int64_t k0,
                                   int64_t kc);
bool eft__qf32_drive(const eft__kernels *kt, eft__threadpool *tp, float *c, int64_t ldc, const float *a, int64_t lda,
                     int64_t m, eft_dtype wtype, const void *w, size_t row_bytes, int64_t n, int64_t k, const float *bias,
                     void *work, eft__qgemv_f32_fn gemv, eft__qpanel_f32_fn panel);
/* One product of eft__qgemm_f32_gemv_multi: c[M, n] (ldc) = a[M, k] (lda) . dequant(w[n, k])^T
 * (+ bias), w of type wtype (Q8_0, Q4_0 or Q4_1). */
typedef struct eft__qgemv_job {
    float *c;
    int64_t ldc;
    const float *a;
    int64_t lda;
    eft_dtype wtype;
    const void *w;
    int64_t n, k;
    const float *bias;
} eft__qgemv_job;
/* Several independent GEMV products of the same m rows (1..EFT__QGEMV_MAX_M) in one thread-pool
 * run, as eft__qgemm_f32 computes each: a decoder's separate q, k, v (or gate and up) projections
 * then pay for one dispatch and one join instead of three. The workers split the jobs' output
 * channels taken together, so small jobs (k and v) do not leave threads idle. Returns false,
 * computing nothing, for m outside 1..EFT__QGEMV_MAX_M or a job eft__qgemm_f32 would refuse. */
bool eft__qgemm_f32_gemv_multi(const eft__kernels *kt, eft__threadpool *tp, int64_t m, const eft__qgemv_job *jobs,
                               int njobs);
/* Rows up to which eft__qgemm_f32 takes the streaming (GEMV) path, and the most rows one qgemv_f32
 * call takes: a decode batch of up to eight sequences decodes each weight block once, in
 * registers, for all its rows, where the panel path would widen it to memory and run the 6 x 16
 * micro-kernel over a handful of rows. */
#define EFT__QGEMV_MAX_M 8
/* Rows up to which eft__qgemm_f32 and eft__gqgemm_f32 stream the weights (several kernel calls of
 * up to EFT__QGEMV_MAX_M rows over L2-sized blocks of weight rows) rather than decode panels: a
 * continuous batch of 9-16 sequences still reads each weight from memory once, in registers. */
#define EFT__QSTREAM_MAX_M 16

/* Scratch bytes eft__q8_0_gemm and eft__qgemm need for m rows of k. */
size_t eft__q8_0_gemm_work_size(int64_t m, int64_t k);
/* c[M, N] (ldc) = a[M, K] (lda) . dequant(W[N, K])^T + bias. K % 32 == 0. work is scratch of
 * eft__q8_0_gemm_work_size bytes, 64-byte aligned is best. */
void eft__q8_0_gemm(const eft__kernels *kt, eft__threadpool *tp, float *c, int64_t ldc, const float *a,
                    int64_t lda, int64_t m, const eft__block_q8_0 *w, int64_t n, int64_t k,
                    const float *bias, void *work);

/* ---------------------------------------------------------------------------------------------
 * Four-row interleaved weights for int8 activations (qx4.c): the decode layout of Q4_0, Q4_1 and
 * Q8_0. Rows are taken four at a time (the last group padded with zero rows) and each group's 32-
 * element blocks are stored one after another, four rows per block: their four f16 scales (and
 * Q4_1's four minima) side by side, then the quants arranged so that one 32-byte load holds four
 * consecutive elements of each of the four rows in each 128-bit half. A vpmaddubsw against the
 * activation block's matching four bytes, broadcast with one vpshufd, then sums all four rows at
 * once: the int8 GEMV needs no horizontal sums and one scale multiply per block for four rows.
 * Quant byte 4 l + t (l = 0..7 the int32 lane, t = 0..3) of vector v (v = 0..3) is element
 * 4 v + t (l < 4) or 16 + 4 v + t (l >= 4) of row l % 4. Q8_0 stores the four vectors as they are
 * (128 bytes); Q4_0 / Q4_1 store the nibbles of vectors 0 and 1 in the low and high nibbles of
 * bytes 0-31 and those of vectors 2 and 3 in bytes 32-63.
 * ------------------------------------------------------------------------------------------- */

typedef struct eft__block_q4_0x4 {
    eft__half d[4];
    uint8_t qs[64];
} eft__block_q4_0x4;
typedef struct eft__block_q4_1x4 {
    eft__half d[4];
    eft__half m[4];
    uint8_t qs[64];
} eft__block_q4_1x4;
typedef struct eft__block_q8_0x4 {
    eft__half d[4];
    int8_t qs[128];
} eft__block_q8_0x4;
_Static_assert(sizeof(eft__block_q4_0x4) == 72 && sizeof(eft__block_q4_1x4) == 80 && sizeof(eft__block_q8_0x4) == 136,
               "four-row blocks are four source blocks");

/* Bytes of the interleaved form of w[n, k] of type wtype; 0 when wtype is not Q4_0, Q4_1 or Q8_0 or
 * k % 32 != 0. */
size_t eft__qx4_size(eft_dtype wtype, int64_t n, int64_t k);
/* Writes that form of w (rows row_bytes apart, the GGUF layout) into out (eft__qx4_size bytes, any
 * alignment). False, writing nothing, when eft__qx4_size is 0. */
bool eft__qx4_pack(void *out, eft_dtype wtype, const void *w, size_t row_bytes, int64_t n, int64_t k);
/* Row r of an interleaved matrix widened to k floats, as eft__dequantize_row widens the source. */
void eft__qx4_dequantize_row(float *out, eft_dtype wtype, const void *x4, int64_t r, int64_t k);

/* One product of eft__qx4_gemm_multi: c[m, n] (ldc) = a . dequant(w)^T (+ bias), w interleaved. */
typedef struct eft__qx4_job {
    float *c;
    int64_t ldc;
    eft_dtype wtype;
    const void *w;
    int64_t n;
    const float *bias;
} eft__qx4_job;
/* Scratch bytes for m activation rows of k. */
size_t eft__qx4_work_size(int64_t m, int64_t k);
/* c[m, n] (ldc) = a[m, k] (lda) . dequant(W)^T (+ bias) with a quantised to int8 blocks as
 * quantize_row_q8_a does (llama.cpp's way: close to, not equal to, the f32 product). On tp (NULL:
 * this thread) with kt (NULL: eft__kernels_get()); work: eft__qx4_work_size(m, k) bytes. False,
 * computing nothing, for k % 32 != 0 or a type eft__qx4_size refuses. */
bool eft__qx4_gemm(const eft__kernels *kt, eft__threadpool *tp, float *c, int64_t ldc, const float *a, int64_t lda,
                   int64_t m, eft_dtype wtype, const void *w, int64_t n, int64_t k, const float *bias, void *work);
/* Several products of the same a (q, k and v; gate and up) in one pool run, the activations
 * quantised once and the jobs' row groups split over the workers together. */
bool eft__qx4_gemm_multi(const eft__kernels *kt, eft__threadpool *tp, const float *a, int64_t lda, int64_t m,
                         int64_t k, const eft__qx4_job *jobs, int njobs, void *work);

/* The same products with the activations kept to f32 precision: each block of a is split into
 * three int8 planes, x = d (q1 + 2^-8 q2 + 2^-15 q3) (quantize_row_q8_x4a_x3: |x - sum| <= about
 * 2^-23 of the block's largest |x|, near f32's own rounding of a block's dot), and the integer
 * kernel runs over the three, weights decoded once for all of them and the three integer dots
 * added before one conversion. What the decoder runs for f32 activations at one-token decode steps:
 * about half the instructions per weight of widening each weight to f32.
 * work: eft__qx4_f32_work_size. */
size_t eft__qx4_f32_work_size(int64_t m, int64_t k);
bool eft__qx4_gemm_f32(const eft__kernels *kt, eft__threadpool *tp, float *c, int64_t ldc, const float *a,
                       int64_t lda, int64_t m, eft_dtype wtype, const void *w, int64_t n, int64_t k,
                       const float *bias, void *work);
bool eft__qx4_gemm_f32_multi(const eft__kernels *kt, eft__threadpool *tp, const float *a, int64_t lda, int64_t m,
                             int64_t k, const eft__qx4_job *jobs, int njobs, void *work);

/* ---------------------------------------------------------------------------------------------
 * Group-quantised weights (gqgemm.c): W[N, K] as rows of K/G blocks of one of core/quant.h's
 * family (int4 symmetric or with a minimum, int8; G = 32, 64, 128), f32 activations. Few rows
 * (1..EFT__QGEMV_MAX_M, decode) stream every weight row once, widened in registers, against all
 * of them; more rows decode 16-row panels of KQ x 16 floats and run the sgemm micro-kernel over
 * every row, so each weight is decoded once per call. Threaded over output channels.
 * ------------------------------------------------------------------------------------------- */

/* Quantises w[N, K] (K % G == 0) into wtype's blocks, every element rounded to the nearest level
 * of its group's stored (f16) scale and minimum. int8: d = max|x| / 127. int4: the scale (and
 * minimum) of each group is the best of a small search around ggml's rule (symmetric: the extreme
 * maps to -8) or the group's min and max (with a minimum), each candidate refitted by least
 * squares, so the squared error is never above those rules' (gqgemm.c). False for a type outside
 * the family or K % G != 0. */
bool eft__quantize_gq(eft_dtype wtype, void *out, const float *w, int64_t n, int64_t k);
/* int8 with one scale per output channel (max|row| / 127), stored in an int8 member of the
 * family (wtype Q8_0, I8_G64 or I8_G128) with the row's scale repeated in every block. */
bool eft__quantize_gq_i8_channel(eft_dtype wtype, void *out, const float *w, int64_t n, int64_t k);
/* Scalar reference: c[M, N] (ldc) = a[M, K] (lda) . dequant(W)^T (+ bias), in double. */
bool eft__gqgemm_ref(float *c, int64_t ldc, const float *a, int64_t lda, int64_t m, eft_dtype wtype, const void *w,
                     int64_t n, int64_t k, const float *bias);
/* The fast product on tp (NULL: this thread) with kt (NULL: eft__kernels_get()). work: 
 * eft__gqgemm_f32_work_size(m, k, nth) bytes (none for m <= EFT__QSTREAM_MAX_M), any alignment.
 * False, computing nothing, for a type outside the family, K % G != 0 or missing work. */
bool eft__gqgemm_f32(const eft__kernels *kt, eft__threadpool *tp, float *c, int64_t ldc, const float *a, int64_t lda,
                     int64_t m, eft_dtype wtype, const void *w, int64_t n, int64_t k, const float *bias, void *work);
size_t eft__gqgemm_f32_work_size(int64_t m, int64_t k, int nth);

/* ---------------------------------------------------------------------------------------------
 * Attention (attention.c). q[T, NH, HS], k and v [Tk, NKV, HS] (rows of NH*HS or NKV*HS floats,
 * heads contiguous, as a fused QKV Linear writes them, each with its own row stride), out
 * [T, NH, HS]. Query head h reads key/value head h / (NH / NKV) (grouped-query attention).
 * Query i sits at absolute position q_pos0 + i, key j at position j.
 * ------------------------------------------------------------------------------------------- */

typedef struct eft__attn_params {
    int64_t t, tk;       /* query rows, key rows */
    int nh, nkv, hs;     /* heads, key/value heads (nh % nkv == 0), head size */
    int64_t ldq, ldk, ldv, ldo; /* row strides in floats */
    /* Floats from key/value head h's part of a row to head h+1's; 0: hs (heads side by side in
     * each row, as above). A cache laid out head by head ([NKV][Tk][HS]) has ldk = HS and
     * ldkh = Tk_max HS. */
    int64_t ldkh, ldvh;
    int64_t q_pos0;      /* absolute position of query 0 (tk - t for a causal prefill chunk) */
    float scale;         /* usually 1/sqrt(hs) */
    bool causal;         /* key j visible to query i only when j <= q_pos0 + i */
    int64_t window;      /* > 0: sliding window, key j visible only when |q_pos - j| < window */
    int64_t kv_len;      /* keys at j >= kv_len are padding (masked); <= 0 means tk */
    const uint8_t *key_mask; /* [tk] optional: 0 masks key j (padding inside a batch row) */
    float softcap;       /* > 0: scores become softcap * tanh(score / softcap) after scaling (Gemma 2) */
} eft__attn_params;

/* Scratch floats eft__attention needs with nth workers (the threadpool's size, 1 without one):
 * the packed keys and values (about the size of K and V) plus a small tile per worker. */
size_t eft__attention_work_floats(const eft__attn_params *p, int nth);
/* Flash-style: tiles of queries against tiles of keys with an online softmax, never building the
 * T x Tk score matrix; both products run on the GEMM micro-kernel over keys and values packed
 * once per call. A query row with no visible key gets zeros. work: 64-byte aligned,
 * eft__attention_work_floats(p, nth) floats. */
void eft__attention(const eft__kernels *kt, eft__threadpool *tp, float *out, const float *q,
                    const float *k, const float *v, const eft__attn_params *p, float *work);
/* Scalar reference: full score rows, accumulates in double. */
void eft__attention_ref(float *out, const float *q, const float *k, const float *v,
                        const eft__attn_params *p);

/* ---------------------------------------------------------------------------------------------
 * Decode attention over a KV cache in f32, f16 or int8 (attention.c): few query rows
 * (1-8 tokens per sequence) against a long cache, so the cost is reading the cache once.
 * ------------------------------------------------------------------------------------------- */

/* One of K or V in the cache: element e of key j's head h at data + j ld + h ld_head + e (in
 * elements), its int8 scale at scale[j ld_scale + h ld_scale_head]. ld_head 0 means HS and
 * ld_scale_head 0 means 1: rows [Tk] of NKV heads x HS side by side. The decoder's cache is head
 * by head instead ([NKV][ctx][HS], ld = HS, ld_head = ctx HS), so one head's keys are one stream. */
typedef struct eft__kv_view {
    eft_dtype dtype;     /* EFT_DTYPE_F32, EFT_DTYPE_F16 or EFT_DTYPE_I8 */
    const void *data;
    int64_t ld;          /* key stride in elements */
    const float *scale;  /* I8 only: symmetric scales */
    int64_t ld_scale;
    int64_t ld_head, ld_scale_head;
} eft__kv_view;

/* Quantises one head's row x[HS] for an int8 cache: returns the scale (max|x| / 127). */
float eft__kv_quantize_i8(int8_t *out, const float *x, int64_t n);

/* Scratch floats per worker for eft__attention_decode. */
size_t eft__attention_decode_work_floats(const eft__attn_params *p);
/* One sequence's rows for eft__attention_decode_batch. */
typedef struct eft__attn_dec_item {
    float *out;
    const float *q;
    eft__kv_view k, v;
    eft__attn_params p;
} eft__attn_dec_item;
/* Several sequences' decode attention (a continuous batch's step) in one pool run, each item as
 * eft__attention_decode computes it: the workers take (sequence, row, KV head) units in turn, each
 * over all of its keys, and write the output directly, where one call per sequence would split
 * every short cache over the workers, dispatch, and merge. work: nth x work_floats floats,
 * work_floats >= eft__attention_decode_work_floats of every item's p. */
void eft__attention_decode_batch(const eft__kernels *kt, eft__threadpool *tp, const eft__attn_dec_item *items, int n,
                                 float *work, size_t work_floats);
/* Same semantics as eft__attention (masks, GQA, positions); p->ldk and p->ldv are unused (the
 * views carry them), and p->nh must be a multiple of p->nkv (else nothing is computed).
 * Flash-decoding over f32, f16 and int8 caches alike (attention.c). work: nth *
 * eft__attention_decode_work_floats floats. */
void eft__attention_decode(const eft__kernels *kt, eft__threadpool *tp, float *out, const float *q,
                           const eft__kv_view *k, const eft__kv_view *v, const eft__attn_params *p, float *work);

/* ---------------------------------------------------------------------------------------------
 * Rotary position embeddings (rope.c). The compile step builds a table of cos/sin for every
 * position once (all scaling variants live in the table: the kernel only rotates), then each
 * forward rotates the first rot_dims of every head of q and k.
 * ------------------------------------------------------------------------------------------- */

typedef enum eft__rope_layout {
    EFT__ROPE_NEOX = 0, /* pairs (i, i + rot/2): Llama, Qwen, Gemma in Hugging Face ("rotate_half") */
    EFT__ROPE_GPTJ,     /* pairs (2i, 2i + 1): GPT-J, and GGUF's "normal" rope */
} eft__rope_layout;

typedef enum eft__rope_scaling {
    EFT__ROPE_SCALING_NONE = 0,
    EFT__ROPE_SCALING_LINEAR,   /* positions divided by factor */
    EFT__ROPE_SCALING_LLAMA3,   /* Llama 3.1: low/high frequency bands, smooth in between */
    EFT__ROPE_SCALING_YARN,     /* YaRN: ramp between interpolation and extrapolation, mscale */
    EFT__ROPE_SCALING_LONGROPE, /* Phi-3: per-dimension short/long factors */
} eft__rope_scaling;

/* The fields of Hugging Face's config.json rope_scaling, with its defaults where one is 0. */
typedef struct eft__rope_params {
    int rot_dims;               /* rotated dimensions per head (even, <= HS): HS * partial_rotary_factor */
    float base;                 /* rope_theta */
    eft__rope_scaling scaling;
    float factor;
    int64_t original_max_pos;   /* original_max_position_embeddings */
    int64_t max_pos;            /* max_position_embeddings */
    int64_t ctx_len;            /* longrope: the compiled context; long factors when > original_max_pos */
    float low_freq_factor, high_freq_factor; /* llama3 */
    float beta_fast, beta_slow; /* yarn; 0 means 32 and 1 */
    float mscale, mscale_all_dim; /* yarn (DeepSeek style); 0 means unused */
    float attention_factor;     /* yarn/longrope override; 0 means computed as Hugging Face does */
    const float *short_factor, *long_factor; /* longrope, rot_dims/2 each */
} eft__rope_params;

typedef struct eft__rope_table {
    int64_t n_pos;
    int half;      /* rot_dims / 2 */
    float *cos_sin; /* [n_pos][half][2]: cos, sin of pos * inv_freq[i], times the attention factor */
    float attn_factor;
} eft__rope_table;

/* The inverse frequencies [rot_dims/2] and attention factor of a configuration, in double. */
void eft__rope_inv_freq(const eft__rope_params *p, double *inv_freq, double *attn_factor);
eft_status eft__rope_table_init(eft__rope_table *t, const eft__rope_params *p, int64_t n_pos, eft__error *err);
void eft__rope_table_free(eft__rope_table *t);
/* Rotates x[T, NH, HS] (row stride ldx) in place; pos[T] are absolute positions < n_pos. */
void eft__rope_apply(const eft__rope_table *t, eft__rope_layout layout, float *x, int64_t ldx, int64_t T, int nh,
                     int hs, const int32_t *pos);

/* ---------------------------------------------------------------------------------------------
 * Embedding gather and pooling (pool.c): memory-bound row copies and reductions, one plain C
 * version for every ISA.
 * ------------------------------------------------------------------------------------------- */

/* out[T, C] (ldo) = table[ids[t]][0..C) for a table [V, C] of dtype F32, F16 or BF16 with rows
 * ld elements apart. Returns false, touching nothing, when an id is outside [0, V) or the dtype
 * is another. */
bool eft__embedding_gather(float *out, int64_t ldo, const void *table, eft_dtype dtype, int64_t vocab, int64_t c,
                           int64_t ld, const int32_t *ids, int64_t t);

/* sentence-transformers' pooling modes. */
typedef enum eft__pool_mode {
    EFT__POOLOP_MEAN = 0,
    EFT__POOLOP_CLS,
    EFT__POOLOP_MAX,
    EFT__POOLOP_LASTTOKEN,
    EFT__POOLOP_MEAN_SQRT_LEN,
    EFT__POOLOP_WEIGHTEDMEAN,
} eft__pool_mode;

/* out[C] = pooling of x[T, C] (ldx) over the tokens with mask[t] != 0 (mask NULL: all). With no
 * token left, out is zeros (max: -1e9, as sentence-transformers' masked fill gives). */
void eft__pool(float *out, const float *x, int64_t ldx, int64_t t, int64_t c, const uint8_t *mask, eft__pool_mode mode);
/* x[n] /= max(||x||_2, 1e-12), torch.nn.functional.normalize's rule. */
void eft__l2_normalize(float *x, int64_t n);

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

/* 64-byte aligned allocation through the library's allocator hook; free with eft__free_aligned. */
void *eft__malloc_aligned(size_t n);
void eft__free_aligned(void *p);
/* The same for a buffer that is streamed through whole (weights): from 2 MiB up it starts
 * on a 2 MiB boundary and is advised for transparent huge pages (madvise mode is Debian's default),
 * so reading it does not take a TLB miss every 4 KiB. The alignment's slack is never touched, so
 * never resident. Free with eft__free_aligned. */
void *eft__malloc_huge(size_t n);

#endif /* EFT_KERNELS_CPU_H */
