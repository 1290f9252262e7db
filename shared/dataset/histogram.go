package dataset

import (
	"math"
	"math/bits"
)

// The histogram counts values below exactLimit one by one; a larger value
// v with 2^e <= v < 2^(e+1) falls in one of subBuckets equal slices of
// [2^e, 2^(e+1)). A slice is at most 1/subBuckets of its lower bound wide
// and is reported by its middle, so a reported percentile is off by at
// most 1/(2*subBuckets) of the true one: 0.4%.
const (
	exactBits   = 10
	exactLimit  = 1 << exactBits // 1024
	subBits     = 7
	subBuckets  = 1 << subBits // 128
	histBuckets = exactLimit + (64-exactBits)*subBuckets
)

// histogram summarises non-negative integers in constant memory (62 KiB).
type histogram struct {
	counts   [histBuckets]uint64
	n        uint64
	sum      float64
	min, max uint64
}

func (h *histogram) add(v uint64) {
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

func bucketOf(v uint64) int {
	if v < exactLimit {
		return int(v)
	}
	e := bits.Len64(v) - 1
	sub := int(v>>(e-subBits)) - subBuckets
	return exactLimit + (e-exactBits)*subBuckets + sub
}

// bucketValue returns the value a bucket stands for: the value itself
// below exactLimit, the middle of its slice above.
func bucketValue(i int) uint64 {
	if i < exactLimit {
		return uint64(i)
	}
	i -= exactLimit
	e := i/subBuckets + exactBits
	sub := uint64(i%subBuckets + subBuckets)
	shift := e - subBits
	return sub<<shift + (uint64(1)<<shift)/2
}

// quantile returns the nearest-rank q-quantile (0 < q <= 1): the smallest
// value with at least ceil(q*n) values at or below it.
func (h *histogram) quantile(q float64) uint64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(max(bucketValue(i), h.min), h.max)
		}
	}
	return h.max
}

func (h *histogram) distribution() Distribution {
	if h.n == 0 {
		return Distribution{}
	}
	return Distribution{
		Min:  int64(h.min),
		Mean: math.Round(h.sum/float64(h.n)*100) / 100,
		P50:  int64(h.quantile(0.50)),
		P95:  int64(h.quantile(0.95)),
		Max:  int64(h.max),
	}
}

// merge adds the values of o to h: the result is the histogram of both
// sets of values, exactly (the sum of integer values is exact in a
// float64 up to 2^53).
func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	// Only the buckets from o's smallest value to its largest can hold
	// counts: a part with a few examples merges a few buckets.
	for i := bucketOf(o.min); i <= bucketOf(o.max); i++ {
		h.counts[i] += o.counts[i]
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}
