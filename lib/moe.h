/* Mixture-of-experts routing, as each model's reference code computes it.
 * One token at a time, pure and allocation-free, so the op that uses it
 * and the tests that check it by hand agree by construction. */
#ifndef EMBER_MOE_H
#define EMBER_MOE_H

#include <stdint.h>

#define EM_MOE_MAX_EXPERTS 512

enum em_gating { EM_GATING_SOFTMAX = 1, EM_GATING_SIGMOID = 2 };

typedef struct em_route_params {
    int32_t n_expert;
    int32_t n_used;        /* experts per token (top-k) */
    int32_t gating;        /* em_gating */
    int32_t n_group;       /* expert groups (1 = no group limit) */
    int32_t n_group_used;  /* groups kept per token */
    int32_t norm;          /* renormalise the chosen weights to sum 1 */
    float scale;           /* multiply the weights (expert_weights_scale) */
} em_route_params;

/* logits: n_expert router outputs; bias: per-expert selection bias or
 * NULL (used to choose experts, never to weight them). Writes n_used
 * expert ids (best first) and their weights.
 *
 * softmax: p = softmax(logits); choose top-k of p (+bias); with groups,
 *   a group's score is its best member (DeepSeek-V2).
 * sigmoid: p = sigmoid(logits); choice = p + bias; with groups, a group's
 *   score is the sum of its two best choices (DeepSeek-V3); experts of
 *   groups not kept count as choice 0.0, exactly as the reference masks.
 * Then weights = p of the chosen, divided by their sum (+1e-20 for
 *   sigmoid) if norm, times scale. Ties go to the lower index. */
void em_moe_route_token(const float *logits, const float *bias, const em_route_params *p,
                  int32_t *ids, float *weights);

#endif
