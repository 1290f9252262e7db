package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
)

// ApplyCallback applies one verified worker callback to the owner's job
// and records it in the job's event log. cb and p are the parsed body,
// webhookID its webhook-id header and body its bytes. A callback of
// another attempt than the job's fails with EConflict (the worker must
// stop); of a job that does not exist, with ENotFound.
//
// Moves only go forward, metric points are keyed by step, artifacts by
// name, and notifications go out only with the move that ends the job, so
// a retry of a message whose first delivery failed half-way is applied
// again, never lost, and a late, repeated or out-of-order callback changes
// nothing it should not.
func (l *Lifecycle) ApplyCallback(ctx context.Context, owner string, cb *contract.Callback, p contract.Payload, webhookID string, body []byte) (*Job, error) {
	j, err := l.Store.GetJob(ctx, owner, cb.JobID)
	if err != nil {
		return nil, err
	}
	if cb.Attempt != j.Attempt {
		return j, &Error{Code: EConflict, Message: fmt.Sprintf("attempt %d of job %s was superseded by attempt %d: stop", cb.Attempt, j.ID, j.Attempt),
			Details: map[string]int{"attempt": j.Attempt}}
	}
	// Apply, then record.
	if j, err = l.applyCallback(ctx, j, cb, p); err != nil {
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

// applyCallback changes the job as the callback says.
func (l *Lifecycle) applyCallback(ctx context.Context, j *Job, cb *contract.Callback, p contract.Payload) (*Job, error) {
	now := l.now()
	beat := func(j *Job) { j.HeartbeatAt, j.UpdatedAt = &now, now }
	// forward moves the job to `to` if the state machine allows it from
	// where it is; otherwise it only records the heartbeat.
	forward := func(to JobStatus, mutate func(*Job)) (*Job, error) {
		next, err := TransitionJob(ctx, l.Store, j.Owner, j.ID, to, func(cur *Job) error {
			if cur.Attempt != cb.Attempt {
				return errMoved
			}
			beat(cur)
			if mutate != nil {
				mutate(cur)
			}
			return nil
		})
		if err == nil {
			return next, nil
		}
		if ErrorCode(err) != EPrecondition && !errors.Is(err, errMoved) {
			return nil, err
		}
		return UpdateJob(ctx, l.Store, j.Owner, j.ID, func(cur *Job) error {
			if cur.Attempt != cb.Attempt {
				return ErrNoChange
			}
			beat(cur)
			if mutate != nil && !cur.Status.Terminal() {
				mutate(cur)
			}
			return nil
		})
	}
	// finish ends the job as o says, or, when it cannot end (it ended
	// already), records the heartbeat.
	finish := func(o Outcome) (*Job, error) {
		o.Heartbeat = true
		done, ended, err := l.Finish(ctx, j, o)
		if err != nil || ended {
			return done, err
		}
		return forward(o.Status, nil)
	}
	switch p := p.(type) {
	case *contract.Started:
		return forward(JobRunning, func(cur *Job) {
			if cur.StartedAt == nil {
				cur.StartedAt = &now
			}
			// A run of this attempt starts (again, after a crash): its
			// progress starts from the beginning.
			cur.Progress, cur.Stage = nil, ""
		})
	case *contract.StageChange:
		to := JobRunning
		if p.Stage == contract.StageUpload {
			to = JobUploading
		}
		return forward(to, func(cur *Job) { cur.Stage = string(p.Stage) })
	case *contract.Progress:
		pt := MetricPoint{Attempt: cb.Attempt, Step: int(p.Step), TotalSteps: int(p.TotalSteps), Epoch: p.Epoch, Loss: p.Loss,
			LearningRate: p.LearningRate, TokensPerSecond: p.TokensPerSecond, GPUMemoryBytes: p.GPUMemoryBytes, Time: cb.SentAt}
		if l.JobLog != nil {
			if err := l.JobLog.PutMetrics(ctx, j.Owner, j.ID, []MetricPoint{pt}); err != nil {
				return nil, fmt.Errorf("store metric point: %w", err)
			}
		}
		return forward(JobRunning, func(cur *Job) {
			// Out of order: an older step never replaces a newer one.
			if cur.Progress == nil || cur.Progress.Attempt != pt.Attempt || pt.Step >= cur.Progress.Step {
				cur.Progress = &pt
			}
		})
	case *contract.Artifact:
		key := ArtifactKey(j.Owner, j.ID, cb.Attempt, p.Name)
		info, err := l.Objects.Stat(ctx, key)
		if err != nil {
			return nil, Errorf(EInvalid, "artifact %s was not uploaded: %v", p.Name, err)
		}
		if info.Size != p.SizeBytes {
			return nil, Errorf(EInvalid, "artifact %s is %d bytes in storage, the callback says %d", p.Name, info.Size, p.SizeBytes)
		}
		return forward(JobUploading, func(cur *Job) {
			cur.addArtifact(Artifact{Name: p.Name, Key: key, SizeBytes: p.SizeBytes, SHA256: p.SHA256})
		})
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
		return finish(Outcome{Status: JobCompleted, Steps: &steps, FinalLoss: p.FinalLoss})
	case *contract.Failed:
		if p.Code == contract.CodeCancelled {
			// The worker stopped because it was told to: the cancel is done.
			return finish(Outcome{Status: JobCancelled})
		}
		return finish(Outcome{Status: JobFailed, Error: &JobError{Code: string(p.Code), Message: p.Message, Advice: p.Advice}})
	}
	return j, nil
}

// addArtifact records a, replacing a file of the same name.
func (j *Job) addArtifact(a Artifact) {
	for i := range j.Artifacts {
		if j.Artifacts[i].Name == a.Name {
			j.Artifacts[i] = a
			return
		}
	}
	j.Artifacts = append(j.Artifacts, a)
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
	if j.Estimate != nil {
		out.MicroBatchTokens = j.Estimate.MicroBatchTokens
	}
	return out
}
