package localstack_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
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
		Reconcile: reconcile.Reconciler{StaleAfter: 10 * time.Minute},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
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
