// Package client is a small Go client of the Bright Run HTTP API v1: one
// method per route, the API's own view types, and errors that keep the
// API's code and message. The CLI (cmd/brightrun) is built on it.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/brightrun/brightrun/shared/api"
)

// Client calls the API at BaseURL with a bearer token.
type Client struct {
	// BaseURL is the API's scheme and host, e.g. "http://127.0.0.1:8080".
	BaseURL string
	// Token is sent as "Authorization: Bearer <Token>".
	Token string
	// HTTP makes the API calls; nil means a client with a 60 s timeout.
	HTTP *http.Client
	// Transfer makes the presigned uploads and downloads, which may take
	// long; nil means a client without an overall timeout.
	Transfer *http.Client
	// UserAgent is sent with every API call.
	UserAgent string
	// Retries is how many times an idempotent call (a GET, a cancel, a job
	// creation with an Idempotency-Key) is retried after a network error or
	// a 502, 503 or 504; RetryWait is the first wait, doubled each time.
	Retries   int
	RetryWait time.Duration
}

// New returns a client of the API at baseURL, with two retries.
func New(baseURL, token string) *Client {
	return &Client{
		BaseURL:   strings.TrimRight(baseURL, "/"),
		Token:     token,
		HTTP:      &http.Client{Timeout: 60 * time.Second},
		Transfer:  &http.Client{},
		UserAgent: "brightrun-client",
		Retries:   2,
		RetryWait: 300 * time.Millisecond,
	}
}

// APIError is an error answer of the API, in its
// {"error": {"code", "message", "details"}} shape.
type APIError struct {
	// Status is the HTTP status.
	Status  int
	Code    string
	Message string
	Details any
}

// Error reads "code: message", e.g. `not_found: dataset "ds_x" not found`.
func (e *APIError) Error() string { return e.Code + ": " + e.Message }

// UnreachableError is a call that got no HTTP answer: the API is down, the
// address is wrong, or the network failed.
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("could not reach the API at %s: %v", e.URL, rootCause(e.Err))
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// rootCause drops the "Get "http://...": " prefixes of a *url.Error.
func rootCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// call is one API request.
type call struct {
	method string
	path   string
	query  url.Values
	body   any
	header http.Header
	// idempotent calls are retried.
	idempotent bool
	// out receives the decoded answer (nil: ignore it).
	out any
}

// do runs c, retrying an idempotent call on network errors and 502/503/504.
func (cl *Client) do(ctx context.Context, c call) error {
	var body []byte
	if c.body != nil {
		var err error
		if body, err = json.Marshal(c.body); err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
	}
	u := cl.BaseURL + c.path
	if len(c.query) > 0 {
		u += "?" + c.query.Encode()
	}
	wait := cl.RetryWait
	for try := 0; ; try++ {
		err := cl.once(ctx, c, u, body)
		if err == nil || !c.idempotent || try >= cl.Retries || !retryable(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

func retryable(err error) bool {
	var ue *UnreachableError
	if errors.As(err, &ue) {
		return true
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status == http.StatusBadGateway || ae.Status == http.StatusServiceUnavailable || ae.Status == http.StatusGatewayTimeout
	}
	return false
}

func (cl *Client) once(ctx context.Context, c call, u string, body []byte) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, u, rd)
	if err != nil {
		return fmt.Errorf("API URL %q: %w", cl.BaseURL, err)
	}
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if cl.Token != "" {
		req.Header.Set("Authorization", "Bearer "+cl.Token)
	}
	if cl.UserAgent != "" {
		req.Header.Set("User-Agent", cl.UserAgent)
	}
	hc := cl.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &UnreachableError{URL: cl.BaseURL, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return decodeError(resp)
	}
	if c.out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(c.out); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s %s: decode the answer: %w", c.method, c.path, err)
	}
	return nil
}

// decodeError reads an error answer: the API's shape when it is one, else
// the status and the start of the body (a proxy's HTML page, say).
func decodeError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb api.ErrorBody
	if err := json.Unmarshal(data, &eb); err == nil && eb.Error.Code != "" {
		return &APIError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message, Details: eb.Error.Details}
	}
	msg := strings.Join(strings.Fields(string(data)), " ")
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &APIError{Status: resp.StatusCode, Code: fmt.Sprintf("http_%d", resp.StatusCode), Message: msg}
}

// ListOptions pages through a list: Cursor is the previous page's
// NextCursor, Limit 1..100 (0: the API's default, 20).
type ListOptions struct {
	Cursor string
	Limit  int
}

func (o ListOptions) values() url.Values {
	q := url.Values{}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	if o.Limit > 0 {
		q.Set("limit", fmt.Sprint(o.Limit))
	}
	return q
}

// Health calls /healthz.
func (cl *Client) Health(ctx context.Context) error {
	return cl.do(ctx, call{method: http.MethodGet, path: "/healthz", idempotent: true})
}

// pathID escapes an id for use as one path segment.
func pathID(id string) string { return url.PathEscape(id) }
