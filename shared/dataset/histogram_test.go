package dataset

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestHistogramIsExactForSmallValues(t *testing.T) {
	var h histogram
	for v := uint64(1); v <= 100; v++ {
		h.add(v)
	}
	want := Distribution{Min: 1, Mean: 50.5, P50: 50, P95: 95, Max: 100}
	if got := h.distribution(); got != want {
		t.Errorf("distribution(1..100) = %+v, want %+v", got, want)
	}
}

func TestHistogramQuantilesStayWithinTheirErrorBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name string
		gen  func() uint64
	}{
		{"uniform up to 30000", func() uint64 { return rng.Uint64N(30000) }},
		{"log-normal token counts", func() uint64 { return uint64(math.Exp(rng.NormFloat64()*1.2 + 6)) }},
		{"huge values", func() uint64 { return rng.Uint64() >> rng.UintN(64) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			vals := make([]uint64, 100_000)
			for i := range vals {
				vals[i] = tt.gen()
				h.add(vals[i])
			}
			slices.Sort(vals)
			for _, q := range []float64{0.01, 0.5, 0.95, 0.999, 1} {
				want := vals[int(math.Ceil(q*float64(len(vals))))-1]
				got := h.quantile(q)
				if diff := math.Abs(float64(got) - float64(want)); diff > float64(want)/256 {
					t.Errorf("quantile(%v) = %d, want %d within 0.4%%", q, got, want)
				}
			}
		})
	}
}

func TestHistogramBucketsCoverEveryValue(t *testing.T) {
	for _, v := range []uint64{0, 1, 1023, 1024, 1025, 2047, 2048, 1 << 40, math.MaxUint64} {
		i := bucketOf(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d, want within 0..%d", v, i, histBuckets-1)
		}
		if mid := bucketValue(i); math.Abs(float64(mid)-float64(v)) > float64(v)/256 {
			t.Errorf("bucketValue(bucketOf(%d)) = %d, want within 0.4%%", v, mid)
		}
	}
}

func TestMergedHistogramsAreTheHistogramOfAllTheValues(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var all, a, b, empty histogram
	for i := range 5000 {
		v := rng.Uint64N(1 << uint(1+rng.IntN(40)))
		all.add(v)
		if i%3 == 0 {
			a.add(v)
		} else {
			b.add(v)
		}
	}
	var m histogram
	m.merge(&empty)
	m.merge(&a)
	m.merge(&empty)
	m.merge(&b)
	if m != all {
		t.Errorf("merge(a, b).distribution() = %+v, want %+v (the histogram of every value)", m.distribution(), all.distribution())
	}
}
