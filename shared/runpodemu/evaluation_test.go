package runpodemu_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/runpod"
)

// The simulated worker holds out and evaluates as gpu-image does: the
// spec's share (or the default: none below 200 examples), or a second
// dataset; it trains on the rest, evaluates about ten times a run and at
// its last step, and reports the evaluation loss in progress and at the end.
func TestTheSimulatedWorkerEvaluatesAsTheWorkerDoes(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	i64 := func(v int64) *int64 { return &v }
	tests := []struct {
		name       string
		validation *contract.Validation
		examples   int64
		wantTotal  int64  // steps: the training examples / batch 2 × 2 epochs
		wantEvals  string // the steps that evaluated
		wantHeld   int64
	}{
		{"a small dataset holds nothing out by default", nil, 20, 20, "", 0},
		{"a share of 20 %: 4 held out, 16 trained", &contract.Validation{Split: f(0.2)}, 20, 16, "2 4 6 8 10 12 14 16", 4},
		{"from 200 examples, 10 % by default", nil, 200, 180, "18 36 54 72 90 108 126 144 162 180", 20},
		{"a second dataset: all trained, its first 50 evaluated every 5 steps", &contract.Validation{Dataset: &contract.ValidationDataset{Examples: i64(50)}, EverySteps: i64(5)}, 20, 20, "5 10 15 20", 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, fast())
			spec := e.cp.spec("job_eval")
			spec.Dataset.Examples = tt.examples
			spec.Validation = tt.validation
			if v := tt.validation; v != nil && v.Dataset != nil {
				v.Dataset.URL, v.Dataset.SHA256, v.Dataset.SizeBytes, v.Dataset.Format = spec.Dataset.URL, spec.Dataset.SHA256, spec.Dataset.SizeBytes, spec.Dataset.Format
			}
			js, cbs := run(t, e, spec)
			if js.Status != runpod.StatusCompleted {
				t.Fatalf("status = %s %q, want COMPLETED", js.Status, js.Error)
			}
			var evals []string
			var last int64
			for _, c := range ofType(cbs, contract.TypeProgress) {
				p := c.payload.(*contract.Progress)
				last = p.TotalSteps
				if p.EvalLoss != nil {
					evals = append(evals, fmt.Sprint(p.Step))
				}
			}
			if last != tt.wantTotal || strings.Join(evals, " ") != tt.wantEvals {
				t.Errorf("total steps %d, evaluated at %v; want %d and [%s]", last, evals, tt.wantTotal, tt.wantEvals)
			}
			m := completed(t, cbs).Metrics
			if tt.wantHeld == 0 {
				if m.EvalLoss != nil || m.Evaluations != 0 {
					t.Errorf("completed: eval loss %v, %d evaluations; want none", m.EvalLoss, m.Evaluations)
				}
				return
			}
			if m.EvalLoss == nil || m.EvalExamples != tt.wantHeld || m.Evaluations != int64(len(evals)) {
				t.Errorf("completed: eval loss %v over %d examples, %d evaluations; want one over %d, %d", m.EvalLoss, m.EvalExamples, m.Evaluations, tt.wantHeld, len(evals))
			}
		})
	}
}
