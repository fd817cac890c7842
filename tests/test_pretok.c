/* The pre-tokenizers on hand-made strings, each expected split written out
 * from the reference regex: contractions, digit groups, CJK, emoji,
 * combining marks, mixed whitespace and newlines, invalid UTF-8. */
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "lib/tokenizer/pretok.h"

/* Splits text and joins the pieces with '|' for comparison. */
static void check(int kind, const char *text, const char *want) {
    size_t len = strlen(text);
    uint32_t cps[256], offs[257];
    em_piece pieces[256];
    size_t n = em_pretok_split(kind, text, len, cps, offs, pieces);
    char got[1024];
    size_t o = 0, covered = 0;
    for (size_t i = 0; i < n; i++) {
        if (i) got[o++] = '|';
        assert_int_equal(pieces[i].start, covered); /* in order, no gaps */
        memcpy(got + o, text + pieces[i].start, pieces[i].len);
        o += pieces[i].len;
        covered += pieces[i].len;
    }
    got[o] = 0;
    assert_int_equal(covered, len);
    if (strcmp(got, want) != 0) print_error("kind %d: '%s' -> '%s', want '%s'\n", kind, text, got, want);
    assert_string_equal(got, want);
}

static void test_gpt2(void **state) {
    (void)state;
    int k = EM_PRE_GPT2;
    check(k, "Hello world", "Hello| world");
    check(k, "I'm here, you'll see", "I|'m| here|,| you|'ll| see");
    check(k, "IT'S", "IT|'|S"); /* contractions are case-sensitive here */
    check(k, "abc 12345 x", "abc| 12345| x");
    check(k, "a   b", "a|  | b"); /* the last space goes with the word */
    check(k, "a \n\n b", "a| \n\n| b");
    check(k, "end   ", "end|   ");
    check(k, "caf\xc3\xa9 na\xc3\xafve", "caf\xc3\xa9| na\xc3\xafve");
    check(k, "e\xcc\x81", "e|\xcc\x81"); /* a combining mark is not a letter */
    check(k, "\xe4\xbd\xa0\xe5\xa5\xbd \xe4\xb8\x96", "\xe4\xbd\xa0\xe5\xa5\xbd| \xe4\xb8\x96");
    check(k, "hi \xf0\x9f\xa6\x99!", "hi| \xf0\x9f\xa6\x99!");
    check(k, "x\xff\xfey", "x|\xff\xfe|y"); /* invalid bytes: kept, as "other" */
}

static void test_llama3(void **state) {
    (void)state;
    int k = EM_PRE_LLAMA3;
    check(k, "Hello world", "Hello| world");
    check(k, "IT'S I'M", "IT|'S| I|'M"); /* case-insensitive contractions */
    check(k, "1234567", "123|456|7");
    check(k, "x=12", "x|=|12");
    check(k, "(hello)", "(hello|)"); /* one non-letter may lead a word */
    check(k, "a\n\nb", "a|\n\n|b");
    check(k, "a  \n  b", "a|  \n| | b"); /* \s+(?!\S) backtracks to one space */
    check(k, "!!!\n\nx", "!!!\n\n|x");
    check(k, "a   b", "a|  | b");
    check(k, "\xe4\xbd\xa0\xe5\xa5\xbd" "123", "\xe4\xbd\xa0\xe5\xa5\xbd|123");
}

static void test_qwen2(void **state) {
    (void)state;
    check(EM_PRE_QWEN2, "1234 ab", "1|2|3|4| ab");
    check(EM_PRE_QWEN2, "x'LL", "x|'LL");
}

static void test_starcoder(void **state) {
    (void)state;
    check(EM_PRE_STARCODER, "x = 123;", "x| =| |1|2|3|;");
    check(EM_PRE_STARCODER, "v2 ok", "v|2| ok");
}

static void test_names(void **state) {
    (void)state;
    assert_int_equal(em_pretok_from_name("llama-bpe"), EM_PRE_LLAMA3);
    assert_int_equal(em_pretok_from_name("default"), EM_PRE_GPT2);
    assert_int_equal(em_pretok_from_name("no-such"), EM_PRE_UNKNOWN);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2), cmocka_unit_test(test_llama3), cmocka_unit_test(test_qwen2),
        cmocka_unit_test(test_starcoder), cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
