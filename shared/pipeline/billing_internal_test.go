package pipeline

import (
	"testing"
	"time"
)

func TestCostCountsEveryRunOfEveryAttempt(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	ptr := func(v float64) *float64 { return &v }
	tp := func(s int) *time.Time { v := at(s); return &v }
	tests := []struct {
		name    string
		runs    []Run
		now     time.Time
		billed  float64
		delay   float64
		source  string
		usd     float64
		soFarOK bool
	}{
		{"one run RunPod reported: its execution time, rounded up", []Run{
			{Attempt: 1, StartedAt: at(0), EndedAt: tp(130), ExecutionSeconds: ptr(120.2), DelaySeconds: ptr(40), Final: true},
		}, at(500), 121, 40, BilledByProvider, 0.12, true},
		{"a running run: the time since its worker started", []Run{
			{Attempt: 1, StartedAt: at(0)},
		}, at(300), 300, 0, BilledByWorker, 0.30, true},
		{"a crashed run RunPod re-ran: the crashed one until the re-run started, the re-run as reported", []Run{
			{Attempt: 1, StartedAt: at(0), EndedAt: tp(200)},
			{Attempt: 1, StartedAt: at(260), ExecutionSeconds: ptr(99.5), Final: true},
		}, at(1000), 300, 0, BilledByWorker, 0.30, true},
		{"two attempts, both reported: both billed; the wait between them is not", []Run{
			{Attempt: 1, StartedAt: at(0), EndedAt: tp(100), ExecutionSeconds: ptr(100), DelaySeconds: ptr(5), Final: true},
			{Attempt: 2, StartedAt: at(5000), EndedAt: tp(5400), ExecutionSeconds: ptr(400), DelaySeconds: ptr(3600), Final: true},
		}, at(9000), 500, 3605, BilledByProvider, 0.50, true},
		{"a run RunPod reported while it ran: that, plus the time since", []Run{
			{Attempt: 1, StartedAt: at(0), ExecutionSeconds: ptr(200), ReportedAt: tp(210)},
		}, at(310), 300, 0, BilledByWorker, 0.30, true},
		{"no run yet: nothing spent", nil, at(100), 0, 0, BilledByProvider, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &Job{Status: JobRunning, Runs: tt.runs, Estimate: &JobEstimate{PriceUSDPerSecond: 0.001, CostUSD: Range{Expected: 0.4}}}
			c := Cost(j, tt.now)
			if c.BilledSeconds != tt.billed || c.DelaySeconds != tt.delay || c.Source != tt.source || c.USD != tt.usd || c.Runs != len(tt.runs) {
				t.Errorf("Cost = %+v, want %v s billed, %v s delay, source %s, $%.2f, %d runs", c, tt.billed, tt.delay, tt.source, tt.usd, len(tt.runs))
			}
			if got := Spent(j, tt.now); got != tt.billed*0.001 {
				t.Errorf("Spent = %v, want %v", got, tt.billed*0.001)
			}
			if got := CostSoFar(j, tt.now); (got != nil) != tt.soFarOK {
				t.Errorf("CostSoFar = %+v, want one: %v", got, tt.soFarOK)
			}
		})
	}
}

func TestRunRecordsFollowStartsAndReports(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	j := &Job{Attempt: 1, RunPodID: "rp-1", Status: JobRunning}
	startRun(j, "run-a", t0, t0)
	startRun(j, "run-a", t0, t0.Add(time.Second)) // a repeat of the started callback
	startRun(j, "run-b", t0.Add(100*time.Second), t0.Add(100*time.Second))
	if len(j.Runs) != 2 || j.Runs[0].EndedAt == nil || !j.Runs[0].EndedAt.Equal(t0.Add(100*time.Second)) || j.Runs[1].EndedAt != nil {
		t.Fatalf("runs = %+v, want run-a ended when run-b started, run-b open", j.Runs)
	}
	j.reportRun(RunReport{ExecutionSeconds: 42, DelaySeconds: 7}, t0.Add(150*time.Second))
	if r := j.Runs[1]; r.ExecutionSeconds == nil || *r.ExecutionSeconds != 42 || *r.DelaySeconds != 7 || r.RunID != "rp-1" || r.Final {
		t.Errorf("reported run = %+v, want RunPod's 42 s and 7 s on the current run", r)
	}
	// A new attempt whose started callback was lost: RunPod's report makes its run.
	j.Attempt, j.RunPodID = 2, "rp-2"
	j.reportRun(RunReport{State: RunCompleted, ExecutionSeconds: 30}, t0.Add(1000*time.Second))
	if r := j.Runs[len(j.Runs)-1]; len(j.Runs) != 3 || r.Attempt != 2 || r.RunID != "rp-2" || !r.StartedAt.Equal(t0.Add(970*time.Second)) || !r.Final {
		t.Errorf("runs = %+v, want a run of attempt 2 started 30 s before the report", j.Runs)
	}
	j.endRuns(t0.Add(2000 * time.Second))
	for _, r := range j.Runs {
		if r.EndedAt == nil {
			t.Errorf("run %+v still open after the job ended", r)
		}
	}
}

// The review's cases: runs opened by any word of them, re-runs told apart
// by RunPod's retry count, a queued report that stops the bill, and a
// late started callback that adopts the run a report opened.
func TestRunsFollowReRunsLostAndLateCallbacks(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	newJob := func() *Job {
		return &Job{Attempt: 1, RunPodID: "rp-1", Status: JobRunning, Estimate: &JobEstimate{PriceUSDPerSecond: 0.001}}
	}
	t.Run("a lost started callback: the first progress opens the run", func(t *testing.T) {
		j := newJob()
		j.openRun(1, at(10))
		j.openRun(1, at(5)) // an earlier one, come later
		j.Status = JobCompleted
		j.recost(at(300))
		if c := j.Cost; c.BilledSeconds != 295 || c.Source != BilledByWorker || j.CostSettled() {
			t.Errorf("cost = %+v, settled %v; want 295 s from the callbacks, not settled", c, j.CostSettled())
		}
		j.reportRun(RunReport{State: RunCompleted, ExecutionSeconds: 290.5}, at(400))
		j.recost(at(300))
		if c := j.Cost; c.BilledSeconds != 291 || c.Source != BilledByProvider || !j.CostSettled() || len(j.Runs) != 1 {
			t.Errorf("after RunPod's report: cost %+v, %d runs; want 291 s, RunPod's, settled, one run", c, len(j.Runs))
		}
	})
	t.Run("no word of a run at all: nothing billed, and not RunPod's figure", func(t *testing.T) {
		j := newJob()
		j.Status = JobFailed
		j.recost(at(100))
		if c := j.Cost; c.BilledSeconds != 0 || c.Source == BilledByProvider || j.CostSettled() {
			t.Errorf("cost = %+v, settled %v; want 0 s, not RunPod's, not settled", c, j.CostSettled())
		}
	})
	t.Run("a crashed run re-queued stops billing at its last word", func(t *testing.T) {
		j := newJob()
		startRun(j, "run-a", at(0), at(0))
		j.reportRun(RunReport{ExecutionSeconds: 100}, at(100))
		hb := at(120)
		j.HeartbeatAt = &hb // its last callback; then it crashed
		j.reportRun(RunReport{Queued: true, Retries: 1}, at(200))
		if c := Cost(j, at(3600)); c.BilledSeconds != 120 {
			t.Errorf("an hour later, waiting for the re-run: %v s billed, want 120", c.BilledSeconds)
		}
	})
	t.Run("a report of the re-run before its started callback is the re-run's", func(t *testing.T) {
		j := newJob()
		startRun(j, "run-a", at(0), at(0))
		j.reportRun(RunReport{ExecutionSeconds: 1000}, at(1000))
		j.reportRun(RunReport{ExecutionSeconds: 5, Retries: 1}, at(1015))
		startRun(j, "run-b", at(1010), at(1016)) // the re-run's started callback, late
		if len(j.Runs) != 2 || j.Runs[1].Key != "run-b" || j.Runs[1].Retries != 1 {
			t.Fatalf("runs = %+v, want the crashed run and the re-run (adopted by its started callback)", j.Runs)
		}
		// The crashed run: 1000 s reported at 1000, ended at 1010; the re-run 5 s at 1015, on to 1100.
		if c := Cost(j, at(1100)); c.BilledSeconds != 1010+90 {
			t.Errorf("billed %v s at 1100, want %d", c.BilledSeconds, 1010+90)
		}
	})
	t.Run("a run RunPod reported ended, then its late started callback: one run", func(t *testing.T) {
		j := newJob()
		j.reportRun(RunReport{State: RunCompleted, ExecutionSeconds: 600}, at(700))
		j.Status, j.FinishedAt = JobCompleted, ptrTime(at(700))
		j.recost(at(700))
		startRun(j, "run-a", at(100), at(800))
		if len(j.Runs) != 1 || j.Cost.BilledSeconds != 600 {
			t.Errorf("runs %+v, billed %v; want one run of 600 s", j.Runs, j.Cost.BilledSeconds)
		}
	})
}

func ptrTime(t time.Time) *time.Time { return &t }
