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

func TestARedispatchedAttemptResumesFromTheLatestCheckpoint(t *testing.T) {
	file := func(step string) []pipeline.CheckpointFile {
		return []pipeline.CheckpointFile{{Name: contract.ArtifactAdapterModel, Key: "checkpoints/x/" + step, SizeBytes: 64, SHA256: strings.Repeat("c", 64)}}
	}
	tests := []struct {
		name        string
		checkpoints []pipeline.Checkpoint
		wantStep    int64
		wantID      string
	}{
		{"a job without checkpoints starts at step 0", nil, 0, ""},
		{"a job with checkpoints resumes from the highest step", []pipeline.Checkpoint{
			{ID: "ck_10_1", Step: 10, Attempt: 1, Files: file("10")},
			{ID: "ck_20_1", Step: 20, Attempt: 1, Files: file("20")},
		}, 20, "ck_20_1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			hp, _ := pipeline.ResolveHyperparameters("fast", pipeline.HyperparameterOverrides{})
			j := &pipeline.Job{ID: "job_1", Owner: "alice", DatasetID: "ds_1", BaseModel: catalog.DefaultModelID, GPUType: "a100-80gb",
				Preset: "fast", Hyperparameters: hp, Status: pipeline.JobQueued, Attempt: 1, Checkpoints: tt.checkpoints, CreatedAt: time.Now().UTC(),
				Estimate: &pipeline.JobEstimate{GPU: "a100-80gb", ExecutionTimeoutSeconds: 7200, PriceUSDPerSecond: 0.00076}}
			if err := e.store.CreateJob(context.Background(), j); err != nil {
				t.Fatal(err)
			}
			msg, _ := json.Marshal(pipeline.JobMessage{Owner: "alice", JobID: "job_1"})
			if err := e.d.HandleMessage(context.Background(), msg, 1); err != nil {
				t.Fatal(err)
			}
			if len(e.gpu.runs) != 1 {
				t.Fatalf("%d runs, want 1", len(e.gpu.runs))
			}
			raw, _ := json.Marshal(e.gpu.runs[0].Input)
			spec, err := contract.ParseJobSpec(raw)
			if err != nil {
				t.Fatal(err)
			}
			if spec.Attempt != 2 {
				t.Errorf("spec attempt = %d, want 2", spec.Attempt)
			}
			if tt.wantStep == 0 {
				if spec.Resume != nil {
					t.Errorf("spec resume = %+v, want none", spec.Resume)
				}
				return
			}
			if r := spec.Resume; r == nil || r.Step != tt.wantStep || r.CheckpointID != tt.wantID || len(r.Files) != 1 || r.Files[0].SizeBytes != 64 {
				t.Errorf("spec resume = %+v, want step %d (%s) with its file", r, tt.wantStep, tt.wantID)
			}
		})
	}
}
