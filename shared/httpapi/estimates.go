package httpapi

import (
	"context"
	"fmt"
	"net/http"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/estimate"
	"github.com/brightrun/brightrun/shared/holdout"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// trainingRequest is the body of POST /v1/estimates; POST /v1/jobs adds
// name and budget_usd.
type trainingRequest struct {
	DatasetID       *string                           `json:"dataset_id"`
	Preset          string                            `json:"preset,omitempty"`
	Hyperparameters *pipeline.HyperparameterOverrides `json:"hyperparameters,omitempty"`
	GPUType         string                            `json:"gpu_type,omitempty"`
	BaseModel       string                            `json:"base_model,omitempty"`
	// ValidationSplit is the share of the dataset held out for evaluation
	// (0 to holdout.MaxShare; 0 evaluates nothing); ValidationDatasetID a
	// second ready dataset evaluated instead, the whole dataset training.
	// Neither: the worker's default share. Not both.
	ValidationSplit     *float64 `json:"validation_split,omitempty"`
	ValidationDatasetID *string  `json:"validation_dataset_id,omitempty"`
}

// plan is a resolved training request: everything a job needs.
type plan struct {
	dataset    *pipeline.Dataset
	preset     string
	hp         pipeline.Hyperparameters
	model      catalog.Model
	selected   estimate.Result
	comparison estimate.Comparison
	// validation is what the job records of its evaluation: nil for the
	// default share.
	validation *pipeline.JobValidation
}

// checkValidation checks the request's evaluation fields on their own.
func checkValidation(req trainingRequest) error {
	switch {
	case req.ValidationSplit != nil && req.ValidationDatasetID != nil:
		return &pipeline.Error{Code: pipeline.EInvalid,
			Message: "validation_split and validation_dataset_id exclude each other: hold out a share of the dataset, or evaluate on a second dataset",
			Details: map[string]string{"field": "validation_dataset_id"}}
	case req.ValidationSplit != nil:
		if v := *req.ValidationSplit; !(v >= 0 && v <= holdout.MaxShare) {
			return &pipeline.Error{Code: pipeline.EInvalid,
				Message: fmt.Sprintf("validation_split must be between 0 and %g (the share of the dataset held out for evaluation; 0 evaluates nothing), got %v", holdout.MaxShare, v),
				Details: map[string]string{"field": "validation_split"}}
		}
	}
	return nil
}

// evaluation resolves how a job on d evaluates: what the job records and
// what the estimator needs.
func (s *Server) evaluation(ctx context.Context, owner string, d *pipeline.Dataset, req trainingRequest) (*pipeline.JobValidation, *estimate.Evaluation, error) {
	var held [][2]int64
	if d.Validation.Split != nil {
		held = d.Validation.Split.HeldOut
	}
	switch {
	case req.ValidationSplit != nil:
		split := *req.ValidationSplit
		return &pipeline.JobValidation{Split: &split}, &estimate.Evaluation{Split: &split, HeldOut: held}, nil
	case req.ValidationDatasetID != nil:
		id := *req.ValidationDatasetID
		if id == d.ID {
			return nil, nil, &pipeline.Error{Code: pipeline.EInvalid,
				Message: fmt.Sprintf("validation_dataset_id %s is the training dataset: name another dataset, or hold out a share with validation_split", id),
				Details: map[string]string{"field": "validation_dataset_id"}}
		}
		vd, err := s.Store.GetDataset(ctx, owner, id)
		if err != nil {
			return nil, nil, err
		}
		if vd.Status != pipeline.DatasetReady || vd.Validation == nil {
			return nil, nil, &pipeline.Error{Code: pipeline.EPrecondition,
				Message: fmt.Sprintf("validation dataset %s is %s: only a ready dataset can be evaluated on", vd.ID, vd.Status),
				Details: map[string]string{"field": "validation_dataset_id", "status": string(vd.Status)}}
		}
		second := &estimate.EvaluationDataset{Examples: vd.Validation.Examples, TokensTotal: vd.Validation.Tokens.Total, TokensTrained: vd.Validation.Tokens.Trained}
		if vd.Validation.Split != nil {
			second.First = vd.Validation.Split.First
		}
		return &pipeline.JobValidation{DatasetID: vd.ID}, &estimate.Evaluation{Dataset: second}, nil
	}
	return nil, &estimate.Evaluation{HeldOut: held}, nil
}

// resolve checks a training request against the owner's dataset, the
// presets and the catalog, and estimates it on every GPU.
func (s *Server) resolve(r *http.Request, owner string, req trainingRequest) (*plan, error) {
	if req.DatasetID == nil || *req.DatasetID == "" {
		return nil, pipeline.Errorf(pipeline.EInvalid, "dataset_id is required")
	}
	if err := checkValidation(req); err != nil {
		return nil, err
	}
	d, err := s.Store.GetDataset(r.Context(), owner, *req.DatasetID)
	if err != nil {
		return nil, err
	}
	if d.Status != pipeline.DatasetReady || d.Validation == nil {
		return nil, &pipeline.Error{Code: pipeline.EPrecondition,
			Message: fmt.Sprintf("dataset %s is %s: only a ready dataset can be trained on", d.ID, d.Status),
			Details: map[string]string{"field": "dataset_id", "status": string(d.Status)}}
	}
	preset := req.Preset
	if preset == "" {
		preset = pipeline.DefaultPreset
	}
	var o pipeline.HyperparameterOverrides
	if req.Hyperparameters != nil {
		o = *req.Hyperparameters
	}
	hp, err := pipeline.ResolveHyperparameters(preset, o)
	if err != nil {
		return nil, err
	}
	modelID := req.BaseModel
	if modelID == "" {
		modelID = catalog.DefaultModelID
	}
	m, err := s.Catalog.Model(modelID)
	if err != nil {
		return nil, err
	}
	validation, ev, err := s.evaluation(r.Context(), owner, d, req)
	if err != nil {
		return nil, err
	}
	lengths := d.Validation.Stats.TokensPerExample
	in := estimate.Input{
		Dataset: estimate.Dataset{
			Examples: d.Validation.Examples, TokensTotal: d.Validation.Tokens.Total, TokensTrained: d.Validation.Tokens.Trained,
			TokensPerExampleMax: lengths.Max, TokensPerExampleP95: lengths.P95, TokensPerExampleP50: lengths.P50, TokensPerExampleMin: lengths.Min,
		},
		Hyperparameters: hp, Model: m.ID,
		Measured:   s.measurements(r.Context(), m.ID),
		Evaluation: ev,
	}
	cmp, err := estimate.Compare(s.Catalog, in)
	if err != nil {
		return nil, err
	}
	gpu := req.GPUType
	if gpu == "" {
		gpu = cmp.CheapestGPU
	}
	in.GPU = gpu
	sel, err := estimate.Estimate(s.Catalog, in)
	if err != nil {
		return nil, err
	}
	if validation != nil && validation.DatasetID != "" {
		// The estimator knows the second dataset's counts, not its id.
		for _, e := range append([]*estimate.Result{&sel}, pointers(cmp.Estimates)...) {
			if e.Evaluation != nil {
				e.Evaluation.DatasetID = validation.DatasetID
			}
		}
	}
	return &plan{dataset: d, preset: preset, hp: hp, model: m, selected: sel, comparison: cmp, validation: validation}, nil
}

func pointers(rs []estimate.Result) []*estimate.Result {
	out := make([]*estimate.Result, len(rs))
	for i := range rs {
		out[i] = &rs[i]
	}
	return out
}

// measurements returns what finished jobs measured of model on every GPU,
// newest first, for the estimator to learn from. They only refine the
// estimate: when they cannot be read, the estimate rests on the table and
// the failure is logged.
func (s *Server) measurements(ctx context.Context, model string) []pipeline.Measurement {
	if s.JobLog == nil {
		return nil
	}
	var out []pipeline.Measurement
	for _, g := range s.Catalog.GPUs() {
		ms, err := s.JobLog.ListMeasurements(ctx, model, g.ID, estimate.MaxMeasuredJobs)
		if err != nil {
			s.log().WarnContext(ctx, "list measurements: estimating from the table", "model", model, "gpu", g.ID, "err", err)
			continue
		}
		for _, m := range ms {
			out = append(out, *m)
		}
	}
	return out
}

type estimateResponse struct {
	DatasetID string `json:"dataset_id"`
	Preset    string `json:"preset"`
	// Estimate is for the requested GPU, or the cheapest when none was named.
	Estimate   estimate.Result     `json:"estimate"`
	Comparison estimate.Comparison `json:"comparison"`
}

func (s *Server) createEstimate(w http.ResponseWriter, r *http.Request, owner string) error {
	var req trainingRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	p, err := s.resolve(r, owner, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, estimateResponse{DatasetID: p.dataset.ID, Preset: p.preset, Estimate: p.selected, Comparison: p.comparison})
	return nil
}

func (s *Server) listPresets(w http.ResponseWriter, r *http.Request, owner string) error {
	writeJSON(w, http.StatusOK, map[string]any{"presets": pipeline.Presets(), "bounds": pipeline.Bounds, "default": pipeline.DefaultPreset})
	return nil
}

func (s *Server) listGPUs(w http.ResponseWriter, r *http.Request, owner string) error {
	prices := s.Catalog.Prices()
	writeJSON(w, http.StatusOK, map[string]any{"gpus": s.Catalog.GPUs(), "prices_date": prices.Date})
	return nil
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request, owner string) error {
	writeJSON(w, http.StatusOK, map[string]any{"models": s.Catalog.Models(), "default": catalog.DefaultModelID})
	return nil
}
