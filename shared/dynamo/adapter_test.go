package dynamo_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/dynamo"
	"github.com/brightrun/brightrun/shared/pipeline"
)

func TestNewRefusesBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts dynamo.Options
	}{
		{"no table", dynamo.Options{CursorKey: cursorKey}},
		{"no cursor key", dynamo.Options{Table: "t"}},
		{"a short cursor key", dynamo.Options{Table: "t", CursorKey: []byte("short")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := dynamo.New(nil, tt.opts); err == nil {
				t.Errorf("New(%+v) succeeded, want an error", tt.opts)
			}
		})
	}
}

func TestCursorsCannotBeForged(t *testing.T) {
	t.Parallel()
	s, client := mustNewStoreClient(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		must(t, s.CreateDataset(ctx, newDataset("alice", i)))
		must(t, s.CreateDataset(ctx, newDataset("bob", i)))
		must(t, s.CreateJob(ctx, newJob("alice", i, pipeline.JobQueued)))
	}
	_, cur, err := s.ListDatasets(ctx, "alice", pipeline.Page{Limit: 1})
	must(t, err)
	_, jobCur, err := s.ListJobs(ctx, "alice", pipeline.JobFilter{Status: pipeline.JobQueued}, pipeline.Page{Limit: 1})
	must(t, err)
	if cur == "" || jobCur == "" {
		t.Fatal("no cursor after a first page of 1 out of 3")
	}
	// The same table read by a store with another cursor key.
	other, err := dynamo.New(client, dynamo.Options{Table: s.Table(), CursorKey: []byte(strings.Repeat("k", 32))})
	must(t, err)
	payload, sig, _ := strings.Cut(cur, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	rewritten := base64.RawURLEncoding.EncodeToString([]byte(strings.ReplaceAll(string(raw), "alice", "bob")))

	tests := []struct {
		name string
		list func() error
	}{
		{"alice's cursor used by bob", func() error {
			_, _, err := s.ListDatasets(ctx, "bob", pipeline.Page{Cursor: cur})
			return err
		}},
		{"a dataset cursor used for jobs", func() error {
			_, _, err := s.ListJobs(ctx, "alice", pipeline.JobFilter{}, pipeline.Page{Cursor: cur})
			return err
		}},
		{"a queued-jobs cursor used for running jobs", func() error {
			_, _, err := s.ListJobs(ctx, "alice", pipeline.JobFilter{Status: pipeline.JobRunning}, pipeline.Page{Cursor: jobCur})
			return err
		}},
		{"a cursor rewritten for bob with alice's signature", func() error {
			_, _, err := s.ListDatasets(ctx, "bob", pipeline.Page{Cursor: rewritten + "." + sig})
			return err
		}},
		{"a cursor signed with another key", func() error {
			_, _, err := other.ListDatasets(ctx, "alice", pipeline.Page{Cursor: cur})
			return err
		}},
		{"a cursor without its signature", func() error {
			_, _, err := s.ListDatasets(ctx, "alice", pipeline.Page{Cursor: payload})
			return err
		}},
		{"a cursor with one signature character changed", func() error {
			_, _, err := s.ListDatasets(ctx, "alice", pipeline.Page{Cursor: payload + "." + flip(sig)})
			return err
		}},
		{"raw JSON", func() error {
			_, _, err := s.ListDatasets(ctx, "alice", pipeline.Page{Cursor: `{"pk":"OWNER#bob"}`})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantCode(t, "list", tt.list(), pipeline.EInvalid) })
	}
	// And the genuine cursor still works.
	list, _, err := s.ListDatasets(ctx, "alice", pipeline.Page{Cursor: cur, Limit: 10})
	must(t, err)
	if len(list) != 2 || list[0].ID != "ds_0001" {
		t.Errorf("second page = %d datasets, want ds_0001 and ds_0000", len(list))
	}
}

func flip(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func randomText(n int) string {
	b := make([]byte, n*3/4+3)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(b)[:n]
}

func TestLargeRecords(t *testing.T) {
	t.Parallel()
	s := MustNewStore(t)
	ctx := context.Background()
	// A summary far larger than any validator produces: 20,000 distinct
	// issue codes, about 700 KB of JSON that compresses well.
	big := &pipeline.ValidationSummary{Examples: 3, ErrorCounts: map[string]int64{}}
	for i := 0; i < 20000; i++ {
		big.ErrorCounts[(fmt.Sprintf("some_rather_long_issue_code_%06d", i))] = int64(i)
	}
	t.Run("a large summary is stored compressed and reads back whole", func(t *testing.T) {
		d := newDataset("alice", 1)
		d.Validation = big
		must(t, s.CreateDataset(ctx, d))
		got, err := s.GetDataset(ctx, "alice", d.ID)
		must(t, err)
		if got.Validation == nil || len(got.Validation.ErrorCounts) != 20000 || got.Validation.ErrorCounts["some_rather_long_issue_code_019999"] != 19999 {
			t.Fatalf("read back a summary of %d codes, want 20000", len(got.Validation.ErrorCounts))
		}
		got.Status = pipeline.DatasetInvalid
		must(t, s.UpdateDataset(ctx, got))
		list, _, err := s.ListDatasets(ctx, "alice", pipeline.Page{})
		must(t, err)
		if len(list) != 1 || list[0].Validation == nil || len(list[0].Validation.ErrorCounts) != 20000 || list[0].Status != pipeline.DatasetInvalid {
			t.Errorf("listed %d datasets, want the updated one with its whole summary", len(list))
		}
	})
	t.Run("an incompressible record over 400 KB is refused as too large and nothing changes", func(t *testing.T) {
		d := newDataset("alice", 2)
		must(t, s.CreateDataset(ctx, d))
		huge := *d
		huge.Error = randomText(600 << 10)
		err := s.UpdateDataset(ctx, &huge)
		wantCode(t, "UpdateDataset(600 KB of random text)", err, pipeline.ETooLarge)
		if !strings.Contains(pipeline.ErrorMessage(err), "400") || huge.Version != 1 {
			t.Errorf("error %q (version %d), want the 400 KB limit named and the version unchanged", pipeline.ErrorMessage(err), huge.Version)
		}
		got, err := s.GetDataset(ctx, "alice", d.ID)
		must(t, err)
		if got.Error != "" || got.Version != 1 {
			t.Errorf("after a refused update: version %d, error of %d bytes; want 1 and none", got.Version, len(got.Error))
		}
		j := newJob("alice", 3, pipeline.JobQueued)
		j.Name = randomText(600 << 10)
		wantCode(t, "CreateJob(600 KB name)", s.CreateJob(ctx, j), pipeline.ETooLarge)
		_, err = s.GetJob(ctx, "alice", j.ID)
		wantCode(t, "GetJob(refused)", err, pipeline.ENotFound)
	})
}

func TestJobIndexes(t *testing.T) {
	t.Parallel()
	s := MustNewStore(t)
	ctx := context.Background()
	now := base.Add(time.Hour)
	type spec struct {
		owner  string
		i      int
		status pipeline.JobStatus
		heard  time.Duration // before now
		runPod string
	}
	for _, sp := range []spec{
		{"alice", 1, pipeline.JobRunning, 30 * time.Minute, "rp-1"},
		{"bob", 2, pipeline.JobRunning, 2 * time.Minute, "rp-2"},
		{"alice", 3, pipeline.JobRunning, 50 * time.Minute, "rp-3"},
		{"carol", 4, pipeline.JobCompleted, 55 * time.Minute, "rp-4"},
		{"carol", 5, pipeline.JobSubmitted, 40 * time.Minute, "rp-5"},
	} {
		j := newJob(sp.owner, sp.i, sp.status)
		j.RunPodID = sp.runPod
		hb := now.Add(-sp.heard)
		j.HeartbeatAt = &hb
		must(t, s.CreateJob(ctx, j))
	}
	t.Run("running jobs of every owner, spread over shards, each listed once by pages of one", func(t *testing.T) {
		var got []string
		cursor := ""
		for pages := 0; pages < 10; pages++ {
			list, next, err := s.ListJobsByStatus(ctx, pipeline.JobRunning, pipeline.Page{Limit: 1, Cursor: cursor})
			must(t, err)
			for _, j := range list {
				got = append(got, j.Owner+"/"+j.ID)
			}
			if cursor = next; cursor == "" {
				break
			}
		}
		sort.Strings(got)
		if want := "[alice/job_0001 alice/job_0003 bob/job_0002]"; fmt.Sprint(got) != want {
			t.Errorf("running jobs = %v, want %v", got, want)
		}
	})
	t.Run("a terminal status is not listed across owners", func(t *testing.T) {
		_, _, err := s.ListJobsByStatus(ctx, pipeline.JobCompleted, pipeline.Page{})
		wantCode(t, "ListJobsByStatus(completed)", err, pipeline.EInvalid)
	})
	t.Run("a job leaves the index of unfinished jobs when it ends", func(t *testing.T) {
		j, err := s.GetJob(ctx, "carol", "job_0005")
		must(t, err)
		list, _, err := s.ListJobsByStatus(ctx, pipeline.JobSubmitted, pipeline.Page{})
		must(t, err)
		if len(list) != 1 {
			t.Fatalf("submitted jobs = %d, want 1", len(list))
		}
		j.Status = pipeline.JobFailed
		must(t, s.UpdateJob(ctx, j))
		list, _, err = s.ListJobsByStatus(ctx, pipeline.JobSubmitted, pipeline.Page{})
		must(t, err)
		if len(list) != 0 {
			t.Errorf("submitted jobs after it failed = %d, want 0", len(list))
		}
	})
	t.Run("a job is found by its RunPod id, and not by a superseded one", func(t *testing.T) {
		j, err := s.GetJobByRunPodID(ctx, "rp-2")
		must(t, err)
		if j.Owner != "bob" || j.ID != "job_0002" {
			t.Errorf("GetJobByRunPodID(rp-2) = %s/%s, want bob/job_0002", j.Owner, j.ID)
		}
		j.RunPodID, j.Attempt = "rp-2b", 2
		must(t, s.UpdateJob(ctx, j))
		_, err = s.GetJobByRunPodID(ctx, "rp-2")
		wantCode(t, "GetJobByRunPodID(superseded)", err, pipeline.ENotFound)
		got, err := s.GetJobByRunPodID(ctx, "rp-2b")
		must(t, err)
		if got.Attempt != 2 {
			t.Errorf("GetJobByRunPodID(rp-2b) attempt = %d, want 2", got.Attempt)
		}
		_, err = s.GetJobByRunPodID(ctx, "rp-none")
		wantCode(t, "GetJobByRunPodID(unknown)", err, pipeline.ENotFound)
	})
}

func TestConditionalWritesSayWhatFailed(t *testing.T) {
	t.Parallel()
	s := MustNewStore(t)
	ctx := context.Background()
	j := newJob("alice", 1, pipeline.JobQueued)
	must(t, s.CreateJob(ctx, j))
	stale := *j
	must(t, s.UpdateJob(ctx, j))
	tests := []struct {
		name string
		err  error
		code string
	}{
		{"a stale job update", s.UpdateJob(ctx, &stale), pipeline.EConflict},
		{"an update of a missing job", s.UpdateJob(ctx, newJob("alice", 9, pipeline.JobQueued)), pipeline.ENotFound},
		{"a job of another owner", s.UpdateJob(ctx, &pipeline.Job{ID: j.ID, Owner: "bob", Version: 2, Status: pipeline.JobQueued}), pipeline.ENotFound},
		{"a record without an owner", s.CreateJob(ctx, &pipeline.Job{ID: "x"}), pipeline.EInvalid},
		{"deleting a missing dataset", s.DeleteDataset(ctx, "alice", "nope"), pipeline.ENotFound},
		{"an unknown status filter", func() error {
			_, _, err := s.ListJobs(ctx, "alice", pipeline.JobFilter{Status: "paused"}, pipeline.Page{})
			return err
		}(), pipeline.EInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantCode(t, tt.name, tt.err, tt.code) })
	}
}

func TestCreateTableIsIdempotent(t *testing.T) {
	t.Parallel()
	s, client := mustNewStoreClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := dynamo.CreateTable(ctx, client, s.Table()); err != nil {
		t.Errorf("CreateTable of an existing table: %v", err)
	}
}
