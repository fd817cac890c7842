#!/usr/bin/env python3
"""Seed corpora for the tokenizer and API fuzz targets (the GGUF targets
use the malformed corpus and its valid model as seeds).

    python3 make_seeds.py OUTDIR [VOCAB_TEST_INPUT ...] STAMP
"""
import os
import random
import sys

out, *inputs, stamp = sys.argv[1:]
tok = os.path.join(out, "tokenizer")
bpe = os.path.join(out, "bpe")
api = os.path.join(out, "api")
for d in (tok, bpe, api):
    os.makedirs(d, exist_ok=True)
texts = ["", " ", "Hello world", " Hello  World!", "the cat\tsat\n", "\u00e9\u00e8 \U0001f999.cpp",
         "<s>x</s>", "\xff\xfe bytes", "a" * 200]
for path in inputs:
    if os.path.exists(path):
        texts += open(path, encoding="utf-8", errors="replace").read().split("\n__ggml_vocab_test__\n")
for i, t in enumerate(texts):
    with open(os.path.join(tok, "%03d" % i), "wb") as f:
        f.write(bytes([i % 4]) + t.encode("utf-8", "surrogateescape"))
    # the BPE target: the first byte picks one of 9 pre-tokenizers and the flags
    for k in range(9):
        if i % 3 == k % 3:
            with open(os.path.join(bpe, "%03d-%d" % (i, k)), "wb") as f:
                f.write(bytes([k << 2 | i % 4]) + t.encode("utf-8", "surrogateescape"))
rng = random.Random(1234)
for i in range(24):
    with open(os.path.join(api, "%03d" % i), "wb") as f:
        f.write(bytes(rng.randrange(256) for _ in range(rng.randrange(8, 200))))
open(stamp, "w").write("ok\n")
