// Package ingest validates an uploaded dataset: it streams the object,
// checks every line and counts tokens exactly, stores the full report beside
// the object and the summary on the dataset record, and moves the dataset to
// ready or invalid. The validate Lambda runs it for S3 ObjectCreated events;
// the local stack runs it right after an upload completes.
package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/brightrun/brightrun/shared/chat"
	"github.com/brightrun/brightrun/shared/dataset"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// Blobs is what validation needs of the blob store.
type Blobs interface {
	Open(ctx context.Context, key string) (io.ReadCloser, pipeline.ObjectInfo, error)
	pipeline.ObjectWriter
	Delete(ctx context.Context, key string) error
}

// Validator validates uploaded datasets.
type Validator struct {
	Store   pipeline.Store
	Blobs   Blobs
	Counter chat.Counter
	Log     *slog.Logger
	Now     func() time.Time
	// Options tune the dataset validator (zero: its defaults).
	Options dataset.Options
}

func (v *Validator) now() time.Time {
	if v.Now != nil {
		return v.Now().UTC()
	}
	return time.Now().UTC()
}

func (v *Validator) log() *slog.Logger {
	if v.Log != nil {
		return v.Log
	}
	return slog.Default()
}

// HandleS3Event validates the object of every record. Keys arrive
// URL-encoded. It returns an error (so that Lambda retries the event) only
// for failures worth retrying; bad data never fails it.
func (v *Validator) HandleS3Event(ctx context.Context, ev events.S3Event) error {
	var errs []error
	for _, rec := range ev.Records {
		key, err := url.QueryUnescape(rec.S3.Object.Key)
		if err != nil {
			v.log().WarnContext(ctx, "S3 event with an undecodable key", "key", rec.S3.Object.Key, "err", err)
			continue
		}
		if rec.S3.Object.URLDecodedKey != "" {
			key = rec.S3.Object.URLDecodedKey
		}
		obj := pipeline.ObjectInfo{Key: key, Size: rec.S3.Object.Size, ETag: rec.S3.Object.ETag}
		if err := v.ValidateObject(ctx, obj); err != nil {
			errs = append(errs, fmt.Errorf("object %s: %w", key, err))
		}
	}
	return errors.Join(errs...)
}

// ValidateObject validates the dataset stored at obj.Key. It is idempotent:
// an object (key and ETag) already validated is left as it is, and a
// dataset deleted meanwhile is left alone.
func (v *Validator) ValidateObject(ctx context.Context, obj pipeline.ObjectInfo) error {
	log := v.log().With("key", obj.Key, "etag", obj.ETag)
	owner, id, err := pipeline.ParseDatasetKey(obj.Key)
	if err != nil {
		log.InfoContext(ctx, "object is not a dataset upload: ignored")
		return nil
	}
	log = log.With("owner", owner, "dataset_id", id)
	d, err := pipeline.UpdateDataset(ctx, v.Store, owner, id, func(d *pipeline.Dataset) error {
		if d.ObjectKey != obj.Key {
			return errNotItsObject
		}
		if d.ObjectETag == obj.ETag && (d.Status == pipeline.DatasetReady || d.Status == pipeline.DatasetInvalid) {
			return errDuplicate
		}
		d.Status, d.ObjectETag, d.Error, d.UpdatedAt = pipeline.DatasetValidating, obj.ETag, "", v.now()
		return nil
	})
	switch {
	case errors.Is(err, errNotItsObject):
		log.WarnContext(ctx, "object key names a dataset whose object is elsewhere: ignored")
		return nil
	case errors.Is(err, errDuplicate):
		log.InfoContext(ctx, "duplicate upload event: already validated")
		return nil
	case pipeline.ErrorCode(err) == pipeline.ENotFound:
		log.InfoContext(ctx, "dataset no longer exists: upload left alone")
		return nil
	case err != nil:
		return err
	}

	start := time.Now()
	report, sum, err := v.validate(ctx, d, obj)
	if err != nil {
		// Leave the dataset validating: the event is retried.
		return err
	}
	var reason string
	switch {
	case report == nil:
		reason = fmt.Sprintf("the uploaded file is %d bytes, but %d were declared: create the dataset again to upload the right file", obj.Size, d.SizeBytes)
	case d.SHA256 != "" && sum != d.SHA256:
		reason = fmt.Sprintf("the uploaded file's sha256 is %s, but %s was declared: create the dataset again to upload the right file", sum, d.SHA256)
	}
	if report != nil {
		if err := v.storeReport(ctx, d, report); err != nil {
			return err
		}
	}
	var summary *pipeline.ValidationSummary
	if report != nil {
		if summary, err = summaryOf(report.Summary); err != nil {
			return err
		}
	}
	final, err := pipeline.UpdateDataset(ctx, v.Store, owner, id, func(cur *pipeline.Dataset) error {
		if cur.ObjectETag != obj.ETag {
			return errSuperseded
		}
		cur.Status, cur.Error, cur.UpdatedAt = pipeline.DatasetInvalid, reason, v.now()
		if report != nil {
			cur.Validation = summary
			cur.ContentSHA256 = sum
			if reason == "" && report.Valid {
				cur.Status = pipeline.DatasetReady
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, errSuperseded):
		log.InfoContext(ctx, "a newer upload replaced this one while validating: its result is dropped")
		return nil
	case pipeline.ErrorCode(err) == pipeline.ENotFound:
		log.InfoContext(ctx, "dataset deleted while validating: report removed")
		return v.Blobs.Delete(ctx, pipeline.ReportKey(obj.Key))
	case err != nil:
		return err
	}
	attrs := []any{"status", final.Status, "seconds", time.Since(start).Seconds()}
	if report != nil {
		attrs = append(attrs, "lines", report.Lines, "examples", report.Examples, "tokens_total", report.Tokens.Total,
			"tokens_trained", report.Tokens.Trained, "errors", sumCounts(report.ErrorCounts))
	}
	log.InfoContext(ctx, "dataset validated", attrs...)
	return nil
}

var (
	errDuplicate    = errors.New("already validated")
	errNotItsObject = errors.New("not the dataset's object")
	errSuperseded   = errors.New("superseded by a newer upload")
)

func sumCounts(m map[dataset.Code]int64) int64 {
	var n int64
	for _, c := range m {
		n += c
	}
	return n
}

// validate streams the object through the validator and a sha256. It
// returns a nil report when the object's size is not the declared one.
func (v *Validator) validate(ctx context.Context, d *pipeline.Dataset, obj pipeline.ObjectInfo) (*dataset.Report, string, error) {
	rc, info, err := v.Blobs.Open(ctx, obj.Key)
	if err != nil {
		return nil, "", fmt.Errorf("open uploaded object: %w", err)
	}
	defer rc.Close()
	if info.Size != d.SizeBytes {
		return nil, "", nil
	}
	h := sha256.New()
	report, err := dataset.Validate(ctx, io.TeeReader(rc, h), v.Counter, v.Options)
	if err != nil {
		return nil, "", fmt.Errorf("validate: %w", err)
	}
	return report, hex.EncodeToString(h.Sum(nil)), nil
}

func (v *Validator) storeReport(ctx context.Context, d *pipeline.Dataset, r *dataset.Report) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if _, err := v.Blobs.Put(ctx, pipeline.ReportKey(d.ObjectKey), bytes.NewReader(data), int64(len(data))); err != nil {
		return fmt.Errorf("store report: %w", err)
	}
	return nil
}

// summaryOf is the validator's summary as the dataset record keeps it:
// the same document, field for field.
func summaryOf(s dataset.Summary) (*pipeline.ValidationSummary, error) {
	data, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode validation summary: %w", err)
	}
	var out pipeline.ValidationSummary
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("decode validation summary: %w", err)
	}
	return &out, nil
}
