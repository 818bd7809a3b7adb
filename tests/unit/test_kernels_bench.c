/* test_kernels_bench.c — the kernel benchmark runs end to end in quick mode through the public API,
 * prints every section, and refuses a missing line callback with a clear error. */
#include <string.h>

#include "eft.h"
#include "test.h"

typedef struct {
    char text[16384];
    size_t len;
    int lines;
} sink;

static void collect(const char *line, void *ud) {
    sink *s = ud;
    size_t n = strlen(line);
    if (s->len + n + 2 < sizeof s->text) {
        memcpy(s->text + s->len, line, n);
        s->len += n;
        s->text[s->len++] = '\n';
        s->text[s->len] = 0;
    }
    s->lines++;
}

static void test_bench_quick(void) {
    static sink s;
    eft_bench_params p = eft_bench_params_default();
    p.quick = 1;
    p.n_threads = 2;
    CHECK(eft_bench_kernels(&p, collect, &s) == EFT_OK);
    CHECK(s.lines > 8);
    CHECK_CONTAINS(s.text, "peak fma");
    CHECK_CONTAINS(s.text, "stream triad");
    CHECK_CONTAINS(s.text, "OpenBLAS");
    CHECK_CONTAINS(s.text, "GEMM  C[M,N]");
    CHECK_CONTAINS(s.text, "q8_0");
    CHECK_CONTAINS(s.text, "attention prefill");
    CHECK(strstr(s.text, "nan") == NULL && strstr(s.text, "inf") == NULL);
    if (t_fail_in_test) fputs(s.text, stderr);
}

static void test_bench_bad_args(void) {
    CHECK(eft_bench_kernels(NULL, NULL, NULL) == EFT_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(eft_last_error(), "line_fn");
}

int main(void) {
    RUN(test_bench_quick);
    RUN(test_bench_bad_args);
    return test_summary();
}
