package pipeline_test

import (
	"testing"

	"github.com/brightrun/brightrun/shared/pipeline"
)

func TestSplitOf(t *testing.T) {
	counts := func(n int) [][2]int64 {
		out := make([][2]int64, n)
		for i := range out {
			out[i] = [2]int64{10, 4}
		}
		return out
	}
	summary := func(examples int64, held int) *pipeline.ValidationSummary {
		return &pipeline.ValidationSummary{Valid: true, Examples: examples,
			Tokens: pipeline.TokenCounts{Total: examples * 10, Trained: examples * 4}, Split: &pipeline.SplitTokens{HeldOut: counts(held)}}
	}
	share := func(f float64) *float64 { return &f }
	for _, tt := range []struct {
		name   string
		s      *pipeline.ValidationSummary
		split  *float64
		ok     bool
		wantK  int64
		wantSh float64
	}{
		{"a small dataset holds nothing out by default", summary(150, 150), nil, true, 0, 0},
		{"from 200 a tenth", summary(200, 200), nil, true, 20, 0.1},
		{"a chosen share", summary(150, 150), share(0.3), true, 45, 0.3},
		{"capped at 200", summary(100_000, 200), share(0.5), true, 200, 0.5},
		{"no counts recorded", &pipeline.ValidationSummary{Valid: true, Examples: 300}, nil, false, 0, 0},
		{"an invalid dataset", &pipeline.ValidationSummary{Examples: 300, Split: &pipeline.SplitTokens{HeldOut: counts(200)}}, nil, false, 0, 0},
		{"fewer counts than held out", summary(300, 10), nil, false, 0, 0},
		{"no summary", nil, nil, false, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.s.SplitOf(tt.split)
			if ok != tt.ok {
				t.Fatalf("SplitOf ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			want := pipeline.DatasetSplit{Split: tt.wantSh,
				HeldOut:  pipeline.SplitPart{Examples: tt.wantK, Tokens: pipeline.TokenCounts{Total: tt.wantK * 10, Trained: tt.wantK * 4}},
				Training: pipeline.SplitPart{Examples: tt.s.Examples - tt.wantK, Tokens: pipeline.TokenCounts{Total: (tt.s.Examples - tt.wantK) * 10, Trained: (tt.s.Examples - tt.wantK) * 4}},
			}
			if got != want {
				t.Errorf("SplitOf = %+v, want %+v", got, want)
			}
		})
	}
}
