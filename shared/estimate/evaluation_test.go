package estimate

import (
	"math"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/holdout"
	"github.com/brightrun/brightrun/shared/pipeline"
)

func float(f float64) *float64 { return &f }

// evalDataset is 1,000 examples of 400 tokens, 150 trained each, with
// per-example counts of the 200 first held out.
func evalDataset() (Dataset, [][2]int64) {
	d := Dataset{Examples: 1000, TokensTotal: 400_000, TokensTrained: 150_000, TokensPerExampleMax: 400, TokensPerExampleP95: 400, TokensPerExampleP50: 400, TokensPerExampleMin: 400}
	held := make([][2]int64, holdout.MaxExamples)
	for i := range held {
		held[i] = [2]int64{400, 150}
	}
	return d, held
}

func TestTheHeldOutShareIsNotTrainedOn(t *testing.T) {
	c := catalog.Default()
	d, held := evalDataset()
	h := preset(t, "balanced")
	for _, tt := range []struct {
		name     string
		split    *float64
		wantHeld int64
	}{
		{"the default holds out a tenth from 200 examples", nil, 100},
		{"a share of 5 %", float(0.05), 50},
		{"a share of a half is capped at 200 examples", float(0.5), 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Estimate(c, Input{Dataset: d, Hyperparameters: h, GPU: "h100-80gb", Evaluation: &Evaluation{Split: tt.split, HeldOut: held}})
			if err != nil {
				t.Fatal(err)
			}
			checkConsistent(t, r)
			train := d.Examples - tt.wantHeld
			ebs := int64(h.BatchSize * h.GradientAccumulation)
			if want := (train + ebs - 1) / ebs; r.Steps.PerEpoch != want {
				t.Errorf("Steps.PerEpoch = %d, want ceil(%d / %d) = %d", r.Steps.PerEpoch, train, ebs, want)
			}
			if want := train * 400; r.Tokens.PerEpoch != want || r.Tokens.TrainedPerEpoch != train*150 {
				t.Errorf("Tokens = %d per epoch, %d trained; want %d, %d", r.Tokens.PerEpoch, r.Tokens.TrainedPerEpoch, want, train*150)
			}
			e := r.Evaluation
			if e == nil {
				t.Fatal("Evaluation = nil, want the held-out evaluation")
			}
			if e.Source != SourceHeldOut || e.Examples != tt.wantHeld || e.TokensTotal != tt.wantHeld*400 || e.TokensTrained != tt.wantHeld*150 || e.TrainingExamples != train {
				t.Errorf("Evaluation = %+v, want %d held-out examples of 400 tokens, %d training", *e, tt.wantHeld, train)
			}
			count, every := evaluations(r.Steps.Total)
			if e.Evaluations != count || e.EverySteps != every || count < 1 || count > 10 {
				t.Errorf("Evaluation runs %d times every %d steps, want %d every %d (at most ten)", e.Evaluations, e.EverySteps, count, every)
			}
			st := stageSeconds(r, "evaluation")
			if st.Expected <= 0 || e.Seconds != float64(st.Expected) || e.SecondsRange != (pipeline.Range{Low: float64(st.Low), Expected: float64(st.Expected), High: float64(st.High)}) {
				t.Errorf("evaluation stage %+v s, Evaluation.Seconds %v (%+v); want a positive stage that the evaluation reports", st, e.Seconds, e.SecondsRange)
			}
			if !strings.Contains(assumption(r, "evaluation"), "forward-only") {
				t.Errorf("assumption evaluation = %q, want it named", assumption(r, "evaluation"))
			}
		})
	}
}

func TestEvaluationTimeIsForwardPassesOfItsMicroBatches(t *testing.T) {
	c := catalog.Default()
	d, held := evalDataset()
	h := preset(t, "balanced")
	in := Input{Dataset: d, Hyperparameters: h, GPU: "h100-80gb", Evaluation: &Evaluation{HeldOut: held}}
	r, err := Estimate(c, in)
	if err != nil {
		t.Fatal(err)
	}
	tp, _ := c.Throughput(r.Model, r.GPU)
	// 100 rows of 400 tokens (already a multiple of 8) per evaluation.
	rows := int64(r.MicroBatchTokens / 400)
	mb := (100 + rows - 1) / rows
	if r.Evaluation.MicroBatches != mb || r.Evaluation.PaddedTokens != 100*400 {
		t.Fatalf("one evaluation = %d micro-batches, %d padded tokens; want %d, %d", r.Evaluation.MicroBatches, r.Evaluation.PaddedTokens, mb, 100*400)
	}
	one := float64(mb)*tp.MicroBatchSeconds + 40000/tp.TokensPerSecond
	want := ceilSeconds(one * evalForwardShare.expected * float64(r.Evaluation.Evaluations))
	if got := stageSeconds(r, "evaluation").Expected; got != want {
		t.Errorf("evaluation stage = %d s expected, want %d (%d evaluations of %.2f s forward-only)", got, want, r.Evaluation.Evaluations, one*evalForwardShare.expected)
	}

	// The same job without the evaluation stage is the training part's
	// estimate: the evaluation adds its time and cost and nothing else.
	alone, err := Estimate(c, Input{Dataset: Dataset{Examples: 900, TokensTotal: 360_000, TokensTrained: 135_000, TokensPerExampleMax: 400, TokensPerExampleP95: 400, TokensPerExampleP50: 400, TokensPerExampleMin: 400},
		Hyperparameters: h, GPU: "h100-80gb"})
	if err != nil {
		t.Fatal(err)
	}
	ev := stageSeconds(r, "evaluation")
	if r.Steps != alone.Steps || r.Tokens != alone.Tokens || stageSeconds(r, "training") != stageSeconds(alone, "training") {
		t.Errorf("held-out training = %+v steps, %+v tokens; want the 900 examples' %+v, %+v", r.Steps, r.Tokens, alone.Steps, alone.Tokens)
	}
	// Startup tokenizes the whole file either way; 100 more examples.
	dStartup := stageSeconds(r, "startup").High - stageSeconds(alone, "startup").High
	if got, want := r.DurationSeconds.High-alone.DurationSeconds.High, ev.High+dStartup; got != want {
		t.Errorf("the evaluation adds %d s at the slow end, want its stage's %d s (+%d s tokenizing)", got, ev.High, dStartup)
	}
	if r.CostUSD.Expected <= alone.CostUSD.Expected {
		t.Errorf("cost with evaluation %v, without %v: want more", r.CostUSD.Expected, alone.CostUSD.Expected)
	}
}

func TestNothingHeldOutEstimatesTheWholeDataset(t *testing.T) {
	c := catalog.Default()
	d, held := evalDataset()
	h := preset(t, "balanced")
	none, err := Estimate(c, Input{Dataset: d, Hyperparameters: h, GPU: "h100-80gb"})
	if err != nil {
		t.Fatal(err)
	}
	for name, ev := range map[string]*Evaluation{
		"a share of 0":                        {Split: float(0), HeldOut: held},
		"a share under one example":           {Split: float(0.0005), HeldOut: held},
		"a small dataset's default (checked)": nil,
	} {
		t.Run(name, func(t *testing.T) {
			r, err := Estimate(c, Input{Dataset: d, Hyperparameters: h, GPU: "h100-80gb", Evaluation: ev})
			if err != nil {
				t.Fatal(err)
			}
			if r.Evaluation != nil || stageSeconds(r, "evaluation") != (SecondsRange{}) || r.DurationSeconds != none.DurationSeconds {
				t.Errorf("Estimate = evaluation %+v, %+v s; want none and %+v s", r.Evaluation, r.DurationSeconds, none.DurationSeconds)
			}
		})
	}
	small := Dataset{Examples: 199, TokensTotal: 199 * 400, TokensTrained: 199 * 150}
	r, err := Estimate(c, Input{Dataset: small, Hyperparameters: h, GPU: "h100-80gb", Evaluation: &Evaluation{}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Evaluation != nil {
		t.Errorf("199 examples by default: Evaluation = %+v, want nothing held out", *r.Evaluation)
	}
}

func TestASecondDatasetIsEvaluatedAndTheWholeDatasetTrains(t *testing.T) {
	c := catalog.Default()
	d, _ := evalDataset()
	h := preset(t, "balanced")
	first := make([][2]int64, 200)
	for i := range first {
		first[i] = [2]int64{int64(100 + i), int64(i % 2 * 50)} // every other example trains nothing
	}
	second := &EvaluationDataset{Examples: 5000, TokensTotal: 5000 * 200, TokensTrained: 5000 * 25, First: first}
	none, _ := Estimate(c, Input{Dataset: d, Hyperparameters: h, GPU: "h100-80gb"})
	r, err := Estimate(c, Input{Dataset: d, Hyperparameters: h, GPU: "h100-80gb", Evaluation: &Evaluation{Split: float(0.3), Dataset: second}})
	if err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, r)
	if r.Steps != none.Steps || r.Tokens != none.Tokens {
		t.Errorf("with a second dataset: %+v steps, %+v tokens; want the whole dataset's %+v, %+v", r.Steps, r.Tokens, none.Steps, none.Tokens)
	}
	want := pipeline.SumTokens(first)
	e := r.Evaluation
	if e == nil || e.Source != SourceDataset || e.Examples != 200 || e.TokensTotal != want.Total || e.TokensTrained != want.Trained || e.TrainingExamples != 1000 || e.Split != nil {
		t.Fatalf("Evaluation = %+v, want the second dataset's first 200 examples (%+v)", e, want)
	}
	if !strings.Contains(assumption(r, "evaluation"), "the 100 with a trained token") {
		t.Errorf("assumption = %q, want the 100 examples with a trained token", assumption(r, "evaluation"))
	}
	if s := stageSeconds(r, "startup"); s.High <= stageSeconds(none, "startup").High {
		t.Errorf("startup %+v s, want more than %+v to tokenize the second dataset", s, stageSeconds(none, "startup"))
	}
}

func TestWithoutPerExampleCountsTheMeanIsTaken(t *testing.T) {
	c := catalog.Default()
	d, _ := evalDataset()
	r, err := Estimate(c, Input{Dataset: d, Hyperparameters: preset(t, "balanced"), GPU: "h100-80gb", Evaluation: &Evaluation{}})
	if err != nil {
		t.Fatal(err)
	}
	if e := r.Evaluation; e == nil || e.Examples != 100 || e.TokensTotal != 40_000 || e.TokensTrained != 15_000 || r.Tokens.PerEpoch != 360_000 {
		t.Fatalf("Evaluation = %+v, tokens per epoch %d; want a tenth of the dataset held out at its mean", e, r.Tokens.PerEpoch)
	}
	if !strings.Contains(assumption(r, "evaluation"), "mean") {
		t.Errorf("assumption = %q, want it to say the mean was taken", assumption(r, "evaluation"))
	}
	// A second dataset without counts: its first 200 at its mean.
	r, err = Estimate(c, Input{Dataset: d, Hyperparameters: preset(t, "balanced"), GPU: "h100-80gb",
		Evaluation: &Evaluation{Dataset: &EvaluationDataset{Examples: 3, TokensTotal: 10, TokensTrained: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	if e := r.Evaluation; e == nil || e.Examples != 3 || e.TokensTotal != 10 || e.TokensTrained != 4 {
		t.Fatalf("Evaluation = %+v, want the 3 examples of 10 tokens", e)
	}
}

func TestEvaluationsFollowTheWorkersInterval(t *testing.T) {
	for _, tt := range []struct{ steps, count, every int64 }{
		{0, 0, 1}, {1, 1, 1}, {9, 9, 1}, {10, 10, 1}, {11, 6, 2}, {95, 10, 10}, {100, 10, 10}, {101, 10, 11}, {1000, 10, 100},
	} {
		if count, every := evaluations(tt.steps); count != tt.count || every != tt.every {
			t.Errorf("evaluations(%d) = %d every %d, want %d every %d", tt.steps, count, every, tt.count, tt.every)
		}
		// The worker's loop: step % every == 0 or the last step.
		n := int64(0)
		for s := int64(1); s <= tt.steps; s++ {
			if s%tt.every == 0 || s == tt.steps {
				n++
			}
		}
		if n != tt.count {
			t.Errorf("%d steps every %d: the worker evaluates %d times, the table says %d", tt.steps, tt.every, n, tt.count)
		}
	}
}

func TestPassOfReplaysTheWorkersBatches(t *testing.T) {
	for _, tt := range []struct {
		name       string
		each       [][2]int64
		seqCap     int64
		budget     int
		wantEx     int64
		wantMB     int64
		wantPadded int64
	}{
		{"nothing", nil, 2048, 4096, 0, 0, 0},
		{"two fit one micro-batch, padded to the longest", [][2]int64{{30, 1}, {100, 5}}, 2048, 256, 2, 1, 208},
		{"an example with no trained token is dropped", [][2]int64{{30, 1}, {100, 0}}, 2048, 256, 1, 1, 32},
		{"a long example is cut at max_seq_length", [][2]int64{{5000, 1}}, 1024, 4096, 1, 1, 1024},
		{"the budget cuts", [][2]int64{{100, 1}, {100, 1}, {100, 1}}, 2048, 300, 3, 2, 312},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := passOf(tt.each, tt.seqCap, tt.budget)
			if p.examples != tt.wantEx || p.microBatches != tt.wantMB || p.padded != tt.wantPadded {
				t.Errorf("passOf = %+v, want %d examples, %d micro-batches, %d padded", p, tt.wantEx, tt.wantMB, tt.wantPadded)
			}
		})
	}
}

func TestEvaluationErrors(t *testing.T) {
	c := catalog.Default()
	d, _ := evalDataset()
	for name, ev := range map[string]*Evaluation{
		"a share over a half":       {Split: float(0.6)},
		"a negative share":          {Split: float(-0.1)},
		"a NaN share":               {Split: float(math.NaN())},
		"trained over total":        {HeldOut: [][2]int64{{10, 11}}},
		"an empty example":          {HeldOut: [][2]int64{{0, 0}}},
		"a second dataset of none":  {Dataset: &EvaluationDataset{}},
		"a second dataset's counts": {Dataset: &EvaluationDataset{Examples: 2, TokensTotal: 10, TokensTrained: 2, First: [][2]int64{{1, 2}}}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Estimate(c, Input{Dataset: d, Hyperparameters: preset(t, "balanced"), GPU: "h100-80gb", Evaluation: ev})
			if pipeline.ErrorCode(err) != pipeline.EInvalid {
				t.Errorf("Estimate(%+v) error = %v, want %s", ev, err, pipeline.EInvalid)
			}
		})
	}
}
