/*
 * test.h — the unit-test harness: CHECK macros that count failures without stopping, a runner
 * that prints one line per test, and a summary "N passed, N failed" with a non-zero exit status
 * when anything failed. Header-only; each test file has its own main().
 */
#ifndef EFT_TEST_H
#define EFT_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_fail_in_test;
static int t_passed, t_failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            t_fail_in_test++;                                                                      \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);             \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            t_fail_in_test++;                                                                      \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);             \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long t_a = (long long)(a), t_b = (long long)(b);                                      \
        if (t_a != t_b) {                                                                          \
            t_fail_in_test++;                                                                      \
            fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b, \
                    t_a, t_b);                                                                     \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *t_a = (a), *t_b = (b);                                                         \
        if (!t_a || !t_b || strcmp(t_a, t_b) != 0) {                                               \
            t_fail_in_test++;                                                                      \
            fprintf(stderr, "  %s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a, \
                    #b, t_a ? t_a : "(null)", t_b ? t_b : "(null)");                               \
        }                                                                                          \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double t_a = (double)(a), t_b = (double)(b);                                               \
        if (!(fabs(t_a - t_b) <= (tol))) {                                                         \
            t_fail_in_test++;                                                                      \
            fprintf(stderr, "  %s:%d: |%s - %s| <= %g failed: %.9g vs %.9g\n", __FILE__, __LINE__, \
                    #a, #b, (double)(tol), t_a, t_b);                                              \
        }                                                                                          \
    } while (0)

/* Checks that msg contains needle (error messages must name what went wrong). */
#define CHECK_CONTAINS(msg, needle)                                                                \
    do {                                                                                           \
        const char *t_m = (msg), *t_n = (needle);                                                  \
        if (!t_m || !strstr(t_m, t_n)) {                                                           \
            t_fail_in_test++;                                                                      \
            fprintf(stderr, "  %s:%d: expected \"%s\" in \"%s\"\n", __FILE__, __LINE__, t_n,        \
                    t_m ? t_m : "(null)");                                                         \
        }                                                                                          \
    } while (0)

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        t_fail_in_test = 0;                                                                        \
        fn();                                                                                      \
        if (t_fail_in_test) {                                                                      \
            t_failed++;                                                                            \
            printf("FAIL %s\n", #fn);                                                              \
        } else {                                                                                   \
            t_passed++;                                                                            \
            printf("ok   %s\n", #fn);                                                              \
        }                                                                                          \
        fflush(stdout);                                                                            \
    } while (0)

static inline int test_summary(void) {
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}

/* Path of a file under the source tree (tests/fixtures/...), in a static buffer. */
static inline const char *test_path(const char *rel) {
    static char buf[4][4096];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", EFT_SOURCE_DIR, rel);
    return b;
}

/* A scratch directory for this test binary, created fresh under the build tree. */
static inline const char *test_tmpdir(const char *name) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/test-tmp/%s", EFT_BINARY_DIR, name);
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", buf, buf);
    if (system(cmd) != 0) fprintf(stderr, "cannot create %s\n", buf);
    return buf;
}

#endif /* EFT_TEST_H */
