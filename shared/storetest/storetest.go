// Package storetest is the conformance suite every pipeline.Store adapter
// must pass, so that their semantics cannot drift apart.
package storetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// Run runs the suite. newStore returns an empty store; it is called once per
// subtest.
func Run(t *testing.T, newStore func(t *testing.T) pipeline.Store) {
	t.Run("a created dataset reads back equal", func(t *testing.T) { testDatasetRoundTrip(t, newStore(t)) })
	t.Run("creating an existing id conflicts", func(t *testing.T) { testCreateConflict(t, newStore(t)) })
	t.Run("another owner cannot read update or delete", func(t *testing.T) { testOwnerIsolation(t, newStore(t)) })
	t.Run("an update with a stale version conflicts and changes nothing", func(t *testing.T) { testStaleUpdate(t, newStore(t)) })
	t.Run("of concurrent updates from one version exactly one wins", func(t *testing.T) { testConcurrentUpdates(t, newStore(t)) })
	t.Run("lists are newest first and paginate without gaps or repeats", func(t *testing.T) { testPagination(t, newStore(t)) })
	t.Run("a cursor of one owner is refused for another", func(t *testing.T) { testForeignCursor(t, newStore(t)) })
	t.Run("deleted datasets disappear from reads and lists", func(t *testing.T) { testDelete(t, newStore(t)) })
	t.Run("jobs filter by status and follow status changes", func(t *testing.T) { testJobStatusIndex(t, newStore(t)) })
	t.Run("an over-long id names no record and cannot be created", func(t *testing.T) { testOverLongIDs(t, newStore(t)) })
	t.Run("a job's checkpoints read back equal after an update", func(t *testing.T) { testJobCheckpoints(t, newStore(t)) })
	t.Run("a deleted job and its log disappear, another's stay", func(t *testing.T) { testDeleteJob(t, newStore(t)) })
}

func testJobCheckpoints(t *testing.T, s pipeline.Store) {
	ctx := context.Background()
	j := job("alice", 1, pipeline.JobRunning)
	must(t, s.CreateJob(ctx, j))
	loss := 1.25
	for step := int64(10); step <= 30; step += 10 {
		j.Checkpoints = append(j.Checkpoints, pipeline.Checkpoint{ID: pipeline.CheckpointID(step, 2), Step: step, Attempt: 2, TotalSteps: 100,
			Epoch: float64(step) / 100, Reason: "interval", Partial: true, TrainSeconds: float64(step), EvalLoss: &loss, CreatedAt: base,
			Files: []pipeline.CheckpointFile{{Name: "adapter_model.safetensors", Key: pipeline.CheckpointKey("alice", j.ID, 2, step, "adapter_model.safetensors"),
				SizeBytes: 92227400, SHA256: strings.Repeat("e3", 32)}}})
	}
	must(t, s.UpdateJob(ctx, j))
	got, err := s.GetJob(ctx, "alice", j.ID)
	must(t, err)
	if len(got.Checkpoints) != 3 || got.Checkpoints[2].Step != 30 || got.Checkpoints[2].EvalLoss == nil || *got.Checkpoints[2].EvalLoss != loss ||
		got.Checkpoints[0].Files[0] != j.Checkpoints[0].Files[0] || !got.Checkpoints[1].CreatedAt.Equal(base) {
		t.Errorf("GetJob checkpoints = %+v, want %+v", got.Checkpoints, j.Checkpoints)
	}
	if c := got.LatestCheckpoint(); c == nil || c.ID != "ck_30_2" {
		t.Errorf("LatestCheckpoint = %+v, want ck_30_2", c)
	}
}

var base = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func newDataset(owner string, i int) *pipeline.Dataset {
	at := base.Add(time.Duration(i) * time.Second)
	return &pipeline.Dataset{
		ID: fmt.Sprintf("ds_%04d", i), Owner: owner, Name: fmt.Sprintf("set %d", i),
		Status: pipeline.DatasetAwaitingUpload, SizeBytes: int64(1000 + i),
		ObjectKey: fmt.Sprintf("datasets/%s/ds_%04d.jsonl", owner, i), CreatedAt: at, UpdatedAt: at,
	}
}

func job(owner string, i int, status pipeline.JobStatus) *pipeline.Job {
	at := base.Add(time.Duration(i) * time.Second)
	return &pipeline.Job{
		ID: fmt.Sprintf("job_%04d", i), Owner: owner, DatasetID: "ds_0001", BaseModel: "m", GPUType: "g",
		Preset: "balanced", Status: status, CreatedAt: at, UpdatedAt: at,
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if got := pipeline.ErrorCode(err); got != code {
		t.Fatalf("%s: error %v (code %q), want code %q", what, err, got, code)
	}
}

func testDatasetRoundTrip(t *testing.T, s pipeline.Store) {
	ctx := context.Background()
	d := newDataset("alice", 1)
	d.SHA256 = "ab12"
	d.Validation = &pipeline.ValidationSummary{Examples: 12, Tokens: pipeline.TokenCounts{Total: 3400, Trained: 1200}}
	must(t, s.CreateDataset(ctx, d))
	if d.Version != 1 {
		t.Errorf("Version after create = %d, want 1", d.Version)
	}
	got, err := s.GetDataset(ctx, "alice", d.ID)
	must(t, err)
	if got.Name != d.Name || got.SizeBytes != d.SizeBytes || got.SHA256 != d.SHA256 || got.ObjectKey != d.ObjectKey ||
		!got.CreatedAt.Equal(d.CreatedAt) || got.Version != 1 || got.Validation == nil || got.Validation.Tokens != d.Validation.Tokens || got.Validation.Examples != 12 || got.Owner != "alice" {
		t.Errorf("GetDataset = %+v, want %+v", got, d)
	}
	_, err = s.GetDataset(ctx, "alice", "ds_missing")
	wantCode(t, "GetDataset(missing)", err, pipeline.ENotFound)
}

func testCreateConflict(t *testing.T, s pipeline.Store) {
	ctx := context.Background()
	must(t, s.CreateDataset(ctx, newDataset("alice", 1)))
	d := newDataset("alice", 1)
	d.Name = "other"
	wantCode(t, "CreateDataset(same id)", s.CreateDataset(ctx, d), pipeline.EConflict)
	got, err := s.GetDataset(ctx, "alice", d.ID)
	must(t, err)
	if got.Name != "set 1" {
		t.Errorf("after a conflicting create, Name = %q, want the original %q", got.Name, "set 1")
	}
	must(t, s.CreateJob(ctx, job("alice", 1, pipeline.JobQueued)))
	wantCode(t, "CreateJob(same id)", s.CreateJob(ctx, job("alice", 1, pipeline.JobQueued)), pipeline.EConflict)
}

func testOwnerIsolation(t *testing.T, s pipeline.Store) {
	ctx := context.Background()
	must(t, s.CreateDataset(ctx, newDataset("alice", 1)))
	must(t, s.CreateJob(ctx, job("alice", 1, pipeline.JobQueued)))
	_, err := s.GetDataset(ctx, "bob", "ds_0001")
	wantCode(t, "bob GetDataset(alice's)", err, pipeline.ENotFound)
	_, err = s.GetJob(ctx, "bob", "job_0001")
	wantCode(t, "bob GetJob(alice's)", err, pipeline.ENotFound)
	steal := newDataset("bob", 1)
	steal.Version = 1
	wantCode(t, "bob UpdateDataset(alice's id)", s.UpdateDataset(ctx, steal), pipeline.ENotFound)
	wantCode(t, "bob DeleteDataset(alice's)", s.DeleteDataset(ctx, "bob", "ds_0001"), pipeline.ENotFound)
	list, _, err := s.ListDatasets(ctx, "bob", pipeline.Page{})
	must(t, err)
	jl, _, err := s.ListJobs(ctx, "bob", pipeline.JobFilter{}, pipeline.Page{})
	must(t, err)
	if len(list) != 0 || len(jl) != 0 {
		t.Errorf("bob lists %d datasets and %d jobs of alice's, want 0", len(list), len(jl))
	}
	if _, err := s.GetDataset(ctx, "alice", "ds_0001"); err != nil {
		t.Errorf("alice's dataset after bob's attempts: %v", err)
	}
}

func testStaleUpdate(t *testing.T, s pipeline.Store) {
	ctx := context.Background()
	d := newDataset("alice", 1)
	must(t, s.CreateDataset(ctx, d))
	stale := *d
	d.Status = pipeline.DatasetValidating
	must(t, s.UpdateDataset(ctx, d))
	if d.Version != 2 {
		t.Errorf("Version after update = %d, want 2", d.Version)
	}
	stale.Status = pipeline.DatasetReady
	wantCode(t, "UpdateDataset(stale)", s.UpdateDataset(ctx, &stale), pipeline.EConflict)
	if stale.Version != 1 {
		t.Errorf("a failed update changed the caller's Version to %d, want 1", stale.Version)
	}
	got, err := s.GetDataset(ctx, "alice", d.ID)
	must(t, err)
	if got.Status != pipeline.DatasetValidating || got.Version != 2 {
		t.Errorf("after a stale update: status %q version %d, want %q 2", got.Status, got.Version, pipeline.DatasetValidating)
	}
	missing := newDataset("alice", 9)
	missing.Version = 1
	wantCode(t, "UpdateDataset(missing)", s.UpdateDataset(ctx, missing), pipeline.ENotFound)
}

func testConcurrentUpdates(t *testing.T, s pipeline.Store) {
	ctx := context.Background()
	j := job("alice", 1, pipeline.JobQueued)
	must(t, s.CreateJob(ctx, j))
	const n = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := *j
			c.Status = pipeline.JobDispatching
			c.Attempt = i + 1
			err := s.UpdateJob(ctx, &c)
			mu.Lock()
			defer mu.Unlock()
			switch pipeline.ErrorCode(err) {
			case "":
				wins++
			case pipeline.EConflict:
				conflicts++
			default:
				t.Errorf("concurrent UpdateJob: %v", err)
			}
		}(i)
	}
	wg.Wait()
	if wins != 1 || conflicts != n-1 {
		t.Errorf("%d concurrent updates: %d won, %d conflicted; want 1 and %d", n, wins, conflicts, n-1)
	}
	got, err := s.GetJob(ctx, "alice", j.ID)
	must(t, err)
	if got.Version != 2 || got.Status != pipeline.JobDispatching {
		t.Errorf("after the race: version %d status %q, want 2 %q", got.Version, got.Status, pipeline.JobDispatching)
	}
}

func testPagination(t *testing.T, s pipeline.Store) {
	ctx := context.Background()
	const n = 23
	// Created out of order, with two sharing a timestamp.
	for _, i := range []int{5, 1, 9, 2, 14, 3, 22, 4, 6, 7, 8, 10, 11, 12, 13, 15, 16, 17, 18, 19, 20, 21, 0} {
		d := newDataset("alice", i)
		if i == 21 {
			d.CreatedAt = base.Add(20 * time.Second)
		}
		must(t, s.CreateDataset(ctx, d))
	}
	must(t, s.CreateDataset(ctx, newDataset("bob", 100)))
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > n {
			t.Fatal("pagination does not end")
		}
		list, next, err := s.ListDatasets(ctx, "alice", pipeline.Page{Cursor: cursor, Limit: 5})
		must(t, err)
		if len(list) > 5 {
			t.Fatalf("page of %d, want at most 5", len(list))
		}
		for _, d := range list {
			got = append(got, d.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	var want []string
	want = append(want, "ds_0022", "ds_0021", "ds_0020") // 21 and 20 share a time: id descending
	for i := 19; i >= 0; i-- {
		want = append(want, fmt.Sprintf("ds_%04d", i))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("paged list = %v, want %v", got, want)
	}
	all, next, err := s.ListDatasets(ctx, "alice", pipeline.Page{Limit: 1000})
	must(t, err)
	if len(all) != pipeline.MaxPageSize && len(all) != n {
		t.Errorf("a limit of 1000 returned %d, want all %d (under the maximum page size)", len(all), n)
	}
	if next != "" {
		t.Errorf("a page holding everything returned cursor %q, want none", next)
	}
	_, _, err = s.ListDatasets(ctx, "alice", pipeline.Page{Cursor: "not-a-cursor!"})
	wantCode(t, "ListDatasets(garbage cursor)", err, pipeline.EInvalid)
}

func testForeignCursor(t *testing.T, s pipeline.Store) {
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		must(t, s.CreateDataset(ctx, newDataset("alice", i)))
		must(t, s.CreateDataset(ctx, newDataset("bob", i+10)))
	}
	_, next, err := s.ListDatasets(ctx, "alice", pipeline.Page{Limit: 1})
	must(t, err)
	if next == "" {
		t.Fatal("no cursor after a first page of 1 out of 3")
	}
	list, _, err := s.ListDatasets(ctx, "bob", pipeline.Page{Cursor: next, Limit: 10})
	if err == nil {
		for _, d := range list {
			if d.Owner != "bob" {
				t.Fatalf("bob, using alice's cursor, read %s of %s", d.ID, d.Owner)
			}
		}
		return
	}
	wantCode(t, "bob ListDatasets(alice's cursor)", err, pipeline.EInvalid)
}

func testDelete(t *testing.T, s pipeline.Store) {
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		must(t, s.CreateDataset(ctx, newDataset("alice", i)))
	}
	must(t, s.DeleteDataset(ctx, "alice", "ds_0001"))
	_, err := s.GetDataset(ctx, "alice", "ds_0001")
	wantCode(t, "GetDataset(deleted)", err, pipeline.ENotFound)
	wantCode(t, "DeleteDataset(twice)", s.DeleteDataset(ctx, "alice", "ds_0001"), pipeline.ENotFound)
	list, _, err := s.ListDatasets(ctx, "alice", pipeline.Page{})
	must(t, err)
	if len(list) != 2 || list[0].ID != "ds_0002" || list[1].ID != "ds_0000" {
		t.Errorf("list after delete = %v, want [ds_0002 ds_0000]", ids(list))
	}
	// The id can be used again.
	must(t, s.CreateDataset(ctx, newDataset("alice", 1)))
}

func testDeleteJob(t *testing.T, s pipeline.Store) {
	eraser, ok := s.(interface {
		pipeline.JobEraser
		pipeline.JobLog
	})
	if !ok {
		t.Fatalf("%T cannot delete jobs (pipeline.JobEraser)", s)
	}
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		must(t, s.CreateJob(ctx, job("alice", i, pipeline.JobCompleted)))
		id := fmt.Sprintf("job_%04d", i)
		// More points than one batch of deletes, and events.
		var pts []pipeline.MetricPoint
		for step := 1; step <= 60; step++ {
			pts = append(pts, pipeline.MetricPoint{Attempt: 1, Step: step, TotalSteps: 60, Loss: 1, Time: base})
		}
		must(t, eraser.PutMetrics(ctx, "alice", id, pts))
		for e := 0; e < 3; e++ {
			if _, err := eraser.AppendEvent(ctx, &pipeline.Event{ID: fmt.Sprintf("ev%d", e), Owner: "alice", JobID: id, Type: "stage", Time: base}); err != nil {
				t.Fatal(err)
			}
		}
	}
	wantCode(t, "bob DeleteJob(alice's)", eraser.DeleteJob(ctx, "bob", "job_0000"), pipeline.ENotFound)
	must(t, eraser.DeleteJobLog(ctx, "alice", "job_0000"))
	must(t, eraser.DeleteJob(ctx, "alice", "job_0000"))
	_, err := s.GetJob(ctx, "alice", "job_0000")
	wantCode(t, "GetJob(deleted)", err, pipeline.ENotFound)
	wantCode(t, "DeleteJob(twice)", eraser.DeleteJob(ctx, "alice", "job_0000"), pipeline.ENotFound)
	must(t, eraser.DeleteJobLog(ctx, "alice", "job_0000")) // nothing left: no error
	for _, st := range []pipeline.JobStatus{"", pipeline.JobCompleted} {
		list, _, err := s.ListJobs(ctx, "alice", pipeline.JobFilter{Status: st}, pipeline.Page{})
		must(t, err)
		if len(list) != 1 || list[0].ID != "job_0001" {
			t.Errorf("jobs (status %q) after delete = %v, want [job_0001]", st, jobIDs(list))
		}
	}
	pts, _, err := eraser.ListMetrics(ctx, "alice", "job_0000", pipeline.Page{Limit: 100})
	must(t, err)
	evs, _, err := eraser.ListEvents(ctx, "alice", "job_0000", pipeline.Page{Limit: 100})
	must(t, err)
	if len(pts) != 0 || len(evs) != 0 {
		t.Errorf("the deleted job's log: %d points, %d events; want none", len(pts), len(evs))
	}
	pts, _, err = eraser.ListMetrics(ctx, "alice", "job_0001", pipeline.Page{Limit: 100})
	must(t, err)
	evs, _, err = eraser.ListEvents(ctx, "alice", "job_0001", pipeline.Page{Limit: 100})
	must(t, err)
	if len(pts) != 60 || len(evs) != 3 {
		t.Errorf("the other job's log: %d points, %d events; want 60 and 3", len(pts), len(evs))
	}
	// An event id can be used again by a job of the same id.
	must(t, s.CreateJob(ctx, job("alice", 0, pipeline.JobQueued)))
	if created, err := eraser.AppendEvent(ctx, &pipeline.Event{ID: "ev0", Owner: "alice", JobID: "job_0000", Type: "stage", Time: base}); err != nil || !created {
		t.Errorf("AppendEvent after the log was deleted = %v, %v; want a new event", created, err)
	}
}

func ids(list []*pipeline.Dataset) []string {
	var out []string
	for _, d := range list {
		out = append(out, d.ID)
	}
	return out
}

func testJobStatusIndex(t *testing.T, s pipeline.Store) {
	ctx := context.Background()
	for i := 0; i < 6; i++ {
		st := pipeline.JobQueued
		if i%2 == 1 {
			st = pipeline.JobRunning
		}
		must(t, s.CreateJob(ctx, job("alice", i, st)))
	}
	must(t, s.CreateJob(ctx, job("bob", 50, pipeline.JobQueued)))
	queued, _, err := s.ListJobs(ctx, "alice", pipeline.JobFilter{Status: pipeline.JobQueued}, pipeline.Page{})
	must(t, err)
	if got := jobIDs(queued); fmt.Sprint(got) != "[job_0004 job_0002 job_0000]" {
		t.Errorf("queued jobs = %v, want [job_0004 job_0002 job_0000]", got)
	}
	j, err := s.GetJob(ctx, "alice", "job_0002")
	must(t, err)
	j.Status = pipeline.JobCancelled
	must(t, s.UpdateJob(ctx, j))
	queued, _, err = s.ListJobs(ctx, "alice", pipeline.JobFilter{Status: pipeline.JobQueued}, pipeline.Page{})
	must(t, err)
	if got := jobIDs(queued); fmt.Sprint(got) != "[job_0004 job_0000]" {
		t.Errorf("queued jobs after a cancel = %v, want [job_0004 job_0000]", got)
	}
	cancelled, _, err := s.ListJobs(ctx, "alice", pipeline.JobFilter{Status: pipeline.JobCancelled}, pipeline.Page{})
	must(t, err)
	if got := jobIDs(cancelled); fmt.Sprint(got) != "[job_0002]" {
		t.Errorf("cancelled jobs = %v, want [job_0002]", got)
	}
	all, _, err := s.ListJobs(ctx, "alice", pipeline.JobFilter{}, pipeline.Page{Limit: 4})
	must(t, err)
	if got := jobIDs(all); fmt.Sprint(got) != "[job_0005 job_0004 job_0003 job_0002]" {
		t.Errorf("first page of all jobs = %v, want [job_0005 job_0004 job_0003 job_0002]", got)
	}
}

func jobIDs(list []*pipeline.Job) []string {
	var out []string
	for _, j := range list {
		out = append(out, j.ID)
	}
	return out
}

// testOverLongIDs: an id or owner over the limits is not found by reads,
// updates and deletes (DynamoDB would refuse it as a key), and is refused
// on create.
func testOverLongIDs(t *testing.T, s pipeline.Store) {
	ctx := context.Background()
	longID := "ds_" + strings.Repeat("x", 2000)
	longJob := "job_" + strings.Repeat("y", 2000)
	longOwner := strings.Repeat("o", 3000)
	_, err := s.GetDataset(ctx, "alice", longID)
	wantCode(t, "GetDataset(2,000-byte id)", err, pipeline.ENotFound)
	_, err = s.GetDataset(ctx, longOwner, "ds_0001")
	wantCode(t, "GetDataset(3,000-byte owner)", err, pipeline.ENotFound)
	_, err = s.GetJob(ctx, "alice", longJob)
	wantCode(t, "GetJob(2,000-byte id)", err, pipeline.ENotFound)
	wantCode(t, "DeleteDataset(2,000-byte id)", s.DeleteDataset(ctx, "alice", longID), pipeline.ENotFound)
	d := newDataset("alice", 1)
	d.ID, d.Version = longID, 1
	wantCode(t, "UpdateDataset(2,000-byte id)", s.UpdateDataset(ctx, d), pipeline.ENotFound)
	j := job("alice", 1, pipeline.JobQueued)
	j.ID, j.Version = longJob, 1
	wantCode(t, "UpdateJob(2,000-byte id)", s.UpdateJob(ctx, j), pipeline.ENotFound)
	d.Version = 0
	wantCode(t, "CreateDataset(2,000-byte id)", s.CreateDataset(ctx, d), pipeline.EInvalid)
	j.Version = 0
	wantCode(t, "CreateJob(2,000-byte id)", s.CreateJob(ctx, j), pipeline.EInvalid)
	fits := newDataset("alice", 2)
	fits.ID = "ds_" + strings.Repeat("z", pipeline.MaxIDBytes-3)
	must(t, s.CreateDataset(ctx, fits))
	if _, err := s.GetDataset(ctx, "alice", fits.ID); err != nil {
		t.Errorf("GetDataset(an id of exactly %d bytes) = %v, want the record", pipeline.MaxIDBytes, err)
	}
}
