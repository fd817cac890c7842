/* Chat templates: each format's output for one conversation, written out;
 * detection from a real model's template; errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "synth_model.h"

static ember_model *model; /* a synthetic model: no template of its own */
static void *img;

static const ember_chat_message conv[] = {
    { "system", "Be brief." },
    { "user", "Hi" },
    { "assistant", "Hello." },
    { "user", "Sky?" },
};

static void expect(const char *name, const char *want) {
    char buf[1024];
    size_t need = 0;
    int rc = ember_chat_apply(model, name, conv, 4, EMBER_CHAT_ADD_ASSISTANT, buf, sizeof buf, &need);
    if (rc) print_error("%s: %s\n", name, ember_last_error());
    assert_int_equal(rc, EMBER_OK);
    if (strcmp(buf, want)) print_error("%s:\n[%s]\nwant\n[%s]\n", name, buf, want);
    assert_string_equal(buf, want);
    assert_int_equal(need, strlen(want));
}

static void test_formats(void **state) {
    (void)state;
    expect("chatml", "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                     "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nSky?<|im_end|>\n"
                     "<|im_start|>assistant\n");
    expect("llama3", "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                     "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                     "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                     "<|start_header_id|>user<|end_header_id|>\n\nSky?<|eot_id|>"
                     "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect("phi3", "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello.<|end|>\n"
                   "<|user|>\nSky?<|end|>\n<|assistant|>\n");
    expect("gemma", "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
                    "Hello.<end_of_turn>\n<start_of_turn>user\nSky?<end_of_turn>\n"
                    "<start_of_turn>model\n");
    expect("llama2", "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>"
                     "[INST] Sky? [/INST]");
    expect("mistral", "[INST] Be brief.\n\nHi [/INST] Hello.</s>[INST] Sky? [/INST]");
    expect("deepseek2", "Be brief.\n\nUser: Hi\n\nAssistant: Hello.<\xef\xbd\x9c" "end\xe2\x96\x81of"
                        "\xe2\x96\x81sentence\xef\xbd\x9c>User: Sky?\n\nAssistant:");
    expect("deepseek3", "Be brief.<\xef\xbd\x9cUser\xef\xbd\x9c>Hi<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"
                        "Hello.<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
                        "<\xef\xbd\x9cUser\xef\xbd\x9c>Sky?<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>");
}

static void test_errors(void **state) {
    (void)state;
    char buf[16];
    size_t need;
    /* the synthetic model has no template: a name is needed */
    assert_int_equal(ember_chat_apply(model, NULL, conv, 4, 0, buf, sizeof buf, &need),
                     EMBER_ERR_UNSUPPORTED);
    assert_int_equal(ember_chat_apply(model, "jinja", conv, 4, 0, buf, sizeof buf, &need),
                     EMBER_ERR_UNSUPPORTED);
    assert_int_equal(ember_chat_apply(model, "chatml", conv, 4, 0, buf, sizeof buf, &need),
                     EMBER_ERR_BUFFER_TOO_SMALL);
    assert_true(need > sizeof buf);
    assert_int_equal(strlen(buf), sizeof buf - 1);
    ember_chat_message bad = { "tool", "x" };
    assert_int_equal(ember_chat_apply(model, "chatml", &bad, 1, 0, buf, sizeof buf, &need),
                     EMBER_ERR_INVALID_ARGUMENT);
}

/* phi-3's own tokenizer.chat_template is recognised (never executed). */
static void test_detect_from_model(void **state) {
    (void)state;
    ember_model_params p;
    ember_model_default_params(&p);
    p.vocab_only = 1;
    ember_model *m = NULL;
    assert_int_equal(ember_model_load_file(testdata_path("vocab/ggml-vocab-phi-3.gguf"), &p, &m),
                     EMBER_OK);
    char buf[256];
    ember_chat_message u = { "user", "Hi" };
    assert_int_equal(ember_chat_apply(m, NULL, &u, 1, EMBER_CHAT_ADD_ASSISTANT, buf, sizeof buf, NULL),
                     EMBER_OK);
    assert_string_equal(buf, "<|user|>\nHi<|end|>\n<|assistant|>\n");
    ember_model_free(&m);
}

static int setup(void **state) {
    (void)state;
    synth_cfg cfg = { 32, 1, 2, 1, 32, 32, 0, 1 };
    size_t size;
    return synth_llama(&cfg, &img, &size) || ember_model_load_memory(img, size, NULL, &model);
}

static int teardown(void **state) {
    (void)state;
    ember_model_free(&model);
    free(img);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_detect_from_model),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
