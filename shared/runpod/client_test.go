package runpod_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/runpod"
)

// reply is one scripted answer.
type reply struct {
	status     int
	body       string
	retryAfter string
}

// scripted serves replies in order (the last one repeats) and counts requests.
type scripted struct {
	mu      sync.Mutex
	replies []reply
	hits    int
	paths   []string
	bodies  []string
	auth    []string
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	rep := s.replies[min(s.hits, len(s.replies)-1)]
	s.hits++
	s.paths = append(s.paths, r.Method+" "+r.URL.Path)
	s.bodies = append(s.bodies, string(b))
	s.auth = append(s.auth, r.Header.Get("Authorization"))
	s.mu.Unlock()
	if rep.retryAfter != "" {
		w.Header().Set("Retry-After", rep.retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.status)
	io.WriteString(w, rep.body)
}

func (s *scripted) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits
}

// recorder records backoff waits instead of sleeping.
type recorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (r *recorder) sleep(ctx context.Context, d time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waits = append(r.waits, d)
	return ctx.Err()
}

func newClient(t *testing.T, url string, opts ...runpod.Option) (*runpod.Client, *recorder) {
	t.Helper()
	rec := &recorder{}
	opts = append([]runpod.Option{runpod.WithSleep(rec.sleep), runpod.WithoutJitter(), runpod.WithLogger(quiet),
		runpod.WithRetryPolicy(runpod.RetryPolicy{MaxAttempts: 4, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second, MaxElapsed: time.Minute})}, opts...)
	c, err := runpod.New(url, "ep123", "key-1", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c, rec
}

var quiet = slog.New(slog.DiscardHandler)

var training = runpod.Policy{ExecutionTimeout: 13 * time.Hour, TTL: 20 * time.Hour}

func TestRunSendsInputWebhookAndPolicyInMilliseconds(t *testing.T) {
	srv := &scripted{replies: []reply{{200, `{"id":"e7a2-u1","status":"IN_QUEUE"}`, ""}}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c, _ := newClient(t, ts.URL)

	js, err := c.Run(context.Background(), runpod.RunRequest{
		Input:   map[string]any{"job_id": "job_1"},
		Webhook: "https://api.example/v1/callbacks/runpod/tok",
		Policy:  runpod.Policy{ExecutionTimeout: 13 * time.Hour, TTL: 20 * time.Hour, LowPriority: true},
	})
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	if js.ID != "e7a2-u1" || js.Status != runpod.StatusInQueue {
		t.Errorf("Run = %+v", js)
	}
	if srv.paths[0] != "POST /ep123/run" || srv.auth[0] != "Bearer key-1" {
		t.Errorf("request = %s with Authorization %q", srv.paths[0], srv.auth[0])
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(srv.bodies[0]), &got); err != nil {
		t.Fatal(err)
	}
	pol := got["policy"].(map[string]any)
	if pol["executionTimeout"] != float64(13*3600*1000) || pol["ttl"] != float64(20*3600*1000) || pol["lowPriority"] != true {
		t.Errorf("policy = %v, want milliseconds", pol)
	}
	if got["webhook"] != "https://api.example/v1/callbacks/runpod/tok" || got["input"].(map[string]any)["job_id"] != "job_1" {
		t.Errorf("body = %s", srv.bodies[0])
	}
}

func TestRunRefusesABadPolicyBeforeSending(t *testing.T) {
	tests := []struct {
		name   string
		policy runpod.Policy
	}{
		{"no execution timeout is refused (never RunPod's 10-minute default)", runpod.Policy{TTL: time.Hour}},
		{"an execution timeout of 5 s is refused", runpod.Policy{ExecutionTimeout: 5 * time.Second}},
		{"an execution timeout over 7 days is refused", runpod.Policy{ExecutionTimeout: 8 * 24 * time.Hour, TTL: 7 * 24 * time.Hour}},
		{"a ttl shorter than the execution timeout is refused", runpod.Policy{ExecutionTimeout: 2 * time.Hour, TTL: time.Hour}},
		{"the default ttl shorter than the execution timeout is refused", runpod.Policy{ExecutionTimeout: 48 * time.Hour}},
		{"a ttl under 10 s is refused", runpod.Policy{ExecutionTimeout: 6 * time.Second, TTL: 9 * time.Second}},
	}
	srv := &scripted{replies: []reply{{200, `{"id":"x","status":"IN_QUEUE"}`, ""}}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c, _ := newClient(t, ts.URL)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Run(context.Background(), runpod.RunRequest{Input: map[string]any{}, Policy: tt.policy})
			if !errors.Is(err, runpod.ErrInvalidPolicy) {
				t.Errorf("Run(%+v) = %v, want ErrInvalidPolicy", tt.policy, err)
			}
		})
	}
	if srv.count() != 0 {
		t.Errorf("%d requests reached the server, want 0", srv.count())
	}
	if _, err := c.Run(context.Background(), runpod.RunRequest{Input: map[string]any{}, Policy: runpod.Policy{ExecutionTimeout: time.Hour}}); err != nil {
		t.Errorf("Run(1 h, default ttl) = %v, want nil", err)
	}
}

func TestAnswersAreClassifiedAndRetriedOnlyWhenSafe(t *testing.T) {
	const okStatus = `{"id":"j-u1","status":"COMPLETED","delayTime":12,"executionTime":3400,"output":{"ok":true},"retries":1,"workerId":"w1"}`
	tests := []struct {
		name          string
		op            string // "run" or "status"
		replies       []reply
		wantErr       error // nil for success
		wantAmbiguous bool
		wantHits      int
		wantMessage   string
	}{
		{"a 429 then 200 succeeds on the second try", "status", []reply{{429, `{"error":"slow down"}`, ""}, {200, okStatus, ""}}, nil, false, 2, ""},
		{"a 503 then 200 on run succeeds (nothing was created)", "run", []reply{{503, `upstream unavailable`, ""}, {200, `{"id":"j-u1","status":"IN_QUEUE"}`, ""}}, nil, false, 2, ""},
		{"a 429 on run is retried", "run", []reply{{429, ``, ""}, {429, ``, ""}, {200, `{"id":"j-u1","status":"IN_QUEUE"}`, ""}}, nil, false, 3, ""},
		{"5xx until the attempts run out is unavailable", "status", []reply{{502, `bad gateway`, ""}}, runpod.ErrUnavailable, false, 4, "bad gateway"},
		{"429 until the attempts run out is rate limited", "status", []reply{{429, `{"error":"too many requests"}`, ""}}, runpod.ErrRateLimited, false, 4, "too many requests"},
		{"a 500 on run is not retried and the outcome is unknown", "run", []reply{{500, `{"error":"internal"}`, ""}}, runpod.ErrOutcomeUnknown, true, 1, "internal"},
		{"a 504 on run is not retried and the outcome is unknown", "run", []reply{{504, ``, ""}}, runpod.ErrUnavailable, true, 1, ""},
		{"a 404 on status is not found (result lost) and not retried", "status", []reply{{404, `{"error":"job not found"}`, ""}}, runpod.ErrNotFound, false, 1, "result is lost"},
		{"a 401 is unauthorized and not retried", "status", []reply{{401, `{"error":"Unauthorized"}`, ""}}, runpod.ErrUnauthorized, false, 1, "Unauthorized"},
		{"a 403 is unauthorized", "run", []reply{{403, `forbidden`, ""}}, runpod.ErrUnauthorized, false, 1, "forbidden"},
		{"a 400 is a bad request with RunPod's message", "run", []reply{{400, `{"error":{"message":"executionTimeout must be > 5000"}}`, ""}}, runpod.ErrBadRequest, false, 1, "executionTimeout must be > 5000"},
		{"malformed JSON on status is a bad response", "status", []reply{{200, `{"id":`, ""}}, runpod.ErrBadResponse, false, 1, ""},
		{"malformed JSON on run is a bad response of unknown outcome", "run", []reply{{200, `<html>`, ""}}, runpod.ErrOutcomeUnknown, true, 1, ""},
		{"a run answer without an id is of unknown outcome", "run", []reply{{200, `{"status":"IN_QUEUE"}`, ""}}, runpod.ErrBadResponse, true, 1, "no job id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &scripted{replies: tt.replies}
			ts := httptest.NewServer(srv)
			defer ts.Close()
			c, _ := newClient(t, ts.URL)
			var err error
			var js runpod.JobStatus
			if tt.op == "run" {
				js, err = c.Run(context.Background(), runpod.RunRequest{Input: map[string]any{"a": 1}, Policy: training})
			} else {
				js, err = c.Status(context.Background(), "j-u1")
			}
			if srv.count() != tt.wantHits {
				t.Errorf("server saw %d requests, want %d", srv.count(), tt.wantHits)
			}
			if tt.wantErr == nil {
				if err != nil || js.ID != "j-u1" {
					t.Fatalf("%s = %+v, %v; want success", tt.op, js, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("%s = %v, want %v", tt.op, err, tt.wantErr)
			}
			if got := errors.Is(err, runpod.ErrOutcomeUnknown); got != tt.wantAmbiguous {
				t.Errorf("errors.Is(%v, ErrOutcomeUnknown) = %v, want %v", err, got, tt.wantAmbiguous)
			}
			var ae *runpod.APIError
			if !errors.As(err, &ae) || ae.Attempts != tt.wantHits {
				t.Errorf("APIError = %+v, want %d attempts", ae, tt.wantHits)
			}
			if !strings.Contains(err.Error(), tt.wantMessage) {
				t.Errorf("error %q does not contain %q", err, tt.wantMessage)
			}
		})
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	tests := []struct {
		name       string
		retryAfter string
		want       time.Duration
	}{
		{"Retry-After in seconds sets the wait", "3", 3 * time.Second},
		{"a fractional Retry-After sets the wait", "0.25", 250 * time.Millisecond},
		{"a Retry-After shorter than the backoff keeps the backoff", "0.01", 50 * time.Millisecond},
		{"an unreadable Retry-After keeps the backoff", "soon", 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &scripted{replies: []reply{{429, ``, tt.retryAfter}, {200, `{"id":"j","status":"IN_QUEUE"}`, ""}}}
			ts := httptest.NewServer(srv)
			defer ts.Close()
			c, rec := newClient(t, ts.URL)
			if _, err := c.Status(context.Background(), "j"); err != nil {
				t.Fatal(err)
			}
			if len(rec.waits) != 1 || rec.waits[0] != tt.want {
				t.Errorf("waits = %v, want [%s]", rec.waits, tt.want)
			}
		})
	}
}

func TestARealRetryAfterWaitIsObserved(t *testing.T) {
	srv := &scripted{replies: []reply{{429, ``, "0.15"}, {200, `{"id":"j","status":"IN_QUEUE"}`, ""}}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c, err := runpod.New(ts.URL, "ep", "k", runpod.WithLogger(quiet), runpod.WithRetryPolicy(runpod.RetryPolicy{BaseDelay: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.Status(context.Background(), "j"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("Status returned after %s, want at least the 150ms of Retry-After", d)
	}
}

func TestARetryAfterBeyondTheBudgetGivesUpAtOnce(t *testing.T) {
	srv := &scripted{replies: []reply{{429, `{"error":"quota"}`, "3600"}}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c, rec := newClient(t, ts.URL)
	_, err := c.Status(context.Background(), "j")
	if !errors.Is(err, runpod.ErrRateLimited) || srv.count() != 1 || len(rec.waits) != 0 {
		t.Errorf("Status = %v after %d requests and waits %v; want ErrRateLimited at once", err, srv.count(), rec.waits)
	}
}

func TestBackoffGrowsExponentially(t *testing.T) {
	srv := &scripted{replies: []reply{{503, ``, ""}}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c, rec := newClient(t, ts.URL)
	_, _ = c.Health(context.Background())
	want := []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}
	if len(rec.waits) != len(want) {
		t.Fatalf("waits = %v, want %v", rec.waits, want)
	}
	for i := range want {
		if rec.waits[i] != want[i] {
			t.Errorf("waits = %v, want %v (half the doubled delay, no jitter)", rec.waits, want)
		}
	}
}

func TestAContextDeadlineEndsTheRetries(t *testing.T) {
	srv := &scripted{replies: []reply{{503, ``, ""}}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c, err := runpod.New(ts.URL, "ep", "k", runpod.WithLogger(quiet), runpod.WithRetryPolicy(runpod.RetryPolicy{MaxAttempts: 10, BaseDelay: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Status(ctx, "j")
	if !errors.Is(err, runpod.ErrUnavailable) || time.Since(start) > time.Second {
		t.Errorf("Status = %v after %s, want ErrUnavailable well before the backoff", err, time.Since(start))
	}
}

func TestRunIsRetriedWhenTheConnectionIsRefused(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close() // nothing listens there now
	c, rec := newClient(t, url)
	_, err := c.Run(context.Background(), runpod.RunRequest{Input: map[string]any{}, Policy: training})
	var ae *runpod.APIError
	if !errors.As(err, &ae) || !errors.Is(err, runpod.ErrUnavailable) || errors.Is(err, runpod.ErrOutcomeUnknown) {
		t.Fatalf("Run = %v, want ErrUnavailable with a known outcome", err)
	}
	if ae.Attempts != 4 || len(rec.waits) != 3 {
		t.Errorf("attempts = %d, waits %v; want 4 attempts (nothing was sent)", ae.Attempts, rec.waits)
	}
}

func TestATimeoutAfterSendingRunIsNotRetried(t *testing.T) {
	var hits atomic.Int32
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		<-release // RunPod took the job but the answer never comes in time
	}))
	defer ts.Close()
	defer close(release)
	c, _ := newClient(t, ts.URL, runpod.WithHTTPClient(&http.Client{Timeout: 100 * time.Millisecond}))

	_, err := c.Run(context.Background(), runpod.RunRequest{Input: map[string]any{}, Policy: training})
	if !errors.Is(err, runpod.ErrOutcomeUnknown) || hits.Load() != 1 {
		t.Errorf("Run = %v after %d requests, want ErrOutcomeUnknown after 1", err, hits.Load())
	}
	hits.Store(0)
	_, err = c.Status(context.Background(), "j")
	if !errors.Is(err, runpod.ErrUnavailable) || hits.Load() != 4 {
		t.Errorf("Status = %v after %d requests, want ErrUnavailable after 4 (status is idempotent)", err, hits.Load())
	}
}

func TestStatusDecodesEveryField(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		check func(t *testing.T, js runpod.JobStatus)
	}{
		{"a completed job has its output", `{"id":"j","status":"COMPLETED","delayTime":31618,"executionTime":1437,"output":{"steps":10},"retries":2,"workerId":"w9"}`,
			func(t *testing.T, js runpod.JobStatus) {
				if js.DelayTime != 31618 || js.ExecutionTime != 1437 || string(js.Output) != `{"steps":10}` || js.Retries != 2 || js.WorkerID != "w9" || !js.Status.Terminal() {
					t.Errorf("JobStatus = %+v", js)
				}
			}},
		{"a failed job has its error text", `{"id":"j","status":"FAILED","error":"oom: out of memory","output":{"code":"oom"}}`,
			func(t *testing.T, js runpod.JobStatus) {
				if js.Error != "oom: out of memory" || js.Status != runpod.StatusFailed {
					t.Errorf("JobStatus = %+v", js)
				}
			}},
		{"an error object is kept as JSON text", `{"id":"j","status":"FAILED","error":{"error_type":"X"}}`,
			func(t *testing.T, js runpod.JobStatus) {
				if js.Error != `{"error_type":"X"}` {
					t.Errorf("Error = %q", js.Error)
				}
			}},
		{"a queued job has no output", `{"id":"j","status":"IN_QUEUE"}`,
			func(t *testing.T, js runpod.JobStatus) {
				if js.Output != nil || js.Status.Terminal() {
					t.Errorf("JobStatus = %+v", js)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &scripted{replies: []reply{{200, tt.body, ""}}}
			ts := httptest.NewServer(srv)
			defer ts.Close()
			c, _ := newClient(t, ts.URL)
			js, err := c.Status(context.Background(), "j")
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, js)
			if srv.paths[0] != "GET /ep123/status/j" {
				t.Errorf("path = %s", srv.paths[0])
			}
		})
	}
}

func TestTheOtherOperationsUseTheirPaths(t *testing.T) {
	srv := &scripted{replies: []reply{{200, `{"id":"j","status":"CANCELLED","jobs":{"completed":1,"failed":5,"inProgress":0,"inQueue":2,"retried":0},"workers":{"idle":1,"running":2},"removed":2}`, ""}}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c, _ := newClient(t, ts.URL)
	ctx := context.Background()
	if js, err := c.Cancel(ctx, "j/../x"); err != nil || js.Status != runpod.StatusCancelled {
		t.Errorf("Cancel = %+v, %v", js, err)
	}
	if _, err := c.Retry(ctx, "j"); err != nil {
		t.Errorf("Retry = %v", err)
	}
	if r, err := c.PurgeQueue(ctx); err != nil || r.Removed != 2 {
		t.Errorf("PurgeQueue = %+v, %v", r, err)
	}
	h, err := c.Health(ctx)
	if err != nil || h.Jobs.Failed != 5 || h.Jobs.InQueue != 2 || h.Workers.Running != 2 {
		t.Errorf("Health = %+v, %v", h, err)
	}
	want := []string{"POST /ep123/cancel/j/../x", "POST /ep123/retry/j", "POST /ep123/purge-queue", "GET /ep123/health"}
	for i, w := range want {
		if srv.paths[i] != w {
			t.Errorf("request %d = %s, want %s", i, srv.paths[i], w)
		}
	}
	if _, err := c.Status(ctx, ""); !errors.Is(err, runpod.ErrBadRequest) {
		t.Errorf("Status(\"\") = %v, want ErrBadRequest", err)
	}
}

func TestStatusesKnowWhetherTheyAreTerminal(t *testing.T) {
	for s, want := range map[runpod.Status]bool{
		runpod.StatusInQueue: false, runpod.StatusInProgress: false, runpod.StatusRunning: false,
		runpod.StatusCompleted: true, runpod.StatusFailed: true, runpod.StatusCancelled: true, runpod.StatusTimedOut: true,
	} {
		if s.Terminal() != want {
			t.Errorf("%s.Terminal() = %v, want %v", s, !want, want)
		}
	}
}

func TestNewRefusesABadConfiguration(t *testing.T) {
	tests := []struct{ name, base, endpoint, key string }{
		{"a relative base URL is refused", "api.runpod.ai/v2", "ep", "k"},
		{"an empty endpoint is refused", "", "", "k"},
		{"an endpoint with a slash is refused", "", "a/b", "k"},
		{"an empty key is refused", "", "ep", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := runpod.New(tt.base, tt.endpoint, tt.key); err == nil {
				t.Errorf("New(%q, %q, %q) = nil error", tt.base, tt.endpoint, tt.key)
			}
		})
	}
	if _, err := runpod.New("", "ep", "k"); err != nil {
		t.Errorf("New with the default base URL = %v", err)
	}
}
