package dataset

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestWeightValueAcceptsExactlyZeroAndOne(t *testing.T) {
	tests := []struct {
		lit    string
		want   int
		wantOK bool
	}{
		{"0", 0, true},
		{"1", 1, true},
		{"1.0", 1, true},
		{"1.000", 1, true},
		{"0.0", 0, true},
		{"-0", 0, true},
		{"-0.0e5", 0, true},
		{"1e0", 1, true},
		{"1E+0", 1, true},
		{"10e-1", 1, true},
		{"100E-2", 1, true},
		{"0.1e1", 1, true},
		{"0.01e2", 1, true},
		{"2", 0, false},
		{"-1", 0, false},
		{"0.5", 0, false},
		{"11", 0, false},
		{"1e1", 0, false},
		{"10", 0, false},
		{"0.1", 0, false},
		{"1.0000000000000000001", 0, false},
		{"0.99999999999999999999", 0, false},
		{"1e99999999999999999999", 0, false},
		{"1e-99999999999999999999", 0, false},
	}
	for _, tt := range tests {
		got, ok := weightValue([]byte(tt.lit))
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("weightValue(%q) = %d, %v, want %d, %v", tt.lit, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestParseStopsAtEncodingJSONsNestingLimit(t *testing.T) {
	for _, depth := range []int{9999, 10000, 10001} {
		for _, line := range []string{
			strings.Repeat("[", depth) + strings.Repeat("]", depth),
			strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth),
			`{"messages": [{"x": ` + strings.Repeat("[", depth-3) + strings.Repeat("]", depth-3) + `}]}`,
		} {
			var p lineParser
			if got, want := p.parse([]byte(line)), json.Valid([]byte(line)); got != want {
				t.Errorf("parse(%d levels %.20q...) = %v, want %v as json.Valid", depth, line, got, want)
			}
		}
	}
}

func TestParseDecodesStringsLikeEncodingJSON(t *testing.T) {
	tests := []string{
		`plain text`,
		`quote \" backslash \\ slash \/`,
		`controls \b\f\n\r\t`,
		`unicode \u00e9\u4e1c\u00A0 and raw é東`,
		`a pair \ud83d\ude00 in the middle`,
		`a lone high \ud83d then text`,
		`a lone low \ude00`,
		`high then escape \ud83d\n`,
		`two highs \ud83d\ud83d\ude00`,
		`nul \u0000 inside`,
		``,
	}
	for _, raw := range tests {
		line := `{"messages": [{"role": "user", "content": "` + raw + `"}]}`
		var p lineParser
		if !p.parse([]byte(line)) {
			t.Errorf("parse(%q) failed: %s at %d", line, p.errWhat, p.errPos)
			continue
		}
		var want string
		if err := json.Unmarshal([]byte(`"`+raw+`"`), &want); err != nil {
			t.Fatalf("json.Unmarshal(%q): %v", raw, err)
		}
		if got := string(p.str(p.msgs[0].content.val)); got != want {
			t.Errorf("parse(%q) content = %q, want %q", line, got, want)
		}
	}
}

// FuzzParseLine checks the hand-written scanner against encoding/json: it
// must accept exactly the lines json.Valid accepts, and decode roles,
// contents, kinds and unknown keys as json.Unmarshal does.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		goodLine,
		`{"messages": [{"role": "user", "content": "a\u00e9\ud83d\ude00", "weight": 1.0e0, "x": [1, {"y": null}]}], "id": "z"}`,
		`{"messages": [1, "a", null, true, [], {}], "messages": []}`,
		`[{"a": 1}]`, `"x"`, `-0.5e+3`, `{"a":}`, `{"a" 1}`, `[1,]`, `{"\u0072ole": 1}`, `tru`, `{"a": "\ud800"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if !utf8.ValidString(line) {
			return
		}
		var p lineParser
		ok := p.parse([]byte(line))
		if want := json.Valid([]byte(line)); ok != want {
			t.Fatalf("parse(%q) = %v (%s at %d), json.Valid = %v", line, ok, p.errWhat, p.errPos, want)
		}
		if !ok {
			return
		}
		var v any
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber() // a float64 overflows on 1e400
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("json.Unmarshal(%q): %v", line, err)
		}
		obj, isObj := v.(map[string]any)
		if isObj != (p.top == kindObject) {
			t.Fatalf("parse(%q) top = %v, json.Unmarshal gives %T", line, p.top, v)
		}
		if !isObj {
			return
		}
		var lineKeys []string
		for k := range obj {
			if k != "messages" {
				lineKeys = append(lineKeys, k)
			}
		}
		msgs, present := obj["messages"]
		if got, want := p.messages, kindOfValue(msgs, present); got != want {
			t.Fatalf("parse(%q) messages kind = %v, want %v", line, got, want)
		}
		arr, _ := msgs.([]any)
		if len(p.msgs) != len(arr) {
			t.Fatalf("parse(%q) has %d messages, want %d", line, len(p.msgs), len(arr))
		}
		var msgKeys []string
		for i, el := range arr {
			m := p.msgs[i]
			if m.kind != kindOfValue(el, true) {
				t.Fatalf("parse(%q) messages[%d] kind = %v, want %T", line, i, m.kind, el)
			}
			mo, ok := el.(map[string]any)
			if !ok {
				continue
			}
			for _, f := range []struct {
				name string
				got  field
			}{{"role", m.role}, {"content", m.content}, {"weight", m.weight}} {
				val, present := mo[f.name]
				if f.got.kind != kindOfValue(val, present) {
					t.Fatalf("parse(%q) messages[%d].%s kind = %v, want %T", line, i, f.name, f.got.kind, val)
				}
				if s, ok := val.(string); ok && string(p.str(f.got.val)) != s {
					t.Fatalf("parse(%q) messages[%d].%s = %q, want %q", line, i, f.name, p.str(f.got.val), s)
				}
			}
			for k := range mo {
				if k != "role" && k != "content" && k != "weight" {
					msgKeys = append(msgKeys, k)
				}
			}
		}
		var gotLine, gotMsg []string
		for _, k := range p.unknown {
			if k.msg < 0 {
				gotLine = append(gotLine, string(p.str(k.key)))
			} else {
				gotMsg = append(gotMsg, string(p.str(k.key)))
			}
		}
		if !sameSet(gotLine, lineKeys) || !sameSet(gotMsg, msgKeys) {
			t.Fatalf("parse(%q) unknown keys = %q and %q, want %q and %q", line, gotLine, gotMsg, lineKeys, msgKeys)
		}
	})
}

// kindOfValue is the kind of a value decoded by encoding/json.
func kindOfValue(v any, present bool) valueKind {
	if !present {
		return kindNone
	}
	switch v.(type) {
	case string:
		return kindString
	case json.Number:
		return kindNumber
	case bool:
		return kindBool
	case nil:
		return kindNull
	case map[string]any:
		return kindObject
	case []any:
		return kindArray
	}
	return kindNone
}

// sameSet reports whether a and b hold the same strings, ignoring order
// and repeats.
func sameSet(a, b []string) bool {
	set := func(s []string) []string {
		m := map[string]bool{}
		var out []string
		for _, x := range s {
			if !m[x] {
				m[x] = true
				out = append(out, x)
			}
		}
		sort.Strings(out)
		return out
	}
	return reflect.DeepEqual(set(a), set(b))
}
