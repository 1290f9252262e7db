// Package api holds the JSON documents of the HTTP API v1 that the server
// writes and its clients read: the views of datasets and jobs, upload
// plans, lists and the error shape. The server (shared/httpapi) and the
// CLI's client (shared/client) share them, so that the client needs
// neither the server nor the Lambda libraries it links.
package api

import (
	"time"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// ErrorBody is the shape of every error response.
type ErrorBody struct {
	Error pipeline.Error `json:"error"`
}

// DatasetView is a dataset as the API shows it.
type DatasetView struct {
	ID        string                 `json:"id"`
	Name      string                 `json:"name"`
	Status    pipeline.DatasetStatus `json:"status"`
	SizeBytes int64                  `json:"size_bytes"`
	SHA256    string                 `json:"sha256,omitempty"`
	// Format is the shape of the uploaded file's lines: messages,
	// sharegpt or alpaca. Jobs train on the messages form of the others,
	// converted while validating.
	Format pipeline.DatasetFormat `json:"format"`
	// Source is where an imported dataset was copied from: the URL, or
	// s3://bucket/key. Absent for an upload.
	Source     string                      `json:"source,omitempty"`
	Validation *pipeline.ValidationSummary `json:"validation,omitempty"`
	// DefaultSplit is how a job that does not choose its evaluation
	// divides the dataset: the examples and tokens it holds out and those
	// it trains on. Absent for a dataset that is not valid or was
	// validated before these counts were recorded.
	DefaultSplit *pipeline.DatasetSplit `json:"default_split,omitempty"`
	Error        string                 `json:"error,omitempty"`
	CreatedAt    time.Time              `json:"created_at"`
	UpdatedAt    time.Time              `json:"updated_at"`
}

// ViewDataset is d as the API shows it. The per-example counts behind the
// split stay on the record: the view shows what they add up to.
func ViewDataset(d *pipeline.Dataset) DatasetView {
	v := DatasetView{
		ID: d.ID, Name: d.Name, Status: d.Status, SizeBytes: d.SizeBytes, SHA256: d.SHA256, Format: d.Format,
		Validation: d.Validation, Error: d.Error, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt,
	}
	if d.Source != nil {
		v.Source = d.Source.String()
	}
	if v.Format == "" {
		v.Format = pipeline.FormatMessages // a record made before formats
	}
	if d.Validation != nil {
		if sp, ok := d.Validation.SplitOf(nil); ok {
			v.DefaultSplit = &sp
		}
		summary := *d.Validation
		summary.Split = nil
		v.Validation = &summary
	}
	return v
}

// Upload tells the client how to send the file: one PUT, or parts.
type Upload struct {
	// Type is "single" or "multipart".
	Type    string                  `json:"type"`
	Request *pipeline.SignedRequest `json:"request,omitempty"`
	// Multipart fields.
	UploadID    string       `json:"upload_id,omitempty"`
	PartSize    int64        `json:"part_size,omitempty"`
	Parts       []UploadPart `json:"parts,omitempty"`
	CompleteURL string       `json:"complete_path,omitempty"`
}

// UploadPart is one part's presigned PUT.
type UploadPart struct {
	PartNumber int   `json:"part_number"`
	SizeBytes  int64 `json:"size_bytes"`
	pipeline.SignedRequest
}

// CreatedDataset is the answer of POST /v1/datasets: the dataset, awaiting
// its upload, and how to upload it.
type CreatedDataset struct {
	Dataset DatasetView `json:"dataset"`
	Upload  Upload      `json:"upload"`
}

// DatasetList is one page of datasets, newest first.
type DatasetList struct {
	Datasets   []DatasetView `json:"datasets"`
	NextCursor string        `json:"next_cursor,omitempty"`
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
	// Wait says where a queued job held by fair dispatch stands, and why.
	Wait       *pipeline.JobWait       `json:"wait,omitempty"`
	Validation *pipeline.JobValidation `json:"validation,omitempty"`
	Estimate   *pipeline.JobEstimate   `json:"estimate,omitempty"`
	Cost       *pipeline.JobCost       `json:"cost,omitempty"`
	// CostSoFar is a running job's cost until now: every run's billed
	// time (RunPod's figure where it reported one), at the estimate's price.
	CostSoFar  *pipeline.JobCost  `json:"cost_so_far,omitempty"`
	BudgetUSD  *float64           `json:"budget_usd,omitempty"`
	Error      *pipeline.JobError `json:"error,omitempty"`
	StartedAt  *time.Time         `json:"started_at,omitempty"`
	FinishedAt *time.Time         `json:"finished_at,omitempty"`
	CreatedAt  time.Time          `json:"created_at"`
	UpdatedAt  time.Time          `json:"updated_at"`
}

// ViewJob is j as the API shows it now.
func ViewJob(j *pipeline.Job) JobView { return ViewJobAt(j, time.Now()) }

// ViewJobAt is j as the API shows it at now.
func ViewJobAt(j *pipeline.Job, now time.Time) JobView {
	return JobView{CostSoFar: pipeline.CostSoFar(j, now),
		ID: j.ID, Name: j.Name, Status: j.Status, Stage: j.Stage, DatasetID: j.DatasetID, BaseModel: j.BaseModel,
		GPUType: j.GPUType, Preset: j.Preset, Hyperparameters: j.Hyperparameters, Attempt: j.Attempt, Progress: j.Progress, Wait: viewWait(j),
		Validation: j.Validation, Estimate: j.Estimate, Cost: j.Cost, BudgetUSD: j.BudgetUSD, Error: j.Error, StartedAt: j.StartedAt,
		FinishedAt: j.FinishedAt, CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt,
	}
}

// viewWait is where a queued job held by fair dispatch stands; a job that
// left the queue shows none.
func viewWait(j *pipeline.Job) *pipeline.JobWait {
	if j.Wait == nil || j.Status != pipeline.JobQueued {
		return nil
	}
	w := *j.Wait
	w.Holds = 0 // bookkeeping, not for the user
	return &w
}

// JobList is one page of jobs, newest first.
type JobList struct {
	Jobs       []JobView `json:"jobs"`
	NextCursor string    `json:"next_cursor,omitempty"`
}

// EventList is one page of a job's events, oldest first.
type EventList struct {
	Events     []*pipeline.Event `json:"events"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

// MetricList is one page of a job's metric points, by attempt then step.
type MetricList struct {
	Metrics    []pipeline.MetricPoint `json:"metrics"`
	NextCursor string                 `json:"next_cursor,omitempty"`
}

// ArtifactView is one adapter file with a short-lived download URL.
type ArtifactView struct {
	Name      string                 `json:"name"`
	SizeBytes int64                  `json:"size_bytes"`
	SHA256    string                 `json:"sha256"`
	Download  pipeline.SignedRequest `json:"download"`
}

// ArtifactList is a job's adapter files with short-lived download URLs.
type ArtifactList struct {
	JobID     string             `json:"job_id"`
	Status    pipeline.JobStatus `json:"status"`
	Artifacts []ArtifactView     `json:"artifacts"`
	// Partial is set when the artifacts are the adapter of the job's last
	// checkpoint (of step PartialStep): the job ended before its own.
	Partial     bool             `json:"partial,omitempty"`
	PartialStep int64            `json:"partial_step,omitempty"`
	Checkpoints []CheckpointView `json:"checkpoints"`
}

// CheckpointView is one stored checkpoint with short-lived download URLs.
type CheckpointView struct {
	ID         string         `json:"id"`
	Step       int64          `json:"step"`
	TotalSteps int64          `json:"total_steps"`
	Epoch      float64        `json:"epoch"`
	Attempt    int            `json:"attempt"`
	Reason     string         `json:"reason"`
	Partial    bool           `json:"partial"`
	Loss       *float64       `json:"loss,omitempty"`
	EvalLoss   *float64       `json:"eval_loss,omitempty"`
	CreatedAt  time.Time      `json:"created_at"`
	Files      []ArtifactView `json:"files"`
}

// NotificationList is one page of the caller's notifications, newest first.
type NotificationList struct {
	Notifications []*pipeline.Notification `json:"notifications"`
	NextCursor    string                   `json:"next_cursor,omitempty"`
}

// CallbackAnswer is the body of every answer to a worker callback and to
// RunPod's webhook: the worker stops when Action is "stop".
type CallbackAnswer struct {
	Action string          `json:"action,omitempty"`
	Reason string          `json:"reason,omitempty"`
	Error  *pipeline.Error `json:"error,omitempty"`
}
