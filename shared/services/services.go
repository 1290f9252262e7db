// Package services builds the pipeline's services from its ports: the one
// wiring that the Lambda functions (through awsapp) and the local stack
// share, so that the two cannot drift. A port left nil leaves out what
// needs it (no GPU: no dispatcher, no reconciler, and cancels wait for the
// worker's next callback; no counter: no validator).
package services

import (
	"context"
	"log/slog"
	"time"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/chat"
	"github.com/brightrun/brightrun/shared/dispatch"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/ingest"
	"github.com/brightrun/brightrun/shared/netguard"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/reconcile"
	"github.com/brightrun/brightrun/shared/runpod"
	"github.com/brightrun/brightrun/shared/webhooks"
)

// Store is what the services need of a store.
type Store interface {
	pipeline.Store
	pipeline.JobLog
	pipeline.JobScanner
	pipeline.JobKeyScanner
	pipeline.JobEraser
	pipeline.WebhookStore
}

// Blobs is what the services need of a blob store.
type Blobs interface {
	pipeline.Blobs
	pipeline.ObjectWriter
}

// GPU is what the services need of the GPU provider.
type GPU interface {
	Run(ctx context.Context, req runpod.RunRequest) (runpod.JobStatus, error)
	Status(ctx context.Context, id string) (runpod.JobStatus, error)
	Cancel(ctx context.Context, id string) (runpod.JobStatus, error)
}

// Ports are the adapters and settings the services are built from.
type Ports struct {
	Store   Store
	Blobs   Blobs
	Queue   pipeline.Queue
	GPU     GPU
	Catalog *catalog.Catalog
	// Auth authenticates API callers.
	Auth httpapi.Authenticator
	// Counter counts tokens for validation (nil: no validator is built).
	Counter chat.Counter
	// CallbackSecret is the master secret of worker callbacks and RunPod
	// webhook tokens.
	CallbackSecret []byte
	// PublicURL is the API's base URL as workers and RunPod reach it.
	PublicURL string
	// S3Sources reads the buckets users may import from (nil: imports
	// from S3 are refused).
	S3Sources ingest.S3Sources
	// WebhookQueue carries outbound events and their deliveries to the
	// owners' webhook endpoints (nil: no webhooks; their routes answer
	// 503 and no event is published).
	WebhookQueue pipeline.Queue
	// WebhookPolicy is where deliveries may go: netguard.Cloud on AWS,
	// netguard.Local in the local stack.
	WebhookPolicy netguard.Policy
	Log           *slog.Logger
	Now           func() time.Time
}

// Options tune the services; zero values take their defaults.
type Options struct {
	API httpapi.Config
	// MaxDispatchAttempts is how many failed submissions fail a job; it
	// must equal the queue's redrive maxReceiveCount.
	MaxDispatchAttempts int
	// Reconcile tunes reconciliation (StaleAfter, CheckEvery, EnqueueGrace,
	// MaxRetries); its ports are ignored.
	Reconcile reconcile.Reconciler
	// Fairness, when set, turns on fair dispatch: the dispatcher admits a
	// queued job only in its turn within its owner's limit and the GPU
	// slots (pipeline.FairDispatch), and reconciliation starts held jobs
	// whose turn came. ReleaseOnEnd also starts them the moment a job ends
	// (the local stack; on AWS each release reads every unfinished job, so
	// the reconcile schedule does it once a minute).
	Fairness     *pipeline.Fairness
	ReleaseOnEnd bool
	// MaxImportAttempts is how many tries an import has before a
	// transient failure ends its dataset invalid: the import queue's
	// maxReceiveCount. The network policy and the allowed S3 prefixes
	// are API.ImportPolicy and API.ImportS3Prefixes.
	MaxImportAttempts int
}

// Services are the pipeline's services over one set of ports.
type Services struct {
	// Jobs is the jobs' lifecycle every other service calls.
	Jobs       *pipeline.Lifecycle
	API        *httpapi.Server
	Dispatcher *dispatch.Dispatcher // nil without a GPU
	Reconciler *reconcile.Reconciler
	Validator  *ingest.Validator // nil without a counter
	// Importer copies imported datasets from their sources, under the
	// API's import policy and prefixes (nil without a store or blobs).
	Importer *ingest.Importer
	// Webhooks registers endpoints, publishes events and delivers them
	// (nil without a webhook queue).
	Webhooks *webhooks.Service
}

// Build wires the services over p.
func Build(p Ports, o Options) *Services {
	log := p.Log
	if log == nil {
		log = slog.Default()
	}
	jobs := &pipeline.Lifecycle{Store: p.Store, Queue: p.Queue, Log: log, Now: p.Now}
	if p.Store != nil {
		jobs.JobLog, jobs.Eraser = p.Store, p.Store
	}
	if p.Blobs != nil {
		jobs.Objects, jobs.URLs = p.Blobs, p.Blobs
	}
	if p.GPU != nil {
		jobs.Runs = runCanceller{p.GPU}
	}
	s := &Services{Jobs: jobs}
	if p.WebhookQueue != nil && p.Store != nil {
		s.Webhooks = &webhooks.Service{Store: p.Store, Queue: p.WebhookQueue, Policy: p.WebhookPolicy, Log: log, Now: p.Now}
		jobs.Events = s.Webhooks
	}
	s.API = &httpapi.Server{Store: p.Store, Blobs: p.Blobs, Auth: p.Auth, JobLog: jobs.JobLog, Jobs: jobs, Catalog: p.Catalog,
		CallbackSecret: p.CallbackSecret, Webhooks: s.Webhooks, Log: log, Now: p.Now, Config: o.API}
	rc := o.Reconcile
	s.Reconciler = &reconcile.Reconciler{Jobs: jobs, Scanner: p.Store, StaleAfter: rc.StaleAfter, CheckEvery: rc.CheckEvery,
		EnqueueGrace: rc.EnqueueGrace, RequeueAfter: rc.RequeueAfter, MaxRequeues: rc.MaxRequeues, MaxRetries: rc.MaxRetries, Log: log, Now: p.Now}
	if p.GPU != nil {
		s.Reconciler.GPU = p.GPU
		s.API.Runs = s.Reconciler
		s.Dispatcher = &dispatch.Dispatcher{Jobs: jobs, Blobs: p.Blobs, GPU: p.GPU, Catalog: p.Catalog, PublicURL: p.PublicURL,
			CallbackSecret: p.CallbackSecret, MaxAttempts: o.MaxDispatchAttempts, Log: log, Now: p.Now}
	}
	if o.Fairness != nil && p.Store != nil {
		fair := &pipeline.FairDispatch{Jobs: jobs, Scanner: p.Store, Fairness: *o.Fairness}
		s.Reconciler.Fair = fair
		if s.Dispatcher != nil {
			s.Dispatcher.Fair = fair
		}
		if o.ReleaseOnEnd {
			jobs.Ended = func(ctx context.Context, j *pipeline.Job) {
				if _, err := fair.Release(ctx); err != nil {
					log.WarnContext(ctx, "start held jobs after a job ended", "job_id", j.ID, "err", err)
				}
			}
		}
	}
	if p.Counter != nil {
		s.Validator = &ingest.Validator{Store: p.Store, Blobs: p.Blobs, Counter: p.Counter, Log: log, Now: p.Now}
		if s.Webhooks != nil {
			s.Validator.Events = s.Webhooks
		}
	}
	if p.Store != nil && p.Blobs != nil {
		// No whole-request timeout: a 5 GiB copy takes minutes; the
		// caller's context (the Lambda's deadline) bounds it.
		s.Importer = &ingest.Importer{Store: p.Store, Blobs: p.Blobs, HTTP: o.API.ImportPolicy.Client(0), S3: p.S3Sources,
			Prefixes: o.API.ImportS3Prefixes, MaxAttempts: o.MaxImportAttempts, Log: log, Now: p.Now}
		if s.Webhooks != nil {
			s.Importer.Events = s.Webhooks
		}
	}
	return s
}

type runCanceller struct{ gpu GPU }

func (c runCanceller) CancelRun(ctx context.Context, id string) error {
	_, err := c.gpu.Cancel(ctx, id)
	return err
}
