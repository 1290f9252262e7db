package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrNotDispatchable says a job needs no dispatch (any more): it ended, a
// cancel was asked for, it was submitted already, or the attempt that was
// being dispatched was superseded. The message that asked for it is done.
var ErrNotDispatchable = errors.New("job is not dispatchable")

// ErrLeaseHeld says another dispatcher holds a live claim on the job: the
// message that asked for it must come back later (LeaseHeldError says
// when the claim lapses).
var ErrLeaseHeld = errors.New("job is being dispatched under another claim")

// LeaseHeldError is ErrLeaseHeld with the end of the claim.
type LeaseHeldError struct {
	JobID   string
	Attempt int
	Until   time.Time
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("job %s is being dispatched as attempt %d under a claim until %s", e.JobID, e.Attempt, e.Until.Format(time.RFC3339))
}

func (e *LeaseHeldError) Unwrap() error { return ErrLeaseHeld }

// DefaultLease is how long a claim lasts when the caller gives none: more
// than a dispatch can take (the dispatch function's timeout is 2 minutes).
const DefaultLease = 3 * time.Minute

// Claim takes the owner's job for dispatch, for lease: a conditional move
// from queued to dispatching that bumps the attempt (the fencing token
// every later change of the attempt is checked against) and holds the job
// until the lease lapses. A job dispatching under a live lease is another
// dispatcher's: Claim fails with a *LeaseHeldError (ErrLeaseHeld). A job
// left dispatching under a lapsed or released lease (its dispatcher
// stopped before recording a run) is taken over with a new attempt, which
// supersedes the earlier one. A job that needs no dispatch fails with
// ErrNotDispatchable.
func (l *Lifecycle) Claim(ctx context.Context, owner, id string, lease time.Duration) (*Job, error) {
	if lease <= 0 {
		lease = DefaultLease
	}
	j, err := l.Store.GetJob(ctx, owner, id)
	if err != nil {
		return nil, err
	}
	var from *Job
	claimed, err := TransitionJob(ctx, l.Store, owner, id, JobDispatching, func(cur *Job) error {
		now := l.now()
		switch {
		case cur.Status == JobDispatching && cur.LeaseUntil != nil && now.Before(*cur.LeaseUntil):
			return &LeaseHeldError{JobID: id, Attempt: cur.Attempt, Until: *cur.LeaseUntil}
		case cur.Status != JobQueued && cur.Status != JobDispatching:
			return fmt.Errorf("%w: job %s is %s", ErrNotDispatchable, id, cur.Status)
		}
		prev := *cur
		from = &prev
		until := now.Add(lease)
		cur.Attempt++
		cur.LeaseUntil, cur.UpdatedAt, cur.Wait, cur.ServedAt = &until, now, nil, &now
		return nil
	})
	switch {
	case errors.Is(err, ErrLeaseHeld), errors.Is(err, ErrNotDispatchable):
		return j, err
	case ErrorCode(err) == EPrecondition:
		return j, fmt.Errorf("%w: job %s moved on before it was claimed", ErrNotDispatchable, id)
	case err != nil:
		return nil, err
	}
	msg := fmt.Sprintf("attempt %d submitted to the GPU provider", claimed.Attempt)
	if from.Status == JobDispatching {
		msg = fmt.Sprintf("attempt %d takes over from attempt %d, whose dispatcher stopped before recording a run", claimed.Attempt, from.Attempt)
	}
	l.Event(ctx, claimed, "dispatching", msg)
	return claimed, nil
}

// ReleaseClaim gives up the claimed attempt's lease, so that the next
// delivery of the job's message claims it at once (after a failed
// submission that is retried).
func (l *Lifecycle) ReleaseClaim(ctx context.Context, claimed *Job) error {
	_, err := UpdateJob(ctx, l.Store, claimed.Owner, claimed.ID, func(cur *Job) error {
		if cur.Status != JobDispatching || cur.Attempt != claimed.Attempt || cur.LeaseUntil == nil {
			return ErrNoChange
		}
		cur.LeaseUntil, cur.UpdatedAt = nil, l.now()
		return nil
	})
	if err != nil {
		return fmt.Errorf("release the claim of job %s: %w", claimed.ID, err)
	}
	return nil
}

// RecordRun stores the run id of the claimed attempt: dispatching →
// submitted, or, when the worker's first callbacks came first, on the job
// as it is. When the job was cancelled meanwhile it ends cancelled with
// the run's id, and when the attempt was superseded it is left alone; both
// fail with ErrNotDispatchable, and the caller cancels the run it started.
func (l *Lifecycle) RecordRun(ctx context.Context, claimed *Job, runID string) (*Job, error) {
	for try := 0; try < 10; try++ {
		cur, err := l.Store.GetJob(ctx, claimed.Owner, claimed.ID)
		if err != nil {
			return nil, err
		}
		if cur.Attempt != claimed.Attempt {
			return nil, fmt.Errorf("%w: attempt %d of job %s was superseded by attempt %d", ErrNotDispatchable, claimed.Attempt, claimed.ID, cur.Attempt)
		}
		if cur.Status == JobCancelRequested || cur.Status == JobCancelled {
			if cur.Status == JobCancelRequested {
				if _, _, err := l.Finish(ctx, cur, Outcome{Status: JobCancelled, RunID: runID, Note: "cancelled while it was being submitted"}); err != nil {
					return nil, err
				}
			}
			return nil, fmt.Errorf("%w: job %s was cancelled while it was submitted", ErrNotDispatchable, claimed.ID)
		}
		now := l.now()
		if cur.Status == JobDispatching {
			rec, err := TransitionJob(ctx, l.Store, cur.Owner, cur.ID, JobSubmitted, func(j *Job) error {
				if j.Status != JobDispatching || j.Attempt != claimed.Attempt {
					return errMoved
				}
				j.RunPodID, j.HeartbeatAt, j.UpdatedAt, j.LeaseUntil = runID, &now, now, nil
				return nil
			})
			if errors.Is(err, errMoved) || ErrorCode(err) == EPrecondition {
				continue
			}
			if err != nil {
				return nil, err
			}
			l.Event(ctx, rec, "submitted", "submitted to RunPod as "+runID)
			return rec, nil
		}
		rec, err := UpdateJob(ctx, l.Store, cur.Owner, cur.ID, func(j *Job) error {
			if j.Attempt != claimed.Attempt {
				return errMoved
			}
			if j.RunPodID != "" {
				return ErrNoChange
			}
			j.RunPodID, j.LeaseUntil = runID, nil
			return nil
		})
		if errors.Is(err, errMoved) {
			continue
		}
		if err != nil {
			return nil, err
		}
		l.Event(ctx, rec, "submitted", "submitted to RunPod as "+runID)
		return rec, nil
	}
	return nil, Errorf(EUnavailable, "job %s kept changing while its run was recorded", claimed.ID)
}

// DispatchFailed ends the claimed attempt's job as failed: it could not be
// submitted, for reason.
func (l *Lifecycle) DispatchFailed(ctx context.Context, claimed *Job, reason string) error {
	_, _, err := l.Finish(ctx, claimed, Outcome{Status: JobFailed, Note: reason, Error: &JobError{Code: "dispatch_failed", Message: reason,
		Advice: "Create the job again later; if it keeps failing, check the RunPod endpoint and API key."}})
	return err
}
