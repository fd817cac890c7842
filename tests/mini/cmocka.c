#include "cmocka.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { RUNNING, FAILED, SKIPPED };
static jmp_buf test_env;
static int test_result;

void print_message(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

void print_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

void mini_cmocka_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("[  ERROR   ] --- ");
    vprintf(fmt, ap);
    printf("\n[   LINE   ] --- %s:%d: error: Failure!\n", file, line);
    va_end(ap);
    fflush(stdout);
    test_result = FAILED;
    longjmp(test_env, 1);
}

void mini_cmocka_skip(const char *file, int line) {
    (void)file;
    (void)line;
    test_result = SKIPPED;
    longjmp(test_env, 1);
}

int mini_cmocka_memcmp(const void *a, const void *b, size_t n) {
    if (!a || !b) return a != b;
    return memcmp(a, b, n) != 0;
}

int mini_cmocka_strcmp(const char *a, const char *b) {
    if (!a || !b) return a != b;
    return strcmp(a, b) != 0;
}

/* A fixture or test that returns through a failed assertion counts as a
 * failure; volatile keeps the counters across longjmp. */
static int run_one(const struct CMUnitTest *t, void **state) {
    test_result = RUNNING;
    if (setjmp(test_env) == 0) {
        if (t->setup_func && t->setup_func(state)) {
            printf("[  ERROR   ] %s setup failed\n", t->name);
            return FAILED;
        }
        t->test_func(state);
        if (t->teardown_func && t->teardown_func(state)) return FAILED;
    }
    return test_result;
}

int mini_cmocka_run(const char *group, const struct CMUnitTest *tests, size_t n,
                    CMFixtureFunction setup, CMFixtureFunction teardown) {
    void *group_state = NULL;
    volatile int failed = 0, skipped = 0;
    printf("[==========] %s: Running %zu test(s).\n", group, n);
    test_result = RUNNING;
    if (setup && setjmp(test_env) == 0 && setup(&group_state)) {
        printf("[  ERROR   ] %s: group setup failed\n", group);
        return (int)n;
    }
    if (test_result != RUNNING) return (int)n;
    for (size_t i = 0; i < n; i++) {
        void *state = tests[i].initial_state ? tests[i].initial_state : group_state;
        printf("[ RUN      ] %s\n", tests[i].name);
        fflush(stdout);
        int r = run_one(&tests[i], &state);
        if (r == FAILED) failed++;
        if (r == SKIPPED) skipped++;
        printf("%s %s\n", r == FAILED ? "[  FAILED  ]" : r == SKIPPED ? "[  SKIPPED ]" : "[       OK ]",
               tests[i].name);
    }
    if (teardown) teardown(&group_state);
    printf("[==========] %s: %zu test(s) run.\n[  PASSED  ] %zu test(s).\n", group, n,
           n - (size_t)failed - (size_t)skipped);
    if (skipped) printf("[  SKIPPED ] %d test(s).\n", skipped);
    if (failed) printf("[  FAILED  ] %d test(s).\n", failed);
    fflush(stdout);
    return failed;
}
