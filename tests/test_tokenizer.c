/* llama.cpp's tokenizer test vectors (ids from Hugging Face tokenizers) for
 * every vocabulary in testdata/vocab: SentencePiece (llama-spm, phi-3) and
 * byte-level BPE (gpt-2, starcoder, deepseek-llm). Every case must give
 * exactly the expected ids (encoded without BOS), and detokenizing gives
 * the text back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static ember_model *load_vocab(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", name);
    const char *path = testdata_path(rel);
    ember_model_params p;
    ember_model_default_params(&p);
    p.vocab_only = 1;
    ember_model *m = NULL;
    int rc = ember_model_load_file(path, &p, &m);
    if (rc) print_error("%s\n", ember_last_error());
    assert_int_equal(rc, EMBER_OK);
    return m;
}

/* Whole, valid UTF-8 characters only. */
static int utf8_valid(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                   : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || i + len > n) return 0;
        for (size_t k = 1; k < len; k++)
            if (((unsigned char)s[i + k] & 0xC0) != 0x80) return 0;
        i += len;
    }
    return 1;
}

/* Streams ids through a detok stream: every chunk must be whole characters
 * (when the text is valid UTF-8) and the chunks together the full text. */
static int stream_matches(ember_model *m, const int32_t *ids, size_t n, const char *text,
                          size_t len, uint32_t flags) {
    ember_detok_stream *st = NULL;
    assert_int_equal(ember_detok_stream_create(m, flags, &st), EMBER_OK);
    char all[4096], chunk[512];
    size_t total = 0, nb = 0;
    int ok = 1, valid = utf8_valid(text, len);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ember_detok_stream_push(st, ids[i], chunk, sizeof chunk, &nb), EMBER_OK);
        if (valid && !utf8_valid(chunk, nb)) ok = 0;
        memcpy(all + total, chunk, nb);
        total += nb;
    }
    assert_int_equal(ember_detok_stream_flush(st, chunk, sizeof chunk, &nb), EMBER_OK);
    memcpy(all + total, chunk, nb);
    total += nb;
    ember_detok_stream_free(&st);
    assert_null(st);
    return ok && total == len && memcmp(all, text, len) == 0;
}

static void run_vectors(const char *name) {
    ember_model *m = load_vocab(name);
    char rel[256];
    size_t n_inp, n_out;
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf.inp", name);
    char *inp = read_file(testdata_path(rel), &n_inp);
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf.out", name);
    char *out = read_file(testdata_path(rel), &n_out);
    assert_non_null(inp);
    assert_non_null(out);
    const char *sep = "\n__ggml_vocab_test__\n";
    char *p = inp, *line = out;
    int cases = 0, failed = 0;
    while (p && *p) {
        char *end = strstr(p, sep);
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char *eol = strchr(line, '\n');
        if (!eol) break;
        *eol = 0;
        int32_t want[512], got[512];
        int nw = 0;
        for (char *q = line; *q;) {
            char *e;
            long v = strtol(q, &e, 10);
            if (e == q) break;
            want[nw++] = (int32_t)v;
            q = e;
        }
        size_t ng = 0;
        int rc = ember_tokenize(m, p, len, got, 512, &ng, 0);
        assert_int_equal(rc, EMBER_OK);
        if ((int)ng != nw || memcmp(got, want, ng * sizeof *got) != 0) {
            failed++;
            print_error("%s case %d '%.*s': got %zu tokens, want %d\n", name, cases, (int)len, p,
                        ng, nw);
        }
        /* round trip, minus the prefix space the (SentencePiece) tokenizer added */
        char text[2048];
        size_t nb = 0;
        assert_int_equal(ember_detokenize(m, got, ng, text, sizeof text, &nb,
                                          EMBER_DETOKENIZE_STRIP_SPACE), EMBER_OK);
        if (nb != len || memcmp(text, p, len) != 0) {
            failed++;
            print_error("%s case %d: detokenized '%.*s'\n", name, cases, (int)nb, text);
        }
        if (!stream_matches(m, got, ng, p, len, EMBER_DETOKENIZE_STRIP_SPACE)) {
            failed++;
            print_error("%s case %d: streamed text differs or split a character\n", name, cases);
        }
        cases++;
        line = eol + 1;
        p = end ? end + strlen(sep) : NULL;
    }
    print_message("%s: %d cases\n", name, cases);
    assert_true(cases >= 40);
    assert_int_equal(failed, 0);
    free(inp);
    free(out);
    ember_model_free(&m);
}

static void test_llama_spm(void **state) { (void)state; run_vectors("llama-spm"); }
static void test_gpt2(void **state) { (void)state; run_vectors("gpt-2"); }
static void test_starcoder(void **state) { (void)state; run_vectors("starcoder"); }
static void test_phi3(void **state) { (void)state; run_vectors("phi-3"); }
static void test_deepseek_llm(void **state) { (void)state; run_vectors("deepseek-llm"); }

static void test_bos_and_pieces(void **state) {
    (void)state;
    ember_model *m = load_vocab("llama-spm");
    int32_t ids[16];
    size_t n;
    assert_int_equal(ember_tokenize(m, "Hello", 5, ids, 16, &n, EMBER_TOKENIZE_ADD_BOS), EMBER_OK);
    assert_int_equal(ids[0], ember_token_bos(m));
    /* too small a buffer reports the size needed */
    size_t need;
    assert_int_equal(ember_tokenize(m, "Hello world", 11, ids, 1, &need, 0),
                     EMBER_ERR_BUFFER_TOO_SMALL);
    assert_true(need >= 2);
    /* control tokens render only when asked; byte pieces give bytes */
    char buf[16];
    size_t nb;
    assert_int_equal(ember_token_to_piece(m, ember_token_bos(m), buf, sizeof buf, &nb, 0), EMBER_OK);
    assert_int_equal(nb, 0);
    assert_int_equal(ember_token_to_piece(m, ember_token_bos(m), buf, sizeof buf, &nb,
                                          EMBER_DETOKENIZE_SPECIAL), EMBER_OK);
    assert_memory_equal(buf, "<s>", 3);
    assert_int_equal(ember_token_to_piece(m, 3 + 0x41, buf, sizeof buf, &nb, 0), EMBER_OK);
    assert_int_equal(nb, 1);
    assert_int_equal(buf[0], 'A');
    /* the special token's text is matched only with PARSE_SPECIAL */
    assert_int_equal(ember_tokenize(m, "<s>", 3, ids, 16, &n, EMBER_TOKENIZE_PARSE_SPECIAL), EMBER_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], ember_token_bos(m));
    assert_int_equal(ember_tokenize(m, "<s>", 3, ids, 16, &n, 0), EMBER_OK);
    assert_true(n > 1);
    assert_int_equal(ember_token_to_piece(m, -1, buf, sizeof buf, &nb, 0), EMBER_ERR_BAD_TOKEN);
    ember_context *c = NULL;
    assert_int_equal(ember_context_create(m, NULL, &c), EMBER_ERR_BAD_STATE);
    ember_model_free(&m);
}

/* Byte-fallback pieces of one character: held until the character is whole. */
static void test_stream_partial_utf8(void **state) {
    (void)state;
    ember_model *m = load_vocab("llama-spm");
    /* <0xE4><0xBD><0xA0> is U+4F60; byte token ids are 3 + byte */
    int32_t ids[3] = { 3 + 0xE4, 3 + 0xBD, 3 + 0xA0 };
    ember_detok_stream *st = NULL;
    assert_int_equal(ember_detok_stream_create(m, 0, &st), EMBER_OK);
    char buf[16];
    size_t nb = 99;
    assert_int_equal(ember_detok_stream_push(st, ids[0], buf, sizeof buf, &nb), EMBER_OK);
    assert_int_equal(nb, 0);
    assert_int_equal(ember_detok_stream_push(st, ids[1], buf, sizeof buf, &nb), EMBER_OK);
    assert_int_equal(nb, 0);
    /* too small a buffer and a bad id consume nothing */
    assert_int_equal(ember_detok_stream_push(st, ids[2], buf, 2, &nb), EMBER_ERR_BUFFER_TOO_SMALL);
    assert_true(nb >= 3);
    assert_int_equal(ember_detok_stream_push(st, -5, buf, sizeof buf, &nb), EMBER_ERR_BAD_TOKEN);
    assert_int_equal(ember_detok_stream_push(st, ids[2], buf, sizeof buf, &nb), EMBER_OK);
    assert_int_equal(nb, 3);
    assert_memory_equal(buf, "\xe4\xbd\xa0", 3);
    /* an incomplete character at the end comes out at flush, as it is */
    assert_int_equal(ember_detok_stream_push(st, ids[0], buf, sizeof buf, &nb), EMBER_OK);
    assert_int_equal(nb, 0);
    assert_int_equal(ember_detok_stream_flush(st, buf, 0, &nb), EMBER_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(ember_detok_stream_flush(st, buf, sizeof buf, &nb), EMBER_OK);
    assert_int_equal(nb, 1);
    assert_int_equal((unsigned char)buf[0], 0xE4);
    /* a held lead byte followed by ASCII is invalid: passed through, not held */
    assert_int_equal(ember_detok_stream_push(st, ids[0], buf, sizeof buf, &nb), EMBER_OK);
    assert_int_equal(ember_detok_stream_push(st, 3 + 'A', buf, sizeof buf, &nb), EMBER_OK);
    assert_int_equal(nb, 2);
    assert_memory_equal(buf, "\xe4" "A", 2);
    ember_detok_stream_free(&st);
    ember_detok_stream_free(&st); /* NULL: no-op */
    assert_int_equal(ember_detok_stream_create(NULL, 0, &st), EMBER_ERR_INVALID_ARGUMENT);
    ember_model_free(&m);
}

/* Hostile input on every vocabulary (run under ASan in CI): 1 MB of one
 * character, 1 MB of random bytes, embedded NULs and broken UTF-8 encode
 * without error, every id is in range, and byte-level vocabularies give the
 * exact bytes back. */
static void test_hostile_inputs(void **state) {
    (void)state;
    const char *names[] = { "llama-spm", "phi-3", "gpt-2", "starcoder", "deepseek-llm" };
    enum { LEN = 1 << 20 };
    char *text = malloc(LEN), *back = malloc(2 * LEN);
    size_t cap = 4 * (size_t)LEN + 8;
    int32_t *ids = malloc(cap * sizeof *ids);
    assert_true(text && back && ids);
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        ember_model *m = load_vocab(names[k]);
        /* exact bytes back where the vocabulary has a token for every byte
         * (starcoder's lacks those never seen in UTF-8: C0, C1, F5..FF) */
        int exact = k >= 2;
        for (int b = 0; b < 256 && exact; b++) {
            char c = (char)b, got[8];
            size_t n1 = 0, nb1 = 0;
            int32_t id[4];
            exact = ember_tokenize(m, &c, 1, id, 4, &n1, 0) == EMBER_OK &&
                    ember_detokenize(m, id, n1, got, sizeof got, &nb1, 0) == EMBER_OK &&
                    nb1 == 1 && got[0] == c;
        }
        for (int kind = 0; kind < 3; kind++) {
            size_t len = LEN;
            uint64_t x = 0x9E3779B97F4A7C15ull;
            for (size_t i = 0; i < len; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                text[i] = kind == 0 ? 'a' : kind == 1 ? (char)(x >> 24)
                        : "a\0\xff\xc3 \xe4\xbd\n"[x % 8]; /* NULs, broken sequences */
            }
            size_t n = 0, nb = 0;
            assert_int_equal(ember_tokenize(m, text, len, ids, cap, &n, 0), EMBER_OK);
            assert_true(n > 0);
            for (size_t i = 0; i < n; i++) assert_true(ids[i] >= 0 && ids[i] < ember_model_n_vocab(m));
            assert_int_equal(ember_detokenize(m, ids, n, back, 2 * LEN, &nb, 0), EMBER_OK);
            if (kind == 0) print_message("%s: %s\n", names[k], exact ? "every byte round-trips"
                                                               : "not every byte has a token");
            if (exact) {
                assert_int_equal(nb, len);
                assert_memory_equal(back, text, len);
            }
        }
        ember_model_free(&m);
    }
    free(text);
    free(back);
    free(ids);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_spm),
        cmocka_unit_test(test_phi3),
        cmocka_unit_test(test_gpt2),
        cmocka_unit_test(test_starcoder),
        cmocka_unit_test(test_deepseek_llm),
        cmocka_unit_test(test_bos_and_pieces),
        cmocka_unit_test(test_stream_partial_utf8),
        cmocka_unit_test(test_hostile_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
