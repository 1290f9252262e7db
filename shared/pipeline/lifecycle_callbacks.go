package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
)

// ApplyCallback applies one verified worker callback to the owner's job
// and records it in the job's event log. cb and p are the parsed body,
// webhookID its webhook-id header and body its bytes. A callback of
// another attempt than the job's fails with EConflict (the worker must
// stop); of a job that does not exist, with ENotFound.
//
// Applying is idempotent and order-free within a run: the status only
// moves forward, the stage only moves on, the progress is the point of
// the highest step, artifacts are kept by name, a run's started callback
// is recognised when it comes again, and the end is written once, with
// its notification. A callback that changes nothing (a repeat, a late
// one) writes nothing, so any interleaving and repetition of a run's
// callbacks leaves the job as the callbacks once, in order, would. A
// retry of a message whose first delivery failed half-way is applied
// again, never lost.
func (l *Lifecycle) ApplyCallback(ctx context.Context, owner string, cb *contract.Callback, p contract.Payload, webhookID string, body []byte) (*Job, error) {
	j, err := l.Store.GetJob(ctx, owner, cb.JobID)
	if err != nil {
		return nil, err
	}
	if cb.Attempt != j.Attempt {
		return j, superseded(cb.Attempt, j)
	}
	// Apply, then record.
	if j, err = l.applyCallback(ctx, j, cb, p, body); err != nil {
		return nil, err
	}
	// The event log keeps each message once: the key is the webhook-id and
	// the body's hash, because a worker that RunPod re-runs after a crash
	// keeps the attempt and starts its seq again, so its messages reuse the
	// crashed run's webhook-ids with other bodies (sent_at differs).
	// Progress is kept as metric points, not as events: the event log holds
	// what changes a job (start, stages, artifacts, the end).
	if cb.Type != contract.TypeProgress {
		sum := sha256.Sum256(body)
		l.appendEvent(ctx, &Event{ID: "cb:" + webhookID + ":" + hex.EncodeToString(sum[:8]), Owner: owner, JobID: j.ID, Attempt: cb.Attempt,
			Type: string(cb.Type), Data: cb.Data, Time: l.now()})
	}
	return j, nil
}

// superseded is the refusal of a callback of attempt, which j moved on from.
func superseded(attempt int, j *Job) error {
	return &Error{Code: EConflict, Message: fmt.Sprintf("attempt %d of job %s was superseded by attempt %d: stop", attempt, j.ID, j.Attempt),
		Details: map[string]int{"attempt": j.Attempt}}
}

// applyCallback changes the job as the callback says.
func (l *Lifecycle) applyCallback(ctx context.Context, j *Job, cb *contract.Callback, p contract.Payload, body []byte) (*Job, error) {
	now := l.now()
	switch p := p.(type) {
	case *contract.Started:
		key := runKey(body)
		return l.record(ctx, j, cb, func(cur *Job) JobStatus {
			startRun(cur, key, cb.SentAt, now)
			return JobRunning
		})
	case *contract.StageChange:
		return l.record(ctx, j, cb, func(cur *Job) JobStatus {
			if cur.Status.Terminal() || olderRun(cur, cb) {
				return ""
			}
			if stageRank(contract.Stage(cur.Stage)) < stageRank(p.Stage) {
				cur.Stage = string(p.Stage)
			}
			if p.Stage == contract.StageUpload {
				return JobUploading
			}
			return JobRunning
		})
	case *contract.Progress:
		pt := MetricPoint{Attempt: cb.Attempt, Step: int(p.Step), TotalSteps: int(p.TotalSteps), Epoch: p.Epoch, Loss: p.Loss,
			LearningRate: p.LearningRate, TokensPerSecond: p.TokensPerSecond, GPUMemoryBytes: p.GPUMemoryBytes, EvalLoss: p.EvalLoss, ETASeconds: p.ETASeconds, Time: cb.SentAt}
		if l.JobLog != nil {
			if err := l.JobLog.PutMetrics(ctx, j.Owner, j.ID, []MetricPoint{pt}); err != nil {
				return nil, fmt.Errorf("store metric point: %w", err)
			}
		}
		apply := func(cur *Job) JobStatus {
			if olderRun(cur, cb) {
				return ""
			}
			// Out of order: an older step never replaces a newer one.
			if c := cur.Progress; c == nil || c.Attempt != pt.Attempt || pt.Newer(*c) {
				p := pt
				cur.Progress = &p
			}
			return JobRunning
		}
		// A point of a running job is live state, written apart from the
		// job where the store keeps it so (one small item, no index).
		if lr, ok := l.Store.(LiveRecorder); ok {
			if done, ok, err := l.recordProgress(ctx, lr, j, cb, pt, apply); ok {
				return done, err
			}
		}
		return l.record(ctx, j, cb, apply)
	case *contract.Artifact:
		key := ArtifactKey(j.Owner, j.ID, cb.Attempt, p.Name)
		info, err := l.Objects.Stat(ctx, key)
		if err != nil {
			return nil, Errorf(EInvalid, "artifact %s was not uploaded: %v", p.Name, err)
		}
		if info.Size != p.SizeBytes {
			return nil, Errorf(EInvalid, "artifact %s is %d bytes in storage, the callback says %d", p.Name, info.Size, p.SizeBytes)
		}
		return l.record(ctx, j, cb, func(cur *Job) JobStatus {
			cur.addArtifact(Artifact{Name: p.Name, Key: key, SizeBytes: p.SizeBytes, SHA256: p.SHA256})
			return JobUploading
		})
	case *contract.Checkpoint:
		return l.applyCheckpoint(ctx, j, cb, p)
	case *contract.Completed:
		// What the run measured is stored first, keyed by the job: a
		// retry of this callback stores it again, never twice, and the
		// run's figures hold whatever state the job is in. Only a run on
		// a GPU is recorded: the local worker's tiny model on the CPU and
		// the RunPod emulator's simulated worker say nothing of one. A
		// record the store refuses (a job without a model or GPU) is
		// logged, not returned: it must not keep the job from completing.
		if p.Metrics.Device == "cuda" && l.JobLog != nil {
			if err := l.JobLog.PutMeasurement(ctx, measurement(j, p, now)); ErrorCode(err) == EInvalid {
				l.log().WarnContext(ctx, "measurement not stored", "job_id", j.ID, "err", err)
			} else if err != nil {
				return nil, fmt.Errorf("store measurement: %w", err)
			}
		}
		steps := p.Steps
		return l.finishByWorker(ctx, j, Outcome{Status: JobCompleted, Steps: &steps, FinalLoss: p.FinalLoss})
	case *contract.Failed:
		if p.Code == contract.CodeCancelled {
			// The worker stopped because it was told to: the cancel is done.
			return l.finishByWorker(ctx, j, Outcome{Status: JobCancelled})
		}
		return l.finishByWorker(ctx, j, Outcome{Status: JobFailed, Error: &JobError{Code: string(p.Code), Message: p.Message, Advice: p.Advice}})
	}
	return j, nil
}

// finishByWorker ends j as its worker reports; a job that ended already
// is left as it is.
func (l *Lifecycle) finishByWorker(ctx context.Context, j *Job, o Outcome) (*Job, error) {
	o.Heartbeat = true
	done, ended, err := l.Finish(ctx, j, o)
	if err != nil {
		return nil, err
	}
	if !ended && done.Attempt != j.Attempt {
		return done, superseded(j.Attempt, done)
	}
	return done, nil
}

// record applies a callback of a running attempt to the job with one
// conditional write: apply changes the job in memory and names the status
// the callback moves it to ("" for none), taken only where the state
// machine allows and forward. When the job is unchanged nothing is
// written: a repeat or a late callback is acknowledged, and leaves even
// the heartbeat alone. The first try starts from j as the caller read it
// (a write conditional on its version), so a callback that changes the
// job reads it once unless another writer came first.
func (l *Lifecycle) record(ctx context.Context, j *Job, cb *contract.Callback, apply func(cur *Job) JobStatus) (*Job, error) {
	for try := 0; try < maxUpdateTries; try++ {
		cur := j
		if try > 0 {
			var err error
			if cur, err = l.Store.GetJob(ctx, j.Owner, j.ID); err != nil {
				return nil, err
			}
		}
		if cur.Attempt != cb.Attempt {
			return cur, superseded(cb.Attempt, cur)
		}
		before, err := json.Marshal(cur)
		if err != nil {
			return nil, fmt.Errorf("encode job %s: %w", j.ID, err)
		}
		if try == 0 {
			// The caller's job stays as read: apply changes a copy of it,
			// decoded from the encoding the comparison needs anyway.
			cur = &Job{}
			if err := json.Unmarshal(before, cur); err != nil {
				return nil, fmt.Errorf("copy job %s: %w", j.ID, err)
			}
		}
		from := cur.Status
		if to := apply(cur); to != "" && forward[to] > forward[cur.Status] && CanTransition(cur.Status, to) {
			cur.Status = to
		}
		// Any word of a run bills it, its started callback lost or late.
		cur.openRun(cb.Attempt, cb.SentAt)
		if cur.Status.Terminal() && cur.FinishedAt != nil && cur.Cost != nil {
			cur.recost(*cur.FinishedAt)
		}
		after, err := json.Marshal(cur)
		if err != nil {
			return nil, fmt.Errorf("encode job %s: %w", j.ID, err)
		}
		if bytes.Equal(before, after) {
			if try == 0 {
				// Judged against the caller's read, which may be stale
				// (a new run reset the progress, a cancel came): judge
				// again against the stored job before leaving it alone.
				continue
			}
			return cur, nil
		}
		now := l.now()
		cur.HeartbeatAt, cur.UpdatedAt = &now, now
		err = l.Store.UpdateJob(ctx, cur)
		if ErrorCode(err) == EConflict {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("update job %s: %w", j.ID, err)
		}
		if cur.Status == JobRunning && forward[from] < forward[JobRunning] {
			l.publish(ctx, EventJobRunning, cur)
		}
		return cur, nil
	}
	return nil, Errorf(EUnavailable, "job %s is being changed by too many writers: try again", j.ID)
}

// runKey names a run by its started callback's body.
func runKey(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:12])
}

// startRun applies a started callback of the run named key, sent at sent.
// The first run heard of keeps what its other callbacks, come early,
// recorded; a repeat of the current run's changes nothing; a run started
// after the current one (RunPod re-ran a crashed worker) starts its
// progress and stage from the beginning; a late started callback of an
// earlier run is only noted.
func startRun(j *Job, key string, sent, now time.Time) {
	if j.StartedAt == nil {
		j.StartedAt = &now
	}
	switch {
	case j.RunKey == key:
	case j.RunKey == "":
		j.RunKey, j.RunStartedAt = key, &sent
		j.startRunRecord(j.Attempt, key, j.RunPodID, sent)
	case j.RunStartedAt != nil && sent.Before(*j.RunStartedAt):
	default:
		j.RunKey, j.RunStartedAt = key, &sent
		j.startRunRecord(j.Attempt, key, j.RunPodID, sent)
		if !j.Status.Terminal() {
			j.Progress, j.Stage = nil, ""
		}
	}
	if j.Status.Terminal() && j.FinishedAt != nil && j.Cost != nil {
		// The end came first: bill the run that started before it.
		j.recost(*j.FinishedAt)
	}
}

// olderRun reports whether cb was sent before the job's current run
// started: it belongs to a run that RunPod replaced.
func olderRun(j *Job, cb *contract.Callback) bool {
	return j.RunStartedAt != nil && cb.SentAt.Before(*j.RunStartedAt)
}

// stageRank is s's place in the stages' order (0 for none).
func stageRank(s contract.Stage) int {
	for i, v := range contract.Stages {
		if v == s {
			return i + 1
		}
	}
	return 0
}

// addArtifact records a, replacing a file of the same name; the files are
// kept in name order, whatever order their callbacks came in.
func (j *Job) addArtifact(a Artifact) {
	i, found := slices.BinarySearchFunc(j.Artifacts, a.Name, func(x Artifact, name string) int { return strings.Compare(x.Name, name) })
	if found {
		j.Artifacts[i] = a
		return
	}
	j.Artifacts = slices.Insert(j.Artifacts, i, a)
}

// measurement is what a completed run measured of its model on its GPU.
// A worker that predates the token budget sends no micro-batch figures:
// the record keeps its load time, and calibration skips its training.
func measurement(j *Job, p *contract.Completed, now time.Time) *Measurement {
	m := p.Metrics
	out := &Measurement{
		JobID: j.ID, Owner: j.Owner, Model: j.BaseModel, GPU: j.GPUType, Quantization: m.Quantization,
		JobCreatedAt: j.CreatedAt, MicroBatches: m.MicroBatches, PaddedTokens: m.PaddedTokensSeen,
		TrainSeconds: p.TrainSeconds, SecondsPerMicroBatch: m.SecondsPerMicroBatch, TokensPerSecond: m.TokensPerSecond,
		LoadSeconds: m.LoadSeconds, RecordedAt: now,
	}
	// The worker's training time includes its evaluations; the estimate
	// times those apart, so calibration learns from the training passes.
	if m.EvalSeconds > 0 && m.EvalSeconds < p.TrainSeconds {
		out.TrainSeconds, out.EvalSeconds = p.TrainSeconds-m.EvalSeconds, m.EvalSeconds
	}
	if j.Estimate != nil {
		out.MicroBatchTokens = j.Estimate.MicroBatchTokens
	}
	return out
}
