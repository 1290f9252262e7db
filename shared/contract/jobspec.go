package contract

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Version is the contract version this package speaks (job spec and
// callbacks alike).
const Version = 1

// Artifact file names: the adapter as peft saves it.
const (
	ArtifactAdapterConfig = "adapter_config.json"
	ArtifactAdapterModel  = "adapter_model.safetensors"
)

// Quantizations the worker implements.
const (
	QuantizationNF4  = "nf4"  // QLoRA: 4-bit NF4, double quantization, BF16 compute
	QuantizationBF16 = "bf16" // LoRA on BF16 weights
)

// ChatRuleChatMLNoThink is the only chat rule of version 1.
const ChatRuleChatMLNoThink = "chatml-no-think"

// DatasetFormatChatJSONL is the only dataset format of version 1.
const DatasetFormatChatJSONL = "chat-jsonl"

// MaxTimeLimitSeconds is the largest time_limit_seconds (7 days, RunPod's
// longest execution timeout).
const MaxTimeLimitSeconds = 7 * 24 * 3600

// MaxMicroBatchTokens is the largest hyperparameters.micro_batch_tokens.
const MaxMicroBatchTokens = 65536

// ForbiddenTargets are LoRA targets the worker refuses: the MoE router and
// the shared-expert gate (tiny, destabilising), the depthwise conv1d and
// "all-linear" (it would wrap every routed expert). Targets naming routed
// experts (".experts." anywhere, or starting with "experts") are refused too.
var ForbiddenTargets = []string{"gate", "mlp.gate", "shared_expert_gate", "mlp.shared_expert_gate", "conv1d", "all-linear"}

// JobSpec is the job spec, version 1: the RunPod `input` of POST /run.
type JobSpec struct {
	Version          int             `json:"version"`
	JobID            string          `json:"job_id"`
	Attempt          int             `json:"attempt"` // the fencing token: callbacks of a superseded attempt get 409
	BaseModel        BaseModel       `json:"base_model"`
	Dataset          Dataset         `json:"dataset"`
	Hyperparameters  Hyperparameters `json:"hyperparameters"`
	Callback         CallbackTarget  `json:"callback"`
	Artifacts        Artifacts       `json:"artifacts"`
	TimeLimitSeconds int             `json:"time_limit_seconds"`
	// Optional (absent in an older spec): a checkpoint every this much
	// training wall time (worker default 600), the checkpoint a
	// re-dispatched attempt continues from, and held-out evaluation.
	CheckpointEverySeconds *float64    `json:"checkpoint_every_seconds,omitempty"`
	Resume                 *Resume     `json:"resume,omitempty"`
	Validation             *Validation `json:"validation,omitempty"`
}

// Resume names the checkpoint a re-dispatched attempt continues from: the
// job's latest. URLs are fallbacks; the worker asks for fresh ones.
type Resume struct {
	Step         int64                   `json:"step"`
	CheckpointID string                  `json:"checkpoint_id,omitempty"`
	Files        []FileRef               `json:"files,omitempty"`
	URLs         map[string]PresignedURL `json:"urls,omitempty"`
}

// Validation is the held-out evaluation of a job: a share of the dataset
// (Split) or a second dataset. Nil fields take the worker's defaults.
type Validation struct {
	Split       *float64           `json:"split,omitempty"`
	MaxExamples *int               `json:"max_examples,omitempty"`
	EverySteps  *int64             `json:"every_steps,omitempty"`
	Seed        *int64             `json:"seed,omitempty"`
	Dataset     *ValidationDataset `json:"dataset,omitempty"`
}

// ValidationDataset is a second ready dataset evaluated instead of a
// held-out share; its counts are optional.
type ValidationDataset struct {
	URL           string `json:"url"`
	SHA256        string `json:"sha256"`
	SizeBytes     int64  `json:"size_bytes"`
	Format        string `json:"format"`
	Examples      *int64 `json:"examples,omitempty"`
	TokensTotal   *int64 `json:"tokens_total,omitempty"`
	TokensTrained *int64 `json:"tokens_trained,omitempty"`
}

// BaseModel says which cached checkpoint to train and how.
type BaseModel struct {
	ID           string   `json:"id"`          // hub id, recorded in adapter_config.json; never downloaded
	VolumePath   string   `json:"volume_path"` // absolute directory of the cached checkpoint
	Quantization string   `json:"quantization"`
	ChatRule     string   `json:"chat_rule"`
	LoRATargets  []string `json:"lora_targets"` // peft target_modules (module name suffixes)
}

// Dataset is the validated dataset the worker downloads.
type Dataset struct {
	URL           string `json:"url"` // presigned GET; must allow Range requests
	SHA256        string `json:"sha256"`
	SizeBytes     int64  `json:"size_bytes"`
	Format        string `json:"format"`
	Examples      int64  `json:"examples"`
	TokensTotal   int64  `json:"tokens_total"`
	TokensTrained int64  `json:"tokens_trained"`
}

// Hyperparameters of the run, within the same bounds as pipeline.Bounds.
type Hyperparameters struct {
	LearningRate         float64 `json:"learning_rate"`
	BatchSize            int     `json:"batch_size"`
	GradientAccumulation int     `json:"gradient_accumulation"`
	Epochs               int     `json:"epochs"`
	LoRARank             int     `json:"lora_rank"`
	LoRAAlpha            int     `json:"lora_alpha"`
	LoRADropout          float64 `json:"lora_dropout"`
	MaxSeqLength         int     `json:"max_seq_length"`
	WarmupRatio          float64 `json:"warmup_ratio"`
	// MicroBatchTokens is the most padded tokens (rows × longest row) one
	// micro-batch may hold: the worker cuts each optimizer step's
	// batch_size × gradient_accumulation examples, sorted by length, into
	// micro-batches within it. Optional: absent, the worker takes
	// max_seq_length × batch_size. At least max_seq_length, so that the
	// longest example fits alone.
	MicroBatchTokens *int `json:"micro_batch_tokens,omitempty"`
}

// StepsPerEpoch is the number of optimizer steps one epoch of examples
// takes: ceil(examples / (batch_size × gradient_accumulation)).
func (h Hyperparameters) StepsPerEpoch(examples int64) int64 {
	per := int64(h.BatchSize) * int64(h.GradientAccumulation)
	if per <= 0 || examples <= 0 {
		return 0
	}
	return (examples + per - 1) / per
}

// TotalSteps is StepsPerEpoch × epochs.
func (h Hyperparameters) TotalSteps(examples int64) int64 {
	return h.StepsPerEpoch(examples) * int64(h.Epochs)
}

// CallbackTarget says where and how often the worker reports.
type CallbackTarget struct {
	URL                  string  `json:"url"`
	Secret               string  `json:"secret"` // "whsec_" + base64 of the per-job key (FormatSecret)
	ProgressEverySteps   int     `json:"progress_every_steps"`
	ProgressEverySeconds float64 `json:"progress_every_seconds"`
}

// Artifacts are the presigned upload targets of the adapter's two files.
type Artifacts struct {
	AdapterConfig Upload `json:"adapter_config.json"`
	AdapterModel  Upload `json:"adapter_model.safetensors"`
}

// ByName returns the upload target of an artifact file name.
func (a Artifacts) ByName(name string) (Upload, bool) {
	switch name {
	case ArtifactAdapterConfig:
		return a.AdapterConfig, true
	case ArtifactAdapterModel:
		return a.AdapterModel, true
	}
	return Upload{}, false
}

// Upload is one presigned PUT.
type Upload struct {
	URL     string            `json:"url"`
	Method  string            `json:"method"`            // always "PUT"
	Headers map[string]string `json:"headers,omitempty"` // sent as given (the URL was signed with them)
}

// ParseJobSpec decodes and validates a job spec, reporting every problem
// at once in a *ValidationError. Unknown properties are ignored.
func ParseJobSpec(data []byte) (*JobSpec, error) {
	c := &checker{}
	top := c.object(data, "", "version", "job_id", "attempt", "base_model", "dataset",
		"hyperparameters", "callback", "artifacts", "time_limit_seconds")
	if top == nil {
		return nil, c.err("job spec")
	}
	sub := func(key string, required ...string) map[string]json.RawMessage {
		raw, ok := top[key]
		if !ok || isNull(raw) {
			return nil // already reported as required
		}
		return c.object(raw, key, required...)
	}
	sub("base_model", "id", "volume_path", "quantization", "chat_rule", "lora_targets")
	sub("dataset", "url", "sha256", "size_bytes", "format", "examples", "tokens_total", "tokens_trained")
	sub("hyperparameters", "learning_rate", "batch_size", "gradient_accumulation", "epochs",
		"lora_rank", "lora_alpha", "lora_dropout", "max_seq_length", "warmup_ratio")
	sub("callback", "url", "secret", "progress_every_steps", "progress_every_seconds")
	sub("resume", "step")
	if val := sub("validation"); val != nil {
		if raw, ok := val["dataset"]; ok && !isNull(raw) {
			c.object(raw, "validation.dataset", "url", "sha256", "size_bytes", "format")
		}
	}
	if arts := sub("artifacts", ArtifactAdapterConfig, ArtifactAdapterModel); arts != nil {
		for _, name := range []string{ArtifactAdapterConfig, ArtifactAdapterModel} {
			if raw, ok := arts[name]; ok && !isNull(raw) {
				c.object(raw, "artifacts."+name, "url", "method")
			}
		}
	}
	if len(c.problems) > 0 {
		return nil, c.err("job spec")
	}
	var s JobSpec
	if !c.decodeInto(data, &s, "") {
		return nil, c.err("job spec")
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate checks every value of s against the schema's rules (and the
// worker's stricter ones: no routed-expert targets, a secret of 24–64
// bytes), reporting every problem at once in a *ValidationError.
func (s *JobSpec) Validate() error {
	c := &checker{}
	if s.Version != Version {
		c.bad("version", "must be %d, got %d", Version, s.Version)
	}
	if c.nonEmpty("job_id", s.JobID) {
		c.match("job_id", s.JobID, jobIDPattern, "must be 1-128 letters, digits, '_' or '-'")
	}
	c.intMin("attempt", int64(s.Attempt), 1)
	c.intRange("time_limit_seconds", int64(s.TimeLimitSeconds), 1, MaxTimeLimitSeconds)

	bm := s.BaseModel
	c.nonEmpty("base_model.id", bm.ID)
	if c.nonEmpty("base_model.volume_path", bm.VolumePath) && !strings.HasPrefix(bm.VolumePath, "/") {
		c.bad("base_model.volume_path", "must be an absolute path, got %q", clip(bm.VolumePath))
	}
	c.oneOf("base_model.quantization", bm.Quantization, QuantizationNF4, QuantizationBF16)
	c.oneOf("base_model.chat_rule", bm.ChatRule, ChatRuleChatMLNoThink)
	checkTargets(c, bm.LoRATargets)

	ds := s.Dataset
	c.httpURL("dataset.url", ds.URL)
	c.match("dataset.sha256", ds.SHA256, sha256Pattern, "must be 64 lowercase hex characters")
	c.intMin("dataset.size_bytes", ds.SizeBytes, 1)
	c.oneOf("dataset.format", ds.Format, DatasetFormatChatJSONL)
	c.intMin("dataset.examples", ds.Examples, 1)
	c.intMin("dataset.tokens_total", ds.TokensTotal, 0)
	c.intMin("dataset.tokens_trained", ds.TokensTrained, 0)

	h := s.Hyperparameters
	c.floatRange("hyperparameters.learning_rate", h.LearningRate, 1e-5, 1e-3)
	c.intRange("hyperparameters.batch_size", int64(h.BatchSize), 1, 64)
	c.intRange("hyperparameters.gradient_accumulation", int64(h.GradientAccumulation), 1, 64)
	c.intRange("hyperparameters.epochs", int64(h.Epochs), 1, 20)
	c.intRange("hyperparameters.lora_rank", int64(h.LoRARank), 4, 128)
	c.intRange("hyperparameters.lora_alpha", int64(h.LoRAAlpha), 1, 512)
	c.floatRange("hyperparameters.lora_dropout", h.LoRADropout, 0, 0.5)
	c.intRange("hyperparameters.max_seq_length", int64(h.MaxSeqLength), 256, 32768)
	c.floatRange("hyperparameters.warmup_ratio", h.WarmupRatio, 0, 0.5)
	if b := h.MicroBatchTokens; b != nil {
		c.intRange("hyperparameters.micro_batch_tokens", int64(*b), 1, MaxMicroBatchTokens)
		if *b >= 1 && *b < h.MaxSeqLength {
			c.bad("hyperparameters.micro_batch_tokens", "must be at least max_seq_length (%d), got %d", h.MaxSeqLength, *b)
		}
	}

	cb := s.Callback
	c.httpURL("callback.url", cb.URL)
	if _, err := ParseSecret(cb.Secret); err != nil {
		c.bad("callback.secret", "%s", strings.TrimPrefix(err.Error(), "contract: "))
	}
	c.intMin("callback.progress_every_steps", int64(cb.ProgressEverySteps), 1)
	c.floatMin("callback.progress_every_seconds", cb.ProgressEverySeconds, 1)

	for _, a := range []struct {
		name string
		up   Upload
	}{{ArtifactAdapterConfig, s.Artifacts.AdapterConfig}, {ArtifactAdapterModel, s.Artifacts.AdapterModel}} {
		p := "artifacts." + a.name
		c.httpURL(p+".url", a.up.URL)
		c.oneOf(p+".method", a.up.Method, "PUT")
	}
	s.validateOptional(c)
	return c.err("job spec")
}

func (s *JobSpec) validateOptional(c *checker) {
	if v := s.CheckpointEverySeconds; v != nil && !(*v > 0 && *v <= MaxTimeLimitSeconds) {
		c.bad("checkpoint_every_seconds", "must be above 0 and at most %d, got %s", MaxTimeLimitSeconds, fmtNum(*v))
	}
	if r := s.Resume; r != nil {
		c.intMin("resume.step", r.Step, 1)
		if r.CheckpointID != "" {
			c.match("resume.checkpoint_id", r.CheckpointID, checkpointIDPattern, "must be 1-128 letters, digits, '.', '_', ':' or '-'")
		}
		if len(r.Files) > 0 {
			c.fileRefs("resume.files", r.Files)
		}
		for name, u := range r.URLs {
			c.httpURL("resume.urls."+name+".url", u.URL)
			c.oneOf("resume.urls."+name+".method", u.Method, "GET")
		}
	}
	v := s.Validation
	if v == nil {
		return
	}
	if v.Split != nil {
		c.floatRange("validation.split", *v.Split, 0, 0.5)
	}
	if v.MaxExamples != nil {
		c.intRange("validation.max_examples", int64(*v.MaxExamples), 1, 100000)
	}
	if v.EverySteps != nil {
		c.intMin("validation.every_steps", *v.EverySteps, 1)
	}
	if v.Seed != nil {
		c.intRange("validation.seed", *v.Seed, 0, 2147483647)
	}
	if d := v.Dataset; d != nil {
		c.httpURL("validation.dataset.url", d.URL)
		c.match("validation.dataset.sha256", d.SHA256, sha256Pattern, "must be 64 lowercase hex characters")
		c.intMin("validation.dataset.size_bytes", d.SizeBytes, 1)
		c.oneOf("validation.dataset.format", d.Format, DatasetFormatChatJSONL)
		for _, o := range []struct {
			field string
			v     *int64
		}{{"validation.dataset.examples", d.Examples}, {"validation.dataset.tokens_total", d.TokensTotal}, {"validation.dataset.tokens_trained", d.TokensTrained}} {
			if o.v != nil {
				c.intMin(o.field, *o.v, 0)
			}
		}
	}
}

func checkTargets(c *checker, targets []string) {
	const field = "base_model.lora_targets"
	if len(targets) == 0 {
		c.bad(field, "must be a non-empty list of module name suffixes")
		return
	}
	seen := make(map[string]bool, len(targets))
	for i, t := range targets {
		p := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case !targetPattern.MatchString(t):
			c.bad(p, "must be a module name suffix like q_proj, got %q", clip(t))
		case forbiddenTarget(t):
			c.bad(p, "%q may not be adapted (router, gates, conv1d, routed experts and all-linear are excluded)", t)
		case seen[t]:
			c.bad(p, "repeats %q", t)
		}
		seen[t] = true
	}
}

func forbiddenTarget(t string) bool {
	for _, f := range ForbiddenTargets {
		if t == f {
			return true
		}
	}
	return strings.Contains("."+t+".", ".experts.") || strings.HasPrefix(t, "experts")
}
