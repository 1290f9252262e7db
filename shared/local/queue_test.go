package local_test

import (
	"context"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/local"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/queuetest"
)

func TestQueueConformance(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, 3, func(t *testing.T) pipeline.Queue {
		q, err := local.NewQueue(MustOpenDB(t), "jobs", local.QueueOptions{MaxReceives: 3})
		if err != nil {
			t.Fatal(err)
		}
		return q
	})
}

func TestQueueSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	db, err := local.OpenDB(dir)
	if err != nil {
		t.Fatal(err)
	}
	q, _ := local.NewQueue(db, "jobs", local.QueueOptions{})
	if _, err := q.Send(ctx, pipeline.Message{Body: []byte("kept")}); err != nil {
		t.Fatal(err)
	}
	if got, _ := q.Receive(ctx, 1, time.Second, 0); len(got) != 1 {
		t.Fatalf("Receive = %d, want 1", len(got))
	}
	db.Close()

	db, err = local.OpenDB(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q, _ = local.NewQueue(db, "jobs", local.QueueOptions{})
	got, err := q.Receive(ctx, 1, time.Minute, 3*time.Second)
	if err != nil || len(got) != 1 || string(got[0].Body) != "kept" || got[0].ReceiveCount != 2 {
		t.Fatalf("after a restart Receive = %+v, %v; want the in-flight message back with receive count 2", got, err)
	}
}
