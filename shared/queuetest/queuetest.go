// Package queuetest is the conformance suite every pipeline.Queue adapter
// must pass. It runs in real time (visibility timeouts of about a second),
// because the AWS adapters run it against an emulator's clock.
package queuetest

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// Run runs the suite. newQueue returns an empty queue whose dead-letter
// queue receives a message after maxReceives deliveries; it is called once
// per subtest.
func Run(t *testing.T, maxReceives int, newQueue func(t *testing.T) pipeline.Queue) {
	t.Run("a sent message is received with its body and attributes", func(t *testing.T) { testRoundTrip(t, newQueue(t)) })
	t.Run("a received message is hidden until its visibility timeout", func(t *testing.T) { testVisibility(t, newQueue(t)) })
	t.Run("a message not deleted comes back after the visibility timeout", func(t *testing.T) { testRedelivery(t, newQueue(t)) })
	t.Run("a deleted message never comes back", func(t *testing.T) { testDelete(t, newQueue(t)) })
	t.Run("changing visibility to zero releases a message at once", func(t *testing.T) { testRelease(t, newQueue(t)) })
	t.Run("every message of a batch is delivered exactly once before any redelivery", func(t *testing.T) { testBatch(t, newQueue(t)) })
	t.Run("a message received too often moves to the dead-letter queue", func(t *testing.T) { testDeadLetter(t, maxReceives, newQueue(t)) })
	t.Run("a long poll returns as soon as a message arrives", func(t *testing.T) { testLongPoll(t, newQueue(t)) })
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func receive(t *testing.T, q pipeline.Queue, max int, vis, wait time.Duration) []pipeline.Delivery {
	t.Helper()
	got, err := q.Receive(context.Background(), max, vis, wait)
	must(t, err)
	return got
}

func testRoundTrip(t *testing.T, q pipeline.Queue) {
	ctx := context.Background()
	id, err := q.Send(ctx, pipeline.Message{Body: []byte(`{"job_id":"job_1"}`), Attributes: map[string]string{"owner": "alice"}})
	must(t, err)
	got := receive(t, q, 10, 30*time.Second, 2*time.Second)
	if len(got) != 1 {
		t.Fatalf("Receive = %d messages, want 1", len(got))
	}
	d := got[0]
	if string(d.Body) != `{"job_id":"job_1"}` || d.Attributes["owner"] != "alice" || d.ID != id || d.ReceiveCount != 1 || d.Receipt == "" {
		t.Errorf("Receive = %+v, want body, attribute owner=alice, id %s, receive count 1 and a receipt", d, id)
	}
	must(t, q.Delete(ctx, d.Receipt))
}

func testVisibility(t *testing.T, q pipeline.Queue) {
	ctx := context.Background()
	_, err := q.Send(ctx, pipeline.Message{Body: []byte("a")})
	must(t, err)
	if got := receive(t, q, 1, 30*time.Second, 2*time.Second); len(got) != 1 {
		t.Fatalf("first Receive = %d messages, want 1", len(got))
	}
	if got := receive(t, q, 1, 30*time.Second, 0); len(got) != 0 {
		t.Errorf("Receive while in flight = %d messages, want 0", len(got))
	}
}

func testRedelivery(t *testing.T, q pipeline.Queue) {
	ctx := context.Background()
	_, err := q.Send(ctx, pipeline.Message{Body: []byte("again")})
	must(t, err)
	first := receive(t, q, 1, time.Second, 2*time.Second)
	if len(first) != 1 {
		t.Fatalf("first Receive = %d messages, want 1", len(first))
	}
	second := receive(t, q, 1, 30*time.Second, 5*time.Second)
	if len(second) != 1 {
		t.Fatalf("Receive after the visibility timeout = %d messages, want the message again", len(second))
	}
	if string(second[0].Body) != "again" || second[0].ReceiveCount != 2 || second[0].Receipt == first[0].Receipt {
		t.Errorf("redelivery = %+v, want body again, receive count 2, a new receipt", second[0])
	}
	must(t, q.Delete(ctx, second[0].Receipt))
}

func testDelete(t *testing.T, q pipeline.Queue) {
	ctx := context.Background()
	_, err := q.Send(ctx, pipeline.Message{Body: []byte("once")})
	must(t, err)
	got := receive(t, q, 1, time.Second, 2*time.Second)
	if len(got) != 1 {
		t.Fatalf("Receive = %d messages, want 1", len(got))
	}
	must(t, q.Delete(ctx, got[0].Receipt))
	if again := receive(t, q, 1, time.Second, 2500*time.Millisecond); len(again) != 0 {
		t.Errorf("a deleted message came back: %+v", again[0])
	}
}

func testRelease(t *testing.T, q pipeline.Queue) {
	ctx := context.Background()
	_, err := q.Send(ctx, pipeline.Message{Body: []byte("retry-now")})
	must(t, err)
	got := receive(t, q, 1, time.Hour, 2*time.Second)
	if len(got) != 1 {
		t.Fatalf("Receive = %d messages, want 1", len(got))
	}
	must(t, q.ChangeVisibility(ctx, got[0].Receipt, 0))
	again := receive(t, q, 1, time.Hour, 2*time.Second)
	if len(again) != 1 || again[0].ReceiveCount != 2 {
		t.Fatalf("Receive after release = %+v, want the message with receive count 2", again)
	}
}

func testBatch(t *testing.T, q pipeline.Queue) {
	ctx := context.Background()
	const n = 25
	for i := 0; i < n; i++ {
		_, err := q.Send(ctx, pipeline.Message{Body: []byte(fmt.Sprintf("m%02d", i))})
		must(t, err)
	}
	seen := map[string]int{}
	for tries := 0; len(seen) < n && tries < 50; tries++ {
		for _, d := range receive(t, q, 10, time.Minute, time.Second) {
			seen[string(d.Body)]++
		}
	}
	var dup []string
	for b, c := range seen {
		if c > 1 {
			dup = append(dup, b)
		}
	}
	sort.Strings(dup)
	if len(seen) != n || len(dup) > 0 {
		t.Errorf("received %d distinct of %d messages, duplicates %v; want all once", len(seen), n, dup)
	}
}

func testDeadLetter(t *testing.T, maxReceives int, q pipeline.Queue) {
	ctx := context.Background()
	_, err := q.Send(ctx, pipeline.Message{Body: []byte("poison"), Attributes: map[string]string{"job_id": "job_9"}})
	must(t, err)
	for i := 1; i <= maxReceives; i++ {
		got := receive(t, q, 1, time.Second, 5*time.Second)
		if len(got) != 1 || got[0].ReceiveCount != i {
			t.Fatalf("delivery %d = %+v, want the message with receive count %d", i, got, i)
		}
	}
	// The next receive finds the message over its limit and moves it.
	if got := receive(t, q, 1, time.Second, 3*time.Second); len(got) != 0 {
		t.Fatalf("delivery %d happened (receive count %d), want the message moved to the dead-letter queue", maxReceives+1, got[0].ReceiveCount)
	}
	var dead []pipeline.Delivery
	for tries := 0; tries < 20 && len(dead) == 0; tries++ {
		dead, err = q.DeadLetters(ctx, 10)
		must(t, err)
		if len(dead) == 0 {
			time.Sleep(250 * time.Millisecond)
		}
	}
	if len(dead) != 1 || string(dead[0].Body) != "poison" || dead[0].Attributes["job_id"] != "job_9" {
		t.Errorf("DeadLetters = %+v, want the poison message with its attributes", dead)
	}
}

func testLongPoll(t *testing.T, q pipeline.Queue) {
	ctx := context.Background()
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = q.Send(ctx, pipeline.Message{Body: []byte("late")})
	}()
	start := time.Now()
	got := receive(t, q, 1, time.Minute, 10*time.Second)
	if len(got) != 1 {
		t.Fatalf("long poll = %d messages, want 1", len(got))
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("long poll returned after %s, want soon after the send", waited)
	}
}
