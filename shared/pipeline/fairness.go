package pipeline

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultOwnerLimit is how many jobs an owner may have on GPUs at once
// when the configuration names no other limit.
const DefaultOwnerLimit = 3

// Fairness is who may start a run, and how many may run at all.
type Fairness struct {
	// OwnerLimit is the jobs an owner may have in flight at once
	// (dispatching, submitted, running, uploading, cancel_requested);
	// ≤ 0 takes DefaultOwnerLimit. OwnerLimits overrides it per owner.
	OwnerLimit  int
	OwnerLimits map[string]int
	// MaxInFlight bounds the runs in flight for every owner together:
	// the GPU endpoint's worker maximum plus a small queue allowance, so
	// that jobs wait in our queue (cancel is instant, no TTL runs) rather
	// than in the provider's. ≤ 0: no bound.
	MaxInFlight int
}

// Limit is owner's limit of jobs in flight.
func (f Fairness) Limit(owner string) int {
	if n, ok := f.OwnerLimits[owner]; ok && n > 0 {
		return n
	}
	if f.OwnerLimit > 0 {
		return f.OwnerLimit
	}
	return DefaultOwnerLimit
}

// ParseOwnerLimits reads per-owner limits written "alice=5,bob=1".
func ParseOwnerLimits(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		owner, n, ok := strings.Cut(part, "=")
		limit, err := strconv.Atoi(strings.TrimSpace(n))
		if !ok || err != nil || strings.TrimSpace(owner) == "" || limit < 1 {
			return nil, fmt.Errorf("owner limit %q: want owner=N with N ≥ 1", part)
		}
		out[strings.TrimSpace(owner)] = limit
	}
	return out, nil
}

// FairnessFromEnv reads fair dispatch's settings: BRIGHTRUN_OWNER_LIMIT
// (each owner's jobs on GPUs at once, default DefaultOwnerLimit),
// BRIGHTRUN_OWNER_LIMITS (per-owner overrides, "alice=5,bob=1") and
// BRIGHTRUN_MAX_IN_FLIGHT (the runs of every owner together: the GPU
// endpoint's worker maximum plus a small queue allowance; unset or 0: no
// bound). BRIGHTRUN_FAIR_DISPATCH=off turns fair dispatch off (nil).
func FairnessFromEnv(getenv func(string) string) (*Fairness, error) {
	if getenv("BRIGHTRUN_FAIR_DISPATCH") == "off" {
		return nil, nil
	}
	f := &Fairness{}
	for _, v := range []struct {
		name string
		into *int
	}{{"BRIGHTRUN_OWNER_LIMIT", &f.OwnerLimit}, {"BRIGHTRUN_MAX_IN_FLIGHT", &f.MaxInFlight}} {
		if s := strings.TrimSpace(getenv(v.name)); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("%s must be a whole number ≥ 0, got %q", v.name, s)
			}
			*v.into = n
		}
	}
	limits, err := ParseOwnerLimits(getenv("BRIGHTRUN_OWNER_LIMITS"))
	if err != nil {
		return nil, fmt.Errorf("BRIGHTRUN_OWNER_LIMITS: %w", err)
	}
	f.OwnerLimits = limits
	return f, nil
}

// InFlight are the statuses of a job that holds (or is about to hold) a
// GPU run.
var InFlight = []JobStatus{JobDispatching, JobSubmitted, JobRunning, JobUploading, JobCancelRequested}

// Why a queued job waits.
const (
	WaitOwnerLimit = "owner_limit" // the owner has its limit of jobs in flight
	WaitCapacity   = "capacity"    // every GPU slot is taken
	WaitFairShare  = "fair_share"  // other owners' jobs go first
)

// QueuedJob is a queued job as the dispatch plan sees it.
type QueuedJob struct {
	Owner     string
	ID        string
	CreatedAt time.Time
}

// Waiting is a queued job that stays queued: its place in the order jobs
// start as slots free (1 is next) and why it waits.
type Waiting struct {
	QueuedJob
	Position int
	Reason   string
	Message  string
}

// DispatchPlan is which queued jobs start now, in order, and where the
// others stand.
type DispatchPlan struct {
	Start   []QueuedJob
	Waiting []Waiting
}

// PlanDispatch orders the queued jobs fairly: owners take turns, the one
// served least recently first (an owner never served before comes first,
// then by its oldest queued job), each owner's jobs oldest first; an owner
// at its limit is skipped until one of its jobs ends, and no more start
// than the free slots. inFlight counts each owner's jobs in flight;
// lastServed is when each owner's last job started.
func PlanDispatch(f Fairness, queued []QueuedJob, inFlight map[string]int, lastServed map[string]time.Time) DispatchPlan {
	byOwner := map[string][]QueuedJob{}
	for _, q := range queued {
		byOwner[q.Owner] = append(byOwner[q.Owner], q)
	}
	owners := make([]string, 0, len(byOwner))
	for o, jobs := range byOwner {
		slices.SortStableFunc(jobs, func(a, b QueuedJob) int {
			if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
				return c
			}
			return strings.Compare(a.ID, b.ID)
		})
		owners = append(owners, o)
	}
	// The turn order: least recently served first.
	slices.SortFunc(owners, func(a, b string) int {
		if c := lastServed[a].Compare(lastServed[b]); c != 0 {
			return c
		}
		if c := byOwner[a][0].CreatedAt.Compare(byOwner[b][0].CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	total := 0
	running := map[string]int{}
	for o, n := range inFlight {
		running[o] = n
		total += n
	}
	free := -1 // unbounded
	if f.MaxInFlight > 0 {
		free = max(f.MaxInFlight-total, 0)
	}
	var plan DispatchPlan
	// Turns: each pass gives every owner with a queued job one place;
	// starting stops at the limits, placing goes on.
	next := map[string]int{}
	position := 0
	for placed := true; placed; {
		placed = false
		for _, o := range owners {
			jobs := byOwner[o]
			if next[o] >= len(jobs) {
				continue
			}
			q := jobs[next[o]]
			next[o]++
			placed = true
			limit := f.Limit(o)
			if free != 0 && running[o] < limit {
				plan.Start = append(plan.Start, q)
				running[o]++
				if free > 0 {
					free--
				}
				continue
			}
			position++
			w := Waiting{QueuedJob: q, Position: position}
			switch {
			case running[o] >= limit:
				w.Reason = WaitOwnerLimit
				w.Message = fmt.Sprintf("waits for one of your %d jobs on GPUs to end (your limit is %d at once)", running[o], limit)
			case f.MaxInFlight > 0:
				w.Reason = WaitCapacity
				w.Message = fmt.Sprintf("waits for a free GPU: all %d are taken; %d jobs go before it", f.MaxInFlight, position-1)
			default:
				w.Reason = WaitFairShare
				w.Message = fmt.Sprintf("waits for its turn: %d jobs of other users go before it", position-1)
			}
			plan.Waiting = append(plan.Waiting, w)
		}
	}
	return plan
}
