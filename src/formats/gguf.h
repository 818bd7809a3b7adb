/*
 * gguf.h — the GGUF reader (versions 2 and 3, little-endian): metadata key/values with typed
 * getters and O(1) access to array elements (string arrays of 150k tokenizer entries included),
 * and tensors as bounds-checked views into one read-only mapping. Opening validates the whole
 * header; after a successful open nothing a getter returns can point outside the file.
 */
#ifndef EFT_FORMATS_GGUF_H
#define EFT_FORMATS_GGUF_H

#include "formats/tensor.h"

/* Arrays nested deeper than this (an array of arrays of ... ) are refused. */
#define EFT__GGUF_MAX_DEPTH 8
/* GGML_MAX_DIMS: tensors have 1 to 4 dimensions. */
#define EFT__GGUF_MAX_DIMS 4
#define EFT__GGUF_DEFAULT_ALIGNMENT 32

typedef enum eft__gguf_type {
    EFT__GGUF_UINT8 = 0,
    EFT__GGUF_INT8 = 1,
    EFT__GGUF_UINT16 = 2,
    EFT__GGUF_INT16 = 3,
    EFT__GGUF_UINT32 = 4,
    EFT__GGUF_INT32 = 5,
    EFT__GGUF_FLOAT32 = 6,
    EFT__GGUF_BOOL = 7,
    EFT__GGUF_STRING = 8,
    EFT__GGUF_ARRAY = 9,
    EFT__GGUF_UINT64 = 10,
    EFT__GGUF_INT64 = 11,
    EFT__GGUF_FLOAT64 = 12,
} eft__gguf_type;

/* Points into the mapping; NOT NUL-terminated. */
typedef struct eft__gguf_str {
    const char *ptr;
    uint64_t len;
} eft__gguf_str;

/* An array value. Elements of fixed size sit packed at data; for strings and nested arrays,
 * which vary in size, the reader builds a table at open time so that element i is O(1). */
typedef struct eft__gguf_arr {
    eft__gguf_type type; /* element type */
    uint64_t n;          /* element count */
    const uint8_t *data; /* first element in the mapping */
    const uint64_t *offs;              /* STRING: byte offset of element i (its length prefix) from data */
    const struct eft__gguf_arr *sub;   /* ARRAY: the n nested arrays */
} eft__gguf_arr;

typedef struct eft__gguf_kv {
    eft__gguf_str key;
    eft__gguf_type type;
    union {
        uint64_t u; /* UINT8, UINT16, UINT32, UINT64 */
        int64_t i;  /* INT8, INT16, INT32, INT64 */
        double f;   /* FLOAT32, FLOAT64 */
        bool b;     /* BOOL */
        eft__gguf_str s;
        eft__gguf_arr arr;
    } v;
} eft__gguf_kv;

typedef struct eft__gguf eft__gguf;

/* Maps path read-only and validates it; on failure *out is NULL and err names the file, the key
 * or tensor, and the numbers. */
eft_status eft__gguf_open(const char *path, eft__gguf **out, eft__error *err);
/* The same over a buffer the caller keeps alive until close; label names it in messages. */
eft_status eft__gguf_open_memory(const uint8_t *data, uint64_t size, const char *label,
                                 eft__gguf **out, eft__error *err);
void eft__gguf_close(eft__gguf *g); /* NULL is a no-op */

uint32_t eft__gguf_version(const eft__gguf *g);

/* Key/values in file order; borrowed until close. */
size_t eft__gguf_kv_count(const eft__gguf *g);
const eft__gguf_kv *eft__gguf_kv_at(const eft__gguf *g, size_t i);
const eft__gguf_kv *eft__gguf_find(const eft__gguf *g, const char *key); /* hash lookup; NULL if absent */

/* Typed getters with coercion between integer widths (range-checked); false when absent or of
 * another kind. */
bool eft__gguf_get_u64(const eft__gguf *g, const char *key, uint64_t *out);
bool eft__gguf_get_i64(const eft__gguf *g, const char *key, int64_t *out);
bool eft__gguf_get_f64(const eft__gguf *g, const char *key, double *out); /* also accepts ints */
bool eft__gguf_get_bool(const eft__gguf *g, const char *key, bool *out);
bool eft__gguf_get_str(const eft__gguf *g, const char *key, eft__gguf_str *out);

/* Arrays. Element getters are false when kv is not an array of a fitting type or i >= length. */
uint64_t eft__gguf_arr_len(const eft__gguf_kv *kv); /* 0 when not an array */
eft__gguf_type eft__gguf_arr_type(const eft__gguf_kv *kv); /* element type; kv->type if not an array */
bool eft__gguf_arr_str(const eft__gguf *g, const eft__gguf_kv *kv, uint64_t i, eft__gguf_str *out);
bool eft__gguf_arr_i64(const eft__gguf_kv *kv, uint64_t i, int64_t *out); /* integer arrays and BOOL */
bool eft__gguf_arr_f64(const eft__gguf_kv *kv, uint64_t i, double *out);  /* float and integer arrays */
/* Element i of an array of arrays, as a kv with an empty key (so the getters above apply to it). */
bool eft__gguf_arr_sub(const eft__gguf_kv *kv, uint64_t i, eft__gguf_kv *out);

/* Tensors in the order of the file's tensor infos. Shapes are outermost-first (GGUF's ne
 * reversed); names are NUL-terminated copies owned by the handle. */
size_t eft__gguf_tensor_count(const eft__gguf *g);
const eft__tensor_view *eft__gguf_tensor(const eft__gguf *g, size_t i);
const eft__tensor_view *eft__gguf_find_tensor(const eft__gguf *g, const char *name);
/* Byte offset of the data section in the file, and the alignment in force. */
uint64_t eft__gguf_data_offset(const eft__gguf *g);
uint32_t eft__gguf_alignment(const eft__gguf *g);

/* "UINT8", ..., "FLOAT64"; "?" for a value out of range. */
const char *eft__gguf_type_name(eft__gguf_type t);

#endif /* EFT_FORMATS_GGUF_H */
