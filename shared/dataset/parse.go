package dataset

import (
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds a hand-written JSON scanner for one dataset line. It
// accepts exactly what encoding/json accepts (json.Valid, nesting limit
// included; FuzzParseLine checks it against encoding/json) and decodes
// strings as json.Unmarshal does, but it runs several times faster: one
// pass, no reflection, and only the values the checks need are copied.

// maxDepth is encoding/json's nesting limit: deeper lines are invalid JSON.
const maxDepth = 10000

// valueKind is the JSON type of a value.
type valueKind uint8

const (
	kindNone valueKind = iota // absent, or not a JSON value
	kindString
	kindNumber
	kindBool
	kindNull
	kindObject
	kindArray
)

// String returns the kind as it reads in an issue message: "a string".
func (k valueKind) String() string {
	switch k {
	case kindString:
		return "a string"
	case kindNumber:
		return "a number"
	case kindBool:
		return "a boolean"
	case kindNull:
		return "null"
	case kindObject:
		return "an object"
	case kindArray:
		return "an array"
	}
	return "not a JSON value"
}

// kindOf returns the kind of the value that starts with byte c.
func kindOf(c byte) valueKind {
	switch {
	case c == '"':
		return kindString
	case c == '{':
		return kindObject
	case c == '[':
		return kindArray
	case c == 't' || c == 'f':
		return kindBool
	case c == 'n':
		return kindNull
	case c == '-' || c >= '0' && c <= '9':
		return kindNumber
	}
	return kindNone
}

// span is a run of bytes in lineParser.arena.
type span struct{ off, n int }

// field is one key of a message: its kind (kindNone when absent) and, for
// strings, the decoded value; for numbers, the literal.
type field struct {
	kind valueKind
	val  span
}

// message is one element of "messages". kind is kindObject for a message
// object; the fields are set only then.
type message struct {
	kind    valueKind
	role    field
	content field
	weight  field
}

// unknownKey is a key the trainer ignores: on the line (msg -1) or on
// messages[msg].
type unknownKey struct {
	msg int
	key span
}

// lineParser scans one line. Its slices are reused from line to line, so
// parsing a line allocates nothing once they have grown.
type lineParser struct {
	b []byte
	i int

	// format and names say which keys the line's shape has; they are set
	// once, before the first line.
	format Format
	names  *formatNames

	// arena holds the decoded strings and number literals the spans point
	// to.
	arena []byte
	stack []byte

	// top is the kind of the line's value; the rest is set only when it
	// is an object.
	top      valueKind
	messages valueKind // kind of "messages" ("conversations"), kindNone when absent
	msgs     []message
	unknown  []unknownKey
	// fields are an Alpaca line's instruction, input, output and system.
	fields [numAlpacaFields]field

	// errPos and errWhat describe the syntax error when parse fails.
	errPos  int
	errWhat string
}

// parse scans line b, which must be valid UTF-8. It reports false, with
// errPos and errWhat set, when b is not exactly one JSON value.
func (p *lineParser) parse(b []byte) bool {
	p.b, p.i = b, 0
	if p.names == nil { // the zero parser reads the messages form
		p.names = &messagesNames
	}
	p.arena = p.arena[:0]
	p.top, p.messages = kindNone, kindNone
	p.msgs = p.msgs[:0]
	p.unknown = p.unknown[:0]
	p.fields = [numAlpacaFields]field{}
	p.errPos, p.errWhat = 0, ""

	p.skipSpace()
	if p.i >= len(b) {
		return p.fail(p.i, "expected a JSON value")
	}
	p.top = kindOf(b[p.i])
	if p.top != kindObject {
		return p.skipValue(0) && p.end()
	}
	p.i++
	p.skipSpace()
	if p.i < len(b) && b[p.i] == '}' {
		p.i++
		return p.end()
	}
	for {
		s, e, escaped, ok := p.objectKey()
		if !ok {
			return false
		}
		f := -1
		if p.format == FormatAlpaca {
			f = p.alpacaField(s, e, escaped)
		}
		switch {
		case f >= 0:
			ok = p.stringField(&p.fields[f], 1)
		case p.format != FormatAlpaca && p.keyIs(s, e, escaped, p.names.list):
			// A repeated key replaces the earlier value, as in encoding/json.
			p.msgs = p.msgs[:0]
			p.unknown = dropMessageKeys(p.unknown)
			p.messages = kindOf(b[p.i])
			if p.messages == kindArray {
				ok = p.parseMessages()
			} else {
				ok = p.skipValue(1)
			}
		default:
			p.unknown = append(p.unknown, unknownKey{msg: -1, key: p.appendString(s, e, escaped)})
			ok = p.skipValue(1)
		}
		if !ok {
			return false
		}
		p.skipSpace()
		switch {
		case p.i >= len(b):
			return p.fail(p.i, "expected ',' or '}' after object value")
		case b[p.i] == ',':
			p.i++
		case b[p.i] == '}':
			p.i++
			return p.end()
		default:
			return p.fail(p.i, "expected ',' or '}' after object value")
		}
	}
}

// parseMessages scans the "messages" array; p.b[p.i] is its '['.
func (p *lineParser) parseMessages() bool {
	b := p.b
	p.i++
	p.skipSpace()
	if p.i < len(b) && b[p.i] == ']' {
		p.i++
		return true
	}
	for {
		p.skipSpace()
		if p.i >= len(b) {
			return p.fail(p.i, "expected a JSON value")
		}
		k := kindOf(b[p.i])
		p.msgs = append(p.msgs, message{kind: k})
		var ok bool
		if k == kindObject {
			ok = p.parseMessage(len(p.msgs) - 1)
		} else {
			ok = p.skipValue(2)
		}
		if !ok {
			return false
		}
		p.skipSpace()
		switch {
		case p.i >= len(b):
			return p.fail(p.i, "expected ',' or ']' after array element")
		case b[p.i] == ',':
			p.i++
		case b[p.i] == ']':
			p.i++
			return true
		default:
			return p.fail(p.i, "expected ',' or ']' after array element")
		}
	}
}

// parseMessage scans messages[idx]; p.b[p.i] is its '{'.
func (p *lineParser) parseMessage(idx int) bool {
	b := p.b
	p.i++
	p.skipSpace()
	if p.i < len(b) && b[p.i] == '}' {
		p.i++
		return true
	}
	for {
		s, e, escaped, ok := p.objectKey()
		if !ok {
			return false
		}
		m := &p.msgs[idx]
		switch {
		case p.keyIs(s, e, escaped, p.names.content):
			ok = p.stringField(&m.content, 3)
		case p.keyIs(s, e, escaped, p.names.role):
			ok = p.stringField(&m.role, 3)
		case p.keyIs(s, e, escaped, "weight"):
			ok = p.numberField(&m.weight)
		default:
			p.unknown = append(p.unknown, unknownKey{msg: idx, key: p.appendString(s, e, escaped)})
			ok = p.skipValue(3)
		}
		if !ok {
			return false
		}
		p.skipSpace()
		switch {
		case p.i >= len(b):
			return p.fail(p.i, "expected ',' or '}' after object value")
		case b[p.i] == ',':
			p.i++
		case b[p.i] == '}':
			p.i++
			return true
		default:
			return p.fail(p.i, "expected ',' or '}' after object value")
		}
	}
}

// stringField scans a value that should be a string into f; depth is the
// nesting depth of the object it is in.
func (p *lineParser) stringField(f *field, depth int) bool {
	f.kind = kindOf(p.b[p.i])
	if f.kind != kindString {
		f.val = span{}
		return p.skipValue(depth)
	}
	s, e, escaped, ok := p.scanString()
	if !ok {
		return false
	}
	f.val = p.appendString(s, e, escaped)
	return true
}

// numberField scans a message value that should be a number into f,
// keeping the literal.
func (p *lineParser) numberField(f *field) bool {
	f.kind = kindOf(p.b[p.i])
	if f.kind != kindNumber {
		f.val = span{}
		return p.skipValue(3)
	}
	s := p.i
	if !p.scanNumber() {
		return false
	}
	off := len(p.arena)
	p.arena = append(p.arena, p.b[s:p.i]...)
	f.val = span{off, p.i - s}
	return true
}

// objectKey scans `"key" :` and the space after it; it returns the raw
// bounds of the key. At return p.b[p.i] is the value's first byte.
func (p *lineParser) objectKey() (s, e int, escaped, ok bool) {
	p.skipSpace()
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return 0, 0, false, p.fail(p.i, "expected a string key")
	}
	if s, e, escaped, ok = p.scanString(); !ok {
		return
	}
	p.skipSpace()
	if p.i >= len(p.b) || p.b[p.i] != ':' {
		return 0, 0, false, p.fail(p.i, "expected ':' after object key")
	}
	p.i++
	p.skipSpace()
	if p.i >= len(p.b) {
		return 0, 0, false, p.fail(p.i, "expected a JSON value")
	}
	return s, e, escaped, true
}

// keyIs reports whether the raw key p.b[s:e] decodes to name. Keys match
// exactly: unlike encoding/json, "Role" is not "role".
func (p *lineParser) keyIs(s, e int, escaped bool, name string) bool {
	if !escaped {
		return string(p.b[s:e]) == name
	}
	off := len(p.arena)
	p.arena = appendUnescaped(p.arena, p.b[s:e])
	match := string(p.arena[off:]) == name
	p.arena = p.arena[:off]
	return match
}

// appendString decodes the raw string p.b[s:e] into the arena.
func (p *lineParser) appendString(s, e int, escaped bool) span {
	off := len(p.arena)
	if escaped {
		p.arena = appendUnescaped(p.arena, p.b[s:e])
	} else {
		p.arena = append(p.arena, p.b[s:e]...)
	}
	return span{off, len(p.arena) - off}
}

// str returns the bytes of s.
func (p *lineParser) str(s span) []byte { return p.arena[s.off : s.off+s.n] }

// end checks that only space follows the value.
func (p *lineParser) end() bool {
	p.skipSpace()
	if p.i < len(p.b) {
		return p.fail(p.i, "unexpected data after the JSON value")
	}
	return true
}

func (p *lineParser) fail(pos int, what string) bool {
	p.errPos, p.errWhat = pos, what
	return false
}

func (p *lineParser) skipSpace() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

// skipValue scans one JSON value of any kind without keeping it; depth is
// the nesting depth of the container the value is in. It loops over an
// explicit stack rather than recursing, so deep nesting costs no
// goroutine stack.
func (p *lineParser) skipValue(depth int) bool {
	b := p.b
	// stack holds the open containers' opening bytes; it is kept in p to
	// reuse its memory.
	stack := p.stack[:0]
	defer func() { p.stack = stack }()
value:
	for {
		p.skipSpace()
		if p.i >= len(b) {
			return p.fail(p.i, "expected a JSON value")
		}
		switch c := b[p.i]; c {
		case '{', '[':
			stack = append(stack, c)
			if depth+len(stack) > maxDepth {
				return p.fail(p.i, "nesting deeper than 10000 levels")
			}
			p.i++
			p.skipSpace()
			if p.i < len(b) && b[p.i] == c+2 { // '{'+2 is '}', '['+2 is ']'
				p.i++
				stack = stack[:len(stack)-1]
				break
			}
			if c == '{' {
				if _, _, _, ok := p.objectKey(); !ok {
					return false
				}
			}
			continue value
		case '"':
			if _, _, _, ok := p.scanString(); !ok {
				return false
			}
		case 't':
			if !p.literal("true") {
				return false
			}
		case 'f':
			if !p.literal("false") {
				return false
			}
		case 'n':
			if !p.literal("null") {
				return false
			}
		default:
			if c != '-' && (c < '0' || c > '9') {
				return p.fail(p.i, "expected a JSON value")
			}
			if !p.scanNumber() {
				return false
			}
		}
		// After a value: close containers until one takes a next element.
		for {
			if len(stack) == 0 {
				return true
			}
			p.skipSpace()
			top := stack[len(stack)-1]
			switch {
			case p.i < len(b) && b[p.i] == ',':
				p.i++
				if top == '{' {
					if _, _, _, ok := p.objectKey(); !ok {
						return false
					}
				}
				continue value
			case p.i < len(b) && b[p.i] == top+2:
				p.i++
				stack = stack[:len(stack)-1]
			case top == '{':
				return p.fail(p.i, "expected ',' or '}' after object value")
			default:
				return p.fail(p.i, "expected ',' or ']' after array element")
			}
		}
	}
}

func (p *lineParser) literal(lit string) bool {
	if len(p.b)-p.i < len(lit) || string(p.b[p.i:p.i+len(lit)]) != lit {
		return p.fail(p.i, "invalid literal: expected "+lit)
	}
	p.i += len(lit)
	return true
}

// scanNumber scans a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *lineParser) scanNumber() bool {
	b, i := p.b, p.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = skipDigits(b, i+1)
	default:
		return p.fail(i, "invalid number: expected a digit")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return p.fail(i, "invalid number: expected a digit after '.'")
		}
		i = skipDigits(b, i)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return p.fail(i, "invalid number: expected a digit in the exponent")
		}
		i = skipDigits(b, i)
	}
	p.i = i
	return true
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// plain marks the bytes a string may hold as they are: everything but the
// quote, the backslash and control characters. The line was checked to be
// UTF-8 beforehand, so bytes from 0x80 up need no look.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanString scans the string at p.b[p.i] (its opening quote) and returns
// the bounds of its raw contents and whether it has escapes.
func (p *lineParser) scanString() (s, e int, escaped, ok bool) {
	b := p.b
	i := p.i + 1
	s = i
	for {
		// Eight bytes a turn while none of them needs a look.
		for i+8 <= len(b) && plain[b[i]] && plain[b[i+1]] && plain[b[i+2]] && plain[b[i+3]] &&
			plain[b[i+4]] && plain[b[i+5]] && plain[b[i+6]] && plain[b[i+7]] {
			i += 8
		}
		for i < len(b) && plain[b[i]] {
			i++
		}
		if i >= len(b) {
			return 0, 0, false, p.fail(i, "unterminated string")
		}
		switch b[i] {
		case '"':
			p.i = i + 1
			return s, i, escaped, true
		case '\\':
			escaped = true
			if i+1 >= len(b) {
				return 0, 0, false, p.fail(i+1, "unterminated string")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || hex4(b[i+2:i+6]) < 0 {
					return 0, 0, false, p.fail(i, `invalid \u escape: expected four hex digits`)
				}
				i += 6
			default:
				return 0, 0, false, p.fail(i, "invalid escape in string")
			}
		default:
			return 0, 0, false, p.fail(i, "control character in string: must be escaped")
		}
	}
}

// hex4 decodes four hex digits, or returns -1.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// appendUnescaped appends the decoded form of the raw string contents s,
// whose escapes scanString has checked. Like encoding/json it joins
// surrogate pairs and turns a lone surrogate into U+FFFD.
func appendUnescaped(dst, s []byte) []byte {
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\\' {
			i++
		}
		dst = append(dst, s[:i]...)
		if i == len(s) {
			break
		}
		s = s[i:]
		switch c := s[1]; c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(s[2:6])
			s = s[6:]
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if len(s) >= 6 && s[0] == '\\' && s[1] == 'u' {
					r2 = hex4(s[2:6])
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					r = dec
					s = s[6:]
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, c)
		}
		s = s[2:]
	}
	return dst
}

// dropMessageKeys removes the message-level keys from keys, when a
// repeated "messages" key replaces the earlier messages.
func dropMessageKeys(keys []unknownKey) []unknownKey {
	n := 0
	for _, k := range keys {
		if k.msg < 0 {
			keys[n] = k
			n++
		}
	}
	return keys[:n]
}

// weightValue returns the value of the JSON number literal lit when it is
// exactly 0 or 1, however it is spelled (1, 1.0, 1e0, 10e-1, -0.0), and
// ok false otherwise. It works on the decimal digits, so 1.0000000000000000001,
// which a float64 would round to 1, is not 1.
func weightValue(lit []byte) (v int, ok bool) {
	if len(lit) == 1 && (lit[0] == '0' || lit[0] == '1') {
		return int(lit[0] - '0'), true
	}
	neg := len(lit) > 0 && lit[0] == '-'
	if neg {
		lit = lit[1:]
	}
	// nonzero counts the nonzero digits; place is the power of ten of the
	// last one seen.
	nonzero, place, allOnes := 0, 0, true
	i := 0
	for ; i < len(lit) && lit[i] >= '0' && lit[i] <= '9'; i++ {
	}
	intDigits := i
	for k := 0; k < intDigits; k++ {
		if lit[k] != '0' {
			nonzero++
			place = intDigits - 1 - k
			allOnes = allOnes && lit[k] == '1'
		}
	}
	if i < len(lit) && lit[i] == '.' {
		i++
		for k := 1; i < len(lit) && lit[i] >= '0' && lit[i] <= '9'; i, k = i+1, k+1 {
			if lit[i] != '0' {
				nonzero++
				place = -k
				allOnes = allOnes && lit[i] == '1'
			}
		}
	}
	if nonzero == 0 {
		return 0, true
	}
	if neg || nonzero != 1 || !allOnes {
		return 0, false
	}
	exp := 0
	if i < len(lit) && (lit[i] == 'e' || lit[i] == 'E') {
		i++
		expNeg := false
		if i < len(lit) && (lit[i] == '+' || lit[i] == '-') {
			expNeg = lit[i] == '-'
			i++
		}
		for ; i < len(lit); i++ {
			if exp < 1<<30 { // past this the value is far from 1 anyway
				exp = exp*10 + int(lit[i]-'0')
			}
		}
		if expNeg {
			exp = -exp
		}
	}
	if place+exp == 0 {
		return 1, true
	}
	return 0, false
}
