package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/runpod"
)

// PrepareAction is the worker's job action that writes a model's
// pre-quantized 4-bit copy (gpu-image/brightrun_worker/handler.py).
const PrepareAction = "prepare_model"

// PrepareInput is the input of a prepare_model job. Source and Out are
// paths as the worker sees them (below /runpod-volume/models).
type PrepareInput struct {
	Action string `json:"action"`
	Source string `json:"source"`
	Out    string `json:"out"`
	HubID  string `json:"hub_id,omitempty"`
	Force  bool   `json:"force,omitempty"`
}

// PrepareProgress is what the worker's progress_update shows in /status
// while the job runs.
type PrepareProgress struct {
	Stage          string  `json:"stage"`
	FilesDone      int     `json:"files_done"`
	FilesTotal     int     `json:"files_total"`
	BytesDone      int64   `json:"bytes_done"`
	BytesTotal     int64   `json:"bytes_total"`
	ElapsedSeconds float64 `json:"elapsed_seconds"`
}

func (p PrepareProgress) String() string {
	s := p.Stage
	var detail []string
	if p.FilesTotal > 0 {
		detail = append(detail, fmt.Sprintf("%d/%d files", p.FilesDone, p.FilesTotal))
	}
	if p.BytesTotal > 0 {
		detail = append(detail, fmt.Sprintf("%.1f/%.1f GB", float64(p.BytesDone)/1e9, float64(p.BytesTotal)/1e9))
	}
	if len(detail) > 0 {
		s += ": " + strings.Join(detail, ", ")
	}
	return s
}

// PrepareSummary is the worker's output of a completed prepare_model job
// (prepare.prepare's summary; only the fields printed here).
type PrepareSummary struct {
	Status    string `json:"status"` // prepared, or exists: the copy was already complete
	Message   string `json:"message"`
	Out       string `json:"out"`
	Files     int    `json:"files"`
	Bytes     int64  `json:"bytes"`
	CreatedAt string `json:"created_at"`
}

// WorkerError is a prepare_model job that failed on the worker, with the
// worker's classified error ("<code>: <message>") and its advice.
type WorkerError struct {
	JobID  string
	Status runpod.Status
	Err    string
	Code   string
	Advice string
}

func (e *WorkerError) Error() string {
	s := fmt.Sprintf("RunPod job %s %s: %s", e.JobID, e.Status, e.Err)
	if e.Advice != "" {
		s += "\n" + e.Advice
	}
	return s
}

// jobAPI is the part of RunPod's job API a prepare run uses
// (*runpod.Client).
type jobAPI interface {
	Run(ctx context.Context, req runpod.RunRequest) (runpod.JobStatus, error)
	Status(ctx context.Context, id string) (runpod.JobStatus, error)
	Cancel(ctx context.Context, id string) (runpod.JobStatus, error)
}

// Poll paces the /status requests: Initial after submission and after each
// change of status, growing by half each time up to Max.
type Poll struct {
	Initial, Max time.Duration
	// Failures is how many /status calls in a row may fail (after the
	// client's own retries) before the wait gives up.
	Failures int
}

// DefaultPoll suits a job of tens of minutes.
var DefaultPoll = Poll{Initial: 2 * time.Second, Max: 30 * time.Second, Failures: 5}

// cancelTimeout bounds the /cancel request sent after an interrupt.
const cancelTimeout = 30 * time.Second

// PrepareModel submits a prepare_model job and waits for its end, printing
// progress to log. It returns the worker's summary when the job completed;
// a *WorkerError when it failed, timed out or was cancelled on RunPod;
// and, when ctx ends first (Ctrl-C), cancels the job on RunPod and returns
// ctx's error.
func PrepareModel(ctx context.Context, api jobAPI, in PrepareInput, policy runpod.Policy, poll Poll, log io.Writer) (PrepareSummary, error) {
	var sum PrepareSummary
	start := time.Now()
	st, err := api.Run(ctx, runpod.RunRequest{Input: in, Policy: policy})
	if err != nil {
		if errors.Is(err, runpod.ErrOutcomeUnknown) {
			return sum, fmt.Errorf("submit the prepare job: %w (running this command again is safe: a second preparation waits for the first and then does nothing)", err)
		}
		return sum, fmt.Errorf("submit the prepare job: %w", err)
	}
	id := st.ID
	fmt.Fprintf(log, "submitted RunPod job %s: prepare %s from %s (execution timeout %s)\n", id, in.Out, in.Source, policy.ExecutionTimeout)

	say := func(format string, args ...any) {
		el := time.Since(start).Round(time.Second)
		fmt.Fprintf(log, "[%8s] %s\n", el, fmt.Sprintf(format, args...))
	}
	cancelJob := func() error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
		defer cancel()
		if _, err := api.Cancel(cctx, id); err != nil {
			say("interrupted: cancelling RunPod job %s failed: %v", id, err)
			return fmt.Errorf("interrupted (%w); cancelling RunPod job %s failed: %v", ctx.Err(), id, err)
		}
		say("interrupted: cancelled RunPod job %s (nothing is published before the copy is complete)", id)
		return fmt.Errorf("interrupted: RunPod job %s cancelled: %w", id, ctx.Err())
	}

	delay := poll.Initial
	lastStatus, lastLine, lastSaid := st.Status, "", time.Time{}
	failures := 0
	for {
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return sum, cancelJob()
		case <-timer.C:
		}
		delay = min(delay+delay/2, poll.Max)

		st, err = api.Status(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return sum, cancelJob()
			}
			if errors.Is(err, runpod.ErrNotFound) {
				return sum, fmt.Errorf("RunPod no longer knows job %s (it keeps a result %s after the end, and deletes a job whose ttl ran out): run the command again, it finds a complete copy and does nothing", id, runpod.ResultRetention)
			}
			if failures++; failures >= poll.Failures {
				return sum, fmt.Errorf("waiting for RunPod job %s: %w (the job may still be running: run the command again, it waits for it)", id, err)
			}
			say("status of %s failed (%v); trying again", id, err)
			continue
		}
		failures = 0
		if st.Status != lastStatus {
			delay = poll.Initial
		}

		switch st.Status {
		case runpod.StatusInQueue:
			if st.Status != lastStatus || time.Since(lastSaid) >= time.Minute {
				say("IN_QUEUE: waiting for a worker")
				lastSaid = time.Now()
			}
		case runpod.StatusInProgress, runpod.StatusRunning:
			line := string(st.Status)
			var p PrepareProgress
			if len(st.Output) > 0 && json.Unmarshal(st.Output, &p) == nil && p.Stage != "" {
				line += " " + p.String()
			}
			if line != lastLine || time.Since(lastSaid) >= time.Minute {
				say("%s", line)
				lastLine, lastSaid = line, time.Now()
			}
		case runpod.StatusCompleted:
			var out struct {
				PrepareSummary
				Error  string `json:"error"`
				Code   string `json:"code"`
				Advice string `json:"advice"`
			}
			if err := json.Unmarshal(st.Output, &out); err != nil {
				return sum, fmt.Errorf("RunPod job %s completed with an unreadable output (%v): %s", id, err, snippet(st.Output))
			}
			if out.Error != "" {
				return sum, &WorkerError{JobID: id, Status: st.Status, Err: out.Error, Code: out.Code, Advice: out.Advice}
			}
			if out.Status != "prepared" && out.Status != "exists" {
				return sum, fmt.Errorf("RunPod job %s completed with an unexpected output: %s (is the endpoint's worker image older than the prepare_model job?)", id, snippet(st.Output))
			}
			say("COMPLETED in %s of execution", time.Duration(st.ExecutionTime)*time.Millisecond)
			return out.PrepareSummary, nil
		case runpod.StatusFailed:
			e := &WorkerError{JobID: id, Status: st.Status, Err: st.Error}
			var out struct {
				Code   string `json:"code"`
				Advice string `json:"advice"`
			}
			if len(st.Output) > 0 && json.Unmarshal(st.Output, &out) == nil {
				e.Code, e.Advice = out.Code, out.Advice
			}
			if e.Err == "" {
				e.Err = "the worker failed without a message (see the endpoint's logs in the RunPod console)"
			}
			return sum, e
		case runpod.StatusTimedOut:
			return sum, &WorkerError{JobID: id, Status: st.Status,
				Err:    fmt.Sprintf("the preparation ran past its execution timeout of %s", policy.ExecutionTimeout),
				Advice: "Run it again with a longer --execution-timeout; it starts over and publishes nothing until the copy is complete."}
		case runpod.StatusCancelled:
			return sum, &WorkerError{JobID: id, Status: st.Status,
				Err:    "the job was cancelled on RunPod (console or API)",
				Advice: "Run the command again to prepare the copy; nothing was published."}
		default:
			say("%s (status unknown to this tool; still waiting)", st.Status)
		}
		lastStatus = st.Status
	}
}

// runPrepareModel is `provision prepare-model`.
func runPrepareModel(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("provision prepare-model", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./infra/provision prepare-model --endpoint ENDPOINT_ID [--model %s] [flags]\n\n", catalog.DefaultModelID)
		fmt.Fprintf(stderr, "Writes the model's pre-quantized 4-bit copy on the endpoint's network volume, through one job on the\nendpoint, and waits for it. Once per volume; running it again is safe (it does nothing when the copy is complete).\n\n")
		fs.PrintDefaults()
	}
	var (
		endpoint, model, source, out, apiURL string
		force                                bool
		execTimeout                          = 3 * time.Hour
		poll                                 = DefaultPoll
	)
	fs.StringVar(&endpoint, "endpoint", "", "RunPod endpoint id (what `provision` printed as RunPodEndpointId) (required)")
	fs.StringVar(&model, "model", catalog.DefaultModelID, "catalog model id whose 4-bit copy to prepare")
	fs.StringVar(&source, "source", "", "BF16 checkpoint as the worker sees it (default: the catalog's BF16 path)")
	fs.StringVar(&out, "out", "", "where the 4-bit copy goes, as the worker sees it (default: the catalog's NF4 path)")
	fs.BoolVar(&force, "force", false, "rebuild even a complete copy, or replace a broken one")
	fs.DurationVar(&execTimeout, "execution-timeout", execTimeout, "RunPod execution timeout of the job")
	fs.StringVar(&apiURL, "job-api-url", runpod.DefaultBaseURL, "RunPod job API base URL")
	fs.DurationVar(&poll.Initial, "poll-interval", poll.Initial, "first wait between /status requests")
	fs.DurationVar(&poll.Max, "max-poll-interval", poll.Max, "longest wait between /status requests")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("prepare-model: unexpected arguments %q", fs.Args())
	}
	if endpoint == "" {
		return errors.New("prepare-model: --endpoint is required: the endpoint id `go run ./infra/provision` printed (RunPodEndpointId)")
	}
	if poll.Initial <= 0 || poll.Max < poll.Initial {
		return errors.New("prepare-model: want 0 < --poll-interval ≤ --max-poll-interval")
	}
	in, err := prepareInput(getenv, model, source, out, force)
	if err != nil {
		return fmt.Errorf("prepare-model: %w", err)
	}
	policy := runpod.Policy{ExecutionTimeout: execTimeout, TTL: max(runpod.DefaultTTL, min(execTimeout+time.Hour, runpod.MaxTTL))}
	if err := policy.Validate(); err != nil {
		return fmt.Errorf("prepare-model: --execution-timeout: %w", err)
	}
	key := getenv("RUNPOD_API_KEY")
	if key == "" {
		return errors.New("RUNPOD_API_KEY is not set (RunPod console → Settings → API Keys)")
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	client, err := runpod.New(apiURL, endpoint, key, runpod.WithLogger(logger), runpod.WithHTTPClient(&http.Client{Timeout: 30 * time.Second}))
	if err != nil {
		return fmt.Errorf("prepare-model: %w", err)
	}
	sum, err := PrepareModel(ctx, client, in, policy, poll, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, sum.Message)
	fmt.Fprintf(stdout, "%s: %d files, %.1f GB, created %s\n", sum.Out, sum.Files, float64(sum.Bytes)/1e9, sum.CreatedAt)
	return nil
}

// prepareInput fills the job's paths from the catalog: the model's BF16
// checkpoint and its NF4 copy, as jobs will look for them.
func prepareInput(getenv func(string) string, model, source, out string, force bool) (PrepareInput, error) {
	in := PrepareInput{Action: PrepareAction, Source: source, Out: out, HubID: model, Force: force}
	cat, err := catalog.FromEnv(getenv)
	if err != nil {
		return in, err
	}
	m, err := cat.Model(model)
	if err != nil {
		return in, err
	}
	bf16, nf4 := m.WeightsFor(catalog.BF16), m.WeightsFor(catalog.NF4)
	if in.Source == "" {
		in.Source = bf16.Path
	}
	if in.Out == "" {
		if nf4.Quantization != catalog.NF4 {
			return in, fmt.Errorf("the catalog has no pre-quantized copy of %s (its 4-bit jobs quantize the BF16 checkpoint while loading): nothing to prepare, or name the copy with --out", model)
		}
		in.Out = nf4.Path
	}
	if in.Source == in.Out {
		return in, fmt.Errorf("--source and --out are both %s", in.Out)
	}
	return in, nil
}
