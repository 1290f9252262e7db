package main

import (
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// The server's figures win over the CLI's own: the worker's ETA, the
// billed cost so far, and the evaluation loss appears once reported.
func TestWatchShowsTheServersCostETAAndEvalLoss(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	f := func(v float64) *float64 { return &v }
	points := pointsAt(t0, 5*time.Second, 10, 15, 20)
	points[0].EvalLoss, points[2].EvalLoss = f(2.5), f(2.1)
	eta := 600.0
	started := t0
	job := &api.JobView{
		ID: "job_e", Status: pipeline.JobRunning, Stage: "train", GPUType: "h100-80gb", Attempt: 1, StartedAt: &started,
		Progress:  &pipeline.MetricPoint{Attempt: 1, Step: 20, TotalSteps: 100, Loss: 1.8, TokensPerSecond: 1000, ETASeconds: &eta, Time: t0.Add(10 * time.Second)},
		Estimate:  &pipeline.JobEstimate{PriceUSDPerSecond: 0.001, CostUSD: pipeline.Range{Low: 0.9, Expected: 1.05, High: 1.4}},
		CostSoFar: &pipeline.JobCost{USD: 0.02, BilledSeconds: 20, Source: pipeline.BilledByWorker},
	}
	frame := watchFrame{job: job, points: points, now: t0.Add(30 * time.Second)}
	tests := []struct {
		name string
		got  string
		want []string
	}{
		{"the live view", strings.Join(renderWatch(frame, 100), "\n"),
			[]string{"eval   2.1000 at step 20", "(from 2.5000)", "ETA 9m40s", "$0.02 so far"}},
		{"the plain line", watchLine(frame), []string{"eval 2.1000", "ETA 9m40s", "$0.02 of ~$1.05"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, w := range tt.want {
				if !strings.Contains(tt.got, w) {
					t.Errorf("lacks %q:\n%s", w, tt.got)
				}
			}
		})
	}
	t.Run("without an evaluation, no eval line", func(t *testing.T) {
		got := strings.Join(renderWatch(watchFrame{job: job, points: pointsAt(t0, 5*time.Second, 10, 15, 20), now: t0.Add(30 * time.Second)}, 100), "\n")
		if strings.Contains(got, "eval") {
			t.Errorf("an eval line without evaluations:\n%s", got)
		}
	})
	t.Run("a cancelled job points at its last checkpoint's adapter", func(t *testing.T) {
		text, ok := outcome(&api.JobView{ID: "job_c", Status: pipeline.JobCancelled})
		if ok || !strings.Contains(text, "brightrun jobs download job_c --checkpoint latest") {
			t.Errorf("outcome = %q, %v", text, ok)
		}
	})
}

// A job held by fair dispatch says where it stands and why.
func TestWatchShowsAHeldJobsPlace(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	job := &api.JobView{ID: "job_w", Status: pipeline.JobQueued, GPUType: "h100-80gb",
		Wait: &pipeline.JobWait{Position: 3, Reason: pipeline.WaitOwnerLimit, Message: "waits for one of your 3 jobs on GPUs to end (your limit is 3 at once)", Since: t0}}
	frame := watchFrame{job: job, now: t0.Add(time.Minute)}
	for name, got := range map[string]string{"the live view": strings.Join(renderWatch(frame, 100), "\n"), "the plain line": watchLine(frame)} {
		if !strings.Contains(got, "queued (place 3: waits for one of your 3 jobs on GPUs to end") {
			t.Errorf("%s lacks the place and the reason:\n%s", name, got)
		}
	}
	job.Status, job.Wait = pipeline.JobRunning, nil
	if got := watchLine(watchFrame{job: job, now: t0}); strings.Contains(got, "place") {
		t.Errorf("a running job shows a place: %s", got)
	}
}
