package dynamo_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/brightrun/brightrun/shared/awstest"
	"github.com/brightrun/brightrun/shared/dynamo"
	"github.com/brightrun/brightrun/shared/pipeline"
)

func TestLargeEvents(t *testing.T) {
	t.Parallel()
	s := MustNewStore(t)
	ctx := context.Background()
	event := func(id string, dataBytes int) *pipeline.Event {
		data, err := json.Marshal(map[string]string{"log": randomText(dataBytes)})
		must(t, err)
		return &pipeline.Event{ID: id, Owner: "alice", JobID: "job_1", Type: "log", Data: data, Time: base}
	}
	t.Run("an event with 256 KiB of incompressible data is stored and reads back whole", func(t *testing.T) {
		e := event("ev-big", 256<<10)
		created, err := s.AppendEvent(ctx, e)
		must(t, err)
		if !created {
			t.Fatal("AppendEvent(256 KiB) = not created, want created")
		}
		list, _, err := s.ListEvents(ctx, "alice", "job_1", pipeline.Page{})
		must(t, err)
		if len(list) != 1 || string(list[0].Data) != string(e.Data) {
			t.Errorf("read back %d events, want the one with its %d bytes of data", len(list), len(e.Data))
		}
	})
	t.Run("an event over 400 KB even compressed is refused as too large and its id stays free", func(t *testing.T) {
		_, err := s.AppendEvent(ctx, event("ev-huge", 700<<10))
		wantCode(t, "AppendEvent(700 KB)", err, pipeline.ETooLarge)
		created, err := s.AppendEvent(ctx, event("ev-huge", 10))
		must(t, err)
		if !created {
			t.Error("AppendEvent after a refused one with the same id = not created, want created")
		}
		list, _, err := s.ListEvents(ctx, "alice", "job_1", pipeline.Page{})
		must(t, err)
		if len(list) != 2 {
			t.Errorf("events = %d, want 2", len(list))
		}
	})
}

func TestMetricsAreWrittenInBatches(t *testing.T) {
	t.Parallel()
	s := MustNewStore(t)
	ctx := context.Background()
	var pts []pipeline.MetricPoint
	for step := 70; step > 0; step-- { // 70 points, three batches, out of order
		pts = append(pts, pipeline.MetricPoint{Attempt: 1, Step: step, Loss: float64(step)})
	}
	pts = append(pts, pipeline.MetricPoint{Attempt: 1, Step: 7, Loss: 0.7}) // the later of two wins
	must(t, s.PutMetrics(ctx, "alice", "job_1", pts))
	var got []pipeline.MetricPoint
	cursor := ""
	for {
		page, next, err := s.ListMetrics(ctx, "alice", "job_1", pipeline.Page{Limit: 30, Cursor: cursor})
		must(t, err)
		got = append(got, page...)
		if cursor = next; cursor == "" {
			break
		}
	}
	if len(got) != 70 {
		t.Fatalf("points = %d, want 70", len(got))
	}
	for i, p := range got {
		want := float64(i + 1)
		if i+1 == 7 {
			want = 0.7
		}
		if p.Step != i+1 || p.Loss != want {
			t.Errorf("point %d = step %d loss %g, want step %d loss %g", i, p.Step, p.Loss, i+1, want)
		}
	}
	wantCode(t, "PutMetrics(negative step)", s.PutMetrics(ctx, "alice", "job_1", []pipeline.MetricPoint{{Attempt: 1, Step: -1}}), pipeline.EInvalid)
	must(t, s.PutMetrics(ctx, "alice", "job_1", nil))
}

func TestJobLogListsStayWithTheirOwnerAndJob(t *testing.T) {
	t.Parallel()
	s := MustNewStore(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		for _, job := range []string{"job_1", "job_2"} {
			_, err := s.AppendEvent(ctx, &pipeline.Event{ID: fmt.Sprintf("ev-%d", i), Owner: "alice", JobID: job, Type: "t", Time: base})
			must(t, err)
		}
		must(t, s.PutMetrics(ctx, "alice", "job_1", []pipeline.MetricPoint{{Attempt: 1, Step: i}}))
		must(t, s.CreateNotification(ctx, &pipeline.Notification{ID: fmt.Sprintf("n%d", i), Owner: "alice", Type: "t",
			CreatedAt: base.Add(time.Duration(i) * time.Minute)}))
		must(t, s.CreateJob(ctx, newJob("alice", i, pipeline.JobRunning)))
	}
	_, evCur, err := s.ListEvents(ctx, "alice", "job_1", pipeline.Page{Limit: 1})
	must(t, err)
	_, ntCur, err := s.ListNotifications(ctx, "alice", pipeline.Page{Limit: 1})
	must(t, err)
	_, jobCur, err := s.ListJobsByStatus(ctx, pipeline.JobRunning, pipeline.Page{Limit: 1})
	must(t, err)
	if evCur == "" || ntCur == "" || jobCur == "" {
		t.Fatal("no cursor after a first page of 1 out of 3")
	}
	tests := []struct {
		name string
		err  error
		code string
	}{
		{"alice's event cursor used by bob", listErr(s.ListEvents(ctx, "bob", "job_1", pipeline.Page{Cursor: evCur})), pipeline.EInvalid},
		{"an event cursor of one job used for another", listErr(s.ListEvents(ctx, "alice", "job_2", pipeline.Page{Cursor: evCur})), pipeline.EInvalid},
		{"an event cursor used for metrics", listErr(s.ListMetrics(ctx, "alice", "job_1", pipeline.Page{Cursor: evCur})), pipeline.EInvalid},
		{"alice's notification cursor used by bob", listErr(s.ListNotifications(ctx, "bob", pipeline.Page{Cursor: ntCur})), pipeline.EInvalid},
		{"a running-jobs cursor used for queued jobs", listErr(s.ListJobsByStatus(ctx, pipeline.JobQueued, pipeline.Page{Cursor: jobCur})), pipeline.EInvalid},
		{"a status cursor used for an owner's jobs", listErr(s.ListJobs(ctx, "alice", pipeline.JobFilter{}, pipeline.Page{Cursor: jobCur})), pipeline.EInvalid},
		{"a terminal status", listErr(s.ListJobsByStatus(ctx, pipeline.JobCompleted, pipeline.Page{})), pipeline.EInvalid},
		{"a job id that could name another owner's log", listErr(s.ListEvents(ctx, "alice", "x#job_1", pipeline.Page{})), pipeline.EInvalid},
		{"an event without an owner", func() error { _, err := s.AppendEvent(ctx, &pipeline.Event{ID: "e", JobID: "job_1"}); return err }(), pipeline.EInvalid},
		{"a notification created twice", s.CreateNotification(ctx, &pipeline.Notification{ID: "n0", Owner: "alice", Type: "t", CreatedAt: base}), pipeline.EConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantCode(t, tt.name, tt.err, tt.code) })
	}
	rest, _, err := s.ListEvents(ctx, "alice", "job_1", pipeline.Page{Cursor: evCur})
	must(t, err)
	if len(rest) != 2 {
		t.Errorf("events after the genuine cursor = %d, want 2", len(rest))
	}
}

func listErr[T any](_ T, _ string, err error) error { return err }

func TestLogRetentionSetsExpiry(t *testing.T) {
	t.Parallel()
	_, client := mustNewStoreClient(t)
	table := awstest.UniqueName("brightrun")
	ctx := context.Background()
	must(t, dynamo.CreateTable(ctx, client, table))
	s, err := dynamo.New(client, dynamo.Options{Table: table, CursorKey: cursorKey, LogRetention: 24 * time.Hour})
	must(t, err)
	_, err = s.AppendEvent(ctx, &pipeline.Event{ID: "ev", Owner: "alice", JobID: "job_1", Type: "t"})
	must(t, err)
	must(t, s.PutMetrics(ctx, "alice", "job_1", []pipeline.MetricPoint{{Attempt: 1, Step: 1}}))
	must(t, s.CreateNotification(ctx, &pipeline.Notification{ID: "n", Owner: "alice", Type: "t", CreatedAt: base}))
	out, err := client.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(table)})
	must(t, err)
	if len(out.Items) != 4 {
		t.Fatalf("items = %d, want 4 (event, its guard, a point, a notification)", len(out.Items))
	}
	lo, hi := time.Now().Add(23*time.Hour).Unix(), time.Now().Add(25*time.Hour).Unix()
	for _, item := range out.Items {
		sk := item["sk"].(*types.AttributeValueMemberS).Value
		n, ok := item[dynamo.AttrExpiresAt].(*types.AttributeValueMemberN)
		if !ok {
			t.Errorf("%s has no %s", sk, dynamo.AttrExpiresAt)
			continue
		}
		if exp, _ := strconv.ParseInt(n.Value, 10, 64); exp < lo || exp > hi {
			t.Errorf("%s expires at %d, want about a day from now", sk, exp)
		}
	}
}
