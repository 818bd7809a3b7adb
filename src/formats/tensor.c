/*
 * tensor.c — operations on stored-tensor views that do not depend on the file format: for now the
 * conversion of a plain (not block-quantised) view to float, used by tests, inspection tools and
 * reference code. Views point into file mappings with no alignment promise, so every element is
 * read with memcpy.
 */
#include <string.h>

#include "formats/safetensors.h"

/* One element of each width, read without assuming alignment. */
#define LOAD(type, p, i)                                                                           \
    ({                                                                                             \
        type v_;                                                                                   \
        memcpy(&v_, (const uint8_t *)(p) + (size_t)(i) * sizeof(type), sizeof(type));              \
        v_;                                                                                        \
    })

eft_status eft__tensor_to_f32(const eft__tensor_view *t, float *out, uint64_t n, eft__error *err) {
    if (!t) return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "tensor_to_f32: no tensor given");
    const char *name = t->name ? t->name : "?";
    if (n != t->n_elems) {
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT,
                         "tensor '%s' has %llu elements but the output holds %llu", name,
                         (unsigned long long)t->n_elems, (unsigned long long)n);
    }
    const eft__dtype_traits *tr = eft__dtype_traits_of(t->dtype);
    if (!tr) {
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "tensor '%s' has an invalid dtype %d", name,
                         (int)t->dtype);
    }
    if (tr->block_elems != 1) {
        return eft__fail(err, EFT_ERR_UNSUPPORTED,
                         "tensor '%s': converting %s blocks to F32 is not supported here", name,
                         tr->name);
    }
    /* The view's own byte count must cover n elements; a view made by a reader always does, but a
     * hand-made one may not, and reading past it would be out of bounds. */
    uint64_t need;
    if (!eft__dtype_nbytes(t->dtype, n, &need) || need > t->nbytes || (need && !t->data)) {
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT,
                         "tensor '%s': %llu elements of %s do not fit its %llu bytes", name,
                         (unsigned long long)n, tr->name, (unsigned long long)t->nbytes);
    }
    if (n > SIZE_MAX / sizeof(float)) {
        return eft__fail(err, EFT_ERR_LIMIT, "tensor '%s': %llu elements do not fit in memory", name,
                         (unsigned long long)n);
    }
    if (n == 0) return EFT_OK; /* a zero-size view has data == NULL, which memcpy must not see */
    const void *p = t->data;
    size_t m = (size_t)n;
    switch (t->dtype) {
    case EFT_DTYPE_F32: memcpy(out, p, m * sizeof(float)); break;
    case EFT_DTYPE_F64: for (size_t i = 0; i < m; i++) out[i] = (float)LOAD(double, p, i); break;
    case EFT_DTYPE_F16: for (size_t i = 0; i < m; i++) out[i] = eft__f16_to_f32(LOAD(uint16_t, p, i)); break;
    case EFT_DTYPE_BF16: for (size_t i = 0; i < m; i++) out[i] = eft__bf16_to_f32(LOAD(uint16_t, p, i)); break;
    case EFT_DTYPE_F8_E4M3: for (size_t i = 0; i < m; i++) out[i] = eft__f8e4m3_to_f32(LOAD(uint8_t, p, i)); break;
    case EFT_DTYPE_F8_E5M2: for (size_t i = 0; i < m; i++) out[i] = eft__f8e5m2_to_f32(LOAD(uint8_t, p, i)); break;
    case EFT_DTYPE_I64: for (size_t i = 0; i < m; i++) out[i] = (float)LOAD(int64_t, p, i); break;
    case EFT_DTYPE_I32: for (size_t i = 0; i < m; i++) out[i] = (float)LOAD(int32_t, p, i); break;
    case EFT_DTYPE_I16: for (size_t i = 0; i < m; i++) out[i] = (float)LOAD(int16_t, p, i); break;
    case EFT_DTYPE_I8: for (size_t i = 0; i < m; i++) out[i] = (float)LOAD(int8_t, p, i); break;
    case EFT_DTYPE_U64: for (size_t i = 0; i < m; i++) out[i] = (float)LOAD(uint64_t, p, i); break;
    case EFT_DTYPE_U32: for (size_t i = 0; i < m; i++) out[i] = (float)LOAD(uint32_t, p, i); break;
    case EFT_DTYPE_U16: for (size_t i = 0; i < m; i++) out[i] = (float)LOAD(uint16_t, p, i); break;
    case EFT_DTYPE_U8: for (size_t i = 0; i < m; i++) out[i] = (float)LOAD(uint8_t, p, i); break;
    /* PyTorch writes bools as bytes 0/1; any non-zero byte reads as true. */
    case EFT_DTYPE_BOOL: for (size_t i = 0; i < m; i++) out[i] = LOAD(uint8_t, p, i) ? 1.0f : 0.0f; break;
    default:
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "tensor '%s': converting %s to F32 is not supported",
                         name, tr->name);
    }
    return EFT_OK;
}
