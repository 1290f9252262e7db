// Package capacity measures what the control plane costs in DynamoDB: the
// real store (dynamo.Store), the jobs' lifecycle (pipeline.Lifecycle) and
// reconciliation (reconcile.Reconciler) run over an in-memory table
// (dynamotest) that bills every request as an on-demand table does.
//
// Model measures each store operation once, on records the real code
// made (a dataset created and validated, a job created, claimed,
// submitted, called back by its worker with every callback type, listed,
// reconciled). Simulate drives the same code with a busy day's traffic
// and counts the write units of every partition, of the table and of each
// index, in every simulated second. MonthlyCost prices a simulation.
//
// The table's layout is read from dynamo.Schema and the items from the
// store's own code: a layout change is measured without a change here.
package capacity

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/brightrun/brightrun/shared/dynamo"
	"github.com/brightrun/brightrun/shared/dynamo/dynamotest"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/reconcile"
	"github.com/brightrun/brightrun/shared/runpod"
)

// TableName is the in-memory table's name.
const TableName = "brightrun"

// CallLatency is how long one DynamoDB request takes on the simulated
// clock: a sequence of requests (a reconciliation pass over thousands of
// jobs) spreads over the seconds it would take, not into one.
const CallLatency = 5 * time.Millisecond

// Env is the real store, lifecycle and reconciler over an in-memory
// table, on a simulated clock.
type Env struct {
	DB         *dynamotest.DB // nil over another client
	Latency    time.Duration  // simulated time per request
	Store      *dynamo.Store
	Jobs       *pipeline.Lifecycle
	Reconciler *reconcile.Reconciler
	GPU        *GPU
	Objects    *Objects
	Queue      *Queue
	Clock      *Clock

	mu      sync.Mutex
	calls   []dynamotest.Call // while capturing
	capture bool
	// OnCall, when set, receives every request's bill.
	OnCall func(dynamotest.Call)
}

// NewEnv builds an Env over a fresh in-memory table, its clock at start;
// every request takes CallLatency of simulated time.
func NewEnv(start time.Time) (*Env, error) {
	db, err := dynamotest.New(dynamo.Schema(TableName))
	if err != nil {
		return nil, err
	}
	e, err := NewEnvOn(db, TableName, start)
	if err != nil {
		return nil, err
	}
	e.DB, e.Latency = db, CallLatency
	db.Now = e.Clock.Now
	db.Record = e.record
	return e, nil
}

// NewEnvOn builds an Env over another client's table (an emulator's):
// the same code and workload, unmetered, and no request takes simulated
// time (so that two Envs given the same calls write the same items).
func NewEnvOn(client dynamo.Client, table string, start time.Time) (*Env, error) {
	store, err := dynamo.New(client, dynamo.Options{Table: table, CursorKey: []byte(strings.Repeat("capacity-model-cursor-key-", 2))})
	if err != nil {
		return nil, err
	}
	e := &Env{Store: store, Clock: &Clock{t: start.UTC()}, GPU: &GPU{}, Objects: &Objects{sizes: map[string]int64{}}, Queue: &Queue{}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e.Jobs = &pipeline.Lifecycle{Store: store, JobLog: store, Eraser: store, Queue: e.Queue, Objects: e.Objects, Log: log, Now: e.Clock.Now}
	e.Reconciler = &reconcile.Reconciler{Jobs: e.Jobs, Scanner: store, GPU: e.GPU, Log: log, Now: e.Clock.Now}
	return e, nil
}

func (e *Env) record(c dynamotest.Call) {
	e.Clock.Advance(e.Latency)
	if e.OnCall != nil {
		e.OnCall(c)
	}
	e.mu.Lock()
	if e.capture {
		e.calls = append(e.calls, c)
	}
	e.mu.Unlock()
}

// Capture runs fn and returns the requests it made.
func (e *Env) Capture(fn func() error) ([]dynamotest.Call, error) {
	e.mu.Lock()
	e.capture, e.calls = true, nil
	e.mu.Unlock()
	err := fn()
	e.mu.Lock()
	calls := e.calls
	e.capture, e.calls = false, nil
	e.mu.Unlock()
	return calls, err
}

// Clock is the simulated time: set to each event's time, advanced by
// CallLatency per request.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now returns the simulated time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// GPU is the GPU provider as reconciliation asks it: every run is in
// progress, with its execution time so far.
type GPU struct {
	Statuses int
}

// Status says the run is in progress.
func (g *GPU) Status(ctx context.Context, id string) (runpod.JobStatus, error) {
	g.Statuses++
	return runpod.JobStatus{ID: id, Status: runpod.StatusInProgress, ExecutionTime: 600_000, DelayTime: 2_000}, nil
}

// Cancel is refused: nothing in the workload cancels a run.
func (g *GPU) Cancel(ctx context.Context, id string) (runpod.JobStatus, error) {
	return runpod.JobStatus{}, fmt.Errorf("capacity: the workload cancels no run (asked for %s)", id)
}

// Objects is the blob store as callbacks check it: the sizes of the files
// the simulated workers uploaded.
type Objects struct {
	mu    sync.Mutex
	sizes map[string]int64
}

// Uploaded records an object the worker uploaded.
func (o *Objects) Uploaded(key string, size int64) {
	o.mu.Lock()
	o.sizes[key] = size
	o.mu.Unlock()
}

// Forget drops the objects of a finished job.
func (o *Objects) Forget(jobID string) {
	o.mu.Lock()
	for k := range o.sizes {
		if strings.Contains(k, "/"+jobID+"/") {
			delete(o.sizes, k)
		}
	}
	o.mu.Unlock()
}

// Stat returns an uploaded object's size.
func (o *Objects) Stat(ctx context.Context, key string) (pipeline.ObjectInfo, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, ok := o.sizes[key]
	if !ok {
		return pipeline.ObjectInfo{}, pipeline.Errorf(pipeline.ENotFound, "object %s not found", key)
	}
	return pipeline.ObjectInfo{Key: key, Size: n, ETag: `"etag"`}, nil
}

// Open is not used by the workload: reconciliation only sees runs in
// progress, which collect no artifacts.
func (o *Objects) Open(ctx context.Context, key string) (io.ReadCloser, pipeline.ObjectInfo, error) {
	return nil, pipeline.ObjectInfo{}, fmt.Errorf("capacity: the workload reads no object (asked for %s)", key)
}

// Queue is the jobs queue as the lifecycle sends to it: counted, never
// received (the workload claims jobs itself).
type Queue struct {
	mu   sync.Mutex
	Sent int
}

// Send counts a message.
func (q *Queue) Send(ctx context.Context, m pipeline.Message) (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.Sent++
	return fmt.Sprintf("msg-%d", q.Sent), nil
}

// Receive is not used by the workload.
func (q *Queue) Receive(ctx context.Context, max int, visibility, wait time.Duration) ([]pipeline.Delivery, error) {
	return nil, fmt.Errorf("capacity: the workload receives no message")
}

// Delete is not used by the workload.
func (q *Queue) Delete(ctx context.Context, receipt string) error {
	return fmt.Errorf("capacity: the workload deletes no message")
}

// ChangeVisibility is not used by the workload.
func (q *Queue) ChangeVisibility(ctx context.Context, receipt string, visibility time.Duration) error {
	return fmt.Errorf("capacity: the workload changes no message")
}

// DeadLetters is not used by the workload.
func (q *Queue) DeadLetters(ctx context.Context, max int) ([]pipeline.Delivery, error) {
	return nil, fmt.Errorf("capacity: the workload reads no dead letter")
}
