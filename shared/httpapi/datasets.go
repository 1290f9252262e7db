package httpapi

import (
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/pipeline"
)

type createDatasetRequest struct {
	Name      *string `json:"name"`
	SizeBytes *int64  `json:"size_bytes"`
	// SHA256 is optional, but when present it is a digest: an empty
	// string is refused as the document says, not taken for "none".
	SHA256 *string `json:"sha256,omitempty"`
	// Format is the shape of the file's lines: messages (default),
	// sharegpt or alpaca.
	Format *string `json:"format,omitempty"`
}

// digestAndFormat reads a new dataset's optional sha256 (64 hex digits,
// lower-cased) and format (messages when left out), for an upload and an
// import alike.
func digestAndFormat(sha256, format *string) (string, pipeline.DatasetFormat, error) {
	var sha string
	if sha256 != nil {
		sha = strings.ToLower(*sha256)
		if b, err := hex.DecodeString(sha); err != nil || len(b) != 32 {
			return "", "", pipeline.Errorf(pipeline.EInvalid, "sha256 must be 64 hex digits (or left out), got %q", *sha256)
		}
	}
	if format == nil {
		return sha, pipeline.FormatMessages, nil
	}
	f, err := pipeline.ParseDatasetFormat(*format)
	return sha, f, err
}

func (s *Server) createDataset(w http.ResponseWriter, r *http.Request, owner string) error {
	var req createDatasetRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Name == nil {
		return pipeline.Errorf(pipeline.EInvalid, "name is required")
	}
	if err := pipeline.ValidateName("name", *req.Name); err != nil {
		return err
	}
	switch {
	case req.SizeBytes == nil:
		return pipeline.Errorf(pipeline.EInvalid, "size_bytes is required")
	case *req.SizeBytes <= 0:
		return pipeline.Errorf(pipeline.EInvalid, "size_bytes must be at least 1, got %d", *req.SizeBytes)
	case *req.SizeBytes > pipeline.MaxDatasetBytes:
		return &pipeline.Error{Code: pipeline.ETooLarge,
			Message: fmt.Sprintf("size_bytes is %d: datasets are limited to %d bytes (5 GiB)", *req.SizeBytes, pipeline.MaxDatasetBytes)}
	}
	sha, format, err := digestAndFormat(req.SHA256, req.Format)
	if err != nil {
		return err
	}
	now := s.now()
	id := pipeline.NewID("ds", now)
	d := &pipeline.Dataset{
		ID: id, Owner: owner, Name: strings.TrimSpace(*req.Name), Status: pipeline.DatasetAwaitingUpload,
		SizeBytes: *req.SizeBytes, SHA256: sha, Format: format, ObjectKey: pipeline.DatasetKey(owner, id), CreatedAt: now, UpdatedAt: now,
	}
	up, err := s.planUpload(r, d)
	if err != nil {
		return err
	}
	if err := s.Store.CreateDataset(r.Context(), d); err != nil {
		return fmt.Errorf("create dataset: %w", err)
	}
	s.log().InfoContext(r.Context(), "dataset created", "owner", owner, "dataset_id", id, "size_bytes", d.SizeBytes, "format", d.Format, "upload", up.Type)
	if s.DatasetCreated != nil {
		s.DatasetCreated(d)
	}
	writeJSON(w, http.StatusCreated, api.CreatedDataset{Dataset: api.ViewDataset(d), Upload: up})
	return nil
}

// planUpload presigns one create-only PUT, or starts a multipart upload
// and presigns every part, depending on the size. Either writes the
// dataset's file once: a second PUT is refused, and a completed multipart
// upload takes no more parts.
func (s *Server) planUpload(r *http.Request, d *pipeline.Dataset) (api.Upload, error) {
	cfg := s.config()
	ctx := r.Context()
	if d.SizeBytes < cfg.MultipartThreshold {
		// Write-once: the file that validation checks cannot be replaced
		// through the same URL afterwards.
		req, err := s.Blobs.PresignCreate(ctx, d.ObjectKey, d.SizeBytes, d.SHA256, cfg.UploadURLTTL)
		if err != nil {
			return api.Upload{}, fmt.Errorf("presign upload: %w", err)
		}
		return api.Upload{Type: "single", Request: &req}, nil
	}
	uploadID, err := s.Blobs.CreateMultipart(ctx, d.ObjectKey)
	if err != nil {
		return api.Upload{}, fmt.Errorf("start multipart upload: %w", err)
	}
	d.UploadID = uploadID
	up := api.Upload{Type: "multipart", UploadID: uploadID, PartSize: cfg.PartSize, CompleteURL: "/v1/datasets/" + d.ID + "/complete"}
	for n, off := 1, int64(0); off < d.SizeBytes; n, off = n+1, off+cfg.PartSize {
		size := min(cfg.PartSize, d.SizeBytes-off)
		req, err := s.Blobs.PresignPart(ctx, d.ObjectKey, uploadID, n, size, cfg.UploadURLTTL)
		if err != nil {
			return api.Upload{}, fmt.Errorf("presign part %d: %w", n, err)
		}
		up.Parts = append(up.Parts, api.UploadPart{PartNumber: n, SizeBytes: size, SignedRequest: req})
	}
	return up, nil
}

type completeRequest struct {
	Parts []pipeline.CompletedPart `json:"parts"`
}

func (s *Server) completeDataset(w http.ResponseWriter, r *http.Request, owner string) error {
	var req completeRequest
	// 1,024 parts with their ETags do not fit the usual 64 KiB.
	if err := decodeJSONUpTo(w, r, &req, MaxCompleteBodyBytes); err != nil {
		return err
	}
	// The list is checked first: a retry is answered as the first time
	// only when it is a well-formed request.
	parts, err := completedParts(req.Parts)
	if err != nil {
		return err
	}
	d, err := s.Store.GetDataset(r.Context(), owner, r.PathValue("id"))
	if err != nil {
		return err
	}
	if d.UploadID == "" {
		// Completed before (a client retry): answer as the first time did.
		if _, err := s.Blobs.Stat(r.Context(), d.ObjectKey); err == nil {
			writeJSON(w, http.StatusOK, api.ViewDataset(d))
			return nil
		}
		return pipeline.Errorf(pipeline.EPrecondition, "dataset %s has no multipart upload to complete", d.ID)
	}
	info, err := s.Blobs.CompleteMultipart(r.Context(), d.ObjectKey, d.UploadID, parts)
	switch pipeline.ErrorCode(err) {
	case "":
	case pipeline.ENotFound:
		return pipeline.Errorf(pipeline.EPrecondition, "the multipart upload of dataset %s is no longer open: create the dataset again", d.ID)
	case pipeline.EInvalid:
		// The list is well formed (checked above): what the store
		// refuses is a part not uploaded, another ETag or a part too
		// small, a conflict with what was uploaded.
		return &pipeline.Error{Code: pipeline.EPrecondition, Message: "the parts do not match the upload: " + pipeline.ErrorMessage(err)}
	default:
		return fmt.Errorf("complete multipart upload: %w", err)
	}
	fresh, err := pipeline.UpdateDataset(r.Context(), s.Store, owner, d.ID, func(d *pipeline.Dataset) error {
		if d.UploadID == "" {
			return pipeline.ErrNoChange
		}
		d.UploadID = ""
		d.UpdatedAt = s.now()
		return nil
	})
	if err != nil {
		return fmt.Errorf("record completed upload: %w", err)
	}
	s.log().InfoContext(r.Context(), "multipart upload completed", "owner", owner, "dataset_id", d.ID, "size_bytes", info.Size)
	writeJSON(w, http.StatusOK, api.ViewDataset(fresh))
	return nil
}

// Bounds of a completion's parts list, as the OpenAPI document states them.
const (
	// MaxUploadParts is the most parts an upload plan has: the largest
	// dataset cut into parts of the smallest size.
	MaxUploadParts = (pipeline.MaxDatasetBytes + pipeline.MinPartSize - 1) / pipeline.MinPartSize
	maxPartNumber  = 10000 // S3's
	maxETagLength  = 128
)

// completedParts checks a completion's parts list against the document
// (1..MaxUploadParts parts, numbers 1..10000, ETags of 1..128 printable
// ASCII characters) and returns it in ascending part order, whatever order
// it came in, with repeats of the same part and ETag listed once. One part
// listed with two ETags cannot match the upload: a conflict.
func completedParts(parts []pipeline.CompletedPart) ([]pipeline.CompletedPart, error) {
	if len(parts) == 0 || len(parts) > MaxUploadParts {
		return nil, pipeline.Errorf(pipeline.EInvalid, "parts must list 1 to %d parts, one {part_number, etag} per uploaded part; got %d", MaxUploadParts, len(parts))
	}
	for i, p := range parts {
		if p.Number < 1 || p.Number > maxPartNumber {
			return nil, pipeline.Errorf(pipeline.EInvalid, "parts[%d].part_number must be 1 to %d, got %d", i, maxPartNumber, p.Number)
		}
		if err := checkETag(p.ETag); err != nil {
			return nil, pipeline.Errorf(pipeline.EInvalid, "parts[%d].etag %v", i, err)
		}
	}
	sorted := slices.Clone(parts)
	slices.SortStableFunc(sorted, func(a, b pipeline.CompletedPart) int { return cmp.Compare(a.Number, b.Number) })
	out := sorted[:0]
	for _, p := range sorted {
		if n := len(out); n > 0 && out[n-1].Number == p.Number {
			if out[n-1].ETag != p.ETag {
				return nil, pipeline.Errorf(pipeline.EPrecondition, "part %d is listed with two ETags, %s and %s: list the one its upload answered", p.Number, out[n-1].ETag, p.ETag)
			}
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

func checkETag(etag string) error {
	if etag == "" || len(etag) > maxETagLength {
		return fmt.Errorf("must be 1 to %d characters, got %d", maxETagLength, len(etag))
	}
	for i := 0; i < len(etag); i++ {
		if etag[i] < '!' || etag[i] > '~' {
			return fmt.Errorf("must be printable ASCII without spaces, as the part's ETag header was (byte %d is not)", i)
		}
	}
	return nil
}

// page reads ?cursor= and ?limit=. An empty cursor is the first page, as
// the document says; an empty limit is no integer, and is refused.
func page(r *http.Request) (pipeline.Page, error) {
	p := pipeline.Page{Cursor: r.URL.Query().Get("cursor")}
	if r.URL.Query().Has("limit") {
		l := r.URL.Query().Get("limit")
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > pipeline.MaxPageSize {
			return p, pipeline.Errorf(pipeline.EInvalid, "limit must be an integer from 1 to %d, got %q", pipeline.MaxPageSize, l)
		}
		p.Limit = n
	}
	return p, nil
}

func (s *Server) listDatasets(w http.ResponseWriter, r *http.Request, owner string) error {
	p, err := page(r)
	if err != nil {
		return err
	}
	list, next, err := s.Store.ListDatasets(r.Context(), owner, p)
	if err != nil {
		return err
	}
	out := api.DatasetList{Datasets: make([]api.DatasetView, 0, len(list)), NextCursor: next}
	for _, d := range list {
		out.Datasets = append(out.Datasets, api.ViewDataset(s.endStaleImport(r.Context(), d)))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getDataset(w http.ResponseWriter, r *http.Request, owner string) error {
	d, err := s.Store.GetDataset(r.Context(), owner, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.ViewDataset(s.endStaleImport(r.Context(), d)))
	return nil
}

// endStaleImport ends an import that has been importing past
// pipeline.ImportDeadline (every try crashed before recording why) when
// it is read; a failure to record it is logged, and the dataset shown as
// stored. (No webhook event: the uploads function publishes none, and
// the imports dead-letter queue's alarm has told the operator.)
func (s *Server) endStaleImport(ctx context.Context, d *pipeline.Dataset) *pipeline.Dataset {
	if !pipeline.EndStaleImport(&pipeline.Dataset{Status: d.Status, UpdatedAt: d.UpdatedAt}, s.now()) {
		return d
	}
	ended := false
	got, err := pipeline.UpdateDataset(ctx, s.Store, d.Owner, d.ID, func(cur *pipeline.Dataset) error {
		ended = pipeline.EndStaleImport(cur, s.now())
		if !ended {
			return pipeline.ErrNoChange
		}
		return nil
	})
	if err != nil {
		s.log().WarnContext(ctx, "end a stale import", "dataset_id", d.ID, "err", err)
		return d
	}
	if ended {
		s.log().WarnContext(ctx, "import ended invalid: no copy recorded in time", "dataset_id", d.ID, "deadline", pipeline.ImportDeadline)
	}
	return got
}

// deleteDataset removes the object first, then the record, so that a
// failure half-way leaves a record the caller can delete again.
func (s *Server) deleteDataset(w http.ResponseWriter, r *http.Request, owner string) error {
	ctx := r.Context()
	d, err := s.Store.GetDataset(ctx, owner, r.PathValue("id"))
	if err != nil {
		return err
	}
	if j, err := s.activeJobOn(r.Context(), owner, d.ID); err != nil {
		return err
	} else if j != nil {
		as := "to train on"
		if j.DatasetID != d.ID {
			as = "as its validation dataset"
		}
		return &pipeline.Error{Code: pipeline.EPrecondition,
			Message: fmt.Sprintf("dataset %s is used by job %s %s, which is %s: cancel it or wait for it to end", d.ID, j.ID, as, j.Status),
			Details: map[string]string{"job_id": j.ID}}
	}
	if d.UploadID != "" {
		if err := s.Blobs.AbortMultipart(ctx, d.ObjectKey, d.UploadID); err != nil && pipeline.ErrorCode(err) != pipeline.ENotFound {
			return fmt.Errorf("abort multipart upload: %w", err)
		}
	}
	keys := []string{d.ObjectKey, pipeline.ReportKey(d.ObjectKey)}
	if d.Converted != nil {
		keys = append(keys, d.Converted.Key)
	}
	for _, key := range keys {
		if err := s.Blobs.Delete(ctx, key); err != nil {
			return fmt.Errorf("delete %s: %w", key, err)
		}
	}
	if err := s.Store.DeleteDataset(ctx, owner, d.ID); err != nil && pipeline.ErrorCode(err) != pipeline.ENotFound {
		return fmt.Errorf("delete dataset record: %w", err)
	}
	s.log().InfoContext(ctx, "dataset deleted", "owner", owner, "dataset_id", d.ID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// getReport streams the dataset's full validation report.
func (s *Server) getReport(w http.ResponseWriter, r *http.Request, owner string) error {
	d, err := s.Store.GetDataset(r.Context(), owner, r.PathValue("id"))
	if err != nil {
		return err
	}
	if d.Validation == nil {
		return pipeline.Errorf(pipeline.EPrecondition, "dataset %s has no report yet: it is %s", d.ID, d.Status)
	}
	rc, info, err := s.Blobs.Open(r.Context(), pipeline.ReportKey(d.ObjectKey))
	if pipeline.ErrorCode(err) == pipeline.ENotFound {
		return pipeline.Errorf(pipeline.EPrecondition, "the report of dataset %s is not available: upload the file again", d.ID)
	}
	if err != nil {
		return fmt.Errorf("open report: %w", err)
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, rc); err != nil {
		s.log().WarnContext(r.Context(), "report cut short", "dataset_id", d.ID, "err", err)
	}
	return nil
}

// activeJobOn returns a job of the owner's that has not ended and trains
// or evaluates on the dataset, or nil.
func (s *Server) activeJobOn(ctx context.Context, owner, datasetID string) (*pipeline.Job, error) {
	for _, st := range pipeline.JobStatuses {
		if st.Terminal() {
			continue
		}
		cursor := ""
		for {
			page, next, err := s.Store.ListJobs(ctx, owner, pipeline.JobFilter{Status: st}, pipeline.Page{Cursor: cursor, Limit: pipeline.MaxPageSize})
			if err != nil {
				return nil, err
			}
			for _, j := range page {
				if j.DatasetID == datasetID || j.Validation != nil && j.Validation.DatasetID == datasetID {
					return j, nil
				}
			}
			if next == "" {
				break
			}
			cursor = next
		}
	}
	return nil, nil
}
