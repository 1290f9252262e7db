package httpapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// MaxCallbackBytes bounds a worker callback's body.
const MaxCallbackBytes = 256 << 10

// CallbackAnswer is the body of every answer to a worker callback: the
// worker stops when Action is "stop".
type CallbackAnswer struct {
	Action string          `json:"action,omitempty"`
	Reason string          `json:"reason,omitempty"`
	Error  *pipeline.Error `json:"error,omitempty"`
}

// WorkerCallbackURL is where a job's worker posts its callbacks: the
// owner rides in the query so that the job can be found; the signature,
// made with a secret derived from the job id, authenticates the rest.
func WorkerCallbackURL(base, owner string) string {
	return base + "/v1/callbacks/worker?o=" + hex.EncodeToString([]byte(owner))
}

// callbackError answers a refused callback: 401 for authentication, 409
// with "stop" for a superseded attempt, 400 for a malformed body.
func (s *Server) callbackError(w http.ResponseWriter, r *http.Request, status int, code, msg, action string) {
	s.log().WarnContext(r.Context(), "callback refused", "status", status, "code", code, "reason", msg, "remote", r.RemoteAddr)
	writeJSON(w, status, CallbackAnswer{Action: action, Error: &pipeline.Error{Code: code, Message: msg}})
}

// workerCallback receives the worker's signed callbacks and moves the job's
// state machine forward only: a late, repeated or out-of-order callback
// changes nothing it should not.
func (s *Server) workerCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxCallbackBytes))
	if err != nil {
		s.callbackError(w, r, http.StatusRequestEntityTooLarge, pipeline.ETooLarge, fmt.Sprintf("callback body over %d bytes", MaxCallbackBytes), "")
		return
	}
	ownerRaw, err := hex.DecodeString(r.URL.Query().Get("o"))
	owner := string(ownerRaw)
	if err != nil || owner == "" {
		s.callbackError(w, r, http.StatusUnauthorized, pipeline.EUnauthorized, "callback URL is not one this service handed out", "")
		return
	}
	// The signature is checked first, with the secret of the job the body
	// names; only a verified body is parsed in full.
	var head struct {
		JobID string `json:"job_id"`
	}
	if json.Unmarshal(body, &head) != nil || !contract.ValidJobID(head.JobID) {
		s.callbackError(w, r, http.StatusUnauthorized, pipeline.EUnauthorized, "callback is not signed for a known job", "")
		return
	}
	if verr := contract.Verify(contract.DeriveSecret(s.CallbackSecret, head.JobID), r.Header, body, s.now()); verr != nil {
		s.callbackError(w, r, http.StatusUnauthorized, pipeline.EUnauthorized, verr.Error(), "")
		return
	}
	cb, payload, err := contract.ParseCallback(body)
	if err != nil {
		s.callbackError(w, r, http.StatusBadRequest, pipeline.EInvalid, err.Error(), "")
		return
	}
	id := r.Header.Get(contract.HeaderID)
	if jobID, attempt, seq, perr := contract.ParseWebhookID(id); perr != nil || jobID != cb.JobID || attempt != cb.Attempt || seq != cb.Seq {
		s.callbackError(w, r, http.StatusBadRequest, pipeline.EInvalid, "webhook-id does not match the body's job_id, attempt and seq", "")
		return
	}
	j, err := s.Store.GetJob(ctx, owner, cb.JobID)
	if pipeline.ErrorCode(err) == pipeline.ENotFound {
		s.callbackError(w, r, http.StatusNotFound, pipeline.ENotFound, "no such job", "stop")
		return
	}
	if err != nil {
		writeError(w, r, s.log(), err) // the worker retries
		return
	}
	if cb.Attempt != j.Attempt {
		s.callbackError(w, r, http.StatusConflict, pipeline.EConflict,
			fmt.Sprintf("attempt %d of job %s was superseded by attempt %d: stop", cb.Attempt, j.ID, j.Attempt), "stop")
		return
	}
	// Apply, then record. Applying is idempotent (moves only go forward,
	// metric points are keyed by step, artifacts by name, notifications go
	// out only with the move that ends the job), so a retry of a message
	// whose first delivery failed half-way is applied again, never lost.
	if j, err = s.applyCallback(ctx, j, cb, payload); err != nil {
		writeError(w, r, s.log(), err)
		return
	}
	// The event log keeps each message once: the key is the webhook-id and
	// the body's hash, because a worker that RunPod re-runs after a crash
	// keeps the attempt and starts its seq again, so its messages reuse the
	// crashed run's webhook-ids with other bodies (sent_at differs).
	// Progress is kept as metric points, not as events: the event log holds
	// what changes a job (start, stages, artifacts, the end).
	if cb.Type != contract.TypeProgress {
		sum := sha256.Sum256(body)
		ev := &pipeline.Event{ID: "cb:" + id + ":" + hex.EncodeToString(sum[:8]), Owner: owner, JobID: j.ID, Attempt: cb.Attempt,
			Type: string(cb.Type), Data: cb.Data, Time: s.now()}
		if _, err := s.JobLog.AppendEvent(ctx, ev); err != nil {
			s.log().WarnContext(ctx, "append callback event", "job_id", j.ID, "err", err)
		}
	}
	answer := CallbackAnswer{Action: "continue"}
	if j.Status == pipeline.JobCancelRequested || j.Status == pipeline.JobCancelled || j.Status == pipeline.JobFailed {
		answer = CallbackAnswer{Action: "stop", Reason: fmt.Sprintf("job is %s", j.Status)}
	}
	writeJSON(w, http.StatusOK, answer)
}

// applyCallback changes the job as the callback says.
func (s *Server) applyCallback(ctx context.Context, j *pipeline.Job, cb *contract.Callback, p contract.Payload) (*pipeline.Job, error) {
	now := s.now()
	beat := func(j *pipeline.Job) { j.HeartbeatAt, j.UpdatedAt = &now, now }
	// forward moves the job to `to` if the state machine allows it from
	// where it is; otherwise it only records the heartbeat.
	moved := false
	forward := func(to pipeline.JobStatus, mutate func(*pipeline.Job)) (*pipeline.Job, error) {
		next, err := pipeline.TransitionJob(ctx, s.Store, j.Owner, j.ID, to, func(cur *pipeline.Job) error {
			if cur.Attempt != cb.Attempt {
				return errMoved
			}
			beat(cur)
			if mutate != nil {
				mutate(cur)
			}
			return nil
		})
		if err == nil {
			moved = true
			return next, nil
		}
		if pipeline.ErrorCode(err) != pipeline.EPrecondition && !errors.Is(err, errMoved) {
			return nil, err
		}
		return pipeline.UpdateJob(ctx, s.Store, j.Owner, j.ID, func(cur *pipeline.Job) error {
			if cur.Attempt != cb.Attempt {
				return pipeline.ErrNoChange
			}
			beat(cur)
			if mutate != nil && !cur.Status.Terminal() {
				mutate(cur)
			}
			return nil
		})
	}
	switch p := p.(type) {
	case *contract.Started:
		return forward(pipeline.JobRunning, func(cur *pipeline.Job) {
			if cur.StartedAt == nil {
				cur.StartedAt = &now
			}
			// A run of this attempt starts (again, after a crash): its
			// progress starts from the beginning.
			cur.Progress, cur.Stage = nil, ""
		})
	case *contract.StageChange:
		to := pipeline.JobRunning
		if p.Stage == contract.StageUpload {
			to = pipeline.JobUploading
		}
		return forward(to, func(cur *pipeline.Job) { cur.Stage = string(p.Stage) })
	case *contract.Progress:
		pt := pipeline.MetricPoint{Attempt: cb.Attempt, Step: int(p.Step), TotalSteps: int(p.TotalSteps), Epoch: p.Epoch, Loss: p.Loss,
			LearningRate: p.LearningRate, TokensPerSecond: p.TokensPerSecond, GPUMemoryBytes: p.GPUMemoryBytes, Time: cb.SentAt}
		if err := s.JobLog.PutMetrics(ctx, j.Owner, j.ID, []pipeline.MetricPoint{pt}); err != nil {
			return nil, fmt.Errorf("store metric point: %w", err)
		}
		return forward(pipeline.JobRunning, func(cur *pipeline.Job) {
			// Out of order: an older step never replaces a newer one.
			if cur.Progress == nil || cur.Progress.Attempt != pt.Attempt || pt.Step >= cur.Progress.Step {
				cur.Progress = &pt
			}
		})
	case *contract.Artifact:
		key := ArtifactKey(j.Owner, j.ID, cb.Attempt, p.Name)
		info, err := s.Blobs.Stat(ctx, key)
		if err != nil {
			return nil, pipeline.Errorf(pipeline.EInvalid, "artifact %s was not uploaded: %v", p.Name, err)
		}
		if info.Size != p.SizeBytes {
			return nil, pipeline.Errorf(pipeline.EInvalid, "artifact %s is %d bytes in storage, the callback says %d", p.Name, info.Size, p.SizeBytes)
		}
		return forward(pipeline.JobUploading, func(cur *pipeline.Job) {
			a := pipeline.Artifact{Name: p.Name, Key: key, SizeBytes: p.SizeBytes, SHA256: p.SHA256}
			for i := range cur.Artifacts {
				if cur.Artifacts[i].Name == p.Name {
					cur.Artifacts[i] = a
					return
				}
			}
			cur.Artifacts = append(cur.Artifacts, a)
		})
	case *contract.Completed:
		// What the run measured is stored first, keyed by the job: a
		// retry of this callback stores it again, never twice, and the
		// run's figures hold whatever state the job is in. Only a run on
		// a GPU is recorded: the local worker's tiny model on the CPU and
		// the RunPod emulator's simulated worker say nothing of one. A
		// record the store refuses (a job without a model or GPU) is
		// logged, not returned: it must not keep the job from completing.
		if p.Metrics.Device == "cuda" {
			if err := s.JobLog.PutMeasurement(ctx, measurement(j, p, now)); pipeline.ErrorCode(err) == pipeline.EInvalid {
				s.log().WarnContext(ctx, "measurement not stored", "job_id", j.ID, "err", err)
			} else if err != nil {
				return nil, fmt.Errorf("store measurement: %w", err)
			}
		}
		done, err := forward(pipeline.JobCompleted, func(cur *pipeline.Job) {
			cur.FinishedAt = &now
			cur.Stage = ""
			cur.Cost = s.cost(cur, now)
			cur.Cost.CompareWithEstimate(cur, now)
		})
		if err == nil && moved {
			s.notify(ctx, done, "job_completed", fmt.Sprintf("Job %s completed: %d steps, final loss %s, cost $%.2f.", jobName(done), p.Steps, lossText(p.FinalLoss), done.Cost.USD))
		}
		return done, err
	case *contract.Failed:
		if p.Code == contract.CodeCancelled {
			// The worker stopped because it was told to: the cancel is done.
			return forward(pipeline.JobCancelled, func(cur *pipeline.Job) {
				cur.FinishedAt = &now
				cur.Cost = s.cost(cur, now)
			})
		}
		failed, err := forward(pipeline.JobFailed, func(cur *pipeline.Job) {
			cur.FinishedAt = &now
			cur.Error = &pipeline.JobError{Code: string(p.Code), Message: p.Message, Advice: p.Advice}
			cur.Cost = s.cost(cur, now)
		})
		if err == nil && moved {
			s.notify(ctx, failed, "job_failed", fmt.Sprintf("Job %s failed (%s): %s %s", jobName(failed), p.Code, p.Message, p.Advice))
		}
		return failed, err
	}
	return j, nil
}

// cost is the job's actual cost so far: billed time since the worker
// started, at the estimate's price.
func (s *Server) cost(j *pipeline.Job, now time.Time) *pipeline.JobCost {
	c := &pipeline.JobCost{}
	if j.Estimate != nil {
		c.PriceUSDPerSecond = j.Estimate.PriceUSDPerSecond
		c.EstimatedUSD = j.Estimate.CostUSD.Expected
	}
	if j.StartedAt != nil {
		c.BilledSeconds = math.Ceil(now.Sub(*j.StartedAt).Seconds())
	}
	c.USD = math.Round(c.BilledSeconds*c.PriceUSDPerSecond*100) / 100
	return c
}

// measurement is what a completed run measured of its model on its GPU.
// A worker that predates the token budget sends no micro-batch figures:
// the record keeps its load time, and calibration skips its training.
func measurement(j *pipeline.Job, p *contract.Completed, now time.Time) *pipeline.Measurement {
	m := p.Metrics
	out := &pipeline.Measurement{
		JobID: j.ID, Owner: j.Owner, Model: j.BaseModel, GPU: j.GPUType, Quantization: m.Quantization,
		JobCreatedAt: j.CreatedAt, MicroBatches: m.MicroBatches, PaddedTokens: m.PaddedTokensSeen,
		TrainSeconds: p.TrainSeconds, SecondsPerMicroBatch: m.SecondsPerMicroBatch, TokensPerSecond: m.TokensPerSecond,
		LoadSeconds: m.LoadSeconds, RecordedAt: now,
	}
	if j.Estimate != nil {
		out.MicroBatchTokens = j.Estimate.MicroBatchTokens
	}
	return out
}

func jobName(j *pipeline.Job) string {
	if j.Name != "" {
		return fmt.Sprintf("%q (%s)", j.Name, j.ID)
	}
	return j.ID
}

func lossText(l *float64) string {
	if l == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.4f", *l)
}

// notify records a notification for the job's owner; a failure is logged.
func (s *Server) notify(ctx context.Context, j *pipeline.Job, typ, msg string) {
	if err := s.JobLog.CreateNotification(ctx, pipeline.NewNotification(j, typ, msg, s.now())); err != nil {
		s.log().WarnContext(ctx, "store notification", "job_id", j.ID, "err", err)
	}
}

// ArtifactKey is where an attempt's adapter file is uploaded.
func ArtifactKey(owner, jobID string, attempt int, name string) string {
	return fmt.Sprintf("adapters/%s/%s/attempt-%d/%s", hex.EncodeToString([]byte(owner)), jobID, attempt, name)
}

// WebhookToken authenticates RunPod's (unsigned) completion webhook: it
// names the job and attempt and carries an HMAC of them.
func WebhookToken(secret []byte, owner, jobID string, attempt int) string {
	payload := fmt.Sprintf("%s\x00%s\x00%d", owner, jobID, attempt)
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(tokenMAC(secret, []byte(payload)))
}

func tokenMAC(secret, payload []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("brightrun/runpod-webhook/v1\x00"))
	m.Write(payload)
	return m.Sum(nil)
}

// ParseWebhookToken checks a token made by WebhookToken.
func ParseWebhookToken(secret []byte, token string) (owner, jobID string, attempt int, err error) {
	bad := pipeline.Errorf(pipeline.EUnauthorized, "webhook token is not one this service handed out")
	p64, s64, ok := strings.Cut(token, ".")
	payload, err1 := base64.RawURLEncoding.DecodeString(p64)
	sig, err2 := base64.RawURLEncoding.DecodeString(s64)
	if !ok || err1 != nil || err2 != nil || !hmac.Equal(sig, tokenMAC(secret, payload)) {
		return "", "", 0, bad
	}
	parts := strings.Split(string(payload), "\x00")
	if len(parts) != 3 {
		return "", "", 0, bad
	}
	attempt, err = strconv.Atoi(parts[2])
	if err != nil {
		return "", "", 0, bad
	}
	return parts[0], parts[1], attempt, nil
}

// RunChecker confirms a run's outcome with the GPU provider and repairs the
// job's state: the RunPod webhook's body is only a hint.
type RunChecker interface {
	CheckJob(ctx context.Context, owner, jobID string) error
}

// runpodWebhook receives RunPod's completion webhook. The token in the
// path authenticates it; the body is not trusted: the outcome is confirmed
// with RunPod's /status. RunPod expects a 200.
func (s *Server) runpodWebhook(w http.ResponseWriter, r *http.Request) {
	owner, jobID, attempt, err := ParseWebhookToken(s.CallbackSecret, r.PathValue("token"))
	if err != nil {
		s.callbackError(w, r, http.StatusUnauthorized, pipeline.EUnauthorized, pipeline.ErrorMessage(err), "")
		return
	}
	_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, MaxCallbackBytes))
	j, err := s.Store.GetJob(r.Context(), owner, jobID)
	if pipeline.ErrorCode(err) == pipeline.ENotFound {
		// Deleted meanwhile: nothing to do, and RunPod should not retry.
		writeJSON(w, http.StatusOK, CallbackAnswer{Action: "stop", Reason: "no such job"})
		return
	}
	if err != nil {
		writeError(w, r, s.log(), err)
		return
	}
	if j.Attempt != attempt {
		writeJSON(w, http.StatusOK, CallbackAnswer{Action: "stop", Reason: "superseded attempt"})
		return
	}
	if s.Runs == nil {
		writeJSON(w, http.StatusOK, CallbackAnswer{Action: "continue", Reason: "noted; reconciliation will confirm"})
		return
	}
	if err := s.Runs.CheckJob(r.Context(), owner, jobID); err != nil {
		// RunPod retries the webhook on a non-200: let it.
		writeError(w, r, s.log(), err)
		return
	}
	writeJSON(w, http.StatusOK, CallbackAnswer{Action: "continue"})
}
