package estimate

import (
	"math"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// measured returns a finished job of Qwen3-Next on an H100 whose training
// took factor × what the table says its 100 micro-batches of 800,000
// padded tokens take: 100 × 0.49 s + 800,000 / 12,400 tokens/s.
func measured(job string, factor, load float64) pipeline.Measurement {
	table := 100*0.49 + 800_000/12_400.0
	return pipeline.Measurement{JobID: job, Owner: "someone", Model: catalog.DefaultModelID, GPU: "h100-80gb", Quantization: "nf4",
		MicroBatches: 100, PaddedTokens: 800_000, TrainSeconds: factor * table, SecondsPerMicroBatch: factor * table / 100,
		TokensPerSecond: 5000, LoadSeconds: load}
}

func TestMeasuredJobsReplaceTheTable(t *testing.T) {
	c := catalog.Default()
	in := Input{Dataset: example, Hyperparameters: preset(t, "balanced"), GPU: "h100-80gb"}
	// Noise the estimator must ignore: other GPUs, models, quantizations,
	// and jobs without the figures.
	noise := []pipeline.Measurement{
		{JobID: "a", Model: catalog.DefaultModelID, GPU: "a100-80gb", Quantization: "nf4", MicroBatches: 1, PaddedTokens: 1, TrainSeconds: 1e6, LoadSeconds: 1e6},
		{JobID: "b", Model: "Qwen/Qwen3-8B", GPU: "h100-80gb", MicroBatches: 1, PaddedTokens: 1, TrainSeconds: 1e6, LoadSeconds: 1e6},
		{JobID: "c", Model: catalog.DefaultModelID, GPU: "h100-80gb", Quantization: "bf16", MicroBatches: 1, PaddedTokens: 1, TrainSeconds: 1e6, LoadSeconds: 1e6},
		{JobID: "d", Model: catalog.DefaultModelID, GPU: "h100-80gb", Quantization: "nf4"},
	}

	t.Run("three finished jobs set the training and load times", func(t *testing.T) {
		in := in
		in.Measured = append([]pipeline.Measurement{measured("j1", 2.0, 120), measured("j2", 1.8, 100), measured("j3", 2.4, 200)}, noise...)
		r, err := Estimate(c, in)
		if err != nil {
			t.Fatal(err)
		}
		// The table's training time (TestEstimate): 564 × 0.49 s plus
		// 3.60 / 3.89 / 4.48 M padded tokens at 12,400 tokens/s = 566.68 /
		// 590.26 / 637.41 s, × the ratios 1.8 (smallest), 2.0 (median),
		// 2.4 (largest): 1020.0, 1180.5, 1529.8 s. Loading: 100 / 120 / 200 s.
		if got, want := stageSeconds(r, "training"), (SecondsRange{1021, 1181, 1530}); got != want {
			t.Errorf("training = %+v s, want %+v", got, want)
		}
		if got, want := stageSeconds(r, "model_load"), (SecondsRange{100, 120, 200}); got != want {
			t.Errorf("model_load = %+v s, want %+v", got, want)
		}
		th := r.Throughput
		if th.Basis != BasisMeasured || th.MeasuredJobs != 3 || th.TokensPerSecond != 6200 || th.MicroBatchSeconds != 0.98 || th.Uncertainty != 0.2 {
			t.Errorf("Throughput = %+v, want measured on 3 jobs: 6200 tokens/s, 0.98 s per micro-batch, uncertainty 0.2", th)
		}
		for _, name := range []string{"throughput", "model_load"} {
			if a := assumption(r, name); !strings.Contains(a, "measured on 3 finished jobs") || strings.Contains(a, "NOT measured") {
				t.Errorf("assumption %s = %q, want it to say measured on 3 finished jobs", name, a)
			}
		}
		checkConsistent(t, r)
	})

	t.Run("two finished jobs are not enough", func(t *testing.T) {
		table, err := Estimate(c, in)
		if err != nil {
			t.Fatal(err)
		}
		in := in
		in.Measured = append([]pipeline.Measurement{measured("j1", 2.0, 120), measured("j2", 1.8, 100)}, noise...)
		r, err := Estimate(c, in)
		if err != nil {
			t.Fatal(err)
		}
		if r.DurationSeconds != table.DurationSeconds || r.Throughput.Basis != BasisTable || r.Throughput.MeasuredJobs != 2 {
			t.Errorf("Estimate(2 measurements) = %+v s, basis %q on %d jobs; want the table's %+v s, on 2 jobs",
				r.DurationSeconds, r.Throughput.Basis, r.Throughput.MeasuredJobs, table.DurationSeconds)
		}
		if a := assumption(r, "throughput"); !strings.Contains(a, "NOT measured on a GPU") || !strings.Contains(a, "has 2 finished jobs with measurements, 3 are needed") {
			t.Errorf("throughput assumption = %q, want it to say it is not measured and how many jobs are missing", a)
		}
	})

	t.Run("the latest jobs count, at most 25", func(t *testing.T) {
		var ms []pipeline.Measurement
		for range MaxMeasuredJobs {
			ms = append(ms, measured("new", 1.0, 100))
		}
		for range 10 {
			ms = append(ms, measured("old", 5.0, 900))
		}
		cal := calibrate(ms, mustModel(t, c, catalog.DefaultModelID), mustGPU(t, c, "h100-80gb"), catalog.NF4, mustThroughput(t, c, catalog.DefaultModelID, "h100-80gb"))
		if cal.trainJobs != MaxMeasuredJobs || cal.trainFactor[expected] < 0.999 || cal.trainFactor[expected] > 1.001 || cal.loadSeconds[high] > 110.0001 {
			t.Errorf("calibrate(25 new, 10 old) = %+v, want the 25 newest: factor 1, load at most 110 s", cal)
		}
	})
}

func TestSpreadOf(t *testing.T) {
	tests := []struct {
		name string
		xs   []float64
		want [3]float64
	}{
		{"the median of an odd count is the middle", []float64{3, 1, 2}, [3]float64{1, 2, 3}},
		{"the median of an even count is the mean of the middle two", []float64{4, 1, 3, 2}, [3]float64{1, 2.5, 4}},
		{"ends are at least 10 % from the median", []float64{10, 10, 10}, [3]float64{10 / 1.1, 10, 11}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := spreadOf(tt.xs)
			if math.Abs(got[0]-tt.want[0]) > 1e-9 || got[1] != tt.want[1] || math.Abs(got[2]-tt.want[2]) > 1e-9 {
				t.Errorf("spreadOf(%v) = %v, want %v", tt.xs, got, tt.want)
			}
		})
	}
}

func TestMicroBatchTokensIsTheEstimatesChoice(t *testing.T) {
	c := catalog.Default()
	h := preset(t, "balanced")
	for _, g := range c.GPUs() {
		r, estErr := Estimate(c, Input{Dataset: example, Hyperparameters: h, GPU: g.ID})
		got, err := MicroBatchTokens(c, catalog.DefaultModelID, g.ID, h)
		if (err == nil) != (estErr == nil) || got != r.MicroBatchTokens {
			t.Errorf("MicroBatchTokens(%s) = %d, %v; the estimate chose %d, %v", g.ID, got, err, r.MicroBatchTokens, estErr)
		}
	}
	if _, err := MicroBatchTokens(c, catalog.DefaultModelID, "l40s-48gb", h); pipeline.ErrorCode(err) != pipeline.EInvalid {
		t.Errorf("MicroBatchTokens(l40s) error = %v, want %s: the model does not fit", err, pipeline.EInvalid)
	}
}

func mustModel(t *testing.T, c *catalog.Catalog, id string) catalog.Model {
	t.Helper()
	m, err := c.Model(id)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustGPU(t *testing.T, c *catalog.Catalog, id string) catalog.GPU {
	t.Helper()
	g, err := c.GPU(id)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func mustThroughput(t *testing.T, c *catalog.Catalog, model, gpu string) catalog.Throughput {
	t.Helper()
	tp, err := c.Throughput(model, gpu)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}
