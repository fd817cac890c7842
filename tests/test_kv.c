/* The paged KV cache: block ownership under random operations against a
 * plain model of it, and, on tiny-llama, sequences batched together,
 * forks, rollbacks and exhaustion against independent runs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/kv.h"
#include "common.h"

/* ---- ownership, against a model ---- */

enum { NSEQ = 6, NCTX = 64, MAXB = 48 };

/* The block size under test, and the pool: 192 positions in all. */
static int BLK = 16, NBLOCKS = 12;

/* What each position of each sequence holds: its token, and a value that
 * stands for its K/V, a function of the whole prefix as real K/V is, so a
 * block attached by prefix reuse must carry exactly the right values. */
typedef struct shadow {
    int32_t tok[NSEQ][NCTX];
    uint64_t ph[NSEQ][NCTX]; /* prefix hash up to and including p */
    int32_t len[NSEQ];
} shadow;

static uint32_t rng = 12345;
static int rnd(int n) {
    rng = rng * 1664525u + 1013904223u;
    return (int)((rng >> 8) % (uint32_t)n);
}

static uint64_t prefix_hash(uint64_t prev, int32_t t) {
    uint64_t h = (prev ^ (uint64_t)(uint32_t)t) * 0x100000001b3ull;
    return h ^ (h >> 31);
}
static float value_of(uint64_t ph) { return (float)(ph & 0xffffff); }

/* Tokens mostly follow a fixed pattern, so prefixes repeat across
 * sequences and reuse finds them; sometimes not, so they also differ. */
static int32_t pick_token(int p) { return rnd(5) == 0 ? 100 + rnd(40) : p % 7; }

static void shadow_set(shadow *sh, int s, int p, int32_t t) {
    sh->tok[s][p] = t;
    sh->ph[s][p] = prefix_hash(p ? sh->ph[s][p - 1] : 0, t);
}

/* Every invariant of the cache, and every held position's value. */
static void check_cache(const em_kv *kv, const shadow *sh) {
    int32_t refs[MAXB] = { 0 };
    for (int s = 0; s < NSEQ; s++) {
        assert_int_equal(kv->len[s], sh->len[s]);
        assert_int_equal(kv->n_table[s], (sh->len[s] + BLK - 1) / BLK);
        uint64_t name = EM_KV_HASH_ROOT;
        for (int i = 0; i < kv->blocks_per_seq; i++) {
            int32_t b = kv->tables[s * kv->blocks_per_seq + i];
            if (i >= kv->n_table[s]) {
                assert_int_equal(b, -1);
                continue;
            }
            assert_true(b >= 0 && b < NBLOCKS);
            refs[b]++;
            /* a block this sequence holds whole is sealed under the name
             * of its prefix */
            if ((i + 1) * BLK <= sh->len[s]) {
                name = em_kv_hash_block(name, &sh->tok[s][i * BLK], BLK);
                assert_int_equal(kv->sealed[b], 1);
                assert_true(kv->hash[b] == name);
            }
        }
        for (int p = 0; p < sh->len[s]; p++) {
            int64_t slot = em_kv_slot(kv, s, p);
            assert_true(*(float *)em_kv_k(kv, 0, slot) == value_of(sh->ph[s][p]));
            assert_int_equal(kv->tokens[slot], sh->tok[s][p]);
        }
    }
    /* free list and cached list: the unreferenced blocks, each once */
    int where[MAXB] = { 0 }, n_unref = 0, n_cached = 0;
    for (int i = 0; i < kv->n_free; i++) {
        int32_t b = kv->free_list[i];
        assert_true(b >= 0 && b < NBLOCKS);
        assert_int_equal(where[b]++, 0);
        assert_int_equal(kv->sealed[b], 0);
    }
    for (int32_t b = kv->lru_head, prev = -1; b >= 0; prev = b, b = kv->lru_next[b]) {
        assert_int_equal(kv->lru_prev[b], prev);
        assert_int_equal(where[b]++, 0);
        assert_int_equal(kv->sealed[b], 1);
        n_cached++;
    }
    assert_int_equal(kv->n_cached, n_cached);
    for (int b = 0; b < NBLOCKS; b++) {
        assert_int_equal(kv->ref[b], refs[b]);
        assert_int_equal(where[b], refs[b] == 0);
        n_unref += refs[b] == 0;
        /* every sealed block is in its bucket */
        if (kv->sealed[b]) {
            int32_t x = kv->bucket[(uint32_t)kv->hash[b] & kv->bucket_mask];
            while (x >= 0 && x != b) x = kv->chain[x];
            assert_int_equal(x, b);
        }
    }
    assert_int_equal(kv->n_free + kv->n_cached, n_unref);
}

/* A batch writing new positions into several sequences at once, all or
 * nothing, the way ember_eval applies it (tokens, then seals). Returns 0
 * when refused. */
static int write_batch(em_kv *kv, shadow *sh, const int *seqs, const int *from, const int *to,
                       int n) {
    int64_t need = 0, released = 0;
    for (int j = 0; j < n; j++) {
        em_kv_need nd = em_kv_plan(kv, seqs[j], from[j], to[j]);
        need += nd.alloc;
        released += nd.released;
    }
    if (need > em_kv_available(kv) + released) return 0;
    for (int j = 0; j < n; j++) em_kv_truncate(kv, seqs[j], to[j]);
    for (int j = 0; j < n; j++) {
        em_kv_prepare(kv, seqs[j], from[j], to[j]);
        assert_true(kv->n_free >= 0 && kv->n_cached >= 0);
        for (int p = from[j]; p < to[j]; p++) {
            shadow_set(sh, seqs[j], p, pick_token(p));
            int64_t slot = em_kv_slot(kv, seqs[j], p);
            *(float *)em_kv_k(kv, 0, slot) = value_of(sh->ph[seqs[j]][p]);
            kv->tokens[slot] = sh->tok[seqs[j]][p];
        }
        sh->len[seqs[j]] = to[j];
    }
    for (int j = 0; j < n; j++) em_kv_seal(kv, seqs[j], from[j], to[j]);
    return 1;
}

/* Prefix reuse for sequence s: tokens from another sequence's (or this
 * one's) held positions, sometimes changed, sometimes longer. Every whole
 * block another sequence holds is findable, so the run attached is at
 * least what that sequence holds of the request. */
static int reuse(em_kv *kv, shadow *sh, int s) {
    int o = rnd(NSEQ), n = rnd(NCTX + 1);
    int32_t toks[NCTX];
    for (int p = 0; p < n; p++) toks[p] = p < sh->len[o] ? sh->tok[o][p] : pick_token(p);
    int changed = rnd(3) == 0 && n > 0;
    if (changed) toks[rnd(n)] = 200;
    int whole = sh->len[o] < n ? sh->len[o] : n;
    int least = whole / BLK * BLK;
    if (least > n - 1) least = n - 1;
    int r = em_kv_reuse(kv, s, toks, n);
    assert_true(r <= (n > 0 ? n - 1 : 0));
    assert_true(r % BLK == 0 || r == n - 1);
    if (!changed && n > 0) assert_true(r >= least);
    for (int p = 0; p < r; p++) shadow_set(sh, s, p, toks[p]);
    sh->len[s] = r;
    return r;
}

static void ownership_random(int block) {
    BLK = block;
    NBLOCKS = 192 / block;
    em_alloc a;
    em_alloc_init(&a, NULL);
    em_kv kv;
    assert_int_equal(em_kv_init(&kv, &a, 1, 1, 1, NCTX, NSEQ, NBLOCKS, BLK, EMBER_TYPE_F32, (em_layer_range){ 0, 0 }), EMBER_OK);
    static shadow sh;
    memset(&sh, 0, sizeof sh);
    int refused = 0, forks = 0, copies_seen = 0, reuses = 0, reused_blocks = 0;
    size_t kbytes = (size_t)NBLOCKS * BLK * sizeof(float);
    float *snap_k = malloc(kbytes);
    int32_t snap_tables[NSEQ * NCTX / 4], snap_ref[MAXB], snap_free[MAXB], snap_nfree;
    int32_t snap_next[MAXB], snap_head, snap_tokens[MAXB * 4];
    uint8_t snap_sealed[MAXB];
    size_t tbytes = sizeof(int32_t) * NSEQ * (size_t)kv.blocks_per_seq;
    size_t bbytes = sizeof(int32_t) * (size_t)NBLOCKS;
    for (int step = 0; step < 20000; step++) {
        int op = rnd(12), s = rnd(NSEQ);
        if (op < 5) { /* a batch of 1-3 sequences, appends or rollbacks */
            int n = 1 + rnd(3), seqs[3], from[3], to[3];
            for (int j = 0; j < n; j++) {
                seqs[j] = (s + j) % NSEQ;
                from[j] = rnd(3) == 0 ? rnd(sh.len[seqs[j]] + 1) : sh.len[seqs[j]];
                to[j] = from[j] + 1 + rnd(20);
                if (to[j] > NCTX) to[j] = NCTX, from[j] = from[j] < to[j] ? from[j] : to[j] - 1;
            }
            memcpy(snap_k, kv.k[0], kbytes);
            memcpy(snap_tables, kv.tables, tbytes);
            memcpy(snap_ref, kv.ref, bbytes);
            memcpy(snap_free, kv.free_list, bbytes);
            memcpy(snap_next, kv.lru_next, bbytes);
            memcpy(snap_tokens, kv.tokens, sizeof snap_tokens); /* 192 slots */
            memcpy(snap_sealed, kv.sealed, (size_t)NBLOCKS);
            snap_nfree = kv.n_free;
            snap_head = kv.lru_head;
            uint64_t copies = kv.copies;
            if (!write_batch(&kv, &sh, seqs, from, to, n)) {
                refused++; /* nothing changed, byte for byte */
                assert_memory_equal(snap_k, kv.k[0], kbytes);
                assert_memory_equal(snap_tables, kv.tables, tbytes);
                assert_memory_equal(snap_ref, kv.ref, bbytes);
                assert_int_equal(snap_nfree, kv.n_free);
                assert_memory_equal(snap_free, kv.free_list, sizeof(int32_t) * (size_t)kv.n_free);
                assert_int_equal(snap_head, kv.lru_head);
                assert_memory_equal(snap_next, kv.lru_next, bbytes);
                assert_memory_equal(snap_tokens, kv.tokens, sizeof snap_tokens);
                assert_memory_equal(snap_sealed, kv.sealed, (size_t)NBLOCKS);
            }
            copies_seen += kv.copies != copies;
        } else if (op < 7) {
            int n = rnd(NCTX + 1);
            em_kv_truncate(&kv, s, n);
            if (sh.len[s] > n) sh.len[s] = n;
        } else if (op < 9) {
            int d = rnd(NSEQ);
            em_kv_fork(&kv, s, d);
            if (d != s) {
                memcpy(sh.tok[d], sh.tok[s], sizeof sh.tok[s]);
                memcpy(sh.ph[d], sh.ph[s], sizeof sh.ph[s]);
                sh.len[d] = sh.len[s];
            }
            forks++;
        } else if (op < 11) {
            int r = reuse(&kv, &sh, s);
            reuses++;
            reused_blocks += r;
        } else {
            int which = rnd(8) == 0 ? -1 : s;
            em_kv_clear(&kv, which);
            for (int i = 0; i < NSEQ; i++)
                if (which < 0 || i == which) sh.len[i] = 0;
        }
        check_cache(&kv, &sh);
    }
    print_message("block %d, %d steps: %d batches refused, %d forks, %d batches copied on write, %d reuses "
                  "attaching %d positions, %llu cached blocks evicted\n", BLK, 20000, refused, forks,
                  copies_seen, reuses, reused_blocks, (unsigned long long)kv.evicted);
    assert_true(refused > 100 && forks > 100 && copies_seen > 100);
    assert_true(reused_blocks > 500 * BLK && kv.evicted > 100);
    assert_int_equal(kv.reused, (uint64_t)reused_blocks);
    em_kv_clear(&kv, -1);
    assert_int_equal(em_kv_available(&kv), NBLOCKS); /* everything came back */
    em_kv_free(&kv, &a);
    free(snap_k);
}

static void test_ownership_random(void **state) {
    (void)state;
    ownership_random(16); /* the default */
    ownership_random(4);  /* many blocks per sequence, the smallest allowed */
}

/* ---- tiny-llama through the public API ---- */

enum { TL_VOCAB = 32000, MAXLEN = 64 };

static ember_model *load(const char *rel) {
    ember_model *m = NULL;
    int rc = ember_model_load_file(testdata_path(rel), NULL, &m);
    if (rc) print_error("%s\n", ember_last_error());
    assert_int_equal(rc, EMBER_OK);
    assert_int_equal(ember_model_n_vocab(m), TL_VOCAB);
    return m;
}

static ember_model *tiny_llama(void) { return load("models/tiny-llama/model-f16.gguf"); }

/* act_type for the contexts new_ctx makes (the 8-sequence test sets it) */
static int32_t ctx_act = EMBER_TYPE_F32;

static ember_context *new_ctx(const ember_model *m, uint32_t n_seq, uint32_t kv_blocks) {
    ember_context_params p;
    ember_context_default_params(&p);
    p.act_type = ctx_act;
    p.n_ctx = MAXLEN;
    p.n_batch = 128;
    p.n_seq_max = n_seq;
    p.kv_blocks = kv_blocks;
    ember_context *c = NULL;
    int rc = ember_context_create(m, &p, &c);
    if (rc) print_error("%s\n", ember_last_error());
    assert_int_equal(rc, EMBER_OK);
    return c;
}

/* Token i of test sequence k (distinct sequences from the vocabulary). */
static int32_t tok(int k, int i) { return 1 + (k * 7919 + i * 104729 + i * i * 31) % (TL_VOCAB - 1); }

/* Logits of every position of ids[0..n) evaluated alone in a fresh context. */
static float *alone(const ember_model *m, const int32_t *ids, int n) {
    ember_context *c = new_ctx(m, 1, 0);
    ember_batch_entry e[MAXLEN];
    for (int i = 0; i < n; i++) e[i] = (ember_batch_entry){ ids[i], i, 0, 1 };
    assert_int_equal(ember_eval(c, e, (size_t)n), EMBER_OK);
    float *out = malloc((size_t)n * TL_VOCAB * 4);
    for (int i = 0; i < n; i++) memcpy(out + (size_t)i * TL_VOCAB, ember_get_logits(c, (size_t)i), TL_VOCAB * 4);
    ember_context_free(&c);
    return out;
}

static double diff(const float *a, const float *b) { return max_diff(a, b, TL_VOCAB); }

/* Eight sequences of different lengths in one prompt batch, then four
 * decode steps of all eight per batch: each row as the sequence gives it
 * alone. The state names the model: tiny-llama (GQA), tiny-deepseek3
 * (MLA: the cache holds the compressed latent and the RoPE key, paged the
 * same way), and tiny-llama quantized to Q4_0 run with 8-bit activations
 * (act_type Q8_0: batches take the 8-bit GEMM, single tokens the integer
 * dot, both rounding activations alike). */
typedef struct eight_case {
    const char *model;
    uint32_t quantize; /* 0: as stored */
    int32_t act;
} eight_case;

static void test_eight_sequences(void **state) {
    const eight_case *ec = *state;
    char *qpath = NULL;
    ember_model *m;
    if (ec->quantize) {
        ember_quantize_params qp;
        ember_quantize_default_params(&qp);
        qp.type = ec->quantize;
        qpath = quantize_to_temp_file(testdata_path(ec->model), &qp);
        m = NULL;
        assert_int_equal(ember_model_load_file(qpath, NULL, &m), EMBER_OK);
    } else {
        m = load(ec->model);
    }
    ctx_act = ec->act;
    enum { NS = 8, STEPS = 4 };
    int32_t ids[NS][MAXLEN];
    int plen[NS];
    float *ref[NS];
    for (int k = 0; k < NS; k++) {
        plen[k] = 5 + k;
        for (int i = 0; i < plen[k] + STEPS; i++) ids[k][i] = tok(k, i);
        ref[k] = alone(m, ids[k], plen[k] + STEPS);
    }
    ember_context *c = new_ctx(m, NS, 0);
    ember_batch_entry e[128];
    int n = 0, row[NS][MAXLEN];
    for (int i = 0; i < 12; i++) /* interleaved, as a server would mix them */
        for (int k = 0; k < NS; k++)
            if (i < plen[k]) {
                row[k][i] = n;
                e[n++] = (ember_batch_entry){ ids[k][i], i, k, 1 };
            }
    assert_int_equal(ember_eval(c, e, (size_t)n), EMBER_OK);
    double worst = 0;
    for (int k = 0; k < NS; k++)
        for (int i = 0; i < plen[k]; i++)
            worst = fmax(worst, diff(ember_get_logits(c, (size_t)row[k][i]), ref[k] + (size_t)i * TL_VOCAB));
    for (int s = 0; s < STEPS; s++) {
        for (int k = 0; k < NS; k++)
            e[k] = (ember_batch_entry){ ids[NS - 1 - k][plen[NS - 1 - k] + s], plen[NS - 1 - k] + s, NS - 1 - k, 1 };
        assert_int_equal(ember_eval(c, e, NS), EMBER_OK);
        for (int k = 0; k < NS; k++) {
            int q = NS - 1 - k;
            worst = fmax(worst, diff(ember_get_logits(c, (size_t)k), ref[q] + (size_t)(plen[q] + s) * TL_VOCAB));
        }
    }
    print_message("%s (type %u, act %d): 8 sequences batched vs alone: max |diff| %.3g\n",
                  ec->model, ec->quantize, ec->act, worst);
    /* (the sequences do differ, so the comparison can fail) */
    assert_true(diff(ref[0] + (size_t)(plen[0] - 1) * TL_VOCAB, ref[1] + (size_t)(plen[1] - 1) * TL_VOCAB) > 1e-2);
    assert_true(worst < 1e-4);
    ember_kv_info info = { .struct_size = sizeof info };
    assert_int_equal(ember_kv_info_get(c, &info), EMBER_OK);
    uint64_t held = 0;
    for (int k = 0; k < NS; k++) held += (uint64_t)(plen[k] + STEPS);
    assert_int_equal(info.positions_held, held);
    assert_int_equal(info.blocks_used, NS); /* each sequence fits one block */
    assert_int_equal(ember_seq_clear(c, -1), EMBER_OK);
    assert_int_equal(ember_kv_info_get(c, &info), EMBER_OK);
    assert_int_equal(info.blocks_free, info.blocks_total);
    ember_context_free(&c);
    for (int k = 0; k < NS; k++) free(ref[k]);
    ember_model_free(&m);
    ctx_act = EMBER_TYPE_F32;
    if (qpath) {
        unlink(qpath);
        free(qpath);
    }
}

/* Evaluates ids[from..to) of sequence s, one batch; returns the logits of
 * the last. */
static ember_kv_info kv_info(const ember_context *c);

static const float *run(ember_context *c, int s, const int32_t *ids, int from, int to) {
    ember_batch_entry e[MAXLEN];
    for (int i = from; i < to; i++) e[i - from] = (ember_batch_entry){ ids[i], i, s, i == to - 1 };
    int rc = ember_eval(c, e, (size_t)(to - from));
    if (rc) print_error("%s\n", ember_context_last_error(c));
    assert_int_equal(rc, EMBER_OK);
    return ember_get_logits(c, (size_t)(to - from - 1));
}

/* A fork shares the parent's blocks; both branches then write (into the
 * shared partial block, which each copies) and each matches an
 * independent run; later writes to one do not reach the other. */
/* A cache split by layers (a model split between a device and the CPU):
 * host layers get rows in host memory in layer order, device layers none
 * (laid out from the range's first layer on the device); a copy-on-write
 * copies the host layers' rows at once and queues one copy for the
 * device's. */
static void test_mixed_layers(void **state) {
    (void)state;
    enum { L = 4, ROW = 8, B = 16 };
    em_alloc a;
    em_alloc_init(&a, NULL);
    em_kv kv;
    assert_int_equal(em_kv_init(&kv, &a, L, ROW, ROW, 64, 2, 0, B, EMBER_TYPE_F32,
                                (em_layer_range){ 1, 3 }),
                     EMBER_OK);
    size_t layer = em_kv_layer_bytes(&kv);
    assert_int_equal(em_kv_host_bytes(&kv), 2 * layer);
    assert_int_equal(em_kv_device_bytes(&kv), 2 * layer);
    assert_int_equal(em_kv_layer_offset(&kv, 1), 0);
    assert_int_equal(em_kv_layer_offset(&kv, 2), layer);
    for (int l = 0; l < L; l++) {
        bool dev = l == 1 || l == 2;
        assert_int_equal(em_kv_on_device(&kv, l), dev);
        assert_int_equal(kv.k[l] == NULL, dev);
        assert_int_equal(kv.v[l] == NULL, dev);
    }
    assert_ptr_equal(kv.k[0], kv.mem);
    assert_ptr_equal(kv.k[3], (char *)kv.mem + layer); /* the second host layer */
    em_kv_prepare(&kv, 0, 0, 5);
    for (int p = 0; p < 5; p++)
        for (int l = 0; l < L; l += 3)
            for (int i = 0; i < ROW; i++) {
                ((float *)em_kv_k(&kv, l, em_kv_slot(&kv, 0, p)))[i] = (float)(100 * l + 10 * p + i);
                ((float *)em_kv_v(&kv, l, em_kv_slot(&kv, 0, p)))[i] = (float)(-100 * l - p - i);
            }
    em_kv_fork(&kv, 0, 1);
    em_kv_need need = em_kv_plan(&kv, 1, 3, 4); /* into the shared block */
    assert_int_equal(need.alloc, 1);
    em_kv_prepare(&kv, 1, 3, 4);
    int64_t src = em_kv_slot(&kv, 0, 0), dst = em_kv_slot(&kv, 1, 0);
    assert_true(src != dst);
    for (int l = 0; l < L; l += 3) /* host rows copied, positions 0-2 at least */
        for (int p = 0; p < 3; p++) {
            assert_memory_equal(em_kv_k(&kv, l, src + p), em_kv_k(&kv, l, dst + p), kv.k_bytes);
            assert_memory_equal(em_kv_v(&kv, l, src + p), em_kv_v(&kv, l, dst + p), kv.v_bytes);
        }
    assert_int_equal(kv.n_pending, 1); /* one block copy owed for the device layers */
    assert_int_equal(kv.pending[0][0], (int32_t)(dst / B));
    assert_int_equal(kv.pending[0][1], (int32_t)(src / B));
    em_kv_free(&kv, &a);
}

static void test_fork(void **state) {
    (void)state;
    ember_model *m = tiny_llama();
    enum { P = 10, A = 3 };
    int32_t a[MAXLEN], b[MAXLEN];
    for (int i = 0; i < P; i++) a[i] = b[i] = tok(1, i);
    for (int i = P; i < P + 2 * A; i++) a[i] = tok(2, i), b[i] = tok(3, i);
    float *ra = alone(m, a, P + 2 * A), *rb = alone(m, b, P + A);
    ember_context *c = new_ctx(m, 2, 0);
    run(c, 0, a, 0, P);
    assert_int_equal(ember_seq_fork(c, 0, 1), EMBER_OK);
    assert_int_equal(ember_seq_length(c, 1), P);
    ember_kv_info info = { .struct_size = sizeof info };
    assert_int_equal(ember_kv_info_get(c, &info), EMBER_OK);
    assert_int_equal(info.blocks_used, 1);
    assert_int_equal(info.blocks_shared, 1);
    /* both branches in one batch */
    ember_batch_entry e[2 * A];
    for (int i = 0; i < A; i++) {
        e[2 * i] = (ember_batch_entry){ a[P + i], P + i, 0, 1 };
        e[2 * i + 1] = (ember_batch_entry){ b[P + i], P + i, 1, 1 };
    }
    assert_int_equal(ember_eval(c, e, 2 * A), EMBER_OK);
    double worst = 0;
    for (int i = 0; i < A; i++) {
        worst = fmax(worst, diff(ember_get_logits(c, (size_t)(2 * i)), ra + (size_t)(P + i) * TL_VOCAB));
        worst = fmax(worst, diff(ember_get_logits(c, (size_t)(2 * i + 1)), rb + (size_t)(P + i) * TL_VOCAB));
    }
    assert_int_equal(ember_kv_info_get(c, &info), EMBER_OK);
    assert_int_equal(info.blocks_shared, 0);
    assert_true(info.blocks_copied >= 1);
    /* the parent goes on; then the child's cache must still be its own */
    worst = fmax(worst, diff(run(c, 0, a, P + A, P + 2 * A), ra + (size_t)(P + 2 * A - 1) * TL_VOCAB));
    ember_context *c2 = new_ctx(m, 1, 0);
    run(c2, 0, b, 0, P + A - 1);
    const float *want = run(c2, 0, b, P + A - 1, P + A);
    /* re-evaluating the child's last position (a rollback of one) */
    worst = fmax(worst, diff(run(c, 1, b, P + A - 1, P + A), want));
    print_message("fork: max |diff| against independent runs %.3g\n", worst);
    assert_true(worst < 1e-4);
    ember_context_free(&c2);
    ember_context_free(&c);
    free(ra);
    free(rb);
    ember_model_free(&m);
}

/* The block size changes where positions live, not what attention
 * computes: two sequences written alternately (so each one's blocks are
 * scattered through the pool), prompt then decode, give bit-equal logits
 * at every allowed size tried; the cache holds ceil(len / size) blocks
 * per sequence; sizes that are not powers of two from 4 to 256 are
 * refused. */
static void test_block_sizes(void **state) {
    (void)state;
    ember_model *m = tiny_llama();
    enum { P = 21, T = 9, NSZ = 5 };
    static const uint32_t sizes[NSZ] = { 16, 4, 8, 32, 256 };
    int32_t ids[2][MAXLEN];
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < P + T; i++) ids[k][i] = tok(10 + k, i);
    float *ref = malloc((size_t)2 * T * TL_VOCAB * 4);
    for (int z = 0; z < NSZ; z++) {
        ember_context_params p;
        ember_context_default_params(&p);
        p.n_ctx = MAXLEN;
        p.n_seq_max = 2;
        p.kv_block_size = sizes[z];
        ember_context *c = NULL;
        assert_int_equal(ember_context_create(m, &p, &c), EMBER_OK);
        for (int k = 0; k < 2; k++) run(c, k, ids[k], 0, 5); /* interleave the blocks */
        for (int k = 0; k < 2; k++) run(c, k, ids[k], 5, P);
        double d = 0;
        for (int i = P; i < P + T; i++) {
            for (int k = 0; k < 2; k++) {
                const float *l = run(c, k, ids[k], i, i + 1);
                float *r = ref + ((size_t)(i - P) * 2 + (size_t)k) * TL_VOCAB;
                if (z == 0) memcpy(r, l, TL_VOCAB * 4);
                else d = fmax(d, diff(l, r));
            }
        }
        ember_kv_info info = kv_info(c);
        assert_int_equal(info.block_positions, sizes[z]);
        assert_int_equal(info.blocks_used, 2 * ((P + T + sizes[z] - 1) / sizes[z]));
        if (z > 0) print_message("block size %u: max |diff| against size 16: %g\n", sizes[z], d);
        assert_true(d == 0);
        ember_context_free(&c);
    }
    static const uint32_t bad[] = { 2, 3, 12, 512, 1u << 31 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ember_context_params p;
        ember_context_default_params(&p);
        p.n_ctx = MAXLEN;
        p.kv_block_size = bad[i];
        ember_context *c = NULL;
        assert_int_equal(ember_context_create(m, &p, &c), EMBER_ERR_INVALID_ARGUMENT);
        assert_null(c);
        assert_non_null(strstr(ember_last_error(), "kv_block_size"));
    }
    free(ref);
    ember_model_free(&m);
}

/* Rollback: speculative tokens truncated away, then other tokens; the
 * same logits as never having seen the speculative ones. */
static void test_truncate(void **state) {
    (void)state;
    ember_model *m = tiny_llama();
    enum { P = 20, S = 6, T = 3 };
    int32_t spec[MAXLEN], good[MAXLEN];
    for (int i = 0; i < P + S; i++) spec[i] = good[i] = tok(4, i);
    for (int i = P; i < P + S; i++) spec[i] = tok(5, i);
    float *ref = alone(m, good, P + T);
    ember_context *c = new_ctx(m, 1, 0);
    run(c, 0, spec, 0, P + S);
    assert_int_equal(ember_seq_truncate(c, 0, P), EMBER_OK);
    assert_int_equal(ember_seq_length(c, 0), P);
    assert_int_equal(ember_seq_truncate(c, 0, 1000), EMBER_OK); /* longer: no change */
    assert_int_equal(ember_seq_length(c, 0), P);
    assert_int_equal(ember_seq_truncate(c, 0, -1), EMBER_ERR_INVALID_ARGUMENT);
    double d = diff(run(c, 0, good, P, P + T), ref + (size_t)(P + T - 1) * TL_VOCAB);
    assert_true(d < 1e-4);
    ember_kv_info info = { .struct_size = sizeof info };
    assert_int_equal(ember_kv_info_get(c, &info), EMBER_OK);
    assert_int_equal(info.blocks_used, (P + T + EMBER_KV_BLOCK - 1) / EMBER_KV_BLOCK);
    ember_context_free(&c);
    free(ref);
    ember_model_free(&m);
}

static ember_kv_info kv_info(const ember_context *c) {
    ember_kv_info info = { .struct_size = sizeof info };
    assert_int_equal(ember_kv_info_get(c, &info), EMBER_OK);
    return info;
}

/* Prefix reuse: a second prompt sharing 37 tokens with a first attaches
 * its two whole blocks and computes only the rest, with the logits of a
 * run without reuse; a prompt matched to a block boundary recomputes only
 * its last token; cached blocks survive clearing and are evicted when a
 * write needs the room. */
static void test_prefix_reuse(void **state) {
    (void)state;
    ember_model *m = tiny_llama();
    enum { P = 37, NA = 43, NB = 48 };
    int32_t a[MAXLEN], b[MAXLEN];
    for (int i = 0; i < P; i++) a[i] = b[i] = tok(20, i);
    for (int i = P; i < MAXLEN; i++) a[i] = tok(21, i), b[i] = tok(22, i);
    float *ref = alone(m, b, NB);
    /* without reuse, the last token evaluated alone as below */
    ember_context *c = new_ctx(m, 1, 0);
    run(c, 0, b, 0, NB - 1);
    float last[TL_VOCAB];
    memcpy(last, run(c, 0, b, NB - 1, NB), sizeof last);
    ember_context_free(&c);
    c = new_ctx(m, 2, 0);
    run(c, 0, a, 0, NA);
    ember_kv_info before = kv_info(c);
    assert_int_equal(ember_seq_reuse_prefix(c, 1, b, NB), 32);
    ember_kv_info info = kv_info(c);
    assert_int_equal(info.blocks_shared, 2); /* sequence 0 still holds them */
    assert_int_equal(info.blocks_used, before.blocks_used);
    assert_int_equal(info.positions_reused, 32);
    ember_batch_entry e[MAXLEN];
    for (int i = 32; i < NB; i++) e[i - 32] = (ember_batch_entry){ b[i], i, 1, 1 };
    assert_int_equal(ember_eval(c, e, NB - 32), EMBER_OK);
    double worst = 0;
    for (int i = 32; i < NB; i++)
        worst = fmax(worst, diff(ember_get_logits(c, (size_t)(i - 32)), ref + (size_t)i * TL_VOCAB));
    info = kv_info(c);
    /* the counter: only the 16 positions after the reused ones were computed */
    assert_int_equal(info.positions_written - before.positions_written, NB - 32);
    assert_int_equal(info.blocks_copied, 0);
    /* everything cleared: the sealed blocks stay cached, counted free */
    assert_int_equal(ember_seq_clear(c, -1), EMBER_OK);
    info = kv_info(c);
    assert_int_equal(info.blocks_cached, 3); /* the shared two and b's third */
    assert_int_equal(info.blocks_free, info.blocks_total);
    /* the whole of b matches: 47 positions attached, the last recomputed
     * in place (no one else holds its block) */
    before = info;
    assert_int_equal(ember_seq_reuse_prefix(c, 0, b, NB), NB - 1);
    worst = fmax(worst, diff(run(c, 0, b, NB - 1, NB), last));
    info = kv_info(c);
    assert_int_equal(info.positions_written - before.positions_written, 1);
    assert_int_equal(info.blocks_copied, 0);
    assert_int_equal(info.blocks_used, 3);
    /* the same prompt in a second sequence shares all three blocks; its
     * last token then writes into a shared block, which it copies */
    assert_int_equal(ember_seq_reuse_prefix(c, 1, b, NB), NB - 1);
    worst = fmax(worst, diff(run(c, 1, b, NB - 1, NB), last));
    info = kv_info(c);
    assert_int_equal(info.blocks_copied, 1);
    assert_int_equal(info.blocks_shared, 2);
    print_message("prefix reuse: max |diff| against a run without reuse %.3g\n", worst);
    assert_true(worst < 1e-4);
    /* a different first token matches nothing */
    int32_t other[MAXLEN];
    memcpy(other, b, sizeof other);
    other[0] = tok(23, 0);
    assert_int_equal(ember_seq_reuse_prefix(c, 1, other, NB), 0);
    assert_int_equal(ember_seq_reuse_prefix(c, 1, NULL, 5), EMBER_ERR_INVALID_ARGUMENT);
    assert_int_equal(ember_seq_reuse_prefix(c, 2, b, NB), EMBER_ERR_INVALID_ARGUMENT);
    ember_context_free(&c);

    /* eviction: a budget of 4 blocks; b's three cached blocks are taken,
     * least recently released first, when 64 new positions need room */
    c = new_ctx(m, 2, 4);
    run(c, 0, b, 0, NB);
    assert_int_equal(ember_seq_clear(c, 0), EMBER_OK);
    assert_int_equal(kv_info(c).blocks_cached, 3);
    for (int i = 0; i < MAXLEN; i++) other[i] = tok(24, i);
    run(c, 1, other, 0, 16 + 2); /* one free block, then one evicted: b's third */
    info = kv_info(c);
    assert_int_equal(info.blocks_evicted, 1);
    assert_int_equal(info.blocks_cached, 2);
    assert_int_equal(ember_seq_reuse_prefix(c, 0, b, NB), 32); /* b's first two survive */
    assert_int_equal(ember_seq_clear(c, 0), EMBER_OK);
    run(c, 1, other, 16 + 2, MAXLEN); /* takes all four */
    info = kv_info(c);
    assert_int_equal(info.blocks_evicted, 3);
    assert_int_equal(ember_seq_reuse_prefix(c, 0, b, NB), 0);
    ember_context_free(&c);
    free(ref);
    ember_model_free(&m);
}

typedef struct kv_snapshot {
    void *mem;
    size_t mem_bytes;
    int32_t tables[4 * 4], n_table[4], len[4], ref[6], free_list[6], n_free;
} kv_snapshot;

static void snapshot(ember_context *c, kv_snapshot *s) {
    const em_kv *kv = em_context_kv(c);
    s->mem_bytes = em_kv_block_bytes(kv) * (size_t)kv->n_blocks;
    s->mem = malloc(s->mem_bytes);
    memcpy(s->mem, kv->mem, s->mem_bytes);
    memcpy(s->tables, kv->tables, sizeof s->tables);
    memcpy(s->n_table, kv->n_table, sizeof s->n_table);
    memcpy(s->len, kv->len, sizeof s->len);
    memcpy(s->ref, kv->ref, sizeof s->ref);
    memset(s->free_list, 0, sizeof s->free_list);
    memcpy(s->free_list, kv->free_list, (size_t)kv->n_free * 4);
    s->n_free = kv->n_free;
}

static void assert_same_snapshot(const kv_snapshot *a, const kv_snapshot *b) {
    assert_int_equal(a->mem_bytes, b->mem_bytes);
    assert_memory_equal(a->mem, b->mem, a->mem_bytes);
    assert_memory_equal(a->tables, b->tables, sizeof a->tables);
    assert_memory_equal(a->n_table, b->n_table, sizeof a->n_table);
    assert_memory_equal(a->len, b->len, sizeof a->len);
    assert_memory_equal(a->ref, b->ref, sizeof a->ref);
    assert_int_equal(a->n_free, b->n_free);
    assert_memory_equal(a->free_list, b->free_list, sizeof a->free_list);
}

/* A budget of 6 blocks: two sequences of 40 positions take all; a batch
 * that needs one more block fails with EMBER_ERR_KV_FULL and leaves the
 * cache byte for byte as it was, even the part of the batch that would
 * have fit; the full sequences go on decoding; clearing one makes room. */
static void test_exhaustion(void **state) {
    (void)state;
    ember_model *m = tiny_llama();
    enum { L = 40 };
    int32_t ids[3][MAXLEN];
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < MAXLEN; i++) ids[k][i] = tok(10 + k, i);
    float *ref0 = alone(m, ids[0], L + 2), *ref2 = alone(m, ids[2], 5);
    ember_context *c = new_ctx(m, 4, 6);
    run(c, 0, ids[0], 0, L);
    run(c, 1, ids[1], 0, L);
    ember_kv_info info = { .struct_size = sizeof info };
    assert_int_equal(ember_kv_info_get(c, &info), EMBER_OK);
    assert_int_equal(info.blocks_total, 6);
    assert_int_equal(info.blocks_free, 0);
    kv_snapshot before, after;
    snapshot(c, &before);
    ember_batch_entry e[6];
    for (int i = 0; i < 5; i++) e[i] = (ember_batch_entry){ ids[2][i], i, 2, 1 };
    assert_int_equal(ember_eval(c, e, 5), EMBER_ERR_KV_FULL);
    snapshot(c, &after);
    assert_same_snapshot(&before, &after);
    free(after.mem);
    /* sequence 0 alone fits (its third block has room), with 2 it does not */
    e[5] = (ember_batch_entry){ ids[0][L], L, 0, 1 };
    assert_int_equal(ember_eval(c, e, 6), EMBER_ERR_KV_FULL);
    snapshot(c, &after);
    assert_same_snapshot(&before, &after);
    free(after.mem);
    free(before.mem);
    /* the others are unharmed */
    assert_true(diff(run(c, 0, ids[0], L, L + 1), ref0 + (size_t)L * TL_VOCAB) < 1e-4);
    /* removing a sequence returns its blocks */
    assert_int_equal(ember_seq_clear(c, 1), EMBER_OK);
    assert_int_equal(ember_kv_info_get(c, &info), EMBER_OK);
    assert_int_equal(info.blocks_free, 3);
    assert_true(diff(run(c, 2, ids[2], 0, 5), ref2 + 4 * TL_VOCAB) < 1e-4);
    assert_true(diff(run(c, 0, ids[0], L + 1, L + 2), ref0 + (size_t)(L + 1) * TL_VOCAB) < 1e-4);
    ember_context_free(&c);
    free(ref0);
    free(ref2);
    ember_model_free(&m);
}

static const eight_case eight_llama = { "models/tiny-llama/model-f16.gguf", 0, EMBER_TYPE_F32 };
static const eight_case eight_deepseek3 = { "models/tiny-deepseek3/model-f16.gguf", 0, EMBER_TYPE_F32 };
static const eight_case eight_llama_q4_act8 = { "models/tiny-llama/model-f16.gguf", EMBER_TYPE_Q4_0,
                                                EMBER_TYPE_Q8_0 };

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ownership_random),
        cmocka_unit_test_prestate(test_eight_sequences, (void *)&eight_llama),
        cmocka_unit_test_prestate(test_eight_sequences, (void *)&eight_deepseek3),
        cmocka_unit_test_prestate(test_eight_sequences, (void *)&eight_llama_q4_act8),
        cmocka_unit_test(test_fork), cmocka_unit_test(test_mixed_layers),
        cmocka_unit_test(test_truncate),
        cmocka_unit_test(test_block_sizes),
        cmocka_unit_test(test_exhaustion),
        cmocka_unit_test(test_prefix_reuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
