package dataset

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/holdout"
)

// splitFixture is n distinct valid examples of different lengths, with a
// blank line after every seventh; it returns the file and each example's
// [total, trained] by line number.
func splitFixture(t *testing.T, n int) (string, map[int64][2]int64) {
	var b strings.Builder
	counts := map[int64][2]int64{}
	line := int64(0)
	for i := range n {
		ex := fmt.Sprintf(`{"messages": [{"role": "user", "content": "question %d %s"}, {"role": "assistant", "content": "%s"}]}`,
			i, strings.Repeat("q", i%37), strings.Repeat("a", (i*13)%101+1))
		line++
		b.WriteString(ex + "\n")
		r := validate(t, ex, Options{})
		counts[line] = [2]int64{r.Tokens.Total, r.Tokens.Trained}
		if i%7 == 6 {
			line++
			b.WriteString("  \n")
		}
	}
	return b.String(), counts
}

func TestValidateCountsTheTokensOfTheSplit(t *testing.T) {
	for _, n := range []int{12, 199, 200, 450} {
		t.Run(fmt.Sprintf("%d examples", n), func(t *testing.T) {
			data, counts := splitFixture(t, n)
			r := validate(t, data, Options{})
			if !r.Valid {
				t.Fatalf("fixture invalid: %v", r.Issues)
			}
			lines := make([]int64, 0, n)
			for ln := range counts {
				lines = append(lines, ln)
			}
			slices.Sort(lines)
			// Every line but one, smallest key first: the first
			// MaxExamples of them are what the validator keeps.
			order := holdout.Lines(lines, 1, int64(n), 0)
			order = append(order, slices.DeleteFunc(slices.Clone(lines), func(ln int64) bool { return slices.Contains(order, ln) })...)
			var want [][2]int64
			for _, ln := range order[:min(n, holdout.MaxExamples)] {
				want = append(want, counts[ln])
			}
			if !slices.Equal(r.Split.HeldOut, want) {
				t.Errorf("Split.HeldOut = %v, want %v", r.Split.HeldOut, want)
			}
			var first [][2]int64
			for _, ln := range lines[:min(n, holdout.MaxExamples)] {
				first = append(first, counts[ln])
			}
			if !slices.Equal(r.Split.First, first) {
				t.Errorf("Split.First = %v, want %v", r.Split.First, first)
			}
			// Any share's held-out lines are a prefix of HeldOut.
			for _, share := range []float64{0.05, 0.1, 0.3, 0.5} {
				held := holdout.Lines(lines, share, holdout.MaxExamples, 0)
				var tokens [2]int64
				for _, ln := range held {
					tokens[0] += counts[ln][0]
					tokens[1] += counts[ln][1]
				}
				var prefix [2]int64
				for _, c := range r.Split.HeldOut[:len(held)] {
					prefix[0] += c[0]
					prefix[1] += c[1]
				}
				if prefix != tokens {
					t.Errorf("share %v: prefix of %d sums to %v, the held-out lines to %v", share, len(held), prefix, tokens)
				}
			}
		})
	}
}

func TestTheSplitCountsOnlyValidExamples(t *testing.T) {
	r := validate(t, goodLines(3)+"not json\n"+goodLines(2), Options{})
	if len(r.Split.HeldOut) != 5 || len(r.Split.First) != 5 {
		t.Fatalf("Split = %d held out, %d first; want the 5 valid examples", len(r.Split.HeldOut), len(r.Split.First))
	}
}
