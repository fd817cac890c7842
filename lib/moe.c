#include "moe.h"

#include <math.h>

/* Indices of the k largest values (ties: lower index first), best first. */
static void top_k(const float *v, int32_t n, int32_t k, int32_t *out) {
    for (int32_t j = 0; j < k; j++) {
        int32_t best = -1;
        for (int32_t i = 0; i < n; i++) {
            int taken = 0;
            for (int32_t q = 0; q < j; q++) taken |= out[q] == i;
            if (!taken && (best < 0 || v[i] > v[best])) best = i;
        }
        out[j] = best;
    }
}

/* Keeps the n_group_used best groups; the others' choices become 0.0. */
static void limit_groups(float *choice, const em_route_params *p) {
    int32_t per = p->n_expert / p->n_group;
    float gscore[EM_MOE_MAX_EXPERTS];
    int32_t keep[EM_MOE_MAX_EXPERTS];
    for (int32_t g = 0; g < p->n_group; g++) {
        const float *c = choice + g * per;
        if (p->gating == EM_GATING_SIGMOID) {
            int32_t two[2];
            int32_t k = per < 2 ? per : 2;
            top_k(c, per, k, two);
            gscore[g] = 0;
            for (int32_t i = 0; i < k; i++) gscore[g] += c[two[i]];
        } else {
            gscore[g] = c[0];
            for (int32_t i = 1; i < per; i++) gscore[g] = c[i] > gscore[g] ? c[i] : gscore[g];
        }
    }
    top_k(gscore, p->n_group, p->n_group_used, keep);
    for (int32_t g = 0; g < p->n_group; g++) {
        int kept = 0;
        for (int32_t i = 0; i < p->n_group_used; i++) kept |= keep[i] == g;
        if (!kept)
            for (int32_t i = 0; i < per; i++) choice[g * per + i] = 0.0f;
    }
}

void em_moe_route_token(const float *logits, const float *bias, const em_route_params *p,
                  int32_t *ids, float *weights) {
    float prob[EM_MOE_MAX_EXPERTS], choice[EM_MOE_MAX_EXPERTS];
    int32_t n = p->n_expert;
    if (p->gating == EM_GATING_SIGMOID) {
        for (int32_t i = 0; i < n; i++) prob[i] = 1.0f / (1.0f + expf(-logits[i]));
    } else {
        float m = logits[0];
        for (int32_t i = 1; i < n; i++) m = logits[i] > m ? logits[i] : m;
        double sum = 0;
        for (int32_t i = 0; i < n; i++) sum += (prob[i] = expf(logits[i] - m));
        for (int32_t i = 0; i < n; i++) prob[i] = (float)(prob[i] / sum);
    }
    for (int32_t i = 0; i < n; i++) choice[i] = prob[i] + (bias ? bias[i] : 0.0f);
    if (p->n_group > 1 && p->n_group_used < p->n_group) limit_groups(choice, p);
    top_k(choice, n, p->n_used, ids);
    double sum = 0;
    for (int32_t j = 0; j < p->n_used; j++) sum += (weights[j] = prob[ids[j]]);
    if (p->norm) {
        double denom = sum + (p->gating == EM_GATING_SIGMOID ? 1e-20 : 0.0);
        for (int32_t j = 0; j < p->n_used; j++) weights[j] = (float)(weights[j] / denom);
    }
    for (int32_t j = 0; j < p->n_used; j++) weights[j] *= p->scale;
}
