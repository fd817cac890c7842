// Package ember is the Go binding of the ember inference library (cgo).
//
// A Model may be shared by many goroutines; a Context belongs to one
// goroutine at a time. Errors are values of type *Error carrying the
// library's status code and message; errors.Is(err, ember.ErrFormat) works.
// Close frees what an object holds; finalizers are a fallback only.
package ember

/*
#cgo pkg-config: ember
#include <stdlib.h>
#include <string.h>
#include "ember.h"

// ember_last_error() is thread-local, and a goroutine may move to another
// OS thread between two cgo calls: so each call whose failure is reported
// through it copies the message out within the same C call.
static void copy_err(char *err, size_t n) {
    strncpy(err, ember_last_error(), n - 1);
    err[n - 1] = 0;
}

static int go_load_file(const char *path, int vocab_only, ember_model **out, char *err, size_t n) {
    ember_model_params p;
    ember_model_default_params(&p);
    p.vocab_only = vocab_only;
    int rc = ember_model_load_file(path, &p, out);
    if (rc) copy_err(err, n);
    return rc;
}

static int go_load_memory(const void *data, size_t size, ember_model **out, char *err, size_t n) {
    int rc = ember_model_load_memory(data, size, NULL, out);
    if (rc) copy_err(err, n);
    return rc;
}

static int go_context_create(const ember_model *m, uint32_t n_ctx, uint32_t n_batch,
                             uint32_t n_threads, uint32_t n_seq, int32_t kv_type,
                             uint32_t kv_blocks, int32_t act_type, uint32_t kv_block_size,
                             ember_context **out, char *err, size_t n) {
    ember_context_params p;
    ember_context_default_params(&p);
    p.n_ctx = n_ctx;
    if (n_batch) p.n_batch = n_batch;
    p.n_threads = n_threads;
    if (n_seq) p.n_seq_max = n_seq;
    p.kv_type = kv_type;
    p.kv_blocks = kv_blocks;
    p.act_type = act_type;
    p.kv_block_size = kv_block_size;
    int rc = ember_context_create(m, &p, out);
    if (rc) copy_err(err, n);
    return rc;
}

static int go_tokenize(const ember_model *m, const char *text, size_t len, int32_t *ids,
                       size_t max, size_t *n_ids, uint32_t flags, char *err, size_t n) {
    int rc = ember_tokenize(m, text, len, ids, max, n_ids, flags);
    if (rc) copy_err(err, n);
    return rc;
}

static int go_detokenize(const ember_model *m, const int32_t *ids, size_t n_ids, char *buf,
                         size_t size, size_t *n_bytes, uint32_t flags, char *err, size_t n) {
    int rc = ember_detokenize(m, ids, n_ids, buf, size, n_bytes, flags);
    if (rc) copy_err(err, n);
    return rc;
}

static int go_sampler_create(float temp, int32_t top_k, float top_p, float min_p, float rep,
                             uint64_t seed, int32_t n_vocab, ember_sampler **out, char *err,
                             size_t n) {
    ember_sampler_params p;
    ember_sampler_default_params(&p);
    p.temperature = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.repeat_penalty = rep;
    p.seed = seed;
    int rc = ember_sampler_create(&p, n_vocab, out);
    if (rc) copy_err(err, n);
    return rc;
}

static int go_sample(ember_sampler *s, const float *logits, int32_t *tok, char *err, size_t n) {
    int rc = ember_sampler_sample(s, logits, tok);
    if (rc) copy_err(err, n);
    return rc;
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"unicode/utf8"
	"unsafe"
)

// Status codes (the numbers of ember_status).
const (
	StatusInvalidArgument = -1
	StatusNoMemory        = -2
	StatusIO              = -3
	StatusFormat          = -4
	StatusUnsupported     = -5
	StatusNotAvailable    = -6
	StatusContextFull     = -7
	StatusKVFull          = -8
	StatusBadToken        = -9
	StatusBufferTooSmall  = -10
	StatusBadState        = -12
)

// Error is a failed ember call.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("ember: %s: %s", C.GoString(C.ember_status_string(C.int(e.Status))), e.Message)
}

// Is matches errors by status, so errors.Is(err, ErrFormat) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Status == e.Status && t.Message == ""
}

// Sentinels for errors.Is.
var (
	ErrInvalidArgument = &Error{Status: StatusInvalidArgument}
	ErrIO              = &Error{Status: StatusIO}
	ErrFormat          = &Error{Status: StatusFormat}
	ErrUnsupported     = &Error{Status: StatusUnsupported}
	ErrNotAvailable    = &Error{Status: StatusNotAvailable}
	ErrContextFull     = &Error{Status: StatusContextFull}
	ErrKVFull          = &Error{Status: StatusKVFull}
	ErrBadToken        = &Error{Status: StatusBadToken}
	ErrClosed          = &Error{Status: StatusBadState, Message: "object is closed"}
)

const errSize = 512

func errbuf() []C.char { return make([]C.char, errSize) }

func mkerr(rc C.int, buf []C.char) error {
	if rc == 0 {
		return nil
	}
	return &Error{Status: int(rc), Message: C.GoString(&buf[0])}
}

// Version of the linked library.
func Version() string { return C.GoString(C.ember_version()) }

// Model is a loaded model; safe for concurrent use by many goroutines.
type Model struct {
	mu  sync.RWMutex // Close waits for calls in flight
	h   *C.ember_model
	mem unsafe.Pointer // C copy of an in-memory image
}

func newModel(h *C.ember_model, mem unsafe.Pointer) *Model {
	m := &Model{h: h, mem: mem}
	runtime.SetFinalizer(m, func(m *Model) { m.Close() })
	return m
}

// LoadFile maps a GGUF file.
func LoadFile(path string) (*Model, error) { return loadFile(path, 0) }

// LoadVocab loads only the tokenizer of a GGUF file.
func LoadVocab(path string) (*Model, error) { return loadFile(path, 1) }

func loadFile(path string, vocabOnly int) (*Model, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var h *C.ember_model
	e := errbuf()
	if err := mkerr(C.go_load_file(cpath, C.int(vocabOnly), &h, &e[0], errSize), e); err != nil {
		return nil, err
	}
	return newModel(h, nil), nil
}

// LoadMemory loads a GGUF image from memory. ember reads it in place, so it
// is copied once into C memory that lives as long as the Model.
func LoadMemory(data []byte) (*Model, error) {
	if len(data) == 0 {
		return nil, &Error{Status: StatusInvalidArgument, Message: "empty image"}
	}
	var raw unsafe.Pointer
	if C.posix_memalign(&raw, 64, C.size_t(len(data))) != 0 {
		return nil, &Error{Status: StatusNoMemory, Message: "cannot copy the image"}
	}
	C.memcpy(raw, unsafe.Pointer(&data[0]), C.size_t(len(data)))
	var h *C.ember_model
	e := errbuf()
	if err := mkerr(C.go_load_memory(raw, C.size_t(len(data)), &h, &e[0], errSize), e); err != nil {
		C.free(raw)
		return nil, err
	}
	return newModel(h, raw), nil
}

// Close frees the model; its contexts must be closed first.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.h != nil {
		C.ember_model_free(&m.h)
		if m.mem != nil {
			C.free(m.mem)
			m.mem = nil
		}
		runtime.SetFinalizer(m, nil)
	}
	return nil
}

func (m *Model) handle() (*C.ember_model, error) {
	if m.h == nil {
		return nil, ErrClosed
	}
	return m.h, nil
}

// Arch is general.architecture.
func (m *Model) Arch() string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.h == nil {
		return ""
	}
	return C.GoString(C.ember_model_arch(m.h))
}

// NVocab is the vocabulary size.
func (m *Model) NVocab() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.h == nil {
		return 0
	}
	return int(C.ember_model_n_vocab(m.h))
}

// IsEOG reports end-of-generation tokens.
func (m *Model) IsEOG(tok int32) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.h != nil && C.ember_token_is_eog(m.h, C.int32_t(tok)) != 0
}

// Tokenize turns text into ids, with BOS first if addBOS.
func (m *Model) Tokenize(text string, addBOS bool) ([]int32, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	h, err := m.handle()
	if err != nil {
		return nil, err
	}
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	flags := C.uint32_t(0)
	if addBOS {
		flags = C.EMBER_TOKENIZE_ADD_BOS
	}
	ids := make([]int32, len(text)+8)
	for {
		var n C.size_t
		e := errbuf()
		rc := C.go_tokenize(h, ctext, C.size_t(len(text)), (*C.int32_t)(unsafe.Pointer(&ids[0])),
			C.size_t(len(ids)), &n, flags, &e[0], errSize)
		if rc == StatusBufferTooSmall {
			ids = make([]int32, int(n))
			continue
		}
		if err := mkerr(rc, e); err != nil {
			return nil, err
		}
		return ids[:n], nil
	}
}

// DetokenizeBytes turns ids into bytes (possibly a partial UTF-8 sequence).
func (m *Model) DetokenizeBytes(ids []int32) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	h, err := m.handle()
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	buf := make([]byte, 16*len(ids)+16)
	for {
		var n C.size_t
		e := errbuf()
		rc := C.go_detokenize(h, (*C.int32_t)(unsafe.Pointer(&ids[0])), C.size_t(len(ids)),
			(*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &n, 0, &e[0], errSize)
		if rc == StatusBufferTooSmall {
			buf = make([]byte, int(n))
			continue
		}
		if err := mkerr(rc, e); err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// Detokenize turns ids into text.
func (m *Model) Detokenize(ids []int32) (string, error) {
	b, err := m.DetokenizeBytes(ids)
	return string(b), err
}

// ContextParams configures NewContext; zero values take the defaults.
type ContextParams struct {
	NCtx, NBatch, NThreads, NSeqMax int
	KVF16                           bool
	KVQ8                            bool // 8-bit KV rows (heads multiples of 32)
	KVBlocks                        int  // KV budget in blocks; 0: all
	KVBlockSize                     int  // positions per block, a power of two 4..256; 0: KVBlock
	ActQ8                           bool // 8-bit activations for Q8_0/Q4_0 matmuls
}

// KVBlock is the default number of positions in one KV block.
const KVBlock = C.EMBER_KV_BLOCK

// KVInfo is the state of a context's KV pool (ember_kv_info).
type KVInfo struct {
	BlockPositions, BlocksTotal, BlocksFree, BlocksUsed, BlocksShared, BlocksCached uint32
	BytesPerBlock, PositionsHeld, BlocksCopied                                      uint64
	PositionsReused, PositionsWritten, BlocksEvicted                                uint64
}

// Context holds the KV cache and buffers; one goroutine at a time.
type Context struct {
	h     *C.ember_context
	model *Model
	batch []C.ember_batch_entry
}

// NewContext creates a context for m.
func NewContext(m *Model, p ContextParams) (*Context, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	h, err := m.handle()
	if err != nil {
		return nil, err
	}
	kv := C.int32_t(C.EMBER_TYPE_F32)
	if p.KVF16 {
		kv = C.EMBER_TYPE_F16
	}
	if p.KVQ8 {
		kv = C.EMBER_TYPE_Q8_0
	}
	act := C.int32_t(C.EMBER_TYPE_F32)
	if p.ActQ8 {
		act = C.EMBER_TYPE_Q8_0
	}
	var c *C.ember_context
	e := errbuf()
	rc := C.go_context_create(h, C.uint32_t(p.NCtx), C.uint32_t(p.NBatch), C.uint32_t(p.NThreads),
		C.uint32_t(p.NSeqMax), kv, C.uint32_t(p.KVBlocks), act, C.uint32_t(p.KVBlockSize), &c, &e[0], errSize)
	if err := mkerr(rc, e); err != nil {
		return nil, err
	}
	ctx := &Context{h: c, model: m}
	runtime.SetFinalizer(ctx, func(c *Context) { c.Close() })
	return ctx, nil
}

// Close frees the context.
func (c *Context) Close() error {
	if c.h != nil {
		C.ember_context_free(&c.h)
		runtime.SetFinalizer(c, nil)
	}
	return nil
}

func (c *Context) ctxErr(rc C.int) error {
	if rc == 0 {
		return nil
	}
	return &Error{Status: int(rc), Message: C.GoString(C.ember_context_last_error(c.h))}
}

// BatchEntry is one token of a batch.
type BatchEntry struct {
	Token, Pos, SeqID int32
	WantLogits        bool
}

// Eval evaluates a batch; on error the context is unchanged.
func (c *Context) Eval(entries []BatchEntry) error {
	if c.h == nil {
		return ErrClosed
	}
	if len(entries) == 0 {
		return &Error{Status: StatusInvalidArgument, Message: "empty batch"}
	}
	if cap(c.batch) < len(entries) {
		c.batch = make([]C.ember_batch_entry, len(entries))
	}
	b := c.batch[:len(entries)]
	for i, e := range entries {
		want := C.int32_t(0)
		if e.WantLogits {
			want = 1
		}
		b[i] = C.ember_batch_entry{token: C.int32_t(e.Token), pos: C.int32_t(e.Pos),
			seq_id: C.int32_t(e.SeqID), want_logits: want}
	}
	return c.ctxErr(C.ember_eval(c.h, &b[0], C.size_t(len(b))))
}

func (c *Context) logitsPtr(i int) (*C.float, error) {
	if c.h == nil {
		return nil, ErrClosed
	}
	p := C.ember_get_logits(c.h, C.size_t(i))
	if p == nil {
		return nil, &Error{Status: StatusInvalidArgument, Message: C.GoString(C.ember_context_last_error(c.h))}
	}
	return p, nil
}

// Logits copies the logits after entry i of the last Eval.
func (c *Context) Logits(i int) ([]float32, error) {
	p, err := c.logitsPtr(i)
	if err != nil {
		return nil, err
	}
	out := make([]float32, c.model.NVocab())
	copy(out, unsafe.Slice((*float32)(unsafe.Pointer(p)), len(out)))
	return out, nil
}

// Clear drops a sequence's cached positions (-1: all).
func (c *Context) Clear(seq int) error {
	if c.h == nil {
		return ErrClosed
	}
	return c.ctxErr(C.ember_seq_clear(c.h, C.int32_t(seq)))
}

// Fork makes sequence dst a copy-on-write copy of src.
func (c *Context) Fork(src, dst int) error {
	if c.h == nil {
		return ErrClosed
	}
	return c.ctxErr(C.ember_seq_fork(c.h, C.int32_t(src), C.int32_t(dst)))
}

// Truncate keeps positions 0..n-1 of seq (rollback).
func (c *Context) Truncate(seq, n int) error {
	if c.h == nil {
		return ErrClosed
	}
	return c.ctxErr(C.ember_seq_truncate(c.h, C.int32_t(seq), C.int32_t(n)))
}

// ReusePrefix attaches cached KV blocks that hold ids' prefix to the
// (cleared) sequence and returns the positions it now holds; evaluate ids
// from there on.
func (c *Context) ReusePrefix(seq int, ids []int32) (int, error) {
	if c.h == nil {
		return 0, ErrClosed
	}
	var p *C.int32_t
	if len(ids) > 0 {
		p = (*C.int32_t)(unsafe.Pointer(&ids[0]))
	}
	n := C.ember_seq_reuse_prefix(c.h, C.int32_t(seq), p, C.size_t(len(ids)))
	if n < 0 {
		return 0, c.ctxErr(C.int(n))
	}
	return int(n), nil
}

// KVInfo reports the KV pool's state.
func (c *Context) KVInfo() (KVInfo, error) {
	if c.h == nil {
		return KVInfo{}, ErrClosed
	}
	var in C.ember_kv_info
	in.struct_size = C.size_t(unsafe.Sizeof(in))
	if err := c.ctxErr(C.ember_kv_info_get(c.h, &in)); err != nil {
		return KVInfo{}, err
	}
	return KVInfo{uint32(in.block_positions), uint32(in.blocks_total), uint32(in.blocks_free),
		uint32(in.blocks_used), uint32(in.blocks_shared), uint32(in.blocks_cached),
		uint64(in.bytes_per_block), uint64(in.positions_held), uint64(in.blocks_copied),
		uint64(in.positions_reused), uint64(in.positions_written), uint64(in.blocks_evicted)}, nil
}

// SamplerParams: Temperature <= 0 is greedy.
type SamplerParams struct {
	Temperature   float32
	TopK          int
	TopP, MinP    float32
	RepeatPenalty float32
	Seed          uint64
}

// DefaultSampler returns the library's defaults.
func DefaultSampler() SamplerParams {
	var p C.ember_sampler_params
	C.ember_sampler_default_params(&p)
	return SamplerParams{float32(p.temperature), int(p.top_k), float32(p.top_p), float32(p.min_p),
		float32(p.repeat_penalty), uint64(p.seed)}
}

// Generate evaluates prompt (ids) from position 0 of sequence 0 and samples
// up to maxTokens ids, stopping at end-of-generation. onToken (may be nil)
// sees each id as it is produced.
func (c *Context) Generate(prompt []int32, maxTokens int, sp SamplerParams, onToken func(int32)) ([]int32, error) {
	if err := c.Clear(0); err != nil {
		return nil, err
	}
	nBatch := 512
	last := 0
	for i0 := 0; i0 < len(prompt); i0 += nBatch {
		end := i0 + nBatch
		if end > len(prompt) {
			end = len(prompt)
		}
		b := make([]BatchEntry, 0, end-i0)
		for i := i0; i < end; i++ {
			b = append(b, BatchEntry{prompt[i], int32(i), 0, i == len(prompt)-1})
		}
		if err := c.Eval(b); err != nil {
			return nil, err
		}
		last = end - i0 - 1
	}
	var s *C.ember_sampler
	e := errbuf()
	rc := C.go_sampler_create(C.float(sp.Temperature), C.int32_t(sp.TopK), C.float(sp.TopP),
		C.float(sp.MinP), C.float(sp.RepeatPenalty), C.uint64_t(sp.Seed),
		C.int32_t(c.model.NVocab()), &s, &e[0], errSize)
	if err := mkerr(rc, e); err != nil {
		return nil, err
	}
	defer C.ember_sampler_free(&s)
	logits, err := c.logitsPtr(last)
	if err != nil {
		return nil, err
	}
	var out []int32
	for pos := len(prompt); len(out) < maxTokens; pos++ {
		var tok C.int32_t
		if err := mkerr(C.go_sample(s, logits, &tok, &e[0], errSize), e); err != nil {
			return out, err
		}
		if c.model.IsEOG(int32(tok)) {
			break
		}
		out = append(out, int32(tok))
		if onToken != nil {
			onToken(int32(tok))
		}
		if len(out) == maxTokens {
			break
		}
		if err := c.Eval([]BatchEntry{{int32(tok), int32(pos), 0, true}}); err != nil {
			return out, err
		}
		if logits, err = c.logitsPtr(0); err != nil {
			return out, err
		}
	}
	return out, nil
}

// GenerateText tokenizes prompt (with BOS), generates, and streams text to
// onText (may be nil) without ever splitting a UTF-8 character.
func (c *Context) GenerateText(prompt string, maxTokens int, sp SamplerParams, onText func(string)) (string, error) {
	ids, err := c.model.Tokenize(prompt, true)
	if err != nil {
		return "", err
	}
	var all, pending []byte
	_, err = c.Generate(ids, maxTokens, sp, func(tok int32) {
		piece, perr := c.model.DetokenizeBytes([]int32{tok})
		if perr != nil {
			return
		}
		pending = append(pending, piece...)
		n := completeUTF8(pending)
		if n > 0 {
			if onText != nil {
				onText(string(pending[:n]))
			}
			all = append(all, pending[:n]...)
			pending = append([]byte(nil), pending[n:]...)
		}
	})
	all = append(all, pending...)
	if onText != nil && len(pending) > 0 {
		onText(string(pending))
	}
	return string(all), err
}

// completeUTF8 is the length of b's longest prefix that does not end inside
// a multi-byte character.
func completeUTF8(b []byte) int {
	for back := 1; back <= 3 && back <= len(b); back++ {
		c := b[len(b)-back]
		if c&0xC0 != 0x80 { // a start byte (or ASCII)
			if !utf8.FullRune(b[len(b)-back:]) {
				return len(b) - back
			}
			return len(b)
		}
	}
	return len(b)
}
