package dataset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/brightrun/brightrun/shared/chat"
	"github.com/brightrun/brightrun/shared/holdout"
)

// The roles a message may have.
const (
	roleSystem    = "system"
	roleUser      = "user"
	roleAssistant = "assistant"
)

// Validate checks the chat JSONL dataset read from r in one pass and
// returns its report; bad data never makes it fail, it only fills the
// report. It returns an error only when reading r fails, when ctx is
// cancelled, or when c or opts are unusable.
//
// Memory stays bounded whatever the size of r: one line of at most
// opts.MaxLineBytes, two fixed-size histograms, at most opts.MaxIssues
// issues of each severity, and the duplicate detector's set of at most
// opts.MaxUniqueExamples hashes.
//
// c counts the tokens of each valid example. Validate reuses the slice it
// passes to c.Count, and the weights it points to, from one example to
// the next: Count must not keep them (the strings are safe to keep).
func Validate(ctx context.Context, r io.Reader, c chat.Counter, opts Options) (*Report, error) {
	if c == nil {
		return nil, errors.New("validate dataset: nil token counter")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("validate dataset: options: %w", err)
	}
	v := newValidator(c, o)
	lr := newLineReader(ctx, r, o.MaxLineBytes, o.Progress)
	for {
		line, n, tooLong, ok := lr.next()
		if !ok {
			break
		}
		v.line(line, n, tooLong)
	}
	if lr.err != nil {
		return nil, fmt.Errorf("validate dataset: line %d: %w", v.lines+1, lr.err)
	}
	return v.finish(lr.read), nil
}

// validator holds the state of one Validate call.
type validator struct {
	counter chat.Counter
	opts    Options

	p     lineParser
	msgs  []chat.Message
	wts   []int
	dedup *dedupSet
	msgsH histogram
	toksH histogram
	// heldOut and first are the split's counts (SplitTokens).
	heldOut *holdout.Smallest[[2]int64]
	first   [][2]int64
	counts  [numChecks]int64

	lines, blank, nonBlank, examples int64
	tokens                           Tokens
	overMax                          int64
	errorCount                       int64 // errors so far, all lines
	issues                           []Issue
	kept                             [2]int // issues listed, by severity: errors, warnings
	truncated                        Truncated
}

func newValidator(c chat.Counter, o Options) *validator {
	return &validator{counter: c, opts: o, dedup: newDedupSet(o.MaxUniqueExamples),
		heldOut: holdout.NewSmallest[[2]int64](holdout.MaxExamples), first: make([][2]int64, 0, holdout.MaxExamples)}
}

// line checks one line of n bytes, without its '\n'.
func (v *validator) line(line []byte, n int64, tooLong bool) {
	v.lines++
	if tooLong {
		v.nonBlank++
		v.add(chkLineTooLong, -1, "line is %d bytes: over the %d-byte limit", n, v.opts.MaxLineBytes)
		return
	}
	if v.lines == 1 {
		line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	if isBlank(line) {
		v.blank++
		return
	}
	v.nonBlank++
	if !utf8.Valid(line) {
		v.add(chkInvalidUTF8, -1, "line is not valid UTF-8 at byte %d", firstInvalid(line)+1)
		return
	}
	p := &v.p
	if !p.parse(line) {
		v.add(chkInvalidJSON, -1, "invalid JSON at byte %d: %s, found %s", p.errPos+1, p.errWhat, describeAt(line, p.errPos))
		return
	}
	if p.top != kindObject {
		v.add(chkNotObject, -1, `line is %s: must be a JSON object with a "messages" array`, p.top)
		return
	}
	before := v.errorCount
	v.checkMessages()
	if v.errorCount == before {
		v.example()
	}
}

// checkMessages reports the issues of a line that is a JSON object.
func (v *validator) checkMessages() {
	p := &v.p
	for _, k := range p.unknown {
		if k.msg < 0 {
			v.add(chkUnknownKey, -1, "unknown key %s is ignored", quote(p.str(k.key)))
		}
	}
	switch p.messages {
	case kindArray:
	case kindNone:
		v.add(chkMissingMessages, -1, `line has no "messages" key`)
		return
	default:
		v.add(chkMissingMessages, -1, `"messages" is %s: must be an array`, p.messages)
		return
	}
	if len(p.msgs) == 0 {
		v.add(chkEmptyMessages, -1, `"messages" is an empty array`)
		return
	}
	unknown := p.unknown
	prev := ""
	hasAssistant := false
	for i := range p.msgs {
		m := &p.msgs[i]
		if m.kind != kindObject {
			v.add(chkInvalidMessage, i, "messages[%d] is %s: must be an object", i, m.kind)
			prev = ""
			continue
		}
		role := v.checkRole(i, m)
		v.checkContent(i, m)
		v.checkWeight(i, m, role)
		switch {
		case role == roleSystem && i > 0:
			v.add(chkSystemNotFirst, i, "messages[%d] is a system message: only messages[0] may be one", i)
		case role == roleAssistant:
			hasAssistant = true
		}
		if (role == roleUser || role == roleAssistant) && role == prev {
			v.add(chkNonAlternating, i, "messages[%d] is a second %s message in a row", i, role)
		}
		prev = role
		for len(unknown) > 0 && unknown[0].msg <= i {
			if k := unknown[0]; k.msg == i {
				v.add(chkUnknownKey, i, "messages[%d] has unknown key %s: it is ignored", i, quote(p.str(k.key)))
			}
			unknown = unknown[1:]
		}
	}
	if !hasAssistant {
		v.add(chkMissingAssistant, -1, "conversation has no assistant message")
	}
}

// checkRole reports a bad role of messages[i] and returns the role, or ""
// when it is not one of the three.
func (v *validator) checkRole(i int, m *message) string {
	switch m.role.kind {
	case kindNone:
		v.add(chkInvalidRole, i, "messages[%d] has no role", i)
		return ""
	case kindString:
	default:
		v.add(chkInvalidRole, i, "messages[%d].role is %s: must be system, user or assistant", i, m.role.kind)
		return ""
	}
	switch r := v.p.str(m.role.val); string(r) {
	case roleSystem:
		return roleSystem
	case roleUser:
		return roleUser
	case roleAssistant:
		return roleAssistant
	default:
		v.add(chkInvalidRole, i, "messages[%d].role is %s: must be system, user or assistant", i, quote(r))
		return ""
	}
}

func (v *validator) checkContent(i int, m *message) {
	switch m.content.kind {
	case kindString:
		s := v.p.str(m.content.val)
		switch {
		case len(s) == 0:
			v.add(chkEmptyContent, i, "messages[%d].content is empty", i)
		case isSpace(s):
			v.add(chkEmptyContent, i, "messages[%d].content is only whitespace", i)
		}
	case kindNone:
		v.add(chkInvalidContent, i, "messages[%d] has no content", i)
	case kindArray:
		v.add(chkInvalidContent, i, "messages[%d].content is an array: must be a string (multimodal content is not supported)", i)
	default:
		v.add(chkInvalidContent, i, "messages[%d].content is %s: must be a string", i, m.content.kind)
	}
}

func (v *validator) checkWeight(i int, m *message, role string) {
	switch {
	case m.weight.kind == kindNone:
	case role != roleAssistant && role != "":
		v.add(chkInvalidWeight, i, "messages[%d].weight is set on a %s message: only assistant messages take one", i, role)
	case m.weight.kind != kindNumber:
		v.add(chkInvalidWeight, i, "messages[%d].weight is %s: must be the number 0 or 1", i, m.weight.kind)
	default:
		if lit := v.p.str(m.weight.val); !validWeight(lit) {
			v.add(chkInvalidWeight, i, "messages[%d].weight is %s: must be 0 or 1", i, shorten(lit))
		}
	}
}

func validWeight(lit []byte) bool {
	_, ok := weightValue(lit)
	return ok
}

// example counts a valid line as an example: its tokens, its stats and
// the warnings only a valid example can have.
func (v *validator) example() {
	p := &v.p
	v.examples++
	// One string for the whole line; each content is a slice of it.
	text := string(p.arena)
	v.msgs = v.msgs[:0]
	v.wts = append(v.wts[:0], make([]int, len(p.msgs))...)
	trains := false
	for i := range p.msgs {
		m := &p.msgs[i]
		msg := chat.Message{Content: text[m.content.val.off : m.content.val.off+m.content.val.n]}
		switch string(p.str(m.role.val)) {
		case roleSystem:
			msg.Role = roleSystem
		case roleUser:
			msg.Role = roleUser
		default:
			msg.Role = roleAssistant
			trains = trains || m.weight.kind == kindNone
		}
		if m.weight.kind == kindNumber {
			v.wts[i], _ = weightValue(p.str(m.weight.val))
			msg.Weight = &v.wts[i]
			trains = trains || v.wts[i] == 1
		}
		v.msgs = append(v.msgs, msg)
	}
	if !trains {
		v.add(chkNoTrainedTokens, -1, "every assistant message has weight 0: the example trains nothing")
	}
	total, trained := v.counter.Count(v.msgs)
	v.tokens.Total += int64(total)
	v.tokens.Trained += int64(trained)
	counts := [2]int64{int64(total), int64(trained)}
	v.heldOut.Add(holdout.KeyOf(0, v.lines), counts)
	if len(v.first) < holdout.MaxExamples {
		v.first = append(v.first, counts)
	}
	if total > v.opts.MaxSeqLength {
		v.overMax++
		v.add(chkExampleTooLong, -1, "conversation is %d tokens: over max_seq_length %d, the trainer will truncate it", total, v.opts.MaxSeqLength)
	}
	if first := v.dedup.check(v.msgs, v.lines); first > 0 {
		v.add(chkDuplicateExample, -1, "conversation is the same as line %d", first)
	}
	v.msgsH.add(uint64(len(v.msgs)))
	v.toksH.add(uint64(max(total, 0)))
}

// add counts an issue on the current line and lists it while its
// severity's list has room. msg is the message index, or -1.
func (v *validator) add(c check, msg int, format string, args ...any) {
	v.counts[c]++
	sev := c.severity()
	s := 0
	if sev == SeverityError {
		v.errorCount++
	} else {
		s = 1
	}
	if v.kept[s] >= v.opts.MaxIssues {
		if s == 0 {
			v.truncated.Errors = true
		} else {
			v.truncated.Warnings = true
		}
		return
	}
	v.kept[s]++
	is := Issue{Code: c.code(), Severity: sev, Line: v.lines, Message: fmt.Sprintf(format, args...)}
	if msg >= 0 {
		idx := msg
		is.MessageIndex = &idx
	}
	v.issues = append(v.issues, is)
}

// finish adds the dataset-level issues and builds the report.
func (v *validator) finish(n int64) *Report {
	switch {
	case v.nonBlank == 0:
		v.datasetError(chkEmptyFile, "file has no examples: it is empty or only blank lines")
	case v.examples < MinExamples:
		noun := "examples"
		if v.examples == 1 {
			noun = "example"
		}
		v.datasetError(chkTooFewExamples, fmt.Sprintf("file has %d valid %s: at least %d are needed", v.examples, noun, MinExamples))
	}
	r := &Report{
		Summary: Summary{
			Valid:         v.errorCount == 0,
			Lines:         v.lines,
			BlankLines:    v.blank,
			Examples:      v.examples,
			Bytes:         n,
			Tokens:        v.tokens,
			ErrorCounts:   map[Code]int64{},
			WarningCounts: map[Code]int64{},
			Truncated:     v.truncated,
			Stats: Stats{
				MessagesPerExample:       v.msgsH.distribution(),
				TokensPerExample:         v.toksH.distribution(),
				ExamplesOverMaxSeqLength: v.overMax,
				MaxSeqLength:             v.opts.MaxSeqLength,
			},
			Split: SplitTokens{HeldOut: v.heldOut.Sorted(), First: v.first},
		},
		Issues: v.issues,
	}
	r.Truncated.Duplicates = v.dedup.full
	for c, n := range v.counts {
		if n == 0 {
			continue
		}
		if ch := check(c); ch.severity() == SeverityError {
			r.ErrorCounts[ch.code()] = n
		} else {
			r.WarningCounts[ch.code()] = n
		}
	}
	if r.Issues == nil {
		r.Issues = []Issue{}
	}
	return r
}

// datasetError counts a dataset-level error and lists it first. It is
// always listed: when the errors are at their cap it takes the place of
// the last line-level one.
func (v *validator) datasetError(c check, msg string) {
	v.counts[c]++
	v.errorCount++
	if v.opts.MaxIssues <= 0 {
		v.truncated.Errors = true
		return
	}
	if v.kept[0] >= v.opts.MaxIssues {
		for i := len(v.issues) - 1; i >= 0; i-- {
			if v.issues[i].Severity == SeverityError {
				v.issues = append(v.issues[:i], v.issues[i+1:]...)
				break
			}
		}
		v.truncated.Errors = true
	} else {
		v.kept[0]++
	}
	v.issues = append([]Issue{{Code: c.code(), Severity: SeverityError, Message: msg}}, v.issues...)
}

// isBlank reports whether line holds only JSON whitespace.
func isBlank(line []byte) bool {
	for _, c := range line {
		if c != ' ' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}

// isSpace reports whether s, valid UTF-8, holds only Unicode whitespace.
func isSpace(s []byte) bool {
	for len(s) > 0 {
		if c := s[0]; c < utf8.RuneSelf {
			if c != ' ' && (c < '\t' || c > '\r') {
				return false
			}
			s = s[1:]
			continue
		}
		r, n := utf8.DecodeRune(s)
		if !unicode.IsSpace(r) {
			return false
		}
		s = s[n:]
	}
	return true
}

// firstInvalid returns the offset of the first byte of b that is not part
// of valid UTF-8.
func firstInvalid(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// describeAt names what is at b[i] for a syntax error message.
func describeAt(b []byte, i int) string {
	if i >= len(b) {
		return "end of line"
	}
	r, _ := utf8.DecodeRune(b[i:])
	return strconv.QuoteRune(r)
}

// maxQuoted is how many bytes of a value an issue message quotes.
const maxQuoted = 60

// quote quotes s for an issue message, cut to maxQuoted bytes.
func quote(s []byte) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(string(s))
	}
	return strconv.Quote(string(truncate(s))) + "…"
}

// shorten returns s, cut to maxQuoted bytes, for an issue message.
func shorten(s []byte) string {
	if len(s) <= maxQuoted {
		return string(s)
	}
	return string(truncate(s)) + "…"
}

// truncate cuts s to at most maxQuoted bytes, on a rune boundary.
func truncate(s []byte) []byte {
	if len(s) <= maxQuoted {
		return s
	}
	n := maxQuoted
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
