package dataset

import (
	"bytes"
	"context"
	"runtime"
	"testing"

	"github.com/brightrun/brightrun/shared/chat"
	"github.com/brightrun/brightrun/shared/tokenizer"
)

// BenchmarkValidateAtPipeline is BenchmarkValidatePipeline through
// ValidateAt on GOMAXPROCS cores: run it with -cpu 1,2 for the speed-up
// from one core to two (MB/s divided by the -cpu figure is MB/s per
// core).
func BenchmarkValidateAtPipeline(b *testing.B) {
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
		r, err := ValidateAt(context.Background(), bytes.NewReader(data), int64(len(data)), c, Options{}, runtime.GOMAXPROCS(0))
		if err != nil || !r.Valid {
			b.Fatalf("ValidateAt(synthetic) = valid %v, error %v; want valid", r != nil && r.Valid, err)
		}
	}
}

// BenchmarkValidateAt is BenchmarkValidate (no token counting) through
// ValidateAt on GOMAXPROCS cores.
func BenchmarkValidateAt(b *testing.B) {
	data := benchData(b)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		r, err := ValidateAt(context.Background(), bytes.NewReader(data), int64(len(data)), noopCounter, Options{}, runtime.GOMAXPROCS(0))
		if err != nil || !r.Valid {
			b.Fatalf("ValidateAt(synthetic) = valid %v, error %v; want valid", r != nil && r.Valid, err)
		}
	}
}
