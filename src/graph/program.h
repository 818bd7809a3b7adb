/*
 * program.h — compiled programs on disk: one mmap-able file that holds what compiling a model
 * produced (weights packed into the kernels' layout, small f32 vectors), described by a JSON
 * header (what was compiled, from which model files, with which options, for which eft and ISA).
 * The writer never leaves a half-written program behind (temp file + rename); the reader checks
 * every offset and size against the file, so a truncated or corrupt program is a clear error.
 * Also the cache's pieces: where programs live, and the hashes that key them.
 *
 * Layout (little-endian, every blob 64-byte aligned so panels can be used in place):
 *
 *   0   magic "EFTPROG\0"                 8 bytes
 *   8   u32 format version (1)            12  u32 fixed header size (64)
 *   16  u64 file size                      24  u64 JSON offset (64)
 *   32  u64 JSON size                      40  u64 table offset (64-aligned)
 *   48  u64 blob count                     56  u64 FNV-1a 64 of bytes [0, 56) + [64, table end)
 *   64  JSON header (UTF-8, no NUL), zero-padded to 64
 *       table: one 128-byte entry per blob: name[96] (NUL-terminated), u64 offset, u64 size,
 *       u32 dtype, u32 zero, u64 zero
 *       blobs, each at a multiple of 64, zero-padded between
 */
#ifndef EFT_GRAPH_PROGRAM_H
#define EFT_GRAPH_PROGRAM_H

#include "core/core.h"

#define EFT__PROGRAM_MAGIC "EFTPROG"   /* 7 characters + the NUL = 8 bytes */
#define EFT__PROGRAM_VERSION 2u /* 2: encoders carry their graph */
#define EFT__PROGRAM_ALIGN 64u
#define EFT__PROGRAM_NAME_MAX 96       /* bytes of a table entry's name, NUL included */
#define EFT__PROGRAM_MAX_BLOBS 65536u
#define EFT__PROGRAM_MAX_JSON (16u << 20)
/* The file name `eft compile -o DIR` writes inside DIR. */
#define EFT__PROGRAM_FILE "program.eft"

/* ---------------------------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------------------------- */

typedef struct eft__program eft__program;

typedef struct eft__program_blob {
    const char *name; /* borrowed from the mapping */
    eft_dtype dtype;
    const void *data; /* 64-byte aligned inside the mapping; NULL when size is 0 */
    uint64_t size;    /* bytes */
} eft__program_blob;

/* True when the file at path starts with the program magic (no other check). */
bool eft__program_is_program(const char *path);
/* The program file a reference names: path itself when it is a program file, path/program.eft
 * when path is a folder holding one; NULL otherwise (or out of memory). Caller frees. */
char *eft__program_resolve(const char *path);

/* Maps path read-only and validates the fixed header, the checksum over header, JSON and table,
 * the JSON (an object) and every table entry (name NUL-terminated, non-empty and unique; dtype
 * known; size a whole number of elements; offset aligned; the blob inside the file, after the
 * table). On failure *out is NULL and err names the file, the entry and the numbers. */
eft_status eft__program_open(const char *path, eft__program **out, eft__error *err);
/* The same over bytes the caller keeps alive for the handle's life (fuzzing, tests). */
eft_status eft__program_open_memory(const uint8_t *data, uint64_t size, const char *label, eft__program **out,
                                    eft__error *err);
void eft__program_close(eft__program *p); /* NULL is a no-op */

const char *eft__program_path(const eft__program *p); /* the path or label */
uint64_t eft__program_size(const eft__program *p);    /* bytes of the file */
/* The parsed JSON header (an object), borrowed until close. */
const struct json_t *eft__program_header(const eft__program *p);
/* The header's text, NUL-terminated, borrowed until close. */
const char *eft__program_header_text(const eft__program *p);
size_t eft__program_blob_count(const eft__program *p);
const eft__program_blob *eft__program_blob_at(const eft__program *p, size_t i);
const eft__program_blob *eft__program_find(const eft__program *p, const char *name); /* NULL: absent */

/* ---------------------------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------------------------- */

typedef struct eft__program_writer eft__program_writer;

eft_status eft__program_writer_new(eft__program_writer **out, eft__error *err);
/* Adds a blob; name is copied, data borrowed until eft__program_writer_write. A name that is
 * empty, too long or already added is EFT_ERR_INVALID_ARGUMENT. */
eft_status eft__program_writer_add(eft__program_writer *w, const char *name, eft_dtype dtype, const void *data,
                                   uint64_t size, eft__error *err);
/* Writes header_json (a JSON object's text) and the blobs to a temporary file next to path, syncs
 * it and renames it over path: a reader sees the old program, the new one, or none, never half of
 * one. On failure the temporary file is removed. */
eft_status eft__program_writer_write(eft__program_writer *w, const char *path, const char *header_json,
                                     eft__error *err);
void eft__program_writer_free(eft__program_writer *w); /* NULL is a no-op */

/* ---------------------------------------------------------------------------------------------
 * Hashing and the cache
 * ------------------------------------------------------------------------------------------- */

#define EFT__FNV1A64_INIT 0xcbf29ce484222325ull
uint64_t eft__fnv1a64(uint64_t h, const void *data, size_t n);

/* A fingerprint of files, in the given order: for each, its base name, size, modification time
 * (ns) and the first and last MiB of its content; a missing file counts as "absent". Reading
 * 2 MiB per file keeps this at a millisecond or two however large the weights are, while any
 * rewrite (which moves the mtime) or change of the safetensors header (at the start) shows. */
eft_status eft__program_hash_files(const char *const *paths, size_t n, uint64_t *out, eft__error *err);

/* The cache folder: $EFT_CACHE_DIR, else $XDG_CACHE_HOME/eft, else $HOME/.cache/eft; NULL when
 * none can be named (or out of memory). Caller frees. Not created. */
char *eft__program_cache_dir(void);
/* The program cache's one policy, for every kind of model: the program for key in cache_dir
 * (NULL: eft__program_cache_dir()) is opened and loaded when it is there and valid; otherwise the
 * model is built from its files and then written there, best effort (a failure is a warning, not
 * an error). ops->key fails (its message logged) when no key can be made: build only. */
typedef struct eft__program_cache_ops {
    void *ctx;
    eft_status (*key)(void *ctx, char out[17], eft__error *err);
    eft_status (*load)(void *ctx, const eft__program *prog, eft__error *err); /* may keep borrowing prog */
    eft_status (*build)(void *ctx, eft__error *err);
    eft_status (*save)(void *ctx, const char *key, const char *path, eft__error *err); /* what build made */
} eft__program_cache_ops;

/* Runs ops through the cache for a model whose path names the entry (its basename + key). On a
 * hit *prog is the open program the loaded model borrows (the caller closes it after the model);
 * otherwise *prog is NULL. Returns build's status, or EFT_OK on a hit. */
eft_status eft__program_cached(const char *cache_dir, const char *model_path, const eft__program_cache_ops *ops,
                               eft__program **prog, eft__error *err);
/* The cache's bound: programs are a model's size or more (a 1B model converted to f32 is 4 GiB),
 * so an unbounded cache fills a disk one model revision or weight type at a time. After each
 * write the cache keeps at most this many bytes, removing least recently used entries first
 * (a hit counts as a use). $EFT_CACHE_MAX ("20G", "500M", a byte count; 0: no bound), else
 * EFT__PROGRAM_CACHE_DEFAULT_MAX. */
#define EFT__PROGRAM_CACHE_DEFAULT_MAX ((uint64_t)20 << 30)
uint64_t eft__program_cache_limit(void);
/* Removes cache entries of dir (files named <name>-<16 hex>.eft, nothing else), oldest mtime
 * first, until the rest fit in limit bytes, never keep (a path, or NULL); also temporary files
 * of writers that stopped over a day ago. limit 0: nothing is removed. Best effort, logged. */
void eft__program_cache_prune(const char *dir, const char *keep, uint64_t limit);
/* mkdir -p; EFT_ERR_IO naming the part that failed. */
eft_status eft__mkdir_p(const char *dir, eft__error *err);

#endif /* EFT_GRAPH_PROGRAM_H */
