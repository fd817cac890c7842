/* The part of cmocka's API that ember's tests use, for hosts without a
 * cmocka package (Debian has none for riscv64). Same names and meaning:
 * a failed assertion ends the test (longjmp back to the runner), skip()
 * marks it skipped, and the group's return value is the failure count.
 * Used only when meson finds no real cmocka. */
#ifndef EMBER_MINI_CMOCKA_H
#define EMBER_MINI_CMOCKA_H

#include <stdint.h>
#include <stddef.h>

typedef void (*CMUnitTestFunction)(void **state);
typedef int (*CMFixtureFunction)(void **state);

struct CMUnitTest {
    const char *name;
    CMUnitTestFunction test_func;
    CMFixtureFunction setup_func;
    CMFixtureFunction teardown_func;
    void *initial_state;
};

#define cmocka_unit_test(f) { #f, f, NULL, NULL, NULL }
#define cmocka_unit_test_prestate(f, s) { #f, f, NULL, NULL, s }
#define cmocka_run_group_tests(tests, setup, teardown)                                            \
    mini_cmocka_run(#tests, tests, sizeof(tests) / sizeof((tests)[0]), setup, teardown)

int mini_cmocka_run(const char *group, const struct CMUnitTest *tests, size_t n,
                    CMFixtureFunction setup, CMFixtureFunction teardown);

void mini_cmocka_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
void mini_cmocka_skip(const char *file, int line) __attribute__((noreturn));
void print_message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void print_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define MINI_FAIL(...) mini_cmocka_fail(__FILE__, __LINE__, __VA_ARGS__)
#define fail() MINI_FAIL("fail()")
#define fail_msg(...) MINI_FAIL(__VA_ARGS__)
#define skip() mini_cmocka_skip(__FILE__, __LINE__)

#define assert_true(c)                                                                            \
    do { if (!(c)) MINI_FAIL("%s is false", #c); } while (0)
#define assert_false(c)                                                                           \
    do { if (c) MINI_FAIL("%s is true", #c); } while (0)
#define assert_int_equal(a, b)                                                                    \
    do {                                                                                          \
        uintmax_t a_ = (uintmax_t)(a), b_ = (uintmax_t)(b);                                       \
        if (a_ != b_) MINI_FAIL("%jd != %jd (%s, %s)", (intmax_t)a_, (intmax_t)b_, #a, #b);      \
    } while (0)
#define assert_int_not_equal(a, b)                                                                \
    do {                                                                                          \
        uintmax_t a_ = (uintmax_t)(a), b_ = (uintmax_t)(b);                                       \
        if (a_ == b_) MINI_FAIL("%jd == %jd (%s, %s)", (intmax_t)a_, (intmax_t)b_, #a, #b);      \
    } while (0)
#define assert_ptr_equal(a, b)                                                                    \
    do { if ((const void *)(a) != (const void *)(b)) MINI_FAIL("%s != %s", #a, #b); } while (0)
#define assert_ptr_not_equal(a, b)                                                                \
    do { if ((const void *)(a) == (const void *)(b)) MINI_FAIL("%s == %s", #a, #b); } while (0)
#define assert_null(p) assert_ptr_equal(p, NULL)
#define assert_non_null(p) assert_ptr_not_equal(p, NULL)
int mini_cmocka_memcmp(const void *a, const void *b, size_t n);
int mini_cmocka_strcmp(const char *a, const char *b);
#define assert_memory_equal(a, b, n)                                                              \
    do { if (mini_cmocka_memcmp(a, b, n)) MINI_FAIL("%s and %s differ", #a, #b); } while (0)
#define assert_memory_not_equal(a, b, n)                                                          \
    do { if (!mini_cmocka_memcmp(a, b, n)) MINI_FAIL("%s and %s are equal", #a, #b); } while (0)
#define assert_string_equal(a, b)                                                                 \
    do {                                                                                          \
        if (mini_cmocka_strcmp(a, b)) MINI_FAIL("\"%s\" != \"%s\"", (a), (b));                   \
    } while (0)
#define assert_string_not_equal(a, b)                                                             \
    do {                                                                                          \
        if (!mini_cmocka_strcmp(a, b)) MINI_FAIL("\"%s\" == \"%s\"", (a), (b));                  \
    } while (0)

#endif
