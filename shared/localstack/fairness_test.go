package localstack_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/localstack"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/runpodemu"
)

// Many owners submit at once to a slow GPU: no owner ever has more jobs
// on GPUs than its limit, the runs in flight never pass the endpoint's
// slots, a held job says where it stands and why, an owner who comes
// late is served at the next free slot, and every job completes.
func TestFairDispatchKeepsLimitsAndServesALateOwner(t *testing.T) {
	owners := []string{"ann", "ben", "cat", "dan"}
	const late = "eve"
	var tokens []string
	for _, o := range append(owners, late) {
		tokens = append(tokens, o+":tok-"+o)
	}
	const ownerLimit, slots, perOwner = 2, 6, 4
	fair := &pipeline.Fairness{OwnerLimit: ownerLimit, MaxInFlight: slots, OwnerLimits: map[string]int{"dan": 1}}
	cfg := localstack.Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), DevTokens: strings.Join(tokens, ","),
		Log:                slog.New(slog.NewTextHandler(io.Discard, nil)),
		Emulator:           runpodemu.Config{StepsPerSecond: 40, WebhookRetryInterval: 100 * time.Millisecond},
		DispatchVisibility: time.Second, ReconcileEvery: 200 * time.Millisecond,
		Fairness: fair,
	}
	s, err := localstack.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })

	datasets := map[string]string{}
	for _, o := range append(owners, late) {
		datasets[o] = readyDatasetAs(t, s, "tok-"+o)
	}

	// A watcher samples the jobs in flight, as the store has them.
	var mu sync.Mutex
	maxOwner := map[string]int{}
	maxTotal := 0
	var started []string // owner/job, in the order first seen in flight
	seen := map[string]bool{}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			// A job moving on between two statuses' scans is met twice:
			// counted once.
			in := map[string]string{}
			for _, st := range pipeline.InFlight {
				list, _, err := s.Store.ListJobsByStatus(ctx, st, pipeline.Page{Limit: pipeline.MaxPageSize})
				if err != nil {
					continue
				}
				for _, j := range list {
					in[j.ID] = j.Owner
					mu.Lock()
					if !seen[j.ID] {
						seen[j.ID] = true
						started = append(started, j.Owner+"/"+j.ID)
					}
					mu.Unlock()
				}
			}
			per := map[string]int{}
			for _, o := range in {
				per[o]++
			}
			total := len(in)
			mu.Lock()
			for o, n := range per {
				maxOwner[o] = max(maxOwner[o], n)
			}
			maxTotal = max(maxTotal, total)
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()

	body := `,"preset":"fast","hyperparameters":{"batch_size":1,"gradient_accumulation":1,"epochs":3}`
	var ids []string
	owner := map[string]string{}
	for i := 0; i < perOwner; i++ {
		for _, o := range owners {
			var j struct{ ID string }
			if st := callAs(t, "tok-"+o, "POST", s.URL()+"/v1/jobs", fmt.Sprintf(`{"dataset_id":%q%s}`, datasets[o], body), &j); st != 201 {
				t.Fatalf("POST /v1/jobs as %s = %d", o, st)
			}
			ids = append(ids, j.ID)
			owner[j.ID] = o
		}
	}
	// A held job says where it stands and why.
	var held struct {
		Status string
		Wait   *struct {
			Position int
			Reason   string
			Message  string
		}
	}
	waitFor(t, 20*time.Second, func() bool {
		callAs(t, "tok-ann", "GET", s.URL()+"/v1/jobs/"+ids[len(ids)-len(owners)], "", &held)
		return held.Wait != nil
	}, "ann's last job to be held with its place")
	if held.Status != "queued" || held.Wait.Position < 1 || held.Wait.Reason == "" || held.Wait.Message == "" {
		t.Errorf("ann's held job = %+v, want queued with a position, a reason and a message", held)
	}

	// The late owner arrives once the first slots are taken.
	waitFor(t, 20*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(started) >= slots }, "the first slots taken")
	mu.Lock()
	before := len(started)
	mu.Unlock()
	var lateJob struct{ ID string }
	if st := callAs(t, "tok-"+late, "POST", s.URL()+"/v1/jobs", fmt.Sprintf(`{"dataset_id":%q%s}`, datasets[late], body), &lateJob); st != 201 {
		t.Fatalf("POST /v1/jobs as %s = %d", late, st)
	}
	ids = append(ids, lateJob.ID)
	owner[lateJob.ID] = late

	for _, id := range ids {
		o := owner[id]
		waitFor(t, 120*time.Second, func() bool {
			var j struct{ Status string }
			callAs(t, "tok-"+o, "GET", s.URL()+"/v1/jobs/"+id, "", &j)
			if j.Status == "failed" || j.Status == "cancelled" {
				t.Fatalf("job %s of %s ended %s", id, o, j.Status)
			}
			return j.Status == "completed"
		}, "job "+id+" of "+o+" to complete")
	}
	stop()
	<-done

	mu.Lock()
	defer mu.Unlock()
	t.Logf("most jobs in flight at once: %v, all owners %d; start order %v", maxOwner, maxTotal, started)
	for o, n := range maxOwner {
		if n > fair.Limit(o) {
			t.Errorf("%s had %d jobs in flight at once, over its limit %d", o, n, fair.Limit(o))
		}
	}
	if maxOwner["ann"] < ownerLimit && maxOwner["ben"] < ownerLimit && maxOwner["cat"] < ownerLimit {
		t.Errorf("no owner reached its limit of %d (%v): the test no longer shows the limit binding", ownerLimit, maxOwner)
	}
	if maxTotal > slots {
		t.Errorf("%d jobs were in flight at once, over the %d slots", maxTotal, slots)
	}
	// Served within one slot of the others: of the jobs that started after
	// the late owner's job was created, its job is the first or second.
	pos := -1
	for i, s := range started[before:] {
		if strings.HasPrefix(s, late+"/") {
			pos = i
			break
		}
	}
	if pos < 0 || pos > 1 {
		t.Errorf("the late owner's job started %d-th after it arrived (order %v), want within one slot", pos+1, started[before:])
	}
}
