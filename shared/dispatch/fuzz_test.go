package dispatch_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/dispatch"
	"github.com/brightrun/brightrun/shared/local"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// FuzzSQSEvent hands SQS events with arbitrary bodies and attributes to
// HandleSQSEvent, beside a valid message: it must never panic; a
// malformed message, or one of a job that does not exist, is dropped (not
// failed, which would redeliver it until the dead-letter queue); and a run
// is submitted only for an existing queued job of the message's owner.
func FuzzSQSEvent(f *testing.F) {
	for _, body := range []string{
		`{"owner":"alice","job_id":"job_q"}`,
		`{"owner":"alice","job_id":"job_done"}`,
		`{"owner":"alice","job_id":"job_missing"}`,
		`{"owner":"bob","job_id":"job_q"}`,
		`{"owner":"","job_id":"job_q"}`,
		`{"owner":"alice","job_id":""}`,
		`{"owner":"alice"}`,
		`{"owner":"alice","job_id":"job_q","owner":"bob"}`,
		`{"OWNER":"alice","Job_ID":"job_q"}`,
		`{"owner":"alice\u0000","job_id":"job_q"}`,
		`{"owner":"alice","job_id":"job_q\u0000job_done"}`,
		`{"owner":1,"job_id":"job_q"}`,
		`{"owner":"alice","job_id":"job_q"} trailing`,
		`not json`, `[]`, `null`, `""`, ``,
	} {
		f.Add(body, "1", false)
		f.Add(body, "5", true)
	}
	f.Add(`{"owner":"alice","job_id":"job_q"}`, "", false)
	f.Add(`{"owner":"alice","job_id":"job_q"}`, "-1", false)
	f.Add(`{"owner":"alice","job_id":"job_q"}`, "99999999999999999999", false)
	f.Add(`{"owner":"alice","job_id":"job_q"}`, "3 4", false)
	f.Add(`{"owner":"alice","job_id":"job_q"}`, "%v", false)

	e := newFuzzEnv(f)
	ctx := context.Background()
	valid, _ := json.Marshal(pipeline.JobMessage{Owner: "alice", JobID: "job_q"})
	f.Fuzz(func(t *testing.T, body, receives string, withValid bool) {
		ev := events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m-fuzz", Body: body, Attributes: map[string]string{"ApproximateReceiveCount": receives}}}}
		if withValid {
			ev.Records = append(ev.Records, events.SQSMessage{MessageId: "m-valid", Body: string(valid), Attributes: map[string]string{"ApproximateReceiveCount": "1"}})
		}
		e.gpu.mu.Lock()
		e.gpu.runs = nil
		e.gpu.mu.Unlock()
		resp, err := e.d.HandleSQSEvent(ctx, ev)
		if err != nil {
			t.Fatalf("HandleSQSEvent(%q) error %v, want nil (failures are reported per message)", body, err)
		}
		// The fake GPU accepts every run and the store never fails: nothing
		// is worth retrying.
		if len(resp.BatchItemFailures) > 0 {
			t.Fatalf("HandleSQSEvent(%q) failed %+v, want every message done", body, resp.BatchItemFailures)
		}
		var msg pipeline.JobMessage
		wellFormed := json.Unmarshal([]byte(body), &msg) == nil && msg.Owner != "" && msg.JobID != ""
		for _, run := range e.gpu.runs {
			raw, _ := json.Marshal(run.Input)
			spec, err := contract.ParseJobSpec(raw)
			if err != nil {
				t.Fatalf("submitted an invalid spec: %v", err)
			}
			if spec.JobID != "job_q" {
				t.Fatalf("message %q submitted a run for %s, want runs only for the queued job", body, spec.JobID)
			}
			ok := withValid || wellFormed && msg.Owner == "alice" && msg.JobID == "job_q"
			if !ok {
				t.Fatalf("message %q submitted a run for alice's job_q", body)
			}
			if !strings.HasSuffix(spec.Callback.URL, "?o="+hex.EncodeToString([]byte("alice"))) {
				t.Fatalf("run of job_q calls back to %s, want alice's URL", spec.Callback.URL)
			}
		}
		if len(e.gpu.runs) > 1 {
			t.Fatalf("one event submitted %d runs of job_q, want at most 1", len(e.gpu.runs))
		}
		e.reset(t)
	})
}

type fuzzEnv struct {
	store *local.Store
	gpu   *fakeGPU
	d     *dispatch.Dispatcher
}

// newFuzzEnv is newEnv for a fuzz target: alice's queued job_q and
// completed job_done on her ready dataset.
func newFuzzEnv(tb testing.TB) *fuzzEnv {
	tb.Helper()
	dir := tb.TempDir()
	db, err := local.OpenDB(dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	store, err := local.NewStore(db)
	if err != nil {
		tb.Fatal(err)
	}
	blobs, err := local.NewBlobs(local.BlobsOptions{Dir: dir, BaseURL: "http://127.0.0.1:9", Secret: bytes.Repeat([]byte("s"), 32)})
	if err != nil {
		tb.Fatal(err)
	}
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
		tb.Fatal(err)
	}
	hp, _ := pipeline.ResolveHyperparameters("fast", pipeline.HyperparameterOverrides{})
	for id, status := range map[string]pipeline.JobStatus{"job_q": pipeline.JobQueued, "job_done": pipeline.JobCompleted} {
		j := &pipeline.Job{ID: id, Owner: "alice", DatasetID: "ds_1", BaseModel: catalog.DefaultModelID, GPUType: "a100-80gb",
			Preset: "fast", Hyperparameters: hp, Status: status, CreatedAt: now,
			Estimate: &pipeline.JobEstimate{GPU: "a100-80gb", ExecutionTimeoutSeconds: 7200, PriceUSDPerSecond: 0.00076}}
		if err := store.CreateJob(ctx, j); err != nil {
			tb.Fatal(err)
		}
	}
	return &fuzzEnv{store: store, gpu: gpu, d: d}
}

// reset puts job_q back in the queue after a dispatch, so that every input
// meets a dispatchable job, and checks that job_done stayed done.
func (e *fuzzEnv) reset(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if j, err := e.store.GetJob(ctx, "alice", "job_done"); err != nil || j.Status != pipeline.JobCompleted || j.Attempt != 0 {
		t.Fatalf("job_done = %+v (%v), want it left completed", j, err)
	}
	j, err := e.store.GetJob(ctx, "alice", "job_q")
	if err != nil {
		t.Fatal(err)
	}
	if j.Status == pipeline.JobQueued {
		return
	}
	if !slices.Contains([]pipeline.JobStatus{pipeline.JobSubmitted}, j.Status) {
		t.Fatalf("job_q is %s after dispatch, want submitted", j.Status)
	}
	j.Status, j.RunPodID = pipeline.JobQueued, ""
	if err := e.store.UpdateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
}
