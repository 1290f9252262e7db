package dispatch_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// jobWithValidation stores a queued job of alice's on ds_1 that evaluates
// as v says, and returns its queue message.
func (e *env) jobWithValidation(t *testing.T, v *pipeline.JobValidation) []byte {
	t.Helper()
	hp, _ := pipeline.ResolveHyperparameters("fast", pipeline.HyperparameterOverrides{})
	j := &pipeline.Job{ID: "job_1", Owner: "alice", DatasetID: "ds_1", BaseModel: catalog.DefaultModelID, GPUType: "a100-80gb",
		Preset: "fast", Hyperparameters: hp, Status: pipeline.JobQueued, CreatedAt: time.Now().UTC(), Validation: v,
		Estimate: &pipeline.JobEstimate{GPU: "a100-80gb", ExecutionTimeoutSeconds: 7200, PriceUSDPerSecond: 0.00076}}
	if err := e.store.CreateJob(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(pipeline.JobMessage{Owner: "alice", JobID: "job_1"})
	return body
}

// submittedSpec dispatches msg and parses the one spec submitted.
func (e *env) submittedSpec(t *testing.T, msg []byte) *contract.JobSpec {
	t.Helper()
	if err := e.d.HandleMessage(context.Background(), msg, 1); err != nil {
		t.Fatal(err)
	}
	if len(e.gpu.runs) != 1 {
		t.Fatalf("%d runs, want 1 (job %+v)", len(e.gpu.runs), e.get(t, "job_1").Error)
	}
	raw, _ := json.Marshal(e.gpu.runs[0].Input)
	spec, err := contract.ParseJobSpec(raw)
	if err != nil {
		t.Fatalf("the submitted input is not a valid job spec: %v", err)
	}
	return spec
}

func (e *env) validationDataset(t *testing.T, id string, status pipeline.DatasetStatus) {
	t.Helper()
	ds := &pipeline.Dataset{ID: id, Owner: "alice", Name: id, Status: status, SizeBytes: 4321,
		ObjectKey: pipeline.DatasetKey("alice", id), ContentSHA256: strings.Repeat("cd", 32), CreatedAt: time.Now().UTC(),
		Validation: &pipeline.ValidationSummary{Valid: true, Examples: 300, Tokens: pipeline.TokenCounts{Total: 90000, Trained: 30000}}}
	if err := e.store.CreateDataset(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
}

func TestTheSpecCarriesTheJobsShare(t *testing.T) {
	e := newEnv(t)
	split := 0.25
	spec := e.submittedSpec(t, e.jobWithValidation(t, &pipeline.JobValidation{Split: &split}))
	if v := spec.Validation; v == nil || v.Split == nil || *v.Split != 0.25 || v.Dataset != nil {
		t.Errorf("spec validation = %+v, want split 0.25 and no dataset", v)
	}
}

func TestAJobWithoutEvaluationSettingsLeavesTheWorkersDefault(t *testing.T) {
	e := newEnv(t)
	if spec := e.submittedSpec(t, e.jobWithValidation(t, nil)); spec.Validation != nil {
		t.Errorf("spec validation = %+v, want none (the worker's default share)", spec.Validation)
	}
}

func TestTheSpecCarriesTheValidationDataset(t *testing.T) {
	e := newEnv(t)
	e.validationDataset(t, "ds_eval", pipeline.DatasetReady)
	spec := e.submittedSpec(t, e.jobWithValidation(t, &pipeline.JobValidation{DatasetID: "ds_eval"}))
	v := spec.Validation
	if v == nil || v.Dataset == nil || v.Split != nil {
		t.Fatalf("spec validation = %+v, want the second dataset", v)
	}
	d := v.Dataset
	if d.SHA256 != strings.Repeat("cd", 32) || d.SizeBytes != 4321 || d.Format != contract.DatasetFormatChatJSONL ||
		d.Examples == nil || *d.Examples != 300 || d.TokensTotal == nil || *d.TokensTotal != 90000 || d.TokensTrained == nil || *d.TokensTrained != 30000 {
		t.Errorf("spec validation dataset = %+v, want ds_eval's digest, size, format and counts", d)
	}
	if !strings.Contains(d.URL, "ds_eval") || d.URL == spec.Dataset.URL {
		t.Errorf("validation dataset URL = %q, want ds_eval's download, not the training dataset's %q", d.URL, spec.Dataset.URL)
	}
}

func TestAValidationDatasetThatIsNotReadyFailsTheJob(t *testing.T) {
	for _, status := range []pipeline.DatasetStatus{pipeline.DatasetValidating, pipeline.DatasetInvalid} {
		t.Run(string(status), func(t *testing.T) {
			e := newEnv(t)
			e.validationDataset(t, "ds_eval", status)
			if err := e.d.HandleMessage(context.Background(), e.jobWithValidation(t, &pipeline.JobValidation{DatasetID: "ds_eval"}), 1); err != nil {
				t.Fatalf("HandleMessage = %v, want nil (retrying cannot help)", err)
			}
			j := e.get(t, "job_1")
			if len(e.gpu.runs) != 0 || j.Status != pipeline.JobFailed || j.Error == nil || !strings.Contains(j.Error.Message, "validation dataset ds_eval is "+string(status)) {
				t.Errorf("%d runs, job %s %+v; want no run and the job failed naming the validation dataset", len(e.gpu.runs), j.Status, j.Error)
			}
		})
	}
}
