package tokenizer

import (
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/tokenizer/tokreftest"
)

// benchChats returns the conversations of testdata/tokenizer/bench_chat.jsonl
// rendered as ChatML, as the trainer sees them.
func benchChats(b *testing.B) []string {
	b.Helper()
	type message struct{ Role, Content string }
	type line struct{ Messages []message }
	root := tokreftest.Root(b)
	var texts []string
	for _, l := range readJSONL[line](b, corpusPath(root, "bench_chat.jsonl")) {
		var s strings.Builder
		for _, m := range l.Messages {
			s.WriteString("<|im_start|>" + m.Role + "\n" + m.Content + "<|im_end|>\n")
		}
		texts = append(texts, s.String())
	}
	return texts
}

func benchTexts(b *testing.B, texts []string, f func(string)) {
	n := 0
	for _, s := range texts {
		n += len(s)
	}
	b.SetBytes(int64(n))
	b.ResetTimer()
	for b.Loop() {
		for _, s := range texts {
			f(s)
		}
	}
}

// BenchmarkCount counts realistic English chat text (with code) rendered
// as ChatML; the MB/s column is the figure to compare.
func BenchmarkCount(b *testing.B) {
	tok := mustQwen3(b)
	benchTexts(b, benchChats(b), func(s string) { tok.Count(s) })
}

func BenchmarkEncode(b *testing.B) {
	tok := mustQwen3(b)
	benchTexts(b, benchChats(b), func(s string) { tok.Encode(s) })
}

func BenchmarkCountCorpus(b *testing.B) {
	tok := mustQwen3(b)
	var texts []string
	for _, c := range readJSONL[corpusCase](b, corpusPath(tokreftest.Root(b), "corpus.jsonl")) {
		texts = append(texts, c.Text)
	}
	benchTexts(b, texts, func(s string) { tok.Count(s) })
}

func BenchmarkLoad(b *testing.B) {
	for b.Loop() {
		if _, err := load(qwen3BPE, qwen3Added); err != nil {
			b.Fatal(err)
		}
	}
}
