package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/client"
	"github.com/brightrun/brightrun/shared/dataset"
	"github.com/brightrun/brightrun/shared/pipeline"
)

func (a *app) importCommand() *cobra.Command {
	var (
		req         client.ImportDatasetRequest
		noWait      bool
		waitTimeout time.Duration
	)
	c := &cobra.Command{
		Use:   "import URL|s3://bucket/key",
		Short: "Create a dataset from a URL or an S3 object, copied by the server, and wait for its validation",
		Long: `Import a chat JSONL dataset that is already online instead of uploading it:
the server copies it (at most 5 GiB) and validates it as an upload.

The source is an https URL the server can reach (not a private, loopback or
link-local address: those are refused), or s3://bucket/key under a bucket
and prefix the deployment allows (its ImportS3Prefixes setting). The command
shows the dataset's progress (importing, validating) and its summary.

Exit status 0 when the dataset ends ready, 1 when it is invalid (the reason
is shown: a refused address, a failed copy, or the bad lines).`,
		Example: "  brightrun datasets import https://example.com/exports/support-chats.jsonl --name \"support chats\"\n" +
			"  brightrun datasets import s3://training-files/exports/chats.sharegpt.jsonl --format sharegpt",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := pipeline.ParseImportSource(args[0]); err != nil {
				return usagef(cmd, "%s", pipeline.ErrorMessage(err))
			}
			if _, err := dataset.ParseFormat(req.Format); err != nil {
				return usagef(cmd, "--%v", err)
			}
			req.Source = args[0]
			return a.importDataset(cmd.Context(), req, noWait, waitTimeout)
		},
	}
	f := c.Flags()
	f.StringVar(&req.Name, "name", "", "the dataset's name (default: the source's file name)")
	f.StringVar(&req.Format, "format", string(dataset.FormatMessages), "the shape of the lines: messages, sharegpt or alpaca")
	f.StringVar(&req.SHA256, "sha256", "", "the file's hex sha256, checked against the copy")
	f.BoolVar(&noWait, "no-wait", false, "do not wait for the import and validation")
	f.DurationVar(&waitTimeout, "wait-timeout", 60*time.Minute, "how long to wait for the import and validation")
	return c
}

func (a *app) importDataset(ctx context.Context, req client.ImportDatasetRequest, noWait bool, timeout time.Duration) error {
	cl, err := a.client()
	if err != nil {
		return err
	}
	d, err := cl.ImportDataset(ctx, req)
	if err != nil {
		return err
	}
	a.note("importing %s as %s…", req.Source, d.ID)
	if !noWait && !datasetDone(d) {
		if d, err = a.waitDataset(ctx, cl, d, timeout); err != nil {
			return err
		}
	}
	return a.printUploaded(ctx, cl, d)
}

// waitDataset polls the dataset until it is ready or invalid, noting
// each status it passes through (importing, validating).
func (a *app) waitDataset(ctx context.Context, cl *client.Client, d *api.DatasetView, timeout time.Duration) (*api.DatasetView, error) {
	start, last := time.Now(), d.Status
	wait := 200 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 3*time.Second)
		cur, err := cl.GetDataset(ctx, d.ID)
		if err != nil {
			return nil, err
		}
		if datasetDone(cur) {
			return cur, nil
		}
		if cur.Status != last {
			last = cur.Status
			if cur.Status == pipeline.DatasetValidating {
				a.note("copied %s (%s bytes); validating…", formatBytes(cur.SizeBytes), formatCount(cur.SizeBytes))
			} else {
				a.note("%s is %s…", cur.ID, cur.Status)
			}
		}
		if timeout > 0 && time.Since(start) > timeout {
			return nil, failedf("%s is still %s after %s: check later with `brightrun datasets show %s`", d.ID, cur.Status, formatDuration(timeout), d.ID)
		}
	}
}
