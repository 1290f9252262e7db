package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/netguard"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// ImportStarter starts a dataset's import in the background: a message
// on the import queue in the cloud, a goroutine in the local stack.
type ImportStarter interface {
	StartImport(ctx context.Context, d *pipeline.Dataset) error
}

type importDatasetRequest struct {
	// Source is an https URL or s3://bucket/key.
	Source *string `json:"source"`
	Name   *string `json:"name"`
	// SHA256, when given, is checked against the copied file, as an
	// upload's declared digest is.
	SHA256 *string `json:"sha256,omitempty"`
	Format *string `json:"format,omitempty"`
}

// importDataset creates a dataset whose file the server copies from a
// source: it answers 202 at once with the dataset importing; the copy
// and validation run in the background and end it ready or invalid.
// A source refused by its shape (not https, a forbidden address literal,
// a bucket and prefix not allowed) is refused here; a host name that
// resolves to a forbidden address is refused when the copy connects, and
// the dataset ends invalid with the reason.
func (s *Server) importDataset(w http.ResponseWriter, r *http.Request, owner string) error {
	var req importDatasetRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Source == nil {
		return pipeline.Errorf(pipeline.EInvalid, "source is required: an https URL or s3://bucket/key")
	}
	src, err := pipeline.ParseImportSource(*req.Source)
	if err != nil {
		return err
	}
	if err := s.checkSource(src); err != nil {
		return err
	}
	name := ""
	if req.Name != nil {
		name = *req.Name
	} else {
		name = defaultImportName(src)
	}
	if err := pipeline.ValidateName("name", name); err != nil {
		return err
	}
	sha, format, err := digestAndFormat(req.SHA256, req.Format)
	if err != nil {
		return err
	}
	if s.Imports == nil {
		return pipeline.Errorf(pipeline.EUnavailable, "this deployment does not import datasets: upload the file instead")
	}
	now := s.now()
	id := pipeline.NewID("ds", now)
	d := &pipeline.Dataset{
		ID: id, Owner: owner, Name: strings.TrimSpace(name), Status: pipeline.DatasetImporting, SHA256: sha, Format: format,
		Source: &src, ObjectKey: pipeline.DatasetKey(owner, id), CreatedAt: now, UpdatedAt: now,
	}
	// Store first, then start: the import reads the record.
	if err := s.Store.CreateDataset(r.Context(), d); err != nil {
		return fmt.Errorf("create dataset: %w", err)
	}
	if err := s.Imports.StartImport(r.Context(), d); err != nil {
		// Nothing was copied: take the record back, so that no dataset
		// waits for an import that never starts.
		if derr := s.Store.DeleteDataset(context.WithoutCancel(r.Context()), owner, id); derr != nil {
			err = errors.Join(err, fmt.Errorf("remove the dataset: %w", derr))
		}
		return fmt.Errorf("start import: %w", err)
	}
	s.log().InfoContext(r.Context(), "dataset import started", "owner", owner, "dataset_id", id, "s3", src.IsS3(), "format", format)
	writeJSON(w, http.StatusAccepted, api.ViewDataset(d))
	return nil
}

// checkSource refuses, before anything is stored, a source the copy
// would be refused: a URL of a forbidden shape or address literal, or an
// S3 object outside the deployment's allowed prefixes.
func (s *Server) checkSource(src pipeline.ImportSource) error {
	if src.IsS3() {
		if !pipeline.AllowedS3(s.Config.ImportS3Prefixes, src) {
			return &pipeline.Error{Code: pipeline.EInvalid,
				Message: fmt.Sprintf("%s is not under a bucket and prefix this deployment imports from", src),
				Details: map[string]any{"allowed": s3PrefixNames(s.Config.ImportS3Prefixes)}}
		}
		return nil
	}
	if _, err := s.Config.ImportPolicy.CheckURL(src.URL); err != nil {
		if errors.Is(err, netguard.ErrForbidden) {
			return pipeline.Errorf(pipeline.EInvalid, "source URL refused: %v", err)
		}
		return pipeline.Errorf(pipeline.EInvalid, "source URL: %v", err)
	}
	return nil
}

func s3PrefixNames(ps []pipeline.S3Prefix) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, "s3://"+p.String())
	}
	return out
}

// defaultImportName is the source's last path element, the name a file
// saved from it would have.
func defaultImportName(src pipeline.ImportSource) string {
	path := src.Key
	if !src.IsS3() {
		path, _, _ = strings.Cut(src.URL, "?")
		path, _, _ = strings.Cut(path, "#")
		if _, rest, ok := strings.Cut(path, "://"); ok {
			path = rest
		}
	}
	path = strings.TrimRight(path, "/")
	if i := strings.LastIndex(path, "/"); i >= 0 {
		path = path[i+1:]
	}
	if len(path) > pipeline.MaxNameLength {
		path = path[:pipeline.MaxNameLength]
	}
	return path
}
