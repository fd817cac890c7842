#!/usr/bin/env python3
"""Writes the malformed-GGUF corpus: one file per defect, built from a tiny
valid llama model, and manifest.tsv (file, expected status, text the error
message must contain). Standard library only.

    python3 make_corpus.py OUTDIR
"""
import os
import struct
import sys

FORMAT, UNSUPPORTED = -4, -5
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
E, FF, NV = 8, 16, 8
VOCAB = ["<unk>", "<s>", "</s>", "<0x41>", "a", "b", "\u2581a", "\u2581b"]
TYPES = [2, 3, 3, 6, 1, 1, 1, 1]


def s(x):
    b = x.encode() if isinstance(x, str) else x
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, payload):
    return s(key) + struct.pack("<I", vtype) + payload


def kv_u32(key, v): return kv(key, U32, struct.pack("<I", v))
def kv_f32(key, v): return kv(key, F32, struct.pack("<f", v))
def kv_str(key, v): return kv(key, STR, s(v))
def arr(etype, n, body): return struct.pack("<IQ", etype, n) + body
def kv_arr_str(key, items): return kv(key, ARR, arr(STR, len(items), b"".join(s(i) for i in items)))
def kv_arr_f32(key, v): return kv(key, ARR, arr(F32, len(v), struct.pack("<%df" % len(v), *v)))
def kv_arr_i32(key, v): return kv(key, ARR, arr(I32, len(v), struct.pack("<%di" % len(v), *v)))


class Spec:
    """A model file as parts that a defect edits before it is written."""

    def __init__(self):
        self.magic, self.version = b"GGUF", 3
        self.n_tensors = self.n_kv = None  # None: the real counts
        self.hp = {"context_length": 64, "embedding_length": E, "block_count": 1,
                   "feed_forward_length": FF, "attention.head_count": 2,
                   "attention.head_count_kv": 1}
        self.arch = "llama"
        self.extra_kv = []      # raw kv blobs written first
        self.drop_kv = set()    # keys left out
        self.vocab, self.types = list(VOCAB), list(TYPES)
        self.scores = [0.0] * NV
        self.tensors = [
            ["token_embd.weight", [E, NV], 0], ["output_norm.weight", [E], 0],
            ["blk.0.attn_norm.weight", [E], 0], ["blk.0.attn_q.weight", [E, E], 0],
            ["blk.0.attn_k.weight", [E, 4], 0], ["blk.0.attn_v.weight", [E, 4], 0],
            ["blk.0.attn_output.weight", [E, E], 0], ["blk.0.ffn_norm.weight", [E], 0],
            ["blk.0.ffn_gate.weight", [E, FF], 0], ["blk.0.ffn_up.weight", [E, FF], 0],
            ["blk.0.ffn_down.weight", [FF, E], 0]]
        self.offsets = None     # None: packed, 32-aligned
        self.align = 32
        self.raw_tensor_info = None  # replaces the tensor infos when set
        self.post = None        # bytes -> bytes, applied last

    def kvs(self):
        out = list(self.extra_kv)
        if self.arch is not None and "general.architecture" not in self.drop_kv:
            out.append(kv_str("general.architecture", self.arch))
        for k, v in self.hp.items():
            key = "llama." + k
            if key in self.drop_kv:
                continue
            out.append(v if isinstance(v, bytes) else kv_u32(key, v))
        if "tokenizer.ggml.model" not in self.drop_kv:
            out.append(kv_str("tokenizer.ggml.model", "llama"))
        if "tokenizer.ggml.tokens" not in self.drop_kv:
            out.append(kv_arr_str("tokenizer.ggml.tokens", self.vocab))
        if "tokenizer.ggml.scores" not in self.drop_kv:
            out.append(kv_arr_f32("tokenizer.ggml.scores", self.scores))
        if "tokenizer.ggml.token_type" not in self.drop_kv:
            out.append(kv_arr_i32("tokenizer.ggml.token_type", self.types))
        return out

    def build(self):
        kvs = self.kvs()
        sizes = []
        for name, dims, ttype in self.tensors:
            n = 1
            for d in dims:
                n *= d
            sizes.append(n * {0: 4, 1: 2}.get(ttype, 1) if n < (1 << 24) else 0)
        offs, off = [], 0
        for sz in sizes:
            offs.append(off)
            off += (sz + 31) // 32 * 32
        if self.offsets:
            offs = [self.offsets.get(i, o) for i, o in enumerate(offs)]
        infos = b""
        for (name, dims, ttype), o in zip(self.tensors, offs):
            infos += s(name) + struct.pack("<I", len(dims)) + b"".join(
                struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ttype, o)
        if self.raw_tensor_info is not None:
            infos = self.raw_tensor_info
        nt = len(self.tensors) if self.n_tensors is None else self.n_tensors
        nk = len(kvs) if self.n_kv is None else self.n_kv
        out = self.magic + struct.pack("<IQQ", self.version, nt, nk) + b"".join(kvs) + infos
        out += b"\0" * ((-len(out)) % self.align)
        data = bytearray(off)
        for i in range(0, off, 4):
            struct.pack_into("<f", data, i, 0.01 * (i % 7))
        out += bytes(data)
        return self.post(out) if self.post else out


CASES = []


def case(name, status, needle):
    def wrap(fn):
        CASES.append((name, status, needle, fn))
        return fn
    return wrap


def defect(name, status, needle, **fields):
    """A case that only sets Spec attributes."""
    def fn(sp):
        for k, v in fields.items():
            setattr(sp, k, v)
    CASES.append((name, status, needle, fn))


def post(name, status, needle, f):
    def fn(sp):
        sp.post = f
    CASES.append((name, status, needle, fn))


def extra(name, status, needle, *blobs):
    def fn(sp):
        sp.extra_kv = list(blobs)
    CASES.append((name, status, needle, fn))


def tensor_edit(name, status, needle, f):
    CASES.append((name, status, needle, lambda sp: f(sp.tensors, sp)))


# ---- header ----
post("empty-file", FORMAT, "magic", lambda b: b"")
post("three-bytes", FORMAT, "magic", lambda b: b[:3])
defect("bad-magic", FORMAT, "magic", magic=b"GGUX")
defect("magic-lowercase", FORMAT, "magic", magic=b"gguf")
defect("version-0", FORMAT, "version", version=0)
defect("version-1", UNSUPPORTED, "version 1", version=1)
defect("version-4", FORMAT, "version", version=4)
defect("version-max", FORMAT, "version", version=0xFFFFFFFF)
defect("version-big-endian", FORMAT, "big-endian", version=0x03000000)
post("truncated-after-version", FORMAT, "tensor count", lambda b: b[:8])
post("truncated-in-tensor-count", FORMAT, "tensor count", lambda b: b[:12])
post("truncated-in-kv-count", FORMAT, "metadata count", lambda b: b[:20])
defect("tensor-count-2^63", FORMAT, "tensor count", n_tensors=1 << 63)
defect("tensor-count-max", FORMAT, "tensor count", n_tensors=(1 << 64) - 1)
defect("tensor-count-above-limit", FORMAT, "limit", n_tensors=70000)
defect("kv-count-max", FORMAT, "metadata count", n_kv=(1 << 64) - 1)
defect("kv-count-2^40", FORMAT, "metadata count", n_kv=1 << 40)
defect("kv-count-one-too-many", FORMAT, "metadata key", n_kv=19)
defect("tensor-count-one-too-many", FORMAT, "tensor name", n_tensors=12)

# ---- metadata ----
extra("key-length-max", FORMAT, "metadata key", struct.pack("<Q", (1 << 64) - 1))
extra("key-length-2^40", FORMAT, "metadata key", struct.pack("<Q", 1 << 40))
extra("key-length-over-2GiB", FORMAT, "metadata key", struct.pack("<Q", (1 << 31) + 1))
extra("key-past-end", FORMAT, "metadata key", struct.pack("<Q", 1 << 20) + b"abc")
extra("key-with-nul", FORMAT, "NUL", s(b"gen\0eral") + struct.pack("<II", U32, 1))
extra("duplicate-architecture", FORMAT, "duplicate metadata key 'general.architecture'",
      kv_str("general.architecture", "llama"))
extra("duplicate-context-length", FORMAT, "duplicate metadata key 'llama.context_length'",
      kv_u32("llama.context_length", 64))
extra("duplicate-alignment", FORMAT, "duplicate metadata key 'general.alignment'",
      kv_u32("general.alignment", 32), kv_u32("general.alignment", 32))
extra("duplicate-tokens", FORMAT, "duplicate metadata key 'tokenizer.ggml.tokens'",
      kv_arr_str("tokenizer.ggml.tokens", VOCAB))
extra("value-type-13", FORMAT, "unknown value type", kv("x.t", 13, b""))
extra("value-type-max", FORMAT, "unknown value type", kv("x.t", 0xFFFFFFFF, b""))
for vt, nm in ((U8, "u8"), (U16, "u16"), (U32, "u32"), (U64, "u64"), (F32, "f32"),
               (F64, "f64"), (BOOL, "bool"), (I64, "i64")):
    post("truncated-%s-value" % nm, FORMAT, "x.trunc",
         (lambda vt: lambda b: b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + s("x.trunc") +
          struct.pack("<I", vt))(vt))
extra("bool-2", FORMAT, "bool", kv("x.b", BOOL, b"\x02"))
extra("bool-255", FORMAT, "bool", kv("x.b", BOOL, b"\xff"))
extra("string-past-end", FORMAT, "x.s", kv("x.s", STR, struct.pack("<Q", 1 << 20) + b"abc"))
extra("string-bomb-2^62", FORMAT, "limit", kv("x.s", STR, struct.pack("<Q", 1 << 62)))
extra("string-over-2GiB", FORMAT, "limit", kv("x.s", STR, struct.pack("<Q", (1 << 31) + 7)))
extra("string-limit-plus-one", FORMAT, "limit", kv("x.s", STR, struct.pack("<Q", (16 << 20) + 1)))
extra("array-nested", FORMAT, "nested", kv("x.a", ARR, struct.pack("<IQ", ARR, 1)))
extra("array-element-type-unknown", FORMAT, "element type", kv("x.a", ARR, struct.pack("<IQ", 77, 1)))
extra("array-u32-count-2^62", FORMAT, "array length", kv("x.a", ARR, struct.pack("<IQ", U32, 1 << 62)))
extra("array-u8-count-max", FORMAT, "array length", kv("x.a", ARR, struct.pack("<IQ", U8, (1 << 64) - 1)))
extra("array-above-limit", FORMAT, "array length", kv("x.a", ARR, struct.pack("<IQ", U8, (1 << 26) + 1)))
extra("array-u64-past-end", FORMAT, "x.a", kv("x.a", ARR, struct.pack("<IQ", U64, 1 << 20)))
extra("string-array-count-2^40", FORMAT, "x.a", kv("x.a", ARR, struct.pack("<IQ", STR, 1 << 40)))
extra("string-array-bad-length", FORMAT, "x.a",
      kv("x.a", ARR, struct.pack("<IQ", STR, 2) + s("ok") + struct.pack("<Q", 1 << 40)))
extra("alignment-0", FORMAT, "general.alignment", kv_u32("general.alignment", 0))
extra("alignment-3", FORMAT, "general.alignment", kv_u32("general.alignment", 3))
extra("alignment-48", FORMAT, "general.alignment", kv_u32("general.alignment", 48))
extra("alignment-2^31", FORMAT, "general.alignment", kv_u32("general.alignment", 1 << 31))
extra("alignment-2^25", FORMAT, "general.alignment", kv_u32("general.alignment", 1 << 25))
extra("alignment-as-u64", FORMAT, "general.alignment", kv("general.alignment", U64, struct.pack("<Q", 32)))
extra("alignment-as-string", FORMAT, "general.alignment", kv_str("general.alignment", "32"))
extra("alignment-as-f32", FORMAT, "general.alignment", kv_f32("general.alignment", 32.0))
defect("architecture-missing", FORMAT, "general.architecture", arch=None)
extra("architecture-as-u32", FORMAT, "general.architecture", kv_u32("general.architecture", 1))
defect("architecture-empty", FORMAT, "general.architecture", arch="")
defect("architecture-too-long", FORMAT, "general.architecture", arch="l" * 80)
defect("architecture-unknown", UNSUPPORTED, "gpt99", arch="gpt99")

# ---- tensor infos ----
tensor_edit("tensor-name-nul", FORMAT, "NUL", lambda t, sp: t[3].__setitem__(0, "blk.0.at\0tn_q.weight"))
tensor_edit("tensor-name-duplicate", FORMAT, "duplicate tensor name 'blk.0.attn_q.weight'",
            lambda t, sp: t[4].__setitem__(0, "blk.0.attn_q.weight"))
tensor_edit("tensor-n_dims-0", FORMAT, "n_dims", lambda t, sp: t[3].__setitem__(1, []))
tensor_edit("tensor-n_dims-5", FORMAT, "n_dims", lambda t, sp: t[3].__setitem__(1, [E, E, 1, 1, 1]))
tensor_edit("tensor-dim-2^63", FORMAT, "dimension", lambda t, sp: t[3].__setitem__(1, [E, 1 << 63]))
tensor_edit("tensor-dim-max", FORMAT, "dimension", lambda t, sp: t[3].__setitem__(1, [(1 << 64) - 1, E]))
tensor_edit("tensor-dims-product-2^64", FORMAT, "element count overflows",
            lambda t, sp: t[3].__setitem__(1, [1 << 32, 1 << 32]))
tensor_edit("tensor-dims-product-4d", FORMAT, "element count overflows",
            lambda t, sp: t[3].__setitem__(1, [1 << 16, 1 << 16, 1 << 16, 1 << 16]))
tensor_edit("tensor-dims-product-above-int64", FORMAT, "element count overflows",
            lambda t, sp: t[3].__setitem__(1, [1 << 62, 4]))
for ty in (4, 5, 31, 39, 99, 0xFFFFFFFF):
    tensor_edit("tensor-type-%d" % ty, FORMAT, "unknown tensor type %d" % ty,
                (lambda ty: lambda t, sp: t[3].__setitem__(2, ty))(ty))
# With the element count capped at INT64_MAX a block type's byte size fits
# in 64 bits but is absurd: it must be rejected against the data section.
tensor_edit("f32-nbytes-overflow", FORMAT, "byte size overflows",
            lambda t, sp: t[3].__setitem__(1, [(1 << 62) + 32, 1]))
tensor_edit("q8_0-nbytes-huge", FORMAT, "past the end",
            lambda t, sp: (t[3].__setitem__(2, 8), t[3].__setitem__(1, [1 << 62, 1])))
tensor_edit("q4_0-nbytes-huge", FORMAT, "past the end",
            lambda t, sp: (t[3].__setitem__(2, 2), t[3].__setitem__(1, [1 << 61, 2])))
tensor_edit("q8_0-row-not-whole-blocks", FORMAT, "block size",
            lambda t, sp: (t[3].__setitem__(2, 8), t[3].__setitem__(1, [33, E])))
tensor_edit("q4_0-row-not-whole-blocks", FORMAT, "block size",
            lambda t, sp: (t[3].__setitem__(2, 2), t[3].__setitem__(1, [E, E])))
tensor_edit("q4_K-row-not-whole-blocks", FORMAT, "block size",
            lambda t, sp: (t[3].__setitem__(2, 12), t[3].__setitem__(1, [128, E])))
for off in (1, 31, 33):
    defect("tensor-offset-misaligned-%d" % off, FORMAT, "alignment", offsets={3: 256 + off})
defect("tensor-offset-past-end", FORMAT, "past the end", offsets={10: 1 << 30})
defect("tensor-offset-wraps", FORMAT, "past the end", offsets={3: (1 << 64) - 32})
defect("tensor-offset-huge-aligned", FORMAT, "past the end", offsets={3: 1 << 62})
defect("tensors-same-offset", FORMAT, "overlap", offsets={4: 288})
defect("tensors-partial-overlap", FORMAT, "overlap", offsets={4: 320})
tensor_edit("padded-sizes-wrap", FORMAT, "past the end",
            lambda t, sp: (t.append(["x.big1", [1 << 60], 0]), t.append(["x.big2", [1 << 60], 0])))
post("truncated-in-tensor-name", FORMAT, "needs",
     lambda b: b[:b.index(b"blk.0.attn_q.weight") + 4])
post("truncated-in-tensor-dims", FORMAT, "needs",
     lambda b: b[:b.index(b"blk.0.attn_q.weight") + 19 + 4 + 3])
post("truncated-in-tensor-type", FORMAT, "needs",
     lambda b: b[:b.index(b"blk.0.attn_q.weight") + 19 + 4 + 16 + 2])
post("truncated-in-tensor-offset", FORMAT, "needs",
     lambda b: b[:b.index(b"blk.0.attn_q.weight") + 19 + 4 + 16 + 4 + 5])
post("truncated-data-section", FORMAT, "past the end", lambda b: b[:len(b) - 600])
post("no-data-section", FORMAT, "past the end",
     lambda b: b[:b.index(b"blk.0.ffn_down.weight") + 21 + 4 + 16 + 4 + 8])


# ---- hyperparameters against tensors ----
def hp(name, status, needle, **changes):
    def fn(sp):
        for k, v in changes.items():
            if v is None:
                sp.drop_kv.add("llama." + k)
            else:
                sp.hp[k] = v
    CASES.append((name, status, needle, fn))


for k in ("context_length", "embedding_length", "block_count", "feed_forward_length",
          "attention.head_count"):
    hp("missing-" + k.replace(".", "-"), FORMAT, "llama." + k, **{k: None})
hp("block-count-as-string", FORMAT, "llama.block_count", block_count=kv_str("llama.block_count", "1"))
hp("head-count-as-f32", FORMAT, "llama.attention.head_count",
   **{"attention.head_count": kv_f32("llama.attention.head_count", 2.0)})
hp("head-count-0", FORMAT, "head_count", **{"attention.head_count": 0})
hp("head-count-kv-0", FORMAT, "head_count_kv", **{"attention.head_count_kv": 0})
hp("head-count-kv-above-heads", FORMAT, "head_count_kv", **{"attention.head_count_kv": 3})
hp("head-count-kv-not-dividing", FORMAT, "head_count_kv",
   **{"attention.head_count": 4, "attention.head_count_kv": 3})
hp("block-count-0", FORMAT, "block_count", block_count=0)
hp("embedding-length-0", FORMAT, "embedding_length", embedding_length=0)
hp("context-length-0", FORMAT, "context_length", context_length=0)
hp("context-length-2^31", FORMAT, "context_length", context_length=1 << 31)
hp("rope-dimension-odd", FORMAT, "rope.dimension_count", **{"rope.dimension_count": 3})
hp("rope-dimension-above-head", FORMAT, "rope.dimension_count", **{"rope.dimension_count": 8})
hp("rms-eps-negative", FORMAT, "epsilon",
   **{"attention.layer_norm_rms_epsilon": kv_f32("llama.attention.layer_norm_rms_epsilon", -1.0)})
hp("rope-base-0", FORMAT, "rope base", **{"rope.freq_base": kv_f32("llama.rope.freq_base", 0.0)})
hp("rope-scaling-yarn-without-factor", FORMAT, "YaRN",
   **{"rope.scaling.type": kv_str("llama.rope.scaling.type", "yarn")})
hp("key-length-contradicts", FORMAT, "attn_q.weight", **{"attention.key_length": 8})
hp("expert-used-above-count", FORMAT, "expert_used_count",
   expert_count=4, expert_used_count=5)
hp("experts-without-expert-tensors", FORMAT, "ffn_gate_inp.weight", expert_count=4, expert_used_count=2)
hp("expert-groups-not-dividing", FORMAT, "expert_group_count", expert_count=4, expert_used_count=2,
   expert_group_count=3)
hp("expert-groups-too-few-used", FORMAT, "expert_group_count", expert_count=8, expert_used_count=4,
   expert_group_count=4, expert_group_used_count=1)
hp("expert-gating-unknown", UNSUPPORTED, "expert_gating_func", expert_count=4, expert_used_count=2,
   expert_gating_func=7)
hp("block-count-above-tensors", FORMAT, "blk.1.attn_norm.weight", block_count=2)
hp("ffn-length-contradicts", FORMAT, "ffn_gate.weight", feed_forward_length=32)
for i, nm in ((0, "token_embd.weight"), (1, "output_norm.weight"), (3, "blk.0.attn_q.weight"),
              (8, "blk.0.ffn_gate.weight"), (10, "blk.0.ffn_down.weight")):
    tensor_edit("missing-tensor-" + nm.replace(".", "-"), FORMAT, nm,
                (lambda i: lambda t, sp: t.pop(i))(i))
tensor_edit("embedding-zero-rows", FORMAT, "token_embd.weight",
            lambda t, sp: t[0].__setitem__(1, [E, 0]))
tensor_edit("attn-q-transposed", FORMAT, "attn_q.weight", lambda t, sp: t[3].__setitem__(1, [E, 4]))
tensor_edit("embedding-width-wrong", FORMAT, "token_embd.weight", lambda t, sp: t[0].__setitem__(1, [4, NV * 2]))
tensor_edit("ffn-down-swapped", FORMAT, "ffn_down.weight", lambda t, sp: t[10].__setitem__(1, [E, FF]))
tensor_edit("output-vocab-wrong", FORMAT, "output.weight", lambda t, sp: t.append(["output.weight", [E, NV + 1], 0]))
tensor_edit("norm-as-f16", UNSUPPORTED, "attn_norm.weight", lambda t, sp: t[2].__setitem__(2, 1))
tensor_edit("weight-q3_K-unsupported", UNSUPPORTED, "q3_K",
            lambda t, sp: (t[10].__setitem__(2, 11), t[10].__setitem__(1, [256, 1])))


# ---- vocabulary ----
def vocab(name, status, needle, f):
    CASES.append((name, status, needle, f))


def replace_kv(sp, key, blob):
    sp.drop_kv.add(key)
    sp.extra_kv.append(blob)


vocab("tokens-not-array", FORMAT, "tokenizer.ggml.tokens",
      lambda sp: replace_kv(sp, "tokenizer.ggml.tokens", kv_str("tokenizer.ggml.tokens", "a")))
vocab("tokens-as-u32-array", FORMAT, "tokenizer.ggml.tokens",
      lambda sp: replace_kv(sp, "tokenizer.ggml.tokens", kv("tokenizer.ggml.tokens", ARR, arr(U32, NV, b"\0" * 4 * NV))))
vocab("tokens-fewer-than-rows", FORMAT, "tokenizer.ggml.tokens", lambda sp: setattr(sp, "vocab", VOCAB[:6]))
vocab("tokens-more-than-rows", FORMAT, "tokenizer.ggml.tokens", lambda sp: setattr(sp, "vocab", VOCAB + ["c"]))
vocab("scores-length-differs", FORMAT, "tokenizer.ggml.scores", lambda sp: setattr(sp, "scores", [0.0] * 5))
vocab("scores-as-i8", FORMAT, "tokenizer.ggml.scores",
      lambda sp: replace_kv(sp, "tokenizer.ggml.scores", kv("tokenizer.ggml.scores", ARR, arr(I8, NV, b"\1" * NV))))
vocab("scores-as-strings", FORMAT, "tokenizer.ggml.scores",
      lambda sp: replace_kv(sp, "tokenizer.ggml.scores", kv_arr_str("tokenizer.ggml.scores", VOCAB)))
vocab("token-type-length-differs", FORMAT, "tokenizer.ggml.token_type", lambda sp: setattr(sp, "types", TYPES[:7]))
vocab("bos-beyond-vocab", FORMAT, "bos_token_id", lambda sp: sp.extra_kv.append(kv_u32("tokenizer.ggml.bos_token_id", 100)))
vocab("eos-beyond-vocab", FORMAT, "eos_token_id", lambda sp: sp.extra_kv.append(kv_u32("tokenizer.ggml.eos_token_id", NV)))
vocab("unknown-beyond-vocab", FORMAT, "unknown_token_id",
      lambda sp: sp.extra_kv.append(kv_u32("tokenizer.ggml.unknown_token_id", 1 << 30)))
vocab("bos-negative", FORMAT, "bos_token_id",
      lambda sp: sp.extra_kv.append(kv("tokenizer.ggml.bos_token_id", I32, struct.pack("<i", -5))))
vocab("bos-as-string", FORMAT, "bos_token_id", lambda sp: sp.extra_kv.append(kv_str("tokenizer.ggml.bos_token_id", "1")))
for bad in ("<0x-1>", "<0xZZ>", "<0x4>", "<0x041>", "0x41"):
    vocab("byte-token-" + bad.strip("<>"), FORMAT, "byte token",
          (lambda bad: lambda sp: sp.vocab.__setitem__(3, bad))(bad))
vocab("tokenizer-model-not-string", FORMAT, "tokenizer.ggml.model",
      lambda sp: replace_kv(sp, "tokenizer.ggml.model", kv_u32("tokenizer.ggml.model", 1)))
vocab("add-space-prefix-not-bool", FORMAT, "add_space_prefix",
      lambda sp: sp.extra_kv.append(kv_u32("tokenizer.ggml.add_space_prefix", 1)))
vocab("charsmap-size-beyond-blob", FORMAT, "precompiled_charsmap",
      lambda sp: sp.extra_kv.append(kv("tokenizer.ggml.precompiled_charsmap", ARR,
                                       arr(U8, 12, struct.pack("<I", 1000) + b"\0" * 8))))
vocab("charsmap-shorter-than-header", FORMAT, "precompiled_charsmap",
      lambda sp: sp.extra_kv.append(kv("tokenizer.ggml.precompiled_charsmap", ARR, arr(U8, 2, b"\0\0"))))
vocab("charsmap-not-bytes", FORMAT, "precompiled_charsmap",
      lambda sp: sp.extra_kv.append(kv_arr_f32("tokenizer.ggml.precompiled_charsmap", [1.0])))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    names = set()
    with open(os.path.join(out, "manifest.tsv"), "w") as m:
        for name, status, needle, fn in CASES:
            assert name not in names, name
            names.add(name)
            sp = Spec()
            fn(sp)
            with open(os.path.join(out, name + ".gguf"), "wb") as f:
                f.write(sp.build())
            m.write("%s.gguf\t%d\t%s\n" % (name, status, needle))
    valid = Spec().build()
    with open(os.path.join(out, "valid.model"), "wb") as f:
        f.write(valid)
    if len(sys.argv) > 2:  # meson's stamp output
        open(sys.argv[2], "w").write("%d\n" % len(CASES))
    print("%d malformed files in %s" % (len(CASES), out))


if __name__ == "__main__":
    main()
