package pipeline

import (
	"math"
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
// (dispatching → dispatching, or submitted → dispatching), which always
// comes with a new attempt number. Lifecycle.Claim takes only the first:
// the takeover of a claim that lapsed. Once a cancel is requested
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
	// Enqueued is set once the job's message was accepted by the queue;
	// EnqueuedAt is when it was last sent, and Requeues counts the times
	// reconciliation sent it again because the first was gone.
	Enqueued   bool       `json:"enqueued"`
	EnqueuedAt *time.Time `json:"enqueued_at,omitempty"`
	Requeues   int        `json:"requeues,omitempty"`
	// Wait is set while fair dispatch holds the queued job back (its
	// owner's limit, no free GPU slot, other owners' turns): where it
	// stands and why. Its message is dropped meanwhile (Enqueued is
	// false), and FairDispatch.Release sends it again when its turn comes.
	Wait *JobWait `json:"wait,omitempty"`
	// ServedAt is when dispatch last gave the job a GPU slot (its latest
	// claim): when its owner was last served, as fair dispatch counts.
	ServedAt *time.Time `json:"served_at,omitempty"`
	// LeaseUntil is when the dispatcher's claim of the current attempt
	// lapses. Until then the job is that dispatcher's: another delivery of
	// its message leaves it alone. A dispatcher that stopped (crashed,
	// timed out) without recording a run is taken over after it, with a
	// new attempt. Set while the job is dispatching.
	LeaseUntil *time.Time `json:"lease_until,omitempty"`
	// IdempotencyKey is the key the job was created with, if any.
	IdempotencyKey string    `json:"idempotency_key,omitempty"`
	RequestHash    string    `json:"request_hash,omitempty"`
	Error          *JobError `json:"error,omitempty"`
	// Validation is how the job evaluates its adapter: nil takes the
	// default held-out share of its dataset.
	Validation *JobValidation `json:"validation,omitempty"`
	// Estimate is what the job was expected to take and cost when created.
	Estimate *JobEstimate `json:"estimate,omitempty"`
	// Progress is the latest metric point reported.
	Progress *MetricPoint `json:"progress,omitempty"`
	// Stage is the worker's current stage (download, load, train, save, upload).
	Stage string `json:"stage,omitempty"`
	// RunKey names the run of the current attempt whose started callback
	// was applied last (a hash of that callback), and RunStartedAt is when
	// the worker sent it: a repeat of that callback is recognised, and
	// the callbacks of a run that RunPod replaced (a crashed worker, re-run
	// with the same attempt) are told from the new run's.
	RunKey       string     `json:"run_key,omitempty"`
	RunStartedAt *time.Time `json:"run_started_at,omitempty"`
	Artifacts    []Artifact `json:"artifacts,omitempty"`
	// Checkpoints are the job's stored checkpoints (the last
	// KeepCheckpoints), by step: a re-dispatched attempt resumes from the
	// last one.
	Checkpoints []Checkpoint `json:"checkpoints,omitempty"`
	// Runs are the job's runs on GPU workers, every attempt's: what it
	// is billed for.
	Runs []Run `json:"runs,omitempty"`
	// Cost is the actual cost, recorded when the job ends (and settled
	// with RunPod's figures when they come after).
	Cost *JobCost `json:"cost,omitempty"`
	// HeartbeatAt is when the last callback or status check heard of the job.
	HeartbeatAt *time.Time `json:"heartbeat_at,omitempty"`
	// CheckedAt is when reconciliation last asked the GPU provider.
	CheckedAt  *time.Time `json:"checked_at,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	Version    int64      `json:"version"`
}

// Range is a low / expected / high figure.
type Range struct {
	Low      float64 `json:"low"`
	Expected float64 `json:"expected"`
	High     float64 `json:"high"`
}

// JobEstimate is the part of an estimate a job keeps.
type JobEstimate struct {
	GPU               string  `json:"gpu"`
	PriceUSDPerSecond float64 `json:"price_usd_per_second"`
	TotalSteps        int     `json:"total_steps"`
	// MicroBatchTokens is the token budget per micro-batch the estimator
	// chose for the job's GPU; the dispatcher puts it in the job spec.
	// 0 for a job estimated before it existed.
	MicroBatchTokens        int    `json:"micro_batch_tokens,omitempty"`
	DurationSeconds         Range  `json:"duration_seconds"`
	CostUSD                 Range  `json:"cost_usd"`
	ExecutionTimeoutSeconds int64  `json:"execution_timeout_seconds"`
	PricesDate              string `json:"prices_date"`
	EstimatorVersion        string `json:"estimator_version"`
	// Evaluation is the held-out evaluation the estimate includes; nil
	// when the job holds nothing out.
	Evaluation *EvaluationEstimate `json:"evaluation,omitempty"`
}

// JobValidation is how a job evaluates: a held-out share of its own
// dataset (Split; nil takes the worker's default, the same one the
// estimate counts) or a second ready dataset of its owner (DatasetID),
// never both.
type JobValidation struct {
	Split     *float64 `json:"split,omitempty"`
	DatasetID string   `json:"dataset_id,omitempty"`
}

// Artifact is one file of a trained adapter.
type Artifact struct {
	Name      string `json:"name"`
	Key       string `json:"key"`
	SizeBytes int64  `json:"size_bytes"`
	SHA256    string `json:"sha256"`
}

// JobCost is what a job actually cost and took, beside its estimate.
type JobCost struct {
	// BilledSeconds sums the billed time of every run of every attempt
	// (Run.Billed): RunPod's execution time of each, the handler's time.
	// RunPod also bills a flex worker's container start before the handler
	// and its idle timeout after (seconds each, a few per run); those are
	// not in it. Source says whether RunPod reported all of it.
	BilledSeconds     float64 `json:"billed_seconds"`
	PriceUSDPerSecond float64 `json:"price_usd_per_second"`
	USD               float64 `json:"usd"`
	EstimatedUSD      float64 `json:"estimated_usd"`
	Source            string  `json:"source,omitempty"`
	Runs              int     `json:"runs,omitempty"`
	// DelaySeconds sums RunPod's delay times: queue wait and cold start
	// before each run's handler. Not billed (a flex worker is billed from
	// when it starts; the queue is free), shown for what it cost in time.
	DelaySeconds float64 `json:"delay_seconds,omitempty"`
	// For a completed job only (a failed or cancelled one stopped short):
	// DurationSeconds is from creation to completion, the span the
	// estimate's duration covers; EstimatedDurationSeconds is the
	// estimate's expected duration; the errors are (estimated − actual) /
	// actual, positive when the estimate was too high.
	DurationSeconds          float64  `json:"duration_seconds,omitempty"`
	EstimatedDurationSeconds float64  `json:"estimated_duration_seconds,omitempty"`
	DurationError            *float64 `json:"duration_error,omitempty"`
	CostError                *float64 `json:"cost_error,omitempty"`
	// DurationInRange is whether the actual duration lies within the
	// estimate's low–high range.
	DurationInRange *bool `json:"duration_in_range,omitempty"`
}

// CompareWithEstimate fills in c's duration and the estimate's errors for a
// job completed at finished: what the estimator's error is measured by.
// It does nothing without an estimate.
func (c *JobCost) CompareWithEstimate(j *Job, finished time.Time) {
	if j.Estimate == nil {
		return
	}
	est := j.Estimate.DurationSeconds
	c.DurationSeconds = math.Round(finished.Sub(j.CreatedAt).Seconds()*10) / 10
	c.EstimatedDurationSeconds = est.Expected
	if c.DurationSeconds > 0 {
		e := relativeError(est.Expected, c.DurationSeconds)
		in := c.DurationSeconds >= est.Low && c.DurationSeconds <= est.High
		c.DurationError, c.DurationInRange = &e, &in
	}
	if c.USD > 0 {
		e := relativeError(c.EstimatedUSD, c.USD)
		c.CostError = &e
	}
}

// relativeError is (estimated − actual) / actual, to three decimals.
func relativeError(estimated, actual float64) float64 {
	return math.Round((estimated-actual)/actual*1000) / 1000
}

// JobError is why a job failed, classified, with advice for the user.
type JobError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Advice  string `json:"advice,omitempty"`
}
