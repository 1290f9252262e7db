// Package ingest validates an uploaded dataset: it streams the object,
// checks every line and counts tokens exactly, stores the full report beside
// the object and the summary on the dataset record, and moves the dataset to
// ready or invalid. The validate Lambda runs it for S3 ObjectCreated events;
// the local stack runs it right after an upload completes.
//
// A dataset uploaded in another format than messages (ShareGPT, Alpaca)
// is converted line by line in the validating pass, which measures the
// converted file's size and sha256; when it is valid, a second pass over
// the upload writes that file beside it (pipeline.ConvertedKey), checked
// against the first pass's digest, and the record names it as the file
// jobs train on. Two passes, not a temporary file: the function needs no
// disk, and the second pass only parses (it counts no tokens), several
// times faster than the first.
//
// Both passes read the object in parts on every core (dataset.ValidateAt)
// when the blob store reads at any offset (RangeBlobs: ranged GETs on
// S3), and stream it in one pass otherwise; the report is the same.
package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
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

// RangeBlobs is a blob store that also reads an object at any offset:
// s3blob and local both do.
type RangeBlobs interface {
	OpenAt(ctx context.Context, key string) (interface {
		io.ReaderAt
		io.Closer
	}, pipeline.ObjectInfo, error)
}

// Validator validates uploaded datasets.
type Validator struct {
	Store   pipeline.Store
	Blobs   Blobs
	Counter chat.Counter
	// Events, when set, hears of each dataset that becomes ready or
	// invalid (dataset.ready, dataset.invalid) for its owner's webhooks;
	// a failure to publish is logged.
	Events pipeline.EventPublisher
	Log    *slog.Logger
	Now    func() time.Time
	// Options tune the dataset validator (zero: its defaults).
	Options dataset.Options
	// MaxConvertedBytes caps a converted dataset, the file jobs train
	// on, as uploads are capped; 0 means pipeline.MaxDatasetBytes. A
	// conversion can outgrow its upload (an Alpaca line gains the
	// messages' keys), and a larger file is refused, with the reason,
	// rather than written.
	MaxConvertedBytes int64
	// Parallel is how many parts of a dataset are validated at once when
	// Blobs is a RangeBlobs; 0 means GOMAXPROCS (on Lambda, the vCPUs
	// the memory setting buys).
	Parallel int
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
	if pipeline.IsConvertedKey(obj.Key) {
		log.InfoContext(ctx, "object is a converted dataset this function wrote: ignored")
		return nil
	}
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
	report, sum, converted, err := v.validate(ctx, d, obj)
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
	case converted != nil && converted.SizeBytes > v.maxConverted():
		reason = fmt.Sprintf("converted to messages, the dataset is %d bytes: over the %d bytes a dataset may have; split the file and upload the parts as datasets of their own",
			converted.SizeBytes, v.maxConverted())
	}
	if report != nil {
		if err := v.storeReport(ctx, d, report); err != nil {
			return err
		}
	}
	if converted != nil && (reason != "" || !report.Valid) {
		converted = nil // only a dataset that trains needs it
	}
	if converted != nil {
		if err := v.storeConverted(ctx, d, obj, *converted); err != nil {
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
		cur.Converted = converted
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
		if converted != nil {
			if err := v.Blobs.Delete(ctx, converted.Key); err != nil {
				return err
			}
		}
		return v.Blobs.Delete(ctx, pipeline.ReportKey(obj.Key))
	case err != nil:
		return err
	}
	attrs := []any{"status", final.Status, "format", d.Format, "seconds", time.Since(start).Seconds()}
	if converted != nil {
		attrs = append(attrs, "converted_key", converted.Key, "converted_bytes", converted.SizeBytes)
	}
	if report != nil {
		attrs = append(attrs, "lines", report.Lines, "examples", report.Examples, "tokens_total", report.Tokens.Total,
			"tokens_trained", report.Tokens.Trained, "errors", sumCounts(report.ErrorCounts))
	}
	log.InfoContext(ctx, "dataset validated", attrs...)
	v.publish(ctx, final)
	return nil
}

// publish hands the dataset's outcome on to its owner's webhooks; a
// failure is logged, as the jobs' lifecycle does: the dataset's status
// stands.
func (v *Validator) publish(ctx context.Context, d *pipeline.Dataset) {
	if v.Events == nil {
		return
	}
	typ := pipeline.EventDatasetInvalid
	if d.Status == pipeline.DatasetReady {
		typ = pipeline.EventDatasetReady
	}
	if err := v.Events.Publish(ctx, pipeline.OutboundEvent{Type: typ, Owner: d.Owner, Time: v.now(), Dataset: d}); err != nil {
		v.log().WarnContext(ctx, "publish webhook event: its deliveries are lost", "dataset_id", d.ID, "type", typ, "err", err)
	}
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
// For a dataset of another format than messages it also returns where
// its converted file goes, with the size and sha256 that file will have.
func (v *Validator) validate(ctx context.Context, d *pipeline.Dataset, obj pipeline.ObjectInfo) (*dataset.Report, string, *pipeline.StoredFile, error) {
	opts, err := v.options(d)
	if err != nil {
		return nil, "", nil, err
	}
	var conv *digestWriter
	if opts.Format != dataset.FormatMessages {
		conv = &digestWriter{h: sha256.New()}
		opts.Converted = conv
	}
	h := sha256.New()
	opts.Tee = h
	report, sizeOK, err := v.run(ctx, obj.Key, d.SizeBytes, v.Counter, opts)
	if err == nil && !sizeOK {
		return nil, "", nil, nil
	}
	if err != nil {
		return nil, "", nil, fmt.Errorf("validate: %w", err)
	}
	var converted *pipeline.StoredFile
	if conv != nil {
		converted = &pipeline.StoredFile{Key: pipeline.ConvertedKey(d.ObjectKey), SizeBytes: conv.n, SHA256: hex.EncodeToString(conv.h.Sum(nil))}
	}
	return report, hex.EncodeToString(h.Sum(nil)), converted, nil
}

// run validates the object at key with c and opts, in parts when the
// blob store reads at any offset, in one stream otherwise. It reads
// nothing and reports !sizeOK when the object is not size bytes.
func (v *Validator) run(ctx context.Context, key string, size int64, c chat.Counter, opts dataset.Options) (r *dataset.Report, sizeOK bool, err error) {
	if rb, ok := v.Blobs.(RangeBlobs); ok {
		ra, info, err := rb.OpenAt(ctx, key)
		if err != nil {
			return nil, false, fmt.Errorf("open uploaded object: %w", err)
		}
		defer ra.Close()
		if info.Size != size {
			return nil, false, nil
		}
		r, err := dataset.ValidateAt(ctx, ra, info.Size, c, opts, v.Parallel)
		return r, true, err
	}
	rc, info, err := v.Blobs.Open(ctx, key)
	if err != nil {
		return nil, false, fmt.Errorf("open uploaded object: %w", err)
	}
	defer rc.Close()
	if info.Size != size {
		return nil, false, nil
	}
	r, err = dataset.Validate(ctx, rc, c, opts)
	return r, true, err
}

func (v *Validator) maxConverted() int64 {
	if v.MaxConvertedBytes > 0 {
		return v.MaxConvertedBytes
	}
	return pipeline.MaxDatasetBytes
}

// options are the validator's options for the dataset's format.
func (v *Validator) options(d *pipeline.Dataset) (dataset.Options, error) {
	opts := v.Options
	f, err := dataset.ParseFormat(string(d.Format))
	if err != nil {
		return opts, fmt.Errorf("dataset %s: %w", d.ID, err)
	}
	opts.Format = f
	return opts, nil
}

// storeConverted writes the messages form of the upload to want.Key: a
// second pass over the upload with the same conversion, streamed to the
// store with the size the first pass measured. A digest other than the
// first pass's fails it and removes what was written.
func (v *Validator) storeConverted(ctx context.Context, d *pipeline.Dataset, obj pipeline.ObjectInfo, want pipeline.StoredFile) error {
	opts, err := v.options(d)
	if err != nil {
		return err
	}
	// Only the conversion: no issue list, no duplicate detector, no counts.
	opts.MaxIssues, opts.MaxUniqueExamples, opts.Progress = -1, -1, nil
	pr, pw := io.Pipe()
	conv := &digestWriter{h: sha256.New()}
	opts.Converted = io.MultiWriter(pw, conv)
	done := make(chan error, 1)
	go func() {
		_, sizeOK, err := v.run(ctx, obj.Key, d.SizeBytes, noTokens{}, opts)
		if err == nil && !sizeOK {
			err = errors.New("the uploaded object changed size between the two passes")
		}
		if err == nil {
			if sum := hex.EncodeToString(conv.h.Sum(nil)); conv.n != want.SizeBytes || sum != want.SHA256 {
				err = fmt.Errorf("converted file is %d bytes with sha256 %s on the second pass, %d bytes with %s on the first", conv.n, sum, want.SizeBytes, want.SHA256)
			}
		}
		pw.CloseWithError(err)
		done <- err
	}()
	_, err = v.Blobs.Put(ctx, want.Key, pr, want.SizeBytes)
	pr.CloseWithError(errors.New("store stopped reading")) // unblocks the conversion if the store gave up
	convErr := <-done
	if err == nil && convErr != nil {
		// The store took the bytes it was promised, but they are not the
		// ones validated: remove them.
		if derr := v.Blobs.Delete(ctx, want.Key); derr != nil {
			convErr = errors.Join(convErr, derr)
		}
	}
	if err = errors.Join(err, convErr); err != nil {
		return fmt.Errorf("store converted dataset: %w", err)
	}
	return nil
}

// digestWriter counts and hashes what is written to it.
type digestWriter struct {
	h hash.Hash
	n int64
}

func (w *digestWriter) Write(b []byte) (int, error) {
	w.h.Write(b)
	w.n += int64(len(b))
	return len(b), nil
}

// noTokens is the counter of the converting pass, which counts nothing.
type noTokens struct{}

func (noTokens) Count([]chat.Message) (total, trained int) { return 0, 0 }

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
