package dispatch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/dispatch"
	"github.com/brightrun/brightrun/shared/local"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/runpod"
)

// fakeGPU is a function-field fake of the GPU provider.
type fakeGPU struct {
	mu        sync.Mutex
	runs      []runpod.RunRequest
	cancelled []string
	run       func(n int, req runpod.RunRequest) (runpod.JobStatus, error)
}

func (g *fakeGPU) Run(ctx context.Context, req runpod.RunRequest) (runpod.JobStatus, error) {
	g.mu.Lock()
	g.runs = append(g.runs, req)
	n := len(g.runs)
	g.mu.Unlock()
	if g.run != nil {
		return g.run(n, req)
	}
	return runpod.JobStatus{ID: fmt.Sprintf("rp-%d", n), Status: runpod.StatusInQueue}, nil
}

func (g *fakeGPU) Cancel(ctx context.Context, id string) (runpod.JobStatus, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cancelled = append(g.cancelled, id)
	return runpod.JobStatus{ID: id, Status: runpod.StatusCancelled}, nil
}

type env struct {
	store *local.Store
	gpu   *fakeGPU
	d     *dispatch.Dispatcher
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	db, err := local.OpenDB(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, _ := local.NewStore(db)
	blobs, _ := local.NewBlobs(local.BlobsOptions{Dir: dir, BaseURL: "http://127.0.0.1:9", Secret: bytes.Repeat([]byte("s"), 32)})
	gpu := &fakeGPU{}
	d := &dispatch.Dispatcher{Jobs: &pipeline.Lifecycle{Store: store, JobLog: store, Log: discard}, Blobs: blobs, GPU: gpu, Catalog: catalog.Default(),
		PublicURL: "http://127.0.0.1:8080", CallbackSecret: []byte("master-secret-for-tests"), MaxAttempts: 3,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()
	now := time.Now().UTC()
	ds := &pipeline.Dataset{ID: "ds_1", Owner: "alice", Name: "d", Status: pipeline.DatasetReady, SizeBytes: 1000,
		ObjectKey: pipeline.DatasetKey("alice", "ds_1"), ContentSHA256: strings.Repeat("ab", 32), CreatedAt: now,
		Validation: &pipeline.ValidationSummary{Valid: true, Examples: 100, Tokens: pipeline.TokenCounts{Total: 50000, Trained: 20000}}}
	if err := store.CreateDataset(ctx, ds); err != nil {
		t.Fatal(err)
	}
	return &env{store: store, gpu: gpu, d: d}
}

func (e *env) job(t *testing.T, id string, status pipeline.JobStatus) []byte {
	t.Helper()
	hp, _ := pipeline.ResolveHyperparameters("fast", pipeline.HyperparameterOverrides{})
	j := &pipeline.Job{ID: id, Owner: "alice", DatasetID: "ds_1", BaseModel: catalog.DefaultModelID, GPUType: "a100-80gb",
		Preset: "fast", Hyperparameters: hp, Status: status, CreatedAt: time.Now().UTC(),
		Estimate: &pipeline.JobEstimate{GPU: "a100-80gb", ExecutionTimeoutSeconds: 7200, PriceUSDPerSecond: 0.00076}}
	if err := e.store.CreateJob(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(pipeline.JobMessage{Owner: "alice", JobID: id})
	return body
}

func (e *env) get(t *testing.T, id string) *pipeline.Job {
	t.Helper()
	j, err := e.store.GetJob(context.Background(), "alice", id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestDispatchSubmitsAValidSpecOnce(t *testing.T) {
	e := newEnv(t)
	msg := e.job(t, "job_1", pipeline.JobQueued)
	for i := 1; i <= 3; i++ {
		if err := e.d.HandleMessage(context.Background(), msg, i); err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
	}
	if len(e.gpu.runs) != 1 {
		t.Fatalf("3 deliveries made %d runs, want 1", len(e.gpu.runs))
	}
	j := e.get(t, "job_1")
	if j.Status != pipeline.JobSubmitted || j.Attempt != 1 || j.RunPodID != "rp-1" {
		t.Errorf("job = %s attempt %d run %q, want submitted, attempt 1, rp-1", j.Status, j.Attempt, j.RunPodID)
	}
	req := e.gpu.runs[0]
	if req.Policy.ExecutionTimeout != 2*time.Hour || req.Policy.TTL < req.Policy.ExecutionTimeout {
		t.Errorf("policy = %+v, want the estimate's 2 h execution timeout and a ttl covering it", req.Policy)
	}
	raw, _ := json.Marshal(req.Input)
	spec, err := contract.ParseJobSpec(raw)
	if err != nil {
		t.Fatalf("the submitted input is not a valid job spec: %v", err)
	}
	if spec.Attempt != 1 || spec.Dataset.Examples != 100 || spec.Dataset.SHA256 != strings.Repeat("ab", 32) ||
		!strings.HasPrefix(spec.BaseModel.VolumePath, "/runpod-volume/") || spec.BaseModel.Quantization != "nf4" {
		t.Errorf("spec = %+v, want attempt 1, the dataset's counts and sha256, an NF4 model on the volume", spec)
	}
	secret, _ := contract.ParseSecret(spec.Callback.Secret)
	if !bytes.Equal(secret, contract.DeriveSecret([]byte("master-secret-for-tests"), "job_1")) {
		t.Error("the callback secret is not the one derived for the job")
	}
	owner, jobID, attempt, err := pipeline.ParseWebhookToken([]byte("master-secret-for-tests"), req.Webhook[strings.LastIndex(req.Webhook, "/")+1:])
	if err != nil || owner != "alice" || jobID != "job_1" || attempt != 1 {
		t.Errorf("webhook token names %q %q %d (%v), want alice job_1 1", owner, jobID, attempt, err)
	}
}

func TestDispatchSkipsJobsThatNeedNone(t *testing.T) {
	for _, st := range []pipeline.JobStatus{pipeline.JobCancelled, pipeline.JobCancelRequested, pipeline.JobFailed, pipeline.JobRunning} {
		t.Run(string(st)+" is not submitted", func(t *testing.T) {
			e := newEnv(t)
			msg := e.job(t, "job_1", st)
			if err := e.d.HandleMessage(context.Background(), msg, 1); err != nil {
				t.Fatal(err)
			}
			if len(e.gpu.runs) != 0 || e.get(t, "job_1").Status != st {
				t.Errorf("%s job: %d runs, status %s; want none and unchanged", st, len(e.gpu.runs), e.get(t, "job_1").Status)
			}
		})
	}
	e := newEnv(t)
	if err := e.d.HandleMessage(context.Background(), []byte(`{"owner":"alice","job_id":"job_missing"}`), 1); err != nil {
		t.Errorf("message of a missing job: %v, want it dropped", err)
	}
	if err := e.d.HandleMessage(context.Background(), []byte(`not json`), 1); err != nil {
		t.Errorf("malformed message: %v, want it dropped", err)
	}
}

func TestFailedSubmissionsRetryThenFailTheJob(t *testing.T) {
	e := newEnv(t)
	e.gpu.run = func(n int, req runpod.RunRequest) (runpod.JobStatus, error) {
		return runpod.JobStatus{}, &runpod.APIError{Op: "run", StatusCode: 503, Kind: runpod.ErrUnavailable}
	}
	msg := e.job(t, "job_1", pipeline.JobQueued)
	for i := 1; i <= 2; i++ {
		if err := e.d.HandleMessage(context.Background(), msg, i); err == nil {
			t.Fatalf("delivery %d with RunPod down: nil error, want one (the message must come back)", i)
		}
		if j := e.get(t, "job_1"); j.Status != pipeline.JobDispatching || j.Attempt != i {
			t.Fatalf("after failure %d: %s attempt %d, want dispatching attempt %d", i, j.Status, j.Attempt, i)
		}
	}
	if err := e.d.HandleMessage(context.Background(), msg, 3); err == nil {
		t.Error("last delivery: nil error, want one so that the message reaches the dead-letter queue")
	}
	j := e.get(t, "job_1")
	if j.Status != pipeline.JobFailed || j.Error == nil || !strings.Contains(j.Error.Message, "after 3 tries") {
		t.Errorf("after 3 failures: %s %+v, want failed saying so", j.Status, j.Error)
	}
	notes, _, _ := e.store.ListNotifications(context.Background(), "alice", pipeline.Page{})
	if len(notes) != 1 || notes[0].Type != "job_failed" {
		t.Errorf("notifications = %+v, want one job_failed", notes)
	}
}

func TestAJobCancelledDuringSubmitHasItsRunCancelled(t *testing.T) {
	e := newEnv(t)
	msg := e.job(t, "job_1", pipeline.JobQueued)
	e.gpu.run = func(n int, req runpod.RunRequest) (runpod.JobStatus, error) {
		// The user cancels while the request is in flight.
		if _, err := pipeline.TransitionJob(context.Background(), e.store, "alice", "job_1", pipeline.JobCancelRequested, nil); err != nil {
			t.Error(err)
		}
		return runpod.JobStatus{ID: "rp-x", Status: runpod.StatusInQueue}, nil
	}
	if err := e.d.HandleMessage(context.Background(), msg, 1); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(e.gpu.cancelled) != "[rp-x]" {
		t.Errorf("cancelled runs = %v, want [rp-x]", e.gpu.cancelled)
	}
	if j := e.get(t, "job_1"); j.Status != pipeline.JobCancelled {
		t.Errorf("job = %s, want cancelled", j.Status)
	}
}

// A crash between claiming and recording leaves the job dispatching under
// the dead dispatcher's lease. A redelivery while the lease lives leaves
// the job alone (the message comes back); once it lapsed, the redelivery
// claims a new attempt, so the first run's callbacks are refused as
// superseded.
func TestARedeliveryAfterACrashSupersedesTheAttemptOnceItsLeaseLapsed(t *testing.T) {
	tests := []struct {
		name        string
		leaseLeft   time.Duration
		wantErr     error
		wantStatus  pipeline.JobStatus
		wantAttempt int
		wantRuns    int
	}{
		{"a lease that lapsed is taken over", -time.Second, nil, pipeline.JobSubmitted, 2, 1},
		{"a claim without a lease is taken over", 0, nil, pipeline.JobSubmitted, 2, 1},
		{"a live lease is left alone", time.Minute, pipeline.ErrLeaseHeld, pipeline.JobDispatching, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			msg := e.job(t, "job_1", pipeline.JobQueued)
			if _, err := pipeline.TransitionJob(context.Background(), e.store, "alice", "job_1", pipeline.JobDispatching, func(j *pipeline.Job) error {
				j.Attempt = 1
				if tt.leaseLeft != 0 {
					until := time.Now().Add(tt.leaseLeft)
					j.LeaseUntil = &until
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			err := e.d.HandleMessage(context.Background(), msg, 2)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("redelivery = %v, want %v", err, tt.wantErr)
			}
			j := e.get(t, "job_1")
			if j.Status != tt.wantStatus || j.Attempt != tt.wantAttempt || len(e.gpu.runs) != tt.wantRuns {
				t.Errorf("after redelivery: %s attempt %d, %d runs; want %s attempt %d, %d runs", j.Status, j.Attempt, len(e.gpu.runs), tt.wantStatus, tt.wantAttempt, tt.wantRuns)
			}
		})
	}
}

// A dispatcher in a Lambda invocation holds its claim until a little after
// the invocation's deadline, never longer than its lease timeout.
func TestAClaimLastsAsLongAsItsDispatcherCan(t *testing.T) {
	tests := []struct {
		name     string
		deadline time.Duration // 0: none
		want     time.Duration
	}{
		{"without a deadline, the lease timeout", 0, pipeline.DefaultLease},
		{"under a deadline, until a margin after it", 30 * time.Second, 30*time.Second + dispatch.LeaseMargin},
		{"under a far deadline, the lease timeout", time.Hour, pipeline.DefaultLease},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			msg := e.job(t, "job_1", pipeline.JobQueued)
			ctx := context.Background()
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			e.gpu.run = func(n int, req runpod.RunRequest) (runpod.JobStatus, error) {
				return runpod.JobStatus{}, &runpod.APIError{Op: "run", StatusCode: 503, Kind: runpod.ErrUnavailable}
			}
			var lease time.Duration
			e.d.Jobs.Store = claimSpy{Store: e.store, seen: func(j *pipeline.Job) {
				if j.Status == pipeline.JobDispatching && j.LeaseUntil != nil && lease == 0 {
					lease = time.Until(*j.LeaseUntil)
				}
			}}
			_ = e.d.HandleMessage(ctx, msg, 1)
			if lease < tt.want-5*time.Second || lease > tt.want {
				t.Errorf("claim lease = %s, want about %s", lease.Round(time.Second), tt.want)
			}
			if j := e.get(t, "job_1"); j.LeaseUntil != nil {
				t.Errorf("after a failed submission that is retried the lease is kept until %s, want it released", j.LeaseUntil)
			}
		})
	}
}

// claimSpy shows each job update to seen.
type claimSpy struct {
	pipeline.Store
	seen func(*pipeline.Job)
}

func (s claimSpy) UpdateJob(ctx context.Context, j *pipeline.Job) error {
	s.seen(j)
	return s.Store.UpdateJob(ctx, j)
}

func TestANonRetryableSubmissionErrorFailsAtOnce(t *testing.T) {
	e := newEnv(t)
	e.gpu.run = func(n int, req runpod.RunRequest) (runpod.JobStatus, error) {
		return runpod.JobStatus{}, &runpod.APIError{Op: "run", StatusCode: 401, Kind: runpod.ErrUnauthorized}
	}
	msg := e.job(t, "job_1", pipeline.JobQueued)
	if err := e.d.HandleMessage(context.Background(), msg, 1); err != nil {
		t.Errorf("a 401: %v, want the message done (retrying cannot help)", err)
	}
	if j := e.get(t, "job_1"); j.Status != pipeline.JobFailed {
		t.Errorf("job = %s, want failed", j.Status)
	}
}

// A fast worker's first callback can arrive before the dispatcher records
// the run: the job is then already running, and keeps its run.
func TestAWorkerThatCallsBackBeforeTheRecordKeepsItsRun(t *testing.T) {
	e := newEnv(t)
	msg := e.job(t, "job_1", pipeline.JobQueued)
	e.gpu.run = func(n int, req runpod.RunRequest) (runpod.JobStatus, error) {
		if _, err := pipeline.TransitionJob(context.Background(), e.store, "alice", "job_1", pipeline.JobRunning, nil); err != nil {
			t.Error(err)
		}
		return runpod.JobStatus{ID: "rp-fast", Status: runpod.StatusInProgress}, nil
	}
	if err := e.d.HandleMessage(context.Background(), msg, 1); err != nil {
		t.Fatal(err)
	}
	j := e.get(t, "job_1")
	if j.Status != pipeline.JobRunning || j.RunPodID != "rp-fast" || len(e.gpu.cancelled) != 0 {
		t.Errorf("job %s run %q, cancelled %v; want running with run rp-fast and nothing cancelled", j.Status, j.RunPodID, e.gpu.cancelled)
	}
}

// The dispatch Lambda gets SQS batches: a message whose job could not be
// submitted is reported as a batch item failure (so SQS retries it alone),
// a malformed one is dropped, a good one is done.
func TestSQSBatchesReportPartialFailures(t *testing.T) {
	e := newEnv(t)
	e.job(t, "job_1", pipeline.JobQueued)
	e.job(t, "job_2", pipeline.JobQueued)
	e.gpu.run = func(n int, req runpod.RunRequest) (runpod.JobStatus, error) {
		raw, _ := json.Marshal(req.Input)
		if strings.Contains(string(raw), `"job_id":"job_2"`) {
			return runpod.JobStatus{}, &runpod.APIError{Op: "run", StatusCode: 503, Kind: runpod.ErrUnavailable}
		}
		return runpod.JobStatus{ID: "rp-ok", Status: runpod.StatusInQueue}, nil
	}
	raw, err := os.ReadFile("../../testdata/events/sqs-jobs.json")
	if err != nil {
		t.Fatal(err)
	}
	var ev events.SQSEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	resp, err := e.d.HandleSQSEvent(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != "2e1424d4-f796-459a-8184-9c92662be6da" {
		t.Errorf("batch item failures = %+v, want job_2's message alone", resp.BatchItemFailures)
	}
	if j := e.get(t, "job_1"); j.Status != pipeline.JobSubmitted {
		t.Errorf("job_1 = %s, want submitted", j.Status)
	}
	// job_2's message was on its third delivery, the last (MaxAttempts 3):
	// the job fails with the reason.
	if j := e.get(t, "job_2"); j.Status != pipeline.JobFailed || !strings.Contains(j.Error.Message, "after 3 tries") {
		t.Errorf("job_2 = %s %+v, want failed after 3 tries", j.Status, j.Error)
	}
}

// flakyStore fails the UpdateJob calls it is told to.
type flakyStore struct {
	*local.Store
	failUpdates int
}

func (s *flakyStore) UpdateJob(ctx context.Context, j *pipeline.Job) error {
	if s.failUpdates > 0 && j.Status == pipeline.JobSubmitted {
		s.failUpdates--
		return errors.New("store unavailable")
	}
	return s.Store.UpdateJob(ctx, j)
}

// A store write that fails mid-transition (recording the run): the run just
// started is cancelled so that no paid run goes unrecorded, the message
// comes back, and the next delivery submits a new attempt.
func TestAStoreFailureWhileRecordingCancelsTheRunAndRetries(t *testing.T) {
	e := newEnv(t)
	msg := e.job(t, "job_1", pipeline.JobQueued)
	flaky := &flakyStore{Store: e.store, failUpdates: 1}
	e.d.Jobs.Store = flaky
	if err := e.d.HandleMessage(context.Background(), msg, 1); err == nil {
		t.Fatal("a failed record returned nil: the message would be deleted with the job unrecorded")
	}
	if fmt.Sprint(e.gpu.cancelled) != "[rp-1]" {
		t.Errorf("cancelled runs = %v, want [rp-1] (the unrecorded run)", e.gpu.cancelled)
	}
	if err := e.d.HandleMessage(context.Background(), msg, 2); err != nil {
		t.Fatal(err)
	}
	if j := e.get(t, "job_1"); j.Status != pipeline.JobSubmitted || j.Attempt != 2 || j.RunPodID != "rp-2" {
		t.Errorf("after the retry: %s attempt %d run %q, want submitted, attempt 2, rp-2", j.Status, j.Attempt, j.RunPodID)
	}
}

// RunPod down for a while (its API answering 503 beyond the client's own
// retries): each delivery fails and the message comes back; when RunPod is
// back before the attempts are spent, the job is submitted, not failed.
func TestRunPodDownForAWhileThenBack(t *testing.T) {
	e := newEnv(t)
	msg := e.job(t, "job_1", pipeline.JobQueued)
	e.gpu.run = func(n int, req runpod.RunRequest) (runpod.JobStatus, error) {
		if n < 3 {
			return runpod.JobStatus{}, &runpod.APIError{Op: "run", StatusCode: 503, Kind: runpod.ErrUnavailable, Attempts: 5}
		}
		return runpod.JobStatus{ID: "rp-back", Status: runpod.StatusInQueue}, nil
	}
	for i := 1; i <= 2; i++ {
		if err := e.d.HandleMessage(context.Background(), msg, i); err == nil {
			t.Fatalf("delivery %d while RunPod is down: nil error, want one", i)
		}
	}
	if err := e.d.HandleMessage(context.Background(), msg, 3); err != nil {
		t.Fatalf("delivery 3, RunPod back: %v", err)
	}
	if j := e.get(t, "job_1"); j.Status != pipeline.JobSubmitted || j.RunPodID != "rp-back" {
		t.Errorf("job = %s %q, want submitted as rp-back", j.Status, j.RunPodID)
	}
}

func TestTheSpecCarriesTheEstimatesTokenBudget(t *testing.T) {
	tests := []struct {
		name       string
		gpu        string
		estimated  int
		wantTokens int
		wantError  string
	}{
		{"the budget the job's estimate chose is sent", "a100-80gb", 4096, 4096, ""},
		// The fast preset (max_seq_length 2048, steps of 8) plans 8192
		// tokens on an 80 GB card (catalog.TestPlanMicroBatch).
		{"a job estimated before budgets were recorded gets the estimator's choice", "a100-80gb", 0, 8192, ""},
		{"a job its model no longer fits fails with the reason", "l40s-48gb", 0, 0, "does not fit on L40S 48GB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			hp, _ := pipeline.ResolveHyperparameters("fast", pipeline.HyperparameterOverrides{})
			j := &pipeline.Job{ID: "job_1", Owner: "alice", DatasetID: "ds_1", BaseModel: catalog.DefaultModelID, GPUType: tt.gpu,
				Preset: "fast", Hyperparameters: hp, Status: pipeline.JobQueued, CreatedAt: time.Now().UTC(),
				Estimate: &pipeline.JobEstimate{GPU: tt.gpu, ExecutionTimeoutSeconds: 7200, PriceUSDPerSecond: 0.00076, MicroBatchTokens: tt.estimated}}
			if err := e.store.CreateJob(context.Background(), j); err != nil {
				t.Fatal(err)
			}
			msg, _ := json.Marshal(pipeline.JobMessage{Owner: "alice", JobID: "job_1"})
			_ = e.d.HandleMessage(context.Background(), msg, 1)
			if tt.wantError != "" {
				got := e.get(t, "job_1")
				if len(e.gpu.runs) != 0 || got.Status != pipeline.JobFailed || got.Error == nil || !strings.Contains(got.Error.Message, tt.wantError) {
					t.Errorf("%d runs, job %s %+v; want none, failed with %q", len(e.gpu.runs), got.Status, got.Error, tt.wantError)
				}
				return
			}
			if len(e.gpu.runs) != 1 {
				t.Fatalf("%d runs, want 1", len(e.gpu.runs))
			}
			raw, _ := json.Marshal(e.gpu.runs[0].Input)
			spec, err := contract.ParseJobSpec(raw)
			if err != nil {
				t.Fatal(err)
			}
			if b := spec.Hyperparameters.MicroBatchTokens; b == nil || *b != tt.wantTokens {
				t.Errorf("spec micro_batch_tokens = %v, want %d", b, tt.wantTokens)
			}
			var generic struct {
				Hyperparameters map[string]any `json:"hyperparameters"`
			}
			if err := json.Unmarshal(raw, &generic); err != nil || generic.Hyperparameters["micro_batch_tokens"] != float64(tt.wantTokens) {
				t.Errorf("the spec's JSON hyperparameters = %v, want micro_batch_tokens %d", generic.Hyperparameters, tt.wantTokens)
			}
		})
	}
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// Dispatch trains only on a ready dataset: one that is validating again
// (its file replaced) or invalid fails the job, whatever validation record
// it still holds, and nothing is submitted.
func TestOnlyAReadyDatasetIsDispatched(t *testing.T) {
	for _, status := range []pipeline.DatasetStatus{pipeline.DatasetAwaitingUpload, pipeline.DatasetValidating, pipeline.DatasetInvalid} {
		t.Run("a dataset "+string(status)+" fails the job", func(t *testing.T) {
			e := newEnv(t)
			if _, err := pipeline.UpdateDataset(context.Background(), e.store, "alice", "ds_1", func(d *pipeline.Dataset) error {
				d.Status = status
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			msg := e.job(t, "job_1", pipeline.JobQueued)
			if err := e.d.HandleMessage(context.Background(), msg, 1); err != nil {
				t.Fatalf("HandleMessage = %v, want nil (retrying cannot help)", err)
			}
			j := e.get(t, "job_1")
			if len(e.gpu.runs) != 0 || j.Status != pipeline.JobFailed || j.Error == nil || !strings.Contains(j.Error.Message, string(status)) {
				t.Errorf("%d runs, job %s %+v; want no run and the job failed saying the dataset is %s", len(e.gpu.runs), j.Status, j.Error, status)
			}
		})
	}
}

// flakyPresigner fails its first fails signings, as a signer whose
// credentials are being refreshed does.
type flakyPresigner struct {
	dispatch.Presigner
	fails int
}

func (p *flakyPresigner) PresignGet(ctx context.Context, key string, ttl time.Duration) (pipeline.SignedRequest, error) {
	if p.fails > 0 {
		p.fails--
		return pipeline.SignedRequest{}, pipeline.Errorf(pipeline.EUnavailable, "the signer is unavailable: try again")
	}
	return p.Presigner.PresignGet(ctx, key, ttl)
}

// A store or signer failure while building the spec is tried again (the
// message comes back), not a failed job; the job then dispatches.
func TestATransientFailureBuildingTheSpecIsRetried(t *testing.T) {
	e := newEnv(t)
	e.d.Blobs = &flakyPresigner{Presigner: e.d.Blobs, fails: 1}
	msg := e.job(t, "job_1", pipeline.JobQueued)
	if err := e.d.HandleMessage(context.Background(), msg, 1); err == nil {
		t.Fatalf("HandleMessage = nil, want an error (the message comes back)")
	}
	if j := e.get(t, "job_1"); j.Status == pipeline.JobFailed || len(e.gpu.runs) != 0 {
		t.Fatalf("job %s %+v after a transient failure, %d runs; want it not failed, no run", j.Status, j.Error, len(e.gpu.runs))
	}
	if err := e.d.HandleMessage(context.Background(), msg, 2); err != nil {
		t.Fatalf("the redelivery = %v, want the job dispatched", err)
	}
	if j := e.get(t, "job_1"); j.Status != pipeline.JobSubmitted || len(e.gpu.runs) != 1 {
		t.Errorf("job %s, %d runs; want submitted once", j.Status, len(e.gpu.runs))
	}
}
