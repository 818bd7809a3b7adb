/*
 * core.h — internal foundations shared by every layer: allocation through the replaceable hook,
 * error values that carry a message, logging, overflow-checked arithmetic, and read-only file
 * mappings. Nothing here knows about models, kernels or HTTP.
 */
#ifndef EFT_CORE_H
#define EFT_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eft.h"

/* ---------------------------------------------------------------------------------------------
 * Allocation (alloc.c): every heap allocation goes through these, so tests can inject failures.
 * ------------------------------------------------------------------------------------------- */

void *eft__malloc(size_t n);
void *eft__calloc(size_t count, size_t size); /* zeroed; NULL on overflow */
void *eft__realloc(void *p, size_t n);
void eft__free(void *p);
char *eft__strdup(const char *s);
char *eft__strndup(const char *s, size_t n);
/* Allocates count*size bytes, NULL when the product overflows. */
void *eft__malloc_array(size_t count, size_t size);
/* printf into a fresh allocation; NULL on failure. */
char *eft__asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---------------------------------------------------------------------------------------------
 * Errors (error.c). A function that can fail takes an eft__error* (may be NULL) and returns an
 * eft_status; eft__fail fills in the message and returns the status so callers can write
 * `return eft__fail(err, EFT_ERR_FORMAT, "...")`.
 * ------------------------------------------------------------------------------------------- */

#define EFT__ERRMSG_MAX 1024

typedef struct eft__error {
    eft_status status;
    char msg[EFT__ERRMSG_MAX];
} eft__error;

eft_status eft__fail(eft__error *err, eft_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes the existing message with "prefix: " (for adding a file or tensor name on the way up). */
eft_status eft__error_prefix(eft__error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void eft__error_clear(eft__error *err);

/* Publishes an error as this thread's eft_last_error() and returns its status. */
eft_status eft__set_last_error(const eft__error *err);
void eft__clear_last_error(void);

/* ---------------------------------------------------------------------------------------------
 * Logging (log.c)
 * ------------------------------------------------------------------------------------------- */

void eft__log(eft_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool eft__log_enabled(eft_log_level level);

#define EFT_LOGE(...) eft__log(EFT_LOG_ERROR, __VA_ARGS__)
#define EFT_LOGW(...) eft__log(EFT_LOG_WARN, __VA_ARGS__)
#define EFT_LOGI(...) eft__log(EFT_LOG_INFO, __VA_ARGS__)
#define EFT_LOGD(...) eft__log(EFT_LOG_DEBUG, __VA_ARGS__)

/* ---------------------------------------------------------------------------------------------
 * Overflow-checked arithmetic: true on overflow. Sizes read from files always go through these.
 * ------------------------------------------------------------------------------------------- */

static inline bool eft__mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline bool eft__add_overflow_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out);
}

/* ---------------------------------------------------------------------------------------------
 * Files (file.c)
 * ------------------------------------------------------------------------------------------- */

/* A read-only mapping of a whole file. An empty file maps to data = NULL, size = 0. */
typedef struct eft__mapped_file {
    char *path;
    const uint8_t *data;
    uint64_t size;
} eft__mapped_file;

eft_status eft__file_map(eft__mapped_file *f, const char *path, eft__error *err);
void eft__file_unmap(eft__mapped_file *f);

/* Reads a whole (small) file into a NUL-terminated heap buffer; refuses files over max_size. */
eft_status eft__file_read_all(const char *path, uint64_t max_size, char **out, size_t *out_len,
                              eft__error *err);

bool eft__path_exists(const char *path);
bool eft__path_is_dir(const char *path);
/* True when dir/name exists. */
bool eft__path_exists_in(const char *dir, const char *name);
/* Joins a and b with one '/', into a fresh allocation (NULL on out of memory). */
char *eft__path_join(const char *a, const char *b);
/* The part of path after the last '/'. Borrowed from path. */
const char *eft__path_basename(const char *path);

/* ---------------------------------------------------------------------------------------------
 * Element types (dtype.c)
 * ------------------------------------------------------------------------------------------- */

typedef struct eft__dtype_traits {
    const char *name;
    uint32_t block_elems; /* elements per block: 1 for plain types */
    uint32_t block_bytes; /* bytes per block */
    bool is_float;        /* a plain floating-point type */
} eft__dtype_traits;

const eft__dtype_traits *eft__dtype_traits_of(eft_dtype t);
/* Bytes for n elements of type t; false when n is not a whole number of blocks or on overflow. */
bool eft__dtype_nbytes(eft_dtype t, uint64_t n, uint64_t *out);

/* Scalar conversions used by readers and reference code. */
float eft__f16_to_f32(uint16_t h);
uint16_t eft__f32_to_f16(float f);
float eft__bf16_to_f32(uint16_t h);
uint16_t eft__f32_to_bf16(float f);
float eft__f8e4m3_to_f32(uint8_t v);
float eft__f8e5m2_to_f32(uint8_t v);

#endif /* EFT_CORE_H */
