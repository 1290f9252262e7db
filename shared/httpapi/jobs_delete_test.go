package httpapi_test

import (
	"context"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// DELETE /v1/jobs/{id}: an ended job goes with every object and record
// stored of it (its checkpoints included); a running one, another owner's
// or one already gone is refused, and nothing else is touched.
func TestDeletingAJobDeletesItsCheckpointsAdapterAndLog(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.api.Jobs.Eraser = a.store
	a.handsOutURLs()
	a.submittedJob("job_d")
	a.submittedJob("job_keep")
	ctx := context.Background()
	var seq int64
	if status, _ := a.callback("alice", "job_d", 2, 1, contract.TypeStarted, `{"worker_id":"w1","runpod_job_id":"rp-1","worker_version":"1","gpu":null}`, nil); status != 200 {
		t.Fatalf("started = %d", status)
	}
	seq = 1
	for _, step := range []int64{10, 20} {
		if status := a.storeCheckpoint("job_d", 2, &seq, step, true); status != 200 {
			t.Fatalf("checkpoint %d = %d", step, status)
		}
	}
	// An adapter file of the first attempt, left by a run that failed.
	stray := pipeline.ArtifactKey("alice", "job_d", 1, contract.ArtifactAdapterModel)
	if _, err := a.blobs.Put(ctx, stray, strings.NewReader("partial"), 7); err != nil {
		t.Fatal(err)
	}
	// Half a checkpoint, uploaded before a cancel: no record names it.
	orphan := pipeline.CheckpointKey("alice", "job_d", 2, 30, "training_state.safetensors")
	if _, err := a.blobs.Put(ctx, orphan, strings.NewReader("half"), 4); err != nil {
		t.Fatal(err)
	}
	keep := pipeline.ArtifactKey("alice", "job_keep", 2, contract.ArtifactAdapterModel)
	if _, err := a.blobs.Put(ctx, keep, strings.NewReader("other"), 5); err != nil {
		t.Fatal(err)
	}
	if status := a.call("DELETE", "/v1/jobs/job_d", "alice-token", "", nil); status != 409 {
		t.Errorf("DELETE of a running job = %d, want 409 (cancel it first)", status)
	}
	j := a.job("job_d")
	var keys []string
	for _, c := range j.Checkpoints {
		for _, f := range c.Files {
			keys = append(keys, f.Key)
		}
	}
	if len(keys) != 6 {
		t.Fatalf("checkpoint files = %v, want 2 checkpoints of 3 files", keys)
	}
	seq++
	if status, _ := a.callback("alice", "job_d", 2, seq, contract.TypeFailed, `{"code":"oom","message":"out of memory","advice":"lower batch_size"}`, nil); status != 200 {
		t.Fatalf("failed = %d", status)
	}
	if status := a.call("DELETE", "/v1/jobs/job_d", "bob-token", "", nil); status != 404 {
		t.Errorf("bob's DELETE of alice's job = %d, want 404", status)
	}
	if status := a.call("DELETE", "/v1/jobs/job_d", "alice-token", "", nil); status != 204 {
		t.Fatalf("DELETE of the failed job = %d, want 204", status)
	}
	for _, k := range append(keys, stray, orphan) {
		if _, err := a.blobs.Stat(ctx, k); pipeline.ErrorCode(err) != pipeline.ENotFound {
			t.Errorf("%s after the delete: %v, want gone", k, err)
		}
	}
	if _, err := a.blobs.Stat(ctx, keep); err != nil {
		t.Errorf("another job's file after the delete: %v, want kept", err)
	}
	if status := a.call("GET", "/v1/jobs/job_d", "alice-token", "", nil); status != 404 {
		t.Errorf("GET of the deleted job = %d, want 404", status)
	}
	if evs, _, _ := a.store.ListEvents(ctx, "alice", "job_d", pipeline.Page{Limit: 100}); len(evs) != 0 {
		t.Errorf("the deleted job's events = %d, want none", len(evs))
	}
	if status := a.call("DELETE", "/v1/jobs/job_d", "alice-token", "", nil); status != 404 {
		t.Errorf("a second DELETE = %d, want 404", status)
	}
	if _, err := a.store.GetJob(ctx, "alice", "job_keep"); err != nil {
		t.Errorf("the other job after the delete: %v", err)
	}
}
