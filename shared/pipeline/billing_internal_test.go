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
