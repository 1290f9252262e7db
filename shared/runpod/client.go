package runpod

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// RetryPolicy bounds the retries of one call.
type RetryPolicy struct {
	MaxAttempts int           // requests per call, the first included (default 5)
	BaseDelay   time.Duration // the first backoff; doubles each time (default 500 ms)
	MaxDelay    time.Duration // the longest computed backoff (default 15 s); a Retry-After may ask for more
	MaxElapsed  time.Duration // no wait that would end later than this after the call began (default 60 s)
}

// DefaultRetryPolicy is used unless WithRetryPolicy says otherwise.
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 5, BaseDelay: 500 * time.Millisecond, MaxDelay: 15 * time.Second, MaxElapsed: time.Minute}

// Client calls one RunPod Serverless endpoint. It is safe for concurrent use.
//
// Retries: every call is retried on 429 (honouring Retry-After) and 503,
// with exponential backoff and jitter, within RetryPolicy and the context.
// Idempotent calls (/status, /health, /cancel, /purge-queue) are also
// retried on other 5xx answers and on network errors. /run and /retry are
// not idempotent: a second request could start a second paid job, so they
// are retried only when the request surely did not reach RunPod — 429 or
// 503 answers, and network errors before any byte of the request was
// written (connection refused, DNS, TLS). Any other failure of /run after
// sending (timeout, reset, 500, 502, 504, an unreadable 2xx answer) returns
// an error matching ErrOutcomeUnknown, for the caller to reconcile.
type Client struct {
	base   string // baseURL/endpointID
	apiKey string
	hc     *http.Client
	retry  RetryPolicy
	log    *slog.Logger
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func(d time.Duration) time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (default: one with a 30 s timeout).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithRetryPolicy sets the retry bounds; zero fields keep their defaults.
func WithRetryPolicy(p RetryPolicy) Option {
	return func(c *Client) {
		if p.MaxAttempts > 0 {
			c.retry.MaxAttempts = p.MaxAttempts
		}
		if p.BaseDelay > 0 {
			c.retry.BaseDelay = p.BaseDelay
		}
		if p.MaxDelay > 0 {
			c.retry.MaxDelay = p.MaxDelay
		}
		if p.MaxElapsed > 0 {
			c.retry.MaxElapsed = p.MaxElapsed
		}
	}
}

// WithLogger sets the logger for retries (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.log = l } }

// New returns a client of endpointID at baseURL ("" for DefaultBaseURL),
// authenticated with apiKey.
func New(baseURL, endpointID, apiKey string, opts ...Option) (*Client, error) {
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("runpod: base URL %q is not an absolute http(s) URL", baseURL)
	}
	if endpointID == "" || strings.ContainsAny(endpointID, "/?#% ") {
		return nil, fmt.Errorf("runpod: endpoint id %q is empty or not a path segment", endpointID)
	}
	if apiKey == "" {
		return nil, errors.New("runpod: an API key is required")
	}
	c := &Client{
		base:   strings.TrimRight(baseURL, "/") + "/" + endpointID,
		apiKey: apiKey,
		hc:     &http.Client{Timeout: 30 * time.Second},
		retry:  DefaultRetryPolicy,
		log:    slog.Default(),
		now:    time.Now,
		sleep:  sleepCtx,
		jitter: func(d time.Duration) time.Duration { return rand.N(d + 1) },
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run submits a job (POST /run) and returns its id and first status.
func (c *Client) Run(ctx context.Context, req RunRequest) (JobStatus, error) {
	if err := req.Policy.Validate(); err != nil {
		return JobStatus{}, fmt.Errorf("runpod run: %w", err)
	}
	if req.Input == nil {
		return JobStatus{}, fmt.Errorf("runpod run: %w: an input is required", ErrInvalidPolicy)
	}
	if req.Webhook != "" {
		if u, err := url.Parse(req.Webhook); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return JobStatus{}, fmt.Errorf("runpod run: %w: webhook %q is not an absolute http(s) URL", ErrInvalidPolicy, req.Webhook)
		}
	}
	body, err := json.Marshal(wireRun{
		Input:   req.Input,
		Webhook: req.Webhook,
		Policy: wirePolicy{
			ExecutionTimeout: req.Policy.ExecutionTimeout.Milliseconds(),
			TTL:              req.Policy.TTL.Milliseconds(),
			LowPriority:      req.Policy.LowPriority,
		},
	})
	if err != nil {
		return JobStatus{}, fmt.Errorf("runpod run: encode the request: %w", err)
	}
	if len(body) > MaxPayloadBytes {
		return JobStatus{}, fmt.Errorf("runpod run: %w: the request is %d bytes, over RunPod's %d (send URLs, not data)", ErrInvalidPolicy, len(body), MaxPayloadBytes)
	}
	var js JobStatus
	if err := c.do(ctx, "run", http.MethodPost, "/run", body, false, &js); err != nil {
		return JobStatus{}, err
	}
	if js.ID == "" {
		return JobStatus{}, &APIError{Op: "run", StatusCode: http.StatusOK, Kind: ErrBadResponse, Message: "the answer has no job id", Ambiguous: true, Attempts: 1}
	}
	return js, nil
}

// Status returns a job's status (GET /status/{id}). A 404 (ErrNotFound)
// means the result is lost: RunPod keeps it ResultRetention after the end.
func (c *Client) Status(ctx context.Context, id string) (JobStatus, error) {
	var js JobStatus
	err := c.jobOp(ctx, "status", http.MethodGet, "/status/", id, true, &js)
	return js, err
}

// Cancel cancels a job (POST /cancel/{id}); cancelling twice is harmless.
func (c *Client) Cancel(ctx context.Context, id string) (JobStatus, error) {
	var js JobStatus
	err := c.jobOp(ctx, "cancel", http.MethodPost, "/cancel/", id, true, &js)
	return js, err
}

// Retry re-queues a FAILED or TIMED_OUT job under the same id (POST
// /retry/{id}). Like Run, it is not retried after an ambiguous failure.
func (c *Client) Retry(ctx context.Context, id string) (JobStatus, error) {
	var js JobStatus
	err := c.jobOp(ctx, "retry", http.MethodPost, "/retry/", id, false, &js)
	return js, err
}

// PurgeQueue removes every job still waiting in the queue (POST /purge-queue).
func (c *Client) PurgeQueue(ctx context.Context) (PurgeResult, error) {
	var r PurgeResult
	err := c.do(ctx, "purge-queue", http.MethodPost, "/purge-queue", nil, true, &r)
	return r, err
}

// Health returns the endpoint's job and worker counts (GET /health).
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	err := c.do(ctx, "health", http.MethodGet, "/health", nil, true, &h)
	return h, err
}

func (c *Client) jobOp(ctx context.Context, op, method, prefix, id string, idempotent bool, out any) error {
	if id == "" {
		return &APIError{Op: op, Kind: ErrBadRequest, Message: "empty job id"}
	}
	return c.do(ctx, op, method, prefix+url.PathEscape(id), nil, idempotent, out)
}

// outcome of one attempt.
type outcome struct {
	err        *APIError
	retry      bool
	retryAfter time.Duration // from the answer's Retry-After; 0 if none
}

// do runs one operation with retries and decodes a 2xx answer into out.
func (c *Client) do(ctx context.Context, op, method, path string, body []byte, idempotent bool, out any) error {
	start := c.now()
	for attempt := 1; ; attempt++ {
		o := c.attempt(ctx, op, method, path, body, idempotent, out)
		if o.err == nil {
			return nil
		}
		o.err.Attempts = attempt
		if !o.retry || attempt >= c.retry.MaxAttempts || ctx.Err() != nil {
			return o.err
		}
		wait := c.backoff(attempt)
		if o.retryAfter > wait {
			wait = o.retryAfter
		}
		if c.now().Add(wait).After(start.Add(c.retry.MaxElapsed)) {
			o.err.Message = strings.TrimSpace(o.err.Message + fmt.Sprintf(" (giving up: the next wait of %s would pass the %s budget)", wait.Round(time.Millisecond), c.retry.MaxElapsed))
			return o.err
		}
		if dl, ok := ctx.Deadline(); ok && c.now().Add(wait).After(dl) {
			o.err.Message = strings.TrimSpace(o.err.Message + fmt.Sprintf(" (giving up: the next wait of %s would pass the context deadline)", wait.Round(time.Millisecond)))
			return o.err
		}
		c.log.WarnContext(ctx, "runpod: retrying", "op", op, "attempt", attempt, "status", o.err.StatusCode, "error", o.err.Message, "wait", wait)
		if err := c.sleep(ctx, wait); err != nil {
			o.err.Err = err
			return o.err
		}
	}
}

// backoff is the wait after the n-th failed attempt: half of
// BaseDelay × 2^(n-1) (capped at MaxDelay), plus up to as much again at random.
func (c *Client) backoff(n int) time.Duration {
	d := c.retry.BaseDelay
	for i := 1; i < n && d < c.retry.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, c.retry.MaxDelay)
	return d/2 + c.jitter(d/2)
}

func (c *Client) attempt(ctx context.Context, op, method, path string, body []byte, idempotent bool, out any) outcome {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	var wrote atomic.Bool // set by the transport's writer goroutine
	trace := &httptrace.ClientTrace{WroteHeaders: func() { wrote.Store(true) }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, c.base+path, rd)
	if err != nil {
		return outcome{err: &APIError{Op: op, Kind: ErrBadRequest, Message: err.Error(), Err: err}}
	}
	req.Header.Set("Authorization", "Bearer "+c.apiKey)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// Sent (even in part) or not, an idempotent call may be repeated;
		// /run and /retry only when no byte of the request left.
		sent := wrote.Load()
		e := &APIError{Op: op, Kind: ErrUnavailable, Message: err.Error(), Err: err}
		if !idempotent && sent {
			e.Ambiguous = true
			return outcome{err: e}
		}
		return outcome{err: e, retry: true}
	}
	defer resp.Body.Close()

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
		if err == nil {
			err = json.Unmarshal(b, out)
		}
		if err != nil {
			return outcome{err: &APIError{Op: op, StatusCode: resp.StatusCode, Kind: ErrBadResponse, Message: err.Error(), Err: err, Ambiguous: !idempotent}}
		}
		return outcome{}
	}

	msg := errorMessage(resp.Body)
	e := &APIError{Op: op, StatusCode: resp.StatusCode, Message: msg}
	switch code := resp.StatusCode; {
	case code == http.StatusTooManyRequests:
		e.Kind = ErrRateLimited
		return outcome{err: e, retry: true, retryAfter: retryAfter(resp.Header.Get("Retry-After"), c.now())}
	case code == http.StatusServiceUnavailable:
		// Refused before processing (assumed: RunPod's gateway answers 503
		// when it cannot take the request at all): safe to retry, even /run.
		e.Kind = ErrUnavailable
		return outcome{err: e, retry: true, retryAfter: retryAfter(resp.Header.Get("Retry-After"), c.now())}
	case code >= 500:
		e.Kind = ErrUnavailable
		if !idempotent {
			e.Ambiguous = true // 500, 502, 504: the job may exist
			return outcome{err: e}
		}
		return outcome{err: e, retry: true}
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		e.Kind = ErrUnauthorized
	case code == http.StatusNotFound:
		e.Kind = ErrNotFound
		if op == "status" {
			e.Message = strings.TrimSpace(e.Message + " (RunPod keeps results " + ResultRetention.String() + " after the end: the result is lost)")
		}
	default:
		e.Kind = ErrBadRequest
	}
	return outcome{err: e}
}

// errorMessage reads RunPod's message from an error body:
// {"error": "..."}, {"error": {"message": "..."}}, {"message": "..."}, or
// the text itself.
func errorMessage(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 64<<10))
	var doc struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
	}
	if json.Unmarshal(b, &doc) == nil {
		var s string
		var nested struct {
			Message string `json:"message"`
		}
		switch {
		case json.Unmarshal(doc.Error, &s) == nil && s != "":
			return clip(s)
		case json.Unmarshal(doc.Error, &nested) == nil && nested.Message != "":
			return clip(nested.Message)
		case doc.Message != "":
			return clip(doc.Message)
		}
	}
	return clip(strings.TrimSpace(string(b)))
}

func clip(s string) string {
	if len(s) > 500 {
		return s[:497] + "..."
	}
	return s
}

// retryAfter parses a Retry-After value: delta-seconds (decimals accepted),
// or an HTTP date. Zero when absent or unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs <= 0 || secs > 24*3600 {
			return 0
		}
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
