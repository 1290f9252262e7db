// Package reconcile repairs what callbacks, webhooks and the queue missed:
// jobs whose heartbeat went stale are checked against RunPod's /status and
// moved to the state RunPod reports; crash loops and budgets are enforced;
// jobs that were stored but never enqueued are enqueued, and jobs that
// wait for a queue message that is gone (queued long after it was sent,
// or dispatching under a claim that lapsed long ago) are enqueued again.
// What each finding means for a job is decided by pipeline.Lifecycle. It runs on a schedule (the
// reconcile Lambda, or a ticker in the local stack) and for each RunPod
// completion webhook.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/runpod"
)

// GPU is what reconciliation asks of the GPU provider.
type GPU interface {
	Status(ctx context.Context, id string) (runpod.JobStatus, error)
	Cancel(ctx context.Context, id string) (runpod.JobStatus, error)
}

// Reconciler repairs jobs.
type Reconciler struct {
	// Jobs runs the jobs' lifecycle: what a run's status means for its job
	// is decided there.
	Jobs *pipeline.Lifecycle
	// Scanner finds the jobs of every owner by status.
	Scanner pipeline.JobScanner
	GPU     GPU
	// StaleAfter is how old a heartbeat is before RunPod is asked (default
	// 2 min: RunPod keeps results only 30 min).
	StaleAfter time.Duration
	// CheckEvery is how often a job with a fresh heartbeat is still checked
	// (a worker that crashes and is re-run keeps calling back: only RunPod's
	// retries count shows the crash loop). Default 5 min.
	CheckEvery time.Duration
	// EnqueueGrace is how long a stored job may wait for its first enqueue
	// (the API enqueues right after storing) before reconciliation does it.
	EnqueueGrace time.Duration
	// RequeueAfter is how long a job may wait queued after its message was
	// sent, or dispatching after its claim lapsed, before its message is
	// taken for gone and sent again; MaxRequeues how many times before the
	// job fails (pipeline.RequeuePolicy: defaults 10 min, 5).
	RequeueAfter time.Duration
	MaxRequeues  int
	// MaxRetries is how many times RunPod may re-run a crashing worker
	// before the job is cancelled (default 2).
	MaxRetries int
	// Fair, when set, starts the jobs fair dispatch held whose turn came
	// (a slot freed), once a pass.
	Fair *pipeline.FairDispatch
	Log  *slog.Logger
	Now  func() time.Time
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now().UTC()
	}
	return time.Now().UTC()
}

func (r *Reconciler) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.Default()
}

// Report counts what one pass did.
type Report struct {
	Checked, Repaired, Enqueued, Cancelled int
	// Requeued counts jobs whose queue message was gone and sent again;
	// Released the jobs held by fair dispatch whose turn came.
	Requeued, Released int
}

// active are the statuses in which a job has (or may have) a RunPod run.
var active = []pipeline.JobStatus{pipeline.JobSubmitted, pipeline.JobRunning, pipeline.JobUploading, pipeline.JobCancelRequested}

// Run makes one pass over every job that may need repair.
func (r *Reconciler) Run(ctx context.Context) (Report, error) {
	var rep Report
	var errs []error
	stale := r.StaleAfter
	if stale <= 0 {
		stale = 2 * time.Minute
	}
	every := r.CheckEvery
	if every <= 0 {
		every = 5 * time.Minute
	}
	seen := map[string]bool{} // a job moved to cancel_requested is met again
	for _, st := range active {
		err := r.scan(ctx, st, func(j *pipeline.Job) {
			if seen[j.Owner+"\x00"+j.ID] {
				return
			}
			seen[j.Owner+"\x00"+j.ID] = true
			fresh := j.HeartbeatAt != nil && r.now().Sub(*j.HeartbeatAt) < stale
			recent := j.CheckedAt != nil && r.now().Sub(*j.CheckedAt) < every
			if fresh && recent && !pipeline.OverBudget(j, r.now()) && j.Status != pipeline.JobCancelRequested {
				return
			}
			rep.Checked++
			changed, err := r.check(ctx, j)
			if err != nil {
				errs = append(errs, fmt.Errorf("job %s: %w", j.ID, err))
			}
			if changed {
				rep.Repaired++
			}
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	// Jobs that never reached RunPod and wait for a message that never
	// came or is gone.
	policy := pipeline.RequeuePolicy{EnqueueGrace: r.EnqueueGrace, After: r.RequeueAfter, Max: r.MaxRequeues, Fair: r.Fair != nil}
	for _, st := range []pipeline.JobStatus{pipeline.JobQueued, pipeline.JobDispatching} {
		err := r.scan(ctx, st, func(j *pipeline.Job) {
			if r.Jobs.Queue == nil {
				return
			}
			did, err := r.Jobs.RepairUndispatched(ctx, j, policy)
			if err != nil {
				errs = append(errs, fmt.Errorf("job %s: %w", j.ID, err))
			}
			switch did {
			case pipeline.RepairEnqueued:
				rep.Enqueued++
				r.log().InfoContext(ctx, "stored job enqueued by reconciliation", "job_id", j.ID)
			case pipeline.RepairRequeued:
				rep.Requeued++
				r.log().WarnContext(ctx, "job's queue message was gone: enqueued again", "job_id", j.ID, "status", j.Status, "requeues", j.Requeues)
			case pipeline.RepairFailed:
				rep.Repaired++
				r.log().WarnContext(ctx, "job's queue message was gone too often: failed", "job_id", j.ID)
			}
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	if r.Fair != nil && r.Jobs.Queue != nil {
		n, err := r.Fair.Release(ctx)
		rep.Released = n
		if err != nil {
			errs = append(errs, fmt.Errorf("start held jobs: %w", err))
		}
	}
	return rep, errors.Join(errs...)
}

func (r *Reconciler) scan(ctx context.Context, st pipeline.JobStatus, fn func(*pipeline.Job)) error {
	cursor := ""
	for {
		page, next, err := r.Scanner.ListJobsByStatus(ctx, st, pipeline.Page{Cursor: cursor, Limit: pipeline.MaxPageSize})
		if err != nil {
			return fmt.Errorf("list %s jobs: %w", st, err)
		}
		for _, j := range page {
			fn(j)
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
}

// CheckJob confirms one job's run with RunPod and repairs its state.
func (r *Reconciler) CheckJob(ctx context.Context, owner, jobID string) error {
	j, err := r.Jobs.Store.GetJob(ctx, owner, jobID)
	if err != nil {
		return err
	}
	_, err = r.check(ctx, j)
	return err
}

// check asks RunPod about j's run and has the lifecycle repair j; it
// reports whether j ended.
func (r *Reconciler) check(ctx context.Context, j *pipeline.Job) (bool, error) {
	if j.RunPodID == "" {
		return false, nil
	}
	if j.Status.Terminal() {
		// Ended by its worker's callback: its cost is settled with what
		// RunPod bills, once RunPod reports it (the completion webhook).
		if j.CostSettled() {
			return false, nil
		}
		st, err := r.GPU.Status(ctx, j.RunPodID)
		switch {
		case errors.Is(err, runpod.ErrNotFound):
			return false, nil // RunPod no longer knows the run: the callbacks' figure stays
		case err != nil:
			return false, fmt.Errorf("runpod status to settle the cost: %w", err) // the webhook is retried
		case !st.Status.Terminal():
			return false, nil
		}
		_, err = r.Jobs.SettleCost(ctx, j, report(st))
		return false, err
	}
	log := r.log().With("job_id", j.ID, "run_id", j.RunPodID, "status", j.Status)
	j, _, err := r.Jobs.EnforceBudget(ctx, j)
	if err != nil {
		return false, err
	}
	st, err := r.GPU.Status(ctx, j.RunPodID)
	var rep pipeline.RunReport
	switch {
	case errors.Is(err, runpod.ErrNotFound):
		rep = pipeline.RunReport{State: pipeline.RunLost}
	case err != nil:
		return false, fmt.Errorf("runpod status: %w", err)
	default:
		rep = report(st)
		r.Jobs.MarkChecked(ctx, j, rep)
	}
	ended, cancelRun, err := r.Jobs.Reconcile(ctx, j, rep, r.MaxRetries)
	if err != nil || !cancelRun {
		return ended, err
	}
	if _, err := r.GPU.Cancel(ctx, j.RunPodID); err != nil {
		return ended, fmt.Errorf("cancel run: %w", err)
	}
	log.InfoContext(ctx, "run cancelled", "ended", ended)
	return ended, nil
}

// report is what RunPod's status says, in the domain's words.
func report(st runpod.JobStatus) pipeline.RunReport {
	rep := pipeline.RunReport{State: pipeline.RunPending, Queued: st.Status == runpod.StatusInQueue, ExecutionSeconds: float64(st.ExecutionTime) / 1000,
		DelaySeconds: float64(st.DelayTime) / 1000, Retries: st.Retries, Error: st.Error}
	switch st.Status {
	case runpod.StatusCompleted:
		rep.State = pipeline.RunCompleted
	case runpod.StatusFailed:
		rep.State = pipeline.RunFailed
	case runpod.StatusTimedOut:
		rep.State = pipeline.RunTimedOut
	case runpod.StatusCancelled:
		rep.State = pipeline.RunCancelled
	}
	return rep
}
