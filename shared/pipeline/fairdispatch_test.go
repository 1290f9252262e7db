package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/local"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// sentQueue records the messages sent; receiving is not its job.
type sentQueue struct {
	mu   sync.Mutex
	sent []pipeline.JobMessage
}

func (q *sentQueue) Send(_ context.Context, m pipeline.Message) (string, error) {
	var msg pipeline.JobMessage
	if err := json.Unmarshal(m.Body, &msg); err != nil {
		return "", err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.sent = append(q.sent, msg)
	return fmt.Sprint(len(q.sent)), nil
}
func (q *sentQueue) Receive(context.Context, int, time.Duration, time.Duration) ([]pipeline.Delivery, error) {
	return nil, nil
}
func (q *sentQueue) Delete(context.Context, string) error                          { return nil }
func (q *sentQueue) ChangeVisibility(context.Context, string, time.Duration) error { return nil }
func (q *sentQueue) DeadLetters(context.Context, int) ([]pipeline.Delivery, error) {
	return nil, nil
}

func newFairEnv(t *testing.T, f pipeline.Fairness) (*pipeline.FairDispatch, *local.Store, *sentQueue) {
	t.Helper()
	store := newStore(t)
	q := &sentQueue{}
	jobs := &pipeline.Lifecycle{Store: store, JobLog: store, Queue: q, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return &pipeline.FairDispatch{Jobs: jobs, Scanner: store, Fairness: f}, store, q
}

// Many deliveries admitted at once, as concurrent dispatchers in one
// process would: no owner passes its limit, the slots are never passed,
// the rest are held with their place and reason; when a job ends, Release
// sends the next job in turn, and only it.
func TestConcurrentAdmissionsKeepTheLimits(t *testing.T) {
	ctx := context.Background()
	fair, store, q := newFairEnv(t, pipeline.Fairness{OwnerLimit: 2, MaxInFlight: 5, OwnerLimits: map[string]int{"cy": 1}})
	owners := []string{"ann", "bo", "cy"}
	base := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	var all []*pipeline.Job
	for i := 0; i < 5; i++ {
		for k, o := range owners {
			at := base.Add(time.Duration(i*len(owners)+k) * time.Second)
			j := &pipeline.Job{ID: fmt.Sprintf("job_%s_%d", o, i), Owner: o, Status: pipeline.JobQueued, CreatedAt: at, UpdatedAt: at}
			if err := store.CreateJob(ctx, j); err != nil {
				t.Fatal(err)
			}
			all = append(all, j)
		}
	}
	var wg sync.WaitGroup
	for _, j := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := fair.Admit(ctx, j.Owner, j.ID, func() error {
				_, err := fair.Jobs.Claim(ctx, j.Owner, j.ID, time.Minute)
				return err
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()

	count := func() (map[string]int, int, int) {
		per, total, held := map[string]int{}, 0, 0
		for _, j := range all {
			got, err := store.GetJob(ctx, j.Owner, j.ID)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case got.Status == pipeline.JobDispatching:
				per[got.Owner]++
				total++
			case got.Status == pipeline.JobQueued && got.Wait != nil:
				held++
				if got.Wait.Position < 1 || got.Wait.Reason == "" || got.Wait.Message == "" {
					t.Errorf("held job %s: wait %+v, want a place, a reason and a message", got.ID, got.Wait)
				}
			}
		}
		return per, total, held
	}
	per, total, held := count()
	if per["ann"] != 2 || per["bo"] != 2 || per["cy"] != 1 || total != 5 || held != len(all)-5 {
		t.Fatalf("admitted %v (%d), held %d; want ann 2, bo 2, cy 1 (its limit), 5 in all, the other %d held", per, total, held, len(all)-5)
	}

	// One of ann's jobs ends: her next job is the one whose turn it is
	// (bo and cy are at their limits; the slots had been full).
	var ended *pipeline.Job
	for _, j := range all {
		if got, _ := store.GetJob(ctx, j.Owner, j.ID); got.Owner == "ann" && got.Status == pipeline.JobDispatching {
			ended = got
			break
		}
	}
	if _, err := pipeline.TransitionJob(ctx, store, ended.Owner, ended.ID, pipeline.JobFailed, nil); err != nil {
		t.Fatal(err)
	}
	n, err := fair.Release(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || len(q.sent) != 1 || q.sent[0].Owner != "ann" {
		t.Fatalf("Release sent %d: %+v, want one message, for ann's next job", n, q.sent)
	}
	next, err := store.GetJob(ctx, "ann", q.sent[0].JobID)
	if err != nil {
		t.Fatal(err)
	}
	if next.Wait != nil || !next.Enqueued {
		t.Errorf("the released job: wait %+v, enqueued %v; want no wait and its message recorded", next.Wait, next.Enqueued)
	}
	// Releasing again sends nothing more: the slot is promised.
	if n, err := fair.Release(ctx); err != nil || n != 0 {
		t.Errorf("a second Release sent %d (%v), want 0", n, err)
	}
}

// hidingScanner lags like an index: it does not list the hidden jobs yet.
type hidingScanner struct {
	pipeline.JobKeyScanner
	hidden map[string]bool
}

func (h hidingScanner) ListJobKeys(ctx context.Context, st pipeline.JobStatus, p pipeline.Page) ([]pipeline.JobKey, string, error) {
	keys, next, err := h.JobKeyScanner.ListJobKeys(ctx, st, p)
	out := keys[:0]
	for _, k := range keys {
		if !h.hidden[k.ID] {
			out = append(out, k)
		}
	}
	return out, next, err
}

func queuedJob(t *testing.T, s *local.Store, owner, id string, at time.Time) *pipeline.Job {
	t.Helper()
	j := &pipeline.Job{ID: id, Owner: owner, Status: pipeline.JobQueued, CreatedAt: at, UpdatedAt: at}
	if err := s.CreateJob(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	return j
}

func TestFairDispatchEdges(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	claimer := func(f *pipeline.FairDispatch, j *pipeline.Job) func() error {
		return func() error { _, err := f.Jobs.Claim(ctx, j.Owner, j.ID, time.Minute); return err }
	}

	t.Run("a new job the index does not list yet is planned, not let through", func(t *testing.T) {
		fair, store, _ := newFairEnv(t, pipeline.Fairness{OwnerLimit: 1})
		first := queuedJob(t, store, "ann", "job_1", at)
		if ok, err := fair.Admit(ctx, "ann", first.ID, claimer(fair, first)); !ok || err != nil {
			t.Fatalf("Admit(first) = %v, %v", ok, err)
		}
		second := queuedJob(t, store, "ann", "job_2", at.Add(time.Second))
		fair.Scanner = hidingScanner{store, map[string]bool{second.ID: true}}
		ok, err := fair.Admit(ctx, "ann", second.ID, claimer(fair, second))
		if err != nil || ok {
			t.Fatalf("Admit(unlisted second job over the limit) = %v, %v; want held", ok, err)
		}
		got, _ := store.GetJob(ctx, "ann", second.ID)
		if got.Status != pipeline.JobQueued || got.Wait == nil || got.Wait.Reason != pipeline.WaitOwnerLimit {
			t.Errorf("the unlisted job: %s, wait %+v; want queued, held for the owner's limit", got.Status, got.Wait)
		}
	})

	t.Run("a release does not take a message dropped by a later hold for one on its way", func(t *testing.T) {
		fair, store, q := newFairEnv(t, pipeline.Fairness{OwnerLimit: 1})
		running := queuedJob(t, store, "ann", "job_1", at)
		fair.Admit(ctx, "ann", running.ID, claimer(fair, running))
		held := queuedJob(t, store, "ann", "job_2", at.Add(time.Second))
		if ok, _ := fair.Admit(ctx, "ann", held.ID, claimer(fair, held)); ok {
			t.Fatal("the second job was admitted over the limit")
		}
		// The slot frees; a release sends the held job's message, and a
		// dispatcher, planning on an index that still shows the first job
		// in flight, holds it again before the release records its send.
		pipeline.TransitionJob(ctx, store, "ann", running.ID, pipeline.JobFailed, nil)
		fair.Jobs.Queue = hookQueue{q, func() {
			lagging := &pipeline.FairDispatch{Jobs: fair.Jobs, Scanner: fakeRunning{store, "ann", running.ID}, Fairness: fair.Fairness}
			if ok, err := lagging.Admit(ctx, "ann", held.ID, claimer(lagging, held)); ok || err != nil {
				t.Errorf("the lagging dispatcher admitted %v (%v), want a hold", ok, err)
			}
		}}
		if n, err := fair.Release(ctx); n != 1 || err != nil {
			t.Fatalf("Release = %d, %v; want one sent", n, err)
		}
		got, _ := store.GetJob(ctx, "ann", held.ID)
		if got.Wait == nil || got.Enqueued {
			t.Errorf("after a hold that came after the send: wait %+v, enqueued %v; want held, not enqueued", got.Wait, got.Enqueued)
		}
		// The next release sends it again, and this time it stands.
		fair.Jobs.Queue = q
		if n, err := fair.Release(ctx); n != 1 || err != nil {
			t.Fatalf("the next Release = %d, %v; want one sent", n, err)
		}
		if got, _ := store.GetJob(ctx, "ann", held.ID); got.Wait != nil || !got.Enqueued {
			t.Errorf("after the next release: wait %+v, enqueued %v; want released", got.Wait, got.Enqueued)
		}
	})

	t.Run("with fair dispatch turned off, a job it held is sent by reconciliation", func(t *testing.T) {
		fair, store, q := newFairEnv(t, pipeline.Fairness{OwnerLimit: 1})
		running := queuedJob(t, store, "ann", "job_1", at)
		fair.Admit(ctx, "ann", running.ID, claimer(fair, running))
		held := queuedJob(t, store, "ann", "job_2", at.Add(time.Second))
		fair.Admit(ctx, "ann", held.ID, claimer(fair, held))
		j, _ := store.GetJob(ctx, "ann", held.ID)
		fair.Jobs.Now = func() time.Time { return at.Add(time.Hour) }
		did, err := fair.Jobs.RepairUndispatched(ctx, j, pipeline.RequeuePolicy{Fair: true})
		if err != nil || did != pipeline.RepairNone || len(q.sent) != 0 {
			t.Fatalf("with fair dispatch on: %q, %v, %d sent; want it left for its release", did, err, len(q.sent))
		}
		did, err = fair.Jobs.RepairUndispatched(ctx, j, pipeline.RequeuePolicy{})
		if err != nil || did != pipeline.RepairEnqueued || len(q.sent) != 1 {
			t.Fatalf("with it off: %q, %v, %d sent; want it enqueued", did, err, len(q.sent))
		}
		if got, _ := store.GetJob(ctx, "ann", held.ID); got.Wait != nil || !got.Enqueued {
			t.Errorf("after: wait %+v, enqueued %v", got.Wait, got.Enqueued)
		}
	})
}

// hookQueue runs after on every send, after sending.
type hookQueue struct {
	*sentQueue
	after func()
}

func (h hookQueue) Send(ctx context.Context, m pipeline.Message) (string, error) {
	id, err := h.sentQueue.Send(ctx, m)
	h.after()
	return id, err
}

// fakeRunning lists one ended job as still running, as a lagging index
// would.
type fakeRunning struct {
	*local.Store
	owner, id string
}

func (f fakeRunning) ListJobKeys(ctx context.Context, st pipeline.JobStatus, p pipeline.Page) ([]pipeline.JobKey, string, error) {
	keys, next, err := f.Store.ListJobKeys(ctx, st, p)
	if st == pipeline.JobRunning && err == nil {
		keys = append(keys, pipeline.JobKey{Owner: f.owner, ID: f.id, Status: st})
	}
	return keys, next, err
}
