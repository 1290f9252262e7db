package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Lifecycle is a job's whole life once it is stored: create and enqueue,
// claim and record the run (lifecycle_dispatch.go), apply the worker's
// callbacks (lifecycle_callbacks.go), reconcile with the GPU provider
// (lifecycle_reconcile.go), cancel and finish. The API, the dispatcher and
// reconciliation decode their input, call it and encode its answer; none
// of them changes a job's status itself.
//
// Invariants it keeps:
//   - every change of a job is a conditional write on the job as stored
//     (TransitionJob, UpdateJob), so concurrent writers never lose one
//     another's changes, and a status only moves as CanTransition allows;
//   - the attempt is a fencing token: a change made for one attempt never
//     lands on a job that has moved on to another;
//   - a job ends in one place (Finish): its cost (one formula), its
//     FinishedAt, its event, its owner's notification and its webhook
//     event (Events) are made there.
type Lifecycle struct {
	Store Store
	// JobLog keeps events, notifications and measurements (nil: none kept).
	JobLog JobLog
	// Queue carries jobs to the dispatcher (Create, Enqueue).
	Queue Queue
	// Objects reads uploaded adapter files (callbacks and reconciliation
	// check them).
	Objects ObjectReader
	// URLs hands a running worker fresh presigned URLs and deletes the
	// objects of pruned checkpoints (nil: the worker uses its spec's URLs).
	URLs URLSigner
	// Eraser deletes a job's records (nil: jobs cannot be deleted).
	Eraser JobEraser
	// Runs, when set, cancels a job's run on the GPU provider at once when
	// the job is cancelled; otherwise the worker learns of the cancel from
	// its next callback's answer, and reconciliation cancels the run.
	Runs RunCanceller
	// Ended, when set, is told of every job that Finish ended, after the
	// write (fair dispatch starts the held jobs whose turn came).
	Ended func(ctx context.Context, j *Job)
	// Events, when set, hears of the job's start and end (job.running,
	// job.completed, job.failed, job.cancelled, job.budget_exceeded) for
	// the owner's webhooks; a failure to publish is logged.
	Events EventPublisher
	Log    *slog.Logger
	Now    func() time.Time
}

// ObjectReader reads stored objects.
type ObjectReader interface {
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	Open(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error)
}

// RunCanceller cancels a run on the GPU provider.
type RunCanceller interface {
	CancelRun(ctx context.Context, runID string) error
}

func (l *Lifecycle) now() time.Time {
	if l.Now != nil {
		return l.Now().UTC()
	}
	return time.Now().UTC()
}

func (l *Lifecycle) log() *slog.Logger {
	if l.Log != nil {
		return l.Log
	}
	return slog.Default()
}

// Event appends an event of j's current attempt to its log; a failure is
// logged, never returned: the event log is a record, not a part of the
// state machine.
func (l *Lifecycle) Event(ctx context.Context, j *Job, typ, msg string) {
	l.appendEvent(ctx, NewEvent(j, typ, msg, l.now()))
}

func (l *Lifecycle) appendEvent(ctx context.Context, e *Event) {
	if l.JobLog == nil {
		return
	}
	if _, err := l.JobLog.AppendEvent(ctx, e); err != nil {
		l.log().WarnContext(ctx, "append job event", "job_id", e.JobID, "type", e.Type, "err", err)
	}
}

// notify records a notification for j's owner; a failure is logged.
func (l *Lifecycle) notify(ctx context.Context, j *Job, typ, msg string) {
	if l.JobLog == nil {
		return
	}
	if err := l.JobLog.CreateNotification(ctx, NewNotification(j, typ, msg, l.now())); err != nil {
		l.log().WarnContext(ctx, "store notification", "job_id", j.ID, "type", typ, "err", err)
	}
}

// errMoved ends a change whose decision was made on a job that changed
// before the write.
var errMoved = errors.New("job moved on")

// Create stores a new queued job, logs its creation and enqueues it. Store
// first, then queue: a job stored but not enqueued (the send failed, or
// the process died in between) is enqueued by reconciliation, so a failed
// send is logged, not returned. A job with an IdempotencyKey whose id is
// taken is a replay: the stored job is returned with replayed set when its
// RequestHash is j's, and EConflict otherwise.
func (l *Lifecycle) Create(ctx context.Context, j *Job) (created *Job, replayed bool, err error) {
	if err := l.Store.CreateJob(ctx, j); err != nil {
		if ErrorCode(err) == EConflict && j.IdempotencyKey != "" {
			// A concurrent request with the same key won the create.
			existing, err := l.Replay(ctx, j.Owner, j.IdempotencyKey, j.RequestHash)
			return existing, err == nil, err
		}
		return nil, false, fmt.Errorf("store job: %w", err)
	}
	msg := "job created on " + j.GPUType
	if j.Estimate != nil {
		msg += fmt.Sprintf(", estimated $%.2f–$%.2f", j.Estimate.CostUSD.Low, j.Estimate.CostUSD.High)
	}
	l.Event(ctx, j, "created", msg)
	if err := l.Enqueue(ctx, j); err != nil {
		l.log().WarnContext(ctx, "job stored but not enqueued: reconciliation will enqueue it", "job_id", j.ID, "err", err)
	}
	return j, false, nil
}

// Replay returns the owner's job made with an Idempotency-Key: ENotFound
// when there is none, EConflict when the key was used for another request
// (another RequestHash).
func (l *Lifecycle) Replay(ctx context.Context, owner, key, requestHash string) (*Job, error) {
	j, err := l.Store.GetJob(ctx, owner, IdempotentJobID(owner, key))
	if err != nil {
		return nil, err
	}
	if j.RequestHash != requestHash {
		return nil, &Error{Code: EConflict,
			Message: "this Idempotency-Key was used for another request: use a new key for a new job",
			Details: map[string]string{"job_id": j.ID}}
	}
	return j, nil
}

// Cancel cancels the owner's job: a queued job at once (it is never
// dispatched), a dispatched one by asking its worker to stop
// (cancel_requested until the worker or the GPU provider confirms).
// Cancelling twice, or a finished job, is not an error: the answer is the
// job as it is.
func (l *Lifecycle) Cancel(ctx context.Context, owner, id string) (*Job, error) {
	j, err := l.Store.GetJob(ctx, owner, id)
	if err != nil {
		return nil, err
	}
	for try := 0; try < 5 && !j.Status.Terminal() && j.Status != JobCancelRequested; try++ {
		var moved *Job
		var err error
		if j.Status == JobQueued {
			var ended bool
			moved, ended, err = l.Finish(ctx, j, Outcome{Status: JobCancelled, From: JobQueued, Note: "cancelled by the user"})
			if err == nil && !ended {
				err = errMoved
			}
		} else {
			from := j.Status
			moved, err = TransitionJob(ctx, l.Store, owner, j.ID, JobCancelRequested, func(cur *Job) error {
				if cur.Status != from {
					return errMoved
				}
				cur.UpdatedAt = l.now()
				return nil
			})
			if err == nil {
				l.Event(ctx, moved, string(JobCancelRequested), "cancelled by the user")
			}
		}
		if err == nil {
			j = moved
			break
		}
		if ErrorCode(err) != EPrecondition && !errors.Is(err, errMoved) {
			return nil, err
		}
		// The job moved meanwhile (e.g. queued → dispatching): try again from where it is.
		if j, err = l.Store.GetJob(ctx, owner, j.ID); err != nil {
			return nil, err
		}
	}
	if !j.Status.Terminal() && j.Status != JobCancelRequested {
		return nil, Errorf(EUnavailable, "job %s kept changing while it was being cancelled: try again", j.ID)
	}
	if j.Status == JobCancelRequested && j.RunPodID != "" && l.Runs != nil {
		if err := l.Runs.CancelRun(ctx, j.RunPodID); err != nil {
			// The worker also learns of the cancel from its next callback's
			// answer, and reconciliation retries: the request still stands.
			l.log().WarnContext(ctx, "cancel on the GPU provider failed", "job_id", j.ID, "run_id", j.RunPodID, "err", err)
		}
	}
	return j, nil
}

// WorkerShouldStop reports whether j's worker should stop: the job was
// cancelled, a cancel was asked for, or it failed.
func (j *Job) WorkerShouldStop() bool {
	return j.Status == JobCancelRequested || j.Status == JobCancelled || j.Status == JobFailed
}

// Outcome is how a job ends.
type Outcome struct {
	// Status is JobCompleted, JobFailed or JobCancelled.
	Status JobStatus
	// Error is why a failed job failed.
	Error *JobError
	// Run is what the GPU provider reported of the run, when the end was
	// confirmed with it: its times are what the job is billed.
	Run *RunReport
	// Steps and FinalLoss, when known, go into the completion notice.
	Steps     *int64
	FinalLoss *float64
	// Note, when set, is logged as an event of the job's new status. A
	// caller that logs its own record of the end (a worker callback) leaves
	// it empty.
	Note string
	// From, when set, ends the job only if it is still in that status.
	From JobStatus
	// RunID records the run's id on a job that has none yet.
	RunID string
	// Heartbeat records that the job was heard of (a worker callback).
	Heartbeat bool
}

// Finish ends j's attempt as o says, with one conditional write: the
// status, FinishedAt, the cost (Cost) and, for a completed job, the
// comparison with its estimate. Then the event (o.Note) and the owner's
// notification (completed and failed jobs). It reports whether this call
// ended the job; a job that already ended, moved to another attempt, or
// that the state machine does not let become o.Status is returned as it
// is, with false and no error.
func (l *Lifecycle) Finish(ctx context.Context, j *Job, o Outcome) (*Job, bool, error) {
	var now time.Time
	done, err := TransitionJob(ctx, l.Store, j.Owner, j.ID, o.Status, func(cur *Job) error {
		if cur.Attempt != j.Attempt || o.From != "" && cur.Status != o.From {
			return errMoved
		}
		now = l.now()
		cur.FinishedAt, cur.UpdatedAt, cur.Stage = &now, now, ""
		if o.Heartbeat {
			cur.HeartbeatAt = &now
		}
		if o.Error != nil {
			cur.Error = o.Error
		}
		if o.RunID != "" && cur.RunPodID == "" {
			cur.RunPodID = o.RunID
		}
		if o.Run != nil {
			cur.reportRun(*o.Run, now)
		}
		cur.Status = o.Status
		cur.recost(now)
		return nil
	})
	if ErrorCode(err) == EPrecondition || errors.Is(err, errMoved) {
		cur, gerr := l.Store.GetJob(ctx, j.Owner, j.ID)
		if gerr != nil {
			return nil, false, gerr
		}
		return cur, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if o.Note != "" {
		l.Event(ctx, done, string(o.Status), o.Note)
	}
	switch o.Status {
	case JobCompleted:
		l.notify(ctx, done, "job_completed", completedNotice(done, o.Steps, o.FinalLoss))
	case JobFailed:
		l.notify(ctx, done, "job_failed", failedNotice(done))
	}
	l.publish(ctx, endEvents[o.Status], done)
	if l.Ended != nil {
		l.Ended(ctx, done)
	}
	return done, true, nil
}

// OverBudget reports whether j has spent more than its budget and no
// cancel was asked for yet.
func OverBudget(j *Job, now time.Time) bool {
	return j.BudgetUSD != nil && Spent(j, now) > *j.BudgetUSD && j.Status != JobCancelRequested
}

// displayName is how notices name j: its name and id, or its id.
func (j *Job) displayName() string {
	if j.Name != "" {
		return fmt.Sprintf("%q (%s)", j.Name, j.ID)
	}
	return j.ID
}

// completedNotice is the one completion notice, with the run's figures
// when the worker reported them.
func completedNotice(j *Job, steps *int64, loss *float64) string {
	usd := 0.0
	if j.Cost != nil {
		usd = j.Cost.USD
	}
	if steps == nil {
		return fmt.Sprintf("Job %s completed, cost $%.2f.", j.displayName(), usd)
	}
	lossText := "n/a"
	if loss != nil {
		lossText = fmt.Sprintf("%.4f", *loss)
	}
	return fmt.Sprintf("Job %s completed: %d steps, final loss %s, cost $%.2f.", j.displayName(), *steps, lossText, usd)
}

// failedNotice is the one failure notice.
func failedNotice(j *Job) string {
	if j.Error == nil {
		return fmt.Sprintf("Job %s failed.", j.displayName())
	}
	return fmt.Sprintf("Job %s failed (%s): %s %s", j.displayName(), j.Error.Code, j.Error.Message, j.Error.Advice)
}
