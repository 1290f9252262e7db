package client

import (
	"context"
	"net/http"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/dataset"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// CreateDatasetRequest is the body of POST /v1/datasets.
type CreateDatasetRequest struct {
	Name      string `json:"name"`
	SizeBytes int64  `json:"size_bytes"`
	// SHA256 is the file's hex digest: single uploads are bound to it and
	// validation checks it.
	SHA256 string `json:"sha256,omitempty"`
	// Format is the shape of the file's lines: messages (when empty),
	// sharegpt or alpaca.
	Format string `json:"format,omitempty"`
}

// CreatedDataset is the answer of POST /v1/datasets: the dataset, awaiting
// its upload, and how to upload it.
type CreatedDataset = api.CreatedDataset

// DatasetList is one page of datasets, newest first.
type DatasetList = api.DatasetList

// CreateDataset creates a dataset record and its upload plan.
func (cl *Client) CreateDataset(ctx context.Context, req CreateDatasetRequest) (*CreatedDataset, error) {
	var out CreatedDataset
	if err := cl.do(ctx, call{method: http.MethodPost, path: "/v1/datasets", body: req, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// CompleteDataset finishes a multipart upload with every part's ETag, in
// part order. Completing twice answers as the first time.
func (cl *Client) CompleteDataset(ctx context.Context, id string, parts []pipeline.CompletedPart) (*api.DatasetView, error) {
	var out api.DatasetView
	body := map[string]any{"parts": parts}
	if err := cl.do(ctx, call{method: http.MethodPost, path: "/v1/datasets/" + pathID(id) + "/complete", body: body, idempotent: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListDatasets lists the caller's datasets, newest first.
func (cl *Client) ListDatasets(ctx context.Context, o ListOptions) (*DatasetList, error) {
	var out DatasetList
	if err := cl.do(ctx, call{method: http.MethodGet, path: "/v1/datasets", query: o.values(), idempotent: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetDataset returns one dataset.
func (cl *Client) GetDataset(ctx context.Context, id string) (*api.DatasetView, error) {
	var out api.DatasetView
	if err := cl.do(ctx, call{method: http.MethodGet, path: "/v1/datasets/" + pathID(id), idempotent: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetReport returns a validated dataset's whole report, every bad line.
func (cl *Client) GetReport(ctx context.Context, id string) (*dataset.Report, error) {
	var out dataset.Report
	if err := cl.do(ctx, call{method: http.MethodGet, path: "/v1/datasets/" + pathID(id) + "/report", idempotent: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteDataset removes a dataset, its file and its report.
func (cl *Client) DeleteDataset(ctx context.Context, id string) error {
	return cl.do(ctx, call{method: http.MethodDelete, path: "/v1/datasets/" + pathID(id), idempotent: true})
}

// ImportDatasetRequest is the body of POST /v1/datasets/import.
type ImportDatasetRequest struct {
	// Source is an https URL or s3://bucket/key.
	Source string `json:"source"`
	// Name is the dataset's name ("": the source's file name).
	Name string `json:"name,omitempty"`
	// SHA256, when given, is checked against the copied file.
	SHA256 string `json:"sha256,omitempty"`
	// Format is messages (when empty), sharegpt or alpaca.
	Format string `json:"format,omitempty"`
}

// ImportDataset creates a dataset the server copies from a source; it
// answers at once with the dataset importing.
func (cl *Client) ImportDataset(ctx context.Context, req ImportDatasetRequest) (*api.DatasetView, error) {
	var out api.DatasetView
	if err := cl.do(ctx, call{method: http.MethodPost, path: "/v1/datasets/import", body: req, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}
