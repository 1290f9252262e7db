package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/local"
	"github.com/brightrun/brightrun/shared/pipeline"
)

func TestCanTransition(t *testing.T) {
	q, d, s, r, u, c, f, cr, x := pipeline.JobQueued, pipeline.JobDispatching, pipeline.JobSubmitted, pipeline.JobRunning,
		pipeline.JobUploading, pipeline.JobCompleted, pipeline.JobFailed, pipeline.JobCancelRequested, pipeline.JobCancelled
	allowed := map[[2]pipeline.JobStatus]bool{
		{q, d}: true, {q, s}: true, {q, r}: true, {q, u}: true, {q, c}: true, {q, f}: true, {q, cr}: true, {q, x}: true,
		{d, d}: true, {d, s}: true, {d, r}: true, {d, u}: true, {d, c}: true, {d, f}: true, {d, cr}: true, {d, x}: true,
		{s, d}: true, {s, r}: true, {s, u}: true, {s, c}: true, {s, f}: true, {s, cr}: true, {s, x}: true,
		{r, u}: true, {r, c}: true, {r, f}: true, {r, cr}: true, {r, x}: true,
		{u, c}: true, {u, f}: true, {u, cr}: true, {u, x}: true,
		{cr, c}: true, {cr, f}: true, {cr, x}: true,
	}
	for _, from := range pipeline.JobStatuses {
		for _, to := range pipeline.JobStatuses {
			want := allowed[[2]pipeline.JobStatus{from, to}]
			if got := pipeline.CanTransition(from, to); got != want {
				t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
		if pipeline.CanTransition(from, "bogus") {
			t.Errorf("CanTransition(%s, bogus) = true, want false", from)
		}
	}
	for _, term := range []pipeline.JobStatus{c, f, x} {
		if !term.Terminal() {
			t.Errorf("%s.Terminal() = false, want true", term)
		}
	}
}

func TestHyperparameterBounds(t *testing.T) {
	ok, err := pipeline.ResolveHyperparameters("", pipeline.HyperparameterOverrides{})
	if err != nil {
		t.Fatalf("default preset: %v", err)
	}
	f := func(v float64) *float64 { return &v }
	i := func(v int) *int { return &v }
	tests := []struct {
		name  string
		o     pipeline.HyperparameterOverrides
		field string
		msg   string
	}{
		{"learning rate too low", pipeline.HyperparameterOverrides{LearningRate: f(1e-6)}, "learning_rate", "learning_rate must be between 0.00001 and 0.001, got 0.000001"},
		{"learning rate too high", pipeline.HyperparameterOverrides{LearningRate: f(0.01)}, "learning_rate", "got 0.01"},
		{"learning rate NaN", pipeline.HyperparameterOverrides{LearningRate: f(math.NaN())}, "learning_rate", "got NaN"},
		{"batch size 0", pipeline.HyperparameterOverrides{BatchSize: i(0)}, "batch_size", "batch_size must be between 1 and 64, got 0"},
		{"batch size 65", pipeline.HyperparameterOverrides{BatchSize: i(65)}, "batch_size", "got 65"},
		{"accumulation 65", pipeline.HyperparameterOverrides{GradientAccumulation: i(65)}, "gradient_accumulation", "between 1 and 64"},
		{"epochs 21", pipeline.HyperparameterOverrides{Epochs: i(21)}, "epochs", "epochs must be between 1 and 20, got 21"},
		{"rank 2", pipeline.HyperparameterOverrides{LoRARank: i(2)}, "lora_rank", "lora_rank must be between 4 and 128, got 2"},
		{"alpha 513", pipeline.HyperparameterOverrides{LoRAAlpha: i(513)}, "lora_alpha", "between 1 and 512"},
		{"dropout 0.6", pipeline.HyperparameterOverrides{LoRADropout: f(0.6)}, "lora_dropout", "between 0 and 0.5, got 0.6"},
		{"sequence 128", pipeline.HyperparameterOverrides{MaxSeqLength: i(128)}, "max_seq_length", "between 256 and 32768, got 128"},
		{"warmup -0.1", pipeline.HyperparameterOverrides{WarmupRatio: f(-0.1)}, "warmup_ratio", "got -0.1"},
	}
	for _, tt := range tests {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			_, err := pipeline.ResolveHyperparameters("balanced", tt.o)
			var e *pipeline.Error
			if !errors.As(err, &e) || e.Code != pipeline.EInvalid || !strings.Contains(e.Message, tt.msg) {
				t.Fatalf("ResolveHyperparameters(%s) = %v, want an invalid error containing %q", tt.name, err, tt.msg)
			}
			fes, _ := e.Details.([]pipeline.FieldError)
			if len(fes) != 1 || fes[0].Field != tt.field {
				t.Errorf("details = %+v, want one field error on %s", e.Details, tt.field)
			}
		})
	}
	edges := pipeline.HyperparameterOverrides{LearningRate: f(1e-5), BatchSize: i(64), GradientAccumulation: i(1), Epochs: i(20),
		LoRARank: i(128), LoRAAlpha: i(1), LoRADropout: f(0.5), MaxSeqLength: i(32768), WarmupRatio: f(0)}
	if _, err := pipeline.ResolveHyperparameters("fast", edges); err != nil {
		t.Errorf("every field at a bound: %v, want accepted", err)
	}
	if ok.Epochs != 3 {
		t.Errorf("default preset epochs = %d, want balanced's 3", ok.Epochs)
	}
}

func TestPresetsAreValidAndOrdered(t *testing.T) {
	ps := pipeline.Presets()
	if len(ps) != 3 || ps[0].Name != "balanced" || ps[1].Name != "fast" || ps[2].Name != "quality" {
		t.Fatalf("Presets() = %v, want balanced, fast, quality", ps)
	}
	for _, p := range ps {
		if err := p.Hyperparameters.Validate(); err != nil {
			t.Errorf("preset %s is out of bounds: %v", p.Name, err)
		}
	}
	fast, _ := pipeline.LookupPreset("fast")
	quality, _ := pipeline.LookupPreset("quality")
	if fast.Hyperparameters.Epochs >= quality.Hyperparameters.Epochs || fast.Hyperparameters.LoRARank >= quality.Hyperparameters.LoRARank {
		t.Errorf("fast (%+v) is not cheaper than quality (%+v)", fast.Hyperparameters, quality.Hyperparameters)
	}
	if _, err := pipeline.LookupPreset("turbo"); pipeline.ErrorCode(err) != pipeline.EInvalid {
		t.Errorf("LookupPreset(turbo) = %v, want invalid", err)
	}
}

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"support chats v2", true}, {"日本語のデータ", true}, {"", false}, {"   ", false}, {"a/b", false}, {`a\b`, false},
		{"a\nb", false}, {"a\u0000b", false}, {"\u202egnp.exe", false}, {"a\u200bb", false}, {"Tidewell café", true}, {strings.Repeat("x", 200), true}, {strings.Repeat("x", 201), false},
	} {
		if err := pipeline.ValidateName("name", tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// newStore is the embedded store in a folder of the test's own.
func newStore(t *testing.T) *local.Store {
	t.Helper()
	db, err := local.OpenDB(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := local.NewStore(db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTransitionJob(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	now := time.Now()
	j := &pipeline.Job{ID: "job_1", Owner: "alice", Status: pipeline.JobQueued, CreatedAt: now, UpdatedAt: now}
	if err := s.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	got, err := pipeline.TransitionJob(ctx, s, "alice", "job_1", pipeline.JobDispatching, func(j *pipeline.Job) error {
		j.Attempt++
		return nil
	})
	if err != nil || got.Status != pipeline.JobDispatching || got.Attempt != 1 {
		t.Fatalf("TransitionJob(dispatching) = %+v, %v; want dispatching, attempt 1", got, err)
	}
	if _, err := pipeline.TransitionJob(ctx, s, "alice", "job_1", pipeline.JobQueued, nil); pipeline.ErrorCode(err) != pipeline.EPrecondition {
		t.Errorf("TransitionJob back to queued = %v, want a precondition error", err)
	}
	if _, err := pipeline.TransitionJob(ctx, s, "alice", "job_1", pipeline.JobCancelled, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pipeline.TransitionJob(ctx, s, "alice", "job_1", pipeline.JobRunning, nil); pipeline.ErrorCode(err) != pipeline.EPrecondition {
		t.Errorf("TransitionJob out of cancelled = %v, want a precondition error (terminal states absorb)", err)
	}
	if _, err := pipeline.TransitionJob(ctx, s, "bob", "job_1", pipeline.JobFailed, nil); pipeline.ErrorCode(err) != pipeline.ENotFound {
		t.Errorf("TransitionJob of another owner's job = %v, want not found", err)
	}
}

// Concurrent claims of one queued job: exactly one dispatcher wins.
func TestTransitionJobRace(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	now := time.Now()
	if err := s.CreateJob(ctx, &pipeline.Job{ID: "job_1", Owner: "alice", Status: pipeline.JobQueued, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	results := make(chan error, 10)
	for i := 0; i < 10; i++ {
		go func() {
			_, err := pipeline.TransitionJob(ctx, s, "alice", "job_1", pipeline.JobSubmitted, nil)
			results <- err
		}()
	}
	wins := 0
	for i := 0; i < 10; i++ {
		if err := <-results; err == nil {
			wins++
		} else if pipeline.ErrorCode(err) != pipeline.EPrecondition {
			t.Errorf("losing claim: %v, want a precondition error", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d claims won, want exactly 1", wins)
	}
}

func TestACompletedJobsCostIsComparedWithItsEstimate(t *testing.T) {
	created := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	est := &pipeline.JobEstimate{DurationSeconds: pipeline.Range{Low: 600, Expected: 900, High: 2000}, CostUSD: pipeline.Range{Expected: 1.0}}
	f := func(x float64) *float64 { return &x }
	b := func(x bool) *bool { return &x }
	tests := []struct {
		name string
		est  *pipeline.JobEstimate
		took time.Duration
		usd  float64
		want pipeline.JobCost
	}{
		{"an estimate too long by half", est, 600 * time.Second, 0.80,
			pipeline.JobCost{USD: 0.80, EstimatedUSD: 1.0, DurationSeconds: 600, EstimatedDurationSeconds: 900, DurationError: f(0.5), CostError: f(0.25), DurationInRange: b(true)}},
		{"an estimate too short, outside its range", est, 3000 * time.Second, 2.0,
			pipeline.JobCost{USD: 2.0, EstimatedUSD: 1.0, DurationSeconds: 3000, EstimatedDurationSeconds: 900, DurationError: f(-0.7), CostError: f(-0.5), DurationInRange: b(false)}},
		{"a job that cost nothing has no cost error", est, 900 * time.Second, 0,
			pipeline.JobCost{EstimatedUSD: 1.0, DurationSeconds: 900, EstimatedDurationSeconds: 900, DurationError: f(0), DurationInRange: b(true)}},
		{"a job without an estimate has nothing to compare", nil, 900 * time.Second, 0.5, pipeline.JobCost{USD: 0.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &pipeline.Job{CreatedAt: created, Estimate: tt.est}
			c := &pipeline.JobCost{USD: tt.usd}
			if tt.est != nil {
				c.EstimatedUSD = tt.est.CostUSD.Expected
			}
			c.CompareWithEstimate(j, created.Add(tt.took))
			if !sameCost(*c, tt.want) {
				t.Errorf("CompareWithEstimate(took %v, $%v) = %s, want %s", tt.took, tt.usd, costString(*c), costString(tt.want))
			}
		})
	}
}

func costString(c pipeline.JobCost) string {
	p := func(x *float64) string {
		if x == nil {
			return "nil"
		}
		return strconv.FormatFloat(*x, 'g', -1, 64)
	}
	in := "nil"
	if c.DurationInRange != nil {
		in = strconv.FormatBool(*c.DurationInRange)
	}
	return fmt.Sprintf("$%v of $%v, %v s of %v s, duration error %s, cost error %s, in range %s",
		c.USD, c.EstimatedUSD, c.DurationSeconds, c.EstimatedDurationSeconds, p(c.DurationError), p(c.CostError), in)
}

func sameCost(a, b pipeline.JobCost) bool {
	eqF := func(x, y *float64) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	eqB := func(x, y *bool) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return a.BilledSeconds == b.BilledSeconds && a.USD == b.USD && a.EstimatedUSD == b.EstimatedUSD &&
		a.DurationSeconds == b.DurationSeconds && a.EstimatedDurationSeconds == b.EstimatedDurationSeconds &&
		eqF(a.DurationError, b.DurationError) && eqF(a.CostError, b.CostError) && eqB(a.DurationInRange, b.DurationInRange)
}
