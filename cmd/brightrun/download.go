package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/brightrun/brightrun/shared/api"

	"github.com/spf13/cobra"

	"github.com/brightrun/brightrun/shared/client"
	"github.com/brightrun/brightrun/shared/pipeline"
)

func (a *app) jobsDownloadCommand() *cobra.Command {
	var (
		force      bool
		checkpoint string
	)
	c := &cobra.Command{
		Use:   "download JOB [DIR]",
		Short: "Download a job's adapter files, or one of its checkpoints (default folder: the job's id)",
		Long: `Download a completed job's adapter files into DIR (default: a folder named
after the job), each with a progress bar, checking its size and sha256.
Files already there with the right content are skipped; a different file in
the way is not overwritten unless --force is given. A job that failed or was
cancelled after a checkpoint lists that checkpoint's (partial) adapter.

With --checkpoint (a checkpoint id, a step, or "latest") the files of one
stored checkpoint are downloaded instead: its adapter (usable on its own)
and the training state a resumed run continues from. Default folder:
JOB/checkpoint-STEP. A checkpoint the job does not have is answered with
the list of those it has.

Exit status 1 when the job has no adapter (yet) or no such checkpoint, when
a file in the way differs, or when a download does not match its checksum.`,
		Args: rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := ""
			if len(args) == 2 {
				dir = args[1]
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			if checkpoint != "" {
				return a.downloadCheckpoint(cmd.Context(), cl, args[0], checkpoint, dir, force)
			}
			if dir == "" {
				dir = args[0]
			}
			return a.download(cmd.Context(), cl, args[0], dir, force)
		},
	}
	c.Flags().BoolVar(&force, "force", false, "overwrite existing files that differ")
	c.Flags().StringVar(&checkpoint, "checkpoint", "", `download a stored checkpoint: its id, its step, or "latest"`)
	return c
}

// pickCheckpoint finds a checkpoint by id, step or "latest" (the last).
func pickCheckpoint(list *api.ArtifactList, which string) (*api.CheckpointView, error) {
	if len(list.Checkpoints) == 0 {
		return nil, failedf("%s (%s) has no stored checkpoint", list.JobID, list.Status)
	}
	if which == "latest" {
		c := list.Checkpoints[0]
		for _, x := range list.Checkpoints[1:] {
			if x.Step > c.Step {
				c = x
			}
		}
		return &c, nil
	}
	var have []string
	for i, c := range list.Checkpoints {
		if c.ID == which || strconv.FormatInt(c.Step, 10) == which {
			return &list.Checkpoints[i], nil
		}
		have = append(have, fmt.Sprintf("%s (step %d)", c.ID, c.Step))
	}
	return nil, failedf("%s has no checkpoint %q: it has %s, or use latest", list.JobID, which, strings.Join(have, ", "))
}

// downloadCheckpoint downloads the files of one of the job's checkpoints.
func (a *app) downloadCheckpoint(ctx context.Context, cl *client.Client, id, which, dir string, force bool) error {
	list, err := cl.Artifacts(ctx, id)
	if err != nil {
		return err
	}
	c, err := pickCheckpoint(list, which)
	if err != nil {
		return err
	}
	if dir == "" {
		dir = filepath.Join(id, fmt.Sprintf("checkpoint-%d", c.Step))
	}
	refresh := func() ([]api.ArtifactView, error) {
		fresh, err := cl.Artifacts(ctx, id)
		if err != nil {
			return nil, err
		}
		fc, err := pickCheckpoint(fresh, c.ID)
		if err != nil {
			return nil, err
		}
		return fc.Files, nil
	}
	kind := "checkpoint"
	if c.Partial {
		kind = "partial checkpoint"
	}
	what := fmt.Sprintf("%s: %s %s at step %d of %d", id, kind, c.ID, c.Step, c.TotalSteps)
	return a.downloadFiles(ctx, c.Files, dir, force, refresh, cl, what)
}

// downloadedFile is one line of download's --json output.
type downloadedFile struct {
	Name      string `json:"name"`
	Path      string `json:"path"`
	SizeBytes int64  `json:"size_bytes"`
	SHA256    string `json:"sha256"`
	// Status is downloaded, or unchanged when the file was already there.
	Status string `json:"status"`
}

func (a *app) download(ctx context.Context, cl *client.Client, id, dir string, force bool) error {
	list, err := cl.Artifacts(ctx, id)
	if err != nil {
		return err
	}
	if len(list.Artifacts) == 0 {
		switch {
		case list.Status == pipeline.JobCompleted:
			return failedf("%s completed but lists no adapter files", id)
		case list.Status.Terminal():
			return failedf("%s %s: it has no adapter to download", id, list.Status)
		}
		return failedf("%s is %s: its adapter can be downloaded once it completes (follow it with `brightrun jobs watch %s`)", id, list.Status, id)
	}
	refresh := func() ([]api.ArtifactView, error) {
		fresh, err := cl.Artifacts(ctx, id)
		if err != nil {
			return nil, err
		}
		return fresh.Artifacts, nil
	}
	what := id
	if list.Partial {
		what = fmt.Sprintf("%s: the partial adapter of its last checkpoint, step %d", id, list.PartialStep)
	}
	return a.downloadFiles(ctx, list.Artifacts, dir, force, refresh, cl, what)
}

// downloadFiles downloads files into dir, checking every destination
// first; an expired URL is refreshed once.
func (a *app) downloadFiles(ctx context.Context, files []api.ArtifactView, dir string, force bool,
	refresh func() ([]api.ArtifactView, error), cl *client.Client, what string) error {
	// Check every destination before downloading anything.
	var (
		out       []downloadedFile
		conflicts []string
	)
	for _, art := range files {
		rel := filepath.FromSlash(art.Name)
		if !filepath.IsLocal(rel) {
			return failedf("the job lists an adapter file named %q, which is not a plain relative path: refused", art.Name)
		}
		dest := filepath.Join(dir, rel)
		f := downloadedFile{Name: art.Name, Path: dest, SizeBytes: art.SizeBytes, SHA256: art.SHA256, Status: "downloaded"}
		same, err := sameContent(dest, art.SizeBytes, art.SHA256)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return err
		case same:
			f.Status = "unchanged"
		case !force:
			conflicts = append(conflicts, dest)
		}
		out = append(out, f)
	}
	if len(conflicts) > 0 {
		return failedf("refusing to overwrite %s: different from the job's adapter (use --force to replace)", strings.Join(conflicts, ", "))
	}
	var total int64
	for i, f := range out {
		if f.Status == "unchanged" {
			a.note("%s is already there", f.Path)
			continue
		}
		art := files[i]
		err := a.fetch(ctx, cl, &art, f.Path)
		var te *client.TransferError
		if errors.As(err, &te) && te.Expired {
			// Download URLs last minutes: get fresh ones and try once more.
			fresh, ferr := refresh()
			if ferr != nil {
				return ferr
			}
			for _, fa := range fresh {
				if fa.Name == art.Name {
					err = a.fetch(ctx, cl, &fa, f.Path)
				}
			}
		}
		if err != nil {
			return err
		}
		total += f.SizeBytes
	}
	if a.jsonOut {
		return a.printJSON(out)
	}
	tw := newTable(a.stdout)
	for _, f := range out {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Path, formatBytes(f.SizeBytes), f.Status)
	}
	tw.Flush()
	fmt.Fprintf(a.stdout, "%s: %d files in %s, sha256 checked\n", what, len(out), dir)
	return nil
}

// sameContent reports whether the file at path has this size and sha256.
func sameContent(path string, size int64, sha string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return false, err
	}
	if info.IsDir() {
		return false, fmt.Errorf("%s is a folder, in the way of an adapter file", path)
	}
	if info.Size() != size {
		return false, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, err
	}
	return strings.EqualFold(hex.EncodeToString(h.Sum(nil)), sha), nil
}

// fetch downloads one artifact to a temporary file beside dest, checks
// its size and sha256, then moves it into place.
func (a *app) fetch(ctx context.Context, cl *client.Client, art *api.ArtifactView, dest string) error {
	body, _, err := cl.Get(ctx, art.Download)
	if err != nil {
		return fmt.Errorf("download %s: %w", art.Name, err)
	}
	defer body.Close()
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".*.partial")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	label := art.Name
	if len(label) > 24 {
		label = "…" + label[len(label)-23:]
	}
	bar := newProgress(a.stderr, isTerminal(a.stderr), label, art.SizeBytes, 0)
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), &countingReader{r: io.LimitReader(body, art.SizeBytes+1), p: bar})
	bar.Finish()
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download %s: %w", art.Name, err)
	}
	if n != art.SizeBytes {
		return failedf("download %s: got %s bytes, the job lists %s: try again", art.Name, formatCount(n), formatCount(art.SizeBytes))
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, art.SHA256) {
		return failedf("download %s: its sha256 is %s, the job lists %s: the download is corrupt, try again", art.Name, got, art.SHA256)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dest)
}
