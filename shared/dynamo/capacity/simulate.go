package capacity

import (
	"container/heap"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/dynamo/dynamotest"
)

// Day is a busy day's traffic.
type Day struct {
	Seed uint64
	// Running is how many jobs train at once, each sending a progress
	// callback every ProgressEvery and a checkpoint every CheckpointEvery.
	Running         int
	ProgressEvery   time.Duration
	CheckpointEvery time.Duration
	// CreatedPerDay is how many jobs are created in a day; as many end. A
	// job trains for Running/CreatedPerDay of a day (Little's law), then
	// saves, uploads its adapter and completes, or fails (FailShare).
	CreatedPerDay int
	FailShare     float64
	// DatasetsPerJob is how many datasets are created (and validated) per
	// job created.
	DatasetsPerJob float64
	// Owners share the jobs by a Zipf law (ZipfS).
	Owners int
	// ReconcileEvery is the reconciler's schedule.
	ReconcileEvery time.Duration
	// Window is the simulated time measured, at full rate, after the
	// steady state is set up: what per-second peaks are measured on. The
	// day's totals are the window's, scaled to 24 hours (every minute of
	// the steady state carries the same traffic).
	Window time.Duration
}

// BusyDay is the day: 10,000 jobs running, calling back every
// 10 s, 100,000 jobs created, reconciliation every minute.
func BusyDay() Day {
	return Day{Seed: 1, Running: 10_000, ProgressEvery: 10 * time.Second, CheckpointEvery: 10 * time.Minute,
		CreatedPerDay: 100_000, FailShare: 0.05, DatasetsPerJob: 0.1, Owners: 1_000, ReconcileEvery: time.Minute,
		Window: 2 * time.Minute}
}

// Scaled is d with running jobs, and jobs created in proportion.
func (d Day) Scaled(running int) Day {
	d.CreatedPerDay = d.CreatedPerDay * running / d.Running
	d.Owners = max(1, d.Owners*running/d.Running)
	d.Running = running
	return d
}

// PartitionPeak is one partition's busiest second.
type PartitionPeak struct {
	Index     string // "" for the table
	Partition string
	PeakWCU   float64
	// Second is when, in seconds from the window's start.
	Second int
	// OverSeconds counts its seconds over PartitionWCULimit.
	OverSeconds int
}

// Name is "table pk=…" or "index <name> pk=…".
func (p PartitionPeak) Name() string {
	if p.Index == "" {
		return "table pk=" + p.Partition
	}
	return "index " + p.Index + " pk=" + p.Partition
}

// PartitionWCULimit is DynamoDB's write throughput limit of one
// partition key value: 1,000 write units per second.
const PartitionWCULimit = 1000

// OpTotal is what one kind of event cost in the window.
type OpTotal struct {
	Count    int
	WCU, RCU float64
}

// DayResult is what a simulated day cost.
type DayResult struct {
	Day Day
	// Ops by event kind, and the window's totals.
	Ops      map[string]*OpTotal
	WCU, RCU float64
	// Requests counts DynamoDB requests in the window.
	Requests int
	// PartitionSeconds counts (partition, second) pairs with a write; P50,
	// P99 and Max are of their write units.
	PartitionSeconds int
	P50, P99, Max    float64
	// Peaks are every partition's busiest second, busiest first.
	Peaks []PartitionPeak
	// Ended and Created count the jobs that ended and were created in the
	// window; Checked the jobs reconciliation asked RunPod about.
	Ended, Created, Checked int
	// StorageBytesPerDay is the growth of the table's and its indexes'
	// stored bytes, per day (DynamoDB counts 100 bytes of overhead per
	// item and index entry).
	StorageBytesPerDay float64
}

// DayWCU and DayRCU are the window's totals scaled to a day.
func (r *DayResult) DayWCU() float64 { return r.WCU * r.scale() }

// DayRCU is the window's reads scaled to a day.
func (r *DayResult) DayRCU() float64 { return r.RCU * r.scale() }

func (r *DayResult) scale() float64 { return float64(24*time.Hour) / float64(r.Day.Window) }

// Over returns the partitions that went over PartitionWCULimit.
func (r *DayResult) Over() []PartitionPeak {
	var out []PartitionPeak
	for _, p := range r.Peaks {
		if p.PeakWCU > PartitionWCULimit {
			out = append(out, p)
		}
	}
	return out
}

type event struct {
	at   time.Time
	seq  int
	kind string
	w    *Worker
	run  func(ctx context.Context) error
}

type events []*event

func (q events) Len() int { return len(q) }
func (q events) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q events) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *events) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *events) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// Event kinds, as the result's Ops name them.
const (
	kindProgress   = "progress callback"
	kindCheckpoint = "checkpoint callback"
	kindFinish     = "job end (save, upload, artifacts, completed or failed)"
	kindCreate     = "job created (API reads, create, enqueue)"
	kindDispatch   = "dispatch (claim, record run)"
	kindStart      = "worker start (started, download, load, train)"
	kindDataset    = "dataset created and validated"
	kindReconcile  = "reconcile pass"
)

// Simulate sets up d's steady state (not measured: d.Running jobs
// training, written as NewPopulation says) and then runs d.Window of
// traffic at full rate through the real code, measuring every request.
func Simulate(ctx context.Context, d Day) (*DayResult, error) {
	start := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	e, err := NewEnv(start)
	if err != nil {
		return nil, err
	}
	// In the steady state reconciliation checks each job every
	// CheckEvery (5 min) on its minute schedule: a job was last checked
	// at one of the five passes before the window's first, evenly.
	t0 := start.Add(time.Second)
	seeds := rand.New(rand.NewPCG(d.Seed, 0x7ec0))
	firstPass := t0.Add(time.Duration(seeds.Float64() * float64(d.ReconcileEvery)))
	const checkEvery = 5 // passes: reconcile's default CheckEvery over the schedule
	checked := func() time.Time {
		return firstPass.Add(-time.Duration(1+seeds.IntN(checkEvery))*d.ReconcileEvery - time.Second)
	}
	pop, err := NewPopulation(ctx, e, d.Seed, d.Running, d.Owners, checked)
	if err != nil {
		return nil, err
	}
	// Setting up took simulated time (a request at a time); the steady
	// state it wrote is of its start.
	e.Clock.Set(start)
	end := t0.Add(d.Window)
	res := &DayResult{Day: d, Ops: map[string]*OpTotal{}}
	storage0 := storedBytes(e.DB)

	// Write units per partition per second.
	type pkey struct{ index, pk string }
	perSecond := map[int]map[pkey]float64{}
	var current string
	e.OnCall = func(c dynamotest.Call) {
		res.Requests++
		op := res.Ops[current]
		op.WCU += c.WCU()
		op.RCU += c.RCU()
		res.WCU += c.WCU()
		res.RCU += c.RCU()
		sec := int(c.At.Sub(t0) / time.Second)
		m := perSecond[sec]
		if m == nil {
			m = map[pkey]float64{}
			perSecond[sec] = m
		}
		for _, w := range c.Writes {
			m[pkey{w.Index, w.Partition}] += w.Units
		}
	}

	var q events
	seq := 0
	at := func(t time.Time, kind string, w *Worker, run func(ctx context.Context) error) {
		seq++
		heap.Push(&q, &event{at: t, seq: seq, kind: kind, w: w, run: run})
	}
	jitter := func(d time.Duration) time.Duration { return time.Duration(pop.Float64() * float64(d)) }
	life := time.Duration(float64(24*time.Hour) * float64(d.Running) / float64(max(1, d.CreatedPerDay)))
	done := map[*Worker]bool{}
	var train func(w *Worker, first time.Time, ends time.Time)
	train = func(w *Worker, first, ends time.Time) {
		var progress, checkpoint func(t time.Time)
		progress = func(t time.Time) {
			at(t, kindProgress, w, func(ctx context.Context) error {
				if done[w] {
					return nil
				}
				progress(t.Add(d.ProgressEvery))
				_, err := w.Progress(ctx, e)
				return err
			})
		}
		checkpoint = func(t time.Time) {
			at(t, kindCheckpoint, w, func(ctx context.Context) error {
				if done[w] {
					return nil
				}
				checkpoint(t.Add(d.CheckpointEvery))
				_, err := w.Checkpoint(ctx, e)
				return err
			})
		}
		progress(first)
		checkpoint(first.Add(jitter(d.CheckpointEvery)))
		at(ends, kindFinish, w, func(ctx context.Context) error {
			done[w] = true
			res.Ended++
			return Finish(ctx, e, w, pop.Float64() < d.FailShare)
		})
	}
	for _, w := range pop.Workers {
		train(w, t0.Add(jitter(d.ProgressEvery)), t0.Add(jitter(life)))
	}
	// Jobs created at an even rate (seeded phase), each dispatched 2 s
	// later and started by its worker a minute after.
	if d.CreatedPerDay > 0 {
		every := time.Duration(float64(24*time.Hour) / float64(d.CreatedPerDay))
		for t := t0.Add(jitter(every)); t.Before(end); t = t.Add(every) {
			at(t, kindCreate, nil, func(ctx context.Context) error {
				owner := pop.Owner()
				ds := pop.Datasets[owner]
				if _, err := e.Store.GetDataset(ctx, owner, ds.ID); err != nil {
					return err
				}
				j, err := NewJob(pop.ids, ds, e.Clock.Now())
				if err == nil {
					j, _, err = e.Jobs.Create(ctx, j)
				}
				if err != nil {
					return err
				}
				res.Created++
				created := e.Clock.Now()
				at(created.Add(2*time.Second), kindDispatch, nil, func(ctx context.Context) error {
					j, err := Dispatch(ctx, e, j, RunID(pop.ids, e.Clock.Now()))
					if err != nil {
						return err
					}
					w := NewWorker(j)
					at(e.Clock.Now().Add(time.Minute), kindStart, w, func(ctx context.Context) error {
						if _, err := w.Started(ctx, e); err != nil {
							return err
						}
						if err := startStages(ctx, e, w); err != nil {
							return err
						}
						now := e.Clock.Now()
						train(w, now.Add(d.ProgressEvery), now.Add(life))
						return nil
					})
					return nil
				})
				return nil
			})
		}
		if d.DatasetsPerJob > 0 {
			every := time.Duration(float64(every) / d.DatasetsPerJob)
			for t := t0.Add(jitter(every)); t.Before(end); t = t.Add(every) {
				at(t, kindDataset, nil, func(ctx context.Context) error {
					ds := NewDataset(pop.ids, pop.Owner(), e.Clock.Now())
					if err := e.Store.CreateDataset(ctx, ds); err != nil {
						return err
					}
					e.Clock.Advance(30 * time.Second) // validation takes a while
					Validated(ds, e.Clock.Now())
					return e.Store.UpdateDataset(ctx, ds)
				})
			}
		}
	}
	for t := firstPass; t.Before(end); t = t.Add(d.ReconcileEvery) {
		at(t, kindReconcile, nil, func(ctx context.Context) error {
			before := e.GPU.Statuses
			_, err := e.Reconciler.Run(ctx)
			res.Checked += e.GPU.Statuses - before
			return err
		})
	}

	for q.Len() > 0 {
		ev := heap.Pop(&q).(*event)
		if !ev.at.Before(end) {
			break
		}
		e.Clock.Set(ev.at)
		current = ev.kind
		if res.Ops[current] == nil {
			res.Ops[current] = &OpTotal{}
		}
		res.Ops[current].Count++
		if err := ev.run(ctx); err != nil {
			return nil, fmt.Errorf("%s at %s: %w", ev.kind, ev.at.Sub(t0), err)
		}
	}
	e.OnCall = nil
	res.StorageBytesPerDay = float64(storedBytes(e.DB)-storage0) * res.scale()

	// The distribution of write units over (partition, second) pairs.
	peaks := map[pkey]*PartitionPeak{}
	var all []float64
	for sec, m := range perSecond {
		for k, u := range m {
			all = append(all, u)
			p := peaks[k]
			if p == nil {
				p = &PartitionPeak{Index: k.index, Partition: k.pk}
				peaks[k] = p
			}
			if u > p.PeakWCU || u == p.PeakWCU && sec < p.Second {
				p.PeakWCU, p.Second = u, sec
			}
			if u > PartitionWCULimit {
				p.OverSeconds++
			}
		}
	}
	sort.Float64s(all)
	res.PartitionSeconds = len(all)
	if len(all) > 0 {
		res.P50, res.P99, res.Max = quantile(all, 0.5), quantile(all, 0.99), all[len(all)-1]
	}
	for _, p := range peaks {
		res.Peaks = append(res.Peaks, *p)
	}
	sort.Slice(res.Peaks, func(i, j int) bool {
		a, b := res.Peaks[i], res.Peaks[j]
		if a.PeakWCU != b.PeakWCU {
			return a.PeakWCU > b.PeakWCU
		}
		return a.Name() < b.Name()
	})
	return res, nil
}

func startStages(ctx context.Context, e *Env, w *Worker) error {
	for _, s := range []contract.Stage{contract.StageDownload, contract.StageLoad, contract.StageTrain} {
		if _, err := w.Stage(ctx, e, s); err != nil {
			return err
		}
	}
	return nil
}

func quantile(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// storedBytes is what DynamoDB bills as stored: every item of the table
// and every index entry, each with 100 bytes of overhead.
func storedBytes(db *dynamotest.DB) int64 {
	var n int64
	for _, s := range db.Stored() {
		n += int64(s.Bytes) + 100*int64(s.Items)
	}
	return n
}

// PrintDay writes a simulation's figures: the window's totals by event
// kind, the day's totals, the distribution of write units per partition
// and second, and the busiest partitions.
func PrintDay(out io.Writer, r *DayResult, top int) {
	d := r.Day
	fmt.Fprintf(out, "Simulated: %d jobs running (progress every %s, checkpoint every %s), %d jobs created a day (%.0f%% fail), %d owners (Zipf s=%.1f), reconcile every %s.\n",
		d.Running, d.ProgressEvery, d.CheckpointEvery, d.CreatedPerDay, 100*d.FailShare, d.Owners, ZipfS, d.ReconcileEvery)
	fmt.Fprintf(out, "Measured: %s of steady state at full rate (seed %d): %d requests, %d jobs created, %d ended, %d checked with RunPod.\n",
		d.Window, d.Seed, r.Requests, r.Created, r.Ended, r.Checked)
	fmt.Fprintf(out, "The day: the window scaled to 24 h: %.3g WCU, %.3g RCU; stored bytes grow %.1f GB a day.\n\n", r.DayWCU(), r.DayRCU(), r.StorageBytesPerDay/1e9)
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "event\tcount in window\tWCU\tRCU\tWCU per event\tRCU per event")
	var kinds []string
	for k := range r.Ops {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool { return r.Ops[kinds[i]].WCU > r.Ops[kinds[j]].WCU })
	for _, k := range kinds {
		o := r.Ops[k]
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.1f\t%.2f\n", k, o.Count, o.WCU, o.RCU, o.WCU/float64(max(1, o.Count)), o.RCU/float64(max(1, o.Count)))
	}
	tw.Flush()
	fmt.Fprintf(out, "\nWrite units per partition key per second, over the %d (partition, second) pairs with a write: p50 %.0f, p99 %.0f, max %.0f (limit %d).\n",
		r.PartitionSeconds, r.P50, r.P99, r.Max, PartitionWCULimit)
	fmt.Fprintf(out, "Busiest partitions (peak second):\n")
	tw = tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "partition\tpeak WCU/s\tat second\tseconds over 1,000")
	for i, p := range r.Peaks {
		if i == top {
			break
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%d\t%d\n", p.Name(), p.PeakWCU, p.Second, p.OverSeconds)
	}
	tw.Flush()
	if over := r.Over(); len(over) > 0 {
		var names []string
		for _, p := range over {
			names = append(names, fmt.Sprintf("%s (%.0f)", p.Name(), p.PeakWCU))
		}
		fmt.Fprintf(out, "Over %d WCU in a second: %s\n", PartitionWCULimit, strings.Join(names, ", "))
	}
}
