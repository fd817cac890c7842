/* The pre-tokenizers on hand-made strings, each expected split written out
 * from the reference regex: contractions, digit groups, CJK, emoji,
 * combining marks, mixed whitespace and newlines, invalid UTF-8. */
#include <stdio.h>
#include <string.h>

#include <stdlib.h>

#include "common.h"
#include "lib/model.h"
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

static void test_deepseek_llm(void **state) {
    (void)state;
    int k = EM_PRE_DEEPSEEK_LLM;
    check(k, "Hello world\n\nBye", "Hello| world|\n|\n|Bye"); /* each newline alone */
    check(k, "x = 12345;", "x| =| |12345|;");
    /* its punctuation class [:-~] holds the ASCII letters too, so that step
     * takes "caf" and leaves the é alone */
    check(k, "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87\xe5\xad\x97",
          "caf|\xc3\xa9| |\xe4\xb8\xad\xe6\x96\x87\xe5\xad\x97");
    check(k, "don't  stop  ", "don|'|t| | stop|  "); /* \s+$ keeps trailing spaces */
    check(k, "\xe3\x80\x80\xe3\x80\x81ok\xef\xbc\x81", "\xe3\x80\x80\xe3\x80\x81|ok|\xef\xbc\x81");
}

static void test_deepseek_coder(void **state) {
    (void)state;
    int k = EM_PRE_DEEPSEEK_CODER;
    check(k, "def f(x):\n    return x+1", "def| f|(|x|):|\n|   | return| x|+|1");
    check(k, "a1b22 \xe4\xb8\xad\xe6\x96\x87", "a|1|b|2|2| |\xe4\xb8\xad\xe6\x96\x87");
    check(k, "e\xcc\x81t\xc3\xa9", "e|\xcc\x81|t\xc3\xa9"); /* a mark is not \p{L} */
}

static void test_deepseek_v3(void **state) {
    (void)state;
    int k = EM_PRE_DEEPSEEK3;
    check(k, "1234567 abc", "123|456|7| abc");
    check(k, "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xb2\xe3\x82\x89\xe3\x81\x8c\xe3\x81\xaa" "abc",
          "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xb2\xe3\x82\x89\xe3\x81\x8c\xe3\x81\xaa|abc");
    check(k, ".NET x.y", ".NET| x|.y"); /* ASCII punctuation leads ASCII letters */
    check(k, "(hello) world\n\n", "(hello|)| world|\n\n");
    check(k, "e\xcc\x81 n\xcc\x83o", "e\xcc\x81| n\xcc\x83o"); /* marks join letters */
}

static void test_falcon(void **state) {
    (void)state;
    int k = EM_PRE_FALCON;
    check(k, "x = 12 + 34567;", "x| |=| |12| |+| |345|67|;");
    check(k, "Hello,world!!", "Hello|,|world|!!");
    /* Digits runs on mapped bytes: the second byte of \xc2\xb2 maps to a digit */
    check(k, "\xc2\xb2 \xc2\xbd", "\xc2|\xb2| \xc2|\xbd");
}

static void test_gpt4o(void **state) {
    (void)state;
    int k = EM_PRE_GPT4O;
    check(k, "HelloWorld's ABCdef", "Hello|World's| ABCdef"); /* splits at case changes */
    check(k, "iPhone XR's", "i|Phone| XR's");
    check(k, "x = 1234567\n\n/path/to", "x| =| |123|456|7|\n\n|/path|/to");
    check(k, "\xc3\x89" "cole \xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7",
          "\xc3\x89" "cole| \xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7"); /* Lo counts as both cases */
}

static void test_long_runs(void **state) {
    (void)state;
    /* a long whitespace run not at the end must not be rescanned per start */
    static char text[200001];
    static uint32_t cps[200001], offs[200002];
    static em_piece pieces[200001];
    memset(text, ' ', 200000);
    text[199999] = 'x';
    for (int k = EM_PRE_GPT2; k <= EM_PRE_GPT4O; k++) {
        size_t n = em_pretok_split(k, text, 200000, cps, offs, pieces);
        assert_true(n >= 1 && n <= 4);
    }
}

/* SentencePiece encodes word by word when no piece joins words (linear
 * time); the ids must equal those of merging over the whole text. */
static void test_spm_words_apart(void **state) {
    (void)state;
    const char *names[] = { "llama-spm", "phi-3" };
    for (int k = 0; k < 2; k++) {
        char rel[128];
        snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", names[k]);
        const char *path = testdata_path(rel);
        ember_model_params p;
        ember_model_default_params(&p);
        p.vocab_only = 1;
        ember_model *m = NULL;
        assert_int_equal(ember_model_load_file(path, &p, &m), EMBER_OK);
        assert_true(m->vocab.spm_words_apart);
        snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf.inp", names[k]);
        size_t len;
        char *text = read_file(testdata_path(rel), &len);
        assert_non_null(text);
        size_t cap = 4 * len + 8, na = 0, nb = 0;
        int32_t *a = malloc(cap * sizeof *a), *b = malloc(cap * sizeof *b);
        assert_int_equal(ember_tokenize(m, text, len, a, cap, &na, 0), EMBER_OK);
        m->vocab.spm_words_apart = false;
        assert_int_equal(ember_tokenize(m, text, len, b, cap, &nb, 0), EMBER_OK);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * sizeof *a);
        print_message("%s: %zu bytes, %zu ids equal both ways\n", names[k], len, na);
        free(a);
        free(b);
        free(text);
        ember_model_free(&m);
    }
}

static void test_names(void **state) {
    (void)state;
    assert_int_equal(em_pretok_from_name("llama-bpe"), EM_PRE_LLAMA3);
    assert_int_equal(em_pretok_from_name("default"), EM_PRE_GPT2);
    assert_int_equal(em_pretok_from_name("no-such"), EM_PRE_UNKNOWN);
    const char *all[] = { "default", "gpt-2", "llama-bpe", "deepseek-llm", "deepseek-coder",
                          "deepseek-v3", "qwen2", "starcoder", "falcon", "mpt", "refact", "gpt-4o" };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        assert_int_not_equal(em_pretok_from_name(all[i]), EM_PRE_UNKNOWN);
        assert_non_null(strstr(em_pretok_names(), all[i]));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2), cmocka_unit_test(test_llama3), cmocka_unit_test(test_qwen2),
        cmocka_unit_test(test_starcoder), cmocka_unit_test(test_deepseek_llm),
        cmocka_unit_test(test_deepseek_coder), cmocka_unit_test(test_deepseek_v3),
        cmocka_unit_test(test_falcon), cmocka_unit_test(test_gpt4o),
        cmocka_unit_test(test_long_runs), cmocka_unit_test(test_spm_words_apart),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
