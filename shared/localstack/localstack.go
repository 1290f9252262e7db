// Package localstack wires the whole pipeline on one machine: the HTTP API,
// the embedded store, queue and blobs, and the background work the cloud
// does with events (validation after an upload). The command that runs it
// and the end-to-end tests share this wiring.
package localstack

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/brightrun/brightrun/console"
	"github.com/brightrun/brightrun/shared/awsapp"
	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/chat"
	"github.com/brightrun/brightrun/shared/dispatch"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/ingest"
	"github.com/brightrun/brightrun/shared/local"
	"github.com/brightrun/brightrun/shared/localworker"
	"github.com/brightrun/brightrun/shared/netguard"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/reconcile"
	"github.com/brightrun/brightrun/shared/runpod"
	"github.com/brightrun/brightrun/shared/runpodemu"
	"github.com/brightrun/brightrun/shared/s3blob"
	"github.com/brightrun/brightrun/shared/services"
	"github.com/brightrun/brightrun/shared/webhooks"
)

// Config is the local stack's configuration.
type Config struct {
	// Addr is where the API listens (BRIGHTRUN_ADDR, default 127.0.0.1:8080).
	Addr string
	// DataDir holds all state (BRIGHTRUN_DATA, default .local).
	DataDir string
	// Backend is BackendLocal (default) or BackendAWS (BRIGHTRUN_BACKEND):
	// the same stack over DynamoDB, SQS and S3, configured as the Lambda
	// functions are (BRIGHTRUN_TABLE, BRIGHTRUN_BUCKET, BRIGHTRUN_QUEUE_URL,
	// the secrets at BRIGHTRUN_CURSOR_KEY_ARN and BRIGHTRUN_CALLBACK_MASTER_ARN,
	// and the SDK's AWS_ENDPOINT_URL_* variables).
	Backend string
	// DevTokens is "user:token,..." (BRIGHTRUN_DEV_TOKENS, default dev:dev-token).
	DevTokens string
	// API tunables.
	API httpapi.Config
	// Getenv reads further settings (BRIGHTRUN_PRICES_FILE, ...); default os.Getenv.
	Getenv func(string) string
	// RunPod: RunPodURL "" runs the embedded RunPod emulator (named as
	// one: its simulated worker speaks the worker contract); otherwise the
	// job API base (https://api.runpod.ai/v2) with RunPodAPIKey and
	// RunPodEndpointID (BRIGHTRUN_RUNPOD_URL, RUNPOD_API_KEY,
	// RUNPOD_ENDPOINT_ID).
	RunPodURL, RunPodAPIKey, RunPodEndpointID string
	// PublicURL is where RunPod's workers reach this stack's callbacks
	// (BRIGHTRUN_PUBLIC_URL; default the listen address, fine for the
	// emulator, not for real RunPod workers).
	PublicURL string
	// Emulator tunes the embedded RunPod emulator (speed, faults).
	Emulator runpodemu.Config
	// GPU is "" (the RunPod emulator, or RunPod itself with RunPodURL) or
	// "local-worker" (BRIGHTRUN_GPU): the real worker from gpu-image/ as a
	// subprocess on this machine's CPU with a tiny model.
	GPU string
	// WorkerDir is the gpu-image folder the local worker runs (default gpu-image).
	WorkerDir string
	// CrashAfterStep is the local worker's crash knob (0: the environment's
	// BRIGHTRUN_CRASH_AFTER_STEP, if any): each job's first run exits hard
	// after that step and is re-run once, as RunPod retries a crash.
	CrashAfterStep int
	// DispatchVisibility is how long a dispatch attempt hides its message
	// before it is retried (default 20 s); ReconcileEvery how often
	// reconciliation runs (default 15 s).
	DispatchVisibility, ReconcileEvery time.Duration
	// Reconcile tunes reconciliation (StaleAfter, CheckEvery, MaxRetries).
	Reconcile reconcile.Reconciler
	// Fairness turns on fair dispatch (nil: jobs start in arrival order,
	// without limits). ConfigFromEnv turns it on: each owner's limit is
	// BRIGHTRUN_OWNER_LIMIT (default 3), overridden per owner by
	// BRIGHTRUN_OWNER_LIMITS ("alice=5,bob=1"), and BRIGHTRUN_MAX_IN_FLIGHT
	// bounds the runs of every owner together (default: none);
	// BRIGHTRUN_FAIR_DISPATCH=off turns it off.
	Fairness *pipeline.Fairness
	// ImportPolicy is the network policy of dataset imports from URLs
	// (nil: netguard.Local, which also allows loopback so that a file
	// served on this machine can be imported).
	ImportPolicy *netguard.Policy
	// ImportS3Prefixes are the "bucket/prefix,..." users may import from
	// (BRIGHTRUN_IMPORT_S3_PREFIXES), read with the SDK's configuration
	// (AWS_ENDPOINT_URL_S3 and the like).
	ImportS3Prefixes string
	// ImportRetryAfter is how long a failed import waits before its next
	// try (default 5 s, times the tries so far).
	ImportRetryAfter time.Duration
	Log              *slog.Logger
}

// Defaults.
const (
	DefaultAddr      = "127.0.0.1:8080"
	DefaultDataDir   = ".local"
	DefaultDevTokens = "dev:dev-token"
)

// ConfigFromEnv reads the BRIGHTRUN_* variables.
func ConfigFromEnv(getenv func(string) string) Config {
	or := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	speed, _ := strconv.ParseFloat(getenv("BRIGHTRUN_EMULATOR_STEPS_PER_SECOND"), 64)
	// Zero (the default) when unset or malformed.
	every, _ := time.ParseDuration(getenv("BRIGHTRUN_RECONCILE_EVERY"))
	stale, _ := time.ParseDuration(getenv("BRIGHTRUN_STALE_AFTER"))
	fair, err := pipeline.FairnessFromEnv(getenv)
	if err != nil {
		slog.Warn("fair dispatch settings ignored: the defaults apply", "err", err)
		fair = &pipeline.Fairness{}
	}
	return Config{
		Fairness:         fair,
		Getenv:           getenv,
		Backend:          getenv("BRIGHTRUN_BACKEND"),
		GPU:              getenv("BRIGHTRUN_GPU"),
		RunPodURL:        getenv("BRIGHTRUN_RUNPOD_URL"),
		RunPodAPIKey:     getenv("RUNPOD_API_KEY"),
		RunPodEndpointID: getenv("RUNPOD_ENDPOINT_ID"),
		PublicURL:        getenv("BRIGHTRUN_PUBLIC_URL"),
		Emulator:         runpodemu.Config{StepsPerSecond: speed},
		ReconcileEvery:   every,
		Reconcile:        reconcile.Reconciler{StaleAfter: stale},
		Addr:             or("BRIGHTRUN_ADDR", DefaultAddr),
		DataDir:          or("BRIGHTRUN_DATA", DefaultDataDir),
		DevTokens:        or("BRIGHTRUN_DEV_TOKENS", DefaultDevTokens),
		ImportS3Prefixes: getenv(awsapp.EnvImportS3Prefixes),
	}
}

// Store and Blobs are what the stack needs of its store and blob store:
// what the services it wires need.
type (
	Store = services.Store
	Blobs = services.Blobs
)

// Backends.
const (
	BackendLocal = "local" // embedded: bbolt file and files on disk
	BackendAWS   = "aws"   // DynamoDB, SQS and S3 at the AWS_ENDPOINT_URL_* of the environment
)

// Stack is a running local stack. Open opens its ports (Store, Queue,
// Blobs); Start connects the GPU provider and builds the services over
// them with services.Build, the wiring the Lambda functions share.
type Stack struct {
	Config Config
	Store  Store
	Queue  pipeline.Queue
	Blobs  Blobs
	// The services, built by Start.
	Jobs *pipeline.Lifecycle
	API  *httpapi.Server
	// Validator runs after every upload, as the validate Lambda does on S3 events.
	Validator *ingest.Validator
	// Importer copies imported datasets, fed by the embedded import
	// queue as the import Lambda is by SQS, and validates the copy.
	Importer    *ingest.Importer
	importQueue pipeline.Queue
	s3Sources   ingest.S3Sources
	Dispatcher  *dispatch.Dispatcher
	Reconciler  *reconcile.Reconciler
	// Webhooks delivers outbound events from the webhook queue, as the
	// deliver Lambda does (netguard.Local: loopback endpoints allowed).
	Webhooks     *webhooks.Service
	WebhookQueue pipeline.Queue
	// Emulator is the embedded RunPod emulator (nil with a real RunPod).
	Emulator *runpodemu.Emulator
	gpu      gpuProvider
	worker   *localworker.Worker
	Tokens   httpapi.DevTokens

	db       *local.DB
	log      *slog.Logger
	listener net.Listener
	server   *http.Server
	url      string

	catalog        *catalog.Catalog
	callbackSecret []byte

	localBlobs *local.Blobs // nil with the AWS backend

	bg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

// Open opens the state under cfg.DataDir and builds every part; Start serves.
func Open(cfg Config) (*Stack, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	tokens, err := httpapi.ParseDevTokens(cfg.DevTokens)
	if err != nil {
		return nil, fmt.Errorf("BRIGHTRUN_DEV_TOKENS: %w", err)
	}
	db, err := local.OpenDB(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	s := &Stack{Config: cfg, db: db, log: cfg.Log, Tokens: tokens}
	if err := s.build(); err != nil {
		db.Close()
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

func (s *Stack) build() error {
	var callbackSecret []byte
	switch s.Config.Backend {
	case BackendAWS:
		parts := awsapp.Store | awsapp.Cursors | awsapp.Blobs | awsapp.Queue | awsapp.Callbacks
		if s.Config.Getenv(awsapp.EnvWebhookQueueURL) != "" {
			parts |= awsapp.Webhooks
		}
		app, err := awsapp.Load(context.Background(), s.Config.Getenv, parts)
		if err != nil {
			return fmt.Errorf("BRIGHTRUN_BACKEND=aws: %w", err)
		}
		s.Store, s.Blobs, s.Queue, callbackSecret = app.Store, app.Blobs, app.Queue, app.CallbackSecret
		if app.WebhookQueue != nil {
			s.WebhookQueue = app.WebhookQueue
		}
	case "", BackendLocal:
		store, err := local.NewStore(s.db)
		if err != nil {
			return err
		}
		queue, err := local.NewQueue(s.db, "jobs", local.QueueOptions{MaxReceives: 5})
		if err != nil {
			return err
		}
		// A delivery's message is received once per try and per early
		// wake: 30 covers the schedule's 8 tries with room to spare.
		if s.WebhookQueue, err = local.NewQueue(s.db, "webhooks", local.QueueOptions{MaxReceives: 30}); err != nil {
			return err
		}
		secret, err := loadSecret(filepath.Join(s.Config.DataDir, "blob-signing.key"))
		if err != nil {
			return err
		}
		blobs, err := local.NewBlobs(local.BlobsOptions{Dir: filepath.Join(s.Config.DataDir, "blobs"), Secret: secret})
		if err != nil {
			return err
		}
		blobs.OnCreated = s.objectCreated
		s.Store, s.Queue, s.Blobs, s.localBlobs = store, queue, blobs, blobs
		if callbackSecret, err = loadSecret(filepath.Join(s.Config.DataDir, "callback-master.key")); err != nil {
			return err
		}
	default:
		return fmt.Errorf("BRIGHTRUN_BACKEND %q: want local or aws", s.Config.Backend)
	}
	// Imports use an embedded queue on either backend: it is the stack's
	// own work, as the validation after an upload is.
	iq, err := local.NewQueue(s.db, "imports", local.QueueOptions{MaxReceives: maxImportAttempts})
	if err != nil {
		return err
	}
	s.importQueue = iq
	prefixes, err := pipeline.ParseS3Prefixes(s.Config.ImportS3Prefixes)
	if err != nil {
		return fmt.Errorf("%s: %w", awsapp.EnvImportS3Prefixes, err)
	}
	if len(prefixes) > 0 {
		cfg, err := config.LoadDefaultConfig(context.Background())
		if err != nil {
			return fmt.Errorf("AWS configuration for S3 imports: %w", err)
		}
		client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = s.Config.Getenv("BRIGHTRUN_S3_PATH_STYLE") == "1" })
		s.s3Sources = s3blob.Sources{Client: client}
	}
	s.Config.API.ImportS3Prefixes = prefixes
	s.Config.API.ImportPolicy = netguard.Local
	if s.Config.ImportPolicy != nil {
		s.Config.API.ImportPolicy = *s.Config.ImportPolicy
	}
	cat, err := catalog.FromEnv(s.Config.Getenv)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	s.catalog, s.callbackSecret = cat, callbackSecret
	return nil
}

// buildServices wires the services over the ports, once the GPU provider
// and the public URL are known.
func (s *Stack) buildServices(gpu services.GPU, publicURL string) error {
	counter, err := chat.Qwen3Counter()
	if err != nil {
		return err
	}
	svc := services.Build(services.Ports{Store: s.Store, Blobs: s.Blobs, Queue: s.Queue, GPU: gpu, Catalog: s.catalog,
		Auth: s.Tokens, Counter: counter, CallbackSecret: s.callbackSecret, PublicURL: publicURL, S3Sources: s.s3Sources, Log: s.log,
		WebhookQueue: s.WebhookQueue, WebhookPolicy: netguard.Local},
		services.Options{API: s.Config.API, MaxDispatchAttempts: 5, Reconcile: s.Config.Reconcile, MaxImportAttempts: maxImportAttempts,
			Fairness: s.Config.Fairness, ReleaseOnEnd: true})
	s.Jobs, s.API, s.Validator, s.Dispatcher, s.Reconciler = svc.Jobs, svc.API, svc.Validator, svc.Dispatcher, svc.Reconciler
	// No upload event follows a copy here: the importer validates it.
	s.Importer = svc.Importer
	s.Importer.Validate = s.Validator.ValidateObject
	s.API.Imports = ingest.ImportQueue{Queue: s.importQueue}
	s.Webhooks = svc.Webhooks
	if s.localBlobs == nil {
		// S3 (or its emulator) sends the stack no upload event: watch
		// each new dataset's object instead.
		s.API.DatasetCreated = s.watchUpload
	}
	return nil
}

// loadSecret reads the blob-signing key, creating it on first start so that
// URLs handed out before a restart stay valid after it.
func loadSecret(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil && len(key) >= 32 {
		return key, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read blob signing key: %w", err)
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, key, 0o600); err != nil {
		return nil, fmt.Errorf("write blob signing key: %w", err)
	}
	return key, nil
}

// Handler is the local stack's whole HTTP surface: the web console at /,
// the API, the blob URLs and the RunPod emulator.
func (s *Stack) Handler() http.Handler {
	mux := http.NewServeMux()
	// The console signs in with the dev tokens and calls the API on this
	// same origin.
	web := console.Handler(console.Config{Auth: console.AuthToken})
	for _, p := range console.Paths {
		mux.Handle(p, web)
	}
	if s.localBlobs != nil {
		mux.Handle(local.BlobsPath, s.localBlobs)
	}
	if s.Emulator != nil {
		mux.Handle(EmulatorPath, http.StripPrefix(strings.TrimSuffix(EmulatorPath, "/"), s.Emulator))
	}
	mux.Handle("/", s.API.Handler())
	return mux
}

// Start listens on cfg.Addr and serves in the background.
func (s *Stack) Start() error {
	l, err := net.Listen("tcp", s.Config.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s (set BRIGHTRUN_ADDR to use another address): %w", s.Config.Addr, err)
	}
	s.listener = l
	s.url = "http://" + l.Addr().String()
	if s.localBlobs != nil {
		s.localBlobs.SetBaseURL(s.url)
	}
	if err := s.connectGPU(); err != nil {
		l.Close()
		return err
	}
	s.server = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.server.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("local stack server stopped", "err", err)
		}
	}()
	s.goBackground(s.dispatchLoop)
	s.goBackground(s.reconcileLoop)
	s.goBackground(s.importLoop)
	if s.Webhooks != nil {
		s.goBackground(func(ctx context.Context) { s.Webhooks.Run(ctx, webhookVisibility) })
	}
	return nil
}

// webhookVisibility hides a webhook message while it is handled: longer
// than a delivery attempt may take.
const webhookVisibility = 2 * time.Minute

// EmulatorPath is where the local stack serves the RunPod emulator.
const EmulatorPath = "/runpod/"

// gpuProvider is what the stack asks of RunPod (or of a stand-in).
type gpuProvider = services.GPU

// connectGPU builds the GPU provider: the embedded RunPod emulator by
// default, RunPod itself with RunPodURL, or the local worker.
func (s *Stack) connectGPU() error {
	base, key, endpoint := s.Config.RunPodURL, s.Config.RunPodAPIKey, s.Config.RunPodEndpointID
	switch {
	case s.Config.GPU == "local-worker":
		w, err := localworker.New(localworker.Options{Dir: filepath.Join(s.Config.DataDir, "local-worker"), WorkerDir: s.Config.WorkerDir, Log: s.log.With("component", "local-worker"),
			CrashAfterStep: s.Config.CrashAfterStep})
		if err != nil {
			return err
		}
		s.worker, s.gpu = w, w
	case s.Config.GPU != "":
		return fmt.Errorf("BRIGHTRUN_GPU %q: want local-worker or nothing", s.Config.GPU)
	case base == "":
		emuCfg := s.Config.Emulator
		key, endpoint = "emulator-key", "emulator"
		emuCfg.APIKey, emuCfg.EndpointID = key, endpoint
		if emuCfg.Logger == nil {
			emuCfg.Logger = s.log.With("component", "runpod-emulator")
		}
		emu, err := runpodemu.New(emuCfg)
		if err != nil {
			return fmt.Errorf("start the RunPod emulator: %w", err)
		}
		s.Emulator = emu
		base = s.url + EmulatorPath + "v2"
	}
	if s.gpu == nil {
		client, err := runpod.New(base, endpoint, key, runpod.WithLogger(s.log))
		if err != nil {
			return fmt.Errorf("RunPod settings: %w", err)
		}
		s.gpu = client
	}
	public := s.Config.PublicURL
	if public == "" {
		public = s.url
	}
	return s.buildServices(s.gpu, strings.TrimRight(public, "/"))
}

// dispatchLoop consumes the jobs queue as the dispatch Lambda's SQS trigger
// does: a message is deleted when dispatching it succeeded, and comes back
// after its visibility timeout otherwise (to the dead-letter queue after
// its last try).
func (s *Stack) dispatchLoop(ctx context.Context) {
	vis := s.Config.DispatchVisibility
	if vis <= 0 {
		vis = 20 * time.Second
	}
	for ctx.Err() == nil {
		msgs, err := s.Queue.Receive(ctx, 10, vis, time.Second)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("receive from the jobs queue", "err", err)
				time.Sleep(time.Second)
			}
			continue
		}
		for _, m := range msgs {
			if err := s.Dispatcher.HandleMessage(ctx, m.Body, m.ReceiveCount); err != nil {
				if !errors.Is(err, pipeline.ErrLeaseHeld) {
					s.log.Warn("dispatch failed: the message will be retried", "message_id", m.ID, "receives", m.ReceiveCount, "err", err)
				}
				continue
			}
			if err := s.Queue.Delete(ctx, m.Receipt); err != nil {
				s.log.Error("delete a dispatched message", "message_id", m.ID, "err", err)
			}
		}
	}
}

// maxImportAttempts is how many tries an import has in the local stack.
const maxImportAttempts = 3

// importLoop consumes the import queue as the import Lambda's SQS
// trigger does; a failed import is retried after ImportRetryAfter times
// its tries so far, and its last try ends the dataset invalid.
func (s *Stack) importLoop(ctx context.Context) {
	retry := s.Config.ImportRetryAfter
	if retry <= 0 {
		retry = 5 * time.Second
	}
	for ctx.Err() == nil {
		// One import at a time, so a message is not taken twice while its
		// copy runs, however long; a short visibility has an import cut
		// short by a restart taken up again soon after it (a delivery
		// after the import ended finds the dataset no longer importing).
		msgs, err := s.importQueue.Receive(ctx, 1, 2*time.Minute, time.Second)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("receive from the import queue", "err", err)
				time.Sleep(time.Second)
			}
			continue
		}
		for _, m := range msgs {
			if err := s.Importer.HandleMessage(ctx, m.Body, m.ReceiveCount); err != nil {
				s.log.Warn("import failed: it will be retried", "message_id", m.ID, "receives", m.ReceiveCount, "err", err)
				if err := s.importQueue.ChangeVisibility(ctx, m.Receipt, retry*time.Duration(m.ReceiveCount)); err != nil && ctx.Err() == nil {
					s.log.Error("reschedule a failed import", "message_id", m.ID, "err", err)
				}
				continue
			}
			if err := s.importQueue.Delete(ctx, m.Receipt); err != nil && ctx.Err() == nil {
				s.log.Error("delete an import message", "message_id", m.ID, "err", err)
			}
		}
	}
}

// reconcileLoop runs reconciliation on a schedule, as the reconcile
// Lambda's EventBridge rule does.
func (s *Stack) reconcileLoop(ctx context.Context) {
	every := s.Config.ReconcileEvery
	if every <= 0 {
		every = 15 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			rep, err := s.Reconciler.Run(ctx)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("reconciliation", "err", err)
			}
			if rep.Repaired+rep.Enqueued > 0 {
				s.log.Info("reconciliation", "checked", rep.Checked, "repaired", rep.Repaired, "enqueued", rep.Enqueued)
			}
		}
	}
}

// URL is the base URL the stack serves on (after Start).
func (s *Stack) URL() string { return s.url }

// ExpireBlobCredentials makes every blob URL signed so far unusable, as S3
// refuses the URLs a Lambda signed once its role's session token expires:
// a job running for hours must not depend on a URL minted before.
func (s *Stack) ExpireBlobCredentials() error {
	if s.localBlobs == nil {
		return errors.New("the stack's blobs are S3's: their credentials expire on their own")
	}
	return s.localBlobs.ExpireCredentials()
}

// Close stops serving (letting requests in flight finish), waits for
// background work, and closes the state file.
func (s *Stack) Close(ctx context.Context) error {
	var errs []error
	if s.server != nil {
		errs = append(errs, s.server.Shutdown(ctx))
	}
	s.cancel()
	s.bg.Wait()
	if s.Emulator != nil {
		s.Emulator.Close()
	}
	if s.worker != nil {
		s.worker.Close()
	}
	errs = append(errs, s.db.Close())
	return errors.Join(errs...)
}

// goBackground runs fn in the background until Close.
func (s *Stack) goBackground(fn func(ctx context.Context)) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		fn(s.ctx)
	}()
}

// watchUpload waits for a dataset's object to appear in a blob store that
// emits no events to this process, then validates it.
func (s *Stack) watchUpload(d *pipeline.Dataset) {
	s.goBackground(func(ctx context.Context) {
		deadline := time.Now().Add(httpapi.DefaultUploadURLTTL + time.Minute)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			info, err := s.Blobs.Stat(ctx, d.ObjectKey)
			if err != nil {
				continue
			}
			if err := s.Validator.ValidateObject(ctx, info); err != nil {
				s.log.Error("validate upload", "key", info.Key, "err", err)
			}
			return
		}
	})
}

// objectCreated is the local stand-in for S3's ObjectCreated event: it
// validates the upload in the background, as the validate Lambda would.
func (s *Stack) objectCreated(info pipeline.ObjectInfo) {
	s.log.Info("object created", "key", info.Key, "size_bytes", info.Size, "etag", info.ETag)
	s.goBackground(func(ctx context.Context) {
		if err := s.Validator.ValidateObject(ctx, info); err != nil {
			s.log.Error("validate upload", "key", info.Key, "err", err)
		}
	})
}
