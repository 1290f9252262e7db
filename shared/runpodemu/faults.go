package runpodemu

import (
	"encoding/json"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
)

// Fault is what goes wrong with one job. The zero Fault is a healthy run.
// Config.Faults chooses a job's Fault when it is submitted.
type Fault struct {
	// FailAtStep > 0: at that training step the worker fails with
	// FailCode (default "oom"): a failed callback, then RunPod FAILED.
	FailAtStep int64
	FailCode   contract.FailureCode
	// NaNAtStep > 0: the loss becomes NaN at that step; the worker reports
	// failed nan_loss (a NaN cannot travel in a progress callback).
	NaNAtStep int64
	// CrashAtStep > 0: the worker process dies at that step, without a
	// callback. RunPod runs the job again — the same input, so the same
	// attempt — on a new worker (retries grows), Crashes times (default 1);
	// the last run is healthy. A re-run asks for the job's latest
	// checkpoint (checkpoint_download) and continues from it; with none
	// stored before the crash it starts from step 1.
	CrashAtStep int64
	Crashes     int
	// HangAtStep > 0: the worker stops at that step without a word and
	// stays IN_PROGRESS until RunPod's executionTimeout (a lost heartbeat).
	HangAtStep int64
	// FailUpload: every PUT fails (403): checkpoints are not stored, and
	// after its rounds of fresh URLs the worker reports failed upload.
	FailUpload bool
	// ExpireURLs: the presigned URLs have expired by the time they are
	// used — the job spec's (dataset, artifacts, resume) always, and the
	// first URL answered for each upload (checkpoint or artifact). The
	// emulator answers such a request itself, as S3 would (403
	// AccessDenied, "Request has expired"), without sending it; the worker
	// asks again (the urls request's retry) and the fresh URL works.
	ExpireURLs bool
	// NoURLRequests: a worker image older than URL requests. It never asks
	// for URLs: it downloads and uploads with the job spec's (minted at
	// dispatch) and writes no checkpoints, as a worker does once a server
	// says it hands out no URLs.
	NoURLRequests bool
	// DropWebhook: RunPod never sends the job's completion webhook.
	DropWebhook bool
	// StartDelay: a slow (cold) start; the job stays IN_QUEUE this long
	// after a worker takes it, and delayTime shows it.
	StartDelay time.Duration
}

// JobInfo describes a submitted job to Config.Faults.
type JobInfo struct {
	ID    string            // RunPod's job id
	Input json.RawMessage   // the job input as submitted
	Spec  *contract.JobSpec // the parsed job spec; nil when the input is not a valid one
}

// FaultsByJobID returns a Config.Faults function that looks faults up by
// the job spec's job_id (the control plane's id, known to a test before
// the job is dispatched).
func FaultsByJobID(faults map[string]Fault) func(JobInfo) Fault {
	return func(j JobInfo) Fault {
		if j.Spec == nil {
			return Fault{}
		}
		return faults[j.Spec.JobID]
	}
}

// apiFault is one injected answer of the job API.
type apiFault struct {
	status     int
	retryAfter time.Duration
}

// InjectAPIErrors makes the next n API requests (any route, before
// authentication) answer status with a JSON error body, and a Retry-After
// header of retryAfter (rounded up to whole seconds) when retryAfter > 0.
// Use 429 for a rate-limit burst, 503 or 502 for an outage.
func (e *Emulator) InjectAPIErrors(n int, status int, retryAfter time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := 0; i < n; i++ {
		e.apiFaults = append(e.apiFaults, apiFault{status: status, retryAfter: retryAfter})
	}
}

// RateLimit makes the next n API requests answer 429 Too Many Requests.
func (e *Emulator) RateLimit(n int) { e.InjectAPIErrors(n, 429, 0) }
