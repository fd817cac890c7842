/* Rotary embedding frequencies, computed once per model. The rope op only
 * looks angles up: theta_i = pos * inv_freq[i]. Plain, linear scaling,
 * llama3's per-frequency factors (rope_freqs) and YaRN all reduce to this
 * table, so every backend computes the same angles. */
#ifndef EMBER_ROPE_H
#define EMBER_ROPE_H

#include <stdint.h>

typedef struct em_rope_cfg {
    int32_t n_rot;        /* rotated dimensions */
    double base;          /* rope.freq_base */
    double freq_scale;    /* linear scaling: 1 / factor (1 = none) */
    const float *factors; /* rope_freqs: divide inv_freq[i], or NULL */
    /* YaRN (when yarn_factor > 0): blend of interpolated (/ factor) and
     * original frequencies, by a linear ramp over the dimensions whose
     * wavelengths fall between beta_fast and beta_slow rotations in the
     * original context. */
    double yarn_factor;
    double yarn_orig_ctx;
    double yarn_beta_fast, yarn_beta_slow;
} em_rope_cfg;

/* Writes n_rot / 2 inverse frequencies. */
void em_rope_inv_freq(const em_rope_cfg *cfg, float *out);

/* One position's rotation, as every backend applies it: for i < half,
 * theta = pos * inv_freq[i] in double precision (float sin and cos of
 * large angles lose digits), cs[i] = cos(theta) * attn_factor and
 * sn[i] = sin(theta) * attn_factor. */
void em_rope_cos_sin(int32_t pos, const float *inv_freq, int half, float attn_factor, float *cs,
                     float *sn);

#endif
