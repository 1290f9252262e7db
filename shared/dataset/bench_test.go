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

// shareGPTBenchData is benchData's conversations as ShareGPT lines, made
// once.
var shareGPTBenchData = func() func(tb testing.TB) []byte {
	var data []byte
	return func(tb testing.TB) []byte {
		tb.Helper()
		if data == nil {
			from := map[string]string{"system": "system", "user": "human", "assistant": "gpt"}
			var buf bytes.Buffer
			for line := range bytes.Lines(benchData(tb)) {
				var ex struct {
					Messages []chat.Message `json:"messages"`
				}
				if err := json.Unmarshal(line, &ex); err != nil {
					tb.Fatalf("json.Unmarshal: %v", err)
				}
				turns := make([]map[string]any, len(ex.Messages))
				for i, m := range ex.Messages {
					turns[i] = map[string]any{"from": from[m.Role], "value": m.Content}
					if m.Weight != nil {
						turns[i]["weight"] = *m.Weight
					}
				}
				out, _ := json.Marshal(map[string]any{"conversations": turns})
				buf.Write(append(out, '\n'))
			}
			data = buf.Bytes()
		}
		return data
	}
}()

// BenchmarkValidateShareGPT times BenchmarkValidate's conversations read
// as ShareGPT and converted in the same pass (the conversion written to
// io.Discard, as the first of ingest's two passes hashes it).
func BenchmarkValidateShareGPT(b *testing.B) {
	data := shareGPTBenchData(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := Validate(context.Background(), bytes.NewReader(data), noopCounter, Options{Format: FormatShareGPT, Converted: io.Discard})
		if err != nil || !r.Valid {
			b.Fatalf("Validate(synthetic, sharegpt) = valid %v, error %v; want valid", r != nil && r.Valid, err)
		}
	}
}
