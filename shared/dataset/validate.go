package dataset

import (
	"bufio"
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
	if o.Tee != nil {
		r = io.TeeReader(r, o.Tee)
	}
	v := newValidator(c, o)
	var out *bufio.Writer
	if o.Converted != nil {
		out = bufio.NewWriterSize(o.Converted, 64<<10)
	}
	lr := newLineReader(ctx, r, o.MaxLineBytes, o.Progress)
	for {
		line, n, tooLong, ok := lr.next()
		if !ok {
			break
		}
		ex := v.line(line, n, tooLong)
		if out != nil {
			v.conv = v.conv[:0]
			if ex {
				v.conv = appendMessagesLine(v.conv, v.msgs)
			} else {
				v.conv = append(v.conv, '\n')
			}
			if _, err := out.Write(v.conv); err != nil {
				return nil, fmt.Errorf("validate dataset: write converted line %d: %w", v.lines, err)
			}
		}
	}
	if lr.err != nil {
		return nil, fmt.Errorf("validate dataset: line %d: %w", v.lines+1, lr.err)
	}
	if out != nil {
		if err := out.Flush(); err != nil {
			return nil, fmt.Errorf("validate dataset: write converted lines: %w", err)
		}
	}
	return v.finish(lr.read), nil
}

// validator holds the state of one Validate call.
type validator struct {
	counter chat.Counter
	opts    Options

	p     lineParser
	names *formatNames
	msgs  []chat.Message
	// conv is the converted line being written (Options.Converted).
	conv  []byte
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

	// A part of a parallel validation (parallel.go) counts its lines from
	// 1 but does not start the file: notFirst keeps it from taking a byte
	// order mark for one. It records its examples (records) for the
	// merge, which alone knows their line numbers in the file, instead of
	// checking them for duplicates and the split.
	notFirst bool
	part     bool
	records  []record
}

func newValidator(c chat.Counter, o Options) *validator {
	v := &validator{counter: c, opts: o, names: namesOf(o.Format), dedup: newDedupSet(o.MaxUniqueExamples),
		heldOut: holdout.NewSmallest[[2]int64](holdout.MaxExamples), first: make([][2]int64, 0, holdout.MaxExamples)}
	v.p.format, v.p.names = o.Format, v.names
	return v
}

// line checks one line of n bytes, without its '\n'. It reports whether
// the line is an example; v.msgs then holds its conversation.
func (v *validator) line(line []byte, n int64, tooLong bool) bool {
	v.lines++
	if tooLong {
		v.nonBlank++
		v.add(chkLineTooLong, -1, "line is %d bytes: over the %d-byte limit", n, v.opts.MaxLineBytes)
		return false
	}
	if v.lines == 1 && !v.notFirst {
		line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	if isBlank(line) {
		v.blank++
		return false
	}
	v.nonBlank++
	if !utf8.Valid(line) {
		v.add(chkInvalidUTF8, -1, "line is not valid UTF-8 at byte %d", firstInvalid(line)+1)
		return false
	}
	p := &v.p
	if !p.parse(line) {
		v.add(chkInvalidJSON, -1, "invalid JSON at byte %d: %s, found %s", p.errPos+1, p.errWhat, describeAt(line, p.errPos))
		return false
	}
	if p.top != kindObject {
		v.add(chkNotObject, -1, "line is %s: must be %s", p.top, v.names.shape)
		return false
	}
	before := v.errorCount
	if p.format == FormatAlpaca {
		v.checkAlpaca()
	} else {
		v.checkMessages()
	}
	if v.errorCount != before {
		return false
	}
	if p.format == FormatAlpaca {
		v.alpacaMessages()
	} else {
		v.messages()
	}
	v.example()
	return true
}

// checkMessages reports the issues of a line that is a JSON object with
// a list of turns: "messages", or ShareGPT's "conversations".
func (v *validator) checkMessages() {
	p := &v.p
	nm := v.names
	v.unknownLineKeys()
	missing, empty, invalid := chkMissingMessages, chkEmptyMessages, chkInvalidMessage
	if p.format == FormatShareGPT {
		missing, empty, invalid = chkShareGPTMissingConversations, chkShareGPTEmptyConversations, chkShareGPTInvalidTurn
	}
	switch p.messages {
	case kindArray:
	case kindNone:
		v.add(missing, -1, `line has no %q key`, nm.list)
		return
	default:
		v.add(missing, -1, `%q is %s: must be an array`, nm.list, p.messages)
		return
	}
	if len(p.msgs) == 0 {
		v.add(empty, -1, `%q is an empty array`, nm.list)
		return
	}
	unknown := p.unknown
	prev := ""
	hasAssistant := false
	for i := range p.msgs {
		m := &p.msgs[i]
		if m.kind != kindObject {
			v.add(invalid, i, "%s[%d] is %s: must be an object", nm.list, i, m.kind)
			prev = ""
			continue
		}
		role := v.checkRole(i, m)
		v.checkContent(i, m)
		v.checkWeight(i, m, role)
		switch {
		case role == roleSystem && i > 0:
			v.add(chkSystemNotFirst, i, "%[1]s[%[2]d] is a system message: only %[1]s[0] may be one", nm.list, i)
		case role == roleAssistant:
			hasAssistant = true
		}
		if (role == roleUser || role == roleAssistant) && role == prev {
			v.add(chkNonAlternating, i, "%s[%d] is a second %s message in a row", nm.list, i, role)
		}
		prev = role
		for len(unknown) > 0 && unknown[0].msg <= i {
			if k := unknown[0]; k.msg == i {
				v.add(chkUnknownKey, i, "%s[%d] has unknown key %s: it is ignored", nm.list, i, quote(p.str(k.key)))
			}
			unknown = unknown[1:]
		}
	}
	if !hasAssistant {
		if p.format == FormatShareGPT {
			v.add(chkMissingAssistant, -1, `conversation has no "gpt" (assistant) turn`)
		} else {
			v.add(chkMissingAssistant, -1, "conversation has no assistant message")
		}
	}
}

// checkRole reports a bad role of messages[i] (from of conversations[i])
// and returns its chat role, or "" when it has none.
func (v *validator) checkRole(i int, m *message) string {
	nm := v.names
	c := chkInvalidRole
	if v.p.format == FormatShareGPT {
		c = chkShareGPTUnknownRole
	}
	switch m.role.kind {
	case kindNone:
		v.add(c, i, "%s[%d] has no %s", nm.list, i, nm.role)
		return ""
	case kindString:
	default:
		v.add(c, i, "%s[%d].%s is %s: must be %s", nm.list, i, nm.role, m.role.kind, nm.roles)
		return ""
	}
	r := v.p.str(m.role.val)
	role := roleOf(v.p.format, r)
	if role == "" {
		v.add(c, i, "%s[%d].%s is %s: must be %s", nm.list, i, nm.role, quote(r), nm.roles)
	}
	return role
}

func (v *validator) checkContent(i int, m *message) {
	nm := v.names
	c := chkInvalidContent
	if v.p.format == FormatShareGPT {
		c = chkShareGPTInvalidValue
	}
	switch m.content.kind {
	case kindString:
		s := v.p.str(m.content.val)
		switch {
		case len(s) == 0:
			v.add(chkEmptyContent, i, "%s[%d].%s is empty", nm.list, i, nm.content)
		case isSpace(s):
			v.add(chkEmptyContent, i, "%s[%d].%s is only whitespace", nm.list, i, nm.content)
		}
	case kindNone:
		v.add(c, i, "%s[%d] has no %s", nm.list, i, nm.content)
	case kindArray:
		v.add(c, i, "%s[%d].%s is an array: must be a string (multimodal content is not supported)", nm.list, i, nm.content)
	default:
		v.add(c, i, "%s[%d].%s is %s: must be a string", nm.list, i, nm.content, m.content.kind)
	}
}

func (v *validator) checkWeight(i int, m *message, role string) {
	nm := v.names
	switch {
	case m.weight.kind == kindNone:
	case role != roleAssistant && role != "":
		v.add(chkInvalidWeight, i, "%s[%d].weight is set on a %s message: only assistant messages take one", nm.list, i, role)
	case m.weight.kind != kindNumber:
		v.add(chkInvalidWeight, i, "%s[%d].weight is %s: must be the number 0 or 1", nm.list, i, m.weight.kind)
	default:
		if lit := v.p.str(m.weight.val); !validWeight(lit) {
			v.add(chkInvalidWeight, i, "%s[%d].weight is %s: must be 0 or 1", nm.list, i, shorten(lit))
		}
	}
}

// unknownLineKeys reports the keys of the line that the format has no use
// for.
func (v *validator) unknownLineKeys() {
	p := &v.p
	for _, k := range p.unknown {
		if k.msg < 0 {
			v.add(chkUnknownKey, -1, "unknown key %s is ignored", quote(p.str(k.key)))
		}
	}
}

// checkAlpaca reports the issues of an Alpaca line that is a JSON object.
func (v *validator) checkAlpaca() {
	p := &v.p
	v.unknownLineKeys()
	for i, k := range alpacaKeys {
		f := p.fields[i]
		required := i == alpacaInstruction || i == alpacaOutput
		c := chkAlpacaInvalidField
		switch i {
		case alpacaInstruction:
			c = chkAlpacaMissingInstruction
		case alpacaOutput:
			c = chkAlpacaMissingOutput
		}
		switch {
		case f.kind == kindString && required:
			s := p.str(f.val)
			switch {
			case len(s) == 0:
				v.add(chkEmptyContent, -1, "%q is empty", k)
			case isSpace(s):
				v.add(chkEmptyContent, -1, "%q is only whitespace", k)
			}
		case f.kind == kindString:
		case f.kind == kindNone && required:
			v.add(c, -1, "line has no %q key", k)
		case f.kind == kindNone || f.kind == kindNull && !required:
		case required:
			v.add(c, -1, "%q is %s: must be a string", k, f.kind)
		default:
			v.add(c, -1, "%q is %s: must be a string or null", k, f.kind)
		}
	}
}

func validWeight(lit []byte) bool {
	_, ok := weightValue(lit)
	return ok
}

// messages sets v.msgs to the conversation of a valid line with a list
// of turns.
func (v *validator) messages() {
	p := &v.p
	// One string for the whole line; each content is a slice of it.
	text := string(p.arena)
	v.msgs = v.msgs[:0]
	v.wts = append(v.wts[:0], make([]int, len(p.msgs))...)
	for i := range p.msgs {
		m := &p.msgs[i]
		msg := chat.Message{Role: roleOf(p.format, p.str(m.role.val)), Content: text[m.content.val.off : m.content.val.off+m.content.val.n]}
		if m.weight.kind == kindNumber {
			v.wts[i], _ = weightValue(p.str(m.weight.val))
			msg.Weight = &v.wts[i]
		}
		v.msgs = append(v.msgs, msg)
	}
}

// alpacaMessages sets v.msgs to the conversation of a valid Alpaca line:
// the system (when not blank), the instruction with the input (when not
// blank) after a blank line, and the output.
func (v *validator) alpacaMessages() {
	p := &v.p
	f := &p.fields
	blank := func(i int) bool { return f[i].kind != kindString || isSpace(p.str(f[i].val)) }
	// The user's content is built in the arena, so that one string holds
	// every content.
	user := f[alpacaInstruction].val
	if !blank(alpacaInput) {
		off := len(p.arena)
		p.arena = append(p.arena, p.str(f[alpacaInstruction].val)...)
		p.arena = append(p.arena, "\n\n"...)
		p.arena = append(p.arena, p.str(f[alpacaInput].val)...)
		user = span{off, len(p.arena) - off}
	}
	text := string(p.arena)
	at := func(s span) string { return text[s.off : s.off+s.n] }
	v.msgs = v.msgs[:0]
	if !blank(alpacaSystem) {
		v.msgs = append(v.msgs, chat.Message{Role: roleSystem, Content: at(f[alpacaSystem].val)})
	}
	v.msgs = append(v.msgs, chat.Message{Role: roleUser, Content: at(user)},
		chat.Message{Role: roleAssistant, Content: at(f[alpacaOutput].val)})
}

// example counts a valid line, whose conversation v.msgs holds, as an
// example: its tokens, its stats and the warnings only a valid example can
// have.
func (v *validator) example() {
	v.examples++
	trains := false
	for _, m := range v.msgs {
		if m.Role == roleAssistant && (m.Weight == nil || *m.Weight == 1) {
			trains = true
			break
		}
	}
	if !trains {
		v.add(chkNoTrainedTokens, -1, "every assistant message has weight 0: the example trains nothing")
	}
	total, trained := v.counter.Count(v.msgs)
	v.tokens.Total += int64(total)
	v.tokens.Trained += int64(trained)
	counts := [2]int64{int64(total), int64(trained)}
	if total > v.opts.MaxSeqLength {
		v.overMax++
		v.add(chkExampleTooLong, -1, "conversation is %d tokens: over max_seq_length %d, the trainer will truncate it", total, v.opts.MaxSeqLength)
	}
	if v.part {
		r := record{line: v.lines, counts: counts}
		if v.dedup.limit > 0 {
			r.key = v.dedup.key(v.msgs)
		}
		v.records = append(v.records, r)
	} else {
		v.split(v.lines, counts)
		if first := v.dedup.check(v.msgs, v.lines); first > 0 {
			v.addAt(v.lines, chkDuplicateExample, -1, "conversation is the same as line %d", first)
		}
	}
	v.msgsH.add(uint64(len(v.msgs)))
	v.toksH.add(uint64(max(total, 0)))
}

// split offers the counts of the example on line to the validation
// split's lists.
func (v *validator) split(line int64, counts [2]int64) {
	v.heldOut.Add(holdout.KeyOf(0, line), counts)
	if len(v.first) < holdout.MaxExamples {
		v.first = append(v.first, counts)
	}
}

// add counts an issue on the current line and lists it while its
// severity's list has room. msg is the message index, or -1.
func (v *validator) add(c check, msg int, format string, args ...any) {
	v.addAt(v.lines, c, msg, format, args...)
}

// addAt is add for an issue on line.
func (v *validator) addAt(line int64, c check, msg int, format string, args ...any) {
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
	is := Issue{Code: c.code(), Severity: sev, Line: line, Message: fmt.Sprintf(format, args...)}
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
