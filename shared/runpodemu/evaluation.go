package runpodemu

import (
	"math"

	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/holdout"
)

// defaultEvalMaxExamples is the worker's default cap on evaluated examples.
const defaultEvalMaxExamples = 200

// evaluation is what the simulated worker holds out and evaluates, as
// gpu-image does (data.validation_lines, train.eval_interval): a share of
// the dataset, the spec's or the default one (none below 200 examples),
// or up to max_examples of a second dataset, every every steps and at the
// last step.
type evaluation struct {
	trainExamples int64 // the examples trained on
	examples      int64 // the examples evaluated (0: no evaluation)
	everySteps    int64 // the spec's interval; 0: about ten per run
}

func evaluationOf(spec *contract.JobSpec) evaluation {
	n := spec.Dataset.Examples
	ev := evaluation{trainExamples: n}
	v := spec.Validation
	maxExamples := int64(defaultEvalMaxExamples)
	if v != nil && v.MaxExamples != nil {
		maxExamples = int64(*v.MaxExamples)
	}
	if v != nil && v.EverySteps != nil {
		ev.everySteps = *v.EverySteps
	}
	if v != nil && v.Dataset != nil {
		ev.examples = maxExamples
		if v.Dataset.Examples != nil {
			ev.examples = min(*v.Dataset.Examples, maxExamples)
		}
		return ev
	}
	split := holdout.DefaultSplit(n)
	if v != nil && v.Split != nil {
		split = *v.Split
	}
	ev.examples = holdout.Count(n, split, maxExamples)
	ev.trainExamples = n - ev.examples
	return ev
}

// every is the steps between evaluations of a run of total steps.
func (ev evaluation) every(total int64) int64 {
	if ev.everySteps > 0 {
		return ev.everySteps
	}
	return max(1, int64(math.Ceil(float64(total)/10)))
}

// due reports whether the run evaluates at step.
func (ev evaluation) due(step, total int64) bool {
	return ev.examples > 0 && (step%ev.every(total) == 0 || step == total)
}
