package estimate

import (
	"math"
	"testing"
)

func TestQuantilesOf(t *testing.T) {
	tests := []struct {
		name       string
		d          Dataset
		want       [4]float64
		wantSpread bool
	}{
		{"every figure given is used", Dataset{Examples: 4, TokensTotal: 2036, TokensPerExampleMax: 1000, TokensPerExampleP95: 900, TokensPerExampleP50: 500, TokensPerExampleMin: 100},
			[4]float64{100, 500, 900, 1000}, true},
		{"without p50 and min, the median is the mean and the shortest half of it", Dataset{Examples: 10, TokensTotal: 4000, TokensPerExampleMax: 1000, TokensPerExampleP95: 900},
			[4]float64{200, 400, 900, 1000}, true},
		{"without p95 it is the longest", Dataset{Examples: 10, TokensTotal: 4000, TokensPerExampleMax: 1000},
			[4]float64{200, 400, 1000, 1000}, true},
		{"a mean above p95 is held to it", Dataset{Examples: 10, TokensTotal: 9500, TokensPerExampleMax: 1000, TokensPerExampleP95: 900},
			[4]float64{450, 900, 900, 1000}, true},
		{"without the longest every example is the mean", Dataset{Examples: 10, TokensTotal: 4000},
			[4]float64{400, 400, 400, 400}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, spread := quantilesOf(tt.d)
			if q.v != tt.want || spread != tt.wantSpread {
				t.Errorf("quantilesOf(%+v) = %v, %v, want %v, %v", tt.d, q.v, spread, tt.want, tt.wantSpread)
			}
		})
	}
	q, _ := quantilesOf(Dataset{Examples: 4, TokensTotal: 2036, TokensPerExampleMax: 1000, TokensPerExampleP95: 900, TokensPerExampleP50: 500, TokensPerExampleMin: 100})
	for _, tt := range []struct{ u, want float64 }{{0, 100}, {0.25, 300}, {0.5, 500}, {0.725, 700}, {0.95, 900}, {0.975, 950}, {1, 1000}} {
		if got := q.at(tt.u); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("at(%v) = %v, want %v", tt.u, got, tt.want)
		}
	}
}

// TestPackGroup replays the worker's split_by_tokens by hand. Four
// examples at quantiles 0.8, 0.6, 0.4, 0.2 of (0, 100), (0.5, 500),
// (0.95, 900), (1, 1000) are 766.7, 588.9, 420 and 260 tokens long, 768,
// 592, 424 and 264 wide.
func TestPackGroup(t *testing.T) {
	q, _ := quantilesOf(Dataset{Examples: 4, TokensTotal: 2036, TokensPerExampleMax: 1000, TokensPerExampleP95: 900, TokensPerExampleP50: 500, TokensPerExampleMin: 100})
	const tokens = 766.6666666666667 + 588.8888888888889 + 420 + 260
	tests := []struct {
		name           string
		step           int64
		budget, seqCap float64
		wantMB         int64
		wantPadded     float64
		wantTokens     float64
	}{
		{"a budget that holds the step makes one micro-batch as wide as the longest", 4, 3072, 4096, 1, 4 * 768, tokens},
		// 768 + 592 fill 2 × 768 = 1536; 424 would make 3 × 768: a new
		// micro-batch of 424 and 264, 2 × 424 = 848.
		{"a smaller budget cuts the step, longest first", 4, 1536, 4096, 2, 1536 + 848, tokens},
		// Steps of 2: {768, 592} and {424, 264}, each one micro-batch.
		{"steps are cut before micro-batches", 2, 8192, 4096, 2, 2*768 + 2*424, tokens},
		// Cut at 500: 500, 500, 420, 260, all but the last two 504 wide.
		{"examples are cut at max_seq_length before padding", 4, 8192, 500, 1, 4 * 504, 500 + 500 + 420 + 260},
		{"an example wider than the budget is a micro-batch alone", 4, 700, 4096, 4, 768 + 592 + 424 + 264, tokens},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mb, padded, tok := packGroup(q, 4, tt.step, tt.budget, tt.seqCap)
			if mb != tt.wantMB || math.Abs(padded-tt.wantPadded) > 1e-9 || math.Abs(tok-tt.wantTokens) > 1e-9 {
				t.Errorf("packGroup(steps of %d, budget %v, cut %v) = %d, %v padded, %v tokens; want %d, %v, %v",
					tt.step, tt.budget, tt.seqCap, mb, padded, tok, tt.wantMB, tt.wantPadded, tt.wantTokens)
			}
		})
	}
}

// TestPackEpoch checks how an epoch is cut into groups of 16 steps.
func TestPackEpoch(t *testing.T) {
	h := preset(t, "balanced") // steps of 2 × 8 = 16 examples, groups of 256
	tests := []struct {
		name     string
		d        Dataset
		budget   int
		wantMB   int64
		wantRows float64
		wantPad  float64
		wantSprd bool
	}{
		// 1000 examples of 1200 tokens: 6 rows per 8192 tokens, 3
		// micro-batches per step of 16; 3 groups of 256 (48 each) and one
		// of 232 (14 steps × 3 + a step of 8 in 2): 188.
		{"equal examples fill micro-batches by rows", example, 8192, 188, 1000.0 / 188, 0, false},
		// 500 tokens are 504 wide: 16 rows in 8192, one micro-batch per
		// step, 63 steps; the rounding adds 0.8 %.
		{"widths are rounded up to 8", Dataset{Examples: 1000, TokensTotal: 500_000}, 8192, 63, 1000.0 / 63, 4.0 / 500, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := packEpoch(tt.d, h, tt.budget)
			if p.microBatches != tt.wantMB || math.Abs(p.rowsPerMicroBatch-tt.wantRows) > 1e-9 || math.Abs(p.padFraction-tt.wantPad) > 1e-9 || p.spread != tt.wantSprd {
				t.Errorf("packEpoch(%+v, %d) = %+v, want %d micro-batches, %.3f rows, padding %.4f, spread %v",
					tt.d, tt.budget, p, tt.wantMB, tt.wantRows, tt.wantPad, tt.wantSprd)
			}
		})
	}

	t.Run("a wider length distribution pads more", func(t *testing.T) {
		same := Dataset{Examples: 4096, TokensTotal: 4096 * 600, TokensPerExampleMax: 600, TokensPerExampleP95: 600, TokensPerExampleP50: 600, TokensPerExampleMin: 600}
		narrow := Dataset{Examples: 4096, TokensTotal: 4096 * 600, TokensPerExampleMax: 1200, TokensPerExampleP95: 1000, TokensPerExampleP50: 600, TokensPerExampleMin: 300}
		wide := Dataset{Examples: 4096, TokensTotal: 4096 * 600, TokensPerExampleMax: 4000, TokensPerExampleP95: 2000, TokensPerExampleP50: 400, TokensPerExampleMin: 20}
		var got [3]float64
		for i, d := range []Dataset{same, narrow, wide} {
			got[i] = packEpoch(d, h, 16384).padFraction
		}
		if !(got[0] == 0 && got[0] < got[1] && got[1] < got[2]) {
			t.Errorf("padding of equal, narrow, wide lengths = %.4f, %.4f, %.4f; want 0 and growing", got[0], got[1], got[2])
		}
	})
}
