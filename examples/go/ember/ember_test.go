package ember

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func testdata(t *testing.T, rel string) string {
	dir := os.Getenv("EMBER_TESTDATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "..", "shared", "testdata")
	}
	p := filepath.Join(dir, rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s not found", p)
	}
	return p
}

type tinyRef struct {
	Prompt []int32 `json:"prompt"`
	Greedy []int32 `json:"greedy"`
}

type dreamsRef struct {
	Cases []struct {
		PromptText string  `json:"prompt_text"`
		Prompt     []int32 `json:"prompt"`
		Greedy     []int32 `json:"greedy"`
		GreedyText string  `json:"greedy_text"`
	} `json:"cases"`
}

func readJSON(t *testing.T, path string, v interface{}) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func greedy() SamplerParams {
	p := DefaultSampler()
	p.Temperature = 0
	return p
}

func TestTinyLlamaGreedy(t *testing.T) {
	var ref tinyRef
	readJSON(t, testdata(t, "models/tiny-llama/reference.json"), &ref)
	m, err := LoadFile(testdata(t, "models/tiny-llama/model-f16.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := NewContext(m, ContextParams{NCtx: 64, NBatch: 32})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ids, err := c.Generate(ref.Prompt, len(ref.Greedy), greedy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ids, ref.Greedy) {
		t.Fatalf("greedy ids %v, want %v", ids, ref.Greedy)
	}
}

func TestAidreamsText(t *testing.T) {
	var ref dreamsRef
	readJSON(t, testdata(t, "models/aidreams-260k/reference.json"), &ref)
	m, err := LoadFile(testdata(t, "models/aidreams-260k/model-f32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := NewContext(m, ContextParams{NCtx: 128})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, cs := range ref.Cases {
		ids, err := m.Tokenize(cs.PromptText, true)
		if err != nil || !reflect.DeepEqual(ids, cs.Prompt) {
			t.Fatalf("tokenize %q: %v %v, want %v", cs.PromptText, ids, err, cs.Prompt)
		}
		var streamed strings.Builder
		text, err := c.GenerateText(cs.PromptText, len(cs.Greedy), greedy(), func(s string) { streamed.WriteString(s) })
		if err != nil {
			t.Fatal(err)
		}
		if text != cs.GreedyText || streamed.String() != text {
			t.Fatalf("text %q (streamed %q), want %q", text, streamed.String(), cs.GreedyText)
		}
	}
}

func TestMalformedFile(t *testing.T) {
	raw, err := os.ReadFile(testdata(t, "models/aidreams-260k/model-f32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = LoadMemory(raw[:300])
	if !errors.Is(err, ErrFormat) {
		t.Fatalf("truncated file: %v, want a format error", err)
	}
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(e.Message, "gguf") {
		t.Fatalf("message %v does not name the problem", err)
	}
	if _, err := LoadFile("/nonexistent/model.gguf"); !errors.Is(err, ErrIO) ||
		!strings.Contains(err.Error(), "/nonexistent/model.gguf") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestEvalErrors(t *testing.T) {
	m, err := LoadFile(testdata(t, "models/aidreams-260k/model-f32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := NewContext(m, ContextParams{NCtx: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Eval([]BatchEntry{{Token: int32(m.NVocab()), Pos: 0, WantLogits: true}}); !errors.Is(err, ErrBadToken) {
		t.Fatalf("bad token: %v", err)
	}
	if err := c.Eval([]BatchEntry{{Token: 1, Pos: 16, WantLogits: true}}); !errors.Is(err, ErrContextFull) {
		t.Fatalf("past n_ctx: %v", err)
	}
	if err := c.Eval([]BatchEntry{{Token: 1, Pos: 0, WantLogits: true}}); err != nil {
		t.Fatal(err)
	}
	if l, err := c.Logits(0); err != nil || len(l) != m.NVocab() {
		t.Fatalf("logits: %d %v", len(l), err)
	}
}

func rssKiB(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skip("no /proc")
	}
	pages, _ := strconv.Atoi(strings.Fields(string(b))[1])
	return pages * os.Getpagesize() / 1024
}

func TestNoLeak1000Cycles(t *testing.T) {
	// cgo calls from varying OS threads make glibc grow one malloc arena
	// per thread, which is not ember's memory: measure from one thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	raw, err := os.ReadFile(testdata(t, "models/aidreams-260k/model-f32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	cycle := func() {
		m, err := LoadMemory(raw)
		if err != nil {
			t.Fatal(err)
		}
		c, err := NewContext(m, ContextParams{NCtx: 32, NBatch: 8, NThreads: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Eval([]BatchEntry{{1, 0, 0, true}}); err != nil {
			t.Fatal(err)
		}
		c.Close()
		m.Close()
	}
	for i := 0; i < 50; i++ {
		cycle()
	}
	runtime.GC()
	before := rssKiB(t)
	for i := 0; i < 1000; i++ {
		cycle()
	}
	runtime.GC()
	if grown := rssKiB(t) - before; grown > 8192 {
		t.Fatalf("RSS grew by %d KiB over 1000 cycles", grown)
	}
}

// Four goroutines, one shared model, a context each: the same ids as one.
func TestGoroutinesShareModel(t *testing.T) {
	var ref tinyRef
	readJSON(t, testdata(t, "models/tiny-llama/reference.json"), &ref)
	m, err := LoadFile(testdata(t, "models/tiny-llama/model-f16.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	run := func() ([]int32, error) {
		c, err := NewContext(m, ContextParams{NCtx: 64, NThreads: 1})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		sp := DefaultSampler()
		sp.Seed = 7
		return c.Generate(ref.Prompt, 12, sp, nil)
	}
	alone, err := run()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make([][]int32, 4)
	errs := make([]error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			results[g], errs[g] = run()
			if errs[g] == nil {
				_, errs[g] = m.Tokenize("concurrent tokenizer call", true)
			}
		}(g)
	}
	wg.Wait()
	for g := 0; g < 4; g++ {
		if errs[g] != nil || !reflect.DeepEqual(results[g], alone) {
			t.Fatalf("goroutine %d: %v %v, alone %v", g, results[g], errs[g], alone)
		}
	}
}

func TestVocabOnly(t *testing.T) {
	m, err := LoadVocab(testdata(t, "vocab/ggml-vocab-phi-3.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ids, err := m.Tokenize(" Hello world", false)
	if err != nil || len(ids) == 0 {
		t.Fatal(ids, err)
	}
	if _, err := NewContext(m, ContextParams{}); err == nil {
		t.Fatal("a vocab-only model made a context")
	}
	m.Close()
	if _, err := m.Tokenize("x", false); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed model: %v", err)
	}
}

func TestKVBlockSize(t *testing.T) {
	m, err := LoadFile(testdata(t, "models/tiny-llama/model-f16.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := NewContext(m, ContextParams{NCtx: 64, KVBlockSize: 12}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("block size 12: %v", err)
	}
	c, err := NewContext(m, ContextParams{NCtx: 64, NBatch: 64, KVBlockSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	batch := make([]BatchEntry, 41)
	for i := range batch {
		batch[i] = BatchEntry{Token: int32((7*i+3)%1000 + 1), Pos: int32(i)}
	}
	if err := c.Eval(batch); err != nil {
		t.Fatal(err)
	}
	if info, _ := c.KVInfo(); info.BlockPositions != 8 || info.BlocksUsed != 6 {
		t.Fatalf("block size 8: %+v", info)
	}
}

func TestSequencesForkReusePool(t *testing.T) {
	m, err := LoadFile(testdata(t, "models/tiny-llama/model-f16.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := NewContext(m, ContextParams{NCtx: 64, NBatch: 64, NSeqMax: 3, KVBlocks: 6})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ids := make([]int32, 40)
	batch := make([]BatchEntry, 40)
	for i := range ids {
		ids[i] = int32((7*i+3)%1000 + 1)
		batch[i] = BatchEntry{Token: ids[i], Pos: int32(i), SeqID: 0, WantLogits: true}
	}
	if err := c.Eval(batch); err != nil {
		t.Fatal(err)
	}
	want, _ := c.Logits(39)
	if err := c.Fork(0, 1); err != nil {
		t.Fatal(err)
	}
	if info, _ := c.KVInfo(); info.BlocksShared != 3 || info.BlocksTotal != 6 {
		t.Fatalf("after fork: %+v", info)
	}
	if err := c.Truncate(1, 20); err != nil {
		t.Fatal(err)
	}
	n, err := c.ReusePrefix(2, ids)
	if err != nil || n != 32 {
		t.Fatalf("reuse: %d %v", n, err)
	}
	before, _ := c.KVInfo()
	tail := make([]BatchEntry, 0, 8)
	for i := 32; i < 40; i++ {
		tail = append(tail, BatchEntry{Token: ids[i], Pos: int32(i), SeqID: 2, WantLogits: true})
	}
	if err := c.Eval(tail); err != nil {
		t.Fatal(err)
	}
	got, _ := c.Logits(7)
	for i := range got {
		if d := got[i] - want[i]; d > 1e-4 || d < -1e-4 {
			t.Fatalf("logit %d: %g, want %g", i, got[i], want[i])
		}
	}
	after, _ := c.KVInfo()
	if after.PositionsWritten-before.PositionsWritten != 8 || after.PositionsReused != 32 {
		t.Fatalf("counters: %+v", after)
	}
	// 2 blocks free, sequence 1 would need 3 (one a copy of a shared block)
	big := make([]BatchEntry, 0, 44)
	for i := 20; i < 64; i++ {
		big = append(big, BatchEntry{Token: 1, Pos: int32(i), SeqID: 1})
	}
	if err := c.Eval(big); !errors.Is(err, ErrKVFull) {
		t.Fatalf("want KV full, got %v", err)
	}
}
