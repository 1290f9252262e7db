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
	"sync"
	"time"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/ingest"
	"github.com/brightrun/brightrun/shared/local"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// Config is the local stack's configuration.
type Config struct {
	// Addr is where the API listens (BRIGHTRUN_ADDR, default 127.0.0.1:8080).
	Addr string
	// DataDir holds all state (BRIGHTRUN_DATA, default .local).
	DataDir string
	// DevTokens is "user:token,..." (BRIGHTRUN_DEV_TOKENS, default dev:dev-token).
	DevTokens string
	// API tunables.
	API httpapi.Config
	// Getenv reads further settings (BRIGHTRUN_PRICES_FILE, ...); default os.Getenv.
	Getenv func(string) string
	Log    *slog.Logger
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
	return Config{
		Getenv:    getenv,
		Addr:      or("BRIGHTRUN_ADDR", DefaultAddr),
		DataDir:   or("BRIGHTRUN_DATA", DefaultDataDir),
		DevTokens: or("BRIGHTRUN_DEV_TOKENS", DefaultDevTokens),
	}
}

// Stack is a running local stack.
type Stack struct {
	Config Config
	Store  *local.Store
	Queue  *local.Queue
	Blobs  *local.Blobs
	API    *httpapi.Server
	// Validator runs after every upload, as the validate Lambda does on S3 events.
	Validator *ingest.Validator
	Tokens    httpapi.DevTokens

	db       *local.DB
	log      *slog.Logger
	listener net.Listener
	server   *http.Server
	url      string

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
	var err error
	if s.Store, err = local.NewStore(s.db); err != nil {
		return err
	}
	if s.Queue, err = local.NewQueue(s.db, "jobs", local.QueueOptions{MaxReceives: 5}); err != nil {
		return err
	}
	secret, err := loadSecret(filepath.Join(s.Config.DataDir, "blob-signing.key"))
	if err != nil {
		return err
	}
	s.Blobs, err = local.NewBlobs(local.BlobsOptions{Dir: filepath.Join(s.Config.DataDir, "blobs"), Secret: secret})
	if err != nil {
		return err
	}
	s.Blobs.OnCreated = s.objectCreated
	cat, err := catalog.FromEnv(s.Config.Getenv)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	s.API = &httpapi.Server{Store: s.Store, Blobs: s.Blobs, Auth: s.Tokens, Log: s.log, Config: s.Config.API,
		JobLog: s.Store, Queue: s.Queue, Catalog: cat}
	counter, err := ingest.Qwen3Counter()
	if err != nil {
		return err
	}
	s.Validator = &ingest.Validator{Store: s.Store, Blobs: s.Blobs, Counter: counter, Log: s.log}
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

// Handler is the local stack's whole HTTP surface: the API and the blob URLs.
func (s *Stack) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(local.BlobsPath, s.Blobs)
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
	s.Blobs.SetBaseURL(s.url)
	s.server = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.server.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("local stack server stopped", "err", err)
		}
	}()
	return nil
}

// URL is the base URL the stack serves on (after Start).
func (s *Stack) URL() string { return s.url }

// Close stops serving (letting requests in flight finish), waits for
// background work, and closes the state file.
func (s *Stack) Close(ctx context.Context) error {
	var errs []error
	if s.server != nil {
		errs = append(errs, s.server.Shutdown(ctx))
	}
	s.cancel()
	s.bg.Wait()
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
