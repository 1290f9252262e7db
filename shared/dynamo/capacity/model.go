package capacity

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/dynamo/dynamotest"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// Row is what one store operation cost.
type Row struct {
	Op    string
	Calls int // DynamoDB requests
	WCU   float64
	RCU   float64
	// IndexWrites counts the writes of each index ("by_created: 1 update").
	IndexWrites map[string]map[dynamotest.WriteKind]int
	// KeyChanges names the indexes whose key of an item changed (a delete
	// and an insert of the same item in one request).
	KeyChanges []string
	// Items is how many index or table items a read returned, summed.
	Items int
	// ItemBytes is the largest base item written (the larger of old and
	// new for a replace).
	ItemBytes int
	// Note says what the row measures when its name does not.
	Note string
}

// rowOf sums the bill of calls.
func rowOf(op string, calls []dynamotest.Call) Row {
	r := Row{Op: op, Calls: len(calls), IndexWrites: map[string]map[dynamotest.WriteKind]int{}}
	changed := map[string]bool{}
	for _, c := range calls {
		r.WCU += c.WCU()
		r.RCU += c.RCU()
		for _, rd := range c.Reads {
			r.Items += rd.Items
		}
		del, ins := map[string]bool{}, map[string]bool{}
		for _, w := range c.Writes {
			if w.Index == "" {
				r.ItemBytes = max(r.ItemBytes, w.Bytes)
				continue
			}
			if r.IndexWrites[w.Index] == nil {
				r.IndexWrites[w.Index] = map[dynamotest.WriteKind]int{}
			}
			r.IndexWrites[w.Index][w.Kind]++
			switch w.Kind {
			case dynamotest.IndexDelete:
				del[w.Index] = true
			case dynamotest.IndexInsert:
				ins[w.Index] = true
			}
		}
		for ix := range del {
			if ins[ix] {
				changed[ix] = true
			}
		}
	}
	for ix := range changed {
		r.KeyChanges = append(r.KeyChanges, ix)
	}
	sort.Strings(r.KeyChanges)
	return r
}

// IndexesWritten says which indexes the operation wrote, and how.
func (r Row) IndexesWritten() string {
	var names []string
	for ix := range r.IndexWrites {
		names = append(names, ix)
	}
	sort.Strings(names)
	var parts []string
	for _, ix := range names {
		var kinds []string
		for _, k := range []dynamotest.WriteKind{dynamotest.IndexInsert, dynamotest.IndexUpdate, dynamotest.IndexDelete} {
			if n := r.IndexWrites[ix][k]; n > 0 {
				kinds = append(kinds, fmt.Sprintf("%d %s", n, strings.TrimPrefix(string(k), "index ")))
			}
		}
		parts = append(parts, ix+" ("+strings.Join(kinds, ", ")+")")
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}

// The model's operations, by name: the budgets refer to them.
const (
	OpCreateDataset     = "create dataset"
	OpValidateDataset   = "dataset validated (ready)"
	OpCreateJob         = "create job"
	OpClaim             = "dispatch: claim (queued → dispatching)"
	OpRecordRun         = "dispatch: record run (→ submitted)"
	OpStarted           = "callback started (→ running)"
	OpStage             = "callback stage (train)"
	OpProgressFirst     = "callback progress (first)"
	OpProgress          = "callback progress"
	OpCheckpoint        = "callback checkpoint"
	OpStageUpload       = "callback stage (upload → uploading)"
	OpArtifact          = "callback artifact"
	OpCompleted         = "callback completed (→ completed)"
	OpFailed            = "callback failed (→ failed)"
	OpCancel            = "cancel (running → cancel_requested)"
	OpCancelled         = "callback failed: cancelled (→ cancelled)"
	OpListJobs          = "list jobs (page of 20)"
	OpListJobsByStatus  = "list jobs of a status (page of 20)"
	OpReconcileIdle     = "reconcile pass, per running job, none due"
	OpReconcileChecked  = "reconcile pass, per running job, each checked"
	OpFairPlan          = "fair dispatch plan, per unfinished job"
	reconcileModelJobs  = 200
	modelOwnerJobsToAdd = 25
)

// Model runs each operation of a job's life once through the real code
// and returns what each cost. A progress callback is measured in the
// steady state: a job well into training, holding KeepCheckpoints
// checkpoints. The reconcile rows are one pass over reconcileModelJobs
// running jobs divided by their number: a minute after a pass that checked
// them all, their heartbeats fresh ("none due": the pass only lists
// them), then ten minutes later, heartbeats kept fresh, every check due
// (each job's status asked of RunPod and recorded).
func Model(ctx context.Context) ([]Row, error) {
	start := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	e, err := NewEnv(start)
	if err != nil {
		return nil, err
	}
	ids := NewIDs(1)
	owner := Owner(1)
	var rows []Row
	var d *pipeline.Dataset
	var j *pipeline.Job
	var w *Worker
	step := func(op string, fn func() error) error {
		e.Clock.Advance(time.Second)
		calls, err := e.Capture(fn)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		rows = append(rows, rowOf(op, calls))
		return nil
	}
	quiet := func(fn func() error) error {
		e.Clock.Advance(time.Second)
		_, err := e.Capture(fn)
		return err
	}
	steps := []struct {
		op     string
		fn     func() error
		silent bool
	}{
		{OpCreateDataset, func() error {
			d = NewDataset(ids, owner, e.Clock.Now())
			return e.Store.CreateDataset(ctx, d)
		}, false},
		{OpValidateDataset, func() error {
			var err error
			d, err = pipeline.UpdateDataset(ctx, e.Store, d.Owner, d.ID, func(cur *pipeline.Dataset) error {
				Validated(cur, e.Clock.Now())
				return nil
			})
			return err
		}, false},
		{OpCreateJob, func() error {
			// What the API reads to create a job (the dataset, the
			// measurements of the model on every GPU), then the lifecycle.
			got, err := e.Store.GetDataset(ctx, owner, d.ID)
			if err != nil {
				return err
			}
			for _, g := range catalog.Default().GPUs() {
				if _, err := e.Store.ListMeasurements(ctx, catalog.DefaultModelID, g.ID, 50); err != nil {
					return err
				}
			}
			if j, err = NewJob(ids, got, e.Clock.Now()); err != nil {
				return err
			}
			j, _, err = e.Jobs.Create(ctx, j)
			return err
		}, false},
		{OpClaim, func() error {
			var err error
			j, err = e.Jobs.Claim(ctx, owner, j.ID, pipeline.DefaultLease)
			return err
		}, false},
		{OpRecordRun, func() error {
			var err error
			if j, err = e.Jobs.RecordRun(ctx, j, RunID(ids, e.Clock.Now())); err == nil {
				w = NewWorker(j)
			}
			return err
		}, false},
		{OpStarted, func() error { _, err := w.Started(ctx, e); return err }, false},
		{"", func() error { _, err := w.Stage(ctx, e, contract.StageDownload); return err }, true},
		{"", func() error { _, err := w.Stage(ctx, e, contract.StageLoad); return err }, true},
		{OpStage, func() error { _, err := w.Stage(ctx, e, contract.StageTrain); return err }, false},
		{OpProgressFirst, func() error { _, err := w.Progress(ctx, e); return err }, false},
		{"", func() error { return progressAndCheckpoints(ctx, e, w, pipeline.KeepCheckpoints) }, true},
		{"", func() error { _, err := w.Progress(ctx, e); return err }, true},
		{OpCheckpoint, func() error { _, err := w.Checkpoint(ctx, e); return err }, false},
		{OpProgress, func() error { _, err := w.Progress(ctx, e); return err }, false},
		{"", func() error { _, err := w.Stage(ctx, e, contract.StageSave); return err }, true},
		{OpStageUpload, func() error { _, err := w.Stage(ctx, e, contract.StageUpload); return err }, false},
		{"", func() error { _, err := w.Artifact(ctx, e, adapterFiles[0].name, adapterFiles[0].size); return err }, true},
		{OpArtifact, func() error { _, err := w.Artifact(ctx, e, adapterFiles[1].name, adapterFiles[1].size); return err }, false},
		{OpCompleted, func() error { _, err := w.Completed(ctx, e); return err }, false},
	}
	for _, s := range steps {
		if s.silent {
			err = quiet(s.fn)
		} else {
			err = step(s.op, s.fn)
		}
		if err != nil {
			return nil, err
		}
	}

	// A job that fails, and one the user cancels; both from running.
	running := func() (*Worker, error) {
		nj, err := NewJob(ids, d, e.Clock.Now())
		if err == nil {
			nj, _, err = e.Jobs.Create(ctx, nj)
		}
		if err == nil {
			nj, err = Dispatch(ctx, e, nj, RunID(ids, e.Clock.Now()))
		}
		if err != nil {
			return nil, err
		}
		nw := NewWorker(nj)
		if _, err := nw.Started(ctx, e); err != nil {
			return nil, err
		}
		return nw, progressAndCheckpoints(ctx, e, nw, 1)
	}
	var fw, cw *Worker
	if err := quiet(func() (err error) { fw, err = running(); return }); err != nil {
		return nil, err
	}
	if err := step(OpFailed, func() error { _, err := fw.Failed(ctx, e, "oom"); return err }); err != nil {
		return nil, err
	}
	if err := quiet(func() (err error) { cw, err = running(); return }); err != nil {
		return nil, err
	}
	if err := step(OpCancel, func() error { _, err := e.Jobs.Cancel(ctx, owner, cw.JobID); return err }); err != nil {
		return nil, err
	}
	if err := step(OpCancelled, func() error { _, err := cw.Failed(ctx, e, string(contract.CodeCancelled)); return err }); err != nil {
		return nil, err
	}

	// Lists: the owner has more jobs than a page.
	if err := quiet(func() error {
		for range modelOwnerJobsToAdd {
			nj, err := NewJob(ids, d, e.Clock.Now())
			if err == nil {
				_, _, err = e.Jobs.Create(ctx, nj)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := step(OpListJobs, func() error {
		_, _, err := e.Store.ListJobs(ctx, owner, pipeline.JobFilter{}, pipeline.Page{Limit: 20})
		return err
	}); err != nil {
		return nil, err
	}
	if err := step(OpListJobsByStatus, func() error {
		_, _, err := e.Store.ListJobs(ctx, owner, pipeline.JobFilter{Status: pipeline.JobQueued}, pipeline.Page{Limit: 20})
		return err
	}); err != nil {
		return nil, err
	}
	rec, err := modelReconcile(ctx)
	if err != nil {
		return nil, err
	}
	return append(rows, rec...), nil
}

// progressAndCheckpoints sends progress callbacks and n checkpoints, as a
// job in training does between them.
func progressAndCheckpoints(ctx context.Context, e *Env, w *Worker, n int) error {
	for range n {
		for range 5 {
			e.Clock.Advance(10 * time.Second)
			if _, err := w.Progress(ctx, e); err != nil {
				return err
			}
		}
		if _, err := w.Checkpoint(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// modelReconcile measures reconciliation over reconcileModelJobs running
// jobs, per job.
func modelReconcile(ctx context.Context) ([]Row, error) {
	start := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	e, err := NewEnv(start)
	if err != nil {
		return nil, err
	}
	pop, err := NewPopulation(ctx, e, 7, reconcileModelJobs, 50, nil)
	if err != nil {
		return nil, err
	}
	// A first pass checks every job; the next, a minute on, finds none due.
	if _, err := e.Reconciler.Run(ctx); err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	e.Clock.Advance(time.Minute)
	if err := pop.Heartbeat(ctx, e); err != nil {
		return nil, err
	}
	idle, err := e.Capture(func() error { _, err := e.Reconciler.Run(ctx); return err })
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	// Ten minutes on, every check is due (the heartbeats are kept fresh).
	e.Clock.Advance(10 * time.Minute)
	if err := pop.Heartbeat(ctx, e); err != nil {
		return nil, err
	}
	e.Clock.Advance(time.Second)
	before := e.GPU.Statuses
	checked, err := e.Capture(func() error { _, err := e.Reconciler.Run(ctx); return err })
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	if n := e.GPU.Statuses - before; n != reconcileModelJobs {
		return nil, fmt.Errorf("reconcile checked %d jobs with RunPod, want all %d", n, reconcileModelJobs)
	}
	per := func(op string, calls []dynamotest.Call) Row {
		r := rowOf(op, calls)
		r.Note = fmt.Sprintf("a pass over %d running jobs: %d requests, %.0f WCU, %.1f RCU", reconcileModelJobs, r.Calls, r.WCU, r.RCU)
		n := float64(reconcileModelJobs)
		r.WCU, r.RCU = r.WCU/n, r.RCU/n
		for ix, kinds := range r.IndexWrites {
			for k, c := range kinds {
				r.IndexWrites[ix][k] = (c + reconcileModelJobs - 1) / reconcileModelJobs
			}
		}
		return r
	}
	// Fair dispatch plans over every unfinished job's key: what the
	// dispatcher reads for each message it admits or holds.
	fair := &pipeline.FairDispatch{Jobs: e.Jobs, Scanner: e.Store, Fairness: pipeline.Fairness{MaxInFlight: reconcileModelJobs}}
	plan, err := e.Capture(func() error { _, err := fair.Plan(ctx); return err })
	if err != nil {
		return nil, fmt.Errorf("plan fair dispatch: %w", err)
	}
	return []Row{per(OpReconcileIdle, idle), per(OpReconcileChecked, checked), per(OpFairPlan, plan)}, nil
}

// PrintRows writes the model's table.
func PrintRows(out io.Writer, rows []Row) {
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "operation\trequests\tWCU\tRCU\tlargest item written (bytes)\tindex key changes\tindexes written")
	for _, r := range rows {
		kc := "-"
		if len(r.KeyChanges) > 0 {
			kc = strings.Join(r.KeyChanges, ", ")
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\t%s\n", r.Op, r.Calls, num(r.WCU), num(r.RCU), r.ItemBytes, kc, r.IndexesWritten())
	}
	tw.Flush()
	for _, r := range rows {
		if r.Note != "" {
			fmt.Fprintf(out, "  %s: %s\n", r.Op, r.Note)
		}
	}
}

func num(f float64) string {
	if f == float64(int64(f)) {
		return fmt.Sprintf("%d", int64(f))
	}
	return fmt.Sprintf("%.2f", f)
}

// Budget is what an operation may cost.
type Budget struct {
	Op     string
	MaxWCU float64 // 0: not limited
	MaxRCU float64 // 0: not limited
	// NoKeyChange: the operation may change no index key.
	NoKeyChange bool
}

// Check returns the ways r is over b ("" parts for none).
func (b Budget) Check(r Row) []string {
	var over []string
	if b.MaxWCU > 0 && r.WCU > b.MaxWCU {
		over = append(over, fmt.Sprintf("%s costs %s WCU, budget %s", r.Op, num(r.WCU), num(b.MaxWCU)))
	}
	if b.MaxRCU > 0 && r.RCU > b.MaxRCU {
		over = append(over, fmt.Sprintf("%s costs %s RCU, budget %s", r.Op, num(r.RCU), num(b.MaxRCU)))
	}
	if b.NoKeyChange && len(r.KeyChanges) > 0 {
		over = append(over, fmt.Sprintf("%s changes the key of index %s, budget: no index key change", r.Op, strings.Join(r.KeyChanges, ", ")))
	}
	return over
}

// Find returns the row of op.
func Find(rows []Row, op string) (Row, bool) {
	i := slices.IndexFunc(rows, func(r Row) bool { return r.Op == op })
	if i < 0 {
		return Row{}, false
	}
	return rows[i], true
}
