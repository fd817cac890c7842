/* ember-batch: serves N requests with continuous batching on one context.
 *
 * Every request (a prompt of -pp tokens, then -tg generated tokens, greedy)
 * arrives at time 0. Up to -ns requests are active at once, each in its own
 * sequence of the paged KV cache; every step evaluates one batch that holds
 * the next token of each decoding request plus prompt chunks of requests
 * that just joined, so requests join and leave while others decode. When
 * the KV pool cannot take a joining prompt (EMBER_ERR_KV_FULL; the cache is
 * unchanged), the step runs without it and it waits.
 *
 * Reported: prompt and decode tokens/s (each step's time split between its
 * prompt and decode tokens in proportion to their counts), per-request
 * latency (arrival to last token), and the KV memory in use against the
 * memory the held tokens need, each averaged over the steps. When a step's
 * decode tokens alone do not fit, the newest request is preempted: its
 * blocks are freed and it starts over when it joins again.
 *
 * -sp N makes the first N prompt tokens the same for every request (a
 * shared system prompt): a joining request attaches the cached blocks of
 * that prefix (ember_seq_reuse_prefix) and computes only the rest.
 * -ctk picks the KV element type (f32, f16, q8_0); -act picks the
 * activations of Q8_0/Q4_0 matmuls: q8_0 (the default here: 8 bits, the
 * arithmetic of llama.cpp, whose batched bench this compares with; faster
 * batches on AVX512-VNNI CPUs) or f32 (the library's default); -kvb sets
 * the positions per KV block (kv_block_size; 8 by default here: each
 * sequence wastes half a block on average, 2.5% of 160 positions at 8
 * against 5% at 16, and attention reads in chunks of 16 positions
 * whatever the block size, so small blocks cost little).
 *
 *   ember-batch -m FILE -np 32 -pp 128 -tg 32 -t 2 [-ns 32] [-kv BLOCKS] [-kvb 8]
 *               [-sp N] [-ctk f32|f16|q8_0] [-act q8_0|f32] [-o json]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ember.h"
#include "bandwidth.h"
#include "synth_model.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct request {
    int slot;      /* sequence id while active, -1 otherwise */
    int prompt_done, generated;
    int32_t next;  /* token to feed next while decoding */
    double done_at;
} request;

typedef struct opts {
    const char *model;
    int np, pp, tg, threads, slots, kv_blocks, kv_block, json, shared_prefix;
    int32_t kv_type, act_type;
} opts;

static int parse(int argc, char **argv, opts *o) {
    *o = (opts){ NULL, 32, 128, 32, 2, 0, 0, 8, 0, 0, EMBER_TYPE_F32, EMBER_TYPE_Q8_0 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-o") && v) o->json = !strcmp(v, "json"), i++;
        else if (!strcmp(a, "-m") && v) o->model = v, i++;
        else if (!strcmp(a, "-np") && v) o->np = atoi(v), i++;
        else if (!strcmp(a, "-pp") && v) o->pp = atoi(v), i++;
        else if (!strcmp(a, "-tg") && v) o->tg = atoi(v), i++;
        else if (!strcmp(a, "-t") && v) o->threads = atoi(v), i++;
        else if (!strcmp(a, "-ns") && v) o->slots = atoi(v), i++;
        else if (!strcmp(a, "-kv") && v) o->kv_blocks = atoi(v), i++;
        else if (!strcmp(a, "-kvb") && v) o->kv_block = atoi(v), i++;
        else if (!strcmp(a, "-sp") && v) o->shared_prefix = atoi(v), i++;
        else if (!strcmp(a, "-act") && v) {
            if (!strcmp(v, "f32")) o->act_type = EMBER_TYPE_F32;
            else if (!strcmp(v, "q8_0")) o->act_type = EMBER_TYPE_Q8_0;
            else return -1;
            i++;
        } else if (!strcmp(a, "-ctk") && v) {
            if (!strcmp(v, "f32")) o->kv_type = EMBER_TYPE_F32;
            else if (!strcmp(v, "f16")) o->kv_type = EMBER_TYPE_F16;
            else if (!strcmp(v, "q8_0")) o->kv_type = EMBER_TYPE_Q8_0;
            else return -1;
            i++;
        }
        else return -1;
    }
    if (!o->slots) o->slots = o->np;
    if (o->np < 1 || o->pp < 1 || o->tg < 1 || o->slots < 1 || o->threads < 0 ||
        o->kv_block < 0 || o->shared_prefix < 0 || o->shared_prefix > o->pp)
        return -1;
    return 0;
}

static int32_t argmax(const float *l, int n) {
    int32_t b = 0;
    for (int i = 1; i < n; i++) b = l[i] > l[b] ? i : b;
    return b;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    opts o;
    if (parse(argc, argv, &o)) {
        fprintf(stderr, "usage: ember-batch [-m MODEL] [-np 32] [-pp 128] [-tg 32] [-t 2] "
                        "[-ns SLOTS] [-kv BLOCKS] [-kvb 8] [-sp SHARED] [-ctk f32|f16|q8_0] [-act q8_0|f32] "
                        "[-o text|json]\n");
        return 2;
    }
    ember_model *m = NULL;
    void *synth = NULL;
    size_t size = 0;
    int rc;
    if (o.model) {
        rc = ember_model_load_file(o.model, NULL, &m);
    } else {
        synth_cfg cfg = synth_default();
        rc = synth_llama(&cfg, &synth, &size);
        if (!rc) rc = ember_model_load_memory(synth, size, NULL, &m);
    }
    if (rc) {
        fprintf(stderr, "ember-batch: %s\n", ember_last_error());
        return 1;
    }
    int n_vocab = ember_model_n_vocab(m);
    int n_batch = o.slots + o.pp > 512 ? o.slots + o.pp : 512;
    ember_context_params cp;
    ember_context_default_params(&cp);
    cp.n_ctx = (uint32_t)(o.pp + o.tg);
    cp.n_batch = (uint32_t)n_batch;
    cp.n_seq_max = (uint32_t)o.slots;
    cp.n_threads = (uint32_t)o.threads;
    cp.kv_blocks = (uint32_t)o.kv_blocks;
    cp.kv_block_size = (uint32_t)o.kv_block;
    cp.kv_type = o.kv_type;
    cp.act_type = o.act_type;
    ember_context *c = NULL;
    if ((rc = ember_context_create(m, &cp, &c))) {
        fprintf(stderr, "ember-batch: %s\n", ember_last_error());
        ember_model_free(&m);
        free(synth);
        return 1;
    }
    request *req = calloc((size_t)o.np, sizeof *req);
    int *slot_req = malloc((size_t)o.slots * sizeof *slot_req);
    ember_batch_entry *e = malloc((size_t)n_batch * sizeof *e);
    int *e_req = malloc((size_t)n_batch * sizeof *e_req);
    for (int i = 0; i < o.np; i++) req[i].slot = -1;
    for (int s = 0; s < o.slots; s++) slot_req[s] = -1;
    double t0 = now_s(), t_prompt = 0, t_decode = 0;
    long n_prompt = 0, n_decode = 0, steps = 0;
    ember_kv_info info = { .struct_size = sizeof info };
    int finished = 0, preempted = 0;
    double sum_used = 0, sum_needed = 0;
    /* prompt token i of request r: deterministic, different per request
     * after the shared prefix */
#define PROMPT_TOKEN(r, i) \
    ((int32_t)(1 + (((i) < o.shared_prefix ? o.np : (r)) * 7919 + (i) * 104729) % (n_vocab - 1)))
    int32_t *prompt = malloc((size_t)o.pp * sizeof *prompt);
    long n_reused = 0;
    while (finished < o.np) {
        /* admit waiting requests, lowest first, into free slots */
        for (int s = 0, r = 0; s < o.slots; s++) {
            if (slot_req[s] >= 0) continue;
            while (r < o.np && (req[r].slot >= 0 || req[r].generated == o.tg)) r++;
            if (r == o.np) break;
            slot_req[s] = r;
            req[r].slot = s;
            if (o.shared_prefix > 0 && req[r].prompt_done == 0) { /* attach what is cached */
                for (int i = 0; i < o.pp; i++) prompt[i] = PROMPT_TOKEN(r, i);
                int32_t got = ember_seq_reuse_prefix(c, s, prompt, (size_t)o.pp);
                if (got > 0) req[r].prompt_done = got, n_reused += got;
            }
        }
        int n = 0, np_tok = 0, nd_tok = 0;
        for (int s = 0; s < o.slots; s++) { /* decoding requests first: one token each */
            int r = slot_req[s];
            if (r < 0 || req[r].prompt_done < o.pp) continue;
            e_req[n] = r;
            e[n++] = (ember_batch_entry){ req[r].next, o.pp + req[r].generated - 1, s, 1 };
            nd_tok++;
        }
        for (int s = 0; s < o.slots && n < n_batch; s++) { /* then prompt chunks */
            int r = slot_req[s];
            if (r < 0 || req[r].prompt_done >= o.pp) continue;
            int take = o.pp - req[r].prompt_done;
            if (take > n_batch - n) take = n_batch - n;
            for (int i = 0; i < take; i++) {
                int p = req[r].prompt_done + i;
                e_req[n] = r;
                e[n++] = (ember_batch_entry){ PROMPT_TOKEN(r, p), p, s, p == o.pp - 1 };
            }
            np_tok += take;
        }
        double ts = now_s();
        rc = ember_eval(c, e, (size_t)n);
        /* the pool is full (and the cache unchanged): first hold back
         * prompt chunks, last joined first; with only decode tokens left,
         * preempt the newest decoding request (its blocks are freed and it
         * is recomputed when it joins again, as vLLM does) */
        while (rc == EMBER_ERR_KV_FULL && n > 0) {
            int r = e_req[n - 1], prompt = e[n - 1].pos < o.pp && req[r].prompt_done < o.pp;
            while (n > 0 && e_req[n - 1] == r) {
                n--;
                if (prompt) np_tok--;
                else nd_tok--;
            }
            if (!prompt || req[r].prompt_done > 0) { /* holds blocks: give them back */
                ember_seq_clear(c, req[r].slot);
                slot_req[req[r].slot] = -1;
                req[r] = (request){ .slot = -1 };
                preempted++;
            } else { /* never started: just wait */
                slot_req[req[r].slot] = -1;
                req[r].slot = -1;
            }
            rc = n ? ember_eval(c, e, (size_t)n) : EMBER_OK;
        }
        if (rc) {
            fprintf(stderr, "ember-batch: %s\n", ember_context_last_error(c));
            break;
        }
        if (n == 0) {
            fprintf(stderr, "ember-batch: the KV pool cannot hold one request\n");
            rc = 1;
            break;
        }
        double dt = now_s() - ts;
        t_prompt += dt * np_tok / n;
        t_decode += dt * nd_tok / n;
        n_prompt += np_tok;
        n_decode += nd_tok;
        steps++;
        ember_kv_info_get(c, &info);
        sum_used += (double)info.blocks_used * (double)info.bytes_per_block;
        sum_needed += (double)info.positions_held * (double)ember_context_kv_bytes_per_token(c);
        for (int i = 0; i < n; i++) {
            int r = e_req[i];
            if (!e[i].want_logits) {
                req[r].prompt_done++;
                continue;
            }
            if (req[r].prompt_done < o.pp) req[r].prompt_done++; /* the prompt's last token */
            req[r].next = argmax(ember_get_logits(c, (size_t)i), n_vocab);
            if (++req[r].generated == o.tg) req[r].done_at = now_s() - t0;
        }
        /* finished requests leave, freeing their blocks (after reading all
         * logits: clearing a sequence invalidates the batch's logits) */
        for (int s = 0; s < o.slots; s++) {
            int r = slot_req[s];
            if (r < 0 || req[r].generated < o.tg) continue;
            ember_seq_clear(c, s);
            slot_req[s] = -1;
            req[r].slot = -1;
            finished++;
        }
    }
    double wall = now_s() - t0;
    if (rc) goto done;
    ember_kv_info ki = { .struct_size = sizeof ki };
    ember_kv_info_get(c, &ki);
    unsigned kv_block = ki.block_positions;
    /* measured after the run, so it does not warm or cool the run itself */
    double bw = read_bandwidth(o.threads > 0 ? o.threads : 1);
    double *lat = malloc((size_t)o.np * sizeof *lat);
    for (int i = 0; i < o.np; i++) lat[i] = req[i].done_at * 1e3;
    qsort(lat, (size_t)o.np, sizeof *lat, cmp_double);
    double p50 = lat[(o.np - 1) / 2], p99 = lat[(o.np * 99 + 99) / 100 - 1 < o.np - 1 ? (o.np * 99 + 99) / 100 - 1 : o.np - 1];
    /* averaged over the steps */
    uint64_t used = steps ? (uint64_t)(sum_used / (double)steps) : 0;
    uint64_t needed = steps ? (uint64_t)(sum_needed / (double)steps) : 0;
    double pps = t_prompt > 0 ? n_prompt / t_prompt : 0, dps = t_decode > 0 ? n_decode / t_decode : 0;
    if (o.json) {
        printf("{\"sequences\": %d, \"slots\": %d, \"prompt_tokens\": %d, \"generated_tokens\": %d, "
               "\"threads\": %d, \"prompt_tokens_per_s\": %.2f, \"decode_tokens_per_s\": %.2f, "
               "\"latency_ms_p50\": %.1f, \"latency_ms_p99\": %.1f, \"kv_bytes_used\": %llu, "
               "\"kv_bytes_needed\": %llu, \"steps\": %ld, \"preempted\": %d, \"wall_s\": %.3f, "
               "\"shared_prefix\": %d, \"prompt_tokens_reused\": %ld, \"act\": \"%s\", \"kv_block\": %u, \"bandwidth_gbs\": %.2f}\n",
               o.np, o.slots, o.pp, o.tg, o.threads, pps, dps, p50, p99,
               (unsigned long long)used, (unsigned long long)needed, steps, preempted, wall,
               o.shared_prefix, n_reused, o.act_type == EMBER_TYPE_Q8_0 ? "q8_0" : "f32", kv_block, bw);
    } else {
        printf("%d requests (%d at once), prompt %d, generate %d, %d threads: %ld steps, "
               "%d preemptions, %.2f s\n", o.np, o.slots, o.pp, o.tg, o.threads, steps, preempted,
               wall);
        printf("prompt  %.2f tokens/s (%ld tokens computed, %ld reused from the prefix cache)\n",
               pps, n_prompt, n_reused);
        printf("decode  %.2f tokens/s aggregate (%ld tokens)\n", dps, n_decode);
        printf("latency p50 %.1f ms, p99 %.1f ms\n", p50, p99);
        printf("memory read bandwidth (%d threads, same run): %.1f GB/s\n", o.threads, bw);
        printf("KV (blocks of %u positions), mean over steps: %llu bytes in use for %llu bytes "
               "of tokens (%.3f)\n", kv_block, (unsigned long long)used, (unsigned long long)needed,
               needed ? (double)used / (double)needed : 0.0);
    }
    free(lat);
done:
    free(prompt);
    free(req);
    free(slot_req);
    free(e);
    free(e_req);
    ember_context_free(&c);
    ember_model_free(&m);
    free(synth);
    return rc ? 1 : 0;
}
