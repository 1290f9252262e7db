// Package localworker runs jobs with the real GPU worker (gpu-image/) as a
// subprocess on this machine's CPU with a tiny random Qwen3-Next, behind the
// same calls the dispatcher and reconciliation make of RunPod (Run, Status,
// Cancel) and with RunPod's completion webhook. The local stack uses it
// with BRIGHTRUN_GPU=local-worker so that a user can watch real training
// end to end without a GPU.
package localworker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/runpod"
)

// Options configure the local worker.
type Options struct {
	// Python is the interpreter (default python3).
	Python string
	// WorkerDir is the gpu-image folder (default "gpu-image").
	WorkerDir string
	// Dir holds the tiny model and the jobs' scratch folders.
	Dir string
	Log *slog.Logger
	// CrashAfterStep, when above 0, is the crash knob (default: the
	// environment's BRIGHTRUN_CRASH_AFTER_STEP): the first run of each job
	// exits hard (137) after that training step, and the run is then
	// re-run once with the same input, as RunPod retries a crashed worker;
	// the re-run resumes from the job's last stored checkpoint.
	CrashAfterStep int
}

// CrashEnv is the environment variable of the crash knob.
const CrashEnv = "BRIGHTRUN_CRASH_AFTER_STEP"

// Worker runs jobs as subprocesses.
type Worker struct {
	opts      Options
	modelOnce sync.Once
	modelDir  string
	modelErr  error

	mu   sync.Mutex
	runs map[string]*run
}

type run struct {
	cmd      *exec.Cmd
	args     []string // to run it again after a crash
	retries  int
	status   runpod.Status
	output   json.RawMessage
	errText  string
	started  time.Time
	ended    time.Time
	canceled bool
}

// New returns a local worker.
func New(opts Options) (*Worker, error) {
	if opts.Python == "" {
		opts.Python = "python3"
	}
	if opts.WorkerDir == "" {
		opts.WorkerDir = "gpu-image"
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if v := os.Getenv(CrashEnv); opts.CrashAfterStep == 0 && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("local worker: %s must be a step number, got %q", CrashEnv, v)
		}
		opts.CrashAfterStep = n
	}
	if _, err := os.Stat(filepath.Join(opts.WorkerDir, "brightrun_worker", "local.py")); err != nil {
		return nil, fmt.Errorf("local worker: no worker package under %s (run from the repository root): %w", opts.WorkerDir, err)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	return &Worker{opts: opts, runs: map[string]*run{}}, nil
}

// tinyModel builds the tiny checkpoint once (a few seconds).
func (w *Worker) tinyModel(ctx context.Context) (string, error) {
	w.modelOnce.Do(func() {
		dir, err := filepath.Abs(filepath.Join(w.opts.Dir, "tiny-qwen3-next"))
		if err != nil {
			w.modelErr = err
			return
		}
		if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
			w.modelDir = dir
			return
		}
		cmd := w.python(ctx, "-m", "brightrun_worker.tiny", "--out", dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			w.modelErr = fmt.Errorf("build the tiny model: %w: %s", err, lastLines(out))
			return
		}
		w.modelDir = dir
	})
	return w.modelDir, w.modelErr
}

func (w *Worker) python(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, w.opts.Python, args...)
	abs, _ := filepath.Abs(w.opts.WorkerDir)
	// The crash knob is the local worker's to apply (once per job), not
	// every run's.
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, CrashEnv+"=") })
	cmd.Env = append(env, "PYTHONPATH="+abs, "HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1")
	return cmd
}

// Run starts the job's worker: the spec's model is replaced by the tiny
// one, in BF16 (4-bit needs CUDA).
func (w *Worker) Run(ctx context.Context, req runpod.RunRequest) (runpod.JobStatus, error) {
	raw, err := json.Marshal(req.Input)
	if err != nil {
		return runpod.JobStatus{}, err
	}
	spec, err := contract.ParseJobSpec(raw)
	if err != nil {
		return runpod.JobStatus{}, &runpod.APIError{Op: "run", StatusCode: 400, Kind: runpod.ErrBadRequest, Message: err.Error()}
	}
	model, err := w.tinyModel(context.Background())
	if err != nil {
		return runpod.JobStatus{}, &runpod.APIError{Op: "run", Kind: runpod.ErrUnavailable, Message: err.Error(), Err: err}
	}
	spec.BaseModel.VolumePath, spec.BaseModel.Quantization = model, contract.QuantizationBF16
	id := "local-" + randomHex(8)
	dir := filepath.Join(w.opts.Dir, "jobs", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return runpod.JobStatus{}, err
	}
	specPath := filepath.Join(dir, "spec.json")
	data, _ := json.Marshal(spec)
	if err := os.WriteFile(specPath, data, 0o600); err != nil {
		return runpod.JobStatus{}, err
	}
	args := []string{"-m", "brightrun_worker.local", "--spec", specPath, "--runpod-job-id", id, "--workdir", dir}
	first := args
	if w.opts.CrashAfterStep > 0 {
		first = append(slices.Clone(args), "--crash-after-step", strconv.Itoa(w.opts.CrashAfterStep))
	}
	cmd := w.python(context.Background(), first...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return runpod.JobStatus{}, &runpod.APIError{Op: "run", Kind: runpod.ErrUnavailable, Message: err.Error(), Err: err}
	}
	r := &run{cmd: cmd, args: args, status: runpod.StatusInProgress, started: time.Now()}
	w.mu.Lock()
	w.runs[id] = r
	w.mu.Unlock()
	w.opts.Log.Info("local worker started", "run_id", id, "job_id", spec.JobID, "attempt", spec.Attempt)
	go w.wait(id, r, &stdout, &stderr, req.Webhook)
	return runpod.JobStatus{ID: id, Status: runpod.StatusInProgress}, nil
}

// crashExitCode is how the crash knob (and a killed process) exits.
const crashExitCode = 137

func (w *Worker) wait(id string, r *run, stdout, stderr *bytes.Buffer, webhook string) {
	err := r.cmd.Wait()
	w.mu.Lock()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == crashExitCode && !r.canceled && r.retries == 0 && w.opts.CrashAfterStep > 0 {
		// The knob's crash: re-run the same input once, as RunPod does.
		stdout.Reset()
		stderr.Reset()
		cmd := w.python(context.Background(), r.args...)
		cmd.Stdout, cmd.Stderr = stdout, stderr
		if serr := cmd.Start(); serr == nil {
			r.cmd, r.retries = cmd, r.retries+1
			w.mu.Unlock()
			w.opts.Log.Info("local worker crashed: re-running it", "run_id", id, "retries", r.retries)
			w.wait(id, r, stdout, stderr, webhook)
			return
		}
	}
	r.ended = time.Now()
	var out struct {
		Error string `json:"error"`
	}
	line := bytes.TrimSpace(stdout.Bytes())
	if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	_ = json.Unmarshal(line, &out)
	switch {
	case r.canceled:
		r.status = runpod.StatusCancelled
	case err == nil:
		r.status, r.output = runpod.StatusCompleted, json.RawMessage(append([]byte(nil), line...))
	default:
		r.status, r.errText = runpod.StatusFailed, out.Error
		if r.errText == "" {
			r.errText = fmt.Sprintf("worker exited: %v: %s", err, lastLines(stderr.Bytes()))
		}
	}
	st := w.statusLocked(id, r)
	w.mu.Unlock()
	w.opts.Log.Info("local worker ended", "run_id", id, "status", st.Status, "error", st.Error)
	if webhook != "" && (st.Status == runpod.StatusCompleted || st.Status == runpod.StatusFailed) {
		body, _ := json.Marshal(st)
		if resp, err := http.Post(webhook, "application/json", bytes.NewReader(body)); err == nil {
			resp.Body.Close()
		}
	}
}

func (w *Worker) statusLocked(id string, r *run) runpod.JobStatus {
	end := r.ended
	if end.IsZero() {
		end = time.Now()
	}
	return runpod.JobStatus{ID: id, Status: r.status, ExecutionTime: end.Sub(r.started).Milliseconds(), Output: r.output, Error: r.errText, WorkerID: "local", Retries: r.retries}
}

// Status reports a run as RunPod's /status would.
func (w *Worker) Status(ctx context.Context, id string) (runpod.JobStatus, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r, ok := w.runs[id]
	if !ok {
		return runpod.JobStatus{}, &runpod.APIError{Op: "status", StatusCode: 404, Kind: runpod.ErrNotFound, Message: "no such local run (runs are forgotten on restart)"}
	}
	return w.statusLocked(id, r), nil
}

// Cancel stops a run: SIGTERM, which the worker turns into a prompt stop.
func (w *Worker) Cancel(ctx context.Context, id string) (runpod.JobStatus, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r, ok := w.runs[id]
	if !ok {
		return runpod.JobStatus{}, &runpod.APIError{Op: "cancel", StatusCode: 404, Kind: runpod.ErrNotFound}
	}
	if r.ended.IsZero() {
		r.canceled = true
		if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return runpod.JobStatus{}, err
		}
	}
	return w.statusLocked(id, r), nil
}

// Close stops every run still going.
func (w *Worker) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.runs {
		if r.ended.IsZero() {
			_ = r.cmd.Process.Kill()
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func lastLines(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}
