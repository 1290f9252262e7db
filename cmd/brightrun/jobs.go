package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/brightrun/brightrun/shared/api"

	"github.com/spf13/cobra"

	"github.com/brightrun/brightrun/shared/client"
	"github.com/brightrun/brightrun/shared/pipeline"
)

func (a *app) jobsCommand() *cobra.Command {
	return group("jobs", "Create, list, watch, cancel training jobs and download their adapters",
		a.jobsCreateCommand(),
		a.jobsListCommand(),
		a.jobsShowCommand(),
		a.jobsCancelCommand(),
		a.jobsDeleteCommand(),
		a.jobsWatchCommand(),
		a.jobsDownloadCommand(),
	)
}

func (a *app) jobsCreateCommand() *cobra.Command {
	var (
		t      trainingFlags
		name   string
		budget float64
		key    string
	)
	c := &cobra.Command{
		Use:   "create DATASET",
		Short: "Start a LoRA fine-tune of a ready dataset",
		Long: `Create a training job on a ready dataset and queue it. The job is created
with an Idempotency-Key (a fresh one unless --idempotency-key is given), so
the CLI's own retries after a network error never create it twice; pass the
same key to retry by hand.`,
		Example: "  brightrun jobs create ds_01J… --preset balanced --gpu h100-80gb --budget 20 --name \"support v2\"",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tr, err := t.request(cmd, args[0])
			if err != nil {
				return err
			}
			req := client.CreateJobRequest{TrainingRequest: tr, Name: name}
			if cmd.Flags().Changed("budget") {
				if !(budget > 0) {
					return usagef(cmd, "--budget must be a positive amount of USD, got %v", budget)
				}
				req.BudgetUSD = &budget
			}
			if key == "" {
				key = newIdempotencyKey()
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			job, err := cl.CreateJob(cmd.Context(), req, key)
			var ue *client.UnreachableError
			if errors.As(err, &ue) {
				return fmt.Errorf("%w (the job may have been created: run the command again with --idempotency-key %s so that it is not created twice)", err, key)
			}
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(job)
			}
			fmt.Fprintf(a.stdout, "created job %s (%s) on %s, preset %s\n", job.ID, job.Status, job.GPUType, job.Preset)
			if e := job.Estimate; e != nil {
				fmt.Fprintf(a.stdout, "  estimated %s – %s (expected %s), %s – %s (expected %s), %s steps\n",
					formatUSD(e.CostUSD.Low), formatUSD(e.CostUSD.High), formatUSD(e.CostUSD.Expected),
					formatSeconds(e.DurationSeconds.Low), formatSeconds(e.DurationSeconds.High), formatSeconds(e.DurationSeconds.Expected),
					formatCount(int64(e.TotalSteps)))
				fmt.Fprintf(a.stdout, "  evaluation: %s\n", evaluationLine(e.Evaluation))
			}
			fmt.Fprintf(a.stdout, "watch it: brightrun jobs watch %s\n", job.ID)
			return nil
		},
	}
	t.add(c)
	f := c.Flags()
	f.StringVar(&name, "name", "", "a name for the job")
	f.Float64Var(&budget, "budget", 0, "stop the job when its cost reaches this many USD")
	f.StringVar(&key, "idempotency-key", "", "make retries of this request return the same job (default: a new key)")
	return c
}

func newIdempotencyKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "cli-" + hex.EncodeToString(b)
}

func (a *app) jobsListCommand() *cobra.Command {
	var (
		o      client.JobListOptions
		status string
	)
	c := &cobra.Command{
		Use:   "list",
		Short: "List your jobs, newest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if status != "" && !pipeline.JobStatus(status).Valid() {
				return usagef(cmd, "--status %q is not a job status: one of %v", status, pipeline.JobStatuses)
			}
			o.Status = pipeline.JobStatus(status)
			cl, err := a.client()
			if err != nil {
				return err
			}
			list, err := cl.ListJobs(cmd.Context(), o)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(list)
			}
			if len(list.Jobs) == 0 {
				fmt.Fprintln(a.stdout, "no jobs: start one with `brightrun jobs create DATASET`")
				return nil
			}
			tw := newTable(a.stdout)
			fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tPROGRESS\tGPU\tCOST\tCREATED")
			for _, j := range list.Jobs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, orDash(j.Name), j.Status, jobProgress(&j), j.GPUType, jobCost(&j), formatTime(j.CreatedAt))
			}
			tw.Flush()
			printNextPage(a.stdout, list.NextCursor)
			return nil
		},
	}
	c.Flags().StringVar(&status, "status", "", "only jobs in this status (queued, running, completed, failed, cancelled …)")
	addListFlags(c, &o.ListOptions)
	return c
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// jobProgress is "step/total (pct)" or "-".
func jobProgress(j *api.JobView) string {
	p := j.Progress
	if p == nil || p.TotalSteps <= 0 {
		return "-"
	}
	return fmt.Sprintf("%s/%s (%.0f%%)", formatCount(int64(p.Step)), formatCount(int64(p.TotalSteps)), 100*float64(p.Step)/float64(p.TotalSteps))
}

// jobCost is the actual cost, or "~" and the expected estimate.
func jobCost(j *api.JobView) string {
	switch {
	case j.Cost != nil:
		return formatUSD(j.Cost.USD)
	case j.Estimate != nil:
		return "~" + formatUSD(j.Estimate.CostUSD.Expected)
	}
	return "-"
}

func (a *app) jobsShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a job: status, progress, configuration, estimate and cost",
		Long:  "Show a job. Exit status 0 whatever its status (`jobs watch` ends 1 for a failed job).",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			j, err := cl.GetJob(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(j)
			}
			printJob(a.stdout, j, time.Now())
			return nil
		},
	}
}

// printJob writes a job's record.
func printJob(w io.Writer, j *api.JobView, now time.Time) {
	title := j.ID
	if j.Name != "" {
		title += "  " + j.Name
	}
	fmt.Fprintln(w, title)
	tw := newTable(w)
	status := string(j.Status)
	if j.Stage != "" && !j.Status.Terminal() {
		status += " (" + j.Stage + ")"
	}
	fmt.Fprintf(tw, "  status\t%s\n", status)
	fmt.Fprintf(tw, "  dataset\t%s\n", j.DatasetID)
	fmt.Fprintf(tw, "  model\t%s\n", j.BaseModel)
	fmt.Fprintf(tw, "  gpu\t%s\n", j.GPUType)
	h := j.Hyperparameters
	fmt.Fprintf(tw, "  preset\t%s: lr %g, batch %d × %d, %d epochs, LoRA rank %d alpha %d dropout %g, max_seq_length %d, warmup %g\n",
		j.Preset, h.LearningRate, h.BatchSize, h.GradientAccumulation, h.Epochs, h.LoRARank, h.LoRAAlpha, h.LoRADropout, h.MaxSeqLength, h.WarmupRatio)
	if p := j.Progress; p != nil {
		fmt.Fprintf(tw, "  progress\tstep %s, epoch %.2f, loss %.4f, lr %.2e, %s tok/s\n", jobProgress(j), p.Epoch, p.Loss, p.LearningRate, formatCount(int64(p.TokensPerSecond)))
	}
	if e := j.Estimate; e != nil {
		fmt.Fprintf(tw, "  estimate\t%s – %s – %s, %s – %s – %s, %s steps\n",
			formatUSD(e.CostUSD.Low), formatUSD(e.CostUSD.Expected), formatUSD(e.CostUSD.High),
			formatSeconds(e.DurationSeconds.Low), formatSeconds(e.DurationSeconds.Expected), formatSeconds(e.DurationSeconds.High), formatCount(int64(e.TotalSteps)))
		fmt.Fprintf(tw, "  evaluation\t%s\n", evaluationLine(e.Evaluation))
	} else if v := j.Validation; v != nil && v.DatasetID != "" {
		fmt.Fprintf(tw, "  evaluation\ton %s\n", v.DatasetID)
	} else if v != nil && v.Split != nil {
		fmt.Fprintf(tw, "  evaluation\tsplit %g\n", *v.Split)
	}
	if c := j.Cost; c != nil {
		fmt.Fprintf(tw, "  cost\t%s for %s billed (estimated %s)\n", formatUSD(c.USD), formatSeconds(c.BilledSeconds), formatUSD(c.EstimatedUSD))
	} else if usd, ok := costSoFar(j, now); ok {
		fmt.Fprintf(tw, "  cost so far\t~%s\n", formatUSD(usd))
	}
	if j.BudgetUSD != nil {
		fmt.Fprintf(tw, "  budget\t%s\n", formatUSD(*j.BudgetUSD))
	}
	if j.Error != nil {
		fmt.Fprintf(tw, "  error\t%s: %s\n", j.Error.Code, oneLine(j.Error.Message))
		if j.Error.Advice != "" {
			fmt.Fprintf(tw, "  advice\t%s\n", oneLine(j.Error.Advice))
		}
	}
	fmt.Fprintf(tw, "  attempt\t%d\n", j.Attempt)
	fmt.Fprintf(tw, "  created\t%s\n", formatTime(j.CreatedAt))
	if j.StartedAt != nil {
		fmt.Fprintf(tw, "  started\t%s\n", formatTime(*j.StartedAt))
	}
	if j.FinishedAt != nil {
		fmt.Fprintf(tw, "  finished\t%s\n", formatTime(*j.FinishedAt))
	}
	tw.Flush()
}

func (a *app) jobsCancelCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a job (a running one stops at its worker's next report)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			j, err := cl.CancelJob(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(j)
			}
			switch j.Status {
			case pipeline.JobCancelled:
				fmt.Fprintf(a.stdout, "%s: cancelled\n", j.ID)
			case pipeline.JobCancelRequested:
				fmt.Fprintf(a.stdout, "%s: cancel requested: the worker is stopping (follow it with `brightrun jobs watch %s`)\n", j.ID, j.ID)
			default:
				fmt.Fprintf(a.stdout, "%s had already ended: %s\n", j.ID, j.Status)
			}
			return nil
		},
	}
}

func (a *app) jobsDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID",
		Short: "Delete an ended job with its adapter files, checkpoints, events and metrics",
		Long: `Delete a job that has ended (completed, failed or cancelled) and everything
stored of it: the adapter files, the checkpoints, the events and the metric
points. Download what you want to keep first. A job that has not ended is
refused: cancel it, then delete it once it has ended.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			if err := cl.DeleteJob(cmd.Context(), args[0]); err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"id": args[0], "deleted": true})
			}
			fmt.Fprintf(a.stdout, "deleted %s with its adapter files, checkpoints, events and metrics\n", args[0])
			return nil
		},
	}
}
