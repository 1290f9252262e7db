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
	Scanner  JobScanner
	Fairness Fairness

	admit  sync.Mutex // held from plan to claim
	mu     sync.Mutex
	served map[string]time.Time // owner → its last claim admitted here
}

// Plan lists every owner's queued and in-flight jobs and plans.
func (f *FairDispatch) Plan(ctx context.Context) (DispatchPlan, map[string]*Job, error) {
	queued := map[string]*Job{}
	var q []QueuedJob
	inFlight := map[string]int{}
	lastServed := map[string]time.Time{}
	err := scanAll(ctx, f.Scanner, JobQueued, func(j *Job) {
		queued[j.Owner+"/"+j.ID] = j
		q = append(q, QueuedJob{Owner: j.Owner, ID: j.ID, CreatedAt: j.CreatedAt})
	})
	if err != nil {
		return DispatchPlan{}, nil, err
	}
	for _, st := range InFlight {
		err := scanAll(ctx, f.Scanner, st, func(j *Job) {
			inFlight[j.Owner]++
			if served := j.servedAt(); served.After(lastServed[j.Owner]) {
				lastServed[j.Owner] = served
			}
		})
		if err != nil {
			return DispatchPlan{}, nil, err
		}
	}
	f.mu.Lock()
	for o, t := range f.served {
		if t.After(lastServed[o]) {
			lastServed[o] = t
		}
	}
	f.mu.Unlock()
	return PlanDispatch(f.Fairness, q, inFlight, lastServed), queued, nil
}

// servedAt is when the job was given its slot: its claim, as near as the
// record says.
func (j *Job) servedAt() time.Time {
	if j.StartedAt != nil {
		return *j.StartedAt
	}
	return j.UpdatedAt
}

func scanAll(ctx context.Context, s JobScanner, st JobStatus, fn func(*Job)) error {
	cursor := ""
	for {
		page, next, err := s.ListJobsByStatus(ctx, st, Page{Cursor: cursor, Limit: MaxPageSize})
		if err != nil {
			return fmt.Errorf("list %s jobs: %w", st, err)
		}
		for _, j := range page {
			if j.Status == st { // the index may lag a change
				fn(j)
			}
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
	plan, _, err := f.Plan(ctx)
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

// Release sends the messages of the held jobs whose turn came, and
// records the places of those that still wait. It reports how many it
// sent.
func (f *FairDispatch) Release(ctx context.Context) (int, error) {
	plan, queued, err := f.Plan(ctx)
	if err != nil {
		return 0, err
	}
	sent := 0
	var errs []error
	for _, s := range plan.Start {
		j := queued[s.Owner+"/"+s.ID]
		if j == nil || j.Wait == nil {
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
	for _, w := range plan.Waiting {
		if j := queued[w.Owner+"/"+w.ID]; j != nil && j.Wait != nil {
			if err := f.hold(ctx, w); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return sent, errors.Join(errs...)
}
