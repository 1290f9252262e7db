package dataset

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"

	"github.com/brightrun/brightrun/shared/chat"
	"github.com/brightrun/brightrun/shared/tokenizer"
)

// benchData is 32 MiB of synthetic dataset, made once.
var benchData = func() func(tb testing.TB) []byte {
	var data []byte
	return func(tb testing.TB) []byte {
		tb.Helper()
		if data == nil {
			var buf bytes.Buffer
			if err := WriteSynthetic(&buf, 32<<20, 1, 0); err != nil {
				tb.Fatalf("WriteSynthetic: %v", err)
			}
			data = buf.Bytes()
		}
		return data
	}
}()

// BenchmarkValidate times parsing and checking alone: the counter does
// nothing, so the MB/s is the validator's share of the pipeline.
func BenchmarkValidate(b *testing.B) {
	data := benchData(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := Validate(context.Background(), bytes.NewReader(data), noopCounter, Options{})
		if err != nil || !r.Valid {
			b.Fatalf("Validate(synthetic) = valid %v, error %v; want valid", r != nil && r.Valid, err)
		}
	}
}

// BenchmarkValidatePipeline times the whole pipeline with the real Qwen3
// counter: the validator's share is what BenchmarkValidate leaves over.
func BenchmarkValidatePipeline(b *testing.B) {
	tok, err := tokenizer.Qwen3()
	if err != nil {
		b.Fatalf("tokenizer.Qwen3: %v", err)
	}
	c, err := chat.NewCounter(tok, chat.ChatMLNoThink)
	if err != nil {
		b.Fatalf("chat.NewCounter: %v", err)
	}
	data := benchData(b)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		r, err := Validate(context.Background(), bytes.NewReader(data), c, Options{})
		if err != nil || !r.Valid {
			b.Fatalf("Validate(synthetic) = valid %v, error %v; want valid", r != nil && r.Valid, err)
		}
	}
}

// BenchmarkValidateErrors times a dataset with an error on every tenth
// line.
func BenchmarkValidateErrors(b *testing.B) {
	var buf bytes.Buffer
	if err := WriteSynthetic(&buf, 32<<20, 2, 10); err != nil {
		b.Fatalf("WriteSynthetic: %v", err)
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Validate(context.Background(), bytes.NewReader(data), noopCounter, Options{}); err != nil {
			b.Fatalf("Validate(synthetic) error: %v", err)
		}
	}
}

// BenchmarkUnmarshalBaseline decodes the same lines with json.Unmarshal
// into chat messages, doing no check: what encoding/json alone costs, for
// comparison with BenchmarkValidate.
func BenchmarkUnmarshalBaseline(b *testing.B) {
	data := benchData(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		rest := data
		for len(rest) > 0 {
			i := bytes.IndexByte(rest, '\n')
			line := rest[:i]
			rest = rest[i+1:]
			var ex struct {
				Messages []chat.Message `json:"messages"`
			}
			if err := json.Unmarshal(line, &ex); err != nil {
				b.Fatalf("json.Unmarshal: %v", err)
			}
		}
	}
}

// BenchmarkWriteSynthetic times the generator the CLI benchmarks use.
func BenchmarkWriteSynthetic(b *testing.B) {
	const size = 8 << 20
	b.SetBytes(size)
	for b.Loop() {
		if err := WriteSynthetic(io.Discard, size, 1, 0); err != nil {
			b.Fatalf("WriteSynthetic: %v", err)
		}
	}
}
