package estimate

import (
	"fmt"
	"math"
	"slices"

	"github.com/brightrun/brightrun/shared/holdout"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// Evaluation is how a job evaluates its adapter
// (gpu-image/brightrun_worker/job.py, _examples): a held-out share of its
// dataset, which then trains on the rest, or a second dataset, of which
// the worker evaluates the first holdout.MaxExamples examples while the
// whole training dataset trains.
type Evaluation struct {
	// Split is the share held out, 0 to holdout.MaxShare (0: no
	// evaluation); nil takes the worker's default for the dataset's size
	// (holdout.DefaultSplit). Ignored with Dataset.
	Split *float64 `json:"split,omitempty"`
	// HeldOut is [total, trained] tokens per example of the training
	// dataset in split-key order (pipeline.SplitTokens.HeldOut), at least
	// as many as the share holds out. Without them the held-out examples
	// are taken at the dataset's mean.
	HeldOut [][2]int64 `json:"held_out,omitempty"`
	// Dataset is a second dataset evaluated instead of a held-out share.
	Dataset *EvaluationDataset `json:"dataset,omitempty"`
}

// EvaluationDataset is a second dataset's statistics.
type EvaluationDataset struct {
	Examples      int64 `json:"examples"`
	TokensTotal   int64 `json:"tokens_total"`
	TokensTrained int64 `json:"tokens_trained"`
	// First is [total, trained] tokens per example of its first examples
	// in file order (pipeline.SplitTokens.First), at least
	// min(Examples, holdout.MaxExamples) of them. Without them the
	// evaluated examples are taken at the dataset's mean.
	First [][2]int64 `json:"first,omitempty"`
}

// The sources of an evaluation (pipeline.EvaluationEstimate.Source).
const (
	SourceHeldOut = "held_out"
	SourceDataset = "dataset"
)

// evalForwardShare is the time of a forward-only pass over a micro-batch
// as a share of its training pass (forward, recomputed forward under
// gradient checkpointing, and a backward that under LoRA computes input
// gradients only, each about one forward): a third, a quarter to a half
// at the ends. Assumed, not measured.
var evalForwardShare = span{0.25, 1.0 / 3, 0.5}

// evalPlan is the evaluation a job runs, before its timing.
type evalPlan struct {
	source string
	split  *float64
	// examples and tokens are what is held out of the dataset or taken of
	// the second one; exact says the tokens are the validator's counts,
	// not the mean's.
	examples int64
	tokens   pipeline.TokenCounts
	exact    bool
	// each is [total, trained] per evaluated example.
	each [][2]int64
}

// planEvaluation returns what the job evaluates and the part of d it
// trains on. ev nil evaluates nothing.
func planEvaluation(d Dataset, ev *Evaluation) (Dataset, *evalPlan) {
	if ev == nil {
		return d, nil
	}
	if sd := ev.Dataset; sd != nil {
		k := min(sd.Examples, holdout.MaxExamples)
		if k <= 0 {
			return d, nil
		}
		p := &evalPlan{source: SourceDataset, examples: k}
		p.each, p.exact = examplesOf(sd.First, k, sd.TokensTotal, sd.TokensTrained, sd.Examples)
		p.tokens = pipeline.SumTokens(p.each)
		return d, p
	}
	share := holdout.DefaultSplit(d.Examples)
	if ev.Split != nil {
		share = *ev.Split
	}
	k := holdout.Count(d.Examples, share, holdout.MaxExamples)
	if k <= 0 {
		return d, nil
	}
	p := &evalPlan{source: SourceHeldOut, split: &share, examples: k}
	p.each, p.exact = examplesOf(ev.HeldOut, k, d.TokensTotal, d.TokensTrained, d.Examples)
	p.tokens = pipeline.SumTokens(p.each)
	// Each example has a token; the rest keeps one each as well.
	p.tokens.Total = min(p.tokens.Total, d.TokensTotal-(d.Examples-k))
	p.tokens.Trained = min(p.tokens.Trained, d.TokensTrained)
	train := d
	train.Examples -= k
	train.TokensTotal -= p.tokens.Total
	train.TokensTrained -= p.tokens.Trained
	// The length distribution stays the whole dataset's: the rest holds
	// most of it, and its longest example is at most the whole's.
	return train, p
}

// examplesOf is the first k of counts when there are enough of them, else
// k examples of the mean of a dataset of n examples.
func examplesOf(counts [][2]int64, k, total, trained, n int64) ([][2]int64, bool) {
	if int64(len(counts)) >= k {
		return counts[:k], true
	}
	out := make([][2]int64, k)
	for i := range out {
		// Spread the remainders so the k examples add up to k/n of the whole.
		j := int64(i)
		out[i] = [2]int64{share(total, j+1, n) - share(total, j, n), share(trained, j+1, n) - share(trained, j, n)}
	}
	return out, false
}

// share is floor(x × i / n) without overflow for the sizes we allow.
func share(x, i, n int64) int64 { return int64(math.Floor(float64(x) * float64(i) / float64(n))) }

// evalPass is one evaluation: the worker's micro-batches over the
// evaluated examples.
type evalPass struct {
	examples     int64 // those with a trained token, evaluated
	microBatches int64
	padded       int64
}

// passOf replays the worker's evaluation batches (train.py, fit and
// split_by_tokens): examples without a trained token are dropped, the rest
// cut at seqCap, sorted longest first and cut into micro-batches of at
// most budget padded tokens (rows × the widest row rounded up to
// padMultiple).
func passOf(each [][2]int64, seqCap int64, budget int) evalPass {
	lengths := make([]int64, 0, len(each))
	for _, e := range each {
		if e[1] > 0 {
			lengths = append(lengths, min(max(e[0], 1), seqCap))
		}
	}
	slices.SortFunc(lengths, func(a, b int64) int { return int(b - a) })
	var p evalPass
	p.examples = int64(len(lengths))
	var rows, width int64
	for _, l := range lengths {
		w := ceilDiv(l, padMultiple) * padMultiple
		if rows > 0 && (rows+1)*max(width, w) > int64(budget) {
			p.microBatches++
			p.padded += rows * width
			rows, width = 0, 0
		}
		rows++
		width = max(width, w)
	}
	if rows > 0 {
		p.microBatches++
		p.padded += rows * width
	}
	return p
}

// evaluations is how many times the worker evaluates in totalSteps steps
// (train.py, eval_interval): every ceil(total / 10) steps and at the last
// step. It returns the count and the interval.
func evaluations(totalSteps int64) (count, every int64) {
	if totalSteps <= 0 {
		return 0, 1
	}
	every = max(1, ceilDiv(totalSteps, 10))
	return ceilDiv(totalSteps, every), every
}

// evaluationAssumption names how the evaluation was timed.
func evaluationAssumption(p *evalPlan, pass evalPass, every, count int64, budget int) Assumption {
	what := fmt.Sprintf("the first %d examples of the validation dataset", p.examples)
	if p.source == SourceHeldOut {
		what = fmt.Sprintf("%d examples held out of the dataset (split %g: those with the smallest split keys)", p.examples, *p.split)
	}
	counts := "their token counts from validation"
	if !p.exact {
		counts = "taken at the dataset's mean example (its validation predates per-example counts)"
	}
	return Assumption{
		Name: "evaluation",
		Value: fmt.Sprintf("%s, %s; the %d with a trained token, cut at max_seq_length and sorted by length, in %d micro-batches of at most %d padded tokens (%d padded tokens) are evaluated every %d steps and at the last: %d evaluations. A forward-only pass takes %.2f / %.2f / %.2f of a training pass's time (no recompute, no backward; assumed, not measured)",
			what, counts, pass.examples, pass.microBatches, budget, pass.padded, every, count,
			evalForwardShare.low, evalForwardShare.expected, evalForwardShare.high),
		Source: "gpu-image/brightrun_worker/train.py (eval_interval, evaluate) and data.py (validation_lines)",
	}
}

// Validate checks an evaluation: a share within 0 to holdout.MaxShare,
// per-example counts with trained tokens within the total, and a second
// dataset's consistent statistics.
func (e *Evaluation) Validate() error {
	if e == nil {
		return nil
	}
	if e.Split != nil && !(*e.Split >= 0 && *e.Split <= holdout.MaxShare) {
		return pipeline.Errorf(pipeline.EInvalid, "the evaluation's split must be between 0 and %g, got %v", holdout.MaxShare, *e.Split)
	}
	check := func(name string, counts [][2]int64) error {
		for i, c := range counts {
			if c[0] < 1 || c[1] < 0 || c[1] > c[0] || c[0] > maxTokens {
				return pipeline.Errorf(pipeline.EInvalid, "the evaluation's %s[%d] = %v: each example needs [total ≥ 1, 0 ≤ trained ≤ total]", name, i, c)
			}
		}
		return nil
	}
	if err := check("held_out", e.HeldOut); err != nil {
		return err
	}
	if sd := e.Dataset; sd != nil {
		if err := (Dataset{Examples: sd.Examples, TokensTotal: sd.TokensTotal, TokensTrained: sd.TokensTrained}).Validate(); err != nil {
			return pipeline.Errorf(pipeline.EInvalid, "the evaluation's dataset: %s", pipeline.ErrorMessage(err))
		}
		if err := check("dataset.first", sd.First); err != nil {
			return err
		}
	}
	return nil
}
