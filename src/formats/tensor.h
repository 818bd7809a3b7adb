/*
 * tensor.h — the one description of a stored tensor that every weight reader produces
 * (safetensors, GGUF): name, element type, shape and a borrowed pointer into a read-only file
 * mapping. Shapes are outermost-first (row-major, as PyTorch and safetensors write them); the GGUF
 * reader reverses GGUF's innermost-first dimensions into this order. A view is only made after
 * its byte range has been checked against the file.
 */
#ifndef EFT_FORMATS_TENSOR_H
#define EFT_FORMATS_TENSOR_H

#include "core/core.h"

#define EFT__MAX_DIMS 8

typedef struct eft__tensor_view {
    const char *name;  /* NUL-terminated, owned by the reader that made the view */
    eft_dtype dtype;
    int ndim;                      /* 0 for a scalar */
    int64_t shape[EFT__MAX_DIMS]; /* outermost first */
    uint64_t n_elems;              /* product of shape (1 for a scalar) */
    const void *data;              /* borrowed; NULL only when nbytes == 0 */
    uint64_t nbytes;
    uint32_t file_index; /* which file of a multi-file set the bytes live in */
} eft__tensor_view;

#endif /* EFT_FORMATS_TENSOR_H */
