package local

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/brightrun/brightrun/shared/pipeline"
	bolt "go.etcd.io/bbolt"
)

// Store is pipeline.Store over the local state file. Records are JSON under
// owner/id keys; a second bucket per kind orders them by creation time.
type Store struct {
	db  *bolt.DB
	now func() time.Time
}

var _ pipeline.Store = (*Store)(nil)

// record kinds and their buckets.
type kind struct {
	records, byTime, byStatus []byte
	name                      string
}

var (
	datasets = kind{[]byte("datasets"), []byte("datasets_by_time"), nil, "dataset"}
	jobs     = kind{[]byte("jobs"), []byte("jobs_by_time"), []byte("jobs_by_status"), "job"}
)

// NewStore returns the store kept in db.
func NewStore(db *DB) (*Store, error) {
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		for _, name := range append([][]byte{datasets.records, datasets.byTime, jobs.records, jobs.byTime, jobs.byStatus}, append(jobLogBuckets, webhookBuckets...)...) {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("create store buckets: %w", err)
	}
	return &Store{db: db.bolt, now: time.Now}, nil
}

func recordKey(owner, id string) []byte {
	return append(append([]byte(owner), 0), id...)
}

// timeKey sorts by owner, then creation time, then id.
func timeKey(owner string, created time.Time, id string) []byte {
	k := append([]byte(owner), 0)
	k = binary.BigEndian.AppendUint64(k, uint64(created.UnixNano()))
	return append(k, id...)
}

func statusKey(owner string, status pipeline.JobStatus, created time.Time, id string) []byte {
	k := append([]byte(owner), 0)
	k = append(append(k, status...), 0)
	k = binary.BigEndian.AppendUint64(k, uint64(created.UnixNano()))
	return append(k, id...)
}

func notFound(k kind, id string) error {
	return pipeline.Errorf(pipeline.ENotFound, "%s %q not found", k.name, id)
}

func (s *Store) create(k kind, owner, id string, created time.Time, status string, rec any) error {
	if owner == "" || id == "" {
		return pipeline.Errorf(pipeline.EInvalid, "%s needs an owner and an id", k.name)
	}
	if !pipeline.KeyFits(owner, id) {
		return pipeline.Errorf(pipeline.EInvalid, "%s id must be at most %d bytes and its owner %d", k.name, pipeline.MaxIDBytes, pipeline.MaxOwnerBytes)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode %s: %w", k.name, err)
	}
	return s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(k.records)
		key := recordKey(owner, id)
		if b.Get(key) != nil {
			return pipeline.Errorf(pipeline.EConflict, "%s %q already exists", k.name, id)
		}
		if err := b.Put(key, data); err != nil {
			return err
		}
		if err := tx.Bucket(k.byTime).Put(timeKey(owner, created, id), nil); err != nil {
			return err
		}
		if k.byStatus != nil {
			if err := tx.Bucket(bucketJobsGlobal).Put(globalStatusKey(&pipeline.Job{Owner: owner, ID: id, Status: pipeline.JobStatus(status), CreatedAt: created}), nil); err != nil {
				return err
			}
			return tx.Bucket(k.byStatus).Put(statusKey(owner, pipeline.JobStatus(status), created, id), nil)
		}
		return nil
	})
}

func (s *Store) get(k kind, owner, id string, into any) error {
	return s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(k.records).Get(recordKey(owner, id))
		if v == nil {
			return notFound(k, id)
		}
		return json.Unmarshal(v, into)
	})
}

// versioned is what update needs to know of a stored record.
type versioned struct {
	Version   int64              `json:"version"`
	Status    pipeline.JobStatus `json:"status"`
	CreatedAt time.Time          `json:"created_at"`
}

// update writes rec if the stored version equals version; it returns the new version.
func (s *Store) update(k kind, owner, id string, version int64, status string, set func(newVersion int64) any) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(k.records)
		key := recordKey(owner, id)
		old := b.Get(key)
		if old == nil {
			return notFound(k, id)
		}
		var cur versioned
		if err := json.Unmarshal(old, &cur); err != nil {
			return fmt.Errorf("decode stored %s %s: %w", k.name, id, err)
		}
		if cur.Version != version {
			return pipeline.Errorf(pipeline.EConflict, "%s %q was changed by someone else (version %d, expected %d)", k.name, id, cur.Version, version)
		}
		data, err := json.Marshal(set(version + 1))
		if err != nil {
			return fmt.Errorf("encode %s: %w", k.name, err)
		}
		if err := b.Put(key, data); err != nil {
			return err
		}
		if k.byStatus != nil && string(cur.Status) != status {
			idx, global := tx.Bucket(k.byStatus), tx.Bucket(bucketJobsGlobal)
			if err := idx.Delete(statusKey(owner, cur.Status, cur.CreatedAt, id)); err != nil {
				return err
			}
			if err := global.Delete(globalStatusKey(&pipeline.Job{Owner: owner, ID: id, Status: cur.Status, CreatedAt: cur.CreatedAt})); err != nil {
				return err
			}
			if err := global.Put(globalStatusKey(&pipeline.Job{Owner: owner, ID: id, Status: pipeline.JobStatus(status), CreatedAt: cur.CreatedAt}), nil); err != nil {
				return err
			}
			return idx.Put(statusKey(owner, pipeline.JobStatus(status), cur.CreatedAt, id), nil)
		}
		return nil
	})
}

func (s *Store) delete(k kind, owner, id string) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(k.records)
		key := recordKey(owner, id)
		old := b.Get(key)
		if old == nil {
			return notFound(k, id)
		}
		var cur versioned
		if err := json.Unmarshal(old, &cur); err != nil {
			return fmt.Errorf("decode stored %s %s: %w", k.name, id, err)
		}
		if err := b.Delete(key); err != nil {
			return err
		}
		if k.byStatus != nil {
			if err := tx.Bucket(k.byStatus).Delete(statusKey(owner, cur.Status, cur.CreatedAt, id)); err != nil {
				return err
			}
			if err := tx.Bucket(bucketJobsGlobal).Delete(globalStatusKey(&pipeline.Job{Owner: owner, ID: id, Status: cur.Status, CreatedAt: cur.CreatedAt})); err != nil {
				return err
			}
		}
		return tx.Bucket(k.byTime).Delete(timeKey(owner, cur.CreatedAt, id))
	})
}

// list walks an index newest first from the cursor, decoding up to limit
// of the records the index entries name.
func (s *Store) list(k kind, index, prefix []byte, p pipeline.Page, owner string, decode func([]byte) error) (string, error) {
	return s.descend(index, prefix, p, func(tx *bolt.Tx, key, _ []byte) error {
		id := key[len(prefix)+8:]
		v := tx.Bucket(k.records).Get(recordKey(owner, string(id)))
		if v == nil {
			return fmt.Errorf("index entry without %s %s", k.name, id)
		}
		if err := decode(v); err != nil {
			return fmt.Errorf("decode stored %s %s: %w", k.name, id, err)
		}
		return nil
	})
}

// CreateDataset stores a new dataset with version 1.
func (s *Store) CreateDataset(ctx context.Context, d *pipeline.Dataset) error {
	d.Version = 1
	if err := s.create(datasets, d.Owner, d.ID, d.CreatedAt, "", d); err != nil {
		d.Version = 0
		return err
	}
	return nil
}

// GetDataset returns the owner's dataset.
func (s *Store) GetDataset(ctx context.Context, owner, id string) (*pipeline.Dataset, error) {
	var d pipeline.Dataset
	if err := s.get(datasets, owner, id, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// UpdateDataset writes d if nobody changed it since it was read.
func (s *Store) UpdateDataset(ctx context.Context, d *pipeline.Dataset) error {
	old := d.Version
	err := s.update(datasets, d.Owner, d.ID, d.Version, "", func(v int64) any {
		d.Version = v
		return d
	})
	if err != nil {
		d.Version = old
	}
	return err
}

// DeleteDataset removes the owner's dataset record.
func (s *Store) DeleteDataset(ctx context.Context, owner, id string) error {
	return s.delete(datasets, owner, id)
}

// ListDatasets returns one page of the owner's datasets, newest first.
func (s *Store) ListDatasets(ctx context.Context, owner string, p pipeline.Page) ([]*pipeline.Dataset, string, error) {
	var out []*pipeline.Dataset
	next, err := s.list(datasets, datasets.byTime, append([]byte(owner), 0), p, owner, func(v []byte) error {
		var d pipeline.Dataset
		if err := json.Unmarshal(v, &d); err != nil {
			return err
		}
		out = append(out, &d)
		return nil
	})
	return out, next, err
}

// CreateJob stores a new job with version 1.
func (s *Store) CreateJob(ctx context.Context, j *pipeline.Job) error {
	j.Version = 1
	if err := s.create(jobs, j.Owner, j.ID, j.CreatedAt, string(j.Status), j); err != nil {
		j.Version = 0
		return err
	}
	return nil
}

// GetJob returns the owner's job.
func (s *Store) GetJob(ctx context.Context, owner, id string) (*pipeline.Job, error) {
	var j pipeline.Job
	if err := s.get(jobs, owner, id, &j); err != nil {
		return nil, err
	}
	if err := s.mergeLive(&j); err != nil {
		return nil, err
	}
	return &j, nil
}

// UpdateJob writes j if nobody changed it since it was read.
func (s *Store) UpdateJob(ctx context.Context, j *pipeline.Job) error {
	old := j.Version
	err := s.update(jobs, j.Owner, j.ID, j.Version, string(j.Status), func(v int64) any {
		j.Version = v
		return j
	})
	if err != nil {
		j.Version = old
	}
	return err
}

// ListJobs returns one page of the owner's jobs, newest first, optionally of one status.
func (s *Store) ListJobs(ctx context.Context, owner string, f pipeline.JobFilter, p pipeline.Page) ([]*pipeline.Job, string, error) {
	index, prefix := jobs.byTime, append([]byte(owner), 0)
	if f.Status != "" {
		index, prefix = jobs.byStatus, append(append(prefix, f.Status...), 0)
	}
	var out []*pipeline.Job
	next, err := s.list(jobs, index, prefix, p, owner, func(v []byte) error {
		var j pipeline.Job
		if err := json.Unmarshal(v, &j); err != nil {
			return err
		}
		out = append(out, &j)
		return nil
	})
	if err == nil {
		err = s.mergeLive(out...)
	}
	return out, next, err
}

// descend walks the keys under prefix newest (greatest) first from the
// cursor (the last key of the previous page), visiting up to p.Limit.
func (s *Store) descend(bucket, prefix []byte, p pipeline.Page, visit func(tx *bolt.Tx, k, v []byte) error) (string, error) {
	p = p.Clamp()
	var start []byte
	if p.Cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(p.Cursor)
		if err != nil || !bytes.HasPrefix(raw, prefix) {
			return "", pipeline.Errorf(pipeline.EInvalid, "cursor is not one this list returned")
		}
		start = raw
	}
	var next string
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		k, v := seekBefore(c, prefix, start)
		n := 0
		var last []byte
		for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Prev() {
			if n == p.Limit {
				next = base64.RawURLEncoding.EncodeToString(last)
				return nil
			}
			if err := visit(tx, k, v); err != nil {
				return err
			}
			last = append(last[:0], k...)
			n++
		}
		return nil
	})
	return next, err
}

// seekBefore positions c on the last key under prefix (start == nil), or on
// the last key strictly before start.
func seekBefore(c *bolt.Cursor, prefix, start []byte) ([]byte, []byte) {
	target := start
	if target == nil {
		target = append(append([]byte{}, prefix...), 0xff)
	}
	k, _ := c.Seek(target)
	if k == nil {
		return c.Last()
	}
	return c.Prev()
}
