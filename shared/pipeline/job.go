package pipeline

import (
	"time"
)

// JobStatus is a training job's place in the state machine:
//
//	queued → dispatching → submitted → running → uploading → completed
//
// and from any non-terminal state failed or cancelled (cancel_requested
// while a worker winds down). Terminal states are absorbing.
type JobStatus string

const (
	JobQueued          JobStatus = "queued"
	JobDispatching     JobStatus = "dispatching"
	JobSubmitted       JobStatus = "submitted"
	JobRunning         JobStatus = "running"
	JobUploading       JobStatus = "uploading"
	JobCompleted       JobStatus = "completed"
	JobFailed          JobStatus = "failed"
	JobCancelRequested JobStatus = "cancel_requested"
	JobCancelled       JobStatus = "cancelled"
)

// JobStatuses lists every status, in state-machine order.
var JobStatuses = []JobStatus{
	JobQueued, JobDispatching, JobSubmitted, JobRunning, JobUploading,
	JobCompleted, JobFailed, JobCancelRequested, JobCancelled,
}

// forward is the rank of each status on the happy path.
var forward = map[JobStatus]int{
	JobQueued: 1, JobDispatching: 2, JobSubmitted: 3, JobRunning: 4, JobUploading: 5, JobCompleted: 6,
}

// Terminal reports whether s is absorbing.
func (s JobStatus) Terminal() bool {
	return s == JobCompleted || s == JobFailed || s == JobCancelled
}

// Valid reports whether s is a known status.
func (s JobStatus) Valid() bool {
	for _, v := range JobStatuses {
		if v == s {
			return true
		}
	}
	return false
}

// CanTransition reports whether a job may move from one status to another.
// Moves along the happy path may skip states (a missed callback must not
// strand a job) but never go back; the one exception is a re-claim
// (dispatching → dispatching, or submitted → dispatching) by the dispatcher,
// which always comes with a new attempt number. Once a cancel is requested
// the job can only end: cancelled, failed, or completed if the worker had
// already finished.
func CanTransition(from, to JobStatus) bool {
	if from.Terminal() || !to.Valid() {
		return false
	}
	switch to {
	case JobFailed, JobCancelled:
		return true
	case JobCancelRequested:
		return from != JobCancelRequested
	}
	if from == JobCancelRequested {
		return to == JobCompleted
	}
	if to == JobDispatching && (from == JobDispatching || from == JobSubmitted) {
		return true
	}
	return forward[to] > forward[from]
}

// Job is one training run of a base model on a dataset.
type Job struct {
	ID              string          `json:"id"`
	Owner           string          `json:"owner"`
	Name            string          `json:"name,omitempty"`
	DatasetID       string          `json:"dataset_id"`
	BaseModel       string          `json:"base_model"`
	GPUType         string          `json:"gpu_type"`
	Preset          string          `json:"preset"`
	Hyperparameters Hyperparameters `json:"hyperparameters"`
	Status          JobStatus       `json:"status"`
	// Attempt counts dispatches; callbacks carrying an older attempt are
	// refused (a fencing token).
	Attempt int `json:"attempt"`
	// RunPodID is the RunPod job id of the current attempt.
	RunPodID  string   `json:"runpod_id,omitempty"`
	BudgetUSD *float64 `json:"budget_usd,omitempty"`
	// Enqueued is set once the job's message was accepted by the queue.
	Enqueued bool `json:"enqueued"`
	// IdempotencyKey is the key the job was created with, if any.
	IdempotencyKey string    `json:"idempotency_key,omitempty"`
	RequestHash    string    `json:"request_hash,omitempty"`
	Error          *JobError `json:"error,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
	Version        int64     `json:"version"`
}

// JobError is why a job failed, classified, with advice for the user.
type JobError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Advice  string `json:"advice,omitempty"`
}
