package storetest

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// FullStore is a store that also keeps job logs and scans jobs by status.
type FullStore interface {
	pipeline.Store
	pipeline.JobLog
	pipeline.JobScanner
	pipeline.LiveRecorder
	pipeline.JobKeyScanner
}

// RunJobLog runs the suite of pipeline.JobLog and pipeline.JobScanner.
func RunJobLog(t *testing.T, newStore func(t *testing.T) FullStore) {
	t.Run("events are kept in order and a repeated id is stored once", func(t *testing.T) { testEvents(t, newStore(t)) })
	t.Run("metric points order by attempt and step and a repeat replaces", func(t *testing.T) { testMetrics(t, newStore(t)) })
	t.Run("notifications are per owner and newest first", func(t *testing.T) { testNotifications(t, newStore(t)) })
	t.Run("jobs by status span owners, each once, and follow updates", func(t *testing.T) { testJobsByStatus(t, newStore(t)) })
	t.Run("live state is merged into the job, never goes back, and leaves the version alone", func(t *testing.T) { testLive(t, newStore(t)) })
	t.Run("measurements are per model and GPU, span owners, newest job first, and a repeat replaces", func(t *testing.T) {
		testMeasurements(t, newStore(t))
	})
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
	eval := 1.75
	must(t, s.PutMetrics(ctx, "alice", "job_2", []pipeline.MetricPoint{{Attempt: 1, Step: 7, Loss: 1.5, EvalLoss: &eval}}))
	if pts, _, err := s.ListMetrics(ctx, "alice", "job_2", pipeline.Page{}); err != nil || len(pts) != 1 || pts[0].EvalLoss == nil || *pts[0].EvalLoss != eval {
		t.Errorf("a point with an eval loss reads back as %+v (%v), want eval_loss %g", pts, err, eval)
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
	if got := sortedIDs(list); fmt.Sprint(got) != "[job_0001 job_0003]" {
		t.Errorf("running jobs = %v, want [job_0001 job_0003] (every owner)", got)
	}
	j, err := s.GetJob(ctx, "carol", "job_0002")
	must(t, err)
	j.Status = pipeline.JobRunning
	must(t, s.UpdateJob(ctx, j))
	list, next, err := s.ListJobsByStatus(ctx, pipeline.JobRunning, pipeline.Page{Limit: 2})
	must(t, err)
	rest, _, err := s.ListJobsByStatus(ctx, pipeline.JobRunning, pipeline.Page{Cursor: next})
	must(t, err)
	if got := sortedIDs(append(list, rest...)); fmt.Sprint(got) != "[job_0001 job_0002 job_0003]" {
		t.Errorf("running jobs after an update = %v, want [job_0001 job_0002 job_0003]", got)
	}
	queued, _, err := s.ListJobsByStatus(ctx, pipeline.JobQueued, pipeline.Page{})
	must(t, err)
	if len(queued) != 0 {
		t.Errorf("queued jobs = %v, want none after the update", jobIDs(queued))
	}
	// By key: the same jobs, with what fair dispatch plans with.
	served := base.Add(time.Hour)
	j.ServedAt = &served
	must(t, s.UpdateJob(ctx, j))
	var keys []string
	cursor := ""
	for pages := 0; pages < 10; pages++ {
		page, next, err := s.ListJobKeys(ctx, pipeline.JobRunning, pipeline.Page{Limit: 1, Cursor: cursor})
		must(t, err)
		for _, k := range page {
			want, err := s.GetJob(ctx, k.Owner, k.ID)
			must(t, err)
			if k.Status != pipeline.JobRunning || !k.CreatedAt.Equal(want.CreatedAt) || (k.ServedAt == nil) != (want.ServedAt == nil) ||
				k.ServedAt != nil && !k.ServedAt.Equal(*want.ServedAt) {
				t.Errorf("ListJobKeys: %+v, want the key of %s/%s (created %v, served %v)", k, want.Owner, want.ID, want.CreatedAt, want.ServedAt)
			}
			keys = append(keys, k.ID)
		}
		if cursor = next; cursor == "" {
			break
		}
	}
	sort.Strings(keys)
	if fmt.Sprint(keys) != "[job_0001 job_0002 job_0003]" {
		t.Errorf("ListJobKeys(running) = %v, want [job_0001 job_0002 job_0003]", keys)
	}
	if _, _, err := s.ListJobKeys(ctx, pipeline.JobCompleted, pipeline.Page{}); pipeline.ErrorCode(err) != pipeline.EInvalid {
		t.Errorf("ListJobKeys(completed) = %v, want EInvalid", err)
	}
}

func sortedIDs(jobs []*pipeline.Job) []string {
	ids := jobIDs(jobs)
	sort.Strings(ids)
	return ids
}

func testLive(t *testing.T, s FullStore) {
	ctx := context.Background()
	j := job("alice", 1, pipeline.JobRunning)
	j.Attempt = 1
	must(t, s.CreateJob(ctx, j))
	point := func(attempt, step int, sec int) pipeline.Live {
		at := base.Add(time.Duration(sec) * time.Second)
		return pipeline.Live{Attempt: attempt, Progress: pipeline.MetricPoint{Attempt: attempt, Step: step, Loss: float64(step), Time: at}, HeardAt: at}
	}
	progress := func(what string) (step int, heard time.Time) {
		t.Helper()
		got, err := s.GetJob(ctx, "alice", j.ID)
		must(t, err)
		if got.Version != 1 {
			t.Errorf("%s: version = %d, want 1 (live state is not a record update)", what, got.Version)
		}
		if got.Progress == nil || got.HeartbeatAt == nil {
			t.Fatalf("%s: progress %v, heartbeat %v, want both", what, got.Progress, got.HeartbeatAt)
		}
		list, _, err := s.ListJobs(ctx, "alice", pipeline.JobFilter{}, pipeline.Page{})
		must(t, err)
		if len(list) != 1 || list[0].Progress == nil || list[0].Progress.Step != got.Progress.Step {
			t.Errorf("%s: the owner's list shows another point than GetJob", what)
		}
		scan, _, err := s.ListJobsByStatus(ctx, pipeline.JobRunning, pipeline.Page{})
		must(t, err)
		if len(scan) != 1 || scan[0].HeartbeatAt == nil || !scan[0].HeartbeatAt.Equal(*got.HeartbeatAt) {
			t.Errorf("%s: the scan by status shows another heartbeat than GetJob", what)
		}
		return got.Progress.Step, *got.HeartbeatAt
	}
	must(t, s.RecordLive(ctx, "alice", j.ID, point(1, 10, 10)))
	if step, heard := progress("first point"); step != 10 || !heard.Equal(base.Add(10*time.Second)) {
		t.Errorf("after step 10: step %d heard %v, want 10 at +10s", step, heard)
	}
	must(t, s.RecordLive(ctx, "alice", j.ID, point(1, 30, 30)))
	must(t, s.RecordLive(ctx, "alice", j.ID, point(1, 20, 40))) // late: an older step
	if step, heard := progress("a late older step"); step != 30 || !heard.Equal(base.Add(30*time.Second)) {
		t.Errorf("after steps 30 then 20: step %d heard %v, want 30 at +30s", step, heard)
	}
	// A transition written from the job as read keeps the newer point.
	cur, err := s.GetJob(ctx, "alice", j.ID)
	must(t, err)
	must(t, s.RecordLive(ctx, "alice", j.ID, point(1, 40, 50)))
	cur.Status = pipeline.JobUploading
	must(t, s.UpdateJob(ctx, cur))
	got, err := s.GetJob(ctx, "alice", j.ID)
	must(t, err)
	if got.Progress == nil || got.Progress.Step != 40 {
		t.Errorf("after an update from an older read: progress %v, want step 40", got.Progress)
	}
	// A live state of an earlier attempt shows nothing on the next one.
	got.Attempt, got.Progress = 2, nil
	must(t, s.UpdateJob(ctx, got))
	must(t, s.RecordLive(ctx, "alice", j.ID, point(1, 50, 60)))
	again, err := s.GetJob(ctx, "alice", j.ID)
	must(t, err)
	if again.Progress != nil {
		t.Errorf("attempt 2 shows attempt 1's point %+v", again.Progress)
	}
	must(t, s.RecordLive(ctx, "alice", j.ID, point(2, 1, 70)))
	again, err = s.GetJob(ctx, "alice", j.ID)
	must(t, err)
	if again.Progress == nil || again.Progress.Attempt != 2 || again.Progress.Step != 1 {
		t.Errorf("attempt 2's first point: progress %+v, want attempt 2 step 1", again.Progress)
	}
	// RunPod re-runs the attempt after a crash: the new run's points
	// replace the old run's, though its steps start again.
	again.RunKey, again.Progress = "rerun", nil
	must(t, s.UpdateJob(ctx, again))
	rerun := point(2, 1, 65)
	rerun.Run = "rerun"
	must(t, s.RecordLive(ctx, "alice", j.ID, rerun))
	again, err = s.GetJob(ctx, "alice", j.ID)
	must(t, err)
	if again.Progress == nil || again.Progress.Step != 1 || !again.Progress.Time.Equal(base.Add(65*time.Second)) {
		t.Errorf("the re-run's first point: progress %+v, want step 1 sent at +65s", again.Progress)
	}
	// Another owner sees none of it; the log's deletion takes it.
	if _, err := s.GetJob(ctx, "bob", j.ID); pipeline.ErrorCode(err) != pipeline.ENotFound {
		t.Errorf("GetJob(bob) = %v, want ENotFound", err)
	}
	if e, ok := s.(pipeline.JobEraser); ok {
		must(t, e.DeleteJobLog(ctx, "alice", j.ID))
		gone, err := s.GetJob(ctx, "alice", j.ID)
		must(t, err)
		if gone.Progress != nil && gone.Progress.Attempt == 2 {
			t.Errorf("after DeleteJobLog the live point %+v is still merged", gone.Progress)
		}
	}
}

func testMeasurements(t *testing.T, s FullStore) {
	ctx := context.Background()
	const next, dense = "Qwen/Qwen3-Next-80B-A3B-Instruct", "Qwen/Qwen3-8B"
	put := func(owner, job string, minute int, model, gpu string, secs float64) {
		t.Helper()
		must(t, s.PutMeasurement(ctx, &pipeline.Measurement{JobID: job, Owner: owner, Model: model, GPU: gpu, Quantization: "nf4",
			JobCreatedAt: base.Add(time.Duration(minute) * time.Minute), MicroBatches: 10, PaddedTokens: 80_000,
			TrainSeconds: secs, SecondsPerMicroBatch: secs / 10, LoadSeconds: 150, RecordedAt: base.Add(time.Hour)}))
	}
	put("alice", "job_a", 1, next, "h100-80gb", 10)
	put("bob", "job_b", 3, next, "h100-80gb", 12)
	put("alice", "job_c", 2, next, "h100-80gb", 11)
	put("alice", "job_d", 4, next, "a100-80gb", 20)
	put("alice", "job_e", 5, dense, "h100-80gb", 5)
	put("bob", "job_b", 3, next, "h100-80gb", 13) // the same job again: replaces

	list, err := s.ListMeasurements(ctx, next, "h100-80gb", 10)
	must(t, err)
	var got []string
	for _, m := range list {
		got = append(got, fmt.Sprintf("%s/%s=%g", m.Owner, m.JobID, m.TrainSeconds))
	}
	if want := "[bob/job_b=13 alice/job_c=11 alice/job_a=10]"; fmt.Sprint(got) != want {
		t.Errorf("ListMeasurements(next, h100) = %v, want %s (every owner, newest job first, the repeat replacing)", got, want)
	}
	if len(list) > 0 {
		m := list[0]
		if m.Model != next || m.GPU != "h100-80gb" || m.Quantization != "nf4" || m.MicroBatches != 10 || m.PaddedTokens != 80_000 ||
			m.LoadSeconds != 150 || !m.JobCreatedAt.Equal(base.Add(3*time.Minute)) {
			t.Errorf("ListMeasurements()[0] = %+v, want the stored figures back", *m)
		}
	}

	two, err := s.ListMeasurements(ctx, next, "h100-80gb", 2)
	must(t, err)
	if len(two) != 2 || two[0].JobID != "job_b" || two[1].JobID != "job_c" {
		t.Errorf("ListMeasurements(limit 2) = %d measurements, want the newest two, job_b and job_c", len(two))
	}
	for _, tt := range []struct{ model, gpu, want string }{
		{next, "a100-80gb", "job_d"},
		{dense, "h100-80gb", "job_e"},
	} {
		l, err := s.ListMeasurements(ctx, tt.model, tt.gpu, 10)
		must(t, err)
		if len(l) != 1 || l[0].JobID != tt.want {
			t.Errorf("ListMeasurements(%s, %s) = %d measurements, want only %s", tt.model, tt.gpu, len(l), tt.want)
		}
	}
	none, err := s.ListMeasurements(ctx, next, "h200-141gb", 10)
	must(t, err)
	if len(none) != 0 {
		t.Errorf("ListMeasurements(next, h200) = %d measurements, want none", len(none))
	}
	if err := s.PutMeasurement(ctx, &pipeline.Measurement{Model: next, GPU: "h100-80gb"}); pipeline.ErrorCode(err) != pipeline.EInvalid {
		t.Errorf("PutMeasurement(no job id) = %v, want %s", err, pipeline.EInvalid)
	}
}
