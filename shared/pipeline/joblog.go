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
	Attempt         int      `json:"attempt"`
	Step            int      `json:"step"`
	TotalSteps      int      `json:"total_steps"`
	Epoch           float64  `json:"epoch"`
	Loss            float64  `json:"loss"`
	LearningRate    float64  `json:"learning_rate"`
	TokensPerSecond float64  `json:"tokens_per_second"`
	GPUMemoryBytes  int64    `json:"gpu_memory_bytes"`
	EvalLoss        *float64 `json:"eval_loss,omitempty"` // on the steps that evaluated
	// ETASeconds is the worker's estimate of the time left to train.
	ETASeconds *float64  `json:"eta_seconds,omitempty"`
	Time       time.Time `json:"time"`
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
	// PutMeasurement stores what a completed job measured, keyed by its
	// model, GPU, job creation time and job id; a measurement with a
	// stored key replaces it, so a repeat is harmless.
	PutMeasurement(ctx context.Context, m *Measurement) error
	// ListMeasurements returns the latest measurements of a model on a
	// GPU, of every owner, newest job first: at most limit, as Page.Clamp
	// takes it (0: DefaultPageSize; at most MaxPageSize).
	ListMeasurements(ctx context.Context, model, gpu string, limit int) ([]*Measurement, error)
}

// Measurement is what one completed job measured of its model on its GPU
// type: the figures the estimator calibrates its throughput table with,
// once a model × GPU pair has enough of them. Only the figures are ever
// shown to others (as medians), never the job or its owner.
type Measurement struct {
	JobID        string    `json:"job_id"`
	Owner        string    `json:"owner"`
	Model        string    `json:"model"`
	GPU          string    `json:"gpu"`
	Quantization string    `json:"quantization,omitempty"`
	JobCreatedAt time.Time `json:"job_created_at"`
	// MicroBatchTokens is the job spec's token budget per micro-batch.
	MicroBatchTokens int `json:"micro_batch_tokens,omitempty"`
	// MicroBatches and PaddedTokens are the forward/backward passes the
	// worker ran and the padded tokens (rows × padded width) they held,
	// all epochs together.
	MicroBatches int64 `json:"micro_batches"`
	PaddedTokens int64 `json:"padded_tokens"`
	// TrainSeconds is the training passes' time: the training stage's,
	// less the evaluations it ran (EvalSeconds, which the estimate counts
	// apart); SecondsPerMicroBatch is the worker's own figure.
	TrainSeconds         float64 `json:"train_seconds"`
	EvalSeconds          float64 `json:"eval_seconds,omitempty"`
	SecondsPerMicroBatch float64 `json:"seconds_per_micro_batch"`
	// TokensPerSecond is non-padding tokens per training second.
	TokensPerSecond float64 `json:"tokens_per_second"`
	// LoadSeconds is the time the model took to load (0: not reported).
	LoadSeconds float64   `json:"load_seconds"`
	RecordedAt  time.Time `json:"recorded_at"`
}

// Usable reports whether m has the figures a calibration needs.
func (m *Measurement) Usable() bool {
	return m.MicroBatches > 0 && m.PaddedTokens > 0 && m.TrainSeconds > 0
}

// JobScanner finds jobs across owners, for reconciliation.
type JobScanner interface {
	// ListJobsByStatus returns jobs of every owner in a status, each
	// once, in no order a caller may rely on (a store may spread a
	// status over partitions).
	ListJobsByStatus(ctx context.Context, status JobStatus, p Page) ([]*Job, string, error)
}

// JobKey is an unfinished job as fair dispatch plans with it: whose, which,
// in what status, created when, and given its slot when.
type JobKey struct {
	Owner     string
	ID        string
	Status    JobStatus
	CreatedAt time.Time
	ServedAt  *time.Time
}

// JobKeyScanner lists every owner's unfinished jobs of a status by key,
// without their documents (what a plan over thousands of jobs can afford
// on every dispatch), each once, in no order a caller may rely on.
type JobKeyScanner interface {
	ListJobKeys(ctx context.Context, status JobStatus, p Page) ([]JobKey, string, error)
}

// NewEvent returns an event of j's current attempt, stamped now.
func NewEvent(j *Job, typ, msg string, now time.Time) *Event {
	return &Event{ID: NewID("ev", now), Owner: j.Owner, JobID: j.ID, Attempt: j.Attempt, Type: typ, Message: msg, Time: now}
}

// NewNotification returns a notification about j for its owner.
func NewNotification(j *Job, typ, msg string, now time.Time) *Notification {
	return &Notification{ID: NewID("ntf", now), Owner: j.Owner, JobID: j.ID, Type: typ, Message: msg, CreatedAt: now}
}
