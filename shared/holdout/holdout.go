// Package holdout is the validation split: which conversations of a
// dataset a job holds out for evaluation instead of training on them. It
// is the Go twin of gpu-image/brightrun_worker/data.py (the validation
// split), so that the validator can count the tokens of both parts and
// the estimator can price the evaluation without the worker;
// testdata/contracts/validation_split.json holds the vectors both sides
// pass.
//
// The rule is a pure function of line numbers, the count and the settings:
//
//	key(line) = SHA-256(UTF-8(Domain + ":" + seed + ":" + line))
//	k         = Count(n, split, maxExamples)
//	held out  = the k lines with the smallest keys (bytewise)
//
// where line is the 1-based line number in the file (blank lines count as
// lines) and n the number of conversations (non-blank lines). Whole lines
// are held out, so a conversation is never cut in two. Because the held-out
// lines are the smallest keys, those of a smaller share are a prefix of
// those of a larger one: knowing the MaxExamples smallest keys answers
// every share.
package holdout

import (
	"bytes"
	"crypto/sha256"
	"math"
	"slices"
	"strconv"
)

// The rule's constants, as the worker has them (data.py, spec.py).
const (
	// Domain separates the split's hashes from any other use of SHA-256.
	Domain = "brightrun/validation-split/v1"
	// DefaultShare is held out when a job does not say, from
	// DefaultMinExamples conversations on; below, nothing is.
	DefaultShare       = 0.1
	DefaultMinExamples = 200
	// MaxExamples is the worker's default cap on the held-out examples
	// (and on those of a second validation dataset); the service never
	// sets another.
	MaxExamples = 200
	// MaxShare is the largest share a job may hold out.
	MaxShare = 0.5
)

// Key is a line's place in the split: smaller keys are held out first.
type Key [sha256.Size]byte

// KeyOf is the key of the 1-based line number line under seed.
func KeyOf(seed, line int64) Key {
	b := make([]byte, 0, len(Domain)+48)
	b = append(b, Domain...)
	b = append(b, ':')
	b = strconv.AppendInt(b, seed, 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, line, 10)
	return sha256.Sum256(b)
}

// Compare orders keys bytewise: -1, 0 or +1.
func (k Key) Compare(o Key) int { return bytes.Compare(k[:], o[:]) }

// DefaultSplit is the share held out of n conversations when a job does
// not say: none below DefaultMinExamples, so that small datasets train on
// everything, else DefaultShare (capped by the max examples).
func DefaultSplit(n int64) float64 {
	if n < DefaultMinExamples {
		return 0
	}
	return DefaultShare
}

// Count is how many of n conversations a share split holds out:
// floor(split × n) in IEEE double, at most maxExamples, and at least one
// conversation left to train on; never below 0 (a split that is not a
// positive number holds nothing out).
func Count(n int64, split float64, maxExamples int64) int64 {
	if !(split > 0) || n <= 1 || maxExamples <= 0 {
		return 0
	}
	f := math.Floor(split * float64(n))
	k := min(maxExamples, n-1)
	if f < float64(k) {
		k = int64(f)
	}
	return max(k, 0)
}

// Lines returns the line numbers a share split holds out of the
// conversations on lines (1-based, distinct), smallest key first.
func Lines(lines []int64, split float64, maxExamples, seed int64) []int64 {
	k := Count(int64(len(lines)), split, maxExamples)
	if k == 0 {
		return nil
	}
	type keyed struct {
		key  Key
		line int64
	}
	ranked := make([]keyed, len(lines))
	for i, ln := range lines {
		ranked[i] = keyed{KeyOf(seed, ln), ln}
	}
	slices.SortFunc(ranked, func(a, b keyed) int {
		if c := a.key.Compare(b.key); c != 0 {
			return c
		}
		return int(min(max(a.line-b.line, -1), 1))
	})
	out := make([]int64, k)
	for i := range out {
		out[i] = ranked[i].line
	}
	return out
}
