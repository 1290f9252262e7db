package httpapi_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/api"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// TestACompletedJobRecordsWhatItMeasured follows a job from its creation
// to its completed callback: the job spec's budget is kept with the
// estimate, the run's figures are stored for the estimator, and the job
// reports the estimate's error.
func TestACompletedJobRecordsWhatItMeasured(t *testing.T) {
	t.Run("a run on a GPU is stored for the estimator", func(t *testing.T) { testCompletedJob(t, "cuda", 1) })
	t.Run("a run on the CPU is not", func(t *testing.T) { testCompletedJob(t, "cpu", 0) })
	t.Run("nor one of the RunPod emulator", func(t *testing.T) { testCompletedJob(t, "emulated", 0) })
}

func testCompletedJob(t *testing.T, device string, wantMeasurements int) {
	a := newTestAPI(t, httpapi.Config{})
	a.api.CallbackSecret = master
	a.readyDataset("alice", "ds_ready", pipeline.DatasetReady)
	created := time.Now().UTC().Add(-900 * time.Second).Truncate(time.Second)
	a.api.Now = func() time.Time { return created }
	a.api.Jobs.Now = a.api.Now
	var j api.JobView
	if status := a.postJob("alice-token", "", `{"dataset_id":"ds_ready","gpu_type":"h100-80gb"}`, &j); status != 201 {
		t.Fatalf("POST /v1/jobs = %d, want 201", status)
	}
	// Qwen3-Next on an H100 at max_seq_length 4096 plans 8192 tokens.
	if j.Estimate == nil || j.Estimate.MicroBatchTokens != 8192 {
		t.Fatalf("job estimate = %+v, want micro_batch_tokens 8192", j.Estimate)
	}
	// As dispatch leaves it: attempt 1, submitted.
	if _, err := pipeline.TransitionJob(context.Background(), a.store, "alice", j.ID, pipeline.JobSubmitted, func(cur *pipeline.Job) error {
		cur.Attempt = 1
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	a.api.Now, a.api.Jobs.Now = nil, nil
	started := `{"worker_id":"w1","runpod_job_id":"rp-1","worker_version":"1","gpu":null}`
	if status, _ := a.callback("alice", j.ID, 1, 1, contract.TypeStarted, started, nil); status != 200 {
		t.Fatalf("started callback = %d, want 200", status)
	}
	completed := `{"final_loss":0.9,"steps":189,"train_seconds":640.5,"tokens_trained":1800000,"metrics":{"quantization":"nf4","device":"` + device + `",` +
		`"micro_batches":564,"padded_tokens_seen":3892320,"seconds_per_micro_batch":1.1356,"tokens_per_second":5620.6,"load_seconds":141.2,"eval_seconds":40.5}}`
	for seq := int64(2); seq <= 3; seq++ { // a retry stores nothing twice
		if status, ans := a.callback("alice", j.ID, 1, seq, contract.TypeCompleted, completed, nil); status != 200 {
			t.Fatalf("completed callback = %d %+v, want 200", status, ans)
		}
	}

	ms, err := a.store.ListMeasurements(context.Background(), catalog.DefaultModelID, "h100-80gb", 10)
	if err != nil {
		t.Fatal(err)
	}
	want := pipeline.Measurement{JobID: j.ID, Owner: "alice", Model: catalog.DefaultModelID, GPU: "h100-80gb", Quantization: "nf4",
		// 640.5 s of training stage, 40.5 s of them evaluating.
		MicroBatchTokens: 8192, MicroBatches: 564, PaddedTokens: 3_892_320, TrainSeconds: 600, EvalSeconds: 40.5, SecondsPerMicroBatch: 1.1356,
		TokensPerSecond: 5620.6, LoadSeconds: 141.2}
	if len(ms) != wantMeasurements {
		t.Fatalf("ListMeasurements = %d measurements, want %d", len(ms), wantMeasurements)
	}
	if len(ms) == 1 {
		got := *ms[0]
		if !got.JobCreatedAt.Equal(created) || got.RecordedAt.IsZero() {
			t.Errorf("measurement times = created %v, recorded %v; want created %v and a record time", got.JobCreatedAt, got.RecordedAt, created)
		}
		got.JobCreatedAt, got.RecordedAt = time.Time{}, time.Time{}
		if got != want {
			t.Errorf("measurement = %+v, want %+v", got, want)
		}
	}

	var view api.JobView
	if status := a.call("GET", "/v1/jobs/"+j.ID, "alice-token", "", &view); status != 200 || view.Cost == nil {
		t.Fatalf("GET /v1/jobs/%s = %d, cost %+v; want 200 with a cost", j.ID, status, view.Cost)
	}
	c, est := view.Cost, view.Estimate.DurationSeconds
	if c.DurationSeconds < 899 || c.DurationSeconds > 960 || c.EstimatedDurationSeconds != est.Expected {
		t.Errorf("cost durations = %v s actual, %v s estimated; want about 900 and the estimate's %v", c.DurationSeconds, c.EstimatedDurationSeconds, est.Expected)
	}
	wantErr := math.Round((est.Expected-c.DurationSeconds)/c.DurationSeconds*1000) / 1000
	inRange := c.DurationSeconds >= est.Low && c.DurationSeconds <= est.High
	if c.DurationError == nil || *c.DurationError != wantErr || c.DurationInRange == nil || *c.DurationInRange != inRange {
		t.Errorf("duration error = %v, in range %v; want %v, %v", deref(c.DurationError), derefB(c.DurationInRange), wantErr, inRange)
	}
	if c.USD > 0 && (c.CostError == nil || *c.CostError != math.Round((c.EstimatedUSD-c.USD)/c.USD*1000)/1000) {
		t.Errorf("cost error = %v for $%v estimated, $%v actual", deref(c.CostError), c.EstimatedUSD, c.USD)
	}
}

func deref(p *float64) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

func derefB(p *bool) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

// TestEstimatesLearnFromFinishedJobs stores what finished jobs measured
// (training at twice the table's time) and asks for an estimate: from the
// third job on it rests on them.
func TestEstimatesLearnFromFinishedJobs(t *testing.T) {
	tests := []struct {
		jobs      int
		wantBasis string
	}{
		{2, "table"},
		{3, "measured"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d finished jobs make the estimate %s", tt.jobs, tt.wantBasis), func(t *testing.T) {
			a := newTestAPI(t, httpapi.Config{})
			a.readyDataset("alice", "ds_ready", pipeline.DatasetReady)
			tp, _ := catalog.Default().Throughput(catalog.DefaultModelID, "h100-80gb")
			for i := range tt.jobs {
				table := 100*tp.MicroBatchSeconds + 800_000/tp.TokensPerSecond
				m := &pipeline.Measurement{JobID: fmt.Sprintf("job_%d", i), Owner: "bob", Model: catalog.DefaultModelID, GPU: "h100-80gb",
					Quantization: "nf4", JobCreatedAt: time.Now().Add(time.Duration(-i) * time.Hour), MicroBatches: 100, PaddedTokens: 800_000,
					TrainSeconds: 2 * table, LoadSeconds: 100}
				if err := a.store.PutMeasurement(context.Background(), m); err != nil {
					t.Fatal(err)
				}
			}
			var out struct {
				Estimate struct {
					Throughput struct {
						Basis        string  `json:"basis"`
						MeasuredJobs int     `json:"measured_jobs"`
						TokensPerSec float64 `json:"tokens_per_second"`
					} `json:"throughput"`
				} `json:"estimate"`
			}
			if status := a.call("POST", "/v1/estimates", "alice-token", `{"dataset_id":"ds_ready","gpu_type":"h100-80gb"}`, &out); status != 200 {
				t.Fatalf("POST /v1/estimates = %d, want 200", status)
			}
			th := out.Estimate.Throughput
			wantTPS := tp.TokensPerSecond
			if tt.wantBasis == "measured" {
				wantTPS = math.Round(tp.TokensPerSecond / 2)
			}
			if th.Basis != tt.wantBasis || th.MeasuredJobs != tt.jobs || th.TokensPerSec != wantTPS {
				t.Errorf("throughput = %+v, want basis %s on %d jobs at %v tokens/s", th, tt.wantBasis, tt.jobs, wantTPS)
			}
		})
	}
}
