package tokenizer

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/tokenizer/tokreftest"
)

var update = flag.Bool("update", false, "rewrite testdata/tokenizer/corpus_ids.jsonl from the live references")

// corpusCase is one line of testdata/tokenizer/corpus.jsonl.
type corpusCase struct {
	Name string `json:"name"`
	Text string `json:"text"`
}

// goldenIDs is one line of testdata/tokenizer/corpus_ids.jsonl.
type goldenIDs struct {
	Name string `json:"name"`
	IDs  []int  `json:"ids"`
}

func readJSONL[T any](t testing.TB, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for line := 1; sc.Scan(); line++ {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s:%d: %v", path, line, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return out
}

func mustQwen3(tb testing.TB) *Tokenizer {
	tb.Helper()
	tok, err := Qwen3()
	if err != nil {
		tb.Fatalf("Qwen3() error: %v", err)
	}
	return tok
}

func corpusPath(root, name string) string {
	return filepath.Join(root, "testdata", "tokenizer", name)
}

// TestGoldenCorpus compares against ids the references produced, committed
// beside the corpus: it runs everywhere, references installed or not.
func TestGoldenCorpus(t *testing.T) {
	root := tokreftest.Root(t)
	corpus := readJSONL[corpusCase](t, corpusPath(root, "corpus.jsonl"))
	golden := readJSONL[goldenIDs](t, corpusPath(root, "corpus_ids.jsonl"))
	if len(golden) != len(corpus) {
		t.Fatalf("corpus_ids.jsonl has %d lines for %d corpus lines: rerun go test -run TestReferences -update", len(golden), len(corpus))
	}
	tok := mustQwen3(t)
	for i, c := range corpus {
		t.Run(c.Name, func(t *testing.T) {
			if golden[i].Name != c.Name {
				t.Fatalf("golden line %d is %q, want %q", i+1, golden[i].Name, c.Name)
			}
			if got := tok.Encode(c.Text); !slices.Equal(got, golden[i].IDs) {
				t.Errorf("Encode(%.80q) = %v, want %v", c.Text, trim(got), trim(golden[i].IDs))
			}
			if got := tok.Count(c.Text); got != len(golden[i].IDs) {
				t.Errorf("Count(%.80q) = %d, want %d", c.Text, got, len(golden[i].IDs))
			}
		})
	}
}

// TestReferences encodes the corpus and thousands of random tricky strings
// with both live references and demands zero differences.
func TestReferences(t *testing.T) {
	root := tokreftest.Root(t)
	tokreftest.RequirePython(t, root)
	tokreftest.RequireNode(t, root)

	corpus := readJSONL[corpusCase](t, corpusPath(root, "corpus.jsonl"))
	var names []string
	var inputs []any
	for _, c := range corpus {
		names = append(names, "corpus: "+c.Name)
		inputs = append(inputs, c.Text)
	}
	for i, s := range trickyStrings(3000, 1) {
		names = append(names, fmt.Sprintf("random %d", i))
		inputs = append(inputs, s)
	}
	refs := map[string][]json.RawMessage{
		"python tokenizers":       tokreftest.Run(t, root, inputs, "python3", "tools/tokref/encode.py"),
		"@huggingface/tokenizers": tokreftest.Run(t, root, inputs, "node", "tools/tokref/encode.mjs"),
	}
	tok := mustQwen3(t)
	want := make(map[string][][]int)
	for ref, lines := range refs {
		diffs := 0
		for i, line := range lines {
			var ids []int
			if err := json.Unmarshal(line, &ids); err != nil {
				t.Fatalf("%s output line %d: %v", ref, i+1, err)
			}
			want[ref] = append(want[ref], ids)
			text := inputs[i].(string)
			if got := tok.Encode(text); !slices.Equal(got, ids) {
				diffs++
				if diffs <= 10 {
					t.Errorf("%s: Encode(%.120q) = %v, want %v (%s)", names[i], text, trim(got), trim(ids), ref)
				}
			}
		}
		t.Logf("%s: %d strings compared, %d differences", ref, len(lines), diffs)
		if diffs > 0 {
			t.Errorf("%s: %d of %d strings differ", ref, diffs, len(lines))
		}
	}

	if *update {
		py, js := want["python tokenizers"], want["@huggingface/tokenizers"]
		var b strings.Builder
		for i, c := range corpus {
			if !slices.Equal(py[i], js[i]) {
				t.Fatalf("references disagree on %q: not updating the golden file", c.Name)
			}
			line, err := json.Marshal(goldenIDs{Name: c.Name, IDs: py[i]})
			if err != nil {
				t.Fatal(err)
			}
			b.Write(line)
			b.WriteByte('\n')
		}
		if err := os.WriteFile(corpusPath(root, "corpus_ids.jsonl"), []byte(b.String()), 0o644); err != nil {
			t.Fatalf("write golden ids: %v", err)
		}
		t.Logf("wrote corpus_ids.jsonl (%d lines)", len(corpus))
	}
}

// trim shortens long id lists in failure messages.
func trim(ids []int) string {
	if len(ids) <= 40 {
		return fmt.Sprint(ids)
	}
	return fmt.Sprintf("%v … (%d ids)", ids[:40], len(ids))
}
