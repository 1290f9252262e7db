package dataset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// sameAsValidate runs Validate and validateAt with parallel goroutines
// and parts of partBytes on data, and fails the test unless the reports,
// the converted lines, the tee'd bytes and the progress's last call are
// the same.
func sameAsValidate(t *testing.T, data []byte, opts Options, parallel int, partBytes int64) {
	t.Helper()
	var wantConv, gotConv, wantTee, gotTee bytes.Buffer
	var wantLast, gotLast int64 = -1, -1
	o := opts
	o.Converted, o.Tee, o.Progress = &wantConv, &wantTee, func(n int64) { wantLast = n }
	want, err := Validate(context.Background(), bytes.NewReader(data), byteCounter, o)
	if err != nil {
		t.Fatalf("Validate(%q): %v", abbreviate(string(data)), err)
	}
	o.Converted, o.Tee, o.Progress = &gotConv, &gotTee, func(n int64) { gotLast = n }
	got, err := validateAt(context.Background(), bytes.NewReader(data), int64(len(data)), byteCounter, o, parallel, partBytes)
	if err != nil {
		t.Fatalf("validateAt(%q, %d goroutines, parts of %d bytes): %v", abbreviate(string(data)), parallel, partBytes, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("validateAt(%q, %d goroutines, parts of %d bytes) =\n%s\nwant (Validate)\n%s",
			abbreviate(string(data)), parallel, partBytes, reportJSON(got), reportJSON(want))
	}
	if !bytes.Equal(gotConv.Bytes(), wantConv.Bytes()) {
		t.Fatalf("validateAt(%q, %d, %d) converted\n%q\nwant\n%q", abbreviate(string(data)), parallel, partBytes, gotConv.Bytes(), wantConv.Bytes())
	}
	if !bytes.Equal(gotTee.Bytes(), data) || !bytes.Equal(wantTee.Bytes(), data) {
		t.Fatalf("Tee got %d bytes in parallel, %d in one pass, want the %d of the input", gotTee.Len(), wantTee.Len(), len(data))
	}
	if gotLast != wantLast {
		t.Fatalf("last progress %d, want %d", gotLast, wantLast)
	}
}

func reportJSON(r *Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%+v\n", r.Summary)
	for _, is := range r.Issues {
		mi := -1
		if is.MessageIndex != nil {
			mi = *is.MessageIndex
		}
		fmt.Fprintf(&b, "  %d %s %s [%d] %s\n", is.Line, is.Severity, is.Code, mi, is.Message)
	}
	return b.String()
}

// partSizes are the part sizes the tests cut data into: from a few bytes
// to one part, in at most 300 parts (each part has two 62 KiB
// histograms to clear and merge).
func partSizes(data []byte) []int64 {
	var sizes []int64
	for _, size := range []int64{1, 3, 17, 64, 257, 4096, int64(len(data)/3 + 1), int64(len(data) + 1)} {
		if size*300 >= int64(len(data)) {
			sizes = append(sizes, size)
		}
	}
	return sizes
}

func TestValidateAtIsValidateOnTheCorpus(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "datasets")
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus in %s: %v", dir, err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []Format{FormatMessages, FormatShareGPT, FormatAlpaca} {
			for _, opts := range []Options{{Format: f}, {Format: f, MaxIssues: 2, MaxUniqueExamples: 3, MaxLineBytes: 300, MaxSeqLength: 256}} {
				t.Run(fmt.Sprintf("%s as %s, %d issues listed", filepath.Base(file), f, opts.MaxIssues), func(t *testing.T) {
					for _, size := range partSizes(data) {
						for parallel := 1; parallel <= 8; parallel++ {
							sameAsValidate(t, data, opts, parallel, size)
						}
					}
				})
			}
		}
	}
}

// generated is a dataset with every kind of trouble near part
// boundaries: errors, warnings, duplicates of lines in earlier parts,
// blank lines, CRLF, a BOM, long lines, and no final line end.
func generated(seed uint64, lines int) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	var b bytes.Buffer
	b.WriteString("\xef\xbb\xbf")
	var seen []string
	for i := range lines {
		var line string
		switch k := rng.IntN(14); {
		case k == 0:
			line = ""
		case k == 1:
			line = " \t\r"
		case k == 2 && len(seen) > 0:
			line = seen[rng.IntN(len(seen))] // a duplicate, maybe in another part
		case k == 3:
			line = `{"messages": [{"role": "bot", "content": "x"}]}`
		case k == 4:
			line = `{"messages": [`
		case k == 5:
			line = "\xff\xfe"
		case k == 6:
			line = `{"messages": [{"role": "user", "content": "` + strings.Repeat("long ", 60+rng.IntN(200)) + `"}, {"role": "assistant", "content": "y"}]}`
		case k == 7:
			line = fmt.Sprintf(`{"messages": [{"role": "user", "content": "q%d"}, {"role": "assistant", "content": "a", "weight": 0}], "extra": 1}`, i)
		case k == 8:
			line = "\xef\xbb\xbf" + goodLine // a BOM past line 1 is an error
		default:
			line = fmt.Sprintf(`{"messages": [{"role": "user", "content": "question %d"}, {"role": "assistant", "content": "answer %d"}]}`, rng.IntN(lines), i)
			seen = append(seen, line)
		}
		b.WriteString(line)
		if rng.IntN(5) == 0 {
			b.WriteByte('\r')
		}
		if i < lines-1 || rng.IntN(2) == 0 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func TestValidateAtIsValidateOnGeneratedFilesWithTroubleAtTheBoundaries(t *testing.T) {
	for seed := range uint64(6) {
		data := generated(seed, 150)
		for _, opts := range []Options{
			{},
			{MaxIssues: 5},
			{MaxIssues: -1, MaxUniqueExamples: 4},
			{MaxLineBytes: 200, MaxIssues: 30, MaxSeqLength: 256},
		} {
			t.Run(fmt.Sprintf("seed %d, %+v", seed, opts), func(t *testing.T) {
				for _, size := range partSizes(data) {
					for parallel := 1; parallel <= 8; parallel++ {
						sameAsValidate(t, data, opts, parallel, size)
					}
				}
			})
		}
	}
}

func TestValidateAtIsValidateOnTinyFilesWithMorePartsThanLines(t *testing.T) {
	for _, s := range []string{
		"", "\n", "\n\n", "\r\n", "x", "{}", "\xef\xbb\xbf", "\xef\xbb\xbf\n", "\xef\xbb\xbf" + goodLine,
		goodLine, goodLine + "\n", goodLine + "\r\n" + goodLine, "\n" + goodLine + "\n\n", goodLines(10), goodLines(11)[1:],
		goodLine + "\n" + goodLine + "\n" + goodLine,
	} {
		t.Run(fmt.Sprintf("%q", abbreviate(s)), func(t *testing.T) {
			for _, size := range []int64{1, 2, 3, 4, 5, 7, 11, 13, 50, 99, int64(len(s)/2 + 1), int64(len(s) + 1)} {
				for parallel := 1; parallel <= 8; parallel++ {
					sameAsValidate(t, []byte(s), Options{MaxIssues: 3}, parallel, size)
				}
			}
		})
	}
}

func TestValidateAtIsValidateOnALongSyntheticFile(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteSynthetic(&buf, 3<<20, 7, 25); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	for _, size := range []int64{64 << 10, 1 << 20, DefaultPartBytes} {
		for _, parallel := range []int{1, 2, 5} {
			sameAsValidate(t, data, Options{}, parallel, size)
		}
	}
}

// failingReaderAt fails every read from byte at on.
type failingReaderAt struct {
	data []byte
	at   int64
}

var errDisk = errors.New("disk on fire")

func (f failingReaderAt) ReadAt(b []byte, off int64) (int, error) {
	if off+int64(len(b)) > f.at {
		return 0, errDisk
	}
	return copy(b, f.data[off:]), nil
}

func TestValidateAtFailsWhenAReadFails(t *testing.T) {
	data := []byte(goodLines(200))
	_, err := validateAt(context.Background(), failingReaderAt{data, int64(len(data)) / 2}, int64(len(data)), byteCounter, Options{}, 3, 1000)
	if !errors.Is(err, errDisk) {
		t.Fatalf("validateAt with a failing read = %v, want %v", err, errDisk)
	}
	_, err = validateAt(context.Background(), bytes.NewReader(data[:100]), int64(len(data)), byteCounter, Options{}, 3, 1000)
	if err == nil {
		t.Fatal("validateAt past the reader's end = nil error, want one")
	}
}

func TestValidateAtStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	data := []byte(goodLines(200))
	if _, err := validateAt(ctx, bytes.NewReader(data), int64(len(data)), byteCounter, Options{}, 2, 100); !errors.Is(err, context.Canceled) {
		t.Fatalf("validateAt(cancelled) = %v, want %v", err, context.Canceled)
	}
}

// FuzzValidateAtIsValidate holds the parallel path to the one pass on
// any input, cut anywhere.
func FuzzValidateAtIsValidate(f *testing.F) {
	for seed := range uint64(3) {
		f.Add(generated(seed, 30), uint8(7), uint8(2), uint8(3))
	}
	f.Add([]byte(goodLines(12)), uint8(1), uint8(8), uint8(0))
	f.Add([]byte("\xef\xbb\xbf\r\n"+goodLine), uint8(2), uint8(3), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, size, parallel, mode uint8) {
		opts := []Options{
			{MaxIssues: 3, MaxSeqLength: 256},
			{MaxLineBytes: 40, MaxIssues: 2, MaxUniqueExamples: 2},
			{Format: FormatShareGPT, MaxIssues: 1},
			{Format: FormatAlpaca, MaxUniqueExamples: -1},
		}[int(mode)%4]
		// At most about 100 parts: each clears and merges two 62 KiB
		// histograms, and the fuzzer grows inputs.
		partBytes := max(1+int64(size), int64(len(data))/100+1)
		sameAsValidate(t, data, opts, 1+int(parallel)%8, partBytes)
	})
}
