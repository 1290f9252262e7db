// Package httpapi is the HTTP API v1: plain net/http handlers that the
// Lambda functions serve through aws-lambda-go-api-proxy and the local stack
// serves all together.
package httpapi

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/netguard"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/webhooks"
)

// Server holds what the handlers need.
type Server struct {
	Store pipeline.Store
	Blobs pipeline.Blobs
	Auth  Authenticator
	// JobLog is read for a job's events, metrics and notifications, and
	// for the measurements estimates learn from.
	JobLog pipeline.JobLog
	// Jobs runs the jobs' lifecycle: the job routes and the callbacks
	// call it.
	Jobs    *pipeline.Lifecycle
	Catalog *catalog.Catalog
	// CallbackSecret is the master secret per-job callback secrets derive from.
	CallbackSecret []byte
	// Runs confirms a RunPod webhook's news with RunPod (nil: left to
	// scheduled reconciliation).
	Runs RunChecker
	// Webhooks registers the caller's webhook endpoints and shows their
	// deliveries (nil: the webhook routes answer 503).
	Webhooks *webhooks.Service
	// DatasetCreated, when set, is told of each new dataset (the local
	// stack over S3 watches for its upload, as S3 would send an event).
	DatasetCreated func(d *pipeline.Dataset)
	// Imports starts dataset imports (nil: POST /v1/datasets/import
	// answers 503).
	Imports ImportStarter
	Log     *slog.Logger
	Now     func() time.Time
	Config  Config
}

// Config holds the API's tunables; zero values take the defaults.
type Config struct {
	// MultipartThreshold is the size from which uploads are multipart.
	MultipartThreshold int64
	// PartSize is the size of each multipart part but the last.
	PartSize int64
	// UploadURLTTL is how long upload URLs stay valid.
	UploadURLTTL time.Duration
	// ImportPolicy is the network policy a source URL must pass:
	// netguard.Cloud (the zero value) or, in the local stack,
	// netguard.Local.
	ImportPolicy netguard.Policy
	// ImportS3Prefixes are the buckets and prefixes users may import
	// from (none: S3 sources are refused).
	ImportS3Prefixes []pipeline.S3Prefix
}

// Defaults for Config.
const (
	DefaultMultipartThreshold = 64 << 20
	DefaultPartSize           = 16 << 20
	DefaultUploadURLTTL       = time.Hour
)

func (s *Server) config() Config {
	c := s.Config
	if c.MultipartThreshold <= 0 {
		c.MultipartThreshold = DefaultMultipartThreshold
	}
	if c.PartSize < pipeline.MinPartSize {
		c.PartSize = DefaultPartSize
	}
	if c.UploadURLTTL <= 0 {
		c.UploadURLTTL = DefaultUploadURLTTL
	}
	return c
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// handlerFunc is an authenticated handler: it returns an error instead of
// writing one, so that errors have one shape and one log line.
type handlerFunc func(w http.ResponseWriter, r *http.Request, owner string) error

func (s *Server) authed(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		owner, err := s.Auth.Authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="brightrun"`)
			writeError(w, r, s.log(), err)
			return
		}
		if err := h(w, r, owner); err != nil {
			writeError(w, r, s.log(), err)
		}
	}
}
