#version 450
// Causal attention of one query head of one token over its sequence's
// cached positions 0..pos, read through the sequence's block table (paged
// KV cache, lib/kv.h). Cache rows are F32, F16 or Q8_0 (constant 0). One
// workgroup per (head, token): 64 positions at a time, one score per
// invocation, then an online softmax (running max and sum) and each
// invocation accumulates its own columns of V. An F16 cache follows the
// CPU backend's F16 arithmetic (llama.cpp's): the query rounded to F16,
// and the softmax normalised before each probability is rounded to F16
// and weights V, which takes a first pass for the max and the sum. A
// cache without V rows (mla = 1) keeps the value as the first Dv elements
// of the K row.
//
// rope = 1 folds the query's RoPE in (backends/vulkan/ops.c plan_fusion):
// q is read un-rotated and rotated as it is loaded, with rope.comp's
// cos/sin table in the io buffer (binding 2).
//
// Split over positions (decode; grid z = S > 1, not for an F16 cache):
// workgroup s takes positions [s L, s L + L), L = max(64, ceil((pos + 1)
// / S)), so a long context is read by S workgroups at once (one workgroup
// per head left most of the GPU idle and walked the positions in series:
// llama-3b decode after 4000 positions 27 -> 230 tokens/s on the H100).
// Workgroups past the last position return at once; where only the first
// has positions (64 or fewer) it writes the output as unsplit. Else each
// writes its running max, sum and unnormalised output to binding 4 and
// the last to finish (an atomic count per head and token, reset after)
// merges them: o = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) sum_s.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"

layout(local_size_x = 64) in;
layout(constant_id = 0) const uint TYPE = 0;
layout(constant_id = 1) const uint Q8OUT = 0;
layout(binding = 0) readonly buffer Qb { float q[]; };
layout(binding = 1) readonly buffer Cb { uint w[]; }; // this layer: K rows, then V rows
layout(binding = 1) readonly buffer C2b { uvec2 w2[]; };
layout(binding = 1) readonly buffer C4b { uvec4 w4[]; };
layout(binding = 2) readonly buffer Ib { int ib[]; }; // pos, seq, block tables
layout(binding = 2) readonly buffer Ifb { float csf[]; }; // and RoPE tables
layout(binding = 3) writeonly buffer Ob { float o[]; };
// splits: a count per head and token in words [0, COUNTS) (the same words
// for every graph, left at zero by each run), then the partial results
layout(binding = 4) coherent buffer Sb { float sp[]; };
layout(binding = 4) coherent buffer Scb { uint scnt[]; };
const uint COUNTS = 8192u; // backends/vulkan/ops.c ATTN_COUNTS
// Q8OUT: the output rounded to 8 bits as well (quant_act.comp's rule and
// layout), at word `qo`, meta at `qo + qm`, rows of `qn` elements: each
// head's Dv outputs (a multiple of 32) are whole blocks, so the workgroup
// that writes a head's output rounds it and the output projection needs
// no quant_act dispatch.
layout(binding = 5) writeonly buffer Q8b { uint qw[]; };
layout(push_constant) uniform P {
    uint o0, o1, o2, o3;
    uint D, Dv, group, ldq1, ldq2, ldo;
    uint k_bytes, v_bytes, v_base, k_head, v_head;
    uint pos_off, seq_off, tab_off, blocks_per_seq, block_shift;
    uint mla;
    float scale;
    uint rope, n_rot, mode, cs_off; // cs_off: the query's table, in floats
    uint qo, qm, qn;
} p;

#define WOFF p.o1
#define MAXD 1024u

shared float qs[MAXD];
shared float sc[64];
shared uint slot_of[64];
shared bool last_split;
// Q8OUT: the head's output, in qs (the query is read by then). An array
// of its own cost decode after 4000 positions 20% on the H100 (llama-1b
// 396 -> 316 tokens/s): more shared memory per workgroup leaves less of
// the SM's memory to its L1 cache, which the K rows' loads hit.
#define out_v qs

// Q8OUT: head h's outputs, in out_v, rounded by block
void round_head(uint t, uint h) {
    uint l = gl_LocalInvocationID.x;
    for (uint bb = l; bb < p.Dv / 32u; bb += 64u) {
        vec4 v[8];
        for (uint i = 0u; i < 8u; i++) {
            uint c = bb * 32u + 4u * i;
            v[i] = vec4(out_v[c], out_v[c + 1u], out_v[c + 2u], out_v[c + 3u]);
        }
        uint w[8], d, sums, b = h * p.Dv / 32u + bb, qb = p.qo + t * (p.qn / 4u) + b * 8u;
        q8_round_block(v, w, d, sums);
        for (uint i = 0u; i < 8u; i++) qw[qb + i] = w[i];
        uint m = p.qo + p.qm + (t * (p.qn / 32u) + b) * 2u;
        qw[m] = d;
        qw[m + 1u] = sums;
    }
}

// element i of a cache row starting at byte `row`
float at(uint row, uint i) {
    if (TYPE == TY_F32) return uintBitsToFloat(w[WOFF + row / 4u + i]);
    if (TYPE == TY_F16) return HALF_AT(row + 2u * i);
    uint off = row + (i / 32u) * 34u;
    return HALF_AT(off) * float(s8(BYTE_AT(off + 2u + i % 32u)));
}

uint slot_at(uint tab, int pp) {
    uint mask = (1u << p.block_shift) - 1u;
    return (uint(ib[tab + (uint(pp) >> p.block_shift)]) << p.block_shift) + (uint(pp) & mask);
}

// the scaled score of position pp against the query in qs. F32 and F16
// rows aligned for it are read 16 or 8 bytes at a time, eight elements per
// step in two sums, so a row takes D / 8 steps whose loads can all be in
// flight (element by element, a 100-wide row took 25 dependent trips to
// memory: 20 us per call on the H100); the rest four elements at a time.
float score(uint tab, uint kvh, int pp) {
    uint row = slot_at(tab, pp) * p.k_bytes + kvh * p.k_head;
    vec4 s = vec4(0.0), s2 = vec4(0.0);
    uint i = 0u, wb = WOFF * 4u + row; // the row's byte offset in the binding
    if (TYPE == TY_F32 && (wb & 15u) == 0u) {
        // 128 elements a step (a whole row of the usual heads: one trip to
        // memory instead of four), then 32, their loads issued before any
        // is used; the sums in the order of the 32-element steps
        for (; i + 128u <= p.D; i += 128u) {
            uvec4 k[32];
            [[unroll]] for (uint u = 0u; u < 32u; u++) k[u] = w4[(wb >> 4) + (i >> 2) + u];
            [[unroll]] for (uint u = 0u; u < 32u; u += 2u) {
                uint c = i + 4u * u;
                s += vec4(qs[c], qs[c + 1u], qs[c + 2u], qs[c + 3u]) * uintBitsToFloat(k[u]);
                s2 += vec4(qs[c + 4u], qs[c + 5u], qs[c + 6u], qs[c + 7u]) * uintBitsToFloat(k[u + 1u]);
            }
        }
        for (; i + 32u <= p.D; i += 32u) {
            uvec4 k[8];
            [[unroll]] for (uint u = 0u; u < 8u; u++) k[u] = w4[(wb >> 4) + (i >> 2) + u];
            [[unroll]] for (uint u = 0u; u < 8u; u += 2u) {
                uint c = i + 4u * u;
                s += vec4(qs[c], qs[c + 1u], qs[c + 2u], qs[c + 3u]) * uintBitsToFloat(k[u]);
                s2 += vec4(qs[c + 4u], qs[c + 5u], qs[c + 6u], qs[c + 7u]) * uintBitsToFloat(k[u + 1u]);
            }
        }
        for (; i + 8u <= p.D; i += 8u) {
            s += vec4(qs[i], qs[i + 1u], qs[i + 2u], qs[i + 3u]) *
                 uintBitsToFloat(w4[(wb >> 4) + (i >> 2)]);
            s2 += vec4(qs[i + 4u], qs[i + 5u], qs[i + 6u], qs[i + 7u]) *
                  uintBitsToFloat(w4[(wb >> 4) + (i >> 2) + 1u]);
        }
    } else if (TYPE == TY_F16 && (wb & 7u) == 0u) {
        for (; i + 8u <= p.D; i += 8u) {
            uvec2 a = w2[(wb >> 3) + (i >> 2)], b = w2[(wb >> 3) + (i >> 2) + 1u];
            s += vec4(qs[i], qs[i + 1u], qs[i + 2u], qs[i + 3u]) *
                 vec4(unpackHalf2x16(a.x), unpackHalf2x16(a.y));
            s2 += vec4(qs[i + 4u], qs[i + 5u], qs[i + 6u], qs[i + 7u]) *
                  vec4(unpackHalf2x16(b.x), unpackHalf2x16(b.y));
        }
    }
    s += s2;
    for (; i + 4u <= p.D; i += 4u)
        s += vec4(qs[i], qs[i + 1u], qs[i + 2u], qs[i + 3u]) *
             vec4(at(row, i), at(row, i + 1u), at(row, i + 2u), at(row, i + 3u));
    for (; i < p.D; i++) s.x += qs[i] * at(row, i);
    return (s.x + s.y + s.z + s.w) * p.scale;
}

// the byte offset of the value row of cached position j of this chunk
uint v_row(uint j, uint kvh) {
    uint sl = slot_of[j];
    return p.mla != 0u ? sl * p.k_bytes + kvh * p.k_head : p.v_base + sl * p.v_bytes + kvh * p.v_head;
}

void main() {
    uint h = gl_WorkGroupID.x, t = gl_WorkGroupID.y, l = gl_LocalInvocationID.x;
    uint kvh = h / p.group;
    int pos = ib[p.o2 + p.pos_off + t], seq = ib[p.o2 + p.seq_off + t];
    uint tab = p.o2 + p.tab_off + uint(seq) * p.blocks_per_seq;
    // this workgroup's positions [lo, hi), and how many workgroups have any
    uint S = gl_NumWorkGroups.z, s = gl_WorkGroupID.z;
    int L = S == 1u ? pos + 1 : max(64, (pos + int(S)) / int(S));
    int lo = int(s) * L, hi = min(lo + L, pos + 1);
    uint n_active = uint((pos + L) / L);
    if (s >= n_active) return; // the whole workgroup: nothing here
    uint qb = p.o0 + t * p.ldq2 + h * p.ldq1;
    uint half_ = p.n_rot / 2u, cb = p.o2 + p.cs_off + t * p.n_rot;
    for (uint i = l; i < p.D; i += 64u) {
        float v = q[qb + i];
        if (p.rope != 0u && i < p.n_rot) { // rope.comp's arithmetic
            uint j = p.mode == 0u ? i / 2u : i % half_;
            uint i0 = p.mode == 0u ? 2u * j : j, i1 = i0 + (p.mode == 0u ? 1u : half_);
            bool second = p.mode == 0u ? (i & 1u) == 1u : i >= half_;
            float a0 = q[qb + i0], a1 = q[qb + i1], c = csf[cb + j], s = csf[cb + half_ + j];
            v = second ? a0 * s + a1 * c : a0 * c - a1 * s;
        }
        qs[i] = TYPE == TY_F16 ? f16_rne(v) : v;
    }
    barrier();
    float acc[MAXD / 64u];
    for (uint e = 0u; e < MAXD / 64u; e++) acc[e] = 0.0;
    float m = -1.0 / 0.0, sum = 0.0;
    // F32 values 16 bytes a load where rows allow it (VV): invocation l
    // sums columns 4 qv .. 4 qv + 3 of every G-th position from g, QV =
    // Dv / 4 dividing 64 (Dv 4 .. 256), into acc4; the G partial sums meet
    // in shared memory after the last chunk. Scalar loads of a column per
    // invocation took a trip to memory per 32 positions and were the
    // largest part of decode attention on the H100 (docs/performance.md,
    // session 22).
    bool VV = TYPE == TY_F32 && p.mla == 0u && (p.Dv & 3u) == 0u && p.Dv <= 256u &&
              256u % p.Dv == 0u && ((WOFF * 4u + p.v_base) & 15u) == 0u &&
              (p.v_bytes & 15u) == 0u && (p.v_head & 15u) == 0u;
    uint QV = max(p.Dv / 4u, 1u), G = 64u / QV, qv = l % QV, g = l / QV;
    vec4 acc4 = vec4(0.0);
    if (TYPE == TY_F16) { // pass 1: the max and the sum
        for (int p0 = lo; p0 < hi; p0 += 64) {
            int pp = p0 + int(l);
            sc[l] = pp < hi ? score(tab, kvh, pp) : -1.0 / 0.0;
            barrier();
            float cm = m;
            for (uint j = 0u; j < 64u; j++) cm = max(cm, sc[j]);
            float cs = 0.0;
            for (uint j = 0u; j < 64u; j++) cs += exp(sc[j] - cm);
            sum = sum * exp(m - cm) + cs;
            m = cm;
            barrier();
        }
    }
    for (int p0 = lo; p0 < hi; p0 += 64) {
        int pp = p0 + int(l);
        float sv = pp < hi ? score(tab, kvh, pp) : -1.0 / 0.0;
        sc[l] = sv;
        slot_of[l] = pp < hi ? slot_at(tab, pp) : 0u;
        barrier();
        float cm = m;
        if (TYPE != TY_F16) { // online: rescale what is summed so far
            for (uint j = 0u; j < 64u; j++) cm = max(cm, sc[j]);
            float f = exp(m - cm); // 0 on the first chunk
            sum *= f;
            for (uint e = 0u; e < MAXD / 64u; e++) acc[e] *= f;
            acc4 *= f;
        }
        barrier();
        float pr = exp(sv - cm);
        if (TYPE == TY_F16) pr = f16_rne(pr / sum);
        sc[l] = pp < hi ? pr : 0.0;
        barrier();
        uint n = uint(min(64, hi - p0)), j = 0u;
        if (VV) { // sixteen positions a step per invocation, their loads first
            for (uint k = 0u; k < n; k++) sum += sc[k];
            for (uint j0 = g; j0 < n; j0 += 16u * G) {
                vec4 v[16];
                [[unroll]] for (uint u = 0u; u < 16u; u++) {
                    uint jj = j0 + u * G;
                    v[u] = jj < n ? uintBitsToFloat(w4[(WOFF * 4u + v_row(jj, kvh)) / 16u + qv]) : vec4(0.0);
                }
                [[unroll]] for (uint u = 0u; u < 16u; u++)
                    if (j0 + u * G < n) acc4 += sc[j0 + u * G] * v[u];
            }
            n = 0u; // the loops below have nothing left
        }
        // 32 positions at a time, then sixteen, eight, four: their value
        // loads are in flight together
        for (; j + 32u <= n; j += 32u) {
            vec4 pv[8];
            uint rr[32];
            [[unroll]] for (uint u = 0u; u < 8u; u++)
                pv[u] = vec4(sc[j + 4u * u], sc[j + 4u * u + 1u], sc[j + 4u * u + 2u], sc[j + 4u * u + 3u]);
            if (TYPE != TY_F16)
                sum += dot((pv[0] + pv[1] + pv[2] + pv[3]) + (pv[4] + pv[5] + pv[6] + pv[7]), vec4(1.0));
            [[unroll]] for (uint u = 0u; u < 32u; u++) rr[u] = v_row(j + u, kvh);
            for (uint e = 0u; e < MAXD / 64u; e++) {
                uint c = l + 64u * e;
                if (c < p.Dv) {
                    float a = 0.0;
                    [[unroll]] for (uint u = 0u; u < 8u; u++)
                        a += dot(pv[u], vec4(at(rr[4u * u], c), at(rr[4u * u + 1u], c),
                                             at(rr[4u * u + 2u], c), at(rr[4u * u + 3u], c)));
                    acc[e] += a;
                }
            }
        }
        for (; j + 16u <= n; j += 16u) {
            vec4 pv[4];
            uint rr[16];
            [[unroll]] for (uint u = 0u; u < 4u; u++)
                pv[u] = vec4(sc[j + 4u * u], sc[j + 4u * u + 1u], sc[j + 4u * u + 2u], sc[j + 4u * u + 3u]);
            if (TYPE != TY_F16)
                sum += dot(pv[0] + pv[1] + pv[2] + pv[3], vec4(1.0));
            [[unroll]] for (uint u = 0u; u < 16u; u++) rr[u] = v_row(j + u, kvh);
            for (uint e = 0u; e < MAXD / 64u; e++) {
                uint c = l + 64u * e;
                if (c < p.Dv) {
                    float a = 0.0;
                    [[unroll]] for (uint u = 0u; u < 4u; u++)
                        a += dot(pv[u], vec4(at(rr[4u * u], c), at(rr[4u * u + 1u], c),
                                             at(rr[4u * u + 2u], c), at(rr[4u * u + 3u], c)));
                    acc[e] += a;
                }
            }
        }
        for (; j + 8u <= n; j += 8u) {
            vec4 pa = vec4(sc[j], sc[j + 1u], sc[j + 2u], sc[j + 3u]);
            vec4 pb = vec4(sc[j + 4u], sc[j + 5u], sc[j + 6u], sc[j + 7u]);
            if (TYPE != TY_F16) sum += (pa.x + pa.y + pa.z + pa.w) + (pb.x + pb.y + pb.z + pb.w);
            uint r0 = v_row(j, kvh), r1 = v_row(j + 1u, kvh), r2 = v_row(j + 2u, kvh),
                 r3 = v_row(j + 3u, kvh), r4 = v_row(j + 4u, kvh), r5 = v_row(j + 5u, kvh),
                 r6 = v_row(j + 6u, kvh), r7 = v_row(j + 7u, kvh);
            for (uint e = 0u; e < MAXD / 64u; e++) {
                uint c = l + 64u * e;
                if (c < p.Dv)
                    acc[e] += dot(pa, vec4(at(r0, c), at(r1, c), at(r2, c), at(r3, c))) +
                              dot(pb, vec4(at(r4, c), at(r5, c), at(r6, c), at(r7, c)));
            }
        }
        for (; j + 4u <= n; j += 4u) {
            vec4 pj = vec4(sc[j], sc[j + 1u], sc[j + 2u], sc[j + 3u]);
            if (TYPE != TY_F16) sum += pj.x + pj.y + pj.z + pj.w;
            uint r0 = v_row(j, kvh), r1 = v_row(j + 1u, kvh), r2 = v_row(j + 2u, kvh),
                 r3 = v_row(j + 3u, kvh);
            for (uint e = 0u; e < MAXD / 64u; e++) {
                uint c = l + 64u * e;
                if (c < p.Dv)
                    acc[e] += dot(pj, vec4(at(r0, c), at(r1, c), at(r2, c), at(r3, c)));
            }
        }
        for (; j < n; j++) {
            float pj = sc[j];
            if (TYPE != TY_F16) sum += pj;
            uint row = v_row(j, kvh);
            for (uint e = 0u; e < MAXD / 64u; e++) {
                uint c = l + 64u * e;
                if (c < p.Dv) acc[e] += pj * at(row, c);
            }
        }
        m = cm;
        barrier();
    }
    if (VV) { // the G partial sums of each column, in qs (the query is read)
        for (uint k = 0u; k < 4u; k++) qs[g * p.Dv + 4u * qv + k] = acc4[k];
        barrier();
        for (uint e = 0u; e < MAXD / 64u; e++) {
            uint c = l + 64u * e;
            if (c < p.Dv)
                for (uint k = 0u; k < G; k++) acc[e] += qs[k * p.Dv + c];
        }
        barrier(); // before qs is written again (out_v)
    }
    if (TYPE == TY_F16) sum = 1.0; // probabilities were normalised
    uint ob = p.o3 + t * p.ldo + h * p.Dv;
    if (n_active == 1u) {
        for (uint e = 0u; e < MAXD / 64u; e++) {
            uint c = l + 64u * e;
            if (c < p.Dv) o[ob + c] = acc[e] / sum;
            if (Q8OUT == 1u && c < p.Dv) out_v[c] = acc[e] / sum;
        }
        if (Q8OUT == 1u) {
            barrier();
            round_head(t, h);
        }
        return;
    }
    // a split: the partial result out, then the last of the head's S merges
    uint PS = 4u + ((p.Dv + 3u) & ~3u), head = t * gl_NumWorkGroups.x + h;
    uint pb = COUNTS + (head * S + s) * PS;
    if (l == 0u) sp[pb] = m, sp[pb + 1u] = sum;
    for (uint e = 0u; e < MAXD / 64u; e++) {
        uint c = l + 64u * e;
        if (c < p.Dv) sp[pb + 4u + c] = acc[e];
    }
    memoryBarrierBuffer();
    barrier();
    if (l == 0u) last_split = atomicAdd(scnt[head], 1u) == n_active - 1u;
    barrier();
    if (!last_split) return;
    memoryBarrierBuffer();
    float M = -1.0 / 0.0, den = 0.0;
    for (uint k = 0u; k < n_active; k++) M = max(M, sp[COUNTS + (head * S + k) * PS]);
    for (uint k = 0u; k < n_active; k++) {
        uint kb = COUNTS + (head * S + k) * PS;
        den += exp(sp[kb] - M) * sp[kb + 1u];
    }
    for (uint e = 0u; e < MAXD / 64u; e++) {
        uint c = l + 64u * e;
        if (c >= p.Dv) continue;
        float num = 0.0;
        for (uint k = 0u; k < n_active; k++) {
            uint kb = COUNTS + (head * S + k) * PS;
            num += exp(sp[kb] - M) * sp[kb + 4u + c];
        }
        o[ob + c] = num / den;
        if (Q8OUT == 1u) out_v[c] = num / den;
    }
    if (l == 0u) scnt[head] = 0u; // for the next run
    if (Q8OUT == 1u) {
        barrier();
        round_head(t, h);
    }
}
