package capacity

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/estimate"
	"github.com/brightrun/brightrun/shared/holdout"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// IDs makes ids of the shape the service makes (a prefix and a ULID),
// from a seeded source, so that a simulation is repeatable.
type IDs struct{ r *rand.ChaCha8 }

// NewIDs returns ids drawn from seed.
func NewIDs(seed uint64) *IDs {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return &IDs{r: rand.NewChaCha8(s)}
}

// New returns an id with prefix, made at now.
func (g *IDs) New(prefix string, now time.Time) string {
	return prefix + "_" + strings.ToLower(ulid.MustNew(ulid.Timestamp(now), g.r).String())
}

// Owner is the owner name of user i: what the authenticator yields for a
// Cognito user (its sub, a UUID).
func Owner(i int) string {
	return fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", 0x5eed0000+i, i%0xffff, i%0xfff, (i*7)%0xfff, uint64(i)*2654435761)
}

// NewDataset is a dataset as the API creates it: awaiting its upload.
func NewDataset(ids *IDs, owner string, now time.Time) *pipeline.Dataset {
	id := ids.New("ds", now)
	sha := strings.Repeat("6bac719ad408ecf4", 4)
	return &pipeline.Dataset{ID: id, Owner: owner, Name: "support-conversations-2026-11", Status: pipeline.DatasetAwaitingUpload,
		SizeBytes: 48 << 20, SHA256: sha, ObjectKey: pipeline.DatasetKey(owner, id), CreatedAt: now, UpdatedAt: now}
}

// Validated marks d as validation leaves a valid dataset: ready, with its
// summary (12,000 examples, and the token counts of the examples its
// evaluation may hold out, holdout.MaxExamples of each kind).
func Validated(d *pipeline.Dataset, now time.Time) {
	split := &pipeline.SplitTokens{}
	for i := range holdout.MaxExamples {
		split.HeldOut = append(split.HeldOut, [2]int64{int64(600 + i*7%1800), int64(250 + i*3%900)})
		split.First = append(split.First, [2]int64{int64(700 + i*11%1700), int64(300 + i*5%800)})
	}
	d.Status, d.UpdatedAt = pipeline.DatasetReady, now
	d.ObjectETag, d.ContentSHA256 = `"9b2cf535f27731c974343645a3985328"`, d.SHA256
	d.Validation = &pipeline.ValidationSummary{Valid: true, Lines: 12_003, BlankLines: 3, Examples: 12_000, Bytes: d.SizeBytes,
		Tokens:        pipeline.TokenCounts{Total: 9_834_120, Trained: 4_120_577},
		ErrorCounts:   map[string]int64{},
		WarningCounts: map[string]int64{"long_example": 14, "duplicate": 2},
		Stats: pipeline.ExampleStats{
			MessagesPerExample:       pipeline.Distribution{Min: 2, Mean: 4.6, P50: 4, P95: 10, Max: 24},
			TokensPerExample:         pipeline.Distribution{Min: 96, Mean: 819.5, P50: 702, P95: 2210, Max: 5120},
			ExamplesOverMaxSeqLength: 14, MaxSeqLength: 4096,
		},
		Split: split,
	}
}

// NewJob is a job as the API creates it on dataset d: the default
// preset's hyperparameters and the estimator's estimate for the default
// model on its cheapest GPU.
func NewJob(ids *IDs, d *pipeline.Dataset, now time.Time) (*pipeline.Job, error) {
	cat := catalog.Default()
	hp, err := pipeline.ResolveHyperparameters(pipeline.DefaultPreset, pipeline.HyperparameterOverrides{})
	if err != nil {
		return nil, err
	}
	v := d.Validation
	in := estimate.Input{
		Dataset: estimate.Dataset{Examples: v.Examples, TokensTotal: v.Tokens.Total, TokensTrained: v.Tokens.Trained,
			TokensPerExampleMax: v.Stats.TokensPerExample.Max, TokensPerExampleP95: v.Stats.TokensPerExample.P95,
			TokensPerExampleP50: v.Stats.TokensPerExample.P50, TokensPerExampleMin: v.Stats.TokensPerExample.Min},
		Hyperparameters: hp, Model: catalog.DefaultModelID,
	}
	cmp, err := estimate.Compare(cat, in)
	if err != nil {
		return nil, err
	}
	in.GPU = cmp.CheapestGPU
	est, err := estimate.Estimate(cat, in)
	if err != nil {
		return nil, err
	}
	budget := 250.0
	return &pipeline.Job{
		ID: ids.New("job", now), Owner: d.Owner, Name: "support-bot-v7", DatasetID: d.ID, BaseModel: catalog.DefaultModelID,
		GPUType: est.GPU, Preset: pipeline.DefaultPreset, Hyperparameters: hp, Status: pipeline.JobQueued, BudgetUSD: &budget,
		RequestHash: strings.Repeat("3f2a9c0d", 8), CreatedAt: now, UpdatedAt: now,
		Estimate: &pipeline.JobEstimate{
			GPU: est.GPU, PriceUSDPerSecond: est.PriceUSDPerSecond, TotalSteps: int(est.Steps.Total), MicroBatchTokens: est.MicroBatchTokens,
			DurationSeconds:         pipeline.Range{Low: float64(est.DurationSeconds.Low), Expected: float64(est.DurationSeconds.Expected), High: float64(est.DurationSeconds.High)},
			CostUSD:                 pipeline.Range{Low: est.CostUSD.Low, Expected: est.CostUSD.Expected, High: est.CostUSD.High},
			ExecutionTimeoutSeconds: est.ExecutionTimeoutSeconds, PricesDate: est.PricesDate, EstimatorVersion: est.EstimatorVersion,
			Evaluation: est.Evaluation,
		},
	}, nil
}

// Worker is a job's GPU worker: it sends the job's callbacks as the
// worker does (contract fixtures' shapes), and the lifecycle applies
// them as the callback endpoint does.
type Worker struct {
	Owner, JobID, RunID string
	Attempt             int
	Seq                 int64
	Step, TotalSteps    int64
}

// NewWorker is the worker of job's current attempt.
func NewWorker(j *pipeline.Job) *Worker {
	total := int64(2250)
	if j.Estimate != nil && j.Estimate.TotalSteps > 0 {
		total = int64(j.Estimate.TotalSteps)
	}
	return &Worker{Owner: j.Owner, JobID: j.ID, RunID: j.RunPodID, Attempt: j.Attempt, TotalSteps: total}
}

// Send sends one callback of type typ with data at the clock's time.
func (w *Worker) Send(ctx context.Context, e *Env, typ contract.CallbackType, data string) (*pipeline.Job, error) {
	w.Seq++
	body := []byte(fmt.Sprintf(`{"version":1,"type":%q,"job_id":%q,"attempt":%d,"seq":%d,"sent_at":%q,"data":%s}`,
		typ, w.JobID, w.Attempt, w.Seq, e.Clock.Now().Format("2006-01-02T15:04:05.000Z07:00"), data))
	cb, p, err := contract.ParseCallback(body)
	if err != nil {
		return nil, fmt.Errorf("callback %s of job %s: %w", typ, w.JobID, err)
	}
	j, err := e.Jobs.ApplyCallback(ctx, w.Owner, cb, p, contract.WebhookID(w.JobID, w.Attempt, w.Seq), body)
	if err != nil {
		return nil, fmt.Errorf("apply callback %s of job %s: %w", typ, w.JobID, err)
	}
	return j, nil
}

// Started sends the run's started callback.
func (w *Worker) Started(ctx context.Context, e *Env) (*pipeline.Job, error) {
	return w.Send(ctx, e, contract.TypeStarted, fmt.Sprintf(`{"worker_id":"a1b2c3d4e5f6","runpod_job_id":%q,"worker_version":"0.1.0",`+
		`"gpu":{"name":"NVIDIA H100 80GB HBM3","memory_bytes":85520809984,"count":1}}`, w.RunID))
}

// Stage sends a stage callback.
func (w *Worker) Stage(ctx context.Context, e *Env, s contract.Stage) (*pipeline.Job, error) {
	return w.Send(ctx, e, contract.TypeStage, fmt.Sprintf(`{"stage":%q}`, s))
}

// Progress sends the next progress callback (steps advance by 4).
func (w *Worker) Progress(ctx context.Context, e *Env) (*pipeline.Job, error) {
	w.Step = min(w.Step+4, w.TotalSteps)
	frac := float64(w.Step) / float64(w.TotalSteps)
	return w.Send(ctx, e, contract.TypeProgress, fmt.Sprintf(`{"step":%d,"total_steps":%d,"epoch":%.4f,"loss":%.4f,"learning_rate":7.1e-05,`+
		`"tokens_per_second":2710.4,"gpu_memory_bytes":49034825728,"elapsed_seconds":%.1f,"eta_seconds":%.1f,"grad_norm":0.4127}`,
		w.Step, w.TotalSteps, 3*frac, 1.9-frac, 10*float64(w.Step)/4, 10*float64(w.TotalSteps-w.Step)/4))
}

// Checkpoint uploads a checkpoint's four files and sends its callback.
func (w *Worker) Checkpoint(ctx context.Context, e *Env) (*pipeline.Job, error) {
	files := []struct {
		name string
		size int64
	}{{"adapter_config.json", 1032}, {"adapter_model.safetensors", 92227400}, {"training_state.safetensors", 48318216}, {"trainer_state.json", 98455}}
	var list []string
	for _, f := range files {
		e.Objects.Uploaded(pipeline.CheckpointKey(w.Owner, w.JobID, w.Attempt, w.Step, f.name), f.size)
		list = append(list, fmt.Sprintf(`{"name":%q,"size_bytes":%d,"sha256":%q}`, f.name, f.size, strings.Repeat("806f3296", 8)))
	}
	return w.Send(ctx, e, contract.TypeCheckpoint, fmt.Sprintf(`{"step":%d,"total_steps":%d,"epoch":%.4f,"position":{"epoch":0,"step_in_epoch":%d},`+
		`"reason":"interval","partial":true,"files":[%s],"size_bytes":140645103,"train_seconds":1854.1,"tokens_seen":2460125,`+
		`"loss":1.0931,"eval_loss":1.1518,"write_seconds":1.42,"upload_seconds":2.87}`,
		w.Step, w.TotalSteps, 3*float64(w.Step)/float64(w.TotalSteps), w.Step, strings.Join(list, ",")))
}

// Artifact uploads one adapter file and sends its callback.
func (w *Worker) Artifact(ctx context.Context, e *Env, name string, size int64) (*pipeline.Job, error) {
	e.Objects.Uploaded(pipeline.ArtifactKey(w.Owner, w.JobID, w.Attempt, name), size)
	return w.Send(ctx, e, contract.TypeArtifact, fmt.Sprintf(`{"name":%q,"size_bytes":%d,"sha256":%q}`, name, size, strings.Repeat("0b46609a", 8)))
}

// Completed sends the completed callback of a run on a GPU.
func (w *Worker) Completed(ctx context.Context, e *Env) (*pipeline.Job, error) {
	return w.Send(ctx, e, contract.TypeCompleted, fmt.Sprintf(`{"final_loss":0.8312,"steps":%d,"train_seconds":27880.512,"tokens_trained":12361731,`+
		`"metrics":{"initial_loss":1.9127,"train_loss_mean":1.0544,"total_steps":%d,"epochs":3,"examples":12000,"examples_used":11998,`+
		`"examples_truncated":14,"dataset_tokens_total":9834120,"dataset_tokens_trained":4120577,"tokens_seen":29502360,`+
		`"padded_tokens_seen":31449516,"micro_batches":4512,"seconds_per_micro_batch":6.1792,"tokens_per_second":1058.19,`+
		`"peak_gpu_memory_bytes":49034825728,"load_seconds":412.7,"stage_seconds":{"download":38.2,"load":415.9,"train":27880.6,`+
		`"save":3.1,"upload":4.4},"total_seconds":28342.2,"device":"cuda","quantization":"nf4","trainable_parameters":60817408,"lora_modules":480}}`,
		w.TotalSteps, w.TotalSteps))
}

// Failed sends a failed callback: code "oom", or "cancelled" for a worker
// that stopped because it was told to.
func (w *Worker) Failed(ctx context.Context, e *Env, code string) (*pipeline.Job, error) {
	return w.Send(ctx, e, contract.TypeFailed, fmt.Sprintf(`{"code":%q,"message":"The GPU ran out of memory during training (Tried to allocate 2.00 GiB).",`+
		`"advice":"Lower batch_size from 2 to 1 (and raise gradient_accumulation from 8 to 16 to keep the same effective batch), or lora_rank from 16 to 8, or max_seq_length from 4096 to 2048.",`+
		`"stage":"train"}`, code))
}

// Adapter files a completed run uploads.
var adapterFiles = []struct {
	name string
	size int64
}{{contract.ArtifactAdapterConfig, 1032}, {contract.ArtifactAdapterModel, 121700184}}

// Dispatch claims j and records its run, as the dispatcher does.
func Dispatch(ctx context.Context, e *Env, j *pipeline.Job, runID string) (*pipeline.Job, error) {
	claimed, err := e.Jobs.Claim(ctx, j.Owner, j.ID, pipeline.DefaultLease)
	if err != nil {
		return nil, err
	}
	return e.Jobs.RecordRun(ctx, claimed, runID)
}

// RunID is a RunPod job id of the shape RunPod gives.
func RunID(ids *IDs, now time.Time) string {
	u := ids.New("x", now)[2:]
	return fmt.Sprintf("%s-%s-%s-%s-%s-u1", u[:8], u[8:12], u[12:16], u[16:20], u[20:26]+"000000")
}
