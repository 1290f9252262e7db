package pipeline

import (
	"context"
	"fmt"
	"slices"

	"github.com/brightrun/brightrun/shared/contract"
)

// DeleteJob deletes an ended job of owner and everything stored of it:
// the adapter files of every attempt, its checkpoints, its events and
// metric points, and its record. A job that has not ended is refused
// (EPrecondition: cancel it first), so no worker writes after. Objects go
// first and the record last: a deletion cut short leaves the job listed,
// and deleting it again finishes the work. What the estimator learned
// from the run (its measurement: model, GPU, speed; no data) is kept.
func (l *Lifecycle) DeleteJob(ctx context.Context, owner, id string) error {
	j, err := l.Store.GetJob(ctx, owner, id)
	if err != nil {
		return err
	}
	if !j.Status.Terminal() {
		return &Error{Code: EPrecondition,
			Message: fmt.Sprintf("job %s is %s: cancel it (POST /v1/jobs/%s/cancel) and delete it once it has ended", j.ID, j.Status, j.ID),
			Details: map[string]string{"status": string(j.Status)}}
	}
	if l.Eraser == nil || l.URLs == nil {
		return Errorf(EUnavailable, "this service cannot delete jobs")
	}
	keys := jobObjectKeys(j)
	// And what no record names: a checkpoint cut short by a cancel, one a
	// worker uploaded after the job ended, one whose pruning failed.
	for _, prefix := range JobObjectPrefixes(owner, j.ID) {
		found, err := l.URLs.ListKeys(ctx, prefix)
		if err != nil {
			return fmt.Errorf("list the objects of job %s: %w", j.ID, err)
		}
		keys = append(keys, found...)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	if j.Status != JobCompleted && j.RunPodID != "" && l.Runs != nil {
		// A failed job's run that RunPod still runs (a crash loop whose
		// cancel failed) must not go on paying for a job that is gone.
		if err := l.Runs.CancelRun(ctx, j.RunPodID); err != nil {
			l.log().InfoContext(ctx, "cancel the deleted job's run", "job_id", j.ID, "run_id", j.RunPodID, "err", err)
		}
	}
	for _, key := range keys {
		if err := l.URLs.Delete(ctx, key); err != nil && ErrorCode(err) != ENotFound {
			return fmt.Errorf("delete %s of job %s: %w", key, j.ID, err)
		}
	}
	if err := l.Eraser.DeleteJobLog(ctx, owner, j.ID); err != nil {
		return fmt.Errorf("delete the log of job %s: %w", j.ID, err)
	}
	if err := l.Eraser.DeleteJob(ctx, owner, j.ID); err != nil && ErrorCode(err) != ENotFound {
		return fmt.Errorf("delete job %s: %w", j.ID, err)
	}
	l.log().InfoContext(ctx, "job deleted", "owner", owner, "job_id", j.ID, "attempts", j.Attempt, "checkpoints", len(j.Checkpoints))
	return nil
}

// jobObjectKeys are the keys of every object a job may have stored: the
// adapter files of each attempt (a failed attempt may have uploaded some)
// and the files of its checkpoints (pruned ones were deleted already).
func jobObjectKeys(j *Job) []string {
	seen := map[string]bool{}
	var keys []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for a := 1; a <= j.Attempt; a++ {
		add(ArtifactKey(j.Owner, j.ID, a, contract.ArtifactAdapterConfig))
		add(ArtifactKey(j.Owner, j.ID, a, contract.ArtifactAdapterModel))
	}
	for _, a := range j.Artifacts {
		add(a.Key)
	}
	for _, c := range j.Checkpoints {
		for _, f := range c.Files {
			add(f.Key)
		}
	}
	return keys
}
