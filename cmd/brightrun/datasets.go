package main

import (
	"fmt"
	"io"
	"time"

	"github.com/brightrun/brightrun/shared/api"

	"github.com/spf13/cobra"

	"github.com/brightrun/brightrun/shared/client"
	"github.com/brightrun/brightrun/shared/pipeline"
)

func (a *app) datasetsCommand() *cobra.Command {
	return group("datasets", "Upload, import, list, inspect and delete datasets",
		a.uploadCommand(),
		a.importCommand(),
		a.datasetsListCommand(),
		a.datasetsShowCommand(),
		a.datasetsReportCommand(),
		a.datasetsDeleteCommand(),
	)
}

func (a *app) datasetsListCommand() *cobra.Command {
	var o client.ListOptions
	c := &cobra.Command{
		Use:   "list",
		Short: "List your datasets, newest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			list, err := cl.ListDatasets(cmd.Context(), o)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(list)
			}
			if len(list.Datasets) == 0 {
				fmt.Fprintln(a.stdout, "no datasets yet: upload one with `brightrun datasets upload FILE`")
				return nil
			}
			tw := newTable(a.stdout)
			fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tSIZE\tEXAMPLES\tTOKENS\tCREATED")
			for _, d := range list.Datasets {
				examples, tokens := "-", "-"
				if d.Validation != nil {
					examples, tokens = formatCount(d.Validation.Examples), formatCount(d.Validation.Tokens.Total)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Name, d.Status, formatBytes(d.SizeBytes), examples, tokens, formatTime(d.CreatedAt))
			}
			tw.Flush()
			printNextPage(a.stdout, list.NextCursor)
			return nil
		},
	}
	addListFlags(c, &o)
	return c
}

func addListFlags(c *cobra.Command, o *client.ListOptions) {
	c.Flags().IntVar(&o.Limit, "limit", 0, "how many to list (1-100, default 20)")
	c.Flags().StringVar(&o.Cursor, "cursor", "", "continue a list from the cursor the previous page printed")
}

func printNextPage(w io.Writer, cursor string) {
	if cursor != "" {
		fmt.Fprintf(w, "more: --cursor %s\n", cursor)
	}
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}

func (a *app) datasetsShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a dataset: status, counts, tokens and statistics",
		Long:  "Show a dataset. Exit status 0 whatever its status (see `datasets report` for every issue).",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			d, err := cl.GetDataset(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(d)
			}
			printDataset(a.stdout, d)
			if d.Validation != nil && countIssues(d.Validation) > 0 {
				fmt.Fprintf(a.stdout, "every issue: brightrun datasets report %s\n", d.ID)
			}
			return nil
		},
	}
}

// printDataset writes a dataset's record and validation summary.
func printDataset(w io.Writer, d *api.DatasetView) {
	fmt.Fprintf(w, "%s  %s\n", d.ID, d.Name)
	tw := newTable(w)
	fmt.Fprintf(tw, "  status\t%s\n", d.Status)
	fmt.Fprintf(tw, "  size\t%s (%s bytes)\n", formatBytes(d.SizeBytes), formatCount(d.SizeBytes))
	if d.Format != "" && d.Format != pipeline.FormatMessages {
		fmt.Fprintf(tw, "  format\t%s (jobs train on its conversion to messages)\n", d.Format)
	}
	if d.SHA256 != "" {
		fmt.Fprintf(tw, "  sha256\t%s\n", d.SHA256)
	}
	if d.Source != "" {
		fmt.Fprintf(tw, "  imported from\t%s\n", oneLine(d.Source))
	}
	fmt.Fprintf(tw, "  created\t%s\n", formatTime(d.CreatedAt))
	if d.Error != "" {
		fmt.Fprintf(tw, "  error\t%s\n", oneLine(d.Error))
	}
	tw.Flush()
	if d.Validation != nil {
		printSummary(w, d.Validation)
	}
}

func (a *app) datasetsReportCommand() *cobra.Command {
	var limit int
	c := &cobra.Command{
		Use:   "report ID",
		Short: "Show a dataset's validation report: every bad line",
		Long: `Show a dataset's full validation report with every bad line (up to the
report's cap of 1,000 errors and 1,000 warnings; the counts per code are
complete). Exit status 1 when the dataset is invalid, as with validate.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			r, err := cl.GetReport(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOut {
				if err := a.printJSON(r); err != nil {
					return err
				}
			} else {
				printReport(a.stdout, args[0], r, limit, "use --limit 0 for every issue listed, or --json")
			}
			if !r.Valid {
				return silentFailure(args[0] + " is invalid")
			}
			return nil
		},
	}
	c.Flags().IntVar(&limit, "limit", 100, "how many issues to list (0: all)")
	c.PreRun = func(cmd *cobra.Command, args []string) {
		if limit == 0 {
			limit = -1
		}
	}
	return c
}

func (a *app) datasetsDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a dataset, its file and its report",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			if err := cl.DeleteDataset(cmd.Context(), args[0]); err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"id": args[0], "deleted": true})
			}
			fmt.Fprintf(a.stdout, "deleted %s\n", args[0])
			return nil
		},
	}
}

// datasetDone reports whether validation has finished with d.
func datasetDone(d *api.DatasetView) bool {
	return d.Status == pipeline.DatasetReady || d.Status == pipeline.DatasetInvalid
}
