package dataset

import (
	"fmt"
	"strconv"

	"github.com/brightrun/brightrun/shared/chat"
)

// Format is the shape of a dataset's lines. Every format is converted, line
// by line, to the messages form the trainer reads, and checked and counted
// as that conversation.
type Format string

// The formats.
const (
	// FormatMessages is the trainer's own form:
	// {"messages": [{"role": "user", "content": "..."}, ...]}.
	FormatMessages Format = "messages"
	// FormatShareGPT is {"conversations": [{"from": "human", "value": "..."}, ...]}:
	// from "system", "human" (or "user") and "gpt" (or "assistant") become
	// the roles system, user and assistant; a turn may have a "weight" as a
	// message does. Any other from is sharegpt_unknown_role: "tool",
	// "function_call" and "observation" are turns this trainer's chat
	// template has no role for, and "chatgpt", "bing" or "bard" name a
	// model, not a side of the conversation; guessing would train on the
	// wrong side.
	FormatShareGPT Format = "sharegpt"
	// FormatAlpaca is {"instruction": "...", "input": "...", "output": "...", "system": "..."}:
	// a system message when system is not blank, a user message of the
	// instruction (followed by a blank line and the input when the input is
	// not blank) and an assistant message of the output. input and system
	// may be absent or null.
	FormatAlpaca Format = "alpaca"
)

// Formats lists every format, the default first.
var Formats = []Format{FormatMessages, FormatShareGPT, FormatAlpaca}

// ParseFormat returns the format named s; "" is FormatMessages.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case "":
		return FormatMessages, nil
	case FormatMessages, FormatShareGPT, FormatAlpaca:
		return f, nil
	}
	return "", fmt.Errorf("format %q: must be messages, sharegpt or alpaca", s)
}

// formatNames are the keys of a format whose lines hold a list of turns,
// as issue messages name them.
type formatNames struct {
	list, role, content string
	// roles says which values the role may have, for issue messages.
	roles string
	// shape describes a line for the not_object message.
	shape string
}

var (
	messagesNames = formatNames{list: "messages", role: "role", content: "content",
		roles: "system, user or assistant", shape: `a JSON object with a "messages" array`}
	shareGPTNames = formatNames{list: "conversations", role: "from", content: "value",
		roles: "human, gpt or system (user and assistant are accepted too)", shape: `a JSON object with a "conversations" array`}
	alpacaNames = formatNames{shape: `a JSON object with "instruction" and "output"`}
)

func namesOf(f Format) *formatNames {
	switch f {
	case FormatShareGPT:
		return &shareGPTNames
	case FormatAlpaca:
		return &alpacaNames
	}
	return &messagesNames
}

// roleOf returns the chat role the raw role (or from) value r stands for
// in format f, or "" when it stands for none.
func roleOf(f Format, r []byte) string {
	switch string(r) {
	case roleSystem:
		return roleSystem
	case roleUser:
		return roleUser
	case roleAssistant:
		return roleAssistant
	}
	if f == FormatShareGPT {
		switch string(r) {
		case "human":
			return roleUser
		case "gpt":
			return roleAssistant
		}
	}
	return ""
}

// The keys of an Alpaca line, as indexes into lineParser.fields.
const (
	alpacaInstruction = iota
	alpacaInput
	alpacaOutput
	alpacaSystem
	numAlpacaFields
)

var alpacaKeys = [numAlpacaFields]string{"instruction", "input", "output", "system"}

// alpacaField returns the index of the raw key p.b[s:e] among the Alpaca
// keys, or -1.
func (p *lineParser) alpacaField(s, e int, escaped bool) int {
	for i, k := range alpacaKeys {
		if p.keyIs(s, e, escaped, k) {
			return i
		}
	}
	return -1
}

// appendMessagesLine appends msgs as one line of the messages form, with
// its '\n': the converted line of an example. The strings are valid UTF-8
// (the line was checked, and lone surrogates were decoded to U+FFFD), so
// only the quote, the backslash and control characters are escaped; HTML
// characters are left as they are.
func appendMessagesLine(b []byte, msgs []chat.Message) []byte {
	b = append(b, `{"messages":[`...)
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"role":`...)
		b = appendJSONString(b, m.Role)
		b = append(b, `,"content":`...)
		b = appendJSONString(b, m.Content)
		if m.Weight != nil {
			b = append(b, `,"weight":`...)
			b = strconv.AppendInt(b, int64(*m.Weight), 10)
		}
		b = append(b, '}')
	}
	return append(b, "]}\n"...)
}
