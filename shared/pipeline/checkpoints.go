package pipeline

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
)

// Checkpoints and the URLs a running worker asks for.
//
// A worker stores a checkpoint's files through PUT URLs it asks for (a
// urls callback, purpose checkpoint) at CheckpointKey, which names the
// attempt: two attempts may store different bytes for one step, and a
// record's hashes must match its objects. Its checkpoint callback then
// records the checkpoint on the job once every file is in storage. The
// job keeps the last KeepCheckpoints by step, and its last epoch end;
// older ones are dropped from
// the record first and their objects deleted after, so a record never
// names a deleted object. Neither callback moves the job's state.

// KeepCheckpoints is how many checkpoints a job keeps (besides its last
// epoch end).
const KeepCheckpoints = 3

// maxURLFiles bounds the files of one upload request (a checkpoint has four).
const maxURLFiles = 16

// URLTTL is how long the URLs handed to a running worker stay valid: the
// worker asks again when one is refused.
const URLTTL = 15 * time.Minute

// Checkpoint is one stored checkpoint of a job.
type Checkpoint struct {
	ID           string           `json:"id"`
	Step         int64            `json:"step"`
	Attempt      int              `json:"attempt"` // the attempt that stored it
	TotalSteps   int64            `json:"total_steps"`
	Epoch        float64          `json:"epoch"`
	Reason       string           `json:"reason"`
	Partial      bool             `json:"partial"`
	Files        []CheckpointFile `json:"files"`
	TrainSeconds float64          `json:"train_seconds"`
	Loss         *float64         `json:"loss,omitempty"`
	EvalLoss     *float64         `json:"eval_loss,omitempty"`
	CreatedAt    time.Time        `json:"created_at"`
}

// CheckpointFile is one stored file of a checkpoint.
type CheckpointFile struct {
	Name      string `json:"name"`
	Key       string `json:"key"`
	SizeBytes int64  `json:"size_bytes"`
	SHA256    string `json:"sha256"`
}

// CheckpointID names the checkpoint of step stored by attempt.
func CheckpointID(step int64, attempt int) string { return fmt.Sprintf("ck_%d_%d", step, attempt) }

// LatestCheckpoint is the job's checkpoint of the highest step (of the
// latest attempt among equals), or nil.
func (j *Job) LatestCheckpoint() *Checkpoint {
	if len(j.Checkpoints) == 0 {
		return nil
	}
	c := j.Checkpoints[len(j.Checkpoints)-1]
	return &c
}

// checkpoint finds a stored checkpoint by id, else by step (the latest
// attempt's); neither given, the latest.
func (j *Job) checkpoint(id string, step int64) *Checkpoint {
	for i := len(j.Checkpoints) - 1; i >= 0; i-- {
		c := j.Checkpoints[i]
		if id != "" && c.ID == id || id == "" && step > 0 && c.Step == step {
			return &c
		}
	}
	if id == "" && step == 0 {
		return j.LatestCheckpoint()
	}
	return nil
}

// addCheckpoint records c (replacing one of the same id), keeps the list
// ordered by step then attempt, and returns the checkpoints pruned.
func (j *Job) addCheckpoint(c Checkpoint) (pruned []Checkpoint) {
	j.Checkpoints = slices.DeleteFunc(j.Checkpoints, func(x Checkpoint) bool { return x.ID == c.ID })
	j.Checkpoints = append(j.Checkpoints, c)
	slices.SortStableFunc(j.Checkpoints, func(a, b Checkpoint) int {
		if a.Step != b.Step {
			return int(a.Step - b.Step)
		}
		return a.Attempt - b.Attempt
	})
	n := len(j.Checkpoints) - KeepCheckpoints
	if n <= 0 {
		return nil
	}
	// The last epoch end is kept beside the last few: it is where a run
	// whose final upload failed resumes (at its last step).
	epochEnd := -1
	for i := len(j.Checkpoints) - 1; i >= 0; i-- {
		if j.Checkpoints[i].Reason == contract.CheckpointEpochEnd {
			epochEnd = i
			break
		}
	}
	kept := slices.Clone(j.Checkpoints[n:])
	for i, c := range j.Checkpoints[:n] {
		if i == epochEnd {
			kept = slices.Insert(kept, 0, c)
			continue
		}
		pruned = append(pruned, c)
	}
	j.Checkpoints = kept
	return pruned
}

// ManifestOf is the contract's description of c.
func ManifestOf(c *Checkpoint) *contract.CheckpointManifest {
	m := &contract.CheckpointManifest{Step: c.Step, CheckpointID: c.ID, Attempt: c.Attempt}
	for _, f := range c.Files {
		m.Files = append(m.Files, contract.FileRef{Name: f.Name, SizeBytes: f.SizeBytes, SHA256: f.SHA256})
	}
	return m
}

// applyCheckpoint records a checkpoint whose files are all in storage at
// the attempt's keys, with the sizes the callback gives; then deletes the
// objects of the checkpoints it pruned.
func (l *Lifecycle) applyCheckpoint(ctx context.Context, j *Job, cb *contract.Callback, p *contract.Checkpoint) (*Job, error) {
	if l.Objects == nil {
		return nil, Errorf(EInvalid, "checkpoints are not stored by this service")
	}
	c := Checkpoint{ID: CheckpointID(p.Step, cb.Attempt), Step: p.Step, Attempt: cb.Attempt, TotalSteps: p.TotalSteps, Epoch: p.Epoch,
		Reason: p.Reason, Partial: p.Partial, TrainSeconds: p.TrainSeconds, Loss: p.Loss, EvalLoss: p.EvalLoss, CreatedAt: l.now()}
	for _, f := range p.Files {
		key := CheckpointKey(j.Owner, j.ID, cb.Attempt, p.Step, f.Name)
		info, err := l.Objects.Stat(ctx, key)
		if err != nil {
			return nil, Errorf(EInvalid, "checkpoint file %s of step %d was not uploaded: %v", f.Name, p.Step, err)
		}
		if info.Size != f.SizeBytes {
			return nil, Errorf(EInvalid, "checkpoint file %s of step %d is %d bytes in storage, the callback says %d", f.Name, p.Step, info.Size, f.SizeBytes)
		}
		c.Files = append(c.Files, CheckpointFile{Name: f.Name, Key: key, SizeBytes: f.SizeBytes, SHA256: f.SHA256})
	}
	var pruned []Checkpoint
	done, err := l.record(ctx, j, cb, func(cur *Job) JobStatus {
		if old := cur.checkpoint(c.ID, 0); old != nil {
			c.CreatedAt = old.CreatedAt // a repeat changes nothing
		}
		pruned = cur.addCheckpoint(c)
		return ""
	})
	if err != nil {
		return nil, err
	}
	l.deleteCheckpoints(ctx, done, pruned)
	return done, nil
}

// deleteCheckpoints deletes the objects of checkpoints no record names; a
// failure is logged: an orphan object costs storage, not correctness.
func (l *Lifecycle) deleteCheckpoints(ctx context.Context, j *Job, cs []Checkpoint) {
	if l.URLs == nil {
		return
	}
	for _, c := range cs {
		for _, f := range c.Files {
			if err := l.URLs.Delete(ctx, f.Key); err != nil && ErrorCode(err) != ENotFound {
				l.log().WarnContext(ctx, "checkpoint object not deleted", "job_id", j.ID, "key", f.Key, "err", err)
			}
		}
	}
}

// URLSigner hands out presigned URLs, lists and deletes objects.
type URLSigner interface {
	PresignPut(ctx context.Context, key string, size int64, sha256Hex string, ttl time.Duration) (SignedRequest, error)
	PresignGet(ctx context.Context, key string, ttl time.Duration) (SignedRequest, error)
	Delete(ctx context.Context, key string) error
	ListKeys(ctx context.Context, prefix string) ([]string, error)
}

// AnswerURLs answers a worker's urls callback of the job's current
// attempt with short-lived presigned URLs. It changes nothing: a urls
// request does not move the job. A request of a superseded attempt fails
// with EConflict; a service without a signer answers ErrNoURLs (the
// worker then uses the spec's URLs); a request it cannot serve (a file it
// does not know, an upload without its size) fails with EInvalid.
// ErrNoURLs is AnswerURLs' answer when the service hands out no URLs.
var ErrNoURLs = &Error{Code: EInvalid, Message: "this service hands out no URLs: use the job spec's"}

func (l *Lifecycle) AnswerURLs(ctx context.Context, owner string, cb *contract.Callback, req *contract.URLRequest) (*Job, *contract.URLAnswer, error) {
	j, err := l.Store.GetJob(ctx, owner, cb.JobID)
	if err != nil {
		return nil, nil, err
	}
	if cb.Attempt != j.Attempt {
		return j, nil, superseded(cb.Attempt, j)
	}
	if l.URLs == nil {
		return j, nil, ErrNoURLs
	}
	ans := &contract.URLAnswer{Action: "continue", URLs: map[string]contract.PresignedURL{}, ExpiresAt: l.now().Add(URLTTL).Truncate(time.Second)}
	add := func(name string, sr SignedRequest, err error) error {
		if err != nil {
			return fmt.Errorf("presign %s: %w", name, err)
		}
		ans.URLs[name] = contract.PresignedURL{URL: sr.URL, Method: sr.Method, Headers: sr.Headers}
		if !sr.ExpiresAt.IsZero() && sr.ExpiresAt.Before(ans.ExpiresAt) {
			ans.ExpiresAt = sr.ExpiresAt.UTC()
		}
		return nil
	}
	switch req.Purpose {
	case contract.PurposeDataset:
		names := []string{contract.FileDataset}
		if len(req.Files) > 0 {
			names = names[:0]
			for _, f := range req.Files {
				names = append(names, f.Name)
			}
		}
		for _, name := range names {
			id := j.DatasetID
			switch {
			case name == contract.FileValidation && j.Validation != nil && j.Validation.DatasetID != "":
				id = j.Validation.DatasetID
			case name != contract.FileDataset:
				return j, nil, Errorf(EInvalid, "no file %s for this job's dataset", name)
			}
			ds, err := l.Store.GetDataset(ctx, j.Owner, id)
			if ErrorCode(err) == ENotFound {
				// Not "no such job" (which stops the worker): this request fails.
				return j, nil, Errorf(EInvalid, "dataset %s of this job no longer exists", id)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("dataset %s: %w", id, err)
			}
			// The converted file of a ShareGPT or Alpaca upload.
			sr, err := l.URLs.PresignGet(ctx, ds.TrainingFile().Key, URLTTL)
			if err := add(name, sr, err); err != nil {
				return nil, nil, err
			}
		}
	case contract.PurposeCheckpoint, contract.PurposeArtifact:
		if req.Purpose == contract.PurposeCheckpoint && req.Step < 1 {
			return j, nil, Errorf(EInvalid, "a checkpoint upload needs its step")
		}
		if len(req.Files) == 0 || len(req.Files) > maxURLFiles {
			return j, nil, Errorf(EInvalid, "name 1 to %d files to upload", maxURLFiles)
		}
		for _, f := range req.Files {
			if f.SizeBytes < 1 {
				return j, nil, Errorf(EInvalid, "give the size of %s", f.Name)
			}
			key := CheckpointKey(j.Owner, j.ID, j.Attempt, req.Step, f.Name)
			if req.Purpose == contract.PurposeArtifact {
				if f.Name != contract.ArtifactAdapterConfig && f.Name != contract.ArtifactAdapterModel {
					return j, nil, Errorf(EInvalid, "%s is not an adapter file", f.Name)
				}
				key = ArtifactKey(j.Owner, j.ID, j.Attempt, f.Name)
			}
			sr, err := l.URLs.PresignPut(ctx, key, f.SizeBytes, f.SHA256, URLTTL)
			if err := add(f.Name, sr, err); err != nil {
				return nil, nil, err
			}
		}
	case contract.PurposeCheckpointDownload:
		c := j.checkpoint(req.CheckpointID, req.Step)
		if c == nil {
			return j, ans, nil // checkpoint: null, no URLs
		}
		ans.Checkpoint = ManifestOf(c)
		for _, f := range c.Files {
			sr, err := l.URLs.PresignGet(ctx, f.Key, URLTTL)
			if err := add(f.Name, sr, err); err != nil {
				return nil, nil, err
			}
		}
	default:
		return j, nil, Errorf(EInvalid, "unknown purpose %q", req.Purpose)
	}
	return j, ans, nil
}
