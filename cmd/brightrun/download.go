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
	"strings"

	"github.com/brightrun/brightrun/shared/api"

	"github.com/spf13/cobra"

	"github.com/brightrun/brightrun/shared/client"
	"github.com/brightrun/brightrun/shared/pipeline"
)

func (a *app) jobsDownloadCommand() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "download JOB [DIR]",
		Short: "Download a completed job's adapter files (default folder: the job's id)",
		Long: `Download a completed job's adapter files into DIR (default: a folder named
after the job), each with a progress bar, checking its size and sha256.
Files already there with the right content are skipped; a different file in
the way is not overwritten unless --force is given.

Exit status 1 when the job has no adapter (yet), when a file in the way
differs, or when a download does not match its checksum.`,
		Args: rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if len(args) == 2 {
				dir = args[1]
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			return a.download(cmd.Context(), cl, args[0], dir, force)
		},
	}
	c.Flags().BoolVar(&force, "force", false, "overwrite existing files that differ")
	return c
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
	// Check every destination before downloading anything.
	var (
		out       []downloadedFile
		conflicts []string
	)
	for _, art := range list.Artifacts {
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
		art := list.Artifacts[i]
		err := a.fetch(ctx, cl, &art, f.Path)
		var te *client.TransferError
		if errors.As(err, &te) && te.Expired {
			// Download URLs last minutes: get fresh ones and try once more.
			fresh, ferr := cl.Artifacts(ctx, id)
			if ferr != nil {
				return ferr
			}
			for _, fa := range fresh.Artifacts {
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
	fmt.Fprintf(a.stdout, "%s: %d files in %s, sha256 checked\n", id, len(out), dir)
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
