#version 450
// Prompt attention over tiles of queries: one workgroup per (head, 16
// consecutive tokens of the batch), the cache's positions taken 32 at a
// time. A chunk's K rows go to shared memory once and serve all 16
// queries, then its V rows in the same place; each invocation keeps a
// 2 x 2 block of scores and 1-4 queries x 4 columns of the output in
// registers. attn.comp's kernel (one workgroup per head and token) read
// every K and V row once per query: ~670 us per llama-3b layer for a
// 512-token prompt on the H100, a third of the prompt's GPU time; this
// one takes ~340 us (docs/performance.md, session 20).
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
// queries per invocation in the output's sums: 1, 2 or 4 for heads of
// Dv up to 32, 64 or 128 (NQ 8 invocations of four columns per query
// row). A constant, so that the sums stay in registers: indexed by a
// value known only at run time they went to local memory, and took half
// the kernel's time on the H100.
layout(constant_id = 1) const uint NQ = 4;
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

// 30464 bytes in all (backends/vulkan/ops.c ATTN_TILE_SHARED): lavapipe
// offers 32 KB
shared vec4 qs[TQ * RS];    // the queries, zero past D
shared vec4 kv[TK * RS];    // a chunk's K rows, then its V rows
shared float sc[TQ * SS];   // scores
shared float pb[TQ * SS];   // probabilities
shared float red[NI];
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

// A chunk's rows go to shared memory through registers, each invocation
// its share (vec4s l + NI i) of rows [p0, p0 + TK). (Loading the next
// chunk's K rows and this chunk's V rows a phase ahead, into registers,
// measured 3% slower on the H100: 220 registers per invocation against
// 123, and so half the workgroups per SM.)
const uint PER = TK * 32u / NI; // vec4s per invocation: TK rows of up to 32

// Whether every K (v = false) or V row of the layer starts 16-byte
// aligned and holds whole vec4s: F32 rows then load as vec4s, no branch.
bool wide(bool v) {
    uint n = v ? p.Dv : p.D, base = WOFF * 4u + (v ? p.v_base : 0u);
    uint stride = v ? p.v_bytes : p.k_bytes, head = v ? p.v_head : p.k_head;
    return TYPE == TY_F32 && (n & 3u) == 0u && ((base | stride | head) & 15u) == 0u;
}

// K (v = false) or V rows [p0, p0 + TK) of the cache, zero past last:
// the rows' offsets first, then their loads, with no branch between them
// (positions past `last` and vec4s past the rows are clamped to real ones
// and zeroed after), so that the loads of each kind can be in flight
// together. (On the H100 this measured even with one loop of table load,
// row load and store per vec4: the time of a chunk is elsewhere.)
void fetch(uint tab, uint kvh, int p0, int last, bool v, bool wv, out vec4 r[PER]) {
    uint n = v ? p.Dv : p.D, n4 = (n + 3u) / 4u, end = TK * n4;
    uint rows[PER];
    for (uint i = 0u; i < PER; i++) {
        uint e = min(gl_LocalInvocationID.x + NI * i, end - 1u);
        uint sl = slot_at(tab, min(p0 + int(e / n4), last));
        rows[i] = v ? p.v_base + sl * p.v_bytes + kvh * p.v_head : sl * p.k_bytes + kvh * p.k_head;
    }
    if (wv) {
        for (uint i = 0u; i < PER; i++) {
            uint e = min(gl_LocalInvocationID.x + NI * i, end - 1u);
            r[i] = uintBitsToFloat(w4[((WOFF * 4u + rows[i]) >> 4) + e % n4]);
        }
    } else {
        for (uint i = 0u; i < PER; i++) {
            uint e = min(gl_LocalInvocationID.x + NI * i, end - 1u);
            r[i] = row4(rows[i], e % n4, n);
        }
    }
    for (uint i = 0u; i < PER; i++) {
        uint e = gl_LocalInvocationID.x + NI * i;
        if (e >= end || p0 + int(e / n4) > last) r[i] = vec4(0.0);
    }
}

void load_rows(uint tab, uint kvh, int p0, int last, bool v, bool wv) {
    vec4 r[PER];
    fetch(tab, kvh, p0, last, v, wv, r);
    uint n4 = ((v ? p.Dv : p.D) + 3u) / 4u;
    for (uint i = 0u; i < PER; i++) {
        uint e = gl_LocalInvocationID.x + NI * i;
        if (e < TK * n4) kv[(e / n4) * RS + e % n4] = r[i];
    }
}

void main() {
    // the tiles of the latest tokens, which take the most positions, first
    uint h = gl_WorkGroupID.x, t0 = (gl_NumWorkGroups.y - 1u - gl_WorkGroupID.y) * TQ;
    uint l = gl_LocalInvocationID.x;
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
    const uint CG = 8u * NQ, QS = TQ / NQ;
    uint cg = l % CG, q0 = l / CG;
    bool has_cols = 4u * cg < p.Dv;
    vec4 acc0 = vec4(0.0), acc1 = vec4(0.0), acc2 = vec4(0.0), acc3 = vec4(0.0);
    bool wk = wide(false), wv = wide(true);

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
            load_rows(tab, kvh, p0, last, false, wk);
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
            // the K rows are read: this chunk's V rows take their place
            load_rows(tab, kvh, p0, last, true, wv);
            // row sr's max (each of its eight invocations reads the whole
            // row), and the probabilities of its positions 4 sp .. 4 sp + 3
            float mx = mrun[sr];
            for (uint i = 0u; i < TK; i++) mx = max(mx, sc[sr * SS + i]);
            vec4 sv = vec4(sc[sr * SS + 4u * sp], sc[sr * SS + 4u * sp + 1u],
                           sc[sr * SS + 4u * sp + 2u], sc[sr * SS + 4u * sp + 3u]);
            vec4 pr = mx == NEG ? vec4(0.0) : exp(sv - mx);
            for (uint k = 0u; k < 4u; k++) pb[sr * SS + 4u * sp + k] = pr[k];
            red[l] = pr.x + pr.y + pr.z + pr.w;
            if (sp == 0u) fac[sr] = mx == NEG ? 1.0 : exp(mrun[sr] - mx), mnew[sr] = mx;
            barrier();
            if (l < TQ) {
                float s = 0.0;
                for (uint i = 0u; i < 8u; i++) s += red[l * 8u + i];
                lrun[l] = lrun[l] * fac[l] + s;
                mrun[l] = mnew[l];
            }
            acc0 *= fac[q0];
            if (NQ > 1u) acc1 *= fac[q0 + QS];
            if (NQ > 2u) acc2 *= fac[q0 + 2u * QS], acc3 *= fac[q0 + 3u * QS];
            // all TK rows (past the last position the probabilities and
            // rows are zero): a fixed count the compiler unrolls
            for (uint j = 0u; j < TK; j++) {
                vec4 v = kv[j * RS + cg];
                acc0 += pb[q0 * SS + j] * v;
                if (NQ > 1u) acc1 += pb[(q0 + QS) * SS + j] * v;
                if (NQ > 2u) {
                    acc2 += pb[(q0 + 2u * QS) * SS + j] * v;
                    acc3 += pb[(q0 + 3u * QS) * SS + j] * v;
                }
            }
            barrier();
        }
        done |= act;
    }
    if (!has_cols) return;
    for (uint k = 0u; k < NQ; k++) {
        uint qi = q0 + k * QS, t = t0 + qi;
        if (t >= p.n_tok) continue;
        vec4 a = k == 0u ? acc0 : k == 1u ? acc1 : k == 2u ? acc2 : acc3;
        uint ob = p.o3 + t * p.ldo + h * p.Dv;
        for (uint c = 0u; c < 4u; c++)
            if (4u * cg + c < p.Dv) o[ob + 4u * cg + c] = a[c] / lrun[qi];
    }
}
