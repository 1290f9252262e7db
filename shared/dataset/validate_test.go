package dataset

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// at is an expected issue: its code and message index (-1 for none).
type at struct {
	code Code
	msg  int
}

func (a at) String() string { return fmt.Sprintf("%s@%d", a.code, a.msg) }

// issuesOn returns the issues of one line as code@message pairs.
func issuesOn(r *Report, line int64) []at {
	var got []at
	for _, is := range r.Issues {
		if is.Line != line {
			continue
		}
		a := at{is.Code, -1}
		if is.MessageIndex != nil {
			a.msg = *is.MessageIndex
		}
		got = append(got, a)
	}
	return got
}

func TestValidateReportsEachCodeOnItsLine(t *testing.T) {
	long := strings.Repeat("a long answer ", 100) // 1400 bytes: 354 tokens
	tests := []struct {
		name string
		line string
		opts Options
		want []at
	}{
		{"a valid example has no issue", goodLine, Options{}, nil},

		{"a Latin-1 byte is invalid_utf8", "{\"messages\": [{\"role\": \"user\", \"content\": \"caf\xe9\"}]}", Options{}, []at{{CodeInvalidUTF8, -1}}},
		{"a surrogate encoded in UTF-8 is invalid_utf8", "{\"messages\": \"\xed\xa0\x80\"}", Options{}, []at{{CodeInvalidUTF8, -1}}},

		{"a missing closing brace is invalid_json", `{"messages": []`, Options{}, []at{{CodeInvalidJSON, -1}}},
		{"a trailing comma is invalid_json", `{"messages": [],}`, Options{}, []at{{CodeInvalidJSON, -1}}},
		{"single quotes are invalid_json", `{'messages': []}`, Options{}, []at{{CodeInvalidJSON, -1}}},
		{"two values on a line are invalid_json", `{}{}`, Options{}, []at{{CodeInvalidJSON, -1}}},
		{"a raw tab in a string is invalid_json", "{\"messages\": [{\"role\": \"user\", \"content\": \"a\tb\"}]}", Options{}, []at{{CodeInvalidJSON, -1}}},
		{"a bad escape is invalid_json", `{"messages": [{"role": "user", "content": "a\qb"}]}`, Options{}, []at{{CodeInvalidJSON, -1}}},
		{"NaN is invalid_json", `{"messages": NaN}`, Options{}, []at{{CodeInvalidJSON, -1}}},
		{"a leading zero is invalid_json", `{"messages": [{"role": "assistant", "content": "x", "weight": 01}]}`, Options{}, []at{{CodeInvalidJSON, -1}}},
		{"a line of garbage is invalid_json", `hello`, Options{}, []at{{CodeInvalidJSON, -1}}},
		{"nesting past 10000 levels is invalid_json", `{"x": ` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`, Options{}, []at{{CodeInvalidJSON, -1}}},

		{"an array line is not_object", `[{"role": "user", "content": "hi"}]`, Options{}, []at{{CodeNotObject, -1}}},
		{"a string line is not_object", `"hello"`, Options{}, []at{{CodeNotObject, -1}}},
		{"a null line is not_object", `null`, Options{}, []at{{CodeNotObject, -1}}},

		{"an empty object is missing_messages", `{}`, Options{}, []at{{CodeMissingMessages, -1}}},
		{"messages as a string is missing_messages", `{"messages": "hi"}`, Options{}, []at{{CodeMissingMessages, -1}}},
		{"messages as null is missing_messages", `{"messages": null}`, Options{}, []at{{CodeMissingMessages, -1}}},
		{"a capitalised Messages key is unknown and messages missing", `{"Messages": []}`, Options{}, []at{{CodeUnknownKey, -1}, {CodeMissingMessages, -1}}},

		{"an empty messages array is empty_messages", `{"messages": []}`, Options{}, []at{{CodeEmptyMessages, -1}}},

		{"a string message is invalid_message", `{"messages": ["hi", {"role": "assistant", "content": "hello"}]}`, Options{}, []at{{CodeInvalidMessage, 0}}},
		{"a null message is invalid_message", `{"messages": [{"role": "user", "content": "hi"}, null, {"role": "assistant", "content": "hello"}]}`, Options{}, []at{{CodeInvalidMessage, 1}}},

		{"role bot is invalid_role", `{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "hello"}, {"role": "assistant", "content": "hey"}]}`, Options{}, []at{{CodeInvalidRole, 1}}},
		{"a missing role is invalid_role", `{"messages": [{"content": "hi"}, {"role": "assistant", "content": "hello"}]}`, Options{}, []at{{CodeInvalidRole, 0}}},
		{"a number role is invalid_role", `{"messages": [{"role": 1, "content": "hi"}, {"role": "assistant", "content": "hello"}]}`, Options{}, []at{{CodeInvalidRole, 0}}},
		{"role User in capitals is invalid_role", `{"messages": [{"role": "User", "content": "hi"}, {"role": "assistant", "content": "hello"}]}`, Options{}, []at{{CodeInvalidRole, 0}}},
		{"an escaped role is decoded first", `{"messages": [{"role": "us\u0065r", "content": "hi"}, {"r\u006fle": "assistant", "content": "hello"}]}`, Options{}, nil},

		{"a missing content is invalid_content", `{"messages": [{"role": "user"}, {"role": "assistant", "content": "hello"}]}`, Options{}, []at{{CodeInvalidContent, 0}}},
		{"a null content is invalid_content", `{"messages": [{"role": "user", "content": null}, {"role": "assistant", "content": "hello"}]}`, Options{}, []at{{CodeInvalidContent, 0}}},
		{"a multimodal content array is invalid_content", `{"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}, {"role": "assistant", "content": "hello"}]}`, Options{}, []at{{CodeInvalidContent, 0}}},
		{"a number content is invalid_content", `{"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "hello"}]}`, Options{}, []at{{CodeInvalidContent, 0}}},

		{"an empty content is empty_content", `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}`, Options{}, []at{{CodeEmptyContent, 1}}},
		{"escaped whitespace content is empty_content", `{"messages": [{"role": "user", "content": " \n\t\r "}, {"role": "assistant", "content": "hello"}]}`, Options{}, []at{{CodeEmptyContent, 0}}},
		{"a no-break space content is empty_content", `{"messages": [{"role": "user", "content": "\u00a0 "}, {"role": "assistant", "content": "hello"}]}`, Options{}, []at{{CodeEmptyContent, 0}}},

		{"a system message second is system_not_first", `{"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": "be brief"}, {"role": "assistant", "content": "hello"}]}`, Options{}, []at{{CodeSystemNotFirst, 1}}},

		{"user only is missing_assistant", `{"messages": [{"role": "user", "content": "hi"}]}`, Options{}, []at{{CodeMissingAssistant, -1}}},
		{"system and user only is missing_assistant", `{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}`, Options{}, []at{{CodeMissingAssistant, -1}}},

		{"weight 2 is invalid_weight", `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "weight": 2}]}`, Options{}, []at{{CodeInvalidWeight, 1}}},
		{"weight 0.5 is invalid_weight", `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "weight": 0.5}]}`, Options{}, []at{{CodeInvalidWeight, 1}}},
		{"weight -1 is invalid_weight", `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "weight": -1}]}`, Options{}, []at{{CodeInvalidWeight, 1}}},
		{"a string weight is invalid_weight", `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "weight": "1"}]}`, Options{}, []at{{CodeInvalidWeight, 1}}},
		{"a boolean weight is invalid_weight", `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "weight": true}]}`, Options{}, []at{{CodeInvalidWeight, 1}}},
		{"a null weight is invalid_weight", `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "weight": null}]}`, Options{}, []at{{CodeInvalidWeight, 1}}},
		{"a weight on a user message is invalid_weight", `{"messages": [{"role": "user", "content": "hi", "weight": 1}, {"role": "assistant", "content": "hello"}]}`, Options{}, []at{{CodeInvalidWeight, 0}}},
		{"a weight on a system message is invalid_weight", `{"messages": [{"role": "system", "content": "be brief", "weight": 0}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}`, Options{}, []at{{CodeInvalidWeight, 0}}},
		{"weight 1.0 is accepted", `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "weight": 1.0}]}`, Options{}, nil},
		{"weight 10e-1 is accepted", `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "weight": 10e-1}]}`, Options{}, nil},

		{"a line over the limit is line_too_long", `{"messages": [{"role": "user", "content": "` + strings.Repeat("x", 100) + `"}]}`, Options{MaxLineBytes: 64}, []at{{CodeLineTooLong, -1}}},

		{"an unknown line key is unknown_key", `{"id": 7, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}`, Options{}, []at{{CodeUnknownKey, -1}}},
		{"an unknown message key is unknown_key", `{"messages": [{"role": "user", "content": "hi", "name": "ana"}, {"role": "assistant", "content": "hello"}]}`, Options{}, []at{{CodeUnknownKey, 0}}},
		{"unknown keys are reported with other issues", `{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "hello", "tool_calls": []}]}`, Options{}, []at{{CodeInvalidRole, 1}, {CodeUnknownKey, 1}, {CodeMissingAssistant, -1}}},

		{"two user turns in a row are non_alternating", `{"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "anyone?"}, {"role": "assistant", "content": "hello"}]}`, Options{}, []at{{CodeNonAlternating, 1}}},
		{"two assistant turns in a row are non_alternating", `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "assistant", "content": "still there?"}]}`, Options{}, []at{{CodeNonAlternating, 2}}},

		{"more tokens than max_seq_length is example_too_long", `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "` + long + `"}]}`, Options{MaxSeqLength: 256}, []at{{CodeExampleTooLong, -1}}},
		{"tokens within max_seq_length are fine", `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "` + long + `"}]}`, Options{MaxSeqLength: 512}, nil},

		{"weight 0 on every assistant turn is no_trained_tokens", `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "weight": 0}]}`, Options{}, []at{{CodeNoTrainedTokens, -1}}},
		{"weight 0 on one of two assistant turns trains", `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "weight": 0}, {"role": "user", "content": "and?"}, {"role": "assistant", "content": "bye"}]}`, Options{}, nil},

		{"each bad message is reported", `{"messages": [{"role": "bot", "content": ""}, {"role": "assistant", "content": null, "weight": 3}]}`, Options{}, []at{{CodeInvalidRole, 0}, {CodeEmptyContent, 0}, {CodeInvalidContent, 1}, {CodeInvalidWeight, 1}}},
		{"a repeated messages key keeps the last", `{"messages": [{"role": "user", "content": "hi", "x": 1}], "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}`, Options{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validate(t, tt.line+"\n", tt.opts)
			if got := issuesOn(r, 1); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Validate(%q) issues on line 1 = %v, want %v\nissues: %+v", abbreviate(tt.line), got, tt.want, r.Issues)
			}
			wantExamples := int64(1)
			for _, w := range tt.want {
				if w.code.Severity() == SeverityError {
					wantExamples = 0
				}
			}
			if r.Examples != wantExamples {
				t.Errorf("Validate(%q).Examples = %d, want %d", abbreviate(tt.line), r.Examples, wantExamples)
			}
		})
	}
}

func TestValidateWritesPlainMessages(t *testing.T) {
	tests := []struct {
		line string
		want string
	}{
		{`{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}]}`, `messages[1].role is "bot": must be system, user or assistant`},
		{`{"messages": [{"role": "user", "content": [1]}, {"role": "assistant", "content": "x"}]}`, `messages[0].content is an array: must be a string (multimodal content is not supported)`},
		{`{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x", "weight": 1.5}]}`, `messages[1].weight is 1.5: must be 0 or 1`},
		{`{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x", "weight": "1"}]}`, `messages[1].weight is a string: must be the number 0 or 1`},
		{`{"messages": [{"role": "user", "content": "hi", "weight": 0}, {"role": "assistant", "content": "x"}]}`, `messages[0].weight is set on a user message: only assistant messages take one`},
		{`{"messages": {}}`, `"messages" is an object: must be an array`},
		{`{"messages": [1]}`, `messages[0] is a number: must be an object`},
		{`{"messages": [}`, `invalid JSON at byte 15: expected a JSON value, found '}'`},
		{`{"messages": "caf`, `invalid JSON at byte 18: unterminated string, found end of line`},
		{"{\"messages\": \"caf\xff\"}", `line is not valid UTF-8 at byte 18`},
		{`true`, `line is a boolean: must be a JSON object with a "messages" array`},
		{`{"messages": [{"role": "` + strings.Repeat("é", 40) + `"}]}`, `messages[0].role is "` + strings.Repeat("é", 30) + `"…: must be system, user or assistant`},
	}
	for _, tt := range tests {
		r := validate(t, tt.line, Options{})
		if len(r.Issues) < 2 || r.Issues[1].Message != tt.want {
			t.Errorf("Validate(%q) first issue = %+v, want message %q", tt.line, r.Issues, tt.want)
		}
	}
}

func TestValidateFindsDuplicateConversations(t *testing.T) {
	tests := []struct {
		name   string
		second string
		dup    bool
	}{
		{"the same line is a duplicate", goodLine, true},
		{"other spacing, key order and escapes are a duplicate",
			`{ "messages":[{"content":"Where is my order\u003f","role":"user"},{"role":"assistant","content":"It ships tomorrow.","weight":1.0}]}`, true},
		{"unknown keys do not count", `{"id": 2, "messages": [{"role": "user", "content": "Where is my order?"}, {"role": "assistant", "content": "It ships tomorrow.", "name": "bot"}]}`, true},
		{"another weight is not a duplicate", `{"messages": [{"role": "user", "content": "Where is my order?"}, {"role": "assistant", "content": "It ships tomorrow.", "weight": 0}]}`, false},
		{"another content is not a duplicate", `{"messages": [{"role": "user", "content": "Where is my order?"}, {"role": "assistant", "content": "It ships today."}]}`, false},
		{"contents split differently are not a duplicate", `{"messages": [{"role": "user", "content": "Where is my order?It ships"}, {"role": "assistant", "content": " tomorrow."}]}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validate(t, goodLine+"\n"+tt.second+"\n", Options{})
			got := r.WarningCounts[CodeDuplicateExample] == 1
			if got != tt.dup {
				t.Errorf("Validate(%q then %q) duplicate = %v, want %v", goodLine, tt.second, got, tt.dup)
			}
			if tt.dup && !strings.Contains(r.Issues[len(r.Issues)-1].Message, "line 1") {
				t.Errorf("duplicate message = %q, want it to name line 1", r.Issues[len(r.Issues)-1].Message)
			}
		})
	}
}

func TestValidateDuplicateDetectorStopsAtItsCap(t *testing.T) {
	lines := goodLines(20)
	first := strings.SplitN(lines, "\n", 2)[0]
	last := strings.Split(lines, "\n")[19]
	r := validate(t, lines+first+"\n"+last+"\n", Options{MaxUniqueExamples: 5})
	if got := r.WarningCounts[CodeDuplicateExample]; got != 1 {
		t.Errorf("duplicates with a cap of 5 = %d, want 1 (line 1 remembered, line 20 not)", got)
	}
	if !r.Truncated.Duplicates {
		t.Errorf("Truncated.Duplicates = false, want true")
	}
	r = validate(t, lines+first+"\n", Options{MaxUniqueExamples: -1})
	if got := r.WarningCounts[CodeDuplicateExample]; got != 0 || r.Truncated.Duplicates {
		t.Errorf("duplicates with detection off = %d (truncated %v), want 0 (false)", got, r.Truncated.Duplicates)
	}
}

func TestValidateToleratesBOMCRLFAndBlankLines(t *testing.T) {
	ten := goodLines(10)
	crlf := strings.ReplaceAll(ten, "\n", "\r\n")
	tests := []struct {
		name  string
		in    string
		lines int64
		blank int64
	}{
		{"plain lines", ten, 10, 0},
		{"a BOM before the first line", "\xef\xbb\xbf" + ten, 10, 0},
		{"CRLF line ends", crlf, 10, 0},
		{"a BOM and CRLF", "\xef\xbb\xbf" + crlf, 10, 0},
		{"no line end after the last line", strings.TrimSuffix(ten, "\n"), 10, 0},
		{"blank lines anywhere", "\n" + strings.ReplaceAll(ten, "\n", "\n\n") + "  \t \r\n", 22, 12},
		{"a BOM alone on the first line", "\xef\xbb\xbf\r\n" + ten, 11, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validate(t, tt.in, Options{})
			if !r.Valid || r.Examples != 10 || r.Lines != tt.lines || r.BlankLines != tt.blank || r.Bytes != int64(len(tt.in)) {
				t.Errorf("Validate(%q) = valid %v, examples %d, lines %d, blank %d, bytes %d; want true, 10, %d, %d, %d\nissues: %+v",
					abbreviate(tt.in), r.Valid, r.Examples, r.Lines, r.BlankLines, r.Bytes, tt.lines, tt.blank, len(tt.in), r.Issues)
			}
		})
	}
	t.Run("a BOM on a later line is invalid_json", func(t *testing.T) {
		r := validate(t, ten+"\xef\xbb\xbf"+goodLine+"\n", Options{})
		if got := issuesOn(r, 11); !reflect.DeepEqual(got, []at{{CodeInvalidJSON, -1}}) {
			t.Errorf("issues on line 11 = %v, want [invalid_json@-1]", got)
		}
	})
}

func TestValidateReportsDatasetLevelErrorsOnLineZero(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []at
	}{
		{"an empty file is empty_file", "", []at{{CodeEmptyFile, -1}}},
		{"blank lines only are empty_file", "\n \r\n\t\n", []at{{CodeEmptyFile, -1}}},
		{"a BOM only is empty_file", "\xef\xbb\xbf", []at{{CodeEmptyFile, -1}}},
		{"nine examples are too_few_examples", goodLines(9), []at{{CodeTooFewExamples, -1}}},
		{"only bad lines are too_few_examples", "{}\n{}\n", []at{{CodeTooFewExamples, -1}}},
		{"ten examples are enough", goodLines(10), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validate(t, tt.in, Options{})
			if got := issuesOn(r, 0); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Validate(%q) issues on line 0 = %v, want %v", abbreviate(tt.in), got, tt.want)
			}
			if tt.want != nil && (r.Valid || r.Issues[0].Line != 0) {
				t.Errorf("Validate(%q) = valid %v, first issue %+v; want invalid, line 0 first", abbreviate(tt.in), r.Valid, r.Issues[0])
			}
			if tt.want == nil && !r.Valid {
				t.Errorf("Validate(%q).Valid = false, want true", abbreviate(tt.in))
			}
		})
	}
}

func TestValidateCapsTheIssueListButCountsEveryIssue(t *testing.T) {
	// 2500 lines, each with an error and a warning.
	bad := `{"id": 1, "messages": [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "hello"}]}` + "\n"
	in := strings.Repeat(bad, 2500)
	tests := []struct {
		name         string
		maxIssues    int
		wantErrors   int
		wantWarnings int
	}{
		{"the default lists 1000 of each", 0, 1000, 1000},
		{"a cap of 10 lists 10 of each", 10, 10, 10},
		{"a negative cap lists none", -1, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validate(t, in, Options{MaxIssues: tt.maxIssues})
			wantCounts := map[Code]int64{CodeInvalidRole: 2500, CodeTooFewExamples: 1}
			if !reflect.DeepEqual(r.ErrorCounts, wantCounts) {
				t.Errorf("ErrorCounts = %v, want %v", r.ErrorCounts, wantCounts)
			}
			if got := r.WarningCounts[CodeUnknownKey]; got != 2500 {
				t.Errorf("WarningCounts[unknown_key] = %d, want 2500", got)
			}
			var errs, warns int
			for _, is := range r.Issues {
				if is.Severity == SeverityError {
					errs++
				} else {
					warns++
				}
			}
			if errs != tt.wantErrors || warns != tt.wantWarnings {
				t.Errorf("listed %d errors and %d warnings, want %d and %d", errs, warns, tt.wantErrors, tt.wantWarnings)
			}
			if !r.Truncated.Errors || !r.Truncated.Warnings {
				t.Errorf("Truncated = %+v, want errors and warnings set", r.Truncated)
			}
			if tt.wantErrors > 0 && r.Issues[0].Code != CodeTooFewExamples {
				t.Errorf("first issue = %+v, want the dataset-level too_few_examples", r.Issues[0])
			}
		})
	}
	t.Run("a list under the cap is not truncated", func(t *testing.T) {
		r := validate(t, strings.Repeat(bad, 3)+goodLines(10), Options{})
		if r.Truncated.Errors || r.Truncated.Warnings || len(r.Issues) != 6 {
			t.Errorf("Truncated = %+v with %d issues, want nothing truncated and 6 issues", r.Truncated, len(r.Issues))
		}
	})
}

func TestValidateComputesStats(t *testing.T) {
	// With byteCounter each message is 4 + len(content)/4 tokens.
	line := func(contents ...string) string {
		var b strings.Builder
		b.WriteString(`{"messages": [`)
		for i, c := range contents {
			if i > 0 {
				b.WriteString(", ")
			}
			role := "user"
			if i%2 == 1 {
				role = "assistant"
			}
			fmt.Fprintf(&b, `{"role": %q, "content": %q}`, role, c)
		}
		b.WriteString("]}\n")
		return b.String()
	}
	var in strings.Builder
	// Ten examples of 2 messages of 5+i tokens each...
	for i := range 10 {
		in.WriteString(line(strings.Repeat("u", 4*(i+1)), strings.Repeat("a", 4*(i+1))))
	}
	// ...and two of 4 messages, one of them over 256 tokens...
	in.WriteString(line("q", "a", "q", "a"))
	in.WriteString(line("q", strings.Repeat("a", 1200), "q", "a"))
	// ...and a line with an error, which does not count.
	in.WriteString(`{"messages": [{"role": "user", "content": "not counted"}]}` + "\n")

	r := validate(t, in.String(), Options{MaxSeqLength: 256})
	// Tokens per example: 10, 12, ..., 28, then 4*4 = 16 and 4+304+4+4 = 316.
	wantTokens := Distribution{Min: 10, Mean: 43.5, P50: 18, P95: 316, Max: 316}
	wantMessages := Distribution{Min: 2, Mean: 2.33, P50: 2, P95: 4, Max: 4}
	if r.Stats.TokensPerExample != wantTokens {
		t.Errorf("TokensPerExample = %+v, want %+v", r.Stats.TokensPerExample, wantTokens)
	}
	if r.Stats.MessagesPerExample != wantMessages {
		t.Errorf("MessagesPerExample = %+v, want %+v", r.Stats.MessagesPerExample, wantMessages)
	}
	// Trained: the assistant messages, 5+i each, then 4+4 and 304+4.
	wantTok := Tokens{Total: 522, Trained: 95 + 8 + 308}
	if r.Tokens != wantTok {
		t.Errorf("Tokens = %+v, want %+v", r.Tokens, wantTok)
	}
	if r.Examples != 12 || r.Stats.ExamplesOverMaxSeqLength != 1 || r.Stats.MaxSeqLength != 256 {
		t.Errorf("examples %d, over max %d, max_seq_length %d; want 12, 1, 256", r.Examples, r.Stats.ExamplesOverMaxSeqLength, r.Stats.MaxSeqLength)
	}
	t.Run("no example gives zero stats", func(t *testing.T) {
		r := validate(t, "{}\n", Options{})
		if r.Stats.TokensPerExample != (Distribution{}) || r.Stats.MessagesPerExample != (Distribution{}) || r.Stats.MaxSeqLength != DefaultMaxSeqLength {
			t.Errorf("Stats = %+v, want zero distributions and max_seq_length %d", r.Stats, DefaultMaxSeqLength)
		}
	})
}

func TestValidateSkipsLongLinesWithoutLosingTheNext(t *testing.T) {
	long := `{"messages": "` + strings.Repeat("x", 300_000) + `"}`
	tests := []struct {
		name string
		in   string
		max  int
		want map[int64][]at
	}{
		{"a line at the limit is read", goodLine + "\n", len(goodLine), map[int64][]at{1: nil}},
		{"a line one byte over is skipped", goodLine + "\n", len(goodLine) - 1, map[int64][]at{1: {{CodeLineTooLong, -1}}}},
		{"the line after a long one is read", long + "\n" + goodLine + "\n", 1000, map[int64][]at{1: {{CodeLineTooLong, -1}}, 2: nil}},
		{"a long last line without a line end is skipped", goodLine + "\n" + long, 1000, map[int64][]at{1: nil, 2: {{CodeLineTooLong, -1}}}},
		{"a long line over several buffers is skipped", long + "\r\n" + long + "\n" + goodLine, 100_000, map[int64][]at{1: {{CodeLineTooLong, -1}}, 2: {{CodeLineTooLong, -1}}, 3: nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validate(t, tt.in, Options{MaxLineBytes: tt.max})
			for line, want := range tt.want {
				if got := issuesOn(r, line); !reflect.DeepEqual(got, want) {
					t.Errorf("Validate(%q) issues on line %d = %v, want %v", abbreviate(tt.in), line, got, want)
				}
			}
		})
	}
	t.Run("the message gives the exact length", func(t *testing.T) {
		r := validate(t, long+"\r\n", Options{MaxLineBytes: 1000})
		want := fmt.Sprintf("line is %d bytes: over the 1000-byte limit", len(long)+1)
		if r.Issues[1].Message != want {
			t.Errorf("message = %q, want %q", r.Issues[1].Message, want)
		}
	})
}

// readers returns ways of reading data that must all give one report.
func readers(data []byte) map[string]io.Reader {
	return map[string]io.Reader{
		"one byte at a time":        iotest.OneByteReader(bytes.NewReader(data)),
		"half of each read":         iotest.HalfReader(bytes.NewReader(data)),
		"with EOF on the last read": iotest.DataErrReader(bytes.NewReader(data)),
	}
}

func TestValidateGivesOneReportWhateverTheReads(t *testing.T) {
	var synth bytes.Buffer
	if err := WriteSynthetic(&synth, 200<<10, 3, 4); err != nil {
		t.Fatalf("WriteSynthetic: %v", err)
	}
	inputs := map[string][]byte{
		"sample.jsonl":   readFixture(t, "sample.jsonl"),
		"bad.jsonl":      readFixture(t, "bad.jsonl"),
		"synthetic data": synth.Bytes(),
		"long lines":     []byte(strings.Repeat(goodLine+"\r\n"+strings.Repeat("y", 5000)+"\n\n", 5)),
	}
	for name, data := range inputs {
		opts := Options{MaxLineBytes: 4096, MaxSeqLength: 256, MaxIssues: 50}
		want, err := Validate(context.Background(), bytes.NewReader(data), byteCounter, opts)
		if err != nil {
			t.Fatalf("Validate(%s) error: %v", name, err)
		}
		for how, r := range readers(data) {
			t.Run(name+" read "+how, func(t *testing.T) {
				got, err := Validate(context.Background(), r, byteCounter, opts)
				if err != nil {
					t.Fatalf("Validate(%s) error: %v", name, err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("Validate(%s) read %s = %+v, want %+v", name, how, got.Summary, want.Summary)
				}
			})
		}
	}
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "datasets", name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return data
}

func TestValidateSampleDatasetIsClean(t *testing.T) {
	data := readFixture(t, "sample.jsonl")
	r, err := Validate(context.Background(), bytes.NewReader(data), byteCounter, Options{})
	if err != nil {
		t.Fatalf("Validate(sample.jsonl) error: %v", err)
	}
	if !r.Valid || r.Examples != 40 || len(r.Issues) != 0 {
		t.Errorf("Validate(sample.jsonl) = valid %v, %d examples, issues %+v; want valid, 40, none", r.Valid, r.Examples, r.Issues)
	}
	if r.Tokens.Trained >= r.Tokens.Total || r.Tokens.Trained == 0 {
		t.Errorf("Validate(sample.jsonl).Tokens = %+v, want 0 < trained < total", r.Tokens)
	}
}

func TestValidateBadDatasetHasTheDocumentedIssues(t *testing.T) {
	data := readFixture(t, "bad.jsonl")
	r, err := Validate(context.Background(), bytes.NewReader(data), byteCounter, Options{MaxLineBytes: 4096, MaxSeqLength: 256})
	if err != nil {
		t.Fatalf("Validate(bad.jsonl) error: %v", err)
	}
	// The table of testdata/datasets/README.md.
	want := map[int64][]at{
		0:  {{CodeTooFewExamples, -1}},
		1:  {{CodeInvalidUTF8, -1}},
		2:  {{CodeInvalidJSON, -1}},
		3:  {{CodeNotObject, -1}},
		4:  {{CodeMissingMessages, -1}},
		5:  {{CodeEmptyMessages, -1}},
		6:  {{CodeInvalidMessage, 0}},
		7:  {{CodeInvalidRole, 1}},
		8:  {{CodeInvalidContent, 0}},
		9:  {{CodeEmptyContent, 1}},
		10: {{CodeSystemNotFirst, 1}},
		11: {{CodeMissingAssistant, -1}},
		12: {{CodeInvalidWeight, 1}},
		13: {{CodeLineTooLong, -1}},
		14: {{CodeUnknownKey, 0}},
		15: {{CodeNonAlternating, 1}},
		16: {{CodeExampleTooLong, -1}},
		17: nil,
		18: {{CodeDuplicateExample, -1}},
		19: {{CodeNoTrainedTokens, -1}},
	}
	for line := int64(0); line <= 19; line++ {
		if got := issuesOn(r, line); !reflect.DeepEqual(got, want[line]) {
			t.Errorf("Validate(bad.jsonl) issues on line %d = %v, want %v", line, got, want[line])
		}
	}
	if r.Lines != 19 || r.Examples != 6 || r.Valid {
		t.Errorf("Validate(bad.jsonl) = %d lines, %d examples, valid %v; want 19, 6, false", r.Lines, r.Examples, r.Valid)
	}
}

func TestValidateReportJSONIsSnakeCase(t *testing.T) {
	r := validate(t, `{"messages": [{"role": "bot", "content": "x"}, {"role": "assistant", "content": "y"}]}`+"\n", Options{})
	out, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("json.Marshal(report): %v", err)
	}
	for _, key := range []string{
		`"valid":false`, `"lines":1`, `"blank_lines":0`, `"examples":0`, `"bytes":`, `"tokens":{"total":0,"trained":0}`,
		`"error_counts":{"invalid_role":1,"too_few_examples":1}`, `"warning_counts":{}`,
		`"truncated":{"errors":false,"warnings":false,"duplicates":false}`,
		`"messages_per_example":{"min":0,"mean":0,"p50":0,"p95":0,"max":0}`, `"examples_over_max_seq_length":0`, `"max_seq_length":2048`,
		`{"code":"too_few_examples","severity":"error","line":0,"message":`,
		`{"code":"invalid_role","severity":"error","line":1,"message_index":0,"message":`,
	} {
		if !strings.Contains(string(out), key) {
			t.Errorf("json.Marshal(report) = %s\nwant it to contain %s", out, key)
		}
	}
	var s Summary
	if err := json.Unmarshal(out, &s); err != nil || s.ErrorCounts[CodeInvalidRole] != 1 {
		t.Errorf("json.Unmarshal(report) into Summary = %+v, %v; want invalid_role counted once", s, err)
	}
}

func TestValidateRejectsUnusableArguments(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"max_seq_length under 256", Options{MaxSeqLength: 255}},
		{"max_seq_length over 32768", Options{MaxSeqLength: 32769}},
		{"a negative line limit", Options{MaxLineBytes: -1}},
		{"a line limit over 256 MiB", Options{MaxLineBytes: MaxMaxLineBytes + 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Validate(context.Background(), strings.NewReader(goodLine), byteCounter, tt.opts); err == nil {
				t.Errorf("Validate(opts %+v) error = nil, want one", tt.opts)
			}
		})
	}
	t.Run("a nil counter", func(t *testing.T) {
		if _, err := Validate(context.Background(), strings.NewReader(goodLine), nil, Options{}); err == nil {
			t.Errorf("Validate(nil counter) error = nil, want one")
		}
	})
}

func TestValidateStopsOnReadErrorsAndCancellation(t *testing.T) {
	boom := errors.New("disk on fire")
	t.Run("a read error is returned with its line", func(t *testing.T) {
		r := io.MultiReader(strings.NewReader(goodLines(3)), iotest.ErrReader(boom))
		_, err := Validate(context.Background(), r, byteCounter, Options{})
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), "line 4") {
			t.Errorf("Validate(failing reader) error = %v, want %v at line 4", err, boom)
		}
	})
	t.Run("a cancelled context stops it", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := Validate(ctx, strings.NewReader(goodLines(3)), byteCounter, Options{})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Validate(cancelled) error = %v, want %v", err, context.Canceled)
		}
	})
	t.Run("cancelling midway stops it", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		opts := Options{Progress: func(int64) { cancel() }}
		data := strings.Repeat(goodLine+"\n", 100_000) // 11 MiB: cancelled after the first MiB
		_, err := Validate(ctx, strings.NewReader(data), byteCounter, opts)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Validate(cancelled midway) error = %v, want %v", err, context.Canceled)
		}
	})
}

func TestValidateReportsProgress(t *testing.T) {
	data := strings.Repeat(goodLine+"\n", 30_000) // about 3.4 MB
	var calls []int64
	r, err := Validate(context.Background(), strings.NewReader(data), byteCounter, Options{Progress: func(n int64) { calls = append(calls, n) }})
	if err != nil {
		t.Fatalf("Validate error: %v", err)
	}
	if len(calls) < 3 || len(calls) > 5 || calls[len(calls)-1] != r.Bytes {
		t.Errorf("progress calls = %v, want about one per MiB ending at %d", calls, r.Bytes)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i] <= calls[i-1] {
			t.Errorf("progress calls = %v, want increasing", calls)
		}
	}
}
