#include "common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef EMBER_TESTDATA_DEFAULT
#define EMBER_TESTDATA_DEFAULT "../shared/testdata"
#endif

const char *testdata_dir(void) {
    const char *e = getenv("EMBER_TESTDATA");
    const char *d = e && *e ? e : EMBER_TESTDATA_DEFAULT;
    struct stat st;
    return stat(d, &st) == 0 && S_ISDIR(st.st_mode) ? d : NULL;
}

const char *testdata_path(const char *rel) {
    static char buf[4096];
    const char *d = testdata_dir();
    if (!d) {
        print_message("testdata not found (set EMBER_TESTDATA): skipping\n");
        skip();
    }
    snprintf(buf, sizeof buf, "%s/%s", d, rel);
    struct stat st;
    if (stat(buf, &st) != 0) {
        print_message("%s not found: skipping\n", buf);
        skip();
    }
    return buf;
}

void *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = NULL;
    if (n < 0 || posix_memalign(&p, 64, (size_t)n + 1)) {
        fclose(f);
        return NULL;
    }
    if (fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        fclose(f);
        return NULL;
    }
    ((char *)p)[n] = 0;
    fclose(f);
    *size = (size_t)n;
    return p;
}

static const char *find_key(const char *json, const char *key, int nth) {
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = json;
    for (int i = 0; i <= nth; i++) {
        p = strstr(p, pat);
        if (!p) return NULL;
        p += strlen(pat);
    }
    while (*p == ' ' || *p == ':' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    return p;
}

int json_ints(const char *json, const char *key, int nth, int32_t *out, int max) {
    const char *p = find_key(json, key, nth);
    if (!p || *p != '[') return -1;
    p++;
    int n = 0;
    for (;;) {
        while (*p == ' ' || *p == '\n' || *p == ',' || *p == '\r' || *p == '\t') p++;
        if (*p == ']') return n;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || n >= max) return -1;
        out[n++] = (int32_t)v;
        p = end;
    }
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    o[0] = (char)(0xe0 | cp >> 12);
    o[1] = (char)(0x80 | ((cp >> 6) & 63));
    o[2] = (char)(0x80 | (cp & 63));
    return 3;
}

int json_string(const char *json, const char *key, int nth, char *out, size_t max) {
    const char *p = find_key(json, key, nth);
    if (!p || *p != '"') return -1;
    p++;
    size_t n = 0;
    while (*p && *p != '"' && n + 4 < max) {
        if (*p == '\\') {
            p++;
            if (*p == 'n') out[n++] = '\n';
            else if (*p == 't') out[n++] = '\t';
            else if (*p == 'u') {
                unsigned cp = (unsigned)strtoul((char[]){ p[1], p[2], p[3], p[4], 0 }, NULL, 16);
                n += put_utf8(out + n, cp);
                p += 4;
            } else out[n++] = *p;
            p++;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = 0;
    return (int)n;
}

/* Each block carries its size in a header so frees can be counted. */
static void *c_malloc(size_t size, void *user) {
    counting_alloc *c = user;
    c->n_allocs++;
    if (c->fail_at && (c->n_allocs == c->fail_at || (c->fail_from && c->n_allocs > c->fail_at)))
        return NULL;
    if (size > c->largest) c->largest = size;
    size_t *p = malloc(size + 16);
    if (!p) return NULL;
    p[0] = size;
    c->live_blocks++;
    c->live_bytes += (long long)size;
    return (char *)p + 16;
}

static void c_free(void *ptr, void *user) {
    if (!ptr) return;
    counting_alloc *c = user;
    size_t *p = (size_t *)((char *)ptr - 16);
    c->live_blocks--;
    c->live_bytes -= (long long)p[0];
    free(p);
}

static void *c_realloc(void *ptr, size_t size, void *user) {
    void *n = c_malloc(size, user);
    if (!n) return NULL;
    if (ptr) {
        size_t old = ((size_t *)((char *)ptr - 16))[0];
        memcpy(n, ptr, old < size ? old : size);
        c_free(ptr, user);
    }
    return n;
}

ember_allocator counting_allocator(counting_alloc *c) {
    ember_allocator a = { c_malloc, c_realloc, c_free, c };
    return a;
}

void load_model_ref(const char *model, int n_vocab, model_ref *r) {
    char rel[256];
    size_t n;
    snprintf(rel, sizeof rel, "models/%s/reference.json", model);
    char *js = read_file(testdata_path(rel), &n);
    assert_non_null(js);
    r->n_prompt = json_ints(js, "prompt", 0, r->prompt, 64);
    r->n_greedy = json_ints(js, "greedy", 0, r->greedy, 64);
    r->n_seq = json_ints(js, "sequence", 0, r->seq, 128);
    free(js);
    assert_true(r->n_prompt > 0 && r->n_greedy > 0 && r->n_seq == r->n_prompt + r->n_greedy);
    snprintf(rel, sizeof rel, "models/%s/sequence-logits.f32", model);
    r->logits = read_file(testdata_path(rel), &n);
    assert_int_equal(n, (size_t)r->n_seq * (size_t)n_vocab * 4);
}

char *quantize_to_temp_file(const char *src_path, const ember_quantize_params *p) {
    ember_model *src = NULL;
    assert_int_equal(ember_model_load_file(src_path, NULL, &src), EMBER_OK);
    char *path = strdup("/tmp/ember-quant-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    int rc = ember_model_quantize(src, path, p);
    if (rc) print_error("%s\n", ember_last_error());
    assert_int_equal(rc, EMBER_OK);
    ember_model_free(&src);
    return path;
}

double max_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= d)) d = e; /* NaN wins (and GCC 12's aarch64 vectorizer chokes on fmax) */
    }
    return d;
}

double rel_l2(const float *got, const float *ref, size_t n) {
    double e = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        e += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
        r += (double)ref[i] * ref[i];
    }
    return sqrt(e / r);
}

int argmax_f32(const float *l, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) if (l[i] > l[b]) b = i;
    return b;
}

void greedy_decode(ember_context *c, const int32_t *prompt, int n_prompt, int n, int n_vocab,
                   int32_t *out) {
    ember_batch_entry b[64];
    assert_true(n_prompt >= 1 && n_prompt <= 64);
    for (int i = 0; i < n_prompt; i++) b[i] = (ember_batch_entry){ prompt[i], i, 0, i == n_prompt - 1 };
    int rc = ember_eval(c, b, (size_t)n_prompt);
    if (rc) print_error("%s\n", ember_context_last_error(c));
    assert_int_equal(rc, EMBER_OK);
    const float *l = ember_get_logits(c, (size_t)n_prompt - 1);
    for (int i = 0; i < n; i++) {
        out[i] = argmax_f32(l, n_vocab);
        ember_batch_entry e = { out[i], n_prompt + i, 0, 1 };
        rc = ember_eval(c, &e, 1);
        if (rc) print_error("%s\n", ember_context_last_error(c));
        assert_int_equal(rc, EMBER_OK);
        l = ember_get_logits(c, 0);
    }
}
