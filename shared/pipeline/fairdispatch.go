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
}

// FairDispatch decides, across every owner, which queued jobs may start:
// PlanDispatch over the jobs the Scanner lists. The dispatcher asks it
// before claiming a job (Admit); reconciliation and a job's end ask it to
// start the held jobs whose turn came (Release).
//
// Within one process the limits are exact: Admit plans and claims under
// one lock, so concurrent deliveries see each other's claims. Across
// processes (several dispatch functions at once on AWS) two may admit on
// the same plan, and an owner may pass its limit by the jobs admitted in
// that moment; the index the plan reads lags writes by a second at most.
// When an owner was last served is the latest start of its jobs in
// flight, or its latest claim admitted by this process, if later: an
// owner whose jobs all ended is not taken for one never served.
type FairDispatch struct {
	Jobs     *Lifecycle
	Scanner  JobKeyScanner
	Fairness Fairness

	admit  sync.Mutex // held from plan to claim
	mu     sync.Mutex
	served map[string]time.Time // owner → its last claim admitted here
}

// Plan lists every owner's queued and in-flight jobs by key and plans.
func (f *FairDispatch) Plan(ctx context.Context) (DispatchPlan, error) {
	var q []QueuedJob
	inFlight := map[string]int{}
	lastServed := map[string]time.Time{}
	err := scanKeys(ctx, f.Scanner, JobQueued, func(k JobKey) {
		q = append(q, QueuedJob{Owner: k.Owner, ID: k.ID, CreatedAt: k.CreatedAt})
	})
	if err != nil {
		return DispatchPlan{}, err
	}
	counted := map[string]bool{}
	for _, st := range InFlight {
		err := scanKeys(ctx, f.Scanner, st, func(k JobKey) {
			// A job moving on between two statuses' scans is met twice.
			if counted[k.Owner+"/"+k.ID] {
				return
			}
			counted[k.Owner+"/"+k.ID] = true
			inFlight[k.Owner]++
			if k.ServedAt != nil && k.ServedAt.After(lastServed[k.Owner]) {
				lastServed[k.Owner] = *k.ServedAt
			}
		})
		if err != nil {
			return DispatchPlan{}, err
		}
	}
	f.mu.Lock()
	for o, t := range f.served {
		if t.After(lastServed[o]) {
			lastServed[o] = t
		}
	}
	f.mu.Unlock()
	return PlanDispatch(f.Fairness, q, inFlight, lastServed), nil
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
// user to see), and Release starts it when its turn comes.
func (f *FairDispatch) Admit(ctx context.Context, owner, id string, claim func() error) (bool, error) {
	f.admit.Lock()
	defer f.admit.Unlock()
	plan, err := f.Plan(ctx)
	if err != nil {
		return false, err
	}
	for _, w := range plan.Waiting {
		if w.Owner == owner && w.ID == id {
			return false, f.hold(ctx, w)
		}
	}
	// Planned to start, or not listed as queued (the index lags a new
	// job; a job that moved on is the claim's to refuse).
	if err := claim(); err != nil {
		return true, err
	}
	f.mu.Lock()
	if f.served == nil {
		f.served = map[string]time.Time{}
	}
	f.served[owner] = f.Jobs.now()
	f.mu.Unlock()
	return true, nil
}

// hold records w on its job, if it is still queued and the record says
// otherwise.
func (f *FairDispatch) hold(ctx context.Context, w Waiting) error {
	now := f.Jobs.now()
	_, err := UpdateJob(ctx, f.Jobs.Store, w.Owner, w.ID, func(cur *Job) error {
		if cur.Status != JobQueued {
			return ErrNoChange
		}
		if c := cur.Wait; c != nil && c.Position == w.Position && c.Reason == w.Reason && c.Message == w.Message {
			return ErrNoChange
		}
		since := now
		if cur.Wait != nil {
			since = cur.Wait.Since
		}
		cur.Wait = &JobWait{Position: w.Position, Reason: w.Reason, Message: w.Message, Since: since}
		// Its message is dropped: Release sends it again when its turn comes.
		cur.Enqueued = false
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
		j, err := f.Jobs.Store.GetJob(ctx, s.Owner, s.ID)
		if ErrorCode(err) == ENotFound {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if j.Status != JobQueued || j.Wait == nil {
			continue // not held: its own message is on its way
		}
		ok, err := f.Jobs.send(ctx, j, false)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			sent++
		}
	}
	for i, w := range plan.Waiting {
		if i == refreshWaits {
			break
		}
		if err := f.hold(ctx, w); err != nil {
			errs = append(errs, err)
		}
	}
	return sent, errors.Join(errs...)
}
