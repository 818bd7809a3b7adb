/*
 * test_model_ref.c — model references against a fake Hugging Face cache built in a scratch
 * folder: an id through refs/main, a revision given as a commit hash or a branch, a missing id
 * and a missing revision (messages checked), ids with '..', local folders, GGUF files found by
 * their magic bytes (and a .gguf-named file without it refused), a snapshot holding one .gguf,
 * "org/name/file.gguf", and where the cache is looked for.
 */
#include <stdlib.h>
#include <sys/stat.h>

#include "formats/model_ref.h"
#include "test.h"

#define HASH1 "0123456789abcdef0123456789abcdef01234567"
#define HASH2 "fedcba9876543210fedcba9876543210fedcba98"

static void write_file(const char *path, const char *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        return;
    }
    fwrite(data, 1, n, f);
    fclose(f);
}

static void mkdirs(const char *path) {
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "cannot create %s\n", path);
}

static char g_cache[4096];

/* <cache>/models--org--name: refs/main -> HASH1 (config.json); refs/v2 -> HASH2 (two .gguf
 * files); <cache>/models--org--gguf-only: one .gguf in main's snapshot. */
static void build_cache(void) {
    snprintf(g_cache, sizeof g_cache, "%s", test_tmpdir("hf_cache"));
    char p[4600];
    snprintf(p, sizeof p, "%s/models--org--name/refs", g_cache);
    mkdirs(p);
    snprintf(p, sizeof p, "%s/models--org--name/refs/main", g_cache);
    write_file(p, HASH1 "\n", 41);
    snprintf(p, sizeof p, "%s/models--org--name/refs/v2", g_cache);
    write_file(p, HASH2, 40);
    snprintf(p, sizeof p, "%s/models--org--name/snapshots/" HASH1, g_cache);
    mkdirs(p);
    snprintf(p, sizeof p, "%s/models--org--name/snapshots/" HASH1 "/config.json", g_cache);
    write_file(p, "{}", 2);
    snprintf(p, sizeof p, "%s/models--org--name/snapshots/" HASH2, g_cache);
    mkdirs(p);
    snprintf(p, sizeof p, "%s/models--org--name/snapshots/" HASH2 "/a.gguf", g_cache);
    write_file(p, "GGUF\3\0\0\0", 8);
    snprintf(p, sizeof p, "%s/models--org--name/snapshots/" HASH2 "/b.gguf", g_cache);
    write_file(p, "GGUF\3\0\0\0", 8);
    snprintf(p, sizeof p, "%s/models--org--gguf-only/refs", g_cache);
    mkdirs(p);
    snprintf(p, sizeof p, "%s/models--org--gguf-only/refs/main", g_cache);
    write_file(p, HASH1, 40);
    snprintf(p, sizeof p, "%s/models--org--gguf-only/snapshots/" HASH1, g_cache);
    mkdirs(p);
    snprintf(p, sizeof p, "%s/models--org--gguf-only/snapshots/" HASH1 "/model-Q4_K_M.gguf", g_cache);
    write_file(p, "GGUF\3\0\0\0", 8);
}

static eft_status resolve(const char *ref, const char *rev, char **path, eft__model_ref_kind *kind,
                          eft__error *e) {
    eft__error_clear(e);
    *path = NULL;
    return eft__model_ref_resolve(ref, g_cache, rev, path, kind, e);
}

static void test_hf_id(void) {
    char *path;
    eft__model_ref_kind kind;
    eft__error e;
    CHECK_EQ_INT(resolve("org/name", NULL, &path, &kind, &e), EFT_OK);
    CHECK_EQ_INT(kind, EFT__REF_DIR);
    CHECK_CONTAINS(path, "models--org--name/snapshots/" HASH1);
    eft__free(path);
    /* A commit hash as the revision, without refs. */
    CHECK_EQ_INT(resolve("org/name", HASH1, &path, &kind, &e), EFT_OK);
    CHECK_CONTAINS(path, "snapshots/" HASH1);
    eft__free(path);
    /* A branch whose snapshot holds two .gguf files: pick one explicitly. */
    CHECK_EQ_INT(resolve("org/name", "v2", &path, &kind, &e), EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(e.msg, "2 .gguf files");
    CHECK_EQ_INT(resolve("org/name/b.gguf", "v2", &path, &kind, &e), EFT_OK);
    CHECK_EQ_INT(kind, EFT__REF_GGUF);
    CHECK_CONTAINS(path, "snapshots/" HASH2 "/b.gguf");
    eft__free(path);
    /* One .gguf and no config.json: that file. */
    CHECK_EQ_INT(resolve("org/gguf-only", NULL, &path, &kind, &e), EFT_OK);
    CHECK_EQ_INT(kind, EFT__REF_GGUF);
    CHECK_CONTAINS(path, "model-Q4_K_M.gguf");
    eft__free(path);
}

static void test_hf_misses(void) {
    char *path;
    eft__model_ref_kind kind;
    eft__error e;
    CHECK_EQ_INT(resolve("org/missing", NULL, &path, &kind, &e), EFT_ERR_NOT_FOUND);
    CHECK(path == NULL);
    CHECK_CONTAINS(e.msg, "'org/missing' is not a local folder or file");
    CHECK_CONTAINS(e.msg, g_cache);
    CHECK_CONTAINS(e.msg, "no models--org--missing");
    CHECK_CONTAINS(e.msg, "huggingface-cli download org/missing");
    CHECK_CONTAINS(e.msg, "does not download");
    CHECK_EQ_INT(resolve("org/name", "dev", &path, &kind, &e), EFT_ERR_NOT_FOUND);
    CHECK_CONTAINS(e.msg, "revision 'dev'");
    CHECK_CONTAINS(e.msg, "refs/dev");
    CHECK_EQ_INT(resolve("org/name", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &path, &kind, &e),
                 EFT_ERR_NOT_FOUND);
    CHECK_CONTAINS(e.msg, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    CHECK_EQ_INT(resolve("org/name/nope.gguf", NULL, &path, &kind, &e), EFT_ERR_NOT_FOUND);
    CHECK_CONTAINS(e.msg, "'nope.gguf'");
    CHECK_EQ_INT(resolve("org/../../etc", NULL, &path, &kind, &e), EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(e.msg, "'..'");
    CHECK_EQ_INT(resolve("org/name/../../x", NULL, &path, &kind, &e), EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(e.msg, "'..'");
    CHECK_EQ_INT(resolve("org/name", "../../x", &path, &kind, &e), EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(e.msg, "revision '../../x'");
    CHECK_EQ_INT(resolve("/no/such/folder", NULL, &path, &kind, &e), EFT_ERR_NOT_FOUND);
    CHECK_CONTAINS(e.msg, "/no/such/folder");
    CHECK_EQ_INT(resolve("", NULL, &path, &kind, &e), EFT_ERR_INVALID_ARGUMENT);
    /* A broken refs file. */
    char p[4600];
    snprintf(p, sizeof p, "%s/models--org--name/refs/broken", g_cache);
    write_file(p, "not-a-hash", 10);
    CHECK_EQ_INT(resolve("org/name", "broken", &path, &kind, &e), EFT_ERR_FORMAT);
    CHECK_CONTAINS(e.msg, "refs/broken");
}

static void test_local(void) {
    const char *d = test_tmpdir("local_ref");
    char dir[4200], p[4300];
    snprintf(dir, sizeof dir, "%s", d);
    char *path;
    eft__model_ref_kind kind;
    eft__error e;
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_file(p, "{}", 2);
    CHECK_EQ_INT(resolve(dir, NULL, &path, &kind, &e), EFT_OK);
    CHECK_EQ_INT(kind, EFT__REF_DIR);
    CHECK_EQ_STR(path, dir);
    eft__free(path);

    snprintf(p, sizeof p, "%s/model.gguf", dir);
    write_file(p, "GGUF\3\0\0\0\0\0\0\0", 12);
    CHECK_EQ_INT(resolve(p, NULL, &path, &kind, &e), EFT_OK);
    CHECK_EQ_INT(kind, EFT__REF_GGUF);
    CHECK_EQ_STR(path, p);
    CHECK(eft__file_is_gguf(p));
    eft__free(path);
    /* The magic, not the name, decides. */
    snprintf(p, sizeof p, "%s/weights.bin", dir);
    write_file(p, "GGUF\3\0\0\0", 8);
    CHECK_EQ_INT(resolve(p, NULL, &path, &kind, &e), EFT_OK);
    CHECK_EQ_INT(kind, EFT__REF_GGUF);
    eft__free(path);
    snprintf(p, sizeof p, "%s/fake.gguf", dir);
    write_file(p, "version https://git-lfs.github.com/spec/v1\n", 43);
    CHECK_EQ_INT(resolve(p, NULL, &path, &kind, &e), EFT_ERR_FORMAT);
    CHECK_CONTAINS(e.msg, "fake.gguf");
    CHECK_CONTAINS(e.msg, "GGUF magic");
    CHECK(!eft__file_is_gguf(p));
    snprintf(p, sizeof p, "%s/config.json", dir);
    CHECK_EQ_INT(resolve(p, NULL, &path, &kind, &e), EFT_ERR_UNSUPPORTED);
    CHECK_CONTAINS(e.msg, "config.json");
    CHECK_CONTAINS(e.msg, "not GGUF");
    snprintf(p, sizeof p, "%s/short.gguf", dir);
    write_file(p, "GG", 2);
    CHECK_EQ_INT(resolve(p, NULL, &path, &kind, &e), EFT_ERR_FORMAT);
}

static void test_cache_location(void) {
    char *saved_hub = getenv("HF_HUB_CACHE") ? strdup(getenv("HF_HUB_CACHE")) : NULL;
    char *saved_home = getenv("HF_HOME") ? strdup(getenv("HF_HOME")) : NULL;
    char *c = eft__hf_cache_dir("/explicit");
    CHECK_EQ_STR(c, "/explicit");
    eft__free(c);
    setenv("HF_HUB_CACHE", "/hub-cache", 1);
    setenv("HF_HOME", "/hf-home", 1);
    c = eft__hf_cache_dir(NULL);
    CHECK_EQ_STR(c, "/hub-cache");
    eft__free(c);
    unsetenv("HF_HUB_CACHE");
    c = eft__hf_cache_dir(NULL);
    CHECK_EQ_STR(c, "/hf-home/hub");
    eft__free(c);
    unsetenv("HF_HOME");
    c = eft__hf_cache_dir(NULL);
    CHECK_CONTAINS(c, ".cache/huggingface/hub");
    eft__free(c);
    /* The environment is used when no cache folder is passed. */
    setenv("HF_HUB_CACHE", g_cache, 1);
    char *path = NULL;
    eft__model_ref_kind kind;
    eft__error e;
    CHECK_EQ_INT(eft__model_ref_resolve("org/name", NULL, NULL, &path, &kind, &e), EFT_OK);
    CHECK_CONTAINS(path, HASH1);
    eft__free(path);
    if (saved_hub) setenv("HF_HUB_CACHE", saved_hub, 1);
    else unsetenv("HF_HUB_CACHE");
    if (saved_home) setenv("HF_HOME", saved_home, 1);
    free(saved_hub);
    free(saved_home);
}

int main(void) {
    build_cache();
    RUN(test_hf_id);
    RUN(test_hf_misses);
    RUN(test_local);
    RUN(test_cache_location);
    return test_summary();
}
