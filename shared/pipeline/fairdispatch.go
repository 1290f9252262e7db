package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// JobWait is why a queued job is held back by fair dispatch, and where it
// stands: it starts when a slot frees and its turn comes.
type JobWait struct {
	Position int       `json:"position"`
	Reason   string    `json:"reason"`
	Message  string    `json:"message"`
	Since    time.Time `json:"since"`
	// Holds counts the times a dispatcher dropped the job's message to
	// hold it: a release records the job as sent only if no hold came
	// after the one it read, so a message dropped meanwhile is not taken
	// for one on its way.
	Holds int `json:"holds,omitempty"`
}

// FairDispatch decides, across every owner, which queued jobs may start:
// PlanDispatch over the jobs the Scanner lists. The dispatcher asks it
// before claiming a job (Admit); reconciliation and a job's end ask it to
// start the held jobs whose turn came (Release).
//
// The plan is a function of the stored jobs only, so every process (the
// dispatch and reconcile functions on AWS) plans alike: an owner was last
// served when the latest of its jobs in flight was claimed (served_at),
// and an owner with none in flight takes its turn by its oldest queued
// job. Within one process the limits are exact: Admit plans and claims
// under one lock, so concurrent deliveries see each other's claims.
// Across processes (several dispatch functions at once) two may admit on
// the same plan, and an owner may pass its limit by the jobs admitted in
// that moment; the index the plan reads lags writes by a second at most.
type FairDispatch struct {
	Jobs     *Lifecycle
	Scanner  JobKeyScanner
	Fairness Fairness

	admit sync.Mutex // held from plan to claim
}

// planInputs are what a plan is made of.
type planInputs struct {
	queued     []QueuedJob
	inFlight   map[string]int
	lastServed map[string]time.Time
}

// inputs lists every owner's queued and in-flight jobs by key.
func (f *FairDispatch) inputs(ctx context.Context) (planInputs, error) {
	in := planInputs{inFlight: map[string]int{}, lastServed: map[string]time.Time{}}
	err := scanKeys(ctx, f.Scanner, JobQueued, func(k JobKey) {
		in.queued = append(in.queued, QueuedJob{Owner: k.Owner, ID: k.ID, CreatedAt: k.CreatedAt})
	})
	if err != nil {
		return in, err
	}
	counted := map[string]bool{}
	for _, st := range InFlight {
		err := scanKeys(ctx, f.Scanner, st, func(k JobKey) {
			// A job moving on between two statuses' scans is met twice.
			if counted[k.Owner+"/"+k.ID] {
				return
			}
			counted[k.Owner+"/"+k.ID] = true
			in.inFlight[k.Owner]++
			if k.ServedAt != nil && k.ServedAt.After(in.lastServed[k.Owner]) {
				in.lastServed[k.Owner] = *k.ServedAt
			}
		})
		if err != nil {
			return in, err
		}
	}
	return in, nil
}

// Plan lists every owner's queued and in-flight jobs by key and plans.
func (f *FairDispatch) Plan(ctx context.Context) (DispatchPlan, error) {
	in, err := f.inputs(ctx)
	if err != nil {
		return DispatchPlan{}, err
	}
	return PlanDispatch(f.Fairness, in.queued, in.inFlight, in.lastServed), nil
}

func scanKeys(ctx context.Context, s JobKeyScanner, st JobStatus, fn func(JobKey)) error {
	cursor := ""
	for {
		page, next, err := s.ListJobKeys(ctx, st, Page{Cursor: cursor, Limit: MaxPageSize})
		if err != nil {
			return fmt.Errorf("list %s jobs: %w", st, err)
		}
		for _, k := range page {
			fn(k)
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
}

// Admit says whether the owner's queued job may be claimed now, and when
// it may, claims it with claim, under the plan's lock. When it may not,
// the job is held: its place and the reason are recorded on it (for the
// user to see), its message is dropped, and Release starts it when its
// turn comes. A job the index does not list yet (a new one: the index
// lags its write) is read and planned as it stands.
func (f *FairDispatch) Admit(ctx context.Context, owner, id string, claim func() error) (bool, error) {
	f.admit.Lock()
	defer f.admit.Unlock()
	in, err := f.inputs(ctx)
	if err != nil {
		return false, err
	}
	listed := false
	for _, q := range in.queued {
		if q.Owner == owner && q.ID == id {
			listed = true
			break
		}
	}
	if !listed {
		j, err := f.Jobs.Store.GetJob(ctx, owner, id)
		if ErrorCode(err) == ENotFound {
			return true, claim() // the claim says it is gone
		}
		if err != nil {
			return false, err
		}
		if j.Status != JobQueued {
			return true, claim() // not queued: the claim judges it
		}
		in.queued = append(in.queued, QueuedJob{Owner: owner, ID: id, CreatedAt: j.CreatedAt})
	}
	plan := PlanDispatch(f.Fairness, in.queued, in.inFlight, in.lastServed)
	for _, w := range plan.Waiting {
		if w.Owner == owner && w.ID == id {
			return false, f.hold(ctx, w, true)
		}
	}
	return true, claim()
}

// hold records w on its job, if it is still queued and the record says
// otherwise; dropped says the job's message was dropped to hold it (the
// dispatcher's hold), which is always recorded.
func (f *FairDispatch) hold(ctx context.Context, w Waiting, dropped bool) error {
	now := f.Jobs.now()
	_, err := UpdateJob(ctx, f.Jobs.Store, w.Owner, w.ID, func(cur *Job) error {
		if cur.Status != JobQueued {
			return ErrNoChange
		}
		c := cur.Wait
		if !dropped && (c == nil || c.Position == w.Position && c.Reason == w.Reason && c.Message == w.Message) {
			// A refresh of the places: only of jobs held, and only when
			// their place moved.
			return ErrNoChange
		}
		next := &JobWait{Position: w.Position, Reason: w.Reason, Message: w.Message, Since: now}
		if c != nil {
			next.Since, next.Holds = c.Since, c.Holds
		}
		if dropped {
			next.Holds++
			// Its message is dropped: Release sends it again when its
			// turn comes.
			cur.Enqueued = false
		}
		cur.Wait = next
		return nil
	})
	if errors.Is(err, ErrNoChange) || ErrorCode(err) == ENotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hold job %s: %w", w.ID, err)
	}
	return nil
}

// refreshWaits is how many waiting jobs a Release pass re-records the
// places of (each costs a read, and a write when it moved): the head of
// the line, whose places change as slots free; a job further back keeps
// the place it was given until it comes within reach.
const refreshWaits = 100

// Release sends the messages of the held jobs whose turn came, and
// re-records the places of the first waiting ones. It reports how many
// it sent.
func (f *FairDispatch) Release(ctx context.Context) (int, error) {
	plan, err := f.Plan(ctx)
	if err != nil {
		return 0, err
	}
	sent := 0
	var errs []error
	for _, s := range plan.Start {
		ok, err := f.release(ctx, s.Owner, s.ID)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			sent++
		}
	}
	for i, w := range plan.Waiting {
		if i == refreshWaits {
			break
		}
		if err := f.hold(ctx, w, false); err != nil {
			errs = append(errs, err)
		}
	}
	return sent, errors.Join(errs...)
}

// release sends a held job's message and records it as sent, unless a
// dispatcher held it again after the hold read here (then the message it
// dropped was this one, and the job stays held for the next release).
func (f *FairDispatch) release(ctx context.Context, owner, id string) (bool, error) {
	j, err := f.Jobs.Store.GetJob(ctx, owner, id)
	if ErrorCode(err) == ENotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if j.Status != JobQueued || j.Wait == nil {
		return false, nil // not held: its own message is on its way
	}
	held := j.Wait.Holds
	body := jobMessage(j)
	if _, err := f.Jobs.Queue.Send(ctx, body); err != nil {
		return false, fmt.Errorf("enqueue job %s: %w", id, err)
	}
	now := f.Jobs.now()
	_, err = UpdateJob(ctx, f.Jobs.Store, owner, id, func(cur *Job) error {
		if cur.Status != JobQueued || cur.Wait == nil || cur.Wait.Holds != held {
			return ErrNoChange
		}
		cur.Wait, cur.Enqueued, cur.EnqueuedAt = nil, true, &now
		return nil
	})
	if errors.Is(err, ErrNoChange) {
		return true, nil
	}
	if err != nil {
		return true, fmt.Errorf("record job %s as released: %w", id, err)
	}
	return true, nil
}
