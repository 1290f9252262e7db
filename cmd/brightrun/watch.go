package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/brightrun/brightrun/shared/api"

	"github.com/spf13/cobra"

	"github.com/brightrun/brightrun/shared/client"
	"github.com/brightrun/brightrun/shared/pipeline"
)

func (a *app) jobsWatchCommand() *cobra.Command {
	var interval time.Duration
	c := &cobra.Command{
		Use:   "watch JOB",
		Short: "Follow a job live until it ends: progress, loss curve, ETA and cost",
		Long: `Follow a job until it ends: status and stage, step of total with a progress
bar, epoch, loss with a sparkline of the loss curve, tokens per second, ETA,
and dollars so far against the estimate. On a terminal the view is redrawn
in place; otherwise a line is printed each time the job moves. With --json,
one JSON object (the job) per line each time it changes.

Exit status 0 when the job completes, 1 when it fails or is cancelled.
Ctrl-C stops watching; the job goes on.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if interval < 500*time.Millisecond {
				return usagef(cmd, "--interval must be at least 500ms, got %s", interval)
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			return a.watch(cmd.Context(), cl, args[0], interval)
		},
	}
	c.Flags().DurationVar(&interval, "interval", 2*time.Second, "how often to poll the API")
	return c
}

// metricsFeed follows a job's metric points by re-reading the last page
// of the list (its cursor is stable) on each poll.
type metricsFeed struct {
	cl     *client.Client
	job    string
	cursor string // the cursor of the last page read
	points []pipeline.MetricPoint
	index  map[[2]int]int // (attempt, step) → index in points
}

func (m *metricsFeed) poll(ctx context.Context) error {
	if m.index == nil {
		m.index = map[[2]int]int{}
	}
	cursor := m.cursor
	for {
		page, err := m.cl.ListMetrics(ctx, m.job, client.ListOptions{Cursor: cursor, Limit: 100})
		if err != nil {
			return err
		}
		for _, p := range page.Metrics {
			k := [2]int{p.Attempt, p.Step}
			if i, ok := m.index[k]; ok {
				m.points[i] = p
				continue
			}
			m.index[k] = len(m.points)
			m.points = append(m.points, p)
		}
		if page.NextCursor == "" || len(page.Metrics) == 0 {
			m.cursor = cursor
			return nil
		}
		cursor = page.NextCursor
	}
}

// of returns the points of one attempt, by step.
func (m *metricsFeed) of(attempt int) []pipeline.MetricPoint {
	var out []pipeline.MetricPoint
	for _, p := range m.points {
		if p.Attempt == attempt {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(x, y pipeline.MetricPoint) int { return x.Step - y.Step })
	return out
}

func (a *app) watch(ctx context.Context, cl *client.Client, id string, interval time.Duration) error {
	term := isTerminal(a.stdout) && !a.jsonOut
	feed := &metricsFeed{cl: cl, job: id}
	var (
		drawn    int    // lines drawn last time (terminal)
		lastKey  string // what the last plain line or JSON line showed
		lastStep = -1
		failures int
	)
	for {
		j, err := cl.GetJob(ctx, id)
		if err == nil && j.Progress != nil && j.Progress.Step != lastStep {
			if err = feed.poll(ctx); err == nil {
				lastStep = j.Progress.Step
			}
		}
		switch {
		case errors.Is(err, context.Canceled):
			a.note("\nstopped watching %s: the job goes on (cancel it with `brightrun jobs cancel %s`)", id, id)
			return err
		case err != nil && transient(err) && failures < 10:
			failures++
			if !term {
				a.note("warning: %v (retrying)", err)
			}
		case err != nil:
			return err
		default:
			failures = 0
			frame := watchFrame{job: j, points: feed.of(j.Attempt), now: time.Now()}
			switch {
			case a.jsonOut:
				if key := j.UpdatedAt.String() + string(j.Status); key != lastKey {
					lastKey = key
					data, _ := json.Marshal(j)
					fmt.Fprintf(a.stdout, "%s\n", data)
				}
			case term:
				width := termWidth()
				lines := renderWatch(frame, width)
				for i, l := range lines {
					// A wrapped line would break the redraw.
					lines[i] = truncate(l, width-1)
				}
				if drawn > 0 {
					fmt.Fprintf(a.stdout, "\x1b[%dA\r\x1b[J", drawn)
				}
				fmt.Fprintln(a.stdout, strings.Join(lines, "\n"))
				drawn = len(lines)
			default:
				if key := watchKey(j); key != lastKey {
					lastKey = key
					fmt.Fprintln(a.stdout, watchLine(frame))
				}
			}
			if j.Status.Terminal() {
				if a.jsonOut {
					if j.Status == pipeline.JobCompleted {
						return nil
					}
					return silentFailure(id + " " + string(j.Status))
				}
				text, ok := outcome(j)
				fmt.Fprintln(a.stdout, text)
				if !ok {
					return silentFailure(id + " " + string(j.Status))
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			a.note("\nstopped watching %s: the job goes on (cancel it with `brightrun jobs cancel %s`)", id, id)
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// transient reports whether a failed poll is worth trying again.
func transient(err error) bool {
	var (
		ue *client.UnreachableError
		ae *client.APIError
	)
	return errors.As(err, &ue) || errors.As(err, &ae) && ae.Status >= 500
}

func termWidth() int {
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n >= 40 {
		return n
	}
	return 80
}

// truncate cuts s to at most n runes, ending with "…" when cut.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n || n < 1 {
		return s
	}
	return string(r[:n-1]) + "…"
}

// watchFrame is what one redraw shows.
type watchFrame struct {
	job    *api.JobView
	points []pipeline.MetricPoint // the current attempt's, by step
	now    time.Time
}

// watchKey changes when a plain line is worth printing.
func watchKey(j *api.JobView) string {
	k := string(j.Status) + "|" + j.Stage
	if j.Progress != nil {
		k += "|" + strconv.Itoa(j.Progress.Step)
	}
	return k
}

// statusText is "running (train)".
func statusText(j *api.JobView) string {
	if w := j.Wait; w != nil && j.Status == pipeline.JobQueued {
		return fmt.Sprintf("queued (place %d: %s)", w.Position, w.Message)
	}
	if j.Stage != "" && !j.Status.Terminal() {
		return string(j.Status) + " (" + j.Stage + ")"
	}
	return string(j.Status)
}

// elapsed is how long the job has run (or ran).
func elapsed(j *api.JobView, now time.Time) (time.Duration, bool) {
	if j.StartedAt == nil {
		return 0, false
	}
	end := now
	if j.FinishedAt != nil {
		end = *j.FinishedAt
	}
	return end.Sub(*j.StartedAt), true
}

// costSoFar is the actual cost when the job has one, else the server's
// cost so far (RunPod's billed time of every run), else the seconds since
// it started at its GPU's price (a server that predates cost_so_far).
func costSoFar(j *api.JobView, now time.Time) (float64, bool) {
	if j.Cost != nil {
		return j.Cost.USD, true
	}
	if j.CostSoFar != nil {
		return j.CostSoFar.USD, true
	}
	el, ok := elapsed(j, now)
	if !ok || j.Estimate == nil {
		return 0, false
	}
	return el.Seconds() * j.Estimate.PriceUSDPerSecond, true
}

// eta is the time left to train: the worker's own estimate in its latest
// progress, counted from when it was sent, else etaFrom's.
func eta(p *pipeline.MetricPoint, points []pipeline.MetricPoint, now time.Time) (time.Duration, bool) {
	if p != nil && p.ETASeconds != nil {
		left := time.Duration(*p.ETASeconds*float64(time.Second)) - now.Sub(p.Time)
		return max(left, 0), true
	}
	if p == nil {
		return 0, false
	}
	return etaFrom(points, p.TotalSteps, now)
}

// lastEval is the latest evaluation loss among points, and its step.
func lastEval(points []pipeline.MetricPoint) (loss float64, step int, ok bool) {
	for _, pt := range points {
		if pt.EvalLoss != nil && pt.Step >= step {
			loss, step, ok = *pt.EvalLoss, pt.Step, true
		}
	}
	return loss, step, ok
}

// etaFrom estimates the time left to total steps from the pace of the last
// points (up to 20), counted from now.
func etaFrom(points []pipeline.MetricPoint, total int, now time.Time) (time.Duration, bool) {
	if len(points) > 20 {
		points = points[len(points)-20:]
	}
	if len(points) < 2 || total <= 0 {
		return 0, false
	}
	first, last := points[0], points[len(points)-1]
	steps, dt := last.Step-first.Step, last.Time.Sub(first.Time)
	if steps <= 0 || dt <= 0 {
		return 0, false
	}
	left := max(total-last.Step, 0)
	eta := time.Duration(float64(dt)*float64(left)/float64(steps)) - now.Sub(last.Time)
	return max(eta, 0), true
}

// renderWatch draws the live view, one string per line.
func renderWatch(f watchFrame, width int) []string {
	j := f.job
	head := j.ID
	if j.Name != "" {
		head += "  " + j.Name
	}
	head += " · " + statusText(j) + " · " + j.GPUType
	if j.Attempt > 1 {
		head += fmt.Sprintf(" · attempt %d", j.Attempt)
	}
	if el, ok := elapsed(j, f.now); ok {
		head += " · " + formatDuration(el) + " elapsed"
	}
	lines := []string{head}
	p := j.Progress
	if p == nil || p.TotalSteps <= 0 {
		lines = append(lines, "  waiting for training to start…")
	} else {
		frac := float64(p.Step) / float64(p.TotalSteps)
		epochs := ""
		if j.Hyperparameters.Epochs > 0 {
			epochs = fmt.Sprintf(" of %d", j.Hyperparameters.Epochs)
		}
		lines = append(lines, fmt.Sprintf("  step   %s %s/%s %3.0f%% · epoch %.2f%s",
			bar(frac, max(10, min(40, width-50))), formatCount(int64(p.Step)), formatCount(int64(p.TotalSteps)), math.Floor(frac*100), p.Epoch, epochs))
		loss := fmt.Sprintf("  loss   %.4f", p.Loss)
		if len(f.points) > 1 {
			vals := make([]float64, len(f.points))
			for i, pt := range f.points {
				vals[i] = pt.Loss
			}
			loss += "  " + sparkline(vals, max(10, min(40, width-45))) + fmt.Sprintf("  (from %.4f)", vals[0])
		}
		loss += fmt.Sprintf(" · lr %.2e", p.LearningRate)
		lines = append(lines, loss)
		if ev, step, ok := lastEval(f.points); ok {
			line := fmt.Sprintf("  eval   %.4f at step %s", ev, formatCount(int64(step)))
			var evals []float64
			for _, pt := range f.points {
				if pt.EvalLoss != nil {
					evals = append(evals, *pt.EvalLoss)
				}
			}
			if len(evals) > 1 {
				line += "  " + sparkline(evals, max(10, min(40, width-45))) + fmt.Sprintf("  (from %.4f)", evals[0])
			}
			lines = append(lines, line)
		}
		speed := fmt.Sprintf("  speed  %s tok/s", formatCount(int64(p.TokensPerSecond)))
		if left, ok := eta(p, f.points, f.now); ok {
			speed += " · ETA " + formatDuration(left)
		}
		if p.GPUMemoryBytes > 0 {
			speed += " · GPU memory " + formatBytes(p.GPUMemoryBytes)
		}
		lines = append(lines, speed)
	}
	if c := costLine(j, f.now); c != "" {
		lines = append(lines, "  cost   "+c)
	}
	return lines
}

// costLine is "~$0.42 so far · estimate $0.90 – $1.05 – $1.40 · budget $5.00".
func costLine(j *api.JobView, now time.Time) string {
	var parts []string
	if j.Cost != nil {
		parts = append(parts, formatUSD(j.Cost.USD))
	} else if j.CostSoFar != nil {
		parts = append(parts, formatUSD(j.CostSoFar.USD)+" so far")
	} else if usd, ok := costSoFar(j, now); ok {
		parts = append(parts, "~"+formatUSD(usd)+" so far")
	}
	if e := j.Estimate; e != nil {
		parts = append(parts, fmt.Sprintf("estimate %s – %s – %s", formatUSD(e.CostUSD.Low), formatUSD(e.CostUSD.Expected), formatUSD(e.CostUSD.High)))
	}
	if j.BudgetUSD != nil {
		parts = append(parts, "budget "+formatUSD(*j.BudgetUSD))
	}
	return strings.Join(parts, " · ")
}

// watchLine is the one-line view for logs and pipes.
func watchLine(f watchFrame) string {
	j := f.job
	s := f.now.Format("15:04:05") + " " + statusText(j)
	if p := j.Progress; p != nil && p.TotalSteps > 0 {
		s += fmt.Sprintf(" step %d/%d (%.0f%%) epoch %.2f loss %.4f %s tok/s", p.Step, p.TotalSteps,
			math.Floor(100*float64(p.Step)/float64(p.TotalSteps)), p.Epoch, p.Loss, formatCount(int64(p.TokensPerSecond)))
		if ev, _, ok := lastEval(f.points); ok {
			s += fmt.Sprintf(" eval %.4f", ev)
		}
		if left, ok := eta(p, f.points, f.now); ok {
			s += " ETA " + formatDuration(left)
		}
	}
	if usd, ok := costSoFar(j, f.now); ok {
		s += " " + formatUSD(usd)
		if j.Estimate != nil {
			s += " of ~" + formatUSD(j.Estimate.CostUSD.Expected)
		}
	}
	return s
}

// outcome describes a finished job; ok is false when it failed or was
// cancelled.
func outcome(j *api.JobView) (string, bool) {
	var b strings.Builder
	switch j.Status {
	case pipeline.JobCompleted:
		b.WriteString("completed")
		if el, ok := elapsed(j, time.Now()); ok {
			b.WriteString(" in " + formatDuration(el))
		}
		if j.Cost != nil {
			fmt.Fprintf(&b, " · cost %s (estimated %s)", formatUSD(j.Cost.USD), formatUSD(j.Cost.EstimatedUSD))
		}
		fmt.Fprintf(&b, "\ndownload the adapter: brightrun jobs download %s", j.ID)
		return b.String(), true
	case pipeline.JobFailed:
		b.WriteString("failed")
		if e := j.Error; e != nil {
			fmt.Fprintf(&b, ": %s: %s", e.Code, oneLine(e.Message))
			if e.Advice != "" {
				b.WriteString("\nadvice: " + oneLine(e.Advice))
			}
		}
	case pipeline.JobCancelled:
		b.WriteString("cancelled")
	default:
		b.WriteString(string(j.Status))
	}
	if j.Cost != nil {
		fmt.Fprintf(&b, "\ncost %s", formatUSD(j.Cost.USD))
	}
	if j.Status.Terminal() {
		// A job that stopped short keeps its last checkpoint's adapter.
		fmt.Fprintf(&b, "\nits last checkpoint's adapter, if it stored one: brightrun jobs download %s --checkpoint latest", j.ID)
	}
	return b.String(), false
}
