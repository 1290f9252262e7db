package local

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/brightrun/brightrun/shared/pipeline"
	bolt "go.etcd.io/bbolt"
)

// bucketLive holds each job's live state (pipeline.Live) under its record
// key, apart from the job record, as the DynamoDB store keeps it: the same
// semantics for the conformance suite, and the same code path for the
// callbacks in the local stack.
var bucketLive = []byte("live")

var (
	_ pipeline.LiveRecorder  = (*Store)(nil)
	_ pipeline.JobKeyScanner = (*Store)(nil)
)

// RecordLive stores the job's live state unless the stored one is newer.
func (s *Store) RecordLive(ctx context.Context, owner, jobID string, l pipeline.Live) error {
	if owner == "" || jobID == "" {
		return pipeline.Errorf(pipeline.EInvalid, "live state needs an owner and a job id")
	}
	data, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("encode live state of job %s: %w", jobID, err)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLive)
		k := recordKey(owner, jobID)
		if v := b.Get(k); v != nil {
			var cur pipeline.Live
			if err := json.Unmarshal(v, &cur); err != nil {
				return fmt.Errorf("decode live state of job %s: %w", jobID, err)
			}
			if !l.Replaces(cur) {
				return nil // a later one is stored
			}
		}
		return b.Put(k, data)
	})
}

// mergeLive merges the stored live states of the unfinished jobs.
func (s *Store) mergeLive(jobs ...*pipeline.Job) error {
	return s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLive)
		for _, j := range jobs {
			if !pipeline.MayBeLive(j.Status) {
				continue
			}
			v := b.Get(recordKey(j.Owner, j.ID))
			if v == nil {
				continue
			}
			var l pipeline.Live
			if err := json.Unmarshal(v, &l); err != nil {
				return fmt.Errorf("decode live state of job %s: %w", j.ID, err)
			}
			j.MergeLive(&l)
		}
		return nil
	})
}

// ListJobKeys returns every owner's jobs in a status by key, as
// ListJobsByStatus lists them.
func (s *Store) ListJobKeys(ctx context.Context, status pipeline.JobStatus, p pipeline.Page) ([]pipeline.JobKey, string, error) {
	if !status.Valid() || status.Terminal() {
		return nil, "", pipeline.Errorf(pipeline.EInvalid, "status %q is not a non-terminal job status", status)
	}
	jobs, next, err := s.ListJobsByStatus(ctx, status, p)
	if err != nil {
		return nil, "", err
	}
	out := make([]pipeline.JobKey, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, pipeline.JobKey{Owner: j.Owner, ID: j.ID, Status: j.Status, CreatedAt: j.CreatedAt, ServedAt: j.ServedAt})
	}
	return out, next, nil
}
