#!/usr/bin/env python3
"""Rewrites a deepseek2 GGUF with combined attn_kv_b into the split layout
newer llama.cpp files use: attn_k_b {nope, kv_lora, n_head} (k_b transposed
per head) and attn_v_b {kv_lora, v, n_head}, with key_length = kv_lora +
rope, value_length = kv_lora, head_count_kv = 1 and the per-head sizes in
key_length_mla / value_length_mla. Standard library only.

    python3 split_deepseek.py IN.gguf OUT.gguf STAMP [--yarn]   (no IN: writes only STAMP)

--yarn also adds DeepSeek's YaRN rope scaling keys (factor 40, original
context 64, log multiplier 0.1), for tests of that path.
"""
import os
import struct
import sys

src, dst, stamp = sys.argv[1:4]
yarn = "--yarn" in sys.argv[4:]
if not os.path.exists(src):
    open(stamp, "w").write("skipped: %s absent\n" % src)
    sys.exit(0)
f = open(src, "rb").read()
o = 0


def take(fmt):
    global o
    v = struct.unpack_from(fmt, f, o)
    o += struct.calcsize(fmt)
    return v[0]


def raw_string():
    global o
    n = take("<Q")
    s = f[o:o + n]
    o += n
    return s


SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def skip_value(t):
    global o
    if t == 8:
        raw_string()
    elif t == 9:
        et, n = take("<I"), take("<Q")
        if et == 8:
            for _ in range(n):
                raw_string()
        else:
            o += n * SIZES[et]
    else:
        o += SIZES[t]


assert f[:4] == b"GGUF"
o = 4
version, n_tensors, n_kv = take("<I"), take("<Q"), take("<Q")
kvs, meta = [], {}
for _ in range(n_kv):
    start = o
    key = raw_string().decode()
    t = take("<I")
    vstart = o
    skip_value(t)
    kvs.append((key, f[start:o]))
    if t == 4:
        meta[key] = struct.unpack_from("<I", f, vstart)[0]
infos = []
for _ in range(n_tensors):
    name = raw_string().decode()
    nd = take("<I")
    dims = [take("<Q") for _ in range(nd)]
    ty, off = take("<I"), take("<Q")
    infos.append([name, dims, ty, off])
data_start = (o + 31) // 32 * 32

H = meta["deepseek2.attention.head_count"]
kvl = meta["deepseek2.attention.kv_lora_rank"]
qk = meta["deepseek2.attention.key_length"]
v = meta["deepseek2.attention.value_length"]
rope = meta["deepseek2.rope.dimension_count"]
nope = qk - rope


def u32kv(key, val):
    k = key.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<II", 4, val)


replaced = {"deepseek2.attention.key_length": kvl + rope, "deepseek2.attention.value_length": kvl,
            "deepseek2.attention.head_count_kv": 1}
out_kvs = [u32kv(k, replaced[k]) if k in replaced else blob for k, blob in kvs]
out_kvs += [u32kv("deepseek2.attention.key_length_mla", qk),
            u32kv("deepseek2.attention.value_length_mla", v)]


def f32kv(key, val):
    k = key.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<If", 6, val)


def strkv(key, val):
    k, b = key.encode(), val.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<IQ", 8, len(b)) + b


if yarn:
    out_kvs += [strkv("deepseek2.rope.scaling.type", "yarn"),
                f32kv("deepseek2.rope.scaling.factor", 40.0),
                u32kv("deepseek2.rope.scaling.original_context_length", 64),
                f32kv("deepseek2.rope.scaling.yarn_log_multiplier", 0.1)]

tensors = []  # (name, dims, type, bytes)
for name, dims, ty, off in infos:
    n = 1
    for d in dims:
        n *= d
    esz = {0: 4, 1: 2}[ty]
    blob = f[data_start + off:data_start + off + n * esz]
    if not name.endswith("attn_kv_b.weight"):
        tensors.append((name, dims, ty, blob))
        continue
    # rows: H * (nope + v) rows of kvl elements
    rows = [blob[r * kvl * esz:(r + 1) * kvl * esz] for r in range(H * (nope + v))]
    kb, vb = bytearray(), bytearray()
    for h in range(H):
        for c in range(kvl):
            for d in range(nope):
                row = rows[h * (nope + v) + d]
                kb += row[c * esz:(c + 1) * esz]
        for e in range(v):
            vb += rows[h * (nope + v) + nope + e]
    base = name[:-len("attn_kv_b.weight")]
    tensors.append((base + "attn_k_b.weight", [nope, kvl, H], ty, bytes(kb)))
    tensors.append((base + "attn_v_b.weight", [kvl, v, H], ty, bytes(vb)))

out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(out_kvs)))
for blob in out_kvs:
    out += blob
off = 0
offs = []
for name, dims, ty, blob in tensors:
    offs.append(off)
    off += (len(blob) + 31) // 32 * 32
for (name, dims, ty, blob), toff in zip(tensors, offs):
    n = name.encode()
    out += struct.pack("<Q", len(n)) + n + struct.pack("<I", len(dims))
    out += b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ty, toff)
out += b"\0" * ((-len(out)) % 32)
for name, dims, ty, blob in tensors:
    out += blob + b"\0" * ((-len(blob)) % 32)
open(dst, "wb").write(out)
open(stamp, "w").write("ok\n")
