package contract

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"
)

// CallbackType names a worker callback.
type CallbackType string

// The callback types, in the order a successful attempt sends them:
// started, stage (download, load, train), progress…, stage (save, upload),
// artifact ×2, completed. A failed attempt ends with failed instead.
// checkpoint and urls (checkpoint.go) come among them.
const (
	TypeStarted   CallbackType = "started"
	TypeStage     CallbackType = "stage"
	TypeProgress  CallbackType = "progress"
	TypeArtifact  CallbackType = "artifact"
	TypeCompleted CallbackType = "completed"
	TypeFailed    CallbackType = "failed"
)

// Terminal reports whether t ends an attempt.
func (t CallbackType) Terminal() bool { return t == TypeCompleted || t == TypeFailed }

// Stage is a worker stage.
type Stage string

// The stages, in order.
const (
	StageDownload Stage = "download"
	StageLoad     Stage = "load"
	StageTrain    Stage = "train"
	StageSave     Stage = "save"
	StageUpload   Stage = "upload"
)

// Stages lists every stage in order.
var Stages = []Stage{StageDownload, StageLoad, StageTrain, StageSave, StageUpload}

func validStage(s Stage) bool {
	for _, v := range Stages {
		if s == v {
			return true
		}
	}
	return false
}

// FailureCode classifies a failed attempt.
type FailureCode string

// The failure codes of a failed callback.
const (
	CodeOOM             FailureCode = "oom"
	CodeNaNLoss         FailureCode = "nan_loss"
	CodeDatasetDownload FailureCode = "dataset_download" // includes a size or sha256 mismatch (as the worker reports it)
	CodeDatasetInvalid  FailureCode = "dataset_invalid"
	CodeModelLoad       FailureCode = "model_load"
	CodeTimeout         FailureCode = "timeout" // the spec's time_limit_seconds ran out
	CodeCancelled       FailureCode = "cancelled"
	CodeSpecInvalid     FailureCode = "spec_invalid"
	CodeUpload          FailureCode = "upload"
	CodeInternal        FailureCode = "internal"
)

// FailureCodes lists every failure code.
var FailureCodes = []FailureCode{CodeOOM, CodeNaNLoss, CodeDatasetDownload, CodeDatasetInvalid,
	CodeModelLoad, CodeTimeout, CodeCancelled, CodeSpecInvalid, CodeUpload, CodeInternal}

// Valid reports whether c is one of FailureCodes.
func (c FailureCode) Valid() bool {
	for _, v := range FailureCodes {
		if c == v {
			return true
		}
	}
	return false
}

// Callback is the envelope of every worker callback. Data holds the
// type's payload; decode it with Payload (or use ParseCallback).
type Callback struct {
	Version int          `json:"version"`
	Type    CallbackType `json:"type"`
	JobID   string       `json:"job_id"`
	Attempt int          `json:"attempt"`
	// Seq increases by one per message within an attempt, from 1; a
	// message given up after its retries leaves a gap, and retries of one
	// message keep its seq (and its webhook-id, WebhookID(job, attempt, seq)).
	Seq    int64           `json:"seq"`
	SentAt time.Time       `json:"sent_at"`
	Data   json.RawMessage `json:"data"`
}

// Payload is the typed data of one callback type.
type Payload interface {
	CallbackType() CallbackType
	Validate() error
}

// Started is the data of a started callback.
type Started struct {
	WorkerID      string `json:"worker_id"`
	RunPodJobID   string `json:"runpod_job_id"`
	WorkerVersion string `json:"worker_version"`
	GPU           *GPU   `json:"gpu"` // null without a GPU
}

// GPU describes the worker's GPUs.
type GPU struct {
	Name        string `json:"name"`
	MemoryBytes int64  `json:"memory_bytes"`
	Count       int    `json:"count"`
}

// StageChange is the data of a stage callback.
type StageChange struct {
	Stage Stage `json:"stage"`
}

// Progress is the data of a progress callback.
type Progress struct {
	Step            int64   `json:"step"`
	TotalSteps      int64   `json:"total_steps"`
	Epoch           float64 `json:"epoch"`
	Loss            float64 `json:"loss"`
	LearningRate    float64 `json:"learning_rate"`
	TokensPerSecond float64 `json:"tokens_per_second"` // non-padding input tokens/s since the previous progress
	GPUMemoryBytes  int64   `json:"gpu_memory_bytes"`  // peak allocated so far; 0 on CPU
	// Optional figures.
	ElapsedSeconds *float64 `json:"elapsed_seconds,omitempty"` // since the worker started the job
	ETASeconds     *float64 `json:"eta_seconds,omitempty"`     // training time left at the average rate so far
	GradNorm       *float64 `json:"grad_norm,omitempty"`
	EvalLoss       *float64 `json:"eval_loss,omitempty"` // on the steps that evaluated
}

// Artifact is the data of an artifact callback: one uploaded file.
type Artifact struct {
	Name      string `json:"name"` // ArtifactAdapterConfig or ArtifactAdapterModel
	SizeBytes int64  `json:"size_bytes"`
	SHA256    string `json:"sha256"`
}

// Completed is the data of a completed callback.
type Completed struct {
	FinalLoss     *float64         `json:"final_loss"` // loss of the last logged step; null if never finite
	Steps         int64            `json:"steps"`
	TrainSeconds  float64          `json:"train_seconds"`
	TokensTrained int64            `json:"tokens_trained"` // loss tokens after truncation × epochs
	Metrics       CompletedMetrics `json:"metrics"`
}

// CompletedMetrics are further figures of a completed attempt; all are
// optional for receivers (a missing one decodes as zero or nil).
type CompletedMetrics struct {
	InitialLoss                  *float64           `json:"initial_loss"`
	TrainLossMean                *float64           `json:"train_loss_mean"`
	TotalSteps                   int64              `json:"total_steps,omitempty"`
	Epochs                       int                `json:"epochs,omitempty"`
	Examples                     int64              `json:"examples,omitempty"`
	ExamplesUsed                 int64              `json:"examples_used,omitempty"`
	ExamplesTruncated            int64              `json:"examples_truncated,omitempty"`
	DatasetTokensTotal           int64              `json:"dataset_tokens_total,omitempty"`
	DatasetTokensTrained         int64              `json:"dataset_tokens_trained,omitempty"`
	DatasetTokensTrainedExpected *int64             `json:"dataset_tokens_trained_expected,omitempty"` // only when the worker's count differs from the spec's
	TokensSeen                   int64              `json:"tokens_seen,omitempty"`
	PaddedTokensSeen             int64              `json:"padded_tokens_seen,omitempty"`      // rows × padded width, every micro-batch
	MicroBatches                 int64              `json:"micro_batches,omitempty"`           // forward/backward passes
	SecondsPerMicroBatch         float64            `json:"seconds_per_micro_batch,omitempty"` // train_seconds / micro_batches
	TokensPerSecond              float64            `json:"tokens_per_second,omitempty"`
	PeakGPUMemoryBytes           int64              `json:"peak_gpu_memory_bytes,omitempty"`
	LoadSeconds                  float64            `json:"load_seconds,omitempty"`
	StageSeconds                 map[string]float64 `json:"stage_seconds,omitempty"`
	TotalSeconds                 float64            `json:"total_seconds,omitempty"`
	Device                       string             `json:"device,omitempty"`
	Quantization                 string             `json:"quantization,omitempty"`
	TrainableParameters          int64              `json:"trainable_parameters,omitempty"`
	LoRAModules                  int                `json:"lora_modules,omitempty"`
	// Added with checkpoints and evaluation. After a resume, steps,
	// train_seconds, micro_batches and the token figures count the whole
	// run; the run_ figures are this attempt's own.
	TrainExamples     int64    `json:"train_examples,omitempty"`
	EvalLoss          *float64 `json:"eval_loss,omitempty"`
	EvalExamples      int64    `json:"eval_examples,omitempty"`
	EvalTokens        int64    `json:"eval_tokens,omitempty"`
	Evaluations       int64    `json:"evaluations,omitempty"`
	EvalSeconds       float64  `json:"eval_seconds,omitempty"`
	Checkpoints       int64    `json:"checkpoints,omitempty"`
	CheckpointBytes   int64    `json:"checkpoint_bytes,omitempty"`
	CheckpointSeconds float64  `json:"checkpoint_seconds,omitempty"`
	ResumedFromStep   int64    `json:"resumed_from_step,omitempty"`
	RunTrainSeconds   float64  `json:"run_train_seconds,omitempty"`
	RunMicroBatches   int64    `json:"run_micro_batches,omitempty"`
	ResumeSkipped     string   `json:"resume_skipped,omitempty"`
}

// Failed is the data of a failed callback.
type Failed struct {
	Code    FailureCode `json:"code"`
	Message string      `json:"message"` // a plain sentence, never a traceback
	Advice  string      `json:"advice"`  // what the user can do
	Stage   Stage       `json:"stage,omitempty"`
}

func (*Started) CallbackType() CallbackType     { return TypeStarted }
func (*StageChange) CallbackType() CallbackType { return TypeStage }
func (*Progress) CallbackType() CallbackType    { return TypeProgress }
func (*Artifact) CallbackType() CallbackType    { return TypeArtifact }
func (*Completed) CallbackType() CallbackType   { return TypeCompleted }
func (*Failed) CallbackType() CallbackType      { return TypeFailed }

// Validate checks a started payload (every property is free text).
func (p *Started) Validate() error {
	c := &checker{}
	if p.GPU != nil {
		c.intMin("data.gpu.memory_bytes", p.GPU.MemoryBytes, 0)
		c.intMin("data.gpu.count", int64(p.GPU.Count), 1)
	}
	return c.err("started callback")
}

// Validate checks a stage payload.
func (p *StageChange) Validate() error {
	c := &checker{}
	if !validStage(p.Stage) {
		c.bad("data.stage", "must be one of download, load, train, save, upload, got %q", clip(string(p.Stage)))
	}
	return c.err("stage callback")
}

// Validate checks a progress payload.
func (p *Progress) Validate() error {
	c := &checker{}
	c.intMin("data.step", p.Step, 1)
	c.intMin("data.total_steps", p.TotalSteps, 1)
	c.floatMin("data.epoch", p.Epoch, 0)
	c.finite("data.loss", p.Loss)
	c.floatMin("data.learning_rate", p.LearningRate, 0)
	c.floatMin("data.tokens_per_second", p.TokensPerSecond, 0)
	c.intMin("data.gpu_memory_bytes", p.GPUMemoryBytes, 0)
	for _, o := range []struct {
		field string
		v     *float64
	}{{"data.elapsed_seconds", p.ElapsedSeconds}, {"data.eta_seconds", p.ETASeconds}, {"data.grad_norm", p.GradNorm}} {
		if o.v != nil {
			c.floatMin(o.field, *o.v, 0)
		}
	}
	if p.EvalLoss != nil {
		c.finite("data.eval_loss", *p.EvalLoss)
	}
	return c.err("progress callback")
}

// Validate checks an artifact payload.
func (p *Artifact) Validate() error {
	c := &checker{}
	c.oneOf("data.name", p.Name, ArtifactAdapterConfig, ArtifactAdapterModel)
	c.intMin("data.size_bytes", p.SizeBytes, 1)
	c.match("data.sha256", p.SHA256, sha256Pattern, "must be 64 lowercase hex characters")
	return c.err("artifact callback")
}

// Validate checks a completed payload.
func (p *Completed) Validate() error {
	c := &checker{}
	if p.FinalLoss != nil {
		c.finite("data.final_loss", *p.FinalLoss)
	}
	c.intMin("data.steps", p.Steps, 0)
	c.floatMin("data.train_seconds", p.TrainSeconds, 0)
	c.intMin("data.tokens_trained", p.TokensTrained, 0)
	c.intMin("data.metrics.padded_tokens_seen", p.Metrics.PaddedTokensSeen, 0)
	c.intMin("data.metrics.micro_batches", p.Metrics.MicroBatches, 0)
	c.floatMin("data.metrics.seconds_per_micro_batch", p.Metrics.SecondsPerMicroBatch, 0)
	return c.err("completed callback")
}

// Validate checks a failed payload.
func (p *Failed) Validate() error {
	c := &checker{}
	if !p.Code.Valid() {
		c.bad("data.code", "must be a known failure code, got %q", clip(string(p.Code)))
	}
	c.nonEmpty("data.message", p.Message)
	c.nonEmpty("data.advice", p.Advice)
	if p.Stage != "" && !validStage(p.Stage) {
		c.bad("data.stage", "must be one of download, load, train, save, upload, got %q", clip(string(p.Stage)))
	}
	return c.err("failed callback")
}

// sentAtPattern is the schema's pattern for sent_at (RFC 3339 with an
// upper-case T and Z, or a numeric offset).
var sentAtPattern = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$`)

// requiredData lists each type's required data properties.
var requiredData = map[CallbackType][]string{
	TypeStarted:    {"worker_id", "runpod_job_id", "worker_version"},
	TypeStage:      {"stage"},
	TypeProgress:   {"step", "total_steps", "epoch", "loss", "learning_rate", "tokens_per_second", "gpu_memory_bytes"},
	TypeArtifact:   {"name", "size_bytes", "sha256"},
	TypeCompleted:  {"steps", "train_seconds", "tokens_trained", "metrics"}, // final_loss: required but nullable, see below
	TypeFailed:     {"code", "message", "advice"},
	TypeCheckpoint: {"step", "total_steps", "epoch", "position", "reason", "partial", "files", "train_seconds"},
	TypeURLs:       {"purpose"},
}

func newPayload(t CallbackType) (Payload, error) {
	switch t {
	case TypeStarted:
		return &Started{}, nil
	case TypeStage:
		return &StageChange{}, nil
	case TypeProgress:
		return &Progress{}, nil
	case TypeArtifact:
		return &Artifact{}, nil
	case TypeCompleted:
		return &Completed{}, nil
	case TypeFailed:
		return &Failed{}, nil
	case TypeCheckpoint:
		return &Checkpoint{}, nil
	case TypeURLs:
		return &URLRequest{}, nil
	}
	return nil, fmt.Errorf("contract: unknown callback type %q", t)
}

// ParseCallback decodes and validates a callback body: the envelope, then
// the data of its type, reporting every problem at once in a
// *ValidationError. Unknown properties are ignored. It does not check the
// signature: call Verify on the same bytes first.
func ParseCallback(body []byte) (*Callback, Payload, error) {
	c := &checker{}
	top := c.object(body, "", "version", "type", "job_id", "attempt", "seq", "sent_at", "data")
	if top == nil || len(c.problems) > 0 {
		return nil, nil, c.err("callback")
	}
	// sent_at is decoded by hand so that a malformed date is a field problem.
	var aux struct {
		Callback
		SentAt string `json:"sent_at"`
	}
	if !c.decodeInto(body, &aux, "") {
		return nil, nil, c.err("callback")
	}
	cb := aux.Callback
	if sentAtPattern.MatchString(aux.SentAt) {
		cb.SentAt, _ = time.Parse(time.RFC3339Nano, aux.SentAt)
	}
	c.envelope(&cb)
	p, err := newPayload(cb.Type)
	if err != nil {
		return nil, nil, c.err("callback") // the type problem is already recorded
	}
	if data := c.object(cb.Data, "data", requiredData[cb.Type]...); data != nil {
		if cb.Type == TypeCompleted {
			if _, ok := data["final_loss"]; !ok { // null is allowed
				c.bad("data.final_loss", "is required (null when no finite loss was logged)")
			}
		}
		if len(c.problems) == 0 && c.decodeInto(cb.Data, p, "data") {
			if err := p.Validate(); err != nil {
				c.problems = append(c.problems, err.(*ValidationError).Problems...)
			}
		}
	}
	if err := c.err("callback"); err != nil {
		return nil, nil, err
	}
	return &cb, p, nil
}

func (c *checker) envelope(cb *Callback) {
	if cb.Version != Version {
		c.bad("version", "must be %d, got %d", Version, cb.Version)
	}
	if _, err := newPayload(cb.Type); err != nil {
		c.bad("type", "must be one of started, stage, progress, artifact, completed, failed, checkpoint, urls, got %q", clip(string(cb.Type)))
	}
	if c.nonEmpty("job_id", cb.JobID) {
		c.match("job_id", cb.JobID, jobIDPattern, "must be 1-128 letters, digits, '_' or '-'")
	}
	c.intMin("attempt", int64(cb.Attempt), 1)
	c.intMin("seq", cb.Seq, 1)
	if cb.SentAt.IsZero() {
		c.bad("sent_at", "must be an RFC 3339 date-time")
	}
}

// Validate checks the envelope and the data of its type.
func (cb *Callback) Validate() error {
	_, err := cb.Payload()
	return err
}

// Payload decodes and validates Data as the payload of cb.Type.
func (cb *Callback) Payload() (Payload, error) {
	c := &checker{}
	c.envelope(cb)
	p, err := newPayload(cb.Type)
	if err != nil {
		return nil, c.err("callback")
	}
	if c.decodeInto(cb.Data, p, "data") {
		if err := p.Validate(); err != nil {
			c.problems = append(c.problems, err.(*ValidationError).Problems...)
		}
	}
	if err := c.err("callback"); err != nil {
		return nil, err
	}
	return p, nil
}

// NewCallback builds the envelope of one message around p, validated.
// sentAt is kept to the millisecond, as the worker sends it.
func NewCallback(jobID string, attempt int, seq int64, sentAt time.Time, p Payload) (*Callback, error) {
	if p == nil {
		return nil, fmt.Errorf("contract: new callback: nil payload")
	}
	data, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("contract: encode %s payload: %w", p.CallbackType(), err)
	}
	cb := &Callback{
		Version: Version,
		Type:    p.CallbackType(),
		JobID:   jobID,
		Attempt: attempt,
		Seq:     seq,
		SentAt:  sentAt.UTC().Truncate(time.Millisecond),
		Data:    data,
	}
	if err := cb.Validate(); err != nil {
		return nil, err
	}
	return cb, nil
}
