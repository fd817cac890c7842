#include "rope.h"

#include <math.h>

/* The dimension whose wavelength makes `rotations` turns over ctx. */
static double correction_dim(double rotations, int32_t dim, double base, double ctx) {
    return dim * log(ctx / (rotations * 2 * M_PI)) / (2 * log(base));
}

void em_rope_inv_freq(const em_rope_cfg *cfg, float *out) {
    int32_t half = cfg->n_rot / 2;
    double low = 0, high = 0;
    if (cfg->yarn_factor > 0) {
        low = floor(correction_dim(cfg->yarn_beta_fast, cfg->n_rot, cfg->base, cfg->yarn_orig_ctx));
        high = ceil(correction_dim(cfg->yarn_beta_slow, cfg->n_rot, cfg->base, cfg->yarn_orig_ctx));
        low = low > 0 ? low : 0;
        high = high < cfg->n_rot - 1 ? high : cfg->n_rot - 1;
        if (high == low) high += 0.001;
    }
    for (int32_t i = 0; i < half; i++) {
        double extrap = 1.0 / pow(cfg->base, 2.0 * i / cfg->n_rot), inv;
        if (cfg->yarn_factor > 0) {
            double ramp = (i - low) / (high - low);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            /* ramp 0: keep the original frequency (extrapolate); 1: interpolate */
            inv = extrap / cfg->yarn_factor * ramp + extrap * (1 - ramp);
        } else {
            inv = extrap * cfg->freq_scale;
        }
        if (cfg->factors) inv /= cfg->factors[i];
        out[i] = (float)inv;
    }
}

void em_rope_cos_sin(int32_t pos, const float *inv_freq, int half, float attn_factor, float *cs,
                     float *sn) {
    for (int i = 0; i < half; i++) {
        double theta = (double)pos * inv_freq[i];
        cs[i] = (float)(cos(theta) * attn_factor);
        sn[i] = (float)(sin(theta) * attn_factor);
    }
}
