package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// JobMessage is the body of a jobs queue message.
type JobMessage struct {
	Owner string `json:"owner"`
	JobID string `json:"job_id"`
}

// Enqueue sends the job's message and records on the job that it was sent,
// and when (so that reconciliation knows which stored jobs still need one,
// and which wait for one that is gone).
func (l *Lifecycle) Enqueue(ctx context.Context, j *Job) error {
	_, err := l.send(ctx, j, false)
	return err
}

// send sends j's message; requeue counts it as a message sent again. It
// reports whether the job was still as j says (status and attempt) and
// recorded the message; otherwise the message is a harmless duplicate.
func (l *Lifecycle) send(ctx context.Context, j *Job, requeue bool) (bool, error) {
	if _, err := l.Queue.Send(ctx, jobMessage(j)); err != nil {
		return false, fmt.Errorf("enqueue job %s: %w", j.ID, err)
	}
	moved := false
	updated, err := UpdateJob(ctx, l.Store, j.Owner, j.ID, func(cur *Job) error {
		moved = cur.Status != j.Status || cur.Attempt != j.Attempt
		// A dispatcher may take the message and claim the job before this
		// write: the first message is still recorded as sent (reconciliation
		// reads Enqueued); a resend to a job that moved on is not counted.
		if moved && (requeue || cur.Enqueued) {
			return errMoved
		}
		now := l.now()
		cur.Enqueued, cur.EnqueuedAt, cur.Wait = true, &now, nil
		if requeue {
			cur.Requeues++
		}
		return nil
	})
	if errors.Is(err, errMoved) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("record job %s as enqueued: %w", j.ID, err)
	}
	*j = *updated
	return !moved, nil
}

// jobMessage is j's jobs-queue message.
func jobMessage(j *Job) Message {
	body, _ := json.Marshal(JobMessage{Owner: j.Owner, JobID: j.ID})
	return Message{Body: body, Attributes: map[string]string{"job_id": j.ID}}
}

// RequeuePolicy says when reconciliation sends the message of a job that
// has not reached the GPU provider again.
type RequeuePolicy struct {
	// EnqueueGrace is how long a stored job may wait for its first message
	// (the API sends it right after storing the job). Default 1 min.
	EnqueueGrace time.Duration
	// After is how long a job may wait queued after its message was sent,
	// or dispatching after its claim lapsed, before the message is taken
	// for gone (to the dead-letter queue, expired, purged) and sent again.
	// Default 10 min.
	After time.Duration
	// Max is how many times a job's message is sent again before the job
	// fails. Default 5.
	Max int
	// Fair says fair dispatch runs: a job it holds (Wait) waits for its
	// release. Without it (turned off after holding some), a held job is
	// one whose message was dropped, and is sent again like one never sent.
	Fair bool
}

func (p RequeuePolicy) withDefaults() RequeuePolicy {
	if p.EnqueueGrace <= 0 {
		p.EnqueueGrace = time.Minute
	}
	if p.After <= 0 {
		p.After = 10 * time.Minute
	}
	if p.Max <= 0 {
		p.Max = 5
	}
	return p
}

// Repairs RepairUndispatched makes.
const (
	RepairNone     = ""
	RepairEnqueued = "enqueued" // a stored job got its first message
	RepairRequeued = "requeued" // a job whose message was gone got another
	RepairFailed   = "failed"   // a job whose message was gone too often failed
)

// RepairUndispatched sends the message of a job that waits for one that
// never came or is gone: queued and never enqueued (after EnqueueGrace),
// queued long after its message was sent, or dispatching under a claim
// that lapsed long ago (its dispatcher stopped, and its message is gone
// too). A dispatcher that receives the new message claims the job, or
// takes it over with a new attempt. A job whose message had to be sent
// again Max times fails, so that it does not wait for ever. A duplicate
// message is harmless: the dispatcher drops the message of a job it
// cannot claim.
func (l *Lifecycle) RepairUndispatched(ctx context.Context, j *Job, p RequeuePolicy) (string, error) {
	p = p.withDefaults()
	now := l.now()
	since := j.CreatedAt
	if j.EnqueuedAt != nil {
		since = *j.EnqueuedAt
	}
	switch {
	case j.Status == JobQueued && j.Wait != nil && p.Fair:
		return RepairNone, nil // held by fair dispatch: FairDispatch.Release sends it
	case j.Status == JobQueued && !j.Enqueued:
		if now.Sub(j.CreatedAt) < p.EnqueueGrace {
			return RepairNone, nil
		}
		if sent, err := l.send(ctx, j, false); err != nil || !sent {
			return RepairNone, err
		}
		return RepairEnqueued, nil
	case j.Status == JobQueued:
	case j.Status == JobDispatching:
		lapsed := j.UpdatedAt
		if j.LeaseUntil != nil {
			lapsed = *j.LeaseUntil
		}
		if now.Before(lapsed) {
			return RepairNone, nil // a live claim
		}
		if lapsed.After(since) {
			since = lapsed
		}
	default:
		return RepairNone, nil
	}
	if now.Sub(since) < p.After {
		return RepairNone, nil
	}
	if j.Requeues >= p.Max {
		msg := fmt.Sprintf("the job could not be dispatched: its queue message was sent %d times and lost each time", j.Requeues+1)
		_, ended, err := l.Finish(ctx, j, Outcome{Status: JobFailed, Note: msg, Error: &JobError{Code: "dispatch_failed", Message: msg,
			Advice: "Create the job again; if it recurs, check the dispatch function's logs and the jobs dead-letter queue."}})
		if err != nil || !ended {
			return RepairNone, err
		}
		return RepairFailed, nil
	}
	if sent, err := l.send(ctx, j, true); err != nil || !sent {
		return RepairNone, err
	}
	l.Event(ctx, j, "requeued", fmt.Sprintf("its queue message was gone: sent again (%d of %d)", j.Requeues, p.Max))
	return RepairRequeued, nil
}
