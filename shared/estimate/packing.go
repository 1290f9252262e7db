package estimate

import (
	"math"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// How the worker forms micro-batches (gpu-image/brightrun_worker/train.py,
// plan_epoch and split_by_tokens): every epoch it shuffles the examples,
// sorts them by length (longest first) within groups of megabatchSteps
// optimizer steps, cuts each group into steps of batch_size ×
// gradient_accumulation examples, and cuts each step, longest example
// first, into micro-batches whose padded size (rows × the longest row,
// rounded up to padMultiple on a GPU) stays within micro_batch_tokens. No
// packing: every example is its own padded row. packEpoch replays that on
// the dataset's length distribution.
const (
	megabatchSteps = 16
	padMultiple    = 8
)

// lengthQuantiles is the examples' token lengths as a piecewise-linear
// quantile function through (0, min), (0.5, p50), (0.95, p95), (1, max).
type lengthQuantiles struct {
	u, v [4]float64
}

// quantilesOf returns d's length distribution, and false when d does not
// say how long its longest example is (then every example is taken as
// the mean). Missing figures are filled in: p95 as the longest, p50 as
// the mean, the shortest as half of p50.
func quantilesOf(d Dataset) (lengthQuantiles, bool) {
	mean := float64(d.TokensTotal) / float64(d.Examples)
	q := lengthQuantiles{u: [4]float64{0, 0.5, 0.95, 1}}
	if d.TokensPerExampleMax <= 0 {
		q.v = [4]float64{mean, mean, mean, mean}
		return q, false
	}
	mx := float64(d.TokensPerExampleMax)
	p95 := mx
	if d.TokensPerExampleP95 > 0 {
		p95 = min(float64(d.TokensPerExampleP95), mx)
	}
	p50 := min(mean, p95)
	if d.TokensPerExampleP50 > 0 {
		p50 = min(float64(d.TokensPerExampleP50), p95)
	}
	lo := max(1, p50/2)
	if d.TokensPerExampleMin > 0 {
		lo = float64(d.TokensPerExampleMin)
	}
	q.v = [4]float64{min(lo, p50), p50, p95, mx}
	return q, true
}

// at is the length at quantile u in [0, 1].
func (q lengthQuantiles) at(u float64) float64 {
	for i := 1; i < len(q.u); i++ {
		if u <= q.u[i] {
			f := (u - q.u[i-1]) / (q.u[i] - q.u[i-1])
			return q.v[i-1] + f*(q.v[i]-q.v[i-1])
		}
	}
	return q.v[len(q.v)-1]
}

// packing is one epoch cut into micro-batches.
type packing struct {
	// microBatches counts the epoch's forward/backward passes.
	microBatches int64
	// padFraction is the padding over the tokens, at the expected end.
	padFraction float64
	// spread is true when the dataset's length distribution was known:
	// then the padding is simulated; otherwise padFraction covers only
	// the rounding of widths, and paddingFraction is added at each end.
	spread bool
	// rowsPerMicroBatch is the mean number of examples per micro-batch.
	rowsPerMicroBatch float64
}

// packEpoch cuts one epoch of d into micro-batches of at most budget
// padded tokens, as the worker does, with every example as long as the
// expected order statistic of its rank in its sorted group.
func packEpoch(d Dataset, h pipeline.Hyperparameters, budget int) packing {
	q, spread := quantilesOf(d)
	step := int64(h.BatchSize) * int64(h.GradientAccumulation)
	group := step * megabatchSteps
	seqCap := float64(h.MaxSeqLength)
	var p packing
	var padded, tokens float64
	add := func(n, times int64) {
		if n == 0 || times == 0 {
			return
		}
		mb, pad, tok := packGroup(q, n, step, float64(budget), seqCap)
		p.microBatches += mb * times
		padded += pad * float64(times)
		tokens += tok * float64(times)
	}
	add(group, d.Examples/group)
	add(d.Examples%group, 1)
	p.spread = spread
	if tokens > 0 {
		p.padFraction = padded/tokens - 1
	}
	if p.microBatches > 0 {
		p.rowsPerMicroBatch = float64(d.Examples) / float64(p.microBatches)
	}
	return p
}

// packGroup packs one sorted group of n examples, cut into steps of step
// examples, and returns its micro-batches, their padded tokens and the
// tokens they hold. The i-th longest of n examples is taken at quantile
// (n − i) / (n + 1), cut at seqCap.
func packGroup(q lengthQuantiles, n, step int64, budget, seqCap float64) (microBatches int64, padded, tokens float64) {
	for lo := int64(0); lo < n; lo += step {
		hi := min(lo+step, n)
		rows, width := 0.0, 0.0
		for i := lo; i < hi; i++ {
			l := min(q.at(float64(n-i)/float64(n+1)), seqCap)
			w := math.Ceil(math.Ceil(l)/padMultiple) * padMultiple
			if rows > 0 && (rows+1)*max(width, w) > budget {
				microBatches++
				padded += rows * width
				rows, width = 0, 0
			}
			rows++
			width = max(width, w)
			tokens += l
		}
		if rows > 0 {
			microBatches++
			padded += rows * width
		}
	}
	return microBatches, padded, tokens
}
