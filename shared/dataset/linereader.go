package dataset

import (
	"bytes"
	"context"
	"errors"
	"io"
)

// readSize is how much the line reader asks for in one Read, and the size
// its buffer starts at.
const readSize = 64 << 10

// lineReader splits a stream into lines with one reusable buffer. A line
// longer than max is consumed in buffer-sized chunks and reported by its
// length only, so the buffer never grows past about max+readSize bytes.
type lineReader struct {
	ctx      context.Context
	r        io.Reader
	max      int
	progress func(int64)

	buf        []byte
	start, end int // unread bytes are buf[start:end]
	scanned    int // bytes of buf[start:end] known to hold no '\n'
	eof        bool
	err        error // read error or cancellation; stops the reader

	read         int64 // bytes read so far
	lastProgress int64
}

func newLineReader(ctx context.Context, r io.Reader, max int, progress func(int64)) *lineReader {
	return &lineReader{ctx: ctx, r: r, max: max, progress: progress, buf: make([]byte, readSize)}
}

// next returns the next line without its '\n'. When the line is longer
// than max, line is nil, tooLong is true and n is its length. ok is false
// at the end of the input or after an error (see l.err). The line is only
// valid until the next call.
func (l *lineReader) next() (line []byte, n int64, tooLong, ok bool) {
	for {
		if i := bytes.IndexByte(l.buf[l.start+l.scanned:l.end], '\n'); i >= 0 {
			end := l.start + l.scanned + i
			line = l.buf[l.start:end]
			l.start, l.scanned = end+1, 0
			if len(line) > l.max {
				return nil, int64(len(line)), true, true
			}
			return line, int64(len(line)), false, true
		}
		l.scanned = l.end - l.start
		if l.scanned > l.max {
			n, ok := l.discardLine()
			return nil, n, true, ok
		}
		if l.eof || l.err != nil {
			if l.err == nil && l.end > l.start {
				line = l.buf[l.start:l.end]
				l.start, l.scanned = l.end, 0
				return line, int64(len(line)), false, true
			}
			return nil, 0, false, false
		}
		l.fill()
	}
}

// discardLine consumes the rest of a line that is over the limit, keeping
// only its length.
func (l *lineReader) discardLine() (n int64, ok bool) {
	n = int64(l.end - l.start)
	l.start, l.end, l.scanned = 0, 0, 0
	for {
		if l.eof {
			return n, true
		}
		if l.fill(); l.err != nil {
			return n, false
		}
		if i := bytes.IndexByte(l.buf[l.start:l.end], '\n'); i >= 0 {
			l.start += i + 1
			return n + int64(i), true
		}
		n += int64(l.end - l.start)
		l.start, l.end = 0, 0
	}
}

// fill reads more input after the unread bytes, moving them to the front
// of the buffer and growing it when they fill it.
func (l *lineReader) fill() {
	if err := l.ctx.Err(); err != nil {
		l.err = err
		return
	}
	if l.start > 0 {
		copy(l.buf, l.buf[l.start:l.end])
		l.end -= l.start
		l.start = 0
	}
	if len(l.buf)-l.end < readSize/2 {
		// The unread bytes are one partial line of at most max bytes, so
		// the buffer stops growing at max+readSize.
		grown := make([]byte, min(2*len(l.buf), l.max+readSize))
		copy(grown, l.buf[:l.end])
		l.buf = grown
	}
	for tries := 0; tries < 100; tries++ {
		n, err := l.r.Read(l.buf[l.end:])
		if n < 0 || n > len(l.buf)-l.end {
			l.err = errors.New("reader returned an invalid count")
			return
		}
		l.end += n
		l.read += int64(n)
		if l.progress != nil && (l.read-l.lastProgress >= progressEvery || err == io.EOF) {
			l.lastProgress = l.read
			l.progress(l.read)
		}
		switch {
		case err == io.EOF:
			l.eof = true
			return
		case err != nil:
			l.err = err
			return
		case n > 0:
			return
		}
	}
	l.err = io.ErrNoProgress
}
