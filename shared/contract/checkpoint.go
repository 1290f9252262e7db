package contract

import (
	"fmt"
	"regexp"
	"time"
)

// The callback types added with checkpoints: neither moves the job's state.
const (
	TypeCheckpoint CallbackType = "checkpoint" // a checkpoint's files are stored
	TypeURLs       CallbackType = "urls"       // a request for presigned URLs, answered in the 200 body (URLAnswer)
)

// CallbackTypes lists every callback type.
var CallbackTypes = []CallbackType{TypeStarted, TypeStage, TypeProgress, TypeArtifact, TypeCompleted, TypeFailed, TypeCheckpoint, TypeURLs}

// Checkpoint file names: the adapter (a usable, partial one) and the state
// a resumed run continues from.
const (
	CheckpointTrainingState = "training_state.safetensors"
	CheckpointTrainerState  = "trainer_state.json"
)

// The reasons a checkpoint was written.
const (
	CheckpointInterval = "interval"  // checkpoint_every_seconds of training passed
	CheckpointEpochEnd = "epoch_end" // an epoch ended (the last one included)
)

// URL purposes of a urls request.
const (
	PurposeDataset            = "dataset"             // GET dataset.jsonl (and validation.jsonl)
	PurposeCheckpoint         = "checkpoint"          // PUT the files of the checkpoint at step
	PurposeCheckpointDownload = "checkpoint_download" // GET a stored checkpoint's files, with its manifest
	PurposeArtifact           = "artifact"            // PUT the final adapter
)

// Dataset file names of a dataset urls request.
const (
	FileDataset    = "dataset.jsonl"
	FileValidation = "validation.jsonl"
)

// FileRef names one stored file with its size and hash.
type FileRef struct {
	Name      string `json:"name"`
	SizeBytes int64  `json:"size_bytes"`
	SHA256    string `json:"sha256"`
}

// Position is where a resumed run continues the data order.
type Position struct {
	Epoch       int   `json:"epoch"`         // 0-based epoch to continue
	StepInEpoch int64 `json:"step_in_epoch"` // steps of that epoch already done
}

// Checkpoint is the data of a checkpoint callback: the files of the
// checkpoint at Step were uploaded.
type Checkpoint struct {
	Step          int64     `json:"step"`
	TotalSteps    int64     `json:"total_steps"`
	Epoch         float64   `json:"epoch"`
	Position      Position  `json:"position"`
	Reason        string    `json:"reason"`
	Partial       bool      `json:"partial"` // step < total_steps: the adapter is a partial one
	Files         []FileRef `json:"files"`
	TrainSeconds  float64   `json:"train_seconds"` // the run's, earlier attempts included
	SizeBytes     int64     `json:"size_bytes,omitempty"`
	TokensSeen    int64     `json:"tokens_seen,omitempty"`
	Loss          *float64  `json:"loss,omitempty"`
	EvalLoss      *float64  `json:"eval_loss,omitempty"`
	WriteSeconds  *float64  `json:"write_seconds,omitempty"`
	UploadSeconds *float64  `json:"upload_seconds,omitempty"`
}

// URLFile is one file a urls request wants; uploads give its size and hash.
type URLFile struct {
	Name      string `json:"name"`
	SizeBytes int64  `json:"size_bytes,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
}

// URLRequest is the data of a urls callback.
type URLRequest struct {
	Purpose      string    `json:"purpose"`
	Files        []URLFile `json:"files,omitempty"`
	Step         int64     `json:"step,omitempty"`
	CheckpointID string    `json:"checkpoint_id,omitempty"`
	Retry        int       `json:"retry,omitempty"`
}

// URLAnswer is the 200 body answering a urls callback.
type URLAnswer struct {
	Action     string                  `json:"action"`
	Reason     string                  `json:"reason,omitempty"`
	URLs       map[string]PresignedURL `json:"urls"`
	ExpiresAt  time.Time               `json:"expires_at"`
	Checkpoint *CheckpointManifest     `json:"checkpoint,omitempty"` // checkpoint_download only; null when the job has none
}

// PresignedURL is one presigned GET or PUT.
type PresignedURL struct {
	URL     string            `json:"url"`
	Method  string            `json:"method"`
	Headers map[string]string `json:"headers,omitempty"`
}

// CheckpointManifest describes a stored checkpoint: what a resumed run
// downloads.
type CheckpointManifest struct {
	Step         int64     `json:"step"`
	CheckpointID string    `json:"checkpoint_id,omitempty"`
	Attempt      int       `json:"attempt,omitempty"` // the attempt that stored it
	Files        []FileRef `json:"files"`
}

func (*Checkpoint) CallbackType() CallbackType { return TypeCheckpoint }
func (*URLRequest) CallbackType() CallbackType { return TypeURLs }

var (
	fileNamePattern     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)
	checkpointIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
)

// ValidFileName reports whether name is a file name the contract accepts.
func ValidFileName(name string) bool { return fileNamePattern.MatchString(name) }

func (c *checker) fileRefs(field string, files []FileRef) {
	if len(files) == 0 {
		c.bad(field, "must list at least one file")
	}
	for i, f := range files {
		p := fmt.Sprintf("%s[%d]", field, i)
		c.match(p+".name", f.Name, fileNamePattern, "must be a file name of letters, digits, '.', '_' or '-'")
		c.intMin(p+".size_bytes", f.SizeBytes, 1)
		c.match(p+".sha256", f.SHA256, sha256Pattern, "must be 64 lowercase hex characters")
	}
}

// Validate checks a checkpoint payload.
func (p *Checkpoint) Validate() error {
	c := &checker{}
	c.intMin("data.step", p.Step, 1)
	c.intMin("data.total_steps", p.TotalSteps, 1)
	c.floatMin("data.epoch", p.Epoch, 0)
	c.intMin("data.position.epoch", int64(p.Position.Epoch), 0)
	c.intMin("data.position.step_in_epoch", p.Position.StepInEpoch, 0)
	c.oneOf("data.reason", p.Reason, CheckpointInterval, CheckpointEpochEnd)
	c.fileRefs("data.files", p.Files)
	c.floatMin("data.train_seconds", p.TrainSeconds, 0)
	c.intMin("data.size_bytes", p.SizeBytes, 0)
	c.intMin("data.tokens_seen", p.TokensSeen, 0)
	for _, o := range []struct {
		field string
		v     *float64
	}{{"data.loss", p.Loss}, {"data.eval_loss", p.EvalLoss}} {
		if o.v != nil {
			c.finite(o.field, *o.v)
		}
	}
	for _, o := range []struct {
		field string
		v     *float64
	}{{"data.write_seconds", p.WriteSeconds}, {"data.upload_seconds", p.UploadSeconds}} {
		if o.v != nil {
			c.floatMin(o.field, *o.v, 0)
		}
	}
	return c.err("checkpoint callback")
}

// Validate checks a urls payload.
func (p *URLRequest) Validate() error {
	c := &checker{}
	c.oneOf("data.purpose", p.Purpose, PurposeDataset, PurposeCheckpoint, PurposeCheckpointDownload, PurposeArtifact)
	for i, f := range p.Files {
		q := fmt.Sprintf("data.files[%d]", i)
		c.match(q+".name", f.Name, fileNamePattern, "must be a file name of letters, digits, '.', '_' or '-'")
		if f.SizeBytes != 0 {
			c.intMin(q+".size_bytes", f.SizeBytes, 1)
		}
		if f.SHA256 != "" {
			c.match(q+".sha256", f.SHA256, sha256Pattern, "must be 64 lowercase hex characters")
		}
	}
	c.intMin("data.step", p.Step, 0) // absent is 0; the server asks for it where the purpose needs it
	if p.CheckpointID != "" {
		c.match("data.checkpoint_id", p.CheckpointID, checkpointIDPattern, "must be 1-128 letters, digits, '.', '_', ':' or '-'")
	}
	c.intMin("data.retry", int64(p.Retry), 0)
	return c.err("urls callback")
}
