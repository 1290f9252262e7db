package dynamo_test

import (
	"context"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/dynamo/capacity"
)

// budgets are what each store operation may cost on DynamoDB: the
// targets of a layout whose indexes project only what their queries read
// (a job's document, 2–7 KB with its checkpoints, is written once, to the
// table) and whose fast-changing attributes (progress, heartbeat) live
// outside the job's document and every index key. A callback that does not
// move the job to another status may change no index key (an index key
// change is a delete and an insert, twice the writes, and moves the item
// within a partition that every job writes). The figures allow for the
// event each operation logs (a transaction of two items, billed twice).
var budgets = []capacity.Budget{
	{Op: capacity.OpCreateDataset, MaxWCU: 2},
	{Op: capacity.OpValidateDataset, MaxWCU: 8, NoKeyChange: true},
	{Op: capacity.OpCreateJob, MaxWCU: 16, MaxRCU: 10},
	{Op: capacity.OpClaim, MaxWCU: 16},
	{Op: capacity.OpRecordRun, MaxWCU: 16},
	{Op: capacity.OpStarted, MaxWCU: 16},
	{Op: capacity.OpStage, MaxWCU: 8, NoKeyChange: true},
	{Op: capacity.OpProgressFirst, MaxWCU: 3, NoKeyChange: true},
	{Op: capacity.OpProgress, MaxWCU: 3, NoKeyChange: true},
	{Op: capacity.OpCheckpoint, MaxWCU: 16, NoKeyChange: true},
	{Op: capacity.OpStageUpload, MaxWCU: 16},
	{Op: capacity.OpArtifact, MaxWCU: 16, NoKeyChange: true},
	{Op: capacity.OpCompleted, MaxWCU: 24},
	{Op: capacity.OpFailed, MaxWCU: 20},
	{Op: capacity.OpCancel, MaxWCU: 16},
	{Op: capacity.OpCancelled, MaxWCU: 20},
	{Op: capacity.OpListJobs, MaxRCU: 5},
	{Op: capacity.OpListJobsByStatus, MaxRCU: 5},
	{Op: capacity.OpReconcileIdle, MaxWCU: 0.01, MaxRCU: 0.1},
	{Op: capacity.OpReconcileChecked, MaxWCU: 8, MaxRCU: 2},
}

// overBudgetUntilTheLayoutChange are the operations the table's layout of
// 2026-12 makes cost more than their budget: every write of a job writes
// its whole document (checkpoints, runs, estimate: 2–7 KB) to the table
// and again to each of four ALL-projected indexes, and active_sk holds the
// time the job was last heard of, so every callback moves the job within
// the one active partition of its status. To be fixed by the layout
// change; remove an entry once its operation is within budget (the test
// says when).
var overBudgetUntilTheLayoutChange = map[string]string{
	capacity.OpValidateDataset:  "the validation summary (split token counts) is written to the table and to by_created (ALL)",
	capacity.OpCreateJob:        "the job is written to four ALL-projected indexes, then again when enqueued",
	capacity.OpClaim:            "status change rewrites the whole job in four ALL-projected indexes",
	capacity.OpRecordRun:        "status change rewrites the whole job in five indexes",
	capacity.OpStarted:          "status change rewrites the whole job in four ALL-projected indexes",
	capacity.OpStage:            "active_sk (last heard) changes: delete and insert in active; the job rewritten in three more indexes",
	capacity.OpProgressFirst:    "active_sk (last heard) changes: delete and insert in active; the job rewritten in three more indexes",
	capacity.OpProgress:         "active_sk (last heard) changes: delete and insert in active; the job (with its checkpoints) rewritten in three more indexes",
	capacity.OpCheckpoint:       "active_sk (last heard) changes; the job (with its checkpoints) rewritten in four indexes",
	capacity.OpStageUpload:      "status change rewrites the whole job (with its checkpoints) in four ALL-projected indexes",
	capacity.OpArtifact:         "active_sk (last heard) changes; the job (with its checkpoints) rewritten in four indexes",
	capacity.OpCompleted:        "the whole job (with its checkpoints) rewritten in by_created and moved in by_status",
	capacity.OpFailed:           "the whole job rewritten in by_created and moved in by_status",
	capacity.OpCancel:           "status change rewrites the whole job in four ALL-projected indexes",
	capacity.OpCancelled:        "the whole job rewritten in by_created and moved in by_status",
	capacity.OpReconcileIdle:    "the pass reads every active job's whole document through active_by_created (ALL)",
	capacity.OpReconcileChecked: "recording a check rewrites the whole job in the table and four ALL-projected indexes",
}

// TestEveryStoreOperationStaysWithinItsCapacityBudget measures each
// operation of a job's life with the real store, lifecycle and
// reconciler on the in-memory table (capacity.Model), prints what each
// costs, and holds each to its budget, but for the named exceptions of
// the current layout, which it prints. `go run ./tools/dynsim model`
// prints the same table.
func TestEveryStoreOperationStaysWithinItsCapacityBudget(t *testing.T) {
	rows, err := capacity.Model(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	capacity.PrintRows(&table, rows)
	t.Logf("what each operation costs (WCU and RCU as DynamoDB bills an on-demand table):\n%s", table.String())
	var known []string
	for _, b := range budgets {
		t.Run(b.Op, func(t *testing.T) {
			r, ok := capacity.Find(rows, b.Op)
			if !ok {
				t.Fatalf("the model has no row %q", b.Op)
			}
			over := b.Check(r)
			reason, excepted := overBudgetUntilTheLayoutChange[b.Op]
			switch {
			case excepted && len(over) == 0:
				t.Errorf("%s is within its budget now: remove it from overBudgetUntilTheLayoutChange", b.Op)
			case excepted:
				known = append(known, strings.Join(over, "; ")+" ("+reason+")")
			default:
				for _, o := range over {
					t.Error(o)
				}
			}
		})
	}
	for op := range overBudgetUntilTheLayoutChange {
		if !hasBudget(op) {
			t.Errorf("overBudgetUntilTheLayoutChange names %q, which has no budget", op)
		}
	}
	if len(known) > 0 {
		t.Logf("over budget, to be fixed by the layout change:\n  %s", strings.Join(known, "\n  "))
	}
}

func hasBudget(op string) bool {
	for _, b := range budgets {
		if b.Op == op {
			return true
		}
	}
	return false
}
