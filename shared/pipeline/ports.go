package pipeline

import (
	"context"
	"io"
	"time"
)

// Page asks for one page of a list, newest first.
type Page struct {
	// Cursor is the opaque position returned by the previous page ("" for the first).
	Cursor string
	// Limit is the page size; stores clamp it to 1..MaxPageSize.
	Limit int
}

// Page sizes.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

// Clamp returns p with its limit in 1..MaxPageSize (DefaultPageSize when unset).
func (p Page) Clamp() Page {
	switch {
	case p.Limit <= 0:
		p.Limit = DefaultPageSize
	case p.Limit > MaxPageSize:
		p.Limit = MaxPageSize
	}
	return p
}

// JobFilter narrows a job list.
type JobFilter struct {
	Status JobStatus // "" for all
}

// Store keeps datasets and jobs. Every record belongs to an owner and is
// only ever read through that owner. Writes are conditional: Create fails
// with EConflict when the id exists; Update fails with EConflict when the
// stored version is not the given record's version, and on success
// increments the record's Version. Reads of a missing record (or one of
// another owner) fail with ENotFound. Lists are newest first (CreatedAt,
// then ID, descending).
type Store interface {
	CreateDataset(ctx context.Context, d *Dataset) error
	GetDataset(ctx context.Context, owner, id string) (*Dataset, error)
	UpdateDataset(ctx context.Context, d *Dataset) error
	DeleteDataset(ctx context.Context, owner, id string) error
	ListDatasets(ctx context.Context, owner string, p Page) ([]*Dataset, string, error)

	CreateJob(ctx context.Context, j *Job) error
	GetJob(ctx context.Context, owner, id string) (*Job, error)
	UpdateJob(ctx context.Context, j *Job) error
	ListJobs(ctx context.Context, owner string, f JobFilter, p Page) ([]*Job, string, error)
}

// JobEraser removes what a store keeps of a job: its log (events and
// metric points) and its record. Deleting what is not there is no error
// for the log, ENotFound for the record.
type JobEraser interface {
	DeleteJobLog(ctx context.Context, owner, jobID string) error
	DeleteJob(ctx context.Context, owner, id string) error
}

// Message is one queue message.
type Message struct {
	Body       []byte
	Attributes map[string]string
}

// Delivery is a received message. Receipt identifies this delivery for
// Delete and ChangeVisibility; it changes on every redelivery.
type Delivery struct {
	ID           string
	Body         []byte
	Attributes   map[string]string
	Receipt      string
	ReceiveCount int
}

// Queue is an at-least-once queue with visibility timeouts and a
// dead-letter queue: a received message is hidden for the visibility
// timeout and comes back unless deleted; after MaxReceives deliveries it
// moves to the dead-letter queue instead.
type Queue interface {
	Send(ctx context.Context, m Message) (id string, err error)
	// Receive returns up to max visible messages, waiting up to wait for the
	// first one, and hides them for visibility.
	Receive(ctx context.Context, max int, visibility, wait time.Duration) ([]Delivery, error)
	Delete(ctx context.Context, receipt string) error
	ChangeVisibility(ctx context.Context, receipt string, visibility time.Duration) error
	// DeadLetters returns up to max messages in the dead-letter queue, without removing them.
	DeadLetters(ctx context.Context, max int) ([]Delivery, error)
}

// SignedRequest is a presigned HTTP request a client can make without
// credentials.
type SignedRequest struct {
	Method    string            `json:"method"`
	URL       string            `json:"url"`
	Headers   map[string]string `json:"headers,omitempty"`
	ExpiresAt time.Time         `json:"expires_at"`
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key  string
	Size int64
	ETag string
}

// CompletedPart is one uploaded part of a multipart upload.
type CompletedPart struct {
	Number int    `json:"part_number"`
	ETag   string `json:"etag"`
}

// MinPartSize is the smallest part of a multipart upload but the last (S3's rule).
const MinPartSize = 5 << 20

// Blobs stores dataset files and adapters. Presigned URLs are bound to one
// key, one method and (for uploads) one size, and expire.
//
// CreateOnlyHeader and its value "*" are sent with a PresignCreate PUT (S3's
// conditional write); the URL's Headers carry it.
type Blobs interface {
	PresignPut(ctx context.Context, key string, size int64, sha256Hex string, ttl time.Duration) (SignedRequest, error)
	// PresignCreate is PresignPut for an object that must not exist yet:
	// the URL writes once, and a PUT to a key that holds an object is
	// refused (412) and changes nothing. A dataset's upload URL is one, so
	// that the file validation checked cannot be replaced.
	PresignCreate(ctx context.Context, key string, size int64, sha256Hex string, ttl time.Duration) (SignedRequest, error)
	PresignGet(ctx context.Context, key string, ttl time.Duration) (SignedRequest, error)
	// PresignDownload is PresignGet for a browser: the answer carries
	// Content-Disposition: attachment with filename, so it is saved.
	PresignDownload(ctx context.Context, key, filename string, ttl time.Duration) (SignedRequest, error)
	CreateMultipart(ctx context.Context, key string) (uploadID string, err error)
	PresignPart(ctx context.Context, key, uploadID string, part int, size int64, ttl time.Duration) (SignedRequest, error)
	CompleteMultipart(ctx context.Context, key, uploadID string, parts []CompletedPart) (ObjectInfo, error)
	AbortMultipart(ctx context.Context, key, uploadID string) error
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	Open(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error)
	Delete(ctx context.Context, key string) error
	// ListKeys returns the keys under prefix (a folder: it ends with '/').
	ListKeys(ctx context.Context, prefix string) ([]string, error)
}

// CreateOnlyHeader makes a PUT conditional on the key holding no object.
const CreateOnlyHeader = "If-None-Match"

// ObjectWriter stores an object the server itself produces (a validation
// report). Uploads from clients go through presigned URLs instead.
type ObjectWriter interface {
	Put(ctx context.Context, key string, body io.Reader, size int64) (ObjectInfo, error)
}
