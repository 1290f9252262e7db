package local

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/brightrun/brightrun/shared/pipeline"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketEvents                           = []byte("events")
	bucketEventIDs                         = []byte("event_ids")
	bucketMetrics                          = []byte("metrics")
	bucketNotes                            = []byte("notifications")
	bucketJobsGlobal                       = []byte("jobs_by_status_global")
	bucketMeasurements                     = []byte("measurements")
	jobLogBuckets                          = [][]byte{bucketEvents, bucketEventIDs, bucketMetrics, bucketNotes, bucketJobsGlobal, bucketMeasurements, bucketLive}
	_                  pipeline.JobLog     = (*Store)(nil)
	_                  pipeline.JobScanner = (*Store)(nil)
)

func jobPrefix(owner, jobID string) []byte {
	return append(append(append([]byte(owner), 0), jobID...), 0)
}

// globalStatusKey orders every owner's jobs of one status by creation time.
func globalStatusKey(j *pipeline.Job) []byte {
	k := append([]byte(j.Status), 0)
	k = binary.BigEndian.AppendUint64(k, uint64(j.CreatedAt.UnixNano()))
	return append(append(append(k, j.Owner...), 0), j.ID...)
}

// ascend walks the keys under prefix in order from after the cursor,
// calling fn for up to p.Limit entries.
func ascend(tx *bolt.Tx, bucket, prefix []byte, p pipeline.Page, fn func(k, v []byte) error) (string, error) {
	p = p.Clamp()
	c := tx.Bucket(bucket).Cursor()
	var k, v []byte
	if p.Cursor != "" {
		start, err := base64.RawURLEncoding.DecodeString(p.Cursor)
		if err != nil || !bytes.HasPrefix(start, prefix) {
			return "", pipeline.Errorf(pipeline.EInvalid, "cursor is not one this list returned")
		}
		if k, v = c.Seek(start); k != nil && bytes.Equal(k, start) {
			k, v = c.Next()
		}
	} else {
		k, v = c.Seek(prefix)
	}
	n := 0
	var last []byte
	for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if n == p.Limit {
			return base64.RawURLEncoding.EncodeToString(last), nil
		}
		if err := fn(k, v); err != nil {
			return "", err
		}
		last = append(last[:0], k...)
		n++
	}
	return "", nil
}

// AppendEvent stores e unless its ID was stored before for the job.
func (s *Store) AppendEvent(ctx context.Context, e *pipeline.Event) (bool, error) {
	if e.ID == "" || e.JobID == "" || e.Owner == "" {
		return false, pipeline.Errorf(pipeline.EInvalid, "an event needs an id, a job and an owner")
	}
	data, err := json.Marshal(e)
	if err != nil {
		return false, fmt.Errorf("encode event: %w", err)
	}
	created := false
	err = s.db.Batch(func(tx *bolt.Tx) error {
		created = false // Batch may run this again
		ids := tx.Bucket(bucketEventIDs)
		idKey := append(jobPrefix(e.Owner, e.JobID), e.ID...)
		if ids.Get(idKey) != nil {
			return nil
		}
		events := tx.Bucket(bucketEvents)
		seq, err := events.NextSequence()
		if err != nil {
			return err
		}
		key := binary.BigEndian.AppendUint64(jobPrefix(e.Owner, e.JobID), seq)
		if err := events.Put(key, data); err != nil {
			return err
		}
		created = true
		return ids.Put(idKey, key)
	})
	return created, err
}

// ListEvents returns a job's events in the order they were stored.
func (s *Store) ListEvents(ctx context.Context, owner, jobID string, p pipeline.Page) ([]*pipeline.Event, string, error) {
	var out []*pipeline.Event
	var next string
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		next, err = ascend(tx, bucketEvents, jobPrefix(owner, jobID), p, func(_, v []byte) error {
			var e pipeline.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode event: %w", err)
			}
			out = append(out, &e)
			return nil
		})
		return err
	})
	return out, next, err
}

// PutMetrics stores points by (attempt, step).
func (s *Store) PutMetrics(ctx context.Context, owner, jobID string, pts []pipeline.MetricPoint) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMetrics)
		for _, pt := range pts {
			if pt.Step < 0 || pt.Attempt < 0 {
				return pipeline.Errorf(pipeline.EInvalid, "metric point step and attempt must not be negative")
			}
			key := binary.BigEndian.AppendUint32(jobPrefix(owner, jobID), uint32(pt.Attempt))
			key = binary.BigEndian.AppendUint64(key, uint64(pt.Step))
			data, err := json.Marshal(pt)
			if err != nil {
				return fmt.Errorf("encode metric point: %w", err)
			}
			if err := b.Put(key, data); err != nil {
				return err
			}
		}
		return nil
	})
}

// ListMetrics returns a job's points by attempt, then step.
func (s *Store) ListMetrics(ctx context.Context, owner, jobID string, p pipeline.Page) ([]pipeline.MetricPoint, string, error) {
	var out []pipeline.MetricPoint
	var next string
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		next, err = ascend(tx, bucketMetrics, jobPrefix(owner, jobID), p, func(_, v []byte) error {
			var pt pipeline.MetricPoint
			if err := json.Unmarshal(v, &pt); err != nil {
				return fmt.Errorf("decode metric point: %w", err)
			}
			out = append(out, pt)
			return nil
		})
		return err
	})
	return out, next, err
}

func noteKey(n *pipeline.Notification) []byte {
	k := append([]byte(n.Owner), 0)
	k = binary.BigEndian.AppendUint64(k, uint64(n.CreatedAt.UnixNano()))
	return append(k, n.ID...)
}

// CreateNotification stores n.
func (s *Store) CreateNotification(ctx context.Context, n *pipeline.Notification) error {
	if n.ID == "" || n.Owner == "" {
		return pipeline.Errorf(pipeline.EInvalid, "a notification needs an id and an owner")
	}
	data, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode notification: %w", err)
	}
	return s.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNotes).Put(noteKey(n), data)
	})
}

// ListNotifications returns an owner's notifications newest first.
func (s *Store) ListNotifications(ctx context.Context, owner string, p pipeline.Page) ([]*pipeline.Notification, string, error) {
	var out []*pipeline.Notification
	next, err := s.descend(bucketNotes, append([]byte(owner), 0), p, func(_ *bolt.Tx, _, v []byte) error {
		var n pipeline.Notification
		if err := json.Unmarshal(v, &n); err != nil {
			return fmt.Errorf("decode notification: %w", err)
		}
		out = append(out, &n)
		return nil
	})
	return out, next, err
}

// measurementPrefix is where a model's measurements on a GPU are: the
// GPU id and the model id may not hold a 0 byte, so no two pairs share it.
func measurementPrefix(model, gpu string) ([]byte, error) {
	if model == "" || gpu == "" || strings.ContainsRune(model, 0) || strings.ContainsRune(gpu, 0) {
		return nil, pipeline.Errorf(pipeline.EInvalid, "a measurement needs a model and a GPU without 0 bytes")
	}
	return append(append(append([]byte(gpu), 0), model...), 0), nil
}

// PutMeasurement stores m under its model, GPU, job creation time and job
// id, replacing a measurement stored with the same key.
func (s *Store) PutMeasurement(ctx context.Context, m *pipeline.Measurement) error {
	prefix, err := measurementPrefix(m.Model, m.GPU)
	if err != nil {
		return err
	}
	if m.JobID == "" {
		return pipeline.Errorf(pipeline.EInvalid, "a measurement needs a job id")
	}
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode measurement: %w", err)
	}
	key := binary.BigEndian.AppendUint64(prefix, uint64(m.JobCreatedAt.UnixNano()))
	key = append(key, m.JobID...)
	return s.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeasurements).Put(key, data)
	})
}

// ListMeasurements returns up to limit measurements of a model on a GPU,
// newest job first.
func (s *Store) ListMeasurements(ctx context.Context, model, gpu string, limit int) ([]*pipeline.Measurement, error) {
	prefix, err := measurementPrefix(model, gpu)
	if err != nil {
		return nil, err
	}
	var out []*pipeline.Measurement
	_, err = s.descend(bucketMeasurements, prefix, pipeline.Page{Limit: limit}, func(_ *bolt.Tx, _, v []byte) error {
		var m pipeline.Measurement
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("decode measurement: %w", err)
		}
		out = append(out, &m)
		return nil
	})
	return out, err
}

// ListJobsByStatus returns every owner's jobs in a status, oldest first.
func (s *Store) ListJobsByStatus(ctx context.Context, status pipeline.JobStatus, p pipeline.Page) ([]*pipeline.Job, string, error) {
	var out []*pipeline.Job
	var next string
	err := s.db.View(func(tx *bolt.Tx) error {
		records := tx.Bucket(jobs.records)
		var err error
		next, err = ascend(tx, bucketJobsGlobal, append([]byte(status), 0), p, func(k, _ []byte) error {
			rest := k[len(status)+1+8:]
			owner, id, _ := bytes.Cut(rest, []byte{0})
			v := records.Get(recordKey(string(owner), string(id)))
			if v == nil {
				return fmt.Errorf("status index entry without job %s", id)
			}
			var j pipeline.Job
			if err := json.Unmarshal(v, &j); err != nil {
				return fmt.Errorf("decode job: %w", err)
			}
			out = append(out, &j)
			return nil
		})
		return err
	})
	if err == nil {
		err = s.mergeLive(out...)
	}
	return out, next, err
}

// DeleteJob removes the owner's job record.
func (s *Store) DeleteJob(ctx context.Context, owner, id string) error {
	return s.delete(jobs, owner, id)
}

// DeleteJobLog removes a job's events and metric points (a job without
// any is no error).
func (s *Store) DeleteJobLog(ctx context.Context, owner, jobID string) error {
	prefix := jobPrefix(owner, jobID)
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketEvents, bucketEventIDs, bucketMetrics} {
			b := tx.Bucket(name)
			var keys [][]byte
			c := b.Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				keys = append(keys, bytes.Clone(k))
			}
			for _, k := range keys {
				if err := b.Delete(k); err != nil {
					return fmt.Errorf("delete the log of job %s: %w", jobID, err)
				}
			}
		}
		if err := tx.Bucket(bucketLive).Delete(recordKey(owner, jobID)); err != nil {
			return fmt.Errorf("delete the live state of job %s: %w", jobID, err)
		}
		return nil
	})
}
