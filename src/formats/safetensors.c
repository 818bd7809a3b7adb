/*
 * safetensors.c — reads safetensors files and sharded checkpoints. A file is mapped once; its JSON
 * header is checked completely (types, dtypes, shapes, offsets, overlaps) before any view is made,
 * so every view handed out lies inside the file and holds exactly shape × dtype bytes. Names and
 * metadata are copied out of the header into one allocation, so the JSON document is freed at open.
 */
#include <dirent.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/strmap.h"
#include "formats/safetensors.h"

struct eft__safetensors {
    char *label;           /* the path, or the caller's label for open_memory */
    eft__mapped_file file; /* all zero for open_memory */
    const uint8_t *data;
    uint64_t size;
    eft__tensor_view *views; /* sorted by data offset */
    size_t n_views;
    eft__strmap by_name; /* name -> index into views */
    char *strings;       /* tensor names and metadata, NUL-terminated, one allocation */
    const char **meta;   /* key, value, key, value, ... (2 * n_meta entries) */
    size_t n_meta;
};

struct eft__st_checkpoint {
    eft__safetensors **files;
    char **paths;
    size_t n_files;
    eft__tensor_view *views; /* copies of the shards' views, file_index set; names borrowed */
    size_t n_views;
    eft__strmap by_name;
    uint64_t total_bytes;
};

/* A tensor while the header is checked: its view plus the offsets that will become data. */
typedef struct st_entry {
    eft__tensor_view v;
    uint64_t begin, end; /* relative to the data section */
} st_entry;

/* =============================================================================================
 * Small helpers
 * =========================================================================================== */

static const struct {
    const char *name;
    eft_dtype dtype;
} k_st_dtypes[] = {
    {"F64", EFT_DTYPE_F64},   {"F32", EFT_DTYPE_F32},         {"F16", EFT_DTYPE_F16},
    {"BF16", EFT_DTYPE_BF16}, {"F8_E4M3", EFT_DTYPE_F8_E4M3}, {"F8_E5M2", EFT_DTYPE_F8_E5M2},
    {"I64", EFT_DTYPE_I64},   {"I32", EFT_DTYPE_I32},         {"I16", EFT_DTYPE_I16},
    {"I8", EFT_DTYPE_I8},     {"U64", EFT_DTYPE_U64},         {"U32", EFT_DTYPE_U32},
    {"U16", EFT_DTYPE_U16},   {"U8", EFT_DTYPE_U8},           {"BOOL", EFT_DTYPE_BOOL},
};

static bool st_dtype_from_name(const char *s, eft_dtype *out) {
    for (size_t i = 0; i < sizeof k_st_dtypes / sizeof k_st_dtypes[0]; i++) {
        if (strcmp(s, k_st_dtypes[i].name) == 0) {
            *out = k_st_dtypes[i].dtype;
            return true;
        }
    }
    return false;
}


/* A non-negative JSON integer, or false. */
static bool json_get_u64(const json_t *j, uint64_t *out) {
    if (!json_is_integer(j) || json_integer_value(j) < 0) return false;
    *out = (uint64_t)json_integer_value(j);
    return true;
}

/* jansson sets no message at all when most of its allocations fail, and reports only some as
 * json_error_out_of_memory; a few surface as syntax errors, which cannot be told apart. */
static bool json_out_of_memory(const json_error_t *e) {
    return eft__json_oom() || json_error_code(e) == json_error_out_of_memory || e->text[0] == 0;
}

static void fmt_shape(char *buf, size_t cap, const int64_t *shape, int ndim) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* A name as messages show it: long names (a header may hold megabytes of one) are cut so that the
 * numbers after them still fit in the message. */
typedef struct shown_name {
    char s[136];
} shown_name;

static shown_name show(const char *name) {
    shown_name n;
    size_t len = strlen(name);
    snprintf(n.s, sizeof n.s, "%.*s%s", len > 128 ? 120 : (int)len, name, len > 128 ? "..." : "");
    return n;
}

static inline uint64_t read_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* =============================================================================================
 * One file: the header
 * =========================================================================================== */

/* Checks one tensor entry of the header and fills e; data_size is the data section's length. */
static eft_status parse_entry(const char *label, const char *full_name, const json_t *j,
                              uint64_t header_end, uint64_t data_size, st_entry *e, eft__error *err) {
    shown_name shown = show(full_name);
    const char *name = shown.s;
    if (!json_is_object(j)) {
        return eft__fail(err, EFT_ERR_FORMAT,
                         "%s: tensor '%s': entry is %s, expected an object with dtype, shape and "
                         "data_offsets", label, name, eft__json_kind(j));
    }
    const json_t *jd = json_object_get(j, "dtype");
    const json_t *js = json_object_get(j, "shape");
    const json_t *jo = json_object_get(j, "data_offsets");
    if (!jd || !js || !jo) {
        return eft__fail(err, EFT_ERR_FORMAT, "%s: tensor '%s' has no \"%s\"", label, name,
                         !jd ? "dtype" : !js ? "shape" : "data_offsets");
    }
    if (!json_is_string(jd)) {
        return eft__fail(err, EFT_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is %s, expected a string",
                         label, name, eft__json_kind(jd));
    }
    if (!st_dtype_from_name(json_string_value(jd), &e->v.dtype)) {
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: tensor '%s' has unknown dtype '%.64s'", label,
                         name, json_string_value(jd));
    }

    /* Shape: at most EFT__MAX_DIMS non-negative integers, whose product fits in 64 bits. */
    if (!json_is_array(js)) {
        return eft__fail(err, EFT_ERR_FORMAT, "%s: tensor '%s': \"shape\" is %s, expected an array",
                         label, name, eft__json_kind(js));
    }
    size_t rank = json_array_size(js);
    if (rank > EFT__MAX_DIMS) {
        return eft__fail(err, EFT_ERR_LIMIT, "%s: tensor '%s' has rank %zu, over the limit of %d dimensions",
                         label, name, rank, EFT__MAX_DIMS);
    }
    e->v.ndim = (int)rank;
    uint64_t n = 1;
    bool overflow = false, has_zero = false;
    for (size_t d = 0; d < rank; d++) {
        const json_t *jv = json_array_get(js, d);
        uint64_t dim;
        if (!json_get_u64(jv, &dim)) {
            if (json_is_integer(jv)) {
                return eft__fail(err, EFT_ERR_FORMAT,
                                 "%s: tensor '%s': shape dimension %zu is %lld, expected a non-negative "
                                 "integer", label, name, d, (long long)json_integer_value(jv));
            }
            return eft__fail(err, EFT_ERR_FORMAT,
                             "%s: tensor '%s': shape dimension %zu is %s, expected a non-negative integer",
                             label, name, d, eft__json_kind(jv));
        }
        e->v.shape[d] = (int64_t)dim;
        has_zero |= dim == 0;
        overflow |= eft__mul_overflow_u64(n, dim, &n);
    }
    char shape[256];
    fmt_shape(shape, sizeof shape, e->v.shape, e->v.ndim);
    /* A zero dimension makes the count 0 however large the others are, so a product that
     * overflowed on the way there is harmless. */
    if (has_zero) n = 0;
    else if (overflow) {
        return eft__fail(err, EFT_ERR_FORMAT, "%s: tensor '%s': shape %s has more than 2^64 elements",
                         label, name, shape);
    }
    e->v.n_elems = n;
    const char *dname = eft_dtype_name(e->v.dtype);
    if (!eft__dtype_nbytes(e->v.dtype, n, &e->v.nbytes)) {
        return eft__fail(err, EFT_ERR_FORMAT, "%s: tensor '%s': %llu elements of %s (shape %s) need more "
                         "than 2^64 bytes", label, name, (unsigned long long)n, dname, shape);
    }

    /* Offsets: [begin, end] inside the data section, holding exactly nbytes. */
    if (!json_is_array(jo) || json_array_size(jo) != 2) {
        return eft__fail(err, EFT_ERR_FORMAT,
                         "%s: tensor '%s': \"data_offsets\" is %s%s, expected [begin, end]", label, name,
                         eft__json_kind(jo), json_is_array(jo) ? " of the wrong length" : "");
    }
    for (int k = 0; k < 2; k++) {
        const json_t *jv = json_array_get(jo, (size_t)k);
        if (!json_get_u64(jv, k ? &e->end : &e->begin)) {
            return eft__fail(err, EFT_ERR_FORMAT,
                             "%s: tensor '%s': data_offsets %s is %s, expected a non-negative integer",
                             label, name, k ? "end" : "begin", eft__json_kind(jv));
        }
    }
    if (e->begin > e->end) {
        return eft__fail(err, EFT_ERR_FORMAT, "%s: tensor '%s': data_offsets begin %llu is after end %llu",
                         label, name, (unsigned long long)e->begin, (unsigned long long)e->end);
    }
    if (e->end - e->begin != e->v.nbytes) {
        return eft__fail(err, EFT_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but shape %s of %s "
                         "needs %llu bytes", label, name, (unsigned long long)e->begin,
                         (unsigned long long)e->end, (unsigned long long)(e->end - e->begin), shape,
                         dname, (unsigned long long)e->v.nbytes);
    }
    if (e->end > data_size) {
        /* Report file positions, which is what someone with a hex dump or `ls -l` can check. */
        uint64_t abs_end;
        if (eft__add_overflow_u64(header_end, e->end, &abs_end)) abs_end = UINT64_MAX;
        return eft__fail(err, EFT_ERR_FORMAT,
                         "%s: tensor '%s' ends at byte %llu but the file has %llu bytes "
                         "(data section of %llu bytes starting at byte %llu)", label, name,
                         (unsigned long long)abs_end, (unsigned long long)(header_end + data_size),
                         (unsigned long long)data_size, (unsigned long long)header_end);
    }
    return EFT_OK;
}

static int cmp_entry(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->v.name, y->v.name); /* names are unique: a total order, so results are stable */
}

/* Sorted entries must not share bytes; gaps are legal (some writers align tensors) but logged. */
static eft_status check_layout(const char *label, const st_entry *e, size_t n, uint64_t data_size,
                               eft__error *err) {
    uint64_t max_end = 0;
    const st_entry *owner = NULL;
    for (size_t i = 0; i < n; i++) {
        if (e[i].begin == e[i].end) continue; /* empty ranges share no bytes with anything */
        if (owner && e[i].begin < max_end) {
            shown_name a = show(owner->v.name), b = show(e[i].v.name);
            return eft__fail(err, EFT_ERR_FORMAT,
                             "%s: tensors '%s' (bytes %llu..%llu) and '%s' (bytes %llu..%llu) of the data "
                             "section overlap", label, a.s, (unsigned long long)owner->begin,
                             (unsigned long long)owner->end, b.s,
                             (unsigned long long)e[i].begin, (unsigned long long)e[i].end);
        }
        if (e[i].begin > max_end) {
            EFT_LOGD("%s: %llu unused bytes before tensor '%s'", label,
                     (unsigned long long)(e[i].begin - max_end), e[i].v.name);
        }
        max_end = e[i].end;
        owner = &e[i];
    }
    if (max_end < data_size) {
        EFT_LOGD("%s: %llu unused bytes after the last tensor", label,
                 (unsigned long long)(data_size - max_end));
    }
    return EFT_OK;
}

/* Copies the metadata strings into the pool at *pos and records them in st->meta. */
static void take_metadata(eft__safetensors *st, const json_t *md, size_t *pos) {
    const char *key;
    json_t *val;
    size_t i = 0;
    json_object_foreach((json_t *)md, key, val) {
        size_t kl = strlen(key), vl = json_string_length(val);
        memcpy(st->strings + *pos, key, kl + 1);
        st->meta[2 * i] = st->strings + *pos;
        *pos += kl + 1;
        memcpy(st->strings + *pos, json_string_value(val), vl + 1);
        st->meta[2 * i + 1] = st->strings + *pos;
        *pos += vl + 1;
        i++;
    }
    st->n_meta = i;
}

static eft_status parse_header(eft__safetensors *st, eft__error *err) {
    const char *label = st->label;
    if (st->size < 8) {
        return eft__fail(err, EFT_ERR_FORMAT,
                         "%s: file has %llu bytes, too short for the 8-byte header length", label,
                         (unsigned long long)st->size);
    }
    uint64_t hlen = read_le64(st->data);
    if (hlen > st->size - 8) {
        return eft__fail(err, EFT_ERR_FORMAT,
                         "%s: header length %llu is larger than the %llu bytes that follow it (file has "
                         "%llu bytes)", label, (unsigned long long)hlen,
                         (unsigned long long)(st->size - 8), (unsigned long long)st->size);
    }
    if (hlen > EFT__ST_MAX_HEADER) {
        return eft__fail(err, EFT_ERR_LIMIT, "%s: header length %llu is over the limit of %u bytes", label,
                         (unsigned long long)hlen, EFT__ST_MAX_HEADER);
    }
    uint64_t header_end = 8 + hlen, data_size = st->size - header_end;

    /* The header may be padded with spaces up to hlen; jansson skips trailing whitespace. */
    json_error_t jerr;
    json_t *root = eft__json_loadb((const char *)st->data + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_out_of_memory(&jerr))
            return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory parsing the header", label);
        return eft__fail(err, EFT_ERR_FORMAT,
                         "%s: header is not valid JSON: %s (line %d, column %d, byte %d of the header)",
                         label, jerr.text, jerr.line, jerr.column, jerr.position);
    }
    eft_status status = EFT_OK;
    st_entry *ents = NULL;
    if (!json_is_object(root)) {
        status = eft__fail(err, EFT_ERR_FORMAT, "%s: header is %s, expected a JSON object", label,
                           eft__json_kind(root));
        goto done;
    }

    /* First pass: validate metadata and size the string pool. */
    const json_t *md = json_object_get(root, "__metadata__");
    size_t n_tensors = json_object_size(root) - (md ? 1 : 0), pool = 1, n_meta = 0;
    if (md) {
        if (!json_is_object(md)) {
            status = eft__fail(err, EFT_ERR_FORMAT, "%s: \"__metadata__\" is %s, expected an object of "
                               "strings", label, eft__json_kind(md));
            goto done;
        }
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)md, key, val) {
            if (!json_is_string(val)) {
                status = eft__fail(err, EFT_ERR_FORMAT, "%s: \"__metadata__\" key '%s' is %s, expected a "
                                   "string", label, show(key).s, eft__json_kind(val));
                goto done;
            }
            pool += strlen(key) + json_string_length(val) + 2;
            n_meta++;
        }
    }
    {
        const char *key;
        json_t *val;
        json_object_foreach(root, key, val) if (val != md) pool += strlen(key) + 1;
    }
    st->strings = eft__malloc(pool);
    st->meta = eft__calloc(n_meta ? 2 * n_meta : 1, sizeof *st->meta);
    ents = eft__calloc(n_tensors ? n_tensors : 1, sizeof *ents);
    if (!st->strings || !st->meta || !ents) {
        status = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu tensors", label,
                           n_tensors);
        goto done;
    }
    size_t pos = 0;
    if (md) take_metadata(st, md, &pos);

    /* Second pass: every tensor entry. */
    size_t n = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (val == md) continue;
        if (!key[0]) {
            status = eft__fail(err, EFT_ERR_FORMAT, "%s: a tensor has an empty name", label);
            goto done;
        }
        status = parse_entry(label, key, val, header_end, data_size, &ents[n], err);
        if (status) goto done;
        size_t kl = strlen(key);
        memcpy(st->strings + pos, key, kl + 1);
        ents[n].v.name = st->strings + pos;
        pos += kl + 1;
        n++;
    }

    qsort(ents, n, sizeof *ents, cmp_entry);
    status = check_layout(label, ents, n, data_size, err);
    if (status) goto done;

    st->views = eft__calloc(n ? n : 1, sizeof *st->views);
    if (!st->views) {
        status = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu tensors", label, n);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        eft__tensor_view *v = &st->views[i];
        *v = ents[i].v;
        v->data = v->nbytes ? st->data + header_end + ents[i].begin : NULL;
        v->file_index = 0;
        if (eft__strmap_put(&st->by_name, v->name, strlen(v->name), i) != EFT_OK) {
            status = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory indexing %zu tensors",
                               label, n);
            goto done;
        }
    }
    st->n_views = n;

done:
    eft__free(ents);
    json_decref(root);
    return status;
}

/* =============================================================================================
 * One file: open, close, queries
 * =========================================================================================== */

static eft_status open_common(eft__safetensors *st, eft__safetensors **out, eft__error *err) {
    eft_status status = parse_header(st, err);
    if (status) {
        eft__safetensors_close(st);
        return status;
    }
    *out = st;
    return EFT_OK;
}

eft_status eft__safetensors_open_memory(const uint8_t *data, uint64_t size, const char *label,
                                        eft__safetensors **out, eft__error *err) {
    *out = NULL;
    if (!label) label = "(memory)";
    if (!data && size) return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "%s: no data", label);
    eft__safetensors *st = eft__calloc(1, sizeof *st);
    if (!st || !(st->label = eft__strdup(label))) {
        eft__free(st);
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    }
    st->data = data;
    st->size = size;
    return open_common(st, out, err);
}

eft_status eft__safetensors_open(const char *path, eft__safetensors **out, eft__error *err) {
    *out = NULL;
    eft__safetensors *st = eft__calloc(1, sizeof *st);
    if (!st || !(st->label = eft__strdup(path))) {
        eft__free(st);
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    eft_status status = eft__file_map(&st->file, path, err);
    if (status) {
        eft__safetensors_close(st);
        return status;
    }
    st->data = st->file.data;
    st->size = st->file.size;
    return open_common(st, out, err);
}

void eft__safetensors_close(eft__safetensors *st) {
    if (!st) return;
    eft__file_unmap(&st->file);
    eft__strmap_free(&st->by_name);
    eft__free(st->views);
    eft__free(st->strings);
    eft__free(st->meta);
    eft__free(st->label);
    eft__free(st);
}

size_t eft__safetensors_count(const eft__safetensors *st) { return st->n_views; }

const eft__tensor_view *eft__safetensors_tensor(const eft__safetensors *st, size_t i) {
    return i < st->n_views ? &st->views[i] : NULL;
}

const eft__tensor_view *eft__safetensors_find(const eft__safetensors *st, const char *name) {
    uint64_t i;
    if (!name || !eft__strmap_get(&st->by_name, name, strlen(name), &i)) return NULL;
    return &st->views[i];
}

const char *eft__safetensors_metadata(const eft__safetensors *st, const char *key) {
    for (size_t i = 0; key && i < st->n_meta; i++)
        if (strcmp(st->meta[2 * i], key) == 0) return st->meta[2 * i + 1];
    return NULL;
}

size_t eft__safetensors_metadata_count(const eft__safetensors *st) { return st->n_meta; }

const char *eft__safetensors_metadata_key(const eft__safetensors *st, size_t i) {
    return i < st->n_meta ? st->meta[2 * i] : NULL;
}

const char *eft__safetensors_metadata_value(const eft__safetensors *st, size_t i) {
    return i < st->n_meta ? st->meta[2 * i + 1] : NULL;
}

/* =============================================================================================
 * Checkpoints: one file or several shards under an index
 * =========================================================================================== */

static const char k_index_name[] = "model.safetensors.index.json";

/* A shard name from an index must name a file in the same folder, nothing else. */
static bool shard_name_ok(const char *s) {
    return s[0] && !strchr(s, '/') && !strchr(s, '\\') && !strstr(s, "..");
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* Adds name to the list of shard file names unless it is there already. */
static eft_status add_name(char ***names, size_t *n, const char *name) {
    for (size_t i = 0; i < *n; i++) if (strcmp((*names)[i], name) == 0) return EFT_OK;
    char **nn = eft__realloc(*names, (*n + 1) * sizeof *nn);
    if (!nn) return EFT_ERR_OUT_OF_MEMORY;
    *names = nn;
    if (!(nn[*n] = eft__strdup(name))) return EFT_ERR_OUT_OF_MEMORY;
    (*n)++;
    return EFT_OK;
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) eft__free(names[i]);
    eft__free(names);
}

/* Reads and checks the index: root object with a "weight_map" object of plain shard file names.
 * *out_root keeps the document alive for the caller; *names gets the distinct shards, sorted. */
static eft_status read_index(const char *path, json_t **out_root, const json_t **out_map,
                             char ***names, size_t *n_names, eft__error *err) {
    char *text;
    size_t len;
    eft_status status = eft__file_read_all(path, EFT__ST_MAX_HEADER, &text, &len, err);
    if (status) return status;
    json_error_t jerr;
    json_t *root = eft__json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    eft__free(text);
    if (!root) {
        if (json_out_of_memory(&jerr))
            return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory parsing it", path);
        return eft__fail(err, EFT_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", path,
                         jerr.text, jerr.line, jerr.column);
    }
    const json_t *map = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!map || !json_is_object(map)) {
        status = eft__fail(err, EFT_ERR_FORMAT, "%s: \"weight_map\" is %s, expected an object of "
                           "tensor name -> shard file", path,
                           !json_is_object(root) ? "missing (the document is not an object)"
                           : !map ? "missing" : eft__json_kind(map));
        goto fail;
    }
    if (json_object_size(map) == 0) {
        status = eft__fail(err, EFT_ERR_FORMAT, "%s: \"weight_map\" is empty", path);
        goto fail;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)map, key, val) {
        if (!json_is_string(val)) {
            status = eft__fail(err, EFT_ERR_FORMAT, "%s: \"weight_map\" entry for tensor '%s' is %s, "
                               "expected a shard file name", path, show(key).s, eft__json_kind(val));
            goto fail;
        }
        const char *s = json_string_value(val);
        if (!shard_name_ok(s)) {
            status = eft__fail(err, EFT_ERR_FORMAT,
                               "%s: tensor '%s' is mapped to shard '%s', which is not a plain file name "
                               "in the same folder (refusing a path with '/', '\\' or '..')", path, show(key).s,
                               show(s).s);
            goto fail;
        }
        if (add_name(names, n_names, s)) {
            status = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
            goto fail;
        }
    }
    qsort(*names, *n_names, sizeof **names, cmp_str);
    *out_root = root;
    *out_map = map;
    return EFT_OK;
fail:
    json_decref(root);
    return status;
}

/* Without an index: model.safetensors, else the folder's only *.safetensors file. */
static eft_status find_single(const char *dir, char ***names, size_t *n_names, eft__error *err) {
    char *p = eft__path_join(dir, "model.safetensors");
    if (!p) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
    bool found = eft__path_exists(p);
    eft__free(p);
    if (found) {
        if (add_name(names, n_names, "model.safetensors"))
            return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
        return EFT_OK;
    }
    DIR *d = opendir(dir);
    if (!d) return eft__fail(err, EFT_ERR_IO, "%s: cannot list the folder", dir);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !has_suffix(de->d_name, ".safetensors")) continue;
        if (add_name(names, n_names, de->d_name)) {
            closedir(d);
            return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
        }
    }
    closedir(d);
    if (*n_names == 0) {
        return eft__fail(err, EFT_ERR_NOT_FOUND, "%s: no %s, model.safetensors or other *.safetensors file",
                         dir, k_index_name);
    }
    if (*n_names > 1) {
        qsort(*names, *n_names, sizeof **names, cmp_str);
        return eft__fail(err, EFT_ERR_FORMAT,
                         "%s: %zu *.safetensors files ('%s', '%s'%s) but no %s to say how they fit together",
                         dir, *n_names, (*names)[0], (*names)[1], *n_names > 2 ? ", ..." : "",
                         k_index_name);
    }
    return EFT_OK;
}

/* Opens every shard and merges their views; map (may be NULL) is the index's weight_map. */
static eft_status open_shards(eft__st_checkpoint *c, const char *dir, const char *index_path,
                              char **names, size_t n_names, const json_t *map, eft__error *err) {
    c->files = eft__calloc(n_names, sizeof *c->files);
    c->paths = eft__calloc(n_names, sizeof *c->paths);
    if (!c->files || !c->paths) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
    c->n_files = n_names;
    size_t total = 0;
    for (size_t i = 0; i < n_names; i++) {
        if (!(c->paths[i] = eft__path_join(dir, names[i])))
            return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
        if (index_path && !eft__path_exists(c->paths[i])) {
            return eft__fail(err, EFT_ERR_NOT_FOUND, "%s: lists shard '%s' but %s does not exist",
                             index_path, names[i], c->paths[i]);
        }
        eft_status status = eft__safetensors_open(c->paths[i], &c->files[i], err);
        if (status) return status;
        total += c->files[i]->n_views;
    }

    /* Every tensor the index lists must be in the shard it names. */
    if (map) {
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)map, key, val) {
            const char **hit = bsearch(&(const char *){json_string_value(val)}, names, n_names,
                                       sizeof *names, cmp_str);
            if (!hit) return eft__fail(err, EFT_ERR_INTERNAL, "%s: shard list out of step", index_path);
            size_t k = (size_t)((char **)hit - names);
            if (!eft__safetensors_find(c->files[k], key)) {
                return eft__fail(err, EFT_ERR_FORMAT, "%s: lists tensor '%s' in shard '%s' but that shard "
                                 "has no such tensor", index_path, show(key).s, names[k]);
            }
        }
    }

    c->views = eft__calloc(total ? total : 1, sizeof *c->views);
    if (!c->views) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
    for (size_t f = 0; f < n_names; f++) {
        for (size_t i = 0; i < c->files[f]->n_views; i++) {
            eft__tensor_view v = c->files[f]->views[i];
            v.file_index = (uint32_t)f;
            uint64_t prev;
            if (eft__strmap_get(&c->by_name, v.name, strlen(v.name), &prev)) {
                return eft__fail(err, EFT_ERR_FORMAT, "%s: tensor '%s' is in two shards, '%s' and '%s'",
                                 dir, show(v.name).s, names[c->views[prev].file_index], names[f]);
            }
            if (map && !json_object_get(map, v.name))
                EFT_LOGD("%s: tensor '%s' of shard '%s' is not in the index", index_path, v.name, names[f]);
            if (eft__strmap_put(&c->by_name, v.name, strlen(v.name), c->n_views))
                return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
            c->views[c->n_views++] = v;
            c->total_bytes += v.nbytes; /* each file's bytes are at most its size: no overflow */
        }
    }
    return EFT_OK;
}

eft_status eft__st_checkpoint_open_dir(const char *dir, eft__st_checkpoint **out, eft__error *err) {
    *out = NULL;
    if (!eft__path_is_dir(dir)) return eft__fail(err, EFT_ERR_NOT_FOUND, "%s: not a folder", dir);
    eft__st_checkpoint *c = eft__calloc(1, sizeof *c);
    char *index_path = eft__path_join(dir, k_index_name);
    char **names = NULL;
    size_t n_names = 0;
    json_t *root = NULL;
    const json_t *map = NULL;
    eft_status status;
    if (!c || !index_path) {
        status = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
        goto done;
    }
    bool indexed = eft__path_exists(index_path);
    status = indexed ? read_index(index_path, &root, &map, &names, &n_names, err)
                     : find_single(dir, &names, &n_names, err);
    if (status) goto done;
    status = open_shards(c, dir, indexed ? index_path : NULL, names, n_names, map, err);
done:
    if (status) {
        eft__st_checkpoint_close(c);
    } else {
        *out = c;
    }
    json_decref(root);
    free_names(names, n_names);
    eft__free(index_path);
    return status;
}

void eft__st_checkpoint_close(eft__st_checkpoint *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n_files; i++) {
        eft__safetensors_close(c->files[i]);
        eft__free(c->paths[i]);
    }
    eft__free(c->files);
    eft__free(c->paths);
    eft__free(c->views);
    eft__strmap_free(&c->by_name);
    eft__free(c);
}

size_t eft__st_checkpoint_count(const eft__st_checkpoint *c) { return c->n_views; }

const eft__tensor_view *eft__st_checkpoint_tensor(const eft__st_checkpoint *c, size_t i) {
    return i < c->n_views ? &c->views[i] : NULL;
}

const eft__tensor_view *eft__st_checkpoint_find(const eft__st_checkpoint *c, const char *name) {
    uint64_t i;
    if (!name || !eft__strmap_get(&c->by_name, name, strlen(name), &i)) return NULL;
    return &c->views[i];
}

size_t eft__st_checkpoint_file_count(const eft__st_checkpoint *c) { return c->n_files; }

const char *eft__st_checkpoint_file_path(const eft__st_checkpoint *c, size_t i) {
    return i < c->n_files ? c->paths[i] : NULL;
}

uint64_t eft__st_checkpoint_total_bytes(const eft__st_checkpoint *c) { return c->total_bytes; }
