#version 450
// Prompt attention over tiles of queries: one workgroup per (head, 16
// consecutive tokens of the batch), the cache's positions taken 32 at a
// time. A chunk's K rows go to shared memory once and serve all 16
// queries, then its V rows in the same place; each invocation keeps a
// 2 x 2 block of scores and 1-4 queries x 4 columns of the output in
// registers. attn.comp's kernel (one workgroup per head and token) read
// every K and V row once per query: ~670 us per llama-3b layer for a
// 512-token prompt on the H100, a third of the prompt's GPU time.
//
// Same arithmetic as attn.comp for F32 and Q8_0 caches (an online
// softmax in F32: running max and sum per query, the sums rescaled when
// the max grows); only the order of the sums differs. Heads of up to 128
// elements (D and Dv), no F16 cache (its probabilities are normalised
// before rounding, which takes attn.comp's two passes), no MLA cache and
// no 8-bit copy of the output (backends/vulkan/ops.c attn_tiles).
//
// The tile's tokens may belong to several sequences: they are taken a
// sequence at a time (the first token not yet done picks it), each pass
// over the positions that sequence's tokens reach; the others' scores
// are masked in that pass, so their sums stay as they are.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 128) in;
layout(constant_id = 0) const uint TYPE = 0; // TY_F32 or TY_Q8_0
layout(binding = 0) readonly buffer Qb { float q[]; };
layout(binding = 1) readonly buffer Cb { uint w[]; }; // this layer: K rows, then V rows
layout(binding = 1) readonly buffer C4b { uvec4 w4[]; };
layout(binding = 2) readonly buffer Ib { int ib[]; }; // pos, seq, block tables
layout(binding = 2) readonly buffer Ifb { float csf[]; }; // and RoPE tables
layout(binding = 3) writeonly buffer Ob { float o[]; };
// attn.comp's words (the split and Q8OUT ones unused), then the tokens
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint D, Dv, group, ldq1, ldq2, ldo;
    uint k_bytes, v_bytes, v_base, k_head, v_head;
    uint pos_off, seq_off, tab_off, blocks_per_seq, block_shift;
    uint mla;
    float scale;
    uint rope, n_rot, mode, cs_off;
    uint qo, qm, qn;
    uint n_tok;
} p;

#define WOFF p.o1
const uint TQ = 16u, TK = 32u, NI = 128u;
const uint RS = 33u;        // a row of shared vec4s: 128 elements and 4 of padding, so
                            // rows start 4 banks apart and vec4 loads do not collide
const uint SS = TK + 1u;    // a row of scores
const float NEG = -1.0 / 0.0;

shared vec4 qs[TQ * RS];    // the queries, zero past D
shared vec4 kv[TK * RS];    // a chunk's K rows, then its V rows
shared float sc[TQ * SS];   // scores, then probabilities
shared float red[NI], red2[NI];
shared float mrun[TQ], lrun[TQ], fac[TQ], mnew[TQ];
shared int tpos[TQ], tseq[TQ];

uint slot_at(uint tab, int pp) {
    uint mask = (1u << p.block_shift) - 1u;
    return (uint(ib[tab + (uint(pp) >> p.block_shift)]) << p.block_shift) + (uint(pp) & mask);
}

// elements 4 c4 .. 4 c4 + 3 of the cache row at byte `row` (n elements
// long), zero past n
vec4 row4(uint row, uint c4, uint n) {
    uint i = 4u * c4;
    if (TYPE == TY_F32 && i + 4u <= n && ((WOFF * 4u + row) & 15u) == 0u)
        return uintBitsToFloat(w4[((WOFF * 4u + row) >> 4) + c4]);
    vec4 v = vec4(0.0);
    for (uint k = 0u; k < 4u; k++) {
        uint e = i + k;
        if (e >= n) break;
        if (TYPE == TY_F32) v[k] = uintBitsToFloat(w[WOFF + row / 4u + e]);
        else {
            uint off = row + (e / 32u) * 34u;
            v[k] = HALF_AT(off) * float(s8(BYTE_AT(off + 2u + e % 32u)));
        }
    }
    return v;
}

// element i of token t's query for head h, rotated where RoPE is folded
// in (attn.comp's arithmetic)
float query(uint t, uint h, uint i) {
    uint qb = p.o0 + t * p.ldq2 + h * p.ldq1;
    if (p.rope == 0u || i >= p.n_rot) return q[qb + i];
    uint half_ = p.n_rot / 2u, cb = p.o2 + p.cs_off + t * p.n_rot;
    uint j = p.mode == 0u ? i / 2u : i % half_;
    uint i0 = p.mode == 0u ? 2u * j : j, i1 = i0 + (p.mode == 0u ? 1u : half_);
    bool second = p.mode == 0u ? (i & 1u) == 1u : i >= half_;
    float a0 = q[qb + i0], a1 = q[qb + i1], c = csf[cb + j], s = csf[cb + half_ + j];
    return second ? a0 * s + a1 * c : a0 * c - a1 * s;
}

// rows [p0, p0 + TK) of the cache (K: v = false) into kv, zero past last
void load_rows(uint tab, uint kvh, int p0, int last, bool v) {
    uint n = v ? p.Dv : p.D, n4 = (n + 3u) / 4u;
    for (uint e = gl_LocalInvocationID.x; e < TK * n4; e += NI) {
        uint j = e / n4, c4 = e % n4;
        int pp = p0 + int(j);
        vec4 x = vec4(0.0);
        if (pp <= last) {
            uint sl = slot_at(tab, pp);
            uint row = v ? p.v_base + sl * p.v_bytes + kvh * p.v_head : sl * p.k_bytes + kvh * p.k_head;
            x = row4(row, c4, n);
        }
        kv[j * RS + c4] = x;
    }
}

void main() {
    uint h = gl_WorkGroupID.x, t0 = gl_WorkGroupID.y * TQ, l = gl_LocalInvocationID.x;
    uint kvh = h / p.group, D4 = (p.D + 3u) / 4u;
    if (l < TQ) {
        uint t = t0 + l;
        tpos[l] = t < p.n_tok ? ib[p.o2 + p.pos_off + t] : -1;
        tseq[l] = t < p.n_tok ? ib[p.o2 + p.seq_off + t] : -1;
        mrun[l] = NEG, lrun[l] = 0.0;
    }
    for (uint e = l; e < TQ * D4; e += NI) {
        uint qi = e / D4, c4 = e % D4, t = t0 + qi;
        vec4 x = vec4(0.0);
        for (uint k = 0u; k < 4u; k++)
            if (t < p.n_tok && 4u * c4 + k < p.D) x[k] = query(t, h, 4u * c4 + k);
        qs[qi * RS + c4] = x;
    }
    barrier();
    // scores: queries qa, qa + 8 against positions pa, pa + 16 of a chunk
    uint qa = l % 8u, pa = l / 8u;
    // statistics: row sr, positions 4 sp .. 4 sp + 3
    uint sr = l / 8u, sp = l % 8u;
    // output: columns 4 cg .. 4 cg + 3 of queries q0 + k TQ / NQ, k < NQ
    uint CG = p.Dv <= 32u ? 8u : p.Dv <= 64u ? 16u : 32u, NQ = CG / 8u;
    uint cg = l % CG, q0 = l / CG;
    bool has_cols = 4u * cg < p.Dv;
    vec4 acc[4] = vec4[4](vec4(0.0), vec4(0.0), vec4(0.0), vec4(0.0));

    uint done = 0u; // the same in every invocation: tokens taken (or absent)
    for (uint i = 0u; i < TQ; i++)
        if (tpos[i] < 0) done |= 1u << i;
    while (done != (1u << TQ) - 1u) {
        int cur = tseq[findLSB(~done)], last = 0;
        uint act = 0u;
        for (uint i = 0u; i < TQ; i++)
            if ((done & (1u << i)) == 0u && tseq[i] == cur) act |= 1u << i, last = max(last, tpos[i]);
        uint tab = p.o2 + p.tab_off + uint(cur) * p.blocks_per_seq;
        for (int p0 = 0; p0 <= last; p0 += int(TK)) {
            load_rows(tab, kvh, p0, last, false);
            barrier();
            vec4 s00 = vec4(0.0), s01 = vec4(0.0), s10 = vec4(0.0), s11 = vec4(0.0);
            for (uint c4 = 0u; c4 < D4; c4++) {
                vec4 x0 = qs[qa * RS + c4], x1 = qs[(qa + 8u) * RS + c4];
                vec4 k0 = kv[pa * RS + c4], k1 = kv[(pa + 16u) * RS + c4];
                s00 += x0 * k0, s01 += x0 * k1, s10 += x1 * k0, s11 += x1 * k1;
            }
            int pp0 = p0 + int(pa), pp1 = pp0 + 16;
            bool a0 = (act & (1u << qa)) != 0u, a1 = (act & (1u << (qa + 8u))) != 0u;
            int m0 = tpos[qa], m1 = tpos[qa + 8u];
            sc[qa * SS + pa] = a0 && pp0 <= m0 ? (s00.x + s00.y + s00.z + s00.w) * p.scale : NEG;
            sc[qa * SS + pa + 16u] = a0 && pp1 <= m0 ? (s01.x + s01.y + s01.z + s01.w) * p.scale : NEG;
            sc[(qa + 8u) * SS + pa] = a1 && pp0 <= m1 ? (s10.x + s10.y + s10.z + s10.w) * p.scale : NEG;
            sc[(qa + 8u) * SS + pa + 16u] =
                a1 && pp1 <= m1 ? (s11.x + s11.y + s11.z + s11.w) * p.scale : NEG;
            barrier();
            // each row's max: eight invocations per row, four scores each
            vec4 sv = vec4(sc[sr * SS + 4u * sp], sc[sr * SS + 4u * sp + 1u],
                           sc[sr * SS + 4u * sp + 2u], sc[sr * SS + 4u * sp + 3u]);
            red[l] = max(max(sv.x, sv.y), max(sv.z, sv.w));
            barrier();
            // the chunk's V rows where its K rows were, while the
            // probabilities are made
            load_rows(tab, kvh, p0, last, true);
            float mx = mrun[sr];
            for (uint i = 0u; i < 8u; i++) mx = max(mx, red[sr * 8u + i]);
            vec4 pr = mx == NEG ? vec4(0.0) : exp(sv - mx);
            for (uint k = 0u; k < 4u; k++) sc[sr * SS + 4u * sp + k] = pr[k];
            red2[l] = pr.x + pr.y + pr.z + pr.w;
            if (sp == 0u) fac[sr] = mx == NEG ? 1.0 : exp(mrun[sr] - mx), mnew[sr] = mx;
            barrier();
            if (l < TQ) {
                float s = 0.0;
                for (uint i = 0u; i < 8u; i++) s += red2[l * 8u + i];
                lrun[l] = lrun[l] * fac[l] + s;
                mrun[l] = mnew[l];
            }
            int n = min(int(TK), last + 1 - p0);
            for (uint k = 0u; k < NQ; k++) {
                uint qi = q0 + k * (TQ / NQ);
                float f = fac[qi];
                vec4 a = acc[k] * f;
                for (int j = 0; j < n; j++) a += sc[qi * SS + uint(j)] * kv[uint(j) * RS + cg];
                acc[k] = a;
            }
            barrier();
        }
        done |= act;
    }
    if (!has_cols) return;
    for (uint k = 0u; k < NQ; k++) {
        uint qi = q0 + k * (TQ / NQ), t = t0 + qi;
        if (t >= p.n_tok) continue;
        uint ob = p.o3 + t * p.ldo + h * p.Dv;
        for (uint c = 0u; c < 4u; c++)
            if (4u * cg + c < p.Dv) o[ob + 4u * cg + c] = acc[k][c] / lrun[qi];
    }
}
