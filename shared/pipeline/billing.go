package pipeline

import (
	"math"
	"time"
)

// Run is one run of a job on a GPU worker: an attempt's run, or a re-run
// RunPod made of a crashed worker within the same attempt. A job's runs
// are what it is billed for.
type Run struct {
	Attempt int    `json:"attempt"`
	RunID   string `json:"run_id,omitempty"` // the GPU provider's job id
	// Key names the run by its worker's started callback (runKey); ""
	// until that callback came (the run was opened by another callback
	// or a report of the provider): the started callback adopts it.
	Key string `json:"key,omitempty"`
	// Retries is the provider's count of re-runs when this run was
	// reported: a report with more is of a later run.
	Retries int `json:"retries,omitempty"`
	// StartedAt is when the worker said it started; EndedAt when the run
	// was last known to end (a later run replaced it, or the job ended).
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	// ExecutionSeconds and DelaySeconds are the GPU provider's figures
	// (RunPod's executionTime and delayTime) for the run, as it last
	// reported them at ReportedAt: the execution time is what it bills.
	// Final: reported once the run had ended, so they are the last word.
	ExecutionSeconds *float64   `json:"execution_seconds,omitempty"`
	DelaySeconds     *float64   `json:"delay_seconds,omitempty"`
	ReportedAt       *time.Time `json:"reported_at,omitempty"`
	Final            bool       `json:"final,omitempty"`
}

// maxRuns bounds a job's run records: a crash loop is failed long before.
const maxRuns = 32

// Billed is r's billed time at now in whole seconds, and whether it is
// the provider's final figure. A run the provider reported as ended is
// billed its execution time; one it reported while it ran, that time plus
// the time since, to the run's end (or now); one it never reported, the
// time from the worker's start.
func (r Run) Billed(now time.Time) (seconds float64, final bool) {
	end := now
	if r.EndedAt != nil {
		end = *r.EndedAt
	}
	s := end.Sub(r.StartedAt).Seconds()
	if r.ExecutionSeconds != nil {
		s = *r.ExecutionSeconds
		if !r.Final && r.ReportedAt != nil && end.After(*r.ReportedAt) {
			s += end.Sub(*r.ReportedAt).Seconds()
		}
	}
	return math.Max(0, math.Ceil(s-1e-9)), r.Final
}

// startRunRecord records the run of attempt named key whose worker said
// at sent that it started. A run of the attempt opened before its started
// callback came (by another callback, or by a report of the provider) is
// that run: it is adopted. Otherwise the job's open runs end (a re-run
// replaces a crashed run, a new attempt a superseded one) at the last
// word heard of them, and the run is added.
func (j *Job) startRunRecord(attempt int, key, runID string, sent time.Time) {
	if r := j.lastRun(attempt); r != nil && r.Key == "" && (r.EndedAt == nil || !r.EndedAt.Before(sent)) {
		r.Key = key
		if sent.Before(r.StartedAt) {
			r.StartedAt = sent
		}
		if r.RunID == "" {
			r.RunID = runID
		}
		return
	}
	j.endOpenRuns(sent)
	j.Runs = append(j.Runs, Run{Attempt: attempt, Key: key, RunID: runID, StartedAt: sent})
	if len(j.Runs) > maxRuns {
		j.Runs = j.Runs[len(j.Runs)-maxRuns:]
	}
}

// openRun opens a run for attempt from a callback sent at sent when the
// attempt has none (its started callback was lost or is late): the time
// it bills starts at the first word of it.
func (j *Job) openRun(attempt int, sent time.Time) {
	if r := j.lastRun(attempt); r != nil {
		if r.Key == "" && r.EndedAt == nil && sent.Before(r.StartedAt) {
			r.StartedAt = sent
		}
		return
	}
	j.endOpenRuns(sent)
	j.Runs = append(j.Runs, Run{Attempt: attempt, RunID: j.RunPodID, StartedAt: sent})
}

// endOpenRuns ends the job's open runs at the last word heard of them (the
// job's heartbeat, when it came after their start) or at t.
func (j *Job) endOpenRuns(t time.Time) {
	for i := range j.Runs {
		r := &j.Runs[i]
		if r.EndedAt != nil || r.Final {
			continue
		}
		end := t
		if j.HeartbeatAt != nil && j.HeartbeatAt.Before(end) && j.HeartbeatAt.After(r.StartedAt) {
			end = *j.HeartbeatAt
		}
		if r.ReportedAt != nil && r.ReportedAt.After(end) && r.ReportedAt.Before(t) {
			end = *r.ReportedAt
		}
		r.EndedAt = &end
	}
}

// lastRun is the attempt's latest run, or nil.
func (j *Job) lastRun(attempt int) *Run {
	for i := len(j.Runs) - 1; i >= 0; i-- {
		if j.Runs[i].Attempt == attempt {
			return &j.Runs[i]
		}
	}
	return nil
}

// reportRun records what the GPU provider reported at now of the current
// attempt's run: its execution and delay time, final once the run ended.
// A run the worker never said it started (its callbacks were lost) is
// recorded from the report.
func (j *Job) reportRun(r RunReport, now time.Time) {
	run := j.lastRun(j.Attempt)
	if r.Queued {
		// No worker runs the attempt: it waits for one, or RunPod re-queued
		// a crashed worker's run. An open run ended with its last word.
		if run != nil && run.EndedAt == nil && !run.Final {
			j.endOpenRuns(now)
		}
		return
	}
	if r.ExecutionSeconds <= 0 && r.DelaySeconds <= 0 {
		return
	}
	exec, delay, final := r.ExecutionSeconds, r.DelaySeconds, r.State != RunPending && r.State != ""
	started := now.Add(-time.Duration(exec * float64(time.Second)))
	if run != nil && r.Retries > run.Retries && !run.Final {
		// RunPod re-ran a crashed worker: the report is of the new run,
		// which started exec ago; the crashed one ended before it.
		if run.Key == "" && run.ReportedAt == nil {
			run.Retries = r.Retries // opened by a callback of this very run
		} else {
			j.endOpenRuns(started)
			run = nil
		}
	}
	if run == nil {
		if exec <= 0 {
			return
		}
		j.Runs = append(j.Runs, Run{Attempt: j.Attempt, StartedAt: started, Retries: r.Retries})
		run = &j.Runs[len(j.Runs)-1]
	}
	if run.RunID == "" {
		run.RunID = j.RunPodID
	}
	if exec > 0 {
		run.ExecutionSeconds = &exec
	}
	if delay > 0 {
		run.DelaySeconds = &delay
	}
	run.ReportedAt, run.Final = &now, final
}

// endRuns ends the job's open runs at now (the job ended).
func (j *Job) endRuns(now time.Time) {
	for i := range j.Runs {
		if j.Runs[i].EndedAt == nil {
			t := now
			j.Runs[i].EndedAt = &t
		}
	}
}

// Billing sources of a JobCost.
const (
	BilledByProvider = "runpod"    // every run's execution time as RunPod reported it
	BilledByWorker   = "callbacks" // some runs' time from the worker's callbacks, until RunPod reports it
)

// Cost is j's cost at now: the billed seconds of all its runs, every
// attempt included, at the estimate's price. While the job runs it is the
// cost so far.
func Cost(j *Job, now time.Time) *JobCost {
	c := &JobCost{Source: BilledByProvider}
	if j.Estimate != nil {
		c.PriceUSDPerSecond = j.Estimate.PriceUSDPerSecond
		c.EstimatedUSD = j.Estimate.CostUSD.Expected
	}
	for _, r := range j.Runs {
		s, final := r.Billed(now)
		c.BilledSeconds += s
		if !final {
			c.Source = BilledByWorker
		}
		if r.DelaySeconds != nil {
			c.DelaySeconds += math.Ceil(*r.DelaySeconds)
		}
	}
	switch {
	case len(j.Runs) == 0 && j.StartedAt != nil:
		// A job recorded before runs were: the time since its first start.
		c.BilledSeconds, c.Source = math.Max(0, math.Ceil(now.Sub(*j.StartedAt).Seconds())), BilledByWorker
	case len(j.Runs) == 0 && j.RunPodID != "":
		// Submitted, and nothing heard of a run yet: not RunPod's word.
		c.Source = BilledByWorker
	}
	c.Runs = len(j.Runs)
	c.USD = math.Round(c.BilledSeconds*c.PriceUSDPerSecond*100) / 100
	return c
}

// recost computes the cost of an ended job at its end, compared with the
// estimate when it completed: when it ends, and again when a late word of
// its runs (a started callback, RunPod's final figures) comes after.
func (j *Job) recost(end time.Time) {
	j.endRuns(end)
	c := Cost(j, end)
	if j.Status == JobCompleted {
		c.CompareWithEstimate(j, end)
	}
	j.Cost = c
}

// Spent is j's cost so far, as Cost counts it, unrounded.
func Spent(j *Job, now time.Time) float64 {
	c := Cost(j, now)
	return c.BilledSeconds * c.PriceUSDPerSecond
}

// CostSoFar is the cost of a job that runs, for showing; nil for a job
// that ended (its Cost says it) or that no worker started yet.
func CostSoFar(j *Job, now time.Time) *JobCost {
	if j.Status.Terminal() || len(j.Runs) == 0 && j.StartedAt == nil {
		return nil
	}
	return Cost(j, now)
}
