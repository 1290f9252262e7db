// Package reconcile repairs what callbacks and webhooks missed: jobs whose
// heartbeat went stale are checked against RunPod's /status and moved to
// the state RunPod reports; crash loops and budgets are enforced; jobs that
// were stored but never enqueued are enqueued. It runs on a schedule (the
// reconcile Lambda, or a ticker in the local stack) and for each RunPod
// completion webhook.
package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/runpod"
)

// GPU is what reconciliation asks of the GPU provider.
type GPU interface {
	Status(ctx context.Context, id string) (runpod.JobStatus, error)
	Cancel(ctx context.Context, id string) (runpod.JobStatus, error)
}

// Store is the store with the cross-owner scan reconciliation needs.
type Store interface {
	pipeline.Store
	pipeline.JobScanner
}

// Blobs reads uploaded artifacts.
type Blobs interface {
	Open(ctx context.Context, key string) (io.ReadCloser, pipeline.ObjectInfo, error)
}

// Reconciler repairs jobs.
type Reconciler struct {
	Store  Store
	JobLog pipeline.JobLog
	Queue  pipeline.Queue
	Blobs  Blobs
	GPU    GPU
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
	// MaxRetries is how many times RunPod may re-run a crashing worker
	// before the job is cancelled (default 2).
	MaxRetries int
	Log        *slog.Logger
	Now        func() time.Time
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
			if fresh && recent && !r.overBudget(j) && j.Status != pipeline.JobCancelRequested {
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
	grace := r.EnqueueGrace
	if grace <= 0 {
		grace = time.Minute
	}
	err := r.scan(ctx, pipeline.JobQueued, func(j *pipeline.Job) {
		if j.Enqueued || r.now().Sub(j.CreatedAt) < grace || r.Queue == nil {
			return
		}
		if err := pipeline.EnqueueJob(ctx, r.Store, r.Queue, j); err != nil {
			errs = append(errs, err)
			return
		}
		rep.Enqueued++
		r.log().InfoContext(ctx, "stored job enqueued by reconciliation", "job_id", j.ID)
	})
	if err != nil {
		errs = append(errs, err)
	}
	return rep, errors.Join(errs...)
}

func (r *Reconciler) scan(ctx context.Context, st pipeline.JobStatus, fn func(*pipeline.Job)) error {
	cursor := ""
	for {
		page, next, err := r.Store.ListJobsByStatus(ctx, st, pipeline.Page{Cursor: cursor, Limit: pipeline.MaxPageSize})
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

// spent is the job's cost so far, at the estimate's price.
func (r *Reconciler) spent(j *pipeline.Job) float64 {
	if j.StartedAt == nil || j.Estimate == nil {
		return 0
	}
	return r.now().Sub(*j.StartedAt).Seconds() * j.Estimate.PriceUSDPerSecond
}

func (r *Reconciler) overBudget(j *pipeline.Job) bool {
	return j.BudgetUSD != nil && r.spent(j) > *j.BudgetUSD && j.Status != pipeline.JobCancelRequested
}

// CheckJob confirms one job's run with RunPod and repairs its state.
func (r *Reconciler) CheckJob(ctx context.Context, owner, jobID string) error {
	j, err := r.Store.GetJob(ctx, owner, jobID)
	if err != nil {
		return err
	}
	_, err = r.check(ctx, j)
	return err
}

// check asks RunPod about j's run and moves j accordingly; it reports
// whether j changed state.
func (r *Reconciler) check(ctx context.Context, j *pipeline.Job) (bool, error) {
	if j.Status.Terminal() || j.RunPodID == "" {
		return false, nil
	}
	log := r.log().With("job_id", j.ID, "run_id", j.RunPodID, "status", j.Status)
	if r.overBudget(j) {
		msg := fmt.Sprintf("Job %s was cancelled: it had spent $%.2f, over its budget of $%.2f.", j.ID, r.spent(j), *j.BudgetUSD)
		if _, err := pipeline.TransitionJob(ctx, r.Store, j.Owner, j.ID, pipeline.JobCancelRequested, nil); err != nil && pipeline.ErrorCode(err) != pipeline.EPrecondition {
			return false, err
		}
		r.notify(ctx, j, "budget_exceeded", msg)
		log.WarnContext(ctx, "job over budget: cancelling")
		j.Status = pipeline.JobCancelRequested
	}
	st, err := r.GPU.Status(ctx, j.RunPodID)
	switch {
	case errors.Is(err, runpod.ErrNotFound):
		return r.end(ctx, j, pipeline.JobFailed, &pipeline.JobError{Code: "result_lost",
			Message: "RunPod no longer knows this run (results are kept 30 minutes) and no completion was received.",
			Advice:  "Create the job again; if it recurs, check that the callback URL is reachable from RunPod."}, 0)
	case err != nil:
		return false, fmt.Errorf("runpod status: %w", err)
	}
	r.checked(ctx, j)
	billed := float64(st.ExecutionTime) / 1000
	switch st.Status {
	case runpod.StatusCompleted:
		if j.Status == pipeline.JobCancelRequested {
			log.InfoContext(ctx, "run completed before the cancel took effect")
		}
		missing := r.collectArtifacts(ctx, j)
		if missing != "" {
			return r.end(ctx, j, pipeline.JobFailed, &pipeline.JobError{Code: "result_lost",
				Message: "RunPod reports the run completed, but " + missing, Advice: "Create the job again."}, billed)
		}
		return r.end(ctx, j, pipeline.JobCompleted, nil, billed)
	case runpod.StatusFailed:
		return r.end(ctx, j, pipeline.JobFailed, failure(st), billed)
	case runpod.StatusTimedOut:
		return r.end(ctx, j, pipeline.JobFailed, &pipeline.JobError{Code: string(contract.CodeTimeout),
			Message: "The run passed its execution time limit on RunPod.",
			Advice:  "Use fewer epochs or a smaller max_seq_length, or a faster GPU."}, billed)
	case runpod.StatusCancelled:
		return r.end(ctx, j, pipeline.JobCancelled, nil, billed)
	}
	// Still queued or running.
	maxRetries := r.MaxRetries
	if maxRetries <= 0 {
		maxRetries = 2
	}
	if st.Retries > maxRetries && j.Status != pipeline.JobCancelRequested {
		// Fail the job first: the cancelled worker's last callback then
		// finds it ended and cannot turn the failure into a cancel.
		log.WarnContext(ctx, "worker crash loop: cancelling the run", "retries", st.Retries)
		changed, err := r.end(ctx, j, pipeline.JobFailed, &pipeline.JobError{Code: "crash_loop",
			Message: fmt.Sprintf("The worker crashed and RunPod re-ran it %d times; the run was cancelled so that it stops costing money.", st.Retries),
			Advice:  "Lower batch_size or max_seq_length (crashes are most often out of memory), or choose a GPU with more memory."}, billed)
		if err != nil {
			return changed, err
		}
		if _, err := r.GPU.Cancel(ctx, j.RunPodID); err != nil {
			return changed, fmt.Errorf("cancel run: %w", err)
		}
		return changed, nil
	}
	if j.Status == pipeline.JobCancelRequested {
		if _, err := r.GPU.Cancel(ctx, j.RunPodID); err != nil {
			return false, fmt.Errorf("cancel run: %w", err)
		}
		log.InfoContext(ctx, "cancel requested again")
	}
	return false, nil
}

func failure(st runpod.JobStatus) *pipeline.JobError {
	msg := st.Error
	if msg == "" {
		msg = "the run failed on RunPod without an error message"
	}
	return &pipeline.JobError{Code: "internal", Message: "RunPod reports the run failed: " + msg,
		Advice: "See the job's events for the worker's last report; create the job again once the cause is fixed."}
}

// checked records that RunPod was asked about j's run.
func (r *Reconciler) checked(ctx context.Context, j *pipeline.Job) {
	now := r.now()
	_, _ = pipeline.UpdateJob(ctx, r.Store, j.Owner, j.ID, func(cur *pipeline.Job) error {
		cur.CheckedAt = &now
		return nil
	})
}

// collectArtifacts records adapter files the worker uploaded but whose
// callbacks were lost; it returns what is missing, or "".
func (r *Reconciler) collectArtifacts(ctx context.Context, j *pipeline.Job) string {
	have := map[string]bool{}
	for _, a := range j.Artifacts {
		have[a.Name] = true
	}
	var found []pipeline.Artifact
	for _, name := range []string{contract.ArtifactAdapterConfig, contract.ArtifactAdapterModel} {
		if have[name] {
			continue
		}
		key := httpapi.ArtifactKey(j.Owner, j.ID, j.Attempt, name)
		rc, info, err := r.Blobs.Open(ctx, key)
		if err != nil {
			return fmt.Sprintf("the adapter file %s was never uploaded", name)
		}
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil {
			return fmt.Sprintf("the adapter file %s could not be read: %v", name, err)
		}
		found = append(found, pipeline.Artifact{Name: name, Key: key, SizeBytes: info.Size, SHA256: hex.EncodeToString(h.Sum(nil))})
	}
	if len(found) > 0 {
		_, _ = pipeline.UpdateJob(ctx, r.Store, j.Owner, j.ID, func(cur *pipeline.Job) error {
			cur.Artifacts = append(cur.Artifacts, found...)
			return nil
		})
	}
	return ""
}

// end moves j to a terminal status with its cost; it reports whether it did.
func (r *Reconciler) end(ctx context.Context, j *pipeline.Job, to pipeline.JobStatus, jerr *pipeline.JobError, billedSeconds float64) (bool, error) {
	now := r.now()
	done, err := pipeline.TransitionJob(ctx, r.Store, j.Owner, j.ID, to, func(cur *pipeline.Job) error {
		if cur.Attempt != j.Attempt {
			return pipeline.ErrNoChange
		}
		cur.FinishedAt, cur.UpdatedAt, cur.Stage = &now, now, ""
		if jerr != nil {
			cur.Error = jerr
		}
		c := &pipeline.JobCost{BilledSeconds: math.Ceil(billedSeconds)}
		if cur.Estimate != nil {
			c.PriceUSDPerSecond, c.EstimatedUSD = cur.Estimate.PriceUSDPerSecond, cur.Estimate.CostUSD.Expected
		}
		if c.BilledSeconds == 0 && cur.Cost != nil {
			c.BilledSeconds = cur.Cost.BilledSeconds
		}
		c.USD = math.Round(c.BilledSeconds*c.PriceUSDPerSecond*100) / 100
		if to == pipeline.JobCompleted {
			// Finished no later than now: the duration may be long by up
			// to one reconciliation interval.
			c.CompareWithEstimate(cur, now)
		}
		cur.Cost = c
		return nil
	})
	if pipeline.ErrorCode(err) == pipeline.EPrecondition {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if done.Status != to {
		return false, nil
	}
	r.log().InfoContext(ctx, "job repaired from RunPod's status", "job_id", j.ID, "from", j.Status, "to", to)
	r.event(ctx, done, string(to), "confirmed with RunPod's status")
	switch to {
	case pipeline.JobCompleted:
		r.notify(ctx, done, "job_completed", fmt.Sprintf("Job %s completed, cost $%.2f.", done.ID, done.Cost.USD))
	case pipeline.JobFailed:
		r.notify(ctx, done, "job_failed", fmt.Sprintf("Job %s failed (%s): %s %s", done.ID, jerr.Code, jerr.Message, jerr.Advice))
	}
	return true, nil
}

func (r *Reconciler) event(ctx context.Context, j *pipeline.Job, typ, msg string) {
	if r.JobLog == nil {
		return
	}
	if _, err := r.JobLog.AppendEvent(ctx, pipeline.NewEvent(j, typ, msg, r.now())); err != nil {
		r.log().WarnContext(ctx, "append job event", "job_id", j.ID, "err", err)
	}
}

func (r *Reconciler) notify(ctx context.Context, j *pipeline.Job, typ, msg string) {
	if r.JobLog == nil {
		return
	}
	if err := r.JobLog.CreateNotification(ctx, pipeline.NewNotification(j, typ, msg, r.now())); err != nil {
		r.log().WarnContext(ctx, "store notification", "job_id", j.ID, "err", err)
	}
}
