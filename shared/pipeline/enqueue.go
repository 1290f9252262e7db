package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
)

// JobMessage is the body of a jobs queue message.
type JobMessage struct {
	Owner string `json:"owner"`
	JobID string `json:"job_id"`
}

// EnqueueJob sends the job's message and records on the job that it was
// sent (so that reconciliation knows which stored jobs still need it).
func EnqueueJob(ctx context.Context, s Store, q Queue, j *Job) error {
	body, _ := json.Marshal(JobMessage{Owner: j.Owner, JobID: j.ID})
	if _, err := q.Send(ctx, Message{Body: body, Attributes: map[string]string{"job_id": j.ID}}); err != nil {
		return fmt.Errorf("enqueue job %s: %w", j.ID, err)
	}
	updated, err := UpdateJob(ctx, s, j.Owner, j.ID, func(cur *Job) error {
		if cur.Enqueued {
			return ErrNoChange
		}
		cur.Enqueued = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("record job %s as enqueued: %w", j.ID, err)
	}
	*j = *updated
	return nil
}
