/*
 * file.c — read-only memory mappings of model files and small whole-file reads. Weights are
 * never copied: tensors are views into these mappings, bounds-checked by the readers.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

eft_status eft__file_map(eft__mapped_file *f, const char *path, eft__error *err) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return eft__fail(err, errno == ENOENT ? EFT_ERR_NOT_FOUND : EFT_ERR_IO, "%s: cannot open: %s",
                         path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return eft__fail(err, EFT_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return eft__fail(err, EFT_ERR_IO, "%s: not a regular file", path);
    }
    f->path = eft__strdup(path);
    if (!f->path) {
        close(fd);
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    f->size = (uint64_t)st.st_size;
    if (f->size > 0) {
        void *p = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            eft__free(f->path);
            memset(f, 0, sizeof *f);
            return eft__fail(err, EFT_ERR_IO, "%s: cannot map %llu bytes: %s", path,
                             (unsigned long long)st.st_size, strerror(e));
        }
        f->data = p;
    }
    close(fd);
    return EFT_OK;
}

void eft__file_unmap(eft__mapped_file *f) {
    if (!f) return;
    if (f->data) munmap((void *)f->data, (size_t)f->size);
    eft__free(f->path);
    memset(f, 0, sizeof *f);
}

eft_status eft__file_read_all(const char *path, uint64_t max_size, char **out, size_t *out_len,
                              eft__error *err) {
    *out = NULL;
    if (out_len) *out_len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return eft__fail(err, errno == ENOENT ? EFT_ERR_NOT_FOUND : EFT_ERR_IO, "%s: cannot open: %s",
                         path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return eft__fail(err, EFT_ERR_IO, "%s: not a readable regular file", path);
    }
    if ((uint64_t)st.st_size > max_size) {
        close(fd);
        return eft__fail(err, EFT_ERR_LIMIT, "%s: %llu bytes is over the limit of %llu bytes for this file",
                         path, (unsigned long long)st.st_size, (unsigned long long)max_size);
    }
    size_t n = (size_t)st.st_size;
    char *buf = eft__malloc(n + 1);
    if (!buf) {
        close(fd);
        return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            close(fd);
            eft__free(buf);
            return eft__fail(err, EFT_ERR_IO, "%s: read failed after %zu of %zu bytes%s%s", path, got, n,
                             e ? ": " : "", e ? strerror(e) : "");
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *out = buf;
    if (out_len) *out_len = n;
    return EFT_OK;
}

bool eft__path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

bool eft__path_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool eft__path_exists_in(const char *dir, const char *name) {
    char *p = eft__path_join(dir, name);
    bool r = p && eft__path_exists(p);
    eft__free(p);
    return r;
}

char *eft__path_join(const char *a, const char *b) {
    size_t la = strlen(a);
    while (la > 1 && a[la - 1] == '/') la--;
    return eft__asprintf("%.*s/%s", (int)la, a, b);
}

const char *eft__path_basename(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}
