package estimate

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/holdout"
	"github.com/brightrun/brightrun/shared/pipeline"
)

const propertyRuns = 2000

// randomInput draws hyperparameters within pipeline.Bounds (micro-batches
// kept small enough that most draws fit somewhere) and consistent dataset
// statistics.
func randomInput(r *rand.Rand, models []catalog.Model) Input {
	seqs := []int{256, 512, 1024, 2048, 4096, 8192}
	h := pipeline.Hyperparameters{
		LearningRate:         1e-4,
		BatchSize:            1 + r.IntN(4),
		GradientAccumulation: 1 + r.IntN(64),
		Epochs:               1 + r.IntN(20),
		LoRARank:             4 + r.IntN(125),
		LoRAAlpha:            32,
		LoRADropout:          0.05,
		MaxSeqLength:         seqs[r.IntN(len(seqs))],
		WarmupRatio:          0.05,
	}
	examples := int64(1 + r.IntN(20000))
	mean := int64(20 + r.IntN(3000))
	d := Dataset{Examples: examples, TokensTotal: examples * mean}
	d.TokensTrained = d.TokensTotal * int64(r.IntN(101)) / 100
	if r.IntN(2) == 0 {
		d.TokensPerExampleMax = mean + int64(r.IntN(int(3*mean)))
		d.TokensPerExampleP95 = mean + (d.TokensPerExampleMax-mean)/2
	}
	return Input{Dataset: d, Hyperparameters: h, Model: models[r.IntN(len(models))].ID}
}

func ranges(r Result) [3][3]float64 {
	return [3][3]float64{
		{float64(r.DurationSeconds.Low), float64(r.DurationSeconds.Expected), float64(r.DurationSeconds.High)},
		{float64(r.BilledSeconds.Low), float64(r.BilledSeconds.Expected), float64(r.BilledSeconds.High)},
		{r.CostUSD.Low, r.CostUSD.Expected, r.CostUSD.High},
	}
}

// notLess reports the first quantity of more that is below less's.
func notLess(more, less Result) error {
	names := [3]string{"duration", "billed seconds", "cost"}
	ends := [3]string{"low", "expected", "high"}
	a, b := ranges(more), ranges(less)
	for i := range a {
		for j := range a[i] {
			if a[i][j] < b[i][j] {
				return fmt.Errorf("%s %s %v < %v", ends[j], names[i], a[i][j], b[i][j])
			}
		}
	}
	return nil
}

// fittingGPU returns a GPU in on which in's model fits, or "".
func fittingGPU(c *catalog.Catalog, in Input, r *rand.Rand) string {
	gpus := c.GPUs()
	start := r.IntN(len(gpus))
	for i := range gpus {
		g := gpus[(start+i)%len(gpus)]
		in.GPU = g.ID
		if _, err := Estimate(c, in); err == nil {
			return g.ID
		}
	}
	return ""
}

func TestMoreWorkNeverCostsLess(t *testing.T) {
	c := catalog.Default()
	models := c.Models()
	r := rand.New(rand.NewPCG(1, 2))
	tested := map[string]int{}
	for range propertyRuns {
		in := randomInput(r, models)
		if in.GPU = fittingGPU(c, in, r); in.GPU == "" {
			continue
		}
		base, err := Estimate(c, in)
		if err != nil {
			t.Fatal(err)
		}
		checkConsistent(t, base)

		if in.Hyperparameters.Epochs < 20 {
			more := in
			more.Hyperparameters.Epochs += 1 + r.IntN(20-in.Hyperparameters.Epochs)
			if got, err := Estimate(c, more); err != nil {
				t.Fatalf("Estimate(%+v) error %v", more, err)
			} else if err := notLess(got, base); err != nil {
				t.Errorf("%d epochs instead of %d cost less: %v (input %+v)", more.Hyperparameters.Epochs, in.Hyperparameters.Epochs, err, in)
			} else {
				tested["epochs"]++
			}
		}

		more := in
		more.Dataset.TokensTotal += 1 + r.Int64N(in.Dataset.TokensTotal)
		if mx := more.Dataset.TokensPerExampleMax; mx > 0 && mx*more.Dataset.Examples < more.Dataset.TokensTotal {
			more.Dataset.TokensTotal = mx * more.Dataset.Examples
		}
		if got, err := Estimate(c, more); err != nil {
			t.Fatalf("Estimate(%+v) error %v", more, err)
		} else if err := notLess(got, base); err != nil {
			t.Errorf("%d tokens instead of %d cost less: %v (input %+v)", more.Dataset.TokensTotal, in.Dataset.TokensTotal, err, in)
		} else {
			tested["tokens"]++
		}

		more = in
		more.Dataset.Examples += 1 + r.Int64N(in.Dataset.Examples)
		more.Dataset.TokensTotal = more.Dataset.Examples * (in.Dataset.TokensTotal / in.Dataset.Examples)
		more.Dataset.TokensTrained = min(in.Dataset.TokensTrained, more.Dataset.TokensTotal)
		if got, err := Estimate(c, more); err != nil {
			t.Fatalf("Estimate(%+v) error %v", more, err)
		} else if err := notLess(got, base); err != nil {
			t.Errorf("%d examples instead of %d (same mean) cost less: %v (input %+v)", more.Dataset.Examples, in.Dataset.Examples, err, in)
		} else {
			tested["examples"]++
		}
	}
	for _, k := range []string{"epochs", "tokens", "examples"} {
		if tested[k] < propertyRuns/2 {
			t.Errorf("only %d random inputs tested more %s, want at least %d", tested[k], k, propertyRuns/2)
		}
	}
}

// dominates reports whether a trains at least as fast as b at every end of
// the range: a shorter fixed cost per micro-batch and a higher token rate.
func dominates(a, b catalog.Throughput) bool {
	for _, e := range ends {
		sa := [3]float64{1 + a.Uncertainty, 1, 1 - a.Uncertainty}[e]
		sb := [3]float64{1 + b.Uncertainty, 1, 1 - b.Uncertainty}[e]
		if a.MicroBatchSeconds/sa > b.MicroBatchSeconds/sb || a.TokensPerSecond*sa < b.TokensPerSecond*sb {
			return false
		}
	}
	return true
}

func TestAFasterGPUNeverTakesLonger(t *testing.T) {
	c := catalog.Default()
	models := c.Models()
	gpus := c.GPUs()
	r := rand.New(rand.NewPCG(3, 4))

	t.Run("on the built-in table", func(t *testing.T) {
		pairs := 0
		for range propertyRuns {
			in := randomInput(r, models)
			res := map[string]Result{}
			for _, g := range gpus {
				in.GPU = g.ID
				if got, err := Estimate(c, in); err == nil {
					res[g.ID] = got
				}
			}
			for _, a := range gpus {
				for _, b := range gpus {
					ta, _ := c.Throughput(in.Model, a.ID)
					tb, _ := c.Throughput(in.Model, b.ID)
					ra, okA := res[a.ID]
					rb, okB := res[b.ID]
					// Only GPUs that get the same micro_batch_tokens compare:
					// a GPU with less memory gets smaller micro-batches, so
					// more of them, each paying the fixed cost.
					if a.ID == b.ID || !okA || !okB || !dominates(ta, tb) || ra.MicroBatchTokens != rb.MicroBatchTokens {
						continue
					}
					pairs++
					if ra.DurationSeconds.Low > rb.DurationSeconds.Low || ra.DurationSeconds.Expected > rb.DurationSeconds.Expected || ra.DurationSeconds.High > rb.DurationSeconds.High {
						t.Errorf("%s on %s takes %+v s, longer than on slower %s (%+v s); input %+v",
							in.Model, a.ID, ra.DurationSeconds, b.ID, rb.DurationSeconds, in)
					}
				}
			}
		}
		if pairs < propertyRuns {
			t.Errorf("only %d (input, faster GPU, slower GPU) triples compared, want at least %d", pairs, propertyRuns)
		}
	})

	t.Run("when one GPU's figures are made faster", func(t *testing.T) {
		tps := c.Throughputs()
		for i := range 200 {
			in := randomInput(r, models)
			if in.GPU = fittingGPU(c, in, r); in.GPU == "" {
				continue
			}
			f := 1 + r.Float64()*3
			faster := make([]catalog.Throughput, len(tps))
			copy(faster, tps)
			for j := range faster {
				if faster[j].GPU == in.GPU {
					faster[j].TokensPerSecond *= f
					faster[j].MicroBatchSeconds /= f
				}
			}
			fc, err := catalog.New(c.Models(), c.Prices(), faster)
			if err != nil {
				t.Fatal(err)
			}
			slow, _ := Estimate(c, in)
			fast, err := Estimate(fc, in)
			if err != nil {
				t.Fatal(err)
			}
			if err := notLess(slow, fast); err != nil {
				t.Errorf("run %d: %s ×%.2f faster takes or costs more: %v; input %+v", i, in.GPU, f, err, in)
			}
		}
	})
}

func TestEstimateIsFast(t *testing.T) {
	c := catalog.Default()
	in := Input{Dataset: example, Hyperparameters: preset(t, "balanced")}
	const n = 100
	start := time.Now()
	for range n {
		if _, err := Compare(c, in); err != nil {
			t.Fatal(err)
		}
	}
	if per := time.Since(start) / n; per > 50*time.Millisecond {
		t.Errorf("Compare took %v per call, want well under 50ms", per)
	}
}

func BenchmarkEstimate(b *testing.B) {
	c := catalog.Default()
	in := Input{Dataset: example, Hyperparameters: preset(b, "balanced"), GPU: "h100-80gb"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Estimate(c, in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompare(b *testing.B) {
	c := catalog.Default()
	in := Input{Dataset: example, Hyperparameters: preset(b, "balanced")}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compare(c, in); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEvaluationOnlyAddsToTheTrainingPart checks, on random inputs, that
// an estimate with a held-out share or a second dataset trains on no more
// steps than one without, and takes and costs at least what its training
// part alone does: the evaluation adds time, never removes it.
func TestEvaluationOnlyAddsToTheTrainingPart(t *testing.T) {
	c := catalog.Default()
	models := c.Models()
	r := rand.New(rand.NewPCG(5, 6))
	tested := 0
	for range propertyRuns / 2 {
		in := randomInput(r, models)
		if in.GPU = fittingGPU(c, in, r); in.GPU == "" {
			continue
		}
		base, err := Estimate(c, in)
		if err != nil {
			t.Fatal(err)
		}
		ev := &Evaluation{}
		switch r.IntN(3) {
		case 0:
			ev.Split = float(r.Float64() * holdout.MaxShare)
		case 1:
			n := 1 + r.Int64N(5000)
			mean := 1 + r.Int64N(4000)
			ev.Dataset = &EvaluationDataset{Examples: n, TokensTotal: n * mean, TokensTrained: n * mean / 2}
		}
		with := in
		with.Evaluation = ev
		got, err := Estimate(c, with)
		if err != nil {
			t.Fatalf("Estimate(%+v) error %v", with, err)
		}
		checkConsistent(t, got)
		if got.Steps.Total > base.Steps.Total {
			t.Errorf("evaluating %+v trains %d steps, more than %d without; input %+v", ev, got.Steps.Total, base.Steps.Total, in)
		}
		alone := in
		if e := got.Evaluation; e != nil && e.Source == SourceHeldOut {
			alone.Dataset.Examples -= e.Examples
			alone.Dataset.TokensTotal -= e.TokensTotal
			alone.Dataset.TokensTrained -= e.TokensTrained
		}
		part, err := Estimate(c, alone)
		if err != nil {
			t.Fatalf("Estimate(training part %+v) error %v", alone.Dataset, err)
		}
		if part.Steps != got.Steps || part.Tokens != got.Tokens {
			t.Errorf("evaluating %+v: %+v steps, %+v tokens; the training part alone %+v, %+v", ev, got.Steps, got.Tokens, part.Steps, part.Tokens)
		}
		if err := notLess(got, part); err != nil {
			t.Errorf("evaluating %+v costs less than its training part alone: %v (input %+v)", ev, err, in)
		}
		tested++
	}
	if tested < propertyRuns/4 {
		t.Errorf("only %d random inputs tested, want at least %d", tested, propertyRuns/4)
	}
}
