package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/brightrun/brightrun/shared/contract"
)

// RunState is what the GPU provider says of a job's run.
type RunState string

// The run states.
const (
	RunPending   RunState = "pending"   // queued or running
	RunCompleted RunState = "completed" // the worker returned
	RunFailed    RunState = "failed"    // the worker failed
	RunTimedOut  RunState = "timed_out" // the run passed its execution time limit
	RunCancelled RunState = "cancelled"
	RunLost      RunState = "lost" // the provider no longer knows the run
)

// RunReport is what the GPU provider said of a job's run.
type RunReport struct {
	State RunState
	// ExecutionSeconds is the run's execution time so far (what the
	// provider bills); DelaySeconds its time queued and starting.
	ExecutionSeconds float64
	DelaySeconds     float64
	// Queued: the run waits for a worker (not started yet, or re-queued
	// after its worker crashed).
	Queued bool
	// Retries counts the provider's re-runs of a crashed worker.
	Retries int
	// Error is the provider's error of a failed run.
	Error string
}

// DefaultMaxRetries is how many re-runs of a crashing worker the provider
// may make before the job is failed and its run cancelled.
const DefaultMaxRetries = 2

// EnforceBudget asks for the cancel of j when it has spent more than its
// budget, and tells its owner; it reports whether it did. The run itself
// is cancelled by the caller (Reconcile answers cancelRun for a job whose
// cancel was asked for).
func (l *Lifecycle) EnforceBudget(ctx context.Context, j *Job) (*Job, bool, error) {
	now := l.now()
	if !OverBudget(j, now) {
		return j, false, nil
	}
	msg := fmt.Sprintf("Job %s was cancelled: it had spent $%.2f, over its budget of $%.2f.", j.ID, Spent(j, now), *j.BudgetUSD)
	moved, err := TransitionJob(ctx, l.Store, j.Owner, j.ID, JobCancelRequested, func(cur *Job) error {
		if cur.Attempt != j.Attempt {
			return errMoved
		}
		cur.UpdatedAt = now
		return nil
	})
	if ErrorCode(err) == EPrecondition || errors.Is(err, errMoved) {
		return j, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	l.Event(ctx, moved, string(JobCancelRequested), msg)
	l.notify(ctx, moved, "budget_exceeded", msg)
	l.publish(ctx, EventJobBudgetExceeded, moved)
	l.log().WarnContext(ctx, "job over budget: cancelling", "job_id", j.ID)
	return moved, true, nil
}

// MarkChecked records that the GPU provider was asked about j's run, and
// the run's times it reported (what the job is billed so far).
func (l *Lifecycle) MarkChecked(ctx context.Context, j *Job, r RunReport) {
	now := l.now()
	if _, err := UpdateJob(ctx, l.Store, j.Owner, j.ID, func(cur *Job) error {
		cur.CheckedAt = &now
		if cur.Attempt == j.Attempt {
			cur.reportRun(r, now)
		}
		return nil
	}); err != nil {
		l.log().WarnContext(ctx, "record the status check", "job_id", j.ID, "err", err)
	}
}

// CostSettled reports whether j's cost rests on the GPU provider's final
// figures for its current attempt's run (or there is nothing to settle:
// no cost yet, or no run was ever submitted).
func (j *Job) CostSettled() bool {
	if j.Cost == nil || j.RunPodID == "" {
		return true
	}
	r := j.lastRun(j.Attempt)
	return r != nil && r.Final
}

// SettleCost records the GPU provider's final figures of an ended job's
// last run and computes its cost again from them (the worker's own word
// ended the job, before RunPod reported what it bills).
func (l *Lifecycle) SettleCost(ctx context.Context, j *Job, r RunReport) (*Job, error) {
	if r.ExecutionSeconds <= 0 {
		return j, nil
	}
	done, err := UpdateJob(ctx, l.Store, j.Owner, j.ID, func(cur *Job) error {
		if !cur.Status.Terminal() || cur.Attempt != j.Attempt || cur.CostSettled() || cur.FinishedAt == nil {
			return errMoved
		}
		cur.reportRun(r, *cur.FinishedAt)
		cur.recost(*cur.FinishedAt)
		return nil
	})
	if errors.Is(err, errMoved) {
		return j, nil
	}
	if err != nil {
		return nil, fmt.Errorf("settle the cost of job %s: %w", j.ID, err)
	}
	l.log().InfoContext(ctx, "job's cost settled with RunPod's figures", "job_id", j.ID, "usd", done.Cost.USD, "billed_seconds", done.Cost.BilledSeconds)
	return done, nil
}

// Reconcile repairs j from what the GPU provider reports of its run: a
// run that ended ends the job (with the adapter files the worker uploaded
// even when their callbacks were lost), a crash loop fails it. It reports
// whether the job ended, and whether the caller must cancel the run: a
// crash loop's, or one whose cancel was asked for and that still runs.
// maxRetries ≤ 0 takes DefaultMaxRetries.
func (l *Lifecycle) Reconcile(ctx context.Context, j *Job, r RunReport, maxRetries int) (ended, cancelRun bool, err error) {
	if j.Status.Terminal() {
		return false, false, nil
	}
	end := func(to JobStatus, jerr *JobError) (bool, error) {
		_, ended, err := l.Finish(ctx, j, Outcome{Status: to, Error: jerr, Run: &r, Note: "confirmed with RunPod's status"})
		if ended {
			l.log().InfoContext(ctx, "job repaired from RunPod's status", "job_id", j.ID, "from", j.Status, "to", to)
		}
		return ended, err
	}
	switch r.State {
	case RunLost:
		ended, err := end(JobFailed, &JobError{Code: "result_lost",
			Message: "RunPod no longer knows this run (results are kept 30 minutes) and no completion was received.",
			Advice:  "Create the job again; if it recurs, check that the callback URL is reachable from RunPod."})
		return ended, false, err
	case RunCompleted:
		if j.Status == JobCancelRequested {
			l.log().InfoContext(ctx, "run completed before the cancel took effect", "job_id", j.ID)
		}
		if missing := l.collectArtifacts(ctx, j); missing != "" {
			ended, err := end(JobFailed, &JobError{Code: "result_lost",
				Message: "RunPod reports the run completed, but " + missing, Advice: "Create the job again."})
			return ended, false, err
		}
		ended, err := end(JobCompleted, nil)
		return ended, false, err
	case RunFailed:
		msg := r.Error
		if msg == "" {
			msg = "the run failed on RunPod without an error message"
		}
		ended, err := end(JobFailed, &JobError{Code: "internal", Message: "RunPod reports the run failed: " + msg,
			Advice: "See the job's events for the worker's last report; create the job again once the cause is fixed."})
		return ended, false, err
	case RunTimedOut:
		ended, err := end(JobFailed, &JobError{Code: string(contract.CodeTimeout),
			Message: "The run passed its execution time limit on RunPod.",
			Advice:  "Use fewer epochs or a smaller max_seq_length, or a faster GPU."})
		return ended, false, err
	case RunCancelled:
		ended, err := end(JobCancelled, nil)
		return ended, false, err
	}
	// Still queued or running.
	if maxRetries <= 0 {
		maxRetries = DefaultMaxRetries
	}
	if r.Retries > maxRetries && j.Status != JobCancelRequested {
		// Fail the job first: the cancelled worker's last callback then
		// finds it ended and cannot turn the failure into a cancel.
		l.log().WarnContext(ctx, "worker crash loop: cancelling the run", "job_id", j.ID, "retries", r.Retries)
		ended, err := end(JobFailed, &JobError{Code: "crash_loop",
			Message: fmt.Sprintf("The worker crashed and RunPod re-ran it %d times; the run was cancelled so that it stops costing money.", r.Retries),
			Advice:  "Lower batch_size or max_seq_length (crashes are most often out of memory), or choose a GPU with more memory."})
		return ended, err == nil, err
	}
	return false, j.Status == JobCancelRequested, nil
}

// collectArtifacts records adapter files the worker uploaded but whose
// callbacks were lost; it returns what is missing, or "".
func (l *Lifecycle) collectArtifacts(ctx context.Context, j *Job) string {
	have := map[string]bool{}
	for _, a := range j.Artifacts {
		have[a.Name] = true
	}
	var found []Artifact
	for _, name := range []string{contract.ArtifactAdapterConfig, contract.ArtifactAdapterModel} {
		if have[name] {
			continue
		}
		if l.Objects == nil {
			return fmt.Sprintf("the adapter file %s was not reported", name)
		}
		key := ArtifactKey(j.Owner, j.ID, j.Attempt, name)
		rc, info, err := l.Objects.Open(ctx, key)
		if err != nil {
			return fmt.Sprintf("the adapter file %s was never uploaded", name)
		}
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil {
			return fmt.Sprintf("the adapter file %s could not be read: %v", name, err)
		}
		found = append(found, Artifact{Name: name, Key: key, SizeBytes: info.Size, SHA256: hex.EncodeToString(h.Sum(nil))})
	}
	if len(found) > 0 {
		if _, err := UpdateJob(ctx, l.Store, j.Owner, j.ID, func(cur *Job) error {
			if cur.Attempt != j.Attempt {
				return ErrNoChange
			}
			for _, a := range found {
				cur.addArtifact(a)
			}
			return nil
		}); err != nil {
			l.log().WarnContext(ctx, "record collected artifacts", "job_id", j.ID, "err", err)
		}
	}
	return ""
}
