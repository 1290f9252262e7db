package localstack_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/awstest"
	"github.com/brightrun/brightrun/shared/localstack"
	"github.com/brightrun/brightrun/shared/reconcile"
)

// BRIGHTRUN_GPU=local-worker: the real worker (gpu-image/) trains a tiny
// Qwen3-Next on the CPU for a job submitted through the API.
func TestTheLocalWorkerTrainsForReal(t *testing.T) {
	s := startLocalWorker(t, 0)
	ds := readyDataset(t, s)
	j := createJob(t, s, ds, `,"preset":"fast","hyperparameters":{"batch_size":4,"gradient_accumulation":1,"epochs":2,"learning_rate":0.001}`)
	waitFor(t, 5*time.Minute, func() bool { j = getJob(t, s, j.ID); return j.Status == "completed" || j.Status == "failed" }, "the local worker to train")
	if j.Status != "completed" || j.Progress == nil || j.Progress.Step != j.Progress.TotalSteps || j.Progress.TotalSteps != 20 {
		t.Fatalf("job = %s, progress %+v, error %+v; want completed after 20 steps (40 examples / 4 × 2 epochs)", j.Status, j.Progress, j.Error)
	}
	var arts struct{ Artifacts []struct{ Name string } }
	call(t, "GET", s.URL()+"/v1/jobs/"+j.ID+"/artifacts", "", &arts)
	if len(arts.Artifacts) != 2 {
		t.Errorf("artifacts = %+v, want the adapter's two files", arts.Artifacts)
	}
}

// The crash knob: the real worker exits hard after step 10 (the end of
// epoch 1, whose checkpoint it uploaded first); the local worker re-runs
// the same input as RunPod retries a crash, and the re-run resumes from
// the stored checkpoint: the job completes, and its metric series never
// goes back to the steps the crashed run had done.
func TestACrashedLocalWorkerResumesFromItsCheckpoint(t *testing.T) {
	s := startLocalWorker(t, 10)
	ds := readyDataset(t, s)
	j := createJob(t, s, ds, `,"preset":"fast","hyperparameters":{"batch_size":4,"gradient_accumulation":1,"epochs":2,"learning_rate":0.001}`)
	waitFor(t, 5*time.Minute, func() bool { j = getJob(t, s, j.ID); return j.Status == "completed" || j.Status == "failed" }, "the local worker to crash, resume and train")
	if j.Status != "completed" || j.Progress == nil || j.Progress.Step != 20 || j.Progress.TotalSteps != 20 || j.Attempt != 1 {
		t.Fatalf("job = %s attempt %d, progress %+v, error %+v; want completed after 20 steps on attempt 1", j.Status, j.Attempt, j.Progress, j.Error)
	}
	var events struct {
		Events []struct {
			Type string
			Data struct {
				Metrics struct {
					ResumedFromStep int `json:"resumed_from_step"`
				} `json:"metrics"`
			}
		}
	}
	// The job's status is written before its event log: wait for the
	// completed event too (a loaded machine widens that window).
	count, resumed := map[string]int{}, -1
	waitFor(t, 30*time.Second, func() bool {
		call(t, "GET", s.URL()+"/v1/jobs/"+j.ID+"/events?limit=100", "", &events)
		count, resumed = map[string]int{}, -1
		for _, e := range events.Events {
			count[e.Type]++
			if e.Type == "completed" {
				resumed = e.Data.Metrics.ResumedFromStep
			}
		}
		return count["completed"] > 0
	}, "the completed event")
	if count["started"] != 2 || count["checkpoint"] < 2 || resumed != 10 {
		t.Errorf("events %v, completed resumed from step %d; want two started (the crashed run and its re-run), the checkpoints of both epochs, and a run resumed from step 10", count, resumed)
	}
	var metrics struct {
		Metrics []struct {
			Step int       `json:"step"`
			Time time.Time `json:"time"`
		}
	}
	call(t, "GET", s.URL()+"/v1/jobs/"+j.ID+"/metrics?limit=100", "", &metrics)
	// Points are listed by step: were any sent again by the re-run (a
	// restart from step 1), they would be later than a higher step's.
	for i := 1; i < len(metrics.Metrics); i++ {
		if p, q := metrics.Metrics[i-1], metrics.Metrics[i]; q.Time.Before(p.Time) {
			t.Errorf("step %d was reported at %s, before step %d at %s: the series went back", q.Step, q.Time, p.Step, p.Time)
		}
	}
	var arts struct {
		Artifacts   []struct{ Name string }
		Checkpoints []struct {
			Step    int
			Partial bool
		}
	}
	call(t, "GET", s.URL()+"/v1/jobs/"+j.ID+"/artifacts", "", &arts)
	if len(arts.Artifacts) != 2 || len(arts.Checkpoints) < 2 || arts.Checkpoints[0].Step != 10 || !arts.Checkpoints[0].Partial {
		t.Errorf("artifacts = %+v, want the adapter's two files and the checkpoints of steps 10 (partial) and 20", arts)
	}
}

// Every URL signed until the first step stops working there, as S3 refuses the
// URLs a Lambda signed once its role's session token expires (the
// dispatch-time dataset and adapter URLs among them): the real worker asks
// for fresh URLs for each checkpoint and the final upload, so the job
// still completes with its adapter and checkpoints stored. The job holds
// 10 % of its 40 examples out: evaluation loss points are in its series.
func TestALocalJobWhoseURLsExpireMidRunStillUploads(t *testing.T) {
	s := startLocalWorker(t, 0)
	ds := readyDataset(t, s)
	j := createJob(t, s, ds, `,"preset":"fast","validation_split":0.1,"hyperparameters":{"batch_size":4,"gradient_accumulation":1,"epochs":2,"learning_rate":0.001}`)
	waitFor(t, 5*time.Minute, func() bool {
		j = getJob(t, s, j.ID)
		return j.Progress != nil && j.Progress.Step >= 1 || j.Status == "completed" || j.Status == "failed"
	}, "training to start")
	if j.Status != "running" || j.Progress.Step >= 9 {
		t.Fatalf("job %s at %+v: want it running before its first checkpoint (step 9: 36 examples trained, 4 held out)", j.Status, j.Progress)
	}
	if err := s.ExpireBlobCredentials(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Minute, func() bool { j = getJob(t, s, j.ID); return j.Status == "completed" || j.Status == "failed" }, "the job to end")
	if j.Status != "completed" {
		t.Fatalf("job = %s, error %+v; want completed with URLs asked for after the expiry", j.Status, j.Error)
	}
	var arts struct {
		Artifacts []struct {
			Name     string
			Download struct{ URL string }
		}
		Checkpoints []struct{ Step int }
	}
	call(t, "GET", s.URL()+"/v1/jobs/"+j.ID+"/artifacts", "", &arts)
	if len(arts.Artifacts) != 2 || len(arts.Checkpoints) < 2 {
		t.Fatalf("artifacts = %+v, want the adapter's two files and the checkpoints of both epochs", arts)
	}
	var metrics struct {
		Metrics []struct {
			Step     int
			EvalLoss *float64 `json:"eval_loss"`
		}
	}
	call(t, "GET", s.URL()+"/v1/jobs/"+j.ID+"/metrics?limit=100", "", &metrics)
	var evals []int
	for _, p := range metrics.Metrics {
		if p.EvalLoss != nil {
			evals = append(evals, p.Step)
		}
	}
	// About ten evaluations a run (every 2 of 18 steps), the last at step 18.
	if len(evals) < 2 || evals[len(evals)-1] != 18 {
		t.Errorf("evaluation loss at steps %v, want several, the last at step 18", evals)
	}
	resp, err := http.Get(arts.Artifacts[0].Download.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("the adapter's download URL (signed after the expiry) = %d, want 200", resp.StatusCode)
	}
}

// startLocalWorker starts a local stack whose GPU is the real worker
// (BRIGHTRUN_GPU=local-worker), crashing once after crashAfterStep when
// it is positive; the test is skipped with -short, and reports the
// worker's Python packages missing as awstest does.
func startLocalWorker(t *testing.T, crashAfterStep int) *localstack.Stack {
	t.Helper()
	if testing.Short() {
		t.Skip("trains a model on the CPU: skipped with -short")
	}
	probe := exec.Command("python3", "-c", "import torch, transformers, peft, runpod")
	if out, err := probe.CombinedOutput(); err != nil {
		awstest.Unavailable(t, "the GPU worker's Python packages", fmt.Errorf("%v: %s", err, out), "run make setup-python and put .cache/venv/bin first on PATH (make test does both)")
	}
	s, err := localstack.Open(localstack.Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), DevTokens: "dev:dev-token", GPU: "local-worker", WorkerDir: "../../gpu-image",
		Log:                slog.New(slog.NewTextHandler(io.Discard, nil)),
		DispatchVisibility: 5 * time.Minute, ReconcileEvery: time.Second,
		Reconcile:      reconcile.Reconciler{StaleAfter: 10 * time.Minute},
		CrashAfterStep: crashAfterStep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}
