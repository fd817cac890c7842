#version 450
// Mixture-of-experts routing (EM_OP_MOE_ROUTE), one token per invocation,
// step for step as lib/moe.c's em_moe_route_token (its comment gives the
// rules): softmax or sigmoid gating, an optional selection bias, group
// limits, top-k with ties to the lower index, renormalisation and scale.
// Output per token: the NU weights, then the NU expert ids as floats.
// The host checks n_expert <= MAXE, NU <= MAXK and groups <= MAXG.
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer Lb { float lg[]; };
layout(binding = 1) readonly buffer Bb { float bias[]; };
layout(binding = 3) writeonly buffer Yb { float y[]; };
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint ne, lda, ldy, T, nu, sigm, ngroup, ngroup_used, norm, has_bias;
    float scale;
} p;

const uint MAXE = 512u, MAXK = 32u, MAXG = 64u;
float prob[MAXE], choice[MAXE], gscore[MAXG];
uint ids[MAXK], keep[MAXG];

// The best of v[off .. off + n) not among the first j picks of `picked`
// (offsets into v), ties to the lower index; used for choice and gscore.
#define BEST(V, OFF, N, PICKED, J, OUT)                                   \
    {                                                                     \
        int best = -1;                                                    \
        for (uint i = 0u; i < (N); i++) {                                 \
            bool taken = false;                                           \
            for (uint q = 0u; q < (J); q++) taken = taken || PICKED[q] == (OFF) + i; \
            if (!taken && (best < 0 || V[(OFF) + i] > V[(OFF) + uint(best)])) best = int(i); \
        }                                                                 \
        OUT = (OFF) + uint(best);                                         \
    }

// Keeps the ngroup_used best groups; the others' choices become 0.0.
void limit_groups() {
    uint per = p.ne / p.ngroup;
    for (uint g = 0u; g < p.ngroup; g++) {
        uint off = g * per;
        if (p.sigm == 1u) { // the sum of the group's two best choices
            uint two[2];
            uint k = min(per, 2u);
            for (uint j = 0u; j < k; j++) BEST(choice, off, per, two, j, two[j])
            gscore[g] = 0.0;
            for (uint j = 0u; j < k; j++) gscore[g] += choice[two[j]];
        } else { // its best member
            gscore[g] = choice[off];
            for (uint i = 1u; i < per; i++) gscore[g] = max(gscore[g], choice[off + i]);
        }
    }
    for (uint j = 0u; j < p.ngroup_used; j++) BEST(gscore, 0u, p.ngroup, keep, j, keep[j])
    for (uint g = 0u; g < p.ngroup; g++) {
        bool kept = false;
        for (uint j = 0u; j < p.ngroup_used; j++) kept = kept || keep[j] == g;
        if (!kept)
            for (uint i = 0u; i < per; i++) choice[g * per + i] = 0.0;
    }
}

void main() {
    uint t = gl_GlobalInvocationID.x;
    if (t >= p.T) return;
    uint a = p.o0 + t * p.lda;
    if (p.sigm == 1u) {
        for (uint i = 0u; i < p.ne; i++) prob[i] = 1.0 / (1.0 + exp(-lg[a + i]));
    } else {
        float m = lg[a];
        for (uint i = 1u; i < p.ne; i++) m = max(m, lg[a + i]);
        float sum = 0.0;
        for (uint i = 0u; i < p.ne; i++) sum += (prob[i] = exp(lg[a + i] - m));
        for (uint i = 0u; i < p.ne; i++) prob[i] = prob[i] / sum;
    }
    for (uint i = 0u; i < p.ne; i++) choice[i] = prob[i] + (p.has_bias == 1u ? bias[p.o1 + i] : 0.0);
    if (p.ngroup > 1u && p.ngroup_used < p.ngroup) limit_groups();
    for (uint j = 0u; j < p.nu; j++) BEST(choice, 0u, p.ne, ids, j, ids[j])
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
