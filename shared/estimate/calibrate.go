package estimate

import (
	"slices"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// Learning from finished jobs. Every completed job stores what it measured
// (pipeline.Measurement); once a model × GPU pair has MinMeasuredJobs of
// them, its estimates rest on them instead of the table:
//
//   - training: each job's measured train seconds divided by what the
//     table's figure says its measured micro-batches and padded tokens
//     take (micro-batches × fixed cost + padded tokens / tokens per
//     second); the new job's table time is multiplied by the median of
//     these ratios, and by their smallest and largest at the ends. The
//     table keeps the split between fixed and per-token cost, the
//     measurements set the level.
//   - model load: the median of the measured load times, the smallest and
//     largest at the ends.
//
// Either range is at least ±measuredMinSpread around its median.
const (
	// MinMeasuredJobs is how many finished jobs a model × GPU pair needs
	// before its estimates use their measurements.
	MinMeasuredJobs = 3
	// MaxMeasuredJobs is how many of the latest jobs are used.
	MaxMeasuredJobs = 25
	// measuredMinSpread: three jobs do not show the whole spread.
	measuredMinSpread = 0.10
)

// calibration is what finished jobs measured of one model on one GPU.
type calibration struct {
	// trainJobs counts the usable measurements; trainFactor is the ratio
	// of measured to table training time at the low, expected and high
	// ends (zero when trainJobs < MinMeasuredJobs).
	trainJobs   int
	trainFactor [3]float64
	// loadJobs counts the measurements with a load time; loadSeconds is
	// their range (zero when loadJobs < MinMeasuredJobs).
	loadJobs    int
	loadSeconds [3]float64
}

// calibrate reads the measurements of m on g in quantization q, the
// latest MaxMeasuredJobs of each kind, against the table's figure tp.
func calibrate(ms []pipeline.Measurement, m catalog.Model, g catalog.GPU, q catalog.Quantization, tp catalog.Throughput) calibration {
	var ratios, loads []float64
	for _, x := range ms {
		if x.Model != m.ID || x.GPU != g.ID || (x.Quantization != "" && x.Quantization != string(q)) {
			continue
		}
		if x.Usable() && len(ratios) < MaxMeasuredJobs {
			table := float64(x.MicroBatches)*tp.MicroBatchSeconds + float64(x.PaddedTokens)/tp.TokensPerSecond
			ratios = append(ratios, x.TrainSeconds/table)
		}
		if x.LoadSeconds > 0 && len(loads) < MaxMeasuredJobs {
			loads = append(loads, x.LoadSeconds)
		}
	}
	var c calibration
	c.trainJobs, c.loadJobs = len(ratios), len(loads)
	if len(ratios) >= MinMeasuredJobs {
		c.trainFactor = spreadOf(ratios)
	}
	if len(loads) >= MinMeasuredJobs {
		c.loadSeconds = spreadOf(loads)
	}
	return c
}

func (c calibration) measuredTraining() bool { return c.trainJobs >= MinMeasuredJobs }
func (c calibration) measuredLoad() bool     { return c.loadJobs >= MinMeasuredJobs }

// spreadOf returns the smallest, the median and the largest of xs, the
// ends at least measuredMinSpread away from the median.
func spreadOf(xs []float64) [3]float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return [3]float64{min(s[0], med/(1+measuredMinSpread)), med, max(s[n-1], med*(1+measuredMinSpread))}
}
