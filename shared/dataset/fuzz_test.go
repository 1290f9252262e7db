package dataset

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// FuzzValidate checks that no input panics, that reports are consistent,
// and that how the input is read never changes the report.
func FuzzValidate(f *testing.F) {
	for _, name := range []string{"sample.jsonl", "bad.jsonl"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "datasets", name))
		if err != nil {
			f.Fatalf("read fixture: %v", err)
		}
		f.Add(data)
		for _, line := range bytes.SplitAfter(data, []byte("\n"))[:10] {
			f.Add(line)
		}
	}
	for _, s := range []string{
		"", "\n", "\xef\xbb\xbf", "\r\n\r\n", goodLines(10), strings.ReplaceAll(goodLines(12), "\n", "\r\n"),
		goodLine + "\n" + goodLine, `{"messages": [{"role": "assistant", "content": "x", "weight": 1e0}]}`,
		`{"messages": [{"role": "user", "content": "\ud83d"}, {"role": "assistant", "content": " ", "weight": 0}]}`,
		strings.Repeat("x", 200) + "\n" + goodLine,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, opts := range []Options{
			{MaxIssues: 3, MaxSeqLength: 256},
			{MaxLineBytes: 40, MaxIssues: 2, MaxUniqueExamples: 2},
		} {
			want, err := Validate(context.Background(), bytes.NewReader(data), byteCounter, opts)
			if err != nil {
				t.Fatalf("Validate(%q) error: %v", data, err)
			}
			checkConsistent(t, data, want, opts)
			got, err := Validate(context.Background(), iotest.OneByteReader(bytes.NewReader(data)), byteCounter, opts)
			if err != nil {
				t.Fatalf("Validate(%q) one byte at a time error: %v", data, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Validate(%q) one byte at a time = %+v, want %+v", data, got, want)
			}
		}
	})
}

func checkConsistent(t *testing.T, data []byte, r *Report, opts Options) {
	t.Helper()
	var errs, warns, errTotal, warnTotal int64
	for _, is := range r.Issues {
		if is.Severity == SeverityError {
			errs++
		} else {
			warns++
		}
		if is.Code.Severity() != is.Severity || is.Line < 0 || is.Line > r.Lines || is.Message == "" ||
			(is.MessageIndex != nil && *is.MessageIndex < 0) {
			t.Fatalf("Validate(%q) has a malformed issue %+v", data, is)
		}
	}
	for _, n := range r.ErrorCounts {
		errTotal += n
	}
	for _, n := range r.WarningCounts {
		warnTotal += n
	}
	max := int64(opts.MaxIssues)
	switch {
	case errTotal < errs || warnTotal < warns:
		t.Fatalf("Validate(%q) counts %d errors, %d warnings but lists %d, %d", data, errTotal, warnTotal, errs, warns)
	case errs > max || warns > max:
		t.Fatalf("Validate(%q) lists %d errors, %d warnings, over the cap %d", data, errs, warns, max)
	case r.Truncated.Errors != (errTotal > errs) || r.Truncated.Warnings != (warnTotal > warns):
		t.Fatalf("Validate(%q) truncated = %+v with %d/%d errors and %d/%d warnings listed", data, r.Truncated, errs, errTotal, warns, warnTotal)
	case r.Examples+r.BlankLines > r.Lines:
		t.Fatalf("Validate(%q) = %d examples and %d blank lines of %d lines", data, r.Examples, r.BlankLines, r.Lines)
	case r.Bytes != int64(len(data)):
		t.Fatalf("Validate(%q).Bytes = %d, want %d", data, r.Bytes, len(data))
	case r.Valid != (errTotal == 0) || r.Valid && r.Examples < MinExamples:
		t.Fatalf("Validate(%q).Valid = %v with %d errors and %d examples", data, r.Valid, errTotal, r.Examples)
	case r.Tokens.Trained > r.Tokens.Total:
		t.Fatalf("Validate(%q).Tokens = %+v", data, r.Tokens)
	}
	for i := 1; i < len(r.Issues); i++ {
		if r.Issues[i].Line < r.Issues[i-1].Line {
			t.Fatalf("Validate(%q) issues are out of line order: %+v", data, r.Issues)
		}
	}
	if s := r.Stats.MessagesPerExample; r.Examples > 0 && (s.Min < 1 || s.Min > s.P50 || s.P50 > s.P95 || s.P95 > s.Max) {
		t.Fatalf("Validate(%q).Stats.MessagesPerExample = %+v", data, s)
	}
}
