/* GGUF reader: a tiny valid llama file loads; each malformed variant (one
 * defect per case) is rejected with its status and a message naming the
 * field, and leaves nothing allocated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "gguf_writer.h"

enum { E = 8, FF = 16, NV = 8 };

typedef struct tdesc { const char *name; uint32_t nd; uint64_t ne[5]; uint32_t type; uint64_t off; } tdesc;

/* One defect, applied while writing the otherwise valid file. */
typedef struct defect {
    const char *what;     /* test name */
    int status;           /* expected status */
    const char *needle;   /* text the message must contain */
    uint32_t version;
    int big_endian;
    void (*extra_kv)(gw *w); int n_extra_kv; /* written first */
    uint32_t block_count, head_count_kv;
    int vocab_n, scores_n;
    void (*edit)(tdesc *t, int *nt);
    int alignment_kv;     /* 1: write general.alignment = align_value */
    uint32_t align_value;
    long truncate;        /* >0: keep this many bytes; <0: cut from the end */
    int trunc_section;    /* 1 kv, 2 tensor info, 3 data: cut mid-section */
    uint64_t n_tensors_override, n_kv_override;
} defect;

static const char *vocab[NV] = { "<unk>", "<s>", "</s>", "a", "b", "c", "\xe2\x96\x81" "a", "\xe2\x96\x81" "b" };

static int base_tensors(tdesc *t) {
    int n = 0;
    t[n++] = (tdesc){ "token_embd.weight", 2, { E, NV }, 0, 0 };
    t[n++] = (tdesc){ "output_norm.weight", 1, { E }, 0, 0 };
    t[n++] = (tdesc){ "blk.0.attn_norm.weight", 1, { E }, 0, 0 };
    t[n++] = (tdesc){ "blk.0.attn_q.weight", 2, { E, E }, 0, 0 };
    t[n++] = (tdesc){ "blk.0.attn_k.weight", 2, { E, 4 }, 0, 0 };
    t[n++] = (tdesc){ "blk.0.attn_v.weight", 2, { E, 4 }, 0, 0 };
    t[n++] = (tdesc){ "blk.0.attn_output.weight", 2, { E, E }, 0, 0 };
    t[n++] = (tdesc){ "blk.0.ffn_norm.weight", 1, { E }, 0, 0 };
    t[n++] = (tdesc){ "blk.0.ffn_gate.weight", 2, { E, FF }, 0, 0 };
    t[n++] = (tdesc){ "blk.0.ffn_up.weight", 2, { E, FF }, 0, 0 };
    t[n++] = (tdesc){ "blk.0.ffn_down.weight", 2, { FF, E }, 0, 0 };
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        t[i].off = off;
        off += (t[i].ne[0] * (t[i].nd > 1 ? t[i].ne[1] : 1) * 4 + 31) / 32 * 32;
    }
    return n;
}

static uint64_t tensor_bytes(const tdesc *t) {
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->nd && d < 4; d++) n *= t->ne[d];
    return t->type == 0 ? n * 4 : n * 2;
}

/* Writes the file with defect d; returns the image (64-aligned) and size. */
static void *build(const defect *d, size_t *size) {
    gw w = { 0 };
    tdesc t[32];
    int nt = base_tensors(t);
    if (d->edit) d->edit(t, &nt);
    int n_kv = 11 + d->n_extra_kv + (d->alignment_kv ? 1 : 0);
    gw_header(&w, d->version ? d->version : 3, d->n_tensors_override ? d->n_tensors_override : (uint64_t)nt,
              d->n_kv_override ? d->n_kv_override : (uint64_t)n_kv);
    if (d->big_endian) {
        uint32_t v = 0x03000000u;
        memcpy(w.buf + 4, &v, 4);
    }
    size_t kv_start = w.len;
    if (d->extra_kv) d->extra_kv(&w);
    if (d->alignment_kv) gw_kv_u32(&w, "general.alignment", d->align_value);
    gw_kv_str(&w, "general.architecture", "llama");
    gw_kv_u32(&w, "llama.context_length", 64);
    gw_kv_u32(&w, "llama.embedding_length", E);
    gw_kv_u32(&w, "llama.block_count", d->block_count ? d->block_count : 1);
    gw_kv_u32(&w, "llama.feed_forward_length", FF);
    gw_kv_u32(&w, "llama.attention.head_count", 2);
    gw_kv_u32(&w, "llama.attention.head_count_kv", d->head_count_kv ? d->head_count_kv : 1);
    gw_kv_str(&w, "tokenizer.ggml.model", "llama");
    gw_kv_arr_str(&w, "tokenizer.ggml.tokens", vocab, d->vocab_n ? (size_t)d->vocab_n : NV);
    float scores[NV] = { 0 };
    int32_t types[NV] = { 2, 3, 3, 1, 1, 1, 1, 1 };
    gw_kv_arr_f32(&w, "tokenizer.ggml.scores", scores, d->scores_n ? (size_t)d->scores_n : NV);
    gw_kv_arr_i32(&w, "tokenizer.ggml.token_type", types, NV);
    size_t ti_start = w.len;
    for (int i = 0; i < nt; i++) gw_tensor_info(&w, t[i].name, t[i].nd, t[i].ne, t[i].type, t[i].off);
    size_t data_start = w.len;
    uint32_t align = d->alignment_kv && d->align_value && !(d->align_value & (d->align_value - 1))
                         ? d->align_value : 32;
    gw_pad(&w, align > 4096 ? 32 : align);
    uint64_t end = 0;
    for (int i = 0; i < nt; i++) {
        uint64_t e = t[i].off + tensor_bytes(&t[i]);
        if (t[i].nd <= 4 && e > end && e < (1u << 20)) end = e;
    }
    for (uint64_t i = 0; i < end; i += 4) gw_f32(&w, 0.01f * (float)(i % 7));
    size_t n = w.len;
    if (d->truncate > 0) n = (size_t)d->truncate;
    if (d->truncate < 0) n = w.len - (size_t)(-d->truncate);
    if (d->trunc_section == 1) n = (kv_start + ti_start) / 2;
    if (d->trunc_section == 2) n = (ti_start + data_start) / 2;
    if (d->trunc_section == 3) n = data_start + (w.len - data_start) / 2;
    w.len = n;
    void *img = gw_aligned_copy(&w);
    gw_free(&w);
    *size = n;
    return img;
}

/* ---- defects ---- */
static void kv_dup(gw *w) { gw_kv_u32(w, "llama.context_length", 64); }
static void kv_unknown_type(gw *w) { gw_str(w, "x.bad"); gw_u32(w, 99); gw_u32(w, 0); }
static void kv_huge_key(gw *w) { gw_u64(w, UINT64_MAX); }
static void kv_huge_string(gw *w) { gw_str(w, "x.s"); gw_u32(w, 8); gw_u64(w, (uint64_t)1 << 62); }
static void kv_nested(gw *w) { gw_str(w, "x.a"); gw_u32(w, 9); gw_u32(w, 9); gw_u64(w, 1); }
static void kv_arr_overflow(gw *w) { gw_str(w, "x.a"); gw_u32(w, 9); gw_u32(w, 4); gw_u64(w, (uint64_t)1 << 62); }
static void kv_arr_strings_huge(gw *w) { gw_str(w, "x.a"); gw_u32(w, 9); gw_u32(w, 8); gw_u64(w, (uint64_t)1 << 40); }
static void kv_bool2(gw *w) { gw_str(w, "x.b"); gw_u32(w, 7); gw_u8(w, 2); }
static void kv_nul_key(gw *w) { gw_u64(w, 3); gw_bytes(w, "a\0b", 3); gw_u32(w, 4); gw_u32(w, 1); }
static void kv_align_str(gw *w) { gw_kv_str(w, "general.alignment", "32"); }
static void kv_bos_range(gw *w) { gw_kv_u32(w, "tokenizer.ggml.bos_token_id", 1000); }
static void kv_arch_u32(gw *w) { gw_kv_u32(w, "general.architecture", 5); }

static void t_ndims5(tdesc *t, int *nt) { (void)nt; t[3].nd = 5; }
static void t_ndims0(tdesc *t, int *nt) { (void)nt; t[3].nd = 0; }
static void t_dims_overflow(tdesc *t, int *nt) { (void)nt; t[3].ne[0] = (uint64_t)1 << 40; t[3].ne[1] = (uint64_t)1 << 40; }
static void t_dim_negative(tdesc *t, int *nt) { (void)nt; t[3].ne[1] = UINT64_MAX; }
static void t_type_unknown(tdesc *t, int *nt) { (void)nt; t[3].type = 99; }
static void t_type_kquant(tdesc *t, int *nt) { t[*nt - 1].type = 11; t[*nt - 1].ne[0] = 256; t[*nt - 1].ne[1] = 1; }
static void t_block_mismatch(tdesc *t, int *nt) { (void)nt; t[3].type = 8; t[3].ne[0] = 33; }
static void t_misaligned(tdesc *t, int *nt) { (void)nt; t[3].off += 4; }
static void t_past_end(tdesc *t, int *nt) { t[*nt - 1].off += 1 << 21; }
static void t_offset_wrap(tdesc *t, int *nt) { (void)nt; t[3].off = UINT64_MAX - 31; }
static void t_overlap(tdesc *t, int *nt) { (void)nt; t[4].off = t[3].off; }
static void t_dup_name(tdesc *t, int *nt) { (void)nt; t[4].name = t[3].name; }
static void t_shape(tdesc *t, int *nt) { (void)nt; t[3].ne[1] = 4; }
static void t_missing(tdesc *t, int *nt) { t[3] = t[--*nt]; }
static void t_norm_f16(tdesc *t, int *nt) { (void)nt; t[2].type = 1; }

#define F EMBER_ERR_FORMAT
static const defect defects[] = {
    { "truncated magic", F, "magic", .truncate = 3 },
    { "bad magic", F, "magic", .version = 3, .truncate = 0, .edit = NULL, .n_kv_override = 0,
      .big_endian = 0, .extra_kv = NULL },
    { "version 7", F, "version", .version = 7 },
    { "big-endian", F, "big-endian", .big_endian = 1 },
    { "truncated header", F, "tensor count", .truncate = 10 },
    { "huge tensor count", F, "tensor count", .n_tensors_override = (uint64_t)1 << 60 },
    { "huge kv count", F, "metadata count", .n_kv_override = (uint64_t)1 << 60 },
    { "truncated kv section", F, "needs", .trunc_section = 1 },
    { "truncated tensor infos", F, "needs", .trunc_section = 2 },
    { "truncated data", F, "past the end", .trunc_section = 3 },
    { "duplicate key", F, "duplicate metadata key", .extra_kv = kv_dup, .n_extra_kv = 1 },
    { "unknown value type", F, "unknown value type", .extra_kv = kv_unknown_type, .n_extra_kv = 1 },
    { "key length bomb", F, "limit", .extra_kv = kv_huge_key, .n_extra_kv = 1 },
    { "string length bomb", F, "limit", .extra_kv = kv_huge_string, .n_extra_kv = 1 },
    { "nested array", F, "nested", .extra_kv = kv_nested, .n_extra_kv = 1 },
    { "array size overflow", F, "array length", .extra_kv = kv_arr_overflow, .n_extra_kv = 1 },
    { "string array bomb", F, "x.a", .extra_kv = kv_arr_strings_huge, .n_extra_kv = 1 },
    { "bool value 2", F, "bool", .extra_kv = kv_bool2, .n_extra_kv = 1 },
    { "NUL in key", F, "NUL", .extra_kv = kv_nul_key, .n_extra_kv = 1 },
    { "alignment 0", F, "general.alignment", .alignment_kv = 1, .align_value = 0 },
    { "alignment 48", F, "general.alignment", .alignment_kv = 1, .align_value = 48 },
    { "alignment huge", F, "general.alignment", .alignment_kv = 1, .align_value = 1u << 31 },
    { "alignment as string", F, "general.alignment", .extra_kv = kv_align_str, .n_extra_kv = 1 },
    { "n_dims 5", F, "n_dims", .edit = t_ndims5 },
    { "n_dims 0", F, "n_dims", .edit = t_ndims0 },
    { "dims product overflow", F, "overflow", .edit = t_dims_overflow },
    { "dimension above INT64_MAX", F, "dimension", .edit = t_dim_negative },
    { "unknown tensor type", F, "unknown tensor type 99", .edit = t_type_unknown },
    { "q8_0 row not whole blocks", F, "block size", .edit = t_block_mismatch },
    { "misaligned offset", F, "alignment", .edit = t_misaligned },
    { "offset past the end", F, "past the end", .edit = t_past_end },
    { "offset + size wraps", F, "past the end", .edit = t_offset_wrap },
    { "overlapping tensors", F, "overlap", .edit = t_overlap },
    { "duplicate tensor name", F, "duplicate tensor name", .edit = t_dup_name },
    { "architecture not a string", F, "general.architecture", .extra_kv = kv_arch_u32, .n_extra_kv = 1 },
    { "head_count not a multiple of head_count_kv", F, "head_count_kv", .head_count_kv = 3 },
    { "kv heads above heads", F, "head_count_kv", .head_count_kv = 4 },
    { "block_count above the tensors present", F, "blk.1.attn_norm.weight", .block_count = 2 },
    { "tensor shape contradicts hparams", F, "attn_q.weight", .edit = t_shape },
    { "required tensor missing", F, "attn_q.weight", .edit = t_missing },
    { "vocab length differs from embedding", F, "tokenizer.ggml.tokens", .vocab_n = 6 },
    { "scores length differs from vocab", F, "tokenizer.ggml.scores", .scores_n = 5 },
    { "bos id outside vocab", F, "bos_token_id", .extra_kv = kv_bos_range, .n_extra_kv = 1 },
    { "a type we cannot compute with (q3_K)", EMBER_ERR_UNSUPPORTED, "q3_K", .edit = t_type_kquant },
    { "f16 norm vector", EMBER_ERR_UNSUPPORTED, "attn_norm", .edit = t_norm_f16 },
};
#undef F

static void check_defect(const defect *d) {
    size_t size;
    void *img = build(d, &size);
    assert_non_null(img);
    if (strcmp(d->what, "bad magic") == 0) memcpy(img, "GGUX", 4);
    counting_alloc ca = { 0 };
    ember_model_params p;
    ember_model_default_params(&p);
    p.allocator = counting_allocator(&ca);
    ember_model *m = (ember_model *)&ca; /* must be reset to NULL */
    int rc = ember_model_load_memory(img, size, &p, &m);
    const char *msg = ember_last_error();
    if (rc != d->status || !strstr(msg, d->needle))
        print_error("case '%s': status %d (want %d), message '%s' (want '%s')\n", d->what, rc,
                    d->status, msg, d->needle);
    assert_int_equal(rc, d->status);
    assert_non_null(strstr(msg, d->needle));
    assert_null(m);
    assert_int_equal(ca.live_blocks, 0);
    /* never an allocation larger than the file could justify */
    assert_true(ca.largest <= 8 * size + 4096);
    free(img);
}

static void test_malformed(void **state) {
    (void)state;
    size_t n = sizeof defects / sizeof defects[0];
    assert_true(n >= 25);
    for (size_t i = 0; i < n; i++) check_defect(&defects[i]);
}

static void test_valid_loads(void **state) {
    (void)state;
    defect ok = { .what = "valid", .needle = "" };
    size_t size;
    void *img = build(&ok, &size);
    counting_alloc ca = { 0 };
    ember_model_params p;
    ember_model_default_params(&p);
    p.allocator = counting_allocator(&ca);
    ember_model *m = NULL;
    int rc = ember_model_load_memory(img, size, &p, &m);
    if (rc) print_error("%s\n", ember_last_error());
    assert_int_equal(rc, EMBER_OK);
    assert_string_equal(ember_model_arch(m), "llama");
    assert_int_equal(ember_model_n_vocab(m), NV);
    assert_int_equal(ember_model_n_layer(m), 1);
    assert_int_equal(ember_model_n_head_kv(m), 1);
    assert_int_equal(ember_model_type_bytes(m, EMBER_TYPE_F32),
                     4 * (uint64_t)(E * NV + E + E + E * E + 2 * E * 4 + E * E + E + 3 * E * FF));
    ember_model_free(&m);
    assert_null(m);
    assert_int_equal(ca.live_blocks, 0);
    free(img);
}

/* Every allocation the loader makes, failed in turn: each failure is
 * reported as out-of-memory and leaves nothing allocated. */
static void test_alloc_failures(void **state) {
    (void)state;
    defect ok = { .what = "valid", .needle = "" };
    size_t size;
    void *img = build(&ok, &size);
    long total = 0;
    {
        counting_alloc ca = { 0 };
        ember_model_params p;
        ember_model_default_params(&p);
        p.allocator = counting_allocator(&ca);
        ember_model *m;
        assert_int_equal(ember_model_load_memory(img, size, &p, &m), EMBER_OK);
        total = ca.n_allocs;
        ember_model_free(&m);
    }
    assert_true(total > 5);
    print_message("model load: %ld allocation failure points\n", total);
    for (long k = 1; k <= total; k++) {
        counting_alloc ca = { .fail_at = k };
        ember_model_params p;
        ember_model_default_params(&p);
        p.allocator = counting_allocator(&ca);
        ember_model *m;
        int rc = ember_model_load_memory(img, size, &p, &m);
        assert_int_equal(rc, EMBER_ERR_NO_MEMORY);
        assert_null(m);
        assert_int_equal(ca.live_blocks, 0);
    }
    free(img);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_loads),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
