/*
 * model_ref.c — resolves a model reference to a local folder or GGUF file. Local paths win; an
 * id is then looked up in the Hugging Face hub cache with the hub's own layout:
 *   <cache>/models--org--name/refs/<revision>        holds a commit hash
 *   <cache>/models--org--name/snapshots/<commit>/    holds the files (symlinks to blobs)
 * Nothing here touches the network. Ids with '..' components are refused so that a reference
 * can never reach outside the cache.
 */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/model_ref.h"

#define REF_MAX_LEN 1024

bool eft__file_is_gguf(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    char magic[4];
    ssize_t n = read(fd, magic, sizeof magic);
    close(fd);
    return n == 4 && memcmp(magic, "GGUF", 4) == 0;
}

static bool ends_with_gguf(const char *s) {
    size_t n = strlen(s);
    return n >= 5 && strcasecmp(s + n - 5, ".gguf") == 0;
}

char *eft__hf_cache_dir(const char *cache_dir) {
    if (cache_dir && cache_dir[0]) return eft__strdup(cache_dir);
    const char *v = getenv("HF_HUB_CACHE");
    if (v && v[0]) return eft__strdup(v);
    v = getenv("HF_HOME");
    if (v && v[0]) return eft__path_join(v, "hub");
    v = getenv("HOME");
    return eft__path_join(v && v[0] ? v : "/", ".cache/huggingface/hub");
}

/* A file that exists: GGUF by its magic, or refused with what it is. */
static eft_status resolve_file(const char *path, char **out_path, eft__model_ref_kind *out_kind,
                               eft__error *err) {
    if (!eft__file_is_gguf(path)) {
        if (ends_with_gguf(path))
            return eft__fail(err, EFT_ERR_FORMAT, "%s: named .gguf but does not start with the GGUF "
                             "magic bytes: not a GGUF file (truncated download or a Git LFS pointer?)",
                             path);
        return eft__fail(err, EFT_ERR_UNSUPPORTED, "%s: a file that is not GGUF (no GGUF magic bytes); "
                         "pass a model folder or a .gguf file", path);
    }
    *out_path = eft__strdup(path);
    if (!*out_path) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    *out_kind = EFT__REF_GGUF;
    return EFT_OK;
}

/* A folder: itself, or its only .gguf file when it has no config.json. */
static eft_status resolve_dir(const char *dir, char **out_path, eft__model_ref_kind *out_kind,
                              eft__error *err) {
    if (!eft__path_exists_in(dir, "config.json")) {
        DIR *d = opendir(dir);
        struct dirent *e;
        char *only = NULL;
        int count = 0;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.' || !ends_with_gguf(e->d_name)) continue;
            if (++count == 1) only = eft__strdup(e->d_name);
        }
        if (d) closedir(d);
        if (count == 1 && only) {
            char *p = eft__path_join(dir, only);
            eft__free(only);
            if (!p) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
            eft_status st = resolve_file(p, out_path, out_kind, err);
            eft__free(p);
            return st;
        }
        eft__free(only);
        if (count > 1)
            return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "%s: no config.json and %d .gguf files; "
                             "name the one to use (a path, or org/name/<file>.gguf)", dir, count);
    }
    *out_path = eft__strdup(dir);
    if (!*out_path) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    *out_kind = EFT__REF_DIR;
    return EFT_OK;
}

static bool has_dotdot(const char *s) {
    for (const char *p = s; *p;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

static bool is_commit_hash(const char *s, size_t n) {
    if (n != 40) return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i])) return false;
    return true;
}

/* Characters the hub allows in an org or repo name. */
static bool is_id_part(const char *s, size_t n) {
    if (n == 0 || n > 96 || s[0] == '.') return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.') return false;
    return true;
}

/* The commit a revision names: the revision itself when it is a hash, else refs/<revision>. */
static eft_status read_commit(const char *repo, const char *id, const char *revision, char *commit,
                              eft__error *err) {
    size_t rn = strlen(revision);
    if (is_commit_hash(revision, rn)) {
        memcpy(commit, revision, 41);
        return EFT_OK;
    }
    char *refs = eft__path_join(repo, "refs");
    char *ref_path = refs ? eft__path_join(refs, revision) : NULL;
    eft__free(refs);
    if (!ref_path) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    char *buf = NULL;
    size_t n = 0;
    eft__error e2;
    eft_status st = eft__file_read_all(ref_path, 4096, &buf, &n, &e2);
    if (st != EFT_OK) {
        st = eft__fail(err, EFT_ERR_NOT_FOUND, "'%s' is in the Hugging Face cache but revision '%s' "
                       "is not (no %s); eft does not download models: fetch it first "
                       "(huggingface-cli download %s --revision %s)", id, revision, ref_path, id,
                       revision);
        eft__free(ref_path);
        return st;
    }
    while (n > 0 && isspace((unsigned char)buf[n - 1])) n--;
    size_t b = 0;
    while (b < n && isspace((unsigned char)buf[b])) b++;
    if (!is_commit_hash(buf + b, n - b)) {
        st = eft__fail(err, EFT_ERR_FORMAT, "%s: expected a 40-character commit hash, found %zu bytes",
                       ref_path, n - b);
    } else {
        memcpy(commit, buf + b, 40);
        commit[40] = 0;
    }
    eft__free(buf);
    eft__free(ref_path);
    return st;
}

static eft_status resolve_id(const char *ref, const char *cache_dir, const char *revision,
                             char **out_path, eft__model_ref_kind *out_kind, eft__error *err) {
    /* "org/name[/file...]" or a bare legacy "name[/file...]". */
    const char *s1 = strchr(ref, '/');
    const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
    size_t id_len = s2 ? (size_t)(s2 - ref) : strlen(ref);
    const char *rest = s2 ? s2 + 1 : NULL;
    bool ok = s1 ? is_id_part(ref, (size_t)(s1 - ref)) && is_id_part(s1 + 1, id_len - (size_t)(s1 - ref) - 1)
                 : is_id_part(ref, id_len);
    if (!ok || (rest && !rest[0]))
        return eft__fail(err, EFT_ERR_NOT_FOUND, "'%s': no such file or folder, and not a Hugging "
                         "Face id (org/name)", ref);
    char id[256];
    memcpy(id, ref, id_len);
    id[id_len] = 0;

    char *cache = eft__hf_cache_dir(cache_dir);
    if (!cache) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    /* models--org--name */
    char folder[300];
    size_t k = (size_t)snprintf(folder, sizeof folder, "models--");
    for (size_t i = 0; i < id_len && k + 3 < sizeof folder; i++) {
        if (id[i] == '/') {
            folder[k++] = '-';
            folder[k++] = '-';
        } else {
            folder[k++] = id[i];
        }
    }
    folder[k] = 0;
    char *repo = eft__path_join(cache, folder);
    char *snap = NULL, *path = NULL;
    eft_status st = EFT_OK;
    if (!repo) {
        st = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    if (!eft__path_is_dir(repo)) {
        st = eft__fail(err, EFT_ERR_NOT_FOUND, "'%s' is not a local folder or file, and not in the "
                       "Hugging Face cache at %s (no %s); eft does not download models: fetch it first "
                       "(huggingface-cli download %s) or pass a local path", ref, cache, folder, id);
        goto done;
    }
    char commit[41];
    if ((st = read_commit(repo, id, revision, commit, err))) goto done;
    char sub[64];
    snprintf(sub, sizeof sub, "snapshots/%s", commit);
    snap = eft__path_join(repo, sub);
    if (!snap) {
        st = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    if (!eft__path_is_dir(snap)) {
        st = eft__fail(err, EFT_ERR_NOT_FOUND, "'%s' revision '%s' is commit %s, but the cache has no "
                       "%s; fetch it first (huggingface-cli download %s --revision %s)", id, revision,
                       commit, snap, id, revision);
        goto done;
    }
    if (!rest) {
        st = resolve_dir(snap, out_path, out_kind, err);
        goto done;
    }
    path = eft__path_join(snap, rest);
    if (!path) {
        st = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    if (eft__path_is_dir(path)) st = resolve_dir(path, out_path, out_kind, err);
    else if (eft__path_exists(path)) st = resolve_file(path, out_path, out_kind, err);
    else
        st = eft__fail(err, EFT_ERR_NOT_FOUND, "'%s' is in the Hugging Face cache (%s) but has no file "
                       "'%s' at revision '%s'", id, snap, rest, revision);
done:
    eft__free(path);
    eft__free(snap);
    eft__free(repo);
    eft__free(cache);
    return st;
}

eft_status eft__model_ref_resolve(const char *ref, const char *cache_dir, const char *revision,
                                  char **out_path, eft__model_ref_kind *out_kind, eft__error *err) {
    *out_path = NULL;
    *out_kind = EFT__REF_DIR;
    if (!ref || !ref[0]) return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "empty model reference");
    if (strlen(ref) > REF_MAX_LEN)
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "model reference of %zu characters is over "
                         "eft's limit of %d", strlen(ref), REF_MAX_LEN);
    if (!revision || !revision[0]) revision = "main";

    struct stat st;
    if (stat(ref, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return resolve_dir(ref, out_path, out_kind, err);
        if (S_ISREG(st.st_mode)) return resolve_file(ref, out_path, out_kind, err);
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "%s: neither a folder nor a regular file", ref);
    }
    /* Not on disk: an explicit path stops here; anything else may be a hub id. */
    if (ref[0] == '/' || ref[0] == '.' || ref[0] == '~')
        return eft__fail(err, EFT_ERR_NOT_FOUND, "%s: no such file or folder", ref);
    if (has_dotdot(ref))
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "'%s': a Hugging Face id cannot contain '..'",
                         ref);
    if (has_dotdot(revision) || revision[0] == '/')
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "revision '%s' cannot contain '..' or start "
                         "with '/'", revision);
    return resolve_id(ref, cache_dir, revision, out_path, out_kind, err);
}
