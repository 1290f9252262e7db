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
	Attempt  int         `json:"attempt"`
	Progress MetricPoint `json:"progress"`
	HeardAt  time.Time   `json:"heard_at"`
}

// LiveRecorder is a store that keeps a job's live state apart from its
// record. RecordLive stores l unless the stored live state is of a later
// attempt or holds a newer point of the same attempt (a later step, or
// the same step sent later): progress never goes back, whatever order the
// callbacks come in. It does not change the job's version: a transition
// written meanwhile still succeeds, and the job as read keeps the newer
// point. A job that does not exist is no error (its live state is
// deleted with its log).
type LiveRecorder interface {
	RecordLive(ctx context.Context, owner, jobID string, l Live) error
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
// when later. Live state of an earlier attempt, or of a run that RunPod
// replaced (sent before the current run started), is ignored.
func (j *Job) MergeLive(l *Live) {
	if l == nil || l.Attempt != j.Attempt || j.RunStartedAt != nil && l.Progress.Time.Before(*j.RunStartedAt) {
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
	if olderRun(j, cb) {
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
	if err := lr.RecordLive(ctx, j.Owner, j.ID, Live{Attempt: cb.Attempt, Progress: pt, HeardAt: now}); err != nil {
		return nil, true, fmt.Errorf("record the progress of job %s: %w", j.ID, err)
	}
	probe.Progress = progressed
	probe.HeartbeatAt = &now
	return probe, true, nil
}
