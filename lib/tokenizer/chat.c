/* Chat templates, recognised by shape and formatted in C: a model file's
 * Jinja text is never executed (that has been a remote-code-execution hole
 * elsewhere). Each format follows the template it stands for. */
#include <stdio.h>
#include <string.h>

#include "../model.h"

enum chat_kind { CHAT_UNKNOWN, CHAT_CHATML, CHAT_LLAMA2, CHAT_LLAMA3, CHAT_MISTRAL, CHAT_PHI3,
                 CHAT_GEMMA, CHAT_DEEPSEEK2, CHAT_DEEPSEEK3 };

static const struct { const char *name; int kind; } chat_names[] = {
    { "chatml", CHAT_CHATML }, { "llama2", CHAT_LLAMA2 }, { "llama3", CHAT_LLAMA3 },
    { "mistral", CHAT_MISTRAL }, { "phi3", CHAT_PHI3 }, { "gemma", CHAT_GEMMA },
    { "deepseek2", CHAT_DEEPSEEK2 }, { "deepseek3", CHAT_DEEPSEEK3 },
};

static int has(const char *t, size_t n, const char *s) {
    size_t k = strlen(s);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(t + i, s, k) == 0) return 1;
    return 0;
}

/* Recognises a template by strings only its family uses. */
static int detect(const char *t, size_t n) {
    if (has(t, n, "<|im_start|>")) return CHAT_CHATML;
    if (has(t, n, "<|start_header_id|>") && has(t, n, "<|end_header_id|>")) return CHAT_LLAMA3;
    if (has(t, n, "<|assistant|>") && has(t, n, "<|end|>")) return CHAT_PHI3;
    if (has(t, n, "<start_of_turn>")) return CHAT_GEMMA;
    if (has(t, n, "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>")) return CHAT_DEEPSEEK3;
    if (has(t, n, "'Assistant: ' + message['content'] + eos_token")) return CHAT_DEEPSEEK2;
    if (has(t, n, "<<SYS>>")) return CHAT_LLAMA2;
    if (has(t, n, "[INST]")) return CHAT_MISTRAL;
    return CHAT_UNKNOWN;
}

typedef struct sb { char *p; size_t cap, len; } sb;

static void put(sb *b, const char *s, size_t n) {
    if (b->len < b->cap) memcpy(b->p + b->len, s, n < b->cap - b->len ? n : b->cap - b->len);
    b->len += n;
}
static void puts_(sb *b, const char *s) { put(b, s, strlen(s)); }

/* content without leading and trailing whitespace */
static void put_trimmed(sb *b, const char *s) {
    size_t n = strlen(s);
    while (n && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')) { s++; n--; }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    put(b, s, n);
}

static int is(const char *role, const char *r) { return strcmp(role, r) == 0; }

static void format(int kind, const ember_chat_message *m, size_t n, int add_ass, sb *b) {
    const char *system = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *role = m[i].role, *c = m[i].content;
        switch (kind) {
        case CHAT_CHATML:
            puts_(b, "<|im_start|>"); puts_(b, role); puts_(b, "\n"); puts_(b, c); puts_(b, "<|im_end|>\n");
            break;
        case CHAT_LLAMA3:
            puts_(b, "<|start_header_id|>"); puts_(b, role); puts_(b, "<|end_header_id|>\n\n");
            put_trimmed(b, c); puts_(b, "<|eot_id|>");
            break;
        case CHAT_PHI3:
            puts_(b, "<|"); puts_(b, role); puts_(b, "|>\n"); puts_(b, c); puts_(b, "<|end|>\n");
            break;
        case CHAT_GEMMA: /* no system role: it opens the first user turn */
            if (is(role, "system")) { system = c; break; }
            puts_(b, "<start_of_turn>"); puts_(b, is(role, "assistant") ? "model" : role); puts_(b, "\n");
            if (system && is(role, "user")) { put_trimmed(b, system); puts_(b, "\n\n"); system = NULL; }
            put_trimmed(b, c); puts_(b, "<end_of_turn>\n");
            break;
        case CHAT_LLAMA2: /* [INST] <<SYS>>\n...\n<</SYS>>\n\nuser [/INST] assistant </s> */
            if (is(role, "system")) { system = c; break; }
            if (is(role, "user")) {
                puts_(b, "[INST] ");
                if (system) { puts_(b, "<<SYS>>\n"); puts_(b, system); puts_(b, "\n<</SYS>>\n\n"); system = NULL; }
                put_trimmed(b, c); puts_(b, " [/INST]");
            } else {
                puts_(b, " "); put_trimmed(b, c); puts_(b, " </s><s>");
            }
            break;
        case CHAT_MISTRAL: /* [INST] user [/INST] assistant</s>; system joins the user turn */
            if (is(role, "system")) { system = c; break; }
            if (is(role, "user")) {
                puts_(b, "[INST] ");
                if (system) { put_trimmed(b, system); puts_(b, "\n\n"); system = NULL; }
                put_trimmed(b, c); puts_(b, " [/INST]");
            } else {
                puts_(b, " "); put_trimmed(b, c); puts_(b, "</s>");
            }
            break;
        case CHAT_DEEPSEEK2:
            if (is(role, "system")) { puts_(b, c); puts_(b, "\n\n"); }
            else if (is(role, "user")) { puts_(b, "User: "); puts_(b, c); puts_(b, "\n\n"); }
            else { puts_(b, "Assistant: "); puts_(b, c); puts_(b, "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"); }
            break;
        case CHAT_DEEPSEEK3:
            if (is(role, "system")) puts_(b, c);
            else if (is(role, "user")) { puts_(b, "<\xef\xbd\x9cUser\xef\xbd\x9c>"); puts_(b, c); }
            else { puts_(b, "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"); puts_(b, c); puts_(b, "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"); }
            break;
        }
    }
    if (!add_ass) return;
    switch (kind) {
    case CHAT_CHATML: puts_(b, "<|im_start|>assistant\n"); break;
    case CHAT_LLAMA3: puts_(b, "<|start_header_id|>assistant<|end_header_id|>\n\n"); break;
    case CHAT_PHI3: puts_(b, "<|assistant|>\n"); break;
    case CHAT_GEMMA: puts_(b, "<start_of_turn>model\n"); break;
    case CHAT_DEEPSEEK2: puts_(b, "Assistant:"); break;
    case CHAT_DEEPSEEK3: puts_(b, "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"); break;
    default: break; /* the [INST] formats end where the assistant starts */
    }
}

static int template_kind(const ember_model *m, const char *name) {
    if (name) {
        for (size_t i = 0; i < sizeof chat_names / sizeof chat_names[0]; i++)
            if (strcmp(chat_names[i].name, name) == 0) return chat_names[i].kind;
        return em_error(NULL, EMBER_ERR_UNSUPPORTED, "chat: no format named '%s' (chatml, llama2, "
                        "llama3, mistral, phi3, gemma, deepseek2, deepseek3)", name);
    }
    const em_gguf_kv *kv = em_gguf_find(&m->gguf, "tokenizer.chat_template");
    if (!kv || kv->type != GGUF_STRING)
        return em_error(NULL, EMBER_ERR_UNSUPPORTED, "chat: the model has no "
                        "tokenizer.chat_template; pass a format name");
    int k = detect((const char *)kv->data, (size_t)kv->n);
    if (k == CHAT_UNKNOWN)
        return em_error(NULL, EMBER_ERR_UNSUPPORTED, "chat: the model's template is not one "
                        "ember recognises; pass a format name");
    return k;
}

EMBER_API int ember_chat_apply(const ember_model *m, const char *template_name,
                               const ember_chat_message *msgs, size_t n, uint32_t flags,
                               char *buf, size_t buf_size, size_t *needed) {
    if (!m || (!msgs && n) || (!buf && buf_size))
        return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "chat: NULL argument");
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content ||
            !(is(msgs[i].role, "system") || is(msgs[i].role, "user") || is(msgs[i].role, "assistant")))
            return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "chat: message %zu needs a role of "
                            "system, user or assistant and a content", i);
    int kind = template_kind(m, template_name);
    if (kind < 0) return kind;
    sb b = { buf, buf_size ? buf_size - 1 : 0, 0 };
    format(kind, msgs, n, (flags & EMBER_CHAT_ADD_ASSISTANT) != 0, &b);
    if (buf_size) buf[b.len < b.cap ? b.len : b.cap] = 0;
    if (needed) *needed = b.len;
    if (b.len > b.cap)
        return em_error(NULL, EMBER_ERR_BUFFER_TOO_SMALL, "chat: needs %zu bytes", b.len + 1);
    return EMBER_OK;
}
