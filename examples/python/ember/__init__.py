"""Python bindings for ember, through ctypes and the standard library only.

The shared library is found through $EMBER_LIBRARY (a path to libember.so),
then the usual loader paths (libember.so.0 / ctypes.util.find_library).

    import ember
    with ember.Model("model.gguf") as model, ember.Context(model, n_ctx=512) as ctx:
        for piece in ctx.generate("Once upon a time", max_tokens=32, temperature=0.7):
            print(piece, end="", flush=True)

Errors raise ember.EmberError (or a subclass per status) carrying the
library's message. Objects are freed by close() / context managers, and by
finalizers as a fallback. A Model may be shared by threads; a Context is used
by one thread at a time.
"""

import ctypes
import ctypes.util
import os
import weakref

__all__ = ["EmberError", "FormatError", "Model", "Context", "Sampler", "DetokStream", "version",
           "TYPE_F32", "TYPE_F16", "BACKEND_CPU", "BACKEND_VULKAN"]

TYPE_F32, TYPE_F16, TYPE_Q4_0, TYPE_Q8_0, TYPE_BF16 = 0, 1, 2, 8, 30
BACKEND_CPU, BACKEND_VULKAN = 0, 1
TOKENIZE_ADD_BOS, TOKENIZE_PARSE_SPECIAL = 1, 2
DETOKENIZE_SPECIAL, DETOKENIZE_STRIP_SPACE = 1, 2
ERR_BUFFER_TOO_SMALL = -10


def _load_library():
    candidates = []
    env = os.environ.get("EMBER_LIBRARY")
    if env:
        candidates.append(env)
    candidates.append("libember.so.0")
    found = ctypes.util.find_library("ember")
    if found:
        candidates.append(found)
    errors = []
    for name in candidates:
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            errors.append(str(e))
    raise ImportError("ember: cannot load libember (set EMBER_LIBRARY): " + "; ".join(errors))


_lib = _load_library()

# ---- C types ----------------------------------------------------------------

_c = ctypes
_malloc_fn = _c.CFUNCTYPE(_c.c_void_p, _c.c_size_t, _c.c_void_p)
_realloc_fn = _c.CFUNCTYPE(_c.c_void_p, _c.c_void_p, _c.c_size_t, _c.c_void_p)
_free_fn = _c.CFUNCTYPE(None, _c.c_void_p, _c.c_void_p)


class _Allocator(_c.Structure):
    _fields_ = [("malloc_fn", _malloc_fn), ("realloc_fn", _realloc_fn),
                ("free_fn", _free_fn), ("user", _c.c_void_p)]


class _ModelParams(_c.Structure):
    _fields_ = [("struct_size", _c.c_size_t), ("allocator", _Allocator),
                ("max_string_length", _c.c_uint64), ("max_array_length", _c.c_uint64),
                ("max_tensor_count", _c.c_uint64), ("vocab_only", _c.c_int32),
                ("reserved", _c.c_uint8 * 60)]


class _ContextParams(_c.Structure):
    _fields_ = [("struct_size", _c.c_size_t), ("n_ctx", _c.c_uint32), ("n_batch", _c.c_uint32),
                ("n_threads", _c.c_uint32), ("n_seq_max", _c.c_uint32), ("backend", _c.c_int32),
                ("device", _c.c_int32), ("allocator", _Allocator), ("kv_type", _c.c_int32),
                ("kv_blocks", _c.c_uint32), ("act_type", _c.c_int32),
                ("kv_block_size", _c.c_uint32), ("reserved", _c.c_uint8 * 48)]


class _KVInfo(_c.Structure):
    _fields_ = [("struct_size", _c.c_size_t), ("block_positions", _c.c_uint32),
                ("blocks_total", _c.c_uint32), ("blocks_free", _c.c_uint32),
                ("blocks_used", _c.c_uint32), ("blocks_shared", _c.c_uint32),
                ("blocks_cached", _c.c_uint32), ("bytes_per_block", _c.c_uint64),
                ("positions_held", _c.c_uint64), ("blocks_copied", _c.c_uint64),
                ("positions_reused", _c.c_uint64), ("positions_written", _c.c_uint64),
                ("blocks_evicted", _c.c_uint64), ("reserved", _c.c_uint8 * 40)]


class _SamplerParams(_c.Structure):
    _fields_ = [("struct_size", _c.c_size_t), ("temperature", _c.c_float), ("top_k", _c.c_int32),
                ("top_p", _c.c_float), ("min_p", _c.c_float), ("repeat_penalty", _c.c_float),
                ("repeat_last_n", _c.c_int32), ("seed", _c.c_uint64), ("allocator", _Allocator),
                ("reserved", _c.c_uint8 * 64)]


class _ChatMessage(_c.Structure):
    _fields_ = [("role", _c.c_char_p), ("content", _c.c_char_p)]


class BatchEntry(_c.Structure):
    """One (token, pos, seq_id, want_logits) entry of ember_eval's batch."""
    _fields_ = [("token", _c.c_int32), ("pos", _c.c_int32), ("seq_id", _c.c_int32),
                ("want_logits", _c.c_int32)]


_P = _c.c_void_p
_SIG = {
    "ember_version": (_c.c_char_p, []),
    "ember_status_string": (_c.c_char_p, [_c.c_int]),
    "ember_last_error": (_c.c_char_p, []),
    "ember_model_default_params": (None, [_c.POINTER(_ModelParams)]),
    "ember_model_load_file": (_c.c_int, [_c.c_char_p, _c.POINTER(_ModelParams), _c.POINTER(_P)]),
    "ember_model_load_memory": (_c.c_int, [_c.c_void_p, _c.c_size_t, _c.POINTER(_ModelParams),
                                           _c.POINTER(_P)]),
    "ember_model_free": (None, [_c.POINTER(_P)]),
    "ember_model_arch": (_c.c_char_p, [_P]),
    "ember_model_n_vocab": (_c.c_int32, [_P]),
    "ember_model_n_ctx_train": (_c.c_int32, [_P]),
    "ember_model_n_layer": (_c.c_int32, [_P]),
    "ember_model_n_params": (_c.c_uint64, [_P]),
    "ember_model_meta_string": (_c.c_int, [_P, _c.c_char_p, _c.c_char_p, _c.c_size_t,
                                           _c.POINTER(_c.c_size_t)]),
    "ember_context_default_params": (None, [_c.POINTER(_ContextParams)]),
    "ember_context_create": (_c.c_int, [_P, _c.POINTER(_ContextParams), _c.POINTER(_P)]),
    "ember_context_free": (None, [_c.POINTER(_P)]),
    "ember_context_last_error": (_c.c_char_p, [_P]),
    "ember_eval": (_c.c_int, [_P, _c.POINTER(BatchEntry), _c.c_size_t]),
    "ember_get_logits": (_c.POINTER(_c.c_float), [_P, _c.c_size_t]),
    "ember_seq_length": (_c.c_int32, [_P, _c.c_int32]),
    "ember_seq_clear": (_c.c_int, [_P, _c.c_int32]),
    "ember_seq_fork": (_c.c_int, [_P, _c.c_int32, _c.c_int32]),
    "ember_seq_truncate": (_c.c_int, [_P, _c.c_int32, _c.c_int32]),
    "ember_seq_reuse_prefix": (_c.c_int32, [_P, _c.c_int32, _c.POINTER(_c.c_int32), _c.c_size_t]),
    "ember_kv_info_get": (_c.c_int, [_P, _c.POINTER(_KVInfo)]),
    "ember_tokenize": (_c.c_int, [_P, _c.c_char_p, _c.c_size_t, _c.POINTER(_c.c_int32),
                                  _c.c_size_t, _c.POINTER(_c.c_size_t), _c.c_uint32]),
    "ember_detokenize": (_c.c_int, [_P, _c.POINTER(_c.c_int32), _c.c_size_t, _c.c_char_p,
                                    _c.c_size_t, _c.POINTER(_c.c_size_t), _c.c_uint32]),
    "ember_token_to_piece": (_c.c_int, [_P, _c.c_int32, _c.c_char_p, _c.c_size_t,
                                        _c.POINTER(_c.c_size_t), _c.c_uint32]),
    "ember_detok_stream_create": (_c.c_int, [_P, _c.c_uint32, _c.POINTER(_P)]),
    "ember_detok_stream_push": (_c.c_int, [_P, _c.c_int32, _c.c_char_p, _c.c_size_t,
                                           _c.POINTER(_c.c_size_t)]),
    "ember_detok_stream_flush": (_c.c_int, [_P, _c.c_char_p, _c.c_size_t,
                                            _c.POINTER(_c.c_size_t)]),
    "ember_detok_stream_free": (None, [_c.POINTER(_P)]),
    "ember_token_bos": (_c.c_int32, [_P]),
    "ember_token_eos": (_c.c_int32, [_P]),
    "ember_token_is_eog": (_c.c_int, [_P, _c.c_int32]),
    "ember_chat_apply": (_c.c_int, [_P, _c.c_char_p, _c.POINTER(_ChatMessage), _c.c_size_t,
                                    _c.c_uint32, _c.c_char_p, _c.c_size_t,
                                    _c.POINTER(_c.c_size_t)]),
    "ember_sampler_default_params": (None, [_c.POINTER(_SamplerParams)]),
    "ember_sampler_create": (_c.c_int, [_c.POINTER(_SamplerParams), _c.c_int32, _c.POINTER(_P)]),
    "ember_sampler_free": (None, [_c.POINTER(_P)]),
    "ember_sampler_sample": (_c.c_int, [_P, _c.POINTER(_c.c_float), _c.POINTER(_c.c_int32)]),
    "ember_sampler_accept": (_c.c_int, [_P, _c.c_int32]),
}
for _name, (_res, _args) in _SIG.items():
    _f = getattr(_lib, _name)
    _f.restype = _res
    _f.argtypes = _args


def _check_struct_sizes():
    """The library writes struct_size: it must equal our mirror's size."""
    for cls, fn in ((_ModelParams, _lib.ember_model_default_params),
                    (_ContextParams, _lib.ember_context_default_params),
                    (_SamplerParams, _lib.ember_sampler_default_params)):
        p = cls()
        fn(_c.byref(p))
        if p.struct_size != _c.sizeof(cls):
            raise ImportError("ember: %s is %d bytes in the library, %d here" %
                              (cls.__name__, p.struct_size, _c.sizeof(cls)))


_check_struct_sizes()


def version():
    return _lib.ember_version().decode()


# ---- errors -----------------------------------------------------------------

class EmberError(Exception):
    """A failed ember call: .status is the ember_status code, str() the message."""

    def __init__(self, status, message):
        name = _lib.ember_status_string(status).decode()
        super().__init__("%s: %s" % (name, message))
        self.status = status
        self.message = message


class InvalidArgumentError(EmberError): pass
class NoMemoryError(EmberError): pass
class IOError_(EmberError): pass
class FormatError(EmberError): pass
class UnsupportedError(EmberError): pass
class NotAvailableError(EmberError): pass
class ContextFullError(EmberError): pass
class KVFullError(EmberError): pass
class BadTokenError(EmberError): pass


_BY_STATUS = {-1: InvalidArgumentError, -2: NoMemoryError, -3: IOError_, -4: FormatError,
              -5: UnsupportedError, -6: NotAvailableError, -7: ContextFullError,
              -8: KVFullError, -9: BadTokenError}


def _raise(status, message):
    raise _BY_STATUS.get(status, EmberError)(status, message)


def _check(status, ctx=None):
    if status != 0:
        msg = (_lib.ember_context_last_error(ctx) if ctx else _lib.ember_last_error()) or b""
        _raise(status, msg.decode("utf-8", "replace"))


# ---- handles --------------------------------------------------------------------

class _Handle:
    """Deterministic release: close() (idempotent) or a with-block; the
    weakref finalizer set by the subclass frees whatever was forgotten."""

    def close(self):
        self._finalizer()
        self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- model --------------------------------------------------------------------

def _free_handle(free_fn, handle):
    p = _P(handle)
    free_fn(_c.byref(p))


class Model(_Handle):
    """A loaded model: Model(path) maps a GGUF file; Model(data=bytes) reads
    an in-memory image (copied once into an aligned buffer that lives as long
    as the model). vocab_only=True loads the tokenizer alone. Close the
    contexts made from a model before the model."""

    def __init__(self, path=None, data=None, vocab_only=False):
        params = _ModelParams()
        _lib.ember_model_default_params(_c.byref(params))
        params.vocab_only = 1 if vocab_only else 0
        handle = _P()
        self._buffer = None
        if data is not None:
            # ember reads the image in place: keep an aligned copy alive.
            raw = _c.create_string_buffer(len(data) + 64)
            off = (-_c.addressof(raw)) % 64
            _c.memmove(_c.addressof(raw) + off, data, len(data))
            self._buffer = raw
            _check(_lib.ember_model_load_memory(_c.addressof(raw) + off, len(data),
                                                _c.byref(params), _c.byref(handle)))
        else:
            _check(_lib.ember_model_load_file(os.fsencode(path), _c.byref(params),
                                              _c.byref(handle)))
        self._h = handle.value
        self._finalizer = weakref.finalize(self, _free_model, self._h, self._buffer)

    @property
    def handle(self):
        if not self._h:
            raise EmberError(-12, "the model is closed")
        return self._h

    arch = property(lambda s: _lib.ember_model_arch(s.handle).decode())
    n_vocab = property(lambda s: _lib.ember_model_n_vocab(s.handle))
    n_ctx_train = property(lambda s: _lib.ember_model_n_ctx_train(s.handle))
    n_layer = property(lambda s: _lib.ember_model_n_layer(s.handle))
    n_params = property(lambda s: _lib.ember_model_n_params(s.handle))
    bos = property(lambda s: _lib.ember_token_bos(s.handle))
    eos = property(lambda s: _lib.ember_token_eos(s.handle))

    def meta(self, key):
        """A metadata value as text (numbers in decimal)."""
        need = _c.c_size_t()
        buf = _c.create_string_buffer(256)
        rc = _lib.ember_model_meta_string(self.handle, key.encode(), buf, 256, _c.byref(need))
        if rc == ERR_BUFFER_TOO_SMALL:
            buf = _c.create_string_buffer(need.value + 1)
            rc = _lib.ember_model_meta_string(self.handle, key.encode(), buf, need.value + 1, None)
        _check(rc)
        return buf.value.decode("utf-8", "replace")

    def is_eog(self, token):
        return bool(_lib.ember_token_is_eog(self.handle, token))

    def tokenize(self, text, add_bos=True, parse_special=False):
        """Text -> list of token ids."""
        raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        flags = (TOKENIZE_ADD_BOS if add_bos else 0) | (TOKENIZE_PARSE_SPECIAL if parse_special else 0)
        n = _c.c_size_t()
        cap = len(raw) + 8
        while True:
            out = (_c.c_int32 * cap)()
            rc = _lib.ember_tokenize(self.handle, raw, len(raw), out, cap, _c.byref(n), flags)
            if rc == ERR_BUFFER_TOO_SMALL:
                cap = n.value
                continue
            _check(rc)
            return list(out[:n.value])

    def detokenize_bytes(self, ids, special=False, strip_space=False):
        arr = (_c.c_int32 * len(ids))(*ids)
        flags = (DETOKENIZE_SPECIAL if special else 0) | (DETOKENIZE_STRIP_SPACE if strip_space else 0)
        n = _c.c_size_t()
        cap = 16 * len(ids) + 16
        while True:
            buf = _c.create_string_buffer(cap)
            rc = _lib.ember_detokenize(self.handle, arr, len(ids), buf, cap, _c.byref(n), flags)
            if rc == ERR_BUFFER_TOO_SMALL:
                cap = n.value
                continue
            _check(rc)
            return buf.raw[:n.value]

    def detokenize(self, ids, special=False, strip_space=False):
        """Token ids -> text."""
        return self.detokenize_bytes(ids, special, strip_space).decode("utf-8", "replace")

    def token_to_piece(self, token, special=False):
        return self.detokenize_bytes([token], special)

    def chat(self, messages, template=None, add_assistant=True):
        """Formats [(role, content), ...] with the model's chat template
        (recognised, never executed) or a named one ("chatml", "llama3", ...)."""
        msgs = (_ChatMessage * len(messages))(
            *[_ChatMessage(r.encode(), c.encode()) for r, c in messages])
        name = template.encode() if template else None
        need = _c.c_size_t()
        cap = 256
        while True:
            buf = _c.create_string_buffer(cap)
            rc = _lib.ember_chat_apply(self.handle, name, msgs, len(messages),
                                       1 if add_assistant else 0, buf, cap, _c.byref(need))
            if rc == ERR_BUFFER_TOO_SMALL:
                cap = need.value + 1
                continue
            _check(rc)
            return buf.value.decode("utf-8")


def _free_model(handle, buffer):
    _free_handle(_lib.ember_model_free, handle)
    del buffer  # the image may go only after the model


# ---- sampler ----------------------------------------------------------------------

class Sampler(_Handle):
    """Sampling: temperature <= 0 is greedy; same seed, same tokens."""

    def __init__(self, n_vocab, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
                 repeat_penalty=1.0, repeat_last_n=64, seed=0x5eed):
        p = _SamplerParams()
        _lib.ember_sampler_default_params(_c.byref(p))
        p.temperature, p.top_k, p.top_p, p.min_p = temperature, top_k, top_p, min_p
        p.repeat_penalty, p.repeat_last_n, p.seed = repeat_penalty, repeat_last_n, seed
        h = _P()
        _check(_lib.ember_sampler_create(_c.byref(p), n_vocab, _c.byref(h)))
        self._h = h.value
        self._finalizer = weakref.finalize(self, _free_handle, _lib.ember_sampler_free, self._h)

    def sample(self, logits_ptr):
        tok = _c.c_int32()
        _check(_lib.ember_sampler_sample(self._h, logits_ptr, _c.byref(tok)))
        return tok.value

    def accept(self, token):
        _check(_lib.ember_sampler_accept(self._h, token))


class DetokStream(_Handle):
    """Token ids -> UTF-8 bytes as they are generated, in whole characters
    only (the C library holds a character split over tokens)."""

    def __init__(self, model, special=False, strip_space=False):
        flags = (1 if special else 0) | (2 if strip_space else 0)
        h = _P()
        _check(_lib.ember_detok_stream_create(model.handle, flags, _c.byref(h)))
        self.model = model  # the model must outlive the stream
        self._h = h.value
        self._buf = _c.create_string_buffer(256)
        self._finalizer = weakref.finalize(self, _free_handle, _lib.ember_detok_stream_free,
                                           self._h)

    def _call(self, fn, *args):
        n = _c.c_size_t()
        rc = fn(self._h, *args, self._buf, len(self._buf), _c.byref(n))
        if rc == -10:  # EMBER_ERR_BUFFER_TOO_SMALL: nothing consumed, retry
            self._buf = _c.create_string_buffer(n.value)
            rc = fn(self._h, *args, self._buf, len(self._buf), _c.byref(n))
        _check(rc)
        return self._buf.raw[:n.value]

    def push(self, token):
        """The bytes completed by this token (b"" while a character is partial)."""
        return self._call(_lib.ember_detok_stream_push, token)

    def flush(self):
        """Bytes still held at the end of the text; resets the stream."""
        return self._call(_lib.ember_detok_stream_flush)


# ---- context ----------------------------------------------------------------------

class Context(_Handle):
    """Evaluation state for one model: KV cache, buffers, threads."""

    def __init__(self, model, n_ctx=0, n_batch=512, n_threads=0, n_seq_max=1,
                 kv_type=TYPE_F32, backend=BACKEND_CPU, kv_blocks=0, act_type=TYPE_F32,
                 kv_block_size=0):
        p = _ContextParams()
        _lib.ember_context_default_params(_c.byref(p))
        p.n_ctx, p.n_batch, p.n_threads, p.n_seq_max = n_ctx, n_batch, n_threads, n_seq_max
        p.kv_type, p.backend, p.kv_blocks, p.act_type = kv_type, backend, kv_blocks, act_type
        p.kv_block_size = kv_block_size
        h = _P()
        _check(_lib.ember_context_create(model.handle, _c.byref(p), _c.byref(h)))
        self.model = model
        self.n_batch = n_batch
        self._h = h.value
        self._finalizer = weakref.finalize(self, _free_handle, _lib.ember_context_free, self._h)

    def eval(self, entries):
        """Evaluates a batch: a list of (token, pos, seq_id, want_logits)."""
        arr = (BatchEntry * len(entries))(*[BatchEntry(*e) for e in entries])
        _check(_lib.ember_eval(self._h, arr, len(entries)), self._h)

    def logits_ptr(self, i):
        p = _lib.ember_get_logits(self._h, i)
        if not p:
            _raise(-1, _lib.ember_context_last_error(self._h).decode())
        return p

    def logits(self, i):
        """The logits after batch entry i of the last eval, as a list."""
        return self.logits_ptr(i)[:self.model.n_vocab]

    def seq_length(self, seq_id=0):
        return _lib.ember_seq_length(self._h, seq_id)

    def clear(self, seq_id=-1):
        _check(_lib.ember_seq_clear(self._h, seq_id), self._h)

    def fork(self, src, dst):
        """dst becomes a copy-on-write copy of src."""
        _check(_lib.ember_seq_fork(self._h, src, dst), self._h)

    def truncate(self, seq_id, n_pos):
        """Keeps positions 0..n_pos-1 of seq_id (rollback)."""
        _check(_lib.ember_seq_truncate(self._h, seq_id, n_pos), self._h)

    def reuse_prefix(self, seq_id, ids):
        """Attaches cached KV blocks matching ids to the (cleared) sequence;
        returns the positions now held: evaluate ids from there on."""
        arr = (_c.c_int32 * max(len(ids), 1))(*ids)
        n = _lib.ember_seq_reuse_prefix(self._h, seq_id, arr, len(ids))
        if n < 0:
            _check(n, self._h)
        return n

    def kv_info(self):
        """The KV pool's state, as a dict (see ember_kv_info)."""
        info = _KVInfo()
        info.struct_size = _c.sizeof(_KVInfo)
        _check(_lib.ember_kv_info_get(self._h, _c.byref(info)))
        return {name: getattr(info, name) for name, _ in _KVInfo._fields_
                if name not in ("struct_size", "reserved")}

    def eval_prompt(self, ids, seq_id=0, all_logits=False):
        """Evaluates ids after what the sequence holds, in n_batch chunks.
        Returns the batch index of the last token (for logits())."""
        start = self.seq_length(seq_id)
        last = 0
        for i0 in range(0, len(ids), self.n_batch):
            chunk = ids[i0:i0 + self.n_batch]
            self.eval([(t, start + i0 + j, seq_id, 1 if all_logits or i0 + j == len(ids) - 1 else 0)
                       for j, t in enumerate(chunk)])
            last = len(chunk) - 1
        return last

    def generate_tokens(self, prompt, max_tokens=64, stop_at_eog=True, **sampling):
        """Yields generated token ids. prompt: text or a list of ids."""
        ids = self.model.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        self.clear(0)
        last = self.eval_prompt(ids)
        pos = len(ids)
        with Sampler(self.model.n_vocab, **sampling) as s:
            logits = self.logits_ptr(last)
            for _ in range(max_tokens):
                tok = s.sample(logits)
                if stop_at_eog and self.model.is_eog(tok):
                    return
                yield tok
                self.eval([(tok, pos, 0, 1)])
                pos += 1
                logits = self.logits_ptr(0)

    def generate(self, prompt, max_tokens=64, **sampling):
        """Yields generated text as it streams; never splits a UTF-8 char."""
        with DetokStream(self.model) as stream:
            for tok in self.generate_tokens(prompt, max_tokens, **sampling):
                text = stream.push(tok).decode("utf-8", "replace")
                if text:
                    yield text
            tail = stream.flush().decode("utf-8", "replace")
            if tail:
                yield tail
