// Package dispatch submits queued jobs to the GPU provider (RunPod
// Serverless). It claims a job for a lease (pipeline.Lifecycle.Claim: a
// conditional transition that bumps the attempt number, the fencing
// token), presigns the dataset download and the adapter uploads, submits,
// and records the run id. Duplicate deliveries submit once, concurrent
// ones too: a delivery that finds the job claimed under a live lease
// leaves it alone and comes back later. A job cancelled before its turn
// is skipped; a dataset that is not ready (the job's training dataset or
// its validation dataset) fails the job. A crash between claiming and
// recording is survived: once the lease lapses, the redelivered message
// claims a new attempt, and the superseded attempt's worker is refused and
// told to stop at its first callback.
package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/estimate"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/runpod"
)

// GPU is what dispatching needs of the GPU provider.
type GPU interface {
	Run(ctx context.Context, req runpod.RunRequest) (runpod.JobStatus, error)
	Cancel(ctx context.Context, id string) (runpod.JobStatus, error)
}

// Presigner hands out the URLs the worker uses.
type Presigner interface {
	PresignGet(ctx context.Context, key string, ttl time.Duration) (pipeline.SignedRequest, error)
	PresignPut(ctx context.Context, key string, size int64, sha256Hex string, ttl time.Duration) (pipeline.SignedRequest, error)
}

// Dispatcher submits jobs.
type Dispatcher struct {
	// Jobs runs the jobs' lifecycle: the claim, the record of the run and
	// the failure are its.
	Jobs    *pipeline.Lifecycle
	Blobs   Presigner
	GPU     GPU
	Catalog *catalog.Catalog
	// PublicURL is the API's base URL as the worker and RunPod reach it.
	PublicURL string
	// CallbackSecret is the master secret of callback signing and of the
	// RunPod webhook tokens.
	CallbackSecret []byte
	// LeaseTimeout is how long a claim holds the job against other
	// deliveries of its message: longer than one dispatch can take.
	// Default pipeline.DefaultLease; under a context with a deadline (a
	// Lambda invocation) the claim ends LeaseMargin after the deadline
	// when that is sooner.
	LeaseTimeout time.Duration
	// MaxAttempts is how many failed submissions fail the job (and, with
	// the queue's redrive policy set to the same number, send the message
	// to the dead-letter queue). Default 5.
	MaxAttempts int
	// QueueAllowance is how long a submitted job may wait for a worker
	// before RunPod's ttl deletes it. Default 2 h.
	QueueAllowance time.Duration
	// ProgressEverySteps and ProgressEverySeconds set the worker's
	// callback interval. Defaults 10 steps, 30 s.
	ProgressEverySteps   int
	ProgressEverySeconds float64
	// Fair, when set, admits a job only in its fair turn (its owner's
	// limit, the GPU slots, the owners' turns); a job not admitted is held
	// queued with its place and reason, and its message dropped.
	Fair *pipeline.FairDispatch
	Log  *slog.Logger
	Now  func() time.Time
}

func (d *Dispatcher) now() time.Time {
	if d.Now != nil {
		return d.Now().UTC()
	}
	return time.Now().UTC()
}

func (d *Dispatcher) log() *slog.Logger {
	if d.Log != nil {
		return d.Log
	}
	return slog.Default()
}

func (d *Dispatcher) maxAttempts() int {
	if d.MaxAttempts > 0 {
		return d.MaxAttempts
	}
	return 5
}

// LeaseMargin is how long after its invocation's deadline a dispatcher's
// claim lasts.
const LeaseMargin = 15 * time.Second

// lease is how long a claim made now lasts.
func (d *Dispatcher) lease(ctx context.Context) time.Duration {
	lease := d.LeaseTimeout
	if lease <= 0 {
		lease = pipeline.DefaultLease
	}
	if dl, ok := ctx.Deadline(); ok {
		lease = min(lease, dl.Add(LeaseMargin).Sub(d.now()))
	}
	return max(lease, time.Second)
}

// release gives up a claim whose dispatch is retried, so that the next
// delivery claims the job at once; a failure is logged (the claim then
// lapses on its own).
func (d *Dispatcher) release(ctx context.Context, j *pipeline.Job) {
	if err := d.Jobs.ReleaseClaim(ctx, j); err != nil {
		d.log().WarnContext(ctx, "release the claim: the next delivery waits for it to lapse", "job_id", j.ID, "err", err)
	}
}

// HandleSQSEvent dispatches a batch, reporting the messages to retry as
// partial batch failures.
func (d *Dispatcher) HandleSQSEvent(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	var resp events.SQSEventResponse
	for _, m := range ev.Records {
		receives := 1
		if n, err := fmt.Sscan(m.Attributes["ApproximateReceiveCount"], &receives); n != 1 || err != nil {
			receives = 1
		}
		if err := d.HandleMessage(ctx, []byte(m.Body), receives); err != nil {
			if !errors.Is(err, pipeline.ErrLeaseHeld) {
				d.log().ErrorContext(ctx, "dispatch failed: the message will be retried", "message_id", m.MessageId, "err", err)
			}
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.MessageId})
		}
	}
	return resp, nil
}

// HandleMessage dispatches the job of one queue message, delivered for the
// receives-th time. A nil error means the message is done (delete it).
func (d *Dispatcher) HandleMessage(ctx context.Context, body []byte, receives int) error {
	var msg pipeline.JobMessage
	if err := json.Unmarshal(body, &msg); err != nil || msg.Owner == "" || msg.JobID == "" {
		d.log().ErrorContext(ctx, "malformed jobs queue message dropped", "body", string(body))
		return nil
	}
	log := d.log().With("owner", msg.Owner, "job_id", msg.JobID, "receives", receives)
	var claimed *pipeline.Job
	var err error
	claim := func() error {
		claimed, err = d.Jobs.Claim(ctx, msg.Owner, msg.JobID, d.lease(ctx))
		return nil // judged below
	}
	if d.Fair != nil {
		admitted, ferr := d.Fair.Admit(ctx, msg.Owner, msg.JobID, claim)
		if ferr != nil {
			return fmt.Errorf("plan fair dispatch: %w", ferr)
		}
		if !admitted {
			log.InfoContext(ctx, "job held by fair dispatch: it starts when its turn comes")
			return nil
		}
	} else {
		claim()
	}
	switch {
	case pipeline.ErrorCode(err) == pipeline.ENotFound:
		log.WarnContext(ctx, "queued job no longer exists: message dropped")
		return nil
	case errors.Is(err, pipeline.ErrLeaseHeld):
		// Another delivery of the message is dispatching the job: this one
		// comes back, and finds the job submitted (and is dropped), or its
		// dispatcher gone and the claim lapsed (and takes over).
		log.InfoContext(ctx, "job is being dispatched by another consumer: the message comes back later", "reason", err)
		return err
	case errors.Is(err, pipeline.ErrNotDispatchable):
		log.InfoContext(ctx, "job needs no dispatch: message dropped", "reason", err)
		return nil
	case err != nil:
		return err
	}
	log = log.With("attempt", claimed.Attempt)

	req, err := d.runRequest(ctx, claimed)
	if err != nil {
		// A job that cannot run as it is fails now; a store or signer
		// that failed (a throttle, an outage) is tried again.
		return d.failed(ctx, claimed, receives, !unfit(err), "spec", err)
	}
	st, err := d.GPU.Run(ctx, req)
	if err != nil {
		retryable := errors.Is(err, runpod.ErrUnavailable) || errors.Is(err, runpod.ErrRateLimited) || errors.Is(err, runpod.ErrOutcomeUnknown)
		return d.failed(ctx, claimed, receives, retryable, "submit", err)
	}
	log = log.With("run_id", st.ID)

	// Record the run, if the job is still this attempt's and still wanted.
	_, err = d.Jobs.RecordRun(ctx, claimed, st.ID)
	if errors.Is(err, pipeline.ErrNotDispatchable) {
		// Cancelled (or re-claimed) while we submitted: stop the run we started.
		if _, cerr := d.GPU.Cancel(ctx, st.ID); cerr != nil {
			log.ErrorContext(ctx, "cancel the run of a job that moved on", "err", cerr)
			return cerr
		}
		log.InfoContext(ctx, "job moved on while submitting: its run was cancelled", "reason", err)
		return nil
	}
	if err != nil {
		// The run exists but is not recorded: cancel it so that the retry
		// does not leave a paid run behind, then retry.
		if _, cerr := d.GPU.Cancel(ctx, st.ID); cerr != nil {
			log.ErrorContext(ctx, "cancel an unrecorded run", "err", cerr)
		}
		d.release(ctx, claimed)
		return fmt.Errorf("record run %s: %w", st.ID, err)
	}
	log.InfoContext(ctx, "job submitted")
	return nil
}

// failed handles a failed submission: retried (error returned, the message
// comes back) until the attempts are spent, then the job fails with the
// reason and the message goes to the dead-letter queue.
func (d *Dispatcher) failed(ctx context.Context, j *pipeline.Job, receives int, retryable bool, what string, cause error) error {
	if retryable && receives < d.maxAttempts() {
		d.Jobs.Event(ctx, j, "dispatch_retry", fmt.Sprintf("%s failed (try %d of %d): %v", what, receives, d.maxAttempts(), cause))
		d.release(ctx, j)
		return fmt.Errorf("%s: %w", what, cause)
	}
	reason := fmt.Sprintf("could not submit the job to the GPU provider: %v", cause)
	if retryable {
		reason = fmt.Sprintf("could not submit the job to the GPU provider after %d tries: %v", receives, cause)
	}
	if err := d.Jobs.DispatchFailed(ctx, j, reason); err != nil {
		return err
	}
	d.log().ErrorContext(ctx, "job failed at dispatch", "job_id", j.ID, "err", cause)
	if retryable {
		// Let the message reach the dead-letter queue as the record of it.
		return fmt.Errorf("%s: %w", what, cause)
	}
	return nil
}

// runRequest builds the RunPod request of the job's current attempt.
func (d *Dispatcher) runRequest(ctx context.Context, j *pipeline.Job) (runpod.RunRequest, error) {
	ds, err := d.Jobs.Store.GetDataset(ctx, j.Owner, j.DatasetID)
	if err != nil {
		return runpod.RunRequest{}, fmt.Errorf("dataset %s: %w", j.DatasetID, err)
	}
	// Only a ready dataset is trained on: one validating again, or invalid,
	// may hold a file other than the one its record describes.
	if ds.Status != pipeline.DatasetReady || ds.Validation == nil || ds.ContentSHA256 == "" {
		return runpod.RunRequest{}, pipeline.Errorf(pipeline.EPrecondition, "dataset %s is %s: only a ready dataset can be trained on", ds.ID, ds.Status)
	}
	m, err := d.Catalog.Model(j.BaseModel)
	if err != nil {
		return runpod.RunRequest{}, err
	}
	g, err := d.Catalog.GPU(j.GPUType)
	if err != nil {
		return runpod.RunRequest{}, err
	}
	q := m.QuantizationFor(g)
	exec := 24 * time.Hour
	if j.Estimate != nil && j.Estimate.ExecutionTimeoutSeconds > 0 {
		exec = time.Duration(j.Estimate.ExecutionTimeoutSeconds) * time.Second
	}
	exec = min(exec, runpod.MaxExecutionTimeout)
	queue := d.QueueAllowance
	if queue <= 0 {
		queue = 2 * time.Hour
	}
	ttl := min(exec+queue, runpod.MaxTTL)
	// URLs must outlive the queue wait and the run.
	urlTTL := min(ttl, 7*24*time.Hour)
	train := ds.TrainingFile() // the converted file of a ShareGPT or Alpaca upload
	get, err := d.Blobs.PresignGet(ctx, train.Key, urlTTL)
	if err != nil {
		return runpod.RunRequest{}, fmt.Errorf("presign dataset download: %w", err)
	}
	upload := func(name string) (contract.Upload, error) {
		req, err := d.Blobs.PresignPut(ctx, pipeline.ArtifactKey(j.Owner, j.ID, j.Attempt, name), -1, "", urlTTL)
		if err != nil {
			return contract.Upload{}, fmt.Errorf("presign %s upload: %w", name, err)
		}
		return contract.Upload{URL: req.URL, Method: req.Method, Headers: withoutLength(req.Headers)}, nil
	}
	cfgUp, err := upload(contract.ArtifactAdapterConfig)
	if err != nil {
		return runpod.RunRequest{}, err
	}
	modelUp, err := upload(contract.ArtifactAdapterModel)
	if err != nil {
		return runpod.RunRequest{}, err
	}
	every, seconds := d.ProgressEverySteps, d.ProgressEverySeconds
	if every <= 0 {
		every = 10
	}
	if seconds <= 0 {
		seconds = 30
	}
	budget, err := microBatchTokens(d.Catalog, j)
	if err != nil {
		return runpod.RunRequest{}, err
	}
	h := j.Hyperparameters
	spec := contract.JobSpec{
		Version: contract.Version, JobID: j.ID, Attempt: j.Attempt,
		BaseModel: contract.BaseModel{ID: m.ID, VolumePath: m.WeightsFor(q).Path, Quantization: string(q), ChatRule: m.ChatRule,
			LoRATargets: m.LoRATargetModules},
		Dataset: contract.Dataset{URL: get.URL, SHA256: train.SHA256, SizeBytes: train.SizeBytes, Format: contract.DatasetFormatChatJSONL,
			Examples: ds.Validation.Examples, TokensTotal: ds.Validation.Tokens.Total, TokensTrained: ds.Validation.Tokens.Trained},
		Hyperparameters: contract.Hyperparameters{LearningRate: h.LearningRate, BatchSize: h.BatchSize, GradientAccumulation: h.GradientAccumulation,
			Epochs: h.Epochs, LoRARank: h.LoRARank, LoRAAlpha: h.LoRAAlpha, LoRADropout: h.LoRADropout, MaxSeqLength: h.MaxSeqLength, WarmupRatio: h.WarmupRatio,
			MicroBatchTokens: &budget},
		Callback: contract.CallbackTarget{URL: pipeline.WorkerCallbackURL(d.PublicURL, j.Owner),
			Secret:             contract.FormatSecret(contract.DeriveSecret(d.CallbackSecret, j.ID)),
			ProgressEverySteps: every, ProgressEverySeconds: seconds},
		Artifacts:        contract.Artifacts{AdapterConfig: cfgUp, AdapterModel: modelUp},
		TimeLimitSeconds: int(exec / time.Second),
	}
	if spec.Validation, err = d.validation(ctx, j, urlTTL); err != nil {
		return runpod.RunRequest{}, err
	}
	// A re-dispatched attempt resumes from the job's latest checkpoint;
	// the worker asks for its download URLs when it starts.
	if c := j.LatestCheckpoint(); c != nil {
		spec.Resume = &contract.Resume{Step: c.Step, CheckpointID: c.ID, Files: pipeline.ManifestOf(c).Files}
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return runpod.RunRequest{}, err
	}
	if _, err := contract.ParseJobSpec(raw); err != nil {
		return runpod.RunRequest{}, pipeline.Errorf(pipeline.EInvalid, "job spec: %v", err)
	}
	return runpod.RunRequest{
		Input:   spec,
		Webhook: pipeline.RunPodWebhookURL(d.PublicURL, d.CallbackSecret, j.Owner, j.ID, j.Attempt),
		Policy:  runpod.Policy{ExecutionTimeout: exec, TTL: ttl},
	}, nil
}

// validation is the job spec's evaluation: the share the job chose, or its
// second dataset (only a ready one, for the same reason as the training
// dataset) with a download URL that lasts as long as the dataset's; nil
// leaves the worker's default share.
func (d *Dispatcher) validation(ctx context.Context, j *pipeline.Job, urlTTL time.Duration) (*contract.Validation, error) {
	v := j.Validation
	if v == nil {
		return nil, nil
	}
	if v.DatasetID == "" {
		return &contract.Validation{Split: v.Split}, nil
	}
	vd, err := d.Jobs.Store.GetDataset(ctx, j.Owner, v.DatasetID)
	if err != nil {
		return nil, fmt.Errorf("validation dataset %s: %w", v.DatasetID, err)
	}
	if vd.Status != pipeline.DatasetReady || vd.Validation == nil || vd.ContentSHA256 == "" {
		return nil, pipeline.Errorf(pipeline.EPrecondition, "validation dataset %s is %s: only a ready dataset can be evaluated on", vd.ID, vd.Status)
	}
	train := vd.TrainingFile()
	get, err := d.Blobs.PresignGet(ctx, train.Key, urlTTL)
	if err != nil {
		return nil, fmt.Errorf("presign validation dataset download: %w", err)
	}
	examples, total, trained := vd.Validation.Examples, vd.Validation.Tokens.Total, vd.Validation.Tokens.Trained
	return &contract.Validation{Dataset: &contract.ValidationDataset{
		URL: get.URL, SHA256: train.SHA256, SizeBytes: train.SizeBytes, Format: contract.DatasetFormatChatJSONL,
		Examples: &examples, TokensTotal: &total, TokensTrained: &trained,
	}}, nil
}

// unfit reports whether a job spec could not be built because of the job
// itself (its dataset gone or not ready, a model or GPU the catalog does
// not know, a spec the contract refuses): trying again does not help.
func unfit(err error) bool {
	switch pipeline.ErrorCode(err) {
	case pipeline.ENotFound, pipeline.EInvalid, pipeline.EPrecondition:
		return true
	}
	return false
}

// microBatchTokens is the job spec's token budget per micro-batch: the one
// the job's estimate chose (what its user saw), or, for a job estimated
// before estimates recorded it, the estimator's choice for its model, GPU
// and hyperparameters now.
func microBatchTokens(c *catalog.Catalog, j *pipeline.Job) (int, error) {
	if j.Estimate != nil && j.Estimate.MicroBatchTokens > 0 {
		return j.Estimate.MicroBatchTokens, nil
	}
	n, err := estimate.MicroBatchTokens(c, j.BaseModel, j.GPUType, j.Hyperparameters)
	if err != nil {
		return 0, fmt.Errorf("micro_batch_tokens for %s on %s: %w", j.BaseModel, j.GPUType, err)
	}
	return n, nil
}

func withoutLength(h map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		if !strings.EqualFold(k, "Content-Length") {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
