package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// FullStore is a store that also keeps job logs and scans jobs by status.
type FullStore interface {
	pipeline.Store
	pipeline.JobLog
	pipeline.JobScanner
}

// RunJobLog runs the suite of pipeline.JobLog and pipeline.JobScanner.
func RunJobLog(t *testing.T, newStore func(t *testing.T) FullStore) {
	t.Run("events are kept in order and a repeated id is stored once", func(t *testing.T) { testEvents(t, newStore(t)) })
	t.Run("metric points order by attempt and step and a repeat replaces", func(t *testing.T) { testMetrics(t, newStore(t)) })
	t.Run("notifications are per owner and newest first", func(t *testing.T) { testNotifications(t, newStore(t)) })
	t.Run("jobs by status span owners oldest first and follow updates", func(t *testing.T) { testJobsByStatus(t, newStore(t)) })
}

func testEvents(t *testing.T, s FullStore) {
	ctx := context.Background()
	for i := 0; i < 7; i++ {
		e := &pipeline.Event{ID: fmt.Sprintf("ev-%d", i), Owner: "alice", JobID: "job_1", Type: "progress", Time: base.Add(time.Duration(i) * time.Second)}
		created, err := s.AppendEvent(ctx, e)
		must(t, err)
		if !created {
			t.Fatalf("AppendEvent(%s) = not created, want created", e.ID)
		}
	}
	dup := &pipeline.Event{ID: "ev-3", Owner: "alice", JobID: "job_1", Type: "changed", Time: base}
	created, err := s.AppendEvent(ctx, dup)
	must(t, err)
	if created {
		t.Error("AppendEvent of a repeated id = created, want a no-op")
	}
	_, err = s.AppendEvent(ctx, &pipeline.Event{ID: "ev-0", Owner: "alice", JobID: "job_2", Type: "other"})
	must(t, err)
	var got []string
	cursor := ""
	for {
		page, next, err := s.ListEvents(ctx, "alice", "job_1", pipeline.Page{Cursor: cursor, Limit: 3})
		must(t, err)
		for _, e := range page {
			got = append(got, e.ID+":"+e.Type)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	want := "[ev-0:progress ev-1:progress ev-2:progress ev-3:progress ev-4:progress ev-5:progress ev-6:progress]"
	if fmt.Sprint(got) != want {
		t.Errorf("events = %v, want %s", got, want)
	}
	other, _, err := s.ListEvents(ctx, "bob", "job_1", pipeline.Page{})
	must(t, err)
	if len(other) != 0 {
		t.Errorf("bob reads %d of alice's events, want 0", len(other))
	}
}

func testMetrics(t *testing.T, s FullStore) {
	ctx := context.Background()
	must(t, s.PutMetrics(ctx, "alice", "job_1", []pipeline.MetricPoint{{Attempt: 1, Step: 20, Loss: 1.5}, {Attempt: 1, Step: 10, Loss: 2}}))
	must(t, s.PutMetrics(ctx, "alice", "job_1", []pipeline.MetricPoint{{Attempt: 2, Step: 5, Loss: 2.1}, {Attempt: 1, Step: 10, Loss: 1.9}, {Attempt: 1, Step: 300, Loss: 0.5}}))
	pts, next, err := s.ListMetrics(ctx, "alice", "job_1", pipeline.Page{Limit: 100})
	must(t, err)
	var got []string
	for _, p := range pts {
		got = append(got, fmt.Sprintf("%d/%d=%g", p.Attempt, p.Step, p.Loss))
	}
	if fmt.Sprint(got) != "[1/10=1.9 1/20=1.5 1/300=0.5 2/5=2.1]" || next != "" {
		t.Errorf("metrics = %v (next %q), want [1/10=1.9 1/20=1.5 1/300=0.5 2/5=2.1]", got, next)
	}
	first, next, err := s.ListMetrics(ctx, "alice", "job_1", pipeline.Page{Limit: 2})
	must(t, err)
	rest, _, err := s.ListMetrics(ctx, "alice", "job_1", pipeline.Page{Cursor: next, Limit: 10})
	must(t, err)
	if len(first) != 2 || len(rest) != 2 || rest[0].Step != 300 {
		t.Errorf("metrics pages = %v then %v, want 2 and 2 starting at step 300", first, rest)
	}
}

func testNotifications(t *testing.T, s FullStore) {
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		must(t, s.CreateNotification(ctx, &pipeline.Notification{ID: fmt.Sprintf("n%d", i), Owner: "alice", Type: "job_completed",
			Message: "done", CreatedAt: base.Add(time.Duration(i) * time.Minute)}))
	}
	must(t, s.CreateNotification(ctx, &pipeline.Notification{ID: "nb", Owner: "bob", Type: "job_failed", CreatedAt: base}))
	list, _, err := s.ListNotifications(ctx, "alice", pipeline.Page{})
	must(t, err)
	var got []string
	for _, n := range list {
		got = append(got, n.ID)
	}
	if fmt.Sprint(got) != "[n2 n1 n0]" {
		t.Errorf("alice's notifications = %v, want [n2 n1 n0]", got)
	}
}

func testJobsByStatus(t *testing.T, s FullStore) {
	ctx := context.Background()
	must(t, s.CreateJob(ctx, job("bob", 3, pipeline.JobRunning)))
	must(t, s.CreateJob(ctx, job("alice", 1, pipeline.JobRunning)))
	must(t, s.CreateJob(ctx, job("carol", 2, pipeline.JobQueued)))
	list, _, err := s.ListJobsByStatus(ctx, pipeline.JobRunning, pipeline.Page{})
	must(t, err)
	if got := jobIDs(list); fmt.Sprint(got) != "[job_0001 job_0003]" {
		t.Errorf("running jobs = %v, want [job_0001 job_0003] (oldest first, every owner)", got)
	}
	j, err := s.GetJob(ctx, "carol", "job_0002")
	must(t, err)
	j.Status = pipeline.JobRunning
	must(t, s.UpdateJob(ctx, j))
	list, next, err := s.ListJobsByStatus(ctx, pipeline.JobRunning, pipeline.Page{Limit: 2})
	must(t, err)
	rest, _, err := s.ListJobsByStatus(ctx, pipeline.JobRunning, pipeline.Page{Cursor: next})
	must(t, err)
	if got := jobIDs(append(list, rest...)); fmt.Sprint(got) != "[job_0001 job_0002 job_0003]" {
		t.Errorf("running jobs after an update = %v, want [job_0001 job_0002 job_0003]", got)
	}
	queued, _, err := s.ListJobsByStatus(ctx, pipeline.JobQueued, pipeline.Page{})
	must(t, err)
	if len(queued) != 0 {
		t.Errorf("queued jobs = %v, want none after the update", jobIDs(queued))
	}
}
