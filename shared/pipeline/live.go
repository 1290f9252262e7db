package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
)

// Live is what a running job's progress callbacks change: its latest
// metric point and when its worker was last heard of. A store that keeps
// it apart from the job record (LiveRecorder) writes a few hundred bytes
// per callback instead of the whole job and the indexes that hold it; the
// job as read (GetJob, the lists) has it merged in (Job.MergeLive).
type Live struct {
	Attempt int `json:"attempt"`
	// Run names the attempt's run whose point this is (Job.RunKey; ""
	// before its started callback): a run RunPod starts again after a
	// crash counts its steps from the beginning, and its points replace
	// the crashed run's whatever their steps.
	Run      string      `json:"run,omitempty"`
	Progress MetricPoint `json:"progress"`
	HeardAt  time.Time   `json:"heard_at"`
}

// Replaces reports whether l, written for its job's current run, replaces
// the stored m: a later attempt, another run of the attempt (the writer
// read the job's current run; a writer that read it just before a re-run
// began writes once more what the merge then ignores, until the re-run's
// next point), or a newer point of the same run.
func (l Live) Replaces(m Live) bool {
	if l.Attempt != m.Attempt {
		return l.Attempt > m.Attempt
	}
	if l.Run != m.Run {
		return true
	}
	return l.Progress.Newer(m.Progress)
}

// LiveRecorder is a store that keeps a job's live state apart from its
// record. RecordLive stores l when it replaces the stored live state
// (Live.Replaces: a later attempt, another run, or a newer point of the
// same run): progress never goes back, whatever order the callbacks come
// in. It does not change the job's version: a transition
// written meanwhile still succeeds, and the job as read keeps the newer
// point. A job that does not exist is no error (its live state is
// deleted with its log).
type LiveRecorder interface {
	RecordLive(ctx context.Context, owner, jobID string, l Live) error
}

// MayBeLive reports whether a job in status st may have live state newer
// than its record: only a running job's progress is written apart (a
// point that moves a job to running goes through the record), and it
// stays newer while the job uploads or is being cancelled.
func MayBeLive(st JobStatus) bool {
	return st == JobRunning || st == JobUploading || st == JobCancelRequested
}

// Newer reports whether p is a later point of the same attempt than q: a
// later step, or the same step sent later.
func (p MetricPoint) Newer(q MetricPoint) bool {
	if p.Attempt != q.Attempt {
		return p.Attempt > q.Attempt
	}
	return p.Step > q.Step || p.Step == q.Step && p.Time.After(q.Time)
}

// MergeLive takes into j the live state a store keeps apart: its point
// when it is newer than j's and of j's current run, and its heartbeat
// when later. Live state of another attempt or another run is ignored.
func (j *Job) MergeLive(l *Live) {
	if l == nil || l.Attempt != j.Attempt || l.Run != j.RunKey {
		return
	}
	if c := j.Progress; c == nil || c.Attempt != l.Progress.Attempt || l.Progress.Newer(*c) {
		p := l.Progress
		j.Progress = &p
	}
	if j.HeartbeatAt == nil || l.HeardAt.After(*j.HeartbeatAt) {
		h := l.HeardAt
		j.HeartbeatAt = &h
	}
}

// recordProgress applies a progress callback as live state when that is
// all it changes: the job is running its current run, the run is open,
// and the point moves nothing but the progress and the heartbeat. It
// reports false when the callback must go through record (a first word of
// a run, a status to move, an older run's point).
func (l *Lifecycle) recordProgress(ctx context.Context, lr LiveRecorder, j *Job, cb *contract.Callback, pt MetricPoint, apply func(cur *Job) JobStatus) (*Job, bool, error) {
	if olderRun(j, cb) || !MayBeLive(j.Status) {
		// An older run's point is judged by record; so is a point for a
		// job not running (one that moves it there, a late one after its
		// end, which the in-order history would have on the record).
		return nil, false, nil
	}
	before, err := json.Marshal(j)
	if err != nil {
		return nil, false, fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	probe := &Job{}
	if err := json.Unmarshal(before, probe); err != nil {
		return nil, false, fmt.Errorf("copy job %s: %w", j.ID, err)
	}
	if to := apply(probe); to != "" && forward[to] > forward[probe.Status] && CanTransition(probe.Status, to) {
		return nil, false, nil
	}
	probe.openRun(cb.Attempt, cb.SentAt)
	progressed := probe.Progress
	probe.Progress = j.Progress
	after, err := json.Marshal(probe)
	if err != nil {
		return nil, false, fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	if string(before) != string(after) {
		return nil, false, nil
	}
	now := l.now()
	if err := lr.RecordLive(ctx, j.Owner, j.ID, Live{Attempt: cb.Attempt, Run: j.RunKey, Progress: pt, HeardAt: now}); err != nil {
		return nil, true, fmt.Errorf("record the progress of job %s: %w", j.ID, err)
	}
	probe.Progress = progressed
	probe.HeartbeatAt = &now
	return probe, true, nil
}
