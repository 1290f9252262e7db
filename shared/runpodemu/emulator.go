package runpodemu

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/runpod"
)

// Config configures an Emulator. Zero fields take the defaults shown.
type Config struct {
	EndpointID string // the endpoint id in /v2/{endpoint}/... (default "emulator")
	APIKey     string // the bearer key every request must carry (required)
	Workers    int    // concurrent workers; further jobs wait IN_QUEUE (default 3, RunPod's default max workers)

	Clock      Clock        // RunPod's rules and the worker's timestamps (default: the real clock)
	HTTPClient *http.Client // dataset downloads, callbacks, uploads, completion webhooks (default: 30 s timeout)
	Logger     *slog.Logger // default slog.Default()

	// The simulated worker.
	StepsPerSecond     float64       // training speed (default 50)
	StageDelay         time.Duration // extra time spent in each of download, load and save (default 0)
	CallbackRetries    int           // retries of a callback on network errors, 429 and 5xx (default 3)
	CallbackRetryDelay time.Duration // first retry delay, doubling (default 500 ms)
	WorkerVersion      string        // the started callback's worker_version (default "emulator")
	// FullSizeAdapters writes adapters with the base model's real shapes
	// (tens of MB: 92 MB for Qwen3-Next at rank 16); by default every
	// model gets its tiny shape (ModelShape.Tiny; a few hundred KB).
	FullSizeAdapters bool
	// Models adds or replaces model shapes by base model id.
	Models map[string]ModelShape

	// RunPod's rules.
	Retention            time.Duration // results kept after the end (default 30 min)
	WebhookAttempts      int           // completion webhook tries: 1 + retries (default 3)
	WebhookRetryInterval time.Duration // between webhook tries (default 10 s)
	SweepInterval        time.Duration // how often clock rules are applied in the background (default 100 ms)

	// Faults chooses the faults of each submitted job (default: none).
	Faults func(JobInfo) Fault
}

func (c *Config) setDefaults() {
	if c.EndpointID == "" {
		c.EndpointID = "emulator"
	}
	if c.Workers <= 0 {
		c.Workers = 3
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.StepsPerSecond <= 0 {
		c.StepsPerSecond = 50
	}
	if c.CallbackRetries <= 0 {
		c.CallbackRetries = 3
	}
	if c.CallbackRetryDelay <= 0 {
		c.CallbackRetryDelay = 500 * time.Millisecond
	}
	if c.WorkerVersion == "" {
		c.WorkerVersion = "emulator"
	}
	if c.Retention <= 0 {
		c.Retention = runpod.ResultRetention
	}
	if c.WebhookAttempts <= 0 {
		c.WebhookAttempts = 3
	}
	if c.WebhookRetryInterval <= 0 {
		c.WebhookRetryInterval = 10 * time.Second
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = 100 * time.Millisecond
	}
}

// Emulator is the RunPod Serverless job API emulator: an http.Handler that
// serves /v2/{endpoint}/... and runs a simulated worker per job.
type Emulator struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	jobs      map[string]*job
	queue     []*job // IN_QUEUE jobs no worker has taken, in order
	busy      int    // workers holding a job
	counts    struct{ completed, failed, retried int }
	apiFaults []apiFault
	webhooks  []WebhookDelivery
}

// job is one RunPod job.
type job struct {
	id          string
	input       json.RawMessage
	webhook     string
	execTimeout time.Duration
	ttl         time.Duration
	fault       Fault

	status      runpod.Status
	submittedAt time.Time
	startedAt   time.Time
	endedAt     time.Time
	output      json.RawMessage
	errText     string
	retries     int
	crashes     int // crash faults already spent
	workerID    string
	gen         int // bumped at every (re)queue: a worker of an older generation is stale
	stopWorker  context.CancelCauseFunc
}

var (
	errStopSignal = errors.New("RunPod stop signal") // cancel, executionTimeout, ttl: the SDK cancels the handler
	errShutdown   = errors.New("emulator closed")
)

// New returns an emulator. Call Close when done.
func New(cfg Config) (*Emulator, error) {
	if cfg.APIKey == "" {
		return nil, errors.New("runpodemu: an API key is required")
	}
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	e := &Emulator{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "runpod-emulator"),
		ctx:    ctx,
		cancel: cancel,
		jobs:   make(map[string]*job),
	}
	e.routes()
	e.wg.Add(1)
	go e.sweeper()
	return e, nil
}

// Close stops every worker and background task and waits for them.
func (e *Emulator) Close() {
	e.mu.Lock()
	for _, j := range e.jobs { // first, so that workers see why they stop
		if j.stopWorker != nil {
			j.stopWorker(errShutdown)
		}
	}
	e.mu.Unlock()
	e.cancel()
	e.wg.Wait()
}

func (e *Emulator) routes() {
	m := http.NewServeMux()
	m.HandleFunc("POST /v2/{endpoint}/run", e.handleRun)
	m.HandleFunc("GET /v2/{endpoint}/status/{id}", e.handleStatus)
	m.HandleFunc("POST /v2/{endpoint}/status/{id}", e.handleStatus)
	m.HandleFunc("POST /v2/{endpoint}/cancel/{id}", e.handleCancel)
	m.HandleFunc("POST /v2/{endpoint}/retry/{id}", e.handleRetry)
	m.HandleFunc("POST /v2/{endpoint}/purge-queue", e.handlePurge)
	m.HandleFunc("GET /v2/{endpoint}/health", e.handleHealth)
	e.mux = m
}

// ServeHTTP serves the job API under /v2/{endpoint}/: point a runpod.Client
// at the server's URL + "/v2".
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f, ok := e.takeAPIFault(); ok {
		if f.retryAfter > 0 {
			w.Header().Set("Retry-After", fmt.Sprint(int64(math.Ceil(f.retryAfter.Seconds()))))
		}
		writeError(w, f.status, fmt.Sprintf("%s (injected by the emulator)", http.StatusText(f.status)))
		return
	}
	if !e.authorized(r) {
		writeError(w, http.StatusUnauthorized, "Unauthorized")
		return
	}
	e.mux.ServeHTTP(w, r)
}

func (e *Emulator) takeAPIFault() (apiFault, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.apiFaults) == 0 {
		return apiFault{}, false
	}
	f := e.apiFaults[0]
	e.apiFaults = e.apiFaults[1:]
	return f, true
}

// authorized accepts "Bearer <key>" and, as RunPod's own examples send it,
// the bare key.
func (e *Emulator) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	key, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		key = h
	}
	return key == e.cfg.APIKey
}

func (e *Emulator) endpointOK(w http.ResponseWriter, r *http.Request) bool {
	if r.PathValue("endpoint") != e.cfg.EndpointID {
		writeError(w, http.StatusNotFound, "endpoint not found")
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

type runBody struct {
	Input   json.RawMessage `json:"input"`
	Webhook string          `json:"webhook"`
	Policy  *struct {
		ExecutionTimeout *int64 `json:"executionTimeout"`
		TTL              *int64 `json:"ttl"`
		LowPriority      bool   `json:"lowPriority"`
	} `json:"policy"`
}

func (e *Emulator) handleRun(w http.ResponseWriter, r *http.Request) {
	if !e.endpointOK(w, r) {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, runpod.MaxPayloadBytes))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("request body over the %d-byte limit", runpod.MaxPayloadBytes))
		return
	}
	var rb runBody
	if err := json.Unmarshal(body, &rb); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return
	}
	if len(rb.Input) == 0 || string(rb.Input) == "null" {
		writeError(w, http.StatusBadRequest, "input is required")
		return
	}
	execTimeout, ttl := runpod.DefaultExecutionTimeout, runpod.DefaultTTL
	if p := rb.Policy; p != nil {
		if p.ExecutionTimeout != nil {
			execTimeout = time.Duration(*p.ExecutionTimeout) * time.Millisecond
			if execTimeout <= runpod.MinExecutionTimeout || execTimeout > runpod.MaxExecutionTimeout {
				writeError(w, http.StatusBadRequest, "policy.executionTimeout must be > 5000 ms and at most 7 days")
				return
			}
		}
		if p.TTL != nil {
			ttl = time.Duration(*p.TTL) * time.Millisecond
			if ttl < runpod.MinTTL || ttl > runpod.MaxTTL {
				writeError(w, http.StatusBadRequest, "policy.ttl must be >= 10000 ms and at most 7 days")
				return
			}
		}
	}
	j := &job{
		id:          newJobID(),
		input:       rb.Input,
		webhook:     rb.Webhook,
		execTimeout: execTimeout,
		ttl:         ttl,
		status:      runpod.StatusInQueue,
	}
	if e.cfg.Faults != nil {
		info := JobInfo{ID: j.id, Input: rb.Input}
		if s, err := contract.ParseJobSpec(rb.Input); err == nil {
			info.Spec = s
		}
		j.fault = e.cfg.Faults(info)
	}
	e.mu.Lock()
	j.submittedAt = e.cfg.Clock.Now()
	e.jobs[j.id] = j
	e.queue = append(e.queue, j)
	e.scheduleLocked()
	e.mu.Unlock()
	e.log.Info("job submitted", "id", j.id, "execution_timeout", execTimeout, "ttl", ttl)
	writeJSON(w, http.StatusOK, runpod.JobStatus{ID: j.id, Status: runpod.StatusInQueue})
}

func (e *Emulator) handleStatus(w http.ResponseWriter, r *http.Request) {
	if !e.endpointOK(w, r) {
		return
	}
	e.mu.Lock()
	e.sweepLocked(e.cfg.Clock.Now())
	j, ok := e.jobs[r.PathValue("id")]
	var st runpod.JobStatus
	if ok {
		st = e.statusLocked(j)
	}
	e.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "job not found")
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (e *Emulator) handleCancel(w http.ResponseWriter, r *http.Request) {
	if !e.endpointOK(w, r) {
		return
	}
	e.mu.Lock()
	now := e.cfg.Clock.Now()
	e.sweepLocked(now)
	j, ok := e.jobs[r.PathValue("id")]
	if !ok {
		e.mu.Unlock()
		writeError(w, http.StatusNotFound, "job not found")
		return
	}
	if !j.status.Terminal() {
		e.removeFromQueueLocked(j)
		e.endLocked(j, runpod.StatusCancelled, now)
		e.log.Info("job cancelled", "id", j.id)
	}
	st := runpod.JobStatus{ID: j.id, Status: j.status}
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, st)
}

func (e *Emulator) handleRetry(w http.ResponseWriter, r *http.Request) {
	if !e.endpointOK(w, r) {
		return
	}
	e.mu.Lock()
	e.sweepLocked(e.cfg.Clock.Now())
	j, ok := e.jobs[r.PathValue("id")]
	switch {
	case !ok:
		e.mu.Unlock()
		writeError(w, http.StatusNotFound, "job not found")
		return
	case j.status != runpod.StatusFailed && j.status != runpod.StatusTimedOut:
		st := j.status
		e.mu.Unlock()
		writeError(w, http.StatusBadRequest, fmt.Sprintf("job is %s: only FAILED or TIMED_OUT jobs can be retried", st))
		return
	}
	j.gen++
	j.status = runpod.StatusInQueue
	j.output, j.errText, j.workerID = nil, "", ""
	j.startedAt, j.endedAt = time.Time{}, time.Time{}
	e.counts.retried++
	e.queue = append(e.queue, j)
	e.scheduleLocked()
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, runpod.JobStatus{ID: j.id, Status: runpod.StatusInQueue})
}

func (e *Emulator) handlePurge(w http.ResponseWriter, r *http.Request) {
	if !e.endpointOK(w, r) {
		return
	}
	e.mu.Lock()
	n := len(e.queue)
	for _, j := range e.queue {
		delete(e.jobs, j.id) // assumed: purged jobs are gone (404)
	}
	e.queue = nil
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, runpod.PurgeResult{Removed: n, Status: "completed"})
}

func (e *Emulator) handleHealth(w http.ResponseWriter, r *http.Request) {
	if !e.endpointOK(w, r) {
		return
	}
	var h runpod.Health
	e.mu.Lock()
	e.sweepLocked(e.cfg.Clock.Now())
	for _, j := range e.jobs {
		switch j.status {
		case runpod.StatusInQueue:
			h.Jobs.InQueue++
		case runpod.StatusInProgress:
			h.Jobs.InProgress++
		}
	}
	h.Jobs.Completed, h.Jobs.Failed, h.Jobs.Retried = e.counts.completed, e.counts.failed, e.counts.retried
	h.Workers.Running = e.busy
	h.Workers.Idle = e.cfg.Workers - e.busy
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, h)
}

// statusLocked is the /status body of j.
func (e *Emulator) statusLocked(j *job) runpod.JobStatus {
	st := runpod.JobStatus{ID: j.id, Status: j.status, Output: j.output, Error: j.errText, Retries: j.retries, WorkerID: j.workerID}
	if !j.startedAt.IsZero() {
		st.DelayTime = j.startedAt.Sub(j.submittedAt).Milliseconds()
		end := j.endedAt
		if end.IsZero() {
			end = e.cfg.Clock.Now()
		}
		st.ExecutionTime = end.Sub(j.startedAt).Milliseconds()
	}
	return st
}

func (e *Emulator) removeFromQueueLocked(j *job) {
	for i, q := range e.queue {
		if q == j {
			e.queue = append(e.queue[:i], e.queue[i+1:]...)
			return
		}
	}
}

// endLocked moves j to a terminal status and stops its worker.
func (e *Emulator) endLocked(j *job, status runpod.Status, now time.Time) {
	j.status = status
	j.endedAt = now
	if j.stopWorker != nil {
		j.stopWorker(errStopSignal)
	}
}

// scheduleLocked hands queued jobs to free workers.
func (e *Emulator) scheduleLocked() {
	for e.busy < e.cfg.Workers && len(e.queue) > 0 && e.ctx.Err() == nil {
		j := e.queue[0]
		e.queue = e.queue[1:]
		e.busy++
		ctx, stop := context.WithCancelCause(e.ctx)
		j.stopWorker = stop
		e.wg.Add(1)
		go func(gen int) {
			defer stop(nil)
			e.runWorker(ctx, j, gen)
		}(j.gen)
	}
}

// sweeper applies the clock rules in the background.
func (e *Emulator) sweeper() {
	defer e.wg.Done()
	t := time.NewTicker(e.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
			e.mu.Lock()
			e.sweepLocked(e.cfg.Clock.Now())
			e.mu.Unlock()
		}
	}
}

// sweepLocked applies RunPod's clock rules: a job past its ttl (counted
// from submission) is deleted whatever its state; a running job past its
// executionTimeout is TIMED_OUT; a finished job is deleted Retention after
// its end.
func (e *Emulator) sweepLocked(now time.Time) {
	for id, j := range e.jobs {
		switch {
		case !now.Before(j.submittedAt.Add(j.ttl)):
			e.log.Info("job ttl expired: deleted", "id", id, "status", j.status)
			if !j.status.Terminal() {
				e.removeFromQueueLocked(j)
				e.endLocked(j, runpod.StatusCancelled, now)
			}
			delete(e.jobs, id)
		case j.status == runpod.StatusInProgress && !now.Before(j.startedAt.Add(j.execTimeout)):
			e.log.Info("job execution timeout", "id", id)
			e.endLocked(j, runpod.StatusTimedOut, now)
		case j.status.Terminal() && !now.Before(j.endedAt.Add(e.cfg.Retention)):
			delete(e.jobs, id)
		}
	}
}

// runWorker is one worker taking one job: cold start, the simulated
// handler, then the job's end (or a re-queue after a crash).
func (e *Emulator) runWorker(ctx context.Context, j *job, gen int) {
	defer e.wg.Done()
	release := func() {
		e.busy--
		e.scheduleLocked()
	}
	if d := j.fault.StartDelay; d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	e.mu.Lock()
	if j.gen != gen || j.status != runpod.StatusInQueue || ctx.Err() != nil {
		release()
		e.mu.Unlock()
		return
	}
	j.status = runpod.StatusInProgress
	j.startedAt = e.cfg.Clock.Now()
	j.workerID = newWorkerID()
	crash := j.fault.CrashAtStep > 0 && j.crashes < max(j.fault.Crashes, 1)
	run := runInfo{runpodID: j.id, workerID: j.workerID, input: j.input, fault: j.fault, crash: crash}
	e.mu.Unlock()

	res := e.simulate(ctx, run)

	e.mu.Lock()
	defer e.mu.Unlock()
	defer release()
	if j.gen != gen || j.status != runpod.StatusInProgress || e.jobs[j.id] != j {
		return // cancelled, timed out, deleted or retried meanwhile
	}
	now := e.cfg.Clock.Now()
	if res.crashed {
		// The worker died: RunPod runs the job again on another worker.
		j.crashes++
		j.retries++
		e.counts.retried++
		j.gen++
		j.status = runpod.StatusInQueue
		j.workerID = ""
		j.startedAt = time.Time{}
		e.queue = append([]*job{j}, e.queue...)
		e.log.Info("worker crashed: job re-queued", "id", j.id, "retries", j.retries)
		return
	}
	if res.err != "" {
		j.status, j.errText = runpod.StatusFailed, res.err
		e.counts.failed++
	} else {
		j.status = runpod.StatusCompleted
		e.counts.completed++
	}
	j.output = res.output
	j.endedAt = now
	j.stopWorker = nil
	e.log.Info("job finished", "id", j.id, "status", j.status)
	if j.webhook != "" && !j.fault.DropWebhook {
		body := webhookBody{JobStatus: e.statusLocked(j), Input: j.input, Webhook: j.webhook}
		e.wg.Add(1)
		go e.sendWebhook(j.id, j.webhook, body)
	}
}

// webhookBody is what RunPod POSTs to a job's webhook: the /status body
// and, as observed, the job's input and webhook.
type webhookBody struct {
	runpod.JobStatus
	Input   json.RawMessage `json:"input"`
	Webhook string          `json:"webhook"`
}

// WebhookDelivery records one completion webhook try.
type WebhookDelivery struct {
	JobID      string
	Attempt    int // 1, 2, 3
	StatusCode int // 0 on a network error
	Err        string
}

// Webhooks returns every completion webhook try so far.
func (e *Emulator) Webhooks() []WebhookDelivery {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]WebhookDelivery(nil), e.webhooks...)
}

// sendWebhook POSTs the completion webhook; anything but 200 is retried
// WebhookAttempts-1 times, WebhookRetryInterval apart.
func (e *Emulator) sendWebhook(id, url string, body webhookBody) {
	defer e.wg.Done()
	b, err := json.Marshal(body)
	if err != nil {
		e.log.Error("encode webhook", "id", id, "error", err)
		return
	}
	for attempt := 1; attempt <= e.cfg.WebhookAttempts; attempt++ {
		if attempt > 1 {
			select {
			case <-time.After(e.cfg.WebhookRetryInterval):
			case <-e.ctx.Done():
				return
			}
		}
		d := WebhookDelivery{JobID: id, Attempt: attempt}
		req, err := http.NewRequestWithContext(e.ctx, http.MethodPost, url, bytes.NewReader(b))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
			var resp *http.Response
			resp, err = e.cfg.HTTPClient.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
				resp.Body.Close()
				d.StatusCode = resp.StatusCode
			}
		}
		if err != nil {
			d.Err = err.Error()
		}
		e.mu.Lock()
		e.webhooks = append(e.webhooks, d)
		e.mu.Unlock()
		if d.StatusCode == http.StatusOK {
			return
		}
		e.log.Warn("completion webhook failed", "id", id, "attempt", attempt, "status", d.StatusCode, "error", d.Err)
	}
}

// newJobID returns an id shaped like RunPod's: a UUID and a "-u1" suffix.
func newJobID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32] + "-u1"
}

// newWorkerID returns a pod id shaped like RunPod's (14 lower-case characters).
func newWorkerID() string {
	var b [7]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
