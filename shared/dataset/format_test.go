package dataset

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/brightrun/brightrun/shared/chat"
	"github.com/brightrun/brightrun/shared/tokenizer"
)

func TestShareGPTLinesAreCheckedAsTheirConversation(t *testing.T) {
	tests := []struct {
		name string
		line string
		want []at
	}{
		{"human and gpt turns are an example", `{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}`, nil},
		{"a system turn first is an example", `{"conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}`, nil},
		{"user and assistant are accepted as aliases", `{"conversations": [{"from": "user", "value": "hi"}, {"from": "assistant", "value": "hello"}]}`, nil},
		{"a weight on a gpt turn is kept", `{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello", "weight": 0}, {"from": "human", "value": "and?"}, {"from": "gpt", "value": "bye"}]}`, nil},

		{"an empty object is sharegpt_missing_conversations", `{}`, []at{{CodeShareGPTMissingConversations, -1}}},
		{"a messages array is unknown and conversations missing", `{"messages": [{"role": "user", "content": "hi"}]}`, []at{{CodeUnknownKey, -1}, {CodeShareGPTMissingConversations, -1}}},
		{"conversations as a string is sharegpt_missing_conversations", `{"conversations": "hi"}`, []at{{CodeShareGPTMissingConversations, -1}}},
		{"an empty conversations array is sharegpt_empty_conversations", `{"conversations": []}`, []at{{CodeShareGPTEmptyConversations, -1}}},
		{"a string turn is sharegpt_invalid_turn", `{"conversations": ["hi", {"from": "gpt", "value": "hello"}]}`, []at{{CodeShareGPTInvalidTurn, 0}}},
		{"from bot is sharegpt_unknown_role", `{"conversations": [{"from": "human", "value": "hi"}, {"from": "bot", "value": "hello"}]}`, []at{{CodeShareGPTUnknownRole, 1}, {CodeMissingAssistant, -1}}},
		{"from chatgpt is sharegpt_unknown_role", `{"conversations": [{"from": "human", "value": "hi"}, {"from": "chatgpt", "value": "hello"}]}`, []at{{CodeShareGPTUnknownRole, 1}, {CodeMissingAssistant, -1}}},
		{"a tool turn is sharegpt_unknown_role", `{"conversations": [{"from": "human", "value": "hi"}, {"from": "function_call", "value": "{}"}, {"from": "gpt", "value": "hello"}]}`, []at{{CodeShareGPTUnknownRole, 1}}},
		{"from Human in capitals is sharegpt_unknown_role", `{"conversations": [{"from": "Human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}`, []at{{CodeShareGPTUnknownRole, 0}}},
		{"a missing from is sharegpt_unknown_role", `{"conversations": [{"value": "hi"}, {"from": "gpt", "value": "hello"}]}`, []at{{CodeShareGPTUnknownRole, 0}}},
		{"a role key is unknown and from missing", `{"conversations": [{"role": "user", "value": "hi"}, {"from": "gpt", "value": "hello"}]}`, []at{{CodeShareGPTUnknownRole, 0}, {CodeUnknownKey, 0}}},
		{"a missing value is sharegpt_invalid_value", `{"conversations": [{"from": "human"}, {"from": "gpt", "value": "hello"}]}`, []at{{CodeShareGPTInvalidValue, 0}}},
		{"a null value is sharegpt_invalid_value", `{"conversations": [{"from": "human", "value": null}, {"from": "gpt", "value": "hello"}]}`, []at{{CodeShareGPTInvalidValue, 0}}},
		{"an empty value is empty_content", `{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": " "}]}`, []at{{CodeEmptyContent, 1}}},
		{"a system turn second is system_not_first", `{"conversations": [{"from": "human", "value": "hi"}, {"from": "system", "value": "be brief"}, {"from": "gpt", "value": "hello"}]}`, []at{{CodeSystemNotFirst, 1}}},
		{"no gpt turn is missing_assistant", `{"conversations": [{"from": "human", "value": "hi"}]}`, []at{{CodeMissingAssistant, -1}}},
		{"two human turns in a row are non_alternating", `{"conversations": [{"from": "human", "value": "hi"}, {"from": "user", "value": "hello?"}, {"from": "gpt", "value": "hello"}]}`, []at{{CodeNonAlternating, 1}}},
		{"weight 2 is invalid_weight", `{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello", "weight": 2}]}`, []at{{CodeInvalidWeight, 1}}},
		{"a top-level system key is unknown", `{"system": "be brief", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}`, []at{{CodeUnknownKey, -1}}},
		{"a markdown key on a turn is unknown", `{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello", "markdown": null}]}`, []at{{CodeUnknownKey, 1}}},
		{"a line that is an array is not_object", `[{"from": "human", "value": "hi"}]`, []at{{CodeNotObject, -1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validate(t, tt.line+"\n", Options{Format: FormatShareGPT})
			if got := issuesOn(r, 1); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Validate(%q, sharegpt) issues on line 1 = %v, want %v\nissues: %+v", tt.line, got, tt.want, r.Issues)
			}
			checkExamples(t, r, tt.line, tt.want)
		})
	}
}

func TestAlpacaLinesAreCheckedAsTheirConversation(t *testing.T) {
	tests := []struct {
		name string
		line string
		want []at
	}{
		{"instruction and output are an example", `{"instruction": "Say hi", "output": "hi"}`, nil},
		{"input and system are optional and may be empty or null", `{"instruction": "Say hi", "input": "", "output": "hi", "system": null}`, nil},
		{"input null is accepted", `{"instruction": "Say hi", "input": null, "output": "hi"}`, nil},

		{"an empty object misses instruction and output", `{}`, []at{{CodeAlpacaMissingInstruction, -1}, {CodeAlpacaMissingOutput, -1}}},
		{"a missing output is alpaca_missing_output", `{"instruction": "Say hi", "input": "now"}`, []at{{CodeAlpacaMissingOutput, -1}}},
		{"a null output is alpaca_missing_output", `{"instruction": "Say hi", "output": null}`, []at{{CodeAlpacaMissingOutput, -1}}},
		{"a number instruction is alpaca_missing_instruction", `{"instruction": 3, "output": "hi"}`, []at{{CodeAlpacaMissingInstruction, -1}}},
		{"an array input is alpaca_invalid_field", `{"instruction": "Say hi", "input": ["a"], "output": "hi"}`, []at{{CodeAlpacaInvalidField, -1}}},
		{"a number system is alpaca_invalid_field", `{"instruction": "Say hi", "output": "hi", "system": 1}`, []at{{CodeAlpacaInvalidField, -1}}},
		{"an empty output is empty_content", `{"instruction": "Say hi", "output": ""}`, []at{{CodeEmptyContent, -1}}},
		{"a whitespace instruction is empty_content", `{"instruction": " \n", "output": "hi"}`, []at{{CodeEmptyContent, -1}}},
		{"a text key is unknown", `{"instruction": "Say hi", "output": "hi", "text": "### Instruction: Say hi"}`, []at{{CodeUnknownKey, -1}}},
		{"a messages line is unknown and misses both", `{"messages": []}`, []at{{CodeUnknownKey, -1}, {CodeAlpacaMissingInstruction, -1}, {CodeAlpacaMissingOutput, -1}}},
		{"a string line is not_object", `"Say hi"`, []at{{CodeNotObject, -1}}},
		{"a repeated output keeps the last", `{"instruction": "Say hi", "output": null, "output": "hi"}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validate(t, tt.line+"\n", Options{Format: FormatAlpaca})
			if got := issuesOn(r, 1); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Validate(%q, alpaca) issues on line 1 = %v, want %v\nissues: %+v", tt.line, got, tt.want, r.Issues)
			}
			checkExamples(t, r, tt.line, tt.want)
		})
	}
}

func checkExamples(t *testing.T, r *Report, line string, want []at) {
	t.Helper()
	wantExamples := int64(1)
	for _, w := range want {
		if w.code.Severity() == SeverityError {
			wantExamples = 0
		}
	}
	if r.Examples != wantExamples {
		t.Errorf("Validate(%q).Examples = %d, want %d", line, r.Examples, wantExamples)
	}
}

func TestIssueMessagesNameTheFormatsKeys(t *testing.T) {
	tests := []struct {
		format Format
		line   string
		want   string
	}{
		{FormatShareGPT, `{"conversations": [{"from": "human", "value": "hi"}, {"from": "bot", "value": "hello"}]}`,
			`conversations[1].from is "bot": must be human, gpt or system (user and assistant are accepted too)`},
		{FormatShareGPT, `{"conversations": [{"from": "human", "value": 1}, {"from": "gpt", "value": "hello"}]}`,
			`conversations[0].value is a number: must be a string`},
		{FormatAlpaca, `{"instruction": "Say hi", "output": 2}`, `"output" is a number: must be a string`},
		{FormatAlpaca, `{"instruction": "Say hi", "output": "hi", "input": true}`, `"input" is a boolean: must be a string or null`},
		{FormatMessages, `{"messages": [{"role": "bot", "content": "hi"}]}`, `messages[0].role is "bot": must be system, user or assistant`},
	}
	for _, tt := range tests {
		r := validate(t, tt.line+"\n", Options{Format: tt.format})
		if len(r.Issues) < 2 || r.Issues[1].Message != tt.want { // Issues[0] is too_few_examples
			t.Errorf("Validate(%q, %s) issues = %+v, want the first line's to say %q", tt.line, tt.format, r.Issues, tt.want)
		}
	}
}

func TestConversionWritesOneMessagesLinePerLine(t *testing.T) {
	in := "\xef\xbb\xbf" + `{"conversations": [{"from": "human", "value": "a \"quote\"\n<b>\u0001"}, {"from": "gpt", "value": "ok", "weight": 1.0}], "id": 3}` + "\r\n" +
		"\n" +
		`{"conversations": [{"from": "bot", "value": "x"}]}` + "\n" +
		`{"conversations": [{"from": "user", "value": "\ud83d\ude00"}, {"from": "assistant", "value": "\ud83d"}]}`
	want := `{"messages":[{"role":"user","content":"a \"quote\"\n<b>\u0001"},{"role":"assistant","content":"ok","weight":1}]}` + "\n" +
		"\n" +
		"\n" +
		`{"messages":[{"role":"user","content":"😀"},{"role":"assistant","content":"` + "\ufffd" + `"}]}` + "\n"
	var out bytes.Buffer
	r, err := Validate(context.Background(), strings.NewReader(in), byteCounter, Options{Format: FormatShareGPT, Converted: &out})
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != want {
		t.Errorf("converted =\n%s\nwant\n%s", out.String(), want)
	}
	if r.Lines != 4 || r.Examples != 2 {
		t.Errorf("Validate = %d lines, %d examples; want 4, 2", r.Lines, r.Examples)
	}

	out.Reset()
	if _, err := Validate(context.Background(), strings.NewReader(`{"instruction": "Sum", "input": "1 and 2", "output": "3", "system": "Be exact."}`+"\n"+`{"instruction": "Sum", "input": " ", "output": "3", "system": ""}`), byteCounter, Options{Format: FormatAlpaca, Converted: &out}); err != nil {
		t.Fatal(err)
	}
	want = `{"messages":[{"role":"system","content":"Be exact."},{"role":"user","content":"Sum\n\n1 and 2"},{"role":"assistant","content":"3"}]}` + "\n" +
		`{"messages":[{"role":"user","content":"Sum"},{"role":"assistant","content":"3"}]}` + "\n"
	if out.String() != want {
		t.Errorf("converted alpaca =\n%s\nwant\n%s", out.String(), want)
	}
}

func TestValidateRefusesAnUnknownFormat(t *testing.T) {
	if _, err := Validate(context.Background(), strings.NewReader(goodLine), byteCounter, Options{Format: "openai"}); err == nil {
		t.Error("Validate with format openai: no error, want one")
	}
	for _, s := range []string{"", "messages", "sharegpt", "alpaca"} {
		if _, err := ParseFormat(s); err != nil {
			t.Errorf("ParseFormat(%q) = %v, want no error", s, err)
		}
	}
}

// qwenCounter is the exact counter the service uses.
func qwenCounter(t testing.TB) chat.Counter {
	t.Helper()
	tok, err := tokenizer.Qwen3()
	if err != nil {
		t.Fatalf("tokenizer.Qwen3: %v", err)
	}
	c, err := chat.NewCounter(tok, chat.ChatMLNoThink)
	if err != nil {
		t.Fatalf("chat.NewCounter: %v", err)
	}
	return c
}

// sameCounts fails unless two reports count the same examples and tokens
// with the same stats and validation split.
func sameCounts(t *testing.T, what string, got, want *Report) {
	t.Helper()
	if !got.Valid || !want.Valid {
		t.Fatalf("%s: valid %v and %v, want both valid; issues %+v and %+v", what, got.Valid, want.Valid, got.Issues, want.Issues)
	}
	type counts struct {
		Lines, BlankLines, Examples int64
		Tokens                      Tokens
		Stats                       Stats
		Split                       SplitTokens
		Warnings                    map[Code]int64
	}
	of := func(r *Report) counts {
		return counts{r.Lines, r.BlankLines, r.Examples, r.Tokens, r.Stats, r.Split, r.WarningCounts}
	}
	if g, w := of(got), of(want); !reflect.DeepEqual(g, w) {
		t.Errorf("%s: counts\n%+v\nwant (the messages file's)\n%+v", what, g, w)
	}
}

func TestShareGPTFileCountsAsItsMessagesFile(t *testing.T) {
	c := qwenCounter(t)
	ctx := context.Background()
	var wantConv, gotConv bytes.Buffer
	want, err := Validate(ctx, bytes.NewReader(readFixture(t, "sample.jsonl")), c, Options{Converted: &wantConv})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Validate(ctx, bytes.NewReader(readFixture(t, "sample.sharegpt.jsonl")), c, Options{Format: FormatShareGPT, Converted: &gotConv})
	if err != nil {
		t.Fatal(err)
	}
	sameCounts(t, "sample.sharegpt.jsonl", got, want)
	if !bytes.Equal(gotConv.Bytes(), wantConv.Bytes()) {
		t.Errorf("sample.sharegpt.jsonl converts to other lines than sample.jsonl")
	}
	again, err := Validate(ctx, bytes.NewReader(gotConv.Bytes()), c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sameCounts(t, "sample.sharegpt.jsonl converted", again, want)
}

func TestAlpacaFileCountsAsItsMessagesFile(t *testing.T) {
	data := readFixture(t, "sample.alpaca.jsonl")
	// The equivalent messages file, built here from the documented rule
	// with encoding/json, not by the converter.
	var equiv bytes.Buffer
	for _, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		var a struct {
			Instruction, Output string
			Input, System       *string
		}
		if err := json.Unmarshal(line, &a); err != nil {
			t.Fatal(err)
		}
		var msgs []map[string]string
		if a.System != nil && strings.TrimSpace(*a.System) != "" {
			msgs = append(msgs, map[string]string{"role": "system", "content": *a.System})
		}
		user := a.Instruction
		if a.Input != nil && strings.TrimSpace(*a.Input) != "" {
			user += "\n\n" + *a.Input
		}
		msgs = append(msgs, map[string]string{"role": "user", "content": user}, map[string]string{"role": "assistant", "content": a.Output})
		b, _ := json.Marshal(map[string]any{"messages": msgs})
		equiv.Write(append(b, '\n'))
	}
	c := qwenCounter(t)
	ctx := context.Background()
	want, err := Validate(ctx, &equiv, c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var conv bytes.Buffer
	got, err := Validate(ctx, bytes.NewReader(data), c, Options{Format: FormatAlpaca, Converted: &conv})
	if err != nil {
		t.Fatal(err)
	}
	sameCounts(t, "sample.alpaca.jsonl", got, want)
	again, err := Validate(ctx, &conv, c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sameCounts(t, "sample.alpaca.jsonl converted", again, want)
}

// contentCounter counts from the roles, contents and weights themselves,
// so that two conversations that differ anywhere almost surely count
// differently.
var contentCounter = fakeCounter{count: func(msgs []chat.Message) (total, trained int) {
	for _, m := range msgs {
		h := 7
		for i := 0; i < len(m.Content); i++ {
			h = (h*31 + int(m.Content[i])) % 1009
		}
		n := len(m.Role) + len(m.Content) + h + 1
		if m.Weight != nil {
			n += 3 * *m.Weight
		}
		total += n
		if m.Role == "assistant" && (m.Weight == nil || *m.Weight == 1) {
			trained += n
		}
	}
	return total, trained
}}

func FuzzShareGPT(f *testing.F) {
	f.Add(readFixture(f, "sample.sharegpt.jsonl"))
	for _, s := range []string{
		`{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello", "weight": 0}]}`,
		`{"conversations": [{"from": "system", "value": "a\u00e9\ud83d"}, {"from": "user", "value": "\"\\\/\b\f\n\r\t"}, {"from": "assistant", "value": "x"}], "id": 1}`,
		`{"conversations": [{"from": "bot", "value": 1}, null, {"from": "chatgpt"}], "conversations": []}`,
		"\xef\xbb\xbf{\"conversations\": []}\r\n\n  \n[1]", `{"conversations": "x"}`, `{"c\u006fnversations": [{"fr\u006fm": "gpt", "value": "v"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkConversion(t, FormatShareGPT, data) })
}

func FuzzAlpaca(f *testing.F) {
	f.Add(readFixture(f, "sample.alpaca.jsonl"))
	for _, s := range []string{
		`{"instruction": "Sum", "input": "1 and 2", "output": "3", "system": "Be exact."}`,
		`{"instruction": "Sum", "input": null, "output": "3", "system": ""}` + "\n" + `{"instruction": " ", "input": [], "output": null, "text": {}}`,
		`{"instruction": "a\u0000b\ud800", "output": "\u2028", "output": "x", "input": "\t"}`,
		"\xef\xbb\xbf{}\r\n\n  \n\"s\"", `{"instr\u0075ction": "i", "output": "o"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkConversion(t, FormatAlpaca, data) })
}

// checkConversion holds Validate in format to its promises on any input:
// a consistent report, the same whatever the reads, a parser that accepts
// exactly what encoding/json does, and a converted file of one line per
// line whose examples count exactly as the original's.
func checkConversion(t *testing.T, format Format, data []byte) {
	ctx := context.Background()
	for _, opts := range []Options{
		{MaxIssues: 3, MaxSeqLength: 256},
		{MaxLineBytes: 40, MaxIssues: 2, MaxUniqueExamples: 2},
	} {
		opts.Format = format
		var conv bytes.Buffer
		o := opts
		o.Converted = &conv
		want, err := Validate(ctx, bytes.NewReader(data), contentCounter, o)
		if err != nil {
			t.Fatalf("Validate(%q, %s) error: %v", data, format, err)
		}
		checkConsistent(t, data, want, opts)
		var conv2 bytes.Buffer
		o.Converted = &conv2
		got, err := Validate(ctx, iotest.OneByteReader(bytes.NewReader(data)), contentCounter, o)
		if err != nil {
			t.Fatalf("Validate(%q, %s) one byte at a time error: %v", data, format, err)
		}
		if !reflect.DeepEqual(got, want) || !bytes.Equal(conv.Bytes(), conv2.Bytes()) {
			t.Fatalf("Validate(%q, %s) one byte at a time = %+v, want %+v", data, format, got, want)
		}
		if n := int64(bytes.Count(conv.Bytes(), []byte("\n"))); n != want.Lines {
			t.Fatalf("Validate(%q, %s) converted %d lines of %d", data, format, n, want.Lines)
		}
		again, err := Validate(ctx, bytes.NewReader(conv.Bytes()), contentCounter,
			Options{MaxIssues: opts.MaxIssues, MaxSeqLength: opts.MaxSeqLength, MaxUniqueExamples: opts.MaxUniqueExamples})
		if err != nil {
			t.Fatal(err)
		}
		// Only dataset-level errors: a line with an error is converted
		// to a blank line.
		if sumCodes(again.ErrorCounts) != again.ErrorCounts[CodeTooFewExamples]+again.ErrorCounts[CodeEmptyFile] {
			t.Fatalf("converted %q has errors %v; the original %v", conv.Bytes(), again.ErrorCounts, want.ErrorCounts)
		}
		type counts struct {
			Examples int64
			Tokens   Tokens
			Stats    Stats
			Split    SplitTokens
			Warn     [3]int64
		}
		of := func(r *Report) counts {
			w := r.WarningCounts
			return counts{r.Examples, r.Tokens, r.Stats, r.Split, [3]int64{w[CodeDuplicateExample], w[CodeExampleTooLong], w[CodeNoTrainedTokens]}}
		}
		if g, w := of(again), of(want); !reflect.DeepEqual(g, w) {
			t.Fatalf("converted %q counts %+v, the original %q (%s) %+v", conv.Bytes(), g, data, format, w)
		}
	}
	// The parser accepts exactly the lines encoding/json does.
	p := lineParser{format: format, names: namesOf(format)}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if !utf8.Valid(line) {
			continue
		}
		if ok, want := p.parse(line), json.Valid(line); ok != want {
			t.Fatalf("parse(%q, %s) = %v (%s at %d), json.Valid = %v", line, format, ok, p.errWhat, p.errPos, want)
		}
	}
}

func sumCodes(m map[Code]int64) int64 {
	var n int64
	for _, c := range m {
		n += c
	}
	return n
}

// The converted file keeps every line number, blank lines included, so the
// validation split (a function of line numbers) holds out the same
// conversations of it as of the upload.
func TestTheConvertedFileHoldsOutTheSameLines(t *testing.T) {
	var in strings.Builder
	for i := range 260 {
		if i%7 == 3 {
			in.WriteString("\r\n") // a blank line
		}
		if i%11 == 5 {
			in.WriteString("   \n") // a blank line of spaces
		}
		in.WriteString(`{"conversations": [{"from": "human", "value": "Where is order ` + strings.Repeat("x", i) + `?"}, {"from": "gpt", "value": "It ships tomorrow."}]}` + "\n")
	}
	var conv bytes.Buffer
	got := validate(t, in.String(), Options{Format: FormatShareGPT, Converted: &conv})
	again := validate(t, conv.String(), Options{})
	if !got.Valid || got.BlankLines == 0 || len(got.Split.HeldOut) != 200 {
		t.Fatalf("Validate = valid %v, %d blank lines, %d held-out counts; want valid, some, 200", got.Valid, got.BlankLines, len(got.Split.HeldOut))
	}
	if got.Lines != again.Lines || got.BlankLines != again.BlankLines || !reflect.DeepEqual(got.Split, again.Split) {
		t.Errorf("converted file: %d lines (%d blank), split %v; the upload %d (%d), %v", again.Lines, again.BlankLines, again.Split.HeldOut[:3], got.Lines, got.BlankLines, got.Split.HeldOut[:3])
	}
}
