package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/pipeline"
)

type createJobRequest struct {
	trainingRequest
	Name      string   `json:"name,omitempty"`
	BudgetUSD *float64 `json:"budget_usd,omitempty"`
}

// checkIdempotencyKey checks the Idempotency-Key header: absent, or 1 to
// 255 printable ASCII characters without spaces. Sent empty it is refused,
// not taken for absent: the caller meant retries to be safe.
func checkIdempotencyKey(h http.Header) (string, error) {
	values, sent := h[http.CanonicalHeaderKey("Idempotency-Key")]
	if !sent {
		return "", nil
	}
	key := values[0]
	if key == "" || len(key) > 255 {
		return "", pipeline.Errorf(pipeline.EInvalid, "Idempotency-Key must be 1 to 255 characters, got %d: leave the header out for none", len(key))
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return "", pipeline.Errorf(pipeline.EInvalid, "Idempotency-Key must be printable ASCII without spaces (byte %d is not)", i)
		}
	}
	return key, nil
}

func (s *Server) createJob(w http.ResponseWriter, r *http.Request, owner string) error {
	key, err := checkIdempotencyKey(r.Header)
	if err != nil {
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
		j, err := s.Jobs.Replay(r.Context(), owner, key, reqHash)
		if err == nil {
			return s.replayed(w, j)
		}
		if pipeline.ErrorCode(err) != pipeline.ENotFound {
			return err
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
		id = pipeline.IdempotentJobID(owner, key)
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
			Evaluation: est.Evaluation,
		},
		Validation: p.validation,
	}
	j, replayed, err := s.Jobs.Create(r.Context(), j)
	if err != nil {
		return err
	}
	if replayed {
		return s.replayed(w, j)
	}
	s.log().InfoContext(r.Context(), "job created", "owner", owner, "job_id", j.ID, "gpu", j.GPUType, "preset", j.Preset)
	writeJSON(w, http.StatusCreated, api.ViewJob(j))
	return nil
}

// replayed answers a repeated Idempotency-Key of the same request with its job.
func (s *Server) replayed(w http.ResponseWriter, j *pipeline.Job) error {
	w.Header().Set("Idempotent-Replayed", "true")
	writeJSON(w, http.StatusCreated, api.ViewJob(j))
	return nil
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request, owner string) error {
	p, err := page(r)
	if err != nil {
		return err
	}
	var f pipeline.JobFilter
	if r.URL.Query().Has("status") {
		// Present, the filter must be a status: an empty one is no status.
		st := r.URL.Query().Get("status")
		if !pipeline.JobStatus(st).Valid() {
			return pipeline.Errorf(pipeline.EInvalid, "status %q is not a job status: one of %v", st, pipeline.JobStatuses)
		}
		f.Status = pipeline.JobStatus(st)
	}
	list, next, err := s.Store.ListJobs(r.Context(), owner, f, p)
	if err != nil {
		return err
	}
	out := api.JobList{Jobs: make([]api.JobView, 0, len(list)), NextCursor: next}
	for _, j := range list {
		out.Jobs = append(out.Jobs, api.ViewJob(j))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request, owner string) error {
	j, err := s.Store.GetJob(r.Context(), owner, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.ViewJob(j))
	return nil
}

// cancelJob cancels a job (pipeline.Lifecycle.Cancel says how).
func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request, owner string) error {
	j, err := s.Jobs.Cancel(r.Context(), owner, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.ViewJob(j))
	return nil
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
	writeJSON(w, http.StatusOK, api.EventList{Events: evs, NextCursor: next})
	return nil
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
	writeJSON(w, http.StatusOK, api.MetricList{Metrics: pts, NextCursor: next})
	return nil
}

// ArtifactURLTTL is how long artifact download URLs stay valid.
const ArtifactURLTTL = 15 * time.Minute

func (s *Server) listArtifacts(w http.ResponseWriter, r *http.Request, owner string) error {
	j, err := s.Store.GetJob(r.Context(), owner, r.PathValue("id"))
	if err != nil {
		return err
	}
	out := []api.ArtifactView{}
	for _, a := range j.Artifacts {
		req, err := s.Blobs.PresignDownload(r.Context(), a.Key, a.Name, ArtifactURLTTL)
		if err != nil {
			return fmt.Errorf("presign artifact %s: %w", a.Name, err)
		}
		out = append(out, api.ArtifactView{Name: a.Name, SizeBytes: a.SizeBytes, SHA256: a.SHA256, Download: req})
	}
	list := api.ArtifactList{JobID: j.ID, Status: j.Status, Artifacts: out, Checkpoints: []api.CheckpointView{}}
	for _, c := range j.Checkpoints {
		v := api.CheckpointView{ID: c.ID, Step: c.Step, TotalSteps: c.TotalSteps, Epoch: c.Epoch, Attempt: c.Attempt, Reason: c.Reason,
			Partial: c.Partial, Loss: c.Loss, EvalLoss: c.EvalLoss, CreatedAt: c.CreatedAt, Files: []api.ArtifactView{}}
		for _, f := range c.Files {
			req, err := s.Blobs.PresignDownload(r.Context(), f.Key, f.Name, ArtifactURLTTL)
			if err != nil {
				return fmt.Errorf("presign checkpoint file %s: %w", f.Key, err)
			}
			v.Files = append(v.Files, api.ArtifactView{Name: f.Name, SizeBytes: f.SizeBytes, SHA256: f.SHA256, Download: req})
		}
		list.Checkpoints = append(list.Checkpoints, v)
	}
	// A job that ended without its adapter (cancelled, failed, timed out)
	// keeps its last checkpoint's: a partial one.
	if len(out) == 0 && len(list.Checkpoints) > 0 && j.Status.Terminal() {
		last := list.Checkpoints[len(list.Checkpoints)-1]
		for _, f := range last.Files {
			if f.Name == contract.ArtifactAdapterConfig || f.Name == contract.ArtifactAdapterModel {
				list.Artifacts = append(list.Artifacts, f)
			}
		}
		list.Partial = len(list.Artifacts) > 0
		list.PartialStep = last.Step
	}
	writeJSON(w, http.StatusOK, list)
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
	writeJSON(w, http.StatusOK, api.NotificationList{Notifications: list, NextCursor: next})
	return nil
}
