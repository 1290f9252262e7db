package reconcile_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/local"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/reconcile"
	"github.com/brightrun/brightrun/shared/runpod"
)

// fakeGPU answers /status from a table and records cancels.
type fakeGPU struct {
	status    map[string]runpod.JobStatus
	cancelled []string
}

func (g *fakeGPU) Status(ctx context.Context, id string) (runpod.JobStatus, error) {
	st, ok := g.status[id]
	if !ok {
		return runpod.JobStatus{}, &runpod.APIError{Op: "status", StatusCode: 404, Kind: runpod.ErrNotFound}
	}
	return st, nil
}

func (g *fakeGPU) Cancel(ctx context.Context, id string) (runpod.JobStatus, error) {
	g.cancelled = append(g.cancelled, id)
	return runpod.JobStatus{ID: id, Status: runpod.StatusCancelled}, nil
}

type env struct {
	store *local.Store
	blobs *local.Blobs
	queue *local.Queue
	gpu   *fakeGPU
	r     *reconcile.Reconciler
	now   time.Time
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	db, err := local.OpenDB(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, _ := local.NewStore(db)
	queue, _ := local.NewQueue(db, "jobs", local.QueueOptions{})
	blobs, _ := local.NewBlobs(local.BlobsOptions{Dir: dir, BaseURL: "http://unused", Secret: bytes.Repeat([]byte("k"), 32)})
	e := &env{store: store, blobs: blobs, queue: queue, gpu: &fakeGPU{status: map[string]runpod.JobStatus{}}, now: time.Now().UTC()}
	log, now := slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return e.now }
	e.r = &reconcile.Reconciler{Jobs: &pipeline.Lifecycle{Store: store, JobLog: store, Queue: queue, Objects: blobs, Log: log, Now: now},
		Scanner: store, GPU: e.gpu, Log: log, Now: now}
	return e
}

// job stores a job whose last heartbeat was ago.
func (e *env) job(t *testing.T, id string, status pipeline.JobStatus, ago time.Duration, mutate func(*pipeline.Job)) {
	t.Helper()
	beat := e.now.Add(-ago)
	j := &pipeline.Job{ID: id, Owner: "alice", Status: status, Attempt: 1, RunPodID: "rp-" + id, HeartbeatAt: &beat,
		CreatedAt: e.now.Add(-time.Hour), Estimate: &pipeline.JobEstimate{PriceUSDPerSecond: 0.001, CostUSD: pipeline.Range{Expected: 3}}}
	if mutate != nil {
		mutate(j)
	}
	if err := e.store.CreateJob(context.Background(), j); err != nil {
		t.Fatal(err)
	}
}

func (e *env) get(t *testing.T, id string) *pipeline.Job {
	t.Helper()
	j, err := e.store.GetJob(context.Background(), "alice", id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestStaleJobsFollowRunPod(t *testing.T) {
	tests := []struct {
		name   string
		runpod *runpod.JobStatus
		status pipeline.JobStatus
		code   string
	}{
		{"a failed run fails the job", &runpod.JobStatus{Status: runpod.StatusFailed, Error: "CUDA error", ExecutionTime: 5000}, pipeline.JobFailed, "internal"},
		{"a timed-out run fails the job with timeout", &runpod.JobStatus{Status: runpod.StatusTimedOut}, pipeline.JobFailed, "timeout"},
		{"a cancelled run cancels the job", &runpod.JobStatus{Status: runpod.StatusCancelled}, pipeline.JobCancelled, ""},
		{"a run RunPod forgot (404) fails the job as result lost", nil, pipeline.JobFailed, "result_lost"},
		{"a completed run without artifacts fails the job as result lost", &runpod.JobStatus{Status: runpod.StatusCompleted}, pipeline.JobFailed, "result_lost"},
		{"a run still in progress leaves the job running", &runpod.JobStatus{Status: runpod.StatusInProgress}, pipeline.JobRunning, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.job(t, "job_1", pipeline.JobRunning, 10*time.Minute, nil)
			if tt.runpod != nil {
				e.gpu.status["rp-job_1"] = *tt.runpod
			}
			if _, err := e.r.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			j := e.get(t, "job_1")
			if j.Status != tt.status || (tt.code != "" && (j.Error == nil || j.Error.Code != tt.code || j.Error.Advice == "")) {
				t.Errorf("job = %s %+v, want %s %s with advice", j.Status, j.Error, tt.status, tt.code)
			}
			if j.Status.Terminal() && (j.Cost == nil || j.FinishedAt == nil) {
				t.Errorf("ended job has cost %+v finished %v, want both", j.Cost, j.FinishedAt)
			}
		})
	}
}

func TestACompletedRunWhoseCallbacksWereLostKeepsItsAdapter(t *testing.T) {
	e := newEnv(t)
	e.job(t, "job_1", pipeline.JobRunning, 10*time.Minute, nil)
	for _, name := range []string{contract.ArtifactAdapterConfig, contract.ArtifactAdapterModel} {
		data := "content of " + name
		if _, err := e.blobs.Put(context.Background(), pipeline.ArtifactKey("alice", "job_1", 1, name), strings.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	e.gpu.status["rp-job_1"] = runpod.JobStatus{Status: runpod.StatusCompleted, ExecutionTime: 90_500}
	if _, err := e.r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	j := e.get(t, "job_1")
	if j.Status != pipeline.JobCompleted || len(j.Artifacts) != 2 || j.Artifacts[0].SHA256 == "" || j.Cost.BilledSeconds != 91 || j.Cost.USD != 0.09 {
		t.Errorf("job = %s, artifacts %+v, cost %+v; want completed with both files hashed and 91 s billed ($0.09)", j.Status, j.Artifacts, j.Cost)
	}
	// The job was created an hour ago; it had no duration estimate (0 s):
	// the estimate was 100 % short. $3 expected for $0.09: +3233 %.
	if c := j.Cost; c.DurationSeconds != 3600 || c.DurationError == nil || *c.DurationError != -1 || c.CostError == nil || *c.CostError != 32.333 {
		t.Errorf("cost = %+v, want a duration of 3600 s compared with the estimate", c)
	}
	notes, _, _ := e.store.ListNotifications(context.Background(), "alice", pipeline.Page{})
	if len(notes) != 1 || notes[0].Type != "job_completed" {
		t.Errorf("notifications = %+v, want one job_completed", notes)
	}
}

func TestFreshJobsAreLeftAlone(t *testing.T) {
	e := newEnv(t)
	e.job(t, "job_1", pipeline.JobRunning, 5*time.Second, func(j *pipeline.Job) { checked := e.now; j.CheckedAt = &checked })
	rep, err := e.r.Run(context.Background())
	if err != nil || rep.Checked != 0 {
		t.Errorf("Run = %+v, %v; want nothing checked (fresh heartbeat, checked just now)", rep, err)
	}
}

func TestACrashLoopIsCancelledAndFailed(t *testing.T) {
	e := newEnv(t)
	e.job(t, "job_1", pipeline.JobRunning, 5*time.Second, nil)
	e.gpu.status["rp-job_1"] = runpod.JobStatus{Status: runpod.StatusInProgress, Retries: 3}
	if _, err := e.r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	j := e.get(t, "job_1")
	if j.Status != pipeline.JobFailed || j.Error.Code != "crash_loop" || fmt.Sprint(e.gpu.cancelled) != "[rp-job_1]" {
		t.Errorf("job = %s %+v, cancelled %v; want failed crash_loop and the run cancelled", j.Status, j.Error, e.gpu.cancelled)
	}
}

func TestAJobOverBudgetIsCancelled(t *testing.T) {
	e := newEnv(t)
	budget := 1.0
	e.job(t, "job_1", pipeline.JobRunning, 5*time.Second, func(j *pipeline.Job) {
		started := e.now.Add(-2000 * time.Second) // $2 at $0.001/s
		j.StartedAt, j.BudgetUSD = &started, &budget
	})
	e.gpu.status["rp-job_1"] = runpod.JobStatus{Status: runpod.StatusInProgress}
	if _, err := e.r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	j := e.get(t, "job_1")
	notes, _, _ := e.store.ListNotifications(context.Background(), "alice", pipeline.Page{})
	if j.Status != pipeline.JobCancelRequested || fmt.Sprint(e.gpu.cancelled) != "[rp-job_1]" || len(notes) != 1 || notes[0].Type != "budget_exceeded" {
		t.Errorf("job %s, cancelled %v, notifications %+v; want cancel_requested, the run cancelled, one budget_exceeded", j.Status, e.gpu.cancelled, notes)
	}
}

func TestAStoredJobThatWasNeverEnqueuedIsEnqueued(t *testing.T) {
	e := newEnv(t)
	e.job(t, "job_old", pipeline.JobQueued, 0, func(j *pipeline.Job) { j.RunPodID = "" })
	e.job(t, "job_new", pipeline.JobQueued, 0, func(j *pipeline.Job) { j.RunPodID, j.CreatedAt = "", e.now })
	e.job(t, "job_sent", pipeline.JobQueued, 0, func(j *pipeline.Job) { j.RunPodID, j.Enqueued, j.EnqueuedAt = "", true, &e.now })
	rep, err := e.r.Run(context.Background())
	if err != nil || rep.Enqueued != 1 {
		t.Fatalf("Run = %+v, %v; want 1 enqueued", rep, err)
	}
	msgs, _ := e.queue.Receive(context.Background(), 10, time.Minute, 0)
	if len(msgs) != 1 || !strings.Contains(string(msgs[0].Body), "job_old") || !e.get(t, "job_old").Enqueued {
		t.Errorf("queue holds %d messages (%v), want job_old's alone, recorded as enqueued", len(msgs), msgs)
	}
	if rep, _ := e.r.Run(context.Background()); rep.Enqueued != 0 {
		t.Errorf("a second pass enqueued %d, want 0", rep.Enqueued)
	}
}

// A job that never reached RunPod and waits for a queue message that is
// gone (it went to the dead-letter queue, expired, or its dispatcher died
// with it) is enqueued again, so that a dispatcher claims it or takes it
// over; a job whose message was gone too often fails. Jobs whose message
// or claim may still be alive are left alone.
func TestJobsWaitingForAMessageThatIsGoneAreEnqueuedAgain(t *testing.T) {
	tests := []struct {
		name       string
		status     pipeline.JobStatus
		mutate     func(e *env, j *pipeline.Job)
		wantSent   bool
		wantStatus pipeline.JobStatus
	}{
		{"a queued job whose message was sent an hour ago", pipeline.JobQueued, func(e *env, j *pipeline.Job) {
			j.Enqueued, j.EnqueuedAt = true, ago(e, time.Hour)
		}, true, pipeline.JobQueued},
		{"a queued job of before enqueue times, created an hour ago", pipeline.JobQueued, func(e *env, j *pipeline.Job) {
			j.Enqueued = true
		}, true, pipeline.JobQueued},
		{"a queued job whose message was sent a minute ago", pipeline.JobQueued, func(e *env, j *pipeline.Job) {
			j.Enqueued, j.EnqueuedAt = true, ago(e, time.Minute)
		}, false, pipeline.JobQueued},
		{"a dispatching job whose claim lapsed an hour ago", pipeline.JobDispatching, func(e *env, j *pipeline.Job) {
			j.Enqueued, j.EnqueuedAt, j.LeaseUntil = true, ago(e, 2*time.Hour), ago(e, time.Hour)
		}, true, pipeline.JobDispatching},
		{"a dispatching job without a claim, changed an hour ago", pipeline.JobDispatching, func(e *env, j *pipeline.Job) {
			j.Enqueued, j.UpdatedAt = true, *ago(e, time.Hour)
		}, true, pipeline.JobDispatching},
		{"a dispatching job whose claim lapsed a minute ago", pipeline.JobDispatching, func(e *env, j *pipeline.Job) {
			j.Enqueued, j.EnqueuedAt, j.LeaseUntil = true, ago(e, 2*time.Hour), ago(e, time.Minute)
		}, false, pipeline.JobDispatching},
		{"a dispatching job under a live claim", pipeline.JobDispatching, func(e *env, j *pipeline.Job) {
			j.Enqueued, j.EnqueuedAt, j.LeaseUntil = true, ago(e, 2*time.Hour), ago(e, -time.Minute)
		}, false, pipeline.JobDispatching},
		{"a job whose message was gone five times", pipeline.JobQueued, func(e *env, j *pipeline.Job) {
			j.Enqueued, j.EnqueuedAt, j.Requeues = true, ago(e, time.Hour), 5
		}, false, pipeline.JobFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.job(t, "job_1", tt.status, 0, func(j *pipeline.Job) {
				j.RunPodID, j.HeartbeatAt, j.UpdatedAt = "", nil, j.CreatedAt
				tt.mutate(e, j)
			})
			before := e.get(t, "job_1")
			if _, err := e.r.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			msgs, _ := e.queue.Receive(context.Background(), 10, time.Minute, 0)
			sent := len(msgs) == 1 && strings.Contains(string(msgs[0].Body), `"job_1"`)
			j := e.get(t, "job_1")
			if sent != tt.wantSent || len(msgs) > 1 || j.Status != tt.wantStatus {
				t.Fatalf("after reconciliation: %d messages (job_1's: %v), job %s; want job_1's message sent %v, job %s", len(msgs), sent, j.Status, tt.wantSent, tt.wantStatus)
			}
			switch {
			case tt.wantSent && (j.Requeues != before.Requeues+1 || j.EnqueuedAt == nil || !j.EnqueuedAt.Equal(e.now)):
				t.Errorf("requeued job: requeues %d, enqueued at %v; want %d, now", j.Requeues, j.EnqueuedAt, before.Requeues+1)
			case tt.wantStatus == pipeline.JobFailed && (j.Error == nil || j.Error.Code != "dispatch_failed"):
				t.Errorf("failed job's error = %+v, want dispatch_failed", j.Error)
			}
			if tt.wantSent {
				// The next pass leaves the job alone: its new message is fresh.
				if _, err := e.r.Run(context.Background()); err != nil {
					t.Fatal(err)
				}
				if again, _ := e.queue.Receive(context.Background(), 10, time.Minute, 0); len(again) != 0 {
					t.Errorf("a second pass sent %d more messages, want none", len(again))
				}
			}
		})
	}
}

func ago(e *env, d time.Duration) *time.Time {
	t := e.now.Add(-d)
	return &t
}

func TestAJobEndedByItsWorkerIsBilledWhatRunPodReports(t *testing.T) {
	e := newEnv(t)
	started := e.now.Add(-10 * time.Minute)
	finished := e.now.Add(-time.Minute)
	e.job(t, "job_1", pipeline.JobCompleted, time.Minute, func(j *pipeline.Job) {
		// The worker's completed callback ended it: billed from its
		// callbacks, 540 s, until RunPod says what it bills.
		j.StartedAt, j.FinishedAt = &started, &finished
		j.Runs = []pipeline.Run{{Attempt: 1, StartedAt: started, EndedAt: &finished}}
		j.Cost = pipeline.Cost(j, finished)
	})
	if j := e.get(t, "job_1"); j.Cost.BilledSeconds != 540 || j.Cost.Source != pipeline.BilledByWorker || j.CostSettled() {
		t.Fatalf("cost before = %+v, want 540 s from the callbacks, unsettled", j.Cost)
	}
	e.gpu.status["rp-job_1"] = runpod.JobStatus{Status: runpod.StatusCompleted, ExecutionTime: 530_200, DelayTime: 95_000}
	// RunPod's completion webhook has the job checked.
	if err := e.r.CheckJob(context.Background(), "alice", "job_1"); err != nil {
		t.Fatal(err)
	}
	j := e.get(t, "job_1")
	if c := j.Cost; c.BilledSeconds != 531 || c.DelaySeconds != 95 || c.Source != pipeline.BilledByProvider || c.USD != 0.53 || c.CostError == nil || !j.CostSettled() {
		t.Errorf("cost = %+v, want RunPod's 531 s billed ($0.53), 95 s delay, compared with the estimate", c)
	}
	// Settled once: a later check asks RunPod nothing more.
	delete(e.gpu.status, "rp-job_1")
	if err := e.r.CheckJob(context.Background(), "alice", "job_1"); err != nil {
		t.Errorf("a settled job checked again: %v", err)
	}
}

func TestABudgetCountsBilledTimeNotTheQueue(t *testing.T) {
	e := newEnv(t)
	budget := 1.0
	// Submitted 3 hours ago, queued most of it; its worker has run 500 s
	// ($0.50 at $0.001/s): under budget, whatever the wall clock says.
	e.job(t, "job_1", pipeline.JobRunning, 5*time.Second, func(j *pipeline.Job) {
		created, workerStart := e.now.Add(-3*time.Hour), e.now.Add(-500*time.Second)
		j.CreatedAt, j.StartedAt, j.BudgetUSD = created, &workerStart, &budget
		j.Runs = []pipeline.Run{{Attempt: 1, StartedAt: workerStart}}
	})
	e.gpu.status["rp-job_1"] = runpod.JobStatus{Status: runpod.StatusInProgress, ExecutionTime: 500_000, DelayTime: 10_000_000}
	if _, err := e.r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	j := e.get(t, "job_1")
	if j.Status != pipeline.JobRunning || len(e.gpu.cancelled) != 0 {
		t.Fatalf("job %s, cancelled %v; want it running: $0.50 of $1.00 spent", j.Status, e.gpu.cancelled)
	}
	if r := j.Runs[0]; r.ExecutionSeconds == nil || *r.ExecutionSeconds != 500 || *r.DelaySeconds != 10_000 {
		t.Errorf("run = %+v, want RunPod's execution and delay times recorded", r)
	}
	if c := pipeline.CostSoFar(j, e.now); c == nil || c.USD != 0.5 {
		t.Errorf("cost so far = %+v, want $0.50", c)
	}
	// 600 s more of execution: $1.10, over.
	e.now = e.now.Add(10 * time.Minute)
	e.gpu.status["rp-job_1"] = runpod.JobStatus{Status: runpod.StatusInProgress, ExecutionTime: 1_100_000, DelayTime: 10_000_000}
	e.job(t, "job_2", pipeline.JobQueued, 0, nil) // an unrelated job, to show only job_1 moves
	if _, err := e.r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if j := e.get(t, "job_1"); j.Status != pipeline.JobCancelRequested {
		t.Errorf("job %s after $1.10 of execution, want cancel_requested", j.Status)
	}
}

// The API enqueues a new job; a dispatcher takes the message and claims
// the job before the API records the message as sent: it is recorded all
// the same (reconciliation reads it), and nothing is sent twice.
func TestAJobClaimedBeforeItsEnqueueIsRecordedIsStillRecordedAsSent(t *testing.T) {
	e := newEnv(t)
	e.job(t, "job_race", pipeline.JobQueued, 0, func(j *pipeline.Job) { j.RunPodID = "" })
	queued := e.get(t, "job_race")
	jobs := e.r.Jobs
	if _, err := jobs.Claim(context.Background(), "alice", "job_race", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := jobs.Enqueue(context.Background(), queued); err != nil {
		t.Fatal(err)
	}
	if j := e.get(t, "job_race"); !j.Enqueued || j.Status != pipeline.JobDispatching || j.Requeues != 0 {
		t.Errorf("job = %s, enqueued %v, requeues %d; want dispatching, recorded as sent, no requeue", j.Status, j.Enqueued, j.Requeues)
	}
}
