package pipeline

import (
	"context"
	"errors"
	"fmt"
)

// ErrNotDispatchable says a job needs no dispatch (any more): it ended, a
// cancel was asked for, it was submitted already, or the attempt that was
// being dispatched was superseded. The message that asked for it is done.
var ErrNotDispatchable = errors.New("job is not dispatchable")

// Claim takes the owner's job for dispatch: a conditional move to
// dispatching that bumps the attempt, the fencing token every later change
// of this attempt is checked against. A claim of a job left in dispatching
// (a crash before recording) supersedes the earlier attempt. A job that
// needs no dispatch fails with ErrNotDispatchable.
func (l *Lifecycle) Claim(ctx context.Context, owner, id string) (*Job, error) {
	j, err := l.Store.GetJob(ctx, owner, id)
	if err != nil {
		return nil, err
	}
	if j.Status != JobQueued && j.Status != JobDispatching {
		return j, fmt.Errorf("%w: job %s is %s", ErrNotDispatchable, id, j.Status)
	}
	claimed, err := TransitionJob(ctx, l.Store, owner, id, JobDispatching, func(cur *Job) error {
		if cur.Status != JobQueued && cur.Status != JobDispatching {
			return errMoved
		}
		cur.Attempt++
		cur.UpdatedAt = l.now()
		return nil
	})
	if errors.Is(err, errMoved) || ErrorCode(err) == EPrecondition {
		return j, fmt.Errorf("%w: job %s moved on before it was claimed", ErrNotDispatchable, id)
	}
	if err != nil {
		return nil, err
	}
	l.Event(ctx, claimed, "dispatching", fmt.Sprintf("attempt %d submitted to the GPU provider", claimed.Attempt))
	return claimed, nil
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
				j.RunPodID, j.HeartbeatAt, j.UpdatedAt = runID, &now, now
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
			j.RunPodID = runID
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
