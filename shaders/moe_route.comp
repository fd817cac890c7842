#version 450
// Mixture-of-experts routing (EM_OP_MOE_ROUTE), one workgroup per token,
// step for step as lib/moe.c's em_moe_route_token (its comment gives the
// rules): softmax or sigmoid gating, an optional selection bias, group
// limits, top-k with ties to the lower index, renormalisation and scale.
// Output per token: the NU weights, then the NU expert ids as floats.
// The scores live in shared memory and each pick of the top-k is a
// workgroup-wide argmax (one invocation per token walking private arrays
// took 130 us per layer for 64 experts on the H100). The host checks
// n_expert <= MAXE, NU <= MAXK and groups <= MAXG.
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer Lb { float lg[]; };
layout(binding = 1) readonly buffer Bb { float bias[]; };
layout(binding = 3) writeonly buffer Yb { float y[]; };
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint ne, lda, ldy, T, nu, sigm, ngroup, ngroup_used, norm, has_bias;
    float scale;
} p;

const uint WG = 64u, MAXE = 512u, MAXK = 32u, MAXG = 64u;
shared float prob[MAXE], choice[MAXE], gscore[MAXG];
shared bool taken[MAXE], gtaken[MAXG];
shared float red_v[WG];
shared uint red_i[WG];
shared uint ids[MAXK];

// The workgroup's best of v[0..n) not taken (ties to the lower index), or
// n when every one is taken; V and TAKEN are shared arrays.
#define ARGMAX(V, TAKEN, N, OUT)                                                        \
    {                                                                                   \
        float bv = 0.0;                                                                 \
        uint bi = N;                                                                    \
        for (uint i = l; i < N; i += WG)                                                \
            if (!TAKEN[i] && (bi == N || V[i] > bv)) bv = V[i], bi = i;                 \
        red_v[l] = bv, red_i[l] = bi;                                                   \
        barrier();                                                                      \
        for (uint h = WG / 2u; h > 0u; h >>= 1) {                                       \
            if (l < h) {                                                                \
                uint j = red_i[l + h];                                                  \
                if (j != N && (red_i[l] == N || red_v[l + h] > red_v[l] ||              \
                               (red_v[l + h] == red_v[l] && j < red_i[l])))             \
                    red_v[l] = red_v[l + h], red_i[l] = j;                              \
            }                                                                           \
            barrier();                                                                  \
        }                                                                               \
        OUT = red_i[0];                                                                 \
        barrier();                                                                      \
    }

// the sum (or the max) of x over the workgroup; l: this invocation
float reduce(float x, bool is_max, uint l) {
    red_v[l] = x;
    barrier();
    for (uint h = WG / 2u; h > 0u; h >>= 1) {
        if (l < h) red_v[l] = is_max ? max(red_v[l], red_v[l + h]) : red_v[l] + red_v[l + h];
        barrier();
    }
    float r = red_v[0];
    barrier();
    return r;
}

void main() {
    uint t = gl_WorkGroupID.x + gl_WorkGroupID.y * 32768u, l = gl_LocalInvocationID.x;
    if (t >= p.T) return; // the whole workgroup
    uint a = p.o0 + t * p.lda;
    if (p.sigm == 1u) {
        for (uint i = l; i < p.ne; i += WG) prob[i] = 1.0 / (1.0 + exp(-lg[a + i]));
    } else {
        float m = -1.0 / 0.0;
        for (uint i = l; i < p.ne; i += WG) m = max(m, lg[a + i]);
        m = reduce(m, true, l);
        float s = 0.0;
        for (uint i = l; i < p.ne; i += WG) s += (prob[i] = exp(lg[a + i] - m));
        s = reduce(s, false, l);
        for (uint i = l; i < p.ne; i += WG) prob[i] = prob[i] / s;
    }
    for (uint i = l; i < p.ne; i += WG) {
        choice[i] = prob[i] + (p.has_bias == 1u ? bias[p.o1 + i] : 0.0);
        taken[i] = false;
    }
    barrier();
    if (p.ngroup > 1u && p.ngroup_used < p.ngroup) { // keep the best groups' choices
        uint per = p.ne / p.ngroup;
        for (uint g = l; g < p.ngroup; g += WG) {
            uint off = g * per;
            gtaken[g] = false;
            if (p.sigm == 1u) { // the sum of the group's two best choices
                uint b0 = off;
                for (uint i = 1u; i < per; i++) if (choice[off + i] > choice[b0]) b0 = off + i;
                float sc = choice[b0];
                if (per > 1u) {
                    uint b1 = b0 == off ? off + 1u : off;
                    for (uint i = 0u; i < per; i++)
                        if (off + i != b0 && choice[off + i] > choice[b1]) b1 = off + i;
                    sc += choice[b1];
                }
                gscore[g] = sc;
            } else { // its best member
                float sc = choice[off];
                for (uint i = 1u; i < per; i++) sc = max(sc, choice[off + i]);
                gscore[g] = sc;
            }
        }
        barrier();
        for (uint j = 0u; j < p.ngroup_used; j++) {
            uint g;
            ARGMAX(gscore, gtaken, p.ngroup, g)
            if (l == 0u) gtaken[g] = true;
            barrier();
        }
        for (uint i = l; i < p.ne; i += WG)
            if (!gtaken[i / per]) choice[i] = 0.0;
        barrier();
    }
    for (uint j = 0u; j < p.nu; j++) {
        uint e;
        ARGMAX(choice, taken, p.ne, e)
        if (l == 0u) taken[e] = true, ids[j] = e;
        barrier();
    }
    if (l != 0u) return;
    float sum = 0.0;
    for (uint j = 0u; j < p.nu; j++) sum += prob[ids[j]];
    float denom = sum + (p.sigm == 1u ? 1e-20 : 0.0);
    uint o = p.o3 + t * p.ldy;
    for (uint j = 0u; j < p.nu; j++) {
        float wj = prob[ids[j]];
        if (p.norm == 1u) wj = wj / denom;
        y[o + j] = wj * p.scale;
        y[o + p.nu + j] = float(ids[j]);
    }
}
