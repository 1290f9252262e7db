package dataset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/brightrun/brightrun/shared/chat"
)

// DefaultPartBytes is how much of the input one part of ValidateAt
// covers: large enough that a part's fixed costs (one ranged read, two
// histograms, its merge) do not show, small enough that the parts in
// flight hold little memory.
const DefaultPartBytes = 8 << 20

// ValidateAt validates the size bytes of r on parallel goroutines (0 or
// less: GOMAXPROCS) and returns exactly the report Validate returns for
// the same bytes: the same line numbers, counts, listed issues, duplicate
// warnings, statistics and split counts, and the same Options.Converted
// and Options.Tee output.
//
// The input is cut into parts of DefaultPartBytes at line boundaries: a
// part starts at the first line that starts in its byte range (a line
// belongs to the part its first byte is in), so a line is never split,
// however long. The parts are validated concurrently, each with ranged
// reads of r (one read for its range, then more only for a last line that
// runs past it), and merged in file order on the calling goroutine, which
// also calls Options.Progress (once per part) and writes Options.Converted
// and Options.Tee in order. What depends on a line's number in the file
// or on the lines before it, which a part cannot know, is left to the
// merge: the duplicate detector and the validation split's keys. At most
// about 2×parallel parts are in flight, so memory stays bounded: each
// holds its converted lines, its range when Options.Tee is set, and
// about 40 bytes per example.
func ValidateAt(ctx context.Context, r io.ReaderAt, size int64, c chat.Counter, opts Options, parallel int) (*Report, error) {
	return validateAt(ctx, r, size, c, opts, parallel, DefaultPartBytes)
}

// record is an example of a part, as the merge needs it.
type record struct {
	line   int64 // in the part
	counts [2]int64
	key    [16]byte // the duplicate detector's
}

// part is the outcome of one part of a ValidateAt.
type part struct {
	v         *validator
	converted []byte
	raw       []byte // the part's byte range, for Options.Tee
	err       error
}

func validateAt(ctx context.Context, r io.ReaderAt, size int64, c chat.Counter, opts Options, parallel int, partBytes int64) (*Report, error) {
	if c == nil {
		return nil, errors.New("validate dataset: nil token counter")
	}
	if size < 0 {
		return nil, fmt.Errorf("validate dataset: size %d", size)
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("validate dataset: options: %w", err)
	}
	if parallel <= 0 {
		parallel = runtime.GOMAXPROCS(0)
	}
	n := int((size + partBytes - 1) / partBytes)
	m := newValidator(c, o)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]chan part, n)
	reads := make([]chan read, n)
	for i := range results {
		results[i] = make(chan part, 1)
		reads[i] = make(chan read, 1)
	}
	// window bounds the parts in flight: a part is read once an earlier
	// one has been merged. A part's range is read as soon as it is in the
	// window, ahead of the goroutine that validates it, so that waiting
	// for a ranged GET overlaps the validation of the parts before.
	window := make(chan struct{}, 2*parallel)
	jobs := make(chan int)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(jobs)
		for i := range n {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				lo := int64(i) * partBytes
				reads[i] <- readPart(r, lo, min(lo+partBytes, size))
			}()
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range min(parallel, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				lo := int64(i) * partBytes
				var rd read
				select {
				case rd = <-reads[i]:
				case <-ctx.Done():
					results[i] <- part{err: ctx.Err()}
					continue
				}
				if rd.err != nil {
					results[i] <- part{err: rd.err}
					continue
				}
				results[i] <- validatePart(ctx, r, rd.buf, lo, min(lo+partBytes, size), size, c, m.dedup, o)
			}
		}()
	}
	// Stop the parts, and wait for them: r must not be read once
	// ValidateAt has returned.
	defer wg.Wait()
	defer cancel()

	var done int64
	for i := range n {
		var p part
		select {
		case p = <-results[i]:
		case <-ctx.Done():
			return nil, fmt.Errorf("validate dataset: %w", ctx.Err())
		}
		if p.err != nil {
			return nil, fmt.Errorf("validate dataset: part at byte %d: %w", int64(i)*partBytes, p.err)
		}
		if o.Tee != nil {
			if _, err := o.Tee.Write(p.raw); err != nil {
				return nil, fmt.Errorf("validate dataset: tee: %w", err)
			}
		}
		if o.Converted != nil && len(p.converted) > 0 {
			if _, err := o.Converted.Write(p.converted); err != nil {
				return nil, fmt.Errorf("validate dataset: write converted lines: %w", err)
			}
		}
		m.merge(p.v)
		<-window
		done = min(done+partBytes, size)
		if o.Progress != nil {
			o.Progress(done)
		}
	}
	if n == 0 && o.Progress != nil {
		o.Progress(0)
	}
	return m.finish(size), nil
}

// read is a part's range, read ahead.
type read struct {
	buf []byte
	err error
}

// readPart reads [lo-1, hi) of r (from 0 for the first part): the part's
// range and the byte before, which says whether a line starts at lo.
func readPart(r io.ReaderAt, lo, hi int64) read {
	from := max(lo-1, 0)
	buf := make([]byte, hi-from)
	if n, err := r.ReadAt(buf, from); n < len(buf) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return read{err: fmt.Errorf("read bytes %d to %d: %w", from, hi, err)}
	}
	return read{buf: buf}
}

// validatePart validates the lines that start in [lo, hi) of the size
// bytes of r, of which buf holds [lo-1, hi) (readPart): the first is the
// line after the first '\n' at lo-1 or later (lo itself for the first
// part), the last may end past hi.
func validatePart(ctx context.Context, r io.ReaderAt, buf []byte, lo, hi, size int64, c chat.Counter, dedup *dedupSet, o Options) part {
	from := max(lo-1, 0)
	v := newValidator(c, o)
	v.part, v.notFirst = true, lo > 0
	v.dedup = &dedupSet{seeds: dedup.seeds, limit: dedup.limit}
	var p part
	if o.Tee != nil {
		p.raw = buf[lo-from:]
	}
	start := lo
	if lo > 0 {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			// No line starts in the range: the line of the part before
			// runs through it.
			p.v = v
			return p
		}
		start = from + int64(i) + 1
	}
	src := io.MultiReader(bytes.NewReader(buf[start-from:]), &atReader{r: r, off: hi, size: size})
	lr := newLineReader(ctx, src, o.MaxLineBytes, nil)
	for pos := start; pos < hi; {
		line, n, tooLong, ok := lr.next()
		if !ok {
			break
		}
		pos += n + 1
		ex := v.line(line, n, tooLong)
		if o.Converted != nil {
			if ex {
				p.converted = appendMessagesLine(p.converted, v.msgs)
			} else {
				p.converted = append(p.converted, '\n')
			}
		}
	}
	if lr.err != nil {
		return part{err: fmt.Errorf("line %d of the part: %w", v.lines+1, lr.err)}
	}
	p.v = v
	return p
}

// atReader reads r from off to size with ReadAt: the rest of a part's
// last line, past the part's range.
type atReader struct {
	r         io.ReaderAt
	off, size int64
}

func (a *atReader) Read(b []byte) (int, error) {
	if a.off >= a.size {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), a.size-a.off)]
	n, err := a.r.ReadAt(b, a.off)
	a.off += int64(n)
	if n == len(b) {
		return n, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// merge adds part p, the next in file order, to m: its lines follow m's.
// Issues are listed in line order under m's caps, and the duplicate
// detector and the split see p's examples with their line numbers in the
// file, as one pass over the file would have: a duplicate warning is the
// last issue of its line (example adds it last).
func (m *validator) merge(p *validator) {
	off := m.lines
	m.lines += p.lines
	m.blank += p.blank
	m.nonBlank += p.nonBlank
	m.examples += p.examples
	m.tokens.Total += p.tokens.Total
	m.tokens.Trained += p.tokens.Trained
	m.overMax += p.overMax
	m.errorCount += p.errorCount
	for i, n := range p.counts {
		m.counts[i] += n
	}
	m.msgsH.merge(&p.msgsH)
	m.toksH.merge(&p.toksH)
	// A part that left issues out had more than the cap of that severity:
	// so has the whole file.
	m.truncated.Errors = m.truncated.Errors || p.truncated.Errors
	m.truncated.Warnings = m.truncated.Warnings || p.truncated.Warnings

	issues := p.issues
	for _, r := range p.records {
		for len(issues) > 0 && issues[0].Line <= r.line {
			m.list(issues[0], off)
			issues = issues[1:]
		}
		line := r.line + off
		m.split(line, r.counts)
		if m.dedup.limit > 0 {
			if first := m.dedup.checkKey(r.key, line); first > 0 {
				m.addAt(line, chkDuplicateExample, -1, "conversation is the same as line %d", first)
			}
		}
	}
	for _, is := range issues {
		m.list(is, off)
	}
}

// list lists an issue a part counted, on its line of the part (off lines
// before it), while its severity's list has room.
func (m *validator) list(is Issue, off int64) {
	s := 0
	if is.Severity != SeverityError {
		s = 1
	}
	if m.kept[s] >= m.opts.MaxIssues {
		if s == 0 {
			m.truncated.Errors = true
		} else {
			m.truncated.Warnings = true
		}
		return
	}
	m.kept[s]++
	is.Line += off
	m.issues = append(m.issues, is)
}
