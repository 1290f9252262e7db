package holdout_test

import (
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"slices"
	"testing"

	"github.com/brightrun/brightrun/shared/holdout"
)

// vectors is testdata/contracts/validation_split.json.
type vectors struct {
	Domain string `json:"domain"`
	Keys   []struct {
		Seed   int64  `json:"seed"`
		Line   int64  `json:"line"`
		SHA256 string `json:"sha256"`
	} `json:"keys"`
	Cases []struct {
		Name        string   `json:"name"`
		N           int64    `json:"n"`
		Lines       []int64  `json:"lines"`
		Split       *float64 `json:"split"`
		MaxExamples *int64   `json:"max_examples"`
		Seed        int64    `json:"seed"`
		HeldOut     []int64  `json:"held_out"`
	} `json:"cases"`
}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	data, err := os.ReadFile("../../testdata/contracts/validation_split.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Keys) == 0 || len(v.Cases) == 0 {
		t.Fatal("validation_split.json has no keys or no cases")
	}
	return v
}

func TestTheDomainIsTheWorkers(t *testing.T) {
	if v := loadVectors(t); v.Domain != holdout.Domain {
		t.Fatalf("Domain = %q, the vectors' is %q", holdout.Domain, v.Domain)
	}
}

func TestKeysMatchTheContractVectors(t *testing.T) {
	for _, k := range loadVectors(t).Keys {
		got := holdout.KeyOf(k.Seed, k.Line)
		if hex.EncodeToString(got[:]) != k.SHA256 {
			t.Errorf("KeyOf(%d, %d) = %x, want %s", k.Seed, k.Line, got, k.SHA256)
		}
	}
}

func TestHeldOutLinesMatchTheContractVectors(t *testing.T) {
	for _, c := range loadVectors(t).Cases {
		t.Run(c.Name, func(t *testing.T) {
			lines := c.Lines
			if lines == nil {
				for ln := int64(1); ln <= c.N; ln++ {
					lines = append(lines, ln)
				}
			}
			n := int64(len(lines))
			split := holdout.DefaultSplit(n)
			if c.Split != nil {
				split = *c.Split
			}
			maxEx := int64(holdout.MaxExamples)
			if c.MaxExamples != nil {
				maxEx = *c.MaxExamples
			}
			got := holdout.Lines(lines, split, maxEx, c.Seed)
			if k := holdout.Count(n, split, maxEx); k != int64(len(c.HeldOut)) {
				t.Errorf("Count(%d, %v, %d) = %d, want %d", n, split, maxEx, k, len(c.HeldOut))
			}
			sorted := slices.Clone(got)
			slices.Sort(sorted)
			want := slices.Clone(c.HeldOut)
			slices.Sort(want)
			if !slices.Equal(sorted, want) {
				t.Errorf("Lines = %v, want %v", sorted, want)
			}
			// The Smallest heap of a streaming pass holds the same lines,
			// in the same (key) order.
			s := holdout.NewSmallest[int64](holdout.MaxExamples)
			for _, ln := range lines {
				s.Add(holdout.KeyOf(c.Seed, ln), ln)
			}
			if prefix := s.Sorted()[:len(got)]; !slices.Equal(prefix, got) {
				t.Errorf("Smallest prefix = %v, want %v", prefix, got)
			}
		})
	}
}

func TestCount(t *testing.T) {
	for _, c := range []struct {
		name  string
		n     int64
		split float64
		max   int64
		want  int64
	}{
		{"nothing of nothing", 0, 0.5, 200, 0},
		{"one conversation always trains", 1, 0.5, 200, 0},
		{"at least one is left to train on", 2, 0.5, 200, 1},
		{"a share below one example holds nothing out", 9, 0.1, 200, 0},
		{"floor in IEEE double", 100, 0.29, 200, 28},
		{"the cap binds", 100000, 0.1, 200, 200},
		{"a zero cap holds nothing out", 1000, 0.1, 0, 0},
		{"a zero share holds nothing out", 1000, 0, 200, 0},
		{"a negative share holds nothing out", 1000, -0.1, 200, 0},
		{"NaN holds nothing out", 1000, math.NaN(), 200, 0},
		{"an infinite share is capped", 1000, math.Inf(1), 200, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := holdout.Count(c.n, c.split, c.max); got != c.want {
				t.Errorf("Count(%d, %v, %d) = %d, want %d", c.n, c.split, c.max, got, c.want)
			}
		})
	}
}

func TestTheDefaultShareStartsAt200Conversations(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want float64
	}{{0, 0}, {199, 0}, {200, 0.1}, {1e9, 0.1}} {
		if got := holdout.DefaultSplit(c.n); got != c.want {
			t.Errorf("DefaultSplit(%d) = %v, want %v", c.n, got, c.want)
		}
	}
}

func TestSmallestKeepsNothingWithNoRoom(t *testing.T) {
	s := holdout.NewSmallest[int](0)
	s.Add(holdout.KeyOf(0, 1), 1)
	if s.Len() != 0 || len(s.Sorted()) != 0 {
		t.Fatalf("NewSmallest(0) kept %d values", s.Len())
	}
}

// FuzzSmallestIsThePrefixOfEveryShare holds the streaming heap to the
// sort of every key, and checks that a smaller share's held-out lines are
// a prefix of a larger one's.
func FuzzSmallestIsThePrefixOfEveryShare(f *testing.F) {
	f.Add(uint16(250), uint8(3), uint8(20), int64(0), 0.1, 0.3)
	f.Add(uint16(10), uint8(0), uint8(5), int64(7), 0.5, 0.2)
	f.Add(uint16(1), uint8(1), uint8(200), int64(2147483647), 0.0, 1.0)
	f.Fuzz(func(t *testing.T, n uint16, gap, capacity uint8, seed int64, s1, s2 float64) {
		var lines []int64
		ln := int64(0)
		for i := 0; i < int(n)%2000; i++ {
			ln += 1 + int64(i*int(gap))%5
			lines = append(lines, ln)
		}
		c := int(capacity)
		s := holdout.NewSmallest[int64](c)
		for _, l := range lines {
			s.Add(holdout.KeyOf(seed, l), l)
		}
		kept := s.Sorted()
		all := holdout.Lines(lines, 1, int64(len(lines)), seed) // every line but one, in key order
		if want := min(c, len(all)); len(kept) < want || !slices.Equal(kept[:want], all[:want]) {
			t.Fatalf("Smallest(%d) = %v, want a prefix %v", c, kept, all[:want])
		}
		a := holdout.Lines(lines, s1, int64(c), seed)
		b := holdout.Lines(lines, s2, int64(c), seed)
		if len(a) > len(b) {
			a, b = b, a
		}
		if !slices.Equal(a, b[:len(a)]) {
			t.Fatalf("Lines(%v) = %v is not a prefix of Lines(%v) = %v", s1, a, s2, b)
		}
		if len(b) > len(kept) {
			t.Fatalf("a share holds out %d lines, more than the %d kept", len(b), len(kept))
		}
		if !slices.Equal(b, kept[:len(b)]) {
			t.Fatalf("Lines = %v, want the prefix of the kept %v", b, kept[:len(b)])
		}
		if k := int64(len(b)); k < 0 || k > int64(c) || (len(lines) > 0 && k > int64(len(lines))-1) {
			t.Fatalf("held out %d of %d lines with a cap of %d", k, len(lines), c)
		}
	})
}

// BenchmarkSmallest is the validator's cost per example: a key and an
// offer to the heap of the 200 smallest.
func BenchmarkSmallest(b *testing.B) {
	s := holdout.NewSmallest[[2]int64](holdout.MaxExamples)
	b.ReportAllocs()
	line := int64(0)
	for b.Loop() {
		line++
		s.Add(holdout.KeyOf(0, line), [2]int64{line, line})
	}
}
