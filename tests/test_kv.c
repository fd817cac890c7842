/* The paged KV cache: block ownership under random operations against a
 * plain model of it, and, on tiny-llama, sequences batched together,
 * forks, rollbacks and exhaustion against independent runs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/kv.h"
#include "common.h"

/* ---- ownership, against a model ---- */

enum { NSEQ = 6, NCTX = 64, NBLOCKS = 12 };

typedef struct shadow {
    float val[NSEQ][NCTX]; /* what each position of each sequence holds */
    int32_t len[NSEQ];
} shadow;

static uint32_t rng = 12345;
static int rnd(int n) {
    rng = rng * 1664525u + 1013904223u;
    return (int)((rng >> 8) % (uint32_t)n);
}

/* Every invariant of the cache, and every held position's value. */
static void check_cache(const em_kv *kv, const shadow *sh) {
    int32_t refs[NBLOCKS] = { 0 };
    for (int s = 0; s < NSEQ; s++) {
        assert_int_equal(kv->len[s], sh->len[s]);
        assert_int_equal(kv->n_table[s], (sh->len[s] + EM_KV_BLOCK - 1) / EM_KV_BLOCK);
        for (int i = 0; i < kv->blocks_per_seq; i++) {
            int32_t b = kv->tables[s * kv->blocks_per_seq + i];
            if (i >= kv->n_table[s]) {
                assert_int_equal(b, -1);
                continue;
            }
            assert_true(b >= 0 && b < NBLOCKS);
            refs[b]++;
        }
        for (int p = 0; p < sh->len[s]; p++)
            assert_true(*(float *)em_kv_k(kv, 0, em_kv_slot(kv, s, p)) == sh->val[s][p]);
    }
    int on_free[NBLOCKS] = { 0 }, n_unref = 0;
    for (int i = 0; i < kv->n_free; i++) {
        int32_t b = kv->free_list[i];
        assert_true(b >= 0 && b < NBLOCKS);
        assert_int_equal(on_free[b]++, 0); /* no block twice */
    }
    for (int b = 0; b < NBLOCKS; b++) {
        assert_int_equal(kv->ref[b], refs[b]);
        assert_int_equal(on_free[b], refs[b] == 0);
        n_unref += refs[b] == 0;
    }
    assert_int_equal(kv->n_free, n_unref);
}

/* A batch writing `n` new values into several sequences at once, all or
 * nothing, the way ember_eval applies it. Returns 0 when refused. */
static int write_batch(em_kv *kv, shadow *sh, const int *seqs, const int *from, const int *to,
                       int n, float *next_val) {
    int64_t need = 0, released = 0;
    for (int j = 0; j < n; j++) {
        em_kv_need nd = em_kv_plan(kv, seqs[j], from[j], to[j]);
        need += nd.alloc;
        released += nd.released;
    }
    if (need > kv->n_free + released) return 0;
    for (int j = 0; j < n; j++) em_kv_truncate(kv, seqs[j], to[j]);
    for (int j = 0; j < n; j++) {
        em_kv_prepare(kv, seqs[j], from[j], to[j]);
        assert_true(kv->n_free >= 0);
        for (int p = from[j]; p < to[j]; p++) {
            float v = (*next_val)++;
            *(float *)em_kv_k(kv, 0, em_kv_slot(kv, seqs[j], p)) = v;
            sh->val[seqs[j]][p] = v;
        }
        sh->len[seqs[j]] = to[j];
    }
    return 1;
}

static void test_ownership_random(void **state) {
    (void)state;
    em_alloc a;
    em_alloc_init(&a, NULL);
    em_kv kv;
    assert_int_equal(em_kv_init(&kv, &a, 1, 1, 1, NCTX, NSEQ, NBLOCKS, EMBER_TYPE_F32), EMBER_OK);
    shadow sh;
    memset(&sh, 0, sizeof sh);
    float next_val = 1;
    int refused = 0, forks = 0, copies_seen = 0;
    size_t kbytes = (size_t)NBLOCKS * EM_KV_BLOCK * sizeof(float);
    float *snap_k = malloc(kbytes);
    int32_t snap_tables[NSEQ * 4], snap_ref[NBLOCKS], snap_free[NBLOCKS], snap_nfree;
    for (int step = 0; step < 20000; step++) {
        int op = rnd(10), s = rnd(NSEQ);
        if (op < 5) { /* a batch of 1-3 sequences, appends or rollbacks */
            int n = 1 + rnd(3), seqs[3], from[3], to[3];
            for (int j = 0; j < n; j++) {
                seqs[j] = (s + j) % NSEQ;
                from[j] = rnd(3) == 0 ? rnd(sh.len[seqs[j]] + 1) : sh.len[seqs[j]];
                to[j] = from[j] + 1 + rnd(20);
                if (to[j] > NCTX) to[j] = NCTX, from[j] = from[j] < to[j] ? from[j] : to[j] - 1;
            }
            memcpy(snap_k, kv.k[0], kbytes);
            memcpy(snap_tables, kv.tables, sizeof snap_tables);
            memcpy(snap_ref, kv.ref, sizeof snap_ref);
            memcpy(snap_free, kv.free_list, sizeof snap_free);
            snap_nfree = kv.n_free;
            uint64_t copies = kv.copies;
            if (!write_batch(&kv, &sh, seqs, from, to, n, &next_val)) {
                refused++; /* nothing changed, byte for byte */
                assert_memory_equal(snap_k, kv.k[0], kbytes);
                assert_memory_equal(snap_tables, kv.tables, sizeof snap_tables);
                assert_memory_equal(snap_ref, kv.ref, sizeof snap_ref);
                assert_int_equal(snap_nfree, kv.n_free);
                assert_memory_equal(snap_free, kv.free_list, sizeof(int32_t) * (size_t)kv.n_free);
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
                memcpy(sh.val[d], sh.val[s], sizeof sh.val[s]);
                sh.len[d] = sh.len[s];
            }
            forks++;
        } else {
            int which = rnd(8) == 0 ? -1 : s;
            em_kv_clear(&kv, which);
            for (int i = 0; i < NSEQ; i++)
                if (which < 0 || i == which) sh.len[i] = 0;
        }
        check_cache(&kv, &sh);
    }
    print_message("%d steps: %d batches refused, %d forks, %d batches copied on write\n", 20000,
                  refused, forks, copies_seen);
    assert_true(refused > 100 && forks > 100 && copies_seen > 100);
    em_kv_clear(&kv, -1);
    assert_int_equal(kv.n_free, NBLOCKS); /* everything came back */
    em_kv_free(&kv, &a);
    free(snap_k);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ownership_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
