// Package httpapi is the HTTP API v1: plain net/http handlers that the
// Lambda functions serve through aws-lambda-go-api-proxy and the local stack
// serves all together.
package httpapi

import (
	"encoding/hex"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// Server holds what the handlers need.
type Server struct {
	Store   pipeline.Store
	Blobs   pipeline.Blobs
	Auth    Authenticator
	JobLog  pipeline.JobLog
	Queue   pipeline.Queue
	Catalog *catalog.Catalog
	// Canceller, when set, cancels a running job's GPU run at once;
	// otherwise the worker learns of the cancel from its next callback.
	Canceller Canceller
	// CallbackSecret is the master secret per-job callback secrets derive from.
	CallbackSecret []byte
	// Runs confirms a RunPod webhook's news with RunPod (nil: left to
	// scheduled reconciliation).
	Runs RunChecker
	// DatasetCreated, when set, is told of each new dataset (the local
	// stack over S3 watches for its upload, as S3 would send an event).
	DatasetCreated func(d *pipeline.Dataset)
	Log            *slog.Logger
	Now            func() time.Time
	Config         Config
}

// Config holds the API's tunables; zero values take the defaults.
type Config struct {
	// MultipartThreshold is the size from which uploads are multipart.
	MultipartThreshold int64
	// PartSize is the size of each multipart part but the last.
	PartSize int64
	// UploadURLTTL is how long upload URLs stay valid.
	UploadURLTTL time.Duration
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

// DatasetKey is where a dataset's file lives: the owner, hex-encoded, and
// the id, so that an S3 event's key leads back to the record.
func DatasetKey(owner, id string) string {
	return "datasets/" + hex.EncodeToString([]byte(owner)) + "/" + id + ".jsonl"
}

// ParseDatasetKey is DatasetKey's inverse.
func ParseDatasetKey(key string) (owner, id string, err error) {
	parts := strings.Split(key, "/")
	if len(parts) != 3 || parts[0] != "datasets" || !strings.HasSuffix(parts[2], ".jsonl") {
		return "", "", pipeline.Errorf(pipeline.EInvalid, "object key %q is not a dataset key", key)
	}
	raw, err := hex.DecodeString(parts[1])
	id = strings.TrimSuffix(parts[2], ".jsonl")
	// Exactly the key DatasetKey makes (lower-case hex): no other key may
	// name a dataset.
	if err != nil || len(raw) == 0 || id == "" || DatasetKey(string(raw), id) != key {
		return "", "", pipeline.Errorf(pipeline.EInvalid, "object key %q is not a dataset key", key)
	}
	return string(raw), id, nil
}
