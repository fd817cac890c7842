"""Tests of the Python bindings against the reference data in
../shared/testdata (or $EMBER_TESTDATA); tests needing it skip without it.

    EMBER_LIBRARY=build/libember.so python3 -m unittest discover -s examples/python/tests
"""
import gc
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import ember  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.environ.get("EMBER_TESTDATA") or os.path.normpath(
    os.path.join(HERE, "..", "..", "..", "..", "shared", "testdata"))


def data(rel):
    path = os.path.join(TESTDATA, rel)
    if not os.path.exists(path):
        raise unittest.SkipTest("%s not found" % path)
    return path


def load_json(path):
    with open(path) as f:
        return json.load(f)


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


class TestReferences(unittest.TestCase):
    def test_tiny_llama_greedy(self):
        ref = load_json(data("models/tiny-llama/reference.json"))
        with ember.Model(data("models/tiny-llama/model-f16.gguf")) as m, \
                ember.Context(m, n_ctx=64, n_batch=32) as ctx:
            ids = list(ctx.generate_tokens(ref["prompt"], max_tokens=len(ref["greedy"]),
                                           temperature=0, stop_at_eog=False))
        self.assertEqual(ids, ref["greedy"])

    def test_aidreams_text(self):
        ref = load_json(data("models/aidreams-260k/reference.json"))
        with ember.Model(data("models/aidreams-260k/model-f32.gguf")) as m, \
                ember.Context(m, n_ctx=128) as ctx:
            for case in ref["cases"]:
                self.assertEqual(m.tokenize(case["prompt_text"]), case["prompt"])
                text = "".join(ctx.generate(case["prompt_text"], max_tokens=len(case["greedy"]),
                                            temperature=0))
                self.assertEqual(text, case["greedy_text"])

    def test_logits_and_batch(self):
        with ember.Model(data("models/aidreams-260k/model-f32.gguf")) as m, \
                ember.Context(m, n_ctx=64, n_batch=16) as ctx:
            ids = m.tokenize("I dreamed")
            ctx.eval([(t, i, 0, 1) for i, t in enumerate(ids)])
            row = ctx.logits(len(ids) - 1)
            self.assertEqual(len(row), m.n_vocab)
            self.assertEqual(ctx.seq_length(), len(ids))
            with self.assertRaises(ember.BadTokenError) as cm:
                ctx.eval([(m.n_vocab, len(ids), 0, 1)])
            self.assertIn("vocabulary", str(cm.exception))
            self.assertEqual(ctx.seq_length(), len(ids))  # unchanged by the failure
            with self.assertRaises(ember.ContextFullError):
                ctx.eval([(1, 64, 0, 1)])


class TestSequences(unittest.TestCase):
    def test_fork_truncate_reuse_and_pool(self):
        with ember.Model(data("models/tiny-llama/model-f16.gguf")) as m, \
                ember.Context(m, n_ctx=64, n_batch=64, n_seq_max=3, kv_blocks=6) as ctx:
            ids = [(7 * i + 3) % 1000 + 1 for i in range(40)]
            ctx.eval([(t, i, 0, 1) for i, t in enumerate(ids)])
            want = ctx.logits(39)
            info = ctx.kv_info()
            self.assertEqual(info["blocks_total"], 6)
            self.assertEqual(info["blocks_used"], 3)
            ctx.fork(0, 1)  # shares the blocks, takes none
            self.assertEqual(ctx.kv_info()["blocks_shared"], 3)
            ctx.truncate(1, 20)
            self.assertEqual(ctx.seq_length(1), 20)
            # a new sequence with the same prompt attaches the two whole blocks
            self.assertEqual(ctx.reuse_prefix(2, ids), 32)
            written = ctx.kv_info()["positions_written"]
            ctx.eval([(t, 32 + i, 2, 1) for i, t in enumerate(ids[32:])])
            got = ctx.logits(7)
            self.assertLess(max(abs(a - b) for a, b in zip(got, want)), 1e-4)
            info = ctx.kv_info()
            self.assertEqual(info["positions_written"] - written, 8)
            self.assertEqual(info["positions_reused"], 32)
            with self.assertRaises(ember.KVFullError):  # 2 free, 3 needed (one a copy)
                ctx.eval([(1, i, 1, 0) for i in range(20, 64)])
            self.assertEqual(ctx.seq_length(1), 20)  # unchanged by the failure

    def test_block_size(self):
        with ember.Model(data("models/tiny-llama/model-f16.gguf")) as m, \
                ember.Context(m, n_ctx=64, n_batch=64, kv_block_size=8) as ctx:
            ctx.eval([((7 * i + 3) % 1000 + 1, i, 0, 0) for i in range(41)])
            info = ctx.kv_info()
            self.assertEqual(info["block_positions"], 8)
            self.assertEqual(info["blocks_used"], 6)
            with self.assertRaises(ember.InvalidArgumentError):
                ember.Context(m, kv_block_size=12)


class TestErrors(unittest.TestCase):
    def test_malformed_file(self):
        raw = read_bytes(data("models/aidreams-260k/model-f32.gguf"))
        with self.assertRaises(ember.FormatError) as cm:
            ember.Model(data=raw[:300])
        self.assertIn("gguf", cm.exception.message)
        self.assertEqual(cm.exception.status, -4)
        bad = bytearray(raw)
        bad[0:4] = b"GGUX"
        with self.assertRaises(ember.FormatError) as cm:
            ember.Model(data=bytes(bad))
        self.assertIn("magic", str(cm.exception))

    def test_missing_file(self):
        with self.assertRaises(ember.EmberError) as cm:
            ember.Model("/nonexistent/model.gguf")
        self.assertIn("/nonexistent/model.gguf", str(cm.exception))

    def test_closed_model(self):
        m = ember.Model(data("models/aidreams-260k/model-f32.gguf"))
        m.close()
        with self.assertRaises(ember.EmberError):
            m.tokenize("x")
        m.close()  # twice is fine


class TestTokenizer(unittest.TestCase):
    def test_vocab_only_round_trip(self):
        with ember.Model(data("vocab/ggml-vocab-llama-spm.gguf"), vocab_only=True) as m:
            text = "Hello world, this is 🦙.cpp"
            ids = m.tokenize(text, add_bos=False)
            self.assertEqual(m.detokenize(ids, strip_space=True), text)
            self.assertEqual(m.tokenize(text)[0], m.bos)
            self.assertEqual(m.meta("tokenizer.ggml.model"), "llama")
            with self.assertRaises(ember.EmberError):
                ember.Context(m)

    def test_detok_stream_whole_characters(self):
        with ember.Model(data("vocab/ggml-vocab-gpt-2.gguf"), vocab_only=True) as m:
            text = "naïve 🦙 and 你好"
            ids = m.tokenize(text, add_bos=False)
            with ember.DetokStream(m) as st:
                chunks = [st.push(t) for t in ids] + [st.flush()]
            for c in chunks:
                c.decode("utf-8")  # raises on half a character
            self.assertEqual(b"".join(chunks).decode("utf-8"), text)
            self.assertTrue(any(c == b"" for c in chunks))  # something was held


class TestChat(unittest.TestCase):
    def test_model_template_and_named(self):
        with ember.Model(data("vocab/ggml-vocab-phi-3.gguf"), vocab_only=True) as m:
            self.assertEqual(m.chat([("user", "Hi")]), "<|user|>\nHi<|end|>\n<|assistant|>\n")
            self.assertEqual(m.chat([("user", "Hi")], template="chatml", add_assistant=False),
                             "<|im_start|>user\nHi<|im_end|>\n")
            with self.assertRaises(ember.UnsupportedError):
                m.chat([("user", "Hi")], template="no-such")


class TestResources(unittest.TestCase):
    def test_no_leak_over_1000_cycles(self):
        raw = read_bytes(data("models/aidreams-260k/model-f32.gguf"))

        def cycle():
            with ember.Model(data=raw) as m, ember.Context(m, n_ctx=32, n_batch=8, n_threads=1) as c:
                c.eval([(1, 0, 0, 1)])

        for _ in range(50):  # warm up allocator pools
            cycle()
        gc.collect()
        before = rss_kib()
        for _ in range(1000):
            cycle()
        gc.collect()
        grown = rss_kib() - before
        # one leaked model image alone would be 1 MiB per cycle
        self.assertLess(grown, 4096, "RSS grew by %d KiB over 1000 cycles" % grown)

    def test_finalizers_free(self):
        m = ember.Model(data("models/aidreams-260k/model-f32.gguf"))
        c = ember.Context(m, n_ctx=16)
        del c
        del m
        gc.collect()


if __name__ == "__main__":
    unittest.main()
