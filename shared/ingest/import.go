package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/brightrun/brightrun/shared/netguard"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// S3Sources reads objects of the buckets users may import from
// (s3blob.Sources).
type S3Sources interface {
	// OpenObject streams the object and returns its size (-1: unknown).
	OpenObject(ctx context.Context, bucket, key string) (io.ReadCloser, int64, error)
}

// ImportMessage is the queue message that asks for a dataset's import.
type ImportMessage struct {
	Owner     string `json:"owner"`
	DatasetID string `json:"dataset_id"`
}

// Importer copies an imported dataset's file from its source to where an
// upload of it would land (the dataset's ObjectKey), computing its sha256
// while copying, and hands it to validation: the S3 upload event does in
// the cloud, Validate does where there is none. The dataset then ends
// ready or invalid as an upload does. A copy that cannot succeed (a
// refused address, a missing object, a source over the size cap, an
// answer other than 200) ends the dataset invalid with the reason; a
// transient failure is returned, to be retried, and ends the dataset
// invalid only on the last try.
//
// Import is idempotent: a dataset no longer importing is left as it is,
// and one deleted while importing has its copied file removed.
type Importer struct {
	Store pipeline.Store
	Blobs Blobs
	// HTTP downloads URL sources; its transport must be the network
	// policy's (netguard.Policy.Client), which checks every address
	// dialled, redirects included.
	HTTP *http.Client
	// S3 reads S3 sources under Prefixes (nil: S3 sources are refused).
	S3       S3Sources
	Prefixes []pipeline.S3Prefix
	// MaxBytes caps a source (0: pipeline.MaxDatasetBytes, as uploads).
	MaxBytes int64
	// MaxUnsizedBytes caps a source that does not state its size (no
	// Content-Length), which is read into memory to learn it (0:
	// DefaultMaxUnsizedBytes).
	MaxUnsizedBytes int64
	// Validate, when set, validates the copied object (the local stack);
	// nil leaves it to the blob store's ObjectCreated event (S3).
	Validate func(ctx context.Context, obj pipeline.ObjectInfo) error
	// MaxAttempts is how many deliveries of an import message there are
	// before a transient failure ends the dataset invalid (the import
	// queue's maxReceiveCount); 0 means 1.
	MaxAttempts int
	// Events, when set, hears of each import that failed (dataset.invalid,
	// as a failed validation sends); one that copied is validated, and
	// validation sends its outcome.
	Events pipeline.EventPublisher
	Log    *slog.Logger
	Now    func() time.Time
}

func (im *Importer) now() time.Time {
	if im.Now != nil {
		return im.Now().UTC()
	}
	return time.Now().UTC()
}

func (im *Importer) log() *slog.Logger {
	if im.Log != nil {
		return im.Log
	}
	return slog.Default()
}

func (im *Importer) maxBytes() int64 {
	if im.MaxBytes > 0 {
		return im.MaxBytes
	}
	return pipeline.MaxDatasetBytes
}

// recordTime is what an import keeps of its invocation's time to record
// its outcome.
const recordTime = 20 * time.Second

// DefaultMaxUnsizedBytes is Importer.MaxUnsizedBytes's default.
const DefaultMaxUnsizedBytes = 64 << 20

func (im *Importer) maxUnsized() int64 {
	if im.MaxUnsizedBytes > 0 {
		return im.MaxUnsizedBytes
	}
	return DefaultMaxUnsizedBytes
}

// permanentError marks a copy failure that no retry mends: its message is
// the reason the dataset is invalid.
type permanentError struct{ reason string }

func (e *permanentError) Error() string { return e.reason }

func permanent(format string, args ...any) error {
	return &permanentError{reason: fmt.Sprintf(format, args...)}
}

// HandleSQSEvent imports the dataset of every message, reporting the
// messages to retry (transient failures) as batch item failures.
func (im *Importer) HandleSQSEvent(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	var resp events.SQSEventResponse
	if deadline, ok := ctx.Deadline(); ok {
		// Stop copying in time to record why, before Lambda ends the
		// invocation.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-recordTime))
		defer cancel()
	}
	for _, m := range ev.Records {
		receives := 1
		if n, err := fmt.Sscan(m.Attributes["ApproximateReceiveCount"], &receives); n != 1 || err != nil {
			receives = 1
		}
		if err := im.HandleMessage(ctx, []byte(m.Body), receives); err != nil {
			im.log().WarnContext(ctx, "import failed: the message will be retried", "message_id", m.MessageId, "receives", receives, "err", err)
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.MessageId})
		}
	}
	return resp, nil
}

// HandleMessage imports the dataset an ImportMessage names; receives is
// the message's delivery count (the last one fails the dataset on any
// error). A malformed message is dropped with a log line.
func (im *Importer) HandleMessage(ctx context.Context, body []byte, receives int) error {
	var m ImportMessage
	if err := json.Unmarshal(body, &m); err != nil || m.Owner == "" || m.DatasetID == "" {
		im.log().ErrorContext(ctx, "malformed import message: dropped", "body", string(body), "err", err)
		return nil
	}
	return im.Import(ctx, m.Owner, m.DatasetID, receives >= max(im.MaxAttempts, 1))
}

// Import copies the owner's dataset from its source and starts its
// validation. last says this is the last try: a transient failure then
// ends the dataset invalid instead of being returned.
func (im *Importer) Import(ctx context.Context, owner, id string, last bool) error {
	log := im.log().With("owner", owner, "dataset_id", id)
	d, err := im.Store.GetDataset(ctx, owner, id)
	switch {
	case pipeline.ErrorCode(err) == pipeline.ENotFound:
		log.InfoContext(ctx, "dataset deleted before its import: nothing to copy")
		return nil
	case err != nil:
		return fmt.Errorf("read dataset %s: %w", id, err)
	case d.Status != pipeline.DatasetImporting || d.Source == nil:
		log.InfoContext(ctx, "dataset is not importing: left as it is", "status", d.Status)
		return nil
	}
	start := time.Now()
	info, sum, err := im.copy(ctx, log, d)
	var perm *permanentError
	// The reason is recorded even when the copy ran out of time.
	recordCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	switch {
	case errors.As(err, &perm):
		return im.fail(recordCtx, log, d, perm.reason)
	case err != nil && last:
		return im.fail(recordCtx, log, d, fmt.Sprintf("the copy from %s failed on every try: %v", sourceName(*d.Source), unwrapURLError(err)))
	case err != nil:
		return fmt.Errorf("import dataset %s: %w", id, err)
	}
	// The dataset may have been deleted while copying: remove the copy.
	_, err = pipeline.UpdateDataset(recordCtx, im.Store, owner, id, func(cur *pipeline.Dataset) error {
		if cur.Status != pipeline.DatasetImporting || cur.ContentSHA256 == sum {
			return pipeline.ErrNoChange
		}
		cur.ContentSHA256, cur.UpdatedAt = sum, im.now()
		return nil
	})
	if pipeline.ErrorCode(err) == pipeline.ENotFound {
		log.InfoContext(ctx, "dataset deleted while importing: its copy is removed")
		if err := im.Blobs.Delete(recordCtx, d.ObjectKey); err != nil {
			return fmt.Errorf("remove the copy of deleted dataset %s: %w", id, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("record the import of dataset %s: %w", id, err)
	}
	log.InfoContext(ctx, "dataset imported", "source", sourceName(*d.Source), "size_bytes", info.Size, "sha256", sum, "seconds", time.Since(start).Seconds())
	if im.Validate != nil {
		if err := im.Validate(ctx, info); err != nil {
			return fmt.Errorf("validate imported dataset %s: %w", id, err)
		}
	}
	return nil
}

// fail ends an importing dataset invalid with the reason.
func (im *Importer) fail(ctx context.Context, log *slog.Logger, d *pipeline.Dataset, reason string) error {
	ended := false
	failed, err := pipeline.UpdateDataset(ctx, im.Store, d.Owner, d.ID, func(cur *pipeline.Dataset) error {
		ended = false // a retry after a conflict judges the stored dataset again
		if cur.Status != pipeline.DatasetImporting {
			return pipeline.ErrNoChange
		}
		cur.Status, cur.Error, cur.UpdatedAt = pipeline.DatasetInvalid, reason, im.now()
		ended = true
		return nil
	})
	switch {
	case pipeline.ErrorCode(err) == pipeline.ENotFound:
		log.InfoContext(ctx, "dataset deleted while importing")
		return nil
	case err != nil:
		return fmt.Errorf("record the failed import of dataset %s: %w", d.ID, err)
	}
	log.WarnContext(ctx, "import failed: dataset invalid", "reason", reason)
	if im.Events != nil && ended {
		if err := im.Events.Publish(ctx, pipeline.OutboundEvent{Type: pipeline.EventDatasetInvalid, Owner: failed.Owner, Time: im.now(), Dataset: failed}); err != nil {
			log.WarnContext(ctx, "publish webhook event: its deliveries are lost", "type", pipeline.EventDatasetInvalid, "err", err)
		}
	}
	return nil
}

// copy streams the source to the dataset's object, hashing it on the way.
func (im *Importer) copy(ctx context.Context, log *slog.Logger, d *pipeline.Dataset) (pipeline.ObjectInfo, string, error) {
	rc, size, err := im.open(ctx, *d.Source)
	if err != nil {
		return pipeline.ObjectInfo{}, "", err
	}
	defer rc.Close()
	var body io.Reader = rc
	if size < 0 {
		// No Content-Length (a chunked answer): a file small enough is
		// read whole to learn its size; a larger one must be served with
		// its size.
		limit := im.maxUnsized()
		data, err := io.ReadAll(io.LimitReader(rc, limit+1))
		switch {
		case err != nil:
			return pipeline.ObjectInfo{}, "", fmt.Errorf("read %s: %w", sourceName(*d.Source), err)
		case int64(len(data)) > limit:
			return pipeline.ObjectInfo{}, "", permanent("%s did not state the file's size (no Content-Length) and is over %d bytes: serve it with its size, or upload it instead",
				sourceName(*d.Source), limit)
		}
		body, size = bytes.NewReader(data), int64(len(data))
	}
	switch {
	case size == 0:
		return pipeline.ObjectInfo{}, "", permanent("%s is empty", sourceName(*d.Source))
	case size > im.maxBytes():
		return pipeline.ObjectInfo{}, "", permanent("%s is %d bytes: datasets are limited to %d bytes (5 GiB); split the file and import the parts as datasets of their own",
			sourceName(*d.Source), size, im.maxBytes())
	}
	// Validation checks the object against the record's size, as for an
	// upload: record it first.
	if _, err := pipeline.UpdateDataset(ctx, im.Store, d.Owner, d.ID, func(cur *pipeline.Dataset) error {
		if cur.Status != pipeline.DatasetImporting {
			return errNotImporting
		}
		if cur.SizeBytes == size {
			return pipeline.ErrNoChange
		}
		cur.SizeBytes, cur.UpdatedAt = size, im.now()
		return nil
	}); err != nil {
		if errors.Is(err, errNotImporting) || pipeline.ErrorCode(err) == pipeline.ENotFound {
			return pipeline.ObjectInfo{}, "", permanent("the dataset left importing while its copy started")
		}
		return pipeline.ObjectInfo{}, "", fmt.Errorf("record the size: %w", err)
	}
	h := sha256.New()
	src := &sourceReader{r: io.TeeReader(body, h)}
	log.InfoContext(ctx, "copying dataset", "source", sourceName(*d.Source), "size_bytes", size)
	info, err := im.Blobs.Put(ctx, d.ObjectKey, src, size)
	if src.err != nil {
		return pipeline.ObjectInfo{}, "", fmt.Errorf("read %s: %w", sourceName(*d.Source), src.err)
	}
	if err != nil {
		return pipeline.ObjectInfo{}, "", fmt.Errorf("store the copy: %w", err)
	}
	return info, hex.EncodeToString(h.Sum(nil)), nil
}

var errNotImporting = errors.New("dataset is not importing")

// sourceReader remembers the source's read error, to tell it from the
// store's.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// open opens the source for reading and returns its declared size.
func (im *Importer) open(ctx context.Context, src pipeline.ImportSource) (io.ReadCloser, int64, error) {
	if src.IsS3() {
		if !pipeline.AllowedS3(im.Prefixes, src) || im.S3 == nil {
			return nil, 0, permanent("%s is not under a bucket and prefix this deployment imports from", src)
		}
		rc, size, err := im.S3.OpenObject(ctx, src.Bucket, src.Key)
		switch pipeline.ErrorCode(err) {
		case "":
			return rc, size, nil
		case pipeline.ENotFound:
			return nil, 0, permanent("%s does not exist", src)
		case pipeline.EPrecondition, pipeline.EInvalid:
			return nil, 0, permanent("%s", pipeline.ErrorMessage(err))
		}
		return nil, 0, fmt.Errorf("open %s: %w", src, err)
	}
	if im.HTTP == nil {
		return nil, 0, permanent("this deployment does not import from URLs")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.URL, nil)
	if err != nil {
		return nil, 0, permanent("the source URL cannot be requested: %v", err)
	}
	// The bytes as stored: a transparently decompressed answer has no
	// size, and the digest is of the file.
	req.Header.Set("Accept-Encoding", "identity")
	req.Header.Set("User-Agent", "brightrun-import/1")
	resp, err := im.HTTP.Do(req)
	if err != nil {
		return nil, 0, classifyFetchError(sourceName(src), err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		resp.Body.Close()
		return nil, 0, fmt.Errorf("%s answered %s", sourceName(src), resp.Status)
	default:
		resp.Body.Close()
		return nil, 0, permanent("%s answered %s: the URL must answer 200 with the file", sourceName(src), resp.Status)
	}
	return resp.Body, resp.ContentLength, nil
}

// classifyFetchError makes a refused destination, a bad certificate or
// an unknown host permanent; other network errors are worth a retry.
func classifyFetchError(name string, err error) error {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.Is(err, netguard.ErrForbidden):
		return permanent("%s was refused: %v", name, unwrapURLError(err))
	case errors.As(err, &certErr):
		return permanent("%s has a certificate this server does not trust: %v", name, certErr.Err)
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return permanent("%s: no such host %s", name, dnsErr.Name)
	}
	return fmt.Errorf("fetch %s: %w", name, unwrapURLError(err))
}

// unwrapURLError drops url.Error's method and URL (the URL may carry a
// signature in its query).
func unwrapURLError(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

// sourceName names a source in logs and reasons without its query (which
// may hold a signature) or user information.
func sourceName(src pipeline.ImportSource) string {
	if src.IsS3() {
		return src.String()
	}
	u, err := url.Parse(src.URL)
	if err != nil {
		return "the source URL"
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}

// ImportQueue starts imports by sending an ImportMessage to a queue that
// an Importer consumes (HandleMessage): the import function's queue in
// the cloud, the local stack's embedded one.
type ImportQueue struct {
	Queue pipeline.Queue
}

// StartImport asks for the dataset's import.
func (q ImportQueue) StartImport(ctx context.Context, d *pipeline.Dataset) error {
	body, err := json.Marshal(ImportMessage{Owner: d.Owner, DatasetID: d.ID})
	if err != nil {
		return fmt.Errorf("encode import message: %w", err)
	}
	if _, err := q.Queue.Send(ctx, pipeline.Message{Body: body}); err != nil {
		return fmt.Errorf("send import message: %w", err)
	}
	return nil
}
