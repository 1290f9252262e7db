package dataset

import (
	"bytes"
	"context"
	"io"
	"runtime"
	"testing"
)

// cycleReader yields chunk over and over, n bytes in all.
type cycleReader struct {
	chunk []byte
	off   int
	n     int64
}

func (r *cycleReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n)]
	n := copy(p, r.chunk[r.off:])
	r.off = (r.off + n) % len(r.chunk)
	r.n -= int64(n)
	return n, nil
}

func TestValidateMemoryStaysBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 250 MB")
	}
	// 200 MB of lines that each have an error, then one 50 MB line.
	var bad bytes.Buffer
	if err := WriteSynthetic(&bad, 1<<20, 4, 1); err != nil {
		t.Fatalf("WriteSynthetic: %v", err)
	}
	const badSize, longSize = 200 << 20, 50 << 20
	r := io.MultiReader(
		&cycleReader{chunk: bad.Bytes(), n: badSize - badSize%int64(bad.Len())},
		&cycleReader{chunk: []byte("x"), n: longSize},
	)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak uint64
	var next int64
	opts := Options{MaxLineBytes: 1 << 20, Progress: func(n int64) {
		if n < next {
			return
		}
		next = n + 16<<20
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}}
	rep, err := Validate(context.Background(), r, noopCounter, opts)
	if err != nil {
		t.Fatalf("Validate error: %v", err)
	}
	if rep.Examples != 0 || rep.ErrorCounts[CodeLineTooLong] != 1 || rep.Lines < 50_000 {
		t.Errorf("Validate = %d lines, %d examples, error counts %v; want many lines, no example, one line_too_long", rep.Lines, rep.Examples, rep.ErrorCounts)
	}
	const bound = 24 << 20
	if peak-base > bound {
		t.Errorf("HeapInuse grew by %d MiB reading %d MB, want under %d MiB", (peak-base)>>20, rep.Bytes/1e6, bound>>20)
	}
	t.Logf("HeapInuse grew by at most %.1f MiB over %d MB", float64(peak-base)/(1<<20), rep.Bytes/1e6)
}

// cycleReaderAt is head repeated for headSize bytes, then tail repeated
// to size.
type cycleReaderAt struct {
	head, tail     []byte
	headSize, size int64
}

func (r cycleReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) && off < r.size {
		var c int
		if off < r.headSize {
			c = copy(p[n:min(int64(len(p)), int64(n)+r.headSize-off)], r.head[off%int64(len(r.head)):])
		} else {
			c = copy(p[n:], r.tail[(off-r.headSize)%int64(len(r.tail)):])
			c = int(min(int64(c), r.size-off))
		}
		n += c
		off += int64(c)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func TestValidateAtMemoryStaysBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 250 MB")
	}
	// 200 MB of lines that each have an error, then one 50 MB line.
	var bad bytes.Buffer
	if err := WriteSynthetic(&bad, 1<<20, 4, 1); err != nil {
		t.Fatalf("WriteSynthetic: %v", err)
	}
	const badSize, longSize = 200 << 20, 50 << 20
	head := badSize - badSize%int64(bad.Len())
	r := cycleReaderAt{head: bad.Bytes(), tail: []byte("xxxxxxxx"), headSize: head, size: head + longSize}

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak uint64
	opts := Options{MaxLineBytes: 1 << 20, Progress: func(int64) {
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}}
	rep, err := ValidateAt(context.Background(), r, r.size, noopCounter, opts, 2)
	if err != nil {
		t.Fatalf("ValidateAt error: %v", err)
	}
	if rep.Examples != 0 || rep.ErrorCounts[CodeLineTooLong] != 1 || rep.Lines < 50_000 {
		t.Errorf("ValidateAt = %d lines, %d examples, error counts %v; want many lines, no example, one line_too_long", rep.Lines, rep.Examples, rep.ErrorCounts)
	}
	// Four parts in flight (2 × parallel), 8 MiB each, twice over for the
	// parts merged but not yet collected, and a line of at most
	// MaxLineBytes: far below the input's 250 MB.
	const bound = 2*4*DefaultPartBytes + 24<<20
	if peak-base > bound {
		t.Errorf("HeapInuse grew by %d MiB reading %d MB, want under %d MiB", (peak-base)>>20, rep.Bytes/1e6, bound>>20)
	}
	t.Logf("HeapInuse grew by at most %.1f MiB over %d MB", float64(peak-base)/(1<<20), rep.Bytes/1e6)
}
