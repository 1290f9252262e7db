package dataset_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/brightrun/brightrun/shared/chat"
	"github.com/brightrun/brightrun/shared/dataset"
)

// wordCounter stands in for a real tokenizer: one token per word.
type wordCounter struct{}

func (wordCounter) Count(msgs []chat.Message) (total, trained int) {
	for _, m := range msgs {
		n := len(strings.Fields(m.Content))
		total += n
		if m.Role == "assistant" && (m.Weight == nil || *m.Weight == 1) {
			trained += n
		}
	}
	return total, trained
}

func ExampleValidate() {
	data := `{"messages": [{"role": "user", "content": "Where is my order?"}, {"role": "assistant", "content": "It ships today."}]}
{"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "Hello!"}]}
`
	r, err := dataset.Validate(context.Background(), strings.NewReader(data), wordCounter{}, dataset.Options{})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Printf("valid %v, %d examples of %d lines, %d tokens (%d trained)\n", r.Valid, r.Examples, r.Lines, r.Tokens.Total, r.Tokens.Trained)
	for _, is := range r.Issues {
		fmt.Printf("line %d: %s: %s\n", is.Line, is.Code, is.Message)
	}
	// Output:
	// valid false, 1 examples of 2 lines, 7 tokens (3 trained)
	// line 0: too_few_examples: file has 1 valid example: at least 10 are needed
	// line 2: invalid_role: messages[1].role is "bot": must be system, user or assistant
	// line 2: missing_assistant: conversation has no assistant message
}
