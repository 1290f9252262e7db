package dynamo_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/dynamo/capacity"
)

// TestABusyDayKeepsEveryPartitionUnderItsWriteLimit drives the real store,
// lifecycle and reconciler on the in-memory table with the busy
// day, deterministically (seeded): 10,000 jobs training, each calling
// back every 10 s and checkpointing every 10 min; 100,000 jobs created a
// day (one every 0.864 s: created, dispatched 2 s later, started a minute
// after) and as many ending; one dataset per ten jobs; 1,000 owners
// sharing the jobs by a Zipf law; reconciliation every minute with RunPod
// saying every run is in progress. What it compresses: the steady state is
// set up first (not measured; capacity.NewPopulation), then one minute of
// it is simulated at full rate, every request metered and stamped with
// the simulated second it happens in (each request takes 5 ms of
// simulated time, so that a reconciliation pass spreads over the seconds
// it would take). Per-second peaks are a property of the steady state,
// which every minute of the day repeats; the day's totals are the
// minute's times 1,440. `go run ./tools/dynsim day -window 10m` runs a
// longer window.
//
// It asserts that no partition key, of the table or of an index, takes
// more than 1,000 write units in any second. (Before the layout of
// 2026-12-06, the active index's JOB#running took 15,890 in its busiest
// second, active_by_created's and the busiest owner's partitions over
// 1,000 too: docs/capacity.md has the before and after.)
func TestABusyDayKeepsEveryPartitionUnderItsWriteLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("the busy day takes some seconds: skipped with -short")
	}
	day := capacity.BusyDay()
	day.Window = time.Minute
	r, err := capacity.Simulate(context.Background(), day)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	capacity.PrintDay(&out, r, 12)
	t.Logf("the busy day:\n%s", out.String())
	if r.Ops["progress callback"] == nil || r.Ops["progress callback"].Count < day.Running*5 {
		t.Fatalf("ops = %v, want at least %d progress callbacks in a minute", r.Ops, day.Running*5)
	}
	if r.Created == 0 || r.Ended == 0 || r.Checked == 0 {
		t.Errorf("created %d, ended %d, checked %d jobs in the window; want some of each", r.Created, r.Ended, r.Checked)
	}
	for _, p := range r.Over() {
		t.Errorf("%s takes %.0f WCU in second %d, over DynamoDB's %d per partition key", p.Name(), p.PeakWCU, p.Second, capacity.PartitionWCULimit)
	}
}
