/*
 * program.c — the compiled-program file (layout in program.h): a reader that maps it read-only
 * and trusts nothing in it until checked (every offset and size overflow-safe, names terminated
 * and unique, a checksum over the metadata), a writer that builds it beside its final path and
 * renames it into place, and the cache's helpers (its folder, FNV-1a 64 and file fingerprints).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/json.h"
#include "core/strmap.h"
#include "graph/program.h"

#define HDR_SIZE 64u
#define ENTRY_SIZE 128u

_Static_assert(sizeof(EFT__PROGRAM_MAGIC) == 8, "the magic is 8 bytes with its NUL");

/* ---------------------------------------------------------------------------------------------
 * Hashing
 * ------------------------------------------------------------------------------------------- */

uint64_t eft__fnv1a64(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static uint64_t align_up(uint64_t x) { return (x + EFT__PROGRAM_ALIGN - 1) & ~(uint64_t)(EFT__PROGRAM_ALIGN - 1); }

/* The checksum over the fixed header's first 56 bytes and everything from byte 64 to the end of
 * the table (JSON, its padding, the table), so no metadata byte can change unnoticed. */
static uint64_t meta_hash(const uint8_t *hdr, const uint8_t *meta, uint64_t meta_size) {
    uint64_t h = eft__fnv1a64(EFT__FNV1A64_INIT, hdr, 56);
    return eft__fnv1a64(h, meta, (size_t)meta_size);
}

/* ---------------------------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------------------------- */

struct eft__program {
    eft__mapped_file file; /* empty for open_memory */
    const uint8_t *data;
    uint64_t size;
    char *label;
    char *json_text; /* NUL-terminated copy */
    json_t *header;
    eft__program_blob *blobs;
    size_t n_blobs;
    eft__strmap names; /* name -> index */
};

bool eft__program_is_program(const char *path) {
    if (!path) return false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    struct stat st;
    char buf[8];
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && read(fd, buf, 8) == 8 &&
              !memcmp(buf, EFT__PROGRAM_MAGIC, 8);
    close(fd);
    return ok;
}

char *eft__program_resolve(const char *path) {
    if (!path) return NULL;
    if (eft__path_is_dir(path)) {
        char *p = eft__path_join(path, EFT__PROGRAM_FILE);
        if (p && eft__program_is_program(p)) return p;
        eft__free(p);
        return NULL;
    }
    return eft__program_is_program(path) ? eft__strdup(path) : NULL;
}

static bool dtype_ok(uint32_t d) {
    const eft__dtype_traits *t = d < EFT_DTYPE_COUNT ? eft__dtype_traits_of((eft_dtype)d) : NULL;
    return t && t->block_bytes > 0 && t->block_elems > 0;
}

static eft_status parse(eft__program *p, eft__error *err) {
    const char *L = p->label;
    const uint8_t *d = p->data;
    const uint64_t size = p->size;
    if (size < HDR_SIZE)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: %llu bytes is too short for a program (the fixed header alone is "
                         "%u bytes)", L, (unsigned long long)size, HDR_SIZE);
    if (memcmp(d, EFT__PROGRAM_MAGIC, 8) != 0)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: not an eft program (bytes 0-7 are not \"EFTPROG\\0\")", L);
    uint32_t version = rd32(d + 8), hdr = rd32(d + 12);
    if (version != EFT__PROGRAM_VERSION)
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: program format version %u at byte 8; this eft reads version %u "
                         "(compile it again)", L, version, EFT__PROGRAM_VERSION);
    if (hdr != HDR_SIZE)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: fixed header size %u at byte 12, expected %u", L, hdr, HDR_SIZE);
    uint64_t fsize = rd64(d + 16), json_off = rd64(d + 24), json_size = rd64(d + 32), table_off = rd64(d + 40),
             n = rd64(d + 48), sum = rd64(d + 56);
    if (fsize != size)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: the header (byte 16) says the program has %llu bytes, the file has "
                         "%llu (truncated or appended to)", L, (unsigned long long)fsize, (unsigned long long)size);
    if (json_off != HDR_SIZE || json_size == 0 || json_size > EFT__PROGRAM_MAX_JSON)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: JSON header at byte %llu, %llu bytes; expected byte %u and 1..%u "
                         "bytes", L, (unsigned long long)json_off, (unsigned long long)json_size, HDR_SIZE,
                         EFT__PROGRAM_MAX_JSON);
    uint64_t json_end = json_off + json_size; /* both bounded above: no overflow */
    if (json_end > size)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: the JSON header ends at byte %llu, past the end of the file (%llu)",
                         L, (unsigned long long)json_end, (unsigned long long)size);
    if (n > EFT__PROGRAM_MAX_BLOBS)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: %llu blobs (byte 48); at most %u are allowed", L,
                         (unsigned long long)n, EFT__PROGRAM_MAX_BLOBS);
    uint64_t table_size = n * ENTRY_SIZE, table_end;
    if (table_off % EFT__PROGRAM_ALIGN || table_off < json_end ||
        eft__add_overflow_u64(table_off, table_size, &table_end) || table_end > size)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: the blob table (%llu entries at byte %llu) must be 64-aligned, "
                         "after the JSON (ends at %llu) and inside the file (%llu bytes)", L, (unsigned long long)n,
                         (unsigned long long)table_off, (unsigned long long)json_end, (unsigned long long)size);
    uint64_t want = meta_hash(d, d + HDR_SIZE, table_end - HDR_SIZE);
    if (want != sum)
        return eft__fail(err, EFT_ERR_FORMAT, "%s: checksum of the header, JSON and blob table is %016llx, the file "
                         "says %016llx (byte 56): the program is corrupt", L, (unsigned long long)want,
                         (unsigned long long)sum);

    p->json_text = eft__strndup((const char *)d + json_off, (size_t)json_size);
    if (!p->json_text) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", L);
    json_error_t je;
    p->header = eft__json_loadb(p->json_text, (size_t)json_size, JSON_REJECT_DUPLICATES, &je);
    if (!p->header)
        return eft__fail(err, eft__json_oom() ? EFT_ERR_OUT_OF_MEMORY : EFT_ERR_FORMAT,
                         "%s: JSON header (byte %llu + %d): %s", L, (unsigned long long)json_off, je.position, je.text);
    if (!json_is_object(p->header))
        return eft__fail(err, EFT_ERR_FORMAT, "%s: the JSON header is %s, expected an object", L,
                         eft__json_kind(p->header));

    p->blobs = eft__calloc(n ? (size_t)n : 1, sizeof *p->blobs);
    if (!p->blobs) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", L);
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *e = d + table_off + i * ENTRY_SIZE;
        uint64_t at = table_off + i * ENTRY_SIZE;
        const char *name = (const char *)e;
        size_t len = strnlen(name, EFT__PROGRAM_NAME_MAX);
        if (len == 0 || len == EFT__PROGRAM_NAME_MAX)
            return eft__fail(err, EFT_ERR_FORMAT, "%s: blob %llu (table entry at byte %llu): the name is %s", L,
                             (unsigned long long)i, (unsigned long long)at, len ? "not NUL-terminated" : "empty");
        uint64_t off = rd64(e + 96), bytes = rd64(e + 104), end;
        uint32_t dt = rd32(e + 112);
        if (!dtype_ok(dt))
            return eft__fail(err, EFT_ERR_FORMAT, "%s: blob '%s' (byte %llu): element type %u is unknown", L, name,
                             (unsigned long long)at, dt);
        const eft__dtype_traits *tr = eft__dtype_traits_of((eft_dtype)dt);
        if (bytes % tr->block_bytes)
            return eft__fail(err, EFT_ERR_FORMAT, "%s: blob '%s': %llu bytes is not a whole number of %s elements", L,
                             name, (unsigned long long)bytes, tr->name);
        if (off % EFT__PROGRAM_ALIGN || off < table_end || eft__add_overflow_u64(off, bytes, &end) || end > size)
            return eft__fail(err, EFT_ERR_FORMAT, "%s: blob '%s' at byte %llu, %llu bytes: it must be 64-aligned, after "
                             "the table (ends at %llu) and end inside the file (%llu bytes)", L, name,
                             (unsigned long long)off, (unsigned long long)bytes, (unsigned long long)table_end,
                             (unsigned long long)size);
        uint64_t dup;
        if (eft__strmap_get(&p->names, name, len, &dup))
            return eft__fail(err, EFT_ERR_FORMAT, "%s: blob '%s' appears twice (entries %llu and %llu)", L, name,
                             (unsigned long long)dup, (unsigned long long)i);
        if (eft__strmap_put(&p->names, name, len, i) != EFT_OK)
            return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", L);
        p->blobs[i] = (eft__program_blob){.name = name, .dtype = (eft_dtype)dt, .data = bytes ? d + off : NULL,
                                          .size = bytes};
    }
    p->n_blobs = (size_t)n;
    return EFT_OK;
}

static eft_status open_common(eft__program *p, eft__program **out, eft__error *err) {
    eft_status s = p->label ? parse(p, err) : eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    if (s != EFT_OK) {
        eft__program_close(p);
        return s;
    }
    *out = p;
    return EFT_OK;
}

eft_status eft__program_open(const char *path, eft__program **out, eft__error *err) {
    *out = NULL;
    eft__program *p = eft__calloc(1, sizeof *p);
    if (!p) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    eft_status s = eft__file_map(&p->file, path, err);
    if (s != EFT_OK) {
        eft__free(p);
        return s;
    }
    p->data = p->file.data;
    p->size = p->file.size;
    p->label = eft__strdup(path);
    return open_common(p, out, err);
}

eft_status eft__program_open_memory(const uint8_t *data, uint64_t size, const char *label, eft__program **out,
                                    eft__error *err) {
    *out = NULL;
    eft__program *p = eft__calloc(1, sizeof *p);
    if (!p) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    p->data = data;
    p->size = data ? size : 0;
    p->label = eft__strdup(label ? label : "program");
    return open_common(p, out, err);
}

void eft__program_close(eft__program *p) {
    if (!p) return;
    json_decref(p->header);
    eft__free(p->json_text);
    eft__free(p->blobs);
    eft__strmap_free(&p->names);
    eft__free(p->label);
    eft__file_unmap(&p->file);
    eft__free(p);
}

const char *eft__program_path(const eft__program *p) { return p->label; }
uint64_t eft__program_size(const eft__program *p) { return p->size; }
const struct json_t *eft__program_header(const eft__program *p) { return p->header; }
const char *eft__program_header_text(const eft__program *p) { return p->json_text; }
size_t eft__program_blob_count(const eft__program *p) { return p->n_blobs; }
const eft__program_blob *eft__program_blob_at(const eft__program *p, size_t i) {
    return i < p->n_blobs ? &p->blobs[i] : NULL;
}
const eft__program_blob *eft__program_find(const eft__program *p, const char *name) {
    uint64_t i;
    if (!name || !eft__strmap_get(&p->names, name, strlen(name), &i)) return NULL;
    return &p->blobs[i];
}

/* ---------------------------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------------------------- */

typedef struct wblob {
    char name[EFT__PROGRAM_NAME_MAX];
    eft_dtype dtype;
    const void *data;
    uint64_t size;
} wblob;

struct eft__program_writer {
    wblob *blobs;
    size_t n, cap;
    eft__strmap names; /* keys point into blobs[i].name, so blobs never move once named: see add */
};

eft_status eft__program_writer_new(eft__program_writer **out, eft__error *err) {
    *out = eft__calloc(1, sizeof **out);
    return *out ? EFT_OK : eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
}

void eft__program_writer_free(eft__program_writer *w) {
    if (!w) return;
    eft__strmap_free(&w->names);
    eft__free(w->blobs);
    eft__free(w);
}

/* Rebuilds the name map after the blob array moved (its keys point into the array). */
static eft_status rehash(eft__program_writer *w) {
    eft__strmap_free(&w->names);
    memset(&w->names, 0, sizeof w->names);
    for (size_t i = 0; i < w->n; i++)
        if (eft__strmap_put(&w->names, w->blobs[i].name, strlen(w->blobs[i].name), i) != EFT_OK)
            return EFT_ERR_OUT_OF_MEMORY;
    return EFT_OK;
}

eft_status eft__program_writer_add(eft__program_writer *w, const char *name, eft_dtype dtype, const void *data,
                                   uint64_t size, eft__error *err) {
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len >= EFT__PROGRAM_NAME_MAX)
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "program blob name '%s' must have 1..%d bytes",
                         name ? name : "(null)", EFT__PROGRAM_NAME_MAX - 1);
    if (!dtype_ok((uint32_t)dtype) || size % eft__dtype_traits_of(dtype)->block_bytes || (size && !data))
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "program blob '%s': %llu bytes of type %d", name,
                         (unsigned long long)size, (int)dtype);
    uint64_t dup;
    if (eft__strmap_get(&w->names, name, len, &dup))
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "program blob '%s' added twice", name);
    if (w->n == EFT__PROGRAM_MAX_BLOBS)
        return eft__fail(err, EFT_ERR_LIMIT, "a program holds at most %u blobs", EFT__PROGRAM_MAX_BLOBS);
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        wblob *nb = eft__realloc(w->blobs, cap * sizeof *nb);
        if (!nb) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        w->blobs = nb;
        w->cap = cap;
        if (rehash(w) != EFT_OK) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    }
    wblob *b = &w->blobs[w->n];
    memset(b, 0, sizeof *b);
    memcpy(b->name, name, len);
    b->dtype = dtype;
    b->data = data;
    b->size = size;
    if (eft__strmap_put(&w->names, b->name, len, w->n) != EFT_OK)
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    w->n++;
    return EFT_OK;
}

static bool write_all(int fd, const void *data, uint64_t n) {
    const uint8_t *p = data;
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
        ssize_t r = write(fd, p, chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        p += r;
        n -= (uint64_t)r;
    }
    return true;
}

static bool write_zeros(int fd, uint64_t n) {
    static const uint8_t zeros[EFT__PROGRAM_ALIGN];
    return write_all(fd, zeros, n);
}

eft_status eft__program_writer_write(eft__program_writer *w, const char *path, const char *header_json,
                                     eft__error *err) {
    size_t json_size = header_json ? strlen(header_json) : 0;
    if (json_size == 0 || json_size > EFT__PROGRAM_MAX_JSON)
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "%s: the program's JSON header has %zu bytes (1..%u)", path,
                         json_size, EFT__PROGRAM_MAX_JSON);
    /* Lay the file out. */
    uint64_t table_off = align_up(HDR_SIZE + (uint64_t)json_size), table_size = (uint64_t)w->n * ENTRY_SIZE;
    uint64_t at = align_up(table_off + table_size);
    /* Bytes 64 .. the end of the table, built in one buffer: JSON, zero padding, table. */
    uint8_t *meta = eft__calloc(1, (size_t)(table_off + table_size - HDR_SIZE));
    if (!meta) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    memcpy(meta, header_json, json_size);
    uint8_t *table = meta + (table_off - HDR_SIZE);
    for (size_t i = 0; i < w->n; i++) {
        uint8_t *e = table + i * ENTRY_SIZE;
        memcpy(e, w->blobs[i].name, strlen(w->blobs[i].name));
        wr64(e + 96, at);
        wr64(e + 104, w->blobs[i].size);
        wr32(e + 112, (uint32_t)w->blobs[i].dtype);
        if (eft__add_overflow_u64(at, w->blobs[i].size, &at) || (at = align_up(at)) < EFT__PROGRAM_ALIGN) {
            eft__free(meta);
            return eft__fail(err, EFT_ERR_LIMIT, "%s: the program would be too large", path);
        }
    }
    /* The last blob's padding is not written: the file ends where the data ends. */
    uint64_t fsize = w->n ? rd64(table + (w->n - 1) * ENTRY_SIZE + 96) + w->blobs[w->n - 1].size
                          : table_off + table_size;
    uint8_t hdr[HDR_SIZE] = {0};
    memcpy(hdr, EFT__PROGRAM_MAGIC, 8);
    wr32(hdr + 8, EFT__PROGRAM_VERSION);
    wr32(hdr + 12, HDR_SIZE);
    wr64(hdr + 16, fsize);
    wr64(hdr + 24, HDR_SIZE);
    wr64(hdr + 32, json_size);
    wr64(hdr + 40, table_off);
    wr64(hdr + 48, w->n);
    wr64(hdr + 56, meta_hash(hdr, meta, table_off + table_size - HDR_SIZE));

    /* A unique temporary name in the same folder, so the rename cannot cross file systems. */
    static unsigned counter;
    char *tmp = eft__asprintf("%s.tmp.%ld.%u", path, (long)getpid(), __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
    if (!tmp) {
        eft__free(meta);
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        eft_status s = eft__fail(err, EFT_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        eft__free(tmp);
        eft__free(meta);
        return s;
    }
    bool ok = write_all(fd, hdr, HDR_SIZE) && write_all(fd, meta, table_off + table_size - HDR_SIZE);
    uint64_t pos = table_off + table_size;
    for (size_t i = 0; ok && i < w->n; i++) {
        uint64_t off = rd64(table + i * ENTRY_SIZE + 96);
        ok = write_zeros(fd, off - pos) && write_all(fd, w->blobs[i].data, w->blobs[i].size);
        pos = off + w->blobs[i].size;
    }
    int e = ok ? 0 : errno;
    /* fsync before rename: after a crash the new name must never point at missing data. */
    if (ok && fsync(fd) != 0) {
        ok = false;
        e = errno;
    }
    if (close(fd) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        e = errno;
    }
    eft_status s = EFT_OK;
    if (!ok) {
        s = eft__fail(err, EFT_ERR_IO, "%s: cannot write the program (%llu bytes): %s", path,
                      (unsigned long long)fsize, e ? strerror(e) : "short write");
        unlink(tmp);
    }
    eft__free(tmp);
    eft__free(meta);
    return s;
}

/* ---------------------------------------------------------------------------------------------
 * The cache's helpers
 * ------------------------------------------------------------------------------------------- */

#define EDGE_BYTES (1u << 20)

/* FNV-1a's step over 8-byte words instead of bytes (then the tail bytewise): eight times fewer
 * multiplies, so the 2 MiB of a fingerprint cost a fraction of a millisecond. */
static uint64_t hash_words(uint64_t h, const uint8_t *p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        h ^= rd64(p + i);
        h *= 0x100000001b3ull;
        h ^= h >> 29;
    }
    return eft__fnv1a64(h, p + i, n - i);
}

/* Hashes up to n bytes of fd from off into *h. */
static bool hash_range(int fd, uint64_t off, uint64_t n, uint8_t *buf, uint64_t *h) {
    while (n > 0) {
        size_t chunk = n > EDGE_BYTES ? EDGE_BYTES : (size_t)n;
        ssize_t r = pread(fd, buf, chunk, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        *h = hash_words(*h, buf, (size_t)r);
        off += (uint64_t)r;
        n -= (uint64_t)r;
    }
    return true;
}

eft_status eft__program_hash_files(const char *const *paths, size_t n, uint64_t *out, eft__error *err) {
    uint64_t h = EFT__FNV1A64_INIT;
    uint8_t *buf = eft__malloc(EDGE_BYTES);
    if (!buf) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *base = eft__path_basename(paths[i]);
        h = eft__fnv1a64(h, base, strlen(base) + 1);
        int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            if (fd >= 0) close(fd);
            h = eft__fnv1a64(h, "absent", 6);
            continue;
        }
        uint64_t meta[3] = {(uint64_t)st.st_size, (uint64_t)st.st_mtim.tv_sec, (uint64_t)st.st_mtim.tv_nsec};
        h = eft__fnv1a64(h, meta, sizeof meta);
        uint64_t size = (uint64_t)st.st_size;
        uint64_t head = size < EDGE_BYTES ? size : EDGE_BYTES;
        uint64_t tail_off = size - head > head ? size - EDGE_BYTES : head; /* the tail never overlaps the head */
        bool ok = hash_range(fd, 0, head, buf, &h) && hash_range(fd, tail_off, size - tail_off, buf, &h);
        close(fd);
        if (!ok) {
            eft__free(buf);
            return eft__fail(err, EFT_ERR_IO, "%s: cannot read %llu bytes for its fingerprint", paths[i],
                             (unsigned long long)size);
        }
    }
    eft__free(buf);
    *out = h;
    return EFT_OK;
}

char *eft__program_cache_dir(void) {
    const char *v = getenv("EFT_CACHE_DIR");
    if (v && *v) return eft__strdup(v);
    v = getenv("XDG_CACHE_HOME");
    if (v && *v == '/') return eft__path_join(v, "eft");
    v = getenv("HOME");
    if (v && *v) return eft__asprintf("%s/.cache/eft", v);
    return NULL;
}

uint64_t eft__program_cache_limit(void) {
    const char *v = getenv("EFT_CACHE_MAX");
    if (!v || !*v) return EFT__PROGRAM_CACHE_DEFAULT_MAX;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    double mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1024.0, end++; break;
    case 'm': case 'M': mul = 1024.0 * 1024, end++; break;
    case 'g': case 'G': mul = 1024.0 * 1024 * 1024, end++; break;
    case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024, end++; break;
    default: break;
    }
    if (*end == 'B' || *end == 'b') end++;
    if (errno || end == v || *end || !(x >= 0) || x * mul > 1.8e19) {
        EFT_LOGW("EFT_CACHE_MAX=%s is not a size such as 20G or 500M; keeping the default of %llu GiB", v,
                 (unsigned long long)(EFT__PROGRAM_CACHE_DEFAULT_MAX >> 30));
        return EFT__PROGRAM_CACHE_DEFAULT_MAX;
    }
    return (uint64_t)(x * mul);
}

/* A cache entry's name: anything, '-', 16 lowercase hex digits, ".eft". Only such files are ever
 * removed, so a cache folder pointed at a folder of other things loses none of them. */
static bool cache_entry_name(const char *name) {
    size_t n = strlen(name);
    if (n < 22 || strcmp(name + n - 4, ".eft") || name[n - 21] != '-') return false;
    for (size_t i = n - 20; i < n - 4; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f'))) return false;
    return true;
}

/* A temporary file a writer left behind ("<entry>.tmp.<pid>.<n>", see eft__program_write). */
static bool cache_temp_name(const char *name) {
    const char *t = strstr(name, ".eft.tmp.");
    if (!t) return false;
    char entry[512];
    size_t n = (size_t)(t - name) + 4;
    if (n >= sizeof entry) return false;
    memcpy(entry, name, n);
    entry[n] = 0;
    return cache_entry_name(entry);
}

typedef struct cache_file {
    char *path;
    uint64_t bytes;
    struct timespec mtime;
} cache_file;

static int cmp_cache_age(const void *a, const void *b) {
    const cache_file *x = a, *y = b;
    if (x->mtime.tv_sec != y->mtime.tv_sec) return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
    if (x->mtime.tv_nsec != y->mtime.tv_nsec) return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
    return strcmp(x->path, y->path);
}

void eft__program_cache_prune(const char *dir, const char *keep, uint64_t limit) {
    if (!dir || limit == 0) return;
    DIR *d = opendir(dir);
    if (!d) return;
    cache_file *f = NULL;
    size_t n = 0, cap = 0;
    uint64_t total = 0;
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        bool entry = cache_entry_name(e->d_name), temp = !entry && cache_temp_name(e->d_name);
        if (!entry && !temp) continue;
        char *path = eft__path_join(dir, e->d_name);
        struct stat st;
        if (!path || lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            eft__free(path);
            continue;
        }
        if (temp) {
            /* A writer that died (a live one renames within minutes) left this behind. */
            if (now - st.st_mtim.tv_sec > 24 * 3600 && unlink(path) == 0)
                EFT_LOGI("program cache: removed %s, left over by a writer that stopped", path);
            eft__free(path);
            continue;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 32;
            cache_file *nf = eft__realloc(f, nc * sizeof *nf);
            if (!nf) {
                eft__free(path);
                break;
            }
            f = nf, cap = nc;
        }
        f[n++] = (cache_file){path, (uint64_t)st.st_size, st.st_mtim};
        total += (uint64_t)st.st_size;
    }
    closedir(d);
    if (total > limit) {
        /* Least recently used first: a hit touches its entry's mtime (eft__program_cached). */
        qsort(f, n, sizeof *f, cmp_cache_age);
        for (size_t i = 0; i < n && total > limit; i++) {
            if (keep && !strcmp(f[i].path, keep)) continue;
            if (unlink(f[i].path) == 0) {
                total -= f[i].bytes;
                EFT_LOGI("program cache: removed %s (%.1f MiB, least recently used) to stay under EFT_CACHE_MAX "
                         "(%.1f MiB)", f[i].path, (double)f[i].bytes / 1048576.0, (double)limit / 1048576.0);
            }
        }
    }
    for (size_t i = 0; i < n; i++) eft__free(f[i].path);
    eft__free(f);
}

eft_status eft__program_cached(const char *cache_dir, const char *model_path, const eft__program_cache_ops *ops,
                               eft__program **prog, eft__error *err) {
    *prog = NULL;
    eft__error cerr;
    eft__error_clear(&cerr);
    char key[17], *dir = NULL, *path = NULL;
    const char *base = eft__path_basename(model_path);
    if (ops->key(ops->ctx, key, &cerr) == EFT_OK &&
        (dir = cache_dir ? eft__strdup(cache_dir) : eft__program_cache_dir()) != NULL)
        path = eft__asprintf("%s/%s-%s.eft", dir, *base ? base : "model", key);
    if (path && eft__path_exists(path)) {
        if (eft__program_open(path, prog, &cerr) == EFT_OK && ops->load(ops->ctx, *prog, &cerr) == EFT_OK) {
            EFT_LOGI("program cache: loaded %s", path);
            /* Mark it used, for the least-recently-used pruning; a read-only cache just stays as it is. */
            (void)utimensat(AT_FDCWD, path, NULL, 0);
            eft__free(path);
            eft__free(dir);
            return EFT_OK;
        }
        EFT_LOGW("program cache: %s; compiling again", cerr.msg);
        eft__program_close(*prog);
        *prog = NULL;
    }
    eft_status s = ops->build(ops->ctx, err);
    if (s == EFT_OK && path) {
        if (eft__mkdir_p(dir, &cerr) != EFT_OK || ops->save(ops->ctx, key, path, &cerr) != EFT_OK)
            EFT_LOGW("program cache: not written: %s", cerr.msg);
        else {
            EFT_LOGI("program cache: wrote %s", path);
            eft__program_cache_prune(dir, path, eft__program_cache_limit());
        }
    } else if (s == EFT_OK) {
        EFT_LOGW("program cache: no cache folder (%s)", cerr.status ? cerr.msg : "set EFT_CACHE_DIR or HOME");
    }
    eft__free(path);
    eft__free(dir);
    return s;
}

eft_status eft__mkdir_p(const char *dir, eft__error *err) {
    char *p = eft__strdup(dir);
    if (!p) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    size_t n = strlen(p);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != 0) continue;
        char c = p[i];
        p[i] = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            eft_status s = eft__fail(err, EFT_ERR_IO, "%s: cannot create the folder: %s", p, strerror(errno));
            eft__free(p);
            return s;
        }
        p[i] = c;
    }
    bool ok = eft__path_is_dir(dir);
    eft__free(p);
    return ok ? EFT_OK : eft__fail(err, EFT_ERR_IO, "%s: exists and is not a folder", dir);
}
