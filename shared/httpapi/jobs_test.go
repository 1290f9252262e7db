package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/api"

	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/reconcile"
)

// readyDataset stores a validated dataset of owner's directly.
func (a *testAPI) readyDataset(owner, id string, status pipeline.DatasetStatus) {
	a.Helper()
	now := time.Now().UTC()
	d := &pipeline.Dataset{ID: id, Owner: owner, Name: id, Status: status, SizeBytes: 5 << 20,
		ObjectKey: pipeline.DatasetKey(owner, id), CreatedAt: now, UpdatedAt: now,
		Validation: &pipeline.ValidationSummary{Valid: true, Lines: 1000, Examples: 1000, Tokens: pipeline.TokenCounts{Total: 1_200_000, Trained: 600_000},
			Stats: pipeline.ExampleStats{TokensPerExample: pipeline.Distribution{Min: 200, Mean: 1200, P50: 1100, P95: 2400, Max: 3900}, MaxSeqLength: 2048}}}
	if err := a.store.CreateDataset(context.Background(), d); err != nil {
		a.Fatal(err)
	}
}

// postJob creates a job with an optional Idempotency-Key.
func (a *testAPI) postJob(token, key, body string, out any) int {
	a.Helper()
	req, _ := http.NewRequest("POST", a.srv.URL+"/v1/jobs", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		a.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		decodeBody(a.T, resp, out)
	}
	return resp.StatusCode
}

func (a *testAPI) queued() int {
	a.Helper()
	n := 0
	for {
		got, err := a.queue.Receive(context.Background(), 10, time.Hour, 0)
		if err != nil {
			a.Fatal(err)
		}
		if len(got) == 0 {
			return n
		}
		n += len(got)
	}
}

func TestEstimateEveryGPU(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.readyDataset("alice", "ds_ready", pipeline.DatasetReady)
	var out struct {
		Estimate struct {
			GPU     string
			CostUSD struct{ Low, Expected, High float64 } `json:"cost_usd"`
		}
		Comparison struct {
			Estimates   []struct{ GPU string }
			CheapestGPU string `json:"cheapest_gpu"`
			FastestGPU  string `json:"fastest_gpu"`
		}
	}
	if status := a.call("POST", "/v1/estimates", "alice-token", `{"dataset_id":"ds_ready"}`, &out); status != 200 {
		t.Fatalf("POST /v1/estimates = %d, want 200", status)
	}
	if len(out.Comparison.Estimates) < 2 || out.Comparison.CheapestGPU == "" || out.Comparison.FastestGPU == "" {
		t.Errorf("comparison = %+v, want an estimate per fitting GPU, the cheapest and the fastest", out.Comparison)
	}
	if out.Estimate.GPU != out.Comparison.CheapestGPU || !(out.Estimate.CostUSD.Low <= out.Estimate.CostUSD.Expected && out.Estimate.CostUSD.Expected <= out.Estimate.CostUSD.High) {
		t.Errorf("estimate = %+v, want the cheapest GPU with low <= expected <= high", out.Estimate)
	}
}

func TestJobRequestsAreCheckedField(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.readyDataset("alice", "ds_ready", pipeline.DatasetReady)
	a.readyDataset("alice", "ds_validating", pipeline.DatasetValidating)
	a.readyDataset("bob", "ds_bobs", pipeline.DatasetReady)
	tests := []struct {
		name, body string
		status     int
		message    string
	}{
		{"an unknown preset", `{"dataset_id":"ds_ready","preset":"turbo"}`, 400, `unknown preset "turbo"`},
		{"an out-of-range field", `{"dataset_id":"ds_ready","hyperparameters":{"epochs":50}}`, 400, "epochs must be between 1 and 20, got 50"},
		{"an unknown hyperparameter", `{"dataset_id":"ds_ready","hyperparameters":{"epoch":2}}`, 400, `unknown field "epoch"`},
		{"a dataset that is not ready", `{"dataset_id":"ds_validating"}`, 409, "is validating"},
		{"another user's dataset", `{"dataset_id":"ds_bobs"}`, 404, "not found"},
		{"no dataset", `{}`, 400, "dataset_id is required"},
		{"a negative budget", `{"dataset_id":"ds_ready","budget_usd":-5}`, 400, "budget_usd must be a positive amount"},
		{"a budget below the estimate", `{"dataset_id":"ds_ready","budget_usd":0.01}`, 400, "below the lowest estimate"},
		{"an unknown GPU", `{"dataset_id":"ds_ready","gpu_type":"tpu-v9"}`, 400, "tpu-v9"},
		{"an unknown model", `{"dataset_id":"ds_ready","base_model":"gpt-2"}`, 400, "gpt-2"},
		{"malformed JSON", `{"dataset_id":`, 400, "not valid JSON"},
		{"a name with a newline", `{"dataset_id":"ds_ready","name":"a\nb"}`, 400, "control"},
	}
	for _, tt := range tests {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			var e api.ErrorBody
			status := a.postJob("alice-token", "", tt.body, &e)
			if status != tt.status || !strings.Contains(e.Error.Message, tt.message) {
				t.Errorf("POST /v1/jobs %s = %d %q, want %d and a message containing %q", tt.body, status, e.Error.Message, tt.status, tt.message)
			}
		})
	}
	if status := a.postJob("alice-token", "bad key", `{"dataset_id":"ds_ready"}`, nil); status != 400 {
		t.Errorf("an Idempotency-Key with a space = %d, want 400", status)
	}
	if n := a.queued(); n != 0 {
		t.Errorf("%d messages queued after only bad requests, want 0", n)
	}
}

func TestCreateJobIsIdempotent(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.readyDataset("alice", "ds_ready", pipeline.DatasetReady)
	body := `{"dataset_id":"ds_ready","preset":"fast","name":"first run"}`
	var wg sync.WaitGroup
	ids := make([]string, 3)
	statuses := make([]int, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var j api.JobView
			statuses[i] = a.postJob("alice-token", "key-123", body, &j)
			ids[i] = j.ID
		}()
	}
	wg.Wait()
	for i := range 3 {
		if statuses[i] != 201 || ids[i] == "" || ids[i] != ids[0] {
			t.Fatalf("3 requests with one key: statuses %v ids %v, want 201 and one job", statuses, ids)
		}
	}
	if n := a.queued(); n != 1 {
		t.Errorf("queued %d messages for one job, want exactly 1", n)
	}
	var list struct{ Jobs []api.JobView }
	a.call("GET", "/v1/jobs", "alice-token", "", &list)
	if len(list.Jobs) != 1 || list.Jobs[0].Status != pipeline.JobQueued || list.Jobs[0].Estimate == nil {
		t.Errorf("jobs = %+v, want one queued job with its estimate", list.Jobs)
	}
	var e api.ErrorBody
	if status := a.postJob("alice-token", "key-123", `{"dataset_id":"ds_ready","preset":"quality"}`, &e); status != 409 {
		t.Errorf("the same key with another body = %d %v, want 409", status, e)
	}
	if status := a.postJob("bob-token", "key-123", body, nil); status != 404 {
		t.Errorf("bob with alice's key (and no such dataset of his) = %d, want 404", status)
	}
}

func TestCancelQueuedJobIsFinal(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.readyDataset("alice", "ds_ready", pipeline.DatasetReady)
	var j api.JobView
	a.postJob("alice-token", "", `{"dataset_id":"ds_ready"}`, &j)
	var cancelled api.JobView
	for range 2 {
		if status := a.call("POST", "/v1/jobs/"+j.ID+"/cancel", "alice-token", "", &cancelled); status != 200 || cancelled.Status != pipeline.JobCancelled {
			t.Fatalf("cancel = %d %s, want 200 cancelled (and the same again)", status, cancelled.Status)
		}
	}
	// A dispatcher that now claims the job is refused: it stays cancelled.
	if _, err := pipeline.TransitionJob(context.Background(), a.store, "alice", j.ID, pipeline.JobDispatching, nil); pipeline.ErrorCode(err) != pipeline.EPrecondition {
		t.Errorf("claiming a cancelled job = %v, want a precondition error", err)
	}
	var evs struct{ Events []pipeline.Event }
	a.call("GET", "/v1/jobs/"+j.ID+"/events", "alice-token", "", &evs)
	if len(evs.Events) != 2 || evs.Events[0].Type != "created" || evs.Events[1].Type != "cancelled" {
		t.Errorf("events = %+v, want created then cancelled", evs.Events)
	}
}

func TestConcurrentCancelAndClaim(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.readyDataset("alice", "ds_ready", pipeline.DatasetReady)
	for i := range 20 {
		var j api.JobView
		a.postJob("alice-token", fmt.Sprintf("race-%d", i), `{"dataset_id":"ds_ready"}`, &j)
		var wg sync.WaitGroup
		var claimErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, claimErr = pipeline.TransitionJob(context.Background(), a.store, "alice", j.ID, pipeline.JobDispatching, nil)
		}()
		go func() {
			defer wg.Done()
			a.call("POST", "/v1/jobs/"+j.ID+"/cancel", "alice-token", "", nil)
		}()
		wg.Wait()
		got, _ := a.store.GetJob(context.Background(), "alice", j.ID)
		switch {
		case claimErr == nil && got.Status != pipeline.JobCancelRequested:
			t.Errorf("race %d: claim won, status %s, want cancel_requested", i, got.Status)
		case claimErr != nil && got.Status != pipeline.JobCancelled:
			t.Errorf("race %d: claim lost (%v), status %s, want cancelled", i, claimErr, got.Status)
		}
	}
}

func TestJobRoutesAreOwnerOnly(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.readyDataset("alice", "ds_ready", pipeline.DatasetReady)
	var j api.JobView
	a.postJob("alice-token", "", `{"dataset_id":"ds_ready"}`, &j)
	for _, rt := range []struct{ method, path string }{
		{"GET", "/v1/jobs/" + j.ID}, {"POST", "/v1/jobs/" + j.ID + "/cancel"}, {"GET", "/v1/jobs/" + j.ID + "/events"},
		{"GET", "/v1/jobs/" + j.ID + "/metrics"}, {"GET", "/v1/jobs/" + j.ID + "/artifacts"},
	} {
		t.Run(rt.method+" "+rt.path+" by another user is 404", func(t *testing.T) {
			if status := a.call(rt.method, rt.path, "bob-token", "", nil); status != 404 {
				t.Errorf("bob %s %s = %d, want 404", rt.method, rt.path, status)
			}
		})
	}
	var list struct{ Jobs []api.JobView }
	a.call("GET", "/v1/jobs", "bob-token", "", &list)
	if len(list.Jobs) != 0 {
		t.Errorf("bob lists %d jobs, want 0", len(list.Jobs))
	}
	if got, _ := a.store.GetJob(context.Background(), "alice", j.ID); got.Status != pipeline.JobQueued {
		t.Errorf("alice's job after bob's attempts is %s, want queued", got.Status)
	}
	if status := a.call("GET", "/v1/jobs?status=bogus", "alice-token", "", nil); status != 400 {
		t.Errorf("GET /v1/jobs?status=bogus = %d, want 400", status)
	}
}

func TestCatalogRoutes(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	for _, path := range []string{"/v1/presets", "/v1/gpus", "/v1/models"} {
		var out map[string]any
		if status := a.call("GET", path, "alice-token", "", &out); status != 200 || len(out) == 0 {
			t.Errorf("GET %s = %d %v, want 200 with content", path, status, out)
		}
	}
}

func TestADatasetInUseCannotBeDeleted(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.readyDataset("alice", "ds_ready", pipeline.DatasetReady)
	var j api.JobView
	a.postJob("alice-token", "", `{"dataset_id":"ds_ready"}`, &j)
	var e api.ErrorBody
	if status := a.call("DELETE", "/v1/datasets/ds_ready", "alice-token", "", &e); status != 409 || !strings.Contains(e.Error.Message, j.ID) {
		t.Errorf("DELETE of a dataset a queued job uses = %d %q, want 409 naming the job", status, e.Error.Message)
	}
	a.call("POST", "/v1/jobs/"+j.ID+"/cancel", "alice-token", "", nil)
	if status := a.call("DELETE", "/v1/datasets/ds_ready", "alice-token", "", nil); status != 204 {
		t.Errorf("DELETE after the job was cancelled = %d, want 204", status)
	}
}

// failingQueue refuses every send: the queue is down after the job was stored.
type failingQueue struct{ pipeline.Queue }

func (failingQueue) Send(ctx context.Context, m pipeline.Message) (string, error) {
	return "", errors.New("queue unavailable")
}

func TestAJobWhoseEnqueueFailedIsStoredAndEnqueuedLater(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.readyDataset("alice", "ds_ready", pipeline.DatasetReady)
	a.api.Jobs.Queue = failingQueue{a.queue}
	var j api.JobView
	if status := a.postJob("alice-token", "k1", `{"dataset_id":"ds_ready"}`, &j); status != 201 {
		t.Fatalf("POST /v1/jobs with the queue down = %d, want 201 (the job is stored)", status)
	}
	stored, err := a.store.GetJob(context.Background(), "alice", j.ID)
	if err != nil || stored.Enqueued || stored.Status != pipeline.JobQueued {
		t.Fatalf("stored job = %+v, %v; want queued and not enqueued", stored, err)
	}
	// The queue is back; reconciliation enqueues the job, once.
	a.api.Jobs.Queue = a.queue
	r := &reconcile.Reconciler{Jobs: a.api.Jobs, Scanner: a.store, EnqueueGrace: time.Nanosecond}
	if rep, err := r.Run(context.Background()); err != nil || rep.Enqueued != 1 {
		t.Fatalf("reconcile = %+v, %v; want the job enqueued", rep, err)
	}
	if n := a.queued(); n != 1 {
		t.Errorf("queue holds %d messages, want 1", n)
	}
}
