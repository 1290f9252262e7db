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

// startRunRecord records a run of attempt that started at sent, ending
// the job's open runs there: a re-run replaces a crashed one, a new
// attempt a superseded one (at the last word of it, when that was
// earlier).
func (j *Job) startRunRecord(attempt int, runID string, sent time.Time) {
	for i := range j.Runs {
		r := &j.Runs[i]
		if r.EndedAt == nil && !r.Final {
			end := sent
			if r.Attempt != attempt && j.HeartbeatAt != nil && j.HeartbeatAt.Before(end) && j.HeartbeatAt.After(r.StartedAt) {
				end = *j.HeartbeatAt
			}
			r.EndedAt = &end
		}
	}
	j.Runs = append(j.Runs, Run{Attempt: attempt, RunID: runID, StartedAt: sent})
	if len(j.Runs) > maxRuns {
		j.Runs = j.Runs[len(j.Runs)-maxRuns:]
	}
}

// reportRun records what the GPU provider reported at now of the current
// attempt's run: its execution and delay time, final once the run ended.
// A run the worker never said it started (its callbacks were lost) is
// recorded from the report.
func (j *Job) reportRun(r RunReport, now time.Time) {
	if r.ExecutionSeconds <= 0 && r.DelaySeconds <= 0 {
		return
	}
	exec, delay, final := r.ExecutionSeconds, r.DelaySeconds, r.State != RunPending && r.State != ""
	var run *Run
	for i := len(j.Runs) - 1; i >= 0; i-- {
		if j.Runs[i].Attempt == j.Attempt {
			run = &j.Runs[i]
			break
		}
	}
	if run == nil {
		if exec <= 0 {
			return
		}
		j.Runs = append(j.Runs, Run{Attempt: j.Attempt, StartedAt: now.Add(-time.Duration(exec * float64(time.Second)))})
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
	if len(j.Runs) == 0 && j.StartedAt != nil {
		// A job recorded before runs were: the time since its first start.
		c.BilledSeconds, c.Source = math.Max(0, math.Ceil(now.Sub(*j.StartedAt).Seconds())), BilledByWorker
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
