#!/usr/bin/env python3
"""Differential test of the pre-tokenizers: random strings built from every
class the regexes tell apart (ASCII, cased Latin/Greek, CJK, kana, Hangul,
digits of several scripts, marks, punctuation, symbols, emoji, every kind of
whitespace) are split by the C code (split_tool) and by the reference
regexes (reference.py, `regex` module); the pieces must be identical.

    diff_pretok.py SPLIT_TOOL [CASES_PER_KIND] [SEED]

Exits 77 (skipped) when the `regex` module is missing."""
import os
import random
import subprocess
import sys

try:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import reference
except ImportError as e:
    print("skipped: %s (install python3-regex)" % e)
    sys.exit(77)

ALPHABET = (
    list("abcxyzABCXYZ") + list("'sStTrReEvVmMlLdD") + list("0123456789") +
    list(" \t\n\r\x0b\x0c") + ["\u00a0", "\u2003", "\u3000", "\u0085", "\u2028"] +
    list("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~") +
    ["\u00e9", "\u00c9", "\u00df", "\u01c5", "\u03a9", "\u03c9", "\u1fbe", "\u212a", "\u0416"] +
    ["\u0301", "\u0308", "\u093f"] +                 # combining marks
    ["\u02b0", "\u01bb", "\u05d0", "\u0627"] +       # Lm, Lo (Hebrew, Arabic)
    ["\u4e2d", "\u6587", "\u9fa6", "\u3042", "\u30ab", "\uac00", "\u0e01"] +
    ["\u0663", "\u00b2", "\u00bd", "\u2167"] +       # other-script and other numbers
    ["\u2018", "\u201c", "\uff01", "\uff21", "\u3001", "\u00a7", "\u20ac"] +
    ["\U0001f600", "\U0001f44d\U0001f3fd", "\u200d"] +
    ["\U00010400", "\U0001e900"]
)


def random_text(rng):
    n = rng.randint(0, 24)
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def main():
    tool = sys.argv[1]
    per_kind = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1234)
    cases = []
    for kind in reference.PIPELINES:
        for _ in range(per_kind):
            cases.append((kind, random_text(rng)))
    stdin = b"".join(b"%s %d\n" % (k.encode(), len(t.encode())) + t.encode() for k, t in cases)
    out = subprocess.run([tool], input=stdin, stdout=subprocess.PIPE, check=True).stdout
    lines = out.decode().split("\n")
    failures = 0
    for (kind, text), line in zip(cases, lines):
        got = [int(x) for x in line.split()]
        want = reference.split(kind, text)
        if got != want:
            failures += 1
            if failures <= 10:
                print("%s %r: got %s want %s" % (kind, text, got, want))
    print("%d cases, %d kinds, %d differ" % (len(cases), len(reference.PIPELINES), failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
