// Package chat holds one conversation's messages and the rule that turns
// them into the exact token counts the trainer sees.
package chat

// Message is one turn of a conversation as it appears in a dataset line.
// Weight is nil when the line does not give one; 0 means the trainer
// computes no loss on this (assistant) message, 1 that it does.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	Weight  *int   `json:"weight,omitempty"`
}

// Counter counts one conversation's tokens as the trainer renders it:
// total is every token of the rendered conversation, trained the tokens the
// trainer computes loss on.
type Counter interface {
	Count(msgs []Message) (total, trained int)
}
