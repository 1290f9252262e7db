package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/api"

	"github.com/brightrun/brightrun/shared/client"
	"github.com/brightrun/brightrun/shared/pipeline"
)

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.00 KiB"},
		{1536, "1.50 KiB"},
		{11 << 20, "11.0 MiB"},
		{500 << 20, "500.0 MiB"},
		{3 << 30, "3.00 GiB"},
	}
	for _, tt := range tests {
		if got := formatBytes(tt.n); got != tt.want {
			t.Errorf("formatBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{0, "0s"},
		{1400 * time.Millisecond, "1s"},
		{45 * time.Second, "45s"},
		{12*time.Minute + 30*time.Second, "12m30s"},
		{time.Hour + 2*time.Minute + 40*time.Second, "1h02m"},
		{76*time.Hour + 10*time.Minute, "3d04h"},
	}
	for _, tt := range tests {
		if got := formatDuration(tt.d); got != tt.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestFormatCountAndUSD(t *testing.T) {
	counts := map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -45000: "-45,000"}
	for n, want := range counts {
		if got := formatCount(n); got != want {
			t.Errorf("formatCount(%d) = %q, want %q", n, got, want)
		}
	}
	usd := map[float64]string{0: "$0.00", 1.5: "$1.50", 0.0034: "$0.0034", 12.345: "$12.35"}
	for v, want := range usd {
		if got := formatUSD(v); got != want {
			t.Errorf("formatUSD(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestBar(t *testing.T) {
	tests := []struct {
		name  string
		frac  float64
		width int
		want  string
	}{
		{"empty is all track", 0, 4, "░░░░"},
		{"full is all blocks", 1, 4, "████"},
		{"half fills half", 0.5, 4, "██░░"},
		{"a fraction of a cell shows as an eighth block", 0.625, 4, "██▌░"},
		{"over one is clamped", 1.7, 3, "███"},
		{"NaN is empty", math.NaN(), 3, "░░░"},
		{"no width is nothing", 0.5, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := bar(tt.frac, tt.width)
			if got != tt.want {
				t.Errorf("bar(%v, %d) = %q, want %q", tt.frac, tt.width, got, tt.want)
			}
			if n := len([]rune(got)); n != tt.width {
				t.Errorf("bar(%v, %d) is %d cells wide", tt.frac, tt.width, n)
			}
		})
	}
}

func TestTransferLine(t *testing.T) {
	tests := []struct {
		name        string
		done, total int64
		rate        float64
		want        []string
	}{
		{"before any rate the ETA is unknown", 0, 10 << 20, 0, []string{"0%", "0 B / 10.0 MiB", "ETA --"}},
		{"midway it shows bytes, rate and ETA", 5 << 20, 10 << 20, 1 << 20, []string{" 50%", "5.00 MiB / 10.0 MiB", "1.00 MiB/s", "ETA 5s"}},
		{"done it shows the rate, no ETA", 10 << 20, 10 << 20, 2 << 20, []string{"100%", "2.00 MiB/s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := transferLine("upload", tt.done, tt.total, tt.rate, 10)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("transferLine(%d, %d, %v) = %q, want it to contain %q", tt.done, tt.total, tt.rate, got, w)
				}
			}
			if tt.done >= tt.total && strings.Contains(got, "ETA") {
				t.Errorf("transferLine of a finished transfer = %q, want no ETA", got)
			}
		})
	}
}

func TestProgressDrawsOnlyOnATerminal(t *testing.T) {
	t.Run("on a terminal it redraws one line and ends it", func(t *testing.T) {
		var buf bytes.Buffer
		p := newProgress(&buf, true, "upload", 100, 0)
		p.Add(60)
		p.Add(40)
		p.Finish()
		out := buf.String()
		if !strings.HasPrefix(out, "\r") || !strings.HasSuffix(out, "\n") || !strings.Contains(out, "100%") || strings.Count(out, "\n") != 1 {
			t.Errorf("progress output = %q, want \\r-redrawn lines ending at 100%% and one newline", out)
		}
	})
	t.Run("elsewhere it writes nothing", func(t *testing.T) {
		var buf bytes.Buffer
		p := newProgress(&buf, false, "upload", 100, 0)
		p.Add(100)
		p.Finish()
		if buf.Len() != 0 {
			t.Errorf("progress wrote %q off a terminal", buf.String())
		}
	})
	t.Run("a nil bar is a no-op", func(t *testing.T) {
		var p *progress
		p.Add(1)
		p.Finish()
	})
}

func TestSparkline(t *testing.T) {
	tests := []struct {
		name  string
		vals  []float64
		width int
		want  string
	}{
		{"no values draw nothing", nil, 10, ""},
		{"a falling loss falls", []float64{4, 3, 2, 1}, 10, "█▆▃▁"},
		{"a flat series sits in the middle", []float64{2, 2, 2}, 10, "▅▅▅"},
		{"NaN and infinities are skipped", []float64{1, math.NaN(), 3, math.Inf(1)}, 10, "▁█"},
		{"more values than cells are averaged per cell", []float64{8, 8, 6, 6, 4, 4, 2, 2}, 4, "█▆▃▁"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sparkline(tt.vals, tt.width); got != tt.want {
				t.Errorf("sparkline(%v, %d) = %q, want %q", tt.vals, tt.width, got, tt.want)
			}
		})
	}
}

func pointsAt(start time.Time, every time.Duration, steps ...int) []pipeline.MetricPoint {
	pts := make([]pipeline.MetricPoint, len(steps))
	for i, s := range steps {
		pts[i] = pipeline.MetricPoint{Attempt: 1, Step: s, TotalSteps: 100, Loss: 2 - float64(i)/10, Time: start.Add(time.Duration(i) * every)}
	}
	return pts
}

func TestETA(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		points []pipeline.MetricPoint
		total  int
		now    time.Time
		want   time.Duration
		wantOK bool
	}{
		{"one point has no pace", pointsAt(t0, time.Second, 10), 100, t0, 0, false},
		{"ten steps in ten seconds leave 80 seconds for 80 steps", pointsAt(t0, 5*time.Second, 10, 15, 20), 100, t0.Add(10 * time.Second), 80 * time.Second, true},
		{"time since the last point counts down", pointsAt(t0, 5*time.Second, 10, 15, 20), 100, t0.Add(30 * time.Second), 60 * time.Second, true},
		{"a stalled job never goes below zero", pointsAt(t0, 5*time.Second, 10, 15, 20), 100, t0.Add(time.Hour), 0, true},
		{"no progress between points has no pace", pointsAt(t0, 5*time.Second, 10, 10), 100, t0, 0, false},
		{"only the last twenty points set the pace", append(pointsAt(t0, time.Hour, 1, 2), pointsAt(t0.Add(3*time.Hour), time.Second, seq(3, 22)...)...), 100, t0.Add(3*time.Hour + 19*time.Second), 78 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := etaFrom(tt.points, tt.total, tt.now)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("etaFrom = %v, %v; want %v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func TestRenderWatch(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	started := t0
	budget := 5.0
	running := &api.JobView{
		ID: "job_x", Name: "support v2", Status: pipeline.JobRunning, Stage: "train", GPUType: "h100-80gb", Attempt: 1,
		Hyperparameters: pipeline.Hyperparameters{Epochs: 3},
		Progress:        &pipeline.MetricPoint{Attempt: 1, Step: 20, TotalSteps: 100, Epoch: 0.6, Loss: 1.8, LearningRate: 1e-4, TokensPerSecond: 2345},
		Estimate:        &pipeline.JobEstimate{PriceUSDPerSecond: 0.001, CostUSD: pipeline.Range{Low: 0.9, Expected: 1.05, High: 1.4}},
		BudgetUSD:       &budget, StartedAt: &started,
	}
	queued := &api.JobView{ID: "job_q", Status: pipeline.JobQueued, GPUType: "a100-80gb"}
	tests := []struct {
		name  string
		frame watchFrame
		want  []string
	}{
		{"a running job shows step, epoch, loss curve, speed, ETA and cost", watchFrame{job: running, points: pointsAt(t0, 5*time.Second, 10, 15, 20), now: t0.Add(30 * time.Second)},
			[]string{"job_x  support v2 · running (train) · h100-80gb · 30s elapsed", "20/100  20% · epoch 0.60 of 3", "loss   1.8000  █▄▁  (from 2.0000) · lr 1.00e-04", "2,345 tok/s · ETA 1m00s", "~$0.03 so far", "estimate $0.90 – $1.05 – $1.40", "budget $5.00"}},
		{"a queued job waits for training", watchFrame{job: queued, now: t0}, []string{"job_q · queued · a100-80gb", "waiting for training to start"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Join(renderWatch(tt.frame, 100), "\n")
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("renderWatch lacks %q:\n%s", w, got)
				}
			}
		})
	}
	t.Run("the plain line has the same figures on one line", func(t *testing.T) {
		got := watchLine(watchFrame{job: running, points: pointsAt(t0, 5*time.Second, 10, 15, 20), now: t0.Add(30 * time.Second)})
		want := "12:00:30 running (train) step 20/100 (20%) epoch 0.60 loss 1.8000 2,345 tok/s ETA 1m00s $0.03 of ~$1.05"
		if got != want {
			t.Errorf("watchLine = %q, want %q", got, want)
		}
	})
}

func TestOutcome(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	end := t0.Add(62 * time.Minute)
	tests := []struct {
		name   string
		job    api.JobView
		want   []string
		wantOK bool
	}{
		{"a completed job says how long, what it cost and how to download", api.JobView{ID: "job_c", Status: pipeline.JobCompleted, StartedAt: &t0, FinishedAt: &end, Cost: &pipeline.JobCost{USD: 1.23, EstimatedUSD: 1.05}},
			[]string{"completed in 1h02m", "cost $1.23 (estimated $1.05)", "brightrun jobs download job_c"}, true},
		{"a failed job gives its error and advice", api.JobView{ID: "job_f", Status: pipeline.JobFailed, Error: &pipeline.JobError{Code: "oom", Message: "CUDA out of memory", Advice: "lower batch_size or lora_rank"}},
			[]string{"failed: oom: CUDA out of memory", "advice: lower batch_size or lora_rank"}, false},
		{"a cancelled job is not a success", api.JobView{ID: "job_x", Status: pipeline.JobCancelled}, []string{"cancelled"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := outcome(&tt.job)
			if ok != tt.wantOK {
				t.Errorf("outcome ok = %v, want %v", ok, tt.wantOK)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("outcome = %q, want it to contain %q", got, w)
				}
			}
		})
	}
}

func TestParseSet(t *testing.T) {
	t.Run("integers and numbers set their fields", func(t *testing.T) {
		o, err := parseSet([]string{"lora_rank=32", "learning-rate=2e-4", " epochs = 2 "})
		if err != nil {
			t.Fatal(err)
		}
		if o.LoRARank == nil || *o.LoRARank != 32 || o.LearningRate == nil || *o.LearningRate != 2e-4 || o.Epochs == nil || *o.Epochs != 2 || o.BatchSize != nil {
			t.Errorf("parseSet = %+v, want lora_rank 32, learning_rate 2e-4, epochs 2 and nothing else", o)
		}
	})
	bad := []struct {
		name string
		pair string
		want string
	}{
		{"an unknown key lists the known ones", "colour=red", "unknown hyperparameter"},
		{"an integer field refuses a fraction", "epochs=1.5", "takes an integer"},
		{"a number field refuses words", "lora_dropout=some", "takes a number"},
		{"a pair needs an equals sign", "lora_rank", "want key=value"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseSet([]string{tt.pair})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseSet(%q) = %v, want an error saying %q", tt.pair, err, tt.want)
			}
		})
	}
}

func TestExitCodeAndErrorLine(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantCode int
		wantLine string
	}{
		{"no error is success and says nothing", nil, 0, ""},
		{"an API error is its code and message on one line", &client.APIError{Status: 404, Code: "not_found", Message: `dataset "ds_x" not found`}, 3, `error: not_found: dataset "ds_x" not found`},
		{"a wrapped API error keeps exit 3", fmt.Errorf("complete the upload: %w", &client.APIError{Status: 400, Code: "invalid", Message: "part 2 was not uploaded"}), 3, "error: complete the upload: invalid: part 2 was not uploaded"},
		{"an unreachable API is exit 4 with a hint", &client.UnreachableError{URL: "http://127.0.0.1:1", Err: errors.New("connection refused")}, 4, "error: could not reach the API at http://127.0.0.1:1: connection refused\n(is the API running?"},
		{"a refused transfer is exit 3", &client.TransferError{Status: 403, Code: "AccessDenied", Message: "denied"}, 3, "error: blob store answered 403 AccessDenied: denied"},
		{"a silent failure is exit 1 and says nothing more", silentFailure("invalid"), 1, ""},
		{"a failure is exit 1 with its message", failedf("job_x is running"), 1, "error: job_x is running"},
		{"an interruption is exit 130", fmt.Errorf("part 3: %w", context.Canceled), 130, "error: interrupted"},
		{"a local error is exit 2", errors.New("open x.jsonl: no such file or directory"), 2, "error: open x.jsonl: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err); got != tt.wantCode {
				t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.wantCode)
			}
			if got := errorLine(tt.err); !strings.HasPrefix(got, tt.wantLine) || (tt.wantLine == "") != (got == "") {
				t.Errorf("errorLine(%v) = %q, want it to start %q", tt.err, got, tt.wantLine)
			}
		})
	}
}

func TestCheckPlan(t *testing.T) {
	part := func(n int, size int64) api.UploadPart { return api.UploadPart{PartNumber: n, SizeBytes: size} }
	tests := []struct {
		name   string
		up     api.Upload
		size   int64
		wantOK bool
	}{
		{"parts covering the file are accepted", api.Upload{PartSize: 5, Parts: []api.UploadPart{part(1, 5), part(2, 5), part(3, 1)}}, 11, true},
		{"parts short of the file are refused", api.Upload{PartSize: 5, Parts: []api.UploadPart{part(1, 5), part(2, 5)}}, 11, false},
		{"parts out of order are refused", api.Upload{PartSize: 5, Parts: []api.UploadPart{part(2, 5), part(1, 5), part(3, 1)}}, 11, false},
		{"a middle part of another size is refused", api.Upload{PartSize: 5, Parts: []api.UploadPart{part(1, 5), part(2, 4), part(3, 2)}}, 11, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkPlan(tt.up, tt.size); (err == nil) != tt.wantOK {
				t.Errorf("checkPlan = %v, want ok %v", err, tt.wantOK)
			}
		})
	}
}

func TestUploadFailedExplainsExpiry(t *testing.T) {
	exp := time.Date(2026, 1, 1, 13, 0, 0, 0, time.Local)
	st := &uploadState{DatasetID: "ds_x", Upload: api.Upload{Type: "multipart", Parts: []api.UploadPart{
		{PartNumber: 1, SignedRequest: pipeline.SignedRequest{ExpiresAt: exp}},
		{PartNumber: 2, SignedRequest: pipeline.SignedRequest{ExpiresAt: exp}},
	}}, ETags: map[int]string{1: "etag1"}}
	a := &app{stderr: &bytes.Buffer{}}
	err := a.uploadFailed(fmt.Errorf("part 2: %w", &client.TransferError{Status: 403, Code: "AccessDenied", Message: "Request has expired", Expired: true}), st, "chats.jsonl")
	want := "the upload URLs of ds_x expired at 13:00:00 (they are valid for one hour) with 1 of 2 parts uploaded: run `brightrun datasets upload chats.jsonl` again to start over"
	if err == nil || err.Error() != want || exitCode(err) != 3 {
		t.Errorf("uploadFailed = %v (exit %d), want %q (exit 3)", err, exitCode(err), want)
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"a line too long", 6, "a lin…"},
		{"████████", 4, "███…"},
	}
	for _, tt := range tests {
		if got := truncate(tt.s, tt.n); got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}

func TestEvaluationLine(t *testing.T) {
	split := 0.1
	for _, tt := range []struct {
		name string
		e    *pipeline.EvaluationEstimate
		want string
	}{
		{"no evaluation", nil, "none: nothing held out, every example trains"},
		{"a held-out share", &pipeline.EvaluationEstimate{Source: "held_out", Split: &split, Examples: 100, TrainingExamples: 900, TokensTotal: 120000,
			Evaluations: 10, EverySteps: 12, SecondsRange: pipeline.Range{Low: 40, Expected: 65, High: 130}},
			"100 held-out examples (split 0.1), 900 train · 120,000 tokens · 10 evaluations, every 12 steps · adds 40s – 1m05s – 2m10s"},
		{"a second dataset", &pipeline.EvaluationEstimate{Source: "dataset", DatasetID: "ds_eval", Examples: 200, TrainingExamples: 1000, TokensTotal: 5000,
			Evaluations: 3, EverySteps: 1, SecondsRange: pipeline.Range{Low: 1, Expected: 2, High: 3}},
			"the first 200 examples of ds_eval · 5,000 tokens · 3 evaluations, every 1 steps · adds 1s – 2s – 3s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := evaluationLine(tt.e); got != tt.want {
				t.Errorf("evaluationLine() = %q, want %q", got, tt.want)
			}
		})
	}
}
