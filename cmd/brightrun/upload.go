package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/brightrun/brightrun/shared/api"

	"github.com/spf13/cobra"

	"github.com/brightrun/brightrun/shared/client"
	"github.com/brightrun/brightrun/shared/dataset"
	"github.com/brightrun/brightrun/shared/pipeline"
)

type uploadOptions struct {
	name        string
	format      dataset.Format
	force       bool
	noWait      bool
	parallel    int
	waitTimeout time.Duration
}

func (a *app) uploadCommand() *cobra.Command {
	var (
		o      uploadOptions
		format string
	)
	c := &cobra.Command{
		Use:   "upload FILE",
		Short: "Validate a dataset locally, upload it, and wait for the server's validation",
		Long: `Upload a chat JSONL dataset:

 1. validate it on this machine (an invalid file is refused unless --force);
 2. create the dataset with its size and sha256;
 3. upload it with a progress bar: one PUT, or for large files parts sent in
    parallel, each to its own presigned URL;
 4. wait until the server has validated it, and print its summary.

An interrupted upload resumes where it stopped when the same command is run
again: finished parts are not sent twice. The state is kept in the user's
cache folder (brightrun/uploads/<sha256>.json) until the upload completes.
Upload URLs are valid for one hour; after that a rerun starts over.

--format sharegpt or --format alpaca declares a file in one of those shapes:
it is validated as such here and on the server, which converts it to the
messages form that jobs train on.

Exit status 0 when the dataset ends ready, 1 when it is invalid.`,
		Example: "  brightrun datasets upload support-chats.jsonl --name \"support chats v2\"\n  brightrun datasets upload --format alpaca instructions.jsonl",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.parallel < 1 || o.parallel > 32 {
				return usagef(cmd, "--parallel must be within 1..32, got %d", o.parallel)
			}
			var err error
			if o.format, err = dataset.ParseFormat(format); err != nil {
				return usagef(cmd, "--%v", err)
			}
			return a.upload(cmd.Context(), args[0], o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.name, "name", "", "the dataset's name (default: the file's name)")
	f.StringVar(&format, "format", string(dataset.FormatMessages), "the shape of the lines: messages, sharegpt or alpaca (jobs train on their conversion to messages)")
	f.BoolVar(&o.force, "force", false, "upload even when local validation finds the file invalid")
	f.BoolVar(&o.noWait, "no-wait", false, "do not wait for the server's validation")
	f.IntVar(&o.parallel, "parallel", 4, "parts uploaded at a time (multipart uploads)")
	f.DurationVar(&o.waitTimeout, "wait-timeout", 30*time.Minute, "how long to wait for the server's validation")
	return c
}

func (a *app) upload(ctx context.Context, path string, o uploadOptions) error {
	cl, err := a.client()
	if err != nil {
		return err
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if info.Size() > pipeline.MaxDatasetBytes {
		return failedf("%s is %s: datasets are limited to %s", path, formatBytes(info.Size()), formatBytes(pipeline.MaxDatasetBytes))
	}
	v, err := a.validateFile(ctx, path, dataset.Options{Format: o.format})
	if err != nil {
		return err
	}
	if !v.report.Valid {
		errs := int64(0)
		for _, n := range v.report.ErrorCounts {
			errs += n
		}
		if !o.force {
			if a.jsonOut {
				if err := a.printJSON(v.report); err != nil {
					return err
				}
			} else {
				printReport(a.stdout, path, v.report, issuesShown, "run `brightrun validate FILE --json` for every issue")
			}
			return failedf("%s is invalid (%s errors): fix it, or upload it anyway with --force", path, formatCount(errs))
		}
		a.note("warning: %s is invalid (%s errors); uploading it anyway (--force): the server will mark it invalid", path, formatCount(errs))
	}
	name := o.name
	if name == "" {
		name = filepath.Base(path)
	}

	st, d, err := a.resumeOrCreate(ctx, cl, path, name, o.format, v)
	if err != nil {
		return err
	}
	if d == nil {
		if d, err = a.sendFile(ctx, cl, path, v, st, o.parallel); err != nil {
			return err
		}
	}
	if !o.noWait && !datasetDone(d) {
		if d, err = a.waitValidated(ctx, cl, d.ID, o.waitTimeout); err != nil {
			return err
		}
	}
	return a.printUploaded(ctx, cl, d)
}

// uploadState is what a rerun needs to resume an upload: the dataset, its
// upload plan and the ETags of the parts already sent.
type uploadState struct {
	Version   int        `json:"version"`
	APIURL    string     `json:"api_url"`
	File      string     `json:"file"`
	SizeBytes int64      `json:"size_bytes"`
	SHA256    string     `json:"sha256"`
	DatasetID string     `json:"dataset_id"`
	Upload    api.Upload `json:"upload"`
	// ETags maps part numbers to the ETags of finished parts.
	ETags     map[int]string `json:"etags"`
	CreatedAt time.Time      `json:"created_at"`

	mu   sync.Mutex
	path string
}

// uploadStatePath is where the state of an upload of a file with this
// sha256 is kept.
func uploadStatePath(sha string) (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find the cache folder: %w", err)
	}
	return filepath.Join(dir, "brightrun", "uploads", sha+".json"), nil
}

// loadUploadState returns the saved state for sha, or nil when there is
// none (or it is unreadable: it is then ignored).
func loadUploadState(sha string) (*uploadState, error) {
	path, err := uploadStatePath(sha)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read upload state: %w", err)
	}
	var st uploadState
	if err := json.Unmarshal(data, &st); err != nil || st.Version != 1 || st.DatasetID == "" {
		return nil, nil
	}
	st.path = path
	if st.ETags == nil {
		st.ETags = map[int]string{}
	}
	return &st, nil
}

// save writes the state; the caller holds st.mu or is alone with st.
func (st *uploadState) save() error {
	if st.path == "" {
		p, err := uploadStatePath(st.SHA256)
		if err != nil {
			return err
		}
		st.path = p
	}
	if err := os.MkdirAll(filepath.Dir(st.path), 0o700); err != nil {
		return fmt.Errorf("create upload state folder: %w", err)
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(st.path, data, 0o600)
}

// record keeps a finished part's ETag.
func (st *uploadState) record(part int, etag string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.ETags[part] = etag
	return st.save()
}

func (st *uploadState) remove() {
	if st.path != "" {
		_ = os.Remove(st.path)
	}
}

// parts returns how many parts are finished and how many there are (a
// single upload is one part).
func (st *uploadState) parts() (done, total int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.Upload.Type != "multipart" {
		return 0, 1
	}
	for _, p := range st.Upload.Parts {
		if st.ETags[p.PartNumber] != "" {
			done++
		}
	}
	return done, len(st.Upload.Parts)
}

// expiresAt is when the upload URLs stop working.
func (st *uploadState) expiresAt() time.Time {
	if st.Upload.Request != nil {
		return st.Upload.Request.ExpiresAt
	}
	var t time.Time
	for _, p := range st.Upload.Parts {
		if st.ETags[p.PartNumber] == "" && (t.IsZero() || p.ExpiresAt.Before(t)) {
			t = p.ExpiresAt
		}
	}
	return t
}

// expired reports whether a URL still needed has expired.
func (st *uploadState) expired() bool {
	if st.Upload.Request != nil {
		return client.Expired(*st.Upload.Request)
	}
	for _, p := range st.Upload.Parts {
		if st.ETags[p.PartNumber] == "" && client.Expired(p.SignedRequest) {
			return true
		}
	}
	return false
}

// resumeOrCreate finds the saved state of an earlier upload of this file
// to this API and resumes it, or creates the dataset. When the earlier
// upload had in fact finished, it returns that dataset and no state.
func (a *app) resumeOrCreate(ctx context.Context, cl *client.Client, path, name string, format dataset.Format, v *validated) (*uploadState, *api.DatasetView, error) {
	st, err := loadUploadState(v.sha256)
	if err != nil {
		a.note("warning: %v: starting a new upload", err)
	}
	if st != nil && (st.APIURL != cl.BaseURL || st.SizeBytes != v.info.Size()) {
		st = nil
	}
	if st != nil {
		d, err := cl.GetDataset(ctx, st.DatasetID)
		var ae *client.APIError
		switch {
		case errors.As(err, &ae) && ae.Code == pipeline.ENotFound:
			a.note("the earlier upload of this file (%s) no longer exists: starting over", st.DatasetID)
			st.remove()
			st = nil
		case err != nil:
			return nil, nil, err
		case string(d.Format) != string(format):
			a.note("the earlier upload of this file (%s) was declared %s, not %s: starting over", st.DatasetID, d.Format, format)
			if d.Status == pipeline.DatasetAwaitingUpload {
				if err := cl.DeleteDataset(ctx, st.DatasetID); err != nil {
					a.note("warning: could not delete the earlier dataset %s: %v", st.DatasetID, err)
				}
			}
			st.remove()
			st = nil
		case d.Status != pipeline.DatasetAwaitingUpload:
			a.note("this file was already uploaded as %s", d.ID)
			st.remove()
			return nil, d, nil
		case st.expired():
			done, total := st.parts()
			a.note("cannot resume the upload of %s (%d of %d parts sent): its upload URLs expired at %s (they are valid for one hour). Starting over as a new dataset.",
				st.DatasetID, done, total, st.expiresAt().Local().Format("15:04:05"))
			if err := cl.DeleteDataset(ctx, st.DatasetID); err != nil {
				a.note("warning: could not delete the stale dataset %s: %v", st.DatasetID, err)
			}
			st.remove()
			st = nil
		default:
			done, total := st.parts()
			if st.Upload.Type == "multipart" {
				a.note("resuming the upload of %s: %d of %d parts already uploaded", st.DatasetID, done, total)
			} else {
				a.note("resuming the upload of %s", st.DatasetID)
			}
			return st, nil, nil
		}
	}
	created, err := cl.CreateDataset(ctx, client.CreateDatasetRequest{Name: name, SizeBytes: v.info.Size(), SHA256: v.sha256, Format: string(format)})
	if err != nil {
		return nil, nil, err
	}
	abs, _ := filepath.Abs(path)
	st = &uploadState{
		Version: 1, APIURL: cl.BaseURL, File: abs, SizeBytes: v.info.Size(), SHA256: v.sha256,
		DatasetID: created.Dataset.ID, Upload: created.Upload, ETags: map[int]string{}, CreatedAt: time.Now().UTC(),
	}
	if err := st.save(); err != nil {
		a.note("warning: cannot keep the upload's state (%v): an interrupted upload will start over", err)
	}
	if st.Upload.Type == "multipart" {
		a.note("created dataset %s: uploading %s in %d parts of %s", st.DatasetID, formatBytes(st.SizeBytes), len(st.Upload.Parts), formatBytes(st.Upload.PartSize))
	} else {
		a.note("created dataset %s: uploading %s", st.DatasetID, formatBytes(st.SizeBytes))
	}
	return st, nil, nil
}

// sendFile uploads the file as st plans, completes a multipart upload,
// and forgets the state.
func (a *app) sendFile(ctx context.Context, cl *client.Client, path string, v *validated, st *uploadState, parallel int) (*api.DatasetView, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := unchanged(f, v.info); err != nil {
		return nil, err
	}
	size := v.info.Size()
	start := time.Now()
	sent := size
	var bar *progress
	switch st.Upload.Type {
	case "single":
		if st.Upload.Request == nil {
			return nil, fmt.Errorf("the API planned a single upload without its URL")
		}
		bar = newProgress(a.stderr, isTerminal(a.stderr), "upload", size, 0)
		_, err := cl.Put(ctx, *st.Upload.Request, &countingReader{r: io.NewSectionReader(f, 0, size), p: bar}, size)
		bar.Finish()
		if err != nil {
			return nil, a.uploadFailed(err, st, path)
		}
	case "multipart":
		if err := checkPlan(st.Upload, size); err != nil {
			return nil, err
		}
		var pending []api.UploadPart
		var done int64
		for _, p := range st.Upload.Parts {
			if st.ETags[p.PartNumber] != "" {
				done += p.SizeBytes
			} else {
				pending = append(pending, p)
			}
		}
		sent -= done
		bar = newProgress(a.stderr, isTerminal(a.stderr), "upload", size, done)
		err := a.putParts(ctx, cl, f, st, pending, parallel, bar)
		bar.Finish()
		if err != nil {
			return nil, a.uploadFailed(err, st, path)
		}
	default:
		return nil, fmt.Errorf("the API planned an upload of type %q, which this CLI does not know: update brightrun", st.Upload.Type)
	}
	// The bytes sent must be the bytes validated and hashed.
	if err := unchanged(f, v.info); err != nil {
		return nil, err
	}
	var d *api.DatasetView
	if st.Upload.Type == "multipart" {
		parts := make([]pipeline.CompletedPart, 0, len(st.ETags))
		for n, etag := range st.ETags {
			parts = append(parts, pipeline.CompletedPart{Number: n, ETag: etag})
		}
		slices.SortFunc(parts, func(x, y pipeline.CompletedPart) int { return x.Number - y.Number })
		if d, err = cl.CompleteDataset(ctx, st.DatasetID, parts); err != nil {
			return nil, fmt.Errorf("complete the upload of %s: %w", st.DatasetID, err)
		}
	} else if d, err = cl.GetDataset(ctx, st.DatasetID); err != nil {
		return nil, err
	}
	st.remove()
	el := time.Since(start)
	a.note("uploaded %s in %s (%s/s)", formatBytes(sent), formatDuration(el), formatBytes(int64(float64(sent)/max(el.Seconds(), 0.001))))
	return d, nil
}

// unchanged checks that the open file is still the one validated.
func unchanged(f *os.File, was os.FileInfo) error {
	now, err := f.Stat()
	if err != nil {
		return err
	}
	if now.Size() != was.Size() || !now.ModTime().Equal(was.ModTime()) {
		return fmt.Errorf("%s changed while it was being uploaded: run the command again", f.Name())
	}
	return nil
}

// checkPlan checks that a multipart plan covers the file exactly.
func checkPlan(up api.Upload, size int64) error {
	var off int64
	for i, p := range up.Parts {
		if p.PartNumber != i+1 || p.SizeBytes <= 0 || (i < len(up.Parts)-1 && p.SizeBytes != up.PartSize) {
			return fmt.Errorf("the API's multipart plan is inconsistent at part %d", p.PartNumber)
		}
		off += p.SizeBytes
	}
	if off != size {
		return fmt.Errorf("the API's multipart plan covers %d bytes, the file has %d", off, size)
	}
	return nil
}

// putParts uploads the pending parts, parallel at a time, recording each
// finished part's ETag in the state. The first failure stops the rest.
func (a *app) putParts(ctx context.Context, cl *client.Client, f *os.File, st *uploadState, pending []api.UploadPart, parallel int, bar *progress) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan api.UploadPart)
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	for range min(parallel, len(pending)) {
		wg.Go(func() {
			for p := range work {
				etag, err := putPart(ctx, cl, f, st.Upload.PartSize, p, bar)
				if err == nil {
					if serr := st.record(p.PartNumber, etag); serr != nil {
						a.note("warning: cannot save the upload's state (%v): an interrupted upload will resend this part", serr)
					}
					continue
				}
				once.Do(func() {
					firstErr = fmt.Errorf("part %d: %w", p.PartNumber, err)
					cancel()
				})
			}
		})
	}
feed:
	for _, p := range pending {
		select {
		case work <- p:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// putPart sends one part, retrying network errors and 5xx answers.
func putPart(ctx context.Context, cl *client.Client, f *os.File, partSize int64, p api.UploadPart, bar *progress) (string, error) {
	off := int64(p.PartNumber-1) * partSize
	for try := 1; ; try++ {
		cr := &countingReader{r: io.NewSectionReader(f, off, p.SizeBytes), p: bar}
		etag, err := cl.Put(ctx, p.SignedRequest, cr, p.SizeBytes)
		if err == nil {
			if etag == "" {
				return "", errors.New("the blob store answered without an ETag")
			}
			return etag, nil
		}
		bar.Add(-cr.n)
		var (
			te *client.TransferError
			ue *client.UnreachableError
		)
		again := errors.As(err, &ue) || errors.As(err, &te) && te.Status >= 500
		if !again || try == 3 || ctx.Err() != nil {
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Duration(try) * time.Second):
		}
	}
}

// uploadFailed explains a failed upload and whether a rerun resumes it.
func (a *app) uploadFailed(err error, st *uploadState, path string) error {
	done, total := st.parts()
	var te *client.TransferError
	switch {
	case errors.As(err, &te) && te.Expired:
		return &exitError{code: exitAPI, err: fmt.Errorf(
			"the upload URLs of %s expired at %s (they are valid for one hour) with %d of %d parts uploaded: run `brightrun datasets upload %s` again to start over",
			st.DatasetID, st.expiresAt().Local().Format("15:04:05"), done, total, path)}
	case errors.Is(err, context.Canceled):
		if st.Upload.Type == "multipart" {
			a.note("upload interrupted with %d of %d parts uploaded: run `brightrun datasets upload %s` again before %s to resume",
				done, total, path, st.expiresAt().Local().Format("15:04"))
		}
		return err
	}
	if st.Upload.Type == "multipart" {
		return fmt.Errorf("upload %s: %w (%d of %d parts uploaded: run the command again to resume)", st.DatasetID, err, done, total)
	}
	return fmt.Errorf("upload %s: %w", st.DatasetID, err)
}

// waitValidated polls the dataset until validation ends.
func (a *app) waitValidated(ctx context.Context, cl *client.Client, id string, timeout time.Duration) (*api.DatasetView, error) {
	a.note("waiting for the server to validate %s…", id)
	start := time.Now()
	wait := 200 * time.Millisecond
	for {
		d, err := cl.GetDataset(ctx, id)
		if err != nil {
			return nil, err
		}
		if datasetDone(d) {
			return d, nil
		}
		if timeout > 0 && time.Since(start) > timeout {
			return nil, failedf("%s is still %s after %s: check later with `brightrun datasets show %s`", id, d.Status, formatDuration(timeout), id)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 3*time.Second)
	}
}

// printUploaded prints the dataset after its upload; exit status 1 when
// it is invalid.
func (a *app) printUploaded(ctx context.Context, cl *client.Client, d *api.DatasetView) error {
	if a.jsonOut {
		if err := a.printJSON(d); err != nil {
			return err
		}
	} else {
		printDataset(a.stdout, d)
	}
	switch d.Status {
	case pipeline.DatasetReady:
		if !a.jsonOut {
			fmt.Fprintf(a.stdout, "ready: estimate a training run with `brightrun estimate %s`\n", d.ID)
		}
	case pipeline.DatasetInvalid:
		if !a.jsonOut && d.Validation != nil {
			if r, err := cl.GetReport(ctx, d.ID); err == nil {
				printIssues(a.stdout, r.Issues, countIssues(summaryOf(&r.Summary)), issuesShown, "brightrun datasets report "+d.ID)
			}
		}
		return silentFailure(d.ID + " is invalid")
	default:
		if !a.jsonOut {
			fmt.Fprintf(a.stdout, "follow its validation with `brightrun datasets show %s`\n", d.ID)
		}
	}
	return nil
}
