package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// Canceller cancels a job's current run on the GPU provider.
type Canceller interface {
	Cancel(ctx context.Context, runID string) error
}

type createJobRequest struct {
	trainingRequest
	Name      string   `json:"name,omitempty"`
	BudgetUSD *float64 `json:"budget_usd,omitempty"`
}

// JobView is a job as the API shows it.
type JobView struct {
	ID              string                   `json:"id"`
	Name            string                   `json:"name,omitempty"`
	Status          pipeline.JobStatus       `json:"status"`
	Stage           string                   `json:"stage,omitempty"`
	DatasetID       string                   `json:"dataset_id"`
	BaseModel       string                   `json:"base_model"`
	GPUType         string                   `json:"gpu_type"`
	Preset          string                   `json:"preset"`
	Hyperparameters pipeline.Hyperparameters `json:"hyperparameters"`
	Attempt         int                      `json:"attempt"`
	Progress        *pipeline.MetricPoint    `json:"progress,omitempty"`
	Estimate        *pipeline.JobEstimate    `json:"estimate,omitempty"`
	Cost            *pipeline.JobCost        `json:"cost,omitempty"`
	BudgetUSD       *float64                 `json:"budget_usd,omitempty"`
	Error           *pipeline.JobError       `json:"error,omitempty"`
	StartedAt       *time.Time               `json:"started_at,omitempty"`
	FinishedAt      *time.Time               `json:"finished_at,omitempty"`
	CreatedAt       time.Time                `json:"created_at"`
	UpdatedAt       time.Time                `json:"updated_at"`
}

func viewJob(j *pipeline.Job) JobView {
	return JobView{
		ID: j.ID, Name: j.Name, Status: j.Status, Stage: j.Stage, DatasetID: j.DatasetID, BaseModel: j.BaseModel,
		GPUType: j.GPUType, Preset: j.Preset, Hyperparameters: j.Hyperparameters, Attempt: j.Attempt, Progress: j.Progress,
		Estimate: j.Estimate, Cost: j.Cost, BudgetUSD: j.BudgetUSD, Error: j.Error, StartedAt: j.StartedAt,
		FinishedAt: j.FinishedAt, CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt,
	}
}

// IdempotentJobID derives a job's id from its owner and Idempotency-Key, so
// that retries of one request collide on the store's conditional create.
func IdempotentJobID(owner, key string) string {
	sum := sha256.Sum256([]byte("brightrun/job/v1\x00" + owner + "\x00" + key))
	return "job_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:16]))
}

func checkIdempotencyKey(key string) error {
	if len(key) > 255 {
		return pipeline.Errorf(pipeline.EInvalid, "Idempotency-Key must be at most 255 characters, got %d", len(key))
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return pipeline.Errorf(pipeline.EInvalid, "Idempotency-Key must be printable ASCII without spaces (byte %d is not)", i)
		}
	}
	return nil
}

func (s *Server) createJob(w http.ResponseWriter, r *http.Request, owner string) error {
	key := r.Header.Get("Idempotency-Key")
	if err := checkIdempotencyKey(key); err != nil {
		return err
	}
	var req createJobRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Name != "" {
		if err := pipeline.ValidateName("name", req.Name); err != nil {
			return err
		}
	}
	if req.BudgetUSD != nil && !(*req.BudgetUSD > 0) || req.BudgetUSD != nil && math.IsInf(*req.BudgetUSD, 0) {
		return &pipeline.Error{Code: pipeline.EInvalid, Message: fmt.Sprintf("budget_usd must be a positive amount, got %v", *req.BudgetUSD),
			Details: map[string]string{"field": "budget_usd"}}
	}
	canonical, _ := json.Marshal(req)
	sum := sha256.Sum256(canonical)
	reqHash := hex.EncodeToString(sum[:])

	if key != "" {
		// A retry of a request that already made its job answers with that
		// job, without estimating again.
		if j, err := s.Store.GetJob(r.Context(), owner, IdempotentJobID(owner, key)); err == nil {
			return s.replay(w, j, reqHash)
		}
	}
	p, err := s.resolve(r, owner, req.trainingRequest)
	if err != nil {
		return err
	}
	est := p.selected
	if req.BudgetUSD != nil && *req.BudgetUSD < est.CostUSD.Low {
		return &pipeline.Error{Code: pipeline.EInvalid,
			Message: fmt.Sprintf("budget_usd %.2f is below the lowest estimate %.2f for this job on %s", *req.BudgetUSD, est.CostUSD.Low, est.GPU),
			Details: map[string]any{"field": "budget_usd", "estimate_low_usd": est.CostUSD.Low}}
	}
	now := s.now()
	id := pipeline.NewID("job", now)
	if key != "" {
		id = IdempotentJobID(owner, key)
	}
	j := &pipeline.Job{
		ID: id, Owner: owner, Name: strings.TrimSpace(req.Name), DatasetID: p.dataset.ID, BaseModel: p.model.ID,
		GPUType: est.GPU, Preset: p.preset, Hyperparameters: p.hp, Status: pipeline.JobQueued, BudgetUSD: req.BudgetUSD,
		IdempotencyKey: key, RequestHash: reqHash, CreatedAt: now, UpdatedAt: now,
		Estimate: &pipeline.JobEstimate{
			GPU: est.GPU, PriceUSDPerSecond: est.PriceUSDPerSecond, TotalSteps: int(est.Steps.Total), MicroBatchTokens: est.MicroBatchTokens,
			DurationSeconds:         pipeline.Range{Low: float64(est.DurationSeconds.Low), Expected: float64(est.DurationSeconds.Expected), High: float64(est.DurationSeconds.High)},
			CostUSD:                 pipeline.Range{Low: est.CostUSD.Low, Expected: est.CostUSD.Expected, High: est.CostUSD.High},
			ExecutionTimeoutSeconds: est.ExecutionTimeoutSeconds, PricesDate: est.PricesDate, EstimatorVersion: est.EstimatorVersion,
		},
	}
	if err := s.Store.CreateJob(r.Context(), j); err != nil {
		if pipeline.ErrorCode(err) == pipeline.EConflict && key != "" {
			// A concurrent request with the same key won the create.
			existing, gerr := s.Store.GetJob(r.Context(), owner, id)
			if gerr != nil {
				return gerr
			}
			return s.replay(w, existing, reqHash)
		}
		return fmt.Errorf("store job: %w", err)
	}
	s.logEvent(r.Context(), j, "created", fmt.Sprintf("job created on %s, estimated $%.2f–$%.2f", j.GPUType, est.CostUSD.Low, est.CostUSD.High))
	// Store first, then queue: a job stored but not enqueued (the send
	// failed, or the process died here) is enqueued by reconciliation.
	if err := pipeline.EnqueueJob(r.Context(), s.Store, s.Queue, j); err != nil {
		s.log().WarnContext(r.Context(), "job stored but not enqueued: reconciliation will enqueue it", "job_id", j.ID, "err", err)
	}
	s.log().InfoContext(r.Context(), "job created", "owner", owner, "job_id", j.ID, "gpu", j.GPUType, "preset", j.Preset)
	writeJSON(w, http.StatusCreated, viewJob(j))
	return nil
}

// replay answers a repeated Idempotency-Key: the same request gets its job
// again, another request with the key is a conflict.
func (s *Server) replay(w http.ResponseWriter, j *pipeline.Job, reqHash string) error {
	if j.RequestHash != reqHash {
		return &pipeline.Error{Code: pipeline.EConflict,
			Message: "this Idempotency-Key was used for another request: use a new key for a new job",
			Details: map[string]string{"job_id": j.ID}}
	}
	w.Header().Set("Idempotent-Replayed", "true")
	writeJSON(w, http.StatusCreated, viewJob(j))
	return nil
}

// logEvent appends a job event; a failure is logged, never returned: the
// event log is a record, not a part of the state machine.
func (s *Server) logEvent(ctx context.Context, j *pipeline.Job, typ, msg string) {
	if s.JobLog == nil {
		return
	}
	if _, err := s.JobLog.AppendEvent(ctx, pipeline.NewEvent(j, typ, msg, s.now())); err != nil {
		s.log().WarnContext(ctx, "append job event", "job_id", j.ID, "type", typ, "err", err)
	}
}

type listJobsResponse struct {
	Jobs       []JobView `json:"jobs"`
	NextCursor string    `json:"next_cursor,omitempty"`
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request, owner string) error {
	p, err := page(r)
	if err != nil {
		return err
	}
	var f pipeline.JobFilter
	if st := r.URL.Query().Get("status"); st != "" {
		if !pipeline.JobStatus(st).Valid() {
			return pipeline.Errorf(pipeline.EInvalid, "status %q is not a job status: one of %v", st, pipeline.JobStatuses)
		}
		f.Status = pipeline.JobStatus(st)
	}
	list, next, err := s.Store.ListJobs(r.Context(), owner, f, p)
	if err != nil {
		return err
	}
	out := listJobsResponse{Jobs: make([]JobView, 0, len(list)), NextCursor: next}
	for _, j := range list {
		out.Jobs = append(out.Jobs, viewJob(j))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request, owner string) error {
	j, err := s.Store.GetJob(r.Context(), owner, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewJob(j))
	return nil
}

// cancelJob cancels a job: a queued job at once (it is never dispatched),
// a dispatched one by asking its worker to stop (cancel_requested until
// the worker or RunPod confirms). Cancelling twice, or a finished job, is
// not an error: the answer is the job as it is.
func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request, owner string) error {
	ctx := r.Context()
	j, err := s.Store.GetJob(ctx, owner, r.PathValue("id"))
	if err != nil {
		return err
	}
	for try := 0; try < 5 && !j.Status.Terminal() && j.Status != pipeline.JobCancelRequested; try++ {
		from, to := j.Status, pipeline.JobCancelRequested
		if from == pipeline.JobQueued {
			to = pipeline.JobCancelled
		}
		moved, err := pipeline.TransitionJob(ctx, s.Store, owner, j.ID, to, func(j *pipeline.Job) error {
			if j.Status != from {
				return errMoved
			}
			now := s.now()
			j.UpdatedAt = now
			if to == pipeline.JobCancelled {
				j.FinishedAt = &now
			}
			return nil
		})
		if err == nil {
			j = moved
			s.logEvent(ctx, j, string(to), "cancelled by the user")
			break
		}
		if pipeline.ErrorCode(err) != pipeline.EPrecondition && !errors.Is(err, errMoved) {
			return err
		}
		// The job moved meanwhile (e.g. queued → dispatching): try again from where it is.
		if j, err = s.Store.GetJob(ctx, owner, j.ID); err != nil {
			return err
		}
	}
	if !j.Status.Terminal() && j.Status != pipeline.JobCancelRequested {
		return pipeline.Errorf(pipeline.EUnavailable, "job %s kept changing while it was being cancelled: try again", j.ID)
	}
	if j.Status == pipeline.JobCancelRequested && j.RunPodID != "" && s.Canceller != nil {
		if err := s.Canceller.Cancel(ctx, j.RunPodID); err != nil {
			// The worker also learns of the cancel from its next callback's
			// answer, and reconciliation retries: the request still stands.
			s.log().WarnContext(ctx, "cancel on the GPU provider failed", "job_id", j.ID, "run_id", j.RunPodID, "err", err)
		}
	}
	writeJSON(w, http.StatusOK, viewJob(j))
	return nil
}

// errMoved ends a transition whose decision was made on a status that
// changed before the write.
var errMoved = errors.New("job moved on")

type listEventsResponse struct {
	Events     []*pipeline.Event `json:"events"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

func (s *Server) listEvents(w http.ResponseWriter, r *http.Request, owner string) error {
	j, err := s.Store.GetJob(r.Context(), owner, r.PathValue("id"))
	if err != nil {
		return err
	}
	p, err := page(r)
	if err != nil {
		return err
	}
	evs, next, err := s.JobLog.ListEvents(r.Context(), owner, j.ID, p)
	if err != nil {
		return err
	}
	if evs == nil {
		evs = []*pipeline.Event{}
	}
	for _, e := range evs {
		e.Owner = ""
	}
	writeJSON(w, http.StatusOK, listEventsResponse{Events: evs, NextCursor: next})
	return nil
}

type listMetricsResponse struct {
	Metrics    []pipeline.MetricPoint `json:"metrics"`
	NextCursor string                 `json:"next_cursor,omitempty"`
}

func (s *Server) listMetrics(w http.ResponseWriter, r *http.Request, owner string) error {
	j, err := s.Store.GetJob(r.Context(), owner, r.PathValue("id"))
	if err != nil {
		return err
	}
	p, err := page(r)
	if err != nil {
		return err
	}
	pts, next, err := s.JobLog.ListMetrics(r.Context(), owner, j.ID, p)
	if err != nil {
		return err
	}
	if pts == nil {
		pts = []pipeline.MetricPoint{}
	}
	writeJSON(w, http.StatusOK, listMetricsResponse{Metrics: pts, NextCursor: next})
	return nil
}

// ArtifactView is one adapter file with a short-lived download URL.
type ArtifactView struct {
	Name      string                 `json:"name"`
	SizeBytes int64                  `json:"size_bytes"`
	SHA256    string                 `json:"sha256"`
	Download  pipeline.SignedRequest `json:"download"`
}

// ArtifactURLTTL is how long artifact download URLs stay valid.
const ArtifactURLTTL = 15 * time.Minute

func (s *Server) listArtifacts(w http.ResponseWriter, r *http.Request, owner string) error {
	j, err := s.Store.GetJob(r.Context(), owner, r.PathValue("id"))
	if err != nil {
		return err
	}
	out := []ArtifactView{}
	for _, a := range j.Artifacts {
		req, err := s.Blobs.PresignGet(r.Context(), a.Key, ArtifactURLTTL)
		if err != nil {
			return fmt.Errorf("presign artifact %s: %w", a.Name, err)
		}
		out = append(out, ArtifactView{Name: a.Name, SizeBytes: a.SizeBytes, SHA256: a.SHA256, Download: req})
	}
	writeJSON(w, http.StatusOK, map[string]any{"job_id": j.ID, "status": j.Status, "artifacts": out})
	return nil
}

func (s *Server) listNotifications(w http.ResponseWriter, r *http.Request, owner string) error {
	p, err := page(r)
	if err != nil {
		return err
	}
	list, next, err := s.JobLog.ListNotifications(r.Context(), owner, p)
	if err != nil {
		return err
	}
	if list == nil {
		list = []*pipeline.Notification{}
	}
	for _, n := range list {
		n.Owner = ""
	}
	writeJSON(w, http.StatusOK, struct {
		Notifications []*pipeline.Notification `json:"notifications"`
		NextCursor    string                   `json:"next_cursor,omitempty"`
	}{list, next})
	return nil
}
