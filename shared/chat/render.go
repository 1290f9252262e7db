package chat

import (
	"fmt"
	"strings"

	"github.com/brightrun/brightrun/shared/tokenizer"
)

// Rule is how a model family renders a conversation into the text its
// trainer tokenizes. Each message renders as
//
//	TurnStart + role + "\n" + content + TurnEnd + "\n"
//
// with no default system prompt and no think block. TurnStart and TurnEnd
// must each be one added token of the tokenizer (NewCounter checks), so
// that tokenization never merges across them.
type Rule struct {
	Name      string // stable identifier, e.g. for a registry of model families
	TurnStart string
	TurnEnd   string
}

// ChatMLNoThink is Qwen3-Next Instruct's (non-thinking) ChatML:
// "<|im_start|>{role}\n{content}<|im_end|>\n" per message.
var ChatMLNoThink = Rule{Name: "chatml-no-think", TurnStart: "<|im_start|>", TurnEnd: "<|im_end|>"}

// Span is a byte range [Start, End) of a rendered text.
type Span struct {
	Start, End int
}

// Turn is where one message landed in a rendered text.
type Turn struct {
	Role    string
	Content Span // the message's content; its TurnEnd starts at Content.End
	// Trained reports whether the trainer computes loss on this message:
	// an assistant message whose Weight is nil or 1.
	Trained bool
}

// Rendered is a conversation rendered by a Rule.
type Rendered struct {
	Text  string
	Turns []Turn // one per message, in order
}

// Trained reports whether the trainer computes loss on m.
func Trained(m Message) bool {
	return m.Role == "assistant" && (m.Weight == nil || *m.Weight == 1)
}

// Render renders msgs by the rule.
func (r Rule) Render(msgs []Message) Rendered {
	n := 0
	for _, m := range msgs {
		n += len(r.TurnStart) + len(m.Role) + 1 + len(m.Content) + len(r.TurnEnd) + 1
	}
	var b strings.Builder
	b.Grow(n)
	turns := make([]Turn, len(msgs))
	for i, m := range msgs {
		b.WriteString(r.TurnStart)
		b.WriteString(m.Role)
		b.WriteByte('\n')
		start := b.Len()
		b.WriteString(m.Content)
		turns[i] = Turn{Role: m.Role, Content: Span{start, b.Len()}, Trained: Trained(m)}
		b.WriteString(r.TurnEnd)
		b.WriteByte('\n')
	}
	return Rendered{Text: b.String(), Turns: turns}
}

// TokenCounter counts conversations rendered by a Rule with a tokenizer.
// It is safe for concurrent use.
type TokenCounter struct {
	tok  *tokenizer.Tokenizer
	rule Rule
}

var _ Counter = (*TokenCounter)(nil)

// NewCounter returns a Counter for conversations rendered by rule and
// tokenized by tok, e.g. NewCounter(tok, ChatMLNoThink) for Qwen3-Next.
func NewCounter(tok *tokenizer.Tokenizer, rule Rule) (*TokenCounter, error) {
	for _, marker := range []string{rule.TurnStart, rule.TurnEnd} {
		if _, ok := tok.AddedTokenID(marker); !ok {
			return nil, fmt.Errorf("chat: rule %q: marker %q is not an added token of the tokenizer", rule.Name, marker)
		}
	}
	return &TokenCounter{tok: tok, rule: rule}, nil
}

// Count renders msgs and counts the rendered text's tokens.
//
// The trained-token rule (the Python trainer implements the same one): a
// token is trained when its byte span overlaps the content span of a
// trained message (Trained: an assistant message with Weight nil or 1),
// and so is the TurnEnd token that closes that content. Nothing else is:
// not the header "<|im_start|>assistant\n", not the "\n" after the closing
// "<|im_end|>". A token that straddles the header and the content, such as
// the "\n\n" made of the header's newline and a content that starts with a
// newline, overlaps the content and is trained. An empty content trains its
// closing token only.
//
// The counting takes one pass over the rendered text: with cuts at each
// trained content's start s and end e, the tokens ending in (s, e] are
// exactly those overlapping [s, e), since e is followed by the TurnEnd
// added token, which no token crosses.
func (c *TokenCounter) Count(msgs []Message) (total, trained int) {
	r := c.rule.Render(msgs)
	var cuts []int
	for _, t := range r.Turns {
		if t.Trained {
			cuts = append(cuts, t.Content.Start, t.Content.End)
		}
	}
	counts := c.tok.CountRegions(r.Text, cuts)
	for i, n := range counts {
		total += n
		if i%2 == 1 { // between a trained content's start and end
			trained += n
		}
	}
	return total, trained + len(cuts)/2 // plus each closing TurnEnd
}

// Qwen3Counter counts tokens as the default base model's trainer does:
// Qwen3's tokenizer over Qwen3-Next's non-thinking ChatML.
func Qwen3Counter() (Counter, error) {
	tok, err := tokenizer.Qwen3()
	if err != nil {
		return nil, fmt.Errorf("load the Qwen3 tokenizer: %w", err)
	}
	return NewCounter(tok, ChatMLNoThink)
}
