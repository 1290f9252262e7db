package dataset

import (
	"context"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/chat"
)

// fakeCounter is a chat.Counter whose behaviour each test picks.
type fakeCounter struct {
	count func(msgs []chat.Message) (total, trained int)
}

func (f fakeCounter) Count(msgs []chat.Message) (total, trained int) { return f.count(msgs) }

// byteCounter counts a token per 4 bytes of content, plus 4 per message;
// trained counts the assistant messages with no weight or weight 1.
var byteCounter = fakeCounter{count: func(msgs []chat.Message) (total, trained int) {
	for _, m := range msgs {
		n := 4 + len(m.Content)/4
		total += n
		if m.Role == "assistant" && (m.Weight == nil || *m.Weight == 1) {
			trained += n
		}
	}
	return total, trained
}}

// noopCounter counts nothing, to time the validator alone.
var noopCounter = fakeCounter{count: func([]chat.Message) (int, int) { return 0, 0 }}

// validate runs Validate on s and fails the test on an error.
func validate(t testing.TB, s string, opts Options) *Report {
	t.Helper()
	r, err := Validate(context.Background(), strings.NewReader(s), byteCounter, opts)
	if err != nil {
		t.Fatalf("Validate(%q) error: %v", abbreviate(s), err)
	}
	return r
}

// abbreviate shortens s for a failure message.
func abbreviate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// goodLine is a valid example; goodLines(n) is n distinct ones.
const goodLine = `{"messages": [{"role": "user", "content": "Where is my order?"}, {"role": "assistant", "content": "It ships tomorrow."}]}`

func goodLines(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(`{"messages": [{"role": "user", "content": "Where is order `)
		b.WriteString(strings.Repeat("x", i))
		b.WriteString(`?"}, {"role": "assistant", "content": "It ships tomorrow."}]}` + "\n")
	}
	return b.String()
}
