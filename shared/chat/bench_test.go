package chat

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/brightrun/brightrun/shared/tokenizer/tokreftest"
)

// BenchmarkCount counts realistic English chat conversations, total and
// trained; MB/s is over the rendered text.
func BenchmarkCount(b *testing.B) {
	f, err := os.Open(filepath.Join(tokreftest.Root(b), "testdata", "tokenizer", "bench_chat.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var convs [][]Message
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct{ Messages []Message }
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			b.Fatal(err)
		}
		convs = append(convs, line.Messages)
		n += len(ChatMLNoThink.Render(line.Messages).Text)
	}
	c, _ := newCounter(b)
	b.SetBytes(int64(n))
	b.ResetTimer()
	for b.Loop() {
		for _, msgs := range convs {
			c.Count(msgs)
		}
	}
}
