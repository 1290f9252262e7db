package tokenizer

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/text/unicode/norm"

	"github.com/brightrun/brightrun/shared/tokenizer/tokreftest"
)

func pieces(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		j := nextPiece(s, i)
		out = append(out, s[i:j])
		i = j
	}
	return out
}

// The expectations were checked against Python tokenizers'
// pre_tokenizer.pre_tokenize_str.
func TestPreTokenizer(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"a space joins the word after it", "Hello world", []string{"Hello", " world"}},
		{"a run of spaces leaves its last space to the word", "   x", []string{"  ", " x"}},
		{"spaces before a digit stay single", "a  1", []string{"a", " ", " ", "1"}},
		{"one space joins punctuation and trailing newlines", "x  !!  ??\n", []string{"x", " ", " !!", " ", " ??\n"}},
		{"NEL is whitespace that joins the next word", "a\u0085b", []string{"a", "\u0085b"}},
		{"NEL after a space", "a \u0085b", []string{"a", " ", "\u0085b"}},
		{"contractions split, except after punctuation", "it's 'LLama", []string{"it", "'s", " '", "LLama"}},
		{"newlines take the spaces before them", "a\r\n\r\n  b", []string{"a", "\r\n\r\n", " ", " b"}},
		{"trailing spaces stay together at the end", "end   ", []string{"end", "   "}},
		{"a tab does not join punctuation", "\t!x", []string{"\t", "!x"}},
		{"NBSP is whitespace", " \u00a0x", []string{" ", "\u00a0x"}},
		{"BOM is not whitespace", "x\ufeff y", []string{"x", "\ufeff", " y"}},
		{"CJK without spaces is one piece", "日本語のテキスト", []string{"日本語のテキスト"}},
		{"an opening bracket joins the word", "(hello) [1,2]", []string{"(hello", ")", " [", "1", ",", "2", "]"}},
		{"a combining mark is not a letter", "a\u0301b", []string{"a", "\u0301b"}},
		{"long s counts as s in a contraction", "'ſa", []string{"'ſ", "a"}},
		{"punctuation takes the newlines after it", "<<x>>\n\n", []string{"<<", "x", ">>\n\n"}},
		{"digits split one by one", "2026", []string{"2", "0", "2", "6"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pieces(tt.in); !slices.Equal(got, tt.want) {
				t.Errorf("pieces(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	tok := mustQwen3(t)
	tests := []struct {
		name string
		in   string
		want []int
	}{
		{"empty text has no tokens", "", nil},
		{"plain words", "hello world", []int{14990, 1879}},
		{"a literal im_end in text is one token", "<|im_end|> hi it'LL", []int{151645, 15588, 432, 6, 4086}},
		{"long s contraction", "'ſa", []int{6, 144815, 64}},
		{"NEL and a word", "a\u0085b", []int{64, 126, 227, 65}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tok.Encode(tt.in); !slices.Equal(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Errorf("Encode(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if got := tok.Count(tt.in); got != len(tt.want) {
				t.Errorf("Count(%q) = %d, want %d", tt.in, got, len(tt.want))
			}
		})
	}
}

func TestQwen3(t *testing.T) {
	t.Run("is loaded once and shared", func(t *testing.T) {
		a, b := mustQwen3(t), mustQwen3(t)
		if a != b {
			t.Errorf("Qwen3() returned two tokenizers")
		}
	})
	t.Run("has the Qwen3 vocabulary size", func(t *testing.T) {
		if got := mustQwen3(t).VocabSize(); got != 151669 {
			t.Errorf("VocabSize() = %d, want 151669", got)
		}
	})
	t.Run("knows every added token", func(t *testing.T) {
		tok := mustQwen3(t)
		for _, tc := range []struct {
			content string
			id      int
		}{{"<|endoftext|>", 151643}, {"<|im_start|>", 151644}, {"<|im_end|>", 151645}, {"<think>", 151667}, {"</think>", 151668}} {
			if id, ok := tok.AddedTokenID(tc.content); !ok || id != tc.id {
				t.Errorf("AddedTokenID(%q) = %d, %v, want %d, true", tc.content, id, ok, tc.id)
			}
		}
		if id, ok := tok.AddedTokenID("hello"); ok {
			t.Errorf("AddedTokenID(%q) = %d, true, want false", "hello", id)
		}
	})
}

// TestEveryTokenEncodesToItself makes the whole-piece shortcut exact: BPE
// over the bytes of any vocabulary token ends at that token.
func TestEveryTokenEncodesToItself(t *testing.T) {
	tok := mustQwen3(t)
	bad := 0
	for id := 0; id < len(tok.tokStart)-1; id++ {
		b := tok.tokBytes[tok.tokStart[id]:tok.tokStart[id+1]]
		if got := tok.bpe(nil, b); len(got) != 1 || got[0] != uint32(id) {
			if bad++; bad <= 5 {
				t.Errorf("bpe(%q) = %v, want [%d]", b, got, id)
			}
		}
	}
	for _, a := range tok.added {
		if got := tok.Encode(a.content); !slices.Equal(got, []int{a.id}) {
			t.Errorf("Encode(%q) = %v, want [%d]", a.content, got, a.id)
		}
	}
}

func TestHeapMergeMatchesScan(t *testing.T) {
	tok := mustQwen3(t)
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"a", "b", "the", "ing", "tion", "日", "本", "語", "x", "é", "🙂", "  ", "ab"}
	for i := 0; i < 2000; i++ {
		var b strings.Builder
		for b.Len() < 1+r.IntN(maxScan) {
			b.WriteString(words[r.IntN(len(words))])
		}
		s := b.String()
		if len(s) > maxScan {
			s = s[:maxScan]
		}
		if scan, heap := tok.bpe(nil, s), tok.bpeHeap(nil, s); !slices.Equal(scan, heap) {
			t.Fatalf("bpeHeap(%q) = %v, want %v (bpe)", s, heap, scan)
		}
	}
}

func TestLongPiecesAreNotQuadratic(t *testing.T) {
	tok := mustQwen3(t)
	for _, s := range []string{strings.Repeat("a", 200_000), strings.Repeat("我们的", 60_000), strings.Repeat("xyzzy", 40_000)} {
		start := time.Now()
		n := tok.Count(s)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Count(%d bytes of %.6q…) took %v", len(s), s, d)
		}
		if n == 0 {
			t.Errorf("Count(%.6q…) = 0", s)
		}
	}
}

// nfcPerSegment is what Decode(Encode(s)) must give: s with each stretch
// between added tokens in NFC.
func nfcPerSegment(tok *Tokenizer, s string) string {
	var b strings.Builder
	for seg := range tok.segments(s) {
		if seg.added >= 0 {
			b.WriteString(seg.text)
		} else {
			b.WriteString(norm.NFC.String(seg.text))
		}
	}
	return b.String()
}

func checkConsistent(t *testing.T, tok *Tokenizer, s string) {
	t.Helper()
	ids := tok.Encode(s)
	if got := tok.Count(s); got != len(ids) {
		t.Errorf("Count(%q) = %d, want len(Encode) = %d", s, got, len(ids))
	}
	got, err := tok.Decode(ids)
	if err != nil {
		t.Fatalf("Decode(Encode(%q)) error: %v", s, err)
	}
	if want := nfcPerSegment(tok, s); got != want {
		t.Errorf("Decode(Encode(%q)) = %q, want %q", s, got, want)
	}
	toks := tok.Tokens(s)
	var tokIDs []int
	prevEnd := 0
	for _, tk := range toks {
		tokIDs = append(tokIDs, tk.ID)
		if tk.Start < 0 || tk.End > len(s) || tk.Start >= tk.End || tk.Start > prevEnd {
			t.Fatalf("Tokens(%q) has span [%d,%d) after one ending at %d", s, tk.Start, tk.End, prevEnd)
		}
		prevEnd = max(prevEnd, tk.End)
	}
	if prevEnd != len(s) {
		t.Errorf("Tokens(%q) spans end at %d, want %d", s, prevEnd, len(s))
	}
	if !slices.Equal(tokIDs, ids) {
		t.Errorf("Tokens(%q) ids = %v, want %v", s, tokIDs, ids)
	}
	// CountRegions agrees with the spans for every single cut.
	for cut := 0; cut <= len(s); cut += 1 + len(s)/17 {
		before := 0
		for _, tk := range toks {
			if tk.End <= cut {
				before++
			}
		}
		if got := tok.CountRegions(s, []int{cut}); got[0] != before || got[0]+got[1] != len(ids) {
			t.Errorf("CountRegions(%q, [%d]) = %v, want [%d %d]", s, cut, got, before, len(ids)-before)
		}
	}
}

func TestConsistency(t *testing.T) {
	tok := mustQwen3(t)
	root := tokreftest.Root(t)
	for _, c := range readJSONL[corpusCase](t, corpusPath(root, "corpus.jsonl")) {
		t.Run("corpus: "+c.Name, func(t *testing.T) { checkConsistent(t, tok, c.Text) })
	}
	for i, s := range trickyStrings(500, 2) {
		t.Run(fmt.Sprintf("random %d", i), func(t *testing.T) { checkConsistent(t, tok, s) })
	}
}

func TestTokensSpans(t *testing.T) {
	tok := mustQwen3(t)
	tests := []struct {
		name string
		in   string
		want []Token
	}{
		{"spans are byte offsets", "hi 日本", []Token{{6023, 0, 2}, {75402, 2, 6}, {21894, 6, 9}}},
		{"an added token spans its text", "a<|im_end|>", []Token{{64, 0, 1}, {151645, 1, 11}}},
		{"a composed character spans its decomposed bytes", "e\u0301!", []Token{{963, 0, 3}, {0, 3, 4}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tok.Tokens(tt.in); !slices.Equal(got, tt.want) {
				t.Errorf("Tokens(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestCountRegions(t *testing.T) {
	tok := mustQwen3(t)
	text := "<|im_start|>assistant\n\nHello there<|im_end|>\n"
	cs := strings.Index(text, "\nHello") // the content starts with a newline
	ce := strings.Index(text, "<|im_end|>")
	// "<|im_start|>" "assistant" "\n\n" "Hello" " there" "<|im_end|>" "\n"
	got := tok.CountRegions(text, []int{cs, ce})
	if want := []int{2, 3, 2}; !slices.Equal(got, want) {
		t.Errorf("CountRegions(%q, [%d %d]) = %v, want %v", text, cs, ce, got, want)
	}
}

func TestDecodeRejectsUnknownIDs(t *testing.T) {
	tok := mustQwen3(t)
	for _, id := range []int{-1, 151669, 1 << 30} {
		if _, err := tok.Decode([]int{id}); err == nil {
			t.Errorf("Decode([%d]) error = nil, want an error", id)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	tok := mustQwen3(t)
	texts := trickyStrings(200, 3)
	want := make([]int, len(texts))
	for i, s := range texts {
		want[i] = len(tok.Encode(s))
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i, s := range texts {
				if got := tok.Count(s); got != want[i] {
					t.Errorf("Count(%q) = %d concurrently, want %d", s, got, want[i])
				}
			}
		})
	}
	wg.Wait()
}
