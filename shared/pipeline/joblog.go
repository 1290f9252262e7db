package pipeline

import (
	"context"
	"encoding/json"
	"time"
)

// Event is one entry of a job's log: a state change, a stage, a warning.
// ID is unique per job; writing an ID twice is a no-op, which is how
// duplicate callbacks are recognised.
type Event struct {
	ID      string          `json:"id"`
	Owner   string          `json:"owner,omitempty"`
	JobID   string          `json:"job_id"`
	Attempt int             `json:"attempt"`
	Type    string          `json:"type"`
	Message string          `json:"message,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
	Time    time.Time       `json:"time"`
}

// MetricPoint is one training measurement, keyed by its step.
type MetricPoint struct {
	Attempt         int       `json:"attempt"`
	Step            int       `json:"step"`
	TotalSteps      int       `json:"total_steps"`
	Epoch           float64   `json:"epoch"`
	Loss            float64   `json:"loss"`
	LearningRate    float64   `json:"learning_rate"`
	TokensPerSecond float64   `json:"tokens_per_second"`
	GPUMemoryBytes  int64     `json:"gpu_memory_bytes"`
	Time            time.Time `json:"time"`
}

// Notification tells a user something happened (a job completed, failed,
// passed its budget).
type Notification struct {
	ID        string    `json:"id"`
	Owner     string    `json:"owner,omitempty"`
	JobID     string    `json:"job_id,omitempty"`
	Type      string    `json:"type"`
	Message   string    `json:"message"`
	CreatedAt time.Time `json:"created_at"`
}

// JobLog keeps what accumulates around a job: its events, its metric
// points and its owner's notifications. It is a separate port from Store
// because only the webhook, the jobs API and reconciliation use it.
type JobLog interface {
	// AppendEvent stores e unless an event with its ID exists for the job;
	// it reports whether e was new.
	AppendEvent(ctx context.Context, e *Event) (bool, error)
	// ListEvents returns a job's events oldest first.
	ListEvents(ctx context.Context, owner, jobID string, p Page) ([]*Event, string, error)
	// PutMetrics stores points by (attempt, step); a point for a stored
	// (attempt, step) replaces it, so a duplicate is harmless.
	PutMetrics(ctx context.Context, owner, jobID string, pts []MetricPoint) error
	// ListMetrics returns a job's points by attempt, then step.
	ListMetrics(ctx context.Context, owner, jobID string, p Page) ([]MetricPoint, string, error)
	CreateNotification(ctx context.Context, n *Notification) error
	// ListNotifications returns an owner's notifications newest first.
	ListNotifications(ctx context.Context, owner string, p Page) ([]*Notification, string, error)
}

// JobScanner finds jobs across owners, for reconciliation.
type JobScanner interface {
	// ListJobsByStatus returns jobs of every owner in a status, oldest first.
	ListJobsByStatus(ctx context.Context, status JobStatus, p Page) ([]*Job, string, error)
}

// NewEvent returns an event of j's current attempt, stamped now.
func NewEvent(j *Job, typ, msg string, now time.Time) *Event {
	return &Event{ID: NewID("ev", now), Owner: j.Owner, JobID: j.ID, Attempt: j.Attempt, Type: typ, Message: msg, Time: now}
}

// NewNotification returns a notification about j for its owner.
func NewNotification(j *Job, typ, msg string, now time.Time) *Notification {
	return &Notification{ID: NewID("ntf", now), Owner: j.Owner, JobID: j.ID, Type: typ, Message: msg, CreatedAt: now}
}
