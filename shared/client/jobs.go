package client

import (
	"context"
	"net/http"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/estimate"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// TrainingRequest is the body of POST /v1/estimates: a ready dataset, a
// preset (default balanced), hyperparameter overrides, optionally a GPU
// type and a base model, and how the job evaluates: a held-out share of
// the dataset (ValidationSplit, 0 to 0.5; 0 evaluates nothing) or a second
// ready dataset (ValidationDatasetID), not both; neither takes the default
// share.
type TrainingRequest struct {
	DatasetID           string                            `json:"dataset_id"`
	Preset              string                            `json:"preset,omitempty"`
	Hyperparameters     *pipeline.HyperparameterOverrides `json:"hyperparameters,omitempty"`
	GPUType             string                            `json:"gpu_type,omitempty"`
	BaseModel           string                            `json:"base_model,omitempty"`
	ValidationSplit     *float64                          `json:"validation_split,omitempty"`
	ValidationDatasetID string                            `json:"validation_dataset_id,omitempty"`
}

// CreateJobRequest is the body of POST /v1/jobs.
type CreateJobRequest struct {
	TrainingRequest
	Name      string   `json:"name,omitempty"`
	BudgetUSD *float64 `json:"budget_usd,omitempty"`
}

// Estimate is the answer of POST /v1/estimates.
type Estimate struct {
	DatasetID string `json:"dataset_id"`
	Preset    string `json:"preset"`
	// Estimate is for the requested GPU, or the cheapest when none was named.
	Estimate   estimate.Result     `json:"estimate"`
	Comparison estimate.Comparison `json:"comparison"`
}

// JobList is one page of jobs, newest first.
type JobList = api.JobList

// EventList is one page of a job's events, oldest first.
type EventList = api.EventList

// MetricList is one page of a job's metric points, by attempt then step.
type MetricList = api.MetricList

// ArtifactList is a job's adapter files with short-lived download URLs.
type ArtifactList = api.ArtifactList

// PresetList is the answer of GET /v1/presets.
type PresetList struct {
	Presets []pipeline.Preset `json:"presets"`
	Bounds  []pipeline.Bound  `json:"bounds"`
	Default string            `json:"default"`
}

// GPUList is the answer of GET /v1/gpus.
type GPUList struct {
	GPUs       []catalog.GPU `json:"gpus"`
	PricesDate string        `json:"prices_date"`
}

// ModelList is the answer of GET /v1/models.
type ModelList struct {
	Models  []catalog.Model `json:"models"`
	Default string          `json:"default"`
}

// NotificationList is one page of the caller's notifications.
type NotificationList = api.NotificationList

// JobListOptions filters and pages GET /v1/jobs.
type JobListOptions struct {
	ListOptions
	// Status, when set, lists only jobs in that status.
	Status pipeline.JobStatus
}

// Presets lists the presets and the hyperparameter bounds.
func (cl *Client) Presets(ctx context.Context) (*PresetList, error) {
	var out PresetList
	if err := cl.do(ctx, call{method: http.MethodGet, path: "/v1/presets", idempotent: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// GPUs lists the GPU types with their prices.
func (cl *Client) GPUs(ctx context.Context) (*GPUList, error) {
	var out GPUList
	if err := cl.do(ctx, call{method: http.MethodGet, path: "/v1/gpus", idempotent: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// Models lists the base models.
func (cl *Client) Models(ctx context.Context) (*ModelList, error) {
	var out ModelList
	if err := cl.do(ctx, call{method: http.MethodGet, path: "/v1/models", idempotent: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// Estimate estimates a training run on every GPU.
func (cl *Client) Estimate(ctx context.Context, req TrainingRequest) (*Estimate, error) {
	var out Estimate
	// An estimate changes nothing: safe to retry.
	if err := cl.do(ctx, call{method: http.MethodPost, path: "/v1/estimates", body: req, idempotent: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateJob creates and enqueues a job. With an idempotency key, a retry
// of the same request returns the same job, and the client retries it
// itself after a network error; without one it is sent once.
func (cl *Client) CreateJob(ctx context.Context, req CreateJobRequest, idempotencyKey string) (*api.JobView, error) {
	var out api.JobView
	c := call{method: http.MethodPost, path: "/v1/jobs", body: req, out: &out}
	if idempotencyKey != "" {
		c.header = http.Header{"Idempotency-Key": {idempotencyKey}}
		c.idempotent = true
	}
	if err := cl.do(ctx, c); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListJobs lists the caller's jobs, newest first.
func (cl *Client) ListJobs(ctx context.Context, o JobListOptions) (*JobList, error) {
	q := o.values()
	if o.Status != "" {
		q.Set("status", string(o.Status))
	}
	var out JobList
	if err := cl.do(ctx, call{method: http.MethodGet, path: "/v1/jobs", query: q, idempotent: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetJob returns one job.
func (cl *Client) GetJob(ctx context.Context, id string) (*api.JobView, error) {
	var out api.JobView
	if err := cl.do(ctx, call{method: http.MethodGet, path: "/v1/jobs/" + pathID(id), idempotent: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// CancelJob cancels a job; cancelling twice, or a finished job, returns
// the job as it is.
func (cl *Client) CancelJob(ctx context.Context, id string) (*api.JobView, error) {
	var out api.JobView
	if err := cl.do(ctx, call{method: http.MethodPost, path: "/v1/jobs/" + pathID(id) + "/cancel", idempotent: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteJob removes an ended job with its adapter files, checkpoints,
// events and metric points.
func (cl *Client) DeleteJob(ctx context.Context, id string) error {
	return cl.do(ctx, call{method: http.MethodDelete, path: "/v1/jobs/" + pathID(id), idempotent: true})
}

// ListEvents returns a page of a job's events, oldest first.
func (cl *Client) ListEvents(ctx context.Context, id string, o ListOptions) (*EventList, error) {
	var out EventList
	if err := cl.do(ctx, call{method: http.MethodGet, path: "/v1/jobs/" + pathID(id) + "/events", query: o.values(), idempotent: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListMetrics returns a page of a job's metric points.
func (cl *Client) ListMetrics(ctx context.Context, id string, o ListOptions) (*MetricList, error) {
	var out MetricList
	if err := cl.do(ctx, call{method: http.MethodGet, path: "/v1/jobs/" + pathID(id) + "/metrics", query: o.values(), idempotent: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// Artifacts lists a job's adapter files with fresh download URLs.
func (cl *Client) Artifacts(ctx context.Context, id string) (*ArtifactList, error) {
	var out ArtifactList
	if err := cl.do(ctx, call{method: http.MethodGet, path: "/v1/jobs/" + pathID(id) + "/artifacts", idempotent: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// Notifications lists the caller's notifications, newest first.
func (cl *Client) Notifications(ctx context.Context, o ListOptions) (*NotificationList, error) {
	var out NotificationList
	if err := cl.do(ctx, call{method: http.MethodGet, path: "/v1/notifications", query: o.values(), idempotent: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}
