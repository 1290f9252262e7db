// Package runpod is a small net/http client for the RunPod Serverless job
// API (queue-based endpoints): /run, /status, /cancel, /retry,
// /purge-queue and /health under https://api.runpod.ai/v2/{endpoint_id}.
// RunPod's own Go SDK is unmaintained, and a dozen lines per operation are
// easier to hold to the documented semantics.
//
// What was checked against RunPod's documentation (docs.runpod.io,
// "Send API requests" and "Operation reference", and RunPod's docs
// repository, late 2026):
//
//   - Authentication is "Authorization: Bearer <key>".
//   - POST /run takes {"input", "webhook", "policy": {"executionTimeout",
//     "ttl", "lowPriority"}}, times in milliseconds, and answers
//     {"id", "status": "IN_QUEUE"}; the payload limit is 10 MB.
//   - executionTimeout defaults to 600 000 ms (10 minutes) and must be over
//     5 s, at most 7 days; ttl defaults to 24 h, at least 10 s, at most
//     7 days, and counts from submission: when it runs out the job is
//     deleted whatever its state, so it must cover queue time plus
//     execution.
//   - GET /status/{id} answers {id, status, delayTime, executionTime,
//     output, ...}; async results are kept 30 minutes after completion.
//   - Statuses IN_QUEUE, IN_PROGRESS, RUNNING (documented in "job states"),
//     COMPLETED, FAILED, CANCELLED, TIMED_OUT.
//   - POST /cancel/{id} answers {id, status: "CANCELLED"}; POST /retry/{id}
//     re-queues a FAILED or TIMED_OUT job under the same id; POST
//     /purge-queue answers {removed, status: "completed"}; GET /health
//     answers {jobs: {completed, failed, inProgress, inQueue, retried},
//     workers: {idle, running}}.
//   - Rate limits per endpoint per 10 s: /run 1000, /status 2000, /cancel
//     100, /purge-queue 2; beyond them (or with a very long queue) HTTP 429.
//     Errors: 400 bad request, 401 unauthorized, 404 not found, 429, 500.
//
// Assumptions (not documented): the shape of error bodies (read as
// {"error": "..."} or {"message": "..."}, else the raw text), whether 429
// carries Retry-After (honoured when present), that 429 and 503 answers
// of /run never created a job, and that /status of an unknown or expired
// job answers 404.
package runpod

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// DefaultBaseURL is RunPod's job API.
const DefaultBaseURL = "https://api.runpod.ai/v2"

// ResultRetention is how long RunPod keeps the result of a /run job after
// it ends; /status answers 404 afterwards.
const ResultRetention = 30 * time.Minute

// Policy limits (RunPod's documentation).
const (
	MinExecutionTimeout     = 5 * time.Second
	MaxExecutionTimeout     = 7 * 24 * time.Hour
	DefaultExecutionTimeout = 10 * time.Minute // what RunPod applies when none is sent: never rely on it
	MinTTL                  = 10 * time.Second
	MaxTTL                  = 7 * 24 * time.Hour
	DefaultTTL              = 24 * time.Hour
	MaxPayloadBytes         = 10 << 20
)

// Status is a RunPod job status.
type Status string

// RunPod job statuses.
const (
	StatusInQueue    Status = "IN_QUEUE"
	StatusInProgress Status = "IN_PROGRESS"
	StatusRunning    Status = "RUNNING" // listed by RunPod's job states; treated like IN_PROGRESS
	StatusCompleted  Status = "COMPLETED"
	StatusFailed     Status = "FAILED"
	StatusCancelled  Status = "CANCELLED"
	StatusTimedOut   Status = "TIMED_OUT"
)

// Terminal reports whether s is a final status.
func (s Status) Terminal() bool {
	switch s {
	case StatusCompleted, StatusFailed, StatusCancelled, StatusTimedOut:
		return true
	}
	return false
}

// Policy is a job's execution policy. ExecutionTimeout is required: RunPod's
// default of 10 minutes would kill any training job. A zero TTL means
// RunPod's default (24 h); either way the TTL must cover the execution
// timeout (plus the time the job may wait in the queue).
type Policy struct {
	ExecutionTimeout time.Duration
	TTL              time.Duration
	LowPriority      bool // the job does not make RunPod scale workers up
}

// Validate checks p against RunPod's limits and this package's rules.
func (p Policy) Validate() error {
	switch {
	case p.ExecutionTimeout <= 0:
		return fmt.Errorf("%w: an execution timeout is required (RunPod's default of %s would kill a training job)", ErrInvalidPolicy, DefaultExecutionTimeout)
	case p.ExecutionTimeout <= MinExecutionTimeout || p.ExecutionTimeout > MaxExecutionTimeout:
		return fmt.Errorf("%w: execution timeout %s must be over %s and at most %s", ErrInvalidPolicy, p.ExecutionTimeout, MinExecutionTimeout, MaxExecutionTimeout)
	case p.TTL < 0 || p.TTL > 0 && (p.TTL < MinTTL || p.TTL > MaxTTL):
		return fmt.Errorf("%w: ttl %s must be between %s and %s", ErrInvalidPolicy, p.TTL, MinTTL, MaxTTL)
	case p.effectiveTTL() < p.ExecutionTimeout:
		return fmt.Errorf("%w: ttl %s is shorter than the execution timeout %s: RunPod would delete the job while it runs", ErrInvalidPolicy, p.effectiveTTL(), p.ExecutionTimeout)
	}
	return nil
}

func (p Policy) effectiveTTL() time.Duration {
	if p.TTL == 0 {
		return DefaultTTL
	}
	return p.TTL
}

// RunRequest is the body of POST /run.
type RunRequest struct {
	Input   any    // the job input (for this project, a contract.JobSpec)
	Webhook string // optional completion webhook URL
	Policy  Policy
}

type wirePolicy struct {
	ExecutionTimeout int64 `json:"executionTimeout"`
	TTL              int64 `json:"ttl,omitempty"`
	LowPriority      bool  `json:"lowPriority"`
}

type wireRun struct {
	Input   any        `json:"input"`
	Webhook string     `json:"webhook,omitempty"`
	Policy  wirePolicy `json:"policy"`
}

// JobStatus is the body of /run, /status, /cancel and /retry answers (and
// of the completion webhook).
type JobStatus struct {
	ID            string          `json:"id"`
	Status        Status          `json:"status"`
	DelayTime     int64           `json:"delayTime,omitempty"`     // ms in the queue
	ExecutionTime int64           `json:"executionTime,omitempty"` // ms of execution
	Output        json.RawMessage `json:"output,omitempty"`
	Error         string          `json:"error,omitempty"`
	Retries       int             `json:"retries,omitempty"`
	WorkerID      string          `json:"workerId,omitempty"`
}

// UnmarshalJSON accepts an error that is not a string (kept as its JSON
// text): the SDK sends a string, but a body is not trusted to.
func (j *JobStatus) UnmarshalJSON(b []byte) error {
	type plain JobStatus
	var aux struct {
		plain
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*j = JobStatus(aux.plain)
	if len(aux.Error) > 0 && string(aux.Error) != "null" {
		var s string
		if err := json.Unmarshal(aux.Error, &s); err == nil {
			j.Error = s
		} else {
			j.Error = string(aux.Error)
		}
	}
	return nil
}

// Health is the body of GET /health.
type Health struct {
	Jobs struct {
		Completed  int `json:"completed"`
		Failed     int `json:"failed"`
		InProgress int `json:"inProgress"`
		InQueue    int `json:"inQueue"`
		Retried    int `json:"retried"`
	} `json:"jobs"`
	Workers struct {
		Idle         int `json:"idle"`
		Running      int `json:"running"`
		Initializing int `json:"initializing,omitempty"`
		Ready        int `json:"ready,omitempty"`
		Throttled    int `json:"throttled,omitempty"`
		Unhealthy    int `json:"unhealthy,omitempty"`
	} `json:"workers"`
}

// PurgeResult is the body of POST /purge-queue.
type PurgeResult struct {
	Removed int    `json:"removed"`
	Status  string `json:"status"`
}

// Error kinds; every error of an API call matches one with errors.Is.
var (
	// ErrNotFound: 404. On /status it means the result is lost: RunPod
	// keeps results only ResultRetention after the job ends (or the ttl
	// ran out). Do not retry it.
	ErrNotFound     = errors.New("runpod: not found")
	ErrUnauthorized = errors.New("runpod: unauthorized")       // 401, 403: a bad or missing API key
	ErrBadRequest   = errors.New("runpod: bad request")        // any other 4xx: fix the request
	ErrRateLimited  = errors.New("runpod: rate limited")       // 429 after the retries
	ErrUnavailable  = errors.New("runpod: unavailable")        // 5xx or the network, after the retries
	ErrBadResponse  = errors.New("runpod: malformed response") // a 2xx body that is not the expected JSON
	// ErrInvalidPolicy: the request was refused before sending (see Policy.Validate).
	ErrInvalidPolicy = errors.New("runpod: invalid request")
	// ErrOutcomeUnknown: a /run (or /retry) request may have reached RunPod
	// and created a job, but no answer says so (a timeout after sending, a
	// 500/502/504, a broken answer). It is never retried automatically: a
	// second /run would start a second paid job. Reconcile instead: the
	// job spec's job_id and attempt reach the worker, whose started
	// callback names the RunPod job id.
	ErrOutcomeUnknown = errors.New("runpod: outcome unknown, a job may have been created")
)

// APIError is an error answer (or a failed exchange) of one operation.
type APIError struct {
	Op         string // "run", "status", "cancel", "retry", "purge-queue", "health"
	StatusCode int    // 0 for a network error
	Message    string // RunPod's message, or the network error
	Kind       error  // one of the Err values above
	Ambiguous  bool   // the request may have taken effect (see ErrOutcomeUnknown)
	Attempts   int    // requests made
	Err        error  // the underlying cause (network or context error), if any
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("runpod %s", e.Op)
	if e.StatusCode != 0 {
		s += fmt.Sprintf(": HTTP %d", e.StatusCode)
	}
	s += ": " + e.Kind.Error()
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Ambiguous {
		s += " (" + ErrOutcomeUnknown.Error() + ")"
	}
	if e.Attempts > 1 {
		s += fmt.Sprintf(" (after %d attempts)", e.Attempts)
	}
	return s
}

// Unwrap returns the underlying cause (e.g. context.DeadlineExceeded).
func (e *APIError) Unwrap() error { return e.Err }

// Is matches the error's kind, and ErrOutcomeUnknown when ambiguous.
func (e *APIError) Is(target error) bool {
	return target == e.Kind || e.Ambiguous && target == ErrOutcomeUnknown
}
