package httpapi_test

import (
	"context"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// withSplitCounts gives a stored dataset the validator's per-example
// counts: every example 1,200 tokens, 600 trained, like readyDataset's mean.
func (a *testAPI) withSplitCounts(owner, id string) {
	a.Helper()
	ctx := context.Background()
	d, err := a.store.GetDataset(ctx, owner, id)
	if err != nil {
		a.Fatal(err)
	}
	each := make([][2]int64, 200)
	for i := range each {
		each[i] = [2]int64{1200, 600}
	}
	d.Validation.Split = &pipeline.SplitTokens{HeldOut: each, First: each}
	if err := a.store.UpdateDataset(ctx, d); err != nil {
		a.Fatal(err)
	}
}

func TestEvaluationFieldsAreChecked(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.readyDataset("alice", "ds_ready", pipeline.DatasetReady)
	a.readyDataset("alice", "ds_other", pipeline.DatasetReady)
	a.readyDataset("alice", "ds_validating", pipeline.DatasetValidating)
	a.readyDataset("bob", "ds_bobs", pipeline.DatasetReady)
	tests := []struct {
		name, body string
		status     int
		field      string
		message    string
	}{
		{"a share over a half", `{"dataset_id":"ds_ready","validation_split":0.6}`, 400, "validation_split", "validation_split must be between 0 and 0.5"},
		{"a negative share", `{"dataset_id":"ds_ready","validation_split":-0.1}`, 400, "validation_split", "validation_split must be between 0 and 0.5"},
		{"a share that is a string", `{"dataset_id":"ds_ready","validation_split":"10%"}`, 400, "", "validation_split"},
		{"both a share and a second dataset", `{"dataset_id":"ds_ready","validation_split":0.1,"validation_dataset_id":"ds_other"}`, 400, "validation_dataset_id", "exclude each other"},
		{"an empty validation dataset id", `{"dataset_id":"ds_ready","validation_dataset_id":""}`, 400, "validation_dataset_id", "validation_dataset_id is an empty string"},
		{"the training dataset as validation dataset", `{"dataset_id":"ds_ready","validation_dataset_id":"ds_ready"}`, 400, "validation_dataset_id", "is the training dataset"},
		{"a validation dataset that is not ready", `{"dataset_id":"ds_ready","validation_dataset_id":"ds_validating"}`, 409, "validation_dataset_id", "is validating"},
		{"another user's validation dataset", `{"dataset_id":"ds_ready","validation_dataset_id":"ds_bobs"}`, 404, "", "not found"},
		{"a validation dataset that does not exist", `{"dataset_id":"ds_ready","validation_dataset_id":"ds_nope"}`, 404, "", "not found"},
	}
	for _, path := range []string{"/v1/estimates", "/v1/jobs"} {
		for _, tt := range tests {
			t.Run(path+" refuses "+tt.name, func(t *testing.T) {
				var e struct {
					Error struct {
						Message string
						Details map[string]any
					}
				}
				status := a.call("POST", path, "alice-token", tt.body, &e)
				if status != tt.status || !strings.Contains(e.Error.Message, tt.message) {
					t.Errorf("POST %s %s = %d %q, want %d and a message containing %q", path, tt.body, status, e.Error.Message, tt.status, tt.message)
				}
				if tt.field != "" && e.Error.Details["field"] != tt.field {
					t.Errorf("POST %s %s: details %v, want field %s", path, tt.body, e.Error.Details, tt.field)
				}
			})
		}
	}
	if n := a.queued(); n != 0 {
		t.Errorf("%d messages queued after only bad requests, want 0", n)
	}
}

type estimateBody struct {
	Estimate struct {
		Evaluation *pipeline.EvaluationEstimate
		Breakdown  []struct{ Name string }
	}
	Comparison struct {
		Estimates []struct{ Evaluation *pipeline.EvaluationEstimate }
	}
}

func TestAnEstimateHoldsOutTheShareAndTimesItsEvaluation(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.readyDataset("alice", "ds_ready", pipeline.DatasetReady)
	a.withSplitCounts("alice", "ds_ready")
	for _, tt := range []struct {
		body                   string
		wantHeld, wantTraining int64
	}{
		{`{"dataset_id":"ds_ready","preset":"fast"}`, 100, 900},                        // the default: a tenth
		{`{"dataset_id":"ds_ready","preset":"fast","validation_split":0.05}`, 50, 950}, // a chosen share
		{`{"dataset_id":"ds_ready","preset":"fast","validation_split":0.5}`, 200, 800}, // capped at 200
	} {
		var out estimateBody
		if status := a.call("POST", "/v1/estimates", "alice-token", tt.body, &out); status != 200 {
			t.Fatalf("POST /v1/estimates %s = %d, want 200", tt.body, status)
		}
		e := out.Estimate.Evaluation
		if e == nil || e.Source != "held_out" || e.Examples != tt.wantHeld || e.TokensTotal != tt.wantHeld*1200 || e.TrainingExamples != tt.wantTraining || e.Evaluations < 1 || e.Seconds <= 0 {
			t.Errorf("POST /v1/estimates %s: evaluation %+v, want %d held out at 1,200 tokens, %d training, timed", tt.body, e, tt.wantHeld, tt.wantTraining)
		}
	}
	var none estimateBody
	a.call("POST", "/v1/estimates", "alice-token", `{"dataset_id":"ds_ready","preset":"fast","validation_split":0}`, &none)
	if none.Estimate.Evaluation != nil {
		t.Errorf("validation_split 0: evaluation %+v, want none", none.Estimate.Evaluation)
	}
	for _, s := range none.Estimate.Breakdown {
		if s.Name == "evaluation" {
			t.Error("validation_split 0: the breakdown has an evaluation stage")
		}
	}
}

func TestAJobWithASecondDatasetRecordsItAndItsEvaluation(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.readyDataset("alice", "ds_ready", pipeline.DatasetReady)
	a.readyDataset("alice", "ds_eval", pipeline.DatasetReady)
	a.withSplitCounts("alice", "ds_eval")
	body := `{"dataset_id":"ds_ready","preset":"fast","validation_dataset_id":"ds_eval"}`
	var est estimateBody
	if status := a.call("POST", "/v1/estimates", "alice-token", body, &est); status != 200 {
		t.Fatalf("POST /v1/estimates = %d, want 200", status)
	}
	if e := est.Estimate.Evaluation; e == nil || e.Source != "dataset" || e.DatasetID != "ds_eval" || e.Examples != 200 || e.TokensTotal != 200*1200 || e.TrainingExamples != 1000 {
		t.Errorf("estimate's evaluation = %+v, want ds_eval's first 200 examples, all 1,000 training", e)
	}
	for _, c := range est.Comparison.Estimates {
		if c.Evaluation == nil || c.Evaluation.DatasetID != "ds_eval" {
			t.Errorf("a comparison's evaluation = %+v, want ds_eval", c.Evaluation)
		}
	}

	var j api.JobView
	if status := a.postJob("alice-token", "", body, &j); status != 201 {
		t.Fatalf("POST /v1/jobs = %d, want 201", status)
	}
	var got api.JobView
	a.call("GET", "/v1/jobs/"+j.ID, "alice-token", "", &got)
	if got.Validation == nil || got.Validation.DatasetID != "ds_eval" || got.Validation.Split != nil {
		t.Errorf("job's validation = %+v, want ds_eval", got.Validation)
	}
	if got.Estimate == nil || got.Estimate.Evaluation == nil || got.Estimate.Evaluation.DatasetID != "ds_eval" || got.Estimate.Evaluation.Evaluations < 1 {
		t.Errorf("job's estimate = %+v, want its evaluation on ds_eval", got.Estimate)
	}

	// The validation dataset cannot go while the job may still read it.
	var e api.ErrorBody
	if status := a.call("DELETE", "/v1/datasets/ds_eval", "alice-token", "", &e); status != 409 ||
		!strings.Contains(e.Error.Message, j.ID) || !strings.Contains(e.Error.Message, "as its validation dataset") {
		t.Errorf("DELETE of a queued job's validation dataset = %d %q, want 409 naming the job and why", status, e.Error.Message)
	}
	a.call("POST", "/v1/jobs/"+j.ID+"/cancel", "alice-token", "", nil)
	if status := a.call("DELETE", "/v1/datasets/ds_eval", "alice-token", "", nil); status != 204 {
		t.Errorf("DELETE after the job was cancelled = %d, want 204", status)
	}
}

func TestAJobWithAShareRecordsIt(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.readyDataset("alice", "ds_ready", pipeline.DatasetReady)
	var j api.JobView
	if status := a.postJob("alice-token", "", `{"dataset_id":"ds_ready","validation_split":0.2}`, &j); status != 201 {
		t.Fatalf("POST /v1/jobs = %d, want 201", status)
	}
	if j.Validation == nil || j.Validation.Split == nil || *j.Validation.Split != 0.2 || j.Validation.DatasetID != "" {
		t.Errorf("job's validation = %+v, want split 0.2", j.Validation)
	}
	// Without per-example counts the estimate takes the mean example.
	if e := j.Estimate.Evaluation; e == nil || e.Examples != 200 || e.TokensTotal != 200*1200 {
		t.Errorf("job's evaluation estimate = %+v, want 200 examples at the mean", e)
	}
	var d api.JobView
	if status := a.postJob("alice-token", "", `{"dataset_id":"ds_ready"}`, &d); status != 201 || d.Validation != nil {
		t.Errorf("a job without evaluation fields = %d, validation %+v; want 201 and none (the default)", status, d.Validation)
	}
}
