package api_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/pipeline"
)

func TestADatasetViewShowsTheDefaultSplitNotItsPerExampleCounts(t *testing.T) {
	held := make([][2]int64, 200)
	for i := range held {
		held[i] = [2]int64{int64(100 + i), 10}
	}
	d := &pipeline.Dataset{ID: "ds_1", Status: pipeline.DatasetReady, Validation: &pipeline.ValidationSummary{
		Valid: true, Examples: 1000, Tokens: pipeline.TokenCounts{Total: 300_000, Trained: 50_000},
		Split: &pipeline.SplitTokens{HeldOut: held, First: held},
	}}
	v := api.ViewDataset(d)
	// A tenth of 1,000: the 100 examples with the smallest keys.
	want := pipeline.DatasetSplit{Split: 0.1,
		HeldOut:  pipeline.SplitPart{Examples: 100, Tokens: pipeline.TokenCounts{Total: 100*100 + 99*100/2, Trained: 1000}},
		Training: pipeline.SplitPart{Examples: 900, Tokens: pipeline.TokenCounts{Total: 300_000 - (100*100 + 99*100/2), Trained: 49_000}},
	}
	if v.DefaultSplit == nil || *v.DefaultSplit != want {
		t.Fatalf("ViewDataset().DefaultSplit = %+v, want %+v", v.DefaultSplit, want)
	}
	b, _ := json.Marshal(v)
	if strings.Contains(string(b), `"held_out":[[`) {
		t.Errorf("the view carries the per-example counts: %.300s", b)
	}
	if d.Validation.Split == nil {
		t.Error("ViewDataset cleared the record's counts")
	}

	d.Validation.Split = nil
	if v := api.ViewDataset(d); v.DefaultSplit != nil {
		t.Errorf("without counts: DefaultSplit = %+v, want none", v.DefaultSplit)
	}
}
