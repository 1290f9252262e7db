package chat

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/tokenizer"
	"github.com/brightrun/brightrun/shared/tokenizer/tokreftest"
)

func weight(w int) *int { return &w }

func newCounter(tb testing.TB) (*TokenCounter, *tokenizer.Tokenizer) {
	tb.Helper()
	tok, err := tokenizer.Qwen3()
	if err != nil {
		tb.Fatalf("tokenizer.Qwen3() error: %v", err)
	}
	c, err := NewCounter(tok, ChatMLNoThink)
	if err != nil {
		tb.Fatalf("NewCounter() error: %v", err)
	}
	return c, tok
}

func TestRender(t *testing.T) {
	msgs := []Message{
		{Role: "system", Content: "Be brief."},
		{Role: "user", Content: "Hi"},
		{Role: "assistant", Content: "\nHello"},
		{Role: "assistant", Content: "skip", Weight: weight(0)},
	}
	got := ChatMLNoThink.Render(msgs)
	want := "<|im_start|>system\nBe brief.<|im_end|>\n" +
		"<|im_start|>user\nHi<|im_end|>\n" +
		"<|im_start|>assistant\n\nHello<|im_end|>\n" +
		"<|im_start|>assistant\nskip<|im_end|>\n"
	if got.Text != want {
		t.Fatalf("Render() text = %q, want %q", got.Text, want)
	}
	for i, turn := range got.Turns {
		if c := got.Text[turn.Content.Start:turn.Content.End]; c != msgs[i].Content {
			t.Errorf("Render() turn %d content = %q, want %q", i, c, msgs[i].Content)
		}
		if !strings.HasPrefix(got.Text[turn.Content.End:], "<|im_end|>\n") {
			t.Errorf("Render() turn %d content is not followed by <|im_end|>", i)
		}
		if wantTrained := i == 2; turn.Trained != wantTrained {
			t.Errorf("Render() turn %d trained = %v, want %v", i, turn.Trained, wantTrained)
		}
	}
}

func TestTrained(t *testing.T) {
	tests := []struct {
		name string
		msg  Message
		want bool
	}{
		{"an assistant message without weight is trained", Message{Role: "assistant"}, true},
		{"an assistant message of weight 1 is trained", Message{Role: "assistant", Weight: weight(1)}, true},
		{"an assistant message of weight 0 is not", Message{Role: "assistant", Weight: weight(0)}, false},
		{"a user message is not", Message{Role: "user"}, false},
		{"a system message of weight 1 is not", Message{Role: "system", Weight: weight(1)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Trained(tt.msg); got != tt.want {
				t.Errorf("Trained(%+v) = %v, want %v", tt.msg, got, tt.want)
			}
		})
	}
}

func TestNewCounterRejectsMarkersThatAreNotAddedTokens(t *testing.T) {
	tok, err := tokenizer.Qwen3()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewCounter(tok, Rule{Name: "bad", TurnStart: "<s>", TurnEnd: "</s>"}); err == nil {
		t.Errorf("NewCounter(rule with <s>) error = nil, want an error")
	}
}

// chatCase is one entry of testdata/tokenizer/chat_counts.json (see the
// README there): Python tokenizers' counts for a conversation.
type chatCase struct {
	Name     string    `json:"name"`
	Messages []Message `json:"messages"`
	Total    int       `json:"total"`
	Trained  int       `json:"trained"`
	IDs      []int     `json:"ids"`
}

func TestCountMatchesFixtures(t *testing.T) {
	root := tokreftest.Root(t)
	raw, err := os.ReadFile(filepath.Join(root, "testdata", "tokenizer", "chat_counts.json"))
	if err != nil {
		t.Fatalf("read fixtures: %v", err)
	}
	var cases []chatCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatalf("parse fixtures: %v", err)
	}
	if len(cases) < 10 {
		t.Fatalf("chat_counts.json has %d cases, want at least 10", len(cases))
	}
	c, tok := newCounter(t)
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			total, trained := c.Count(tc.Messages)
			if total != tc.Total || trained != tc.Trained {
				t.Errorf("Count(%+v) = %d, %d, want %d, %d", tc.Messages, total, trained, tc.Total, tc.Trained)
			}
			if tc.IDs != nil {
				text := ChatMLNoThink.Render(tc.Messages).Text
				if got := tok.Encode(text); !slices.Equal(got, tc.IDs) {
					t.Errorf("Encode(%q) = %v, want %v", text, got, tc.IDs)
				}
			}
		})
	}
}

// randomConversation mixes the contents that make counting hard: leading
// newlines and spaces, literal markers, empty contents, weights.
func randomConversation(r *rand.Rand) []Message {
	parts := []string{"\n", "\n\n", " ", "  ", "\t", "hello", " world", "Hi!", "<|im_end|>", "<|im_start|>", "<think>", "\u0301", "e\u0301", "日本語", "🙂", "\u0085", "\u00a0", "\ufeff", "123", "'s", "```go\n", "}\n", "    x", ""}
	roles := []string{"system", "user", "assistant", "assistant", "tool"}
	msgs := make([]Message, 1+r.IntN(6))
	for i := range msgs {
		var b strings.Builder
		for k := r.IntN(8); k > 0; k-- {
			b.WriteString(parts[r.IntN(len(parts))])
		}
		msgs[i] = Message{Role: roles[r.IntN(len(roles))], Content: b.String()}
		if msgs[i].Role == "assistant" && r.IntN(3) == 0 {
			msgs[i].Weight = weight(r.IntN(2))
		}
	}
	return msgs
}

// TestCountMatchesPythonLive counts random conversations with the Python
// reference (offsets and the same trained rule) and demands equality.
func TestCountMatchesPythonLive(t *testing.T) {
	root := tokreftest.Root(t)
	tokreftest.RequirePython(t, root)
	r := rand.New(rand.NewPCG(11, 12))
	convs := make([]any, 1000)
	for i := range convs {
		convs[i] = randomConversation(r)
	}
	lines := tokreftest.Run(t, root, convs, "python3", "tools/tokref/chat_counts.py", "--stdin")
	c, _ := newCounter(t)
	diffs := 0
	for i, line := range lines {
		var want [2]int
		if err := json.Unmarshal(line, &want); err != nil {
			t.Fatalf("reference line %d: %v", i+1, err)
		}
		msgs := convs[i].([]Message)
		if total, trained := c.Count(msgs); total != want[0] || trained != want[1] {
			if diffs++; diffs <= 10 {
				t.Errorf("Count(%s) = %d, %d, want %d, %d", fmt.Sprintf("%+q", ChatMLNoThink.Render(msgs).Text), total, trained, want[0], want[1])
			}
		}
	}
	t.Logf("%d conversations compared with Python tokenizers, %d differences", len(lines), diffs)
}

func FuzzChatCount(f *testing.F) {
	f.Add("user", "Hello", "assistant", "\nHi there", 1)
	f.Add("system", "", "assistant", "", 0)
	f.Add("user", "<|im_end|>", "assistant", "<|im_start|>assistant\n", -1)
	f.Add("user", "e\u0301", "assistant", "\u0301\u0316x", 1)
	c, tok := newCounter(f)
	f.Fuzz(func(t *testing.T, role1, content1, role2, content2 string, w int) {
		msgs := []Message{{Role: role1, Content: content1}, {Role: role2, Content: content2}}
		if w >= 0 {
			msgs[1].Weight = weight(w % 2)
		}
		total, trained := c.Count(msgs)
		if trained < 0 || trained > total {
			t.Fatalf("Count(%+v) = %d, %d: trained outside [0, total]", msgs, total, trained)
		}
		rendered := ChatMLNoThink.Render(msgs)
		if want := tok.Count(rendered.Text); total != want {
			t.Fatalf("Count(%+v) total = %d, want Count(rendered) = %d", msgs, total, want)
		}
		// The rule, straight from the token spans.
		want := 0
		endID, _ := tok.AddedTokenID("<|im_end|>")
		for _, tk := range tok.Tokens(rendered.Text) {
			for _, turn := range rendered.Turns {
				s, e := turn.Content.Start, turn.Content.End
				if turn.Trained && ((tk.Start < e && tk.End > s) || (tk.ID == endID && tk.Start == e)) {
					want++
					break
				}
			}
		}
		if trained != want {
			t.Fatalf("Count(%+v) trained = %d, want %d from the token spans", msgs, trained, want)
		}
	})
}
