/*
 * gguf.c — reads GGUF v2/v3 files: maps the file, walks the header once with a bounds-checked
 * cursor, and keeps key/values and tensor views that point into the mapping. Every count read
 * from the file is checked against the bytes that remain before anything is allocated for it, so
 * a hostile header cannot make the reader allocate more than a small multiple of the file's size.
 * String arrays get a table of element offsets at open time, which makes element lookup O(1).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strmap.h"
#include "formats/gguf.h"

/* The header is decoded with memcpy into host integers, which is only right on little-endian
 * hosts; tensor data is used in place, which needs the same. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the GGUF reader assumes a little-endian host");

/* Smallest possible encodings, used to refuse counts that cannot fit in what remains. */
#define MIN_KV_BYTES 13     /* key length (8) + value type (4) + a one-byte value */
#define MIN_TENSOR_BYTES 32 /* name length (8) + n_dims (4) + one ne (8) + type (4) + offset (8) */
#define MIN_ARRAY_BYTES 12  /* element type (4) + count (8) */
#define NAME_SHOWN 200      /* at most this many bytes of a key or name go into a message */

struct eft__gguf {
    eft__mapped_file file; /* empty for open_memory */
    const uint8_t *data;
    uint64_t size;
    char *label;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    eft__gguf_kv *kvs;
    size_t n_kv;
    eft__strmap kv_index; /* key -> index into kvs */
    eft__tensor_view *tensors;
    size_t n_tensors;
    char *names; /* all tensor names, NUL-terminated, back to back */
    eft__strmap tensor_index;
    void **allocs; /* offset tables and nested-array tables, freed at close */
    size_t n_allocs, cap_allocs;
};

/* ---------------------------------------------------------------------------------------------
 * Type tables
 * ------------------------------------------------------------------------------------------- */

static const char *const k_value_type_names[] = {
    "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
    "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64",
};

const char *eft__gguf_type_name(eft__gguf_type t) {
    return (unsigned)t <= EFT__GGUF_FLOAT64 ? k_value_type_names[t] : "?";
}

static bool value_type_known(uint32_t t) { return t <= EFT__GGUF_FLOAT64; }

/* Bytes of one scalar of type t; 0 for STRING and ARRAY, whose size varies. */
static uint64_t scalar_size(eft__gguf_type t) {
    static const uint8_t k[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return k[t];
}

static uint64_t min_value_size(eft__gguf_type t) {
    return t == EFT__GGUF_STRING ? 8 : t == EFT__GGUF_ARRAY ? MIN_ARRAY_BYTES : scalar_size(t);
}

static bool is_unsigned(eft__gguf_type t) {
    return t == EFT__GGUF_UINT8 || t == EFT__GGUF_UINT16 || t == EFT__GGUF_UINT32 || t == EFT__GGUF_UINT64;
}
static bool is_signed(eft__gguf_type t) {
    return t == EFT__GGUF_INT8 || t == EFT__GGUF_INT16 || t == EFT__GGUF_INT32 || t == EFT__GGUF_INT64;
}
static bool is_float(eft__gguf_type t) { return t == EFT__GGUF_FLOAT32 || t == EFT__GGUF_FLOAT64; }

/* ggml's tensor type ids. Ids eft reads map to an eft_dtype; the others known to ggml have a name
 * (so the message can say what the file uses); gaps are ids ggml has removed or never had. */
enum { GT_UNKNOWN = 0, GT_OK, GT_UNSUPPORTED };
static const struct {
    const char *name;
    int kind;
    eft_dtype dtype;
} k_ggml_types[] = {
    [0] = {"F32", GT_OK, EFT_DTYPE_F32},         [1] = {"F16", GT_OK, EFT_DTYPE_F16},
    [2] = {"Q4_0", GT_OK, EFT_DTYPE_Q4_0},       [3] = {"Q4_1", GT_OK, EFT_DTYPE_Q4_1},
    [6] = {"Q5_0", GT_OK, EFT_DTYPE_Q5_0},       [7] = {"Q5_1", GT_OK, EFT_DTYPE_Q5_1},
    [8] = {"Q8_0", GT_OK, EFT_DTYPE_Q8_0},       [9] = {"Q8_1", GT_UNSUPPORTED, 0},
    [10] = {"Q2_K", GT_OK, EFT_DTYPE_Q2_K},      [11] = {"Q3_K", GT_OK, EFT_DTYPE_Q3_K},
    [12] = {"Q4_K", GT_OK, EFT_DTYPE_Q4_K},      [13] = {"Q5_K", GT_OK, EFT_DTYPE_Q5_K},
    [14] = {"Q6_K", GT_OK, EFT_DTYPE_Q6_K},      [15] = {"Q8_K", GT_OK, EFT_DTYPE_Q8_K},
    [16] = {"IQ2_XXS", GT_UNSUPPORTED, 0},       [17] = {"IQ2_XS", GT_UNSUPPORTED, 0},
    [18] = {"IQ3_XXS", GT_UNSUPPORTED, 0},       [19] = {"IQ1_S", GT_UNSUPPORTED, 0},
    [20] = {"IQ4_NL", GT_UNSUPPORTED, 0},        [21] = {"IQ3_S", GT_UNSUPPORTED, 0},
    [22] = {"IQ2_S", GT_UNSUPPORTED, 0},         [23] = {"IQ4_XS", GT_UNSUPPORTED, 0},
    [24] = {"I8", GT_OK, EFT_DTYPE_I8},          [25] = {"I16", GT_OK, EFT_DTYPE_I16},
    [26] = {"I32", GT_OK, EFT_DTYPE_I32},        [27] = {"I64", GT_OK, EFT_DTYPE_I64},
    [28] = {"F64", GT_OK, EFT_DTYPE_F64},        [29] = {"IQ1_M", GT_UNSUPPORTED, 0},
    [30] = {"BF16", GT_OK, EFT_DTYPE_BF16},      [34] = {"TQ1_0", GT_UNSUPPORTED, 0},
    [35] = {"TQ2_0", GT_UNSUPPORTED, 0},         [39] = {"MXFP4", GT_UNSUPPORTED, 0},
    [40] = {"NVFP4", GT_UNSUPPORTED, 0},         [41] = {"Q1_0", GT_UNSUPPORTED, 0},
};
#define N_GGML_TYPES (sizeof k_ggml_types / sizeof k_ggml_types[0])

/* ---------------------------------------------------------------------------------------------
 * The cursor: every read is checked against the end of the buffer. `where` says which key or
 * tensor is being read, so a truncation message can name it.
 * ------------------------------------------------------------------------------------------- */

typedef struct parser {
    eft__gguf *g;
    eft__error *err;
    uint64_t pos;
    char where[NAME_SHOWN + 64];
} parser;

static int shown(uint64_t len) { return len > NAME_SHOWN ? NAME_SHOWN : (int)len; }

static uint64_t remaining(const parser *p) { return p->g->size - p->pos; }

static eft_status rd(parser *p, void *out, uint64_t n, const char *what) {
    if (remaining(p) < n) {
        return eft__fail(p->err, EFT_ERR_FORMAT,
                         "%s: truncated: the %s of %s needs %llu bytes at offset %llu but the file has "
                         "%llu bytes",
                         p->g->label, what, p->where, (unsigned long long)n, (unsigned long long)p->pos,
                         (unsigned long long)p->g->size);
    }
    memcpy(out, p->g->data + p->pos, (size_t)n);
    p->pos += n;
    return EFT_OK;
}

static eft_status rd_u32(parser *p, uint32_t *v, const char *what) { return rd(p, v, 4, what); }
static eft_status rd_u64(parser *p, uint64_t *v, const char *what) { return rd(p, v, 8, what); }

static eft_status rd_str(parser *p, eft__gguf_str *s, const char *what) {
    uint64_t len = 0, at = p->pos;
    eft_status st = rd_u64(p, &len, what);
    if (st) return st;
    if (len > remaining(p)) {
        return eft__fail(p->err, EFT_ERR_FORMAT,
                         "%s: the %s of %s (at offset %llu) has length %llu, beyond the end of the file "
                         "(%llu bytes remain)",
                         p->g->label, what, p->where, (unsigned long long)at, (unsigned long long)len,
                         (unsigned long long)remaining(p));
    }
    s->ptr = (const char *)p->g->data + p->pos;
    s->len = len;
    p->pos += len;
    return EFT_OK;
}

static eft_status oom(parser *p) {
    return eft__fail(p->err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory while reading %s", p->g->label,
                     p->where);
}

/* Takes ownership of a table the handle frees at close; NULL (and ptr freed) on out of memory. */
static void *keep(parser *p, void *ptr) {
    eft__gguf *g = p->g;
    if (!ptr) return NULL;
    if (g->n_allocs == g->cap_allocs) {
        size_t ncap = g->cap_allocs ? 2 * g->cap_allocs : 16;
        void **na = eft__realloc(g->allocs, ncap * sizeof *na);
        if (!na) {
            eft__free(ptr);
            return NULL;
        }
        g->allocs = na;
        g->cap_allocs = ncap;
    }
    g->allocs[g->n_allocs++] = ptr;
    return ptr;
}

/* Refuses a count of items of at least min_size bytes each that cannot fit in what remains. */
static eft_status check_count(parser *p, uint64_t count, uint64_t min_size, const char *what) {
    if (count > remaining(p) / min_size) {
        return eft__fail(p->err, EFT_ERR_FORMAT,
                         "%s: %s %llu cannot fit in the %llu bytes that remain at offset %llu (each "
                         "takes at least %llu bytes)",
                         p->g->label, what, (unsigned long long)count, (unsigned long long)remaining(p),
                         (unsigned long long)p->pos, (unsigned long long)min_size);
    }
    return EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Values
 * ------------------------------------------------------------------------------------------- */

/* Decodes one scalar of type t (not STRING or ARRAY) at q. */
static void decode_scalar(eft__gguf_type t, const uint8_t *q, eft__gguf_kv *kv) {
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    float f32;
    switch (t) {
    case EFT__GGUF_UINT8: memcpy(&u8, q, 1); kv->v.u = u8; break;
    case EFT__GGUF_INT8: memcpy(&u8, q, 1); kv->v.i = (int8_t)u8; break;
    case EFT__GGUF_UINT16: memcpy(&u16, q, 2); kv->v.u = u16; break;
    case EFT__GGUF_INT16: memcpy(&u16, q, 2); kv->v.i = (int16_t)u16; break;
    case EFT__GGUF_UINT32: memcpy(&u32, q, 4); kv->v.u = u32; break;
    case EFT__GGUF_INT32: memcpy(&u32, q, 4); kv->v.i = (int32_t)u32; break;
    case EFT__GGUF_UINT64: memcpy(&u64, q, 8); kv->v.u = u64; break;
    case EFT__GGUF_INT64: memcpy(&u64, q, 8); kv->v.i = (int64_t)u64; break;
    case EFT__GGUF_FLOAT32: memcpy(&f32, q, 4); kv->v.f = f32; break;
    case EFT__GGUF_FLOAT64: memcpy(&kv->v.f, q, 8); break;
    case EFT__GGUF_BOOL: kv->v.b = q[0] != 0; break;
    default: break;
    }
}

static eft_status parse_array(parser *p, eft__gguf_arr *a, int depth) {
    uint32_t type = 0;
    eft_status st = rd_u32(p, &type, "array element type");
    if (st) return st;
    if (!value_type_known(type)) {
        return eft__fail(p->err, EFT_ERR_FORMAT, "%s: %s is an array of unknown element type %u",
                         p->g->label, p->where, type);
    }
    a->type = (eft__gguf_type)type;
    if ((st = rd_u64(p, &a->n, "array length"))) return st;
    if (a->n > remaining(p) / min_value_size(a->type)) {
        return eft__fail(p->err, EFT_ERR_FORMAT,
                         "%s: %s: array of %llu %s elements cannot fit in the %llu bytes that remain at "
                         "offset %llu",
                         p->g->label, p->where, (unsigned long long)a->n, eft__gguf_type_name(a->type),
                         (unsigned long long)remaining(p), (unsigned long long)p->pos);
    }
    a->data = p->g->data + p->pos;
    if (a->type == EFT__GGUF_STRING) {
        uint64_t *offs = a->n ? keep(p, eft__malloc_array((size_t)a->n, sizeof *offs)) : NULL;
        if (a->n && !offs) return oom(p);
        for (uint64_t i = 0; i < a->n; i++) {
            offs[i] = (uint64_t)(p->g->data + p->pos - a->data);
            uint64_t len = 0;
            if ((st = rd_u64(p, &len, "string length"))) return st;
            if (len > remaining(p)) {
                return eft__fail(p->err, EFT_ERR_FORMAT,
                                 "%s: string %llu of the array in %s has length %llu, beyond the end "
                                 "of the file (%llu bytes remain at offset %llu)",
                                 p->g->label, (unsigned long long)i, p->where, (unsigned long long)len,
                                 (unsigned long long)remaining(p), (unsigned long long)p->pos);
            }
            p->pos += len;
        }
        a->offs = offs;
    } else if (a->type == EFT__GGUF_ARRAY) {
        if (depth >= EFT__GGUF_MAX_DEPTH) {
            return eft__fail(p->err, EFT_ERR_FORMAT, "%s: %s has arrays nested deeper than %d levels",
                             p->g->label, p->where, EFT__GGUF_MAX_DEPTH);
        }
        eft__gguf_arr *sub = a->n ? keep(p, eft__calloc((size_t)a->n, sizeof *sub)) : NULL;
        if (a->n && !sub) return oom(p);
        for (uint64_t i = 0; i < a->n; i++) {
            if ((st = parse_array(p, &sub[i], depth + 1))) return st;
        }
        a->sub = sub;
    } else {
        p->pos += a->n * scalar_size(a->type); /* fits: check_count bounded it by what remains */
    }
    return EFT_OK;
}

static eft_status parse_value(parser *p, eft__gguf_kv *kv) {
    if (kv->type == EFT__GGUF_STRING) return rd_str(p, &kv->v.s, "string value");
    if (kv->type == EFT__GGUF_ARRAY) return parse_array(p, &kv->v.arr, 1);
    uint8_t buf[8];
    eft_status st = rd(p, buf, scalar_size(kv->type), "value");
    if (st) return st;
    decode_scalar(kv->type, buf, kv);
    return EFT_OK;
}

static eft_status parse_kvs(parser *p, uint64_t n_kv) {
    eft__gguf *g = p->g;
    g->kvs = n_kv ? eft__calloc((size_t)n_kv, sizeof *g->kvs) : NULL;
    if (n_kv && !g->kvs) return oom(p);
    for (uint64_t i = 0; i < n_kv; i++) {
        eft__gguf_kv *kv = &g->kvs[i];
        snprintf(p->where, sizeof p->where, "key/value #%llu", (unsigned long long)i);
        eft_status st = rd_str(p, &kv->key, "key");
        if (st) return st;
        snprintf(p->where, sizeof p->where, "key '%.*s'", shown(kv->key.len), kv->key.ptr);
        uint32_t type = 0;
        if ((st = rd_u32(p, &type, "value type"))) return st;
        if (!value_type_known(type)) {
            return eft__fail(p->err, EFT_ERR_FORMAT, "%s: %s has unknown value type %u (valid: 0 to 12)",
                             g->label, p->where, type);
        }
        kv->type = (eft__gguf_type)type;
        if ((st = parse_value(p, kv))) return st;
        if (kv->key.len > UINT32_MAX) {
            return eft__fail(p->err, EFT_ERR_LIMIT, "%s: key/value #%llu has a key of %llu bytes", g->label,
                             (unsigned long long)i, (unsigned long long)kv->key.len);
        }
        uint64_t prev;
        if (eft__strmap_get(&g->kv_index, kv->key.ptr, (size_t)kv->key.len, &prev)) {
            return eft__fail(p->err, EFT_ERR_FORMAT, "%s: duplicate %s (key/values #%llu and #%llu)",
                             g->label, p->where, (unsigned long long)prev, (unsigned long long)i);
        }
        if (eft__strmap_put(&g->kv_index, kv->key.ptr, (size_t)kv->key.len, i)) return oom(p);
        g->n_kv++;
    }
    return EFT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Tensors
 * ------------------------------------------------------------------------------------------- */

/* Reads one tensor info and checks what it says about itself (type, shape, size, alignment);
 * where its bytes are is checked once the data section's offset is known. */
static eft_status parse_tensor_info(parser *p, size_t i, eft__gguf_str *name, uint64_t *offset) {
    eft__gguf *g = p->g;
    eft__tensor_view *t = &g->tensors[i];
    snprintf(p->where, sizeof p->where, "tensor info #%zu", i);
    eft_status st = rd_str(p, name, "name");
    if (st) return st;
    snprintf(p->where, sizeof p->where, "tensor '%.*s'", shown(name->len), name->ptr);
    const char *w = p->where;
    if (memchr(name->ptr, 0, (size_t)name->len)) {
        return eft__fail(p->err, EFT_ERR_FORMAT, "%s: the name of tensor info #%zu contains a NUL byte",
                         g->label, i);
    }
    uint32_t n_dims = 0, type = 0;
    if ((st = rd_u32(p, &n_dims, "n_dims"))) return st;
    if (n_dims < 1 || n_dims > EFT__GGUF_MAX_DIMS) {
        return eft__fail(p->err, EFT_ERR_FORMAT, "%s: %s has %u dimensions; GGUF allows 1 to %d", g->label,
                         w, n_dims, EFT__GGUF_MAX_DIMS);
    }
    uint64_t ne[EFT__GGUF_MAX_DIMS];
    for (uint32_t d = 0; d < n_dims; d++) {
        if ((st = rd_u64(p, &ne[d], "dimensions"))) return st;
    }
    if ((st = rd_u32(p, &type, "type"))) return st;
    if ((st = rd_u64(p, offset, "data offset"))) return st;

    if (type >= N_GGML_TYPES || k_ggml_types[type].kind == GT_UNKNOWN) {
        return eft__fail(p->err, EFT_ERR_FORMAT, "%s: %s has unknown ggml type id %u", g->label, w, type);
    }
    if (k_ggml_types[type].kind == GT_UNSUPPORTED) {
        return eft__fail(p->err, EFT_ERR_UNSUPPORTED, "%s: %s has type %s (ggml type %u), which eft does not support",
                         g->label, w, k_ggml_types[type].name, type);
    }
    t->dtype = k_ggml_types[type].dtype;
    t->ndim = (int)n_dims;
    uint64_t n = 1;
    bool overflow = false;
    for (uint32_t d = 0; d < n_dims; d++) {
        overflow |= ne[d] > INT64_MAX || eft__mul_overflow_u64(n, ne[d], &n);
        t->shape[n_dims - 1 - d] = (int64_t)ne[d]; /* GGUF lists the innermost dimension first */
    }
    if (overflow || n > INT64_MAX) {
        char dims[128];
        int k = 0;
        for (uint32_t d = 0; d < n_dims; d++) {
            k += snprintf(dims + k, sizeof dims - (size_t)k, "%s%llu", d ? ", " : "", (unsigned long long)ne[d]);
        }
        return eft__fail(p->err, EFT_ERR_FORMAT, "%s: %s has too many elements: ne [%s] overflows 64 bits",
                         g->label, w, dims);
    }
    t->n_elems = n;
    const eft__dtype_traits *tr = eft__dtype_traits_of(t->dtype);
    if (ne[0] % tr->block_elems != 0) {
        return eft__fail(p->err, EFT_ERR_FORMAT,
                         "%s: %s of type %s has rows of %llu elements, not a multiple of the block size %u",
                         g->label, w, tr->name, (unsigned long long)ne[0], tr->block_elems);
    }
    if (!eft__dtype_nbytes(t->dtype, n, &t->nbytes)) {
        return eft__fail(p->err, EFT_ERR_FORMAT, "%s: %s: %llu elements of type %s overflow 64 bits of bytes",
                         g->label, w, (unsigned long long)n, tr->name);
    }
    if (*offset % g->alignment != 0) {
        return eft__fail(p->err, EFT_ERR_FORMAT, "%s: %s has data offset %llu, not a multiple of the alignment %u",
                         g->label, w, (unsigned long long)*offset, g->alignment);
    }
    return EFT_OK;
}

typedef struct span {
    uint64_t begin, end;
    size_t index;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Places every tensor in the data section, refuses ranges beyond the file and overlaps, and
 * copies the names into one block with an index. */
static eft_status place_tensors(parser *p, const eft__gguf_str *names, const uint64_t *offsets) {
    eft__gguf *g = p->g;
    size_t n = g->n_tensors;
    uint64_t avail = g->data_offset <= g->size ? g->size - g->data_offset : 0;
    uint64_t names_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        eft__tensor_view *t = &g->tensors[i];
        uint64_t rel_end, end;
        if (eft__add_overflow_u64(offsets[i], t->nbytes, &rel_end) ||
            eft__add_overflow_u64(g->data_offset, rel_end, &end)) {
            return eft__fail(p->err, EFT_ERR_FORMAT,
                             "%s: tensor '%.*s' (%llu bytes at data offset %llu) ends beyond 2^64 bytes",
                             g->label, shown(names[i].len), names[i].ptr, (unsigned long long)t->nbytes,
                             (unsigned long long)offsets[i]);
        }
        if (rel_end > avail) {
            return eft__fail(p->err, EFT_ERR_FORMAT,
                             "%s: tensor '%.*s' (%llu bytes at data offset %llu) ends at byte %llu but the "
                             "file has %llu bytes",
                             g->label, shown(names[i].len), names[i].ptr, (unsigned long long)t->nbytes,
                             (unsigned long long)offsets[i], (unsigned long long)end,
                             (unsigned long long)g->size);
        }
        t->data = t->nbytes ? g->data + g->data_offset + offsets[i] : NULL;
        names_bytes += names[i].len + 1; /* bounded by the file size */
    }

    /* Overlaps: sort the non-empty ranges by start; each must begin at or after the previous end. */
    span *spans = n ? eft__malloc_array(n, sizeof *spans) : NULL;
    if (n && !spans) return oom(p);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (g->tensors[i].nbytes) spans[m++] = (span){offsets[i], offsets[i] + g->tensors[i].nbytes, i};
    }
    if (m > 1) qsort(spans, m, sizeof *spans, span_cmp);
    for (size_t k = 1; k < m; k++) {
        if (spans[k].begin < spans[k - 1].end) {
            const eft__gguf_str *a = &names[spans[k - 1].index], *b = &names[spans[k].index];
            eft_status st = eft__fail(
                p->err, EFT_ERR_FORMAT,
                "%s: tensors '%.*s' (data bytes %llu to %llu) and '%.*s' (data bytes %llu to %llu) overlap",
                g->label, shown(a->len), a->ptr, (unsigned long long)spans[k - 1].begin,
                (unsigned long long)spans[k - 1].end, shown(b->len), b->ptr,
                (unsigned long long)spans[k].begin, (unsigned long long)spans[k].end);
            eft__free(spans);
            return st;
        }
    }
    eft__free(spans);

    g->names = eft__malloc(names_bytes ? (size_t)names_bytes : 1);
    if (!g->names) return oom(p);
    char *q = g->names;
    for (size_t i = 0; i < n; i++) {
        memcpy(q, names[i].ptr, (size_t)names[i].len);
        q[names[i].len] = 0;
        g->tensors[i].name = q;
        uint64_t prev;
        if (eft__strmap_get(&g->tensor_index, q, (size_t)names[i].len, &prev)) {
            return eft__fail(p->err, EFT_ERR_FORMAT, "%s: duplicate tensor name '%.*s' (tensor infos #%llu and #%zu)",
                             g->label, shown(names[i].len), q, (unsigned long long)prev, i);
        }
        if (names[i].len > UINT32_MAX || eft__strmap_put(&g->tensor_index, q, (size_t)names[i].len, i)) {
            return oom(p);
        }
        q += names[i].len + 1;
    }
    return EFT_OK;
}

static eft_status parse_tensors(parser *p, uint64_t n_tensors) {
    eft__gguf *g = p->g;
    size_t n = (size_t)n_tensors;
    g->tensors = n ? eft__calloc(n, sizeof *g->tensors) : NULL;
    eft__gguf_str *names = n ? eft__calloc(n, sizeof *names) : NULL;
    uint64_t *offsets = n ? eft__calloc(n, sizeof *offsets) : NULL;
    eft_status st = EFT_OK;
    if (n && (!g->tensors || !names || !offsets)) {
        st = oom(p);
        goto done;
    }
    g->n_tensors = n;
    for (size_t i = 0; i < n && !st; i++) st = parse_tensor_info(p, i, &names[i], &offsets[i]);
    if (st) goto done;
    /* The data section starts at the next multiple of the alignment. */
    uint64_t pad = (g->alignment - p->pos % g->alignment) % g->alignment;
    if (eft__add_overflow_u64(p->pos, pad, &g->data_offset)) {
        st = eft__fail(p->err, EFT_ERR_FORMAT, "%s: data section offset overflows", g->label);
        goto done;
    }
    st = place_tensors(p, names, offsets);
done:
    eft__free(names);
    eft__free(offsets);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Open and close
 * ------------------------------------------------------------------------------------------- */

static eft_status parse_header(parser *p) {
    eft__gguf *g = p->g;
    snprintf(p->where, sizeof p->where, "the header");
    uint8_t magic[4];
    if (g->size < 4 || memcmp(g->data, "GGUF", 4) != 0) {
        if (g->size < 4) {
            return eft__fail(p->err, EFT_ERR_FORMAT, "%s: not a GGUF file: it has only %llu bytes",
                             g->label, (unsigned long long)g->size);
        }
        memcpy(magic, g->data, 4);
        return eft__fail(p->err, EFT_ERR_FORMAT,
                         "%s: not a GGUF file: it starts with bytes %02x %02x %02x %02x, not \"GGUF\"",
                         g->label, magic[0], magic[1], magic[2], magic[3]);
    }
    p->pos = 4;
    uint32_t version = 0;
    eft_status st = rd_u32(p, &version, "version");
    if (st) return st;
    if (version != 2 && version != 3) {
        uint32_t swapped = __builtin_bswap32(version);
        if ((version & 0xffff) == 0 && swapped >= 1 && swapped <= 3) {
            return eft__fail(p->err, EFT_ERR_UNSUPPORTED,
                             "%s: byte-swapped (big-endian) GGUF file (version field 0x%08x); only "
                             "little-endian files are supported",
                             g->label, version);
        }
        return eft__fail(p->err, EFT_ERR_UNSUPPORTED,
                         "%s: GGUF version %u is not supported (only versions 2 and 3)", g->label, version);
    }
    g->version = version;
    uint64_t n_tensors = 0, n_kv = 0;
    if ((st = rd_u64(p, &n_tensors, "tensor_count")) || (st = rd_u64(p, &n_kv, "kv_count"))) return st;
    if ((st = check_count(p, n_kv, MIN_KV_BYTES, "kv_count"))) return st;
    if ((st = check_count(p, n_tensors, MIN_TENSOR_BYTES, "tensor_count"))) return st;
    if ((st = parse_kvs(p, n_kv))) return st;

    g->alignment = EFT__GGUF_DEFAULT_ALIGNMENT;
    const eft__gguf_kv *al = eft__gguf_find(g, "general.alignment");
    if (al) {
        if (al->type != EFT__GGUF_UINT32 || al->v.u == 0 || (al->v.u & (al->v.u - 1)) != 0) {
            return eft__fail(p->err, EFT_ERR_FORMAT,
                             "%s: general.alignment must be a UINT32 power of two, found %s %llu", g->label,
                             eft__gguf_type_name(al->type),
                             is_unsigned(al->type) || is_signed(al->type) ? (unsigned long long)al->v.u : 0ull);
        }
        g->alignment = (uint32_t)al->v.u;
    }
    /* Checked again now that the key/values have used up part of the file. */
    if ((st = check_count(p, n_tensors, MIN_TENSOR_BYTES, "tensor_count"))) return st;
    return parse_tensors(p, n_tensors);
}

eft_status eft__gguf_open_memory(const uint8_t *data, uint64_t size, const char *label, eft__gguf **out,
                                 eft__error *err) {
    *out = NULL;
    eft__gguf *g = eft__calloc(1, sizeof *g);
    if (!g || !(g->label = eft__strdup(label ? label : "<memory>"))) {
        eft__free(g);
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", label ? label : "<memory>");
    }
    g->data = data;
    g->size = data ? size : 0;
    parser p = {.g = g, .err = err};
    eft_status st = parse_header(&p);
    if (st) {
        eft__gguf_close(g);
        return st;
    }
    *out = g;
    return EFT_OK;
}

eft_status eft__gguf_open(const char *path, eft__gguf **out, eft__error *err) {
    *out = NULL;
    eft__mapped_file f;
    eft_status st = eft__file_map(&f, path, err);
    if (st) return st;
    eft__gguf *g;
    if ((st = eft__gguf_open_memory(f.data, f.size, path, &g, err))) {
        eft__file_unmap(&f);
        return st;
    }
    g->file = f;
    *out = g;
    return EFT_OK;
}

void eft__gguf_close(eft__gguf *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n_allocs; i++) eft__free(g->allocs[i]);
    eft__free(g->allocs);
    eft__strmap_free(&g->kv_index);
    eft__strmap_free(&g->tensor_index);
    eft__free(g->kvs);
    eft__free(g->tensors);
    eft__free(g->names);
    eft__free(g->label);
    eft__file_unmap(&g->file);
    eft__free(g);
}

/* ---------------------------------------------------------------------------------------------
 * Accessors
 * ------------------------------------------------------------------------------------------- */

uint32_t eft__gguf_version(const eft__gguf *g) { return g->version; }
size_t eft__gguf_kv_count(const eft__gguf *g) { return g->n_kv; }
const eft__gguf_kv *eft__gguf_kv_at(const eft__gguf *g, size_t i) { return i < g->n_kv ? &g->kvs[i] : NULL; }

const eft__gguf_kv *eft__gguf_find(const eft__gguf *g, const char *key) {
    uint64_t i;
    return eft__strmap_get(&g->kv_index, key, strlen(key), &i) ? &g->kvs[i] : NULL;
}

/* The integer held by a value of integer type t (u for unsigned types, i for signed ones), as an
 * int64 (*oi) or a uint64 (*ou); false when t is not an integer type or the value is out of range. */
static bool kv_int(eft__gguf_type t, uint64_t u, int64_t i, bool want_signed, uint64_t *ou, int64_t *oi) {
    if (is_unsigned(t)) {
        if (want_signed) {
            if (u > INT64_MAX) return false;
            *oi = (int64_t)u;
        } else {
            *ou = u;
        }
        return true;
    }
    if (is_signed(t)) {
        if (want_signed) {
            *oi = i;
        } else {
            if (i < 0) return false;
            *ou = (uint64_t)i;
        }
        return true;
    }
    return false;
}

bool eft__gguf_get_u64(const eft__gguf *g, const char *key, uint64_t *out) {
    const eft__gguf_kv *kv = eft__gguf_find(g, key);
    int64_t unused;
    return kv && kv_int(kv->type, kv->v.u, kv->v.i, false, out, &unused);
}

bool eft__gguf_get_i64(const eft__gguf *g, const char *key, int64_t *out) {
    const eft__gguf_kv *kv = eft__gguf_find(g, key);
    uint64_t unused;
    return kv && kv_int(kv->type, kv->v.u, kv->v.i, true, &unused, out);
}

bool eft__gguf_get_f64(const eft__gguf *g, const char *key, double *out) {
    const eft__gguf_kv *kv = eft__gguf_find(g, key);
    if (!kv) return false;
    if (is_float(kv->type)) *out = kv->v.f;
    else if (is_unsigned(kv->type)) *out = (double)kv->v.u;
    else if (is_signed(kv->type)) *out = (double)kv->v.i;
    else return false;
    return true;
}

bool eft__gguf_get_bool(const eft__gguf *g, const char *key, bool *out) {
    const eft__gguf_kv *kv = eft__gguf_find(g, key);
    if (!kv || kv->type != EFT__GGUF_BOOL) return false;
    *out = kv->v.b;
    return true;
}

bool eft__gguf_get_str(const eft__gguf *g, const char *key, eft__gguf_str *out) {
    const eft__gguf_kv *kv = eft__gguf_find(g, key);
    if (!kv || kv->type != EFT__GGUF_STRING) return false;
    *out = kv->v.s;
    return true;
}

uint64_t eft__gguf_arr_len(const eft__gguf_kv *kv) { return kv && kv->type == EFT__GGUF_ARRAY ? kv->v.arr.n : 0; }

eft__gguf_type eft__gguf_arr_type(const eft__gguf_kv *kv) {
    return kv->type == EFT__GGUF_ARRAY ? kv->v.arr.type : kv->type;
}

bool eft__gguf_arr_str(const eft__gguf *g, const eft__gguf_kv *kv, uint64_t i, eft__gguf_str *out) {
    (void)g; /* offsets are relative to the array; the mapping they index lives as long as g */
    if (!kv || kv->type != EFT__GGUF_ARRAY || kv->v.arr.type != EFT__GGUF_STRING || i >= kv->v.arr.n) return false;
    const uint8_t *q = kv->v.arr.data + kv->v.arr.offs[i];
    memcpy(&out->len, q, 8);
    out->ptr = (const char *)q + 8;
    return true;
}

/* Element i of a fixed-size array, decoded as a kv of the element type. */
static bool arr_elem(const eft__gguf_kv *kv, uint64_t i, eft__gguf_kv *e) {
    if (!kv || kv->type != EFT__GGUF_ARRAY || i >= kv->v.arr.n) return false;
    eft__gguf_type t = kv->v.arr.type;
    if (t == EFT__GGUF_STRING || t == EFT__GGUF_ARRAY) return false;
    e->type = t;
    decode_scalar(t, kv->v.arr.data + i * scalar_size(t), e);
    return true;
}

bool eft__gguf_arr_i64(const eft__gguf_kv *kv, uint64_t i, int64_t *out) {
    eft__gguf_kv e;
    uint64_t unused;
    if (!arr_elem(kv, i, &e)) return false;
    if (e.type == EFT__GGUF_BOOL) {
        *out = e.v.b;
        return true;
    }
    return kv_int(e.type, e.v.u, e.v.i, true, &unused, out);
}

bool eft__gguf_arr_f64(const eft__gguf_kv *kv, uint64_t i, double *out) {
    eft__gguf_kv e;
    if (!arr_elem(kv, i, &e)) return false;
    if (is_float(e.type)) *out = e.v.f;
    else if (is_unsigned(e.type)) *out = (double)e.v.u;
    else if (is_signed(e.type)) *out = (double)e.v.i;
    else return false;
    return true;
}

bool eft__gguf_arr_sub(const eft__gguf_kv *kv, uint64_t i, eft__gguf_kv *out) {
    if (!kv || kv->type != EFT__GGUF_ARRAY || kv->v.arr.type != EFT__GGUF_ARRAY || i >= kv->v.arr.n) return false;
    memset(out, 0, sizeof *out);
    out->key.ptr = "";
    out->type = EFT__GGUF_ARRAY;
    out->v.arr = kv->v.arr.sub[i];
    return true;
}

size_t eft__gguf_tensor_count(const eft__gguf *g) { return g->n_tensors; }

const eft__tensor_view *eft__gguf_tensor(const eft__gguf *g, size_t i) {
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const eft__tensor_view *eft__gguf_find_tensor(const eft__gguf *g, const char *name) {
    uint64_t i;
    return eft__strmap_get(&g->tensor_index, name, strlen(name), &i) ? &g->tensors[i] : NULL;
}

uint64_t eft__gguf_data_offset(const eft__gguf *g) { return g->data_offset; }
uint32_t eft__gguf_alignment(const eft__gguf *g) { return g->alignment; }
