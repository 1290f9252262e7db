package pipeline

import (
	"context"
	"errors"
	"fmt"
)

// ErrNoChange, returned by a mutate function, ends an update without a
// write: the record is already as the caller wants it.
var ErrNoChange = errors.New("no change")

// maxUpdateTries bounds the read-modify-write retries under contention.
const maxUpdateTries = 20

// UpdateDataset reads the owner's dataset, applies mutate and writes it back
// conditionally, starting over when someone else wrote in between. It
// returns the dataset as stored (unchanged when mutate returns ErrNoChange).
func UpdateDataset(ctx context.Context, s Store, owner, id string, mutate func(*Dataset) error) (*Dataset, error) {
	for try := 0; try < maxUpdateTries; try++ {
		d, err := s.GetDataset(ctx, owner, id)
		if err != nil {
			return nil, err
		}
		if err := mutate(d); err != nil {
			if errors.Is(err, ErrNoChange) {
				return d, nil
			}
			return nil, err
		}
		err = s.UpdateDataset(ctx, d)
		if ErrorCode(err) == EConflict {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("update dataset %s: %w", id, err)
		}
		return d, nil
	}
	return nil, Errorf(EUnavailable, "dataset %s is being changed by too many writers: try again", id)
}

// TransitionJob moves the owner's job to status `to` with a conditional
// write, applying mutate (which may be nil) to the record on the way: mutate
// sees the job as stored (its status still the old one) and may refuse by
// returning an error, or ErrNoChange to end without a write. TransitionJob
// refuses a move the state machine does not allow with EPrecondition,
// re-reading and trying again when another writer got in first.
func TransitionJob(ctx context.Context, s Store, owner, id string, to JobStatus, mutate func(*Job) error) (*Job, error) {
	for try := 0; try < maxUpdateTries; try++ {
		j, err := s.GetJob(ctx, owner, id)
		if err != nil {
			return nil, err
		}
		if !CanTransition(j.Status, to) {
			return j, &Error{Code: EPrecondition, Message: fmt.Sprintf("job %s is %s and cannot become %s", id, j.Status, to),
				Details: map[string]string{"status": string(j.Status)}}
		}
		if mutate != nil {
			if err := mutate(j); err != nil {
				if errors.Is(err, ErrNoChange) {
					return j, nil
				}
				return nil, err
			}
		}
		j.Status = to
		err = s.UpdateJob(ctx, j)
		if ErrorCode(err) == EConflict {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("update job %s: %w", id, err)
		}
		return j, nil
	}
	return nil, Errorf(EUnavailable, "job %s is being changed by too many writers: try again", id)
}

// UpdateJob reads the owner's job, applies mutate and writes it back
// conditionally, starting over when someone else wrote in between. mutate
// must not change the status: use TransitionJob for that.
func UpdateJob(ctx context.Context, s Store, owner, id string, mutate func(*Job) error) (*Job, error) {
	for try := 0; try < maxUpdateTries; try++ {
		j, err := s.GetJob(ctx, owner, id)
		if err != nil {
			return nil, err
		}
		status := j.Status
		if err := mutate(j); err != nil {
			if errors.Is(err, ErrNoChange) {
				return j, nil
			}
			return nil, err
		}
		if j.Status != status {
			return nil, fmt.Errorf("update job %s: mutate changed the status from %s to %s", id, status, j.Status)
		}
		err = s.UpdateJob(ctx, j)
		if ErrorCode(err) == EConflict {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("update job %s: %w", id, err)
		}
		return j, nil
	}
	return nil, Errorf(EUnavailable, "job %s is being changed by too many writers: try again", id)
}
